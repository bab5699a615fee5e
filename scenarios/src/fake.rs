//! An in-memory fake mesh implementing [`NodeApi`], for unit tests of the workload logic only.
//! Integration tests drive real `soak-node` processes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use soak_api::{
    Diagnostics, DmOutcome, DmPath, DmRequest, DmResponse, Impairment, InboxItem, InboxPage,
    PageQuery, ProcessIdentity, PublishRequest, PublishResponse, Readiness, ReceivedItem,
    ReceivedPage, VersionInfo,
};

use crate::api::{ApiResult, NodeApi, NodeApiError, NodeApiErrorKind};

/// How one fake node misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Every call fails as if the process were gone.
    Dead,
    /// ACKs direct messages but never stores them.
    AckButDrop,
    /// Stores every direct message twice.
    DeliverTwice,
    /// Stores direct messages, but its ACKs are lost: the sender sees a timeout.
    AckLost,
    /// Answers 404 on every topic route (no pub/sub).
    NoPubSub,
    /// Receives every gossip message twice in its `received` list.
    GossipTwice,
    /// Receives no gossip.
    GossipDeaf,
    /// Answers 500 on publish (a burst that fails mid-way).
    PublishFails,
    /// Accepts and lists impairments but never applies them.
    IgnoreImpairments,
    /// Stopped (SIGSTOP): `/healthz` times out, DMs to it time out.
    Stopped,
}

#[derive(Default)]
struct NodeState {
    fault: Option<Fault>,
    instance: u32,
    inbox: Vec<InboxItem>,
    /// Subscribed topics (as the node tracks them) with their received lists.
    topics: HashMap<String, Vec<ReceivedItem>>,
    unsubscribes: usize,
    reads_from_zero: usize,
    /// Held impairments with their expiry (unix ms).
    impairments: Vec<(Impairment, u64)>,
    next_impairment: u64,
}

impl NodeState {
    /// Live impairments that apply (a node ignoring them applies none).
    fn live_impairments(&mut self, now: u64) -> Vec<Impairment> {
        self.impairments.retain(|(_, until)| *until > now);
        if self.fault == Some(Fault::IgnoreImpairments) {
            return Vec::new();
        }
        self.impairments.iter().map(|(i, _)| i.clone()).collect()
    }

    fn listed_impairments(&mut self, now: u64) -> Vec<Impairment> {
        self.impairments.retain(|(_, until)| *until > now);
        self.impairments
            .iter()
            .map(|(i, until)| Impairment {
                expires_in_ms: until - now,
                ..i.clone()
            })
            .collect()
    }
}

fn applies_to(impairment: &Impairment, peer: &str) -> bool {
    impairment.peer.as_deref().is_none_or(|p| p == peer)
}

#[derive(Default)]
struct State {
    nodes: Vec<NodeState>,
    next_msg: u64,
}

/// A fake mesh of `n` nodes named `node-0` …
#[derive(Clone)]
pub struct FakeMesh {
    state: Arc<Mutex<State>>,
    n: usize,
}

/// One node of a [`FakeMesh`].
#[derive(Clone)]
pub struct FakeNode {
    mesh: FakeMesh,
    index: usize,
    name: String,
    peer_id: String,
}

fn peer_id(index: usize) -> String {
    format!("{index:064x}")
}

impl FakeMesh {
    /// A healthy mesh of `n` nodes.
    pub fn new(n: usize) -> Self {
        let state = State {
            nodes: (0..n).map(|_| NodeState::default()).collect(),
            next_msg: 0,
        };
        FakeMesh {
            state: Arc::new(Mutex::new(state)),
            n,
        }
    }

    /// Handles to every node.
    pub fn nodes(&self) -> Vec<FakeNode> {
        (0..self.n)
            .map(|index| FakeNode {
                mesh: self.clone(),
                index,
                name: format!("node-{index}"),
                peer_id: peer_id(index),
            })
            .collect()
    }

    /// A fault context over this mesh with `control` (10 s lease, 500 ms probe timeout).
    pub fn fault_ctx(
        &self,
        control: Arc<dyn crate::faults::control::NodeControl>,
    ) -> crate::faults::nemesis::FaultCtx<FakeNode> {
        crate::faults::nemesis::FaultCtx {
            nodes: Arc::new(self.nodes()),
            control,
            lease: std::time::Duration::from_secs(10),
            tag: "soak.test".into(),
            probe_timeout: std::time::Duration::from_millis(500),
        }
    }

    /// Makes node `index` misbehave.
    pub fn set_fault(&self, index: usize, fault: Fault) {
        self.with(|state| state.nodes[index].fault = Some(fault));
    }

