//! Black-box tests of authsession against real Redis servers and real HTTP fakes.

mod audit_findings;
mod budgets;
mod confirm;
mod contract;
mod deployments;
mod edge;
mod faults;
mod fuzz;
mod gateway;
mod helpers;
mod high_availability;
mod hostile;
mod internal;
mod lifecycle;
mod model;
mod operator;
mod oracles;
mod partitioned;
mod protocol;
mod routing;
mod script_engine;
mod script_faults;
mod scripts_audit;
mod send;
mod telemetry;
