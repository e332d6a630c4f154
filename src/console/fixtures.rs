//! Scripted releases for snapshot tests, the render benchmark and screenshots: real
//! [`Event`]s folded into a [`ReleaseState`] exactly as the engine would publish them,
//! plus synthetic baseline/canary series for the health charts.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::Arc;

use crate::engine::telemetry::{Sample, ServiceSeries, Telemetry};
use crate::engine::{
    Command, Event, EventKind, Gate, GateKind, HealthSummary, MigrationPhase, ReleaseState,
    ServiceInit, Trigger, VerdictInfo,
};
use crate::judge::Outcome;
use crate::plan::{Plan, plan, revisions};
use crate::release::{Release, load_str};

/// Release start time of every scenario.
pub const T0: u64 = 1_790_000_000_000;

fn tail(port: u16, cur: &str, tgt: &str) -> String {
    let mut t = format!("[service.local]\nlisten = \"127.0.0.1:{port}\"\nreplicas = 2\n");
    t.push_str("command = [\"cutover\", \"demo-service\", \"--port\", \"{port}\", \"--revision\", \"{revision}\"]\n");
    t.push_str(&format!(
        "current = {{ revision = \"{cur}\" }}\ntarget = {{ revision = \"{tgt}\" }}\n"
    ));
    t
}

/// The checkout release: six services in a diamond and a migration.
pub fn checkout_release() -> Release {
    let mut t = String::from(
        "[release]\nname = \"checkout-2026-11-27\"\nplatform = \"local\"\nmax_parallel = 2\non_failure = \"rollback_dependents\"\nenvironment = \"staging\"\n",
    );
    let canary = "strategy = \"canary\"\nsteps = [ { set_weight = 5 }, { analysis = \"2m\" }, { set_weight = 25 }, { analysis = \"2m\" }, { set_weight = 50 }, { approval = \"10m\", on_timeout = \"rollback\" }, { set_weight = 100 } ]\n[service.analysis]\nmin_requests = 200\nmin_duration = \"1m\"\n";
    let services: [(&str, &[&str], &str, &str, &str); 6] = [
        ("ledger", &[], canary, "v41", "v42"),
        (
            "auth",
            &[],
            "strategy = \"rolling\"\nrolling = { batch = 1, max_unavailable = 0 }\n",
            "v7",
            "v8",
        ),
        ("payments", &["ledger"], canary, "v1", "v2"),
        (
            "inventory",
            &["ledger"],
            "strategy = \"blue_green\"\n",
            "v3",
            "v4",
        ),
        ("orders", &["payments", "inventory"], canary, "v12", "v13"),
        (
            "gateway",
            &["orders", "auth"],
            "strategy = \"linear\"\nlinear = { step = 25, every = \"1m\" }\n",
            "v5",
            "v6",
        ),
    ];
    for (i, (name, deps, body, cur, tgt)) in services.iter().enumerate() {
        t.push_str(&format!("\n[[service]]\nname = \"{name}\"\n"));
        if !deps.is_empty() {
            let d: Vec<String> = deps.iter().map(|d| format!("\"{d}\"")).collect();
            t.push_str(&format!("depends_on = [{}]\n", d.join(", ")));
        }
        t.push_str(body);
        t.push_str(&tail(18400 + i as u16, cur, tgt));
    }
    t.push_str("\n[[migration]]\nname = \"orders-split-address\"\ndatabase = \"sqlite://data/orders.db\"\nexpand = \"migrations/0007_expand.sql\"\ncontract = \"migrations/0007_contract.sql\"\nundo_expand = \"migrations/0007_undo_expand.sql\"\nservices = [\"orders\"]\nbake = \"2m\"\n");
    load(&t)
}

/// `n` canary services in layers of 20, each depending on one service of the layer above.
pub fn big_release(n: usize) -> Release {
    let mut t = String::from(
        "[release]\nname = \"fleet-wide-tls-rotation\"\nplatform = \"local\"\nmax_parallel = 20\nenvironment = \"production\"\n",
    );
    for i in 0..n {
        t.push_str(&format!("\n[[service]]\nname = \"svc-{i:03}\"\n"));
        if i >= 20 {
            t.push_str(&format!("depends_on = [\"svc-{:03}\"]\n", i - 20));
        }
        t.push_str("strategy = \"canary\"\nsteps = [ { set_weight = 10 }, { analysis = \"1m\" }, { set_weight = 50 }, { analysis = \"1m\" } ]\n");
        t.push_str(&tail(20000 + i as u16, "v1", "v2"));
    }
    load(&t)
}

