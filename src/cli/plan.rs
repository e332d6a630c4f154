//! `cutover plan FILE [--output json]`

use std::path::Path;
use std::process::ExitCode;

use super::Output;
use crate::{plan, release};

pub fn run(file: &Path, output: Output) -> ExitCode {
    let loaded = match release::load(file) {
        Ok(r) => r,
        Err(diags) => return super::report_diagnostics(&diags),
    };
    let p = plan::plan(&loaded.release);
    match output {
        Output::Text => print!("{}", plan::render_text(&p)),
        Output::Json => match serde_json::to_string_pretty(&p) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("cutover: cannot encode the plan as JSON: {e}");
                return ExitCode::from(super::EXIT_INTERNAL);
            }
        },
    }
    ExitCode::SUCCESS
}
