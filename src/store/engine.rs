//! The script engine's runtime half (the other, `scripts`, assembles and hashes the Lua):
//! `EVALSHA` with one transparent `SCRIPT LOAD` on `NOSCRIPT`, the `script` span and metrics,
//! and `SCRIPT EXISTS` for the startup and `verify` checks.

use std::sync::atomic::{AtomicBool, Ordering};

use redis::{ErrorKind, FromRedisValue, ServerErrorKind, Value};
use tracing::Instrument;

use super::pool::{Backend, Request, Via};
use super::scripts::{Script, ScriptCall};
use super::{Error, Redis};
use crate::config::ScriptLoading;
use crate::telemetry::metrics::metrics;

impl Redis {
    /// `EVALSHA`; on `NOSCRIPT` (restart, failover, `SCRIPT FLUSH`, a new cluster node) loads
    /// the script with `SCRIPT LOAD` on the node that answered and retries once, unless scripts
    /// are `preloaded`.
    pub async fn invoke(&self, call: &ScriptCall<'_>) -> Result<Value, Error> {
        self.invoke_waiting(call, self.min_replica_acks).await
    }

    /// [`Redis::invoke`] without waiting for replica acks, for a call that writes nothing (the
    /// startup probe): replicas still syncing must not keep the service from starting.
    pub async fn invoke_unacknowledged(&self, call: &ScriptCall<'_>) -> Result<Value, Error> {
        self.invoke_waiting(call, 0).await
    }

    async fn invoke_waiting(&self, call: &ScriptCall<'_>, acks: u32) -> Result<Value, Error> {
        let script = call.script();
        let span = tracing::info_span!(
            "script",
            script = script.name,
            version = script.version,
            outcome = tracing::field::Empty,
            noscript_reload = tracing::field::Empty,
        );
        let started = std::time::Instant::now();
        let reloaded = AtomicBool::new(false);
        let result = self
            .invoke_once_reloading(call, acks, &reloaded)
            .instrument(span.clone())
            .await;
        let elapsed = started.elapsed();
        // Recorded once, at the end: text logs would print a field recorded twice twice.
        span.record("outcome", if result.is_ok() { "ok" } else { "error" });
        span.record("noscript_reload", reloaded.load(Ordering::Relaxed));
        metrics().script(
            script.name,
            script.version,
            result.is_ok(),
            elapsed,
            script.writes_projection,
        );
        if let Err(error) = &result {
            let _entered = span.enter();
            tracing::warn!(
                script = script.name,
                version = script.version,
                %error,
                elapsed_ms = elapsed.as_millis() as u64,
                "script call failed"
            );
        }
        result
    }

