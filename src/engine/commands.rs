//! Commands from the front ends. [`Engine::handle_inner`] reads as a recipe: an unknown
//! service is refused, then the command's precondition is looked up in one table
//! ([`Engine::release_precondition`] for the release, [`Engine::service_precondition`]
//! for one service; the test `every_command_in_every_state` checks the same table), and
//! only a command that may go on reaches its own function below.

use crate::plan::Action;

use super::background::Busy;
use super::command::{Command, CommandReply, Refusal};
use super::reconciler::{Engine, EngineError};
use super::state::{EventKind, ReleaseStatus, ServiceState, ServiceStatus, Trigger};

/// What a command meets in the current state, before it acts.
enum Precondition {
    /// Refused, with the reason (journaled as refused; nothing changes).
    Refuse(String),
    /// Accepted, and there is nothing to do (idempotent): answered with this text.
    Already(String),
    /// Accepted: the command is carried out.
    Go,
}

use Precondition::{Already, Go, Refuse};

impl Engine {
    pub(super) fn refuse(
        &mut self,
        command: &Command,
        operator: &str,
        reason: String,
    ) -> Result<CommandReply, EngineError> {
        self.emit(EventKind::CommandRefused {
            operator: operator.to_string(),
            command: command.clone(),
            reason: reason.clone(),
            note: self.note.clone(),
        })?;
        self.publish();
        Ok(Err(Refusal {
            command: command.to_string(),
            reason,
        }))
    }

    pub(super) fn accept(&mut self, command: &Command, operator: &str) -> Result<(), EngineError> {
        self.emit(EventKind::CommandAccepted {
            operator: operator.to_string(),
            command: command.clone(),
            note: self.note.clone(),
        })
    }

    /// Carry out one command with the operator's stated reason, journaled with it.
    pub async fn handle_with_note(
        &mut self,
        command: Command,
        operator: &str,
        note: Option<String>,
    ) -> Result<CommandReply, EngineError> {
        self.note = note;
        let reply = self.handle(command, operator).await;
        self.note = None;
        reply
    }

    /// Record a command a front end refused before it reached the engine (a read-only
    /// or invalid credential), so the attempt is in the audit; nothing else changes.
    pub fn deny(
        &mut self,
        command: Command,
        operator: &str,
        reason: String,
    ) -> Result<CommandReply, EngineError> {
        self.refuse(&command, operator, reason)
    }

    /// `payments is already rolling back, started by alice 2 s ago` (who and when, if known).
    pub(super) fn rolling_back_text(&self, name: &str, status: ServiceStatus) -> String {
        let what = match status {
            ServiceStatus::RollingBack => "already rolling back",
            _ => "already rolled back",
        };
        match self.rollbacks.get(name) {
            Some((by, at)) => {
                let ago = self.clock.now_ms().saturating_sub(*at) / 1000;
                format!("{name} is {what}, started {by} {ago} s ago")
            }
            None => format!("{name} is {what}"),
        }
    }

    /// Carry out one command (idempotent; refused with a reason when it makes no sense).
    pub async fn handle(
        &mut self,
        command: Command,
        operator: &str,
    ) -> Result<CommandReply, EngineError> {
        let reply = self.handle_inner(&command, operator).await?;
        self.publish();
        Ok(reply)
    }

