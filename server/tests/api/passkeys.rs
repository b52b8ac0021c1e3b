//! Passkeys over HTTP with a software authenticator: enrolment at sign-in and on the
//! account page, the second factor, passwordless sign-in, and the attacks: a replayed
//! or raced challenge, a cloned authenticator, a phishing origin, no user verification,
//! a foreign credential; then strength in the policy (`min_strength`, recovery codes
//! under `phishing_resistant`, remembered browsers).

use reqwest::StatusCode;
use serde_json::{Value, json};
use twofold_policy::wire::User;

use crate::flows::*;
use crate::helpers::*;
use crate::soft_authenticator::SoftAuthenticator;

/// Where the tests' browser pretends to be: `public_url`, so the relying party.
const ORIGIN: &str = "http://localhost:8443";
const RP_ID: &str = "localhost";

async fn passkey_app(options: Options) -> TestApp {
    let app = TestApp::spawn_configured(Options { manual_clock: true, ..options }, |c| {
        c.public_url = Some(ORIGIN.to_owned());
    })
    .await;
    app.sign_in_admin().await;
    app
}

fn soft() -> SoftAuthenticator {
    SoftAuthenticator::new(RP_ID, ORIGIN)
}

/// A tenant whose ceiling forces 2FA, with one user `name`.
async fn forced_user(app: &TestApp, tenant: &str, name: &str) -> User {
    let t = forced_tenant(app, tenant).await;
    create_user(app, &t.id, name, None).await
}

/// The ceremonies: where each starts and where the browser's answer goes.
const ENROL: (&str, &str) = ("/api/auth/enroll/passkey", "/api/auth/enroll/passkey/confirm");
const SECOND_FACTOR: (&str, &str) = ("/api/auth/sign-in/passkey/options", "/api/auth/sign-in/passkey");
const PASSWORDLESS: (&str, &str) = ("/api/auth/passkey/options", "/api/auth/passkey");
const ADD: (&str, &str) = ("/api/account/passkeys", "/api/account/passkeys/confirm");
const REAUTHENTICATE: (&str, &str) =
    ("/api/account/reauthenticate/passkey/options", "/api/account/reauthenticate/passkey");

/// One WebAuthn ceremony through `client`: the options from `start` (sent `body`), the
/// authenticator's answer (a new credential for creation options, else an assertion),
/// posted to `finish`.
async fn ceremony(client: &Client, key: &mut SoftAuthenticator, (start, finish): (&str, &str), body: Value) -> Resp {
    let options = client.post_json(start, &body).await.assert_status(StatusCode::OK).json();
    let credential = if options["options"]["publicKey"]["user"].is_object() {
        key.register(&options["options"])
    } else {
        key.assert(&options["options"])
    };
    client.post_json(finish, &json!({ "challenge_id": options["challenge_id"], "credential": credential })).await
}

/// Password step, then a passkey registered at the enrolment it requires; `client` ends
/// signed in. Returns the sign-in answer.
async fn enrol_passkey(client: &Client, key: &mut SoftAuthenticator, tenant: &str, name: &str) -> Value {
    let step = password_step(client, tenant, name, "requires_enrollment").await;
    assert!(step["enrollable"].as_array().unwrap().contains(&json!("passkey")), "{step}");
    assert_signed_in(&ceremony(client, key, ENROL, json!({ "name": "Laptop" })).await)
}

/// Password, then the passkey as second factor.
async fn second_factor_with(client: &Client, key: &mut SoftAuthenticator, tenant: &str, name: &str) -> Resp {
    let step = password_step(client, tenant, name, "requires_two_factor").await;
    assert!(step["providers"].as_array().unwrap().iter().any(|p| p["provider"] == "passkey"), "{step}");
    ceremony(client, key, SECOND_FACTOR, json!({})).await
}

/// A passwordless sign-in's options: a challenge id and what the browser gets.
async fn discover(client: &Client) -> Value {
    client.post_json("/api/auth/passkey/options", &json!({})).await.assert_status(StatusCode::OK).json()
}

async fn passwordless(client: &Client, key: &mut SoftAuthenticator) -> Resp {
    ceremony(client, key, PASSWORDLESS, json!({})).await
}

