//! The protocol model checked exhaustively (README "Protocols"): every property in every
//! interleaving within the bounds, both layouts; the known-bad variants are caught; and the
//! model's decision tables are replayed against the real scripts (`conformance`).

mod conformance;
pub(crate) mod model;
mod regressions;

use std::time::Instant;

use stateright::{Checker, Model};

use model::{AdminOp, Layout, Plan, Protocol, Variant};

/// Two clients on two challenges (each may confirm its own or the other's, with the right or a
/// wrong code), an admin who revokes one session or blocks the user, one republish, two faults
/// (a lost reply or crash, a restart losing the last write, the marker's expiry).
pub(crate) fn bounds(layout: Layout) -> Protocol {
    let plans = |own: u8| {
        vec![
            Plan {
                challenge: own,
                right_code: true,
            },
            Plan {
                challenge: own,
                right_code: false,
            },
            Plan {
                challenge: 1 - own,
                right_code: true,
            },
        ]
    };
    Protocol {
        layout,
        variant: Variant::Correct,
        clients: vec![plans(0), plans(1)],
        admin: vec![AdminOp::Revoke, AdminOp::RevokeAll, AdminOp::Block],
        admin_ops: 1,
        republishes: 1,
        faults: 2,
        replica_acks: true,
        inconsistent_users: false,
        restarts: true,
        marker_expiry: true,
        max_active: 1,
        max_attempts: 2,
        fence: true,
    }
}

/// Checks `protocol` exhaustively; (states, unique states, seconds).
fn check(protocol: Protocol) -> (impl Checker<Protocol>, f64) {
    let started = Instant::now();
    let checker = protocol.checker().threads(2).spawn_bfs().join();
    (checker, started.elapsed().as_secs_f64())
}

fn report(name: &str, checker: &impl Checker<Protocol>, seconds: f64) {
    println!(
        "{name}: {} states ({} unique), depth {}, {seconds:.1} s",
        checker.state_count(),
        checker.unique_state_count(),
        checker.max_depth()
    );
}

#[test]
fn every_property_holds_in_every_interleaving_single_tag() {
    let (checker, seconds) = check(bounds(Layout::SingleTag));
    report("single-tag", &checker, seconds);
    checker.assert_properties();
}

#[test]
fn every_property_holds_in_every_interleaving_partitioned() {
    let (checker, seconds) = check(bounds(Layout::Partitioned));
    report("partitioned", &checker, seconds);
    checker.assert_properties();
}