    pub(super) async fn handle_inner(
        &mut self,
        command: &Command,
        operator: &str,
    ) -> Result<CommandReply, EngineError> {
        if let Some(reply) = self.fleet_command(command, operator).await? {
            return Ok(reply);
        }
        if let Some(svc) = command.service()
            && !self.runs.contains_key(svc)
        {
            let known = self.order.join(", ");
            return self.refuse(
                command,
                operator,
                format!("no service `{svc}` in this release (services: {known})"),
            );
        }
        let release = self.state.status;
        let now = self.clock.now_ms();
        let op = operator.to_string();
        let release_command = matches!(
            command,
            Command::Start
                | Command::Abort
                | Command::Pause { service: None }
                | Command::Resume { service: None }
                | Command::Rollback { service: None }
        );
        if !release_command {
            return match command {
                Command::Contract { migration } => {
                    self.confirm_contract(command, operator, migration).await
                }
                Command::ApproveBreakGlass => self.approve_break_glass(command, operator),
                _ => self.service_command(command, operator, now).await,
            };
        }
        match self.release_precondition(command, release) {
            Refuse(reason) => return self.refuse(command, operator, reason),
            Already(text) => {
                self.accept(command, operator)?;
                return Ok(Ok(text));
            }
            Go => self.accept(command, operator)?,
        }
        match command {
            Command::Start => self.start_release(op),
            Command::Abort => self.abort_release(release, op).await,
            Command::Pause { .. } => self.pause_release(op, now),
            Command::Resume { .. } => self.resume_release(op, now),
            _ => self.rollback_whole_release(op).await,
        }
    }

    /// The release commands' table: whether `command` may go on while the release is
    /// `release` (the `ready`, `release_paused` and any-state rows of the test).
    fn release_precondition(&self, command: &Command, release: ReleaseStatus) -> Precondition {
        use ReleaseStatus::{Finished, Paused, Ready, Running};
        match (command, release) {
            (Command::Start, Ready) => Go,
            (Command::Start, Finished) => Refuse("the release has finished".into()),
            (Command::Start, _) => Already("already started".into()),

            (Command::Abort, Finished) => Refuse("the release has already finished".into()),
            (Command::Abort, _) => Go,

            (Command::Pause { .. }, Running) => Go,
            (Command::Pause { .. }, Paused) => Already("already paused".into()),
            (Command::Pause { .. }, Ready) => Refuse("the release has not started".into()),
            (Command::Pause { .. }, Finished) => Refuse("the release has finished".into()),

            (Command::Resume { .. }, Paused) => match self
                .order
                .iter()
                .find(|n| self.runs[*n].failure_hold.is_some())
            {
                Some(held) => Refuse(format!(
                    "{held} failed and is held (on_failure = pause): resume {held} to override, or roll it back"
                )),
                None => Go,
            },
            (Command::Resume { .. }, Running) => Already("not paused".into()),
            (Command::Resume { .. }, Ready) => {
                Refuse("the release has not started; use start".into())
            }
            (Command::Resume { .. }, Finished) => Refuse("the release has finished".into()),

            (_, Ready) => Refuse("the release has not started; nothing to roll back".into()),
            _ if !self
                .order
                .iter()
                .any(|n| self.changed(n) || self.status(n) == ServiceStatus::Pending) =>
            {
                Already("nothing left to roll back".into())
            }
            _ => Go,
        }
    }

    fn start_release(&mut self, op: String) -> Result<CommandReply, EngineError> {
        self.emit(EventKind::ReleaseStarted { operator: op })?;
        Ok(Ok("release started".into()))
    }

    async fn abort_release(
        &mut self,
        release: ReleaseStatus,
        op: String,
    ) -> Result<CommandReply, EngineError> {
        if release == ReleaseStatus::Ready {
            self.emit(EventKind::ReleaseStarted {
                operator: op.clone(),
            })?;
            self.bootstrapped = true;
        }
        for d in self.order.clone().iter().rev() {
            let st = self.status(d);
            if st.is_active() {
                self.rollback_one(
                    d,
                    format!("release aborted by {op}"),
                    Trigger::Operator {
                        operator: op.clone(),
                    },
                )
                .await?;
            } else if st == ServiceStatus::Pending {
                self.emit(EventKind::Skipped {
                    service: d.clone(),
                    reason: format!("release aborted by {op}"),
                })?;
            }
        }
        if self.state.status == ReleaseStatus::Paused {
            self.emit(EventKind::Resumed {
                service: None,
                operator: op.clone(),
            })?;
        }
        self.migrations_on_abort(&op)?;
        self.fleet_skip_pending(&format!("release aborted by {op}"))?;
        self.check_finished()?;
        Ok(Ok(
            "aborted: services in flight roll back, pending ones are skipped".into(),
        ))
    }

