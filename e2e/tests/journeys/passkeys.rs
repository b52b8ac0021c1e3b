//! Journey 11: passkeys in Chromium with its virtual authenticator (the WebDriver
//! WebAuthn extension): enrolment at forced enrolment, the passkey as the second factor
//! after the password, a passwordless sign-in from the sign-in page, a second passkey on
//! the account page, renamed, and the removal of the first after a reauthentication with
//! a passkey, and a scope requiring `phishing_resistant` that offers nothing but a passkey.
//!
//! The virtual authenticator answers by itself, so the sign-in page's autofill request
//! (conditional mediation) completes as soon as the page opens while the authenticator
//! holds a discoverable passkey of this site: that is the passwordless sign-in here. For
//! the second factor the authenticator holds the same key as a non-discoverable
//! credential, which autofill cannot offer but a request naming Ada's credentials finds,
//! so the page waits for the password.

use reqwest::Method;
use twofold_e2e::ids;

use crate::world::{World, settings};

const PASSWORD: &str = "correct horse battery";

/// `DELETE /session/{id}/webauthn/authenticator/{authenticator}/credentials`.
#[derive(Debug)]
struct ForgetCredentials(String);

impl fantoccini::wd::WebDriverCompatibleCommand for ForgetCredentials {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/webauthn/authenticator/{}/credentials", session.unwrap_or_default(), self.0))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::DELETE, None)
    }
}

/// `GET /session/{id}/webauthn/authenticator/{authenticator}/credentials`: the keys the
/// authenticator holds, private keys and signature counters included.
#[derive(Debug)]
struct Credentials(String);

impl fantoccini::wd::WebDriverCompatibleCommand for Credentials {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/webauthn/authenticator/{}/credentials", session.unwrap_or_default(), self.0))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::GET, None)
    }
}

/// `POST /session/{id}/webauthn/authenticator/{authenticator}/credential`: puts a key
/// (in the shape [`Credentials`] reads) into the authenticator.
#[derive(Debug)]
struct AddCredential(String, serde_json::Value);

impl fantoccini::wd::WebDriverCompatibleCommand for AddCredential {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/webauthn/authenticator/{}/credential", session.unwrap_or_default(), self.0))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.1.to_string()))
    }
}

/// The one key the authenticator holds.
async fn only_credential(w: &World, authenticator: &str) -> serde_json::Value {
    let held = match w.browser.issue_cmd(Credentials(authenticator.to_owned())).await {
        Ok(v) => v,
        Err(e) => panic!("cannot read the virtual authenticator's keys: {e}"),
    };
    let keys = held.as_array().cloned().unwrap_or_default();
    assert_eq!(keys.len(), 1, "{held}");
    keys[0].clone()
}

/// Replaces what the authenticator holds with `key`, discoverable or not. The key keeps
/// its signature counter, so the server sees the same authenticator carry on.
async fn hold(w: &World, authenticator: &str, key: &serde_json::Value, discoverable: bool) {
    if let Err(e) = w.browser.issue_cmd(ForgetCredentials(authenticator.to_owned())).await {
        panic!("cannot clear the virtual authenticator: {e}");
    }
    let mut key = key.clone();
    if let Some(k) = key.as_object_mut() {
        k.insert("isResidentCredential".to_owned(), serde_json::json!(discoverable));
        // An absent large blob is written as null when read, but refused when added.
        k.retain(|_, v| !v.is_null());
        // Only a discoverable credential carries its user: that is what makes it one.
        if !discoverable {
            k.remove("userHandle");
        }
    }
    if let Err(e) = w.browser.issue_cmd(AddCredential(authenticator.to_owned(), key)).await {
        panic!("cannot put a key into the virtual authenticator: {e}");
    }
}

/// How the browser's current session was signed in (`pwd+passkey`, `passkey`, ...).
async fn session_methods(w: &World) -> String {
    let script = "return fetch('/api/account/sessions').then(r => r.json())";
    let sessions = match w.browser.execute(script, vec![]).await {
        Ok(v) => v,
        Err(e) => panic!("cannot read the sessions: {e}"),
    };
    let current = sessions.as_array().and_then(|all| all.iter().find(|s| s["current"] == true));
    current.and_then(|s| s["methods"].as_str()).unwrap_or_else(|| panic!("no current session: {sessions}")).to_owned()
}

/// `POST /session/{id}/webauthn/authenticator`, which fantoccini has no call for: a
/// platform authenticator that stores discoverable credentials, verifies the user and
/// answers without a person touching it.
#[derive(Debug)]
struct AddVirtualAuthenticator;

