//! The continuous sampler: one task per node, one request in flight per node, requests served
//! in the order of their stamps (FIFO). A slow or stopped node never delays the others: its
//! requests queue behind it and come back as missing once they are too old to stamp, while
//! every other node is read on time.
//!
//! A sample is stamped with the time it was *asked for* (the dispatcher takes the stamp, so a
//! window boundary's samples share it exactly). A request that could not be sent, or answered,
//! within `late` of its stamp is recorded as missing with why: its snapshot time would be
//! unknown, and a sample stamped at the wrong time is worse than a gap.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use soak_gates::model::{Sample, SampleOutcome};
use soak_scenarios::NodeApi;
use soak_scenarios::sampler::sample_data_named;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::event::now_ms;

/// One sample asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleRequest {
    /// The stamp (unix ms) the sample will carry.
    pub at_ms: u64,
}

/// The sampler of one node.
pub struct NodeSampler {
    tx: mpsc::UnboundedSender<SampleRequest>,
    task: JoinHandle<()>,
}

/// How far behind its stamp a request may be sent or answered: the sample interval, at least
/// 2 s, at most the request timeout.
pub fn late_limit(sample_interval: Duration, request_timeout: Duration) -> Duration {
    sample_interval
        .max(Duration::from_secs(2))
        .min(request_timeout.max(Duration::from_secs(2)))
}

impl NodeSampler {
    /// Starts the sampler of node `index`; every request is answered through `deliver`, in
    /// stamp order.
    pub fn spawn<A: NodeApi + 'static>(
        nodes: Arc<Vec<A>>,
        index: usize,
        sample_interval: Duration,
        request_timeout: Duration,
        deliver: impl Fn(usize, Sample) + Send + 'static,
    ) -> NodeSampler {
        let (tx, mut rx) = mpsc::unbounded_channel::<SampleRequest>();
        let late = late_limit(sample_interval, request_timeout);
        let names: HashMap<String, String> = nodes
            .iter()
            .map(|n| (n.peer_id().to_owned(), n.name().to_owned()))
            .collect();
        let task = tokio::spawn(async move {
            let node = &nodes[index];
            while let Some(request) = rx.recv().await {
                let behind = now_ms().saturating_sub(request.at_ms);
                let outcome = if behind > late.as_millis() as u64 {
                    SampleOutcome::Missing {
                        error: format!(
                            "{}: not asked: still answering an earlier request ({behind} ms behind)",
                            node.name()
                        ),
                    }
                } else {
                    let budget = late.saturating_sub(Duration::from_millis(behind));
                    match tokio::time::timeout(budget, node.diagnostics()).await {
                        Err(_) => SampleOutcome::Missing {
                            error: format!(
                                "{}: no answer within {} ms of the stamp",
                                node.name(),
                                late.as_millis()
                            ),
                        },
                        Ok(Err(err)) => SampleOutcome::Missing {
                            error: err.to_string(),
                        },
                        Ok(Ok(d)) if d.identity.peer_id != node.peer_id() => {
                            SampleOutcome::Missing {
                                error: format!(
                                    "diagnostics came from peer {} instead of {}",
                                    d.identity.peer_id,
                                    node.peer_id()
                                ),
                            }
                        }
                        Ok(Ok(d)) => SampleOutcome::Ok(sample_data_named(d, &names)),
                    }
                };
                deliver(
                    index,
                    Sample {
                        at_ms: request.at_ms,
                        outcome,
                    },
                );
            }
        });
        NodeSampler { tx, task }
    }

    /// Asks for one sample stamped `request.at_ms`.
    pub fn request(&self, request: SampleRequest) {
        // The task only ends with the sampler.
        let _ = self.tx.send(request);
    }
}

impl Drop for NodeSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}
