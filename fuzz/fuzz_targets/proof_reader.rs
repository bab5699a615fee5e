//! The proof reader: the compact sample decoder on any bytes (what decodes re-encodes to the
//! same samples), and `soak_proofs::read` / `verify` on a proof directory whose files come
//! from the input. Never a panic, memory bounded (libFuzzer's -rss_limit_mb).
//!
//! Input layout for the directory part: the first byte selects which files the rest fills;
//! the rest is a sequence of `u16` little-endian length + bytes, one per selected file, in the
//! order of `FILES`.
#![no_main]

use std::fs;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use soak_proofs::samples::{SampleEncoder, decode};

const FILES: &[&str] = &[
    "run.json",
    "samples/node-0.smp",
    "samples/node-1.jsonl",
    "windows/000/window.json",
    "events.jsonl",
    "manifest.json",
    "verdict.json",
    "config.json",
];

fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("soak-fuzz-proof-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    // 1. The sample decoder alone, on the raw bytes and behind a valid magic.
    let mut with_magic = soak_proofs::samples::MAGIC.to_vec();
    with_magic.extend_from_slice(data);
    for bytes in [data, &with_magic[..]] {
        if let Ok(decoded) = decode(bytes) {
            let mut encoder = SampleEncoder::new();
            let mut again = Vec::new();
            for sample in &decoded.samples {
                encoder.encode(sample, &mut again);
            }
            let back = decode(&again).expect("re-encoded samples decode");
            assert_eq!(back.torn_bytes, 0);
            assert_eq!(
                format!("{:?}", back.samples),
                format!("{:?}", decoded.samples),
                "samples survive a re-encode"
            );
        }
    }

    // 2. A whole directory.
    let Some((&mask, rest)) = data.split_first() else {
        return;
    };
    let dir = scratch();
    let _ = fs::remove_dir_all(dir);
    for sub in ["samples", "windows/000"] {
        let _ = fs::create_dir_all(dir.join(sub));
    }
    let mut rest = rest;
    let mut next_part = || -> Option<&[u8]> {
        let (len, tail) = rest.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_le_bytes(*len)).min(tail.len());
        let (part, tail) = tail.split_at(len);
        rest = tail;
        Some(part)
    };
    for (i, name) in FILES.iter().enumerate() {
        if mask & (1 << i) == 0 {
            continue;
        }
        let Some(part) = next_part() else {
            break;
        };
        // run.json keeps a readable version so the rest gets exercised.
        let contents = if *name == "run.json" && part.first() != Some(&b'{') {
            let mut valid = br#"{"format":{"major":1,"minor":2},"meta":"#.to_vec();
            valid.extend_from_slice(part);
            valid.push(b'}');
            valid
        } else {
            part.to_vec()
        };
        let _ = fs::write(dir.join(name), contents);
    }
    if let Ok(proof) = soak_proofs::read(dir) {
        let _ = proof.is_complete();
        let _ = soak_gates::Profile::builtin("broad-launch")
            .map(|p| soak_gates::evaluate(&proof.observations, &p));
    }
    let _ = soak_proofs::verify(dir);
});
