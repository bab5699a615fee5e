//! The bundled `soak-node` on a host: where its files live under `install_dir`, the config
//! and command line it is started with, how it is started and stopped (systemd unit or a
//! `setsid nohup` background process with a pid file), and the deploy record.
//!
//! Scripts are POSIX `sh` for Linux hosts (they read `/proc`). Every path is single-quoted.
//! Layout under `install_dir` (`D`):
//!
//! | path | what |
//! |---|---|
//! | `D/bin/soak-node` | the binary (replaced atomically) |
//! | `D/soak-node.toml` | node config written by deploy |
//! | `D/data/` | node data dir: `node.json`, `admin.token` (0600), identity |
//! | `D/log/soak-node.log` | node stdout + stderr |
//! | `D/run/soak-node.pid` | pid of the background process |
//! | `D/deploy.json` | the last [`DeployRecord`] |

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::{Host, ServiceManager, join_host_port};
use crate::remote::{Remote, RemoteError, RemoteErrorKind, sh_quote};

/// File names inside the data dir, from the node API contract (`soak_api`).
pub const NODE_INFO_FILE: &str = "node.json";
/// Admin token file name inside the data dir (mode 0600).
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Paths of the node's files on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLayout {
    /// `install_dir`.
    pub dir: String,
}

impl NodeLayout {
    /// The layout under `host.install_dir`.
    pub fn new(host: &Host) -> Self {
        NodeLayout {
            dir: host.install_dir.clone(),
        }
    }

    fn path(&self, rel: &str) -> String {
        if self.dir == "/" {
            format!("/{rel}")
        } else {
            format!("{}/{rel}", self.dir)
        }
    }

    /// The node binary.
    pub fn binary(&self) -> String {
        self.path("bin/soak-node")
    }
    /// The node config file.
    pub fn config(&self) -> String {
        self.path("soak-node.toml")
    }
    /// The data dir.
    pub fn data_dir(&self) -> String {
        self.path("data")
    }
    /// The admin token file.
    pub fn token(&self) -> String {
        self.path(&format!("data/{ADMIN_TOKEN_FILE}"))
    }
    /// `node.json`, written by the node once it listens.
    pub fn node_info(&self) -> String {
        self.path(&format!("data/{NODE_INFO_FILE}"))
    }
    /// The node's log.
    pub fn log(&self) -> String {
        self.path("log/soak-node.log")
    }
    /// The pid file of the background process.
    pub fn pid_file(&self) -> String {
        self.path("run/soak-node.pid")
    }
    /// The deploy record.
    pub fn record(&self) -> String {
        self.path("deploy.json")
    }
}

/// How the node runs on a host, once `auto` is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    /// A systemd unit.
    Systemd,
    /// A `setsid nohup` background process with a pid file.
    Background,
}

impl RunMode {
    /// Resolves the host's `service` setting given whether the host runs systemd.
    pub fn resolve(service: ServiceManager, has_systemd: bool) -> Result<RunMode, String> {
        match (service, has_systemd) {
            (ServiceManager::Systemd, false) => {
                Err("service = \"systemd\" but the host does not run systemd as PID 1".to_string())
            }
            (ServiceManager::Systemd, true) | (ServiceManager::Auto, true) => Ok(RunMode::Systemd),
            _ => Ok(RunMode::Background),
        }
    }
}

/// systemd unit name of the node on `host` (one per host name, so several install dirs can
/// share a machine).
pub fn unit_name(host: &Host) -> String {
    let safe: String = host
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("soak-node-{safe}.service")
}

/// What the node is started with on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeConfig {
    /// Data dir.
    pub data_dir: String,
    /// QUIC listen address: the host address and gossip port.
    pub listen: String,
    /// Admin API address: always loopback.
    pub admin: String,
    /// The other hosts' QUIC addresses.
    pub bootstrap: Vec<String>,
}

