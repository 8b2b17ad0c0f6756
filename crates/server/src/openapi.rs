//! The OpenAPI 3.0.3 description of an app's REST API, built from the compiled models and
//! the route table ([`crate::route::model_methods`]), in the style of LoopBack's explorer:
//! one tag per model, operation ids `Model.method` (`Model.prototype.method` for instance
//! methods), the `filter`/`where` query arguments, a schema per model, LoopBack's error
//! envelope, and the access token as an optional `apiKey` (header `Authorization` or query
//! `access_token`).
//!
//! The output is deterministic: paths follow model load order and LoopBack's method order;
//! every JSON object keeps insertion order.

use std::collections::{BTreeSet, HashMap, HashSet};

use portcullis_schema::{App, Model, ModelId, PropType, Property, RelationKind, ServerSet};
use serde_json::{json, Map, Value};

use crate::route::{model_methods, Action, RelOp, RemoteMethod, Route, Segment, UserOp, Verb};

/// The security scheme for the token in the `Authorization` header.
pub const HEADER_SCHEME: &str = "accessToken";
/// The security scheme for the token in the `access_token` query parameter.
pub const QUERY_SCHEME: &str = "accessTokenQuery";

const FILTER_DESCRIPTION: &str = "Filter defining fields, where, include, order, offset, and \
limit - must be a JSON-encoded string (`{\"something\":\"value\"}`)";
const WHERE_DESCRIPTION: &str = "Criteria to match model instances - must be a JSON-encoded \
string (`{\"something\":\"value\"}`)";

/// The OpenAPI path template of `route` on `model`, below the REST root
/// (`/posts/{id}/creator`).
pub fn path_template(model: &Model, route: &Route) -> String {
    let mut path = String::new();
    let base = model.http_path.trim_matches('/');
    if !base.is_empty() {
        path.push('/');
        path.push_str(base);
    }
    for seg in &route.segments {
        path.push('/');
        match seg {
            Segment::Literal(l) => path.push_str(l),
            Segment::Param(p) => {
                path.push('{');
                path.push_str(p);
                path.push('}');
            }
        }
    }
    if path.is_empty() {
        path.push('/');
    }
    path
}

/// The OpenAPI operation key for a verb. `ALL` (User.logout) is documented as POST, as
/// LoopBack's explorer does.
pub fn openapi_verb(verb: Verb) -> &'static str {
    match verb {
        Verb::Get => "get",
        Verb::Head => "head",
        Verb::Post | Verb::All => "post",
        Verb::Put => "put",
        Verb::Patch => "patch",
        Verb::Delete => "delete",
    }
}

/// Whether LoopBack calls the method on an instance (`Model.prototype.name`).
fn is_instance_method(action: Action) -> bool {
    matches!(
        action,
        Action::PatchAttributes | Action::Relation { .. } | Action::User(UserOp::Verify)
    )
}

/// The operation id of `method`'s route number `index`: `Post.find`,
/// `Post.prototype.__get__creator`; routes after the first get a suffix naming verb and
/// path (`Post.patchOrCreate__put_posts`), as loopback-swagger does.
pub fn operation_id(model: &Model, method: &RemoteMethod, index: usize) -> String {
    let mut id = if is_instance_method(method.action) {
        format!("{}.prototype.{}", model.name, method.name)
    } else {
        format!("{}.{}", model.name, method.name)
    };
    if index > 0 {
        if let Some(route) = method.routes.get(index) {
            let path = path_template(model, route);
            let path: String = path
                .trim_matches('/')
                .chars()
                .filter(|c| *c != '{' && *c != '}')
                .map(|c| if c == '/' { '_' } else { c })
                .collect();
            id.push_str(&format!("__{}_{}", openapi_verb(route.verb), path));
        }
    }
    id
}

/// Names of the component schemas, unique and valid as component keys.
struct Names {
    /// Per model: the response shape, the body for create/replace, the body for patches.
    models: HashMap<ModelId, (String, String, String)>,
    error: String,
    count: String,
    exists: String,
    token: String,
}

fn component_key(name: &str) -> String {
    let key: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if key.is_empty() {
        "_".into()
    } else {
        key
    }
}

