//! Second factors shared by the sign-in pipeline and the account API: sending emailed or
//! texted codes, and checking them, authenticator codes and recovery codes.
//!
//! A check here never consumes anything and never counts a failure: it says whether a
//! code is right ([`Verdict`]). The sign-in machine (`crate::signin`) is the only caller
//! that acts on the verdict: it reserves a lockout attempt before the check and consumes
//! the factor in the transaction that completes the step. Adding, confirming and
//! removing factors lives in [`lifecycle`]. Codes are compared only through keyed
//! hashes in constant time. Nothing here logs a code.

pub mod lifecycle;
pub mod passkey;

use rand::Rng;
use twofold_policy::wire::{ErrorCode, SendCodeResponse};
use twofold_policy::{Provider, ProviderSet};

use crate::app::AppState;
use crate::config::Config;
use crate::db::direct::{Arg, Exec, args};
use crate::db::factors::{self as fdb, NewCode};
use crate::db::{NewAudit, UserRow, messages};
use crate::error::{AppError, AppResult};
use crate::{senders, totp};

/// What an emailed or texted code is for. Each purpose keys its own code hashes, so a
/// code sent for one purpose can never be used for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodePurpose {
    SignInEmail,
    SignInSms,
    EnrollEmail,
    EnrollPhone,
    ConfirmEmail,
    ConfirmPhone,
    ReauthEmail,
    ReauthSms,
    /// Recovery codes are not sent, but their hashes are keyed the same way.
    Recovery,
}

impl CodePurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            CodePurpose::SignInEmail => "sign_in_email",
            CodePurpose::SignInSms => "sign_in_sms",
            CodePurpose::EnrollEmail => "enroll_email",
            CodePurpose::EnrollPhone => "enroll_phone",
            CodePurpose::ConfirmEmail => "confirm_email",
            CodePurpose::ConfirmPhone => "confirm_phone",
            CodePurpose::ReauthEmail => "reauth_email",
            CodePurpose::ReauthSms => "reauth_sms",
            CodePurpose::Recovery => "recovery",
        }
    }

    pub fn sign_in(channel: Channel) -> Self {
        match channel {
            Channel::Email => CodePurpose::SignInEmail,
            Channel::Sms => CodePurpose::SignInSms,
        }
    }

    pub fn enroll(channel: Channel) -> Self {
        match channel {
            Channel::Email => CodePurpose::EnrollEmail,
            Channel::Sms => CodePurpose::EnrollPhone,
        }
    }

    pub fn confirm(channel: Channel) -> Self {
        match channel {
            Channel::Email => CodePurpose::ConfirmEmail,
            Channel::Sms => CodePurpose::ConfirmPhone,
        }
    }

    pub fn reauth(channel: Channel) -> Self {
        match channel {
            Channel::Email => CodePurpose::ReauthEmail,
            Channel::Sms => CodePurpose::ReauthSms,
        }
    }
}

/// What a check found.
#[derive(Debug)]
pub enum Verdict {
    /// Right, and still unused: consume it to make it count.
    Valid(Spend),
    /// Right, but already used (a replay, a double submit, another tab): not a guess.
    Used,
    /// Wrong.
    Wrong,
}

/// A new six-digit code from the thread-local CSPRNG.
pub fn new_numeric_code() -> String {
    format!("{:06}", rand::rng().random_range(0..1_000_000u32))
}

/// `a***@example.com`: enough for users to recognise their address, not enough to
/// harvest it from a half-finished sign-in.
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".to_owned(),
    }
}

pub fn mask_phone(phone: &str) -> String {
    let tail: String = phone.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    format!("***{tail}")
}

/// A phone number in E.164 form: `+` and 8 to 15 digits, spaces and dashes ignored.
pub fn parse_phone(input: &str) -> AppResult<String> {
    let cleaned: String = input.chars().filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.')).collect();
    let digits = cleaned.strip_prefix('+').unwrap_or("");
    if (8..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()) && !digits.starts_with('0') {
        Ok(cleaned)
    } else {
        Err(AppError::invalid_field("phone", "a phone number is written in international form, e.g. +14155550100"))
    }
}

/// Where a code goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Email,
    Sms,
}

impl Channel {
    pub fn provider(self) -> Provider {
        match self {
            Channel::Email => Provider::Email,
            Channel::Sms => Provider::Sms,
        }
    }

