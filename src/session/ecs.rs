//! The ECS half of a deploy session (`deploy`, `resume`, `serve`): build the platform
//! from the standard AWS configuration, pin what the run acts on and journal it (fresh),
//! or read the pins back and check the listener rules against the journal (resume).
//! See [`crate::platform::ecs::session`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::exit::Failure;
use crate::engine::state::journaled_splits;
use crate::engine::{Clock, Event, PlatformService, SystemClock};
use crate::journal::{Entry, Journal, NewEntry};
use crate::platform::ecs::session::{PIN_ENTRY, Pins};
use crate::platform::ecs::{EcsPlatform, aws};
use crate::release::Release;

/// The platform of an ECS session and what the engine needs to know from it.
pub struct EcsSession {
    pub platform: Arc<EcsPlatform>,
    pub services: HashMap<String, PlatformService>,
}

/// Build the ECS platform for `release` and pin the run: a fresh run (`prior` is `None`)
/// reads the account and journals the pins; a resumed run reads them from `prior`'s
/// entries and refuses listener rules changed since the journal's last shift.
pub async fn start(
    release: &Release,
    journal: &mut Journal,
    prior: Option<(&[Entry], &[Event])>,
    choice: &super::Aws,
    gate: (Option<&crate::policy::ChangeControl>, &str),
) -> Result<EcsSession, Failure> {
    let name = &release.release.name;
    let conf = aws::load_config(choice.region.as_deref(), choice.profile.as_deref()).await;
    if conf.region().is_none()
        && release
            .services
            .iter()
            .any(|s| s.ecs.as_ref().is_some_and(|e| e.region.is_none()))
    {
        return Err(Failure::invalid(format!(
            "release {name}: no AWS region: pass --region, set AWS_REGION (or a profile's region), or add `region` to each [service.ecs]"
        )));
    }
    let platform = EcsPlatform::from_release(release, &conf)
        .map_err(|e| Failure::invalid(format!("release {name}: {e}")))?;
    let images;
    let pins = match prior {
        None => {
            images = Some(
                super::image_gate::admit(
                    release,
                    journal,
                    &conf,
                    platform.retry_policy(),
                    gate.0,
                    gate.1,
                )
                .await?,
            );
            let candidates: BTreeMap<String, String> = release
                .services
                .iter()
                .map(|s| (s.name.clone(), crate::plan::candidate_revision(release, s)))
                .collect();
            let pinned = platform
                .pin_release(&candidates)
                .await
                .and_then(|p| p.check_task_counts(release).map(|()| p));
            let pins = match pinned {
                Ok(p) => p,
                Err(e) => return Err(refused(journal, name, "ECS preflight", "ECS", &e)),
            };
            let payload = serde_json::to_value(&pins)
                .map_err(|e| Failure::internal(format!("cannot record the ECS pins: {e}")))?;
            journal
                .append(NewEntry {
                    at_ms: SystemClock.now_ms(),
                    operator: None,
                    kind: PIN_ENTRY.into(),
                    service: None,
                    payload: serde_json::json!({
                        "summary": summary(&pins),
                        "pins": payload,
                    }),
                })
                .map_err(|e| Failure::internal(format!("journal: {e}")))?;
            pins
        }
        Some((entries, events)) => {
            images = super::image_gate::journaled(entries)?;
            let entry = entries
                .iter()
                .rev()
                .find(|e| e.kind == PIN_ENTRY)
                .ok_or_else(|| {
                    Failure::invalid(format!(
                        "run {}: the journal holds no ECS pins (it stopped before the ECS preflight finished): start a new `cutover deploy`",
                        journal.run_id()
                    ))
                })?;
            let pins: Pins =
                serde_json::from_value(entry.payload["pins"].clone()).map_err(|e| {
                    Failure::internal(format!("the journal's ECS pins cannot be read: {e}"))
                })?;
            if let Err(e) = platform
                .check_resumed_weights(&journaled_splits(events))
                .await
            {
                record(
                    journal,
                    "platform",
                    serde_json::json!({"summary": format!("resume refused: {e}")}),
                );
                return Err(if e.retryable {
                    Failure::internal(format!("resume: {e}"))
                } else {
                    Failure::invalid(format!("resume: {e}"))
                });
            }
            pins
        }
    };
    if let Some(i) = &images {
        platform.apply_images(i);
    }
    platform
        .apply_pins(&pins)
        .map_err(|e| Failure::invalid(format!("release {name}: {e}")))?;
    let services = pins
        .services
        .iter()
        .map(|(svc, p)| {
            (
                svc.clone(),
                PlatformService {
                    baseline: Some(p.baseline.clone()),
                    replicas: Some(p.replicas),
                },
            )
        })
        .collect();
    Ok(EcsSession {
        platform: Arc::new(platform),
        services,
    })
}

