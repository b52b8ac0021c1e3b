//! The audit trail of the admin's scope, newest first, with "Show older events" paging
//! by cursor, filters (event type, who, about whom, when, from which address) and
//! export of what the filters select as CSV or JSON lines. Names come with the events,
//! as far as the admin may see them; each event shows only the fields it changed.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_query_map;
use twofold_policy::wire::{AuditEvent, AuditPage};

use crate::api;
use crate::ids;
use crate::model::AdminScope;
use crate::text;
use crate::widgets::{ErrorText, Loading};

const LIMIT: u32 = 50;

/// Families of event types offered in the type filter (a value ending in a dot selects
/// every type that starts with it).
const FAMILIES: &[(&str, &str)] = &[
    ("", "All events"),
    ("sign_in.", "Sign-ins"),
    ("user.", "Users"),
    ("factor.", "Second factors"),
    ("session.", "Sessions"),
    ("password_reset.", "Password resets"),
    ("role.", "Roles"),
    ("tenant.", "Tenants"),
    ("host_settings.", "Host settings"),
    ("tenant_settings.", "Tenant settings"),
    ("tenant_feature.", "Tenant features"),
    ("notice.", "Security notices"),
];

/// The filters as applied; a person filter carries the name shown in its chip.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Filters {
    action: String,
    actor: Option<(String, String)>,
    user: Option<(String, String)>,
    from: String,
    to: String,
    address: String,
}

impl Filters {
    /// The query string for the API, after `tenant_id` (if any).
    fn query(&self, tenant: Option<&str>) -> String {
        let mut q = Vec::new();
        if let Some(t) = tenant {
            q.push(format!("tenant_id={}", api::enc(t)));
        }
        if !self.action.is_empty() {
            q.push(format!("action={}", api::enc(&self.action)));
        }
        if let Some((id, _)) = &self.actor {
            q.push(format!("actor={}", api::enc(id)));
        }
        if let Some((id, _)) = &self.user {
            q.push(format!("user={}", api::enc(id)));
        }
        // Days from the date fields, as whole UTC days: "to" includes its day.
        if !self.from.is_empty() {
            q.push(format!("from={}", api::enc(&format!("{}T00:00:00Z", self.from))));
        }
        if !self.to.is_empty() {
            q.push(format!("to={}", api::enc(&format!("{}T23:59:59.999Z", self.to))));
        }
        if !self.address.trim().is_empty() {
            q.push(format!("client_ip={}", api::enc(self.address.trim())));
        }
        q.join("&")
    }
}

