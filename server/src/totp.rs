//! Authenticator-app codes (RFC 6238 TOTP): secret generation, the `otpauth://` URI
//! and its QR code for enrolment, and verification with replay protection.
//!
//! Codes are HMAC-SHA1, 6 digits, 30-second steps: the only parameters every
//! authenticator app supports (several silently ignore `algorithm=SHA256`).
//!
//! Rules this module keeps and its callers must keep too:
//! - never log, print or put in an error a secret, its base32 form, the URI (it
//!   contains the secret) or a code;
//! - never read the clock here: the caller passes the time, so tests and a shared
//!   clock abstraction decide what "now" is;
//! - a time step, once accepted for a factor, is never accepted again: the caller
//!   stores the step returned by [`verify`] and passes it back as `last_used_step`,
//!   updating it atomically (compare-and-set) so two concurrent sign-ins with the same
//!   code cannot both succeed.

use rand::RngCore;
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Builder, Secret, Totp};
use zeroize::Zeroizing;

/// Digits in a code.
pub const DIGITS: usize = 6;
/// Length of a time step, in seconds.
pub const STEP_SECONDS: u64 = 30;
/// Steps accepted on either side of the current one, for clock drift and typing time
/// (RFC 6238 section 5.2 recommends one).
pub const SKEW_STEPS: u64 = 1;
/// Size of a generated secret: 160 bits, the HMAC-SHA1 output size recommended by
/// RFC 4226.
pub const SECRET_BYTES: usize = 20;
/// Smallest secret accepted (RFC 4226 requires at least 128 bits).
pub const MIN_SECRET_BYTES: usize = 16;

/// A fresh secret from the operating system's CSPRNG (through `rand`'s thread RNG,
/// a ChaCha generator seeded and periodically reseeded from the OS).
pub fn generate_secret() -> Vec<u8> {
    let mut secret = vec![0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut secret);
    secret
}

/// RFC 4648 base32, uppercase, without padding: the form authenticator apps expect
/// when a user types the key instead of scanning it.
pub fn secret_base32(secret: &[u8]) -> String {
    Secret::from(secret).to_base32()
}

/// Parses a base32 key the way users type it: any case, spaces (apps show it in
/// groups of four) and trailing `=` padding. `None` unless it is valid base32 of at
/// least 128 bits.
pub fn normalize_base32(input: &str) -> Option<Vec<u8>> {
    let cleaned: Zeroizing<String> =
        Zeroizing::new(input.chars().filter(|c| !c.is_whitespace()).map(|c| c.to_ascii_uppercase()).collect());
    let unpadded = cleaned.trim_end_matches('=');
    if !unpadded.bytes().all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)) {
        return None;
    }
    // Base32 groups 8 characters for 5 bytes; a final partial group can only have 2,
    // 4, 5 or 7 characters. Other lengths are typos, not keys.
    if !matches!(unpadded.len() % 8, 0 | 2 | 4 | 5 | 7) {
        return None;
    }
    let secret = Secret::try_from_base32(unpadded).ok()?;
    let bytes = secret.as_bytes().to_vec();
    (bytes.len() >= MIN_SECRET_BYTES).then_some(bytes)
}

/// The `otpauth://totp/ISSUER:ACCOUNT?secret=...&issuer=ISSUER` URI that authenticator
/// apps import. A `:` in `issuer` or `account` is shown as [`label_part`] does. The
/// issuer must not be blank: without its prefix a user named `.` or `..` would make
/// the label a dot segment, which URL parsers (and so apps) drop. The result contains
/// the secret: show it to the enrolling user only, never log it.
pub fn otpauth_uri(secret: &[u8], issuer: &str, account: &str) -> anyhow::Result<String> {
    if secret.len() < MIN_SECRET_BYTES {
        anyhow::bail!("an authenticator secret must have at least 128 bits");
    }
    let issuer = label_part(issuer.trim());
    if issuer.is_empty() {
        anyhow::bail!("an authenticator URI needs an issuer");
    }
    let account = label_part(account);
    let totp = Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS as u8)
        .with_step_duration(STEP_SECONDS)
        .with_secret(secret)
        .with_issuer(Some(issuer.as_str()))
        .with_account_name(account)
        .build()
        // totp-rs errors name the account or issuer at most, never the secret.
        .map_err(|e| anyhow::anyhow!("cannot build the authenticator URI: {e}"))?;
    totp.to_url().map_err(|e| anyhow::anyhow!("cannot build the authenticator URI: {e}"))
}

/// A name as it appears in the label of an `otpauth://` URI. The Key URI format keeps
/// `:` (even percent-encoded) for the separator of issuer and account, but user names
/// may contain one; a fullwidth colon (U+FF1A) reads the same in an authenticator app.
pub fn label_part(name: &str) -> String {
    name.replace(':', "\u{FF1A}")
}

