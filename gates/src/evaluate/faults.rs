//! Bars that judge faults: restart recovery (and, with the nemesis, fault effectiveness,
//! partition heal, cooling and residue).

use super::*;

pub(super) fn judge_recovery(record: &WindowRecord, max_ms: u64) -> Option<Judged> {
    let mut failed = Vec::new();
    let mut unknown = Vec::new();
    let mut nodes = BTreeSet::new();
    let mut worst: Option<u64> = None;
    let mut count = 0;
    for s in &record.scenarios {
        match (&s.status, &s.recovery) {
            (ScenarioStatus::Skipped { reason }, _) if s.name.contains("restart") => {
                unknown.push(format!("{} SKIPPED ({reason})", s.name));
                nodes.extend(s.targets.iter().cloned());
            }
            (ScenarioStatus::Failed { error }, None) if s.name.contains("restart") => {
                unknown.push(format!("{} FAILED ({error})", s.name));
                nodes.extend(s.targets.iter().cloned());
            }
            (ScenarioStatus::Skipped { .. }, _) => {}
            (_, Some(r)) => {
                count += 1;
                match r.recovered_after_ms {
                    None => {
                        failed.push(format!("{} never recovered", r.node));
                        nodes.insert(r.node.clone());
                    }
                    Some(ms) => {
                        worst = Some(worst.map_or(ms, |w| w.max(ms)));
                        if ms > max_ms {
                            failed.push(format!("{} recovered after {ms} ms", r.node));
                            nodes.insert(r.node.clone());
                        }
                    }
                }
            }
            (_, None) => {}
        }
    }
    if count == 0 && unknown.is_empty() {
        return None;
    }
    let (verdict, reason) = if !failed.is_empty() {
        (Outcome::NoGo, list(&failed, 5))
    } else if !unknown.is_empty() {
        (
            Outcome::Unknown,
            format!("restart not exercised: {}", list(&unknown, 5)),
        )
    } else {
        (
            Outcome::Go,
            format!("{count} restarts recovered within {max_ms} ms"),
        )
    };
    Some(Judged {
        verdict,
        statistic: "slowest restart recovery, ms".into(),
        value: worst.map(|w| w as f64),
        threshold: format!("<= {max_ms}"),
        nodes: nodes.into_iter().collect(),
        reason,
    })
}
