//! Sign-in, sessions and sign-out: the cookie's attributes, who may sign in where,
//! failures that reveal nothing, and the session's lifetime rules.

use reqwest::header::COOKIE;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{ADMIN_PASSWORD, ADMIN_USERNAME, Options, PASSWORD, TestApp, cookie_attributes, cookie_value};

#[tokio::test]
async fn bootstrap_admin_signs_in_with_a_strict_http_only_cookie() {
    let app = TestApp::spawn().await;
    let resp = app.sign_in(None, ADMIN_USERNAME, ADMIN_PASSWORD).await.assert_status(StatusCode::OK);
    let body = resp.json();
    assert_eq!(body["status"], "signed_in", "{body}");
    assert_eq!(body["user"]["username"], ADMIN_USERNAME);

    let line =
        resp.set_cookie("twofold_session").unwrap_or_else(|| panic!("no session cookie in {:?}", resp.set_cookies()));
    assert!(!cookie_value(&line).is_empty(), "{line}");
    let attrs = cookie_attributes(&line);
    for wanted in ["httponly", "samesite=strict", "path=/"] {
        assert!(attrs.iter().any(|a| a == wanted), "{wanted} missing: {line}");
    }
    // cookie_secure is off for plain-HTTP tests, so the cookie must not claim Secure
    // (a browser would then never send it back over http://).
    assert!(!attrs.iter().any(|a| a == "secure"), "{line}");
    assert!(resp.set_cookie("__Host-twofold_session").is_none());
}

#[tokio::test]
async fn secure_cookies_use_the_host_prefix() {
    let app = TestApp::spawn_with(Options { cookie_secure: true, ..Options::default() }).await;
    let resp = app.sign_in(None, ADMIN_USERNAME, ADMIN_PASSWORD).await.assert_status(StatusCode::OK);
    let line = resp
        .set_cookie("__Host-twofold_session")
        .unwrap_or_else(|| panic!("no __Host- cookie in {:?}", resp.set_cookies()));
    let attrs = cookie_attributes(&line);
    for wanted in ["secure", "httponly", "samesite=strict", "path=/"] {
        assert!(attrs.iter().any(|a| a == wanted), "{wanted} missing: {line}");
    }
    // Browsers reject a __Host- cookie that names a Domain.
    assert!(!attrs.iter().any(|a| a.starts_with("domain")), "{line}");
    assert!(resp.set_cookie("twofold_session").is_none());
}

#[tokio::test]
async fn me_describes_the_signed_in_host_admin() {
    let app = TestApp::spawn_as_admin().await;
    let me = app.me().await.assert_status(StatusCode::OK).json();
    assert_eq!(me["username"], ADMIN_USERNAME);
    assert_eq!(me["tenant_id"], serde_json::Value::Null);
    let roles = me["roles"].as_array().expect("roles");
    assert!(roles.contains(&json!({ "role": "host_admin", "tenant_id": null })), "{me}");
}

#[tokio::test]
async fn sign_out_ends_the_session_for_good() {
    let app = TestApp::spawn().await;
    let signed_in = app.sign_in(None, ADMIN_USERNAME, ADMIN_PASSWORD).await.assert_status(StatusCode::OK);
    let token = cookie_value(&signed_in.set_cookie("twofold_session").expect("cookie"));
    app.me().await.assert_status(StatusCode::OK);

    let out = app.post_json("/api/auth/sign-out", &json!({})).await.assert_status(StatusCode::NO_CONTENT);
    let cleared = out.set_cookie("twofold_session").expect("a removal cookie");
    assert!(cookie_value(&cleared).is_empty(), "{cleared}");
    assert!(cookie_attributes(&cleared).contains(&"max-age=0".to_owned()), "{cleared}");

    let body = app.me().await.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    assert_eq!(body["error"], "unauthenticated");
    // The server forgot the session, not just the browser: replaying the old cookie
    // from elsewhere gets nowhere.
    let replay = app.new_client();
    replay
        .send(replay.raw(Method::GET, "/api/auth/me").header(COOKIE, format!("twofold_session={token}")))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
}

#[tokio::test]
async fn failed_sign_ins_are_indistinguishable() {
    let app = TestApp::spawn_as_admin().await;
    let acme = app.create_tenant("acme").await;
    app.create_tenant_user(&acme.id, "alice", PASSWORD).await;
    // The admin's own session is not needed below; every attempt uses a fresh client
    // so no cookie can make one answer differ from another.
    let attempts: [(&str, Option<&str>, &str, &str); 6] = [
        ("unknown host user", None, "nobody", PASSWORD),
        ("wrong host password", None, ADMIN_USERNAME, "not the password"),
        ("unknown tenant user", Some("acme"), "nobody", PASSWORD),
        ("wrong tenant password", Some("acme"), "alice", "not the password"),
        ("unknown tenant", Some("no-such-tenant"), "alice", PASSWORD),
        ("malformed user name", None, "no body", PASSWORD),
    ];
    let mut first: Option<Vec<u8>> = None;
    for (what, tenant, user, pass) in attempts {
        let resp = app.new_client().sign_in(tenant, user, pass).await;
        resp.assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
        assert!(resp.set_cookies().is_empty(), "{what}: {:?}", resp.set_cookies());
        match &first {
            None => first = Some(resp.body.clone()),
            Some(body) => assert_eq!(&resp.body, body, "{what} answers differently"),
        }
    }
}

