//! The signed-in user's account: their effective policy and why, the 2FA switch where
//! they may change it, authenticator set-up and removal, email and phone confirmation,
//! recovery codes, remembered browsers and the password.
//!
//! Sensitive changes may answer `reauthentication_required`; the page then asks for the
//! password and a second factor in a dialog and retries the very same action, so the
//! user does not have to start over.

use std::future::Future;

use leptos::prelude::*;
use leptos::task::spawn_local;
use twofold_policy::vocab::Provider;
use twofold_policy::wire::{
    AccountGrant, AccountGrantList, AccountState, AuthenticatorEnrollment, ChangePassword, CodeRequest,
    EffectivePolicyView, EmailRequest, ErrorCode, Passkey, PasskeyName, PhoneRequest, ReauthenticateRequest,
    RecoveryCodes, RememberedBrowser, SecondFactorMethod, SendCodeRequest, SendCodeResponse, SessionInfo, SetTwoFactor,
};

use crate::api::{self, ApiError, ApiResult};
use crate::ids;
use crate::passkey;
use crate::text;
use crate::widgets::{
    ConfirmButton, ErrorText, Loading, Modal, Notice, PolicyExplain, RecoveryCodesSheet, WeakerTag,
    scroll_to_when_mounted,
};

/// The reauthentication dialog's state: whether it is open, what to run once the user
/// has confirmed, and what to run if they give up (so the action can stop waiting).
#[derive(Debug, Clone, Copy)]
struct Reauth {
    open: RwSignal<bool>,
    retry: StoredValue<Option<Callback<()>>>,
    cancel: StoredValue<Option<Callback<()>>>,
}

impl Reauth {
    fn ask(self, retry: Callback<()>, cancel: Callback<()>) {
        self.retry.set_value(Some(retry));
        self.cancel.set_value(Some(cancel));
        self.open.set(true);
    }

    /// Closes the dialog and hands back the callback chosen by `confirmed`.
    fn close(self, confirmed: bool) -> Option<Callback<()>> {
        let retry = self.retry.try_get_value().flatten();
        let cancel = self.cancel.try_get_value().flatten();
        self.retry.set_value(None);
        self.cancel.set_value(None);
        self.open.set(false);
        if confirmed { retry } else { cancel }
    }
}

/// Runs a sensitive call; when the server wants a fresh password and second factor,
/// opens the dialog and runs the call again after it. `done` sees every other outcome,
/// and the `reauthentication_required` error itself when the user cancels the dialog.
fn sensitive<T, Fut, M, D>(reauth: Reauth, make: M, done: D)
where
    T: 'static,
    Fut: Future<Output = ApiResult<T>> + 'static,
    M: Fn() -> Fut + Clone + Send + Sync + 'static,
    D: Fn(ApiResult<T>) + Clone + Send + Sync + 'static,
{
    let fut = make();
    spawn_local(async move {
        match fut.await {
            Err(e) if e.is(ErrorCode::ReauthenticationRequired) => {
                let gave_up = done.clone();
                reauth.ask(
                    Callback::new(move |()| sensitive(reauth, make.clone(), done.clone())),
                    Callback::new(move |()| gave_up(Err(e.clone()))),
                );
            }
            r => done(r),
        }
    });
}

/// What every section needs: the account (reloaded after changes), where to show new
/// recovery codes, and the dialog.
#[derive(Debug, Clone, Copy)]
struct Ctx {
    account: RwSignal<Option<AccountState>>,
    codes: RwSignal<Option<Vec<String>>>,
    reauth: Reauth,
}

impl Ctx {
    fn reload(self) {
        spawn_local(async move {
            if let Ok(a) = api::get::<AccountState>("/api/account").await {
                self.account.set(Some(a));
            }
        });
    }

    /// Shows recovery codes issued by a change (only the first factor brings any).
    fn show_codes(self, r: RecoveryCodes) {
        if !r.recovery_codes.is_empty() {
            self.codes.set(Some(r.recovery_codes));
            scroll_to_top();
        }
    }

    fn with<R>(self, f: impl FnOnce(&AccountState) -> R) -> Option<R> {
        self.account.with(|a| a.as_ref().map(f))
    }
}

fn scroll_to_top() {
    window().scroll_to_with_x_and_y(0.0, 0.0);
}

#[component]
pub fn Account() -> impl IntoView {
    let ctx = Ctx {
        account: RwSignal::new(None),
        codes: RwSignal::new(None),
        reauth: Reauth { open: RwSignal::new(false), retry: StoredValue::new(None), cancel: StoredValue::new(None) },
    };
    let load_err = RwSignal::new(None::<String>);
    // Opened from an application's sign-in that needs a stronger factor: the way back.
    let back_to_request = leptos_router::hooks::use_query_map()
        .with_untracked(|q| q.get("request"))
        .map(|h| format!("/sign-in?request={}", api::enc(&h)));
    spawn_local(async move {
        match api::get::<AccountState>("/api/account").await {
            Ok(a) => ctx.account.set(Some(a)),
            Err(e) => load_err.set(Some(e.text())),
        }
    });
    // The sections are built once, when the account first arrives, so that reloading it
    // after a change does not wipe a form another section is in the middle of.
    let loaded = Memo::new(move |_| ctx.account.with(Option::is_some));
    let account_name = move || {
        ctx.with(|a| match &a.user.tenant_name {
            Some(t) => format!("{t}-{}", a.user.username),
            None => a.user.username.clone(),
        })
        .unwrap_or_default()
    };
    view! {
        <div class="page">
            <header class="page-head">
                <h1>"Your account"</h1>
                <p class="muted">
                    {move || ctx.with(|a| match a.user.tenant_display_name.as_ref().or(a.user.tenant_name.as_ref()) {
                        Some(t) => format!("Signed in as {} in {}.", a.user.username, t),
                        None => format!("Signed in as {} (host account).", a.user.username),
                    })}
                </p>
            </header>
            <ErrorText msg=load_err />
            {back_to_request.map(|href| view! {
                <p class="notice">
                    "An application asked for a stronger second factor. Set one up below, then "
                    <a href=href id=ids::ACCOUNT_CONTINUE_AUTHORIZATION>"continue signing in to it"</a>
                    "."
                </p>
            })}
            {move || ctx.codes.get().map(|codes| {
                view! {
                    <RecoveryCodesSheet codes account=account_name() on_done=Callback::new(move |()| ctx.codes.set(None)) />
                }
            })}
            <Show when=move || loaded.get() fallback=|| view! { <Loading what="your account" /> }>
                <TwoFactorCard ctx />
                <PasskeysCard ctx />
                <AuthenticatorCard ctx />
                <ContactCard ctx kind=Provider::Email />
                <ContactCard ctx kind=Provider::Sms />
                <RecoveryCard ctx />
                <BrowsersCard />
                <SessionsCard />
                <ApplicationsCard />
                <PasswordCard ctx />
            </Show>
            <Show when=move || ctx.reauth.open.get()>
                <ReauthDialog ctx />
            </Show>
        </div>
    }
}

