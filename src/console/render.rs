//! Drawing: the panes, the bars and the overlays. Pure functions of the [`App`] and the
//! time it holds (no clock is read here), so frames are reproducible in tests.

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, BorderType, Borders, Chart, Clear, Dataset, GraphType, Paragraph, Wrap,
};
use tui_logger::{ExtLogRecord, LogFormatter, TuiLoggerWidget};

use crate::engine::telemetry::Sample;
use crate::engine::{GateKind, MigrationPhase, ReleaseStatus, ServiceState, ServiceStatus};
use crate::judge::Outcome;

use super::action::{ACTIONS, Action};
use super::app::{App, Node, Overlay, Pane};
use super::keymap::Context;
use super::theme::Slot;

/// Below this the layout is replaced by a notice.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 16;

/// Glyph, word and slot of a service status: never colour alone.
pub fn status_look(s: ServiceStatus) -> (&'static str, &'static str, Slot) {
    match s {
        ServiceStatus::Pending => ("○", "PENDING", Slot::HealthUnknown),
        ServiceStatus::Starting => ("◔", "STARTING", Slot::StatusActive),
        ServiceStatus::Progressing => ("◑", "PROGRESSING", Slot::StatusActive),
        ServiceStatus::Analysing => ("◎", "ANALYSING", Slot::StatusActive),
        ServiceStatus::Paused => ("‖", "PAUSED", Slot::HealthDegraded),
        ServiceStatus::AwaitingApproval => ("?", "APPROVAL", Slot::HealthDegraded),
        ServiceStatus::Promoted => ("●", "PROMOTED", Slot::HealthOk),
        ServiceStatus::RollingBack => ("↺", "ROLLING BACK", Slot::StatusRollingBack),
        ServiceStatus::RolledBack => ("⟲", "ROLLED BACK", Slot::HealthDown),
        ServiceStatus::Failed => ("✖", "FAILED", Slot::HealthDown),
        ServiceStatus::Skipped => ("–", "SKIPPED", Slot::HealthUnknown),
    }
}

/// Glyph, word and style of a migration's phase (tree and timeline).
pub fn migration_look(p: MigrationPhase) -> (&'static str, &'static str, Slot) {
    match p {
        MigrationPhase::Pending => ("○", "pending", Slot::HealthUnknown),
        MigrationPhase::Linted => ("◔", "linted", Slot::Database),
        MigrationPhase::DryRunOk => ("◑", "dry-run ok", Slot::Database),
        MigrationPhase::Expanding => ("◎", "expanding", Slot::StatusActive),
        MigrationPhase::Expanded => ("▲", "expanded", Slot::Database),
        MigrationPhase::ContractAwaiting => ("?", "contract: awaiting confirm", Slot::Countdown),
        MigrationPhase::Contracting => ("◎", "contracting", Slot::StatusActive),
        MigrationPhase::Contracted => ("●", "contracted", Slot::HealthOk),
        MigrationPhase::UndoingExpand => ("↺", "undoing expand", Slot::StatusRollingBack),
        MigrationPhase::Undone => ("⟲", "undone", Slot::HealthDegraded),
        MigrationPhase::KeptExpanded => ("▲", "expanded (kept)", Slot::HealthDegraded),
        MigrationPhase::ContractPending => ("‖", "contract pending", Slot::HealthDegraded),
        MigrationPhase::Failed => ("✖", "FAILED", Slot::HealthDown),
    }
}

