//! An application's sign-in through Twofold: the screens of an authorization request the
//! server parked behind a handle (`/sign-in?request=<handle>`).
//!
//! The server decides every step (`GET /api/oidc/requests/{handle}` says what is next:
//! sign in, step up, enrol, consent); this page only does what it is told, resumes the
//! request (`POST`), and sends the browser where the answer says. It never concludes on
//! its own that a request is satisfied, and it never goes anywhere but the
//! `redirect_to` the server gave.

use leptos::prelude::*;
use leptos::task::spawn_local;
use twofold_policy::Strength;
use twofold_policy::wire::{
    AccountState, AuthenticatorEnrollment, AuthorizationProgress, AuthorizationStep, CodeRequest, CurrentUser,
    RecoveryCodes, ResumeAuthorization, SecondFactorMethod, SendCodeResponse, VerifyRequest,
};

use super::account::{FactorFieldIds, SecondFactorFields, add_passkey, reauth_methods};
use super::signin::{SignInSteps, StepError, lock_countdown};
use crate::api::{self, ApiError, ApiResult};
use crate::ids;
use crate::session::use_session;
use crate::text;
use crate::widgets::{ErrorText, Loading, RecoveryCodesSheet, focus_when_mounted};

#[derive(Debug, Clone, PartialEq)]
enum Screen {
    Loading,
    /// Unknown, expired or already used: only the application can start a new one.
    Gone,
    Failed(String),
    Step(AuthorizationProgress),
    /// On the way back to the application.
    Leaving(String),
}

fn request_url(handle: &str) -> String {
    format!("/api/oidc/requests/{}", api::enc(handle))
}

/// Leaves for the application. `replace`, so Back does not return to a spent request.
fn leave(to: &str) {
    drop(window().location().replace(to));
}

#[component]
pub fn Authorize(handle: String) -> impl IntoView {
    let session = use_session();
    let screen = RwSignal::new(Screen::Loading);
    let handle = StoredValue::new(handle);

    let failed = move |e: ApiError| {
        screen.set(if e.status == 404 { Screen::Gone } else { Screen::Failed(e.text()) });
    };
    // Resumes the request (with the answer of the consent screen, if any) and follows
    // what the server says next.
    let resume = Callback::new(move |consent: Option<bool>| {
        spawn_local(async move {
            let body = ResumeAuthorization { consent };
            let r: ApiResult<AuthorizationProgress> = api::post(&request_url(&handle.get_value()), &body).await;
            match r {
                Ok(p) => match (p.next, p.redirect_to.clone()) {
                    (AuthorizationStep::Redirect, Some(to)) => {
                        screen.set(Screen::Leaving(p.application.clone()));
                        leave(&to);
                    }
                    _ => screen.set(Screen::Step(p)),
                },
                Err(e) => failed(e),
            }
        });
    });
    // Reads where the request stands; one that needs nothing more goes on at once.
    let load = move || {
        spawn_local(async move {
            match api::get::<AuthorizationProgress>(&request_url(&handle.get_value())).await {
                Ok(p) if p.next == AuthorizationStep::Redirect => resume.run(None),
                Ok(p) => screen.set(Screen::Step(p)),
                Err(e) => failed(e),
            }
        });
    };
    load();

    let signed_in = Callback::new(move |user: Option<CurrentUser>| {
        session.user.set(user);
        session.checked.set(true);
        if session.user.with_untracked(Option::is_none) {
            session.refresh();
        }
        resume.run(None);
    });

    move || {
        match screen.get() {
        Screen::Loading => view! { <Loading what="the sign-in request" /> }.into_any(),
        Screen::Gone => view! {
            <div class="auth-card" id=ids::AUTHORIZE_GONE>
                <h1>"This sign-in link has expired"</h1>
                <p>"It was already used, or it waited too long. Go back to the application and sign in from there again."</p>
            </div>
        }
        .into_any(),
        Screen::Failed(msg) => view! {
            <div class="auth-card">
                <h1>"Something went wrong"</h1>
                <ErrorText msg=Signal::derive(move || Some(msg.clone())) id=ids::AUTHORIZE_ERROR />
                <button type="button" class="btn" on:click=move |_| load()>"Try again"</button>
            </div>
        }
        .into_any(),
        Screen::Leaving(app) => view! {
            <div class="auth-card" id=ids::AUTHORIZE_CARD>
                <p role="status">{format!("Returning to {app}…")}</p>
            </div>
        }
        .into_any(),
        Screen::Step(p) => match p.next {
            AuthorizationStep::SignIn => {
                let tenant = RwSignal::new(p.tenant.clone().unwrap_or_default());
                view! {
                    <SignInSteps
                        tenant
                        started=RwSignal::new(true)
                        fixed_tenant=true
                        username=p.login_hint.clone().unwrap_or_default()
                        intro=format!("to continue to {}", p.application)
                        on_signed_in=signed_in
                    />
                }
                .into_any()
            }
            AuthorizationStep::StepUp => view! {
                <StepUp application=p.application.clone() min=p.min_strength on_done=Callback::new(move |()| resume.run(None)) />
            }
            .into_any(),
            AuthorizationStep::Enroll => {
                let back = format!("/account?request={}", api::enc(&handle.get_value()));
                view! {
                    <EnrollInline application=p.application.clone() min=p.min_strength account_page=back
                        on_done=Callback::new(move |()| resume.run(None)) />
                }
                .into_any()
            }
            AuthorizationStep::Consent => view! { <Consent progress=p on_answer=resume /> }.into_any(),
            // The server answers a request that needs nothing with where to go; until
            // then there is nothing to show.
            AuthorizationStep::Redirect => view! { <Loading what="the application" /> }.into_any(),
        },
    }
    }
}

