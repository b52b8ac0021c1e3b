//! Sign-in, every step of the pipeline on one page: password, then either the second
//! factor (choose a provider, send a code for email/SMS, verify, optionally remember
//! the browser) or enrolment when a factor is required but missing (authenticator with
//! QR and secret, email or phone, or "Not now" during a grace period), then the
//! recovery codes once when enrolment created the first factor.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::{use_navigate, use_query_map};
use twofold_policy::vocab::Provider;
use twofold_policy::wire::{
    AuthenticatorEnrollment, CodeRequest, CurrentUser, EmailRequest, ErrorCode, PhoneRequest, ProviderOffer,
    SecondFactorMethod, SendCodeRequest, SendCodeResponse, SignInRequest, SignInResponse, SignInStatus, VerifyRequest,
};

use crate::api::{self, ApiError, ApiResult};
use crate::ids;
use crate::model;
use crate::passkey;
use crate::session::use_session;
use crate::text;
use crate::widgets::{ErrorText, RecoveryCodesSheet, WeakerTag, focus_when_mounted, scroll_to_when_mounted};

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Password,
    TwoFactor(SignInResponse),
    Enroll(SignInResponse),
    /// Signed in; the codes of the first factor are shown once before moving on.
    Codes {
        codes: Vec<String>,
        user: Option<CurrentUser>,
    },
}

/// Seconds left of a timed second-factor lock, counting down once a second from the
/// `retry_after_seconds` of a `locked_out` answer; at zero the lock message goes away.
/// `None` when not locked, or locked until an administrator unlocks.
pub(crate) fn lock_countdown(err: RwSignal<Option<ApiError>>) -> RwSignal<Option<u64>> {
    let left = RwSignal::new(None::<u64>);
    let ticker = StoredValue::new(None::<IntervalHandle>);
    Effect::new(move |_| {
        let secs =
            err.with(|e| e.as_ref().filter(|e| e.is(ErrorCode::LockedOut)).and_then(|e| e.body.retry_after_seconds));
        if let Some(t) = ticker.get_value() {
            t.clear();
        }
        ticker.set_value(None);
        left.set(secs);
        if secs.is_some() {
            let tick = move || {
                left.update(|l| *l = l.map(|s| s.saturating_sub(1)));
                if left.get_untracked() == Some(0) {
                    left.set(None);
                    err.set(None);
                }
            };
            ticker.set_value(set_interval_with_handle(tick, std::time::Duration::from_secs(1)).ok());
        }
    });
    left
}

/// Shows an API error of a step: a lockout in its own container (tests and people look
/// for it specifically), with the time left counting down, anything else in the step's
/// error line.
#[component]
pub(crate) fn StepError(
    err: RwSignal<Option<ApiError>>,
    id: &'static str,
    #[prop(optional)] lock_left: Option<RwSignal<Option<u64>>>,
) -> impl IntoView {
    let locked = Signal::derive(move || {
        err.with(|e| e.as_ref().filter(|e| e.is(ErrorCode::LockedOut)).map(ApiError::text)).map(|text| match lock_left
            .and_then(|l| l.get())
        {
            Some(s) => {
                format!("Too many wrong codes: second-factor sign-in is locked. Try again in {}.", text::countdown(s))
            }
            None => text,
        })
    });
    let other =
        Signal::derive(move || err.with(|e| e.as_ref().filter(|e| !e.is(ErrorCode::LockedOut)).map(ApiError::text)));
    view! {
        <ErrorText msg=locked id=ids::LOCKOUT_MESSAGE />
        <ErrorText msg=other id=id />
    }
}