    /// The channel that carries `provider`'s codes; none for the authenticator.
    pub fn of(provider: Provider) -> Option<Self> {
        match provider {
            Provider::Authenticator | Provider::Passkey => None,
            Provider::Email => Some(Channel::Email),
            Provider::Sms => Some(Channel::Sms),
        }
    }

    /// The name of the channel in storage and in the message counts.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
        }
    }

    fn sender(self) -> senders::Channel {
        match self {
            Channel::Email => senders::Channel::Email,
            Channel::Sms => senders::Channel::Sms,
        }
    }

    /// The hourly caps of this channel: per scope, and over every scope together.
    pub fn caps(self, config: &Config) -> (u32, u32) {
        match self {
            Channel::Email => (config.email_per_tenant_per_hour, config.email_per_hour),
            Channel::Sms => (config.sms_per_tenant_per_hour, config.sms_per_hour),
        }
    }
}

/// Refuses when nothing can deliver `channel`: no real sender is configured and the
/// development sender is off.
pub fn ensure_sender(state: &AppState, channel: Channel) -> AppResult<()> {
    if state.senders().can_send(channel.sender()) {
        return Ok(());
    }
    Err(AppError::bad_request(
        ErrorCode::SenderNotConfigured,
        match channel {
            Channel::Email => "No SMTP server is configured: email codes cannot be sent",
            Channel::Sms => "No SMS provider is configured: text messages cannot be sent",
        },
    ))
}

/// The providers that can be used now: those `allowed`, less email and SMS while
/// nothing can deliver them. Offering a factor whose codes cannot be sent would only
/// strand users, or, with the development sender as a silent fallback, put every code
/// in the log.
pub fn usable_providers(state: &AppState, allowed: &ProviderSet) -> ProviderSet {
    let senders = state.senders();
    ProviderSet {
        authenticator: allowed.authenticator,
        email: allowed.email && senders.can_send(senders::Channel::Email),
        sms: allowed.sms && senders.can_send(senders::Channel::Sms),
        // Passkeys need a relying party, which needs `public_url`.
        passkey: allowed.passkey && state.webauthn().is_some(),
    }
}

/// Refuses a text to `phone` when the user's scope limits texts to other countries.
pub async fn ensure_phone_country(state: &AppState, scope_key: &str, phone: &str) -> AppResult<()> {
    let settings = state.cache().settings(state.db(), scope_key).await?;
    if settings.sms_allowed_to(phone) {
        return Ok(());
    }
    Err(AppError::BadRequest {
        code: ErrorCode::PhoneCountryNotAllowed,
        message: format!(
            "text messages may only go to numbers with country code {}",
            settings.sms_allowed_country_codes.iter().map(|c| format!("+{c}")).collect::<Vec<_>>().join(", ")
        ),
        field: Some("phone".to_owned()),
    })
}

/// Most code sends one pending sign-in may trigger; with the resend interval this
/// bounds how many messages one attacker-held password can push at a user.
const MAX_SENDS_PER_ATTEMPT: i64 = 5;

