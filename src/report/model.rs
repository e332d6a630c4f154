//! The release report's model: everything in it is read from one run's journal (the
//! release entry, the ECS pins, the engine's events and their fold, any policy entries)
//! and nothing else, so a report made a year later says what the run said then. Its JSON
//! keys are an interface (`docs/report.md`).

use serde::Serialize;

use crate::engine::recorder::events_from_entries;
use crate::engine::{Command, Event, EventKind, ReleaseState, Trigger};
use crate::journal::{Entry, RELEASE_ENTRY, RunRecord, timefmt};

/// Version of the report's JSON; a key is only ever added within a version.
pub const FORMAT: u32 = 1;

/// One run, as the report tells it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub format: u32,
    pub run_id: String,
    pub release: String,
    pub platform: String,
    /// The release's `environment` (`--env`), if any.
    pub environment: Option<String>,
    /// The change ticket (`[release] change`, `--change`), if any.
    pub change: Option<String>,
    /// `promoted`, `rolled_back`, `refused` (nothing changed), or `null` while unfinished.
    pub outcome: Option<String>,
    /// `finished`, `running` or `interrupted`.
    pub state: String,
    /// Whether anything changed in the world: a candidate launched or a migration applied.
    /// A run refused before that (ECS preflight, a lint or dry-run refusal, a policy or a
    /// freeze window) is not a deployment.
    pub changed_anything: bool,
    /// Why a finished run that changed nothing was refused: `freeze`, `policy`,
    /// `image_gate`, `preflight`, `migration` or `other` (`refusal.rs`); else `null`.
    pub refused_reason: Option<String>,
    /// When the run's journal starts and ends (RFC 3339, UTC) and the span in seconds.
    pub started_at: String,
    pub finished_at: Option<String>,
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
    pub duration_s: Option<f64>,
    /// Who started the release (the `start` command's operator).
    pub started_by: Option<String>,
    /// The lifecycle gate skipped (`--skip-requires`): who, why, what.
    pub break_glass: Option<crate::engine::BreakGlass>,
    pub changes: Changes,
    pub services: Vec<ServiceReport>,
    /// Every act of a person, in order: start, approve, reject, pause, resume, promote,
    /// rollback, abort, retry, contract, and the ones refused (with the reason).
    pub people: Vec<PersonAct>,
    pub rollbacks: Vec<Rollback>,
    /// Entries of the change-control checks (policy, freeze windows, approval rules) when
    /// the journal has them: their kind, summary and deny messages.
    pub policy: Vec<PolicyResult>,
    /// Image scan findings let through by a `[[scan.waiver]]` (with the reason).
    pub waivers: Vec<crate::policy::scan::Waived>,
    pub timeline: Vec<TimelineItem>,
    pub journal: JournalSeal,
}

