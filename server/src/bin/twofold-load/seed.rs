//! Bulk seeding of a benchmark database: tenants, users with a confirmed authenticator,
//! a host admin, and pending sign-ins for the verify-code workload.
//!
//! Everything is derived from an index so the load generator can address any user
//! without keeping a million rows in memory: user `i` is `u{i}` in tenant `t{i % T}`,
//! its id, security stamp and authenticator secret are functions of `i`. All users share
//! one argon2id hash of the benchmark password (with one salt): hashing a million
//! passwords at Twofold's parameters would take hours and changes nothing a sign-in
//! measures, because a verification costs the same whatever the salt.

use std::time::Instant;

use sha2::{Digest, Sha256};
use twofold_policy::ScopeSettings;
use twofold_server::auth;
use twofold_server::db::{Backend, Db, HOST_SCOPE, Tx};
use twofold_server::secrets::Keys;
use uuid::Uuid;

pub const PASSWORD: &str = "benchmark password 1";
pub const ADMIN: &str = "admin";

/// Rows per INSERT statement: below SQLite's 32,766 and PostgreSQL's 65,535 bound
/// parameters for the widest table.
const ROWS_PER_STATEMENT: usize = 500;
/// Rows per transaction: large enough to amortise the commit, small enough to keep the
/// write-ahead log modest.
const ROWS_PER_TRANSACTION: usize = 50_000;

/// The shape of a seeded database.
#[derive(Debug, Clone, Copy)]
pub struct World {
    pub users: u64,
    pub tenants: u64,
}

impl World {
    pub fn user_id(i: u64) -> String {
        Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | u128::from(i)).to_string()
    }

    pub fn tenant_id(j: u64) -> String {
        Uuid::from_u128(0x0190_0000_0000_7000_9000_0000_0000_0000 | u128::from(j)).to_string()
    }

    pub fn tenant_of(&self, i: u64) -> u64 {
        i % self.tenants
    }

    /// Up to `n` users of tenant `j`, in order.
    pub fn users_of_tenant(&self, j: u64, n: usize) -> Vec<u64> {
        (j..self.users).step_by(usize::try_from(self.tenants).unwrap_or(usize::MAX)).take(n).collect()
    }

    pub fn username(i: u64) -> String {
        format!("u{i}")
    }

    pub fn tenant_name(j: u64) -> String {
        format!("t{j}")
    }

    pub fn stamp(i: u64) -> String {
        format!("bench-stamp-{i}")
    }

    pub fn totp_secret(i: u64) -> Vec<u8> {
        let digest = Sha256::digest([b"twofold-bench-totp".as_slice(), &i.to_le_bytes()].concat());
        digest[..20].to_vec()
    }
}

fn placeholders(rows: usize, columns: usize) -> String {
    let mut out = String::with_capacity(rows * columns * 5);
    for r in 0..rows {
        if r > 0 {
            out.push(',');
        }
        out.push('(');
        for c in 0..columns {
            if c > 0 {
                out.push(',');
            }
            out.push('$');
            out.push_str(&(r * columns + c + 1).to_string());
        }
        out.push(')');
    }
    out
}

