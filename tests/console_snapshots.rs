//! Snapshots of the console, rendered into ratatui's `TestBackend` from states folded
//! out of scripted engine events (`cutover::console::fixtures`).

use std::sync::Arc;

use cutover::console::app::{App, Overlay, Pane, Settings};
use cutover::console::fixtures::{self, Script};
use cutover::console::keymap::Keymap;
use cutover::console::theme::Theme;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn app_for(s: &Script, scenario: &str, theme: &str, select: Option<&str>) -> App {
    let mut app = App::new(
        s.state(),
        Keymap::shipped("default").unwrap(),
        Theme::shipped(theme).unwrap(),
        Settings {
            operator: "alice".into(),
            environment: s.release.release.environment.clone(),
            read_only: false,
            mouse: false,
        },
    )
    .with_plan(Some(s.plan.clone()));
    app.set_telemetry(Arc::new(fixtures::telemetry(scenario, s.now)));
    app.set_now(s.now);
    if let Some(n) = select {
        app.selected = Some(n.to_string());
    }
    app
}

fn draw(app: &mut App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| app.render(f)).unwrap();
    t
}

fn snap(scenario: &str, select: Option<&str>) -> Terminal<TestBackend> {
    let s = fixtures::scenario(scenario);
    let mut app = app_for(&s, scenario, "dark", select);
    draw(&mut app, 140, 42)
}

#[test]
fn pending() {
    let t = snap("pending", None);
    let text = t.backend().to_string();
    assert!(text.contains("○ ledger"), "{text}");
    assert!(text.contains("PENDING"));
    insta::assert_snapshot!(t.backend());
}

#[test]
fn canary_at_25_percent_analysing() {
    let t = snap("canary-analysing", Some("payments"));
    let text = t.backend().to_string();
    assert!(text.contains("ANALYSING"), "{text}");
    assert!(text.contains("v1 75% · v2 25%"), "{text}");
    insta::assert_snapshot!(t.backend());
}

#[test]
fn paused_at_a_gate_with_countdown() {
    let t = snap("gate", Some("payments"));
    let text = t.backend().to_string();
    assert!(text.contains("APPROVAL"), "{text}");
    // A 10 min gate opened 2m29s ago (inventory steps 15 s, then 134 s).
    assert!(text.contains("7m31s left"), "{text}");
    insta::assert_snapshot!(t.backend());
}

#[test]
fn failed_with_the_judges_explanation() {
    let t = snap("failed", Some("payments"));
    let text = t.backend().to_string();
    assert!(text.contains("✖ FAIL"), "{text}");
    assert!(text.contains("ratio 13× > 1.25×"), "{text}");
    assert!(text.contains("ROLLING BACK"), "{text}");
    insta::assert_snapshot!(t.backend());
}

#[test]
fn rolled_back() {
    let t = snap("rolled-back", Some("payments"));
    let text = t.backend().to_string();
    assert!(text.contains("ROLLED BACK"), "{text}");
    assert!(text.contains("SKIPPED"), "{text}");
    insta::assert_snapshot!(t.backend());
}

#[test]
fn all_promoted() {
    let t = snap("promoted", Some("gateway"));
    let text = t.backend().to_string();
    assert!(text.contains("6/6 promoted"), "{text}");
    assert!(text.contains("FINISHED"), "{text}");
    insta::assert_snapshot!(t.backend());
}

#[test]
fn two_hundred_services() {
    let s = fixtures::big_scenario(200);
    let mut app = app_for(&s, "canary-analysing", "dark", Some("svc-025"));
    let t = draw(&mut app, 140, 42);
    let text = t.backend().to_string();
    assert!(text.contains("20/200 promoted"), "{text}");
    assert!(text.contains("PRODUCTION"), "{text}");
    insta::assert_snapshot!(t.backend());
}

#[test]
fn narrow_terminal() {
    let s = fixtures::scenario("canary-analysing");
    let mut app = app_for(&s, "canary-analysing", "dark", Some("payments"));
    let t = draw(&mut app, 80, 40);
    insta::assert_snapshot!(t.backend());
}