/// The session `client` is signed in with, as its account page lists it.
async fn current_session(client: &Client) -> Value {
    let sessions = client.get("/api/account/sessions").await.assert_status(StatusCode::OK).json();
    sessions.as_array().unwrap().iter().find(|s| s["current"] == true).cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_passkey_enrolled_at_sign_in_is_a_second_factor_and_a_passwordless_sign_in() {
    let app = passkey_app(Options::default()).await;
    let ada = forced_user(&app, "acme", "ada").await;
    let mut key = soft();
    let client = app.new_client();
    let body = enrol_passkey(&client, &mut key, "acme", "ada").await;
    assert_eq!(body["recovery_codes"].as_array().map(Vec::len), Some(10), "first factor: {body}");
    let account = client.get("/api/account").await.assert_status(StatusCode::OK).json();
    let passkeys = account["factors"]["passkeys"].as_array().unwrap();
    assert_eq!(passkeys.len(), 1, "{account}");
    assert_eq!(passkeys[0]["name"], "Laptop");
    assert_eq!(passkeys[0]["aaguid"], "00000000-0000-0000-0000-000000000000");

    // As the second factor after the password.
    let second = app.new_client();
    assert_signed_in(&second_factor_with(&second, &mut key, "acme", "ada").await);
    let current = current_session(&second).await;
    assert_eq!(current["methods"], "pwd+passkey", "{current}");

    // Passwordless: the passkey names the user, no password at all. The browser is asked
    // to offer it in the user name field's autofill.
    let third = app.new_client();
    let options = discover(&third).await;
    assert_eq!(options["options"]["mediation"], "conditional", "{options}");
    let resp = passwordless(&third, &mut key).await;
    let body = assert_signed_in(&resp);
    assert_eq!(body["user"]["username"], "ada", "{body}");
    let current = current_session(&third).await;
    assert_eq!(current["methods"], "passkey", "no password: {current}");

    // The admin sees the passkey among the user's factors, as phishing resistant.
    let user = app.get(&format!("/api/users/{}", ada.id)).await.assert_status(StatusCode::OK).json();
    assert_eq!(user["factors"], json!([{ "provider": "passkey", "strength": "phishing_resistant" }]), "{user}");
    // The signature counter moved with each use.
    assert_eq!(key.counter, 3);
}

#[tokio::test]
async fn a_challenge_is_answered_once_even_by_parallel_requests() {
    let app = passkey_app(Options::default()).await;
    forced_user(&app, "acme", "ada").await;
    let mut key = soft();
    enrol_passkey(&app.new_client(), &mut key, "acme", "ada").await;
    let options = discover(&app.new_client()).await;
    let body = json!({ "challenge_id": options["challenge_id"], "credential": key.assert(&options["options"]) });
    // Eight browsers released at once with the same answer (another node's, say).
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(8));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (client, barrier, body) = (app.new_client(), barrier.clone(), body.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            client.post_json("/api/auth/passkey", &body).await
        });
    }
    let answers = tasks.join_all().await;
    let won = answers.iter().filter(|r| r.status == StatusCode::OK).count();
    assert_eq!(won, 1, "{:?}", answers.iter().map(|r| (r.status, r.text())).collect::<Vec<_>>());
    for r in answers.iter().filter(|r| r.status != StatusCode::OK) {
        r.assert_error(StatusCode::UNAUTHORIZED, "passkey_refused");
    }
    // And later, the same answer again: still refused.
    app.new_client()
        .post_json("/api/auth/passkey", &body)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "passkey_refused");
}

#[tokio::test]
async fn a_cloned_authenticator_is_refused_and_audited() {
    let app = passkey_app(Options::default()).await;
    forced_user(&app, "acme", "ada").await;
    let mut key = soft();
    enrol_passkey(&app.new_client(), &mut key, "acme", "ada").await;
    let mut clone = key.clone();
    assert_signed_in(&passwordless(&app.new_client(), &mut key).await);
    assert_signed_in(&passwordless(&app.new_client(), &mut key).await);
    // The copy's counter is behind: it signs with a value the server has seen.
    passwordless(&app.new_client(), &mut clone).await.assert_error(StatusCode::UNAUTHORIZED, "passkey_refused");
    let events = app.audit("&action=passkey.counter_regression").await;
    assert!(!events.is_empty(), "no audit of the regression");
    // The genuine authenticator still works.
    assert_signed_in(&passwordless(&app.new_client(), &mut key).await);
}

#[tokio::test]
async fn phishing_origins_missing_user_verification_and_foreign_keys_are_refused() {
    let app = passkey_app(Options::default()).await;
    forced_user(&app, "acme", "ada").await;
    let mut key = soft();
    enrol_passkey(&app.new_client(), &mut key, "acme", "ada").await;

    // A look-alike site relaying the challenge: the browser writes its own origin.
    let mut phished = key.clone();
    phished.origin = "https://login-acme.example".to_owned();
    passwordless(&app.new_client(), &mut phished).await.assert_error(StatusCode::UNAUTHORIZED, "passkey_refused");

    // The authenticator did not verify the user: presence alone is not a passkey.
    let mut lazy = key.clone();
    lazy.counter += 10;
    lazy.verifies_user = false;
    passwordless(&app.new_client(), &mut lazy).await.assert_error(StatusCode::UNAUTHORIZED, "passkey_refused");

    // A key nobody registered, claiming the user's handle.
    let mut stranger = soft();
    stranger.user_handle = key.user_handle.clone();
    passwordless(&app.new_client(), &mut stranger).await.assert_error(StatusCode::UNAUTHORIZED, "passkey_refused");

    // A body that is not a credential at all: the client's mistake, not a 500.
    let options = discover(&app.new_client()).await;
    app.new_client()
        .post_json("/api/auth/passkey", &json!({ "challenge_id": options["challenge_id"], "credential": {"id": 1} }))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_field");
    // Nothing of the above signed anyone in, and the real key still does.
    key.counter = key.counter.max(lazy.counter);
    assert_signed_in(&passwordless(&app.new_client(), &mut key).await);
}

