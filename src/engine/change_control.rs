//! The engine's side of change control (issue 16): the policy journaled with the release
//! (`ReleaseState::change_control`) is what it enforces, on a fresh run and on resume.
//!
//! - **Freeze windows mid-release.** Before a service starts (the next wave, or the next
//!   service a full `max_parallel` held back), the engine asks the pure
//!   `policy::freeze::frozen_at` on its own clock. Inside a window it starts nothing,
//!   journals `FreezeHeld` once with the window's name and its end, and journals
//!   `FreezeLifted` and goes on by itself when the window closes. Services already rolling
//!   out finish their steps (a freeze stops new changes; it does not strand a half-shifted
//!   split). An operator's `resume` does not lift a freeze: breaking one is a decision made
//!   at the start with `--break-glass` and its approvals, which then covers the whole run.
//! - **Who may approve.** An approval gate's rule is the policy's `[approval]` tightened by
//!   the step's own `approvers`, `approvals` and `four_eyes` (`policy::roster::gate_rule`):
//!   `max(step's approvals, rule's required)` distinct people, each allowed by the gate's
//!   approvers and by the policy's, and with four eyes (either's) not the person who
//!   started the release. The rule is journaled on the gate (`GateWaiting`); a refusal
//!   says why and is journaled.

use super::reconciler::{Engine, EngineError};
use super::state::EventKind;
use crate::plan::Action;
use crate::policy::{ApprovalRule, Roster, freeze, roster};

impl Engine {
    /// Whether a freeze window holds new services back now; journals the hold when it
    /// begins and its lifting when it ends.
    pub(super) fn frozen_now(&mut self) -> Result<bool, EngineError> {
        let open = self.open_freeze();
        match (open, self.state.frozen.clone()) {
            (Some(a), held) => {
                let until_ms = a.ends_ms();
                if held.is_none_or(|h| h.window != a.name || h.until_ms != until_ms) {
                    self.emit(EventKind::FreezeHeld {
                        window: a.name.clone(),
                        until_ms,
                        until: a.ends_text(),
                    })?;
                }
                Ok(true)
            }
            (None, Some(h)) => {
                self.emit(EventKind::FreezeLifted { window: h.window })?;
                Ok(false)
            }
            (None, None) => Ok(false),
        }
    }

    /// The window open now that applies to this release, unless a break-glass covers it.
    fn open_freeze(&self) -> Option<freeze::Active> {
        let cc = self.state.change_control.as_ref()?;
        if cc.break_glass.is_some() || cc.freeze.is_empty() {
            return None;
        }
        let windows: Vec<freeze::Compiled> = cc
            .freeze
            .iter()
            .filter_map(|w| freeze::Compiled::new(w).ok())
            .collect();
        freeze::frozen_at(
            &windows,
            self.state.environment.as_deref(),
            freeze::instant(self.clock.now_ms()),
        )
    }

    /// The rule `name`'s approval gate enforces: the policy's `[approval]` (journaled
    /// with the release) tightened by the step's own `approvers`, `approvals` and
    /// `four_eyes` (`policy::roster::gate_rule`). `None`: anyone, the step's count.
    pub(super) fn gate_rule(&self, name: &str) -> Option<ApprovalRule> {
        let policy = self
            .state
            .change_control
            .as_ref()
            .and_then(|c| c.approval.as_ref());
        let (approvers, approvals, four_eyes) = match self.runs[name].step().map(|x| &x.action) {
            Some(Action::Approval {
                approvers,
                approvals,
                four_eyes,
                ..
            }) => (approvers.as_slice(), *approvals, *four_eyes),
            _ => (&[][..], 1, false),
        };
        roster::gate_rule(
            policy,
            &roster::GateAsk {
                approvers,
                approvals,
                four_eyes,
            },
        )
    }

    /// `; may approve: 2 of group:dba (carol, dave), not the person who started it`.
    pub(super) fn gate_rule_text(&self, rule: Option<&ApprovalRule>) -> String {
        rule.map(|r| format!("; may approve: {}", r.describe(self.roster())))
            .unwrap_or_default()
    }

    fn roster(&self) -> &Roster {
        static EMPTY: std::sync::OnceLock<Roster> = std::sync::OnceLock::new();
        match self.state.change_control.as_ref() {
            Some(c) => &c.roster,
            None => EMPTY.get_or_init(Roster::default),
        }
    }

    /// Why `operator` may not approve `name`'s waiting gate, with the rule in force.
    pub(super) fn approval_refusal(
        &self,
        name: &str,
        operator: &str,
        so_far: &[String],
    ) -> Option<String> {
        let rule = self.gate_rule(name)?;
        let roster = self.roster();
        rule.check(roster, operator, self.state.operator.as_deref(), so_far)
            .err()
            .map(|why| {
                format!(
                    "{why} (approving {name}: {}; {} of {} approvals so far)",
                    rule.describe(roster),
                    so_far.len(),
                    rule.required
                )
            })
    }

    /// How many different people `name`'s waiting gate needs under its rule.
    pub(super) fn rule_required(&self, name: &str) -> Option<u32> {
        self.gate_rule(name).map(|r| r.required)
    }
}
