//! What a node keeps in memory between requests, and which of its own writes end it. A
//! session (with its user) read in the last half second answers from memory until a
//! write through this node could have changed it: a write of anything, or of its own
//! user's rows. Another user's sign-in (the attempt counted, the factor spent, the
//! session made), a tenant's settings, a new user and another user's 2FA switch set by
//! an admin change neither (`db::stamps`), so a stream of them leaves the sessions of
//! everyone else in memory.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use twofold_server::db::Touches;

use crate::flows::{
    admin_app, assert_signed_in, attempts_left, create_user, drop_switch_trigger, enrol_authenticator, forced_tenant,
    next_totp, password_step, set_tenant_settings, totp_now, verify, wrong_totp,
};
use crate::helpers::{Options, PASSWORD};

#[tokio::test]
async fn a_session_stays_in_memory_through_other_users_sign_ins_and_settings_writes() {
    let app = admin_app(Options::default()).await;
    let acme = forced_tenant(&app, "acme").await;
    let alice = create_user(&app, &acme.id, "alice", None).await;
    let secret = enrol_authenticator(&app, &app.new_client(), "acme", "alice").await.secret;
    let beta = app.create_tenant("beta").await;
    let db = app.running.state.db().clone();
    let mut from_memory = 0;
    for attempt in 0..4 {
        let name = format!("watcher{attempt}");
        let watcher_user = create_user(&app, &beta.id, &name, None).await;
        if Touches::user(&watcher_user.id) == Touches::user(&alice.id) {
            // One stamp for both (one pair in thousands): alice's writes end the
            // watcher's rows too, as they should. Another watcher.
            continue;
        }
        let watcher = app.new_client();
        password_step(&watcher, "beta", &name, "signed_in").await;

        let seen = db.stamps().seen();
        let signing_in = app.new_client();
        password_step(&signing_in, "acme", "alice", "requires_two_factor").await;
        let code = next_totp(&app, &secret);
        // Read, then ended behind the server's back: from here only memory holds it.
        let read = Instant::now();
        watcher.get("/api/account").await.assert_status(StatusCode::OK);
        sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(&watcher_user.id).execute(&db.pool).await.unwrap();
        assert_signed_in(&verify(&signing_in, "authenticator", &code, false).await);
        set_tenant_settings(&app, &acme.id, json!({ "remember_browser_days": 7 + attempt })).await;
        // An admin's writes about one other user: a new user, their switch, their lock
        // lifted, their sessions ended, their account deactivated and reactivated; and
        // before those, that user's own writes on their account page.
        let newcomer_name = format!("newcomer{attempt}");
        let newcomer = create_user(&app, &beta.id, &newcomer_name, None).await;
        let own = app.new_client();
        password_step(&own, "beta", &newcomer_name, "signed_in").await;
        own.put_json("/api/account/two-factor", &json!({ "enabled": false })).await.assert_status(StatusCode::OK);
        own.put_json(
            "/api/account/password",
            &json!({ "current_password": PASSWORD, "new_password": "another long enough password" }),
        )
        .await
        .assert_status(StatusCode::NO_CONTENT);
        // Their factors: an authenticator set up, its recovery codes renewed, removed.
        let started = own.post_json("/api/account/authenticator", &json!({})).await.assert_status(StatusCode::OK);
        let secret_of_own = started.json()["secret"].as_str().unwrap().to_owned();
        let confirm = json!({ "code": totp_now(&app, &secret_of_own) });
        own.post_json("/api/account/authenticator/confirm", &confirm).await.assert_status(StatusCode::OK);
        own.post_json("/api/account/recovery-codes", &json!({})).await.assert_status(StatusCode::OK);
        own.delete("/api/account/authenticator").await.assert_status(StatusCode::NO_CONTENT);
        own.delete("/api/account/browsers").await.assert_status(StatusCode::NO_CONTENT);
        own.post_json("/api/account/sessions/end-others", &json!({})).await.assert_status(StatusCode::NO_CONTENT);
        let sessions = own.get("/api/account/sessions").await.json();
        let sid = sessions[0]["id"].as_str().unwrap().to_owned();
        own.delete(&format!("/api/account/sessions/{sid}")).await.assert_status(StatusCode::NO_CONTENT);
        app.put_json(&format!("/api/users/{}/two-factor", newcomer.id), &json!({ "enabled": true }))
            .await
            .assert_status(StatusCode::OK);
        for action in ["unlock", "end-sessions", "deactivate", "reactivate"] {
            app.post_json(&format!("/api/users/{}/{action}", newcomer.id), &json!({}))
                .await
                .assert_status(StatusCode::NO_CONTENT);
        }
        if Touches::user(&newcomer.id) == Touches::user(&watcher_user.id) {
            continue;
        }

        let stamps = db.stamps();
        assert!(stamps.seen() > seen, "nothing was written");
        assert!(!stamps.current(seen, Some(&alice.id)), "alice's sign-in left her rows in memory");
        assert!(stamps.current(seen, Some(&watcher_user.id)), "alice's sign-in or the settings ended another's rows");
        let answer = watcher.get("/api/account").await;
        // Half a second after its read a session is read again whatever happened; a
        // slow machine only makes this attempt say nothing.
        if read.elapsed() < Duration::from_millis(400) {
            answer.assert_status(StatusCode::OK);
            from_memory += 1;
        }
        // A write of anything ends it: the stored row decides, and it is gone.
        app.create_tenant(&format!("other{attempt}")).await;
        assert!(!db.stamps().current(seen, None));
        watcher.get("/api/account").await.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    }
    assert!(from_memory > 0, "no attempt read the session again within 400 ms");
}

