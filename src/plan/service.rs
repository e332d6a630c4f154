//! What the plan says about one service besides its steps: the names of its two revisions,
//! how many instances it runs and how long its old revision drains. The engine, the console
//! and the platforms read these here instead of deriving them again.

use std::time::Duration;

use crate::release::{PlatformKind, Release, Service};

/// Drain timeout without a `[service.local]` section (ECS services).
const DEFAULT_DRAIN: Duration = Duration::from_secs(30);

/// The revision name of a container image: its tag (`.../api:2.3.1` is `2.3.1`; an image
/// without a tag is its own name). The candidate of an ECS service is named this way.
pub fn revision_of_image(image: &str) -> String {
    image.rsplit(':').next().unwrap_or(image).to_string()
}

/// Baseline and candidate revision names of a service on the release's platform.
pub fn revisions(release: &Release, s: &Service) -> (String, String) {
    (
        baseline_revision(release, s),
        candidate_revision(release, s),
    )
}

/// The revision taking traffic before the release: `current.revision` of `[service.local]`
/// on the local platform, `current` for an ECS service (the platform may know its real
/// name), `stable` when the service says neither.
pub fn baseline_revision(release: &Release, s: &Service) -> String {
    match (&s.local, &s.ecs) {
        (Some(l), _) if release.release.platform == PlatformKind::Local => {
            l.current.revision.clone()
        }
        (_, Some(_)) => "current".to_string(),
        (Some(l), None) => l.current.revision.clone(),
        (None, None) => "stable".into(),
    }
}

/// The revision the release rolls out (what the `launch` step starts): `target.revision`
/// of `[service.local]` on the local platform, the image tag of an ECS service,
/// `candidate` when the service says neither.
pub fn candidate_revision(release: &Release, s: &Service) -> String {
    match (&s.local, &s.ecs) {
        (Some(l), _) if release.release.platform == PlatformKind::Local => {
            l.target.revision.clone()
        }
        (_, Some(e)) => revision_of_image(&e.image),
        (Some(l), None) => l.target.revision.clone(),
        (None, None) => "candidate".into(),
    }
}

/// The instance count the plan's steps are made of (the `launch` step, rolling batches):
/// `replicas` of `[service.local]` as written, 1 without that section.
pub fn planned_replicas(s: &Service) -> u32 {
    s.local.as_ref().map_or(1, |l| l.replicas)
}

/// What the `launch` step asks for: the planned replicas, or `None` on ECS (the size the
/// platform's service has now).
pub fn launch_replicas(release: &Release, s: &Service) -> Option<u32> {
    (release.release.platform != PlatformKind::Ecs).then(|| planned_replicas(s))
}

/// The size to run a service at when the platform does not report one: the planned
/// replicas, at least 1. (The plan's own steps use [`planned_replicas`] unclamped; the two
/// differ only for `replicas = 0`, which the release parser refuses.)
pub fn default_replicas(s: &Service) -> u32 {
    s.local.as_ref().map_or(1, |l| l.replicas.max(1))
}

