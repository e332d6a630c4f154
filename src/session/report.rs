//! The release report written when a run ends: `report.html`, `report.md` and
//! `report.json` in the run's directory (`crate::report`), named in the summary. A report
//! that cannot be written is said, never fatal: the journal has everything.

use crate::secrets::Secrets;

/// Write the report of `run_id`, scrubbed of `secrets`, and say where in the summary:
/// `report` (the HTML file) in the JSON summary and a line in the text one.
pub fn write_and_name(
    state_dir: &crate::journal::JournalStore,
    run_id: &str,
    secrets: &Secrets,
    json: &mut serde_json::Value,
    lines: &mut Vec<String>,
) {
    match crate::report::write_files(state_dir, run_id, secrets) {
        Ok(dir) => {
            let html = dir.join(crate::report::Format::Html.file_name());
            if let serde_json::Value::Object(o) = json {
                o.insert(
                    "report".into(),
                    serde_json::Value::String(html.display().to_string()),
                );
            }
            lines.push(format!(
                "report: {} (also report.md, report.json; `cutover report {run_id}`)",
                html.display()
            ));
        }
        Err(e) => lines.push(format!(
            "cutover: the release report could not be written: {e}; `cutover report {run_id}` makes it from the journal"
        )),
    }
}
