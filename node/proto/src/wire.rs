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
        ];
        for f in frames {
            let bytes = f.encode();
            let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
            assert_eq!(len, bytes.len() - LEN_PREFIX);
            assert_eq!(Frame::decode(&bytes[LEN_PREFIX..]).unwrap(), f);
        }
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