#[component]
pub fn SignIn() -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    let query = use_query_map();
    // An application's authorization request waiting for this browser: its own flow.
    if let Some(handle) = query.with_untracked(|q| q.get("request")) {
        return view! { <div class="auth-wrap"><super::authorize::Authorize handle /></div> }.into_any();
    }
    let tenant = RwSignal::new(query.with_untracked(|q| q.get("tenant")).unwrap_or_default());
    let started = RwSignal::new(false);

    // Someone already signed in who opens this page goes where they were heading.
    let nav = navigate.clone();
    Effect::new(move |_| {
        if session.checked.get() && session.user.with(Option::is_some) && !started.get_untracked() {
            let next = query.with_untracked(|q| q.get("next"));
            nav(&model::after_sign_in(next.as_deref()), Default::default());
        }
    });
    let signed_in = Callback::new(move |user: Option<CurrentUser>| {
        session.user.set(user);
        session.checked.set(true);
        if session.user.with_untracked(Option::is_none) {
            session.refresh();
        }
        let next = query.with_untracked(|q| q.get("next"));
        navigate(&model::after_sign_in(next.as_deref()), Default::default());
    });
    view! {
        <div class="auth-wrap">
            <SignInSteps tenant started on_signed_in=signed_in />
        </div>
    }
    .into_any()
}

/// The sign-in steps, from the password to a session: on their own page, or for an
/// application's request (`fixed_tenant`: the request names the tenant, so there is no
/// field for it). `started` turns true once the password was accepted, so a page that
/// sends signed-in visitors away leaves a sign-in under way alone.
#[component]
pub(crate) fn SignInSteps(
    tenant: RwSignal<String>,
    started: RwSignal<bool>,
    on_signed_in: Callback<Option<CurrentUser>>,
    #[prop(optional)] fixed_tenant: bool,
    #[prop(optional)] username: Option<String>,
    #[prop(optional)] intro: Option<String>,
) -> impl IntoView {
    let step = RwSignal::new(Step::Password);
    // Completes the sign-in: codes first when there are any, then the caller's next step.
    let finish = Callback::new(move |resp: SignInResponse| match resp.recovery_codes {
        Some(codes) if !codes.is_empty() => step.set(Step::Codes { codes, user: resp.user }),
        _ => on_signed_in.run(resp.user),
    });
    let after_password = Callback::new(move |resp: SignInResponse| {
        started.set(true);
        match resp.status {
            SignInStatus::SignedIn => finish.run(resp),
            SignInStatus::RequiresTwoFactor => step.set(Step::TwoFactor(resp)),
            SignInStatus::RequiresEnrollment => step.set(Step::Enroll(resp)),
        }
    });
    let start_over = Callback::new(move |()| step.set(Step::Password));
    let username = username.unwrap_or_default();
    move || match step.get() {
        Step::Password => view! {
            <PasswordStep tenant fixed_tenant username=username.clone() intro=intro.clone() on_answer=after_password />
        }
        .into_any(),
        Step::TwoFactor(resp) => view! { <TwoFactorStep resp on_done=finish start_over /> }.into_any(),
        Step::Enroll(resp) => view! { <EnrollStep resp on_done=finish start_over /> }.into_any(),
        Step::Codes { codes, user } => {
            let account = user.as_ref().map(|u| match &u.tenant_name {
                Some(t) => format!("{t}-{}", u.username),
                None => u.username.clone(),
            });
            let done = Callback::new(move |()| on_signed_in.run(user.clone()));
            view! {
                <div class="auth-card wide">
                    <RecoveryCodesSheet codes account=account.unwrap_or_else(|| "your account".to_owned()) on_done=done />
                </div>
            }
            .into_any()
        }
    }
}

