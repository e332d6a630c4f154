//! Image digests and scan findings on ECS (issue 16, item 4).
//!
//! At the start of a fresh run every service's image tag is resolved to its digest
//! ([`resolve`]: ECR `DescribeImages`), journaled as [`ImagePins`] (entry kind
//! [`IMAGE_ENTRY`]) before anything changes, and the task definitions the run registers
//! name the image by digest (`repo@sha256:…`), so a tag moved mid-release changes nothing.
//! `resume` reads the journaled pins back and never resolves again. A task definition
//! pinned this way carries the revision's name (the tag) in the docker label
//! [`REVISION_LABEL`], since its image no longer has a tag to name it by.
//!
//! Which images are pinned is the policy's `[images] pin` ([`PinMode`]): `ecr-only` (the
//! default) resolves ECR tags and deploys other registries' images by tag, journaled as
//! not pinned; `required` refuses a tag outside ECR; `off` deploys images as written. An
//! image the release already writes by digest stays as it is.
//!
//! [`ecr_findings`] reads ECR image scan findings (`DescribeImageScanFindings`, basic and
//! enhanced) of pinned images for the scan gate (`policy/scan.rs`).

use std::collections::BTreeMap;

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_sdk_ecr::types::{ImageIdentifier, ImageScanFindings};
use aws_sdk_ecs::types::TaskDefinition;
use serde::{Deserialize, Serialize};

use super::EcsPlatform;
use super::aws::{RetryPolicy, call};
use crate::platform::PlatformError;
use crate::policy::scan::{Finding, PinMode, ScannedImage, Severity};
use crate::release::Release;

/// The journal entry kind that stores [`ImagePins`].
pub const IMAGE_ENTRY: &str = "ecs_images";

/// The docker label naming the revision of a task definition whose image is a digest.
pub const REVISION_LABEL: &str = "cutover.revision";

