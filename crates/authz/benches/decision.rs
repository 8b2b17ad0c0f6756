//! ACL decision latency: Portcullis's LoopBack 3 engine against `cedar-policy` on an
//! equivalent policy set.
//!
//! `cargo bench -p portcullis-authz --bench decision` (add `-- --quick` for a short run).
//!
//! The model `Doc` has the 20 static rules of [`RULES`]: `$everyone`, `$authenticated`,
//! `$unauthenticated`, `$owner` and static roles (`admin`, `editor`, `reviewer`,
//! `auditor`), ALLOW and DENY, wildcard and named methods, every access type. The same
//! decisions are written as Cedar policies in [`CEDAR_POLICIES`]; before anything is
//! timed, [`assert_equivalent`] checks that both engines agree on every method × caller
//! combination (14 methods × 9 callers), so the comparison is between two
//! implementations of one access policy.
//!
//! Portcullis is measured two ways for callers holding static roles:
//! - **oracle**: the request's principals are only the user; the engine asks for each
//!   static role (and `$owner`) it needs through the synchronous [`RoleOracle`] (a
//!   closure over the caller's role list), as `server/access.rs` does with cached
//!   role memberships;
//! - **principals**: the static roles are given up front as `ROLE` principals, so a rule
//!   naming one of them holds without a question.
//!
//! Cedar gets its entity store (users with their role parents, the document with its
//! `owner`) built once, outside the timed loop, which matches the oracle's answers being
//! precomputed; each timed Cedar call builds the `Request` and runs `is_authorized`, each
//! timed Portcullis call builds the `AccessRequest` and runs `Engine::decide`, which
//! returns a full `Decision` with its explanation trail.
//!
//! After the criterion groups, the bench measures the medians itself (same harness for
//! both engines), prints the Portcullis/Cedar ratio per case, and writes them to
//! `<target>/criterion/portcullis-authz-vs-cedar.json`.

use std::hint::black_box;
use std::str::FromStr;
use std::time::{Duration, Instant};

use cedar_policy::{Authorizer, Context, Entities, EntityUid, PolicySet, Request};
use criterion::{criterion_group, Criterion};
use portcullis_authz::{
    AccessRequest, AccessType, DbRules, Engine, Permission, Principal, PrincipalType,
    PropertyMatch, Rule, RuleSource,
};

const MODEL: &str = "Doc";

/// `(accessType, property, role, permission)` for the 20 static rules, in pool order.
const RULES: [(&str, &str, &str, &str); 20] = [
    ("*", "*", "$everyone", "DENY"),                   // 0  default deny
    ("READ", "*", "$everyone", "ALLOW"),               // 1  public reads
    ("EXECUTE", "create", "$authenticated", "ALLOW"),  // 2
    ("EXECUTE", "deleteById", "$owner", "ALLOW"),      // 3
    ("EXECUTE", "patchAttributes", "$owner", "ALLOW"), // 4
    ("EXECUTE", "replaceById", "$owner", "ALLOW"),     // 5
    ("*", "*", "admin", "ALLOW"),                      // 6
    ("EXECUTE", "publish", "editor", "ALLOW"),         // 7
    ("EXECUTE", "archive", "editor", "ALLOW"),         // 8
    ("EXECUTE", "patchAttributes", "editor", "ALLOW"), // 9
    ("EXECUTE", "approve", "reviewer", "ALLOW"),       // 10
    ("EXECUTE", "approve", "$owner", "DENY"),          // 11 no self-approval
    ("READ", "audit", "$everyone", "DENY"),            // 12
    ("READ", "audit", "auditor", "ALLOW"),             // 13
    ("READ", "stats", "auditor", "ALLOW"),             // 14
    ("READ", "stats", "$everyone", "DENY"),            // 15
    ("EXECUTE", "export", "$unauthenticated", "DENY"), // 16
    ("EXECUTE", "export", "$authenticated", "ALLOW"),  // 17
    ("EXECUTE", "exists", "$everyone", "DENY"),        // 18
    ("READ", "count", "$authenticated", "ALLOW"),      // 19 redundant with 1
];

