//! The LoopBack 3 ACL engine (`ACL.checkAccessForContext`): candidate collection, the
//! principal filter, scoring and resolution, compiled once and resolved lazily.
//!
//! - [`Engine`] holds the static rules (model JSON, model-config, built-ins), indexed per
//!   model and method with the candidates already sorted per access type, so a request's
//!   static candidates are one hash lookup.
//! - [`DbRules`] holds the `ACL` table, indexed by model and property. The caller rebuilds
//!   it when the table changes.
//! - [`Run`] is one check as a pure state machine. Candidates are walked best first;
//!   roles that need the database are handed to the caller ([`Step::NeedRole`]) one at a
//!   time, and only for rules ranked above the eventual winner.
//!
//! # Why the lazy walk equals LoopBack's eager algorithm
//!
//! LoopBack filters the pool down to effective rules (evaluating every role), stable-sorts
//! them by score and takes the first. A stable sort orders by `(score desc, pool position)`,
//! a total order, and filtering a sorted list keeps its relative order: so the first
//! effective rule of the sorted *effective* list is the first effective rule of the sorted
//! *candidate* list. The run walks the sorted candidate list and stops at the first
//! effective rule, never evaluating what ranks below it. A rule with a negative score
//! would resolve to DEFAULT whether or not it is effective, and everything after it is
//! negative too, so the walk stops there as well. Role answers must be a function of the
//! role name for the request (they are memoised per run), which LoopBack's resolvers are.

use std::collections::HashMap;
use std::sync::Arc;

use crate::decision::{Decision, PrincipalCheck, RuleOrigin, TrailEntry};
use crate::role::{builtin_role_held, Principal};
use crate::score::{score, score_static, AccessRequest, Score, ALL};
use crate::{AccessType, Permission, PrincipalType, PropertyMatch, Rule};

/// Answers role membership questions the engine cannot decide itself.
///
/// Implemented for every `FnMut(&str) -> bool`.
pub trait RoleOracle {
    /// Whether the request's principals hold `role` for this request.
    fn is_in_role(&mut self, role: &str) -> bool;
}

impl<F: FnMut(&str) -> bool> RoleOracle for F {
    fn is_in_role(&mut self, role: &str) -> bool {
        self(role)
    }
}

/// A candidate with its score, pre-sorted.
#[derive(Debug, Clone, Copy)]
struct Scored {
    index: usize,
    score: Score,
    value: i32,
}

/// Static candidates of one method (or of any method no rule names), in definition order
/// and sorted per concrete access type.
#[derive(Debug, Clone, Default)]
struct MethodCandidates {
    in_order: Vec<usize>,
    sorted: [Vec<Scored>; 4],
}

#[derive(Debug, Clone, Default)]
struct ModelIndex {
    rules: Vec<Arc<Rule>>,
    /// Methods some rule names, each with its candidates (wildcard rules included).
    by_method: HashMap<String, MethodCandidates>,
    /// Candidates of a method no rule names: the wildcard-property rules.
    unnamed: MethodCandidates,
}

fn concrete_slot(t: AccessType) -> Option<usize> {
    match t {
        AccessType::Read => Some(0),
        AccessType::Write => Some(1),
        AccessType::Execute => Some(2),
        AccessType::Replicate => Some(3),
        AccessType::Any => None,
    }
}

fn is_wildcard_property(p: &PropertyMatch) -> bool {
    match p {
        PropertyMatch::Any => true,
        PropertyMatch::One(s) => s == ALL,
        PropertyMatch::List(_) => false,
    }
}

/// Stable sort by score descending: equal scores keep pool order.
fn sort_scored(v: &mut [Scored]) {
    v.sort_by_key(|s| std::cmp::Reverse(s.value));
}

