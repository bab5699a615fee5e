//! Phase A (`baseline`): every ordered pair `i → j` sends one acknowledged direct message through
//! the admin APIs, and the orchestrator confirms each one arrived in `j`'s inbox exactly once.
//!
//! N nodes → N·(N−1) pairs; no size is hard-coded. Pairs run concurrently with a bound, in an
//! order that spreads load over senders (all pairs at offset 1, then offset 2, …). Each pair
//! carries a fresh random 16-byte request id (from the OS RNG, never the run seed: a repeated id
//! with the same payload would be deduplicated by the receiver and read as a miss). Receipt is
//! confirmed by paging each receiver's inbox once per window from a cursor kept across windows.

use std::collections::HashMap;

use base64::Engine;
use futures::StreamExt;
use soak_api::{DmOutcome, DmRequest, PageQuery};
use soak_gates::model::{MatrixSample, PairOutcome, PhaseAResult};

use crate::api::NodeApi;

/// Phase A settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhaseAConfig {
    /// Pairs in flight at once (at least 1).
    pub concurrency: usize,
    /// Payload size in bytes (at least 16: the request id is embedded).
    pub payload_bytes: usize,
    /// ACK timeout per attempt passed to the node (node default when `None`).
    pub ack_timeout_ms: Option<u64>,
    /// Largest fleet that runs the full N·(N−1) matrix every window; a bigger one runs a
    /// sampled matrix ([`sample`]).
    pub full_matrix_max: usize,
    /// Partners per node of a sampled matrix (`K`, at most N − 1).
    pub partners: usize,
    /// Seed of the sampled matrices' rotation (the run's seed).
    pub seed: u64,
    /// Warm-up windows: the rotation starts at the first judged window, so the judged windows
    /// cover every pair as soon as possible.
    pub warmup_windows: u32,
}

/// Default of `--full-matrix-max`.
pub const FULL_MATRIX_MAX: usize = 60;

impl Default for PhaseAConfig {
    fn default() -> Self {
        PhaseAConfig {
            concurrency: 32,
            payload_bytes: 64,
            ack_timeout_ms: Some(2_000),
            full_matrix_max: FULL_MATRIX_MAX,
            partners: FULL_MATRIX_MAX - 1,
            seed: 0,
            warmup_windows: 0,
        }
    }
}

/// The sampled matrix of window `window` for `n` nodes, or `None` when the fleet runs the full
/// matrix (`n ≤ full_matrix_max`, or `K ≥ n − 1`). Node `i` sends to `(i + offset) mod n` for
/// `K` offsets: a seeded permutation of `1..n` is cut into `rounds = ceil((n − 1) / K)` runs of
/// `K` (the last one wrapping to the start), and window `w` takes run
/// `(w − warm-up) mod rounds` — so every ordered pair is required once in every `rounds`
/// consecutive judged windows, and every node sends and receives exactly `K` DMs per window.
pub fn sample(n: usize, config: &PhaseAConfig, window: u32) -> Option<MatrixSample> {
    let k = config.partners.max(1);
    if n <= config.full_matrix_max.max(2) || k >= n.saturating_sub(1) {
        return None;
    }
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let partners = n - 1;
    let mut perm: Vec<u32> = (1..n as u32).collect();
    perm.shuffle(&mut rand::rngs::StdRng::seed_from_u64(
        config.seed ^ 0xa076_1d64_78bd_642f,
    ));
    let rounds = partners.div_ceil(k);
    let shift = (config.warmup_windows as usize) % rounds;
    let round = (window as usize + rounds - shift) % rounds;
    let offsets = (0..k).map(|t| perm[(round * k + t) % partners]).collect();
    Some(MatrixSample {
        partners: k as u32,
        nodes: n as u32,
        offsets,
        round: round as u32,
        rounds: rounds as u32,
    })
}

/// The pairs of a sampled matrix, spread over senders like [`pair_order`] (offset by offset).
pub fn sampled_pairs(n: usize, sample: &MatrixSample) -> Vec<(usize, usize)> {
    let mut pairs = Vec::with_capacity(n * sample.offsets.len());
    for &offset in &sample.offsets {
        for from in 0..n {
            pairs.push((from, (from + offset as usize) % n));
        }
    }
    pairs
}

/// Items asked for per inbox page.
const INBOX_PAGE: usize = 1_000;
/// Upper bound on inbox pages read per receiver per window, so a misbehaving node that never
/// ends its paging cannot hang the window.
const MAX_INBOX_PAGES: usize = 10_000;

