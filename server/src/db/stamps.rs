//! What this process's committed writes may have changed, for the caches of rows that
//! any write may change (sessions with their users, grants, users' policy inputs; see
//! `cache.rs`). A cache entry records [`Stamps::seen`] from before its read and is used
//! only while [`Stamps::current`] says no write that could change it committed since.
//!
//! Every write changes "anything" unless its code says what it changes
//! ([`Touches`]): only the rows of one user (a sign-in's attempt counted, settled or
//! refunded, its session made; their account page's changes and factors; an admin's
//! actions on them) or no row any cache keeps (a row inserted, a tenant's
//! settings, which their own cache forgets by name, a token exchange). So a stream of
//! sign-ins, settings writes and token exchanges no longer sends every other user's
//! session and policy inputs back to the database (BENCHMARKS.md, "Soak"). A sign-in's
//! own writes (its counters, its session, a remembered browser) say less still: they
//! touch none of the user's policy inputs ([`Touches::activity_of`]), so the inputs
//! its password step read still answer when its second factor is verified. A write
//! marked too narrowly would let a stale row answer on this node for at most
//! `cache::RECENT_TTL`, the bound already accepted for a write on another node; the
//! marks are few, and each names the statements it covers.

use std::sync::atomic::{AtomicU64, Ordering};

/// How many users' stamps there are: users whose ids fall on one stamp share it, so a
/// write to one also ends the others' entries, which only costs a read.
const USER_STAMPS: usize = 4096;

/// What a committed write may have changed among the rows the caches keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Touches {
    /// Any row: the default of every write.
    Anything,
    /// Only rows of one user (their user row, sessions, grants, policy inputs), by its
    /// stamp ([`Touches::user`]).
    User(usize),
    /// Only rows of one user, and none of their policy inputs (their 2FA switch, their
    /// tenant, their groups): what signing in writes ([`Touches::activity_of`]).
    UserActivity(usize),
    /// No row a cache keeps by this rule: inserts (a cache keeps only rows found), and
    /// rows no such cache holds.
    NothingKept,
}

impl Touches {
    /// Only the rows of the user `user_id`.
    pub fn user(user_id: &str) -> Self {
        Touches::User(user_stamp(user_id))
    }

    /// Only the rows of the user `user_id` that a sign-in writes: the counters and the
    /// time of their row, their sessions, pending sign-ins and remembered browsers.
    /// Marking a write that changes policy inputs so would be caught by the database's
    /// own announcement of the change (`cache.rs`), within the feed's delay instead of
    /// at once.
    pub fn activity_of(user_id: &str) -> Self {
        Touches::UserActivity(user_stamp(user_id))
    }
}

/// The stamp of `user_id`: its 128 bits when it is a UUID (as every id this server
/// writes is), so that any spelling of one id lands on one stamp; a hash of its bytes
/// otherwise.
pub fn user_stamp(user_id: &str) -> usize {
    match uuid::Uuid::try_parse(user_id) {
        Ok(id) => uuid_stamp(id.as_u128()),
        // 64-bit FNV-1a: fixed, so every node and test agrees; collisions only cost reads.
        Err(_) => fold(
            user_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)),
        ),
    }
}

/// The stamp of the user whose id is the UUID `bits`, as [`user_stamp`] finds it from
/// the id's text.
pub fn uuid_stamp(bits: u128) -> usize {
    fold((bits ^ (bits >> 64)) as u64)
}

fn fold(bits: u64) -> usize {
    (bits ^ (bits >> 32)) as usize % USER_STAMPS
}

/// The sequence of committed writes, and for "anything", each user's stamp and each
/// user's policy inputs the number of the last write that touched it.
#[derive(Debug)]
pub struct Stamps {
    sequence: AtomicU64,
    anything: AtomicU64,
    users: Box<[AtomicU64]>,
    inputs: Box<[AtomicU64]>,
}

