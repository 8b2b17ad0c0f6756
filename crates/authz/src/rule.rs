//! ACL rule vocabulary: the values an ACL entry can hold, parsed strictly.
//!
//! LoopBack 3 compares these values case-sensitively, and a misspelled value silently
//! never matches there. Portcullis refuses such values when an app is loaded instead, so
//! parsing here is strict and the error names the offending value.

use std::fmt;

/// Access type of a method or a rule (`READ`, `WRITE`, `EXECUTE`, `REPLICATE`, `*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum AccessType {
    #[serde(rename = "*")]
    Any,
    #[serde(rename = "READ")]
    Read,
    #[serde(rename = "WRITE")]
    Write,
    #[serde(rename = "EXECUTE")]
    Execute,
    #[serde(rename = "REPLICATE")]
    Replicate,
}

impl AccessType {
    pub const CONCRETE: [AccessType; 4] = [
        AccessType::Read,
        AccessType::Write,
        AccessType::Execute,
        AccessType::Replicate,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "*" => Self::Any,
            "READ" => Self::Read,
            "WRITE" => Self::Write,
            "EXECUTE" => Self::Execute,
            "REPLICATE" => Self::Replicate,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Any => "*",
            Self::Read => "READ",
            Self::Write => "WRITE",
            Self::Execute => "EXECUTE",
            Self::Replicate => "REPLICATE",
        }
    }
}

impl fmt::Display for AccessType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Permission of a rule. `ALARM` and `AUDIT` only shift the score; they allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Permission {
    #[serde(rename = "DEFAULT")]
    Default,
    #[serde(rename = "ALLOW")]
    Allow,
    #[serde(rename = "ALARM")]
    Alarm,
    #[serde(rename = "AUDIT")]
    Audit,
    #[serde(rename = "DENY")]
    Deny,
}

impl Permission {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "DEFAULT" => Self::Default,
            "ALLOW" => Self::Allow,
            "ALARM" => Self::Alarm,
            "AUDIT" => Self::Audit,
            "DENY" => Self::Deny,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Default => "DEFAULT",
            Self::Allow => "ALLOW",
            Self::Alarm => "ALARM",
            Self::Audit => "AUDIT",
            Self::Deny => "DENY",
        }
    }

    /// The `p` digit of LoopBack's score: DEFAULT 0, ALLOW 1, ALARM 2, AUDIT 3, DENY 4.
    pub fn order(self) -> u32 {
        match self {
            Self::Default => 0,
            Self::Allow => 1,
            Self::Alarm => 2,
            Self::Audit => 3,
            Self::Deny => 4,
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Principal type of a rule or of a request principal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(into = "String")]
pub enum PrincipalType {
    User,
    App,
    Role,
    /// A custom user model name (LoopBack's multi-user-model setups). Scores lowest.
    Custom(String),
}

impl From<PrincipalType> for String {
    fn from(p: PrincipalType) -> String {
        p.as_str().to_string()
    }
}

impl PrincipalType {
    /// `USER`, `APP`, `ROLE`; any other non-empty identifier is a custom user-model name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "USER" => Self::User,
            "APP" => Self::App,
            "ROLE" => Self::Role,
            other if is_model_identifier(other) => Self::Custom(other.to_string()),
            _ => return None,
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::User => "USER",
            Self::App => "APP",
            Self::Role => "ROLE",
            Self::Custom(s) => s,
        }
    }

    /// The `K` digit of LoopBack's score: USER 4, APP 3, ROLE 2, anything else 1.
    pub fn weight(&self) -> u32 {
        match self {
            Self::User => 4,
            Self::App => 3,
            Self::Role => 2,
            Self::Custom(_) => 1,
        }
    }
}

fn is_model_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
}

impl fmt::Display for PrincipalType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which methods a rule names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(untagged)]
pub enum PropertyMatch {
    /// `*` or missing.
    Any,
    One(String),
    /// Static rules only: an array of method names.
    List(Vec<String>),
}

impl PropertyMatch {
    pub fn names(&self) -> &[String] {
        match self {
            Self::Any => &[],
            Self::One(s) => std::slice::from_ref(s),
            Self::List(v) => v,
        }
    }
}

impl fmt::Display for PropertyMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::One(s) => f.write_str(s),
            Self::List(v) => write!(f, "[{}]", v.join(", ")),
        }
    }
}

/// Where a rule came from, for explanations and audits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum RuleSource {
    /// The `acls` array of a model definition file (possibly inherited from a base model).
    ModelJson { model: String, index: usize },
    /// An `acls` entry in `model-config.json` for this model.
    ModelConfig { model: String, index: usize },
    /// A built-in model's rule (User, AccessToken…).
    BuiltIn { model: String, index: usize },
    /// A row of the `ACL` table.
    Table { id: String },
}

impl fmt::Display for RuleSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ModelJson { model, index } => write!(f, "{model}.json acls[{index}]"),
            Self::ModelConfig { model, index } => {
                write!(f, "model-config.json {model}.acls[{index}]")
            }
            Self::BuiltIn { model, index } => write!(f, "built-in {model} acls[{index}]"),
            Self::Table { id } => write!(f, "ACL table row {id}"),
        }
    }
}

/// One ACL entry, already validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// `None` or `*` means any model. Static rules always carry their owning model.
    pub model: Option<String>,
    pub property: PropertyMatch,
    pub access_type: AccessType,
    pub principal_type: PrincipalType,
    pub principal_id: String,
    /// `None` when the rule names no permission: LoopBack scores that like ALLOW but
    /// resolves it to DEFAULT (the model's default permission).
    pub permission: Option<Permission>,
    pub source: RuleSource,
}

impl fmt::Display for Rule {
    /// `DENY ROLE $everyone on Post.find (READ)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.permission {
            Some(p) => write!(f, "{p} ")?,
            None => f.write_str("(no permission) ")?,
        }
        let model = self.model.as_deref().unwrap_or("*");
        write!(
            f,
            "{} {} on {model}.{} ({})",
            self.principal_type, self.principal_id, self.property, self.access_type
        )
    }
}

/// An ACL value that is not one LoopBack accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("unknown accessType `{0}` (expected READ, WRITE, EXECUTE, REPLICATE or *)")]
    AccessType(String),
    #[error("unknown permission `{0}` (expected ALLOW, DENY, DEFAULT, ALARM or AUDIT)")]
    Permission(String),
    #[error("unknown principalType `{0}` (expected USER, APP, ROLE or a user model name)")]
    PrincipalType(String),
    #[error("missing principalType")]
    MissingPrincipalType,
    #[error("missing principalId")]
    MissingPrincipalId,
    #[error("property must be a method name, `*` or an array of method names")]
    Property,
}