/// An image reference split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry and repository, without tag or digest.
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:…`
    pub digest: Option<String>,
}

/// An ECR repository named by an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcrRepository {
    pub registry_id: String,
    pub region: String,
    pub name: String,
}

impl ImageRef {
    pub fn parse(image: &str) -> ImageRef {
        let (name, digest) = match image.split_once('@') {
            Some((n, d)) => (n, Some(d.to_string())),
            None => (image, None),
        };
        let repository = crate::policy::scan::repository(name).to_string();
        let tag = name
            .get(repository.len() + 1..)
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        ImageRef {
            repository,
            tag,
            digest,
        }
    }

    /// The ECR repository, when the registry is an ECR registry
    /// (`ACCOUNT.dkr.ecr[-fips].REGION.amazonaws.com[.cn]`).
    pub fn ecr(&self) -> Option<EcrRepository> {
        let (host, name) = self.repository.split_once('/')?;
        let parts: Vec<&str> = host.split('.').collect();
        let ok = parts.len() >= 6
            && parts[0].len() == 12
            && parts[0].bytes().all(|b| b.is_ascii_digit())
            && parts[1] == "dkr"
            && (parts[2] == "ecr" || parts[2] == "ecr-fips")
            && parts[4] == "amazonaws"
            && parts[5] == "com"
            && (parts.len() == 6 || (parts.len() == 7 && parts[6] == "cn"));
        ok.then(|| EcrRepository {
            registry_id: parts[0].to_string(),
            region: parts[3].to_string(),
            name: name.to_string(),
        })
    }
}

/// What one service deploys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagePin {
    /// The image as the release writes it.
    pub image: String,
    /// Its digest (`sha256:…`), when pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// What the task definition gets: `repo@sha256:…`, or the image as written.
    pub deploy: String,
    /// Why it is not pinned, or where the digest came from.
    pub note: String,
}

/// Every service's image, by release service name; journaled before anything changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagePins {
    pub mode: PinMode,
    pub services: BTreeMap<String, ImagePin>,
}

impl ImagePins {
    /// One line for the journal entry's summary.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .services
            .iter()
            .map(|(s, p)| match &p.digest {
                Some(d) => format!("{s}: {} -> {d}", p.image),
                None => format!("{s}: {} not pinned ({})", p.image, p.note),
            })
            .collect();
        format!("images ({}): {}", self.mode.as_str(), parts.join("; "))
    }

    /// The images a scan gate looks at.
    pub fn scanned(&self) -> Vec<ScannedImage> {
        self.services
            .iter()
            .map(|(s, p)| ScannedImage {
                service: s.clone(),
                image: p.image.clone(),
                digest: p.digest.clone(),
            })
            .collect()
    }
}

fn ecr_client(conf: &SdkConfig, region: &str) -> aws_sdk_ecr::Client {
    aws_sdk_ecr::Client::from_conf(
        aws_sdk_ecr::config::Builder::from(conf)
            .retry_config(RetryConfig::disabled())
            .region(aws_config::Region::new(region.to_string()))
            .build(),
    )
}

/// Resolve every service's image of `release` under `mode`, changing nothing. A tag that
/// cannot be resolved is an error naming the service, the image and the fix.
pub async fn resolve(
    release: &Release,
    conf: &SdkConfig,
    retry: &RetryPolicy,
    mode: PinMode,
) -> Result<ImagePins, PlatformError> {
    let mut pins = ImagePins {
        mode,
        services: BTreeMap::new(),
    };
    for s in &release.services {
        let Some(ecs) = &s.ecs else { continue };
        let image = ecs.image.clone();
        let r = ImageRef::parse(&image);
        let unpinned = |note: &str| ImagePin {
            image: image.clone(),
            digest: None,
            deploy: image.clone(),
            note: note.to_string(),
        };
        let pin = if mode == PinMode::Off {
            unpinned("[images] pin = \"off\"")
        } else if let Some(d) = &r.digest {
            ImagePin {
                image: image.clone(),
                digest: Some(d.clone()),
                deploy: image.clone(),
                note: "written by digest in the release".into(),
            }
        } else if let Some(repo) = r.ecr() {
            let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
            let digest = ecr_digest(conf, retry, &repo, &tag)
                .await
                .map_err(|e| PlatformError {
                    service: s.name.clone(),
                    message: format!("image {image}: {}", e.0),
                    retryable: e.1,
                })?;
            ImagePin {
                image: image.clone(),
                deploy: format!("{}@{digest}", r.repository),
                digest: Some(digest),
                note: "resolved in ECR".into(),
            }
        } else if mode == PinMode::Required {
            return Err(PlatformError::fatal(
                &s.name,
                format!(
                    "image {image} is a tag outside ECR, which cutover cannot resolve to a digest, and the policy's [images] pin = \"required\": write it by digest in [service.ecs] of service {} (image = \"{}@sha256:…\"), push it to ECR, or set pin = \"ecr-only\"",
                    s.name, r.repository
                ),
            ));
        } else {
            unpinned("not an ECR image: deployed by tag ([images] pin = \"required\" refuses it)")
        };
        pins.services.insert(s.name.clone(), pin);
    }
    Ok(pins)
}

/// The digest of `repo:tag` in ECR; `Err((message, retryable))`.
async fn ecr_digest(
    conf: &SdkConfig,
    retry: &RetryPolicy,
    repo: &EcrRepository,
    tag: &str,
) -> Result<String, (String, bool)> {
    let ecr = ecr_client(conf, &repo.region);
    let out = call(retry, "ecr:DescribeImages", || {
        ecr.describe_images()
            .registry_id(&repo.registry_id)
            .repository_name(&repo.name)
            .image_ids(ImageIdentifier::builder().image_tag(tag).build())
            .send()
    })
    .await
    .map_err(|e| {
        let fix = if e.is_not_found() {
            format!(
                "tag `{tag}` is not in ECR repository {} (registry {}, region {}): push the image, or fix `image` in [service.ecs]",
                repo.name, repo.registry_id, repo.region
            )
        } else if e.is_access_denied() {
            format!(
                "cutover may not read ECR repository {} ({e}): grant ecr:DescribeImages (and ecr:DescribeImageScanFindings for a scan gate), or set [images] pin = \"off\" in the policy",
                repo.name
            )
        } else {
            format!("cannot resolve tag `{tag}` to a digest: {e}")
        };
        (fix, e.retryable)
    })?;
    out.image_details()
        .iter()
        .find_map(|d| d.image_digest())
        .map(str::to_string)
        .ok_or_else(|| {
            (
                format!(
                    "ECR answered without a digest for tag `{tag}` of repository {}: push the image again",
                    repo.name
                ),
                false,
            )
        })
}

/// The findings of one image's ECR scan (basic and enhanced findings).
pub fn findings_of(service: &str, image: &str, scan: &ImageScanFindings) -> Vec<Finding> {
    let mut out: Vec<Finding> = scan
        .findings()
        .iter()
        .map(|f| Finding {
            service: service.to_string(),
            image: image.to_string(),
            id: f.name().unwrap_or("(unnamed)").to_string(),
            severity: Severity::from_scanner(f.severity().map_or("", |s| s.as_str())),
            package: f
                .attributes()
                .iter()
                .find(|a| a.key() == "package_name")
                .and_then(|a| a.value())
                .map(str::to_string),
        })
        .collect();
    out.extend(scan.enhanced_findings().iter().map(|f| {
        let details = f.package_vulnerability_details();
        Finding {
            service: service.to_string(),
            image: image.to_string(),
            id: details
                .and_then(|d| d.vulnerability_id())
                .or(f.title())
                .unwrap_or("(unnamed)")
                .to_string(),
            severity: Severity::from_scanner(f.severity().unwrap_or("")),
            package: details
                .and_then(|d| d.vulnerable_packages().first())
                .and_then(|p| p.name())
                .map(str::to_string),
        }
    }));
    out
}

/// ECR scan findings of every image; images outside ECR or without a complete scan are
/// named in the second list (each refuses). `Err`: ECR could not be asked.
pub async fn ecr_findings(
    conf: &SdkConfig,
    retry: &RetryPolicy,
    images: &[ScannedImage],
) -> Result<(Vec<Finding>, Vec<String>), PlatformError> {
    let mut found = Vec::new();
    let mut unscanned = Vec::new();
    for img in images {
        let r = ImageRef::parse(&img.image);
        let (Some(repo), Some(digest)) = (r.ecr(), img.digest.as_deref()) else {
            unscanned.push(format!(
                "service {} image {}: ECR scan findings need an ECR image pinned by digest; push it to ECR, or scan it with Trivy and set [scan] trivy = \"report.json\"",
                img.service, img.image
            ));
            continue;
        };
        let ecr = ecr_client(conf, &repo.region);
        let mut token: Option<String> = None;
        loop {
            let out = call(retry, "ecr:DescribeImageScanFindings", || {
                ecr.describe_image_scan_findings()
                    .registry_id(&repo.registry_id)
                    .repository_name(&repo.name)
                    .image_id(ImageIdentifier::builder().image_digest(digest).build())
                    .set_next_token(token.clone())
                    .send()
            })
            .await;
            let out = match out {
                Ok(o) => o,
                Err(e) if e.code.as_deref() == Some("ScanNotFoundException") => {
                    unscanned.push(format!(
                        "service {} image {} ({digest}): ECR has no scan of it; turn on scan on push, or run `aws ecr start-image-scan --repository-name {} --image-id imageDigest={digest}`",
                        img.service, img.image, repo.name
                    ));
                    break;
                }
                Err(e) => {
                    return Err(PlatformError {
                        service: img.service.clone(),
                        message: format!("image {}: scan findings: {e}", img.image),
                        retryable: e.retryable,
                    });
                }
            };
            let status = out
                .image_scan_status()
                .and_then(|s| s.status())
                .map_or("", |s| s.as_str());
            if status != "COMPLETE" && status != "ACTIVE" {
                unscanned.push(format!(
                    "service {} image {} ({digest}): its ECR scan is {} ({}); wait for it to complete, then deploy",
                    img.service,
                    img.image,
                    if status.is_empty() { "unknown" } else { status },
                    out.image_scan_status()
                        .and_then(|s| s.description())
                        .unwrap_or("no description")
                ));
                break;
            }
            if let Some(scan) = out.image_scan_findings() {
                found.extend(findings_of(&img.service, &img.image, scan));
            }
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
    }
    Ok((found, unscanned))
}

/// Name the image `pin` deploys in the release's container of `def`, with the revision's
/// name in [`REVISION_LABEL`] when that image is a digest; without a pin, drop a label a
/// previous pinned revision left (the copy would otherwise misname this one).
pub fn pin_container(
    def: &mut TaskDefinition,
    container: &str,
    pin: Option<&ImagePin>,
    revision: &str,
) {
    for c in def.container_definitions.iter_mut().flatten() {
        if c.name() != Some(container) {
            continue;
        }
        let labels = c.docker_labels.get_or_insert_with(Default::default);
        labels.remove(REVISION_LABEL);
        if let Some(p) = pin {
            c.image = Some(p.deploy.clone());
            if p.deploy.contains('@') {
                labels.insert(REVISION_LABEL.to_string(), revision.to_string());
            }
        }
        if labels.is_empty() {
            c.docker_labels = None;
        }
    }
}

impl EcsPlatform {
    /// Deploy the images of `pins` from now on (a fresh run's, or a resumed run's from its
    /// journal).
    pub fn apply_images(&self, pins: &ImagePins) {
        for (name, pin) in &pins.services {
            self.with_state(name, |s| s.image = Some(pin.clone()));
        }
    }

    /// The image pin of `service`, if any.
    pub(crate) fn image_pin(&self, service: &str) -> Option<ImagePin> {
        self.with_state(service, |s| s.image.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecr::types::{
        Attribute, EnhancedImageScanFinding, FindingSeverity, ImageScanFinding,
        PackageVulnerabilityDetails, VulnerablePackage,
    };

    #[test]
    fn image_references_split_and_ecr_registries_are_known() {
        let r = ImageRef::parse("123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/api:2.0");
        assert_eq!(
            r.repository,
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/api"
        );
        assert_eq!(r.tag.as_deref(), Some("2.0"));
        assert_eq!(
            r.ecr(),
            Some(EcrRepository {
                registry_id: "123456789012".into(),
                region: "eu-west-1".into(),
                name: "team/api".into()
            })
        );
        let r = ImageRef::parse("registry:5000/api@sha256:abc");
        assert_eq!(
            (r.repository.as_str(), r.tag.as_deref(), r.digest.as_deref()),
            ("registry:5000/api", None, Some("sha256:abc"))
        );
        assert_eq!(r.ecr(), None);
        assert_eq!(ImageRef::parse("nginx").ecr(), None);
        assert_eq!(
            ImageRef::parse("12345.dkr.ecr.eu-west-1.amazonaws.com/api:1").ecr(),
            None
        );
    }

    #[test]
    fn basic_and_enhanced_findings_are_read() {
        let scan = ImageScanFindings::builder()
            .findings(
                ImageScanFinding::builder()
                    .name("CVE-9999-9999")
                    .severity(FindingSeverity::High)
                    .attributes(
                        Attribute::builder()
                            .key("package_name")
                            .value("moto_fake")
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .enhanced_findings(
                EnhancedImageScanFinding::builder()
                    .severity("CRITICAL")
                    .title("CVE-2024-1 - openssl")
                    .package_vulnerability_details(
                        PackageVulnerabilityDetails::builder()
                            .vulnerability_id("CVE-2024-1")
                            .vulnerable_packages(
                                VulnerablePackage::builder().name("openssl").build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .build();
        let f = findings_of("api", "x/api:2", &scan);
        assert_eq!(f.len(), 2);
        assert_eq!(
            (f[0].id.as_str(), f[0].severity, f[0].package.as_deref()),
            ("CVE-9999-9999", Severity::High, Some("moto_fake"))
        );
        assert_eq!(
            (f[1].id.as_str(), f[1].severity, f[1].package.as_deref()),
            ("CVE-2024-1", Severity::Critical, Some("openssl"))
        );
    }

    #[test]
    fn a_pinned_container_names_its_revision_and_an_unpinned_one_drops_the_label() {
        use aws_sdk_ecs::types::ContainerDefinition;
        let mut td = TaskDefinition::builder()
            .container_definitions(
                ContainerDefinition::builder()
                    .name("app")
                    .image("r/api:2.0")
                    .build(),
            )
            .build();
        let pin = ImagePin {
            image: "r/api:2.0".into(),
            digest: Some("sha256:ab".into()),
            deploy: "r/api@sha256:ab".into(),
            note: String::new(),
        };
        pin_container(&mut td, "app", Some(&pin), "2.0");
        let c = &td.container_definitions()[0];
        assert_eq!(c.image(), Some("r/api@sha256:ab"));
        assert_eq!(
            c.docker_labels()
                .and_then(|l| l.get(REVISION_LABEL))
                .map(String::as_str),
            Some("2.0")
        );
        pin_container(&mut td, "app", None, "3.0");
        assert_eq!(td.container_definitions()[0].docker_labels(), None);
    }
}
