//! Passkeys: WebAuthn credentials through `webauthn-rs`, as a second factor after the
//! password, as a passwordless sign-in, and as a factor enrolled at sign-in or on the
//! account page.
//!
//! The relying party is `public_url` (its host is the relying party id, the URL itself
//! the only accepted origin). Each ceremony's state lives in the database between its
//! two round trips, encrypted like authenticator secrets and bound to what started it
//! (a pending sign-in, a session, or nothing for a passwordless sign-in); finishing
//! deletes the row first, so a challenge is answered once, on whichever node. Stored
//! passkeys are encrypted at rest; their signature counter is kept beside them and only
//! ever moves forward, so an authenticator that reports a used value (a clone) is
//! refused. Like the other checks in `crate::factors`, nothing here consumes a factor
//! or counts a failure: the sign-in machine does, through [`Spend::Passkey`].

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use twofold_policy::wire::{ErrorCode, PasskeyChallenge, PasskeyFinish};
use webauthn_rs::prelude::{
    CreationChallengeResponse, DiscoverableAuthentication, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, RequestChallengeResponse, Url, Uuid, WebauthnError,
};
use webauthn_rs::{Webauthn, WebauthnBuilder};

use super::{Spend, Verdict};
use crate::app::AppState;
use crate::config::Config;
use crate::db::passkeys as pdb;
use crate::db::{self, UserRow};
use crate::error::{AppError, AppResult};

/// How long a ceremony may take between its two round trips.
pub const CHALLENGE_MS: i64 = 5 * 60_000;

/// The relying party of this server, or why passkeys are off. Called once at start:
/// an inconsistent configuration stops the start with a message that says what to fix.
pub fn relying_party(config: &Config) -> anyhow::Result<Option<Webauthn>> {
    let Some(public) = config.public_url.as_deref() else {
        return Ok(None);
    };
    let url = Url::parse(public).map_err(|e| anyhow::anyhow!("public_url: {e}"))?;
    let Some(host) = url.host_str() else {
        anyhow::bail!("public_url has no host, so passkeys have no relying party");
    };
    // Browsers refuse an IP address as a relying party id, and refuse WebAuthn on plain
    // HTTP except on localhost: such a `public_url` (the development fallback to the
    // bound address among them) leaves passkeys off rather than offering what cannot work.
    if url.host().is_some_and(|h| !matches!(h, url::Host::Domain(_))) {
        tracing::warn!("passkeys are off: public_url names an IP address, which cannot be a WebAuthn relying party");
        return Ok(None);
    }
    if url.scheme() != "https" && host != "localhost" && config.cookie_secure {
        anyhow::bail!(
            "public_url is plain HTTP ({public}) but cookie_secure is on: browsers would never send the Secure \
             session cookie back; use an https public_url, or turn cookie_secure off for local development"
        );
    }
    if url.scheme() != "https" && host != "localhost" {
        tracing::warn!("passkeys are off: public_url is plain HTTP and not localhost; browsers refuse WebAuthn there");
        return Ok(None);
    }
    let rp = WebauthnBuilder::new(host, &url)
        .and_then(|b| b.rp_name("Twofold").build())
        .map_err(|e| anyhow::anyhow!("public_url cannot be a WebAuthn relying party: {e}"))?;
    Ok(Some(rp))
}

/// What a stored ceremony is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ceremony {
    /// Registering a new passkey (enrolment, or the account page).
    Register,
    /// Proving a passkey of a known user (second factor, reauthentication, step-up).
    Authenticate,
    /// A passwordless sign-in: the passkey names the user.
    Discover,
}

impl Ceremony {
    fn as_str(self) -> &'static str {
        match self {
            Ceremony::Register => "register",
            Ceremony::Authenticate => "authenticate",
            Ceremony::Discover => "discover",
        }
    }
}

fn webauthn(state: &AppState) -> AppResult<&Webauthn> {
    state.webauthn().ok_or_else(|| {
        AppError::conflict(
            ErrorCode::PasskeysUnavailable,
            "passkeys are not set up here: public_url must name this server by its domain",
        )
    })
}

fn refused() -> AppError {
    AppError::PasskeyRefused
}

