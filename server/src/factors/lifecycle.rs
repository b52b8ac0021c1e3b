//! Adding, confirming and removing second factors: the one implementation behind
//! enrolment during sign-in and the account page.
//!
//! Every change here rotates the user's security stamp (other sessions, pending
//! sign-ins and remembered browsers end), is audited, and happens in the caller's
//! transaction together with whatever proved it. Nothing here checks freshness or
//! codes: the sign-in machine and the account routes do that before calling.

use base64::Engine;
use twofold_policy::wire::AuthenticatorEnrollment;
use twofold_policy::{Behaviour, DecidedBy, EffectivePolicy};

use crate::app::AppState;
use crate::auth;
use crate::db::factors as fdb;
use crate::db::passkeys as pdb;
use crate::db::{self, NewAudit, UserRow};
use crate::error::{AppError, AppResult};
use crate::totp;
use twofold_policy::wire::ErrorCode;

/// A factor a user can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactorKind {
    Authenticator,
    Email,
    Phone,
    Passkey,
}

impl FactorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FactorKind::Authenticator => "authenticator",
            FactorKind::Email => "email",
            FactorKind::Phone => "phone",
            FactorKind::Passkey => "passkey",
        }
    }

    /// How many factors of this kind the user holds.
    fn held_by(self, user: &UserRow) -> i64 {
        match self {
            FactorKind::Authenticator => user.has_authenticator,
            FactorKind::Email => user.email_confirmed,
            FactorKind::Phone => user.phone_confirmed,
            FactorKind::Passkey => user.passkey_count,
        }
    }
}

