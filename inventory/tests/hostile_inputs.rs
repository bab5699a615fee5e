//! Regression tests for what fuzzing the inventory parsers found (issue 10 item 8,
//! `docs/fuzzing.md`): each is named after what broke, and each hostile input fails cleanly,
//! fast, with `file:line` — or, for what ssh would read as an option, is refused outright.

use std::path::Path;

use soak_inventory::{Inventory, InventoryFormat, MAX_GROUPS, MAX_HOSTS};

fn parse(format: InventoryFormat, text: &str) -> Result<Inventory, String> {
    Inventory::parse(Path::new("/inv/hosts"), text, format).map_err(|e| e.to_string())
}

fn refused(format: InventoryFormat, text: &str) -> String {
    match parse(format, text) {
        Ok(inv) => panic!("accepted {} hosts from:\n{text}", inv.hosts.len()),
        Err(err) => err,
    }
}

/// Before: a 9-level alias bomb took 3.8 GB and the process aborted.
#[test]
fn yaml_alias_bomb_of_nine_levels_fails_cleanly_naming_the_line() {
    let mut text =
        String::from("all:\n  vars:\n    l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for level in 1..=9 {
        let prev = level - 1;
        let refs = vec![format!("*l{prev}"); 9].join(", ");
        text.push_str(&format!("    l{level}: &l{level} [{refs}]\n"));
    }
    text.push_str("  hosts:\n    h1:\n");
    let err = refused(InventoryFormat::AnsibleYaml, &text);
    assert!(err.starts_with("/inv/hosts:"), "{err}");
    assert!(err.contains("alias bomb"), "{err}");
    // The line of the alias that crossed the limit, not the file as a whole.
    let line: usize = err
        .trim_start_matches("/inv/hosts:")
        .split(':')
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    assert!((3..=12).contains(&line), "{err}");
}

