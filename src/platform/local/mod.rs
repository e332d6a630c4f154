//! The `local` platform: services as local processes behind a weighted reverse proxy.

pub mod health;
pub mod supervisor;