/// A factor about to be stored, with what it needs.
#[derive(Debug, Clone, Copy)]
pub enum NewFactor<'a> {
    /// The pending authenticator, now confirmed by its first code.
    Authenticator,
    Email(&'a str),
    Phone(&'a str),
    /// A passkey that passed registration.
    Passkey(&'a super::passkey::Registered),
}

impl NewFactor<'_> {
    pub fn kind(&self) -> FactorKind {
        match self {
            NewFactor::Authenticator => FactorKind::Authenticator,
            NewFactor::Email(_) => FactorKind::Email,
            NewFactor::Phone(_) => FactorKind::Phone,
            NewFactor::Passkey(_) => FactorKind::Passkey,
        }
    }
}

/// Creates a pending (unconfirmed) authenticator for `user` and returns its secret,
/// shown this once.
pub async fn begin_authenticator(state: &AppState, user: &UserRow) -> AppResult<AuthenticatorEnrollment> {
    let secret = totp::generate_secret();
    let enc = state.keys().encrypt_secret(&secret, &user.id);
    let mut tx = state.db().begin_write().await?;
    tx.touches(crate::db::Touches::user(&user.id));
    if !fdb::put_pending_authenticator(&mut tx, &user.id, &enc, state.now()).await? {
        return Err(AppError::conflict(
            ErrorCode::AuthenticatorExists,
            "an authenticator is already set up; remove it before adding a new one",
        ));
    }
    tx.commit().await?;
    let account = match &user.tenant_id {
        Some(tid) => {
            let tenant = db::get_tenant(&state.db().pool, tid).await?.map(|t| t.name).unwrap_or_default();
            format!("{}@{}", user.username, tenant)
        }
        None => user.username.clone(),
    };
    let uri = totp::otpauth_uri(&secret, &state.config().totp_issuer, &account)?;
    let png = totp::qr_png(&uri)?;
    Ok(AuthenticatorEnrollment {
        secret: totp::secret_base32(&secret),
        otpauth_uri: uri,
        qr_png_base64: base64::engine::general_purpose::STANDARD.encode(png),
    })
}

/// Stores a new factor in the caller's transaction: the change itself, a new security
/// stamp (kept by `keep_session`, the session that made the change), recovery codes
/// when it is the user's first factor, and the audit event. Returns the recovery codes.
pub async fn add(
    conn: &mut sqlx::AnyConnection,
    state: &AppState,
    user: &UserRow,
    factor: NewFactor<'_>,
    keep_session: Option<&str>,
) -> AppResult<Option<Vec<String>>> {
    let first = !user.has_factor();
    match factor {
        NewFactor::Authenticator => fdb::confirm_authenticator(conn, &user.id).await?,
        NewFactor::Email(address) => fdb::confirm_email(conn, &user.id, address).await?,
        NewFactor::Phone(number) => fdb::confirm_phone(conn, &user.id, number).await?,
        NewFactor::Passkey(p) => {
            let stored = pdb::insert(
                conn,
                &pdb::NewPasskey {
                    id: &p.id,
                    user_id: &user.id,
                    credential_id: &p.credential_id,
                    passkey_enc: &p.passkey_enc,
                    name: &p.name,
                    aaguid: &p.aaguid,
                    sign_count: p.counter,
                    backup_eligible: p.backup_eligible,
                    backup_state: p.backup_state,
                    created_at: state.now(),
                },
            )
            .await?;
            if !stored {
                // The same authenticator credential is already registered (to this or
                // another account); which, nobody learns here.
                return Err(AppError::PasskeyRefused);
            }
        }
    }
    fdb::rotate_stamp(conn, &user.id, &auth::new_stamp(), keep_session).await?;
    let codes = if first { Some(super::issue_recovery_codes(conn, state, &user.id).await?) } else { None };
    db::insert_audit(
        conn,
        &NewAudit {
            at: state.now(),
            actor_user_id: Some(&user.id),
            scope_key: &user.scope_key,
            action: "factor.added",
            target: &format!("user:{}", user.id),
            before: None,
            after: Some(match factor {
                NewFactor::Passkey(p) => serde_json::json!({ "factor": "passkey", "recovery_codes_issued": first,
                    "passkey_id": p.id, "name": p.name, "aaguid": p.aaguid }),
                _ => serde_json::json!({ "factor": factor.kind().as_str(), "recovery_codes_issued": first }),
            }),
        },
    )
    .await?;
    Ok(codes)
}

/// Refuses to remove the last factor while 2FA is required by anything but the user's
/// own switch (a forced scope, a group's rule): the user could no longer sign in.
pub fn ensure_not_last(user: &UserRow, policy: &EffectivePolicy, removing: FactorKind) -> AppResult<()> {
    // Removing takes away one factor of its kind: a second passkey stays.
    let remaining: i64 = [FactorKind::Authenticator, FactorKind::Email, FactorKind::Phone, FactorKind::Passkey]
        .into_iter()
        .map(|k| if k == removing { (k.held_by(user) - 1).max(0) } else { k.held_by(user) })
        .sum();
    let imposed = policy.behaviour == Behaviour::Forced || (policy.required && policy.decided_by == DecidedBy::Group);
    if imposed && remaining == 0 {
        return Err(AppError::conflict(
            ErrorCode::LastFactor,
            "two-factor sign-in is required, so your last factor cannot be removed",
        ));
    }
    Ok(())
}

/// Removes a factor, rotating the stamp and auditing, in one transaction.
pub async fn remove(state: &AppState, user: &UserRow, factor: FactorKind, keep_session: Option<&str>) -> AppResult<()> {
    remove_one(state, user, factor, None, keep_session).await
}

/// Removes one of the user's passkeys (404 when it is not theirs), like [`remove`].
pub async fn remove_passkey(state: &AppState, user: &UserRow, id: &str, keep_session: Option<&str>) -> AppResult<()> {
    remove_one(state, user, FactorKind::Passkey, Some(id), keep_session).await
}

async fn remove_one(
    state: &AppState,
    user: &UserRow,
    factor: FactorKind,
    passkey_id: Option<&str>,
    keep_session: Option<&str>,
) -> AppResult<()> {
    let mut tx = state.db().begin_write().await?;
    tx.touches(crate::db::Touches::user(&user.id));
    match factor {
        FactorKind::Authenticator => fdb::delete_authenticator(&mut tx, &user.id).await?,
        FactorKind::Phone => fdb::remove_phone(&mut tx, &user.id).await?,
        FactorKind::Passkey => {
            if !pdb::delete(&mut tx, &user.id, passkey_id.unwrap_or("")).await? {
                return Err(AppError::NotFound("passkey"));
            }
        }
        FactorKind::Email => fdb::remove_email(&mut tx, &user.id).await?,
    }
    fdb::rotate_stamp(&mut tx, &user.id, &auth::new_stamp(), keep_session).await?;
    db::insert_audit(
        &mut tx,
        &NewAudit {
            at: state.now(),
            actor_user_id: Some(&user.id),
            scope_key: &user.scope_key,
            action: "factor.removed",
            target: &format!("user:{}", user.id),
            before: Some(match passkey_id {
                Some(id) => serde_json::json!({ "factor": factor.as_str(), "passkey_id": id }),
                None => serde_json::json!({ "factor": factor.as_str() }),
            }),
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    crate::notify::send(state, user, crate::notify::Notice::FactorRemoved(factor));
    Ok(())
}
