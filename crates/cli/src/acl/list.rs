//! `portcullis acl list`: every static rule of every model, in the order LoopBack puts
//! them in the resolution pool (base model first, then the model's own, model-config
//! entries replacing in place or appended), with where each one came from.
//!
//! Pool order matters because it breaks ties between equal scores: the earlier rule wins.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use portcullis_authz::Rule;
use portcullis_schema::{App, Model};

use super::{display_path, find_model, table};

pub fn run(app_dir: &Path, model: Option<&str>) -> Result<ExitCode> {
    let app = crate::load(app_dir)?;
    let models: Vec<&Model> = match model {
        Some(name) => vec![find_model(&app, name)?],
        None => app.models.iter().collect(),
    };
    println!("Static rules only (model JSON, model-config.json, built-ins); ACL table rows are not read.");
    for model in models {
        println!();
        print_model(&app, model);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_model(app: &App, model: &Model) {
    let visibility = if model.public { "public" } else { "hidden" };
    let file = match &model.file {
        Some(f) => display_path(app, f),
        None => "built-in".to_string(),
    };
    let default = model
        .options
        .default_permission
        .map_or("ALLOW (unset)".to_string(), |p| p.to_string());
    println!(
        "{} ({visibility}, {file}; defaultPermission {default}; {} rule{})",
        model.name,
        model.acls.len(),
        if model.acls.len() == 1 { "" } else { "s" }
    );
    if model.acls.is_empty() {
        println!("  no static rules: every method resolves to the default permission ({default})");
        return;
    }
    let rows: Vec<Vec<String>> = model
        .acls
        .iter()
        .enumerate()
        .map(|(i, rule)| row(i, rule))
        .collect();
    print!(
        "{}",
        table(
            "  ",
            &[
                "#",
                "permission",
                "principal",
                "property",
                "access",
                "source"
            ],
            &rows
        )
    );
}

fn row(index: usize, rule: &Rule) -> Vec<String> {
    vec![
        index.to_string(),
        rule.permission
            .map_or("(none: DEFAULT)".to_string(), |p| p.to_string()),
        format!("{} {}", rule.principal_type, rule.principal_id),
        rule.property.to_string(),
        rule.access_type.to_string(),
        rule.source.to_string(),
    ]
}
