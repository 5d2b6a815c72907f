//! The service's metric instruments, created once from the global meter (a no-op until OTLP
//! export is configured). Attribute values are bounded sets (outcomes, route templates, script
//! names), never ids or addresses.

use std::sync::LazyLock;
use std::time::Duration;

use opentelemetry::metrics::{Counter, Histogram};
use opentelemetry::KeyValue;

pub struct Metrics {
    send_outcomes: Counter<u64>,
    confirm_outcomes: Counter<u64>,
    revoke_outcomes: Counter<u64>,
    script_duration: Histogram<f64>,
    noscript_reloads: Counter<u64>,
    projection_failures: Counter<u64>,
    dependency_calls: Counter<u64>,
    http_duration: Histogram<f64>,
    pool_wait: Histogram<f64>,
    refusals: Counter<u64>,
    replica_waits: Counter<u64>,
    replica_wait_duration: Histogram<f64>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let meter = opentelemetry::global::meter("authsession");
    Metrics {
        send_outcomes: meter
            .u64_counter("authsession.send.outcomes")
            .with_description("send-email-code results: sent, throttled, suppressed, failed")
            .build(),
        confirm_outcomes: meter
            .u64_counter("authsession.confirm.outcomes")
            .with_description("confirm-email-code results: created, retried, or the error code")
            .build(),
        revoke_outcomes: meter
            .u64_counter("authsession.revoke.outcomes")
            .with_description("revoke, revoke-all and block results")
            .build(),
        script_duration: meter
            .f64_histogram("authsession.script.duration")
            .with_unit("s")
            .with_description("Lua script call latency, NOSCRIPT reload included")
            .build(),
        noscript_reloads: meter
            .u64_counter("authsession.script.noscript_reloads")
            .with_description("scripts loaded after Redis answered NOSCRIPT")
            .build(),
        projection_failures: meter
            .u64_counter("authsession.projection.publish_failures")
            .with_description("failed calls of scripts that write the gateway projection")
            .build(),
        dependency_calls: meter
            .u64_counter("authsession.dependency.calls")
            .with_description("user/mail service attempts by outcome (ok, retried, failed)")
            .build(),
        http_duration: meter
            .f64_histogram("http.server.request.duration")
            .with_unit("s")
            .with_description("HTTP request duration per route and status")
            .build(),
        pool_wait: meter
            .f64_histogram("authsession.redis.pool.wait")
            .with_unit("s")
            .with_description("time waiting for a pooled Redis connection")
            .build(),
        refusals: meter
            .u64_counter("authsession.http.refusals")
            .with_description(
                "requests and connections refused at the edge: unauthorized, rate_limited, \
                 connection_limit, client_connection_limit, client_request_limit, body_budget, deadline",
            )
            .build(),
        replica_waits: meter
            .u64_counter("authsession.redis.replica_acks")
            .with_description(
                "write scripts followed by WAIT (AUTHSESSION_REDIS_MIN_REPLICA_ACKS), by outcome: \
                 acked, shortfall",
            )
            .build(),
        replica_wait_duration: meter
            .f64_histogram("authsession.redis.replica_acks.duration")
            .with_unit("s")
            .with_description("round trip of a write script and its WAIT for replica acks")
            .build(),
    }
});

/// The instruments.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    /// A write script's `WAIT`: whether enough replicas acknowledged, and the round trip of the
    /// script and its `WAIT` together.
    pub fn replica_acks(&self, acked: bool, elapsed: Duration) {
        let outcome = if acked { "acked" } else { "shortfall" };
        self.replica_waits
            .add(1, &[KeyValue::new("outcome", outcome)]);
        self.replica_wait_duration
            .record(elapsed.as_secs_f64(), &[]);
    }

    pub fn send(&self, outcome: &'static str) {
        self.send_outcomes
            .add(1, &[KeyValue::new("outcome", outcome)]);
    }

    pub fn confirm(&self, outcome: &'static str) {
        self.confirm_outcomes
            .add(1, &[KeyValue::new("outcome", outcome)]);
    }

    pub fn revoke(&self, operation: &'static str, outcome: &'static str) {
        self.revoke_outcomes.add(
            1,
            &[
                KeyValue::new("operation", operation),
                KeyValue::new("outcome", outcome),
            ],
        );
    }

    pub fn script(
        &self,
        script: &'static str,
        version: u32,
        ok: bool,
        elapsed: Duration,
        writes_projection: bool,
    ) {
        let outcome = if ok { "ok" } else { "error" };
        self.script_duration.record(
            elapsed.as_secs_f64(),
            &[
                KeyValue::new("script", script),
                KeyValue::new("version", i64::from(version)),
                KeyValue::new("outcome", outcome),
            ],
        );
        if !ok && writes_projection {
            self.projection_failures
                .add(1, &[KeyValue::new("script", script)]);
        }
    }

    pub fn noscript_reload(&self, script: &'static str) {
        self.noscript_reloads
            .add(1, &[KeyValue::new("script", script)]);
    }

    pub fn dependency(&self, service: &'static str, outcome: &'static str) {
        self.dependency_calls.add(
            1,
            &[
                KeyValue::new("service", service),
                KeyValue::new("outcome", outcome),
            ],
        );
    }

    pub fn http(
        &self,
        surface: &'static str,
        method: &str,
        route: &str,
        status: u16,
        elapsed: Duration,
    ) {
        self.http_duration.record(
            elapsed.as_secs_f64(),
            &[
                KeyValue::new("surface", surface),
                KeyValue::new("http.request.method", known_method(method)),
                KeyValue::new("http.route", route.to_owned()),
                KeyValue::new("http.response.status_code", i64::from(status)),
            ],
        );
    }

    pub fn pool_wait(&self, elapsed: Duration) {
        self.pool_wait.record(elapsed.as_secs_f64(), &[]);
    }

    /// One refusal at the edge; `reason` is one of a fixed set, `surface` `public`/`internal`.
    pub fn refused(&self, surface: &'static str, reason: &'static str) {
        self.refusals.add(
            1,
            &[
                KeyValue::new("surface", surface),
                KeyValue::new("reason", reason),
            ],
        );
    }
}

/// The method as a bounded attribute: the standard methods, anything else `_OTHER` (as the
/// OpenTelemetry HTTP conventions say), so fuzzed methods cannot grow the metric without bound.
fn known_method(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    KNOWN
        .into_iter()
        .find(|known| *known == method)
        .unwrap_or("_OTHER")
}

#[cfg(test)]
mod tests {
    #[test]
    fn unknown_methods_are_one_attribute_value() {
        assert_eq!(super::known_method("POST"), "POST");
        assert_eq!(super::known_method("FUZZ123"), "_OTHER");
        assert_eq!(super::known_method("post"), "_OTHER");
    }
}
