//! Multi-tenant group roles: the behaviour of `loopback-component-access-groups`, built in.
//! Each configured `$group:<role>` is a role resolver ("the user holds `<role>` in the group
//! of the row this request touches"), and lists of group content are narrowed in SQL to the
//! groups the user belongs to, with a semi-join on the group access table.
//!
//! Configured from `server/component-config.json` under `loopback-component-access-groups`,
//! with the component's options and defaults. The component's holes are closed on purpose
//! (see `docs/security.md`): a `where.id` never skips the list filter, a create or upsert
//! with a fresh id is judged by the group in its body, bulk writes are limited to the groups
//! where the user holds the granting role, and a row cannot move to a group where the user
//! lacks the role.

use std::sync::Arc;

use portcullis_authz::AccessType;
use portcullis_query::{Op, PropRef, Scalar, Where};
use portcullis_schema::{App, Model, ModelId, PropType, RelationKind};
use portcullis_store::Store;
use serde_json::Value;

use crate::access::{BoxFuture, RoleContext, RoleResolver};
use crate::token::value_to_id_string;

/// The component's options, resolved against the app's models.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub group_model: ModelId,
    pub access_model: ModelId,
    /// Group id column, in content models and in the access model.
    pub foreign_key: String,
    /// `(full role name, role as stored in the access table)`, e.g. `("$group:admin", "admin")`.
    pub roles: Vec<(String, String)>,
    pub apply_to_static: bool,
}

/// Why the component's configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("loopback-component-access-groups: {0}")]
pub struct GroupConfigError(String);

impl GroupConfig {
    /// Reads the component's configuration; `None` when the app does not use it.
    pub fn from_app(app: &App) -> Result<Option<GroupConfig>, GroupConfigError> {
        let Some(raw) = app.components.get("loopback-component-access-groups") else {
            return Ok(None);
        };
        let Some(raw) = raw.as_object() else {
            return Ok(None);
        };
        let text = |k: &str, default: &str| {
            raw.get(k)
                .and_then(Value::as_str)
                .unwrap_or(default)
                .to_string()
        };
        let group_name = text("groupModel", "Group");
        let access_name = text("groupAccessModel", "GroupAccess");
        let group_model = app.model_id(&group_name).ok_or_else(|| {
            GroupConfigError(format!(
                "groupModel `{group_name}` is not a model of this app"
            ))
        })?;
        let access_model = app.model_id(&access_name).ok_or_else(|| {
            GroupConfigError(format!(
                "groupAccessModel `{access_name}` is not a model of this app"
            ))
        })?;
        // The component fills a default only for a missing key; a falsy one becomes the
        // group model's name lower-cased plus `Id`.
        let foreign_key = match raw.get("foreignKey") {
            None => "groupId".to_string(),
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => format!("{}Id", group_name.to_lowercase()),
        };
        let role_names: Vec<String> = match raw.get("groupRoles") {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => vec!["$group:admin".into(), "$group:member".into()],
        };
        let mut roles = Vec::new();
        for name in role_names {
            let short = name.split(':').nth(1).filter(|s| !s.is_empty());
            match short {
                Some(s) => roles.push((name.clone(), s.to_string())),
                None => {
                    return Err(GroupConfigError(format!(
                        "`{name}` is an invalid access group name"
                    )))
                }
            }
        }
        let access = app.model(access_model);
        for key in ["userId", "role", foreign_key.as_str()] {
            if access.property(key).is_none() {
                return Err(GroupConfigError(format!(
                    "the group access model `{access_name}` has no `{key}` property"
                )));
            }
        }
        Ok(Some(GroupConfig {
            group_model,
            access_model,
            foreign_key,
            roles,
            apply_to_static: raw
                .get("applyToStatic")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        }))
    }

    pub fn is_group_model(&self, model: &Model) -> bool {
        model.id == self.group_model
    }

