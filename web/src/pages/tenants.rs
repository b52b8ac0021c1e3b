//! Tenants, for the host admin: search and paging, creation, and the Features dialog
//! that sets a tenant's two-factor ceiling after previewing what it would do.

use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;
use twofold_policy::vocab::{Behaviour, TenantFeature};
use twofold_policy::wire::{CreateTenant, FeaturePreviewRequest, Tenant, TenantPage};

use super::settings::{PreviewState, debounced_preview};
use crate::api::{self, ApiError};
use crate::ids;
use crate::text;
use crate::widgets::{ErrorText, Loading, Modal, Notice, Pager};

const PER_PAGE: u32 = 20;
/// How long typing in the search box may pause before the list is asked for.
const SEARCH_DELAY: Duration = Duration::from_millis(250);

/// A search box that applies what was typed after a short pause (and at once on Enter),
/// going back to the first page.
pub fn search_debounce(typed: RwSignal<String>, applied: RwSignal<String>, page: RwSignal<u32>) -> impl Fn() + Copy {
    let seq = StoredValue::new(0_u64);
    move || {
        seq.update_value(|g| *g += 1);
        let mine = seq.get_value();
        set_timeout(
            move || {
                if seq.try_get_value() == Some(mine) {
                    page.set(1);
                    applied.set(typed.get_untracked());
                }
            },
            SEARCH_DELAY,
        );
    }
}

