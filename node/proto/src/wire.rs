//! Frames exchanged between nodes on a QUIC uni stream: `u32` big-endian length, then the
//! postcard encoding of a [`Frame`]. Decoding never panics; a bad frame is an error the shell
//! counts (`invalid_frames_total`).

use serde::{Deserialize, Serialize};

use crate::{PeerId, RequestId};

/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 4;

/// Extra room in a frame beyond the DM payload (ids, tags, varints).
pub const FRAME_OVERHEAD: usize = 1024;

/// A peer address as exchanged by membership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerAddr {
    /// Peer id.
    pub id: PeerId,
    /// QUIC address, `ip:port`.
    pub addr: String,
}

/// Receiver's answer to a DM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AckStatus {
    /// Stored in the inbox (first copy).
    Delivered,
    /// Already stored earlier (duplicate-safe retry); not stored again.
    Duplicate,
    /// Inbox full of retained messages.
    Busy,
    /// Same request id with a different payload.
    Conflict,
    /// Shed by the per-peer rate limit.
    Load,
}

/// Everything that travels between nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// First frame on every stream: the sender's process instance and listen address.
    Hello {
        /// Random per-process instance number (a restart changes it).
        instance: u64,
        /// The sender's QUIC listen address.
        listen: String,
    },
    /// RTT probe.
    Ping {
        /// Echoed in the pong.
        nonce: u64,
    },
    /// RTT probe answer.
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
    /// Membership shuffle / peer exchange.
    PeerExchange {
        /// A sample of known peers (including the sender itself).
        peers: Vec<PeerAddr>,
        /// Whether the receiver should answer with its own sample.
        reply: bool,
    },
    /// A direct message.
    Dm {
        /// 16-byte request id.
        request_id: RequestId,
        /// Payload.
        payload: Vec<u8>,
    },
    /// Acknowledgement of a direct message.
    DmAck {
        /// The DM's request id.
        request_id: RequestId,
        /// What the receiver did with it.
        status: AckStatus,
    },
    /// Reserved for the pub/sub layer (`soak-gossip`): an opaque encoded gossip message.
    Gossip(Vec<u8>),
    /// ERR_LOAD: the sender is shedding load and says why (at most [`MAX_REASON`] bytes). For a
    /// DM over the rate limit it names the DM (`request_id`); otherwise the sender is about to
    /// close this connection (connection limit, or evicted for a preferred peer). Never a
    /// failure of either side.
    Load {
        /// The DM that was shed, if this answers one.
        request_id: Option<RequestId>,
        /// Why (UTF-8, capped at [`MAX_REASON`] bytes).
        reason: String,
    },
    /// Discovery: does the receiver know an address of `peer`?
    FindPeer {
        /// The peer looked for.
        peer: PeerId,
    },
    /// Answer to [`Frame::FindPeer`]: the address the receiver knows, if any.
    PeerFound {
        /// The peer looked for.
        peer: PeerId,
        /// Its QUIC address (`ip:port`), `None` when unknown.
        addr: Option<String>,
    },
}

/// Longest ERR_LOAD reason, bytes.
pub const MAX_REASON: usize = 100;

/// `reason` cut to at most [`MAX_REASON`] bytes at a UTF-8 character boundary.
pub fn cap_reason(reason: &str) -> String {
    if reason.len() <= MAX_REASON {
        return reason.to_string();
    }
    let mut end = MAX_REASON;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_string()
}

/// A frame could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("invalid frame: {0}")]
pub struct DecodeError(#[from] postcard::Error);

impl Frame {
    /// Encode with the length prefix, ready to write on a stream.
    pub fn encode(&self) -> Vec<u8> {
        // postcard into a Vec cannot fail for these plain types (no maps with non-string keys,
        // no unsized sequences); fall back to an empty body which the receiver rejects loudly.
        let body = postcard::to_stdvec(self).unwrap_or_default();
        let mut out = Vec::with_capacity(LEN_PREFIX + body.len());
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Decode one frame body (without the length prefix).
    pub fn decode(body: &[u8]) -> Result<Frame, DecodeError> {
        let (frame, rest) = postcard::take_from_bytes::<Frame>(body)?;
        if !rest.is_empty() {
            return Err(DecodeError(postcard::Error::DeserializeBadEncoding));
        }
        Ok(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let frames = vec![
            Frame::Hello {
                instance: 7,
                listen: "127.0.0.1:1".into(),
            },
            Frame::Dm {
                request_id: [3; 16],
                payload: vec![1, 2, 3],
            },
            Frame::DmAck {
                request_id: [3; 16],
                status: AckStatus::Busy,
            },
            Frame::PeerExchange {
                peers: vec![PeerAddr {
                    id: PeerId([9; 32]),
                    addr: "127.0.0.1:2".into(),
                }],
                reply: true,
            },
            Frame::Gossip(vec![0; 10]),
            Frame::Load {
                request_id: Some([4; 16]),
                reason: "rate limit".into(),
            },
            Frame::FindPeer {
                peer: PeerId([8; 32]),
            },
            Frame::PeerFound {
                peer: PeerId([8; 32]),
                addr: Some("127.0.0.1:3".into()),
            },
        ];
        for f in frames {
            let bytes = f.encode();
            let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
            assert_eq!(len, bytes.len() - LEN_PREFIX);
            assert_eq!(Frame::decode(&bytes[LEN_PREFIX..]).unwrap(), f);
        }
    }

    #[test]
    fn reasons_are_capped_at_100_bytes_on_a_character_boundary() {
        assert_eq!(cap_reason("short"), "short");
        let ascii = "x".repeat(150);
        assert_eq!(cap_reason(&ascii).len(), MAX_REASON);
        // 'é' is two bytes: 99 ASCII bytes then 'é' would end at byte 101.
        let tricky = format!("{}é and more", "a".repeat(99));
        let capped = cap_reason(&tricky);
        assert_eq!(capped.len(), 99);
        assert!(tricky.starts_with(&capped));
        let wide = "€".repeat(40); // 3 bytes each
        let capped = cap_reason(&wide);
        assert_eq!(capped.len(), 99);
        assert_eq!(capped.chars().count(), 33);
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678_u64;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (seed >> 33) as u8
                })
                .collect();
            let _ = Frame::decode(&bytes);
        }
        assert!(Frame::decode(&[0xff, 0xff, 0xff]).is_err());
        // Trailing bytes are refused.
        let mut b = Frame::Ping { nonce: 1 }.encode();
        b.push(0);
        assert!(Frame::decode(&b[LEN_PREFIX..]).is_err());
    }
}
