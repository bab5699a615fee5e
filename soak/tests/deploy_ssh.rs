//! `soak deploy/status/stop` over real SSH (an sshd on 127.0.0.1 with its own host key, strict
//! known_hosts, key login) with the real soak-node. Skips with a reason without root/sshd.
//!
//! Covers: the partial-fleet policy (an unreachable host is named, the others are deployed,
//! exit 69 by default, exit 0 with a warning under --min-hosts), an idempotent second deploy,
//! and a changed host key refused with a clear message naming the host.

// Tests may print with the std macros: a closed pipe there is not a user path.
#![allow(clippy::disallowed_macros)]

mod support;

use soak_inventory::Host;
use soak_inventory::testing::{TestSshd, free_port, free_udp_port, known_hosts_line, sshd_or_skip};
use support::{
    FleetGuard, alive, deploy_json, deployable_node, sha256_file, soak, texts, write_inventory,
};

fn sshd() -> Option<TestSshd> {
    sshd_or_skip("deploy over a real sshd")
}

#[test]
fn deploy_over_ssh_partial_policy_idempotence_and_changed_host_key() {
    let Some(sshd) = sshd() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let node = deployable_node(dir.path());
    let node_s = node.to_string_lossy().to_string();
    let sha = sha256_file(&node);
    let hosts: Vec<Host> = (0..3)
        .map(|i| {
            sshd.host(
                &format!("ssh-{i}"),
                &dir.path().join(format!("host-{i}")),
                free_port(),
                free_udp_port(),
            )
        })
        .collect();
    let _guard = FleetGuard {
        hosts: hosts.clone(),
    };
    // A fourth host whose sshd does not exist.
    let mut dead = sshd.host(
        "dead-host",
        &dir.path().join("dead"),
        free_port(),
        free_udp_port(),
    );
    dead.ssh.port = free_port();
    let mut with_dead = hosts.clone();
    with_dead.push(dead);
    let inv_all = dir.path().join("all.toml");
    write_inventory(&inv_all, &with_dead);
    let inv_all_s = inv_all.to_string_lossy().to_string();
    let inv = dir.path().join("live.toml");
    write_inventory(&inv, &hosts);
    let inv_s = inv.to_string_lossy().to_string();

    // Default policy: the dead host is named, the live ones are deployed anyway, exit 69.
    let out = soak(&[
        "deploy",
        "-i",
        &inv_all_s,
        "--binary",
        &node_s,
        "--json",
        "--ready-timeout",
        "30s",
        "--connect-timeout",
        "3s",
    ]);
    let (records, failed) = deploy_json(&out);
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(
        stderr.contains("deploy failed on 1 of 4 hosts (dead-host)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("host `dead-host`: cannot connect"),
        "{stderr}"
    );
    assert_eq!(failed.len(), 1);
    assert_eq!(records.len(), 3);
    for r in &records {
        assert!(r.uploaded && r.restarted && alive(r.pid), "{r:?}");
        assert_eq!(r.binary_sha256, sha);
    }

    // With --min-hosts 3 the same fleet is acceptable: exit 0, still naming the dead host;
    // nothing is uploaded or restarted on the live ones.
    let out = soak(&[
        "deploy",
        "-i",
        &inv_all_s,
        "--binary",
        &node_s,
        "--json",
        "--connect-timeout",
        "3s",
        "--min-hosts",
        "3",
    ]);
    let (again, _) = deploy_json(&out);
    let (_, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning")
            && stderr.contains("dead-host")
            && stderr.contains("continuing with 3 hosts"),
        "{stderr}"
    );
    for (a, r) in again.iter().zip(&records) {
        assert!(!a.uploaded && !a.restarted, "{a:?}");
        assert_eq!(a.pid, r.pid);
    }

    // Status over SSH: all ready, each meshed with the other two, running the deployed build.
    let out = soak(&["status", "-i", &inv_s, "--json"]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout).expect("status json");
    for row in &rows {
        assert_eq!(
            (
                row["reachable"].clone(),
                row["ready"].clone(),
                row["peers"].clone()
            ),
            (true.into(), true.into(), 2.into()),
            "{row}"
        );
        assert_eq!(row["binary_sha256"], sha.as_str());
    }

    // The host key changes: refused, naming the host; nothing else happens there.
    sshd.forge_changed_key().expect("forge key");
    let out = soak(&["status", "-i", &inv_s]);
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(
        stderr.contains("host `ssh-0`: refusing to connect to root@127.0.0.1:"),
        "{stderr}"
    );
    assert!(stderr.contains("host key CHANGED"), "{stderr}");
    let out = soak(&["deploy", "-i", &inv_s, "--binary", &node_s]);
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(
        stderr.contains("deploy failed on 3 of 3 hosts (ssh-0, ssh-1, ssh-2)")
            && stderr.contains("CHANGED"),
        "{stderr}"
    );
    for r in &records {
        assert!(alive(r.pid), "a refused deploy must not touch the node");
    }

    // The right key back: stop over SSH ends every node.
    let line =
        known_hosts_line(sshd.port, &sshd.dir.path().join("host_key.pub")).expect("key line");
    std::fs::write(&sshd.known_hosts, line).expect("restore known_hosts");
    let out = soak(&["stop", "-i", &inv_s]);
    assert!(out.status.success(), "{}", texts(&out).1);
    for r in &records {
        assert!(!alive(r.pid), "{} still running", r.host);
    }
}
