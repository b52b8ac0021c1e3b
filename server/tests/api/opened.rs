//! A verification of an authenticator code in one statement (`signin::opened`): on
//! PostgreSQL the statement counts the attempt and, for a right code, completes the
//! sign-in, finding the code's step by the keyed tags the password step stored with
//! the pending sign-in, on whichever node the request lands (the other node's side is
//! in `tests/multinode.rs`). Each test is an attack on what the statement trusts: an
//! authenticator changed behind its back, a step used since, a lock, a token naming
//! another user, a sign-in outliving its tags, a request passed on to the general way.
//! On SQLite no tags are stored and the same answers come from the general way.

use reqwest::header::COOKIE;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::flows::{
    PENDING_COOKIE, REMEMBER_COOKIE, admin_app, assert_factor_error, assert_signed_in, attempts_left, cookie_set,
    create_user, enrol_authenticator, forced_tenant, next_totp, password_step, totp_now, verify, wrong_totp,
};
use crate::helpers::{Backend, Limits, Options, PASSWORD, TestApp};
use twofold_server::app::AppState;
use twofold_server::db::{self, CompleteSignIn, VerifyOpened};

/// A forced tenant `acme` with `alice`, who has an authenticator: her id and secret.
async fn alice_with_authenticator(app: &TestApp) -> (String, String) {
    let (alice, secret, _) = alice_in_acme(app).await;
    (alice, secret)
}

/// [`alice_with_authenticator`], and the tenant's id.
async fn alice_in_acme(app: &TestApp) -> (String, String, String) {
    let t = forced_tenant(app, "acme").await;
    let alice = create_user(app, &t.id, "alice", None).await;
    let enrolled = enrol_authenticator(app, &app.new_client(), "acme", "alice").await;
    (alice.id, enrolled.secret, t.id)
}

/// Tags of no code (made under another binding): a wrong code's, for the statement.
fn tags_of_no_code(state: &AppState) -> Vec<u8> {
    (0..db::TAGGED_STEPS).flat_map(|step| state.keys().step_tag("another sign-in", step, "000000")).collect()
}

/// The statement's verification of `user_id`'s pending sign-in `hash` with `tags`,
/// remembering no browser and claiming nothing of the user's inputs.
fn by_the_statement<'a>(state: &'a AppState, hash: &'a str, user_id: &'a str, tags: &'a [u8]) -> VerifyOpened<'a> {
    VerifyOpened {
        sign_in: CompleteSignIn {
            attempt_id: hash,
            user_id,
            now: state.now(),
            methods: "pwd+authenticator",
            method: "authenticator",
            consume: ("", &[]),
            token_hash: "unused",
            sid: "unused",
            expires_at: state.now() + 60_000,
            user_agent: None,
            client_ip: None,
            browser: None,
        },
        first_step: state.now() / 30_000 - 1,
        tags,
        key: state.keys().current_id(),
        max_failures: 5,
        permanent_after: 100,
        claim: None,
    }
}

fn on_postgres() -> bool {
    Backend::from_env() == Backend::Postgres
}

/// The tags columns of the pending sign-in of `token`: its tags, first step, key id
/// and secret's digest.
async fn tags_of(app: &TestApp, token: &str) -> (Vec<u8>, i64, String, Vec<u8>) {
    sqlx::query_as(
        "SELECT code_tags, code_tags_from, code_tags_key, code_secret FROM sign_in_attempts WHERE token_hash = $1",
    )
    .bind(twofold_server::auth::token_hash(token))
    .fetch_one(&app.running.state.db().pool)
    .await
    .unwrap()
}

/// Whether the pending sign-in of `token` is completed.
async fn completed(app: &TestApp, token: &str) -> bool {
    let (at,): (Option<i64>,) = sqlx::query_as("SELECT completed_at FROM sign_in_attempts WHERE token_hash = $1")
        .bind(twofold_server::auth::token_hash(token))
        .fetch_one(&app.running.state.db().pool)
        .await
        .unwrap();
    at.is_some()
}

