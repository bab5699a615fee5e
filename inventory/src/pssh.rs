//! pssh host files: one `[user@]host[:port]` per line (also the older `host[:port] user`),
//! blank lines and `#` comments.

use std::path::Path;

use crate::error::InventoryError;
use crate::model::{Builder, Inventory, InventoryFormat, Setting};
use crate::pattern::split_port;

/// Parses a pssh host file read from `file`.
pub fn parse(file: &Path, text: &str) -> Result<Inventory, InventoryError> {
    let mut b = Builder::new(file);
    let base = b.base_dir.clone();
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let (target, trailing_user) = match tokens.as_slice() {
            [target] => (*target, None),
            [target, user] => (*target, Some(*user)),
            _ => {
                return Err(b.err(
                    line_no,
                    format!("expected `[user@]host[:port]`, got `{line}`"),
                ));
            }
        };
        let (user, hostport) = match target.rsplit_once('@') {
            Some((user, rest)) => (Some(user), rest),
            None => (None, target),
        };
        if user.is_some() && trailing_user.is_some() {
            return Err(b.err(line_no, format!("`{line}` gives the user twice")));
        }
        let user = user.or(trailing_user);
        let (host, port) = split_port(hostport).map_err(|m| b.err(line_no, m))?;
        if host.contains(['[', ']']) {
            return Err(b.err(line_no, format!("pssh host files have no ranges: `{host}`")));
        }
        if b.has_host(&host) {
            return Err(b.err(line_no, format!("host `{host}` is listed twice")));
        }
        let draft = b.host(&host, line_no)?;
        let mut result = Ok(());
        if let Some(user) = user {
            result = draft.vars.set(Setting::SshUser, "user", user, &base);
        }
        if let (Some(port), Ok(())) = (port, &result) {
            result = draft
                .vars
                .set(Setting::SshPort, "port", &port.to_string(), &base);
        }
        result.map_err(|m| b.err(line_no, m))?;
    }
    b.finish(InventoryFormat::Pssh)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_host_port_forms() {
        let inv = parse(
            Path::new("hosts.pssh"),
            "# fleet\n\ndeploy@a.example.invalid:2222\nb.example.invalid\nc.example.invalid:23 ops\n[fd00::1]:22\n",
        )
        .expect("valid host file");
        assert_eq!(inv.hosts.len(), 4);
        assert_eq!(inv.hosts[0].ssh.user.as_deref(), Some("deploy"));
        assert_eq!(inv.hosts[0].ssh.port, 2222);
        assert_eq!(inv.hosts[1].ssh.user, None);
        assert_eq!(inv.hosts[1].ssh.port, 22);
        assert_eq!(inv.hosts[2].ssh.user.as_deref(), Some("ops"));
        assert_eq!(inv.hosts[3].address, "fd00::1");
    }

    #[test]
    fn errors_name_the_line() {
        let err = parse(Path::new("h.pssh"), "a\nb:99999\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with("h.pssh:2: "), "{err}");
        let err = parse(Path::new("h.pssh"), "a\n\na\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with("h.pssh:3: "), "{err}");
        let err = parse(Path::new("h.pssh"), "a b c\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with("h.pssh:1: "), "{err}");
    }
}