/// Phase A state carried across windows: one inbox cursor per receiver.
#[derive(Debug, Clone, Default)]
pub struct PhaseA {
    cursors: HashMap<String, u64>,
}

/// How often each request id occurs in one inbox, and the cursor to continue from.
type InboxScan = Result<(HashMap<String, u32>, u64), String>;

/// One pair as sent, before receipt is confirmed.
struct Sent {
    from: usize,
    to: usize,
    request_id: String,
    outcome: String,
    acked: bool,
    latency_us: Option<u64>,
    attempts: u32,
    error: Option<String>,
}

/// The ordered pairs of an N-node matrix, spread over senders: offset 1 for every sender first,
/// then offset 2, and so on.
pub fn pair_order(n: usize) -> Vec<(usize, usize)> {
    let mut pairs = Vec::with_capacity(n.saturating_mul(n.saturating_sub(1)));
    for offset in 1..n {
        for from in 0..n {
            pairs.push((from, (from + offset) % n));
        }
    }
    pairs
}

fn wire_name(outcome: DmOutcome) -> String {
    // DmOutcome serializes as a plain snake_case string; fall back to Debug if that ever changes.
    serde_json::to_value(outcome)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{outcome:?}").to_lowercase())
}

impl PhaseA {
    /// Fresh state (no cursors yet: the first window pages each inbox from the start).
    pub fn new() -> Self {
        PhaseA::default()
    }

    /// Runs window `window`'s matrix over `nodes` — the full one, or the window's sample past
    /// `full_matrix_max` — and returns every pair's outcome.
    pub async fn run<A: NodeApi>(
        &mut self,
        nodes: &[A],
        config: PhaseAConfig,
        window: u32,
    ) -> PhaseAResult {
        let matrix = sample(nodes.len(), &config, window);
        let pairs = match &matrix {
            Some(m) => sampled_pairs(nodes.len(), m),
            None => pair_order(nodes.len()),
        };
        let payload_bytes = config.payload_bytes.max(16);
        let sent: Vec<Sent> = futures::stream::iter(pairs)
            .map(|(from, to)| send_pair(nodes, from, to, payload_bytes, config.ack_timeout_ms))
            .buffer_unordered(config.concurrency.max(1))
            .collect()
            .await;

        // Confirm receipt: page every receiver's inbox once, concurrently. (Owned inputs keep
        // the stream's closures free of borrowed tuples, so the future stays `Send`.)
        let mut acked_by_receiver: Vec<Vec<String>> = vec![Vec::new(); nodes.len()];
        let mut receivers: Vec<usize> = Vec::new();
        for pair in &sent {
            if !receivers.contains(&pair.to) {
                receivers.push(pair.to);
            }
            if pair.acked {
                acked_by_receiver[pair.to].push(pair.request_id.clone());
            }
        }
        let jobs: Vec<(usize, u64, Vec<String>)> = receivers
            .into_iter()
            .map(|to| {
                let cursor = self.cursors.get(nodes[to].name()).copied().unwrap_or(0);
                (to, cursor, std::mem::take(&mut acked_by_receiver[to]))
            })
            .collect();
        let confirmations: Vec<(usize, InboxScan)> = futures::stream::iter(jobs)
            .map(|(to, cursor, acked)| confirm_receiver(nodes, to, cursor, acked))
            .buffer_unordered(config.concurrency.max(1))
            .collect()
            .await;

        let mut counts_by_receiver: HashMap<usize, Result<HashMap<String, u32>, String>> =
            HashMap::new();
        for (to, result) in confirmations {
            match result {
                Ok((counts, next)) => {
                    self.cursors.insert(nodes[to].name().to_owned(), next);
                    counts_by_receiver.insert(to, Ok(counts));
                }
                Err(err) => {
                    counts_by_receiver.insert(to, Err(err));
                }
            }
        }

        // What the user saw: delivered only when the sender was told `acked` **and** the
        // receiver's inbox holds the message exactly once. A message that arrived while its
        // sender saw a timeout, busy or an error is a failed pair, and says so.
        let mut outcomes: Vec<PairOutcome> = sent
            .into_iter()
            .map(|pair| {
                let copies = match counts_by_receiver.get(&pair.to) {
                    Some(Ok(counts)) => Ok(counts.get(&pair.request_id).copied().unwrap_or(0)),
                    Some(Err(err)) => {
                        Err(format!("receipt not confirmed: inbox unreadable: {err}"))
                    }
                    None => Err("receipt not confirmed".to_owned()),
                };
                let (inbox_copies, error) = match (&copies, pair.acked) {
                    (Ok(1), true) => (Some(1), pair.error),
                    (Ok(0), true) => (
                        Some(0),
                        Some("acked but not found in the receiver's inbox".to_owned()),
                    ),
                    (Ok(n), true) => (
                        Some(*n),
                        Some(format!("delivered {n} times to the receiver's inbox")),
                    ),
                    (Ok(0), false) => (Some(0), pair.error),
                    (Ok(n), false) => (
                        Some(*n),
                        Some(format!(
                            "the sender saw `{}` but {n} {} arrived in the receiver's inbox{}",
                            pair.outcome,
                            if *n == 1 { "copy" } else { "copies" },
                            pair.error
                                .as_deref()
                                .map(|e| format!(" ({e})"))
                                .unwrap_or_default()
                        )),
                    ),
                    (Err(err), _) => (None, Some(err.clone())),
                };
                PairOutcome {
                    from: nodes[pair.from].name().to_owned(),
                    to: nodes[pair.to].name().to_owned(),
                    delivered: pair.acked && inbox_copies == Some(1),
                    outcome: pair.outcome,
                    inbox_copies,
                    latency_us: pair.latency_us,
                    attempts: pair.attempts,
                    error,
                }
            })
            .collect();
        outcomes.sort_by(|a, b| (&a.from, &a.to).cmp(&(&b.from, &b.to)));
        PhaseAResult {
            pairs: outcomes,
            sample: matrix,
        }
    }
}