impl Names {
    fn new(app: &App) -> Names {
        let mut used = HashSet::new();
        let mut claim = |wanted: &str| -> String {
            let base = component_key(wanted);
            let mut key = base.clone();
            let mut n = 2;
            while used.contains(&key) {
                key = format!("{base}_{n}");
                n += 1;
            }
            used.insert(key.clone());
            key
        };
        let mut models = HashMap::new();
        for model in &app.models {
            let base = claim(&model.name);
            let input = claim(&format!("{base}.input"));
            let patch = claim(&format!("{base}.patch"));
            models.insert(model.id, (base, input, patch));
        }
        Names {
            models,
            error: claim("Error"),
            count: claim("Count"),
            exists: claim("Exists"),
            token: claim("AccessToken"),
        }
    }
}

fn schema_ref(key: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{key}") })
}

/// Which shape of a model a reference wants.
#[derive(Clone, Copy)]
enum Shape {
    Response,
    Input,
    Patch,
}

/// Collects the operations and the model schemas they reference.
struct Builder<'a> {
    app: &'a App,
    names: Names,
    /// Models (by index) whose schemas the document needs.
    needed: BTreeSet<usize>,
    token_model: Option<ModelId>,
    /// The declaration of the custom method being documented.
    current_custom: Option<crate::remote::CustomMethod>,
}

impl<'a> Builder<'a> {
    fn model_ref(&mut self, id: ModelId, shape: Shape) -> Value {
        self.needed.insert(id.0);
        match self.names.models.get(&id) {
            Some((base, input, patch)) => schema_ref(match shape {
                Shape::Response => base,
                Shape::Input => input,
                Shape::Patch => patch,
            }),
            None => json!({ "type": "object" }),
        }
    }

