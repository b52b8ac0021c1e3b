//! Storage of the OpenID Connect provider: applications, signing keys, waiting
//! authorization requests, codes, token families, refresh tokens and grants.
//!
//! Codes, refresh tokens and request handles arrive here as hashes only; single use is
//! enforced by conditional updates (`... WHERE used_at IS NULL`), so two concurrent
//! requests with one code or refresh token cannot both win, on either database.

use std::sync::LazyLock;

use sqlx::{AnyConnection, AnyPool, FromRow};

use super::direct::{Arg, Exec, ReturnedRow, args};

// ---------------------------------------------------------------- applications

#[derive(Debug, Clone, FromRow)]
pub struct ApplicationRow {
    pub id: String,
    pub scope_key: String,
    pub name: String,
    pub client_type: String,
    pub secret_hash: Option<String>,
    pub redirect_uris: String,
    pub post_logout_redirect_uris: String,
    pub allowed_scopes: String,
    pub first_party: i64,
    pub require_two_factor: i64,
    pub min_strength: Option<String>,
    pub max_age_seconds: Option<i64>,
    pub token_alg: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const APP_COLUMNS: &str = "id, scope_key, name, client_type, secret_hash, redirect_uris, post_logout_redirect_uris, \
     allowed_scopes, first_party, require_two_factor, min_strength, max_age_seconds, token_alg, created_at, updated_at";

pub async fn get_application<'e, E>(executor: E, id: &str) -> Result<Option<ApplicationRow>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query_as(sqlx::AssertSqlSafe(APPLICATION_SQL.as_str())).bind(id).fetch_optional(executor).await
}

pub(super) static APPLICATION_SQL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("SELECT {APP_COLUMNS} FROM oidc_applications WHERE id = $1"));

pub async fn list_applications(pool: &AnyPool, scope_key: &str) -> Result<Vec<ApplicationRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {APP_COLUMNS} FROM oidc_applications WHERE scope_key = $1 ORDER BY id LIMIT 1000"
    )))
    .bind(scope_key)
    .fetch_all(pool)
    .await
}

pub async fn insert_application(conn: &mut AnyConnection, a: &ApplicationRow) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO oidc_applications ({APP_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
    )))
    .bind(&a.id)
    .bind(&a.scope_key)
    .bind(&a.name)
    .bind(&a.client_type)
    .bind(&a.secret_hash)
    .bind(&a.redirect_uris)
    .bind(&a.post_logout_redirect_uris)
    .bind(&a.allowed_scopes)
    .bind(a.first_party)
    .bind(a.require_two_factor)
    .bind(&a.min_strength)
    .bind(a.max_age_seconds)
    .bind(&a.token_alg)
    .bind(a.created_at)
    .bind(a.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Replaces everything but the id, scope and creation time.
pub async fn put_application(tx: &mut super::WriteTx, a: &ApplicationRow) -> Result<(), sqlx::Error> {
    tx.changes_applications();
    sqlx::query(
        "UPDATE oidc_applications SET name = $1, client_type = $2, secret_hash = $3, redirect_uris = $4, \
         post_logout_redirect_uris = $5, allowed_scopes = $6, first_party = $7, require_two_factor = $8, \
         min_strength = $9, max_age_seconds = $10, token_alg = $11, updated_at = $12 WHERE id = $13",
    )
    .bind(&a.name)
    .bind(&a.client_type)
    .bind(&a.secret_hash)
    .bind(&a.redirect_uris)
    .bind(&a.post_logout_redirect_uris)
    .bind(&a.allowed_scopes)
    .bind(a.first_party)
    .bind(a.require_two_factor)
    .bind(&a.min_strength)
    .bind(a.max_age_seconds)
    .bind(&a.token_alg)
    .bind(a.updated_at)
    .bind(&a.id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn delete_application(tx: &mut super::WriteTx, id: &str) -> Result<(), sqlx::Error> {
    tx.changes_applications();
    sqlx::query("DELETE FROM oidc_applications WHERE id = $1").bind(id).execute(&mut **tx).await?;
    Ok(())
}

// ---------------------------------------------------------------- signing keys

#[derive(Debug, Clone, FromRow)]
pub struct KeyRow {
    pub kid: String,
    pub alg: String,
    pub private_key: String,
    pub public_jwk: String,
    pub created_at: i64,
    pub not_before: i64,
    pub retire_after: Option<i64>,
}

/// Every key still published: not retired, or retired but possibly still verifying
/// tokens.
pub async fn published_keys(pool: &AnyPool, now: i64) -> Result<Vec<KeyRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT kid, alg, private_key, public_jwk, created_at, not_before, retire_after FROM oidc_signing_keys \
         WHERE retire_after IS NULL OR retire_after > $1 ORDER BY created_at, kid",
    )
    .bind(now)
    .fetch_all(pool)
    .await
}

pub async fn insert_key(conn: &mut AnyConnection, k: &KeyRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO oidc_signing_keys (kid, alg, private_key, public_jwk, created_at, not_before, retire_after) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&k.kid)
    .bind(&k.alg)
    .bind(&k.private_key)
    .bind(&k.public_jwk)
    .bind(k.created_at)
    .bind(k.not_before)
    .bind(k.retire_after)
    .execute(conn)
    .await?;
    Ok(())
}