/// The methods of `Doc` with their access types (LoopBack's defaults for the built-in
/// ones, EXECUTE for custom remote methods; `audit` and `stats` are custom READ methods).
const METHODS: [(&str, AccessType); 14] = [
    ("find", AccessType::Read),
    ("findById", AccessType::Read),
    ("count", AccessType::Read),
    ("exists", AccessType::Read),
    ("create", AccessType::Write),
    ("deleteById", AccessType::Write),
    ("patchAttributes", AccessType::Write),
    ("replaceById", AccessType::Write),
    ("publish", AccessType::Execute),
    ("archive", AccessType::Execute),
    ("approve", AccessType::Execute),
    ("export", AccessType::Execute),
    ("audit", AccessType::Read),
    ("stats", AccessType::Read),
];

/// The same decisions in Cedar. How each LoopBack rule maps:
///
/// - rule 0 (`$everyone` DENY everything) is Cedar's default deny: it ranks below every
///   other rule in LoopBack, so it decides only when nothing else matches;
/// - rule 1 (`$everyone` READ) is a permit on the `READ` action group (every READ method
///   is a member of it);
/// - `$authenticated` is `principal is User` (anonymous callers are `Anonymous`),
///   `$unauthenticated` its negation; static roles are `Role` entities the user is `in`;
///   `$owner` is `resource.owner == principal`;
/// - a LoopBack DENY that outranks an ALLOW (named property beats `*`, a named role beats
///   `$owner`, which beats `$everyone`) becomes a `forbid … unless { the roles whose
///   rules outrank it }`: rules 12/13 (audit), 15/14 (stats), 11/10 (approve), 18
///   (exists, which even outranks `admin`'s wildcard rule 6);
/// - rule 16 needs nothing: an anonymous caller has no permit for `export`;
/// - rule 19 is subsumed by the READ permit, as it is in LoopBack.
const CEDAR_POLICIES: &str = r#"
// rule 1: $everyone READ *
permit(principal, action in Action::"READ", resource);
// rule 2: $authenticated create
permit(principal is User, action == Action::"create", resource);
// rules 3-5: $owner deleteById / patchAttributes / replaceById
permit(principal is User,
       action in [Action::"deleteById", Action::"patchAttributes", Action::"replaceById"],
       resource)
  when { resource has owner && resource.owner == principal };
// rule 6: admin * *
permit(principal in Role::"admin", action, resource);
// rules 7-9: editor publish / archive / patchAttributes
permit(principal in Role::"editor",
       action in [Action::"publish", Action::"archive", Action::"patchAttributes"],
       resource);
// rule 10: reviewer approve
permit(principal in Role::"reviewer", action == Action::"approve", resource);
// rule 11 over rules 6 (admin, wildcard) but under rule 10 (named role beats $owner)
forbid(principal is User, action == Action::"approve", resource)
  when { resource has owner && resource.owner == principal }
  unless { principal in Role::"reviewer" };
// rules 12/13: audit is denied to everyone but auditors (admin's wildcard rule loses)
forbid(principal, action == Action::"audit", resource)
  unless { principal in Role::"auditor" };
permit(principal in Role::"auditor", action == Action::"audit", resource);
// rules 14/15: stats, same shape
forbid(principal, action == Action::"stats", resource)
  unless { principal in Role::"auditor" };
permit(principal in Role::"auditor", action == Action::"stats", resource);
// rules 16/17: export for authenticated callers only
permit(principal is User, action == Action::"export", resource);
// rule 18: exists denied to everyone (named property outranks admin's wildcard)
forbid(principal, action == Action::"exists", resource);
"#;

/// A caller: who, which static roles, and whether they own the document.
struct Caller {
    name: &'static str,
    user: Option<&'static str>,
    roles: &'static [&'static str],
    owner: bool,
}

