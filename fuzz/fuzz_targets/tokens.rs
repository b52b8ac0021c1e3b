//! Cookies and tokens: the `Cookie` header as the session, pending sign-in and
//! remember-browser extractors read it; signed remember-browser tokens; encrypted
//! authenticator secrets read back from storage; ids in URL paths.
//!
//! Properties: a token this server signed verifies to itself and any one-byte change,
//! truncation or extension of it fails; an arbitrary string never verifies; an
//! encrypted secret decrypts only for its owner and only untouched; an accepted path id
//! is canonical.
#![no_main]

use std::sync::LazyLock;

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::IntoResponse;
use axum_extra::extract::CookieJar;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use twofold_server::auth::token_hash;
use twofold_server::config::Config;
use twofold_server::extract::parse_id;
use twofold_server::secrets::Keys;

static KEYS: LazyLock<Keys> = LazyLock::new(|| Keys::from_bytes([7; 32]));

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    cookie_headers: Vec<&'a [u8]>,
    signed: &'a str,
    token: &'a str,
    flip_at: usize,
    flip_to: u8,
    cut_at: usize,
    suffix: &'a str,
    stored: &'a str,
    aad: &'a str,
    plaintext: &'a [u8],
    path_id: &'a str,
}

fuzz_target!(|input: Input<'_>| {
    cookies(&input.cookie_headers);
    signed_tokens(&input);
    stored_secrets(&input);
    path_ids(input.path_id);
});

fn cookies(raw_headers: &[&[u8]]) {
    let mut headers = HeaderMap::new();
    for raw in raw_headers.iter().take(8) {
        if let Ok(value) = HeaderValue::from_bytes(raw) {
            headers.append(header::COOKIE, value);
        }
    }
    let jar = CookieJar::from_headers(&headers);
    for config in [Config::default(), Config { cookie_secure: false, ..Config::default() }] {
        let names = [
            config.session_cookie_name().to_owned(),
            config.pending_cookie_name().to_owned(),
            config.remember_cookie(),
        ];
        for name in names {
            if let Some(cookie) = jar.get(&name) {
                assert_eq!(token_hash(cookie.value()).len(), 64);
                // Nobody but the server can make a valid signature.
                assert_eq!(KEYS.verify_signed_token(cookie.value()), None, "a forged token verified");
            }
        }
    }
}

fn signed_tokens(input: &Input<'_>) {
    // Arbitrary input: only this server's signatures verify.
    assert_eq!(KEYS.verify_signed_token(input.signed), None, "a forged token verified");

    let signed = KEYS.sign_token(input.token);
    assert_eq!(KEYS.verify_signed_token(&signed).as_deref(), Some(input.token));
    // Another key never accepts it.
    assert_eq!(Keys::from_bytes([8; 32]).verify_signed_token(&signed), None);

    // One byte changed to another ASCII byte.
    let mut bytes = signed.clone().into_bytes();
    let at = input.flip_at % bytes.len();
    let to = input.flip_to & 0x7f;
    if bytes[at] != to {
        bytes[at] = to;
        if let Ok(mutated) = String::from_utf8(bytes) {
            assert_eq!(KEYS.verify_signed_token(&mutated), None, "a changed token verified: {mutated:?}");
        }
    }
    // Truncated anywhere, or extended.
    let cut = input.cut_at % signed.len();
    if signed.is_char_boundary(cut) {
        assert_eq!(KEYS.verify_signed_token(&signed[..cut]), None, "a truncated token verified");
    }
    if !input.suffix.is_empty() {
        let longer = format!("{signed}{}", input.suffix);
        assert_eq!(KEYS.verify_signed_token(&longer), None, "an extended token verified");
    }
}

fn stored_secrets(input: &Input<'_>) {
    // A corrupt or foreign row is refused, never a panic.
    assert!(KEYS.decrypt_secret(input.stored, input.aad).is_err(), "an arbitrary value decrypted");

    let stored = KEYS.encrypt_secret(input.plaintext, input.aad);
    let plain = KEYS.decrypt_secret(&stored, input.aad).unwrap_or_else(|e| panic!("round trip failed: {e}"));
    assert_eq!(plain.as_slice(), input.plaintext);
    let other_owner = format!("{}x", input.aad);
    assert!(KEYS.decrypt_secret(&stored, &other_owner).is_err(), "decrypted for another owner");

    let mut bytes = stored.into_bytes();
    let at = input.flip_at % bytes.len();
    let to = input.flip_to & 0x7f;
    if bytes[at] != to {
        bytes[at] = to;
        if let Ok(mutated) = String::from_utf8(bytes) {
            assert!(KEYS.decrypt_secret(&mutated, input.aad).is_err(), "a changed ciphertext decrypted");
        }
    }
}

fn path_ids(raw: &str) {
    match parse_id(raw, "thing") {
        Ok(id) => {
            assert_eq!(id.len(), 36);
            assert!(id.bytes().all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            assert_eq!(parse_id(&id, "thing").ok().as_deref(), Some(id.as_str()), "not canonical");
        }
        Err(e) => assert_eq!(e.into_response().status(), 404),
    }
}