    fn pause_release(&mut self, op: String, now: u64) -> Result<CommandReply, EngineError> {
        for rt in self.runs.values_mut() {
            rt.paused_at_ms.get_or_insert(now);
        }
        self.emit(EventKind::Paused {
            service: None,
            reason: format!("paused by {op}"),
        })?;
        Ok(Ok("release paused: weights frozen".into()))
    }

    fn resume_release(&mut self, op: String, now: u64) -> Result<CommandReply, EngineError> {
        self.unfreeze(None, now);
        self.emit(EventKind::Resumed {
            service: None,
            operator: op,
        })?;
        Ok(Ok("release resumed".into()))
    }

    async fn rollback_whole_release(&mut self, op: String) -> Result<CommandReply, EngineError> {
        if self.state.status == ReleaseStatus::Paused {
            self.emit(EventKind::Resumed {
                service: None,
                operator: op.clone(),
            })?;
        }
        self.rollback_release(
            None,
            format!("release rolled back by {op}"),
            Trigger::Operator {
                operator: op.clone(),
            },
        )
        .await?;
        self.fleet_skip_pending(&format!("release rolled back by {op}"))?;
        Ok(Ok("rolling back the release".into()))
    }

    pub(super) fn unfreeze(&mut self, service: Option<&str>, now: u64) {
        let mut shifted = Vec::new();
        for (i, rt) in self.runs.values_mut().enumerate() {
            if service.is_some_and(|s| s != rt.spec.name) {
                continue;
            }
            if let Some(at) = rt.paused_at_ms.take() {
                let shift = now.saturating_sub(at);
                rt.step_started_ms += shift;
                rt.until_ms = rt.until_ms.map(|u| u + shift);
                rt.gate_deadline_ms = rt.gate_deadline_ms.map(|u| u + shift);
                shifted.push(i);
            }
        }
        // Their times moved: a parked one must not keep waking at the old time.
        for i in shifted {
            self.unpark(i);
        }
    }

    pub(super) async fn service_command(
        &mut self,
        command: &Command,
        operator: &str,
        now: u64,
    ) -> Result<CommandReply, EngineError> {
        let Some(name) = command.service().map(str::to_string) else {
            return self.refuse(command, operator, "this command needs a service".into());
        };
        let Some(s) = self.svc_shared(&name) else {
            return self.refuse(command, operator, format!("no service `{name}`"));
        };
        if self.state.status == ReleaseStatus::Ready {
            return self.refuse(
                command,
                operator,
                "the release has not started; send start first".into(),
            );
        }
        match self.service_precondition(command, &name, &s, operator) {
            Refuse(reason) => return self.refuse(command, operator, reason),
            Already(text) => {
                self.accept(command, operator)?;
                return Ok(Ok(text));
            }
            Go => self.accept(command, operator)?,
        }
        let op = operator.to_string();
        match command {
            Command::Pause { .. } => self.pause_service(&name, op, now),
            Command::Resume { .. } => self.resume_service(&name, op, now),
            Command::Promote { .. } | Command::PromoteAll { .. } => {
                let all = matches!(command, Command::PromoteAll { .. });
                self.promote(&name, &s, all, op, now).await
            }
            Command::Approve { .. } => self.approve(&name, op, now).await,
            Command::Reject { .. } => self.reject(&name, op, now).await,
            Command::Rollback { .. } => self.rollback_service(&name, &s, op).await,
            _ => self.retry_service(&name, op),
        }
    }

