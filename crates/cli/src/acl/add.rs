//! `portcullis acl add`: appends one static ACL rule to a model's JSON file, from flags or
//! by asking the questions LoopBack's ACL generator (`lb acl`) asks, one answer per stdin
//! line (so a script can pipe them in).
//!
//! Values are checked with the same parsers the loader uses, the file is edited as text
//! (see `json_edit`) so its formatting survives, and the app is loaded again afterwards: if
//! it no longer loads, every edited file is restored and the error reported.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use portcullis_authz::{
    AccessType, Permission, PrincipalType, RuleError, RuleSource, AUTHENTICATED, EVERYONE, OWNER,
    RELATED, UNAUTHENTICATED,
};
use portcullis_schema::{App, Model};
use portcullis_server::route::model_methods;

use super::json_edit::{insert_acl, Field};
use super::{classify_method_name, display_path, find_model, MethodName};

#[derive(Args)]
pub struct AddArgs {
    /// The LoopBack 3 app directory.
    app_dir: PathBuf,
    /// The model whose JSON file gets the rule.
    #[arg(long)]
    model: Option<String>,
    /// A method the rule applies to (repeatable; none means every method).
    #[arg(long = "property", value_name = "NAME")]
    properties: Vec<String>,
    /// READ, WRITE, EXECUTE, REPLICATE or * (default *).
    #[arg(long, value_name = "TYPE")]
    access_type: Option<String>,
    /// ROLE, USER, APP (or a user model's name).
    #[arg(long, value_name = "TYPE")]
    principal_type: Option<String>,
    /// The role name, user id or app id.
    #[arg(long, value_name = "ID")]
    principal_id: Option<String>,
    /// ALLOW or DENY (also DEFAULT, ALARM, AUDIT).
    #[arg(long)]
    permission: Option<String>,
    /// Ask the ACL generator's questions on stdin (the default when no rule flag is given).
    #[arg(
        long,
        conflicts_with_all = ["model", "properties", "access_type", "principal_type", "principal_id", "permission"]
    )]
    interactive: bool,
}

impl AddArgs {
    fn has_rule_flags(&self) -> bool {
        self.model.is_some()
            || !self.properties.is_empty()
            || self.access_type.is_some()
            || self.principal_type.is_some()
            || self.principal_id.is_some()
            || self.permission.is_some()
    }
}

/// A validated rule, ready to be written.
#[derive(Debug, Clone)]
struct NewRule {
    /// Empty: every method (the key is left out, as the generator does).
    properties: Vec<String>,
    access_type: AccessType,
    principal_type: PrincipalType,
    principal_id: String,
    permission: Permission,
}

impl NewRule {
    /// The JSON fields in the order LoopBack's generator writes them.
    fn fields(&self) -> Vec<(&'static str, Field)> {
        let mut fields = vec![
            ("accessType", Field::Str(self.access_type.to_string())),
            (
                "principalType",
                Field::Str(self.principal_type.as_str().to_string()),
            ),
            ("principalId", Field::Str(self.principal_id.clone())),
            ("permission", Field::Str(self.permission.to_string())),
        ];
        match self.properties.as_slice() {
            [] => {}
            [one] => fields.push(("property", Field::Str(one.clone()))),
            many => fields.push(("property", Field::List(many.to_vec()))),
        }
        fields
    }