impl NodeConfig {
    /// The config of `host` in a fleet of `fleet` (which may include `host`).
    pub fn for_host(host: &Host, fleet: &[Host]) -> Self {
        NodeConfig {
            data_dir: NodeLayout::new(host).data_dir(),
            listen: host.gossip_addr(),
            admin: join_host_port("127.0.0.1", host.api_port),
            bootstrap: fleet
                .iter()
                .filter(|h| h.name != host.name)
                .map(Host::gossip_addr)
                .collect(),
        }
    }

    /// The config file (TOML).
    pub fn to_toml(&self) -> String {
        let list = self
            .bootstrap
            .iter()
            .map(|b| toml_string(b))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "# Written by `soak deploy`; rewritten on every deploy. The data dir is passed as\n\
             # --data-dir on the command line.\n\
             listen = {}\nadmin = {}\nbootstrap = [{}]\n",
            toml_string(&self.listen),
            toml_string(&self.admin),
            list
        )
    }

    /// Reads back a config file written by [`NodeConfig::to_toml`] (as a restart through the
    /// deploy's service path needs it), with the data dir of `layout`.
    pub fn from_toml(layout: &NodeLayout, text: &str) -> Result<NodeConfig, String> {
        let table: toml::Table =
            toml::from_str(text).map_err(|e| format!("{}: {}", layout.config(), e.message()))?;
        let string = |key: &str| {
            table
                .get(key)
                .and_then(toml::Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("{}: no `{key}` string", layout.config()))
        };
        let bootstrap = match table.get("bootstrap") {
            None => Vec::new(),
            Some(value) => value
                .as_array()
                .and_then(|items| {
                    items
                        .iter()
                        .map(|i| i.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or_else(|| {
                    format!("{}: `bootstrap` must be a list of strings", layout.config())
                })?,
        };
        Ok(NodeConfig {
            data_dir: layout.data_dir(),
            listen: string("listen")?,
            admin: string("admin")?,
            bootstrap,
        })
    }

    /// Arguments after the binary: `run --config … --data-dir … --listen … --admin … [--bootstrap a,b]`.
    pub fn args(&self, layout: &NodeLayout) -> Vec<String> {
        let mut args = vec![
            "run".to_string(),
            "--config".to_string(),
            layout.config(),
            "--data-dir".to_string(),
            self.data_dir.clone(),
            "--listen".to_string(),
            self.listen.clone(),
            "--admin".to_string(),
            self.admin.clone(),
        ];
        if !self.bootstrap.is_empty() {
            args.push("--bootstrap".to_string());
            args.push(self.bootstrap.join(","));
        }
        args
    }
}

fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A shell function `soak_pid` printing the pid of the running background node of this
/// install dir (pid file, alive, and really our binary — a recycled pid is never signalled).
fn pid_function(layout: &NodeLayout) -> String {
    format!(
        "soak_pid() {{ pid=$(cat {pidfile} 2>/dev/null) || return 1; \
         case \"$pid\" in ''|*[!0-9]*) return 1;; esac; \
         exe=$(readlink \"/proc/$pid/exe\" 2>/dev/null) || return 1; \
         case \"$exe\" in {bin}|{bin}' (deleted)') echo \"$pid\";; *) return 1;; esac; }}\n\
         soak_alive() {{ readlink \"/proc/$1/exe\" >/dev/null 2>&1; }}\n",
        pidfile = sh_quote(&layout.pid_file()),
        bin = sh_quote(&layout.binary()),
    )
}

fn has_systemd_test() -> &'static str {
    "[ \"$(cat /proc/1/comm 2>/dev/null)\" = systemd ] && command -v systemctl >/dev/null 2>&1"
}

/// Marker lines around `node.json` in script output.
const NODE_JSON_BEGIN: &str = "--- node.json";
const NODE_JSON_END: &str = "--- end node.json";

/// Prints `node.json` between marker lines when it exists.
fn print_node_json(l: &NodeLayout) -> String {
    format!(
        "if [ -s {info} ]; then echo '{NODE_JSON_BEGIN}'; cat {info}; echo; echo '{NODE_JSON_END}'; fi\n",
        info = sh_quote(&l.node_info())
    )
}

/// One round trip that reports everything deploy, status and the remote fleet need: hashes
/// of the installed binary and config, the admin token, whether systemd runs, the running
/// node's pid and the sha256 of *its* executable (the installed file's hash when it still runs
/// that file, else a hash of `/proc/PID/exe`), and `node.json`. With `create`, it also makes
/// the install dir layout (deploy); without, it changes nothing on the host.
pub fn probe_script(host: &Host, create: bool) -> String {
    let l = NodeLayout::new(host);
    let unit = sh_quote(&unit_name(host));
    let mkdir = if create {
        format!(
            "umask 022; mkdir -p {} {} {} {} || exit 3\n",
            sh_quote(&format!("{}/bin", l.dir)),
            sh_quote(&l.data_dir()),
            sh_quote(&format!("{}/log", l.dir)),
            sh_quote(&format!("{}/run", l.dir)),
        )
    } else {
        String::new()
    };
    format!(
        "command -v sha256sum >/dev/null 2>&1 || {{ echo 'sha256sum is not installed on the host' >&2; exit 3; }}\n\
         {mkdir}{pidfn}\
         bin_sha=$(sha256sum {bin} 2>/dev/null | cut -d' ' -f1)\n\
         echo \"binary_sha256=$bin_sha\"\n\
         echo \"config_sha256=$(sha256sum {config} 2>/dev/null | cut -d' ' -f1)\"\n\
         if [ -s {token} ]; then echo \"token=$(head -n 1 {token})\"; fi\n\
         pid=\n\
         if {systemd}; then echo systemd=yes; \
           if systemctl is-active --quiet {unit}; then pid=$(systemctl show -p MainPID --value {unit}); fi; \
         else echo systemd=no; fi\n\
         if [ -z \"$pid\" ] || [ \"$pid\" = 0 ]; then pid=$(soak_pid) || pid=; fi\n\
         if [ -n \"$pid\" ] && exe=$(readlink \"/proc/$pid/exe\" 2>/dev/null); then\n\
           echo \"running=$pid\"\n\
           if [ \"$exe\" = {bin} ] && [ -n \"$bin_sha\" ]; then echo \"running_sha256=$bin_sha\"; \
           else echo \"running_sha256=$(sha256sum \"/proc/$pid/exe\" | cut -d' ' -f1)\"; fi\n\
         fi\n\
         echo \"arch=$(uname -m)\"\n\
         {node_json}",
        pidfn = pid_function(&l),
        bin = sh_quote(&l.binary()),
        config = sh_quote(&l.config()),
        token = sh_quote(&l.token()),
        systemd = has_systemd_test(),
        node_json = print_node_json(&l),
    )
}

/// What [`probe_script`] found on a host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probe {
    /// sha256 of the installed binary, if any.
    pub binary_sha256: Option<String>,
    /// sha256 of the installed config, if any.
    pub config_sha256: Option<String>,
    /// The admin token, when one exists.
    pub token: Option<String>,
    /// Whether the host runs systemd as PID 1 with systemctl.
    pub systemd: bool,
    /// Pid of the running node, if one runs.
    pub running_pid: Option<u32>,
    /// sha256 of the running node's executable.
    pub running_sha256: Option<String>,
    /// `uname -m`.
    pub arch: String,
    /// Contents of `node.json`, if present.
    pub node_json: Option<String>,
}

