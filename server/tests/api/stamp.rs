//! The security stamp: every change to a user's security profile (password, a factor
//! added or removed, the 2FA switch, email or phone replaced, an admin reset) ends the
//! user's other sessions, their pending sign-ins and their remembered browsers, while
//! the session that made the change carries on.
//!
//! Each test sets up the same cast for one user: `actor` (the session making the
//! change), `other` (another signed-in session), `pending` (a sign-in waiting for its
//! second factor) and `remembered` (a browser that skips the second factor, signed out).

use reqwest::StatusCode;
use serde_json::json;

use crate::flows::{
    Mail, Sms, add_authenticator_in_account, admin_app, assert_signed_in, confirm_email_in_account,
    confirm_phone_in_account, create_user, enrol_authenticator, forced_tenant, mail_app, next_totp, password_step,
    sign_in_with_totp, sms_app, verify,
};
use crate::helpers::{Client, Options, PASSWORD, TestApp};

const NEW_PASSWORD: &str = "a brand new long password";

struct Cast {
    secret: String,
    actor: Client,
    other: Client,
    pending: Client,
    remembered: Client,
}

/// Signs `username` of `acme` in three times (one with "remember this browser") and
/// leaves a fourth sign-in waiting for its second factor. Checks the remembered browser
/// skips the second factor before anything changes.
async fn cast(app: &TestApp, username: &str, secret: &str) -> Cast {
    let (actor, other, pending, remembered) = (app.new_client(), app.new_client(), app.new_client(), app.new_client());
    assert_signed_in(&sign_in_with_totp(app, &remembered, "acme", username, secret, true).await);
    remembered.post_json("/api/auth/sign-out", &json!({})).await.assert_status(StatusCode::NO_CONTENT);
    password_step(&remembered, "acme", username, "signed_in").await;
    remembered.post_json("/api/auth/sign-out", &json!({})).await.assert_status(StatusCode::NO_CONTENT);
    assert_signed_in(&sign_in_with_totp(app, &other, "acme", username, secret, false).await);
    // The actor signs in last, so the session is freshly verified for changes that
    // need a recent reauthentication.
    assert_signed_in(&sign_in_with_totp(app, &actor, "acme", username, secret, false).await);
    password_step(&pending, "acme", username, "requires_two_factor").await;
    Cast { secret: secret.to_owned(), actor, other, pending, remembered }
}

/// After a change: the actor still works, everything else of the user is over.
async fn assert_rotated(app: &TestApp, c: &Cast, username: &str, password: &str) {
    c.actor.me().await.assert_status(StatusCode::OK);
    c.actor.get("/api/account").await.assert_status(StatusCode::OK);
    c.other.me().await.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    verify(&c.pending, "authenticator", &next_totp(app, &c.secret), false)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "sign_in_expired");
    let resp = c.remembered.sign_in(Some("acme"), username, password).await.assert_status(StatusCode::OK);
    assert_ne!(resp.json()["status"], "signed_in", "the remembered browser still skips the second factor");
    assert!(resp.set_cookie("twofold_session").is_none());
}

/// A forced tenant `acme` with `alice`, who has an authenticator.
async fn forced_alice(app: &TestApp) -> (String, String) {
    let t = forced_tenant(app, "acme").await;
    let u = create_user(app, &t.id, "alice", Some("alice@example.test")).await;
    (u.id, enrol_authenticator(app, &app.new_client(), "acme", "alice").await.secret)
}

#[tokio::test]
async fn a_password_change_ends_everything_else() {
    let app = admin_app(Options::default()).await;
    let (_, secret) = forced_alice(&app).await;
    let c = cast(&app, "alice", &secret).await;

    c.actor
        .put_json("/api/account/password", &json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD }))
        .await
        .assert_status(StatusCode::NO_CONTENT);
    assert_rotated(&app, &c, "alice", NEW_PASSWORD).await;
    // The old password is gone, the new one works.
    let fresh = app.new_client();
    fresh.sign_in(Some("acme"), "alice", PASSWORD).await.assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    let resp = fresh.sign_in(Some("acme"), "alice", NEW_PASSWORD).await.assert_status(StatusCode::OK);
    assert_eq!(resp.json()["status"], "requires_two_factor");
}

#[tokio::test]
async fn a_wrong_current_password_changes_nothing() {
    let app = admin_app(Options::default()).await;
    let (_, secret) = forced_alice(&app).await;
    let c = cast(&app, "alice", &secret).await;
    c.actor
        .put_json(
            "/api/account/password",
            &json!({ "current_password": "not it at all", "new_password": NEW_PASSWORD }),
        )
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    c.other.me().await.assert_status(StatusCode::OK);
    password_step(&c.remembered, "acme", "alice", "signed_in").await;
}

