//! Access control at the HTTP edge: builds the principals of a request, runs the pure
//! ACL engine, and answers the role questions it asks (`$owner`, static roles from
//! `Role` + `RoleMapping`, custom resolvers) with database lookups. Static rules are
//! compiled once; the ACL table and role memberships are cached per node and reloaded
//! when this node writes to them.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use portcullis_authz::{
    denial_status, AccessRequest, AccessType, DbRules, Decision, Engine, Permission, Principal,
    PrincipalType, PropertyMatch, Rule, RuleSource, Step, OWNER,
};
use portcullis_query::Filter;
use portcullis_schema::{App, Model, ModelId, OwnerRelations, RelationKind};
use portcullis_store::{Record, Store};
use serde_json::Value;

use crate::error::{store_error, ApiError};
use crate::groups::{GroupConfig, GroupRole};
use crate::route::RemoteMethod;
use crate::token::{value_to_id_string, Token};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a custom role resolver sees of a request.
pub struct RoleContext<'a> {
    pub app: &'a App,
    pub store: &'a Store,
    pub model: &'a Model,
    /// The instance id the request targets (the URL `:id`), if any.
    pub model_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub principals: &'a [Principal],
    pub method: &'a str,
    pub access_type: AccessType,
    /// The request body, for resolvers that look at what is being written.
    pub body: Option<&'a Value>,
}

/// A role whose membership is decided by Rust code (LoopBack's `Role.registerResolver`).
/// An error denies: it is logged and the role is not held.
pub trait RoleResolver: Send + Sync {
    fn is_in_role<'a>(&'a self, ctx: &'a RoleContext<'a>) -> BoxFuture<'a, Result<bool, String>>;
}

impl<F> RoleResolver for F
where
    F: for<'a> Fn(&'a RoleContext<'a>) -> BoxFuture<'a, Result<bool, String>> + Send + Sync,
{
    fn is_in_role<'a>(&'a self, ctx: &'a RoleContext<'a>) -> BoxFuture<'a, Result<bool, String>> {
        self(ctx)
    }
}

/// Static role memberships: role name → the principals mapped to it.
#[derive(Debug, Default)]
struct StaticRoles {
    members: HashMap<String, Vec<(String, String)>>,
    /// Role id (as a string) → name, so nested mappings may name either.
    names_by_id: HashMap<String, String>,
}

impl StaticRoles {
    fn holds(&self, role: &str, principals: &[Principal]) -> bool {
        let mut seen = HashSet::new();
        self.holds_inner(role, principals, &mut seen)
    }

    /// A principal holds a role when it is mapped to it directly, or through a role that
    /// is itself mapped to it (nested roles, which LoopBack 3 stores but never resolves).
    fn holds_inner(
        &self,
        role: &str,
        principals: &[Principal],
        seen: &mut HashSet<String>,
    ) -> bool {
        if !seen.insert(role.to_string()) {
            return false;
        }
        let Some(members) = self.members.get(role) else {
            return false;
        };
        for (ptype, pid) in members {
            if principals
                .iter()
                .any(|p| p.principal_type.as_str() == ptype && &p.id == pid)
            {
                return true;
            }
            if ptype == "ROLE" {
                let child = self.names_by_id.get(pid).map(String::as_str).unwrap_or(pid);
                if self.holds_inner(child, principals, seen) {
                    return true;
                }
            }
        }
        false
    }
}

/// The inputs of one decision, gathered once (see [`AccessControl::facts`]).
struct Facts {
    principals: Vec<Principal>,
    db_rules: Arc<DbRules>,
    roles: Arc<StaticRoles>,
    user_id: Option<String>,
}

impl Facts {
    fn request<'a>(&self, input: &'a AccessInput<'_>) -> AccessRequest<'a> {
        AccessRequest::new(
            &input.model.name,
            &input.method.name,
            &input.method.aliases,
            input.method.access_type,
        )
    }
}

/// The per-node access-control state.
pub struct AccessControl {
    pub enabled: bool,
    engine: Engine,
    db_rules: RwLock<Arc<DbRules>>,
    roles: RwLock<Arc<StaticRoles>>,
    resolvers: HashMap<String, Arc<dyn RoleResolver>>,
    /// The built-in `$group:` resolvers among `resolvers` (full name → stored role), for
    /// judging rows that no longer exist (change streams).
    group_roles: HashMap<String, String>,
    groups: Option<Arc<GroupConfig>>,
    acl_model: Option<ModelId>,
    role_model: Option<ModelId>,
    role_mapping_model: Option<ModelId>,
    app_status: Option<u16>,
}

