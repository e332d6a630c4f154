//! The console's state and its reaction to keys and engine events. No deployment rule
//! lives here: keys become [`Command`]s sent through the engine's one command channel
//! (as [`Effect::Send`]); what happens is whatever the engine then reports.

use std::collections::HashMap;
use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::Rect;
use tui_logger::{TuiWidgetEvent, TuiWidgetState};

use crate::engine::telemetry::Telemetry;
use crate::engine::{
    Command, Event, EventKind, MigrationPhase, ReleaseState, ReleaseStatus, ServiceStatus, describe,
};
use crate::plan::Plan;

use super::action::{ACTIONS, Action};
use super::keymap::{Context, Key, Keymap};
use super::theme::Theme;

/// The panes that take focus, in Tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pane {
    Tree,
    Health,
    Timeline,
    Log,
}

impl Pane {
    pub const ORDER: [Pane; 4] = [Pane::Tree, Pane::Health, Pane::Timeline, Pane::Log];
    pub fn context(self) -> Context {
        match self {
            Pane::Tree => Context::Tree,
            Pane::Health => Context::Health,
            Pane::Timeline => Context::Timeline,
            Pane::Log => Context::Log,
        }
    }
}

/// What sits on top of the panes.
#[derive(Debug, Clone, PartialEq)]
pub enum Overlay {
    None,
    Help {
        scroll: usize,
    },
    Palette {
        input: String,
        selected: usize,
    },
    /// A dangerous command waiting for `y`.
    Confirm {
        command: Command,
        question: String,
    },
    /// Quitting while the release runs: pause / roll back / cancel.
    Quit,
    /// Editing the log filter; `previous` comes back on Esc.
    Filter {
        previous: String,
    },
    /// Editing the fleet tree's tenant filter (Esc clears it).
    TenantFilter,
    /// A command that needs the operator's reason (`exclude TENANT`), being typed.
    Reason {
        command: Command,
        input: String,
    },
}

/// A message at the bottom of the screen.
#[derive(Debug, Clone, PartialEq)]
pub struct Toast {
    pub text: String,
    pub error: bool,
    pub at_ms: u64,
}

/// What the run loop must do after a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send this command through the engine's command channel.
    Send(Command),
    /// The same, with the operator's reason (journaled with the command).
    SendWithNote {
        command: Command,
        note: String,
    },
    Quit,
    Suspend,
    SetMouse(bool),
}

/// How the user left the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QuitChoice {
    /// Nothing in flight (or read-only): just quit.
    #[default]
    Plain,
    /// Mid-release: paused it first.
    Pause,
    /// Mid-release: rolled everything back first.
    RollBack,
    /// Mid-release: hand the release over to a background `cutover serve --resume` and
    /// leave it running there (only offered when the release is shared: [`App::share`]).
    Background,
}

/// Settings the console is started with.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub operator: String,
    /// `environment` of the release (`production` gets the loud banner).
    pub environment: Option<String>,
    pub read_only: bool,
    pub mouse: bool,
}

/// A row of the service tree.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeRow {
    /// Tree drawing before the node (`│ ├─`).
    pub prefix: String,
    pub node: Node,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// Index into `state.services`; `also` lists further dependencies.
    Service { index: usize, also: Vec<String> },
    /// Index into `plan.migrations`.
    Migration { index: usize },
}