/// What the release changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Changes {
    /// Per service: from which revision to which, and the image on ECS.
    pub revisions: Vec<RevisionChange>,
    /// Secrets Manager versions the release deployed with (never a value).
    pub secret_versions: Vec<SecretVersionRef>,
    /// The variables the release was resolved with (`--set`, `[vars]`, the environment;
    /// `***` for values read with `env:`) and the run's switches (`--skip-requires`).
    pub flags: Vec<Flag>,
    /// Each `[[migration]]` and where it ended.
    pub migrations: Vec<MigrationChange>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RevisionChange {
    pub service: String,
    pub from: String,
    pub to: String,
    /// The image rolled out (ECS), else `null`.
    pub image: Option<String>,
    /// The digest the image was pinned to at the start (`sha256:…`), else `null`.
    pub digest: Option<String>,
    /// Names of the environment variables the new revision sets (values never shown).
    pub env_names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecretVersionRef {
    pub service: String,
    pub name: String,
    pub arn: String,
    pub version_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flag {
    pub name: String,
    pub value: String,
    /// Where the value came from (`[vars]`, `environment NAME`, `--set`, `flag`).
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MigrationChange {
    pub name: String,
    pub services: Vec<String>,
    /// Where it ended (`expanded`, `contracted`, `undone`, `failed`, ...).
    pub phase: String,
    pub detail: String,
}

/// One service of the release.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceReport {
    pub name: String,
    pub strategy: String,
    pub wave: usize,
    pub baseline: String,
    pub candidate: String,
    /// `promoted`, `rolled_back`, `failed`, `skipped`, or where it stood when the journal
    /// ends.
    pub status: String,
    pub reason: Option<String>,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    pub verdicts: Vec<VerdictRecord>,
    /// The journaled analysis windows, baseline against candidate.
    pub windows: Vec<WindowPoint>,
    /// The candidate's share of traffic each time it was set.
    pub splits: Vec<SplitPoint>,
    pub approvals: Vec<PersonAct>,
    /// Who could answer each approval gate, as the engine journaled it on the gate
    /// (`2 of group:dba (carol, dave), not the person who started it`); one per gate.
    pub approval_gates: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerdictRecord {
    pub at_ms: u64,
    pub at: String,
    /// `pass`, `fail` or `inconclusive`.
    pub outcome: String,
    pub judge: String,
    pub summary: String,
    pub explanation: Vec<String>,
}

/// One analysis window: both arms over the same period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowPoint {
    /// When the window ended (the engine's clock, Unix ms).
    pub at_ms: u64,
    pub duration_ms: u64,
    /// The candidate's configured share, 0-100.
    pub canary_percent: f64,
    pub baseline: ArmPoint,
    pub candidate: ArmPoint,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ArmPoint {
    pub requests: u64,
    pub errors: u64,
    /// Errors per request, 0-1; `null` without requests.
    pub error_rate: Option<f64>,
    /// Requests slower than the frozen threshold, per request.
    pub slow_rate: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitPoint {
    pub at_ms: u64,
    pub candidate_percent: u8,
}

/// Something a person did (or tried: `refused` then says why not).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PersonAct {
    pub at_ms: u64,
    pub at: String,
    pub operator: String,
    /// `start`, `approve`, `reject`, `pause`, `resume`, `promote`, `promote-all`,
    /// `rollback`, `abort`, `retry`, `contract`, `resume-engine`, `break-glass`.
    pub action: String,
    pub service: Option<String>,
    /// The operator's stated reason, if any.
    pub note: Option<String>,
    /// Why the engine refused it, if it did.
    pub refused: Option<String>,
}

/// One rollback and how long it took.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rollback {
    pub service: String,
    /// `automatic`, `operator NAME` or `policy (SERVICE failed)`.
    pub trigger: String,
    pub reason: String,
    /// The first failing signal: a window with the candidate's error rate above the
    /// baseline's, a failed verdict or smoke test, a failure; else the rollback itself.
    pub first_signal_ms: u64,
    pub first_signal: String,
    pub started_ms: u64,
    /// All traffic back on the stable revision (`null`: not, as far as the journal says).
    pub restored_ms: Option<u64>,
    /// From the first failing signal to the rollback decision.
    pub time_to_detect_s: f64,
    /// From the first failing signal to all traffic on stable.
    pub time_to_restore_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyResult {
    pub at_ms: u64,
    pub kind: String,
    pub summary: String,
    /// The deny messages, if the entry has any.
    pub deny: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineItem {
    pub seq: u64,
    pub at_ms: u64,
    pub at: String,
    pub kind: String,
    pub service: Option<String>,
    pub operator: Option<String>,
    pub text: String,
}

/// The chain under the report: anchor it elsewhere (the ticket) to make it tamper-evident.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JournalSeal {
    pub entries: u64,
    pub last_hash: String,
    pub verified: bool,
    /// What `audit verify` found, if the chain is damaged.
    pub problem: Option<String>,
}

/// The report of one run read with [`crate::journal::read_run`].
pub fn build(rec: &RunRecord) -> Report {
    let entries = &rec.entries;
    let events = events_from_entries(entries);
    let state = ReleaseState::replay(&events);
    let release_entry = entries.iter().find(|e| e.kind == RELEASE_ENTRY);
    let release_json = release_entry.map(|e| &e.payload["release"]);
    let change = release_entry
        .and_then(|e| e.payload["change"].as_str())
        .map(str::to_string)
        .or_else(|| state.change.clone());
    let started_ms = entries.first().map_or(rec.summary.started_ms, |e| e.at_ms);
    let finished_ms = rec.summary.finished_ms;
    let changed_anything = events.iter().any(|e| {
        matches!(
            &e.kind,
            EventKind::Launched { .. }
                | EventKind::Migration {
                    phase: crate::engine::MigrationPhase::Expanding,
                    ..
                }
        )
    });
    let people = people(&events);
    let services = state
        .services
        .iter()
        .map(|s| {
            let roster = state
                .change_control
                .as_ref()
                .map(|c| c.roster.clone())
                .unwrap_or_default();
            service_report(s, &events, &people, &roster)
        })
        .collect();
    Report {
        format: FORMAT,
        run_id: rec.summary.run_id.clone(),
        release: if state.release.is_empty() {
            rec.summary.release.clone()
        } else {
            state.release.clone()
        },
        platform: state.platform.clone(),
        environment: state
            .environment
            .clone()
            .or_else(|| rec.summary.environment.clone()),
        change,
        outcome: rec.summary.outcome.clone(),
        state: match rec.summary.state {
            crate::journal::RunState::Finished => "finished",
            crate::journal::RunState::Running { .. } => "running",
            crate::journal::RunState::Interrupted => "interrupted",
        }
        .to_string(),
        changed_anything,
        refused_reason: (matches!(rec.summary.state, crate::journal::RunState::Finished)
            && !changed_anything)
            .then(|| super::refusal::reason(entries).to_string()),
        started_at: timefmt::iso8601_s(started_ms),
        finished_at: finished_ms.map(timefmt::iso8601_s),
        started_ms,
        finished_ms,
        duration_s: finished_ms.map(|f| secs(f.saturating_sub(started_ms))),
        started_by: events.iter().find_map(|e| match &e.kind {
            EventKind::ReleaseStarted { operator } => Some(operator.clone()),
            _ => None,
        }),
        break_glass: state.break_glass.clone(),
        changes: changes(release_json, release_entry, entries, &state),
        services,
        people,
        rollbacks: rollbacks(&events),
        policy: policy(entries),
        waivers: waivers(entries),
        timeline: timeline(entries),
        journal: JournalSeal {
            entries: rec.verification.entries,
            last_hash: rec.verification.last_hash.clone(),
            verified: rec.verification.is_ok(),
            problem: rec.verification.problem.as_ref().map(|p| p.to_string()),
        },
    }
}

pub(crate) fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

fn changes(
    release: Option<&serde_json::Value>,
    release_entry: Option<&Entry>,
    entries: &[Entry],
    state: &ReleaseState,
) -> Changes {
    let null = serde_json::Value::Null;
    let release = release.unwrap_or(&null);
    // The release entry holds the release as its file writes it: `service`, `migration`.
    let services: Vec<&serde_json::Value> = release["service"]
        .as_array()
        .or_else(|| release["services"].as_array())
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let images = entries
        .iter()
        .rev()
        .find(|e| e.kind == crate::platform::ecs::images::IMAGE_ENTRY);
    let revisions = state
        .services
        .iter()
        .map(|s| {
            let spec = services.iter().find(|v| v["name"] == s.name.as_str());
            let names = |v: &serde_json::Value| -> Vec<String> {
                v.as_object()
                    .map(|o| o.keys().cloned().collect())
                    .unwrap_or_default()
            };
            let (image, env_names) = match spec {
                Some(v) if v["ecs"].is_object() => (
                    v["ecs"]["image"].as_str().map(str::to_string),
                    names(&v["ecs"]["env"])
                        .into_iter()
                        .chain(names(&v["ecs"]["secret_env"]))
                        .collect(),
                ),
                Some(v) => (None, names(&v["local"]["target"]["env"])),
                None => (None, Vec::new()),
            };
            RevisionChange {
                service: s.name.clone(),
                from: s.baseline.clone(),
                to: s.candidate.clone(),
                image,
                digest: images
                    .and_then(|e| e.payload["images"]["services"][&s.name]["digest"].as_str())
                    .map(str::to_string),
                env_names,
            }
        })
        .collect();
    let mut secret_versions = Vec::new();
    if let Some(pins) = entries.iter().rev().find(|e| e.kind == "ecs_pins")
        && let Some(obj) = pins.payload["pins"]["services"].as_object()
    {
        for (svc, p) in obj {
            for v in p["secret_versions"].as_array().into_iter().flatten() {
                secret_versions.push(SecretVersionRef {
                    service: svc.clone(),
                    name: v["name"].as_str().unwrap_or_default().to_string(),
                    arn: v["arn"].as_str().unwrap_or_default().to_string(),
                    version_id: v["version_id"].as_str().unwrap_or_default().to_string(),
                });
            }
        }
    }
    let mut flags: Vec<Flag> = release_entry
        .and_then(|e| e.payload["variables"].as_array())
        .into_iter()
        .flatten()
        .map(|v| Flag {
            name: v["name"].as_str().unwrap_or_default().to_string(),
            value: match &v["value"] {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            },
            source: v["source"].as_str().unwrap_or("[vars]").to_string(),
        })
        .collect();
    if let Some(b) = &state.break_glass {
        flags.push(Flag {
            name: "--skip-requires".into(),
            value: b.reason.clone(),
            source: format!("flag ({})", b.operator),
        });
    }
    let migrations = release["migration"]
        .as_array()
        .or_else(|| release["migrations"].as_array())
        .into_iter()
        .flatten()
        .map(|m| {
            let name = m["name"].as_str().unwrap_or_default().to_string();
            let st = state.migration(&name);
            MigrationChange {
                services: m["services"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect(),
                phase: st.map_or("pending".into(), |m| m.phase.as_str().to_string()),
                detail: st.map(|m| m.detail.clone()).unwrap_or_default(),
                name,
            }
        })
        .collect();
    Changes {
        revisions,
        secret_versions,
        flags,
        migrations,
    }
}

fn act(e: &Event, operator: &str, action: &str, service: Option<&str>) -> PersonAct {
    PersonAct {
        at_ms: e.at_ms,
        at: timefmt::iso8601_s(e.at_ms),
        operator: operator.to_string(),
        action: action.to_string(),
        service: service.map(str::to_string),
        note: None,
        refused: None,
    }
}

fn people(events: &[Event]) -> Vec<PersonAct> {
    let mut out = Vec::new();
    for e in events {
        match &e.kind {
            EventKind::CommandAccepted {
                operator,
                command,
                note,
            } => {
                let mut a = act(e, operator, command.name(), command.service());
                if let Command::Contract { migration } = command {
                    a.service = Some(format!("migration {migration}"));
                }
                a.note = note.clone();
                out.push(a);
            }
            EventKind::CommandRefused {
                operator,
                command,
                reason,
                note,
            } => {
                let mut a = act(e, operator, command.name(), command.service());
                a.note = note.clone();
                a.refused = Some(reason.clone());
                out.push(a);
            }
            EventKind::EngineRestarted { operator, note } => {
                let mut a = act(e, operator, "resume-engine", None);
                a.note = Some(note.clone());
                out.push(a);
            }
            EventKind::ReleaseLoaded {
                break_glass: Some(b),
                ..
            } => {
                let mut a = act(e, &b.operator, "break-glass", None);
                a.note = Some(b.reason.clone());
                out.push(a);
            }
            _ => {}
        }
    }
    out
}

fn service_report(
    s: &crate::engine::ServiceState,
    events: &[Event],
    people: &[PersonAct],
    roster: &crate::policy::Roster,
) -> ServiceReport {
    let mine = events
        .iter()
        .filter(|e| e.kind.service() == Some(s.name.as_str()));
    let mut verdicts = Vec::new();
    let mut windows = Vec::new();
    let mut splits: Vec<SplitPoint> = Vec::new();
    let mut approval_gates = Vec::new();
    for e in mine {
        match &e.kind {
            EventKind::GateWaiting { gate, .. } => {
                if let crate::engine::GateKind::Approval {
                    rule: Some(rule), ..
                } = &gate.kind
                {
                    approval_gates.push(rule.describe(roster));
                }
            }
            EventKind::Verdict { verdict, .. } => verdicts.push(VerdictRecord {
                at_ms: e.at_ms,
                at: timefmt::iso8601_s(e.at_ms),
                outcome: verdict.outcome.to_string().to_lowercase(),
                judge: verdict.judge.clone(),
                summary: verdict.summary.clone(),
                explanation: verdict.explanation.clone(),
            }),
            EventKind::AnalysisSample {
                window,
                baseline_p99_ms,
                candidate_p99_ms,
                ..
            } => {
                let arm = |c: &crate::judge::ArmCounts, p99: Option<f64>| ArmPoint {
                    requests: c.requests,
                    errors: c.errors,
                    error_rate: c.error_rate(),
                    slow_rate: c.slow_rate(),
                    p99_ms: p99,
                };
                windows.push(WindowPoint {
                    at_ms: e.at_ms,
                    duration_ms: window.duration_ms,
                    canary_percent: window.canary_weight * 100.0,
                    baseline: arm(&window.baseline, *baseline_p99_ms),
                    candidate: arm(&window.canary, *candidate_p99_ms),
                });
            }
            EventKind::WeightsSet { weights, .. } => {
                let pct = weights
                    .iter()
                    .find(|(r, _)| *r == s.candidate)
                    .map_or(0, |(_, w)| *w);
                if splits.last().map(|p| p.candidate_percent) != Some(pct) {
                    splits.push(SplitPoint {
                        at_ms: e.at_ms,
                        candidate_percent: pct,
                    });
                }
            }
            _ => {}
        }
    }
    ServiceReport {
        name: s.name.clone(),
        strategy: format!("{:?}", s.strategy).to_lowercase(),
        wave: s.wave,
        baseline: s.baseline.clone(),
        candidate: s.candidate.clone(),
        status: s.status.as_str().to_string(),
        reason: s.reason.clone(),
        started_ms: s.started_at_ms,
        finished_ms: s.finished_at_ms,
        verdicts,
        windows,
        splits,
        approvals: people
            .iter()
            .filter(|p| {
                matches!(p.action.as_str(), "approve" | "reject")
                    && p.service.as_deref() == Some(s.name.as_str())
            })
            .cloned()
            .collect(),
        approval_gates,
    }
}

/// Each rollback with its first failing signal, decision and restoration.
pub(crate) fn rollbacks(events: &[Event]) -> Vec<Rollback> {
    let mut out = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let EventKind::RollbackStarted {
            service,
            reason,
            trigger,
        } = &e.kind
        else {
            continue;
        };
        // This attempt of the service: since it (re)started.
        let attempt_start = events[..i]
            .iter()
            .rposition(|x| {
                matches!(&x.kind, EventKind::ServiceStarted { service: s }
                    | EventKind::Retrying { service: s, .. } if s == service)
            })
            .unwrap_or(0);
        let signal = events[attempt_start..i]
            .iter()
            .find_map(|x| failing_signal(x, service))
            .unwrap_or_else(|| match trigger {
                Trigger::Operator { operator } => {
                    (e.at_ms, format!("{operator} asked for the rollback"))
                }
                _ => (e.at_ms, reason.clone()),
            });
        let restored_ms = events[i + 1..].iter().find_map(|x| match &x.kind {
            EventKind::RolledBack { service: s, .. } if s == service => Some(x.at_ms),
            _ => None,
        });
        out.push(Rollback {
            service: service.clone(),
            trigger: match trigger {
                Trigger::Operator { operator } => format!("operator {operator}"),
                Trigger::Automatic => "automatic".into(),
                Trigger::Policy { failed } => format!("policy ({failed} failed)"),
            },
            reason: reason.clone(),
            first_signal_ms: signal.0,
            first_signal: signal.1,
            started_ms: e.at_ms,
            restored_ms,
            time_to_detect_s: secs(e.at_ms.saturating_sub(signal.0)),
            time_to_restore_s: restored_ms.map(|r| secs(r.saturating_sub(signal.0))),
        });
    }
    out
}

/// Whether `e` is a sign that `service`'s candidate is failing, and which.
fn failing_signal(e: &Event, service: &str) -> Option<(u64, String)> {
    if e.kind.service() != Some(service) {
        return None;
    }
    let text = match &e.kind {
        EventKind::AnalysisSample { window, .. } => {
            let (c, b) = (window.canary.error_rate()?, window.baseline.error_rate());
            if window.canary.errors == 0 || c <= b.unwrap_or(0.0) {
                return None;
            }
            format!(
                "candidate error rate {:.1} % against baseline {}",
                c * 100.0,
                b.map_or("-".into(), |b| format!("{:.1} %", b * 100.0))
            )
        }
        EventKind::Verdict { verdict, .. } if verdict.outcome == crate::judge::Outcome::Fail => {
            format!("verdict fail: {}", verdict.summary)
        }
        EventKind::SmokeResult {
            test,
            passed: false,
            ..
        } => format!("smoke test {test} failed"),
        EventKind::Failed { reason, .. } => reason.clone(),
        _ => return None,
    };
    Some((e.at_ms, text))
}

/// Entries written by change-control checks (policy, freeze windows, approval rules).
fn policy(entries: &[Entry]) -> Vec<PolicyResult> {
    entries
        .iter()
        .filter(|e| {
            let k = e.kind.as_str();
            k.starts_with("policy") || k.starts_with("freeze") || k.starts_with("approval")
        })
        .map(|e| PolicyResult {
            at_ms: e.at_ms,
            kind: e.kind.clone(),
            summary: crate::journal::inspect::payload_text(&e.payload),
            deny: ["deny", "denies", "denied"]
                .iter()
                .filter_map(|k| e.payload[*k].as_array())
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
        })
        .collect()
}

/// The waivers the scan gate used (its `policy_scan` entry).
fn waivers(entries: &[Entry]) -> Vec<crate::policy::scan::Waived> {
    entries
        .iter()
        .filter(|e| e.kind == crate::session::image_gate::SCAN_ENTRY)
        .filter_map(|e| serde_json::from_value::<Vec<_>>(e.payload["scan"]["waived"].clone()).ok())
        .flatten()
        .collect()
}

/// Every entry but the analysis windows (drawn, not listed), in order.
fn timeline(entries: &[Entry]) -> Vec<TimelineItem> {
    entries
        .iter()
        .filter(|e| e.kind != "analysis")
        .map(|e| TimelineItem {
            seq: e.seq,
            at_ms: e.at_ms,
            at: timefmt::iso8601_ms(e.at_ms),
            kind: e.kind.clone(),
            service: e.service.clone(),
            operator: e.operator.clone(),
            text: crate::journal::inspect::payload_text(&e.payload),
        })
        .collect()
}
