//! The screens, one module each.

pub mod account;
pub mod adoption;
pub mod applications;
pub mod audit;
pub mod authorize;
pub mod groups;
pub mod password;
pub mod settings;
pub mod signin;
pub mod tenants;
pub mod users;
