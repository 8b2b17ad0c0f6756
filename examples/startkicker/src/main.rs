//! Serves the startkicker example: `cargo run -p startkicker [-- --port N]`.

use std::net::SocketAddr;

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let port: u16 = match std::env::args().skip_while(|a| a != "--port").nth(1) {
        Some(p) => p.parse().context("--port takes a number")?,
        None => std::env::var("PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(3000),
    };
    let dir = startkicker::app_dir();
    let app = portcullis_schema::load_app(&dir).context("cannot load the startkicker app")?;
    let seed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("server/seed.json"))?)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let server = startkicker::configure(portcullis_server::ServerBuilder::new(app).seed(seed))
            .build()
            .await?;
        server.serve(SocketAddr::from(([0, 0, 0, 0], port))).await?;
        Ok(())
    })
}
