//! The release entry: the first entry of a run stores the release itself (and where its
//! files are), so `resume`, `serve --resume` and the hand-over need no release file.
//!
//! A release that holds secret values ([`crate::secrets::Secrets`]: revision env values,
//! webhook URLs, smoke arguments) is stored *redacted*: each secret value is replaced by
//! `sha256:` and the first 16 hex digits of its hash, and the entry records the release
//! file's absolute path and SHA-256. Reading such a run back re-reads that file and
//! refuses, naming it, when it is gone or changed since the run started.
//!
//! The entry also records the environment the release was resolved for and its artifact
//! identity ([`ReleaseOrigin`]: the file's SHA-256 and the `--set` values as written, an
//! `env:VAR` value by its name only). Reading a redacted run back resolves the file again
//! with that environment and those values (`env:` ones read from the environment again)
//! and refuses when the result differs from what was journaled.

use std::path::{Path, PathBuf};

use crate::release::{Artifact, LoadOptions, Release};

/// What a release was resolved with: the environment (`--env`) and the artifact identity
/// (file content and `--set` values). The lifecycle gate compares these across runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReleaseOrigin {
    pub environment: Option<String>,
    /// `None` for runs journaled before artifacts were recorded.
    pub artifact: Option<Artifact>,
    /// The variables in force as shown (`***` for values read with `env:`).
    #[serde(default)]
    pub variables: Vec<crate::release::vars::ResolvedVar>,
    /// `--change TICKET`, which overrides the file's `[release] change` (not part of the
    /// artifact: the same artifact moves between environments under different tickets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
}

impl ReleaseOrigin {
    /// The load options that resolve the release file the same way again.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            env: self.environment.clone(),
            sets: self
                .artifact
                .as_ref()
                .map(|a| a.sets.clone())
                .unwrap_or_default(),
            lenient_env: false,
        }
    }
}

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
    origin: &ReleaseOrigin,
) -> Result<(), RecordReleaseError> {
    let release_json = journaled_json(release)?;
    let secrets = crate::secrets::Secrets::from_release(release);
    let labels: Vec<String> = origin
        .environment
        .iter()
        .cloned()
        .chain(release.release.change.iter().map(|c| format!("change {c}")))
        .collect();
    let summary = if labels.is_empty() {
        format!("release {} from {file_label}", release.release.name)
    } else {
        format!(
            "release {} ({}) from {file_label}",
            release.release.name,
            labels.join(", ")
        )
    };
    let mut payload = serde_json::json!({
        "summary": summary,
        "file": file_label,
        "base_dir": base_dir.to_string_lossy(),
        "environment": origin.environment,
    });
    if let Some(c) = &release.release.change {
        payload["change"] = serde_json::Value::String(c.clone());
    }
    if let Some(c) = &origin.change {
        payload["change_from_flag"] = serde_json::Value::String(c.clone());
    }
    if let Some(a) = &origin.artifact {
        payload["artifact"] = serde_json::to_value(a).map_err(RecordReleaseError::Encode)?;
    }
    if !origin.variables.is_empty() {
        payload["variables"] =
            serde_json::to_value(&origin.variables).map_err(RecordReleaseError::Encode)?;
    }
    if !secrets.is_empty() {
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

/// The release as the entry stores it: secret values as fingerprints.
fn journaled_json(release: &Release) -> Result<serde_json::Value, RecordReleaseError> {
    let mut v = serde_json::to_value(release).map_err(RecordReleaseError::Encode)?;
    let secrets = crate::secrets::Secrets::from_release(release);
    if !secrets.is_empty() {
        redact_json(&mut v, &secrets);
    }
    Ok(v)
}

/// The environment and artifact a run's release was resolved with.
pub fn origin_of_run<'a>(
    state_dir: impl Into<super::StoreRef<'a>>,
    run_id: &str,
) -> Result<ReleaseOrigin, RunReleaseError> {
    Ok(ReleaseOrigin::from_payload(&release_payload(
        state_dir, run_id,
    )?))
}

/// The payload of a run's release entry.
fn release_payload<'a>(
    state_dir: impl Into<super::StoreRef<'a>>,
    run_id: &str,
) -> Result<serde_json::Value, RunReleaseError> {
    let rec = super::read_run(state_dir, run_id).map_err(RunReleaseError::Journal)?;
    rec.entries
        .into_iter()
        .find(|e| e.kind == RELEASE_ENTRY)
        .map(|e| e.payload)
        .ok_or_else(|| RunReleaseError::NoRelease {
            run_id: run_id.to_string(),
        })
}

