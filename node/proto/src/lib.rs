//! `soak-proto`: the sans-IO protocol core of `soak-node` — membership, acknowledged direct
//! messages, the wire format, and their composition with the gossip core (`soak-gossip`).
//!
//! Nothing here touches a socket, a clock or a global RNG, and the crate has no IO dependency
//! (no tokio, quinn or axum: `cargo tree -p soak-proto` shows it). The node's IO shell feeds
//! [`engine::Input`]s together with `now` and drains [`engine::Output`]s (frames to queue, dials,
//! closes, DM outcomes). Timers are kept inside and exposed through
//! [`engine::Engine::next_timeout`], the way `quinn-proto` does it, so unit tests drive time by
//! hand.
//!
//! Entry type: [`engine::Engine`], which owns the membership/DM state machine
//! ([`core::Core`]) and the gossip state.
#![warn(missing_docs)]

pub mod bans;
pub mod core;
pub mod engine;
pub mod inbox;
pub mod pubsub;
pub mod ring;
pub mod transient;
pub mod wire;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A peer id: sha256 of the peer's SubjectPublicKeyInfo (DER). Shown as 64 hex chars.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PeerId(pub [u8; 32]);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Short form keeps logs readable; ids are random so 8 hex chars rarely collide.
        write!(f, "{}", &hex::encode(&self.0[..4]))
    }
}

/// The text was not a 64-hex-char peer id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid peer id: expected 64 hex characters")]
pub struct InvalidPeerId;

impl FromStr for PeerId {
    type Err = InvalidPeerId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut out).map_err(|_| InvalidPeerId)?;
        Ok(PeerId(out))
    }
}

/// A 16-byte DM request id, shown as 32 hex chars.
pub type RequestId = [u8; 16];

/// Parse a 32-hex-char request id.
pub fn parse_request_id(s: &str) -> Option<RequestId> {
    let mut out = [0u8; 16];
    hex::decode_to_slice(s.trim(), &mut out).ok()?;
    Some(out)
}
