//! End to end: keys typed into the console's real event loop (on `TestBackend`) against
//! a scripted engine that records every command it receives and answers some with a
//! refusal, as the real engine would.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use cutover::console::app::{App, Settings};
use cutover::console::fixtures;
use cutover::console::keymap::Keymap;
use cutover::console::run::{EngineLink, NoTerminalControl, run_loop};
use cutover::console::theme::Theme;
use cutover::engine::{Command, CommandRequest, FakeClock, Refusal};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tokio::sync::{broadcast, mpsc, watch};

fn key(c: char) -> TermEvent {
    TermEvent::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}
fn code(c: KeyCode) -> TermEvent {
    TermEvent::Key(KeyEvent::new(c, KeyModifiers::NONE))
}
fn typed(s: &str) -> Vec<TermEvent> {
    s.chars().map(key).collect()
}

struct Run {
    sent: Vec<Command>,
    screen: String,
    messages: Vec<String>,
}

/// Feed `keys` (with a pause after each so replies land), return the commands the
/// engine got and the last screen.
async fn drive(keys: Vec<TermEvent>, read_only: bool, refuse: &'static str) -> Run {
    let s = fixtures::scenario("canary-analysing");
    let (cmd_tx, mut cmd_rx) = mpsc::channel::<CommandRequest>(16);
    let (ev_tx, ev_rx) = broadcast::channel(64);
    let (_state_tx, state_rx) = watch::channel(s.state());
    let sent = Arc::new(Mutex::new(Vec::new()));
    let rec = sent.clone();
    // The scripted engine: records, refuses one verb, accepts the rest.
    let engine = tokio::spawn(async move {
        while let Some(req) = cmd_rx.recv().await {
            rec.lock().unwrap().push(req.command.clone());
            assert!(!req.operator.is_empty());
            let reply = if req.command.name() == refuse {
                Err(Refusal {
                    command: req.command.to_string(),
                    reason: "payments has no approval gate waiting".into(),
                })
            } else {
                Ok("accepted".to_string())
            };
            if let Some(tx) = req.reply {
                let _ = tx.send(reply);
            }
        }
        drop(ev_tx);
    });
    let (in_tx, in_rx) = mpsc::unbounded_channel::<std::io::Result<TermEvent>>();
    let input = Box::pin(futures_util::stream::unfold(in_rx, |mut rx| async move {
        rx.recv().await.map(|e| (e, rx))
    }));
    tokio::spawn(async move {
        for k in keys {
            if in_tx.send(Ok(k)).is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        // Keep the input open until the loop ends.
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let mut app = App::new(
        s.state(),
        Keymap::shipped("default").unwrap(),
        Theme::shipped("dark").unwrap(),
        Settings {
            operator: "alice".into(),
            environment: Some("staging".into()),
            read_only,
            mouse: false,
        },
    )
    .with_plan(Some(s.plan.clone()));
    let mut terminal = Terminal::new(TestBackend::new(140, 42)).unwrap();
    let clock = Arc::new(FakeClock::new(s.now));
    let link = EngineLink {
        commands: cmd_tx,
        events: ev_rx,
        state: state_rx,
        telemetry: None,
        presence: None,
        connection: None,
        engine_stopped: None,
    };
    tokio::time::timeout(
        Duration::from_secs(20),
        run_loop(
            &mut terminal,
            &mut app,
            link,
            input,
            clock,
            Duration::from_millis(50),
            &mut NoTerminalControl,
        ),
    )
    .await
    .expect("the console quits")
    .unwrap();
    let screen = terminal.backend().to_string();
    let messages = app.messages.clone();
    drop(app);
    let _ = tokio::time::timeout(Duration::from_millis(100), engine).await;
    let sent = sent.lock().unwrap().clone();
    Run {
        sent,
        screen,
        messages,
    }
}

fn svc(s: &str) -> String {
    s.to_string()
}

#[tokio::test]
async fn keys_become_exactly_the_commands_expected() {
    let mut keys = vec![
        code(KeyCode::Down), // ledger -> payments
        key('r'),            // rollback: one key, immediate
        key('N'),            // promote-all asks...
        code(KeyCode::Esc),  // ...and Esc backs out: nothing sent
        key('N'),
        key('y'), // confirmed: sent
        key(':'),
    ];
    keys.extend(typed("rollback inventory"));
    keys.push(code(KeyCode::Enter));
    keys.push(key(':'));
    keys.extend(typed("promote nosuch"));
    keys.push(code(KeyCode::Enter)); // unknown service: not sent
    keys.push(key('A')); // abort asks
    keys.push(code(KeyCode::Enter)); // Enter is cancel
    keys.push(key('q')); // release running: asks
    keys.push(key('p')); // pause and quit
    let run = drive(keys, false, "").await;
    assert_eq!(
        run.sent,
        vec![
            Command::Rollback {
                service: Some(svc("payments"))
            },
            Command::PromoteAll {
                service: svc("payments")
            },
            Command::Rollback {
                service: Some(svc("inventory"))
            },
            Command::Pause { service: None },
        ]
    );
}

#[tokio::test]
async fn refusals_are_shown() {
    let keys = vec![code(KeyCode::Down), key('a'), key('m')];
    // `m` toggles the mouse: only here so a later frame is drawn after the reply.
    let mut keys = keys;
    keys.push(key('?'));
    keys.push(code(KeyCode::Esc));
    keys.push(key('A'));
    keys.push(key('y'));
    keys.push(key('q'));
    keys.push(key('c')); // cancel quitting
    keys.push(key('q'));
    keys.push(key('r')); // roll back everything and quit
    let run = drive(keys, false, "approve").await;
    assert_eq!(
        run.sent,
        vec![
            Command::Approve {
                service: svc("payments")
            },
            Command::Abort,
            Command::Rollback { service: None },
        ]
    );
    assert!(
        run.messages
            .iter()
            .any(|m| m == "approve payments refused: payments has no approval gate waiting"),
        "{:?}",
        run.messages
    );
}

#[tokio::test]
async fn read_only_sends_nothing_and_says_why() {
    let mut keys = vec![
        code(KeyCode::Down),
        key('r'),
        key('R'),
        key('N'),
        key('y'),
        key(':'),
    ];
    keys.extend(typed("rollback payments"));
    keys.push(code(KeyCode::Enter));
    keys.push(key('q')); // read-only: quits without asking
    let run = drive(keys, true, "").await;
    assert!(run.sent.is_empty(), "{:?}", run.sent);
    assert!(
        run.messages
            .iter()
            .any(|m| m.contains("read-only: `rollback` is not available")),
        "{:?}",
        run.messages
    );
    assert!(run.screen.contains("READ-ONLY"), "{}", run.screen);
    assert!(
        run.screen
            .contains("read-only: `rollback payments` is not available"),
        "{}",
        run.screen
    );
}

/// Mid-release, `q` asks; "keep running in the background" (`b`) is offered only when the
/// console shares its release (it needs the control socket to come back), and then says
/// how to attach.
#[test]
fn the_quit_dialog_offers_the_background_only_when_the_release_is_shared() {
    use cutover::console::app::{Effect, Overlay, QuitChoice};
    let s = fixtures::scenario("canary-analysing");
    let press =
        |app: &mut App, c: char| app.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
    let new_app = || {
        App::new(
            s.state(),
            Keymap::shipped("default").unwrap(),
            Theme::shipped("dark").unwrap(),
            Settings {
                operator: "alice".into(),
                ..Default::default()
            },
        )
    };
    // Not shared: `b` does nothing, the dialog stays.
    let mut app = new_app();
    assert!(press(&mut app, 'q').is_empty());
    assert_eq!(app.overlay, Overlay::Quit);
    assert!(press(&mut app, 'b').is_empty());
    assert_eq!(app.overlay, Overlay::Quit);
    assert_eq!(app.quit_choice, QuitChoice::Plain);
    // Shared: the dialog names the way back, and `b` quits choosing the background.
    let mut app = new_app();
    app.share = Some("cutover attach --state-dir /srv/state".into());
    press(&mut app, 'q');
    let mut terminal = Terminal::new(TestBackend::new(140, 42)).unwrap();
    terminal.draw(|f| app.render(f)).unwrap();
    let screen = terminal.backend().to_string();
    assert!(
        screen.contains("keep running in the background"),
        "{screen}"
    );
    assert!(
        screen.contains("cutover attach --state-dir /srv/state"),
        "{screen}"
    );
    assert_eq!(press(&mut app, 'b'), vec![Effect::Quit]);
    assert_eq!(app.quit_choice, QuitChoice::Background);
    assert_eq!(app.overlay, Overlay::None);
}
