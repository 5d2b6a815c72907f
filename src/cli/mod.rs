//! Subcommands beside `serve`.

pub mod scripts;
