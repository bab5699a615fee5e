//! `idle`: the runner sends no workload traffic for the hold (only keep-alives and the nodes'
//! own maintenance cross the overlay), then every Phase A pair must succeed on its first
//! attempt. The idle period is proven by the nodes' own counters: no DM was sent and nothing
//! was published anywhere while it lasted.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{Value, json};
use soak_api::counters::{DM_SENT, GOSSIP_PUBLISHED};
use soak_gates::model::{Check, FaultEvidence, FirstAttemptCheck};

use super::nemesis::{Fault, FaultCtx, FaultError, FaultFuture, WorkloadsOutcome};
use super::spec::FaultSpec;
use crate::api::NodeApi;

/// The idle fault.
pub struct IdleFault {
    spec: FaultSpec,
    before: Mutex<Option<BTreeMap<String, (u64, u64)>>>,
}

impl IdleFault {
    /// An idle period of `spec.hold`.
    pub fn new(spec: FaultSpec) -> Self {
        IdleFault {
            spec,
            before: Mutex::new(None),
        }
    }
}

/// `dm_sent_total` and `gossip_published_total` of every node (None if any is unreadable).
async fn traffic<A: NodeApi>(cx: &FaultCtx<A>) -> Option<BTreeMap<String, (u64, u64)>> {
    let reads = futures::future::join_all(cx.nodes.iter().map(|n| n.diagnostics())).await;
    let mut out = BTreeMap::new();
    for (node, read) in cx.nodes.iter().zip(reads) {
        let d = read.ok()?;
        let sent = d.counters.get(DM_SENT).copied().unwrap_or(0);
        let published = d.counters.get(GOSSIP_PUBLISHED).copied().unwrap_or(0);
        out.insert(node.name().to_owned(), (sent, published));
    }
    Some(out)
}

impl<A: NodeApi + 'static> Fault<A> for IdleFault {
    fn apply<'a>(&'a self, cx: &'a FaultCtx<A>) -> FaultFuture<'a, Result<Value, FaultError>> {
        Box::pin(async move {
            let before = traffic(cx).await;
            if let Ok(mut b) = self.before.lock() {
                *b = before;
            }
            Ok(json!({ "idle_ms": self.spec.hold.as_millis() as u64 }))
        })
    }

    fn verify_effective<'a>(&'a self, cx: &'a FaultCtx<A>) -> FaultFuture<'a, Check> {
        Box::pin(async move {
            // The idle period is the fault: hold it here, then show nothing was sent.
            tokio::time::sleep(self.spec.hold).await;
            let before = self.before.lock().ok().and_then(|b| b.clone());
            let after = traffic(cx).await;
            let (Some(before), Some(after)) = (before, after) else {
                return Check::NotChecked {
                    reason: "a node's counters could not be read before or after the idle period"
                        .into(),
                };
            };
            let busy: Vec<String> = after
                .iter()
                .filter_map(|(node, (sent, published))| {
                    let (s0, p0) = before.get(node).copied().unwrap_or((0, 0));
                    (*sent > s0 || *published > p0).then(|| {
                        format!(
                            "{node} +{} DMs +{} publishes",
                            sent.saturating_sub(s0),
                            published.saturating_sub(p0)
                        )
                    })
                })
                .collect();
            let evidence = json!({ "before": before, "after": after });
            if busy.is_empty() {
                Check::Shown {
                    summary: format!(
                        "no DM sent and nothing published on any node for {} s",
                        self.spec.hold.as_secs()
                    ),
                    evidence,
                }
            } else {
                Check::NotShown {
                    summary: format!("traffic during the idle period: {}", busy.join(", ")),
                    evidence,
                }
            }
        })
    }

    fn revert<'a>(&'a self, _cx: &'a FaultCtx<A>) -> FaultFuture<'a, Result<Value, FaultError>> {
        Box::pin(async { Ok(json!({ "undo": "nothing: the runner sends again" })) })
    }

    fn verify_clean<'a>(&'a self, _cx: &'a FaultCtx<A>) -> FaultFuture<'a, Check> {
        Box::pin(async {
            Check::Shown {
                summary: "nothing was applied to any node".into(),
                evidence: Value::Null,
            }
        })
    }

    fn conclude<'a>(
        &'a self,
        _cx: &'a FaultCtx<A>,
        outcome: &'a WorkloadsOutcome,
        evidence: &'a mut FaultEvidence,
    ) -> FaultFuture<'a, ()> {
        Box::pin(async move {
            evidence.first_attempt = outcome.phase_a.as_ref().map(|pa| {
                let retried: Vec<String> = pa
                    .pairs
                    .iter()
                    .filter(|p| !(p.delivered && p.outcome == "acked" && p.attempts == 1))
                    .map(|p| format!("{}→{}", p.from, p.to))
                    .collect();
                FirstAttemptCheck {
                    pairs: pa.pairs.len() as u64,
                    first_try: (pa.pairs.len() - retried.len()) as u64,
                    retried,
                }
            });
        })
    }
}