#[component]
pub fn Tenants() -> impl IntoView {
    let typed = RwSignal::new(String::new());
    let query = RwSignal::new(String::new());
    let page = RwSignal::new(1_u32);
    let data = RwSignal::new(None::<TenantPage>);
    let err = RwSignal::new(None::<String>);
    let reloads = RwSignal::new(0_u32);
    let features_for = RwSignal::new(None::<Tenant>);
    let delete_for = RwSignal::new(None::<Tenant>);
    let notice = RwSignal::new(None::<String>);
    // Suspends or resumes a tenant, then shows the list as it now is.
    let lifecycle = move |t: Tenant, action: &'static str| {
        err.set(None);
        notice.set(None);
        spawn_local(async move {
            match api::post_empty::<()>(&format!("/api/tenants/{}/{action}", api::enc(&t.id))).await {
                Ok(()) => notice.set(Some(if action == "suspend" {
                    format!("Tenant {} is suspended: its users are signed out and cannot sign in.", t.name)
                } else {
                    format!("Tenant {} is active again.", t.name)
                })),
                Err(e) => err.set(Some(e.text())),
            }
            reloads.update(|n| *n += 1);
        });
    };

    // The latest request wins; an older answer arriving late is dropped.
    let seq = StoredValue::new(0_u64);
    Effect::new(move |_| {
        let (q, p) = (query.get(), page.get());
        reloads.track();
        seq.update_value(|g| *g += 1);
        let mine = seq.get_value();
        spawn_local(async move {
            let r = api::get::<TenantPage>(&format!("/api/tenants{}", api::list_query(&q, p, PER_PAGE))).await;
            if seq.try_get_value() != Some(mine) {
                return;
            }
            match r {
                Ok(d) => {
                    err.set(None);
                    data.set(Some(d));
                }
                Err(e) => err.set(Some(e.text())),
            }
        });
    });
    let on_type = search_debounce(typed, query, page);
    let total = Signal::derive(move || data.with(|d| d.as_ref().map_or(0, |d| d.total)));

    view! {
        <div class="page">
            <header class="page-head">
                <h1>"Tenants"</h1>
                <p class="muted">"Each tenant's two-factor feature is a ceiling: Forced or Disabled there overrides the tenant's own settings."</p>
            </header>
            <CreateTenantForm on_created=Callback::new(move |t: Tenant| {
                notice.set(Some(format!("Tenant {} created.", t.name)));
                reloads.update(|n| *n += 1);
            }) />
            <section class="card">
                <form
                    role="search"
                    class="toolbar"
                    on:submit=move |ev: leptos::ev::SubmitEvent| {
                        ev.prevent_default();
                        page.set(1);
                        query.set(typed.get_untracked());
                    }
                >
                    <label for=ids::TENANTS_SEARCH class="sr-only">"Search tenants"</label>
                    <input
                        type="search"
                        id=ids::TENANTS_SEARCH
                        placeholder="Search tenants by name"
                        bind:value=typed
                        on:input=move |_| on_type()
                    />
                </form>
                <Notice msg=notice />
                <ErrorText msg=err />
                {move || match data.get() {
                    None => view! { <Loading what="tenants" /> }.into_any(),
                    Some(d) if d.items.is_empty() => view! {
                        <p class="empty" id=ids::TENANTS_LIST>
                            {if query.with(String::is_empty) { "No tenants yet. Create the first one above." } else { "No tenant matches this search." }}
                        </p>
                    }
                    .into_any(),
                    Some(d) => view! {
                        <table class="table" id=ids::TENANTS_LIST>
                            <thead>
                                <tr>
                                    <th scope="col">"Name"</th>
                                    <th scope="col">"Display name"</th>
                                    <th scope="col">"Created"</th>
                                    <th scope="col"><span class="sr-only">"Actions"</span></th>
                                </tr>
                            </thead>
                            <tbody>
                                {d.items.into_iter().map(|t| {
                                    let id = api::enc(&t.id);
                                    let for_dialog = t.clone();
                                    let suspended = t.suspended_at.is_some();
                                    let for_lifecycle = t.clone();
                                    let for_delete = t.clone();
                                    view! {
                                        <tr data-test=ids::TENANT_ROW data-id=t.id.clone() data-name=t.name.clone()>
                                            <td>
                                                <code>{t.name.clone()}</code>
                                                {suspended.then(|| view! { " " <span class="tag tag-warn" data-test=ids::TENANT_SUSPENDED>"suspended"</span> })}
                                            </td>
                                            <td>{t.display_name.clone()}</td>
                                            <td class="muted">{text::format_time(&t.created_at)}</td>
                                            <td class="row-actions">
                                                <button
                                                    type="button"
                                                    class="btn btn-small"
                                                    data-test=ids::TENANT_FEATURES
                                                    aria-label=format!("Features of {}", t.name)
                                                    on:click=move |_| features_for.set(Some(for_dialog.clone()))
                                                >
                                                    "Features"
                                                </button>
                                                <a class="btn btn-small btn-ghost" data-test=ids::TENANT_USERS href=format!("/tenants/{id}/users")>"Users"</a>
                                                <a class="btn btn-small btn-ghost" data-test=ids::TENANT_AUDIT href=format!("/audit?tenant_id={id}")>"Audit"</a>
                                                {if suspended {
                                                    view! {
                                                        <button type="button" class="btn btn-small" data-test=ids::TENANT_RESUME
                                                            on:click=move |_| lifecycle(for_lifecycle.clone(), "resume")>
                                                            "Resume"
                                                        </button>
                                                    }.into_any()
                                                } else {
                                                    view! {
                                                        <button type="button" class="btn btn-small btn-danger" data-test=ids::TENANT_SUSPEND
                                                            on:click=move |_| lifecycle(for_lifecycle.clone(), "suspend")>
                                                            "Suspend"
                                                        </button>
                                                    }.into_any()
                                                }}
                                                <button type="button" class="btn btn-small btn-danger" data-test=ids::TENANT_DELETE
                                                    on:click=move |_| delete_for.set(Some(for_delete.clone()))>
                                                    "Delete…"
                                                </button>
                                            </td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                    }
                    .into_any(),
                }}
                <Pager
                    page
                    per_page=PER_PAGE
                    total
                    one="tenant"
                    many="tenants"
                    prev_id=ids::TENANTS_PREV
                    next_id=ids::TENANTS_NEXT
                    info_id=ids::TENANTS_PAGE_INFO
                />
            </section>
            {move || delete_for.get().map(|t| {
                let name = t.name.clone();
                let id = t.id.clone();
                view! {
                    <div class="confirm" role="alertdialog" aria-label="Confirm tenant deletion">
                        <p>{format!(
                            "Delete tenant {name} for good? All its users with their factors and sessions, its settings and its \
                             admins' roles go now; the audit trail keeps its events without the users' names or addresses."
                        )}</p>
                        <div class="actions">
                            <button type="button" class="btn btn-small btn-danger" data-test=ids::TENANT_DELETE_CONFIRM
                                on:click=move |_| {
                                    let id = id.clone();
                                    let name = name.clone();
                                    delete_for.set(None);
                                    spawn_local(async move {
                                        match api::delete(&format!("/api/tenants/{}", api::enc(&id))).await {
                                            Ok(()) => notice.set(Some(format!("Tenant {name} was deleted."))),
                                            Err(e) => err.set(Some(e.text())),
                                        }
                                        reloads.update(|n| *n += 1);
                                    });
                                }>
                                "Yes, delete"
                            </button>
                            <button type="button" class="btn btn-small btn-ghost" on:click=move |_| delete_for.set(None)>
                                "Cancel"
                            </button>
                        </div>
                    </div>
                }
            })}
            {move || features_for.get().map(|t| view! {
                <FeaturesDialog
                    tenant=t
                    on_close=Callback::new(move |saved: Option<String>| {
                        features_for.set(None);
                        if saved.is_some() {
                            notice.set(saved);
                        }
                    })
                />
            })}
        </div>
    }
}

#[component]
fn CreateTenantForm(on_created: Callback<Tenant>) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let display = RwSignal::new(String::new());
    let err = RwSignal::new(None::<ApiError>);
    let busy = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let d = display.get_untracked().trim().to_owned();
        let req =
            CreateTenant { name: name.get_untracked().trim().to_owned(), display_name: (!d.is_empty()).then_some(d) };
        busy.set(true);
        err.set(None);
        spawn_local(async move {
            let r = api::post::<_, Tenant>("/api/tenants", &req).await;
            busy.set(false);
            match r {
                Ok(t) => {
                    name.set(String::new());
                    display.set(String::new());
                    on_created.run(t);
                }
                Err(e) => err.set(Some(e)),
            }
        });
    };
    let err_for = move |field: &'static str| {
        Signal::derive(move || err.with(|e| e.as_ref().filter(|e| e.field() == Some(field)).map(ApiError::text)))
    };
    let other = Signal::derive(move || {
        err.with(|e| e.as_ref().filter(|e| !matches!(e.field(), Some("name" | "display_name"))).map(ApiError::text))
    });
    view! {
        <section class="card" aria-labelledby="new-tenant-title">
            <h2 id="new-tenant-title">"New tenant"</h2>
            <form class="inline-form" on:submit=submit novalidate>
                <div class="field">
                    <label for=ids::TENANT_CREATE_NAME>"Name"</label>
                    <input
                        type="text"
                        id=ids::TENANT_CREATE_NAME
                        autocapitalize="none"
                        spellcheck="false"
                        aria-describedby="tenant-name-help"
                        bind:value=name
                    />
                    <p class="hint" id="tenant-name-help">"Short and lowercase; users type it when they sign in."</p>
                    <ErrorText msg=err_for("name") />
                </div>
                <div class="field">
                    <label for=ids::TENANT_CREATE_DISPLAY_NAME>"Display name " <span class="muted">"(optional)"</span></label>
                    <input type="text" id=ids::TENANT_CREATE_DISPLAY_NAME bind:value=display />
                    <ErrorText msg=err_for("display_name") />
                </div>
                <button type="submit" class="btn btn-primary" id=ids::TENANT_CREATE_SUBMIT disabled=move || busy.get()>
                    "Create tenant"
                </button>
            </form>
            <ErrorText msg=other id=ids::TENANT_CREATE_ERROR />
        </section>
    }
}

