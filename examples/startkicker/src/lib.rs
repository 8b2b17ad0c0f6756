//! Startkicker, LoopBack's access-control example, on Portcullis. The app directory next
//! to this crate holds the models, ACLs and seed data unchanged in spirit; this library
//! adds the only code the example needs: the `teamMember` role and the three remote
//! methods of `project`.

use portcullis_query::{Filter, Op, PropRef, Scalar, Where};
use portcullis_schema::PropType;
use portcullis_server::access::{BoxFuture, RoleContext};
use portcullis_server::remote::RemoteCall;
use portcullis_server::{ApiError, ServerBuilder};
use serde_json::{json, Map, Value};

/// The app directory of the example.
pub fn app_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Registers the example's role resolver and remote methods.
pub fn configure(builder: ServerBuilder) -> ServerBuilder {
    builder
        .register_role_resolver("teamMember", team_member)
        .remote_method("project", "listProjects", list_projects)
        .remote_method("project", "donate", donate)
        .remote_method("project", "withdraw", withdraw)
}

fn eq(name: &str, ty: PropType, value: Scalar) -> Where {
    Where::Cond {
        property: PropRef::Declared {
            name: name.into(),
            ty,
        },
        op: Op::Eq(value),
    }
}

/// A member of the project owner's team: a `team` row (owner of the project, the caller).
/// Anything missing (no user, no project, a database error) means "not in the role".
fn team_member<'a>(ctx: &'a RoleContext<'a>) -> BoxFuture<'a, Result<bool, String>> {
    Box::pin(async move {
        let (Some(user), Some(id)) = (ctx.user_id, ctx.model_id) else {
            return Ok(false);
        };
        if ctx.model.name != "project" {
            return Ok(false);
        }
        let Some(id) = portcullis_query::coerce_id(ctx.model, id) else {
            return Ok(false);
        };
        let Some(project) = ctx
            .store
            .find_by_id(ctx.model.id, &id, None)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(false);
        };
        let Some(owner) = project.get("ownerId").filter(|v| !v.is_null()) else {
            return Ok(false);
        };
        let team = ctx.app.model_id("team").ok_or("no team model")?;
        let owner = match owner {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let w = eq("ownerId", PropType::String, Scalar::Text(owner)).and(eq(
            "memberId",
            PropType::String,
            Scalar::Text(user.to_string()),
        ));
        Ok(ctx
            .store
            .count(team, Some(&w))
            .await
            .map_err(|e| e.to_string())?
            > 0)
    })
}

/// Every project without its balance.
fn list_projects(call: RemoteCall) -> BoxFuture<'static, Result<Value, ApiError>> {
    Box::pin(async move {
        let project = call
            .app
            .model_id("project")
            .ok_or_else(|| ApiError::internal("no project model"))?;
        let filter = Filter {
            fields: Some(vec!["name".into(), "id".into(), "ownerId".into()]),
            ..Filter::default()
        };
        let rows = call
            .store
            .find(project, &filter)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(Value::Array(rows.into_iter().map(Value::Object).collect()))
    })
}

/// Loads the project named by `id` and checks `amount`. The original example accepted a
/// missing or negative amount and crashed on an unknown project; these are 4xx here.
async fn project_and_amount(call: &RemoteCall) -> Result<(Scalar, f64, f64), ApiError> {
    let model = call
        .app
        .model_by_name("project")
        .ok_or_else(|| ApiError::internal("no project model"))?;
    let amount = call
        .number("amount")
        .ok_or_else(|| ApiError::bad_request("amount is a required argument"))?;
    if amount.is_nan() || amount <= 0.0 {
        return Err(ApiError::bad_request("amount must be a positive number"));
    }
    let id = call
        .args
        .get("id")
        .ok_or_else(|| ApiError::bad_request("id is a required argument"))?;
    let raw = match id {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let not_found = || ApiError::model_not_found(format!("Unknown \"project\" id \"{raw}\"."));
    let id = portcullis_query::coerce_id(model, &raw).ok_or_else(not_found)?;
    let project = call
        .store
        .find_by_id(model.id, &id, None)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .ok_or_else(not_found)?;
    let balance = project
        .get("balance")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    Ok((id, balance, amount))
}

async fn set_balance(call: &RemoteCall, id: &Scalar, balance: f64) -> Result<(), ApiError> {
    let model = call
        .app
        .model_id("project")
        .ok_or_else(|| ApiError::internal("no project model"))?;
    let mut patch = Map::new();
    patch.insert("balance".into(), json!(balance));
    call.store
        .update_by_id(model, id, patch)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(())
}

fn donate(call: RemoteCall) -> BoxFuture<'static, Result<Value, ApiError>> {
    Box::pin(async move {
        let (id, balance, amount) = project_and_amount(&call).await?;
        set_balance(&call, &id, balance + amount).await?;
        Ok(Value::Bool(true))
    })
}

/// Takes `amount` out, or empties the balance when it holds less (the example's rule).
fn withdraw(call: RemoteCall) -> BoxFuture<'static, Result<Value, ApiError>> {
    Box::pin(async move {
        let (id, balance, amount) = project_and_amount(&call).await?;
        let left = if balance >= amount {
            balance - amount
        } else {
            0.0
        };
        set_balance(&call, &id, left).await?;
        Ok(Value::Bool(true))
    })
}