async fn confirm_receiver<A: NodeApi>(
    nodes: &[A],
    to: usize,
    cursor: u64,
    acked: Vec<String>,
) -> (usize, InboxScan) {
    let node = &nodes[to];
    let mut result = read_inbox(node, cursor).await;
    // A receiver that restarted numbers its inbox from the start again: when an acked pair is
    // missing after the cursor, rescan from zero once.
    let missing_acked = match &result {
        Ok((counts, _)) => acked.iter().any(|id| !counts.contains_key(id)),
        Err(_) => false,
    };
    if cursor > 0 && missing_acked {
        result = read_inbox(node, 0).await;
    }
    (to, result)
}

async fn send_pair<A: NodeApi>(
    nodes: &[A],
    from: usize,
    to: usize,
    payload_bytes: usize,
    ack_timeout_ms: Option<u64>,
) -> Sent {
    let id: [u8; 16] = rand::random();
    let request_id = hex::encode(id);
    let mut payload = Vec::with_capacity(payload_bytes);
    payload.extend_from_slice(&id);
    payload.resize(payload_bytes, b'a');
    let request = DmRequest {
        to: nodes[to].peer_id().to_owned(),
        payload_b64: base64::engine::general_purpose::STANDARD.encode(&payload),
        request_id: Some(request_id.clone()),
        timeout_ms: ack_timeout_ms,
    };
    match nodes[from].send_dm(&request).await {
        Ok(response) => {
            let acked = response.outcome == DmOutcome::Acked;
            let mismatch = response.request_id != request_id;
            Sent {
                from,
                to,
                request_id,
                outcome: wire_name(response.outcome),
                acked,
                latency_us: acked.then_some(response.elapsed_us),
                attempts: response.attempts,
                error: if mismatch {
                    Some(format!(
                        "node answered with request id {}",
                        response.request_id
                    ))
                } else {
                    response.error
                },
            }
        }
        Err(err) => Sent {
            from,
            to,
            request_id,
            outcome: "error".to_owned(),
            acked: false,
            latency_us: None,
            attempts: 0,
            error: Some(err.to_string()),
        },
    }
}

