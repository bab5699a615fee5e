//! `soak-inventory`: hosts and how to reach them — inventory parsing (pure) and the local,
//! SSH and network-namespace lab backends (IO).
//!
//! Entry points: [`Inventory::load`] reads a native TOML inventory, an Ansible INI or YAML
//! inventory or a pssh host file into one [`Host`] model; [`remote::connect`] opens a
//! [`remote::Remote`] to a host (SSH or local); [`node`] knows how the bundled `soak-node` is
//! laid out, configured and run on a host.
#![warn(missing_docs)]

pub mod ansible_ini;
pub mod ansible_yaml;
pub mod error;
pub mod lab;
pub mod model;
pub mod native;
pub mod node;
mod pattern;
pub mod pssh;
pub mod remote;
pub mod select;
#[cfg(feature = "testing")]
pub mod testing;

use std::path::Path;

pub use error::{InventoryError, InventoryErrorKind, Location};
pub use model::{
    Connection, Group, Host, HostKeyChecking, Inventory, InventoryFormat, InventoryWarning,
    MAX_GROUPS, MAX_HOSTS, Privilege, ServiceManager, SshSettings, supported_ansible_vars,
};
pub use select::{HostPattern, Selection};

impl Inventory {
    /// Reads and parses the inventory at `path`, choosing the format by [`detect_format`].
    pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| InventoryError::in_file(path, InventoryErrorKind::Read(e)))?;
        let format = detect_format(path, &text)
            .ok_or_else(|| InventoryError::in_file(path, InventoryErrorKind::UnknownFormat))?;
        Inventory::parse(path, &text, format)
    }

    /// Parses `text` (read from `path`, used in errors and for relative key paths) as `format`.
    pub fn parse(
        path: &Path,
        text: &str,
        format: InventoryFormat,
    ) -> Result<Inventory, InventoryError> {
        match format {
            InventoryFormat::Native => native::parse(path, text),
            InventoryFormat::AnsibleIni => ansible_ini::parse(path, text),
            InventoryFormat::AnsibleYaml => ansible_yaml::parse(path, text),
            InventoryFormat::Pssh => pssh::parse(path, text),
        }
    }
}

/// The format of an inventory: by extension (`.toml`; `.yml`/`.yaml`; `.ini`; `.pssh`/`.hosts`/
/// `.txt`), else by content: YAML if it starts with `---` or a top-level `key:` mapping; INI if
/// it has a `[section]` line or `key=value` vars; a pssh host file when every line is
/// `[user@]host[:port]`. A plain list of host names reads the same in INI and pssh.
pub fn detect_format(path: &Path, text: &str) -> Option<InventoryFormat> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => return Some(InventoryFormat::Native),
        Some("yml" | "yaml") => return Some(InventoryFormat::AnsibleYaml),
        Some("ini" | "cfg") => return Some(InventoryFormat::AnsibleIni),
        Some("pssh" | "hosts" | "txt") => return Some(InventoryFormat::Pssh),
        _ => {}
    }
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .collect();
    let first = lines.first()?;
    if first.starts_with("---") || (first.ends_with(':') && !first.starts_with(' ')) {
        return Some(InventoryFormat::AnsibleYaml);
    }
    if lines
        .iter()
        .any(|l| l.starts_with("[[hosts]]") || l.starts_with("[defaults]"))
    {
        return Some(InventoryFormat::Native);
    }
    if lines
        .iter()
        .any(|l| l.trim_start().starts_with('[') || l.contains('='))
    {
        return Some(InventoryFormat::AnsibleIni);
    }
    if lines.iter().all(|l| l.split_whitespace().count() <= 2) {
        return Some(InventoryFormat::Pssh);
    }
    Some(InventoryFormat::AnsibleIni)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_detected_by_extension_then_content() {
        let d = |p: &str, t: &str| detect_format(Path::new(p), t);
        assert_eq!(d("a.toml", ""), Some(InventoryFormat::Native));
        assert_eq!(d("a.yml", ""), Some(InventoryFormat::AnsibleYaml));
        assert_eq!(
            d("hosts", "all:\n  hosts:\n"),
            Some(InventoryFormat::AnsibleYaml)
        );
        assert_eq!(d("hosts", "[web]\nh1\n"), Some(InventoryFormat::AnsibleIni));
        assert_eq!(
            d("hosts", "h1 ansible_port=2\n"),
            Some(InventoryFormat::AnsibleIni)
        );
        assert_eq!(d("hosts", "root@h1:22\nh2\n"), Some(InventoryFormat::Pssh));
        assert_eq!(
            d("inv", "[defaults]\n[[hosts]]\n"),
            Some(InventoryFormat::Native)
        );
        assert_eq!(d("hosts", "# only comments\n"), None);
    }
}