/// Splits script output into `key=value` lines and the `node.json` block.
fn split_output(stdout: &str) -> (Vec<(&str, &str)>, Option<String>) {
    let mut pairs = Vec::new();
    let mut json: Option<String> = None;
    let mut in_json = false;
    for line in stdout.lines() {
        if line == NODE_JSON_BEGIN {
            in_json = true;
            json = Some(String::new());
        } else if line == NODE_JSON_END {
            in_json = false;
        } else if in_json {
            if let Some(j) = json.as_mut() {
                j.push_str(line);
                j.push('\n');
            }
        } else if let Some((k, v)) = line.split_once('=') {
            pairs.push((k, v.trim()));
        }
    }
    (pairs, json)
}

impl Probe {
    /// Parses the output of [`probe_script`].
    pub fn parse(stdout: &str) -> Probe {
        let mut p = Probe::default();
        let (pairs, json) = split_output(stdout);
        for (k, v) in pairs {
            let some = |v: &str| (!v.is_empty()).then(|| v.to_string());
            match k {
                "binary_sha256" => p.binary_sha256 = some(v),
                "config_sha256" => p.config_sha256 = some(v),
                "token" => p.token = some(v),
                "systemd" => p.systemd = v == "yes",
                "running" => p.running_pid = v.parse().ok().filter(|pid| *pid > 0),
                "running_sha256" => p.running_sha256 = some(v),
                "arch" => p.arch = v.to_string(),
                _ => {}
            }
        }
        p.node_json = json;
        p
    }
}