impl ModelIndex {
    fn build(rules: Vec<Arc<Rule>>) -> Self {
        let mut wildcard = Vec::new();
        let mut named: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, rule) in rules.iter().enumerate() {
            if is_wildcard_property(&rule.property) {
                wildcard.push(i);
                continue;
            }
            for name in rule.property.names() {
                let list = named.entry(name.clone()).or_default();
                // A list naming the method twice is still one candidate.
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
        }
        let mut index = ModelIndex {
            rules,
            by_method: HashMap::new(),
            unnamed: MethodCandidates::default(),
        };
        index.unnamed = index.method_candidates("", wildcard.clone());
        for (method, own) in named {
            let mut in_order: Vec<usize> = wildcard.iter().chain(own.iter()).copied().collect();
            in_order.sort_unstable();
            let candidates = index.method_candidates(&method, in_order);
            index.by_method.insert(method, candidates);
        }
        index
    }

    fn method_candidates(&self, method: &str, in_order: Vec<usize>) -> MethodCandidates {
        let mut sorted: [Vec<Scored>; 4] = Default::default();
        for (slot, t) in AccessType::CONCRETE.into_iter().enumerate() {
            let request = AccessRequest::new("", method, &[], t);
            if let Some(list) = sorted.get_mut(slot) {
                *list = self.score_all(&in_order, &request);
            }
        }
        MethodCandidates { in_order, sorted }
    }

    fn score_all(&self, in_order: &[usize], request: &AccessRequest<'_>) -> Vec<Scored> {
        let mut v: Vec<Scored> = in_order
            .iter()
            .filter_map(|&index| {
                let rule = self.rules.get(index)?;
                let score = score_static(rule, request);
                Some(Scored {
                    index,
                    score,
                    value: score.value(),
                })
            })
            .collect();
        sort_scored(&mut v);
        v
    }

    /// The static candidates of a request, sorted. Borrowed from the index for concrete
    /// access types; computed for `*`.
    fn candidates(&self, request: &AccessRequest<'_>) -> std::borrow::Cow<'_, [Scored]> {
        let entry = if request.method == ALL {
            None
        } else {
            Some(self.by_method.get(request.method).unwrap_or(&self.unnamed))
        };
        match (entry, concrete_slot(request.access_type)) {
            (Some(entry), Some(slot)) => match entry.sorted.get(slot) {
                Some(v) => std::borrow::Cow::Borrowed(v.as_slice()),
                None => std::borrow::Cow::Owned(Vec::new()),
            },
            (Some(entry), None) => {
                std::borrow::Cow::Owned(self.score_all(&entry.in_order, request))
            }
            (None, _) => {
                // Programmatic `*` method: LoopBack keeps only wildcard rules and rules whose
                // property equals `*`, i.e. the wildcard rules.
                std::borrow::Cow::Owned(self.score_all(&self.unnamed.in_order, request))
            }
        }
    }
}

/// The compiled static rules of every model.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    models: HashMap<String, ModelIndex>,
}

impl Engine {
    /// Compiles each model's static rules, in LoopBack's pool order (base model first,
    /// then the model's own, model-config replacements in place).
    ///
    /// The rules' own `model` field is ignored, as LoopBack replaces it by the owning
    /// model. A model given twice gets its lists concatenated.
    pub fn new<I, S, R>(models: I) -> Self
    where
        I: IntoIterator<Item = (S, R)>,
        S: Into<String>,
        R: IntoIterator<Item = Rule>,
    {
        let mut raw: HashMap<String, Vec<Arc<Rule>>> = HashMap::new();
        for (model, rules) in models {
            raw.entry(model.into())
                .or_default()
                .extend(rules.into_iter().map(Arc::new));
        }
        let models = raw
            .into_iter()
            .map(|(model, rules)| (model, ModelIndex::build(rules)))
            .collect();
        Engine { models }
    }

    /// The static rules of a model, in pool order (what [`RuleOrigin::Static`] indexes).
    pub fn static_rules(&self, model: &str) -> &[Arc<Rule>] {
        self.models.get(model).map_or(&[], |m| m.rules.as_slice())
    }