impl fantoccini::wd::WebDriverCompatibleCommand for AddVirtualAuthenticator {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/webauthn/authenticator", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = serde_json::json!({
            "protocol": "ctap2", "transport": "internal", "hasResidentKey": true,
            "hasUserVerification": true, "isUserVerified": true, "automaticPresenceSimulation": true,
        });
        (http::Method::POST, Some(body.to_string()))
    }
}

async fn password_step(w: &mut World, tenant: &str, username: &str, shot: &str) {
    w.goto("/sign-in").await;
    w.by_id(ids::SIGNIN_FORM).await;
    w.fill(ids::SIGNIN_TENANT, tenant).await;
    w.fill(ids::SIGNIN_USERNAME, username).await;
    w.fill(ids::SIGNIN_PASSWORD, PASSWORD).await;
    w.shot(shot).await;
    w.click(ids::SIGNIN_SUBMIT).await;
}

async fn sign_out(w: &mut World) {
    w.click(ids::SIGN_OUT).await;
    w.by_id(ids::SIGNIN_FORM).await;
}

/// The account page's row of the passkey called `name`.
async fn row(w: &World, name: &str) -> fantoccini::elements::Element {
    w.find(&format!("[data-test=\"{}\"][data-name=\"{name}\"]", ids::PASSKEY_ROW)).await
}

/// The element marked `test` inside `parent`.
async fn within(parent: &fantoccini::elements::Element, test: &str) -> fantoccini::elements::Element {
    let css = format!("[data-test=\"{test}\"]");
    match parent.find(fantoccini::Locator::Css(&css)).await {
        Ok(e) => e,
        Err(e) => panic!("{css} in a row: {e}"),
    }
}

async fn passkey_rows(w: &World) -> usize {
    let css = format!("[data-test=\"{}\"]", ids::PASSKEY_ROW);
    w.browser.find_all(fantoccini::Locator::Css(&css)).await.map(|r| r.len()).unwrap_or(0)
}

