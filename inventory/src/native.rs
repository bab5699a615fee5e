//! soak's native TOML inventory (see `docs/inventory.md`):
//!
//! ```toml
//! [defaults]                  # settings for every host
//! ssh_user = "root"
//! [groups.web]
//! vars = { region = "eu" }    # settings or labels
//! children = []
//! [[hosts]]
//! name = "h1"
//! address = "192.0.2.11"
//! groups = ["web"]
//! labels = { rack = "r1" }
//! install_dir = "/var/lib/soak/h1"   # any setting, per host
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::error::{InventoryError, InventoryErrorKind, line_of_offset};
use crate::model::{
    Builder, Connection, Host, HostKeyChecking, Inventory, InventoryFormat, Overlay, Privilege,
    ServiceManager, Setting,
};

type SpannedTable = BTreeMap<Spanned<String>, Spanned<toml::Value>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    #[serde(default)]
    defaults: SpannedTable,
    #[serde(default)]
    groups: BTreeMap<Spanned<String>, RawGroup>,
    #[serde(default)]
    hosts: Vec<SpannedTable>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(default)]
    vars: SpannedTable,
    #[serde(default)]
    children: Vec<Spanned<String>>,
}

/// Parses a native TOML inventory read from `file`.
pub fn parse(file: &Path, text: &str) -> Result<Inventory, InventoryError> {
    let raw: RawInventory = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(1, |s| line_of_offset(text, s.start));
        InventoryError::at(
            file,
            line,
            InventoryErrorKind::Syntax(e.message().trim().to_string()),
        )
    })?;
    let line = |span: std::ops::Range<usize>| line_of_offset(text, span.start);
    let mut b = Builder::new(file);
    let base = b.base_dir.clone();

    for (key, value) in &raw.defaults {
        let at = line(key.span());
        let setting = match Setting::native(key.get_ref()) {
            Some(Setting::Address) => return Err(b.err(at, "`address` is per host, not a default")),
            Some(setting) => setting,
            None => {
                return Err(b.err(
                    at,
                    format!("unknown setting `{}` in [defaults]", key.get_ref()),
                ));
            }
        };
        set(&mut b.defaults, setting, key.get_ref(), value, &base)
            .map_err(|m| InventoryError::invalid(file, at, m))?;
    }

    for (name, group) in &raw.groups {
        let at = line(name.span());
        let draft = b.group(name.get_ref(), at)?;
        for child in &group.children {
            draft
                .children
                .push((child.get_ref().clone(), line(child.span())));
        }
        for (key, value) in &group.vars {
            let vline = line(key.span());
            let k = key.get_ref();
            draft
                .raw_vars
                .insert(k.clone(), value_text(value.get_ref()).unwrap_or_default());
            match Setting::native(k) {
                Some(Setting::Address) => {
                    return Err(InventoryError::invalid(
                        file,
                        vline,
                        "`address` is per host, not a group var",
                    ));
                }
                Some(setting) => set(&mut draft.vars, setting, k, value, &base),
                None => label(&mut draft.vars, k, value),
            }
            .map_err(|m| InventoryError::invalid(file, vline, m))?;
        }
        for child in &group.children {
            if !raw.groups.keys().any(|g| g.get_ref() == child.get_ref()) {
                return Err(InventoryError::invalid(
                    file,
                    line(child.span()),
                    format!(
                        "group `{}` has unknown child group `{}`",
                        name.get_ref(),
                        child.get_ref()
                    ),
                ));
            }
        }
    }

    for (index, table) in raw.hosts.iter().enumerate() {
        let name_entry = table.iter().find(|(k, _)| k.get_ref() == "name");
        let Some((name_key, name_value)) = name_entry else {
            let at = table.keys().next().map_or(1, |k| line(k.span()));
            return Err(b.err(at, format!("host #{} has no `name`", index + 1)));
        };
        let at = line(name_key.span());
        let Some(name) = name_value.get_ref().as_str() else {
            return Err(b.err(at, "host `name` must be a string"));
        };
        if b.has_host(name) {
            return Err(b.err(at, format!("host `{name}` is listed twice")));
        }
        let mut groups = Vec::new();
        let mut overlay = Overlay::default();
        for (key, value) in table {
            let vline = line(key.span());
            let err = |m: String| InventoryError::invalid(file, vline, m);
            match key.get_ref().as_str() {
                "name" => {}
                "groups" => {
                    let Some(items) = value.get_ref().as_array() else {
                        return Err(err(format!(
                            "`groups` of host `{name}` must be an array of group names"
                        )));
                    };
                    for item in items {
                        let Some(group) = item.as_str() else {
                            return Err(err(format!(
                                "`groups` of host `{name}` must be an array of group names"
                            )));
                        };
                        if !raw.groups.keys().any(|g| g.get_ref() == group) {
                            return Err(err(format!(
                                "host `{name}` is in unknown group `{group}` (define it under [groups.{group}])"
                            )));
                        }
                        groups.push(group.to_string());
                    }
                }
                "labels" => {
                    let Some(labels) = value.get_ref().as_table() else {
                        return Err(err(format!("`labels` of host `{name}` must be a table")));
                    };
                    for (k, v) in labels {
                        let text = value_text(v).ok_or_else(|| {
                            err(format!(
                                "label `{k}` of host `{name}` must be a string, number or boolean"
                            ))
                        })?;
                        overlay.labels.insert(k.clone(), text);
                    }
                }
                k => match Setting::native(k) {
                    Some(setting) => set(&mut overlay, setting, k, value, &base).map_err(err)?,
                    None => {
                        return Err(err(format!(
                            "unknown key `{k}` in host `{name}` (settings: address, connection, ssh_user, ssh_port, ssh_key, \
                             known_hosts, host_key_checking, install_dir, service, api_port, gossip_port, become, become_user, \
                             become_method, proxy_jump, ssh_config; also groups, labels)"
                        )));
                    }
                },
            }
        }
        let draft = b.host(name, at)?;
        draft.groups.extend(groups);
        draft.vars = overlay;
    }
    b.finish(InventoryFormat::Native)
}

