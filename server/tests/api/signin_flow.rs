//! The sign-in pipeline through HTTP, step by step: what the password step answers
//! (signed in, second factor, enrolment, the same refusal for every wrong credential,
//! throttling without lockout), the pending sign-in between the steps, and each second
//! factor end to end: an authenticator checked against `oathtool`, email codes through a
//! real SMTP server, SMS codes through a Twilio stand-in, and recovery codes.

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};
use twofold_server::clock::rfc3339;

use crate::flows::{
    PENDING_COOKIE, SESSION_COOKIE, admin_app, advance_days, advance_seconds, assert_factor_error, assert_signed_in,
    attempts_left, confirm_email_in_account, confirm_phone_in_account, cookie_set, create_user, enrol_authenticator,
    enrol_email, forced_tenant, mail_app, next_totp, now_ms, password_step, pending_cookie, post_with_cookie,
    reauthenticate, send_code, set_tenant_settings, sms_app, totp_now, verify, wrong_totp,
};
use crate::helpers::{Options, PASSWORD, cookie_attributes};

fn providers(body: &Value) -> Vec<Value> {
    body["providers"].as_array().cloned().unwrap_or_default()
}

/// The verify step's answer describes the signed-in user as `/api/auth/me` does: their
/// roles and their tenant's names. On PostgreSQL the completing statement reads them
/// with its writes; on SQLite they are read after the commit.
#[tokio::test]
async fn the_verify_step_answers_with_the_users_roles_and_tenant() {
    let app = admin_app(Options::default()).await;
    let t = forced_tenant(&app, "acme").await;
    for (username, admin) in [("tina", true), ("plain", false)] {
        let u = create_user(&app, &t.id, username, None).await;
        if admin {
            app.make_tenant_admin(&t.id, &u.id).await;
        }
        let client = app.new_client();
        let enrolled = enrol_authenticator(&app, &client, "acme", username).await;
        let client = app.new_client();
        password_step(&client, "acme", username, "requires_two_factor").await;
        let body = assert_signed_in(&verify(&client, "authenticator", &next_totp(&app, &enrolled.secret), false).await);
        let expected_roles = if admin { json!([{ "role": "tenant_admin", "tenant_id": t.id }]) } else { json!([]) };
        assert_eq!(body["user"]["roles"], expected_roles, "{body}");
        assert_eq!(body["user"]["tenant_id"], t.id, "{body}");
        assert_eq!(body["user"]["tenant_name"], "acme", "{body}");
        assert_eq!(body["user"]["username"], username, "{body}");
        let me = client.me().await.assert_status(StatusCode::OK).json();
        assert_eq!(body["user"], me, "the verify step's answer and /api/auth/me differ");
    }
}

// ---------------------------------------------------------------- the password step

#[tokio::test]
async fn without_a_required_second_factor_the_password_signs_in() {
    let app = admin_app(Options::default()).await;
    let t = app.create_tenant("acme").await;
    create_user(&app, &t.id, "alice", None).await;
    let alice = app.new_client();

    let resp = alice.sign_in(Some("acme"), "alice", PASSWORD).await;
    let body = assert_signed_in(&resp);
    assert_eq!(body["user"]["username"], "alice");
    assert!(resp.set_cookie(PENDING_COOKIE).is_none(), "{:?}", resp.set_cookies());
    alice.me().await.assert_status(StatusCode::OK);
}

/// The password step offers a recovery code only while one is left (on PostgreSQL the
/// statement that finds the user answers that too; SQLite reads it apart), and the offer
/// follows the codes: all used, none offered; one left, offered again.
#[tokio::test]
async fn a_recovery_code_is_offered_only_while_one_is_left() {
    let app = admin_app(Options::default()).await;
    let t = forced_tenant(&app, "acme").await;
    let bob = create_user(&app, &t.id, "bob", None).await;
    enrol_authenticator(&app, &app.new_client(), "acme", "bob").await;
    let other = app.new_client();
    let body = password_step(&other, "acme", "bob", "requires_two_factor").await;
    assert_eq!(body["recovery_code_available"], true, "{body}");

    let pool = &app.running.state.db().pool;
    let used = sqlx::query("UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL")
        .bind(now_ms(&app))
        .bind(&bob.id)
        .execute(pool)
        .await
        .unwrap();
    assert!(used.rows_affected() > 0, "bob had codes to use");
    let body = password_step(&app.new_client(), "acme", "bob", "requires_two_factor").await;
    assert_eq!(body["recovery_code_available"], false, "{body}");

    // One code left is enough.
    sqlx::query(
        "UPDATE recovery_codes SET used_at = NULL WHERE id = (SELECT MIN(id) FROM recovery_codes WHERE user_id = $1)",
    )
    .bind(&bob.id)
    .execute(pool)
    .await
    .unwrap();
    let body = password_step(&app.new_client(), "acme", "bob", "requires_two_factor").await;
    assert_eq!(body["recovery_code_available"], true, "{body}");
}

