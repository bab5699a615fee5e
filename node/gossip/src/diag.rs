//! Diagnostic snapshots, shaped to map onto the admin API types in `soak_api`.

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{proto::TopicId, score::Score, stats::Counters};

/// Sizes of one topic's bounded structures (all capped by [`crate::Config`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sizes {
    /// Active view.
    pub active: usize,
    /// Passive view.
    pub passive: usize,
    /// Eager push set.
    pub eager: usize,
    /// Lazy push set.
    pub lazy: usize,
    /// Cached messages.
    pub cache: usize,
    /// Tracked (origin, epoch) streams.
    pub streams: usize,
    /// Announced-but-missing messages.
    pub missing: usize,
    /// Score entries.
    pub scores: usize,
    /// Suppression entries (active or remembered strikes).
    pub suppressions: usize,
    /// Queued IHAVE entries.
    pub ihave_queued: usize,
    /// Outstanding GRAFT / IWANT requests kept for round-trip samples (≤ 2 · `missing_cap`).
    pub requests: usize,
    /// Repaired messages whose tree copy may still come (a late tree-lag sample; ≤
    /// `missing_cap`).
    pub repaired: usize,
}

/// Score of one peer on one topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerScoreSnapshot<PI> {
    /// The peer.
    pub peer: PI,
    /// Total score (decayed to the snapshot time).
    pub score: f64,
    /// The components.
    pub components: Score,
}

/// One suppressed (topic, peer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuppressionSnapshot<PI> {
    /// The peer.
    pub peer: PI,
    /// Time left.
    pub remaining: Duration,
    /// Strikes in a row.
    pub strikes: u32,
    /// Why it is suppressed.
    #[serde(default)]
    pub cause: crate::score::Cause,
}

/// Diagnostic snapshot of one topic on one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicSnapshot<PI> {
    /// The topic.
    pub topic: TopicId,
    /// Active view.
    pub active: Vec<PI>,
    /// Passive view.
    pub passive: Vec<PI>,
    /// Eager push peers.
    pub eager: Vec<PI>,
    /// Lazy push peers.
    pub lazy: Vec<PI>,
    /// Scores of active-view peers (and of suppressed ones).
    pub scores: Vec<PeerScoreSnapshot<PI>>,
    /// Currently suppressed peers.
    pub suppressed: Vec<SuppressionSnapshot<PI>>,
    /// Known (topic, peer) pairs: active ∪ passive.
    pub known_peers: usize,
    /// Structure sizes.
    pub sizes: Sizes,
    /// Counters of this topic.
    pub counters: Counters,
}

impl<PI> TopicSnapshot<PI> {
    /// Converts to the admin API shape, rendering peer ids with `fmt` (e.g. hex).
    pub fn to_api(&self, fmt: impl Fn(&PI) -> String) -> soak_api::TopicDiagnostics {
        soak_api::TopicDiagnostics {
            topic: self.topic.to_string(),
            eager: self.eager.iter().map(&fmt).collect(),
            lazy: self.lazy.iter().map(&fmt).collect(),
            scores: self
                .scores
                .iter()
                .map(|s| soak_api::PeerScore {
                    peer_id: fmt(&s.peer),
                    score: s.score,
                    components: s
                        .components
                        .components()
                        .iter()
                        .map(|(k, v)| ((*k).to_string(), *v))
                        .collect::<BTreeMap<_, _>>(),
                })
                .collect(),
            suppressed: self
                .suppressed
                .iter()
                .map(|s| soak_api::Suppression {
                    peer_id: fmt(&s.peer),
                    remaining_ms: u64::try_from(s.remaining.as_millis()).unwrap_or(u64::MAX),
                    strikes: s.strikes,
                    cause: Some(s.cause.as_str().to_owned()),
                })
                .collect(),
        }
    }
}
