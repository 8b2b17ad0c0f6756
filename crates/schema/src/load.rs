//! Loading: reads the files of a LoopBack 3 app directory, resolves model inheritance and
//! compiles everything into an [`App`]. Raw JSON never leaves this module.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use portcullis_authz::{
    AccessType, Permission, PrincipalType, PropertyMatch, Rule, RuleError, RuleSource,
};
use serde_json::{Map, Value};

use crate::app::{App, AppConfig, Connector, DataSource, ExplorerConfig, Middleware};
use crate::error::{LoadError, Loc};
use crate::model::*;

const BUILTIN_SOURCES: [(&str, &str); 6] = [
    ("User", include_str!("../builtin/User.json")),
    ("AccessToken", include_str!("../builtin/AccessToken.json")),
    ("ACL", include_str!("../builtin/ACL.json")),
    ("Role", include_str!("../builtin/Role.json")),
    ("RoleMapping", include_str!("../builtin/RoleMapping.json")),
    ("Application", include_str!("../builtin/Application.json")),
];

/// Models that back the user and access-control system. They are attached even when
/// model-config.json does not list them, and then not public.
const ALWAYS_ATTACHED: [&str; 5] = ["AccessToken", "ACL", "Role", "RoleMapping", "Application"];

const ROOT_BASES: [&str; 2] = ["Model", "PersistedModel"];

const MODEL_KEYS: &[&str] = &[
    "name",
    "description",
    "plural",
    "base",
    "idInjection",
    "strict",
    "forceId",
    "options",
    "properties",
    "validations",
    "relations",
    "acls",
    "methods",
    "hidden",
    "protected",
    "http",
    "mixins",
    "scope",
    "scopes",
    "indexes",
    "replaceOnPUT",
    "trackChanges",
    "enableRemoteReplication",
    "public",
    "dataSource",
    "excludeBaseProperties",
    "validateUpsert",
    "defaultPermission",
    "aclErrorStatus",
    "ownerRelations",
    "allowOwnerChange",
    "ttl",
    "maxTTL",
    "realmRequired",
    "realmDelimiter",
    "caseSensitiveEmail",
    "emailVerificationRequired",
    "allowEternalTokens",
    "resetPasswordTokenTTL",
    "saltWorkFactor",
    "restrictResetPasswordTokenScope",
    "rejectPasswordChangesViaPatchOrReplace",
    "logoutSessionsOnSensitiveChanges",
    "verifyOptions",
    "accessTokenIdLength",
    "persistUndefinedAsNull",
    "authorize",
    "comments",
    "$schema",
];

const PROPERTY_KEYS: &[&str] = &[
    "type",
    "required",
    "default",
    "defaultFn",
    "id",
    "generated",
    "index",
    "unique",
    "description",
    "doc",
    "hidden",
    "protected",
    "serverSet",
    "length",
    "precision",
    "scale",
    "postgresql",
    "sqlite",
    "mysql",
    "mongodb",
    "memory",
    "jsonSchema",
    "comments",
    "ttl",
    "updateOnly",
    "useDefaultIdType",
    "min",
    "max",
    "itemType",
];

/// Reads and compiles the app directory at `root`.
pub fn load_app(root: &Path) -> Result<App, LoadError> {
    Loader::new(root).load()
}

struct Loader {
    root: PathBuf,
    server: PathBuf,
    warnings: Vec<String>,
}

/// A model definition before inheritance is applied.
struct RawModel {
    json: Map<String, Value>,
    loc: Loc,
    builtin: bool,
}

/// Model-config entry for one model.
struct ModelConfigEntry {
    data_source: Option<String>,
    public: bool,
    options: Map<String, Value>,
    acls: Vec<Value>,
    loc: Loc,
}

/// A JSON object read from a file, with the location of its root.
type JsonFile = (Map<String, Value>, Loc);

/// Entries of a JSON object, each with its location (properties, relations).
type Located = IndexMap<String, (Value, Loc)>;

/// Model source folders (and whether the app named them) plus the model-config entries.
type ModelConfig = (Vec<(PathBuf, bool)>, IndexMap<String, ModelConfigEntry>);

/// A definition with its bases merged in.
struct Merged {
    lineage: Vec<String>,
    properties: Located,
    relations: Located,
    acls: Vec<(Value, Loc, RuleSource)>,
    hidden: Vec<String>,
    protected: Vec<String>,
    methods: IndexMap<String, Value>,
    settings: Map<String, Value>,
    builtin: bool,
    loc: Loc,
}

fn read_json(file: &Path) -> Result<Value, LoadError> {
    let text = std::fs::read_to_string(file).map_err(|source| LoadError::Io {
        file: file.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| LoadError::Json {
        file: file.to_path_buf(),
        source,
    })
}

fn read_optional_object(file: &Path) -> Result<Option<JsonFile>, LoadError> {
    if !file.exists() {
        return Ok(None);
    }
    let loc = Loc::root(file);
    match read_json(file)? {
        Value::Object(map) => Ok(Some((map, loc))),
        _ => Err(loc.err("expected a JSON object")),
    }
}

fn as_object<'a>(value: &'a Value, loc: &Loc) -> Result<&'a Map<String, Value>, LoadError> {
    value
        .as_object()
        .ok_or_else(|| loc.err(format!("expected an object, found {}", kind_of(value))))
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn opt_bool(map: &Map<String, Value>, key: &str, loc: &Loc) -> Result<Option<bool>, LoadError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(loc
            .key(key)
            .err(format!("expected a boolean, found {}", kind_of(other)))),
    }
}

fn opt_string(map: &Map<String, Value>, key: &str, loc: &Loc) -> Result<Option<String>, LoadError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(loc
            .key(key)
            .err(format!("expected a string, found {}", kind_of(other)))),
    }
}

fn string_list(value: Option<&Value>, loc: &Loc) -> Result<Vec<String>, LoadError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| loc.index(i).err("expected a string"))
            })
            .collect(),
        Some(other) => Err(loc.err(format!("expected an array, found {}", kind_of(other)))),
    }
}

