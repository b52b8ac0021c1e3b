//! The account page's API as its user meets it: the policy with its explanation, the
//! own 2FA switch where the policy lets users change it, reauthentication before
//! sensitive changes (and its expiry), and the factors that cannot be removed.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::flows::{
    add_authenticator_in_account, admin_app, assert_signed_in, create_user, enrol_authenticator, forced_tenant,
    next_totp, password_step, reauthenticate, set_tenant_settings, sign_in_with_totp, verify,
};
use crate::helpers::{Client, Options, PASSWORD, TestApp};

async fn account(client: &Client) -> Value {
    client.get("/api/account").await.assert_status(StatusCode::OK).json()
}

async fn set_switch(client: &Client, enabled: bool) -> crate::helpers::Resp {
    client.put_json("/api/account/two-factor", &json!({ "enabled": enabled })).await
}

/// An optional tenant `acme` where `alice` has an authenticator and 2FA switched on;
/// returns the secret.
async fn opted_in_alice(app: &TestApp) -> String {
    let t = app.create_tenant("acme").await;
    create_user(app, &t.id, "alice", None).await;
    let setup = app.new_client();
    setup.sign_in_ok(Some("acme"), "alice", PASSWORD).await;
    let secret = add_authenticator_in_account(app, &setup).await.secret;
    set_switch(&setup, true).await.assert_status(StatusCode::OK);
    secret
}