fn load(text: &str) -> Release {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    match load_str(Path::new("fixture.toml"), text, &base) {
        Ok(r) => r,
        Err(d) => panic!(
            "fixture release invalid: {}",
            d.iter().map(|x| x.to_string()).collect::<String>()
        ),
    }
}

/// Builds the event stream of a scripted release, step by step.
pub struct Script {
    pub release: Release,
    pub plan: Arc<Plan>,
    pub events: Vec<Event>,
    pub now: u64,
}

impl Script {
    pub fn new(release: Release) -> Script {
        let p = plan(&release);
        Script::with_plan(release, p)
    }

    /// A release planned by the caller (a fleet's engine plan).
    pub fn with_plan(release: Release, p: Plan) -> Script {
        let services = p
            .services
            .iter()
            .map(|sp| {
                let spec = release.service(&sp.name).cloned();
                let (baseline, candidate) =
                    spec.map(|s| revisions(&release, &s)).unwrap_or_default();
                ServiceInit::new(sp, baseline, candidate)
            })
            .collect();
        let mut s = Script {
            plan: Arc::new(p.clone()),
            release,
            events: Vec::new(),
            now: T0,
        };
        s.push(EventKind::ReleaseLoaded {
            release: p.release.clone(),
            run_id: "20261127T030000Z-checkout".into(),
            platform: "local".into(),
            environment: s.release.release.environment.clone(),
            break_glass: None,
            change_control: None,
            change: s.release.release.change.clone(),
            on_failure: p.on_failure,
            max_parallel: p.max_parallel,
            waves: p.waves.clone(),
            services,
        });
        s
    }

    pub fn push(&mut self, kind: EventKind) {
        let seq = self.events.len() as u64 + 1;
        self.events.push(Event {
            seq,
            at_ms: self.now,
            kind,
        });
    }

    pub fn advance(&mut self, ms: u64) {
        self.now += ms;
    }

    pub fn state(&self) -> ReleaseState {
        ReleaseState::replay(&self.events)
    }

    fn revs(&self, service: &str) -> (String, String) {
        self.release
            .service(service)
            .map(|s| revisions(&self.release, s))
            .unwrap_or_default()
    }

    pub fn start(&mut self) {
        self.push(EventKind::CommandAccepted {
            operator: "alice".into(),
            command: Command::Start,
            note: None,
        });
        self.push(EventKind::ReleaseStarted {
            operator: "alice".into(),
        });
        let names: Vec<String> = self.plan.services.iter().map(|s| s.name.clone()).collect();
        for n in names {
            let (b, _) = self.revs(&n);
            self.push(EventKind::BaselineReady {
                service: n.clone(),
                revision: b,
            });
        }
    }

    /// Run `service` from its first step up to and including step `to` (1-based); each
    /// step takes its planned minimum time (at least 5 s).
    pub fn run_to(&mut self, service: &str, to: usize) {
        let (b, c) = self.revs(service);
        let steps = self
            .plan
            .services
            .iter()
            .find(|s| s.name == service)
            .map(|s| s.steps.clone())
            .unwrap_or_default();
        let state = self.state();
        let cur = state.service(service).map_or(0, |s| s.step);
        if cur == 0 {
            self.push(EventKind::ServiceStarted {
                service: service.into(),
            });
        }
        let n = steps.len();
        for st in steps.iter().filter(|s| s.index > cur && s.index <= to) {
            let timed = st.min_duration_ms > 0;
            self.push(EventKind::StepStarted {
                service: service.into(),
                index: st.index,
                of: n,
                action: st.action.clone(),
                description: st.description.clone(),
                until_ms: timed.then_some(self.now + st.min_duration_ms),
            });
            match &st.action {
                crate::plan::Action::Launch { revision, replicas } => {
                    self.push(EventKind::Launched {
                        service: service.into(),
                        revision: revision.clone(),
                        replicas: replicas.unwrap_or(2),
                    })
                }
                crate::plan::Action::WaitHealthy => self.push(EventKind::Health {
                    service: service.into(),
                    summary: HealthSummary {
                        candidate_healthy: 2,
                        candidate_desired: 2,
                        baseline_healthy: 2,
                        baseline_desired: 2,
                        problem: None,
                        at_ms: self.now,
                    },
                }),
                crate::plan::Action::SetWeight { weight } => self.push(EventKind::WeightsSet {
                    service: service.into(),
                    weights: weights(&b, &c, *weight),
                }),
                crate::plan::Action::Switch => self.push(EventKind::WeightsSet {
                    service: service.into(),
                    weights: weights(&b, &c, 100),
                }),
                crate::plan::Action::Approval {
                    timeout_ms,
                    on_timeout,
                    ..
                } => {
                    self.push(EventKind::GateWaiting {
                        service: service.into(),
                        gate: Gate {
                            kind: GateKind::Approval {
                                on_timeout: *on_timeout,
                                rule: None,
                            },
                            since_ms: self.now,
                            deadline_ms: Some(self.now + timeout_ms),
                        },
                        reason: "approval needed before 100 %".into(),
                    });
                }
                _ => {}
            }
            if st.index < to {
                self.advance(st.min_duration_ms.max(5_000));
            }
        }
    }

