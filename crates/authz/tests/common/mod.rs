//! Test helpers: a compact rule notation.
//!
//! `"Post find READ ROLE $everyone ALLOW"` is `model property accessType principalType
//! principalId [permission]`; a missing permission (or `-`) is `None`; a property
//! `[a,b]` is a list; `*` is the wildcard.
#![allow(dead_code)]

use portcullis_authz::{
    AccessType, Permission, Principal, PrincipalType, PropertyMatch, Rule, RuleSource,
};

pub fn parse_rule(spec: &str, source: RuleSource) -> Rule {
    let parts: Vec<&str> = spec.split_whitespace().collect();
    assert!(
        parts.len() == 5 || parts.len() == 6,
        "bad rule spec `{spec}`"
    );
    let property = match parts[1] {
        "*" => PropertyMatch::Any,
        p if p.starts_with('[') => PropertyMatch::List(
            p.trim_matches(|c| c == '[' || c == ']')
                .split(',')
                .map(str::to_string)
                .collect(),
        ),
        p => PropertyMatch::One(p.to_string()),
    };
    let permission = match parts.get(5) {
        None | Some(&"-") => None,
        Some(p) => Some(Permission::parse(p).expect("permission")),
    };
    Rule {
        model: Some(parts[0].to_string()),
        property,
        access_type: AccessType::parse(parts[2]).expect("access type"),
        principal_type: PrincipalType::parse(parts[3]).expect("principal type"),
        principal_id: parts[4].to_string(),
        permission,
        source,
    }
}

/// Static rules of `model`, sourced `model.json acls[i]`.
pub fn statics(model: &str, specs: &[&str]) -> Vec<Rule> {
    specs
        .iter()
        .enumerate()
        .map(|(index, s)| {
            parse_rule(
                s,
                RuleSource::ModelJson {
                    model: model.to_string(),
                    index,
                },
            )
        })
        .collect()
}

/// DB rules sourced `ACL table row <i+1>`.
pub fn db(specs: &[&str]) -> Vec<Rule> {
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            parse_rule(
                s,
                RuleSource::Table {
                    id: (i + 1).to_string(),
                },
            )
        })
        .collect()
}

/// `"USER 1"`, `"APP a1"`, `"Customer 7"`.
pub fn principal(spec: &str) -> Principal {
    let (t, id) = spec.split_once(' ').expect("principal spec");
    Principal::new(PrincipalType::parse(t).expect("principal type"), id)
}
