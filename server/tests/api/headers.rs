//! What browsers are told about every response (Content-Security-Policy, framing,
//! sniffing, referrers, HSTS), on the API and on the web app alike; how the web app is
//! cached and compressed; and the server speaking HTTPS itself with a certificate the
//! test makes.

use std::path::Path;

use reqwest::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH,
    STRICT_TRANSPORT_SECURITY, VARY,
};
use reqwest::{Method, StatusCode};
use twofold_server::app::CONTENT_SECURITY_POLICY as POLICY;

use crate::helpers::{ADMIN_PASSWORD, ADMIN_USERNAME, Client, Options, Resp, TestApp};

const HSTS: &str = "max-age=31536000; includeSubDomains";

const BOOT: &str = "/boot-0123456789abcdef.js";
const WASM: &str = "/app_bg-fedcba9876543210.wasm";
const FAVICON: &[u8] = include_bytes!("../../../web/favicon.ico");

/// A stand-in for the built web app, shaped like what `scripts/build-web` puts in
/// `web/dist`: hashed names, with brotli and gzip copies beside the wasm. The copies'
/// bytes are only markers: the server never looks inside them.
fn web_dir(dir: &Path) -> std::path::PathBuf {
    let web = dir.join("web");
    std::fs::create_dir_all(&web).unwrap();
    let index = format!("<!doctype html><title>Twofold</title><script type=\"module\" src=\"{BOOT}\"></script>");
    std::fs::write(web.join("index.html"), index).unwrap();
    std::fs::write(web.join(&BOOT[1..]), "import init from \"/app-0123456789abcdef.js\";").unwrap();
    std::fs::write(web.join(&WASM[1..]), "plain wasm").unwrap();
    std::fs::write(web.join(format!("{}.br", &WASM[1..])), "brotli wasm").unwrap();
    std::fs::write(web.join(format!("{}.gz", &WASM[1..])), "gzip wasm").unwrap();
    std::fs::write(web.join("favicon.ico"), FAVICON).unwrap();
    web
}

fn header(resp: &Resp, name: reqwest::header::HeaderName) -> Option<&str> {
    resp.headers.get(name).map(|v| v.to_str().unwrap())
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
    let script = app.get(BOOT).await.assert_status(StatusCode::OK);
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
async fn web_app_files_are_sent_precompressed_as_the_browser_accepts() {
    let files = tempfile::tempdir().unwrap();
    let web = web_dir(files.path());
    let app = TestApp::spawn_configured(Options::default(), |c| c.web_dir = web).await;
    for (accept, encoding, body) in [
        ("br", Some("br"), "brotli wasm"),
        ("gzip", Some("gzip"), "gzip wasm"),
        ("gzip;q=0.5, br", Some("br"), "brotli wasm"),
        ("br;q=0.1, gzip", Some("gzip"), "gzip wasm"),
        ("identity", None, "plain wasm"),
    ] {
        let request = app.raw(Method::GET, WASM).header(ACCEPT_ENCODING, accept);
        let resp = app.send(request).await.assert_status(StatusCode::OK);
        assert_eq!(header(&resp, CONTENT_ENCODING), encoding, "Accept-Encoding: {accept}");
        assert_eq!(resp.text(), body, "Accept-Encoding: {accept}");
        assert_eq!(header(&resp, CONTENT_TYPE), Some("application/wasm"), "Accept-Encoding: {accept}");
        assert!(
            resp.headers.get_all(VARY).iter().any(|v| v.to_str().unwrap().to_lowercase().contains("accept-encoding")),
            "Accept-Encoding: {accept}: {:?}",
            resp.headers
        );
    }
    // No Accept-Encoding at all: the file as it is.
    let plain = app.get(WASM).await.assert_status(StatusCode::OK);
    assert_eq!(plain.text(), "plain wasm");
    assert!(plain.headers.get(CONTENT_ENCODING).is_none());
}

#[tokio::test]
async fn hashed_files_are_immutable_index_revalidates_and_the_api_is_never_stored() {
    let files = tempfile::tempdir().unwrap();
    let web = web_dir(files.path());
    let app = TestApp::spawn_configured(Options::default(), |c| c.web_dir = web.clone()).await;

    for path in [WASM, BOOT] {
        let resp = app.get(path).await.assert_status(StatusCode::OK);
        assert_eq!(header(&resp, CACHE_CONTROL), Some("public, max-age=31536000, immutable"), "{path}");
    }

    let index = app.get("/").await.assert_status(StatusCode::OK);
    assert_eq!(header(&index, CACHE_CONTROL), Some("no-cache"));
    assert_eq!(header(&index, CONTENT_TYPE), Some("text/html; charset=utf-8"));
    let etag = header(&index, ETAG).expect("index.html has an ETag").to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2, "{etag}");
    for path in ["/index.html", "/settings", "/tenants/some-tenant/users"] {
        let page = app.get(path).await.assert_status(StatusCode::OK);
        assert_eq!(page.body, index.body, "{path}");
        assert_eq!(header(&page, ETAG), Some(etag.as_str()), "{path}");
        assert_eq!(header(&page, CACHE_CONTROL), Some("no-cache"), "{path}");
    }

    // A browser that has this index.html gets an empty 304, also for a weak or listed tag.
    for tag in [etag.clone(), format!("W/{etag}"), format!("\"other\", {etag}")] {
        let resp = app.send(app.raw(Method::GET, "/settings").header(IF_NONE_MATCH, &tag)).await;
        let resp = resp.assert_status(StatusCode::NOT_MODIFIED);
        assert!(resp.body.is_empty());
        assert_eq!(header(&resp, ETAG), Some(etag.as_str()));
        assert_eq!(header(&resp, CACHE_CONTROL), Some("no-cache"));
    }
    // A new build changes the tag, and the old one no longer matches.
    std::fs::write(web.join("index.html"), "<!doctype html><title>Twofold, rebuilt</title>").unwrap();
    let rebuilt = app.send(app.raw(Method::GET, "/").header(IF_NONE_MATCH, &etag)).await.assert_status(StatusCode::OK);
    assert!(rebuilt.text().contains("rebuilt"));
    assert_ne!(header(&rebuilt, ETAG), Some(etag.as_str()));

    // A file that is not there is a 404, never index.html (a browser would try to run it).
    for path in ["/app-0000000000000000.js", "/missing.wasm", "/style.css"] {
        let resp = app.get(path).await.assert_status(StatusCode::NOT_FOUND);
        assert!(!resp.text().contains("<title>"), "{path}: {}", resp.text());
        assert_eq!(header(&resp, CACHE_CONTROL), Some("no-store"), "{path}");
    }

    // The API is never stored, answers and errors alike.
    for path in ["/api/openapi.json", "/api/auth/me", "/health", "/api/nowhere"] {
        let resp = app.get(path).await;
        assert_eq!(header(&resp, CACHE_CONTROL), Some("no-store"), "{path}");
        assert!(resp.headers.get(ETAG).is_none(), "{path}");
    }
    app.sign_in_admin().await;
    let me = app.me().await.assert_status(StatusCode::OK);
    assert_eq!(header(&me, CACHE_CONTROL), Some("no-store"));
}

