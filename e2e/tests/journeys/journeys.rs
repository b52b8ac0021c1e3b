//! The journeys of the web app, each in its own world (server, SMTP server, browser),
//! each saving a screenshot of every screen it passes under
//! `target/e2e-screenshots/<journey>/`.

use reqwest::Method;
use twofold_e2e::ids;

use crate::world::{ADMIN_PASSWORD, World, settings};

const PASSWORD: &str = "correct horse battery";

/// Fills in and submits the password step.
async fn password_step(w: &mut World, tenant: &str, username: &str, password: &str, shot: &str) {
    w.goto("/sign-in").await;
    w.by_id(ids::SIGNIN_FORM).await;
    w.fill(ids::SIGNIN_TENANT, tenant).await;
    w.fill(ids::SIGNIN_USERNAME, username).await;
    w.fill(ids::SIGNIN_PASSWORD, password).await;
    w.shot(shot).await;
    w.click(ids::SIGNIN_SUBMIT).await;
}

async fn sign_out(w: &mut World) {
    w.click(ids::SIGN_OUT).await;
    w.by_id(ids::SIGNIN_FORM).await;
}

/// Signs in with the authenticator, optionally remembering the browser.
async fn authenticator_step(w: &mut World, secret: &str, remember: bool) {
    w.click(ids::PROVIDER_AUTHENTICATOR).await;
    w.next_step();
    let code = w.totp(secret);
    w.fill(ids::CODE_INPUT, &code).await;
    if remember {
        w.click(ids::REMEMBER_BROWSER).await;
    }
    w.shot("second-factor").await;
    w.click(ids::VERIFY_SUBMIT).await;
}

/// Enrols an authenticator on the enrolment screen; returns its secret.
async fn enrol_authenticator(w: &mut World) -> String {
    w.click(ids::ENROLL_CHOOSE_AUTHENTICATOR).await;
    w.by_id(ids::ENROLL_QR).await;
    let secret = w.text_of(ids::ENROLL_SECRET).await.replace(' ', "");
    assert!(secret.len() >= 26, "the secret in text: {secret:?}");
    w.shot("enrol-authenticator").await;
    w.next_step();
    let code = w.totp(&secret);
    w.fill(ids::ENROLL_CODE, &code).await;
    w.click(ids::ENROLL_CONFIRM).await;
    secret
}

