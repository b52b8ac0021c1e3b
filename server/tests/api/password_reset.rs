//! Password reset: the emailed link (through a real SMTP server), its single use, its
//! expiry and its silence about which accounts exist; an admin's link and temporary
//! password, which must be changed before the session can do anything else; and the
//! second factor still asked for after a reset.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::flows::{Mail, advance_seconds, create_user, forced_tenant, password_step};
use crate::helpers::{Client, Options, PASSWORD, TestApp};

const PUBLIC_URL: &str = "https://sign-in.example.test";
const NEW_PASSWORD: &str = "a brand new long password";

async fn reset_app(mail: &Mail) -> TestApp {
    let app = TestApp::spawn_configured(
        Options { manual_clock: true, smtp_port: Some(mail.server.port), ..Options::default() },
        |c| c.public_url = Some(PUBLIC_URL.to_owned()),
    )
    .await;
    app.sign_in_admin().await;
    app
}

/// A user of the forced tenant `acme` with a confirmed email address.
async fn user_with_email(app: &TestApp, username: &str) -> (String, String) {
    let tenant = app.get("/api/tenants?q=acme").await.json()["items"][0]["id"].as_str().map(str::to_owned);
    let tenant = match tenant {
        Some(id) => id,
        None => forced_tenant(app, "acme").await.id,
    };
    let email = format!("{username}@example.com");
    let user = create_user(app, &tenant, username, Some(&email)).await;
    app.give_factor(&user.id).await;
    (user.id, email)
}

async fn ask(client: &Client, tenant: &str, username: &str) -> crate::helpers::Resp {
    client.post_json("/api/auth/password-reset", &json!({ "tenant": tenant, "username": username })).await
}

