//! The end of the machine: the only code that creates a session, and the remembered
//! browsers that let a sign-in skip the second factor.

use twofold_policy::wire::SecondFactorMethod;
use twofold_policy::{EffectivePolicy, Strength};

use super::lockout;
use super::{ClientInfo, DAY_MS, Pending, Proven};
use crate::app::AppState;
use crate::auth::{self, Freshness, new_token, token_hash};
use crate::db::direct::{Exec, Transaction};
use crate::db::factors::{self as fdb, BrowserRow, NewBrowser};
use crate::db::{self, Backend, NewAudit, NewSession, SignInWrite, UserRow};
use crate::error::{AppError, AppResult};
use crate::factors::lifecycle::{self, FactorKind, NewFactor};
use crate::notify::{self, Notice};

/// A finished sign-in: a new session, maybe a remembered browser.
#[derive(Debug)]
pub struct Completed {
    pub user: Box<UserRow>,
    pub session_token: String,
    /// The signed remember-browser token to set as a cookie, with its lifetime.
    pub remember: Option<(String, i64)>,
    /// Recovery codes, when this sign-in enrolled the user's first factor.
    pub recovery_codes: Option<Vec<String>>,
    /// The user's roles and tenant's names, when the completing statement read them.
    pub described: Option<db::Description>,
}

/// How a pending sign-in ends.
#[derive(Debug)]
pub(super) struct Finish<'a> {
    /// What the session records as its way in, e.g. `pwd+authenticator`.
    pub methods: &'a str,
    /// The second factor to consume, if one was checked.
    pub proven: Option<Proven>,
    /// The factor this sign-in enrolled (proven by `proven`).
    pub enrolled: Option<FactorKind>,
    pub remember: bool,
}

/// Completes a pending sign-in exactly once and creates the session, in one
/// transaction: the factor consumed, the attempt completed, an enrolled factor stored,
/// the session and the remembered browser created together, or none of it. The
/// transaction runs on the writer ([`crate::db::Db::on_writer`]); what follows a refusal
/// (giving an attempt back) and the notices happen after it, on the caller's side.
pub(super) async fn finish(state: &AppState, p: Pending, how: Finish<'_>, client: &ClientInfo) -> AppResult<Completed> {
    let job = {
        let (state, client, methods) = (state.clone(), client.clone(), how.methods.to_owned());
        let Finish { proven, enrolled, remember, .. } = how;
        async move { seal(&state, p, &methods, proven, enrolled, remember, &client).await }
    };
    conclude(state, state.db().on_writer(job).await??).await
}

/// What follows the transaction of a finished sign-in, outside it: the notices, or
/// giving back the attempt of a factor that lost a race.
async fn conclude(state: &AppState, sealed: Sealed) -> AppResult<Completed> {
    match sealed {
        Sealed::Done(completed, notices) => Ok(announce(state, completed, notices)),
        Sealed::Expired(user, proven) => {
            if let Some(proven) = proven {
                let _ = lockout::refund(state, &user, proven.reservation).await?;
            }
            Err(AppError::SignInExpired)
        }
        // Another sign-in consumed this factor first: a race, not a guess.
        Sealed::Lost(user, proven) => Err(proven.lost(state, &user).await?),
    }
}

/// Sends the notices of a completed sign-in.
pub(super) fn announce(state: &AppState, completed: Completed, notices: Vec<Notice>) -> Completed {
    for notice in notices {
        notify::send(state, &completed.user, notice);
    }
    completed
}

/// How [`authenticator_at_once`] ended.
#[derive(Debug)]
pub(super) enum AtOnce {
    SignedIn(Completed),
    /// No attempt could be counted (the user locked, or at the limit with attempts still
    /// being checked): nothing was written and the code was not looked at.
    NotCounted(Box<Pending>),
    /// The code was wrong; its attempt is counted and committed, to be settled.
    Wrong(Box<UserRow>, lockout::Reservation),
    /// The code was right but its step already used (a replay, another tab), or the
    /// sign-in completed by another request: the transaction that counted the attempt
    /// rolled back, so there is nothing to give back.
    Used(lockout::Reservation),
    Expired,
}