    fn operation(&mut self, model: &Model, method: &RemoteMethod, index: usize) -> Value {
        let Some(route) = method.routes.get(index) else {
            return json!({});
        };
        let app = self.app;
        let mut op = Map::new();
        op.insert("tags".into(), json!([model.name]));
        op.insert("summary".into(), json!(summary(model, method)));
        op.insert(
            "operationId".into(),
            json!(operation_id(model, method, index)),
        );

        let mut params = Vec::new();
        for seg in &route.segments {
            if let Segment::Param(name) = seg {
                params.push(path_param(app, model, method.action, name));
            }
        }
        let mut body: Option<Value> = None;
        let mut responses = Map::new();
        let ok = |schema: Value, description: &str| {
            json!({
                "description": description,
                "content": { "application/json": { "schema": schema } }
            })
        };
        let no_content = || json!({ "description": "No Content" });
        let count = schema_ref(&self.names.count);
        let exists = schema_ref(&self.names.exists);
        let id = model.id;
        match method.action {
            Action::Remote(_) => {
                let mut props = Map::new();
                let mut required = Vec::new();
                if let Some(spec) = &self.current_custom {
                    for arg in &spec.accepts {
                        let schema = match arg.ty {
                            crate::remote::ArgType::Number => json!({"type": "number"}),
                            crate::remote::ArgType::String => json!({"type": "string"}),
                            crate::remote::ArgType::Boolean => json!({"type": "boolean"}),
                            crate::remote::ArgType::Date => {
                                json!({"type": "string", "format": "date-time"})
                            }
                            crate::remote::ArgType::Object => json!({"type": "object"}),
                            crate::remote::ArgType::Array => json!({"type": "array", "items": {}}),
                            crate::remote::ArgType::Any => json!({}),
                        };
                        match arg.source {
                            crate::remote::ArgSource::Query | crate::remote::ArgSource::Header => {
                                let location = if arg.source == crate::remote::ArgSource::Query {
                                    "query"
                                } else {
                                    "header"
                                };
                                params.push(json!({"name": arg.name, "in": location, "required": arg.required, "schema": schema}));
                            }
                            crate::remote::ArgSource::Req => {}
                            // Filled from the path: listed as a path parameter, typed here.
                            _ if route.segments.contains(&Segment::Param(arg.name.clone())) => {
                                for p in params.iter_mut() {
                                    if p["in"] == "path" && p["name"] == arg.name.as_str() {
                                        p["schema"] = schema.clone();
                                    }
                                }
                            }
                            crate::remote::ArgSource::Path => {}
                            _ => {
                                if arg.required {
                                    required.push(json!(arg.name));
                                }
                                props.insert(arg.name.clone(), schema);
                            }
                        }
                    }
                }
                if !props.is_empty() && !matches!(route.verb, Verb::Get | Verb::Head) {
                    let mut schema = json!({"type": "object", "properties": props});
                    if !required.is_empty() {
                        schema["required"] = Value::Array(required);
                    }
                    body = Some(json!({
                        "required": false,
                        "content": {
                            "application/json": { "schema": schema.clone() },
                            "application/x-www-form-urlencoded": { "schema": schema }
                        }
                    }));
                }
                let returns = self
                    .current_custom
                    .as_ref()
                    .is_some_and(|c| !c.returns.is_empty());
                if returns {
                    responses.insert("200".into(), ok(json!({}), "The method's result"));
                } else {
                    responses.insert("204".into(), no_content());
                }
            }
            Action::Create => {
                body = Some(json_body(self.model_ref(id, Shape::Input), false));
                let r = self.model_ref(id, Shape::Response);
                responses.insert("200".into(), ok(r, "The created instance"));
            }
            Action::PatchOrCreate => {
                body = Some(json_body(self.model_ref(id, Shape::Patch), false));
                let r = self.model_ref(id, Shape::Response);
                responses.insert("200".into(), ok(r, "The saved instance"));
            }
            Action::ReplaceOrCreate => {
                body = Some(json_body(self.model_ref(id, Shape::Input), false));
                let r = self.model_ref(id, Shape::Response);
                responses.insert("200".into(), ok(r, "The saved instance"));
            }
            Action::UpsertWithWhere => {
                params.push(query_param("where", WHERE_DESCRIPTION, false));
                body = Some(json_body(self.model_ref(id, Shape::Patch), false));
                let r = self.model_ref(id, Shape::Response);
                responses.insert("200".into(), ok(r, "The saved instance"));
            }
            Action::Exists => {
                if route.verb == Verb::Head {
                    responses.insert("200".into(), json!({"description": "The instance exists"}));
                    responses.insert(
                        "404".into(),
                        json!({"description": "The instance does not exist"}),
                    );
                } else {
                    responses.insert("200".into(), ok(exists, "Whether the instance exists"));
                }
            }
            Action::FindById => {
                params.push(query_param("filter", FILTER_DESCRIPTION, false));
                let r = self.model_ref(id, Shape::Response);
                responses.insert("200".into(), ok(r, "The instance"));
            }
            Action::ReplaceById => {
                body = Some(json_body(self.model_ref(id, Shape::Input), false));
                let r = self.model_ref(id, Shape::Response);
                responses.insert("200".into(), ok(r, "The saved instance"));
            }
            Action::Find => {
                params.push(query_param("filter", FILTER_DESCRIPTION, false));
                let r = self.model_ref(id, Shape::Response);
                responses.insert(
                    "200".into(),
                    ok(
                        json!({"type": "array", "items": r}),
                        "The matching instances",
                    ),
                );
            }
            Action::FindOne => {
                params.push(query_param("filter", FILTER_DESCRIPTION, false));
                let r = self.model_ref(id, Shape::Response);
                responses.insert("200".into(), ok(r, "The first matching instance"));
            }
            Action::UpdateAll => {
                params.push(query_param("where", WHERE_DESCRIPTION, false));
                body = Some(json_body(self.model_ref(id, Shape::Patch), false));
                responses.insert("200".into(), ok(count, "How many instances were updated"));
            }
            Action::DeleteById => {
                responses.insert("200".into(), ok(count, "How many instances were deleted"));
            }
            Action::Count => {
                params.push(query_param("where", WHERE_DESCRIPTION, false));
                responses.insert("200".into(), ok(count, "How many instances match"));
            }
            Action::ChangeStream => {
                params.push(query_param(
                    "options",
                    "JSON object: `where` narrows the events to rows that match it.",
                    false,
                ));
                responses.insert(
                    "200".into(),
                    json!({
                        "description": "Server-sent events: `data: {\"type\", \"target\", \"data\"}`",
                        "content": { "text/event-stream": { "schema": {"type": "string"} } }
                    }),
                );
            }
            Action::PatchAttributes => {
                body = Some(json_body(self.model_ref(id, Shape::Patch), false));
                let r = self.model_ref(id, Shape::Response);
                responses.insert("200".into(), ok(r, "The saved instance"));
            }
            Action::Relation { relation, op: rel } => {
                let Some(rel_def) = model.relations.get(relation) else {
                    return Value::Object(op);
                };
                let target = rel_def.target;
                let target_r = self.model_ref(target, Shape::Response);
                match rel {
                    RelOp::Get => {
                        params.push(query_param("filter", FILTER_DESCRIPTION, false));
                        let schema = if rel_def.kind.is_to_many() {
                            json!({"type": "array", "items": target_r})
                        } else {
                            target_r
                        };
                        responses.insert("200".into(), ok(schema, "The related instance(s)"));
                    }
                    RelOp::FindById => {
                        params.push(query_param("filter", FILTER_DESCRIPTION, false));
                        responses.insert("200".into(), ok(target_r, "The related instance"));
                    }
                    RelOp::Count => {
                        params.push(query_param("where", WHERE_DESCRIPTION, false));
                        responses.insert("200".into(), ok(count, "How many related instances"));
                    }
                    RelOp::Create => {
                        body = Some(json_body(self.model_ref(target, Shape::Input), false));
                        responses.insert("200".into(), ok(target_r, "The created instance"));
                    }
                    RelOp::UpdateById | RelOp::Update => {
                        body = Some(json_body(self.model_ref(target, Shape::Patch), false));
                        responses.insert("200".into(), ok(target_r, "The saved instance"));
                    }
                    RelOp::Link => {
                        match rel_def.through {
                            Some(through) => {
                                body =
                                    Some(json_body(self.model_ref(through, Shape::Patch), false));
                                let r = self.model_ref(through, Shape::Response);
                                responses.insert("200".into(), ok(r, "The created link"));
                            }
                            None => {
                                responses.insert("200".into(), json!({"description": "Linked"}));
                            }
                        };
                    }
                    RelOp::ExistsLink => {
                        responses.insert("200".into(), json!({"description": "The link exists"}));
                        responses.insert(
                            "404".into(),
                            json!({"description": "The link does not exist"}),
                        );
                    }
                    RelOp::Delete | RelOp::DestroyById | RelOp::Unlink | RelOp::Destroy => {
                        responses.insert("204".into(), no_content());
                    }
                }
            }
            Action::User(user_op) => match user_op {
                UserOp::Login => {
                    params.push(query_param(
                        "include",
                        "Related objects to include in the response: `user` adds the \
                         logged-in user as `user`.",
                        false,
                    ));
                    body = Some(form_body(
                        json!({
                            "type": "object",
                            "required": ["password"],
                            "properties": {
                                "email": {"type": "string"},
                                "username": {"type": "string"},
                                "password": {"type": "string", "format": "password"},
                                "realm": {"type": "string"},
                                "ttl": {
                                    "type": "number",
                                    "description": "Token lifetime in seconds"
                                }
                            },
                            "description": "Credentials: `email` or `username`, and `password`"
                        }),
                        true,
                    ));
                    let token = match self.token_model {
                        Some(t) => self.model_ref(t, Shape::Response),
                        None => schema_ref(&self.names.token),
                    };
                    responses.insert(
                        "200".into(),
                        ok(
                            token,
                            "The access token: `id` is the token, `userId` the user's id",
                        ),
                    );
                }
                UserOp::Logout | UserOp::Verify => {
                    responses.insert("204".into(), no_content());
                }
                UserOp::Confirm => {
                    params.push(query_param("uid", "The user's id", true));
                    params.push(query_param("token", "The verification token", true));
                    params.push(query_param(
                        "redirect",
                        "A path on this site to redirect to once confirmed",
                        false,
                    ));
                    responses.insert("204".into(), no_content());
                    responses.insert(
                        "302".into(),
                        json!({
                            "description": "Confirmed; redirect to `redirect`",
                            "headers": {"Location": {"schema": {"type": "string"}}}
                        }),
                    );
                }
                UserOp::ResetPassword => {
                    body = Some(form_body(
                        json!({
                            "type": "object",
                            "required": ["email"],
                            "properties": {
                                "email": {"type": "string"},
                                "realm": {"type": "string"}
                            }
                        }),
                        true,
                    ));
                    responses.insert("204".into(), no_content());
                }
                UserOp::ChangePassword => {
                    body = Some(form_body(
                        json!({
                            "type": "object",
                            "required": ["oldPassword", "newPassword"],
                            "properties": {
                                "oldPassword": {"type": "string", "format": "password"},
                                "newPassword": {"type": "string", "format": "password"}
                            }
                        }),
                        true,
                    ));
                    responses.insert("204".into(), no_content());
                }
                UserOp::SetPassword => {
                    body = Some(form_body(
                        json!({
                            "type": "object",
                            "required": ["newPassword"],
                            "properties": {
                                "newPassword": {"type": "string", "format": "password"}
                            }
                        }),
                        true,
                    ));
                    responses.insert("204".into(), no_content());
                }
            },
        }
        responses.insert(
            "4XX".into(),
            json!({ "$ref": "#/components/responses/Error" }),
        );
        if !params.is_empty() {
            op.insert("parameters".into(), Value::Array(params));
        }
        if let Some(body) = body {
            op.insert("requestBody".into(), body);
        }
        op.insert("responses".into(), Value::Object(responses));
        Value::Object(op)
    }
}