#[tokio::test]
async fn a_challenge_is_bound_to_its_sign_in() {
    let app = passkey_app(Options::default()).await;
    forced_user(&app, "acme", "ada").await;
    let t = app.create_tenant("globex").await;
    app.set_feature(&t.id, "forced").await;
    create_user(&app, &t.id, "bob", None).await;
    let mut ada = soft();
    enrol_passkey(&app.new_client(), &mut ada, "acme", "ada").await;
    let mut bob = soft();
    enrol_passkey(&app.new_client(), &mut bob, "globex", "bob").await;
    // Bob's pending sign-in, answered with Ada's passkey over Bob's challenge.
    let client = app.new_client();
    password_step(&client, "globex", "bob", "requires_two_factor").await;
    ceremony(&client, &mut ada, SECOND_FACTOR, json!({}))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "passkey_refused");
    // Ada's passwordless challenge cannot finish Bob's second factor either.
    let other = discover(&app.new_client()).await;
    let credential = bob.assert(&other["options"]);
    client
        .post_json(
            "/api/auth/sign-in/passkey",
            &json!({ "challenge_id": other["challenge_id"], "credential": credential }),
        )
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "passkey_refused");
}

#[tokio::test]
async fn passkeys_on_the_account_page_need_fresh_reauthentication_and_keep_the_last_factor() {
    let app = passkey_app(Options::default()).await;
    forced_user(&app, "acme", "ada").await;
    let client = app.new_client();
    let enrolled = enrol_authenticator(&app, &client, "acme", "ada").await;
    // Long after the enrolment: the session is no longer fresh.
    app.advance_minutes(30);
    client
        .post_json("/api/account/passkeys", &json!({ "name": "Phone" }))
        .await
        .assert_error(StatusCode::FORBIDDEN, "reauthentication_required");
    reauthenticate(&app, &client, &enrolled.secret).await;
    client
        .post_json("/api/account/passkeys", &json!({ "name": " " }))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_field");
    let mut key = soft();
    let added = ceremony(&client, &mut key, ADD, json!({ "name": "Phone" })).await.assert_status(StatusCode::OK).json();
    assert_eq!(added["recovery_codes"].as_array().map(Vec::len), Some(0), "not the first factor: {added}");
    // The passkey is now the strongest factor: a session made fresh by an authenticator
    // code no longer reaches changes.
    client
        .post_json("/api/account/passkeys", &json!({ "name": "Phone again" }))
        .await
        .assert_error(StatusCode::FORBIDDEN, "reauthentication_required");

    let list = client.get("/api/account/passkeys").await.assert_status(StatusCode::OK).json();
    let id = list[0]["id"].as_str().unwrap().to_owned();
    let renamed = client
        .patch_json(&format!("/api/account/passkeys/{id}"), &json!({ "name": "Work phone" }))
        .await
        .assert_status(StatusCode::OK)
        .json();
    assert_eq!(renamed["name"], "Work phone");

    // Adding a passkey (the strongest factor) means the next change needs a passkey.
    client.delete("/api/account/authenticator").await.assert_error(StatusCode::FORBIDDEN, "reauthentication_required");
    let session = app.new_client();
    assert_signed_in(&second_factor_with(&session, &mut key, "acme", "ada").await);
    // The same credential is excluded from a new registration.
    let again = session.post_json("/api/account/passkeys", &json!({ "name": "Phone again" })).await.json();
    let excluded = again["options"]["publicKey"]["excludeCredentials"].as_array().map(Vec::len);
    assert_eq!(excluded, Some(1), "{again}");
    // A passkey id that is not the user's is unknown here.
    session
        .delete("/api/account/passkeys/00000000-0000-7000-8000-000000000000")
        .await
        .assert_status(StatusCode::NOT_FOUND);
    session.delete("/api/account/authenticator").await.assert_status(StatusCode::NO_CONTENT);
    // Now the passkey is the last factor under a forced policy: it stays.
    session.delete(&format!("/api/account/passkeys/{id}")).await.assert_error(StatusCode::CONFLICT, "last_factor");
    let audit = app.audit("&action=factor.added").await;
    assert!(audit.iter().any(|e| e["after"]["factor"] == "passkey"), "{audit:?}");
}

#[tokio::test]
async fn a_passkey_can_be_removed_when_another_factor_remains() {
    let app = passkey_app(Options::default()).await;
    forced_user(&app, "acme", "ada").await;
    let mut first = soft();
    enrol_passkey(&app.new_client(), &mut first, "acme", "ada").await;
    let client = app.new_client();
    assert_signed_in(&second_factor_with(&client, &mut first, "acme", "ada").await);
    let mut second = soft();
    ceremony(&client, &mut second, ADD, json!({ "name": "Spare" })).await.assert_status(StatusCode::OK);
    let list = client.get("/api/account/passkeys").await.json();
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
    let id = list[0]["id"].as_str().unwrap();
    client.delete(&format!("/api/account/passkeys/{id}")).await.assert_status(StatusCode::NO_CONTENT);
    // The removed passkey no longer signs in; the spare does.
    passwordless(&app.new_client(), &mut first).await.assert_error(StatusCode::UNAUTHORIZED, "passkey_refused");
    assert_signed_in(&passwordless(&app.new_client(), &mut second).await);
}

