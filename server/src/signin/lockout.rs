//! The second-factor lockout: the one place that reserves an attempt before a code is
//! checked, and settles it afterwards.
//!
//! Reserve-then-verify: an attempt is counted in the database by one conditional
//! statement before any code's outcome is given, so neither parallel requests nor
//! several nodes can get more codes checked than the limit allows. On a SQLite file an
//! authenticator code is counted, checked and settled in one transaction on the writer
//! (`session::authenticator_at_once`): SQLite's write lock, held from the count to the
//! commit, keeps every other write out in between, so the count needs no commit of its
//! own before the check. On PostgreSQL an authenticator code's step is found by the
//! keyed tags the password step stored with the pending sign-in, and one statement
//! (`db::verify_opened`, module `opened`) counts the attempt under the user's row lock
//! and, for a right code, settles it; where the count would be refused it writes
//! nothing and the request goes the general way, right and wrong codes alike, so the
//! answer tells nobody which code was right. A wrong code keeps its reservation (and the
//! request that reaches the limit locks the user, each lock twice as long as the one
//! before); a right code consumed in the completing transaction resets the counts; a
//! right code that another request used first is given back, since it was not a guess.
//! After `lockout_permanent_after` wrong codes in a row second-factor sign-in stays
//! locked until an admin unlocks it.

use twofold_policy::wire::SecondFactorMethod;

use crate::app::AppState;
use crate::db::UserRow;
use crate::db::factors as fdb;
use crate::error::{AppError, AppResult};
use crate::factors::{self, Verdict};

/// A counted attempt, not yet settled.
#[derive(Debug)]
#[must_use = "a reservation is settled by a verdict"]
pub struct Reservation {
    failures: i64,
    consecutive: i64,
}

/// An attempt counted by the statement that read the pending sign-in (PostgreSQL:
/// `db::groups::pending_reserving`), with the user's authenticator as it was then. It is
/// spent by the check it was counted for, or given back ([`Counted::release`]) when the
/// request ends before a code is looked at. One dropped unspent stays counted, which
/// only brings a lock nearer.
#[derive(Debug)]
#[must_use = "a counted attempt is spent by a check or released"]
pub struct Counted {
    reservation: Reservation,
    authenticator: Option<fdb::AuthenticatorRow>,
}

impl Reservation {
    /// The attempt a statement counted with the counts it left
    /// (`db::verify_opened`).
    pub(super) fn counted(failures: i64, consecutive: i64) -> Self {
        Self { failures, consecutive }
    }
}

impl Counted {
    pub fn new((failures, consecutive): (i64, i64), authenticator: Option<fdb::AuthenticatorRow>) -> Self {
        Self { reservation: Reservation { failures, consecutive }, authenticator }
    }

    /// Gives the attempt back: the request was refused before any code was checked
    /// (a limit, a provider not allowed, a sign-in no longer open).
    pub async fn release(self, state: &AppState, user: &UserRow) -> AppResult<()> {
        fdb::refund_attempt(state.db(), &user.id).await?;
        Ok(())
    }
}

pub(super) fn max_failures(state: &AppState) -> i64 {
    i64::from(state.config().lockout_max_failures)
}

pub(super) fn permanent_after(state: &AppState) -> i64 {
    i64::from(state.config().lockout_permanent_after)
}

/// Whether (and how) `user` is locked now, from the row as read.
pub fn lock_state(state: &AppState, user: &UserRow) -> Option<AppError> {
    if user.consecutive_failures >= permanent_after(state) {
        return Some(AppError::LockedUntilUnlocked);
    }
    match user.locked_until {
        Some(until) if until > state.now() => Some(AppError::LockedOut { retry_after_ms: until - state.now() }),
        _ => None,
    }
}

/// Refuses while the user is locked (for requests that check no code, such as sends).
pub fn ensure_not_locked(state: &AppState, user: &UserRow) -> AppResult<()> {
    lock_state(state, user).map_or(Ok(()), Err)
}

