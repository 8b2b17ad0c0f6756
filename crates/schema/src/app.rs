//! The compiled app: server config, datasources, middleware and component settings, and
//! every attached model.

use std::collections::HashMap;
use std::path::PathBuf;

use indexmap::IndexMap;
use serde_json::Value;

use crate::model::{Model, ModelId};

/// Settings from `server/config.json` that the server acts on.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// Mount point of the REST API (`restApiRoot`, default `/api`).
    pub rest_api_root: String,
    pub host: Option<String>,
    pub port: Option<u16>,
    /// App-wide `aclErrorStatus` (401 unless set).
    pub acl_error_status: Option<u16>,
    /// Access control is on unless `enableAuth: false`.
    pub enable_auth: bool,
    /// `remoting.json.limit` / `remoting.urlencoded.limit`, in bytes (LoopBack: 100kb).
    pub body_limit: usize,
    /// `remoting.errorHandler.debug`: include stacks and details in 5xx bodies.
    pub error_debug: bool,
    /// Everything in config.json, for settings other crates read.
    pub raw: serde_json::Map<String, Value>,
}

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            rest_api_root: "/api".into(),
            host: None,
            port: None,
            acl_error_status: None,
            enable_auth: true,
            body_limit: 100 * 1024,
            error_debug: false,
            raw: serde_json::Map::new(),
        }
    }
}

/// A datasource from `server/datasources.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct DataSource {
    pub name: String,
    pub connector: Connector,
    pub raw: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Connector {
    /// LoopBack's memory connector: SQLite in memory, optionally mirrored to LoopBack's
    /// memory-store JSON file.
    Memory { file: Option<PathBuf> },
    /// An embedded SQLite database file.
    Sqlite { file: PathBuf },
    /// PostgreSQL (`url`, or host/port/database/user/password).
    Postgres { url: String },
    /// LoopBack's mail connector.
    Mail { transports: Vec<Value> },
}

/// One middleware entry from `server/middleware.json`, mapped to a built-in equivalent.
#[derive(Debug, Clone, PartialEq)]
pub enum Middleware {
    /// `loopback#static` / `serve-static`: serve files from a directory at a mount path.
    Static {
        mount: String,
        dir: PathBuf,
    },
    /// `loopback#urlNotFound`: unknown URLs get a 404 in the error envelope.
    UrlNotFound,
    /// `strong-error-handler` (`debug` shows details of 5xx errors).
    ErrorHandler {
        debug: bool,
    },
    Compression,
    /// `cors` with its params (origin reflected and credentials by default).
    Cors {
        params: Value,
    },
    /// `helmet#<name>` headers.
    Helmet {
        name: String,
        params: Value,
    },
    /// `loopback#favicon`: ignored apart from answering `/favicon.ico` with 404 or a file.
    Favicon,
    /// `loopback#token` with its options (`currentUserLiteral`, cookies…).
    Token {
        params: Value,
    },
    /// `loopback#rest`.
    Rest,
}

/// Explorer settings from `loopback-component-explorer`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExplorerConfig {
    pub mount_path: String,
}

/// The compiled app.
#[derive(Debug, Clone)]
pub struct App {
    pub root: PathBuf,
    pub config: AppConfig,
    pub datasources: IndexMap<String, DataSource>,
    pub models: Vec<Model>,
    pub middleware: Vec<Middleware>,
    /// `None` when the explorer component is configured as `null`/`false`.
    pub explorer: Option<ExplorerConfig>,
    /// Raw `component-config.json`, for components configured elsewhere.
    pub components: serde_json::Map<String, Value>,
    /// Non-fatal findings (unknown keys, unknown middleware), already logged.
    pub warnings: Vec<String>,
    pub(crate) by_name: HashMap<String, ModelId>,
}

impl App {
    pub fn model(&self, id: ModelId) -> &Model {
        &self.models[id.0]
    }

    pub fn model_by_name(&self, name: &str) -> Option<&Model> {
        self.by_name.get(name).map(|id| &self.models[id.0])
    }

    pub fn model_id(&self, name: &str) -> Option<ModelId> {
        self.by_name.get(name).copied()
    }

    /// Public persisted models, in load order: what the REST API serves.
    pub fn public_models(&self) -> impl Iterator<Item = &Model> {
        self.models.iter().filter(|m| m.public)
    }

    /// The user model that tokens belong to: the first public User-derived model that is
    /// not the built-in `User`, else `User`.
    pub fn user_model(&self) -> Option<&Model> {
        self.models
            .iter()
            .find(|m| m.is_user_model() && !m.builtin && m.public)
            .or_else(|| self.models.iter().find(|m| m.is_user_model() && !m.builtin))
            .or_else(|| self.model_by_name("User"))
    }

    /// The datasource a model lives in (its own, else the first one).
    pub fn datasource_of(&self, model: &Model) -> Option<&DataSource> {
        model
            .data_source
            .as_ref()
            .and_then(|n| self.datasources.get(n))
            .or_else(|| self.datasources.values().next())
    }
}
