//! LoopBack 3's matching score (`ACL.getMatchingScore`): how specifically a rule matches a
//! concrete request, as one integer that orders rules.
//!
//! ```text
//! score = 2048·M + 512·P + 128·A + 32·K + 4·R + (p − 1)     (−1 when an attribute fails)
//! ```
//!
//! `M`, `P`, `A` are the model, property and access-type points (3 exact, 2 rule wildcard,
//! 1 request wildcard), `K` the principal-type weight, `R` the role class (ROLE rules
//! only), `p` the permission order (a missing permission scores as ALLOW). Every digit is
//! at least 1, so the order is lexicographic on `(M, P, A, K, R, p)`.
//!
//! This module owns the arithmetic only; which rules get scored is the engine's business.

use std::fmt;

use crate::role::RoleClass;
use crate::{AccessType, Permission, PrincipalType, PropertyMatch, Rule};

/// The wildcard string of every rule attribute.
pub const ALL: &str = "*";

/// A request to authorize: what LoopBack calls the `AccessRequest` (plus the method's
/// aliases, which only DB rules may name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessRequest<'a> {
    /// The model the method is invoked on.
    pub model: &'a str,
    /// The canonical method name (`find`, `patchAttributes`, `__get__posts`…).
    pub method: &'a str,
    /// Other names of the method (`updateAttributes` for `patchAttributes`…). The canonical
    /// name need not be repeated.
    pub aliases: &'a [String],
    /// The method's access type. REST requests always carry a concrete one; `*` is only
    /// meaningful for programmatic checks and scores as a request wildcard.
    pub access_type: AccessType,
}

impl<'a> AccessRequest<'a> {
    pub fn new(
        model: &'a str,
        method: &'a str,
        aliases: &'a [String],
        access_type: AccessType,
    ) -> Self {
        Self {
            model,
            method,
            aliases,
            access_type,
        }
    }

    /// Whether `name` is the method's canonical name or one of its aliases
    /// (LoopBack's `methodNames`).
    pub fn is_method_name(&self, name: &str) -> bool {
        self.method == name || self.aliases.iter().any(|a| a == name)
    }
}

/// How one attribute of a rule matched the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttrMatch {
    /// The request attribute is `*` (programmatic checks only): 1 point.
    RequestWildcard,
    /// The rule attribute is `*`: 2 points.
    RuleWildcard,
    /// Exact, a method alias, or a compatible access type: 3 points.
    Exact,
}

impl AttrMatch {
    pub fn points(self) -> u32 {
        match self {
            Self::RequestWildcard => 1,
            Self::RuleWildcard => 2,
            Self::Exact => 3,
        }
    }
}

/// The digits of a rule's score against one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Score {
    /// `None`: the attribute does not match, the whole score is −1.
    pub model: Option<AttrMatch>,
    pub property: Option<AttrMatch>,
    pub access_type: Option<AttrMatch>,
    /// `K`: USER 4, APP 3, ROLE 2, custom user model 1.
    pub principal_weight: u32,
    /// `R`: the role class for ROLE rules, 0 otherwise.
    pub role_weight: u32,
    /// `p`: DEFAULT 0, ALLOW (or missing) 1, ALARM 2, AUDIT 3, DENY 4.
    pub permission_order: u32,
}

impl Score {
    /// Whether every attribute matched (the score is not −1).
    pub fn matches(&self) -> bool {
        self.model.is_some() && self.property.is_some() && self.access_type.is_some()
    }

    /// LoopBack's integer score, −1 when an attribute does not match.
    pub fn value(&self) -> i32 {
        let (Some(m), Some(p), Some(a)) = (self.model, self.property, self.access_type) else {
            return -1;
        };
        let mut s: i64 = 0;
        for digit in [m.points(), p.points(), a.points(), self.principal_weight] {
            s = s * 4 + i64::from(digit);
        }
        s = s * 8 + i64::from(self.role_weight);
        s = s * 4 + i64::from(self.permission_order) - 1;
        // Digits are bounded (≤ 5), so the value is below 2^14.
        i32::try_from(s).unwrap_or(i32::MAX)
    }

    /// The first attribute that failed, for explanations.
    pub fn failed_attribute(&self) -> Option<&'static str> {
        if self.model.is_none() {
            Some("model")
        } else if self.property.is_none() {
            Some("property")
        } else if self.access_type.is_none() {
            Some("accessType")
        } else {
            None
        }
    }
}

