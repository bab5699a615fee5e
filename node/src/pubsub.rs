//! The stall table behind `POST /v1/topics/{topic}/stall` (read by the dispatcher workers,
//! written by the admin API); the pure pub/sub glue lives in `soak_proto::pubsub` and is
//! re-exported here.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use soak_gossip::TopicId;

pub use soak_proto::pubsub::*;

/// Longest accepted stall.
pub const MAX_STALL: Duration = Duration::from_secs(60);

/// Topics whose delivery path is stalled until a deadline (`POST /v1/topics/{topic}/stall`).
/// Read by the dispatcher workers for every gossip frame, written by the admin API.
#[derive(Debug, Default)]
pub struct Stalls {
    map: Mutex<HashMap<TopicId, Instant>>,
}

impl Stalls {
    /// Stall `topic` until `now + for_`; zero lifts a stall.
    pub fn set(&self, topic: TopicId, for_: Duration, now: Instant) {
        if let Ok(mut m) = self.map.lock() {
            m.retain(|_, until| *until > now);
            if for_.is_zero() {
                m.remove(&topic);
            } else if m.len() < MAX_TOPICS || m.contains_key(&topic) {
                m.insert(topic, now + for_.min(MAX_STALL));
            }
        }
    }

    /// Until when `topic` is stalled, if it is.
    pub fn until(&self, topic: &TopicId, now: Instant) -> Option<Instant> {
        let m = self.map.lock().ok()?;
        m.get(topic).copied().filter(|u| *u > now)
    }

    /// Remaining stall of every stalled topic.
    pub fn list(&self, now: Instant) -> Vec<(TopicId, Duration)> {
        self.map.lock().map_or_else(
            |_| Vec::new(),
            |m| {
                m.iter()
                    .filter(|(_, u)| **u > now)
                    .map(|(t, u)| (t.clone(), u.saturating_duration_since(now)))
                    .collect()
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalls_expire() {
        let t0 = Instant::now();
        let st = Stalls::default();
        let t = TopicId::new("x").unwrap();
        st.set(t.clone(), Duration::from_millis(100), t0);
        assert!(st.until(&t, t0).is_some());
        assert!(st.until(&t, t0 + Duration::from_millis(100)).is_none());
        st.set(t.clone(), Duration::from_secs(3600), t0);
        assert_eq!(st.list(t0)[0].1, MAX_STALL);
        st.set(t.clone(), Duration::ZERO, t0);
        assert!(st.until(&t, t0).is_none());
    }
}
