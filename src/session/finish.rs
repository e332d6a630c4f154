//! Ending a headless run: wait for the engine (a signal aborts the release; a second one
//! stops at once), print the summary, keep serving if asked, stop the platform.

use super::exit::{EXIT_INTERNAL, EXIT_UNFINISHED};
use super::start::Session;
use super::summary::print_summary;
use crate::engine::{Command, EngineError, EngineHandle, ReleaseState};

/// Wait for SIGINT or SIGTERM.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// SIGINT or SIGTERM from the moment this is called: the handlers are registered here,
/// not when the future is first polled, so a signal sent as soon as the summary is out
/// (a supervisor or test that read it) is not swallowed while the summary is printed.
fn signal_from_now() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal as unix_signal};
    let term = unix_signal(SignalKind::terminate()).ok();
    let int = unix_signal(SignalKind::interrupt()).ok();
    async move {
        match (term, int) {
            (Some(mut term), Some(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => signal().await,
        }
    }
}

/// Wait for the engine (a signal aborts the release; a second one stops at once), print
/// the summary, keep serving if asked, then stop the platform.
pub async fn finish_session(
    session: Session,
    operator: &str,
    keep_running: bool,
    extra: impl FnOnce(&ReleaseState) -> (serde_json::Value, Vec<String>),
) -> u8 {
    let Session {
        handle,
        platform,
        printer,
        notifier,
        tracer,
        run_id,
        output,
        hub: _,
        state_dir: _,
        journal,
        contract: _,
        aws: _,
        secrets,
    } = session;
    let EngineHandle {
        commands,
        events,
        state: _,
        mut join,
        stopped: _,
    } = handle;
    let outcome = tokio::select! {
        r = &mut join => r,
        _ = signal() => {
            eprintln!("cutover: interrupted: aborting the release (services in flight roll back); interrupt again to stop at once");
            let (req, _rx) = crate::engine::CommandRequest::new(Command::Abort, operator);
            let _ = commands.send(req).await;
            tokio::select! {
                r = &mut join => r,
                _ = signal() => {
                    join.abort();
                    platform.shutdown().await;
                    eprintln!("cutover: stopped; `cutover resume` carries on from the journal (run {run_id})");
                    return EXIT_UNFINISHED;
                }
            }
        }
    };
    drop(commands);
    drop(events);
    // Listening before the summary is printed: whoever reads it may stop us at once.
    let stop = keep_running.then(signal_from_now);
    let mut journal_failed = false;
    let code = match outcome {
        Ok(Ok(out)) => {
            let _ = printer.await;
            let (mut more, mut lines) = extra(&out.state);
            super::report::write_and_name(&journal, &run_id, &secrets, &mut more, &mut lines);
            print_summary(&out.state, out.exit_code, output, more, &lines);
            out.exit_code
        }
        Ok(Err(e)) => {
            eprintln!("cutover: the engine stopped: {e}");
            if let EngineError::Record(r) = &e {
                journal_failed = true;
                eprintln!(
                    "{}",
                    super::journal_failure::advice(&r.0, &run_id, &journal, keep_running)
                );
            }
            EXIT_INTERNAL
        }
        Err(e) => {
            eprintln!("cutover: the engine failed: {e}");
            EXIT_INTERNAL
        }
    };
    if let Some(n) = notifier {
        let _ = n.await;
    }
    crate::trace::finish(tracer, crate::trace::FLUSH_LIMIT).await;
    if let Some(stop) = stop {
        if journal_failed {
            // The journal's disk failed: the split in force is the last journaled one.
            stop.await;
        } else if code != EXIT_INTERNAL {
            eprintln!("cutover: serving the final state; SIGINT or SIGTERM to stop");
            stop.await;
        }
    }
    platform.shutdown().await;
    code
}