    /// 1-based index of the first step of `service` after the candidate reached
    /// `weight` % that satisfies `pred` (`weight` 0: from the start).
    pub fn step_after(
        &self,
        service: &str,
        weight: u8,
        pred: impl Fn(&crate::plan::Action) -> bool,
    ) -> usize {
        let steps = self
            .plan
            .services
            .iter()
            .find(|s| s.name == service)
            .map(|s| s.steps.clone())
            .unwrap_or_default();
        steps
            .iter()
            .find(|st| st.candidate_weight >= weight && pred(&st.action))
            .map_or(steps.len(), |st| st.index)
    }

    /// Run `service` to its analysis at `weight` %.
    pub fn run_to_analysis(&mut self, service: &str, weight: u8) {
        let i = self.step_after(service, weight, |a| {
            matches!(a, crate::plan::Action::Analysis { .. })
        });
        self.run_to(service, i);
    }

    /// Run `service` to its approval gate.
    pub fn run_to_approval(&mut self, service: &str) {
        let i = self.step_after(service, 0, |a| {
            matches!(a, crate::plan::Action::Approval { .. })
        });
        self.run_to(service, i);
    }

    /// Finish every remaining step and promote.
    pub fn promote(&mut self, service: &str) {
        let n = self
            .plan
            .services
            .iter()
            .find(|s| s.name == service)
            .map_or(0, |s| s.steps.len());
        let state = self.state();
        if state.service(service).is_some_and(|s| s.gate.is_some()) {
            self.push(EventKind::GateAnswered {
                service: service.into(),
                answer: "approved".into(),
                by: "alice".into(),
            });
        }
        self.run_to(service, n);
        self.push(EventKind::Verdict {
            service: service.into(),
            verdict: pass_verdict(self.now),
        });
        self.push(EventKind::Promoted {
            service: service.into(),
        });
        self.advance(1_000);
    }

    pub fn verdict(&mut self, service: &str, v: VerdictInfo) {
        self.push(EventKind::Verdict {
            service: service.into(),
            verdict: v,
        });
    }

    pub fn rollback(&mut self, service: &str, reason: &str, trigger: Trigger, done: bool) {
        let (b, _) = self.revs(service);
        self.push(EventKind::RollbackStarted {
            service: service.into(),
            reason: reason.into(),
            trigger,
        });
        self.push(EventKind::WeightsSet {
            service: service.into(),
            weights: vec![(b, 100)],
        });
        if done {
            self.advance(3_000);
            self.push(EventKind::RolledBack {
                service: service.into(),
                reason: reason.into(),
            });
        }
    }

    /// A step of the release's migration (`orders-split-address`).
    pub fn migration(&mut self, phase: MigrationPhase, detail: &str, lines: &[&str]) {
        self.push(EventKind::Migration {
            migration: "orders-split-address".into(),
            phase,
            detail: detail.into(),
            lines: lines.iter().map(|l| l.to_string()).collect(),
        });
    }