/// Journey 1: a host admin forces 2FA on a tenant in the Features dialog; the tenant's
/// Settings screen then shows the behaviour as fixed by the host. Each page on the way
/// names itself in the document title.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_admin_forces_two_factor_for_a_tenant() {
    let mut w = World::start("1-host-admin-forces").await;
    let api = w.api();
    api.sign_in_admin().await;
    let created = api
        .ok(Method::POST, "/api/tenants", Some(serde_json::json!({"name": "acme", "display_name": "Acme Ltd"})))
        .await;
    let acme = created["id"].as_str().unwrap_or_default().to_owned();
    let boss = api.user(&acme, "boss", PASSWORD, None).await;
    api.ok(Method::POST, &format!("/api/tenants/{acme}/admins"), Some(serde_json::json!({"user_id": boss}))).await;
    // A grace period lets the tenant admin reach Settings before enrolling.
    api.tenant_settings(&acme, settings(serde_json::json!({"enrollment_grace_days": 7}))).await;

    w.goto("/sign-in").await;
    w.wait_title("Sign in · Twofold").await;
    w.by_id(ids::SIGNIN_FORM).await;
    // A visitor who has not signed in causes no failed request: the app asks who is
    // signed in in a way that answers 200 either way.
    let failed: Vec<String> =
        w.console().await.into_iter().map(|e| e.message).filter(|m| m.contains("401") || m.contains("403")).collect();
    assert!(failed.is_empty(), "failed requests on an anonymous page load: {failed:?}");
    password_step(&mut w, "", "admin", ADMIN_PASSWORD, "host-admin-sign-in").await;
    w.by_id(ids::NAV_TENANTS).await;
    w.wait_title("Account · Twofold").await;
    // The admin's own account page speaks to them, not about "the user".
    let trace = w.wait_text(&format!("#{}", ids::POLICY_TRACE), "You are a host user").await;
    assert!(!trace.contains("the user") && !trace.contains("The user"), "{trace}");
    w.click(ids::NAV_TENANTS).await;
    w.wait_title("Tenants · Twofold").await;
    let row = w.find(&format!("[data-test=\"{}\"][data-name=\"acme\"]", ids::TENANT_ROW)).await;
    w.shot("tenants").await;
    let features = match row.find(fantoccini::Locator::Css(&format!("[data-test=\"{}\"]", ids::TENANT_FEATURES))).await
    {
        Ok(b) => b,
        Err(e) => panic!("features button: {e}"),
    };
    features.click().await.unwrap();
    w.by_id(ids::FEATURES_DIALOG).await;
    w.click(ids::FEATURES_CEILING_FORCED).await;
    w.wait_text(&format!("#{}", ids::FEATURES_PREVIEW), "1").await;
    w.shot("features-dialog").await;
    w.click(ids::FEATURES_SAVE).await;
    // The dialog closes once saved; the API now reports the ceiling.
    let mut saved = false;
    for _ in 0..50 {
        if api.ok(Method::GET, &format!("/api/tenants/{acme}/feature"), None).await["behaviour"] == "forced" {
            saved = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(saved, "the Features dialog did not save the ceiling");
    w.shot("tenants-after-save").await;
    sign_out(&mut w).await;

    password_step(&mut w, "acme", "boss", PASSWORD, "tenant-admin-sign-in").await;
    w.by_id(ids::ENROLL_GRACE).await;
    w.shot("enrolment-with-grace").await;
    w.click(ids::ENROLL_POSTPONE).await;
    w.by_id(ids::NAV_SETTINGS).await;
    w.click(ids::NAV_SETTINGS).await;
    w.wait_title("Settings · Twofold").await;
    let fixed = w.wait_text(&format!("#{}", ids::SETTINGS_BEHAVIOUR_FIXED), "host").await;
    assert!(fixed.contains("In force: Forced"), "{fixed}");
    // The tenant admin's heading names the tenant as the host's screens do.
    let heading = w.text_of_css("h1").await;
    assert_eq!(heading, "Two-factor settings for Acme Ltd");
    // The tenant's own stored choice is shown beside the ceiling, not overwritten by it.
    let stored = w.text_of(ids::SETTINGS_STORED_CHOICE).await;
    assert!(stored.contains("kept for when the host lifts the ceiling: Optional"), "{stored}");
    let optional = w.by_id(ids::SETTINGS_BEHAVIOUR_OPTIONAL).await;
    assert!(
        optional.is_selected().await.unwrap_or(false),
        "the radios show the stored choice (optional), not the ceiling"
    );
    w.shot("tenant-settings-fixed").await;
    w.close().await;
}

/// Journeys 2 and 3: a tenant user enrols an authenticator from the secret in text and
/// sees recovery codes; then signs in remembering the browser, skips the second factor
/// next time, revokes the browser and is asked again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_then_remembered_browser_then_revocation() {
    let mut w = World::start("2-3-enrol-and-remember").await;
    let api = w.api();
    api.sign_in_admin().await;
    let acme = api.tenant("acme").await;
    api.user(&acme, "bob", PASSWORD, None).await;
    api.feature(&acme, "forced").await;

    password_step(&mut w, "acme", "bob", PASSWORD, "sign-in").await;
    w.by_id(ids::ENROLL_CHOOSE_AUTHENTICATOR).await;
    w.shot("enrolment-choice").await;
    let secret = enrol_authenticator(&mut w).await;
    w.by_id(ids::RECOVERY_CODES).await;
    let codes = w.browser.find_all(fantoccini::Locator::Css(&format!("[data-test=\"{}\"]", ids::RECOVERY_CODE))).await;
    assert_eq!(codes.map(|c| c.len()).unwrap_or(0), 10, "ten recovery codes are shown");
    w.shot("recovery-codes").await;
    w.click(ids::RECOVERY_CODES_DONE).await;
    w.by_id(ids::NAV_ACCOUNT).await;
    w.shot("signed-in").await;
    sign_out(&mut w).await;

    password_step(&mut w, "acme", "bob", PASSWORD, "sign-in-again").await;
    w.by_id(ids::PROVIDER_AUTHENTICATOR).await;
    w.shot("choose-provider").await;
    authenticator_step(&mut w, &secret, true).await;
    w.by_id(ids::NAV_ACCOUNT).await;
    sign_out(&mut w).await;

    // Remembered: the password alone signs in.
    password_step(&mut w, "acme", "bob", PASSWORD, "sign-in-remembered").await;
    w.by_id(ids::NAV_ACCOUNT).await;
    assert!(w.absent(&format!("#{}", ids::CODE_INPUT)).await, "a remembered browser is not asked for a code");
    w.click(ids::NAV_ACCOUNT).await;
    let item = w.by_test(ids::BROWSER_ITEM).await;
    w.shot("account-remembered-browser").await;
    let revoke =
        item.find(fantoccini::Locator::Css(&format!("[data-test=\"{}\"]", ids::BROWSER_REVOKE))).await.unwrap();
    revoke.click().await.unwrap();
    // Destructive actions ask first: cancelling keeps the browser, confirming forgets it.
    w.by_test(ids::CONFIRM_NO).await.click().await.unwrap();
    let item = w.by_test(ids::BROWSER_ITEM).await;
    item.find(fantoccini::Locator::Css(&format!("[data-test=\"{}\"]", ids::BROWSER_REVOKE)))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    w.shot("account-forget-confirm").await;
    w.by_test(ids::CONFIRM_YES).await.click().await.unwrap();
    for _ in 0..50 {
        if w.absent(&format!("[data-test=\"{}\"]", ids::BROWSER_ITEM)).await {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(w.absent(&format!("[data-test=\"{}\"]", ids::BROWSER_ITEM)).await, "the browser was forgotten");
    w.shot("account-browser-revoked").await;
    sign_out(&mut w).await;

    password_step(&mut w, "acme", "bob", PASSWORD, "sign-in-after-revoke").await;
    w.by_id(ids::PROVIDER_AUTHENTICATOR).await;
    w.shot("asked-again").await;
    w.close().await;
}

/// Journey 4: the email code, read from the real SMTP server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_code_from_the_smtp_server() {
    let mut w = World::start("4-email-code").await;
    let api = w.api();
    api.sign_in_admin().await;
    let acme = api.tenant("acme").await;
    api.user(&acme, "carol", PASSWORD, Some("carol@example.test")).await;
    api.feature(&acme, "forced").await;

    // First sign-in: enrol by confirming the email address.
    password_step(&mut w, "acme", "carol", PASSWORD, "sign-in").await;
    w.click(ids::ENROLL_CHOOSE_EMAIL).await;
    w.shot("enrol-email").await;
    w.click(ids::ENROLL_SEND_CODE).await;
    w.by_id(ids::ENROLL_CODE).await;
    w.shot("enrol-email-sent").await;
    let code = w.smtp.wait_for_code("carol@example.test", 0).await;
    w.fill(ids::ENROLL_CODE, &code).await;
    w.shot("enrol-email-code").await;
    w.click(ids::ENROLL_CONFIRM).await;
    w.by_id(ids::RECOVERY_CODES).await;
    w.click(ids::RECOVERY_CODES_DONE).await;
    w.by_id(ids::NAV_ACCOUNT).await;
    sign_out(&mut w).await;

    // Then: sign in with an emailed code.
    password_step(&mut w, "acme", "carol", PASSWORD, "sign-in-again").await;
    w.click(ids::PROVIDER_EMAIL).await;
    w.shot("provider-email-weaker").await;
    w.click(ids::SEND_CODE).await;
    w.by_id(ids::CODE_SENT).await;
    let code = w.smtp.wait_for_code("carol@example.test", 1).await;
    w.fill(ids::CODE_INPUT, &code).await;
    w.shot("email-code-entered").await;
    w.click(ids::VERIFY_SUBMIT).await;
    w.by_id(ids::NAV_ACCOUNT).await;
    w.shot("signed-in").await;
    w.close().await;
}

/// Journey 5: a tenant admin turns "users can change" off; the user's switch
/// disappears from the Account page and the API refuses a direct attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_can_change_off_hides_the_switch() {
    let mut w = World::start("5-users-can-change").await;
    let api = w.api();
    api.sign_in_admin().await;
    let acme = api.tenant("acme").await;
    let boss = api.user(&acme, "boss", PASSWORD, None).await;
    api.ok(Method::POST, &format!("/api/tenants/{acme}/admins"), Some(serde_json::json!({"user_id": boss}))).await;
    api.user(&acme, "dave", PASSWORD, None).await;

    password_step(&mut w, "acme", "dave", PASSWORD, "dave-sign-in").await;
    w.by_id(ids::NAV_ACCOUNT).await;
    w.click(ids::NAV_ACCOUNT).await;
    w.by_id(ids::ACCOUNT_2FA_SWITCH).await;
    w.shot("account-with-switch").await;
    sign_out(&mut w).await;

    password_step(&mut w, "acme", "boss", PASSWORD, "admin-sign-in").await;
    w.by_id(ids::NAV_SETTINGS).await;
    w.click(ids::NAV_SETTINGS).await;
    w.by_id(ids::SETTINGS_USERS_CAN_CHANGE).await;
    w.click(ids::SETTINGS_USERS_CAN_CHANGE).await;
    w.shot("settings-users-cannot-change").await;
    w.click(ids::SETTINGS_SAVE).await;
    w.by_id(ids::SETTINGS_SAVED).await;
    w.shot("settings-saved").await;
    sign_out(&mut w).await;

    password_step(&mut w, "acme", "dave", PASSWORD, "dave-sign-in-again").await;
    w.by_id(ids::NAV_ACCOUNT).await;
    w.click(ids::NAV_ACCOUNT).await;
    w.by_id(ids::POLICY_SUMMARY).await;
    assert!(w.absent(&format!("#{}", ids::ACCOUNT_2FA_SWITCH)).await, "the switch is gone");
    w.shot("account-without-switch").await;

    let dave = w.api();
    dave.ok(
        Method::POST,
        "/api/auth/sign-in",
        Some(serde_json::json!({"tenant": "acme", "username": "dave", "password": PASSWORD})),
    )
    .await;
    let (status, body) =
        dave.call(Method::PUT, "/api/account/two-factor", Some(serde_json::json!({"enabled": true}))).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "user_cannot_change");
    w.close().await;
}