/// Pages `node`'s inbox from `after` to the end; returns how often each request id occurs and
/// the cursor to continue from next time.
async fn read_inbox<A: NodeApi>(node: &A, after: u64) -> InboxScan {
    let mut counts: HashMap<String, u32> = HashMap::new();
    let mut cursor = after;
    for _ in 0..MAX_INBOX_PAGES {
        let page = node
            .inbox(PageQuery {
                after: Some(cursor),
                limit: Some(INBOX_PAGE),
            })
            .await
            .map_err(|err| err.to_string())?;
        if page.items.is_empty() {
            return Ok((counts, cursor.max(page.next)));
        }
        let mut last = cursor;
        for item in &page.items {
            *counts.entry(item.request_id.clone()).or_default() += 1;
            last = last.max(item.seq);
        }
        let next = page.next.max(last);
        if next <= cursor {
            // The node did not advance its cursor: stop rather than loop forever.
            return Ok((counts, cursor));
        }
        cursor = next;
    }
    Err(format!(
        "inbox paging did not end after {MAX_INBOX_PAGES} pages"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakeMesh, Fault};

    #[test]
    fn pair_order_covers_every_ordered_pair_once() {
        for n in 0..9 {
            let pairs = pair_order(n);
            assert_eq!(pairs.len(), n * n.saturating_sub(1));
            let mut unique = pairs.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), pairs.len());
            assert!(pairs.iter().all(|(a, b)| a != b && *a < n && *b < n));
        }
    }

    fn sampled(k: usize, seed: u64, warmup: u32) -> PhaseAConfig {
        PhaseAConfig {
            full_matrix_max: 10,
            partners: k,
            seed,
            warmup_windows: warmup,
            ..PhaseAConfig::default()
        }
    }

    #[test]
    fn small_fleets_run_the_full_matrix() {
        assert!(sample(10, &sampled(3, 1, 0), 0).is_none());
        // K ≥ N − 1 is the full matrix too.
        assert!(sample(12, &sampled(11, 1, 0), 0).is_none());
        assert!(sample(11, &sampled(3, 1, 0), 0).is_some());
    }

    proptest::proptest! {
        /// Every window each node sends to K distinct partners and receives from K, and the
        /// judged windows `warmup .. warmup + rounds` require every ordered pair exactly once.
        #[test]
        fn rotation_covers_every_ordered_pair_once_per_round(
            n in 11usize..80,
            k in 1usize..30,
            seed in proptest::prelude::any::<u64>(),
            warmup in 0u32..5,
        ) {
            let config = sampled(k, seed, warmup);
            let Some(first) = sample(n, &config, warmup) else {
                proptest::prop_assert!(k >= n - 1);
                return Ok(());
            };
            proptest::prop_assert_eq!(first.round, 0);
            let rounds = first.rounds;
            proptest::prop_assert_eq!(rounds as usize, (n - 1).div_ceil(k));
            let mut seen = vec![0u32; n * n];
            for w in warmup..warmup + rounds {
                let m = sample(n, &config, w).expect("sampled");
                let pairs = sampled_pairs(n, &m);
                proptest::prop_assert_eq!(pairs.len(), n * k);
                let mut sends = vec![0usize; n];
                let mut receives = vec![0usize; n];
                let mut unique = pairs.clone();
                unique.sort_unstable();
                unique.dedup();
                proptest::prop_assert_eq!(unique.len(), pairs.len());
                for &(from, to) in &pairs {
                    proptest::prop_assert!(from != to);
                    proptest::prop_assert!(m.requires(from, to, n));
                    sends[from] += 1;
                    receives[to] += 1;
                    seen[from * n + to] += 1;
                }
                proptest::prop_assert!(sends.iter().chain(&receives).all(|&c| c == k));
            }
            for from in 0..n {
                for to in 0..n {
                    if from != to {
                        proptest::prop_assert!(seen[from * n + to] >= 1, "{from}->{to} never required");
                    }
                }
            }
            // Exactly once unless the last run wraps around to the start of the permutation.
            if (n - 1) % k == 0 {
                proptest::prop_assert!(seen.iter().all(|&c| c <= 1));
            }
        }
    }

    #[tokio::test]
    async fn sampled_matrix_sends_only_the_windows_pairs() {
        let mesh = FakeMesh::new(12);
        let config = PhaseAConfig {
            full_matrix_max: 10,
            partners: 3,
            ..PhaseAConfig::default()
        };
        let result = PhaseA::new().run(&mesh.nodes(), config, 2).await;
        let sample = result
            .sample
            .clone()
            .expect("sampled past --full-matrix-max");
        assert_eq!(sample.describe(), "sampled 3 of 11 per node");
        assert_eq!(result.pairs.len(), 36);
        assert!(result.pairs.iter().all(|p| p.delivered));
    }

    #[tokio::test]
    async fn healthy_mesh_delivers_every_pair_exactly_once() {
        let mesh = FakeMesh::new(6);
        let nodes = mesh.nodes();
        let mut phase = PhaseA::new();
        for _ in 0..3 {
            let result = phase.run(&nodes, PhaseAConfig::default(), 0).await;
            assert_eq!(result.pairs.len(), 30);
            assert!(
                result
                    .pairs
                    .iter()
                    .all(|p| p.delivered && p.outcome == "acked")
            );
            assert!(result.pairs.iter().all(|p| p.latency_us.is_some()));
        }
        // Cursors advanced: each window read only its own messages.
        assert_eq!(mesh.inbox_reads_from_zero(), 6);
    }

    #[tokio::test]
    async fn dead_receiver_fails_only_its_pairs() {
        let mesh = FakeMesh::new(5);
        mesh.set_fault(2, Fault::Dead);
        let result = PhaseA::new()
            .run(&mesh.nodes(), PhaseAConfig::default(), 0)
            .await;
        assert_eq!(result.pairs.len(), 20);
        for pair in &result.pairs {
            let touches = pair.from == "node-2" || pair.to == "node-2";
            assert_eq!(pair.delivered, !touches, "{pair:?}");
        }
    }

    #[tokio::test]
    async fn ack_without_inbox_entry_is_not_delivered() {
        let mesh = FakeMesh::new(3);
        mesh.set_fault(1, Fault::AckButDrop);
        let result = PhaseA::new()
            .run(&mesh.nodes(), PhaseAConfig::default(), 0)
            .await;
        let into_1: Vec<_> = result.pairs.iter().filter(|p| p.to == "node-1").collect();
        assert_eq!(into_1.len(), 2);
        assert!(
            into_1
                .iter()
                .all(|p| !p.delivered && p.outcome == "acked" && p.inbox_copies == Some(0))
        );
        assert!(
            into_1
                .iter()
                .all(|p| p.error.as_deref().unwrap_or("").contains("not found"))
        );
    }

    /// The user's view: the sender was told the DM timed out, so a copy that arrived anyway
    /// does not make the pair delivered ("29 acked, 30 received" is not a full matrix).
    #[tokio::test]
    async fn timeout_whose_message_arrived_is_a_failed_pair() {
        let mesh = FakeMesh::new(3);
        mesh.set_fault(2, Fault::AckLost);
        let result = PhaseA::new()
            .run(&mesh.nodes(), PhaseAConfig::default(), 0)
            .await;
        let into_2: Vec<_> = result.pairs.iter().filter(|p| p.to == "node-2").collect();
        assert_eq!(into_2.len(), 2);
        for pair in &into_2 {
            assert_eq!(pair.outcome, "timeout");
            assert_eq!(pair.inbox_copies, Some(1), "{pair:?}");
            assert!(!pair.delivered && !pair.is_delivered());
            let error = pair.error.as_deref().unwrap_or("");
            assert!(error.contains("but 1 copy arrived"), "{error}");
        }
        let others: Vec<_> = result.pairs.iter().filter(|p| p.to != "node-2").collect();
        assert!(
            others
                .iter()
                .all(|p| p.delivered && p.inbox_copies == Some(1))
        );
    }

    #[tokio::test]
    async fn double_delivery_is_caught() {
        let mesh = FakeMesh::new(3);
        mesh.set_fault(0, Fault::DeliverTwice);
        let result = PhaseA::new()
            .run(&mesh.nodes(), PhaseAConfig::default(), 0)
            .await;
        let into_0: Vec<_> = result.pairs.iter().filter(|p| p.to == "node-0").collect();
        assert!(
            into_0
                .iter()
                .all(|p| !p.delivered && p.inbox_copies == Some(2))
        );
        assert!(
            into_0
                .iter()
                .all(|p| p.error.as_deref().unwrap_or("").contains("2 times"))
        );
    }

    #[tokio::test]
    async fn restarted_receiver_is_rescanned_from_zero() {
        let mesh = FakeMesh::new(3);
        let nodes = mesh.nodes();
        let mut phase = PhaseA::new();
        let first = phase.run(&nodes, PhaseAConfig::default(), 0).await;
        assert!(first.pairs.iter().all(|p| p.delivered));
        mesh.restart(1);
        let second = phase.run(&nodes, PhaseAConfig::default(), 0).await;
        assert!(second.pairs.iter().all(|p| p.delivered), "{second:?}");
    }

    #[tokio::test]
    async fn concurrency_one_still_completes_the_matrix() {
        let mesh = FakeMesh::new(4);
        let config = PhaseAConfig {
            concurrency: 1,
            ..PhaseAConfig::default()
        };
        let result = PhaseA::new().run(&mesh.nodes(), config, 0).await;
        assert_eq!(result.pairs.iter().filter(|p| p.delivered).count(), 12);
    }
}
