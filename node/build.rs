//! Sets `SOAK_NODE_GIT` (shown by `/v1/version` and `soak_node_build_info`) to the short
//! revision of the checkout the node is built from, or `unknown`. Never fails the build.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    // An explicit value (e.g. from a packaging script) wins.
    println!("cargo:rerun-if-env-changed=SOAK_NODE_GIT");
    if let Ok(v) = std::env::var("SOAK_NODE_GIT")
        && !v.trim().is_empty()
    {
        println!("cargo:rustc-env=SOAK_NODE_GIT={}", v.trim());
        return;
    }
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    if let Some(git_dir) = manifest.as_deref().and_then(find_git_dir) {
        let head = git_dir.join("HEAD");
        println!("cargo:rerun-if-changed={}", head.display());
        if let Ok(text) = std::fs::read_to_string(&head)
            && let Some(r) = text.trim().strip_prefix("ref: ")
        {
            // The branch ref (loose file; packed refs change packed-refs).
            println!("cargo:rerun-if-changed={}", git_dir.join(r).display());
            println!(
                "cargo:rerun-if-changed={}",
                git_dir.join("packed-refs").display()
            );
        }
    }
    let rev = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(manifest.unwrap_or_else(|| PathBuf::from(".")))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=SOAK_NODE_GIT={rev}");
}

/// The `.git` directory above `start` (a worktree's `.git` file points to its git dir).
fn find_git_dir(start: &Path) -> Option<PathBuf> {
    for dir in start.ancestors() {
        let dot = dir.join(".git");
        if dot.is_dir() {
            return Some(dot);
        }
        if dot.is_file() {
            let text = std::fs::read_to_string(&dot).ok()?;
            let path = text.trim().strip_prefix("gitdir: ")?;
            let p = Path::new(path);
            return Some(if p.is_absolute() {
                p.to_path_buf()
            } else {
                dir.join(p)
            });
        }
    }
    None
}
