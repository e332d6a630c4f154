//! What a run is asked to be: where its output goes, how it begins (a release file or a
//! journal to resume) and how contracts are confirmed.

use clap::ValueEnum;

/// Output format of commands that can print JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    #[default]
    Text,
    Json,
}

/// How contract is confirmed: `--allow-contract`, else the console asks, else (headless)
/// the release ends with it pending.
pub fn contract_mode(allow: bool, console: bool) -> crate::engine::ContractMode {
    use crate::engine::ContractMode;
    match (allow, console) {
        (true, _) => ContractMode::Allow,
        (false, true) => ContractMode::Confirm,
        (false, false) => ContractMode::Defer,
    }
}

/// How a session starts: a fresh run, or a journal to resume.
pub enum Begin {
    /// `origin`: the environment and artifact the release was resolved with (journaled).
    Fresh {
        file_label: String,
        sha256: String,
        origin: Box<crate::journal::ReleaseOrigin>,
        /// The lifecycle gate was closed and `--skip-requires` opened it.
        break_glass: Option<crate::engine::BreakGlass>,
        /// What the policy in force makes the engine enforce (freeze windows, who may
        /// approve, a freeze's break-glass), journaled with the release.
        change_control: Option<Box<crate::policy::ChangeControl>>,
    },
    Resume {
        run_id: String,
        /// A standby taking the run over (`serve --standby`): journaled and said before
        /// the engine restarts (`session/standby.rs`).
        takeover: Option<super::standby::Takeover>,
    },
}

/// A run's spec: which release (from a file, or a journal to resume), where it is
/// journaled, who runs it, where its output goes and how it is watched.
pub struct RunSpec {
    pub release: crate::release::Release,
    /// `--region`/`--profile` for an ECS release.
    pub aws: Aws,
    /// Where the release's relative paths (migrations, local argv) are read from.
    pub base_dir: std::path::PathBuf,
    pub begin: Begin,
    pub state_dir: std::path::PathBuf,
    /// Where the run is journaled: files under `state_dir`, or PostgreSQL.
    pub journal: crate::journal::JournalStore,
    pub operator: String,
    pub output: Output,
    /// `--allow-contract`.
    pub allow_contract: bool,
    pub front: Front,
    /// Added to the JSON summary (`{"resumed": true}`, `{"served": true}`).
    pub summary_extra: serde_json::Value,
}

/// The AWS region and profile a run uses (`--region`, `--profile`); unset, the standard
/// chain (`AWS_REGION`, `AWS_PROFILE`, the profile's region) decides. A service's own
/// `[service.ecs] region` still wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aws {
    pub region: Option<String>,
    pub profile: Option<String>,
}

impl Aws {
    /// The flags that give the same choice to another cutover process.
    pub fn argv(&self) -> Vec<std::ffi::OsString> {
        let mut v = Vec::new();
        if let Some(r) = &self.region {
            v.extend(["--region".into(), r.into()]);
        }
        if let Some(p) = &self.profile {
            v.extend(["--profile".into(), p.into()]);
        }
        v
    }
}

/// How a run is watched.
pub enum Front {
    /// The console in this terminal.
    Console(super::UiOptions),
    /// Event lines on stdout; `keep_running`: serve the final state until a signal.
    Headless { keep_running: bool },
    /// Headless and shared on the control API (`cutover serve`).
    Served(Serving),
}

/// Where and how long `cutover serve` shares a run.
pub struct Serving {
    pub socket: std::path::PathBuf,
    pub tcp: Option<(std::net::SocketAddr, crate::control::Tokens)>,
    /// TLS for `tcp` (`--tls-cert`/`--tls-key`): required on a non-loopback address.
    pub tls: Option<crate::control::server::ServerTls>,
    pub keep_running: bool,
    /// After the release finished, keep serving this long so consoles see the end.
    pub linger: std::time::Duration,
}

/// Why a release file cannot be run.
pub enum SourceError {
    /// The file cannot be read, or another failure with its exit code.
    Failure(super::Failure),
    /// The release is invalid: every problem, as `validate` prints them.
    Invalid(Vec<crate::release::Diagnostic>),
}

/// A fresh run of the release in `file` resolved with `opts` (`--env`, `--set`): the
/// release, its base directory, and how the run begins (the file's name and SHA-256, the
/// environment and the artifact recorded).
pub fn from_file(
    file: &std::path::Path,
    opts: &crate::release::LoadOptions,
    admission: &super::lifecycle::Admission,
) -> Result<(crate::release::Release, std::path::PathBuf, Begin), SourceError> {
    let (text, base_dir) = crate::release::read(file).map_err(SourceError::Invalid)?;
    let loaded =
        crate::release::load_text(file, &text, &base_dir, opts).map_err(SourceError::Invalid)?;
    let break_glass = super::lifecycle::admit(&loaded, admission).map_err(SourceError::Failure)?;
    let change_control = super::policy_gate::admit(
        &loaded,
        &file.display().to_string(),
        admission.journal,
        admission.operator,
        admission.policy,
    )?;
    let base_dir = std::fs::canonicalize(&loaded.base_dir).unwrap_or(loaded.base_dir.clone());
    let begin = Begin::Fresh {
        break_glass,
        change_control: change_control.map(Box::new),
        file_label: file.display().to_string(),
        sha256: loaded.artifact.file_sha256.clone(),
        origin: Box::new(crate::journal::ReleaseOrigin {
            environment: loaded.environment.clone(),
            artifact: Some(loaded.artifact.clone()),
            variables: loaded.vars.clone(),
            change: None,
        }),
    };
    // With tenants, the engine runs every tenant's services as `TENANT/SERVICE`.
    let release = crate::release::flatten::flatten(&loaded.release, &loaded.tenants);
    Ok((release, base_dir, begin))
}

/// A resumed run: `run`, else the newest unfinished run under `state_dir`, and the
/// release its journal recorded.
pub fn from_journal(
    state_dir: &crate::journal::JournalStore,
    run: Option<&str>,
) -> Result<(crate::release::Release, std::path::PathBuf, Begin), super::Failure> {
    let run_id = match run {
        Some(r) => r.to_string(),
        None => match crate::journal::latest_unfinished(state_dir) {
            Ok(Some(r)) => r.run_id,
            Ok(None) => {
                return Err(super::Failure::invalid(format!(
                    "no unfinished run under {}; nothing to resume (see `cutover history {}`)",
                    state_dir.label(),
                    state_dir.flag()
                )));
            }
            Err(e) => return Err(super::Failure::internal(e.to_string())),
        },
    };
    let (release, base_dir) = super::resume::release_of_run(state_dir, &run_id)?;
    Ok((
        release,
        base_dir,
        Begin::Resume {
            run_id,
            takeover: None,
        },
    ))
}

/// `--change TICKET`: the release ships under this change ticket, whatever its file says.
/// Journaled with the release (and as the flag's value, so a resume that re-reads the file
/// gives the same release).
pub fn with_change(release: &mut crate::release::Release, begin: &mut Begin, change: Option<&str>) {
    let Some(c) = change else { return };
    release.release.change = Some(c.to_string());
    if let Begin::Fresh { origin, .. } = begin {
        origin.change = Some(c.to_string());
    }
}
