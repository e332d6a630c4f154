//! The engine's side of change control (issue 16): the policy journaled with the release
//! (`ReleaseState::change_control`) is what it enforces, on a fresh run and on resume.
//!
//! - **Freeze windows mid-release.** Before a service starts (the next wave, or the next
//!   service a full `max_parallel` held back), the engine asks the pure
//!   `policy::freeze::frozen_at` on its own clock. Inside a window it starts nothing,
//!   journals `FreezeHeld` once with the window's name and its end, and journals
//!   `FreezeLifted` and goes on by itself when the window closes.
//! - **A pending break-glass.** Started with `--break-glass REASON` and fewer approvals
//!   than the policy's `[break_glass]` needs, the engine holds before its first platform
//!   action (`held_before_start`: no baseline, migration or service) while the window is
//!   open; `approve-break-glass` from other operators (roster, four eyes) completes it
//!   (`BreakGlassGranted`), or the window closes and the run goes on as any other. Services already rolling
//!   out finish their steps (a freeze stops new changes; it does not strand a half-shifted
//!   split). An operator's `resume` does not lift a freeze: breaking one is a decision made
//!   at the start with `--break-glass` and its approvals, which then covers the whole run.
//! - **Who may approve.** An approval gate's rule is the policy's `[approval]` tightened by
//!   the step's own `approvers`, `approvals` and `four_eyes` (`policy::roster::gate_rule`):
//!   `max(step's approvals, rule's required)` distinct people, each allowed by the gate's
//!   approvers and by the policy's, and with four eyes (either's) not the person who
//!   started the release. The rule is journaled on the gate (`GateWaiting`); a refusal
//!   says why and is journaled. A tenant's `[tenant.approval]` (`approvers`,
//!   `approvals`, `four_eyes`) is held to the same rule, tightening the same policy.

use super::command::{Command, CommandReply};
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
        if cc.break_glass.as_ref().is_some_and(|b| !b.pending) || cc.freeze.is_empty() {
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

    /// Before the engine's first platform action (the baselines, a migration, a
    /// service): whether a freeze window holds the run. A release started with a pending
    /// break-glass waits here for its approvals (or for the window to close).
    pub(super) fn held_before_start(&mut self) -> Result<bool, EngineError> {
        let nothing_started = self
            .state
            .services
            .iter()
            .all(|s| s.status == super::state::ServiceStatus::Pending);
        Ok(nothing_started && self.frozen_now()?)
    }

    /// `approve-break-glass`: one approval of the pending break-glass, checked against
    /// the policy's `[break_glass]` journaled at the start (roster, four eyes against the
    /// person who asked for it, each person once); the one that completes it is followed
    /// by `BreakGlassGranted`.
    pub(super) fn approve_break_glass(
        &mut self,
        command: &Command,
        operator: &str,
    ) -> Result<CommandReply, EngineError> {
        let cc = self.state.change_control.clone().unwrap_or_default();
        let Some(b) = cc.break_glass.clone() else {
            return self.refuse(
                command,
                operator,
                "no break-glass is waiting: this release was not started with --break-glass".into(),
            );
        };
        if self.state.status == super::state::ReleaseStatus::Finished {
            return self.refuse(command, operator, "the release has finished".into());
        }
        if !b.pending {
            self.accept(command, operator)?;
            return Ok(Ok(format!(
                "the break-glass is already approved (by {})",
                b.approvers.join(", ")
            )));
        }
        let Some(rule) = cc.break_glass_rule.clone() else {
            return self.refuse(
                command,
                operator,
                "the policy journaled with this release has no [break_glass]".into(),
            );
        };
        if let Err(why) = rule.check(&cc.roster, operator, Some(&b.operator), &b.approvers) {
            return self.refuse(
                command,
                operator,
                format!(
                    "{why} (break-glass of {} in freeze window {}: {}; {} of {} approvals so far)",
                    b.operator,
                    b.window,
                    rule.describe(&cc.roster),
                    b.approvers.len(),
                    rule.required
                ),
            );
        }
        self.accept(command, operator)?;
        let mut approvers = b.approvers.clone();
        approvers.push(operator.to_string());
        let have = approvers.len();
        let needed = rule.required as usize;
        if have < needed {
            return Ok(Ok(format!(
                "break-glass approval {have} of {needed} recorded ({operator}); waiting for {} more",
                needed - have
            )));
        }
        self.emit(EventKind::BreakGlassGranted {
            approvers: approvers.clone(),
        })?;
        Ok(Ok(format!(
            "break-glass approved ({have} of {needed}: {}); the release goes on",
            approvers.join(", ")
        )))
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
        self.rule_refusal(&self.gate_rule(name)?, name, operator, so_far)
    }

    /// Why `operator` may not approve `what` under `rule`, with the rule and the count.
    fn rule_refusal(
        &self,
        rule: &ApprovalRule,
        what: &str,
        operator: &str,
        so_far: &[String],
    ) -> Option<String> {
        let roster = self.roster();
        rule.check(roster, operator, self.state.operator.as_deref(), so_far)
            .err()
            .map(|why| {
                format!(
                    "{why} (approving {what}: {}; {} of {} approvals so far)",
                    rule.describe(roster),
                    so_far.len(),
                    rule.required
                )
            })
    }

    /// The rule tenant `t`'s `[tenant.approval]` enforces: the policy's `[approval]`
    /// tightened by the tenant's `approvers`, `approvals` and `four_eyes`, as a service's
    /// approval gate is ([`Engine::gate_rule`]).
    pub(super) fn tenant_gate_rule(&self, t: usize) -> Option<ApprovalRule> {
        let a = self.release.tenants.get(t)?.approval.as_ref()?;
        let policy = self
            .state
            .change_control
            .as_ref()
            .and_then(|c| c.approval.as_ref());
        roster::gate_rule(
            policy,
            &roster::GateAsk {
                approvers: &a.approvers,
                approvals: a.approvals,
                four_eyes: a.four_eyes,
            },
        )
    }

    /// Why `operator` may not approve tenant `t`'s waiting gate, with the rule in force.
    pub(super) fn tenant_approval_refusal(
        &self,
        t: usize,
        operator: &str,
        so_far: &[String],
    ) -> Option<String> {
        let rule = self.tenant_gate_rule(t)?;
        let name = self.release.tenants.get(t).map_or("", |x| x.name.as_str());
        self.rule_refusal(&rule, &format!("tenant {name}"), operator, so_far)
    }

    /// How many different people `name`'s waiting gate needs under its rule.
    pub(super) fn rule_required(&self, name: &str) -> Option<u32> {
        self.gate_rule(name).map(|r| r.required)
    }
}