#[component]
fn PasswordStep(
    tenant: RwSignal<String>,
    fixed_tenant: bool,
    username: String,
    intro: Option<String>,
    on_answer: Callback<SignInResponse>,
) -> impl IntoView {
    let prefilled = !username.is_empty();
    let username = RwSignal::new(username);
    let password = RwSignal::new(String::new());
    let busy = RwSignal::new(false);
    let err = RwSignal::new(None::<ApiError>);
    let first = NodeRef::<leptos::html::Input>::new();
    let user_ref = NodeRef::<leptos::html::Input>::new();
    let pass_ref = NodeRef::<leptos::html::Input>::new();
    // The first field that still needs typing gets the focus.
    match (fixed_tenant, prefilled) {
        (false, _) => focus_when_mounted(first),
        (true, false) => focus_when_mounted(user_ref),
        (true, true) => focus_when_mounted(pass_ref),
    }
    // Passkeys offered in the user name field's autofill while the page is open; picking
    // one signs in without a password.
    spawn_local(async move {
        if passkey::autofill_available().await
            && let Ok(resp) = passwordless(true).await
        {
            on_answer.run(resp);
        }
    });
    on_cleanup(passkey::abort);
    let with_passkey = move |_| passkey_button(busy, err, on_answer, passwordless(false));
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if busy.get_untracked() {
            return;
        }
        passkey::abort();
        let t = tenant.get_untracked().trim().to_owned();
        let req = SignInRequest {
            tenant: (!t.is_empty()).then_some(t),
            username: username.get_untracked().trim().to_owned(),
            password: password.get_untracked(),
        };
        busy.set(true);
        err.set(None);
        spawn_local(async move {
            let r: ApiResult<SignInResponse> = api::post("/api/auth/sign-in", &req).await;
            busy.set(false);
            match r {
                Ok(resp) => {
                    password.set(String::new());
                    on_answer.run(resp);
                }
                Err(e) => err.set(Some(e)),
            }
        });
    };
    view! {
        <form class="auth-card" id=ids::SIGNIN_FORM on:submit=submit novalidate>
            <h1>"Sign in"</h1>
            {intro.map(|i| view! { <p class="muted" id=ids::AUTHORIZE_APPLICATION>{i}</p> })}
            {if fixed_tenant {
                // The application's issuer names the tenant: nothing to choose.
                let t = tenant.get_untracked();
                (!t.is_empty()).then(|| view! { <p class="small">"Organisation: " <strong>{t}</strong></p> }).into_any()
            } else {
                view! {
                    <div class="field">
                        <label for=ids::SIGNIN_TENANT>"Tenant"</label>
                        <input
                            node_ref=first
                            type="text"
                            id=ids::SIGNIN_TENANT
                            name="tenant"
                            autocomplete="organization"
                            autocapitalize="none"
                            spellcheck="false"
                            aria-describedby="signin-tenant-help"
                            bind:value=tenant
                        />
                        <p class="hint" id="signin-tenant-help">"Your organisation's short name. Leave empty for a host account."</p>
                    </div>
                }
                .into_any()
            }}
            <div class="field">
                <label for=ids::SIGNIN_USERNAME>"User name"</label>
                <input
                    node_ref=user_ref
                    type="text"
                    id=ids::SIGNIN_USERNAME
                    name="username"
                    autocomplete="username webauthn"
                    autocapitalize="none"
                    spellcheck="false"
                    required
                    bind:value=username
                />
            </div>
            <div class="field">
                <label for=ids::SIGNIN_PASSWORD>"Password"</label>
                <input
                    node_ref=pass_ref
                    type="password"
                    id=ids::SIGNIN_PASSWORD
                    name="password"
                    autocomplete="current-password"
                    required
                    bind:value=password
                />
            </div>
            <StepError err id=ids::SIGNIN_ERROR />
            <button type="submit" class="btn btn-primary btn-block" id=ids::SIGNIN_SUBMIT disabled=move || busy.get()>
                {move || if busy.get() { "Signing in…" } else { "Sign in" }}
            </button>
            {passkey::supported()
                .then(|| {
                    view! {
                        <button
                            type="button"
                            class="btn btn-block"
                            id=ids::SIGNIN_PASSKEY
                            on:click=with_passkey
                            disabled=move || busy.get()
                        >
                            "Sign in with a passkey"
                        </button>
                    }
                })}
            <p class="small"><a href="/forgot-password" id=ids::SIGNIN_FORGOT>"Forgot your password?"</a></p>
        </form>
    }
}

/// A passwordless sign-in. `conditional` waits for a pick from autofill instead of
/// asking at once.
async fn passwordless(conditional: bool) -> ApiResult<SignInResponse> {
    passkey::ceremony("/api/auth/passkey/options", None, conditional, "/api/auth/passkey", false).await
}

/// What every passkey button of the sign-in does: busy while the ceremony runs, then
/// the answer onwards or the error shown.
fn passkey_button(
    busy: RwSignal<bool>,
    err: RwSignal<Option<ApiError>>,
    on_answer: Callback<SignInResponse>,
    ceremony: impl Future<Output = ApiResult<SignInResponse>> + 'static,
) {
    busy.set(true);
    err.set(None);
    spawn_local(async move {
        let r = ceremony.await;
        busy.set(false);
        match r {
            Ok(resp) => on_answer.run(resp),
            Err(e) => err.set(Some(e)),
        }
    });
}

