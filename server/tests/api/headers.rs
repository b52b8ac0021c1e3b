//! What browsers are told about every response (Content-Security-Policy, framing,
//! sniffing, referrers, HSTS), on the API and on the web app alike, and the server
//! speaking HTTPS itself with a certificate the test makes.

use std::path::Path;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, STRICT_TRANSPORT_SECURITY};
use twofold_server::app::CONTENT_SECURITY_POLICY as POLICY;

use crate::helpers::{ADMIN_PASSWORD, ADMIN_USERNAME, Client, Options, Resp, TestApp};

const HSTS: &str = "max-age=31536000; includeSubDomains";

/// A stand-in for the built web app: what `scripts/build-web` puts in `web/dist`.
fn web_dir(dir: &Path) -> std::path::PathBuf {
    let web = dir.join("web");
    std::fs::create_dir_all(&web).unwrap();
    std::fs::write(web.join("index.html"), "<!doctype html><title>Twofold</title>").unwrap();
    std::fs::write(web.join("boot.js"), "import init from \"/app.js\";").unwrap();
    web
}

#[track_caller]
fn assert_browser_headers(resp: &Resp, what: &str) {
    let h = &resp.headers;
    assert_eq!(h.get("x-content-type-options").map(|v| v.to_str().unwrap()), Some("nosniff"), "{what}");
    assert_eq!(h.get("x-frame-options").map(|v| v.to_str().unwrap()), Some("DENY"), "{what}");
    assert_eq!(h.get("referrer-policy").map(|v| v.to_str().unwrap()), Some("no-referrer"), "{what}");
    assert_eq!(h.get(CONTENT_SECURITY_POLICY).map(|v| v.to_str().unwrap()), Some(POLICY), "{what}");
}

#[test]
fn the_policy_allows_no_inline_code_and_no_framing() {
    let directives: Vec<&str> = POLICY.split(';').map(str::trim).collect();
    for wanted in [
        "default-src 'none'",
        "script-src 'self' 'wasm-unsafe-eval'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(directives.contains(&wanted), "{wanted:?} missing from {POLICY:?}");
    }
    assert!(!POLICY.contains("unsafe-inline") && !POLICY.contains("'unsafe-eval'"), "{POLICY}");
    // A header value must stay on one line.
    assert!(!POLICY.contains('\n') && !POLICY.contains("  "), "{POLICY:?}");
}

#[tokio::test]
async fn api_and_web_app_responses_carry_the_browser_headers_without_hsts_over_http() {
    let files = tempfile::tempdir().unwrap();
    let web = web_dir(files.path());
    let app = TestApp::spawn_configured(Options::default(), |c| c.web_dir = web).await;

    let index = app.get("/").await.assert_status(StatusCode::OK);
    assert!(index.text().contains("<title>Twofold</title>"), "{}", index.text());
    let deep_link = app.get("/tenants/some-tenant/settings").await.assert_status(StatusCode::OK);
    assert_eq!(deep_link.body, index.body, "deep links get index.html");
    let script = app.get("/boot.js").await.assert_status(StatusCode::OK);
    let api_error = app.get("/api/auth/me").await;
    api_error.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    let csrf_refusal = app.send(app.raw(reqwest::Method::POST, "/api/auth/sign-out")).await;
    csrf_refusal.assert_error(StatusCode::FORBIDDEN, "csrf_header_missing");
    let health = app.get("/health").await.assert_status(StatusCode::OK);

    for (resp, what) in [
        (&index, "index.html"),
        (&deep_link, "a deep link"),
        (&script, "a static file"),
        (&api_error, "an API error"),
        (&csrf_refusal, "a CSRF refusal"),
        (&health, "the health probe"),
    ] {
        assert_browser_headers(resp, what);
        assert!(resp.headers.get(STRICT_TRANSPORT_SECURITY).is_none(), "HSTS over plain HTTP on {what}");
    }
}

