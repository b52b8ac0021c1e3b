//! The `twofold` server: configuration, storage, the HTTP API and the sign-in pipeline.
//! `main.rs` only parses the command line; everything else lives here so the
//! integration tests can start the real application in-process on port 0.

pub mod alloc;
pub mod app;
pub mod auth;
pub mod cache;
pub mod changes;
pub mod clock;
pub mod config;
pub mod db;
pub mod error;
pub mod extract;
pub mod factors;
pub mod housekeeping;
pub mod metrics;
pub mod notify;
pub mod oidc;
pub mod openapi;
pub mod operator;
pub mod population;
pub mod ratelimit;
pub mod reset;
pub mod rotation;
pub mod routes;
pub mod secrets;
pub mod senders;
pub mod signin;
pub mod threads;
pub mod tls;
pub mod totp;
pub mod web;
