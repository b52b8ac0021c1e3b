//! Pending sign-ins this node opened, kept in memory with the authenticator their code
//! is checked against, so that on PostgreSQL, where each statement is a round trip, a
//! verification on the node that opened its sign-in is one statement
//! ([`db::verify_opened`]) instead of two (the read of the pending sign-in that counts
//! the lockout's attempt, then the completion). BENCHMARKS.md, "What a verification's
//! first statement costs PostgreSQL", measured that first statement as a fifth of the
//! step's rate, nearly all of it a statement's cost rather than its write's.
//!
//! Nothing here decides on its own. The statement checks again, on the rows as they
//! are, everything the general way checks (the sign-in open at the second factor, of
//! the user's security stamp, the user neither locked nor at the limit, the
//! authenticator still the one the code was checked against, the time step not yet
//! used), and where any of it fails it writes nothing and the request goes the general
//! way, which answers with the reason. What the lockout needs holds as there:
//!
//! - No code's outcome is given without its count: the one statement is the reservation
//!   for right and wrong codes alike (the verdict a parameter), counting a wrong code
//!   and completing with a right one under the user's row lock.
//! - A refusal sends right and wrong codes down the same way: the statement, then the
//!   general way. A locked-out guesser learns nothing from which code was right,
//!   neither from the answer nor from the number of round trips.
//! - The node never judges a step used: a right code is sent with its step whatever
//!   this node last saw, and the statement consumes it only past the stored one.
//! - The policy comes from the policy inputs kept in memory (`cache::subject`), as the
//!   effective-policy read resolves it, never from the password step's.
//!
//! Only the node that opened a sign-in holds it; on any other (or after a restart, or
//! once evicted) the verification goes the general way. Only the encrypted secret is
//! kept, as stored.

use std::sync::Arc;
use std::time::{Duration, Instant};

use twofold_policy::wire::{SecondFactorMethod as M, VerifyRequest};

use super::{ClientInfo, Completed, Outcome, lockout, session};
use crate::app::AppState;
use crate::auth::{new_token, token_hash};
use crate::db::{self, CompleteSignIn, VerifyOpened};
use crate::error::AppResult;
use crate::factors;
use crate::notify::Notice;
use crate::ratelimit::Class;

/// How many open sign-ins a node keeps. A sign-in is verified within seconds of its
/// password step, so this holds many minutes of password steps at the argon2id
/// ceiling; an entry is a few hundred bytes.
const CAPACITY: u64 = 32_768;

/// The pending sign-ins this node opened for users with an authenticator, by the hash
/// of their token. On quick_cache, as the other caches of rows are, each entry holding
/// its own end: lighter than moka's per-entry bookkeeping of lifetimes (the peak
/// memory in BENCHMARKS.md, "A verification in one statement on the node that opened
/// it").
#[derive(Clone)]
pub struct OpenedSignIns {
    entries: Arc<quick_cache::sync::Cache<String, Arc<Opened>>>,
    lifetime: Duration,
}

impl std::fmt::Debug for OpenedSignIns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedSignIns").field("entries", &self.entries.len()).finish()
    }
}

#[derive(Debug)]
struct Opened {
    attempt_id: String,
    user_id: String,
    /// The encrypted secret, as the statement that opened the sign-in read it.
    secret_enc: String,
    /// When the pending sign-in it stands for expires: no longer kept after.
    until: Instant,
}

impl OpenedSignIns {
    /// Entries live no longer than the pending sign-ins they stand for.
    pub fn new(lifetime: Duration) -> Self {
        let capacity = usize::try_from(CAPACITY).unwrap_or(usize::MAX);
        Self { entries: Arc::new(quick_cache::sync::Cache::new(capacity)), lifetime }
    }

    fn get(&self, token_hash: &str) -> Option<Arc<Opened>> {
        let opened = self.entries.get(token_hash)?;
        if opened.until <= Instant::now() {
            self.entries.remove(token_hash);
            return None;
        }
        Some(opened)
    }

    /// Keeps the sign-in of `token_hash`, just opened, with the secret of the user's
    /// confirmed authenticator, as stored.
    pub(super) fn keep(&self, token_hash: String, attempt_id: &str, user_id: &str, secret_enc: String) {
        let opened = Opened {
            attempt_id: attempt_id.to_owned(),
            user_id: user_id.to_owned(),
            secret_enc,
            until: Instant::now() + self.lifetime,
        };
        self.entries.insert(token_hash, Arc::new(opened));
    }