/// The other side: a write of the session's own user (here their sign-in on another
/// browser: the attempt counted on their row, then the sign-in recorded there) ends what
/// memory holds of them at once.
/// The other side for a user's own account page: ending their other sessions or one of
/// them by its id, changing their switch or their password, adding or removing a factor
/// on one browser ends the copy in memory of their session on another at once.
#[tokio::test]
async fn a_users_own_account_writes_end_their_other_session_in_memory() {
    let app = admin_app(Options::default()).await;
    let beta = app.create_tenant("beta").await;
    create_user(&app, &beta.id, "bob", None).await;
    let here = app.new_client();
    password_step(&here, "beta", "bob", "signed_in").await;
    for step in 0..6 {
        let there = app.new_client();
        password_step(&there, "beta", "bob", "signed_in").await;
        there.get("/api/account").await.assert_status(StatusCode::OK);
        match step {
            0 => here
                .post_json("/api/account/sessions/end-others", &json!({}))
                .await
                .assert_status(StatusCode::NO_CONTENT),
            1 => {
                let sessions = here.get("/api/account/sessions").await.json();
                let other = sessions.as_array().unwrap().iter().find(|s| s["current"] == false).unwrap();
                let sid = other["id"].as_str().unwrap();
                here.delete(&format!("/api/account/sessions/{sid}")).await.assert_status(StatusCode::NO_CONTENT)
            }
            2 => here
                .put_json("/api/account/two-factor", &json!({ "enabled": false }))
                .await
                .assert_status(StatusCode::OK),
            3 => {
                let started = here.post_json("/api/account/authenticator", &json!({})).await;
                let secret = started.assert_status(StatusCode::OK).json()["secret"].as_str().unwrap().to_owned();
                let confirm = json!({ "code": totp_now(&app, &secret) });
                here.post_json("/api/account/authenticator/confirm", &confirm).await.assert_status(StatusCode::OK)
            }
            4 => here.delete("/api/account/authenticator").await.assert_status(StatusCode::NO_CONTENT),
            // Last: the other browser signs in with the password it changes.
            _ => here
                .put_json(
                    "/api/account/password",
                    &json!({ "current_password": PASSWORD, "new_password": "bob's second long password" }),
                )
                .await
                .assert_status(StatusCode::NO_CONTENT),
        };
        there.get("/api/account").await.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
        here.get("/api/account").await.assert_status(StatusCode::OK);
    }
}

