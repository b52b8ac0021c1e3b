//! Abuse limits, all in memory on each node and all driven by the application clock:
//!
//! - [`PasswordLimits`]: fixed-window counters of wrong passwords ([`FailureLimiter`])
//!   per account and client address together, per address, and per account for
//!   browsers that never signed in to it. Wrong passwords are slowed down this way
//!   instead of locking the account, because a lockout on passwords lets anyone lock
//!   anyone out; the account-wide count skips browsers the account knows for the same
//!   reason.
//! - [`RateLimiter`]: request-rate limits (GCRA, the "generic cell rate algorithm") for
//!   the password step, code sends, code checks and the account API, per client address
//!   and per account, and the cap on messages towards one user or one destination.
//! - [`client_address`]: which address a request counts against, trusting
//!   `X-Forwarded-For` only from configured proxies.
//!
//! State lives in bounded caches whose entries are small and of one size whatever the
//! key ([`KeyHash`]), so a flood of distinct (or long) keys cannot exhaust memory. The limits
//! bound each node; a deployment of N nodes allows at most N times as much in total.
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::http::HeaderMap;
use ipnet::IpNet;
use moka::sync::Cache;

use crate::config::Config;
use crate::error::AppError;

/// How a limit keys its entries: a 128-bit keyed hash of the key, never the text the
/// client sent, so an entry takes the same few bytes whatever the key's length. The two
/// 64-bit SipHash keys are random for each limit of each process: two keys share an
/// entry only if both hashes collide, which nobody can aim for without them, and a
/// shared entry could only make a limit stricter.
#[derive(Debug, Clone, Default)]
struct KeyHash(std::collections::hash_map::RandomState, std::collections::hash_map::RandomState);

impl KeyHash {
    fn of(&self, key: &str) -> u128 {
        (u128::from(self.0.hash_one(key)) << 64) | u128::from(self.1.hash_one(key))
    }
}

/// The request-rate state of up to `capacity` keys, on quick_cache: every request of a
/// limited class reads or writes an entry, and with 20,000 accounts signing in a moka
/// entry keyed by the account's text took 339 bytes where this one takes 145, measured
/// alone (BENCHMARKS.md, "The rate limiters' keys"). An entry that owes nothing means
/// the same as no entry, so such entries are dropped every [`SWEEP_EVERY`]
/// ([`Limits::forget_settled`]): the entries then count the keys of the last moments, not
/// every key since the start, and the capacity's eviction (which drops keys seen once
/// before keys used often) bounds a flood. Dropping an entry can only make its limit
/// more lenient for that key, never stricter for anyone.
struct Keyed<V: Clone> {
    entries: quick_cache::sync::Cache<u128, V>,
    hash: KeyHash,
}

impl<V: Clone> std::fmt::Debug for Keyed<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyed").field("entries", &self.entries.len()).finish()
    }
}

impl<V: Clone> Keyed<V> {
    fn new(capacity: u64) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX).max(1);
        Self { entries: quick_cache::sync::Cache::new(capacity), hash: KeyHash::default() }
    }

    /// The entry of `key`, made by `new` if there is none. Callers racing on one key get
    /// one entry: quick_cache runs `new` once and the others wait for it.
    fn get_or_insert_with(&self, key: &str, new: impl FnOnce() -> V) -> V {
        let Ok(entry) =
            self.entries.get_or_insert_with(&self.hash.of(key), || Ok::<_, std::convert::Infallible>(new()));
        entry
    }
}

#[derive(Debug, Clone)]
pub struct FailureLimiter {
    /// key -> (window start in ms, failures in that window)
    counts: Cache<u128, Arc<std::sync::Mutex<(i64, u32)>>>,
    hash: KeyHash,
    window_ms: i64,
    limit: u32,
}

impl FailureLimiter {
    pub fn new(limit: u32, window: Duration, capacity: u64) -> Self {
        Self {
            // Written only on a wrong password, so moka's bookkeeping costs nothing that
            // matters; a count expires with its window, giving its memory back after an
            // attack.
            counts: Cache::builder().max_capacity(capacity).time_to_idle(window).build(),
            hash: KeyHash::default(),
            window_ms: i64::try_from(window.as_millis()).unwrap_or(i64::MAX),
            limit,
        }
    }

