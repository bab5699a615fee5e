//! Ansible YAML inventories: nested groups with `hosts`, `vars` and `children`.
//!
//! Parsed with saphyr's marked nodes so that every error names its line.

use std::path::Path;

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

use crate::error::{InventoryError, InventoryErrorKind};
use crate::model::{Builder, GROUP_ALL, Inventory, InventoryFormat, Setting};
use crate::pattern::{expand_ranges, split_port};

/// Most YAML nodes an inventory may hold with every alias expanded (a real inventory of
/// [`crate::MAX_HOSTS`] hosts with a few vars each is far below this).
pub const MAX_YAML_NODES: usize = 200_000;
/// Deepest nesting of YAML collections an inventory may have.
pub const MAX_YAML_DEPTH: usize = 64;

/// Counts what loading `text` would build — every alias expanded, as the loader copies the
/// anchored node — and how deep it nests, from the event stream alone (linear in the text,
/// nothing expanded), so an alias bomb ("billion laughs") or a pathological nesting is refused
/// before it is loaded. Syntax errors are left to the loader, which reports them with a line.
fn check_size(file: &Path, text: &str) -> Result<(), InventoryError> {
    use saphyr_parser::{Event, Parser};
    let refuse = |line: usize, why: String| {
        Err(InventoryError::at(
            file,
            line.max(1),
            InventoryErrorKind::Invalid(why),
        ))
    };
    // Expanded size of every anchor, and of every open collection.
    let mut anchors: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    let mut open: Vec<(usize, usize)> = Vec::new();
    let mut built = 0usize;
    let mut parser = Parser::new_from_str(text);
    while let Some(event) = parser.next_event() {
        let Ok((event, span)) = event else {
            return Ok(());
        };
        let line = span.start.line();
        let nodes = match event {
            Event::Scalar(_, _, anchor, _) => {
                if anchor > 0 {
                    anchors.insert(anchor, 1);
                }
                1
            }
            Event::Alias(anchor) => anchors.get(&anchor).copied().unwrap_or(1),
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if open.len() >= MAX_YAML_DEPTH {
                    return refuse(
                        line,
                        format!("YAML nested deeper than {MAX_YAML_DEPTH} levels"),
                    );
                }
                open.push((anchor, 1));
                built = built.saturating_add(1);
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some((anchor, size)) = open.pop() else {
                    continue;
                };
                if anchor > 0 {
                    anchors.insert(anchor, size);
                }
                if let Some(parent) = open.last_mut() {
                    parent.1 = parent.1.saturating_add(size);
                }
                continue;
            }
            _ => continue,
        };
        built = built.saturating_add(nodes);
        if let Some(parent) = open.last_mut() {
            parent.1 = parent.1.saturating_add(nodes);
        }
        if built > MAX_YAML_NODES {
            return refuse(
                line,
                format!(
                    "YAML expands to more than {MAX_YAML_NODES} nodes with its aliases \
                     (an alias bomb?); refusing to load it"
                ),
            );
        }
    }
    Ok(())
}

/// Parses an Ansible YAML inventory read from `file`.
pub fn parse(file: &Path, text: &str) -> Result<Inventory, InventoryError> {
    check_size(file, text)?;
    let docs = MarkedYaml::load_from_str(text).map_err(|e| {
        InventoryError::at(
            file,
            e.marker().line().max(1),
            InventoryErrorKind::Syntax(format!("invalid YAML: {}", e.info())),
        )
    })?;
    let mut b = Builder::new(file);
    b.group(GROUP_ALL, 1)?;
    let Some(root) = docs.first() else {
        return b.finish(InventoryFormat::AnsibleYaml);
    };
    if docs.len() > 1 {
        return Err(b.err(
            line(&docs[1]),
            "an inventory must be a single YAML document",
        ));
    }
    let YamlData::Mapping(top) = &root.data else {
        if is_null(root) {
            return b.finish(InventoryFormat::AnsibleYaml);
        }
        return Err(b.err(
            line(root),
            "the top level must map group names (usually `all`) to groups",
        ));
    };
    for (key, value) in top {
        let name = key_text(&b, key)?;
        group(&mut b, &name, value, line(key))?;
    }
    b.finish(InventoryFormat::AnsibleYaml)
}

fn line(node: &MarkedYaml<'_>) -> usize {
    node.span.start.line().max(1)
}

