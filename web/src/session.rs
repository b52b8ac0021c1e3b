//! Who is signed in, shared through Leptos context. The server is the only judge
//! (HttpOnly cookies the app cannot read), so this is just the last answer of
//! `GET /api/auth/session`, refreshed after sign-in and cleared on sign-out or on any
//! `unauthenticated` answer.

use leptos::prelude::*;
use leptos::task::spawn_local;
use twofold_policy::wire::{CurrentUser, SessionState};

use crate::api;
use crate::model::{self, AdminScope};

#[derive(Debug, Clone, Copy)]
pub struct Session {
    /// The signed-in user, once known.
    pub user: RwSignal<Option<CurrentUser>>,
    /// Whether the first `/api/auth/me` has answered; until then pages wait rather than
    /// bounce a signed-in user to the sign-in page on reload.
    pub checked: RwSignal<bool>,
}

impl Session {
    pub fn provide() -> Self {
        let s = Session { user: RwSignal::new(None), checked: RwSignal::new(false) };
        provide_context(s);
        api::on_unauthenticated(move || s.user.set(None));
        s.refresh();
        s
    }

    pub fn refresh(self) {
        spawn_local(async move {
            // `/api/auth/session` answers 200 either way, so a visitor who has not signed
            // in causes no failed request in the console.
            let me = api::get::<SessionState>("/api/auth/session").await.ok().and_then(|s| s.user);
            self.user.set(me);
            self.checked.set(true);
        });
    }

    pub fn admin_scope(self) -> Option<AdminScope> {
        self.user.with(|u| u.as_ref().and_then(model::admin_scope))
    }
}

pub fn use_session() -> Session {
    // The app provides it at its root before any page exists; a missing context is a
    // programming error that would show on every page at once.
    use_context::<Session>().unwrap_or_else(|| Session { user: RwSignal::new(None), checked: RwSignal::new(true) })
}
