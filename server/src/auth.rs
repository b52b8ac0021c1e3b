//! Credentials and sessions: argon2id password hashes, random tokens stored only as
//! hashes, and the extractor that turns a session cookie into a signed-in user.
//!
//! Nothing here may log a password, a token or a hash.

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum_extra::extract::CookieJar;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::sync::{Arc, LazyLock};

use twofold_policy::Strength;
use twofold_policy::wire::SecondFactorMethod;

use crate::app::AppState;
use crate::db::{self, UserRow};
use crate::error::AppError;

/// OWASP's argon2id parameters (19 MiB, 2 passes, 1 lane): about 30 ms per hash on one
/// core of a small machine, which is the whole cost of a password sign-in.
fn hasher() -> Argon2<'static> {
    match Params::new(19_456, 2, 1, None) {
        Ok(params) => Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
        // The constants above are valid; the default is argon2id with the same values.
        Err(_) => Argon2::default(),
    }
}

/// The hashing threads ([`crate::threads`]). Each argon2id run takes 19 MiB and a whole
/// core. Keeping the runs on these few threads (rather than the blocking pool's
/// hundreds) also keeps the freed 19 MiB blocks in a few allocator arenas, where the
/// next hash reuses them: the memory the hashing holds stays at about 19 MiB per core
/// instead of growing with every thread that ever hashed.
static HASHERS: LazyLock<std::io::Result<crate::threads::Pool>> =
    LazyLock::new(|| crate::threads::Pool::start("argon2", Some((HASHING_MEMORY_KEPT_IDLE, release_hashing_memory))));

/// Runs `work` on a hashing thread and waits for its result without blocking the async
/// workers. A request that is cancelled before its turn costs no hashing.
async fn on_hashing_thread<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
    let hashers = HASHERS.as_ref().map_err(|e| anyhow::anyhow!("cannot start the hashing threads: {e}"))?;
    crate::metrics::argon2_queued();
    hashers.run(crate::metrics::argon2_started, work).await
}

/// Hashes a password on a hashing thread so a sign-in burst cannot stall the async
/// workers.
pub async fn hash_password(password: String) -> anyhow::Result<String> {
    on_hashing_thread(move || hash_password_blocking(&password)).await?
}

/// What `PasswordHasher::hash_password` does with [`hasher`], in this thread's reused
/// working memory (see [`ARGON2_MEMORY`]).
pub fn hash_password_blocking(password: &str) -> anyhow::Result<String> {
    let mut salt_bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut salt_bytes);
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let argon2 = hasher();
    let params = argon2.params().clone();
    let mut computed = [0u8; Params::DEFAULT_OUTPUT_LEN];
    in_hashing_memory(params.block_count(), |blocks| {
        argon2.hash_password_into_with_memory(password.as_bytes(), &salt_bytes, &mut computed, blocks)
    })
    .ok_or_else(|| anyhow::anyhow!("the hashing memory is in use"))?
    .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| anyhow::anyhow!("parameters: {e}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&computed).map_err(|e| anyhow::anyhow!("output: {e}"))?),
    };
    Ok(hash.to_string())
}

/// Verifies on a hashing thread. A malformed stored hash counts as a mismatch (and is
/// logged without its value) rather than an error the client could tell apart.
pub async fn verify_password(password: String, phc: String) -> anyhow::Result<bool> {
    on_hashing_thread(move || verify_password_blocking(&password, &phc)).await
}

pub fn verify_password_blocking(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        tracing::error!("a stored password hash cannot be parsed");
        return false;
    };
    match verify_in_reused_memory(password, &parsed) {
        Some(matches) => matches,
        None => {
            tracing::error!("a stored password hash cannot be used");
            false
        }
    }
}