/// Enrolment inside the application's sign-in: the session has no factor the rule
/// accepts. The factor is set up right here through the account API: an authenticator
/// app where strength `app` will do, a passkey where `phishing_resistant` is asked.
/// Confirming the app's first code, or registering the passkey, is the session's
/// second-factor proof, so the request then goes on without another one. A browser
/// without passkeys is sent to the account page (another device), which links back.
#[component]
fn EnrollInline(
    application: String,
    min: Option<Strength>,
    account_page: String,
    on_done: Callback<()>,
) -> impl IntoView {
    let need = min.map(text::strength_label).unwrap_or("a second factor");
    let inline = min.is_none_or(|s| s <= Strength::App);
    let with_passkey = !inline && crate::passkey::supported();
    let passkey_name = RwSignal::new("My passkey".to_owned());
    let application = StoredValue::new(application);
    let account_page = StoredValue::new(account_page);
    let enrollment = RwSignal::new(None::<AuthenticatorEnrollment>);
    let codes = RwSignal::new(None::<Vec<String>>);
    let code = RwSignal::new(String::new());
    let busy = RwSignal::new(false);
    let err = RwSignal::new(None::<ApiError>);
    let session = use_session();
    if inline {
        busy.set(true);
        spawn_local(async move {
            let r = api::post_empty::<AuthenticatorEnrollment>("/api/account/authenticator").await;
            busy.set(false);
            match r {
                Ok(e) => enrollment.set(Some(e)),
                Err(e) => err.set(Some(e)),
            }
        });
    }
    let confirm = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let c = code.get_untracked().trim().to_owned();
        if c.is_empty() {
            return;
        }
        busy.set(true);
        err.set(None);
        spawn_local(async move {
            let r = api::post::<_, RecoveryCodes>("/api/account/authenticator/confirm", &CodeRequest { code: c }).await;
            busy.set(false);
            match r {
                // The first factor comes with recovery codes, shown once before going on.
                Ok(r) if !r.recovery_codes.is_empty() => codes.set(Some(r.recovery_codes)),
                Ok(_) => on_done.run(()),
                Err(e) => {
                    code.set(String::new());
                    err.set(Some(e));
                }
            }
        });
    };
    let create_passkey = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        busy.set(true);
        err.set(None);
        let name = passkey_name.get_untracked();
        spawn_local(async move {
            let r = add_passkey(name).await;
            busy.set(false);
            match r {
                Ok(r) if !r.recovery_codes.is_empty() => codes.set(Some(r.recovery_codes)),
                Ok(_) => on_done.run(()),
                Err(e) => err.set(Some(e)),
            }
        });
    };
    let passkey_setup = move || {
        view! {
            <form on:submit=create_passkey novalidate class="step">
                <p>"A passkey signs you in with this device's screen lock or a security key, and only on this site."</p>
                <div class="field">
                    <label for=ids::ENROLL_PASSKEY_NAME>"Name for this passkey"</label>
                    <input type="text" id=ids::ENROLL_PASSKEY_NAME maxlength="64" bind:value=passkey_name />
                </div>
                <button type="submit" class="btn btn-primary" id=ids::ENROLL_PASSKEY_CREATE disabled=move || busy.get()>
                    {format!("Create a passkey and continue to {}", application.get_value())}
                </button>
            </form>
        }
    };
    let account = move || session.user.with(|u| u.as_ref().map(|u| u.username.clone()).unwrap_or_default());
    let setup = move || {
        enrollment.get().map(|e| {
            view! {
                <ol class="steps">
                    <li>
                        "Scan this QR code with your authenticator app:"
                        <img class="qr" id=ids::ENROLL_QR src=format!("data:image/png;base64,{}", e.qr_png_base64)
                            alt="QR code to add this account to an authenticator app" width="200" height="200" />
                    </li>
                    <li>"Or type this secret into the app:" <code class="secret" id=ids::ENROLL_SECRET>{e.secret.clone()}</code></li>
                    <li>"Enter the 6-digit code the app shows."</li>
                </ol>
                <form on:submit=confirm novalidate class="step">
                    <div class="field">
                        <label for=ids::ENROLL_CODE>"Code from your authenticator app"</label>
                        <input type="text" id=ids::ENROLL_CODE class="code-input" autocomplete="one-time-code"
                            inputmode="numeric" required bind:value=code />
                    </div>
                    <button type="submit" class="btn btn-primary" id=ids::ENROLL_CONFIRM disabled=move || busy.get()>
                        {format!("Confirm and continue to {}", application.get_value())}
                    </button>
                </form>
            }
        })
    };
    move || {
        match codes.get() {
        Some(list) => view! {
            <RecoveryCodesSheet codes=list account=account() on_done=on_done />
        }
        .into_any(),
        None => view! {
            <div class="auth-card wide" id=ids::AUTHORIZE_ENROLL>
                <h1>"Set up a stronger second factor"</h1>
                <p>{format!("{} asks for {need}, and your account has no such factor yet.", application.get_value())}</p>
                {if inline {
                    setup().into_any()
                } else if with_passkey {
                    passkey_setup().into_any()
                } else {
                    view! { <p>"This browser cannot create passkeys. Set one up on your account page from another device; a link there brings you back here."</p> }.into_any()
                }}
                <StepError err id=ids::ENROLL_ERROR />
                <div class="foot split">
                    <a class="btn" href=account_page.get_value() id=ids::AUTHORIZE_ENROLL_LINK>
                        {if inline { "Use another factor on your account page" } else { "Open your account page" }}
                    </a>
                </div>
            </div>
        }
        .into_any(),
    }
    }
}

