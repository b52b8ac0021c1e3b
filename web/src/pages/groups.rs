//! Groups of the admin's scope: create, rename, give or change a 2FA rule (with the
//! impact previewed before saving), delete, and add or remove members (each addition
//! previewed too). DESIGN.md section 5: a group can only ask for more than the scope.

use leptos::prelude::*;
use leptos::task::spawn_local;
use twofold_policy::wire::{
    AddGroupMember, Group, GroupMember, GroupRequest, GroupRulePreviewRequest, ImpactPreview, MembershipPreviewRequest,
    UserPage,
};
use twofold_policy::{Rule, Strength};

use crate::api;
use crate::ids;
use crate::model::AdminScope;
use crate::text;
use crate::widgets::{ErrorText, Loading, Notice};

/// The strength select's values: "" for none, else the strength's word.
fn strength_from(value: &str) -> Option<Strength> {
    Strength::parse(value)
}

fn rule_from(require: bool, strength: &str) -> Option<Rule> {
    let rule = Rule { require_two_factor: require, min_strength: strength_from(strength) };
    (!rule.is_empty()).then_some(rule)
}

fn rule_words(rule: Option<Rule>) -> String {
    match rule {
        None => "No rule".to_owned(),
        Some(r) => {
            let mut parts = Vec::new();
            if r.require_two_factor {
                parts.push("2FA required".to_owned());
            }
            if let Some(s) = r.min_strength {
                parts.push(format!("accepts {}", text::strength_label(s)));
            }
            parts.join(" · ")
        }
    }
}

/// The strength of a rule (a group's or an application's), "" for none.
#[component]
pub(crate) fn StrengthSelect(
    value: RwSignal<String>,
    #[prop(optional)] id: Option<String>,
    test: &'static str,
) -> impl IntoView {
    view! {
        <select id=id data-test=test prop:value=move || value.get() on:change=move |ev| value.set(event_target_value(&ev))>
            <option value="">"Any factor the scope allows"</option>
            <option value="app">"Authenticator app or stronger"</option>
            <option value="phishing_resistant">"Passkey only"</option>
        </select>
    }
}

/// `/groups`.
#[component]
pub fn Groups(scope: AdminScope) -> impl IntoView {
    let base = scope.api_base();
    let groups = RwSignal::new(None::<Vec<Group>>);
    let users = RwSignal::new(Vec::<(String, String)>::new());
    let err = RwSignal::new(None::<String>);
    let reloads = RwSignal::new(0_u32);
    let list_url = format!("{base}/groups");
    Effect::new(move |_| {
        reloads.track();
        let url = list_url.clone();
        spawn_local(async move {
            match api::get::<Vec<Group>>(&url).await {
                Ok(g) => groups.set(Some(g)),
                Err(e) => err.set(Some(e.text())),
            }
        });
    });
    // The members to choose from: the scope's first hundred users by name.
    let users_url = format!("{base}/users?per_page=100");
    spawn_local(async move {
        if let Ok(page) = api::get::<UserPage>(&users_url).await {
            users.set(page.items.into_iter().map(|u| (u.id, u.username)).collect());
        }
    });

    let name = RwSignal::new(String::new());
    let require = RwSignal::new(false);
    let strength = RwSignal::new(String::new());
    let create_err = RwSignal::new(None::<String>);
    let created = RwSignal::new(None::<String>);
    let create_url = format!("{base}/groups");
    let create = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let req = GroupRequest {
            name: name.get_untracked(),
            rule: rule_from(require.get_untracked(), &strength.get_untracked()),
        };
        let url = create_url.clone();
        create_err.set(None);
        spawn_local(async move {
            match api::post::<_, Group>(&url, &req).await {
                Ok(g) => {
                    created.set(Some(format!("Group {} created.", g.name)));
                    name.set(String::new());
                    require.set(false);
                    strength.set(String::new());
                    reloads.update(|n| *n += 1);
                }
                Err(e) => create_err.set(Some(e.text())),
            }
        });
    };

    view! {
        <div class="page">
            <header class="page-head">
                <h1>"Groups"</h1>
                <p class="muted">
                    "A group's rule asks its members for more than the scope does: two-factor sign-in whatever their own switch says, "
                    "or a stronger kind of factor. It never turns two-factor sign-in off, and a scope that disables it still wins."
                </p>
            </header>
            <section class="card">
                <h2>"New group"</h2>
                <form class="inline-form" on:submit=create novalidate>
                    <div class="field">
                        <label for=ids::GROUP_CREATE_NAME>"Name"</label>
                        <input type="text" id=ids::GROUP_CREATE_NAME autocomplete="off" bind:value=name />
                    </div>
                    <div class="field switch-row">
                        <input type="checkbox" id=ids::GROUP_CREATE_REQUIRE bind:checked=require />
                        <label for=ids::GROUP_CREATE_REQUIRE>"Members must use two-factor sign-in"</label>
                    </div>
                    <div class="field">
                        <label for=ids::GROUP_CREATE_STRENGTH>"Accepted factors"</label>
                        <StrengthSelect value=strength id=ids::GROUP_CREATE_STRENGTH.to_owned() test=ids::GROUP_CREATE_STRENGTH />
                    </div>
                    <button type="submit" class="btn btn-primary" id=ids::GROUP_CREATE_SUBMIT>"Create group"</button>
                </form>
                <ErrorText msg=create_err />
                <Notice msg=created />
            </section>
            <section class="card">
                <ErrorText msg=err />
                {move || match groups.get() {
                    None => view! { <Loading what="groups" /> }.into_any(),
                    Some(list) if list.is_empty() => view! { <p class="empty" id=ids::GROUPS_LIST>"No groups yet."</p> }.into_any(),
                    Some(list) => view! {
                        <table class="table" id=ids::GROUPS_LIST>
                            <thead>
                                <tr>
                                    <th scope="col">"Group"</th>
                                    <th scope="col">"Rule"</th>
                                    <th scope="col">"Members"</th>
                                    <th scope="col"><span class="sr-only">"Details"</span></th>
                                </tr>
                            </thead>
                            {list.into_iter().map(|g| view! {
                                <GroupRow group=g users reload=Callback::new(move |()| reloads.update(|n| *n += 1)) />
                            }).collect_view()}
                        </table>
                    }
                    .into_any(),
                }}
            </section>
        </div>
    }
}

