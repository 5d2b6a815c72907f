//! authsession: passwordless e-mail-code login with device-bound sessions, backed by Redis.
//! Routes live in `http`, use cases in `flows`, Redis and its Lua scripts in `store`.

pub mod app;
pub mod cli;
pub mod clients;
pub mod config;
pub mod domain;
pub mod flows;
pub mod gateway;
pub mod http;
pub mod store;
pub mod telemetry;

/// The house rules, checked: the code map's layering, file bounds, where Redis and the layout
/// may be touched, and the docs against the code.
#[cfg(test)]
mod house_rules;
