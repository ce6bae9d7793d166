//! The node's wall clock, in the protocol's milliseconds.

use std::time::{SystemTime, UNIX_EPOCH};

use agora_protocol::Timestamp;

/// Now, as a protocol timestamp.
pub fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    Timestamp(u64::try_from(ms).unwrap_or(u64::MAX))
}