/// Retires every key of `alg` that a newer active key (`not_before` at or before `now`)
/// has replaced, and deletes retired keys past their end.
pub async fn retire_replaced_keys(
    conn: &mut AnyConnection,
    alg: &str,
    now: i64,
    retire_after: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE oidc_signing_keys SET retire_after = $1 WHERE alg = $2 AND retire_after IS NULL AND not_before < \
         (SELECT MAX(not_before) FROM oidc_signing_keys WHERE alg = $2 AND not_before <= $3 AND retire_after IS NULL)",
    )
    .bind(retire_after)
    .bind(alg)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM oidc_signing_keys WHERE retire_after IS NOT NULL AND retire_after <= $1")
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------- authorization requests

#[derive(Debug, Clone, FromRow)]
pub struct RequestRow {
    pub handle_hash: String,
    pub application_id: String,
    pub params: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub completed_at: Option<i64>,
}

pub async fn insert_request(conn: &mut AnyConnection, r: &RequestRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO oidc_auth_requests (handle_hash, application_id, params, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&r.handle_hash)
    .bind(&r.application_id)
    .bind(&r.params)
    .bind(r.created_at)
    .bind(r.expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn find_request(pool: &AnyPool, handle_hash: &str) -> Result<Option<RequestRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT handle_hash, application_id, params, created_at, expires_at, completed_at FROM oidc_auth_requests \
         WHERE handle_hash = $1",
    )
    .bind(handle_hash)
    .fetch_optional(pool)
    .await
}

/// Completes a waiting request once; false when another request completed it first.
pub async fn complete_request(conn: &mut AnyConnection, handle_hash: &str, now: i64) -> Result<bool, sqlx::Error> {
    let done =
        sqlx::query("UPDATE oidc_auth_requests SET completed_at = $1 WHERE handle_hash = $2 AND completed_at IS NULL")
            .bind(now)
            .bind(handle_hash)
            .execute(conn)
            .await?;
    Ok(done.rows_affected() == 1)
}

// ---------------------------------------------------------------- grants

#[derive(Debug, Clone, FromRow)]
pub struct GrantRow {
    pub id: String,
    pub user_id: String,
    pub application_id: String,
    pub scopes: String,
    pub created_at: i64,
    pub last_used_at: i64,
}

pub async fn find_grant(
    conn: &mut impl Exec,
    user_id: &str,
    application_id: &str,
) -> Result<Option<GrantRow>, sqlx::Error> {
    let sql = "SELECT id, user_id, application_id, scopes, created_at, last_used_at FROM oidc_grants \
               WHERE user_id = $1 AND application_id = $2";
    conn.returning(sql, &args![user_id, application_id]).await
}

impl ReturnedRow for GrantRow {
    fn direct(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(GrantRow {
            id: r.get("id")?,
            user_id: r.get("user_id")?,
            application_id: r.get("application_id")?,
            scopes: r.get("scopes")?,
            created_at: r.get("created_at")?,
            last_used_at: r.get("last_used_at")?,
        })
    }
}

