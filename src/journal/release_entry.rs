//! The release entry: the first entry of a run stores the release itself (and where its
//! files are), so `resume`, `serve --resume` and the hand-over need no release file.
//!
//! A release that holds secret values ([`crate::secrets::Secrets`]: revision env values,
//! webhook URLs, smoke arguments) is stored *redacted*: each secret value is replaced by
//! `sha256:` and the first 16 hex digits of its hash, and the entry records the release
//! file's absolute path and SHA-256. Reading such a run back re-reads that file and
//! refuses, naming it, when it is gone or changed since the run started.

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
#[allow(clippy::too_many_arguments)]
pub fn record_release(
    journal: &mut Journal,
    release: &Release,
    file_label: &str,
    base_dir: &Path,
    operator: &str,
    at_ms: u64,
    file_sha256: &str,
) -> Result<(), RecordReleaseError> {
    let mut release_json = serde_json::to_value(release).map_err(RecordReleaseError::Encode)?;
    let secrets = crate::secrets::Secrets::from_release(release);
    let mut payload = serde_json::json!({
        "summary": format!("release {} from {file_label}", release.release.name),
        "file": file_label,
        "base_dir": base_dir.to_string_lossy(),
    });
    if !secrets.is_empty() {
        redact_json(&mut release_json, &secrets);
        let path = std::fs::canonicalize(file_label).unwrap_or_else(|_| PathBuf::from(file_label));
        payload["redacted"] = serde_json::Value::Bool(true);
        payload["path"] = serde_json::Value::String(path.to_string_lossy().into_owned());
        payload["file_sha256"] = serde_json::Value::String(file_sha256.to_string());
    }
    payload["release"] = release_json;
    journal
        .append(NewEntry {
            at_ms,
            operator: Some(operator.to_string()),
            kind: RELEASE_ENTRY.into(),
            service: None,
            payload,
        })
        .map(|_| ())
        .map_err(RecordReleaseError::Journal)
}

/// Every string value (never a key) that is a secret becomes its fingerprint; one that
/// contains a secret has it masked.
fn redact_json(v: &mut serde_json::Value, secrets: &crate::secrets::Secrets) {
    match v {
        serde_json::Value::String(s) => {
            if secrets.is_secret(s) {
                *s = crate::secrets::fingerprint(s);
            } else {
                let clean = secrets.scrub(s);
                if clean != *s {
                    *s = clean;
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| redact_json(x, secrets)),
        serde_json::Value::Object(o) => o.values_mut().for_each(|x| redact_json(x, secrets)),
        _ => {}
    }
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
    #[error(
        "run {run_id} journals no secret values, so it needs its release file {path}: {why}; restore the file as it was when the run started (e.g. from version control), or start a new deploy"
    )]
    FileNeeded {
        run_id: String,
        path: String,
        why: String,
    },
}

impl RunReleaseError {
    /// The caller named something that is not there (or has no release): invalid input.
    pub fn is_invalid_input(&self) -> bool {
        match self {
            RunReleaseError::Journal(e) => e.is_invalid_input(),
            RunReleaseError::NoRelease { .. } | RunReleaseError::FileNeeded { .. } => true,
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
    let base_dir = entry.payload["base_dir"]
        .as_str()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    if entry.payload["redacted"] == serde_json::Value::Bool(true) {
        return release_from_file(run_id, &entry.payload).map(|r| (r, base_dir));
    }
    let release: Release =
        serde_json::from_value(entry.payload["release"].clone()).map_err(|error| {
            RunReleaseError::Unreadable {
                run_id: run_id.to_string(),
                error,
            }
        })?;
    Ok((release, base_dir))
}

/// A redacted run's release, from the file it was started with, checked against the
/// journaled SHA-256.
fn release_from_file(
    run_id: &str,
    payload: &serde_json::Value,
) -> Result<Release, RunReleaseError> {
    let path = payload["path"].as_str().unwrap_or_default().to_string();
    let needed = |why: String| RunReleaseError::FileNeeded {
        run_id: run_id.to_string(),
        path: path.clone(),
        why,
    };
    let bytes = std::fs::read(&path).map_err(|e| needed(format!("it cannot be read ({e})")))?;
    let want = payload["file_sha256"].as_str().unwrap_or_default();
    let now = super::sha256_hex(&bytes);
    if now != want {
        return Err(needed(format!(
            "it changed since the run started (sha256 {} then, {} now)",
            want.chars().take(12).collect::<String>(),
            now.chars().take(12).collect::<String>()
        )));
    }
    crate::release::load(Path::new(&path))
        .map(|l| l.release)
        .map_err(|d| needed(format!("it no longer validates ({} problem(s))", d.len())))
}