/// The check of a typed authenticator code and, when right, the sign-in's completion
/// on a SQLite file's writer, as one job and one transaction: the attempt counted, the
/// authenticator read, the code checked, then the factor consumed and the session
/// minted ([`seal_in`]), where a verification took two trips to the writer and two
/// transactions (the count's, then [`seal`]'s), each waiting for its group's commit. The
/// lockout's order is kept (counted, then checked, then settled), and nothing of any
/// other request runs between them: the writer runs one job at a time. A right code
/// whose step was used meanwhile, or a sign-in another request completed, rolls the
/// count back with the rest instead of giving it back after.
pub(super) async fn authenticator_at_once(
    state: &AppState,
    p: Pending,
    code: &str,
    remember: bool,
    client: &ClientInfo,
) -> AppResult<AtOnce> {
    let job = {
        let (state, client, code) = (state.clone(), client.clone(), code.to_owned());
        async move {
            let now = state.now();
            let mut tx = state.db().begin().await?;
            tx.touches(db::Touches::activity_of(&p.user.id));
            let Some((reservation, authenticator)) = lockout::reserve_in(&mut tx, &state, &p.user, now).await? else {
                return Ok((AtOnce::NotCounted(Box::new(p)), Vec::new()));
            };
            let spend = match crate::factors::check_totp(&state, &p.user, authenticator, &code, false)? {
                crate::factors::Verdict::Valid(spend) => spend,
                // The attempt first, as in `seal_in`: a copy of this request that won
                // completed it, which this transaction sees whether or not its group has
                // committed yet; either way the transaction is rolled back.
                crate::factors::Verdict::Used => {
                    let open = fdb::complete_attempt(&mut tx, &p.attempt.id, now).await?;
                    return Ok((if open { AtOnce::Used(reservation) } else { AtOnce::Expired }, Vec::new()));
                }
                crate::factors::Verdict::Wrong => {
                    tx.commit().await?;
                    return Ok((AtOnce::Wrong(Box::new(p.user), reservation), Vec::new()));
                }
            };
            let proven = Proven { method: SecondFactorMethod::Authenticator, spend, reservation };
            let how = Finish { methods: "pwd+authenticator", proven: Some(proven), enrolled: None, remember };
            // A refusal of `seal_in` returns with the transaction dropped: the count is
            // rolled back with it.
            AppResult::Ok(match seal_in(tx, &state, p, how, &client, now).await? {
                Sealed::Done(completed, notices) => (AtOnce::SignedIn(completed), notices),
                Sealed::Expired(..) => (AtOnce::Expired, Vec::new()),
                Sealed::Lost(_, proven) => (AtOnce::Used(proven.reservation), Vec::new()),
            })
        }
    };
    Ok(match state.db().on_writer(job).await?? {
        (AtOnce::SignedIn(completed), notices) => AtOnce::SignedIn(announce(state, completed, notices)),
        (other, _) => other,
    })
}

/// How the transaction of [`finish`] ended.
enum Sealed {
    Done(Completed, Vec<Notice>),
    /// The attempt was completed by another request (a double submit).
    Expired(Box<UserRow>, Option<Proven>),
    /// The factor was consumed by another request first.
    Lost(Box<UserRow>, Proven),
}

