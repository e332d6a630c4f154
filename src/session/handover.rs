//! Handing a release over to a background `cutover serve --resume`: starting this
//! program in its own session (also `serve --detach`), and moving a console's release
//! to it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::share::{Shared, socket_path};
use crate::control::{Client, Endpoint};

/// A `cutover serve` started in the background by [`spawn_background`].
pub struct Background {
    pub child: std::process::Child,
    /// Its stdout and stderr.
    pub log: PathBuf,
}

/// Start this program with `argv` in a new session (`setsid`: no controlling terminal,
/// its own process group, so a closed terminal or SSH session cannot hang it up), stdin
/// from /dev/null, stdout and stderr appended to `STATE_DIR/serve-PID.log` (mode 0600).
pub fn spawn_background(
    state_dir: &Path,
    argv: &[std::ffi::OsString],
    journal: Option<&crate::journal::JournalStore>,
) -> Result<Background, String> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::process::CommandExt;
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find this program's path: {e}"))?;
    std::fs::create_dir_all(state_dir)
        .map_err(|e| format!("cannot create {}: {e}", state_dir.display()))?;
    let log_path = state_dir.join(format!("serve-{}.log", std::process::id()));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let log2 = log
        .try_clone()
        .map_err(|e| format!("cannot share {}: {e}", log_path.display()))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(argv)
        .env("CUTOVER_STATE_DIR", state_dir)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2);
    // A journal in PostgreSQL goes by the environment, never on the command line.
    if let Some(crate::journal::JournalStore::Postgres(pg)) = journal {
        cmd.env(crate::journal::JOURNAL_ENV, pg.secret_url());
    }
    // SAFETY: setsid is async-signal-safe and touches no memory of this process.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the background server: {e}"))?;
    Ok(Background {
        child,
        log: log_path,
    })
}

/// A release now running in a background `cutover serve --resume`.
pub struct HandedOver {
    pub pid: u32,
    pub log: PathBuf,
    /// From stopping this engine to the new server answering with the run's state.
    pub took: std::time::Duration,
}

/// The background server's arguments: the same run, state dir, operator, and contract
/// mode (`--allow-contract` carries over).
fn serve_argv(
    run_id: &str,
    state_dir: &Path,
    operator: &str,
    contract: crate::engine::ContractMode,
    aws: &super::Aws,
) -> Vec<std::ffi::OsString> {
    let mut argv: Vec<std::ffi::OsString> = vec![
        "serve".into(),
        "--resume".into(),
        "--run".into(),
        run_id.into(),
        "--state-dir".into(),
        state_dir.as_os_str().to_owned(),
        "--operator".into(),
        operator.into(),
    ];
    if contract == crate::engine::ContractMode::Allow {
        argv.push("--allow-contract".into());
    }
    argv.extend(aws.argv());
    argv
}

