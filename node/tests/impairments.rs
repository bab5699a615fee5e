//! Node-level impairments through the admin API on real processes: delay and partition take
//! effect on the node's own UDP path, are listed in diagnostics, expire by themselves, and
//! can be cleared.

mod common;

use std::time::Duration;

use common::{eventually, spawn};
use soak_api::{ApiError, DmOutcome, Impairment};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impairments_take_effect_expire_and_clear() {
    let dir = tempfile::tempdir().unwrap();
    let a = spawn(&dir.path().join("a"), &[]).await;
    let b = spawn(&dir.path().join("b"), &["--bootstrap", &a.info.quic_addr]).await;
    assert!(eventually(Duration::from_secs(5), || b.ready()).await);
    let r = a.dm(&b.info.peer_id, b"warm", None).await;
    assert_eq!(r.outcome, DmOutcome::Acked);
    let baseline = r.elapsed_us;

    // Refused: no expiry, loss out of range, bad JSON.
    for body in [
        r#"{"delay_ms": 10}"#,
        r#"{"loss": 2.0, "expires_in_ms": 1000}"#,
        r#"{"expires_in_ms": 0}"#,
        "nope",
    ] {
        let r = a.post_raw("/v1/impairments", body).await;
        assert_eq!(r.status(), 400, "{body}");
        let _: ApiError = r.json().await.unwrap();
    }

    // Delay on A's datagrams to B: the DM round trip grows by at least the delay.
    let delay = Impairment {
        id: None,
        peer: Some(b.info.peer_id.clone()),
        delay_ms: 150,
        jitter_ms: 0,
        loss: 0.0,
        partition: false,
        one_way: false,
        expires_in_ms: 10_000,
    };
    let r = a
        .post_raw("/v1/impairments", serde_json::to_vec(&delay).unwrap())
        .await;
    assert_eq!(r.status(), 200);
    let listed: Vec<Impairment> = r.json().await.unwrap();
    assert_eq!(listed.len(), 1);
    let r = a.dm(&b.info.peer_id, b"slow", None).await;
    assert_eq!(r.outcome, DmOutcome::Acked, "{r:?}");
    assert!(
        r.elapsed_us >= 150_000,
        "delay not applied: {} us (baseline {baseline} us)",
        r.elapsed_us
    );
    assert_eq!(a.diagnostics().await.impairments.len(), 1);
    let r = a
        .http
        .delete(a.url("/v1/impairments"))
        .bearer_auth(&a.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(a.diagnostics().await.impairments.is_empty());

    // A short partition: DMs time out while it lasts, and it lapses by itself.
    let partition = Impairment {
        id: None,
        peer: None,
        delay_ms: 0,
        jitter_ms: 0,
        loss: 0.0,
        partition: true,
        one_way: false,
        expires_in_ms: 1_500,
    };
    let r = a
        .post_raw("/v1/impairments", serde_json::to_vec(&partition).unwrap())
        .await;
    assert_eq!(r.status(), 200);
    let req = serde_json::json!({
        "to": b.info.peer_id,
        "payload_b64": "cA==",
        "timeout_ms": 200,
    });
    let r: soak_api::DmResponse = a
        .post_raw("/v1/dm", serde_json::to_vec(&req).unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r.outcome, DmOutcome::Timeout, "{r:?}");
    assert_eq!(r.attempts, 2);
    assert!(
        eventually(Duration::from_secs(5), || async {
            a.diagnostics().await.impairments.is_empty()
        })
        .await,
        "impairment did not expire"
    );
    // After expiry the (still open) connection carries DMs again.
    let r = a.dm(&b.info.peer_id, b"healed", None).await;
    assert_eq!(r.outcome, DmOutcome::Acked, "{r:?}");
}

/// The receiver's ACK arrives after the sender's ACK timeout: the sender retries with the same
/// request id, the receiver re-ACKs the duplicate, and the message is stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_ack_triggers_a_duplicate_safe_retry_that_is_delivered_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = spawn(&dir.path().join("a"), &[]).await;
    let b = spawn(&dir.path().join("b"), &["--bootstrap", &a.info.quic_addr]).await;
    assert!(eventually(Duration::from_secs(5), || b.ready()).await);
    let r = a.dm(&b.info.peer_id, b"warm", None).await;
    assert_eq!(r.outcome, DmOutcome::Acked);

    // B's datagrams to A are held back 750 ms; A waits 500 ms per attempt. So the first ACK
    // lands at ~750 ms: after attempt 1's deadline (500 ms), before attempt 2's (1000 ms).
    let slow_acks = Impairment {
        id: None,
        peer: Some(a.info.peer_id.clone()),
        delay_ms: 750,
        jitter_ms: 0,
        loss: 0.0,
        partition: false,
        one_way: false,
        expires_in_ms: 20_000,
    };
    let r = b
        .post_raw("/v1/impairments", serde_json::to_vec(&slow_acks).unwrap())
        .await;
    assert_eq!(r.status(), 200);
    let rid = "0123456789abcdef0123456789abcdef";
    let req = serde_json::json!({
        "to": b.info.peer_id,
        "payload_b64": "bGF0ZQ==",
        "request_id": rid,
        "timeout_ms": 500,
    });
    let r: soak_api::DmResponse = a
        .post_raw("/v1/dm", serde_json::to_vec(&req).unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!((r.outcome, r.attempts), (DmOutcome::Acked, 2), "{r:?}");
    let d = a.diagnostics().await;
    assert_eq!(d.counters[soak_api::counters::DM_RETRIES], 1);
    assert_eq!(d.counters[soak_api::counters::DM_ACK_TIMEOUTS], 1);
    assert!(
        eventually(Duration::from_secs(5), || async {
            b.counter(soak_api::counters::DM_DUPLICATES).await == 1
        })
        .await
    );
    let inbox = b.inbox_all().await;
    assert_eq!(
        inbox.items.iter().filter(|i| i.request_id == rid).count(),
        1,
        "delivered more than once"
    );
}

fn partition_to(peer: &str, id: &str, one_way: bool, expires_in_ms: u64) -> Impairment {
    Impairment {
        id: Some(id.to_owned()),
        peer: Some(peer.to_owned()),
        delay_ms: 0,
        jitter_ms: 0,
        loss: 0.0,
        partition: true,
        one_way,
        expires_in_ms,
    }
}

/// What the nemesis relies on: an impairment posted with an id is renewed (not duplicated) by
/// posting it again, removed alone by `DELETE /v1/impairments/{id}`, and a one-way partition
/// drops only this node's datagrams to the peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impairments_by_id_renew_and_remove_and_one_way_cuts_one_side() {
    let dir = tempfile::tempdir().unwrap();
    let a = spawn(&dir.path().join("a"), &[]).await;
    let b = spawn(&dir.path().join("b"), &["--bootstrap", &a.info.quic_addr]).await;
    assert!(eventually(Duration::from_secs(5), || b.ready()).await);
    assert_eq!(
        a.dm(&b.info.peer_id, b"warm", None).await.outcome,
        DmOutcome::Acked
    );

    // Renewal: same id twice → one rule, with the later expiry.
    let cut = partition_to(&b.info.peer_id, "soak-f1", true, 2_000);
    for expires in [2_000, 60_000] {
        let body = Impairment {
            expires_in_ms: expires,
            ..cut.clone()
        };
        let r = a
            .post_raw("/v1/impairments", serde_json::to_vec(&body).unwrap())
            .await;
        assert_eq!(r.status(), 200);
    }
    let listed = a.diagnostics().await.impairments;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id.as_deref(), Some("soak-f1"));
    assert!(listed[0].one_way && listed[0].expires_in_ms > 50_000);

    // One way: A's datagrams to B are dropped, so A → B times out ...
    let req = serde_json::json!({
        "to": b.info.peer_id, "payload_b64": "cA==", "timeout_ms": 300,
    });
    let r: soak_api::DmResponse = a
        .post_raw("/v1/dm", serde_json::to_vec(&req).unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r.outcome, DmOutcome::Timeout, "{r:?}");
    assert!(
        a.counter(soak_api::counters::IMPAIRMENT_DROPPED).await > 0,
        "the node counts what its impairments drop"
    );
    // ... while B's datagrams still reach A: B's DM is delivered to A's inbox (its ACK may be
    // lost on the cut side, which is what a one-way cut does to QUIC).
    let rid = "00112233445566778899aabbccddeeff";
    let _ = b.dm(&a.info.peer_id, b"one-way", Some(rid)).await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            a.inbox_all()
                .await
                .items
                .iter()
                .any(|m| m.request_id == rid)
        })
        .await,
        "B's datagrams must still arrive at A under a one-way cut"
    );

    // Removing by id: unknown → 404 with the JSON error; known → gone, DMs flow again.
    let r = a
        .http
        .delete(a.url("/v1/impairments/nope"))
        .bearer_auth(&a.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let _: ApiError = r.json().await.unwrap();
    let r = a
        .http
        .delete(a.url("/v1/impairments/soak-f1"))
        .bearer_auth(&a.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(a.diagnostics().await.impairments.is_empty());
    assert!(
        eventually(Duration::from_secs(10), || async {
            a.dm(&b.info.peer_id, b"healed", None).await.outcome == DmOutcome::Acked
        })
        .await
    );
}

/// `--test-ignore-impairments` accepts and lists impairments but never applies them: the
/// orchestrator's "was it effective?" check must catch such a node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_ignoring_impairments_lists_them_but_keeps_delivering() {
    let dir = tempfile::tempdir().unwrap();
    let a = spawn(&dir.path().join("a"), &["--test-ignore-impairments"]).await;
    let b = spawn(&dir.path().join("b"), &["--bootstrap", &a.info.quic_addr]).await;
    assert!(eventually(Duration::from_secs(5), || b.ready()).await);
    let cut = partition_to(&b.info.peer_id, "ignored", false, 30_000);
    let r = a
        .post_raw("/v1/impairments", serde_json::to_vec(&cut).unwrap())
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(a.diagnostics().await.impairments.len(), 1);
    let r = a.dm(&b.info.peer_id, b"through", None).await;
    assert_eq!(r.outcome, DmOutcome::Acked, "{r:?}");
    assert_eq!(a.counter(soak_api::counters::IMPAIRMENT_DROPPED).await, 0);
}