/// Records (or widens) a user's grant to an application and returns its id. One
/// statement, so parallel first sign-ins to one application (two tabs, a burst of
/// requests) meet in the unique key instead of failing on it.
pub async fn upsert_grant(
    conn: &mut impl Exec,
    user_id: &str,
    application_id: &str,
    scopes: &str,
    now: i64,
) -> Result<String, sqlx::Error> {
    let sql = "INSERT INTO oidc_grants (id, user_id, application_id, scopes, created_at, last_used_at) \
               VALUES ($1, $2, $3, $4, $5, $5) \
               ON CONFLICT (user_id, application_id) DO UPDATE SET scopes = excluded.scopes, \
               last_used_at = excluded.last_used_at RETURNING id";
    let args = args![uuid::Uuid::now_v7().to_string(), user_id, application_id, scopes, now];
    let row: Option<(String,)> = conn.returning(sql, &args).await?;
    row.map(|(id,)| id).ok_or(sqlx::Error::RowNotFound)
}

#[derive(Debug, Clone, FromRow)]
pub struct GrantView {
    pub id: String,
    pub application_id: String,
    pub name: String,
    pub scopes: String,
    pub created_at: i64,
    pub last_used_at: i64,
}

pub async fn grants_of(pool: &AnyPool, user_id: &str) -> Result<Vec<GrantView>, sqlx::Error> {
    sqlx::query_as(
        "SELECT g.id, g.application_id, a.name, g.scopes, g.created_at, g.last_used_at FROM oidc_grants g \
         JOIN oidc_applications a ON a.id = g.application_id WHERE g.user_id = $1 ORDER BY g.created_at",
    )
    .bind(user_id)
    .fetch_all(pool)
    .await
}

/// Deletes a grant of `user_id`: its codes, token families and refresh tokens go with
/// it (foreign keys). False when the user has no such grant.
pub async fn delete_grant(conn: &mut AnyConnection, user_id: &str, grant_id: &str) -> Result<bool, sqlx::Error> {
    // Explicit deletes rather than relying on cascades alone: the order keeps every
    // foreign key satisfied on both databases.
    for sql in [
        "DELETE FROM oidc_refresh_tokens WHERE family_id IN \
         (SELECT id FROM oidc_token_families WHERE grant_id = $1 AND user_id = $2)",
        "DELETE FROM oidc_token_families WHERE grant_id = $1 AND user_id = $2",
        "DELETE FROM oidc_authorization_codes WHERE grant_id = $1 AND user_id = $2",
    ] {
        sqlx::query(sql).bind(grant_id).bind(user_id).execute(&mut *conn).await?;
    }
    let done = sqlx::query("DELETE FROM oidc_grants WHERE id = $1 AND user_id = $2")
        .bind(grant_id)
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

// ---------------------------------------------------------------- codes

#[derive(Debug, Clone, FromRow)]
pub struct CodeRow {
    pub code_hash: String,
    pub application_id: String,
    pub grant_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub scopes: String,
    pub code_challenge: Option<String>,
    pub nonce: Option<String>,
    pub sid: String,
    pub auth_time: i64,
    pub amr: String,
    pub acr: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub family_id: Option<String>,
}

const CODE_COLUMNS: &str = "code_hash, application_id, grant_id, user_id, redirect_uri, scopes, code_challenge, \
     nonce, sid, auth_time, amr, acr, created_at, expires_at, used_at, family_id";

/// The values of `c` for [`CODE_COLUMNS`].
fn code_args(c: &CodeRow) -> [Arg; 16] {
    args![
        c.code_hash.as_str(),
        c.application_id.as_str(),
        c.grant_id.as_str(),
        c.user_id.as_str(),
        c.redirect_uri.as_str(),
        c.scopes.as_str(),
        c.code_challenge.as_deref(),
        c.nonce.as_deref(),
        c.sid.as_str(),
        c.auth_time,
        c.amr.as_str(),
        c.acr.as_str(),
        c.created_at,
        c.expires_at,
        c.used_at,
        c.family_id.as_deref(),
    ]
}

pub async fn find_code(pool: &AnyPool, code_hash: &str) -> Result<Option<CodeRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {CODE_COLUMNS} FROM oidc_authorization_codes WHERE code_hash = $1"
    )))
    .bind(code_hash)
    .fetch_optional(pool)
    .await
}

