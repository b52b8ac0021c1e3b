//! What admins can do to a user's second factors: reset them (authenticator, recovery
//! codes, remembered browsers and sessions all go; a forced user enrols again), end the
//! user's sessions, unlock them; and that an admin of another tenant can do none of it.

use reqwest::StatusCode;
use serde_json::json;

use crate::flows::{
    REMEMBER_COOKIE, admin_app, assert_factor_error, assert_signed_in, cookie_set, create_user, enrol_authenticator,
    forced_tenant, next_totp, password_step, sign_in_with_totp, verify,
};
use crate::helpers::Options;

#[tokio::test]
async fn a_reset_removes_every_second_factor_and_session() {
    let app = admin_app(Options::default()).await;
    let t = forced_tenant(&app, "acme").await;
    let alice = create_user(&app, &t.id, "alice", None).await;
    let own = app.new_client();
    let enrolled = enrol_authenticator(&app, &own, "acme", "alice").await;
    let remembered = app.new_client();
    let resp = sign_in_with_totp(&app, &remembered, "acme", "alice", &enrolled.secret, true).await;
    assert!(cookie_set(&resp, REMEMBER_COOKIE).is_some());

    app.post_json(&format!("/api/users/{}/reset-second-factors", alice.id), &json!({}))
        .await
        .assert_status(StatusCode::NO_CONTENT);
    let user = app.get(&format!("/api/users/{}", alice.id)).await.assert_status(StatusCode::OK).json();
    assert_eq!(user["has_factor"], false, "{user}");

    // Her sessions are gone, and the remembered browser no longer skips anything: under
    // the forced policy she has to enrol again.
    own.me().await.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    remembered.me().await.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    password_step(&remembered, "acme", "alice", "requires_enrollment").await;
    let again = enrol_authenticator(&app, &own, "acme", "alice").await;
    assert_ne!(again.secret, enrolled.secret);
    let list = own.get("/api/account/browsers").await.assert_status(StatusCode::OK).json();
    assert_eq!(list, json!([]));

    // The old authenticator and the old recovery codes are worthless now.
    let next = app.new_client();
    password_step(&next, "acme", "alice", "requires_two_factor").await;
    let old = verify(&next, "authenticator", &next_totp(&app, &enrolled.secret), false).await;
    assert_factor_error(&old, StatusCode::UNAUTHORIZED, "invalid_code");
    let old = verify(&next, "recovery_code", &enrolled.recovery_codes[0], false).await;
    assert_factor_error(&old, StatusCode::UNAUTHORIZED, "invalid_code");
    assert_signed_in(&verify(&next, "recovery_code", &again.recovery_codes[0], false).await);

    let events = app.audit("").await;
    assert!(events.iter().any(|e| e["action"] == "user.second_factors_reset"), "{events:?}");
}

#[tokio::test]
async fn ending_sessions_signs_the_user_out_everywhere_but_keeps_factors() {
    let app = admin_app(Options::default()).await;
    let t = forced_tenant(&app, "acme").await;
    let alice = create_user(&app, &t.id, "alice", None).await;
    let enrolled = enrol_authenticator(&app, &app.new_client(), "acme", "alice").await;
    let (one, two) = (app.new_client(), app.new_client());
    for c in [&one, &two] {
        assert_signed_in(&sign_in_with_totp(&app, c, "acme", "alice", &enrolled.secret, false).await);
    }

    app.post_json(&format!("/api/users/{}/end-sessions", alice.id), &json!({}))
        .await
        .assert_status(StatusCode::NO_CONTENT);
    for c in [&one, &two] {
        c.me().await.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    }
    app.me().await.assert_status(StatusCode::OK);
    // Her factors are untouched.
    assert_signed_in(&sign_in_with_totp(&app, &one, "acme", "alice", &enrolled.secret, false).await);
}

#[tokio::test]
async fn admins_of_another_tenant_cannot_touch_the_user() {
    let app = admin_app(Options::default()).await;
    // Both tenant admins sign in before the ceiling is forced, so they need no factor.
    let (acme, _, acme_admin) = app.tenant_with_admin("acme", "boss").await;
    let (_, _, other_admin) = app.tenant_with_admin("other", "intruder").await;
    let alice = create_user(&app, &acme.id, "alice", None).await;
    app.set_feature(&acme.id, "forced").await;
    let own = app.new_client();
    enrol_authenticator(&app, &own, "acme", "alice").await;

    for action in ["unlock", "reset-second-factors", "end-sessions"] {
        other_admin
            .post_json(&format!("/api/users/{}/{action}", alice.id), &json!({}))
            .await
            .assert_error(StatusCode::FORBIDDEN, "forbidden");
    }
    // Nothing happened to her.
    own.me().await.assert_status(StatusCode::OK);
    let body = password_step(&app.new_client(), "acme", "alice", "requires_two_factor").await;
    assert_eq!(body["recovery_code_available"], true);

    // Her own tenant's admin may.
    for action in ["unlock", "end-sessions", "reset-second-factors"] {
        acme_admin
            .post_json(&format!("/api/users/{}/{action}", alice.id), &json!({}))
            .await
            .assert_status(StatusCode::NO_CONTENT);
    }
    own.me().await.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    password_step(&own, "acme", "alice", "requires_enrollment").await;
}
