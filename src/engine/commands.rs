//! Commands from the front ends: whether each is accepted in the current state, and what
//! it does.

use crate::plan::Action;

use super::background::Busy;
use super::command::{Command, CommandReply, Refusal};
use super::reconciler::{Engine, EngineError};
use super::state::{EventKind, ReleaseStatus, ServiceStatus, Trigger};

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
        match command {
            Command::Start => match release {
                ReleaseStatus::Ready => {
                    self.accept(command, operator)?;
                    self.emit(EventKind::ReleaseStarted { operator: op })?;
                    Ok(Ok("release started".into()))
                }
                ReleaseStatus::Finished => {
                    self.refuse(command, operator, "the release has finished".into())
                }
                _ => {
                    self.accept(command, operator)?;
                    Ok(Ok("already started".into()))
                }
            },
            Command::Abort => match release {
                ReleaseStatus::Finished => {
                    self.refuse(command, operator, "the release has already finished".into())
                }
                _ => {
                    self.accept(command, operator)?;
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
                    self.check_finished()?;
                    Ok(Ok(
                        "aborted: services in flight roll back, pending ones are skipped".into(),
                    ))
                }
            },
            Command::Pause { service: None } => match release {
                ReleaseStatus::Running => {
                    self.accept(command, operator)?;
                    for rt in self.runs.values_mut() {
                        rt.paused_at_ms.get_or_insert(now);
                    }
                    self.emit(EventKind::Paused {
                        service: None,
                        reason: format!("paused by {op}"),
                    })?;
                    Ok(Ok("release paused: weights frozen".into()))
                }
                ReleaseStatus::Paused => {
                    self.accept(command, operator)?;
                    Ok(Ok("already paused".into()))
                }
                ReleaseStatus::Ready => {
                    self.refuse(command, operator, "the release has not started".into())
                }
                ReleaseStatus::Finished => {
                    self.refuse(command, operator, "the release has finished".into())
                }
            },
            Command::Resume { service: None } => match release {
                ReleaseStatus::Paused => {
                    if let Some(held) = self
                        .order
                        .iter()
                        .find(|n| self.runs[*n].failure_hold.is_some())
                        .cloned()
                    {
                        return self.refuse(
                            command,
                            operator,
                            format!("{held} failed and is held (on_failure = pause): resume {held} to override, or roll it back"),
                        );
                    }
                    self.accept(command, operator)?;
                    self.unfreeze(None, now);
                    self.emit(EventKind::Resumed {
                        service: None,
                        operator: op,
                    })?;
                    Ok(Ok("release resumed".into()))
                }
                ReleaseStatus::Running => {
                    self.accept(command, operator)?;
                    Ok(Ok("not paused".into()))
                }
                ReleaseStatus::Ready => self.refuse(
                    command,
                    operator,
                    "the release has not started; use start".into(),
                ),
                ReleaseStatus::Finished => {
                    self.refuse(command, operator, "the release has finished".into())
                }
            },
            Command::Rollback { service: None } => match release {
                ReleaseStatus::Ready => self.refuse(
                    command,
                    operator,
                    "the release has not started; nothing to roll back".into(),
                ),
                _ => {
                    let anything = self
                        .order
                        .iter()
                        .any(|n| self.changed(n) || self.status(n) == ServiceStatus::Pending);
                    self.accept(command, operator)?;
                    if !anything {
                        return Ok(Ok("nothing left to roll back".into()));
                    }
                    if self.state.status == ReleaseStatus::Paused {
                        self.emit(EventKind::Resumed {
                            service: None,
                            operator: op.clone(),
                        })?;
                    }
                    self.rollback_release(
                        None,
                        format!("release rolled back by {op}"),
                        Trigger::Operator { operator: op },
                    )
                    .await?;
                    Ok(Ok("rolling back the release".into()))
                }
            },
            Command::Contract { migration } => {
                self.confirm_contract(command, operator, migration).await
            }
            _ => self.service_command(command, operator, now).await,
        }
    }

    pub(super) fn unfreeze(&mut self, service: Option<&str>, now: u64) {
        for (name, rt) in self.runs.iter_mut() {
            if service.is_some_and(|s| s != name) {
                continue;
            }
            if let Some(at) = rt.paused_at_ms.take() {
                let shift = now.saturating_sub(at);
                rt.step_started_ms += shift;
                rt.until_ms = rt.until_ms.map(|u| u + shift);
                rt.gate_deadline_ms = rt.gate_deadline_ms.map(|u| u + shift);
            }
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
        let Some(s) = self.svc(&name).cloned() else {
            return self.refuse(command, operator, format!("no service `{name}`"));
        };
        let op = operator.to_string();
        let release = self.state.status;
        if release == ReleaseStatus::Ready {
            return self.refuse(
                command,
                operator,
                "the release has not started; send start first".into(),
            );
        }
        let st = s.status;
        let rt = &self.runs[&name];
        let held = rt.failure_hold.clone();
        let step_action = rt.step().map(|x| x.action.clone());
        let not_started = |deps: &[String]| {
            if deps.is_empty() {
                "it has not started yet (waiting for a free slot)".to_string()
            } else {
                format!(
                    "it has not started yet (waits for {} to be promoted)",
                    deps.join(", ")
                )
            }
        };
        let deps = rt.spec.depends_on.clone();
        match command {
            Command::Pause { .. } => match st {
                ServiceStatus::Paused => {
                    self.accept(command, operator)?;
                    Ok(Ok(format!("{name} is already paused")))
                }
                s if s.is_active() && s != ServiceStatus::RollingBack => {
                    self.accept(command, operator)?;
                    if let Some(rt) = self.runs.get_mut(&name) {
                        rt.paused_by_operator = true;
                        rt.paused_at_ms.get_or_insert(now);
                    }
                    self.emit(EventKind::Paused {
                        service: Some(name.clone()),
                        reason: format!("paused by {op}"),
                    })?;
                    Ok(Ok(format!("{name} paused: weights frozen")))
                }
                ServiceStatus::RollingBack => {
                    let text = self.rolling_back_text(&name, st);
                    self.refuse(command, operator, format!("{text}; a rollback is never paused"))
                }
                ServiceStatus::Pending => self.refuse(command, operator, format!("{name}: {}; pause the release to hold everything", not_started(&deps))),
                other => self.refuse(command, operator, format!("{name} is {other}; there is nothing to pause")),
            },
            Command::Resume { .. } => match st {
                ServiceStatus::Paused if s.gate.is_some() && held.is_none() && !self.runs[&name].paused_by_operator => {
                    self.refuse(command, operator, format!("{name} waits at a gate ({}): promote to move on, or roll back", s.paused_reason.unwrap_or_default()))
                }
                ServiceStatus::Paused | ServiceStatus::AwaitingApproval
                    if held.is_some() || self.runs[&name].paused_by_operator =>
                {
                    self.accept(command, operator)?;
                    self.unfreeze(Some(&name), now);
                    if let Some(rt) = self.runs.get_mut(&name) {
                        rt.paused_by_operator = false;
                        if rt.failure_hold.take().is_some() {
                            // Overriding a failure: judge again from scratch.
                            rt.entered = false;
                        }
                    }
                    self.emit(EventKind::Resumed {
                        service: Some(name.clone()),
                        operator: op.clone(),
                    })?;
                    if self.state.status == ReleaseStatus::Paused
                        && self.runs.values().all(|rt| rt.failure_hold.is_none())
                        && held.is_some()
                    {
                        self.unfreeze(None, now);
                        self.emit(EventKind::Resumed { service: None, operator: op })?;
                    }
                    Ok(Ok(format!("{name} resumed")))
                }
                s if s.is_active() => {
                    self.accept(command, operator)?;
                    Ok(Ok(format!("{name} is not paused")))
                }
                ServiceStatus::Pending => self.refuse(command, operator, format!("{name}: {}", not_started(&deps))),
                other => self.refuse(command, operator, format!("{name} is {other}; there is nothing to resume")),
            },
            Command::Promote { .. } | Command::PromoteAll { .. } => {
                let all = matches!(command, Command::PromoteAll { .. });
                match st {
                    ServiceStatus::Promoted => {
                        self.accept(command, operator)?;
                        if matches!(step_action, Some(Action::KeepOld { .. })) && !all {
                            self.complete_step(&name).await?;
                            return Ok(Ok(format!("{name}: no longer keeping the old revision warm; retiring it")));
                        }
                        Ok(Ok(format!("{name} is already promoted")))
                    }
                    ServiceStatus::Pending => self.refuse(command, operator, format!("{name}: {}", not_started(&deps))),
                    ServiceStatus::Starting => self.refuse(
                        command,
                        operator,
                        format!("{name}'s candidate is still starting (launch, health checks, smoke tests); it takes no traffic before they pass"),
                    ),
                    _ if held.is_some() => self.refuse(
                        command,
                        operator,
                        format!("{name} failed ({}); roll it back, or resume it to override the failure first", held.unwrap_or_default()),
                    ),
                    ServiceStatus::Progressing | ServiceStatus::Analysing | ServiceStatus::Paused | ServiceStatus::AwaitingApproval => {
                        if self.runs[&name].busy == Some(Busy::CrossCheck) {
                            return self.refuse(command, operator, format!("{name} is being promoted (dependents' smoke tests are running)"));
                        }
                        self.accept(command, operator)?;
                        self.unfreeze(Some(&name), now);
                        if s.gate.is_some() {
                            self.emit(EventKind::GateAnswered {
                                service: name.clone(),
                                answer: if all { "promoted (all steps)".into() } else { "promoted".into() },
                                by: op.clone(),
                            })?;
                        }
                        if let Some(rt) = self.runs.get_mut(&name) {
                            rt.paused_by_operator = false;
                            rt.analysis = None;
                            rt.extending = false;
                            rt.promote_all |= all;
                        }
                        if st == ServiceStatus::Paused && s.gate.is_none() {
                            self.emit(EventKind::Resumed { service: Some(name.clone()), operator: op })?;
                        }
                        let desc = self.runs[&name].step().map(|x| x.description.clone()).unwrap_or_default();
                        self.complete_step(&name).await?;
                        Ok(Ok(if all {
                            format!("{name}: skipping every remaining step to full promotion")
                        } else {
                            format!("{name}: step `{desc}` ended by {}", operator)
                        }))
                    }
                    ServiceStatus::RollingBack | ServiceStatus::RolledBack => {
                        let text = self.rolling_back_text(&name, st);
                        self.refuse(command, operator, format!("{text}; only a rollout in progress can be promoted (retry it first)"))
                    }
                    other => self.refuse(command, operator, format!("{name} is {other}; only a rollout in progress can be promoted (retry it first)")),
                }
            }
            Command::Approve { .. } | Command::Reject { .. } => {
                let approve = matches!(command, Command::Approve { .. });
                if matches!(st, ServiceStatus::RollingBack | ServiceStatus::RolledBack) {
                    let text = self.rolling_back_text(&name, st);
                    return self.refuse(command, operator, format!("{text}; there is no approval waiting"));
                }
                if st != ServiceStatus::AwaitingApproval || held.is_some() {
                    return self.refuse(command, operator, format!("{name} has no approval waiting (it is {st})"));
                }
                let needed = match self.runs[&name].step().map(|x| &x.action) {
                    Some(Action::Approval { approvals, .. }) => *approvals,
                    _ => 1,
                };
                if approve && needed > 1 {
                    let idx = self.runs[&name].idx;
                    let so_far: Vec<String> = self.runs[&name]
                        .approvers
                        .iter()
                        .filter(|(i, _)| *i == idx)
                        .map(|(_, who)| who.clone())
                        .collect();
                    if so_far.iter().any(|w| w == operator) {
                        return self.refuse(
                            command,
                            operator,
                            format!("{operator} already approved {name}; this gate needs {needed} different approvers ({} so far: {})", so_far.len(), so_far.join(", ")),
                        );
                    }
                    if so_far.len() + 1 < needed as usize {
                        // Recorded (journaled as an accepted approve by this operator);
                        // the gate stays until enough different people approved.
                        self.accept(command, operator)?;
                        if let Some(rt) = self.runs.get_mut(&name) {
                            rt.approvers.push((idx, op.clone()));
                        }
                        let have = so_far.len() + 1;
                        return Ok(Ok(format!(
                            "{name}: approval {have} of {needed} recorded ({op}); waiting for {} more from someone else",
                            needed as usize - have
                        )));
                    }
                }
                self.accept(command, operator)?;
                self.unfreeze(Some(&name), now);
                self.emit(EventKind::GateAnswered {
                    service: name.clone(),
                    answer: if approve { "approved".into() } else { "rejected".into() },
                    by: op.clone(),
                })?;
                if approve {
                    if let Some(rt) = self.runs.get_mut(&name) {
                        rt.paused_by_operator = false;
                    }
                    self.complete_step(&name).await?;
                    Ok(Ok(format!("{name} approved")))
                } else {
                    self.rollback_with_dependents(&name, format!("rejected by {op}"), Trigger::Operator { operator: op })
                        .await?;
                    Ok(Ok(format!("{name} rejected: rolling back")))
                }
            }
            Command::Rollback { .. }
                if (st.is_active() || st == ServiceStatus::Promoted)
                    && self.migration_refuses_rollback(&name).is_some() =>
            {
                let why = self.migration_refuses_rollback(&name).unwrap_or_default();
                self.refuse(command, operator, why)
            }
            Command::Rollback { .. } => match st {
                ServiceStatus::RollingBack | ServiceStatus::RolledBack => {
                    self.accept(command, operator)?;
                    Ok(Ok(format!("{name} is already {st}")))
                }
                ServiceStatus::Skipped => {
                    self.accept(command, operator)?;
                    Ok(Ok(format!("{name} was skipped; nothing changed")))
                }
                ServiceStatus::Pending => {
                    self.accept(command, operator)?;
                    self.emit(EventKind::Skipped {
                        service: name.clone(),
                        reason: format!("rolled back by {op} before it started"),
                    })?;
                    self.check_finished()?;
                    Ok(Ok(format!("{name} had not started: skipped")))
                }
                ServiceStatus::Promoted if !s.baseline_running || self.runs[&name].retiring.contains(&s.baseline) => self.refuse(
                    command,
                    operator,
                    format!("{name}'s old revision {} is retired (or being retired); roll forward, or deploy it again", s.baseline),
                ),
                _ => {
                    self.accept(command, operator)?;
                    self.rollback_with_dependents(&name, format!("rolled back by {op}"), Trigger::Operator { operator: op })
                        .await?;
                    if self.state.status == ReleaseStatus::Paused
                        && self.runs.values().all(|rt| rt.failure_hold.is_none())
                        && held.is_some()
                    {
                        self.emit(EventKind::Resumed { service: None, operator: operator.to_string() })?;
                    }
                    Ok(Ok(format!("{name}: traffic back to {}", s.baseline)))
                }
            },
            Command::Retry { .. } => match st {
                ServiceStatus::RolledBack | ServiceStatus::Failed | ServiceStatus::Skipped => {
                    if !s.baseline_running {
                        return self.refuse(command, operator, format!("{name}'s baseline {} is not running; nothing to retry from", s.baseline));
                    }
                    self.accept(command, operator)?;
                    if let Some(rt) = self.runs.get_mut(&name) {
                        rt.reset_run();
                    }
                    self.emit(EventKind::Retrying { service: name.clone(), operator: op })?;
                    Ok(Ok(format!("{name} will roll out again once its dependencies are promoted")))
                }
                other => self.refuse(command, operator, format!("{name} is {other}; only a rolled-back, failed or skipped service can be retried")),
            },
            Command::Start | Command::Abort | Command::Contract { .. } => {
                self.refuse(command, operator, "not a service command".into())
            }
        }
    }
}
