//! Bootstrap host names: one task per name resolves it at start and every
//! `bootstrap_resolve_ms`, retrying with backoff (500 ms, doubling, up to that period) while it
//! does not resolve, and tells the actor whenever the set of addresses changes. Only addresses
//! the QUIC socket can reach (its address family) are kept.

use std::net::SocketAddr;
use std::time::Duration;

use soak_proto::PeerId;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::conns::NetEvent;

/// First retry delay after a failed resolution.
const RETRY_BASE: Duration = Duration::from_millis(500);
/// Longest a single lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Delay before the next lookup after `failures` failures in a row (0: the regular period).
pub(super) fn next_delay(failures: u32, period: Duration) -> Duration {
    if failures == 0 {
        return period;
    }
    RETRY_BASE
        .saturating_mul(1u32 << (failures - 1).min(16))
        .min(period)
}

/// Addresses of `found` the socket bound at `local` can send to, sorted and deduplicated.
pub(super) fn reachable(
    found: impl IntoIterator<Item = SocketAddr>,
    local: SocketAddr,
) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = found
        .into_iter()
        .filter(|a| {
            a.is_ipv4() == local.is_ipv4() || (local.is_ipv6() && local.ip().is_unspecified())
        })
        .filter(|a| !a.ip().is_unspecified() && a.port() != 0)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Resolves `name:port` for bootstrap entry `source` until the actor is gone.
pub(super) async fn resolve_loop(
    source: usize,
    peer: Option<PeerId>,
    name: String,
    port: u16,
    local: SocketAddr,
    period: Duration,
    net_tx: mpsc::Sender<NetEvent>,
) {
    let mut failures = 0u32;
    let mut last: Option<Vec<SocketAddr>> = None;
    loop {
        let found = tokio::time::timeout(
            LOOKUP_TIMEOUT,
            tokio::net::lookup_host((name.as_str(), port)),
        )
        .await
        .map_err(|_| "timed out".to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map(|addrs| reachable(addrs, local));
        match found {
            Ok(addrs) if !addrs.is_empty() => {
                failures = 0;
                if last.as_ref() != Some(&addrs) {
                    info!(bootstrap = %format!("{name}:{port}"), ?addrs, "bootstrap name resolved");
                    let event = NetEvent::BootstrapResolved {
                        source,
                        peer,
                        addrs: addrs.clone(),
                    };
                    if net_tx.send(event).await.is_err() {
                        return;
                    }
                    last = Some(addrs);
                }
            }
            other => {
                failures += 1;
                let why = match other {
                    Ok(_) => "no reachable address".to_string(),
                    Err(e) => e,
                };
                // Loud once, then quiet while it keeps failing.
                if failures == 1 {
                    warn!(bootstrap = %format!("{name}:{port}"), error = %why, "bootstrap name does not resolve; retrying with backoff");
                }
            }
        }
        if net_tx.is_closed() {
            return;
        }
        tokio::time::sleep(next_delay(failures, period)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_up_to_the_period() {
        let period = Duration::from_secs(30);
        assert_eq!(next_delay(0, period), period);
        assert_eq!(next_delay(1, period), Duration::from_millis(500));
        assert_eq!(next_delay(2, period), Duration::from_secs(1));
        assert_eq!(next_delay(4, period), Duration::from_secs(4));
        assert_eq!(next_delay(10, period), period);
        assert_eq!(next_delay(u32::MAX, period), period);
    }

    #[test]
    fn only_addresses_of_the_sockets_family_are_kept() {
        let v4: SocketAddr = "127.0.0.1:5".parse().unwrap();
        let v6: SocketAddr = "[::1]:5".parse().unwrap();
        let found = [v6, v4, v4, "0.0.0.0:5".parse().unwrap()];
        assert_eq!(reachable(found, "127.0.0.1:0".parse().unwrap()), [v4]);
        assert_eq!(reachable(found, "[::1]:0".parse().unwrap()), [v6]);
        assert_eq!(reachable(found, "[::]:0".parse().unwrap()), [v4, v6]);
    }
}