    /// Group content: every model (other than the group and access models) with a
    /// belongsTo relation to the group model.
    pub fn is_content_model(&self, model: &Model) -> bool {
        model.id != self.group_model
            && model.id != self.access_model
            && model
                .relations
                .iter()
                .any(|r| r.kind == RelationKind::BelongsTo && r.target == self.group_model)
    }

    /// The column that names a row's group: the id for the group model, the foreign key
    /// for content.
    pub(crate) fn group_column(&self, app: &App, model: &Model) -> Option<(String, PropType)> {
        if self.is_group_model(model) {
            Some((model.id_name().to_string(), model.id_prop().ty.clone()))
        } else if self.is_content_model(model) {
            let ty = model
                .property(&self.foreign_key)
                .map(|p| p.ty.clone())
                .unwrap_or_else(|| app.model(self.group_model).id_prop().ty.clone());
            Some((self.foreign_key.clone(), ty))
        } else {
            None
        }
    }

    /// `user_id`'s rows of the access table, optionally only those with `role`.
    fn memberships(&self, app: &App, user_id: &str, role: Option<&str>) -> Where {
        let access = app.model(self.access_model);
        let uid_ty = access
            .property("userId")
            .map(|p| p.ty.clone())
            .unwrap_or(PropType::String);
        let uid = portcullis_query::coerce_scalar(&Value::String(user_id.to_string()), &uid_ty)
            .unwrap_or(Scalar::Text(user_id.to_string()));
        let mut w = Where::declared("userId", uid_ty, Op::Eq(uid));
        if let Some(r) = role {
            w = w.and(Where::declared(
                "role",
                PropType::String,
                Op::Eq(Scalar::Text(r.to_string())),
            ));
        }
        w
    }

    /// The row filter for lists of `model` seen by `user_id`: rows of the user's groups
    /// (any role), or of the groups where the user holds `role`. `None` when the model is
    /// neither group nor content, or the component does not filter lists.
    pub fn row_filter(
        &self,
        app: &App,
        model: &Model,
        user_id: Option<&str>,
        role: Option<&str>,
    ) -> Option<Where> {
        if !self.apply_to_static {
            return None;
        }
        let (column, ty) = self.group_column(app, model)?;
        // The component leaves anonymous requests unfiltered; its ACLs are expected to
        // deny them.
        let user_id = user_id?;
        Some(Where::InSubquery {
            property: PropRef::Declared { name: column, ty },
            model: self.access_model,
            select: self.foreign_key.clone(),
            filter: Box::new(self.memberships(app, user_id, role)),
        })
    }

    /// The short role name of a full `$group:` role.
    pub fn short_role(&self, full: &str) -> Option<&str> {
        self.roles
            .iter()
            .find(|(f, _)| f == full)
            .map(|(_, s)| s.as_str())
    }

    async fn has_role(
        &self,
        app: &App,
        store: &Store,
        user_id: &str,
        role: &str,
        group: Option<&Value>,
    ) -> Result<bool, String> {
        let access = app.model(self.access_model);
        let mut w = self.memberships(app, user_id, Some(role));
        if let Some(g) = group {
            let ty = access
                .property(&self.foreign_key)
                .map(|p| p.ty.clone())
                .unwrap_or(PropType::String);
            let g = portcullis_query::coerce_scalar(&Value::String(value_to_id_string(g)), &ty)
                .map_err(|e| e.message)?;
            w = w.and(Where::declared(&self.foreign_key, ty, Op::Eq(g)));
        }
        store
            .count(self.access_model, Some(&w))
            .await
            .map(|n| n > 0)
            .map_err(|e| e.to_string())
    }