#[component]
fn TwoFactorCard(ctx: Ctx) -> impl IntoView {
    let on = RwSignal::new(false);
    let err = RwSignal::new(None::<String>);
    let notice = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    Effect::new(move |_| {
        if let Some(enabled) = ctx.with(|a| a.two_factor_enabled) {
            on.set(enabled);
        }
    });
    let can_change = move || ctx.with(|a| a.user_can_change).unwrap_or(false);
    let toggle = move |ev: leptos::ev::Event| {
        let want = event_target_checked(&ev);
        on.set(want);
        busy.set(true);
        err.set(None);
        notice.set(None);
        sensitive(
            ctx.reauth,
            move || api::put::<_, EffectivePolicyView>("/api/account/two-factor", &SetTwoFactor { enabled: want }),
            move |r| {
                busy.set(false);
                match r {
                    Ok(_) => notice.set(Some(
                        if want { "Two-factor sign-in is on." } else { "Two-factor sign-in is off." }.to_owned(),
                    )),
                    Err(e) => err.set(Some(e.text())),
                }
                ctx.reload();
            },
        );
    };
    let no_factor_hint = move || {
        ctx.with(|a| {
            let f = &a.factors;
            a.policy.required && !(f.authenticator || f.email_confirmed || f.phone_confirmed || !f.passkeys.is_empty())
        })
        .unwrap_or(false)
        .then(|| {
            view! {
                <p class="notice warn">
                    "You have no second factor yet. Set one up below, or you will be asked to at your next sign-in."
                </p>
            }
        })
    };
    view! {
        <section class="card" aria-labelledby="tf-title">
            <h2 id="tf-title">"Two-factor sign-in"</h2>
            {move || ctx.with(|a| view! {
                <PolicyExplain policy=a.policy.clone() summary_id=ids::POLICY_SUMMARY trace_id=ids::POLICY_TRACE />
            })}
            {move || if can_change() {
                view! {
                    <div class="switch-row">
                        <input
                            type="checkbox"
                            role="switch"
                            class="switch"
                            id=ids::ACCOUNT_2FA_SWITCH
                            prop:checked=move || on.get()
                            aria-checked=move || if on.get() { "true" } else { "false" }
                            disabled=move || busy.get()
                            on:change=toggle
                        />
                        <label for=ids::ACCOUNT_2FA_SWITCH>"Ask for a second factor every time I sign in"</label>
                    </div>
                }
                    .into_any()
            } else {
                view! { <p class="muted small">"Your administrators decide this setting; you cannot change it here."</p> }.into_any()
            }}
            {no_factor_hint}
            <ErrorText msg=err id=ids::ACCOUNT_2FA_ERROR />
            <Notice msg=notice test=ids::ACCOUNT_NOTICE />
        </section>
    }
}

/// Registers a passkey named `name`: the server's options, the browser's new
/// credential, the server's confirmation (with recovery codes when it is the first
/// factor).
pub(crate) async fn add_passkey(name: String) -> ApiResult<RecoveryCodes> {
    passkey::ceremony("/api/account/passkeys", Some(name), false, "/api/account/passkeys/confirm", false).await
}

/// The user's passkeys: the strongest factor, which a look-alike site cannot use.
#[component]
fn PasskeysCard(ctx: Ctx) -> impl IntoView {
    let name = RwSignal::new("My passkey".to_owned());
    let err = RwSignal::new(None::<String>);
    let notice = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let allowed = move || ctx.with(|a| a.policy.allowed_providers.passkey).unwrap_or(true);
    let list = move || ctx.with(|a| a.factors.passkeys.clone()).unwrap_or_default();
    // The passkey whose new name is being typed, and that name.
    let renaming = RwSignal::new(None::<String>);
    let new_name = RwSignal::new(String::new());
    let save_name = move |_| {
        let Some(id) = renaming.get_untracked() else { return };
        let body = PasskeyName { name: new_name.get_untracked() };
        if let Err(m) = body.parse() {
            err.set(Some(m.to_owned()));
            return;
        }
        busy.set(true);
        err.set(None);
        notice.set(None);
        spawn_local(async move {
            let r = api::patch::<_, Passkey>(&format!("/api/account/passkeys/{}", api::enc(&id)), &body).await;
            busy.set(false);
            match r {
                Ok(p) => {
                    renaming.set(None);
                    notice.set(Some(format!("The passkey is now called {}.", p.name)));
                    ctx.reload();
                }
                Err(e) => err.set(Some(e.text())),
            }
        });
    };

    let add = move |_| {
        busy.set(true);
        err.set(None);
        notice.set(None);
        let n = name.get_untracked();
        sensitive(
            ctx.reauth,
            move || add_passkey(n.clone()),
            move |r| {
                busy.set(false);
                match r {
                    Ok(codes) => {
                        notice.set(Some("Your passkey is set up.".to_owned()));
                        ctx.show_codes(codes);
                        ctx.reload();
                    }
                    Err(e) => err.set(Some(e.text())),
                }
            },
        );
    };
    let remove = move |id: String| {
        busy.set(true);
        err.set(None);
        notice.set(None);
        sensitive(
            ctx.reauth,
            move || api::delete(&format!("/api/account/passkeys/{}", api::enc(&id))),
            move |r| {
                busy.set(false);
                match r {
                    Ok(()) => notice.set(Some("The passkey was removed.".to_owned())),
                    Err(e) => err.set(Some(e.text())),
                }
                ctx.reload();
            },
        );
    };

    view! {
        <section class="card" aria-labelledby="passkeys-title">
            <div class="card-head">
                <h2 id="passkeys-title">"Passkeys"</h2>
            </div>
            <p class="muted">
                "Sign in with your fingerprint, face, screen lock or a security key. A passkey only works on this site, so a look-alike page cannot use it."
            </p>
            <ul class="rows" id=ids::ACCOUNT_PASSKEYS>
                {move || {
                    list()
                        .into_iter()
                        .map(|p| {
                            let id = p.id.clone();
                            let (row_id, old_name) = (p.id.clone(), p.name.clone());
                            let editing = {
                                let row_id = p.id.clone();
                                move || renaming.get().as_deref() == Some(row_id.as_str())
                            };
                            view! {
                                <li class="row" data-test=ids::PASSKEY_ROW data-id=p.id.clone() data-name=p.name.clone()>
                                    <div class="row-main">
                                        <strong>{p.name.clone()}</strong>
                                        {p.backed_up.then(|| view! { " " <span class="tag">"Synced"</span> })}
                                        <div class="muted small">
                                            {format!(
                                                "Added {} · last used {}",
                                                text::format_time(&p.created_at),
                                                p.last_used_at.as_deref().map_or_else(|| "never".to_owned(), text::format_time),
                                            )}
                                        </div>
                                    </div>
                                    <Show
                                        when=editing
                                        fallback=move || {
                                            let (row_id, old_name) = (row_id.clone(), old_name.clone());
                                            view! {
                                                <button
                                                    type="button"
                                                    class="btn btn-small"
                                                    data-test=ids::PASSKEY_RENAME
                                                    disabled=move || busy.get()
                                                    on:click=move |_| {
                                                        new_name.set(old_name.clone());
                                                        renaming.set(Some(row_id.clone()));
                                                    }
                                                >
                                                    "Rename"
                                                </button>
                                            }
                                        }
                                    >
                                        <input
                                            type="text"
                                            maxlength="64"
                                            aria-label="New name"
                                            data-test=ids::PASSKEY_RENAME_NAME
                                            bind:value=new_name
                                        />
                                        <button
                                            type="button"
                                            class="btn btn-small btn-primary"
                                            data-test=ids::PASSKEY_RENAME_SAVE
                                            disabled=move || busy.get()
                                            on:click=save_name
                                        >
                                            "Save"
                                        </button>
                                    </Show>
                                    <ConfirmButton
                                        label="Remove"
                                        question="Remove this passkey? It stops working at once."
                                        confirm_label="Yes, remove it"
                                        test=ids::PASSKEY_REMOVE
                                        aria_label=format!("Remove {}", p.name)
                                        disabled=Signal::derive(move || busy.get())
                                        small=true
                                        on_confirm=Callback::new(move |()| remove(id.clone()))
                                    />
                                </li>
                            }
                        })
                        .collect_view()
                }}
            </ul>
            {move || {
                if !allowed() {
                    view! { <p class="muted small">"Passkeys are not allowed by your administrators."</p> }.into_any()
                } else if !passkey::supported() {
                    view! { <p class="muted small">"This browser cannot create passkeys."</p> }.into_any()
                } else {
                    view! {
                        <div class="field">
                            <label for=ids::ACCOUNT_PASSKEY_NAME>"Name of a new passkey"</label>
                            <input type="text" id=ids::ACCOUNT_PASSKEY_NAME maxlength="64" bind:value=name />
                        </div>
                        <div class="actions">
                            <button type="button" class="btn btn-primary" id=ids::ACCOUNT_PASSKEY_ADD on:click=add disabled=move || busy.get()>
                                {move || if busy.get() { "Waiting for your passkey…" } else { "Add a passkey" }}
                            </button>
                        </div>
                    }
                        .into_any()
                }
            }}
            <ErrorText msg=err id=ids::ACCOUNT_PASSKEY_ERROR />
            <Notice msg=notice test=ids::ACCOUNT_NOTICE />
        </section>
    }
}

