//! The release report (`cutover report`, and `report.html`, `report.md`, `report.json` in
//! every run's directory when it ends): what changed, where, who did what and why, each
//! verdict with its evidence drawn, the rollbacks with their time to detect and restore,
//! policy results, the timeline and the journal's last hash. Everything is read from the
//! run's journal ([`model::build`]); the renderers are pure functions of the model.

pub mod html;
pub mod md;
pub mod model;
pub mod refusal;
pub mod stats;
pub mod svg;

use std::path::PathBuf;

pub use model::Report;

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Md,
    Html,
    Json,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Html, Format::Md, Format::Json];

    /// The file name in a run's directory.
    pub fn file_name(self) -> &'static str {
        match self {
            Format::Md => "report.md",
            Format::Html => "report.html",
            Format::Json => "report.json",
        }
    }
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}")]
    Journal(#[from] crate::journal::JournalError),
    #[error(
        "no runs under {}: deploy a release first (`cutover deploy FILE --state-dir {}`)",
        .0.display(),
        .0.display()
    )]
    NoRuns(PathBuf),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode the report as JSON: {0}")]
    Encode(#[from] serde_json::Error),
}

impl ReportError {
    /// The caller named something that is not there: exit 2.
    pub fn is_invalid_input(&self) -> bool {
        match self {
            ReportError::Journal(e) => e.is_invalid_input(),
            ReportError::NoRuns(_) => true,
            _ => false,
        }
    }
}

/// The report of `run` (the newest run under `state_dir` when `None`).
pub fn for_run<'a>(
    state_dir: impl Into<crate::journal::StoreRef<'a>>,
    run: Option<&str>,
) -> Result<Report, ReportError> {
    let state_dir = state_dir.into();
    let run_id = match run {
        Some(r) => r.to_string(),
        None => crate::journal::list_runs(state_dir)?
            .into_iter()
            .next()
            .map(|r| r.run_id)
            .ok_or_else(|| ReportError::NoRuns(PathBuf::from(state_dir.label())))?,
    };
    let rec = crate::journal::read_run(state_dir, &run_id)?;
    Ok(model::build(&rec))
}

/// The report in one format, scrubbed of `secrets` (the journal holds none; this is the
/// second lock on the door).
pub fn render(
    report: &Report,
    format: Format,
    secrets: &crate::secrets::Secrets,
) -> Result<String, ReportError> {
    let text = match format {
        Format::Md => md::render(report),
        Format::Html => html::render(report),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(report)?;
            s.push('\n');
            s
        }
    };
    Ok(secrets.scrub(&text))
}

/// Write `report.html`, `report.md` and `report.json` of `run_id` into its run directory
/// (each replaced atomically); returns the directory.
pub fn write_files<'a>(
    state_dir: impl Into<crate::journal::StoreRef<'a>>,
    run_id: &str,
    secrets: &crate::secrets::Secrets,
) -> Result<PathBuf, ReportError> {
    let state_dir = state_dir.into();
    let report = for_run(state_dir, Some(run_id))?;
    let dir = crate::journal::run_dir(state_dir, run_id)?;
    for f in Format::ALL {
        let text = render(&report, f, secrets)?;
        let path = dir.join(f.file_name());
        let tmp = dir.join(format!(".{}.tmp", f.file_name()));
        std::fs::write(&tmp, text.as_bytes()).map_err(|source| ReportError::Write {
            path: tmp.clone(),
            source,
        })?;
        std::fs::rename(&tmp, &path).map_err(|source| ReportError::Write {
            path: path.clone(),
            source,
        })?;
    }
    Ok(dir)
}
