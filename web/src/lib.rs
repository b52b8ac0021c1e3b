//! Twofold's web app. Until its screens land it only proves that the shared wire types
//! and the policy resolution compile for the browser, which the settings screens need
//! for their live preview.

pub use twofold_policy::{resolve, wire};