#[component]
fn AuthenticatorCard(ctx: Ctx) -> impl IntoView {
    let setup = RwSignal::new(None::<AuthenticatorEnrollment>);
    let code = RwSignal::new(String::new());
    let err = RwSignal::new(None::<String>);
    let notice = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let has = move || ctx.with(|a| a.factors.authenticator).unwrap_or(false);
    let allowed = move || ctx.with(|a| a.policy.allowed_providers.authenticator).unwrap_or(true);

    let start = move |_| {
        busy.set(true);
        err.set(None);
        notice.set(None);
        sensitive(
            ctx.reauth,
            || api::post_empty::<AuthenticatorEnrollment>("/api/account/authenticator"),
            move |r| {
                busy.set(false);
                match r {
                    Ok(e) => {
                        code.set(String::new());
                        setup.set(Some(e));
                    }
                    Err(e) => err.set(Some(e.text())),
                }
            },
        );
    };
    let confirm = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let c = code.get_untracked().trim().to_owned();
        if c.is_empty() {
            err.set(Some("Enter the code your app shows.".to_owned()));
            return;
        }
        busy.set(true);
        err.set(None);
        spawn_local(async move {
            let r = api::post::<_, RecoveryCodes>("/api/account/authenticator/confirm", &CodeRequest { code: c }).await;
            busy.set(false);
            match r {
                Ok(codes) => {
                    setup.set(None);
                    notice.set(Some("Your authenticator app is set up.".to_owned()));
                    ctx.show_codes(codes);
                    ctx.reload();
                }
                Err(e) => {
                    code.set(String::new());
                    err.set(Some(e.text()));
                }
            }
        });
    };
    let remove = move |()| {
        busy.set(true);
        err.set(None);
        notice.set(None);
        sensitive(
            ctx.reauth,
            || api::delete("/api/account/authenticator"),
            move |r| {
                busy.set(false);
                match r {
                    Ok(()) => notice.set(Some("The authenticator app was removed.".to_owned())),
                    Err(e) => err.set(Some(e.text())),
                }
                ctx.reload();
            },
        );
    };

    view! {
        <section class="card" aria-labelledby="auth-title">
            <div class="card-head">
                <h2 id="auth-title">"Authenticator app"</h2>
                <span class=move || if has() { "tag tag-ok" } else { "tag" } id=ids::ACCOUNT_AUTH_STATUS>
                    {move || if has() { "Set up" } else { "Not set up" }}
                </span>
            </div>
            <p class="muted">"The strongest second factor here: a 6-digit code from an app on your phone, which works offline."</p>
            {move || match setup.get() {
                Some(e) => {
                    let block = NodeRef::<leptos::html::Form>::new();
                    scroll_to_when_mounted(block);
                    view! {
                    <form class="enroll-auth" node_ref=block on:submit=confirm novalidate>
                        <ol class="steps">
                            <li>
                                "Scan this QR code with your authenticator app:"
                                <img
                                    class="qr"
                                    id=ids::ACCOUNT_AUTH_QR
                                    src=format!("data:image/png;base64,{}", e.qr_png_base64)
                                    alt="QR code to add this account to an authenticator app"
                                    width="200"
                                    height="200"
                                />
                            </li>
                            <li>
                                "Or type this secret into the app:"
                                <code class="secret" id=ids::ACCOUNT_AUTH_SECRET>{e.secret.clone()}</code>
                            </li>
                        </ol>
                        <div class="field">
                            <label for=ids::ACCOUNT_AUTH_CODE>"Code from the app"</label>
                            <input
                                type="text"
                                class="code-input"
                                id=ids::ACCOUNT_AUTH_CODE
                                autocomplete="one-time-code"
                                inputmode="numeric"
                                bind:value=code
                            />
                        </div>
                        <div class="actions">
                            <button type="submit" class="btn btn-primary" id=ids::ACCOUNT_AUTH_CONFIRM disabled=move || busy.get()>
                                "Confirm"
                            </button>
                            <button type="button" class="btn btn-ghost" id=ids::ACCOUNT_AUTH_CANCEL on:click=move |_| setup.set(None)>
                                "Cancel"
                            </button>
                        </div>
                    </form>
                    }
                    .into_any()
                }
                None if has() => view! {
                    <div class="actions">
                        <ConfirmButton
                            label="Remove authenticator app"
                            question="Remove the authenticator app? Its codes stop working at once."
                            confirm_label="Yes, remove it"
                            test=ids::ACCOUNT_AUTH_REMOVE
                            id=ids::ACCOUNT_AUTH_REMOVE
                            disabled=Signal::derive(move || busy.get())
                            on_confirm=Callback::new(move |()| remove(()))
                        />
                    </div>
                }
                    .into_any(),
                None if allowed() => view! {
                    <div class="actions">
                        <button type="button" class="btn btn-primary" id=ids::ACCOUNT_AUTH_SETUP on:click=start disabled=move || busy.get()>
                            "Set up an authenticator app"
                        </button>
                    </div>
                }
                    .into_any(),
                None => view! { <p class="muted small">"Authenticator apps are not allowed by your administrators."</p> }.into_any(),
            }}
            <ErrorText msg=err id=ids::ACCOUNT_AUTH_ERROR />
            <Notice msg=notice test=ids::ACCOUNT_NOTICE />
        </section>
    }
}

