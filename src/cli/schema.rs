//! `cutover schema`

use std::process::ExitCode;

pub fn run() -> ExitCode {
    match serde_json::to_string_pretty(&crate::release::json_schema()) {
        Ok(s) => {
            println!("{s}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cutover: cannot encode the schema: {e}");
            ExitCode::from(super::EXIT_INTERNAL)
        }
    }
}
