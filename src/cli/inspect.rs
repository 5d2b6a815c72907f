//! `authsession inspect challenge|session|user <id>`: the source-of-truth record, its TTL, the
//! gateway snapshot and the recent stream events, with a verdict line answering the runbook's
//! triage questions. E-mail addresses are masked; code hashes are never printed.

use std::io::Write;

use crate::config::Config;
use crate::domain::{mask_email, ActorId, ChallengeId, Code, DeviceSessionId, Session, UserId};
use crate::store::{Redis, Store};

/// Stream entries examined, newest first, when looking for a session's events.
pub const EVENT_SCAN: usize = 2000;

pub enum Target {
    Challenge(ChallengeId),
    Session(DeviceSessionId),
    User(UserId),
}

/// Returns false when something needs an operator (a missing or stale projection).
pub async fn run(
    config: &Config,
    target: &Target,
    out: &mut impl Write,
) -> Result<bool, super::Error> {
    let store = Store::new(
        Redis::new(&config.redis)?,
        &config.redis,
        &config.gateway,
        &config.policy,
    );
    writeln!(out, "redis: {}", config.redis.describe())?;
    let view = View { store };
    match target {
        Target::Challenge(id) => view.challenge(id, out).await,
        Target::Session(id) => view.session(id, true, out).await,
        Target::User(id) => view.user(id, out).await,
    }
}

struct View {
    store: Store,
}

fn ttl(ms: i64) -> String {
    match ms {
        -1 => "none".to_owned(),
        -2 => "gone".to_owned(),
        ms => humantime::format_duration(std::time::Duration::from_millis(ms as u64)).to_string(),
    }
}

impl View {
    async fn challenge(
        &self,
        id: &ChallengeId,
        out: &mut impl Write,
    ) -> Result<bool, super::Error> {
        let record = self.store.challenge_record(id).await?;
        let (fields, pttl) = (&record.fields, record.ttl_ms);
        writeln!(out, "challenge {id} ({})", record.key)?;
        if fields.is_empty() {
            writeln!(out, "verdict: not found in the Redis above: confirm answers challenge_not_found (never existed, or removed by TTL; or another Redis: set AUTHSESSION_REDIS_ADDR as the service has it)")?;
            return Ok(true);
        }
        let get = |f: &str| fields.get(f).map(String::as_str).unwrap_or("");
        let now = self.store.server_time_ms().await?;
        let expires_at: i64 = get("expires_at_ms").parse().unwrap_or(0);
        writeln!(out, "  status: {}", get("status"))?;
        match get("email") {
            "" => writeln!(
                out,
                "  email: not kept (throttled); email_hash {}",
                get("email_hash")
            )?,
            email => writeln!(out, "  email: {}", mask_email(email))?,
        }
        writeln!(
            out,
            "  code: {}",
            if get("code_hash").is_empty() {
                "none (no code was generated for delivery)"
            } else {
                "set (hash hidden)"
            }
        )?;
        writeln!(out, "  attempts: {}", get("attempts"))?;
        writeln!(
            out,
            "  expires: in {} (Redis clock)",
            if expires_at > now {
                ttl(expires_at - now)
            } else {
                "the past".to_owned()
            }
        )?;
        writeln!(out, "  key ttl: {}", ttl(pttl))?;
        let verdict = match get("status") {
            "confirmed_pending_expire" => {
                writeln!(out, "  device_session_id: {}", get("device_session_id"))?;
                writeln!(out, "  user_id: {}", get("user_id"))?;
                format!(
                    "confirmed: identical confirms return session {} until the key expires",
                    get("device_session_id")
                )
            }
            _ if now >= expires_at => "expired: confirm answers challenge_expired until Redis removes the record".to_owned(),
            "delivery_throttled" => match get("window_of") {
                "" => "throttled: inside the address's resend window (its key named no challenge); no code was sent, user and mail services were not called; accepts no code".to_owned(),
                opener => format!("throttled: inside the address's resend window; no code was sent, user and mail services were not called; accepts the code of challenge {opener}, which opened the window (inspect it for attempts and confirmation)"),
            },
            "delivery_suppressed" => "suppressed: the user service said the address is blocked; no mail".to_owned(),
            "delivery_failed" => "delivery failed: user or mail service error; the resend window was released".to_owned(),
            "pending_delivery" => "pending delivery: the send did not finish (crash or timeout mid-send)".to_owned(),
            "sent" => "sent: awaiting confirm".to_owned(),
            other => format!("unknown status {other:?}"),
        };
        writeln!(out, "verdict: {verdict}")?;
        if get("status") == "confirmed_pending_expire" {
            writeln!(out)?;
            return Box::pin(self.session(
                &DeviceSessionId::from_stored(get("device_session_id")),
                true,
                out,
            ))
            .await;
        }
        Ok(true)
    }

