//! The `twofold` command line: serve the API, apply migrations, check the
//! configuration, let an operator back in (`admin`), or rewrite stored secrets under a
//! new key (`rotate-secrets`).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use twofold_server::app;
use twofold_server::config::{Config, LogFormat};
use twofold_server::db::Db;
use twofold_server::operator::{self, Account};
use twofold_server::rotation;

/// Where `admin create` and `admin reset-password` read the new password when it is
/// not piped on stdin. Not `TWOFOLD_*`: the configuration owns that prefix and refuses
/// names it does not know.
const PASSWORD_VARIABLE: &str = "ADMIN_NEW_PASSWORD";

#[global_allocator]
static ALLOCATOR: twofold_server::alloc::Allocator = twofold_server::alloc::Allocator {};

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
    /// Print the effective configuration, secrets redacted; exit non-zero when it is invalid.
    CheckConfig,
    /// Operator access straight to the database, for when no admin can sign in.
    /// New passwords come from the `ADMIN_NEW_PASSWORD` variable or the first line of
    /// stdin, never from the command line.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Rewrite every stored secret under the current `secret_key`, after the old key
    /// moved to `previous_secret_keys`. Safe while servers run; safe to run again after
    /// an interruption.
    RotateSecrets {
        /// Rows per transaction.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        batch_size: u32,
        /// Milliseconds to pause after each transaction, to spare a busy database.
        #[arg(long, default_value_t = 0)]
        pause_ms: u64,
    },
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create a host admin.
    Create {
        /// The new admin's user name.
        username: String,
    },
    /// Set a user's password; every session and remembered browser of the user ends.
    ResetPassword {
        #[command(flatten)]
        account: AccountArgs,
    },
    /// Lift a user's second-factor lockout and reset every failure count.
    Unlock {
        #[command(flatten)]
        account: AccountArgs,
    },
}

#[derive(Debug, clap::Args)]
struct AccountArgs {
    /// The user name.
    username: String,
    /// The user's tenant (by name); host users have none.
    #[arg(long)]
    tenant: Option<String>,
}

impl From<AccountArgs> for Account {
    fn from(a: AccountArgs) -> Self {
        Account { tenant: a.tenant, username: a.username }
    }
}

fn init_tracing(format: LogFormat, to_stderr: bool) {
    let filter = EnvFilter::try_from_env("TWOFOLD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match (format, to_stderr) {
        (LogFormat::Text, false) => builder.init(),
        (LogFormat::Json, false) => builder.json().init(),
        (LogFormat::Text, true) => builder.with_writer(std::io::stderr).init(),
        (LogFormat::Json, true) => builder.json().with_writer(std::io::stderr).init(),
    }
}

/// The new password, from the variable or the first line of stdin.
fn new_password() -> anyhow::Result<String> {
    if let Ok(password) = std::env::var(PASSWORD_VARIABLE) {
        return Ok(password);
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        // Typed characters would be shown on the screen.
        anyhow::bail!("pipe the new password on stdin or set {PASSWORD_VARIABLE}");
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    let password = line.strip_suffix('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).unwrap_or(&line);
    Ok(password.to_owned())
}

async fn open_db(config: &Config) -> anyhow::Result<Db> {
    let db = Db::connect(&config.database_url, 2).await?;
    db.migrate().await?;
    Ok(db)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref())?;
    let command = cli.command.unwrap_or(Command::Serve);
    // The one-shot commands answer on stdout; their log lines must not mix in.
    init_tracing(config.log_format, !matches!(command, Command::Serve | Command::Migrate));
    match command {
        Command::Serve => {
            if !config.cookie_secure {
                tracing::warn!("cookie_secure is off: session cookies travel over plain HTTP; use only on loopback");
            }
            let running = app::start_default(config).await?;
            let tls = running.state.config().serves_tls();
            let metrics_addr = running.metrics_addr.map(|a| a.to_string());
            tracing::info!(addr = %running.addr, metrics_addr = metrics_addr.as_deref(), tls, "twofold listening");
            running.handle.await??;
            tracing::info!("twofold stopped");
        }
        Command::Migrate => {
            let db = Db::connect(&config.database_url, 2).await?;
            db.migrate().await?;
            tracing::info!("migrations applied");
        }
        Command::CheckConfig => {
            print!("{}", operator::check_config(&config)?);
        }
        Command::RotateSecrets { batch_size, pause_ms } => {
            let keys = twofold_server::secrets::Keys::from_config(&config)?;
            let db = open_db(&config).await?;
            let pace = rotation::Pace { batch_size, pause: std::time::Duration::from_millis(pause_ms) };
            let report = rotation::rotate(&db, &keys, pace, |line| {
                // Flushed line by line: whoever watches a long run sees it move.
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            })
            .await?;
            for column in &report.columns {
                println!(
                    "{}: {} rewritten under key {}, {} changed meanwhile, {} unreadable",
                    column.table,
                    column.rewritten,
                    report.key_id,
                    column.changed_meanwhile,
                    column.unreadable.len()
                );
                for id in &column.unreadable {
                    println!("  unreadable: {} {id}", column.table);
                }
            }
            if report.recovery_codes_under_previous_keys > 0 {
                println!(
                    "{} unused recovery codes are hashed under a previous key: they work only while that key \
                     stays in previous_secret_keys (new codes, issued when users regenerate them, use the \
                     current key)",
                    report.recovery_codes_under_previous_keys
                );
            }
            if report.unreadable() > 0 {
                anyhow::bail!(
                    "{} stored secrets open under no configured key; add the key they were written under to \
                     previous_secret_keys and run again",
                    report.unreadable()
                );
            }
            println!("rotation complete");
        }
        Command::Admin(AdminCommand::Create { username }) => {
            let password = new_password()?;
            let db = open_db(&config).await?;
            let id = operator::create_host_admin(&db, &username, password).await?;
            println!("created host admin {username} ({id})");
        }
        Command::Admin(AdminCommand::ResetPassword { account }) => {
            let password = new_password()?;
            let db = open_db(&config).await?;
            let account = Account::from(account);
            let id = operator::reset_password(&db, &account, password).await?;
            println!("reset the password of {} ({id}); their sessions have ended", account.username);
        }
        Command::Admin(AdminCommand::Unlock { account }) => {
            let db = open_db(&config).await?;
            let account = Account::from(account);
            let id = operator::unlock(&db, &account).await?;
            println!("unlocked {} ({id})", account.username);
        }
    }
    Ok(())
}
