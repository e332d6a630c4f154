//! What a headless run says when the engine stopped because its journal could not be
//! written (a full or failing disk): the engine took no action after the failed write, so
//! traffic is on the last journaled split; the operator frees the disk, then resumes.

use std::path::Path;

use crate::engine::RecordError;

/// The lines printed on stderr after `cutover: the engine stopped: …`.
pub fn advice(err: &RecordError, run_id: &str, state_dir: &Path, keep_running: bool) -> String {
    let dir = state_dir.display();
    let traffic = if keep_running {
        "the proxies keep serving the last journaled split until SIGINT or SIGTERM"
    } else {
        "traffic stayed on the last journaled split until this process stopped its proxies"
    };
    format!(
        "cutover: the journal of run {run_id} could not be written ({cause}); the engine took no \
         action after the failed write and {traffic}.\n\
         cutover: check the disk that holds {dir} (`df -h {dir}`: free space, or replace a \
         failing disk), then run `cutover resume --state-dir {dir}` to carry on from the journal",
        cause = err.0,
    )
}