    /// When `key` has used up its failures, the milliseconds until it may try again.
    pub fn blocked_for(&self, key: &str, now: i64) -> Option<i64> {
        let entry = self.counts.get(&self.hash.of(key))?;
        let guard = entry.lock().ok()?;
        let (start, n) = *guard;
        let ends = start.saturating_add(self.window_ms);
        (n >= self.limit && now < ends).then(|| ends - now)
    }

    pub fn record_failure(&self, key: &str, now: i64) {
        let entry = self.counts.get_with(self.hash.of(key), || Arc::new(std::sync::Mutex::new((now, 0))));
        if let Ok(mut guard) = entry.lock() {
            if now >= guard.0.saturating_add(self.window_ms) {
                *guard = (now, 0);
            }
            guard.1 = guard.1.saturating_add(1);
        }
    }

    pub fn clear(&self, key: &str) {
        self.counts.invalidate(&self.hash.of(key));
    }
}

/// The wrong-password limits of the password step, of reauthentication and of a
/// password change, which all guess the same secret.
///
/// Per window (`password_window_minutes`), a browser the account does not know gets at
/// most `password_failures_per_account` wrong passwords on that account in total, from
/// all addresses together; each address gets `password_failures_per_account_and_address`
/// on one account and `password_failures_per_address` over all accounts. A browser that
/// signed in to the account before (it holds the signed "known browser" cookie) is
/// counted only per account and address: a flood from elsewhere never stops the owner.
#[derive(Debug, Clone)]
pub struct PasswordLimits {
    account: FailureLimiter,
    account_address: FailureLimiter,
    address: FailureLimiter,
}

impl PasswordLimits {
    pub fn from_config(config: &Config) -> Self {
        let window = Duration::from_secs(u64::from(config.password_window_minutes) * 60);
        Self {
            account: FailureLimiter::new(config.password_failures_per_account, window, 1_000_000),
            account_address: FailureLimiter::new(config.password_failures_per_account_and_address, window, 1_000_000),
            address: FailureLimiter::new(config.password_failures_per_address, window, 1_000_000),
        }
    }

    fn pair_key(account: &str, address: &str) -> String {
        format!("{account}|{address}")
    }

    /// `rate_limited` while any limit that applies to this guess is used up.
    pub fn check(&self, account: &str, address: &str, known_browser: bool, now: i64) -> Result<(), AppError> {
        let account_wide = if known_browser { None } else { self.account.blocked_for(account, now) };
        let blocked = [
            self.address.blocked_for(address, now),
            self.account_address.blocked_for(&Self::pair_key(account, address), now),
            account_wide,
        ]
        .into_iter()
        .flatten()
        .max();
        match blocked {
            Some(retry_after_ms) => {
                crate::metrics::rate_limited("password");
                Err(AppError::RateLimited { retry_after_ms })
            }
            None => Ok(()),
        }
    }

    pub fn failed(&self, account: &str, address: &str, known_browser: bool, now: i64) {
        self.address.record_failure(address, now);
        self.account_address.record_failure(&Self::pair_key(account, address), now);
        if !known_browser {
            self.account.record_failure(account, now);
        }
    }

    /// A right password clears only the count of this account from this address: the
    /// account-wide count keeps bounding what everyone else may guess.
    pub fn succeeded(&self, account: &str, address: &str) {
        self.account_address.clear(&Self::pair_key(account, address));
    }
}

/// A keyed GCRA limiter: each key may make `count` requests at once, and regains one
/// every `period / count`. Zero means no limit. Time is the caller's `now` in
/// milliseconds, so tests on a manual clock can move past a limit.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    /// key -> theoretical arrival time in nanoseconds since the Unix epoch
    tats: Option<Arc<Keyed<Arc<AtomicI64>>>>,
    /// Nanoseconds one request costs.
    interval_ns: i64,
    /// Nanoseconds of credit a key may run ahead: a burst of `count` requests.
    tolerance_ns: i64,
}

impl RateLimiter {
    pub fn new(count: u32, period: Duration, capacity: u64) -> Self {
        if count == 0 {
            return Self { tats: None, interval_ns: 0, tolerance_ns: 0 };
        }
        let period_ns = i64::try_from(period.as_nanos()).unwrap_or(i64::MAX).max(1);
        let interval_ns = (period_ns / i64::from(count)).max(1);
        Self {
            tats: Some(Arc::new(Keyed::new(capacity))),
            interval_ns,
            tolerance_ns: interval_ns.saturating_mul(i64::from(count)),
        }
    }