impl fmt::Display for Score {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.value())
    }
}

/// Model points: `rule_model` is the rule's value (`*` when missing).
pub fn model_points(rule_model: &str, request_model: &str) -> Option<AttrMatch> {
    generic_points(rule_model, request_model, rule_model == request_model)
}

/// Property points: exact when the rule names the method or one of its aliases.
pub fn property_points(rule_property: &str, request: &AccessRequest<'_>) -> Option<AttrMatch> {
    let exact = rule_property == request.method || request.is_method_name(rule_property);
    generic_points(rule_property, request.method, exact)
}

/// Access-type points, LoopBack's compatibility matrix: a rule `EXECUTE` matches any
/// request access type exactly, a rule `WRITE` also matches `REPLICATE`, a rule `*` is a
/// wildcard.
pub fn access_points(rule: AccessType, request: AccessType) -> Option<AttrMatch> {
    let exact = rule == request
        || rule == AccessType::Execute
        || (rule == AccessType::Write && request == AccessType::Replicate);
    if exact {
        Some(AttrMatch::Exact)
    } else if rule == AccessType::Any {
        Some(AttrMatch::RuleWildcard)
    } else if request == AccessType::Any {
        Some(AttrMatch::RequestWildcard)
    } else {
        None
    }
}

fn generic_points(rule: &str, request: &str, exact: bool) -> Option<AttrMatch> {
    if exact {
        Some(AttrMatch::Exact)
    } else if rule == ALL {
        Some(AttrMatch::RuleWildcard)
    } else if request == ALL {
        Some(AttrMatch::RequestWildcard)
    } else {
        None
    }
}

/// The `R` digit: the role class for ROLE rules, 0 for every other principal type.
pub fn role_weight(principal_type: &PrincipalType, principal_id: &str) -> u32 {
    match principal_type {
        PrincipalType::Role => RoleClass::of(principal_id).weight(),
        _ => 0,
    }
}

/// The `p` digit; a missing permission scores as ALLOW.
pub fn permission_order(permission: Option<Permission>) -> u32 {
    permission.unwrap_or(Permission::Allow).order()
}

fn principal_digits(
    rule: &Rule,
    model: Option<AttrMatch>,
    property: Option<AttrMatch>,
    request: &AccessRequest<'_>,
) -> Score {
    Score {
        model,
        property,
        access_type: access_points(rule.access_type, request.access_type),
        principal_weight: rule.principal_type.weight(),
        role_weight: role_weight(&rule.principal_type, &rule.principal_id),
        permission_order: permission_order(rule.permission),
    }
}

/// The rule's model value as LoopBack sees it: missing means `*`.
pub fn rule_model(rule: &Rule) -> &str {
    rule.model.as_deref().unwrap_or(ALL)
}

/// Scores a rule against a request as LoopBack's `getMatchingScore` does, taking the rule's
/// fields at face value (the way a DB rule is scored).
///
/// A property list (static rules only) counts as exact when it contains the method or an
/// alias; the engine never scores a list that does not contain the canonical name.
pub fn score(rule: &Rule, request: &AccessRequest<'_>) -> Score {
    let model = model_points(rule_model(rule), request.model);
    let property = match &rule.property {
        PropertyMatch::Any => property_points(ALL, request),
        PropertyMatch::One(name) => property_points(name, request),
        PropertyMatch::List(names) => {
            if names.iter().any(|n| request.is_method_name(n)) {
                Some(AttrMatch::Exact)
            } else {
                property_points("", request)
            }
        }
    };
    principal_digits(rule, model, property, request)
}

/// Scores a static rule the way LoopBack does after `getStaticACLs` rewrote it: the model is
/// replaced by the owning model (always the request's model, hence exact), and a property
/// list containing the method becomes that method. Aliases play no part.
pub fn score_static(rule: &Rule, request: &AccessRequest<'_>) -> Score {
    let property = match &rule.property {
        PropertyMatch::Any => ALL,
        PropertyMatch::One(name) => name.as_str(),
        PropertyMatch::List(names) => {
            if names.iter().any(|n| n == request.method) {
                request.method
            } else {
                ""
            }
        }
    };
    let property = generic_points(property, request.method, property == request.method);
    principal_digits(rule, Some(AttrMatch::Exact), property, request)
}
