//! `authsession scripts list|export <dir>|check`: the script audit trail for the platform team.

use std::io::Write;
use std::path::Path;

use crate::config::{Config, ScriptLoading};
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

/// Reports, for the scripts the configured layout runs, which the configured Redis has cached (in
/// cluster mode: every primary that owns a partition). In `auto` loading a script not cached yet
/// is loaded on its first use, so only `preloaded` mode fails on one (exit 1); scripts the layout
/// never runs are listed apart and checked for nothing.
pub async fn check(config: &Config, out: &mut impl Write) -> Result<bool, super::Error> {
    let redis = Redis::new(&config.redis)?;
    let keys = Keys::new(&config.redis, &config.gateway);
    let layout = keys.layout();
    let (used, unused): (Vec<_>, Vec<_>) = scripts()
        .all()
        .into_iter()
        .partition(|s| layout.runs(s.name));
    writeln!(out, "redis: {}", config.redis.describe())?;
    writeln!(
        out,
        "layout: {} (runs {} of {} scripts); script loading: {}",
        layout.name(),
        used.len(),
        used.len() + unused.len(),
        config.redis.script_loading.as_str()
    )?;
    let exists = redis.scripts_exist(&used, &keys.streams()).await?;
    let preloaded = config.redis.script_loading == ScriptLoading::Preloaded;
    for (script, cached) in used.iter().zip(&exists) {
        let state = match (cached, preloaded) {
            (true, _) => "cached",
            (false, false) => "not loaded yet (loads on first use)",
            (false, true) => "MISSING (preloaded mode: requests that need it fail)",
        };
        writeln!(
            out,
            "{} {} {}: {state}",
            script.name, script.version, script.sha1
        )?;
    }
    for script in &unused {
        writeln!(
            out,
            "{} {}: not used by the {} layout",
            script.name,
            script.version,
            layout.name()
        )?;
    }
    Ok(!preloaded || exists.iter().all(|ok| *ok))
}