/// Email or phone: both are confirmed with a code sent to them, and both are weaker
/// factors than an authenticator app.
#[component]
fn ContactCard(ctx: Ctx, kind: Provider) -> impl IntoView {
    let is_email = kind == Provider::Email;
    let (on_file_id, remove_id) = if is_email {
        (ids::ACCOUNT_EMAIL_SEND_ON_FILE, ids::ACCOUNT_EMAIL_REMOVE)
    } else {
        (ids::ACCOUNT_PHONE_SEND_ON_FILE, ids::ACCOUNT_PHONE_REMOVE)
    };
    let (title, input_id, send_id, code_id, confirm_id, status_id, err_id) = if is_email {
        (
            "Email",
            ids::ACCOUNT_EMAIL_INPUT,
            ids::ACCOUNT_EMAIL_SEND,
            ids::ACCOUNT_EMAIL_CODE,
            ids::ACCOUNT_EMAIL_CONFIRM,
            ids::ACCOUNT_EMAIL_STATUS,
            ids::ACCOUNT_EMAIL_ERROR,
        )
    } else {
        (
            "Phone",
            ids::ACCOUNT_PHONE_INPUT,
            ids::ACCOUNT_PHONE_SEND,
            ids::ACCOUNT_PHONE_CODE,
            ids::ACCOUNT_PHONE_CONFIRM,
            ids::ACCOUNT_PHONE_STATUS,
            ids::ACCOUNT_PHONE_ERROR,
        )
    };
    let base = if is_email { "/api/account/email" } else { "/api/account/phone" };
    let value = RwSignal::new(String::new());
    let code = RwSignal::new(String::new());
    let sent = RwSignal::new(None::<SendCodeResponse>);
    let err = RwSignal::new(None::<String>);
    let notice = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);

    // (address on file, confirmed, pending address, allowed as a factor)
    let state = move || {
        ctx.with(|a| {
            let f = &a.factors;
            let allowed = if is_email { a.policy.allowed_providers.email } else { a.policy.allowed_providers.sms };
            if is_email {
                (f.email.clone(), f.email_confirmed, f.pending_email.clone(), allowed)
            } else {
                (f.phone.clone(), f.phone_confirmed, f.pending_phone.clone(), allowed)
            }
        })
        .unwrap_or((None, false, None, false))
    };

    // Sends a code to `target` (None: the address or number already on file).
    let send_to = move |target: Option<String>| {
        busy.set(true);
        err.set(None);
        notice.set(None);
        sensitive(
            ctx.reauth,
            move || {
                let target = target.clone();
                async move {
                    if is_email {
                        api::put::<_, SendCodeResponse>(base, &EmailRequest { email: target }).await
                    } else {
                        api::put::<_, SendCodeResponse>(base, &PhoneRequest { phone: target }).await
                    }
                }
            },
            move |r| {
                busy.set(false);
                match r {
                    Ok(s) => {
                        code.set(String::new());
                        sent.set(Some(s));
                    }
                    Err(e) => err.set(Some(e.text())),
                }
                ctx.reload();
            },
        );
    };
    let submit_new = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let v = value.get_untracked().trim().to_owned();
        if v.is_empty() {
            err.set(Some(if is_email { "Enter an email address." } else { "Enter a phone number." }.to_owned()));
            return;
        }
        send_to(Some(v));
    };
    let confirm = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let c = code.get_untracked().trim().to_owned();
        if c.is_empty() {
            err.set(Some("Enter the code from the message.".to_owned()));
            return;
        }
        busy.set(true);
        err.set(None);
        spawn_local(async move {
            let r = api::post::<_, RecoveryCodes>(&format!("{base}/confirm"), &CodeRequest { code: c }).await;
            busy.set(false);
            match r {
                Ok(codes) => {
                    sent.set(None);
                    value.set(String::new());
                    notice.set(Some(
                        if is_email {
                            "Your email address is confirmed. It is now a second factor: sign-in can send a code to it \
                             (a weaker factor than an authenticator app)."
                        } else {
                            "Your phone number is confirmed. It is now a second factor: sign-in can text a code to it \
                             (a weaker factor than an authenticator app)."
                        }
                        .to_owned(),
                    ));
                    ctx.show_codes(codes);
                    ctx.reload();
                }
                Err(e) => {
                    code.set(String::new());
                    err.set(Some(e.text()));
                }
            }
        });
    };
    let remove = move |()| {
        busy.set(true);
        err.set(None);
        notice.set(None);
        sensitive(
            ctx.reauth,
            move || api::delete(base),
            move |r| {
                busy.set(false);
                match r {
                    Ok(()) => {
                        sent.set(None);
                        notice.set(Some(
                            if is_email { "The email address was removed." } else { "The phone number was removed." }
                                .to_owned(),
                        ));
                    }
                    Err(e) => err.set(Some(e.text())),
                }
                ctx.reload();
            },
        );
    };

    let status = move || {
        let (current, confirmed, pending, _) = state();
        let line = match (&current, confirmed) {
            (Some(c), true) => format!("{c} — confirmed"),
            (Some(c), false) => format!("{c} — not confirmed"),
            (None, _) => {
                if is_email {
                    "No email address".to_owned()
                } else {
                    "No phone number".to_owned()
                }
            }
        };
        let pending = pending.filter(|p| Some(p) != current.as_ref() || !confirmed);
        view! {
            <p id=status_id class="status-line">
                <span class=if confirmed { "dot dot-on" } else { "dot dot-off" } aria-hidden="true"></span>
                {line}
            </p>
            {pending.map(|p| view! { <p class="muted small">{format!("Waiting for confirmation: {p}")}</p> })}
        }
    };

    view! {
        <section class="card" aria-labelledby=format!("{input_id}-title")>
            <div class="card-head">
                <h2 id=format!("{input_id}-title")>{title}</h2>
                <WeakerTag />
            </div>
            {status}
            {move || (!state().3).then(|| view! {
                <p class="muted small">"Your administrators do not accept this as a second factor, but you can still keep it on file."</p>
            })}
            {move || {
                let (current, confirmed, _, _) = state();
                (current.is_some() && !confirmed && sent.with(Option::is_none)).then(|| view! {
                    <div class="actions">
                        <button type="button" class="btn" id=on_file_id on:click=move |_| send_to(None) disabled=move || busy.get()>
                            {if is_email { "Send a code to confirm this address" } else { "Send a code to confirm this number" }}
                        </button>
                    </div>
                })
            }}
            <form class="inline-form" on:submit=submit_new novalidate>
                <div class="field">
                    <label for=input_id>
                        {move || {
                            let has = state().0.is_some();
                            match (is_email, has) {
                                (true, false) => "Email address",
                                (true, true) => "New email address",
                                (false, false) => "Mobile phone number",
                                (false, true) => "New mobile phone number",
                            }
                        }}
                    </label>
                    <input
                        type=if is_email { "email" } else { "tel" }
                        id=input_id
                        autocomplete=if is_email { "email" } else { "tel" }
                        placeholder=if is_email { "name@example.com" } else { "+14155550100" }
                        bind:value=value
                    />
                </div>
                <button type="submit" class="btn" id=send_id disabled=move || busy.get()>
                    "Send confirmation code"
                </button>
            </form>
            {move || sent.get().map(|s| view! {
                <form class="inline-form" on:submit=confirm novalidate>
                    <p class="notice" role="status">
                        {format!("We sent a code to {}. It is valid for {}.", s.sent_to, text::duration_words(u64::from(s.expires_in_seconds)))}
                    </p>
                    <div class="field">
                        <label for=code_id>"Confirmation code"</label>
                        <input type="text" class="code-input" id=code_id autocomplete="one-time-code" inputmode="numeric" bind:value=code />
                    </div>
                    <button type="submit" class="btn btn-primary" id=confirm_id disabled=move || busy.get()>
                        "Confirm"
                    </button>
                </form>
            })}
            {move || state().0.is_some().then(|| view! {
                <div class="actions">
                    <ConfirmButton
                        label=if is_email { "Remove email address" } else { "Remove phone number" }
                        question=if is_email {
                            "Remove the email address? Emailed codes, security notices and password reset by email stop reaching you."
                        } else {
                            "Remove the phone number? Texted codes stop reaching you."
                        }
                        confirm_label="Yes, remove it"
                        test=remove_id
                        id=remove_id
                        disabled=Signal::derive(move || busy.get())
                        on_confirm=Callback::new(move |()| remove(()))
                    />
                </div>
            })}
            <ErrorText msg=err id=err_id />
            <Notice msg=notice test=ids::ACCOUNT_NOTICE />
        </section>
    }
}