fn summary(pins: &Pins) -> String {
    let parts: Vec<String> = pins
        .services
        .iter()
        .map(|(s, p)| {
            format!(
                "{s}: baseline {} ({} task(s), {} secret version(s) pinned)",
                p.baseline,
                p.replicas,
                p.secret_versions.len()
            )
        })
        .collect();
    format!("ECS pinned: {}", parts.join("; "))
}

/// A check before anything changed failed (`what`: "ECS preflight"): journaled, the run
/// finished `refused` (nothing ran: not resumable); exit 2, or 1 when AWS could not answer
/// (`api` names it).
pub(super) fn refused(
    journal: &mut Journal,
    name: &str,
    what: &str,
    api: &str,
    e: &crate::platform::PlatformError,
) -> Failure {
    record(
        journal,
        "platform",
        serde_json::json!({"summary": format!("{what} failed, nothing was changed: {e}")}),
    );
    let _ = journal.finish(super::policy_gate::REFUSED);
    if e.retryable {
        Failure::internal(format!("{api}: {e}"))
    } else {
        Failure::invalid(format!("release {name}: {e}"))
    }
}

fn record(journal: &mut Journal, kind: &str, payload: serde_json::Value) {
    let _ = journal.append(NewEntry {
        at_ms: SystemClock.now_ms(),
        operator: None,
        kind: kind.into(),
        service: None,
        payload,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EventKind;

    fn ev(seq: u64, kind: EventKind) -> Event {
        Event {
            seq,
            at_ms: seq,
            kind,
        }
    }
    fn set(service: &str, w: &[(&str, u8)]) -> EventKind {
        EventKind::WeightsSet {
            service: service.into(),
            weights: w.iter().map(|(r, p)| (r.to_string(), *p)).collect(),
        }
    }

    #[test]
    fn a_shift_followed_by_more_events_is_the_only_split_accepted() {
        let events = vec![
            ev(1, set("api", &[("1.0", 100)])),
            ev(2, set("api", &[("1.0", 75), ("2.0", 25)])),
            ev(
                3,
                EventKind::Promoted {
                    service: "api".into(),
                },
            ),
        ];
        let got = journaled_splits(&events);
        assert_eq!(got["api"].len(), 1);
        assert_eq!(got["api"][0][1], ("2.0".to_string(), 25));
        // Stopped right after journaling the shift: the split before it may still be live.
        let got = journaled_splits(&events[..2]);
        assert_eq!(got["api"].len(), 2);
    }

    #[test]
    fn a_failed_shift_and_its_retries_leave_the_split_before_it_acceptable() {
        let step = |seq, index| {
            ev(
                seq,
                EventKind::StepStarted {
                    service: "api".into(),
                    index,
                    of: 4,
                    action: crate::plan::Action::SetWeight { weight: 50 },
                    description: "send 50% of traffic to the candidate".into(),
                    until_ms: None,
                },
            )
        };
        let failed = |seq| {
            ev(
                seq,
                EventKind::PlatformError {
                    service: "api".into(),
                    message: "throttled".into(),
                    fatal: false,
                },
            )
        };
        let mut events = vec![
            ev(1, set("api", &[("1.0", 100)])),
            step(2, 1),
            ev(3, set("api", &[("1.0", 75), ("2.0", 25)])),
            step(4, 2),
            ev(5, set("api", &[("1.0", 50), ("2.0", 50)])),
            failed(6),
            // The retry of the same step after the back-off.
            step(7, 2),
            ev(8, set("api", &[("1.0", 50), ("2.0", 50)])),
            failed(9),
        ];
        let got = journaled_splits(&events);
        assert_eq!(got["api"].len(), 2, "{got:?}");
        assert_eq!(got["api"][0][1], ("2.0".to_string(), 25));
        // The next step starting shows the shift was made.
        events.push(step(10, 3));
        assert_eq!(journaled_splits(&events)["api"].len(), 1);
    }
}
