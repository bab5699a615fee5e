//! The rough edges a new user hits, each driven through the real `soak` binary: closed pipes,
//! deploy without `--binary`, `lab status` without root, help texts, `gates list|show`,
//! `inventory --list|--graph`, `--limit` host patterns, warnings for unsupported Ansible
//! variables, the `--label` default and `status --min-hosts`.

// Tests may print with the std macros: a closed pipe there is not a user path.
#![allow(clippy::disallowed_macros)]

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use soak_gates::testkit::{FleetBuilder, bump, span};
use soak_inventory::testing::{
    find_tool, free_port, free_udp_port, is_root, skip_unless_available,
};
use soak_inventory::{Connection, Host, ServiceManager};
use support::{FleetGuard, deployable_node, soak, soak_bin, texts, write_inventory, write_proof};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../inventory/tests/fixtures")
        .join(name)
}

/// A sealed proof that is NO-GO under broad-launch (one outbound high-water event).
fn no_go_proof(dir: &Path) -> PathBuf {
    let mut obs = FleetBuilder::new(3, 40).build();
    let (s1, _) = span(&obs, 1);
    bump(
        &mut obs,
        "node-2",
        "outbound_high_water_total",
        s1 + 20_000,
        1,
    );
    let proof = dir.join("proof");
    write_proof(&proof, &obs, "broad-launch", "edges", true);
    proof
}

fn plain(args: &[&str]) -> Command {
    let mut command = Command::new(soak_bin());
    command
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("SOAK_NODE_BIN")
        .env_remove("SOAK_LAB_DIR")
        .env_remove("SOAK_LAB_NAME")
        .stdin(Stdio::null());
    command
}

/// Runs `args` with stdout (or stderr) connected to a pipe whose reader is already closed:
/// every write fails with EPIPE. Returns (exit code, stderr or stdout text).
fn with_closed(args: &[&str], close_stdout: bool) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut command = plain(args);
    let mut child = if close_stdout {
        command.stdout(writer).stderr(Stdio::piped()).spawn()
    } else {
        command.stderr(writer).stdout(Stdio::piped()).spawn()
    }
    .expect("spawn soak");
    let mut text = String::new();
    if let Some(mut out) = child.stderr.take() {
        let _ = out.read_to_string(&mut text);
    }
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut text);
    }
    let status = child.wait().expect("wait");
    (status.code(), text)
}

#[test]
fn every_command_is_quiet_and_correct_on_a_closed_stdout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let proof = no_go_proof(dir.path());
    let other = dir.path().join("other");
    write_proof(
        &other,
        &FleetBuilder::new(3, 40).build(),
        "broad-launch",
        "other",
        true,
    );
    let (p, o) = (proof.to_string_lossy(), other.to_string_lossy());
    let ini = fixture("fleet.ini");
    let ini = ini.to_string_lossy();
    let lab_dir = dir.path().join("no-lab");
    std::fs::create_dir(&lab_dir).expect("lab dir");
    let lab = lab_dir.to_string_lossy();
    let name = format!("soakce{}", std::process::id());
    let cases: Vec<Vec<&str>> = vec![
        vec!["score", &p],
        vec!["score", &p, "--json"],
        vec!["verify", &p],
        vec!["verify", &p, "--json"],
        vec!["compare", &o, &p],
        vec!["compare", &o, &p, "--json"],
        vec!["gates", "list"],
        vec!["gates", "show", "broad-launch"],
        vec!["inventory", "-i", &ini, "--list"],
        vec!["inventory", "-i", &ini, "--graph"],
        vec!["lab", "status", "--dir", &lab, "--name", &name],
        vec!["--help"],
        vec!["run", "--help"],
        vec!["--version"],
    ];
    for args in cases {
        // The exit code with an open stdout is the one to keep.
        let want = plain(&args).output().expect("run").status.code();
        let (code, stderr) = with_closed(&args, true);
        assert_ne!(code, Some(101), "{args:?} panicked: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("Broken pipe"),
            "{args:?} is not quiet: {stderr}"
        );
        assert_eq!(
            code, want,
            "{args:?}: the exit code must not change: {stderr}"
        );
    }
}