/// `1h02m`, `3m05s`, `42s`.
pub fn short_duration(ms: u64) -> String {
    let s = ms / 1000;
    let (h, m, s) = (s / 3600, (s % 3600) / 60, s % 60);
    if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

pub(super) fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else if width == 0 {
        String::new()
    } else {
        let mut t: String = s.chars().take(width.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

pub(super) fn pad(s: &str, width: usize) -> String {
    let t = truncate(s, width);
    let n = t.chars().count();
    format!("{t}{}", " ".repeat(width.saturating_sub(n)))
}

impl App {
    pub(super) fn style(&self, slot: Slot) -> Style {
        self.theme.get(slot)
    }

    pub(super) fn pane_block<'a>(&self, title: &'a str, pane: Pane) -> Block<'a> {
        let focused = self.focus == pane;
        let (bslot, btype) = if focused {
            (Slot::BorderFocused, BorderType::Thick)
        } else {
            (Slot::Border, BorderType::Plain)
        };
        let marker = if focused { "▶ " } else { "" };
        Block::default()
            .borders(Borders::ALL)
            .border_type(btype)
            .border_style(self.style(bslot))
            .title(Line::from(vec![
                Span::styled(marker, self.style(Slot::BorderFocused)),
                Span::styled(title, self.style(Slot::Title)),
            ]))
    }

    /// Draw one frame.
    pub fn render(&mut self, f: &mut Frame) {
        let area = f.area();
        f.render_widget(Block::default().style(self.style(Slot::Base)), area);
        self.areas.clear();
        if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
            let msg = vec![
                Line::from(Span::styled(
                    "terminal too small",
                    self.style(Slot::HealthDegraded),
                )),
                Line::from(format!(
                    "{}×{}, need at least {MIN_WIDTH}×{MIN_HEIGHT}",
                    area.width, area.height
                )),
                Line::from(Span::styled(
                    "enlarge the window; q quits",
                    self.style(Slot::Dim),
                )),
            ];
            let h = 3.min(area.height);
            let y = area.y + area.height.saturating_sub(h) / 2;
            f.render_widget(
                Paragraph::new(msg)
                    .alignment(Alignment::Center)
                    .wrap(Wrap { trim: true }),
                Rect::new(area.x, y, area.width, h),
            );
            return;
        }
        let [top, middle, bottom] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(0),
            Constraint::Length(1),
        ])
        .areas(area);
        self.render_status_bar(f, top);
        self.render_hints(f, bottom);

        let middle = if self.config_errors.is_empty() {
            middle
        } else {
            let h = (self.config_errors.len() as u16 + 2)
                .min(middle.height / 3)
                .max(3);
            let [errs, rest] =
                Layout::vertical([Constraint::Length(h), Constraint::Min(0)]).areas(middle);
            self.render_config_errors(f, errs);
            rest
        };
        let middle = match &self.engine_stopped {
            None => middle,
            Some(why) => {
                // Wrapped inside the borders: the lines the text needs, at most a third.
                let inner_w = middle.width.saturating_sub(2).max(1) as usize;
                let need = why
                    .lines()
                    .map(|l| l.chars().count().div_ceil(inner_w).max(1))
                    .sum::<usize>() as u16;
                let h = (need + 2).min(middle.height / 3).max(3);
                let [banner, rest] =
                    Layout::vertical([Constraint::Length(h), Constraint::Min(0)]).areas(middle);
                self.render_engine_stopped(f, banner, why);
                rest
            }
        };

        if self.zoom {
            self.render_pane(f, self.focus, middle);
        } else if middle.width >= 110 {
            let log_h = (middle.height / 4).max(6).min(middle.height / 2);
            let [upper, log] =
                Layout::vertical([Constraint::Min(0), Constraint::Length(log_h)]).areas(middle);
            // The fleet's tree says more per row (status, reason, countdowns).
            let share = if self.fleet.is_some() { 46 } else { 38 };
            let tree_w = (upper.width * share / 100).max(44);
            let [left, right] =
                Layout::horizontal([Constraint::Length(tree_w), Constraint::Min(0)]).areas(upper);
            let [health, timeline] =
                Layout::vertical([Constraint::Percentage(58), Constraint::Percentage(42)])
                    .areas(right);
            self.render_pane(f, Pane::Tree, left);
            self.render_pane(f, Pane::Health, health);
            self.render_pane(f, Pane::Timeline, timeline);
            self.render_pane(f, Pane::Log, log);
        } else {
            let [tree, health, timeline, log] = Layout::vertical([
                Constraint::Percentage(30),
                Constraint::Percentage(32),
                Constraint::Percentage(20),
                Constraint::Percentage(18),
            ])
            .areas(middle);
            self.render_pane(f, Pane::Tree, tree);
            self.render_pane(f, Pane::Health, health);
            self.render_pane(f, Pane::Timeline, timeline);
            self.render_pane(f, Pane::Log, log);
        }

        match self.overlay.clone() {
            Overlay::None | Overlay::Filter { .. } | Overlay::TenantFilter => {}
            Overlay::Reason { command, input } => self.render_reason(f, area, &command, &input),
            Overlay::Help { scroll } => self.render_help(f, area, scroll),
            Overlay::Palette { input, selected } => self.render_palette(f, area, &input, selected),
            Overlay::Confirm { question, .. } => self.render_confirm(f, area, &question),
            Overlay::Quit => self.render_quit(f, area),
        }
    }

    fn render_pane(&mut self, f: &mut Frame, pane: Pane, area: Rect) {
        let name = match pane {
            Pane::Tree => "tree",
            Pane::Health => "health",
            Pane::Timeline => "timeline",
            Pane::Log => "log",
        };
        self.areas.insert(name, area);
        match pane {
            Pane::Tree => self.render_tree(f, area),
            Pane::Health => self.render_health(f, area),
            Pane::Timeline => self.render_timeline(f, area),
            Pane::Log => self.render_log(f, area),
        }
    }

    fn render_status_bar(&self, f: &mut Frame, area: Rect) {
        let st = &self.state;
        let bar = self.style(Slot::StatusBar);
        let sep = Span::styled(" │ ", bar);
        let mut spans = vec![Span::styled(" cutover", bar.add_modifier(Modifier::BOLD))];
        spans.push(sep.clone());
        spans.push(Span::styled(
            if st.release.is_empty() {
                "(no release loaded)".to_string()
            } else {
                st.release.clone()
            },
            bar.add_modifier(Modifier::BOLD),
        ));
        spans.push(sep.clone());
        spans.push(Span::styled(
            format!(
                "platform {}",
                if st.platform.is_empty() {
                    "-"
                } else {
                    &st.platform
                }
            ),
            bar,
        ));
        spans.push(sep.clone());
        let env = self
            .settings
            .environment
            .clone()
            .unwrap_or_else(|| "no environment".into());
        let prod = env.to_lowercase().starts_with("prod");
        spans.push(Span::styled(
            format!(" {} ", env.to_uppercase()),
            self.style(if prod {
                Slot::EnvBannerProduction
            } else {
                Slot::EnvBanner
            }),
        ));
        if let Some(c) = &st.change {
            spans.push(Span::styled(format!(" change {c} "), bar));
        }
        if let Some(b) = &st.break_glass {
            spans.push(Span::styled(
                format!(
                    " BREAK-GLASS: {} skipped \"requires {}\": {} ",
                    b.operator,
                    b.skipped.join(", "),
                    b.reason
                ),
                bar.patch(self.style(Slot::HealthDown))
                    .add_modifier(Modifier::BOLD | Modifier::REVERSED),
            ));
        }
        if let Some(f) = &st.frozen {
            spans.push(Span::styled(
                format!(
                    " FROZEN: window {} until {}; nothing new starts ",
                    f.window, f.until
                ),
                bar.patch(self.style(Slot::HealthDegraded))
                    .add_modifier(Modifier::BOLD | Modifier::REVERSED),
            ));
        }
        if let Some(cc) = st.change_control.as_ref()
            && let Some(b) = cc.break_glass.as_ref().filter(|b| b.pending)
        {
            let so_far = if b.approvers.is_empty() {
                String::new()
            } else {
                format!(" ({})", b.approvers.join(", "))
            };
            spans.push(Span::styled(
                format!(
                    " BREAK-GLASS REQUESTED by {} in freeze {}: {}; {}/{} approved{so_far}, needs {}; nothing changes until then (approve: B, or cutover ctl approve-break-glass) ",
                    b.operator,
                    b.window,
                    b.reason,
                    b.approvers.len(),
                    cc.break_glass_rule.as_ref().map_or(1, |r| r.required),
                    cc.break_glass_rule
                        .as_ref()
                        .map_or_else(|| "approvals".to_string(), |r| r.describe(&cc.roster)),
                ),
                bar.patch(self.style(Slot::HealthDegraded))
                    .add_modifier(Modifier::BOLD | Modifier::REVERSED),
            ));
        } else if let Some(b) = st
            .change_control
            .as_ref()
            .and_then(|c| c.break_glass.as_ref())
        {
            spans.push(Span::styled(
                format!(
                    " BREAK-GLASS: {} started in freeze {} (approved by {}): {} ",
                    b.operator,
                    b.window,
                    b.approvers.join(", "),
                    b.reason
                ),
                bar.patch(self.style(Slot::HealthDown))
                    .add_modifier(Modifier::BOLD | Modifier::REVERSED),
            ));
        }
        spans.push(sep.clone());
        spans.push(Span::styled(
            format!("operator {}", self.settings.operator),
            bar,
        ));
        spans.push(sep.clone());
        let (word, slot) = match st.status {
            ReleaseStatus::Ready => ("READY", Slot::HealthUnknown),
            ReleaseStatus::Running => ("RUNNING", Slot::StatusActive),
            ReleaseStatus::Paused => ("PAUSED", Slot::HealthDegraded),
            ReleaseStatus::Finished => ("FINISHED", Slot::HealthOk),
        };
        spans.push(Span::styled(word, bar.patch(self.style(slot))));
        if let Some(start) = st.started_at_ms {
            let end = st.finished_at_ms.unwrap_or(self.now_ms);
            spans.push(Span::styled(
                format!(" {}", short_duration(end.saturating_sub(start))),
                bar,
            ));
        }
        let promoted = st
            .services
            .iter()
            .filter(|s| s.status == ServiceStatus::Promoted)
            .count();
        let down = st
            .services
            .iter()
            .filter(|s| {
                matches!(
                    s.status,
                    ServiceStatus::RolledBack | ServiceStatus::Failed | ServiceStatus::RollingBack
                )
            })
            .count();
        spans.push(sep.clone());
        spans.push(Span::styled(
            format!("{promoted}/{} promoted", st.services.len()),
            bar,
        ));
        if down > 0 {
            spans.push(Span::styled(", ", bar));
            spans.push(Span::styled(
                format!("{down} rolled back/failed"),
                bar.patch(self.style(Slot::HealthDown)),
            ));
        }
        if !self.attached.is_empty() {
            spans.push(sep.clone());
            spans.push(Span::styled(
                format!("attached: {}", self.attached.join(", ")),
                bar,
            ));
        }
        if self.engine_stopped.is_some() {
            spans.push(sep.clone());
            spans.push(Span::styled(
                "ENGINE STOPPED",
                bar.patch(self.style(Slot::HealthDown))
                    .add_modifier(Modifier::BOLD | Modifier::REVERSED),
            ));
        }
        if let Some(to) = &self.served_by {
            spans.push(sep.clone());
            spans.push(Span::styled(format!("served by {to}"), bar));
        }
        if let Some(why) = &self.connection_lost {
            spans.push(sep.clone());
            spans.push(Span::styled(
                format!("DISCONNECTED, state may be stale: {why}"),
                bar.patch(self.style(Slot::HealthDown))
                    .add_modifier(Modifier::BOLD | Modifier::REVERSED),
            ));
        }
        if self.settings.read_only {
            spans.push(sep);
            spans.push(Span::styled("READ-ONLY", bar.add_modifier(Modifier::BOLD)));
        }
        if self.in_flight > 0 {
            spans.push(Span::styled(
                format!("  ⋯ {} command(s) in flight", self.in_flight),
                bar,
            ));
        }
        f.render_widget(Paragraph::new(Line::from(spans)).style(bar), area);
    }

    /// The actions worth hinting in the focused pane.
    fn hint_actions(&self) -> Vec<Action> {
        let mut v = match self.focus {
            Pane::Tree | Pane::Health | Pane::Timeline if self.fleet.is_some() => vec![
                Action::TenantRollback,
                Action::TenantExclude,
                Action::TenantApprove,
                Action::Collapse,
                Action::TenantFilter,
            ],
            Pane::Tree | Pane::Health | Pane::Timeline => vec![
                Action::Rollback,
                Action::PromoteStep,
                Action::PromoteAll,
                Action::PauseService,
                Action::Approve,
                Action::Reject,
                Action::Retry,
                Action::Pause,
                Action::Zoom,
            ],
            Pane::Log => vec![
                Action::LogFilter,
                Action::LogToggleService,
                Action::PageUp,
                Action::PageDown,
                Action::Zoom,
            ],
        };
        if self.state.status == ReleaseStatus::Ready {
            v.insert(0, Action::Start);
        }
        v.extend([
            Action::FocusNext,
            Action::Palette,
            Action::Help,
            Action::Quit,
        ]);
        v.retain(|a| self.allowed(*a));
        v
    }

    fn render_hints(&self, f: &mut Frame, area: Rect) {
        let mut spans = Vec::new();
        if let Some(t) = &self.toast {
            let slot = if t.error {
                Slot::ToastError
            } else {
                Slot::ToastInfo
            };
            spans.push(Span::styled(
                format!(" {} {} ", if t.error { "✖" } else { "✔" }, t.text),
                self.style(slot),
            ));
            spans.push(Span::raw("  "));
        }
        if self.overlay == Overlay::TenantFilter {
            self.render_tenant_filter_hint(&mut spans);
        } else if let Overlay::Filter { .. } = self.overlay {
            spans.push(Span::styled("log filter: ", self.style(Slot::HintText)));
            spans.push(Span::styled(
                format!("{}▏", self.log_filter),
                self.style(Slot::HintKey),
            ));
            spans.push(Span::styled(
                "  Enter keep  Esc back",
                self.style(Slot::HintText),
            ));
        } else {
            let ctx = self.focus.context();
            for a in self.hint_actions() {
                let Some(k) = self.keymap.keys_for(ctx, a).first().copied() else {
                    continue;
                };
                spans.push(Span::styled(k.to_string(), self.style(Slot::HintKey)));
                spans.push(Span::styled(
                    format!(" {}  ", a.name()),
                    self.style(Slot::HintText),
                ));
            }
        }
        f.render_widget(Paragraph::new(Line::from(spans)), area);
    }

    fn render_engine_stopped(&self, f: &mut Frame, area: Rect, why: &str) {
        let style = self.style(Slot::ToastError);
        let lines: Vec<Line> = why
            .lines()
            .map(|l| Line::from(Span::styled(l.to_string(), style)))
            .collect();
        let block = Block::default()
            .borders(Borders::ALL)
            .border_style(style)
            .title(" ENGINE STOPPED: no command can act; q quits ");
        f.render_widget(
            Paragraph::new(lines)
                .block(block)
                .wrap(Wrap { trim: false }),
            area,
        );
    }

    fn render_config_errors(&self, f: &mut Frame, area: Rect) {
        let lines: Vec<Line> = self
            .config_errors
            .iter()
            .map(|e| Line::from(Span::styled(e.clone(), self.style(Slot::ToastError))))
            .collect();
        let block = Block::default()
            .borders(Borders::ALL)
            .border_style(self.style(Slot::ToastError))
            .title(" config problems: defaults used for these files (Esc hides) ");
        f.render_widget(
            Paragraph::new(lines)
                .block(block)
                .wrap(Wrap { trim: false }),
            area,
        );
    }

    fn render_tree(&mut self, f: &mut Frame, area: Rect) {
        if self.fleet.is_some() {
            return self.render_fleet_tree(f, area);
        }
        let block = self.pane_block(" Services ", Pane::Tree);
        let inner = block.inner(area);
        f.render_widget(block, area);
        if self.state.services.is_empty() {
            f.render_widget(
                Paragraph::new(Span::styled(
                    "waiting for the engine to load a release…",
                    self.style(Slot::Dim),
                )),
                inner,
            );
            return;
        }
        let h = inner.height as usize;
        // Keep the selected row visible.
        let sel_row = self.tree_rows.iter().position(|r| match &r.node {
            Node::Service { index, .. } => {
                self.selected.as_deref() == Some(self.state.services[*index].name.as_str())
            }
            _ => false,
        });
        if let Some(r) = sel_row {
            if r < self.tree_offset {
                self.tree_offset = r;
            } else if h > 0 && r >= self.tree_offset + h {
                self.tree_offset = r + 1 - h;
            }
        }
        self.tree_offset = self
            .tree_offset
            .min(self.tree_rows.len().saturating_sub(h.max(1)));
        let name_w = self
            .tree_rows
            .iter()
            .filter_map(|r| match r.node {
                Node::Service { index, .. } => {
                    Some(r.prefix.chars().count() + self.state.services[index].name.chars().count())
                }
                _ => None,
            })
            .max()
            .unwrap_or(8)
            .clamp(6, 30);
        let width = inner.width as usize;
        let mut lines = Vec::with_capacity(h);
        let migration_names = self.migration_names();
        for row in self.tree_rows.iter().skip(self.tree_offset).take(h) {
            match &row.node {
                Node::Migration { index } => {
                    let Some(name) = migration_names.get(*index).cloned() else {
                        continue;
                    };
                    let planned = self
                        .plan
                        .as_ref()
                        .and_then(|p| p.migrations.iter().find(|m| m.name == name));
                    let phase = self
                        .state
                        .migration(&name)
                        .map_or(MigrationPhase::Pending, |x| x.phase);
                    let (glyph, word, slot) = migration_look(phase);
                    let head = format!("⛁ DB {name} ");
                    let state = format!("{glyph} {word}");
                    let rest = planned.map_or_else(String::new, |m| {
                        let contract = m
                            .contract_after_wave
                            .map(|w| format!(", contract after wave {}", w + 1))
                            .unwrap_or_default();
                        format!(
                            "  expand before wave {}{contract} · {}",
                            m.expand_before_wave + 1,
                            m.services.join(", ")
                        )
                    });
                    let head_w = head.chars().count();
                    let state_w = width.saturating_sub(head_w);
                    let state = truncate(&state, state_w);
                    let rest_w = state_w.saturating_sub(state.chars().count());
                    lines.push(Line::from(vec![
                        Span::styled(truncate(&head, width), self.style(Slot::Database)),
                        Span::styled(state, self.style(slot)),
                        Span::styled(truncate(&rest, rest_w), self.style(Slot::Database)),
                    ]));
                }
                Node::Service { index, also } => {
                    let s = &self.state.services[*index];
                    let (glyph, word, slot) = status_look(s.status);
                    let selected = self.selected.as_deref() == Some(s.name.as_str());
                    let indent = row.prefix.chars().count();
                    let nw = name_w.saturating_sub(indent).max(4);
                    let weights = if s.weights.is_empty() {
                        format!("{}→{}", s.baseline, s.candidate)
                    } else {
                        s.weights
                            .iter()
                            .map(|(r, w)| format!("{r} {w}%"))
                            .collect::<Vec<_>>()
                            .join(" · ")
                    };
                    let extra = if also.is_empty() {
                        String::new()
                    } else {
                        format!(" (+{})", also.join(", "))
                    };
                    let mut spans = vec![
                        Span::styled(row.prefix.clone(), self.style(Slot::Dim)),
                        Span::styled(format!("{glyph} "), self.style(slot)),
                        Span::styled(
                            pad(&s.name, nw),
                            self.style(Slot::Base).add_modifier(Modifier::BOLD),
                        ),
                        Span::raw(" "),
                        Span::styled(pad(word, 12), self.style(slot)),
                        Span::raw(" "),
                    ];
                    let used: usize = spans.iter().map(|s| s.content.chars().count()).sum();
                    let rest = width.saturating_sub(used);
                    spans.push(Span::styled(
                        truncate(&format!("{weights}{extra}"), rest),
                        self.style(Slot::Dim),
                    ));
                    let mut line = Line::from(spans);
                    if selected {
                        line = line.style(self.style(Slot::Selection));
                    }
                    lines.push(line);
                }
            }
        }
        f.render_widget(Paragraph::new(lines), inner);
    }

    fn render_health(&mut self, f: &mut Frame, area: Rect) {
        if self.render_fleet_detail(f, area) {
            return;
        }
        let title = match self.selected_service() {
            Some(s) => format!(" Health: {} ", s.name),
            None => " Health ".to_string(),
        };
        let block = self.pane_block(&title, Pane::Health);
        let inner = block.inner(area);
        f.render_widget(block, area);
        let Some(s) = self.selected_service().cloned() else {
            f.render_widget(
                Paragraph::new(Span::styled("no service selected", self.style(Slot::Dim))),
                inner,
            );
            return;
        };
        let (glyph, word, slot) = status_look(s.status);
        let mut head = vec![Line::from(vec![
            Span::styled(format!("{glyph} {word}"), self.style(slot)),
            Span::raw(
                format!("  {:?}  {} → {}", s.strategy, s.baseline, s.candidate)
                    .replace("BlueGreen", "blue-green")
                    .to_lowercase(),
            ),
            Span::styled(
                if s.step > 0 && s.step <= s.steps.len() {
                    format!(
                        "  step {}/{}: {}",
                        s.step,
                        s.steps.len(),
                        s.steps[s.step - 1]
                    )
                } else {
                    String::new()
                },
                self.style(Slot::Dim),
            ),
        ])];
        let h = &s.health;
        let hl = |healthy: u32, desired: u32| -> Span<'static> {
            let ok = desired > 0 && healthy >= desired;
            let slot = if desired == 0 {
                Slot::HealthUnknown
            } else if ok {
                Slot::HealthOk
            } else {
                Slot::HealthDegraded
            };
            Span::styled(
                format!(
                    "{healthy}/{desired}{}",
                    if desired > 0 && !ok { " ▲" } else { "" }
                ),
                self.style(slot),
            )
        };
        let mut l2 = vec![
            Span::raw("healthy  canary "),
            hl(h.candidate_healthy, h.candidate_desired),
            Span::raw(" · baseline "),
            hl(h.baseline_healthy, h.baseline_desired),
        ];
        if !s.weights.is_empty() {
            l2.push(Span::styled(
                format!(
                    "   traffic {}",
                    s.weights
                        .iter()
                        .map(|(r, w)| format!("{r} {w}%"))
                        .collect::<Vec<_>>()
                        .join(" · ")
                ),
                self.style(Slot::Dim),
            ));
        }
        head.push(Line::from(l2));
        head.push(Line::from(vec![
            Span::styled("charts ", self.style(Slot::Dim)),
            Span::styled("• baseline", self.style(Slot::ChartBaseline)),
            Span::raw("  "),
            Span::styled("⣿ canary", self.style(Slot::ChartCanary)),
            Span::styled(
                "  (numbers: baseline/canary, last sample)",
                self.style(Slot::Dim),
            ),
        ]));
        // An approval gate with a rule (journaled on the gate by the engine; a journal
        // from before gates carried it: the policy's): who may answer, how many so far.
        if let Some(g) = &s.gate
            && let GateKind::Approval {
                rule: gate_rule, ..
            } = &g.kind
            && let Some((rule, roster)) = gate_rule
                .as_ref()
                .map(|r| (r, st_roster(&self.state)))
                .or_else(|| st_rule(&self.state))
        {
            let so_far = if s.approvals.is_empty() {
                String::new()
            } else {
                format!(" ({})", s.approvals.join(", "))
            };
            head.push(Line::from(Span::styled(
                format!(
                    "approvers: {}/{} approved{so_far}; needs {}",
                    s.approvals.len(),
                    rule.required,
                    rule.describe(roster)
                ),
                self.style(Slot::Countdown),
            )));
        }
        if let Some(p) = &h.problem {
            head.push(Line::from(Span::styled(
                format!("▲ {p}"),
                self.style(Slot::HealthDegraded),
            )));
        }
        if let Some(r) = &s.reason {
            head.push(Line::from(Span::styled(
                format!("reason: {r}"),
                self.style(slot),
            )));
        }
        // Verdict lines.
        let mut verdict = Vec::new();
        match &s.verdict {
            Some(v) => {
                let (vs, vw) = match v.outcome {
                    Outcome::Pass => (Slot::VerdictPass, "✔ PASS"),
                    Outcome::Fail => (Slot::VerdictFail, "✖ FAIL"),
                    Outcome::Inconclusive => (Slot::VerdictInconclusive, "? INCONCLUSIVE"),
                };
                verdict.push(Line::from(vec![
                    Span::raw("verdict "),
                    Span::styled(vw, self.style(vs)),
                    Span::styled(format!(" ({}) ", v.judge), self.style(Slot::Dim)),
                    Span::raw(v.summary.clone()),
                ]));
                for e in &v.explanation {
                    let failing = e.contains("FAIL");
                    verdict.push(Line::from(Span::styled(
                        format!("  {e}"),
                        if failing {
                            self.style(Slot::VerdictFail)
                        } else {
                            self.style(Slot::Base)
                        },
                    )));
                }
            }
            None => verdict.push(Line::from(Span::styled(
                "verdict: no analysis yet",
                self.style(Slot::Dim),
            ))),
        }
        let text_h = head.len() as u16;
        // The verdict and its explanation come before the charts when space is short.
        let w = inner.width.max(1) as usize;
        let wrapped: usize = verdict.iter().map(|l| l.width().max(1).div_ceil(w)).sum();
        let room = inner.height.saturating_sub(text_h);
        let verdict_h = if room >= wrapped as u16 + 6 {
            wrapped as u16
        } else {
            (wrapped as u16).min(room)
        };
        let chart_h = inner.height.saturating_sub(text_h + verdict_h);
        let [ha, ca, va] = Layout::vertical([
            Constraint::Length(text_h),
            Constraint::Length(chart_h),
            Constraint::Length(verdict_h),
        ])
        .areas(inner);
        f.render_widget(Paragraph::new(head), ha);
        f.render_widget(Paragraph::new(verdict).wrap(Wrap { trim: false }), va);
        if chart_h >= 5 {
            self.render_charts(f, ca, &s.name);
        } else if chart_h > 0 {
            f.render_widget(
                Paragraph::new(Span::styled(
                    "(charts need a taller pane: z zooms)",
                    self.style(Slot::Dim),
                )),
                ca,
            );
        }
    }

    fn render_charts(&self, f: &mut Frame, area: Rect, service: &str) {
        let series = self.telemetry.services.get(service);
        let empty = Default::default();
        let series = series.unwrap_or(&empty);
        type Pick = fn(&Sample) -> Option<f64>;
        let metrics: [(&str, Pick, Pick); 3] = [
            ("req/s", |s| Some(s.requests_per_s), |_| None),
            ("err %", |s| s.error_rate.map(|e| e * 100.0), |_| None),
            ("latency ms p50 / p99", |s| s.p50_ms, |s| s.p99_ms),
        ];
        let areas: Vec<Rect> = if area.width >= 60 {
            Layout::horizontal([
                Constraint::Ratio(1, 3),
                Constraint::Ratio(1, 3),
                Constraint::Ratio(1, 3),
            ])
            .split(area)
            .to_vec()
        } else {
            Layout::vertical([
                Constraint::Ratio(1, 3),
                Constraint::Ratio(1, 3),
                Constraint::Ratio(1, 3),
            ])
            .split(area)
            .to_vec()
        };
        // The window: what was sampled so far (at least a minute), up to what is kept.
        let kept_ms = self.telemetry.keep.max(1) as u64 * self.telemetry.every_ms.max(1);
        let oldest = series
            .baseline
            .front()
            .into_iter()
            .chain(series.candidate.front())
            .map(|s| s.at_ms)
            .min()
            .unwrap_or(self.now_ms);
        let window_ms = self
            .now_ms
            .saturating_sub(oldest)
            .clamp(60_000, kept_ms.max(60_000));
        let window_s = (window_ms / 1000) as f64;
        for ((title, a, b), r) in metrics.into_iter().zip(areas) {
            let pts = |q: &std::collections::VecDeque<Sample>, pick: Pick| -> Vec<(f64, f64)> {
                q.iter()
                    .filter_map(|s| {
                        pick(s).map(|v| (-(self.now_ms.saturating_sub(s.at_ms) as f64) / 1000.0, v))
                    })
                    .filter(|(x, _)| *x >= -window_s)
                    .collect()
            };
            let mut data = vec![
                (
                    "baseline",
                    pts(&series.baseline, a),
                    Marker::Dot,
                    Slot::ChartBaseline,
                ),
                (
                    "canary",
                    pts(&series.candidate, a),
                    Marker::Braille,
                    Slot::ChartCanary,
                ),
            ];
            if title.contains("p99") {
                data[0].0 = "base p50";
                data[1].0 = "canary p50";
                data.push((
                    "base p99",
                    pts(&series.baseline, b),
                    Marker::Dot,
                    Slot::ChartBaseline,
                ));
                data.push((
                    "canary p99",
                    pts(&series.candidate, b),
                    Marker::Braille,
                    Slot::ChartCanary,
                ));
            }
            let ymax = data
                .iter()
                .flat_map(|d| d.1.iter().map(|p| p.1))
                .fold(0.0f64, f64::max);
            let ymax = if ymax <= 0.0 { 1.0 } else { ymax * 1.15 };
            let last = |d: &[(f64, f64)]| d.last().map(|p| num(p.1)).unwrap_or_else(|| "-".into());
            let headline = if data.len() == 4 {
                format!(
                    " p50 {}/{} p99 {}/{} ms ",
                    last(&data[0].1),
                    last(&data[1].1),
                    last(&data[2].1),
                    last(&data[3].1)
                )
            } else {
                format!(" {title} {}/{} ", last(&data[0].1), last(&data[1].1))
            };
            let datasets: Vec<Dataset> = data
                .iter()
                .map(|(name, d, m, slot)| {
                    Dataset::default()
                        .name(*name)
                        .marker(*m)
                        .graph_type(GraphType::Line)
                        .style(self.style(*slot))
                        .data(d)
                })
                .collect();
            let axis = self.style(Slot::ChartAxis);
            let chart = Chart::new(datasets)
                .block(Block::default().title(Span::styled(headline, self.style(Slot::Title))))
                .x_axis(
                    Axis::default()
                        .style(axis)
                        .bounds([-window_s, 0.0])
                        .labels([
                            format!("-{}", short_duration(window_s as u64 * 1000)),
                            "now".to_string(),
                        ]),
                )
                .y_axis(
                    Axis::default()
                        .style(axis)
                        .bounds([0.0, ymax])
                        .labels(["0".to_string(), num(ymax)]),
                )
                .legend_position(None);
            f.render_widget(chart, r);
        }
    }

    /// Planned durations of a service's steps (ms; gates 0), when the plan is known.
    fn step_durations(&self, s: &ServiceState) -> Vec<(u64, bool)> {
        let plan_steps = self
            .plan
            .as_ref()
            .and_then(|p| p.services.iter().find(|x| x.name == s.name))
            .map(|sp| &sp.steps);
        match plan_steps {
            Some(steps) => steps
                .iter()
                .map(|p| (p.min_duration_ms, p.is_gate()))
                .collect(),
            None => s.steps.iter().map(|_| (0, false)).collect(),
        }
    }

    fn render_timeline(&mut self, f: &mut Frame, area: Rect) {
        let block = self.pane_block(" Rollout timeline ", Pane::Timeline);
        let inner = block.inner(area);
        f.render_widget(block, area);
        if self.state.services.is_empty() || inner.height < 2 {
            return;
        }
        let release_start = self.state.started_at_ms.unwrap_or(self.now_ms);
        let now_rel = self.now_ms.saturating_sub(release_start);
        // Start (relative) and planned length of every service; pending ones start when
        // their dependencies are expected to finish.
        // A fleet's timeline is the selected tenant's services (`render_fleet.rs`).
        let scope = self.fleet_timeline_scope();
        let in_scope = |i: usize| scope.as_ref().is_none_or(|v| v.contains(&i));
        let mut spans_of: Vec<(u64, Vec<(u64, bool)>)> =
            vec![(0, Vec::new()); self.state.services.len()];
        let mut ends: std::collections::HashMap<&str, u64> = Default::default();
        for (i, s) in self.state.services.iter().enumerate() {
            if !in_scope(i) {
                continue;
            }
            let durs = self.step_durations(s);
            let total: u64 = durs.iter().map(|d| d.0).sum();
            let start = match s.started_at_ms {
                Some(t) => t.saturating_sub(release_start),
                None => s
                    .depends_on
                    .iter()
                    .filter_map(|d| ends.get(d.as_str()).copied())
                    .max()
                    .unwrap_or(0)
                    .max(now_rel),
            };
            let end = match s.finished_at_ms {
                Some(t) => t.saturating_sub(release_start),
                None => start + total,
            };
            ends.insert(s.name.as_str(), end.max(start + total));
            spans_of[i] = (start, durs);
        }
        let horizon = ends
            .values()
            .copied()
            .max()
            .unwrap_or(0)
            .max(now_rel)
            .max(60_000);
        let name_w = self
            .state
            .services
            .iter()
            .enumerate()
            .filter(|(i, _)| in_scope(*i))
            .map(|(_, s)| s.name.chars().count())
            .chain(self.migration_names().iter().map(|m| m.chars().count() + 2))
            .max()
            .unwrap_or(6)
            .clamp(6, 18);
        let text_w: usize = 30;
        let width = inner.width as usize;
        let bar_w = width.saturating_sub(name_w + text_w + 2).max(10);
        let col = |t: u64| -> usize {
            ((t as f64 / horizon as f64) * (bar_w.saturating_sub(1)) as f64).round() as usize
        };
        let mut lines = Vec::new();
        // Axis.
        let mut axis: Vec<char> = vec!['─'; bar_w];
        let now_c = col(now_rel).min(bar_w - 1);
        axis[now_c] = '┃';
        let label_end = format!("+{}", short_duration(horizon));
        lines.push(Line::from(vec![
            Span::styled(pad("", name_w + 1), self.style(Slot::Dim)),
            Span::styled(
                axis.into_iter().collect::<String>(),
                self.style(Slot::ChartAxis),
            ),
            Span::styled(format!(" {label_end} (┃ now)"), self.style(Slot::Dim)),
        ]));
        // Rows in tree order; the migrations' rows below them.
        let order = scope.clone().unwrap_or_else(|| self.service_rows());
        let migrations: Vec<(String, Option<usize>)> = self
            .migration_names()
            .into_iter()
            .map(|name| {
                let wave = self.plan.as_ref().and_then(|p| {
                    p.migrations
                        .iter()
                        .find(|m| m.name == name)
                        .map(|m| m.expand_before_wave)
                });
                (name, wave)
            })
            .collect();
        let mig_rows = migrations
            .len()
            .min((inner.height as usize).saturating_sub(2));
        let visible = inner.height as usize - 1 - mig_rows;
        let sel_pos = order
            .iter()
            .position(|i| self.selected.as_deref() == Some(self.state.services[*i].name.as_str()))
            .unwrap_or(0);
        let first = sel_pos
            .saturating_sub(visible.saturating_sub(1))
            .min(order.len().saturating_sub(visible));
        for &i in order.iter().skip(first).take(visible) {
            let s = &self.state.services[i];
            let (start, durs) = &spans_of[i];
            let mut cells: Vec<(char, Slot)> = vec![(' ', Slot::Base); bar_w];
            let mut t = *start;
            for (k, (d, gate)) in durs.iter().enumerate() {
                let idx = k + 1;
                let a = col(t).min(bar_w - 1);
                let b = col(t + d).min(bar_w - 1).max(a);
                let (ch, slot) = if *gate {
                    ('◆', Slot::StepGate)
                } else if s.status == ServiceStatus::Promoted || idx < s.step {
                    ('━', Slot::StepDone)
                } else if idx == s.step {
                    ('█', Slot::StepActive)
                } else {
                    ('─', Slot::StepPending)
                };
                let slot =
                    if s.status == ServiceStatus::RolledBack || s.status == ServiceStatus::Failed {
                        if idx <= s.step {
                            Slot::HealthDown
                        } else {
                            Slot::StepPending
                        }
                    } else if *gate && idx == s.step {
                        Slot::Countdown
                    } else {
                        slot
                    };
                for c in cells.iter_mut().take(b + 1).skip(a) {
                    if c.0 == ' ' || *gate {
                        *c = (ch, slot);
                    }
                }
                t += d;
            }
            // Group cells into spans.
            let mut bar_spans: Vec<Span> = Vec::new();
            let mut cur = String::new();
            let mut cur_slot = Slot::Base;
            for (ch, slot) in cells {
                if slot != cur_slot && !cur.is_empty() {
                    bar_spans.push(Span::styled(std::mem::take(&mut cur), self.style(cur_slot)));
                }
                cur_slot = slot;
                cur.push(ch);
            }
            if !cur.is_empty() {
                bar_spans.push(Span::styled(cur, self.style(cur_slot)));
            }
            let (text, tslot) = self.timeline_text(s, durs);
            let selected = self.selected.as_deref() == Some(s.name.as_str());
            let mut spans = vec![Span::styled(
                format!("{} ", pad(&s.name, name_w)),
                if selected {
                    self.style(Slot::Selection)
                } else {
                    self.style(Slot::Base)
                },
            )];
            spans.extend(bar_spans);
            spans.push(Span::raw(" "));
            spans.push(Span::styled(truncate(&text, text_w), self.style(tslot)));
            lines.push(Line::from(spans));
        }
        for (name, wave) in migrations.iter().take(mig_rows) {
            let m = self.state.migration(name);
            let phase = m.map_or(MigrationPhase::Pending, |m| m.phase);
            let (glyph, word, slot) = migration_look(phase);
            // ━ while the expanded schema serves both revisions, ▲ expand, ▼ contract/undo.
            let mut cells: Vec<(char, Slot)> = vec![(' ', Slot::Base); bar_w];
            let at = |t: u64| col(t.saturating_sub(release_start)).min(bar_w - 1);
            if let Some(e) = m.and_then(|m| m.expanded_at_ms) {
                let a = at(e);
                let end = m
                    .and_then(|m| m.ended_at_ms)
                    .map_or(now_c, |t| at(t).max(a));
                for c in cells.iter_mut().take(end + 1).skip(a) {
                    *c = ('━', Slot::Database);
                }
                cells[a] = ('▲', slot);
                if let Some(t) = m.and_then(|m| m.ended_at_ms) {
                    cells[at(t).max(a)] = ('▼', slot);
                }
            } else if let Some(m) = m {
                cells[at(m.since_ms)] = (glyph.chars().next().unwrap_or('○'), slot);
            }
            let mut bar_spans: Vec<Span> = Vec::new();
            let mut cur = String::new();
            let mut cur_slot = Slot::Base;
            for (ch, s) in cells {
                if s != cur_slot && !cur.is_empty() {
                    bar_spans.push(Span::styled(std::mem::take(&mut cur), self.style(cur_slot)));
                }
                cur_slot = s;
                cur.push(ch);
            }
            if !cur.is_empty() {
                bar_spans.push(Span::styled(cur, self.style(cur_slot)));
            }
            let mut spans = vec![Span::styled(
                format!("{} ", pad(&format!("⛁ {name}"), name_w)),
                self.style(Slot::Database),
            )];
            spans.extend(bar_spans);
            spans.push(Span::raw(" "));
            let text = match wave {
                Some(w) if phase == MigrationPhase::Pending => {
                    format!("{glyph} {word} · before wave {}", w + 1)
                }
                _ => format!("{glyph} {word}"),
            };
            spans.push(Span::styled(truncate(&text, text_w), self.style(slot)));
            lines.push(Line::from(spans));
        }
        f.render_widget(Paragraph::new(lines), inner);
    }

    /// The words right of a service's bar: step, elapsed, remaining, countdowns.
    fn timeline_text(&self, s: &ServiceState, durs: &[(u64, bool)]) -> (String, Slot) {
        let (_, word, slot) = status_look(s.status);
        if s.status.is_terminal() {
            let took = match (s.started_at_ms, s.finished_at_ms) {
                (Some(a), Some(b)) => format!(" in {}", short_duration(b.saturating_sub(a))),
                _ => String::new(),
            };
            return (format!("{word}{took}"), slot);
        }
        if s.status == ServiceStatus::Pending {
            let total: u64 = durs.iter().map(|d| d.0).sum();
            return (
                format!("pending · ≥{}", short_duration(total)),
                Slot::HealthUnknown,
            );
        }
        if s.status == ServiceStatus::RollingBack {
            return (
                format!("rolling back · {}", s.reason.clone().unwrap_or_default()),
                slot,
            );
        }
        if let Some(g) = &s.gate {
            let what = match &g.kind {
                GateKind::Approval { .. } => "approval",
                GateKind::Promote => "promote",
            };
            let left = match g.deadline_ms {
                Some(d) => format!("{} left", short_duration(d.saturating_sub(self.now_ms))),
                None => format!(
                    "waiting {}",
                    short_duration(self.now_ms.saturating_sub(g.since_ms))
                ),
            };
            return (
                format!("◆ {}/{} {what} · {left}", s.step, s.steps.len()),
                Slot::Countdown,
            );
        }
        let elapsed = s
            .started_at_ms
            .map(|t| self.now_ms.saturating_sub(t))
            .unwrap_or(0);
        let step_left = s
            .wait_until_ms
            .map(|u| u.saturating_sub(self.now_ms))
            .unwrap_or(0);
        let rest: u64 = durs.iter().skip(s.step).map(|d| d.0).sum();
        (
            format!(
                "{}/{} · {} in · ≥{} left",
                s.step,
                s.steps.len(),
                short_duration(elapsed),
                short_duration(step_left + rest)
            ),
            slot,
        )
    }

    fn render_log(&mut self, f: &mut Frame, area: Rect) {
        let mut title = " Log ".to_string();
        if !self.log_filter.is_empty() {
            title = format!(" Log · filter \"{}\" ", self.log_filter);
        }
        if !self.show_service_output {
            title.push_str("· service output hidden ");
        }
        let block = self.pane_block(&title, Pane::Log);
        let styles = [
            self.style(Slot::LogError),
            self.style(Slot::LogWarn),
            self.style(Slot::LogInfo),
            self.style(Slot::LogDebug),
        ];
        if self.log_filter.is_empty() {
            // tui-logger's own view; service output hidden through its per-target level.
            let w = TuiLoggerWidget::default()
                .block(block)
                .formatter(Box::new(Formatter {
                    styles,
                    target_style: self.style(Slot::Dim),
                }))
                .state(&self.log_state);
            f.render_widget(w, area);
            return;
        }
        // Filtered: the matching records, newest at the bottom.
        let inner = block.inner(area);
        f.render_widget(block, area);
        let filter = self.log_filter.to_lowercase();
        let target_only = filter.strip_prefix("target:").map(|t| t.trim().to_string());
        let q = super::run::LOG_LINES
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let h = inner.height as usize;
        let mut lines: Vec<Line> = q
            .iter()
            .rev()
            .filter(|l| self.show_service_output || l.target != "service")
            .filter(|l| match &target_only {
                Some(t) => l.target.starts_with(t.as_str()),
                None => l.message.to_lowercase().contains(&filter) || l.target.contains(&filter),
            })
            .take(h)
            .map(|l| {
                let (lvl, st) = match l.level {
                    tracing::Level::ERROR => ("ERR", styles[0]),
                    tracing::Level::WARN => ("WRN", styles[1]),
                    tracing::Level::INFO => ("INF", styles[2]),
                    _ => ("DBG", styles[3]),
                };
                Line::from(vec![
                    Span::styled(
                        format!("{} {lvl} {:<7} ", l.at, truncate(&l.target, 7)),
                        self.style(Slot::Dim),
                    ),
                    Span::styled(
                        l.message
                            .chars()
                            .filter(|c| !c.is_control())
                            .collect::<String>(),
                        st,
                    ),
                ])
            })
            .collect();
        drop(q);
        if lines.is_empty() {
            lines.push(Line::from(Span::styled(
                "no log line matches the filter",
                self.style(Slot::Dim),
            )));
        }
        lines.reverse();
        f.render_widget(Paragraph::new(lines), inner);
    }

    pub(super) fn centered(area: Rect, w: u16, h: u16) -> Rect {
        let w = w.min(area.width.saturating_sub(2));
        let h = h.min(area.height.saturating_sub(2));
        Rect::new(
            area.x + (area.width - w) / 2,
            area.y + (area.height - h) / 2,
            w,
            h,
        )
    }

    pub(super) fn dialog_block<'a>(&self, title: &'a str) -> Block<'a> {
        Block::default()
            .borders(Borders::ALL)
            .border_type(BorderType::Double)
            .border_style(self.style(Slot::BorderFocused))
            .style(self.style(Slot::Dialog))
            .title(Span::styled(title, self.style(Slot::Title)))
    }

    fn keys_text(&self, action: Action) -> String {
        let mut keys: Vec<String> = Vec::new();
        for ctx in Context::ALL {
            if let Some(m) = self.keymap.bindings.get(&ctx) {
                for (k, a) in m {
                    if *a == action {
                        let s = if ctx == Context::Global {
                            k.to_string()
                        } else {
                            format!("{k} ({})", ctx.name())
                        };
                        if !keys.contains(&s) {
                            keys.push(s);
                        }
                    }
                }
            }
        }
        keys.join(" ")
    }

    fn render_help(&self, f: &mut Frame, area: Rect, scroll: usize) {
        let r = Self::centered(area, 100, area.height.saturating_sub(4));
        f.render_widget(Clear, r);
        let block = self.dialog_block(" Help: keys (Esc closes, ↑↓ scroll) ");
        let inner = block.inner(r);
        f.render_widget(block, r);
        let mut lines = vec![Line::from(Span::styled(
            "Rollback is one key and immediate; promote-all and abort ask first. Esc always backs out.",
            self.style(Slot::Dim),
        ))];
        for i in ACTIONS {
            let keys = self.keys_text(i.action);
            let allowed = self.allowed(i.action);
            let style = if allowed {
                self.style(Slot::Dialog)
            } else {
                self.style(Slot::Dim)
            };
            let mut desc = i.description.to_string();
            if !allowed {
                desc.push_str(" (hidden: read-only)");
            }
            lines.push(Line::from(vec![
                Span::styled(pad(&keys, 18), self.style(Slot::HintKey)),
                Span::styled(pad(i.name, 19), style.add_modifier(Modifier::BOLD)),
                Span::styled(desc, style),
            ]));
        }
        let scroll = scroll.min(lines.len().saturating_sub(1));
        f.render_widget(
            Paragraph::new(lines)
                .scroll((scroll as u16, 0))
                .wrap(Wrap { trim: false }),
            inner,
        );
    }

    fn render_palette(&self, f: &mut Frame, area: Rect, input: &str, selected: usize) {
        let items = self.palette_items(input);
        let h = (items.len() as u16 + 4)
            .min(area.height.saturating_sub(4))
            .max(6);
        let w = 96.min(area.width.saturating_sub(4));
        let r = Rect::new(area.x + (area.width - w) / 2, area.y + 2, w, h);
        f.render_widget(Clear, r);
        let block = self.dialog_block(
            " Command palette: Enter runs, Esc closes; type e.g. `rollback payments` ",
        );
        let inner = block.inner(r);
        f.render_widget(block, r);
        let mut lines = vec![Line::from(vec![
            Span::styled(": ", self.style(Slot::HintKey)),
            Span::styled(
                format!("{input}▏"),
                self.style(Slot::Dialog).add_modifier(Modifier::BOLD),
            ),
        ])];
        let visible = inner.height.saturating_sub(1) as usize;
        let first = selected.saturating_sub(visible.saturating_sub(1));
        for (n, a) in items.iter().enumerate().skip(first).take(visible) {
            let key = self
                .keymap
                .any_key_for(*a)
                .map(|(_, k)| k.to_string())
                .unwrap_or_default();
            let mut line = Line::from(vec![
                Span::styled(pad(&key, 9), self.style(Slot::HintKey)),
                Span::styled(
                    pad(a.name(), 19),
                    self.style(Slot::Dialog).add_modifier(Modifier::BOLD),
                ),
                Span::styled(a.info().description, self.style(Slot::Dialog)),
            ]);
            if n == selected {
                line = line.style(self.style(Slot::Selection));
            }
            lines.push(line);
        }
        f.render_widget(Paragraph::new(lines), inner);
    }

    fn render_confirm(&self, f: &mut Frame, area: Rect, question: &str) {
        let r = Self::centered(area, 72, 8);
        f.render_widget(Clear, r);
        let block = self.dialog_block(" Confirm ");
        let inner = block.inner(r);
        f.render_widget(block, r);
        let lines = vec![
            Line::from(Span::styled(
                question.to_string(),
                self.style(Slot::DialogDanger),
            )),
            Line::from(""),
            Line::from(vec![
                Span::styled("y", self.style(Slot::HintKey)),
                Span::raw(" yes, do it    "),
                Span::styled("n / Esc / Enter", self.style(Slot::HintKey)),
                Span::raw(" cancel"),
            ]),
        ];
        f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), inner);
    }

    fn render_quit(&self, f: &mut Frame, area: Rect) {
        let r = Self::centered(area, 74, if self.share.is_some() { 13 } else { 10 });
        f.render_widget(Clear, r);
        let block = self.dialog_block(" Quit while the release is running? ");
        let inner = block.inner(r);
        f.render_widget(block, r);
        let mut lines = vec![
            Line::from(format!(
                "{} is {}.",
                self.state.release,
                if self.state.status == ReleaseStatus::Paused {
                    "paused"
                } else {
                    "running"
                }
            )),
            Line::from(vec![
                Span::styled("p", self.style(Slot::HintKey)),
                Span::raw("  keep it, paused, and quit (resume later with `cutover resume`)"),
            ]),
            Line::from(vec![
                Span::styled("r", self.style(Slot::HintKey)),
                Span::raw("  roll back everything, then quit"),
            ]),
        ];
        if let Some(attach) = &self.share {
            lines.push(Line::from(vec![
                Span::styled("b", self.style(Slot::HintKey)),
                Span::raw("  keep running in the background (`cutover serve`), then quit;"),
            ]));
            lines.push(Line::from(Span::raw(format!(
                "   come back with `{attach}`"
            ))));
        }
        lines.extend([
            Line::from(vec![
                Span::styled("c / Esc", self.style(Slot::HintKey)),
                Span::raw("  cancel: stay here"),
            ]),
            Line::from(""),
            Line::from(Span::styled(
                "Either way the journal holds the state.",
                self.style(Slot::Dim),
            )),
        ]);
        f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), inner);
    }
}

