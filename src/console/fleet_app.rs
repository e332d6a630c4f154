//! The fleet view's keys: collapse, the tenant filter, and the per-tenant commands
//! (rollback, retry, pause/resume, exclude with a reason, approve/reject of a tenant's
//! gate), sent as the engine's ordinary commands naming the tenant. No deployment rule:
//! whether a command may act is the engine's answer (`engine/fleet_commands.rs`).

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::engine::Command;
use crate::engine::state::TenantState;

use super::action::Action;
use super::app::{App, Effect, Overlay};
use super::fleet_tree::FleetTree;

impl App {
    /// Build the fleet tree when the release has tenants and its shape changed (O(1)
    /// otherwise), then select what its cursor is on.
    pub(super) fn sync_fleet(&mut self) {
        match &self.state.fleet {
            None => self.fleet = None,
            Some(f) => {
                let n = self.state.services.len();
                if !self.fleet.as_ref().is_some_and(|t| t.fits(f, n)) {
                    let names = self.state.services.iter().map(|s| s.name.as_str());
                    self.fleet = Some(FleetTree::new(f, names));
                }
            }
        }
    }

    /// With a fleet tree: the selected service is the one under its cursor (none on a
    /// ring or a tenant). `false` without one.
    pub(super) fn fleet_keep_selection(&mut self) -> bool {
        let Some(t) = &self.fleet else {
            return false;
        };
        let name = t.selected_name(&self.state.services).map(str::to_string);
        if name != self.selected {
            self.selected = name;
        }
        true
    }

    /// Move the fleet tree's cursor; `false` without a fleet tree.
    pub(super) fn fleet_move(&mut self, delta: isize) -> bool {
        let Some(t) = self.fleet.as_mut() else {
            return false;
        };
        t.move_by(delta);
        self.fleet_keep_selection()
    }

    /// The selected tenant (or the selected service's tenant).
    pub fn selected_tenant(&self) -> Option<&TenantState> {
        let t = self.fleet.as_ref()?.selected_tenant()?;
        self.state.fleet.as_ref()?.tenants.get(t)
    }

    /// `name` is a tenant of this release (a typed command may name one).
    pub(super) fn is_tenant(&self, name: &str) -> bool {
        self.state
            .fleet
            .as_ref()
            .is_some_and(|f| f.tenant(name).is_some())
    }

    fn need_tenant(&mut self, action: Action) -> Option<String> {
        if self.fleet.is_none() {
            self.toast(
                format!("{}: this release has no tenants", action.name()),
                true,
            );
            return None;
        }
        let name = self.selected_tenant().map(|t| t.name.clone());
        if name.is_none() {
            self.toast(
                format!(
                    "{}: select a tenant (or one of its services) first",
                    action.name()
                ),
                true,
            );
        }
        name
    }

    /// Carry out a fleet action.
    pub(super) fn fleet_action(&mut self, action: Action) -> Vec<Effect> {
        match action {
            Action::Collapse | Action::CollapseAll => {
                let (Some(t), Some(f)) = (self.fleet.as_mut(), self.state.fleet.as_ref()) else {
                    self.toast(
                        format!("{}: this release has no rings or tenants", action.name()),
                        true,
                    );
                    return Vec::new();
                };
                if action == Action::Collapse {
                    t.toggle(f);
                } else {
                    t.toggle_all(f);
                }
                self.fleet_keep_selection();
                Vec::new()
            }
            Action::TenantFilter => {
                if self.fleet.is_none() {
                    // Without tenants `/` filters the log, as it always did.
                    return self.dispatch(Action::LogFilter);
                }
                self.overlay = Overlay::TenantFilter;
                Vec::new()
            }
            Action::TenantRollback => match self.need_tenant(action) {
                Some(t) => self.send(Command::Rollback { service: Some(t) }),
                None => Vec::new(),
            },
            Action::TenantRetry => match self.need_tenant(action) {
                Some(service) => self.send(Command::Retry { service }),
                None => Vec::new(),
            },
            Action::TenantPause => {
                let Some(t) = self.need_tenant(action) else {
                    return Vec::new();
                };
                if self.selected_tenant().is_some_and(|x| x.paused) {
                    self.send(Command::Resume { service: Some(t) })
                } else {
                    self.send(Command::Pause { service: Some(t) })
                }
            }
            Action::TenantApprove => match self.need_tenant(action) {
                Some(service) => self.send(Command::Approve { service }),
                None => Vec::new(),
            },
            Action::TenantReject => match self.need_tenant(action) {
                Some(service) => self.send(Command::Reject { service }),
                None => Vec::new(),
            },
            Action::TenantExclude => {
                if let Some(tenant) = self.need_tenant(action) {
                    self.overlay = Overlay::Reason {
                        command: Command::Exclude { tenant },
                        input: String::new(),
                    };
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// Apply `text` as the tenant filter.
    fn set_tenant_filter(&mut self, text: &str) {
        if let (Some(t), Some(f)) = (self.fleet.as_mut(), self.state.fleet.as_ref()) {
            t.set_filter(text, f);
        }
        self.fleet_keep_selection();
    }

    /// Esc outside any dialog: clears an active tenant filter (`true` if it did).
    pub(super) fn clear_tenant_filter(&mut self) -> bool {
        if self.fleet.as_ref().is_some_and(|t| t.filtering()) {
            self.set_tenant_filter("");
            return true;
        }
        false
    }

    /// A key while the tenant filter or a reason is being typed.
    pub(super) fn fleet_overlay_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let typed = match key.code {
            KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => Some(c),
            _ => None,
        };
        match self.overlay.clone() {
            Overlay::TenantFilter => {
                let mut text = self
                    .fleet
                    .as_ref()
                    .map(|t| t.filter().to_string())
                    .unwrap_or_default();
                match key.code {
                    KeyCode::Esc => {
                        self.overlay = Overlay::None;
                        text.clear();
                    }
                    KeyCode::Enter => self.overlay = Overlay::None,
                    KeyCode::Backspace => {
                        text.pop();
                    }
                    _ => match typed {
                        Some(c) => text.push(c),
                        None => return Vec::new(),
                    },
                }
                self.set_tenant_filter(&text);
                Vec::new()
            }
            Overlay::Reason { command, mut input } => {
                match key.code {
                    KeyCode::Esc => {
                        self.overlay = Overlay::None;
                        self.toast(format!("{command}: cancelled"), false);
                    }
                    KeyCode::Enter if input.trim().is_empty() => {
                        self.toast(
                            format!("{command}: say why (the reason is journaled)"),
                            true,
                        );
                    }
                    KeyCode::Enter => {
                        self.overlay = Overlay::None;
                        self.in_flight += 1;
                        self.toast(format!("{command}: sent"), false);
                        return vec![Effect::SendWithNote {
                            command,
                            note: input.trim().to_string(),
                        }];
                    }
                    KeyCode::Backspace => {
                        input.pop();
                        self.overlay = Overlay::Reason { command, input };
                    }
                    _ => {
                        if let Some(c) = typed {
                            input.push(c);
                            self.overlay = Overlay::Reason { command, input };
                        }
                    }
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// A click on row `row` of the tree pane's rows (0 = first shown); `false` without a
    /// fleet tree.
    pub(super) fn fleet_click(&mut self, row: usize) -> bool {
        let Some(t) = self.fleet.as_mut() else {
            return false;
        };
        // The first lines of the pane are the budget and the rings' header.
        let header = super::render_fleet::HEADER_ROWS;
        if row >= header {
            t.click(row - header);
        }
        self.fleet_keep_selection()
    }
}