    /// Starts one check. Drive it with [`Run::next`] and [`Run::answer`].
    ///
    /// `default_permission` is the model's `defaultPermission` (ALLOW when `None`).
    ///
    /// ```
    /// use portcullis_authz::*;
    ///
    /// let rule = |id: &str, permission| Rule {
    ///     model: Some("Post".into()),
    ///     property: PropertyMatch::Any,
    ///     access_type: AccessType::Any,
    ///     principal_type: PrincipalType::Role,
    ///     principal_id: id.into(),
    ///     permission: Some(permission),
    ///     source: RuleSource::ModelJson { model: "Post".into(), index: 0 },
    /// };
    /// let engine = Engine::new([(
    ///     "Post",
    ///     vec![rule("$everyone", Permission::Deny), rule("$owner", Permission::Allow)],
    /// )]);
    /// let principals = [Principal::user("1")];
    /// let db_rules = DbRules::empty();
    /// let request = AccessRequest::new("Post", "findById", &[], AccessType::Read);
    /// let mut run = engine.start(&request, &principals, &db_rules, None);
    /// let decision = loop {
    ///     match run.next() {
    ///         // An async caller would await its resolver here.
    ///         Step::NeedRole(role) => run.answer(role == "$owner"),
    ///         Step::Done(decision) => break decision,
    ///     }
    /// };
    /// assert!(decision.allowed);
    /// assert_eq!(decision.roles_asked, vec![("$owner".to_string(), true)]);
    /// ```
    pub fn start<'a>(
        &'a self,
        request: &AccessRequest<'a>,
        principals: &'a [Principal],
        db_rules: &'a DbRules,
        default_permission: Option<Permission>,
    ) -> Run<'a> {
        let db = db_rules.candidates(request);
        let stat = match self.models.get(request.model) {
            Some(m) => m.candidates(request),
            None => std::borrow::Cow::Owned(Vec::new()),
        };
        let static_rules = self.static_rules(request.model);

        // Merge two lists sorted by (score desc, pool order); DB rules precede static ones
        // in the pool, so they win ties.
        let mut candidates = Vec::with_capacity(db.len() + stat.len());
        let (mut db_iter, mut stat_iter) = (db.iter().peekable(), stat.iter().peekable());
        loop {
            let (scored, origin, rule) = match (db_iter.peek(), stat_iter.peek()) {
                (Some(d), s) if s.is_none_or(|s| d.value >= s.value) => {
                    let d = *d;
                    db_iter.next();
                    (d, RuleOrigin::Db(d.index), db_rules.rules.get(d.index))
                }
                (_, Some(s)) => {
                    let s = *s;
                    stat_iter.next();
                    (s, RuleOrigin::Static(s.index), static_rules.get(s.index))
                }
                _ => break,
            };
            if let Some(rule) = rule {
                candidates.push(Candidate {
                    rule,
                    origin,
                    score: scored.score,
                    value: scored.value,
                });
            }
        }
        let checks = vec![PrincipalCheck::NotEvaluated; candidates.len()];
        Run {
            model: request.model,
            method: request.method,
            access_type: request.access_type,
            principals,
            candidates,
            checks,
            pos: 0,
            pending: false,
            memo: Vec::new(),
            default_permission,
            result: None,
        }
    }

    /// Runs a check to the end, asking `oracle` for the roles the engine cannot decide.
    pub fn decide(
        &self,
        request: &AccessRequest<'_>,
        principals: &[Principal],
        db_rules: &DbRules,
        default_permission: Option<Permission>,
        oracle: &mut impl RoleOracle,
    ) -> Decision {
        let mut run = self.start(request, principals, db_rules, default_permission);
        loop {
            match run.next() {
                Step::NeedRole(role) => {
                    let held = oracle.is_in_role(&role);
                    run.answer(held);
                }
                Step::Done(decision) => return decision,
            }
        }
    }
}

