//! The built-in named scenarios (`soak scenarios list`, `soak scenarios show NAME`), kept as
//! TOML under `scenarios/builtin/` so what `show` prints is exactly what runs, and a copy is a
//! starting point for `--scenario-file`.

use super::spec::FaultSpec;

/// Built-in scenarios: name and TOML text.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "high_rtt_peer",
        include_str!("../../builtin/high_rtt_peer.toml"),
    ),
    ("lossy_peer", include_str!("../../builtin/lossy_peer.toml")),
    (
        "partition_pair",
        include_str!("../../builtin/partition_pair.toml"),
    ),
    (
        "partition_halves",
        include_str!("../../builtin/partition_halves.toml"),
    ),
    (
        "partition_one_way",
        include_str!("../../builtin/partition_one_way.toml"),
    ),
    (
        "restart_storm",
        include_str!("../../builtin/restart_storm.toml"),
    ),
    ("stale_peer", include_str!("../../builtin/stale_peer.toml")),
    (
        "idle_then_send",
        include_str!("../../builtin/idle_then_send.toml"),
    ),
    (
        "bandwidth_cap",
        include_str!("../../builtin/bandwidth_cap.toml"),
    ),
];

/// The workloads `--scenarios` also accepts (they run in every window).
pub const WORKLOADS: &[(&str, &str)] = &[
    (
        "baseline",
        "Phase A: every ordered pair sends an acknowledged DM, every window",
    ),
    (
        "fanout_burst",
        "a pub/sub burst from seeded publishers to every node, every window",
    ),
];

/// The TOML text of a built-in scenario.
pub fn text(name: &str) -> Option<&'static str> {
    BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// A built-in scenario, parsed and validated.
pub fn builtin(name: &str) -> Result<FaultSpec, String> {
    let text = text(name).ok_or_else(|| {
        format!(
            "unknown scenario `{name}` (known: {})",
            names().collect::<Vec<_>>().join(", ")
        )
    })?;
    parse(text, &format!("built-in scenario {name}"))
}

/// Names of every built-in fault scenario.
pub fn names() -> impl Iterator<Item = &'static str> {
    BUILTIN.iter().map(|(n, _)| *n)
}

/// Parses and validates one fault as TOML (a built-in, or one `[[fault]]` table).
pub fn parse(text: &str, source: &str) -> Result<FaultSpec, String> {
    let spec: FaultSpec =
        toml::from_str(text).map_err(|e| format!("{source}: {}", e.to_string().trim()))?;
    spec.validate()
        .map_err(|e| format!("{source}: fault `{}`: {e}", spec.name))?;
    Ok(spec)
}

/// A `--scenario-file`: `[[fault]]` tables.
#[derive(Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    #[serde(default)]
    fault: Vec<FaultSpec>,
}

/// A built-in scenario as a ready `--scenario-file`: its comments, then its `[[fault]]` table.
pub fn show(name: &str) -> Result<String, String> {
    let spec = builtin(name)?;
    let comments: String = text(name)
        .unwrap_or_default()
        .lines()
        .take_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let body = toml::to_string(&ScenarioFile { fault: vec![spec] })
        .map_err(|e| format!("cannot print scenario `{name}`: {e}"))?;
    Ok(format!("{comments}{body}"))
}

/// Parses a `--scenario-file` (TOML with `[[fault]]` tables); errors name the file and, for
/// syntax errors, the line.
pub fn parse_file(text: &str, source: &str) -> Result<Vec<FaultSpec>, String> {
    let file: ScenarioFile =
        toml::from_str(text).map_err(|e| format!("{source}: {}", e.to_string().trim()))?;
    if file.fault.is_empty() {
        return Err(format!("{source}: no [[fault]] table"));
    }
    let mut seen = std::collections::BTreeSet::new();
    for spec in &file.fault {
        spec.validate()
            .map_err(|e| format!("{source}: fault `{}`: {e}", spec.name))?;
        if spec.window.is_none() && !seen.insert(spec.name.clone()) {
            return Err(format!(
                "{source}: fault `{}` appears twice without a `window` (give each a window or a \
                 distinct name)",
                spec.name
            ));
        }
    }
    Ok(file.fault)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_parses_and_validates() {
        for name in names() {
            let spec = builtin(name).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(spec.name, name);
            assert!(!spec.description.is_empty(), "{name} needs a description");
        }
        assert!(builtin("nope").unwrap_err().contains("known:"));
    }

    #[test]
    fn show_prints_a_scenario_file_that_runs_the_builtin() {
        for name in names() {
            let text = show(name).unwrap();
            assert!(text.contains("[[fault]]"), "{text}");
            let parsed = parse_file(&text, name).unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(parsed, vec![builtin(name).unwrap()], "{name}");
        }
    }

    #[test]
    fn high_rtt_peer_is_1500_ms_plus_minus_200() {
        let spec = builtin("high_rtt_peer").unwrap();
        assert_eq!((spec.delay_ms, spec.jitter_ms), (1300, 400));
        assert!(spec.cooling);
    }

    #[test]
    fn scenario_files_name_their_errors() {
        let err = parse_file("[[fault]]\nname = 'x'\nkind = 'delay'\n", "s.toml").unwrap_err();
        assert!(err.contains("s.toml") && err.contains("delay_ms"), "{err}");
        let err = parse_file("[[fault]\n", "s.toml").unwrap_err();
        assert!(err.contains("line 1"), "{err}");
        let err = parse_file("", "s.toml").unwrap_err();
        assert!(err.contains("no [[fault]]"), "{err}");
        let ok = parse_file(
            "[[fault]]\nname='a'\nkind='pause'\ntargets='node:node-1'\nwindow=2\n",
            "s.toml",
        )
        .unwrap();
        assert_eq!(ok[0].window, Some(2));
    }
}
