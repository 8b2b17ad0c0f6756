//! The `portcullis` binary: a thin command line over the libraries. `serve` runs an app
//! directory; the rest are tools around it.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

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
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            app_dir,
            port,
            host,
        } => serve(app_dir, port, host),
        Command::Check { app_dir } => check(app_dir),
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
    runtime.block_on(async move {
        let server = portcullis_server::Server::build(app).await?;
        server.serve(SocketAddr::new(ip, port)).await?;
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