const CALLERS: [Caller; 9] = [
    Caller {
        name: "anonymous",
        user: None,
        roles: &[],
        owner: false,
    },
    Caller {
        name: "user",
        user: Some("2"),
        roles: &[],
        owner: false,
    },
    Caller {
        name: "owner",
        user: Some("1"),
        roles: &[],
        owner: true,
    },
    Caller {
        name: "editor",
        user: Some("3"),
        roles: &["editor"],
        owner: false,
    },
    Caller {
        name: "editor-owner",
        user: Some("1"),
        roles: &["editor"],
        owner: true,
    },
    Caller {
        name: "reviewer",
        user: Some("4"),
        roles: &["reviewer"],
        owner: false,
    },
    Caller {
        name: "reviewer-owner",
        user: Some("1"),
        roles: &["reviewer"],
        owner: true,
    },
    Caller {
        name: "auditor",
        user: Some("5"),
        roles: &["auditor"],
        owner: false,
    },
    Caller {
        name: "admin",
        user: Some("6"),
        roles: &["admin"],
        owner: false,
    },
];

fn engine() -> Engine {
    let rules: Vec<Rule> = RULES
        .iter()
        .enumerate()
        .map(|(index, &(access, property, role, permission))| Rule {
            model: Some(MODEL.into()),
            property: if property == "*" {
                PropertyMatch::Any
            } else {
                PropertyMatch::One(property.into())
            },
            access_type: AccessType::parse(access).expect("access type"),
            principal_type: PrincipalType::Role,
            principal_id: role.into(),
            permission: Some(Permission::parse(permission).expect("permission")),
            source: RuleSource::ModelJson {
                model: MODEL.into(),
                index,
            },
        })
        .collect();
    Engine::new([(MODEL, rules)])
}

fn principals(caller: &Caller, roles_as_principals: bool) -> Vec<Principal> {
    let mut p: Vec<Principal> = caller.user.map(Principal::user).into_iter().collect();
    if roles_as_principals {
        p.extend(caller.roles.iter().map(|r| Principal::role(*r)));
    }
    p
}

fn decide(engine: &Engine, db: &DbRules, caller: &Caller, p: &[Principal], method: usize) -> bool {
    let (name, access) = METHODS[method];
    let request = AccessRequest::new(MODEL, name, &[], access);
    let mut oracle = |role: &str| match role {
        "$owner" => caller.owner,
        other => caller.roles.contains(&other),
    };
    engine.decide(&request, p, db, None, &mut oracle).allowed
}

struct Cedar {
    policies: PolicySet,
    entities: Entities,
    authorizer: Authorizer,
    principals: Vec<EntityUid>,
    actions: Vec<EntityUid>,
}

fn uid(s: &str) -> EntityUid {
    EntityUid::from_str(s).expect("entity uid")
}

fn cedar() -> Cedar {
    use serde_json::json;
    let policies: PolicySet = CEDAR_POLICIES.parse().expect("Cedar policies parse");
    let entity = |ty: &str, id: &str, attrs: serde_json::Value, parents: Vec<serde_json::Value>| json!({"uid": {"type": ty, "id": id}, "attrs": attrs, "parents": parents});
    let mut entities = vec![entity("Anonymous", "anonymous", json!({}), vec![])];
    for role in ["admin", "editor", "reviewer", "auditor"] {
        entities.push(entity("Role", role, json!({}), vec![]));
    }
    // Caller i is `User::"c<i>"`, a member of its roles. The shared document `d` is owned
    // by a user who is none of the callers; an owner caller gets its own document `d<i>`.
    entities.push(entity(
        "Doc",
        "d",
        json!({"owner": {"__entity": {"type": "User", "id": "someone-else"}}}),
        vec![],
    ));
    let mut principals = Vec::new();
    for (i, c) in CALLERS.iter().enumerate() {
        if c.user.is_none() {
            principals.push(uid("Anonymous::\"anonymous\""));
            continue;
        }
        let id = format!("c{i}");
        let parents = c
            .roles
            .iter()
            .map(|r| json!({"type": "Role", "id": r}))
            .collect();
        entities.push(entity("User", &id, json!({}), parents));
        principals.push(uid(&format!("User::\"{id}\"")));
        if c.owner {
            entities.push(entity(
                "Doc",
                &format!("d{i}"),
                json!({"owner": {"__entity": {"type": "User", "id": id}}}),
                vec![],
            ));
        }
    }
    // Action groups: every READ method is `in Action::"READ"`.
    entities.push(entity("Action", "READ", json!({}), vec![]));
    let mut actions = Vec::new();
    for (name, access) in METHODS {
        let parents = if access == AccessType::Read {
            vec![json!({"type": "Action", "id": "READ"})]
        } else {
            vec![]
        };
        entities.push(entity("Action", name, json!({}), parents));
        actions.push(uid(&format!("Action::\"{name}\"")));
    }
    let entities =
        Entities::from_json_value(serde_json::Value::Array(entities), None).expect("entities");
    Cedar {
        policies,
        entities,
        authorizer: Authorizer::new(),
        principals,
        actions,
    }
}

