//! Passwords outside the account page: asking for a reset link, choosing a new password
//! with one, and the change a user must make before anything else when an admin set
//! their password.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_query_map;
use twofold_policy::wire::{ChangePassword, PasswordResetConfirm, PasswordResetRequest};

use crate::api::{self, ApiError};
use crate::ids;
use crate::session::use_session;
use crate::widgets::{ErrorText, Notice};

/// "I forgot my password": asks for a link by email. The answer is the same for every
/// account, so the page says what happens if the account exists.
#[component]
pub fn ForgotPassword() -> impl IntoView {
    let tenant = RwSignal::new(String::new());
    let username = RwSignal::new(String::new());
    let busy = RwSignal::new(false);
    let err = RwSignal::new(None::<String>);
    let sent = RwSignal::new(None::<String>);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let t = tenant.get_untracked().trim().to_owned();
        let req = PasswordResetRequest {
            tenant: (!t.is_empty()).then_some(t),
            username: username.get_untracked().trim().to_owned(),
        };
        busy.set(true);
        err.set(None);
        spawn_local(async move {
            let r = api::post::<_, ()>("/api/auth/password-reset", &req).await;
            busy.set(false);
            match r {
                Ok(()) => sent.set(Some(
                    "If this account exists and has a confirmed email address, a link to choose a new password is on \
                     its way. It works once, for a short while."
                        .to_owned(),
                )),
                Err(e) => err.set(Some(e.text())),
            }
        });
    };
    view! {
        <form class="auth-card" id=ids::FORGOT_FORM on:submit=submit novalidate>
            <h1>"Forgot your password?"</h1>
            <p class="muted">"We email a link to the confirmed address of your account. Your second factor is still asked for when you sign in."</p>
            <div class="field">
                <label for=ids::FORGOT_TENANT>"Tenant"</label>
                <input type="text" id=ids::FORGOT_TENANT autocomplete="organization" autocapitalize="none" spellcheck="false" bind:value=tenant />
                <p class="hint">"Leave empty for a host account."</p>
            </div>
            <div class="field">
                <label for=ids::FORGOT_USERNAME>"User name"</label>
                <input type="text" id=ids::FORGOT_USERNAME autocomplete="username" autocapitalize="none" spellcheck="false" required bind:value=username />
            </div>
            <ErrorText msg=err id=ids::FORGOT_ERROR />
            <Notice msg=sent id=ids::FORGOT_SENT />
            <button type="submit" class="btn btn-primary btn-block" id=ids::FORGOT_SUBMIT disabled=move || busy.get()>
                "Email me a link"
            </button>
            <p><a href="/sign-in">"Back to sign-in"</a></p>
        </form>
    }
}

/// The page a reset link opens: a new password, twice.
#[component]
pub fn ResetPassword() -> impl IntoView {
    let query = use_query_map();
    let token = move || query.with(|q| q.get("token").unwrap_or_default());
    let new = RwSignal::new(String::new());
    let repeat = RwSignal::new(String::new());
    let busy = RwSignal::new(false);
    let err = RwSignal::new(None::<ApiError>);
    let mismatch = RwSignal::new(None::<String>);
    let done = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        err.set(None);
        if new.get_untracked() != repeat.get_untracked() {
            mismatch.set(Some("The two passwords differ.".to_owned()));
            return;
        }
        mismatch.set(None);
        let req = PasswordResetConfirm { token: token(), new_password: new.get_untracked() };
        busy.set(true);
        spawn_local(async move {
            let r = api::post::<_, ()>("/api/auth/password-reset/confirm", &req).await;
            busy.set(false);
            match r {
                Ok(()) => done.set(true),
                Err(e) => err.set(Some(e)),
            }
        });
    };
    let err_text = Signal::derive(move || err.with(|e| e.as_ref().map(ApiError::text)));
    view! {
        <Show
            when=move || !done.get()
            fallback=|| view! {
                <section class="auth-card" id=ids::RESET_DONE>
                    <h1>"Password changed"</h1>
                    <p>"Every session of your account was signed out. Sign in with the new password; your second factor is asked for as before."</p>
                    <p><a class="btn btn-primary" href="/sign-in">"Sign in"</a></p>
                </section>
            }
        >
            <form class="auth-card" id=ids::RESET_FORM on:submit=submit novalidate>
                <h1>"Choose a new password"</h1>
                <div class="field">
                    <label for=ids::RESET_NEW>"New password"</label>
                    <input type="password" id=ids::RESET_NEW autocomplete="new-password" required bind:value=new />
                    <p class="hint">"At least 8 characters."</p>
                </div>
                <div class="field">
                    <label for=ids::RESET_REPEAT>"New password again"</label>
                    <input type="password" id=ids::RESET_REPEAT autocomplete="new-password" required bind:value=repeat />
                    <ErrorText msg=mismatch />
                </div>
                <ErrorText msg=err_text id=ids::RESET_ERROR />
                <button type="submit" class="btn btn-primary btn-block" id=ids::RESET_SUBMIT disabled=move || busy.get()>
                    "Set the new password"
                </button>
            </form>
        </Show>
    }
}

/// Shown instead of every page while the user's password is one an admin set.
#[component]
pub fn MustChangePassword() -> impl IntoView {
    let session = use_session();
    let current = RwSignal::new(String::new());
    let new = RwSignal::new(String::new());
    let repeat = RwSignal::new(String::new());
    let busy = RwSignal::new(false);
    let err = RwSignal::new(None::<ApiError>);
    let mismatch = RwSignal::new(None::<String>);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        err.set(None);
        if new.get_untracked() != repeat.get_untracked() {
            mismatch.set(Some("The two new passwords differ.".to_owned()));
            return;
        }
        mismatch.set(None);
        let req = ChangePassword { current_password: current.get_untracked(), new_password: new.get_untracked() };
        busy.set(true);
        spawn_local(async move {
            let r = api::put::<_, ()>("/api/account/password", &req).await;
            busy.set(false);
            match r {
                Ok(()) => session.refresh(),
                Err(e) => err.set(Some(e)),
            }
        });
    };
    let err_text = Signal::derive(move || err.with(|e| e.as_ref().map(ApiError::text)));
    view! {
        <form class="auth-card" id=ids::MUST_CHANGE_FORM on:submit=submit novalidate>
            <h1>"Choose your own password"</h1>
            <p class="muted">"Your password was set by an administrator (or generated at installation). Replace it before you continue."</p>
            <div class="field">
                <label for=ids::MUST_CHANGE_CURRENT>"Current password"</label>
                <input type="password" id=ids::MUST_CHANGE_CURRENT autocomplete="current-password" bind:value=current />
            </div>
            <div class="field">
                <label for=ids::MUST_CHANGE_NEW>"New password"</label>
                <input type="password" id=ids::MUST_CHANGE_NEW autocomplete="new-password" bind:value=new />
            </div>
            <div class="field">
                <label for=ids::MUST_CHANGE_REPEAT>"New password again"</label>
                <input type="password" id=ids::MUST_CHANGE_REPEAT autocomplete="new-password" bind:value=repeat />
                <ErrorText msg=mismatch />
            </div>
            <ErrorText msg=err_text id=ids::MUST_CHANGE_ERROR />
            <button type="submit" class="btn btn-primary btn-block" id=ids::MUST_CHANGE_SUBMIT disabled=move || busy.get()>
                "Change password"
            </button>
        </form>
    }
}
