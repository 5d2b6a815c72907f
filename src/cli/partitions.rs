//! `authsession partitions`: the layout a gateway (or an operator) needs, from configuration
//! alone: one line per partition with its tag, slot and stream.

use std::io::Write;

use crate::config::Config;
use crate::store::partitions::slot;
use crate::store::Keys;

/// `index tag slot stream`, one line per partition; the single-tag layout prints its one stream.
pub fn print(config: &Config, out: &mut impl Write) -> std::io::Result<()> {
    let keys = Keys::new(&config.redis, &config.gateway);
    let tags = keys.layout().tags();
    if tags.is_empty() {
        let stream = &keys.streams()[0];
        return writeln!(
            out,
            "single-tag layout: stream {stream} (slot {})",
            slot(stream)
        );
    }
    writeln!(out, "# partition tag slot stream")?;
    for (i, (tag, stream)) in tags.iter().zip(keys.streams()).enumerate() {
        writeln!(out, "{i} {tag} {} {stream}", slot(&stream))?;
    }
    Ok(())
}
