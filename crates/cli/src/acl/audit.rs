//! `portcullis acl audit`: decides every public model × remote method × built-in caller
//! kind from the static rules, prints the matrix, then lists risky configurations.
//!
//! Caller kinds:
//! - anonymous: no token, so `$unauthenticated` and `$everyone` hold;
//! - authenticated: a user token, so `$authenticated` and `$everyone` hold;
//! - owner: an authenticated user for whom `$owner` holds, but only for methods with a
//!   `/:id` route (the server takes `$owner`'s model id from the URL only, so for `find` or
//!   `create` an owner is just an authenticated user).
//!
//! Static and custom roles are never held: the audit shows what the built-in roles alone
//! open up.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use portcullis_authz::{
    AccessType, Decision, Engine, Permission, Principal, PrincipalType, RuleSource, OWNER, RELATED,
};
use portcullis_schema::{App, Model};
use portcullis_server::route::{model_methods, RemoteMethod};

use super::{addresses_instance, classify_method_name, decide, engine, table, MethodName};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Anonymous,
    Authenticated,
    Owner,
}

impl Caller {
    const ALL: [Caller; 3] = [Caller::Anonymous, Caller::Authenticated, Caller::Owner];

    fn label(self) -> &'static str {
        match self {
            Caller::Anonymous => "anonymous",
            Caller::Authenticated => "authenticated",
            Caller::Owner => "owner",
        }
    }

    fn principals(self) -> Vec<Principal> {
        match self {
            Caller::Anonymous => Vec::new(),
            // Any id will do: no USER rule can name it, and roles are answered below.
            Caller::Authenticated | Caller::Owner => vec![Principal::user("audit-user")],
        }
    }
}

/// One check of the matrix.
fn check(engine: &Engine, model: &Model, method: &RemoteMethod, caller: Caller) -> Decision {
    let owner = caller == Caller::Owner && addresses_instance(method);
    let mut oracle = |role: &str| role == OWNER && owner;
    decide(engine, model, method, &caller.principals(), &mut oracle)
}

/// Whether `method` of `model` is allowed to `caller`; `None` when the model has no such
/// method.
fn allowed(engine: &Engine, model: &Model, method: &str, caller: Caller) -> Option<bool> {
    let methods = model_methods(model);
    let m = methods.iter().find(|m| m.name == method)?;
    Some(check(engine, model, m, caller).allowed)
}

fn cell(d: &Decision) -> String {
    let verdict = if d.allowed { "ALLOW" } else { "DENY" };
    if d.deciding.is_none() {
        format!("{verdict}*")
    } else {
        verdict.to_string()
    }
}

struct Finding {
    kind: &'static str,
    text: String,
}