/// Journey 6: five wrong codes lock second-factor sign-in; the page says for how long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_wrong_codes_lock_out() {
    let mut w = World::start("6-lockout").await;
    let api = w.api();
    api.sign_in_admin().await;
    let acme = api.tenant("acme").await;
    api.user(&acme, "erin", PASSWORD, None).await;
    api.feature(&acme, "forced").await;

    password_step(&mut w, "acme", "erin", PASSWORD, "sign-in").await;
    let secret = enrol_authenticator(&mut w).await;
    w.click(ids::RECOVERY_CODES_DONE).await;
    sign_out(&mut w).await;

    password_step(&mut w, "acme", "erin", PASSWORD, "sign-in-again").await;
    w.click(ids::PROVIDER_AUTHENTICATOR).await;
    w.next_step();
    let right = w.totp(&secret);
    let wrong = format!("{:06}", (right.parse::<u32>().unwrap_or(0) + 500_000) % 1_000_000);
    for attempt in 1..=4 {
        w.fill(ids::CODE_INPUT, &wrong).await;
        w.click(ids::VERIFY_SUBMIT).await;
        w.wait_text(&format!("#{}", ids::VERIFY_ERROR), &(5 - attempt).to_string()).await;
        w.shot(&format!("wrong-code-{attempt}")).await;
    }
    w.fill(ids::CODE_INPUT, &wrong).await;
    w.click(ids::VERIFY_SUBMIT).await;
    let message = w.wait_text(&format!("#{}", ids::LOCKOUT_MESSAGE), "Try again in").await;
    w.shot("locked-out").await;
    assert!(message.to_lowercase().contains("lock"), "{message}");
    // Verify waits for the lock to end, and the time left counts down.
    let disabled = w.by_id(ids::VERIFY_SUBMIT).await.attr("disabled").await;
    assert!(matches!(disabled, Ok(Some(_))), "Verify is enabled while locked: {disabled:?}");
    let left = |m: &str| m.rsplit("Try again in ").next().unwrap_or_default().trim_end_matches('.').to_owned();
    let first = left(&message);
    assert!(first.contains(':'), "{message}");
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    let later = left(&w.text_of(ids::LOCKOUT_MESSAGE).await);
    assert!(later < first, "the countdown did not move: {first} then {later}");
    w.close().await;
}

