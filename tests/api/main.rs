//! Black-box tests of authsession against real Redis servers and real HTTP fakes.

mod budgets;
mod confirm;
mod consistency;
mod contract;
mod deployments;
mod edge;
mod faults;
mod fuzz;
mod gateway;
mod helpers;
mod high_availability;
mod image;
mod internal;
mod lifecycle;
mod malformed_requests;
mod model;
mod operator;
mod partitioned;
mod protocol;
mod routing;
mod script_engine;
mod script_faults;
mod scripts_audit;
mod security;
mod send;
mod telemetry;
