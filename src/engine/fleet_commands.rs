//! Per-tenant commands: `rollback TENANT`, `retry TENANT`, `pause TENANT`, `resume TENANT`
//! and `exclude TENANT` (with the operator's reason). A command that names a tenant goes
//! to its services (each through the service's own rules); a name that is a service goes
//! the usual way (`commands.rs`).

use super::command::{Command, CommandReply};
use super::reconciler::{Engine, EngineError};
use super::state::{FleetEvent, ReleaseStatus, ServiceStatus, TenantStatus, Trigger};

impl Engine {
    /// `Some(reply)` when the command is about a tenant (or is `exclude`).
    pub(super) async fn fleet_command(
        &mut self,
        command: &Command,
        operator: &str,
    ) -> Result<Option<CommandReply>, EngineError> {
        let name = match command {
            Command::Exclude { tenant } => tenant.clone(),
            Command::Pause { service: Some(s) }
            | Command::Resume { service: Some(s) }
            | Command::Rollback { service: Some(s) }
            | Command::Approve { service: s }
            | Command::Reject { service: s }
            | Command::Retry { service: s } => s.clone(),
            _ => return Ok(None),
        };
        let Some(t) = self.tenant_index(&name) else {
            if matches!(command, Command::Exclude { .. }) {
                let reason = match self.fleet_state() {
                    None => "this release has no tenants".to_string(),
                    Some(f) => format!(
                        "no tenant `{name}` in this release (tenants: {})",
                        f.tenants
                            .iter()
                            .map(|t| t.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                return self.refuse(command, operator, reason).map(Some);
            }
            return Ok(None);
        };
        let Some(tenant) = self.fleet_state().and_then(|f| f.tenants.get(t)).cloned() else {
            return Ok(None);
        };
        if self.state.status == ReleaseStatus::Ready {
            return self
                .refuse(
                    command,
                    operator,
                    "the release has not started; send start first".into(),
                )
                .map(Some);
        }
        let op = operator.to_string();
        let now = self.clock.now_ms();
        let st = tenant.status;
        let refuse = |why: String| Err::<(), String>(why);
        let pre = match command {
            Command::Exclude { .. } => match st {
                _ if self.note.is_none() => refuse(format!(
                    "say why: `cutover ctl exclude {name} --reason \"...\"`"
                )),
                TenantStatus::Pending | TenantStatus::Running | TenantStatus::Skipped => Ok(()),
                TenantStatus::Excluded => refuse(format!("{name} is already excluded")),
                TenantStatus::Promoted => refuse(format!(
                    "{name} is promoted; roll it back first (`rollback {name}`)"
                )),
                TenantStatus::RolledBack | TenantStatus::Failed => refuse(format!(
                    "{name} already {st} and its failure counts against the budget"
                )),
            },
            Command::Approve { .. } | Command::Reject { .. } => match &tenant.awaiting {
                None => refuse(format!("{name} is {st}: no approval gate is open")),
                Some(g) if g.approvals.contains(&op) => {
                    refuse(format!("{op} already approved {name}; another person must"))
                }
                Some(g) if matches!(command, Command::Approve { .. }) => {
                    match self.tenant_approval_refusal(t, &op, &g.approvals) {
                        Some(why) => refuse(why),
                        None => Ok(()),
                    }
                }
                Some(_) => Ok(()),
            },
            Command::Rollback { .. } => match st {
                TenantStatus::Running | TenantStatus::Promoted => Ok(()),
                _ => refuse(format!("{name} is {st}: nothing to roll back")),
            },
            Command::Retry { .. } => match st {
                TenantStatus::RolledBack
                | TenantStatus::Failed
                | TenantStatus::Skipped
                | TenantStatus::Excluded => Ok(()),
                _ => refuse(format!(
                    "{name} is {st}: only a tenant that did not promote is retried"
                )),
            },
            Command::Pause { .. } => match st {
                _ if tenant.paused => refuse(format!("{name} is already paused")),
                TenantStatus::Pending | TenantStatus::Running => Ok(()),
                _ => refuse(format!("{name} is {st}: nothing to pause")),
            },
            _ => match st {
                _ if !tenant.paused => refuse(format!("{name} is not paused")),
                _ => Ok(()),
            },
        };
        if let Err(reason) = pre {
            return self.refuse(command, operator, reason).map(Some);
        }
        self.accept(command, operator)?;
        let services = tenant.services.clone();
        let text = match command {
            Command::Approve { .. } => {
                self.fleet_emit(FleetEvent::TenantApproved {
                    tenant: name.clone(),
                    by: op.clone(),
                })?;
                let needed = self
                    .release
                    .tenants
                    .get(t)
                    .and_then(|x| x.approval.as_ref())
                    .map_or(1, |a| a.approvals.max(1))
                    .max(self.tenant_gate_rule(t).map_or(1, |r| r.required))
                    as usize;
                let have = self
                    .fleet_state()
                    .and_then(|f| f.tenants.get(t))
                    .and_then(|x| x.awaiting.as_ref())
                    .map_or(0, |g| g.approvals.len());
                if have >= needed {
                    self.start_approved(t)?;
                    format!("{name} approved: it starts")
                } else {
                    format!("{name}: {have} of {needed} approvals")
                }
            }
            Command::Reject { .. } => {
                self.reject_tenant(t, format!("its approval was rejected by {op}"))?;
                format!("{name} rejected: skipped, counted as failed")
            }
            Command::Exclude { .. } => {
                let reason = format!(
                    "excluded by {op}: {}",
                    self.note.clone().unwrap_or_default()
                );
                self.fleet_emit(FleetEvent::TenantExcluded {
                    tenant: name.clone(),
                    reason: reason.clone(),
                })?;
                if st == TenantStatus::Running {
                    if let Some(rt) = self.fleet.as_mut() {
                        rt.active.insert(t);
                    }
                    self.rollback_tenant(
                        t,
                        None,
                        reason.clone(),
                        Trigger::Operator {
                            operator: op.clone(),
                        },
                        false,
                    )
                    .await?;
                } else {
                    self.skip_pending_services(services.clone(), &reason)?;
                }
                format!("{name} excluded: skipped, not counted against the failure budget")
            }
            Command::Rollback { .. } => {
                if let Some(rt) = self.fleet.as_mut() {
                    rt.active.insert(t);
                }
                self.rollback_tenant(
                    t,
                    None,
                    format!("tenant {name} rolled back by {op}"),
                    Trigger::Operator {
                        operator: op.clone(),
                    },
                    st == TenantStatus::Promoted,
                )
                .await?;
                format!("{name}: its services go back to their baselines")
            }
            Command::Retry { .. } => {
                self.fleet_emit(FleetEvent::TenantRetrying {
                    tenant: name.clone(),
                })?;
                if let Some(rt) = self.fleet.as_mut() {
                    rt.active.insert(t);
                }
                for s in &services {
                    if matches!(
                        self.status(s),
                        ServiceStatus::RolledBack | ServiceStatus::Failed | ServiceStatus::Skipped
                    ) {
                        self.retry_service(s, op.clone())?.ok();
                    }
                }
                format!("{name} will roll out again (its failure stays counted)")
            }
            Command::Pause { .. } => {
                self.fleet_emit(FleetEvent::TenantPaused {
                    tenant: name.clone(),
                })?;
                for s in &services {
                    if self.status(s).is_active() && self.status(s) != ServiceStatus::Paused {
                        self.pause_service(s, op.clone(), now)?.ok();
                    }
                }
                format!("{name} paused")
            }
            _ => {
                self.fleet_emit(FleetEvent::TenantResumed {
                    tenant: name.clone(),
                })?;
                for s in &services {
                    if self.runs.get(s).is_some_and(|rt| rt.paused_by_operator) {
                        self.resume_service(s, op.clone(), now)?.ok();
                    }
                }
                format!("{name} resumed")
            }
        };
        Ok(Some(Ok(text)))
    }

    /// A service of a finished tenant retried on its own: the tenant is in flight again.
    pub(super) fn fleet_service_retried(
        &mut self,
        service: &str,
        _op: &str,
    ) -> Result<(), EngineError> {
        let Some(t) = self.tenant_index_of(service) else {
            return Ok(());
        };
        let Some(tenant) = self.fleet_state().and_then(|f| f.tenants.get(t)).cloned() else {
            return Ok(());
        };
        if tenant.status.is_terminal() {
            self.fleet_emit(FleetEvent::TenantRetrying {
                tenant: tenant.name,
            })?;
        }
        if let Some(rt) = self.fleet.as_mut() {
            rt.active.insert(t);
        }
        Ok(())
    }
}