fn method_id(m: SecondFactorMethod) -> &'static str {
    match m {
        SecondFactorMethod::Authenticator => ids::PROVIDER_AUTHENTICATOR,
        SecondFactorMethod::Email => ids::PROVIDER_EMAIL,
        SecondFactorMethod::Sms => ids::PROVIDER_SMS,
        SecondFactorMethod::RecoveryCode => ids::PROVIDER_RECOVERY_CODE,
        SecondFactorMethod::Passkey => ids::PROVIDER_PASSKEY,
    }
}

fn as_method(p: Provider) -> SecondFactorMethod {
    match p {
        Provider::Authenticator => SecondFactorMethod::Authenticator,
        Provider::Email => SecondFactorMethod::Email,
        Provider::Sms => SecondFactorMethod::Sms,
        Provider::Passkey => SecondFactorMethod::Passkey,
    }
}

/// One choice of second factor: what it is, and where a code would go.
#[derive(Debug, Clone, PartialEq)]
struct Choice {
    method: SecondFactorMethod,
    weaker: bool,
    detail: String,
}

fn choices(providers: &[ProviderOffer], recovery: bool) -> Vec<Choice> {
    let mut out: Vec<Choice> = providers
        .iter()
        .map(|o| Choice {
            method: as_method(o.provider),
            weaker: o.weaker,
            detail: match (o.provider, &o.destination) {
                (Provider::Authenticator, _) => "The 6-digit code from your app".to_owned(),
                (Provider::Passkey, _) => "Your fingerprint, face, screen lock or security key".to_owned(),
                (_, Some(d)) => format!("Send a code to {d}"),
                (_, None) => "Send a code".to_owned(),
            },
        })
        .collect();
    if recovery {
        out.push(Choice {
            method: SecondFactorMethod::RecoveryCode,
            weaker: false,
            detail: "One of the codes you saved when you set up two-factor sign-in".to_owned(),
        });
    }
    out
}