/// The `ACL` table's rules, indexed by model and property. Rebuild it when the table
/// changes.
///
/// LoopBack never fetches a row whose `model`, `property` or `accessType` column is null;
/// leave such rows out. A `model` of `None` is read as `*` (as [`Rule`] documents), and a
/// property list (not expressible in the table) is never fetched.
#[derive(Debug, Clone, Default)]
pub struct DbRules {
    rules: Vec<Arc<Rule>>,
    /// model (or `*`) → property (or `*`) → rule indexes, ascending.
    index: HashMap<String, HashMap<String, Vec<usize>>>,
}

impl DbRules {
    /// Indexes the table's rules; their order is LoopBack's pool order.
    pub fn new(rules: impl IntoIterator<Item = Rule>) -> Self {
        let rules: Vec<Arc<Rule>> = rules.into_iter().map(Arc::new).collect();
        let mut index: HashMap<String, HashMap<String, Vec<usize>>> = HashMap::new();
        for (i, rule) in rules.iter().enumerate() {
            let property = match &rule.property {
                PropertyMatch::Any => ALL,
                PropertyMatch::One(p) => p.as_str(),
                PropertyMatch::List(_) => continue,
            };
            index
                .entry(crate::score::rule_model(rule).to_string())
                .or_default()
                .entry(property.to_string())
                .or_default()
                .push(i);
        }
        DbRules { rules, index }
    }

    /// No DB rules.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The rules in pool order (what [`RuleOrigin::Db`] indexes).
    pub fn rules(&self) -> &[Arc<Rule>] {
        &self.rules
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// LoopBack's DB query: `model ∈ {M, *}`, `property ∈ aliases ∪ {N, *}`, access type
    /// prefetched by the request's type (a DB `EXECUTE` rule never reaches READ or WRITE).
    /// Sorted by score, stable.
    fn candidates(&self, request: &AccessRequest<'_>) -> Vec<Scored> {
        if self.rules.is_empty() {
            return Vec::new();
        }
        let mut found: Vec<usize> = Vec::new();
        let models: &[&str] = if request.model == ALL {
            &[ALL]
        } else {
            &[request.model, ALL]
        };
        for model in models {
            let Some(by_property) = self.index.get(*model) else {
                continue;
            };
            if request.method == ALL {
                // Programmatic `*` method: no property condition.
                found.extend(by_property.values().flatten().copied());
                continue;
            }
            let names = std::iter::once(request.method)
                .chain(request.aliases.iter().map(String::as_str))
                .chain(std::iter::once(ALL));
            for name in names {
                if let Some(list) = by_property.get(name) {
                    found.extend(list.iter().copied());
                }
            }
        }
        found.sort_unstable();
        found.dedup();
        let mut scored: Vec<Scored> = found
            .into_iter()
            .filter_map(|index| {
                let rule = self.rules.get(index)?;
                if !db_prefetch(rule.access_type, request.access_type) {
                    return None;
                }
                let score = score(rule, request);
                Some(Scored {
                    index,
                    score,
                    value: score.value(),
                })
            })
            .collect();
        sort_scored(&mut scored);
        scored
    }
}

/// Which DB rule access types LoopBack's query fetches for a request access type.
pub fn db_prefetch(rule: AccessType, request: AccessType) -> bool {
    request == AccessType::Any
        || rule == AccessType::Any
        || rule == request
        || (request == AccessType::Replicate && rule == AccessType::Write)
}

#[derive(Debug, Clone, Copy)]
struct Candidate<'a> {
    rule: &'a Arc<Rule>,
    origin: RuleOrigin,
    score: Score,
    value: i32,
}

/// What a [`Run`] needs next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Resolve this role for the request and call [`Run::answer`].
    NeedRole(String),
    /// The check is finished.
    Done(Decision),
}

/// One ACL check in progress: a pure state machine over the sorted candidates.
#[derive(Debug, Clone)]
pub struct Run<'a> {
    model: &'a str,
    method: &'a str,
    access_type: AccessType,
    principals: &'a [Principal],
    candidates: Vec<Candidate<'a>>,
    checks: Vec<PrincipalCheck>,
    pos: usize,
    /// The candidate at `pos` waits for a role answer.
    pending: bool,
    memo: Vec<(&'a str, bool)>,
    default_permission: Option<Permission>,
    result: Option<Decision>,
}

