//! Drawing the fleet view (a release with tenants): the tree of rings → tenants →
//! services with the failure budget's gauge and the bake countdown above it, the
//! selected ring's or tenant's detail (status, reason, gate, flags) in the detail pane,
//! and the reason prompt of `exclude`. Pure functions of the [`App`] and the time it
//! holds; only the rows in the pane's window are drawn.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};

use crate::engine::Command;
use crate::engine::state::{FleetState, RingState, RingStatus, TenantState, TenantStatus};

use super::app::{App, Pane};
use super::fleet_tree::{FleetNode, FleetRow};
use super::render::{pad, short_duration, status_look, truncate};
use super::theme::Slot;

/// Lines above the tree's rows: the budget gauge and the rings' progress.
pub const HEADER_ROWS: usize = 2;

/// Glyph, word and slot of a tenant (a gate or a pause says more than the status).
pub fn tenant_look(t: &TenantState) -> (&'static str, &'static str, Slot) {
    if t.awaiting.is_some() {
        return ("?", "awaiting approval", Slot::Countdown);
    }
    if t.paused && !t.status.is_terminal() {
        return ("‖", "paused", Slot::HealthDegraded);
    }
    if t.frozen.is_some() && t.status == TenantStatus::Pending {
        return ("◌", "frozen", Slot::Countdown);
    }
    match t.status {
        TenantStatus::Pending => ("○", "pending", Slot::HealthUnknown),
        TenantStatus::Running => ("◑", "running", Slot::StatusActive),
        TenantStatus::Promoted => ("●", "promoted", Slot::HealthOk),
        TenantStatus::RolledBack => ("⟲", "rolled back", Slot::HealthDown),
        TenantStatus::Failed => ("✖", "failed", Slot::HealthDown),
        TenantStatus::Skipped => ("–", "skipped", Slot::HealthUnknown),
        TenantStatus::Excluded => ("⊘", "excluded", Slot::HealthDegraded),
    }
}

/// Glyph, word and slot of a ring.
pub fn ring_look(s: RingStatus) -> (&'static str, &'static str, Slot) {
    match s {
        RingStatus::Pending => ("○", "pending", Slot::HealthUnknown),
        RingStatus::Running => ("◑", "running", Slot::StatusActive),
        RingStatus::Baking => ("◎", "baking", Slot::Countdown),
        RingStatus::Done => ("●", "done", Slot::HealthOk),
    }
}

/// "1 of 2 failures used", with a gauge: a cell per failure the budget allows (at most
/// 20, each then a share of it), `✖` for failures beyond it.
pub fn budget_text(f: &FleetState) -> (String, String) {
    let cells = f.budget.min(20);
    let used = (f.failures.min(f.budget) * cells).div_ceil(f.budget.max(1));
    let over = f.failures.saturating_sub(f.budget).min(5);
    let gauge = format!(
        "[{}{}{}]",
        "■".repeat(used),
        "□".repeat(cells - used),
        "✖".repeat(over)
    );
    let word = if f.budget == 1 { "failure" } else { "failures" };
    (gauge, format!("{} of {} {word} used", f.failures, f.budget))
}

impl App {
    /// "bake 7m12s left" of a baking ring, from its deadline and the console's clock.
    fn bake_left(&self, r: &RingState) -> Option<String> {
        let until = r.bake_until_ms.filter(|_| r.status == RingStatus::Baking)?;
        Some(format!(
            "bake {} left",
            short_duration(until.saturating_sub(self.now_ms))
        ))
    }

