//! The image gates of a fresh ECS run (issue 16, item 4), before the ECS preflight pins
//! anything else: every service's tag resolved to its digest under the policy's
//! `[images] pin` and journaled (entry `ecs_images`), then the policy's `[scan]` gate on
//! those digests (ECR findings or Trivy reports). A tag that cannot be resolved ends the
//! run `refused` like the ECS preflight; scan findings are refused like a policy refusal
//! (one `policy` entry with every finding, finished `refused`), then exit 2. What passes
//! is journaled as a `policy_scan` entry with the waivers used (the report shows it).
//! `resume` reads the journaled digests back ([`journaled`]); nothing is resolved again.

use aws_config::SdkConfig;

use super::exit::Failure;
use crate::engine::{Clock, SystemClock};
use crate::journal::{Entry, Journal, NewEntry};
use crate::platform::ecs::aws::RetryPolicy;
use crate::platform::ecs::images::{self, IMAGE_ENTRY, ImagePins};
use crate::policy::scan::{self, ScanOutcome, ScanPolicy, ScanSource, ScannedImage};
use crate::policy::{ChangeControl, Refusal};
use crate::release::Release;

/// The journal entry kind of a scan gate that passed.
pub const SCAN_ENTRY: &str = "policy_scan";

/// Resolve, journal and scan the images of a fresh run. `Ok`: the pins to deploy.
pub async fn admit(
    release: &Release,
    journal: &mut Journal,
    conf: &SdkConfig,
    retry: &RetryPolicy,
    cc: Option<&ChangeControl>,
    operator: &str,
) -> Result<ImagePins, Failure> {
    let name = &release.release.name;
    let mode = cc.and_then(|c| c.images).unwrap_or_default();
    let pins = match images::resolve(release, conf, retry, mode).await {
        Ok(p) => p,
        Err(e) => {
            return Err(super::ecs::refused(
                journal,
                name,
                "image pinning",
                "ECR",
                &e,
            ));
        }
    };
    let payload = serde_json::to_value(&pins)
        .map_err(|e| Failure::internal(format!("cannot record the image pins: {e}")))?;
    journal
        .append(NewEntry {
            at_ms: SystemClock.now_ms(),
            operator: None,
            kind: IMAGE_ENTRY.into(),
            service: None,
            payload: serde_json::json!({"summary": pins.summary(), "images": payload}),
        })
        .map_err(|e| Failure::internal(format!("journal: {e}")))?;
    log(&pins);
    let Some(policy) = cc.and_then(|c| c.scan.as_ref()) else {
        return Ok(pins);
    };
    let outcome = match &policy.source {
        ScanSource::Ecr => match images::ecr_findings(conf, retry, &pins.scanned()).await {
            Ok((found, unscanned)) => Ok(judge(policy, found, unscanned)),
            Err(e) => Err(format!("{e}")),
        },
        ScanSource::Trivy { .. } => trivy(policy, &pins.scanned()),
    };
    let refusals = match &outcome {
        Ok(o) if o.passed() => Vec::new(),
        Ok(o) => refusals(o),
        Err(e) => vec![Refusal::Invalid {
            message: format!(
                "scan: the scan gate could not read findings (a gate that cannot answer refuses): {e}"
            ),
        }],
    };
    if refusals.is_empty() {
        if let Ok(o) = &outcome {
            journal
                .append(NewEntry {
                    at_ms: SystemClock.now_ms(),
                    operator: Some(operator.to_string()),
                    kind: SCAN_ENTRY.into(),
                    service: None,
                    payload: serde_json::json!({"summary": o.summary(), "scan": o}),
                })
                .map_err(|e| Failure::internal(format!("journal: {e}")))?;
        }
        return Ok(pins);
    }
    super::policy_gate::append_refusal(
        journal,
        release,
        Some(operator),
        SystemClock.now_ms(),
        &refusals,
    )
    .map_err(Failure::internal)?;
    let lines: Vec<String> = refusals.iter().map(Refusal::message).collect();
    Err(Failure::invalid(format!(
        "release {name} refused before anything changed (journaled as run {}):\n  - {}",
        journal.run_id(),
        lines.join("\n  - ")
    )))
}