/// Creates a code for `purpose` bound to `binding`, voiding earlier ones, and sends it.
/// With `attempt`, the send also uses up one of that pending sign-in's sends.
///
/// The one place every email and text leaves from, so every cap holds whichever path
/// asked: many pending sign-ins, enrolment, the account page, many addresses, many
/// users of one tenant. Every check that can refuse runs in the transaction that stores
/// the code, so a refused send replaces no code and leaves the pending sign-in's
/// allowance and the hourly counts as they were.
pub async fn send_code(
    state: &AppState,
    user: &UserRow,
    purpose: CodePurpose,
    binding: &str,
    destination: &str,
    channel: Channel,
    attempt: Option<&fdb::AttemptRow>,
) -> AppResult<SendCodeResponse> {
    ensure_sender(state, channel)?;
    if channel == Channel::Sms {
        ensure_phone_country(state, &user.scope_key, destination).await?;
    }
    let purpose = purpose.as_str();
    let now = state.now();
    let code = new_numeric_code();
    let lifetime_ms = i64::from(state.config().code_lifetime_minutes) * 60_000;
    let hash = state.keys().code_hash(purpose, binding, &code);
    let mut tx = state.db().begin_write().await?;
    tx.touches(crate::db::Touches::user(&user.id));
    if let Some(attempt) = attempt {
        let interval = i64::from(state.config().code_resend_seconds) * 1000;
        if !fdb::claim_code_send(&mut tx, &attempt.id, now, now - interval, MAX_SENDS_PER_ATTEMPT).await? {
            let wait = attempt.last_code_sent_at.map_or(interval, |t| (t + interval - now).max(1000));
            return Err(AppError::RateLimited { retry_after_ms: wait });
        }
    }
    count_message(&mut tx, state, user, channel, now).await?;
    state.limits().message(&user.id, destination, now)?;
    fdb::replace_code(
        &mut tx,
        &NewCode {
            user_id: &user.id,
            purpose,
            binding,
            destination,
            code_hash: &hash,
            created_at: now,
            expires_at: now + lifetime_ms,
        },
    )
    .await?;
    tx.commit().await?;
    let minutes = state.config().code_lifetime_minutes;
    let sent = match (channel, state.senders().email(), state.senders().sms()) {
        (Channel::Email, Some(email), _) => {
            let body = format!(
                "Your Twofold code is {code}.\n\nIt expires in {minutes} minutes. If you did not try to sign in or \
                 change your account, someone may know your password: change it.\n"
            );
            email.send(destination, "Your Twofold code", &body).await
        }
        (Channel::Sms, _, Some(sms)) => {
            let body = format!("Your Twofold code is {code}. It expires in {minutes} minutes.");
            sms.send(destination, &body).await
        }
        // Checked by `ensure_sender` above; senders never change while running.
        _ => return Err(AppError::Internal(anyhow::anyhow!("no sender for {}", channel.as_str()))),
    };
    let label = match channel {
        Channel::Email => "email",
        Channel::Sms => "sms",
    };
    crate::metrics::code_sent(label, sent.is_ok());
    sent.map_err(|e| AppError::SendFailed(anyhow::anyhow!("{e}")))?;
    Ok(SendCodeResponse {
        sent_to: match channel {
            Channel::Email => mask_email(destination),
            Channel::Sms => mask_phone(destination),
        },
        expires_in_seconds: minutes * 60,
        weaker: true,
    })
}

/// Counts one message of `channel` against the hourly caps of the user's scope and of
/// every scope together, in the caller's transaction; `rate_limited` until the next
/// clock hour when either is reached. The scope's row is always taken before the
/// shared one, so two senders cannot wait on each other's locks.
pub(crate) async fn count_message(
    conn: &mut sqlx::AnyConnection,
    state: &AppState,
    user: &UserRow,
    channel: Channel,
    now: i64,
) -> AppResult<()> {
    let (per_scope, overall) = channel.caps(state.config());
    let hour = messages::hour_start(now);
    for (scope, cap) in [(user.scope_key.as_str(), per_scope), (messages::ALL_SCOPES, overall)] {
        if !messages::count(conn, scope, channel.as_str(), hour, cap).await? {
            // Worth an operator's attention: a tenant sending this much may be pumping
            // texts to numbers it profits from.
            tracing::warn!(scope, channel = channel.as_str(), cap, "hourly message cap reached; sends refused");
            return Err(AppError::RateLimited { retry_after_ms: hour + messages::HOUR_MS - now });
        }
    }
    Ok(())
}

/// A second factor that checked out and is still to be consumed. The sign-in consumes
/// it in the same transaction that completes the attempt and opens the session, so a
/// request that loses a race leaves nothing half-done.
#[derive(Debug, Clone)]
pub enum Spend {
    TotpStep {
        user_id: String,
        step: i64,
    },
    Code {
        id: String,
        destination: String,
    },
    Recovery {
        id: String,
    },
    /// A passkey's use: its new counter, flags and state, stored only if the counter is
    /// still the one the check read.
    Passkey {
        id: String,
        previous_count: i64,
        count: i64,
        passkey_enc: String,
        backup_eligible: bool,
        backup_state: bool,
    },
}

impl Spend {
    /// Consumes the factor in the caller's transaction; false when another request
    /// consumed it first (a replay or a double submit).
    pub async fn consume(&self, conn: &mut impl Exec, now: i64) -> Result<bool, sqlx::Error> {
        let (sql, args) = self.statement(now);
        Ok(conn.run(sql, &args).await? == 1)
    }

