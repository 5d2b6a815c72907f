//! The protocol model checked exhaustively (docs/architecture.md, "Protocols"): every property in every
//! interleaving within the bounds, both layouts; the known-bad variants are caught; and the
//! model's decision tables are replayed against the real scripts (`service::protocol`).

pub(crate) mod model;

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

/// A known-bad variant must be caught, with a counterexample for `property`.
fn assert_caught(protocol: Protocol, property: &'static str) {
    let (checker, seconds) = check(protocol.clone());
    report(
        &format!("{:?} {:?}", protocol.layout, protocol.variant),
        &checker,
        seconds,
    );
    let path = checker.assert_any_discovery(property);
    println!(
        "{property}: counterexample of {} steps",
        path.into_actions().len()
    );
}

#[test]
fn the_old_confirm_that_ignored_the_blocked_marker_is_caught() {
    for layout in [Layout::SingleTag, Layout::Partitioned] {
        assert_caught(
            Protocol {
                variant: Variant::ConfirmIgnoresMarker,
                ..bounds(layout)
            },
            "after a block completes no session of the user is active",
        );
    }
}

#[test]
fn a_session_step_without_the_challenge_check_is_caught() {
    for layout in [Layout::SingleTag, Layout::Partitioned] {
        assert_caught(
            Protocol {
                variant: Variant::SessionWithoutChallengeCheck,
                inconsistent_users: true,
                ..bounds(layout)
            },
            "one challenge yields at most one session",
        );
    }
}

/// Were `WAIT` to cover only the connection's own writes (it covers more on Redis 7, see
/// `regressions`), a retry could be answered with a session a failover then loses.
#[test]
fn without_the_fence_an_acknowledged_answer_can_report_a_lost_write() {
    for layout in [Layout::SingleTag, Layout::Partitioned] {
        assert_caught(
            Protocol {
                fence: false,
                ..bounds(layout)
            },
            "a confirm answered with a session answers the committed one",
        );
    }
}

#[test]
fn without_replica_acks_a_failover_can_undo_an_acknowledged_revoke() {
    assert_caught(
        Protocol {
            replica_acks: false,
            ..bounds(Layout::SingleTag)
        },
        "a revoked session never becomes active again",
    );
}

/// An inconsistent user service (two user ids for one address) on top of the bounds.
#[test]
fn every_safety_property_holds_with_an_inconsistent_user_service() {
    for layout in [Layout::SingleTag, Layout::Partitioned] {
        let (checker, seconds) = check(Protocol {
            inconsistent_users: true,
            ..bounds(layout)
        });
        report(
            &format!("{layout:?}, inconsistent users"),
            &checker,
            seconds,
        );
        checker.assert_properties();
    }
}

/// The larger bound, run with `AUTHSESSION_PROTOCOL_BOUND=large` (README "Protocols" gives its
/// state counts and time): three faults, two admin actions, two republishes, an inconsistent
/// user service, both layouts.
#[test]
fn every_property_holds_in_the_larger_bound_when_asked() {
    if std::env::var("AUTHSESSION_PROTOCOL_BOUND").as_deref() != Ok("large") {
        println!("set AUTHSESSION_PROTOCOL_BOUND=large to check the larger bound");
        return;
    }
    for layout in [Layout::SingleTag, Layout::Partitioned] {
        let (checker, seconds) = check(Protocol {
            faults: 3,
            admin_ops: 2,
            republishes: 2,
            inconsistent_users: true,
            ..bounds(layout)
        });
        report(&format!("{layout:?}, larger bound"), &checker, seconds);
        checker.assert_properties();
    }
}
