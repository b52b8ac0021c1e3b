//! Lockout after repeated wrong second factors: when it starts, what it refuses (the
//! right code too, and a fresh password step), when it ends, what resets the count,
//! that wrong passwords are counted apart, and the admin's unlock.

use reqwest::StatusCode;
use serde_json::json;

use crate::flows::{
    PENDING_COOKIE, admin_app, assert_factor_error, assert_signed_in, attempts_left, create_user, enrol_authenticator,
    forced_tenant, next_totp, password_step, pending_cookie, post_with_cookie, set_tenant_settings, totp_now, verify,
    wrong_totp,
};
use crate::helpers::{Options, PASSWORD, TestApp};

/// A forced tenant `acme` with `alice`, who has an authenticator. Returns its secret.
async fn alice_with_authenticator(app: &TestApp) -> (String, String) {
    let t = forced_tenant(app, "acme").await;
    let alice = create_user(app, &t.id, "alice", None).await;
    let enrolled = enrol_authenticator(app, &app.new_client(), "acme", "alice").await;
    (alice.id, enrolled.secret)
}

#[tokio::test]
async fn five_wrong_codes_lock_second_factor_sign_in_for_five_minutes() {
    let app = admin_app(Options::default()).await;
    let (_, secret) = alice_with_authenticator(&app).await;
    let alice = app.new_client();

    password_step(&alice, "acme", "alice", "requires_two_factor").await;
    for left in [4, 3, 2, 1] {
        assert_eq!(attempts_left(&verify(&alice, "authenticator", &wrong_totp(&app, &secret), false).await), left);
    }
    let fifth = verify(&alice, "authenticator", &wrong_totp(&app, &secret), false).await;
    let body = assert_factor_error(&fifth, StatusCode::LOCKED, "locked_out");
    assert_eq!(body["retry_after_seconds"], 300, "{body}");

    // While locked, nothing passes: not the right code, not a recovery code, and a new
    // password step does not start a fresh count.
    let right = verify(&alice, "authenticator", &next_totp(&app, &secret), false).await;
    assert_factor_error(&right, StatusCode::LOCKED, "locked_out");
    assert!(right.set_cookie("twofold_session").is_none());
    let again = app.new_client();
    let resp = again.sign_in(Some("acme"), "alice", PASSWORD).await;
    let body = assert_factor_error(&resp, StatusCode::LOCKED, "locked_out");
    assert!(body["retry_after_seconds"].as_u64().unwrap() <= 300, "{body}");
    assert!(resp.set_cookies().is_empty(), "{:?}", resp.set_cookies());

    // Five minutes later the right code works.
    app.advance_minutes(5);
    password_step(&again, "acme", "alice", "requires_two_factor").await;
    assert_signed_in(&verify(&again, "authenticator", &totp_now(&app, &secret), false).await);
}