    /// How many sign-ins are kept, for the tests.
    pub fn len(&self) -> u64 {
        self.entries.len() as u64
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The verification of an authenticator code by `token`'s sign-in, if this node opened
/// it and can settle it in one statement; `None` sends the request the general way
/// (another node's sign-in, another method, a refusal of the statement). Counted in
/// the sign-in metrics as the general way counts.
pub async fn verify(
    app: &AppState,
    token: &str,
    req: &VerifyRequest,
    client: &ClientInfo,
) -> Option<AppResult<Outcome>> {
    if req.method != M::Authenticator {
        return None;
    }
    let hash = token_hash(token);
    let opened = app.opened().get(&hash)?;
    let now = app.now();
    if let Err(limited) = app.limits().by_account(Class::Verify, &opened.user_id, now) {
        return Some(Err(limited));
    }
    let result = match settle(app, &hash, &opened, req, client, now).await {
        Ok(None) => {
            // The general way counts this request against the limit again.
            app.limits().give_back(Class::Verify, &opened.user_id);
            return None;
        }
        Ok(Some(outcome)) => Ok(outcome),
        Err(refused) => Err(refused),
    };
    crate::metrics::sign_in(M::Authenticator.as_str(), crate::metrics::outcome_of(&result, Outcome::label));
    Some(result)
}

/// Checks the code against the kept secret and sends the one statement; `Ok(None)`
/// where the general way must answer.
async fn settle(
    app: &AppState,
    hash: &str,
    opened: &Opened,
    req: &VerifyRequest,
    client: &ClientInfo,
    now: i64,
) -> AppResult<Option<Outcome>> {
    let Some(subject) = app.cache().subject(app.db(), &opened.user_id).await? else {
        return Ok(None);
    };
    let policy =
        super::resolved_with(app, subject.tenant_id.as_deref(), subject.two_factor_enabled, subject.groups, None)
            .await?
            .policy;
    let usable = factors::usable_providers(app, &policy.allowed_providers).authenticator;
    if !usable || M::Authenticator.strength() < policy.required_strength {
        return Ok(None);
    }
    let step = factors::authenticator_step(app, &opened.user_id, &opened.secret_enc, &req.code)?;
    // Inserted only with a right code's sign-in.
    let browser = (step.is_some() && req.remember_browser && session::may_remember(&policy))
        .then(|| session::Remembering::new(&policy, M::Authenticator.strength(), now));
    let session_token = new_token();
    let session_hash = token_hash(&session_token);
    // Random, not derived from the token: it is shown to applications.
    let sid = new_token();
    let verification = VerifyOpened {
        sign_in: CompleteSignIn {
            attempt_id: hash,
            user_id: &opened.user_id,
            now,
            methods: "pwd+authenticator",
            method: M::Authenticator.as_str(),
            // The statement consumes the step itself.
            consume: ("", &[]),
            token_hash: &session_hash,
            sid: &sid,
            expires_at: session::session_ends(app, now),
            user_agent: client.user_agent.as_deref(),
            client_ip: client.ip.as_deref(),
            browser: browser.as_ref().map(session::Remembering::row),
        },
        secret_enc: &opened.secret_enc,
        step,
        max_failures: lockout::max_failures(app),
        permanent_after: lockout::permanent_after(app),
    };
    let Some((user, described)) = app.db().verify_opened_alone(&verification).await? else {
        return Ok(None);
    };
    if step.is_some() {
        app.opened().entries.remove(hash);
        let notices = if browser.is_some() { vec![Notice::BrowserRemembered] } else { Vec::new() };
        let completed = Completed {
            user: Box::new(user),
            session_token,
            remember: browser.map(|b| b.cookie(app)),
            recovery_codes: None,
            described: Some(described),
        };
        return Ok(Some(Outcome::SignedIn(session::announce(app, completed, notices))));
    }
    let reservation = lockout::Reservation::counted(user.second_factor_failures, user.consecutive_failures);
    let refused = lockout::failed(app, &user, reservation, M::Authenticator).await?;
    Err(super::lost_to_a_copy(app, &opened.attempt_id, refused).await?)
}

/// Whether `db` opens sign-ins whose verification this module can settle.
pub(super) fn kept_by(db: &db::Db) -> bool {
    db.backend == db::Backend::Postgres
}
