//! SMS pumping and its kin: hourly caps on texts and emails per scope (the host or one
//! tenant) and over the whole service, so that a tenant admin who creates many users,
//! each sending texts to premium-rate numbers, runs into a wall; the usage a tenant
//! admin can watch; and the countries a scope lets texts go to.
//!
//! Texts go to a Twilio stand-in and emails to a real SMTP server, so "nothing more was
//! sent" is counted where the messages arrive. Every test runs on a manual clock.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Barrier;

use crate::flows::{
    Sms, admin_app, advance_seconds, assert_factor_error, create_user, forced_tenant, mail_app, now_ms, password_step,
    set_tenant_settings, sms_app,
};
use crate::helpers::{Client, Limits, Options, PASSWORD, TestApp};

const HOUR_MS: i64 = 3_600_000;

/// Seconds until the next clock hour of the app's clock, as a `Retry-After` says it.
fn seconds_to_next_hour(app: &TestApp) -> u64 {
    let now = now_ms(app);
    let left = HOUR_MS - now.rem_euclid(HOUR_MS);
    u64::try_from((left + 999) / 1000).unwrap()
}

/// Insists on the 429 `rate_limited` shape and returns its `Retry-After` seconds.
#[track_caller]
fn assert_limited(resp: &crate::helpers::Resp) -> u64 {
    let body = assert_factor_error(resp, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    body["retry_after_seconds"].as_u64().expect("retry_after_seconds")
}

/// `count` users of `tenant_id` made by its admin, each signed in on a client of
/// their own. Plain users, as a tenant admin can create any number of.
async fn users_of(
    app: &TestApp,
    admin: &Client,
    tenant: &str,
    tenant_id: &str,
    prefix: &str,
    count: usize,
) -> Vec<Client> {
    let mut out = Vec::new();
    for i in 0..count {
        let name = format!("{prefix}{i}");
        admin
            .post_json(&format!("/api/tenants/{tenant_id}/users"), &json!({ "username": name, "password": PASSWORD }))
            .await
            .assert_status(StatusCode::CREATED);
        let c = app.new_client();
        c.sign_in_ok(Some(tenant), &name, PASSWORD).await;
        out.push(c);
    }
    out
}

/// A tenant with an admin signed in on a new client.
async fn tenant_with_admin(app: &TestApp, name: &str) -> (String, Client) {
    let (t, _, admin) = app.tenant_with_admin(name, "boss").await;
    (t.id, admin)
}

fn premium(i: usize) -> String {
    // +882: international networks, a favourite of pumping schemes.
    format!("+88216{:06}", 100 + i)
}

fn texts_to(sms: &Sms, prefix: &str) -> usize {
    sms.all().iter().filter(|m| m.to.starts_with(prefix)).count()
}

async fn usage(client: &Client, path: &str) -> Value {
    client.get(path).await.assert_status(StatusCode::OK).json()
}

#[tokio::test]
async fn a_tenant_admin_with_many_users_cannot_pump_texts_past_the_tenant_cap() {
    let limits = Limits { sms_per_tenant: Some(3), ..Limits::default() };
    let (app, sms) = sms_app(Options { limits, ..Options::default() }).await;
    let (acme, boss) = tenant_with_admin(&app, "acme").await;
    let users = users_of(&app, &boss, "acme", &acme, "u", 5).await;

    // Each of the tenant's users sets up a premium-rate number: every user and every
    // number is new, so no per-user or per-number cap stands in the way.
    for (i, user) in users.iter().enumerate() {
        let resp = user.put_json("/api/account/phone", &json!({ "phone": premium(i) })).await;
        if i < 3 {
            resp.assert_status(StatusCode::OK);
        } else {
            assert_eq!(assert_limited(&resp), seconds_to_next_hour(&app), "user {i}");
            // Refused before anything was stored.
            let account = user.get("/api/account").await.assert_status(StatusCode::OK).json();
            assert_eq!(account["factors"]["pending_phone"], Value::Null, "{account}");
        }
    }
    assert_eq!(texts_to(&sms, "+88216"), 3, "{:?}", sms.all());

    // Another tenant's users are not held back by acme's use.
    let (globex, globex_boss) = tenant_with_admin(&app, "globex").await;
    let other = users_of(&app, &globex_boss, "globex", &globex, "g", 1).await;
    other[0].put_json("/api/account/phone", &json!({ "phone": "+14155550100" })).await.assert_status(StatusCode::OK);

    // The tenant admin sees what happened; only a host admin sees every scope's total.
    let path = format!("/api/tenants/{acme}/message-usage");
    let seen = usage(&boss, &path).await;
    assert_eq!(seen["sms"]["sent_this_hour"], 3, "{seen}");
    assert_eq!(seen["sms"]["cap_per_hour"], 3, "{seen}");
    assert_eq!(seen["sms"]["sender"], "configured", "{seen}");
    assert_eq!(seen["email"]["sent_this_hour"], 0, "{seen}");
    assert!(seen["sms"].get("all_scopes_sent_this_hour").is_none(), "{seen}");
    let seen = usage(&app.client, &path).await;
    assert_eq!(seen["sms"]["sent_this_hour"], 3, "{seen}");
    assert_eq!(seen["sms"]["all_scopes_sent_this_hour"], 4, "{seen}");
    assert_eq!(seen["sms"]["all_scopes_cap_per_hour"], 1000, "{seen}");
    // Another tenant's admin cannot read it.
    globex_boss.get(&path).await.assert_error(StatusCode::FORBIDDEN, "forbidden");

    // The next clock hour starts a new count.
    advance_seconds(&app, i64::try_from(seconds_to_next_hour(&app)).unwrap());
    // Minutes later a phone change needs a fresh password again.
    users[3]
        .post_json("/api/account/reauthenticate", &json!({ "password": PASSWORD }))
        .await
        .assert_status(StatusCode::NO_CONTENT);
    users[3].put_json("/api/account/phone", &json!({ "phone": premium(3) })).await.assert_status(StatusCode::OK);
    assert_eq!(texts_to(&sms, "+88216"), 4);
    assert_eq!(usage(&boss, &path).await["sms"]["sent_this_hour"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sends_at_the_same_moment_cannot_overshoot_the_cap() {
    const CAP: usize = 3;
    let limits = Limits { sms_per_tenant: Some(CAP as u32), ..Limits::default() };
    let (app, sms) = sms_app(Options { limits, ..Options::default() }).await;
    let (acme, boss) = tenant_with_admin(&app, "acme").await;
    let users = users_of(&app, &boss, "acme", &acme, "u", 10).await;

    let barrier = Arc::new(Barrier::new(users.len()));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, user) in users.into_iter().enumerate() {
        let barrier = barrier.clone();
        tasks.spawn(async move {
            barrier.wait().await;
            user.put_json("/api/account/phone", &json!({ "phone": premium(i) })).await
        });
    }
    let answers = tasks.join_all().await;
    let sent = answers.iter().filter(|a| a.status == StatusCode::OK).count();
    for refused in answers.iter().filter(|a| a.status != StatusCode::OK) {
        assert_limited(refused);
    }
    assert_eq!(sent, CAP, "{:?}", answers.iter().map(|a| a.status).collect::<Vec<_>>());
    assert_eq!(texts_to(&sms, "+88216"), CAP);
    let seen = usage(&boss, &format!("/api/tenants/{acme}/message-usage")).await;
    assert_eq!(seen["sms"]["sent_this_hour"], CAP, "{seen}");
}

#[tokio::test]
async fn the_cap_holds_on_every_path_that_sends_a_text() {
    let limits = Limits { sms_per_tenant: Some(2), ..Limits::default() };
    let (app, sms) = sms_app(Options { limits, ..Options::default() }).await;
    let t = forced_tenant(&app, "acme").await;
    for name in ["a", "b", "c"] {
        create_user(&app, &t.id, name, None).await;
    }
    // Two enrolments by text use up the hour (a confirms hers; confirming sends nothing)...
    for (name, phone) in [("a", "+14155550101"), ("b", "+14155550102")] {
        let c = app.new_client();
        password_step(&c, "acme", name, "requires_enrollment").await;
        c.post_json("/api/auth/enroll/phone", &json!({ "phone": phone })).await.assert_status(StatusCode::OK);
        if name == "a" {
            let code = sms.last_code_to(phone);
            let resp = c.post_json("/api/auth/enroll/phone/confirm", &json!({ "code": code })).await;
            assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
        }
    }
    // ...so a third enrolment is refused, and so is a sign-in code for a.
    let c = app.new_client();
    password_step(&c, "acme", "c", "requires_enrollment").await;
    assert_limited(&c.post_json("/api/auth/enroll/phone", &json!({ "phone": "+14155550103" })).await);
    let a = app.new_client();
    password_step(&a, "acme", "a", "requires_two_factor").await;
    assert_limited(&a.post_json("/api/auth/sign-in/send-code", &json!({ "method": "sms" })).await);
    assert_eq!(sms.all().len(), 2);
}

#[tokio::test]
async fn the_overall_cap_holds_across_tenants_and_the_host() {
    let limits = Limits { sms_overall: Some(2), ..Limits::default() };
    let (app, sms) = sms_app(Options { limits, ..Options::default() }).await;
    let (acme, acme_boss) = tenant_with_admin(&app, "acme").await;
    let (globex, globex_boss) = tenant_with_admin(&app, "globex").await;
    let a = users_of(&app, &acme_boss, "acme", &acme, "a", 1).await;
    let g = users_of(&app, &globex_boss, "globex", &globex, "g", 1).await;
    a[0].put_json("/api/account/phone", &json!({ "phone": "+14155550101" })).await.assert_status(StatusCode::OK);
    g[0].put_json("/api/account/phone", &json!({ "phone": "+14155550102" })).await.assert_status(StatusCode::OK);
    // The host admin's own text is over the service-wide cap.
    assert_limited(&app.put_json("/api/account/phone", &json!({ "phone": "+14155550103" })).await);
    assert_eq!(sms.all().len(), 2);
    let host = usage(&app.client, "/api/host/message-usage").await;
    assert_eq!(host["sms"]["sent_this_hour"], 0, "{host}");
    assert_eq!(host["sms"]["all_scopes_sent_this_hour"], 2, "{host}");
    assert_eq!(host["sms"]["all_scopes_cap_per_hour"], 2, "{host}");
}

#[tokio::test]
async fn emails_are_capped_per_tenant_too() {
    let limits = Limits { email_per_tenant: Some(2), ..Limits::default() };
    let (app, mut mail) = mail_app(Options { limits, ..Options::default() }).await;
    let (acme, boss) = tenant_with_admin(&app, "acme").await;
    let users = users_of(&app, &boss, "acme", &acme, "u", 3).await;
    for (i, user) in users.iter().enumerate() {
        let resp = user.put_json("/api/account/email", &json!({ "email": format!("u{i}@example.test") })).await;
        if i < 2 {
            resp.assert_status(StatusCode::OK);
        } else {
            assert_limited(&resp);
        }
    }
    assert_eq!(mail.next_messages().await.len(), 2);
    let seen = usage(&boss, &format!("/api/tenants/{acme}/message-usage")).await;
    assert_eq!(seen["email"]["sent_this_hour"], 2, "{seen}");
    assert_eq!(seen["email"]["cap_per_hour"], 2, "{seen}");
    assert_eq!(seen["sms"]["sender"], "not_configured", "{seen}");
}

// ---------------------------------------------------------------- allowed countries

#[tokio::test]
async fn texts_go_only_to_the_countries_a_tenant_allows() {
    let (app, sms) = sms_app(Options::default()).await;
    let t = forced_tenant(&app, "acme").await;
    create_user(&app, &t.id, "carol", None).await;
    create_user(&app, &t.id, "erin", None).await;

    // Erin enrols a US number while every country is allowed.
    let erin = app.new_client();
    password_step(&erin, "acme", "erin", "requires_enrollment").await;
    erin.post_json("/api/auth/enroll/phone", &json!({ "phone": "+1 415 555 0100" }))
        .await
        .assert_status(StatusCode::OK);
    let code = sms.last_code_to("+14155550100");
    let resp = erin.post_json("/api/auth/enroll/phone/confirm", &json!({ "code": code })).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());

    // Then the tenant allows the United Kingdom only.
    set_tenant_settings(&app, &t.id, json!({ "sms_allowed_country_codes": ["44"] })).await;
    let sent_before = sms.all().len();

    // Enrolment refuses a US number with a clear error, and takes a UK one.
    let carol = app.new_client();
    password_step(&carol, "acme", "carol", "requires_enrollment").await;
    let refused = carol.post_json("/api/auth/enroll/phone", &json!({ "phone": "+14155550199" })).await;
    let body = refused.assert_error(StatusCode::BAD_REQUEST, "phone_country_not_allowed");
    assert_eq!(body["field"], "phone", "{body}");
    assert!(body["message"].as_str().unwrap().contains("+44"), "{body}");
    carol.post_json("/api/auth/enroll/phone", &json!({ "phone": "+447700900123" })).await.assert_status(StatusCode::OK);

    // Erin's confirmed US number no longer gets sign-in codes.
    erin.post_json("/api/auth/sign-out", &json!({})).await.assert_status(StatusCode::NO_CONTENT);
    let body = password_step(&erin, "acme", "erin", "requires_two_factor").await;
    assert_eq!(body["providers"][0]["provider"], "sms", "{body}");
    let refused = erin.post_json("/api/auth/sign-in/send-code", &json!({ "method": "sms" })).await;
    refused.assert_error(StatusCode::BAD_REQUEST, "phone_country_not_allowed");

    // One text went out since the change: carol's, to the UK.
    let sent: Vec<String> = sms.all().into_iter().skip(sent_before).map(|m| m.to).collect();
    assert_eq!(sent, ["+447700900123"]);
}

#[tokio::test]
async fn the_account_page_refuses_numbers_outside_the_allowed_countries() {
    let (app, sms) = sms_app(Options::default()).await;
    let (acme, boss) = tenant_with_admin(&app, "acme").await;
    let settings = json!({
        "behaviour": "optional", "users_can_change": true, "remember_browser": true,
        "remember_browser_days": 14, "enrollment_grace_days": 0,
        "allowed_providers": { "authenticator": true, "email": true, "sms": true },
        "sms_allowed_country_codes": ["1", "44"]
    });
    let view = boss.put_json(&format!("/api/tenants/{acme}/settings"), &settings).await.assert_status(StatusCode::OK);
    assert_eq!(view.json()["settings"]["sms_allowed_country_codes"], json!(["1", "44"]));
    let users = users_of(&app, &boss, "acme", &acme, "u", 1).await;
    let refused = users[0].put_json("/api/account/phone", &json!({ "phone": "+88216000100" })).await;
    let body = refused.assert_error(StatusCode::BAD_REQUEST, "phone_country_not_allowed");
    assert_eq!(body["field"], "phone");
    users[0].put_json("/api/account/phone", &json!({ "phone": "+447700900123" })).await.assert_status(StatusCode::OK);
    assert_eq!(sms.all().iter().map(|m| m.to.as_str()).collect::<Vec<_>>(), ["+447700900123"]);
    // The host's own users are not bound by acme's list.
    app.put_json("/api/account/phone", &json!({ "phone": "+88216000101" })).await.assert_status(StatusCode::OK);
}

#[tokio::test]
async fn allowed_countries_must_be_calling_codes() {
    let app = admin_app(Options::default()).await;
    let t = app.create_tenant("acme").await;
    let base = json!({
        "behaviour": "optional", "users_can_change": true, "remember_browser": true,
        "remember_browser_days": 14, "enrollment_grace_days": 0,
        "allowed_providers": { "authenticator": true, "email": true, "sms": true }
    });
    for bad in [json!(["4"]), json!(["+44"]), json!(["044"]), json!(["44", "44"]), json!(["1234"]), json!([""])] {
        let mut s = base.clone();
        s["sms_allowed_country_codes"] = bad.clone();
        let resp = app.put_json(&format!("/api/tenants/{}/settings", t.id), &s).await;
        let body = resp.assert_error(StatusCode::BAD_REQUEST, "invalid_field");
        assert_eq!(body["field"], "sms_allowed_country_codes", "{bad}: {body}");
        app.put_json("/api/host/settings", &s).await.assert_error(StatusCode::BAD_REQUEST, "invalid_field");
    }
    let too_many: Vec<String> = (200..=999).map(|n| n.to_string()).collect();
    let mut s = base.clone();
    s["sms_allowed_country_codes"] = json!(too_many);
    app.put_json("/api/host/settings", &s).await.assert_error(StatusCode::BAD_REQUEST, "invalid_field");
    // Nothing was stored; absent means every country.
    let stored = app.tenant_settings(&t.id).await;
    assert_eq!(stored["settings"]["sms_allowed_country_codes"], json!([]), "{stored}");
    let saved = app.put_json("/api/host/settings", &base).await.assert_status(StatusCode::OK).json();
    assert_eq!(saved["settings"]["sms_allowed_country_codes"], json!([]), "{saved}");
}
