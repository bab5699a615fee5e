//! The network-namespace lab, for real: `soak lab up` builds namespaces, a bridge and one sshd
//! per host; these tests log in over SSH with strict host-key checking, cut traffic between two
//! hosts with iptables inside a host namespace, and check `down` leaves nothing behind.
//!
//! Needs root, iproute2 with `ip netns`, openssh-server and openssh-client (CI has them); skips
//! with a printed reason otherwise. Every lab has its own directory and name, so the tests run in
//! parallel, and a Drop guard always runs `soak lab down`.

// Tests may print with the std macros: a closed pipe there is not a user path.
#![allow(clippy::disallowed_macros)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

mod support;
use support::soak_bin;

/// Deadline of any one command these tests run.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

use soak_inventory::testing::{Prerequisite, prerequisites, skip_unless_available};

/// The lab plus iptables (the partition step runs iptables inside a host namespace).
const LAB_WITH_IPTABLES: &[Prerequisite] = &[
    Prerequisite::Root,
    Prerequisite::Tool("ip"),
    Prerequisite::Tool("sshd"),
    Prerequisite::Tool("ssh"),
    Prerequisite::Tool("ssh-keygen"),
    Prerequisite::Tool("iptables"),
    Prerequisite::Netns,
];

macro_rules! require_lab {
    () => {
        if !skip_unless_available(
            "lab (root, iproute2, openssh, iptables)",
            prerequisites(LAB_WITH_IPTABLES),
        ) {
            return;
        }
    };
}

