//! Image gates of the policy file (issue 16, item 4): `[images]` (how an ECS release's image
//! tags are pinned to digests) and `[scan]` (refuse images whose scan has findings at or
//! above a severity, unless each is waived by name with a reason). Pure: the findings come
//! from a Trivy JSON report ([`super::trivy`]) or from ECR (`platform/ecs/images.rs`); the
//! wiring before a run is `session/image_gate.rs`. See docs/change-control.md.
//!
//! ```toml
//! [images]
//! pin = "ecr-only"            # "required" | "ecr-only" (default) | "off"
//!
//! [scan]
//! severity = "HIGH"           # refuse findings at or above: LOW, MEDIUM, HIGH, CRITICAL
//! source = "ecr"              # or: trivy = "reports/api.json" (relative to the policy file)
//! environments = ["production"]
//!
//! [[scan.waiver]]
//! id = "CVE-2024-1234"
//! reason = "not reachable: the parser is never given untrusted input"
//! image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/api"   # optional
//! expires = "2026-12-31"                                        # optional, UTC, inclusive
//! ```

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::release::Diagnostic;
use crate::release::diagnostic::SourceMap;

/// How an ECS release's image tags are pinned to digests at the start of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PinMode {
    /// Every image is deployed by digest: ECR tags are resolved, an image already written
    /// by digest stays; a tag in another registry refuses the run.
    Required,
    /// ECR tags are resolved and deployed by digest; an image of another registry is
    /// deployed by its tag (journaled as not pinned). The default.
    #[default]
    EcrOnly,
    /// Images are deployed as the release writes them.
    Off,
}

impl PinMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PinMode::Required => "required",
            PinMode::EcrOnly => "ecr-only",
            PinMode::Off => "off",
        }
    }
}

/// A finding's severity, lowest first. ECR's `UNDEFINED`, Inspector's `UNTRIAGED` and
/// Trivy's `UNKNOWN` are [`Severity::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    Unknown,
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// A scanner's word (any case); unknown words are [`Severity::Unknown`].
    pub fn from_scanner(s: &str) -> Severity {
        Severity::from_policy(s).unwrap_or(match s.to_ascii_uppercase().as_str() {
            "INFORMATIONAL" | "INFO" | "NEGLIGIBLE" => Severity::Informational,
            _ => Severity::Unknown,
        })
    }
    /// What `[scan] severity` accepts: LOW, MEDIUM, HIGH, CRITICAL (any case).
    pub fn from_policy(s: &str) -> Option<Severity> {
        match s.to_ascii_uppercase().as_str() {
            "LOW" => Some(Severity::Low),
            "MEDIUM" => Some(Severity::Medium),
            "HIGH" => Some(Severity::High),
            "CRITICAL" => Some(Severity::Critical),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "UNKNOWN",
            Severity::Informational => "INFORMATIONAL",
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }
}

/// Where findings are read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScanSource {
    /// ECR image scan findings (`DescribeImageScanFindings`) of each pinned image.
    Ecr,
    /// Trivy JSON reports (`trivy image --format json`), one per image.
    Trivy { reports: Vec<PathBuf> },
}

/// `[[scan.waiver]]`: a finding accepted by name, with a reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiver {
    pub id: String,
    pub reason: String,
    /// Only for this image (its repository, or the image as the release writes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The last day (UTC, `YYYY-MM-DD`) the waiver holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

/// `[scan]`, read and checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanPolicy {
    /// Findings at or above this refuse the release.
    pub severity: Severity,
    pub source: ScanSource,
    /// The release environments it applies to; empty: every environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waivers: Vec<Waiver>,
}

impl ScanPolicy {
    /// Whether it applies to a release in `environment`.
    pub fn applies_to(&self, environment: Option<&str>) -> bool {
        self.environments.is_empty()
            || environment.is_some_and(|e| self.environments.iter().any(|x| x == e))
    }
}

/// One image a gate looks at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScannedImage {
    pub service: String,
    /// As the release writes it (`…/api:2.0`).
    pub image: String,
    /// The digest it was pinned to (`sha256:…`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// One vulnerability a scanner found in an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub service: String,
    pub image: String,
    /// `CVE-2024-1234`.
    pub id: String,
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
}

/// A finding let through by a waiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waived {
    #[serde(flatten)]
    pub finding: Finding,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