#[test]
fn errors_on_a_closed_stderr_keep_their_exit_code() {
    let (code, _) = with_closed(&["score", "/nonexistent/proof"], false);
    assert_eq!(code, Some(64));
    let (code, _) = with_closed(&["run", "--nodes", "1"], false);
    assert_eq!(code, Some(64));
}

#[test]
fn score_piped_into_head_ends_with_the_verdict_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let proof = no_go_proof(dir.path());
    let out = Command::new("bash")
        .arg("-o")
        .arg("pipefail")
        .arg("-c")
        .arg(format!(
            "'{}' score '{}' | head -n 1",
            soak_bin().display(),
            proof.display()
        ))
        .output()
        .expect("bash");
    let (stdout, stderr) = texts(&out);
    assert!(stdout.starts_with("proof "), "{stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        out.status.code(),
        Some(1),
        "NO-GO through the pipe: {stderr}"
    );
}

/// A directory on the same filesystem as the `soak` binary, so it can be hard-linked there
/// (a copy of a ~130 MB debug binary per test would be slow).
fn exe_dir() -> tempfile::TempDir {
    let target = soak_bin()
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    tempfile::tempdir_in(target).expect("tempdir next to the binaries")
}

fn link_or_copy(from: &Path, to: &Path) {
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).expect("copy binary");
    }
}

#[test]
fn deploy_without_binary_never_runs_cargo() {
    let dir = exe_dir();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("bin");
    let soak = bin.join("soak");
    link_or_copy(&soak_bin(), &soak);
    // A `cargo` on PATH that records being run.
    let marker = dir.path().join("cargo-ran");
    let fake = dir.path().join("path");
    std::fs::create_dir(&fake).expect("path dir");
    let cargo = fake.join("cargo");
    std::fs::write(
        &cargo,
        format!("#!/bin/sh\ntouch '{}'\nexit 1\n", marker.display()),
    )
    .expect("fake cargo");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let inv = dir.path().join("fleet.toml");
    let mut host = Host::with_defaults("h1", "127.0.0.1");
    host.ssh.port = free_port();
    write_inventory(&inv, &[host]);
    let path = format!("{}:/usr/bin:/bin", fake.display());

    // No soak-node next to soak, none on PATH: a clear error, no build.
    let out = Command::new(&soak)
        .args(["deploy", "-i", &inv.to_string_lossy()])
        .env("PATH", &path)
        .env_remove("SOAK_NODE_BIN")
        .output()
        .expect("soak");
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(
        stderr.contains("soak-node not found") && stderr.contains("--build"),
        "{stderr}"
    );
    assert!(!marker.exists(), "deploy ran cargo without --build");

    // A soak-node next to soak is used as it is (the deploy then fails on the closed port).
    let node = bin.join("soak-node");
    link_or_copy(&support::node_bin(), &node);
    let out = Command::new(&soak)
        .args([
            "deploy",
            "-i",
            &inv.to_string_lossy(),
            "--connect-timeout",
            "2s",
        ])
        .env("PATH", &path)
        .env_remove("SOAK_NODE_BIN")
        .output()
        .expect("soak");
    let (_, stderr) = texts(&out);
    assert!(
        stderr.contains(&format!("deploying {}", node.display())),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(69), "h1 is unreachable: {stderr}");
    assert!(!marker.exists(), "deploy ran cargo without --build");

    // --build runs cargo (here the fake one, which fails) and says so.
    let out = Command::new(&soak)
        .args(["deploy", "-i", &inv.to_string_lossy(), "--build"])
        .env("PATH", &path)
        .output()
        .expect("soak");
    let (_, stderr) = texts(&out);
    assert!(marker.exists(), "--build must build");
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(stderr.contains("building soak-node failed"), "{stderr}");
}