fn num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Log lines: time, level, target, message (always at least one line: tui-logger
/// needs one per record).
struct Formatter {
    /// error, warn, info, debug
    styles: [Style; 4],
    target_style: Style,
}

impl LogFormatter for Formatter {
    fn min_width(&self) -> u16 {
        20
    }
    fn format(&self, width: usize, evt: &ExtLogRecord) -> Vec<Line<'_>> {
        let target = evt.target();
        let msg = evt.msg();
        let (lvl, style) = match evt.level {
            log::Level::Error => ("ERR", self.styles[0]),
            log::Level::Warn => ("WRN", self.styles[1]),
            log::Level::Info => ("INF", self.styles[2]),
            _ => ("DBG", self.styles[3]),
        };
        let head = format!(
            "{} {lvl} {:<7} ",
            evt.timestamp.strftime("%H:%M:%S"),
            truncate(target, 7)
        );
        let indent = head.chars().count();
        let avail = width.saturating_sub(indent).max(10);
        let chars: Vec<char> = msg.chars().filter(|c| !c.is_control()).collect();
        let mut out = Vec::new();
        for (n, chunk) in chars.chunks(avail).enumerate() {
            let text: String = chunk.iter().collect();
            if n == 0 {
                out.push(Line::from(vec![
                    Span::styled(head.clone(), self.target_style),
                    Span::styled(text, style),
                ]));
            } else {
                out.push(Line::from(vec![
                    Span::raw(" ".repeat(indent)),
                    Span::styled(text, style),
                ]));
            }
        }
        if out.is_empty() {
            out.push(Line::from(Span::styled(head, self.target_style)));
        }
        out
    }
}

/// The roster journaled with the release (empty without a policy).
fn st_roster(st: &crate::engine::ReleaseState) -> &crate::policy::Roster {
    static EMPTY: std::sync::OnceLock<crate::policy::Roster> = std::sync::OnceLock::new();
    match st.change_control.as_ref() {
        Some(cc) => &cc.roster,
        None => EMPTY.get_or_init(crate::policy::Roster::default),
    }
}

/// The policy's approval rule and roster journaled with the release, if any.
fn st_rule(
    st: &crate::engine::ReleaseState,
) -> Option<(&crate::policy::ApprovalRule, &crate::policy::Roster)> {
    let cc = st.change_control.as_ref()?;
    Some((cc.approval.as_ref()?, &cc.roster))
}