async fn seal(
    state: &AppState,
    p: Pending,
    methods: &str,
    proven: Option<Proven>,
    enrolled: Option<FactorKind>,
    remember: bool,
    client: &ClientInfo,
) -> AppResult<Sealed> {
    let now = state.now();
    let proven = match (state.db().backend, enrolled, proven) {
        (Backend::Postgres, None, Some(proven)) => {
            return seal_at_once(state, p, methods, proven, remember, client).await;
        }
        (_, _, proven) => proven,
    };
    // Enrolling a factor writes through statements that only sqlx runs; every other
    // sign-in's transaction runs direct on a SQLite file (`db::direct`).
    let mut tx = match enrolled {
        Some(_) => Transaction::Sqlx(state.db().begin_write().await?),
        None => state.db().begin().await?,
    };
    // The attempt, the factor (consumed or enrolled, with the first recovery codes), the
    // user row, the session, a remembered browser and the audit event: all the user's
    // own.
    tx.touches(db::Touches::user(&p.user.id));
    seal_in(tx, state, p, Finish { methods, proven, enrolled, remember }, client, now).await
}

/// [`seal`]'s writes in `tx`, a transaction already marked as touching the user.
async fn seal_in(
    mut tx: Transaction,
    state: &AppState,
    p: Pending,
    how: Finish<'_>,
    client: &ClientInfo,
    now: i64,
) -> AppResult<Sealed> {
    let Finish { methods, proven, enrolled, remember } = how;
    // The attempt first: a double submit of one sign-in finds it completed and ends as
    // an expired sign-in, not as a failure that counts towards a lockout.
    if !fdb::complete_attempt(&mut tx, &p.attempt.id, now).await? {
        return Ok(Sealed::Expired(Box::new(p.user), proven));
    }
    let proved = proven.is_some();
    let mut recovery_codes = None;
    let mut freshness = Freshness::Password;
    let mut notices = Vec::new();
    if let Some(proven) = proven {
        if !proven.consume_for_session(&mut tx, now).await? {
            return Ok(Sealed::Lost(Box::new(p.user), proven));
        }
        if let Some(kind) = enrolled {
            recovery_codes =
                lifecycle::add(tx.sqlx()?, state, &p.user, super::new_factor(kind, &proven.spend), None).await?;
            notices.push(Notice::FactorAdded(kind));
        }
        if proven.method == SecondFactorMethod::RecoveryCode {
            notices.push(Notice::RecoveryCodeUsed);
        }
        freshness = Freshness::Factor(proven.method);
    }
    // A session is fresh for sensitive changes when it proved a factor, or when the
    // user has none to prove (a postponed enrolment proves nothing beyond the password).
    // Judged on the user as stored now: enrolment may just have added a factor.
    let fresh = |user: &UserRow| match freshness {
        Freshness::Factor(_) => Some(freshness),
        Freshness::Password => (!user.has_factor()).then_some(freshness),
    };
    let (session_token, user) = mint(&mut tx, state, &p.user.id, methods, proved, client, fresh).await?;
    let remember = if remember {
        notices.push(Notice::BrowserRemembered);
        let strength = freshness.strength().unwrap_or(Strength::OutOfBand);
        Some(remember_browser(&mut tx, state, &user, &p.policy, client, strength).await?)
    } else {
        None
    };
    tx.commit().await?;
    Ok(Sealed::Done(
        Completed { user: Box::new(user), session_token, remember, recovery_codes, described: None },
        notices,
    ))
}