    fn describe(&self, model: &str) -> String {
        let property = match self.properties.as_slice() {
            [] => "*".to_string(),
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        format!(
            "{} {} {} on {model}.{property} ({})",
            self.permission, self.principal_type, self.principal_id, self.access_type
        )
    }
}

pub fn run(args: &AddArgs) -> Result<ExitCode> {
    let app = crate::load(&args.app_dir)?;
    let (models, rule) = if args.interactive || !args.has_rule_flags() {
        let stdin = std::io::stdin();
        let mut prompter = Prompter {
            input: stdin.lock(),
        };
        interactive(&app, &mut prompter)?
    } else {
        from_flags(&app, args)?
    };
    apply(&args.app_dir, &app, &models, &rule)?;
    Ok(ExitCode::SUCCESS)
}

fn from_flags(app: &App, args: &AddArgs) -> Result<(Vec<String>, NewRule)> {
    let mut missing = Vec::new();
    for (flag, given) in [
        ("--model", args.model.is_some()),
        ("--principal-type", args.principal_type.is_some()),
        ("--principal-id", args.principal_id.is_some()),
        ("--permission", args.permission.is_some()),
    ] {
        if !given {
            missing.push(flag);
        }
    }
    if !missing.is_empty() {
        bail!(
            "missing {} (or give no rule flag at all to be asked interactively)",
            missing.join(", ")
        );
    }
    let model_name = args.model.clone().unwrap_or_default();
    let model = editable_model(app, &model_name)?;
    let rule = NewRule {
        properties: check_properties(&args.properties)?,
        access_type: parse_access_type(args.access_type.as_deref().unwrap_or("*"))?,
        principal_type: parse_principal_type(app, args.principal_type.as_deref().unwrap_or(""))?,
        principal_id: check_principal_id(args.principal_id.as_deref().unwrap_or(""))?,
        permission: parse_permission(args.permission.as_deref().unwrap_or(""))?,
    };
    Ok((vec![model.name.clone()], rule))
}

fn parse_access_type(s: &str) -> Result<AccessType> {
    AccessType::parse(s).ok_or_else(|| anyhow!(RuleError::AccessType(s.to_string())))
}

fn parse_permission(s: &str) -> Result<Permission> {
    Permission::parse(s).ok_or_else(|| anyhow!(RuleError::Permission(s.to_string())))
}

/// `USER`, `APP`, `ROLE`, or the name of one of the app's user models (LoopBack's
/// multi-user-model setups); any other identifier would make a rule that never applies.
fn parse_principal_type(app: &App, s: &str) -> Result<PrincipalType> {
    match PrincipalType::parse(s) {
        Some(PrincipalType::Custom(name)) => {
            if app.model_by_name(&name).is_some_and(|m| m.is_user_model()) {
                Ok(PrincipalType::Custom(name))
            } else {
                bail!(
                    "unknown principalType `{s}` (expected USER, APP, ROLE or the name of one \
                     of the app's user models)"
                )
            }
        }
        Some(t) => Ok(t),
        None => bail!(RuleError::PrincipalType(s.to_string())),
    }
}

fn check_principal_id(s: &str) -> Result<String> {
    if s.trim().is_empty() {
        bail!(RuleError::MissingPrincipalId);
    }
    if s != s.trim() {
        bail!("principalId `{s}` has surrounding spaces; LoopBack compares ids exactly");
    }
    Ok(s.to_string())
}

/// Method names: non-empty, no spaces, and `*` only on its own (in a list LoopBack
/// compares it as a plain name, so it would match nothing).
fn check_properties(names: &[String]) -> Result<Vec<String>> {
    for name in names {
        if name.is_empty() || name.chars().any(char::is_whitespace) {
            bail!("`{name}` is not a method name");
        }
        if name == "*" && names.len() > 1 {
            bail!("`*` cannot be part of a list of methods (LoopBack would compare it as a name)");
        }
    }
    Ok(names.to_vec())
}

/// A model whose definition file can take the rule.
fn editable_model<'a>(app: &'a App, name: &str) -> Result<&'a Model> {
    let model = find_model(app, name)?;
    if model.builtin || model.file.is_none() {
        bail!(
            "{} is a built-in model without a definition file in this app; add rules for it \
             in a model that extends it, or in model-config.json",
            model.name
        );
    }
    Ok(model)
}

/// Warnings for rules that load fine but will not do what they seem to.
fn warnings(model: &Model, rule: &NewRule) -> Vec<String> {
    let methods = model_methods(model);
    let mut out = Vec::new();
    for name in &rule.properties {
        if name == "*" {
            continue;
        }
        match classify_method_name(model, &methods, name) {
            MethodName::Method => {}
            MethodName::Alias { canonical } => out.push(format!(
                "`{name}` is an alias of `{canonical}`: LoopBack 3.28 ignores aliases in static \
                 ACLs, so this rule never matches; name `{canonical}` instead"
            )),
            MethodName::Property => out.push(format!(
                "`{name}` is a data property of {}: ACLs only compare method names, so this \
                 protects nothing",
                model.name
            )),
            MethodName::Unknown => out.push(format!(
                "`{name}` is no remote method of {}, so this rule never matches",
                model.name
            )),
        }
    }
    if rule.principal_type == PrincipalType::Role && rule.principal_id == RELATED {
        out.push(format!("{RELATED} never holds in LoopBack 3 (no resolver)"));
    }
    out
}

