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
    Fresh { file_label: String, sha256: String },
    Resume { run_id: String },
}
