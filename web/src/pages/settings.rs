//! 2FA settings of the admin's scope: the host's for a host admin, their tenant's for a
//! tenant admin. The form validates with the policy crate's own `ScopeSettings::validate`
//! and shows, before anything is saved, what the change would do to the scope's users.
//! A tenant whose ceiling (set by the host) is forced or disabled sees its behaviour
//! fixed, with the reason; its other settings stay editable.

use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;
use twofold_policy::vocab::{Behaviour, ProviderSet, ScopeSettings, Strength, TenantFeature};
use twofold_policy::wire::{ImpactPreview, MessageUsage, SettingsPreviewRequest, SettingsView};

use crate::api::{self, ApiError};
use crate::ids;
use crate::model::{AdminScope, FieldProblem, SettingsDraft};
use crate::text;
use crate::widgets::{ErrorText, Loading, Notice, WeakerTag};

/// How long typing may pause before the impact preview is asked for.
const PREVIEW_DELAY: Duration = Duration::from_millis(250);

/// The live impact preview, shown under the form.
#[derive(Debug, Clone, PartialEq)]
pub enum PreviewState {
    Unchanged,
    Invalid,
    Loading,
    Ready(ImpactPreview),
    Failed(String),
}

impl PreviewState {
    pub fn sentence(&self) -> String {
        match self {
            PreviewState::Unchanged => "No unsaved changes.".to_owned(),
            PreviewState::Invalid => "Fix the highlighted field to see the impact of this change.".to_owned(),
            PreviewState::Loading => "Working out the impact…".to_owned(),
            PreviewState::Ready(p) => text::impact_sentence(p),
            PreviewState::Failed(e) => format!("The impact could not be previewed: {e}"),
        }
    }
}

/// Asks for an impact preview after a short pause, dropping answers that a newer
/// request has overtaken (typing "30" must not end showing the preview for "3").
pub fn debounced_preview<B>(seq: StoredValue<u64>, out: RwSignal<PreviewState>, url: String, body: B)
where
    B: serde::Serialize + Send + Sync + 'static,
{
    seq.update_value(|g| *g += 1);
    let mine = seq.get_value();
    out.set(PreviewState::Loading);
    set_timeout(
        move || {
            if seq.try_get_value() != Some(mine) {
                return;
            }
            spawn_local(async move {
                let r = api::post::<_, ImpactPreview>(&url, &body).await;
                if seq.try_get_value() != Some(mine) {
                    return;
                }
                out.set(match r {
                    Ok(p) => PreviewState::Ready(p),
                    Err(e) => PreviewState::Failed(e.text()),
                });
            });
        },
        PREVIEW_DELAY,
    );
}

#[component]
pub fn Settings(scope: AdminScope) -> impl IntoView {
    let (base, usage_url, heading, intro) = match &scope {
        AdminScope::Host => (
            "/api/host/settings".to_owned(),
            "/api/host/message-usage".to_owned(),
            "Two-factor settings for host users".to_owned(),
            "These settings apply to host users (administrators of this service) only. Each tenant has its own settings, within the ceiling set for it under Tenants → Features.".to_owned(),
        ),
        AdminScope::Tenant { id, name } => (
            format!("/api/tenants/{}/settings", api::enc(id)),
            format!("/api/tenants/{}/message-usage", api::enc(id)),
            format!("Two-factor settings for {}", name.clone().unwrap_or_else(|| "your tenant".to_owned())),
            "These settings apply to every user of your tenant, within the limits the host sets.".to_owned(),
        ),
    };

    // Loaded once; the form then keeps its own baseline, so saving does not rebuild it
    // (and wipe its "Saved." notice).
    let saved = RwSignal::new(None::<ScopeSettings>);
    let ceiling = RwSignal::new(None::<TenantFeature>);
    let load_err = RwSignal::new(None::<String>);
    let get_url = base.clone();
    spawn_local(async move {
        match api::get::<SettingsView>(&get_url).await.map(|v| (v.settings, v.feature)) {
            Ok((s, f)) => {
                ceiling.set(f);
                saved.set(Some(s));
            }
            Err(e) => load_err.set(Some(e.text())),
        }
    });
    // Which channels can send, and this hour's messages. Without it the form still
    // works; it only cannot say why email or SMS would not be offered.
    let usage = RwSignal::new(None::<MessageUsage>);
    spawn_local(async move {
        if let Ok(u) = api::get::<MessageUsage>(&usage_url).await {
            usage.set(Some(u));
        }
    });

    view! {
        <div class="page">
            <header class="page-head">
                <h1>{heading}</h1>
                <p class="muted">{intro}</p>
            </header>
            <ErrorText msg=load_err />
            {move || match saved.get() {
                None => view! { <Loading what="the settings" /> }.into_any(),
                Some(s) => view! { <SettingsForm initial=s base=base.clone() ceiling usage /> }.into_any(),
            }}
        </div>
    }
}