fn internal(what: &str, e: impl std::fmt::Display) -> AppError {
    AppError::Internal(anyhow::anyhow!("{what}: {e}"))
}

/// Stores a ceremony's state and returns its id.
async fn save_ceremony<S: serde::Serialize>(
    state: &AppState,
    ceremony: Ceremony,
    binding: &str,
    user_id: Option<&str>,
    data: &S,
    name: Option<&str>,
) -> AppResult<String> {
    let id = crate::auth::new_token();
    let json = serde_json::to_vec(data).map_err(|e| internal("ceremony state", e))?;
    let enc = state.keys().encrypt_secret(&json, &id);
    let now = state.now();
    let (stored_id, binding, user_id, name) =
        (id.clone(), binding.to_owned(), user_id.map(str::to_owned), name.map(str::to_owned));
    state
        .db()
        .write(move |w| async move {
            let challenge = pdb::NewChallenge {
                id: &stored_id,
                purpose: ceremony.as_str(),
                binding: &binding,
                user_id: user_id.as_deref(),
                state_enc: &enc,
                name: name.as_deref(),
                created_at: now,
                expires_at: now + CHALLENGE_MS,
            };
            pdb::insert_challenge(&w, &challenge).await
        })
        .await?;
    Ok(id)
}

/// A ceremony taken from storage: gone for every other request from now on.
struct Taken<S> {
    data: S,
    user_id: Option<String>,
    name: Option<String>,
}

/// Takes the ceremony `id` of `ceremony` bound to `binding`, exactly once. Unknown,
/// used, expired and foreign ceremonies are refused alike.
async fn take_ceremony<S: serde::de::DeserializeOwned>(
    state: &AppState,
    ceremony: Ceremony,
    binding: &str,
    id: &str,
) -> AppResult<Taken<S>> {
    if id.is_empty() || id.len() > 128 {
        return Err(refused());
    }
    let row = state
        .db()
        .write({
            let (id, binding, now) = (id.to_owned(), binding.to_owned(), state.now());
            move |w| async move { pdb::take_challenge(&w, &id, ceremony.as_str(), &binding, now).await }
        })
        .await?
        .ok_or_else(refused)?;
    let json = state.keys().decrypt_secret(&row.state_enc, id).map_err(|e| internal("ceremony state", e))?;
    let data = serde_json::from_slice(&json).map_err(|e| internal("ceremony state", e))?;
    Ok(Taken { data, user_id: row.user_id, name: row.name })
}

fn options_json<T: serde::Serialize>(options: &T) -> AppResult<serde_json::Value> {
    serde_json::to_value(options).map_err(|e| internal("WebAuthn options", e))
}

/// The browser's answer, parsed into webauthn-rs's shape; a body that does not parse is
/// the client's mistake, told as such.
fn parse<T: serde::de::DeserializeOwned>(finish: &PasskeyFinish) -> AppResult<T> {
    serde_json::from_value(finish.credential.clone()).map_err(|_| {
        AppError::invalid_field("credential", "not a WebAuthn credential in its JSON form (binary fields base64url)")
    })
}

/// Reads a browser's answer as a registration and as an assertion, as the finishing
/// routes do, and a registration's authenticator data as far as its AAGUID. For the
/// fuzz targets: whatever the body, each read is a value or a 4xx.
pub fn read_credential(finish: &PasskeyFinish) -> [AppResult<()>; 2] {
    let registration = parse::<RegisterPublicKeyCredential>(finish).map(|c| {
        let _ = authenticator_data_of(&c).and_then(|d| aaguid_text(&d));
    });
    [registration, parse::<PublicKeyCredential>(finish).map(drop)]
}

/// The WebAuthn user handle of a user: their id, which is a UUID.
fn user_handle(user: &UserRow) -> AppResult<Uuid> {
    Uuid::parse_str(&user.id).map_err(|e| internal("user id as WebAuthn user handle", e))
}

/// A stored passkey of `user`, decrypted.
struct Stored {
    row: pdb::PasskeyRow,
    key: Passkey,
}

async fn stored_of(state: &AppState, user_id: &str) -> AppResult<Vec<Stored>> {
    let rows = pdb::list(&state.db().pool, user_id).await?;
    rows.into_iter().map(|row| decrypt(state, row)).collect()
}