/// Approve or refuse what an application asks for.
#[component]
fn Consent(progress: AuthorizationProgress, on_answer: Callback<Option<bool>>) -> impl IntoView {
    let session = use_session();
    let busy = RwSignal::new(false);
    let answer = move |yes: bool| {
        busy.set(true);
        on_answer.run(Some(yes));
    };
    let who = move || {
        session.user.with(|u| {
            u.as_ref().map(|u| match &u.tenant_name {
                Some(t) => format!("Signed in as {} in {t}.", u.username),
                None => format!("Signed in as {}.", u.username),
            })
        })
    };
    let heading = NodeRef::<leptos::html::H1>::new();
    focus_when_mounted(heading);
    view! {
        <div class="auth-card" id=ids::AUTHORIZE_CARD>
            <h1 node_ref=heading tabindex="-1">{format!("Allow {} to sign you in?", progress.application)}</h1>
            <p class="muted">{who}</p>
            <p>{format!("{} will be able to:", progress.application)}</p>
            <ul id=ids::CONSENT_SCOPES>
                {progress
                    .scopes
                    .iter()
                    .map(|s| view! { <li data-test=ids::CONSENT_SCOPE data-scope=s.clone()>{text::scope_label(s)}</li> })
                    .collect_view()}
            </ul>
            <p class="small">"You can withdraw this later on your account page."</p>
            <div class="actions">
                <button type="button" class="btn btn-primary" id=ids::CONSENT_ALLOW disabled=move || busy.get()
                    on:click=move |_| answer(true)>
                    "Allow"
                </button>
                <button type="button" class="btn" id=ids::CONSENT_DENY disabled=move || busy.get()
                    on:click=move |_| answer(false)>
                    "Deny"
                </button>
            </div>
        </div>
    }
}