#[component]
fn SettingsForm(
    initial: ScopeSettings,
    base: String,
    ceiling: RwSignal<Option<TenantFeature>>,
    usage: RwSignal<Option<MessageUsage>>,
) -> impl IntoView {
    let d = SettingsDraft::from(&initial);
    let behaviour = RwSignal::new(d.behaviour);
    let users_can_change = RwSignal::new(d.users_can_change);
    let remember = RwSignal::new(d.remember_browser);
    let remember_days = RwSignal::new(d.remember_browser_days);
    let grace_days = RwSignal::new(d.enrollment_grace_days);
    let p_auth = RwSignal::new(d.allowed_providers.authenticator);
    let p_email = RwSignal::new(d.allowed_providers.email);
    let p_sms = RwSignal::new(d.allowed_providers.sms);
    let p_passkey = RwSignal::new(d.allowed_providers.passkey);
    let sms_countries = RwSignal::new(d.sms_allowed_country_codes.clone());
    let min_strength = RwSignal::new(d.min_strength);
    let aaguids = RwSignal::new(d.passkey_aaguids.clone());
    // The last saved values: the preview compares against them.
    let baseline = RwSignal::new(initial);

    let checked = Memo::new(move |_| {
        SettingsDraft {
            behaviour: behaviour.get(),
            users_can_change: users_can_change.get(),
            remember_browser: remember.get(),
            remember_browser_days: remember_days.get(),
            enrollment_grace_days: grace_days.get(),
            allowed_providers: ProviderSet {
                authenticator: p_auth.get(),
                email: p_email.get(),
                sms: p_sms.get(),
                passkey: p_passkey.get(),
            },
            sms_allowed_country_codes: sms_countries.get(),
            min_strength: min_strength.get(),
            passkey_aaguids: aaguids.get(),
        }
        .to_settings()
    });
    // A ceiling of forced or disabled fixes the behaviour users get; what the tenant
    // stored stays as it is (the server refuses to change it) and applies again when the
    // ceiling is lifted, so the radios keep showing the stored choice, beside the ceiling.
    let fixed = move || ceiling.get().filter(|f| f.behaviour != Behaviour::Optional);

    let server_err = RwSignal::new(None::<ApiError>);
    let saved_notice = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let field_err = move |field: &'static str| {
        Signal::derive(move || {
            let local = checked
                .with(|c| c.as_ref().err().filter(|p| p.field == field).map(|p: &FieldProblem| p.message.clone()));
            local.or_else(|| server_err.with(|e| e.as_ref().filter(|e| e.field() == Some(field)).map(ApiError::text)))
        })
    };
    let general_err = Signal::derive(move || {
        server_err.with(|e| {
            e.as_ref()
                .filter(|e| {
                    !matches!(
                        e.field(),
                        Some(
                            "remember_browser_days"
                                | "enrollment_grace_days"
                                | "allowed_providers"
                                | "sms_allowed_country_codes"
                        )
                    )
                })
                .map(ApiError::text)
        })
    });

    let preview = RwSignal::new(PreviewState::Unchanged);
    let seq = StoredValue::new(0_u64);
    let preview_url = format!("{base}/preview");
    Effect::new(move |_| {
        let now = checked.get();
        let before = baseline.get();
        match now {
            Ok(s) if s == before => {
                seq.update_value(|g| *g += 1);
                preview.set(PreviewState::Unchanged);
            }
            Ok(s) => debounced_preview(seq, preview, preview_url.clone(), SettingsPreviewRequest { settings: s }),
            Err(_) => {
                seq.update_value(|g| *g += 1);
                preview.set(PreviewState::Invalid);
            }
        }
    });

    let save_url = base.clone();
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        saved_notice.set(None);
        server_err.set(None);
        let Ok(s) = checked.get_untracked() else { return };
        busy.set(true);
        let url = save_url.clone();
        spawn_local(async move {
            let r = api::put::<_, SettingsView>(&url, &s).await.map(|v| {
                ceiling.set(v.feature);
                v.settings
            });
            busy.set(false);
            match r {
                Ok(stored) => {
                    baseline.set(stored);
                    saved_notice.set(Some("Saved. The new settings apply from the next sign-in.".to_owned()));
                }
                Err(e) => server_err.set(Some(e)),
            }
        });
    };

    let radio = move |b: Behaviour, id: &'static str| {
        view! {
            <div class="radio">
                <input
                    type="radio"
                    name="behaviour"
                    id=id
                    value=b.as_str()
                    prop:checked=move || behaviour.get() == b
                    disabled=move || fixed().is_some()
                    aria-describedby=format!("{id}-help")
                    on:change=move |_| behaviour.set(b)
                />
                <label for=id>
                    <strong>{text::behaviour_label(b)}</strong>
                    <span class="hint" id=format!("{id}-help")>{text::behaviour_help(b)}</span>
                </label>
            </div>
        }
    };
    let provider_box = move |sig: RwSignal<bool>, id: &'static str, label: &'static str, weaker: bool| {
        view! {
            <div class="check">
                <input type="checkbox" id=id bind:checked=sig />
                <label for=id>{label} {weaker.then(|| view! { " " <WeakerTag /> })}</label>
            </div>
        }
    };
    // `email` picks the channel; shown only when its codes cannot be sent or are only logged.
    let sender_note = move |email: bool, id: &'static str| {
        move || {
            usage.get().and_then(|u| {
                let sender = if email { u.email.sender } else { u.sms.sender };
                text::sender_note(email, sender).map(|note| view! { <p class="notice warn indent" id=id>{note}</p> })
            })
        }
    };

    view! {
        <form class="card settings" on:submit=save novalidate>
            <fieldset>
                <legend>"Behaviour"</legend>
                {move || fixed().map(|f| view! {
                    <div class="notice warn" id=ids::SETTINGS_BEHAVIOUR_FIXED>
                        <p>
                            <strong>"In force: " {text::behaviour_label(f.behaviour)} ", fixed by the host."</strong>
                            {format!(
                                " The host has set this tenant's two-factor feature to {}, so every user of the tenant gets that, whatever is chosen below.",
                                f.behaviour.as_str()
                            )}
                        </p>
                        <p id=ids::SETTINGS_STORED_CHOICE>
                            {move || format!(
                                "Your tenant's own choice, kept for when the host lifts the ceiling: {}. It cannot be changed while the ceiling holds; the other options below apply now.",
                                text::behaviour_label(behaviour.get())
                            )}
                        </p>
                    </div>
                })}
                {radio(Behaviour::Optional, ids::SETTINGS_BEHAVIOUR_OPTIONAL)}
                {radio(Behaviour::Disabled, ids::SETTINGS_BEHAVIOUR_DISABLED)}
                {radio(Behaviour::Forced, ids::SETTINGS_BEHAVIOUR_FORCED)}
                <Show when=move || behaviour.get() == Behaviour::Optional>
                    <div class="check indent">
                        <input type="checkbox" id=ids::SETTINGS_USERS_CAN_CHANGE bind:checked=users_can_change />
                        <label for=ids::SETTINGS_USERS_CAN_CHANGE>
                            "Users can change their own switch"
                            <span class="hint">"Otherwise only an admin can turn a user's two-factor sign-in on or off."</span>
                        </label>
                    </div>
                </Show>
            </fieldset>
            <fieldset>
                <legend>"Remembered browsers"</legend>
                <div class="check">
                    <input type="checkbox" id=ids::SETTINGS_REMEMBER_BROWSER bind:checked=remember />
                    <label for=ids::SETTINGS_REMEMBER_BROWSER>
                        "Offer “Remember this browser”"
                        <span class="hint">"A remembered browser skips the second factor until it expires."</span>
                    </label>
                </div>
                <div class="field indent">
                    <label for=ids::SETTINGS_REMEMBER_DAYS>"Remember a browser for (days)"</label>
                    <input
                        type="text"
                        inputmode="numeric"
                        autocomplete="off"
                        class="num"
                        id=ids::SETTINGS_REMEMBER_DAYS
                        disabled=move || !remember.get()
                        bind:value=remember_days
                    />
                    <ErrorText msg=field_err("remember_browser_days") />
                </div>
            </fieldset>
            <fieldset>
                <legend>"Enrolment"</legend>
                <div class="field">
                    <label for=ids::SETTINGS_GRACE_DAYS>"Grace period to set up a second factor (days)"</label>
                    <input
                        type="text"
                        inputmode="numeric"
                        autocomplete="off"
                        class="num"
                        id=ids::SETTINGS_GRACE_DAYS
                        aria-describedby="grace-help"
                        bind:value=grace_days
                    />
                    <p class="hint" id="grace-help">
                        "When a second factor becomes required, users without one may postpone enrolment this long, counted from their first sign-in. 0: they must enrol at once."
                    </p>
                    <ErrorText msg=field_err("enrollment_grace_days") />
                </div>
            </fieldset>
            <fieldset>
                <legend>"Allowed second factors"</legend>
                {provider_box(p_auth, ids::SETTINGS_PROVIDER_AUTHENTICATOR, "Authenticator app", false)}
                {provider_box(p_email, ids::SETTINGS_PROVIDER_EMAIL, "Email code", true)}
                {sender_note(true, ids::SETTINGS_EMAIL_SENDER_NOTE)}
                {provider_box(p_sms, ids::SETTINGS_PROVIDER_SMS, "SMS code", true)}
                {sender_note(false, ids::SETTINGS_SMS_SENDER_NOTE)}
                {provider_box(p_passkey, ids::SETTINGS_PROVIDER_PASSKEY, "Passkey", false)}
                <ErrorText msg=field_err("allowed_providers") />
                <div class="field">
                    <label for=ids::SETTINGS_MIN_STRENGTH>"Weakest second factor accepted"</label>
                    <select
                        id=ids::SETTINGS_MIN_STRENGTH
                        aria-describedby="min-strength-help"
                        on:change=move |ev| {
                            if let Some(s) = Strength::parse(&event_target_value(&ev)) {
                                min_strength.set(s);
                            }
                        }
                    >
                        {Strength::ALL
                            .into_iter()
                            .map(|s| {
                                view! {
                                    <option value=s.as_str() selected=move || min_strength.get() == s>
                                        {text::strength_label(s)}
                                    </option>
                                }
                            })
                            .collect_view()}
                    </select>
                    <p class="hint" id="min-strength-help">
                        "Factors below this are not offered. Phishing resistant: passkeys only, and a recovery code only leads to setting up a new passkey."
                    </p>
                    <ErrorText msg=field_err("min_strength") />
                </div>
                <div class="field indent">
                    <label for=ids::SETTINGS_PASSKEY_AAGUIDS>"Authenticator models passkeys may come from (AAGUIDs)"</label>
                    <input
                        type="text"
                        id=ids::SETTINGS_PASSKEY_AAGUIDS
                        placeholder="any model"
                        aria-describedby="aaguids-help"
                        bind:value=aaguids
                    />
                    <p class="hint" id="aaguids-help">"Empty: any authenticator. Separate several with commas."</p>
                    <ErrorText msg=field_err("passkey_aaguids") />
                </div>
                <div class="field indent">
                    <label for=ids::SETTINGS_SMS_COUNTRIES>"Countries texts may go to (calling codes)"</label>
                    <input
                        type="text"
                        id=ids::SETTINGS_SMS_COUNTRIES
                        placeholder="every country"
                        aria-describedby="sms-countries-help"
                        bind:value=sms_countries
                    />
                    <p class="hint" id="sms-countries-help">
                        "For example 1, 44 for North America and the United Kingdom. Phone numbers elsewhere are refused when they are set up and are sent no code. Empty: every country."
                    </p>
                    <ErrorText msg=field_err("sms_allowed_country_codes") />
                </div>
                {move || usage.get().map(|u| view! {
                    <p class="hint" id=ids::SETTINGS_MESSAGE_USAGE>
                        {format!(
                            "{} {} Counts start again at {}.",
                            text::usage_sentence("Emails", &u.email),
                            text::usage_sentence("Texts", &u.sms),
                            text::format_time(&u.hour_end),
                        )}
                    </p>
                })}
            </fieldset>
            // The form is long: the impact of the change and Save stay pinned to the
            // bottom of the window while any of it is on screen.
            <div class="sticky-footer" id=ids::SETTINGS_FOOTER>
                <div class="impact" aria-live="polite">
                    <span class="impact-label">"Impact"</span>
                    <p
                        id=ids::SETTINGS_PREVIEW
                        class=move || match preview.get() {
                            PreviewState::Ready(p) if p.newly_required_without_factor > 0 => "impact-text warn",
                            _ => "impact-text",
                        }
                    >
                        {move || preview.get().sentence()}
                    </p>
                </div>
                <div class="actions">
                    <button
                        type="submit"
                        class="btn btn-primary"
                        id=ids::SETTINGS_SAVE
                        disabled=move || busy.get() || checked.with(Result::is_err)
                    >
                        {move || if busy.get() { "Saving…" } else { "Save settings" }}
                    </button>
                </div>
            </div>
            <ErrorText msg=general_err id=ids::SETTINGS_ERROR />
            <Notice msg=saved_notice id=ids::SETTINGS_SAVED />
        </form>
    }
}
