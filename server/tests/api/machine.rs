//! Attacks on the sign-in pipeline, one per hole a review found, each written before
//! its fix: the admin API aimed at oneself, a stolen session taking over the second
//! factor, a password flood locking the owner out, a raced and never-escalating
//! lockout, a weaker factor removing a stronger one, change-password as a password
//! oracle, remembered browsers listed after they stopped working, and unequal work on
//! the password step.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::flows::{
    PENDING_COOKIE, REMEMBER_COOKIE, add_authenticator_in_account, admin_app, assert_factor_error, assert_signed_in,
    attempts_left, create_user, enrol_authenticator, forced_tenant, mail_app, next_totp, password_step, pending_cookie,
    post_with_cookie, reauthenticate, send_code, sign_in_with_totp, totp_now, verify, wrong_totp,
};
use crate::helpers::{ADMIN_PASSWORD, Client, Options, PASSWORD, Resp, TestApp};

/// Past the five minutes a sign-in keeps a session fresh for sensitive changes.
const STALE_MINUTES: i64 = 6;

async fn sign_in_from(client: &Client, address: &str, tenant: Option<&str>, username: &str, password: &str) -> Resp {
    let mut body = json!({ "username": username, "password": password });
    if let Some(t) = tenant {
        body["tenant"] = json!(t);
    }
    let request = client
        .raw(Method::POST, "/api/auth/sign-in")
        .header("X-Requested-With", "test")
        .header("X-Forwarded-For", address)
        .json(&body);
    client.send(request).await
}

trait RateLimited {
    fn assert_rate_limited(self);
}