/// [`seal`] for a sign-in that proved a factor and enrols none, on PostgreSQL: the
/// attempt, the factor, the user row, the session, a browser to remember and the audit
/// event written by one statement ([`db::complete_sign_in`]) instead of six, each a
/// round trip there. The same writes and the same refusals, in the same order. The
/// statement is all or nothing by itself, so it needs no transaction.
async fn seal_at_once(
    state: &AppState,
    p: Pending,
    methods: &str,
    proven: Proven,
    remember: bool,
    client: &ClientInfo,
) -> AppResult<Sealed> {
    let now = state.now();
    let token = new_token();
    let hash = token_hash(&token);
    // Random, not derived from the token: it is shown to applications.
    let sid = new_token();
    let (consume, consume_args) = proven.spend.statement(now);
    let browser = remember.then(|| Remembering::new(&p.policy, proven.method.strength(), now));
    let complete = db::CompleteSignIn {
        attempt_id: &p.attempt.id,
        user_id: &p.user.id,
        now,
        methods,
        method: proven.method.as_str(),
        consume: (consume, &consume_args),
        token_hash: &hash,
        sid: &sid,
        expires_at: session_ends(state, now),
        user_agent: client.user_agent.as_deref(),
        client_ip: client.ip.as_deref(),
        browser: browser.as_ref().map(Remembering::row),
    };
    // A refusal wrote nothing.
    let (user, described) = match state.db().complete_sign_in_alone(&complete).await? {
        SignInWrite::Minted(user, described) => (*user, described),
        SignInWrite::AttemptTaken => return Ok(Sealed::Expired(Box::new(p.user), Some(proven))),
        SignInWrite::FactorTaken => return Ok(Sealed::Lost(Box::new(p.user), proven)),
        SignInWrite::UserGone => return Err(AppError::SignInExpired),
    };
    let mut notices = Vec::new();
    if proven.method == SecondFactorMethod::RecoveryCode {
        notices.push(Notice::RecoveryCodeUsed);
    }
    let remember = browser.map(|browser| {
        notices.push(Notice::BrowserRemembered);
        browser.cookie(state)
    });
    let completed = Completed {
        user: Box::new(user),
        session_token: token,
        remember,
        recovery_codes: None,
        described: Some(described),
    };
    Ok(Sealed::Done(completed, notices))
}

/// Completes a pending enrolment with a passkey that passed registration: the attempt
/// completed, the passkey stored (with recovery codes when it is the first factor), the
/// session minted, in one transaction.
pub(super) async fn finish_with_passkey(
    state: &AppState,
    p: Pending,
    registered: crate::factors::passkey::Registered,
    client: &ClientInfo,
) -> AppResult<Completed> {
    let (st, client) = (state.clone(), client.clone());
    let job = async move {
        let state = &st;
        let mut tx = state.db().begin_write().await?;
        tx.touches(db::Touches::user(&p.user.id));
        if !fdb::complete_attempt(&mut tx, &p.attempt.id, state.now()).await? {
            return Ok(Sealed::Expired(Box::new(p.user), None));
        }
        let recovery_codes = lifecycle::add(&mut tx, state, &p.user, NewFactor::Passkey(&registered), None).await?;
        let fresh = |_: &UserRow| Some(Freshness::Factor(SecondFactorMethod::Passkey));
        let (session_token, user) =
            mint(&mut tx, state, &p.user.id, "pwd+enrolled_passkey", true, &client, fresh).await?;
        tx.commit().await?;
        let completed =
            Completed { user: Box::new(user), session_token, remember: None, recovery_codes, described: None };
        AppResult::Ok(Sealed::Done(completed, vec![Notice::FactorAdded(FactorKind::Passkey)]))
    };
    conclude(state, state.db().on_writer(job).await??).await
}

/// A passwordless sign-in: the passkey proved both factors. Consumed and minted in one
/// transaction, like every other sign-in.
pub(super) async fn finish_passwordless(
    state: &AppState,
    user: UserRow,
    policy: &EffectivePolicy,
    proven: Proven,
    remember: bool,
    client: &ClientInfo,
) -> AppResult<Completed> {
    let (st, policy, client) = (state.clone(), *policy, client.clone());
    let job = async move {
        let state = &st;
        let mut tx = state.db().begin().await?;
        if !proven.consume_for_session(&mut tx, state.now()).await? {
            return Ok(Sealed::Lost(Box::new(user), proven));
        }
        let fresh = |_: &UserRow| Some(Freshness::Factor(SecondFactorMethod::Passkey));
        let (session_token, user) = mint(&mut tx, state, &user.id, "passkey", true, &client, fresh).await?;
        let remember = if remember {
            Some(remember_browser(&mut tx, state, &user, &policy, &client, Strength::PhishingResistant).await?)
        } else {
            None
        };
        tx.commit().await?;
        let notices = if remember.is_some() { vec![Notice::BrowserRemembered] } else { Vec::new() };
        let completed =
            Completed { user: Box::new(user), session_token, remember, recovery_codes: None, described: None };
        AppResult::Ok(Sealed::Done(completed, notices))
    };
    conclude(state, state.db().on_writer(job).await??).await
}