pub struct App {
    pub state: ReleaseState,
    pub plan: Option<Arc<Plan>>,
    pub telemetry: Arc<Telemetry>,
    pub now_ms: u64,
    pub keymap: Keymap,
    pub theme: Theme,
    pub settings: Settings,
    /// Name of the selected service.
    pub selected: Option<String>,
    pub tree_offset: usize,
    pub focus: Pane,
    pub zoom: bool,
    pub overlay: Overlay,
    pub toast: Option<Toast>,
    /// Problems in the user's config files (shown until dismissed with Esc).
    pub config_errors: Vec<String>,
    pub log_filter: String,
    pub show_service_output: bool,
    pub log_state: TuiWidgetState,
    /// When each service's current step started (from `StepStarted` events).
    pub step_started: HashMap<String, u64>,
    /// Commands sent and not yet answered.
    pub in_flight: usize,
    /// Something changed since the last frame.
    pub dirty: bool,
    /// Areas of the last frame, for mouse clicks.
    pub areas: HashMap<&'static str, Rect>,
    pub tree_rows: Vec<TreeRow>,
    /// A release with tenants: rings → tenants → services (`fleet_tree.rs`); the tree
    /// pane, the selection and the keys go through it.
    pub fleet: Option<super::fleet_tree::FleetTree>,
    /// Every message shown, oldest first (the last 100).
    pub messages: Vec<String>,
    /// Who is attached to a served release (`cutover attach`); empty in-process.
    pub attached: Vec<String>,
    /// A remote console's lost connection (what it shows meanwhile is stale).
    pub connection_lost: Option<String>,
    /// After the release moved to another engine (a standby took the run over): where it
    /// is served now, for the status bar.
    pub served_by: Option<String>,
    /// The engine of this process stopped on an error: why, and what to do.
    pub engine_stopped: Option<String>,
    /// Attached to a served release: quitting only detaches (the release goes on in
    /// `cutover serve`), so there is nothing to confirm.
    pub remote: bool,
    /// In-process and shared over the control API: the command others run to attach
    /// (`cutover attach --state-dir D`). Also what the quit dialog's "keep running in the
    /// background" needs.
    pub share: Option<String>,
    pub quit_choice: QuitChoice,
}

impl App {
    pub fn new(state: ReleaseState, keymap: Keymap, theme: Theme, mut settings: Settings) -> App {
        if settings.environment.is_none() {
            settings.environment = state.environment.clone();
        }
        let mut app = App {
            state,
            plan: None,
            telemetry: Arc::new(Telemetry::default()),
            now_ms: 0,
            keymap,
            theme,
            settings,
            selected: None,
            tree_offset: 0,
            focus: Pane::Tree,
            zoom: false,
            overlay: Overlay::None,
            toast: None,
            config_errors: Vec::new(),
            log_filter: String::new(),
            show_service_output: true,
            log_state: TuiWidgetState::new(),
            step_started: HashMap::new(),
            in_flight: 0,
            dirty: true,
            areas: HashMap::new(),
            tree_rows: Vec::new(),
            fleet: None,
            messages: Vec::new(),
            attached: Vec::new(),
            connection_lost: None,
            served_by: None,
            engine_stopped: None,
            remote: false,
            share: None,
            quit_choice: QuitChoice::Plain,
        };
        app.rebuild_tree();
        app.sync_fleet();
        app.fleet_keep_selection();
        app
    }

    pub fn with_plan(mut self, plan: Option<Arc<Plan>>) -> App {
        self.plan = plan;
        self.rebuild_tree();
        self
    }

    /// A new state snapshot from the engine's watch.
    pub fn set_state(&mut self, state: ReleaseState) {
        let shape_changed = state.services.len() != self.state.services.len()
            || self.plan.is_none() && state.migrations.len() != self.state.migrations.len();
        // An attached console has no release file: the engine says which environment.
        if self.settings.environment.is_none() {
            self.settings.environment = state.environment.clone();
        }
        self.state = state;
        if shape_changed {
            self.rebuild_tree();
        }
        self.sync_fleet();
        self.keep_selection();
        self.dirty = true;
    }

    /// Who is attached (operator names, `(ro)` for read-only), for the status bar.
    /// The connection to the server was lost (`Some`, reconnecting) or is back (`None`).
    pub fn set_connection(&mut self, lost: Option<String>) {
        match (&self.connection_lost, &lost) {
            (None, Some(why)) => self.toast(format!("connection lost: {why}"), true),
            (Some(_), None) => self.toast("reconnected to the server".into(), false),
            _ => {}
        }
        self.connection_lost = lost;
        self.dirty = true;
    }

    /// The link's new status: lost or up, and who serves the release. Back up at another
    /// engine than before is a leader change, said in a message instead of "reconnected".
    pub fn set_link(&mut self, status: super::run::LinkStatus) {
        let moved = status.served_by.is_some() && status.served_by != self.served_by;
        self.served_by = status.served_by;
        match (moved, &status.lost, &self.served_by) {
            (true, None, Some(to)) => {
                let text = format!("leader changed: now served by {to}");
                tracing::info!(target: "console", "{text}");
                self.toast(text, false);
                self.connection_lost = None;
                self.dirty = true;
            }
            _ => self.set_connection(status.lost),
        }
    }

    /// The engine stopped on an error (`Some`): shown in the status bar until the console
    /// quits, since no command can be answered any more.
    pub fn set_engine_stopped(&mut self, why: Option<String>) {
        if let (None, Some(w)) = (&self.engine_stopped, &why) {
            self.toast(format!("engine stopped: {w}"), true);
        }
        self.engine_stopped = why;
        self.dirty = true;
    }

