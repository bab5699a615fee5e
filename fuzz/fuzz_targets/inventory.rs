//! The inventory parsers (native TOML, Ansible INI and YAML, pssh): any text, in any of the
//! four formats (first byte picks), with format detection too. Never a panic, never unbounded
//! memory (libFuzzer's -rss_limit_mb), and whatever parses is safe to hand to ssh: no host
//! name, address or user that starts with `-` or holds whitespace, at most `MAX_HOSTS` hosts.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use soak_inventory::{Inventory, InventoryFormat, detect_format};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let format = match pick % 5 {
        0 => InventoryFormat::Native,
        1 => InventoryFormat::AnsibleIni,
        2 => InventoryFormat::AnsibleYaml,
        3 => InventoryFormat::Pssh,
        _ => match detect_format(Path::new("/fuzz/inventory"), text) {
            Some(format) => format,
            None => return,
        },
    };
    let Ok(inventory) = Inventory::parse(Path::new("/fuzz/inventory"), text, format) else {
        return;
    };
    assert!(inventory.hosts.len() <= soak_inventory::MAX_HOSTS);
    for host in &inventory.hosts {
        for (what, value) in [("name", &host.name), ("address", &host.address)] {
            assert!(
                !value.is_empty()
                    && !value.starts_with('-')
                    && !value.contains(char::is_whitespace),
                "{what} `{value}` would reach ssh as is"
            );
        }
        if let Some(user) = &host.ssh.user {
            assert!(
                !user.is_empty() && !user.starts_with('-') && !user.contains(char::is_whitespace),
                "user `{user}` would reach ssh as is"
            );
        }
    }
});
