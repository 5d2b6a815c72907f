//! Tests that need no container engine and no Redis.

mod lint;
pub(crate) mod protocol;
