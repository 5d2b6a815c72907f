//! Deployments beyond one standalone server: ACL and TLS, Sentinel, cluster, the partitioned
//! layout, slot migrations.

mod cluster;
pub(crate) mod deployments;
mod high_availability;
mod migrations;
mod partitioned;