/// The facts of one request that authorization needs.
pub struct AccessInput<'a> {
    pub model: &'a Model,
    pub method: &'a RemoteMethod,
    pub token: Option<&'a Token>,
    /// The URL `:id` of the request, the only place Portcullis takes `$owner`'s model id
    /// from (LoopBack 3 also reads `id` from the body and query of static methods, which
    /// lets a caller borrow ownership of one row for a whole list).
    pub model_id: Option<&'a str>,
    pub body: Option<&'a Value>,
    /// An application that identified itself with its id and one of its keys.
    pub app_id: Option<&'a str>,
}

/// The decision about reading a row that no longer exists.
#[derive(Debug)]
pub enum RemovedCheck {
    /// As [`AccessControl::check`] answers (`None`: access control is off).
    Decided(Option<Decision>),
    /// A custom role resolver would need the row itself.
    Undecidable,
}

impl AccessControl {
    pub fn new(
        app: &App,
        mut resolvers: HashMap<String, Arc<dyn RoleResolver>>,
        groups: Option<&Arc<GroupConfig>>,
    ) -> Self {
        let mut group_roles = HashMap::new();
        if let Some(config) = groups {
            for (full, short) in &config.roles {
                resolvers.entry(full.clone()).or_insert_with(|| {
                    group_roles.insert(full.clone(), short.clone());
                    Arc::new(GroupRole {
                        config: config.clone(),
                        role: short.clone(),
                    })
                });
            }
        }
        let engine = Engine::new(app.models.iter().map(|m| {
            let mut rules = m.acls.clone();
            if groups.is_some_and(|g| g.access_model == m.id) && rules.is_empty() {
                // The component leaves its membership table open to anyone, who can then
                // make themselves admin of any group. Without rules of its own it is closed.
                rules.push(Rule {
                    model: Some(m.name.clone()),
                    property: PropertyMatch::Any,
                    access_type: AccessType::Any,
                    principal_type: PrincipalType::Role,
                    principal_id: portcullis_authz::EVERYONE.to_string(),
                    permission: Some(Permission::Deny),
                    source: RuleSource::BuiltIn {
                        model: m.name.clone(),
                        index: 0,
                    },
                });
            }
            (m.name.clone(), rules)
        }));
        AccessControl {
            enabled: app.config.enable_auth,
            engine,
            db_rules: RwLock::new(Arc::new(DbRules::empty())),
            roles: RwLock::new(Arc::new(StaticRoles::default())),
            resolvers,
            group_roles,
            groups: groups.cloned(),
            acl_model: app.model_id("ACL"),
            role_model: app.model_id("Role"),
            role_mapping_model: app.model_id("RoleMapping"),
            app_status: app.config.acl_error_status,
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Whether writes to `model` change what this node caches.
    pub fn is_access_model(&self, model: ModelId) -> bool {
        Some(model) == self.acl_model
            || Some(model) == self.role_model
            || Some(model) == self.role_mapping_model
    }

    /// Reloads the ACL table and role memberships from the database.
    pub async fn reload(&self, store: &Store) -> Result<(), ApiError> {
        if let Some(acl) = self.acl_model {
            let rows = store
                .find(acl, &Filter::default())
                .await
                .map_err(|e| store_error("ACL", e))?;
            let rules: Vec<Rule> = rows.iter().filter_map(table_rule).collect();
            if let Ok(mut slot) = self.db_rules.write() {
                *slot = Arc::new(DbRules::new(rules));
            }
        }
        if let (Some(role), Some(mapping)) = (self.role_model, self.role_mapping_model) {
            let roles = store
                .find(role, &Filter::default())
                .await
                .map_err(|e| store_error("Role", e))?;
            let mappings = store
                .find(mapping, &Filter::default())
                .await
                .map_err(|e| store_error("RoleMapping", e))?;
            let mut by_id = HashMap::new();
            for r in &roles {
                if let (Some(id), Some(Value::String(name))) = (r.get("id"), r.get("name")) {
                    by_id.insert(value_to_id_string(id), name.clone());
                }
            }
            let mut members: HashMap<String, Vec<(String, String)>> = HashMap::new();
            for m in &mappings {
                let Some(role_name) = m
                    .get("roleId")
                    .map(value_to_id_string)
                    .and_then(|id| by_id.get(&id).cloned())
                else {
                    continue;
                };
                let ptype = m
                    .get("principalType")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let pid = m
                    .get("principalId")
                    .map(value_to_id_string)
                    .unwrap_or_default();
                members.entry(role_name).or_default().push((ptype, pid));
            }
            if let Ok(mut slot) = self.roles.write() {
                *slot = Arc::new(StaticRoles {
                    members,
                    names_by_id: by_id,
                });
            }
        }
        Ok(())
    }

    /// Decides one request. `Ok(None)` when access control is off.
    pub async fn check(
        &self,
        app: &App,
        store: &Store,
        input: &AccessInput<'_>,
    ) -> Result<Option<Decision>, ApiError> {
        if !self.enabled {
            return Ok(None);
        }
        if let Some(denied) = scope_denial(input) {
            return Ok(Some(denied));
        }
        let facts = self.facts(app, input);
        let (principals, roles, user_id) = (&facts.principals, &facts.roles, &facts.user_id);
        let request = facts.request(input);
        let mut run = self.engine.start(
            &request,
            principals,
            &facts.db_rules,
            input.model.options.default_permission,
        );
        let decision = loop {
            match run.next() {
                Step::NeedRole(role) => {
                    let held = self
                        .role_held(
                            app,
                            store,
                            &role,
                            input,
                            user_id.as_deref(),
                            principals,
                            roles,
                        )
                        .await?;
                    run.answer(held);
                }
                Step::Done(decision) => break decision,
            }
        };
        tracing::debug!(target: "portcullis::security", "{decision}");
        Ok(Some(decision))
    }

    /// Decides a READ of a row that no longer exists (a change-stream `remove` event) from
    /// its last state: `$owner` and the built-in group roles are answered from `last`,
    /// static roles as usual. [`RemovedCheck::Undecidable`] when that cannot be decided
    /// without the row (a custom resolver is asked): the caller must then not deliver.
    pub async fn check_removed(
        &self,
        app: &App,
        store: &Store,
        input: &AccessInput<'_>,
        last: &Record,
    ) -> Result<RemovedCheck, ApiError> {
        if !self.enabled {
            return Ok(RemovedCheck::Decided(None));
        }
        if let Some(denied) = scope_denial(input) {
            return Ok(RemovedCheck::Decided(Some(denied)));
        }
        let facts = self.facts(app, input);
        let (principals, roles, user_id) = (&facts.principals, &facts.roles, &facts.user_id);
        let request = facts.request(input);
        let mut run = self.engine.start(
            &request,
            principals,
            &facts.db_rules,
            input.model.options.default_permission,
        );
        let decision = loop {
            match run.next() {
                Step::NeedRole(role) => {
                    let held = if let Some(short) = self.group_roles.get(&role) {
                        let (Some(groups), Some(uid)) = (&self.groups, user_id.as_deref()) else {
                            run.answer(false);
                            continue;
                        };
                        match groups
                            .holds_for_row(app, store, input.model, last, uid, short)
                            .await
                        {
                            Ok(held) => held,
                            Err(e) => {
                                tracing::error!(target: "portcullis::security", role, error = %e, "group role check failed");
                                return Ok(RemovedCheck::Undecidable);
                            }
                        }
                    } else if self.resolvers.contains_key(&role) {
                        return Ok(RemovedCheck::Undecidable);
                    } else if role == OWNER {
                        user_id
                            .as_deref()
                            .is_some_and(|uid| owns(app, input.model, last, uid))
                    } else {
                        roles.holds(&role, principals)
                    };
                    run.answer(held);
                }
                Step::Done(decision) => break decision,
            }
        };
        Ok(RemovedCheck::Decided(Some(decision)))
    }

    /// What a decision about `input` starts from: the caller's principals, this node's
    /// snapshot of the ACL table and role memberships, and the user id.
    fn facts(&self, app: &App, input: &AccessInput<'_>) -> Facts {
        Facts {
            principals: principals_of(app, input.token, input.app_id),
            db_rules: self.db_rules.read().map(|g| g.clone()).unwrap_or_default(),
            roles: self.roles.read().map(|g| g.clone()).unwrap_or_default(),
            user_id: input.token.and_then(Token::user_id_string),
        }
    }

    /// The error for a denial: 401 without a token, else the configured status.
    pub fn denial(&self, model: &Model, has_token: bool) -> ApiError {
        match denial_status(has_token, model.options.acl_error_status, self.app_status) {
            403 => ApiError::new(403, "Access Denied").code("ACCESS_DENIED"),
            404 => ApiError::model_not_found(format!("could not find {} with id", model.name)),
            _ => ApiError::new(401, "Authorization Required").code("AUTHORIZATION_REQUIRED"),
        }
    }

    /// Which of `roles` the caller holds for this request, for the role-based authorizer:
    /// built-in roles from the principals, `$owner` and static or custom roles as the ACL
    /// engine would resolve them.
    pub async fn roles_held(
        &self,
        app: &App,
        store: &Store,
        input: &AccessInput<'_>,
        roles: &[String],
    ) -> Result<Vec<String>, ApiError> {
        let principals = principals_of(app, input.token, input.app_id);
        let user_id = input.token.and_then(Token::user_id_string);
        let statics = self.roles.read().map(|g| g.clone()).unwrap_or_default();
        let mut held = Vec::new();
        for role in roles {
            let yes = match portcullis_authz::builtin_role_held(role, &principals) {
                Some(b) => b,
                None => {
                    self.role_held(
                        app,
                        store,
                        role,
                        input,
                        user_id.as_deref(),
                        &principals,
                        &statics,
                    )
                    .await?
                }
            };
            if yes && !held.contains(role) {
                held.push(role.clone());
            }
        }
        Ok(held)
    }

    #[allow(clippy::too_many_arguments)]
    async fn role_held(
        &self,
        app: &App,
        store: &Store,
        role: &str,
        input: &AccessInput<'_>,
        user_id: Option<&str>,
        principals: &[Principal],
        roles: &StaticRoles,
    ) -> Result<bool, ApiError> {
        if let Some(resolver) = self.resolvers.get(role) {
            let ctx = RoleContext {
                app,
                store,
                model: input.model,
                model_id: input.model_id,
                user_id,
                principals,
                method: &input.method.name,
                access_type: input.method.access_type,
                body: input.body,
            };
            return Ok(match resolver.is_in_role(&ctx).await {
                Ok(held) => held,
                Err(e) => {
                    tracing::error!(target: "portcullis::security", role, error = %e, "role resolver failed; role not held");
                    false
                }
            });
        }
        if role == OWNER {
            return is_owner(app, store, input.model, input.model_id, user_id).await;
        }
        Ok(roles.holds(role, principals))
    }
}

/// The decision when the token's scopes do not cover the method at all (no rule is asked).
fn scope_denial(input: &AccessInput<'_>) -> Option<Decision> {
    if scopes_allow(input.model, &input.method.name, input.token) {
        return None;
    }
    tracing::debug!(target: "portcullis::security", model = %input.model.name, method = %input.method.name, "denied by scope");
    Some(Decision::denied_by_scope(
        &input.model.name,
        &input.method.name,
        input.method.access_type,
    ))
}

/// LoopBack's authorization scopes: a token (default scope `DEFAULT`) may call a method
/// only if they share a scope. Password-reset tokens carry only `reset-password`, which
/// only `setPassword` accepts; with `restrictResetPasswordTokenScope`, `setPassword`
/// accepts nothing else.
fn scopes_allow(model: &Model, method: &str, token: Option<&Token>) -> bool {
    const DEFAULT: &str = "DEFAULT";
    let token_scopes: Vec<&str> = match token {
        Some(t) if !t.scopes.is_empty() => t.scopes.iter().map(String::as_str).collect(),
        _ => vec![DEFAULT],
    };
    let method_scopes: &[&str] = if model.is_user_model() && method == "setPassword" {
        if model.setting_bool("restrictResetPasswordTokenScope") == Some(true) {
            &[crate::users::RESET_SCOPE]
        } else {
            &[DEFAULT, crate::users::RESET_SCOPE]
        }
    } else {
        &[DEFAULT]
    };
    token_scopes.iter().any(|s| method_scopes.contains(s))
}

/// The principals a token carries: its user (typed USER, or the user model name when the
/// token names one) and its application.
pub fn principals_of(app: &App, token: Option<&Token>, app_id: Option<&str>) -> Vec<Principal> {
    let mut out = Vec::new();
    // An application identified by its keys (no token).
    if let Some(id) = app_id {
        out.push(Principal::app(id));
    }
    if let Some(t) = token {
        if let Some(uid) = t.user_id_string() {
            let ptype = match t.principal_type.as_deref() {
                None | Some("USER") => PrincipalType::User,
                Some(other) if app.model_by_name(other).is_some_and(Model::is_user_model) => {
                    PrincipalType::Custom(other.to_string())
                }
                Some(_) => PrincipalType::User,
            };
            out.push(Principal::new(ptype, uid));
        }
        if let Some(app_id) = &t.app_id {
            if !out
                .iter()
                .any(|p| p.principal_type == PrincipalType::App && &p.id == app_id)
            {
                out.push(Principal::app(app_id.clone()));
            }
        }
    }
    out
}

/// LoopBack's `$owner` check, with its exact owner detection.
async fn is_owner(
    app: &App,
    store: &Store,
    model: &Model,
    model_id: Option<&str>,
    user_id: Option<&str>,
) -> Result<bool, ApiError> {
    let (Some(model_id), Some(user_id)) = (model_id, user_id) else {
        return Ok(false);
    };
    if model_id.is_empty() || model_id == "0" || user_id.is_empty() {
        return Ok(false);
    }
    if model.is_user_model() {
        return Ok(model_id == user_id);
    }
    let Some(id) = portcullis_query::coerce_id(model, model_id) else {
        return Ok(false);
    };
    let Some(instance) = store
        .find_by_id(model.id, &id, None)
        .await
        .map_err(|e| store_error(&model.name, e))?
    else {
        return Ok(false);
    };
    Ok(owns(app, model, &instance, user_id))
}

/// LoopBack's owner detection on a loaded instance.
fn owns(app: &App, model: &Model, instance: &Record, user_id: &str) -> bool {
    if user_id.is_empty() {
        return false;
    }
    if model.is_user_model() {
        return instance
            .get(model.id_name())
            .is_some_and(|v| value_to_id_string(v) == user_id);
    }
    let matches = |v: Option<&Value>| {
        v.filter(|v| !v.is_null())
            .is_some_and(|v| value_to_id_string(v) == user_id)
    };
    let user_relations = || {
        model
            .relations
            .iter()
            .filter(|r| r.kind == RelationKind::BelongsTo && app.model(r.target).is_user_model())
    };
    match &model.options.owner_relations {
        OwnerRelations::Legacy => {
            let legacy = instance
                .get("userId")
                .filter(|v| !v.is_null())
                .or_else(|| instance.get("owner").filter(|v| !v.is_null()));
            match legacy {
                Some(v) => matches(Some(v)),
                // Only the first belongsTo to a user model counts (LoopBack's rule).
                None => user_relations()
                    .next()
                    .is_some_and(|r| owner_via(instance, &r.foreign_key, matches)),
            }
        }
        OwnerRelations::All => {
            user_relations().any(|r| owner_via(instance, &r.foreign_key, matches))
        }
        OwnerRelations::Named(names) => user_relations()
            .filter(|r| names.contains(&r.name))
            .any(|r| owner_via(instance, &r.foreign_key, matches)),
    }
}

fn owner_via(instance: &Record, key: &str, matches: impl Fn(Option<&Value>) -> bool) -> bool {
    matches(instance.get(key))
}

/// A rule from an `ACL` table row. Rows LoopBack would never fetch (a null model,
/// property or access type) and rows with invalid values are left out, the latter with a
/// logged error.
fn table_rule(row: &Record) -> Option<Rule> {
    let text = |k: &str| row.get(k).and_then(Value::as_str);
    let id = row.get("id").map(value_to_id_string).unwrap_or_default();
    let (model, property, access) = (text("model")?, text("property")?, text("accessType")?);
    let invalid = |what: &str| {
        tracing::error!(target: "portcullis::security", acl_row = %id, "ACL table row skipped: {what}");
        None::<Rule>
    };
    let Some(access_type) = AccessType::parse(access) else {
        return invalid(&format!("unknown accessType `{access}`"));
    };
    let permission = match text("permission") {
        None => None,
        Some(p) => match Permission::parse(p) {
            Some(p) => Some(p),
            None => return invalid(&format!("unknown permission `{p}`")),
        },
    };
    let Some(principal_type) = text("principalType").and_then(PrincipalType::parse) else {
        return invalid("missing or unknown principalType");
    };
    let principal_id = match row.get("principalId") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return invalid("missing principalId"),
    };
    Some(Rule {
        model: Some(model.to_string()),
        property: if property == "*" {
            PropertyMatch::Any
        } else {
            PropertyMatch::One(property.to_string())
        },
        access_type,
        principal_type,
        principal_id,
        permission,
        source: RuleSource::Table { id },
    })
}
