//! The console's fleet view (a release with tenants in rings): snapshots of the tree of
//! rings → tenants → services mid-release, collapsed, expanded and filtered, rendered
//! into ratatui's `TestBackend` from scripted engine events
//! (`cutover::console::fixtures_fleet`), and its keys: per-tenant commands, the reason
//! of `exclude` reaching the engine through the real event loop.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use cutover::console::app::{App, Effect, Overlay, Settings};
use cutover::console::fixtures::{self, Script};
use cutover::console::fixtures_fleet::{big_fleet, fleet_scenario};
use cutover::console::fleet_tree::FleetNode;
use cutover::console::keymap::Keymap;
use cutover::console::run::{EngineLink, NoTerminalControl, run_loop};
use cutover::console::theme::Theme;
use cutover::engine::{Command, CommandRequest, FakeClock};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tokio::sync::{broadcast, mpsc, watch};

fn app_for(s: &Script) -> App {
    let mut app = App::new(
        s.state(),
        Keymap::shipped("default").unwrap(),
        Theme::shipped("dark").unwrap(),
        Settings {
            operator: "alice".into(),
            environment: s.release.release.environment.clone(),
            read_only: false,
            mouse: false,
        },
    )
    .with_plan(Some(s.plan.clone()));
    app.set_telemetry(Arc::new(fixtures::telemetry("canary-analysing", s.now)));
    app.set_now(s.now);
    app
}

fn draw(app: &mut App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| app.render(f)).unwrap();
    t.backend().to_string()
}

fn press(app: &mut App, code: KeyCode, mods: KeyModifiers) -> Vec<Effect> {
    app.on_key(KeyEvent::new(code, mods))
}

fn ch(app: &mut App, c: char) -> Vec<Effect> {
    press(app, KeyCode::Char(c), KeyModifiers::NONE)
}

fn ctrl(app: &mut App, c: char) -> Vec<Effect> {
    press(app, KeyCode::Char(c), KeyModifiers::CONTROL)
}

fn tenant_index(app: &App, name: &str) -> usize {
    let f = app.state.fleet.as_ref().expect("a fleet");
    f.tenants.iter().position(|t| t.name == name).unwrap()
}

/// Move the cursor with ↓/↑ until it is on `node`.
fn select(app: &mut App, node: FleetNode) {
    let rows = &app.fleet.as_ref().unwrap().rows;
    let want = rows
        .iter()
        .position(|r| r.node == node)
        .expect("node shown");
    let cur = app.fleet.as_ref().unwrap().cursor;
    let key = if want >= cur {
        KeyCode::Down
    } else {
        KeyCode::Up
    };
    for _ in 0..want.abs_diff(cur) {
        press(app, key, KeyModifiers::NONE);
    }
    assert_eq!(app.fleet.as_ref().unwrap().selected(), Some(node));
}

fn select_tenant(app: &mut App, name: &str) {
    let t = tenant_index(app, name);
    select(app, FleetNode::Tenant(t));
}