/// A session straight after the password: the policy asks for nothing more, or this
/// browser is remembered.
pub(super) async fn finish_after_password(
    state: &AppState,
    user: UserRow,
    methods: &str,
    client: &ClientInfo,
) -> AppResult<Completed> {
    let (st, methods, client) = (state.clone(), methods.to_owned(), client.clone());
    let job = async move {
        let state = &st;
        let mut tx = state.db().begin().await?;
        // The sign-in recorded on the user's row, their session and its audit event.
        tx.touches(db::Touches::activity_of(&user.id));
        let fresh = |user: &UserRow| (!user.has_factor()).then_some(Freshness::Password);
        let (session_token, user) = mint(&mut tx, state, &user.id, &methods, false, &client, fresh).await?;
        tx.commit().await?;
        AppResult::Ok(Completed {
            user: Box::new(user),
            session_token,
            remember: None,
            recovery_codes: None,
            described: None,
        })
    };
    state.db().on_writer(job).await?
}

async fn remember_browser(
    conn: &mut impl Exec,
    state: &AppState,
    user: &UserRow,
    policy: &EffectivePolicy,
    client: &ClientInfo,
    strength: Strength,
) -> AppResult<(String, i64)> {
    let now = state.now();
    let browser = Remembering::new(policy, strength, now);
    let row = browser.row();
    fdb::insert_browser(
        conn,
        &NewBrowser {
            id: row.id,
            token_hash: row.token_hash,
            user_id: &user.id,
            security_stamp: &user.security_stamp,
            created_at: now,
            expires_at: row.expires_at,
            user_agent: client.user_agent.as_deref(),
            strength: row.strength,
        },
    )
    .await?;
    Ok(browser.cookie(state))
}

/// A browser about to be remembered: the token its cookie carries (only the token's
/// hash is stored) and the values of its row.
pub(super) struct Remembering {
    token: String,
    hash: String,
    id: String,
    expires_at: i64,
    lifetime: i64,
    strength: Strength,
}

impl Remembering {
    /// A new browser to remember at `now` under `policy`, with a factor of `strength`.
    pub(super) fn new(policy: &EffectivePolicy, strength: Strength, now: i64) -> Self {
        let token = new_token();
        let lifetime = i64::from(policy.remember_browser_days) * DAY_MS;
        Self {
            hash: token_hash(&token),
            token,
            id: uuid::Uuid::now_v7().to_string(),
            expires_at: now + lifetime,
            lifetime,
            strength,
        }
    }

    /// Its row, for the statement that signs its user in.
    pub(super) fn row(&self) -> db::BrowserToRemember<'_> {
        db::BrowserToRemember {
            id: &self.id,
            token_hash: &self.hash,
            expires_at: self.expires_at,
            strength: self.strength.as_str(),
        }
    }

    /// The cookie's value (the token, signed) and its lifetime.
    pub(super) fn cookie(self, state: &AppState) -> (String, i64) {
        (state.keys().sign_token(&self.token), self.lifetime)
    }
}

/// Whether a browser may be remembered under `policy`. Each remembered browser records
/// the strength of the factor it was remembered with, and is honoured only where that
/// strength still meets the policy ([`browser_still_skips`]).
pub fn may_remember(policy: &EffectivePolicy) -> bool {
    policy.remember_browser_allowed
}

