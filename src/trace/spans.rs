//! The span tree of one run, folded from the engine's events: a root span for the
//! release (kind SERVER, OpenTelemetry's CI/CD attributes), under it one span per wave
//! and per migration, per service under its wave, per step under its service, gates and
//! rollbacks under their step or service, migration stages under their migration.
//! Verdicts, smoke results, commands, pauses and rollbacks are span events; what failed
//! gets error status. [`Tracer::apply`] returns the spans an event ended.
//!
//! Span ids are derived from the trace id and the journal sequence number of the event
//! that opened the span, so a resumed run that replays its journal rebuilds the same
//! open spans with the same ids and ends them under the same root.

use std::collections::{BTreeMap, HashMap};

use sha2::{Digest, Sha256};

use crate::engine::{Event, EventKind, MigrationPhase, ReleaseState, Trigger};
use crate::plan::Action;

/// A span attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(s)
    }
}
impl From<i64> for Value {
    fn from(n: i64) -> Value {
        Value::Int(n)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

pub type Attrs = Vec<(String, Value)>;

/// Something that happened during a span.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanEvent {
    pub at_ms: u64,
    pub name: String,
    pub attrs: Attrs,
}

/// One span, open or finished.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanData {
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub name: String,
    /// The root is a SERVER span, the rest INTERNAL.
    pub server: bool,
    pub start_ms: u64,
    pub end_ms: u64,
    pub attrs: Attrs,
    pub events: Vec<SpanEvent>,
    /// `Some(message)`: the span failed.
    pub error: Option<String>,
}

impl SpanData {
    fn attr(&mut self, k: &str, v: impl Into<Value>) {
        let v = v.into();
        match self.attrs.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = v,
            None => self.attrs.push((k.to_string(), v)),
        }
    }
    fn event(&mut self, at_ms: u64, name: &str, attrs: Attrs) {
        self.events.push(SpanEvent {
            at_ms,
            name: name.to_string(),
            attrs,
        });
    }
    fn fail(&mut self, message: &str) {
        if self.error.is_none() {
            self.error = Some(message.to_string());
        }
    }
}

fn kv(k: &str, v: impl Into<Value>) -> (String, Value) {
    (k.to_string(), v.into())
}

/// The fold: open spans by what they belong to.
#[derive(Debug)]
pub struct Tracer {
    trace_id: [u8; 16],
    root: SpanData,
    root_open: bool,
    root_started: bool,
    wave_of: HashMap<String, usize>,
    waves: Vec<Vec<String>>,
    /// Open wave spans, and the last span id of every wave opened.
    open_waves: BTreeMap<usize, SpanData>,
    wave_ids: HashMap<usize, [u8; 8]>,
    /// Services that ended (promoted, rolled back, failed, skipped).
    ended: HashMap<String, Option<&'static str>>,
    services: HashMap<String, SpanData>,
    service_ids: HashMap<String, [u8; 8]>,
    steps: HashMap<String, SpanData>,
    gates: HashMap<String, SpanData>,
    rollbacks: HashMap<String, SpanData>,
    migrations: BTreeMap<String, SpanData>,
    stages: BTreeMap<String, SpanData>,
}

impl Tracer {
    /// A tracer for the run `state` describes (release name, run id, waves).
    pub fn new(trace_id: [u8; 16], root_span_id: [u8; 8], state: &ReleaseState) -> Tracer {
        let mut t = Tracer {
            trace_id,
            root: SpanData {
                span_id: root_span_id,
                parent: None,
                name: String::new(),
                server: true,
                start_ms: state.started_at_ms.unwrap_or(0),
                end_ms: 0,
                attrs: Vec::new(),
                events: Vec::new(),
                error: None,
            },
            root_open: true,
            root_started: state.started_at_ms.is_some(),
            wave_of: HashMap::new(),
            waves: Vec::new(),
            open_waves: BTreeMap::new(),
            wave_ids: HashMap::new(),
            ended: HashMap::new(),
            services: HashMap::new(),
            service_ids: HashMap::new(),
            steps: HashMap::new(),
            gates: HashMap::new(),
            rollbacks: HashMap::new(),
            migrations: BTreeMap::new(),
            stages: BTreeMap::new(),
        };
        t.describe_release(
            &state.release,
            &state.run_id,
            state.environment.as_deref(),
            &state.waves,
        );
        t
    }

    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// A new process took the run over from its journal (the engine's own
    /// `EngineRestarted` is emitted before a subscriber can see it).
    pub fn resumed(&mut self, at_ms: u64) {
        self.root.event(at_ms, "resumed", Vec::new());
    }

