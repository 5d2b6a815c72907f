//! Black-box tests of authsession against real Redis servers and real HTTP fakes.

mod confirm;
mod deployments;
mod helpers;
mod internal;
mod lifecycle;
mod routing;
mod script_engine;
mod send;
