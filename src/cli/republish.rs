//! `authsession republish <device_session_id>`: repairs a session's gateway projection from the
//! source of truth, through the same Lua fragment the flows use; never resurrects a revoked one.

use std::io::Write;

use crate::config::Config;
use crate::domain::DeviceSessionId;
use crate::store::sessions::Republished;
use crate::store::{Redis, Store};

pub async fn run(
    config: &Config,
    id: &DeviceSessionId,
    out: &mut impl Write,
) -> Result<bool, super::Error> {
    let store = Store::new(
        Redis::new(&config.redis)?,
        &config.redis,
        &config.gateway,
        &config.policy,
    );
    writeln!(out, "redis: {}", config.redis.describe())?;
    match store.session_projection_republish(id).await? {
        Republished::Repaired { version } => {
            writeln!(
                out,
                "repaired: snapshot rewritten at version {version} and one event appended"
            )?;
            Ok(true)
        }
        Republished::Current { version } => {
            writeln!(
                out,
                "current: the snapshot already shows version {version}; nothing written"
            )?;
            Ok(true)
        }
        Republished::NotFound => {
            writeln!(
                out,
                "not found: no session {id} in the source of truth of the Redis above"
            )?;
            Ok(false)
        }
    }
}
