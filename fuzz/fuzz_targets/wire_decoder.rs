//! The node's wire decoder: any bytes from the network as a frame body (and as the body of a
//! `Frame::Gossip`). Never a panic; a frame that decodes re-encodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use soak_node::proto::wire::{Frame, LEN_PREFIX};

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = Frame::decode(data) {
        let encoded = frame.encode();
        let again = Frame::decode(&encoded[LEN_PREFIX..]).expect("a decoded frame re-decodes");
        assert_eq!(again, frame);
        if let Frame::Gossip(body) = &frame {
            let _ = soak_node::pubsub::decode(body);
        }
    }
    if let Some(message) = soak_node::pubsub::decode(data) {
        let encoded = soak_node::pubsub::encode(&message).expect("a decoded message encodes");
        assert_eq!(soak_node::pubsub::decode(&encoded), Some(message));
    }
});
