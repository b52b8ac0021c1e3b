//! The app shell: the router with every deep-linkable page, the header whose navigation
//! shows only what the signed-in user may use, and the guards that send anonymous
//! visitors to sign-in and keep admin pages to admins.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::{Route, Router, Routes};
use leptos_router::hooks::{use_location, use_navigate};
use leptos_router::path;

use crate::api;
use crate::ids;
use crate::model::{self, AdminScope};
use crate::pages::{account, adoption, applications, audit, groups, password, settings, signin, tenants, users};
use crate::session::{Session, use_session};

#[component]
pub fn App() -> impl IntoView {
    Session::provide();
    view! {
        <Router>
            <PageTitle />
            <Header />
            <main id="main" class="main">
                <Routes fallback=|| view! { <NotFound /> }>
                    <Route path=path!("/") view=Home />
                    <Route path=path!("/sign-in") view=signin::SignIn />
                    <Route path=path!("/forgot-password") view=password::ForgotPassword />
                    <Route path=path!("/reset-password") view=password::ResetPassword />
                    <Route path=path!("/account") view=|| view! { <RequireUser><account::Account /></RequireUser> } />
                    <Route
                        path=path!("/settings")
                        view=|| view! { <RequireAdmin page=|scope| view! { <settings::Settings scope /> }.into_any() /> }
                    />
                    <Route
                        path=path!("/tenants")
                        view=|| view! { <RequireAdmin host_only=true page=|_| view! { <tenants::Tenants /> }.into_any() /> }
                    />
                    <Route
                        path=path!("/tenants/:id/users")
                        view=|| view! { <RequireAdmin host_only=true page=|_| view! { <users::TenantUsers /> }.into_any() /> }
                    />
                    <Route
                        path=path!("/users")
                        view=|| view! { <RequireAdmin page=|scope| view! { <users::Users scope /> }.into_any() /> }
                    />
                    <Route
                        path=path!("/groups")
                        view=|| view! { <RequireAdmin page=|scope| view! { <groups::Groups scope /> }.into_any() /> }
                    />
                    <Route
                        path=path!("/adoption")
                        view=|| view! { <RequireAdmin page=|scope| view! { <adoption::Adoption scope /> }.into_any() /> }
                    />
                    <Route
                        path=path!("/applications")
                        view=|| view! { <RequireAdmin page=|scope| view! { <applications::Applications scope /> }.into_any() /> }
                    />
                    <Route
                        path=path!("/audit")
                        view=|| view! { <RequireAdmin page=|scope| view! { <audit::Audit scope /> }.into_any() /> }
                    />
                </Routes>
            </main>
        </Router>
    }
}

/// Keeps `document.title` in step with the route; renders nothing.
#[component]
fn PageTitle() -> impl IntoView {
    let location = use_location();
    Effect::new(move |_| {
        document().set_title(&model::page_title(&location.pathname.get()));
    });
}

/// `/`: wherever the visitor belongs.
#[component]
fn Home() -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    Effect::new(move |_| {
        if !session.checked.get() {
            return;
        }
        let to = if session.user.with(Option::is_some) { "/account" } else { "/sign-in" };
        navigate(to, leptos_router::NavigateOptions { replace: true, ..Default::default() });
    });
    view! { <crate::widgets::Loading /> }
}