/// What [`apply_script`] changes on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Apply<'a> {
    /// sha256 and length of a binary sent on standard input, to install atomically after
    /// checking both (a cut connection must never leave a truncated binary in place).
    pub binary: Option<(&'a str, usize)>,
    /// Config text to install.
    pub config: Option<&'a str>,
    /// Admin token to write (0600).
    pub token: Option<&'a str>,
    /// (Re)start the node in this mode.
    pub start: Option<RunMode>,
    /// After starting, wait up to this many seconds for `node.json` and print it.
    pub wait_secs: u64,
}

fn heredoc_write(path: &str, text: &str, mode: &str, marker: &str) -> String {
    format!(
        "tmp={dest}.soak-tmp.$$\ncat > \"$tmp\" <<'{marker}'\n{text}{nl}{marker}\n\
         chmod {mode} \"$tmp\" && mv -f \"$tmp\" {dest} || {{ rm -f \"$tmp\"; echo 'cannot write '{dest} >&2; exit 11; }}\n",
        dest = sh_quote(path),
        nl = if text.ends_with('\n') { "" } else { "\n" },
    )
}

/// One round trip that installs what changed and (re)starts the node: the binary from
/// standard input (verified by length and sha256, then `mv`), config, token, then the start
/// script; then waits for the new `node.json` and prints it (`pid=PID` first).
pub fn apply_script(host: &Host, config: &NodeConfig, apply: &Apply<'_>) -> Result<String, String> {
    let l = NodeLayout::new(host);
    let mut script = String::from("umask 022\n");
    if let Some((sha, len)) = apply.binary {
        script.push_str(&format!(
            "tmp={bin}.soak-tmp.$$\n\
             cat > \"$tmp\" || {{ rm -f \"$tmp\"; echo 'receiving the binary failed' >&2; exit 10; }}\n\
             got_len=$(wc -c < \"$tmp\" | tr -d ' '); got_sha=$(sha256sum \"$tmp\" | cut -d' ' -f1)\n\
             if [ \"$got_len\" != {len} ] || [ \"$got_sha\" != {sha} ]; then rm -f \"$tmp\"; \
               echo \"the binary arrived damaged ($got_len bytes, sha256 $got_sha; expected {len} bytes, {sha})\" >&2; exit 10; fi\n\
             chmod 755 \"$tmp\" && mv -f \"$tmp\" {bin} || {{ rm -f \"$tmp\"; exit 10; }}\n",
            bin = sh_quote(&l.binary()),
            sha = sh_quote(sha),
        ));
    }
    for (text, what) in [(apply.config, "config"), (apply.token, "token")] {
        if let Some(text) = text
            && text.lines().any(|line| line == "SOAK_FILE_EOF")
        {
            return Err(format!("the {what} contains a line `SOAK_FILE_EOF`"));
        }
    }
    if let Some(text) = apply.config {
        script.push_str(&heredoc_write(&l.config(), text, "644", "SOAK_FILE_EOF"));
    }
    if let Some(token) = apply.token {
        script.push_str("umask 077\n");
        script.push_str(&heredoc_write(&l.token(), token, "600", "SOAK_FILE_EOF"));
        script.push_str("umask 022\n");
    }
    if let Some(mode) = apply.start {
        script.push_str(&start_script(host, config, mode));
        script.push_str(&format!(
            "i=0; while [ $i -lt {ticks} ]; do [ -s {info} ] && break; \
             if [ -n \"$started\" ] && ! readlink \"/proc/$started/exe\" >/dev/null 2>&1; then break; fi; \
             sleep 0.05; i=$((i+1)); done\n",
            ticks = apply.wait_secs.saturating_mul(20).max(1),
            info = sh_quote(&l.node_info()),
        ));
    }
    script.push_str(&print_node_json(&l));
    Ok(script)
}

