//! Remembered browsers: the cookie and its attributes, skipping the second factor next
//! time, the account page's list, forgetting one or all, and the limits: only for the
//! user it was issued to, only while the policy allows remembering, and only for the
//! policy's current lifetime.

use reqwest::header::USER_AGENT;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::flows::{
    REMEMBER_COOKIE, SESSION_COOKIE, admin_app, advance_days, assert_signed_in, cookie_set, create_user,
    enrol_authenticator, forced_tenant, next_totp, password_step, set_tenant_settings, sign_in_with_totp,
};
use crate::helpers::{Client, Options, TestApp, cookie_attributes};

const AGENT: &str = "FlowsTest/1.0 (remembered browser)";

/// A forced tenant `acme` with users who each have an authenticator; returns secrets.
async fn tenant_with(app: &TestApp, users: &[&str]) -> (String, Vec<String>) {
    let t = forced_tenant(app, "acme").await;
    let mut secrets = Vec::new();
    for u in users {
        create_user(app, &t.id, u, None).await;
        secrets.push(enrol_authenticator(app, &app.new_client(), "acme", u).await.secret);
    }
    (t.id, secrets)
}

/// Password and authenticator with "remember this browser", sent with a User-Agent.
async fn remember(app: &TestApp, client: &Client, username: &str, secret: &str) -> crate::helpers::Resp {
    password_step(client, "acme", username, "requires_two_factor").await;
    let body = json!({ "method": "authenticator", "code": next_totp(app, secret), "remember_browser": true });
    client
        .send(
            client
                .raw(Method::POST, "/api/auth/sign-in/verify")
                .header("X-Requested-With", "test")
                .header(USER_AGENT, AGENT)
                .json(&body),
        )
        .await
}

async fn sign_out(client: &Client) {
    client.post_json("/api/auth/sign-out", &json!({})).await.assert_status(StatusCode::NO_CONTENT);
}

async fn browsers(client: &Client) -> Vec<Value> {
    client.get("/api/account/browsers").await.assert_status(StatusCode::OK).json().as_array().unwrap().clone()
}

#[tokio::test]
async fn a_remembered_browser_skips_the_second_factor_and_is_listed() {
    let app = admin_app(Options::default()).await;
    let (_, secrets) = tenant_with(&app, &["alice"]).await;
    let alice = app.new_client();

    let resp = remember(&app, &alice, "alice", &secrets[0]).await;
    assert_signed_in(&resp);
    let line =
        resp.set_cookie(REMEMBER_COOKIE).unwrap_or_else(|| panic!("no remember cookie: {:?}", resp.set_cookies()));
    let attrs = cookie_attributes(&line);
    for wanted in ["httponly", "samesite=strict", "path=/", "max-age=1209600"] {
        assert!(attrs.iter().any(|a| a == wanted), "{wanted} missing: {line}");
    }
    assert!(!attrs.iter().any(|a| a == "secure"), "{line}");

    sign_out(&alice).await;
    app.advance_minutes(10);
    let resp = alice.sign_in(Some("acme"), "alice", crate::helpers::PASSWORD).await;
    assert_signed_in(&resp);
    assert!(resp.set_cookie("twofold_pending").is_none(), "{:?}", resp.set_cookies());

    let list = browsers(&alice).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let b = &list[0];
    assert_eq!(b["current"], true, "{b}");
    assert_eq!(b["user_agent"], AGENT, "{b}");
    for key in ["id", "created_at", "last_used_at", "expires_at"] {
        assert!(b[key].as_str().is_some_and(|s| !s.is_empty()), "{key} in {b}");
    }
    // Used ten minutes after it was remembered.
    assert!(b["last_used_at"].as_str().unwrap() > b["created_at"].as_str().unwrap(), "{b}");
    // Another browser of the same user sees it, but not as its own.
    let elsewhere = app.new_client();
    assert_signed_in(&sign_in_with_totp(&app, &elsewhere, "acme", "alice", &secrets[0], false).await);
    let list = browsers(&elsewhere).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["current"], false);
}

#[tokio::test]
async fn secure_cookies_give_the_remember_cookie_the_host_prefix() {
    let app = admin_app(Options { cookie_secure: true, ..Options::default() }).await;
    let (_, secrets) = tenant_with(&app, &["alice"]).await;
    let alice = app.new_client();
    let resp = remember(&app, &alice, "alice", &secrets[0]).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let line = resp
        .set_cookie(&format!("__Host-{REMEMBER_COOKIE}"))
        .unwrap_or_else(|| panic!("no __Host- remember cookie: {:?}", resp.set_cookies()));
    let attrs = cookie_attributes(&line);
    for wanted in ["secure", "httponly", "path=/"] {
        assert!(attrs.iter().any(|a| a == wanted), "{wanted} missing: {line}");
    }
    assert!(!attrs.iter().any(|a| a.starts_with("domain")), "{line}");
}

