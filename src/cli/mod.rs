//! Operator subcommands beside `serve`: the runbook's steps as commands. Each writes a readable
//! report to `out` and returns whether everything it checked was healthy (exit 0 or 1).

pub mod client;
pub mod inspect;
pub mod openapi;
pub mod partitions;
pub mod republish;
pub mod scripts;
pub mod verify;

/// Why a command could not answer at all (as opposed to answering "unhealthy").
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Usage(String),
}