    /// Makes node `index` healthy again.
    pub fn clear_fault(&self, index: usize) {
        self.with(|state| state.nodes[index].fault = None);
    }

    /// The fault node `index` has now.
    pub fn fault_of(&self, index: usize) -> Option<Fault> {
        self.with(|state| state.nodes[index].fault)
    }

    /// Restarts node `index`: new instance, empty inbox (sequence numbers start again).
    pub fn restart(&self, index: usize) {
        self.with(|state| {
            let node = &mut state.nodes[index];
            node.instance += 1;
            node.inbox.clear();
            node.topics.clear();
            node.impairments.clear();
        });
    }

    /// Topics node `index` is subscribed to right now, sorted.
    pub fn subscriptions(&self, index: usize) -> Vec<String> {
        self.with(|state| {
            let mut topics: Vec<String> = state.nodes[index].topics.keys().cloned().collect();
            topics.sort();
            topics
        })
    }

    /// Successful unsubscribe calls node `index` answered.
    pub fn unsubscribes(&self, index: usize) -> usize {
        self.with(|state| state.nodes[index].unsubscribes)
    }

    /// Total inbox reads that started from sequence 0.
    pub fn inbox_reads_from_zero(&self) -> usize {
        self.with(|state| state.nodes.iter().map(|n| n.reads_from_zero).sum())
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut guard = match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }
}

impl FakeNode {
    fn fault(&self) -> Option<Fault> {
        self.mesh.with(|s| s.nodes[self.index].fault)
    }

    fn check_alive(&self, path: &str) -> ApiResult<()> {
        if self.fault() == Some(Fault::Stopped) {
            return Err(NodeApiError {
                node: self.name.clone(),
                kind: NodeApiErrorKind::Timeout {
                    path: path.to_owned(),
                },
            });
        }
        if self.fault() == Some(Fault::Dead) {
            return Err(NodeApiError {
                node: self.name.clone(),
                kind: NodeApiErrorKind::Transport {
                    path: path.to_owned(),
                    message: "connection refused".to_owned(),
                },
            });
        }
        Ok(())
    }

    fn check_pubsub(&self, path: &str) -> ApiResult<()> {
        self.check_alive(path)?;
        if self.fault() == Some(Fault::NoPubSub) {
            return Err(NodeApiError {
                node: self.name.clone(),
                kind: NodeApiErrorKind::Status {
                    path: path.to_owned(),
                    status: 404,
                    code: None,
                    message: "not found".to_owned(),
                },
            });
        }
        Ok(())
    }

    fn status_error(&self, path: &str, status: u16, code: &str) -> NodeApiError {
        NodeApiError {
            node: self.name.clone(),
            kind: NodeApiErrorKind::Status {
                path: path.to_owned(),
                status,
                code: Some(code.to_owned()),
                message: code.to_owned(),
            },
        }
    }