/// Records a code as spent (`c` as [`crate::oidc::code::Code::spent`] gives it); false
/// when it already was. The row's key is unique, so of two exchanges racing for one
/// code exactly one inserts it.
pub async fn spend_code(conn: &mut impl Exec, c: &CodeRow) -> Result<bool, sqlx::Error> {
    Ok(conn.run(&SPEND_CODE_SQL, &code_args(c)).await? == 1)
}

/// The statement of [`spend_code`], the code's values as `$1`… in [`CODE_COLUMNS`].
static SPEND_CODE_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO oidc_authorization_codes ({CODE_COLUMNS}) VALUES ({}) ON CONFLICT (code_hash) DO NOTHING",
        super::placeholders(1, CODE_COLUMNS)
    )
});

// ---------------------------------------------------------------- token families

#[derive(Debug, Clone, FromRow)]
pub struct FamilyRow {
    pub id: String,
    pub application_id: String,
    pub grant_id: String,
    pub user_id: String,
    pub scopes: String,
    pub sid: String,
    pub auth_time: i64,
    pub amr: String,
    pub acr: String,
    pub security_stamp: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub revoked_reason: Option<String>,
}

const FAMILY_COLUMNS: &str = "id, application_id, grant_id, user_id, scopes, sid, auth_time, amr, acr, \
     security_stamp, created_at, expires_at, revoked_at, revoked_reason";

pub async fn insert_family(conn: &mut impl Exec, f: &FamilyRow) -> Result<(), sqlx::Error> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "INSERT INTO oidc_token_families ({FAMILY_COLUMNS}) VALUES ({})",
            super::placeholders(1, FAMILY_COLUMNS)
        )
    });
    conn.run(&SQL, &family_args(f)).await?;
    Ok(())
}

/// The values of `f` for [`FAMILY_COLUMNS`].
fn family_args(f: &FamilyRow) -> [Arg; 14] {
    args![
        f.id.as_str(),
        f.application_id.as_str(),
        f.grant_id.as_str(),
        f.user_id.as_str(),
        f.scopes.as_str(),
        f.sid.as_str(),
        f.auth_time,
        f.amr.as_str(),
        f.acr.as_str(),
        f.security_stamp.as_str(),
        f.created_at,
        f.expires_at,
        f.revoked_at,
        f.revoked_reason.as_deref(),
    ]
}

pub async fn get_family<'e, E>(executor: E, id: &str) -> Result<Option<FamilyRow>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {FAMILY_COLUMNS} FROM oidc_token_families WHERE id = $1")))
        .bind(id)
        .fetch_optional(executor)
        .await
}

/// Revokes a family (its access tokens stop working at userinfo, its refresh tokens
/// at the token endpoint); false when it was already revoked or does not exist.
pub async fn revoke_family(conn: &mut AnyConnection, id: &str, reason: &str, now: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE oidc_token_families SET revoked_at = $1, revoked_reason = $2 WHERE id = $3 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(reason)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

// ---------------------------------------------------------------- refresh tokens

#[derive(Debug, Clone, FromRow)]
pub struct RefreshRow {
    pub token_hash: String,
    pub family_id: String,
    pub application_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

pub async fn insert_refresh(conn: &mut impl Exec, r: &RefreshRow) -> Result<(), sqlx::Error> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "INSERT INTO oidc_refresh_tokens ({REFRESH_COLUMNS}) VALUES ({})",
            super::placeholders(1, REFRESH_COLUMNS)
        )
    });
    conn.run(&SQL, &refresh_args(r)).await?;
    Ok(())
}

const REFRESH_COLUMNS: &str = "token_hash, family_id, application_id, created_at, expires_at, used_at";

/// The values of `r` for [`REFRESH_COLUMNS`].
fn refresh_args(r: &RefreshRow) -> [Arg; 6] {
    args![r.token_hash.as_str(), r.family_id.as_str(), r.application_id.as_str(), r.created_at, r.expires_at, r.used_at]
}