fn summary(model: &Model, method: &RemoteMethod) -> String {
    let relation_name = |i: usize| {
        model
            .relations
            .get(i)
            .map(|r| r.name.as_str())
            .unwrap_or("")
    };
    match method.action {
        Action::Remote(_) => format!("Custom remote method {}.", method.name),
        Action::Create => "Create a new instance of the model and persist it into the data source.".into(),
        Action::PatchOrCreate => "Patch an existing model instance or insert a new one into the data source.".into(),
        Action::ReplaceOrCreate => "Replace an existing model instance or insert a new one into the data source.".into(),
        Action::UpsertWithWhere => "Update an existing model instance or insert a new one into the data source based on the where criteria.".into(),
        Action::Exists => "Check whether a model instance exists in the data source.".into(),
        Action::FindById => "Find a model instance by id from the data source.".into(),
        Action::ReplaceById => "Replace attributes for a model instance and persist it into the data source.".into(),
        Action::Find => "Find all instances of the model matched by filter from the data source.".into(),
        Action::FindOne => "Find first instance of the model matched by filter from the data source.".into(),
        Action::UpdateAll => "Update instances of the model matched by where from the data source.".into(),
        Action::DeleteById => "Delete a model instance by id from the data source.".into(),
        Action::Count => "Count instances of the model matched by where from the data source.".into(),
        Action::PatchAttributes => "Patch attributes for a model instance and persist it into the data source.".into(),
        Action::ChangeStream => "Create a change stream.".into(),
        Action::Relation { relation, op } => {
            let name = relation_name(relation);
            let kind = model.relations.get(relation).map(|r| r.kind);
            match op {
                RelOp::Get => match kind {
                    Some(RelationKind::BelongsTo) => format!("Fetches belongsTo relation {name}."),
                    Some(RelationKind::HasOne) => format!("Fetches hasOne relation {name}."),
                    _ => format!("Queries {name} of {}.", model.name),
                },
                RelOp::FindById => format!("Find a related item by id for {name}."),
                RelOp::Count => format!("Counts {name} of {}.", model.name),
                RelOp::Create => format!("Creates a new instance in {name} of this model."),
                RelOp::Delete => format!("Deletes all {name} of this model."),
                RelOp::UpdateById => format!("Update a related item by id for {name}."),
                RelOp::DestroyById => format!("Delete a related item by id for {name}."),
                RelOp::Link => format!("Add a related item by id for {name}."),
                RelOp::Unlink => format!("Remove the {name} relation to an item by id."),
                RelOp::ExistsLink => format!("Check the existence of {name} relation to an item by id."),
                RelOp::Update => format!("Update {name} of this model."),
                RelOp::Destroy => format!("Deletes {name} of this model."),
            }
        }
        Action::User(op) => match op {
            UserOp::Login => "Login a user with username/email and password.".into(),
            UserOp::Logout => "Logout a user with access token.".into(),
            UserOp::Verify => "Trigger user's identity verification with configured verifyOptions.".into(),
            UserOp::Confirm => "Confirm a user registration with identity verification token.".into(),
            UserOp::ResetPassword => "Reset password for a user with email.".into(),
            UserOp::ChangePassword => "Change a user's password.".into(),
            UserOp::SetPassword => "Reset user's password via a password reset token.".into(),
        },
    }
}