/// Deep-merges `over` into `base`: objects merge key by key, anything else replaces.
fn merge_into(base: &mut Map<String, Value>, over: &Map<String, Value>) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(Value::Object(b)), Value::Object(o)) => merge_into(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// English pluralisation as LoopBack's `inflection` does it for ordinary model names.
pub fn pluralize(name: &str) -> String {
    const IRREGULAR: [(&str, &str); 6] = [
        ("person", "people"),
        ("man", "men"),
        ("child", "children"),
        ("mouse", "mice"),
        ("goose", "geese"),
        ("datum", "data"),
    ];
    let lower = name.to_ascii_lowercase();
    for (one, many) in IRREGULAR {
        if lower.ends_with(one) {
            let stem = &name[..name.len() - one.len()];
            let tail = &name[name.len() - one.len()..];
            let many = if tail.starts_with(|c: char| c.is_ascii_uppercase()) {
                let mut m = many.to_string();
                m[..1].make_ascii_uppercase();
                m
            } else {
                many.to_string()
            };
            return format!("{stem}{many}");
        }
    }
    if lower.ends_with("ss")
        || lower.ends_with('x')
        || lower.ends_with('z')
        || lower.ends_with("ch")
        || lower.ends_with("sh")
        || lower.ends_with("us")
    {
        return format!("{name}es");
    }
    if lower.ends_with('s') {
        return name.to_string();
    }
    if lower.ends_with('y')
        && !matches!(
            lower.chars().rev().nth(1),
            Some('a' | 'e' | 'i' | 'o' | 'u')
        )
    {
        return format!("{}ies", &name[..name.len() - 1]);
    }
    format!("{name}s")
}

/// LoopBack's `camelize(name + '_id', true)`: `Post` → `postId`, `AppUser` → `appUserId`.
fn default_key_for(model: &str) -> String {
    let mut chars = model.chars();
    match chars.next() {
        Some(first) => format!("{}{}Id", first.to_ascii_lowercase(), chars.as_str()),
        None => "id".into(),
    }
}

pub(crate) fn parse_rule(
    value: &Value,
    loc: &Loc,
    model: &str,
    source: RuleSource,
) -> Result<Rule, LoadError> {
    let map = as_object(value, loc)?;
    let fail = |key: &str, e: RuleError| loc.key(key).err(e.to_string());
    let property = match map.get("property") {
        None | Some(Value::Null) => PropertyMatch::Any,
        Some(Value::String(s)) if s == "*" => PropertyMatch::Any,
        Some(Value::String(s)) => PropertyMatch::One(s.clone()),
        Some(Value::Array(items)) => {
            let mut names = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(s) => names.push(s.to_string()),
                    None => return Err(loc.key("property").index(i).err("expected a method name")),
                }
            }
            if names.iter().any(|n| n == "*") {
                PropertyMatch::Any
            } else {
                PropertyMatch::List(names)
            }
        }
        Some(_) => return Err(fail("property", RuleError::Property)),
    };
    let access_type = match map.get("accessType") {
        None | Some(Value::Null) => AccessType::Any,
        Some(Value::String(s)) => AccessType::parse(s)
            .ok_or_else(|| fail("accessType", RuleError::AccessType(s.clone())))?,
        Some(v) => return Err(fail("accessType", RuleError::AccessType(v.to_string()))),
    };
    let permission = match map.get("permission") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            Permission::parse(s)
                .ok_or_else(|| fail("permission", RuleError::Permission(s.clone())))?,
        ),
        Some(v) => return Err(fail("permission", RuleError::Permission(v.to_string()))),
    };
    let principal_type = match map.get("principalType") {
        None | Some(Value::Null) => {
            return Err(fail("principalType", RuleError::MissingPrincipalType))
        }
        Some(Value::String(s)) => PrincipalType::parse(s)
            .ok_or_else(|| fail("principalType", RuleError::PrincipalType(s.clone())))?,
        Some(v) => {
            return Err(fail(
                "principalType",
                RuleError::PrincipalType(v.to_string()),
            ))
        }
    };
    let principal_id = match map.get("principalId") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(fail("principalId", RuleError::MissingPrincipalId)),
    };
    Ok(Rule {
        model: Some(model.to_string()),
        property,
        access_type,
        principal_type,
        principal_id,
        permission,
        source,
    })
}

