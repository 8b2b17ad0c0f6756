//! Table-driven tests: the seed example and the worked examples of
//! loopback3-semantics.md §3.3, §3.4 and §3.8, each with its expected outcome inline.

mod common;

use common::{db, principal, statics};
use portcullis_authz::{
    denial_status, score, AccessRequest, AccessType, DbRules, Engine, Permission, PrincipalCheck,
    RuleOrigin, Step, Vote,
};

/// One scenario. `roles` lists the roles the caller's resolver says are held; asking for
/// any other role answers false.
struct Case {
    name: &'static str,
    model: &'static str,
    /// The model owning `statics` (the request's model when empty).
    static_model: &'static str,
    statics: &'static [&'static str],
    db: &'static [&'static str],
    method: &'static str,
    aliases: &'static [&'static str],
    access: AccessType,
    principals: &'static [&'static str],
    roles: &'static [&'static str],
    default: Option<Permission>,
    allowed: bool,
    permission: Permission,
    /// `s<i>` static rule i, `d<i>` DB rule i, `-` none.
    decided_by: &'static str,
}

const BASE: Case = Case {
    name: "",
    model: "Post",
    static_model: "",
    statics: &[],
    db: &[],
    method: "find",
    aliases: &[],
    access: AccessType::Read,
    principals: &[],
    roles: &[],
    default: None,
    allowed: true,
    permission: Permission::Allow,
    decided_by: "-",
};

use AccessType::{Execute, Read, Write};
use Permission::{Allow, Deny};