    fn describe_release(
        &mut self,
        release: &str,
        run_id: &str,
        environment: Option<&str>,
        waves: &[Vec<String>],
    ) {
        self.root.name = format!("RUN {release}");
        self.root.attr("cicd.pipeline.name", release);
        self.root.attr("cicd.pipeline.action.name", "RUN");
        self.root.attr("cicd.pipeline.run.id", run_id);
        self.root.attr("deployment.name", release);
        self.root.attr("deployment.id", run_id);
        if let Some(env) = environment {
            self.root.attr("deployment.environment.name", env);
        }
        self.waves = waves.to_vec();
        self.wave_of = waves
            .iter()
            .enumerate()
            .flat_map(|(i, w)| w.iter().map(move |s| (s.clone(), i)))
            .collect();
    }

    fn id(&self, key: &str) -> [u8; 8] {
        let mut h = Sha256::new();
        h.update(self.trace_id);
        h.update(key.as_bytes());
        let d = h.finalize();
        let mut id = [0u8; 8];
        id.copy_from_slice(&d[..8]);
        if id == [0u8; 8] {
            id[7] = 1;
        }
        id
    }

    fn span(&self, key: &str, parent: [u8; 8], name: String, at_ms: u64) -> SpanData {
        SpanData {
            span_id: self.id(key),
            parent: Some(parent),
            name,
            server: false,
            start_ms: at_ms,
            end_ms: at_ms,
            attrs: Vec::new(),
            events: Vec::new(),
            error: None,
        }
    }

    fn done(mut s: SpanData, at_ms: u64, out: &mut Vec<SpanData>) {
        s.end_ms = at_ms.max(s.start_ms);
        out.push(s);
    }

    /// The span an event about `service` is best recorded on: its open step, else the
    /// service, else the root.
    fn target(&mut self, service: &str) -> &mut SpanData {
        self.steps
            .get_mut(service)
            .or_else(|| self.services.get_mut(service))
            .unwrap_or(&mut self.root)
    }

    fn wave_span(&mut self, wave: usize, seq: u64, at_ms: u64) -> [u8; 8] {
        if let Some(w) = self.open_waves.get(&wave) {
            return w.span_id;
        }
        let mut w = self.span(
            &format!("wave:{wave}:{seq}"),
            self.root.span_id,
            format!("wave {}", wave + 1),
            at_ms,
        );
        w.attr("cutover.wave", wave as i64 + 1);
        let members = self.waves.get(wave).cloned().unwrap_or_default();
        w.attr("cutover.wave.services", members.join(","));
        self.wave_ids.insert(wave, w.span_id);
        let id = w.span_id;
        self.open_waves.insert(wave, w);
        id
    }

    fn end_step(&mut self, service: &str, at_ms: u64, out: &mut Vec<SpanData>) {
        if let Some(g) = self.gates.remove(service) {
            Self::done(g, at_ms, out);
        }
        if let Some(s) = self.steps.remove(service) {
            Self::done(s, at_ms, out);
        }
    }