/// A PNG image of `uri` as a QR code (medium error correction, 8 px modules, quiet
/// zone included).
pub fn qr_png(uri: &str) -> anyhow::Result<Vec<u8>> {
    // The library's error text may quote its input, which holds the secret.
    qrcodegen_image::draw_png(uri).map_err(|_| anyhow::anyhow!("the URI cannot be drawn as a QR code (too long)"))
}

/// The code for `unix_secs` (for tests, tooling and interop checks).
pub fn code_at(secret: &[u8], unix_secs: u64) -> String {
    generator(secret, Algorithm::SHA1, DIGITS as u8).generate(unix_secs).to_string()
}

/// The codes of `count` time steps from `first` on, for the tags a pending sign-in
/// stores (`signin::opened`); none for a secret [`verify`] would refuse.
pub fn codes_of_steps(secret: &[u8], first: u64, count: u64) -> Vec<Zeroizing<String>> {
    if secret.len() < MIN_SECRET_BYTES {
        return Vec::new();
    }
    let totp = generator(secret, Algorithm::SHA1, DIGITS as u8);
    (first..first.saturating_add(count))
        .map_while(|step| step.checked_mul(STEP_SECONDS))
        .map(|at| Zeroizing::new(totp.generate(at).to_string()))
        .collect()
}

/// The typed `code` as [`verify`] compares it: spaces left out, and `None` for anything
/// but exactly six ASCII digits.
pub fn typed_code(code: &str) -> Option<Zeroizing<String>> {
    let code: Zeroizing<String> = Zeroizing::new(code.chars().filter(|c| !c.is_ascii_whitespace()).collect());
    (code.len() == DIGITS && code.bytes().all(|b| b.is_ascii_digit())).then_some(code)
}

/// Checks `code` at time `now_unix_secs` and returns the matched time step.
///
/// Spaces are ignored; anything but exactly six ASCII digits is refused. The steps
/// `now - 1`, `now`, `now + 1` are tried, each compared in constant time and all of
/// them always computed, so timing does not reveal which one matched. Steps at or
/// before `last_used_step` are never accepted (RFC 6238 section 5.2: a code is valid
/// once). When a code matches more than one step, the latest is returned so the
/// replay barrier moves as far as possible.
pub fn verify(secret: &[u8], code: &str, now_unix_secs: u64, last_used_step: Option<u64>) -> Option<u64> {
    // A truncated or empty secret would make codes computable by anyone (HMAC with an
    // empty key); such a factor is broken and must not verify.
    if secret.len() < MIN_SECRET_BYTES {
        return None;
    }
    let code = typed_code(code)?;
    let totp = generator(secret, Algorithm::SHA1, DIGITS as u8);
    let current = now_unix_secs / STEP_SECONDS;
    let mut matched = None;
    for step in current.saturating_sub(SKEW_STEPS)..=current.saturating_add(SKEW_STEPS) {
        if last_used_step.is_some_and(|last| step <= last) {
            continue;
        }
        let Some(at) = step.checked_mul(STEP_SECONDS) else {
            continue;
        };
        let expected = Zeroizing::new(totp.generate(at).to_string());
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
            matched = Some(step);
        }
    }
    matched
}

