//! Principals and role names: who is asking, and which role names the engine can decide
//! by itself.
//!
//! LoopBack 3 roles are plain strings. Four of them have built-in meaning that needs
//! nothing but the request's principals (`$everyone`, `$authenticated`,
//! `$unauthenticated`, and `$related`, which never holds because LoopBack registers no
//! resolver for it). Everything else (`$owner`, static `Role` rows, custom resolvers such
//! as `teamMember` or `$group:admin`) needs the database and is asked of the caller.

use std::fmt;

use crate::PrincipalType;

/// `$everyone`: always held.
pub const EVERYONE: &str = "$everyone";
/// `$authenticated`: held when the request carries a user or an app principal.
pub const AUTHENTICATED: &str = "$authenticated";
/// `$unauthenticated`: the negation of `$authenticated`.
pub const UNAUTHENTICATED: &str = "$unauthenticated";
/// `$owner`: resolved by the caller (it needs the target instance).
pub const OWNER: &str = "$owner";
/// `$related`: scores as its own class but has no resolver in LoopBack 3, so never holds.
pub const RELATED: &str = "$related";

/// How LoopBack ranks a role name (the `R` digit of the score).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoleClass {
    /// `$everyone`, weight 1.
    Everyone,
    /// `$authenticated` or `$unauthenticated`, weight 2.
    Authentication,
    /// `$related`, weight 3.
    Related,
    /// `$owner`, weight 4.
    Owner,
    /// Any other name: a static role or a custom resolver, weight 5.
    Named,
}

impl RoleClass {
    /// Classifies a role name, case-sensitively as LoopBack does.
    pub fn of(role: &str) -> Self {
        match role {
            EVERYONE => Self::Everyone,
            AUTHENTICATED | UNAUTHENTICATED => Self::Authentication,
            RELATED => Self::Related,
            OWNER => Self::Owner,
            _ => Self::Named,
        }
    }

    /// The `R` digit of LoopBack's score.
    pub fn weight(self) -> u32 {
        match self {
            Self::Everyone => 1,
            Self::Authentication => 2,
            Self::Related => 3,
            Self::Owner => 4,
            Self::Named => 5,
        }
    }
}

/// A role the engine decides without asking the caller, or `None` when the caller must.
///
/// `$everyone` always holds, `$authenticated`/`$unauthenticated` follow
/// [`is_authenticated`], `$related` never holds.
pub fn builtin_role_held(role: &str, principals: &[Principal]) -> Option<bool> {
    match role {
        EVERYONE => Some(true),
        AUTHENTICATED => Some(is_authenticated(principals)),
        UNAUTHENTICATED => Some(!is_authenticated(principals)),
        RELATED => Some(false),
        _ => None,
    }
}

/// One principal of the request (LoopBack's `AccessContext.principals`).
///
/// From a token: `{USER or the token's principalType, userId}` and `{APP, appId}`. Ids are
/// compared as strings, as LoopBack does with `String(id)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Principal {
    #[serde(rename = "type")]
    pub principal_type: PrincipalType,
    pub id: String,
}

impl Principal {
    pub fn new(principal_type: PrincipalType, id: impl Into<String>) -> Self {
        Self {
            principal_type,
            id: id.into(),
        }
    }

    /// A `USER` principal.
    pub fn user(id: impl Into<String>) -> Self {
        Self::new(PrincipalType::User, id)
    }

    /// An `APP` principal.
    pub fn app(id: impl Into<String>) -> Self {
        Self::new(PrincipalType::App, id)
    }

    /// A `ROLE` principal: a rule for this role then holds without asking anybody.
    pub fn role(name: impl Into<String>) -> Self {
        Self::new(PrincipalType::Role, name)
    }

    /// Whether this principal identifies a user (`USER` or a custom user-model type).
    pub fn is_user(&self) -> bool {
        matches!(
            self.principal_type,
            PrincipalType::User | PrincipalType::Custom(_)
        )
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.principal_type, self.id)
    }
}

/// LoopBack's `AccessContext.isAuthenticated()`: a user id (a `USER` or custom user-model
/// principal) or an app id is present. An empty id counts as absent (JavaScript falsiness).
pub fn is_authenticated(principals: &[Principal]) -> bool {
    principals
        .iter()
        .any(|p| !p.id.is_empty() && (p.is_user() || p.principal_type == PrincipalType::App))
}