/// Creates the schema and every row of `world`; returns the seconds it took.
pub async fn seed(db: &Db, world: World, keys: &Keys, now: i64) -> anyhow::Result<f64> {
    let started = Instant::now();
    db.migrate().await?;
    let phc = auth::hash_password_blocking(PASSWORD)?;
    let settings = ScopeSettings::default();

    let mut tx = db.begin_write().await?;
    insert_settings(&mut tx, HOST_SCOPE, &settings, now).await?;
    let admin_id = Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO users (id, scope_key, tenant_id, username, username_key, password_hash, security_stamp, \
         created_at) VALUES ($1, $2, NULL, $3, $3, $4, $5, $6)",
    )
    .bind(&admin_id)
    .bind(HOST_SCOPE)
    .bind(ADMIN)
    .bind(&phc)
    .bind(auth::new_stamp())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO role_assignments (user_id, role, scope_key, created_at) VALUES ($1, 'host_admin', $2, $3)",
    )
    .bind(&admin_id)
    .bind(HOST_SCOPE)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;

    for start in (0..world.tenants).step_by(ROWS_PER_TRANSACTION) {
        let end = (start + ROWS_PER_TRANSACTION as u64).min(world.tenants);
        let mut tx = db.begin_write().await?;
        for chunk in (start..end).step_by(ROWS_PER_STATEMENT) {
            let last = (chunk + ROWS_PER_STATEMENT as u64).min(end);
            let n = usize::try_from(last - chunk)?;
            let sql = format!(
                "INSERT INTO tenants (id, name, display_name, feature_behaviour, created_at) VALUES {}",
                placeholders(n, 5)
            );
            // Only placeholders are formatted in; every value is bound.
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for j in chunk..last {
                q = q.bind(World::tenant_id(j)).bind(World::tenant_name(j)).bind(World::tenant_name(j));
                q = q.bind("optional").bind(now);
            }
            q.execute(&mut *tx).await?;
            for j in chunk..last {
                insert_settings(&mut tx, &World::tenant_id(j), &settings, now).await?;
            }
        }
        tx.commit().await?;
    }

    for start in (0..world.users).step_by(ROWS_PER_TRANSACTION) {
        let end = (start + ROWS_PER_TRANSACTION as u64).min(world.users);
        let mut tx = db.begin_write().await?;
        for chunk in (start..end).step_by(ROWS_PER_STATEMENT) {
            let last = (chunk + ROWS_PER_STATEMENT as u64).min(end);
            let n = usize::try_from(last - chunk)?;
            let sql = format!(
                "INSERT INTO users (id, scope_key, tenant_id, username, username_key, has_authenticator, \
                 password_hash, two_factor_enabled, security_stamp, created_at) VALUES {}",
                placeholders(n, 10)
            );
            // Only placeholders are formatted in; every value is bound.
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for i in chunk..last {
                let tenant = World::tenant_id(world.tenant_of(i));
                q = q.bind(World::user_id(i)).bind(tenant.clone()).bind(tenant);
                q = q.bind(World::username(i)).bind(World::username(i)).bind(1i64);
                q = q.bind(phc.clone()).bind(1i64).bind(World::stamp(i)).bind(now);
            }
            q.execute(&mut *tx).await?;
            let sql = format!(
                "INSERT INTO authenticators (user_id, secret_enc, confirmed, last_used_step, created_at) VALUES {}",
                placeholders(n, 5)
            );
            // Only placeholders are formatted in; every value is bound.
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for i in chunk..last {
                let id = World::user_id(i);
                let secret_enc = keys.encrypt_secret(&World::totp_secret(i), &id);
                q = q.bind(id).bind(secret_enc).bind(1i64).bind(0i64).bind(now);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
    }
    if db.backend == Backend::Postgres {
        // Fresh statistics, so the planner sees a million-row table as one; and the
        // maintenance a bulk load leaves behind done now rather than during the
        // workloads: autovacuum's first pass over each new table and the hint bits each
        // first read of a fresh row would write, then a checkpoint of it all.
        sqlx::query("VACUUM (FREEZE, ANALYZE)").execute(&db.pool).await?;
        sqlx::query("CHECKPOINT").execute(&db.pool).await?;
    }
    Ok(started.elapsed().as_secs_f64())
}

async fn insert_settings(tx: &mut Tx, scope: &str, s: &ScopeSettings, now: i64) -> anyhow::Result<()> {
    twofold_server::db::store_settings(tx, scope, s, now).await?;
    Ok(())
}

/// A multi-row insert statement as [`rows_for`] builds one.
type Insert<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Inserts one row for each user in `users`, each with a new token; returns the tokens
/// in the same order. `head` is the statement up to `VALUES`, and `row` binds a row's
/// `columns` values from its user and token.
async fn rows_for(
    db: &Db,
    users: &[u64],
    head: &str,
    columns: usize,
    row: impl for<'q> Fn(Insert<'q>, u64, &str) -> Insert<'q>,
) -> anyhow::Result<Vec<String>> {
    let tokens: Vec<String> = users.iter().map(|_| auth::new_token()).collect();
    let mut tx = db.begin_write().await?;
    for (chunk_users, chunk_tokens) in users.chunks(ROWS_PER_STATEMENT).zip(tokens.chunks(ROWS_PER_STATEMENT)) {
        let sql = format!("{head} VALUES {}", placeholders(chunk_users.len(), columns));
        // Only placeholders are formatted in; every value is bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (&i, token) in chunk_users.iter().zip(chunk_tokens) {
            q = row(q, i, token);
        }
        q.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(tokens)
}