/// The other side for an admin's actions on one user: each that ends the user's
/// sessions ends the copy in memory at once.
#[tokio::test]
async fn an_admin_action_on_the_sessions_own_user_ends_it_in_memory() {
    let app = admin_app(Options::default()).await;
    let beta = app.create_tenant("beta").await;
    let bob = create_user(&app, &beta.id, "bob", None).await;
    // The switch rotates bob's security stamp; ending his sessions deletes them; a
    // deactivation does both. The copy in memory still holds the session and the old
    // stamp, and must not answer.
    let actions: [(&str, Option<&str>); 3] =
        [("two-factor", None), ("end-sessions", None), ("deactivate", Some("reactivate"))];
    for (action, undo) in actions {
        let signed_in = app.new_client();
        password_step(&signed_in, "beta", "bob", "signed_in").await;
        signed_in.get("/api/account").await.assert_status(StatusCode::OK);
        let path = format!("/api/users/{}/{action}", bob.id);
        if action == "two-factor" {
            app.put_json(&path, &json!({ "enabled": false })).await.assert_status(StatusCode::OK);
        } else {
            app.post_json(&path, &json!({})).await.assert_status(StatusCode::NO_CONTENT);
        }
        signed_in.get("/api/account").await.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
        if let Some(undo) = undo {
            app.post_json(&format!("/api/users/{}/{undo}", bob.id), &json!({}))
                .await
                .assert_status(StatusCode::NO_CONTENT);
        }
    }
}

#[tokio::test]
async fn a_sign_in_of_the_sessions_own_user_ends_it_in_memory() {
    let app = admin_app(Options::default()).await;
    let acme = forced_tenant(&app, "acme").await;
    let alice = create_user(&app, &acme.id, "alice", None).await;
    let secret = enrol_authenticator(&app, &app.new_client(), "acme", "alice").await.secret;
    let signed_in = app.new_client();
    password_step(&signed_in, "acme", "alice", "requires_two_factor").await;
    assert_signed_in(&verify(&signed_in, "authenticator", &next_totp(&app, &secret), false).await);
    let signing_in = app.new_client();
    password_step(&signing_in, "acme", "alice", "requires_two_factor").await;
    let code = next_totp(&app, &secret);

    signed_in.get("/api/account").await.assert_status(StatusCode::OK);
    let db = app.running.state.db().clone();
    sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(&alice.id).execute(&db.pool).await.unwrap();
    let seen = db.stamps().seen();
    assert_signed_in(&verify(&signing_in, "authenticator", &code, false).await);
    assert!(!db.stamps().current(seen, Some(&alice.id)), "her sign-in left her rows in memory");
    signed_in.get("/api/account").await.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    signing_in.get("/api/account").await.assert_status(StatusCode::OK);
}

/// A user's policy inputs stay in memory through their own sign-in, whose writes (a
/// wrong code counted, the right one settled, the session made) change none of them: the
/// verification of a code reads the inputs its password step read instead of sending
/// another statement. An admin's write of that user's rows ends them at once.
#[tokio::test]
async fn a_users_policy_inputs_stay_in_memory_through_their_own_sign_in() {
    let app = admin_app(Options::default()).await;
    let acme = forced_tenant(&app, "acme").await;
    let alice = create_user(&app, &acme.id, "alice", None).await;
    let secret = enrol_authenticator(&app, &app.new_client(), "acme", "alice").await.secret;
    let pool = &app.running.state.db().pool;
    drop_switch_trigger(&app).await;
    let kept = app.policy(&alice.id).await["user_two_factor_enabled"].as_bool().unwrap();

    let signing_in = app.new_client();
    password_step(&signing_in, "acme", "alice", "requires_two_factor").await;
    sqlx::query("UPDATE users SET two_factor_enabled = $1 WHERE id = $2")
        .bind(i64::from(!kept))
        .bind(&alice.id)
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(attempts_left(&verify(&signing_in, "authenticator", &wrong_totp(&app, &secret), false).await), 4);
    assert_signed_in(&verify(&signing_in, "authenticator", &next_totp(&app, &secret), false).await);
    assert_eq!(
        app.policy(&alice.id).await["user_two_factor_enabled"],
        kept,
        "her sign-in's writes ended her policy inputs in memory"
    );

    app.post_json(&format!("/api/users/{}/unlock", alice.id), &json!({})).await.assert_status(StatusCode::NO_CONTENT);
    assert_eq!(app.policy(&alice.id).await["user_two_factor_enabled"], !kept, "an admin's write left them");
}
