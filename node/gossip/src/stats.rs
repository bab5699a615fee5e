//! Monotonic counters, per topic and summed over topics.

use serde::{Deserialize, Serialize};

use crate::proto::Kind;

/// Monotonic counters of one topic (or, from [`crate::State::counters`], of all topics plus
/// the node-level rejects). Every field only ever grows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Messages published locally.
    pub published: u64,
    /// Messages delivered to the local subscriber (first copy only; includes own publishes).
    pub delivered: u64,
    /// Payload copies received that were already known.
    pub duplicates: u64,
    /// Payloads pushed along the eager tree.
    pub eager_sent: u64,
    /// Payloads sent in answer to GRAFT / IWANT.
    pub repair_sent: u64,
    /// Payloads sent by anti-entropy.
    pub ae_payload_sent: u64,
    /// Payloads pushed along the tree after a repair (detours).
    pub detour_sent: u64,
    /// IHAVE messages sent (batches).
    pub ihave_sent: u64,
    /// Message ids announced in IHAVEs.
    pub ihave_ids_sent: u64,
    /// IWANT messages sent.
    pub iwant_sent: u64,
    /// GRAFT messages sent.
    pub graft_sent: u64,
    /// PRUNE messages sent.
    pub prune_sent: u64,
    /// Anti-entropy digests sent.
    pub ae_digest_sent: u64,
    /// Membership messages sent.
    pub membership_sent: u64,
    /// Payloads received (every copy, every kind).
    pub payload_received: u64,
    /// Payloads received from the eager tree.
    pub eager_received: u64,
    /// Payloads received as GRAFT / IWANT answers.
    pub repair_received: u64,
    /// Payloads received from anti-entropy.
    pub ae_payload_received: u64,
    /// Payloads received as detours (pushed along the tree after a repair).
    pub detour_received: u64,
    /// New messages first obtained through anti-entropy (gaps filled).
    pub ae_recovered: u64,
    /// IHAVE messages received.
    pub ihave_received: u64,
    /// IWANT messages received.
    pub iwant_received: u64,
    /// GRAFT messages received.
    pub graft_received: u64,
    /// PRUNE messages received.
    pub prune_received: u64,
    /// Anti-entropy digests received.
    pub ae_digest_received: u64,
    /// Membership messages received.
    pub membership_received: u64,
    /// Eager links swapped for shorter lazy ones (tree optimisation).
    pub optimizations: u64,
    /// Missing messages given up after every announcer failed (anti-entropy may still help).
    pub repair_gave_up: u64,
    /// Neighbors added to the active view.
    pub neighbor_up: u64,
    /// Neighbors removed from the active view.
    pub neighbor_down: u64,
    /// Sends the node reported as timed out.
    pub send_timeouts: u64,
    /// Sends the node reported as failed.
    pub send_failures: u64,
    /// Grafted / IWANTed peers that did not deliver in time.
    pub broken_promises: u64,
    /// Eager peers demoted to lazy because of their score.
    pub demotions: u64,
    /// Suppressions (coolings) started.
    pub suppressions: u64,
    /// Suppressions that lapsed (peer usable again).
    pub recoveries: u64,
    /// Received messages rejected by validation.
    pub invalid_messages: u64,
    /// Received messages for a topic we are not subscribed to.
    pub unknown_topic: u64,
    /// Repair waits extended because the node had not yet processed what reached it before
    /// the wait ended (its own inbound backlog), instead of asking again or judging a promise.
    pub backlog_deferrals: u64,
    /// GRAFTs undone because the tree delivered the message after all (only later than the
    /// graft wait): the grafted link goes back to lazy and the tree keeps its shape.
    pub grafts_reverted: u64,
    /// Maintenance ticks that judged a neighbor slow (its round-trip time far above the
    /// node's other peers'; each charges the peer's `slowness` score component).
    #[serde(default)]
    pub slow_verdicts: u64,
}