/// Opens one pending sign-in (past the password) for each user in `users`; returns the
/// attempt tokens in the same order. Stands in for the password step, which is measured
/// on its own, so the verify-code workload is not bounded by argon2. As the password
/// step does, each token names its user under the server's key, and on PostgreSQL each
/// sign-in keeps the tags of its authenticator's codes (`signin::opened`), computed
/// from the secret as stored.
pub async fn open_attempts(db: &Db, keys: &Keys, users: &[u64], now: i64) -> anyhow::Result<Vec<String>> {
    use sqlx::Row;
    let expires_at = now + 3_600_000;
    let tagged = db.backend == Backend::Postgres;
    let mut tokens = Vec::with_capacity(users.len());
    let mut tx = db.begin_write().await?;
    for chunk in users.chunks(ROWS_PER_STATEMENT) {
        let ids: Vec<String> = chunk.iter().map(|&i| World::user_id(i)).collect();
        let mut secrets = std::collections::HashMap::new();
        let mut claims = std::collections::HashMap::new();
        if tagged {
            let places = (1..=ids.len()).map(|n| format!("${n}")).collect::<Vec<_>>().join(",");
            // Only placeholders are formatted in; every value is bound.
            let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT user_id, secret_enc FROM authenticators WHERE user_id IN ({places})"
            )));
            for id in &ids {
                q = q.bind(id);
            }
            for row in q.fetch_all(&mut *tx).await? {
                secrets.insert(row.try_get::<String, _>(0)?, row.try_get::<String, _>(1)?);
            }
            // What the password step would claim of each user's policy inputs.
            let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT u.id, u.tenant_id, u.two_factor_enabled, \
                 CASE WHEN EXISTS (SELECT 1 FROM user_group_members m WHERE m.user_id = u.id) THEN 1 ELSE 0 END \
                 FROM users u WHERE u.id IN ({places})"
            )));
            for id in &ids {
                q = q.bind(id);
            }
            for row in q.fetch_all(&mut *tx).await? {
                let in_groups = row.try_get::<i64, _>(3)? != 0;
                let claim = (!in_groups).then(|| -> anyhow::Result<_> {
                    Ok(twofold_server::signin::PendingClaim {
                        tenant_id: row.try_get(1)?,
                        two_factor_enabled: row.try_get::<i64, _>(2)? != 0,
                    })
                });
                claims.insert(row.try_get::<String, _>(0)?, claim.transpose()?);
            }
        }
        let columns = if tagged { 11 } else { 7 };
        let head = if tagged {
            "INSERT INTO sign_in_attempts (token_hash, id, user_id, stage, security_stamp, created_at, expires_at, \
             code_tags, code_tags_from, code_tags_key, code_secret)"
        } else {
            "INSERT INTO sign_in_attempts (token_hash, id, user_id, stage, security_stamp, created_at, expires_at)"
        };
        let sql = format!("{head} VALUES {}", placeholders(chunk.len(), columns));
        // Only placeholders are formatted in; every value is bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (&i, id) in chunk.iter().zip(&ids) {
            let claim = claims.get(id).and_then(Option::as_ref);
            let token = twofold_server::signin::new_pending_token(keys, id, claim);
            let hash = auth::token_hash(&token);
            let tags = match secrets.get(id) {
                Some(secret_enc) => twofold_server::signin::step_tags(keys, id, secret_enc, &hash, now, expires_at),
                None => None,
            };
            q = q.bind(hash).bind(Uuid::now_v7().to_string()).bind(id.clone()).bind("second_factor");
            q = q.bind(World::stamp(i)).bind(now).bind(expires_at);
            if tagged {
                let tags = tags.ok_or_else(|| anyhow::anyhow!("no authenticator to tag for user {i}"))?;
                q = q.bind(tags.tags).bind(tags.from).bind(tags.key).bind(tags.secret);
            }
            tokens.push(token);
        }
        q.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(tokens)
}

/// Opens a session for each user in `users`, signed in with their password and
/// authenticator just now; returns the session tokens in the same order. The OpenID
/// Connect workloads sign these users in to an application of their tenant, as the
/// users of one application sign in to it, each with a grant of their own.
pub async fn open_sessions(db: &Db, users: &[u64], now: i64) -> anyhow::Result<Vec<String>> {
    let head = "INSERT INTO sessions (token_hash, user_id, security_stamp, auth_methods, created_at, last_seen_at, \
                expires_at, reauthenticated_at, reauth_method, second_factor_at, second_factor_method, sid)";
    rows_for(db, users, head, 12, |q, i, token| {
        q.bind(auth::token_hash(token))
            .bind(World::user_id(i))
            .bind(World::stamp(i))
            .bind("pwd+authenticator")
            .bind(now)
            .bind(now)
            .bind(now + 3_600_000)
            .bind(now)
            .bind("authenticator")
            .bind(now)
            .bind("authenticator")
            .bind(auth::new_token())
    })
    .await
}
