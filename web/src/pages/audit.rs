//! The audit trail of the admin's scope, newest first, with "Show older events" paging
//! by cursor. User and tenant ids are shown as names where the admin may look them up,
//! and each event shows only the fields it changed.

use std::collections::HashMap;

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_query_map;
use twofold_policy::wire::{AuditEvent, AuditPage, Tenant, User};

use crate::api;
use crate::ids;
use crate::model::AdminScope;
use crate::text;
use crate::widgets::{ErrorText, Loading};

const LIMIT: u32 = 50;

#[component]
pub fn Audit(scope: AdminScope) -> impl IntoView {
    let query = use_query_map();
    // A tenant admin always sees their tenant; a host admin everything, or one tenant
    // when arriving from the tenant list.
    let is_host = scope == AdminScope::Host;
    let filter = Memo::new(move |_| match &scope {
        AdminScope::Host => query.with(|q| q.get("tenant_id")).filter(|t| !t.is_empty()),
        AdminScope::Tenant { id, .. } => Some(id.clone()),
    });
    let items = RwSignal::new(Vec::<AuditEvent>::new());
    let next = RwSignal::new(None::<String>);
    let loaded = RwSignal::new(false);
    let busy = RwSignal::new(false);
    let err = RwSignal::new(None::<String>);
    let names = RwSignal::new(HashMap::<String, String>::new());

    let load = move |before: Option<String>| {
        let mut url = format!("/api/audit?limit={LIMIT}");
        if let Some(t) = filter.get_untracked() {
            url.push_str(&format!("&tenant_id={}", api::enc(&t)));
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
                    let wanted: Vec<String> = page
                        .items
                        .iter()
                        .flat_map(|e| {
                            [
                                e.actor_user_id.as_ref().map(|a| format!("user:{a}")),
                                Some(e.target.replacen("settings:", "tenant:", 1)),
                                e.tenant_id.as_ref().map(|t| format!("tenant:{t}")),
                            ]
                        })
                        .flatten()
                        .collect();
                    next.set(page.next_before);
                    if before.is_some() {
                        items.update(|v| v.extend(page.items));
                    } else {
                        items.set(page.items);
                    }
                    resolve_names(names, wanted).await;
                }
                Err(e) => err.set(Some(e.text())),
            }
        });
    };
    Effect::new(move |_| {
        filter.track();
        load(None);
    });

    // "user:ID" / "tenant:ID" as a name where one is known, else kind and short id.
    let named = move |key: &str| match key.split_once(':') {
        Some(("settings", "host")) => "the host settings".to_owned(),
        Some(("settings", id)) => names
            .with(|n| n.get(&format!("tenant:{id}")).cloned())
            .map_or_else(|| format!("settings of tenant {}", text::short_id(id)), |n| format!("settings of {n}")),
        Some((kind, id)) => names
            .with(|n| n.get(key).cloned())
            .map_or_else(|| format!("{kind} {}", text::short_id(id)), |n| format!("{kind} {n}")),
        None => key.to_owned(),
    };
    view! {
        <div class="page">
            <header class="page-head">
                <h1>"Audit trail"</h1>
                <p class="muted">
                    {move || match (filter.get(), is_host) {
                        (Some(_), true) => "Events of one tenant, newest first. ".to_owned(),
                        (Some(_), false) => "Events of your tenant, newest first.".to_owned(),
                        (None, _) => "Every event, of the host and all tenants, newest first.".to_owned(),
                    }}
                    {move || (filter.get().is_some() && is_host).then(|| view! { <a href="/audit">"Show all events"</a> })}
                </p>
            </header>
            <section class="card">
                <ErrorText msg=err id=ids::AUDIT_ERROR />
                {move || if !loaded.get() {
                    view! { <Loading what="events" /> }.into_any()
                } else if items.with(Vec::is_empty) {
                    view! { <p class="empty" id=ids::AUDIT_LIST>"No events yet."</p> }.into_any()
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
                                                let actor = e.actor_user_id.clone();
                                                let target = e.target.clone();
                                                let scope = e.tenant_id.clone().filter(|_| filter.with(Option::is_none));
                                                move || {
                                                    let by = actor.as_ref().map_or_else(|| "the system".to_owned(), |a| {
                                                        let key = format!("user:{a}");
                                                        names.with(|n| n.get(&key).cloned()).unwrap_or_else(|| named(&key))
                                                    });
                                                    let mut line = format!("By {by} · on {}", named(&target));
                                                    if let Some(t) = &scope {
                                                        line.push_str(&format!(" · in {}", named(&format!("tenant:{t}"))));
                                                    }
                                                    line
                                                }
                                            }
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

/// Looks up names for "user:ID" and "tenant:ID" keys not seen yet. Ones the admin may
/// not read (another scope's users) keep their short id.
async fn resolve_names(names: RwSignal<HashMap<String, String>>, keys: Vec<String>) {
    let mut todo: Vec<String> = keys
        .into_iter()
        .filter(|k| k.starts_with("user:") || k.starts_with("tenant:"))
        .filter(|k| !names.with_untracked(|n| n.contains_key(k)))
        .collect();
    todo.sort();
    todo.dedup();
    for key in todo {
        let name = match key.split_once(':') {
            Some(("user", id)) => {
                api::get::<User>(&format!("/api/users/{}", api::enc(id))).await.map(|u| u.username).ok()
            }
            Some(("tenant", id)) => {
                api::get::<Tenant>(&format!("/api/tenants/{}", api::enc(id))).await.map(|t| t.name).ok()
            }
            _ => None,
        };
        if let Some(name) = name {
            names.update(|n| {
                n.insert(key, name);
            });
        }
    }
}