impl RateLimited for Resp {
    #[track_caller]
    fn assert_rate_limited(self) {
        assert_factor_error(&self, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    }
}

fn count(events: &[Value], action: &str) -> usize {
    events.iter().filter(|e| e["action"] == action).count()
}

/// Audit events about one user.
async fn events_about(app: &TestApp, user_id: &str) -> Vec<Value> {
    let target = format!("user:{user_id}");
    app.audit("").await.into_iter().filter(|e| e["target"] == target.as_str()).collect()
}

// ---------------------------------------------------------------- (1) admin API at oneself

#[tokio::test]
async fn an_admin_with_a_stale_session_cannot_change_their_own_second_factor_through_the_admin_api() {
    let app = admin_app(Options::default()).await;
    let t = app.create_tenant("acme").await;
    let ta = create_user(&app, &t.id, "tina", None).await;
    app.make_tenant_admin(&t.id, &ta.id).await;
    let bob = create_user(&app, &t.id, "bob", None).await;
    let tina = app.new_client();
    tina.sign_in_ok(Some("acme"), "tina", PASSWORD).await;
    app.advance_minutes(STALE_MINUTES);

    let own = format!("/api/users/{}", ta.id);
    tina.put_json(&format!("{own}/two-factor"), &json!({ "enabled": true }))
        .await
        .assert_error(StatusCode::FORBIDDEN, "reauthentication_required");
    tina.post_json(&format!("{own}/reset-second-factors"), &json!({}))
        .await
        .assert_error(StatusCode::FORBIDDEN, "reauthentication_required");
    tina.post_json(&format!("{own}/unlock"), &json!({}))
        .await
        .assert_error(StatusCode::FORBIDDEN, "reauthentication_required");
    // Aimed at someone else, the same session still administers.
    tina.put_json(&format!("/api/users/{}/two-factor", bob.id), &json!({ "enabled": true }))
        .await
        .assert_status(StatusCode::OK);

    // A fresh reauthentication opens the way again.
    tina.post_json("/api/account/reauthenticate", &json!({ "password": PASSWORD }))
        .await
        .assert_status(StatusCode::NO_CONTENT);
    tina.put_json(&format!("{own}/two-factor"), &json!({ "enabled": true })).await.assert_status(StatusCode::OK);
}

// ---------------------------------------------------------------- (2) stolen session

#[tokio::test]
async fn a_stale_session_alone_cannot_turn_on_2fa_enrol_a_factor_or_set_a_first_email_or_phone() {
    // With senders that could deliver the codes: the refusal must be about freshness.
    let app = admin_app(Options { dev_senders: true, ..Options::default() }).await;
    let t = app.create_tenant("acme").await;
    create_user(&app, &t.id, "alice", None).await;
    let thief = app.new_client();
    thief.sign_in_ok(Some("acme"), "alice", PASSWORD).await;
    app.advance_minutes(STALE_MINUTES);

    for (method, path, body) in [
        (Method::PUT, "/api/account/two-factor", json!({ "enabled": true })),
        (Method::POST, "/api/account/authenticator", json!({})),
        (Method::POST, "/api/account/authenticator/confirm", json!({ "code": "123456" })),
        (Method::PUT, "/api/account/email", json!({ "email": "thief@example.com" })),
        (Method::PUT, "/api/account/phone", json!({ "phone": "+14155550100" })),
        (Method::POST, "/api/account/email/confirm", json!({ "code": "123456" })),
    ] {
        let req = thief.raw(method.clone(), path).header("X-Requested-With", "test").json(&body);
        let resp = thief.send(req).await;
        resp.assert_error(StatusCode::FORBIDDEN, "reauthentication_required");
    }
    let account = thief.get("/api/account").await.assert_status(StatusCode::OK).json();
    assert_eq!(account["two_factor_enabled"], false, "{account}");
    assert_eq!(account["factors"]["authenticator"], false, "{account}");
    assert!(account["factors"]["pending_email"].is_null(), "{account}");
    assert!(account["reauthenticated_until"].is_null(), "{account}");
}

// ---------------------------------------------------------------- (3) password flood

#[tokio::test]
async fn a_flood_of_wrong_passwords_from_elsewhere_never_stops_the_owner_in_a_browser_she_used_before() {
    let app = TestApp::spawn_with(Options { trusted_proxies: &["127.0.0.1"], ..Options::default() }).await;
    let owner = app.new_client();
    sign_in_from(&owner, "198.51.100.7", None, "admin", ADMIN_PASSWORD).await.assert_status(StatusCode::OK);
    owner.post_json("/api/auth/sign-out", &json!({})).await.assert_status(StatusCode::NO_CONTENT);

    // Ten addresses, two wrong passwords each: the account-wide limit (10) is used up.
    let attacker = app.new_client();
    for i in 0..10 {
        for _ in 0..2 {
            let resp = sign_in_from(&attacker, &format!("203.0.113.{i}"), None, "admin", "guess").await;
            assert!(matches!(resp.status, StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS), "{}", resp.text());
        }
    }
    // A browser the account does not know, even with the right password, waits...
    let stranger = app.new_client();
    sign_in_from(&stranger, "192.0.2.1", None, "admin", ADMIN_PASSWORD).await.assert_rate_limited();
    // ...and so does every further guess: the total against one account stays bounded.
    sign_in_from(&attacker, "203.0.113.99", None, "admin", "guess").await.assert_rate_limited();
    // The owner's browser signed in before: it gets in.
    let body =
        sign_in_from(&owner, "198.51.100.7", None, "admin", ADMIN_PASSWORD).await.assert_status(StatusCode::OK).json();
    assert_eq!(body["status"], "signed_in", "{body}");
    // Even from another address (a phone changing networks).
    owner.post_json("/api/auth/sign-out", &json!({})).await.assert_status(StatusCode::NO_CONTENT);
    sign_in_from(&owner, "198.51.100.8", None, "admin", ADMIN_PASSWORD).await.assert_status(StatusCode::OK);
}

#[tokio::test]
async fn a_forged_known_browser_cookie_counts_for_nothing() {
    let app = TestApp::spawn_with(Options { trusted_proxies: &["127.0.0.1"], ..Options::default() }).await;
    let alice_owner = app.new_client();
    alice_owner.sign_in_ok(None, "admin", ADMIN_PASSWORD).await;
    let attacker = app.new_client();
    for i in 0..10 {
        sign_in_from(&attacker, &format!("203.0.113.{i}"), None, "admin", "guess").await;
    }
    // A cookie named like the real one, but not signed by the server, or signed for
    // another purpose (a remember-browser token), is ignored.
    for forged in ["known.whatever", "known.whatever.c2lnbmF0dXJl"] {
        let req = attacker
            .raw(Method::POST, "/api/auth/sign-in")
            .header("X-Requested-With", "test")
            .header("X-Forwarded-For", "203.0.113.50")
            .header("Cookie", format!("twofold_known={forged}"))
            .json(&json!({ "username": "admin", "password": ADMIN_PASSWORD }));
        attacker.send(req).await.assert_rate_limited();
    }
}

#[tokio::test]
async fn a_known_browser_cookie_from_before_a_password_change_counts_for_nothing() {
    let app = TestApp::spawn_with(Options { trusted_proxies: &["127.0.0.1"], ..Options::default() }).await;
    // Someone who once had the password keeps the cookie it earned.
    let former = app.new_client();
    sign_in_from(&former, "198.51.100.9", None, "admin", ADMIN_PASSWORD).await.assert_status(StatusCode::OK);
    app.sign_in_admin().await;
    let body = json!({ "current_password": ADMIN_PASSWORD, "new_password": "a new admin password" });
    app.put_json("/api/account/password", &body).await.assert_status(StatusCode::NO_CONTENT);

    let attacker = app.new_client();
    for i in 0..10 {
        sign_in_from(&attacker, &format!("203.0.113.{i}"), None, "admin", "guess").await;
    }
    // That browser now waits like any stranger, even with the new password.
    sign_in_from(&former, "198.51.100.9", None, "admin", "a new admin password").await.assert_rate_limited();
}

// ---------------------------------------------------------------- (4) raced and escalating lockout

async fn alice_with_authenticator(app: &TestApp) -> (String, String) {
    let t = forced_tenant(app, "acme").await;
    let alice = create_user(app, &t.id, "alice", None).await;
    let enrolled = enrol_authenticator(app, &app.new_client(), "acme", "alice").await;
    (alice.id, enrolled.secret)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_wrong_codes_get_no_more_checks_than_the_limit_and_a_right_code_after_the_lock_is_refused() {
    let app = admin_app(Options::default()).await;
    let (alice_id, secret) = alice_with_authenticator(&app).await;
    let alice = app.new_client();
    let resp = alice.sign_in(Some("acme"), "alice", PASSWORD).await.assert_status(StatusCode::OK);
    let cookie = format!("{PENDING_COOKIE}={}", pending_cookie(&resp));
    let addr = app.running.addr;
    let wrong = wrong_totp(&app, &secret);
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..15 {
        let cookie = cookie.clone();
        let body = json!({ "method": "authenticator", "code": wrong });
        burst.spawn(async move { post_with_cookie(addr, "/api/auth/sign-in/verify", &cookie, &body).await });
    }
    let answers = burst.join_all().await;
    let checked = answers.iter().filter(|r| r.status == StatusCode::UNAUTHORIZED).count();
    let locked = answers.iter().filter(|r| r.status == StatusCode::LOCKED).count();
    assert_eq!(checked + locked, 15, "{:?}", answers.iter().map(|r| r.status).collect::<Vec<_>>());
    let bodies: Vec<String> = answers.iter().map(Resp::text).collect();
    assert!(checked <= 4, "{checked} wrong codes were checked after the limit of 5: {bodies:#?}");
    let failures = events_about(&app, &alice_id).await;
    assert_eq!(count(&failures, "sign_in.failed"), 5, "exactly the limit was checked: {failures:?}");

    // The right code, sent now, is refused: the lock holds.
    let right = post_with_cookie(
        addr,
        "/api/auth/sign-in/verify",
        &cookie,
        &json!({ "method": "authenticator", "code": totp_now(&app, &secret) }),
    )
    .await;
    assert_factor_error(&right, StatusCode::LOCKED, "locked_out");
}

#[tokio::test]
async fn each_further_lock_lasts_longer_and_enough_failures_in_a_row_lock_until_an_admin_unlocks() {
    let app = TestApp::spawn_configured(
        Options { manual_clock: true, lockout_max_failures: Some(2), ..Options::default() },
        |c| c.lockout_permanent_after = 6,
    )
    .await;
    app.sign_in_admin().await;
    let (alice_id, secret) = alice_with_authenticator(&app).await;
    let alice = app.new_client();

    for (round, minutes) in [(1, 5), (2, 10)] {
        password_step(&alice, "acme", "alice", "requires_two_factor").await;
        verify(&alice, "authenticator", &wrong_totp(&app, &secret), false).await;
        let lock = verify(&alice, "authenticator", &wrong_totp(&app, &secret), false).await;
        let body = assert_factor_error(&lock, StatusCode::LOCKED, "locked_out");
        assert_eq!(body["retry_after_seconds"], minutes * 60, "lock {round}: {body}");
        let view = app.get(&format!("/api/users/{alice_id}")).await.assert_status(StatusCode::OK).json();
        assert_eq!(view["lock"]["locked"], true, "{view}");
        assert_eq!(view["lock"]["lockouts"], round, "{view}");
        assert!(view["lock"]["locked_until"].is_string(), "{view}");
        app.advance_minutes(minutes);
    }
    // The sixth wrong code in a row: locked until an admin unlocks.
    password_step(&alice, "acme", "alice", "requires_two_factor").await;
    verify(&alice, "authenticator", &wrong_totp(&app, &secret), false).await;
    let last = verify(&alice, "authenticator", &wrong_totp(&app, &secret), false).await;
    // No Retry-After: waiting does not help.
    last.assert_error(StatusCode::LOCKED, "locked_out");
    assert!(last.headers.get("retry-after").is_none());
    app.advance_minutes(60 * 24 * 30);
    alice.sign_in(Some("acme"), "alice", PASSWORD).await.assert_error(StatusCode::LOCKED, "locked_out");
    app.sign_in_admin().await;
    let view = app.get(&format!("/api/users/{alice_id}")).await.json();
    assert_eq!(view["lock"]["until_unlocked"], true, "{view}");
    assert_eq!(view["lock"]["consecutive_failures"], 6, "{view}");
    // Each failure and each lock is on record, from the address that caused it.
    let events = events_about(&app, &alice_id).await;
    assert_eq!(count(&events, "sign_in.failed"), 6, "{events:?}");
    let locks: Vec<&Value> = events.iter().filter(|e| e["action"] == "user.locked_out").collect();
    let forever: Vec<_> = locks.iter().map(|e| e["after"]["until_unlocked"] == true).collect();
    assert_eq!(forever, [true, false, false], "newest first: {locks:?}");
    let mut recorded = events.iter().filter(|e| e["action"] == "sign_in.failed" || e["action"] == "user.locked_out");
    assert!(recorded.all(|e| e["client_ip"] == "127.0.0.1"), "{events:?}");

    app.post_json(&format!("/api/users/{alice_id}/unlock"), &json!({})).await.assert_status(StatusCode::NO_CONTENT);
    let view = app.get(&format!("/api/users/{alice_id}")).await.json();
    assert_eq!(
        view["lock"],
        json!({ "locked": false, "locked_until": null, "until_unlocked": false,
        "failures": 0, "consecutive_failures": 0, "lockouts": 0 })
    );
    assert_signed_in(&sign_in_with_totp(&app, &alice, "acme", "alice", &secret, false).await);
}

#[tokio::test]
async fn a_code_used_by_another_tab_is_not_counted_as_a_wrong_code() {
    let app = admin_app(Options::default()).await;
    let (alice_id, secret) = alice_with_authenticator(&app).await;
    let signed_in = |events: &[Value]| events.iter().filter(|e| e["action"] == "sign_in.succeeded").count();
    let enrolled = signed_in(&events_about(&app, &alice_id).await);
    let (tab1, tab2) = (app.new_client(), app.new_client());
    password_step(&tab1, "acme", "alice", "requires_two_factor").await;
    password_step(&tab2, "acme", "alice", "requires_two_factor").await;
    let code = next_totp(&app, &secret);
    assert_signed_in(&verify(&tab1, "authenticator", &code, false).await);
    let again = verify(&tab2, "authenticator", &code, false).await;
    assert_eq!(attempts_left(&again), 5, "a used code is no guess");
    let view = app.get(&format!("/api/users/{alice_id}")).await.json();
    assert_eq!(view["lock"]["failures"], 0, "{view}");
    // Nothing of the refused sign-in was written: its pending sign-in is still open, so
    // the next code completes it, and only the two real sign-ins are audited.
    assert_eq!(signed_in(&events_about(&app, &alice_id).await), enrolled + 1);
    assert_signed_in(&verify(&tab2, "authenticator", &next_totp(&app, &secret), false).await);
    assert_eq!(signed_in(&events_about(&app, &alice_id).await), enrolled + 2);
}

// ---------------------------------------------------------------- (5) weaker factor

#[tokio::test]
async fn a_session_made_fresh_by_an_email_code_cannot_remove_the_authenticator_or_renew_recovery_codes() {
    let (app, mut mail) = mail_app(Options::default()).await;
    let t = forced_tenant(&app, "acme").await;
    create_user(&app, &t.id, "alice", Some("alice@example.com")).await;
    let alice = app.new_client();
    let enrolled = enrol_authenticator(&app, &alice, "acme", "alice").await;
    reauthenticate(&app, &alice, &enrolled.secret).await;
    crate::flows::confirm_email_in_account(&alice, &mut mail, "alice@example.com").await;
    alice.post_json("/api/auth/sign-out", &json!({})).await.assert_status(StatusCode::NO_CONTENT);

    // Someone with the password and the mailbox signs in with an emailed code.
    let holder = app.new_client();
    password_step(&holder, "acme", "alice", "requires_two_factor").await;
    send_code(&holder, "email").await.assert_status(StatusCode::OK);
    let code = mail.next_code("alice@example.com").await;
    assert_signed_in(&verify(&holder, "email", &code, false).await);

    holder.delete("/api/account/authenticator").await.assert_error(StatusCode::FORBIDDEN, "reauthentication_required");
    holder
        .post_json("/api/account/recovery-codes", &json!({}))
        .await
        .assert_error(StatusCode::FORBIDDEN, "reauthentication_required");
    holder
        .put_json("/api/account/email", &json!({ "email": "holder@example.com" }))
        .await
        .assert_error(StatusCode::FORBIDDEN, "reauthentication_required");
    // Reauthenticating with another emailed code does not help either...
    holder
        .post_json("/api/account/reauthenticate/send-code", &json!({ "method": "email" }))
        .await
        .assert_status(StatusCode::OK);
    let code = mail.next_code("alice@example.com").await;
    holder
        .post_json("/api/account/reauthenticate", &json!({ "password": PASSWORD, "method": "email", "code": code }))
        .await
        .assert_status(StatusCode::NO_CONTENT);
    holder.delete("/api/account/authenticator").await.assert_error(StatusCode::FORBIDDEN, "reauthentication_required");
    // ...while the authenticator itself does.
    reauthenticate(&app, &holder, &enrolled.secret).await;
    holder.post_json("/api/account/recovery-codes", &json!({})).await.assert_status(StatusCode::OK);
}

// ---------------------------------------------------------------- (6) password oracle

#[tokio::test]
async fn wrong_current_passwords_are_counted_and_audited() {
    let app = admin_app(Options::default()).await;
    let t = app.create_tenant("acme").await;
    let alice = create_user(&app, &t.id, "alice", None).await;
    let thief = app.new_client();
    thief.sign_in_ok(Some("acme"), "alice", PASSWORD).await;
    let change = |current: &str| json!({ "current_password": current, "new_password": "a brand new password" });
    let mut refused = 0;
    for i in 0..30 {
        let resp = thief.put_json("/api/account/password", &change(&format!("guess {i}"))).await;
        match resp.status {
            StatusCode::UNAUTHORIZED => assert_eq!(resp.json()["error"], "invalid_credentials"),
            StatusCode::TOO_MANY_REQUESTS => refused += 1,
            other => panic!("unexpected {other}: {}", resp.text()),
        }
    }
    assert!(refused >= 20, "only {refused} of 30 guesses were refused");
    // The right password is refused too while the limit holds: no oracle.
    thief.put_json("/api/account/password", &change(PASSWORD)).await.assert_rate_limited();
    let events = events_about(&app, &alice.id).await;
    assert_eq!(count(&events, "password_change.failed"), 10, "{events:?}");
}

// ---------------------------------------------------------------- (9) remembered browsers

#[tokio::test]
async fn a_browser_that_stopped_skipping_the_second_factor_is_no_longer_listed() {
    let app = admin_app(Options::default()).await;
    let (_, secret) = alice_with_authenticator(&app).await;
    let alice = app.new_client();
    let resp = sign_in_with_totp(&app, &alice, "acme", "alice", &secret, true).await;
    assert_signed_in(&resp);
    assert!(resp.set_cookie(REMEMBER_COOKIE).is_some());
    let listed = alice.get("/api/account/browsers").await.assert_status(StatusCode::OK).json();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");

    let body = json!({ "current_password": PASSWORD, "new_password": "another long password" });
    alice.put_json("/api/account/password", &body).await.assert_status(StatusCode::NO_CONTENT);
    let listed = alice.get("/api/account/browsers").await.assert_status(StatusCode::OK).json();
    assert_eq!(listed, json!([]), "the password change ended the remembered browser");
}

// ---------------------------------------------------------------- (10) equal work

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_cost_the_same_writes() {
    let app = admin_app(Options::default()).await;
    let t = app.create_tenant("acme").await;
    create_user(&app, &t.id, "alice", None).await;
    let c = app.new_client();
    c.sign_in(Some("acme"), "alice", "wrong").await.assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    c.sign_in(Some("acme"), "nobody", "wrong").await.assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    c.sign_in(Some("no-such-tenant"), "alice", "wrong")
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    let events = app.audit("").await;
    assert_eq!(count(&events, "sign_in.failed"), 3, "one audit write per failure, known user or not: {events:?}");
    // Each in the scope that was named: the tenant's for its user and for a name it does
    // not know, the host's for a tenant that does not exist.
    let failed: Vec<&Value> = events.iter().filter(|e| e["action"] == "sign_in.failed").collect();
    let in_tenant = |e: &Value| e["tenant_id"] == json!(t.id);
    assert_eq!(failed.iter().filter(|e| in_tenant(e)).count(), 2, "{failed:?}");
    assert!(failed.iter().any(|e| in_tenant(e) && e["after"]["username"] == "nobody"), "{failed:?}");
    assert!(failed.iter().any(|e| e["tenant_id"].is_null() && e["after"]["username"] == "alice"), "{failed:?}");
}

#[tokio::test]
async fn the_account_page_marks_a_session_fresh_only_at_the_users_strongest_factor() {
    let app = admin_app(Options::default()).await;
    let t = app.create_tenant("acme").await;
    create_user(&app, &t.id, "alice", None).await;
    let alice = app.new_client();
    alice.sign_in_ok(Some("acme"), "alice", PASSWORD).await;
    // No factor yet: the password sign-in is fresh enough to add the first one.
    let enrolled = add_authenticator_in_account(&app, &alice).await;
    assert_eq!(enrolled.recovery_codes.len(), 10);
    let account = alice.get("/api/account").await.json();
    assert!(account["reauthenticated_until"].is_string(), "confirming the authenticator proved it: {account}");
    app.advance_minutes(STALE_MINUTES);
    let account = alice.get("/api/account").await.json();
    assert!(account["reauthenticated_until"].is_null(), "{account}");
    alice
        .post_json("/api/account/reauthenticate", &json!({ "password": PASSWORD }))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_field");
    reauthenticate(&app, &alice, &enrolled.secret).await;
    let account = alice.get("/api/account").await.json();
    assert!(account["reauthenticated_until"].is_string(), "{account}");
}

// ---------------------------------------------------------------- security notifications

#[tokio::test]
async fn the_owner_hears_of_every_change_to_their_security_profile_and_the_old_address_of_a_new_one() {
    let (app, mut mail) = mail_app(Options::default()).await;
    let t = forced_tenant(&app, "acme").await;
    let alice_user = create_user(&app, &t.id, "alice", Some("alice@example.com")).await;
    let alice = app.new_client();
    crate::flows::enrol_email(&alice, &mut mail, "acme", "alice", "alice@example.com").await;
    mail.wait_for_notice("alice@example.com", "A second factor (email) was added").await;

    add_authenticator_in_account(&app, &alice).await;
    mail.wait_for_notice("alice@example.com", "A second factor (authenticator app) was added").await;

    alice.post_json("/api/account/recovery-codes", &json!({})).await.assert_status(StatusCode::OK);
    mail.wait_for_notice("alice@example.com", "New recovery codes were created").await;

    crate::flows::confirm_email_in_account(&alice, &mut mail, "alice@new.example").await;
    mail.wait_for_notice("alice@example.com", "The email address of your account was changed").await;
    mail.wait_for_notice("alice@new.example", "The email address of your account was changed").await;

    let body = json!({ "current_password": PASSWORD, "new_password": "another long password" });
    alice.put_json("/api/account/password", &body).await.assert_status(StatusCode::NO_CONTENT);
    let notice = mail.wait_for_notice("alice@new.example", "The password of your account was changed").await;
    assert!(!notice.contains("another long password"), "a notice never carries a secret");

    // Each notice is in the audit trail too.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let events = events_about(&app, &alice_user.id).await;
        let kinds: Vec<&str> = events
            .iter()
            .filter(|e| e["action"] == "notice.sent")
            .filter_map(|e| e["after"]["kind"].as_str())
            .collect();
        if ["factor_added", "recovery_codes_issued", "email_changed", "password_changed"]
            .iter()
            .all(|k| kinds.contains(k))
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "notices missing from the audit: {kinds:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
