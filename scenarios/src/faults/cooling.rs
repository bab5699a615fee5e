//! The cooling check of slow-peer faults: while the fault holds, do the target's neighbours
//! suppress (cool) it, and after the revert, do they recover it? Observed on a topic of the
//! fault's own that lives through the fault and its recovery (a fanout burst's topic is gone
//! too soon), with a steady trickle of messages from a neighbour and 2 Hz reads of every
//! neighbour's topic diagnostics.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use soak_api::PublishRequest;
use soak_gates::model::CoolingCheck;
use tokio::task::JoinHandle;

use super::nemesis::{FaultCtx, FaultError, now_ms};
use super::select::Targets;
use crate::api::NodeApi;

/// How long after the revert the monitor waits for the recovery.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(60);
/// Hard cap on the monitor's life, whatever happens to the window.
const MAX_LIFE: Duration = Duration::from_secs(600);
/// Publish period of the trickle.
const PUBLISH_EVERY: Duration = Duration::from_millis(50);
/// Read period of the neighbours' diagnostics.
const POLL_EVERY: Duration = Duration::from_millis(500);

/// One read: when, and which neighbours suppressed a target.
#[derive(Debug, Clone)]
struct Observation {
    at_ms: u64,
    suppressing: Vec<String>,
    readable: bool,
}

/// A running cooling monitor (stops, and unsubscribes the topic, on [`finish`] or drop).
///
/// [`finish`]: CoolingMonitor::finish
pub struct CoolingMonitor {
    topic: String,
    seen: Arc<Mutex<Vec<Observation>>>,
    task: Option<JoinHandle<()>>,
    unsubscribe: Option<Box<dyn FnOnce() + Send>>,
}

impl CoolingMonitor {
    /// Subscribes every node to the fault's topic and starts the trickle and the reads.
    pub async fn start<A: NodeApi + 'static>(
        cx: &FaultCtx<A>,
        targets: &Targets,
        prefix: &str,
    ) -> Result<CoolingMonitor, FaultError> {
        let topic: String = format!("cool-{prefix}")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let nodes = Arc::clone(&cx.nodes);
        for node in nodes.iter() {
            node.subscribe(&topic).await?;
        }
        let target_ids: Vec<String> = cx
            .indices(&targets.nodes)
            .into_iter()
            .map(|i| nodes[i].peer_id().to_owned())
            .collect();
        let target_idx = cx.indices(&targets.nodes);
        let neighbours: Vec<usize> = (0..nodes.len())
            .filter(|i| !target_idx.contains(i))
            .collect();
        let Some(&publisher) = neighbours.first() else {
            return Err(FaultError::Other("no neighbour to publish from".into()));
        };
        let seen = Arc::new(Mutex::new(Vec::new()));
        let task = {
            let (nodes, topic, seen) = (Arc::clone(&nodes), topic.clone(), Arc::clone(&seen));
            tokio::spawn(async move {
                let started = tokio::time::Instant::now();
                let mut publish = tokio::time::interval(PUBLISH_EVERY);
                let mut poll = tokio::time::interval(POLL_EVERY);
                let payload = base64::engine::general_purpose::STANDARD.encode([0u8; 64]);
                while started.elapsed() < MAX_LIFE {
                    tokio::select! {
                        _ = publish.tick() => {
                            let request = PublishRequest { payload_b64: payload.clone() };
                            let _ = nodes[publisher].publish(&topic, &request).await;
                        }
                        _ = poll.tick() => {
                            let mut suppressing = Vec::new();
                            let mut readable = true;
                            for &n in &neighbours {
                                match nodes[n].diagnostics().await {
                                    Ok(d) => {
                                        let cools = d.topics.iter().filter(|t| t.topic == topic).any(|t| {
                                            t.suppressed.iter().any(|s| target_ids.contains(&s.peer_id))
                                        });
                                        if cools {
                                            suppressing.push(nodes[n].name().to_owned());
                                        }
                                    }
                                    Err(_) => readable = false,
                                }
                            }
                            if let Ok(mut seen) = seen.lock() {
                                seen.push(Observation { at_ms: now_ms(), suppressing, readable });
                            }
                        }
                    }
                }
            })
        };
        let unsubscribe: Box<dyn FnOnce() + Send> = {
            let (nodes, topic) = (Arc::clone(&nodes), topic.clone());
            Box::new(move || {
                if let Ok(handle) = tokio::runtime::Handle::try_current() {
                    handle.spawn(async move {
                        for node in nodes.iter() {
                            let _ = node.unsubscribe(&topic).await;
                        }
                    });
                }
            })
        };
        Ok(CoolingMonitor {
            topic,
            seen,
            task: Some(task),
            unsubscribe: Some(unsubscribe),
        })
    }

    /// Waits (bounded) for the recovery after `reverted_at_ms`, stops, and judges what it saw.
    pub async fn finish(mut self, reverted_at_ms: u64) -> CoolingCheck {
        let deadline = tokio::time::Instant::now() + RECOVERY_DEADLINE;
        let recovered_now = |seen: &[Observation]| {
            let cooled = seen
                .iter()
                .any(|o| o.at_ms <= reverted_at_ms && !o.suppressing.is_empty());
            cooled
                && seen
                    .iter()
                    .any(|o| o.at_ms > reverted_at_ms && o.readable && o.suppressing.is_empty())
        };
        loop {
            let done = self.seen.lock().map(|s| recovered_now(&s)).unwrap_or(true);
            if done || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
        self.stop();
        let seen = self.seen.lock().map(|s| s.clone()).unwrap_or_default();
        judge(&self.topic, &seen, reverted_at_ms)
    }

    fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(unsubscribe) = self.unsubscribe.take() {
            unsubscribe();
        }
    }
}