#[component]
fn RecoveryCard(ctx: Ctx) -> impl IntoView {
    let err = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let left = move || ctx.with(|a| a.factors.recovery_codes_left).unwrap_or(0);
    let has_factor = move || {
        ctx.with(|a| a.factors.authenticator || a.factors.email_confirmed || a.factors.phone_confirmed).unwrap_or(false)
    };
    let regenerate = move |_| {
        busy.set(true);
        err.set(None);
        sensitive(
            ctx.reauth,
            || api::post_empty::<RecoveryCodes>("/api/account/recovery-codes"),
            move |r| {
                busy.set(false);
                match r {
                    Ok(codes) => ctx.show_codes(codes),
                    Err(e) => err.set(Some(e.text())),
                }
                ctx.reload();
            },
        );
    };
    view! {
        <section class="card" aria-labelledby="rc-title">
            <h2 id="rc-title">"Recovery codes"</h2>
            <p id=ids::ACCOUNT_RECOVERY_LEFT>
                {move || format!("You have {} left.", text::count(u64::from(left()), "unused recovery code", "unused recovery codes"))}
            </p>
            <p class="muted small">"New codes replace all the old ones. They are shown once."</p>
            <div class="actions">
                <button
                    type="button"
                    class="btn"
                    id=ids::ACCOUNT_RECOVERY_REGENERATE
                    on:click=regenerate
                    disabled=move || busy.get() || !has_factor()
                >
                    "Generate new recovery codes"
                </button>
            </div>
            {move || (!has_factor()).then(|| view! { <p class="muted small">"Set up a second factor first."</p> })}
            <ErrorText msg=err id=ids::ACCOUNT_RECOVERY_ERROR />
        </section>
    }
}