    /// The second header line: the ring baking (its countdown) or running (its progress).
    fn rings_line(&self, f: &FleetState) -> (String, Slot) {
        if let Some(r) = f.rings.iter().find(|r| r.status == RingStatus::Baking) {
            let left = self.bake_left(r).unwrap_or_default();
            return (format!("ring {} baking · {left}", r.name), Slot::Countdown);
        }
        if let Some(r) = f.rings.iter().find(|r| r.status == RingStatus::Running) {
            let (done, flight) = r.tenants.iter().filter_map(|t| f.tenants.get(*t)).fold(
                (0, 0),
                |(d, i), t| match t.status {
                    TenantStatus::Running => (d, i + 1),
                    s if s.is_terminal() => (d + 1, i),
                    _ => (d, i),
                },
            );
            return (
                format!(
                    "ring {} running · {done}/{} done, {flight} in flight (max {})",
                    r.name,
                    r.tenants.len(),
                    r.max_parallel
                ),
                Slot::StatusActive,
            );
        }
        let done = f
            .rings
            .iter()
            .filter(|r| r.status == RingStatus::Done)
            .count();
        if done == f.rings.len() {
            ("every ring done".into(), Slot::HealthOk)
        } else {
            (
                format!("{done} of {} rings done", f.rings.len()),
                Slot::HealthUnknown,
            )
        }
    }

    pub(super) fn render_fleet_tree(&mut self, f: &mut Frame, area: Rect) {
        let title = match self.fleet.as_ref().filter(|t| t.filtering()) {
            Some(t) => format!(" Fleet · filter \"{}\" (Esc clears) ", t.filter()),
            None => " Fleet: rings → tenants → services ".to_string(),
        };
        let block = self.pane_block(&title, Pane::Tree);
        let inner = block.inner(area);
        f.render_widget(block, area);
        let (Some(fleet), Some(_)) = (self.state.fleet.as_ref(), self.fleet.as_ref()) else {
            return;
        };
        let width = inner.width as usize;
        let mut lines = Vec::with_capacity(inner.height as usize);
        let (gauge, used) = budget_text(fleet);
        let gauge_slot = if fleet.exceeded.is_some() || fleet.failures > fleet.budget {
            Slot::HealthDown
        } else if fleet.failures > 0 {
            Slot::HealthDegraded
        } else {
            Slot::HealthOk
        };
        let mut head = vec![
            Span::styled("budget ", self.style(Slot::Dim)),
            Span::styled(format!("{gauge} "), self.style(gauge_slot)),
            Span::styled(used, self.style(gauge_slot)),
        ];
        if let Some(why) = &fleet.exceeded {
            head.push(Span::styled(
                format!(" · EXCEEDED: {why}"),
                self.style(Slot::HealthDown).add_modifier(Modifier::BOLD),
            ));
        }
        lines.push(Line::from(head));
        let (rings, slot) = self.rings_line(fleet);
        lines.push(Line::from(Span::styled(
            truncate(&rings, width),
            self.style(slot),
        )));
        let h = (inner.height as usize).saturating_sub(HEADER_ROWS);
        let Some(tree) = self.fleet.as_mut() else {
            return;
        };
        tree.scroll(h);
        let (offset, cursor) = (tree.offset, tree.cursor);
        let Some(tree) = self.fleet.as_ref() else {
            return;
        };
        if tree.rows.is_empty() {
            lines.push(Line::from(Span::styled(
                format!(
                    "no tenant matches \"{}\" (name, or tag:TAG; Esc clears)",
                    tree.filter()
                ),
                self.style(Slot::Dim),
            )));
        }
        let name_w = tree.name_w.min(width / 2).max(6);
        for (k, row) in tree.rows.iter().enumerate().skip(offset).take(h) {
            let mut line = self.fleet_row(fleet, row, name_w, width);
            if k == cursor {
                line = line.style(self.style(Slot::Selection));
            }
            lines.push(line);
        }
        f.render_widget(Paragraph::new(lines), inner);
    }

