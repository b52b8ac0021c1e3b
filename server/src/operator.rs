//! Operator commands (`twofold admin …`): for whoever runs the service and lost every
//! way in through the API. They work on the database directly, but through the same
//! rules as the API: the same name and password checks, argon2 hashing, a rotated
//! security stamp where the API rotates it, the same unlock as
//! `POST /api/users/{id}/unlock`, and an audit event whose actor is `operator`.
//!
//! Nothing here may print a password or a hash.

use twofold_policy::authz::Role;
use twofold_policy::names::{Username, check_new_password};

use crate::auth;
use crate::changes::{self, Change};
use crate::config::Config;
use crate::db::factors as fdb;
use crate::db::{self, Db, HOST_SCOPE, NewAudit, NewUser, UserRow};

/// The audit actor of every operator command: no user of the service did it.
pub const ACTOR: &str = "operator";

/// Whose account a command is about: a user name, in a tenant or among host users.
#[derive(Debug, Clone)]
pub struct Account {
    pub tenant: Option<String>,
    pub username: String,
}

fn now_ms() -> i64 {
    crate::clock::Clock::now_ms(&crate::clock::SystemClock)
}

async fn scope_of(db: &Db, tenant: Option<&str>) -> anyhow::Result<String> {
    match tenant {
        None => Ok(HOST_SCOPE.to_owned()),
        Some(name) => {
            let name = name.trim().to_lowercase();
            let tenant = db::get_tenant_by_name(&db.pool, &name).await?;
            tenant.map(|t| t.id).ok_or_else(|| anyhow::anyhow!("no tenant named {name:?}"))
        }
    }
}

async fn find(db: &Db, account: &Account) -> anyhow::Result<UserRow> {
    let scope = scope_of(db, account.tenant.as_deref()).await?;
    let name = Username::parse(&account.username).map_err(|e| anyhow::anyhow!("username: {}", e.message))?;
    let where_ = account.tenant.as_deref().map_or_else(|| "among host users".to_owned(), |t| format!("in tenant {t}"));
    db::find_user(&db.pool, &scope, name.key())
        .await?
        .ok_or_else(|| anyhow::anyhow!("no user {:?} {where_}", account.username))
}

async fn audit(
    conn: &mut sqlx::AnyConnection,
    scope_key: &str,
    action: &str,
    user_id: &str,
    after: serde_json::Value,
) -> anyhow::Result<()> {
    db::insert_audit(
        conn,
        &NewAudit {
            at: now_ms(),
            actor_user_id: Some(ACTOR),
            scope_key,
            action,
            target: &format!("user:{user_id}"),
            before: None,
            after: Some(after),
        },
    )
    .await?;
    Ok(())
}

/// Creates a host admin; returns the new user's id.
pub async fn create_host_admin(db: &Db, username: &str, password: String) -> anyhow::Result<String> {
    let username = Username::parse(username).map_err(|e| anyhow::anyhow!("username: {}", e.message))?;
    check_new_password(&password).map_err(|e| anyhow::anyhow!("password: {}", e.message))?;
    let hash = auth::hash_password(password).await?;
    let id = uuid::Uuid::now_v7().to_string();
    let now = now_ms();
    let mut tx = db.begin_write().await?;
    if db::find_user(&mut *tx, HOST_SCOPE, username.key()).await?.is_some() {
        anyhow::bail!("a host user named {:?} exists; use `twofold admin reset-password`", username.as_str());
    }
    db::insert_user(
        &mut tx,
        &NewUser {
            id: &id,
            scope_key: HOST_SCOPE,
            tenant_id: None,
            username: username.as_str(),
            username_key: username.key(),
            email: None,
            password_hash: &hash,
            security_stamp: &auth::new_stamp(),
            created_at: now,
        },
    )
    .await?;
    db::grant_role(&mut tx, &id, Role::HostAdmin.as_str(), HOST_SCOPE, now).await?;
    // Running nodes on PostgreSQL reload their role assignments; a SQLite server
    // (one node) learns the new admin at its next start.
    changes::publish(&mut tx, db.backend, Change::Roles).await?;
    audit(
        &mut tx,
        HOST_SCOPE,
        "user.created",
        &id,
        serde_json::json!({ "username": username.as_str(), "role": "host_admin" }),
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// Sets a new password and rotates the security stamp, so every session, pending
/// sign-in and remembered browser of the user ends, as a password change does.
pub async fn reset_password(db: &Db, account: &Account, password: String) -> anyhow::Result<String> {
    check_new_password(&password).map_err(|e| anyhow::anyhow!("password: {}", e.message))?;
    let user = find(db, account).await?;
    let hash = auth::hash_password(password).await?;
    let mut tx = db.begin_write().await?;
    fdb::set_password_hash(&mut tx, &user.id, &hash).await?;
    fdb::rotate_stamp(&mut tx, &user.id, &auth::new_stamp(), None).await?;
    audit(&mut tx, &user.scope_key, "user.password_reset", &user.id, serde_json::json!({})).await?;
    tx.commit().await?;
    Ok(user.id)
}

/// Lifts a second-factor lockout, including one that lasts until unlocked, and starts
/// every failure count again: what `POST /api/users/{id}/unlock` does.
pub async fn unlock(db: &Db, account: &Account) -> anyhow::Result<String> {
    let user = find(db, account).await?;
    let mut tx = db.begin_write().await?;
    fdb::reset_failures(&mut tx, &user.id).await?;
    audit(&mut tx, &user.scope_key, "user.unlocked", &user.id, serde_json::json!({})).await?;
    tx.commit().await?;
    Ok(user.id)
}

/// The effective configuration as TOML-style `key = value` lines, secrets redacted,
/// after the checks a start would make before touching the database: the settings'
/// own rules, the TLS files, the secret key, the mail and SMS settings.
pub fn check_config(config: &Config) -> anyhow::Result<String> {
    config.validate()?;
    if let (Some(cert), Some(key)) = (&config.tls_cert_path, &config.tls_key_path) {
        crate::tls::load(cert, key)?;
    }
    // Without a key a SQLite start makes a key file; that is not a check's business.
    if config.secret_key.is_some() || !config.database_url.starts_with("sqlite:") {
        crate::secrets::Keys::from_config(config)?;
    }
    crate::senders::Senders::from_config(config)?;
    crate::ratelimit::Limits::from_config(config)?;
    let value = serde_json::to_value(config)?;
    let serde_json::Value::Object(fields) = value else {
        anyhow::bail!("the configuration did not serialise to a table");
    };
    let mut out = String::new();
    for (key, value) in fields {
        match value {
            serde_json::Value::Null => out.push_str(&format!("# {key} is not set\n")),
            value => out.push_str(&format!("{key} = {value}\n")),
        }
    }
    Ok(out)
}
