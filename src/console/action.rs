//! The vocabulary key bindings map to. Each action has a name (used in keymap files and
//! the command palette), a description (help, palette) and flags: `dangerous` actions
//! change the release and are hidden by `--read-only`; `confirm` actions ask first,
//! naming their target.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Action {
    Quit,
    Help,
    Palette,
    FocusNext,
    FocusPrev,
    Up,
    Down,
    Top,
    Bottom,
    PageUp,
    PageDown,
    Zoom,
    LogFilter,
    LogToggleService,
    Start,
    Pause,
    PauseService,
    PromoteStep,
    PromoteAll,
    Rollback,
    RollbackRelease,
    Approve,
    Reject,
    Retry,
    Abort,
    Contract,
    ApproveBreakGlass,
    Suspend,
    ToggleMouse,
    TenantRollback,
    TenantRetry,
    TenantPause,
    TenantExclude,
    TenantApprove,
    TenantReject,
    Collapse,
    CollapseAll,
    TenantFilter,
}

/// What the help overlay and the palette say about an action.
#[derive(Debug, Clone, Copy)]
pub struct ActionInfo {
    pub action: Action,
    pub name: &'static str,
    pub description: &'static str,
    /// Changes the release: hidden by `--read-only`.
    pub dangerous: bool,
    /// Asks for confirmation naming the target first.
    pub confirm: bool,
}

const fn info(
    action: Action,
    name: &'static str,
    description: &'static str,
    dangerous: bool,
    confirm: bool,
) -> ActionInfo {
    ActionInfo {
        action,
        name,
        description,
        dangerous,
        confirm,
    }
}

/// Every action, in the order the help overlay lists them.
pub const ACTIONS: &[ActionInfo] = &[
    info(Action::Start, "start", "start the release", true, false),
    info(
        Action::Pause,
        "pause",
        "pause or resume the whole release",
        true,
        false,
    ),
    info(
        Action::PauseService,
        "pause-service",
        "pause or resume the selected service",
        true,
        false,
    ),
    info(
        Action::PromoteStep,
        "promote",
        "selected service: go on to its next step now (ends a pause, an analysis, a promote gate)",
        true,
        false,
    ),
    info(
        Action::PromoteAll,
        "promote-all",
        "selected service: skip every remaining step, all traffic to the candidate (asks first)",
        true,
        true,
    ),
    info(
        Action::Rollback,
        "rollback",
        "roll the selected service back now: all traffic to its baseline (journaled; retry later)",
        true,
        false,
    ),
    info(
        Action::RollbackRelease,
        "rollback-release",
        "roll back every service of the release now",
        true,
        false,
    ),
    info(
        Action::Approve,
        "approve",
        "approve the selected service's approval gate",
        true,
        false,
    ),
    info(
        Action::Reject,
        "reject",
        "reject the selected service's approval gate (it rolls back)",
        true,
        false,
    ),
    info(
        Action::Retry,
        "retry",
        "roll a rolled-back or failed service out again",
        true,
        false,
    ),
    info(
        Action::Contract,
        "contract",
        "confirm the contract of a migration that waits for it (asks first, naming it; one-way)",
        true,
        true,
    ),
    info(
        Action::ApproveBreakGlass,
        "approve-break-glass",
        "approve the break-glass this release waits for, inside a freeze window (asks first, naming the reason)",
        true,
        true,
    ),
    info(
        Action::Abort,
        "abort",
        "abort the release: in-flight services roll back, pending ones are skipped (asks first)",
        true,
        true,
    ),
    info(
        Action::TenantRollback,
        "tenant-rollback",
        "roll back the selected tenant (or its service's tenant) now",
        true,
        false,
    ),
    info(
        Action::TenantRetry,
        "tenant-retry",
        "roll a tenant that did not promote out again",
        true,
        false,
    ),
    info(
        Action::TenantPause,
        "tenant-pause",
        "pause or resume the selected tenant",
        true,
        false,
    ),
    info(
        Action::TenantExclude,
        "tenant-exclude",
        "leave the selected tenant out (asks why; budget not charged)",
        true,
        false,
    ),
    info(
        Action::TenantApprove,
        "tenant-approve",
        "approve the selected tenant's approval gate",
        true,
        false,
    ),
    info(
        Action::TenantReject,
        "tenant-reject",
        "reject the selected tenant's approval gate (counts as failed)",
        true,
        false,
    ),
    info(
        Action::Up,
        "up",
        "select the previous service / scroll up",
        false,
        false,
    ),
    info(
        Action::Down,
        "down",
        "select the next service / scroll down",
        false,
        false,
    ),
    info(Action::Top, "top", "select the first service", false, false),
    info(
        Action::Bottom,
        "bottom",
        "select the last service",
        false,
        false,
    ),
    info(Action::PageUp, "page-up", "move a page up", false, false),
    info(
        Action::PageDown,
        "page-down",
        "move a page down",
        false,
        false,
    ),
    info(
        Action::Collapse,
        "collapse",
        "fleet tree: collapse or expand the selected ring or tenant",
        false,
        false,
    ),
    info(
        Action::CollapseAll,
        "collapse-all",
        "fleet tree: collapse everything (again: expand everything)",
        false,
        false,
    ),
    info(
        Action::TenantFilter,
        "tenant-filter",
        "fleet tree: filter tenants by name or `tag:TAG` (Esc clears)",
        false,
        false,
    ),
    info(
        Action::FocusNext,
        "focus-next",
        "focus the next pane",
        false,
        false,
    ),
    info(
        Action::FocusPrev,
        "focus-prev",
        "focus the previous pane",
        false,
        false,
    ),
    info(
        Action::Zoom,
        "zoom",
        "zoom the focused pane to the whole screen (again: back)",
        false,
        false,
    ),
    info(
        Action::LogFilter,
        "log-filter",
        "filter the log by text (`target:service` keeps one target)",
        false,
        false,
    ),
    info(
        Action::LogToggleService,
        "log-service-output",
        "show or hide service output in the log",
        false,
        false,
    ),
    info(
        Action::ToggleMouse,
        "mouse",
        "turn mouse support on or off",
        false,
        false,
    ),
    info(Action::Help, "help", "show or hide this help", false, false),
    info(
        Action::Palette,
        "palette",
        "command palette: every action, or type a command such as `rollback payments`",
        false,
        false,
    ),
    info(
        Action::Suspend,
        "suspend",
        "suspend to the shell (fg to come back)",
        false,
        false,
    ),
    info(
        Action::Quit,
        "quit",
        "quit (mid-release: asks whether to pause or roll back)",
        false,
        false,
    ),
];

impl Action {
    pub fn info(self) -> &'static ActionInfo {
        ACTIONS
            .iter()
            .find(|i| i.action == self)
            .unwrap_or(&ACTIONS[ACTIONS.len() - 1])
    }
    pub fn name(self) -> &'static str {
        self.info().name
    }
    pub fn from_name(name: &str) -> Option<Action> {
        ACTIONS.iter().find(|i| i.name == name).map(|i| i.action)
    }
    pub fn dangerous(self) -> bool {
        self.info().dangerous
    }

    /// Only means something for a release with tenants (the palette leaves it out
    /// otherwise).
    pub fn fleet_only(self) -> bool {
        self.name().starts_with("tenant-") || self.name().starts_with("collapse")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_is_listed_once_with_a_unique_name() {
        let mut names: Vec<_> = ACTIONS.iter().map(|i| i.name).collect();
        names.sort();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n);
        for i in ACTIONS {
            assert_eq!(Action::from_name(i.name), Some(i.action));
            assert_eq!(i.action.info().name, i.name);
        }
    }
}