fn decrypt(state: &AppState, row: pdb::PasskeyRow) -> AppResult<Stored> {
    let json = state.keys().decrypt_secret(&row.passkey_enc, &row.id).map_err(|e| internal("stored passkey", e))?;
    let key = serde_json::from_slice(&json).map_err(|e| internal("stored passkey", e))?;
    Ok(Stored { row, key })
}

pub fn credential_id_text(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

// ---------------------------------------------------------------- registration

/// Starts registering a passkey named `name` for `user`, bound to `binding` (the
/// pending sign-in's id, or the session's token hash).
pub async fn start_registration(
    state: &AppState,
    user: &UserRow,
    binding: &str,
    name: &str,
) -> AppResult<PasskeyChallenge> {
    let rp = webauthn(state)?;
    let existing = pdb::list(&state.db().pool, &user.id).await?;
    let exclude = existing.iter().filter_map(|p| URL_SAFE_NO_PAD.decode(&p.credential_id).ok()).collect::<Vec<_>>();
    let (ccr, reg): (CreationChallengeResponse, PasskeyRegistration) = rp
        .start_passkey_registration(user_handle(user)?, &user.username, &user.username, Some(exclude))
        .map_err(|e| internal("passkey registration", e))?;
    let mut options = options_json(&ccr)?;
    // A passkey that can also sign in without a password must be discoverable; asking
    // for it (not requiring it) leaves security keys without storage usable as a
    // second factor. Registration does not check this, so only the request changes.
    if let Some(sel) = options.pointer_mut("/publicKey/authenticatorSelection").and_then(|v| v.as_object_mut()) {
        sel.insert("residentKey".to_owned(), serde_json::json!("preferred"));
    }
    let id = save_ceremony(state, Ceremony::Register, binding, Some(&user.id), &reg, Some(name)).await?;
    Ok(PasskeyChallenge { challenge_id: id, options })
}

/// A passkey that passed registration, ready to store.
#[derive(Debug)]
pub struct Registered {
    pub id: String,
    pub credential_id: String,
    pub passkey_enc: String,
    pub name: String,
    pub aaguid: String,
    pub counter: i64,
    pub backup_eligible: bool,
    pub backup_state: bool,
}

/// Finishes a registration for `user`: the ceremony taken once, the credential
/// verified, the scope's list of authenticator models applied. Nothing is stored here.
pub async fn finish_registration(
    state: &AppState,
    user: &UserRow,
    binding: &str,
    finish: &PasskeyFinish,
) -> AppResult<Registered> {
    let rp = webauthn(state)?;
    let credential: RegisterPublicKeyCredential = parse(finish)?;
    let taken: Taken<PasskeyRegistration> =
        take_ceremony(state, Ceremony::Register, binding, &finish.challenge_id).await?;
    if taken.user_id.as_deref() != Some(user.id.as_str()) {
        return Err(refused());
    }
    let key = rp.finish_passkey_registration(&credential, &taken.data).map_err(|e| {
        tracing::info!(error = %e, "passkey registration refused");
        refused()
    })?;
    let auth_data = authenticator_data_of(&credential).ok_or_else(refused)?;
    let aaguid = aaguid_text(&auth_data).ok_or_else(refused)?;
    let settings = state.cache().settings(state.db(), &user.scope_key).await?;
    if !settings.passkey_model_allowed(&aaguid) {
        return Err(AppError::bad_request(
            ErrorCode::PasskeyModelNotAllowed,
            "this authenticator model is not on the list your organisation accepts",
        ));
    }
    let flags = auth_data.get(32).copied().unwrap_or(0);
    let counter = auth_data.get(33..37).and_then(|c| c.try_into().ok()).map_or(0, u32::from_be_bytes);
    let id = uuid::Uuid::now_v7().to_string();
    let json = serde_json::to_vec(&key).map_err(|e| internal("passkey", e))?;
    Ok(Registered {
        passkey_enc: state.keys().encrypt_secret(&json, &id),
        id,
        credential_id: credential_id_text(key.cred_id().as_ref()),
        name: taken.name.unwrap_or_else(|| "Passkey".to_owned()),
        aaguid,
        counter: i64::from(counter),
        backup_eligible: flags & 0x08 != 0,
        backup_state: flags & 0x10 != 0,
    })
}

/// The authenticator data inside a registration's attestation object (CBOR).
fn authenticator_data_of(credential: &RegisterPublicKeyCredential) -> Option<Vec<u8>> {
    let object: &[u8] = credential.response.attestation_object.as_ref();
    let map: std::collections::BTreeMap<String, serde_cbor_2::Value> = serde_cbor_2::from_slice(object).ok()?;
    match map.get("authData")? {
        serde_cbor_2::Value::Bytes(b) => Some(b.clone()),
        _ => None,
    }
}

/// The AAGUID of attested credential data: 16 bytes after the relying party's hash
/// (32), the flags (1) and the counter (4).
fn aaguid_text(auth_data: &[u8]) -> Option<String> {
    let bytes: [u8; 16] = auth_data.get(37..53)?.try_into().ok()?;
    Some(uuid::Uuid::from_bytes(bytes).hyphenated().to_string())
}

// ---------------------------------------------------------------- authentication

/// Starts proving one of `user`'s passkeys, bound to `binding`.
pub async fn start_authentication(state: &AppState, user: &UserRow, binding: &str) -> AppResult<PasskeyChallenge> {
    let rp = webauthn(state)?;
    let keys: Vec<Passkey> = stored_of(state, &user.id).await?.into_iter().map(|s| s.key).collect();
    if keys.is_empty() {
        return Err(AppError::bad_request(ErrorCode::ProviderUnavailable, "no passkey is set up for this account"));
    }
    let (rcr, auth): (RequestChallengeResponse, PasskeyAuthentication) =
        rp.start_passkey_authentication(&keys).map_err(|e| internal("passkey authentication", e))?;
    let id = save_ceremony(state, Ceremony::Authenticate, binding, Some(&user.id), &auth, None).await?;
    Ok(PasskeyChallenge { challenge_id: id, options: options_json(&rcr)? })
}

/// Starts a passwordless sign-in: the browser offers whichever passkey of this site
/// the person picks (conditional UI), so nothing names the user yet.
pub async fn start_discovery(state: &AppState) -> AppResult<PasskeyChallenge> {
    let rp = webauthn(state)?;
    let (rcr, auth): (RequestChallengeResponse, DiscoverableAuthentication) =
        rp.start_discoverable_authentication().map_err(|e| internal("passkey discovery", e))?;
    let id = save_ceremony(state, Ceremony::Discover, "", None, &auth, None).await?;
    Ok(PasskeyChallenge { challenge_id: id, options: options_json(&rcr)? })
}

/// Checks an assertion for `user` without consuming anything: the ceremony is taken
/// (single use), the signature verified with user verification, and the counter checked
/// against the stored one. A regression (a cloned authenticator) is audited and wrong.
pub async fn check_assertion(
    state: &AppState,
    user: &UserRow,
    binding: &str,
    finish: &PasskeyFinish,
) -> AppResult<Verdict> {
    let rp = webauthn(state)?;
    let credential: PublicKeyCredential = parse(finish)?;
    let taken: Taken<PasskeyAuthentication> =
        match take_ceremony(state, Ceremony::Authenticate, binding, &finish.challenge_id).await {
            Ok(t) => t,
            // A used or unknown challenge is no guess at a key: a replay or a double submit.
            Err(AppError::PasskeyRefused) => return Ok(Verdict::Used),
            Err(e) => return Err(e),
        };
    if taken.user_id.as_deref() != Some(user.id.as_str()) {
        return Ok(Verdict::Wrong);
    }
    let result = rp.finish_passkey_authentication(&credential, &taken.data);
    verdict(state, user, &credential, result).await
}

/// A passwordless sign-in's answer, its ceremony taken and its passkey's owner found,
/// not yet verified: the lockout is reserved for that user before the signature is.
pub struct Discovered {
    pub user: UserRow,
    credential: PublicKeyCredential,
    ceremony: DiscoverableAuthentication,
    stored: Stored,
}

impl std::fmt::Debug for Discovered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovered").field("user", &self.user.id).finish_non_exhaustive()
    }
}

