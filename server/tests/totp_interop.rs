//! Interoperability of `twofold_server::totp` with an independent implementation:
//! Debian's `oathtool` (OATH Toolkit). Our own unit tests check the RFC vectors; this
//! checks random secrets and times, and the base32 form users type into apps.
//!
//! `oathtool` is installed by `scripts/setup`. Its absence fails the test rather than
//! skipping it, so a machine without it cannot report a silent pass.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use rand::{Rng, RngCore};
use twofold_server::totp;

const CASES: usize = 50;

fn oathtool(secret_base32: &str, unix: u64) -> String {
    let output = Command::new("oathtool")
        .args(["--totp", "-b", secret_base32, "--now", &format!("@{unix}")])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run oathtool ({e}); install it with scripts/setup (Debian package `oathtool`)")
        });
    assert!(
        output.status.success(),
        "oathtool failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[test]
fn codes_match_oathtool() {
    let mut rng = rand::rng();
    for case in 0..CASES {
        // Mostly the 160-bit secrets we generate, sometimes other lengths of at least
        // 128 bits, so base32 strings with a partial final group are covered too.
        let secret = if case % 3 == 0 {
            let mut s = vec![0u8; rng.random_range(16..=40)];
            rng.fill_bytes(&mut s);
            s
        } else {
            totp::generate_secret()
        };
        let encoded = totp::secret_base32(&secret);
        assert_eq!(totp::normalize_base32(&encoded).as_deref(), Some(secret.as_slice()));
        // From the epoch to beyond 2106 (past u32 seconds).
        let unix: u64 = rng.random_range(0..5_000_000_000);

        let theirs = oathtool(&encoded, unix);
        assert_eq!(theirs.len(), 6, "oathtool printed {theirs:?}");
        assert_eq!(totp::code_at(&secret, unix), theirs, "case {case}, T={unix}");
        assert_eq!(totp::verify(&secret, &theirs, unix, None), Some(unix / 30), "case {case}, T={unix}");
        // And the replay barrier holds against the same external code.
        assert_eq!(totp::verify(&secret, &theirs, unix, Some(unix / 30)), None, "case {case}");
    }
}

#[test]
fn oathtool_window_neighbours_are_accepted() {
    let secret = totp::generate_secret();
    let encoded = totp::secret_base32(&secret);
    let now = 1_700_000_000u64;
    for (at, step) in [(now - 30, now / 30 - 1), (now + 30, now / 30 + 1)] {
        let theirs = oathtool(&encoded, at);
        assert_eq!(totp::verify(&secret, &theirs, now, None), Some(step));
    }
}
