//! Runs written through the journal API, event by event at chosen times: journals whose
//! delivery metrics and report are known in advance (`tests/report_stats.rs`,
//! `tests/report_html.rs`).

use std::path::Path;

use cutover::engine::{
    Event, EventKind, FinalStatus, ServiceInit, Trigger, VerdictInfo, event_payload,
};
use cutover::journal::{Journal, NewEntry, RELEASE_ENTRY};
use cutover::judge::{AnalysisWindow, ArmCounts, Outcome};
use cutover::release::StrategyKind;

/// One run being written: events are placed at `t0 + s` seconds.
pub struct RunWriter {
    journal: Journal,
    t0: u64,
    seq: u64,
}

impl RunWriter {
    /// A run of `release` on `services` (baseline v1, candidate v2), started at `t0` (ms),
    /// its release entry naming `environment` and `change`.
    pub fn new(
        state_dir: &Path,
        release: &str,
        environment: Option<&str>,
        change: Option<&str>,
        services: &[&str],
        t0: u64,
    ) -> RunWriter {
        let mut journal = Journal::create_at(state_dir, release, "0", t0).unwrap();
        let run_id = journal.run_id().to_string();
        journal
            .append(NewEntry {
                at_ms: t0,
                operator: Some("ann".into()),
                kind: RELEASE_ENTRY.into(),
                service: None,
                payload: serde_json::json!({
                    "summary": format!("release {release}"),
                    "environment": environment,
                    "change": change,
                    "release": {"release": {"name": release}, "services": services.iter().map(|s| serde_json::json!({"name": s})).collect::<Vec<_>>()},
                }),
            })
            .unwrap();
        let mut w = RunWriter {
            journal,
            t0,
            seq: 0,
        };
        w.at(
            0.0,
            EventKind::ReleaseLoaded {
                release: release.into(),
                run_id,
                platform: "local".into(),
                environment: environment.map(str::to_string),
                break_glass: None,
                change: change.map(str::to_string),
                change_control: None,
                on_failure: Default::default(),
                max_parallel: services.len() as u32,
                waves: vec![services.iter().map(|s| s.to_string()).collect()],
                services: services
                    .iter()
                    .map(|s| ServiceInit {
                        name: s.to_string(),
                        strategy: StrategyKind::Canary,
                        wave: 0,
                        depends_on: Vec::new(),
                        baseline: "v1".into(),
                        candidate: "v2".into(),
                        steps: vec!["set weight 10".into(), "analysis 1m".into()],
                    })
                    .collect(),
            },
        );
        w
    }

    /// Journal `kind` at `t0 + s` seconds.
    pub fn at(&mut self, s: f64, kind: EventKind) -> &mut RunWriter {
        self.seq += 1;
        let e = Event {
            seq: self.seq,
            at_ms: self.t0 + (s * 1000.0) as u64,
            kind,
        };
        self.journal
            .append(NewEntry {
                at_ms: e.at_ms,
                operator: e.kind.operator().map(str::to_string),
                kind: e.kind.journal_kind().into(),
                service: e.kind.service().map(str::to_string),
                payload: event_payload(&e),
            })
            .unwrap();
        self
    }

    /// Journal an entry of `kind` that is not an engine event (what the session writes
    /// before the engine starts: a change-control refusal, a platform check) at `t0 + s`.
    pub fn entry(&mut self, s: f64, kind: &str, payload: serde_json::Value) -> &mut RunWriter {
        self.journal
            .append(NewEntry {
                at_ms: self.t0 + (s * 1000.0) as u64,
                operator: Some("ann".into()),
                kind: kind.into(),
                service: None,
                payload,
            })
            .unwrap();
        self
    }

    pub fn start(&mut self, s: f64, operator: &str) -> &mut RunWriter {
        self.at(
            s,
            EventKind::ReleaseStarted {
                operator: operator.into(),
            },
        )
    }