/// Move the release to a background `cutover serve --resume` process.
///
/// The local platform's replicas die with this process (they are tied to it) and a new
/// process cannot adopt running ones, so the release moves the way a crash recovery does,
/// without the crash: this engine stops (dropping it releases the journal's lock), the
/// control server tells attached clients where the release went and removes the socket,
/// the platform drains its proxies and stops the replicas, then `serve --resume` is
/// started in its own session: it takes the journal lock, relaunches every revision the
/// journal says runs at its journaled weights, and serves the socket again. This process
/// returns only once the new server answers with the same run. Traffic on the services'
/// ports pauses from the proxies' stop until the new process has healthy replicas behind
/// its proxies (measured by `tests/pairing.rs`); the release's state, gates, approvals
/// and the journal's chain carry over. On ECS nothing stops (the tasks run in AWS): the
/// new server re-reads the run's pins and checks the listener rules against the journal.
#[allow(clippy::too_many_arguments)]
pub async fn hand_over(
    join: tokio::task::JoinHandle<Result<crate::engine::RunOutcome, crate::engine::EngineError>>,
    platform: &Arc<dyn crate::platform::Platform>,
    shared: Option<Shared>,
    state_dir: &Path,
    journal: &crate::journal::JournalStore,
    run_id: &str,
    operator: &str,
    contract: crate::engine::ContractMode,
    aws: &super::Aws,
) -> Result<HandedOver, String> {
    let t0 = std::time::Instant::now();
    join.abort();
    let _ = join.await;
    if let Some(s) = shared {
        let reason = format!(
            "{}: a background `cutover serve` carries the release on (the console, pid {}, quit); attach again: `{}`",
            crate::control::HANDED_OVER,
            std::process::id(),
            s.attach
        );
        s.stop(&reason).await;
    }
    platform.shutdown().await;
    let argv = serve_argv(run_id, state_dir, operator, contract, aws);
    let Background { mut child, log } = spawn_background(state_dir, &argv, Some(journal))?;
    let pid = child.id();
    let client = Client::new(Endpoint::Unix(socket_path(state_dir)), operator);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        // The socket accepts before the server answers: a snapshot comes only once the
        // session started (journal locked, platform up, engine restored). Bounded, so a
        // server that dies meanwhile is noticed below.
        let answer =
            tokio::time::timeout(std::time::Duration::from_secs(2), client.snapshot()).await;
        if let Ok(Ok(snap)) = answer
            && snap.state.run_id == run_id
        {
            return Ok(HandedOver {
                pid,
                log,
                took: t0.elapsed(),
            });
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "`cutover serve --resume` exited ({status}) before serving; see {}",
                log.display()
            ));
        }
        if std::time::Instant::now() > deadline {
            // Stop it: left running, it could take the journal and the socket after the
            // user was told to resume by hand, and two servers would race for the run.
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "`cutover serve --resume` (pid {pid}) did not serve run {run_id} within 60 s and was stopped; see {}",
                log.display()
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A server started by [`serve_in_background`].
pub struct Started {
    pub pid: u32,
    /// Its stdout and stderr.
    pub log: PathBuf,
}

/// Start this program with `argv` (a `cutover serve` without `--detach`) in a new
/// session, output to a log file, the journal in force passed by the environment, and
/// wait until it answers on `socket`.
pub fn serve_in_background(
    state_dir: &Path,
    socket: &Path,
    argv: &[std::ffi::OsString],
    journal: &crate::journal::JournalStore,
) -> Result<Started, super::Failure> {
    use std::time::Duration;
    let Background {
        mut child,
        log: log_path,
    } = spawn_background(state_dir, argv, Some(journal)).map_err(super::Failure::internal)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Ok(Started {
                pid: child.id(),
                log: log_path,
            });
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(super::Failure {
                code: status
                    .code()
                    .and_then(|c| u8::try_from(c).ok())
                    .unwrap_or(super::EXIT_INTERNAL),
                message: format!(
                    "the background server exited ({status}) before serving; see {}",
                    log_path.display()
                ),
            });
        }
        if std::time::Instant::now() > deadline {
            return Err(super::Failure::internal(format!(
                "the background server (pid {}) did not open {} within 60 s; see {}",
                child.id(),
                socket.display(),
                log_path.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ContractMode;

    #[test]
    fn the_background_server_resumes_the_same_run_and_keeps_allow_contract() {
        let dir = Path::new("/tmp/state");
        let args = |c| {
            serve_argv("RUN1", dir, "alice", c, &super::super::Aws::default())
                .into_iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            args(ContractMode::Confirm),
            "serve --resume --run RUN1 --state-dir /tmp/state --operator alice"
        );
        assert!(args(ContractMode::Allow).ends_with(" --allow-contract"));
        assert!(!args(ContractMode::Defer).contains("allow-contract"));
        let aws = super::super::Aws {
            region: Some("eu-west-1".into()),
            profile: Some("prod".into()),
        };
        let with = serve_argv("RUN1", dir, "alice", ContractMode::Confirm, &aws)
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            with.ends_with(" --region eu-west-1 --profile prod"),
            "{with}"
        );
    }
}