/// What [`apply_script`] printed: the started pid and `node.json`.
pub fn parse_apply(stdout: &str) -> (Option<u32>, Option<String>) {
    let (pairs, json) = split_output(stdout);
    let pid = pairs
        .iter()
        .filter(|(k, _)| *k == "pid")
        .filter_map(|(_, v)| v.parse().ok())
        .next_back();
    (pid, json)
}

/// Stops the node (systemd unit if installed, and the background process if its pid file
/// names our binary): SIGTERM, up to 10 s, then SIGKILL. Prints `stopped=PID` for each.
pub fn stop_script(host: &Host) -> String {
    let l = NodeLayout::new(host);
    let unit = sh_quote(&unit_name(host));
    format!(
        "{pidfn}\
         if {systemd} && [ -e /etc/systemd/system/{unit} ]; then \
           if systemctl is-active --quiet {unit}; then echo \"stopped=$(systemctl show -p MainPID --value {unit})\"; fi; \
           systemctl stop {unit} || exit 4; fi\n\
         if pid=$(soak_pid); then\n\
           kill -TERM \"$pid\" 2>/dev/null\n\
           i=0; while soak_alive \"$pid\" && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done\n\
           if soak_alive \"$pid\"; then kill -KILL \"$pid\" 2>/dev/null; sleep 0.2; fi\n\
           echo \"stopped=$pid\"\n\
         fi\n\
         rm -f {pidfile}\n",
        pidfn = pid_function(&l),
        systemd = has_systemd_test(),
        unit = unit,
        pidfile = sh_quote(&l.pid_file()),
    )
}

/// The systemd unit of the node.
pub fn unit_file(host: &Host, config: &NodeConfig) -> String {
    let l = NodeLayout::new(host);
    let exec: Vec<String> = std::iter::once(l.binary())
        .chain(config.args(&l))
        .map(|a| systemd_quote(&a))
        .collect();
    format!(
        "[Unit]\nDescription=soak-node {name} (deployed by soak)\nAfter=network-online.target\n\n\
         [Service]\nExecStart={exec}\nWorkingDirectory={dir}\nRestart=on-failure\nRestartSec=1\n\
         StandardOutput=append:{log}\nStandardError=append:{log}\n\n\
         [Install]\nWantedBy=multi-user.target\n",
        name = host.name,
        exec = exec.join(" "),
        dir = l.dir,
        log = l.log(),
    )
}

fn systemd_quote(arg: &str) -> String {
    format!(
        "\"{}\"",
        arg.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('%', "%%")
    )
}

