//! Benchmark: `soak deploy` of soak-node to 6 network-namespace lab hosts against an equivalent
//! Ansible playbook (copy binary + config + token, restart, wait for /readyz) run in the same lab
//! on the same machine, cold (empty install dirs) and warm (nothing changed). Prints the times
//! and the ratio Ansible / soak (target: ≥ 5× on a cold deploy).
//!
//! Needs root, the lab tools, `ansible-playbook` (`pip install ansible-core`: for this benchmark
//! only, not a dependency) and built binaries (`cargo build --release -p soak -p soak-node`, or
//! debug ones). Prints why and exits 0 when something is missing.
//!
//! Run: `cargo bench -p soak-inventory --bench deploy_vs_ansible`  (ROUNDS=N, default 3)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const HOSTS: usize = 6;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn binary(name: &str) -> Option<PathBuf> {
    ["release", "debug"]
        .iter()
        .map(|p| workspace().join("target").join(p).join(name))
        .find(|p| p.is_file())
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    })
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

struct Lab {
    soak: PathBuf,
    dir: PathBuf,
    name: String,
}

impl Lab {
    fn cmd(&self, args: &[&str]) -> Output {
        Command::new(&self.soak)
            .args(args)
            .env("SOAK_LAB_DIR", &self.dir)
            .env("SOAK_LAB_NAME", &self.name)
            .output()
            .unwrap_or_else(|e| panic!("cannot run soak: {e}"))
    }

    fn exec(&self, argv: &[&str], env: &[(&str, &str)]) -> (Output, Duration) {
        let mut all = vec!["lab", "exec", "--"];
        all.extend_from_slice(argv);
        let started = Instant::now();
        let out = Command::new(&self.soak)
            .args(&all)
            .envs(env.iter().copied())
            .env("SOAK_LAB_DIR", &self.dir)
            .env("SOAK_LAB_NAME", &self.name)
            .output()
            .unwrap_or_else(|e| panic!("cannot run soak lab exec: {e}"));
        (out, started.elapsed())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = self.cmd(&["lab", "down"]);
        if !out.status.success() {
            eprintln!("lab down failed: {}", text(&out.stderr));
        }
    }
}