#[test]
fn fleet_mid_release_one_ring_done_one_baking() {
    let s = fleet_scenario("baking");
    let mut app = app_for(&s);
    select_tenant(&mut app, "dyna");
    let text = draw(&mut app, 140, 42);
    assert!(text.contains("1 of 2 failures used"), "{text}");
    assert!(
        text.contains("ring main baking · bake 7m12s left"),
        "{text}"
    );
    assert!(text.contains("▾ ● ring early done"), "{text}");
    assert!(text.contains("⟲ dyna"), "{text}");
    assert!(text.contains("⊘ echo"), "{text}");
    assert!(text.contains("excluded by alice: customer"), "{text}");
    assert!(text.contains("‖ gala"), "{text}");
    // The detail pane: the failed tenant's reason, its budget count and its flags.
    assert!(text.contains(" Tenant: dyna "), "{text}");
    assert!(
        text.contains("counted against the failure budget"),
        "{text}"
    );
    assert!(text.contains("not written to flags.json"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn fleet_tenant_awaiting_approval_and_its_keys() {
    let s = fleet_scenario("approval");
    let mut app = app_for(&s);
    select_tenant(&mut app, "hive");
    let text = draw(&mut app, 140, 42);
    assert!(text.contains("awaiting approval"), "{text}");
    // Its gate opened 4m12s ago with a 30 min timeout.
    assert!(text.contains("25m48s left"), "{text}");
    assert!(
        text.contains("approval gate open: 0 approved; 25m48s left"),
        "{text}"
    );
    assert!(
        text.contains("ring late running · 0/2 done, 1 in flight (max 2)"),
        "{text}"
    );
    insta::assert_snapshot!(text);
    // The per-tenant keys send the ordinary commands, naming the tenant.
    let send = |c: Command| vec![Effect::Send(c)];
    let hive = || "hive".to_string();
    assert_eq!(
        ctrl(&mut app, 'a'),
        send(Command::Approve { service: hive() })
    );
    assert_eq!(
        ctrl(&mut app, 'x'),
        send(Command::Reject { service: hive() })
    );
    assert_eq!(
        ctrl(&mut app, 'r'),
        send(Command::Rollback {
            service: Some(hive())
        })
    );
    assert_eq!(
        ctrl(&mut app, 't'),
        send(Command::Retry { service: hive() })
    );
    assert_eq!(
        ctrl(&mut app, 'p'),
        send(Command::Pause {
            service: Some(hive())
        })
    );
    // On a service, they act on its tenant: gala's api, gala paused → resume? No: gala
    // was resumed, so pause.
    let gala = tenant_index(&app, "gala");
    select(&mut app, FleetNode::Tenant(gala));
    ch(&mut app, ' ');
    let api = app.fleet.as_ref().unwrap().services[gala][0];
    select(
        &mut app,
        FleetNode::Service {
            tenant: gala,
            index: api,
        },
    );
    assert_eq!(app.selected.as_deref(), Some("gala/api"));
    assert_eq!(
        ctrl(&mut app, 'p'),
        send(Command::Pause {
            service: Some("gala".into())
        })
    );
    // The service keys still act on the service.
    assert_eq!(
        ch(&mut app, 'r'),
        send(Command::Rollback {
            service: Some("gala/api".into())
        })
    );
    // On a ring, a tenant key asks for a tenant.
    select(&mut app, FleetNode::Ring(0));
    assert!(ctrl(&mut app, 'r').is_empty());
    assert!(
        app.toast
            .as_ref()
            .is_some_and(|t| t.error && t.text.contains("select a tenant")),
        "{:?}",
        app.toast
    );
}

#[test]
fn a_paused_tenant_key_resumes_it() {
    let s = fleet_scenario("baking");
    let mut app = app_for(&s);
    select_tenant(&mut app, "gala");
    assert_eq!(
        ctrl(&mut app, 'p'),
        vec![Effect::Send(Command::Resume {
            service: Some("gala".into())
        })]
    );
}

#[test]
fn fleet_collapsed_and_expanded() {
    let s = fleet_scenario("baking");
    let mut app = app_for(&s);
    // Everything collapsed: the rings only.
    ch(&mut app, 'c');
    let collapsed = draw(&mut app, 140, 42);
    assert!(collapsed.contains("▸ ● ring early"), "{collapsed}");
    assert!(collapsed.contains("▸ ○ ring late"), "{collapsed}");
    assert!(!collapsed.contains("acme"), "{collapsed}");
    insta::assert_snapshot!("fleet_collapsed", collapsed);
    // Expand all, then select acme's web: its health pane, the timeline of acme.
    ch(&mut app, 'c');
    let acme = tenant_index(&app, "acme");
    let web = app.fleet.as_ref().unwrap().services[acme][1];
    select(
        &mut app,
        FleetNode::Service {
            tenant: acme,
            index: web,
        },
    );
    let expanded = draw(&mut app, 140, 42);
    assert!(expanded.contains("▾ ● ring early"), "{expanded}");
    assert!(expanded.contains("├─● web"), "{expanded}");
    assert!(expanded.contains("Health: acme/web"), "{expanded}");
    assert!(expanded.contains("acme/worker"), "{expanded}");
    assert!(
        !expanded.contains("corp/api  "),
        "timeline: acme only\n{expanded}"
    );
    insta::assert_snapshot!("fleet_expanded_service_selected", expanded);
    // Space on a service closes its tenant; the cursor goes to the tenant.
    ch(&mut app, ' ');
    assert_eq!(
        app.fleet.as_ref().unwrap().selected(),
        Some(FleetNode::Tenant(acme))
    );
    assert_eq!(app.selected, None);
}

#[test]
fn fleet_filtered_by_tag_then_cleared() {
    let s = fleet_scenario("baking");
    let mut app = app_for(&s);
    // `/` in the tree filters tenants (not the log).
    assert!(ch(&mut app, '/').is_empty());
    assert_eq!(app.overlay, Overlay::TenantFilter);
    for c in "tag:region/us".chars() {
        ch(&mut app, c);
    }
    let typing = draw(&mut app, 140, 42);
    assert!(
        typing.contains("tenant filter (name or tag:TAG): tag:region/us▏"),
        "{typing}"
    );
    press(&mut app, KeyCode::Enter, KeyModifiers::NONE);
    let text = draw(&mut app, 140, 42);
    assert!(text.contains("filter \"tag:region/us\""), "{text}");
    for shown in ["bolt", "dyna", "fern", "hive"] {
        assert!(text.contains(shown), "{shown}\n{text}");
    }
    for hidden in ["acme", "corp", "echo", "gala"] {
        assert!(!text.contains(&format!(" {hidden} ")), "{hidden}\n{text}");
    }
    insta::assert_snapshot!(text);
    // By name; then Esc clears it.
    ch(&mut app, '/');
    for _ in 0.."tag:region/us".len() {
        press(&mut app, KeyCode::Backspace, KeyModifiers::NONE);
    }
    ch(&mut app, 'E');
    ch(&mut app, 'c');
    let rows: Vec<FleetNode> = app
        .fleet
        .as_ref()
        .unwrap()
        .rows
        .iter()
        .map(|r| r.node)
        .collect();
    assert_eq!(
        rows,
        vec![
            FleetNode::Ring(1),
            FleetNode::Tenant(tenant_index(&app, "echo"))
        ]
    );
    press(&mut app, KeyCode::Esc, KeyModifiers::NONE);
    assert_eq!(app.overlay, Overlay::None);
    assert!(!app.fleet.as_ref().unwrap().filtering());
    assert_eq!(app.fleet.as_ref().unwrap().rows.len(), 3 + 8);
    // A filter kept with Enter is cleared by Esc too.
    ch(&mut app, '/');
    ch(&mut app, 'x');
    press(&mut app, KeyCode::Enter, KeyModifiers::NONE);
    assert!(app.fleet.as_ref().unwrap().rows.is_empty());
    assert!(draw(&mut app, 140, 42).contains("no tenant matches \"x\""));
    press(&mut app, KeyCode::Esc, KeyModifiers::NONE);
    assert_eq!(app.fleet.as_ref().unwrap().rows.len(), 3 + 8);
}

#[test]
fn exclude_asks_for_a_reason() {
    let s = fleet_scenario("baking");
    let mut app = app_for(&s);
    select_tenant(&mut app, "hive");
    assert!(ch(&mut app, 'E').is_empty());
    for c in "customer freeze".chars() {
        ch(&mut app, c);
    }
    let text = draw(&mut app, 140, 42);
    assert!(
        text.contains("Exclude tenant hive in production?"),
        "{text}"
    );
    assert!(text.contains("why: customer freeze▏"), "{text}");
    insta::assert_snapshot!(text);
    assert_eq!(
        press(&mut app, KeyCode::Enter, KeyModifiers::NONE),
        vec![Effect::SendWithNote {
            command: Command::Exclude {
                tenant: "hive".into()
            },
            note: "customer freeze".into()
        }]
    );
    // No reason, no command; Esc cancels.
    ch(&mut app, 'E');
    assert!(press(&mut app, KeyCode::Enter, KeyModifiers::NONE).is_empty());
    assert!(matches!(app.overlay, Overlay::Reason { .. }));
    assert!(press(&mut app, KeyCode::Esc, KeyModifiers::NONE).is_empty());
    assert_eq!(app.overlay, Overlay::None);
}

#[test]
fn typed_commands_may_name_a_tenant_and_exclude_asks_why() {
    let s = fleet_scenario("baking");
    let mut app = app_for(&s);
    assert_eq!(
        app.typed("rollback corp"),
        vec![Effect::Send(Command::Rollback {
            service: Some("corp".into())
        })]
    );
    assert!(app.typed("rollback nobody").is_empty());
    assert!(app.toast.as_ref().is_some_and(|t| t.error));
    assert!(app.typed("exclude corp").is_empty());
    assert_eq!(
        app.overlay,
        Overlay::Reason {
            command: Command::Exclude {
                tenant: "corp".into()
            },
            input: String::new()
        }
    );
}

#[test]
fn a_click_selects_the_row_under_it() {
    use crossterm::event::{MouseButton, MouseEvent, MouseEventKind};
    let s = fleet_scenario("baking");
    let mut app = app_for(&s);
    draw(&mut app, 140, 42);
    let tree = app.areas["tree"];
    // Inside the border: the budget line, the rings line, then the rows.
    let header = cutover::console::render_fleet::HEADER_ROWS as u16;
    app.on_mouse(MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: tree.x + 4,
        row: tree.y + 1 + header + 2,
        modifiers: KeyModifiers::NONE,
    });
    let bolt = tenant_index(&app, "bolt");
    assert_eq!(
        app.fleet.as_ref().unwrap().selected(),
        Some(FleetNode::Tenant(bolt))
    );
}

#[test]
fn five_hundred_tenants_scroll_keeps_the_selection_visible() {
    let s = big_fleet(500, 3, 4);
    let mut app = app_for(&s);
    assert_eq!(app.fleet.as_ref().unwrap().rows.len(), 4 + 500);
    press(&mut app, KeyCode::End, KeyModifiers::NONE);
    let text = draw(&mut app, 140, 42);
    assert!(text.contains("tenant-0499"), "{text}");
    assert!(text.contains("1 of 50 failures used"), "{text}");
    press(&mut app, KeyCode::PageUp, KeyModifiers::NONE);
    press(&mut app, KeyCode::PageUp, KeyModifiers::NONE);
    press(&mut app, KeyCode::PageUp, KeyModifiers::NONE);
    let text = draw(&mut app, 140, 42);
    assert!(text.contains("tenant-0469"), "{text}");
    assert!(!text.contains("tenant-0499"), "{text}");
    ch(&mut app, 'c');
    ch(&mut app, 'c');
    assert_eq!(app.fleet.as_ref().unwrap().rows.len(), 4 + 500 * 4);
    press(&mut app, KeyCode::Home, KeyModifiers::NONE);
    let text = draw(&mut app, 140, 42);
    assert!(text.contains("▾ ● ring r0"), "{text}");
}

#[test]
fn a_release_without_tenants_has_no_fleet_view() {
    let s = fixtures::scenario("canary-analysing");
    let mut app = app_for(&s);
    assert!(app.fleet.is_none());
    // `/` filters the log as before; the fleet keys say there are no tenants.
    ch(&mut app, '/');
    assert!(matches!(app.overlay, Overlay::Filter { .. }));
    press(&mut app, KeyCode::Esc, KeyModifiers::NONE);
    assert!(ctrl(&mut app, 'r').is_empty());
    assert!(
        app.toast
            .as_ref()
            .is_some_and(|t| t.text.contains("this release has no tenants"))
    );
    assert!(ch(&mut app, 'c').is_empty());
}

/// The reason typed for `exclude` reaches the engine with the command, through the real
/// event loop.
#[tokio::test]
async fn the_exclude_reason_reaches_the_engine() {
    let s = fleet_scenario("baking");
    let (cmd_tx, mut cmd_rx) = mpsc::channel::<CommandRequest>(16);
    let (_ev_tx, ev_rx) = broadcast::channel(64);
    let (_state_tx, state_rx) = watch::channel(s.state());
    let got = Arc::new(Mutex::new(Vec::new()));
    let rec = got.clone();
    let engine = tokio::spawn(async move {
        while let Some(req) = cmd_rx.recv().await {
            rec.lock()
                .unwrap()
                .push((req.command.clone(), req.note.clone()));
            if let Some(tx) = req.reply {
                let _ = tx.send(Ok("excluded".to_string()));
            }
        }
    });
    let mut app = app_for(&s);
    let hive = tenant_index(&app, "hive");
    let want = app
        .fleet
        .as_ref()
        .unwrap()
        .rows
        .iter()
        .position(|r| r.node == FleetNode::Tenant(hive))
        .unwrap();
    let mut keys: Vec<TermEvent> = (0..want)
        .map(|_| TermEvent::Key(KeyEvent::new(KeyCode::Down, KeyModifiers::NONE)))
        .collect();
    keys.push(TermEvent::Key(KeyEvent::new(
        KeyCode::Char('E'),
        KeyModifiers::NONE,
    )));
    keys.extend(
        "on hold"
            .chars()
            .map(|c| TermEvent::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))),
    );
    keys.push(TermEvent::Key(KeyEvent::new(
        KeyCode::Enter,
        KeyModifiers::NONE,
    )));
    let input = futures_util::stream::iter(keys.into_iter().map(Ok)).chain(
        futures_util::stream::once(async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok(TermEvent::Key(KeyEvent::new(
                KeyCode::Char('q'),
                KeyModifiers::NONE,
            )))
        }),
    );
    let link = EngineLink {
        commands: cmd_tx,
        events: ev_rx,
        state: state_rx,
        telemetry: None,
        presence: None,
        connection: None,
        engine_stopped: None,
    };
    let mut term = Terminal::new(TestBackend::new(140, 42)).unwrap();
    app.remote = true;
    run_loop(
        &mut term,
        &mut app,
        link,
        Box::pin(input),
        Arc::new(FakeClock::new(s.now)),
        Duration::from_millis(50),
        &mut NoTerminalControl,
    )
    .await
    .unwrap();
    engine.abort();
    assert_eq!(
        *got.lock().unwrap(),
        vec![(
            Command::Exclude {
                tenant: "hive".into()
            },
            Some("on hold".to_string())
        )]
    );
}

use futures_util::StreamExt;

#[test]
fn a_tenant_held_by_a_tenant_tag_freeze_window_says_which_window_and_how_long() {
    let s = fleet_scenario("baking");
    let mut app = app_for(&s);
    let hive = tenant_index(&app, "hive");
    let now = s.now;
    app.state.fleet.as_mut().unwrap().tenants[hive].frozen =
        Some(cutover::engine::state::TenantFreeze {
            window: "gold-weekend".into(),
            until_ms: now + 90 * 60 * 1000,
        });
    select_tenant(&mut app, "hive");
    let text = draw(&mut app, 140, 42);
    assert!(text.contains("◌ hive     frozen"), "{text}");
    assert!(text.contains("window gold-weekend · 1h30m left"), "{text}");
    assert!(
        text.contains("held by freeze window gold-weekend: starts once it closes, 1h30m left"),
        "{text}"
    );
}