#[component]
fn BrowsersCard() -> impl IntoView {
    let list = RwSignal::new(None::<Vec<RememberedBrowser>>);
    let err = RwSignal::new(None::<String>);
    let notice = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let load = move || {
        spawn_local(async move {
            match api::get::<Vec<RememberedBrowser>>("/api/account/browsers").await {
                Ok(l) => list.set(Some(l)),
                Err(e) => err.set(Some(e.text())),
            }
        })
    };
    load();
    let forget = move |id: String| {
        busy.set(true);
        err.set(None);
        notice.set(None);
        spawn_local(async move {
            let r = api::delete(&format!("/api/account/browsers/{}", api::enc(&id))).await;
            busy.set(false);
            match r {
                Ok(()) => notice.set(Some("That browser will ask for the second factor again.".to_owned())),
                Err(e) => err.set(Some(e.text())),
            }
            load();
        });
    };
    let forget_all = move |()| {
        busy.set(true);
        err.set(None);
        notice.set(None);
        spawn_local(async move {
            let r = api::delete("/api/account/browsers").await;
            busy.set(false);
            match r {
                Ok(()) => notice.set(Some("Every browser will ask for the second factor again.".to_owned())),
                Err(e) => err.set(Some(e.text())),
            }
            load();
        });
    };
    view! {
        <section class="card" aria-labelledby="br-title">
            <h2 id="br-title">"Remembered browsers"</h2>
            <p class="muted">"These browsers skip the second factor until they expire. Forget one you no longer use or trust."</p>
            {move || match list.get() {
                None => view! { <Loading /> }.into_any(),
                Some(l) if l.is_empty() => view! { <p class="empty" id=ids::BROWSERS_LIST>"No browser is remembered."</p> }.into_any(),
                Some(l) => view! {
                    <ul class="rows" id=ids::BROWSERS_LIST>
                        {l.into_iter().map(|b| {
                            let id = b.id.clone();
                            view! {
                                <li class="row" data-test=ids::BROWSER_ITEM data-id=b.id.clone() data-current=if b.current { "true" } else { "false" }>
                                    <div class="row-main">
                                        <strong>{text::browser_label(b.user_agent.as_deref())}</strong>
                                        {b.current.then(|| view! { " " <span class="tag tag-ok">"This browser"</span> })}
                                        <div class="muted small">
                                            {format!(
                                                "Remembered {} · last used {} · until {}",
                                                text::format_time(&b.created_at),
                                                text::format_time(&b.last_used_at),
                                                text::format_time(&b.expires_at),
                                            )}
                                        </div>
                                    </div>
                                    <ConfirmButton
                                        label="Forget"
                                        question="Forget this browser? It will ask for the second factor again."
                                        confirm_label="Yes, forget it"
                                        test=ids::BROWSER_REVOKE
                                        aria_label=format!("Forget {}", text::browser_label(b.user_agent.as_deref()))
                                        disabled=Signal::derive(move || busy.get())
                                        small=true
                                        on_confirm=Callback::new(move |()| forget(id.clone()))
                                    />
                                </li>
                            }
                        }).collect_view()}
                    </ul>
                    <div class="actions">
                        <ConfirmButton
                            label="Forget all browsers"
                            question="Forget every browser, this one too? Each will ask for the second factor again."
                            confirm_label="Yes, forget all"
                            test=ids::BROWSERS_REVOKE_ALL
                            id=ids::BROWSERS_REVOKE_ALL
                            disabled=Signal::derive(move || busy.get())
                            on_confirm=Callback::new(move |()| forget_all(()))
                        />
                    </div>
                }
                    .into_any(),
            }}
            <ErrorText msg=err id=ids::BROWSERS_ERROR />
            <Notice msg=notice test=ids::ACCOUNT_NOTICE />
        </section>
    }
}

/// The applications this user let sign them in through Twofold (each grant remembers
/// the scopes consented to); withdrawing one ends its refresh tokens at once and asks
/// again next time.
#[component]
fn ApplicationsCard() -> impl IntoView {
    let list = RwSignal::new(None::<Vec<AccountGrant>>);
    let err = RwSignal::new(None::<String>);
    let notice = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let load = move || {
        spawn_local(async move {
            match api::get::<AccountGrantList>("/api/account/applications").await {
                Ok(l) => list.set(Some(l.items)),
                Err(e) => err.set(Some(e.text())),
            }
        })
    };
    load();
    let revoke = Callback::new(move |(id, name): (String, String)| {
        busy.set(true);
        err.set(None);
        notice.set(None);
        spawn_local(async move {
            let r = api::delete(&format!("/api/account/applications/{}", api::enc(&id))).await;
            busy.set(false);
            match r {
                Ok(()) => notice.set(Some(format!("{name} can no longer sign you in without asking."))),
                Err(e) => err.set(Some(e.text())),
            }
            load();
        });
    });
    view! {
        <section class="card" aria-labelledby="grants-title">
            <h2 id="grants-title">"Applications"</h2>
            <p class="muted">"Applications you let sign you in with this account, and what they may see."</p>
            {move || match list.get() {
                None => view! { <Loading /> }.into_any(),
                Some(l) if l.is_empty() => view! { <p class="muted small" id=ids::GRANTS_LIST>"None yet."</p> }.into_any(),
                Some(l) => view! {
                    <ul class="rows" id=ids::GRANTS_LIST>
                        {l.into_iter().map(|g| {
                            let id = g.id.clone();
                            let name = g.application.clone();
                            let scopes: Vec<String> = g.scopes.iter().map(|s| text::scope_label(s)).collect();
                            view! {
                                <li class="row" data-test=ids::GRANT_ITEM data-id=g.id.clone() data-name=g.application.clone()>
                                    <div class="row-main">
                                        <strong>{g.application.clone()}</strong>
                                        <div class="muted small">{scopes.join(" · ")}</div>
                                        <div class="muted small">
                                            {format!("Allowed {} · last used {}", text::format_time(&g.created_at), text::format_time(&g.last_used_at))}
                                        </div>
                                    </div>
                                    <ConfirmButton
                                        label="Withdraw"
                                        question=format!("Withdraw {}'s access? It is signed out and must ask again.", g.application)
                                        confirm_label="Yes, withdraw"
                                        test=ids::GRANT_REVOKE
                                        aria_label=format!("Withdraw {}'s access", g.application)
                                        small=true
                                        disabled=Signal::derive(move || busy.get())
                                        on_confirm=Callback::new(move |()| revoke.run((id.clone(), name.clone())))
                                    />
                                </li>
                            }
                        }).collect_view()}
                    </ul>
                }
                .into_any(),
            }}
            <ErrorText msg=err id=ids::GRANTS_ERROR />
            <Notice msg=notice test=ids::ACCOUNT_NOTICE />
        </section>
    }
}

