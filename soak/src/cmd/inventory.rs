//! `soak inventory -i INV --list | --graph`: the hosts, groups and effective settings an
//! inventory resolves to, without connecting anywhere (like `ansible-inventory`).
//!
//! `--list` prints JSON in `ansible-inventory --list`'s shape: `_meta.hostvars` holds every
//! host's *effective* settings (defaults, group vars and host vars resolved), then one object
//! per group with its direct `hosts` and its `children`. `--graph` prints the group tree.
//! `--limit PATTERN` narrows both to the hosts the pattern selects.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use clap::Args;
use serde_json::{Map, Value, json};
use soak_inventory::{Host, HostPattern, Inventory};

use crate::exit::{CliError, CliResult, Exit};
use crate::fleet::remote::{limit_hosts, load_inventory, parse_limit};
use crate::output::outln;

/// Arguments of `soak inventory`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  soak inventory -i hosts.ini --graph\n  \
                        soak inventory -i hosts.yml --list --limit 'eu:!eu-2'")]
pub struct InventoryArgs {
    /// Inventory: native TOML, Ansible INI or YAML, or a pssh host file.
    #[arg(short = 'i', long = "inventory", value_name = "PATH")]
    inventory: PathBuf,
    /// Print hosts, groups and every host's effective settings as JSON.
    #[arg(long, conflicts_with = "graph", required_unless_present = "graph")]
    list: bool,
    /// Print the group tree with its hosts.
    #[arg(long)]
    graph: bool,
    /// Only the hosts this Ansible host pattern selects (see `soak deploy --help`).
    #[arg(long, value_name = "PATTERN", value_parser = parse_limit)]
    limit: Option<HostPattern>,
}

/// Runs `soak inventory`.
pub async fn execute(args: InventoryArgs) -> CliResult {
    let inventory = load_inventory(&args.inventory)?;
    let hosts = limit_hosts(&inventory, args.limit.as_ref())?;
    if args.list {
        let text = serde_json::to_string_pretty(&list(&inventory, &hosts))
            .map_err(|err| CliError::unavailable(format!("cannot render JSON: {err}")))?;
        outln!("{text}");
    } else {
        outln!("{}", graph(&inventory, &hosts));
    }
    Ok(Exit::Go)
}

/// Groups that are nobody's child, sorted, with `ungrouped` among them.
fn top_groups(inventory: &Inventory) -> Vec<String> {
    let children: BTreeSet<&str> = inventory
        .groups
        .values()
        .flat_map(|g| g.children.iter().map(String::as_str))
        .collect();
    let mut top: Vec<String> = inventory
        .groups
        .keys()
        .filter(|g| !children.contains(g.as_str()))
        .cloned()
        .chain(["ungrouped".to_string()])
        .collect();
    top.sort();
    top.dedup();
    top
}

/// Every group below `group` (children, transitively; cycles are rejected at parse time).
fn descendants(inventory: &Inventory, group: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo = vec![group.to_string()];
    while let Some(g) = todo.pop() {
        for child in inventory
            .groups
            .get(&g)
            .map(|g| &g.children)
            .into_iter()
            .flatten()
        {
            if out.insert(child.clone()) {
                todo.push(child.clone());
            }
        }
    }
    out
}

/// Hosts directly in `group`: members not in any of its child groups (`ungrouped`: hosts in
/// no group), in inventory order.
fn direct_hosts<'h>(inventory: &Inventory, hosts: &'h [Host], group: &str) -> Vec<&'h Host> {
    if group == "ungrouped" {
        return hosts.iter().filter(|h| h.groups.is_empty()).collect();
    }
    let below = descendants(inventory, group);
    hosts
        .iter()
        .filter(|h| h.groups.iter().any(|g| g == group))
        .filter(|h| !h.groups.iter().any(|g| below.contains(g)))
        .collect()
}

/// Whether any of `hosts` is in `group` or below it.
fn populated(hosts: &[Host], group: &str) -> bool {
    if group == "ungrouped" {
        return hosts.iter().any(|h| h.groups.is_empty());
    }
    hosts.iter().any(|h| h.groups.iter().any(|g| g == group))
}

fn children_of(inventory: &Inventory, hosts: &[Host], group: &str) -> Vec<String> {
    let mut children: Vec<String> = inventory
        .groups
        .get(group)
        .map(|g| g.children.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|c| populated(hosts, c))
        .collect();
    children.sort();
    children
}