#[tokio::test]
async fn phishing_resistant_scopes_refuse_codes_and_send_users_without_a_passkey_to_enrolment() {
    let app = passkey_app(Options::default()).await;
    let t = forced_tenant(&app, "acme").await;
    create_user(&app, &t.id, "ada", None).await;
    let client = app.new_client();
    let enrolled = enrol_authenticator(&app, &client, "acme", "ada").await;
    // A scope that cannot meet its own floor is refused with its own code.
    let body = settings_with(json!({
        "min_strength": "phishing_resistant",
        "allowed_providers": { "authenticator": true, "email": true, "sms": true, "passkey": false }
    }));
    let err = app
        .put_json(&format!("/api/tenants/{}/settings", t.id), &body)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "strength_unreachable");
    assert_eq!(err["field"], "min_strength", "{err}");
    // The preview counts the users whose factors are too weak for the new floor.
    let preview = app
        .post_json(
            &format!("/api/tenants/{}/settings/preview", t.id),
            &json!({ "settings": settings_with(json!({ "min_strength": "phishing_resistant" })) }),
        )
        .await
        .assert_status(StatusCode::OK)
        .json();
    assert_eq!(preview["newly_short_of_strength"], 1, "{preview}");
    set_tenant_settings(&app, &t.id, json!({ "min_strength": "phishing_resistant" })).await;

    // Ada has an authenticator only: not strong enough, so she must enrol a passkey.
    let c = app.new_client();
    let step = password_step(&c, "acme", "ada", "requires_enrollment").await;
    assert_eq!(step["enrollable"], json!(["passkey"]), "{step}");
    verify(&c, "authenticator", &next_totp(&app, &enrolled.secret), false)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "sign_in_expired");
    c.post_json("/api/auth/enroll/authenticator", &json!({}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "provider_unavailable");
    let mut key = soft();
    let resp = ceremony(&c, &mut key, ENROL, json!({ "name": "Key" })).await;
    assert_signed_in(&resp);
    // From now on only the passkey is offered.
    let c2 = app.new_client();
    let step = password_step(&c2, "acme", "ada", "requires_two_factor").await;
    let offered: Vec<&Value> = step["providers"].as_array().unwrap().iter().map(|p| &p["provider"]).collect();
    assert_eq!(offered, vec![&json!("passkey")], "{step}");
    verify(&c2, "authenticator", &next_totp(&app, &enrolled.secret), false)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "provider_unavailable");
    let policy = app.policy(resp.json()["user"]["id"].as_str().unwrap()).await;
    assert!(
        policy["trace"].to_string().contains("The scope accepts only factors of strength phishing_resistant"),
        "{policy}"
    );
}

#[tokio::test]
async fn a_recovery_code_under_phishing_resistant_leads_only_to_a_new_passkey() {
    let app = passkey_app(Options::default()).await;
    let t = forced_tenant(&app, "acme").await;
    create_user(&app, &t.id, "ada", None).await;
    set_tenant_settings(&app, &t.id, json!({ "min_strength": "phishing_resistant" })).await;
    let mut lost = soft();
    let body = enrol_passkey(&app.new_client(), &mut lost, "acme", "ada").await;
    let code = body["recovery_codes"][0].as_str().unwrap().to_owned();
    // The passkey is lost; the recovery code opens only the enrolment of a new one.
    let c = app.new_client();
    password_step(&c, "acme", "ada", "requires_two_factor").await;
    let step = verify(&c, "recovery_code", &code, false).await.assert_status(StatusCode::OK).json();
    assert_eq!(step["status"], "requires_enrollment", "{step}");
    assert_eq!(step["enrollable"], json!(["passkey"]), "{step}");
    assert!(c.me().await.status == StatusCode::UNAUTHORIZED, "no session yet");
    c.post_json("/api/auth/enroll/postpone", &json!({})).await.assert_error(StatusCode::CONFLICT, "grace_over");
    let mut new_key = soft();
    assert_signed_in(&ceremony(&c, &mut new_key, ENROL, json!({ "name": "New key" })).await);
    // The code was spent.
    let c2 = app.new_client();
    password_step(&c2, "acme", "ada", "requires_two_factor").await;
    let again = verify(&c2, "recovery_code", &code, false).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED, "{}", again.text());
}