#[tokio::test]
async fn the_account_shows_the_policy_the_switch_and_the_factors() {
    let app = admin_app(Options::default()).await;
    let t = forced_tenant(&app, "acme").await;
    create_user(&app, &t.id, "alice", Some("alice@example.test")).await;
    let alice = app.new_client();
    let enrolled = enrol_authenticator(&app, &alice, "acme", "alice").await;

    let a = account(&alice).await;
    assert_eq!(a["user"]["username"], "alice", "{a}");
    let p = &a["policy"];
    assert_eq!(p["behaviour"], "forced", "{a}");
    assert_eq!(p["required"], true, "{a}");
    assert_eq!(p["decided_by"], "tenant_feature", "{a}");
    assert_eq!(p["summary"], "Your organisation requires two-factor sign-in.", "{a}");
    let trace: Vec<&str> = p["trace"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    assert!(trace.iter().any(|l| l.contains("forced")), "{trace:?}");
    assert_eq!(a["two_factor_enabled"], false, "the user's own flag is kept as it was: {a}");
    assert_eq!(a["user_can_change"], false, "{a}");
    assert_eq!(
        a["factors"],
        json!({
            "authenticator": true,
            "email": "alice@example.test", "email_confirmed": false, "pending_email": null,
            "phone": null, "phone_confirmed": false, "pending_phone": null,
            "passkeys": [],
            "recovery_codes_left": 10
        }),
        "{a}"
    );
    // Just signed in with every factor checked: sensitive changes are open for a while.
    assert!(a["reauthenticated_until"].is_string(), "{a}");

    // Spending a recovery code shows in the count.
    let other = app.new_client();
    password_step(&other, "acme", "alice", "requires_two_factor").await;
    assert_signed_in(&verify(&other, "recovery_code", &enrolled.recovery_codes[0], false).await);
    assert_eq!(account(&alice).await["factors"]["recovery_codes_left"], 9);

    // An optional tenant's user sees who decides and that they may change it.
    let t2 = app.create_tenant("beta").await;
    create_user(&app, &t2.id, "bob", None).await;
    let bob = app.new_client();
    bob.sign_in_ok(Some("beta"), "bob", PASSWORD).await;
    let b = account(&bob).await;
    assert_eq!(b["policy"]["decided_by"], "user", "{b}");
    assert_eq!(b["policy"]["required"], false, "{b}");
    assert_eq!(b["policy"]["summary"], "Two-factor sign-in is off for your account.", "{b}");
    assert_eq!(b["user_can_change"], true, "{b}");
    assert_eq!(b["factors"]["recovery_codes_left"], 0, "{b}");
}

#[tokio::test]
async fn users_flip_their_switch_only_where_the_policy_lets_them() {
    let app = admin_app(Options::default()).await;
    let t = app.create_tenant("acme").await;
    create_user(&app, &t.id, "alice", None).await;
    let alice = app.new_client();
    alice.sign_in_ok(Some("acme"), "alice", PASSWORD).await;

    set_tenant_settings(&app, &t.id, json!({ "users_can_change": false })).await;
    set_switch(&alice, true).await.assert_error(StatusCode::CONFLICT, "user_cannot_change");
    assert_eq!(account(&alice).await["two_factor_enabled"], false);

    set_tenant_settings(&app, &t.id, json!({ "users_can_change": true })).await;
    let view = set_switch(&alice, true).await.assert_status(StatusCode::OK).json();
    assert_eq!(view["required"], true, "{view}");
    assert_eq!(account(&alice).await["two_factor_enabled"], true);
    // With the switch on and no factor yet, the next sign-in enrols first.
    password_step(&app.new_client(), "acme", "alice", "requires_enrollment").await;

    // Under a forced ceiling nobody flips anything.
    app.set_feature(&t.id, "forced").await;
    set_switch(&alice, false).await.assert_error(StatusCode::CONFLICT, "user_cannot_change");
}

#[tokio::test]
async fn turning_2fa_off_needs_a_fresh_reauthentication() {
    let app = admin_app(Options::default()).await;
    let secret = opted_in_alice(&app).await;
    let alice = app.new_client();
    assert_signed_in(&sign_in_with_totp(&app, &alice, "acme", "alice", &secret, false).await);

    // Five minutes by default; after six the sign-in no longer counts.
    app.advance_minutes(6);
    assert!(account(&alice).await["reauthenticated_until"].is_null());
    set_switch(&alice, false).await.assert_error(StatusCode::FORBIDDEN, "reauthentication_required");

    // Reauthentication wants the password and a second factor.
    let wrong = alice
        .post_json("/api/account/reauthenticate", &json!({ "password": "not the password" }))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    // Only a password was typed: the answer says so (the web app then does not speak of
    // a wrong user name).
    assert_eq!(wrong["field"], "password", "{wrong}");
    alice
        .post_json("/api/account/reauthenticate", &json!({ "password": PASSWORD }))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_field");
    set_switch(&alice, false).await.assert_error(StatusCode::FORBIDDEN, "reauthentication_required");
    reauthenticate(&app, &alice, &secret).await;
    assert!(account(&alice).await["reauthenticated_until"].is_string());
    let view = set_switch(&alice, false).await.assert_status(StatusCode::OK).json();
    assert_eq!(view["required"], false, "{view}");

    // Turning it on needs nothing; turning it off again after the window needs a new
    // reauthentication.
    set_switch(&alice, true).await.assert_status(StatusCode::OK);
    app.advance_minutes(6);
    set_switch(&alice, false).await.assert_error(StatusCode::FORBIDDEN, "reauthentication_required");
    reauthenticate(&app, &alice, &secret).await;
    set_switch(&alice, false).await.assert_status(StatusCode::OK);
}

#[tokio::test]
async fn the_last_factor_cannot_be_removed_while_2fa_is_forced() {
    let app = admin_app(Options::default()).await;
    let t = forced_tenant(&app, "acme").await;
    create_user(&app, &t.id, "alice", None).await;
    let alice = app.new_client();
    let enrolled = enrol_authenticator(&app, &alice, "acme", "alice").await;

    // Freshly verified, so only the policy stands in the way.
    alice.delete("/api/account/authenticator").await.assert_error(StatusCode::CONFLICT, "last_factor");
    assert_eq!(account(&alice).await["factors"]["authenticator"], true);
    assert_signed_in(&sign_in_with_totp(&app, &app.new_client(), "acme", "alice", &enrolled.secret, false).await);
}

#[tokio::test]
async fn removing_the_authenticator_needs_reauthentication() {
    let app = admin_app(Options::default()).await;
    let secret = opted_in_alice(&app).await;
    let alice = app.new_client();
    assert_signed_in(&sign_in_with_totp(&app, &alice, "acme", "alice", &secret, false).await);
    app.advance_minutes(6);

    alice.delete("/api/account/authenticator").await.assert_error(StatusCode::FORBIDDEN, "reauthentication_required");
    assert_eq!(account(&alice).await["factors"]["authenticator"], true);
    reauthenticate(&app, &alice, &secret).await;
    alice.delete("/api/account/authenticator").await.assert_status(StatusCode::NO_CONTENT);
    let a = account(&alice).await;
    assert_eq!(a["factors"]["authenticator"], false, "{a}");

    // Her switch is still on and she has no factor left: the next sign-in enrols
    // rather than letting her in.
    let next = app.new_client();
    password_step(&next, "acme", "alice", "requires_enrollment").await;
    verify(&next, "authenticator", &next_totp(&app, &secret), false)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "sign_in_expired");
}

