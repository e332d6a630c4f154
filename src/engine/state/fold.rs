//! The fold: [`ReleaseState::apply`] turns one event into the next snapshot.

use super::*;

impl ReleaseState {
    /// Fold one event into the state. Pure: the same events give the same state.
    pub fn apply(&mut self, e: &Event) {
        self.last_seq = self.last_seq.max(e.seq);
        let at = e.at_ms;
        use EventKind::*;
        match &e.kind {
            ReleaseLoaded {
                release,
                run_id,
                platform,
                environment,
                break_glass,
                change_control,
                change,
                on_failure,
                max_parallel,
                waves,
                services,
            } => {
                self.release = release.clone();
                self.run_id = run_id.clone();
                self.platform = platform.clone();
                self.environment = environment.clone();
                self.break_glass = break_glass.as_deref().cloned();
                self.change_control = change_control.as_deref().cloned();
                self.change = change.clone();
                self.on_failure = *on_failure;
                self.max_parallel = *max_parallel;
                self.waves = waves.clone();
                self.services = services
                    .iter()
                    .map(|s| {
                        std::sync::Arc::new(ServiceState {
                            name: s.name.clone(),
                            strategy: s.strategy,
                            wave: s.wave,
                            depends_on: s.depends_on.clone(),
                            status: ServiceStatus::Pending,
                            baseline: s.baseline.clone(),
                            candidate: s.candidate.clone(),
                            step: 0,
                            steps: s.steps.clone(),
                            weights: Vec::new(),
                            candidate_weight: 0,
                            candidate_running: false,
                            baseline_running: false,
                            health: HealthSummary::default(),
                            verdict: None,
                            gate: None,
                            wait_until_ms: None,
                            paused_reason: None,
                            reason: None,
                            started_at_ms: None,
                            finished_at_ms: None,
                            cleanup_pending: false,
                            approvals: Vec::new(),
                        })
                    })
                    .collect();
                self.by_name = ServiceIndex::of(&self.services);
            }
            CommandAccepted {
                operator,
                command: Command::Approve { service },
                ..
            } => {
                // An approval of the gate now waiting. The engine accepts one per person;
                // the one that completes the gate is followed by `GateAnswered`, which
                // clears the list.
                if let Some(s) = self.service_mut(service)
                    && s.status == ServiceStatus::AwaitingApproval
                    && !s.approvals.contains(operator)
                {
                    s.approvals.push(operator.clone());
                }
            }
            CommandAccepted {
                operator,
                command: Command::ApproveBreakGlass,
                ..
            } => {
                // One approval of the pending break-glass; `BreakGlassGranted` follows the
                // one that completes it.
                if let Some(b) = self
                    .change_control
                    .as_mut()
                    .and_then(|c| c.break_glass.as_mut())
                    && b.pending
                    && !b.approvers.contains(operator)
                {
                    b.approvers.push(operator.clone());
                }
            }
            BreakGlassGranted { approvers } => {
                if let Some(b) = self
                    .change_control
                    .as_mut()
                    .and_then(|c| c.break_glass.as_mut())
                {
                    b.pending = false;
                    b.approvers = approvers.clone();
                }
            }
            CommandAccepted { .. } | CommandRefused { .. } | EngineRestarted { .. } => {}
            FreezeHeld {
                window,
                until_ms,
                until,
            } => {
                self.frozen = Some(FreezeHold {
                    window: window.clone(),
                    until_ms: *until_ms,
                    until: until.clone(),
                });
            }
            FreezeLifted { .. } => self.frozen = None,
            ReleaseStarted { operator } => {
                self.status = ReleaseStatus::Running;
                self.started_at_ms.get_or_insert(at);
                self.operator = Some(operator.clone());
            }
            BaselineReady { service, .. } => {
                if let Some(s) = self.service_mut(service) {
                    s.baseline_running = true;
                }
            }
            ServiceStarted { service } => {
                if let Some(s) = self.service_mut(service) {
                    s.approvals.clear();
                    s.status = ServiceStatus::Starting;
                    s.started_at_ms = Some(at);
                    s.finished_at_ms = None;
                    s.reason = None;
                    s.verdict = None;
                    s.step = 0;
                }
            }
            StepStarted {
                service,
                index,
                action,
                until_ms,
                ..
            } => {
                if let Some(s) = self.service_mut(service) {
                    if s.step != *index {
                        s.approvals.clear();
                    }
                    s.step = *index;
                    s.gate = None;
                    s.wait_until_ms = *until_ms;
                    s.paused_reason = None;
                    s.status = match action {
                        Action::Launch { .. } | Action::WaitHealthy | Action::Smoke { .. } => {
                            ServiceStatus::Starting
                        }
                        Action::Analysis { .. } | Action::Bake { .. } => ServiceStatus::Analysing,
                        Action::KeepOld { .. } | Action::Retire { .. } => ServiceStatus::Promoted,
                        _ => ServiceStatus::Progressing,
                    };
                }
            }
            Launched { service, .. } => {
                if let Some(s) = self.service_mut(service) {
                    s.candidate_running = true;
                }
            }
            WeightsSet { service, weights } => {
                if let Some(s) = self.service_mut(service) {
                    s.candidate_weight = weights
                        .iter()
                        .find(|(r, _)| *r == s.candidate)
                        .map_or(0, |(_, w)| *w);
                    s.weights = weights.clone();
                }
            }
            Health { service, summary } => {
                if let Some(s) = self.service_mut(service) {
                    s.health = summary.clone();
                }
            }
            SmokeResult { .. } => {}
            Verdict { service, verdict } => {
                if let Some(s) = self.service_mut(service) {
                    s.verdict = Some(verdict.clone());
                }
            }
            GateWaiting {
                service,
                gate,
                reason,
            } => {
                if let Some(s) = self.service_mut(service) {
                    s.status = match gate.kind {
                        GateKind::Approval { .. } => ServiceStatus::AwaitingApproval,
                        GateKind::Promote => {
                            s.approvals.clear();
                            ServiceStatus::Paused
                        }
                    };
                    s.paused_reason = Some(reason.clone());
                    s.gate = Some(gate.clone());
                }
            }
            GateAnswered { service, .. } => {
                if let Some(s) = self.service_mut(service) {
                    s.approvals.clear();
                    s.gate = None;
                    s.paused_reason = None;
                    if matches!(
                        s.status,
                        ServiceStatus::AwaitingApproval | ServiceStatus::Paused
                    ) {
                        s.status = ServiceStatus::Progressing;
                    }
                }
            }
            Paused { service, reason } => match service {
                None => {
                    self.status = ReleaseStatus::Paused;
                    self.paused_reason = Some(reason.clone());
                }
                Some(name) => {
                    if let Some(s) = self.service_mut(name) {
                        if !s.status.is_terminal() {
                            s.status = ServiceStatus::Paused;
                        }
                        s.paused_reason = Some(reason.clone());
                    }
                }
            },
            Resumed { service, .. } => match service {
                None => {
                    if self.status == ReleaseStatus::Paused {
                        self.status = ReleaseStatus::Running;
                    }
                    self.paused_reason = None;
                }
                Some(name) => {
                    if let Some(s) = self.service_mut(name) {
                        s.paused_reason = None;
                        s.gate = None;
                        if s.status == ServiceStatus::Paused {
                            s.status = ServiceStatus::Progressing;
                        }
                    }
                }
            },
            Promoted { service } => {
                if let Some(s) = self.service_mut(service) {
                    s.status = ServiceStatus::Promoted;
                    s.gate = None;
                    s.paused_reason = None;
                    s.finished_at_ms = Some(at);
                    s.cleanup_pending = s.baseline_running;
                }
            }
            RollbackStarted {
                service, reason, ..
            } => {
                if let Some(s) = self.service_mut(service) {
                    s.approvals.clear();
                    s.status = ServiceStatus::RollingBack;
                    s.reason = Some(reason.clone());
                    s.gate = None;
                    s.wait_until_ms = None;
                    s.paused_reason = None;
                }
            }
            RolledBack { service, reason } => {
                if let Some(s) = self.service_mut(service) {
                    s.status = ServiceStatus::RolledBack;
                    s.reason = Some(reason.clone());
                    s.finished_at_ms = Some(at);
                    s.cleanup_pending = false;
                }
            }
            Failed { service, reason } => {
                if let Some(s) = self.service_mut(service) {
                    s.status = ServiceStatus::Failed;
                    s.reason = Some(reason.clone());
                    s.finished_at_ms = Some(at);
                }
            }
            Skipped { service, reason } => {
                if let Some(s) = self.service_mut(service) {
                    s.status = ServiceStatus::Skipped;
                    s.reason = Some(reason.clone());
                    s.finished_at_ms = Some(at);
                }
            }
            Retrying { service, .. } => {
                if let Some(s) = self.service_mut(service) {
                    s.approvals.clear();
                    s.status = ServiceStatus::Pending;
                    s.reason = None;
                    s.step = 0;
                    s.finished_at_ms = None;
                    s.verdict = None;
                }
                if self.status == ReleaseStatus::Finished {
                    self.status = ReleaseStatus::Running;
                    self.finished_at_ms = None;
                }
            }
            Retired { service, revision } => {
                if let Some(s) = self.service_mut(service) {
                    if *revision == s.candidate {
                        s.candidate_running = false;
                    }
                    if *revision == s.baseline {
                        s.baseline_running = false;
                        s.cleanup_pending = false;
                    }
                }
            }
            // Evidence for the report; the snapshot keeps the verdict only.
            PlatformError { .. } | AnalysisSample { .. } => {}
            Migration {
                migration,
                phase,
                detail,
                lines,
            } => {
                let m = match self.migrations.iter().position(|m| m.name == *migration) {
                    Some(i) => &mut self.migrations[i],
                    None => {
                        self.migrations.push(MigrationState {
                            name: migration.clone(),
                            phase: MigrationPhase::Pending,
                            detail: String::new(),
                            lines: Vec::new(),
                            refused: false,
                            since_ms: at,
                            expanded_at_ms: None,
                            ended_at_ms: None,
                        });
                        let last = self.migrations.len() - 1;
                        &mut self.migrations[last]
                    }
                };
                if *phase == MigrationPhase::Failed
                    && matches!(
                        m.phase,
                        MigrationPhase::Pending | MigrationPhase::Linted | MigrationPhase::DryRunOk
                    )
                {
                    m.refused = true;
                }
                match phase {
                    MigrationPhase::Expanded => m.expanded_at_ms = Some(at),
                    MigrationPhase::Contracted | MigrationPhase::Undone => m.ended_at_ms = Some(at),
                    _ => {}
                }
                m.phase = *phase;
                m.detail = detail.clone();
                if !lines.is_empty() {
                    m.lines = lines.clone();
                }
                m.since_ms = at;
            }
            ReleaseFinished { .. } => {
                self.status = ReleaseStatus::Finished;
                self.finished_at_ms = Some(at);
            }
            Fleet {
                event: FleetEvent::Loaded { fleet },
            } => self.fleet = Some((**fleet).clone()),
            Fleet { event } => {
                if let Some(f) = self.fleet.as_mut() {
                    f.apply(event);
                }
            }
        }
    }
}
