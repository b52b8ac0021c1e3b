//! Password reset: a link by email for users who forgot their password, and the two
//! ways an admin resets one (a link to pass on, or a temporary password that must be
//! changed at the next sign-in).
//!
//! A reset replaces only the password. The second factor is asked for as before at the
//! next sign-in, so whoever reads the user's mailbox still needs the second factor; the
//! reset ends every session, pending sign-in and remembered browser (new security
//! stamp). Links are single use, short-lived and stored as SHA-256 hashes. Asking for a
//! link answers the same, after the same work, whether or not the account exists or
//! has a confirmed address, and the email leaves in the background, so its sending time
//! tells nothing either.

use twofold_policy::names::check_new_password;
use twofold_policy::wire::{
    AdminPasswordResetResult, ErrorCode, PasswordResetConfirm, PasswordResetMode, PasswordResetRequest,
};

use crate::app::AppState;
use crate::auth::{self, Authenticated, token_hash};
use crate::clock::rfc3339;
use crate::db::factors as fdb;
use crate::db::{self, HOST_SCOPE, NewAudit, UserRow};
use crate::error::{AppError, AppResult};
use crate::factors::{self, Channel};
use crate::notify::{self, Notice};
use crate::ratelimit::Class;
use crate::signin::{Named, find_named};

/// `issued_by` of a link the user asked for.
const SELF_SERVICE: &str = "self";
/// Characters of a generated temporary password: 128 bits in base64url.
const TEMPORARY_PASSWORD_BYTES: usize = 16;

/// Where reset links point, or why links cannot be sent.
fn link_base(state: &AppState) -> AppResult<String> {
    // Only a configured `public_url`: the development fallback to the bound address
    // would put `0.0.0.0` or a private address in people's mailboxes.
    let Some(base) = state.config().public_url.as_deref() else {
        return Err(AppError::bad_request(
            ErrorCode::PasswordResetUnavailable,
            "password reset by email is not set up here (public_url is missing); ask an administrator",
        ));
    };
    Ok(base.to_owned())
}

fn link(base: &str, token: &str) -> String {
    format!("{base}/reset-password?token={token}")
}

/// Handles "I forgot my password". The answer never depends on the account.
pub async fn request(state: &AppState, req: PasswordResetRequest, address: std::net::IpAddr) -> AppResult<()> {
    let now = state.now();
    let base = link_base(state)?;
    factors::ensure_sender(state, Channel::Email).map_err(|_| {
        AppError::bad_request(
            ErrorCode::PasswordResetUnavailable,
            "password reset by email is not set up here (no email sender); ask an administrator",
        )
    })?;
    state.limits().by_address(Class::SendCode, address, now)?;
    let tenant_name = req.tenant.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_lowercase);
    let typed_key = format!("{}/{}", tenant_name.as_deref().unwrap_or(HOST_SCOPE), req.username.trim().to_lowercase());
    state.limits().by_account(Class::SendCode, &typed_key, now)?;

    // The same lookups for every request, as at the password step.
    let Named { scope, suspended, user, .. } = find_named(state, tenant_name.as_deref(), &req.username).await?;
    let eligible =
        user.filter(|u| !suspended && u.deactivated_at.is_none() && u.email_confirmed != 0 && u.email.is_some());

    let token = auth::new_token();
    let expires_at = now + i64::from(state.config().password_reset_minutes) * 60_000;
    let mut tx = state.db().begin_write().await?;
    let target = eligible.as_ref().map_or_else(|| "user:unknown".to_owned(), |u| format!("user:{}", u.id));
    let mut send_to = None;
    if let Some(user) = &eligible {
        let address = user.email.clone().unwrap_or_default();
        // The message caps hold here as for codes: nobody can flood a mailbox with
        // reset links. Over a cap the answer stays the same; no link is made.
        let capped = factors::count_message(&mut tx, state, user, Channel::Email, now).await.is_err()
            || state.limits().message(&user.id, &address, now).is_err();
        if !capped {
            db::insert_password_reset(&mut tx, &token_hash(&token), &user.id, SELF_SERVICE, now, expires_at).await?;
            send_to = Some(address);
        }
    }
    db::insert_audit(
        &mut tx,
        &NewAudit {
            at: now,
            actor_user_id: None,
            scope_key: scope.as_deref().unwrap_or(HOST_SCOPE),
            action: "password_reset.requested",
            target: &target,
            before: None,
            after: Some(serde_json::json!({ "link_sent": send_to.is_some() })),
        },
    )
    .await?;
    tx.commit().await?;

    if let Some(address) = send_to {
        let state = state.clone();
        let minutes = state.config().password_reset_minutes;
        tokio::spawn(async move {
            let body = format!(
                "Someone asked to reset the password of your Twofold account. To choose a new password, open\n\n\
                 {}\n\nThe link works once, for {minutes} minutes. Your second factor is still asked for when you \
                 sign in. If you did not ask, ignore this message: your password stays as it is.\n",
                link(&base, &token)
            );
            if let Some(email) = state.senders().email()
                && let Err(e) = email.send(&address, "Reset your Twofold password", &body).await
            {
                tracing::warn!(error = %e, "a password reset link could not be sent");
            }
        });
    }
    Ok(())
}