#[tokio::test]
async fn a_remembered_browser_skips_only_where_its_strength_still_suffices() {
    let app = passkey_app(Options::default()).await;
    let t = forced_tenant(&app, "acme").await;
    create_user(&app, &t.id, "ada", None).await;
    let client = app.new_client();
    let enrolled = enrol_authenticator(&app, &client, "acme", "ada").await;
    // Remembered after an authenticator code (strength `app`).
    let resp = sign_in_with_totp(&app, &client, "acme", "ada", &enrolled.secret, true).await;
    assert_signed_in(&resp);
    assert!(cookie_set(&resp, REMEMBER_COOKIE).is_some());
    client.post_json("/api/auth/sign-out", &json!({})).await;
    password_step(&client, "acme", "ada", "signed_in").await;
    client.post_json("/api/auth/sign-out", &json!({})).await;
    // A floor above `app`: the browser no longer skips the second factor.
    set_tenant_settings(&app, &t.id, json!({ "min_strength": "phishing_resistant" })).await;
    password_step(&client, "acme", "ada", "requires_enrollment").await;
}

#[tokio::test]
async fn passkeys_need_a_usable_public_url() {
    // No public_url: the development fallback is an IP address, which cannot be a
    // relying party. Passkeys are off, and say so.
    let app = admin_app(Options::default()).await;
    app.new_client()
        .post_json("/api/auth/passkey/options", &json!({}))
        .await
        .assert_error(StatusCode::CONFLICT, "passkeys_unavailable");
    let t = forced_tenant(&app, "acme").await;
    create_user(&app, &t.id, "ada", None).await;
    let step = password_step(&app.new_client(), "acme", "ada", "requires_enrollment").await;
    assert!(!step["enrollable"].as_array().unwrap().contains(&json!("passkey")), "{step}");
    // Plain HTTP on a real host with Secure cookies: inconsistent, refused at start.
    let err = TestApp::try_spawn_configured(Options { cookie_secure: true, ..Options::default() }, |c| {
        c.public_url = Some("http://sign-in.example.test".to_owned());
    })
    .await
    .expect_err("must not start");
    assert!(format!("{err:#}").contains("cookie_secure"), "{err:#}");
}

#[tokio::test]
async fn an_aaguid_allow_list_refuses_other_authenticator_models() {
    let app = passkey_app(Options::default()).await;
    let t = forced_tenant(&app, "acme").await;
    create_user(&app, &t.id, "ada", None).await;
    let allowed = "cb69481e-8ff7-4039-93ec-0a2729a154a8";
    set_tenant_settings(&app, &t.id, json!({ "passkey_aaguids": [allowed] })).await;
    app.put_json(
        &format!("/api/tenants/{}/settings", t.id),
        &settings_with(json!({ "passkey_aaguids": ["not-a-uuid"] })),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "invalid_field");
    let c = app.new_client();
    password_step(&c, "acme", "ada", "requires_enrollment").await;
    let mut other = soft();
    ceremony(&c, &mut other, ENROL, json!({ "name": "Key" }))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "passkey_model_not_allowed");
    let mut listed = soft();
    listed.aaguid = *uuid::Uuid::parse_str(allowed).unwrap().as_bytes();
    assert_signed_in(&ceremony(&c, &mut listed, ENROL, json!({ "name": "Key" })).await);
}