pub fn run(app_dir: &Path, strict: bool) -> Result<ExitCode> {
    let app = crate::load(app_dir)?;
    let engine = engine(&app);
    println!("Static rules only: ACL table (database) rules are not read; static and custom roles are not held.");
    println!("Columns: anonymous ($unauthenticated, $everyone) | authenticated ($authenticated) | owner ($authenticated + $owner, for /:id methods).");
    println!("`*` after a verdict: no rule decided, the model's default permission applied.");
    println!("Writes opened by LoopBack's built-in rules (User sign-up) are not flagged.");
    let mut findings = Vec::new();
    if !app.config.enable_auth {
        findings.push(Finding {
            kind: "auth-disabled",
            text: "enableAuth is false in server/config.json: no ACL is enforced at all"
                .to_string(),
        });
    }
    for model in app.public_models() {
        println!();
        println!("{} ({} static rules)", model.name, model.acls.len());
        let mut rows = Vec::new();
        let mut open_writes = Vec::new();
        for method in model_methods(model) {
            let decisions: Vec<Decision> = Caller::ALL
                .iter()
                .map(|&c| check(&engine, model, &method, c))
                .collect();
            // A write opened by a built-in rule is LoopBack's own default (User sign-up via
            // `$everyone ALLOW create`), not this app's configuration.
            let anonymous = decisions.first();
            if method.access_type == AccessType::Write
                && anonymous.is_some_and(|d| d.allowed)
                && !anonymous
                    .and_then(Decision::deciding_rule)
                    .is_some_and(|r| matches!(r.source, RuleSource::BuiltIn { .. }))
            {
                open_writes.push(method.name.clone());
            }
            let mut row = vec![
                format!("{}.{}", model.name, method.name),
                method.access_type.to_string(),
            ];
            row.extend(decisions.iter().map(cell));
            rows.push(row);
        }
        print!(
            "{}",
            table(
                "  ",
                &["method", "access", "anonymous", "authenticated", "owner"],
                &rows
            )
        );
        if model.acls.is_empty() && model.options.default_permission != Some(Permission::Deny) {
            findings.push(Finding {
                kind: "no-acls",
                text: format!(
                    "{} has no ACL rules at all: every method is open to everyone",
                    model.name
                ),
            });
        }
        if !open_writes.is_empty() {
            findings.push(Finding {
                kind: "anonymous-write",
                text: format!(
                    "{}: WRITE methods open to anonymous callers: {}",
                    model.name,
                    open_writes.join(", ")
                ),
            });
        }
        relation_findings(&app, &engine, model, &mut findings);
    }
    dead_rule_findings(&app, &mut findings);

    println!();
    if findings.is_empty() {
        println!("Findings: none");
    } else {
        println!("Findings ({}):", findings.len());
        for f in &findings {
            println!("  - [{}] {}", f.kind, f.text);
        }
    }
    Ok(if strict && !findings.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `include` and relation routes read the target model without consulting the target's
/// ACLs (LoopBack 3 checks the source model only). Flags each relation whose target denies
/// its own reads to a caller that the source lets through.
///
/// Only anonymous and authenticated callers are compared: `$owner` of the source instance
/// says nothing about the target instance, so an "owner" comparison would flag a user
/// reading their own record.
fn relation_findings(app: &App, engine: &Engine, model: &Model, findings: &mut Vec<Finding>) {
    let callers = [Caller::Anonymous, Caller::Authenticated];
    for relation in &model.relations {
        let target = app.model(relation.target);
        let denied_reads = |caller| -> Vec<String> {
            ["find", "findById"]
                .into_iter()
                .filter(|m| allowed(engine, target, m, caller) == Some(false))
                .map(str::to_string)
                .collect()
        };
        let mut include_hits = Hits::default();
        let mut route_hits = Hits::default();
        for caller in callers {
            let denied = denied_reads(caller);
            if denied.is_empty() {
                continue;
            }
            if !relation.disable_include {
                let open = open_methods(engine, model, ["find", "findOne", "findById"], caller);
                include_hits.add(caller, open, &denied);
            }
            let open = open_methods(
                engine,
                model,
                [
                    format!("__get__{}", relation.name),
                    format!("__findById__{}", relation.name),
                ],
                caller,
            );
            route_hits.add(caller, open, &denied);
        }
        if !include_hits.is_empty() {
            findings.push(Finding {
                kind: "include-exposure",
                text: format!(
                    "{}.{} -> {}: {}; `filter[include]={}` returns {} rows anyway \
                     (include ignores the target model's ACLs)",
                    model.name,
                    relation.name,
                    target.name,
                    include_hits.text(model, target),
                    relation.name,
                    target.name
                ),
            });
        }
        if !route_hits.is_empty() {
            findings.push(Finding {
                kind: "relation-route",
                text: format!(
                    "{}.{} -> {}: {}; relation routes check {}'s ACLs only",
                    model.name,
                    relation.name,
                    target.name,
                    route_hits.text(model, target),
                    model.name
                ),
            });
        }
    }
}

/// The methods of `model` among `names` that `caller` may call.
fn open_methods<S: AsRef<str>>(
    engine: &Engine,
    model: &Model,
    names: impl IntoIterator<Item = S>,
    caller: Caller,
) -> Vec<String> {
    names
        .into_iter()
        .filter(|m| allowed(engine, model, m.as_ref(), caller) == Some(true))
        .map(|m| m.as_ref().to_string())
        .collect()
}

/// Per caller kind: source methods let through and target reads denied. Caller kinds with
/// the same lists share one sentence.
#[derive(Default)]
struct Hits(Vec<(Vec<&'static str>, Vec<String>, Vec<String>)>);

impl Hits {
    fn add(&mut self, caller: Caller, open: Vec<String>, denied: &[String]) {
        if open.is_empty() {
            return;
        }
        match self
            .0
            .iter_mut()
            .find(|(_, o, d)| *o == open && d.as_slice() == denied)
        {
            Some((callers, _, _)) => callers.push(caller.label()),
            None => self.0.push((vec![caller.label()], open, denied.to_vec())),
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn text(&self, source: &Model, target: &Model) -> String {
        self.0
            .iter()
            .map(|(callers, open, denied)| {
                format!(
                    "{} callers may call {}.{} while {}.{} deny them",
                    callers.join(" and "),
                    source.name,
                    open.join("/"),
                    target.name,
                    denied.join("/")
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Static rules that can never match: a `property` naming a method alias (LoopBack 3.28
/// compares static rules with the canonical name only), a data property, or nothing the
/// model exposes; and rules for `$related`, which has no resolver.
///
/// Every model is checked (hidden ones too, their rules still describe intent); a rule
/// inherited by several models is reported once per model that still cannot match it.
fn dead_rule_findings(app: &App, findings: &mut Vec<Finding>) {
    let mut seen = BTreeSet::new();
    for model in &app.models {
        let methods = model_methods(model);
        for rule in &model.acls {
            if rule.principal_type == PrincipalType::Role && rule.principal_id == RELATED {
                let key = (rule.source.to_string(), String::new(), RELATED.to_string());
                if seen.insert(key) {
                    findings.push(Finding {
                        kind: "never-matches",
                        text: format!(
                            "{}: `{rule}` names {RELATED}, which never holds in LoopBack 3 \
                             (no resolver)",
                            rule.source
                        ),
                    });
                }
            }
            for name in rule.property.names() {
                if name == "*" {
                    continue;
                }
                let why = match classify_method_name(model, &methods, name) {
                    MethodName::Method => continue,
                    MethodName::Alias { canonical } => format!(
                        "`{name}` is an alias of `{canonical}`; LoopBack 3.28 silently ignores \
                         aliases in static ACLs, name `{canonical}` instead"
                    ),
                    MethodName::Property => format!(
                        "`{name}` is a data property of {}, not a method; ACLs never protect \
                         fields",
                        model.name
                    ),
                    MethodName::Unknown => {
                        format!("`{name}` is no remote method of {}", model.name)
                    }
                };
                let key = (rule.source.to_string(), name.clone(), why.clone());
                if seen.insert(key) {
                    findings.push(Finding {
                        kind: "never-matches",
                        text: format!("{} ({}): {why}", rule.source, model.name),
                    });
                }
            }
        }
    }
}
