//! `portcullis acl …`: tools around an app's static ACL rules.
//!
//! | module | subcommand |
//! |---|---|
//! | `list` | `acl list`: every static rule per model, in pool order, with its source |
//! | `explain` | `acl explain`: one decision for one method and one caller, with its trail |
//! | `audit` | `acl audit`: the model × method × caller-kind matrix and risky configurations |
//! | `add` | `acl add`: append a rule to a model file, from flags or interactively |
//! | `json_edit` | the textual JSON insertion `acl add` uses to keep files as written |
//!
//! Everything here reads static rules only (model JSON, model-config, built-ins): the `ACL`
//! table lives in the database, which these offline tools do not open.

mod add;
mod audit;
mod explain;
mod json_edit;
mod list;

use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Subcommand;
use portcullis_authz::{AccessRequest, DbRules, Decision, Engine, Principal, RoleOracle};
use portcullis_schema::{App, Model};
use portcullis_server::route::{model_methods, RemoteMethod, Segment};

#[derive(Subcommand)]
pub enum AclCommand {
    /// List every static rule per model, in resolution pool order, with its source.
    List {
        /// The LoopBack 3 app directory.
        app_dir: PathBuf,
        /// Only this model.
        #[arg(long)]
        model: Option<String>,
    },
    /// Explain the ACL decision for one method and one caller (static rules only).
    Explain(explain::ExplainArgs),
    /// Decide every public model × remote method × caller kind, and flag risky rules.
    Audit {
        /// The LoopBack 3 app directory.
        app_dir: PathBuf,
        /// Exit with status 1 when there are findings.
        #[arg(long)]
        strict: bool,
    },
    /// Append an ACL rule to a model's JSON file (interactive without flags).
    Add(add::AddArgs),
}

pub fn run(command: AclCommand) -> Result<ExitCode> {
    match command {
        AclCommand::List { app_dir, model } => list::run(&app_dir, model.as_deref()),
        AclCommand::Explain(args) => explain::run(&args),
        AclCommand::Audit { app_dir, strict } => audit::run(&app_dir, strict),
        AclCommand::Add(args) => add::run(&args),
    }
}

/// The static rules of every model, compiled the way the server compiles them.
fn engine(app: &App) -> Engine {
    Engine::new(app.models.iter().map(|m| (m.name.clone(), m.acls.clone())))
}

/// A model by name; the error lists every valid name so a typo is easy to fix.
fn find_model<'a>(app: &'a App, name: &str) -> Result<&'a Model> {
    match app.model_by_name(name) {
        Some(m) => Ok(m),
        None => {
            let names: Vec<&str> = app.models.iter().map(|m| m.name.as_str()).collect();
            bail!(
                "unknown model `{name}`; the app's models are: {}",
                names.join(", ")
            )
        }
    }
}

/// Runs one static-rules-only check of `method` on `model`, exactly as the server builds the
/// request: canonical name, aliases and access type from the route table.
fn decide(
    engine: &Engine,
    model: &Model,
    method: &RemoteMethod,
    principals: &[Principal],
    oracle: &mut impl RoleOracle,
) -> Decision {
    let request = AccessRequest::new(
        &model.name,
        &method.name,
        &method.aliases,
        method.access_type,
    );
    engine.decide(
        &request,
        principals,
        &DbRules::empty(),
        model.options.default_permission,
        oracle,
    )
}

/// Whether a method addresses one instance through a URL `:id`: the only place the server
/// takes `$owner`'s model id from, so `$owner` can only hold for such methods.
fn addresses_instance(method: &RemoteMethod) -> bool {
    method
        .routes
        .iter()
        .any(|r| r.segments.contains(&Segment::Param("id".into())))
}

/// `DELETE /api/posts/:id, …` for a method of a model.
fn route_text(app: &App, model: &Model, method: &RemoteMethod) -> String {
    let root = app.config.rest_api_root.trim_end_matches('/');
    method
        .routes
        .iter()
        .map(|r| {
            let mut path = format!("{root}/{}", model.http_path);
            for seg in &r.segments {
                path.push('/');
                match seg {
                    Segment::Literal(l) => path.push_str(l),
                    Segment::Param(p) => {
                        path.push(':');
                        path.push_str(p);
                    }
                }
            }
            format!("{} {path}", r.verb.as_str())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A path for messages: relative to the app directory when inside it, with `..` resolved
/// lexically (the loader joins `server/../common/models/…`).
fn display_path(app: &App, path: &Path) -> String {
    let mut out = PathBuf::new();
    for c in path.strip_prefix(&app.root).unwrap_or(path).components() {
        match c {
            Component::ParentDir if out.file_name().is_some() => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out.display().to_string()
}

/// What a name in a rule's `property` means for a model's remote methods.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MethodName {
    /// A canonical method name (or a custom remote method the model declares).
    Method,
    /// An alias: only ACL-table rules may use it; LoopBack 3.28 ignores it in static rules.
    Alias { canonical: String },
    /// A data property: ACLs compare names with methods only, so it protects nothing.
    Property,
    /// Nothing the model exposes.
    Unknown,
}

fn classify_method_name(model: &Model, methods: &[RemoteMethod], name: &str) -> MethodName {
    if methods.iter().any(|m| m.name == name) || model.methods.contains_key(name) {
        return MethodName::Method;
    }
    if let Some(m) = methods.iter().find(|m| m.aliases.iter().any(|a| a == name)) {
        return MethodName::Alias {
            canonical: m.name.clone(),
        };
    }
    if model.property(name).is_some() {
        return MethodName::Property;
    }
    MethodName::Unknown
}

/// The methods of a model as `find, findById, patchAttributes (updateAttributes), …`.
fn method_list(model: &Model) -> String {
    model_methods(model)
        .iter()
        .map(|m| {
            if m.aliases.is_empty() {
                m.name.clone()
            } else {
                format!("{} ({})", m.name, m.aliases.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Left-aligned columns, two spaces apart, each line prefixed with `indent`.
fn table(indent: &str, headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::from(indent);
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = widths
                    .get(i)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(cell.chars().count());
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}