    /// Drops the keys that owe nothing at `now_ms`: their next request is judged as a
    /// first one either way. A request racing the sweep on a key dropped may lose what
    /// it just counted, one request's worth of leniency for that key per sweep.
    pub fn forget_settled(&self, now_ms: i64) {
        if let Some(tats) = &self.tats {
            let now = now_ms.saturating_mul(1_000_000);
            tats.entries.retain(|_, tat| tat.load(Ordering::Acquire) > now);
        }
    }

    /// How many keys the limiter holds.
    #[cfg(test)]
    fn keys(&self) -> usize {
        self.tats.as_ref().map_or(0, |t| t.entries.len())
    }

    /// Takes back one request of `key` counted by [`RateLimiter::check`], for a request
    /// that goes on to be counted again elsewhere. A key dropped meanwhile owes nothing.
    pub fn give_back(&self, key: &str) {
        if let Some(entry) = self.tats.as_ref().and_then(|tats| tats.entries.get(&tats.hash.of(key))) {
            let interval = self.interval_ns;
            let _ = entry.fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| Some(tat.saturating_sub(interval)));
        }
    }

    /// Counts one request of `key` at `now` (ms). When `key` is over its limit, nothing
    /// is counted and the answer is the milliseconds until its next request may pass.
    pub fn check(&self, key: &str, now_ms: i64) -> Result<(), i64> {
        let Some(tats) = &self.tats else {
            return Ok(());
        };
        let now = now_ms.saturating_mul(1_000_000);
        let entry = tats.get_or_insert_with(key, || Arc::new(AtomicI64::new(i64::MIN)));
        let mut tat = entry.load(Ordering::Acquire);
        loop {
            let next = tat.max(now).saturating_add(self.interval_ns);
            let ahead = next.saturating_sub(now);
            if ahead > self.tolerance_ns {
                let wait_ns = ahead - self.tolerance_ns;
                // Round up: a wait of zero would invite an immediate retry.
                return Err((wait_ns.saturating_add(999_999) / 1_000_000).max(1));
            }
            match entry.compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(current) => tat = current,
            }
        }
    }
}

/// The request classes with their own limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The password step.
    SignIn,
    /// Asking for an emailed or texted code, at sign-in, enrolment or on the account page.
    SendCode,
    /// Checking a second factor: sign-in codes, recovery codes, enrolment and account-page
    /// confirmations, reauthentication.
    Verify,
    /// Every request to `/api/account` and below.
    Account,
    /// The OpenID Connect token endpoint, per address and per application (client id).
    Token,
}

impl Class {
    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::SignIn => "sign_in",
            Class::SendCode => "send_code",
            Class::Verify => "verify",
            Class::Account => "account",
            Class::Token => "token",
        }
    }
}

#[derive(Debug, Clone)]
struct Pair {
    address: RateLimiter,
    account: RateLimiter,
}

impl Pair {
    fn new(per_address: u32, per_account: u32, period: Duration) -> Self {
        Self {
            address: RateLimiter::new(per_address, period, ADDRESS_KEYS),
            account: RateLimiter::new(per_account, period, ACCOUNT_KEYS),
        }
    }

    fn forget_settled(&self, now: i64) {
        self.address.forget_settled(now);
        self.account.forget_settled(now);
    }
}

/// How often the request-rate limiters drop the keys that owe nothing.
pub const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Most keys each limiter remembers. Past that, the least useful entries are dropped,
/// which can only make a limit more lenient for the keys dropped.
const ADDRESS_KEYS: u64 = 200_000;
const ACCOUNT_KEYS: u64 = 200_000;

/// Every request-rate limit and the cap on sent messages, built from the configuration.
#[derive(Debug, Clone)]
pub struct Limits {
    sign_in: Pair,
    send_code: Pair,
    verify: Pair,
    account: Pair,
    token: Pair,
    sends_per_user: RateLimiter,
    sends_per_destination: RateLimiter,
    trusted_proxies: Vec<IpNet>,
}

fn limited(class: &'static str, result: Result<(), i64>) -> Result<(), AppError> {
    result.map_err(|retry_after_ms| {
        crate::metrics::rate_limited(class);
        AppError::RateLimited { retry_after_ms }
    })
}

