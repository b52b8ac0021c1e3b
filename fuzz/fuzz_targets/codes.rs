//! Second-factor codes as users type them: authenticator codes (TOTP), emailed and
//! texted six-digit codes, recovery codes, base32 authenticator keys and phone numbers
//! (with their country calling codes).
//!
//! Besides "no panic", every accepted input must mean what the acceptance claims: a
//! verified TOTP code is the one of the returned step, inside the window and after the
//! replay barrier; a genuine code always verifies; normalisers are idempotent; a keyed
//! code hash verifies exactly the code it was made from.
#![no_main]

use std::sync::LazyLock;

use axum::response::IntoResponse;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use twofold_policy::ScopeSettings;
use twofold_policy::vocab::{calling_code, is_calling_code};
use twofold_server::factors::{self, RECOVERY_CODE_LEN};
use twofold_server::secrets::Keys;
use twofold_server::totp;

static KEYS: LazyLock<Keys> = LazyLock::new(|| Keys::from_bytes([7; 32]));
/// The one code that is "live" in this target's pretend database.
const LIVE_CODE: &str = "042917";
const LIVE_RECOVERY: &str = "abcdefghjk";

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    secret: &'a [u8],
    code: &'a str,
    now: u64,
    last_used_step: Option<u64>,
    /// Where to put whitespace into a genuine code (one bit per gap).
    spacing: u8,
    base32: &'a str,
    numeric: &'a str,
    binding: &'a str,
    recovery: &'a str,
    phone: &'a str,
    email: &'a str,
}

fuzz_target!(|input: Input<'_>| {
    totp_codes(&input);
    base32_keys(input.base32);
    numeric_codes(input.numeric, input.binding);
    recovery_codes(input.recovery, input.binding);
    phones(input.phone);
    let _ = factors::mask_email(input.email);
});

fn totp_codes(input: &Input<'_>) {
    let current = input.now / 30;
    if let Some(step) = totp::verify(input.secret, input.code, input.now, input.last_used_step) {
        assert!(input.secret.len() >= 16, "a short secret verified");
        let digits: String = input.code.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        assert!(digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit()), "{:?} verified", input.code);
        assert!(step + 1 >= current && step <= current + 1, "step {step} outside the window of {current}");
        assert!(input.last_used_step.is_none_or(|last| step > last), "a used step was accepted again");
        assert_eq!(totp::code_at(input.secret, step * 30), digits, "verified code is not the step's code");
    }

    // The code an app shows right now, typed with arbitrary spaces, verifies once.
    if input.secret.len() >= 16 {
        let genuine = totp::code_at(input.secret, input.now);
        let mut typed = String::new();
        for (i, c) in genuine.chars().enumerate() {
            typed.push(c);
            if input.spacing & (1 << i) != 0 {
                typed.push(' ');
            }
        }
        let step = totp::verify(input.secret, &typed, input.now, None);
        assert!(step.is_some_and(|s| s >= current), "the current code {typed:?} did not verify");
        if let Some(step) = step {
            // The latest matching step is returned; the same code is never accepted
            // twice.
            assert_eq!(totp::verify(input.secret, &typed, input.now, Some(step)), None);
        }
    }
}

fn base32_keys(typed: &str) {
    if let Some(secret) = totp::normalize_base32(typed) {
        assert!(secret.len() >= 16);
        let canonical = totp::secret_base32(&secret);
        assert_eq!(totp::normalize_base32(&canonical).as_deref(), Some(secret.as_slice()));
        assert_eq!(totp::normalize_base32(&canonical.to_lowercase()).as_deref(), Some(secret.as_slice()));
    }
}

fn numeric_codes(typed: &str, binding: &str) {
    let live = KEYS.code_hash("email-signin", binding, LIVE_CODE);
    match factors::typed_numeric_code(typed) {
        Some(code) => {
            assert!(code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()));
            assert_eq!(code, typed.trim());
            assert_eq!(KEYS.verify_code_hash("email-signin", binding, code, &live), code == LIVE_CODE);
            // Bound to purpose and binding: the same code never verifies elsewhere.
            assert!(!KEYS.verify_code_hash("sms-signin", binding, code, &live));
            let other = format!("{binding}x");
            assert!(!KEYS.verify_code_hash("email-signin", &other, code, &live));
        }
        None => assert_ne!(typed.trim(), LIVE_CODE),
    }
    // Whatever the stored value (a corrupt row), comparison never panics.
    let _ = KEYS.verify_code_hash("email-signin", binding, LIVE_CODE, typed);
}

fn recovery_codes(typed: &str, user_id: &str) {
    let normalized = factors::normalize_recovery(typed);
    assert!(normalized.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    assert_eq!(factors::normalize_recovery(&normalized), normalized, "normalising twice changed the code");
    if normalized.len() == RECOVERY_CODE_LEN {
        let live = KEYS.code_hash("recovery", user_id, LIVE_RECOVERY);
        assert_eq!(KEYS.verify_code_hash("recovery", user_id, &normalized, &live), normalized == LIVE_RECOVERY);
    }
    // The form codes are shown in (`xxxxx-xxxxx`), in any case, normalises back.
    if normalized.len() == RECOVERY_CODE_LEN {
        let shown = format!("{}-{}", &normalized[..5], &normalized[5..]).to_uppercase();
        assert_eq!(factors::normalize_recovery(&shown), normalized);
    }
}

fn phones(typed: &str) {
    if let Some(code) = calling_code(typed) {
        assert!(is_calling_code(code), "{typed:?} starts with {code:?}, which is not a code");
    }
    match factors::parse_phone(typed) {
        Ok(phone) => {
            let digits = phone.strip_prefix('+').unwrap_or_else(|| panic!("{phone:?} has no '+'"));
            assert!((8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()), "{phone:?}");
            assert_eq!(factors::parse_phone(&phone).ok().as_deref(), Some(phone.as_str()), "not idempotent");
            let masked = factors::mask_phone(&phone);
            assert_eq!(masked, format!("***{}", &phone[phone.len() - 4..]));
            // Every accepted number has exactly one country calling code, and only that
            // code (of all codes) lets a text go to it.
            let code = calling_code(&phone).unwrap_or_else(|| panic!("{phone:?} has no calling code"));
            assert!(is_calling_code(code) && digits.starts_with(code), "{phone:?}: {code:?}");
            let only = ScopeSettings { sms_allowed_country_codes: vec![code.to_owned()], ..ScopeSettings::default() };
            assert!(only.validate().is_ok() && only.sms_allowed_to(&phone), "{phone:?}");
            let longer = &digits[..code.len() + 1];
            assert!(!is_calling_code(longer), "{longer:?} and {code:?} are both calling codes");
        }
        Err(e) => assert_eq!(e.into_response().status(), 400),
    }
}