/// (Re)starts the node: stops whatever runs, removes the stale `node.json`, starts it in
/// `mode`, and prints `pid=PID` for the background process.
pub fn start_script(host: &Host, config: &NodeConfig, mode: RunMode) -> String {
    let l = NodeLayout::new(host);
    let stop = stop_script(host);
    let clear = format!("rm -f {}\n", sh_quote(&l.node_info()));
    match mode {
        RunMode::Background => {
            let cmd: Vec<String> = std::iter::once(l.binary())
                .chain(config.args(&l))
                .map(|a| sh_quote(&a))
                .collect();
            format!(
                "{stop}{clear}cd {dir} || exit 5\n\
                 if command -v setsid >/dev/null 2>&1; then S=setsid; else S=; fi\n\
                 $S nohup {cmd} >> {log} 2>&1 < /dev/null &\n\
                 started=$!\n\
                 echo \"$started\" > {pidfile}\n\
                 echo \"pid=$started\"\n",
                dir = sh_quote(&l.dir),
                cmd = cmd.join(" "),
                log = sh_quote(&l.log()),
                pidfile = sh_quote(&l.pid_file()),
            )
        }
        RunMode::Systemd => {
            let unit = unit_name(host);
            format!(
                "{stop}{clear}[ \"$(id -u)\" = 0 ] || {{ echo 'installing a systemd unit needs root; set service = \"background\" for this host' >&2; exit 6; }}\n\
                 cat > /etc/systemd/system/{unit_q}.soak-tmp <<'SOAK_UNIT_EOF'\n{unit_text}SOAK_UNIT_EOF\n\
                 mv -f /etc/systemd/system/{unit_q}.soak-tmp /etc/systemd/system/{unit_q} && \
                 systemctl daemon-reload && systemctl enable {unit_q} >/dev/null 2>&1 && systemctl restart {unit_q} || exit 7\n\
                 started=$(systemctl show -p MainPID --value {unit_q})\n\
                 echo \"pid=$started\"\n",
                unit_q = sh_quote(&unit),
                unit_text = unit_file(host, config),
            )
        }
    }
}

/// The last `lines` lines of the node log.
pub fn logs_script(host: &Host, lines: usize) -> String {
    let l = NodeLayout::new(host);
    format!(
        "if [ -e {log} ]; then tail -n {lines} {log}; else echo 'no log at '{log} >&2; exit 66; fi",
        log = sh_quote(&l.log())
    )
}

/// A fresh admin token: 32 random bytes from the OS, hex.
pub fn new_admin_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// sha256 of `data`, hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// What a deploy did on one host and which build runs there; written as `D/deploy.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployRecord {
    /// Host name.
    pub host: String,
    /// Host address.
    pub address: String,
    /// sha256 of the node binary, hex.
    pub binary_sha256: String,
    /// Node version (from `/v1/version`).
    pub version: String,
    /// Git revision of the node build (from `/v1/version`).
    pub git: String,
    /// Peer id of the node.
    pub peer_id: String,
    /// Pid of the node process.
    pub pid: u32,
    /// Process start, unix milliseconds (from `node.json`).
    pub started_at_ms: u64,
    /// systemd or background.
    pub run_mode: RunMode,
    /// Whether this deploy uploaded the binary (false: the host already had it).
    pub uploaded: bool,
    /// Whether this deploy (re)started the node.
    pub restarted: bool,
    /// When the deploy finished, unix milliseconds (controller clock).
    pub deployed_at_ms: u64,
}

/// Runs [`probe_script`] on `remote`.
pub async fn probe(
    remote: &dyn Remote,
    create: bool,
    timeout: Duration,
) -> Result<Probe, RemoteError> {
    let out = remote
        .run(
            "probing the install dir",
            &probe_script(remote.host(), create),
            timeout,
        )
        .await?;
    Ok(Probe::parse(&out.stdout_text()))
}

/// Reads the admin token from the host.
pub async fn read_token(remote: &dyn Remote, timeout: Duration) -> Result<String, RemoteError> {
    let path = NodeLayout::new(remote.host()).token();
    match remote.download(&path, timeout).await? {
        Some(bytes) => {
            let token = String::from_utf8_lossy(&bytes).trim().to_string();
            if token.is_empty() {
                Err(missing(remote, &format!("admin token {path} is empty")))
            } else {
                Ok(token)
            }
        }
        None => Err(missing(
            remote,
            &format!("no admin token at {path}; run `soak deploy` first"),
        )),
    }
}