#[tokio::test]
async fn requires_two_factor_offers_only_confirmed_and_allowed_factors() {
    let (app, sms) = sms_app(Options::default()).await;
    let t = forced_tenant(&app, "acme").await;
    // An address on file that was never confirmed is not a factor.
    create_user(&app, &t.id, "bob", Some("bob@example.test")).await;
    let bob = app.new_client();
    enrol_authenticator(&app, &bob, "acme", "bob").await;

    let other = app.new_client();
    let resp = other.sign_in(Some("acme"), "bob", PASSWORD).await.assert_status(StatusCode::OK);
    let body = resp.json();
    assert_eq!(body["status"], "requires_two_factor", "{body}");
    assert_eq!(providers(&body), vec![json!({ "provider": "authenticator", "weaker": false })], "{body}");
    assert_eq!(body["remember_browser_offered"], true, "{body}");
    assert_eq!(body["remember_browser_days"], 14, "{body}");
    assert_eq!(body["recovery_code_available"], true, "{body}");
    // Between the steps there is a pending sign-in, never a session.
    assert!(resp.set_cookie(PENDING_COOKIE).is_some(), "{:?}", resp.set_cookies());
    assert!(resp.set_cookie(SESSION_COOKIE).is_none(), "{:?}", resp.set_cookies());

    // A confirmed phone joins the offer, labelled weaker and partly hidden.
    confirm_phone_in_account(&bob, &sms, "+14155550100").await;
    let body = password_step(&other, "acme", "bob", "requires_two_factor").await;
    assert_eq!(
        providers(&body),
        vec![
            json!({ "provider": "authenticator", "weaker": false }),
            json!({ "provider": "sms", "weaker": true, "destination": "***0100" }),
        ],
        "{body}"
    );

    // The tenant switches SMS and remembering off: neither is offered any more.
    set_tenant_settings(
        &app,
        &t.id,
        json!({ "remember_browser": false,
                "allowed_providers": { "authenticator": true, "email": true, "sms": false, "passkey": true } }),
    )
    .await;
    let body = password_step(&other, "acme", "bob", "requires_two_factor").await;
    assert_eq!(providers(&body), vec![json!({ "provider": "authenticator", "weaker": false })], "{body}");
    assert_eq!(body["remember_browser_offered"], false, "{body}");
}

#[tokio::test]
async fn without_a_factor_enrolment_comes_first_and_a_grace_period_allows_postponing() {
    // Email and SMS are enrollable only with a sender; the development one will do.
    let app = admin_app(Options { dev_senders: true, ..Options::default() }).await;
    let t = forced_tenant(&app, "acme").await;
    create_user(&app, &t.id, "carol", None).await;
    let carol = app.new_client();

    // No grace period: enrol or nothing. Fail closed, no session.
    let first_seen = now_ms(&app);
    let resp = carol.sign_in(Some("acme"), "carol", PASSWORD).await.assert_status(StatusCode::OK);
    assert!(resp.set_cookie(SESSION_COOKIE).is_none(), "{:?}", resp.set_cookies());
    let body = resp.json();
    assert_eq!(body["status"], "requires_enrollment", "{body}");
    assert_eq!(body["enrollable"], json!(["authenticator", "email", "sms"]), "{body}");
    assert_eq!(body["can_postpone"], false, "{body}");
    assert!(body.get("grace_until").is_none(), "{body}");
    carol.post_json("/api/auth/enroll/postpone", &json!({})).await.assert_error(StatusCode::CONFLICT, "grace_over");
    carol.me().await.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");

    // Three days of grace, counted from the first sign-in under the forced policy.
    set_tenant_settings(&app, &t.id, json!({ "enrollment_grace_days": 3 })).await;
    advance_days(&app, 1);
    let body = password_step(&carol, "acme", "carol", "requires_enrollment").await;
    assert_eq!(body["can_postpone"], true, "{body}");
    assert_eq!(body["grace_until"], rfc3339(first_seen + 3 * 86_400_000), "{body}");
    let resp = carol.post_json("/api/auth/enroll/postpone", &json!({})).await;
    assert_signed_in(&resp);
    carol.me().await.assert_status(StatusCode::OK);

    // Once the grace period is over, postponing is refused.
    advance_days(&app, 3);
    let body = password_step(&carol, "acme", "carol", "requires_enrollment").await;
    assert_eq!(body["can_postpone"], false, "{body}");
    assert!(body.get("grace_until").is_none(), "{body}");
    let resp = carol.post_json("/api/auth/enroll/postpone", &json!({})).await;
    resp.assert_error(StatusCode::CONFLICT, "grace_over");
    assert!(resp.set_cookie(SESSION_COOKIE).is_none(), "{:?}", resp.set_cookies());
}

#[tokio::test]
async fn unknown_users_and_wrong_passwords_get_the_same_answer() {
    let app = admin_app(Options::default()).await;
    let t = forced_tenant(&app, "acme").await;
    create_user(&app, &t.id, "alice", None).await;
    let client = app.new_client();

    let mut answers = Vec::new();
    for (tenant, user, password) in [
        (Some("acme"), "alice", "not her password at all"),
        (Some("acme"), "nobody", PASSWORD),
        (Some("nowhere"), "alice", PASSWORD),
        (None, "alice", PASSWORD),
    ] {
        let resp = client.sign_in(tenant, user, password).await;
        resp.assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
        assert!(resp.set_cookies().is_empty(), "{:?}", resp.set_cookies());
        answers.push(resp.body);
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "answers differ: {answers:?}");
}

