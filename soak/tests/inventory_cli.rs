//! Bad inventories end every fleet command with exit 64 and a message naming file and line,
//! before any host is contacted; `soak logs` names the hosts it knows.

use std::path::{Path, PathBuf};
use std::process::Command;

mod support;
use support::soak_bin;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../inventory/tests/fixtures")
        .join(name)
}

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(soak_bin())
        .args(args)
        .output()
        .expect("run soak");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn broken_inventories_are_usage_errors_naming_file_and_line() {
    for (name, line) in [
        ("broken.ini", 3),
        ("broken.yml", 7),
        ("broken.pssh", 2),
        ("broken.toml", 7),
    ] {
        let path = fixture(name);
        let path_s = path.to_string_lossy();
        for cmd in [
            vec!["deploy", "-i", &path_s, "--binary", "/bin/sh"],
            vec!["status", "-i", &path_s],
            vec!["stop", "-i", &path_s],
            vec!["logs", "-i", &path_s, "x"],
        ] {
            let (code, stderr) = run(&cmd);
            assert_eq!(code, Some(64), "{cmd:?}: {stderr}");
            let want = format!("{}:{line}: ", path.display());
            assert!(
                stderr.contains(&want),
                "{cmd:?}: expected `{want}` in {stderr}"
            );
        }
    }
}

#[test]
fn logs_of_an_unknown_host_lists_the_known_ones() {
    let path = fixture("fleet.pssh");
    let (code, stderr) = run(&["logs", "-i", &path.to_string_lossy(), "nope"]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains("no host `nope`") && stderr.contains("node01.example.invalid"),
        "{stderr}"
    );
}

#[test]
fn bad_numbers_are_usage_errors() {
    let path = fixture("fleet.ini");
    let path_s = path.to_string_lossy();
    for args in [
        vec!["status", "-i", &path_s, "--parallel", "0"],
        vec!["status", "-i", &path_s, "--min-hosts", "0"],
        vec![
            "deploy",
            "-i",
            &path_s,
            "--binary",
            "/nonexistent/soak-node",
        ],
    ] {
        let (code, stderr) = run(&args);
        assert_eq!(code, Some(64), "{args:?}: {stderr}");
    }
}