async fn phone_app() -> (TestApp, Sms, String) {
    let (app, sms) = sms_app(Options::default()).await;
    let (_, secret) = forced_alice(&app).await;
    (app, sms, secret)
}

#[tokio::test]
async fn adding_a_factor_ends_everything_else() {
    let (app, sms, secret) = phone_app().await;
    let c = cast(&app, "alice", &secret).await;
    confirm_phone_in_account(&c.actor, &sms, "+14155550100").await;
    assert_rotated(&app, &c, "alice", PASSWORD).await;
}

#[tokio::test]
async fn removing_a_factor_ends_everything_else() {
    let (app, sms, secret) = phone_app().await;
    confirm_phone_in_account(&alice_signed_in(&app, &secret).await, &sms, "+14155550100").await;
    let c = cast(&app, "alice", &secret).await;
    c.actor.delete("/api/account/phone").await.assert_status(StatusCode::NO_CONTENT);
    assert_rotated(&app, &c, "alice", PASSWORD).await;
}

#[tokio::test]
async fn replacing_the_phone_ends_everything_else() {
    let (app, sms, secret) = phone_app().await;
    confirm_phone_in_account(&alice_signed_in(&app, &secret).await, &sms, "+14155550100").await;
    let c = cast(&app, "alice", &secret).await;
    confirm_phone_in_account(&c.actor, &sms, "+14155550111").await;
    assert_rotated(&app, &c, "alice", PASSWORD).await;
}

#[tokio::test]
async fn replacing_the_email_ends_everything_else() {
    let (app, mut mail): (TestApp, Mail) = mail_app(Options::default()).await;
    let (_, secret) = forced_alice(&app).await;
    let signed_in = alice_signed_in(&app, &secret).await;
    confirm_email_in_account(&signed_in, &mut mail, "alice@example.test").await;
    let c = cast(&app, "alice", &secret).await;
    confirm_email_in_account(&c.actor, &mut mail, "alice@elsewhere.test").await;
    assert_rotated(&app, &c, "alice", PASSWORD).await;
    let account = c.actor.get("/api/account").await.assert_status(StatusCode::OK).json();
    assert_eq!(account["factors"]["email"], "alice@elsewhere.test", "{account}");
}

#[tokio::test]
async fn the_two_factor_switch_ends_everything_else() {
    let app = admin_app(Options::default()).await;
    let t = app.create_tenant("acme").await;
    create_user(&app, &t.id, "alice", None).await;
    // Alice opts in herself: an authenticator from the account page, then the switch.
    let setup = app.new_client();
    setup.sign_in_ok(Some("acme"), "alice", PASSWORD).await;
    let secret = add_authenticator_in_account(&app, &setup).await.secret;
    setup.put_json("/api/account/two-factor", &json!({ "enabled": true })).await.assert_status(StatusCode::OK);

    let c = cast(&app, "alice", &secret).await;
    c.actor.put_json("/api/account/two-factor", &json!({ "enabled": false })).await.assert_status(StatusCode::OK);
    c.actor.me().await.assert_status(StatusCode::OK);
    c.other.me().await.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    // Switched back on, the browser remembered before the change does not skip it.
    c.actor.put_json("/api/account/two-factor", &json!({ "enabled": true })).await.assert_status(StatusCode::OK);
    assert_rotated(&app, &c, "alice", PASSWORD).await;
}

#[tokio::test]
async fn an_admin_reset_ends_every_session_but_the_admins() {
    let app = admin_app(Options::default()).await;
    let (alice_id, secret) = forced_alice(&app).await;
    let c = cast(&app, "alice", &secret).await;
    app.post_json(&format!("/api/users/{alice_id}/reset-second-factors"), &json!({}))
        .await
        .assert_status(StatusCode::NO_CONTENT);
    // Here the acting session is the admin's; every session of Alice ends.
    app.me().await.assert_status(StatusCode::OK);
    for client in [&c.actor, &c.other] {
        client.me().await.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    }
    verify(&c.pending, "authenticator", &next_totp(&app, &c.secret), false)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "sign_in_expired");
    password_step(&c.remembered, "acme", "alice", "requires_enrollment").await;
}

/// A new client where `alice` of `acme` signed in with her authenticator.
async fn alice_signed_in(app: &TestApp, secret: &str) -> Client {
    let c = app.new_client();
    assert_signed_in(&sign_in_with_totp(app, &c, "acme", "alice", secret, false).await);
    c
}