/// A second factor again, no password: the session is fresh enough but its last
/// second factor is too weak or too old for the application.
#[component]
fn StepUp(application: String, min: Option<Strength>, on_done: Callback<()>) -> impl IntoView {
    let methods = RwSignal::new(None::<Vec<SecondFactorMethod>>);
    let method = RwSignal::new(None::<SecondFactorMethod>);
    let code = RwSignal::new(String::new());
    let sent = RwSignal::new(None::<SendCodeResponse>);
    let busy = RwSignal::new(false);
    let err = RwSignal::new(None::<String>);
    // The step-up's own answer: a lockout shows its countdown, as at sign-in.
    let failed = RwSignal::new(None::<ApiError>);
    let lock_left = lock_countdown(failed);
    spawn_local(async move {
        match api::get::<AccountState>("/api/account").await {
            Ok(a) => {
                let mut all = reauth_methods(&a);
                // A passkey first where the scope allows it: the strongest factor, and
                // the only one an application asking for `phishing_resistant` accepts.
                if crate::passkey::supported() && a.policy.allowed_providers.passkey && !a.factors.passkeys.is_empty() {
                    all.insert(0, SecondFactorMethod::Passkey);
                }
                let usable: Vec<SecondFactorMethod> =
                    all.into_iter().filter(|m| min.is_none_or(|s| m.strength() >= s)).collect();
                method.set(usable.first().copied());
                methods.set(Some(usable));
            }
            Err(e) => err.set(Some(e.text())),
        }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(m) = method.get_untracked() else { return };
        let settle = move |r: ApiResult<()>| {
            busy.set(false);
            match r {
                Ok(()) => on_done.run(()),
                Err(e) => {
                    code.set(String::new());
                    failed.set(Some(e));
                }
            }
        };
        if m == SecondFactorMethod::Passkey {
            busy.set(true);
            err.set(None);
            failed.set(None);
            let (start, finish) = ("/api/auth/step-up/passkey/options", "/api/auth/step-up/passkey");
            spawn_local(async move { settle(crate::passkey::ceremony(start, None, false, finish, false).await) });
            return;
        }
        let c = code.get_untracked().trim().to_owned();
        if c.is_empty() {
            err.set(Some("Enter the code first.".to_owned()));
            return;
        }
        let req = VerifyRequest { method: m, code: c, remember_browser: false };
        busy.set(true);
        err.set(None);
        failed.set(None);
        spawn_local(async move { settle(api::post::<_, ()>("/api/auth/step-up", &req).await) });
    };
    let is_passkey = move || method.get() == Some(SecondFactorMethod::Passkey);
    let need = min.map(text::strength_label).unwrap_or("your second factor");
    let form = move |list: Vec<SecondFactorMethod>| {
        view! {
            <form id=ids::STEPUP_FORM on:submit=submit novalidate class="stack-form">
                <SecondFactorFields methods=list method code sent busy err
                    ids=FactorFieldIds { method: ids::STEPUP_METHOD, send: ids::STEPUP_SEND_CODE, code: ids::STEPUP_CODE } />
                <button type="submit" class="btn btn-primary btn-block" id=ids::STEPUP_SUBMIT
                    disabled=move || busy.get() || lock_left.get().is_some()>
                    {move || match (busy.get(), is_passkey()) {
                        (true, _) => "Checking…",
                        (false, true) => "Use my passkey",
                        (false, false) => "Confirm",
                    }}
                </button>
            </form>
        }
    };
    view! {
        <div class="auth-card" id=ids::AUTHORIZE_CARD>
            <h1>"Confirm it's you"</h1>
            <p class="muted">{format!("{application} asks for a recent second factor ({need}). No password needed.")}</p>
            {move || match methods.get() {
                None => view! { <Loading what="your second factors" /> }.into_any(),
                Some(list) if list.is_empty() => view! {
                    <p>"None of your second factors is strong enough. Set a stronger one up on your account page."</p>
                }
                .into_any(),
                Some(list) => form(list).into_any(),
            }}
            <ErrorText msg=err id=ids::STEPUP_ERROR />
            <StepError err=failed id=ids::STEPUP_ERROR lock_left />
        </div>
    }
}
