//! The compiled form of a model: properties, relations, ACL rules and settings, with
//! inheritance already applied. Everything downstream reads models only through these types.

use indexmap::IndexMap;
use portcullis_authz::{Permission, Rule};
use serde_json::{Map, Value};

/// Index of a model inside [`crate::App::models`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelId(pub usize);

/// A property's declared type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropType {
    String,
    Number,
    Boolean,
    Date,
    /// A JSON object (`object`, or any named type Portcullis does not model further).
    Object,
    /// A JSON array, with the item type when declared as `["string"]`.
    Array(Option<Box<PropType>>),
    /// Anything JSON (`any`).
    Any,
}

impl PropType {
    /// Parses LoopBack's type names, case-insensitively, as juggler does.
    pub fn parse(value: &Value) -> Option<PropType> {
        match value {
            Value::String(s) => Some(match s.to_ascii_lowercase().as_str() {
                "string" | "text" => PropType::String,
                "number" | "integer" | "float" | "double" => PropType::Number,
                "boolean" | "bool" => PropType::Boolean,
                "date" | "datetime" => PropType::Date,
                "object" | "json" | "geopoint" | "buffer" => PropType::Object,
                "array" => PropType::Array(None),
                "any" => PropType::Any,
                _ => return None,
            }),
            Value::Array(items) => match items.as_slice() {
                [] => Some(PropType::Array(None)),
                [item] => Some(PropType::Array(Some(Box::new(PropType::parse(item)?)))),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            PropType::String => "string",
            PropType::Number => "number",
            PropType::Boolean => "boolean",
            PropType::Date => "date",
            PropType::Object => "object",
            PropType::Array(_) => "array",
            PropType::Any => "any",
        }
    }
}

/// A server-generated default (`defaultFn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultFn {
    /// The current time.
    Now,
    /// A random UUID v4 (`guid` and `uuid` are synonyms in LoopBack 3).
    Uuid,
}

/// How a property's value may be set by clients. Portcullis' declarative server-set fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServerSet {
    /// Clients may set the value.
    #[default]
    No,
    /// The value is the current user's id on create; client input is ignored.
    CurrentUserId,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Property {
    pub name: String,
    pub ty: PropType,
    pub required: bool,
    pub default: Option<Value>,
    pub default_fn: Option<DefaultFn>,
    /// Part of the primary key.
    pub id: bool,
    /// The database generates the value (auto-increment).
    pub generated: bool,
    pub index: bool,
    pub unique: bool,
    pub hidden: bool,
    pub protected: bool,
    pub server_set: ServerSet,
    /// Whether `defaultFn: "now"` overrides client input on create (Portcullis option
    /// `"serverSet": true`, or always for `defaultFn` + `serverSet`).
    pub force_default: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationKind {
    BelongsTo,
    HasMany,
    HasOne,
    HasManyThrough,
    HasAndBelongsToMany,
}

impl RelationKind {
    pub fn is_to_many(self) -> bool {
        matches!(
            self,
            Self::HasMany | Self::HasManyThrough | Self::HasAndBelongsToMany
        )
    }

    pub fn has_through(self) -> bool {
        matches!(self, Self::HasManyThrough | Self::HasAndBelongsToMany)
    }
}

/// A relation, with every key resolved to a concrete property name.
#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    pub name: String,
    pub kind: RelationKind,
    /// Target model.
    pub target: ModelId,
    /// belongsTo: the property on the source holding the target id. hasMany/hasOne: the
    /// property on the target holding the source id. Through relations: the property on
    /// the through model holding the source id.
    pub foreign_key: String,
    /// belongsTo: the target's key (its id). hasMany/hasOne: the source's key (its id).
    pub primary_key: String,
    /// Through relations: the through model and its property holding the target id.
    pub through: Option<ModelId>,
    pub key_through: Option<String>,
    /// Skipped silently by `include`, as LoopBack does (e.g. `User.accessTokens`).
    pub disable_include: bool,
    /// URL segment for relation routes (`options.http.path`, else the name).
    pub http_path: String,
}

/// Strictness of a model towards unknown properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strictness {
    /// Unknown properties are stored and returned (LoopBack's default).
    Loose,
    /// Unknown properties are refused with 422.
    Strict,
}