/// Edits every target file, reloads the app, and restores the files if it no longer loads.
fn apply(app_dir: &Path, app: &App, models: &[String], rule: &NewRule) -> Result<()> {
    let fields = rule.fields();
    // Compute every edit before writing anything, so a refusal leaves all files alone.
    let mut edits = Vec::new();
    for name in models {
        let model = editable_model(app, name)?;
        let file = model
            .file
            .clone()
            .ok_or_else(|| anyhow!("{name} has no definition file"))?;
        let original = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read `{}`", file.display()))?;
        let inserted = insert_acl(&original, &fields)
            .with_context(|| format!("cannot add a rule to `{}`", file.display()))?;
        edits.push((model, file, original, inserted));
    }
    let mut written: Vec<(&PathBuf, &String)> = Vec::new();
    let restore = |written: &[(&PathBuf, &String)]| {
        for (file, original) in written {
            if let Err(e) = std::fs::write(file, original.as_bytes()) {
                eprintln!("error: could not restore `{}`: {e}", file.display());
            }
        }
    };
    for (_, file, original, inserted) in &edits {
        if let Err(e) = std::fs::write(file, inserted.text.as_bytes()) {
            restore(&written);
            return Err(e).with_context(|| format!("cannot write `{}`", file.display()));
        }
        written.push((file, original));
    }
    let reloaded = match portcullis_schema::load_app(app_dir) {
        Ok(app) => app,
        Err(e) => {
            restore(&written);
            bail!("the app no longer loads with the new rule, so the files were restored: {e}");
        }
    };
    for (model, file, _, inserted) in &edits {
        println!(
            "Added to {} acls[{}]: {}",
            display_path(app, file),
            inserted.index,
            rule.describe(&model.name)
        );
        for w in warnings(model, rule) {
            println!("  warning: {w}");
        }
        // model-config.json entries with the same property, accessType, principalType and
        // principalId replace a model-file rule in place, so the new one may not count.
        let kept = reloaded.model_by_name(&model.name).is_some_and(|m| {
            m.acls.iter().any(|r| {
                r.source
                    == RuleSource::ModelJson {
                        model: model.name.clone(),
                        index: inserted.index,
                    }
            })
        });
        if !kept {
            println!(
                "  warning: a model-config.json entry with the same key replaces this rule, so \
                 it has no effect"
            );
        }
    }
    Ok(())
}

/// Reads answers line by line; prompts go to stdout, before each read.
struct Prompter<R> {
    input: R,
}

impl<R: BufRead> Prompter<R> {
    fn line(&mut self, prompt: &str) -> Result<String> {
        self.read(&format!("? {prompt} "), prompt)
    }

    /// Prints `shown`, reads one answer; `question` names it if stdin ends first.
    fn read(&mut self, shown: &str, question: &str) -> Result<String> {
        print!("{shown}");
        std::io::stdout().flush().ok();
        let mut line = String::new();
        let n = self
            .input
            .read_line(&mut line)
            .context("cannot read the answer from stdin")?;
        if n == 0 {
            println!();
            bail!("stdin closed before `{question}` was answered; nothing was written");
        }
        let answer = line.trim().to_string();
        // A terminal already shows what was typed; piped answers are echoed so the
        // transcript reads like a session.
        if !std::io::stdin().is_terminal() {
            println!("{answer}");
        }
        Ok(answer)
    }

    /// A question with choices, answered by number, value or label (case-insensitive); an
    /// empty answer takes the default. Asks again after an invalid answer.
    fn choose<T: Clone>(
        &mut self,
        prompt: &str,
        choices: &[(&str, &str, T)],
        default: Option<usize>,
    ) -> Result<T> {
        println!("? {prompt}");
        for (i, (label, value, _)) in choices.iter().enumerate() {
            let mark = if Some(i) == default { " (default)" } else { "" };
            println!("  {}) {label} [{value}]{mark}", i + 1);
        }
        loop {
            let answer = self.read("  > ", prompt)?;
            if answer.is_empty() {
                if let Some((_, _, v)) = default.and_then(|d| choices.get(d)) {
                    return Ok(v.clone());
                }
            }
            let by_number = answer
                .parse::<usize>()
                .ok()
                .and_then(|n| n.checked_sub(1))
                .and_then(|i| choices.get(i));
            let by_name = choices
                .iter()
                .find(|(label, value, _)| *value == answer || label.eq_ignore_ascii_case(&answer));
            match by_number.or(by_name) {
                Some((_, _, v)) => return Ok(v.clone()),
                None => eprintln!("`{answer}` is not one of the choices; answer with its number"),
            }
        }
    }
}

