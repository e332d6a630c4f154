//! `cutover schema`

use std::process::ExitCode;

use super::Error;

pub fn run() -> Result<ExitCode, Error> {
    let s = serde_json::to_string_pretty(&crate::release::json_schema())
        .map_err(|e| Error::Internal(format!("cannot encode the schema: {e}")))?;
    println!("{s}");
    Ok(ExitCode::SUCCESS)
}
