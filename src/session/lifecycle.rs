//! The lifecycle gate: `[environments.production] requires = ["staging"]` lets a deploy to
//! production start only when the state directory holds, for each required environment,
//! a finished run of the same release that promoted every service **with the same
//! artifact** (the same release file content and `--set` values). Checked before anything
//! changes; `--skip-requires REASON` is the break-glass, journaled with the operator.
//!
//! The runs are read from their journals (the release entry records the environment and
//! the artifact), and a run whose chain does not verify does not count.

use super::exit::Failure;
use crate::engine::BreakGlass;
use crate::journal::{self, RELEASE_ENTRY};
use crate::release::LoadedRelease;

/// Where a fresh run would be journaled, who starts it, and `--skip-requires`.
#[derive(Debug, Clone, Copy)]
pub struct Admission<'a> {
    /// Where runs are journaled (the gate reads them there).
    pub journal: &'a journal::JournalStore,
    pub operator: &'a str,
    /// `--skip-requires REASON`: start even when the gate is closed.
    pub skip_requires: Option<&'a str>,
    /// The change-control flags (`--policy`, `--change`, `--break-glass`).
    pub policy: &'a super::policy_gate::PolicyAdmission,
}

/// Let a fresh run of `loaded` start, or refuse it (exit 2) naming what is missing.
/// `Some` when the gate was closed and `--skip-requires` opened it: the engine journals
/// it with the release and every console shows it.
pub fn admit(loaded: &LoadedRelease, a: &Admission) -> Result<Option<BreakGlass>, Failure> {
    let reason = match a.skip_requires.map(str::trim) {
        Some("") => {
            return Err(Failure::invalid(
                "--skip-requires needs a reason (a ticket, an incident, a sentence): it is journaled with your name",
            ));
        }
        r => r,
    };
    if required(loaded).is_empty() {
        return Ok(None);
    }
    let report = check(a.journal, loaded).map_err(|e| {
        Failure::internal(format!(
            "the lifecycle gate cannot read the runs under {}: {e}",
            a.journal.label()
        ))
    })?;
    if report.is_open() {
        return Ok(None);
    }
    match reason {
        Some(reason) => {
            let b = BreakGlass {
                operator: a.operator.to_string(),
                reason: reason.to_string(),
                skipped: report
                    .missing
                    .iter()
                    .map(|m| m.environment.clone())
                    .collect(),
            };
            eprintln!(
                "cutover: BREAK-GLASS: {} skipped the lifecycle gate ({} did not promote this artifact first): {}; journaled with the release",
                b.operator,
                b.skipped.join(", "),
                b.reason
            );
            Ok(Some(b))
        }
        None => Err(Failure::invalid(refusal(&report, loaded))),
    }
}

/// The outcome a run must have finished with: every service promoted.
const PROMOTED: &str = "promoted";

/// A required environment and the run that satisfies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Satisfied {
    pub environment: String,
    pub run_id: String,
}

/// A required environment without a qualifying run, and what was found instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub environment: String,
    /// Runs of the release in that environment that do not qualify, and why (newest
    /// first, at most five).
    pub near_misses: Vec<String>,
}

/// What the gate found for a release resolved for one environment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GateReport {
    pub satisfied: Vec<Satisfied>,
    pub missing: Vec<Missing>,
}

impl GateReport {
    pub fn is_open(&self) -> bool {
        self.missing.is_empty()
    }
}

/// The environments the loaded release's environment requires (none when it declares no
/// environments or the chosen one requires nothing).
pub fn required(loaded: &LoadedRelease) -> Vec<String> {
    let Some(env) = &loaded.environment else {
        return Vec::new();
    };
    loaded
        .environments
        .iter()
        .find(|e| &e.name == env)
        .map(|e| e.requires.clone())
        .unwrap_or_default()
}