/// How often, and how far apart, a reservation refused only because other attempts of
/// the same user are still being checked is tried again: those settle in milliseconds,
/// and a double submit of a right code must end as one sign-in, not as a refusal.
const IN_FLIGHT_RETRIES: u32 = 25;
const IN_FLIGHT_WAIT: std::time::Duration = std::time::Duration::from_millis(10);

/// The attempt `counted` with the pending sign-in's read, or else one counted now
/// ([`reserve`]).
pub async fn counted_or_reserve(state: &AppState, user: &UserRow, counted: Option<Counted>) -> AppResult<Reservation> {
    match counted {
        Some(counted) => Ok(counted.reservation),
        None => reserve(state, user).await,
    }
}

/// Counts one attempt for `user`, or refuses when locked or at the limit.
pub async fn reserve(state: &AppState, user: &UserRow) -> AppResult<Reservation> {
    let reserve = |now| async move {
        let counts =
            fdb::reserve_attempt(state.db(), &user.id, now, max_failures(state), permanent_after(state)).await?;
        anyhow::Ok(counts.map(|counts| (counts, ())))
    };
    Ok(reserve_with(state, user, reserve).await?.0)
}

/// [`counted_or_reserve`] for an authenticator code: also returns the user's
/// authenticator, read when the attempt was counted
/// ([`fdb::reserve_attempt_for_authenticator`]).
pub async fn reserve_for_authenticator(
    state: &AppState,
    user: &UserRow,
    counted: Option<Counted>,
) -> AppResult<(Reservation, Option<fdb::AuthenticatorRow>)> {
    if let Some(counted) = counted {
        return Ok((counted.reservation, counted.authenticator));
    }
    let reserve = |now| async move {
        fdb::reserve_attempt_for_authenticator(state.db(), &user.id, now, max_failures(state), permanent_after(state))
            .await
    };
    reserve_with(state, user, reserve).await
}

/// Tries `reserve` until it counts the attempt, or refuses for the reason the user row
/// now gives.
async fn reserve_with<T, F, Fut>(state: &AppState, user: &UserRow, reserve: F) -> AppResult<(Reservation, T)>
where
    F: Fn(i64) -> Fut,
    Fut: Future<Output = anyhow::Result<Option<((i64, i64), T)>>>,
{
    let pool = &state.db().pool;
    for _ in 0..IN_FLIGHT_RETRIES {
        if let Some(((failures, consecutive), extra)) = reserve(state.now()).await? {
            return Ok((Reservation { failures, consecutive }, extra));
        }
        // Refused: say why, from the row as it is now.
        let current = crate::db::get_user(pool, &user.id).await?.ok_or(AppError::SignInExpired)?;
        if let Some(locked) = lock_state(state, &current) {
            return Err(locked);
        }
        tokio::time::sleep(IN_FLIGHT_WAIT).await;
    }
    // Still at the limit with earlier attempts unsettled: no lock yet, so a short wait.
    Err(AppError::RateLimited { retry_after_ms: 1000 })
}

/// Gives the attempt back: the code was right but already used (a replay, a double
/// submit, a race lost to another tab), which is no guess. Answers as a wrong code.
pub async fn refund(state: &AppState, user: &UserRow, reservation: Reservation) -> AppResult<AppError> {
    fdb::refund_attempt(state.db(), &user.id).await?;
    Ok(not_a_guess(state, reservation))
}

/// The answer to a right code that was already used, once its attempt is given back
/// ([`refund`], or the transaction that counted it rolled back): a wrong code's, with
/// the attempts left as they were before it.
pub fn not_a_guess(state: &AppState, reservation: Reservation) -> AppError {
    let left = max_failures(state) - (reservation.failures - 1);
    AppError::InvalidCode { attempts_left: u32::try_from(left).unwrap_or(0) }
}

