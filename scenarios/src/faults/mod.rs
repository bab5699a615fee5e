//! The nemesis: faults with a journaled lifecycle — plan (pure: selectors and the seed) →
//! apply → verify effective → revert → verify clean — each proven by measurement, never
//! assumed, and reverted on every exit path.
//!
//! - [`spec`]: faults as data; [`catalog`]: the built-in named scenarios; [`schedule`]: which
//!   window holds which fault (each followed by a heal window); [`select`]: targets.
//! - [`nemesis`]: the lifecycle driver ([`nemesis::Fault`], [`nemesis::ActiveFault`]) and the
//!   [`nemesis::FaultRegistry`] the teardown reverts from; [`journal`]: its journal lines.
//! - Backends: [`impair`] (delay, loss, partition through the node impairment API),
//!   [`process`] (restart, pause through [`control::NodeControl`]), [`idle`], and [`host`]
//!   (tc shaping, iptables partitions, restarts and pauses on SSH hosts, with a host-local
//!   dead-man's switch), driven as nemesis faults by [`hosted`] on host fleets.

pub mod catalog;
pub mod control;
pub mod cooling;
pub mod host;
pub mod hosted;
pub mod idle;
pub mod impair;
pub mod journal;
pub mod nemesis;
pub mod probe;
pub mod process;
pub mod schedule;
pub mod select;
pub mod spec;

use self::nemesis::Fault;
use self::select::Targets;
use self::spec::{Backend, FaultKind, FaultSpec, Permission};
use crate::api::NodeApi;

/// What the fleet offers the nemesis, and what the user allowed.
#[derive(Debug, Clone, Default)]
pub struct Capabilities {
    /// Granted opt-ins (`--allow-restart`, `--allow-netem`, `--allow-iptables`).
    pub allowed: Vec<Permission>,
    /// Why process control is unavailable on this fleet (`None`: available).
    pub process_unavailable: Option<String>,
    /// Why host `tc` shaping is unavailable on this fleet (`None`: available).
    pub tc_unavailable: Option<String>,
    /// Why host `iptables` rules are unavailable on this fleet (`None`: available).
    pub iptables_unavailable: Option<String>,
    /// The fleet's nodes run on hosts the host backends reach ([`control::HostAccess`]): a
    /// granted host flag then selects the host backend for the kinds it covers.
    pub hosts: bool,
}

/// The backend a fault runs on when its spec names none. On a host fleet a granted host flag
/// selects the host backend: `--allow-iptables` partitions through iptables, `--allow-netem`
/// delay and loss through netem (SKIPPED where the kernel lacks it — never silently moved to
/// another backend); without the flag they use the node impairment API, which needs none.
/// Restarts, pauses and bandwidth caps have one backend each.
pub fn default_backend(kind: FaultKind, caps: &Capabilities) -> Backend {
    let granted = |p: Permission| caps.hosts && caps.allowed.contains(&p);
    match kind {
        FaultKind::Partition if granted(Permission::Iptables) => Backend::Iptables,
        FaultKind::Delay | FaultKind::Loss if granted(Permission::Netem) => Backend::Tc,
        FaultKind::Delay | FaultKind::Loss | FaultKind::Partition => Backend::Node,
        FaultKind::Restart | FaultKind::Pause => Backend::Process,
        FaultKind::Idle => Backend::Runner,
        FaultKind::Bandwidth => Backend::Tc,
    }
}

/// The backend a fault runs on here, or why it is SKIPPED (never a pass).
pub fn choose_backend(spec: &FaultSpec, caps: &Capabilities) -> Result<Backend, String> {
    let backend = spec
        .backend
        .unwrap_or_else(|| default_backend(spec.kind, caps));
    let fits = matches!(
        (spec.kind, backend),
        (
            FaultKind::Delay | FaultKind::Loss | FaultKind::Partition,
            Backend::Node
        ) | (FaultKind::Restart | FaultKind::Pause, Backend::Process)
            | (FaultKind::Idle, Backend::Runner)
            | (
                FaultKind::Delay | FaultKind::Loss | FaultKind::Bandwidth,
                Backend::Tc
            )
            | (FaultKind::Partition, Backend::Iptables)
    );
    if !fits {
        return Err(format!(
            "a {} fault cannot run on the {} backend",
            spec.kind.as_str(),
            backend.as_str()
        ));
    }
    if let Some(permission) = spec.permission(backend)
        && !caps.allowed.contains(&permission)
    {
        return Err(format!(
            "not allowed: {} faults change {} and need {}",
            spec.kind.as_str(),
            match permission {
                Permission::Restart => "node processes",
                Permission::Netem => "host qdiscs",
                Permission::Iptables => "host firewall rules",
            },
            permission.flag()
        ));
    }
    let unavailable = match backend {
        Backend::Process => caps.process_unavailable.clone(),
        Backend::Tc => caps.tc_unavailable.clone(),
        Backend::Iptables => caps.iptables_unavailable.clone(),
        Backend::Node | Backend::Runner => None,
    };
    match unavailable {
        Some(reason) => Err(reason),
        None => Ok(backend),
    }
}