fn cases() -> Vec<Case> {
    vec![
        // Seed (001, §3.8): rules #3, #2, #1 → DENY. Rule #1 names model `*`, so all three
        // are DB rules (a DB EXECUTE rule is fetched for an EXECUTE request).
        Case {
            name: "seed",
            model: "order",
            db: &[
                "* find EXECUTE ROLE $authenticated ALLOW",
                "order * * ROLE $authenticated ALLOW",
                "order find * ROLE $authenticated DENY",
            ],
            access: Execute,
            principals: &["USER 1"],
            allowed: false,
            permission: Deny,
            decided_by: "d2",
            ..BASE
        },
        // The seed as DB rules for the REST request (READ): rule #1 (DB EXECUTE) is not
        // fetched, #3 still beats #2.
        Case {
            name: "seed (DB, READ)",
            model: "order",
            db: &[
                "* find EXECUTE ROLE $authenticated ALLOW",
                "order * * ROLE $authenticated ALLOW",
                "order find * ROLE $authenticated DENY",
            ],
            principals: &["USER 1"],
            allowed: false,
            permission: Deny,
            decided_by: "d2",
            ..BASE
        },
        // The seed as static rules of `order.json`: LoopBack replaces a static rule's model
        // by the owning model (§3.9), so rule #1 becomes (3,3,3) = 8136 and wins → ALLOW.
        Case {
            name: "seed (static, READ)",
            model: "order",
            statics: &[
                "* find EXECUTE ROLE $authenticated ALLOW",
                "order * * ROLE $authenticated ALLOW",
                "order find * ROLE $authenticated DENY",
            ],
            principals: &["USER 1"],
            decided_by: "s0",
            ..BASE
        },
        // 1. User defaults, anonymous GET /Users/1.
        Case {
            name: "ex1 anonymous findById on User",
            model: "User",
            statics: &[
                "User * * ROLE $everyone DENY",
                "User findById * ROLE $owner ALLOW",
            ],
            method: "findById",
            allowed: false,
            permission: Deny,
            decided_by: "s0",
            ..BASE
        },
        // 2. Same, caller is user 1 (owner).
        Case {
            name: "ex2 owner findById on User",
            model: "User",
            statics: &[
                "User * * ROLE $everyone DENY",
                "User findById * ROLE $owner ALLOW",
            ],
            method: "findById",
            principals: &["USER 1"],
            roles: &["$owner"],
            allowed: true,
            permission: Allow,
            decided_by: "s1",
            ..BASE
        },
        // 3. $owner ALLOW * beats $everyone DENY * (7504 vs 7495); non-owner denied.
        Case {
            name: "ex3 owner",
            statics: &["Post * * ROLE $everyone DENY", "Post * * ROLE $owner ALLOW"],
            method: "findById",
            principals: &["USER 1"],
            roles: &["$owner"],
            allowed: true,
            permission: Allow,
            decided_by: "s1",
            ..BASE
        },
        Case {
            name: "ex3 non-owner",
            statics: &["Post * * ROLE $everyone DENY", "Post * * ROLE $owner ALLOW"],
            method: "findById",
            principals: &["USER 2"],
            allowed: false,
            permission: Deny,
            decided_by: "s0",
            ..BASE
        },
        // 4. Role class 4 > 2.
        Case {
            name: "ex4 owner beats $authenticated DENY",
            statics: &[
                "Post * * ROLE $authenticated DENY",
                "Post * * ROLE $owner ALLOW",
            ],
            method: "findById",
            principals: &["USER 1"],
            roles: &["$owner"],
            allowed: true,
            permission: Allow,
            decided_by: "s1",
            ..BASE
        },
        // 5. Static roles of the same class: DENY wins; admin alone allows.
        Case {
            name: "ex5 admin and banned",
            statics: &["Post * * ROLE admin ALLOW", "Post * * ROLE banned DENY"],
            principals: &["USER 1"],
            roles: &["admin", "banned"],
            allowed: false,
            permission: Deny,
            decided_by: "s1",
            ..BASE
        },
        Case {
            name: "ex5 admin only",
            statics: &["Post * * ROLE admin ALLOW", "Post * * ROLE banned DENY"],
            principals: &["USER 1"],
            roles: &["admin"],
            allowed: true,
            permission: Allow,
            decided_by: "s0",
            ..BASE
        },
        // 6. Property match outranks principal type.
        Case {
            name: "ex6 property beats principal type",
            statics: &[
                "Post * * USER alice DENY",
                "Post find * ROLE $everyone ALLOW",
            ],
            principals: &["USER alice"],
            allowed: true,
            permission: Allow,
            decided_by: "s1",
            ..BASE
        },
        // 7. Access type outranks principal type.
        Case {
            name: "ex7 access type beats principal type",
            statics: &[
                "Post find * USER alice DENY",
                "Post find READ ROLE $everyone ALLOW",
            ],
            principals: &["USER alice"],
            allowed: true,
            permission: Allow,
            decided_by: "s1",
            ..BASE
        },
        // 8. APP rule with wildcard access type loses to an exact-access-type DENY.
        Case {
            name: "ex8 app",
            statics: &["Post * * APP app1 ALLOW", "Post * READ ROLE $everyone DENY"],
            principals: &["USER 1", "APP app1"],
            allowed: false,
            permission: Deny,
            decided_by: "s1",
            ..BASE
        },
        // 9. DB `* find * $unauthenticated DENY`: anonymous denied on every model.
        Case {
            name: "ex9 anonymous on Post",
            db: &["* find * ROLE $unauthenticated DENY"],
            allowed: false,
            permission: Deny,
            decided_by: "d0",
            ..BASE
        },
        Case {
            name: "ex9 anonymous on Comment",
            model: "Comment",
            db: &["* find * ROLE $unauthenticated DENY"],
            allowed: false,
            permission: Deny,
            decided_by: "d0",
            ..BASE
        },
        Case {
            name: "ex9 authenticated passes",
            db: &["* find * ROLE $unauthenticated DENY"],
            principals: &["USER 1"],
            ..BASE
        },
        // 10. READ rule exact for READ, incompatible with WRITE.
        Case {
            name: "ex10 find",
            statics: &[
                "Post * READ ROLE $everyone ALLOW",
                "Post * * ROLE $everyone DENY",
            ],
            decided_by: "s0",
            ..BASE
        },
        Case {
            name: "ex10 create",
            statics: &[
                "Post * READ ROLE $everyone ALLOW",
                "Post * * ROLE $everyone DENY",
            ],
            method: "create",
            access: Write,
            allowed: false,
            permission: Deny,
            decided_by: "s1",
            ..BASE
        },
        // 11. Same specificity: DENY wins.
        Case {
            name: "ex11",
            statics: &[
                "Post find * ROLE $everyone DENY",
                "Post find * ROLE $everyone ALLOW",
            ],
            allowed: false,
            permission: Deny,
            decided_by: "s0",
            ..BASE
        },
        // 12. No permission: scored as ALLOW, resolves DEFAULT → the model default (ALLOW).
        Case {
            name: "ex12 missing permission",
            statics: &["Post * * ROLE $everyone"],
            decided_by: "s0",
            ..BASE
        },
        Case {
            name: "ex12 missing permission, defaultPermission DENY",
            statics: &["Post * * ROLE $everyone"],
            default: Some(Deny),
            allowed: false,
            permission: Deny,
            decided_by: "s0",
            ..BASE
        },
        // 13. A rule without principalType is ignored in LB3 (→ ALLOW). Our `Rule` always has
        // one: the schema loader refuses a rule without it (`RuleError::MissingPrincipalType`),
        // so the case cannot reach the engine.
        //
        // 14. defaultPermission DENY without rules.
        Case {
            name: "ex14 defaultPermission DENY",
            principals: &["USER 1"],
            default: Some(Deny),
            allowed: false,
            permission: Deny,
            ..BASE
        },
        Case {
            name: "no rules: open",
            ..BASE
        },
        // 15. $related never holds (and is never asked of the resolver).
        Case {
            name: "ex15 $related",
            statics: &[
                "Post * * ROLE $everyone DENY",
                "Post * * ROLE $related ALLOW",
            ],
            principals: &["USER 1"],
            roles: &["$related"],
            allowed: false,
            permission: Deny,
            decided_by: "s0",
            ..BASE
        },
        // 16. (programmatic in LB3) {account, find, WRITE}: READ rule fails, $owner ALLOW
        // 7504 beats $everyone DENY 7495.
        Case {
            name: "ex16",
            model: "account",
            statics: &[
                "account * * ROLE $everyone DENY",
                "account * * ROLE $owner ALLOW",
                "account * READ ROLE $everyone ALLOW",
            ],
            access: Write,
            principals: &["USER 1"],
            roles: &["$owner"],
            decided_by: "s1",
            ..BASE
        },
        // §3.3: static EXECUTE rule behaves like `*` with exact weight.
        Case {
            name: "static EXECUTE DENY blocks find",
            statics: &[
                "Post * READ ROLE $everyone ALLOW",
                "Post * EXECUTE ROLE $everyone DENY",
            ],
            allowed: false,
            permission: Deny,
            decided_by: "s1",
            ..BASE
        },
        // §3.1: a DB EXECUTE rule never reaches a READ method…
        Case {
            name: "DB EXECUTE DENY does not affect find",
            db: &["Post * EXECUTE ROLE $everyone DENY"],
            ..BASE
        },
        Case {
            name: "DB EXECUTE DENY does not affect create",
            db: &["Post * EXECUTE ROLE $everyone DENY"],
            method: "create",
            access: Write,
            ..BASE
        },
        // …but does reach an EXECUTE method.
        Case {
            name: "DB EXECUTE DENY affects a custom method",
            db: &["Post * EXECUTE ROLE $everyone DENY"],
            method: "publish",
            access: Execute,
            allowed: false,
            permission: Deny,
            decided_by: "d0",
            ..BASE
        },
        // A DB WRITE rule is fetched for REPLICATE.
        Case {
            name: "DB WRITE reaches REPLICATE",
            db: &["Post * WRITE ROLE $everyone DENY"],
            method: "createUpdates",
            access: AccessType::Replicate,
            allowed: false,
            permission: Deny,
            decided_by: "d0",
            ..BASE
        },
        // Aliases: static rules ignore them, DB rules honour them (§3.1, issue #2633).
        Case {
            name: "static rule on alias ignored",
            statics: &["Post updateAttributes * ROLE $everyone DENY"],
            method: "patchAttributes",
            aliases: &["updateAttributes"],
            access: Write,
            ..BASE
        },
        Case {
            name: "DB rule on alias honoured",
            db: &["Post updateAttributes * ROLE $everyone DENY"],
            method: "patchAttributes",
            aliases: &["updateAttributes"],
            access: Write,
            allowed: false,
            permission: Deny,
            decided_by: "d0",
            ..BASE
        },
        Case {
            name: "static list naming the method",
            statics: &["Post [create,find] * ROLE $everyone DENY"],
            allowed: false,
            permission: Deny,
            decided_by: "s0",
            ..BASE
        },
        Case {
            name: "static list not naming the method",
            statics: &["Post [create,deleteById] * ROLE $everyone DENY"],
            ..BASE
        },
        // Static rules of another model never apply.
        Case {
            name: "other model's static rules",
            model: "Comment",
            static_model: "Post",
            statics: &["Post * * ROLE $everyone DENY"],
            ..BASE
        },
        // Tie anomaly (§3.4): $authenticated DEFAULT = $everyone DENY = 7495; pool order wins.
        Case {
            name: "tie: DENY first",
            statics: &[
                "Post * * ROLE $everyone DENY",
                "Post * * ROLE $authenticated DEFAULT",
            ],
            principals: &["USER 1"],
            allowed: false,
            permission: Deny,
            decided_by: "s0",
            ..BASE
        },
        Case {
            name: "tie: DEFAULT first",
            statics: &[
                "Post * * ROLE $authenticated DEFAULT",
                "Post * * ROLE $everyone DENY",
            ],
            principals: &["USER 1"],
            decided_by: "s0",
            ..BASE
        },
        // DB rules precede static rules in the pool, so a DB rule wins a tie.
        Case {
            name: "tie: DB before static",
            statics: &["Post * * ROLE $everyone DENY"],
            db: &["Post * * ROLE $authenticated DEFAULT"],
            principals: &["USER 1"],
            decided_by: "d0",
            ..BASE
        },
        // A custom user model principal authenticates, and matches its own rules.
        Case {
            name: "custom user model",
            statics: &[
                "Post * * ROLE $unauthenticated DENY",
                "Post * * Customer 7 DENY",
            ],
            principals: &["Customer 8"],
            ..BASE
        },
        Case {
            name: "custom user model rule",
            statics: &["Post * * Customer 7 DENY"],
            principals: &["Customer 7"],
            allowed: false,
            permission: Deny,
            decided_by: "s0",
            ..BASE
        },
        // A USER rule does not match a custom-type principal with the same id.
        Case {
            name: "type must match",
            statics: &["Post * * USER 7 DENY"],
            principals: &["Customer 7"],
            ..BASE
        },
        // A ROLE principal of the request holds its role without asking.
        Case {
            name: "role principal",
            statics: &["Post * * ROLE admin DENY"],
            principals: &["ROLE admin"],
            allowed: false,
            permission: Deny,
            decided_by: "s0",
            ..BASE
        },
        // ALARM and AUDIT allow.
        Case {
            name: "AUDIT allows",
            statics: &["Post * * ROLE $everyone AUDIT"],
            permission: Permission::Audit,
            decided_by: "s0",
            ..BASE
        },
    ]
}

