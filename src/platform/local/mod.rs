pub mod admin;
pub mod proxy;
pub mod stats;