/// Renders hosts as a native TOML inventory (every setting explicit, one `[[hosts]]` table
/// each; groups are written as each host's `groups` and must be defined by the caller if
/// non-empty). Parsing the result gives back the same hosts when they have no groups.
pub fn render(hosts: &[Host]) -> String {
    let mut tables = Vec::with_capacity(hosts.len());
    for h in hosts {
        let mut t = toml::Table::new();
        let s = |v: &str| toml::Value::String(v.to_string());
        t.insert("name".into(), s(&h.name));
        t.insert("address".into(), s(&h.address));
        t.insert(
            "connection".into(),
            s(match h.connection {
                Connection::Ssh => "ssh",
                Connection::Local => "local",
            }),
        );
        if let Some(user) = &h.ssh.user {
            t.insert("ssh_user".into(), s(user));
        }
        t.insert(
            "ssh_port".into(),
            toml::Value::Integer(i64::from(h.ssh.port)),
        );
        if let Some(key) = &h.ssh.key {
            t.insert("ssh_key".into(), s(&key.to_string_lossy()));
        }
        if let Some(kh) = &h.ssh.known_hosts {
            t.insert("known_hosts".into(), s(&kh.to_string_lossy()));
        }
        t.insert(
            "host_key_checking".into(),
            s(match h.ssh.host_key_checking {
                HostKeyChecking::Strict => "strict",
                HostKeyChecking::AcceptNew => "accept-new",
                HostKeyChecking::Off => "off",
            }),
        );
        if let Some(jump) = &h.ssh.proxy_jump {
            t.insert("proxy_jump".into(), s(jump));
        }
        if let Some(config) = &h.ssh.config_file {
            t.insert("ssh_config".into(), s(&config.to_string_lossy()));
        }
        if let Privilege::Sudo { user } = &h.privilege {
            t.insert("become".into(), toml::Value::Boolean(true));
            if let Some(user) = user {
                t.insert("become_user".into(), s(user));
            }
        }
        t.insert("install_dir".into(), s(&h.install_dir));
        t.insert(
            "service".into(),
            s(match h.service {
                ServiceManager::Auto => "auto",
                ServiceManager::Systemd => "systemd",
                ServiceManager::Background => "background",
            }),
        );
        t.insert(
            "api_port".into(),
            toml::Value::Integer(i64::from(h.api_port)),
        );
        t.insert(
            "gossip_port".into(),
            toml::Value::Integer(i64::from(h.gossip_port)),
        );
        if !h.groups.is_empty() {
            t.insert(
                "groups".into(),
                toml::Value::Array(h.groups.iter().map(|g| s(g)).collect()),
            );
        }
        if !h.labels.is_empty() {
            let labels: toml::Table = h.labels.iter().map(|(k, v)| (k.clone(), s(v))).collect();
            t.insert("labels".into(), toml::Value::Table(labels));
        }
        tables.push(toml::Value::Table(t));
    }
    let mut doc = toml::Table::new();
    doc.insert("hosts".into(), toml::Value::Array(tables));
    // A table of strings, integers and arrays always serializes.
    format!(
        "# Written by soak.\n\n{}",
        toml::to_string(&doc).unwrap_or_default()
    )
}