    /// Lint, dry run and expand of the migration (before `orders` starts).
    pub fn expand(&mut self) {
        self.migration(
            MigrationPhase::Linted,
            "no blocking finding (0 other finding(s)); database sqlite://data/orders.db",
            &[],
        );
        self.advance(400);
        self.migration(
            MigrationPhase::DryRunOk,
            "applied to a copy of sqlite://data/orders.db (VACUUM INTO a temporary file); the real database untouched",
            &["expand ok (12 ms)", "  + column orders.street", "  + column orders.city"],
        );
        self.migration(
            MigrationPhase::Expanding,
            "applying migrations/0007_expand.sql to sqlite://data/orders.db before orders start",
            &[],
        );
        self.advance(300);
        self.migration(
            MigrationPhase::Expanded,
            "expand applied: old and new revisions both work on this schema (3 statement(s) in 9 ms)",
            &[],
        );
    }

    pub fn finish(&mut self) {
        let st = self.state();
        let map: BTreeMap<String, _> = st.final_statuses().unwrap_or_default();
        let code = st.exit_code();
        self.push(EventKind::ReleaseFinished {
            services: map,
            exit_code: code,
        });
    }
}

fn weights(b: &str, c: &str, w: u8) -> Vec<(String, u8)> {
    let mut v = Vec::new();
    if w < 100 {
        v.push((b.to_string(), 100 - w));
    }
    if w > 0 {
        v.push((c.to_string(), w));
    }
    v
}

pub fn pass_verdict(at: u64) -> VerdictInfo {
    VerdictInfo {
        outcome: Outcome::Pass,
        judge: "sequential".into(),
        summary: "canary within 1.25× of the baseline after 1,204 canary requests".into(),
        explanation: vec![
            "errors: canary 0.42 % (5 of 1,204) vs baseline 0.47 % (17 of 3,611): ratio 0.89× ≤ 1.25×: PASS".into(),
            "latency: canary 1.1 % slower than 250 ms vs baseline 1.0 %: ratio 1.1× ≤ 1.25×: PASS".into(),
        ],
        at_ms: at,
    }
}

pub fn fail_verdict(at: u64) -> VerdictInfo {
    VerdictInfo {
        outcome: Outcome::Fail,
        judge: "sequential".into(),
        summary: "canary errors are more than 1.25× the baseline's beyond reasonable doubt; roll back".into(),
        explanation: vec![
            "errors: canary 6.1 % (31 of 508) vs baseline 0.48 % (7 of 1,457): ratio 13× > 1.25× (likelihood ratio 1.2e4 ≥ 99): FAIL".into(),
            "latency: canary 1.3 % slower than 250 ms vs baseline 1.1 %: within 1.25× so far".into(),
        ],
        at_ms: at,
    }
}

/// The states the snapshot tests, the screenshots and the benchmark show.
pub fn scenario(name: &str) -> Script {
    let mut s = Script::new(checkout_release());
    match name {
        "pending" => {}
        "canary-analysing" => {
            s.start();
            s.promote("ledger");
            s.run_to("auth", 3);
            s.advance(20_000);
            s.run_to_analysis("payments", 25);
            s.verdict("payments", VerdictInfo {
                outcome: Outcome::Inconclusive,
                judge: "sequential".into(),
                summary: "not enough data yet: 212 of 200 canary requests, 48s of 1m".into(),
                explanation: vec![
                    "errors: canary 0.47 % (1 of 212) vs baseline 0.51 % (33 of 6,402): no difference so far".into(),
                    "latency: canary 0.9 % slower than 250 ms vs baseline 1.0 %: no difference so far".into(),
                ],
                at_ms: s.now,
            });
            s.run_to("inventory", 3);
            s.advance(48_000);
        }
        "gate" => {
            s.start();
            s.promote("ledger");
            s.promote("auth");
            s.run_to_approval("payments");
            s.run_to("inventory", 4);
            s.advance(134_000);
        }
        "failed" => {
            s.start();
            s.promote("ledger");
            s.promote("auth");
            s.run_to_analysis("payments", 25);
            s.advance(41_000);
            s.verdict("payments", fail_verdict(s.now));
            s.rollback(
                "payments",
                "analysis failed: canary errors 13× the baseline's",
                Trigger::Automatic,
                false,
            );
            s.advance(1_000);
        }
        "rolled-back" => {
            s.start();
            s.promote("ledger");
            s.promote("auth");
            s.run_to_analysis("payments", 25);
            s.run_to("inventory", 3);
            s.advance(41_000);
            s.verdict("payments", fail_verdict(s.now));
            s.rollback(
                "payments",
                "analysis failed: canary errors 13× the baseline's",
                Trigger::Automatic,
                true,
            );
            s.rollback(
                "inventory",
                "policy: payments failed",
                Trigger::Policy {
                    failed: "payments".into(),
                },
                true,
            );
            for n in ["orders", "gateway"] {
                s.push(EventKind::Skipped {
                    service: n.into(),
                    reason: "a dependency rolled back".into(),
                });
            }
            s.finish();
        }
        "contract-awaiting" => {
            s.start();
            for n in ["ledger", "auth", "payments", "inventory"] {
                s.promote(n);
            }
            s.expand();
            s.promote("orders");
            s.run_to("gateway", 3);
            s.advance(60_000);
            s.run_to("gateway", 5);
            s.advance(61_000);
            s.migration(
                MigrationPhase::ContractAwaiting,
                "every listed service is promoted and baked; contract is one-way: confirm it (console dialog, `contract orders-split-address`), or roll back",
                &[],
            );
            s.advance(4_000);
        }
        "lint-refused" => {
            s.start();
            s.migration(
                MigrationPhase::Failed,
                "lint refused expand of migration \"orders-split-address\": 1 blocking finding(s), first at migrations/0007_expand.sql:3 [drop-column] drops column orders.address; nothing touched sqlite://data/orders.db",
                &["migrations/0007_expand.sql:3: error[drop-column] (expand) drops column orders.address — the old revision still reads it; fix: drop it in contract"],
            );
            for n in [
                "ledger",
                "auth",
                "payments",
                "inventory",
                "orders",
                "gateway",
            ] {
                s.push(EventKind::Skipped {
                    service: n.into(),
                    reason: "migration orders-split-address: lint refused it".into(),
                });
            }
            s.finish();
        }
        "promoted" => {
            s.start();
            for n in [
                "ledger",
                "auth",
                "payments",
                "inventory",
                "orders",
                "gateway",
            ] {
                s.promote(n);
            }
            s.finish();
            s.advance(5_000);
        }
        other => panic!("no scenario `{other}`"),
    }
    s
}