#[tokio::test]
async fn an_email_factor_can_be_removed_like_a_phone() {
    let (app, mut mail) = crate::flows::mail_app(Options::default()).await;
    let secret = opted_in_alice(&app).await;
    let alice = app.new_client();
    assert_signed_in(&sign_in_with_totp(&app, &alice, "acme", "alice", &secret, false).await);
    crate::flows::confirm_email_in_account(&alice, &mut mail, "alice@example.test").await;
    assert_eq!(account(&alice).await["factors"]["email_confirmed"], true);

    // Stale: refused, nothing removed.
    app.advance_minutes(6);
    alice.delete("/api/account/email").await.assert_error(StatusCode::FORBIDDEN, "reauthentication_required");
    assert_eq!(account(&alice).await["factors"]["email"], "alice@example.test");

    reauthenticate(&app, &alice, &secret).await;
    alice.delete("/api/account/email").await.assert_status(StatusCode::NO_CONTENT);
    let f = account(&alice).await["factors"].take();
    assert_eq!(
        (f["email"].clone(), f["email_confirmed"].clone(), f["pending_email"].clone()),
        (Value::Null, json!(false), Value::Null)
    );
    // The old address hears about it: whoever removed it may not be its owner.
    mail.wait_for_notice("alice@example.test", "was removed").await;
    alice.delete("/api/account/email").await.assert_error(StatusCode::NOT_FOUND, "not_found");
    // Email is no longer offered at sign-in.
    let next = app.new_client();
    let step = password_step(&next, "acme", "alice", "requires_two_factor").await;
    assert!(!step["providers"].as_array().unwrap().iter().any(|p| p["provider"] == "email"), "{step}");
}

#[tokio::test]
async fn the_last_factor_rule_covers_email() {
    let (app, mut mail) = crate::flows::mail_app(Options::default()).await;
    let t = forced_tenant(&app, "acme").await;
    create_user(&app, &t.id, "carol", Some("carol@example.test")).await;
    let carol = app.new_client();
    crate::flows::enrol_email(&carol, &mut mail, "acme", "carol", "carol@example.test").await;
    carol.delete("/api/account/email").await.assert_error(StatusCode::CONFLICT, "last_factor");
    assert_eq!(account(&carol).await["factors"]["email_confirmed"], true);
}

#[tokio::test]
async fn a_phone_entered_by_an_admin_waits_for_the_user_to_confirm_it() {
    let (app, sms) = crate::flows::sms_app(Options::default()).await;
    let t = app.create_tenant("acme").await;
    let path = format!("/api/tenants/{}/users", t.id);
    // A bad number is refused with its field, and no user is created.
    let bad = json!({ "username": "dave", "password": PASSWORD, "phone": "0800 123" });
    app.post_json(&path, &bad).await.assert_error(StatusCode::BAD_REQUEST, "invalid_field");
    assert_eq!(app.get(&format!("{path}?q=dave")).await.assert_status(StatusCode::OK).json()["total"], 0);

    let good = json!({ "username": "dave", "password": PASSWORD, "phone": "+1 415 555 0123" });
    app.post_json(&path, &good).await.assert_status(StatusCode::CREATED);
    let dave = app.new_client();
    dave.sign_in_ok(Some("acme"), "dave", PASSWORD).await;
    let f = account(&dave).await["factors"].take();
    assert_eq!((f["phone"].clone(), f["phone_confirmed"].clone()), (json!("+14155550123"), json!(false)), "{f}");
    // Confirming the number on file needs no number in the request.
    dave.put_json("/api/account/phone", &json!({})).await.assert_status(StatusCode::OK);
    let code = sms.last_code_to("+14155550123");
    dave.post_json("/api/account/phone/confirm", &json!({ "code": code })).await.assert_status(StatusCode::OK);
    assert_eq!(account(&dave).await["factors"]["phone_confirmed"], true);
}

#[tokio::test]
async fn a_phone_at_creation_obeys_the_scope_s_country_list() {
    let app = admin_app(Options::default()).await;
    let t = app.create_tenant("acme").await;
    set_tenant_settings(&app, &t.id, json!({ "sms_allowed_country_codes": ["44"] })).await;
    let path = format!("/api/tenants/{}/users", t.id);
    let body = json!({ "username": "erin", "password": PASSWORD, "phone": "+14155550123" });
    app.post_json(&path, &body).await.assert_error(StatusCode::BAD_REQUEST, "phone_country_not_allowed");
    assert_eq!(app.get(&format!("{path}?q=erin")).await.assert_status(StatusCode::OK).json()["total"], 0);
}

#[tokio::test]
async fn the_own_policy_speaks_to_the_user_and_the_admin_view_about_them() {
    let app = admin_app(Options::default()).await;
    let t = app.create_tenant("acme").await;
    let user = create_user(&app, &t.id, "alice", None).await;
    let alice = app.new_client();
    alice.sign_in_ok(Some("acme"), "alice", PASSWORD).await;
    let own = account(&alice).await["policy"]["trace"].clone();
    let own: Vec<&str> = own.as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert!(own.contains(&"Your own switch is off, so a second factor is not required."), "{own:?}");
    assert!(own.iter().all(|s| !s.contains("the user") && !s.contains("The user")), "{own:?}");
    let admin = app.policy(&user.id).await["trace"].clone();
    let admin: Vec<&str> = admin.as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert!(admin.contains(&"The user's own switch is off, so a second factor is not required."), "{admin:?}");
}
