//! The one run body of `deploy`, `resume` and `serve`: start the session (a fresh run or
//! a resumed one), say where it is journaled or served, watch it (console, event lines,
//! or the control API) and end it. Returns the run's exit code.

use std::time::Duration;

use super::console::finish_with_console;
use super::exit::Failure;
use super::finish::finish_session;
use super::spec::{Begin, Front, Output, RunSpec};
use super::start::{runtime, start_session_with};
use crate::control::{ControlServer, Listeners, ServerConfig};

/// Run `spec` to its end on a runtime of its own.
pub fn run(spec: RunSpec) -> Result<u8, Failure> {
    let rt = runtime()?;
    let result = rt.block_on(run_async(spec));
    rt.shutdown_timeout(Duration::from_secs(2));
    result
}

async fn run_async(spec: RunSpec) -> Result<u8, Failure> {
    let RunSpec {
        release,
        aws,
        base_dir,
        begin,
        state_dir,
        journal,
        operator,
        output,
        allow_contract,
        front,
        summary_extra,
    } = spec;
    let resuming = match &begin {
        Begin::Resume { run_id, .. } => Some(run_id.clone()),
        Begin::Fresh { .. } => None,
    };
    let console = matches!(front, Front::Console(_));
    let served = matches!(front, Front::Served(_));
    // A served run binds its listeners before anything starts.
    let mut front = front;
    let listeners = match &mut front {
        Front::Served(s) => Some(
            Listeners::bind_tls(
                ServerConfig {
                    socket: s.socket.clone(),
                    tcp: s.tcp.take(),
                },
                s.tls.take(),
            )
            .await
            .map_err(|e| Failure::invalid(e.to_string()))?,
        ),
        _ => None,
    };
    let contract = super::contract_mode(allow_contract, console || served);
    let session = match start_session_with(
        &release, &base_dir, &state_dir, &journal, begin, &operator, output, !console, contract,
        &aws,
    )
    .await
    {
        Ok(s) => s,
        Err(f) => {
            if let Front::Served(s) = &front {
                let _ = std::fs::remove_file(&s.socket);
            }
            return Err(f);
        }
    };
    let extra = move |_: &crate::engine::ReleaseState| (summary_extra, Vec::new());
    if let (Front::Served(serving), Some(listeners)) = (&front, listeners) {
        let server = ControlServer::start(
            listeners,
            session.hub.clone(),
            session.handle.commands.clone(),
        );
        if let Some(run_id) = &resuming {
            eprintln!("cutover: resuming run {run_id}");
        }
        eprintln!(
            "cutover: run {} serving on {}{}",
            session.run_id,
            serving.socket.display(),
            server
                .tcp_url()
                .map(|u| format!(" and {u}"))
                .unwrap_or_default()
        );
        let code = finish_session(session, &operator, serving.keep_running, extra).await;
        if !serving.keep_running {
            tokio::time::sleep(serving.linger).await;
        }
        server
            .shutdown(&format!(
                "the release finished (exit {code}); the server stopped"
            ))
            .await;
        return Ok(code);
    }
    if output == Output::Text {
        match &resuming {
            Some(run_id) => eprintln!("cutover: resuming run {run_id}"),
            None => eprintln!(
                "cutover: run {} journaled under {}",
                session.run_id,
                journal.label()
            ),
        }
    }
    Ok(match &front {
        Front::Console(ui) => finish_with_console(session, &release, &operator, ui, extra).await,
        Front::Headless { keep_running } => {
            // A break-glass waiting for approvals: other operators give them through this
            // run's socket (`cutover ctl approve-break-glass --state-dir D`).
            let waiting = session
                .handle
                .state
                .borrow()
                .change_control
                .as_ref()
                .and_then(|c| c.break_glass.as_ref())
                .is_some_and(|b| b.pending);
            let shared = if waiting {
                let shared = super::share::share(
                    &session.state_dir,
                    &session.hub,
                    &session.handle.commands,
                    &operator,
                )
                .await;
                if shared.is_some() {
                    eprintln!(
                        "cutover: the break-glass waits for approvals before anything changes: cutover ctl approve-break-glass --state-dir {}",
                        super::share::shell_word(&session.state_dir)
                    );
                }
                shared
            } else {
                None
            };
            let code = finish_session(session, &operator, *keep_running, extra).await;
            if let Some(s) = shared {
                s.stop("the release finished; the server stopped").await;
            }
            code
        }
        Front::Served(_) => finish_session(session, &operator, false, extra).await,
    })
}
