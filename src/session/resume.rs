//! What a resumed run starts from: the release its journal recorded.

use std::path::PathBuf;

use super::exit::Failure;
use crate::journal::release_entry::RunReleaseError;
use crate::release::Release;

/// Read the release stored in a run's journal (for `resume` and `serve --resume`).
pub fn release_of_run(
    state_dir: &crate::journal::JournalStore,
    run_id: &str,
) -> Result<(Release, PathBuf), Failure> {
    crate::journal::release_of_run(state_dir, run_id).map_err(|e| {
        let message = match &e {
            RunReleaseError::Journal(j) => format!("resume: {j}"),
            other => other.to_string(),
        };
        if e.is_invalid_input() {
            Failure::invalid(message)
        } else {
            Failure::internal(message)
        }
    })
}