    /// The service commands' table: whether `command` may go on for service `name` in
    /// its current state (the per-service rows of `every_command_in_every_state`).
    fn service_precondition(
        &self,
        command: &Command,
        name: &str,
        s: &ServiceState,
        operator: &str,
    ) -> Precondition {
        use ServiceStatus::*;
        let st = s.status;
        let rt = &self.runs[name];
        let held = rt.failure_hold.as_deref();
        let by_operator = rt.paused_by_operator;
        let not_started = || {
            let deps = &rt.spec.depends_on;
            if deps.is_empty() {
                "it has not started yet (waiting for a free slot)".to_string()
            } else {
                format!(
                    "it has not started yet (waits for {} to be promoted)",
                    deps.join(", ")
                )
            }
        };
        let rolling_back = || self.rolling_back_text(name, st);
        match command {
            Command::Pause { .. } => match st {
                Paused => Already(format!("{name} is already paused")),
                RollingBack => Refuse(format!("{}; a rollback is never paused", rolling_back())),
                st if st.is_active() => Go,
                Pending => Refuse(format!(
                    "{name}: {}; pause the release to hold everything",
                    not_started()
                )),
                other => Refuse(format!("{name} is {other}; there is nothing to pause")),
            },
            Command::Resume { .. } => match st {
                Paused if s.gate.is_some() && held.is_none() && !by_operator => Refuse(format!(
                    "{name} waits at a gate ({}): promote to move on, or roll back",
                    s.paused_reason.clone().unwrap_or_default()
                )),
                Paused | AwaitingApproval if held.is_some() || by_operator => Go,
                st if st.is_active() => Already(format!("{name} is not paused")),
                Pending => Refuse(format!("{name}: {}", not_started())),
                other => Refuse(format!("{name} is {other}; there is nothing to resume")),
            },
            Command::Promote { .. } | Command::PromoteAll { .. } => match st {
                Promoted
                    if matches!(command, Command::Promote { .. })
                        && matches!(rt.step().map(|x| &x.action), Some(Action::KeepOld { .. })) =>
                {
                    Go
                }
                Promoted => Already(format!("{name} is already promoted")),
                Pending => Refuse(format!("{name}: {}", not_started())),
                Starting => Refuse(format!(
                    "{name}'s candidate is still starting (launch, health checks, smoke tests); it takes no traffic before they pass"
                )),
                _ if held.is_some() => Refuse(format!(
                    "{name} failed ({}); roll it back, or resume it to override the failure first",
                    held.unwrap_or_default()
                )),
                Progressing | Analysing | Paused | AwaitingApproval
                    if rt.busy == Some(Busy::CrossCheck) =>
                {
                    Refuse(format!(
                        "{name} is being promoted (dependents' smoke tests are running)"
                    ))
                }
                Progressing | Analysing | Paused | AwaitingApproval => Go,
                RollingBack | RolledBack => Refuse(format!(
                    "{}; only a rollout in progress can be promoted (retry it first)",
                    rolling_back()
                )),
                other => Refuse(format!(
                    "{name} is {other}; only a rollout in progress can be promoted (retry it first)"
                )),
            },
            Command::Approve { .. } | Command::Reject { .. } => match st {
                RollingBack | RolledBack => {
                    Refuse(format!("{}; there is no approval waiting", rolling_back()))
                }
                AwaitingApproval if held.is_none() => {
                    let needed = self.approvals_needed(name);
                    let so_far = self.approvers_so_far(name);
                    let policy = matches!(command, Command::Approve { .. })
                        .then(|| self.approval_refusal(name, operator, &so_far))
                        .flatten();
                    if let Some(why) = policy {
                        Refuse(why)
                    } else if matches!(command, Command::Approve { .. })
                        && needed > 1
                        && so_far.iter().any(|w| w == operator)
                    {
                        Refuse(format!(
                            "{operator} already approved {name}; this gate needs {needed} different approvers ({} so far: {})",
                            so_far.len(),
                            so_far.join(", ")
                        ))
                    } else {
                        Go
                    }
                }
                _ => Refuse(format!("{name} has no approval waiting (it is {st})")),
            },
            Command::Rollback { .. } => match st {
                st if st.is_active() || st == Promoted => {
                    match self.migration_refuses_rollback(name) {
                        Some(why) => Refuse(why),
                        None => self.rollback_precondition(name, s),
                    }
                }
                _ => self.rollback_precondition(name, s),
            },
            Command::Retry { .. } => match st {
                RolledBack | Failed | Skipped if !s.baseline_running => Refuse(format!(
                    "{name}'s baseline {} is not running; nothing to retry from",
                    s.baseline
                )),
                RolledBack | Failed | Skipped => Go,
                other => Refuse(format!(
                    "{name} is {other}; only a rolled-back, failed or skipped service can be retried"
                )),
            },
            Command::Start
            | Command::Abort
            | Command::Contract { .. }
            | Command::Exclude { .. }
            | Command::ApproveBreakGlass => Refuse("not a service command".into()),
        }
    }