/// Clicks the element with `data-test` = `test` inside `scope` (a CSS selector).
async fn click_in(w: &World, scope: &str, test: &str) {
    let css = format!("{scope} [data-test=\"{test}\"]");
    if let Err(e) = w.find(&css).await.click().await {
        panic!("click {css}: {e}");
    }
}

/// Waits until `check` holds for the API's answer at `path` (the web app saved).
async fn until_api(api: &crate::world::Api, path: &str, check: impl Fn(&serde_json::Value) -> bool) {
    for _ in 0..50 {
        let (_, body) = api.call(Method::GET, path, None).await;
        if check(&body) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{path} never reached the expected state");
}

/// Journey 7, the account lifecycle: a user sees where they are signed in and signs out
/// every other session; a host admin deactivates a user (who then cannot sign in) and
/// reactivates them, suspends a tenant and deletes it, confirming each destructive step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_deactivation_suspension_and_deletion() {
    let mut w = World::start("7-lifecycle").await;
    let api = w.api();
    api.sign_in_admin().await;
    let acme = api.tenant("acme").await;
    let alice = api.user(&acme, "alice", PASSWORD, None).await;
    // Alice is also signed in elsewhere.
    let elsewhere = w.api();
    elsewhere
        .ok(
            Method::POST,
            "/api/auth/sign-in",
            Some(serde_json::json!({"tenant": "acme", "username": "alice", "password": PASSWORD})),
        )
        .await;

    password_step(&mut w, "acme", "alice", PASSWORD, "sign-in").await;
    w.wait_title("Account · Twofold").await;
    w.find(&format!("#{} [data-test=\"{}\"][data-current=\"false\"]", ids::SESSIONS_LIST, ids::SESSION_ITEM)).await;
    w.find(&format!("#{} [data-test=\"{}\"][data-current=\"true\"]", ids::SESSIONS_LIST, ids::SESSION_ITEM)).await;
    w.shot("sessions").await;
    w.click(ids::SESSIONS_END_OTHERS).await;
    w.wait_text(&format!("[data-test=\"{}\"]", ids::ACCOUNT_NOTICE), "other session").await;
    assert_eq!(elsewhere.call(Method::GET, "/api/auth/me", None).await.0, 401, "the other session still works");
    assert!(w.absent(&format!("[data-test=\"{}\"][data-current=\"false\"]", ids::SESSION_ITEM)).await);
    w.shot("sessions-after-sign-out-others").await;
    sign_out(&mut w).await;

    password_step(&mut w, "", "admin", ADMIN_PASSWORD, "admin-sign-in").await;
    w.by_id(ids::NAV_TENANTS).await;
    w.goto(&format!("/tenants/{acme}/users")).await;
    let row = format!("[data-test=\"{}\"][data-name=\"alice\"]", ids::USER_ROW);
    click_in(&w, &row, ids::USER_DETAILS).await;
    let panel = format!("[data-test=\"{}\"][data-id=\"{alice}\"]", ids::USER_PANEL);
    click_in(&w, &panel, ids::USER_DEACTIVATE).await;
    w.find(&format!("{row} [data-test=\"{}\"]", ids::USER_DEACTIVATED)).await;
    w.shot("user-deactivated").await;
    until_api(&api, &format!("/api/users/{alice}"), |u| u["deactivated_at"].is_string()).await;
    let (status, body) = elsewhere
        .call(
            Method::POST,
            "/api/auth/sign-in",
            Some(serde_json::json!({"tenant": "acme", "username": "alice", "password": PASSWORD})),
        )
        .await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_credentials")), "{body}");
    click_in(&w, &panel, ids::USER_REACTIVATE).await;
    until_api(&api, &format!("/api/users/{alice}"), |u| u.get("deactivated_at").is_none_or(serde_json::Value::is_null))
        .await;
    w.shot("user-reactivated").await;

    w.click(ids::NAV_TENANTS).await;
    w.wait_title("Tenants · Twofold").await;
    let tenant = format!("[data-test=\"{}\"][data-name=\"acme\"]", ids::TENANT_ROW);
    click_in(&w, &tenant, ids::TENANT_SUSPEND).await;
    w.find(&format!("{tenant} [data-test=\"{}\"]", ids::TENANT_SUSPENDED)).await;
    w.shot("tenant-suspended").await;
    let (status, _) = elsewhere
        .call(
            Method::POST,
            "/api/auth/sign-in",
            Some(serde_json::json!({"tenant": "acme", "username": "alice", "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, 401, "a suspended tenant's user signed in");
    click_in(&w, &tenant, ids::TENANT_DELETE).await;
    w.by_test(ids::TENANT_DELETE_CONFIRM).await;
    w.shot("tenant-delete-confirm").await;
    if let Err(e) = w.by_test(ids::TENANT_DELETE_CONFIRM).await.click().await {
        panic!("confirm: {e}");
    }
    until_api(&api, &format!("/api/tenants/{acme}"), |t| t["error"] == "not_found").await;
    for _ in 0..50 {
        if w.absent(&tenant).await {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(w.absent(&tenant).await, "the deleted tenant is still listed");
    w.shot("tenant-deleted").await;
    w.assert_no_csp_violations("the lifecycle journey").await;
    w.close().await;
}

/// Journey 8, a forgotten password: the link from the real SMTP server opens the page
/// that sets a new password; the old one stops working and the second factor is still
/// asked for. Then an admin gives a user a temporary password, which the user must
/// replace before the app lets them do anything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgotten_password_and_temporary_password() {
    let mut w = World::start("8-password-reset").await;
    let api = w.api();
    api.sign_in_admin().await;
    let acme = api.tenant("acme").await;
    api.user(&acme, "dana", PASSWORD, Some("dana@example.test")).await;
    let erik = api.user(&acme, "erik", PASSWORD, None).await;
    api.feature(&acme, "forced").await;
    // Dana confirms her address by enrolling it as her second factor.
    password_step(&mut w, "acme", "dana", PASSWORD, "sign-in").await;
    w.click(ids::ENROLL_CHOOSE_EMAIL).await;
    w.click(ids::ENROLL_SEND_CODE).await;
    let code = w.smtp.wait_for_code("dana@example.test", 0).await;
    w.fill(ids::ENROLL_CODE, &code).await;
    w.click(ids::ENROLL_CONFIRM).await;
    w.click(ids::RECOVERY_CODES_DONE).await;
    sign_out(&mut w).await;

    w.click(ids::SIGNIN_FORGOT).await;
    w.wait_title("Forgot password · Twofold").await;
    w.fill(ids::FORGOT_TENANT, "acme").await;
    w.fill(ids::FORGOT_USERNAME, "dana").await;
    w.click(ids::FORGOT_SUBMIT).await;
    w.by_id(ids::FORGOT_SENT).await;
    w.shot("forgot-sent").await;
    let link = w.smtp.wait_for_link("dana@example.test", &format!("{}/reset-password?token=", w.base)).await;
    let path = link.trim_start_matches(w.base.as_str()).to_owned();
    w.goto(&path).await;
    w.wait_title("New password · Twofold").await;
    w.fill(ids::RESET_NEW, "dana's brand new password").await;
    w.fill(ids::RESET_REPEAT, "dana's brand new password").await;
    w.shot("reset-form").await;
    w.click(ids::RESET_SUBMIT).await;
    w.by_id(ids::RESET_DONE).await;
    w.shot("reset-done").await;
    password_step(&mut w, "acme", "dana", PASSWORD, "old-password").await;
    w.by_id(ids::SIGNIN_ERROR).await;
    password_step(&mut w, "acme", "dana", "dana's brand new password", "new-password").await;
    w.by_id(ids::PROVIDER_EMAIL).await;
    w.shot("second-factor-still-asked").await;

    // Erik's password is reset by the host admin to a temporary one.
    password_step(&mut w, "", "admin", ADMIN_PASSWORD, "admin-sign-in").await;
    w.by_id(ids::NAV_TENANTS).await;
    w.goto(&format!("/tenants/{acme}/users")).await;
    let row = format!("[data-test=\"{}\"][data-name=\"erik\"]", ids::USER_ROW);
    click_in(&w, &row, ids::USER_DETAILS).await;
    let panel = format!("[data-test=\"{}\"][data-id=\"{erik}\"]", ids::USER_PANEL);
    click_in(&w, &panel, ids::USER_RESET_PASSWORD).await;
    click_in(&w, &panel, ids::USER_RESET_TEMPORARY).await;
    let shown = w.wait_text(&format!("{panel} [data-test=\"{}\"]", ids::USER_RESET_RESULT), "Temporary password").await;
    w.shot("temporary-password").await;
    let temporary = shown.rsplit(' ').next().unwrap_or_default().to_owned();
    assert!(temporary.len() >= 20, "{shown}");
    sign_out(&mut w).await;
    password_step(&mut w, "acme", "erik", &temporary, "erik-temporary").await;
    // Erik has no factor in a forced tenant: enrolment first, then the password change.
    w.click(ids::ENROLL_CHOOSE_AUTHENTICATOR).await;
    w.by_id(ids::ENROLL_QR).await;
    let secret = w.text_of(ids::ENROLL_SECRET).await.replace(' ', "");
    w.next_step();
    let code = w.totp(&secret);
    w.fill(ids::ENROLL_CODE, &code).await;
    w.click(ids::ENROLL_CONFIRM).await;
    w.click(ids::RECOVERY_CODES_DONE).await;
    w.by_id(ids::MUST_CHANGE_FORM).await;
    w.shot("must-change-password").await;
    w.fill(ids::MUST_CHANGE_CURRENT, &temporary).await;
    w.fill(ids::MUST_CHANGE_NEW, "erik's own password").await;
    w.fill(ids::MUST_CHANGE_REPEAT, "erik's own password").await;
    w.click(ids::MUST_CHANGE_SUBMIT).await;
    w.by_id(ids::NAV_ACCOUNT).await;
    w.wait_title("Account · Twofold").await;
    w.shot("password-changed").await;
    w.assert_no_csp_violations("the password reset journey").await;
    w.close().await;
}

/// Whether the element `css` lies within the window's width (nothing cut off at the
/// right edge).
async fn within_width(w: &World, css: &str, width: f64) -> bool {
    match w.find(css).await.rectangle().await {
        Ok((x, _, wd, _)) => x >= 0.0 && x + wd <= width + 0.5,
        Err(e) => panic!("rectangle of {css}: {e}"),
    }
}

/// Journey 9: a host admin on a phone (390 px wide): every menu entry and every row's
/// actions are on screen, in the tenant list, the user list and the audit trail; the
/// audit trail filters by event type and by one user, and exports what it shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_pages_at_phone_width_and_audit_filters() {
    let mut w = World::start("9-phone-width-audit").await;
    let api = w.api();
    api.sign_in_admin().await;
    let acme = api.tenant("acme").await;
    let frank = api.user(&acme, "frank-with-a-rather-long-name", PASSWORD, Some("frank@example.test")).await;
    api.ok(Method::POST, &format!("/api/users/{frank}/deactivate"), None).await;
    api.ok(Method::POST, &format!("/api/users/{frank}/reactivate"), None).await;
    if let Err(e) = w.browser.set_window_size(390, 844).await {
        panic!("window size: {e}");
    }
    const WIDTH: f64 = 390.0;

    password_step(&mut w, "", "admin", ADMIN_PASSWORD, "sign-in").await;
    w.by_id(ids::NAV_AUDIT).await;
    for nav in
        [ids::NAV_ACCOUNT, ids::NAV_SETTINGS, ids::NAV_TENANTS, ids::NAV_USERS, ids::NAV_APPLICATIONS, ids::NAV_AUDIT]
    {
        assert!(within_width(&w, &format!("#{nav}"), WIDTH).await, "#{nav} is off screen at 390 px");
    }
    w.shot("account").await;
    w.click(ids::NAV_TENANTS).await;
    w.wait_title("Tenants · Twofold").await;
    let tenant = format!("[data-test=\"{}\"][data-name=\"acme\"]", ids::TENANT_ROW);
    for action in [ids::TENANT_FEATURES, ids::TENANT_USERS, ids::TENANT_AUDIT, ids::TENANT_SUSPEND, ids::TENANT_DELETE]
    {
        let css = format!("{tenant} [data-test=\"{action}\"]");
        assert!(within_width(&w, &css, WIDTH).await, "{action} is cut off at 390 px");
    }
    w.shot("tenants").await;
    w.goto(&format!("/tenants/{acme}/users")).await;
    let row = format!("[data-test=\"{}\"][data-id=\"{frank}\"]", ids::USER_ROW);
    let details = format!("{row} [data-test=\"{}\"]", ids::USER_DETAILS);
    assert!(within_width(&w, &details, WIDTH).await, "the user row's actions are cut off at 390 px");
    click_in(&w, &row, ids::USER_DETAILS).await;
    let panel = format!("[data-test=\"{}\"][data-id=\"{frank}\"]", ids::USER_PANEL);
    // (Unlock is offered only to a locked user.)
    for action in [ids::USER_END_SESSIONS, ids::USER_DEACTIVATE, ids::USER_RESET_PASSWORD, ids::USER_DELETE] {
        let css = format!("{panel} [data-test=\"{action}\"]");
        assert!(within_width(&w, &css, WIDTH).await, "{action} is cut off at 390 px");
    }
    w.shot("users-panel").await;

    w.click(ids::NAV_AUDIT).await;
    w.wait_title("Audit trail · Twofold").await;
    w.find(&format!("[data-test=\"{}\"][data-action=\"user.deactivated\"]", ids::AUDIT_ITEM)).await;
    w.shot("audit").await;
    // Only user events: no tenant or sign-in event stays.
    let select = w.by_id(ids::AUDIT_FILTER_ACTION).await;
    if let Err(e) = select.select_by_value("user.").await {
        panic!("select: {e}");
    }
    w.click(ids::AUDIT_FILTER_APPLY).await;
    for _ in 0..50 {
        if w.absent(&format!("[data-test=\"{}\"][data-action=\"tenant.created\"]", ids::AUDIT_ITEM)).await {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(w.absent(&format!("[data-test=\"{}\"][data-action=\"tenant.created\"]", ids::AUDIT_ITEM)).await);
    // Then only events about frank, chosen from one of them.
    let deactivated = format!("[data-test=\"{}\"][data-action=\"user.deactivated\"]", ids::AUDIT_ITEM);
    click_in(&w, &deactivated, ids::AUDIT_ABOUT_USER).await;
    w.by_test(ids::AUDIT_FILTER_CHIP).await;
    w.shot("audit-filtered").await;
    let mut shown = 0;
    for _ in 0..50 {
        shown =
            match w.browser.find_all(fantoccini::Locator::Css(&format!("[data-test=\"{}\"]", ids::AUDIT_ITEM))).await {
                Ok(items) => items.len(),
                Err(e) => panic!("audit items: {e}"),
            };
        if shown == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(shown, 3, "created, deactivated and reactivated: the user events about frank");
    // The export link carries the same filters, and the file holds exactly those events.
    let href = match w.by_id(ids::AUDIT_EXPORT_CSV).await.attr("href").await {
        Ok(Some(h)) => h,
        other => panic!("export link: {other:?}"),
    };
    assert!(href.contains("action=user.") && href.contains(&format!("user={frank}")), "{href}");
    let (status, _) = api.call(Method::GET, &href, None).await;
    assert_eq!(status, 200, "{href}");
    let csv = api.text(&href).await;
    let rows: Vec<&str> = csv.lines().skip(1).filter(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), 3, "{csv}");
    assert!(rows.iter().all(|r| r.contains(&format!("user:{frank}"))), "{csv}");
    w.assert_no_csp_violations("the phone-width journey").await;
    w.close().await;
}

/// The browser enforces the server's Content-Security-Policy, and the check every
/// journey makes at each screen would notice a breach: after the app has started under
/// the policy, an injected inline script does not run, an inline style does not apply,
/// and both are reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_enforces_the_content_security_policy() {
    let mut w = World::start("0-content-security-policy").await;
    w.goto("/sign-in").await;
    // The app's module script and WebAssembly ran: the policy allows what it needs.
    w.by_id(ids::SIGNIN_FORM).await;
    w.shot("sign-in-under-the-policy").await;

    let outcome = w
        .browser
        .execute(
            r#"
            const script = document.createElement("script");
            script.textContent = "window.injectedScriptRan = true";
            document.head.append(script);
            document.body.setAttribute("style", "background-color: rgb(255, 0, 0)");
            return [window.injectedScriptRan === true, getComputedStyle(document.body).backgroundColor];
            "#,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(outcome[0], false, "an injected inline script ran");
    assert_ne!(outcome[1], "rgb(255, 0, 0)", "an inline style applied");

    let violations = w.csp_violations().await;
    let reported = |what: &str| violations.iter().any(|v| v.contains(what));
    assert!(reported("inline script"), "the blocked script was not reported: {violations:?}");
    assert!(reported("inline style"), "the blocked style was not reported: {violations:?}");
    w.close().await;
}

/// Selects `value` in the `<select>` found by `css`.
async fn choose(w: &World, css: &str, value: &str) {
    let select = w.find(css).await;
    if let Err(e) = select.select_by_value(value).await {
        panic!("select {value} in {css}: {e}");
    }
}

/// Journeys for groups (DESIGN.md section 5): a tenant admin creates a group that
/// requires 2FA, previews and adds a member, sees the user list say that the group
/// requires it, asks what the member's next sign-in would ask, and reads the adoption
/// view with a filter; then the member signs in and is sent to enrolment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_adoption_and_what_if() {
    let mut w = World::start("groups-adoption-what-if").await;
    let api = w.api();
    api.sign_in_admin().await;
    let acme = api.tenant("acme").await;
    let boss = api.user(&acme, "boss", PASSWORD, None).await;
    api.ok(Method::POST, &format!("/api/tenants/{acme}/admins"), Some(serde_json::json!({"user_id": boss}))).await;
    let alice = api.user(&acme, "alice", PASSWORD, None).await;
    api.user(&acme, "bob", PASSWORD, Some("bob@example.test")).await;

    password_step(&mut w, "acme", "boss", PASSWORD, "tenant-admin-sign-in").await;
    w.by_id(ids::NAV_GROUPS).await;
    w.click(ids::NAV_GROUPS).await;
    w.wait_title("Groups · Twofold").await;
    w.by_id(ids::GROUPS_LIST).await;
    w.fill(ids::GROUP_CREATE_NAME, "Finance").await;
    w.click(ids::GROUP_CREATE_REQUIRE).await;
    w.shot("new-group").await;
    w.click(ids::GROUP_CREATE_SUBMIT).await;
    let row = format!("[data-test=\"{}\"][data-name=\"Finance\"]", ids::GROUP_ROW);
    w.wait_text(&row, "2FA required").await;
    w.shot("groups").await;
    let open = w.find(&format!("{row} [data-test=\"{}\"]", ids::GROUP_OPEN)).await;
    open.click().await.unwrap();
    let panel = format!("[data-test=\"{}\"]", ids::GROUP_PANEL);
    w.find(&panel).await;
    choose(&w, &format!("{panel} [data-test=\"{}\"]", ids::GROUP_MEMBER_SELECT), &alice).await;
    let impact = w.wait_text(&format!("[data-test=\"{}\"]", ids::GROUP_IMPACT), "require 2FA for 1 user").await;
    assert!(impact.contains("no factor yet"), "{impact}");
    w.shot("member-preview").await;
    w.find(&format!("{panel} [data-test=\"{}\"]", ids::GROUP_MEMBER_ADD)).await.click().await.unwrap();
    w.wait_text(&format!("[data-test=\"{}\"]", ids::GROUP_MEMBER), "alice").await;
    w.shot("group-members").await;

    // The user list says what is required of alice and what decided it.
    w.click(ids::NAV_USERS).await;
    w.wait_title("Users · Twofold").await;
    let alice_row = format!("[data-test=\"{}\"][data-name=\"alice\"]", ids::USER_ROW);
    let required = w.wait_text(&format!("{alice_row} [data-test=\"{}\"]", ids::USER_REQUIRED), "Finance").await;
    assert!(required.contains("Required"), "{required}");
    w.shot("users").await;
    w.find(&format!("{alice_row} [data-test=\"{}\"]", ids::USER_DETAILS)).await.click().await.unwrap();
    w.find(&format!("[data-test=\"{}\"]", ids::USER_POLICY_TRACE)).await;
    // Not locked: nothing to unlock.
    assert!(w.absent(&format!("[data-test=\"{}\"]", ids::USER_UNLOCK)).await, "Unlock is offered to an unlocked user");
    w.by_test(ids::USER_WHAT_IF).await.click().await.unwrap();
    let what = w.wait_text(&format!("[data-test=\"{}\"]", ids::USER_WHAT_IF_RESULT), "enrol").await;
    assert!(what.contains("Finance"), "the what-if shows the trace naming the group: {what}");
    w.shot("what-if").await;

    // The adoption view: totals, then only those who would have to enrol.
    w.click(ids::NAV_ADOPTION).await;
    w.wait_title("Adoption · Twofold").await;
    let totals = w.wait_text(&format!("#{}", ids::ADOPTION_TOTALS), "of 3 users").await;
    assert!(totals.contains("1 user is asked for a second factor"), "{totals}");
    w.shot("adoption").await;
    choose(&w, &format!("#{}", ids::ADOPTION_FILTER_READY), "false").await;
    for _ in 0..50 {
        if w.absent(&format!("[data-test=\"{}\"][data-name=\"bob\"]", ids::ADOPTION_ROW)).await {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    w.find(&format!("[data-test=\"{}\"][data-name=\"alice\"]", ids::ADOPTION_ROW)).await;
    assert!(w.absent(&format!("[data-test=\"{}\"][data-name=\"bob\"]", ids::ADOPTION_ROW)).await, "the filter");
    let href = w.by_id(ids::ADOPTION_CSV).await.attr("href").await.unwrap().unwrap_or_default();
    assert!(href.ends_with("/adoption.csv?ready=false"), "{href}");
    w.shot("adoption-not-ready").await;
    sign_out(&mut w).await;

    // alice's next sign-in is what the what-if said.
    password_step(&mut w, "acme", "alice", PASSWORD, "member-sign-in").await;
    w.by_id(ids::ENROLL_CHOOSE_AUTHENTICATOR).await;
    w.shot("member-must-enrol").await;
    w.close().await;
}

/// Whether the element lies wholly inside the window as it is scrolled now.
async fn in_view(w: &World, id: &str) -> bool {
    let script = "const r = document.getElementById(arguments[0]).getBoundingClientRect(); \
                  return r.top >= 0 && r.bottom <= window.innerHeight;";
    match w.browser.execute(script, vec![serde_json::json!(id)]).await {
        Ok(v) => v == serde_json::json!(true),
        Err(e) => panic!("position of #{id}: {e}"),
    }
}

/// Journey 10, on a phone: a tenant admin adds a user with an email address and a
/// mobile number; the settings' impact preview and Save stay in view on the long form;
/// the user finds both unconfirmed on the account page, confirms the email (now a
/// factor), removes it again after a confirmation, and sees the QR code of a new
/// authenticator without scrolling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_at_creation_removal_and_what_stays_in_view_on_a_phone() {
    let mut w = World::start("10-contacts-and-view").await;
    let api = w.api();
    api.sign_in_admin().await;
    let acme = api.tenant("acme").await;
    let boss = api.user(&acme, "boss", PASSWORD, None).await;
    api.ok(Method::POST, &format!("/api/tenants/{acme}/admins"), Some(serde_json::json!({"user_id": boss}))).await;
    if let Err(e) = w.browser.set_window_size(390, 844).await {
        panic!("window size: {e}");
    }

    password_step(&mut w, "acme", "boss", PASSWORD, "tenant-admin-sign-in").await;
    w.click(ids::NAV_SETTINGS).await;
    w.wait_title("Settings · Twofold").await;
    w.by_id(ids::SETTINGS_FOOTER).await;
    assert!(in_view(&w, ids::SETTINGS_FOOTER).await, "the impact preview and Save are below the fold");
    w.shot("settings-footer-pinned").await;

    w.click(ids::NAV_USERS).await;
    w.wait_title("Users · Twofold").await;
    w.find("details.card > summary").await.click().await.unwrap();
    w.fill(ids::USER_CREATE_USERNAME, "dave").await;
    w.fill(ids::USER_CREATE_PASSWORD, PASSWORD).await;
    w.fill(ids::USER_CREATE_EMAIL, "dave@example.test").await;
    w.fill(ids::USER_CREATE_PHONE, "+1 415 555 0123").await;
    w.shot("add-user-with-phone").await;
    w.click(ids::USER_CREATE_SUBMIT).await;
    w.find(&format!("[data-test=\"{}\"][data-name=\"dave\"]", ids::USER_ROW)).await;
    sign_out(&mut w).await;

    password_step(&mut w, "acme", "dave", PASSWORD, "user-sign-in").await;
    w.wait_title("Account · Twofold").await;
    w.wait_text(&format!("#{}", ids::ACCOUNT_PHONE_STATUS), "+14155550123 — not confirmed").await;
    w.by_id(ids::ACCOUNT_PHONE_SEND_ON_FILE).await;
    w.wait_text(&format!("#{}", ids::ACCOUNT_EMAIL_STATUS), "dave@example.test — not confirmed").await;
    w.shot("contacts-on-file").await;

    w.click(ids::ACCOUNT_EMAIL_SEND_ON_FILE).await;
    let code = w.smtp.wait_for_code("dave@example.test", 0).await;
    w.fill(ids::ACCOUNT_EMAIL_CODE, &code).await;
    w.click(ids::ACCOUNT_EMAIL_CONFIRM).await;
    w.by_id(ids::RECOVERY_CODES).await;
    w.click(ids::RECOVERY_CODES_DONE).await;
    w.wait_text(&format!("#{}", ids::ACCOUNT_EMAIL_STATUS), "dave@example.test — confirmed").await;

    w.click(ids::ACCOUNT_EMAIL_REMOVE).await;
    w.shot("remove-email-question").await;
    w.by_test(ids::CONFIRM_YES).await.click().await.unwrap();
    w.wait_text(&format!("#{}", ids::ACCOUNT_EMAIL_STATUS), "No email address").await;
    w.shot("email-removed").await;

    w.click(ids::ACCOUNT_AUTH_SETUP).await;
    w.by_id(ids::ACCOUNT_AUTH_QR).await;
    // Scrolling happens as the QR code is added: give it a frame.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(in_view(&w, ids::ACCOUNT_AUTH_QR).await, "the QR code is below the fold");
    w.shot("authenticator-qr-in-view").await;
    w.close().await;
}
