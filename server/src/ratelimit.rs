//! Fixed-window failure counters for password sign-in, per account and per client
//! address. Wrong passwords are slowed down this way instead of locking the account,
//! because a lockout on passwords lets anyone lock anyone out.
//!
//! Counters live in memory on each node: they bound guessing speed per node, and the
//! window is short, so they need no coordination. Entries expire with their window.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;

#[derive(Debug, Clone)]
pub struct FailureLimiter {
    /// key -> (window start in ms, failures in that window)
    counts: Cache<String, Arc<std::sync::Mutex<(i64, u32)>>>,
    window_ms: i64,
    limit: u32,
}

impl FailureLimiter {
    pub fn new(limit: u32, window: Duration, capacity: u64) -> Self {
        Self {
            counts: Cache::builder().max_capacity(capacity).time_to_idle(window).build(),
            window_ms: i64::try_from(window.as_millis()).unwrap_or(i64::MAX),
            limit,
        }
    }

    /// When `key` has used up its failures, the milliseconds until it may try again.
    pub fn blocked_for(&self, key: &str, now: i64) -> Option<i64> {
        let entry = self.counts.get(key)?;
        let guard = entry.lock().ok()?;
        let (start, n) = *guard;
        let ends = start.saturating_add(self.window_ms);
        (n >= self.limit && now < ends).then(|| ends - now)
    }

    pub fn record_failure(&self, key: &str, now: i64) {
        let entry = self.counts.get_with(key.to_owned(), || Arc::new(std::sync::Mutex::new((now, 0))));
        if let Ok(mut guard) = entry.lock() {
            if now >= guard.0.saturating_add(self.window_ms) {
                *guard = (now, 0);
            }
            guard.1 = guard.1.saturating_add(1);
        }
    }

    pub fn clear(&self, key: &str) {
        self.counts.invalidate(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