    /// Prints one session and its projection; returns whether the projection is consistent.
    async fn session(
        &self,
        id: &DeviceSessionId,
        with_events: bool,
        out: &mut impl Write,
    ) -> Result<bool, super::Error> {
        let record = self.store.session_record(id).await?;
        let (fields, pttl) = (&record.fields, record.ttl_ms);
        writeln!(out, "session {id} ({})", record.key)?;
        let Some(session) = record.session() else {
            let detail = if fields.is_empty() {
                "not found in the Redis above (never existed, or its revoked retention ended; or another Redis: set AUTHSESSION_REDIS_ADDR as the service has it)"
            } else {
                "record is malformed"
            };
            writeln!(out, "verdict: {detail}")?;
            return Ok(fields.is_empty());
        };
        writeln!(
            out,
            "  source of truth: status={} version={} user_id={} created_at_ms={} ttl={}",
            session.status.as_str(),
            session.version,
            session.user_id,
            session.created_at_ms,
            ttl(pttl)
        )?;
        if let Some(reason) = &session.revoke_reason_code {
            writeln!(
                out,
                "  revoked: at_ms={} reason={reason} actor={}/{}",
                session.revoked_at_ms.unwrap_or_default(),
                session.revoke_actor_type.as_ref().map_or("-", Code::as_str),
                session
                    .revoke_actor_id
                    .as_ref()
                    .map_or("-", ActorId::as_str)
            )?;
        }
        let stored = self.store.snapshot(id).await?;
        let (snapshot_key, raw, snapshot_ttl) = (&stored.key, &stored.raw, stored.ttl_ms);
        let snapshot: Option<serde_json::Value> =
            raw.as_deref().and_then(|r| serde_json::from_str(r).ok());
        match &snapshot {
            Some(s) => writeln!(
                out,
                "  gateway snapshot ({snapshot_key}): status={} version={} ttl={}",
                s["status"],
                s["version"],
                ttl(snapshot_ttl)
            )?,
            None if raw.is_some() => {
                writeln!(out, "  gateway snapshot ({snapshot_key}): UNREADABLE JSON")?
            }
            None => writeln!(out, "  gateway snapshot ({snapshot_key}): missing")?,
        }
        if with_events {
            self.events(&session, out).await?;
        }
        let (ok, verdict) = projection_verdict(&session, snapshot.as_ref());
        writeln!(out, "verdict: {verdict}")?;
        Ok(ok)
    }

    async fn events(&self, session: &Session, out: &mut impl Write) -> Result<(), super::Error> {
        let (stream, entries) = self
            .store
            .recent_events(session.device_session_id.as_str(), EVENT_SCAN)
            .await?;
        let mine: Vec<_> = entries
            .iter()
            .filter(|e| {
                e.fields.get("device_session_id").map(String::as_str)
                    == Some(session.device_session_id.as_str())
            })
            .collect();
        writeln!(
            out,
            "  stream {}: {} event(s) for this session in the last {} entries",
            stream,
            mine.len(),
            entries.len()
        )?;
        for event in mine.iter().rev() {
            let field = |n: &str| event.fields.get(n).map(String::as_str).unwrap_or("?");
            writeln!(
                out,
                "    {} status={} version={} occurred_at_ms={}",
                event.id,
                field("status"),
                field("version"),
                field("occurred_at_ms")
            )?;
        }
        let latest = session.version.to_string();
        if !mine
            .iter()
            .any(|e| e.fields.get("version") == Some(&latest))
        {
            writeln!(out, "  note: no event for version {latest} among the scanned entries (trimmed, or never appended)")?;
        }
        Ok(())
    }

    async fn user(&self, id: &UserId, out: &mut impl Write) -> Result<bool, super::Error> {
        let indexes = self.store.user_indexes(id).await?;
        let (all, active) = (indexes.indexed, indexes.active);
        writeln!(
            out,
            "user {id}: {all} session(s) indexed, {} active",
            active.len()
        )?;
        let mut healthy = true;
        for session in active.iter().take(50) {
            writeln!(out)?;
            healthy &= self
                .session(&DeviceSessionId::from_stored(session), false, out)
                .await?;
        }
        if active.len() > 50 {
            writeln!(
                out,
                "\n({} more active sessions not shown)",
                active.len() - 50
            )?;
        }
        writeln!(
            out,
            "\nverdict: {}",
            if healthy {
                "every active session's projection is consistent"
            } else {
                "some projections need `authsession republish <id>`"
            }
        )?;
        Ok(healthy)
    }
}

/// Compares the gateway snapshot with the source of truth.
pub fn projection_verdict(
    session: &Session,
    snapshot: Option<&serde_json::Value>,
) -> (bool, String) {
    let id = &session.device_session_id;
    let Some(snapshot) = snapshot else {
        return (false, format!("projection MISSING: the gateway cannot see this session; run `authsession republish {id}`"));
    };
    let version = snapshot["version"].as_u64().unwrap_or(0);
    let status = snapshot["status"].as_str().unwrap_or("?");
    if version < session.version {
        return (
            false,
            format!(
                "projection STALE: snapshot version {version} < source of truth version {}: run `authsession republish {id}`",
                session.version
            ),
        );
    }
    if version > session.version {
        return (false, format!("snapshot version {version} is AHEAD of source of truth {}: investigate writers of this key", session.version));
    }
    if status != session.status.as_str() {
        return (false, format!("snapshot says {status} but source of truth says {} at the same version: investigate", session.status.as_str()));
    }
    (
        true,
        format!("projection consistent (version {version}, {status})"),
    )
}
