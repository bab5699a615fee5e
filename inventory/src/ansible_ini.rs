//! Ansible INI inventories: `[group]` host lines with `key=value` vars, `[group:vars]`,
//! `[group:children]`, host ranges and `host:port`.

use std::path::Path;

use crate::error::InventoryError;
use crate::model::{Builder, GROUP_ALL, GROUP_UNGROUPED, Inventory, InventoryFormat};
use crate::pattern::{expand_ranges, split_port};

enum Section {
    Hosts(String),
    Vars(String),
    Children(String),
}

/// Parses an Ansible INI inventory read from `file`.
pub fn parse(file: &Path, text: &str) -> Result<Inventory, InventoryError> {
    let mut b = Builder::new(file);
    b.group(GROUP_ALL, 1)?;
    let mut section = Section::Hosts(GROUP_UNGROUPED.to_string());
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            let Some(header) = header.split(['#', ';']).next().map(str::trim) else {
                continue;
            };
            let Some(header) = header.strip_suffix(']') else {
                return Err(b.err(
                    line_no,
                    format!("section header `{line}` has no closing `]`"),
                ));
            };
            section = match header.split_once(':') {
                None => Section::Hosts(header.to_string()),
                Some((group, "vars")) => Section::Vars(group.to_string()),
                Some((group, "children")) => Section::Children(group.to_string()),
                Some((_, other)) => {
                    return Err(b.err(
                        line_no,
                        format!(
                            "unknown section suffix `:{other}` (expected `:vars` or `:children`)"
                        ),
                    ));
                }
            };
            let name = match &section {
                Section::Hosts(g) | Section::Vars(g) | Section::Children(g) => g.clone(),
            };
            b.group(&name, line_no)?;
            continue;
        }
        let tokens = split_tokens(line).map_err(|m| b.err(line_no, m))?;
        match &section {
            Section::Hosts(group) => {
                let group = group.clone();
                host_line(&mut b, &group, &tokens, line_no)?;
            }
            Section::Vars(group) => {
                let Some((key, value)) = line.split_once('=') else {
                    return Err(b.err(
                        line_no,
                        format!("expected `key=value` in [{group}:vars], got `{line}`"),
                    ));
                };
                let key = key.trim().to_string();
                let value = unquote(strip_comment(value).trim());
                let base = b.base_dir.clone();
                let g = b.group(group, line_no)?;
                g.raw_vars.insert(key.clone(), value.clone());
                Builder::ansible_var(&base, &mut g.vars, &key, &value)
                    .map_err(|m| b.err(line_no, m))?;
                b.note_unsupported(line_no, &key, &format!("group `{group}`"));
            }
            Section::Children(group) => {
                let group = group.clone();
                let [child] = tokens.as_slice() else {
                    return Err(b.err(
                        line_no,
                        format!("expected one group name in [{group}:children], got `{line}`"),
                    ));
                };
                b.group(child, line_no)?;
                b.group(&group, line_no)?
                    .children
                    .push((child.clone(), line_no));
            }
        }
    }
    b.finish(InventoryFormat::AnsibleIni)
}

fn host_line(
    b: &mut Builder,
    group: &str,
    tokens: &[String],
    line_no: usize,
) -> Result<(), InventoryError> {
    let Some((pattern, vars)) = tokens.split_first() else {
        return Ok(());
    };
    let (pattern, port) = split_port(pattern).map_err(|m| b.err(line_no, m))?;
    let names = expand_ranges(&pattern).map_err(|m| b.err(line_no, m))?;
    let mut pairs = Vec::new();
    for var in vars {
        let Some((k, v)) = var.split_once('=') else {
            return Err(b.err(
                line_no,
                format!("expected `key=value` after the host, got `{var}`"),
            ));
        };
        pairs.push((k.to_string(), v.to_string()));
    }
    let base = b.base_dir.clone();
    for name in names {
        let host = b.host(&name, line_no)?;
        host.groups.insert(group.to_string());
        let mut result = Ok(());
        if let Some(port) = port {
            result = host.vars.set(
                crate::model::Setting::SshPort,
                "port",
                &port.to_string(),
                &base,
            );
        }
        for (k, v) in &pairs {
            if result.is_ok() {
                result = Builder::ansible_var(&base, &mut host.vars, k, v);
            }
        }
        result.map_err(|m| b.err(line_no, m))?;
    }
    for (k, _) in &pairs {
        b.note_unsupported(line_no, k, &format!("host `{pattern}`"));
    }
    Ok(())
}

