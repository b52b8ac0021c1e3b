//! Users of one scope: host users for a host admin (and a tenant's users when reached
//! from the tenant list), a tenant's users for its admins. Search, paging, creation,
//! and per user: the effective policy with its reasons, the admin's switch where the
//! policy lets an admin set it, unlock, reset of second factors, end of sessions and the
//! tenant-admin role.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_params_map;
use twofold_policy::wire::{
    AdminPasswordReset, AdminPasswordResetResult, AssignRole, CreateUser, EffectivePolicyView, PasswordResetMode,
    SetTwoFactor, SignInStatus, Tenant, User, UserPage, WhatIf,
};

use super::tenants::search_debounce;
use crate::api::{self, ApiError};
use crate::ids;
use crate::model::{AdminScope, ROLE_TENANT_ADMIN};
use crate::text;
use crate::widgets::{ConfirmButton, ErrorText, Loading, Notice, Pager, PolicyExplain};

const PER_PAGE: u32 = 20;

/// `/users`: the admin's own scope.
#[component]
pub fn Users(scope: AdminScope) -> impl IntoView {
    match scope {
        AdminScope::Host => view! {
            <UserList
                base="/api/host/users".to_owned()
                tenant_id=None
                heading="Host users".to_owned()
                intro="Administrators of this service. Host settings decide their two-factor sign-in.".to_owned()
            />
        }
        .into_any(),
        AdminScope::Tenant { id, name } => view! {
            <UserList
                base=format!("/api/tenants/{}/users", api::enc(&id))
                tenant_id=Some(id)
                heading=format!("Users of {}", name.unwrap_or_else(|| "your tenant".to_owned()))
                intro="Your tenant's settings, within the host's ceiling, decide their two-factor sign-in.".to_owned()
            />
        }
        .into_any(),
    }
}

/// `/tenants/:id/users`: a tenant's users, for the host admin.
#[component]
pub fn TenantUsers() -> impl IntoView {
    let params = use_params_map();
    let id = Memo::new(move |_| params.with(|p| p.get("id")).unwrap_or_default());
    let tenant = RwSignal::new(None::<Tenant>);
    let err = RwSignal::new(None::<String>);
    Effect::new(move |_| {
        let id = id.get();
        spawn_local(async move {
            match api::get::<Tenant>(&format!("/api/tenants/{}", api::enc(&id))).await {
                Ok(t) => tenant.set(Some(t)),
                Err(e) => err.set(Some(e.text())),
            }
        });
    });
    view! {
        <p class="crumbs"><a href="/tenants">"← Tenants"</a></p>
        <ErrorText msg=err />
        {move || tenant.get().map(|t| view! {
            <UserList
                base=format!("/api/tenants/{}/users", api::enc(&t.id))
                tenant_id=Some(t.id.clone())
                heading=format!("Users of {}", t.display_name)
                intro=format!("Tenant name: {}. The tenant's settings, within its ceiling, decide these users' two-factor sign-in.", t.name)
            />
        })}
    }
}

