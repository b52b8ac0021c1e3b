//! Browser journeys of the web app. One test binary; each journey starts its own world
//! (server, SMTP server, browser) so they cannot leak state into each other.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod applications;
mod journeys;
mod passkeys;
mod world;