/// Everything before an unquoted ` #` comment.
fn strip_comment(text: &str) -> &str {
    let mut quote = None;
    let mut prev_space = true;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if prev_space => return &text[..i],
            _ => {}
        }
        prev_space = c.is_whitespace();
    }
    text
}

fn unquote(text: &str) -> String {
    let bytes = text.as_bytes();
    if bytes.len() >= 2
        && ((bytes[0] == b'"' && bytes[bytes.len() - 1] == b'"')
            || (bytes[0] == b'\'' && bytes[bytes.len() - 1] == b'\''))
    {
        text[1..text.len() - 1].to_string()
    } else {
        text.to_string()
    }
}

/// Splits a host line on whitespace, honouring quotes (`k="a b"`) and stopping at a comment.
fn split_tokens(line: &str) -> Result<Vec<String>, String> {
    let line = strip_comment(line);
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut in_token = false;
    for c in line.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => current.push(c),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                in_token = true;
            }
            None if c.is_whitespace() => {
                if in_token {
                    tokens.push(std::mem::take(&mut current));
                    in_token = false;
                }
            }
            None => {
                current.push(c);
                in_token = true;
            }
        }
    }
    if let Some(q) = quote {
        return Err(format!("unclosed {q} quote"));
    }
    if in_token {
        tokens.push(current);
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::HostKeyChecking;

    fn parse_str(text: &str) -> Result<Inventory, String> {
        parse(Path::new("/inv/hosts.ini"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn become_and_ssh_common_args_are_read() {
        let inv = parse_str(
            "[web]\n\
             w1 ansible_host=192.0.2.1\n\
             w2 ansible_host=192.0.2.2 ansible_become=false\n\
             [web:vars]\n\
             ansible_user=deploy\n\
             ansible_become=yes\n\
             ansible_become_method=sudo\n\
             ansible_ssh_common_args='-o ProxyJump=ops@bastion.example.invalid:2222 -o ControlMaster=auto -F conf/ssh'\n",
        )
        .expect("valid inventory");
        let w1 = &inv.hosts[0];
        assert_eq!(w1.privilege, crate::Privilege::Sudo { user: None });
        assert_eq!(
            w1.ssh.proxy_jump.as_deref(),
            Some("ops@bastion.example.invalid:2222")
        );
        assert_eq!(
            w1.ssh.config_file.as_deref(),
            Some(Path::new("/inv/conf/ssh"))
        );
        assert_eq!(inv.hosts[1].privilege, crate::Privilege::Login);
        let j = parse_str("h1 ansible_ssh_common_args=\"-J bastion\"\n").expect("valid");
        assert_eq!(j.hosts[0].ssh.proxy_jump.as_deref(), Some("bastion"));
        let e = parse_str("h1 ansible_ssh_common_args=\"-o ProxyCommand=nc\"\n").unwrap_err();
        assert!(
            e.contains("hosts.ini:1: ") && e.contains("ProxyCommand"),
            "{e}"
        );
        let e = parse_str("h1 ansible_become_method=su\n").unwrap_err();
        assert!(e.contains("sudo -n"), "{e}");
    }

    #[test]
    fn reach_changing_variables_soak_ignores_are_named_with_their_line() {
        let inv = parse_str(
            "[web]\n\
             web1 ansible_ssh_common_args='-o ProxyJump=bastion' ansible_python_interpreter=/x\n\
             web2\n\
             [web:vars]\n\
             ansible_become=true\n\
             ansible_ssh_pass=secret\n",
        )
        .expect("valid inventory");
        let got: Vec<(usize, &str, &str)> = inv
            .warnings
            .iter()
            .map(|w| (w.line, w.variable.as_str(), w.scope.as_str()))
            .collect();
        // ProxyJump in ansible_ssh_common_args and ansible_become are supported: only the
        // password login is named.
        assert_eq!(got, [(6, "ansible_ssh_pass", "group `web`")]);
        let text = inv.warnings[0].describe(Path::new("hosts.ini"));
        assert!(
            text.starts_with("hosts.ini:6: `ansible_ssh_pass`"),
            "{text}"
        );
        assert!(text.contains("password"), "{text}");
        // Supported variables and harmless ones warn about nothing.
        let clean = parse_str("[web]\nweb1 ansible_user=root ansible_port=2222 x=1\n").expect("ok");
        assert!(clean.warnings.is_empty());
    }

    #[test]
    fn groups_children_vars_and_ranges() {
        let inv = parse_str(
            "# fleet\n\
             lone.example.invalid\n\
             [web]\n\
             web[1:2].example.invalid ansible_user=deploy region=\"eu west\" # comment\n\
             [db]\n\
             db-[a:b].example.invalid:2222\n\
             [prod:children]\n\
             web\n\
             db\n\
             [prod:vars]\n\
             soak_host_key_checking=accept-new\n\
             tier=prod\n\
             [web:vars]\n\
             tier=front\n\
             [all:vars]\n\
             ansible_user=root\n\
             ansible_python_interpreter=/usr/bin/python3\n",
        )
        .expect("valid inventory");
        let names: Vec<_> = inv.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "lone.example.invalid",
                "web1.example.invalid",
                "web2.example.invalid",
                "db-a.example.invalid",
                "db-b.example.invalid"
            ]
        );
        let lone = &inv.hosts[0];
        assert_eq!(lone.ssh.user.as_deref(), Some("root"));
        assert!(lone.groups.is_empty());
        assert_eq!(lone.ssh.host_key_checking, HostKeyChecking::Strict);
        let web1 = &inv.hosts[1];
        assert_eq!(
            web1.ssh.user.as_deref(),
            Some("deploy"),
            "host var beats all:vars"
        );
        assert_eq!(
            web1.labels.get("region").map(String::as_str),
            Some("eu west")
        );
        assert_eq!(
            web1.labels.get("tier").map(String::as_str),
            Some("front"),
            "child group beats parent"
        );
        assert_eq!(web1.groups, ["prod", "web"]);
        assert_eq!(web1.ssh.host_key_checking, HostKeyChecking::AcceptNew);
        assert!(!web1.labels.contains_key("ansible_python_interpreter"));
        let dba = &inv.hosts[3];
        assert_eq!(dba.ssh.port, 2222);
        assert_eq!(dba.labels.get("tier").map(String::as_str), Some("prod"));
    }

    #[test]
    fn errors_name_the_line() {
        let err = parse_str("[web]\nh1\nh2 ansible_port=notaport\n")
            .err()
            .unwrap_or_default();
        assert!(err.starts_with("/inv/hosts.ini:3: "), "{err}");
        assert!(err.contains("notaport"), "{err}");
        let err = parse_str("[web]\nh1\n[web:oops]\n")
            .err()
            .unwrap_or_default();
        assert!(err.starts_with("/inv/hosts.ini:3: "), "{err}");
        let err = parse_str("[web:vars]\nnovalue\n[web]\nh\n")
            .err()
            .unwrap_or_default();
        assert!(err.starts_with("/inv/hosts.ini:2: "), "{err}");
        let err = parse_str("[web]\nnode[3:1]\n").err().unwrap_or_default();
        assert!(err.starts_with("/inv/hosts.ini:2: "), "{err}");
        let err = parse_str("[web\nh\n").err().unwrap_or_default();
        assert!(err.starts_with("/inv/hosts.ini:1: "), "{err}");
    }

    #[test]
    fn empty_inventory_is_an_error() {
        let err = parse_str("# nothing\n[web]\n").err().unwrap_or_default();
        assert!(err.contains("no hosts"), "{err}");
    }
}
