//! `cutover completions SHELL` and `cutover man [--dir DIR]`: generated from the same clap
//! definitions the commands parse with, so they cannot drift from them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

use super::{Cli, Error};

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write `cutover.1` and one `cutover-COMMAND.1` per command (and subcommand) into this
    /// directory instead of printing the main page.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn completions(args: &CompletionsArgs) -> Result<ExitCode, Error> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "cutover", &mut out);
    print_bytes(&out)
}

pub fn man(args: &ManArgs) -> Result<ExitCode, Error> {
    let cmd = Cli::command();
    match &args.dir {
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .map_err(|e| Error::Internal(format!("cannot render the manual page: {e}")))?;
            print_bytes(&out)
        }
        Some(dir) => {
            let written = man_pages(&cmd, dir)
                .map_err(|e| Error::Internal(format!("man --dir {}: {e}", dir.display())))?;
            println!(
                "cutover: wrote {} manual pages to {}",
                written.len(),
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Render the page of `cmd` and of every visible subcommand (`cutover-deploy.1`,
/// `cutover-migrate-lint.1`, …) into `dir`; returns the files written, in order.
pub fn man_pages(cmd: &clap::Command, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let mut cmd = cmd.clone();
    cmd.build();
    write_page(&cmd, cmd.get_name().to_string(), dir, &mut written)?;
    Ok(written)
}

fn write_page(
    cmd: &clap::Command,
    name: String,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    let page = cmd.clone().name(name.clone());
    let path = dir.join(format!("{name}.1"));
    let mut out = Vec::new();
    clap_mangen::Man::new(page).render(&mut out)?;
    std::fs::write(&path, out)?;
    written.push(path);
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        write_page(sub, format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}

fn print_bytes(out: &[u8]) -> Result<ExitCode, Error> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(out).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // A closed pipe (`| head`) is not an error worth a message.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(Error::Internal(e.to_string())),
    }
}