    pub fn set_attached(&mut self, names: Vec<String>) {
        if names != self.attached {
            self.attached = names;
            self.dirty = true;
        }
    }

    pub fn set_telemetry(&mut self, t: Arc<Telemetry>) {
        self.telemetry = t;
        self.dirty = true;
    }

    pub fn set_now(&mut self, now_ms: u64) {
        // Countdowns show whole seconds: redraw when the second changes.
        if now_ms / 1000 != self.now_ms / 1000 {
            self.dirty = true;
        }
        if let Some(t) = &self.toast
            && now_ms.saturating_sub(t.at_ms) > 8_000
        {
            self.toast = None;
            self.dirty = true;
        }
        self.now_ms = now_ms;
    }

    /// An engine event: folded into the state if newer than it, logged, and remembered
    /// for the timeline.
    pub fn on_event(&mut self, e: &Event) {
        if e.seq > self.state.last_seq
            || matches!(e.kind, EventKind::ReleaseLoaded { .. }) && self.state.services.is_empty()
        {
            let before = self.state.services.len();
            self.state.apply(e);
            if self.state.services.len() != before {
                self.rebuild_tree();
            }
            self.sync_fleet();
        }
        match &e.kind {
            EventKind::StepStarted { service, .. } => {
                self.step_started.insert(service.clone(), e.at_ms);
            }
            EventKind::ServiceStarted { service } => {
                self.step_started.insert(service.clone(), e.at_ms);
            }
            EventKind::CommandRefused { .. } => {
                self.toast(describe(e), true);
            }
            // The engine's contract gate: ask at once, naming the migration.
            EventKind::Migration {
                migration,
                phase: MigrationPhase::ContractAwaiting,
                ..
            } if !self.settings.read_only
                && self.overlay == Overlay::None
                && e.seq >= self.state.last_seq =>
            {
                self.confirm(Command::Contract {
                    migration: migration.clone(),
                });
            }
            _ => {}
        }
        log_event(e);
        self.keep_selection();
        self.dirty = true;
    }

    /// The engine answered a command this console sent.
    pub fn on_reply(&mut self, command: &Command, reply: Result<String, String>) {
        self.in_flight = self.in_flight.saturating_sub(1);
        match reply {
            Ok(done) => {
                let text = if done.is_empty() {
                    format!("{command}: done")
                } else {
                    format!("{command}: {done}")
                };
                self.toast(text, false)
            }
            Err(why) => self.toast(format!("{command} refused: {why}"), true),
        }
    }

    pub fn toast(&mut self, text: String, error: bool) {
        if error {
            tracing::warn!(target: "console", "{text}");
        }
        self.messages.push(text.clone());
        if self.messages.len() > 100 {
            self.messages.remove(0);
        }
        self.toast = Some(Toast {
            text,
            error,
            at_ms: self.now_ms,
        });
        self.dirty = true;
    }

    fn keep_selection(&mut self) {
        if self.fleet_keep_selection() {
            return;
        }
        let exists = self
            .selected
            .as_ref()
            .is_some_and(|n| self.state.services.iter().any(|s| &s.name == n));
        if !exists {
            self.selected = self
                .service_rows()
                .first()
                .map(|i| self.state.services[*i].name.clone());
        }
    }

    /// The release's migrations in release order: from the plan, or (an attached console
    /// has no plan) from what the engine reported.
    pub fn migration_names(&self) -> Vec<String> {
        match &self.plan {
            Some(p) => p.migrations.iter().map(|m| m.name.clone()).collect(),
            None => self
                .state
                .migrations
                .iter()
                .map(|m| m.name.clone())
                .collect(),
        }
    }