/// The implementation of `spec` on `backend` (chosen by [`choose_backend`]); `prefix` names
/// everything the fault creates on nodes (and, on hosts, the guard token). On a host fleet
/// (`caps.hosts`) tc, iptables and pauses are host faults ([`hosted::HostedFault`], each with its
/// dead-man's switch); restarts go through the fleet's [`control::NodeControl`] (the deploy's
/// service path). `Err` = SKIPPED with the reason.
pub fn make<A: NodeApi + 'static>(
    spec: &FaultSpec,
    targets: &Targets,
    backend: Backend,
    prefix: String,
    caps: &Capabilities,
) -> Result<Box<dyn Fault<A>>, String> {
    match (spec.kind, backend) {
        (FaultKind::Delay | FaultKind::Loss | FaultKind::Bandwidth, Backend::Tc)
        | (FaultKind::Partition, Backend::Iptables)
        | (FaultKind::Pause, Backend::Process)
            if caps.hosts =>
        {
            Ok(Box::new(hosted::HostedFault::new(
                spec.clone(),
                targets.clone(),
                &prefix,
            )))
        }
        (FaultKind::Delay | FaultKind::Loss | FaultKind::Partition, Backend::Node) => Ok(Box::new(
            impair::ImpairFault::new(spec.clone(), targets.clone(), prefix),
        )),
        (FaultKind::Restart, Backend::Process) => Ok(Box::new(process::RestartFault::new(
            spec.clone(),
            targets.clone(),
        ))),
        (FaultKind::Pause, Backend::Process) => {
            Ok(Box::new(process::PauseFault::new(targets.clone())))
        }
        (FaultKind::Idle, Backend::Runner) => Ok(Box::new(idle::IdleFault::new(spec.clone()))),
        (kind, backend) => Err(format!(
            "{} faults on the {} backend are not available in this build",
            kind.as_str(),
            backend.as_str()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destructive_kinds_need_their_flag_and_the_reason_names_it() {
        let restart = catalog::builtin("restart_storm").unwrap();
        let none = Capabilities::default();
        let err = choose_backend(&restart, &none).unwrap_err();
        assert!(err.contains("--allow-restart"), "{err}");
        let allowed = Capabilities {
            allowed: vec![Permission::Restart],
            ..Capabilities::default()
        };
        assert_eq!(choose_backend(&restart, &allowed), Ok(Backend::Process));
        let remote = Capabilities {
            allowed: vec![Permission::Restart],
            process_unavailable: Some("no service path recorded for this fleet".into()),
            ..Capabilities::default()
        };
        assert!(
            choose_backend(&restart, &remote)
                .unwrap_err()
                .contains("service path")
        );
    }

    #[test]
    fn node_impairments_need_no_flag() {
        for name in [
            "high_rtt_peer",
            "lossy_peer",
            "partition_halves",
            "idle_then_send",
        ] {
            let spec = catalog::builtin(name).unwrap();
            assert!(
                choose_backend(&spec, &Capabilities::default()).is_ok(),
                "{name}"
            );
        }
    }

    #[test]
    fn on_a_host_fleet_a_granted_host_flag_selects_the_host_backend() {
        let spec = |n| catalog::builtin(n).unwrap();
        let hosts = |allowed: Vec<Permission>| Capabilities {
            allowed,
            hosts: true,
            ..Capabilities::default()
        };
        // No flag: partitions and delays stay on the node impairment API (no flag needed) ...
        let none = hosts(vec![]);
        assert_eq!(
            choose_backend(&spec("partition_pair"), &none),
            Ok(Backend::Node)
        );
        assert_eq!(
            choose_backend(&spec("high_rtt_peer"), &none),
            Ok(Backend::Node)
        );
        // ... but what only a host can do is SKIPPED, naming the flag.
        for name in ["bandwidth_cap", "restart_storm", "stale_peer"] {
            let err = choose_backend(&spec(name), &none).unwrap_err();
            assert!(err.contains("--allow-"), "{name}: {err}");
        }
        let all = hosts(vec![
            Permission::Iptables,
            Permission::Netem,
            Permission::Restart,
        ]);
        assert_eq!(
            choose_backend(&spec("partition_halves"), &all),
            Ok(Backend::Iptables)
        );
        assert_eq!(choose_backend(&spec("lossy_peer"), &all), Ok(Backend::Tc));
        assert_eq!(
            choose_backend(&spec("bandwidth_cap"), &all),
            Ok(Backend::Tc)
        );
        assert_eq!(
            choose_backend(&spec("stale_peer"), &all),
            Ok(Backend::Process)
        );
        // The local mesh has no hosts: the flags change nothing there.
        let local = Capabilities {
            hosts: false,
            ..all.clone()
        };
        assert_eq!(
            choose_backend(&spec("partition_pair"), &local),
            Ok(Backend::Node)
        );
        // Which implementation: host faults on host fleets, impairments elsewhere.
        let targets =
            select::resolve(&"pair".parse().unwrap(), &["a".into(), "b".into()], 0).unwrap();
        assert!(
            make::<crate::fake::FakeNode>(
                &spec("partition_pair"),
                &targets,
                Backend::Iptables,
                "p".into(),
                &all
            )
            .is_ok()
        );
        assert!(
            make::<crate::fake::FakeNode>(
                &spec("partition_pair"),
                &targets,
                Backend::Iptables,
                "p".into(),
                &local
            )
            .is_err(),
            "no iptables fault without hosts"
        );
    }

    #[test]
    fn bandwidth_needs_tc_and_netem() {
        let spec = catalog::builtin("bandwidth_cap").unwrap();
        let err = choose_backend(&spec, &Capabilities::default()).unwrap_err();
        assert!(err.contains("--allow-netem"), "{err}");
        let local = Capabilities {
            allowed: vec![Permission::Netem],
            tc_unavailable: Some("tc shaping needs a host fleet (-i INVENTORY)".into()),
            ..Capabilities::default()
        };
        assert!(
            choose_backend(&spec, &local)
                .unwrap_err()
                .contains("host fleet")
        );
    }
}

#[cfg(test)]
mod lifecycle_tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use soak_gates::model::ScenarioStatus;

    use super::journal::{Journal, JournalEntry, Step};
    use super::nemesis::{ActiveFault, FaultCtx, FaultRegistry, Phase};
    use super::schedule::ScheduledFault;
    use super::*;
    use crate::fake::{FakeMesh, FakeNode, Fault as FakeFault};

    #[derive(Default)]
    struct Recorded(Mutex<Vec<JournalEntry>>);

    impl Journal for Recorded {
        fn record(
            &self,
            entry: JournalEntry,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + '_>>
        {
            Box::pin(async move {
                self.0.lock().map_err(|e| e.to_string())?.push(entry);
                Ok(())
            })
        }
    }

    impl Recorded {
        fn steps(&self) -> Vec<Step> {
            self.0.lock().unwrap().iter().map(|e| e.step).collect()
        }
    }

    fn ctx(mesh: &FakeMesh) -> FaultCtx<FakeNode> {
        mesh.fault_ctx(Arc::new(control::NoControl("fake fleet".into())))
    }

    fn active(name: &str, mesh: &FakeMesh, seed: u64) -> Arc<ActiveFault<FakeNode>> {
        let mut spec = catalog::builtin(name).unwrap();
        spec.hold = Duration::from_millis(10);
        let names: Vec<String> = mesh.nodes().iter().map(|n| n.name().to_owned()).collect();
        let targets = select::resolve(&spec.targets, &names, seed).unwrap();
        let backend = choose_backend(&spec, &Capabilities::default()).unwrap();
        let fault = make::<FakeNode>(
            &spec,
            &targets,
            backend,
            "soak.test.1".into(),
            &Capabilities::default(),
        )
        .unwrap();
        Arc::new(ActiveFault::new(
            ScheduledFault {
                instance: format!("{name}@w1"),
                window: 1,
                spec,
            },
            targets,
            names,
            backend,
            fault,
        ))
    }

    #[tokio::test]
    async fn a_partition_is_journaled_proven_reverted_and_proven_clean() {
        let mesh = FakeMesh::new(4);
        let cx = ctx(&mesh);
        let journal = Recorded::default();
        let fault = active("partition_halves", &mesh, 3);
        fault.begin(&cx, &journal).await;
        assert_eq!(fault.phase(), Phase::Applied);
        assert!(
            fault.evidence().effective.is_shown(),
            "{:?}",
            fault.evidence().effective
        );
        // Something is held on the nodes while it holds ...
        let held: usize = futures::future::join_all(cx.nodes.iter().map(|n| n.impairments()))
            .await
            .into_iter()
            .map(|l| l.unwrap().len())
            .sum();
        assert_eq!(held, 8, "2×2 cut pairs, both ways");
        fault.end(&cx, &journal).await;
        assert_eq!(fault.phase(), Phase::Done);
        // ... and nothing after.
        for n in cx.nodes.iter() {
            assert!(n.impairments().await.unwrap().is_empty());
        }
        assert_eq!(
            journal.steps(),
            vec![
                Step::Apply,
                Step::Applied,
                Step::VerifyEffective,
                Step::Effective,
                Step::Revert,
                Step::Reverted,
                Step::VerifyClean,
                Step::Clean
            ]
        );
        fault.conclude(&cx, &Default::default()).await;
        let record = fault.record();
        assert_eq!(record.status, ScenarioStatus::Completed);
        assert!(record.fault.as_ref().unwrap().heal.is_some());
        assert!(
            record
                .exemptions
                .iter()
                .any(|e| e.bar == "phase_a" && e.pairs.len() == 8)
        );
    }

    #[tokio::test]
    async fn a_fault_the_nodes_ignore_is_not_shown_effective() {
        let mesh = FakeMesh::new(4);
        for i in 0..4 {
            mesh.set_fault(i, FakeFault::IgnoreImpairments);
        }
        let cx = ctx(&mesh);
        let journal = Recorded::default();
        for name in ["partition_pair", "high_rtt_peer"] {
            let fault = active(name, &mesh, 1);
            fault.begin(&cx, &journal).await;
            assert!(!fault.evidence().effective.is_shown(), "{name}");
            fault.end(&cx, &journal).await;
            let record = fault.record();
            assert!(
                matches!(&record.status, ScenarioStatus::Failed { error } if error.contains("not shown effective")),
                "{name}: {:?}",
                record.status
            );
        }
        assert!(journal.steps().contains(&Step::Failed));
    }

    #[tokio::test]
    async fn teardown_reverts_what_an_aborted_window_left_applied() {
        let mesh = FakeMesh::new(3);
        let cx = Arc::new(ctx(&mesh));
        let journal = Arc::new(Recorded::default());
        let registry = Arc::new(FaultRegistry::default());
        let fault = active("high_rtt_peer", &mesh, 2);
        registry.register(Arc::clone(&fault));
        // A window task that applies, then hangs (as if its workload never returned).
        let task = {
            let (cx, journal, fault) = (Arc::clone(&cx), Arc::clone(&journal), Arc::clone(&fault));
            tokio::spawn(async move {
                fault.begin(&cx, journal.as_ref()).await;
                std::future::pending::<()>().await;
            })
        };
        while fault.phase() < Phase::Applied {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        task.abort();
        assert_eq!(registry.outstanding().len(), 1);
        registry
            .teardown(&cx, journal.as_ref(), Duration::from_secs(20))
            .await;
        assert!(registry.outstanding().is_empty());
        for n in cx.nodes.iter() {
            assert!(n.impairments().await.unwrap().is_empty());
        }
        assert!(fault.evidence().clean.is_shown());
    }

    #[tokio::test]
    async fn a_fault_its_backend_cannot_run_here_is_skipped_never_failed_or_passed() {
        struct Refuses;
        impl Fault<FakeNode> for Refuses {
            fn apply<'a>(
                &'a self,
                _cx: &'a FaultCtx<FakeNode>,
            ) -> nemesis::FaultFuture<'a, Result<serde_json::Value, nemesis::FaultError>>
            {
                Box::pin(async {
                    Err(nemesis::FaultError::Unsupported(
                        "h1: kernel lacks sch_netem (CONFIG_NET_SCH_NETEM is not set)".into(),
                    ))
                })
            }
            fn verify_effective<'a>(
                &'a self,
                _cx: &'a FaultCtx<FakeNode>,
            ) -> nemesis::FaultFuture<'a, soak_gates::model::Check> {
                unreachable!("never checked")
            }
            fn revert<'a>(
                &'a self,
                _cx: &'a FaultCtx<FakeNode>,
            ) -> nemesis::FaultFuture<'a, Result<serde_json::Value, nemesis::FaultError>>
            {
                unreachable!("nothing to revert")
            }
            fn verify_clean<'a>(
                &'a self,
                _cx: &'a FaultCtx<FakeNode>,
            ) -> nemesis::FaultFuture<'a, soak_gates::model::Check> {
                unreachable!("nothing to check")
            }
        }
        let mesh = FakeMesh::new(3);
        let cx = Arc::new(ctx(&mesh));
        let journal = Recorded::default();
        let spec = catalog::builtin("high_rtt_peer").unwrap();
        let names: Vec<String> = mesh.nodes().iter().map(|n| n.name().to_owned()).collect();
        let targets = select::resolve(&spec.targets, &names, 0).unwrap();
        let fault = Arc::new(ActiveFault::new(
            ScheduledFault {
                instance: "high_rtt_peer@w1".into(),
                window: 1,
                spec,
            },
            targets,
            names,
            Backend::Tc,
            Box::new(Refuses),
        ));
        let registry = FaultRegistry::default();
        registry.register(Arc::clone(&fault));
        fault.begin(&cx, &journal).await;
        assert_eq!(journal.steps(), vec![Step::Apply, Step::Skipped]);
        assert!(
            registry.outstanding().is_empty(),
            "nothing held, nothing to revert"
        );
        registry
            .teardown(&cx, &journal, Duration::from_secs(1))
            .await;
        fault.end(&cx, &journal).await;
        assert_eq!(journal.steps().len(), 2);
        let record = fault.record();
        assert!(
            matches!(&record.status, ScenarioStatus::Skipped { reason } if reason.contains("kernel lacks sch_netem")),
            "{:?}",
            record.status
        );
        assert!(
            record.exemptions.is_empty(),
            "a skipped fault exempts nothing"
        );
        assert!(!record.fault.as_ref().unwrap().effective.is_shown());
    }

    #[tokio::test]
    async fn a_neighbour_that_died_during_a_delay_is_left_out_of_the_clean_check_not_blamed() {
        let mesh = FakeMesh::new(4);
        let cx = ctx(&mesh);
        let journal = Recorded::default();
        let fault = active("high_rtt_peer", &mesh, 2);
        fault.begin(&cx, &journal).await;
        assert!(fault.evidence().effective.is_shown());
        let targets = fault.record().targets;
        let names: Vec<String> = cx.nodes.iter().map(|n| n.name().to_owned()).collect();
        let dead = names.iter().position(|n| !targets.contains(n)).unwrap();
        mesh.set_fault(dead, FakeFault::Dead);
        fault.end(&cx, &journal).await;
        let clean = fault.evidence().clean.clone();
        assert!(clean.is_shown(), "{clean:?}");
        assert!(
            clean
                .summary()
                .contains(&format!("{} not answering", names[dead])),
            "the clean check says whose pairs it left out: {clean:?}"
        );
    }

    #[tokio::test]
    async fn a_clean_check_whose_every_probe_pair_runs_through_dead_nodes_is_not_a_pass() {
        // The delayed node itself is dead: nothing can show its links back near the baseline
        // (its own impairment list is not ours to read here: nothing was applied).
        let mesh = FakeMesh::new(3);
        let cx = ctx(&mesh);
        let mut spec = catalog::builtin("high_rtt_peer").unwrap();
        spec.hold = Duration::from_millis(10);
        let names: Vec<String> = cx.nodes.iter().map(|n| n.name().to_owned()).collect();
        let targets = select::resolve(&spec.targets, &names, 2).unwrap();
        for (i, n) in names.iter().enumerate() {
            if targets.nodes.contains(n) {
                mesh.set_fault(i, FakeFault::Dead);
            }
        }
        let backend = choose_backend(&spec, &Capabilities::default()).unwrap();
        let fault = make::<FakeNode>(
            &spec,
            &targets,
            backend,
            "soak.test.2".into(),
            &Capabilities::default(),
        )
        .unwrap();
        let check = tokio::time::timeout(Duration::from_secs(60), fault.verify_clean(&cx))
            .await
            .expect("the clean check ends by its deadline");
        assert!(
            matches!(&check, soak_gates::model::Check::NotChecked { reason } if reason.contains("not answering")),
            "{check:?}"
        );
    }

    #[tokio::test]
    async fn a_fault_whose_journal_cannot_be_written_does_not_act() {
        struct Broken;
        impl Journal for Broken {
            fn record(
                &self,
                _entry: JournalEntry,
            ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + '_>>
            {
                Box::pin(async { Err("disk full".to_string()) })
            }
        }
        let mesh = FakeMesh::new(3);
        let cx = ctx(&mesh);
        let fault = active("partition_pair", &mesh, 0);
        fault.begin(&cx, &Broken).await;
        assert_eq!(fault.phase(), Phase::Planned);
        for n in cx.nodes.iter() {
            assert!(n.impairments().await.unwrap().is_empty());
        }
        assert!(!fault.evidence().effective.is_shown());
    }
}
