//! Journey 11: passkeys in Chromium with its virtual authenticator (the WebDriver
//! WebAuthn extension): enrolment at forced enrolment, a passwordless sign-in from the
//! sign-in page, a second passkey on the account page and the removal of the first, and
//! a scope requiring `phishing_resistant` that offers nothing but a passkey.
//!
//! The virtual authenticator answers by itself, so the sign-in page's autofill request
//! (conditional mediation) completes as soon as the page opens while the authenticator
//! holds a passkey of this site: that is the passwordless sign-in here, and the second
//! factor after a password is left to the HTTP tests, which drive it step by step.

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
    w.find(&format!("[data-test=\"{}\"][data-name=\"Work laptop\"]", ids::PASSKEY_ROW)).await;
    w.shot("account-with-passkey").await;
    sign_out(&mut w).await;

    // Without a password: the sign-in page asks for a passkey of this site, the
    // authenticator answers, and the passkey names Ada.
    w.goto("/sign-in").await;
    let who = w.wait_text(&format!("#{}", ids::NAV_USER), "ada").await;
    assert!(who.contains("ada"), "{who}");
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
    let first = w.find(&format!("[data-test=\"{}\"][data-name=\"Work laptop\"]", ids::PASSKEY_ROW)).await;
    let remove = first.find(fantoccini::Locator::Css(&format!("[data-test=\"{}\"]", ids::PASSKEY_REMOVE))).await;
    remove.unwrap_or_else(|e| panic!("remove button: {e}")).click().await.unwrap();
    w.by_test(ids::CONFIRM_YES).await.click().await.unwrap();
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