#[test]
fn too_small_terminal() {
    let s = fixtures::scenario("canary-analysing");
    let mut app = app_for(&s, "canary-analysing", "dark", None);
    let t = draw(&mut app, 50, 12);
    assert!(t.backend().to_string().contains("terminal too small"));
    insta::assert_snapshot!(t.backend());
    // No size makes it panic.
    for (w, h) in [
        (0, 0),
        (1, 1),
        (2, 2),
        (59, 16),
        (60, 15),
        (60, 16),
        (200, 60),
    ] {
        draw(&mut app, w, h);
    }
}

#[test]
fn mono_theme_keeps_bold_and_reverse() {
    let s = fixtures::scenario("failed");
    let mut app = app_for(&s, "failed", "mono", Some("payments"));
    let t = draw(&mut app, 110, 30);
    let buf = t.backend().buffer().clone();
    // No colour anywhere.
    for c in buf.content() {
        assert_eq!(c.fg, ratatui::style::Color::Reset, "{c:?}");
        assert_eq!(c.bg, ratatui::style::Color::Reset, "{c:?}");
    }
    insta::assert_debug_snapshot!(buf);
}

#[test]
fn overlays_help_palette_confirm_quit() {
    let s = fixtures::scenario("canary-analysing");
    let mut app = app_for(&s, "canary-analysing", "dark", Some("payments"));
    app.overlay = Overlay::Help { scroll: 0 };
    insta::assert_snapshot!("help", draw(&mut app, 120, 40).backend());
    app.overlay = Overlay::Palette {
        input: "roll".into(),
        selected: 0,
    };
    insta::assert_snapshot!("palette", draw(&mut app, 120, 40).backend());
    app.overlay = Overlay::None;
    app.dispatch(cutover::console::action::Action::PromoteAll);
    let t = draw(&mut app, 120, 40);
    assert!(
        t.backend()
            .to_string()
            .contains("Promote all of payments in staging?")
    );
    insta::assert_snapshot!("confirm_promote_all", t.backend());
    app.overlay = Overlay::Quit;
    insta::assert_snapshot!("quit", draw(&mut app, 120, 40).backend());
}

#[test]
fn migration_waits_for_contract_confirmation() {
    let s = fixtures::scenario("contract-awaiting");
    let mut app = app_for(&s, "contract-awaiting", "dark", Some("orders"));
    let t = draw(&mut app, 140, 42);
    let text = t.backend().to_string();
    // The tree's database node and the timeline's row both show the stage.
    assert!(
        text.contains("⛁ DB orders-split-address ? contract: awaiting"),
        "{text}"
    );
    assert!(text.contains("▲━"), "{text}");
    insta::assert_snapshot!("migration_contract_awaiting", t.backend());
    // `C` opens the dialog naming the migration; `y` sends `contract NAME`.
    app.dispatch(cutover::console::action::Action::Contract);
    let t = draw(&mut app, 140, 42);
    let text = t.backend().to_string();
    assert!(
        text.contains("Contract migration orders-split-address in staging?"),
        "{text}"
    );
    insta::assert_snapshot!("migration_contract_dialog", t.backend());
    let fx = app.on_key(crossterm::event::KeyEvent::from(
        crossterm::event::KeyCode::Char('y'),
    ));
    assert!(
        fx.iter().any(|e| matches!(
            e,
            cutover::console::app::Effect::Send(cutover::engine::Command::Contract { migration })
                if migration == "orders-split-address"
        )),
        "{fx:?}"
    );
}

#[test]
fn migration_refused_by_lint() {
    let t = snap("lint-refused", None);
    let text = t.backend().to_string();
    assert!(
        text.contains("⛁ DB orders-split-address ✖ FAILED"),
        "{text}"
    );
    assert!(text.contains("SKIPPED"), "{text}");
    insta::assert_snapshot!("migration_lint_refused", t.backend());
}