/// Sets a new password with a reset link's token.
pub async fn confirm(state: &AppState, req: PasswordResetConfirm, address: std::net::IpAddr) -> AppResult<()> {
    let now = state.now();
    state.limits().by_address(Class::Verify, address, now)?;
    check_new_password(&req.new_password).map_err(|e| AppError::invalid_field("new_password", e.message))?;
    let invalid = || AppError::bad_request(ErrorCode::ResetLinkInvalid, "this reset link is unknown, used or expired");
    if req.token.is_empty() || req.token.len() > 128 {
        return Err(invalid());
    }
    // Hash first (slow), then use the link and set the password in one transaction.
    let hash = auth::hash_password(req.new_password).await?;
    let mut tx = state.db().begin_write().await?;
    let Some(user_id) = db::use_password_reset(&mut tx, &token_hash(&req.token), now).await? else {
        return Err(invalid());
    };
    let Some(user) = db::get_user(&mut *tx, &user_id).await? else {
        return Err(invalid());
    };
    if user.deactivated_at.is_some() {
        return Err(invalid());
    }
    fdb::set_password_hash(&mut tx, &user.id, &hash).await?;
    fdb::rotate_stamp(&mut tx, &user.id, &auth::new_stamp(), None).await?;
    fdb::delete_sessions(&mut tx, &user.id).await?;
    db::insert_audit(
        &mut tx,
        &NewAudit {
            at: now,
            actor_user_id: Some(&user.id),
            scope_key: &user.scope_key,
            action: "user.password_reset",
            target: &format!("user:{}", user.id),
            before: None,
            after: Some(serde_json::json!({ "by": "link" })),
        },
    )
    .await?;
    tx.commit().await?;
    notify::send(state, &user, Notice::PasswordChanged);
    Ok(())
}

/// An admin's reset of `user`'s password.
pub async fn by_admin(
    state: &AppState,
    admin: &Authenticated,
    user: &UserRow,
    mode: PasswordResetMode,
) -> AppResult<AdminPasswordResetResult> {
    let now = state.now();
    match mode {
        PasswordResetMode::Link => {
            let base = link_base(state)?;
            let token = auth::new_token();
            let expires_at = now + i64::from(state.config().password_reset_minutes) * 60_000;
            let mut tx = state.db().begin_write().await?;
            db::insert_password_reset(&mut tx, &token_hash(&token), &user.id, &admin.user.id, now, expires_at).await?;
            crate::routes::audit(
                &mut tx,
                state,
                &admin.user.id,
                &user.scope_key,
                "password_reset.link_issued",
                &format!("user:{}", user.id),
                None,
                None,
            )
            .await?;
            tx.commit().await?;
            Ok(AdminPasswordResetResult {
                link: Some(link(&base, &token)),
                expires_at: Some(rfc3339(expires_at)),
                temporary_password: None,
            })
        }
        PasswordResetMode::TemporaryPassword => {
            let password = temporary_password();
            let hash = auth::hash_password(password.clone()).await?;
            let mut tx = state.db().begin_write().await?;
            db::set_temporary_password(&mut tx, &user.id, &hash).await?;
            fdb::rotate_stamp(&mut tx, &user.id, &auth::new_stamp(), None).await?;
            fdb::delete_sessions(&mut tx, &user.id).await?;
            crate::routes::audit(
                &mut tx,
                state,
                &admin.user.id,
                &user.scope_key,
                "user.password_reset",
                &format!("user:{}", user.id),
                None,
                Some(serde_json::json!({ "by": "temporary_password" })),
            )
            .await?;
            tx.commit().await?;
            notify::send(state, user, Notice::PasswordChanged);
            Ok(AdminPasswordResetResult { link: None, expires_at: None, temporary_password: Some(password) })
        }
    }
}

fn temporary_password() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; TEMPORARY_PASSWORD_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
