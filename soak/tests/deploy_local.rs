//! `soak deploy/status/logs/stop` with the local backend and the real soak-node: three nodes
//! deployed from an inventory, idempotent re-deploy (nothing uploaded, nothing restarted), a
//! dead node brought back by a re-deploy, admin APIs on loopback only, records on the hosts.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use soak_inventory::testing::{free_port, free_udp_port};
use soak_inventory::{Connection, Host, ServiceManager};
use support::{
    FleetGuard, alive, deploy_json, deployable_node, sha256_file, soak, texts, write_inventory,
};

fn local_hosts(root: &std::path::Path, n: usize) -> Vec<Host> {
    (0..n)
        .map(|i| {
            let mut h = Host::with_defaults(&format!("local-{i}"), "127.0.0.1");
            h.connection = Connection::Local;
            h.service = ServiceManager::Background;
            h.install_dir = root
                .join(format!("host-{i}"))
                .to_string_lossy()
                .into_owned();
            h.api_port = free_port();
            h.gossip_port = free_udp_port();
            h
        })
        .collect()
}

#[test]
fn deploy_is_idempotent_records_the_build_and_keeps_nodes_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = deployable_node(dir.path());
    let node_s = node.to_string_lossy().to_string();
    let sha = sha256_file(&node);
    let hosts = local_hosts(dir.path(), 3);
    let _guard = FleetGuard {
        hosts: hosts.clone(),
    };
    let inv = dir.path().join("fleet.toml");
    write_inventory(&inv, &hosts);
    let inv_s = inv.to_string_lossy().to_string();
    let deploy = || {
        soak(&[
            "deploy",
            "-i",
            &inv_s,
            "--binary",
            &node_s,
            "--json",
            "--ready-timeout",
            "30s",
        ])
    };

    // First deploy: everything uploaded and started.
    let out = deploy();
    let (records, failed) = deploy_json(&out);
    assert!(out.status.success(), "deploy failed: {}", texts(&out).1);
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(records.len(), 3);
    for (r, h) in records.iter().zip(&hosts) {
        assert_eq!(r.host, h.name);
        assert!(r.uploaded && r.restarted, "{r:?}");
        assert_eq!(r.binary_sha256, sha, "the record names the deployed build");
        assert!(
            !r.version.is_empty() && !r.git.is_empty() && r.peer_id.len() == 64,
            "{r:?}"
        );
        assert!(alive(r.pid), "{} not running", r.host);
        let d = std::path::Path::new(&h.install_dir);
        let token_mode = std::fs::metadata(d.join("data/admin.token"))
            .expect("token")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(token_mode, 0o600);
        let on_host: soak_inventory::node::DeployRecord =
            serde_json::from_slice(&std::fs::read(d.join("deploy.json")).expect("deploy.json"))
                .expect("record");
        assert_eq!(
            &on_host, r,
            "deploy.json on the host equals what deploy returned"
        );
        let info: soak_api::NodeInfo =
            serde_json::from_slice(&std::fs::read(d.join("data/node.json")).expect("node.json"))
                .expect("node.json");
        assert_eq!(
            info.admin_addr,
            format!("127.0.0.1:{}", h.api_port),
            "admin API bound to loopback"
        );
        assert_eq!(info.pid, r.pid);
    }
    let inode = |h: &Host| {
        std::fs::metadata(format!("{}/bin/soak-node", h.install_dir))
            .expect("binary")
            .ino()
    };
    let inodes: Vec<u64> = hosts.iter().map(inode).collect();

    // Second deploy with the same binary: nothing uploaded, nothing restarted.
    let out = deploy();
    let (again, _) = deploy_json(&out);
    assert!(out.status.success(), "{}", texts(&out).1);
    for (a, r) in again.iter().zip(&records) {
        assert!(!a.uploaded && !a.restarted, "{a:?}");
        assert_eq!(a.pid, r.pid);
        assert_eq!(a.started_at_ms, r.started_at_ms);
    }
    assert_eq!(
        hosts.iter().map(inode).collect::<Vec<_>>(),
        inodes,
        "binary files untouched"
    );

    // A dead node is brought back by the next deploy, without an upload; the others are left alone.
    let victim = records[1].pid;
    let _ = std::process::Command::new("kill")
        .arg("-9")
        .arg(victim.to_string())
        .status();
    for _ in 0..100 {
        if !alive(victim) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!alive(victim));
    let out = deploy();
    let (third, _) = deploy_json(&out);
    assert!(out.status.success(), "{}", texts(&out).1);
    assert!(!third[1].uploaded && third[1].restarted, "{:?}", third[1]);
    assert_ne!(third[1].pid, victim);
    assert!(!third[0].restarted && !third[2].restarted);

    // Status: every node reachable, running, ready, meshed with the other two.
    let out = soak(&["status", "-i", &inv_s, "--json"]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout).expect("status json");
    assert_eq!(rows.len(), 3);
    for row in &rows {
        assert_eq!(row["ready"], true, "{row}");
        assert_eq!(row["binary_sha256"], sha.as_str(), "{row}");
        assert_eq!(row["peers"], 2, "{row}");
    }

    // Logs of one host.
    let out = soak(&["logs", "-i", &inv_s, "local-2", "-n", "50"]);
    assert!(out.status.success());
    assert!(
        texts(&out).0.contains(&third[2].peer_id),
        "the log names the node's peer id"
    );

    // Stop: every node ends; status then reports them down (exit 69, naming them).
    let out = soak(&["stop", "-i", &inv_s]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains(&format!("stopped (pid {})", third[0].pid)),
        "{stdout}"
    );
    for r in &third {
        assert!(!alive(r.pid), "{} still running", r.host);
    }
    let out = soak(&["status", "-i", &inv_s]);
    assert_eq!(out.status.code(), Some(69));
    assert!(
        texts(&out)
            .1
            .contains("3 of 3 hosts not ready: local-0, local-1, local-2"),
        "{}",
        texts(&out).1
    );
}