#[test]
fn zoomed_health_pane() {
    let s = fixtures::scenario("failed");
    let mut app = app_for(&s, "failed", "dark", Some("payments"));
    app.focus = Pane::Health;
    app.zoom = true;
    insta::assert_snapshot!(draw(&mut app, 120, 36).backend());
}

#[test]
fn broken_user_config_is_shown_and_defaults_used() {
    let dirs = cutover::console::config::Dirs {
        config: std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/console/bad"
        )),
        state: std::env::temp_dir(),
    };
    let loaded = cutover::console::config::load(
        &dirs,
        &cutover::console::config::Choice {
            theme: Some("broken".into()),
            ..Default::default()
        },
    );
    // Defaults stand in: the shipped keymap still binds rollback to `r`.
    let r = cutover::console::keymap::Key::parse("r").unwrap();
    assert_eq!(
        loaded
            .keymap
            .resolve(cutover::console::keymap::Context::Tree, &r),
        Some(cutover::console::action::Action::Rollback)
    );
    assert_eq!(loaded.theme, Theme::shipped("dark").unwrap());
    let s = fixtures::scenario("canary-analysing");
    let mut app = app_for(&s, "canary-analysing", "dark", Some("payments"));
    app.config_errors = loaded
        .errors
        .iter()
        .map(|e| e.to_string().replace(env!("CARGO_MANIFEST_DIR"), "."))
        .collect();
    let t = draw(&mut app, 140, 42);
    let text = t.backend().to_string();
    assert!(
        text.contains("./tests/fixtures/console/bad/keymap.toml:3: unknown action `explode`"),
        "{text}"
    );
    insta::assert_snapshot!(t.backend());
}

#[test]
fn log_filter_and_service_output_toggle() {
    use cutover::console::run::{LogLine, remember};
    for (target, msg) in [
        ("engine", "payments: step 6/11: analyse for 2m at 25%"),
        ("service", "payments v2: GET /api/pay 500 (injected fault)"),
        (
            "engine",
            "payments: rolling back by alice: operator rollback",
        ),
        (
            "service",
            "payments v1: rolling back nothing, just a log line",
        ),
    ] {
        remember(LogLine {
            at: "03:10:00".into(),
            level: tracing::Level::INFO,
            target: target.into(),
            message: msg.into(),
        });
    }
    let s = fixtures::scenario("canary-analysing");
    let mut app = app_for(&s, "canary-analysing", "dark", Some("payments"));
    app.log_filter = "rolling back".into();
    let text = draw(&mut app, 140, 42).backend().to_string();
    assert!(text.contains("Log · filter \"rolling back\""), "{text}");
    assert!(text.contains("payments: rolling back by alice"), "{text}");
    assert!(text.contains("payments v1: rolling back nothing"), "{text}");
    assert!(!text.contains("analyse for 2m at 25%  "), "{text}");
    app.dispatch(cutover::console::action::Action::LogToggleService);
    let text = draw(&mut app, 140, 42).backend().to_string();
    assert!(text.contains("service output hidden"), "{text}");
    assert!(text.contains("payments: rolling back by alice"), "{text}");
    assert!(
        !text.contains("payments v1: rolling back nothing"),
        "{text}"
    );
    app.log_filter = "target:service".into();
    app.dispatch(cutover::console::action::Action::LogToggleService);
    let text = draw(&mut app, 140, 42).backend().to_string();
    assert!(text.contains("GET /api/pay 500"), "{text}");
    assert!(!text.contains("rolling back by alice"), "{text}");
}

