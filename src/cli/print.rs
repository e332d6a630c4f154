//! `cutover print dirs|keymap|theme-slots`: where cutover looks, the keys in force,
//! and the theme slots a theme file may set.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::console::config::{Choice, Dirs, load};
use crate::console::theme::Slot;

use super::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum What {
    /// The config and state directories, and the files read there.
    Dirs,
    /// The keymap in force (shipped files + yours), as a keymap file.
    Keymap,
    /// Every theme slot with what it styles.
    ThemeSlots,
}

#[derive(Debug, clap::Args)]
pub struct PrintArgs {
    pub what: What,
    /// The directory holding keymap.toml and themes/ [default: the config directory].
    #[arg(long, env = "CUTOVER_CONFIG_DIR", value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
    /// With `keymap`: the shipped keymap under yours (default, vim).
    #[arg(long)]
    pub keymap: Option<String>,
}

pub fn run(args: PrintArgs) -> Result<ExitCode, Error> {
    let dirs = Dirs::resolve(args.config_dir.as_deref());
    match args.what {
        What::Dirs => {
            println!("config   {}", dirs.config.display());
            println!("keymap   {}", dirs.keymap_file().display());
            println!("themes   {}", dirs.themes_dir().display());
            println!("state    {}", dirs.state.display());
            Ok(ExitCode::SUCCESS)
        }
        What::Keymap => {
            let loaded = load(
                &dirs,
                &Choice {
                    keymap: args.keymap,
                    ..Choice::default()
                },
            );
            // Problems in the user's files are warnings ahead of the keymap, which is
            // printed all the same (the shipped keys stand in); they only set the exit code.
            for e in &loaded.errors {
                eprintln!("{e}");
            }
            print!("{}", loaded.keymap.to_toml());
            if loaded.errors.is_empty() {
                Ok(ExitCode::SUCCESS)
            } else {
                Ok(ExitCode::from(super::EXIT_INVALID))
            }
        }
        What::ThemeSlots => {
            for s in Slot::ALL {
                println!("{:<24} {}", s.name(), s.description());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