#[test]
fn lab_status_without_root_says_there_is_no_lab() {
    let dir = tempfile::tempdir().expect("tempdir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let lab = dir.path().join("lab");
    std::fs::create_dir(&lab).expect("lab dir");
    std::fs::set_permissions(&lab, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let name = format!("soakce{}", std::process::id());
    let args = [
        "lab",
        "status",
        "--dir",
        &lab.to_string_lossy(),
        "--name",
        &name,
    ];
    let mut command = if is_root() {
        // Drop to `nobody` for real: the command must not need root.
        let setpriv = find_tool("setpriv");
        let missing = setpriv
            .is_none()
            .then(|| "`setpriv` is not installed (needed to drop root)".to_string());
        if !skip_unless_available("lab status as nobody", missing) {
            return;
        }
        // Present: the rule passed only because nothing was missing.
        let Some(setpriv) = setpriv else { return };
        let mut c = Command::new(setpriv);
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(soak_bin())
            .args(args);
        c
    } else {
        let mut c = Command::new(soak_bin());
        c.args(args);
        c
    };
    let out = command.env_remove("SOAK_LAB_DIR").output().expect("run");
    let (stdout, stderr) = texts(&out);
    if is_root()
        && stderr.starts_with("setpriv:")
        && !skip_unless_available(
            "lab status as nobody",
            Some(format!("setpriv cannot drop privileges here: {stderr}")),
        )
    {
        return;
    }
    assert!(
        !stderr.contains("root"),
        "status must not need root: {stderr}"
    );
    assert!(
        stdout.starts_with("no lab — run `soak lab up`"),
        "{stdout}\n{stderr}"
    );
    assert_eq!(out.status.code(), Some(69), "not up: {stderr}");
}

/// Every `<PLACEHOLDER>` in the help texts, checked against the one style.
const PLACEHOLDERS: &[&str] = &[
    "PATH",
    "DIR",
    "DURATION",
    "N",
    "NAME",
    "NAMES",
    "PATTERN",
    "FORMAT",
    "HOST",
    "LABEL",
    "RATE",
    "LEVEL",
    "FRACTION",
    "A",
    "BASE",
    "CANDIDATE",
    "COMMAND",
    "COMMAND>...",
    "ARG",
];

#[test]
fn help_texts_snapshot_with_examples_one_placeholder_style_and_limits() {
    let commands: &[&[&str]] = &[
        &[],
        &["run"],
        &["score"],
        &["compare"],
        &["verify"],
        &["samples"],
        &["deploy"],
        &["status"],
        &["stop"],
        &["logs"],
        &["inventory"],
        &["gates"],
        &["gates", "show"],
        &["scenarios"],
        &["scenarios", "show"],
        &["report"],
        &["export"],
        &["watch"],
        &["lab"],
        &["lab", "up"],
        &["lab", "down"],
        &["lab", "status"],
        &["lab", "exec"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let out = plain(&args).output().expect("help");
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        for (i, _) in text.match_indices('<') {
            let rest = &text[i + 1..];
            let Some(end) = rest.find('>') else { continue };
            let inner = &rest[..end];
            if inner.chars().all(|c| c.is_ascii_uppercase() || c == '_') && !inner.is_empty() {
                assert!(
                    PLACEHOLDERS.contains(&inner),
                    "{args:?}: placeholder <{inner}> is not one of {PLACEHOLDERS:?}"
                );
            }
        }
        // Every command and command group carries examples (the lab's are on `soak lab`).
        if !matches!(command, ["lab", _]) {
            assert!(text.contains("Example"), "{args:?} has no example:\n{text}");
        }
        let name = if command.is_empty() {
            "soak".to_string()
        } else {
            format!("soak-{}", command.join("-"))
        };
        insta::assert_snapshot!(name, text);
    }
    let run = String::from_utf8_lossy(&plain(&["run", "--help"]).output().expect("help").stdout)
        .into_owned();
    assert!(run.contains("2–200"), "--nodes states its limits");
    assert!(
        run.contains("at least 100ms"),
        "--sample-interval states its floor"
    );
}

#[test]
fn gates_show_prints_toml_that_loads_back_and_scores_the_same() {
    let dir = tempfile::tempdir().expect("tempdir");
    let proof = no_go_proof(dir.path());
    let list = plain(&["gates", "list"]).output().expect("list");
    let listed = String::from_utf8_lossy(&list.stdout).into_owned();
    for name in soak_gates::Profile::builtin_names() {
        assert!(listed.contains(name), "{listed}");
        let out = plain(&["gates", "show", name]).output().expect("show");
        assert!(out.status.success());
        let file = dir.path().join(format!("{name}.toml"));
        std::fs::write(&file, &out.stdout).expect("write");
        let text = std::fs::read_to_string(&file).expect("read");
        let loaded = soak_gates::Profile::from_toml_str(&text, "file").expect("loads back");
        let builtin = soak_gates::Profile::builtin(name).expect("builtin");
        assert_eq!(loaded.bars, builtin.bars);
        assert_eq!(loaded.adaptive, builtin.adaptive);
        assert_eq!(loaded.evidence, builtin.evidence);
        assert_eq!(loaded.soak, builtin.soak);
        let p = proof.to_string_lossy();
        let by_name = plain(&["score", &p, "--gate", name, "--json"])
            .output()
            .expect("score");
        let by_file = plain(&[
            "score",
            &p,
            "--gate-file",
            &file.to_string_lossy(),
            "--json",
        ])
        .output()
        .expect("score");
        assert_eq!(by_name.status.code(), by_file.status.code());
        assert_eq!(
            by_name.stdout, by_file.stdout,
            "{name}: same verdict from the file"
        );
    }
    let out = plain(&["gates", "show", "nope"]).output().expect("show");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("broad-launch"));
}

#[test]
fn inventory_list_and_graph_resolve_without_connecting() {
    let ini = fixture("fleet.ini");
    let ini = ini.to_string_lossy();
    let out = plain(&["inventory", "-i", &ini, "--list"])
        .output()
        .expect("list");
    assert!(out.status.success(), "{}", texts(&out).1);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let hostvars = doc["_meta"]["hostvars"].as_object().expect("hostvars");
    let yaml = fixture("fleet.yml");
    let from_yaml = plain(&["inventory", "-i", &yaml.to_string_lossy(), "--list"])
        .output()
        .expect("list");
    let yaml_doc: serde_json::Value = serde_json::from_slice(&from_yaml.stdout).expect("JSON");
    assert_eq!(
        doc["_meta"], yaml_doc["_meta"],
        "one fleet written two ways resolves to the same settings"
    );
    let some = hostvars.values().next().expect("a host");
    for key in [
        "address",
        "ssh_user",
        "ssh_port",
        "install_dir",
        "api_port",
        "groups",
    ] {
        assert!(
            some.get(key).is_some(),
            "effective setting {key} missing: {some}"
        );
    }
    assert!(doc["all"]["children"].is_array());
    let graph = plain(&["inventory", "-i", &ini, "--graph"])
        .output()
        .expect("graph");
    let text = String::from_utf8_lossy(&graph.stdout).into_owned();
    assert!(text.starts_with("@all:\n  |--@"), "{text}");
    for name in hostvars.keys() {
        assert!(
            text.contains(&format!("--{name}")),
            "{name} missing from\n{text}"
        );
    }
    // --limit narrows the view; a pattern selecting nothing is a usage error.
    let first = hostvars.keys().next().expect("host").clone();
    let out = plain(&[
        "inventory",
        "-i",
        &ini,
        "--list",
        "--limit",
        &format!("!{first}"),
    ])
    .output()
    .expect("list");
    let limited: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(limited["_meta"]["hostvars"].get(&first).is_none());
    assert_eq!(
        limited["_meta"]["hostvars"].as_object().map(|m| m.len()),
        Some(hostvars.len() - 1)
    );
    let out = plain(&["inventory", "-i", &ini, "--graph", "--limit", "nope*"])
        .output()
        .expect("graph");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("selects no host"));
}

#[test]
fn unsupported_reach_variables_are_named_by_every_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = dir.path().join("bastion.ini");
    // ProxyJump and become are supported (applied, no warning); a password login and a become
    // password are not: each is named with its line, by every command that reads inventories.
    std::fs::write(
        &inv,
        "[web]\nweb1 ansible_host=192.0.2.1 ansible_ssh_common_args='-o ProxyJump=jump' ansible_ssh_pass=x\n\
         [web:vars]\nansible_become=yes\nansible_become_pass=y\n",
    )
    .expect("inventory");
    let inv_s = inv.to_string_lossy();
    for args in [
        vec!["inventory", "-i", &inv_s, "--graph"],
        vec!["status", "-i", &inv_s, "--limit", "nothing-matches"],
    ] {
        let out = plain(&args).output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            stderr.contains(&format!("{}:2: `ansible_ssh_pass`", inv.display())),
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.contains(&format!("{}:5: `ansible_become_pass`", inv.display())),
            "{args:?}: {stderr}"
        );
        assert!(
            !stderr.contains("`ansible_ssh_common_args`") && !stderr.contains("`ansible_become`"),
            "supported variables must not warn: {stderr}"
        );
    }
}