impl Counters {
    pub(crate) fn count_sent(&mut self, kind: Kind) {
        match kind {
            Kind::Eager => self.eager_sent += 1,
            Kind::Repair => self.repair_sent += 1,
            Kind::AePayload => self.ae_payload_sent += 1,
            Kind::Detour => self.detour_sent += 1,
            Kind::IHave => self.ihave_sent += 1,
            Kind::IWant => self.iwant_sent += 1,
            Kind::Graft => self.graft_sent += 1,
            Kind::Prune => self.prune_sent += 1,
            Kind::AeDigest => self.ae_digest_sent += 1,
            Kind::Membership => self.membership_sent += 1,
        }
    }

    pub(crate) fn count_received(&mut self, kind: Kind) {
        match kind {
            Kind::Eager => {
                self.payload_received += 1;
                self.eager_received += 1;
            }
            Kind::Repair => {
                self.payload_received += 1;
                self.repair_received += 1;
            }
            Kind::AePayload => {
                self.payload_received += 1;
                self.ae_payload_received += 1;
            }
            Kind::Detour => {
                self.payload_received += 1;
                self.detour_received += 1;
            }
            Kind::IHave => self.ihave_received += 1,
            Kind::IWant => self.iwant_received += 1,
            Kind::Graft => self.graft_received += 1,
            Kind::Prune => self.prune_received += 1,
            Kind::AeDigest => self.ae_digest_received += 1,
            Kind::Membership => self.membership_received += 1,
        }
    }

    /// Messages sent that disseminate or repair payloads (payloads of every kind, IHAVE,
    /// IWANT, GRAFT, PRUNE) — the per-publish work the simulator bounds.
    pub fn dissemination_sent(&self) -> u64 {
        self.eager_sent
            + self.repair_sent
            + self.ae_payload_sent
            + self.detour_sent
            + self.ihave_sent
            + self.iwant_sent
            + self.graft_sent
            + self.prune_sent
    }

    /// Every message sent, background included.
    pub fn all_sent(&self) -> u64 {
        self.dissemination_sent() + self.ae_digest_sent + self.membership_sent
    }

    /// Adds another set of counters into this one.
    pub fn add(&mut self, o: &Counters) {
        let Counters {
            published,
            delivered,
            duplicates,
            eager_sent,
            repair_sent,
            ae_payload_sent,
            detour_sent,
            ihave_sent,
            ihave_ids_sent,
            iwant_sent,
            graft_sent,
            prune_sent,
            ae_digest_sent,
            membership_sent,
            payload_received,
            eager_received,
            repair_received,
            ae_payload_received,
            detour_received,
            ae_recovered,
            ihave_received,
            iwant_received,
            graft_received,
            prune_received,
            ae_digest_received,
            membership_received,
            optimizations,
            repair_gave_up,
            neighbor_up,
            neighbor_down,
            send_timeouts,
            send_failures,
            broken_promises,
            demotions,
            suppressions,
            recoveries,
            invalid_messages,
            unknown_topic,
            backlog_deferrals,
            grafts_reverted,
            slow_verdicts,
        } = o;
        self.published += published;
        self.delivered += delivered;
        self.duplicates += duplicates;
        self.eager_sent += eager_sent;
        self.repair_sent += repair_sent;
        self.ae_payload_sent += ae_payload_sent;
        self.detour_sent += detour_sent;
        self.ihave_sent += ihave_sent;
        self.ihave_ids_sent += ihave_ids_sent;
        self.iwant_sent += iwant_sent;
        self.graft_sent += graft_sent;
        self.prune_sent += prune_sent;
        self.ae_digest_sent += ae_digest_sent;
        self.membership_sent += membership_sent;
        self.payload_received += payload_received;
        self.eager_received += eager_received;
        self.repair_received += repair_received;
        self.ae_payload_received += ae_payload_received;
        self.detour_received += detour_received;
        self.ae_recovered += ae_recovered;
        self.ihave_received += ihave_received;
        self.iwant_received += iwant_received;
        self.graft_received += graft_received;
        self.prune_received += prune_received;
        self.ae_digest_received += ae_digest_received;
        self.membership_received += membership_received;
        self.optimizations += optimizations;
        self.repair_gave_up += repair_gave_up;
        self.neighbor_up += neighbor_up;
        self.neighbor_down += neighbor_down;
        self.send_timeouts += send_timeouts;
        self.send_failures += send_failures;
        self.broken_promises += broken_promises;
        self.demotions += demotions;
        self.suppressions += suppressions;
        self.recoveries += recoveries;
        self.invalid_messages += invalid_messages;
        self.unknown_topic += unknown_topic;
        self.backlog_deferrals += backlog_deferrals;
        self.grafts_reverted += grafts_reverted;
        self.slow_verdicts += slow_verdicts;
    }

