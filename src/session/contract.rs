//! The contract gate's input read from the journal: where each service a migration lists
//! stood at the end of its release's newest finished run (`migrate contract`).

use std::collections::BTreeMap;
use std::path::Path;

use crate::engine::{ReleaseState, events_from_entries};
use crate::migrate::ServiceProgress;
use crate::release::Migration;

/// Where each listed service of `m` stood at the end of the release's newest finished
/// run, with promotion times turned into `Instant`s for the guard. The run's id comes
/// with it; the error says why no run can be trusted.
pub fn progress_from_runs(
    state_dir: &Path,
    release_name: &str,
    m: &Migration,
) -> Result<(String, BTreeMap<String, ServiceProgress>), String> {
    let runs = crate::journal::list_runs(state_dir).map_err(|e| e.to_string())?;
    // The newest run of this release decides: an older finished run says nothing about
    // a newer one still in flight.
    let run = runs
        .iter()
        .find(|r| r.release == release_name)
        .ok_or_else(|| {
            format!(
                "no run of release {release_name} under {}; deploy it first (or pass --state-dir)",
                state_dir.display()
            )
        })?;
    if let Some(d) = &run.damage {
        return Err(format!(
            "the newest run of release {release_name} ({}) cannot be trusted: {d}; check it with `cutover audit verify`",
            run.run_id
        ));
    }
    if !run.is_finished() {
        return Err(format!(
            "the newest run of release {release_name} ({}) has not finished; let it finish or `cutover resume --run {}` first",
            run.run_id, run.run_id
        ));
    }
    let rec = crate::journal::read_run(state_dir, &run.run_id).map_err(|e| e.to_string())?;
    let state = ReleaseState::replay(&events_from_entries(&rec.entries));
    let now_ms = crate::engine::Clock::now_ms(&crate::engine::SystemClock);
    let now = std::time::Instant::now();
    let progress = m
        .services
        .iter()
        .filter_map(|name| {
            let s = state.service(name)?;
            Some((
                name.clone(),
                crate::engine::state::service_progress(s, now_ms, now),
            ))
        })
        .collect();
    Ok((run.run_id.clone(), progress))
}