#[derive(Clone)]
enum Scope {
    All,
    Method,
}

#[derive(Clone)]
enum Role {
    Named(&'static str),
    Other,
}

/// The generator's questions: model, scope, method, access type, role, permission.
fn interactive<R: BufRead>(app: &App, p: &mut Prompter<R>) -> Result<(Vec<String>, NewRule)> {
    let editable: Vec<&Model> = app
        .models
        .iter()
        .filter(|m| !m.builtin && m.file.is_some())
        .collect();
    if editable.is_empty() {
        bail!("the app has no model definition file to add a rule to");
    }
    let mut model_choices: Vec<(&str, &str, Option<String>)> = editable
        .iter()
        .map(|m| (m.name.as_str(), m.name.as_str(), Some(m.name.clone())))
        .collect();
    model_choices.push(("(all existing models)", "*", None));
    let models = match p.choose(
        "Select the model to apply the ACL entry to:",
        &model_choices,
        None,
    )? {
        Some(name) => vec![name],
        None => editable.iter().map(|m| m.name.clone()).collect(),
    };
    let scope = p.choose(
        "Select the ACL scope:",
        &[
            ("All methods and properties", "all", Scope::All),
            ("A single method", "method", Scope::Method),
        ],
        Some(0),
    )?;
    let properties = match scope {
        Scope::All => Vec::new(),
        Scope::Method => loop {
            let name = p.line("Enter the method name:")?;
            match check_properties(std::slice::from_ref(&name)) {
                Ok(v) if name != "*" => break v,
                Ok(_) => eprintln!("`*` is the \"all methods\" scope; enter one method name"),
                Err(e) => eprintln!("{e}"),
            }
        },
    };
    let access_type = p.choose(
        "Select the access type:",
        &[
            ("All (match all types)", "*", AccessType::Any),
            ("Read", "READ", AccessType::Read),
            ("Write", "WRITE", AccessType::Write),
            ("Execute", "EXECUTE", AccessType::Execute),
        ],
        Some(0),
    )?;
    let role = p.choose(
        "Select the role:",
        &[
            ("All users", EVERYONE, Role::Named(EVERYONE)),
            (
                "Any unauthenticated user",
                UNAUTHENTICATED,
                Role::Named(UNAUTHENTICATED),
            ),
            (
                "Any authenticated user",
                AUTHENTICATED,
                Role::Named(AUTHENTICATED),
            ),
            ("The user owning the object", OWNER, Role::Named(OWNER)),
            ("other", "other", Role::Other),
        ],
        None,
    )?;
    let principal_id = match role {
        Role::Named(r) => r.to_string(),
        Role::Other => loop {
            let name = p.line("Enter the role name:")?;
            match check_principal_id(&name) {
                Ok(id) => break id,
                Err(e) => eprintln!("{e}"),
            }
        },
    };
    let permission = p.choose(
        "Select the permission to apply:",
        &[
            ("Explicitly grant access", "ALLOW", Permission::Allow),
            ("Explicitly deny access", "DENY", Permission::Deny),
        ],
        None,
    )?;
    let rule = NewRule {
        properties,
        access_type,
        principal_type: PrincipalType::Role,
        principal_id,
        permission,
    };
    Ok((models, rule))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A rule the loader rejects (bypassing the flag checks) must leave the file as it was.
    #[test]
    fn a_rule_the_loader_rejects_is_rolled_back() {
        let wall = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/wall");
        let dir = std::env::temp_dir().join(format!("portcullis-add-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["server", "common/models"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
            for entry in std::fs::read_dir(wall.join(sub)).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "json") {
                    std::fs::copy(&path, dir.join(sub).join(path.file_name().unwrap())).unwrap();
                }
            }
        }
        let app = portcullis_schema::load_app(&dir).unwrap();
        let file = dir.join("common/models/post.json");
        let before = std::fs::read_to_string(&file).unwrap();
        let rule = NewRule {
            properties: vec![],
            access_type: AccessType::Any,
            principal_type: PrincipalType::Custom("not a type".into()),
            principal_id: "1".into(),
            permission: Permission::Allow,
        };
        let err = apply(&dir, &app, &["Post".to_string()], &rule).unwrap_err();
        assert!(err.to_string().contains("restored"), "{err}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