impl Drop for CoolingMonitor {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Pure: what the observations say about cooling and recovery.
fn judge(topic: &str, seen: &[Observation], reverted_at_ms: u64) -> CoolingCheck {
    let during: Vec<&Observation> = seen.iter().filter(|o| o.at_ms <= reverted_at_ms).collect();
    let after: Vec<&Observation> = seen.iter().filter(|o| o.at_ms > reverted_at_ms).collect();
    let cooled_by: std::collections::BTreeSet<&String> =
        during.iter().flat_map(|o| o.suppressing.iter()).collect();
    let suppressed = if !cooled_by.is_empty() {
        Some(true)
    } else if during.iter().any(|o| o.readable) {
        Some(false)
    } else {
        None
    };
    let recovered = match suppressed {
        Some(true) => {
            let first_clear = after
                .iter()
                .find(|o| o.readable && o.suppressing.is_empty());
            Some(first_clear.is_some())
        }
        _ => None,
    };
    let detail = match (suppressed, recovered) {
        (Some(true), Some(true)) => {
            let cleared = after
                .iter()
                .find(|o| o.readable && o.suppressing.is_empty())
                .map(|o| o.at_ms.saturating_sub(reverted_at_ms))
                .unwrap_or(0);
            format!(
                "cooled by {} on topic {topic}; no neighbour suppressed it {cleared} ms after the revert",
                cooled_by
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        (Some(true), _) => format!(
            "cooled by {} on topic {topic}, still suppressed {} s after the revert",
            cooled_by
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            RECOVERY_DEADLINE.as_secs()
        ),
        (Some(false), _) => format!(
            "no neighbour suppressed it on topic {topic} in {} reads while the fault held",
            during.len()
        ),
        (None, _) => format!(
            "the neighbours could not be read while the fault held ({} reads)",
            during.len()
        ),
    };
    CoolingCheck {
        suppressed,
        recovered,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(at_ms: u64, suppressing: &[&str]) -> Observation {
        Observation {
            at_ms,
            suppressing: suppressing.iter().map(|s| s.to_string()).collect(),
            readable: true,
        }
    }

    #[test]
    fn cooled_and_recovered() {
        let c = judge(
            "t",
            &[
                obs(1, &[]),
                obs(2, &["node-0"]),
                obs(11, &["node-0"]),
                obs(12, &[]),
            ],
            10,
        );
        assert_eq!(
            (c.suppressed, c.recovered),
            (Some(true), Some(true)),
            "{}",
            c.detail
        );
    }

    #[test]
    fn never_cooled_is_a_definite_no() {
        let c = judge("t", &[obs(1, &[]), obs(2, &[]), obs(12, &[])], 10);
        assert_eq!(c.suppressed, Some(false));
        assert_eq!(c.recovered, None);
    }

    #[test]
    fn cooled_but_never_recovered() {
        let c = judge("t", &[obs(2, &["node-0"]), obs(12, &["node-0"])], 10);
        assert_eq!((c.suppressed, c.recovered), (Some(true), Some(false)));
    }

    #[test]
    fn nothing_readable_is_unknown_not_a_pass() {
        let unreadable = Observation {
            at_ms: 2,
            suppressing: Vec::new(),
            readable: false,
        };
        let c = judge("t", &[unreadable], 10);
        assert_eq!(c.suppressed, None);
        let c = judge("t", &[], 10);
        assert_eq!(c.suppressed, None);
    }
}
