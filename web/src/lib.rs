//! Twofold's web app: a client-side Leptos app compiled to wasm32 and served by the
//! server from `web/dist`. It speaks the API only through the shared wire types of
//! `twofold-policy`, and validates settings with the same function the server runs.
//!
//! Only the browser build carries Leptos and the screens (`target_arch = "wasm32"`); a
//! native build is a thin shell with the element ids and the pure helpers, so the
//! workspace's native lints and tests stay fast and the helpers are still tested.

/// The element ids and data-test values shared with the browser tests, which
/// `include!` this file (so it cannot carry its own `//!` header).
pub mod ids;
pub mod model;
pub mod text;

#[cfg(target_arch = "wasm32")]
mod api;
#[cfg(target_arch = "wasm32")]
mod app;
#[cfg(target_arch = "wasm32")]
mod pages;
#[cfg(target_arch = "wasm32")]
mod passkey;
#[cfg(target_arch = "wasm32")]
mod session;
#[cfg(target_arch = "wasm32")]
mod widgets;

pub use twofold_policy::{resolve, wire};

/// The wasm entry point, run by `init()` in index.html.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(app::App);
}