#[tokio::test]
async fn the_favicon_is_an_icon_never_the_app() {
    let files = tempfile::tempdir().unwrap();
    let web = web_dir(files.path());
    let app = TestApp::spawn_configured(Options::default(), |c| c.web_dir = web.clone()).await;
    let icon = app.get("/favicon.ico").await.assert_status(StatusCode::OK);
    assert_eq!(header(&icon, CONTENT_TYPE), Some("image/x-icon"));
    assert_eq!(icon.body, FAVICON);
    assert_eq!(header(&icon, CACHE_CONTROL), Some("public, max-age=86400"));
    assert_browser_headers(&icon, "the favicon");

    // The committed icon is a real ICO: reserved 0, type 1 (icon), at least one image.
    assert!(FAVICON.starts_with(&[0, 0, 1, 0]));
    assert!(u16::from_le_bytes([FAVICON[4], FAVICON[5]]) >= 1);

    std::fs::remove_file(web.join("favicon.ico")).unwrap();
    let missing = app.get("/favicon.ico").await.assert_status(StatusCode::NOT_FOUND);
    assert!(!missing.text().contains("<title>"), "{}", missing.text());
}

/// The real build, when there is one (`scripts/test` builds it before the tests):
/// index.html names hashed files that exist; the app's script and wasm have brotli and
/// gzip copies, and every copy sent is smaller than the original.
#[tokio::test]
async fn the_built_web_app_names_hashed_precompressed_files() {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/dist");
    if !dist.join("index.html").exists() {
        eprintln!("web/dist is not built (scripts/build-web); skipping the check of the real build");
        return;
    }
    let app = TestApp::spawn_configured(Options::default(), |c| c.web_dir = dist.clone()).await;
    let index = app.get("/").await.assert_status(StatusCode::OK).text();
    let named: Vec<&str> =
        index.split('"').filter(|s| s.starts_with('/') && twofold_server::web::is_hashed_asset(s)).collect();
    for prefix in ["/boot-", "/app-", "/app_bg-", "/style-"] {
        assert!(named.iter().any(|n| n.starts_with(prefix)), "index.html names no {prefix}…: {index}");
    }
    assert!(index.contains("/favicon.ico"), "{index}");
    for name in named {
        let plain = app.get(name).await.assert_status(StatusCode::OK);
        assert_eq!(header(&plain, CACHE_CONTROL), Some("public, max-age=31536000, immutable"), "{name}");
        let big = name.starts_with("/app-") || name.starts_with("/app_bg-");
        for encoding in ["br", "gzip"] {
            let resp = app.send(app.raw(Method::GET, name).header(ACCEPT_ENCODING, encoding)).await;
            let resp = resp.assert_status(StatusCode::OK);
            match header(&resp, CONTENT_ENCODING) {
                Some(sent) => {
                    assert_eq!(sent, encoding, "{name}");
                    assert!(resp.body.len() < plain.body.len(), "{name} in {encoding} is not smaller");
                }
                None => assert!(!big, "{name} has no {encoding} copy"),
            }
        }
    }
    let icon = app.get("/favicon.ico").await.assert_status(StatusCode::OK);
    assert_eq!(header(&icon, CONTENT_TYPE), Some("image/x-icon"));
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
