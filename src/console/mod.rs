//! The console: a ratatui front end of the engine. It renders the engine's
//! [`ReleaseState`](crate::engine::ReleaseState) and [`Event`](crate::engine::Event)s
//! and sends [`Command`](crate::engine::Command)s through the engine's one command
//! channel, exactly like the headless front end; it holds no deployment rule.

pub mod action;
pub mod app;
pub mod config;
pub mod fixtures;
pub mod keymap;
pub mod render;
pub mod run;
pub mod theme;
