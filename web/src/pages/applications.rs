//! The admin's OpenID Connect applications: register one (its secret is shown once),
//! change its 2FA rule with the impact previewed first, issue a new secret, remove it.
//! DESIGN.md section 5: an application's rule only adds to the scope's policy.

use leptos::prelude::*;
use leptos::task::spawn_local;
use twofold_policy::wire::{
    Application, ApplicationInput, ApplicationList, ApplicationWithSecret, ClientType, ImpactPreview,
};
use twofold_policy::{Rule, Strength};

use super::groups::StrengthSelect;
use crate::api;
use crate::ids;
use crate::model::AdminScope;
use crate::text;
use crate::widgets::{ConfirmButton, ErrorText, Loading, Notice};

/// The optional scopes an application may be allowed (`openid` always is).
const OPTIONAL_SCOPES: [&str; 4] = ["profile", "email", "phone", "offline_access"];

fn rule_words(a: &Application) -> String {
    let mut parts = Vec::new();
    if a.require_two_factor {
        parts.push("2FA required".to_owned());
    }
    if let Some(s) = a.min_strength {
        parts.push(format!("accepts {}", text::strength_label(s)));
    }
    if let Some(secs) = a.max_age_seconds {
        parts.push(format!("second factor at most {} old", text::duration_words(u64::from(secs))));
    }
    if parts.is_empty() { "The scope's policy".to_owned() } else { parts.join(" · ") }
}

/// What the row's form holds: every field an admin may change (the type and the token
/// algorithm stay as registered).
#[derive(Debug, Clone, Copy)]
struct Edits {
    name: RwSignal<String>,
    /// One URI per line.
    redirects: RwSignal<String>,
    logouts: RwSignal<String>,
    first_party: RwSignal<bool>,
    /// The optional scopes; `openid` is always allowed.
    scopes: RwSignal<Vec<String>>,
    /// Seconds, empty for none.
    max_age: RwSignal<String>,
}