fn origin(s: &str) -> Option<RuleOrigin> {
    let (kind, i) = s.split_at(1);
    match kind {
        "s" => Some(RuleOrigin::Static(i.parse().expect("index"))),
        "d" => Some(RuleOrigin::Db(i.parse().expect("index"))),
        _ => None,
    }
}

#[test]
fn worked_examples() {
    let mut failures = Vec::new();
    for case in cases() {
        let owner = if case.static_model.is_empty() {
            case.model
        } else {
            case.static_model
        };
        let engine = Engine::new([(owner, statics(owner, case.statics))]);
        let db_rules = DbRules::new(db(case.db));
        let aliases: Vec<String> = case.aliases.iter().map(|s| s.to_string()).collect();
        let principals: Vec<_> = case.principals.iter().map(|p| principal(p)).collect();
        let request = AccessRequest::new(case.model, case.method, &aliases, case.access);
        let mut asked = Vec::new();
        let decision = engine.decide(
            &request,
            &principals,
            &db_rules,
            case.default,
            &mut |r: &str| {
                asked.push(r.to_string());
                case.roles.contains(&r)
            },
        );
        let got_origin = decision.deciding_entry().map(|e| e.origin);
        if decision.allowed != case.allowed
            || decision.permission != case.permission
            || got_origin != origin(case.decided_by)
        {
            failures.push(format!(
                "{}: expected allowed={} {} by {}, got\n{decision}",
                case.name, case.allowed, case.permission, case.decided_by
            ));
        }
        for role in &asked {
            assert!(
                !role.starts_with("$everyone")
                    && role != "$authenticated"
                    && role != "$unauthenticated"
                    && role != "$related",
                "{}: built-in role {role} was asked of the caller",
                case.name
            );
        }
        let mut unique = asked.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            asked.len(),
            "{}: a role was asked twice",
            case.name
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn seed_ranking_and_scores() {
    let engine = Engine::new([("order", Vec::new())]);
    let db_rules = DbRules::new(db(&[
        "* find EXECUTE ROLE $authenticated ALLOW",
        "order * * ROLE $authenticated ALLOW",
        "order find * ROLE $authenticated DENY",
    ]));
    let principals = [principal("USER 1")];
    let request = AccessRequest::new("order", "find", &[], Execute);
    let decision = engine.decide(&request, &principals, &db_rules, None, &mut |_: &str| false);
    let order: Vec<_> = decision
        .trail
        .iter()
        .map(|e| (e.origin, e.score_value()))
        .collect();
    assert_eq!(
        order,
        vec![
            (RuleOrigin::Db(2), 8011),
            (RuleOrigin::Db(1), 7496),
            (RuleOrigin::Db(0), 6088),
        ]
    );
    assert!(!decision.allowed);
    // The REST request (READ): rule #1's EXECUTE still scores 3.
    let read = AccessRequest::new("order", "find", &[], Read);
    let scores: Vec<i32> = db_rules
        .rules()
        .iter()
        .map(|r| score(r, &read).value())
        .collect();
    assert_eq!(scores, vec![6088, 7496, 8011]);
}

#[test]
fn lazy_resolution_asks_only_above_the_winner() {
    // USER 1 DENY (K=4) outranks both role rules: nothing is asked.
    let engine = Engine::new([(
        "Post",
        statics(
            "Post",
            &[
                "Post * * ROLE $owner ALLOW",
                "Post * * USER 1 DENY",
                "Post * * ROLE admin ALLOW",
            ],
        ),
    )]);
    let principals = [principal("USER 1")];
    let request = AccessRequest::new("Post", "find", &[], Read);
    let db_rules = DbRules::empty();
    let mut run = engine.start(&request, &principals, &db_rules, None);
    let Step::Done(decision) = run.next() else {
        panic!("no role should be asked");
    };
    assert!(!decision.allowed);
    assert_eq!(decision.trail[0].origin, RuleOrigin::Static(1));
    assert_eq!(decision.trail[1].check, PrincipalCheck::NotEvaluated);
    assert_eq!(decision.trail[2].check, PrincipalCheck::NotEvaluated);
    // Calling next again returns the same decision.
    assert_eq!(run.next(), Step::Done(decision));
}

#[test]
fn state_machine_asks_in_rank_order_and_memoises() {
    let engine = Engine::new([(
        "Post",
        statics(
            "Post",
            &[
                "Post * * ROLE $everyone DENY",
                "Post find * ROLE $owner ALLOW",
                "Post * * ROLE $owner ALLOW",
                "Post * * ROLE teamMember ALLOW",
            ],
        ),
    )]);
    let principals = [principal("USER 1")];
    let request = AccessRequest::new("Post", "find", &[], Read);
    let db_rules = DbRules::empty();
    let mut run = engine.start(&request, &principals, &db_rules, None);
    // find-specific $owner (P=3) first.
    assert_eq!(run.next(), Step::NeedRole("$owner".into()));
    assert_eq!(run.pending_role(), Some("$owner"));
    // Asking again without an answer repeats the question.
    assert_eq!(run.next(), Step::NeedRole("$owner".into()));
    run.answer(false);
    // The second $owner rule reuses the answer; teamMember (class 5) comes next.
    assert_eq!(run.next(), Step::NeedRole("teamMember".into()));
    run.answer(true);
    let Step::Done(decision) = run.next() else {
        panic!("expected a decision");
    };
    assert!(decision.allowed);
    assert_eq!(
        decision.deciding_entry().map(|e| e.origin),
        Some(RuleOrigin::Static(3))
    );
    assert_eq!(
        decision.roles_asked,
        vec![
            ("$owner".to_string(), false),
            ("teamMember".to_string(), true)
        ]
    );
    let checks: Vec<_> = decision.trail.iter().map(|e| (e.origin, e.check)).collect();
    assert_eq!(
        checks,
        vec![
            (RuleOrigin::Static(1), PrincipalCheck::Resolver(false)),
            (RuleOrigin::Static(3), PrincipalCheck::Resolver(true)),
            (RuleOrigin::Static(2), PrincipalCheck::NotEvaluated),
            (RuleOrigin::Static(0), PrincipalCheck::NotEvaluated),
        ]
    );
    assert_eq!(decision.vote(), Vote::Allow);
}

#[test]
fn unmatched_candidates_are_listed_last_and_never_evaluated() {
    let engine = Engine::new([(
        "Post",
        statics(
            "Post",
            &["Post * WRITE ROLE admin DENY", "Post * * ROLE $everyone"],
        ),
    )]);
    let request = AccessRequest::new("Post", "find", &[], Read);
    let db_rules = DbRules::empty();
    let decision = engine.decide(&request, &[], &db_rules, Some(Deny), &mut |_: &str| {
        panic!("nothing to ask")
    });
    // The missing-permission rule decides DEFAULT, settled to the model's DENY.
    assert_eq!(decision.resolved, Permission::Default);
    assert!(decision.default_applied);
    assert_eq!(decision.permission, Deny);
    assert_eq!(decision.vote(), Vote::Abstain);
    assert_eq!(decision.trail[1].score_value(), -1);
    assert!(!decision.trail[1].matched());
    assert_eq!(decision.trail[1].check, PrincipalCheck::NotEvaluated);
}

#[test]
fn explanation_names_sources_and_scores() {
    let engine = Engine::new([(
        "Post",
        statics(
            "Post",
            &[
                "Post * * ROLE $everyone DENY",
                "Post * * ROLE $owner ALLOW",
                "Post create * ROLE $authenticated ALLOW",
                "Post findById WRITE USER 2 ALLOW",
            ],
        ),
    )]);
    let request = AccessRequest::new("Post", "findById", &[], Read);
    let principals = [principal("USER 2")];
    let db_rules = DbRules::new(db(&["Post * * USER 9 DENY"]));
    let decision = engine.decide(&request, &principals, &db_rules, None, &mut |_: &str| false);
    let text = decision.to_string();
    assert!(
        text.starts_with("Post.findById (READ): denied with permission DENY\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "decided by Post.json acls[0]: DENY ROLE $everyone on Post.* (*) (score 7495)"
        ),
        "{text}"
    );
    assert!(
        text.contains("score  7504  ALLOW ROLE $owner on Post.* (*)  [Post.json acls[1]]"),
        "{text}"
    );
    assert!(
        text.contains("role $owner does not hold (resolved by the caller)"),
        "{text}"
    );
    assert!(
        text.contains("role $everyone holds; decides DENY"),
        "{text}"
    );
    assert!(
        text.contains("score  7555  DENY USER 9 on Post.* (*)  [ACL table row 1]"),
        "{text}"
    );
    assert!(
        text.contains("USER 9 is not a principal of the request"),
        "{text}"
    );
    assert!(
        text.contains("does not match the request (accessType differs)"),
        "{text}"
    );
    assert!(text.contains("asked role $owner: not held"), "{text}");
    // The `create` rule is not a candidate for findById.
    assert!(!text.contains("create"), "{text}");
}

#[test]
fn denial_status_follows_7_2() {
    assert_eq!(denial_status(false, None, None), 401);
    assert_eq!(denial_status(false, Some(403), Some(403)), 401);
    assert_eq!(denial_status(true, None, None), 401);
    assert_eq!(denial_status(true, None, Some(403)), 403);
    assert_eq!(denial_status(true, Some(404), Some(403)), 404);
    assert_eq!(denial_status(true, Some(401), Some(403)), 401);
}
