//! Probes: the measurements faults are proven with — acknowledged DM round trips between two
//! nodes, and whether a node's process answers at all.

use std::time::{Duration, Instant};

use base64::Engine;
use serde::Serialize;
use soak_api::{DmOutcome, DmRequest};
use soak_gates::model::Check;

use super::select::Targets;
use crate::api::NodeApi;

/// Most probe pairs per check (a sample, seeded by fleet order, of the pairs concerned).
pub const MAX_PROBES: usize = 12;

/// Probe pairs `(from, to)` of fleet indices.
pub type Pairs = Vec<(usize, usize)>;

/// At most `max` items of `items`, evenly spread (deterministic).
pub fn spread<T: Clone>(items: Vec<T>, max: usize) -> Vec<T> {
    if items.len() <= max {
        return items;
    }
    let step = items.len() as f64 / max as f64;
    (0..max)
        .map(|k| items[((k as f64) * step) as usize].clone())
        .collect()
}

/// Probe pairs of a partition over the fleet `names` (fleet indices `(from, to)`): a sample of
/// the cut pairs, a sample of the pairs the cut must not touch, and a sample of every pair it
/// disturbs (the cut pairs and, one-way, their reverse: what must deliver again after it heals).
pub fn partition_pairs(names: &[String], targets: &Targets) -> (Pairs, Pairs, Pairs) {
    let idx = |name: &str| names.iter().position(|n| n == name);
    let cut: Vec<(usize, usize)> = targets
        .cut_pairs()
        .iter()
        .filter_map(|(a, b)| Some((idx(a)?, idx(b)?)))
        .collect();
    let disturbed = targets.disturbed_pairs();
    let mut uncut = Vec::new();
    for (i, a) in names.iter().enumerate() {
        for (j, b) in names.iter().enumerate() {
            if i != j && !disturbed.iter().any(|(x, y)| x == a && y == b) {
                uncut.push((i, j));
            }
        }
    }
    let heal = disturbed
        .iter()
        .filter_map(|(a, b)| Some((idx(a)?, idx(b)?)))
        .collect();
    (
        spread(cut, MAX_PROBES),
        spread(uncut, MAX_PROBES),
        spread(heal, MAX_PROBES),
    )
}

/// One probe DM `from → to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DmProbe {
    /// Sender.
    pub from: String,
    /// Receiver.
    pub to: String,
    /// Acknowledged.
    pub acked: bool,
    /// Node-measured send-to-ACK time, µs (acked only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_us: Option<u64>,
    /// Attempts the sender made.
    pub attempts: u32,
    /// Outcome (`acked`, `timeout`, …) or the API error.
    pub outcome: String,
}

/// Sends one probe DM `from → to` with a fresh request id and an ACK timeout of `ack_timeout`
/// per attempt.
pub async fn dm<A: NodeApi>(from: &A, to: &A, ack_timeout: Duration) -> DmProbe {
    dm_payload(from, to, b"soak-probe", ack_timeout).await
}