impl Edits {
    fn of(a: &Application) -> Self {
        Edits {
            name: RwSignal::new(a.name.clone()),
            redirects: RwSignal::new(a.redirect_uris.join("\n")),
            logouts: RwSignal::new(a.post_logout_redirect_uris.join("\n")),
            first_party: RwSignal::new(a.first_party),
            scopes: RwSignal::new(a.allowed_scopes.iter().filter(|s| *s != "openid").cloned().collect()),
            max_age: RwSignal::new(a.max_age_seconds.map(|s| s.to_string()).unwrap_or_default()),
        }
    }
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

/// The form's state of an application as its PUT body. A max age that is not a number
/// is sent as none only when the field is empty; otherwise the form says so first.
fn input_of(a: &Application, e: Edits, rule: Rule) -> Result<ApplicationInput, String> {
    let max_age = e.max_age.get_untracked();
    let max_age_seconds = match max_age.trim() {
        "" => None,
        n => Some(n.parse::<u32>().map_err(|_| "The maximum age is a whole number of seconds.".to_owned())?),
    };
    let mut allowed_scopes = vec!["openid".to_owned()];
    allowed_scopes.extend(e.scopes.get_untracked());
    Ok(ApplicationInput {
        name: e.name.get_untracked().trim().to_owned(),
        client_type: a.client_type,
        redirect_uris: lines(&e.redirects.get_untracked()),
        post_logout_redirect_uris: lines(&e.logouts.get_untracked()),
        allowed_scopes,
        first_party: e.first_party.get_untracked(),
        require_two_factor: rule.require_two_factor,
        min_strength: rule.min_strength,
        max_age_seconds,
        token_alg: a.token_alg,
    })
}

/// `/applications`.
#[component]
pub fn Applications(scope: AdminScope) -> impl IntoView {
    let list_url = format!("{}/applications", scope.api_base());
    let apps = RwSignal::new(None::<Vec<Application>>);
    let err = RwSignal::new(None::<String>);
    let secret = RwSignal::new(None::<(String, String)>);
    let reloads = RwSignal::new(0_u32);
    let url = list_url.clone();
    Effect::new(move |_| {
        reloads.track();
        let url = url.clone();
        spawn_local(async move {
            match api::get::<ApplicationList>(&url).await {
                Ok(l) => apps.set(Some(l.items)),
                Err(e) => err.set(Some(e.text())),
            }
        });
    });
    let reload = Callback::new(move |()| reloads.update(|n| *n += 1));
    let show_secret = Callback::new(move |s: Option<(String, String)>| secret.set(s));

    view! {
        <div class="page">
            <header class="page-head">
                <h1>"Applications"</h1>
                <p class="muted">
                    "Applications that sign their users in through Twofold (OpenID Connect). An application's rule asks "
                    "more of sign-ins to it than the scope does, never less."
                </p>
            </header>
            {move || secret.get().map(|(name, s)| view! {
                <section class="card notice" id=ids::APP_SECRET_CARD>
                    <h2>{format!("The secret of {name}")}</h2>
                    <p>"Copy it into the application's configuration now: it is shown only this once."</p>
                    <code class="secret" id=ids::APP_SECRET>{s}</code>
                    <div class="actions">
                        <button type="button" class="btn" on:click=move |_| secret.set(None)>"Done"</button>
                    </div>
                </section>
            })}
            <NewApplication url=list_url.clone() reload show_secret />
            <section class="card">
                <ErrorText msg=err />
                {move || match apps.get() {
                    None => view! { <Loading what="applications" /> }.into_any(),
                    Some(l) if l.is_empty() => view! { <p class="empty" id=ids::APPS_LIST>"No applications yet."</p> }.into_any(),
                    Some(l) => view! {
                        <ul class="rows" id=ids::APPS_LIST>
                            {l.into_iter().map(|a| view! { <ApplicationRow app=a reload show_secret /> }).collect_view()}
                        </ul>
                    }
                    .into_any(),
                }}
            </section>
        </div>
    }
}

#[component]
fn NewApplication(url: String, reload: Callback<()>, show_secret: Callback<Option<(String, String)>>) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let public = RwSignal::new(false);
    let redirect = RwSignal::new(String::new());
    let first_party = RwSignal::new(true);
    let scopes = RwSignal::new(vec!["profile".to_owned()]);
    let err = RwSignal::new(None::<String>);
    let create = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let mut allowed = vec!["openid".to_owned()];
        allowed.extend(scopes.get_untracked());
        let req = ApplicationInput {
            name: name.get_untracked().trim().to_owned(),
            client_type: if public.get_untracked() { ClientType::Public } else { ClientType::Confidential },
            redirect_uris: redirect.get_untracked().split_whitespace().map(str::to_owned).collect(),
            post_logout_redirect_uris: Vec::new(),
            allowed_scopes: allowed,
            first_party: first_party.get_untracked(),
            require_two_factor: false,
            min_strength: None,
            max_age_seconds: None,
            token_alg: Default::default(),
        };
        let url = url.clone();
        err.set(None);
        spawn_local(async move {
            match api::post::<_, ApplicationWithSecret>(&url, &req).await {
                Ok(created) => {
                    name.set(String::new());
                    redirect.set(String::new());
                    show_secret.run(created.client_secret.map(|s| (created.application.name.clone(), s)));
                    reload.run(());
                }
                Err(e) => err.set(Some(e.text())),
            }
        });
    };
    view! {
        <section class="card">
            <h2>"New application"</h2>
            <form class="stack-form" on:submit=create novalidate>
                <div class="field">
                    <label for=ids::APP_CREATE_NAME>"Name"</label>
                    <input type="text" id=ids::APP_CREATE_NAME autocomplete="off" bind:value=name />
                </div>
                <div class="field">
                    <label for=ids::APP_CREATE_REDIRECT>"Redirect URIs"</label>
                    <textarea id=ids::APP_CREATE_REDIRECT rows="2" aria-describedby="app-redirect-help" bind:value=redirect></textarea>
                    <p class="hint" id="app-redirect-help">
                        "One per line, exactly as the application sends them: https://, or http:// on a loopback address."
                    </p>
                </div>
                <div class="check">
                    <input type="checkbox" id=ids::APP_CREATE_PUBLIC bind:checked=public />
                    <label for=ids::APP_CREATE_PUBLIC>"Runs in a browser or on a phone (public: no secret, PKCE)"</label>
                </div>
                <div class="check">
                    <input type="checkbox" id=ids::APP_CREATE_FIRST_PARTY bind:checked=first_party />
                    <label for=ids::APP_CREATE_FIRST_PARTY>"Our own application (no consent screen)"</label>
                </div>
                <fieldset class="field">
                    <legend>"What it may ask for, besides who the user is"</legend>
                    {OPTIONAL_SCOPES.iter().map(|s| {
                        let s = *s;
                        let id = format!("app-create-scope-{s}");
                        view! {
                            <div class="check">
                                <input type="checkbox" id=id.clone() data-test=ids::APP_CREATE_SCOPE data-scope=s
                                    prop:checked=move || scopes.with(|l| l.iter().any(|x| x == s))
                                    on:change=move |ev| {
                                        let on = event_target_checked(&ev);
                                        scopes.update(|l| {
                                            l.retain(|x| x != s);
                                            if on {
                                                l.push(s.to_owned());
                                            }
                                        });
                                    } />
                                <label for=id>{text::scope_label(s)}</label>
                            </div>
                        }
                    }).collect_view()}
                </fieldset>
                <button type="submit" class="btn btn-primary" id=ids::APP_CREATE_SUBMIT>"Register application"</button>
            </form>
            <ErrorText msg=err id=ids::APP_CREATE_ERROR />
        </section>
    }
}

