//! Verifications of an authenticator code in one statement, on any node
//! (PostgreSQL, where each statement is a round trip): the statement
//! ([`db::verify_opened`]) counts the attempt and, for a right code, completes the
//! sign-in, instead of the general way's two (the read of the pending sign-in that
//! counts the lockout's attempt, then the completion). BENCHMARKS.md, "What a
//! verification's first statement costs PostgreSQL", measured that first statement as
//! a fifth of the step's rate, nearly all of it a statement's cost rather than its
//! write's.
//!
//! The first statement reads what checking a code needs: the user, and the
//! authenticator's secret. Here neither is read first. The pending sign-in's token
//! names its user, under a signature of the server's key, so a forged token cannot
//! spend another user's rate limit. The password step, which holds the decrypted
//! secret for a moment anyway, stores with the pending sign-in a keyed tag of the code
//! of each time step of its life ([`tags`], `Keys::step_tag`): an HMAC, under a key
//! derived from `secret_key`, of the sign-in's token hash, the step and that step's
//! code. A verification sends the typed code's tags at the steps [`crate::totp::verify`]
//! would try, and the statement finds the step whose stored tag matches. A leaked
//! database gives no code (making a tag needs the key, which also opens the secrets),
//! and the statement's comparison of tags tells a guesser nothing without it.
//!
//! Nothing here decides on its own. The statement checks again, on the rows as they
//! are, everything the general way checks (the sign-in open at the second factor, of
//! the user's security stamp, the user neither locked nor at the limit, the
//! authenticator still the one the tags were computed from, the time step not yet
//! used), and where any of it fails it writes nothing and the request goes the general
//! way, which answers with the reason. What the lockout needs holds as there:
//!
//! - No code's outcome is given without its count: the one statement is the reservation
//!   for right and wrong codes alike, counting a wrong code and completing with a right
//!   one under the user's row lock.
//! - A refusal sends right and wrong codes down the same way: the statement, then the
//!   general way. A locked-out guesser learns nothing from which code was right,
//!   neither from the answer nor from the number of round trips.
//! - The node never judges a step used: the statement consumes a matched step only past
//!   the stored one.
//! - The policy is resolved from the scope's settings as the node keeps them, never
//!   taken from the password step's. The user's own inputs (tenant, 2FA switch, group
//!   rules) come from the token's [`Claim`] where it has one: what the password step
//!   read for a user in no group, which the statement holds against the user's row as
//!   it is (the switch and tenant again under the row's lock), so a claim that no longer
//!   holds writes nothing. Where the node keeps the user's inputs in memory
//!   (`cache::subject`, as the effective-policy read resolves them: a node that read
//!   them lately, such as the one that served the password to a member of a group),
//!   those are used and no claim is sent; without either (a member of a group, on
//!   another node) the node reads them first.
//!
//! A sign-in whose steps' tags do not cover the time of the verification (a verifying
//! node's clock far from the opening one's, a sign-in living longer than [`MOST_STEPS`]),
//! was opened under another key, or was opened before its tags existed goes the general
//! way.

use twofold_policy::wire::{SecondFactorMethod as M, VerifyRequest};

use super::{ClientInfo, Completed, Outcome, lockout, session};
use crate::app::AppState;
use crate::auth::token_hash;
use crate::db::factors::StepTags;
use crate::db::{self, CompleteSignIn, TAGGED_STEPS, VerifyOpened};
use crate::error::AppResult;
use crate::factors;
use crate::notify::Notice;
use crate::ratelimit::Class;
use crate::secrets::Keys;
use crate::totp;
use sha2::Digest;

/// Steps before the one a sign-in opens at that its tags also cover, beyond the skew
/// [`crate::totp::verify`] allows: another node's clock may be a little behind.
const EARLIER_STEPS: i64 = 2;

/// The most steps a sign-in keeps tags for: 32 minutes of 30-second steps, three times
/// the default `pending_sign_in_minutes`. A verification past them goes the general way.
pub const MOST_STEPS: i64 = 64;

/// The length of a time step in milliseconds.
const STEP_MS: i64 = totp::STEP_SECONDS as i64 * 1000;

/// What the password step read of a user's policy inputs, carried in the pending
/// sign-in's token: their tenant (none for the host's users) and their 2FA switch. Made
/// only for a user in no group, whose inputs are then all on their row. A claim decides
/// nothing by itself: the statement compares it with the user's row as it is, and a
/// verification whose claim no longer holds writes nothing and goes the general way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub tenant_id: Option<String>,
    pub two_factor_enabled: bool,
}

impl Claim {
    /// The claim of a user's inputs as read by the password step, `None` for a member
    /// of any group (their rules are not on the row a statement can compare).
    pub fn of(user: &db::UserRow, in_groups: bool) -> Option<Self> {
        (!in_groups)
            .then(|| Self { tenant_id: user.tenant_id.clone(), two_factor_enabled: user.two_factor_enabled != 0 })
    }