#[component]
fn Header() -> impl IntoView {
    let session = use_session();
    let location = use_location();
    let navigate = use_navigate();
    let signing_out = RwSignal::new(false);
    let sign_out = move |_| {
        signing_out.set(true);
        let navigate = navigate.clone();
        spawn_local(async move {
            // Whatever the answer, the app forgets the user: a failed sign-out most
            // likely means the session had already ended.
            let _ = api::post_empty::<()>("/api/auth/sign-out").await;
            // Leave the page first: a guarded page that saw the user vanish would
            // otherwise ask to come back to itself after the next sign-in.
            navigate("/sign-in", Default::default());
            session.user.set(None);
            signing_out.set(false);
        });
    };
    let nav = move || {
        session.user.get().map(|u| {
            let current = location.pathname.get();
            let items = model::nav_for(&u);
            let who = match &u.tenant_name {
                Some(t) => format!("{} · {}", u.username, t),
                None => format!("{} · host", u.username),
            };
            view! {
                <nav id=ids::NAV class="nav" aria-label="Main">
                    <ul>
                        {items
                            .into_iter()
                            .map(|item| {
                                let active = current == item.href() || current.starts_with(&format!("{}/", item.href()));
                                view! {
                                    <li>
                                        <a
                                            href=item.href()
                                            id=item.id()
                                            class:active=active
                                            aria-current=if active { Some("page") } else { None }
                                        >
                                            {item.label()}
                                        </a>
                                    </li>
                                }
                            })
                            .collect_view()}
                    </ul>
                </nav>
                <div class="whoami">
                    <span id=ids::NAV_USER class="muted">{who}</span>
                    <button type="button" class="btn btn-small btn-ghost" id=ids::SIGN_OUT on:click=sign_out.clone() disabled=move || signing_out.get()>
                        "Sign out"
                    </button>
                </div>
            }
        })
    };
    view! {
        <a class="skip" href="#main">"Skip to content"</a>
        <header class="topbar">
            <a class="brand" href="/">
                <span class="brand-mark" aria-hidden="true">"2"</span>
                "Twofold"
            </a>
            {nav}
        </header>
    }
}

/// Shows its children to a signed-in user; sends anyone else to sign-in, coming back
/// here afterwards.
#[component]
fn RequireUser(children: ChildrenFn) -> impl IntoView {
    let session = use_session();
    let location = use_location();
    let navigate = use_navigate();
    Effect::new(move |_| {
        if session.checked.get() && session.user.with(Option::is_none) {
            let path = location.pathname.get_untracked();
            if path.starts_with("/sign-in") {
                return;
            }
            let here = format!("{path}{}", location.search.get_untracked());
            let here = if here.is_empty() { "/".to_owned() } else { here };
            navigate(
                &format!("/sign-in?next={}", api::enc(&here)),
                leptos_router::NavigateOptions { replace: true, ..Default::default() },
            );
        }
    });
    move || {
        if !session.checked.get() || session.user.with(Option::is_none) {
            view! { <crate::widgets::Loading /> }.into_any()
        } else if session.user.with(|u| u.as_ref().is_some_and(|u| u.must_change_password)) {
            // The server refuses everything else until then; say so instead of failing.
            view! { <password::MustChangePassword /> }.into_any()
        } else {
            children().into_any()
        }
    }
}

/// Like [`RequireUser`], and the user must administer a scope (the host, when
/// `host_only`). The page receives that scope.
#[component]
fn RequireAdmin(
    #[prop(optional)] host_only: bool,
    page: impl Fn(AdminScope) -> AnyView + Send + Sync + 'static,
) -> impl IntoView {
    let session = use_session();
    let page = StoredValue::new(page);
    // Re-render only when the scope itself changes, not on every refresh of the user.
    let scope = Memo::new(move |_| session.admin_scope());
    view! {
        <RequireUser>
            {move || match scope.get() {
                Some(AdminScope::Tenant { .. }) if host_only => view! { <Forbidden /> }.into_any(),
                Some(s) => page.with_value(|p| p(s)),
                None => view! { <Forbidden /> }.into_any(),
            }}
        </RequireUser>
    }
}

#[component]
fn Forbidden() -> impl IntoView {
    view! {
        <section class="card narrow" id=ids::FORBIDDEN>
            <h1>"Not available"</h1>
            <p>"This page is for administrators of another scope. Your own pages are in the menu above."</p>
            <p><a href="/account">"Go to your account"</a></p>
        </section>
    }
}

#[component]
fn NotFound() -> impl IntoView {
    view! {
        <section class="card narrow" id=ids::NOT_FOUND>
            <h1>"Page not found"</h1>
            <p>"There is nothing at this address."</p>
            <p><a href="/">"Go to the start page"</a></p>
        </section>
    }
}