#[component]
fn ApplicationRow(
    app: Application,
    reload: Callback<()>,
    show_secret: Callback<Option<(String, String)>>,
) -> impl IntoView {
    let url = format!("/api/applications/{}", api::enc(&app.id));
    let require = RwSignal::new(app.require_two_factor);
    let strength = RwSignal::new(app.min_strength.map(|s| s.as_str().to_owned()).unwrap_or_default());
    let impact = RwSignal::new(None::<String>);
    let err = RwSignal::new(None::<String>);
    let notice = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let edits = Edits::of(&app);
    let rule = move || Rule {
        require_two_factor: require.get_untracked(),
        min_strength: Strength::parse(&strength.get_untracked()),
    };
    let preview = {
        let url = format!("{url}/preview");
        move |_| {
            let url = url.clone();
            let r = rule();
            err.set(None);
            spawn_local(async move {
                match api::post::<_, ImpactPreview>(&url, &r).await {
                    Ok(p) => {
                        let asks = text::application_asks_sentence(&p);
                        impact.set(Some(format!("{} {asks}", text::impact_sentence(&p)).trim_end().to_owned()));
                    }
                    Err(e) => err.set(Some(e.text())),
                }
            });
        }
    };
    let save = {
        let (url, app) = (url.clone(), app.clone());
        move |_| {
            let url = url.clone();
            let req = match input_of(&app, edits, rule()) {
                Ok(req) => req,
                Err(why) => {
                    err.set(Some(why));
                    return;
                }
            };
            busy.set(true);
            err.set(None);
            spawn_local(async move {
                let r = api::put::<_, ApplicationWithSecret>(&url, &req).await;
                busy.set(false);
                match r {
                    Ok(_) => {
                        notice.set(Some("Saved.".to_owned()));
                        reload.run(());
                    }
                    Err(e) => err.set(Some(e.text())),
                }
            });
        }
    };
    let rotate = {
        let (url, name) = (format!("{url}/secret"), app.name.clone());
        Callback::new(move |()| {
            let (url, name) = (url.clone(), name.clone());
            err.set(None);
            spawn_local(async move {
                match api::post_empty::<ApplicationWithSecret>(&url).await {
                    Ok(s) => show_secret.run(s.client_secret.map(|s| (name, s))),
                    Err(e) => err.set(Some(e.text())),
                }
            });
        })
    };
    let remove = {
        let url = url.clone();
        Callback::new(move |()| {
            let url = url.clone();
            spawn_local(async move {
                match api::delete(&url).await {
                    Ok(()) => reload.run(()),
                    Err(e) => err.set(Some(e.text())),
                }
            });
        })
    };
    let confidential = app.client_type == ClientType::Confidential;
    view! {
        <li class="row stack" data-test=ids::APP_ROW data-id=app.id.clone() data-name=app.name.clone()>
            <div class="row-main">
                <strong>{app.name.clone()}</strong>
                " "
                <span class="tag">{if confidential { "confidential" } else { "public" }}</span>
                <div class="muted small">{format!("client_id {} · issuer {}", app.client_id, app.issuer)}</div>
                <div class="muted small" data-test=ids::APP_RULE>{rule_words(&app)}</div>
            </div>
            <div class="inline-form">
                <div class="check">
                    <input type="checkbox" data-test=ids::APP_REQUIRE id=format!("app-require-{}", app.id) bind:checked=require />
                    <label for=format!("app-require-{}", app.id)>"Two-factor sign-in required"</label>
                </div>
                <div class="field">
                    <label for=format!("app-strength-{}", app.id)>"Accepted factors"</label>
                    <StrengthSelect value=strength id=format!("app-strength-{}", app.id) test=ids::APP_STRENGTH />
                </div>
                <button type="button" class="btn btn-small" data-test=ids::APP_PREVIEW on:click=preview>"Preview"</button>
                <button type="button" class="btn btn-small btn-primary" data-test=ids::APP_SAVE on:click=save
                    disabled=move || busy.get()>"Save"</button>
            </div>
            <details class="app-edit" data-test=ids::APP_EDIT>
                <summary>"Name, addresses and scopes"</summary>
                <div class="field">
                    <label for=format!("app-name-{}", app.id)>"Name"</label>
                    <input type="text" id=format!("app-name-{}", app.id) data-test=ids::APP_EDIT_NAME bind:value=edits.name />
                </div>
                <div class="field">
                    <label for=format!("app-redirects-{}", app.id)>"Redirect URIs, one per line (matched exactly)"</label>
                    <textarea id=format!("app-redirects-{}", app.id) data-test=ids::APP_EDIT_REDIRECTS rows="2"
                        prop:value=move || edits.redirects.get()
                        on:input=move |ev| edits.redirects.set(event_target_value(&ev))></textarea>
                </div>
                <div class="field">
                    <label for=format!("app-logouts-{}", app.id)>"Where a sign-out may return, one per line"</label>
                    <textarea id=format!("app-logouts-{}", app.id) data-test=ids::APP_EDIT_LOGOUTS rows="2"
                        prop:value=move || edits.logouts.get()
                        on:input=move |ev| edits.logouts.set(event_target_value(&ev))></textarea>
                </div>
                <div class="check">
                    <input type="checkbox" id=format!("app-first-party-{}", app.id) data-test=ids::APP_EDIT_FIRST_PARTY
                        bind:checked=edits.first_party />
                    <label for=format!("app-first-party-{}", app.id)>"Our own application (no consent screen)"</label>
                </div>
                <fieldset class="field">
                    <legend>"What it may ask for, besides who the user is"</legend>
                    {OPTIONAL_SCOPES.iter().map(|s| {
                        let s = *s;
                        let id = format!("app-scope-{}-{s}", app.id);
                        view! {
                            <div class="check">
                                <input type="checkbox" id=id.clone() data-test=ids::APP_EDIT_SCOPE data-scope=s
                                    prop:checked=move || edits.scopes.with(|l| l.iter().any(|x| x == s))
                                    on:change=move |ev| {
                                        let on = event_target_checked(&ev);
                                        edits.scopes.update(|l| {
                                            l.retain(|x| x != s);
                                            if on {
                                                l.push(s.to_owned());
                                            }
                                        });
                                    } />
                                <label for=id>{text::scope_label(s)}</label>
                            </div>
                        }
                    }).collect_view()}
                </fieldset>
                <div class="field">
                    <label for=format!("app-max-age-{}", app.id)>"Second factor at most this many seconds old (empty: any age)"</label>
                    <input type="text" inputmode="numeric" id=format!("app-max-age-{}", app.id) data-test=ids::APP_EDIT_MAX_AGE
                        bind:value=edits.max_age />
                </div>
            </details>
            {move || impact.get().map(|i| view! { <p class="notice" data-test=ids::APP_IMPACT>{i}</p> })}
            <div class="actions">
                {confidential.then(|| view! {
                    <ConfirmButton label="New secret" question="Issue a new secret? The old one stops working at once."
                        confirm_label="Yes, issue it" test=ids::APP_ROTATE small=true
                        disabled=Signal::derive(move || busy.get()) on_confirm=rotate />
                })}
                <ConfirmButton label="Remove" question="Remove this application? Its users are signed out of it."
                    confirm_label="Yes, remove it" test=ids::APP_DELETE small=true
                    disabled=Signal::derive(move || busy.get()) on_confirm=remove />
            </div>
            <ErrorText msg=err />
            <Notice msg=notice />
        </li>
    }
}
