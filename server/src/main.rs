//! The `twofold` command line: serve the API, or apply migrations.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use twofold_server::app;
use twofold_server::config::{Config, LogFormat};
use twofold_server::db::Db;

#[derive(Debug, Parser)]
#[command(name = "twofold", version, about = "Multi-tenant two-factor-authentication policy and sign-in service")]
struct Cli {
    /// A TOML configuration file (also `TWOFOLD_CONFIG`); `TWOFOLD_*` variables override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the server (the default): migrate, create the first admin if needed, serve.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_env("TWOFOLD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref())?;
    init_tracing(config.log_format);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            if !config.cookie_secure {
                tracing::warn!("cookie_secure is off: session cookies travel over plain HTTP; use only on loopback");
            }
            let running = app::start_default(config).await?;
            let tls = running.state.config().serves_tls();
            tracing::info!(addr = %running.addr, tls, "twofold listening");
            running.handle.await??;
        }
        Command::Migrate => {
            let db = Db::connect(&config.database_url, 2).await?;
            db.migrate().await?;
            tracing::info!("migrations applied");
        }
    }
    Ok(())
}
