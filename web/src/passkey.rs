//! Passkeys in the browser: calls into the small bridge in `boot.js`
//! (`window.twofoldPasskeys`), which turns the server's WebAuthn options into
//! `navigator.credentials` calls and the browser's answer back into the JSON the server
//! reads. Failures (no passkey support, the person cancelled) come back as a sentence.

use js_sys::{Function, Promise, Reflect};
use serde::de::DeserializeOwned;
use twofold_policy::wire::{PasskeyChallenge, PasskeyFinish, PasskeyName};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

fn bridge() -> Option<JsValue> {
    let window = web_sys::window()?;
    Reflect::get(&window, &JsValue::from_str("twofoldPasskeys")).ok().filter(|v| v.is_object())
}

fn method(name: &str) -> Option<(JsValue, Function)> {
    let b = bridge()?;
    let f = Reflect::get(&b, &JsValue::from_str(name)).ok()?.dyn_into::<Function>().ok()?;
    Some((b, f))
}

/// Whether this browser can use passkeys.
pub fn supported() -> bool {
    method("supported").and_then(|(b, f)| f.call0(&b).ok()).and_then(|v| v.as_bool()).unwrap_or(false)
}

/// Whether passkeys can be offered in the user name field's autofill.
pub async fn autofill_available() -> bool {
    let Some((b, f)) = method("autofill") else { return false };
    let Ok(p) = f.call0(&b).and_then(|v| v.dyn_into::<Promise>()) else { return false };
    JsFuture::from(p).await.ok().and_then(|v| v.as_bool()).unwrap_or(false)
}

/// Ends a waiting autofill request (before another ceremony, or when leaving the page).
pub fn abort() {
    if let Some((b, f)) = method("abort") {
        let _ = f.call0(&b);
    }
}

async fn call(name: &str, options: &serde_json::Value, conditional: bool) -> Result<serde_json::Value, String> {
    let (b, f) = method(name).ok_or_else(|| "This browser cannot use passkeys.".to_owned())?;
    let promise = f
        .call2(&b, &JsValue::from_str(&options.to_string()), &JsValue::from_bool(conditional))
        .and_then(|v| v.dyn_into::<Promise>())
        .map_err(|_| "This browser cannot use passkeys.".to_owned())?;
    let answer = JsFuture::from(promise).await.map_err(|e| {
        let name = Reflect::get(&e, &JsValue::from_str("name")).ok().and_then(|n| n.as_string()).unwrap_or_default();
        match name.as_str() {
            "NotAllowedError" => "The passkey request was cancelled or timed out.".to_owned(),
            "InvalidStateError" => "This passkey is already registered for your account.".to_owned(),
            "AbortError" => "The passkey request was stopped.".to_owned(),
            _ => "The browser could not use a passkey here.".to_owned(),
        }
    })?;
    let text = answer.as_string().ok_or_else(|| "The browser gave no passkey.".to_owned())?;
    serde_json::from_str(&text).map_err(|_| "The browser gave no passkey.".to_owned())
}

/// Registers a new passkey with the server's creation options.
pub async fn create(options: &serde_json::Value) -> Result<serde_json::Value, String> {
    call("create", options, false).await
}

/// Proves a passkey with the server's request options; `conditional` waits for the
/// person to pick one from autofill.
pub async fn get(options: &serde_json::Value, conditional: bool) -> Result<serde_json::Value, String> {
    call("get", options, conditional).await
}

/// One ceremony with the server, the same for every use of a passkey: the options from
/// `start` (given `name` when a new passkey is created; `conditional` waits for a pick
/// from autofill), the browser's part, and its answer posted to `finish`.
pub async fn ceremony<T: DeserializeOwned>(
    start: &str,
    name: Option<String>,
    conditional: bool,
    finish: &str,
    remember_browser: bool,
) -> crate::api::ApiResult<T> {
    let challenge: PasskeyChallenge = match &name {
        Some(name) => crate::api::post(start, &PasskeyName { name: name.clone() }).await?,
        None => crate::api::post_empty(start).await?,
    };
    let credential = match name {
        Some(_) => create(&challenge.options).await,
        None => get(&challenge.options, conditional).await,
    }
    .map_err(|m| crate::api::ApiError::message(&m))?;
    let answer = PasskeyFinish { challenge_id: challenge.challenge_id, credential, remember_browser };
    crate::api::post(finish, &answer).await
}