#[component]
fn TwoFactorStep(resp: SignInResponse, on_done: Callback<SignInResponse>, start_over: Callback<()>) -> impl IntoView {
    let options = choices(&resp.providers, resp.recovery_code_available);
    let method = RwSignal::new(options.first().map(|c| c.method));
    let code = RwSignal::new(String::new());
    let remember = RwSignal::new(false);
    let sent = RwSignal::new(None::<SendCodeResponse>);
    let busy = RwSignal::new(false);
    let err = RwSignal::new(None::<ApiError>);
    let expired = Signal::derive(move || err.with(|e| e.as_ref().is_some_and(|e| e.is(ErrorCode::SignInExpired))));
    let offered = resp.remember_browser_offered;
    let days = resp.remember_browser_days;
    let code_ref = NodeRef::<leptos::html::Input>::new();
    focus_when_mounted(code_ref);

    let pick = move |m: SecondFactorMethod| {
        if method.get_untracked() != Some(m) {
            method.set(Some(m));
            code.set(String::new());
            sent.set(None);
            err.set(None);
        }
    };
    let send = move |_| {
        let provider = match method.get_untracked() {
            Some(SecondFactorMethod::Email) => Provider::Email,
            Some(SecondFactorMethod::Sms) => Provider::Sms,
            _ => return,
        };
        busy.set(true);
        err.set(None);
        spawn_local(async move {
            let r =
                api::post::<_, SendCodeResponse>("/api/auth/sign-in/send-code", &SendCodeRequest { method: provider })
                    .await;
            busy.set(false);
            match r {
                Ok(s) => sent.set(Some(s)),
                Err(e) => err.set(Some(e)),
            }
        });
    };
    let verify = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(m) = method.get_untracked() else { return };
        let c = code.get_untracked().trim().to_owned();
        if c.is_empty() {
            err.set(Some(local_error("Enter the code first.")));
            return;
        }
        let req = VerifyRequest { method: m, code: c, remember_browser: offered && remember.get_untracked() };
        busy.set(true);
        err.set(None);
        spawn_local(async move {
            let r = api::post::<_, SignInResponse>("/api/auth/sign-in/verify", &req).await;
            busy.set(false);
            match r {
                Ok(resp) => on_done.run(resp),
                Err(e) => {
                    code.set(String::new());
                    err.set(Some(e));
                }
            }
        });
    };

    let use_passkey = move |_| {
        let remember_browser = offered && remember.get_untracked();
        let (start, finish) = ("/api/auth/sign-in/passkey/options", "/api/auth/sign-in/passkey");
        passkey_button(busy, err, on_done, passkey::ceremony(start, None, false, finish, remember_browser));
    };
    let is_passkey = move || method.get() == Some(SecondFactorMethod::Passkey);

    // While locked, Verify is disabled and the message counts down to the end of the lock.
    let lock_left = lock_countdown(err);
    let needs_send = move || matches!(method.get(), Some(SecondFactorMethod::Email | SecondFactorMethod::Sms));
    let code_label = move || match method.get() {
        Some(SecondFactorMethod::RecoveryCode) => "Recovery code",
        Some(SecondFactorMethod::Authenticator) => "Code from your authenticator app",
        _ => "Code",
    };
    let numeric = move || !matches!(method.get(), Some(SecondFactorMethod::RecoveryCode));

    view! {
        <div class="auth-card">
            <h1>"Confirm it's you"</h1>
            <p class="muted">"Your password was right. Now use your second factor."</p>
            <fieldset class="choices">
                <legend>"Choose a second factor"</legend>
                {options
                    .into_iter()
                    .map(|c| {
                        let m = c.method;
                        view! {
                            <button
                                type="button"
                                class="choice"
                                id=method_id(m)
                                aria-pressed=move || if method.get() == Some(m) { "true" } else { "false" }
                                on:click=move |_| pick(m)
                            >
                                <span class="choice-title">
                                    {text::method_label(m)}
                                    {c.weaker.then(|| view! { " " <WeakerTag /> })}
                                </span>
                                <span class="choice-detail">{c.detail}</span>
                            </button>
                        }
                    })
                    .collect_view()}
            </fieldset>
            <Show when=is_passkey>
                {offered
                    .then(|| {
                        view! {
                            <div class="check">
                                <input type="checkbox" id=ids::REMEMBER_BROWSER bind:checked=remember />
                                <label for=ids::REMEMBER_BROWSER>
                                    {format!("Remember this browser for {}", text::count(u64::from(days), "day", "days"))}
                                </label>
                            </div>
                        }
                    })}
                <StepError err id=ids::VERIFY_ERROR lock_left />
                <button
                    type="button"
                    class="btn btn-primary btn-block"
                    id=ids::PASSKEY_VERIFY
                    on:click=use_passkey
                    disabled=move || busy.get()
                >
                    {move || if busy.get() { "Waiting for your passkey…" } else { "Use your passkey" }}
                </button>
            </Show>
            <Show when=move || method.get().is_some() && !is_passkey()>
                <form on:submit=verify novalidate>
                    <Show when=needs_send>
                        <div class="send-row">
                            <button type="button" class="btn" id=ids::SEND_CODE on:click=send disabled=move || busy.get()>
                                {move || if sent.with(Option::is_some) { "Send a new code" } else { "Send code" }}
                            </button>
                            {move || {
                                sent.get()
                                    .map(|s| {
                                        view! {
                                            <p class="notice" role="status" id=ids::CODE_SENT>
                                                {format!(
                                                    "We sent a code to {}. It is valid for {}.",
                                                    s.sent_to,
                                                    text::duration_words(u64::from(s.expires_in_seconds)),
                                                )}
                                            </p>
                                        }
                                    })
                            }}
                        </div>
                    </Show>
                    <div class="field">
                        <label for=ids::CODE_INPUT>{code_label}</label>
                        <input
                            node_ref=code_ref
                            type="text"
                            id=ids::CODE_INPUT
                            class="code-input"
                            name="code"
                            autocomplete="one-time-code"
                            inputmode=move || if numeric() { "numeric" } else { "text" }
                            autocapitalize="none"
                            spellcheck="false"
                            required
                            bind:value=code
                        />
                    </div>
                    {offered
                        .then(|| {
                            view! {
                                <div class="check">
                                    <input type="checkbox" id=ids::REMEMBER_BROWSER bind:checked=remember />
                                    <label for=ids::REMEMBER_BROWSER>
                                        {format!("Remember this browser for {}", text::count(u64::from(days), "day", "days"))}
                                    </label>
                                </div>
                            }
                        })}
                    <StepError err id=ids::VERIFY_ERROR lock_left />
                    <button
                        type="submit"
                        class="btn btn-primary btn-block"
                        id=ids::VERIFY_SUBMIT
                        disabled=move || busy.get() || err.with(|e| e.as_ref().is_some_and(|e| e.is(ErrorCode::LockedOut)))
                    >
                        {move || if busy.get() { "Checking…" } else { "Verify and sign in" }}
                    </button>
                </form>
            </Show>
            <p class="foot">
                <button
                    type="button"
                    class=move || if expired.get() { "btn btn-primary" } else { "linklike" }
                    id=ids::SIGNIN_START_OVER
                    on:click=move |_| start_over.run(())
                >
                    "Start over with your password"
                </button>
            </p>
        </div>
    }
}