    /// `rollback NAME` once no migration refuses it.
    fn rollback_precondition(&self, name: &str, s: &ServiceState) -> Precondition {
        use ServiceStatus::*;
        match s.status {
            RollingBack | RolledBack => Already(format!("{name} is already {}", s.status)),
            Skipped => Already(format!("{name} was skipped; nothing changed")),
            Pending => Go,
            Promoted if !s.baseline_running || self.runs[name].retiring.contains(&s.baseline) => {
                Refuse(format!(
                    "{name}'s old revision {} is retired (or being retired); roll forward, or deploy it again",
                    s.baseline
                ))
            }
            _ => Go,
        }
    }

    /// How many different people the waiting approval gate needs.
    fn approvals_needed(&self, name: &str) -> u32 {
        let step = match self.runs[name].step().map(|x| &x.action) {
            Some(Action::Approval { approvals, .. }) => *approvals,
            _ => 1,
        };
        step.max(self.rule_required(name).unwrap_or(1))
    }

    /// Who approved the current step so far.
    fn approvers_so_far(&self, name: &str) -> Vec<String> {
        let rt = &self.runs[name];
        rt.approvers
            .iter()
            .filter(|(i, _)| *i == rt.idx)
            .map(|(_, who)| who.clone())
            .collect()
    }

    pub(super) fn pause_service(
        &mut self,
        name: &str,
        op: String,
        now: u64,
    ) -> Result<CommandReply, EngineError> {
        if let Some(rt) = self.runs.get_mut(name) {
            rt.paused_by_operator = true;
            rt.paused_at_ms.get_or_insert(now);
        }
        self.emit(EventKind::Paused {
            service: Some(name.to_string()),
            reason: format!("paused by {op}"),
        })?;
        Ok(Ok(format!("{name} paused: weights frozen")))
    }

    pub(super) fn resume_service(
        &mut self,
        name: &str,
        op: String,
        now: u64,
    ) -> Result<CommandReply, EngineError> {
        let held = self.runs[name].failure_hold.is_some();
        self.unfreeze(Some(name), now);
        if let Some(rt) = self.runs.get_mut(name) {
            rt.paused_by_operator = false;
            if rt.failure_hold.take().is_some() {
                // Overriding a failure: judge again from scratch.
                rt.entered = false;
            }
        }
        self.emit(EventKind::Resumed {
            service: Some(name.to_string()),
            operator: op.clone(),
        })?;
        if self.state.status == ReleaseStatus::Paused
            && self.runs.values().all(|rt| rt.failure_hold.is_none())
            && held
        {
            self.unfreeze(None, now);
            self.emit(EventKind::Resumed {
                service: None,
                operator: op,
            })?;
        }
        Ok(Ok(format!("{name} resumed")))
    }