fn value_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn set(
    overlay: &mut Overlay,
    setting: Setting,
    key: &str,
    value: &Spanned<toml::Value>,
    base: &Path,
) -> Result<(), String> {
    let numeric = matches!(
        setting,
        Setting::SshPort | Setting::ApiPort | Setting::GossipPort
    );
    let boolean = matches!(setting, Setting::Become);
    let text = match value.get_ref() {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) if numeric => i.to_string(),
        toml::Value::Boolean(b) if boolean => b.to_string(),
        other if boolean => {
            return Err(format!(
                "`{key}` must be true or false, got {}",
                other.type_str()
            ));
        }
        other if numeric => {
            return Err(format!(
                "`{key}` must be a port number, got {}",
                other.type_str()
            ));
        }
        other => {
            return Err(format!(
                "`{key}` must be a string, got {} `{other}`",
                other.type_str()
            ));
        }
    };
    overlay.set(setting, key, &text, base)
}

fn label(overlay: &mut Overlay, key: &str, value: &Spanned<toml::Value>) -> Result<(), String> {
    let text = value_text(value.get_ref())
        .ok_or_else(|| format!("label `{key}` must be a string, number or boolean"))?;
    overlay.labels.insert(key.to_string(), text);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Connection, HostKeyChecking, ServiceManager};

    const SAMPLE: &str = r#"
[defaults]
ssh_user = "root"
ssh_port = 22
ssh_key = "keys/id_ed25519"
known_hosts = "/lab/known_hosts"
host_key_checking = "strict"
install_dir = "/opt/soak-node"
service = "auto"
api_port = 7100
gossip_port = 7000

[groups.web]
vars = { region = "eu", ssh_port = 2200 }
children = ["edge"]

[groups.edge]
vars = { region = "eu-edge" }

[[hosts]]
name = "h1"
address = "192.0.2.11"
groups = ["web"]
labels = { region = "lab" }
install_dir = "/var/lib/soak-lab/h1"

