//! The adoption view of the admin's scope: who is ready for two-factor sign-in before
//! it is forced on them. Totals on top, filters, one row per user, and the same rows
//! as CSV.

use leptos::prelude::*;
use leptos::task::spawn_local;
use twofold_policy::wire::Adoption as AdoptionView;

use crate::api;
use crate::ids;
use crate::model::AdminScope;
use crate::text;
use crate::widgets::{ErrorText, Loading};

/// `true`, `false` or nothing, as a filter's query value.
fn tri(name: &str, value: &str) -> Option<String> {
    matches!(value, "true" | "false").then(|| format!("{name}={value}"))
}

#[component]
fn TriSelect(
    id: &'static str,
    label: &'static str,
    yes: &'static str,
    no: &'static str,
    value: RwSignal<String>,
) -> impl IntoView {
    view! {
        <div class="field">
            <label for=id>{label}</label>
            <select id=id prop:value=move || value.get() on:change=move |ev| value.set(event_target_value(&ev))>
                <option value="">"Everyone"</option>
                <option value="true">{yes}</option>
                <option value="false">{no}</option>
            </select>
        </div>
    }
}

/// `/adoption`.
#[component]
pub fn Adoption(scope: AdminScope) -> impl IntoView {
    let base = scope.api_base();
    let required = RwSignal::new(String::new());
    let ready = RwSignal::new(String::new());
    let locked = RwSignal::new(String::new());
    let search = RwSignal::new(String::new());
    let data = RwSignal::new(None::<AdoptionView>);
    let err = RwSignal::new(None::<String>);
    let query = Memo::new(move |_| {
        let mut parts: Vec<String> =
            [tri("required", &required.get()), tri("ready", &ready.get()), tri("locked", &locked.get())]
                .into_iter()
                .flatten()
                .collect();
        let q = search.get();
        if !q.trim().is_empty() {
            parts.push(format!("q={}", api::enc(q.trim())));
        }
        if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&")) }
    });
    let seq = StoredValue::new(0_u64);
    let url = format!("{base}/adoption");
    Effect::new(move |_| {
        let full = format!("{url}{}", query.get());
        seq.update_value(|n| *n += 1);
        let mine = seq.get_value();
        spawn_local(async move {
            let r = api::get::<AdoptionView>(&full).await;
            if seq.try_get_value() != Some(mine) {
                return;
            }
            match r {
                Ok(a) => {
                    err.set(None);
                    data.set(Some(a));
                }
                Err(e) => err.set(Some(e.text())),
            }
        });
    });
    let csv_url = format!("{base}/adoption.csv");
    view! {
        <div class="page">
            <header class="page-head">
                <h1>"Adoption"</h1>
                <p class="muted">"Who is ready for two-factor sign-in, before it is required of them."</p>
            </header>
            <section class="card">
                <p class="lead" id=ids::ADOPTION_TOTALS>
                    {move || data.with(|d| d.as_ref().map(|d| text::adoption_headline(&d.totals)))}
                </p>
                <form class="toolbar" role="search" on:submit=|ev: leptos::ev::SubmitEvent| ev.prevent_default()>
                    <TriSelect id=ids::ADOPTION_FILTER_REQUIRED label="Second factor" yes="Required" no="Not required" value=required />
                    <TriSelect id=ids::ADOPTION_FILTER_READY label="Ready" yes="Has an accepted factor" no="Would have to enrol" value=ready />
                    <TriSelect id=ids::ADOPTION_FILTER_LOCKED label="Lock" yes="Locked" no="Not locked" value=locked />
                    <div class="field">
                        <label for=ids::ADOPTION_SEARCH>"Name"</label>
                        <input type="search" id=ids::ADOPTION_SEARCH bind:value=search />
                    </div>
                    <a class="btn btn-small" id=ids::ADOPTION_CSV download="adoption.csv"
                        href=move || format!("{csv_url}{}", query.get())>"Export CSV"</a>
                </form>
                <ErrorText msg=err />
                {move || match data.get() {
                    None => view! { <Loading what="the adoption view" /> }.into_any(),
                    Some(a) if a.users.is_empty() => view! { <p class="empty" id=ids::ADOPTION_TABLE>"No user matches these filters."</p> }.into_any(),
                    Some(a) => view! {
                        <table class="table" id=ids::ADOPTION_TABLE>
                            <thead>
                                <tr>
                                    <th scope="col">"User"</th>
                                    <th scope="col">"Two-factor"</th>
                                    <th scope="col">"Factors"</th>
                                    <th scope="col">"Last sign-in"</th>
                                    <th scope="col">"Lock"</th>
                                </tr>
                            </thead>
                            <tbody>
                                {a.users.into_iter().map(|r| {
                                    let factors = if r.factors.is_empty() {
                                        "None".to_owned()
                                    } else {
                                        r.factors.iter().map(text::factor_label).collect::<Vec<_>>().join(", ")
                                    };
                                    let last = match (&r.last_sign_in_at, &r.last_sign_in_factor) {
                                        (Some(at), Some(f)) => format!("{at} ({})", f.replace('_', " ")),
                                        (Some(at), None) => at.clone(),
                                        _ => "Never".to_owned(),
                                    };
                                    let lock = if r.lock.until_unlocked {
                                        "Locked until unlocked".to_owned()
                                    } else if r.lock.locked {
                                        format!("Locked until {}", r.lock.locked_until.clone().unwrap_or_default())
                                    } else {
                                        "—".to_owned()
                                    };
                                    let not_ready = r.policy.required && !r.policy.ready;
                                    view! {
                                        <tr data-test=ids::ADOPTION_ROW data-name=r.username.clone()>
                                            <td><strong>{r.username.clone()}</strong></td>
                                            <td>
                                                {text::requirement_label(&r.policy)}
                                                {not_ready.then(|| view! { " " <span class="tag tag-warn">"must enrol"</span> })}
                                            </td>
                                            <td>{factors}</td>
                                            <td class="muted">{last}</td>
                                            <td>{lock}</td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any(),
                }}
            </section>
        </div>
    }
}