#[tokio::test]
async fn users_sign_in_only_in_their_own_scope() {
    let app = TestApp::spawn_as_admin().await;
    let acme = app.create_tenant("acme").await;
    app.create_tenant("globex").await;
    app.create_tenant_user(&acme.id, "alice", PASSWORD).await;
    app.create_host_user("hank", PASSWORD).await;

    // Each refusal is checked against a success with the same password, so a refusal
    // cannot come from a typo in the test.
    let alice = app.new_client();
    let body = alice.sign_in_ok(Some("acme"), "alice", PASSWORD).await;
    assert_eq!(body["user"]["tenant_id"], acme.id.as_str());
    assert_eq!(body["user"]["tenant_name"], "acme");
    // Tenant and user names are typed by people: case does not matter.
    app.new_client().sign_in_ok(Some("ACME"), "ALICE", PASSWORD).await;
    app.new_client()
        .sign_in(Some("globex"), "alice", PASSWORD)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    app.new_client()
        .sign_in(None, "alice", PASSWORD)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");

    app.new_client().sign_in_ok(None, "hank", PASSWORD).await;
    app.new_client()
        .sign_in(Some("acme"), "hank", PASSWORD)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    app.new_client()
        .sign_in(Some("acme"), ADMIN_USERNAME, ADMIN_PASSWORD)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    // A tenant that does not exist is no way into the host's scope, nor any tenant's.
    for (tenant, user, password) in [("no-such-tenant", "hank", PASSWORD), ("no-such-tenant", "alice", PASSWORD)] {
        app.new_client()
            .sign_in(Some(tenant), user, password)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    app.new_client()
        .sign_in(Some("no-such-tenant"), ADMIN_USERNAME, ADMIN_PASSWORD)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
}

#[tokio::test]
async fn sign_in_without_the_csrf_header_grants_nothing() {
    let app = TestApp::spawn().await;
    // A cross-site form could post these credentials (forced sign-in); without the
    // header it must not obtain a session.
    let resp = app
        .send(app.raw(Method::POST, "/api/auth/sign-in").json(&json!({
            "username": ADMIN_USERNAME,
            "password": ADMIN_PASSWORD
        })))
        .await;
    resp.assert_error(StatusCode::FORBIDDEN, "csrf_header_missing");
    assert!(resp.set_cookies().is_empty(), "{:?}", resp.set_cookies());
    app.me().await.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
}

#[tokio::test]
async fn an_idle_session_expires_but_activity_keeps_it_alive() {
    let app = TestApp::spawn_with(Options { manual_clock: true, ..Options::default() }).await;
    app.sign_in_admin().await;
    // The idle limit is 60 minutes by default. Two requests 59 minutes apart keep the
    // session alive well past 60 minutes after sign-in...
    app.advance_minutes(59);
    app.me().await.assert_status(StatusCode::OK);
    app.advance_minutes(59);
    app.me().await.assert_status(StatusCode::OK);
    // ...but 61 quiet minutes end it.
    app.advance_minutes(61);
    app.me().await.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
}

#[tokio::test]
async fn a_busy_session_still_ends_at_its_maximum_lifetime() {
    let app = TestApp::spawn_with(Options { manual_clock: true, ..Options::default() }).await;
    app.sign_in_admin().await;
    // Twelve hours by default; activity every 59 minutes never lets it go idle.
    for _ in 0..12 {
        app.advance_minutes(59);
        app.me().await.assert_status(StatusCode::OK);
    }
    // 13 * 59 = 767 minutes > 720.
    app.advance_minutes(59);
    app.me().await.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
}

#[tokio::test]
async fn the_session_endpoint_answers_200_with_or_without_a_session() {
    let app = TestApp::spawn().await;
    let body = app.get("/api/auth/session").await.assert_status(StatusCode::OK).json();
    assert_eq!(body, serde_json::json!({ "user": null }));
    app.sign_in_admin().await;
    let body = app.get("/api/auth/session").await.assert_status(StatusCode::OK).json();
    assert_eq!(body["user"]["username"], "admin", "{body}");
    assert_eq!(body["user"]["must_change_password"], false, "{body}");
}