    /// The statement that consumes the factor: an `UPDATE` of one row by its key that
    /// changes none when another request consumed the factor first.
    pub fn statement(&self, now: i64) -> (&'static str, Vec<Arg>) {
        match self {
            Spend::TotpStep { user_id, step } => (fdb::USE_STEP_SQL, Vec::from(args![*step, user_id.as_str()])),
            Spend::Code { id, .. } => (fdb::USE_CODE_SQL, Vec::from(args![now, id.as_str()])),
            Spend::Recovery { id } => (fdb::USE_RECOVERY_CODE_SQL, Vec::from(args![now, id.as_str()])),
            Spend::Passkey { id, previous_count, count, passkey_enc, backup_eligible, backup_state } => {
                let args = args![
                    *count,
                    passkey_enc.as_str(),
                    *backup_eligible,
                    *backup_state,
                    now,
                    id.as_str(),
                    *previous_count
                ];
                (crate::db::passkeys::RECORD_USE_SQL, Vec::from(args))
            }
        }
    }

    /// Where an emailed or texted code went: the address or number it confirms.
    pub fn destination(&self) -> Option<&str> {
        match self {
            Spend::Code { destination, .. } => Some(destination),
            _ => None,
        }
    }
}

/// A typed email or SMS code as it is hashed: surrounding whitespace dropped, and
/// `None` unless exactly six ASCII digits remain (nothing else can match a code
/// [`new_numeric_code`] made, so no database read is spent on it). Public for the fuzz
/// targets.
pub fn typed_numeric_code(code: &str) -> Option<&str> {
    let code = code.trim();
    (code.len() == 6 && code.bytes().all(|c| c.is_ascii_digit())).then_some(code)
}

/// Checks the live code of `purpose` and `binding` without consuming it. A used or
/// voided code is simply wrong here: it is bound to one pending sign-in or one
/// confirmation, so only its own requests could race for it, and those end in the
/// consuming transaction.
pub async fn check_code(state: &AppState, purpose: CodePurpose, binding: &str, code: &str) -> AppResult<Verdict> {
    let Some(code) = typed_numeric_code(code) else {
        return Ok(Verdict::Wrong);
    };
    let now = state.now();
    let Some(row) = fdb::live_code(&state.db().pool, binding, purpose.as_str(), now).await? else {
        return Ok(Verdict::Wrong);
    };
    if !state.keys().verify_code_hash(purpose.as_str(), binding, code, &row.code_hash) {
        return Ok(Verdict::Wrong);
    }
    Ok(Verdict::Valid(Spend::Code { id: row.id, destination: row.destination }))
}

/// Checks an authenticator code against the user's `authenticator` as read under the
/// attempt's reservation, without consuming its time step. With `pending` the
/// not-yet-confirmed secret of an enrolment is used; otherwise only a confirmed one.
/// A right code of a step already used is [`Verdict::Used`].
pub fn check_totp(
    state: &AppState,
    user: &UserRow,
    authenticator: Option<fdb::AuthenticatorRow>,
    code: &str,
    pending: bool,
) -> AppResult<Verdict> {
    let Some(row) = authenticator else {
        return Ok(Verdict::Wrong);
    };
    if (row.confirmed != 0) == pending {
        return Ok(Verdict::Wrong);
    }
    let secret = authenticator_secret(state, &user.id, &row.secret_enc)?;
    let now_secs = u64::try_from(state.now() / 1000).unwrap_or(0);
    let last = u64::try_from(row.last_used_step).ok().filter(|s| *s > 0);
    if let Some(step) = totp::verify(&secret, code, now_secs, last) {
        return Ok(Verdict::Valid(Spend::TotpStep {
            user_id: user.id.clone(),
            step: i64::try_from(step).unwrap_or(i64::MAX),
        }));
    }
    if last.is_some() && totp::verify(&secret, code, now_secs, None).is_some() {
        return Ok(Verdict::Used);
    }
    Ok(Verdict::Wrong)
}

/// The time step at which `code` is right for the authenticator secret `secret_enc`
/// (as stored) of `user_id` now, whether or not that step was used: for a check whose
/// consuming statement compares the step with the stored one under the row's lock
/// (`signin::opened`).
pub fn authenticator_step(state: &AppState, user_id: &str, secret_enc: &str, code: &str) -> AppResult<Option<i64>> {
    let secret = authenticator_secret(state, user_id, secret_enc)?;
    let now_secs = u64::try_from(state.now() / 1000).unwrap_or(0);
    Ok(totp::verify(&secret, code, now_secs, None).map(|step| i64::try_from(step).unwrap_or(i64::MAX)))
}

fn authenticator_secret(state: &AppState, user_id: &str, secret_enc: &str) -> AppResult<zeroize::Zeroizing<Vec<u8>>> {
    state
        .keys()
        .decrypt_secret(secret_enc, user_id)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("authenticator secret cannot be decrypted: {e}")))
}

