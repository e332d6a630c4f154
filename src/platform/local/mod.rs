//! The `local` platform: services as local processes behind a weighted reverse proxy.

pub mod admin;
pub mod health;
pub mod proxy;
pub mod stats;
pub mod supervisor;