    async fn invoke_once_reloading(
        &self,
        call: &ScriptCall<'_>,
        acks: u32,
        reloaded: &AtomicBool,
    ) -> Result<Value, Error> {
        let script = call.script();
        let evalsha = call.evalsha();
        let noscript = |r: &Result<Value, Error>| matches!(r, Err(Error::Redis(e)) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript));
        let first = self.send_script(&evalsha, acks).await;
        if !noscript(&first) {
            return first;
        }
        if self.script_loading == ScriptLoading::Preloaded {
            return Err(Error::NotPreloaded {
                script: script.name,
                version: script.version,
            });
        }
        reloaded.store(true, Ordering::Relaxed);
        metrics().noscript_reload(script.name);
        tracing::debug!(
            script = script.name,
            "script not cached on the node: loading it"
        );
        self.load(script, call.first_key()).await?;
        let second = self.send_script(&evalsha, acks).await;
        if !noscript(&second) || !matches!(self.backend, Backend::Cluster { .. }) {
            return second;
        }
        // Loaded on the slot's owner, the call still met a node without it: during a slot
        // migration the cluster client follows `ASK` to the importing node (SPEC §5: load where
        // a `MOVED` or `ASK` led, and retry). The client does not say which node that was, so
        // the script is loaded on every primary (each must answer), and the call retried once.
        tracing::debug!("script not cached on the node a redirect led to: loading it everywhere");
        let mut cmd = redis::cmd("SCRIPT");
        cmd.arg("LOAD").arg(&script.body);
        self.on_every_primary(&cmd, self.command_timeout).await?;
        self.send_script(&evalsha, acks).await
    }

    /// `EVALSHA` alone, or, with replica acks on, `EVALSHA` then `WAIT` as one pipeline: both go
    /// down the same connection back to back, so the `WAIT` covers this script's writes (and any
    /// earlier ones of that connection). Every script writes, so every call waits; reads never
    /// come through here.
    async fn send_script(&self, evalsha: &redis::Cmd, wanted: u32) -> Result<Value, Error> {
        if wanted == 0 {
            return self
                .run(Request::Cmd(evalsha), self.command_timeout, Via::Pool)
                .await;
        }
        let mut pipe = redis::pipe();
        pipe.add_command(evalsha.clone())
            .cmd("WAIT")
            .arg(wanted)
            .arg(self.replica_ack_timeout.as_millis() as u64);
        let started = std::time::Instant::now();
        // A script error (NOSCRIPT included) fails the whole pipeline before its reply is read.
        let replies = self
            .run(Request::Pipe(&pipe), self.command_timeout, Via::Pool)
            .await?;
        let (reply, acked) = match replies {
            Value::Array(mut items) if items.len() == 2 => {
                let acked = u32::from_redis_value(items.pop().expect("two items"))
                    .map_err(|e| Error::Redis(e.into()))?;
                (items.pop().expect("two items"), acked)
            }
            other => {
                return Err(Error::Reply {
                    script: "WAIT",
                    detail: format!("expected a script reply and a count, got {other:?}"),
                })
            }
        };
        metrics().replica_acks(acked >= wanted, started.elapsed());
        if acked < wanted {
            return Err(Error::ReplicaAcks {
                wanted,
                acked,
                timeout: self.replica_ack_timeout,
            });
        }
        Ok(reply)
    }

    /// `SCRIPT LOAD` on the node that runs the call (cluster: the primary owning `key`'s slot).
    async fn load(&self, script: &Script, key: Option<&str>) -> Result<(), Error> {
        let mut cmd = redis::cmd("SCRIPT");
        cmd.arg("LOAD").arg(&script.body);
        let sha: String = match (&self.backend, key) {
            (Backend::Cluster { .. }, Some(key)) => {
                let value = self.route(&cmd, key, self.command_timeout).await?;
                String::from_redis_value(value).map_err(|e| Error::Redis(e.into()))?
            }
            _ => self.query_server(&cmd, self.command_timeout).await?,
        };
        if sha != script.sha1 {
            return Err(Error::Reply {
                script: script.name,
                detail: format!("SCRIPT LOAD returned {sha}"),
            });
        }
        Ok(())
    }

    /// `SCRIPT EXISTS` for each script, in order. In cluster mode it asks the primary of every
    /// key in `routes` (one per partition: each must run every script) and a script counts as
    /// cached only when all of them have it; elsewhere the one server.
    pub async fn scripts_exist(
        &self,
        scripts: &[&Script],
        routes: &[String],
    ) -> Result<Vec<bool>, Error> {
        let mut cmd = redis::cmd("SCRIPT");
        cmd.arg("EXISTS");
        for script in scripts {
            cmd.arg(&script.sha1);
        }
        if !matches!(self.backend, Backend::Cluster { .. }) || routes.is_empty() {
            return self.query_server(&cmd, self.command_timeout).await;
        }
        let mut all = vec![true; scripts.len()];
        for key in routes {
            let value = self.route(&cmd, key, self.command_timeout).await?;
            let here: Vec<bool> =
                FromRedisValue::from_redis_value(value).map_err(|e| Error::Redis(e.into()))?;
            for (cached, now) in all.iter_mut().zip(here) {
                *cached &= now;
            }
        }
        Ok(all)
    }
}