    fn end_service(
        &mut self,
        service: &str,
        result: &'static str,
        error: Option<&str>,
        at_ms: u64,
        out: &mut Vec<SpanData>,
    ) {
        if let Some(msg) = error
            && let Some(s) = self.steps.get_mut(service)
        {
            s.fail(msg);
        }
        if result != "success" {
            self.end_step(service, at_ms, out);
        }
        if let Some(mut s) = self.services.remove(service) {
            s.attr("cicd.pipeline.task.run.result", result);
            if let Some(msg) = error {
                s.fail(msg);
            }
            Self::done(s, at_ms, out);
        }
        self.ended.insert(service.to_string(), Some(result));
        let Some(&wave) = self.wave_of.get(service) else {
            return;
        };
        let members = self.waves.get(wave).cloned().unwrap_or_default();
        let results: Vec<&str> = members
            .iter()
            .filter_map(|s| self.ended.get(s).copied().flatten())
            .collect();
        if results.len() == members.len()
            && let Some(mut w) = self.open_waves.remove(&wave)
        {
            let failed: Vec<&String> = members
                .iter()
                .zip(&results)
                .filter(|(_, r)| **r != "success")
                .map(|(s, _)| s)
                .collect();
            if failed.is_empty() {
                w.attr("cutover.wave.result", "success");
            } else {
                w.attr("cutover.wave.result", "failure");
                w.fail(&format!(
                    "not promoted: {}",
                    failed
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            Self::done(w, at_ms, out);
        }
    }

    /// Fold one event; the spans it ended, ready to export.
    pub fn apply(&mut self, e: &Event) -> Vec<SpanData> {
        let mut out = Vec::new();
        let at = e.at_ms;
        let seq = e.seq;
        match &e.kind {
            EventKind::ReleaseLoaded {
                release,
                run_id,
                environment,
                waves,
                ..
            } => {
                self.describe_release(release, run_id, environment.as_deref(), waves);
                if !self.root_started {
                    self.root.start_ms = at;
                }
            }
            EventKind::ReleaseStarted { operator } => {
                if !self.root_started {
                    self.root.start_ms = at;
                    self.root_started = true;
                }
                self.root.attr("cutover.operator", operator.as_str());
            }
            EventKind::EngineRestarted { operator, note } => {
                self.root.event(
                    at,
                    "resumed",
                    vec![
                        kv("cutover.operator", operator.as_str()),
                        kv("cutover.note", note.as_str()),
                    ],
                );
            }
            EventKind::CommandAccepted {
                operator,
                command,
                note,
            } => {
                let mut attrs = vec![
                    kv("cutover.command", command.name()),
                    kv("cutover.operator", operator.as_str()),
                ];
                if let Some(s) = command.service() {
                    attrs.push(kv("cutover.service", s));
                }
                if let Some(n) = note {
                    attrs.push(kv("cutover.note", n.as_str()));
                }
                self.root.event(at, "command", attrs);
            }
            EventKind::ServiceStarted { service } => {
                let wave = self.wave_of.get(service).copied().unwrap_or(0);
                let parent = self.wave_span(wave, seq, at);
                let mut s = self.span(
                    &format!("service:{service}:{seq}"),
                    parent,
                    format!("service {service}"),
                    at,
                );
                s.attr("cicd.pipeline.task.name", service.as_str());
                s.attr(
                    "cicd.pipeline.task.run.id",
                    format!("{}/{service}", self.root_run_id()),
                );
                s.attr("cutover.service", service.as_str());
                self.ended.insert(service.clone(), None);
                self.service_ids.insert(service.clone(), s.span_id);
                if let Some(old) = self.services.insert(service.clone(), s) {
                    Self::done(old, at, &mut out);
                }
            }
            EventKind::StepStarted {
                service,
                index,
                of,
                action,
                description,
                ..
            } => {
                self.end_step(service, at, &mut out);
                let parent = self
                    .service_ids
                    .get(service)
                    .copied()
                    .unwrap_or(self.root.span_id);
                let mut s = self.span(
                    &format!("step:{service}:{index}:{seq}"),
                    parent,
                    description.clone(),
                    at,
                );
                s.attr("cutover.service", service.as_str());
                s.attr("cutover.step.index", *index as i64);
                s.attr("cutover.step.of", *of as i64);
                s.attr("cutover.step.action", action_kind(action));
                self.steps.insert(service.clone(), s);
            }
            EventKind::Launched {
                service,
                revision,
                replicas,
            } => self.target(service).event(
                at,
                "launched",
                vec![
                    kv("cutover.revision", revision.as_str()),
                    kv("cutover.replicas", *replicas as i64),
                ],
            ),
            EventKind::SmokeResult {
                service,
                test,
                revision,
                passed,
                detail,
            } => {
                let t = self.target(service);
                t.event(
                    at,
                    "smoke",
                    vec![
                        kv("cutover.smoke.test", test.as_str()),
                        kv("cutover.revision", revision.as_str()),
                        kv("cutover.smoke.passed", *passed),
                        kv("cutover.smoke.detail", detail.as_str()),
                    ],
                );
                if !passed {
                    t.fail(&format!("smoke test {test} failed"));
                }
            }
            EventKind::Verdict { service, verdict } => {
                let t = self.target(service);
                let outcome = verdict.outcome.as_str();
                t.event(
                    at,
                    "verdict",
                    vec![
                        kv("cutover.verdict.outcome", outcome),
                        kv("cutover.verdict.judge", verdict.judge.as_str()),
                        kv("cutover.verdict.summary", verdict.summary.as_str()),
                        kv(
                            "cutover.verdict.explanation",
                            verdict.explanation.join("; "),
                        ),
                    ],
                );
                if verdict.outcome == crate::judge::Outcome::Fail {
                    t.fail(&verdict.summary);
                }
            }
            EventKind::GateWaiting {
                service,
                gate,
                reason,
            } => {
                let kind = match gate.kind {
                    crate::engine::GateKind::Approval { .. } => "approval",
                    crate::engine::GateKind::Promote => "promote",
                };
                let parent = self
                    .steps
                    .get(service)
                    .map(|s| s.span_id)
                    .or_else(|| self.service_ids.get(service).copied())
                    .unwrap_or(self.root.span_id);
                let mut g = self.span(
                    &format!("gate:{service}:{seq}"),
                    parent,
                    format!("gate: {kind}"),
                    at,
                );
                g.attr("cutover.service", service.as_str());
                g.attr("cutover.gate.reason", reason.as_str());
                if let Some(old) = self.gates.insert(service.clone(), g) {
                    Self::done(old, at, &mut out);
                }
            }
            EventKind::GateAnswered {
                service,
                answer,
                by,
            } => {
                if let Some(mut g) = self.gates.remove(service) {
                    g.attr("cutover.gate.answer", answer.as_str());
                    g.attr("cutover.operator", by.as_str());
                    if answer == "reject" || answer == "rejected" {
                        g.fail(&format!("rejected by {by}"));
                    }
                    Self::done(g, at, &mut out);
                }
            }
            EventKind::Paused { service, reason } => {
                let attrs = vec![kv("cutover.reason", reason.as_str())];
                match service {
                    Some(s) => self.target(s).event(at, "paused", attrs),
                    None => self.root.event(at, "paused", attrs),
                }
            }
            EventKind::Resumed { service, operator } => {
                let attrs = vec![kv("cutover.operator", operator.as_str())];
                match service {
                    Some(s) => self.target(s).event(at, "resumed", attrs),
                    None => self.root.event(at, "resumed", attrs),
                }
            }
            EventKind::FreezeHeld {
                window,
                until_ms: _,
                until,
            } => self.root.event(
                at,
                "freeze held",
                vec![
                    kv("cutover.freeze.window", window.as_str()),
                    kv("cutover.freeze.until", until.as_str()),
                ],
            ),
            EventKind::FreezeLifted { window } => self.root.event(
                at,
                "freeze lifted",
                vec![kv("cutover.freeze.window", window.as_str())],
            ),
            EventKind::BreakGlassGranted { approvers } => self.root.event(
                at,
                "break-glass granted",
                vec![kv("cutover.break_glass.approvers", approvers.join(", "))],
            ),
            EventKind::PlatformError {
                service,
                message,
                fatal,
            } => {
                let t = self.target(service);
                t.event(
                    at,
                    "platform error",
                    vec![
                        kv("cutover.error", message.as_str()),
                        kv("cutover.fatal", *fatal),
                    ],
                );
                if *fatal {
                    t.fail(message);
                }
            }
            EventKind::Promoted { service } => {
                self.end_step(service, at, &mut out);
                self.end_service(service, "success", None, at, &mut out);
            }
            EventKind::RollbackStarted {
                service,
                reason,
                trigger,
            } => {
                let by = match trigger {
                    Trigger::Operator { operator } => format!("operator {operator}"),
                    Trigger::Automatic => "automatic".into(),
                    Trigger::Policy { failed } => format!("policy (after {failed} failed)"),
                };
                let attrs = vec![
                    kv("cutover.service", service.as_str()),
                    kv("cutover.reason", reason.as_str()),
                    kv("cutover.rollback.trigger", by.as_str()),
                ];
                self.root.event(at, "rollback", attrs.clone());
                let message = format!("rolled back: {reason}");
                if let Some(s) = self.steps.get_mut(service) {
                    s.event(at, "rollback", attrs.clone());
                    s.fail(&message);
                }
                self.end_step(service, at, &mut out);
                if let Some(s) = self.services.get_mut(service) {
                    s.event(at, "rollback", attrs);
                    s.fail(&message);
                }
                let parent = self
                    .service_ids
                    .get(service)
                    .copied()
                    .unwrap_or(self.root.span_id);
                let mut r = self.span(
                    &format!("rollback:{service}:{seq}"),
                    parent,
                    format!("rollback {service}"),
                    at,
                );
                r.attr("cutover.service", service.as_str());
                r.attr("cutover.reason", reason.as_str());
                r.attr("cutover.rollback.trigger", by);
                if let Some(old) = self.rollbacks.insert(service.clone(), r) {
                    Self::done(old, at, &mut out);
                }
            }
            EventKind::RolledBack { service, reason } => {
                if let Some(r) = self.rollbacks.remove(service) {
                    Self::done(r, at, &mut out);
                }
                let msg = format!("rolled back: {reason}");
                self.end_service(service, "failure", Some(&msg), at, &mut out);
            }
            EventKind::Failed { service, reason } => {
                if let Some(mut r) = self.rollbacks.remove(service) {
                    r.fail(reason);
                    Self::done(r, at, &mut out);
                }
                self.target(service).event(
                    at,
                    "failed",
                    vec![kv("cutover.reason", reason.as_str())],
                );
                let msg = format!("failed: {reason}");
                self.end_service(service, "error", Some(&msg), at, &mut out);
            }
            EventKind::Skipped { service, reason } => {
                if !self.services.contains_key(service) {
                    // Never started: a zero-length span says so.
                    let wave = self.wave_of.get(service).copied().unwrap_or(0);
                    let parent = self
                        .wave_ids
                        .get(&wave)
                        .copied()
                        .unwrap_or(self.root.span_id);
                    let mut s = self.span(
                        &format!("service:{service}:{seq}"),
                        parent,
                        format!("service {service}"),
                        at,
                    );
                    s.attr("cicd.pipeline.task.name", service.as_str());
                    s.attr("cutover.service", service.as_str());
                    s.attr("cutover.reason", reason.as_str());
                    self.service_ids.insert(service.clone(), s.span_id);
                    self.services.insert(service.clone(), s);
                }
                self.end_service(service, "skip", None, at, &mut out);
            }
            EventKind::Retrying { service, operator } => {
                self.root.event(
                    at,
                    "retry",
                    vec![
                        kv("cutover.service", service.as_str()),
                        kv("cutover.operator", operator.as_str()),
                    ],
                );
            }
            EventKind::Retired { service, revision } => self.target(service).event(
                at,
                "retired",
                vec![kv("cutover.revision", revision.as_str())],
            ),
            EventKind::Migration {
                migration,
                phase,
                detail,
                ..
            } => self.migration(migration, *phase, detail, seq, at, &mut out),
            // Tenants are visible through their services' spans (`TENANT/SERVICE`).
            EventKind::Fleet { .. } => {}
            EventKind::ReleaseFinished {
                services,
                exit_code,
            } => {
                let ids: Vec<String> = self.steps.keys().cloned().collect();
                for s in ids {
                    self.end_step(&s, at, &mut out);
                }
                for (_, r) in std::mem::take(&mut self.rollbacks) {
                    Self::done(r, at, &mut out);
                }
                for (_, s) in std::mem::take(&mut self.services) {
                    Self::done(s, at, &mut out);
                }
                for (_, w) in std::mem::take(&mut self.open_waves) {
                    Self::done(w, at, &mut out);
                }
                for (_, s) in std::mem::take(&mut self.stages) {
                    Self::done(s, at, &mut out);
                }
                for (_, m) in std::mem::take(&mut self.migrations) {
                    Self::done(m, at, &mut out);
                }
                if self.root_open {
                    let result = match exit_code {
                        0 => "success",
                        3 => "failure",
                        _ => "error",
                    };
                    self.root.attr("cicd.pipeline.result", result);
                    self.root.attr(
                        "deployment.status",
                        if *exit_code == 0 {
                            "succeeded"
                        } else {
                            "failed"
                        },
                    );
                    self.root.attr("cutover.exit_code", *exit_code as i64);
                    if *exit_code != 0 {
                        let not_promoted: Vec<String> = services
                            .iter()
                            .filter(|(_, f)| **f != crate::engine::FinalStatus::Promoted)
                            .map(|(s, f)| format!("{s} {}", final_word(*f)))
                            .collect();
                        self.root.attr(
                            "error.type",
                            if *exit_code == 3 {
                                "rolled_back"
                            } else {
                                "invalid"
                            },
                        );
                        self.root.fail(&not_promoted.join(", "));
                    }
                    self.root_open = false;
                    let root = self.root.clone();
                    Self::done(root, at, &mut out);
                }
            }
            EventKind::BaselineReady { .. }
            | EventKind::WeightsSet { .. }
            | EventKind::Health { .. }
            | EventKind::CommandRefused { .. }
            | EventKind::AnalysisSample { .. } => {}
        }
        out
    }

    fn root_run_id(&self) -> String {
        self.root
            .attrs
            .iter()
            .find(|(k, _)| k == "cicd.pipeline.run.id")
            .map(|(_, v)| match v {
                Value::Str(s) => s.clone(),
                _ => String::new(),
            })
            .unwrap_or_default()
    }

    fn migration(
        &mut self,
        name: &str,
        phase: MigrationPhase,
        detail: &str,
        seq: u64,
        at: u64,
        out: &mut Vec<SpanData>,
    ) {
        if !self.migrations.contains_key(name) {
            let mut m = self.span(
                &format!("migration:{name}:{seq}"),
                self.root.span_id,
                format!("migration {name}"),
                at,
            );
            m.attr("cutover.migration", name);
            self.migrations.insert(name.to_string(), m);
        }
        let stage = match phase {
            MigrationPhase::Expanding => Some("expand"),
            MigrationPhase::Contracting => Some("contract"),
            MigrationPhase::UndoingExpand => Some("undo_expand"),
            _ => None,
        };
        let mid = self.migrations.get(name).map(|m| m.span_id);
        if let (Some(stage), Some(mid)) = (stage, mid) {
            let mut s = self.span(
                &format!("stage:{name}:{seq}"),
                mid,
                format!("migrate {stage} {name}"),
                at,
            );
            s.attr("cutover.migration", name);
            s.attr("cutover.migration.stage", stage);
            if let Some(old) = self.stages.insert(name.to_string(), s) {
                Self::done(old, at, out);
            }
        }
        let ends_stage = matches!(
            phase,
            MigrationPhase::Expanded
                | MigrationPhase::Contracted
                | MigrationPhase::Undone
                | MigrationPhase::Failed
        );
        if ends_stage && let Some(mut s) = self.stages.remove(name) {
            if phase == MigrationPhase::Failed {
                s.fail(detail);
            }
            Self::done(s, at, out);
        }
        if let Some(m) = self.migrations.get_mut(name) {
            m.event(at, phase.as_str(), vec![kv("cutover.detail", detail)]);
            if phase == MigrationPhase::Failed {
                m.fail(detail);
            }
        }
        let ends_migration = matches!(
            phase,
            MigrationPhase::Contracted
                | MigrationPhase::Undone
                | MigrationPhase::KeptExpanded
                | MigrationPhase::ContractPending
                | MigrationPhase::Failed
        );
        if ends_migration && let Some(m) = self.migrations.remove(name) {
            Self::done(m, at, out);
        }
    }
}

fn final_word(f: crate::engine::FinalStatus) -> &'static str {
    match f {
        crate::engine::FinalStatus::Promoted => "promoted",
        crate::engine::FinalStatus::RolledBack => "rolled back",
        crate::engine::FinalStatus::Skipped => "skipped",
        crate::engine::FinalStatus::Failed => "failed",
    }
}

fn action_kind(a: &Action) -> &'static str {
    match a {
        Action::Launch { .. } => "launch",
        Action::WaitHealthy => "wait_healthy",
        Action::Smoke { .. } => "smoke",
        Action::SetWeight { .. } => "set_weight",
        Action::Analysis { .. } => "analysis",
        Action::Pause { .. } => "pause",
        Action::Approval { .. } => "approval",
        Action::Switch => "switch",
        Action::Bake { .. } => "bake",
        Action::ReplaceBatch { .. } => "replace_batch",
        Action::EcsRollingUpdate => "ecs_rolling_update",
        Action::Promote => "promote",
        Action::KeepOld { .. } => "keep_old",
        Action::Retire { .. } => "retire",
    }
}
