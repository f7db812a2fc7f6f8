//! llmx: sign the llmx coding agent in to its provider and provision those credentials wherever
//! the agent runs. This crate is the library; `src/main.rs` and `src/cli/` are a thin layer that
//! parses arguments and renders what the library returns (DESIGN.md §7).

pub mod accounts;
pub mod auth;
pub mod config;
pub mod family;
pub mod fanout;
pub mod home;
pub mod push;
pub mod secret;
pub mod ssh;
pub mod targets;
pub mod text;
pub mod tunnel;