/// The user a code or a token family names, as [`redeem_code`] and [`rotate_refresh`]
/// read it in their statements: `id`, who must be in `scope_key` (the application's)
/// and still have `security_stamp` (the code's or the family's).
#[derive(Debug)]
pub struct ScopedUser<'a> {
    pub id: &'a str,
    pub scope_key: &'a str,
    pub security_stamp: &'a str,
}

impl ScopedUser<'_> {
    /// The `WITH` part `u` that reads the user in the application's scope; its
    /// parameters are `$1` to `$3`, [`Self::args`], the stamp for the statement to
    /// compare.
    fn with_part() -> String {
        format!("WITH u AS (SELECT {} FROM users WHERE id = $1 AND scope_key = $2)", super::USER_COLUMNS)
    }

    fn args(&self) -> [Arg; 3] {
        args![self.id, self.scope_key, self.security_stamp]
    }

    /// The end of a statement that answers one row whether or not the user was found,
    /// with the user's columns after `selected`.
    fn answer(selected: &str) -> String {
        format!(" SELECT {selected}, u.* FROM (SELECT 1) AS one LEFT JOIN u ON true")
    }

    /// The user as [`Self::answer`]'s row holds them: `None` when there is no such user
    /// in the scope.
    fn of_row(row: &sqlx::any::AnyRow) -> Result<Option<super::UserRow>, sqlx::Error> {
        use sqlx::Row;
        match row.try_get::<Option<String>, _>("id")? {
            Some(_) => Ok(Some(<super::UserRow as sqlx::FromRow<_>>::from_row(row)?)),
            None => Ok(None),
        }
    }
}

/// A code exchanged for tokens on PostgreSQL in one statement: the code's user read,
/// the code spent (as [`spend_code`]) only if that user is in the application's scope
/// with the code's security stamp, and only then the token family, the refresh token
/// (if any) and the audit event inserted, each from the spent code's row, so that a
/// code another request spent first, or whose user changed, leaves nothing written.
/// The same reads and writes as the step-by-step transaction, which takes seven round
/// trips with `BEGIN` and `COMMIT`; reading the user in the statement also checks it
/// against the snapshot the writes see.
///
/// Whether the code was spent, and the user as read (`None` when there is no such
/// user in that scope).
pub async fn redeem_code(
    conn: &mut AnyConnection,
    user: &ScopedUser<'_>,
    spent: &CodeRow,
    family: &FamilyRow,
    refresh: Option<&RefreshRow>,
    audit: &super::NewAudit<'_>,
) -> Result<(bool, Option<super::UserRow>), sqlx::Error> {
    use sqlx::Row;
    fn sql(refresh: bool) -> String {
        let code_from = 4;
        let family_from = code_from + CODE_COLUMNS.split(',').count();
        let audit_from = family_from + FAMILY_COLUMNS.split(',').count();
        let refresh_from = audit_from + super::AUDIT_COLUMNS.split(',').count();
        let mut sql = format!(
            "{}, \
             used AS (INSERT INTO oidc_authorization_codes ({CODE_COLUMNS}) SELECT {} FROM u \
               WHERE u.security_stamp = $3 ON CONFLICT (code_hash) DO NOTHING RETURNING 1), \
             family AS (INSERT INTO oidc_token_families ({FAMILY_COLUMNS}) SELECT {} FROM used), \
             audit AS (INSERT INTO audit_events ({}) SELECT {} FROM used)",
            ScopedUser::with_part(),
            super::placeholders(code_from, CODE_COLUMNS),
            super::placeholders(family_from, FAMILY_COLUMNS),
            super::AUDIT_COLUMNS,
            super::placeholders(audit_from, super::AUDIT_COLUMNS),
        );
        if refresh {
            sql.push_str(&format!(
                ", refresh AS (INSERT INTO oidc_refresh_tokens ({REFRESH_COLUMNS}) SELECT {} FROM used)",
                super::placeholders(refresh_from, REFRESH_COLUMNS)
            ));
        }
        sql.push_str(&ScopedUser::answer("(SELECT COUNT(*) FROM used) AS used"));
        sql
    }
    static WITH_REFRESH: LazyLock<String> = LazyLock::new(|| sql(true));
    static WITHOUT_REFRESH: LazyLock<String> = LazyLock::new(|| sql(false));
    let mut all = Vec::from(user.args());
    all.extend(code_args(spent));
    all.extend(family_args(family));
    all.extend(super::audit_args(audit));
    let statement = match refresh {
        Some(r) => {
            all.extend(refresh_args(r));
            WITH_REFRESH.as_str()
        }
        None => WITHOUT_REFRESH.as_str(),
    };
    let arguments = super::direct::sqlx_arguments(&all)?;
    let row = sqlx::query_with(sqlx::AssertSqlSafe(statement), arguments).fetch_one(conn).await?;
    Ok((row.try_get::<i64, _>("used")? == 1, ScopedUser::of_row(&row)?))
}