/// The token of the reset link in the next message to `to` (quoted-printable undone).
async fn link_token(mail: &mut Mail, to: &str) -> String {
    for _ in 0..500 {
        if let Some(message) = mail.next_messages().await.pop() {
            let text = message.replace("=\n", "").replace("=3D", "=");
            assert!(text.contains(&format!("To: {to}")), "{text}");
            let prefix = format!("{PUBLIC_URL}/reset-password?token=");
            let (_, rest) = text.split_once(&prefix).unwrap_or_else(|| panic!("no link in {text}"));
            return rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no reset link reached {to}");
}

async fn confirm(client: &Client, token: &str, password: &str) -> crate::helpers::Resp {
    client.post_json("/api/auth/password-reset/confirm", &json!({ "token": token, "new_password": password })).await
}

#[tokio::test]
async fn a_reset_link_sets_a_new_password_once_and_the_second_factor_is_still_asked() {
    let mut mail = Mail::start();
    let app = reset_app(&mail).await;
    let (_, email) = user_with_email(&app, "alice").await;
    let session = app.new_client();
    password_step(&session, "acme", "alice", "requires_two_factor").await;

    let stranger = app.new_client();
    let resp = ask(&stranger, "acme", "alice").await.assert_status(StatusCode::ACCEPTED);
    assert!(resp.body.is_empty(), "{}", resp.text());
    let token = link_token(&mut mail, &email).await;
    assert_eq!(token.len(), 43, "{token}");

    confirm(&stranger, &token, "short").await.assert_error(StatusCode::BAD_REQUEST, "invalid_field");
    confirm(&stranger, &token, NEW_PASSWORD).await.assert_status(StatusCode::NO_CONTENT);
    confirm(&stranger, &token, NEW_PASSWORD).await.assert_error(StatusCode::BAD_REQUEST, "reset_link_invalid");
    // The old password is gone, the pending sign-in made with it too.
    stranger
        .sign_in(Some("acme"), "alice", PASSWORD)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    session
        .post_json("/api/auth/sign-in/send-code", &json!({ "method": "email" }))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "sign_in_expired");
    // The new one is a password, not a sign-in: the second factor is still asked for.
    let body = stranger.sign_in(Some("acme"), "alice", NEW_PASSWORD).await.assert_status(StatusCode::OK).json();
    assert_eq!(body["status"], "requires_two_factor", "{body}");
    mail.wait_for_notice(&email, "password of your account was changed").await;
    let actions: Vec<Value> = app.audit("").await.iter().map(|e| e["action"].clone()).collect();
    assert!(actions.contains(&json!("password_reset.requested")) && actions.contains(&json!("user.password_reset")));
}

#[tokio::test]
async fn asking_for_a_link_says_nothing_about_the_account() {
    let mut mail = Mail::start();
    let app = reset_app(&mail).await;
    let (alice, _) = user_with_email(&app, "alice").await;
    // Bob has an address on file that he never confirmed; carol is deactivated.
    let tenant = app.get("/api/tenants?q=acme").await.json()["items"][0]["id"].as_str().unwrap().to_owned();
    create_user(&app, &tenant, "bob", Some("bob@example.com")).await;
    let (carol, _) = user_with_email(&app, "carol").await;
    app.post_json(&format!("/api/users/{carol}/deactivate"), &json!({})).await.assert_status(StatusCode::NO_CONTENT);

    let client = app.new_client();
    for (tenant, username) in
        [("acme", "nobody"), ("nowhere", "alice"), ("acme", "bob"), ("acme", "carol"), ("acme", "")]
    {
        let resp = ask(&client, tenant, username).await;
        assert_eq!(resp.status, StatusCode::ACCEPTED, "{tenant}/{username}: {}", resp.text());
        assert!(resp.body.is_empty());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = mail.next_messages().await;
    assert!(sent.is_empty(), "{sent:#?}");
    // Alice's own request does send one; it is the only account that gets anything.
    ask(&client, "acme", "alice").await.assert_status(StatusCode::ACCEPTED);
    link_token(&mut mail, "alice@example.com").await;
    let _ = alice;
}

#[tokio::test]
async fn links_expire_work_once_under_a_race_and_need_a_public_url() {
    let mut mail = Mail::start();
    let app = reset_app(&mail).await;
    let (_, email) = user_with_email(&app, "alice").await;
    let client = app.new_client();

    ask(&client, "acme", "alice").await.assert_status(StatusCode::ACCEPTED);
    let expired = link_token(&mut mail, &email).await;
    advance_seconds(&app, 31 * 60);
    confirm(&client, &expired, NEW_PASSWORD).await.assert_error(StatusCode::BAD_REQUEST, "reset_link_invalid");
    confirm(&client, "made-up", NEW_PASSWORD).await.assert_error(StatusCode::BAD_REQUEST, "reset_link_invalid");

    // A newer link voids the older one; of many parallel uses of one link, one wins.
    ask(&client, "acme", "alice").await.assert_status(StatusCode::ACCEPTED);
    let older = link_token(&mut mail, &email).await;
    ask(&client, "acme", "alice").await.assert_status(StatusCode::ACCEPTED);
    let newer = link_token(&mut mail, &email).await;
    confirm(&client, &older, NEW_PASSWORD).await.assert_error(StatusCode::BAD_REQUEST, "reset_link_invalid");
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let c = app.new_client();
            let token = newer.clone();
            tokio::spawn(async move { confirm(&c, &token, &format!("{NEW_PASSWORD} {i}")).await.status })
        })
        .collect();
    let mut wins = 0;
    for r in racers {
        if r.await.unwrap() == StatusCode::NO_CONTENT {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);

    let without = TestApp::spawn().await;
    ask(&without.client, "", "admin").await.assert_error(StatusCode::BAD_REQUEST, "password_reset_unavailable");
}

#[tokio::test]
async fn an_admin_temporary_password_must_be_changed_before_anything_else() {
    let mail = Mail::start();
    let app = reset_app(&mail).await;
    let (tenant, _, tadmin) = app.tenant_with_admin("beta", "boss").await;
    let alice = app.create_tenant_user(&tenant.id, "alice", PASSWORD).await;
    let before = app.new_client();
    before.sign_in_ok(Some("beta"), "alice", PASSWORD).await;

    let result = tadmin
        .post_json(&format!("/api/users/{}/password-reset", alice.id), &json!({ "mode": "temporary_password" }))
        .await
        .assert_status(StatusCode::OK)
        .json();
    let temporary = result["temporary_password"].as_str().unwrap().to_owned();
    assert!(temporary.len() >= 20, "{result}");
    before.me().await.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");

    let alice_c = app.new_client();
    alice_c
        .sign_in(Some("beta"), "alice", PASSWORD)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    alice_c.sign_in_ok(Some("beta"), "alice", &temporary).await;
    let me = alice_c.me().await.assert_status(StatusCode::OK).json();
    assert_eq!(me["must_change_password"], true, "{me}");
    alice_c.get("/api/account").await.assert_status(StatusCode::OK);
    for path in ["/api/account/browsers", "/api/account/sessions"] {
        alice_c.get(path).await.assert_error(StatusCode::FORBIDDEN, "password_change_required");
    }
    alice_c
        .put_json("/api/account/two-factor", &json!({ "enabled": true }))
        .await
        .assert_error(StatusCode::FORBIDDEN, "password_change_required");
    alice_c
        .put_json("/api/account/password", &json!({ "current_password": temporary, "new_password": NEW_PASSWORD }))
        .await
        .assert_status(StatusCode::NO_CONTENT);
    assert_eq!(alice_c.me().await.json()["must_change_password"], false);
    alice_c.get("/api/account/browsers").await.assert_status(StatusCode::OK);

    // A link instead: handed to the admin, the current password works until it is used.
    let result = tadmin
        .post_json(&format!("/api/users/{}/password-reset", alice.id), &json!({ "mode": "link" }))
        .await
        .assert_status(StatusCode::OK)
        .json();
    let link = result["link"].as_str().unwrap();
    assert!(link.starts_with(&format!("{PUBLIC_URL}/reset-password?token=")), "{result}");
    assert!(result["expires_at"].is_string(), "{result}");
    app.new_client().sign_in_ok(Some("beta"), "alice", NEW_PASSWORD).await;
    let token = link.rsplit_once("token=").unwrap().1;
    confirm(&app.new_client(), token, "the password after that one").await.assert_status(StatusCode::NO_CONTENT);
    app.new_client().sign_in_ok(Some("beta"), "alice", "the password after that one").await;

    // Not on oneself, and not across tenants.
    let me = tadmin.me().await.json()["id"].as_str().unwrap().to_owned();
    tadmin
        .post_json(&format!("/api/users/{me}/password-reset"), &json!({ "mode": "link" }))
        .await
        .assert_error(StatusCode::CONFLICT, "not_on_yourself");
    let host_admin = app.me().await.json()["id"].as_str().unwrap().to_owned();
    let refused =
        tadmin.post_json(&format!("/api/users/{host_admin}/password-reset"), &json!({ "mode": "link" })).await;
    assert!(matches!(refused.status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND), "{}", refused.text());
}