/// Three hosts named web-1, web-2, db-1 on loopback ports nothing listens on.
fn unreachable_inventory(dir: &Path, file: &str) -> PathBuf {
    let hosts: Vec<Host> = ["web-1", "web-2", "db-1"]
        .iter()
        .map(|name| {
            let mut h = Host::with_defaults(name, "127.0.0.1");
            h.ssh.port = free_port();
            h.groups = vec![name.split('-').next().unwrap_or("x").to_string()];
            h.install_dir = format!("/opt/soak-{name}");
            h
        })
        .collect();
    let path = dir.join(file);
    // Native TOML with groups, so the patterns can name them.
    let mut text = String::new();
    for h in &hosts {
        text.push_str(&format!(
            "[[hosts]]\nname = \"{}\"\naddress = \"127.0.0.1\"\nssh_port = {}\ninstall_dir = \"{}\"\ngroups = [\"{}\"]\n",
            h.name, h.ssh.port, h.install_dir, h.groups[0]
        ));
    }
    text.push_str("[groups.web]\n[groups.db]\n");
    std::fs::write(&path, text).expect("inventory");
    path
}

#[test]
fn limit_selects_hosts_for_status_stop_deploy_logs_and_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = unreachable_inventory(dir.path(), "edge-fleet.toml");
    let inv_s = inv.to_string_lossy().to_string();
    let timeout = ["--connect-timeout", "2s"];

    let mut args = vec!["status", "-i", &inv_s, "--limit", "web:!web-2", "--json"];
    args.extend(timeout);
    let out = plain(&args).output().expect("status");
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON rows");
    let names: Vec<&str> = rows
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["host"].as_str())
        .collect();
    assert_eq!(names, ["web-1"]);
    assert_eq!(out.status.code(), Some(69));

    let mut args = vec!["stop", "-i", &inv_s, "--limit", "*-1"];
    args.extend(timeout);
    let out = plain(&args).output().expect("stop");
    let (stdout, stderr) = texts(&out);
    assert!(
        stdout.contains("web-1") && stdout.contains("db-1"),
        "{stdout}"
    );
    assert!(!stdout.contains("web-2"), "{stdout}");
    assert!(stderr.contains("on 2 of 2 hosts"), "{stderr}");

    let mut args = vec![
        "deploy", "-i", &inv_s, "--binary", "/bin/sh", "--limit", "db",
    ];
    args.extend(timeout);
    let out = plain(&args).output().expect("deploy");
    let (_, stderr) = texts(&out);
    assert!(
        stderr.contains("to 1 hosts") && stderr.contains("(db-1)"),
        "{stderr}"
    );

    let mut args = vec!["logs", "-i", &inv_s, "--limit", "web"];
    args.extend(timeout);
    let out = plain(&args).output().expect("logs");
    let (stdout, stderr) = texts(&out);
    assert!(
        stdout.contains("==> web-1 <==") && stdout.contains("==> web-2 <=="),
        "{stdout}"
    );
    assert!(stderr.contains("(web-1, web-2)"), "{stderr}");

    // run: a pattern matching nothing is a usage error before anything starts; otherwise
    // only the selected hosts are contacted, and the label defaults to the inventory's name.
    let cwd = dir.path().join("cwd");
    std::fs::create_dir(&cwd).expect("cwd");
    let out = plain(&["run", "-i", &inv_s, "--limit", "nope"])
        .current_dir(&cwd)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64), "{}", texts(&out).1);
    assert!(
        !cwd.join("proofs").exists(),
        "a usage error creates no proof directory"
    );
    let out = plain(&[
        "run",
        "-i",
        &inv_s,
        "--limit",
        "web",
        "--duration",
        "1s",
        "--interval",
        "1s",
        "--sample-interval",
        "1s",
        "--start-timeout",
        "5s",
    ])
    .current_dir(&cwd)
    .output()
    .expect("run");
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(
        stderr.contains("web-1") && stderr.contains("web-2"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("db-1"),
        "db-1 is outside --limit: {stderr}"
    );
    let proofs: Vec<String> = std::fs::read_dir(cwd.join("proofs"))
        .expect("a proof of the failed run")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    assert_eq!(proofs.len(), 1, "{proofs:?}");
    assert!(
        proofs[0].ends_with("-edge-fleet"),
        "label from the inventory name: {proofs:?}"
    );
    let config = std::fs::read_to_string(cwd.join("proofs").join(&proofs[0]).join("config.json"))
        .expect("config.json");
    assert!(
        config.contains("\"limit\": \"web\""),
        "the limit is recorded: {config}"
    );
}