impl Loader {
    fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            server: root.join("server"),
            warnings: Vec::new(),
        }
    }

    fn warn(&mut self, message: String) {
        tracing::warn!("{message}");
        self.warnings.push(message);
    }

    fn load(mut self) -> Result<App, LoadError> {
        if !self.root.is_dir() {
            return Err(LoadError::Io {
                file: self.root.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
            });
        }
        let config = self.load_config()?;
        let datasources = self.load_datasources()?;
        let (sources, entries) = self.load_model_config()?;
        let raws = self.load_definitions(&sources)?;
        let models = self.compile_models(&raws, &entries, &datasources)?;
        let middleware = self.load_middleware()?;
        let (explorer, components) = self.load_components()?;
        let by_name = models
            .iter()
            .map(|m| (m.name.clone(), m.id))
            .collect::<HashMap<_, _>>();
        Ok(App {
            root: self.root.clone(),
            config,
            datasources,
            models,
            middleware,
            explorer,
            components,
            warnings: self.warnings,
            by_name,
        })
    }

    fn load_config(&mut self) -> Result<AppConfig, LoadError> {
        let mut config = AppConfig::default();
        let Some((map, loc)) = read_optional_object(&self.server.join("config.json"))? else {
            return Ok(config);
        };
        if let Some(root) = opt_string(&map, "restApiRoot", &loc)? {
            let trimmed = root.trim_end_matches('/');
            config.rest_api_root = if trimmed.starts_with('/') {
                trimmed.to_string()
            } else {
                format!("/{trimmed}")
            };
        }
        config.host = opt_string(&map, "host", &loc)?;
        config.port = match map.get("port") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(
                n.as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or_else(|| loc.key("port").err("expected a port number"))?,
            ),
            Some(Value::String(s)) => Some(
                s.parse()
                    .map_err(|_| loc.key("port").err(format!("`{s}` is not a port number")))?,
            ),
            Some(_) => return Err(loc.key("port").err("expected a port number")),
        };
        config.acl_error_status = match map.get("aclErrorStatus") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if matches!(n.as_u64(), Some(401 | 403 | 404)) => {
                n.as_u64().and_then(|s| u16::try_from(s).ok())
            }
            Some(_) => return Err(loc.key("aclErrorStatus").err("expected 401, 403 or 404")),
        };
        if let Some(enable) = opt_bool(&map, "enableAuth", &loc)? {
            config.enable_auth = enable;
        }
        if let Some(remoting) = map.get("remoting").and_then(Value::as_object) {
            let rloc = loc.key("remoting");
            for key in ["json", "urlencoded"] {
                if let Some(limit) = remoting
                    .get(key)
                    .and_then(|v| v.get("limit"))
                    .filter(|v| !v.is_null())
                {
                    config.body_limit = parse_size(limit).ok_or_else(|| {
                        rloc.key(key)
                            .key("limit")
                            .err("expected a size such as `100kb`")
                    })?;
                }
            }
            if let Some(debug) = remoting
                .get("errorHandler")
                .and_then(|e| e.get("debug"))
                .and_then(Value::as_bool)
            {
                config.error_debug = debug;
            }
        }
        config.raw = map;
        Ok(config)
    }

    fn load_datasources(&mut self) -> Result<IndexMap<String, DataSource>, LoadError> {
        let mut out = IndexMap::new();
        let Some((map, loc)) = read_optional_object(&self.server.join("datasources.json"))? else {
            out.insert(
                "db".to_string(),
                DataSource {
                    name: "db".into(),
                    connector: Connector::Sqlite {
                        file: self.root.join("data.sqlite"),
                    },
                    raw: Map::new(),
                },
            );
            return Ok(out);
        };
        for (name, value) in map {
            let dloc = loc.key(&name);
            let ds = as_object(&value, &dloc)?;
            let connector_name =
                opt_string(ds, "connector", &dloc)?.unwrap_or_else(|| "memory".into());
            let file = opt_string(ds, "file", &dloc)?.map(|f| self.resolve_data_file(&f));
            let connector = match connector_name
                .trim_start_matches("loopback-connector-")
                .to_ascii_lowercase()
                .as_str()
            {
                "memory" => Connector::Memory { file },
                "sqlite" | "sqlite3" => Connector::Sqlite {
                    file: file.unwrap_or_else(|| self.root.join(format!("{name}.sqlite"))),
                },
                "postgresql" | "postgres" => Connector::Postgres {
                    url: postgres_url(ds, &dloc)?,
                },
                "mail" => Connector::Mail {
                    transports: match ds.get("transports") {
                        Some(Value::Array(t)) => t.clone(),
                        Some(t @ Value::Object(_)) => vec![t.clone()],
                        _ => Vec::new(),
                    },
                },
                other => {
                    return Err(dloc.key("connector").err(format!(
                    "unsupported connector `{other}` (supported: memory, sqlite, postgresql, mail)"
                )))
                }
            };
            out.insert(
                name.clone(),
                DataSource {
                    name,
                    connector,
                    raw: ds.clone(),
                },
            );
        }
        Ok(out)
    }

    /// LoopBack resolves a memory connector's `file` against the working directory. Apps
    /// are normally started from their own directory, so Portcullis resolves it against
    /// the app directory, which gives the same file without depending on where it runs.
    fn resolve_data_file(&self, file: &str) -> PathBuf {
        let path = Path::new(file);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.root.join(path)
        }
    }

    fn load_model_config(&mut self) -> Result<ModelConfig, LoadError> {
        let file = self.server.join("model-config.json");
        let mut sources = Vec::new();
        let mut entries = IndexMap::new();
        let Some((map, loc)) = read_optional_object(&file)? else {
            sources.push((self.root.join("common/models"), false));
            sources.push((self.server.join("models"), false));
            return Ok((sources, entries));
        };
        let meta_sources = map
            .get("_meta")
            .and_then(|m| m.get("sources"))
            .cloned()
            .unwrap_or_else(|| {
                serde_json::json!([
                    "loopback/common/models",
                    "loopback/server/models",
                    "../common/models",
                    "./models"
                ])
            });
        for (i, src) in string_list(Some(&meta_sources), &loc.key("_meta").key("sources"))?
            .into_iter()
            .enumerate()
        {
            if src.starts_with("loopback/") || src.starts_with("loopback-") {
                // Built-in models are part of Portcullis itself.
                continue;
            }
            if src.starts_with('$') || !(src.starts_with('.') || src.starts_with('/')) {
                self.warn(format!(
                    "{}: model source `{src}` names a package; only folders inside the app are read",
                    loc.key("_meta").key("sources").index(i).describe()
                ));
                continue;
            }
            sources.push((self.server.join(&src), true));
        }
        for (name, value) in &map {
            if name.starts_with('_') {
                continue;
            }
            let eloc = loc.key(name);
            let entry = match value {
                Value::Null => continue,
                Value::Object(o) => o,
                other => {
                    return Err(eloc.err(format!("expected an object, found {}", kind_of(other))))
                }
            };
            for key in entry.keys() {
                if !matches!(
                    key.as_str(),
                    "dataSource"
                        | "public"
                        | "options"
                        | "acls"
                        | "relations"
                        | "$promise"
                        | "$resolved"
                ) {
                    let message = format!("{}: unknown key `{key}`", eloc.describe());
                    self.warn(message);
                }
            }
            let options = match entry.get("options") {
                None | Some(Value::Null) => Map::new(),
                Some(v) => as_object(v, &eloc.key("options"))?.clone(),
            };
            let acls = match entry.get("acls") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(a)) => a.clone(),
                Some(_) => return Err(eloc.key("acls").err("expected an array")),
            };
            entries.insert(
                name.clone(),
                ModelConfigEntry {
                    data_source: opt_string(entry, "dataSource", &eloc)?,
                    public: opt_bool(entry, "public", &eloc)?.unwrap_or(true),
                    options,
                    acls,
                    loc: eloc,
                },
            );
        }
        Ok((sources, entries))
    }

    fn load_definitions(
        &mut self,
        sources: &[(PathBuf, bool)],
    ) -> Result<IndexMap<String, RawModel>, LoadError> {
        let mut raws = IndexMap::new();
        for (name, text) in BUILTIN_SOURCES {
            let json: Map<String, Value> =
                serde_json::from_str(text).map_err(|source| LoadError::Json {
                    file: PathBuf::from(format!("<built-in {name}>")),
                    source,
                })?;
            raws.insert(
                name.to_string(),
                RawModel {
                    json,
                    loc: Loc::root(format!("<built-in {name}>")),
                    builtin: true,
                },
            );
        }
        for (dir, explicit) in sources {
            if !dir.is_dir() {
                let standard = dir.ends_with("models")
                    && (dir.ends_with("server/models") || dir.ends_with("common/models"));
                if *explicit && !standard {
                    let message = format!("model source folder `{}` does not exist", dir.display());
                    self.warn(message);
                }
                continue;
            }
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|source| LoadError::Io {
                    file: dir.clone(),
                    source,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect();
            files.sort();
            for file in files {
                let loc = Loc::root(&file);
                let json = match read_json(&file)? {
                    Value::Object(o) => o,
                    _ => return Err(loc.err("a model definition must be a JSON object")),
                };
                let name = match json.get("name") {
                    Some(Value::String(n)) if !n.is_empty() => n.clone(),
                    _ => return Err(loc.key("name").err("a model definition needs a `name`")),
                };
                if let Some(previous) = raws.get(&name) {
                    if !previous.builtin {
                        return Err(loc.key("name").err(format!(
                            "model `{name}` is also defined in {}",
                            previous.loc.describe()
                        )));
                    }
                }
                raws.insert(
                    name,
                    RawModel {
                        json,
                        loc,
                        builtin: false,
                    },
                );
            }
        }
        Ok(raws)
    }

    fn merge_definition(
        &mut self,
        name: &str,
        raws: &IndexMap<String, RawModel>,
        cache: &mut HashMap<String, Merged>,
        visiting: &mut Vec<String>,
    ) -> Result<(), LoadError> {
        if cache.contains_key(name) || ROOT_BASES.contains(&name) {
            return Ok(());
        }
        let raw = raws.get(name).ok_or_else(|| LoadError::Invalid {
            file: self.server.join("model-config.json"),
            path: format!("$.{name}"),
            message: format!("model `{name}` has no definition in any model source folder"),
        })?;
        if visiting.iter().any(|v| v == name) {
            return Err(raw
                .loc
                .key("base")
                .err(format!("`base` chain loops through `{name}`")));
        }
        let loc = raw.loc.clone();
        let json = &raw.json;
        for key in json.keys() {
            if !MODEL_KEYS.contains(&key.as_str()) {
                let message = format!("{}: unknown key `{key}`", loc.describe());
                self.warn(message);
            }
        }
        let base = match json.get("base") {
            None | Some(Value::Null) => "PersistedModel".to_string(),
            Some(Value::String(b)) => b.clone(),
            Some(_) => return Err(loc.key("base").err("expected a model name")),
        };
        let mut merged = if ROOT_BASES.contains(&base.as_str()) {
            Merged {
                lineage: vec![base.clone()],
                properties: IndexMap::new(),
                relations: IndexMap::new(),
                acls: Vec::new(),
                hidden: Vec::new(),
                protected: Vec::new(),
                methods: IndexMap::new(),
                settings: Map::new(),
                builtin: raw.builtin,
                loc: loc.clone(),
            }
        } else {
            if !raws.contains_key(&base) {
                return Err(loc.key("base").err(format!("unknown base model `{base}`")));
            }
            visiting.push(name.to_string());
            self.merge_definition(&base, raws, cache, visiting)?;
            visiting.pop();
            let parent = &cache[&base];
            Merged {
                lineage: parent.lineage.clone(),
                properties: parent.properties.clone(),
                relations: parent.relations.clone(),
                acls: parent.acls.clone(),
                hidden: parent.hidden.clone(),
                protected: parent.protected.clone(),
                methods: parent.methods.clone(),
                settings: parent.settings.clone(),
                builtin: raw.builtin,
                loc: loc.clone(),
            }
        };
        merged.lineage.insert(0, name.to_string());
        // Settings a child does not inherit.
        for key in ["plural", "http", "name", "description"] {
            merged.settings.remove(key);
        }
        if let Some(props) = json.get("properties").filter(|v| !v.is_null()) {
            let ploc = loc.key("properties");
            for (pname, pdef) in as_object(props, &ploc)? {
                merged
                    .properties
                    .insert(pname.clone(), (pdef.clone(), ploc.key(pname)));
            }
        }
        if let Some(rels) = json.get("relations").filter(|v| !v.is_null()) {
            let rloc = loc.key("relations");
            for (rname, rdef) in as_object(rels, &rloc)? {
                merged
                    .relations
                    .insert(rname.clone(), (rdef.clone(), rloc.key(rname)));
            }
        }
        match json.get("acls") {
            Some(Value::Null) => merged.acls.clear(),
            Some(Value::Array(acls)) => {
                let aloc = loc.key("acls");
                for (i, acl) in acls.iter().enumerate() {
                    let source = if raw.builtin {
                        RuleSource::BuiltIn {
                            model: name.to_string(),
                            index: i,
                        }
                    } else {
                        RuleSource::ModelJson {
                            model: name.to_string(),
                            index: i,
                        }
                    };
                    merged.acls.push((acl.clone(), aloc.index(i), source));
                }
            }
            Some(_) => return Err(loc.key("acls").err("expected an array")),
            None => {}
        }
        for h in string_list(json.get("hidden"), &loc.key("hidden"))? {
            if !merged.hidden.contains(&h) {
                merged.hidden.push(h);
            }
        }
        for p in string_list(json.get("protected"), &loc.key("protected"))? {
            if !merged.protected.contains(&p) {
                merged.protected.push(p);
            }
        }
        if let Some(methods) = json.get("methods").filter(|v| !v.is_null()) {
            for (mname, mdef) in as_object(methods, &loc.key("methods"))? {
                merged.methods.insert(mname.clone(), mdef.clone());
            }
        }
        let mut own_settings = Map::new();
        for (k, v) in json {
            if !matches!(
                k.as_str(),
                "properties"
                    | "relations"
                    | "acls"
                    | "hidden"
                    | "protected"
                    | "methods"
                    | "options"
                    | "base"
            ) {
                own_settings.insert(k.clone(), v.clone());
            }
        }
        if let Some(options) = json.get("options").filter(|v| !v.is_null()) {
            merge_into(&mut own_settings, as_object(options, &loc.key("options"))?);
        }
        merge_into(&mut merged.settings, &own_settings);
        cache.insert(name.to_string(), merged);
        Ok(())
    }

    fn compile_models(
        &mut self,
        raws: &IndexMap<String, RawModel>,
        entries: &IndexMap<String, ModelConfigEntry>,
        datasources: &IndexMap<String, DataSource>,
    ) -> Result<Vec<Model>, LoadError> {
        let mut cache = HashMap::new();
        // Attached models: model-config order, then the always-attached built-ins.
        let mut attached: Vec<(String, bool, Option<String>)> = Vec::new();
        for (name, entry) in entries {
            if let Some(ds) = &entry.data_source {
                if !datasources.contains_key(ds) {
                    return Err(entry
                        .loc
                        .key("dataSource")
                        .err(format!("unknown datasource `{ds}`")));
                }
            }
            if entry.data_source.is_none() {
                // LoopBack attaches a model without a datasource only as a plain model;
                // Portcullis serves nothing for it.
                let message = format!(
                    "{}: model `{name}` has no dataSource and is not served",
                    entry.loc.describe()
                );
                self.warn(message);
                continue;
            }
            attached.push((name.clone(), entry.public, entry.data_source.clone()));
        }
        if entries.is_empty() {
            // No model-config.json: every model found is attached and public.
            for (name, raw) in raws {
                if !raw.builtin {
                    attached.push((name.clone(), true, None));
                }
            }
        }
        for name in ALWAYS_ATTACHED {
            if !attached.iter().any(|(n, _, _)| n == name) {
                attached.push((name.to_string(), false, None));
            }
        }
        for (name, _, _) in &attached {
            self.merge_definition(name, raws, &mut cache, &mut Vec::new())?;
        }

        let user_model_names: std::collections::HashSet<String> = attached
            .iter()
            .filter(|(n, _, _)| {
                cache
                    .get(n)
                    .is_some_and(|m| m.lineage.iter().any(|l| l == "User"))
            })
            .map(|(n, _, _)| n.clone())
            .collect();
        let mut models: Vec<Model> = Vec::new();
        let mut pending_relations: Vec<(usize, Located)> = Vec::new();
        for (idx, (name, public, data_source)) in attached.iter().enumerate() {
            let merged = &cache[name];
            let mut settings = merged.settings.clone();
            let mut acl_values = merged.acls.clone();
            if let Some(entry) = entries.get(name) {
                merge_into(&mut settings, &entry.options);
                // model-config ACLs replace a static entry with the same key, else append.
                for (i, acl) in entry.acls.iter().enumerate() {
                    let aloc = entry.loc.key("acls").index(i);
                    let key = acl_key(acl);
                    let source = RuleSource::ModelConfig {
                        model: name.clone(),
                        index: i,
                    };
                    match acl_values.iter().position(|(v, _, _)| acl_key(v) == key) {
                        Some(pos) => acl_values[pos] = (acl.clone(), aloc, source),
                        None => acl_values.push((acl.clone(), aloc, source)),
                    }
                }
            }
            let mut acls = Vec::with_capacity(acl_values.len());
            for (value, aloc, source) in &acl_values {
                let rule = parse_rule(value, aloc, name, source.clone())?;
                // A principal type other than USER/APP/ROLE must name a user model:
                // anything else (a lowercase `role`, a typo) would silently never match.
                if let PrincipalType::Custom(custom) = &rule.principal_type {
                    if !user_model_names.contains(custom) {
                        return Err(aloc.key("principalType").err(format!(
                            "unknown principalType `{custom}` (expected USER, APP, ROLE or the name of a user model)"
                        )));
                    }
                }
                acls.push(rule);
            }
            let model = self.compile_model(
                ModelId(idx),
                name,
                merged,
                settings,
                acls,
                *public,
                data_source
                    .clone()
                    .or_else(|| datasources.keys().next().cloned()),
            )?;
            pending_relations.push((idx, merged.relations.clone()));
            models.push(model);
        }
        let index: HashMap<String, usize> = models
            .iter()
            .enumerate()
            .map(|(i, m)| (m.name.clone(), i))
            .collect();
        let user_model = models
            .iter()
            .find(|m| m.is_user_model() && !m.builtin)
            .or_else(|| models.iter().find(|m| m.is_user_model()))
            .map(|m| m.name.clone());
        for (idx, relations) in pending_relations {
            for (rname, (rdef, rloc)) in relations {
                self.compile_relation(
                    &mut models,
                    &index,
                    idx,
                    &rname,
                    &rdef,
                    &rloc,
                    user_model.as_deref(),
                )?;
            }
        }
        // SQL table names are case-insensitive: an app model `user` and the built-in `User`
        // would share a table. The built-in one moves aside.
        let app_tables: std::collections::HashSet<String> = models
            .iter()
            .filter(|m| !m.builtin)
            .map(|m| m.table.to_lowercase())
            .collect();
        for model in models.iter_mut().filter(|m| m.builtin) {
            if app_tables.contains(&model.table.to_lowercase()) {
                model.table = format!("{}_builtin", model.table);
            }
        }
        let user_models: Vec<bool> = models.iter().map(Model::is_user_model).collect();
        for model in &mut models {
            let mut keys: Vec<String> = ["userId", "owner"]
                .into_iter()
                .filter(|k| model.property(k).is_some())
                .map(str::to_string)
                .collect();
            for r in &model.relations {
                if r.kind == RelationKind::BelongsTo
                    && user_models[r.target.0]
                    && !keys.contains(&r.foreign_key)
                {
                    keys.push(r.foreign_key.clone());
                }
            }
            model.owner_keys = keys;
        }
        Ok(models)
    }

    #[allow(clippy::too_many_arguments)]
    fn compile_model(
        &mut self,
        id: ModelId,
        name: &str,
        merged: &Merged,
        settings: Map<String, Value>,
        acls: Vec<Rule>,
        public: bool,
        data_source: Option<String>,
    ) -> Result<Model, LoadError> {
        let loc = &merged.loc;
        let mut properties = Vec::new();
        for (pname, (pdef, ploc)) in &merged.properties {
            if pdef.is_null() {
                continue;
            }
            let mut prop = self.compile_property(pname, pdef, ploc)?;
            prop.hidden = merged.hidden.contains(pname);
            prop.protected = merged.protected.contains(pname);
            properties.push(prop);
        }
        let setting_bool = |key: &str| settings.get(key).and_then(Value::as_bool);
        let id_injection = setting_bool("idInjection").unwrap_or(true);
        let id_property = match properties.iter().position(|p| p.id) {
            Some(i) => i,
            None if id_injection => {
                properties.push(Property {
                    name: "id".into(),
                    ty: PropType::Number,
                    required: false,
                    default: None,
                    default_fn: None,
                    id: true,
                    generated: true,
                    index: false,
                    unique: false,
                    hidden: merged.hidden.iter().any(|h| h == "id"),
                    protected: false,
                    server_set: ServerSet::No,
                    force_default: false,
                });
                properties.len() - 1
            }
            None => {
                return Err(loc.err(format!(
                    "model `{name}` has `idInjection: false` and no property with `id: true`"
                )))
            }
        };
        let strict = match settings.get("strict") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => Strictness::Loose,
            Some(Value::Bool(true)) => Strictness::Strict,
            Some(Value::String(s)) if s == "filter" || s == "throw" || s == "validate" => {
                Strictness::Strict
            }
            Some(_) => {
                return Err(loc
                    .key("strict")
                    .err("expected true, false, `filter` or `throw`"))
            }
        };
        let id_generated = properties[id_property].generated;
        let default_permission = match settings.get("defaultPermission") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(Permission::parse(s).ok_or_else(|| {
                loc.key("defaultPermission")
                    .err(format!("unknown permission `{s}` (expected ALLOW or DENY)"))
            })?),
            Some(_) => return Err(loc.key("defaultPermission").err("expected ALLOW or DENY")),
        };
        let acl_error_status = match settings.get("aclErrorStatus") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if matches!(n.as_u64(), Some(401 | 403 | 404)) => {
                n.as_u64().and_then(|s| u16::try_from(s).ok())
            }
            Some(_) => return Err(loc.key("aclErrorStatus").err("expected 401, 403 or 404")),
        };
        let owner_relations = match settings.get("ownerRelations") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => OwnerRelations::Legacy,
            Some(Value::Bool(true)) => OwnerRelations::All,
            Some(v @ Value::Array(_)) => {
                OwnerRelations::Named(string_list(Some(v), &loc.key("ownerRelations"))?)
            }
            Some(_) => {
                return Err(loc
                    .key("ownerRelations")
                    .err("expected a boolean or an array of relation names"))
            }
        };
        let options = ModelOptions {
            strict,
            force_id: setting_bool("forceId").unwrap_or(id_generated),
            validate_upsert: setting_bool("validateUpsert").unwrap_or(false),
            id_injection,
            replace_on_put: setting_bool("replaceOnPUT").unwrap_or(true),
            default_permission,
            acl_error_status,
            owner_relations,
            allow_owner_change: setting_bool("allowOwnerChange").unwrap_or(false),
        };
        let plural = match settings.get("plural") {
            Some(Value::String(p)) if !p.is_empty() => p.clone(),
            _ => pluralize(name),
        };
        let http_path = settings
            .get("http")
            .and_then(|h| h.get("path"))
            .and_then(Value::as_str)
            .map(|p| p.trim_matches('/').to_string())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| plural.clone());
        let kind = if merged.lineage.iter().any(|m| m == "PersistedModel") {
            ModelKind::Persisted
        } else {
            ModelKind::Plain
        };
        Ok(Model {
            id,
            name: name.to_string(),
            plural,
            http_path,
            lineage: {
                let mut l = merged.lineage.clone();
                if l.last().is_some_and(|b| b == "PersistedModel") {
                    l.push("Model".into());
                }
                l
            },
            kind,
            builtin: merged.builtin,
            properties,
            id_property,
            relations: Vec::new(),
            acls,
            methods: merged.methods.clone(),
            options,
            settings,
            public: public && kind == ModelKind::Persisted,
            data_source,
            table: name.to_string(),
            owner_keys: Vec::new(),
            file: if merged.builtin {
                None
            } else {
                Some(merged.loc.file.clone())
            },
        })
    }

    fn compile_property(
        &mut self,
        name: &str,
        def: &Value,
        loc: &Loc,
    ) -> Result<Property, LoadError> {
        let mut prop = Property {
            name: name.to_string(),
            ty: PropType::Any,
            required: false,
            default: None,
            default_fn: None,
            id: false,
            generated: false,
            index: false,
            unique: false,
            hidden: false,
            protected: false,
            server_set: ServerSet::No,
            force_default: false,
        };
        let map = match def {
            Value::String(_) | Value::Array(_) => {
                prop.ty =
                    PropType::parse(def).ok_or_else(|| loc.err(format!("unknown type {def}")))?;
                return Ok(prop);
            }
            Value::Object(map) => map,
            other => {
                return Err(loc.err(format!(
                    "expected a type name or an object, found {}",
                    kind_of(other)
                )))
            }
        };
        let typed = map.contains_key("type");
        if !typed
            && map.values().all(|v| v.is_string() || v.is_object())
            && !map.contains_key("defaultFn")
            && !map.is_empty()
            && !map.keys().any(|k| PROPERTY_KEYS.contains(&k.as_str()))
        {
            // An anonymous nested type (`"address": {"street": "string"}`).
            prop.ty = PropType::Object;
            return Ok(prop);
        }
        for key in map.keys() {
            if !PROPERTY_KEYS.contains(&key.as_str()) {
                let message = format!("{}: unknown key `{key}`", loc.describe());
                self.warn(message);
            }
        }
        prop.ty = match map.get("type") {
            None | Some(Value::Null) => {
                if map.get("defaultFn").and_then(Value::as_str) == Some("now") {
                    PropType::Date
                } else {
                    PropType::Any
                }
            }
            Some(Value::Object(_)) => PropType::Object,
            Some(Value::String(s)) => {
                PropType::parse(&Value::String(s.clone())).unwrap_or(PropType::Object)
            }
            Some(t @ Value::Array(_)) => PropType::parse(t).unwrap_or(PropType::Array(None)),
            Some(other) => {
                return Err(loc
                    .key("type")
                    .err(format!("expected a type name, found {}", kind_of(other))))
            }
        };
        prop.required = opt_bool(map, "required", loc)?.unwrap_or(false);
        prop.default = map.get("default").filter(|v| !v.is_null()).cloned();
        prop.default_fn = match map.get("defaultFn") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => match s.as_str() {
                "now" => Some(DefaultFn::Now),
                "guid" | "uuid" | "uuidv4" => Some(DefaultFn::Uuid),
                other => {
                    return Err(loc.key("defaultFn").err(format!(
                        "unknown defaultFn `{other}` (supported: now, guid, uuid)"
                    )))
                }
            },
            Some(_) => return Err(loc.key("defaultFn").err("expected `now`, `guid` or `uuid`")),
        };
        prop.id = match map.get("id") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => false,
            Some(Value::Bool(true)) | Some(Value::Number(_)) => true,
            Some(_) => return Err(loc.key("id").err("expected a boolean")),
        };
        prop.generated = match opt_bool(map, "generated", loc)? {
            Some(g) => g,
            None => prop.id && prop.ty == PropType::Number && prop.default_fn.is_none(),
        };
        if prop.generated && prop.ty != PropType::Number && prop.default_fn.is_none() {
            // A generated non-numeric id: the server makes a UUID.
            prop.default_fn = Some(DefaultFn::Uuid);
            prop.generated = false;
        }
        match map.get("index") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => {}
            Some(Value::Object(o)) => {
                prop.index = true;
                prop.unique = o.get("unique").and_then(Value::as_bool).unwrap_or(false);
            }
            Some(_) => prop.index = true,
        }
        if opt_bool(map, "unique", loc)?.unwrap_or(false) {
            prop.index = true;
            prop.unique = true;
        }
        prop.hidden = opt_bool(map, "hidden", loc)?.unwrap_or(false);
        prop.server_set = match map.get("serverSet") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => ServerSet::No,
            Some(Value::String(s)) if s == "currentUserId" => ServerSet::CurrentUserId,
            Some(Value::Bool(true)) if prop.default_fn.is_some() => {
                prop.force_default = true;
                ServerSet::No
            }
            Some(_) => {
                return Err(loc
                    .key("serverSet")
                    .err("expected `currentUserId`, or `true` on a property with a defaultFn"))
            }
        };
        Ok(prop)
    }

    #[allow(clippy::too_many_arguments)]
    fn compile_relation(
        &mut self,
        models: &mut [Model],
        index: &HashMap<String, usize>,
        source: usize,
        name: &str,
        def: &Value,
        loc: &Loc,
        user_model: Option<&str>,
    ) -> Result<(), LoadError> {
        let map = as_object(def, loc)?;
        let kind = match map.get("type").and_then(Value::as_str) {
            Some("belongsTo") => RelationKind::BelongsTo,
            Some("hasMany") if map.get("through").is_some_and(|t| !t.is_null()) => {
                RelationKind::HasManyThrough
            }
            Some("hasMany") => RelationKind::HasMany,
            Some("hasOne") => RelationKind::HasOne,
            Some("hasAndBelongsToMany") => RelationKind::HasAndBelongsToMany,
            Some(other @ ("embedsOne" | "embedsMany" | "referencesMany")) => {
                let message = format!(
                    "{}: relation type `{other}` is not supported; relation `{name}` is skipped",
                    loc.describe()
                );
                self.warn(message);
                return Ok(());
            }
            Some(other) => {
                return Err(loc
                    .key("type")
                    .err(format!("unknown relation type `{other}`")))
            }
            None => return Err(loc.key("type").err("a relation needs a `type`")),
        };
        if map
            .get("polymorphic")
            .is_some_and(|p| !p.is_null() && p != &Value::Bool(false))
        {
            let message = format!(
                "{}: polymorphic relations are not supported; relation `{name}` is skipped",
                loc.describe()
            );
            self.warn(message);
            return Ok(());
        }
        let mut target_name = opt_string(map, "model", loc)?
            .ok_or_else(|| loc.key("model").err("a relation needs a target `model`"))?;
        let source_builtin = models[source].builtin;
        if source_builtin && target_name == "User" && !index.contains_key("User") {
            // Built-in relations to `User` follow the app's own user model.
            match user_model {
                Some(u) => target_name = u.to_string(),
                None => return Ok(()),
            }
        }
        let Some(&target) = index.get(&target_name) else {
            if source_builtin {
                return Ok(());
            }
            return Err(loc.key("model").err(format!(
                "relation `{name}` targets model `{target_name}`, which is not attached in model-config.json"
            )));
        };
        let options = map.get("options").and_then(Value::as_object);
        let disable_include = options
            .and_then(|o| o.get("disableInclude"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let http_path = options
            .and_then(|o| o.get("http"))
            .and_then(|h| h.get("path"))
            .and_then(Value::as_str)
            .map(|p| p.trim_matches('/').to_string())
            .unwrap_or_else(|| name.to_string());
        let source_name = models[source].name.clone();
        let source_id = models[source].id_name().to_string();
        let target_id = models[target].id_name().to_string();
        let explicit_fk = opt_string(map, "foreignKey", loc)?.filter(|s| !s.is_empty());
        let (foreign_key, primary_key, through, key_through) = match kind {
            RelationKind::BelongsTo => {
                let fk = explicit_fk.unwrap_or_else(|| format!("{name}Id"));
                let pk = opt_string(map, "primaryKey", loc)?.unwrap_or(target_id);
                let ty = models[target]
                    .property(&pk)
                    .map(|p| p.ty.clone())
                    .unwrap_or(PropType::Number);
                ensure_key_property(&mut models[source], &fk, ty);
                (fk, pk, None, None)
            }
            RelationKind::HasMany | RelationKind::HasOne => {
                let fk = explicit_fk.unwrap_or_else(|| default_key_for(&source_name));
                let pk = opt_string(map, "primaryKey", loc)?.unwrap_or(source_id);
                let ty = models[source]
                    .property(&pk)
                    .map(|p| p.ty.clone())
                    .unwrap_or(PropType::Number);
                ensure_key_property(&mut models[target], &fk, ty);
                (fk, pk, None, None)
            }
            RelationKind::HasManyThrough | RelationKind::HasAndBelongsToMany => {
                let through_name =
                    match opt_string(map, "through", loc)? {
                        Some(t) => t,
                        None => return Err(loc.key("through").err(
                            "hasAndBelongsToMany needs an explicit `through` model in Portcullis",
                        )),
                    };
                let &through = index.get(&through_name).ok_or_else(|| {
                    loc.key("through").err(format!(
                        "through model `{through_name}` is not attached in model-config.json"
                    ))
                })?;
                let fk = explicit_fk.unwrap_or_else(|| default_key_for(&source_name));
                let kt = opt_string(map, "keyThrough", loc)?
                    .unwrap_or_else(|| default_key_for(&models[target].name));
                let source_ty = models[source].id_prop().ty.clone();
                let target_ty = models[target].id_prop().ty.clone();
                ensure_key_property(&mut models[through], &fk, source_ty);
                ensure_key_property(&mut models[through], &kt, target_ty);
                (fk, source_id, Some(ModelId(through)), Some(kt))
            }
        };
        models[source].relations.push(Relation {
            name: name.to_string(),
            kind,
            target: ModelId(target),
            foreign_key,
            primary_key,
            through,
            key_through,
            disable_include,
            http_path,
        });
        Ok(())
    }

    fn load_middleware(&mut self) -> Result<Vec<Middleware>, LoadError> {
        let file = self.server.join("middleware.json");
        let Some((map, loc)) = read_optional_object(&file)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (phase, entries) in &map {
            let ploc = loc.key(phase);
            let entries = match entries {
                Value::Object(o) => o,
                Value::Null => continue,
                _ => return Err(ploc.err("expected an object of middleware entries")),
            };
            for (name, config) in entries {
                let eloc = ploc.key(name);
                let configs: Vec<&Value> = match config {
                    Value::Array(items) => items.iter().collect(),
                    other => vec![other],
                };
                for config in configs {
                    if config.get("enabled").and_then(Value::as_bool) == Some(false) {
                        continue;
                    }
                    let params = config.get("params").cloned().unwrap_or(Value::Null);
                    let paths = config
                        .get("paths")
                        .map(|p| match p {
                            Value::String(s) => vec![s.clone()],
                            Value::Array(a) => a
                                .iter()
                                .filter_map(|v| v.as_str().map(str::to_string))
                                .collect(),
                            _ => Vec::new(),
                        })
                        .unwrap_or_default();
                    let base_name = name.split('#').next().unwrap_or(name);
                    let entry = match name.as_str() {
                        "loopback#static" | "serve-static" | "express#static" => {
                            let dir = match &params {
                                Value::String(s) => s.clone(),
                                Value::Array(a) => a
                                    .first()
                                    .and_then(Value::as_str)
                                    .unwrap_or_default()
                                    .to_string(),
                                _ => {
                                    return Err(eloc
                                        .key("params")
                                        .err("expected the folder to serve"))
                                }
                            };
                            let dir = match dir.strip_prefix("$!") {
                                Some(rel) => self.server.join(rel),
                                None => self.root.join(dir),
                            };
                            for mount in if paths.is_empty() {
                                vec!["/".to_string()]
                            } else {
                                paths.clone()
                            } {
                                out.push(Middleware::Static {
                                    mount,
                                    dir: dir.clone(),
                                });
                            }
                            continue;
                        }
                        "loopback#urlNotFound" => Middleware::UrlNotFound,
                        "strong-error-handler" | "loopback#errorHandler" => {
                            Middleware::ErrorHandler {
                                debug: params
                                    .get("debug")
                                    .and_then(Value::as_bool)
                                    .unwrap_or(false),
                            }
                        }
                        "compression" => Middleware::Compression,
                        "cors" => Middleware::Cors { params },
                        "loopback#favicon" | "serve-favicon" => Middleware::Favicon,
                        "loopback#token" => Middleware::Token { params },
                        "loopback#rest" => Middleware::Rest,
                        "loopback-context#per-request"
                        | "loopback#context"
                        | "body-parser#json"
                        | "body-parser#urlencoded" => continue,
                        _ if base_name == "helmet" => Middleware::Helmet {
                            name: name.split('#').nth(1).unwrap_or("default").to_string(),
                            params,
                        },
                        _ => {
                            let message = format!(
                                "{}: unknown middleware `{name}` is ignored",
                                eloc.describe()
                            );
                            self.warn(message);
                            continue;
                        }
                    };
                    out.push(entry);
                }
            }
        }
        Ok(out)
    }

    fn load_components(
        &mut self,
    ) -> Result<(Option<ExplorerConfig>, Map<String, Value>), LoadError> {
        let file = self.server.join("component-config.json");
        let default_explorer = Some(ExplorerConfig {
            mount_path: "/explorer".into(),
        });
        let Some((map, loc)) = read_optional_object(&file)? else {
            return Ok((default_explorer, Map::new()));
        };
        let explorer = match map.get("loopback-component-explorer") {
            Some(Value::Null) | Some(Value::Bool(false)) => None,
            Some(Value::Object(o)) => Some(ExplorerConfig {
                mount_path: opt_string(o, "mountPath", &loc.key("loopback-component-explorer"))?
                    .unwrap_or_else(|| "/explorer".into()),
            }),
            _ => default_explorer,
        };
        for key in map.keys() {
            if !matches!(
                key.as_str(),
                "loopback-component-explorer" | "loopback-component-access-groups" | "portcullis"
            ) {
                let message = format!("{}: unknown component `{key}` is ignored", loc.describe());
                self.warn(message);
            }
        }
        Ok((explorer, map))
    }
}

/// The key LoopBack uses when model-config ACLs replace static ones.
fn acl_key(value: &Value) -> (Value, Value, Value, Value) {
    let get = |k: &str| value.get(k).cloned().unwrap_or(Value::Null);
    (
        get("property"),
        get("accessType"),
        get("principalType"),
        get("principalId"),
    )
}

/// Adds a relation key property when the model does not declare it, as LoopBack does.
fn ensure_key_property(model: &mut Model, name: &str, ty: PropType) {
    if model.property(name).is_some() {
        if let Some(p) = model.properties.iter_mut().find(|p| p.name == name) {
            p.index = true;
        }
        return;
    }
    model.properties.push(Property {
        name: name.to_string(),
        ty,
        required: false,
        default: None,
        default_fn: None,
        id: false,
        generated: false,
        index: true,
        unique: false,
        hidden: false,
        protected: false,
        server_set: ServerSet::No,
        force_default: false,
    });
}

fn postgres_url(ds: &Map<String, Value>, loc: &Loc) -> Result<String, LoadError> {
    if let Some(url) = opt_string(ds, "url", loc)? {
        return Ok(url);
    }
    let host = opt_string(ds, "host", loc)?.unwrap_or_else(|| "localhost".into());
    let port = ds
        .get("port")
        .and_then(|p| p.as_u64().or_else(|| p.as_str()?.parse().ok()))
        .unwrap_or(5432);
    let database = opt_string(ds, "database", loc)?.unwrap_or_else(|| "postgres".into());
    let user = opt_string(ds, "user", loc)?.or(opt_string(ds, "username", loc)?);
    let password = opt_string(ds, "password", loc)?;
    let auth = match (user, password) {
        (Some(u), Some(p)) if !p.is_empty() => format!("{u}:{p}@"),
        (Some(u), _) => format!("{u}@"),
        _ => String::new(),
    };
    Ok(format!("postgres://{auth}{host}:{port}/{database}"))
}

/// Parses body-parser size strings: `100kb`, `1mb`, `2048`.
fn parse_size(value: &Value) -> Option<usize> {
    match value {
        Value::Number(n) => n.as_u64().and_then(|n| usize::try_from(n).ok()),
        Value::String(s) => {
            let s = s.trim().to_ascii_lowercase();
            let split = s
                .find(|c: char| !c.is_ascii_digit() && c != '.')
                .unwrap_or(s.len());
            let (num, unit) = s.split_at(split);
            let num: f64 = num.parse().ok()?;
            let mult = match unit.trim() {
                "" | "b" => 1.0,
                "kb" => 1024.0,
                "mb" => 1024.0 * 1024.0,
                "gb" => 1024.0 * 1024.0 * 1024.0,
                _ => return None,
            };
            Some((num * mult) as usize)
        }
        _ => None,
    }
}