fn path_param(app: &App, model: &Model, action: Action, name: &str) -> Value {
    let (description, schema) = match name {
        "id" => (format!("{} id", model.name), id_schema(model)),
        _ => {
            let target = match action {
                Action::Relation { relation, .. } => model.relations.get(relation),
                _ => None,
            };
            match target {
                Some(rel) => (
                    format!("Foreign key for {}", rel.name),
                    id_schema(app.model(rel.target)),
                ),
                None => (name.to_string(), json!({"type": "string"})),
            }
        }
    };
    json!({
        "name": name,
        "in": "path",
        "description": description,
        "required": true,
        "schema": schema
    })
}

/// Path parameters take the id's scalar type; anything else is a string.
fn id_schema(model: &Model) -> Value {
    match model.properties.get(model.id_property).map(|p| &p.ty) {
        Some(PropType::Number) => json!({"type": "number"}),
        _ => json!({"type": "string"}),
    }
}

fn query_param(name: &str, description: &str, required: bool) -> Value {
    json!({
        "name": name,
        "in": "query",
        "description": description,
        "required": required,
        "schema": {"type": "string"}
    })
}

fn json_body(schema: Value, required: bool) -> Value {
    json!({
        "required": required,
        "content": { "application/json": { "schema": schema } }
    })
}