fn missing(remote: &dyn Remote, what: &str) -> RemoteError {
    RemoteError::new(
        remote.name(),
        RemoteErrorKind::Io {
            what: "reading the node's files".to_string(),
            detail: what.to_string(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet() -> Vec<Host> {
        let mut a = Host::with_defaults("a", "192.0.2.1");
        a.install_dir = "/srv/soak a".into();
        let b = Host::with_defaults("b", "fd00::2");
        vec![a, b]
    }

    #[test]
    fn config_binds_admin_to_loopback_and_bootstraps_the_others() {
        let f = fleet();
        let c = NodeConfig::for_host(&f[0], &f);
        assert_eq!(c.listen, "192.0.2.1:7000");
        assert_eq!(c.admin, "127.0.0.1:7100");
        assert_eq!(c.bootstrap, ["[fd00::2]:7000"]);
        assert_eq!(c.data_dir, "/srv/soak a/data");
        let parsed: toml::Table = toml::from_str(&c.to_toml()).expect("valid toml");
        assert_eq!(
            parsed.get("admin").and_then(|v| v.as_str()),
            Some("127.0.0.1:7100")
        );
        let back =
            NodeConfig::from_toml(&NodeLayout::new(&f[0]), &c.to_toml()).expect("reads back");
        assert_eq!(back, c);
        assert!(NodeConfig::from_toml(&NodeLayout::new(&f[0]), "listen = 1").is_err());
        let args = c.args(&NodeLayout::new(&f[0]));
        assert_eq!(args.last().map(String::as_str), Some("[fd00::2]:7000"));
    }

    #[test]
    fn probe_output_parses() {
        let p = Probe::parse(
            "binary_sha256=abc\nconfig_sha256=\ntoken=f00d\nsystemd=no\nrunning=42\nrunning_sha256=abc\narch=x86_64\n\
             --- node.json\n{\"pid\": 42}\n\n--- end node.json\n",
        );
        assert_eq!(p.binary_sha256.as_deref(), Some("abc"));
        assert_eq!(p.config_sha256, None);
        assert_eq!(p.token.as_deref(), Some("f00d"));
        assert!(!p.systemd);
        assert_eq!(p.running_pid, Some(42));
        assert_eq!(p.running_sha256.as_deref(), Some("abc"));
        assert_eq!(p.node_json.as_deref().map(str::trim), Some("{\"pid\": 42}"));
        assert_eq!(
            parse_apply("pid=7\n--- node.json\n{}\n--- end node.json\n"),
            (Some(7), Some("{}\n".to_string()))
        );
    }

    #[test]
    fn run_mode_resolution() {
        assert_eq!(
            RunMode::resolve(ServiceManager::Auto, false),
            Ok(RunMode::Background)
        );
        assert_eq!(
            RunMode::resolve(ServiceManager::Auto, true),
            Ok(RunMode::Systemd)
        );
        assert_eq!(
            RunMode::resolve(ServiceManager::Background, true),
            Ok(RunMode::Background)
        );
        assert!(RunMode::resolve(ServiceManager::Systemd, false).is_err());
    }

    #[test]
    fn unit_file_quotes_paths_with_spaces() {
        let f = fleet();
        let c = NodeConfig::for_host(&f[0], &f);
        let unit = unit_file(&f[0], &c);
        assert!(
            unit.contains("ExecStart=\"/srv/soak a/bin/soak-node\" \"run\""),
            "{unit}"
        );
        assert_eq!(unit_name(&f[1]), "soak-node-b.service");
    }

    #[test]
    fn scripts_are_valid_sh() {
        let f = fleet();
        let c = NodeConfig::for_host(&f[0], &f);
        let apply = Apply {
            binary: Some(("abc", 3)),
            config: Some("listen = \"x\"\n"),
            token: Some("t"),
            start: Some(RunMode::Background),
            wait_secs: 5,
        };
        for script in [
            probe_script(&f[0], true),
            probe_script(&f[0], false),
            apply_script(&f[0], &c, &apply).expect("script"),
            stop_script(&f[0]),
            start_script(&f[0], &c, RunMode::Background),
            start_script(&f[0], &c, RunMode::Systemd),
            logs_script(&f[0], 10),
        ] {
            let status = std::process::Command::new("sh")
                .arg("-n")
                .arg("-c")
                .arg(&script)
                .status()
                .expect("sh runs");
            assert!(status.success(), "sh -n rejected:\n{script}");
        }
    }
}
