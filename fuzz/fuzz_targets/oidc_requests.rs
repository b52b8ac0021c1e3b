//! What the OpenID Connect provider parses before it knows who is asking: the query of
//! an authorization request, the token endpoint's form and its `Authorization: Basic`
//! header.
//!
//! Properties: nothing panics; a query or form with a repeated parameter is refused and
//! an accepted one has each name once and survives re-encoding unchanged; an accepted
//! authorization request never holds a scope the client was not allowed, always holds
//! `openid`, carries PKCE where the client is public, only an S256-sized challenge, a
//! lone `prompt=none`, a non-negative `max_age` and bounded `state`, `nonce` and
//! `login_hint`; any client id and secret encoded as RFC 6749 section 2.3.1 says decode
//! back to themselves.
#![no_main]

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use twofold_server::db::oidc::ApplicationRow;
use twofold_server::oidc::authorize::{parse_params, query_pairs};
use twofold_server::oidc::token::{basic_credentials, form_params};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    query: &'a str,
    form: &'a [u8],
    header: &'a str,
    client_id: &'a str,
    secret: &'a str,
    public: bool,
    allowed: u8,
}

const SCOPES: [&str; 5] = ["openid", "profile", "email", "phone", "offline_access"];

fuzz_target!(|input: Input<'_>| {
    authorization_query(&input);
    token_form(input.form);
    basic_header(&input);
});

fn application(public: bool, allowed: u8) -> ApplicationRow {
    let allowed: Vec<&str> =
        SCOPES.iter().enumerate().filter(|(i, _)| allowed & (1 << i) != 0).map(|(_, s)| *s).collect();
    ApplicationRow {
        id: "0193a000-0000-7000-8000-000000000000".to_owned(),
        scope_key: "host".to_owned(),
        name: "Fuzz".to_owned(),
        client_type: if public { "public" } else { "confidential" }.to_owned(),
        secret_hash: None,
        redirect_uris: "[]".to_owned(),
        post_logout_redirect_uris: "[]".to_owned(),
        allowed_scopes: allowed.join(" "),
        first_party: 1,
        require_two_factor: 0,
        min_strength: None,
        max_age_seconds: None,
        token_alg: "RS256".to_owned(),
        created_at: 0,
        updated_at: 0,
    }
}

fn authorization_query(input: &Input<'_>) {
    let Ok(pairs) = query_pairs(input.query) else {
        let names: Vec<String> =
            url::form_urlencoded::parse(input.query.as_bytes()).map(|(k, _)| k.into_owned()).collect();
        assert!(
            names.len() > names.iter().collect::<HashSet<_>>().len(),
            "refused without a repeat: {:?}",
            input.query
        );
        return;
    };
    let names: HashSet<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names.len(), pairs.len(), "a repeated parameter was accepted");
    let app = application(input.public, input.allowed);
    let Ok(p) = parse_params(&app, &pairs, "client", "https://rp.example/cb") else { return };
    let allowed: Vec<&str> = app.allowed_scopes.split(' ').collect();
    assert!(p.scopes.iter().all(|s| allowed.contains(&s.as_str())), "{:?} beyond {allowed:?}", p.scopes);
    assert!(p.scopes.iter().any(|s| s == "openid"));
    match &p.code_challenge {
        Some(c) => assert!(c.len() == 43 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')),
        None => assert!(!input.public, "a public client without PKCE"),
    }
    assert!(!(p.prompt_none && (p.prompt_login || p.prompt_consent)), "prompt=none with another value");
    assert!(p.max_age.is_none_or(|m| m >= 0));
    assert!(p.state.as_ref().is_none_or(|s| s.len() <= 1024));
    assert!(p.nonce.as_ref().is_none_or(|s| s.len() <= 512));
    assert!(p.login_hint.as_ref().is_none_or(|s| s.len() <= 256));
}

fn token_form(body: &[u8]) {
    let Ok(form) = form_params(body) else { return };
    let again: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&form).finish();
    let reparsed = form_params(again.as_bytes()).unwrap_or_else(|_| panic!("re-encoded form refused: {again:?}"));
    assert_eq!(form, reparsed);
}

fn basic_header(input: &Input<'_>) {
    // Whatever arrives: no panic, and only `Basic` values are read.
    assert_eq!(basic_credentials(input.header).is_some(), input.header.starts_with("Basic "));
    // What a client library sends decodes to exactly its id and secret.
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let header = format!("Basic {}", STANDARD.encode(format!("{}:{}", enc(input.client_id), enc(input.secret))));
    assert_eq!(
        basic_credentials(&header),
        Some(Some((input.client_id.to_owned(), input.secret.to_owned()))),
        "{header}"
    );
}