/// Normalises a typed recovery code: case and separators do not matter. Public for the
/// fuzz targets.
pub fn normalize_recovery(code: &str) -> String {
    code.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
}

/// Checks a recovery code against every unused one of the user (in constant time each)
/// without consuming it.
pub async fn check_recovery_code(state: &AppState, user: &UserRow, code: &str) -> AppResult<Verdict> {
    let typed = normalize_recovery(code);
    if typed.len() != RECOVERY_CODE_LEN {
        return Ok(Verdict::Wrong);
    }
    let rows = fdb::unused_recovery_codes(&state.db().pool, &user.id).await?;
    let mut found = None;
    let purpose = CodePurpose::Recovery.as_str();
    for row in &rows {
        // No early exit: the time taken does not depend on which code matched.
        if state.keys().verify_code_hash(purpose, &user.id, &typed, &row.code_hash) && found.is_none() {
            found = Some(row.id.clone());
        }
    }
    Ok(found.map_or(Verdict::Wrong, |id| Verdict::Valid(Spend::Recovery { id })))
}

/// Characters of a recovery code without its separator.
pub const RECOVERY_CODE_LEN: usize = 10;
pub const RECOVERY_CODE_COUNT: usize = 10;
const RECOVERY_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";

/// Ten new recovery codes (about 49 bits each), replacing the old set in the caller's
/// transaction. The plain codes are returned once and never stored.
pub async fn issue_recovery_codes(
    conn: &mut sqlx::AnyConnection,
    state: &AppState,
    user_id: &str,
) -> AppResult<Vec<String>> {
    let mut codes = Vec::with_capacity(RECOVERY_CODE_COUNT);
    let mut hashes = Vec::with_capacity(RECOVERY_CODE_COUNT);
    {
        let mut rng = rand::rng();
        for _ in 0..RECOVERY_CODE_COUNT {
            let raw: String = (0..RECOVERY_CODE_LEN)
                .map(|_| char::from(RECOVERY_ALPHABET[rng.random_range(0..RECOVERY_ALPHABET.len())]))
                .collect();
            hashes.push(state.keys().code_hash(CodePurpose::Recovery.as_str(), user_id, &raw));
            codes.push(format!("{}-{}", &raw[..5], &raw[5..]));
        }
    }
    fdb::replace_recovery_codes(conn, user_id, &hashes, state.now()).await?;
    Ok(codes)
}

/// An event about `user`, done by that user, at `at`.
pub fn user_event<'a>(
    user: &'a UserRow,
    at: i64,
    action: &'a str,
    target: &'a str,
    after: serde_json::Value,
) -> NewAudit<'a> {
    NewAudit {
        at,
        actor_user_id: Some(&user.id),
        scope_key: &user.scope_key,
        action,
        target,
        before: None,
        after: Some(after),
    }
}

/// The audit target that names `user`.
pub fn user_target(user: &UserRow) -> String {
    format!("user:{}", user.id)
}

/// Records an event about `user`, done by that user, outside any transaction
/// ([`crate::db::Db::insert_audit_alone`]).
pub async fn audit_user(state: &AppState, user: &UserRow, action: &str, after: serde_json::Value) -> AppResult<()> {
    let target = user_target(user);
    state.db().insert_audit_alone(&user_event(user, state.now(), action, &target, after)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_codes_have_six_digits() {
        for _ in 0..1000 {
            let c = new_numeric_code();
            assert_eq!(c.len(), 6);
            assert!(c.bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn masks_hide_most_of_the_destination() {
        assert_eq!(mask_email("alice@example.com"), "a***@example.com");
        assert_eq!(mask_phone("+14155550100"), "***0100");
    }

    #[test]
    fn phones_are_e164() {
        assert_eq!(parse_phone("+1 415-555-0100").ok().as_deref(), Some("+14155550100"));
        for bad in ["4155550100", "+1", "+0123456789", "+1415555010a", "+1234567890123456"] {
            assert!(parse_phone(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn typed_codes_are_six_digits_after_trimming() {
        assert_eq!(typed_numeric_code(" 042917\n"), Some("042917"));
        for bad in ["", "42917", "0429170", "042 917", "04291a", "\u{ff10}42917", "+42917"] {
            assert_eq!(typed_numeric_code(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn recovery_codes_normalise() {
        assert_eq!(normalize_recovery(" ABCDE-fghjk "), "abcdefghjk");
    }
}