impl Default for Stamps {
    fn default() -> Self {
        Self {
            sequence: AtomicU64::new(0),
            anything: AtomicU64::new(0),
            users: (0..USER_STAMPS).map(|_| AtomicU64::new(0)).collect(),
            inputs: (0..USER_STAMPS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Stamps {
    /// The number of the last write committed: read before a row is loaded, it is the
    /// entry's stamp.
    pub fn seen(&self) -> u64 {
        self.sequence.load(Ordering::Acquire)
    }

    /// Whether nothing committed after `seen` touched anything, or the rows of `user`.
    pub fn current(&self, seen: u64, user: Option<&str>) -> bool {
        self.current_at(seen, user.map(user_stamp))
    }

    /// [`Stamps::current`] with the user's stamp already found ([`user_stamp`]), for
    /// the caches' hits, which then compare two numbers and parse nothing.
    pub fn current_at(&self, seen: u64, stamp: Option<usize>) -> bool {
        self.anything.load(Ordering::Acquire) <= seen
            && stamp.is_none_or(|stamp| self.users[stamp].load(Ordering::Acquire) <= seen)
    }

    /// Whether nothing committed after `seen` touched anything, or the policy inputs of
    /// the user with `stamp` ([`user_stamp`]): their sign-ins do not end them.
    pub fn inputs_current_at(&self, seen: u64, stamp: usize) -> bool {
        self.anything.load(Ordering::Acquire) <= seen && self.inputs[stamp].load(Ordering::Acquire) <= seen
    }

    /// Counts committed writes that touched `touches`: after the commit, so that an entry
    /// loaded before it and stamped with an earlier number is seen out of date, and
    /// before the request that wrote answers, so its client's next request reads anew.
    pub fn committed(&self, touches: impl IntoIterator<Item = Touches>) {
        let number = self.sequence.fetch_add(1, Ordering::AcqRel) + 1;
        for touched in touches {
            match touched {
                Touches::Anything => {
                    self.anything.fetch_max(number, Ordering::AcqRel);
                }
                Touches::User(stamp) => {
                    self.users[stamp].fetch_max(number, Ordering::AcqRel);
                    self.inputs[stamp].fetch_max(number, Ordering::AcqRel);
                }
                Touches::UserActivity(stamp) => {
                    self.users[stamp].fetch_max(number, Ordering::AcqRel);
                }
                Touches::NothingKept => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "0192f0a4-1c2b-7c3d-8e4f-5a6b7c8d9e0f";
    const BOB: &str = "0192f0a4-1c2b-7c3d-8e4f-5a6b7c8d9e10";

    #[test]
    fn a_write_ends_what_it_touched_and_nothing_else() {
        let stamps = Stamps::default();
        assert_ne!(user_stamp(ALICE), user_stamp(BOB), "the test needs two stamps");
        let seen = stamps.seen();
        assert!(stamps.current(seen, Some(ALICE)) && stamps.current(seen, None));

        stamps.committed([Touches::NothingKept]);
        assert!(stamps.current(seen, Some(ALICE)) && stamps.current(seen, Some(BOB)));

        stamps.committed([Touches::user(ALICE)]);
        assert!(!stamps.current(seen, Some(ALICE)), "alice's write left her rows current");
        assert!(stamps.current(seen, Some(BOB)), "alice's write ended bob's rows");
        assert!(stamps.current(seen, None), "alice's write ended rows of no user");
        let after = stamps.seen();
        assert!(stamps.current(after, Some(ALICE)), "a read after the write is current");

        stamps.committed([Touches::Anything]);
        for user in [Some(ALICE), Some(BOB), None] {
            assert!(!stamps.current(after, user), "a write of anything left {user:?} current");
        }
    }

    #[test]
    fn a_sign_in_ends_its_users_rows_but_not_their_policy_inputs() {
        let stamps = Stamps::default();
        let (alice, bob) = (user_stamp(ALICE), user_stamp(BOB));
        let seen = stamps.seen();
        stamps.committed([Touches::activity_of(ALICE)]);
        assert!(!stamps.current(seen, Some(ALICE)), "a sign-in left alice's rows current");
        assert!(stamps.inputs_current_at(seen, alice), "a sign-in ended alice's policy inputs");
        assert!(stamps.current(seen, Some(BOB)) && stamps.inputs_current_at(seen, bob));

        stamps.committed([Touches::user(ALICE)]);
        assert!(!stamps.inputs_current_at(seen, alice), "a write of alice's rows left her inputs current");
        assert!(stamps.inputs_current_at(seen, bob), "alice's write ended bob's inputs");
        let after = stamps.seen();
        assert!(stamps.inputs_current_at(after, alice));
        stamps.committed([Touches::Anything]);
        assert!(!stamps.inputs_current_at(after, alice) && !stamps.inputs_current_at(after, bob));
    }

    #[test]
    fn a_group_of_writes_ends_each_members_rows() {
        let stamps = Stamps::default();
        let seen = stamps.seen();
        stamps.committed([Touches::user(ALICE), Touches::NothingKept, Touches::user(BOB)]);
        assert!(!stamps.current(seen, Some(ALICE)) && !stamps.current(seen, Some(BOB)));
        assert!(stamps.current(seen, None));
        assert_eq!(stamps.seen(), 1, "a group commits once");
    }

    #[test]
    fn every_spelling_of_an_id_has_one_stamp() {
        let bits = uuid::Uuid::try_parse(ALICE).map(|id| id.as_u128()).unwrap_or_default();
        assert_eq!(user_stamp(ALICE), uuid_stamp(bits));
        assert_eq!(user_stamp(ALICE), user_stamp(&ALICE.to_uppercase()));
        assert_eq!(user_stamp(ALICE), user_stamp(&ALICE.replace('-', "")));
        assert!(user_stamp("not a uuid") < USER_STAMPS);
        // Ids of one millisecond differ only in their random bits: they spread.
        let spread: std::collections::HashSet<usize> = (0..1000u128)
            .map(|n| user_stamp(&uuid::Uuid::from_u128((0x0192_f0a4_1c2b_7c3d << 64) | n).to_string()))
            .collect();
        assert!(spread.len() > 800, "{} stamps for 1,000 ids", spread.len());
    }
}