/// Where this account is signed in, with a way to sign any of those out.
#[component]
fn SessionsCard() -> impl IntoView {
    let list = RwSignal::new(None::<Vec<SessionInfo>>);
    let err = RwSignal::new(None::<String>);
    let notice = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let load = move || {
        spawn_local(async move {
            match api::get::<Vec<SessionInfo>>("/api/account/sessions").await {
                Ok(l) => list.set(Some(l)),
                Err(e) => err.set(Some(e.text())),
            }
        })
    };
    load();
    let session = crate::session::use_session();
    let navigate = leptos_router::hooks::use_navigate();
    let run = move |call: std::pin::Pin<Box<dyn Future<Output = ApiResult<()>>>>, done: &'static str| {
        busy.set(true);
        err.set(None);
        notice.set(None);
        spawn_local(async move {
            let r = call.await;
            busy.set(false);
            match r {
                Ok(()) => notice.set(Some(done.to_owned())),
                Err(e) => err.set(Some(e.text())),
            }
            load();
        });
    };
    // A Callback is Copy, so each row's button can hold it; `navigate` alone is not.
    let end = Callback::new(move |(id, current): (String, bool)| {
        if current {
            // This browser's own session: as the Sign out button does, leave the page
            // before forgetting the user.
            let navigate = navigate.clone();
            spawn_local(async move {
                let _ = api::delete(&format!("/api/account/sessions/{}", api::enc(&id))).await;
                navigate("/sign-in", Default::default());
                session.user.set(None);
            });
        } else {
            run(
                Box::pin(api::delete(&format!("/api/account/sessions/{}", api::enc(&id)))),
                "That session is signed out.",
            );
        }
    });
    let end_others = move |_| {
        run(Box::pin(api::post_empty::<()>("/api/account/sessions/end-others")), "Every other session is signed out.");
    };
    view! {
        <section class="card" aria-labelledby="sessions-title">
            <h2 id="sessions-title">"Where you are signed in"</h2>
            <p class="muted">"Sign out a session you do not recognise, then change your password."</p>
            {move || match list.get() {
                None => view! { <Loading /> }.into_any(),
                Some(l) => {
                    let others = l.iter().any(|s| !s.current);
                    view! {
                        <ul class="rows" id=ids::SESSIONS_LIST>
                            {l.into_iter().map(|s| {
                                let id = s.id.clone();
                                let current = s.current;
                                let label = text::browser_label(s.user_agent.as_deref());
                                view! {
                                    <li class="row" data-test=ids::SESSION_ITEM data-id=s.id.clone() data-current=if s.current { "true" } else { "false" }>
                                        <div class="row-main">
                                            <strong>{label.clone()}</strong>
                                            {s.current.then(|| view! { " " <span class="tag tag-ok">"This session"</span> })}
                                            <div class="muted small">
                                                {format!(
                                                    "{} · signed in {} · last active {}",
                                                    s.client_ip.clone().unwrap_or_else(|| "address unknown".to_owned()),
                                                    text::format_time(&s.created_at),
                                                    text::format_time(&s.last_seen_at),
                                                )}
                                            </div>
                                        </div>
                                        <button
                                            type="button"
                                            class="btn btn-small"
                                            data-test=ids::SESSION_END
                                            aria-label=format!("Sign out {label}")
                                            disabled=move || busy.get()
                                            on:click=move |_| end.run((id.clone(), current))
                                        >
                                            "Sign out"
                                        </button>
                                    </li>
                                }
                            }).collect_view()}
                        </ul>
                        {others.then(|| view! {
                            <div class="actions">
                                <button type="button" class="btn btn-danger" id=ids::SESSIONS_END_OTHERS on:click=end_others disabled=move || busy.get()>
                                    "Sign out every other session"
                                </button>
                            </div>
                        })}
                    }
                    .into_any()
                }
            }}
            <ErrorText msg=err id=ids::SESSIONS_ERROR />
            <Notice msg=notice test=ids::ACCOUNT_NOTICE />
        </section>
    }
}

#[component]
fn PasswordCard(ctx: Ctx) -> impl IntoView {
    let current = RwSignal::new(String::new());
    let new = RwSignal::new(String::new());
    let repeat = RwSignal::new(String::new());
    let err = RwSignal::new(None::<ApiError>);
    let mismatch = RwSignal::new(None::<String>);
    let notice = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        err.set(None);
        notice.set(None);
        if new.get_untracked() != repeat.get_untracked() {
            mismatch.set(Some("The two new passwords differ.".to_owned()));
            return;
        }
        mismatch.set(None);
        let req = ChangePassword { current_password: current.get_untracked(), new_password: new.get_untracked() };
        busy.set(true);
        sensitive(
            ctx.reauth,
            move || {
                let req = req.clone();
                async move { api::put::<_, ()>("/api/account/password", &req).await }
            },
            move |r| {
                busy.set(false);
                match r {
                    Ok(()) => {
                        current.set(String::new());
                        new.set(String::new());
                        repeat.set(String::new());
                        notice.set(Some("Your password was changed. Your other sessions were signed out.".to_owned()));
                    }
                    Err(e) => err.set(Some(e)),
                }
            },
        );
    };
    let new_err = Signal::derive(move || {
        err.with(|e| e.as_ref().filter(|e| e.field() == Some("new_password")).map(ApiError::text))
    });
    let other_err = Signal::derive(move || {
        err.with(|e| e.as_ref().filter(|e| e.field() != Some("new_password")).map(ApiError::text))
    });
    view! {
        <section class="card" aria-labelledby="pw-title">
            <h2 id="pw-title">"Password"</h2>
            <form class="stack-form" on:submit=submit novalidate>
                // For password managers, which need to know whose password changes.
                <input type="text" class="sr-only" autocomplete="username" tabindex="-1" aria-hidden="true" readonly
                    prop:value=move || ctx.with(|a| a.user.username.clone()).unwrap_or_default() />
                <div class="field">
                    <label for=ids::ACCOUNT_PASSWORD_CURRENT>"Current password"</label>
                    <input type="password" id=ids::ACCOUNT_PASSWORD_CURRENT autocomplete="current-password" bind:value=current />
                </div>
                <div class="field">
                    <label for=ids::ACCOUNT_PASSWORD_NEW>"New password"</label>
                    <input type="password" id=ids::ACCOUNT_PASSWORD_NEW autocomplete="new-password" bind:value=new />
                    <ErrorText msg=new_err />
                </div>
                <div class="field">
                    <label for="account-password-repeat">"New password again"</label>
                    <input type="password" id="account-password-repeat" autocomplete="new-password" bind:value=repeat />
                    <ErrorText msg=mismatch />
                </div>
                <button type="submit" class="btn" id=ids::ACCOUNT_PASSWORD_SAVE disabled=move || busy.get()>
                    "Change password"
                </button>
                <ErrorText msg=other_err id=ids::ACCOUNT_PASSWORD_ERROR />
                <Notice msg=notice test=ids::ACCOUNT_NOTICE />
            </form>
        </section>
    }
}

/// The second factors this user could use to reauthenticate.
/// Sends a reauthentication code by email or text; other methods need no sending.
pub(crate) fn send_reauth_code(
    method: Option<SecondFactorMethod>,
    busy: RwSignal<bool>,
    err: RwSignal<Option<String>>,
    sent: RwSignal<Option<SendCodeResponse>>,
) {
    let provider = match method {
        Some(SecondFactorMethod::Email) => Provider::Email,
        Some(SecondFactorMethod::Sms) => Provider::Sms,
        _ => return,
    };
    busy.set(true);
    err.set(None);
    spawn_local(async move {
        let r = api::post::<_, SendCodeResponse>(
            "/api/account/reauthenticate/send-code",
            &SendCodeRequest { method: provider },
        )
        .await;
        busy.set(false);
        match r {
            Ok(s) => sent.set(Some(s)),
            Err(e) => err.set(Some(e.text())),
        }
    });
}

/// The element ids of one [`SecondFactorFields`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct FactorFieldIds {
    pub method: &'static str,
    pub send: &'static str,
    pub code: &'static str,
}