    /// The policy inputs claimed: the tenant and switch, and no group rules.
    fn subject(&self) -> crate::db::groups::Subject {
        crate::db::groups::Subject {
            tenant_id: self.tenant_id.as_deref().map(std::sync::Arc::from),
            two_factor_enabled: self.two_factor_enabled,
            groups: Vec::new(),
        }
    }

    /// `-` for none, else the switch (`0` or `1`) and the tenant's id (empty for the host).
    fn encode(claim: Option<&Self>) -> String {
        claim.map_or_else(
            || "-".to_owned(),
            |c| format!("{}{}", u8::from(c.two_factor_enabled), c.tenant_id.as_deref().unwrap_or("")),
        )
    }

    fn decode(text: &str) -> Option<Self> {
        let (flag, tenant) = (text.get(..1)?, text.get(1..)?);
        let two_factor_enabled = match flag {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        Some(Self { tenant_id: (!tenant.is_empty()).then(|| tenant.to_owned()), two_factor_enabled })
    }
}

/// A new pending sign-in token of `user_id`: the user, the claim of their policy inputs
/// and a random part, signed under the server's key (`Keys::sign_token`).
pub fn new_token(keys: &Keys, user_id: &str, claim: Option<&Claim>) -> String {
    keys.sign_token(&format!("{user_id}.{}.{}", Claim::encode(claim), crate::auth::new_token()))
}

/// The user a pending sign-in token names and the claim of their inputs it carries, if
/// its signature holds.
fn named_by(keys: &Keys, token: &str) -> Option<(String, Option<Claim>)> {
    let inner = keys.verify_signed_token(token)?;
    // The random part has no dot, and the ids this server writes have none either.
    let (named, _) = inner.rsplit_once('.')?;
    let (user_id, claim) = named.split_once('.')?;
    Some((user_id.to_owned(), Claim::decode(claim)))
}

/// The tags a pending sign-in (its token hash `hash`, open from `now` until
/// `expires_at`) keeps of the codes of `user_id`'s authenticator, whose secret is
/// `secret_enc` as stored. `None` where they cannot be made: the verifications then go
/// the general way, which answers for such a secret as it does for any.
pub fn tags(keys: &Keys, user_id: &str, secret_enc: &str, hash: &str, now: i64, expires_at: i64) -> Option<StepTags> {
    let secret = keys.decrypt_secret(secret_enc, user_id).ok()?;
    let skew = totp::SKEW_STEPS as i64;
    let from = (now / STEP_MS - skew - EARLIER_STEPS).max(0);
    let count = (expires_at / STEP_MS + skew - from + 1).clamp(0, MOST_STEPS);
    let codes = totp::codes_of_steps(&secret, from.unsigned_abs(), count.unsigned_abs());
    if codes.is_empty() {
        return None;
    }
    let mut tags = Vec::with_capacity(codes.len() * crate::secrets::STEP_TAG_BYTES);
    for (step, code) in (from..).zip(&codes) {
        tags.extend_from_slice(&keys.step_tag(hash, step, code));
    }
    let secret = sha2::Sha256::digest(secret_enc.as_bytes()).to_vec();
    Some(StepTags { tags, from, key: keys.current_id().to_owned(), secret })
}

/// The verification of an authenticator code by `token`'s sign-in in one statement,
/// where the database is PostgreSQL; `None` sends the request the general way
/// (another method, a token that names no user, a malformed code, a refusal of the
/// statement). Counted in the sign-in metrics as the general way counts.
pub async fn verify(
    app: &AppState,
    token: &str,
    req: &VerifyRequest,
    client: &ClientInfo,
) -> Option<AppResult<Outcome>> {
    if req.method != M::Authenticator || !kept_by(app.db()) {
        return None;
    }
    // A malformed code goes the general way, which refuses it as it always has.
    let code = totp::typed_code(&req.code)?;
    let (user_id, claim) = named_by(app.keys(), token)?;
    let now = app.now();
    if let Err(limited) = app.limits().by_account(Class::Verify, &user_id, now) {
        return Some(Err(limited));
    }
    let result = match settle(app, &token_hash(token), &user_id, claim, &code, req, client, now).await {
        Ok(None) => {
            // The general way counts this request against the limit again.
            app.limits().give_back(Class::Verify, &user_id);
            return None;
        }
        Ok(Some(outcome)) => Ok(outcome),
        Err(refused) => Err(refused),
    };
    crate::metrics::sign_in(M::Authenticator.as_str(), crate::metrics::outcome_of(&result, Outcome::label));
    Some(result)
}

/// Sends the one statement with the typed code's tags; `Ok(None)` where the general
/// way must answer.
#[allow(clippy::too_many_arguments)]
async fn settle(
    app: &AppState,
    hash: &str,
    user_id: &str,
    claim: Option<Claim>,
    code: &str,
    req: &VerifyRequest,
    client: &ClientInfo,
    now: i64,
) -> AppResult<Option<Outcome>> {
    // The inputs kept in memory where they are (a node that read them lately), else the
    // claim, which the statement holds against the user's row: no read of the inputs
    // first, which a node that keeps none would otherwise send (BENCHMARKS.md, "The
    // user's policy inputs claimed by the token…"). The password step reads no inputs of
    // a user in no group, so even the node that served it mostly sends the claim.
    let kept = app.cache().kept_subject(app.db(), user_id);
    let claim = claim.filter(|_| kept.is_none());
    let subject = match (kept, &claim) {
        (Some(kept), _) => kept,
        (None, Some(c)) => c.subject(),
        (None, None) => match app.cache().subject(app.db(), user_id).await? {
            Some(read) => read,
            None => return Ok(None),
        },
    };
    let policy =
        super::resolved_with(app, subject.tenant_id.as_deref(), subject.two_factor_enabled, subject.groups, None)
            .await?
            .policy;
    let usable = factors::usable_providers(app, &policy.allowed_providers).authenticator;
    if !usable || M::Authenticator.strength() < policy.required_strength {
        return Ok(None);
    }
    let first_step = now / STEP_MS - totp::SKEW_STEPS as i64;
    let tags: Vec<u8> =
        (first_step..first_step + TAGGED_STEPS).flat_map(|step| app.keys().step_tag(hash, step, code)).collect();
    // Inserted only with a right code's sign-in.
    let browser = (req.remember_browser && session::may_remember(&policy))
        .then(|| session::Remembering::new(&policy, M::Authenticator.strength(), now));
    let session_token = crate::auth::new_token();
    let session_hash = token_hash(&session_token);
    // Random, not derived from the token: it is shown to applications.
    let sid = crate::auth::new_token();
    let verification = VerifyOpened {
        sign_in: CompleteSignIn {
            attempt_id: hash,
            user_id,
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
        first_step,
        tags: &tags,
        key: app.keys().current_id(),
        max_failures: lockout::max_failures(app),
        permanent_after: lockout::permanent_after(app),
        claim: claim.as_ref().map(|c| (c.tenant_id.as_deref(), c.two_factor_enabled)),
    };
    let Some(verified) = app.db().verify_opened_alone(&verification).await? else {
        return Ok(None);
    };
    crate::metrics::verified_in_one_statement();
    let user = verified.user;
    if verified.signed_in {
        let notices = if browser.is_some() { vec![Notice::BrowserRemembered] } else { Vec::new() };
        let completed = Completed {
            user: Box::new(user),
            session_token,
            remember: browser.map(|b| b.cookie(app)),
            recovery_codes: None,
            described: Some(verified.described),
        };
        return Ok(Some(Outcome::SignedIn(session::announce(app, completed, notices))));
    }
    let reservation = lockout::Reservation::counted(user.second_factor_failures, user.consecutive_failures);
    let refused = lockout::failed(app, &user, reservation, M::Authenticator).await?;
    Err(super::lost_to_a_copy(app, &verified.attempt_id, refused).await?)
}

/// Whether `db` opens sign-ins with the tags this module verifies with.
pub(super) fn kept_by(db: &db::Db) -> bool {
    db.backend == db::Backend::Postgres
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token names its user only under the server's key: one edited to name another
    /// user, or made under another key, names nobody, so it spends nothing of that
    /// user's limits before the statement finds no such sign-in.
    #[test]
    fn a_token_names_its_user_only_under_the_servers_key() {
        let keys = Keys::from_bytes([7; 32]);
        let token = new_token(&keys, "alice-id", None);
        assert_eq!(named_by(&keys, &token), Some(("alice-id".to_owned(), None)));
        assert_eq!(named_by(&keys, &token.replacen("alice-id", "bob-id", 1)), None);
        assert_eq!(named_by(&Keys::from_bytes([8; 32]), &token), None);
        assert_eq!(named_by(&keys, "bob-id.-.random"), None);
    }

    /// The claim of a user's inputs comes back as it was made, for a tenant's user and a
    /// host user, and only under the server's key: a token edited to claim another
    /// tenant or the switch off names nobody.
    #[test]
    fn a_token_carries_its_claim_only_under_the_servers_key() {
        let keys = Keys::from_bytes([7; 32]);
        let tenant = Claim { tenant_id: Some("t-1".into()), two_factor_enabled: true };
        let host = Claim { tenant_id: None, two_factor_enabled: false };
        for claim in [&tenant, &host] {
            let token = new_token(&keys, "alice-id", Some(claim));
            assert_eq!(named_by(&keys, &token), Some(("alice-id".to_owned(), Some(claim.clone()))));
        }
        let token = new_token(&keys, "alice-id", Some(&tenant));
        assert_eq!(named_by(&keys, &token.replacen(".1t-1.", ".1t-2.", 1)), None);
        assert_eq!(named_by(&keys, &token.replacen(".1t-1.", ".0t-1.", 1)), None);
        assert_eq!(Claim::decode("x"), None);
        assert_eq!(Claim::decode(""), None);
    }
}