fn ok(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The playbook: what `soak deploy` does, the Ansible way.
const PLAYBOOK: &str = r#"- hosts: lab
  gather_facts: false
  vars:
    d: "{{ install_dir }}"
  tasks:
    - name: layout
      file: { path: "{{ item }}", state: directory, mode: "0755" }
      loop: ["{{ d }}/bin", "{{ d }}/data", "{{ d }}/log", "{{ d }}/run"]
    - name: binary
      copy: { src: "{{ node_binary }}", dest: "{{ d }}/bin/soak-node", mode: "0755" }
      register: binary
    - name: config
      copy:
        dest: "{{ d }}/soak-node.toml"
        mode: "0644"
        content: |
          listen = "{{ ansible_host }}:7000"
          admin = "127.0.0.1:7100"
          bootstrap = [{% for h in groups['lab'] if h != inventory_hostname %}"{{ hostvars[h].ansible_host }}:7000"{{ "," if not loop.last }}{% endfor %}]
      register: config
    - name: token
      shell: "umask 077; [ -s {{ d }}/data/admin.token ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > {{ d }}/data/admin.token"
      args: { creates: "{{ d }}/data/admin.token" }
    - name: restart
      when: binary.changed or config.changed
      shell: |
        pid=$(cat {{ d }}/run/soak-node.pid 2>/dev/null) && kill "$pid" 2>/dev/null && sleep 0.5
        rm -f {{ d }}/data/node.json
        cd {{ d }} && setsid nohup {{ d }}/bin/soak-node run --config {{ d }}/soak-node.toml --data-dir {{ d }}/data >> {{ d }}/log/soak-node.log 2>&1 < /dev/null &
        echo $! > {{ d }}/run/soak-node.pid
    - name: wait for node.json
      wait_for: { path: "{{ d }}/data/node.json", timeout: 60 }
    - name: read token
      slurp: { src: "{{ d }}/data/admin.token" }
      register: token
    - name: wait for /readyz
      uri:
        url: http://127.0.0.1:7100/readyz
        headers: { Authorization: "Bearer {{ token.content | b64decode | trim }}" }
      register: ready
      until: ready.status == 200
      retries: 120
      delay: 0.5
"#;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let is_root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    let soak = binary("soak");
    let node = binary("soak-node");
    let ansible = which("ansible-playbook");
    let missing = match (is_root, &soak, &node, &ansible) {
        (false, ..) => Some("not root (the lab needs root)".to_string()),
        (_, None, ..) | (_, _, None, _) => Some("build soak and soak-node first".to_string()),
        (_, _, _, None) => {
            Some("ansible-playbook not on PATH (pip install ansible-core)".to_string())
        }
        _ => None,
    };
    if let Some(why) = missing {
        println!("deploy_vs_ansible: skipped: {why}");
        return;
    }
    let (Some(soak), Some(node_bin), Some(ansible)) = (soak, node, ansible) else {
        return;
    };
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3)
        .max(1);
    let pid = std::process::id();
    let lab = Lab {
        soak: soak.clone(),
        dir: PathBuf::from(format!("/tmp/sbench-{pid}")),
        name: format!("soakb{}", pid % 1_000_000),
    };
    let _ = lab.cmd(&["lab", "down"]);
    let out = lab.cmd(&["lab", "up", "--hosts", &HOSTS.to_string(), "--json"]);
    ok("lab up", &out);
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).expect("lab state");
    let inventory = state["inventory"].as_str().expect("inventory").to_string();
    let hosts = state["hosts"].as_array().cloned().unwrap_or_default();

    // One binary for both tools, stripped like a release artifact.
    let work = tempfile::tempdir().expect("tempdir");
    let binary = work.path().join("soak-node");
    std::fs::copy(&node_bin, &binary).expect("copy node");
    let _ = Command::new("strip").arg(&binary).status();
    let size = std::fs::metadata(&binary).map(|m| m.len()).unwrap_or(0);
    let binary_s = binary.to_string_lossy().to_string();

    // Ansible inventory and config for the same hosts, keys and known_hosts.
    let key = state["ssh_key"].as_str().expect("key");
    let known = state["known_hosts"].as_str().expect("known_hosts");
    let mut ini = String::from("[lab]\n");
    for h in &hosts {
        ini.push_str(&format!(
            "{} ansible_host={} install_dir={}\n",
            h["name"].as_str().unwrap_or("?"),
            h["address"].as_str().unwrap_or("?"),
            h["install_dir"].as_str().unwrap_or("?")
        ));
    }
    ini.push_str(&format!(
        "[lab:vars]\nansible_user=root\nansible_ssh_private_key_file={key}\nansible_python_interpreter=/usr/bin/python3\n\
         ansible_ssh_common_args='-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes'\nnode_binary={binary_s}\n"
    ));
    let ini_path = work.path().join("hosts.ini");
    std::fs::write(&ini_path, ini).expect("ini");
    let play = work.path().join("deploy.yml");
    std::fs::write(&play, PLAYBOOK).expect("playbook");
    let cfg = work.path().join("ansible.cfg");
    std::fs::write(
        &cfg,
        format!(
            "[defaults]\nforks = {HOSTS}\nhost_key_checking = True\nlocal_tmp = {}/ansible-tmp\nstdout_callback = default\n\
             [ssh_connection]\npipelining = True\ncontrol_path_dir = /tmp/sbc-{pid}\n",
            work.path().display()
        ),
    )
    .expect("cfg");
    let ansible_s = ansible.to_string_lossy().to_string();
    let ini_s = ini_path.to_string_lossy().to_string();
    let play_s = play.to_string_lossy().to_string();
    let cfg_s = cfg.to_string_lossy().to_string();
    let soak_s = soak.to_string_lossy().to_string();

    let wipe = || {
        let out = lab.exec(&[&soak_s, "stop", "-i", &inventory], &[]).0;
        ok("soak stop", &out);
        for h in &hosts {
            if let Some(d) = h["install_dir"].as_str() {
                let _ = std::fs::remove_dir_all(d);
                let _ = std::fs::create_dir_all(d);
            }
        }
    };
    let run_soak = || {
        let (out, took) = lab.exec(
            &[&soak_s, "deploy", "-i", &inventory, "--binary", &binary_s],
            &[],
        );
        ok("soak deploy", &out);
        took
    };
    let run_ansible = || {
        let (out, took) = lab.exec(
            &[&ansible_s, "-i", &ini_s, &play_s],
            &[("ANSIBLE_CONFIG", &cfg_s)],
        );
        ok("ansible-playbook", &out);
        took
    };

    let (mut soak_cold, mut soak_warm, mut ans_cold, mut ans_warm) =
        (vec![], vec![], vec![], vec![]);
    for round in 0..rounds {
        // Alternate who goes first so neither always meets a warmer page cache.
        let order: [bool; 2] = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for soak_first in order {
            wipe();
            if soak_first {
                soak_cold.push(run_soak());
                soak_warm.push(run_soak());
            } else {
                ans_cold.push(run_ansible());
                ans_warm.push(run_ansible());
            }
        }
    }
    wipe();
    let (sc, sw, ac, aw) = (
        median(soak_cold),
        median(soak_warm),
        median(ans_cold),
        median(ans_warm),
    );
    println!(
        "deploy_vs_ansible: {HOSTS} lab hosts, soak-node {:.1} MiB, {rounds} rounds, medians:",
        size as f64 / 1048576.0
    );
    println!(
        "  cold (empty install dirs): soak deploy {:>7.2}s   ansible-playbook {:>7.2}s   ratio {:.1}x",
        sc.as_secs_f64(),
        ac.as_secs_f64(),
        ac.as_secs_f64() / sc.as_secs_f64()
    );
    println!(
        "  warm (nothing changed):    soak deploy {:>7.2}s   ansible-playbook {:>7.2}s   ratio {:.1}x",
        sw.as_secs_f64(),
        aw.as_secs_f64(),
        aw.as_secs_f64() / sw.as_secs_f64()
    );
}