/// What a scan gate found: findings that refuse, findings waived, images it could not
/// judge (no scan, a report of another digest), and how many findings were below the
/// threshold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanOutcome {
    pub severity: Option<Severity>,
    pub blocking: Vec<Finding>,
    pub waived: Vec<Waived>,
    /// One sentence per image without a usable scan (each refuses).
    pub unscanned: Vec<String>,
    pub below: usize,
    /// A waiver that matched a finding but has expired (named in the refusal).
    pub expired: Vec<String>,
}

impl ScanOutcome {
    pub fn passed(&self) -> bool {
        self.blocking.is_empty() && self.unscanned.is_empty()
    }

    /// Each refusal, one sentence each (printed and journaled), the fix in the last one.
    pub fn refusals(&self) -> Vec<(Option<&Finding>, String)> {
        let mut out: Vec<(Option<&Finding>, String)> = Vec::new();
        for f in &self.blocking {
            let expired = self
                .expired
                .iter()
                .find(|e| e.starts_with(&format!("{} ", f.id)))
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            out.push((
                Some(f),
                format!(
                    "scan: service {} image {}: {} {}{}{}",
                    f.service,
                    f.image,
                    f.severity.as_str(),
                    f.id,
                    f.package
                        .as_deref()
                        .map(|p| format!(" in {p}"))
                        .unwrap_or_default(),
                    expired
                ),
            ));
        }
        for u in &self.unscanned {
            out.push((None, format!("scan: {u}")));
        }
        if !self.blocking.is_empty() {
            let sev = self
                .severity
                .map_or("the policy's severity", Severity::as_str);
            out.push((
                None,
                format!(
                    "scan: findings at or above {sev} refuse the release; fix the image, or waive each in the policy file: [[scan.waiver]] id = \"{}\" reason = \"why it is acceptable\" (optional image, expires)",
                    self.blocking[0].id
                ),
            ));
        }
        out
    }

    /// One line for the journal's summary and `policy check`.
    pub fn summary(&self) -> String {
        let waived: Vec<String> = self
            .waived
            .iter()
            .map(|w| format!("{} in {} ({})", w.finding.id, w.finding.image, w.reason))
            .collect();
        format!(
            "scan gate: {} finding(s) at or above {}, {} waived{}, {} below",
            self.blocking.len(),
            self.severity.map_or("?", Severity::as_str),
            self.waived.len(),
            if waived.is_empty() {
                String::new()
            } else {
                format!(": {}", waived.join("; "))
            },
            self.below
        )
    }
}

/// The repository of an image reference (no tag, no digest).
pub fn repository(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    match no_digest.rfind(':') {
        Some(i) if !no_digest[i..].contains('/') => &no_digest[..i],
        _ => no_digest,
    }
}

/// Judge `findings` (every finding of every image) against `policy` on `today`
/// (`YYYY-MM-DD`, UTC); `unscanned` are images the source had nothing for.
pub fn judge(
    policy: &ScanPolicy,
    findings: Vec<Finding>,
    unscanned: Vec<String>,
    today: &str,
) -> ScanOutcome {
    let mut out = ScanOutcome {
        severity: Some(policy.severity),
        unscanned,
        ..Default::default()
    };
    for f in findings {
        if f.severity < policy.severity {
            out.below += 1;
            continue;
        }
        let matching = policy.waivers.iter().filter(|w| {
            w.id.eq_ignore_ascii_case(&f.id)
                && w.image
                    .as_deref()
                    .is_none_or(|i| i == f.image || i == repository(&f.image))
        });
        let mut held = None;
        for w in matching {
            match &w.expires {
                Some(day) if day.as_str() < today => {
                    out.expired
                        .push(format!("{} waiver expired on {day}", w.id));
                }
                _ => {
                    held = Some(w);
                    break;
                }
            }
        }
        match held {
            Some(w) => out.waived.push(Waived {
                finding: f,
                reason: w.reason.clone(),
                expires: w.expires.clone(),
            }),
            None => out.blocking.push(f),
        }
    }
    out
}

/// `[images]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawImages {
    pin: Spanned<String>,
}

/// `[scan]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScan {
    severity: Spanned<String>,
    #[serde(default)]
    source: Option<Spanned<String>>,
    #[serde(default)]
    trivy: Option<Spanned<OneOrMany>>,
    #[serde(default)]
    environments: Vec<String>,
    #[serde(default)]
    waiver: Vec<RawWaiver>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWaiver {
    id: Spanned<String>,
    reason: Spanned<String>,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    expires: Option<Spanned<String>>,
}

