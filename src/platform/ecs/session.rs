//! What a `cutover deploy` on ECS fixes when it starts, so that everything later in the
//! run (a rollback, a relaunch, a `resume` in another process) acts on the same things:
//!
//! * the **baseline**: the revision running now (the primary task set, or the service's
//!   task definition for a rolling service) and its task definition ARN, so a rollback that
//!   finds the old task set gone brings back that task definition, not one derived anew;
//! * the **replicas** each revision runs (the release's `desired_count`, else the service's
//!   desired count now);
//! * the **secret versions** the new task definition will reference, checked by the
//!   secrets preflight before anything changes. A relaunch uses exactly these versions,
//!   never whatever is `AWSCURRENT` by then.
//!
//! [`Pins`] is journaled (entry kind [`PIN_ENTRY`], ids and ARNs only, no secret value)
//! before the engine starts; `resume` reads it back. On resume the listener rules are
//! read live and compared with the journal: a rule something else changed while no cutover
//! ran is refused with a message saying what was set and what is there now.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::secrets::SecretVersion;
use super::{Controller, EcsPlatform};
use crate::platform::{PlatformError, Weights};

/// The journal entry kind that stores [`Pins`].
pub const PIN_ENTRY: &str = "ecs_pins";

/// What one service's run is pinned to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePin {
    /// The revision running when the release started (`1.0`, an image tag or task set
    /// external id).
    pub baseline: String,
    /// The task definition that revision runs.
    pub baseline_task_definition: String,
    /// Tasks per revision.
    pub replicas: u32,
    /// The Secrets Manager versions the release deploys with (ARN and version id only).
    pub secret_versions: Vec<SecretVersion>,
}

/// Every service's pins, by release service name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pins {
    pub services: BTreeMap<String, ServicePin>,
}

impl EcsPlatform {
    /// Read what runs now and check the secrets of every service, changing nothing.
    /// Fails (naming the service and the fix) when a service is not in the state the
    /// release expects: wrong deployment controller, no primary task set, already running
    /// the release's image, a secret missing or scheduled for deletion.
    pub async fn pin_release(
        &self,
        candidates: &BTreeMap<String, String>,
    ) -> Result<Pins, PlatformError> {
        let mut pins = Pins::default();
        for svc in self.inner.services.values() {
            let desc = self.describe(svc).await?;
            let controller = self.controller_checked(svc, &desc).await?;
            let (baseline, td) = match controller {
                Controller::External => {
                    let sets = self.task_sets(svc, &desc).await?;
                    let primary = sets
                        .iter()
                        .find(|(_, t)| t.status() == Some("PRIMARY"))
                        .or_else(|| (sets.len() == 1).then(|| &sets[0]));
                    let Some((rev, ts)) = primary else {
                        return Err(svc.fatal(format!(
                            "ECS service \"{}\" has {} task set(s) and none is PRIMARY: make the revision in service primary (aws ecs update-service-primary-task-set) before deploying",
                            svc.cfg.service,
                            sets.len()
                        )));
                    };
                    let td = ts
                        .task_definition()
                        .ok_or_else(|| svc.fatal("the primary task set has no task definition"))?;
                    (rev.clone(), td.to_string())
                }
                Controller::Ecs => {
                    let td = desc
                        .task_definition()
                        .ok_or_else(|| svc.fatal("the ECS service has no task definition"))?
                        .to_string();
                    (self.revision_of_td(svc, &td).await?, td)
                }
            };
            if candidates.get(&svc.name) == Some(&baseline) {
                return Err(svc.fatal(format!(
                    "ECS service \"{}\" already runs revision \"{baseline}\", the one this release deploys: nothing to do (change `image` or remove the service from the release)",
                    svc.cfg.service
                )));
            }
            let replicas = match svc.cfg.desired_count {
                Some(n) => n,
                None => desc.desired_count().max(0) as u32,
            };
            let base = self.task_definition(svc, &td).await?;
            let secret_versions = self.checked_secrets(svc, &base).await?;
            tracing::info!(service = %svc.name, baseline = %baseline, task_definition = %td, replicas, secrets = secret_versions.len(), "pinned");
            pins.services.insert(
                svc.name.clone(),
                ServicePin {
                    baseline,
                    baseline_task_definition: td,
                    replicas,
                    secret_versions,
                },
            );
        }
        Ok(pins)
    }

    /// Use `pins` from now on (a fresh run's, or a resumed run's from its journal).
    /// A service the pins do not name is refused.
    pub fn apply_pins(&self, pins: &Pins) -> Result<(), PlatformError> {
        for name in self.inner.services.keys() {
            let Some(pin) = pins.services.get(name) else {
                return Err(PlatformError::fatal(
                    name,
                    "the journal pins no baseline for this service: resume needs the release the run started with",
                ));
            };
            self.with_state(name, |s| {
                s.pin = Some(pin.clone());
                s.secret_versions = pin.secret_versions.clone();
            });
        }
        Ok(())
    }