/// Sets a tenant's ceiling. `on_close` gets a notice when something was saved.
#[component]
fn FeaturesDialog(tenant: Tenant, on_close: Callback<Option<String>>) -> impl IntoView {
    let url = format!("/api/tenants/{}/feature", api::enc(&tenant.id));
    let current = RwSignal::new(None::<TenantFeature>);
    let chosen = RwSignal::new(Behaviour::Optional);
    let err = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let preview = RwSignal::new(PreviewState::Unchanged);
    let seq = StoredValue::new(0_u64);
    let name = tenant.name.clone();

    let get_url = url.clone();
    spawn_local(async move {
        match api::get::<TenantFeature>(&get_url).await {
            Ok(f) => {
                chosen.set(f.behaviour);
                current.set(Some(f));
            }
            Err(e) => err.set(Some(e.text())),
        }
    });
    let preview_url = format!("{url}/preview");
    Effect::new(move |_| {
        let b = chosen.get();
        match current.get() {
            Some(c) if c.behaviour != b => debounced_preview(
                seq,
                preview,
                preview_url.clone(),
                FeaturePreviewRequest { feature: TenantFeature { behaviour: b } },
            ),
            _ => {
                seq.update_value(|g| *g += 1);
                preview.set(PreviewState::Unchanged);
            }
        }
    });
    let save_url = url.clone();
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let feature = TenantFeature { behaviour: chosen.get_untracked() };
        let url = save_url.clone();
        let name = name.clone();
        busy.set(true);
        err.set(None);
        spawn_local(async move {
            let r = api::put::<_, TenantFeature>(&url, &feature).await;
            busy.set(false);
            match r {
                Ok(f) => on_close.run(Some(format!(
                    "The two-factor feature of {name} is now {}.",
                    text::behaviour_label(f.behaviour).to_lowercase()
                ))),
                Err(e) => err.set(Some(e.text())),
            }
        });
    };
    let radio = move |b: Behaviour, id: &'static str| {
        view! {
            <div class="radio">
                <input
                    type="radio"
                    name="ceiling"
                    id=id
                    value=b.as_str()
                    prop:checked=move || chosen.get() == b
                    on:change=move |_| chosen.set(b)
                />
                <label for=id>
                    <strong>{text::behaviour_label(b)}</strong>
                    <span class="hint">{text::ceiling_help(b)}</span>
                </label>
            </div>
        }
    };
    view! {
        <Modal
            id=ids::FEATURES_DIALOG
            title=format!("Two-factor feature of {}", tenant.display_name)
            on_close=Callback::new(move |()| on_close.run(None))
        >
            <form on:submit=save novalidate class="stack-form">
                {move || match current.get() {
                    None => view! { <Loading /> }.into_any(),
                    Some(_) => view! {
                        <fieldset>
                            <legend>"Ceiling for this tenant"</legend>
                            {radio(Behaviour::Optional, ids::FEATURES_CEILING_OPTIONAL)}
                            {radio(Behaviour::Disabled, ids::FEATURES_CEILING_DISABLED)}
                            {radio(Behaviour::Forced, ids::FEATURES_CEILING_FORCED)}
                        </fieldset>
                    }
                    .into_any(),
                }}
                <div class="impact" aria-live="polite">
                    <span class="impact-label">"Impact"</span>
                    <p id=ids::FEATURES_PREVIEW class="impact-text">{move || preview.get().sentence()}</p>
                </div>
                <ErrorText msg=err id=ids::FEATURES_ERROR />
                <div class="actions">
                    <button
                        type="submit"
                        class="btn btn-primary"
                        id=ids::FEATURES_SAVE
                        disabled=move || busy.get() || current.with(Option::is_none)
                    >
                        "Save"
                    </button>
                    <button type="button" class="btn btn-ghost" id=ids::FEATURES_CANCEL on:click=move |_| on_close.run(None)>
                        "Cancel"
                    </button>
                </div>
            </form>
        </Modal>
    }
}