/// A host's effective settings, keyed like the native TOML format.
fn hostvars(host: &Host) -> Value {
    let mut vars = Map::new();
    vars.insert("address".into(), json!(host.address));
    vars.insert("connection".into(), json!(host.connection));
    vars.insert("ssh_user".into(), json!(host.ssh.user));
    vars.insert("ssh_port".into(), json!(host.ssh.port));
    vars.insert(
        "ssh_key".into(),
        json!(host.ssh.key.as_ref().map(|p| p.display().to_string())),
    );
    vars.insert(
        "known_hosts".into(),
        json!(
            host.ssh
                .known_hosts
                .as_ref()
                .map(|p| p.display().to_string())
        ),
    );
    vars.insert(
        "host_key_checking".into(),
        json!(host.ssh.host_key_checking),
    );
    vars.insert("install_dir".into(), json!(host.install_dir));
    vars.insert("service".into(), json!(host.service));
    vars.insert("api_port".into(), json!(host.api_port));
    vars.insert("gossip_port".into(), json!(host.gossip_port));
    vars.insert("groups".into(), json!(host.groups));
    vars.insert("labels".into(), json!(host.labels));
    Value::Object(vars)
}

/// The `--list` document.
fn list(inventory: &Inventory, hosts: &[Host]) -> Value {
    let mut doc = Map::new();
    let hostvars: BTreeMap<&str, Value> = hosts
        .iter()
        .map(|h| (h.name.as_str(), hostvars(h)))
        .collect();
    doc.insert("_meta".into(), json!({ "hostvars": hostvars }));
    let top: Vec<String> = top_groups(inventory)
        .into_iter()
        .filter(|g| populated(hosts, g))
        .collect();
    doc.insert("all".into(), json!({ "children": top }));
    let mut groups: Vec<String> = inventory.groups.keys().cloned().collect();
    groups.push("ungrouped".into());
    for group in groups {
        if !populated(hosts, &group) {
            continue;
        }
        let mut entry = Map::new();
        let direct: Vec<&str> = direct_hosts(inventory, hosts, &group)
            .into_iter()
            .map(|h| h.name.as_str())
            .collect();
        if !direct.is_empty() {
            entry.insert("hosts".into(), json!(direct));
        }
        let children = children_of(inventory, hosts, &group);
        if !children.is_empty() {
            entry.insert("children".into(), json!(children));
        }
        doc.insert(group, Value::Object(entry));
    }
    Value::Object(doc)
}

/// The `--graph` text, `ansible-inventory --graph` style.
fn graph(inventory: &Inventory, hosts: &[Host]) -> String {
    fn walk(
        inventory: &Inventory,
        hosts: &[Host],
        group: &str,
        depth: usize,
        out: &mut Vec<String>,
    ) {
        let pad = "  |".repeat(depth);
        out.push(format!("{pad}--@{group}:"));
        for child in children_of(inventory, hosts, group) {
            walk(inventory, hosts, &child, depth + 1, out);
        }
        let inner = "  |".repeat(depth + 1);
        for host in direct_hosts(inventory, hosts, group) {
            out.push(format!("{inner}--{}", host.name));
        }
    }
    let mut out = vec!["@all:".to_string()];
    for group in top_groups(inventory) {
        if populated(hosts, &group) {
            walk(inventory, hosts, &group, 1, &mut out);
        }
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn example() -> Inventory {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../inventory/examples/ansible.ini");
        let mut inv = Inventory::load(&path).expect("example parses");
        // Stable paths in the snapshot.
        inv.source = PathBuf::from("ansible.ini");
        for host in &mut inv.hosts {
            host.ssh.key = host
                .ssh
                .key
                .as_ref()
                .map(|_| PathBuf::from("~/.ssh/id_ed25519"));
            host.ssh.known_hosts = host
                .ssh
                .known_hosts
                .as_ref()
                .map(|_| PathBuf::from("~/.ssh/known_hosts"));
        }
        inv
    }

    #[test]
    fn graph_of_the_example() {
        let inv = example();
        insta::assert_snapshot!(graph(&inv, &inv.hosts));
    }

    #[test]
    fn list_of_the_example() {
        let inv = example();
        insta::assert_json_snapshot!(list(&inv, &inv.hosts));
    }

    #[test]
    fn limit_narrows_graph_and_list() {
        let inv = example();
        let pattern = HostPattern::parse("edge:!eu-2").expect("pattern");
        let hosts = pattern.select(&inv).hosts;
        let text = graph(&inv, &hosts);
        assert!(
            text.contains("eu-1") && text.contains("us-1") && !text.contains("eu-2"),
            "{text}"
        );
        let doc = list(&inv, &hosts);
        assert!(doc["_meta"]["hostvars"].get("eu-2").is_none());
        assert_eq!(doc["eu"]["hosts"], json!(["eu-1"]));
    }
}