/// Who owns an instance for `$owner`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OwnerRelations {
    /// LoopBack's legacy rule: `userId` / `owner`, else the first belongsTo to a user model.
    #[default]
    Legacy,
    /// `ownerRelations: true`: every belongsTo to a user model.
    All,
    /// `ownerRelations: [names]`.
    Named(Vec<String>),
}

/// Settings that change how the server treats a model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelOptions {
    pub strict: Strictness,
    pub force_id: bool,
    pub validate_upsert: bool,
    pub id_injection: bool,
    pub replace_on_put: bool,
    pub default_permission: Option<Permission>,
    pub acl_error_status: Option<u16>,
    pub owner_relations: OwnerRelations,
    /// Whether an update may rewrite an owner property. Off by default: a deliberate
    /// hardening over LoopBack 3, which lets owners give rows away.
    pub allow_owner_change: bool,
}

/// What kind of model this is, by its root base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// Based on `Model`: no persistence, no CRUD routes.
    Plain,
    /// Based on `PersistedModel` (directly or through another model).
    Persisted,
}

/// A model as the server serves it.
#[derive(Debug, Clone)]
pub struct Model {
    pub id: ModelId,
    pub name: String,
    pub plural: String,
    /// URL segment under the REST root: `http.path`, else the plural.
    pub http_path: String,
    /// This model, then each base up to the root (`["appuser", "User", "PersistedModel", "Model"]`).
    pub lineage: Vec<String>,
    pub kind: ModelKind,
    pub builtin: bool,
    pub properties: Vec<Property>,
    /// Indexes into `properties` of the primary key (one for every model Portcullis serves).
    pub id_property: usize,
    pub relations: Vec<Relation>,
    /// Static rules, in LoopBack's pool order (base first, then model-config replacements).
    pub acls: Vec<Rule>,
    /// Remote method declarations, kept raw for the server.
    pub methods: IndexMap<String, Value>,
    pub options: ModelOptions,
    /// All settings as merged from the base chain, model JSON and model-config `options`.
    pub settings: Map<String, Value>,
    /// From model-config.json.
    pub public: bool,
    pub data_source: Option<String>,
    /// SQL table name.
    pub table: String,
    /// Properties that decide `$owner`: `userId` / `owner` when declared, and the foreign
    /// keys of belongsTo relations to user models. Updates cannot change them unless
    /// `allowOwnerChange` is set.
    pub owner_keys: Vec<String>,
    /// The file it came from (none for built-ins).
    pub file: Option<std::path::PathBuf>,
}

impl Model {
    pub fn property(&self, name: &str) -> Option<&Property> {
        self.properties.iter().find(|p| p.name == name)
    }

    pub fn property_index(&self, name: &str) -> Option<usize> {
        self.properties.iter().position(|p| p.name == name)
    }

    pub fn id_prop(&self) -> &Property {
        &self.properties[self.id_property]
    }

    pub fn id_name(&self) -> &str {
        &self.properties[self.id_property].name
    }

    pub fn relation(&self, name: &str) -> Option<&Relation> {
        self.relations.iter().find(|r| r.name == name)
    }

    pub fn extends(&self, base: &str) -> bool {
        self.lineage.iter().any(|m| m == base)
    }

    /// Whether the model derives from LoopBack's `User`.
    pub fn is_user_model(&self) -> bool {
        self.extends("User")
    }

    pub fn is_persisted(&self) -> bool {
        self.kind == ModelKind::Persisted
    }

    pub fn is_strict(&self) -> bool {
        self.options.strict == Strictness::Strict
    }

    pub fn setting(&self, key: &str) -> Option<&Value> {
        self.settings.get(key)
    }

    pub fn setting_bool(&self, key: &str) -> Option<bool> {
        self.settings.get(key).and_then(Value::as_bool)
    }

    pub fn setting_str(&self, key: &str) -> Option<&str> {
        self.settings.get(key).and_then(Value::as_str)
    }

    pub fn setting_f64(&self, key: &str) -> Option<f64> {
        self.settings.get(key).and_then(Value::as_f64)
    }
}