/// A user's second-factor failures and consecutive failures, as stored.
async fn counts_of(app: &TestApp, user_id: &str) -> (i64, i64) {
    sqlx::query_as("SELECT second_factor_failures, consecutive_failures FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_one(&app.running.state.db().pool)
        .await
        .unwrap()
}

/// The pending sign-in's token names its user under the server's key, and on
/// PostgreSQL its row keeps a keyed tag of the code of each step of its life and no
/// code: the tag of the current step is the server key's tag of the current code. A
/// wrong code is counted and leaves the sign-in open; the right one signs in.
#[tokio::test]
async fn a_sign_in_keeps_keyed_tags_of_its_codes_and_its_token_names_its_user() {
    let app = admin_app(Options::default()).await;
    let (alice_id, secret) = alice_with_authenticator(&app).await;
    let alice = app.new_client();
    let resp = alice.sign_in(Some("acme"), "alice", PASSWORD).await.assert_status(StatusCode::OK);
    let token = crate::flows::pending_cookie(&resp);
    let keys = app.running.state.keys();
    let inner = keys.verify_signed_token(&token).expect("the token is signed under the server's key");
    assert!(inner.starts_with(&format!("{alice_id}.")), "{inner}");

    if on_postgres() {
        let (tags, from, key, digest) = tags_of(&app, &token).await;
        assert_eq!(key, keys.current_id());
        let (secret_enc,): (String,) = sqlx::query_as("SELECT secret_enc FROM authenticators WHERE user_id = $1")
            .bind(&alice_id)
            .fetch_one(&app.running.state.db().pool)
            .await
            .unwrap();
        assert_eq!(digest, <sha2::Sha256 as sha2::Digest>::digest(secret_enc.as_bytes()).to_vec());
        // Ten minutes of 30-second steps, with the skew and two earlier steps, 8 bytes each.
        assert_eq!(tags.len() % 8, 0);
        assert!((20..=64).contains(&(tags.len() / 8)), "{} tags", tags.len() / 8);
        let step = app.running.state.now() / 30_000;
        let at = usize::try_from(step - from).unwrap() * 8;
        let hash = twofold_server::auth::token_hash(&token);
        assert_eq!(tags[at..at + 8], keys.step_tag(&hash, step, &totp_now(&app, &secret)));
        assert_ne!(tags[at..at + 8], keys.step_tag(&hash, step, &wrong_totp(&app, &secret)));
    }

    assert_eq!(attempts_left(&verify(&alice, "authenticator", &wrong_totp(&app, &secret), false).await), 4);
    assert_eq!(counts_of(&app, &alice_id).await, (1, 1));
    assert!(!completed(&app, &token).await);

    let body = assert_signed_in(&verify(&alice, "authenticator", &next_totp(&app, &secret), false).await);
    assert_eq!(body["user"]["tenant_name"], "acme", "{body}");
    assert_eq!(counts_of(&app, &alice_id).await, (0, 0));
    assert!(completed(&app, &token).await);
    let me = alice.get("/api/auth/me").await.assert_status(StatusCode::OK).json();
    assert_eq!(me["id"], alice_id.as_str(), "{me}");
}

/// A token is the only thing that names the user before the statement runs, and the
/// per-account limit of verifications and the lockout count that user. A token made to
/// name bob (alice's, with bob's id in place of hers) is refused as an expired sign-in,
/// counts no wrong code against bob or alice, and spends nothing of bob's limit.
#[tokio::test]
async fn a_token_made_to_name_another_user_spends_nothing_of_theirs() {
    let limits = Limits { verify_per_account: Some(1), ..Limits::default() };
    let app = admin_app(Options { limits, ..Options::default() }).await;
    let (alice_id, _, tenant) = alice_in_acme(&app).await;
    let bob = create_user(&app, &tenant, "bob", None).await;
    let bob_secret = enrol_authenticator(&app, &app.new_client(), "acme", "bob").await.secret;
    // Past the minute of the enrolments' own verifications.
    app.advance_minutes(2);
    let resp = app.new_client().sign_in(Some("acme"), "alice", PASSWORD).await.assert_status(StatusCode::OK);
    let forged = crate::flows::pending_cookie(&resp).replacen(&alice_id, &bob.id, 1);
    assert!(forged.contains(&bob.id));
    let thief = app.new_client();
    for _ in 0..3 {
        let body = json!({ "method": "authenticator", "code": "123456", "remember_browser": false });
        let r = thief
            .send(
                thief
                    .raw(Method::POST, "/api/auth/sign-in/verify")
                    .header(COOKIE, format!("{PENDING_COOKIE}={forged}"))
                    .header("X-Requested-With", "test")
                    .json(&body),
            )
            .await;
        assert_factor_error(&r, StatusCode::UNAUTHORIZED, "sign_in_expired");
    }
    assert_eq!(counts_of(&app, &bob.id).await, (0, 0));
    assert_eq!(counts_of(&app, &alice_id).await, (0, 0));
    let bob_client = app.new_client();
    password_step(&bob_client, "acme", "bob", "requires_two_factor").await;
    assert_signed_in(&verify(&bob_client, "authenticator", &next_totp(&app, &bob_secret), false).await);
}

/// A sign-in that lives longer than its tags cover (at most 64 steps, 32 minutes) is
/// still verified, the general way: a right code signs in, and is not counted as wrong.
#[tokio::test]
async fn a_sign_in_that_outlives_its_tags_is_verified_the_general_way() {
    let app = TestApp::spawn_configured(Options { manual_clock: true, ..Options::default() }, |c| {
        c.pending_sign_in_minutes = 60;
    })
    .await;
    app.sign_in_admin().await;
    let (alice_id, secret) = alice_with_authenticator(&app).await;
    let alice = app.new_client();
    password_step(&alice, "acme", "alice", "requires_two_factor").await;
    app.advance_minutes(40);
    assert_eq!(attempts_left(&verify(&alice, "authenticator", &wrong_totp(&app, &secret), false).await), 4);
    assert_eq!(counts_of(&app, &alice_id).await, (1, 1));
    assert_signed_in(&verify(&alice, "authenticator", &next_totp(&app, &secret), false).await);
    assert_eq!(counts_of(&app, &alice_id).await, (0, 0));
}

/// The tags were computed from the secret the password step read; the statement
/// compares its digest with the one stored. An authenticator changed since (here behind
/// the application's back, keeping the security stamp, which a replacement through the
/// API rotates) is checked as stored: a code of the old secret is a wrong code,
/// counted, and a code of the new one signs in.
#[tokio::test]
async fn an_authenticator_changed_since_the_password_step_is_checked_as_stored() {
    let app = admin_app(Options::default()).await;
    let (alice_id, old_secret) = alice_with_authenticator(&app).await;
    let alice = app.new_client();
    password_step(&alice, "acme", "alice", "requires_two_factor").await;

    // RFC 6238's test secret, as base32 for oathtool.
    let new_secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    let stored = app.running.state.keys().encrypt_secret(b"12345678901234567890", &alice_id);
    sqlx::query("UPDATE authenticators SET secret_enc = $1 WHERE user_id = $2")
        .bind(&stored)
        .bind(&alice_id)
        .execute(&app.running.state.db().pool)
        .await
        .unwrap();

    // The next step: enrolment used this one.
    let old_code = next_totp(&app, &old_secret);
    let new_code = totp_now(&app, new_secret);
    assert_ne!(old_code, new_code);
    let refused = verify(&alice, "authenticator", &old_code, false).await;
    assert_factor_error(&refused, StatusCode::UNAUTHORIZED, "invalid_code");
    assert_eq!(attempts_left(&refused), 4);
    assert_eq!(counts_of(&app, &alice_id).await, (1, 1));
    assert_signed_in(&verify(&alice, "authenticator", &new_code, false).await);
    assert_eq!(counts_of(&app, &alice_id).await, (0, 0));
}

/// Two sign-ins opened at once read the authenticator at the same step; the first to
/// use a code spends its step. The second, with the same code, is told it is wrong but
/// is not counted (it was no guess), and its next step signs in.
#[tokio::test]
async fn a_step_used_since_the_sign_in_opened_is_refused_and_not_counted() {
    let app = admin_app(Options::default()).await;
    let (alice_id, secret) = alice_with_authenticator(&app).await;
    let (first, second) = (app.new_client(), app.new_client());
    password_step(&first, "acme", "alice", "requires_two_factor").await;
    password_step(&second, "acme", "alice", "requires_two_factor").await;

    let code = next_totp(&app, &secret);
    assert_signed_in(&verify(&first, "authenticator", &code, false).await);
    let replayed = verify(&second, "authenticator", &code, false).await;
    assert_factor_error(&replayed, StatusCode::UNAUTHORIZED, "invalid_code");
    assert_eq!(attempts_left(&replayed), 5);
    assert_eq!(counts_of(&app, &alice_id).await, (0, 0));
    assert_signed_in(&verify(&second, "authenticator", &next_totp(&app, &secret), false).await);
}

/// A locked user learns nothing from which code was right: the right and the wrong
/// code get the same answer, and neither is counted.
#[tokio::test]
async fn a_locked_user_gets_the_same_answer_for_a_right_and_a_wrong_code() {
    let app = admin_app(Options { manual_clock: true, ..Options::default() }).await;
    let (alice_id, secret) = alice_with_authenticator(&app).await;
    let alice = app.new_client();
    password_step(&alice, "acme", "alice", "requires_two_factor").await;
    for _ in 0..5 {
        verify(&alice, "authenticator", &wrong_totp(&app, &secret), false).await;
    }
    let locked = counts_of(&app, &alice_id).await;
    assert_eq!(locked.1, 5);

    let right = verify(&alice, "authenticator", &next_totp(&app, &secret), false).await;
    let wrong = verify(&alice, "authenticator", &wrong_totp(&app, &secret), false).await;
    assert_factor_error(&right, StatusCode::LOCKED, "locked_out");
    assert_eq!(right.json(), wrong.json());
    assert_eq!(right.status, wrong.status);
    assert_eq!(counts_of(&app, &alice_id).await, locked);
}

/// A request the statement refuses goes the general way, which counts it against the
/// per-account limit of verifications itself: it is counted once, not twice.
#[tokio::test]
async fn a_request_passed_on_to_the_general_way_counts_once_against_the_rate_limit() {
    let limits = Limits { verify_per_account: Some(3), ..Limits::default() };
    let app = admin_app(Options { limits, ..Options::default() }).await;
    let (_, secret) = alice_with_authenticator(&app).await;
    let (first, second) = (app.new_client(), app.new_client());
    password_step(&first, "acme", "alice", "requires_two_factor").await;
    password_step(&second, "acme", "alice", "requires_two_factor").await;

    let code = next_totp(&app, &secret);
    assert_signed_in(&verify(&first, "authenticator", &code, false).await);
    // Two replays of the used step: each refused by the statement, then answered by the
    // general way. With the first counted twice, the second would be over the limit.
    for _ in 0..2 {
        assert_factor_error(
            &verify(&second, "authenticator", &code, false).await,
            StatusCode::UNAUTHORIZED,
            "invalid_code",
        );
    }
    let over = verify(&second, "authenticator", &code, false).await;
    assert_factor_error(&over, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
}

/// The tenant's policy is read as it is now, not as it was at the password step: an
/// authenticator no longer allowed is refused, and nothing is counted.
#[tokio::test]
async fn a_policy_changed_since_the_password_step_is_the_one_applied() {
    let app = admin_app(Options::default()).await;
    let (alice_id, secret, tenant) = alice_in_acme(&app).await;
    let alice = app.new_client();
    password_step(&alice, "acme", "alice", "requires_two_factor").await;
    let only_email = json!({ "authenticator": false, "email": true, "sms": false, "passkey": false });
    crate::flows::set_tenant_settings(&app, &tenant, json!({ "allowed_providers": only_email })).await;
    let refused = verify(&alice, "authenticator", &totp_now(&app, &secret), false).await;
    assert_factor_error(&refused, StatusCode::BAD_REQUEST, "provider_unavailable");
    assert_eq!(counts_of(&app, &alice_id).await, (0, 0));
}

/// The user's own policy inputs as the token claims them are held against the user's
/// row: a group joined since the password step, asking for more than an authenticator
/// proves, is the one applied. The statement writes nothing for the stale claim and the
/// general way refuses the code; nothing is counted and no session is made.
#[tokio::test]
async fn a_group_joined_since_the_password_step_is_the_one_applied() {
    // Passkeys on (a relying party), so that a group may ask for them.
    let app = TestApp::spawn_configured(Options { manual_clock: true, ..Options::default() }, |c| {
        c.public_url = Some("http://localhost:8443".to_owned());
    })
    .await;
    app.sign_in_admin().await;
    let (alice_id, secret, tenant) = alice_in_acme(&app).await;
    let sessions = sessions_of(&app, &alice_id).await;
    let alice = app.new_client();
    password_step(&alice, "acme", "alice", "requires_two_factor").await;
    // Only a floor: a group that requires a second factor would also switch alice's own
    // on, which the statement sees on her row.
    let keys = json!({ "name": "Keys", "rule": { "min_strength": "phishing_resistant" } });
    let group =
        app.post_json(&format!("/api/tenants/{tenant}/groups"), &keys).await.assert_status(StatusCode::CREATED).json();
    let group = group["id"].as_str().expect("the group's id");
    app.post_json(&format!("/api/groups/{group}/members"), &json!({ "user_id": alice_id }))
        .await
        .assert_status(StatusCode::OK);
    let refused = verify(&alice, "authenticator", &next_totp(&app, &secret), false).await;
    assert_factor_error(&refused, StatusCode::BAD_REQUEST, "provider_unavailable");
    assert_eq!(counts_of(&app, &alice_id).await, (0, 0));
    assert_eq!(sessions_of(&app, &alice_id).await, sessions);
}

/// The statement itself keeps to the claim it is given: for a user whose row holds
/// another tenant or switch than claimed, or who is in a group, it writes nothing, and
/// with the claim as the row holds it, it counts. On SQLite no tags are stored.
#[tokio::test]
async fn a_claim_the_users_row_does_not_hold_writes_nothing() {
    let app = admin_app(Options::default()).await;
    let (alice_id, _, tenant) = alice_in_acme(&app).await;
    let other = app.create_tenant("other").await;
    let resp = app.new_client().sign_in(Some("acme"), "alice", PASSWORD).await.assert_status(StatusCode::OK);
    let token = crate::flows::pending_cookie(&resp);
    if !on_postgres() {
        return;
    }
    let state = &app.running.state;
    let hash = twofold_server::auth::token_hash(&token);
    let tags = tags_of_no_code(state);
    let switch = sqlx::query_scalar::<_, i64>("SELECT two_factor_enabled FROM users WHERE id = $1")
        .bind(&alice_id)
        .fetch_one(&state.db().pool)
        .await
        .unwrap()
        != 0;
    let verification = |claim| VerifyOpened { claim, ..by_the_statement(state, &hash, &alice_id, &tags) };
    let mut conn = state.db().pool.acquire().await.unwrap();
    for (claim, what) in [
        ((Some(other.id.as_str()), switch), "another tenant"),
        ((None, switch), "the host"),
        ((Some(tenant.as_str()), !switch), "the other switch"),
    ] {
        assert!(db::verify_opened(&mut conn, &verification(Some(claim))).await.unwrap().is_none(), "claimed {what}");
        assert_eq!(counts_of(&app, &alice_id).await, (0, 0), "claimed {what}");
    }
    let right = verification(Some((Some(tenant.as_str()), switch)));
    // In a group, the rules are not on the row: even the right claim writes nothing.
    let group = app
        .post_json(&format!("/api/tenants/{tenant}/groups"), &json!({ "name": "Finance" }))
        .await
        .assert_status(StatusCode::CREATED)
        .json();
    let members = format!("/api/groups/{}/members", group["id"].as_str().expect("the group's id"));
    app.post_json(&members, &json!({ "user_id": alice_id })).await.assert_status(StatusCode::OK);
    assert!(db::verify_opened(&mut conn, &right).await.unwrap().is_none(), "claimed no group");
    assert_eq!(counts_of(&app, &alice_id).await, (0, 0), "claimed no group");
    app.delete(&format!("{members}/{alice_id}")).await.assert_status(StatusCode::NO_CONTENT);
    let counted = db::verify_opened(&mut conn, &right).await.unwrap().expect("the right claim is counted");
    assert!(!counted.signed_in);
    assert_eq!(counts_of(&app, &alice_id).await, (1, 1));
}

/// A wrong code's count does not wait for the log's sync, for its statement's own
/// transaction only: it is seen from every other connection once the statement returns,
/// and the connection's next commits sync again (left on it, the setting would leave the
/// sign-ins completed on that connection unsynced too). On SQLite no tags are stored.
#[tokio::test]
async fn a_wrong_codes_count_is_seen_at_once_and_the_connections_next_commits_sync() {
    let app = admin_app(Options::default()).await;
    let (alice_id, _) = alice_with_authenticator(&app).await;
    let resp = app.new_client().sign_in(Some("acme"), "alice", PASSWORD).await.assert_status(StatusCode::OK);
    let token = crate::flows::pending_cookie(&resp);
    if !on_postgres() {
        return;
    }
    let state = &app.running.state;
    let sessions = sessions_of(&app, &alice_id).await;
    let mut conn = state.db().pool.acquire().await.unwrap();
    let hash = twofold_server::auth::token_hash(&token);
    let tags = tags_of_no_code(state);
    let plain = by_the_statement(state, &hash, &alice_id, &tags);
    // Asked for, but only a right code's sign-in remembers a browser.
    let browser =
        db::BrowserToRemember { id: "unused", token_hash: "unused", expires_at: state.now() + 60_000, strength: "app" };
    let wrong = VerifyOpened { sign_in: CompleteSignIn { browser: Some(browser), ..plain.sign_in }, ..plain };
    let verified = db::verify_opened(&mut conn, &wrong).await.unwrap().expect("the attempt was counted");
    assert!(!verified.signed_in);
    assert_eq!((verified.user.second_factor_failures, verified.user.consecutive_failures), (1, 1));
    let (setting,): (String,) = sqlx::query_as("SHOW synchronous_commit").fetch_one(&mut *conn).await.unwrap();
    assert_eq!(setting, "on", "the unsynced commit outlived its statement on this connection");
    drop(conn);
    assert_eq!(counts_of(&app, &alice_id).await, (1, 1), "the count, from another connection");
    assert_eq!(sessions_of(&app, &alice_id).await, sessions, "a wrong code makes no session");
    assert_eq!(browsers_of(&app, &alice_id).await, 0, "nor remembers a browser");
    assert!(!completed(&app, &token).await);
}

/// A pending sign-in with tags is opened without waiting for the log's sync, for its
/// statement's own transaction only: the row is seen from every other connection once
/// the statement returns (any node may verify it next), and the connection's next
/// commits sync again. On SQLite no tags are stored.
#[tokio::test]
async fn an_opened_sign_in_is_seen_at_once_and_the_connections_next_commits_sync() {
    let app = admin_app(Options::default()).await;
    let (alice_id, _) = alice_with_authenticator(&app).await;
    if !on_postgres() {
        return;
    }
    let state = &app.running.state;
    let pool = &state.db().pool;
    let (stamp,): (String,) =
        sqlx::query_as("SELECT security_stamp FROM users WHERE id = $1").bind(&alice_id).fetch_one(pool).await.unwrap();
    let now = state.now();
    let attempt = db::factors::NewAttempt {
        token_hash: "opened-unsynced",
        id: "opened-unsynced-id",
        user_id: &alice_id,
        stage: "second_factor",
        security_stamp: &stamp,
        created_at: now,
        expires_at: now + 60_000,
    };
    let tags = db::factors::StepTags {
        tags: tags_of_no_code(state),
        from: now / 30_000,
        key: state.keys().current_id().to_owned(),
        secret: vec![0; 32],
    };
    let mut conn = pool.acquire().await.unwrap();
    db::factors::insert_tagged_attempt(&mut conn, &attempt, &tags).await.unwrap();
    let (setting,): (String,) = sqlx::query_as("SHOW synchronous_commit").fetch_one(&mut *conn).await.unwrap();
    assert_eq!(setting, "on", "the unsynced commit outlived its statement on this connection");
    drop(conn);
    let (opened,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM sign_in_attempts WHERE token_hash = $1 AND user_id = $2")
            .bind("opened-unsynced")
            .bind(&alice_id)
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(opened, 1, "the pending sign-in, from another connection");
}

/// How many rows of `table` (sessions, remembered browsers) belong to the user.
async fn rows_of(app: &TestApp, table: &str, user_id: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table} WHERE user_id = $1")))
        .bind(user_id)
        .fetch_one(&app.running.state.db().pool)
        .await
        .unwrap();
    n
}

async fn sessions_of(app: &TestApp, user_id: &str) -> i64 {
    rows_of(app, "sessions", user_id).await
}

async fn browsers_of(app: &TestApp, user_id: &str) -> i64 {
    rows_of(app, "remembered_browsers", user_id).await
}

/// A browser to remember is inserted by the statement that signs in, so asking for it
/// keeps the verification in one statement, and the browser is written with a sign-in
/// and only with one: not with a wrong code, nor with a right code whose step another
/// sign-in used first. The cookie it sets lets the next sign-in skip the second factor.
#[tokio::test]
async fn a_browser_to_remember_is_written_with_the_sign_in_and_only_with_it() {
    let app = admin_app(Options::default()).await;
    let (alice_id, secret) = alice_with_authenticator(&app).await;
    let (alice, other) = (app.new_client(), app.new_client());
    password_step(&alice, "acme", "alice", "requires_two_factor").await;
    password_step(&other, "acme", "alice", "requires_two_factor").await;
    let sessions = sessions_of(&app, &alice_id).await;

    let wrong = verify(&alice, "authenticator", &wrong_totp(&app, &secret), true).await;
    assert_factor_error(&wrong, StatusCode::UNAUTHORIZED, "invalid_code");
    assert!(cookie_set(&wrong, REMEMBER_COOKIE).is_none());
    assert_eq!(browsers_of(&app, &alice_id).await, 0);

    let code = next_totp(&app, &secret);
    let resp = verify(&alice, "authenticator", &code, true).await;
    assert_signed_in(&resp);
    let cookie = cookie_set(&resp, REMEMBER_COOKIE);
    assert!(cookie.is_some(), "{:?}", resp.set_cookies());
    assert_eq!(browsers_of(&app, &alice_id).await, 1);
    assert_eq!(sessions_of(&app, &alice_id).await, sessions + 1);

    // The same step on the other sign-in: refused, not counted, nothing remembered.
    let replayed = verify(&other, "authenticator", &code, true).await;
    assert_factor_error(&replayed, StatusCode::UNAUTHORIZED, "invalid_code");
    assert!(cookie_set(&replayed, REMEMBER_COOKIE).is_none());
    assert_eq!(browsers_of(&app, &alice_id).await, 1);
    assert_eq!(sessions_of(&app, &alice_id).await, sessions + 1);

    alice.post_json("/api/auth/sign-out", &json!({})).await.assert_status(StatusCode::NO_CONTENT);
    let again = alice.sign_in(Some("acme"), "alice", PASSWORD).await;
    assert_signed_in(&again);
    assert!(again.set_cookie("twofold_pending").is_none(), "{:?}", again.set_cookies());
}
