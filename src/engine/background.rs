//! Work done off the engine's task (smoke tests, retiring a revision): spawned here, its
//! result comes back through a channel and is acted on at the next tick.

use crate::plan::Action;
use crate::platform::InstanceState;

use super::reconciler::{Engine, EngineError};
use super::smoke::SmokeOutcome;
use super::state::{EventKind, ServiceStatus};

/// Work done off the engine's task; the result comes back through a channel.
#[derive(Debug)]
pub(super) enum Background {
    Smoke {
        service: String,
        generation: u64,
        /// Whose tests ran (the service itself, or a dependent for cross-validation).
        results: Vec<(String, String, String, SmokeOutcome)>,
        cross: bool,
    },
    Retired {
        service: String,
        revision: String,
        result: Result<(), String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Busy {
    Smoke,
    CrossCheck,
}

impl Engine {
    pub(super) async fn on_background(&mut self, bg: Background) -> Result<(), EngineError> {
        match bg {
            Background::Smoke {
                service,
                generation,
                results,
                cross,
            } => {
                let Some(rt) = self.runs.get(&service) else {
                    return Ok(());
                };
                if rt.generation != generation {
                    return Ok(());
                }
                if let Some(rt) = self.runs.get_mut(&service) {
                    rt.busy = None;
                }
                let mut failed = None;
                for (owner, test, revision, out) in results {
                    let label = if owner == service {
                        test.clone()
                    } else {
                        format!("{owner}/{test}")
                    };
                    self.emit(EventKind::SmokeResult {
                        service: service.clone(),
                        test: label.clone(),
                        revision,
                        passed: out.passed,
                        detail: out.detail.clone(),
                    })?;
                    if !out.passed && failed.is_none() {
                        failed = Some(if cross {
                            format!(
                                "dependent {owner}'s smoke test {test} failed against the new {service}: {}",
                                out.detail
                            )
                        } else {
                            format!("smoke test {test} failed: {}", out.detail)
                        });
                    }
                }
                let active = self.status(&service).is_active();
                match failed {
                    Some(reason) if active => self.fail_service(&service, reason).await?,
                    Some(_) => {}
                    None if active => {
                        if cross {
                            self.emit(EventKind::Promoted {
                                service: service.clone(),
                            })?;
                        }
                        self.complete_step(&service).await?;
                    }
                    None => {}
                }
            }
            Background::Retired {
                service,
                revision,
                result,
            } => {
                if let Some(rt) = self.runs.get_mut(&service) {
                    rt.retiring.remove(&revision);
                }
                match result {
                    Ok(()) => {
                        self.emit(EventKind::Retired {
                            service: service.clone(),
                            revision: revision.clone(),
                        })?;
                        let is_cleanup = self.runs.get(&service).is_some_and(|rt| {
                            matches!(rt.step().map(|s| &s.action), Some(Action::Retire { .. }))
                        }) && self.status(&service) == ServiceStatus::Promoted;
                        if is_cleanup {
                            self.complete_step(&service).await?;
                        }
                    }
                    Err(message) => {
                        self.emit(EventKind::PlatformError {
                            service: service.clone(),
                            message: format!("retiring {revision}: {message}"),
                            fatal: false,
                        })?;
                        if let Some(rt) = self.runs.get_mut(&service) {
                            // Try again on the next step entry.
                            rt.entered = false;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn spawn_retire(&mut self, service: &str, revision: &str) {
        let Some(rt) = self.runs.get_mut(service) else {
            return;
        };
        if !rt.retiring.insert(revision.to_string()) {
            return;
        }
        let drain = crate::plan::drain_timeout(&rt.spec);
        let platform = self.platform.clone();
        let tx = self.bg_tx.clone();
        let wake = self.wake.clone();
        let (service, revision) = (service.to_string(), revision.to_string());
        tokio::spawn(async move {
            let result = platform
                .retire(&service, &revision, drain)
                .await
                .map_err(|e| e.message);
            let _ = tx.send(Background::Retired {
                service,
                revision,
                result,
            });
            wake.notify_one();
        });
    }

    pub(super) fn spawn_smoke(&mut self, service: &str, cross: bool) {
        // Tests to run: (owner service, test, revision to test).
        let mut plan: Vec<(crate::release::Smoke, String, String)> = Vec::new();
        if cross {
            let dependents = self.runs[service].dependents.clone();
            for d in dependents {
                let Some(ds) = self.svc(&d) else { continue };
                // A dependent's tests run against what it serves now.
                let rev = if ds.status == ServiceStatus::Promoted {
                    ds.candidate.clone()
                } else {
                    ds.baseline.clone()
                };
                for t in &self.runs[&d].spec.smoke {
                    plan.push((t.clone(), d.clone(), rev.clone()));
                }
            }
        } else if let Some(s) = self.svc(service) {
            for t in &self.runs[service].spec.smoke {
                plan.push((t.clone(), service.to_string(), s.candidate.clone()));
            }
        }
        let Some(rt) = self.runs.get_mut(service) else {
            return;
        };
        rt.busy = Some(if cross { Busy::CrossCheck } else { Busy::Smoke });
        let generation = rt.generation;
        let platform = self.platform.clone();
        let tester = self.smoke.clone();
        let tx = self.bg_tx.clone();
        let wake = self.wake.clone();
        let service = service.to_string();
        tokio::spawn(async move {
            let mut results = Vec::new();
            for (test, owner, revision) in plan {
                let out = match platform.test_route(&owner, &revision).await {
                    Err(e) => SmokeOutcome {
                        passed: false,
                        detail: format!("no test route to {owner} {revision}: {}", e.message),
                    },
                    Ok(route) => {
                        let direct = match platform.health(&owner, &revision).await {
                            Ok(h) => h
                                .instances
                                .iter()
                                .find(|i| i.state == InstanceState::Healthy)
                                .map(|i| format!("http://{}", i.address))
                                .unwrap_or_else(|| route.base_url.clone()),
                            Err(_) => route.base_url.clone(),
                        };
                        tester.run(&test, &route, &direct).await
                    }
                };
                let failed = !out.passed;
                results.push((owner, test.name.clone(), revision, out));
                if failed {
                    break;
                }
            }
            let _ = tx.send(Background::Smoke {
                service,
                generation,
                results,
                cross,
            });
            wake.notify_one();
        });
    }
}