enum Check<'a> {
    Ready(PrincipalCheck),
    Ask(&'a str),
}

impl<'a> Run<'a> {
    /// Advances until a role must be resolved or the decision is known. Once done, every
    /// further call returns the same decision. While a role is pending, returns the same
    /// question again.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Step {
        if let Some(decision) = &self.result {
            return Step::Done(decision.clone());
        }
        loop {
            let Some(candidate) = self.candidates.get(self.pos).copied() else {
                return Step::Done(self.finish(None));
            };
            if candidate.value < 0 {
                // Sorted: nothing further matches. LoopBack resolves DEFAULT here whether
                // or not this rule is effective.
                return Step::Done(self.finish(None));
            }
            match self.check(candidate.rule) {
                Check::Ask(role) => {
                    self.pending = true;
                    return Step::NeedRole(role.to_string());
                }
                Check::Ready(check) => {
                    if let Some(slot) = self.checks.get_mut(self.pos) {
                        *slot = check;
                    }
                    if check.held() == Some(true) {
                        let pos = self.pos;
                        return Step::Done(self.finish(Some(pos)));
                    }
                    self.pos += 1;
                }
            }
        }
    }

    /// Answers the pending role question. Ignored when nothing is pending.
    pub fn answer(&mut self, held: bool) {
        if !self.pending {
            return;
        }
        self.pending = false;
        if let Some(candidate) = self.candidates.get(self.pos) {
            self.memo.push((candidate.rule.principal_id.as_str(), held));
        }
    }

    /// The role currently waiting for an answer.
    pub fn pending_role(&self) -> Option<&'a str> {
        if !self.pending {
            return None;
        }
        self.candidates
            .get(self.pos)
            .map(|c| c.rule.principal_id.as_str())
    }

    fn check(&self, rule: &'a Rule) -> Check<'a> {
        let same_principal = self
            .principals
            .iter()
            .any(|p| p.principal_type == rule.principal_type && p.id == rule.principal_id);
        if same_principal {
            return Check::Ready(PrincipalCheck::Principal(true));
        }
        if rule.principal_type != PrincipalType::Role {
            return Check::Ready(PrincipalCheck::Principal(false));
        }
        let role = rule.principal_id.as_str();
        if let Some(held) = builtin_role_held(role, self.principals) {
            return Check::Ready(PrincipalCheck::BuiltIn(held));
        }
        match self.memo.iter().find(|(r, _)| *r == role) {
            Some(&(_, held)) => Check::Ready(PrincipalCheck::Resolver(held)),
            None => Check::Ask(role),
        }
    }

    fn finish(&mut self, deciding: Option<usize>) -> Decision {
        let resolved = deciding
            .and_then(|i| self.candidates.get(i))
            .and_then(|c| c.rule.permission)
            .unwrap_or(Permission::Default);
        let default_applied = resolved == Permission::Default;
        let permission = if default_applied {
            match self.default_permission {
                Some(Permission::Default) | None => Permission::Allow,
                Some(p) => p,
            }
        } else {
            resolved
        };
        let trail = self
            .candidates
            .iter()
            .zip(&self.checks)
            .enumerate()
            .map(|(i, (c, check))| TrailEntry {
                rule: Arc::clone(c.rule),
                origin: c.origin,
                score: c.score,
                check: *check,
                decisive: Some(i) == deciding,
            })
            .collect();
        let decision = Decision {
            model: self.model.to_string(),
            method: self.method.to_string(),
            access_type: self.access_type,
            allowed: permission != Permission::Deny,
            permission,
            resolved,
            default_applied,
            default_permission: self.default_permission,
            deciding,
            trail,
            scope_denied: false,
            roles_asked: self
                .memo
                .iter()
                .map(|(r, h)| ((*r).to_string(), *h))
                .collect(),
        };
        self.result = Some(decision.clone());
        decision
    }
}