    /// On resume: compare each weighted service's listener rule with the splits the
    /// journal recorded (`journaled`: oldest first; the last one, or the one before it when
    /// the run stopped between journaling a shift and making it). A rule that matches
    /// neither was changed by something else while no cutover ran: refused, nothing is
    /// touched. A rule that matches becomes the split the platform expects.
    pub async fn check_resumed_weights(
        &self,
        journaled: &BTreeMap<String, Vec<Weights>>,
    ) -> Result<(), PlatformError> {
        for svc in self.inner.services.values() {
            if svc.wanted_controller() != Controller::External {
                continue;
            }
            let Some(history) = journaled.get(&svc.name).filter(|h| !h.is_empty()) else {
                continue;
            };
            let live = self.weights_external(svc).await?;
            let last = &history[history.len() - 1];
            let before = history.len().checked_sub(2).map(|i| &history[i]);
            let matched = if same_split(&live, last) {
                Some(last)
            } else {
                before.filter(|b| same_split(&live, b))
            };
            let Some(matched) = matched else {
                return Err(svc.fatal(format!(
                    "listener rule {} was changed while no cutover ran: the journal last set {}, it now forwards {}. Nothing was changed; find who changed it (an infrastructure-as-code run?), restore the journaled split, then resume",
                    svc.cfg.listener_rule.as_deref().unwrap_or(""),
                    show(last),
                    show(&live)
                )));
            };
            // The live split, by target group, is what the next shift starts from.
            let nonzero: Weights = matched.iter().filter(|(_, w)| *w > 0).cloned().collect();
            self.expect_weights(&svc.name, &nonzero).await?;
        }
        Ok(())
    }
}

/// Two splits send the same traffic (revisions at 0 % are left out).
pub fn same_split(a: &Weights, b: &Weights) -> bool {
    let norm = |w: &Weights| -> BTreeMap<String, u8> {
        w.iter()
            .filter(|(_, p)| *p > 0)
            .map(|(r, p)| (r.clone(), *p))
            .collect()
    };
    norm(a) == norm(b)
}

fn show(w: &Weights) -> String {
    let parts: Vec<String> = w
        .iter()
        .filter(|(_, p)| *p > 0)
        .map(|(r, p)| format!("{r}={p}%"))
        .collect();
    if parts.is_empty() {
        "nothing".into()
    } else {
        parts.join(" ")
    }
}

impl Pins {
    /// A deploy refuses, before anything changes, a service whose task count resolved to
    /// 0: each revision would launch 0 tasks and wait for "0/0 healthy" until the progress
    /// deadline.
    pub fn check_task_counts(
        &self,
        release: &crate::release::Release,
    ) -> Result<(), PlatformError> {
        for s in &release.services {
            let (Some(pin), Some(ecs)) = (self.services.get(&s.name), &s.ecs) else {
                continue;
            };
            if pin.replicas == 0 {
                return Err(PlatformError::fatal(
                    &s.name,
                    format!(
                        "ECS service \"{}\" runs 0 tasks and the release sets no `desired_count`: each revision would launch 0 tasks; set `desired_count = N` in [service.ecs] of service \"{}\", or scale the ECS service up first",
                        ecs.service, s.name
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(p: &[(&str, u8)]) -> Weights {
        p.iter().map(|(r, x)| (r.to_string(), *x)).collect()
    }

    #[test]
    fn splits_compare_by_traffic_not_by_listing() {
        assert!(same_split(
            &w(&[("1.0", 100), ("2.0", 0)]),
            &w(&[("1.0", 100)])
        ));
        assert!(same_split(
            &w(&[("2.0", 10), ("1.0", 90)]),
            &w(&[("1.0", 90), ("2.0", 10)])
        ));
        assert!(!same_split(
            &w(&[("1.0", 60), ("2.0", 40)]),
            &w(&[("1.0", 90), ("2.0", 10)])
        ));
        assert_eq!(show(&w(&[("1.0", 90), ("2.0", 10)])), "1.0=90% 2.0=10%");
    }

    #[test]
    fn pins_round_trip_through_json_without_values() {
        let pins = Pins {
            services: BTreeMap::from([(
                "api".to_string(),
                ServicePin {
                    baseline: "1.0".into(),
                    baseline_task_definition: "arn:aws:ecs:us-east-1:1:task-definition/api:7"
                        .into(),
                    replicas: 2,
                    secret_versions: vec![SecretVersion {
                        arn: "arn:aws:secretsmanager:us-east-1:1:secret:db-AbCdEf".into(),
                        name: "db".into(),
                        version_id: "v-1".into(),
                    }],
                },
            )]),
        };
        let j = serde_json::to_value(&pins).unwrap();
        assert_eq!(serde_json::from_value::<Pins>(j).unwrap(), pins);
    }
}
