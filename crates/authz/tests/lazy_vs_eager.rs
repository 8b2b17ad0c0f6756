//! The compiled, lazy engine against a deliberately simple eager reference written straight
//! from loopback3-semantics.md Appendix A: collect the pool, evaluate every principal and
//! role, filter, stable-sort by score, take the first.
//!
//! Besides the final permission, allow/deny and deciding rule, the test checks that the
//! engine asked exactly the roles of the rules ranked at or above the winner, each once,
//! and never a built-in role.

use std::collections::{BTreeSet, HashMap};

use portcullis_authz::{
    AccessRequest, AccessType, DbRules, Engine, Permission, Principal, PrincipalType,
    PropertyMatch, Rule, RuleOrigin, RuleSource,
};
use proptest::prelude::*;
use proptest::sample::select;

const MODELS: [&str; 2] = ["Post", "Comment"];
const ROLES: [&str; 9] = [
    "$everyone",
    "$authenticated",
    "$unauthenticated",
    "$owner",
    "$related",
    "admin",
    "teamMember",
    "$group:admin",
    "banned",
];
const RESOLVED_ROLES: [&str; 5] = ["$owner", "admin", "teamMember", "$group:admin", "banned"];
const IDS: [&str; 3] = ["1", "2", "a1"];

/// (method, aliases)
const METHODS: [(&str, &[&str]); 5] = [
    ("find", &[]),
    ("create", &[]),
    ("patchAttributes", &["updateAttributes"]),
    ("patchOrCreate", &["upsert", "updateOrCreate"]),
    ("publish", &[]),
];

fn access_type() -> impl Strategy<Value = AccessType> {
    select(vec![
        AccessType::Any,
        AccessType::Read,
        AccessType::Write,
        AccessType::Execute,
        AccessType::Replicate,
    ])
}

fn permission() -> impl Strategy<Value = Option<Permission>> {
    select(vec![
        None,
        Some(Permission::Default),
        Some(Permission::Allow),
        Some(Permission::Alarm),
        Some(Permission::Audit),
        Some(Permission::Deny),
    ])
}

fn property() -> impl Strategy<Value = PropertyMatch> {
    let one = |s: &str| PropertyMatch::One(s.to_string());
    let list = |v: &[&str]| PropertyMatch::List(v.iter().map(|s| s.to_string()).collect());
    select(vec![
        PropertyMatch::Any,
        PropertyMatch::Any,
        one("*"),
        one("find"),
        one("create"),
        one("patchAttributes"),
        one("updateAttributes"),
        one("upsert"),
        one("publish"),
        list(&["find", "create"]),
        list(&["updateAttributes", "publish"]),
        list(&["patchAttributes", "patchAttributes"]),
    ])
}

fn principal_type() -> impl Strategy<Value = PrincipalType> {
    select(vec![
        PrincipalType::User,
        PrincipalType::App,
        PrincipalType::Role,
        PrincipalType::Role,
        PrincipalType::Role,
        PrincipalType::Custom("Customer".to_string()),
    ])
}

/// A rule without a source; `model` is drawn from the models, `*` and `None`.
fn rule() -> impl Strategy<Value = Rule> {
    (
        select(vec![Some("Post"), Some("Comment"), Some("*"), None]),
        property(),
        access_type(),
        principal_type(),
        0usize..ROLES.len(),
        0usize..IDS.len(),
        permission(),
    )
        .prop_map(
            |(model, property, access_type, principal_type, role, id, permission)| {
                let principal_id = if principal_type == PrincipalType::Role {
                    ROLES[role].to_string()
                } else {
                    IDS[id].to_string()
                };
                Rule {
                    model: model.map(str::to_string),
                    property,
                    access_type,
                    principal_type,
                    principal_id,
                    permission,
                    source: RuleSource::Table { id: String::new() },
                }
            },
        )
}

fn principal() -> impl Strategy<Value = Principal> {
    select(vec![
        Principal::user("1"),
        Principal::user("2"),
        Principal::app("a1"),
        Principal::new(PrincipalType::Custom("Customer".to_string()), "1"),
        Principal::role("admin"),
    ])
}

