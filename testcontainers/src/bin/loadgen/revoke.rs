//! Scenario 5: revoke-all and listing cost by sessions per user.

use std::time::Instant;

use authsession::domain::{Revocation, SessionStatus, UserId};
use authsession::store::Store;

use crate::redis_stats::{config_set, slow_scripts, slowlog_reset};

pub async fn revoke_costs(
    store: &Store,
    conn: &mut redis::aio::MultiplexedConnection,
    sizes: &[usize],
) {
    println!("\n## 5. Revoke-all and listing cost by sessions per user\n");
    println!("  | sessions | revoke-all ms | script calls | longest script call us | list first 100 ms | list revoked (all) ms |");
    println!("  |---|---|---|---|---|---|");
    for &size in sizes {
        let user = format!("bulk{size}");
        let user_id = UserId::parse(&user).unwrap();
        authsession_testbench::seed::active_sessions(store, &user_id, size).await;
        config_set(conn, "slowlog-log-slower-than", 0).await;
        config_set(conn, "slowlog-max-len", 1_000_000).await;
        slowlog_reset(conn).await;
        let revocation = Revocation {
            reason_code: authsession::domain::Code::known("admin_revoke"),
            actor_type: authsession::domain::Code::known("admin"),
            actor_id: None,
        };
        let started = Instant::now();
        let revoked = store
            .user_sessions_revoke(&user_id, &revocation, None)
            .await
            .unwrap();
        let took = started.elapsed();
        assert_eq!(revoked as usize, size);
        let scripts = slow_scripts(conn).await;
        config_set(conn, "slowlog-log-slower-than", 5000).await;
        let list = |filter| {
            let store = store.clone();
            let user_id = user_id.clone();
            async move {
                let started = Instant::now();
                store
                    .sessions_list(&user_id, filter, 100, None)
                    .await
                    .unwrap();
                started.elapsed()
            }
        };
        let first = list(None).await;
        let revoked_filter = list(Some(SessionStatus::Revoked)).await;
        println!(
            "  | {size} | {:.1} | {} | {} | {:.2} | {:.2} |",
            took.as_secs_f64() * 1000.0,
            scripts.len(),
            scripts.iter().max().unwrap_or(&0),
            first.as_secs_f64() * 1000.0,
            revoked_filter.as_secs_f64() * 1000.0
        );
    }
}
