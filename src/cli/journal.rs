//! `cutover journal export --journal URL --to DIR` and `cutover journal import --from DIR
//! --journal URL`: move finished runs between PostgreSQL and the file journal (a state
//! directory), the chain checked both ways (`journal/transfer.rs`). `--run` moves one.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{Error, JournalArg, Output, parse_state_dir};
use crate::journal::JournalStore;
use crate::journal::transfer::{self, Moved};

#[derive(Debug, clap::Subcommand)]
pub enum JournalCommand {
    /// Copy the finished runs of the PostgreSQL journal (--journal, or CUTOVER_JOURNAL)
    /// into the file journal under DIR (a state directory), each verified before and after.
    Export {
        #[command(flatten)]
        journal: JournalArg,
        /// The state directory to write the runs under (DIR/runs/RUN).
        #[arg(long, value_name = "DIR", value_parser = parse_state_dir)]
        to: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Copy the finished runs of the file journal under DIR (a state directory) into the
    /// PostgreSQL journal (--journal, or CUTOVER_JOURNAL), each verified before and after.
    Import {
        /// The state directory to read the runs from (DIR/runs/RUN).
        #[arg(long, value_name = "DIR", value_parser = parse_state_dir)]
        from: PathBuf,
        #[command(flatten)]
        journal: JournalArg,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, clap::Args)]
pub struct Common {
    /// Only this run [default: every finished run]
    #[arg(long, value_name = "RUN")]
    pub run: Option<String>,
    /// `json`: one object per run (run_id, entries, last_hash, result)
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

fn postgres(journal: &JournalArg, dir: &std::path::Path) -> Result<JournalStore, Error> {
    match journal.store(dir)? {
        JournalStore::File(_) => Err(Error::Invalid(
            "name the PostgreSQL journal: --journal postgres://USER@HOST:PORT/DB (or env:VAR, or CUTOVER_JOURNAL)".into(),
        )),
        pg => Ok(pg),
    }
}

pub fn run(command: JournalCommand) -> Result<ExitCode, Error> {
    let (moved, common) = match command {
        JournalCommand::Export {
            journal,
            to,
            common,
        } => {
            let pg = postgres(&journal, &to)?;
            let file = JournalStore::File(to);
            let m = transfer::copy((&pg).into(), (&file).into(), common.run.as_deref())?;
            (m, common)
        }
        JournalCommand::Import {
            from,
            journal,
            common,
        } => {
            let pg = postgres(&journal, &from)?;
            let file = JournalStore::File(from);
            let m = transfer::copy((&file).into(), (&pg).into(), common.run.as_deref())?;
            (m, common)
        }
    };
    print(&moved, common.output)?;
    Ok(ExitCode::SUCCESS)
}

fn print(moved: &[Moved], output: Output) -> Result<(), Error> {
    if output == Output::Json {
        for m in moved {
            let line = serde_json::to_string(m)
                .map_err(|e| Error::Internal(format!("cannot encode a result as JSON: {e}")))?;
            println!("{line}");
        }
        return Ok(());
    }
    if moved.is_empty() {
        println!("no finished runs to move");
    }
    for m in moved {
        if m.last_hash.is_empty() {
            println!("{}  {}", m.run_id, m.result);
        } else {
            println!(
                "{}  {}  {} entries, last hash {}",
                m.run_id, m.result, m.entries, m.last_hash
            );
        }
    }
    Ok(())
}
