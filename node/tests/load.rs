//! Load shedding on real processes: the receiver's per-peer rate limit answers with ERR_LOAD
//! (outcome `load`, the receiver's reason in the error), counts it, and stores nothing for the
//! shed messages; the sender does not count ERR_LOAD as a failure; the receive path's queue
//! counters balance.

mod common;

use std::time::Duration;

use common::{eventually, spawn};
use soak_api::{DmOutcome, counters as c};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_peer_rate_limit_sheds_with_load() {
    let dir = tempfile::tempdir().unwrap();
    let a = spawn(&dir.path().join("a"), &[]).await;
    let b = spawn(
        &dir.path().join("b"),
        &[
            "--bootstrap",
            &a.info.quic_addr,
            "--rate-limit-per-sec",
            "1",
            "--rate-limit-burst",
            "3",
        ],
    )
    .await;
    assert!(eventually(Duration::from_secs(5), || b.ready()).await);

    let mut outcomes = Vec::new();
    for i in 0..6u8 {
        let r = a.dm(&b.info.peer_id, &[i], None).await;
        if r.outcome == DmOutcome::Load {
            let why = r.error.clone().unwrap_or_default();
            assert!(
                why.contains("ERR_LOAD") && why.contains("rate limit exceeded: 1 DMs/s"),
                "{why}"
            );
        }
        outcomes.push((r.outcome, r.request_id));
    }
    let acked: Vec<&String> = outcomes
        .iter()
        .filter(|(o, _)| *o == DmOutcome::Acked)
        .map(|(_, id)| id)
        .collect();
    let shed = outcomes
        .iter()
        .filter(|(o, _)| *o == DmOutcome::Load)
        .count();
    assert!(acked.len() >= 3, "{outcomes:?}");
    assert!(shed >= 2, "{outcomes:?}");
    assert_eq!(acked.len() + shed, outcomes.len(), "{outcomes:?}");
    let d = b.diagnostics().await;
    assert_eq!(d.counters[c::LOAD_SHED], shed as u64);
    assert_eq!(d.counters["err_load_sent_total"], shed as u64);
    // Each violation is a failure of the sender on the receiver's books (below the ban bar).
    assert_eq!(d.counters["peer_failures_total"], shed as u64);
    assert!(d.bans.is_empty());
    // The sender heard ERR_LOAD and counts no failure: the peer stays established, unbanned.
    let da = a.diagnostics().await;
    assert_eq!(da.counters["err_load_received_total"], shed as u64);
    assert_eq!(da.counters["peer_failures_total"], 0);
    assert!(da.bans.is_empty());
    let view = da
        .peers
        .iter()
        .find(|p| p.peer_id == b.info.peer_id)
        .expect("b in a's peers");
    assert_eq!(view.failed_attempts, 0);
    assert_eq!(view.state, soak_api::PeerState::Established);
    assert_eq!(d.counters[c::DM_DELIVERED], acked.len() as u64);
    let inbox = b.inbox_all().await;
    assert_eq!(inbox.items.len(), acked.len());
    for id in acked {
        assert!(inbox.items.iter().any(|i| &i.request_id == id));
    }
    // Every frame that entered the receive queue left it and was dispatched (polled: a ping
    // may be between the two counters at the moment of a snapshot).
    let balanced = eventually(Duration::from_secs(5), || async {
        let d = b.diagnostics().await;
        d.counters[c::RECV_PUMP_DROPPED_FULL] == 0
            && d.counters[c::RECV_PUMP_PRODUCED] == d.counters[c::RECV_PUMP_DEQUEUED]
            && d.counters[c::RECV_PUMP_DEQUEUED]
                == d.counters[c::DISPATCHER_COMPLETED] + d.counters[c::DISPATCHER_TIMEOUTS]
    })
    .await;
    assert!(balanced, "{:?}", b.diagnostics().await.counters);
}