fn is_null(node: &MarkedYaml<'_>) -> bool {
    matches!(node.data, YamlData::Value(Scalar::Null))
}

fn key_text(b: &Builder, key: &MarkedYaml<'_>) -> Result<String, InventoryError> {
    scalar_text(key).ok_or_else(|| b.err(line(key), "mapping keys must be plain names"))
}

/// A scalar as Ansible would see it in a variable: strings as is, numbers and booleans in
/// their canonical form.
fn scalar_text(node: &MarkedYaml<'_>) -> Option<String> {
    match &node.data {
        YamlData::Value(Scalar::String(s)) => Some(s.to_string()),
        YamlData::Value(Scalar::Integer(i)) => Some(i.to_string()),
        YamlData::Value(Scalar::FloatingPoint(f)) => Some(f.to_string()),
        YamlData::Value(Scalar::Boolean(v)) => Some(v.to_string()),
        YamlData::Representation(s, _, _) => Some(s.to_string()),
        YamlData::Tagged(_, inner) => scalar_text(inner),
        _ => None,
    }
}

/// A variable value: scalars as text, sequences and mappings as compact JSON (labels only).
fn var_text(node: &MarkedYaml<'_>) -> String {
    if let Some(text) = scalar_text(node) {
        return text;
    }
    serde_json::to_string(&to_json(node)).unwrap_or_default()
}