/// The second-factor half of a "confirm it's you" form: which factor (`methods`, the
/// first one chosen), a send button for emailed and texted codes, and the code, which a
/// passkey has none of (its ceremony is the proof).
#[component]
pub(crate) fn SecondFactorFields(
    methods: Vec<SecondFactorMethod>,
    method: RwSignal<Option<SecondFactorMethod>>,
    code: RwSignal<String>,
    sent: RwSignal<Option<SendCodeResponse>>,
    busy: RwSignal<bool>,
    err: RwSignal<Option<String>>,
    ids: FactorFieldIds,
) -> impl IntoView {
    let send = move |_| send_reauth_code(method.get_untracked(), busy, err, sent);
    let needs_send = move || matches!(method.get(), Some(SecondFactorMethod::Email | SecondFactorMethod::Sms));
    let is_passkey = move || method.get() == Some(SecondFactorMethod::Passkey);
    // Recovery codes have letters; the others are digits only.
    let keypad = move || if method.get() == Some(SecondFactorMethod::RecoveryCode) { "text" } else { "numeric" };
    view! {
        <div class="field">
            <label for=ids.method>"Second factor"</label>
            <select
                id=ids.method
                on:change=move |ev| {
                    method.set(text::parse_method(&event_target_value(&ev)));
                    sent.set(None);
                    code.set(String::new());
                }
            >
                {methods
                    .into_iter()
                    .map(|m| view! {
                        <option value=text::method_value(m) selected=move || method.get() == Some(m)>
                            {text::method_label(m)}
                        </option>
                    })
                    .collect_view()}
            </select>
        </div>
        <Show when=needs_send>
            <div class="send-row">
                <button type="button" class="btn" id=ids.send on:click=send disabled=move || busy.get()>
                    {move || if sent.with(Option::is_some) { "Send a new code" } else { "Send code" }}
                </button>
                {move || sent.get().map(|s| view! {
                    <p class="notice" role="status">{format!("We sent a code to {}.", s.sent_to)}</p>
                })}
            </div>
        </Show>
        <Show when=move || !is_passkey()>
            <div class="field">
                <label for=ids.code>"Code"</label>
                <input type="text" class="code-input" id=ids.code autocomplete="one-time-code" inputmode=keypad
                    bind:value=code />
            </div>
        </Show>
    }
}

pub(crate) fn reauth_methods(a: &AccountState) -> Vec<SecondFactorMethod> {
    let f = &a.factors;
    let mut out = Vec::with_capacity(4);
    if f.authenticator {
        out.push(SecondFactorMethod::Authenticator);
    }
    if f.email_confirmed {
        out.push(SecondFactorMethod::Email);
    }
    if f.phone_confirmed {
        out.push(SecondFactorMethod::Sms);
    }
    if f.recovery_codes_left > 0 {
        out.push(SecondFactorMethod::RecoveryCode);
    }
    out
}

#[component]
fn ReauthDialog(ctx: Ctx) -> impl IntoView {
    let mut methods = ctx.with(reauth_methods).unwrap_or_default();
    // A passkey comes first where the user has one: it is their strongest factor, and
    // changes need a proof as strong as that.
    let with_passkey = passkey::supported() && ctx.with(|a| !a.factors.passkeys.is_empty()).unwrap_or(false);
    if with_passkey {
        methods.insert(0, SecondFactorMethod::Passkey);
    }
    let has_factor = ctx.with(|a| a.factors.authenticator || a.factors.email_confirmed || a.factors.phone_confirmed);
    let has_factor = has_factor.unwrap_or(false) || with_passkey;
    let password = RwSignal::new(String::new());
    let method = RwSignal::new(methods.first().copied());
    let code = RwSignal::new(String::new());
    let sent = RwSignal::new(None::<SendCodeResponse>);
    let err = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);

    let cancel = Callback::new(move |()| {
        if let Some(gave_up) = ctx.reauth.close(false) {
            gave_up.run(());
        }
        // Undo what the page showed optimistically (a flipped switch, say).
        ctx.reload();
    });
    let is_passkey = move || method.get() == Some(SecondFactorMethod::Passkey);
    let answered = move |r: ApiResult<()>| {
        busy.set(false);
        match r {
            Ok(()) => {
                if let Some(retry) = ctx.reauth.close(true) {
                    retry.run(());
                }
            }
            Err(e) => {
                code.set(String::new());
                err.set(Some(e.text()));
            }
        }
    };
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        busy.set(true);
        err.set(None);
        if method.get_untracked() == Some(SecondFactorMethod::Passkey) {
            // A passkey with user verification is two factors at once: no password.
            let (start, finish) =
                ("/api/account/reauthenticate/passkey/options", "/api/account/reauthenticate/passkey");
            spawn_local(async move { answered(passkey::ceremony(start, None, false, finish, false).await) });
            return;
        }
        let req = ReauthenticateRequest {
            password: password.get_untracked(),
            method: if has_factor { method.get_untracked() } else { None },
            code: if has_factor { Some(code.get_untracked().trim().to_owned()) } else { None },
        };
        spawn_local(async move { answered(api::post::<_, ()>("/api/account/reauthenticate", &req).await) });
    };
    view! {
        <Modal id=ids::REAUTH_DIALOG title="Confirm it's you".to_owned() on_close=cancel>
            <form on:submit=submit novalidate class="stack-form">
                <input type="text" class="sr-only" autocomplete="username" tabindex="-1" aria-hidden="true" readonly
                    prop:value=ctx.with(|a| a.user.username.clone()).unwrap_or_default() />
                <p class="muted">
                    {move || if is_passkey() {
                        "This change needs your passkey again."
                    } else {
                        "This change needs your password and a second factor again."
                    }}
                </p>
                <Show when=move || !is_passkey()>
                    <div class="field">
                        <label for=ids::REAUTH_PASSWORD>"Password"</label>
                        <input type="password" id=ids::REAUTH_PASSWORD autocomplete="current-password" bind:value=password />
                    </div>
                </Show>
                {has_factor.then(|| view! {
                    <SecondFactorFields methods method code sent busy err
                        ids=FactorFieldIds { method: ids::REAUTH_METHOD, send: ids::REAUTH_SEND_CODE, code: ids::REAUTH_CODE } />
                })}
                <ErrorText msg=err id=ids::REAUTH_ERROR />
                <div class="actions">
                    <button type="submit" class="btn btn-primary" id=ids::REAUTH_SUBMIT disabled=move || busy.get()>
                        {move || match (is_passkey(), busy.get()) {
                            (true, true) => "Waiting for your passkey…",
                            (true, false) => "Use your passkey",
                            (false, _) => "Confirm",
                        }}
                    </button>
                    <button type="button" class="btn btn-ghost" id=ids::REAUTH_CANCEL on:click=move |_| cancel.run(())>
                        "Cancel"
                    </button>
                </div>
            </form>
        </Modal>
    }
}