/// Check `[images]`.
pub(super) fn pin_mode(map: &SourceMap, raw: RawImages, problems: &mut Vec<Diagnostic>) -> PinMode {
    match raw.pin.get_ref().as_str() {
        "required" => PinMode::Required,
        "ecr-only" => PinMode::EcrOnly,
        "off" => PinMode::Off,
        other => {
            problems.push(map.diagnostic(
                Some(raw.pin.span()),
                format!("[images] pin = \"{other}\" is not a pinning mode"),
                Some("one of \"required\" (every image by digest; a tag outside ECR refuses), \"ecr-only\" (the default) or \"off\"".into()),
            ));
            PinMode::default()
        }
    }
}

/// Check `[scan]` of the policy file at `path` (Trivy reports are relative to it; they
/// are read when a gate runs, since a build writes them afresh).
pub(super) fn scan_policy(
    map: &SourceMap,
    path: &Path,
    raw: RawScan,
    problems: &mut Vec<Diagnostic>,
) -> Option<ScanPolicy> {
    let mut bad = |span: Range<usize>, message: String, hint: &str| {
        problems.push(map.diagnostic(Some(span), message, Some(hint.to_string())));
    };
    let severity = Severity::from_policy(raw.severity.get_ref());
    if severity.is_none() {
        bad(
            raw.severity.span(),
            format!(
                "[scan] severity = \"{}\" is not a severity",
                raw.severity.get_ref()
            ),
            "one of \"LOW\", \"MEDIUM\", \"HIGH\", \"CRITICAL\": findings at or above it refuse the release",
        );
    }
    let base = path.parent().unwrap_or(Path::new(""));
    let source = match (&raw.source, &raw.trivy) {
        (Some(s), None) if s.get_ref() == "ecr" => Some(ScanSource::Ecr),
        (Some(s), None) if s.get_ref() == "trivy" => {
            bad(
                s.span(),
                "[scan] source = \"trivy\" needs the report: write trivy = \"path/to/report.json\" instead".into(),
                "trivy = \"report.json\" (relative to the policy file), or a list of reports",
            );
            None
        }
        (Some(s), None) => {
            bad(
                s.span(),
                format!("[scan] source = \"{}\" is not a scan source", s.get_ref()),
                "source = \"ecr\" (ECR image scan findings), or trivy = \"report.json\" for a Trivy JSON report",
            );
            None
        }
        (None, Some(t)) => {
            let files = match t.get_ref() {
                OneOrMany::One(f) => vec![f.clone()],
                OneOrMany::Many(v) => v.clone(),
            };
            if files.is_empty() {
                bad(
                    t.span(),
                    "[scan] trivy names no report".into(),
                    "trivy = \"report.json\" or trivy = [\"api.json\", \"web.json\"]",
                );
                None
            } else {
                Some(ScanSource::Trivy {
                    reports: files.iter().map(|f| base.join(f)).collect(),
                })
            }
        }
        (Some(s), Some(_)) => {
            bad(
                s.span(),
                "[scan] has both `source` and `trivy`".into(),
                "keep one: source = \"ecr\", or trivy = \"report.json\"",
            );
            None
        }
        (None, None) => {
            bad(
                raw.severity.span(),
                "[scan] says where findings come from with neither `source` nor `trivy`".into(),
                "add source = \"ecr\" (ECR image scan findings) or trivy = \"report.json\" (relative to the policy file)",
            );
            None
        }
    };
    let mut waivers = Vec::new();
    for w in raw.waiver {
        if w.reason.get_ref().trim().is_empty() {
            bad(
                w.reason.span(),
                format!("[[scan.waiver]] {} has an empty reason", w.id.get_ref()),
                "say why the finding is acceptable: the refusal's reader and the report see it",
            );
        }
        if w.id.get_ref().trim().is_empty() {
            bad(
                w.id.span(),
                "[[scan.waiver]] id is empty".into(),
                "the finding's id, e.g. \"CVE-2024-1234\"",
            );
        }
        if let Some(e) = &w.expires
            && chrono::NaiveDate::parse_from_str(e.get_ref(), "%Y-%m-%d").is_err()
        {
            bad(
                e.span(),
                format!(
                    "[[scan.waiver]] expires = \"{}\" is not a date",
                    e.get_ref()
                ),
                "YYYY-MM-DD (UTC): the last day the waiver holds",
            );
        }
        waivers.push(Waiver {
            id: w.id.into_inner(),
            reason: w.reason.into_inner().trim().to_string(),
            image: w.image,
            expires: w.expires.map(Spanned::into_inner),
        });
    }
    Some(ScanPolicy {
        severity: severity?,
        source: source?,
        environments: raw.environments,
        waivers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(id: &str, sev: Severity) -> Finding {
        Finding {
            service: "api".into(),
            image: "1.dkr.ecr.eu-west-1.amazonaws.com/api:2.0".into(),
            id: id.into(),
            severity: sev,
            package: Some("openssl".into()),
        }
    }

    fn policy(waivers: Vec<Waiver>) -> ScanPolicy {
        ScanPolicy {
            severity: Severity::High,
            source: ScanSource::Ecr,
            environments: vec![],
            waivers,
        }
    }

    #[test]
    fn severities_order_and_read_every_scanners_words() {
        assert!(Severity::Critical > Severity::High && Severity::High > Severity::Medium);
        assert!(Severity::Low > Severity::Informational);
        assert_eq!(Severity::from_scanner("high"), Severity::High);
        assert_eq!(Severity::from_scanner("UNDEFINED"), Severity::Unknown);
        assert_eq!(Severity::from_scanner("UNTRIAGED"), Severity::Unknown);
        assert_eq!(Severity::from_policy("UNKNOWN"), None);
    }

    #[test]
    fn findings_at_or_above_refuse_unless_waived_by_name() {
        let p = policy(vec![Waiver {
            id: "CVE-2024-2".into(),
            reason: "not reachable".into(),
            image: Some("1.dkr.ecr.eu-west-1.amazonaws.com/api".into()),
            expires: None,
        }]);
        let out = judge(
            &p,
            vec![
                finding("CVE-2024-1", Severity::Critical),
                finding("CVE-2024-2", Severity::High),
                finding("CVE-2024-3", Severity::Medium),
            ],
            vec![],
            "2026-12-04",
        );
        assert_eq!(out.blocking.len(), 1);
        assert_eq!(out.blocking[0].id, "CVE-2024-1");
        assert_eq!(out.waived[0].finding.id, "CVE-2024-2");
        assert_eq!(out.waived[0].reason, "not reachable");
        assert_eq!(out.below, 1);
        let lines: Vec<String> = out.refusals().into_iter().map(|(_, l)| l).collect();
        assert!(
            lines[0].contains("CRITICAL CVE-2024-1 in openssl")
                && lines[0].contains("service api image 1.dkr.ecr.eu-west-1.amazonaws.com/api:2.0"),
            "{lines:?}"
        );
        assert!(
            lines[1].contains("[[scan.waiver]] id = \"CVE-2024-1\""),
            "{lines:?}"
        );
    }

    #[test]
    fn a_waiver_for_another_image_or_expired_does_not_hold() {
        let p = policy(vec![
            Waiver {
                id: "CVE-2024-1".into(),
                reason: "r".into(),
                image: Some("other/repo".into()),
                expires: None,
            },
            Waiver {
                id: "CVE-2024-2".into(),
                reason: "r".into(),
                image: None,
                expires: Some("2026-12-03".into()),
            },
        ]);
        let out = judge(
            &p,
            vec![
                finding("CVE-2024-1", Severity::High),
                finding("CVE-2024-2", Severity::High),
            ],
            vec![],
            "2026-12-04",
        );
        assert_eq!(out.blocking.len(), 2);
        let lines: Vec<String> = out.refusals().into_iter().map(|(_, l)| l).collect();
        assert!(
            lines[1].contains("waiver expired on 2026-12-03"),
            "{lines:?}"
        );
        // The last day still holds.
        let out = judge(
            &p,
            vec![finding("CVE-2024-2", Severity::High)],
            vec![],
            "2026-12-03",
        );
        assert!(out.passed(), "{out:?}");
    }

    #[test]
    fn repositories_drop_tag_and_digest_but_not_a_port() {
        assert_eq!(repository("reg:5000/api:2.0"), "reg:5000/api");
        assert_eq!(repository("reg:5000/api"), "reg:5000/api");
        assert_eq!(repository("api@sha256:ab"), "api");
        assert_eq!(repository("x/api:1@sha256:ab"), "x/api");
    }
}