fn to_json(node: &MarkedYaml<'_>) -> serde_json::Value {
    match &node.data {
        YamlData::Sequence(items) => items.iter().map(to_json).collect(),
        YamlData::Mapping(map) => map
            .iter()
            .map(|(k, v)| (scalar_text(k).unwrap_or_default(), to_json(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
        YamlData::Value(Scalar::Null) => serde_json::Value::Null,
        _ => scalar_text(node).map_or(serde_json::Value::Null, serde_json::Value::String),
    }
}

fn group(
    b: &mut Builder,
    name: &str,
    node: &MarkedYaml<'_>,
    at: usize,
) -> Result<(), InventoryError> {
    b.group(name, at)?;
    if is_null(node) {
        return Ok(());
    }
    let YamlData::Mapping(map) = &node.data else {
        return Err(b.err(
            line(node),
            format!("group `{name}` must be a mapping with hosts, vars or children"),
        ));
    };
    for (key, value) in map {
        let section = key_text(b, key)?;
        match section.as_str() {
            "hosts" => hosts(b, name, value)?,
            "vars" => vars(b, name, value)?,
            "children" => {
                if is_null(value) {
                    continue;
                }
                let YamlData::Mapping(children) = &value.data else {
                    return Err(b.err(
                        line(value),
                        format!("`children` of group `{name}` must map group names to groups"),
                    ));
                };
                for (child_key, child) in children {
                    let child_name = key_text(b, child_key)?;
                    let at = line(child_key);
                    group(b, &child_name, child, at)?;
                    b.group(name, at)?.children.push((child_name, at));
                }
            }
            other => {
                return Err(b.err(
                    line(key),
                    format!(
                        "unknown key `{other}` in group `{name}` (expected hosts, vars or children)"
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn hosts(b: &mut Builder, group: &str, node: &MarkedYaml<'_>) -> Result<(), InventoryError> {
    if is_null(node) {
        return Ok(());
    }
    let YamlData::Mapping(map) = &node.data else {
        return Err(b.err(
            line(node),
            format!("`hosts` of group `{group}` must map host names to their vars"),
        ));
    };
    let base = b.base_dir.clone();
    let file = b.file.clone();
    for (key, value) in map {
        let at = line(key);
        let pattern = key_text(b, key)?;
        let (pattern, port) = split_port(&pattern).map_err(|m| b.err(at, m))?;
        let names = expand_ranges(&pattern).map_err(|m| b.err(at, m))?;
        let pairs = var_pairs(b, value, &format!("host `{pattern}`"))?;
        for name in names {
            let host = b.host(&name, at)?;
            host.groups.insert(group.to_string());
            if let Some(port) = port {
                host.vars
                    .set(Setting::SshPort, "port", &port.to_string(), &base)
                    .map_err(|m| InventoryError::invalid(&file, at, m))?;
            }
            for (k, v, vline) in &pairs {
                Builder::ansible_var(&base, &mut host.vars, k, v)
                    .map_err(|m| InventoryError::invalid(&file, *vline, m))?;
            }
        }
        for (k, _, vline) in &pairs {
            b.note_unsupported(*vline, k, &format!("host `{pattern}`"));
        }
    }
    Ok(())
}

fn vars(b: &mut Builder, group: &str, node: &MarkedYaml<'_>) -> Result<(), InventoryError> {
    let pairs = var_pairs(b, node, &format!("`vars` of group `{group}`"))?;
    let base = b.base_dir.clone();
    let file = b.file.clone();
    let g = b.group(group, line(node))?;
    for (k, v, vline) in &pairs {
        g.raw_vars.insert(k.clone(), v.clone());
        Builder::ansible_var(&base, &mut g.vars, k, v)
            .map_err(|m| InventoryError::invalid(&file, *vline, m))?;
    }
    for (k, _, vline) in &pairs {
        b.note_unsupported(*vline, k, &format!("group `{group}`"));
    }
    Ok(())
}

fn var_pairs(
    b: &Builder,
    node: &MarkedYaml<'_>,
    what: &str,
) -> Result<Vec<(String, String, usize)>, InventoryError> {
    if is_null(node) {
        return Ok(Vec::new());
    }
    let YamlData::Mapping(map) = &node.data else {
        return Err(b.err(line(node), format!("{what} must be a mapping of variables")));
    };
    map.iter()
        .map(|(k, v)| Ok((key_text(b, k)?, var_text(v), line(k))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Inventory, String> {
        parse(Path::new("/inv/hosts.yml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn reach_changing_variables_are_named_with_their_line() {
        let inv = parse_str(
            "all:\n\
             \x20 vars:\n\
             \x20   ansible_ssh_pass: secret\n\
             \x20 hosts:\n\
             \x20   h1:\n\
             \x20     ansible_become_pass: secret\n",
        )
        .expect("valid inventory");
        let got: Vec<(usize, &str)> = inv
            .warnings
            .iter()
            .map(|w| (w.line, w.variable.as_str()))
            .collect();
        assert_eq!(got, [(3, "ansible_ssh_pass"), (6, "ansible_become_pass")]);
    }

    #[test]
    fn nested_groups_vars_and_ranges() {
        let inv = parse_str(
            "all:\n\
             \x20 vars:\n\
             \x20   ansible_user: root\n\
             \x20 hosts:\n\
             \x20   lone:\n\
             \x20     ansible_host: 192.0.2.9\n\
             \x20 children:\n\
             \x20   web:\n\
             \x20     hosts:\n\
             \x20       web[1:2]:\n\
             \x20       web3:2222:\n\
             \x20         ansible_user: deploy\n\
             \x20         weight: 3\n\
             \x20         tags: [a, b]\n\
             \x20     vars:\n\
             \x20       soak_api_port: 7200\n",
        )
        .expect("valid inventory");
        let names: Vec<_> = inv.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["lone", "web1", "web2", "web3"]);
        assert_eq!(inv.hosts[0].address, "192.0.2.9");
        assert_eq!(inv.hosts[1].address, "web1");
        assert_eq!(inv.hosts[1].api_port, 7200);
        assert_eq!(inv.hosts[3].ssh.port, 2222);
        assert_eq!(inv.hosts[3].ssh.user.as_deref(), Some("deploy"));
        assert_eq!(
            inv.hosts[3].labels.get("weight").map(String::as_str),
            Some("3")
        );
        assert_eq!(
            inv.hosts[3].labels.get("tags").map(String::as_str),
            Some("[\"a\",\"b\"]")
        );
        assert_eq!(inv.hosts[0].ssh.user.as_deref(), Some("root"));
    }

    #[test]
    fn syntax_and_semantic_errors_name_the_line() {
        let err = parse_str("all:\n  hosts:\n    h1:\n   bad: [\n")
            .err()
            .unwrap_or_default();
        assert!(err.starts_with("/inv/hosts.yml:"), "{err}");
        let err = parse_str("all:\n  hosts:\n    h1:\n      ansible_port: nope\n")
            .err()
            .unwrap_or_default();
        assert!(err.starts_with("/inv/hosts.yml:4: "), "{err}");
        let err = parse_str("all:\n  hostz:\n    h1:\n")
            .err()
            .unwrap_or_default();
        assert!(err.starts_with("/inv/hosts.yml:2: "), "{err}");
        assert!(err.contains("hostz"), "{err}");
    }
}