    /// The service starts and its candidate launches at `s`, taking 10 %.
    pub fn launch(&mut self, s: f64, service: &str) -> &mut RunWriter {
        self.at(
            s,
            EventKind::ServiceStarted {
                service: service.into(),
            },
        )
        .at(
            s,
            EventKind::Launched {
                service: service.into(),
                revision: "v2".into(),
                replicas: 1,
            },
        )
        .at(
            s,
            EventKind::WeightsSet {
                service: service.into(),
                weights: vec![("v1".into(), 90), ("v2".into(), 10)],
            },
        )
    }

    /// An analysis window ending at `s`: 1000 baseline requests with `base_errors`, 100
    /// candidate requests with `cand_errors`, p99 40 ms against `cand_p99` ms.
    pub fn window(
        &mut self,
        s: f64,
        service: &str,
        base_errors: u64,
        cand_errors: u64,
        cand_p99: f64,
    ) -> &mut RunWriter {
        self.at(
            s,
            EventKind::AnalysisSample {
                service: service.into(),
                window: AnalysisWindow {
                    at_ms: (s * 1000.0) as u64,
                    duration_ms: 1000,
                    canary_weight: 0.1,
                    slow_threshold_ms: Some(200),
                    baseline: ArmCounts {
                        requests: 1000,
                        errors: base_errors,
                        slow: 0,
                    },
                    canary: ArmCounts {
                        requests: 100,
                        errors: cand_errors,
                        slow: 0,
                    },
                },
                baseline_p99_ms: Some(40.0),
                candidate_p99_ms: Some(cand_p99),
            },
        )
    }

    pub fn verdict(&mut self, s: f64, service: &str, outcome: Outcome) -> &mut RunWriter {
        let at_ms = self.t0 + (s * 1000.0) as u64;
        self.at(
            s,
            EventKind::Verdict {
                service: service.into(),
                verdict: VerdictInfo {
                    outcome,
                    judge: "sequential".into(),
                    summary: format!("{outcome}"),
                    explanation: vec!["errors: canary vs baseline".into()],
                    at_ms,
                },
            },
        )
    }

    pub fn promote(&mut self, s: f64, service: &str) -> &mut RunWriter {
        self.at(
            s,
            EventKind::WeightsSet {
                service: service.into(),
                weights: vec![("v2".into(), 100)],
            },
        )
        .at(
            s,
            EventKind::Promoted {
                service: service.into(),
            },
        )
    }

    /// Rollback decided at `decided` (by `operator`, or automatically), all traffic back
    /// on v1 at `restored`.
    pub fn rollback(
        &mut self,
        decided: f64,
        restored: f64,
        service: &str,
        operator: Option<&str>,
    ) -> &mut RunWriter {
        let trigger = match operator {
            Some(o) => Trigger::Operator { operator: o.into() },
            None => Trigger::Automatic,
        };
        self.at(
            decided,
            EventKind::RollbackStarted {
                service: service.into(),
                reason: "analysis failed".into(),
                trigger,
            },
        )
        .at(
            restored,
            EventKind::WeightsSet {
                service: service.into(),
                weights: vec![("v1".into(), 100)],
            },
        )
        .at(
            restored,
            EventKind::RolledBack {
                service: service.into(),
                reason: "analysis failed".into(),
            },
        )
    }

    /// The release ends at `s` with each service's final status; the run is sealed.
    pub fn finish(mut self, s: f64, outcome: &str, services: &[(&str, FinalStatus)]) -> String {
        let exit_code = if services.iter().all(|(_, f)| *f == FinalStatus::Promoted) {
            0
        } else {
            3
        };
        if !services.is_empty() {
            self.at(
                s,
                EventKind::ReleaseFinished {
                    services: services.iter().map(|(n, f)| (n.to_string(), *f)).collect(),
                    exit_code,
                },
            );
        }
        let run_id = self.journal.run_id().to_string();
        self.journal
            .finish_at(outcome, self.t0 + (s * 1000.0) as u64)
            .unwrap();
        run_id
    }
}