    /// The tree: services under the dependency that gates them last (in plan order),
    /// further dependencies named; migrations first as database nodes.
    pub fn rebuild_tree(&mut self) {
        let mut rows = Vec::new();
        for i in 0..self.migration_names().len() {
            rows.push(TreeRow {
                prefix: String::new(),
                node: Node::Migration { index: i },
            });
        }
        let services = &self.state.services;
        let pos: HashMap<&str, usize> = services
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        // parent = the dependency latest in plan order.
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); services.len()];
        let mut roots = Vec::new();
        for (i, s) in services.iter().enumerate() {
            let parent = s
                .depends_on
                .iter()
                .filter_map(|d| pos.get(d.as_str()).copied())
                .max();
            match parent {
                Some(p) if p != i => children[p].push(i),
                _ => roots.push(i),
            }
        }
        #[allow(clippy::too_many_arguments)]
        fn walk(
            i: usize,
            lead: &str,
            last: bool,
            root: bool,
            services: &[std::sync::Arc<crate::engine::ServiceState>],
            children: &[Vec<usize>],
            pos: &HashMap<&str, usize>,
            rows: &mut Vec<TreeRow>,
            depth: usize,
        ) {
            let s = &services[i];
            let parent = s
                .depends_on
                .iter()
                .filter_map(|d| pos.get(d.as_str()).copied())
                .max();
            let also: Vec<String> = s
                .depends_on
                .iter()
                .filter(|d| pos.get(d.as_str()).copied() != parent)
                .cloned()
                .collect();
            let prefix = if root {
                String::new()
            } else {
                format!("{lead}{}", if last { "└─" } else { "├─" })
            };
            rows.push(TreeRow {
                prefix,
                node: Node::Service { index: i, also },
            });
            if depth > 64 {
                return;
            }
            let next_lead = if root {
                String::new()
            } else {
                format!("{lead}{}", if last { "  " } else { "│ " })
            };
            let n = children[i].len();
            for (k, c) in children[i].iter().enumerate() {
                walk(
                    *c,
                    &next_lead,
                    k + 1 == n,
                    false,
                    services,
                    children,
                    pos,
                    rows,
                    depth + 1,
                );
            }
        }
        for r in roots {
            walk(r, "", true, true, services, &children, &pos, &mut rows, 0);
        }
        self.tree_rows = rows;
        self.dirty = true;
    }

    /// Indices (into `state.services`) in tree order.
    pub fn service_rows(&self) -> Vec<usize> {
        self.tree_rows
            .iter()
            .filter_map(|r| match r.node {
                Node::Service { index, .. } => Some(index),
                Node::Migration { .. } => None,
            })
            .collect()
    }

    pub fn selected_service(&self) -> Option<&crate::engine::ServiceState> {
        let name = self.selected.as_ref()?;
        self.state
            .services
            .iter()
            .find(|s| &s.name == name)
            .map(|s| &**s)
    }

    fn move_selection(&mut self, delta: isize) {
        let rows = self.service_rows();
        if rows.is_empty() {
            return;
        }
        let cur = self
            .selected
            .as_ref()
            .and_then(|n| rows.iter().position(|i| &self.state.services[*i].name == n))
            .unwrap_or(0) as isize;
        let next = (cur + delta).clamp(0, rows.len() as isize - 1) as usize;
        self.selected = Some(self.state.services[rows[next]].name.clone());
        self.dirty = true;
    }

    /// Whether the release is in flight (quitting asks what to do with it).
    pub fn release_in_flight(&self) -> bool {
        matches!(
            self.state.status,
            ReleaseStatus::Running | ReleaseStatus::Paused
        )
    }

    /// Whether `action` is available (read-only hides dangerous actions).
    pub fn allowed(&self, action: Action) -> bool {
        !(self.settings.read_only && action.dangerous())
    }

    /// A key from the terminal.
    pub fn on_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        self.dirty = true;
        match self.overlay.clone() {
            Overlay::None => {}
            Overlay::Help { scroll } => {
                match key.code {
                    KeyCode::Esc | KeyCode::Char('q') | KeyCode::Char('?') | KeyCode::Enter => {
                        self.overlay = Overlay::None
                    }
                    KeyCode::Down | KeyCode::Char('j') => {
                        self.overlay = Overlay::Help { scroll: scroll + 1 }
                    }
                    KeyCode::Up | KeyCode::Char('k') => {
                        self.overlay = Overlay::Help {
                            scroll: scroll.saturating_sub(1),
                        }
                    }
                    KeyCode::PageDown => {
                        self.overlay = Overlay::Help {
                            scroll: scroll + 10,
                        }
                    }
                    KeyCode::PageUp => {
                        self.overlay = Overlay::Help {
                            scroll: scroll.saturating_sub(10),
                        }
                    }
                    _ => {}
                }
                return Vec::new();
            }
            Overlay::Palette { input, selected } => return self.palette_key(key, input, selected),
            Overlay::Confirm { command, .. } => {
                return match key.code {
                    KeyCode::Char('y') | KeyCode::Char('Y') => {
                        self.overlay = Overlay::None;
                        self.send(command)
                    }
                    KeyCode::Esc | KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Enter => {
                        self.overlay = Overlay::None;
                        self.toast(format!("{command}: cancelled"), false);
                        Vec::new()
                    }
                    _ => Vec::new(),
                };
            }
            Overlay::Quit => {
                return match key.code {
                    KeyCode::Char('p') | KeyCode::Char('P') => {
                        self.overlay = Overlay::None;
                        let mut fx = Vec::new();
                        if self.state.status != ReleaseStatus::Paused {
                            fx.extend(self.send(Command::Pause { service: None }));
                        }
                        self.quit_choice = QuitChoice::Pause;
                        fx.push(Effect::Quit);
                        fx
                    }
                    KeyCode::Char('r') | KeyCode::Char('R') => {
                        self.overlay = Overlay::None;
                        let mut fx = self.send(Command::Rollback { service: None });
                        self.quit_choice = QuitChoice::RollBack;
                        fx.push(Effect::Quit);
                        fx
                    }
                    KeyCode::Char('b') | KeyCode::Char('B') if self.share.is_some() => {
                        self.overlay = Overlay::None;
                        self.quit_choice = QuitChoice::Background;
                        vec![Effect::Quit]
                    }
                    KeyCode::Esc | KeyCode::Char('c') | KeyCode::Char('C') | KeyCode::Enter => {
                        self.overlay = Overlay::None;
                        Vec::new()
                    }
                    _ => Vec::new(),
                };
            }
            Overlay::TenantFilter | Overlay::Reason { .. } => return self.fleet_overlay_key(key),
            Overlay::Filter { previous } => {
                match key.code {
                    KeyCode::Esc => {
                        self.log_filter = previous;
                        self.overlay = Overlay::None;
                    }
                    KeyCode::Enter => self.overlay = Overlay::None,
                    KeyCode::Backspace => {
                        self.log_filter.pop();
                    }
                    KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                        self.log_filter.push(c)
                    }
                    _ => {}
                }
                return Vec::new();
            }
        }
        if key.code == KeyCode::Esc {
            // Esc backs out: zoom, then config errors, then the toast.
            if self.zoom {
                self.zoom = false;
            } else if !self.config_errors.is_empty() {
                self.config_errors.clear();
            } else if !self.clear_tenant_filter() {
                self.toast = None;
            }
            return Vec::new();
        }
        let Some(k) = Key::from_event(&key) else {
            return Vec::new();
        };
        match self.keymap.resolve(self.focus.context(), &k) {
            Some(a) => self.dispatch(a),
            None => Vec::new(),
        }
    }

    fn need_service(&mut self, action: Action) -> Option<String> {
        match &self.selected {
            Some(s) => Some(s.clone()),
            None => {
                self.toast(format!("{}: select a service first", action.name()), true);
                None
            }
        }
    }

    pub(super) fn send(&mut self, command: Command) -> Vec<Effect> {
        self.in_flight += 1;
        self.toast(format!("{command}: sent"), false);
        vec![Effect::Send(command)]
    }

    /// Carry out an action (from a key, the palette or a mouse click).
    pub fn dispatch(&mut self, action: Action) -> Vec<Effect> {
        self.dirty = true;
        if !self.allowed(action) {
            self.toast(
                format!(
                    "read-only: `{}` is not available (started with --read-only)",
                    action.name()
                ),
                true,
            );
            return Vec::new();
        }
        let page = 10;
        match action {
            Action::Quit => {
                if self.release_in_flight() && !self.settings.read_only && !self.remote {
                    self.overlay = Overlay::Quit;
                    Vec::new()
                } else {
                    vec![Effect::Quit]
                }
            }
            Action::Help => {
                self.overlay = Overlay::Help { scroll: 0 };
                Vec::new()
            }
            Action::Palette => {
                self.overlay = Overlay::Palette {
                    input: String::new(),
                    selected: 0,
                };
                Vec::new()
            }
            Action::FocusNext | Action::FocusPrev => {
                let i = Pane::ORDER
                    .iter()
                    .position(|p| *p == self.focus)
                    .unwrap_or(0);
                let n = Pane::ORDER.len();
                let j = if action == Action::FocusNext {
                    (i + 1) % n
                } else {
                    (i + n - 1) % n
                };
                self.focus = Pane::ORDER[j];
                Vec::new()
            }
            Action::Up
            | Action::Down
            | Action::Top
            | Action::Bottom
            | Action::PageUp
            | Action::PageDown => {
                if self.focus == Pane::Log {
                    let ev = match action {
                        Action::Up | Action::PageUp => TuiWidgetEvent::PrevPageKey,
                        Action::Down | Action::PageDown => TuiWidgetEvent::NextPageKey,
                        _ => TuiWidgetEvent::EscapeKey,
                    };
                    self.log_state.transition(ev);
                } else {
                    let delta = match action {
                        Action::Up => -1,
                        Action::Down => 1,
                        Action::PageUp => -page,
                        Action::PageDown => page,
                        Action::Top => isize::MIN / 2,
                        _ => isize::MAX / 2,
                    };
                    if !self.fleet_move(delta) {
                        self.move_selection(delta);
                    }
                }
                Vec::new()
            }
            Action::Zoom => {
                self.zoom = !self.zoom;
                Vec::new()
            }
            Action::LogFilter => {
                self.overlay = Overlay::Filter {
                    previous: self.log_filter.clone(),
                };
                Vec::new()
            }
            Action::LogToggleService => {
                self.show_service_output = !self.show_service_output;
                // tui-logger hides a target through its level.
                let level = if self.show_service_output {
                    tui_logger::LevelFilter::Trace
                } else {
                    tui_logger::LevelFilter::Off
                };
                let state = std::mem::take(&mut self.log_state);
                self.log_state = state.set_level_for_target("service", level);
                self.toast(
                    format!(
                        "service output {}",
                        if self.show_service_output {
                            "shown"
                        } else {
                            "hidden"
                        }
                    ),
                    false,
                );
                Vec::new()
            }
            Action::Suspend => vec![Effect::Suspend],
            Action::ToggleMouse => {
                self.settings.mouse = !self.settings.mouse;
                self.toast(
                    format!("mouse {}", if self.settings.mouse { "on" } else { "off" }),
                    false,
                );
                vec![Effect::SetMouse(self.settings.mouse)]
            }
            Action::Start => self.send(Command::Start),
            Action::Pause => {
                if self.state.status == ReleaseStatus::Paused {
                    self.send(Command::Resume { service: None })
                } else {
                    self.send(Command::Pause { service: None })
                }
            }
            Action::PauseService => {
                let Some(s) = self.need_service(action) else {
                    return Vec::new();
                };
                let paused = self
                    .selected_service()
                    .is_some_and(|x| x.status == ServiceStatus::Paused);
                if paused {
                    self.send(Command::Resume { service: Some(s) })
                } else {
                    self.send(Command::Pause { service: Some(s) })
                }
            }
            Action::PromoteStep => match self.need_service(action) {
                Some(service) => self.send(Command::Promote { service }),
                None => Vec::new(),
            },
            Action::PromoteAll => {
                let Some(service) = self.need_service(action) else {
                    return Vec::new();
                };
                self.confirm(Command::PromoteAll { service })
            }
            Action::Rollback => match self.need_service(action) {
                Some(s) => self.send(Command::Rollback { service: Some(s) }),
                None => Vec::new(),
            },
            Action::RollbackRelease => self.send(Command::Rollback { service: None }),
            Action::Approve => match self.need_service(action) {
                Some(service) => self.send(Command::Approve { service }),
                None => Vec::new(),
            },
            Action::Reject => match self.need_service(action) {
                Some(service) => self.send(Command::Reject { service }),
                None => Vec::new(),
            },
            Action::Retry => match self.need_service(action) {
                Some(service) => self.send(Command::Retry { service }),
                None => Vec::new(),
            },
            Action::Abort => self.confirm(Command::Abort),
            Action::TenantRollback
            | Action::TenantRetry
            | Action::TenantPause
            | Action::TenantExclude
            | Action::TenantApprove
            | Action::TenantReject
            | Action::Collapse
            | Action::CollapseAll
            | Action::TenantFilter => self.fleet_action(action),
            Action::ApproveBreakGlass => {
                let pending = self
                    .state
                    .change_control
                    .as_ref()
                    .and_then(|c| c.break_glass.as_ref())
                    .is_some_and(|b| b.pending);
                if pending {
                    self.confirm(Command::ApproveBreakGlass)
                } else {
                    self.toast(
                        "no break-glass waits for approval (only a release started with --break-glass inside a freeze window does)".into(),
                        true,
                    );
                    Vec::new()
                }
            }
            Action::Contract => {
                let waiting = self
                    .state
                    .migrations
                    .iter()
                    .find(|m| m.phase == MigrationPhase::ContractAwaiting)
                    .map(|m| m.name.clone());
                match waiting {
                    Some(migration) => self.confirm(Command::Contract { migration }),
                    None => {
                        self.toast(
                            "no migration waits for contract confirmation (it is offered once every listed service is promoted and baked)".into(),
                            true,
                        );
                        Vec::new()
                    }
                }
            }
        }
    }

    /// The question a dangerous command asks, naming its target and effect.
    pub fn question(&self, command: &Command) -> String {
        let env = self
            .settings
            .environment
            .as_deref()
            .map(|e| format!(" in {e}"))
            .unwrap_or_default();
        match command {
            Command::PromoteAll { service } => {
                let s = self.state.service(service);
                let left = s.map_or(0, |s| s.steps.len().saturating_sub(s.step));
                let cand = s.map_or("the candidate", |s| s.candidate.as_str());
                format!(
                    "Promote all of {service}{env}? All traffic goes to {cand} now, skipping {left} remaining step(s)."
                )
            }
            Command::Abort => {
                let active = self
                    .state
                    .services
                    .iter()
                    .filter(|s| s.status.is_active())
                    .count();
                let pending = self
                    .state
                    .services
                    .iter()
                    .filter(|s| s.status == ServiceStatus::Pending)
                    .count();
                format!(
                    "Abort release {}{env}? {active} service(s) in flight roll back, {pending} pending are skipped; promoted ones stay.",
                    self.state.release
                )
            }
            Command::Contract { migration } => {
                let services = self
                    .plan
                    .as_ref()
                    .and_then(|p| p.migrations.iter().find(|m| &m.name == migration))
                    .map(|m| format!(" ({})", m.services.join(", ")))
                    .unwrap_or_default();
                format!(
                    "Contract migration {migration}{env}? Every listed service{services} is promoted and baked. Contract is one-way: afterwards they cannot roll back to their old revision."
                )
            }
            Command::ApproveBreakGlass => match self
                .state
                .change_control
                .as_ref()
                .and_then(|c| c.break_glass.as_ref())
            {
                Some(b) => format!(
                    "Approve the break-glass of {}{env}? {} asks to deploy inside the freeze window {}: {}",
                    self.state.release, b.operator, b.window, b.reason
                ),
                None => format!("{}{env}?", Command::ApproveBreakGlass),
            },
            Command::Exclude { tenant } => format!(
                "Exclude tenant {tenant}{env}? It is skipped (rolled back if it is running) and does not count against the failure budget."
            ),
            other => format!("{other}{env}?"),
        }
    }

    fn confirm(&mut self, command: Command) -> Vec<Effect> {
        let question = self.question(&command);
        self.overlay = Overlay::Confirm { command, question };
        Vec::new()
    }

    /// A command the user typed in the palette (`rollback payments`).
    pub fn typed(&mut self, text: &str) -> Vec<Effect> {
        match Command::parse(text) {
            Ok(c) => {
                if self.settings.read_only {
                    self.toast(
                        format!("read-only: `{c}` is not available (started with --read-only)"),
                        true,
                    );
                    return Vec::new();
                }
                if let Some(s) = c.service()
                    && self.state.service(s).is_none()
                    && !self.is_tenant(s)
                {
                    self.toast(
                        format!("`{c}`: no service named `{s}` in this release"),
                        true,
                    );
                    return Vec::new();
                }
                if let Command::Exclude { .. } = c {
                    // The engine wants a reason: ask for it.
                    self.overlay = Overlay::Reason {
                        command: c,
                        input: String::new(),
                    };
                    return Vec::new();
                }
                if matches!(
                    c,
                    Command::PromoteAll { .. }
                        | Command::Abort
                        | Command::Contract { .. }
                        | Command::ApproveBreakGlass
                ) {
                    self.confirm(c)
                } else {
                    self.send(c)
                }
            }
            Err(e) => {
                self.toast(e, true);
                Vec::new()
            }
        }
    }

    /// Palette entries matching `input`: (action, key shown).
    pub fn palette_items(&self, input: &str) -> Vec<Action> {
        let word = input.split_whitespace().next().unwrap_or("").to_lowercase();
        ACTIONS
            .iter()
            .filter(|i| self.allowed(i.action))
            .filter(|i| self.fleet.is_some() || !i.action.fleet_only())
            .filter(|i| {
                word.is_empty()
                    || i.name.contains(&word)
                    || i.description.to_lowercase().contains(&word)
            })
            .map(|i| i.action)
            .collect()
    }

    fn palette_key(
        &mut self,
        key: KeyEvent,
        mut input: String,
        mut selected: usize,
    ) -> Vec<Effect> {
        match key.code {
            KeyCode::Esc => {
                self.overlay = Overlay::None;
                return Vec::new();
            }
            KeyCode::Enter => {
                self.overlay = Overlay::None;
                let trimmed = input.trim();
                // A typed command with its arguments wins: `rollback payments`.
                let verb = trimmed.split_whitespace().next().unwrap_or("");
                let is_command =
                    Command::parse(verb).is_ok() || Command::parse(&format!("{verb} x")).is_ok();
                if !trimmed.is_empty()
                    && is_command
                    && (trimmed.contains(' ') || Command::parse(trimmed).is_ok())
                {
                    return self.typed(trimmed);
                }
                let items = self.palette_items(&input);
                return match items.get(selected) {
                    Some(a) => self.dispatch(*a),
                    None => {
                        self.toast(format!("`{trimmed}`: no such action or command"), true);
                        Vec::new()
                    }
                };
            }
            KeyCode::Up => selected = selected.saturating_sub(1),
            KeyCode::Down | KeyCode::Tab => selected += 1,
            KeyCode::Backspace => {
                input.pop();
                selected = 0;
            }
            KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                input.push(c);
                selected = 0;
            }
            _ => {}
        }
        let n = self.palette_items(&input).len();
        if n > 0 {
            selected = selected.min(n - 1);
        }
        self.overlay = Overlay::Palette { input, selected };
        Vec::new()
    }

    /// A mouse event (when mouse support is on): click focuses panes and selects rows,
    /// the wheel scrolls.
    pub fn on_mouse(&mut self, m: MouseEvent) -> Vec<Effect> {
        let hit = |r: &Rect| {
            m.column >= r.x && m.column < r.x + r.width && m.row >= r.y && m.row < r.y + r.height
        };
        match m.kind {
            MouseEventKind::Down(MouseButton::Left) => {
                for (name, pane) in [
                    ("tree", Pane::Tree),
                    ("health", Pane::Health),
                    ("timeline", Pane::Timeline),
                    ("log", Pane::Log),
                ] {
                    if self.areas.get(name).is_some_and(hit) {
                        self.focus = pane;
                        self.dirty = true;
                    }
                }
                if let Some(r) = self.areas.get("tree").copied()
                    && hit(&r)
                    && m.row > r.y
                {
                    if self.fleet_click((m.row - r.y - 1) as usize) {
                        return Vec::new();
                    }
                    let row = (m.row - r.y - 1) as usize + self.tree_offset;
                    if let Some(TreeRow {
                        node: Node::Service { index, .. },
                        ..
                    }) = self.tree_rows.get(row)
                    {
                        self.selected = Some(self.state.services[*index].name.clone());
                    }
                }
                Vec::new()
            }
            MouseEventKind::ScrollDown => self.dispatch(Action::Down),
            MouseEventKind::ScrollUp => self.dispatch(Action::Up),
            _ => Vec::new(),
        }
    }
}

/// Engine events go to the log pane (target `engine`); health polls are too frequent.
fn log_event(e: &Event) {
    let line = describe(e);
    match &e.kind {
        EventKind::Health { .. } => {}
        EventKind::Failed { .. }
        | EventKind::CommandRefused { .. }
        | EventKind::Migration {
            phase: MigrationPhase::Failed,
            ..
        } => {
            tracing::error!(target: "engine", "{line}")
        }
        EventKind::PlatformError { fatal: true, .. } => tracing::error!(target: "engine", "{line}"),
        EventKind::RollbackStarted { .. }
        | EventKind::RolledBack { .. }
        | EventKind::PlatformError { .. } => {
            tracing::warn!(target: "engine", "{line}")
        }
        EventKind::Verdict { verdict, .. } if verdict.outcome == crate::judge::Outcome::Fail => {
            tracing::warn!(target: "engine", "{line}");
            for l in &verdict.explanation {
                tracing::warn!(target: "engine", "  {l}");
            }
        }
        _ => tracing::info!(target: "engine", "{line}"),
    }
}