/// Whether a remembered browser still lets `user` skip the second factor under
/// `policy` at `now`: the account page lists exactly these.
pub fn browser_still_skips(row: &BrowserRow, user: &UserRow, policy: &EffectivePolicy, now: i64) -> bool {
    // The current policy's lifetime applies even to browsers remembered under a longer
    // one, so shortening it takes effect at once.
    let policy_end = row.created_at + i64::from(policy.remember_browser_days) * DAY_MS;
    let strength = Strength::parse(&row.strength).unwrap_or(Strength::OutOfBand);
    may_remember(policy)
        && strength >= policy.required_strength
        && row.user_id == user.id
        && auth::stamps_equal(&row.security_stamp, &user.security_stamp)
        && now < row.expires_at
        && now < policy_end
}

/// Whether the remember-browser cookie lets this user skip the second factor now.
pub(super) async fn remembered_browser_valid(
    state: &AppState,
    user: &UserRow,
    policy: &EffectivePolicy,
    cookie: &str,
) -> AppResult<bool> {
    if !may_remember(policy) {
        return Ok(false);
    }
    let Some(token) = state.keys().verify_signed_token(cookie) else {
        return Ok(false);
    };
    let Some(row) = fdb::find_browser(&state.db().pool, &token_hash(&token)).await? else {
        return Ok(false);
    };
    let now = state.now();
    let valid = browser_still_skips(&row, user, policy, now);
    if valid {
        let id = row.id.clone();
        // The user's own remembered browser.
        let touches = db::Touches::activity_of(&user.id);
        state
            .db()
            .write_one_touching(touches, move |c| Box::pin(async move { fdb::touch_browser(c, &id, now).await }))
            .await?;
    }
    Ok(valid)
}

/// When a session that starts at `now` ends, however it is used meanwhile.
pub(super) fn session_ends(state: &AppState, now: i64) -> i64 {
    now + i64::from(state.config().session_max_hours) * 3_600_000
}

/// Creates a session, in the caller's transaction, for a user who has passed every step
/// the policy demands: the only place a session is made, beside its one-statement form
/// on PostgreSQL ([`db::complete_sign_in`], which writes the same rows). The token is new for every
/// session (no fixation), and only its hash is stored. `fresh` records what the sign-in
/// proved, for sensitive changes in the next few minutes; it is asked of the user as
/// stored now, which is returned with the token.
async fn mint(
    conn: &mut impl Exec,
    state: &AppState,
    user_id: &str,
    auth_methods: &str,
    factor_proven: bool,
    client: &ClientInfo,
    fresh: impl FnOnce(&UserRow) -> Option<Freshness>,
) -> AppResult<(String, UserRow)> {
    let token = new_token();
    let hash = token_hash(&token);
    let now = state.now();
    // The stored row, not the caller's copy: enrolment may just have rotated the stamp.
    let user = db::record_sign_in(&mut *conn, user_id, now, auth_methods, factor_proven)
        .await?
        .ok_or(AppError::SignInExpired)?;
    let fresh = fresh(&user);
    db::insert_session(
        &mut *conn,
        &NewSession {
            token_hash: &hash,
            user_id: &user.id,
            security_stamp: &user.security_stamp,
            auth_methods,
            now,
            expires_at: session_ends(state, now),
            user_agent: client.user_agent.as_deref(),
            client_ip: client.ip.as_deref(),
            reauthenticated_at: fresh.map(|_| now),
            reauth_method: fresh.map(Freshness::as_str),
            second_factor_method: match fresh {
                Some(Freshness::Factor(method)) => Some(method.as_str()),
                _ => None,
            },
            // Random, not derived from the token: it is shown to applications.
            sid: &new_token(),
        },
    )
    .await?;
    db::insert_audit(
        &mut *conn,
        &NewAudit {
            at: now,
            actor_user_id: Some(&user.id),
            scope_key: &user.scope_key,
            action: "sign_in.succeeded",
            target: &format!("user:{}", user.id),
            before: None,
            after: Some(serde_json::json!({ "methods": auth_methods })),
        },
    )
    .await?;
    Ok((token, user))
}