/// A body LoopBack also takes as an HTML form.
fn form_body(schema: Value, required: bool) -> Value {
    json!({
        "required": required,
        "content": {
            "application/json": { "schema": schema.clone() },
            "application/x-www-form-urlencoded": { "schema": schema }
        }
    })
}

/// The JSON schema of a property type.
pub fn type_schema(ty: &PropType) -> Value {
    match ty {
        PropType::String => json!({"type": "string"}),
        PropType::Number => json!({"type": "number"}),
        PropType::Boolean => json!({"type": "boolean"}),
        PropType::Date => json!({"type": "string", "format": "date-time"}),
        PropType::Object => json!({"type": "object"}),
        PropType::Array(item) => json!({
            "type": "array",
            "items": item.as_deref().map(type_schema).unwrap_or_else(|| json!({}))
        }),
        PropType::Any => json!({}),
    }
}

fn property_schema(prop: &Property) -> Value {
    let mut schema = type_schema(&prop.ty);
    if let (Value::Object(map), Some(default)) = (&mut schema, &prop.default) {
        if !default.is_null() {
            map.insert("default".into(), default.clone());
        }
    }
    schema
}

/// Whether the server sets the property itself, ignoring client input.
fn server_set(prop: &Property) -> bool {
    prop.server_set != ServerSet::No || prop.force_default
}

/// Whether a client must send the property on create/replace.
fn required_on_input(prop: &Property) -> bool {
    prop.required
        && !prop.generated
        && prop.default.is_none()
        && prop.default_fn.is_none()
        && !server_set(prop)
}

fn model_schema(model: &Model, shape: Shape) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for prop in &model.properties {
        let keep = match shape {
            Shape::Response => !prop.hidden,
            Shape::Input | Shape::Patch => !server_set(prop),
        };
        if !keep {
            continue;
        }
        properties.insert(prop.name.clone(), property_schema(prop));
        let is_required = match shape {
            Shape::Response => prop.required,
            Shape::Input => required_on_input(prop),
            Shape::Patch => false,
        };
        if is_required {
            required.push(Value::String(prop.name.clone()));
        }
    }
    let mut schema = Map::new();
    schema.insert("type".into(), json!("object"));
    if let Some(description) = model.setting_str("description") {
        schema.insert("description".into(), json!(description));
    }
    schema.insert("properties".into(), Value::Object(properties));
    if !required.is_empty() {
        schema.insert("required".into(), Value::Array(required));
    }
    if model.is_strict() {
        schema.insert("additionalProperties".into(), json!(false));
    }
    Value::Object(schema)
}

