//! Delivery metrics over the journals of a state directory (`cutover stats`): how many
//! deployments, how many promoted without a rollback, how long they took and how long a
//! failed change took to restore, overall, by service and by environment, next to the
//! targets the seed set (98 % success, 30-90 min per deployment, restore in < 5 min).
//!
//! A run counts as a *deployment* once it changed something (a candidate launched, a
//! migration applied). A finished run that changed nothing (refused by the ECS preflight,
//! a lint or dry-run refusal, a policy or a freeze window) is `refused`; a run still going
//! or interrupted is `unfinished`. Neither enters the rates. Refused runs are counted by
//! reason (`refusal.rs`).

use std::collections::BTreeMap;

use serde::Serialize;

use super::model::Report;

/// `{"median": …, "p90": …}`; both `null` without values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Spread {
    pub median: Option<f64>,
    pub p90: Option<f64>,
}

impl Spread {
    /// The median (the mean of the two middle values for an even count) and the 90th
    /// percentile by nearest rank (the smallest value with at least 90 % at or below it).
    pub fn of(values: &[f64]) -> Spread {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Spread::default();
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        let rank = (n * 9).div_ceil(10).max(1);
        Spread {
            median: Some(median),
            p90: Some(v[rank - 1]),
        }
    }
}

/// One group's figures (all runs, a service, an environment).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    pub deployments: u64,
    /// Deployments promoted with no rollback.
    pub promoted: u64,
    /// Deployments with a rollback or a failure.
    pub failed: u64,
    /// `promoted / deployments`, 0-1; `null` without deployments.
    pub success_rate: Option<f64>,
    /// `failed / deployments`, 0-1; `null` without deployments.
    pub change_failure_rate: Option<f64>,
    /// Seconds from the first journal entry to the end of the run (a service: from its
    /// start to its promotion or rollback).
    pub duration_s: Spread,
    /// Seconds from the first failing signal to all traffic on stable, per rollback.
    pub time_to_restore_s: Spread,
}

/// What `cutover stats` prints.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Runs read (after `--since` and `--env`).
    pub runs: u64,
    pub deployments: u64,
    /// Finished runs that changed nothing, and why.
    pub refused: Refused,
    /// Runs still going or interrupted.
    pub unfinished: u64,
    pub success_rate: Option<f64>,
    pub change_failure_rate: Option<f64>,
    pub duration_s: Spread,
    pub time_to_restore_s: Spread,
    pub by_service: BTreeMap<String, Figures>,
    /// Runs without an environment are under `-`.
    pub by_environment: BTreeMap<String, Figures>,
    /// The seed's targets, for comparison.
    pub targets: Targets,
}

/// Runs refused before anything changed: how many, and how many per reason (`freeze`,
/// `policy`, `image_gate`, `preflight`, `migration`, `other`: `refusal.rs`; only the
/// reasons seen).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Refused {
    pub total: u64,
    pub by_reason: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Targets {
    pub success_rate: f64,
    pub duration_s: (f64, f64),
    pub time_to_restore_s: f64,
}

impl Default for Targets {
    fn default() -> Self {
        Targets {
            success_rate: 0.98,
            duration_s: (30.0 * 60.0, 90.0 * 60.0),
            time_to_restore_s: 5.0 * 60.0,
        }
    }
}

/// Which runs count.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Runs started at or after this (Unix ms).
    pub since_ms: Option<u64>,
    pub environment: Option<String>,
}

impl Filter {
    pub fn keeps(&self, r: &Report) -> bool {
        self.since_ms.is_none_or(|s| r.started_ms >= s)
            && self
                .environment
                .as_ref()
                .is_none_or(|e| r.environment.as_ref() == Some(e))
    }
}

/// Samples of one group before they become [`Figures`].
#[derive(Default)]
struct Acc {
    deployments: u64,
    promoted: u64,
    durations: Vec<f64>,
    restores: Vec<f64>,
}

impl Acc {
    fn figures(&self) -> Figures {
        let rate = |k: u64| (self.deployments > 0).then(|| k as f64 / self.deployments as f64);
        let failed = self.deployments - self.promoted;
        Figures {
            deployments: self.deployments,
            promoted: self.promoted,
            failed,
            success_rate: rate(self.promoted),
            change_failure_rate: rate(failed),
            duration_s: Spread::of(&self.durations),
            time_to_restore_s: Spread::of(&self.restores),
        }
    }
}