/// How long a revision of the service may drain before it is stopped: `drain_timeout` of
/// `[service.local]`, 30 s without that section. The `retire` step carries the same value.
pub fn drain_timeout(s: &Service) -> Duration {
    s.local
        .as_ref()
        .map_or(DEFAULT_DRAIN, |l| l.drain_timeout.0)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::plan::{Action, expand, plan};

    fn example(name: &str) -> Release {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(name);
        crate::release::load(&path, &Default::default())
            .expect(name)
            .release
    }

    fn launch(release: &Release, s: &Service) -> (String, Option<u32>) {
        match &expand(release, s)[0].action {
            Action::Launch { revision, replicas } => (revision.clone(), *replicas),
            other => panic!("first step of {} is {other:?}", s.name),
        }
    }

    #[test]
    fn local_revisions_replicas_and_drain_come_from_service_local() {
        let r = example("canary-diamond.toml");
        let ledger = r.service("ledger").unwrap();
        assert_eq!(revisions(&r, ledger), ("v41".into(), "v42".into()));
        assert_eq!(launch(&r, ledger), ("v42".into(), Some(2)));
        assert_eq!(launch_replicas(&r, ledger), Some(2));
        assert_eq!((planned_replicas(ledger), default_replicas(ledger)), (2, 2));
        let drain = drain_timeout(ledger);
        assert_eq!(drain, ledger.local.as_ref().unwrap().drain_timeout.0);
        let retire = expand(&r, ledger)
            .into_iter()
            .find_map(|st| match st.action {
                Action::Retire { drain_timeout_ms } => Some(drain_timeout_ms),
                _ => None,
            });
        assert_eq!(retire, Some(drain.as_millis() as u64));
    }

    #[test]
    fn ecs_revisions_are_current_and_the_image_tag_sized_by_the_platform() {
        let r = example("ecs-canary.toml");
        let api = r.service("api").unwrap();
        assert_eq!(revisions(&r, api), ("current".into(), "2.3.1".into()));
        assert_eq!(launch(&r, api), ("2.3.1".into(), None));
        assert_eq!(launch_replicas(&r, api), None);
        assert_eq!((planned_replicas(api), default_replicas(api)), (1, 1));
        assert_eq!(drain_timeout(api), Duration::from_secs(30));
        assert_eq!(revision_of_image("1.dkr.ecr.x/api:2.3.1"), "2.3.1");
        assert_eq!(revision_of_image("nginx"), "nginx");
    }

    #[test]
    fn a_service_without_platform_sections_is_stable_to_candidate() {
        let mut r = example("canary-diamond.toml");
        let s = r.services.iter_mut().find(|s| s.name == "ledger").unwrap();
        s.local = None;
        let s = r.service("ledger").unwrap();
        assert_eq!(revisions(&r, s), ("stable".into(), "candidate".into()));
        assert_eq!(launch(&r, s), ("candidate".into(), Some(1)));
        assert_eq!(drain_timeout(s), Duration::from_secs(30));
    }

    /// The plan's steps take `replicas` as written; the engine's default size is at least 1.
    /// They differ only for 0, which the parser refuses; each keeps its own behaviour.
    #[test]
    fn zero_replicas_plan_zero_but_default_to_one() {
        let mut r = example("canary-diamond.toml");
        for s in &mut r.services {
            if let Some(l) = s.local.as_mut() {
                l.replicas = 0;
            }
        }
        let ledger = r.service("ledger").unwrap();
        assert_eq!(planned_replicas(ledger), 0);
        assert_eq!(default_replicas(ledger), 1);
        assert_eq!(launch(&r, ledger), ("v42".into(), Some(0)));
        let auth = r.service("auth").unwrap();
        assert!(
            !expand(&r, auth)
                .iter()
                .any(|st| matches!(st.action, Action::ReplaceBatch { .. }))
        );
    }

    #[test]
    fn gates_are_approvals_and_open_ended_pauses() {
        assert!(
            Action::Approval {
                timeout_ms: 1,
                on_timeout: crate::release::OnTimeout::Rollback,
                approvals: 1,
                approvers: vec![],
                four_eyes: false,
            }
            .is_gate()
        );
        assert!(Action::Pause { duration_ms: None }.is_gate());
        assert!(
            !Action::Pause {
                duration_ms: Some(1)
            }
            .is_gate()
        );
        assert!(!Action::Analysis { duration_ms: 1 }.is_gate());
        assert!(!Action::Switch.is_gate());
        let p = plan(&example("canary-diamond.toml"));
        let gates = p
            .services
            .iter()
            .flat_map(|s| &s.steps)
            .filter(|st| st.is_gate())
            .count();
        assert!(gates > 0);
        assert_eq!(gates, p.timing.gates);
        for s in &p.services {
            assert_eq!(s.waits_for_people, s.steps.iter().any(|st| st.is_gate()));
        }
    }
}