/// Takes a passwordless sign-in's ceremony and finds the user its passkey names.
/// `None` when the ceremony or the passkey is unknown, or the user handle does not
/// name the passkey's owner: all refused alike.
pub async fn identify(state: &AppState, finish: &PasskeyFinish) -> AppResult<Option<Discovered>> {
    let rp = webauthn(state)?;
    let credential: PublicKeyCredential = parse(finish)?;
    let taken: Taken<DiscoverableAuthentication> =
        match take_ceremony(state, Ceremony::Discover, "", &finish.challenge_id).await {
            Ok(t) => t,
            Err(AppError::PasskeyRefused) => return Ok(None),
            Err(e) => return Err(e),
        };
    let Ok((handle, cred_id)) = rp.identify_discoverable_authentication(&credential) else {
        return Ok(None);
    };
    let Some(row) = pdb::find_by_credential(&state.db().pool, &credential_id_text(cred_id)).await? else {
        return Ok(None);
    };
    if row.user_id != handle.to_string() {
        return Ok(None);
    }
    let Some(user) = db::get_user(&state.db().pool, &row.user_id).await? else {
        return Ok(None);
    };
    let stored = decrypt(state, row)?;
    Ok(Some(Discovered { user, credential, ceremony: taken.data, stored }))
}

/// Verifies a passwordless sign-in's assertion against the passkey it named.
pub async fn check_discovered(state: &AppState, found: Discovered) -> AppResult<Verdict> {
    let rp = webauthn(state)?;
    let result = rp.finish_discoverable_authentication_v2(&found.credential, found.ceremony, &found.stored.key);
    verdict(state, &found.user, &found.credential, result).await
}

