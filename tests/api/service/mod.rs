//! Behaviour tests, each on standalone Redis containers of its own.

mod budgets;
mod confirm;
mod consistency;
mod containers;
mod contract;
mod edge;
mod edge_auth;
mod faults;
mod fuzz;
pub(crate) mod gateway;
mod gateway_binary;
mod guessing;
mod image;
mod internal;
mod lifecycle;
mod malformed_requests;
pub(crate) mod model;
pub(crate) mod operator;
pub(crate) mod protocol;
mod routing;
mod script_engine;
pub(crate) mod script_faults;
pub(crate) mod scripts_audit;
mod security;
mod send;
mod telemetry;
