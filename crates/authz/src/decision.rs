//! The outcome of one ACL check and its reasons: the final permission, the deciding rule,
//! and the trail of every candidate rule in the order the engine considered it.
//!
//! The `Display` impl is the multi-line explanation the security debug log and
//! `portcullis acl explain` print. Production error bodies stay terse: see
//! [`denial_status`].

use std::fmt;
use std::sync::Arc;

use crate::score::Score;
use crate::vote::Vote;
use crate::{AccessType, Permission, PrincipalType, Rule};

/// Which pool a candidate came from, with its position there. DB rules come first in
/// LoopBack's pool, so on equal scores a DB rule beats a static one, and within a pool the
/// lower index wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(tag = "pool", content = "index", rename_all = "camelCase")]
pub enum RuleOrigin {
    /// Index into the list given to [`crate::DbRules::new`].
    Db(usize),
    /// Index into the model's static rules as given to [`crate::Engine::new`].
    Static(usize),
}

/// Whether a candidate's principal held for this request, and who said so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(tag = "by", content = "held", rename_all = "camelCase")]
pub enum PrincipalCheck {
    /// Not looked at: the rule does not match the request, or a higher-ranked rule
    /// already decided.
    NotEvaluated,
    /// Compared with the request's principals (same type and same id).
    Principal(bool),
    /// A built-in role decided from the principals alone (`$everyone`, `$authenticated`,
    /// `$unauthenticated`, `$related`).
    BuiltIn(bool),
    /// A role the caller resolved (`$owner`, static roles, custom resolvers).
    Resolver(bool),
}

impl PrincipalCheck {
    /// `Some(held)` once evaluated.
    pub fn held(self) -> Option<bool> {
        match self {
            Self::NotEvaluated => None,
            Self::Principal(b) | Self::BuiltIn(b) | Self::Resolver(b) => Some(b),
        }
    }
}

/// One candidate rule as the engine considered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailEntry {
    pub rule: Arc<Rule>,
    pub origin: RuleOrigin,
    pub score: Score,
    pub check: PrincipalCheck,
    /// This entry decided the outcome.
    pub decisive: bool,
}

impl TrailEntry {
    /// LoopBack's integer score (−1 when the rule does not match the request).
    pub fn score_value(&self) -> i32 {
        self.score.value()
    }

    /// Whether every attribute matched the request.
    pub fn matched(&self) -> bool {
        self.score.matches()
    }

    /// One human sentence on what happened to this candidate.
    pub fn explanation(&self) -> String {
        let rule = &self.rule;
        let who = principal_phrase(rule);
        if let Some(attr) = self.score.failed_attribute() {
            return format!("does not match the request ({attr} differs)");
        }
        let held = match self.check {
            PrincipalCheck::NotEvaluated => {
                return "not evaluated: a higher-ranked rule already decided".to_string();
            }
            PrincipalCheck::Principal(true) => format!("{who} is a principal of the request"),
            PrincipalCheck::Principal(false) => format!("{who} is not a principal of the request"),
            PrincipalCheck::BuiltIn(true) => format!("{who} holds"),
            PrincipalCheck::BuiltIn(false) => format!("{who} does not hold"),
            PrincipalCheck::Resolver(true) => format!("{who} holds (resolved by the caller)"),
            PrincipalCheck::Resolver(false) => {
                format!("{who} does not hold (resolved by the caller)")
            }
        };
        if self.decisive {
            match rule.permission {
                Some(p) if p != Permission::Default => format!("{held}; decides {p}"),
                Some(_) => format!("{held}; decides DEFAULT (the model's default permission)"),
                None => format!(
                    "{held}; decides DEFAULT (no permission given; the model's default applies)"
                ),
            }
        } else {
            held
        }
    }
}

fn principal_phrase(rule: &Rule) -> String {
    match rule.principal_type {
        PrincipalType::Role => format!("role {}", rule.principal_id),
        ref t => format!("{t} {}", rule.principal_id),
    }
}