thread_local! {
    /// The argon2 working memory of each hashing thread, allocated on its first
    /// verification and reused by every later one until the thread has been idle for
    /// [`HASHING_MEMORY_KEPT_IDLE`]: a fresh 19 MiB per verification would be handed
    /// back to the allocator, which keeps several of them per thread.
    static ARGON2_MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// How long a hashing thread keeps its working memory with no password to check. The
/// memory is the largest single holding of the process (19 MiB per core); a burst of
/// sign-ins reuses it, and a quiet server gives it back. Allocating it again costs page
/// faults once per burst, about a millisecond.
const HASHING_MEMORY_KEPT_IDLE: std::time::Duration = std::time::Duration::from_secs(5);

/// Gives this thread's argon2 working memory back to the allocator; the hashing threads
/// call it when idle, and the allocator's background thread hands the pages back to the
/// system within its decay time (`dirty_decay_ms` in `.cargo/config.toml`).
pub fn release_hashing_memory() {
    ARGON2_MEMORY.with(|memory| {
        if let Ok(mut blocks) = memory.try_borrow_mut() {
            *blocks = Vec::new();
        }
    });
}

/// What `PasswordVerifier::verify_password` does, with the parameters, salt and
/// algorithm of the stored hash, but in this thread's reused memory. `None` when the
/// stored hash is not a usable argon2 hash.
fn verify_in_reused_memory(password: &str, stored: &PasswordHash<'_>) -> Option<bool> {
    let algorithm = Algorithm::try_from(stored.algorithm).ok()?;
    let version = stored.version.map_or(Ok(Version::V0x13), Version::try_from).ok()?;
    let params = Params::try_from(stored).ok()?;
    let expected = stored.hash?;
    let mut salt_buf = [0u8; 64];
    let salt = stored.salt?.decode_b64(&mut salt_buf).ok()?;
    let mut computed = vec![0u8; expected.len()];
    let blocks_needed = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    in_hashing_memory(blocks_needed, |blocks| {
        argon2.hash_password_into_with_memory(password.as_bytes(), salt, &mut computed, blocks)
    })?
    .ok()?;
    Some(subtle::ConstantTimeEq::ct_eq(computed.as_slice(), expected.as_bytes()).into())
}

/// Runs `work` with `blocks_needed` blocks of this thread's argon2 working memory.
/// `None` when the memory is already borrowed (a hash cannot run inside a hash).
fn in_hashing_memory<T>(blocks_needed: usize, work: impl FnOnce(&mut [Block]) -> T) -> Option<T> {
    ARGON2_MEMORY.with(|memory| {
        let mut blocks = memory.try_borrow_mut().ok()?;
        if blocks.len() < blocks_needed {
            if blocks.capacity() < blocks_needed {
                *blocks = Vec::with_capacity(blocks_needed);
            }
            blocks.resize(blocks_needed, Block::default());
        }
        Some(work(blocks.get_mut(..blocks_needed)?))
    })
}

/// A new random token: 256 bits, URL-safe base64.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Tokens are stored as SHA-256: the lookup is by hash, so a stolen table yields
/// nothing usable and no comparison of secrets happens in application code.
pub fn token_hash(token: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

/// A random security stamp; any change rotates it.
pub fn new_stamp() -> String {
    new_token()
}

/// Compares security stamps in constant time. Stamps are not secrets to their owner,
/// but no timing in this service should depend on secret-derived data.
pub fn stamps_equal(a: &str, b: &str) -> bool {
    subtle::ConstantTimeEq::ct_eq(a.as_bytes(), b.as_bytes()).into()
}

/// What last made a session fresh: the password alone (for a user with no second
/// factor), or the password and a second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Password,
    Factor(SecondFactorMethod),
}

impl Freshness {
    pub fn as_str(self) -> &'static str {
        match self {
            Freshness::Password => "password",
            Freshness::Factor(m) => m.as_str(),
        }
    }

    /// Sessions made fresh before methods were recorded count as the password alone.
    pub fn parse(s: Option<&str>) -> Self {
        s.and_then(SecondFactorMethod::parse).map_or(Freshness::Password, Freshness::Factor)
    }

    /// `None` for the password alone, which is below every factor.
    pub fn strength(self) -> Option<Strength> {
        match self {
            Freshness::Password => None,
            Freshness::Factor(m) => Some(m.strength()),
        }
    }
}

/// What a session may still reach while its user must replace a password an admin set:
/// who am I, the account page, the password change itself, and signing out.
const PASSWORD_CHANGE_PATHS: &[&str] =
    &["/api/auth/me", "/api/auth/session", "/api/auth/sign-out", "/api/account", "/api/account/password"];

/// A request made by a signed-in user.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: UserRow,
    pub token_hash: String,
    pub auth_methods: String,
    pub session_created_at: i64,
    pub reauthenticated_at: Option<i64>,
    pub reauth_method: Option<String>,
    /// When and with what the session last proved a second factor (sign-in, step-up,
    /// reauthentication): what an application's rule is checked against.
    pub second_factor_at: Option<i64>,
    pub second_factor_method: Option<String>,
    /// The session's public id: the `sid` claim of ID tokens, and the id the session
    /// lists show (`None` only for sessions from before it existed).
    pub sid: Option<String>,
}

impl Authenticated {
    /// What made this session fresh, if it is fresh now.
    pub fn freshness(&self, state: &AppState) -> Option<Freshness> {
        let window = i64::from(state.config().reauth_minutes) * 60_000;
        self.reauthenticated_at
            .filter(|at| state.now() - at < window)
            .map(|_| Freshness::parse(self.reauth_method.as_deref()))
    }

    /// Refuses a change to the user's own security profile unless the session proved
    /// itself within the configured window at least as strongly as the user's strongest
    /// factor: a weaker factor (or a stolen session alone) never changes a stronger one.
    pub fn require_fresh(&self, state: &AppState) -> Result<(), AppError> {
        match self.freshness(state) {
            Some(f) if f.strength() >= self.user.strongest_factor() => Ok(()),
            _ => Err(AppError::ReauthenticationRequired),
        }
    }