fn local_hosts(root: &Path, n: usize) -> Vec<Host> {
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
fn status_min_hosts_passes_on_enough_ready_hosts_and_names_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = deployable_node(dir.path());
    let hosts = local_hosts(dir.path(), 3);
    let _guard = FleetGuard {
        hosts: hosts.clone(),
    };
    let inv = dir.path().join("fleet.toml");
    write_inventory(&inv, &hosts);
    let inv_s = inv.to_string_lossy().to_string();
    let node_s = node.to_string_lossy().to_string();
    // Deploy two of the three hosts (--limit); local-2 never gets a node.
    let out = soak(&[
        "deploy",
        "-i",
        &inv_s,
        "--binary",
        &node_s,
        "--limit",
        "local-0,local-1",
        "--ready-timeout",
        "30s",
    ]);
    assert!(out.status.success(), "{}", texts(&out).1);
    assert!(
        !Path::new(&hosts[2].install_dir)
            .join("bin/soak-node")
            .exists()
    );

    let out = soak(&["status", "-i", &inv_s]);
    let (_, stderr) = texts(&out);
    assert_eq!(
        out.status.code(),
        Some(69),
        "every host must be ready: {stderr}"
    );
    assert!(stderr.contains("local-2"), "{stderr}");

    let out = soak(&["status", "-i", &inv_s, "--min-hosts", "2"]);
    let (stdout, stderr) = texts(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "2 of 3 ready is enough: {stderr}"
    );
    assert!(
        stderr.contains("warning") && stderr.contains("local-2"),
        "{stderr}"
    );
    assert!(
        stdout.contains("local-0") && stdout.contains("local-2"),
        "all hosts shown: {stdout}"
    );

    let out = soak(&["status", "-i", &inv_s, "--min-hosts", "3"]);
    assert_eq!(out.status.code(), Some(69), "{}", texts(&out).1);
}