#[tokio::test]
async fn a_passkey_reauthenticates_the_session_for_sensitive_changes() {
    let app = passkey_app(Options::default()).await;
    forced_user(&app, "acme", "ada").await;
    let mut key = soft();
    let client = app.new_client();
    enrol_passkey(&client, &mut key, "acme", "ada").await;
    // Long after the sign-in, the passkey (Ada's only factor) cannot be typed as a code,
    // and a change needs a fresh session.
    app.advance_minutes(30);
    client
        .post_json(ADD.0, &json!({ "name": "Spare" }))
        .await
        .assert_error(StatusCode::FORBIDDEN, "reauthentication_required");
    client
        .post_json("/api/account/reauthenticate", &json!({ "password": PASSWORD, "method": "passkey", "code": "1" }))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "provider_unavailable");
    ceremony(&client, &mut key, REAUTHENTICATE, json!({})).await.assert_status(StatusCode::NO_CONTENT);
    let account = client.get("/api/account").await.assert_status(StatusCode::OK).json();
    assert!(account["reauthenticated_until"].is_string(), "fresh now: {account}");
    let audit = app.audit("&action=reauthentication.succeeded").await;
    assert!(audit.iter().any(|e| e["after"]["method"] == "passkey"), "{audit:?}");
    // Fresh at the passkey's strength: a second passkey may be added.
    let mut spare = soft();
    ceremony(&client, &mut spare, ADD, json!({ "name": "Spare" })).await.assert_status(StatusCode::OK);

    // The challenge is single use and bound to this session.
    let options = client.post_json(REAUTHENTICATE.0, &json!({})).await.assert_status(StatusCode::OK).json();
    let body = json!({ "challenge_id": options["challenge_id"], "credential": key.assert(&options["options"]) });
    let other = app.new_client();
    assert_signed_in(&second_factor_with(&other, &mut spare, "acme", "ada").await);
    other.post_json(REAUTHENTICATE.1, &body).await.assert_error(StatusCode::UNAUTHORIZED, "passkey_refused");
    // The other session's attempt took nothing from this one's challenge, which works once.
    client.post_json(REAUTHENTICATE.1, &body).await.assert_status(StatusCode::NO_CONTENT);
    client.post_json(REAUTHENTICATE.1, &body).await.assert_error(StatusCode::UNAUTHORIZED, "passkey_refused");
    // A copy of the key with an old counter is refused and audited.
    let mut clone = key.clone();
    clone.counter -= 1;
    ceremony(&client, &mut clone, REAUTHENTICATE, json!({}))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "passkey_refused");
    assert!(!app.audit("&action=passkey.counter_regression").await.is_empty());
    // Not signed in: nothing to reauthenticate.
    app.new_client().post_json(REAUTHENTICATE.0, &json!({})).await.assert_status(StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_user_without_a_passkey_cannot_start_a_passkey_reauthentication() {
    let app = passkey_app(Options::default()).await;
    forced_user(&app, "acme", "ada").await;
    let client = app.new_client();
    enrol_authenticator(&app, &client, "acme", "ada").await;
    client.post_json(REAUTHENTICATE.0, &json!({})).await.assert_error(StatusCode::BAD_REQUEST, "provider_unavailable");
    // Not a WebAuthn answer: the client's mistake, told as such.
    client
        .post_json(REAUTHENTICATE.1, &json!({ "challenge_id": "x", "credential": { "id": 1 } }))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_field");
}

#[tokio::test]
async fn a_passkey_is_renamed_with_a_valid_name_and_the_change_is_audited() {
    let app = passkey_app(Options::default()).await;
    forced_user(&app, "acme", "ada").await;
    let mut key = soft();
    let client = app.new_client();
    enrol_passkey(&client, &mut key, "acme", "ada").await;
    let list = client.get("/api/account/passkeys").await.assert_status(StatusCode::OK).json();
    let id = list[0]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/account/passkeys/{id}");
    for bad in [
        json!({ "name": "" }),
        json!({ "name": "   " }),
        json!({ "name": "x".repeat(65) }),
        json!({ "name": "a\u{7}b" }),
    ] {
        let err = client.patch_json(&path, &bad).await.assert_error(StatusCode::BAD_REQUEST, "invalid_field");
        assert_eq!(err["field"], "name", "{bad}: {err}");
    }
    client.patch_json(&path, &json!({})).await.assert_status(StatusCode::BAD_REQUEST);
    client.patch_json(&path, &json!({ "name": "Desk", "extra": 1 })).await.assert_status(StatusCode::BAD_REQUEST);
    let unchanged = client.get("/api/account/passkeys").await.json();
    assert_eq!(unchanged[0]["name"], "Laptop", "nothing written: {unchanged}");
    // A long name at the limit, trimmed.
    let longest = "é".repeat(64);
    let renamed =
        client.patch_json(&path, &json!({ "name": format!(" {longest} ") })).await.assert_status(StatusCode::OK).json();
    assert_eq!(renamed["name"], longest.as_str(), "{renamed}");
    assert_eq!(renamed["id"], id.as_str());
    let listed = client.get("/api/account/passkeys").await.json();
    assert_eq!(listed[0]["name"], longest.as_str(), "{listed}");
    let audit = app.audit("&action=passkey.renamed").await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["before"]["name"], "Laptop");
    assert_eq!(audit[0]["after"]["name"], longest.as_str());
    // Someone else's passkey, none at all, or a malformed id: unknown here.
    let t = app.create_tenant("globex").await;
    app.set_feature(&t.id, "forced").await;
    create_user(&app, &t.id, "bob", None).await;
    let bob = app.new_client();
    enrol_passkey(&bob, &mut soft(), "globex", "bob").await;
    bob.patch_json(&path, &json!({ "name": "Mine" })).await.assert_status(StatusCode::NOT_FOUND);
    client
        .patch_json("/api/account/passkeys/00000000-0000-7000-8000-000000000000", &json!({ "name": "Mine" }))
        .await
        .assert_status(StatusCode::NOT_FOUND);
    client
        .patch_json("/api/account/passkeys/not-an-id", &json!({ "name": "Mine" }))
        .await
        .assert_status(StatusCode::NOT_FOUND);
    let still = client.get("/api/account/passkeys").await.json();
    assert_eq!(still[0]["name"], longest.as_str(), "{still}");
    // Renaming is a label: the old name's session stays signed in, no reauthentication.
    app.advance_minutes(30);
    client.patch_json(&path, &json!({ "name": "Old laptop" })).await.assert_status(StatusCode::OK);
}

