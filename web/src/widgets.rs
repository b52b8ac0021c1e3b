//! Small pieces several screens share: error and notice lines, the policy explanation,
//! the recovery-code sheet with its download, a modal dialog, paging, the provider tag.

use leptos::html;
use leptos::prelude::*;
use twofold_policy::wire::EffectivePolicyView;
use wasm_bindgen::JsCast;
use web_sys::{Blob, BlobPropertyBag, HtmlAnchorElement, Url};

use crate::ids;
use crate::text;

/// An error sentence beside the field or action it is about. Rendered only while there
/// is a message, with `role="alert"` so assistive technology announces it.
#[component]
pub fn ErrorText(
    #[prop(into)] msg: Signal<Option<String>>,
    #[prop(optional)] id: Option<&'static str>,
) -> impl IntoView {
    move || {
        msg.get().map(|m| {
            view! {
                <p class="error" role="alert" id=id data-test=ids::ERROR>
                    {m}
                </p>
            }
        })
    }
}

/// A success line ("Saved."), announced politely.
#[component]
pub fn Notice(
    #[prop(into)] msg: Signal<Option<String>>,
    #[prop(optional)] id: Option<&'static str>,
    #[prop(optional)] test: Option<&'static str>,
) -> impl IntoView {
    move || {
        msg.get().map(|m| {
            view! {
                <p class="notice" role="status" id=id data-test=test>
                    {m}
                </p>
            }
        })
    }
}

/// The small "weaker" tag next to email and SMS everywhere they are offered.
#[component]
pub fn WeakerTag() -> impl IntoView {
    view! {
        <span class="tag tag-warn" title="Email and SMS codes can be intercepted or redirected more easily than an authenticator app">
            "weaker"
        </span>
    }
}

/// A user's effective policy: the sentence, then the reasons level by level.
#[component]
pub fn PolicyExplain(
    policy: EffectivePolicyView,
    #[prop(optional)] summary_id: Option<&'static str>,
    #[prop(optional)] trace_id: Option<&'static str>,
    /// For repeated panels, where ids would clash.
    #[prop(optional)]
    summary_test: Option<&'static str>,
    #[prop(optional)] trace_test: Option<&'static str>,
    /// Speak about the user ("this user") rather than to them ("your account").
    #[prop(optional)]
    for_admin: bool,
) -> impl IntoView {
    let required = policy.required;
    let decided = match &policy.decided_by_group {
        Some(g) => format!("the group \"{}\"", g.name),
        None => text::decided_by_label(policy.decided_by).to_owned(),
    };
    let summary = if for_admin {
        text::admin_summary(policy.required, policy.remember_browser_allowed, policy.remember_browser_days)
    } else {
        policy.summary.clone()
    };
    view! {
        <div class="policy">
            <p class="policy-summary" id=summary_id data-test=summary_test>
                <span class=if required { "dot dot-on" } else { "dot dot-off" } aria-hidden="true"></span>
                {summary}
            </p>
            <p class="muted small">"Decided by " {decided} ". Why:"</p>
            <ol class="trace" id=trace_id data-test=trace_test>
                {policy.trace.iter().map(|t| view! { <li>{t.clone()}</li> }).collect_view()}
            </ol>
        </div>
    }
}

/// Offers `contents` as a text file download, through a Blob and an object URL so no
/// server round trip (and no copy of the codes on the server) is involved.
pub fn download_text(file_name: &str, contents: &str) -> Result<(), wasm_bindgen::JsValue> {
    let parts = js_sys::Array::of1(&wasm_bindgen::JsValue::from_str(contents));
    let opts = BlobPropertyBag::new();
    opts.set_type("text/plain;charset=utf-8");
    let blob = Blob::new_with_str_sequence_and_options(&parts, &opts)?;
    let url = Url::create_object_url_with_blob(&blob)?;
    let doc = document();
    let a: HtmlAnchorElement = doc.create_element("a")?.dyn_into()?;
    a.set_href(&url);
    a.set_download(file_name);
    a.set_hidden(true);
    if let Some(body) = doc.body() {
        body.append_child(&a)?;
    }
    a.click();
    a.remove();
    // Revoke after the click has been handled; revoking at once can cancel the download.
    let later = url.clone();
    set_timeout(move || drop(Url::revoke_object_url(&later)), std::time::Duration::from_secs(10));
    Ok(())
}

/// Recovery codes, shown once: the list, a download button and an acknowledgement that
/// hides them for good.
#[component]
pub fn RecoveryCodesSheet(
    codes: Vec<String>,
    /// Who the codes belong to, for the file's heading and name.
    account: String,
    on_done: Callback<()>,
) -> impl IntoView {
    let failed = RwSignal::new(None::<String>);
    let file = text::recovery_codes_file(&account, &codes);
    let name = text::safe_file_name(&account);
    let download = move |_| match download_text(&name, &file) {
        Ok(()) => failed.set(None),
        Err(_) => failed.set(Some("The download did not start; copy the codes by hand instead.".to_owned())),
    };
    view! {
        <section class="card card-accent" aria-labelledby="recovery-title">
            <h2 id="recovery-title">"Save your recovery codes"</h2>
            <p>
                "Each code signs you in once if you lose your second factor. They are shown only now: "
                "download them or write them down, and keep them somewhere private."
            </p>
            <ul class="codes" id=ids::RECOVERY_CODES>
                {codes.into_iter().map(|c| view! { <li data-test=ids::RECOVERY_CODE><code>{c}</code></li> }).collect_view()}
            </ul>
            <div class="actions">
                <button type="button" class="btn" id=ids::RECOVERY_CODES_DOWNLOAD on:click=download>
                    "Download as a text file"
                </button>
                <button type="button" class="btn btn-primary" id=ids::RECOVERY_CODES_DONE on:click=move |_| on_done.run(())>
                    "I have saved them"
                </button>
            </div>
            <ErrorText msg=failed />
        </section>
    }
}

