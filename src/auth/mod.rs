//! The credential library: the auth.json model, selection, claims, and the login and refresh
//! flows, the stores a login is kept in (auth.json or the OS keyring, [`store`]), and the
//! cross-process lock around auth.json. Nothing here prints; callers render what it returns.

pub mod browser;
pub mod cancel;
pub mod claims;
pub mod file;
pub mod lock;
pub mod login;
pub mod logout;
pub mod oauth;
pub mod paste;
pub mod pkce;
pub mod query;
pub mod refresh;
pub mod select;
pub mod server;
pub mod status;
pub mod store;