/// Runs `command` with a deadline.
fn run(command: &mut Command) -> Output {
    let mut cmd = assert_cmd::Command::from_std(std::mem::replace(command, Command::new("true")));
    cmd.timeout(STEP_TIMEOUT);
    cmd.output().expect("command runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn namespaces() -> Vec<String> {
    let out = run(Command::new("ip").args(["netns", "list"]));
    text(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn pid_alive(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// One lab with its own directory and name; torn down on drop.
struct Lab {
    dir: PathBuf,
    name: String,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        let pid = std::process::id();
        let lab = Lab {
            dir: PathBuf::from(format!("/tmp/slt-{pid}-{tag}")),
            name: format!("soakt{}{tag}", pid % 1_000_000),
        };
        // A leftover from a crashed earlier run with the same pid would confuse the test.
        lab.soak(&["lab", "down"]);
        lab
    }

    fn soak(&self, args: &[&str]) -> Output {
        run(Command::new(soak_bin())
            .args(args)
            .env("SOAK_LAB_DIR", &self.dir)
            .env("SOAK_LAB_NAME", &self.name))
    }

    fn soak_ok(&self, args: &[&str]) -> Output {
        let out = self.soak(args);
        assert!(
            out.status.success(),
            "soak {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        out
    }

    fn up(&self, hosts: usize) -> Value {
        let out = self.soak_ok(&["lab", "up", "--hosts", &hosts.to_string(), "--json"]);
        serde_json::from_slice(&out.stdout).expect("`lab up --json` prints JSON")
    }

    fn namespaces(&self) -> Vec<String> {
        let prefix = format!("{}-", self.name);
        namespaces()
            .into_iter()
            .filter(|ns| ns.starts_with(&prefix))
            .collect()
    }

    /// ssh options for a strict login with the lab's key and known_hosts.
    fn ssh_args(&self, address: &str) -> Vec<String> {
        let mut args: Vec<String> = [
            "-i",
            &self.dir.join("id_ed25519").to_string_lossy(),
            "-o",
            &format!(
                "UserKnownHostsFile={}",
                self.dir.join("known_hosts").display()
            ),
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=3",
            "-F",
            "/dev/null",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(format!("root@{address}"));
        args
    }

    /// `ssh` from namespace `from` to `address`, running `remote`.
    fn ssh_from(&self, from: &str, address: &str, remote: &[&str]) -> Output {
        run(Command::new("ip")
            .args(["netns", "exec", from, "ssh"])
            .args(self.ssh_args(address))
            .args(remote))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = self.soak(&["lab", "down"]);
        if !out.status.success() {
            eprintln!("lab down in Drop failed: {}", text(&out.stderr));
        }
    }
}

/// Root-namespace facts that must not change: its addresses, routes and links.
fn root_namespace_view() -> (String, String, Vec<String>) {
    let addrs = text(&run(Command::new("ip").args(["-o", "addr", "show"])).stdout);
    let routes = text(&run(Command::new("ip").args(["route", "show", "table", "all"])).stdout);
    let links = text(&run(Command::new("ip").args(["-o", "link", "show"])).stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|name| name.trim().to_owned())
        .collect();
    (addrs, routes, links)
}

#[test]
fn lab_hosts_accept_strict_ssh_reach_each_other_and_can_be_partitioned() {
    require_lab!();
    let (_, _, links_before) = root_namespace_view();
    let lab = Lab::new("a");
    let state = lab.up(3);

    let hosts = state["hosts"].as_array().expect("hosts").clone();
    assert_eq!(hosts.len(), 3);
    let ctl = state["controller"]["namespace"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(ctl, format!("{}-ctl", lab.name));
    let inventory = PathBuf::from(state["inventory"].as_str().unwrap());
    assert_eq!(inventory, lab.dir.join("inventory.toml"));
    assert!(inventory.is_file());
    // The inventory parses with soak's own parser and names the same hosts as the state.
    let parsed = soak_inventory::Inventory::load(&inventory).expect("lab inventory parses");
    let names: Vec<(&str, &str)> = parsed
        .hosts
        .iter()
        .map(|h| (h.name.as_str(), h.address.as_str()))
        .collect();
    let recorded: Vec<(&str, &str)> = hosts
        .iter()
        .map(|h| (h["name"].as_str().unwrap(), h["address"].as_str().unwrap()))
        .collect();
    assert_eq!(names, recorded);

    // status --json reports the inventory path and every sshd alive.
    let out = lab.soak_ok(&["lab", "status", "--json"]);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["up"], true);
    assert_eq!(status["inventory"].as_str(), inventory.to_str());
    assert!(
        status["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["alive"] == true)
    );

    // From the controller namespace, a strict key login reaches each host's own namespace.
    for host in &hosts {
        let address = host["address"].as_str().unwrap();
        let mut args = vec!["lab", "exec", "--", "ssh"];
        let ssh_args = lab.ssh_args(address);
        args.extend(ssh_args.iter().map(String::as_str));
        args.extend(["ip", "netns", "identify"]);
        let out = lab.soak_ok(&args);
        assert_eq!(
            text(&out.stdout).trim(),
            host["namespace"].as_str().unwrap(),
            "ssh to {address} landed in the wrong namespace"
        );
    }

    // Strict checking is real: without the lab's known_hosts the same login is refused.
    let h1 = hosts[0]["address"].as_str().unwrap().to_owned();
    let out = run(Command::new("ip")
        .args(["netns", "exec", &ctl, "ssh"])
        .args([
            "-i",
            &lab.dir.join("id_ed25519").to_string_lossy(),
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-F",
            "/dev/null",
            &format!("root@{h1}"),
            "true",
        ]));
    assert!(!out.status.success(), "login without known_hosts succeeded");
    assert!(
        text(&out.stderr).contains("Host key verification failed"),
        "{}",
        text(&out.stderr)
    );

    // The ssh -F config the lab writes works too.
    let ssh_config = state["ssh_config"].as_str().unwrap();
    let out = lab.soak_ok(&[
        "lab", "exec", "--", "ssh", "-F", ssh_config, "h2", "ip", "netns", "identify",
    ]);
    assert_eq!(
        text(&out.stdout).trim(),
        hosts[1]["namespace"].as_str().unwrap()
    );

    // exec runs in the controller namespace and passes the exit code through.
    let out = lab.soak(&["lab", "exec", "--", "sh", "-c", "ip netns identify; exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(text(&out.stdout).trim(), ctl);

    // The root namespace has no lab address, route or interface.
    let (addrs, routes, links_after) = root_namespace_view();
    assert!(
        !addrs.contains("198.18.0."),
        "lab address in root ns:\n{addrs}"
    );
    assert!(
        !routes.contains("198.18.0."),
        "lab route in root ns:\n{routes}"
    );
    // The lab's IPv6 prefix neither.
    assert!(
        !addrs.contains("fd00:198:18"),
        "lab IPv6 address in root ns:\n{addrs}"
    );
    assert!(
        !routes.contains("fd00:198:18"),
        "lab IPv6 route in root ns:\n{routes}"
    );
    let new_links: Vec<&String> = links_after
        .iter()
        .filter(|l| !links_before.contains(l))
        .collect();
    assert!(new_links.is_empty(), "new links in root ns: {new_links:?}");

    // Both families: h2 answers SSH on its IPv6 address too (known_hosts lists it).
    let h2_v6 = hosts[1]["address6"].as_str().unwrap().to_owned();
    assert!(h2_v6.starts_with("fd00:198:18::"), "{h2_v6}");
    let out = lab.ssh_from(&ctl, &h2_v6, &["ip", "netns", "identify"]);
    assert!(out.status.success(), "ssh over IPv6: {}", text(&out.stderr));

    // Hosts reach each other: h1 → h2 over SSH.
    let (h1_ns, h2_ns) = (
        hosts[0]["namespace"].as_str().unwrap().to_owned(),
        hosts[1]["namespace"].as_str().unwrap().to_owned(),
    );
    let h2 = hosts[1]["address"].as_str().unwrap().to_owned();
    let out = lab.ssh_from(&h1_ns, &h2, &["ip", "netns", "identify"]);
    assert!(out.status.success(), "h1 → h2: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), h2_ns);

    // An iptables rule inside h2 cuts h1 → h2 but not controller → h2; removing it heals.
    let rule = [
        "INPUT",
        "-s",
        &h1,
        "-m",
        "comment",
        "--comment",
        "soak-lab-test",
        "-j",
        "DROP",
    ];
    let iptables = |op: &str| {
        let out = run(Command::new("ip")
            .args(["netns", "exec", &h2_ns, "iptables", "-w", "5", op])
            .args(rule));
        assert!(out.status.success(), "iptables {op}: {}", text(&out.stderr));
    };
    iptables("-I");
    let cut = lab.ssh_from(&h1_ns, &h2, &["true"]);
    let still = lab.ssh_from(&ctl, &h2, &["true"]);
    iptables("-D");
    assert!(!cut.status.success(), "h1 → h2 passed the DROP rule");
    assert!(
        text(&cut.stderr).contains("timed out"),
        "{}",
        text(&cut.stderr)
    );
    assert!(
        still.status.success(),
        "ctl → h2 cut: {}",
        text(&still.stderr)
    );
    let healed = lab.ssh_from(&h1_ns, &h2, &["true"]);
    assert!(
        healed.status.success(),
        "h1 → h2 after heal: {}",
        text(&healed.stderr)
    );

    // A second up changes nothing: same sshd pids, same state.
    let again = lab.up(3);
    assert_eq!(again, state, "second up changed the lab");
    assert_eq!(lab.namespaces().len(), 5);

    // down removes every namespace, sshd and file; a second down is a no-op.
    let pids: Vec<u64> = hosts
        .iter()
        .map(|h| h["sshd_pid"].as_u64().unwrap())
        .collect();
    assert!(pids.iter().all(|&p| pid_alive(p)));
    lab.soak_ok(&["lab", "down"]);
    assert_eq!(lab.namespaces(), Vec::<String>::new());
    assert!(pids.iter().all(|&p| !pid_alive(p)), "an sshd survived down");
    assert!(!lab.dir.exists());
    let out = lab.soak_ok(&["lab", "down"]);
    assert!(text(&out.stdout).contains("nothing to remove"));
    let out = lab.soak(&["lab", "status", "--json"]);
    assert_eq!(out.status.code(), Some(69));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["up"], false);
}

#[test]
fn lab_down_kills_host_processes_and_cleans_a_lab_whose_state_is_lost() {
    require_lab!();
    let lab = Lab::new("b");
    let state = lab.up(2);
    let h1 = &state["hosts"][0];
    let h1_ns = h1["namespace"].as_str().unwrap().to_owned();

    // up with fewer hosts removes the extra one.
    let smaller = lab.up(1);
    assert_eq!(smaller["hosts"].as_array().unwrap().len(), 1);
    assert_eq!(smaller["hosts"][0]["sshd_pid"], h1["sshd_pid"]);
    assert_eq!(
        lab.namespaces().len(),
        3,
        "h2 left behind: {:?}",
        lab.namespaces()
    );
    let inventory = std::fs::read_to_string(lab.dir.join("inventory.toml")).unwrap();
    assert_eq!(inventory.matches("[[hosts]]").count(), 1);

    // A process started over SSH (as deploy starts a node) lives in h1's namespace.
    let address = h1["address"].as_str().unwrap();
    let ctl = state["controller"]["namespace"].as_str().unwrap();
    let out = lab.ssh_from(
        ctl,
        address,
        &["setsid sleep 120 </dev/null >/dev/null 2>&1 & echo $!"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let sleeper: u64 = text(&out.stdout).trim().parse().expect("pid");
    assert!(pid_alive(sleeper));

    // Lose the state file and leave a stray namespace with the lab's prefix.
    std::fs::remove_file(lab.dir.join("lab.json")).unwrap();
    let stray = format!("{}-h5", lab.name);
    assert!(
        run(Command::new("ip").args(["netns", "add", &stray]))
            .status
            .success()
    );
    let out = lab.soak(&["lab", "status", "--json"]);
    assert_eq!(out.status.code(), Some(69));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        status["stray_namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|ns| ns == &Value::from(stray.clone()))
    );

    lab.soak_ok(&["lab", "down"]);
    assert_eq!(lab.namespaces(), Vec::<String>::new());
    assert!(!pid_alive(sleeper), "the node-like process survived down");
    assert!(!pid_alive(h1["sshd_pid"].as_u64().unwrap()));
    assert!(!lab.dir.exists());
    assert!(!namespaces().contains(&h1_ns));
}

#[test]
fn lab_explains_what_it_needs() {
    let needs = [
        Prerequisite::Root,
        Prerequisite::Tool("setpriv"),
        Prerequisite::Tool("ip"),
    ];
    if !skip_unless_available(
        "lab_explains_what_it_needs (root and setpriv, to run soak unprivileged)",
        prerequisites(&needs),
    ) {
        return;
    }
    let dir = format!("/tmp/slt-{}-c", std::process::id());
    // As nobody: refused with exit 69, saying root is needed.
    let out = run(Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(soak_bin())
        .args(["lab", "up", "--hosts", "1", "--dir", &dir]));
    assert_eq!(out.status.code(), Some(69), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("root"), "{}", text(&out.stderr));

    // Without sshd: exit 69 naming the package to install.
    let out = run(Command::new(soak_bin())
        .args([
            "lab",
            "up",
            "--hosts",
            "1",
            "--dir",
            &dir,
            "--name",
            "soaktneed",
        ])
        .env("SOAK_LAB_SSHD", "/nonexistent/sshd"));
    assert_eq!(out.status.code(), Some(69), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("openssh-server"),
        "{}",
        text(&out.stderr)
    );

    // Bad names and directories are usage errors, before anything is touched.
    for args in [
        vec!["lab", "up", "--name", "not-soak", "--dir", &dir],
        vec!["lab", "up", "--dir", "relative/dir"],
        vec!["lab", "up", "--hosts", "0", "--dir", &dir],
        vec!["lab", "down", "--dir", "/"],
    ] {
        let out = run(Command::new(soak_bin()).args(&args));
        assert_eq!(
            out.status.code(),
            Some(64),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    assert!(!Path::new(&dir).exists());
}

#[test]
fn lab_guard_deletes_a_tagged_rule_when_renewals_stop() {
    require_lab!();
    let lab = Lab::new("d");
    let state = lab.up(1);
    let host = &state["hosts"][0];
    let (ns, address) = (
        host["namespace"].as_str().unwrap().to_owned(),
        host["address"].as_str().unwrap().to_owned(),
    );
    let ctl = state["controller"]["namespace"]
        .as_str()
        .unwrap()
        .to_owned();
    let install_dir = PathBuf::from(host["install_dir"].as_str().unwrap());
    let guard_dir = install_dir.join("guard");
    let node = support::node_bin();
    // The real `soak-node guard`, driven over SSH from the controller as the orchestrator does.
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let guard = |args: &str, input: Option<&Path>| {
        let redirect = input.map_or_else(String::new, |p| {
            format!(" < {}", quote(&p.to_string_lossy()))
        });
        let script = format!(
            "{} guard {args} --dir {}{redirect}",
            quote(&node.to_string_lossy()),
            quote(&guard_dir.to_string_lossy())
        );
        lab.ssh_from(&ctl, &address, &[&format!("sh -c {}", quote(&script))])
    };
    let rule = "INPUT -p tcp --dport 7999 -m comment --comment soak-dm-test -j DROP";
    let rule_present = || {
        run(Command::new("ip")
            .args(["netns", "exec", &ns, "iptables", "-w", "5", "-C"])
            .args(rule.split(' ')))
        .status
        .success()
    };
    let journal = install_dir.join("dmtest.json");
    std::fs::create_dir_all(&install_dir).unwrap();
    std::fs::write(
        &journal,
        serde_json::json!({
            "format": 1, "token": "dmtest", "run_id": "lab", "fault": "partition", "host": "h1",
            "created_unix_ms": 0,
            "steps": [{"what": "delete the rule", "script": format!("iptables -w 5 -D {rule} 2>/dev/null; true")}],
            "checks": [{"what": "rule gone", "script": format!("! iptables -w 5 -C {rule} 2>/dev/null")}],
        })
        .to_string(),
    )
    .unwrap();
    // Each renewal is a fresh SSH login (about 1 s here, more under CI load), so the lease leaves
    // room for several slow renewals in a row.
    let lease = Duration::from_secs(5);
    // Arm first, then apply the fault.
    let armed = guard("arm --token dmtest --lease 5s", Some(&journal));
    assert!(armed.status.success(), "arm: {}", text(&armed.stderr));
    let report: Value = serde_json::from_slice(&armed.stdout).expect("arm report");
    let watcher = report["pid"].as_u64().expect("watcher pid");
    let applied = run(Command::new("ip")
        .args(["netns", "exec", &ns, "iptables", "-w", "5", "-I"])
        .args(rule.split(' ')));
    assert!(applied.status.success(), "apply: {}", text(&applied.stderr));
    assert!(rule_present());

    // Renewed past its lease, the rule stays.
    let until = std::time::Instant::now() + lease + Duration::from_secs(1);
    while std::time::Instant::now() < until {
        let renewed = guard("renew --token dmtest", None);
        assert!(renewed.status.success(), "renew: {}", text(&renewed.stderr));
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(rule_present(), "the guard fired although renewed");
    assert!(pid_alive(watcher));

    // The orchestrator goes silent: the host removes the rule by itself.
    let deadline = std::time::Instant::now() + lease + Duration::from_secs(5);
    while rule_present() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!rule_present(), "the rule outlived its lease");
    let late = guard("renew --token dmtest", None);
    assert_eq!(
        late.status.code(),
        Some(3),
        "renewing a fired guard: {}",
        text(&late.stderr)
    );
    let result: Value = serde_json::from_slice(&late.stdout).expect("result");
    assert_eq!(result["outcome"], "reverted");
    let gone_by = std::time::Instant::now() + Duration::from_secs(3);
    while pid_alive(watcher) && std::time::Instant::now() < gone_by {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!pid_alive(watcher), "the guard outlived its revert");
}