/// A refresh token as the refresh grant reads it: its family, and what the token's
/// own row adds.
#[derive(Debug, FromRow)]
pub struct RefreshInFamily {
    #[sqlx(flatten)]
    pub family: FamilyRow,
    pub refresh_application_id: String,
    pub refresh_expires_at: i64,
    pub refresh_used_at: Option<i64>,
}

/// The refresh token `token_hash` with its family, in one statement; `None` when either
/// is missing. SQLite's refresh grant reads them first; PostgreSQL's reads them in its
/// writing statement ([`rotate_refresh`]).
pub async fn find_refresh(pool: &AnyPool, token_hash: &str) -> Result<Option<RefreshInFamily>, sqlx::Error> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        let family: Vec<String> = FAMILY_COLUMNS.split(',').map(|c| format!("f.{}", c.trim())).collect();
        format!(
            "SELECT {}, r.application_id AS refresh_application_id, r.expires_at AS refresh_expires_at, \
             r.used_at AS refresh_used_at FROM oidc_refresh_tokens r \
             JOIN oidc_token_families f ON f.id = r.family_id WHERE r.token_hash = $1",
            family.join(", ")
        )
    });
    sqlx::query_as(sqlx::AssertSqlSafe(SQL.as_str())).bind(token_hash).fetch_optional(pool).await
}

/// A refresh grant as [`rotate_refresh`] writes it: the presented token, the client
/// presenting it, the scopes it asks for (if it names any) and the next token's hash.
#[derive(Debug)]
pub struct RefreshGrant<'a> {
    pub token_hash: &'a str,
    pub application_id: &'a str,
    pub scope_key: &'a str,
    pub asked_scopes: Option<&'a str>,
    pub next_hash: &'a str,
    pub now: i64,
}

/// What [`rotate_refresh`] found and did.
#[derive(Debug)]
pub struct Rotated {
    /// The presented token and its family as the statement read them, before its
    /// writes; `None` when either is missing.
    pub found: Option<RefreshInFamily>,
    /// Whether the presented token was used, and the audit event written.
    pub used: bool,
    /// Whether the next token was written (its family grants `offline_access`).
    pub next: bool,
    /// The family's user as read, `None` when there is no such user in the scope.
    pub user: Option<super::UserRow>,
}