#[component]
pub fn Audit(scope: AdminScope) -> impl IntoView {
    let query = use_query_map();
    // A tenant admin always sees their tenant; a host admin everything, or one tenant
    // when arriving from the tenant list.
    let is_host = scope == AdminScope::Host;
    let tenant = Memo::new(move |_| match &scope {
        AdminScope::Host => query.with(|q| q.get("tenant_id")).filter(|t| !t.is_empty()),
        AdminScope::Tenant { id, .. } => Some(id.clone()),
    });
    let applied = RwSignal::new(Filters::default());
    // The form as typed, applied with the button (person filters apply at once).
    let action = RwSignal::new(String::new());
    let from = RwSignal::new(String::new());
    let to = RwSignal::new(String::new());
    let address = RwSignal::new(String::new());
    let items = RwSignal::new(Vec::<AuditEvent>::new());
    let next = RwSignal::new(None::<String>);
    let loaded = RwSignal::new(false);
    let busy = RwSignal::new(false);
    let err = RwSignal::new(None::<String>);

    let load = move |before: Option<String>| {
        let filters = applied.get_untracked().query(tenant.get_untracked().as_deref());
        let mut url = format!("/api/audit?limit={LIMIT}");
        if !filters.is_empty() {
            url.push('&');
            url.push_str(&filters);
        }
        if let Some(b) = &before {
            url.push_str(&format!("&before={}", api::enc(b)));
        }
        busy.set(true);
        err.set(None);
        spawn_local(async move {
            let r = api::get::<AuditPage>(&url).await;
            busy.set(false);
            loaded.set(true);
            match r {
                Ok(page) => {
                    next.set(page.next_before);
                    if before.is_some() {
                        items.update(|v| v.extend(page.items));
                    } else {
                        items.set(page.items);
                    }
                }
                Err(e) => err.set(Some(e.text())),
            }
        });
    };
    Effect::new(move |_| {
        tenant.track();
        applied.track();
        load(None);
    });
    let apply = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        applied.update(|f| {
            f.action = action.get_untracked();
            f.from = from.get_untracked();
            f.to = to.get_untracked();
            f.address = address.get_untracked();
        });
    };
    let clear = move |_| {
        action.set(String::new());
        from.set(String::new());
        to.set(String::new());
        address.set(String::new());
        applied.set(Filters::default());
    };
    let export = move |format: &str| {
        let filters = applied.with(|f| f.query(tenant.get().as_deref()));
        if filters.is_empty() {
            format!("/api/audit/export?format={format}")
        } else {
            format!("/api/audit/export?format={format}&{filters}")
        }
    };

    // How an event names its actor and its subject: by name where the server gave one.
    let who = |e: &AuditEvent| match (&e.actor_user_id, &e.actor_name) {
        (None, _) => "the system".to_owned(),
        (Some(_), Some(name)) => name.clone(),
        (Some(id), None) => format!("user {} (not in your scope, or deleted)", text::short_id(id)),
    };
    let what = |e: &AuditEvent| match (e.target.split_once(':'), &e.target_name) {
        (Some(("settings", "host")), _) => "the host settings".to_owned(),
        (Some(("settings", _)), Some(n)) => format!("the settings of {n}"),
        (Some((kind, _)), Some(n)) => format!("{kind} {n}"),
        (Some((kind, id)), None) => format!("{kind} {}", text::short_id(id)),
        (None, _) => e.target.clone(),
    };
    view! {
        <div class="page">
            <header class="page-head">
                <h1>"Audit trail"</h1>
                <p class="muted">
                    {move || match (tenant.get(), is_host) {
                        (Some(_), true) => "Events of one tenant, newest first. ".to_owned(),
                        (Some(_), false) => "Events of your tenant, newest first.".to_owned(),
                        (None, _) => "Every event, of the host and all tenants, newest first.".to_owned(),
                    }}
                    {move || (tenant.get().is_some() && is_host).then(|| view! { <a href="/audit">"Show all events"</a> })}
                </p>
            </header>
            <section class="card" aria-label="Filters">
                <form class="filters" on:submit=apply novalidate>
                    <div class="field">
                        <label for=ids::AUDIT_FILTER_ACTION>"Events"</label>
                        <select id=ids::AUDIT_FILTER_ACTION on:change=move |ev| action.set(event_target_value(&ev)) prop:value=move || action.get()>
                            {FAMILIES.iter().map(|(v, label)| view! { <option value=*v>{*label}</option> }).collect_view()}
                        </select>
                    </div>
                    <div class="field">
                        <label for=ids::AUDIT_FILTER_FROM>"From"</label>
                        <input type="date" id=ids::AUDIT_FILTER_FROM bind:value=from />
                    </div>
                    <div class="field">
                        <label for=ids::AUDIT_FILTER_TO>"To"</label>
                        <input type="date" id=ids::AUDIT_FILTER_TO bind:value=to />
                    </div>
                    <div class="field">
                        <label for=ids::AUDIT_FILTER_ADDRESS>"Client address"</label>
                        <input type="text" id=ids::AUDIT_FILTER_ADDRESS inputmode="decimal" placeholder="203.0.113.7" bind:value=address />
                    </div>
                    <div class="actions wrap">
                        <button type="submit" class="btn" id=ids::AUDIT_FILTER_APPLY>"Apply"</button>
                        <button type="button" class="btn btn-ghost" id=ids::AUDIT_FILTER_CLEAR on:click=clear>"Clear"</button>
                        <a class="btn btn-ghost" id=ids::AUDIT_EXPORT_CSV href=move || export("csv") download="twofold-audit.csv">"Export CSV"</a>
                        <a class="btn btn-ghost" id=ids::AUDIT_EXPORT_JSONL href=move || export("jsonl") download="twofold-audit.jsonl">"Export JSON lines"</a>
                    </div>
                </form>
                {move || {
                    let f = applied.get();
                    let chips: Vec<(String, &'static str)> = [
                        f.actor.as_ref().map(|(_, n)| (format!("By {n}"), "actor")),
                        f.user.as_ref().map(|(_, n)| (format!("About {n}"), "user")),
                    ]
                    .into_iter()
                    .flatten()
                    .collect();
                    chips.into_iter().map(|(label, which)| view! {
                        <span class="tag" data-test=ids::AUDIT_FILTER_CHIP>
                            {label}
                            " "
                            <button type="button" class="btn btn-small btn-ghost" aria-label="Remove this filter"
                                on:click=move |_| applied.update(|f| if which == "actor" { f.actor = None } else { f.user = None })>
                                "×"
                            </button>
                        </span>
                    }).collect_view()
                }}
            </section>
            <section class="card">
                <ErrorText msg=err id=ids::AUDIT_ERROR />
                {move || if !loaded.get() {
                    view! { <Loading what="events" /> }.into_any()
                } else if items.with(Vec::is_empty) {
                    view! { <p class="empty" id=ids::AUDIT_LIST>"No events match."</p> }.into_any()
                } else {
                    view! {
                        <ol class="audit" id=ids::AUDIT_LIST>
                            <For each=move || items.get() key=|e: &AuditEvent| e.id.clone() let:e>
                                <li class="audit-item" data-test=ids::AUDIT_ITEM data-id=e.id.clone() data-action=e.action.clone()>
                                    <div class="audit-when muted small"><time datetime=e.at.clone()>{text::format_time(&e.at)}</time></div>
                                    <div class="audit-what">
                                        <strong>{text::audit_action_label(&e.action)}</strong>
                                        " "
                                        <code class="muted small">{e.action.clone()}</code>
                                        <div class="small">
                                            {
                                                let mut line = format!("By {} · on {}", who(&e), what(&e));
                                                if tenant.get_untracked().is_none()
                                                    && let Some(t) = e.tenant_name.as_ref().or(e.tenant_id.as_ref())
                                                {
                                                    line.push_str(&format!(" · in {t}"));
                                                }
                                                if let Some(ip) = &e.client_ip {
                                                    line.push_str(&format!(" · from {ip}"));
                                                }
                                                line
                                            }
                                            {e.actor_user_id.clone().map(|id| {
                                                let name = who(&e);
                                                view! {
                                                    " "
                                                    <button type="button" class="btn btn-small btn-ghost" data-test=ids::AUDIT_BY_ACTOR
                                                        on:click=move |_| applied.update(|f| f.actor = Some((id.clone(), name.clone())))>
                                                        "Only by them"
                                                    </button>
                                                }
                                            })}
                                            {e.target.strip_prefix("user:").map(str::to_owned).map(|id| {
                                                let name = what(&e);
                                                view! {
                                                    " "
                                                    <button type="button" class="btn btn-small btn-ghost" data-test=ids::AUDIT_ABOUT_USER
                                                        on:click=move |_| applied.update(|f| f.user = Some((id.clone(), name.clone())))>
                                                        "Only about this user"
                                                    </button>
                                                }
                                            })}
                                        </div>
                                        {
                                            let lines = text::change_lines(e.before.as_ref(), e.after.as_ref());
                                            (!lines.is_empty()).then(|| view! {
                                                <ul class="diff small">
                                                    {lines.into_iter().map(|l| view! { <li><code>{l}</code></li> }).collect_view()}
                                                </ul>
                                            })
                                        }
                                    </div>
                                </li>
                            </For>
                        </ol>
                    }
                    .into_any()
                }}
                <div class="actions">
                    {move || next.get().map(|n| view! {
                        <button
                            type="button"
                            class="btn"
                            id=ids::AUDIT_OLDER
                            disabled=move || busy.get()
                            on:click=move |_| load(Some(n.clone()))
                        >
                            "Show older events"
                        </button>
                    })}
                </div>
            </section>
        </div>
    }
}