/// Aliases used as Ansible does (a shared vars block) still load.
#[test]
fn yaml_with_a_few_aliases_still_loads() {
    let text = "all:\n  children:\n    a:\n      vars: &common\n        ansible_user: ops\n      hosts:\n        h1:\n    b:\n      vars: *common\n      hosts:\n        h2:\n";
    let inv = parse(InventoryFormat::AnsibleYaml, text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(inv.hosts.len(), 2);
    assert!(
        inv.hosts
            .iter()
            .all(|h| h.ssh.user.as_deref() == Some("ops"))
    );
}

/// Deep nesting would recurse in the loader and in the group walk.
#[test]
fn yaml_nested_thousands_deep_fails_cleanly() {
    for depth in [100, 10_000] {
        let text = format!(
            "all:\n  vars:\n    x: {}{}\n",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let err = refused(InventoryFormat::AnsibleYaml, &text);
        // Ours at 64 levels; the YAML parser's own recursion limit further down.
        assert!(
            err.contains("nested deeper than") || err.contains("recursion limit"),
            "{err}"
        );
        assert!(err.starts_with("/inv/hosts:3:"), "{err}");
    }
}

/// Before: `node[1:99999]` was accepted and took ~20 s (a quadratic host lookup).
#[test]
fn huge_host_range_is_refused_with_the_limit() {
    for (format, text) in [
        (
            InventoryFormat::AnsibleIni,
            "[web]\nnode[1:99999]\n".to_string(),
        ),
        (
            InventoryFormat::AnsibleYaml,
            "all:\n  hosts:\n    node[1:99999]:\n".to_string(),
        ),
        // A cross product of two modest ranges is as big.
        (
            InventoryFormat::AnsibleIni,
            "[web]\nr[1:100]n[1:100]\n".to_string(),
        ),
        (
            InventoryFormat::AnsibleIni,
            "[web]\nn[0:99999999999999999]\n".to_string(),
        ),
    ] {
        let err = refused(format, &text);
        assert!(err.contains(&MAX_HOSTS.to_string()), "{err}");
        assert!(err.starts_with("/inv/hosts:"), "{err}");
    }
    // Exactly at the limit is fine.
    let text = format!("[web]\nnode[1:{MAX_HOSTS}]\n");
    let inv = parse(InventoryFormat::AnsibleIni, &text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(inv.hosts.len(), MAX_HOSTS);
}

#[test]
fn too_many_hosts_listed_one_by_one_are_refused() {
    let text: String = (0..=MAX_HOSTS).map(|i| format!("h{i}\n")).collect();
    let err = refused(InventoryFormat::Pssh, &text);
    assert!(
        err.starts_with(&format!("/inv/hosts:{}:", MAX_HOSTS + 1)),
        "{err}"
    );
}

#[test]
fn too_many_groups_are_refused() {
    let text: String = (0..=MAX_GROUPS)
        .map(|i| format!("[g{i}]\nh{i}\n"))
        .collect();
    let err = refused(InventoryFormat::AnsibleIni, &text);
    assert!(err.contains(&MAX_GROUPS.to_string()), "{err}");
}

/// A long chain of child groups is walked without overflowing the stack.
#[test]
fn a_long_chain_of_child_groups_still_loads() {
    let mut text = String::from("[g0]\nh0\n");
    for i in 1..1000 {
        text.push_str(&format!("[g{i}:children]\ng{}\n", i - 1));
    }
    let inv = parse(InventoryFormat::AnsibleIni, &text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(inv.hosts[0].groups.len(), 1000);
}

/// Before: `address = 5` was accepted (and `5` resolves as 0.0.0.5).
#[test]
fn numeric_address_is_refused_with_file_and_line() {
    let err = refused(
        InventoryFormat::Native,
        "[[hosts]]\nname = \"h1\"\naddress = 5\n",
    );
    assert!(err.starts_with("/inv/hosts:3:"), "{err}");
    assert!(err.contains("must be a string"), "{err}");
    let err = refused(
        InventoryFormat::Native,
        "[[hosts]]\nname = \"h1\"\naddress = \"5\"\n",
    );
    assert!(err.starts_with("/inv/hosts:3:"), "{err}");
    assert!(err.contains("not a valid IPv4"), "{err}");
    // The same through Ansible's variable and as a bare host name (address defaults to it).
    let err = refused(InventoryFormat::AnsibleIni, "[web]\nh1 ansible_host=5\n");
    assert!(err.starts_with("/inv/hosts:2:"), "{err}");
    let err = refused(InventoryFormat::AnsibleIni, "[web]\n5\n");
    assert!(err.starts_with("/inv/hosts:2:"), "{err}");
    let err = refused(
        InventoryFormat::Native,
        "[[hosts]]\nname = \"h1\"\nssh_user = 7\n",
    );
    assert!(err.starts_with("/inv/hosts:3:"), "{err}");
}

/// Before: a user or host starting with `-` reached ssh as an option (`-oProxyCommand=…`).
#[test]
fn user_or_host_starting_with_a_dash_is_refused_with_file_and_line() {
    let cases = [
        (
            InventoryFormat::AnsibleIni,
            "[web]\nh1 ansible_user=-oProxyCommand=touch\n",
            2,
        ),
        (
            InventoryFormat::AnsibleIni,
            "[web]\nh1 ansible_host=-oProxyCommand=touch\n",
            2,
        ),
        (
            InventoryFormat::AnsibleIni,
            "[web]\n-oProxyCommand=touch\n",
            2,
        ),
        (
            InventoryFormat::AnsibleIni,
            "[all:vars]\nansible_user=-l\n[web]\nh1\n",
            2,
        ),
        (
            InventoryFormat::Pssh,
            "ok.example.invalid\n-oProxyCommand=touch@h1\n",
            2,
        ),
        (InventoryFormat::Pssh, "-oProxyCommand=touch\n", 1),
        (InventoryFormat::Pssh, "h1 -luser\n", 1),
        (
            InventoryFormat::AnsibleYaml,
            "all:\n  hosts:\n    h1:\n      ansible_user: -oProxyCommand=x\n",
            4,
        ),
        (
            InventoryFormat::AnsibleYaml,
            "all:\n  hosts:\n    -evil:\n",
            3,
        ),
        (
            InventoryFormat::Native,
            "[[hosts]]\nname = \"h1\"\nssh_user = \"-oProxyCommand=x\"\n",
            3,
        ),
        (
            InventoryFormat::Native,
            "[[hosts]]\nname = \"h1\"\naddress = \"-oProxyCommand=x\"\n",
            3,
        ),
        (InventoryFormat::Native, "[[hosts]]\nname = \"-h1\"\n", 2),
    ];
    for (format, text, line) in cases {
        let err = refused(format, text);
        assert!(
            err.starts_with(&format!("/inv/hosts:{line}:")),
            "{format:?} {text:?}: {err}"
        );
    }
}

#[test]
fn ordinary_addresses_and_users_still_parse() {
    let text = "[web]\na.example.invalid ansible_user=deploy_1\nb ansible_host=192.0.2.7\nc ansible_host=fd00::1\nd ansible_host=fe80::1%eth0 ansible_user=ops.admin\ne ansible_host=host-1.example.invalid.\n";
    let inv = parse(InventoryFormat::AnsibleIni, text).unwrap_or_else(|e| panic!("{e}"));
    let addresses: Vec<&str> = inv.hosts.iter().map(|h| h.address.as_str()).collect();
    assert_eq!(
        addresses,
        [
            "a.example.invalid",
            "192.0.2.7",
            "fd00::1",
            "fe80::1%eth0",
            "host-1.example.invalid."
        ]
    );
    for bad in ["300.1.1.1", "fd00::zz", "a b", "x..y", "h@x", "fe80::1%"] {
        let text = format!("[web]\nh1 ansible_host={bad}\n");
        assert!(
            parse(InventoryFormat::AnsibleIni, &text).is_err(),
            "{bad} accepted"
        );
    }
}
