//! `twofold rotate-secrets`: after `secret_key` changed (the old key moved to
//! `previous_secret_keys`), rewrites every stored ciphertext under the current key.
//!
//! Online and resumable: rows are rewritten in small transactions, each row only if it
//! still holds the value read (a user re-enrolling meanwhile wins, and their new value
//! is already under the current key). A crash or a kill loses at most the batch in
//! flight, which rolls back; running the command again picks up whatever is not yet
//! under the current key. Nothing here prints a secret, a ciphertext or a key.
//!
//! Keyed hashes and signatures cannot be rewritten (the inputs are not stored): the
//! report counts the recovery codes still hashed under a previous key, which stay
//! usable only while that key is configured.

use std::time::Duration;

use crate::db::{self, Db, HOST_SCOPE, NewAudit};
use crate::secrets::{DecryptError, Keys};

/// A column of ciphertexts, each bound (associated data) to a value derived from its
/// row's id.
struct EncryptedColumn {
    table: &'static str,
    id: &'static str,
    value: &'static str,
    /// The associated data the value was encrypted with, from the row id.
    aad: fn(&str) -> String,
}

/// Every stored ciphertext. A new encrypted column must be listed here, or rotating
/// the key would strand it under the old one.
const COLUMNS: &[EncryptedColumn] = &[
    EncryptedColumn { table: "authenticators", id: "user_id", value: "secret_enc", aad: |id| id.to_owned() },
    // OpenID Connect signing keys, bound to their key id (see `oidc::keys`).
    EncryptedColumn {
        table: "oidc_signing_keys",
        id: "kid",
        value: "private_key",
        aad: |kid| format!("oidc-signing-key:{kid}"),
    },
    // Passkeys (public key and state), bound to their row id (see `factors::passkey`).
    // WebAuthn ceremonies are not rewritten: they live five minutes.
    EncryptedColumn { table: "passkeys", id: "id", value: "passkey_enc", aad: |id| id.to_owned() },
];

/// How the command paces itself.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Rows per transaction.
    pub batch_size: u32,
    /// A pause after each transaction, to spare a busy database.
    pub pause: Duration,
}

/// What one table's rewrite did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ColumnReport {
    pub table: &'static str,
    /// Rows rewritten under the current key by this run.
    pub rewritten: u64,
    /// Rows changed by someone else between read and write (left as they are: any new
    /// value is written under the current key).
    pub changed_meanwhile: u64,
    /// Row ids whose value no configured key opens: written under a key that is no
    /// longer configured, or damaged. Ids only, never values.
    pub unreadable: Vec<String>,
}

/// The whole run.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub key_id: String,
    pub columns: Vec<ColumnReport>,
    /// Unused recovery codes hashed under a previous key.
    pub recovery_codes_under_previous_keys: u64,
}

impl Report {
    pub fn unreadable(&self) -> usize {
        self.columns.iter().map(|c| c.unreadable.len()).sum()
    }
}

/// Rewrites every stored ciphertext under the current key; `progress` hears one line
/// per committed batch.
pub async fn rotate(db: &Db, keys: &Keys, pace: Pace, mut progress: impl FnMut(&str)) -> anyhow::Result<Report> {
    let mut report = Report { key_id: keys.current_id().to_owned(), ..Report::default() };
    for column in COLUMNS {
        let done = rotate_column(db, keys, column, pace, &mut progress).await?;
        report.columns.push(done);
    }
    let pattern = format!("{}:%", keys.current_id());
    report.recovery_codes_under_previous_keys = u64::try_from(
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM recovery_codes WHERE used_at IS NULL AND code_hash NOT LIKE $1",
        )
        .bind(&pattern)
        .fetch_one(&db.pool)
        .await?,
    )
    .unwrap_or(0);

    let mut tx = db.begin_write().await?;
    db::insert_audit(
        &mut tx,
        &NewAudit {
            at: crate::clock::Clock::now_ms(&crate::clock::SystemClock),
            actor_user_id: Some(crate::operator::ACTOR),
            scope_key: HOST_SCOPE,
            action: "secrets.rotated",
            target: &format!("key:{}", report.key_id),
            before: None,
            after: Some(serde_json::to_value(&report)?),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(report)
}

async fn rotate_column(
    db: &Db,
    keys: &Keys,
    column: &EncryptedColumn,
    pace: Pace,
    progress: &mut impl FnMut(&str),
) -> anyhow::Result<ColumnReport> {
    let EncryptedColumn { table, id, value, aad } = column;
    // Table and column names are constants of this module, never input.
    let select =
        format!("SELECT {id}, {value} FROM {table} WHERE {id} > $1 AND {value} NOT LIKE $2 ORDER BY {id} LIMIT $3");
    let update = format!("UPDATE {table} SET {value} = $1 WHERE {id} = $2 AND {value} = $3");
    let current = format!("v2:{}:%", keys.current_id());
    let mut report = ColumnReport { table, ..ColumnReport::default() };
    // Keyset pagination: an unreadable row is passed over, not read again forever.
    let mut after = String::new();
    loop {
        let rows: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(select.as_str()))
            .bind(&after)
            .bind(&current)
            .bind(i64::from(pace.batch_size))
            .fetch_all(&db.pool)
            .await?;
        let Some((last, _)) = rows.last() else { break };
        after = last.clone();

        let mut tx = db.begin_write().await?;
        let mut rewritten = 0;
        for (row_id, stored) in &rows {
            match keys.reencrypt_secret(stored, &aad(row_id)) {
                Ok(Some(fresh)) => {
                    let done = sqlx::query(sqlx::AssertSqlSafe(update.as_str()))
                        .bind(&fresh)
                        .bind(row_id)
                        .bind(stored)
                        .execute(&mut *tx)
                        .await?;
                    if done.rows_affected() == 1 {
                        rewritten += 1;
                    } else {
                        report.changed_meanwhile += 1;
                    }
                }
                Ok(None) => {}
                Err(DecryptError::Malformed | DecryptError::Rejected | DecryptError::UnknownKey) => {
                    report.unreadable.push(row_id.clone());
                }
            }
        }
        tx.commit().await?;
        report.rewritten += rewritten;
        progress(&format!("{table}: rewrote {rewritten} in this batch, {} so far", report.rewritten));
        if !pace.pause.is_zero() {
            tokio::time::sleep(pace.pause).await;
        }
    }
    Ok(report)
}
