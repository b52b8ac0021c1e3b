//! Abuse limits: request rates of the password step, code sends, code checks and the
//! account API, per client address and per account, answered with 429 `rate_limited`
//! and `Retry-After`; the cap on messages towards one user or destination, proven with
//! a real SMTP server; and which address counts when a reverse proxy is in front.
//!
//! Every test runs on a manual clock, so "after the wait" is exact and no test sleeps.
//! All requests come from 127.0.0.1; other client addresses are simulated through
//! `X-Forwarded-For` with 127.0.0.1 configured as a trusted proxy.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Barrier;

use crate::flows::{
    PENDING_COOKIE, admin_app, advance_seconds, assert_factor_error, attempts_left, create_user, enrol_authenticator,
    enrol_email, forced_tenant, mail_app, next_totp, password_step, pending_cookie, send_code, totp_now, verify,
    wrong_totp,
};
use crate::helpers::{Client, Limits, Options, PASSWORD, Resp, TestApp};

/// Insists on a 429 `rate_limited` in the one error shape, with `Retry-After` equal to
/// `retry_after_seconds`; returns the seconds.
#[track_caller]
fn assert_limited(resp: &Resp) -> u64 {
    let body = assert_factor_error(resp, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(resp.set_cookies().is_empty(), "a refused request set cookies: {:?}", resp.set_cookies());
    body["retry_after_seconds"].as_u64().expect("retry_after_seconds")
}

fn with_limits(limits: Limits) -> Options {
    Options { limits, ..Options::default() }
}

/// 127.0.0.1 is the proxy; the client address is whatever `X-Forwarded-For` says.
fn behind_proxy(limits: Limits) -> Options {
    Options { limits, trusted_proxies: &["127.0.0.1"], ..Options::default() }
}

/// A JSON request as the web app sends it, claiming to come from `from`.
async fn post_from(client: &Client, from: &str, path: &str, body: &Value) -> Resp {
    let request =
        client.raw(Method::POST, path).header("X-Requested-With", "test").header("X-Forwarded-For", from).json(body);
    client.send(request).await
}

async fn sign_in_from(client: &Client, from: &str, tenant: &str, username: &str, password: &str) -> Resp {
    let body = json!({ "tenant": tenant, "username": username, "password": password });
    post_from(client, from, "/api/auth/sign-in", &body).await
}

// ---------------------------------------------------------------- the password step

#[tokio::test]
async fn the_password_step_is_limited_per_address_and_recovers_after_the_wait() {
    // Four a minute: one request every fifteen seconds once the burst is spent.
    let app = admin_app(with_limits(Limits { sign_in_per_address: Some(4), ..Limits::default() })).await;
    let t = app.create_tenant("acme").await;
    create_user(&app, &t.id, "alice", None).await;
    let client = app.new_client();

    // The admin's sign-in was the first; three more, for different names, right or
    // wrong, pass, and the next is refused whatever account it names.
    client.sign_in(Some("acme"), "alice", PASSWORD).await.assert_status(StatusCode::OK);
    client.sign_in(Some("acme"), "mallory", "guess").await.assert_status(StatusCode::UNAUTHORIZED);
    client.sign_in(Some("acme"), "trent", "guess").await.assert_status(StatusCode::UNAUTHORIZED);
    let refused = client.sign_in(Some("acme"), "victor", "guess").await;
    assert_eq!(assert_limited(&refused), 15);
    // Even the right password waits, and the refusal grants nothing.
    let refused = app.new_client().sign_in(Some("acme"), "alice", PASSWORD).await;
    assert_eq!(assert_limited(&refused), 15);

    advance_seconds(&app, 14);
    assert_eq!(assert_limited(&client.sign_in(Some("acme"), "alice", PASSWORD).await), 1);
    advance_seconds(&app, 1);
    let body = client.sign_in(Some("acme"), "alice", PASSWORD).await.assert_status(StatusCode::OK).json();
    assert_eq!(body["status"], "signed_in", "{body}");
    // One request regained, one spent.
    assert_limited(&client.sign_in(Some("acme"), "alice", PASSWORD).await);
}

#[tokio::test]
async fn the_password_step_is_limited_per_account_across_addresses() {
    let app = admin_app(behind_proxy(Limits { sign_in_per_account: Some(2), ..Limits::default() })).await;
    let t = app.create_tenant("acme").await;
    create_user(&app, &t.id, "alice", None).await;
    create_user(&app, &t.id, "bob", None).await;
    let client = app.new_client();

    // One account from two addresses uses up the account's budget...
    sign_in_from(&client, "203.0.113.1", "acme", "alice", PASSWORD).await.assert_status(StatusCode::OK);
    sign_in_from(&client, "203.0.113.2", "acme", "alice", "wrong").await.assert_status(StatusCode::UNAUTHORIZED);
    // ...so a third address is refused for that account (the name is matched the way
    // sign-in matches it, whatever its case)...
    assert_eq!(assert_limited(&sign_in_from(&client, "203.0.113.3", "ACME", "Alice", PASSWORD).await), 30);
    // ...while another account from the same addresses is not.
    sign_in_from(&client, "203.0.113.1", "acme", "bob", PASSWORD).await.assert_status(StatusCode::OK);
    sign_in_from(&client, "203.0.113.2", "acme", "bob", PASSWORD).await.assert_status(StatusCode::OK);

    advance_seconds(&app, 30);
    sign_in_from(&client, "203.0.113.3", "acme", "alice", PASSWORD).await.assert_status(StatusCode::OK);
}

#[tokio::test]
async fn a_trusted_proxy_makes_forwarded_addresses_count_separately() {
    let app = admin_app(behind_proxy(Limits { sign_in_per_address: Some(2), ..Limits::default() })).await;
    let t = app.create_tenant("acme").await;
    create_user(&app, &t.id, "alice", None).await;
    let client = app.new_client();

    // A forged entry left of the one the proxy wrote changes nothing: the right-most
    // address that is not a trusted proxy is the client.
    for forged in ["198.51.100.1", "198.51.100.2"] {
        let from = format!("{forged}, 203.0.113.1");
        sign_in_from(&client, &from, "acme", "alice", PASSWORD).await.assert_status(StatusCode::OK);
    }
    assert_limited(&sign_in_from(&client, "198.51.100.3, 203.0.113.1", "acme", "alice", PASSWORD).await);
    sign_in_from(&client, "203.0.113.2", "acme", "alice", PASSWORD).await.assert_status(StatusCode::OK);
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    // No trusted proxies (the default): every request counts against the TCP peer.
    for options in [
        with_limits(Limits { sign_in_per_address: Some(3), ..Limits::default() }),
        Options {
            trusted_proxies: &["10.0.0.0/8", "::1"],
            ..with_limits(Limits { sign_in_per_address: Some(3), ..Limits::default() })
        },
    ] {
        let app = admin_app(options).await;
        let t = app.create_tenant("acme").await;
        create_user(&app, &t.id, "alice", None).await;
        let client = app.new_client();
        // The admin's sign-in was the first.
        for from in ["203.0.113.1", "203.0.113.2"] {
            sign_in_from(&client, from, "acme", "alice", PASSWORD).await.assert_status(StatusCode::OK);
        }
        assert_limited(&sign_in_from(&client, "203.0.113.3", "acme", "alice", PASSWORD).await);
    }
}

// ---------------------------------------------------------------- sending codes

/// A forced tenant `acme` whose users have a confirmed email address on file (set in
/// storage: this is about the limits, so the app runs with the development sender,
/// which only logs).
async fn users_with_email(app: &TestApp, names: &[&str]) {
    let t = forced_tenant(app, "acme").await;
    for name in names {
        let u = create_user(app, &t.id, name, Some(&format!("{name}@example.test"))).await;
        app.give_factor(&u.id).await;
    }
}

#[tokio::test]
async fn sign_in_code_sends_are_limited_per_account() {
    let options =
        Options { dev_senders: true, ..with_limits(Limits { send_code_per_account: Some(2), ..Limits::default() }) };
    let app = admin_app(options).await;
    users_with_email(&app, &["alice", "bob"]).await;

    // Each pending sign-in may send once (the resend interval), so three sign-ins of
    // one account send three times: the third is over the account's limit.
    for i in 0..3 {
        let alice = app.new_client();
        password_step(&alice, "acme", "alice", "requires_two_factor").await;
        let resp = send_code(&alice, "email").await;
        if i < 2 {
            resp.assert_status(StatusCode::OK);
        } else {
            assert_eq!(assert_limited(&resp), 30);
        }
    }
    // Another account from the same address still gets its code.
    let bob = app.new_client();
    password_step(&bob, "acme", "bob", "requires_two_factor").await;
    send_code(&bob, "email").await.assert_status(StatusCode::OK);
}

#[tokio::test]
async fn code_sends_are_limited_per_address_at_sign_in_and_on_the_account_page() {
    let options =
        Options { dev_senders: true, ..behind_proxy(Limits { send_code_per_address: Some(2), ..Limits::default() }) };
    let app = admin_app(options).await;
    users_with_email(&app, &["alice", "bob", "carol"]).await;
    let from = "203.0.113.7";

    for (i, name) in ["alice", "bob", "carol"].into_iter().enumerate() {
        let c = app.new_client();
        sign_in_from(&c, from, "acme", name, PASSWORD).await.assert_status(StatusCode::OK);
        let resp = post_from(&c, from, "/api/auth/sign-in/send-code", &json!({ "method": "email" })).await;
        if i < 2 {
            resp.assert_status(StatusCode::OK);
        } else {
            assert_limited(&resp);
        }
    }
    // The account page's confirmation sends count in the same budget.
    let resp =
        post_from(&app.client, from, "/api/account/reauthenticate/send-code", &json!({ "method": "email" })).await;
    assert_limited(&resp);
    // Another address is not affected.
    let c = app.new_client();
    sign_in_from(&c, "203.0.113.8", "acme", "carol", PASSWORD).await.assert_status(StatusCode::OK);
    post_from(&c, "203.0.113.8", "/api/auth/sign-in/send-code", &json!({ "method": "email" }))
        .await
        .assert_status(StatusCode::OK);
}

// ---------------------------------------------------------------- checking codes

#[tokio::test]
async fn code_checks_are_limited_per_account_before_they_count_as_failures() {
    let options = Options {
        lockout_max_failures: Some(10),
        ..with_limits(Limits { verify_per_account: Some(3), ..Limits::default() })
    };
    let app = admin_app(options).await;
    let t = forced_tenant(&app, "acme").await;
    create_user(&app, &t.id, "alice", None).await;
    create_user(&app, &t.id, "bob", None).await;
    // Enrolling checks one code of each.
    let alice_factor = enrol_authenticator(&app, &app.new_client(), "acme", "alice").await;
    let bob_factor = enrol_authenticator(&app, &app.new_client(), "acme", "bob").await;

    let alice = app.new_client();
    password_step(&alice, "acme", "alice", "requires_two_factor").await;
    assert_eq!(
        attempts_left(&verify(&alice, "authenticator", &wrong_totp(&app, &alice_factor.secret), false).await),
        9
    );
    assert_eq!(
        attempts_left(&verify(&alice, "authenticator", &wrong_totp(&app, &alice_factor.secret), false).await),
        8
    );
    // A recovery code is a code check like any other.
    let body = json!({ "method": "recovery_code", "code": alice_factor.recovery_codes[0] });
    assert_eq!(assert_limited(&alice.post_json("/api/auth/sign-in/verify", &body).await), 20);
    assert_limited(&verify(&alice, "authenticator", &wrong_totp(&app, &alice_factor.secret), false).await);
    // A refused check is not a wrong code: the failure count did not move, and the
    // recovery code was not spent.
    advance_seconds(&app, 20);
    assert_eq!(
        attempts_left(&verify(&alice, "authenticator", &wrong_totp(&app, &alice_factor.secret), false).await),
        7
    );
    advance_seconds(&app, 20);
    let resp = alice.post_json("/api/auth/sign-in/verify", &body).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(resp.json()["status"], "signed_in");

    // Bob, from the same address, was never limited.
    let bob = app.new_client();
    password_step(&bob, "acme", "bob", "requires_two_factor").await;
    verify(&bob, "authenticator", &next_totp(&app, &bob_factor.secret), false).await.assert_status(StatusCode::OK);
}

#[tokio::test]
async fn authenticator_confirmation_on_the_account_page_is_limited() {
    let app = admin_app(behind_proxy(Limits { verify_per_address: Some(2), ..Limits::default() })).await;
    // The admin sets up an authenticator on their own account page.
    let started = app.post_json("/api/account/authenticator", &json!({})).await.assert_status(StatusCode::OK);
    let secret = started.json()["secret"].as_str().unwrap().to_owned();
    let from = "203.0.113.9";
    for _ in 0..2 {
        let wrong = json!({ "code": wrong_totp(&app, &secret) });
        let resp = post_from(&app.client, from, "/api/account/authenticator/confirm", &wrong).await;
        assert_factor_error(&resp, StatusCode::UNAUTHORIZED, "invalid_code");
    }
    // The current step: moving the clock would also give the address a request back.
    let right = json!({ "code": totp_now(&app, &secret) });
    assert_eq!(assert_limited(&post_from(&app.client, from, "/api/account/authenticator/confirm", &right).await), 30);
    // From another address the right code works: the refused request changed nothing.
    let body = post_from(&app.client, "203.0.113.10", "/api/account/authenticator/confirm", &right)
        .await
        .assert_status(StatusCode::OK)
        .json();
    assert_eq!(body["recovery_codes"].as_array().map(Vec::len), Some(10), "{body}");
}

// ---------------------------------------------------------------- the account API

#[tokio::test]
async fn the_account_api_is_limited_per_user_and_recovers() {
    let app = admin_app(with_limits(Limits { account_per_account: Some(3), ..Limits::default() })).await;
    let t = app.create_tenant("acme").await;
    create_user(&app, &t.id, "alice", None).await;
    let alice = app.new_client();
    alice.sign_in_ok(Some("acme"), "alice", PASSWORD).await;

    alice.get("/api/account").await.assert_status(StatusCode::OK);
    alice.get("/api/account/browsers").await.assert_status(StatusCode::OK);
    alice.put_json("/api/account/two-factor", &json!({ "enabled": true })).await.assert_status(StatusCode::OK);
    assert_eq!(assert_limited(&alice.get("/api/account").await), 20);
    // A refused write is not applied.
    assert_limited(&alice.put_json("/api/account/two-factor", &json!({ "enabled": false })).await);
    // The admin, from the same address, is not limited.
    app.get("/api/account").await.assert_status(StatusCode::OK);

    advance_seconds(&app, 20);
    let account = alice.get("/api/account").await.assert_status(StatusCode::OK).json();
    assert_eq!(account["two_factor_enabled"], true, "{account}");
}

#[tokio::test]
async fn the_account_api_is_limited_per_address_even_without_a_session() {
    let app = admin_app(with_limits(Limits { account_per_address: Some(3), ..Limits::default() })).await;
    let stranger = app.new_client();
    for _ in 0..3 {
        stranger.get("/api/account").await.assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    }
    assert_eq!(assert_limited(&stranger.get("/api/account").await), 20);
    // The address is spent for everyone on it, signed in or not.
    assert_limited(&app.delete("/api/account/browsers").await);
}

// ---------------------------------------------------------------- message floods

/// Sends `send-code` for each pending cookie at the same moment, each request from its
/// own address.
async fn send_all_at_once(app: &TestApp, cookies: Vec<String>) -> Vec<Resp> {
    let barrier = Arc::new(Barrier::new(cookies.len()));
    let addr = app.running.addr;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, cookie) in cookies.into_iter().enumerate() {
        let barrier = barrier.clone();
        tasks.spawn(async move {
            barrier.wait().await;
            let resp = reqwest::Client::new()
                .post(format!("http://{addr}/api/auth/sign-in/send-code"))
                .header("X-Requested-With", "test")
                .header("X-Forwarded-For", format!("198.51.100.{}", i + 1))
                .header(reqwest::header::COOKIE, cookie)
                .json(&json!({ "method": "email" }))
                .send()
                .await
                .expect("the request failed");
            let (status, headers) = (resp.status(), resp.headers().clone());
            Resp { status, headers, body: resp.bytes().await.expect("body").to_vec() }
        });
    }
    tasks.join_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_user_gets_more_messages_than_the_cap_whatever_asks_for_them() {
    const CAP: usize = 4;
    // The request-rate limit on sends is out of reach: this is about the cap alone.
    let options = behind_proxy(Limits {
        sends_per_user: Some(CAP as u32),
        sends_per_destination: Some(100),
        send_code_per_account: Some(100),
        ..Limits::default()
    });
    let (app, mut mail) = mail_app(options).await;
    let t = forced_tenant(&app, "acme").await;
    create_user(&app, &t.id, "carol", Some("carol@example.test")).await;
    let carol_page = app.new_client();
    // The enrolment mail is the first of the cap.
    enrol_email(&carol_page, &mut mail, "acme", "carol", "carol@example.test").await;

    // Ten pending sign-ins of carol, from ten addresses, all ask for a code at once.
    let mut cookies = Vec::new();
    for _ in 0..10 {
        let c = app.new_client();
        let resp = c.sign_in(Some("acme"), "carol", PASSWORD).await.assert_status(StatusCode::OK);
        cookies.push(format!("{PENDING_COOKIE}={}", pending_cookie(&resp)));
    }
    let answers = send_all_at_once(&app, cookies).await;
    let sent = answers.iter().filter(|a| a.status == StatusCode::OK).count();
    for refused in answers.iter().filter(|a| a.status != StatusCode::OK) {
        assert_limited(refused);
    }
    assert_eq!(sent, CAP - 1, "{:?}", answers.iter().map(|a| a.status).collect::<Vec<_>>());
    // The account page cannot add to it either.
    let resp = carol_page.post_json("/api/account/reauthenticate/send-code", &json!({ "method": "email" })).await;
    assert_eq!(assert_limited(&resp), 15 * 60);

    // What reached the mailbox: the cap, not one message more.
    let messages = mail.next_messages().await;
    assert_eq!(messages.len(), CAP - 1, "{messages:#?}");
    assert!(messages.iter().all(|m| m.contains("To: carol@example.test")), "{messages:#?}");

    // A quarter of an hour later one more message may go.
    advance_seconds(&app, 15 * 60);
    carol_page
        .post_json("/api/account/reauthenticate/send-code", &json!({ "method": "email" }))
        .await
        .assert_status(StatusCode::OK);
    assert_eq!(mail.next_code("carol@example.test").await.len(), 6);
    assert_limited(&carol_page.post_json("/api/account/reauthenticate/send-code", &json!({ "method": "email" })).await);
}

#[tokio::test]
async fn no_address_gets_more_messages_than_the_cap_whichever_account_asks() {
    let options = Options {
        limits: Limits { sends_per_destination: Some(2), sends_per_user: Some(100), ..Limits::default() },
        ..Options::default()
    };
    let (app, mut mail) = mail_app(options).await;
    let t = app.create_tenant("acme").await;
    let mut pages = Vec::new();
    for name in ["mallory", "trent", "oscar"] {
        create_user(&app, &t.id, name, None).await;
        let c = app.new_client();
        c.sign_in_ok(Some("acme"), name, PASSWORD).await;
        pages.push(c);
    }
    // Three accounts each ask to confirm the victim's address (written differently).
    for (i, (page, to)) in
        pages.iter().zip(["victim@example.test", "Victim@Example.test", "victim@example.test"]).enumerate()
    {
        let resp = page.put_json("/api/account/email", &json!({ "email": to })).await;
        if i < 2 {
            resp.assert_status(StatusCode::OK);
        } else {
            assert_eq!(assert_limited(&resp), 30 * 60);
            // Refused before anything was written.
            let account = page.get("/api/account").await.assert_status(StatusCode::OK).json();
            assert_eq!(account["factors"]["pending_email"], Value::Null, "{account}");
        }
    }
    assert_eq!(mail.next_messages().await.len(), 2);
}

// ---------------------------------------------------------------- the document

#[tokio::test]
async fn the_api_document_lists_the_429_of_every_limited_route() {
    let app = TestApp::spawn().await;
    let doc = app.get("/api/openapi.json").await.assert_status(StatusCode::OK).json();
    let paths = doc["paths"].as_object().expect("paths");
    let limited_auth = [
        "/api/auth/sign-in",
        "/api/auth/sign-in/send-code",
        "/api/auth/sign-in/verify",
        "/api/auth/enroll/authenticator/confirm",
        "/api/auth/enroll/email",
        "/api/auth/enroll/email/confirm",
        "/api/auth/enroll/phone",
        "/api/auth/enroll/phone/confirm",
    ];
    let mut checked = 0;
    for (path, item) in paths {
        if !(path.starts_with("/api/account") || limited_auth.contains(&path.as_str())) {
            continue;
        }
        let item = item.as_object().expect("a path item");
        for (method, op) in item.iter().filter(|(k, _)| ["get", "put", "post", "delete", "patch"].contains(&k.as_str()))
        {
            let resp = &op["responses"]["429"];
            assert!(resp.is_object(), "{method} {path} does not list 429");
            assert!(resp["headers"]["Retry-After"].is_object(), "{method} {path}: 429 without Retry-After: {resp}");
            assert_eq!(resp["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorBody");
            checked += 1;
        }
    }
    // Every account operation and every limited sign-in step.
    assert!(checked >= 17 + limited_auth.len(), "only {checked} operations checked");
    // Routes without limits do not claim one.
    assert!(paths["/health"]["get"]["responses"].get("429").is_none());
}
