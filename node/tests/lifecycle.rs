//! Process lifecycle: a restart is visible in the diagnostics identity, and an idle period
//! longer than the QUIC idle timeout does not rot connections.

mod common;

use std::time::Duration;

use common::{eventually, spawn};
use soak_api::{DmOutcome, counters as c};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_changes_process_identity_but_keeps_peer_id() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("n");
    let mut first = spawn(&data, &[]).await;
    let before = first.diagnostics().await;
    assert_eq!(before.identity.instance_id, first.info.instance_id);
    assert_eq!(before.identity.pid, first.pid());
    // Some counter activity, so a reset is visible too.
    let r = first.dm(&first.info.peer_id, b"x", None).await;
    assert_eq!(r.outcome, DmOutcome::Acked);
    assert_eq!(first.counter(c::DM_SENT).await, 1);
    first.kill();
    drop(first);

    let second = spawn(&data, &[]).await;
    let after = second.diagnostics().await;
    assert_eq!(after.identity.peer_id, before.identity.peer_id);
    assert_ne!(after.identity.instance_id, before.identity.instance_id);
    assert_ne!(after.identity.pid, before.identity.pid);
    assert!(after.identity.started_at_ms >= before.identity.started_at_ms);
    assert_eq!(after.counters[c::DM_SENT], 0, "counters restart from zero");
    // The admin token survives restarts.
    assert_eq!(
        std::fs::read_to_string(data.join(soak_api::ADMIN_TOKEN_FILE))
            .unwrap()
            .trim(),
        second.token
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dm_after_an_idle_period_longer_than_the_idle_timeout_succeeds() {
    // Short QUIC idle timeout; the membership tick (which would also ping) is slowed down so
    // only QUIC keep-alive can keep the connection open.
    let args = [
        "--idle-timeout-ms",
        "800",
        "--keep-alive-ms",
        "250",
        "--tick-ms",
        "60000",
    ];
    let dir = tempfile::tempdir().unwrap();
    let a = spawn(&dir.path().join("a"), &args).await;
    let mut b_args = args.to_vec();
    b_args.extend(["--bootstrap", &a.info.quic_addr]);
    let b = spawn(&dir.path().join("b"), &b_args).await;
    assert!(eventually(Duration::from_secs(5), || b.ready()).await);
    let r = a.dm(&b.info.peer_id, b"before", None).await;
    assert_eq!(r.outcome, DmOutcome::Acked, "{r:?}");
    let established = a.counter(c::CONNECTIONS_ESTABLISHED).await;

    // Idle for more than twice the idle timeout.
    tokio::time::sleep(Duration::from_millis(2000)).await;

    let r = a.dm(&b.info.peer_id, b"after", None).await;
    assert_eq!(r.outcome, DmOutcome::Acked, "{r:?}");
    assert_eq!(r.attempts, 1, "no retry needed");
    let r = b.dm(&a.info.peer_id, b"reverse", None).await;
    assert_eq!(r.outcome, DmOutcome::Acked, "{r:?}");
    // The same connection carried it: keep-alive held it open, nothing had to reconnect.
    assert_eq!(a.counter(c::CONNECTIONS_ESTABLISHED).await, established);
    assert_eq!(a.counter(c::DM_ACK_TIMEOUTS).await, 0);
}