/// The OpenAPI 3.0.3 document for every route of every public model of `app`.
pub fn openapi_document(app: &App) -> Value {
    let mut builder = Builder {
        app,
        names: Names::new(app),
        needed: BTreeSet::new(),
        token_model: app.model_id("AccessToken"),
        current_custom: None,
    };

    let mut tags = Vec::new();
    let mut paths = Map::new();
    for model in app.public_models() {
        let mut tag = Map::new();
        tag.insert("name".into(), json!(model.name));
        if let Some(description) = model.setting_str("description") {
            tag.insert("description".into(), json!(description));
        }
        tags.push(Value::Object(tag));
        let declared = crate::remote::declared_methods(model).unwrap_or_default();
        let mut methods = model_methods(model);
        methods.extend(declared.iter().map(|(m, _)| m.clone()));
        for method in methods {
            builder.current_custom = match method.action {
                Action::Remote(i) => declared.get(i).map(|(_, spec)| spec.clone()),
                _ => None,
            };
            for (index, route) in method.routes.iter().enumerate() {
                let path = path_template(model, route);
                let verb = openapi_verb(route.verb);
                let item = paths
                    .entry(path)
                    .or_insert_with(|| Value::Object(Map::new()));
                let Value::Object(item) = item else {
                    continue;
                };
                // The first route registered for a verb and path wins, as in the matcher.
                if item.contains_key(verb) {
                    continue;
                }
                let op = builder.operation(model, &method, index);
                item.insert(verb.to_string(), op);
            }
        }
    }

    let mut schemas = Map::new();
    for index in &builder.needed {
        let Some(model) = app.models.get(*index) else {
            continue;
        };
        let Some((base, input, patch)) = builder.names.models.get(&model.id) else {
            continue;
        };
        schemas.insert(base.clone(), model_schema(model, Shape::Response));
        schemas.insert(input.clone(), model_schema(model, Shape::Input));
        schemas.insert(patch.clone(), model_schema(model, Shape::Patch));
    }
    let names = &builder.names;
    schemas.insert(
        names.error.clone(),
        json!({
            "type": "object",
            "description": "LoopBack's error envelope",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["statusCode", "message"],
                    "properties": {
                        "statusCode": {"type": "integer"},
                        "name": {"type": "string"},
                        "message": {"type": "string"},
                        "code": {"type": "string"},
                        "details": {}
                    }
                }
            }
        }),
    );
    schemas.insert(
        names.count.clone(),
        json!({
            "type": "object",
            "required": ["count"],
            "properties": {"count": {"type": "number"}}
        }),
    );
    schemas.insert(
        names.exists.clone(),
        json!({
            "type": "object",
            "required": ["exists"],
            "properties": {"exists": {"type": "boolean"}}
        }),
    );
    if builder.token_model.is_none() {
        schemas.insert(
            names.token.clone(),
            json!({
                "type": "object",
                "required": ["id", "ttl", "created", "userId"],
                "properties": {
                    "id": {"type": "string"},
                    "ttl": {"type": "number"},
                    "created": {"type": "string", "format": "date-time"},
                    "userId": {}
                }
            }),
        );
    }

    let root = app.config.rest_api_root.trim_end_matches('/');
    let server_url = if root.is_empty() { "/" } else { root };
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "LoopBack Application",
            "version": "1.0.0",
            "description": "The REST API of this application, served by Portcullis."
        },
        "servers": [{ "url": server_url }],
        "tags": tags,
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {
                "Error": {
                    "description": "Error",
                    "content": {
                        "application/json": { "schema": schema_ref(&names.error) }
                    }
                }
            },
            "securitySchemes": {
                HEADER_SCHEME: {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "Access token (the `id` returned by login)"
                },
                QUERY_SCHEME: {
                    "type": "apiKey",
                    "in": "query",
                    "name": "access_token",
                    "description": "Access token (the `id` returned by login)"
                }
            }
        },
        // Optional: anonymous, or a token in either place.
        "security": [{}, { HEADER_SCHEME: [] }, { QUERY_SCHEME: [] }]
    })
}