impl Cedar {
    fn resource_for(&self, caller: usize) -> EntityUid {
        if CALLERS[caller].owner {
            uid(&format!("Doc::\"d{caller}\""))
        } else {
            uid("Doc::\"d\"")
        }
    }

    fn decide(&self, caller: usize, method: usize, resource: &EntityUid) -> bool {
        let request = Request::new(
            self.principals[caller].clone(),
            self.actions[method].clone(),
            resource.clone(),
            Context::empty(),
            None,
        )
        .expect("request");
        self.authorizer
            .is_authorized(&request, &self.policies, &self.entities)
            .decision()
            == cedar_policy::Decision::Allow
    }
}

/// Both engines agree on every method × caller (else the comparison is meaningless).
fn assert_equivalent(engine: &Engine, cedar: &Cedar) {
    let db = DbRules::empty();
    let mut mismatches = Vec::new();
    for (ci, caller) in CALLERS.iter().enumerate() {
        let resource = cedar.resource_for(ci);
        for (mi, (method, _)) in METHODS.iter().enumerate() {
            let a = decide(engine, &db, caller, &principals(caller, false), mi);
            let b = decide(engine, &db, caller, &principals(caller, true), mi);
            let c = cedar.decide(ci, mi, &resource);
            if a != b || a != c {
                mismatches.push(format!(
                    "{} {method}: portcullis oracle {a}, principals {b}, cedar {c}",
                    caller.name
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "the policy sets disagree:\n{}",
        mismatches.join("\n")
    );
}

/// The timed cases: `(label, caller index, method index)`.
const CASES: [(&str, usize, usize); 5] = [
    // $everyone READ: decided by built-in roles, no question asked.
    ("anonymous_find", 0, 0),
    // $owner asked (oracle) and held.
    ("owner_delete", 2, 5),
    // editor's static role: asked through the oracle, or given as a ROLE principal.
    ("editor_publish", 3, 8),
    // reviewer-owner approve: named role beats $owner's DENY.
    ("reviewer_owner_approve", 6, 10),
    // plain user approve: reviewer and $owner asked, admin asked, default deny.
    ("user_approve_denied", 1, 10),
];

fn bench(c: &mut Criterion) {
    let engine = engine();
    let cedar = cedar();
    assert_equivalent(&engine, &cedar);
    let db = DbRules::empty();
    let mut group = c.benchmark_group("decision");
    for (label, ci, mi) in CASES {
        let caller = &CALLERS[ci];
        let plain = principals(caller, false);
        let with_roles = principals(caller, true);
        group.bench_function(format!("portcullis_oracle/{label}"), |b| {
            b.iter(|| decide(&engine, &db, caller, black_box(&plain), black_box(mi)))
        });
        if !caller.roles.is_empty() {
            group.bench_function(format!("portcullis_principals/{label}"), |b| {
                b.iter(|| decide(&engine, &db, caller, black_box(&with_roles), black_box(mi)))
            });
        }
        let resource = cedar.resource_for(ci);
        group.bench_function(format!("cedar/{label}"), |b| {
            b.iter(|| cedar.decide(black_box(ci), black_box(mi), &resource))
        });
    }
    // Every method × caller once per iteration (126 decisions): the mix.
    let all: Vec<(usize, Vec<Principal>, EntityUid)> = (0..CALLERS.len())
        .map(|ci| (ci, principals(&CALLERS[ci], false), cedar.resource_for(ci)))
        .collect();
    group.bench_function("portcullis_oracle/all_126", |b| {
        b.iter(|| {
            let mut n = 0;
            for (ci, p, _) in &all {
                for mi in 0..METHODS.len() {
                    n += usize::from(decide(&engine, &db, &CALLERS[*ci], p, mi));
                }
            }
            n
        })
    });
    group.bench_function("cedar/all_126", |b| {
        b.iter(|| {
            let mut n = 0;
            for (ci, _, r) in &all {
                for mi in 0..METHODS.len() {
                    n += usize::from(cedar.decide(*ci, mi, r));
                }
            }
            n
        })
    });
    group.finish();
}

/// Median nanoseconds per call of `f`: 31 samples of a batch sized to ~2 ms.
fn median_ns(mut f: impl FnMut() -> bool) -> f64 {
    let mut batch = 1u32;
    loop {
        let t = Instant::now();
        for _ in 0..batch {
            black_box(f());
        }
        if t.elapsed() > Duration::from_millis(2) || batch >= 1 << 24 {
            break;
        }
        batch *= 2;
    }
    let mut samples: Vec<f64> = (0..31)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..batch {
                black_box(f());
            }
            t.elapsed().as_nanos() as f64 / f64::from(batch)
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn output_dir() -> std::path::PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return home.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("criterion")
}

/// Portcullis/Cedar medians, printed and written as JSON.
fn ratios() {
    let engine = engine();
    let cedar = cedar();
    let db = DbRules::empty();
    let mut rows = Vec::new();
    println!("\nmedian decision latency (ns), Portcullis vs cedar-policy (same harness):");
    println!(
        "{:<24}{:>12}{:>14}{:>10}{:>10}{:>10}",
        "case", "oracle", "principals", "cedar", "o/cedar", "p/cedar"
    );
    for (label, ci, mi) in CASES {
        let caller = &CALLERS[ci];
        let plain = principals(caller, false);
        let with_roles = principals(caller, true);
        let resource = cedar.resource_for(ci);
        let oracle = median_ns(|| decide(&engine, &db, caller, black_box(&plain), black_box(mi)));
        let given =
            median_ns(|| decide(&engine, &db, caller, black_box(&with_roles), black_box(mi)));
        let c = median_ns(|| cedar.decide(black_box(ci), black_box(mi), &resource));
        println!(
            "{label:<24}{oracle:>12.0}{given:>14.0}{c:>10.0}{:>10.3}{:>10.3}",
            oracle / c,
            given / c
        );
        rows.push(serde_json::json!({
            "case": label,
            "portcullis_oracle_ns": oracle,
            "portcullis_principals_ns": given,
            "cedar_ns": c,
            "ratio_oracle_over_cedar": oracle / c,
            "ratio_principals_over_cedar": given / c,
        }));
    }
    let dir = output_dir();
    let file = dir.join("portcullis-authz-vs-cedar.json");
    let doc = serde_json::json!({ "unit": "ns per decision (median)", "cases": rows });
    if std::fs::create_dir_all(&dir).is_ok() && std::fs::write(&file, format!("{doc:#}\n")).is_ok()
    {
        println!("written: {}", file.display());
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(30);
    targets = bench
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // `cargo test --benches` runs this binary in test mode: skip the extra timing then.
    if std::env::args().any(|a| a == "--bench") {
        ratios();
    }
}