/// 200 services: the first layer promoted, the second in flight, the rest pending.
pub fn big_scenario(n: usize) -> Script {
    let mut s = Script::new(big_release(n));
    s.start();
    for i in 0..20.min(n) {
        s.promote(&format!("svc-{i:03}"));
    }
    for i in 20..40.min(n) {
        s.run_to(&format!("svc-{i:03}"), 1 + i % 4);
    }
    s.advance(30_000);
    s
}

/// Synthetic baseline/canary series for `service` ending at `now`: 2-second samples,
/// the canary carrying `canary_share` of the traffic; `regress` makes its errors climb.
pub fn series(now: u64, canary_share: f64, regress: bool, keep: usize) -> ServiceSeries {
    let mut baseline = VecDeque::new();
    let mut candidate = VecDeque::new();
    let total = 400.0;
    for i in 0..keep {
        let at = now - (keep - 1 - i) as u64 * 2000;
        let wobble = ((i as f64) * 0.7).sin();
        baseline.push_back(Sample {
            at_ms: at,
            requests_per_s: total * (1.0 - canary_share) + 6.0 * wobble,
            error_rate: Some(0.005 + 0.001 * wobble),
            p50_ms: Some(12.0 + wobble),
            p99_ms: Some(48.0 + 4.0 * wobble),
        });
        if i >= keep / 3 {
            let k = (i - keep / 3) as f64 / (keep - keep / 3) as f64;
            candidate.push_back(Sample {
                at_ms: at,
                requests_per_s: total * canary_share + 3.0 * wobble,
                error_rate: Some(if regress {
                    0.005 + 0.06 * k
                } else {
                    0.004 + 0.001 * wobble
                }),
                p50_ms: Some(13.0 + wobble),
                p99_ms: Some(if regress {
                    52.0 + 80.0 * k
                } else {
                    50.0 + 3.0 * wobble
                }),
            });
        }
    }
    ServiceSeries {
        baseline,
        candidate,
    }
}

/// Telemetry to go with a scenario: payments at 25 %, regressing in the failure ones.
pub fn telemetry(name: &str, now: u64) -> Telemetry {
    let keep = 90;
    let mut services = BTreeMap::new();
    let regress = matches!(name, "failed" | "rolled-back");
    if name != "pending" {
        services.insert("payments".to_string(), series(now, 0.25, regress, keep));
        services.insert("ledger".to_string(), series(now, 1.0, false, keep));
    }
    Telemetry {
        services,
        keep,
        every_ms: 2000,
    }
}