#[component]
fn GroupRow(group: Group, users: RwSignal<Vec<(String, String)>>, reload: Callback<()>) -> impl IntoView {
    let open = RwSignal::new(false);
    let id = group.id.clone();
    view! {
        <tbody class="group" class:open=move || open.get()>
            <tr data-test=ids::GROUP_ROW data-id=id.clone() data-name=group.name.clone()>
                <td><strong>{group.name.clone()}</strong></td>
                <td>{rule_words(group.rule)}</td>
                <td>{group.member_count}</td>
                <td class="row-actions">
                    <button type="button" class="btn btn-small" data-test=ids::GROUP_OPEN
                        aria-expanded=move || if open.get() { "true" } else { "false" }
                        on:click=move |_| open.update(|o| *o = !*o)>
                        {move || if open.get() { "Close" } else { "Rule & members" }}
                    </button>
                </td>
            </tr>
            <Show when=move || open.get()>
                <tr class="panel-row">
                    <td colspan="4" data-test=ids::GROUP_PANEL data-id=id.clone()>
                        <GroupPanel group=group.clone() users reload />
                    </td>
                </tr>
            </Show>
        </tbody>
    }
}

#[component]
fn GroupPanel(group: Group, users: RwSignal<Vec<(String, String)>>, reload: Callback<()>) -> impl IntoView {
    let gid = api::enc(&group.id);
    let name = RwSignal::new(group.name.clone());
    let require = RwSignal::new(group.rule.is_some_and(|r| r.require_two_factor));
    let strength =
        RwSignal::new(group.rule.and_then(|r| r.min_strength).map(|s| s.as_str().to_owned()).unwrap_or_default());
    let impact = RwSignal::new(None::<String>);
    let err = RwSignal::new(None::<String>);
    let notice = RwSignal::new(None::<String>);
    let members = RwSignal::new(None::<Vec<GroupMember>>);
    let chosen = RwSignal::new(String::new());

    let members_url = format!("/api/groups/{gid}/members");
    let load_members = {
        let url = members_url.clone();
        move || {
            let url = url.clone();
            spawn_local(async move {
                match api::get::<Vec<GroupMember>>(&url).await {
                    Ok(m) => members.set(Some(m)),
                    Err(e) => err.set(Some(e.text())),
                }
            });
        }
    };
    load_members();

    let preview_url = format!("/api/groups/{gid}/preview");
    let preview = move |_| {
        let url = preview_url.clone();
        let req = GroupRulePreviewRequest { rule: rule_from(require.get_untracked(), &strength.get_untracked()) };
        spawn_local(async move {
            match api::post::<_, ImpactPreview>(&url, &req).await {
                Ok(p) => impact.set(Some(text::impact_sentence(&p))),
                Err(e) => err.set(Some(e.text())),
            }
        });
    };
    let group_url = format!("/api/groups/{gid}");
    let save = {
        let url = group_url.clone();
        move |_| {
            let url = url.clone();
            let req = GroupRequest {
                name: name.get_untracked(),
                rule: rule_from(require.get_untracked(), &strength.get_untracked()),
            };
            err.set(None);
            spawn_local(async move {
                match api::put::<_, Group>(&url, &req).await {
                    Ok(g) => {
                        notice.set(Some(format!("Group {} saved.", g.name)));
                        reload.run(());
                    }
                    Err(e) => err.set(Some(e.text())),
                }
            });
        }
    };
    let delete = {
        let url = group_url.clone();
        move |_| {
            let url = url.clone();
            spawn_local(async move {
                match api::delete(&url).await {
                    Ok(()) => reload.run(()),
                    Err(e) => err.set(Some(e.text())),
                }
            });
        }
    };
    // Choosing a user previews what adding them would do.
    let member_preview_url = format!("/api/groups/{gid}/members/preview");
    Effect::new(move |_| {
        let user_id = chosen.get();
        if user_id.is_empty() {
            return;
        }
        let url = member_preview_url.clone();
        spawn_local(async move {
            let req = MembershipPreviewRequest { user_id, member: true };
            match api::post::<_, ImpactPreview>(&url, &req).await {
                Ok(p) => impact.set(Some(text::impact_sentence(&p))),
                Err(e) => err.set(Some(e.text())),
            }
        });
    });
    let add = {
        let url = members_url.clone();
        move |_| {
            let user_id = chosen.get_untracked();
            if user_id.is_empty() {
                return;
            }
            let url = url.clone();
            spawn_local(async move {
                match api::post::<_, Vec<GroupMember>>(&url, &AddGroupMember { user_id }).await {
                    Ok(m) => {
                        members.set(Some(m));
                        notice.set(Some("Member added.".to_owned()));
                        chosen.set(String::new());
                        impact.set(None);
                    }
                    Err(e) => err.set(Some(e.text())),
                }
            });
        }
    };
    let remove = Callback::new(move |user_id: String| {
        let url = format!("{}/{}", members_url, api::enc(&user_id));
        let load = load_members.clone();
        spawn_local(async move {
            match api::delete(&url).await {
                Ok(()) => {
                    notice.set(Some("Member removed.".to_owned()));
                    load();
                }
                Err(e) => err.set(Some(e.text())),
            }
        });
    });

    view! {
        <div class="panel">
            <div class="inline-form">
                <div class="field">
                    <label>"Name" <input type="text" data-test=ids::GROUP_NAME bind:value=name /></label>
                </div>
                <div class="field switch-row">
                    <label><input type="checkbox" data-test=ids::GROUP_REQUIRE bind:checked=require />
                        " Members must use two-factor sign-in"</label>
                </div>
                <div class="field">
                    <label>"Accepted factors " <StrengthSelect value=strength test=ids::GROUP_STRENGTH /></label>
                </div>
            </div>
            <div class="actions wrap">
                <button type="button" class="btn btn-small" data-test=ids::GROUP_PREVIEW on:click=preview>"Preview impact"</button>
                <button type="button" class="btn btn-small btn-primary" data-test=ids::GROUP_SAVE on:click=save>"Save"</button>
                <button type="button" class="btn btn-small btn-danger" data-test=ids::GROUP_DELETE on:click=delete>"Delete group"</button>
            </div>
            <Notice msg=impact test=ids::GROUP_IMPACT />
            <h3>"Members"</h3>
            {move || match members.get() {
                None => view! { <Loading what="members" /> }.into_any(),
                Some(list) if list.is_empty() => view! { <p class="muted">"No members yet."</p> }.into_any(),
                Some(list) => view! {
                    <ul class="list">
                        {list.into_iter().map(|m| {
                            let uid = m.user_id.clone();
                            view! {
                                <li data-test=ids::GROUP_MEMBER data-name=m.username.clone()>
                                    {m.username.clone()} " "
                                    <button type="button" class="btn btn-small btn-ghost" data-test=ids::GROUP_MEMBER_REMOVE
                                        on:click=move |_| remove.run(uid.clone())>"Remove"</button>
                                </li>
                            }
                        }).collect_view()}
                    </ul>
                }.into_any(),
            }}
            <div class="inline-form">
                <label>"Add a member "
                    <select data-test=ids::GROUP_MEMBER_SELECT prop:value=move || chosen.get()
                        on:change=move |ev| chosen.set(event_target_value(&ev))>
                        <option value="">"Choose a user…"</option>
                        {move || users.get().into_iter().map(|(id, name)| view! { <option value=id>{name}</option> }).collect_view()}
                    </select>
                </label>
                <button type="button" class="btn btn-small" data-test=ids::GROUP_MEMBER_ADD on:click=add>"Add"</button>
            </div>
            <ErrorText msg=err />
            <Notice msg=notice test=ids::GROUP_NOTICE />
        </div>
    }
}
