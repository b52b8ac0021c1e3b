//! Codes never reach the log unless an operator asks for it. Without an SMTP server or
//! an SMS provider, and without `dev_senders`, email and SMS cannot carry codes: they
//! are not offered at sign-in, not enrollable, refused on the account page with
//! `sender_not_configured`, and the message-usage view says why. The development
//! sender, which writes each code to the log, runs only when switched on, and a real
//! sender always wins over it.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::flows::{admin_app, create_user, enrol_authenticator, forced_tenant, mail_app, password_step, send_code};
use crate::helpers::{Options, TestApp};

/// The channels' sender states as the message-usage view reports them.
async fn sender_states(app: &TestApp, path: &str) -> (Value, Value) {
    let usage = app.get(path).await.assert_status(StatusCode::OK).json();
    (usage["email"]["sender"].clone(), usage["sms"]["sender"].clone())
}

#[tokio::test]
async fn without_a_sender_email_and_sms_are_neither_offered_nor_enrollable() {
    let app = admin_app(Options::default()).await;
    let t = forced_tenant(&app, "acme").await;

    // Alice's only factor is a confirmed email address. Were email offered, a code
    // could only go to the log; she must enrol a factor that works instead.
    let alice = create_user(&app, &t.id, "alice", Some("alice@example.test")).await;
    app.give_factor(&alice.id).await;
    let client = app.new_client();
    let body = password_step(&client, "acme", "alice", "requires_enrollment").await;
    assert_eq!(body["enrollable"], json!(["authenticator"]), "{body}");
    assert!(body.get("providers").is_none(), "{body}");
    let refused = client.post_json("/api/auth/enroll/email", &json!({})).await;
    refused.assert_error(StatusCode::BAD_REQUEST, "sender_not_configured");
    assert!(refused.json()["message"].as_str().unwrap().contains("SMTP"), "{}", refused.text());
    let refused = client.post_json("/api/auth/enroll/phone", &json!({ "phone": "+14155550100" })).await;
    refused.assert_error(StatusCode::BAD_REQUEST, "sender_not_configured");
    // The authenticator still gets her in.
    enrol_authenticator(&app, &app.new_client(), "acme", "alice").await;
}

#[tokio::test]
async fn without_a_sender_only_the_authenticator_is_offered_at_sign_in() {
    let app = admin_app(Options::default()).await;
    let t = forced_tenant(&app, "acme").await;
    let bob = create_user(&app, &t.id, "bob", Some("bob@example.test")).await;
    enrol_authenticator(&app, &app.new_client(), "acme", "bob").await;
    app.give_factor(&bob.id).await;

    let client = app.new_client();
    let body = password_step(&client, "acme", "bob", "requires_two_factor").await;
    let offered: Vec<&str> =
        body["providers"].as_array().unwrap().iter().map(|p| p["provider"].as_str().unwrap()).collect();
    assert_eq!(offered, ["authenticator"], "{body}");
    send_code(&client, "email").await.assert_error(StatusCode::BAD_REQUEST, "sender_not_configured");
    send_code(&client, "sms").await.assert_error(StatusCode::BAD_REQUEST, "sender_not_configured");
    // Nor does an email code count as a second factor.
    let resp = client
        .post_json(
            "/api/auth/sign-in/verify",
            &json!({ "method": "email", "code": "123456", "remember_browser": false }),
        )
        .await;
    resp.assert_error(StatusCode::BAD_REQUEST, "provider_unavailable");
}

#[tokio::test]
async fn without_a_sender_the_account_page_refuses_email_and_phone_setup() {
    let app = admin_app(Options::default()).await;
    let refused = app.put_json("/api/account/email", &json!({ "email": "admin@example.test" })).await;
    let body = refused.assert_error(StatusCode::BAD_REQUEST, "sender_not_configured");
    assert_eq!(body["message"], "No SMTP server is configured: email codes cannot be sent");
    let refused = app.put_json("/api/account/phone", &json!({ "phone": "+14155550100" })).await;
    let body = refused.assert_error(StatusCode::BAD_REQUEST, "sender_not_configured");
    assert_eq!(body["message"], "No SMS provider is configured: text messages cannot be sent");
    app.post_json("/api/account/reauthenticate/send-code", &json!({ "method": "email" }))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "sender_not_configured");
    // Refused before anything was stored.
    let account = app.get("/api/account").await.assert_status(StatusCode::OK).json();
    assert_eq!(account["factors"]["pending_email"], Value::Null, "{account}");
    assert_eq!(account["factors"]["pending_phone"], Value::Null, "{account}");

    // The settings screens can say why.
    assert_eq!(
        sender_states(&app, "/api/host/message-usage").await,
        (json!("not_configured"), json!("not_configured"))
    );
    let t = app.create_tenant("acme").await;
    let path = format!("/api/tenants/{}/message-usage", t.id);
    assert_eq!(sender_states(&app, &path).await, (json!("not_configured"), json!("not_configured")));
}

#[tokio::test]
async fn the_development_sender_runs_only_when_switched_on() {
    let app = admin_app(Options { dev_senders: true, ..Options::default() }).await;
    let t = forced_tenant(&app, "acme").await;
    let alice = create_user(&app, &t.id, "alice", Some("alice@example.test")).await;
    app.give_factor(&alice.id).await;

    let client = app.new_client();
    let body = password_step(&client, "acme", "alice", "requires_two_factor").await;
    assert_eq!(body["providers"][0]["provider"], "email", "{body}");
    send_code(&client, "email").await.assert_status(StatusCode::OK);
    app.put_json("/api/account/phone", &json!({ "phone": "+14155550100" })).await.assert_status(StatusCode::OK);
    assert_eq!(sender_states(&app, "/api/host/message-usage").await, (json!("development"), json!("development")));
}

#[tokio::test]
async fn a_real_sender_wins_over_the_development_sender() {
    let (app, mut mail) = mail_app(Options { dev_senders: true, ..Options::default() }).await;
    assert_eq!(sender_states(&app, "/api/host/message-usage").await, (json!("configured"), json!("development")));
    app.put_json("/api/account/email", &json!({ "email": "admin@example.test" })).await.assert_status(StatusCode::OK);
    // The code went to the SMTP server, not (only) to the log.
    assert_eq!(mail.next_code("admin@example.test").await.len(), 6);
}