/// The verdict on a verified (or refused) assertion, with the update to store when it
/// is consumed.
async fn verdict(
    state: &AppState,
    user: &UserRow,
    credential: &PublicKeyCredential,
    result: Result<webauthn_rs::prelude::AuthenticationResult, WebauthnError>,
) -> AppResult<Verdict> {
    let result = match result {
        Ok(r) => r,
        Err(WebauthnError::CredentialPossibleCompromise) => {
            cloned(state, user, &credential_id_text(credential.get_credential_id())).await?;
            return Ok(Verdict::Wrong);
        }
        Err(e) => {
            tracing::info!(error = %e, "passkey assertion refused");
            return Ok(Verdict::Wrong);
        }
    };
    // Passkeys are registered and asked for with user verification required;
    // webauthn-rs enforces it, and this keeps it true should that ever change.
    if !result.user_verified() {
        return Ok(Verdict::Wrong);
    }
    let credential_id = credential_id_text(result.cred_id().as_ref());
    let Some(row) = pdb::find_by_credential(&state.db().pool, &credential_id).await? else {
        return Ok(Verdict::Wrong);
    };
    if row.user_id != user.id {
        return Ok(Verdict::Wrong);
    }
    let counter = i64::from(result.counter());
    // The stored counter is the one both nodes write: webauthn-rs checked the copy
    // inside the passkey, this checks the row, which a parallel sign-in may have moved.
    if (counter > 0 || row.sign_count > 0) && counter <= row.sign_count {
        cloned(state, user, &credential_id).await?;
        return Ok(Verdict::Wrong);
    }
    let mut stored = decrypt(state, row)?;
    stored.key.update_credential(&result);
    let json = serde_json::to_vec(&stored.key).map_err(|e| internal("passkey", e))?;
    Ok(Verdict::Valid(Spend::Passkey {
        id: stored.row.id.clone(),
        previous_count: stored.row.sign_count,
        count: counter,
        passkey_enc: state.keys().encrypt_secret(&json, &stored.row.id),
        backup_state: result.backup_state(),
        backup_eligible: result.backup_eligible() || stored.row.backup_eligible != 0,
    }))
}

/// An authenticator presented a signature counter at or below the stored one: a copy of
/// the key is in use somewhere. Audited for admins; the user is told nothing more than
/// for any refused passkey.
async fn cloned(state: &AppState, user: &UserRow, credential_id: &str) -> AppResult<()> {
    tracing::warn!(user_id = %user.id, "passkey signature counter went backwards: possible cloned authenticator");
    super::audit_user(state, user, "passkey.counter_regression", serde_json::json!({ "credential_id": credential_id }))
        .await
}
