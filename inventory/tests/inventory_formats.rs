//! The same fleet written as an Ansible INI, an Ansible YAML and a pssh host file imports to
//! the same hosts; broken files report file and line; the shipped examples parse.

use std::path::{Path, PathBuf};

use soak_inventory::{Host, Inventory, InventoryFormat};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load(path: &Path) -> Inventory {
    Inventory::load(path).unwrap_or_else(|e| panic!("{e}"))
}

/// What pssh can express: everything but groups and labels.
fn without_groups(hosts: &[Host]) -> Vec<Host> {
    hosts
        .iter()
        .cloned()
        .map(|mut h| {
            h.groups.clear();
            h.labels.clear();
            h
        })
        .collect()
}

#[test]
fn ini_yaml_and_pssh_fixtures_import_to_the_same_hosts() {
    let ini = load(&fixture("fleet.ini"));
    let yaml = load(&fixture("fleet.yml"));
    let pssh = load(&fixture("fleet.pssh"));
    assert_eq!(ini.format, InventoryFormat::AnsibleIni);
    assert_eq!(yaml.format, InventoryFormat::AnsibleYaml);
    assert_eq!(pssh.format, InventoryFormat::Pssh);

    let names: Vec<&str> = ini.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "node01.example.invalid",
            "node02.example.invalid",
            "node03.example.invalid",
            "db-a.example.invalid",
            "db-b.example.invalid",
            "worker.example.invalid",
        ]
    );
    // INI and YAML carry groups and vars too: identical in every field.
    assert_eq!(ini.hosts, yaml.hosts);
    assert_eq!(ini.groups, yaml.groups);
    // pssh has no groups or labels; every connection setting is the same.
    assert_eq!(without_groups(&ini.hosts), pssh.hosts);

    let node01 = &ini.hosts[0];
    assert_eq!(node01.ssh.user.as_deref(), Some("deploy"));
    assert_eq!(node01.ssh.port, 2222);
    assert_eq!(node01.groups, ["prod", "web"]);
    assert_eq!(node01.labels.get("region").map(String::as_str), Some("eu"));
    assert_eq!(node01.labels.get("tier").map(String::as_str), Some("prod"));
    let worker = &ini.hosts[5];
    assert_eq!(worker.ssh.user.as_deref(), Some("root"), "all:vars applies");
    assert_eq!(worker.ssh.port, 2200);
    assert_eq!(worker.groups, ["workers"]);
}

fn error_of(name: &str) -> String {
    match Inventory::load(&fixture(name)) {
        Ok(inv) => panic!("{name} should not parse, got {} hosts", inv.hosts.len()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn broken_inventories_report_file_and_line() {
    let cases = [
        ("broken.ini", 3, "05"),
        ("broken.yml", 7, "YAML"),
        ("broken_semantic.yml", 6, "twenty-two"),
        ("broken.pssh", 2, "99999"),
        ("broken.toml", 7, "not-a-port"),
    ];
    for (name, line, needle) in cases {
        let err = error_of(name);
        let prefix = format!("{}:{line}: ", fixture(name).display());
        assert!(
            err.starts_with(&prefix),
            "{name}: expected `{prefix}…`, got `{err}`"
        );
        assert!(
            err.contains(needle),
            "{name}: expected `{needle}` in `{err}`"
        );
    }
}

#[test]
fn a_missing_file_is_named() {
    let err = Inventory::load(Path::new("/nonexistent/fleet.toml"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.starts_with("/nonexistent/fleet.toml: cannot read"),
        "{err}"
    );
}

#[test]
fn shipped_examples_parse_and_agree() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let native = load(&dir.join("fleet.toml"));
    let ini = load(&dir.join("ansible.ini"));
    let yaml = load(&dir.join("ansible.yml"));
    let pssh = load(&dir.join("hosts.pssh"));
    for inv in [&native, &ini, &yaml, &pssh] {
        assert_eq!(inv.hosts.len(), 3, "{}", inv.source.display());
        for h in &inv.hosts {
            assert!(
                h.address.starts_with("192.0.2."),
                "{}: {} is outside 192.0.2.0/24",
                inv.source.display(),
                h.address
            );
        }
    }
    assert_eq!(ini.hosts, yaml.hosts);
    let us1 = native
        .host("us-1")
        .map(|h| (h.ssh.user.clone(), h.ssh.port, h.install_dir.clone()));
    assert_eq!(
        us1,
        Some((Some("ops".into()), 2222, "/srv/soak-node".into()))
    );
    assert_eq!(
        ini.host("us-1")
            .map(|h| (h.ssh.user.clone(), h.ssh.port, h.install_dir.clone())),
        us1
    );
    assert_eq!(
        native.host("eu-1").map(|h| h.groups.clone()),
        Some(vec!["edge".to_string(), "eu".to_string()])
    );
}