#[component]
fn UserList(base: String, tenant_id: Option<String>, heading: String, intro: String) -> impl IntoView {
    let typed = RwSignal::new(String::new());
    let query = RwSignal::new(String::new());
    let page = RwSignal::new(1_u32);
    let data = RwSignal::new(None::<UserPage>);
    let err = RwSignal::new(None::<String>);
    let reloads = RwSignal::new(0_u32);
    let created = RwSignal::new(None::<String>);
    let seq = StoredValue::new(0_u64);
    let list_url = base.clone();
    Effect::new(move |_| {
        let (q, p) = (query.get(), page.get());
        reloads.track();
        seq.update_value(|g| *g += 1);
        let mine = seq.get_value();
        let url = format!("{list_url}{}", api::list_query(&q, p, PER_PAGE));
        spawn_local(async move {
            let r = api::get::<UserPage>(&url).await;
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
    let items = move || data.with(|d| d.as_ref().map(|d| d.items.clone()).unwrap_or_default());
    let tenant = StoredValue::new(tenant_id);

    view! {
        <div class="page">
            <header class="page-head">
                <h1>{heading}</h1>
                <p class="muted">{intro}</p>
            </header>
            <CreateUserForm
                url=base.clone()
                on_created=Callback::new(move |u: User| {
                    created.set(Some(format!("User {} created.", u.username)));
                    reloads.update(|n| *n += 1);
                })
            />
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
                    <label for=ids::USERS_SEARCH class="sr-only">"Search users"</label>
                    <input
                        type="search"
                        id=ids::USERS_SEARCH
                        placeholder="Search users by name"
                        bind:value=typed
                        on:input=move |_| on_type()
                    />
                </form>
                <Notice msg=created />
                <ErrorText msg=err />
                {move || match data.with(|d| d.as_ref().map(|d| d.items.is_empty())) {
                    None => view! { <Loading what="users" /> }.into_any(),
                    Some(true) => view! {
                        <p class="empty" id=ids::USERS_LIST>
                            {if query.with(String::is_empty) { "No users yet." } else { "No user matches this search." }}
                        </p>
                    }
                    .into_any(),
                    Some(false) => view! {
                        <table class="table" id=ids::USERS_LIST>
                            <thead>
                                <tr>
                                    <th scope="col">"User"</th>
                                    <th scope="col">"Email"</th>
                                    <th scope="col">"Two-factor"</th>
                                    <th scope="col">"Factors"</th>
                                    <th scope="col"><span class="sr-only">"Details"</span></th>
                                </tr>
                            </thead>
                            <For each=items key=|u: &User| u.id.clone() let:user>
                                <UserRow user tenant_id=tenant.get_value() />
                            </For>
                        </table>
                    }
                    .into_any(),
                }}
                <Pager
                    page
                    per_page=PER_PAGE
                    total
                    one="user"
                    many="users"
                    prev_id=ids::USERS_PREV
                    next_id=ids::USERS_NEXT
                    info_id=ids::USERS_PAGE_INFO
                />
            </section>
        </div>
    }
}

/// One user: a summary row and, when opened, a panel with the policy and the actions.
/// The row keeps its own copy of the user so an action refreshes just this row, without
/// closing the panel or losing its messages.
#[component]
fn UserRow(user: User, tenant_id: Option<String>) -> impl IntoView {
    let id = user.id.clone();
    let row = RwSignal::new(user);
    let open = RwSignal::new(false);
    // A deleted user leaves the list at once, without reloading it.
    let deleted = RwSignal::new(false);
    let panel_id = format!("user-panel-{}", id);
    let refresh = Callback::new(move |()| {
        let url = format!("/api/users/{}", api::enc(&row.with_untracked(|u| u.id.clone())));
        spawn_local(async move {
            if let Ok(u) = api::get::<User>(&url).await {
                row.set(u);
            }
        });
    });
    let is_admin = move || row.with(|u| u.roles.iter().any(|r| r.role == ROLE_TENANT_ADMIN));
    view! {
        <tbody class="user" class:open=move || open.get() hidden=move || deleted.get()>
            <tr data-test=ids::USER_ROW data-id=id.clone() data-name=move || row.with(|u| u.username.clone())>
                <td>
                    <strong>{move || row.with(|u| u.username.clone())}</strong>
                    {move || is_admin().then(|| view! { " " <span class="tag">"tenant admin"</span> })}
                    {move || row.with(|u| u.roles.iter().any(|r| r.role == crate::model::ROLE_HOST_ADMIN))
                        .then(|| view! { " " <span class="tag">"host admin"</span> })}
                    {move || row.with(|u| u.lock.locked)
                        .then(|| view! { " " <span class="tag tag-warn" data-test=ids::USER_LOCKED>"locked"</span> })}
                    {move || row.with(|u| u.deactivated_at.is_some())
                        .then(|| view! { " " <span class="tag tag-warn" data-test=ids::USER_DEACTIVATED>"deactivated"</span> })}
                </td>
                <td class="muted">{move || row.with(|u| u.email.clone().unwrap_or_else(|| "—".to_owned()))}</td>
                <td data-test=ids::USER_REQUIRED>
                    {move || row.with(|u| {
                        let label = text::requirement_label(&u.policy);
                        let class = if u.policy.required { "tag tag-ok" } else { "tag" };
                        let must_enrol = u.policy.required && !u.policy.ready;
                        view! {
                            <span class=class>{label}</span>
                            {must_enrol.then(|| view! { " " <span class="tag tag-warn">"must enrol"</span> })}
                        }
                    })}
                </td>
                <td data-test=ids::USER_FACTORS>
                    {move || row.with(|u| if u.factors.is_empty() {
                        view! { <span class="tag tag-warn">"None yet"</span> }.into_any()
                    } else {
                        u.factors.iter().map(|f| view! { <span class="tag">{text::factor_label(f)}</span> " " }).collect_view().into_any()
                    })}
                </td>
                <td class="row-actions">
                    <button
                        type="button"
                        class="btn btn-small"
                        data-test=ids::USER_DETAILS
                        aria-expanded=move || if open.get() { "true" } else { "false" }
                        aria-controls=panel_id.clone()
                        on:click=move |_| open.update(|o| *o = !*o)
                    >
                        {move || if open.get() { "Close" } else { "Policy & actions" }}
                    </button>
                </td>
            </tr>
            <Show when=move || open.get()>
                <tr class="panel-row">
                    <td colspan="5" id=panel_id.clone() data-test=ids::USER_PANEL data-id=id.clone()>
                        <UserPanel row tenant_id=tenant_id.clone() is_admin=Signal::derive(is_admin) refresh deleted />
                    </td>
                </tr>
            </Show>
        </tbody>
    }
}

/// The "Make tenant admin" action exists only for a tenant's users.
#[component]
fn UserPanel(
    row: RwSignal<User>,
    tenant_id: Option<String>,
    is_admin: Signal<bool>,
    refresh: Callback<()>,
    deleted: RwSignal<bool>,
) -> impl IntoView {
    let user_id = row.with_untracked(|u| u.id.clone());
    let enc_id = api::enc(&user_id);
    let policy = RwSignal::new(None::<EffectivePolicyView>);
    let err = RwSignal::new(None::<String>);
    let notice = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let confirm_reset = RwSignal::new(false);
    let confirm_delete = RwSignal::new(false);
    let choose_reset = RwSignal::new(false);
    // Shown once: a link or temporary password the admin passes on.
    let reset_result = RwSignal::new(None::<String>);
    let on = RwSignal::new(false);

    let policy_url = format!("/api/users/{enc_id}/policy");
    let load_policy = move || {
        let url = policy_url.clone();
        spawn_local(async move {
            match api::get::<EffectivePolicyView>(&url).await {
                Ok(p) => {
                    on.set(p.user_two_factor_enabled);
                    policy.set(Some(p));
                }
                Err(e) => err.set(Some(e.text())),
            }
        });
    };
    load_policy();

    // Runs one admin action (a POST without body) and reports it beside the buttons.
    let act = move |path: &'static str, done: &'static str| {
        let url = format!("/api/users/{}/{path}", api::enc(&row.with_untracked(|u| u.id.clone())));
        busy.set(true);
        err.set(None);
        notice.set(None);
        spawn_local(async move {
            let r = api::post_empty::<()>(&url).await;
            busy.set(false);
            match r {
                Ok(()) => {
                    notice.set(Some(done.to_owned()));
                    refresh.run(());
                }
                Err(e) => err.set(Some(e.text())),
            }
        });
    };
    let two_factor_url = format!("/api/users/{enc_id}/two-factor");
    let toggle = move |ev: leptos::ev::Event| {
        let want = event_target_checked(&ev);
        on.set(want);
        busy.set(true);
        err.set(None);
        notice.set(None);
        let url = two_factor_url.clone();
        spawn_local(async move {
            let r = api::put::<_, EffectivePolicyView>(&url, &SetTwoFactor { enabled: want }).await;
            busy.set(false);
            match r {
                Ok(p) => {
                    on.set(p.user_two_factor_enabled);
                    policy.set(Some(p));
                    notice.set(Some(
                        if want {
                            "Two-factor sign-in turned on for this user."
                        } else {
                            "Two-factor sign-in turned off for this user."
                        }
                        .to_owned(),
                    ));
                    refresh.run(());
                }
                Err(e) => {
                    on.set(!want);
                    err.set(Some(e.text()));
                }
            }
        });
    };
    let remove_admin = tenant_id.clone().map(|t| {
        let url = format!("/api/tenants/{}/admins/{}", api::enc(&t), api::enc(&user_id));
        move |()| {
            let url = url.clone();
            busy.set(true);
            err.set(None);
            notice.set(None);
            spawn_local(async move {
                let r = api::delete(&url).await;
                busy.set(false);
                match r {
                    Ok(()) => {
                        notice.set(Some("The user is no longer an admin of this tenant.".to_owned()));
                        refresh.run(());
                    }
                    Err(e) => err.set(Some(e.text())),
                }
            });
        }
    });
    let make_admin = tenant_id.clone().map(|t| {
        let url = format!("/api/tenants/{}/admins", api::enc(&t));
        let uid = user_id.clone();
        move |_| {
            let url = url.clone();
            let req = AssignRole { user_id: uid.clone() };
            busy.set(true);
            err.set(None);
            notice.set(None);
            spawn_local(async move {
                let r = api::post::<_, User>(&url, &req).await;
                busy.set(false);
                match r {
                    Ok(u) => {
                        notice.set(Some(format!("{} is now an admin of this tenant.", u.username)));
                        row.set(u);
                    }
                    Err(e) => err.set(Some(e.text())),
                }
            });
        }
    });
    let delete_url = format!("/api/users/{enc_id}");
    let delete = move |_| {
        confirm_delete.set(false);
        busy.set(true);
        err.set(None);
        notice.set(None);
        let url = delete_url.clone();
        spawn_local(async move {
            let r = api::delete(&url).await;
            busy.set(false);
            match r {
                Ok(()) => deleted.set(true),
                Err(e) => err.set(Some(e.text())),
            }
        });
    };
    let deactivated = move || row.with(|u| u.deactivated_at.is_some());
    let reset_url = format!("/api/users/{enc_id}/password-reset");
    let reset = move |mode: PasswordResetMode| {
        choose_reset.set(false);
        busy.set(true);
        err.set(None);
        notice.set(None);
        reset_result.set(None);
        let url = reset_url.clone();
        spawn_local(async move {
            let r = api::post::<_, AdminPasswordResetResult>(&url, &AdminPasswordReset { mode }).await;
            busy.set(false);
            match r {
                Ok(AdminPasswordResetResult { link: Some(link), expires_at, .. }) => reset_result.set(Some(format!(
                    "Give the user this link; it works once, until {}: {link}",
                    expires_at.as_deref().map(text::format_time).unwrap_or_default()
                ))),
                Ok(AdminPasswordResetResult { temporary_password: Some(p), .. }) => reset_result.set(Some(format!(
                    "Temporary password (the user must change it at sign-in; their sessions have ended): {p}"
                ))),
                Ok(_) => err.set(Some("The server answered without a link or password.".to_owned())),
                Err(e) => err.set(Some(e.text())),
            }
        });
    };
    let reset_link = reset.clone();
    let switch_id = format!("user-2fa-{user_id}");
    let what = RwSignal::new(None::<WhatIf>);
    let what_url = format!("/api/users/{enc_id}/what-if");
    let what_if = move |_| {
        let url = what_url.clone();
        spawn_local(async move {
            match api::get::<WhatIf>(&url).await {
                Ok(w) => what.set(Some(w)),
                Err(e) => err.set(Some(e.text())),
            }
        });
    };

    view! {
        <div class="panel">
            {move || match policy.get() {
                None => view! { <Loading what="the policy" /> }.into_any(),
                Some(p) => {
                    let can = p.admin_can_override;
                    let why = match &p.decided_by_group {
                        Some(g) => format!("The group \"{}\" requires a second factor of this user, so their switch has no effect and cannot be set.", g.name),
                        None => "The behaviour is not optional here, so the user's switch has no effect and cannot be set.".to_owned(),
                    };
                    let switch_id = switch_id.clone();
                    view! {
                        <PolicyExplain policy=p summary_test=ids::USER_POLICY_SUMMARY trace_test=ids::USER_POLICY_TRACE for_admin=true />
                        {if can {
                            view! {
                                <div class="switch-row">
                                    <input
                                        type="checkbox"
                                        role="switch"
                                        class="switch"
                                        id=switch_id.clone()
                                        data-test=ids::USER_2FA_SWITCH
                                        prop:checked=move || on.get()
                                        aria-checked=move || if on.get() { "true" } else { "false" }
                                        disabled=move || busy.get()
                                        on:change=toggle.clone()
                                    />
                                    <label for=switch_id>"Require a second factor for this user"</label>
                                </div>
                            }
                            .into_any()
                        } else {
                            view! { <p class="muted small">{why}</p> }.into_any()
                        }}
                    }
                    .into_any()
                }
            }}
            <div class="actions wrap">
                <button type="button" class="btn btn-small" data-test=ids::USER_WHAT_IF disabled=move || busy.get()
                    on:click=what_if>
                    "What would the next sign-in ask?"
                </button>
                // Unlocking is only offered to a locked user: for anyone else it would do nothing.
                <Show when=move || row.with(|u| u.lock.locked)>
                    <button type="button" class="btn btn-small" data-test=ids::USER_UNLOCK disabled=move || busy.get()
                        on:click=move |_| act("unlock", "The user can try second factors again.")>
                        "Unlock"
                    </button>
                </Show>
                <button type="button" class="btn btn-small" data-test=ids::USER_END_SESSIONS disabled=move || busy.get()
                    on:click=move |_| act("end-sessions", "Every session of this user has ended.")>
                    "End sessions"
                </button>
                {make_admin.zip(remove_admin).map(|(make, remove)| view! {
                    <Show
                        when=move || !is_admin.get()
                        fallback=move || {
                            let remove = remove.clone();
                            view! {
                                <ConfirmButton
                                    label="Remove tenant admin"
                                    question="Remove this user's admin role? They keep their account."
                                    confirm_label="Yes, remove the role"
                                    test=ids::USER_REMOVE_ADMIN
                                    disabled=Signal::derive(move || busy.get())
                                    small=true
                                    on_confirm=Callback::new(move |()| remove(()))
                                />
                            }
                        }
                    >
                        <button type="button" class="btn btn-small" data-test=ids::USER_MAKE_ADMIN disabled=move || busy.get() on:click=make.clone()>
                            "Make tenant admin"
                        </button>
                    </Show>
                })}
                <button type="button" class="btn btn-small btn-danger" data-test=ids::USER_RESET_FACTORS disabled=move || busy.get()
                    on:click=move |_| confirm_reset.set(true)>
                    "Reset second factors…"
                </button>
                <Show
                    when=move || !deactivated()
                    fallback=move || view! {
                        <button type="button" class="btn btn-small" data-test=ids::USER_REACTIVATE disabled=move || busy.get()
                            on:click=move |_| act("reactivate", "The user can sign in again.")>
                            "Reactivate"
                        </button>
                    }
                >
                    <button type="button" class="btn btn-small btn-danger" data-test=ids::USER_DEACTIVATE disabled=move || busy.get()
                        on:click=move |_| act("deactivate", "The user is deactivated: signed out everywhere and unable to sign in.")>
                        "Deactivate"
                    </button>
                </Show>
                <button type="button" class="btn btn-small" data-test=ids::USER_RESET_PASSWORD disabled=move || busy.get()
                    on:click=move |_| choose_reset.set(true)>
                    "Reset password…"
                </button>
                <button type="button" class="btn btn-small btn-danger" data-test=ids::USER_DELETE disabled=move || busy.get()
                    on:click=move |_| confirm_delete.set(true)>
                    "Delete…"
                </button>
            </div>
            {move || what.get().map(|w| view! { <WhatIfResult what=w /> })}
            <Show when=move || choose_reset.get()>
                <div class="confirm" role="group" aria-label="Reset password">
                    <p>"A link lets the user choose a new password; their current one works until then. A temporary password works at once, ends their sessions, and must be changed at their next sign-in. Either way their second factor is still asked for."</p>
                    <div class="actions">
                        <button type="button" class="btn btn-small" data-test=ids::USER_RESET_LINK
                            on:click={ let reset = reset_link.clone(); move |_| reset(PasswordResetMode::Link) }>
                            "Make a link"
                        </button>
                        <button type="button" class="btn btn-small btn-danger" data-test=ids::USER_RESET_TEMPORARY
                            on:click={ let reset = reset.clone(); move |_| reset(PasswordResetMode::TemporaryPassword) }>
                            "Set a temporary password"
                        </button>
                        <button type="button" class="btn btn-small btn-ghost" on:click=move |_| choose_reset.set(false)>
                            "Cancel"
                        </button>
                    </div>
                </div>
            </Show>
            {move || reset_result.get().map(|r| view! { <p class="notice" role="status" data-test=ids::USER_RESET_RESULT><code>{r}</code></p> })}
            <Show when=move || confirm_delete.get()>
                <div class="confirm" role="group" aria-label="Confirm deletion">
                    <p>
                        {move || format!(
                            "Delete {} for good? Their factors, sessions and remembered browsers go with them; the audit trail keeps \
                             its events without their name or addresses. Deactivate instead to keep the account.",
                            row.with(|u| u.username.clone())
                        )}
                    </p>
                    <div class="actions">
                        <button type="button" class="btn btn-small btn-danger" data-test=ids::USER_DELETE_CONFIRM on:click=delete.clone()>
                            "Yes, delete"
                        </button>
                        <button type="button" class="btn btn-small btn-ghost" on:click=move |_| confirm_delete.set(false)>
                            "Cancel"
                        </button>
                    </div>
                </div>
            </Show>
            <Show when=move || confirm_reset.get()>
                <div class="confirm" role="group" aria-label="Confirm reset">
                    <p>
                        "This removes the user's authenticator, recovery codes, confirmed email and phone as factors, "
                        "remembered browsers and sessions. Where two-factor sign-in is required, they enrol again at their next sign-in."
                    </p>
                    <div class="actions">
                        <button type="button" class="btn btn-small btn-danger" data-test=ids::USER_RESET_CONFIRM
                            on:click=move |_| {
                                confirm_reset.set(false);
                                act("reset-second-factors", "The user's second factors were reset.");
                            }>
                            "Yes, reset"
                        </button>
                        <button type="button" class="btn btn-small btn-ghost" on:click=move |_| confirm_reset.set(false)>
                            "Cancel"
                        </button>
                    </div>
                </div>
            </Show>
            <ErrorText msg=err />
            <Notice msg=notice test=ids::USER_NOTICE />
        </div>
    }
}

/// What the user's next sign-in would ask for, from the what-if endpoint.
#[component]
fn WhatIfResult(what: WhatIf) -> impl IntoView {
    let providers: Vec<String> = what.providers.iter().map(|p| p.provider.as_str().to_owned()).collect();
    let enrollable: Vec<String> = what.enrollable.iter().map(|p| p.as_str().to_owned()).collect();
    let headline = match what.status {
        SignInStatus::SignedIn => {
            "After the password, the user would be signed in: no second factor is asked.".to_owned()
        }
        SignInStatus::RequiresTwoFactor => format!(
            "After the password, a second factor would be asked: {}{}.",
            providers.join(", "),
            if what.recovery_code_available { ", or a recovery code" } else { "" }
        ),
        SignInStatus::RequiresEnrollment => {
            let mut s = format!(
                "After the password, the user would have to enrol a factor first ({}).",
                if enrollable.is_empty() { "none can be enrolled now".to_owned() } else { enrollable.join(", ") }
            );
            if let Some(until) = &what.grace_until {
                s.push_str(&format!(" They may postpone until {until}."));
            }
            s
        }
    };
    let locked = what.lock.locked.then(|| {
        view! { <p class="warn">"Second-factor sign-in is locked for this user now; they would be refused until it is unlocked or the lock ends."</p> }
    });
    view! {
        <div class="card" data-test=ids::USER_WHAT_IF_RESULT>
            <p><strong>{headline}</strong></p>
            {locked}
            {what.remember_browser_allowed.then(|| view! { <p class="muted small">"A remembered browser would skip the second factor."</p> })}
            <PolicyExplain policy=what.policy for_admin=true />
        </div>
    }
}

#[component]
fn CreateUserForm(url: String, on_created: Callback<User>) -> impl IntoView {
    let username = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let email = RwSignal::new(String::new());
    let phone = RwSignal::new(String::new());
    let err = RwSignal::new(None::<ApiError>);
    let busy = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let e = email.get_untracked().trim().to_owned();
        let p = phone.get_untracked().trim().to_owned();
        let req = CreateUser {
            username: username.get_untracked().trim().to_owned(),
            password: password.get_untracked(),
            email: (!e.is_empty()).then_some(e),
            phone: (!p.is_empty()).then_some(p),
        };
        let url = url.clone();
        busy.set(true);
        err.set(None);
        spawn_local(async move {
            let r = api::post::<_, User>(&url, &req).await;
            busy.set(false);
            match r {
                Ok(u) => {
                    username.set(String::new());
                    password.set(String::new());
                    email.set(String::new());
                    phone.set(String::new());
                    on_created.run(u);
                }
                Err(e) => err.set(Some(e)),
            }
        });
    };
    let err_for = move |field: &'static str| {
        Signal::derive(move || err.with(|e| e.as_ref().filter(|e| e.field() == Some(field)).map(ApiError::text)))
    };
    let other = Signal::derive(move || {
        err.with(|e| {
            e.as_ref()
                .filter(|e| !matches!(e.field(), Some("username" | "password" | "email" | "phone")))
                .map(ApiError::text)
        })
    });
    view! {
        <details class="card">
            <summary><h2 class="inline">"Add a user"</h2></summary>
            <form class="inline-form" on:submit=submit novalidate>
                <div class="field">
                    <label for=ids::USER_CREATE_USERNAME>"User name"</label>
                    <input type="text" id=ids::USER_CREATE_USERNAME autocomplete="off" autocapitalize="none" spellcheck="false" bind:value=username />
                    <ErrorText msg=err_for("username") />
                </div>
                <div class="field">
                    <label for=ids::USER_CREATE_PASSWORD>"Initial password"</label>
                    <input type="password" id=ids::USER_CREATE_PASSWORD autocomplete="new-password" bind:value=password />
                    <ErrorText msg=err_for("password") />
                </div>
                <div class="field">
                    <label for=ids::USER_CREATE_EMAIL>"Email " <span class="muted">"(optional)"</span></label>
                    <input type="email" id=ids::USER_CREATE_EMAIL autocomplete="off" bind:value=email />
                    <ErrorText msg=err_for("email") />
                </div>
                <div class="field">
                    <label for=ids::USER_CREATE_PHONE>"Mobile phone " <span class="muted">"(optional; the user confirms it)"</span></label>
                    <input type="tel" id=ids::USER_CREATE_PHONE autocomplete="off" placeholder="+14155550100" bind:value=phone />
                    <ErrorText msg=err_for("phone") />
                </div>
                <button type="submit" class="btn btn-primary" id=ids::USER_CREATE_SUBMIT disabled=move || busy.get()>
                    "Add user"
                </button>
            </form>
            <ErrorText msg=other id=ids::USER_CREATE_ERROR />
        </details>
    }
}