impl ReleaseOrigin {
    /// The origin recorded in a release entry's payload (empty for older runs).
    pub fn from_payload(payload: &serde_json::Value) -> ReleaseOrigin {
        ReleaseOrigin {
            environment: payload["environment"].as_str().map(str::to_string),
            artifact: serde_json::from_value(payload["artifact"].clone()).ok(),
            variables: serde_json::from_value(payload["variables"].clone()).unwrap_or_default(),
            change: payload["change_from_flag"].as_str().map(str::to_string),
        }
    }
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
    #[error(
        "run {run_id}: {path} resolved with {resolved_with} no longer gives the release the run started with ({why}); export the environment variables the run started with, or start a new deploy"
    )]
    Changed {
        run_id: String,
        path: String,
        resolved_with: String,
        why: String,
    },
}

impl RunReleaseError {
    /// The caller named something that is not there (or has no release): invalid input.
    pub fn is_invalid_input(&self) -> bool {
        match self {
            RunReleaseError::Journal(e) => e.is_invalid_input(),
            RunReleaseError::NoRelease { .. }
            | RunReleaseError::FileNeeded { .. }
            | RunReleaseError::Changed { .. } => true,
            RunReleaseError::Unreadable { .. } => false,
        }
    }
}

/// Read the release stored in a run's journal, and the directory its files are read from.
pub fn release_of_run<'a>(
    state_dir: impl Into<super::StoreRef<'a>>,
    run_id: &str,
) -> Result<(Release, PathBuf), RunReleaseError> {
    let payload = release_payload(state_dir, run_id)?;
    let base_dir = payload["base_dir"]
        .as_str()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    if payload["redacted"] == serde_json::Value::Bool(true) {
        return release_from_file(run_id, &payload).map(|r| (r, base_dir));
    }
    let release: Release = serde_json::from_value(payload["release"].clone()).map_err(|error| {
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
    let origin = ReleaseOrigin::from_payload(payload);
    let opts = origin.load_options();
    let resolved_with = {
        let mut parts: Vec<String> = Vec::new();
        if let Some(e) = &opts.env {
            parts.push(format!("--env {e}"));
        }
        parts.extend(opts.sets.iter().map(|s| format!("--set {}", s.as_arg())));
        if parts.is_empty() {
            "no --env or --set".to_string()
        } else {
            parts.join(" ")
        }
    };
    let changed = |why: String| RunReleaseError::Changed {
        run_id: run_id.to_string(),
        path: path.clone(),
        resolved_with: resolved_with.clone(),
        why,
    };
    let mut loaded = crate::release::load(Path::new(&path), &opts).map_err(|d| {
        let first = d.first().map(|d| d.headline()).unwrap_or_default();
        changed(format!("it no longer resolves: {first}"))
    })?;
    if let Some(c) = &origin.change {
        loaded.release.release.change = Some(c.clone());
    }
    // A release with tenants was journaled as the engine runs it (`TENANT/SERVICE`).
    loaded.release = crate::release::flatten::flatten(&loaded.release, &loaded.tenants);
    if let Some(a) = &origin.artifact {
        if loaded.artifact.id != a.id {
            return Err(changed("its artifact identity differs".into()));
        }
        let now = journaled_json(&loaded.release)
            .map_err(|e| changed(format!("it cannot be encoded: {e}")))?;
        if now != payload["release"] {
            return Err(changed(
                "a value read with env: is not what it was: the journaled fingerprints differ"
                    .into(),
            ));
        }
    }
    Ok(loaded.release)
}
