//! Hooks for Rust users, registered on the server builder: LoopBack's remote hooks
//! (`beforeRemote` / `afterRemote`, around a remote method, after authorization) and
//! operation hooks (`access`, `loaded`, `before save`, `after save`, `before delete`,
//! `after delete`, around the data access of the built-in methods).
//!
//! Hooks take their context by value and hand it back, so they can be `async` and keep it
//! across awaits without borrowing from the request.

use std::sync::Arc;

use portcullis_query::Where;
use portcullis_store::Record;
use serde_json::{Map, Value};

use crate::access::BoxFuture;
use crate::error::ApiError;

/// What a remote hook sees: LoopBack's `ctx` with `req.accessToken`, `args` and `result`.
#[derive(Debug, Clone)]
pub struct RemoteContext {
    pub model: String,
    /// The canonical method name (`create`, `patchAttributes`, `__get__creator`…).
    pub method: String,
    /// The current user's id (`ctx.req.accessToken.userId`).
    pub user_id: Option<Value>,
    /// The URL `:id`, for instance methods.
    pub instance_id: Option<String>,
    /// The request body (`ctx.args.data`); a before hook may change it.
    pub body: Option<Value>,
    /// The query parameters, qs-decoded.
    pub query: Map<String, Value>,
    /// The method's result, for after hooks (`ctx.result`); an after hook may change it.
    pub result: Option<Value>,
}

pub type RemoteHookFn =
    dyn Fn(RemoteContext) -> BoxFuture<'static, Result<RemoteContext, ApiError>> + Send + Sync;

/// The data-access operations operation hooks observe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Before a query: the hook may narrow `where_`.
    Access,
    /// After an instance is read: the hook may change `data`.
    Loaded,
    /// Before a create or update: the hook may change `data`.
    BeforeSave,
    /// After a create or update: `data` is the stored instance.
    AfterSave,
    /// Before a delete: `where_` selects what is deleted.
    BeforeDelete,
    AfterDelete,
}

impl Operation {
    /// LoopBack's name for the operation.
    pub fn parse(name: &str) -> Option<Operation> {
        Some(match name {
            "access" => Operation::Access,
            "loaded" => Operation::Loaded,
            "before save" => Operation::BeforeSave,
            "after save" => Operation::AfterSave,
            "before delete" => Operation::BeforeDelete,
            "after delete" => Operation::AfterDelete,
            _ => return None,
        })
    }
}

/// LoopBack's operation-hook context.
#[derive(Debug, Clone)]
pub struct OperationContext {
    pub model: String,
    pub operation: Operation,
    /// `access` and `before delete`: the query's where (None: every row).
    pub where_: Option<Where>,
    /// `loaded`, `before save`, `after save`: the instance data.
    pub data: Option<Record>,
    /// `before save` / `after save`: whether a new instance is created.
    pub is_new_instance: bool,
    /// The current user's id, for hooks that stamp or filter by owner.
    pub user_id: Option<Value>,
}

pub type OperationHookFn = dyn Fn(OperationContext) -> BoxFuture<'static, Result<OperationContext, ApiError>>
    + Send
    + Sync;

struct RemoteHook {
    model: String,
    method: String,
    hook: Arc<RemoteHookFn>,
}

struct OperationHook {
    model: String,
    operation: Operation,
    hook: Arc<OperationHookFn>,
}

/// Every registered hook.
#[derive(Default)]
pub struct Hooks {
    before: Vec<RemoteHook>,
    after: Vec<RemoteHook>,
    operations: Vec<OperationHook>,
}

fn matches(pattern: &str, name: &str) -> bool {
    pattern == "*" || pattern == name
}

impl Hooks {
    pub fn add_before_remote(&mut self, model: &str, method: &str, hook: Arc<RemoteHookFn>) {
        self.before.push(RemoteHook {
            model: model.to_string(),
            method: method.to_string(),
            hook,
        });
    }

    pub fn add_after_remote(&mut self, model: &str, method: &str, hook: Arc<RemoteHookFn>) {
        self.after.push(RemoteHook {
            model: model.to_string(),
            method: method.to_string(),
            hook,
        });
    }

    pub fn add_operation(&mut self, model: &str, operation: Operation, hook: Arc<OperationHookFn>) {
        self.operations.push(OperationHook {
            model: model.to_string(),
            operation,
            hook,
        });
    }

    pub fn has_remote(&self, model: &str, method: &str) -> bool {
        self.before
            .iter()
            .chain(&self.after)
            .any(|h| matches(&h.model, model) && matches(&h.method, method))
    }

    pub fn has_operation(&self, model: &str, operation: Operation) -> bool {
        self.operations
            .iter()
            .any(|h| h.operation == operation && matches(&h.model, model))
    }

    /// Runs the matching before (or after) hooks in registration order.
    pub async fn run_remote(
        &self,
        after: bool,
        mut ctx: RemoteContext,
    ) -> Result<RemoteContext, ApiError> {
        let list = if after { &self.after } else { &self.before };
        for h in list {
            if matches(&h.model, &ctx.model) && matches(&h.method, &ctx.method) {
                ctx = (h.hook)(ctx).await?;
            }
        }
        Ok(ctx)
    }

    /// Runs the matching operation hooks in registration order.
    pub async fn run_operation(
        &self,
        mut ctx: OperationContext,
    ) -> Result<OperationContext, ApiError> {
        for h in &self.operations {
            if h.operation == ctx.operation && matches(&h.model, &ctx.model) {
                ctx = (h.hook)(ctx).await?;
            }
        }
        Ok(ctx)
    }
}
