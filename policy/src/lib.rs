//! Twofold's pure core: the words every other part speaks (behaviours, scope settings,
//! providers), the one function that turns them into the effective 2FA policy of a
//! user, and the authorisation model.
//!
//! This crate must never do I/O, read the clock or spawn tasks: the server and the web
//! app (compiled to wasm) both call it, and its answers must depend on its arguments
//! alone. The casbin enforcer sits behind the `authz` feature so the wasm build does
//! not carry it.

pub mod authorization;
#[cfg(feature = "authz")]
pub mod authz;
pub mod names;
pub mod resolve;
pub mod vocab;
pub mod wire;

pub use resolve::{ApplicationRule, DecidedBy, EffectivePolicy, GroupRule, PolicyInput, Rule, Rules, Scope, resolve};
pub use vocab::{Behaviour, Provider, ProviderSet, ScopeSettings, SettingsError, Strength, TenantFeature};
