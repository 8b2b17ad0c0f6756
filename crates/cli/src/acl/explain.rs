//! `portcullis acl explain`: runs the real engine on one method of one model for one
//! described caller, and prints the verdict, the status a REST client would get, and the
//! decision's full trail.
//!
//! Roles that need the database are answered from the flags instead: `--owner` makes
//! `$owner` hold, each `--role NAME` makes that role hold, and every other role the engine
//! asks about is answered "not held". The built-in roles (`$everyone`, `$authenticated`,
//! `$unauthenticated`, `$related`) are left to the engine, which decides them from the
//! principals, so the flags cannot contradict it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;
use portcullis_authz::{
    builtin_role_held, denial_status, Principal, AUTHENTICATED, EVERYONE, OWNER, RELATED,
    UNAUTHENTICATED,
};
use portcullis_server::route::{model_methods, RemoteMethod};

use super::{addresses_instance, decide, engine, find_model, method_list, route_text};

#[derive(Args)]
pub struct ExplainArgs {
    /// The LoopBack 3 app directory.
    app_dir: PathBuf,
    /// The model the method is invoked on.
    #[arg(long)]
    model: String,
    /// The remote method: its canonical name (`patchAttributes`) or an alias.
    #[arg(long)]
    method: String,
    /// Call as this user id (a USER principal, as from an access token).
    #[arg(long, value_name = "ID", conflicts_with = "anonymous")]
    user: Option<String>,
    /// A static or custom role the caller holds (repeatable).
    #[arg(long = "role", value_name = "NAME", conflicts_with = "anonymous")]
    roles: Vec<String>,
    /// Call without an access token (the default when --user is not given).
    #[arg(long)]
    anonymous: bool,
    /// The caller owns the instance (`$owner` holds).
    #[arg(long, requires = "user")]
    owner: bool,
}

pub fn run(args: &ExplainArgs) -> Result<ExitCode> {
    let app = crate::load(&args.app_dir)?;
    let model = find_model(&app, &args.model)?;
    for role in &args.roles {
        if builtin_role_held(role, &[]).is_some() || role == OWNER {
            bail!(
                "`--role {role}` names a built-in role; the engine decides {EVERYONE}, \
                 {AUTHENTICATED}, {UNAUTHENTICATED} and {RELATED} from --user/--anonymous, \
                 and {OWNER} is --owner"
            );
        }
        if role.is_empty() {
            bail!("`--role` needs a role name");
        }
    }
    if args.user.as_deref() == Some("") {
        bail!("`--user` needs a non-empty id (an empty id counts as no user in LoopBack)");
    }

    let methods = model_methods(model);
    let (method, via_alias) = find_method(&methods, &args.method, model)?;

    let principals: Vec<Principal> = args.user.iter().map(Principal::user).collect();
    // Without a user there is no access token: LoopBack answers 401 then, whatever the
    // configured aclErrorStatus.
    let has_token = !principals.is_empty();
    let engine = engine(&app);
    let mut oracle = |role: &str| {
        if role == OWNER {
            args.owner
        } else {
            args.roles.iter().any(|r| r == role)
        }
    };
    let decision = decide(&engine, model, method, &principals, &mut oracle);

    println!("Static rules only: ACL table (database) rules are not read.");
    if !app.config.enable_auth {
        println!(
            "Note: enableAuth is false in server/config.json, so the server checks no ACLs; \
             this is the decision it would make with access control on."
        );
    }
    if !model.public {
        println!(
            "Note: {} is not public, so the REST API does not serve it.",
            model.name
        );
    }
    let aliases = if method.aliases.is_empty() {
        String::new()
    } else {
        format!("; aliases {}", method.aliases.join(", "))
    };
    println!(
        "Request: {}.{} ({}{aliases})  {}",
        model.name,
        method.name,
        method.access_type,
        route_text(&app, model, method)
    );
    if let Some(alias) = via_alias {
        println!(
            "  `{alias}` is an alias of `{}`: requests carry the canonical name, and static \
             rules naming the alias never match it",
            method.name
        );
    }
    match &args.user {
        Some(id) => println!("Caller: USER {id} (with an access token)"),
        None => println!("Caller: anonymous (no access token, no principals)"),
    }
    println!(
        "Roles: built-in roles are decided by the engine; {OWNER} {}; {}; every other asked \
         role is answered \"not held\".",
        if args.owner {
            "holds (--owner)"
        } else {
            "does not hold (no --owner)"
        },
        if args.roles.is_empty() {
            "no static or custom role holds (no --role)".to_string()
        } else {
            format!(
                "static/custom roles held: {} (--role)",
                args.roles.join(", ")
            )
        }
    );
    if args.owner && !addresses_instance(method) {
        println!(
            "  note: {} has no `/:id` route, so the server never finds an owner for it; \
             --owner is answered as given anyway",
            method.name
        );
    }
    if !has_token && !args.roles.is_empty() {
        println!(
            "  note: without --user the request has no principals; LoopBack's static role \
             lookup would say \"not held\" (only a custom resolver could hold)"
        );
    }
    println!();
    if decision.allowed {
        println!("ALLOWED: the ACL check passes and the method runs");
    } else {
        let status = denial_status(
            has_token,
            model.options.acl_error_status,
            app.config.acl_error_status,
        );
        let why = if has_token {
            "the model's or app's aclErrorStatus, else 401"
        } else {
            "no access token: always 401"
        };
        println!("DENIED: a REST client gets {} ({why})", status_text(status));
    }
    println!();
    print!("{decision}");
    if !decision.roles_asked.is_empty() {
        println!("  role answers came from the flags:");
        for (role, held) in &decision.roles_asked {
            let reason = match (role.as_str(), held) {
                (OWNER, true) => "--owner",
                (OWNER, false) => "no --owner",
                (_, true) => "--role",
                (_, false) => "not given with --role, so answered \"not held\"",
            };
            println!(
                "    {role}: {} ({reason})",
                if *held { "held" } else { "not held" }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The method named on the command line, by canonical name or alias; the error lists the
/// model's methods.
fn find_method<'a>(
    methods: &'a [RemoteMethod],
    name: &str,
    model: &portcullis_schema::Model,
) -> Result<(&'a RemoteMethod, Option<String>)> {
    if let Some(m) = methods.iter().find(|m| m.name == name) {
        return Ok((m, None));
    }
    if let Some(m) = methods.iter().find(|m| m.aliases.iter().any(|a| a == name)) {
        return Ok((m, Some(name.to_string())));
    }
    bail!(
        "unknown method `{name}` of {}; its remote methods are: {}",
        model.name,
        method_list(model)
    )
}

fn status_text(status: u16) -> String {
    match status {
        401 => "401 Authorization Required, code AUTHORIZATION_REQUIRED".to_string(),
        403 => "403 Access Denied, code ACCESS_DENIED".to_string(),
        other => other.to_string(),
    }
}