/// Sends one DM `from → to` carrying `payload` (throughput probes send large ones).
pub async fn dm_payload<A: NodeApi>(
    from: &A,
    to: &A,
    payload: &[u8],
    ack_timeout: Duration,
) -> DmProbe {
    let request = DmRequest {
        to: to.peer_id().to_owned(),
        payload_b64: base64::engine::general_purpose::STANDARD.encode(payload),
        request_id: Some(hex::encode(rand::random::<[u8; 16]>())),
        timeout_ms: Some(
            u64::try_from(ack_timeout.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
        ),
    };
    match from.send_dm(&request).await {
        Ok(r) => DmProbe {
            from: from.name().to_owned(),
            to: to.name().to_owned(),
            acked: r.outcome == DmOutcome::Acked,
            rtt_us: (r.outcome == DmOutcome::Acked).then_some(r.elapsed_us),
            attempts: r.attempts,
            outcome: serde_json::to_value(r.outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| "unknown".into()),
        },
        Err(err) => DmProbe {
            from: from.name().to_owned(),
            to: to.name().to_owned(),
            acked: false,
            rtt_us: None,
            attempts: 0,
            outcome: format!("error: {err}"),
        },
    }
}

/// Probes every pair of `pairs` (indices into `nodes`) concurrently.
pub async fn dm_pairs<A: NodeApi>(
    nodes: &[A],
    pairs: &[(usize, usize)],
    ack_timeout: Duration,
) -> Vec<DmProbe> {
    futures::future::join_all(
        pairs
            .iter()
            .map(|&(a, b)| dm(&nodes[a], &nodes[b], ack_timeout)),
    )
    .await
}

/// Why a partition's probes do not show the cut (`None`: they do): no cut pair to probe, a DM
/// that crossed the cut, or one the cut must not touch that failed. `across` are the probes
/// over the cut, `within` those inside each side; `evidence` goes into the check.
pub fn cut_not_shown(
    across: &[DmProbe],
    within: &[DmProbe],
    evidence: &serde_json::Value,
) -> Option<Check> {
    let crossed: Vec<String> = across
        .iter()
        .filter(|p| p.acked)
        .map(|p| format!("{}→{}", p.from, p.to))
        .collect();
    let blocked: Vec<String> = within
        .iter()
        .filter(|p| !p.acked)
        .map(|p| format!("{}→{} ({})", p.from, p.to, p.outcome))
        .collect();
    let summary = if across.is_empty() {
        "no cut pair to probe".to_owned()
    } else if !crossed.is_empty() {
        format!("DMs crossed the cut: {}", crossed.join(", "))
    } else if !blocked.is_empty() {
        format!("DMs the cut must not touch failed: {}", blocked.join(", "))
    } else {
        return None;
    };
    Some(Check::NotShown {
        summary,
        evidence: evidence.clone(),
    })
}

/// A pause is shown only when every target was probed and none still answers; a check that
/// probed nobody (no target found among the nodes) shows nothing. `answering` are the targets
/// still answering (or not stopped), `evidence` one entry per probed target.
pub fn paused_check(
    targets: &[String],
    answering: &[String],
    evidence: Vec<serde_json::Value>,
) -> Check {
    if evidence.is_empty() {
        Check::NotShown {
            summary: format!("no target of the pause was probed ({})", targets.join(", ")),
            evidence: serde_json::json!(evidence),
        }
    } else if answering.is_empty() {
        Check::Shown {
            summary: format!("{} stopped: /healthz does not answer", targets.join(", ")),
            evidence: serde_json::json!(evidence),
        }
    } else {
        Check::NotShown {
            summary: format!("still answering: {}", answering.join(", ")),
            evidence: serde_json::json!(evidence),
        }
    }
}

/// Median round trip of the acknowledged probes, µs.
pub fn median_rtt_us(probes: &[DmProbe]) -> Option<u64> {
    let mut rtts: Vec<u64> = probes.iter().filter_map(|p| p.rtt_us).collect();
    rtts.sort_unstable();
    rtts.get(rtts.len() / 2).copied()
}

/// Whether `node` answers `/healthz` within `timeout`, and how long it took.
pub async fn answers<A: NodeApi>(node: &A, timeout: Duration) -> (bool, Duration) {
    let started = Instant::now();
    let ok = node.healthz(timeout).await.is_ok();
    (ok, started.elapsed())
}

/// Splits `pairs` (indices into `nodes`) into those both of whose nodes answer `/healthz`
/// within `timeout` and the names of the nodes that do not. A probe from or to a node that is
/// down (killed, stopped by someone else) says nothing about a fault: its pairs are left out
/// of a clean check, and a check left with no pair proves nothing.
pub async fn answering_pairs<A: NodeApi>(
    nodes: &[A],
    pairs: &[(usize, usize)],
    timeout: Duration,
) -> (Vec<(usize, usize)>, Vec<String>) {
    let involved: std::collections::BTreeSet<usize> =
        pairs.iter().flat_map(|&(a, b)| [a, b]).collect();
    let answers = futures::future::join_all(
        involved
            .iter()
            .map(|&i| async move { (i, answers(&nodes[i], timeout).await.0) }),
    )
    .await;
    let down: std::collections::BTreeSet<usize> = answers
        .into_iter()
        .filter(|(_, ok)| !ok)
        .map(|(i, _)| i)
        .collect();
    let kept = pairs
        .iter()
        .copied()
        .filter(|(a, b)| !down.contains(a) && !down.contains(b))
        .collect();
    (
        kept,
        down.iter().map(|&i| nodes[i].name().to_owned()).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_pause_that_probed_no_target_is_not_shown() {
        let check = paused_check(&names(&["node-3"]), &[], Vec::new());
        let Check::NotShown { summary, .. } = check else {
            panic!("a pause with no probed target must not be shown: {check:?}");
        };
        assert!(summary.contains("node-3"), "{summary}");
    }

    #[test]
    fn a_pause_is_shown_only_when_no_probed_target_answers() {
        let evidence = vec![serde_json::json!({"node": "node-3", "healthz_answered": false})];
        assert!(matches!(
            paused_check(&names(&["node-3"]), &[], evidence.clone()),
            Check::Shown { .. }
        ));
        let check = paused_check(&names(&["node-3"]), &names(&["node-3"]), evidence);
        let Check::NotShown { summary, .. } = check else {
            panic!("a target still answering must not be shown paused: {check:?}");
        };
        assert!(summary.contains("still answering: node-3"), "{summary}");
    }
}