#[test]
fn an_attached_console_shows_the_environment_the_engine_reports() {
    // `cutover attach` has no release file: its settings name no environment, and the
    // banner comes from the engine's state (the release said `production`).
    let s = fixtures::big_scenario(3);
    let state = s.state();
    assert_eq!(state.environment.as_deref(), Some("production"));
    let settings = Settings {
        operator: "bob".into(),
        environment: None,
        read_only: false,
        mouse: false,
    };
    let mut app = App::new(
        cutover::engine::ReleaseState::empty(),
        Keymap::shipped("default").unwrap(),
        Theme::shipped("dark").unwrap(),
        settings,
    );
    app.set_state(state);
    let t = draw(&mut app, 140, 42);
    let top: String = (0..140)
        .map(|x| t.backend().buffer()[(x, 0)].symbol().to_string())
        .collect();
    assert!(top.contains("PRODUCTION"), "{top}");
    assert!(!top.contains("NO ENVIRONMENT"), "{top}");
}

#[test]
fn a_remote_console_that_lost_its_server_says_so_until_it_is_back() {
    let s = fixtures::scenario("canary-analysing");
    let mut app = app_for(&s, "canary-analysing", "dark", None);
    app.set_connection(Some("the server closed the stream; reconnecting".into()));
    let top = |t: &Terminal<TestBackend>| -> String {
        (0..200)
            .map(|x| t.backend().buffer()[(x, 0)].symbol().to_string())
            .collect()
    };
    let t = draw(&mut app, 200, 42);
    assert!(
        top(&t).contains("DISCONNECTED, state may be stale"),
        "{}",
        top(&t)
    );
    assert_eq!(app.toast.as_ref().map(|t| t.error), Some(true));
    app.set_connection(None);
    let t = draw(&mut app, 200, 42);
    assert!(!top(&t).contains("DISCONNECTED"), "{}", top(&t));
}

#[test]
fn a_remote_console_that_followed_its_run_to_a_standby_says_who_serves_it() {
    use cutover::console::LinkStatus;
    let s = fixtures::scenario("canary-analysing");
    let mut app = app_for(&s, "canary-analysing", "dark", None);
    let top = |t: &Terminal<TestBackend>| -> String {
        (0..200)
            .map(|x| t.backend().buffer()[(x, 0)].symbol().to_string())
            .collect()
    };
    app.set_link(LinkStatus {
        lost: Some("the server closed the stream; reconnecting".into()),
        served_by: None,
    });
    let t = draw(&mut app, 200, 42);
    assert!(top(&t).contains("DISCONNECTED"), "{}", top(&t));
    // Back, at another engine: a leader change, said once, and who serves it stays shown.
    app.set_link(LinkStatus {
        lost: None,
        served_by: Some("http://10.0.0.7:7070 (epoch 2)".into()),
    });
    let t = draw(&mut app, 200, 42);
    assert!(!top(&t).contains("DISCONNECTED"), "{}", top(&t));
    assert!(
        top(&t).contains("served by http://10.0.0.7:7070 (epoch 2)"),
        "{}",
        top(&t)
    );
    let said = "leader changed: now served by http://10.0.0.7:7070 (epoch 2)";
    assert_eq!(app.toast.as_ref().map(|t| t.text.as_str()), Some(said));
    assert_eq!(app.toast.as_ref().map(|t| t.error), Some(false));
    assert_eq!(app.messages.iter().filter(|m| *m == said).count(), 1);
    // The same engine again after a blip: only "reconnected".
    app.set_link(LinkStatus {
        lost: Some("the server closed the stream; reconnecting".into()),
        served_by: Some("http://10.0.0.7:7070 (epoch 2)".into()),
    });
    app.set_link(LinkStatus {
        lost: None,
        served_by: Some("http://10.0.0.7:7070 (epoch 2)".into()),
    });
    assert_eq!(
        app.toast.as_ref().map(|t| t.text.as_str()),
        Some("reconnected to the server")
    );
    assert_eq!(app.messages.iter().filter(|m| *m == said).count(), 1);
}

