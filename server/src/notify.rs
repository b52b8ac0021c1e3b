//! Security notifications: an email to the user's confirmed address (and to the old
//! address when it changes) whenever something happens that the owner of the account
//! must hear about if it was not them (ASVS 5.0, authentication chapter).
//!
//! Notices go through the same senders as codes and never carry a secret. They are
//! sent after the change has been committed, in the background, so a slow mail server
//! never delays or fails the change itself; the audit records each notice, sent or not.

use crate::app::AppState;
use crate::db::UserRow;
use crate::factors::{self, lifecycle::FactorKind};

/// What happened.
#[derive(Debug, Clone)]
pub enum Notice {
    FactorAdded(FactorKind),
    FactorRemoved(FactorKind),
    TwoFactorTurnedOff,
    RecoveryCodeUsed,
    RecoveryCodesIssued,
    Locked,
    PasswordChanged,
    BrowserRemembered,
    /// The confirmed email address changed; the notice goes to the old one too.
    EmailChanged {
        old: String,
    },
}

impl Notice {
    fn kind(&self) -> &'static str {
        match self {
            Notice::FactorAdded(_) => "factor_added",
            Notice::FactorRemoved(_) => "factor_removed",
            Notice::TwoFactorTurnedOff => "two_factor_turned_off",
            Notice::RecoveryCodeUsed => "recovery_code_used",
            Notice::RecoveryCodesIssued => "recovery_codes_issued",
            Notice::Locked => "locked",
            Notice::PasswordChanged => "password_changed",
            Notice::BrowserRemembered => "browser_remembered",
            Notice::EmailChanged { .. } => "email_changed",
        }
    }

    fn sentence(&self) -> String {
        match self {
            Notice::FactorAdded(k) => format!("A second factor ({}) was added to your account.", label(*k)),
            Notice::FactorRemoved(k) => format!("A second factor ({}) was removed from your account.", label(*k)),
            Notice::TwoFactorTurnedOff => "Two-factor sign-in was turned off for your account.".to_owned(),
            Notice::RecoveryCodeUsed => "One of your recovery codes was used to sign in.".to_owned(),
            Notice::RecoveryCodesIssued => {
                "New recovery codes were created for your account; the old ones no longer work.".to_owned()
            }
            Notice::Locked => "Second-factor sign-in to your account was locked after too many wrong codes.".to_owned(),
            Notice::PasswordChanged => "The password of your account was changed.".to_owned(),
            Notice::BrowserRemembered => {
                "A browser was remembered for your account: it can sign in without a second factor for a while."
                    .to_owned()
            }
            Notice::EmailChanged { .. } => "The email address of your account was changed.".to_owned(),
        }
    }
}

fn label(kind: FactorKind) -> &'static str {
    match kind {
        FactorKind::Authenticator => "authenticator app",
        FactorKind::Email => "email",
        FactorKind::Phone => "phone",
        FactorKind::Passkey => "passkey",
    }
}

/// Sends `notice` about `user` (as stored after the change) in the background.
pub fn send(state: &AppState, user: &UserRow, notice: Notice) {
    let mut to: Vec<String> = Vec::with_capacity(2);
    if user.email_confirmed != 0
        && let Some(email) = &user.email
    {
        to.push(email.clone());
    }
    if let Notice::EmailChanged { old } = &notice
        && !to.contains(old)
    {
        to.push(old.clone());
    }
    // Without an email sender (and with the development sender off) there is no way to
    // reach the user; the audit still records that a notice was due.
    let state = state.clone();
    let user = user.clone();
    tokio::spawn(async move {
        let body = format!(
            "{}\n\nIf this was you, there is nothing to do. If it was not, someone may know your password: \
             change it and review your second factors, or ask your administrator for help.\n",
            notice.sentence()
        );
        let mut sent = Vec::with_capacity(to.len());
        if let Some(email) = state.senders().email() {
            for address in &to {
                match email.send(address, "Security notice from Twofold", &body).await {
                    Ok(()) => sent.push(factors::mask_email(address)),
                    Err(e) => tracing::warn!(error = %e, kind = notice.kind(), "a security notice could not be sent"),
                }
            }
        }
        let after = serde_json::json!({ "kind": notice.kind(), "sent_to": sent });
        if let Err(e) = factors::audit_user(&state, &user, "notice.sent", after).await {
            tracing::warn!(error = %e, "a security notice could not be audited");
        }
    });
}