#[tokio::test]
async fn id_tokens_say_a_passkey_was_used_with_or_without_the_password() {
    let app = passkey_app(Options::default()).await;
    let t = forced_tenant(&app, "acme").await;
    create_user(&app, &t.id, "ada", None).await;
    let mut key = soft();
    enrol_passkey(&app.new_client(), &mut key, "acme", "ada").await;
    let redirect = "http://127.0.0.1:9/callback";
    let created = app
        .post_json(
            &format!("/api/tenants/{}/applications", t.id),
            &json!({ "name": "Wiki", "client_type": "confidential", "redirect_uris": [redirect],
                "allowed_scopes": ["openid"], "first_party": true }),
        )
        .await
        .assert_status(StatusCode::CREATED)
        .json();
    let client_id = created["application"]["client_id"].as_str().unwrap().to_owned();
    let secret = created["client_secret"].as_str().unwrap().to_owned();
    // The issuer is named after public_url; the same routes answer at the bound address.
    let issuer = created["application"]["issuer"].as_str().unwrap();
    let base = issuer.replace(ORIGIN, &format!("http://{}", app.running.addr));
    // RFC 8176: `hwk` for proof of possession of a key in an authenticator, `mfa` since
    // a passkey with user verification is two factors; `pwd` only when a password was typed.
    for (passwordless_sign_in, amr) in [(true, json!(["hwk", "mfa"])), (false, json!(["pwd", "hwk", "mfa"]))] {
        let browser = Client::without_redirects(app.running.addr);
        let signed_in = if passwordless_sign_in {
            passwordless(&browser, &mut key).await
        } else {
            second_factor_with(&browser, &mut key, "acme", "ada").await
        };
        assert_signed_in(&signed_in);
        let location = authorize(&browser, &base, &client_id, redirect).await;
        assert!(location.starts_with(redirect), "{location}");
        let claims = id_claims(&base, (&client_id, &secret), &location, redirect).await;
        assert_eq!(claims["amr"], amr, "{claims}");
        assert_eq!(claims["acr"], "urn:twofold:acr:2fa:phishing_resistant", "{claims}");
    }
}

/// Where the authorization request `browser` makes to `client_id` at `base` sends it.
async fn authorize(browser: &Client, base: &str, client_id: &str, redirect: &str) -> String {
    let url = format!(
        "{base}/oauth2/authorize?response_type=code&scope=openid&client_id={client_id}\
         &redirect_uri={}&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM\
         &code_challenge_method=S256&nonce=n1",
        url_encode(redirect)
    );
    let resp = browser.http.get(&url).send().await.unwrap();
    resp.headers().get("location").and_then(|l| l.to_str().ok()).unwrap_or_default().to_owned()
}

/// The code a redirect to the application carries, for tokens at the token endpoint:
/// the ID token's claims.
async fn id_claims(base: &str, (client_id, secret): (&str, &str), location: &str, redirect: &str) -> Value {
    let code = reqwest::Url::parse(location)
        .ok()
        .and_then(|u| u.query_pairs().find(|(k, _)| k == "code").map(|(_, v)| v.into_owned()))
        .unwrap_or_else(|| panic!("no code in {location}"));
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect),
        ("code_verifier", "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
    ];
    let resp =
        reqwest::Client::new().post(format!("{base}/oauth2/token")).basic_auth(client_id, Some(secret)).form(&form);
    let resp = resp.send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let tokens: Value = resp.json().await.unwrap();
    claims_of(tokens["id_token"].as_str().expect("an ID token"))
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The claims of a JWT, unverified (the OpenID tests verify signatures).
fn claims_of(jwt: &str) -> Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64url"))
        .expect("JSON claims")
}

const STEP_UP: (&str, &str) = ("/api/auth/step-up/passkey/options", "/api/auth/step-up/passkey");

/// The authorization request `browser` makes to `client_id` at `base`, parked for the
/// web app: its handle.
async fn parked(browser: &Client, base: &str, client_id: &str, redirect: &str) -> String {
    let location = authorize(browser, base, client_id, redirect).await;
    location.split("request=").nth(1).unwrap_or_else(|| panic!("not parked: {location}")).to_owned()
}