    fn fleet_row(
        &self,
        fleet: &FleetState,
        row: &FleetRow,
        name_w: usize,
        width: usize,
    ) -> Line<'static> {
        let branch = if row.last { "└─" } else { "├─" };
        let mut spans: Vec<Span<'static>> = Vec::with_capacity(8);
        let (prefix, name, look, rest) = match row.node {
            FleetNode::Ring(r) => {
                let Some(ring) = fleet.rings.get(r) else {
                    return Line::default();
                };
                let open = self.fleet.as_ref().is_some_and(|t| t.ring_shown_open(r));
                let promoted = ring
                    .tenants
                    .iter()
                    .filter_map(|t| fleet.tenants.get(*t))
                    .filter(|t| t.status == TenantStatus::Promoted)
                    .count();
                let mut rest = format!("{promoted}/{} promoted", ring.tenants.len());
                match self.bake_left(ring) {
                    Some(left) => rest = format!("{left} · {rest}"),
                    None if ring.bake_ms > 0 => {
                        rest.push_str(&format!(" · bake {}", short_duration(ring.bake_ms)))
                    }
                    None => {}
                }
                (
                    if open { "▾ " } else { "▸ " }.to_string(),
                    format!("ring {}", ring.name),
                    ring_look(ring.status),
                    rest,
                )
            }
            FleetNode::Tenant(t) => {
                let Some(tenant) = fleet.tenants.get(t) else {
                    return Line::default();
                };
                let open = self.fleet.as_ref().is_some_and(|x| x.is_open(t));
                let rest = match (&tenant.awaiting, &tenant.reason) {
                    (Some(g), _) => {
                        let left = match g.deadline_ms {
                            Some(d) => {
                                format!("{} left", short_duration(d.saturating_sub(self.now_ms)))
                            }
                            None => "no timeout".to_string(),
                        };
                        format!("{left} · {} approved", g.approvals.len())
                    }
                    (None, Some(r)) => r.clone(),
                    (None, None) => match &tenant.frozen {
                        Some(f) => format!(
                            "window {} · {} left",
                            f.window,
                            short_duration(f.until_ms.saturating_sub(self.now_ms))
                        ),
                        None => tenant.tags.join(" "),
                    },
                };
                (
                    format!("{branch}{}", if open { "▾ " } else { "▸ " }),
                    tenant.name.clone(),
                    tenant_look(tenant),
                    rest,
                )
            }
            FleetNode::Service { index, .. } => {
                let Some(s) = self.state.services.get(index) else {
                    return Line::default();
                };
                let (glyph, word, slot) = status_look(s.status);
                let short = s.name.split_once('/').map_or(s.name.as_str(), |x| x.1);
                let weights = if s.weights.is_empty() {
                    format!("{}→{}", s.baseline, s.candidate)
                } else {
                    s.weights
                        .iter()
                        .map(|(r, w)| format!("{r} {w}%"))
                        .collect::<Vec<_>>()
                        .join(" · ")
                };
                (
                    format!("{}{branch}", if row.parent_last { "  " } else { "│ " }),
                    short.to_string(),
                    (glyph, word, slot),
                    weights,
                )
            }
        };
        let (glyph, word, slot) = look;
        let nw = name_w.saturating_sub(prefix.chars().count()).max(4);
        spans.push(Span::styled(prefix, self.style(Slot::Dim)));
        spans.push(Span::styled(format!("{glyph} "), self.style(slot)));
        spans.push(Span::styled(
            pad(&name, nw),
            self.style(Slot::Base).add_modifier(Modifier::BOLD),
        ));
        spans.push(Span::raw(" "));
        spans.push(Span::styled(format!("{word:<11}"), self.style(slot)));
        spans.push(Span::raw(" "));
        let used: usize = spans.iter().map(|s| s.content.chars().count()).sum();
        spans.push(Span::styled(
            truncate(&rest, width.saturating_sub(used)),
            self.style(Slot::Dim),
        ));
        Line::from(spans)
    }

    /// The detail pane when a ring or a tenant is selected; `false` otherwise (a
    /// service's health pane is drawn as always).
    pub(super) fn render_fleet_detail(&mut self, f: &mut Frame, area: Rect) -> bool {
        let (Some(fleet), Some(node)) = (
            self.state.fleet.as_ref(),
            self.fleet.as_ref().and_then(|t| t.selected()),
        ) else {
            return false;
        };
        let (title, lines) = match node {
            FleetNode::Service { .. } => return false,
            FleetNode::Ring(r) => match fleet.rings.get(r) {
                Some(ring) => (
                    format!(" Ring: {} ", ring.name),
                    self.ring_detail(fleet, ring),
                ),
                None => return false,
            },
            FleetNode::Tenant(t) => match fleet.tenants.get(t) {
                Some(tenant) => (
                    format!(" Tenant: {} ", tenant.name),
                    self.tenant_detail(fleet, t, tenant),
                ),
                None => return false,
            },
        };
        let block = self.pane_block(&title, Pane::Health);
        let inner = block.inner(area);
        f.render_widget(block, area);
        f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
        true
    }

    fn ring_detail(&self, fleet: &FleetState, ring: &RingState) -> Vec<Line<'static>> {
        let (glyph, word, slot) = ring_look(ring.status);
        let mut head = vec![Span::styled(format!("{glyph} {word}"), self.style(slot))];
        if let Some(left) = self.bake_left(ring) {
            head.push(Span::styled(
                format!(" · {left}"),
                self.style(Slot::Countdown),
            ));
        }
        head.push(Span::raw(format!(
            "  {} tenant(s), at most {} at once, bake {}",
            ring.tenants.len(),
            ring.max_parallel,
            short_duration(ring.bake_ms)
        )));
        let mut counts: Vec<(&'static str, usize)> = Vec::new();
        for t in ring.tenants.iter().filter_map(|t| fleet.tenants.get(*t)) {
            let w = tenant_look(t).1;
            match counts.iter_mut().find(|(x, _)| *x == w) {
                Some(c) => c.1 += 1,
                None => counts.push((w, 1)),
            }
        }
        let counts = counts
            .iter()
            .map(|(w, n)| format!("{n} {w}"))
            .collect::<Vec<_>>()
            .join(", ");
        let (gauge, used) = budget_text(fleet);
        vec![
            Line::from(head),
            Line::from(format!("tenants: {counts}")),
            Line::from(Span::styled(
                format!("failure budget of the release {gauge} {used}"),
                self.style(Slot::Dim),
            )),
        ]
    }

    fn tenant_detail(
        &self,
        fleet: &FleetState,
        index: usize,
        t: &TenantState,
    ) -> Vec<Line<'static>> {
        let (glyph, word, slot) = tenant_look(t);
        let ring = fleet.rings.get(t.ring).map_or("-", |r| r.name.as_str());
        let mut lines = vec![Line::from(vec![
            Span::styled(format!("{glyph} {word}"), self.style(slot)),
            Span::raw(format!("  ring {ring}")),
            Span::styled(
                if t.tags.is_empty() {
                    String::new()
                } else {
                    format!("  tags {}", t.tags.join(", "))
                },
                self.style(Slot::Dim),
            ),
        ])];
        if t.paused {
            lines.push(Line::from(Span::styled(
                format!("paused ({}): it does not go on until resumed", t.status),
                self.style(Slot::HealthDegraded),
            )));
        }
        if let Some(f) = &t.frozen {
            lines.push(Line::from(Span::styled(
                format!(
                    "held by freeze window {}: starts once it closes, {} left",
                    f.window,
                    short_duration(f.until_ms.saturating_sub(self.now_ms))
                ),
                self.style(Slot::Countdown),
            )));
        }
        if let Some(g) = &t.awaiting {
            let left = match g.deadline_ms {
                Some(d) => format!("{} left", short_duration(d.saturating_sub(self.now_ms))),
                None => "no timeout".into(),
            };
            let who = if g.approvals.is_empty() {
                String::new()
            } else {
                format!(" ({})", g.approvals.join(", "))
            };
            lines.push(Line::from(Span::styled(
                format!(
                    "approval gate open: {} approved{who}; {left}",
                    g.approvals.len()
                ),
                self.style(Slot::Countdown),
            )));
        }
        if let Some(r) = &t.reason {
            lines.push(Line::from(Span::styled(
                format!("reason: {r}"),
                self.style(slot),
            )));
        }
        if t.counted {
            lines.push(Line::from(Span::styled(
                "counted against the failure budget",
                self.style(Slot::HealthDown),
            )));
        }
        let file = fleet.flags_file.as_deref().unwrap_or("the flags file");
        let written = t.status == TenantStatus::Promoted;
        lines.push(Line::from(vec![
            Span::styled("flags ", self.style(Slot::Title)),
            Span::styled(
                if t.flags.is_empty() {
                    "none".to_string()
                } else if written {
                    format!("written to {file} (promoted)")
                } else {
                    format!("not written to {file} (written once it promotes)")
                },
                self.style(if written { Slot::HealthOk } else { Slot::Dim }),
            ),
        ]));
        for (k, v) in &t.flags {
            let was = t
                .flags_before
                .as_ref()
                .and_then(|b| b.get(k))
                .filter(|b| *b != v)
                .map(|b| format!("  (before: {b})"))
                .unwrap_or_default();
            lines.push(Line::from(format!("  {k} = {v}{was}")));
        }
        let services: Vec<Span<'static>> = self
            .fleet
            .as_ref()
            .and_then(|x| x.services.get(index))
            .map(|v| {
                v.iter()
                    .filter_map(|i| self.state.services.get(*i))
                    .flat_map(|s| {
                        let (g, w, sl) = status_look(s.status);
                        let short = s.name.split_once('/').map_or(s.name.as_str(), |x| x.1);
                        [
                            Span::styled(format!("{g} "), self.style(sl)),
                            Span::raw(format!("{short} {}  ", w.to_lowercase())),
                        ]
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut l = vec![Span::styled("services ", self.style(Slot::Title))];
        l.extend(services);
        lines.push(Line::from(l));
        lines
    }

    /// The services the timeline shows for a fleet: the selected tenant's (none on a
    /// ring); `None` without a fleet (every service).
    pub(super) fn fleet_timeline_scope(&self) -> Option<Vec<usize>> {
        let t = self.fleet.as_ref()?;
        Some(
            t.selected_tenant()
                .and_then(|i| t.services.get(i))
                .cloned()
                .unwrap_or_default(),
        )
    }

    /// The tenant filter being typed, in the bottom line.
    pub(super) fn render_tenant_filter_hint(&self, spans: &mut Vec<Span<'static>>) {
        let text = self
            .fleet
            .as_ref()
            .map(|t| t.filter().to_string())
            .unwrap_or_default();
        spans.push(Span::styled(
            "tenant filter (name or tag:TAG): ",
            self.style(Slot::HintText),
        ));
        spans.push(Span::styled(format!("{text}▏"), self.style(Slot::HintKey)));
        spans.push(Span::styled(
            "  Enter keep  Esc clears",
            self.style(Slot::HintText),
        ));
    }

    /// The prompt of a command that needs a reason (`exclude TENANT`).
    pub(super) fn render_reason(&self, f: &mut Frame, area: Rect, command: &Command, input: &str) {
        let r = Self::centered(area, 72, 9);
        f.render_widget(Clear, r);
        let block = self.dialog_block(" Reason ");
        let inner = block.inner(r);
        f.render_widget(block, r);
        let question = self.question(command);
        let lines = vec![
            Line::from(Span::styled(question, self.style(Slot::DialogDanger))),
            Line::from(""),
            Line::from(vec![
                Span::styled("why: ", self.style(Slot::HintKey)),
                Span::styled(
                    format!("{input}▏"),
                    self.style(Slot::Dialog).add_modifier(Modifier::BOLD),
                ),
            ]),
            Line::from(vec![
                Span::styled("Enter", self.style(Slot::HintKey)),
                Span::raw(" sends (the reason is journaled)    "),
                Span::styled("Esc", self.style(Slot::HintKey)),
                Span::raw(" cancels"),
            ]),
        ];
        f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), inner);
    }
}