impl Limits {
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let minute = Duration::from_secs(60);
        let hour = Duration::from_secs(3600);
        Ok(Self {
            sign_in: Pair::new(config.sign_in_per_address_per_minute, config.sign_in_per_account_per_minute, minute),
            send_code: Pair::new(
                config.send_code_per_address_per_minute,
                config.send_code_per_account_per_minute,
                minute,
            ),
            verify: Pair::new(config.verify_per_address_per_minute, config.verify_per_account_per_minute, minute),
            account: Pair::new(config.account_per_address_per_minute, config.account_per_account_per_minute, minute),
            token: Pair::new(config.oidc_token_per_address_per_minute, config.oidc_token_per_client_per_minute, minute),
            sends_per_user: RateLimiter::new(config.code_sends_per_user_per_hour, hour, ACCOUNT_KEYS),
            sends_per_destination: RateLimiter::new(config.code_sends_per_destination_per_hour, hour, ACCOUNT_KEYS),
            trusted_proxies: parse_proxies(&config.trusted_proxies)?,
        })
    }

    fn pair(&self, class: Class) -> &Pair {
        match class {
            Class::SignIn => &self.sign_in,
            Class::SendCode => &self.send_code,
            Class::Verify => &self.verify,
            Class::Account => &self.account,
            Class::Token => &self.token,
        }
    }

    /// Counts a request of `class` from `address`; `rate_limited` when over the limit.
    pub fn by_address(&self, class: Class, address: IpAddr, now: i64) -> Result<(), AppError> {
        limited(class.as_str(), self.pair(class).address.check(&address_key(address), now))
    }

    /// Counts a request of `class` for `account` (a user id, or the typed name at the
    /// password step); `rate_limited` when over the limit.
    pub fn by_account(&self, class: Class, account: &str, now: i64) -> Result<(), AppError> {
        limited(class.as_str(), self.pair(class).account.check(account, now))
    }

    /// Takes back a request of `class` for `account` that [`Limits::by_account`]
    /// counted, when the request goes on to the general way, which counts it again.
    pub fn give_back(&self, class: Class, account: &str) {
        self.pair(class).account.give_back(account);
    }

    /// Counts one message to `destination` of `user_id`, whatever sent it: however many
    /// sign-ins, addresses or account pages ask, no user and no mailbox or phone gets
    /// more than the configured number of messages an hour.
    pub fn message(&self, user_id: &str, destination: &str, now: i64) -> Result<(), AppError> {
        limited("messages", self.sends_per_user.check(user_id, now))?;
        limited("messages", self.sends_per_destination.check(&destination.trim().to_lowercase(), now))
    }

    /// Drops, in every request-rate limit, the keys that owe nothing at `now`: run every
    /// [`SWEEP_EVERY`], so a stream of distinct accounts (each signing in once) leaves
    /// no memory behind once their requests are paid for.
    pub fn forget_settled(&self, now: i64) {
        for pair in [&self.sign_in, &self.send_code, &self.verify, &self.account, &self.token] {
            pair.forget_settled(now);
        }
        self.sends_per_user.forget_settled(now);
        self.sends_per_destination.forget_settled(now);
    }

    pub fn trusted_proxies(&self) -> &[IpNet] {
        &self.trusted_proxies
    }
}

/// Parses `trusted_proxies`: addresses (`10.0.0.1`) or networks (`10.0.0.0/8`).
pub fn parse_proxies(entries: &[String]) -> anyhow::Result<Vec<IpNet>> {
    entries
        .iter()
        .map(|e| {
            let e = e.trim();
            e.parse::<IpNet>()
                .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| anyhow::anyhow!("trusted_proxies: {e:?} is neither an address nor a network"))
        })
        .collect()
}