    /// The group a request is judged against, and the group its body names.
    async fn groups_of(
        &self,
        ctx: &RoleContext<'_>,
    ) -> Result<(Option<Value>, Option<Value>), String> {
        let target = ctx
            .body
            .and_then(|b| b.get(&self.foreign_key))
            .filter(|v| truthy(v))
            .cloned();
        if self.is_group_model(ctx.model) {
            return Ok((ctx.model_id.map(|id| Value::String(id.to_string())), None));
        }
        if !self.is_content_model(ctx.model) {
            return Ok((None, None));
        }
        // The row the request touches: the URL id, else (upserts) the id in the body. An
        // existing row is judged by its own group; a body id that names no row is judged
        // by the group in the body (the component let such a create pass unchecked).
        let body_id = ctx
            .body
            .and_then(|b| b.get(ctx.model.id_name()))
            .filter(|v| truthy(v))
            .map(value_to_id_string);
        if let Some(id) = ctx.model_id.map(str::to_string).or(body_id) {
            let row = match portcullis_query::coerce_id(ctx.model, &id) {
                Some(sid) => ctx
                    .store
                    .find_by_id(ctx.model.id, &sid, None)
                    .await
                    .map_err(|e| e.to_string())?,
                None => None,
            };
            if let Some(row) = row {
                let current = row.get(&self.foreign_key).filter(|v| truthy(v)).cloned();
                return Ok((current, target));
            }
            if ctx.model_id.is_some() {
                // A missing row: nothing to judge; the method answers 404.
                return Ok((None, target));
            }
        }
        Ok((target.clone(), target))
    }

    /// Whether `user_id` holds `role` for `row` of `model`, judged from the row as given
    /// (its last state, for a row that no longer exists), the way [`GroupRole`] judges a
    /// read of a stored row.
    pub(crate) async fn holds_for_row(
        &self,
        app: &App,
        store: &Store,
        model: &Model,
        row: &portcullis_store::Record,
        user_id: &str,
        role: &str,
    ) -> Result<bool, String> {
        let current = self
            .group_column(app, model)
            .and_then(|(column, _)| row.get(&column).filter(|v| truthy(v)).cloned());
        match current {
            Some(group) => self.has_role(app, store, user_id, role, Some(&group)).await,
            // As for a read without a group context.
            None => Ok(self.apply_to_static),
        }
    }

    /// The ids (as strings) of the groups `user_id` belongs to, in any role.
    pub(crate) async fn member_groups(
        &self,
        app: &App,
        store: &Store,
        user_id: &str,
    ) -> Result<Vec<String>, String> {
        let filter = portcullis_query::Filter {
            where_: Some(self.memberships(app, user_id, None)),
            ..portcullis_query::Filter::default()
        };
        let rows = store
            .find(self.access_model, &filter)
            .await
            .map_err(|e| e.to_string())?;
        Ok(rows
            .iter()
            .filter_map(|r| r.get(&self.foreign_key))
            .filter(|v| truthy(v))
            .map(value_to_id_string)
            .collect())
    }

    async fn holds(&self, ctx: &RoleContext<'_>, role: &str) -> Result<bool, String> {
        let Some(user_id) = ctx.user_id else {
            return Ok(false);
        };
        let (current, target) = self.groups_of(ctx).await?;
        let Some(current) = current else {
            if !self.apply_to_static {
                // Basic mode: static methods are never granted by a group role.
                return Ok(false);
            }
            if ctx.access_type == AccessType::Read {
                // No group context: reads pass, and the list filter narrows the rows.
                return Ok(true);
            }
            // A write without a group (bulk updates): the role must be held somewhere;
            // the write is then limited to those groups.
            return self.has_role(ctx.app, ctx.store, user_id, role, None).await;
        };
        if !self
            .has_role(ctx.app, ctx.store, user_id, role, Some(&current))
            .await?
        {
            return Ok(false);
        }
        match target {
            Some(t) if value_to_id_string(&t) != value_to_id_string(&current) => {
                self.has_role(ctx.app, ctx.store, user_id, role, Some(&t))
                    .await
            }
            _ => Ok(true),
        }
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => false,
        Value::String(s) => !s.is_empty(),
        Value::Number(n) => n.as_f64() != Some(0.0),
        _ => true,
    }
}

/// One `$group:<role>` resolver.
pub struct GroupRole {
    pub config: Arc<GroupConfig>,
    pub role: String,
}

impl RoleResolver for GroupRole {
    fn is_in_role<'a>(&'a self, ctx: &'a RoleContext<'a>) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(self.config.holds(ctx, &self.role))
    }
}
