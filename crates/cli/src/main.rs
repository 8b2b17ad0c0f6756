//! The `portcullis` binary: a thin command line over the libraries. `serve` runs an app
//! directory; the rest are tools around it (`check`, and `acl` in the `acl` module).

mod acl;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's allocator: a request allocates many small, short-lived
/// values (JSON maps, strings), where glibc's malloc showed up as a fifth of the CPU time,
/// and glibc kept freed per-thread arenas instead of returning them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "LoopBack 3 app directories served by Rust"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve an app directory's models as a REST API.
    Serve {
        /// The LoopBack 3 app directory (holding `server/` and `common/`).
        #[arg(default_value = ".")]
        app_dir: PathBuf,
        /// Port to listen on (default: `port` in server/config.json, else 3000).
        #[arg(long, env = "PORT")]
        port: Option<u16>,
        /// Address to listen on (default: `host` in server/config.json, else 0.0.0.0).
        #[arg(long, env = "HOST")]
        host: Option<String>,
    },
    /// Check an app directory and print its models and warnings.
    Check {
        #[arg(default_value = ".")]
        app_dir: PathBuf,
    },
    /// Load seed rows (`{"Model": [rows]}`) into the app's database; rows whose id exists are
    /// skipped, so running it twice changes nothing.
    Seed {
        #[arg(default_value = ".")]
        app_dir: PathBuf,
        /// The seed file (default: `server/seed.json` in the app directory).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Register an application (LoopBack's `Application.register`); prints its id and keys,
    /// which are stored only as hashes and shown this once.
    AppRegister {
        #[arg(default_value = ".")]
        app_dir: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long)]
        realm: Option<String>,
        #[arg(long)]
        owner: Option<String>,
    },
    /// Print the app's OpenAPI 3 document.
    Openapi {
        #[arg(default_value = ".")]
        app_dir: PathBuf,
    },
    /// Inspect, explain, audit and add static ACL rules.
    Acl {
        #[command(subcommand)]
        command: acl::AclCommand,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for people at a terminal, not in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    // One line with the whole cause chain: these errors are for people (a wrong model name,
    // a refused value), and anyhow's default report would add a backtrace when
    // RUST_BACKTRACE is set.
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Serve {
            app_dir,
            port,
            host,
        } => serve(app_dir, port, host).map(|()| ExitCode::SUCCESS),
        Command::Check { app_dir } => check(app_dir).map(|()| ExitCode::SUCCESS),
        Command::Seed { app_dir, file } => seed_cmd(app_dir, file).map(|()| ExitCode::SUCCESS),
        Command::AppRegister {
            app_dir,
            name,
            realm,
            owner,
        } => {
            let app = std::sync::Arc::new(load(&app_dir)?);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let registered = runtime.block_on(async {
                let store = portcullis_store::Store::open(app.clone()).await?;
                portcullis_server::apps::register(
                    &app,
                    &store,
                    &name,
                    realm.as_deref(),
                    owner.as_deref(),
                )
                .await
                .map_err(anyhow::Error::msg)
            })?;
            println!("id            {}", registered.id);
            for (k, v) in registered.keys {
                println!("{k:<13} {v}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Openapi { app_dir } => {
            let app = load(&app_dir)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&portcullis_server::openapi::openapi_document(&app))?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Acl { command } => acl::run(command),
    }
}

fn load(app_dir: &std::path::Path) -> Result<portcullis_schema::App> {
    portcullis_schema::load_app(app_dir)
        .with_context(|| format!("cannot load the app in `{}`", app_dir.display()))
}

fn serve(app_dir: PathBuf, port: Option<u16>, host: Option<String>) -> Result<()> {
    let app = load(&app_dir)?;
    let port = port.or(app.config.port).unwrap_or(3000);
    let host = host
        .or_else(|| app.config.host.clone())
        .unwrap_or_else(|| "0.0.0.0".into());
    let ip: IpAddr = match host.as_str() {
        "localhost" => IpAddr::from([127, 0, 0, 1]),
        other => other
            .parse()
            .with_context(|| format!("`{other}` is not an IP address"))?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let seed_file = app_dir.join("server/seed.json");
    runtime.block_on(async move {
        let mut builder = portcullis_server::ServerBuilder::new(app);
        if seed_file.exists() {
            // The seed-file convention: idempotent, so applying it at every start only
            // fills what is missing.
            builder = builder.seed(read_seed(&seed_file)?);
        }
        let server = builder.build().await?;
        server.serve(SocketAddr::new(ip, port)).await?;
        Ok(())
    })
}

fn read_seed(file: &std::path::Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read `{}`", file.display()))?;
    serde_json::from_str(&text).with_context(|| format!("`{}` is not valid JSON", file.display()))
}

fn seed_cmd(app_dir: PathBuf, file: Option<PathBuf>) -> Result<()> {
    let app = load(&app_dir)?;
    let file = file.unwrap_or_else(|| app_dir.join("server/seed.json"));
    let data = read_seed(&file)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let app = std::sync::Arc::new(app);
        let store = portcullis_store::Store::open(app.clone()).await?;
        let report = portcullis_server::seed::seed(&app, &store, &data).await?;
        for (model, inserted, present) in report.models {
            println!("{model:<20} {inserted} inserted, {present} already present");
        }
        Ok(())
    })
}

fn check(app_dir: PathBuf) -> Result<()> {
    let app = load(&app_dir)?;
    for model in &app.models {
        println!(
            "{:<20} {:<8} /{:<20} {} properties, {} relations, {} ACL rules",
            model.name,
            if model.public { "public" } else { "hidden" },
            model.http_path,
            model.properties.len(),
            model.relations.len(),
            model.acls.len()
        );
    }
    println!("{} warning(s)", app.warnings.len());
    Ok(())
}