    /// 409 `not_subscribed`, as the node answers for a topic it does not hold.
    fn check_subscribed(&self, topic: &str, path: &str) -> ApiResult<()> {
        let subscribed = self
            .mesh
            .with(|s| s.nodes[self.index].topics.contains_key(topic));
        if subscribed {
            Ok(())
        } else {
            Err(self.status_error(path, 409, "not_subscribed"))
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl NodeApi for FakeNode {
    fn name(&self) -> &str {
        &self.name
    }

    fn peer_id(&self) -> &str {
        &self.peer_id
    }

    async fn healthz(&self, _timeout: std::time::Duration) -> ApiResult<()> {
        self.check_alive("/healthz")?;
        if self.fault() == Some(Fault::Stopped) {
            return Err(NodeApiError {
                node: self.name.clone(),
                kind: NodeApiErrorKind::Timeout {
                    path: "/healthz".to_owned(),
                },
            });
        }
        Ok(())
    }

    async fn readiness(&self) -> ApiResult<Readiness> {
        self.check_alive("/readyz")?;
        Ok(Readiness {
            ready: true,
            checks: BTreeMap::new(),
        })
    }

    async fn version(&self) -> ApiResult<VersionInfo> {
        self.check_alive("/v1/version")?;
        Ok(VersionInfo {
            name: "soak-node".into(),
            version: "fake".into(),
            git: "fake".into(),
            peer_id: self.peer_id.clone(),
            api_version: soak_api::API_VERSION,
        })
    }

    async fn diagnostics(&self) -> ApiResult<Diagnostics> {
        self.check_alive("/v1/diagnostics")?;
        let instance = self.mesh.with(|s| s.nodes[self.index].instance);
        Ok(Diagnostics {
            api_version: soak_api::API_VERSION,
            identity: ProcessIdentity {
                instance_id: format!("{}-{instance}", self.name),
                peer_id: self.peer_id.clone(),
                pid: 1,
                started_at_ms: 0,
            },
            version: "fake".into(),
            taken_at_ms: now_ms(),
            uptime_ms: 0,
            counters: BTreeMap::new(),
            gauges: BTreeMap::new(),
            peers: Vec::new(),
            topics: Vec::new(),
            impairments: self
                .mesh
                .with(|s| s.nodes[self.index].listed_impairments(now_ms())),
            bans: Vec::new(),
            histograms: BTreeMap::new(),
        })
    }

    async fn send_dm(&self, request: &DmRequest) -> ApiResult<DmResponse> {
        self.check_alive("/v1/dm")?;
        let request_id = request.request_id.clone().unwrap_or_default();
        let to = (0..self.mesh.n).find(|&i| peer_id(i) == request.to);
        let from_peer = self.peer_id.clone();
        let now = now_ms();
        let mut elapsed_us = 100;
        let outcome = self.mesh.with(|state| {
            let Some(to) = to else {
                return DmOutcome::Unreachable;
            };
            // Impairments: the sender's on its datagrams to the receiver, the receiver's on its
            // ACKs back (and on incoming datagrams, for two-way partitions).
            let to_peer = peer_id(to);
            let outbound = state.nodes[self.index].live_impairments(now);
            let inbound = state.nodes[to].live_impairments(now);
            let cut = outbound
                .iter()
                .any(|i| i.partition && applies_to(i, &to_peer))
                || inbound
                    .iter()
                    .any(|i| i.partition && applies_to(i, &from_peer));
            if cut {
                return DmOutcome::Timeout;
            }
            let delay_ms: u64 = outbound
                .iter()
                .filter(|i| applies_to(i, &to_peer))
                .map(|i| i.delay_ms)
                .max()
                .unwrap_or(0)
                + inbound
                    .iter()
                    .filter(|i| applies_to(i, &from_peer))
                    .map(|i| i.delay_ms)
                    .max()
                    .unwrap_or(0);
            elapsed_us += delay_ms * 1000;
            let node = &mut state.nodes[to];
            let copies = match node.fault {
                Some(Fault::Dead) => return DmOutcome::Unreachable,
                Some(Fault::Stopped) => return DmOutcome::Timeout,
                Some(Fault::AckButDrop) => 0,
                Some(Fault::DeliverTwice) => 2,
                _ => 1,
            };
            let ack_lost = node.fault == Some(Fault::AckLost);
            for _ in 0..copies {
                let seq = node.inbox.len() as u64 + 1;
                node.inbox.push(InboxItem {
                    seq,
                    from: from_peer.clone(),
                    request_id: request_id.clone(),
                    size: request.payload_b64.len(),
                    received_at_ms: now_ms(),
                });
            }
            if ack_lost {
                return DmOutcome::Timeout;
            }
            DmOutcome::Acked
        });
        Ok(DmResponse {
            request_id,
            outcome,
            path: DmPath::Direct,
            attempts: 1,
            elapsed_us,
            error: None,
        })
    }

    async fn inbox(&self, query: PageQuery) -> ApiResult<InboxPage> {
        self.check_alive("/v1/dm/inbox")?;
        let after = query.after.unwrap_or(0);
        let limit = query.limit.unwrap_or(100).min(100);
        Ok(self.mesh.with(|state| {
            let node = &mut state.nodes[self.index];
            if after == 0 {
                node.reads_from_zero += 1;
            }
            let items: Vec<InboxItem> = node
                .inbox
                .iter()
                .filter(|i| i.seq > after)
                .take(limit)
                .cloned()
                .collect();
            let next = items.last().map(|i| i.seq).unwrap_or(after);
            InboxPage { next, items }
        }))
    }

    async fn subscribe(&self, topic: &str) -> ApiResult<()> {
        self.check_pubsub("/v1/topics/subscribe")?;
        self.mesh.with(|state| {
            state.nodes[self.index]
                .topics
                .entry(topic.to_owned())
                .or_default();
        });
        Ok(())
    }

    async fn unsubscribe(&self, topic: &str) -> ApiResult<()> {
        let path = "/v1/topics/unsubscribe";
        self.check_pubsub(path)?;
        self.check_subscribed(topic, path)?;
        self.mesh.with(|state| {
            let node = &mut state.nodes[self.index];
            node.topics.remove(topic);
            node.unsubscribes += 1;
        });
        Ok(())
    }

    async fn publish(&self, topic: &str, _request: &PublishRequest) -> ApiResult<PublishResponse> {
        let path = "/v1/topics/publish";
        self.check_pubsub(path)?;
        self.check_subscribed(topic, path)?;
        if self.fault() == Some(Fault::PublishFails) {
            return Err(self.status_error(path, 500, "internal"));
        }
        let origin = self.peer_id.clone();
        let origin_index = self.index;
        let msg_id = self.mesh.with(|state| {
            state.next_msg += 1;
            let msg_id = format!("m{}", state.next_msg);
            let now = now_ms();
            for (index, node) in state.nodes.iter_mut().enumerate() {
                let copies = match node.fault {
                    Some(Fault::Dead | Fault::GossipDeaf) => 0,
                    Some(Fault::GossipTwice) => 2,
                    _ => 1,
                };
                // A node whose overlay traffic is delayed is pushed lazily (cooled): the message
                // reaches it after three one-way delays (announce, request, message).
                let delay_ms = node
                    .live_impairments(now)
                    .iter()
                    .filter(|i| applies_to(i, &origin))
                    .map(|i| i.delay_ms)
                    .max()
                    .unwrap_or(0);
                let Some(received) = node.topics.get_mut(topic) else {
                    continue;
                };
                for _ in 0..copies {
                    let seq = received.len() as u64 + 1;
                    received.push(ReceivedItem {
                        seq,
                        msg_id: msg_id.clone(),
                        origin: origin.clone(),
                        hops: u32::from(index != origin_index),
                        size: 0,
                        published_at_ms: now,
                        received_at_ms: now + 2 + 3 * delay_ms,
                    });
                }
            }
            msg_id
        });
        Ok(PublishResponse { msg_id })
    }

    async fn received(&self, topic: &str, query: PageQuery) -> ApiResult<ReceivedPage> {
        let path = "/v1/topics/received";
        self.check_pubsub(path)?;
        self.check_subscribed(topic, path)?;
        let after = query.after.unwrap_or(0);
        let limit = query.limit.unwrap_or(100).min(100);
        let now = now_ms();
        Ok(self.mesh.with(|state| {
            let items: Vec<ReceivedItem> = state.nodes[self.index]
                .topics
                .get(topic)
                .map(|items| {
                    items
                        .iter()
                        .filter(|i| i.seq > after)
                        // Not arrived yet (delayed): listed once its time comes.
                        .take_while(|i| i.received_at_ms <= now)
                        .take(limit)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            let next = items.last().map(|i| i.seq).unwrap_or(after);
            ReceivedPage { next, items }
        }))
    }

    async fn impairments(&self) -> ApiResult<Vec<Impairment>> {
        self.check_alive("/v1/impairments")?;
        Ok(self
            .mesh
            .with(|s| s.nodes[self.index].listed_impairments(now_ms())))
    }

    async fn add_impairment(&self, impairment: &Impairment) -> ApiResult<Vec<Impairment>> {
        self.check_alive("/v1/impairments")?;
        if impairment.expires_in_ms == 0 {
            return Err(self.status_error("/v1/impairments", 400, "bad_request"));
        }
        Ok(self.mesh.with(|s| {
            let now = now_ms();
            let node = &mut s.nodes[self.index];
            let id = match &impairment.id {
                Some(id) => id.clone(),
                None => {
                    node.next_impairment += 1;
                    format!("imp-{}", node.next_impairment)
                }
            };
            let held = Impairment {
                id: Some(id.clone()),
                ..impairment.clone()
            };
            let until = now + impairment.expires_in_ms;
            match node
                .impairments
                .iter_mut()
                .find(|(i, _)| i.id.as_deref() == Some(id.as_str()))
            {
                Some(existing) => *existing = (held, until),
                None => node.impairments.push((held, until)),
            }
            node.listed_impairments(now)
        }))
    }

    async fn remove_impairment(&self, id: &str) -> ApiResult<Vec<Impairment>> {
        let path = "/v1/impairments/{id}";
        self.check_alive(path)?;
        let found = self.mesh.with(|s| {
            let node = &mut s.nodes[self.index];
            let before = node.impairments.len();
            node.impairments
                .retain(|(i, _)| i.id.as_deref() != Some(id));
            node.impairments.len() != before
        });
        if !found {
            return Err(self.status_error(path, 404, "not_found"));
        }
        Ok(self
            .mesh
            .with(|s| s.nodes[self.index].listed_impairments(now_ms())))
    }
}