    /// Every counter as `(metric name, value)`, names as the node exports them (without the
    /// `soak_node_` prefix). The four names the gates already know come from
    /// [`soak_api::counters`]; the rest are `gossip_*_total`.
    pub fn named(&self) -> Vec<(&'static str, u64)> {
        use soak_api::counters as c;
        vec![
            (c::GOSSIP_PUBLISHED, self.published),
            (c::GOSSIP_DELIVERED, self.delivered),
            (c::GOSSIP_DUPLICATES, self.duplicates),
            (c::GOSSIP_SUPPRESSIONS, self.suppressions),
            ("gossip_eager_sent_total", self.eager_sent),
            ("gossip_repair_sent_total", self.repair_sent),
            ("gossip_ae_payload_sent_total", self.ae_payload_sent),
            ("gossip_detour_sent_total", self.detour_sent),
            ("gossip_ihave_sent_total", self.ihave_sent),
            ("gossip_ihave_ids_sent_total", self.ihave_ids_sent),
            ("gossip_iwant_sent_total", self.iwant_sent),
            ("gossip_graft_sent_total", self.graft_sent),
            ("gossip_prune_sent_total", self.prune_sent),
            ("gossip_ae_digest_sent_total", self.ae_digest_sent),
            ("gossip_membership_sent_total", self.membership_sent),
            ("gossip_payload_received_total", self.payload_received),
            ("gossip_eager_received_total", self.eager_received),
            ("gossip_repair_received_total", self.repair_received),
            ("gossip_ae_payload_received_total", self.ae_payload_received),
            ("gossip_detour_received_total", self.detour_received),
            ("gossip_ae_recovered_total", self.ae_recovered),
            ("gossip_ihave_received_total", self.ihave_received),
            ("gossip_iwant_received_total", self.iwant_received),
            ("gossip_graft_received_total", self.graft_received),
            ("gossip_prune_received_total", self.prune_received),
            ("gossip_ae_digest_received_total", self.ae_digest_received),
            ("gossip_membership_received_total", self.membership_received),
            ("gossip_optimizations_total", self.optimizations),
            ("gossip_repair_gave_up_total", self.repair_gave_up),
            ("gossip_neighbor_up_total", self.neighbor_up),
            ("gossip_neighbor_down_total", self.neighbor_down),
            ("gossip_send_timeouts_total", self.send_timeouts),
            ("gossip_send_failures_total", self.send_failures),
            ("gossip_broken_promises_total", self.broken_promises),
            ("gossip_demotions_total", self.demotions),
            ("gossip_recoveries_total", self.recoveries),
            ("gossip_invalid_messages_total", self.invalid_messages),
            ("gossip_unknown_topic_total", self.unknown_topic),
            ("gossip_backlog_deferrals_total", self.backlog_deferrals),
            ("gossip_grafts_reverted_total", self.grafts_reverted),
            ("gossip_slow_verdicts_total", self.slow_verdicts),
        ]
    }
}