async fn until_rows(w: &World, want: usize) {
    for _ in 0..100 {
        if passkey_rows(w).await == want {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the account page did not come to {want} passkeys (has {})", passkey_rows(w).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passkeys_enrolled_passwordless_added_removed_and_required() {
    let mut w = World::start("11-passkeys").await;
    let authenticator = match w.browser.issue_cmd(AddVirtualAuthenticator).await {
        Ok(id) => id.as_str().unwrap_or_default().to_owned(),
        Err(e) => panic!("no virtual authenticator: {e}"),
    };
    let api = w.api();
    api.sign_in_admin().await;
    let acme = api.tenant("acme").await;
    api.feature(&acme, "forced").await;
    api.user(&acme, "ada", PASSWORD, None).await;

    // Forced enrolment: Ada chooses a passkey; the browser's authenticator creates it.
    password_step(&mut w, "acme", "ada", "password").await;
    w.click(ids::ENROLL_CHOOSE_PASSKEY).await;
    w.fill(ids::ENROLL_PASSKEY_NAME, "Work laptop").await;
    w.shot("enrol-passkey").await;
    w.click(ids::ENROLL_PASSKEY_CREATE).await;
    w.by_id(ids::RECOVERY_CODES).await;
    w.shot("recovery-codes").await;
    w.click(ids::RECOVERY_CODES_DONE).await;
    w.by_id(ids::NAV_ACCOUNT).await;
    w.goto("/account").await;
    row(&w, "Work laptop").await;
    w.shot("account-with-passkey").await;
    assert_eq!(session_methods(&w).await, "pwd+enrolled_passkey");

    // The passkey as the second factor after the password. Held as non-discoverable, it
    // is not offered in the sign-in page's autofill, so Ada types her password first.
    let enrolled = only_credential(&w, &authenticator).await;
    hold(&w, &authenticator, &enrolled, false).await;
    sign_out(&mut w).await;
    password_step(&mut w, "acme", "ada", "password-then-passkey").await;
    w.click(ids::PROVIDER_PASSKEY).await;
    w.shot("second-factor-passkey").await;
    w.click(ids::PASSKEY_VERIFY).await;
    let who = w.wait_text(&format!("#{}", ids::NAV_USER), "ada").await;
    assert!(who.contains("ada"), "{who}");
    assert_eq!(session_methods(&w).await, "pwd+passkey");
    let mut used = only_credential(&w, &authenticator).await;
    let count = |k: &serde_json::Value| k["signCount"].as_u64().unwrap_or_default();
    assert!(count(&used) > count(&enrolled), "the assertion moved the counter: {enrolled} then {used}");
    // Signed out while the key is still non-discoverable: with a discoverable one held,
    // the sign-in page that follows the sign-out would offer it at once and the browser
    // could be signed in again before the page's form was seen.
    sign_out(&mut w).await;
    // Discoverable again, with Ada's user handle and the counter it has reached, for the
    // passwordless sign-in.
    used["userHandle"] = enrolled["userHandle"].clone();
    hold(&w, &authenticator, &used, true).await;

    // Without a password: the sign-in page asks for a passkey of this site, the
    // authenticator answers, and the passkey names Ada.
    w.goto("/sign-in").await;
    let who = w.wait_text(&format!("#{}", ids::NAV_USER), "ada").await;
    assert!(who.contains("ada"), "{who}");
    assert_eq!(session_methods(&w).await, "passkey");
    w.shot("passwordless").await;

    // A second passkey on the account page (the passkey sign-in made the session fresh),
    // then the first one removed. One authenticator holds one passkey per account (the
    // server lists Ada's in `excludeCredentials`), so the first leaves it: as if this
    // were another device.
    if let Err(e) = w.browser.issue_cmd(ForgetCredentials(authenticator.clone())).await {
        panic!("cannot clear the virtual authenticator: {e}");
    }
    w.goto("/account").await;
    until_rows(&w, 1).await;
    w.fill(ids::ACCOUNT_PASSKEY_NAME, "Phone").await;
    w.click(ids::ACCOUNT_PASSKEY_ADD).await;
    until_rows(&w, 2).await;
    w.shot("two-passkeys").await;

    // The new one renamed in its row.
    let phone = row(&w, "Phone").await;
    within(&phone, ids::PASSKEY_RENAME).await.click().await.unwrap();
    let field = within(&phone, ids::PASSKEY_RENAME_NAME).await;
    field.clear().await.unwrap();
    field.send_keys("Work phone").await.unwrap();
    w.shot("rename-passkey").await;
    within(&phone, ids::PASSKEY_RENAME_SAVE).await.click().await.unwrap();
    row(&w, "Work phone").await;
    assert!(w.absent(&format!("[data-test=\"{}\"][data-name=\"Phone\"]", ids::PASSKEY_ROW)).await);

    // Minutes later the session is no longer fresh: removing the first passkey asks Ada
    // to confirm it's her, with her passkey (no password), then goes ahead.
    w.clock.advance_ms(6 * 60_000);
    let first = row(&w, "Work laptop").await;
    within(&first, ids::PASSKEY_REMOVE).await.click().await.unwrap();
    w.by_test(ids::CONFIRM_YES).await.click().await.unwrap();
    w.by_id(ids::REAUTH_DIALOG).await;
    assert!(w.absent(&format!("#{}", ids::REAUTH_PASSWORD)).await, "a passkey needs no password");
    w.shot("reauthenticate-with-passkey").await;
    w.click(ids::REAUTH_SUBMIT).await;
    until_rows(&w, 1).await;
    assert!(w.absent(&format!("[data-test=\"{}\"][data-name=\"Work laptop\"]", ids::PASSKEY_ROW)).await);
    w.shot("one-passkey-left").await;
    // Ada's passkeys leave this browser, so the sign-in page no longer signs her in.
    if let Err(e) = w.browser.issue_cmd(ForgetCredentials(authenticator)).await {
        panic!("cannot clear the virtual authenticator: {e}");
    }
    sign_out(&mut w).await;

    // A scope that requires phishing resistance: Bob has only an authenticator-free
    // account, and is offered nothing but a passkey to enrol; codes are not offered.
    api.tenant_settings(&acme, settings(serde_json::json!({"min_strength": "phishing_resistant"}))).await;
    api.user(&acme, "bob", PASSWORD, Some("bob@acme.test")).await;
    password_step(&mut w, "acme", "bob", "password-bob").await;
    w.by_id(ids::ENROLL_CHOOSE_PASSKEY).await;
    assert!(w.absent(&format!("#{}", ids::ENROLL_CHOOSE_AUTHENTICATOR)).await, "authenticator offered");
    assert!(w.absent(&format!("#{}", ids::ENROLL_CHOOSE_EMAIL)).await, "email offered");
    assert!(w.absent(&format!("#{}", ids::ENROLL_CHOOSE_SMS)).await, "SMS offered");
    w.shot("phishing-resistant-enrolment").await;
    let policy = api.ok(Method::GET, &format!("/api/tenants/{acme}/settings"), None).await;
    assert_eq!(policy["settings"]["min_strength"], "phishing_resistant", "{policy}");
    w.close().await;
}

/// Journey 13: an application that asks for a phishing-resistant second factor. Ada has
/// only her password, so she creates a passkey inside the application's sign-in, which
/// is her proof for it; asked later for a second factor proved just now (`max_age=0`),
/// she steps up with the passkey alone: no password, no code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_demanding_a_passkey_gets_one_created_then_stepped_up() {
    use crate::applications::{CHALLENGE, application_listener, at_application, enc, redeem};
    let mut w = World::start("13-application-passkey").await;
    if let Err(e) = w.browser.issue_cmd(AddVirtualAuthenticator).await {
        panic!("no virtual authenticator: {e}");
    }
    let api = w.api();
    api.sign_in_admin().await;
    let acme = api.tenant("acme").await;
    api.user(&acme, "ada", PASSWORD, None).await;
    let redirect = application_listener();
    let created = api
        .ok(
            Method::POST,
            &format!("/api/tenants/{acme}/applications"),
            Some(serde_json::json!({
                "name": "Vault", "client_type": "confidential", "redirect_uris": [redirect],
                "allowed_scopes": ["openid"], "first_party": true,
                "require_two_factor": true, "min_strength": "phishing_resistant"
            })),
        )
        .await;
    let client_id = created["application"]["client_id"].as_str().unwrap_or_default().to_owned();
    let secret = created["client_secret"].as_str().unwrap_or_default().to_owned();
    let issuer = created["application"]["issuer"].as_str().unwrap_or_default().to_owned();
    let authorize = |state: &str, extra: &str| {
        format!(
            "/t/acme/oauth2/authorize?response_type=code&client_id={client_id}&redirect_uri={}\
             &scope=openid&state={state}&nonce=n1&code_challenge={CHALLENGE}&code_challenge_method=S256{extra}",
            enc(&redirect)
        )
    };

    w.goto(&authorize("first", "")).await;
    w.by_id(ids::SIGNIN_FORM).await;
    w.fill(ids::SIGNIN_USERNAME, "ada").await;
    w.fill(ids::SIGNIN_PASSWORD, PASSWORD).await;
    w.click(ids::SIGNIN_SUBMIT).await;
    let why = w.wait_text(&format!("#{}", ids::AUTHORIZE_ENROLL), "Vault asks for").await;
    assert!(why.contains("passkey"), "{why}");
    w.fill(ids::ENROLL_PASSKEY_NAME, "Laptop").await;
    w.shot("create-a-passkey-for-the-application").await;
    w.click(ids::ENROLL_PASSKEY_CREATE).await;
    // Her first factor: the recovery codes, once, then on to Vault.
    w.click(ids::RECOVERY_CODES_DONE).await;
    let back = at_application(&w, &redirect).await;
    assert_eq!(back.get("state").map(String::as_str), Some("first"));
    let id = redeem(&issuer, &client_id, &secret, &back["code"], &redirect).await;
    assert_eq!(id["acr"], "urn:twofold:acr:2fa:phishing_resistant", "{id}");
    assert_eq!(id["amr"], serde_json::json!(["pwd", "hwk", "mfa"]), "{id}");
    let first_auth_time = id["auth_time"].as_i64().unwrap_or_default();

    w.next_step();
    w.clock.advance_ms(2_000);
    w.goto(&authorize("again", "&max_age=0")).await;
    w.by_id(ids::STEPUP_FORM).await;
    assert!(w.absent(&format!("#{}", ids::SIGNIN_PASSWORD)).await, "a step-up asks for no password");
    assert!(w.absent(&format!("#{}", ids::STEPUP_CODE)).await, "a passkey needs no code");
    let offered = w.text_of(ids::STEPUP_METHOD).await;
    assert!(offered.contains("Passkey") && !offered.contains("Recovery"), "only a passkey is strong enough: {offered}");
    w.shot("step-up-with-a-passkey").await;
    w.click(ids::STEPUP_SUBMIT).await;
    let back = at_application(&w, &redirect).await;
    assert_eq!(back.get("state").map(String::as_str), Some("again"));
    let id = redeem(&issuer, &client_id, &secret, &back["code"], &redirect).await;
    assert!(id["auth_time"].as_i64().unwrap_or_default() > first_auth_time, "the step-up is the new auth_time: {id}");
    assert_eq!(id["acr"], "urn:twofold:acr:2fa:phishing_resistant", "{id}");
    w.close().await;
}