#[test]
fn an_attached_console_without_a_plan_still_shows_the_migration() {
    // `cutover attach` has no release file and so no plan: the database node and the
    // timeline row come from what the engine reported.
    let s = fixtures::scenario("contract-awaiting");
    let state = s.state();
    assert!(!state.migrations.is_empty());
    let mut app = App::new(
        cutover::engine::ReleaseState::empty(),
        Keymap::shipped("default").unwrap(),
        Theme::shipped("dark").unwrap(),
        Settings {
            operator: "bob".into(),
            environment: None,
            read_only: false,
            mouse: false,
        },
    );
    app.set_state(state);
    let t = draw(&mut app, 160, 42);
    let buf = t.backend().buffer();
    let text: String = (0..42)
        .map(|y| {
            (0..160)
                .map(|x| buf[(x, y)].symbol().to_string())
                .collect::<String>()
                + "\n"
        })
        .collect();
    assert!(text.contains("⛁ DB orders-split-address"), "{text}");
    assert!(text.contains("⛁ orders-split-ad"), "timeline row: {text}");
    assert!(text.contains("contract: awaiting confirm"), "{text}");
}

#[test]
fn break_glass_deploy_is_shown_in_the_banner() {
    let mut s = fixtures::scenario("canary-analysing");
    if let cutover::engine::EventKind::ReleaseLoaded { break_glass, .. } = &mut s.events[0].kind {
        *break_glass = Some(Box::new(cutover::engine::BreakGlass {
            operator: "alice".into(),
            reason: "INC-4711 hotfix".into(),
            skipped: vec!["staging".into()],
        }));
    }
    let mut app = app_for(&s, "canary-analysing", "dark", None);
    let t = draw(&mut app, 160, 42);
    let text = t.backend().to_string();
    assert!(
        text.contains("BREAK-GLASS: alice skipped \"requires staging\": INC-4711 hotfix"),
        "{text}"
    );
    insta::assert_snapshot!(t.backend());
}

#[test]
fn a_gate_under_a_policy_shows_who_may_answer_and_a_freeze_is_in_the_banner() {
    let mut s = fixtures::scenario("gate");
    if let cutover::engine::EventKind::ReleaseLoaded { change_control, .. } = &mut s.events[0].kind
    {
        *change_control = Some(Box::new(cutover::policy::ChangeControl {
            roster: cutover::policy::Roster {
                groups: [(
                    "sre".to_string(),
                    vec!["bob".to_string(), "carol".to_string()],
                )]
                .into(),
            },
            approval: Some(cutover::policy::ApprovalRule {
                approvers: vec!["group:sre".into()],
                required: 2,
                four_eyes: true,
                within: vec![],
            }),
            ..Default::default()
        }));
    }
    let at = s.now;
    s.events.push(cutover::engine::Event {
        seq: s.events.len() as u64 + 1,
        at_ms: at,
        kind: cutover::engine::EventKind::FreezeHeld {
            window: "weekend".into(),
            until_ms: at + 3_600_000,
            until: "2026-12-07 10:00 CET (2026-12-07 09:00 UTC)".into(),
        },
    });
    let mut app = app_for(&s, "gate", "dark", Some("payments"));
    let t = draw(&mut app, 200, 42);
    let text = t.backend().to_string();
    assert!(
        text.contains("approvers: 0/2 approved; needs 2 of group:sre (bob, carol), not the person who started it"),
        "{text}"
    );
    assert!(
        text.contains("FROZEN: window weekend until 2026-12-07 10:00 CET (2026-12-07 09:00 UTC)"),
        "{text}"
    );
}

#[test]
fn the_change_ticket_is_shown_in_the_banner() {
    let mut s = fixtures::scenario("canary-analysing");
    if let cutover::engine::EventKind::ReleaseLoaded { change, .. } = &mut s.events[0].kind {
        *change = Some("CHG-1234".into());
    }
    let mut app = app_for(&s, "canary-analysing", "dark", None);
    let t = draw(&mut app, 160, 42);
    let text = t.backend().to_string();
    let top = text.lines().take(2).collect::<Vec<_>>().join("\n");
    assert!(top.contains("change CHG-1234"), "{text}");
}