#[tokio::test]
async fn hsts_can_be_sent_over_http_for_a_tls_terminating_proxy() {
    let app = TestApp::spawn_configured(Options::default(), |c| c.hsts = true).await;
    let resp = app.get("/health").await.assert_status(StatusCode::OK);
    assert_eq!(resp.headers[STRICT_TRANSPORT_SECURITY], HSTS);
    assert_browser_headers(&resp, "health behind a proxy");
}

/// A self-signed certificate for `localhost`, written as PEM files; returns the
/// certificate's PEM for the client to trust.
fn self_signed(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, signing_key.serialize_pem()).unwrap();
    (cert_path, key_path, cert.pem())
}

#[tokio::test]
async fn https_serves_the_api_and_web_app_with_hsts_and_secure_cookies() {
    let files = tempfile::tempdir().unwrap();
    let (cert, key, ca_pem) = self_signed(files.path());
    let web = web_dir(files.path());
    // Secure `__Host-` cookies: the configuration direct TLS is for.
    let options = Options { cookie_secure: true, ..Options::default() };
    let app = TestApp::spawn_configured(options, |c| {
        c.tls_cert_path = Some(cert);
        c.tls_key_path = Some(key);
        c.web_dir = web;
    })
    .await;
    let client = Client::https(app.running.addr, &ca_pem);

    let index = client.get("/").await.assert_status(StatusCode::OK);
    assert!(index.text().contains("<title>Twofold</title>"), "{}", index.text());
    // Sign-in reads the client address (rate limits), so this also proves the address
    // still reaches handlers under TLS; the session cookie then travels back.
    let signed_in = client.sign_in(None, ADMIN_USERNAME, ADMIN_PASSWORD).await.assert_status(StatusCode::OK);
    assert!(signed_in.set_cookie("__Host-twofold_session").is_some(), "{:?}", signed_in.set_cookies());
    let me = client.me().await.assert_status(StatusCode::OK);
    assert_eq!(me.json()["username"], ADMIN_USERNAME, "{}", me.text());

    for (resp, what) in [(&index, "index.html over TLS"), (&signed_in, "sign-in over TLS"), (&me, "me over TLS")] {
        assert_browser_headers(resp, what);
        assert_eq!(resp.headers.get(STRICT_TRANSPORT_SECURITY).map(|v| v.to_str().unwrap()), Some(HSTS), "{what}");
    }

    // The TLS port speaks nothing else: a plain-HTTP request gets no answer.
    let plain = reqwest::Client::new().get(format!("http://{}/health", app.running.addr)).send().await;
    assert!(plain.is_err(), "plain HTTP was answered on the TLS port: {plain:?}");
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_certificate_is_refused() {
    let files = tempfile::tempdir().unwrap();
    let (cert, key, _) = self_signed(files.path());
    let other = files.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let (_, _, other_pem) = self_signed(&other);
    let app = TestApp::spawn_configured(Options::default(), |c| {
        c.tls_cert_path = Some(cert);
        c.tls_key_path = Some(key);
    })
    .await;
    // Trusting some other self-signed certificate is not trusting this server's.
    let client = Client::https(app.running.addr, &other_pem);
    let err = client.http.get(client.url("/health")).send().await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
}

#[tokio::test]
async fn an_unreadable_certificate_stops_the_start_and_names_the_setting() {
    let files = tempfile::tempdir().unwrap();
    let (_, key, _) = self_signed(files.path());
    let missing = files.path().join("missing.pem");
    let err = TestApp::try_spawn_configured(Options::default(), |c| {
        c.tls_cert_path = Some(missing);
        c.tls_key_path = Some(key.clone());
    })
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("tls_cert_path"), "{err:#}");

    let garbage = files.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let err = TestApp::try_spawn_configured(Options::default(), |c| {
        c.tls_cert_path = Some(garbage);
        c.tls_key_path = Some(key);
    })
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("tls_cert_path"), "{err:#}");
}