    /// Until when sensitive changes are allowed, if they are now.
    pub fn fresh_until(&self, state: &AppState) -> Option<i64> {
        self.require_fresh(state).ok()?;
        let window = i64::from(state.config().reauth_minutes) * 60_000;
        self.reauthenticated_at.map(|at| at + window)
    }
}

/// Only touch `last_seen_at` once a minute per session: a write on every request would
/// make reads contend for the SQLite write lock.
const TOUCH_INTERVAL_MS: i64 = 60_000;

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let jar = CookieJar::from_headers(&parts.headers);
        let cookie = jar.get(state.config().session_cookie_name()).ok_or(AppError::Unauthenticated)?;
        let hash = token_hash(cookie.value());
        let now = state.now();
        let mut session = state.cache().session(state.db(), &hash).await?.ok_or(AppError::Unauthenticated)?;
        if !session_live(state, &session, now) {
            // Ended as remembered; the stored row decides, since another node may have
            // used (and touched) the session in the last moment.
            state.cache().forget_session(&hash);
            session = state.db().session(&hash).await?.map(Arc::new).ok_or(AppError::Unauthenticated)?;
            if !session_live(state, &session, now) {
                let hash = hash.clone();
                state.db().write_one(move |c| Box::pin(async move { db::delete_session(c, &hash).await })).await?;
                return Err(AppError::Unauthenticated);
            }
        }
        if session.user.must_change_password != 0 && !PASSWORD_CHANGE_PATHS.contains(&parts.uri.path()) {
            return Err(AppError::PasswordChangeRequired);
        }
        if now - session.last_seen_at >= TOUCH_INTERVAL_MS {
            let hash = hash.clone();
            // Its own row alone, so other users' sessions stay in memory.
            let touches = db::Touches::activity_of(&session.user_id);
            state
                .db()
                .write_one_touching(touches, move |c| Box::pin(async move { db::touch_session(c, &hash, now).await }))
                .await?;
        }
        let session = Arc::unwrap_or_clone(session);
        Ok(Authenticated {
            user: session.user,
            token_hash: hash,
            auth_methods: session.auth_methods,
            session_created_at: session.created_at,
            reauthenticated_at: session.reauthenticated_at,
            reauth_method: session.reauth_method,
            second_factor_at: session.second_factor_at,
            second_factor_method: session.second_factor_method,
            sid: session.sid,
        })
    }
}

/// Whether a session may still be used at `now`: not past its end, not idle too long,
/// and made under its user's current security profile. The stamp comparison is what
/// ends sessions made before a change of the user's security profile; both values are
/// random and not secret to their owner, but compare in constant time anyway so no
/// timing ever depends on secret-derived data.
fn session_live(state: &AppState, session: &db::SessionRow, now: i64) -> bool {
    let idle_ms = i64::from(state.config().session_idle_minutes) * 60_000;
    now < session.expires_at
        && now - session.last_seen_at < idle_ms
        && stamps_equal(&session.security_stamp, &session.user.security_stamp)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    #[test]
    fn hashes_are_argon2id_phc_and_verify() {
        let phc = hash_password_blocking("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        let parsed = PasswordHash::new(&phc).unwrap();
        assert!(hasher().verify_password(b"correct horse", &parsed).is_ok());
        assert!(hasher().verify_password(b"wrong horse", &parsed).is_err());
    }

    #[test]
    fn verification_follows_the_stored_parameters_and_rejects_broken_hashes() {
        // A hash made with other parameters (an older configuration) still verifies,
        // in the same reused memory as the current ones, before and after.
        let other = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(8_192, 1, 1, Some(16)).unwrap());
        let salt = SaltString::encode_b64(b"sixteen byte slt").unwrap();
        let old = other.hash_password(b"old horse", &salt).unwrap().to_string();
        let current = hash_password_blocking("current horse").unwrap();
        assert!(verify_password_blocking("current horse", &current));
        assert!(verify_password_blocking("old horse", &old));
        assert!(!verify_password_blocking("old horsE", &old));
        assert!(verify_password_blocking("current horse", &current));
        // argon2i and argon2d hashes follow their own algorithm.
        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x13, Params::new(8_192, 1, 1, None).unwrap());
        let i_hash = argon2i.hash_password(b"eye horse", &salt).unwrap().to_string();
        assert!(verify_password_blocking("eye horse", &i_hash));
        assert!(!verify_password_blocking("eye horse", &i_hash.replacen("argon2i", "argon2id", 1)));
        // Anything that is not a complete argon2 hash fails closed.
        for broken in
            ["", "plain", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ", &current[..current.len() - 2], "$2b$12$abc"]
        {
            assert!(!verify_password_blocking("current horse", broken), "{broken}");
        }
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), token_hash(&b));
    }
}