/// The refresh grant on PostgreSQL in one statement: the presented token read with its
/// family and the family's user, and only when every refusal the grant could give is
/// ruled out on what it read (the token and its family the client's, the family
/// unrevoked and neither expired, the asked scopes within the family's, the user in
/// the application's scope with the family's security stamp), the token used (once: of
/// two requests racing with one token, one uses it), the next token (for a family that
/// grants `offline_access`) and the audit event inserted, each from the used token's
/// family. The caller tells the refusals apart from what the statement answers, which
/// is what it read; a refused grant leaves nothing written. The step-by-step way reads
/// the token first, a round trip more (SQLite's, [`find_refresh`] and then the writer's
/// transaction).
pub async fn rotate_refresh(
    conn: &mut AnyConnection,
    grant: &RefreshGrant<'_>,
    audit: &super::NewAudit<'_>,
) -> Result<Rotated, sqlx::Error> {
    use sqlx::Row;
    static SQL: LazyLock<String> = LazyLock::new(|| {
        let family: Vec<String> = FAMILY_COLUMNS.split(',').map(|c| format!("f.{c} AS f_{c}", c = c.trim())).collect();
        format!(
            "WITH t AS (SELECT {}, r.application_id AS refresh_application_id, r.expires_at AS refresh_expires_at, \
               r.used_at AS refresh_used_at FROM oidc_refresh_tokens r \
               JOIN oidc_token_families f ON f.id = r.family_id WHERE r.token_hash = $1), \
             u AS (SELECT {} FROM users WHERE id = (SELECT f_user_id FROM t) AND scope_key = $2), \
             used AS (UPDATE oidc_refresh_tokens SET used_at = $3 WHERE token_hash = $1 AND used_at IS NULL \
               AND EXISTS (SELECT 1 FROM t JOIN u ON u.security_stamp = t.f_security_stamp \
                 WHERE t.f_application_id = $4 AND t.refresh_application_id = $4 AND t.f_revoked_at IS NULL \
                 AND t.f_expires_at > $3 AND t.refresh_expires_at > $3 \
                 AND ($5::text IS NULL OR array_remove(string_to_array($5::text, ' '), '') \
                   <@ string_to_array(t.f_scopes, ' '))) \
               RETURNING family_id), \
             audit AS (INSERT INTO audit_events ({}) SELECT $7, $3, t.f_user_id, $8, $9, $10, $11, \
               json_build_object('grant_type', 'refresh_token', 'family', t.f_id)::text, $12 \
               FROM used JOIN t ON t.f_id = used.family_id), \
             next AS (INSERT INTO oidc_refresh_tokens ({REFRESH_COLUMNS}) \
               SELECT $6, t.f_id, $4, $3, t.f_expires_at, NULL FROM used JOIN t ON t.f_id = used.family_id \
               WHERE 'offline_access' = ANY (string_to_array(t.f_scopes, ' ')) RETURNING 1) \
             SELECT (SELECT COUNT(*) FROM used) AS used, (SELECT COUNT(*) FROM next) AS next, t.*, u.* \
             FROM (SELECT 1) AS one LEFT JOIN t ON true LEFT JOIN u ON true",
            family.join(", "),
            super::USER_COLUMNS,
            super::AUDIT_COLUMNS,
        )
    });
    // The event's actor and what it says come from the family the statement reads.
    let [id, _, _, scope_key, action, target, before, _, address] = super::audit_args(audit);
    let mut all = Vec::from(args![
        grant.token_hash,
        grant.scope_key,
        grant.now,
        grant.application_id,
        grant.asked_scopes,
        grant.next_hash
    ]);
    all.extend([id, scope_key, action, target, before, address]);
    let arguments = super::direct::sqlx_arguments(&all)?;
    let row = sqlx::query_with(sqlx::AssertSqlSafe(SQL.as_str()), arguments).fetch_one(conn).await?;
    let found = match row.try_get::<Option<String>, _>("f_id")? {
        None => None,
        Some(id) => Some(RefreshInFamily {
            family: FamilyRow {
                id,
                application_id: row.try_get("f_application_id")?,
                grant_id: row.try_get("f_grant_id")?,
                user_id: row.try_get("f_user_id")?,
                scopes: row.try_get("f_scopes")?,
                sid: row.try_get("f_sid")?,
                auth_time: row.try_get("f_auth_time")?,
                amr: row.try_get("f_amr")?,
                acr: row.try_get("f_acr")?,
                security_stamp: row.try_get("f_security_stamp")?,
                created_at: row.try_get("f_created_at")?,
                expires_at: row.try_get("f_expires_at")?,
                revoked_at: row.try_get("f_revoked_at")?,
                revoked_reason: row.try_get("f_revoked_reason")?,
            },
            refresh_application_id: row.try_get("refresh_application_id")?,
            refresh_expires_at: row.try_get("refresh_expires_at")?,
            refresh_used_at: row.try_get("refresh_used_at")?,
        }),
    };
    Ok(Rotated {
        found,
        used: row.try_get::<i64, _>("used")? == 1,
        next: row.try_get::<i64, _>("next")? == 1,
        user: ScopedUser::of_row(&row)?,
    })
}

/// Uses a refresh token once (rotation); false when it was already used.
pub async fn use_refresh(conn: &mut impl Exec, token_hash: &str, now: i64) -> Result<bool, sqlx::Error> {
    const SQL: &str = "UPDATE oidc_refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL";
    Ok(conn.run(SQL, &args![now, token_hash]).await? == 1)
}
