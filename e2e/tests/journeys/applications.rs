//! Journey 11: an application signs its users in through Twofold (OpenID Connect).
//! The application is played by a loopback listener that answers its redirect URI, and
//! by plain HTTP calls to the token endpoint; every screen in between is the web app in
//! Chromium: sign-in for the application, enrolment of a stronger factor, consent,
//! step-up without the password, and a refused consent.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use serde_json::{Value, json};
use twofold_e2e::ids;

use crate::world::World;

const PASSWORD: &str = "correct horse battery";
/// RFC 7636 appendix B: the verifier and its S256 challenge.
pub(crate) const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub(crate) const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// The application's redirect URI: a listener that answers every request with a small
/// page, so the browser shows something real where the application would be.
pub(crate) fn application_listener() -> String {
    let listener = match TcpListener::bind((Ipv4Addr::LOCALHOST, 0)) {
        Ok(l) => l,
        Err(e) => panic!("no port for the application: {e}"),
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let body = "<!doctype html><title>Wiki</title><h1>Wiki</h1>";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://127.0.0.1:{port}/callback")
}

pub(crate) fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Waits until the browser is at the application; returns the query it brought.
pub(crate) async fn at_application(w: &World, redirect: &str) -> HashMap<String, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let here = w.browser.current_url().await.map(|u| u.to_string()).unwrap_or_default();
        if here.starts_with(redirect) {
            let url = url::Url::parse(&here).unwrap_or_else(|e| panic!("{here}: {e}"));
            return url.query_pairs().into_owned().collect();
        }
        assert!(Instant::now() < deadline, "the browser stayed at {here}, never reached the application");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD.decode(payload).unwrap_or_else(|e| panic!("ID token payload: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("ID token claims: {e}"))
}

/// The application's back channel: the code for tokens, as any client library would.
pub(crate) async fn redeem(issuer: &str, client_id: &str, secret: &str, code: &str, redirect: &str) -> Value {
    let form = format!(
        "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={VERIFIER}",
        enc(code),
        enc(redirect)
    );
    let resp = reqwest::Client::new()
        .post(format!("{issuer}/oauth2/token"))
        .basic_auth(client_id, Some(secret))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap_or_else(|e| panic!("token endpoint: {e}"));
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    claims_of(body["id_token"].as_str().unwrap_or_else(|| panic!("no id_token in {body}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_signs_in_through_twofold_with_enrolment_consent_and_step_up() {
    let mut w = World::start("11-application-sign-in").await;
    let api = w.api();
    api.sign_in_admin().await;
    let acme = api.tenant("acme").await;
    api.user(&acme, "alice", PASSWORD, None).await;
    let redirect = application_listener();
    // A third-party application (consent asked) that wants an authenticator app.
    let created = api
        .ok(
            Method::POST,
            &format!("/api/tenants/{acme}/applications"),
            Some(json!({
                "name": "Wiki", "client_type": "confidential", "redirect_uris": [redirect],
                "allowed_scopes": ["openid", "profile", "email"], "first_party": false,
                "require_two_factor": true, "min_strength": "app"
            })),
        )
        .await;
    let client_id = created["application"]["client_id"].as_str().unwrap_or_default().to_owned();
    let secret = created["client_secret"].as_str().unwrap_or_default().to_owned();
    let issuer = created["application"]["issuer"].as_str().unwrap_or_default().to_owned();
    assert_eq!(issuer, format!("{}/t/acme", w.base));
    // Each request carries its own `state`, and any extra parameters.
    let authorize = |state: &str, extra: &str| {
        format!(
            "/t/acme/oauth2/authorize?response_type=code&client_id={client_id}&redirect_uri={}\
             &scope=openid%20profile&state={state}&nonce=n1&code_challenge={CHALLENGE}\
             &code_challenge_method=S256{extra}",
            enc(&redirect)
        )
    };

    // 1. The application sends alice here; the request already names her tenant.
    w.goto(&authorize("first", "")).await;
    let intro = w.wait_text(&format!("#{}", ids::AUTHORIZE_APPLICATION), "Wiki").await;
    let request_page = w.browser.current_url().await.map(|u| u.to_string()).unwrap_or_default();
    assert!(request_page.starts_with(&format!("{}/sign-in?request=", w.base)), "{request_page}");
    assert_eq!(intro, "to continue to Wiki");
    assert!(w.absent(&format!("#{}", ids::SIGNIN_TENANT)).await, "no tenant to type: the issuer names it");
    w.fill(ids::SIGNIN_USERNAME, "alice").await;
    w.fill(ids::SIGNIN_PASSWORD, PASSWORD).await;
    w.shot("sign-in-for-the-application").await;
    w.click(ids::SIGNIN_SUBMIT).await;

    // 2. Her password alone does not meet Wiki's rule, and she has no factor: she sets
    //    up an authenticator app right here, inside Wiki's sign-in; its first code is
    //    her second factor, so no second code is asked.
    let why = w.wait_text(&format!("#{}", ids::AUTHORIZE_ENROLL), "Wiki asks for").await;
    assert!(why.contains("authenticator app"), "{why}");
    w.by_id(ids::ENROLL_QR).await;
    let totp = w.text_of(ids::ENROLL_SECRET).await.replace(' ', "");
    w.shot("stronger-factor-needed").await;
    w.fill(ids::ENROLL_CODE, &w.totp(&totp)).await;
    w.shot("enrol-inside-the-sign-in").await;
    w.click(ids::ENROLL_CONFIRM).await;
    w.click(ids::RECOVERY_CODES_DONE).await;

    // 3. Back in the request: Wiki is not first-party, so alice is asked first.
    w.by_id(ids::CONSENT_SCOPES).await;
    let scopes = w.text_of(ids::CONSENT_SCOPES).await;
    assert!(scopes.contains("Know who you are") && scopes.contains("See your user name"), "{scopes}");
    assert!(!scopes.contains("email"), "only the scopes asked for are listed: {scopes}");
    w.shot("consent").await;
    w.click(ids::CONSENT_ALLOW).await;
    let back = at_application(&w, &redirect).await;
    assert_eq!(back.get("state").map(String::as_str), Some("first"));
    assert_eq!(back.get("iss"), Some(&issuer), "RFC 9207");
    w.shot("back-at-the-application").await;
    let id = redeem(&issuer, &client_id, &secret, &back["code"], &redirect).await;
    assert_eq!(id["acr"], "urn:twofold:acr:2fa:app", "{id}");
    assert_eq!(id["amr"], json!(["pwd", "otp", "mfa"]), "{id}");
    assert_eq!(id["nonce"], "n1");
    let first_auth_time = id["auth_time"].as_i64().unwrap_or_default();

    // 4. Later, Wiki asks for a second factor proved just now (max_age=0): alice steps
    //    up with her app alone, no password, and is not asked to consent again.
    w.next_step();
    w.goto(&authorize("again", "&max_age=0")).await;
    w.by_id(ids::STEPUP_FORM).await;
    assert!(w.absent(&format!("#{}", ids::SIGNIN_PASSWORD)).await, "a step-up asks for no password");
    w.fill(ids::STEPUP_CODE, &w.totp(&totp)).await;
    w.shot("step-up").await;
    w.click(ids::STEPUP_SUBMIT).await;
    let back = at_application(&w, &redirect).await;
    assert_eq!(back.get("state").map(String::as_str), Some("again"));
    let id = redeem(&issuer, &client_id, &secret, &back["code"], &redirect).await;
    assert!(id["auth_time"].as_i64().unwrap_or_default() > first_auth_time, "the step-up is the new auth_time: {id}");
    assert_eq!(id["acr"], "urn:twofold:acr:2fa:app");

    // 5. Asked again (prompt=consent), alice refuses: Wiki hears access_denied.
    w.goto(&authorize("refused", "&prompt=consent")).await;
    w.by_id(ids::CONSENT_DENY).await;
    w.shot("consent-again").await;
    w.click(ids::CONSENT_DENY).await;
    let back = at_application(&w, &redirect).await;
    assert_eq!(back.get("error").map(String::as_str), Some("access_denied"), "{back:?}");
    assert_eq!(back.get("state").map(String::as_str), Some("refused"));
    assert!(!back.contains_key("code"));

    // 6. On her account page alice sees what Wiki may do, and withdraws it: the next
    //    request asks her again.
    w.goto("/account").await;
    let grant = format!("[data-test=\"{}\"][data-name=\"Wiki\"]", ids::GRANT_ITEM);
    let listed = w.wait_text(&grant, "See your user name").await;
    assert!(listed.contains("Know who you are"), "{listed}");
    w.shot("account-applications").await;
    w.find(&format!("{grant} [data-test=\"{}\"]", ids::GRANT_REVOKE)).await.click().await.unwrap();
    w.find(&format!("{grant} [data-test=\"{}\"]", ids::CONFIRM_YES)).await.click().await.unwrap();
    w.wait_text(&format!("#{}", ids::GRANTS_LIST), "None yet").await;
    w.goto(&authorize("after-withdrawal", "")).await;
    w.by_id(ids::CONSENT_ALLOW).await;

    // 7. A request link works once: opened again, it says it is spent.
    let spent = request_page.strip_prefix(&w.base).unwrap_or_default().to_owned();
    w.goto(&spent).await;
    w.by_id(ids::AUTHORIZE_GONE).await;
    w.shot("spent-request").await;
    w.close().await;
}

/// Journey 12: a tenant admin registers an application on the Applications page (its
/// secret shown once), previews a 2FA rule for it before saving, saves it, issues a new
/// secret and removes the application.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_admin_registers_an_application_and_previews_its_rule() {
    let mut w = World::start("12-applications-page").await;
    let api = w.api();
    api.sign_in_admin().await;
    let acme = api.tenant("acme").await;
    let boss = api.user(&acme, "boss", PASSWORD, None).await;
    api.ok(Method::POST, &format!("/api/tenants/{acme}/admins"), Some(json!({"user_id": boss}))).await;
    api.user(&acme, "alice", PASSWORD, Some("alice@example.test")).await;

    w.goto("/sign-in").await;
    w.fill(ids::SIGNIN_TENANT, "acme").await;
    w.fill(ids::SIGNIN_USERNAME, "boss").await;
    w.fill(ids::SIGNIN_PASSWORD, PASSWORD).await;
    w.click(ids::SIGNIN_SUBMIT).await;
    w.click(ids::NAV_APPLICATIONS).await;
    w.wait_title("Applications · Twofold").await;
    w.wait_text(&format!("#{}", ids::APPS_LIST), "No applications yet").await;
    w.fill(ids::APP_CREATE_NAME, "Wiki").await;
    w.fill(ids::APP_CREATE_REDIRECT, "https://wiki.example.com/callback").await;
    w.find(&format!("[data-test=\"{}\"][data-scope=\"email\"]", ids::APP_CREATE_SCOPE)).await.click().await.unwrap();
    w.shot("new-application").await;
    w.click(ids::APP_CREATE_SUBMIT).await;
    let first_secret = w.text_of(ids::APP_SECRET).await;
    assert!(first_secret.len() >= 40, "a secret of 256 bits: {first_secret:?}");
    let row = format!("[data-test=\"{}\"][data-name=\"Wiki\"]", ids::APP_ROW);
    let listed = w.wait_text(&row, "/t/acme").await;
    assert!(listed.contains("The scope's policy"), "no rule yet: {listed}");
    w.shot("secret-shown-once").await;
    let stored = api.ok(Method::GET, &format!("/api/tenants/{acme}/applications"), None).await;
    assert_eq!(stored["items"][0]["allowed_scopes"], json!(["openid", "profile", "email"]), "{stored}");

    // The rule, previewed: both users would be asked, neither has an authenticator app.
    w.find(&format!("{row} [data-test=\"{}\"]", ids::APP_REQUIRE)).await.click().await.unwrap();
    let strength = w.find(&format!("{row} [data-test=\"{}\"] option[value=\"app\"]", ids::APP_STRENGTH)).await;
    strength.click().await.unwrap();
    w.find(&format!("{row} [data-test=\"{}\"]", ids::APP_PREVIEW)).await.click().await.unwrap();
    let impact = w.wait_text(&format!("{row} [data-test=\"{}\"]", ids::APP_IMPACT), "require 2FA for 2 users").await;
    assert!(impact.contains("2 users to set up a stronger factor first"), "what Wiki's sign-ins would ask: {impact}");
    w.shot("rule-preview").await;
    let stored = api.ok(Method::GET, &format!("/api/tenants/{acme}/applications"), None).await;
    assert_eq!(stored["items"][0]["require_two_factor"], false, "the preview saved nothing ({impact})");
    w.find(&format!("{row} [data-test=\"{}\"]", ids::APP_SAVE)).await.click().await.unwrap();
    w.wait_text(&format!("{row} [data-test=\"{}\"]", ids::APP_RULE), "2FA required").await;
    let stored = api.ok(Method::GET, &format!("/api/tenants/{acme}/applications"), None).await;
    assert_eq!(
        (stored["items"][0]["require_two_factor"].as_bool(), stored["items"][0]["min_strength"].as_str()),
        (Some(true), Some("app"))
    );

    // Every other field is edited in the same row: the name, a second redirect URI, a
    // scope; the rule saved before stays.
    w.find(&format!("{row} [data-test=\"{}\"] summary", ids::APP_EDIT)).await.click().await.unwrap();
    let name = w.find(&format!("{row} [data-test=\"{}\"]", ids::APP_EDIT_NAME)).await;
    name.send_keys(" team").await.unwrap();
    let redirects = w.find(&format!("{row} [data-test=\"{}\"]", ids::APP_EDIT_REDIRECTS)).await;
    redirects.send_keys("\nhttps://wiki.example.com/other").await.unwrap();
    w.find(&format!("{row} [data-test=\"{}\"][data-scope=\"phone\"]", ids::APP_EDIT_SCOPE))
        .await
        .click()
        .await
        .unwrap();
    w.shot("edit-application").await;
    w.find(&format!("{row} [data-test=\"{}\"]", ids::APP_SAVE)).await.click().await.unwrap();
    let row = format!("[data-test=\"{}\"][data-name=\"Wiki team\"]", ids::APP_ROW);
    w.wait_text(&row, "2FA required").await;
    let stored = api.ok(Method::GET, &format!("/api/tenants/{acme}/applications"), None).await;
    let a = &stored["items"][0];
    assert_eq!(a["name"], "Wiki team", "{a}");
    assert_eq!(
        a["redirect_uris"],
        json!(["https://wiki.example.com/callback", "https://wiki.example.com/other"]),
        "{a}"
    );
    let scopes: Vec<&str> = a["allowed_scopes"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    assert!(scopes.len() == 4 && ["openid", "profile", "email", "phone"].iter().all(|s| scopes.contains(s)), "{a}");
    assert_eq!((a["require_two_factor"].as_bool(), a["min_strength"].as_str()), (Some(true), Some("app")), "{a}");

    // A new secret replaces the first; then the application goes.
    w.find(&format!("{row} [data-test=\"{}\"]", ids::APP_ROTATE)).await.click().await.unwrap();
    w.find(&format!("{row} [data-test=\"{}\"]", ids::CONFIRM_YES)).await.click().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.text_of(ids::APP_SECRET).await == first_secret {
        assert!(Instant::now() < deadline, "no new secret shown");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    w.find(&format!("{row} [data-test=\"{}\"]", ids::APP_DELETE)).await.click().await.unwrap();
    w.find(&format!("{row} [data-test=\"{}\"]", ids::CONFIRM_YES)).await.click().await.unwrap();
    w.wait_text(&format!("#{}", ids::APPS_LIST), "No applications yet").await;
    w.shot("removed").await;
    w.close().await;
}
