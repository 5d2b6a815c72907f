//! `authsession scripts list|export <dir>|check`: the script audit trail for the platform team.

use std::io::Write;
use std::path::Path;

use crate::config::Config;
use crate::store::scripts::scripts;
use crate::store::{Keys, Redis};

/// `name version sha1`, one line per script (the content of `lua/scripts.lock`).
pub fn list(out: &mut impl Write) -> std::io::Result<()> {
    out.write_all(scripts().lock().as_bytes())
}

/// Writes each assembled script as `<dir>/<name>.lua`, exactly the bytes the SHA1 covers.
pub fn export(dir: &Path, out: &mut impl Write) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for script in scripts().all() {
        let path = dir.join(format!("{}.lua", script.name));
        std::fs::write(&path, &script.body)?;
        writeln!(
            out,
            "{} {} {} -> {}",
            script.name,
            script.version,
            script.sha1,
            path.display()
        )?;
    }
    Ok(())
}

/// Reports which scripts the configured Redis has cached (in cluster mode: every primary that
/// owns a partition); true when all are.
pub async fn check(config: &Config, out: &mut impl Write) -> Result<bool, super::Error> {
    let redis = Redis::new(&config.redis)?;
    let all = scripts().all();
    let routes = Keys::new(&config.redis, &config.gateway).streams();
    let exists = redis.scripts_exist(&all, &routes).await?;
    for (script, ok) in all.iter().zip(&exists) {
        let state = if *ok { "cached" } else { "MISSING" };
        writeln!(
            out,
            "{state:8} {} {} {}",
            script.name, script.version, script.sha1
        )?;
    }
    Ok(exists.iter().all(|ok| *ok))
}