fn local_error(message: &str) -> ApiError {
    ApiError {
        status: 0,
        body: twofold_policy::wire::ErrorBody {
            error: "local".to_owned(),
            message: message.to_owned(),
            field: None,
            retry_after_seconds: None,
            attempts_left: None,
        },
    }
}

/// Days (rounded up) from now until an RFC 3339 instant, by the browser's clock.
fn days_until(rfc3339: &str) -> Option<u64> {
    let end = js_sys::Date::parse(rfc3339);
    if end.is_nan() {
        return None;
    }
    let ms = end - js_sys::Date::now();
    // Whole days, rounded up, of a finite and positive span; the cast cannot wrap.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some(if ms <= 0.0 { 0 } else { (ms / 86_400_000.0).ceil() as u64 })
}

#[component]
fn EnrollStep(resp: SignInResponse, on_done: Callback<SignInResponse>, start_over: Callback<()>) -> impl IntoView {
    let chosen = RwSignal::new(None::<Provider>);
    let enrollment = RwSignal::new(None::<AuthenticatorEnrollment>);
    let address = RwSignal::new(String::new());
    let passkey_name = RwSignal::new("My passkey".to_owned());
    let code = RwSignal::new(String::new());
    let sent = RwSignal::new(None::<SendCodeResponse>);
    let busy = RwSignal::new(false);
    let err = RwSignal::new(None::<ApiError>);
    let enrollable = resp.enrollable.clone();
    let single = enrollable.len() == 1;
    let heading = NodeRef::<leptos::html::H1>::new();
    focus_when_mounted(heading);

    let choose = move |p: Provider| {
        // Choosing the same thing again keeps what is under way (a new secret would
        // silently invalidate the one the user may be scanning).
        let same = chosen.get_untracked() == Some(p);
        if same && (busy.get_untracked() || p != Provider::Authenticator || enrollment.with_untracked(Option::is_some))
        {
            return;
        }
        chosen.set(Some(p));
        enrollment.set(None);
        sent.set(None);
        code.set(String::new());
        err.set(None);
        if p == Provider::Authenticator {
            busy.set(true);
            spawn_local(async move {
                let r = api::post_empty::<AuthenticatorEnrollment>("/api/auth/enroll/authenticator").await;
                busy.set(false);
                match r {
                    Ok(e) => enrollment.set(Some(e)),
                    Err(e) => err.set(Some(e)),
                }
            });
        }
    };
    // With one way to enrol there is nothing to choose: start it straight away (the
    // choice stays visible, so people see what they are setting up).
    if single && let Some(p) = enrollable.first().copied() {
        choose(p);
    }

    let send = move |_| {
        let Some(p) = chosen.get_untracked() else { return };
        let a = address.get_untracked().trim().to_owned();
        busy.set(true);
        err.set(None);
        spawn_local(async move {
            let r = match p {
                Provider::Email => {
                    let req = EmailRequest { email: (!a.is_empty()).then_some(a) };
                    api::post::<_, SendCodeResponse>("/api/auth/enroll/email", &req).await
                }
                Provider::Sms => {
                    let req = PhoneRequest { phone: (!a.is_empty()).then_some(a) };
                    api::post::<_, SendCodeResponse>("/api/auth/enroll/phone", &req).await
                }
                Provider::Authenticator | Provider::Passkey => return,
            };
            busy.set(false);
            match r {
                Ok(s) => sent.set(Some(s)),
                Err(e) => err.set(Some(e)),
            }
        });
    };
    let confirm = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(p) = chosen.get_untracked() else { return };
        let c = code.get_untracked().trim().to_owned();
        if c.is_empty() {
            err.set(Some(local_error("Enter the code first.")));
            return;
        }
        let url = match p {
            Provider::Authenticator => "/api/auth/enroll/authenticator/confirm",
            Provider::Email => "/api/auth/enroll/email/confirm",
            Provider::Sms => "/api/auth/enroll/phone/confirm",
            Provider::Passkey => return,
        };
        busy.set(true);
        err.set(None);
        spawn_local(async move {
            let r = api::post::<_, SignInResponse>(url, &CodeRequest { code: c }).await;
            busy.set(false);
            match r {
                Ok(resp) => on_done.run(resp),
                Err(e) => {
                    code.set(String::new());
                    err.set(Some(e));
                }
            }
        });
    };
    let create_passkey = move |_| {
        let name = Some(passkey_name.get_untracked());
        let (start, finish) = ("/api/auth/enroll/passkey", "/api/auth/enroll/passkey/confirm");
        passkey_button(busy, err, on_done, passkey::ceremony(start, name, false, finish, false));
    };
    let postpone = move |_| {
        busy.set(true);
        err.set(None);
        spawn_local(async move {
            let r = api::post_empty::<SignInResponse>("/api/auth/enroll/postpone").await;
            busy.set(false);
            match r {
                Ok(resp) => on_done.run(resp),
                Err(e) => err.set(Some(e)),
            }
        });
    };

    let grace = resp.grace_until.clone().map(|g| {
        let left = days_until(&g).map(|d| format!(" ({} left)", text::count(d, "day", "days"))).unwrap_or_default();
        format!("You can postpone this until {}{left}.", text::format_time(&g))
    });
    let can_postpone = resp.can_postpone;

    let code_form = move |label: &'static str| {
        view! {
            <form on:submit=confirm novalidate class="step">
                <div class="field">
                    <label for=ids::ENROLL_CODE>{label}</label>
                    <input
                        type="text"
                        id=ids::ENROLL_CODE
                        class="code-input"
                        autocomplete="one-time-code"
                        inputmode="numeric"
                        required
                        bind:value=code
                    />
                </div>
                <button type="submit" class="btn btn-primary" id=ids::ENROLL_CONFIRM disabled=move || busy.get()>
                    "Confirm and sign in"
                </button>
            </form>
        }
    };

    let panel = move || match chosen.get() {
        None => ().into_any(),
        Some(Provider::Passkey) => view! {
            <div class="step">
                <div class="field">
                    <label for=ids::ENROLL_PASSKEY_NAME>"A name for this passkey"</label>
                    <input type="text" id=ids::ENROLL_PASSKEY_NAME maxlength="64" bind:value=passkey_name />
                </div>
                <button
                    type="button"
                    class="btn btn-primary"
                    id=ids::ENROLL_PASSKEY_CREATE
                    on:click=create_passkey
                    disabled=move || busy.get()
                >
                    {move || if busy.get() { "Waiting for your passkey…" } else { "Create passkey and sign in" }}
                </button>
            </div>
        }
        .into_any(),
        Some(Provider::Authenticator) => match enrollment.get() {
            None => view! { <p class="muted">{move || if busy.get() { "Preparing your secret…" } else { "" }}</p> }
                .into_any(),
            Some(e) => {
                let block = NodeRef::<leptos::html::Div>::new();
                scroll_to_when_mounted(block);
                view! {
                <div class="enroll-auth" node_ref=block>
                    <ol class="steps">
                        <li>
                            "Scan this QR code with your authenticator app:"
                            <img
                                class="qr"
                                id=ids::ENROLL_QR
                                src=format!("data:image/png;base64,{}", e.qr_png_base64)
                                alt="QR code to add this account to an authenticator app"
                                width="200"
                                height="200"
                            />
                        </li>
                        <li>
                            "Or type this secret into the app:"
                            <code class="secret" id=ids::ENROLL_SECRET>{e.secret.clone()}</code>
                        </li>
                        <li>"Enter the 6-digit code the app shows."</li>
                    </ol>
                    {code_form("Code from your authenticator app")}
                </div>
                }
                .into_any()
            }
        },
        Some(p) => {
            let (label, id, kind, auto, hint) = match p {
                Provider::Sms => (
                    "Mobile phone number",
                    ids::ENROLL_PHONE_NUMBER,
                    "tel",
                    "tel",
                    "In international format, e.g. +14155550100.",
                ),
                _ => (
                    "Email address",
                    ids::ENROLL_EMAIL_ADDRESS,
                    "email",
                    "email",
                    "Leave empty to use the address already on your account.",
                ),
            };
            view! {
                <div class="step">
                    <div class="field">
                        <label for=id>{label}</label>
                        <input type=kind id=id autocomplete=auto bind:value=address aria-describedby="enroll-address-help" />
                        <p class="hint" id="enroll-address-help">{hint}</p>
                    </div>
                    <button type="button" class="btn" id=ids::ENROLL_SEND_CODE on:click=send disabled=move || busy.get()>
                        {move || if sent.with(Option::is_some) { "Send a new code" } else { "Send code" }}
                    </button>
                    {move || sent.get().map(|s| view! {
                        <p class="notice" role="status" id=ids::CODE_SENT>
                            {format!("We sent a code to {}. It is valid for {}.", s.sent_to, text::duration_words(u64::from(s.expires_in_seconds)))}
                        </p>
                    })}
                </div>
                {move || sent.with(Option::is_some).then(|| code_form("Code from the message"))}
            }
            .into_any()
        }
    };

    view! {
        <div class="auth-card wide">
            <h1 node_ref=heading tabindex="-1">"Set up two-factor sign-in"</h1>
            <p>"A second factor is required for your account, and you have none yet. Set one up to continue."</p>
            {grace.map(|g| view! { <p class="notice warn" id=ids::ENROLL_GRACE>{g}</p> })}
            {
                view! {
                        <fieldset class="choices">
                            <legend>{if single { "What you will set up" } else { "Choose what to set up" }}</legend>
                            {enrollable
                                .iter()
                                .map(|p| {
                                    let p = *p;
                                    let (id, detail) = match p {
                                        Provider::Authenticator => (ids::ENROLL_CHOOSE_AUTHENTICATOR, "An app such as Aegis, Google Authenticator or 1Password"),
                                        Provider::Email => (ids::ENROLL_CHOOSE_EMAIL, "A code sent to your email address"),
                                        Provider::Sms => (ids::ENROLL_CHOOSE_SMS, "A code sent to your phone by SMS"),
                                        Provider::Passkey => (ids::ENROLL_CHOOSE_PASSKEY, "Your fingerprint, face, screen lock or a security key: the strongest choice"),
                                    };
                                    view! {
                                        <button
                                            type="button"
                                            class="choice"
                                            id=id
                                            aria-pressed=move || if chosen.get() == Some(p) { "true" } else { "false" }
                                            on:click=move |_| choose(p)
                                        >
                                            <span class="choice-title">
                                                {text::provider_label(p)}
                                                {p.is_weaker().then(|| view! { " " <WeakerTag /> })}
                                            </span>
                                            <span class="choice-detail">{detail}</span>
                                        </button>
                                    }
                                })
                                .collect_view()}
                        </fieldset>
                }
            }
            {panel}
            <StepError err id=ids::ENROLL_ERROR />
            <div class="foot split">
                {can_postpone
                    .then(|| {
                        view! {
                            <button type="button" class="btn" id=ids::ENROLL_POSTPONE on:click=postpone disabled=move || busy.get()>
                                "Not now"
                            </button>
                        }
                    })}
                <button type="button" class="linklike" id=ids::SIGNIN_START_OVER on:click=move |_| start_over.run(())>
                    "Start over with your password"
                </button>
            </div>
        </div>
    }
}