#[tokio::test]
async fn forgetting_browsers_asks_for_the_second_factor_again() {
    let app = admin_app(Options::default()).await;
    let (_, secrets) = tenant_with(&app, &["alice"]).await;
    let secret = &secrets[0];
    let (one, two, three) = (app.new_client(), app.new_client(), app.new_client());
    for c in [&one, &two, &three] {
        assert!(cookie_set(&remember(&app, c, "alice", secret).await, REMEMBER_COOKIE).is_some());
    }
    assert_eq!(browsers(&one).await.len(), 3);

    // Forget the first one only.
    let id =
        browsers(&one).await.into_iter().find(|b| b["current"] == true).unwrap()["id"].as_str().unwrap().to_owned();
    one.delete(&format!("/api/account/browsers/{id}")).await.assert_status(StatusCode::NO_CONTENT);
    one.delete(&format!("/api/account/browsers/{id}")).await.assert_error(StatusCode::NOT_FOUND, "not_found");
    sign_out(&one).await;
    password_step(&one, "acme", "alice", "requires_two_factor").await;
    sign_out(&two).await;
    password_step(&two, "acme", "alice", "signed_in").await;

    // Forget them all.
    two.delete("/api/account/browsers").await.assert_status(StatusCode::NO_CONTENT);
    assert!(browsers(&two).await.is_empty());
    for c in [&two, &three] {
        sign_out(c).await;
        password_step(c, "acme", "alice", "requires_two_factor").await;
    }
}

#[tokio::test]
async fn a_remembered_browser_is_honoured_only_for_its_user() {
    let app = admin_app(Options::default()).await;
    let (_, secrets) = tenant_with(&app, &["alice", "bob"]).await;
    let shared = app.new_client();
    assert!(cookie_set(&remember(&app, &shared, "alice", &secrets[0]).await, REMEMBER_COOKIE).is_some());
    sign_out(&shared).await;

    // Bob on Alice's remembered browser still needs his second factor...
    let resp = shared.sign_in(Some("acme"), "bob", crate::helpers::PASSWORD).await.assert_status(StatusCode::OK);
    assert_eq!(resp.json()["status"], "requires_two_factor");
    assert!(resp.set_cookie(SESSION_COOKIE).is_none());
    // ...and Alice is still remembered.
    password_step(&shared, "acme", "alice", "signed_in").await;
}

#[tokio::test]
async fn nothing_is_remembered_while_the_policy_forbids_it() {
    let app = admin_app(Options::default()).await;
    let (tenant_id, secrets) = tenant_with(&app, &["alice"]).await;
    let secret = &secrets[0];

    // A browser remembered while allowed stops skipping once remembering is switched off.
    let earlier = app.new_client();
    assert!(cookie_set(&remember(&app, &earlier, "alice", secret).await, REMEMBER_COOKIE).is_some());
    set_tenant_settings(&app, &tenant_id, json!({ "remember_browser": false })).await;
    sign_out(&earlier).await;
    password_step(&earlier, "acme", "alice", "requires_two_factor").await;

    // And asking for it sets no cookie.
    let alice = app.new_client();
    let resp = remember(&app, &alice, "alice", secret).await;
    assert_signed_in(&resp);
    assert!(resp.set_cookie(REMEMBER_COOKIE).is_none(), "{:?}", resp.set_cookies());
    sign_out(&alice).await;
    let body = password_step(&alice, "acme", "alice", "requires_two_factor").await;
    assert_eq!(body["remember_browser_offered"], false, "{body}");
}

#[tokio::test]
async fn shortening_the_lifetime_ends_older_remembered_browsers() {
    let app = admin_app(Options::default()).await;
    let (tenant_id, secrets) = tenant_with(&app, &["alice"]).await;
    let alice = app.new_client();
    assert!(cookie_set(&remember(&app, &alice, "alice", &secrets[0]).await, REMEMBER_COOKIE).is_some());
    sign_out(&alice).await;

    // Three days later, within the 14 days it was remembered for.
    advance_days(&app, 3);
    password_step(&alice, "acme", "alice", "signed_in").await;
    sign_out(&alice).await;

    // Now the tenant allows two days only: the three-day-old browser no longer counts.
    app.sign_in_admin().await;
    set_tenant_settings(&app, &tenant_id, json!({ "remember_browser_days": 2 })).await;
    password_step(&alice, "acme", "alice", "requires_two_factor").await;
}

#[tokio::test]
async fn a_remembered_browser_expires_after_its_lifetime() {
    let app = admin_app(Options::default()).await;
    let (_, secrets) = tenant_with(&app, &["alice"]).await;
    let alice = app.new_client();
    assert!(cookie_set(&remember(&app, &alice, "alice", &secrets[0]).await, REMEMBER_COOKIE).is_some());
    sign_out(&alice).await;
    advance_days(&app, 13);
    password_step(&alice, "acme", "alice", "signed_in").await;
    sign_out(&alice).await;
    advance_days(&app, 2);
    password_step(&alice, "acme", "alice", "requires_two_factor").await;
}