/// The key of an address: IPv4 addresses alone, IPv6 addresses by their /64, since one
/// subscriber commonly holds a whole /64 and could otherwise rotate through it.
fn address_key(address: IpAddr) -> String {
    match address.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{}/64", Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

fn trusted(proxies: &[IpNet], address: IpAddr) -> bool {
    let address = address.to_canonical();
    proxies.iter().any(|net| net.contains(&address))
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5`,
/// `[::1]:5`), as some proxies write it.
fn forwarded_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

/// The address a request counts against. That is the TCP peer, unless the peer is one
/// of `trusted_proxies`: then it is the right-most `X-Forwarded-For` entry that is not
/// a trusted proxy itself. Entries left of it were written by the client and could be
/// anything, so they are never used; with no proxies configured the header is ignored.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, proxies: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted(proxies, peer) {
        return peer;
    }
    let entries: Vec<&str> =
        headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).collect();
    let mut client = peer;
    for entry in entries.iter().rev() {
        // A malformed entry ends the walk: what lies left of it cannot be trusted, and
        // the hop that wrote it is the best we know.
        let Some(ip) = forwarded_entry(entry) else { break };
        client = ip;
        if !trusted(proxies, ip) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_sweep_drops_the_keys_that_owe_nothing_and_keeps_the_others_debt() {
        // One request a minute: a request makes its key owe a minute.
        let limiter = RateLimiter::new(1, Duration::from_secs(60), 1_000);
        assert!(limiter.check("early", 0).is_ok());
        assert!(limiter.check("late", 50_000).is_ok());
        limiter.forget_settled(59_999);
        assert_eq!(limiter.keys(), 2, "a key that still owed was dropped");
        limiter.forget_settled(70_000);
        assert_eq!(limiter.keys(), 1, "the key that owed nothing was kept");
        // The key kept still owes: its second request within its minute is refused.
        assert_eq!(limiter.check("late", 70_000), Err(40_000));
        // The one dropped is judged as new, which it was equivalent to.
        assert!(limiter.check("early", 70_000).is_ok());
        assert!(limiter.check("early", 70_001).is_err());
        limiter.forget_settled(200_000);
        assert_eq!(limiter.keys(), 0);
    }

    #[test]
    fn blocks_after_the_limit_until_the_window_ends() {
        let l = FailureLimiter::new(3, Duration::from_secs(60), 100);
        for i in 0..3 {
            assert_eq!(l.blocked_for("a", 1_000 + i), None);
            l.record_failure("a", 1_000 + i);
        }
        assert_eq!(l.blocked_for("a", 2_000), Some(59_000));
        assert_eq!(l.blocked_for("b", 2_000), None);
        assert_eq!(l.blocked_for("a", 61_000), None);
        l.record_failure("a", 61_000);
        assert_eq!(l.blocked_for("a", 61_001), None);
    }

    #[test]
    fn clearing_forgets_failures() {
        let l = FailureLimiter::new(1, Duration::from_secs(60), 100);
        l.record_failure("a", 0);
        assert!(l.blocked_for("a", 1).is_some());
        l.clear("a");
        assert!(l.blocked_for("a", 1).is_none());
    }

    #[test]
    fn a_burst_passes_then_one_request_per_interval() {
        // Six a minute: a burst of six, then one every ten seconds.
        let l = RateLimiter::new(6, Duration::from_secs(60), 100);
        let t = 1_750_000_000_000;
        for i in 0..6 {
            assert_eq!(l.check("a", t + i), Ok(()), "request {i}");
        }
        let wait = l.check("a", t + 6).unwrap_err();
        assert!((9_990..=10_000).contains(&wait), "{wait}");
        // Other keys are untouched.
        assert_eq!(l.check("b", t + 6), Ok(()));
        // A refused request costs nothing: after the wait, exactly one passes.
        assert_eq!(l.check("a", t + 6 + wait), Ok(()));
        assert!(l.check("a", t + 6 + wait).is_err());
        // After a whole period of quiet the full burst is back.
        let later = t + 6 + wait + 60_000;
        for _ in 0..6 {
            assert_eq!(l.check("a", later), Ok(()));
        }
        assert!(l.check("a", later).is_err());
    }

    #[test]
    fn parallel_requests_of_one_key_share_its_burst() {
        // Sixteen threads race for a burst of six: the entry is made once and every
        // request is counted on it, so exactly six pass.
        let l = Arc::new(RateLimiter::new(6, Duration::from_secs(60), 100));
        let t = 1_750_000_000_000;
        let start = Arc::new(std::sync::Barrier::new(16));
        let passed: usize = (0..16)
            .map(|_| {
                let (l, start) = (l.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    usize::from(l.check("victim", t).is_ok())
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(passed, 6);
    }

    #[test]
    fn a_flood_of_new_keys_does_not_free_a_key_in_use() {
        // An attacker who has used up an account's burst sends requests for ten times
        // the capacity's worth of other (and long) keys, hoping to have the account's
        // entry evicted, then tries the account again.
        let l = RateLimiter::new(6, Duration::from_secs(60), 100);
        let t = 1_750_000_000_000;
        for _ in 0..6 {
            assert_eq!(l.check("victim", t), Ok(()));
        }
        for i in 0..1_000 {
            let _ = l.check(&format!("{i}-{}", "x".repeat(200)), t);
        }
        assert!(l.check("victim", t).is_err(), "the victim's limit was forgotten");
    }

    #[test]
    fn keys_are_told_apart_by_their_whole_text() {
        let l = RateLimiter::new(1, Duration::from_secs(60), 100);
        let long = "a".repeat(10_000);
        assert_eq!(l.check(&long, 0), Ok(()));
        assert_eq!(l.check(&format!("{long}b"), 0), Ok(()));
        assert_eq!(l.check(&long[1..], 0), Ok(()));
        assert!(l.check(&long, 0).is_err());
    }

    #[test]
    fn zero_means_no_limit() {
        let l = RateLimiter::new(0, Duration::from_secs(60), 100);
        for _ in 0..10_000 {
            assert_eq!(l.check("a", 0), Ok(()));
        }
    }

    #[test]
    fn the_wait_is_at_least_a_millisecond_and_large_counts_work() {
        let l = RateLimiter::new(u32::MAX, Duration::from_secs(60), 100);
        for _ in 0..1000 {
            assert_eq!(l.check("a", 5), Ok(()));
        }
        let l = RateLimiter::new(1, Duration::from_secs(3600), 100);
        assert_eq!(l.check("a", 0), Ok(()));
        assert_eq!(l.check("a", 0), Err(3_600_000));
        assert_eq!(l.check("a", 3_599_999), Err(1));
        assert_eq!(l.check("a", 3_600_000), Ok(()));
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
        let headers = xff(&["203.0.113.9"]);
        assert_eq!(client_address(ip("198.51.100.1"), &headers, &[]), ip("198.51.100.1"));
        let proxies = parse_proxies(&["10.0.0.0/8".into()]).unwrap();
        assert_eq!(client_address(ip("198.51.100.1"), &headers, &proxies), ip("198.51.100.1"));
        assert_eq!(client_address(ip("10.1.2.3"), &headers, &proxies), ip("203.0.113.9"));
    }

    #[test]
    fn the_right_most_untrusted_entry_is_the_client() {
        let proxies = parse_proxies(&["10.0.0.0/8".into(), "192.0.2.7".into()]).unwrap();
        // The client forged the first entry; the proxies appended the rest.
        let headers = xff(&["1.1.1.1, 203.0.113.9", "10.0.0.5"]);
        assert_eq!(client_address(ip("192.0.2.7"), &headers, &proxies), ip("203.0.113.9"));
        // Ports and IPv4-mapped IPv6 addresses are understood.
        let headers = xff(&["203.0.113.9:4711, [::ffff:10.0.0.5]:80"]);
        assert_eq!(client_address(ip("::ffff:10.9.9.9"), &headers, &proxies), ip("203.0.113.9"));
        // Only proxies in the header: the left-most of them.
        let headers = xff(&["10.0.0.6, 10.0.0.5"]);
        assert_eq!(client_address(ip("10.0.0.4"), &headers, &proxies), ip("10.0.0.6"));
        // No header from a trusted peer: the peer itself.
        assert_eq!(client_address(ip("10.0.0.4"), &HeaderMap::new(), &proxies), ip("10.0.0.4"));
        // A malformed entry stops the walk at the last good hop.
        let headers = xff(&["203.0.113.9, garbage, 10.0.0.5"]);
        assert_eq!(client_address(ip("10.0.0.4"), &headers, &proxies), ip("10.0.0.5"));
    }

    #[test]
    fn proxies_must_parse() {
        assert!(parse_proxies(&["10.0.0.0/33".into()]).is_err());
        assert!(parse_proxies(&["example.com".into()]).is_err());
        assert_eq!(parse_proxies(&["::1".into(), " 10.0.0.0/8 ".into()]).unwrap().len(), 2);
    }

    #[test]
    fn ipv6_addresses_share_their_64() {
        assert_eq!(address_key(ip("2001:db8:1:2:3:4:5:6")), address_key(ip("2001:db8:1:2:ffff::1")));
        assert_ne!(address_key(ip("2001:db8:1:2::1")), address_key(ip("2001:db8:1:3::1")));
        assert_eq!(address_key(ip("::ffff:192.0.2.1")), "192.0.2.1");
    }
}