    async fn promote(
        &mut self,
        name: &str,
        s: &ServiceState,
        all: bool,
        op: String,
        now: u64,
    ) -> Result<CommandReply, EngineError> {
        if s.status == ServiceStatus::Promoted {
            // Only `promote` of a service keeping its old revision warm gets here.
            self.complete_step(name).await?;
            return Ok(Ok(format!(
                "{name}: no longer keeping the old revision warm; retiring it"
            )));
        }
        self.unfreeze(Some(name), now);
        if s.gate.is_some() {
            self.emit(EventKind::GateAnswered {
                service: name.to_string(),
                answer: if all {
                    "promoted (all steps)".into()
                } else {
                    "promoted".into()
                },
                by: op.clone(),
            })?;
        }
        if let Some(rt) = self.runs.get_mut(name) {
            rt.paused_by_operator = false;
            rt.analysis = None;
            rt.extending = false;
            rt.promote_all |= all;
        }
        if s.status == ServiceStatus::Paused && s.gate.is_none() {
            self.emit(EventKind::Resumed {
                service: Some(name.to_string()),
                operator: op.clone(),
            })?;
        }
        let desc = self.runs[name]
            .step()
            .map(|x| x.description.clone())
            .unwrap_or_default();
        self.complete_step(name).await?;
        Ok(Ok(if all {
            format!("{name}: skipping every remaining step to full promotion")
        } else {
            format!("{name}: step `{desc}` ended by {op}")
        }))
    }

    async fn approve(
        &mut self,
        name: &str,
        op: String,
        now: u64,
    ) -> Result<CommandReply, EngineError> {
        let needed = self.approvals_needed(name);
        let have = self.approvers_so_far(name).len() + 1;
        if needed > 1 && have < needed as usize {
            // Recorded (journaled as an accepted approve by this operator); the gate stays
            // until enough different people approved.
            if let Some(rt) = self.runs.get_mut(name) {
                let idx = rt.idx;
                rt.approvers.push((idx, op.clone()));
            }
            return Ok(Ok(format!(
                "{name}: approval {have} of {needed} recorded ({op}); waiting for {} more from someone else",
                needed as usize - have
            )));
        }
        self.unfreeze(Some(name), now);
        self.emit(EventKind::GateAnswered {
            service: name.to_string(),
            answer: "approved".into(),
            by: op,
        })?;
        if let Some(rt) = self.runs.get_mut(name) {
            rt.paused_by_operator = false;
        }
        self.complete_step(name).await?;
        Ok(Ok(format!("{name} approved")))
    }

    async fn reject(
        &mut self,
        name: &str,
        op: String,
        now: u64,
    ) -> Result<CommandReply, EngineError> {
        self.unfreeze(Some(name), now);
        self.emit(EventKind::GateAnswered {
            service: name.to_string(),
            answer: "rejected".into(),
            by: op.clone(),
        })?;
        self.rollback_with_dependents(
            name,
            format!("rejected by {op}"),
            Trigger::Operator { operator: op },
        )
        .await?;
        Ok(Ok(format!("{name} rejected: rolling back")))
    }

    async fn rollback_service(
        &mut self,
        name: &str,
        s: &ServiceState,
        op: String,
    ) -> Result<CommandReply, EngineError> {
        if s.status == ServiceStatus::Pending {
            self.emit(EventKind::Skipped {
                service: name.to_string(),
                reason: format!("rolled back by {op} before it started"),
            })?;
            self.check_finished()?;
            return Ok(Ok(format!("{name} had not started: skipped")));
        }
        let held = self.runs[name].failure_hold.is_some();
        self.rollback_with_dependents(
            name,
            format!("rolled back by {op}"),
            Trigger::Operator {
                operator: op.clone(),
            },
        )
        .await?;
        if self.state.status == ReleaseStatus::Paused
            && self.runs.values().all(|rt| rt.failure_hold.is_none())
            && held
        {
            self.emit(EventKind::Resumed {
                service: None,
                operator: op,
            })?;
        }
        Ok(Ok(format!("{name}: traffic back to {}", s.baseline)))
    }

    pub(super) fn retry_service(
        &mut self,
        name: &str,
        op: String,
    ) -> Result<CommandReply, EngineError> {
        if let Some(rt) = self.runs.get_mut(name) {
            rt.reset_run();
        }
        self.fleet_service_retried(name, &op)?;
        self.emit(EventKind::Retrying {
            service: name.to_string(),
            operator: op,
        })?;
        Ok(Ok(format!(
            "{name} will roll out again once its dependencies are promoted"
        )))
    }
}