#[derive(Debug, Clone)]
struct Scenario {
    statics: Vec<Vec<Rule>>,
    db: Vec<Rule>,
    model: usize,
    method: usize,
    access_type: AccessType,
    principals: Vec<Principal>,
    roles_held: Vec<bool>,
    default_permission: Option<Permission>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        proptest::collection::vec(proptest::collection::vec(rule(), 0..7), MODELS.len()),
        proptest::collection::vec(rule(), 0..5),
        0..MODELS.len(),
        0..METHODS.len(),
        select(vec![
            AccessType::Read,
            AccessType::Write,
            AccessType::Execute,
            AccessType::Replicate,
        ]),
        proptest::collection::vec(principal(), 0..3),
        proptest::collection::vec(any::<bool>(), RESOLVED_ROLES.len()),
        select(vec![
            None,
            Some(Permission::Allow),
            Some(Permission::Deny),
            Some(Permission::Default),
        ]),
    )
        .prop_map(
            |(
                statics,
                db,
                model,
                method,
                access_type,
                principals,
                roles_held,
                default_permission,
            )| {
                Scenario {
                    statics,
                    db,
                    model,
                    method,
                    access_type,
                    principals,
                    roles_held,
                    default_permission,
                }
            },
        )
}

// ---------------------------------------------------------------------------------------
// The reference, from Appendix A, sharing no code with the engine.

struct Outcome {
    allowed: bool,
    permission: Permission,
    deciding: Option<RuleOrigin>,
    /// Roles a lazy engine must ask: those of unresolved ROLE rules ranked at or above the
    /// winner (or above the first non-matching candidate when nothing wins).
    roles_to_ask: BTreeSet<String>,
}

fn ref_score(
    rule_model: &str,
    rule_property: &str,
    rule: &Rule,
    model: &str,
    names: &[&str],
    t: AccessType,
) -> i32 {
    let m = if rule_model == model {
        3
    } else if rule_model == "*" {
        2
    } else {
        return -1;
    };
    let p = if names.contains(&rule_property) {
        3
    } else if rule_property == "*" {
        2
    } else {
        return -1;
    };
    let a = match (rule.access_type, t) {
        (r, q) if r == q => 3,
        (AccessType::Execute, _) => 3,
        (AccessType::Write, AccessType::Replicate) => 3,
        (AccessType::Any, _) => 2,
        _ => return -1,
    };
    let k = match rule.principal_type {
        PrincipalType::User => 4,
        PrincipalType::App => 3,
        PrincipalType::Role => 2,
        PrincipalType::Custom(_) => 1,
    };
    let r = if rule.principal_type == PrincipalType::Role {
        match rule.principal_id.as_str() {
            "$owner" => 4,
            "$related" => 3,
            "$authenticated" | "$unauthenticated" => 2,
            "$everyone" => 1,
            _ => 5,
        }
    } else {
        0
    };
    let p_order = match rule.permission {
        Some(Permission::Default) => 0,
        None | Some(Permission::Allow) => 1,
        Some(Permission::Alarm) => 2,
        Some(Permission::Audit) => 3,
        Some(Permission::Deny) => 4,
    };
    2048 * m + 512 * p + 128 * a + 32 * k + 4 * r + (p_order - 1)
}

