//! The screens, one module each.

pub mod account;
pub mod audit;
pub mod password;
pub mod settings;
pub mod signin;
pub mod tenants;
pub mod users;