/// The journaled image pins of a resumed run (`None`: a run without them deploys its
/// images as written, as it did before it stopped).
pub fn journaled(entries: &[Entry]) -> Result<Option<ImagePins>, Failure> {
    let Some(e) = entries.iter().rev().find(|e| e.kind == IMAGE_ENTRY) else {
        return Ok(None);
    };
    let pins: ImagePins = serde_json::from_value(e.payload["images"].clone())
        .map_err(|e| Failure::internal(format!("the journal's image pins cannot be read: {e}")))?;
    log(&pins);
    Ok(Some(pins))
}

/// Each service's image and digest in the console's log pane (and the headless log).
fn log(pins: &ImagePins) {
    for (service, p) in &pins.services {
        match &p.digest {
            Some(d) => {
                tracing::info!(target: "cutover", "image of {service}: {} pinned to {d}", p.image)
            }
            None => {
                tracing::info!(target: "cutover", "image of {service}: {} not pinned ({})", p.image, p.note)
            }
        }
    }
}

/// What `cutover policy check` says of the scan gate, offline: `None` when no `[scan]`
/// applies to the release's environment (or it is not an ECS release); else the outcome on
/// the Trivy reports against the images as the release writes them (a digest only when it
/// writes one), or why it cannot be checked here (ECR findings need AWS and the digests).
pub fn offline(
    loaded: &crate::release::LoadedRelease,
    a: &super::policy_gate::PolicyAdmission,
) -> Option<Result<ScanOutcome, String>> {
    if loaded.release.release.platform != crate::release::PlatformKind::Ecs {
        return None;
    }
    let policy = crate::policy::load(a.policy.as_deref()).ok()?.scan?;
    if !policy.applies_to(super::policy_gate::environment(loaded).as_deref()) {
        return None;
    }
    if policy.source == ScanSource::Ecr {
        return Some(Err(
            "the scan gate reads ECR findings of the pinned digests when a deploy starts (it needs AWS): not checked here".into(),
        ));
    }
    let images: Vec<ScannedImage> = loaded
        .release
        .services
        .iter()
        .filter_map(|s| {
            let e = s.ecs.as_ref()?;
            Some(ScannedImage {
                service: s.name.clone(),
                image: e.image.clone(),
                digest: images::ImageRef::parse(&e.image).digest,
            })
        })
        .collect();
    // A report that cannot be read refuses, as it would at the start of a deploy.
    Some(trivy(&policy, &images).or_else(|why| {
        Ok(ScanOutcome {
            severity: Some(policy.severity),
            unscanned: vec![why],
            ..Default::default()
        })
    }))
}

/// The scan gate on Trivy reports (also what `cutover policy check` runs offline, with
/// the images' tags only).
pub fn trivy(policy: &ScanPolicy, images: &[ScannedImage]) -> Result<ScanOutcome, String> {
    let ScanSource::Trivy { reports } = &policy.source else {
        return Err("the scan source is not Trivy".into());
    };
    let reports = reports
        .iter()
        .map(|p| crate::policy::trivy::read(p))
        .collect::<Result<Vec<_>, _>>()?;
    let (found, unscanned) = crate::policy::trivy::findings(&reports, images);
    Ok(judge(policy, found, unscanned))
}

fn judge(policy: &ScanPolicy, found: Vec<scan::Finding>, unscanned: Vec<String>) -> ScanOutcome {
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    scan::judge(policy, found, unscanned, &today)
}

/// A scan outcome's refusals, one per finding and per unscanned image, then the fix.
pub fn refusals(o: &ScanOutcome) -> Vec<Refusal> {
    o.refusals()
        .into_iter()
        .map(|(f, message)| Refusal::Scan {
            service: f.map(|f| f.service.clone()),
            image: f.map(|f| f.image.clone()),
            id: f.map(|f| f.id.clone()),
            severity: f.map(|f| f.severity),
            message,
        })
        .collect()
}