/// Look through the state directory's runs for each required environment.
pub fn check<'a>(
    state_dir: impl Into<journal::StoreRef<'a>>,
    loaded: &LoadedRelease,
) -> Result<GateReport, journal::JournalError> {
    let state_dir = state_dir.into();
    let mut report = GateReport::default();
    let needs = required(loaded);
    if needs.is_empty() {
        return Ok(report);
    }
    let name = &loaded.release.release.name;
    let runs: Vec<_> = journal::list_runs(state_dir)?
        .into_iter()
        .filter(|r| &r.release == name)
        .collect();
    for env in needs {
        let mut found = None;
        let mut near = Vec::new();
        for r in &runs {
            // `history`'s environment (the release entry's first line, unverified) picks
            // the candidates; only they are read and verified in full.
            if r.environment.as_deref() != Some(env.as_str()) {
                continue;
            }
            let Some(rec) = run_release(state_dir, &r.run_id) else {
                continue;
            };
            if rec.origin.environment.as_deref() != Some(env.as_str()) {
                continue;
            }
            let why = if !rec.chain_ok || r.damage.is_some() {
                Some("its journal does not verify (`cutover audit verify`)".to_string())
            } else if r.outcome.as_deref() != Some(PROMOTED) {
                Some(match &r.outcome {
                    Some(o) => format!("it finished {o}, not with every service promoted"),
                    None => "it has not finished".to_string(),
                })
            } else if rec.origin.artifact.as_ref().map(|a| a.id.as_str())
                != Some(loaded.artifact.id.as_str())
            {
                Some(format!(
                    "it promoted a different artifact ({})",
                    differs(&rec, loaded)
                ))
            } else {
                None
            };
            match why {
                None => {
                    found = Some(r.run_id.clone());
                    break;
                }
                Some(w) if near.len() < 5 => near.push(format!("run {}: {w}", r.run_id)),
                Some(_) => {}
            }
        }
        match found {
            Some(run_id) => report.satisfied.push(Satisfied {
                environment: env,
                run_id,
            }),
            None => report.missing.push(Missing {
                environment: env,
                near_misses: near,
            }),
        }
    }
    Ok(report)
}

/// What a run's release entry says about where and what it deployed.
struct RunRelease {
    origin: crate::journal::ReleaseOrigin,
    chain_ok: bool,
}

fn run_release(state_dir: journal::StoreRef<'_>, run_id: &str) -> Option<RunRelease> {
    let rec = journal::read_run(state_dir, run_id).ok()?;
    let entry = rec.entries.iter().find(|e| e.kind == RELEASE_ENTRY)?;
    Some(RunRelease {
        origin: serde_json::from_value(entry.payload.clone()).unwrap_or_default(),
        chain_ok: rec.verification.is_ok(),
    })
}

/// How a run's artifact differs from the one being deployed, in a few words.
fn differs(rec: &RunRelease, loaded: &LoadedRelease) -> String {
    let mut parts = Vec::new();
    let Some(then) = &rec.origin.artifact else {
        return "recorded before artifacts were journaled".into();
    };
    if then.file_sha256 != loaded.artifact.file_sha256 {
        parts.push(format!(
            "release file sha256 {} then, {} now",
            short(&then.file_sha256),
            short(&loaded.artifact.file_sha256)
        ));
    }
    if then.sets != loaded.artifact.sets {
        parts.push(format!(
            "--set {} then, {} now",
            sets_text(&then.sets),
            sets_text(&loaded.artifact.sets)
        ));
    }
    if parts.is_empty() {
        parts.push("recorded before artifacts were journaled".into());
    }
    parts.join("; ")
}

fn short(s: &str) -> String {
    s.chars().take(12).collect()
}

fn sets_text(sets: &[crate::release::SetArg]) -> String {
    if sets.is_empty() {
        return "none".into();
    }
    sets.iter()
        .map(|s| format!("{}={}", s.name, s.value))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The refusal when the gate is closed: what is missing, what was found instead, the
/// command that would satisfy it and the break-glass.
pub fn refusal(report: &GateReport, loaded: &LoadedRelease) -> String {
    let env = loaded.environment.as_deref().unwrap_or("?");
    let name = &loaded.release.release.name;
    let needs: Vec<&str> = report
        .missing
        .iter()
        .map(|m| m.environment.as_str())
        .collect();
    let mut s = format!(
        "release {name}: {env} requires {} to have promoted the same artifact first (release file sha256 {}, --set {}), and the state directory holds no such run",
        needs.join(" and "),
        short(&loaded.artifact.file_sha256),
        sets_text(&loaded.artifact.sets)
    );
    for m in &report.missing {
        if m.near_misses.is_empty() {
            s.push_str(&format!("\n  {}: no run of {name} there", m.environment));
        }
        for n in &m.near_misses {
            s.push_str(&format!("\n  {}: {n}", m.environment));
        }
    }
    let sets: String = loaded
        .artifact
        .sets
        .iter()
        .map(|x| format!(" --set {}={}", x.name, x.value))
        .collect();
    for m in &report.missing {
        s.push_str(&format!(
            "\n  to satisfy it: cutover deploy {} --env {}{sets}",
            loaded.path.display(),
            m.environment
        ));
    }
    s.push_str("\n  break-glass: add --skip-requires \"REASON\" (journaled with your name and shown in the console)");
    s
}
