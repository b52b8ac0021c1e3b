//! The HTTP integration tests of the `twofold` server, in one test binary (each extra
//! binary is another link of the whole dependency tree). Every test starts the real
//! application on port 0 with a fresh database and speaks HTTP to it; the database is
//! SQLite unless `TEST_BACKEND=postgres` (with `TEST_POSTGRES_URL`) says otherwise, and
//! the same tests run unchanged on both.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod flows;
mod helpers;
#[path = "../support/smtp.rs"]
mod smtp;
#[path = "../support/soft_authenticator.rs"]
mod soft_authenticator;

mod account;
mod admin_actions;
mod audit;
mod auth;
mod caches;
mod cli;
mod concurrency;
mod errors;
mod groups;
mod headers;
mod health;
mod housekeeping;
mod isolation;
mod lifecycle;
mod limits;
mod lockout;
mod machine;
mod message_caps;
mod metrics;
mod no_sender;
mod oidc;
mod opened;
mod passkeys;
mod password_reset;
mod remember;
mod rotation;
mod secrecy_in_logs;
mod settings;
mod signin_flow;
mod stamp;
mod tenants;
mod users;