/// A modal dialog: the native `<dialog>`, which traps focus, closes on Escape and
/// returns focus where it was. Render it only while it should be open; `on_close` runs
/// when the user dismisses it.
#[component]
pub fn Modal(
    id: &'static str,
    title: String,
    #[prop(into)] on_close: Callback<()>,
    children: Children,
) -> impl IntoView {
    let node = NodeRef::<html::Dialog>::new();
    Effect::new(move |_| {
        if let Some(d) = node.get()
            && !d.open()
        {
            // Failing only when the element is detached, in which case nothing shows anyway.
            drop(d.show_modal());
        }
    });
    let title_id = format!("{id}-title");
    let labelled_by = title_id.clone();
    view! {
        <dialog
            node_ref=node
            id=id
            class="modal"
            aria-labelledby=labelled_by
            on:cancel=move |ev: leptos::ev::Event| {
                ev.prevent_default();
                on_close.run(());
            }
        >
            <h2 id=title_id>{title}</h2>
            {children()}
        </dialog>
    }
}

/// Previous / next with "Page 2 of 5 · 93 users".
#[component]
pub fn Pager(
    page: RwSignal<u32>,
    #[prop(into)] per_page: Signal<u32>,
    #[prop(into)] total: Signal<u64>,
    one: &'static str,
    many: &'static str,
    prev_id: &'static str,
    next_id: &'static str,
    info_id: &'static str,
) -> impl IntoView {
    let has_next = move || text::has_next_page(page.get(), per_page.get(), total.get());
    view! {
        <nav class="pager" aria-label="Pages">
            <button
                type="button"
                class="btn btn-small"
                id=prev_id
                disabled=move || page.get() <= 1
                on:click=move |_| page.update(|p| *p = p.saturating_sub(1).max(1))
            >
                "← Previous"
            </button>
            <span class="muted" id=info_id aria-live="polite">
                {move || text::page_info(page.get(), per_page.get(), total.get(), one, many)}
            </span>
            <button
                type="button"
                class="btn btn-small"
                id=next_id
                disabled=move || !has_next()
                on:click=move |_| page.update(|p| *p += 1)
            >
                "Next →"
            </button>
        </nav>
    }
}

/// A one-line loading placeholder.
#[component]
pub fn Loading(#[prop(optional, into)] what: Option<String>) -> impl IntoView {
    view! { <p class="muted loading" aria-busy="true">{format!("Loading{}…", what.map(|w| format!(" {w}")).unwrap_or_default())}</p> }
}

/// Moves keyboard focus to an element once it is in the page: each sign-in step puts
/// focus where typing continues, instead of leaving it on the removed previous step.
pub fn focus_when_mounted<E>(node: NodeRef<E>)
where
    E: leptos::html::ElementType,
    E::Output: JsCast + Clone + 'static,
{
    Effect::new(move |_| {
        if let Some(el) = node.get()
            && let Some(el) = el.dyn_ref::<web_sys::HtmlElement>()
        {
            drop(el.focus());
        }
    });
}

/// Scrolls an element to the top of the window once it is in the page: a QR code that
/// appears under a long form would otherwise stay below the fold, on a phone unnoticed.
pub fn scroll_to_when_mounted<E>(node: NodeRef<E>)
where
    E: leptos::html::ElementType,
    E::Output: JsCast + Clone + 'static,
{
    Effect::new(move |_| {
        if let Some(el) = node.get()
            && let Some(el) = el.dyn_ref::<web_sys::Element>()
        {
            el.scroll_into_view_with_bool(true);
        }
    });
}

/// A button for a destructive action that asks first: clicking it shows the question
/// with a confirm and a cancel button in its place; only the confirm runs `on_confirm`.
#[component]
pub fn ConfirmButton(
    /// The button's label, e.g. "Forget".
    label: &'static str,
    /// What the confirmation asks, e.g. "Forget this browser? It will ask for …".
    #[prop(into)]
    question: String,
    /// The confirm button's label, e.g. "Yes, forget it".
    confirm_label: &'static str,
    /// `data-test` of the first button; the confirm button's is `ids::CONFIRM_YES`.
    test: &'static str,
    #[prop(optional)] id: Option<&'static str>,
    #[prop(optional, into)] aria_label: Option<String>,
    #[prop(into)] disabled: Signal<bool>,
    #[prop(optional)] small: bool,
    on_confirm: Callback<()>,
) -> impl IntoView {
    let asking = RwSignal::new(false);
    let class = if small { "btn btn-small btn-danger" } else { "btn btn-danger" };
    view! {
        <Show
            when=move || asking.get()
            fallback=move || view! {
                <button type="button" class=class id=id data-test=test aria-label=aria_label.clone()
                    disabled=move || disabled.get() on:click=move |_| asking.set(true)>
                    {label}
                </button>
            }
        >
            <span class="confirm-inline" role="group" aria-label="Confirm">
                <span class="small">{question.clone()}</span>
                " "
                <button type="button" class="btn btn-small btn-danger" data-test=ids::CONFIRM_YES
                    on:click=move |_| {
                        asking.set(false);
                        on_confirm.run(());
                    }>
                    {confirm_label}
                </button>
                " "
                <button type="button" class="btn btn-small btn-ghost" data-test=ids::CONFIRM_NO on:click=move |_| asking.set(false)>
                    "Cancel"
                </button>
            </span>
        </Show>
    }
}