#[tokio::test]
async fn the_count_survives_a_new_password_step_and_only_a_success_resets_it() {
    let app = admin_app(Options::default()).await;
    let (_, secret) = alice_with_authenticator(&app).await;
    let alice = app.new_client();

    password_step(&alice, "acme", "alice", "requires_two_factor").await;
    assert_eq!(attempts_left(&verify(&alice, "authenticator", &wrong_totp(&app, &secret), false).await), 4);
    assert_eq!(attempts_left(&verify(&alice, "authenticator", &wrong_totp(&app, &secret), false).await), 3);

    // Wrong passwords are counted apart: they neither add to nor reset the count.
    for _ in 0..3 {
        alice
            .sign_in(Some("acme"), "alice", "not the password")
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    // Nor does a right password.
    password_step(&alice, "acme", "alice", "requires_two_factor").await;
    assert_eq!(attempts_left(&verify(&alice, "authenticator", &wrong_totp(&app, &secret), false).await), 2);

    // A success resets it.
    assert_signed_in(&verify(&alice, "authenticator", &next_totp(&app, &secret), false).await);
    let later = app.new_client();
    password_step(&later, "acme", "alice", "requires_two_factor").await;
    assert_eq!(attempts_left(&verify(&later, "authenticator", &wrong_totp(&app, &secret), false).await), 4);
}

#[tokio::test]
async fn wrong_codes_do_not_count_as_wrong_passwords() {
    // With two wrong passwords allowed, three wrong codes in one pending sign-in would
    // throttle the next password step if the counters were shared.
    let app = admin_app(Options { password_failures_per_account: Some(2), ..Options::default() }).await;
    let (_, secret) = alice_with_authenticator(&app).await;
    let alice = app.new_client();
    password_step(&alice, "acme", "alice", "requires_two_factor").await;
    for _ in 0..3 {
        assert_factor_error(
            &verify(&alice, "authenticator", &wrong_totp(&app, &secret), false).await,
            StatusCode::UNAUTHORIZED,
            "invalid_code",
        );
    }
    password_step(&alice, "acme", "alice", "requires_two_factor").await;
    assert_eq!(attempts_left(&verify(&alice, "authenticator", &wrong_totp(&app, &secret), false).await), 1);
}

#[tokio::test]
async fn an_admin_unlocks_a_locked_user() {
    let app = admin_app(Options::default()).await;
    let (alice_id, secret) = alice_with_authenticator(&app).await;
    let alice = app.new_client();
    password_step(&alice, "acme", "alice", "requires_two_factor").await;
    for _ in 0..5 {
        let _ = verify(&alice, "authenticator", &wrong_totp(&app, &secret), false).await;
    }
    assert_factor_error(&alice.sign_in(Some("acme"), "alice", PASSWORD).await, StatusCode::LOCKED, "locked_out");

    app.post_json(&format!("/api/users/{alice_id}/unlock"), &json!({})).await.assert_status(StatusCode::NO_CONTENT);
    password_step(&alice, "acme", "alice", "requires_two_factor").await;
    // Unlocking also starts a fresh count.
    assert_eq!(attempts_left(&verify(&alice, "authenticator", &wrong_totp(&app, &secret), false).await), 4);
    assert_signed_in(&verify(&alice, "authenticator", &next_totp(&app, &secret), false).await);
    let events = app.audit("").await;
    assert!(events.iter().any(|e| e["action"] == "user.unlocked"), "{events:?}");
}

/// Every way a check of an authenticator code can be refused before the code is
/// looked at: none of them counts towards the lockout. On PostgreSQL the attempt is
/// counted by the statement that reads the pending sign-in, so each of these refusals
/// must give it back; counted and kept, four of them would leave one guess.
#[tokio::test]
async fn a_check_refused_before_its_code_is_looked_at_counts_no_attempt() {
    let app = admin_app(Options::default()).await;
    let t = forced_tenant(&app, "acme").await;
    let alice_id = create_user(&app, &t.id, "alice", None).await.id;
    let secret = enrol_authenticator(&app, &app.new_client(), "acme", "alice").await.secret;
    let alice = app.new_client();
    password_step(&alice, "acme", "alice", "requires_two_factor").await;
    assert_eq!(attempts_left(&verify(&alice, "authenticator", &wrong_totp(&app, &secret), false).await), 4);

    // A provider the tenant no longer allows.
    let only_email = json!({ "authenticator": false, "email": true, "sms": false, "passkey": false });
    set_tenant_settings(&app, &t.id, json!({ "allowed_providers": only_email })).await;
    for _ in 0..4 {
        let refused = verify(&alice, "authenticator", &totp_now(&app, &secret), false).await;
        assert_factor_error(&refused, StatusCode::BAD_REQUEST, "provider_unavailable");
    }
    let all = json!({ "authenticator": true, "email": true, "sms": true, "passkey": true });
    set_tenant_settings(&app, &t.id, json!({ "allowed_providers": all })).await;
    assert_eq!(attempts_left(&verify(&alice, "authenticator", &wrong_totp(&app, &secret), false).await), 3);

    // A pending sign-in that expired.
    app.advance_minutes(11);
    for _ in 0..4 {
        let refused = verify(&alice, "authenticator", &totp_now(&app, &secret), false).await;
        assert_factor_error(&refused, StatusCode::UNAUTHORIZED, "sign_in_expired");
    }
    password_step(&alice, "acme", "alice", "requires_two_factor").await;
    assert_eq!(attempts_left(&verify(&alice, "authenticator", &wrong_totp(&app, &secret), false).await), 2);

    // A pending sign-in another request completed: the success reset the count, and
    // replays of the finished sign-in add nothing to it.
    let first = app.new_client().sign_in(Some("acme"), "alice", PASSWORD).await.assert_status(StatusCode::OK);
    let finished = format!("{PENDING_COOKIE}={}", pending_cookie(&first));
    let verify_with = |code: String| {
        let body = json!({ "method": "authenticator", "code": code });
        let (addr, finished) = (app.running.addr, finished.clone());
        async move { post_with_cookie(addr, "/api/auth/sign-in/verify", &finished, &body).await }
    };
    assert_signed_in(&verify_with(next_totp(&app, &secret)).await);
    for _ in 0..4 {
        assert_factor_error(&verify_with(wrong_totp(&app, &secret)).await, StatusCode::UNAUTHORIZED, "sign_in_expired");
    }
    let view = app.get(&format!("/api/users/{alice_id}")).await.json();
    assert_eq!(view["lock"]["failures"], 0, "{view}");
    let later = app.new_client();
    password_step(&later, "acme", "alice", "requires_two_factor").await;
    assert_eq!(attempts_left(&verify(&later, "authenticator", &wrong_totp(&app, &secret), false).await), 4);
}

/// A user's count of second-factor failures, read on a connection of its own.
async fn failures_of(app: &TestApp, user_id: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT second_factor_failures FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_one(&app.running.state.db().pool)
        .await
        .unwrap();
    n
}

/// On PostgreSQL the statement that reads a pending sign-in and counts its attempt
/// commits without waiting for the log's sync, for its own transaction only: the count
/// is seen from every other connection once it returns (what holds racing guesses to the
/// limit), and the connection's next commits sync again (left on the connection, the
/// setting would leave the sign-ins completed on it unsynced too). On SQLite the writer
/// counts it, seen as at once.
#[tokio::test]
async fn a_counted_attempt_is_seen_at_once_and_the_connections_next_commits_sync() {
    use twofold_server::db::{factors, groups};
    let app = admin_app(Options::default()).await;
    let (alice_id, _) = alice_with_authenticator(&app).await;
    let resp = app.new_client().sign_in(Some("acme"), "alice", PASSWORD).await.assert_status(StatusCode::OK);
    let token = pending_cookie(&resp);
    let (db, now) = (app.running.state.db(), app.running.state.now());
    let before = failures_of(&app, &alice_id).await;
    if crate::helpers::Backend::from_env() == crate::helpers::Backend::Postgres {
        let mut conn = db.pool.acquire().await.unwrap();
        let at = groups::ReserveAt { now, stage: "second_factor", max_failures: 5, permanent_after: 100 };
        let (_, reserved) = groups::pending_reserving(&mut conn, &twofold_server::auth::token_hash(&token), at)
            .await
            .unwrap()
            .expect("the pending sign-in");
        assert!(reserved.is_some(), "the attempt was counted");
        let (setting,): (String,) = sqlx::query_as("SHOW synchronous_commit").fetch_one(&mut *conn).await.unwrap();
        assert_eq!(setting, "on", "the unsynced commit outlived its statement on this connection");
    } else {
        assert!(factors::reserve_attempt(db, &alice_id, now, 5, 100).await.unwrap().is_some(), "counted");
    }
    assert_eq!(failures_of(&app, &alice_id).await, before + 1, "the count, from another connection");
}