fn reference(s: &Scenario) -> Outcome {
    let model = MODELS[s.model];
    let (method, aliases) = METHODS[s.method];
    let mut names: Vec<&str> = aliases.to_vec();
    names.push(method);
    let t = s.access_type;

    // pool: (origin, score, rule)
    let mut pool: Vec<(RuleOrigin, i32, &Rule)> = Vec::new();
    for (i, r) in s.db.iter().enumerate() {
        let rm = r.model.as_deref().unwrap_or("*");
        let rp = match &r.property {
            PropertyMatch::Any => "*",
            PropertyMatch::One(p) => p.as_str(),
            PropertyMatch::List(_) => continue,
        };
        let fetched_at = match t {
            AccessType::Replicate => matches!(
                r.access_type,
                AccessType::Replicate | AccessType::Write | AccessType::Any
            ),
            _ => r.access_type == t || r.access_type == AccessType::Any,
        };
        if (rm == model || rm == "*") && (rp == "*" || names.contains(&rp)) && fetched_at {
            pool.push((RuleOrigin::Db(i), ref_score(rm, rp, r, model, &names, t), r));
        }
    }
    for (i, r) in s.statics[s.model].iter().enumerate() {
        let rp = match &r.property {
            PropertyMatch::Any => "*",
            PropertyMatch::One(p) => p.as_str(),
            PropertyMatch::List(v) if v.iter().any(|n| n == method) => method,
            PropertyMatch::List(_) => continue,
        };
        if rp == "*" || rp == method {
            pool.push((
                RuleOrigin::Static(i),
                ref_score(model, rp, r, model, &names, t),
                r,
            ));
        }
    }

    let authenticated = s.principals.iter().any(|p| {
        matches!(
            p.principal_type,
            PrincipalType::User | PrincipalType::App | PrincipalType::Custom(_)
        )
    });
    let same_principal = |r: &Rule| {
        s.principals
            .iter()
            .any(|p| p.principal_type == r.principal_type && p.id == r.principal_id)
    };
    let in_role = |role: &str| match role {
        "$everyone" => true,
        "$authenticated" => authenticated,
        "$unauthenticated" => !authenticated,
        "$related" => false,
        other => RESOLVED_ROLES
            .iter()
            .position(|r| *r == other)
            .is_some_and(|i| s.roles_held[i]),
    };
    let effective = |r: &Rule| {
        same_principal(r) || (r.principal_type == PrincipalType::Role && in_role(&r.principal_id))
    };

    // Eager: filter, stable sort, first.
    let mut eff: Vec<&(RuleOrigin, i32, &Rule)> = pool.iter().filter(|c| effective(c.2)).collect();
    eff.sort_by_key(|c| std::cmp::Reverse(c.1)); // stable
    let (resolved, deciding) = match eff.first() {
        Some((origin, score, rule)) if *score >= 0 => (
            rule.permission.unwrap_or(Permission::Default),
            Some(*origin),
        ),
        _ => (Permission::Default, None),
    };
    let permission = match resolved {
        Permission::Default => match s.default_permission {
            None | Some(Permission::Default) => Permission::Allow,
            Some(p) => p,
        },
        p => p,
    };

    // What a lazy walk over the whole sorted pool must ask.
    let mut all = pool.clone();
    all.sort_by_key(|c| std::cmp::Reverse(c.1)); // stable
    let mut roles_to_ask = BTreeSet::new();
    for (origin, score, rule) in &all {
        if *score < 0 {
            break;
        }
        let builtin = [
            "$everyone",
            "$authenticated",
            "$unauthenticated",
            "$related",
        ]
        .contains(&rule.principal_id.as_str());
        if rule.principal_type == PrincipalType::Role && !same_principal(rule) && !builtin {
            roles_to_ask.insert(rule.principal_id.clone());
        }
        if Some(*origin) == deciding {
            break;
        }
    }

    Outcome {
        allowed: permission != Permission::Deny,
        permission,
        deciding,
        roles_to_ask,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn lazy_engine_matches_eager_reference(s in scenario()) {
        let engine = Engine::new(
            MODELS.iter().zip(&s.statics).map(|(m, rules)| {
                // Static rules always carry their owning model.
                let rules: Vec<Rule> = rules
                    .iter()
                    .cloned()
                    .map(|mut r| {
                        r.model = Some(m.to_string());
                        r
                    })
                    .collect();
                (*m, rules)
            }),
        );
        let db_rules = DbRules::new(s.db.clone());
        let (method, aliases) = METHODS[s.method];
        let aliases: Vec<String> = aliases.iter().map(|a| a.to_string()).collect();
        let request = AccessRequest::new(MODELS[s.model], method, &aliases, s.access_type);

        let mut asked: Vec<String> = Vec::new();
        let mut answers: HashMap<String, bool> = HashMap::new();
        let decision = engine.decide(&request, &s.principals, &db_rules, s.default_permission, &mut |role: &str| {
            asked.push(role.to_string());
            let held = RESOLVED_ROLES
                .iter()
                .position(|r| *r == role)
                .is_some_and(|i| s.roles_held[i]);
            answers.insert(role.to_string(), held);
            held
        });
        let expected = reference(&s);

        prop_assert_eq!(decision.allowed, expected.allowed, "allowed\n{}", decision);
        prop_assert_eq!(decision.permission, expected.permission, "permission\n{}", decision);
        prop_assert_eq!(
            decision.deciding_entry().map(|e| e.origin),
            expected.deciding,
            "deciding rule\n{}",
            decision
        );
        let asked_set: BTreeSet<String> = asked.iter().cloned().collect();
        prop_assert_eq!(asked_set.len(), asked.len(), "a role was asked twice: {:?}", asked);
        prop_assert_eq!(asked_set, expected.roles_to_ask, "roles asked\n{}", decision);
        prop_assert_eq!(
            decision.roles_asked.len(),
            answers.len(),
            "roles_asked records every answer"
        );
    }
}