/// The metrics of `reports` that `filter` keeps.
pub fn compute<'a>(reports: impl IntoIterator<Item = &'a Report>, filter: &Filter) -> Stats {
    let mut stats = Stats::default();
    let mut all = Acc::default();
    let mut by_service: BTreeMap<String, Acc> = BTreeMap::new();
    let mut by_env: BTreeMap<String, Acc> = BTreeMap::new();
    for r in reports.into_iter().filter(|r| filter.keeps(r)) {
        stats.runs += 1;
        if r.state != "finished" {
            stats.unfinished += 1;
            continue;
        }
        if !r.changed_anything {
            stats.refused.total += 1;
            let why = r.refused_reason.clone().unwrap_or_else(|| "other".into());
            *stats.refused.by_reason.entry(why).or_default() += 1;
            continue;
        }
        let success = r.rollbacks.is_empty()
            && !r.services.is_empty()
            && r.services.iter().all(|s| s.status == "promoted");
        let restores: Vec<f64> = r
            .rollbacks
            .iter()
            .filter_map(|rb| rb.time_to_restore_s)
            .collect();
        let env = r.environment.clone().unwrap_or_else(|| "-".into());
        for acc in [&mut all, by_env.entry(env).or_default()] {
            acc.deployments += 1;
            acc.promoted += u64::from(success);
            acc.durations.extend(r.duration_s);
            acc.restores.extend(&restores);
        }
        for s in &r.services {
            // A service the run never started changed nothing.
            let Some(start) = s.started_ms else { continue };
            let acc = by_service.entry(s.name.clone()).or_default();
            let rolled: Vec<f64> = r
                .rollbacks
                .iter()
                .filter(|rb| rb.service == s.name)
                .filter_map(|rb| rb.time_to_restore_s)
                .collect();
            let ok = s.status == "promoted" && !r.rollbacks.iter().any(|rb| rb.service == s.name);
            acc.deployments += 1;
            acc.promoted += u64::from(ok);
            if let Some(end) = s.finished_ms {
                acc.durations
                    .push(super::model::secs(end.saturating_sub(start)));
            }
            acc.restores.extend(rolled);
        }
    }
    let f = all.figures();
    stats.deployments = f.deployments;
    stats.success_rate = f.success_rate;
    stats.change_failure_rate = f.change_failure_rate;
    stats.duration_s = f.duration_s;
    stats.time_to_restore_s = f.time_to_restore_s;
    stats.by_service = by_service
        .into_iter()
        .map(|(k, a)| (k, a.figures()))
        .collect();
    stats.by_environment = by_env.into_iter().map(|(k, a)| (k, a.figures())).collect();
    stats
}

/// The metrics of every run under `state_dir` that `filter` keeps. A run whose journal
/// cannot be read is left out with a warning on stderr (`audit verify` says why).
pub fn for_state_dir<'a>(
    state_dir: impl Into<crate::journal::StoreRef<'a>>,
    filter: &Filter,
) -> Result<Stats, super::ReportError> {
    let state_dir = state_dir.into();
    let mut reports = Vec::new();
    for run in crate::journal::list_runs(state_dir)? {
        if filter.since_ms.is_some_and(|s| run.started_ms < s) {
            continue;
        }
        match crate::journal::read_run(state_dir, &run.run_id) {
            Ok(rec) => reports.push(super::model::build(&rec)),
            Err(e) => tracing::warn!(run = %run.run_id, "left out of the stats: {e}"),
        }
    }
    Ok(compute(&reports, filter))
}

/// The text `cutover stats` prints: the figures next to the targets, then each group.
pub fn text(s: &Stats) -> String {
    use std::fmt::Write as _;
    let pct = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.1} %", v * 100.0));
    let dur = |v: Option<f64>| v.map_or("-".into(), super::md::human_secs);
    let t = &s.targets;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{} run(s): {} deployment(s), {} refused before anything changed{}, {} unfinished",
        s.runs,
        s.deployments,
        s.refused.total,
        if s.refused.by_reason.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                s.refused
                    .by_reason
                    .iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
        s.unfinished
    );
    let _ = writeln!(o);
    let _ = writeln!(o, "{:<22} {:>14} {:>14}   target", "", "median", "p90");
    let _ = writeln!(
        o,
        "{:<22} {:>14} {:>14}   >= {:.0} %",
        "success rate",
        pct(s.success_rate),
        "",
        t.success_rate * 100.0
    );
    let _ = writeln!(
        o,
        "{:<22} {:>14} {:>14}",
        "change failure rate",
        pct(s.change_failure_rate),
        ""
    );
    let _ = writeln!(
        o,
        "{:<22} {:>14} {:>14}   {:.0}-{:.0} min",
        "duration",
        dur(s.duration_s.median),
        dur(s.duration_s.p90),
        t.duration_s.0 / 60.0,
        t.duration_s.1 / 60.0
    );
    let _ = writeln!(
        o,
        "{:<22} {:>14} {:>14}   < {:.0} min",
        "time to restore",
        dur(s.time_to_restore_s.median),
        dur(s.time_to_restore_s.p90),
        t.time_to_restore_s / 60.0
    );
    for (title, groups) in [
        ("by service", &s.by_service),
        ("by environment", &s.by_environment),
    ] {
        if groups.is_empty() {
            continue;
        }
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "{title:<22} {:>6} {:>9} {:>9} {:>14} {:>14} {:>16}",
            "deploy", "success", "failure", "duration p50", "duration p90", "restore p50"
        );
        for (name, f) in groups {
            let _ = writeln!(
                o,
                "{:<22} {:>6} {:>9} {:>9} {:>14} {:>14} {:>16}",
                name,
                f.deployments,
                pct(f.success_rate),
                pct(f.change_failure_rate),
                dur(f.duration_s.median),
                dur(f.duration_s.p90),
                dur(f.time_to_restore_s.median)
            );
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p90_by_hand() {
        let s = Spread::of(&[5.0, 1.0, 3.0]);
        assert_eq!((s.median, s.p90), (Some(3.0), Some(5.0)));
        let s = Spread::of(&[4.0, 1.0, 2.0, 3.0]);
        assert_eq!((s.median, s.p90), (Some(2.5), Some(4.0)));
        // Ten values: nearest rank 9.
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(Spread::of(&v).p90, Some(9.0));
        assert_eq!(Spread::of(&[]), Spread::default());
        assert_eq!(Spread::of(&[f64::NAN, 2.0]).median, Some(2.0));
    }
}