/// One code generator for the given parameters. The secret length is checked by the
/// public functions, not here, so RFC test seeds and tooling can use it freely;
/// `build_noncompliant` therefore cannot fail.
fn generator(secret: &[u8], algorithm: Algorithm, digits: u8) -> Totp {
    Builder::new()
        .with_algorithm(algorithm)
        .with_digits(digits)
        .with_step_duration(STEP_SECONDS)
        .with_skew(0)
        .with_secret(secret)
        .build_noncompliant()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const SEED_SHA1: &[u8] = b"12345678901234567890";
    const SEED_SHA256: &[u8] = b"12345678901234567890123456789012";
    const SEED_SHA512: &[u8] = b"1234567890123456789012345678901234567890123456789012345678901234";

    /// RFC 6238 Appendix B, all 18 rows: (time, algorithm, 8-digit code).
    const RFC6238_VECTORS: [(u64, Algorithm, &str); 18] = [
        (59, Algorithm::SHA1, "94287082"),
        (59, Algorithm::SHA256, "46119246"),
        (59, Algorithm::SHA512, "90693936"),
        (1_111_111_109, Algorithm::SHA1, "07081804"),
        (1_111_111_109, Algorithm::SHA256, "68084774"),
        (1_111_111_109, Algorithm::SHA512, "25091201"),
        (1_111_111_111, Algorithm::SHA1, "14050471"),
        (1_111_111_111, Algorithm::SHA256, "67062674"),
        (1_111_111_111, Algorithm::SHA512, "99943326"),
        (1_234_567_890, Algorithm::SHA1, "89005924"),
        (1_234_567_890, Algorithm::SHA256, "91819424"),
        (1_234_567_890, Algorithm::SHA512, "93441116"),
        (2_000_000_000, Algorithm::SHA1, "69279037"),
        (2_000_000_000, Algorithm::SHA256, "90698825"),
        (2_000_000_000, Algorithm::SHA512, "38618901"),
        (20_000_000_000, Algorithm::SHA1, "65353130"),
        (20_000_000_000, Algorithm::SHA256, "77737706"),
        (20_000_000_000, Algorithm::SHA512, "47863826"),
    ];

    /// Appendix B's seeds: the ASCII digits repeated to the hash's output size.
    fn seed(algorithm: Algorithm) -> &'static [u8] {
        if algorithm == Algorithm::SHA512 {
            SEED_SHA512
        } else if algorithm == Algorithm::SHA256 {
            SEED_SHA256
        } else {
            SEED_SHA1
        }
    }

    #[test]
    fn rfc6238_appendix_b_vectors() {
        for (time, algorithm, code) in RFC6238_VECTORS {
            let got = generator(seed(algorithm), algorithm, 8).generate(time).to_string();
            assert_eq!(got, code, "T={time} {algorithm:?}");
        }
    }

    #[test]
    fn rfc6238_sha1_vectors_through_the_public_api() {
        // Six-digit codes are the last six digits of the eight-digit ones.
        for (time, algorithm, code) in RFC6238_VECTORS {
            if algorithm != Algorithm::SHA1 {
                continue;
            }
            let six = &code[2..];
            assert_eq!(code_at(SEED_SHA1, time), six, "T={time}");
            assert_eq!(verify(SEED_SHA1, six, time, None), Some(time / 30), "T={time}");
        }
    }

    #[test]
    fn window_is_one_step_each_side() {
        // A fixed secret and time keep the test deterministic.
        let secret = SEED_SHA1.to_vec();
        let now = 1_700_000_015;
        let step = now / STEP_SECONDS;
        for offset in [-1i64, 0, 1] {
            let at = (now as i64 + offset * 30) as u64;
            let code = code_at(&secret, at);
            assert_eq!(verify(&secret, &code, now, None), Some(at / 30), "offset {offset}");
        }
        for offset in [-3i64, -2, 2, 3] {
            let at = (now as i64 + offset * 30) as u64;
            let code = code_at(&secret, at);
            // A random collision with a neighbouring step is possible in principle;
            // exclude it so the test is deterministic.
            let collides = (step - 1..=step + 1).any(|s| code_at(&secret, s * 30) == code);
            if !collides {
                assert_eq!(verify(&secret, &code, now, None), None, "offset {offset}");
            }
        }
        // Boundaries inside a step: first and last second.
        let code = code_at(&secret, step * 30);
        assert_eq!(verify(&secret, &code, step * 30 + 29, None), Some(step));
    }

    #[test]
    fn a_step_is_accepted_only_once() {
        let secret = SEED_SHA1;
        let now = 1_234_567_890;
        let step = now / 30;
        let code = code_at(secret, now);
        let used = verify(secret, &code, now, None).unwrap();
        assert_eq!(used, step);
        // Same code, same step: refused.
        assert_eq!(verify(secret, &code, now, Some(used)), None);
        assert_eq!(verify(secret, &code, now + 20, Some(used)), None);
        // A newer step was used: an older (still in-window) code is refused.
        let newer = code_at(secret, now + 30);
        let used = verify(secret, &newer, now, Some(used)).unwrap();
        assert_eq!(used, step + 1);
        let older = code_at(secret, now - 30);
        assert_eq!(verify(secret, &older, now, Some(used)), None);
        assert_eq!(verify(secret, &code, now, Some(used)), None);
        // The next step after the barrier is fine.
        let next = code_at(secret, now + 60);
        assert_eq!(verify(secret, &next, now + 60, Some(used)), Some(step + 2));
    }

    #[test]
    fn malformed_codes_are_refused() {
        let secret = SEED_SHA1;
        let now = 59;
        let good = code_at(secret, now);
        assert_eq!(good, "287082");
        assert_eq!(verify(secret, " 287 082 ", now, None), Some(1));
        assert_eq!(verify(secret, "287082\n", now, None), Some(1));
        for bad in [
            "",
            "28708",
            "2870820",
            "94287082",
            "+87082",
            "-87082",
            "28708a",
            "２８７０８２",
            "287_082",
            "287.082",
            "0x1234",
        ] {
            assert_eq!(verify(secret, bad, now, None), None, "{bad:?}");
        }
    }

    #[test]
    fn short_secrets_never_verify() {
        let short = [1u8; 15];
        let code = code_at(&short, 100);
        assert_eq!(verify(&short, &code, 100, None), None);
        assert_eq!(verify(&[], &code_at(&[], 100), 100, None), None);
    }

    #[test]
    fn time_zero_and_far_future_do_not_overflow() {
        let secret = generate_secret();
        let code = code_at(&secret, 0);
        assert_eq!(verify(&secret, &code, 0, None), Some(0));
        assert_eq!(verify(&secret, &code, 10, Some(0)), None);
        let _ = verify(&secret, "123456", u64::MAX, None);
    }

    #[test]
    fn generated_secrets_are_160_bits_and_differ() {
        let a = generate_secret();
        let b = generate_secret();
        assert_eq!(a.len(), 20);
        assert_ne!(a, b);
    }

    #[test]
    fn base32_round_trip_and_user_input() {
        assert_eq!(secret_base32(SEED_SHA1), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        let secret = generate_secret();
        let encoded = secret_base32(&secret);
        assert_eq!(encoded.len(), 32);
        assert!(!encoded.contains('='));
        assert_eq!(normalize_base32(&encoded), Some(secret.clone()));

        let typed = "gezd gnbv gy3t qojq gezd gnbv gy3t qojq";
        assert_eq!(normalize_base32(typed).as_deref(), Some(SEED_SHA1));
        // 16 bytes encode to 26 characters plus 6 padding.
        let sixteen = secret_base32(&[0xA5; 16]);
        assert_eq!(sixteen.len(), 26);
        assert_eq!(normalize_base32(&format!("{sixteen}======")), Some(vec![0xA5; 16]));
        assert_eq!(normalize_base32(&sixteen.to_lowercase()), Some(vec![0xA5; 16]));

        // Too short, bad characters, impossible lengths.
        assert_eq!(normalize_base32(&secret_base32(&[1; 15])), None);
        assert_eq!(normalize_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJ1"), None);
        assert_eq!(normalize_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQG"), None);
        assert_eq!(normalize_base32("GEZDGNBV=GY3TQOJQGEZDGNBVGY3TQOJQ"), None);
        assert_eq!(normalize_base32(""), None);
    }

    #[test]
    fn otpauth_uri_has_the_standard_form() {
        let uri = otpauth_uri(SEED_SHA1, "Twofold", "alice@example.com").unwrap();
        assert!(uri.starts_with("otpauth://totp/Twofold:alice%40example.com?"), "{uri}");
        assert!(uri.contains("secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"), "{uri}");
        assert!(uri.contains("issuer=Twofold"), "{uri}");
        // Defaults (SHA1, 6 digits, 30 s) are implied, as apps expect.
        assert!(!uri.contains("algorithm=") && !uri.contains("digits=") && !uri.contains("period="));

        let spaced = otpauth_uri(SEED_SHA1, "Acme Corp", "bob").unwrap();
        assert!(spaced.starts_with("otpauth://totp/Acme%20Corp:bob?"), "{spaced}");

        // User names may contain the label separator ':' (found by the otpauth_uri
        // fuzz target: enrolment failed for such users); it is shown as U+FF1A.
        let colon = otpauth_uri(SEED_SHA1, "Two:fold", "a:b@acme").unwrap();
        assert!(colon.starts_with("otpauth://totp/Two%EF%BC%9Afold:a%EF%BC%9Ab%40acme?"), "{colon}");
        assert!(colon.contains("issuer=Two%EF%BC%9Afold"), "{colon}");
        let parsed = Totp::from_url(&colon).unwrap();
        assert_eq!(parsed.account_name(), "a\u{FF1A}b@acme");
        assert_eq!(parsed.issuer(), Some("Two\u{FF1A}fold"));
        assert!(otpauth_uri(SEED_SHA1, "Twofold", "").is_err());
        // Also found by fuzzing: without an issuer a user named "." got a URI whose
        // label parsers drop as a dot segment. The issuer is required, and with it the
        // label is never a dot segment.
        assert!(otpauth_uri(SEED_SHA1, " ", "alice").is_err());
        for dots in [".", ".."] {
            let uri = otpauth_uri(SEED_SHA1, "Twofold", dots).unwrap();
            assert_eq!(Totp::from_url(&uri).unwrap().account_name(), dots, "{uri}");
        }
        let err = otpauth_uri(&[1; 15], "Twofold", "alice").unwrap_err().to_string();
        assert!(!err.contains(&secret_base32(&[1; 15])), "{err}");
    }

    #[test]
    fn qr_png_is_a_png() {
        let uri = otpauth_uri(&generate_secret(), "Twofold", "alice@example.com").unwrap();
        let png = qr_png(&uri).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        let image = qrcodegen_image::image::load_from_memory(&png).unwrap();
        assert_eq!(image.width(), image.height());
        assert!(image.width() >= 21 * 8);

        let err = qr_png(&"x".repeat(10_000)).unwrap_err().to_string();
        assert!(!err.contains("xxxx"), "{err}");
    }
}
