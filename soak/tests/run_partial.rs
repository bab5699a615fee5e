//! Partial fleets are visible in the proof: the real `soak run -i INV` over an inventory of
//! three hosts (local backend, real deployed `soak-node`s) where one host has no node. By
//! default that is exit 69 naming the host; with `--min-hosts 2` the soak runs on two hosts and
//! the left-out host is named in the `fleet_coverage` event, `run.json` (covered by the
//! manifest), `summary.md` and the end-of-run output — "2 of 3 inventory hosts".

mod support;

use soak_inventory::testing::{free_port, free_udp_port};
use soak_inventory::{Connection, Host, ServiceManager};
use support::{FleetGuard, deployable_node, soak, texts, write_inventory};

fn local_host(root: &std::path::Path, name: &str) -> Host {
    let mut h = Host::with_defaults(name, "127.0.0.1");
    h.connection = Connection::Local;
    h.service = ServiceManager::Background;
    h.install_dir = root.join(name).to_string_lossy().into_owned();
    h.api_port = free_port();
    h.gossip_port = free_udp_port();
    h
}

#[test]
fn left_out_host_is_named_in_proof_and_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = deployable_node(dir.path());
    let hosts: Vec<Host> = ["pf-a", "pf-b", "pf-gone"]
        .iter()
        .map(|n| local_host(dir.path(), n))
        .collect();
    let _guard = FleetGuard {
        hosts: hosts.clone(),
    };
    // Deploy two of the three: the third host never gets a node.
    let deployed = dir.path().join("deployed.toml");
    write_inventory(&deployed, &hosts[..2]);
    let out = soak(&[
        "deploy",
        "-i",
        &deployed.to_string_lossy(),
        "--binary",
        &node.to_string_lossy(),
        "--ready-timeout",
        "30s",
    ]);
    assert!(out.status.success(), "deploy: {}", texts(&out).1);
    let inv = dir.path().join("fleet.toml");
    write_inventory(&inv, &hosts);
    let inv_s = inv.to_string_lossy().into_owned();
    let run = |proof: &str, extra: &[&str]| {
        let proof = dir.path().join(proof);
        let mut args = vec![
            "run",
            "-i",
            &inv_s,
            "--duration",
            "2s",
            "--interval",
            "1s",
            "--sample-interval",
            "500ms",
            "--scenarios",
            "baseline",
            "--label",
            "partial",
            "--events",
            "jsonl",
            "--start-timeout",
            "15s",
        ];
        args.extend_from_slice(extra);
        let proof_s = proof.to_string_lossy().into_owned();
        args.extend_from_slice(&["--proof-dir", &proof_s]);
        (soak(&args), proof)
    };

    // Default policy: every host must be reached.
    let (out, _) = run("proof-strict", &[]);
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(
        stderr.contains("failed on 1 of 3 hosts (pf-gone)") && stderr.contains("--min-hosts"),
        "{stderr}"
    );

    // --min-hosts 2: the soak runs on the two deployed hosts and says so everywhere.
    let (out, proof) = run("proof-partial", &["--min-hosts", "2"]);
    let (stdout, stderr) = texts(&out);
    let code = out.status.code();
    // A verdict on part of the inventory is never GO: the `coverage` soak bar is UNKNOWN.
    assert!(
        matches!(code, Some(1 | 2)),
        "a judged, never-GO run expected, got {code:?}: {stderr}"
    );
    // The event stream: fleet_coverage before fleet_ready.
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let coverage_at = events
        .iter()
        .position(|e| e["event"] == "fleet_coverage")
        .unwrap_or_else(|| panic!("no fleet_coverage event: {stdout}"));
    let ready_at = events
        .iter()
        .position(|e| e["event"] == "fleet_ready")
        .expect("fleet_ready");
    assert!(coverage_at < ready_at);
    let coverage = &events[coverage_at];
    assert_eq!(coverage["inventory_hosts"], 3, "{coverage}");
    assert_eq!(coverage["reached"], 2, "{coverage}");
    assert_eq!(coverage["missing"][0]["host"], "pf-gone", "{coverage}");
    assert!(
        coverage["missing"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("host `pf-gone`")),
        "{coverage}"
    );
    assert_eq!(events[ready_at]["nodes"].as_array().map(Vec::len), Some(2));
    // stderr: the warning at start, the table, and the final warning naming the host.
    assert!(
        stderr.contains(
            "warning: partial fleet: running on 2 of 3 inventory hosts (missing: pf-gone)"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "PARTIAL FLEET: the verdict covers 2 of 3 inventory hosts (missing: pf-gone)"
        ) && stderr.contains("2 nodes, 2 of 3 inventory hosts (missing: pf-gone))"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "soak: warning: partial fleet: the verdict covers 2 of 3 inventory hosts; left out: pf-gone"
        ),
        "{stderr}"
    );
    // The proof: run.json coverage (hashed in the manifest), summary.md, config.json.
    let read = soak_proofs::read(&proof).expect("proof readable");
    let recorded = read.meta.coverage.expect("coverage in run.json");
    assert_eq!((recorded.inventory_hosts, recorded.reached), (3, 2));
    assert_eq!(recorded.missing.len(), 1);
    assert_eq!(recorded.missing[0].host, "pf-gone");
    assert_eq!(read.meta.config["min_hosts"], 2);
    let summary = std::fs::read_to_string(proof.join("summary.md")).expect("summary.md");
    assert!(
        summary.contains("— partial fleet, 2 of 3 inventory hosts")
            && summary.contains("## Hosts left out")
            && summary.contains("| pf-gone |"),
        "{summary}"
    );
    let manifest = read.manifest.expect("sealed");
    assert!(manifest.files.contains_key("run.json"), "{manifest:?}");
    let verify = soak(&["verify", &proof.to_string_lossy()]);
    assert!(verify.status.success(), "verify: {}", texts(&verify).1);
    let verdict: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(proof.join("verdict.json")).expect("verdict.json"),
    )
    .expect("verdict.json is JSON");
    let bar = verdict["soak_bars"]
        .as_array()
        .and_then(|bars| bars.iter().find(|b| b["bar"] == "coverage"))
        .unwrap_or_else(|| panic!("no coverage bar: {verdict}"));
    assert_eq!(bar["verdict"], "UNKNOWN", "{bar}");
    assert!(
        bar["reason"].as_str().is_some_and(|r| r.contains("2 of 3")),
        "{bar}"
    );
    // Re-scoring the stored proof sees the same partial fleet (coverage comes from run.json).
    let score = soak(&["score", &proof.to_string_lossy()]);
    assert_eq!(score.status.code(), code, "score: {}", texts(&score).0);
}