#[tokio::test]
async fn an_application_demanding_a_passkey_enrols_one_inline_then_steps_up_with_it() {
    let app = passkey_app(Options::default()).await;
    let t = app.create_tenant("acme").await;
    create_user(&app, &t.id, "ada", None).await;
    create_user(&app, &t.id, "bob", None).await;
    let redirect = "http://127.0.0.1:9/callback";
    let created = app
        .post_json(
            &format!("/api/tenants/{}/applications", t.id),
            &json!({ "name": "Vault", "client_type": "confidential", "redirect_uris": [redirect],
                "allowed_scopes": ["openid"], "first_party": true, "require_two_factor": true,
                "min_strength": "phishing_resistant", "max_age_seconds": 600 }),
        )
        .await
        .assert_status(StatusCode::CREATED)
        .json();
    let client_id = created["application"]["client_id"].as_str().unwrap().to_owned();
    let secret = created["client_secret"].as_str().unwrap().to_owned();
    let base =
        created["application"]["issuer"].as_str().unwrap().replace(ORIGIN, &format!("http://{}", app.running.addr));
    let resume = async |browser: &Client, handle: &str| {
        browser
            .post_json(&format!("/api/oidc/requests/{handle}"), &json!({}))
            .await
            .assert_status(StatusCode::OK)
            .json()
    };

    // A password-only session and no passkey: the application asks for one to be
    // enrolled, and registering it on the spot proves it.
    let browser = Client::without_redirects(app.running.addr);
    password_step(&browser, "acme", "ada", "signed_in").await;
    let handle = parked(&browser, &base, &client_id, redirect).await;
    let need = resume(&browser, &handle).await;
    assert_eq!((need["next"].as_str(), need["min_strength"].as_str()), (Some("enroll"), Some("phishing_resistant")));
    let mut key = soft();
    ceremony(&browser, &mut key, ADD, json!({ "name": "Laptop" })).await.assert_status(StatusCode::OK);
    assert_eq!(resume(&browser, &handle).await["next"], "redirect");

    // Past the application's max_age: a step-up, not a new sign-in; a typed code will
    // not do (a passkey is proven through its ceremony).
    crate::flows::advance_seconds(&app, 300);
    browser.get("/api/auth/me").await.assert_status(StatusCode::OK);
    crate::flows::advance_seconds(&app, 400);
    let handle = parked(&browser, &base, &client_id, redirect).await;
    let need = resume(&browser, &handle).await;
    assert_eq!((need["next"].as_str(), need["min_strength"].as_str()), (Some("step_up"), Some("phishing_resistant")));
    let typed = browser.post_json("/api/auth/step-up", &json!({ "method": "passkey", "code": "123456" })).await;
    assert_eq!(typed.status, StatusCode::BAD_REQUEST, "{}", typed.text());
    assert_eq!(typed.json()["error"], "provider_unavailable");

    // The attacks first. The answer is bound to this session: another session of ada's,
    // signed in with her password, cannot spend it, nor can a browser without a session.
    let options = browser.post_json(STEP_UP.0, &json!({})).await.assert_status(StatusCode::OK).json();
    let answer = json!({ "challenge_id": options["challenge_id"], "credential": key.assert(&options["options"]) });
    let other = Client::without_redirects(app.running.addr);
    password_step(&other, "acme", "ada", "signed_in").await;
    let stolen = other.post_json(STEP_UP.1, &answer).await;
    assert_eq!(stolen.status, StatusCode::UNAUTHORIZED, "{}", stolen.text());
    assert_eq!(stolen.json()["error"], "passkey_refused");
    let anonymous = Client::without_redirects(app.running.addr);
    anonymous.post_json(STEP_UP.1, &answer).await.assert_status(StatusCode::UNAUTHORIZED);
    // A user without a passkey has nothing to step up with.
    let bob = Client::without_redirects(app.running.addr);
    password_step(&bob, "acme", "bob", "signed_in").await;
    let none = bob.post_json(STEP_UP.0, &json!({})).await;
    assert_eq!((none.status, none.json()["error"].as_str()), (StatusCode::BAD_REQUEST, Some("provider_unavailable")));
    assert_eq!(resume(&browser, &handle).await["next"], "step_up");

    // The session's own answer steps up, once.
    browser.post_json(STEP_UP.1, &answer).await.assert_status(StatusCode::NO_CONTENT);
    let stepped_at = crate::flows::now_secs(&app);
    browser.post_json(STEP_UP.1, &answer).await.assert_status(StatusCode::UNAUTHORIZED);
    let done = resume(&browser, &handle).await;
    let location = done["redirect_to"].as_str().expect("redirect_to");
    let claims = id_claims(&base, (&client_id, &secret), location, redirect).await;
    assert_eq!(claims["acr"], "urn:twofold:acr:2fa:phishing_resistant", "{claims}");
    assert_eq!(claims["amr"], json!(["pwd", "hwk", "mfa"]), "{claims}");
    assert_eq!(claims["auth_time"], json!(stepped_at), "{claims}");
    // The step-up is audited with its method, and opened no sensitive account change.
    let audit = app.get("/api/audit?action=step_up.succeeded").await.assert_status(StatusCode::OK).json();
    assert!(audit.to_string().contains("\"passkey\""), "{audit}");
    let (status, body) = {
        let r = browser.post_json("/api/account/recovery-codes", &json!({})).await;
        (r.status, r.json())
    };
    assert_eq!((status, body["error"].as_str()), (StatusCode::FORBIDDEN, Some("reauthentication_required")));
}

#[tokio::test]
async fn a_scope_that_no_longer_allows_passkeys_refuses_a_passkey_step_up() {
    let app = passkey_app(Options::default()).await;
    let t = forced_tenant(&app, "acme").await;
    create_user(&app, &t.id, "ada", None).await;
    let mut key = soft();
    let browser = Client::new(app.running.addr);
    enrol_passkey(&browser, &mut key, "acme", "ada").await;
    // The admin takes passkeys away while ada is signed in with one.
    set_tenant_settings(
        &app,
        &t.id,
        json!({ "allowed_providers": { "authenticator": true, "email": true, "sms": true, "passkey": false } }),
    )
    .await;
    let options = browser.post_json(STEP_UP.0, &json!({})).await.assert_status(StatusCode::OK).json();
    let answer = json!({ "challenge_id": options["challenge_id"], "credential": key.assert(&options["options"]) });
    let refused = browser.post_json(STEP_UP.1, &answer).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text());
    assert_eq!(refused.json()["error"], "provider_unavailable");
}