#[tokio::test]
async fn wrong_passwords_are_rate_limited_per_account_without_locking_it() {
    let app = admin_app(Options { password_failures_per_account: Some(3), ..Options::default() }).await;
    let t = app.create_tenant("acme").await;
    create_user(&app, &t.id, "alice", None).await;
    create_user(&app, &t.id, "bob", None).await;
    let client = app.new_client();

    for _ in 0..3 {
        client
            .sign_in(Some("acme"), "alice", "wrong password here")
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    // Now even the right password waits: the account is throttled...
    let resp = client.sign_in(Some("acme"), "alice", PASSWORD).await;
    let body = assert_factor_error(&resp, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(body["retry_after_seconds"].as_u64().unwrap() <= 15 * 60, "{body}");
    assert!(resp.set_cookies().is_empty());
    // ...only that account...
    client.sign_in_ok(Some("acme"), "bob", PASSWORD).await;
    // ...and not locked: once the window has passed, the right password works.
    app.advance_minutes(16);
    client.sign_in_ok(Some("acme"), "alice", PASSWORD).await;
}

#[tokio::test]
async fn wrong_passwords_are_rate_limited_per_address() {
    let app = admin_app(Options { password_failures_per_address: Some(3), ..Options::default() }).await;
    let t = app.create_tenant("acme").await;
    create_user(&app, &t.id, "alice", None).await;
    let client = app.new_client();

    // Three different names from one address: no single account reached its limit.
    for name in ["mallory", "trent", "victor"] {
        client
            .sign_in(Some("acme"), name, "guessing")
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    let resp = client.sign_in(Some("acme"), "alice", PASSWORD).await;
    assert_factor_error(&resp, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    app.advance_minutes(16);
    client.sign_in_ok(Some("acme"), "alice", PASSWORD).await;
}

// ---------------------------------------------------------------- the pending sign-in

#[tokio::test]
async fn the_session_cookie_comes_only_after_the_second_factor_and_is_new() {
    let app = admin_app(Options::default()).await;
    let t = forced_tenant(&app, "acme").await;
    create_user(&app, &t.id, "alice", None).await;
    let alice = app.new_client();
    let enrolled = enrol_authenticator(&app, &alice, "acme", "alice").await;
    alice.post_json("/api/auth/sign-out", &json!({})).await.assert_status(StatusCode::NO_CONTENT);

    // A session from an earlier sign-in of this browser, to compare with.
    let earlier = app.new_client();
    let earlier_session = {
        password_step(&earlier, "acme", "alice", "requires_two_factor").await;
        let r = verify(&earlier, "authenticator", &next_totp(&app, &enrolled.secret), false).await;
        assert_signed_in(&r);
        cookie_set(&r, SESSION_COOKIE).unwrap()
    };

    let resp = alice.sign_in(Some("acme"), "alice", PASSWORD).await.assert_status(StatusCode::OK);
    assert!(resp.set_cookie(SESSION_COOKIE).is_none(), "{:?}", resp.set_cookies());
    let pending_line = resp.set_cookie(PENDING_COOKIE).expect("a pending sign-in cookie");
    let attrs = cookie_attributes(&pending_line);
    for wanted in ["httponly", "samesite=strict", "path=/"] {
        assert!(attrs.iter().any(|a| a == wanted), "{wanted} missing: {pending_line}");
    }
    // The pending sign-in is not a session.
    alice.me().await.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    alice.get("/api/account").await.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");

    let done = verify(&alice, "authenticator", &next_totp(&app, &enrolled.secret), false).await;
    assert_signed_in(&done);
    let session = cookie_set(&done, SESSION_COOKIE).unwrap();
    assert_ne!(session, earlier_session);
    assert_ne!(session, pending_cookie(&resp));
    // The pending cookie is cleared once used.
    assert_eq!(cookie_set(&done, PENDING_COOKIE), None, "{:?}", done.set_cookies());
    alice.me().await.assert_status(StatusCode::OK);
}

#[tokio::test]
async fn a_pending_sign_in_expires() {
    let app = admin_app(Options::default()).await;
    let t = forced_tenant(&app, "acme").await;
    create_user(&app, &t.id, "alice", None).await;
    let alice = app.new_client();
    let enrolled = enrol_authenticator(&app, &alice, "acme", "alice").await;
    let alice = app.new_client();

    password_step(&alice, "acme", "alice", "requires_two_factor").await;
    // Ten minutes by default.
    app.advance_minutes(11);
    let resp = verify(&alice, "authenticator", &totp_now(&app, &enrolled.secret), false).await;
    resp.assert_error(StatusCode::UNAUTHORIZED, "sign_in_expired");
    assert!(resp.set_cookie(SESSION_COOKIE).is_none());
    alice.me().await.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    // Starting again with the password works.
    password_step(&alice, "acme", "alice", "requires_two_factor").await;
    assert_signed_in(&verify(&alice, "authenticator", &next_totp(&app, &enrolled.secret), false).await);
}

#[tokio::test]
async fn a_completed_pending_sign_in_cannot_be_reused() {
    let app = admin_app(Options::default()).await;
    let t = forced_tenant(&app, "acme").await;
    create_user(&app, &t.id, "alice", None).await;
    let alice = app.new_client();
    let enrolled = enrol_authenticator(&app, &alice, "acme", "alice").await;

    let resp = alice.sign_in(Some("acme"), "alice", PASSWORD).await.assert_status(StatusCode::OK);
    let pending = format!("{PENDING_COOKIE}={}", pending_cookie(&resp));
    assert_signed_in(&verify(&alice, "authenticator", &next_totp(&app, &enrolled.secret), false).await);

    // The same pending cookie, replayed with another valid factor, gets nothing.
    let addr = app.running.addr;
    for body in [
        json!({ "method": "authenticator", "code": next_totp(&app, &enrolled.secret) }),
        json!({ "method": "recovery_code", "code": enrolled.recovery_codes[0] }),
    ] {
        let replay = post_with_cookie(addr, "/api/auth/sign-in/verify", &pending, &body).await;
        replay.assert_error(StatusCode::UNAUTHORIZED, "sign_in_expired");
        assert!(replay.set_cookie(SESSION_COOKIE).is_none());
    }
    // The refused replay did not spend the recovery code.
    let account = alice.get("/api/account").await.assert_status(StatusCode::OK).json();
    assert_eq!(account["factors"]["recovery_codes_left"], 10, "{account}");
}

#[tokio::test]
async fn a_tenant_user_signs_in_only_through_their_tenant() {
    let app = admin_app(Options::default()).await;
    let a = forced_tenant(&app, "tenant-a").await;
    let b = app.create_tenant("tenant-b").await;
    create_user(&app, &a.id, "alice", None).await;
    let client = app.new_client();
    for (tenant, username) in [(Some("tenant-b"), "alice"), (None, "alice")] {
        client.sign_in(tenant, username, PASSWORD).await.assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    // Even a namesake in tenant B with the same password is a different account.
    create_user(&app, &b.id, "alice", None).await;
    let body = client.sign_in_ok(Some("tenant-b"), "alice", PASSWORD).await;
    assert_eq!(body["user"]["tenant_id"], json!(b.id), "{body}");
    let body = password_step(&app.new_client(), "tenant-a", "alice", "requires_enrollment").await;
    assert_eq!(body["status"], "requires_enrollment");
}

// ---------------------------------------------------------------- authenticator

/// Found by the `otpauth_uri` fuzz target: ':' separates issuer and account in an
/// `otpauth://` label, and user names may contain one. Enrolment used to answer 500
/// for such a user, after storing the pending authenticator.
#[tokio::test]
async fn a_user_name_with_a_colon_enrols_an_authenticator() {
    let app = admin_app(Options::default()).await;
    let t = forced_tenant(&app, "acme").await;
    create_user(&app, &t.id, "al:ice", None).await;
    let alice = app.new_client();

    password_step(&alice, "acme", "al:ice", "requires_enrollment").await;
    let started = alice.post_json("/api/auth/enroll/authenticator", &json!({})).await.assert_status(StatusCode::OK);
    let started = started.json();
    let uri = started["otpauth_uri"].as_str().unwrap();
    // The colon is shown as a fullwidth colon (U+FF1A, percent-encoded).
    assert!(uri.starts_with("otpauth://totp/Twofold:al%EF%BC%9Aice%40acme?"), "{uri}");
    let secret = started["secret"].as_str().unwrap();
    let resp =
        alice.post_json("/api/auth/enroll/authenticator/confirm", &json!({ "code": totp_now(&app, secret) })).await;
    let body = assert_signed_in(&resp);
    assert_eq!(body["user"]["username"], "al:ice", "{body}");
}

#[tokio::test]
async fn an_authenticator_is_enrolled_at_sign_in_with_codes_from_oathtool() {
    let app = admin_app(Options::default()).await;
    let t = forced_tenant(&app, "acme").await;
    create_user(&app, &t.id, "alice", None).await;
    let alice = app.new_client();

    password_step(&alice, "acme", "alice", "requires_enrollment").await;
    let started = alice.post_json("/api/auth/enroll/authenticator", &json!({})).await.assert_status(StatusCode::OK);
    let started = started.json();
    let secret = started["secret"].as_str().unwrap().to_owned();
    assert!(secret.len() >= 32 && secret.bytes().all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)));
    let uri = started["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert!(uri.contains(&format!("secret={secret}")), "{uri}");
    assert!(uri.contains("issuer=Twofold"), "{uri}");
    let png = base64::engine::general_purpose::STANDARD.decode(started["qr_png_base64"].as_str().unwrap()).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // Not signed in yet.
    alice.me().await.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");

    // A wrong code is refused and counted; the code oathtool computes for the server's
    // time confirms the authenticator and completes the sign-in.
    let wrong =
        alice.post_json("/api/auth/enroll/authenticator/confirm", &json!({ "code": wrong_totp(&app, &secret) })).await;
    assert_eq!(attempts_left(&wrong), 4);
    let resp =
        alice.post_json("/api/auth/enroll/authenticator/confirm", &json!({ "code": totp_now(&app, &secret) })).await;
    let body = assert_signed_in(&resp);
    let codes: Vec<String> =
        body["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    assert_eq!(codes.len(), 10, "{body}");
    let distinct: std::collections::HashSet<_> = codes.iter().collect();
    assert_eq!(distinct.len(), 10, "{codes:?}");

    // The secret and the codes were shown once; the account page never repeats them.
    let account = alice.get("/api/account").await.assert_status(StatusCode::OK);
    let body = account.json();
    assert_eq!(body["factors"]["authenticator"], true, "{body}");
    assert_eq!(body["factors"]["recovery_codes_left"], 10, "{body}");
    let text = account.text().to_lowercase();
    assert!(!text.contains(&secret.to_lowercase()), "{text}");
    for code in &codes {
        assert!(!text.contains(code) && !text.contains(&code.replace('-', "")), "{code} in {text}");
    }
    // Nor does starting another enrolment while one is confirmed.
    alice
        .post_json("/api/account/authenticator", &json!({}))
        .await
        .assert_error(StatusCode::CONFLICT, "authenticator_exists");
}

#[tokio::test]
async fn an_authenticator_code_works_once() {
    let app = admin_app(Options::default()).await;
    let t = forced_tenant(&app, "acme").await;
    create_user(&app, &t.id, "alice", None).await;
    let enrolled = enrol_authenticator(&app, &app.new_client(), "acme", "alice").await;
    let alice = app.new_client();

    // Same time step as the enrolment: the code that confirmed it is spent.
    password_step(&alice, "acme", "alice", "requires_two_factor").await;
    let replay = verify(&alice, "authenticator", &totp_now(&app, &enrolled.secret), false).await;
    // Refused, but not counted: a code that was right once is a replay, not a guess.
    assert_eq!(attempts_left(&replay), 5);
    alice.me().await.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");

    // The next step's code works, once.
    advance_seconds(&app, 30);
    let code = totp_now(&app, &enrolled.secret);
    assert_signed_in(&verify(&alice, "authenticator", &code, false).await);
    let again = app.new_client();
    password_step(&again, "acme", "alice", "requires_two_factor").await;
    let replay = verify(&again, "authenticator", &code, false).await;
    assert_factor_error(&replay, StatusCode::UNAUTHORIZED, "invalid_code");
}

/// A sign-in updates the user row twice and the authenticator once. On PostgreSQL each
/// table keeps room on its pages (migration `0015_room_for_sign_ins.sql`), so those
/// updates write the new versions beside the old ones and touch no index, even when
/// other rows have filled the page since: the rows stay on their page. Without the
/// room the first update moves the row to another page. Tables packed before the room
/// existed get it from the README's `VACUUM FULL users, authenticators`. (SQLite
/// rewrites rows in place.)
#[tokio::test]
async fn on_postgres_a_sign_in_rewrites_the_users_rows_on_their_own_pages() {
    if crate::helpers::Backend::from_env() != crate::helpers::Backend::Postgres {
        return;
    }
    let app = admin_app(Options::default()).await;
    let t = forced_tenant(&app, "acme").await;
    let alice = create_user(&app, &t.id, "alice", None).await;
    let enrolled = enrol_authenticator(&app, &app.new_client(), "acme", "alice").await;
    let pool = &app.running.state.db().pool;

    // Dead versions left by the enrolment would make room of their own when pruned:
    // gone first, then copies of alice's rows fill the rest of each page.
    sqlx::raw_sql("VACUUM users, authenticators").execute(pool).await.unwrap();
    sqlx::query(
        "INSERT INTO users SELECT (jsonb_populate_record(u, jsonb_build_object('id', u.id || '-' || n, \
         'username', u.username || n, 'username_key', u.username_key || n))).* \
         FROM users u, generate_series(1, 400) n WHERE u.id = $1",
    )
    .bind(&alice.id)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO authenticators SELECT (jsonb_populate_record(a, jsonb_build_object('user_id', a.user_id || '-' || n))).* \
         FROM authenticators a, generate_series(1, 400) n WHERE a.user_id = $1",
    )
    .bind(&alice.id)
    .execute(pool)
    .await
    .unwrap();
    let pages = || async {
        let mut pages = Vec::new();
        for (table, key) in [("users", "id"), ("authenticators", "user_id")] {
            let (page, sharing): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT (ctid::text::point)[0]::bigint, (SELECT COUNT(*) FROM {table} o \
                 WHERE (o.ctid::text::point)[0] = (t.ctid::text::point)[0]) FROM {table} t WHERE {key} = $1"
            )))
            .bind(&alice.id)
            .fetch_one(pool)
            .await
            .unwrap();
            pages.push((table, page, sharing));
        }
        pages
    };
    // Alice's pages hold many rows, then a sign-in leaves her rows where they were.
    let sign_in_keeps_her_pages = async |when: &str| {
        let before = pages().await;
        for (table, _, sharing) in &before {
            assert!(*sharing > 10, "{when}: alice's page of {table} holds too few rows to be full: {before:?}");
        }
        advance_seconds(&app, 30);
        let client = app.new_client();
        password_step(&client, "acme", "alice", "requires_two_factor").await;
        assert_signed_in(&verify(&client, "authenticator", &totp_now(&app, &enrolled.secret), false).await);
        let signed_in: Option<i64> = sqlx::query_scalar("SELECT last_sign_in_at FROM users WHERE id = $1")
            .bind(&alice.id)
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(signed_in, Some(now_ms(&app)), "{when}: the sign-in was not recorded on the user row");
        let after = pages().await;
        for ((table, page, _), (_, page_after, _)) in before.iter().zip(&after) {
            assert_eq!(page, page_after, "{when}: a sign-in moved alice's row of {table}: {before:?} -> {after:?}");
        }
    };
    sign_in_keeps_her_pages("pages filled since she enrolled").await;

    // A database from before the room: every page packed full. The README's command
    // rewrites both tables with it. (VACUUM runs outside a transaction, so each is a
    // statement of its own.)
    for statement in [
        "ALTER TABLE users SET (fillfactor = 100)",
        "ALTER TABLE authenticators SET (fillfactor = 100)",
        "VACUUM FULL users, authenticators",
        "ALTER TABLE users SET (fillfactor = 90)",
        "ALTER TABLE authenticators SET (fillfactor = 90)",
        "VACUUM FULL users, authenticators",
    ] {
        sqlx::raw_sql(statement).execute(pool).await.unwrap();
    }
    sign_in_keeps_her_pages("after VACUUM FULL").await;
}

// ---------------------------------------------------------------- email

#[tokio::test]
async fn an_email_enrolled_at_sign_in_then_signs_in_with_a_mailed_code() {
    let (app, mut mail) = mail_app(Options::default()).await;
    let t = forced_tenant(&app, "acme").await;
    create_user(&app, &t.id, "carol", Some("carol@example.test")).await;
    let carol = app.new_client();

    password_step(&carol, "acme", "carol", "requires_enrollment").await;
    let sent = carol.post_json("/api/auth/enroll/email", &json!({})).await.assert_status(StatusCode::OK).json();
    assert_eq!(sent, json!({ "sent_to": "c***@example.test", "expires_in_seconds": 300, "weaker": true }));
    let code = mail.next_code("carol@example.test").await;
    let resp = carol.post_json("/api/auth/enroll/email/confirm", &json!({ "code": code })).await;
    let body = assert_signed_in(&resp);
    assert_eq!(body["recovery_codes"].as_array().unwrap().len(), 10, "{body}");
    carol.post_json("/api/auth/sign-out", &json!({})).await.assert_status(StatusCode::NO_CONTENT);

    let body = password_step(&carol, "acme", "carol", "requires_two_factor").await;
    assert_eq!(
        providers(&body),
        vec![json!({ "provider": "email", "weaker": true, "destination": "c***@example.test" })],
        "{body}"
    );
    let sent = send_code(&carol, "email").await.assert_status(StatusCode::OK).json();
    assert_eq!(sent["sent_to"], "c***@example.test");
    assert_eq!(sent["weaker"], true);
    let code = mail.next_code("carol@example.test").await;
    assert_signed_in(&verify(&carol, "email", &code, false).await);
    carol.me().await.assert_status(StatusCode::OK);
}

#[tokio::test]
async fn an_email_confirmed_on_the_account_page_becomes_a_factor() {
    let (app, mut mail) = mail_app(Options::default()).await;
    let t = app.create_tenant("acme").await;
    create_user(&app, &t.id, "dave", Some("dave@example.test")).await;
    let dave = app.new_client();
    dave.sign_in_ok(Some("acme"), "dave", PASSWORD).await;
    let account = dave.get("/api/account").await.assert_status(StatusCode::OK).json();
    assert_eq!(account["factors"]["email"], "dave@example.test");
    assert_eq!(account["factors"]["email_confirmed"], false);

    // The address on file gets a code; confirming it makes email a factor and issues
    // the first recovery codes.
    dave.put_json("/api/account/email", &json!({})).await.assert_status(StatusCode::OK);
    let code = mail.next_code("dave@example.test").await;
    let codes =
        dave.post_json("/api/account/email/confirm", &json!({ "code": code })).await.assert_status(StatusCode::OK);
    assert_eq!(codes.json()["recovery_codes"].as_array().unwrap().len(), 10);
    let account = dave.get("/api/account").await.assert_status(StatusCode::OK).json();
    assert_eq!(account["factors"]["email_confirmed"], true, "{account}");

    // Dave turns 2FA on; the next sign-in asks for an emailed code.
    let policy =
        dave.put_json("/api/account/two-factor", &json!({ "enabled": true })).await.assert_status(StatusCode::OK);
    assert_eq!(policy.json()["required"], true);
    dave.post_json("/api/auth/sign-out", &json!({})).await.assert_status(StatusCode::NO_CONTENT);
    password_step(&dave, "acme", "dave", "requires_two_factor").await;
    send_code(&dave, "email").await.assert_status(StatusCode::OK);
    let code = mail.next_code("dave@example.test").await;
    assert_signed_in(&verify(&dave, "email", &code, false).await);
}

#[tokio::test]
async fn a_resend_voids_the_previous_code_but_not_the_failure_count() {
    let (app, mut mail) = mail_app(Options::default()).await;
    let t = forced_tenant(&app, "acme").await;
    create_user(&app, &t.id, "carol", Some("carol@example.test")).await;
    enrol_email(&app.new_client(), &mut mail, "acme", "carol", "carol@example.test").await;
    let carol = app.new_client();

    password_step(&carol, "acme", "carol", "requires_two_factor").await;
    send_code(&carol, "email").await.assert_status(StatusCode::OK);
    let first = mail.next_code("carol@example.test").await;
    let wrong = if first == "000000" { "000001" } else { "000000" };
    assert_eq!(attempts_left(&verify(&carol, "email", wrong, false).await), 4);

    // Too soon for another message (30 seconds by default).
    let resp = send_code(&carol, "email").await;
    let body = assert_factor_error(&resp, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(body["retry_after_seconds"].as_u64().unwrap() <= 30, "{body}");
    assert!(mail.next_messages().await.is_empty(), "a throttled send still sent mail");

    advance_seconds(&app, 31);
    send_code(&carol, "email").await.assert_status(StatusCode::OK);
    let second = mail.next_code("carol@example.test").await;
    if first != second {
        // The first code died with the resend, and trying it still counts.
        assert_eq!(attempts_left(&verify(&carol, "email", &first, false).await), 3);
    }
    assert_signed_in(&verify(&carol, "email", &second, false).await);
}

#[tokio::test]
async fn email_codes_go_only_to_confirmed_addresses() {
    // SMS needs a sender to get past `sender_not_configured` to the check that matters
    // here; the development one will do.
    let (app, mut mail) = mail_app(Options { dev_senders: true, ..Options::default() }).await;
    let t = forced_tenant(&app, "acme").await;
    create_user(&app, &t.id, "erin", Some("erin@example.test")).await;
    enrol_authenticator(&app, &app.new_client(), "acme", "erin").await;
    let erin = app.new_client();

    let body = password_step(&erin, "acme", "erin", "requires_two_factor").await;
    assert!(!providers(&body).iter().any(|p| p["provider"] == "email"), "{body}");
    for provider in ["email", "sms"] {
        send_code(&erin, provider).await.assert_error(StatusCode::BAD_REQUEST, "provider_unavailable");
    }
    verify(&erin, "email", "123456", false).await.assert_error(StatusCode::BAD_REQUEST, "provider_unavailable");
    assert!(mail.next_messages().await.is_empty(), "mail went to an unconfirmed address");
}

#[tokio::test]
async fn an_email_code_expires() {
    let (app, mut mail) = mail_app(Options::default()).await;
    let t = forced_tenant(&app, "acme").await;
    create_user(&app, &t.id, "carol", Some("carol@example.test")).await;
    enrol_email(&app.new_client(), &mut mail, "acme", "carol", "carol@example.test").await;
    let carol = app.new_client();

    password_step(&carol, "acme", "carol", "requires_two_factor").await;
    send_code(&carol, "email").await.assert_status(StatusCode::OK);
    let code = mail.next_code("carol@example.test").await;
    // Five minutes by default; the pending sign-in (ten) is still open.
    app.advance_minutes(6);
    assert_factor_error(&verify(&carol, "email", &code, false).await, StatusCode::UNAUTHORIZED, "invalid_code");
    advance_seconds(&app, 1);
    send_code(&carol, "email").await.assert_status(StatusCode::OK);
    let code = mail.next_code("carol@example.test").await;
    assert_signed_in(&verify(&carol, "email", &code, false).await);
}

#[tokio::test]
async fn a_scope_can_switch_email_codes_off() {
    let (app, mut mail) = mail_app(Options::default()).await;
    let t = forced_tenant(&app, "acme").await;
    create_user(&app, &t.id, "frank", Some("frank@example.test")).await;
    let frank = app.new_client();
    let enrolled = enrol_authenticator(&app, &frank, "acme", "frank").await;
    confirm_email_in_account(&frank, &mut mail, "frank@example.test").await;
    let body = password_step(&app.new_client(), "acme", "frank", "requires_two_factor").await;
    assert!(providers(&body).iter().any(|p| p["provider"] == "email"), "{body}");

    set_tenant_settings(
        &app,
        &t.id,
        json!({ "allowed_providers": { "authenticator": true, "email": false, "sms": true, "passkey": true } }),
    )
    .await;
    let other = app.new_client();
    let body = password_step(&other, "acme", "frank", "requires_two_factor").await;
    assert_eq!(providers(&body), vec![json!({ "provider": "authenticator", "weaker": false })], "{body}");
    send_code(&other, "email").await.assert_error(StatusCode::BAD_REQUEST, "provider_unavailable");
    verify(&other, "email", "123456", false).await.assert_error(StatusCode::BAD_REQUEST, "provider_unavailable");
    assert!(mail.next_messages().await.is_empty());
    assert_signed_in(&verify(&other, "authenticator", &next_totp(&app, &enrolled.secret), false).await);
}

// ---------------------------------------------------------------- SMS

#[tokio::test]
async fn a_phone_confirmed_on_the_account_page_signs_in_with_texted_codes() {
    let (app, sms) = sms_app(Options::default()).await;
    let t = forced_tenant(&app, "acme").await;
    create_user(&app, &t.id, "gina", None).await;
    let gina = app.new_client();
    enrol_authenticator(&app, &gina, "acme", "gina").await;

    let sent =
        gina.put_json("/api/account/phone", &json!({ "phone": "+1 415 555 0199" })).await.assert_status(StatusCode::OK);
    assert_eq!(sent.json(), json!({ "sent_to": "***0199", "expires_in_seconds": 300, "weaker": true }));
    let message = sms.all().pop().expect("a text message");
    assert_eq!(message.to, "+14155550199");
    assert!(message.body.starts_with("Your Twofold code is "), "{}", message.body);
    let code = sms.last_code_to("+14155550199");
    gina.post_json("/api/account/phone/confirm", &json!({ "code": code })).await.assert_status(StatusCode::OK);
    let account = gina.get("/api/account").await.assert_status(StatusCode::OK).json();
    assert_eq!(account["factors"]["phone"], "+14155550199", "{account}");
    assert_eq!(account["factors"]["phone_confirmed"], true, "{account}");

    let other = app.new_client();
    let body = password_step(&other, "acme", "gina", "requires_two_factor").await;
    assert!(
        providers(&body).contains(&json!({ "provider": "sms", "weaker": true, "destination": "***0199" })),
        "{body}"
    );
    let sent = send_code(&other, "sms").await.assert_status(StatusCode::OK).json();
    assert_eq!(sent["weaker"], true);
    let code = sms.last_code_to("+14155550199");
    assert_signed_in(&verify(&other, "sms", &code, false).await);
    assert_eq!(sms.all().len(), 2);
}

// ---------------------------------------------------------------- recovery codes

#[tokio::test]
async fn a_recovery_code_signs_in_once() {
    let app = admin_app(Options::default()).await;
    let t = forced_tenant(&app, "acme").await;
    create_user(&app, &t.id, "alice", None).await;
    let enrolled = enrol_authenticator(&app, &app.new_client(), "acme", "alice").await;
    let alice = app.new_client();

    password_step(&alice, "acme", "alice", "requires_two_factor").await;
    assert_signed_in(&verify(&alice, "recovery_code", &enrolled.recovery_codes[0], false).await);
    alice.post_json("/api/auth/sign-out", &json!({})).await.assert_status(StatusCode::NO_CONTENT);

    password_step(&alice, "acme", "alice", "requires_two_factor").await;
    let again = verify(&alice, "recovery_code", &enrolled.recovery_codes[0], false).await;
    assert_factor_error(&again, StatusCode::UNAUTHORIZED, "invalid_code");
    // Case and separators do not matter.
    let typed = format!(" {} ", enrolled.recovery_codes[1].to_uppercase().replace('-', " "));
    assert_signed_in(&verify(&alice, "recovery_code", &typed, false).await);
    let account = alice.get("/api/account").await.assert_status(StatusCode::OK).json();
    assert_eq!(account["factors"]["recovery_codes_left"], 8, "{account}");
}

#[tokio::test]
async fn new_recovery_codes_replace_the_whole_set() {
    let app = admin_app(Options::default()).await;
    let t = forced_tenant(&app, "acme").await;
    create_user(&app, &t.id, "alice", None).await;
    let alice = app.new_client();
    let enrolled = enrol_authenticator(&app, &alice, "acme", "alice").await;

    // Past the reauthentication window, new codes need the password and a factor.
    app.advance_minutes(6);
    alice
        .post_json("/api/account/recovery-codes", &json!({}))
        .await
        .assert_error(StatusCode::FORBIDDEN, "reauthentication_required");
    reauthenticate(&app, &alice, &enrolled.secret).await;
    let fresh = alice.post_json("/api/account/recovery-codes", &json!({})).await.assert_status(StatusCode::OK).json();
    let fresh: Vec<String> =
        fresh["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    assert_eq!(fresh.len(), 10);
    assert!(fresh.iter().all(|c| !enrolled.recovery_codes.contains(c)));

    let other = app.new_client();
    password_step(&other, "acme", "alice", "requires_two_factor").await;
    for old in &enrolled.recovery_codes[..3] {
        assert_factor_error(
            &verify(&other, "recovery_code", old, false).await,
            StatusCode::UNAUTHORIZED,
            "invalid_code",
        );
    }
    assert_signed_in(&verify(&other, "recovery_code", &fresh[0], false).await);
    let account = other.get("/api/account").await.assert_status(StatusCode::OK).json();
    assert_eq!(account["factors"]["recovery_codes_left"], 9, "{account}");
}