/// The result of one ACL check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub model: String,
    pub method: String,
    pub access_type: AccessType,
    /// `permission != DENY`.
    pub allowed: bool,
    /// The final permission, after DEFAULT was settled to the model's default.
    pub permission: Permission,
    /// What the rules said before settling: the deciding rule's permission, or DEFAULT
    /// when no rule decided, the rule said DEFAULT, or it named no permission.
    pub resolved: Permission,
    /// The model's default permission was used (`resolved` was DEFAULT).
    pub default_applied: bool,
    /// The model's `defaultPermission` as given (ALLOW when unset).
    pub default_permission: Option<Permission>,
    /// Index into `trail` of the deciding rule.
    pub deciding: Option<usize>,
    /// Every candidate, in the order considered: score descending, pool order on ties.
    pub trail: Vec<TrailEntry>,
    /// The roles asked of the caller, in order, with their answers.
    pub roles_asked: Vec<(String, bool)>,
    /// Denied before any rule was looked at: the token's scopes do not include one the
    /// method accepts (LoopBack's "Denied by scope config").
    pub scope_denied: bool,
}

impl Decision {
    /// A denial by scope: no rule was considered.
    pub fn denied_by_scope(model: &str, method: &str, access_type: AccessType) -> Decision {
        Decision {
            model: model.to_string(),
            method: method.to_string(),
            access_type,
            allowed: false,
            permission: Permission::Deny,
            resolved: Permission::Deny,
            default_applied: false,
            default_permission: None,
            deciding: None,
            trail: Vec::new(),
            roles_asked: Vec::new(),
            scope_denied: true,
        }
    }

    pub fn is_allowed(&self) -> bool {
        self.allowed
    }

    /// The trail entry of the deciding rule.
    pub fn deciding_entry(&self) -> Option<&TrailEntry> {
        self.deciding.and_then(|i| self.trail.get(i))
    }

    /// The deciding rule.
    pub fn deciding_rule(&self) -> Option<&Arc<Rule>> {
        self.deciding_entry().map(|e| &e.rule)
    }

    /// The ACL result as one LoopBack 4 vote (lb4-authorization.md §11, option 1): an
    /// explicit DENY votes Deny, any other explicit permission votes Allow, and DEFAULT
    /// (before the model's default permission is applied) abstains.
    pub fn vote(&self) -> Vote {
        match self.resolved {
            Permission::Default => Vote::Abstain,
            Permission::Deny => Vote::Deny,
            Permission::Allow | Permission::Alarm | Permission::Audit => Vote::Allow,
        }
    }
}

/// The HTTP status for an ACL denial (§7.2): 401 whenever the request has no resolved
/// access token; otherwise the model's `aclErrorStatus`, else the app's, else 401.
pub fn denial_status(has_token: bool, model_status: Option<u16>, app_status: Option<u16>) -> u16 {
    if !has_token {
        return 401;
    }
    model_status.or(app_status).unwrap_or(401)
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}.{} ({}): {} with permission {}",
            self.model,
            self.method,
            self.access_type,
            if self.allowed { "allowed" } else { "denied" },
            self.permission
        )?;
        if self.scope_denied {
            return writeln!(
                f,
                "  denied by scope: the token's scopes do not include one this method accepts"
            );
        }
        let default = self.default_permission.unwrap_or(Permission::Allow);
        match self.deciding_entry() {
            Some(e) => writeln!(
                f,
                "  decided by {}: {} (score {})",
                e.rule.source,
                e.rule,
                e.score_value()
            )?,
            None => writeln!(f, "  no rule applies")?,
        }
        if self.default_applied {
            writeln!(
                f,
                "  DEFAULT settled to the model's default permission {default}"
            )?;
        }
        if self.trail.is_empty() {
            writeln!(f, "  no candidate rules")?;
        } else {
            writeln!(f, "  candidates, highest score first:")?;
        }
        for (i, e) in self.trail.iter().enumerate() {
            let marker = if e.decisive { '>' } else { ' ' };
            writeln!(
                f,
                "  {marker}{:>3}. score {:>5}  {}  [{}]",
                i + 1,
                e.score_value(),
                e.rule,
                e.rule.source
            )?;
            writeln!(f, "         {}", e.explanation())?;
        }
        for (role, held) in &self.roles_asked {
            writeln!(
                f,
                "  asked role {role}: {}",
                if *held { "held" } else { "not held" }
            )?;
        }
        Ok(())
    }
}
