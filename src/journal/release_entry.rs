//! The release entry: the first entry of a run stores the release itself (and where its
//! files are), so `resume`, `serve --resume` and the hand-over need no release file.

use std::path::{Path, PathBuf};

use crate::release::Release;

use super::{Journal, JournalError, NewEntry};

/// The journal entry kind that stores the release itself.
pub const RELEASE_ENTRY: &str = "release";

/// Why the release entry could not be written.
#[derive(Debug, thiserror::Error)]
pub enum RecordReleaseError {
    #[error("cannot record the release: {0}")]
    Encode(serde_json::Error),
    #[error("journal: {0}")]
    Journal(JournalError),
}

/// Append the release entry: the release as JSON, the file it came from (`file_label`)
/// and the directory its relative paths are read from.
pub fn record_release(
    journal: &mut Journal,
    release: &Release,
    file_label: &str,
    base_dir: &Path,
    operator: &str,
    at_ms: u64,
) -> Result<(), RecordReleaseError> {
    let release_json = serde_json::to_value(release).map_err(RecordReleaseError::Encode)?;
    journal
        .append(NewEntry {
            at_ms,
            operator: Some(operator.to_string()),
            kind: RELEASE_ENTRY.into(),
            service: None,
            payload: serde_json::json!({
                "summary": format!("release {} from {file_label}", release.release.name),
                "file": file_label,
                "base_dir": base_dir.to_string_lossy(),
                "release": release_json,
            }),
        })
        .map(|_| ())
        .map_err(RecordReleaseError::Journal)
}

/// Why a run's release could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum RunReleaseError {
    #[error("{0}")]
    Journal(JournalError),
    #[error("run {run_id} has no recorded release; it was not started by `cutover deploy`")]
    NoRelease { run_id: String },
    #[error("run {run_id}: the recorded release cannot be read: {error}")]
    Unreadable {
        run_id: String,
        error: serde_json::Error,
    },
}

impl RunReleaseError {
    /// The caller named something that is not there (or has no release): invalid input.
    pub fn is_invalid_input(&self) -> bool {
        match self {
            RunReleaseError::Journal(e) => e.is_invalid_input(),
            RunReleaseError::NoRelease { .. } => true,
            RunReleaseError::Unreadable { .. } => false,
        }
    }
}

/// Read the release stored in a run's journal, and the directory its files are read from.
pub fn release_of_run(
    state_dir: &Path,
    run_id: &str,
) -> Result<(Release, PathBuf), RunReleaseError> {
    let rec = super::read_run(state_dir, run_id).map_err(RunReleaseError::Journal)?;
    let entry = rec
        .entries
        .iter()
        .find(|e| e.kind == RELEASE_ENTRY)
        .ok_or_else(|| RunReleaseError::NoRelease {
            run_id: run_id.to_string(),
        })?;
    let release: Release =
        serde_json::from_value(entry.payload["release"].clone()).map_err(|error| {
            RunReleaseError::Unreadable {
                run_id: run_id.to_string(),
                error,
            }
        })?;
    let base_dir = entry.payload["base_dir"]
        .as_str()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok((release, base_dir))
}
