//! Black-box tests of authsession against real Redis servers and real HTTP fakes, one folder per
//! tier (README "Test tiers"), so a tier is one filter:
//! - `unit`: needs neither a container engine nor Redis (the protocol model checks, `luacheck`);
//! - `service`: the behaviour tests, each on standalone Redis containers of its own;
//! - `topologies`: ACL, TLS, Sentinel, cluster, the partitioned layout, slot migrations.

mod helpers;
mod service;
mod topologies;
mod unit;