[[hosts]]
name = "h2"
address = "192.0.2.12"
groups = ["edge"]
service = "background"
connection = "local"
become = true
become_user = "ops"
proxy_jump = "jump@bastion.example.invalid:2222"
ssh_config = "ssh/config"
"#;

    #[test]
    fn defaults_groups_hosts_precedence() {
        let inv = parse(Path::new("/inv/fleet.toml"), SAMPLE).expect("valid inventory");
        assert_eq!(inv.hosts.len(), 2);
        let h1 = &inv.hosts[0];
        assert_eq!(h1.address, "192.0.2.11");
        assert_eq!(h1.ssh.user.as_deref(), Some("root"));
        assert_eq!(h1.ssh.port, 2200, "group var beats defaults");
        assert_eq!(
            h1.ssh.key.as_deref(),
            Some(Path::new("/inv/keys/id_ed25519"))
        );
        assert_eq!(h1.ssh.host_key_checking, HostKeyChecking::Strict);
        assert_eq!(h1.install_dir, "/var/lib/soak-lab/h1");
        assert_eq!(
            h1.labels.get("region").map(String::as_str),
            Some("lab"),
            "host label beats group var"
        );
        assert_eq!(h1.groups, ["web"]);
        let h2 = &inv.hosts[1];
        assert_eq!(
            h2.groups,
            ["edge", "web"],
            "membership flows up through children"
        );
        assert_eq!(
            h2.labels.get("region").map(String::as_str),
            Some("eu-edge"),
            "child group beats parent"
        );
        assert_eq!(h2.service, ServiceManager::Background);
        assert_eq!(h2.connection, Connection::Local);
        assert_eq!(h2.install_dir, "/opt/soak-node");
    }

    #[test]
    fn become_and_bastion_settings() {
        let inv = parse(Path::new("/inv/fleet.toml"), SAMPLE).expect("valid inventory");
        assert_eq!(inv.hosts[0].privilege, Privilege::Login);
        assert_eq!(inv.hosts[0].ssh.proxy_jump, None);
        let h2 = &inv.hosts[1];
        assert_eq!(
            h2.privilege,
            Privilege::Sudo {
                user: Some("ops".into())
            }
        );
        assert_eq!(
            h2.ssh.proxy_jump.as_deref(),
            Some("jump@bastion.example.invalid:2222")
        );
        assert_eq!(
            h2.ssh.config_file.as_deref(),
            Some(Path::new("/inv/ssh/config"))
        );
        let e = err_of("[[hosts]]\nname = \"a\"\nbecome_method = \"su\"\n");
        assert!(e.starts_with("f.toml:3: ") && e.contains("sudo -n"), "{e}");
        let e = err_of("[[hosts]]\nname = \"a\"\nbecome = \"maybe\"\n");
        assert!(
            e.starts_with("f.toml:3: ") && e.contains("true or false"),
            "{e}"
        );
    }

    #[test]
    fn render_round_trips() {
        let inv = parse(Path::new("/inv/fleet.toml"), SAMPLE).expect("valid inventory");
        let mut hosts = inv.hosts.clone();
        for h in &mut hosts {
            h.groups.clear();
        }
        let text = render(&hosts);
        let back =
            parse(Path::new("/elsewhere/x.toml"), &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back.hosts, hosts);
    }

    fn err_of(text: &str) -> String {
        parse(Path::new("f.toml"), text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn errors_name_the_line() {
        let e = err_of("[[hosts]]\nname = \"a\"\nssh_port = \"x\"\n");
        assert!(e.starts_with("f.toml:3: "), "{e}");
        let e = err_of("[[hosts]]\nname = \"a\"\nsh_port = 22\n");
        assert!(e.starts_with("f.toml:3: ") && e.contains("sh_port"), "{e}");
        let e = err_of("[[hosts]]\nname = \"a\"\ngroups = [\"nope\"]\n");
        assert!(e.starts_with("f.toml:3: ") && e.contains("nope"), "{e}");
        let e = err_of("[defaults]\nssh_user = \"a\"\n[[hosts]\nname = \"a\"\n");
        assert!(e.starts_with("f.toml:3: "), "{e}");
        let e = err_of("[[hosts]]\nname = \"a\"\n[[hosts]]\nname = \"a\"\n");
        assert!(e.starts_with("f.toml:4: "), "{e}");
        let e = err_of("[defaults]\nhost_key_checking = \"maybe\"\n[[hosts]]\nname = \"a\"\n");
        assert!(e.starts_with("f.toml:2: ") && e.contains("maybe"), "{e}");
        let e = err_of("[defaults]\nssh_user = \"a\"\n");
        assert!(e.contains("no hosts"), "{e}");
    }
}