/// [`reserve_for_authenticator`] inside `tx`, a transaction on a SQLite file's writer
/// that goes on to check the code and settle it (`session::authenticator_at_once`):
/// counts one attempt for `user` and reads their authenticator, or `None` where
/// [`reserve`] would wait for attempts still being checked or refuse, which the caller
/// leaves to it.
pub(super) async fn reserve_in(
    tx: &mut impl crate::db::direct::Exec,
    state: &AppState,
    user: &UserRow,
    now: i64,
) -> AppResult<Option<(Reservation, Option<fdb::AuthenticatorRow>)>> {
    let counted = fdb::reserve_in(tx, &user.id, now, max_failures(state), permanent_after(state)).await?;
    Ok(counted.map(|((failures, consecutive), authenticator)| (Reservation { failures, consecutive }, authenticator)))
}

/// Keeps the attempt as a failure, locks when it reached the limit, audits, and returns
/// the error to answer with.
pub async fn failed(
    state: &AppState,
    user: &UserRow,
    reservation: Reservation,
    method: SecondFactorMethod,
) -> AppResult<AppError> {
    crate::metrics::second_factor_failed(method.as_str());
    let now = state.now();
    let max = max_failures(state);
    let mut tx = state.db().begin_write().await?;
    // The user's own row: a stream of wrong codes for some accounts does not send every
    // other user's session back to the database.
    tx.touches(crate::db::Touches::activity_of(&user.id));
    let locked = if reservation.failures >= max {
        let config = state.config();
        fdb::lock_if_at_limit(&mut tx, &user.id, max, |earlier| now + config.lockout_ms(earlier)).await?
    } else {
        None
    };
    // The failure and the lock it placed are audited in the transaction that writes
    // them: a lock is never left without its record, whatever stops the process.
    let forever = reservation.consecutive >= permanent_after(state);
    let mut events = vec![(
        "sign_in.failed",
        serde_json::json!({ "factor": method.as_str(), "failures": reservation.failures,
            "consecutive_failures": reservation.consecutive }),
    )];
    if forever {
        events.push((
            "user.locked_out",
            serde_json::json!({ "until_unlocked": true, "consecutive_failures": reservation.consecutive }),
        ));
    } else if let Some((until, lockouts)) = locked {
        events.push(("user.locked_out", serde_json::json!({ "until_ms": until, "lockouts": lockouts })));
    }
    let target = factors::user_target(user);
    for (action, after) in events {
        crate::db::insert_audit(&mut tx, &factors::user_event(user, now, action, &target, after)).await?;
    }
    tx.commit().await?;
    if forever {
        crate::notify::send(state, user, crate::notify::Notice::Locked);
        crate::metrics::locked_out(true);
        return Ok(AppError::LockedUntilUnlocked);
    }
    if let Some((until, _)) = locked {
        crate::notify::send(state, user, crate::notify::Notice::Locked);
        crate::metrics::locked_out(false);
        return Ok(AppError::LockedOut { retry_after_ms: until - now });
    }
    if reservation.failures >= max {
        // Another request of this burst placed the lock.
        let current = crate::db::get_user(&state.db().pool, &user.id).await?;
        let fallback = AppError::LockedOut { retry_after_ms: state.config().lockout_ms(user.lockouts) };
        return Ok(current.and_then(|u| lock_state(state, &u)).unwrap_or(fallback));
    }
    Ok(AppError::InvalidCode { attempts_left: u32::try_from(max - reservation.failures).unwrap_or(0) })
}

/// Settles a verdict that is not [`Verdict::Valid`] and returns the error to answer
/// with; a valid one is handed back with its reservation for the caller to consume.
pub async fn settle(
    state: &AppState,
    user: &UserRow,
    reservation: Reservation,
    method: SecondFactorMethod,
    verdict: Verdict,
) -> AppResult<Result<(factors::Spend, Reservation), AppError>> {
    Ok(match verdict {
        Verdict::Valid(spend) => Ok((spend, reservation)),
        Verdict::Used => Err(refund(state, user, reservation).await?),
        Verdict::Wrong => Err(failed(state, user, reservation, method).await?),
    })
}
