//! Trivy JSON reports (`trivy image --format json --output FILE IMAGE`) as the scan gate
//! reads them: `ArtifactName`, `Metadata.RepoTags`/`RepoDigests`, and
//! `Results[].Vulnerabilities[].{VulnerabilityID, Severity, PkgName}`. Anything else in the
//! file is ignored; a file that is not such a report is an error naming it.

use std::path::{Path, PathBuf};

use super::scan::{Finding, ScannedImage, Severity};

/// One report, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub path: PathBuf,
    pub artifact: String,
    pub repo_tags: Vec<String>,
    /// `repo@sha256:…` as Trivy records them.
    pub repo_digests: Vec<String>,
    /// (id, severity, package)
    pub vulnerabilities: Vec<(String, Severity, Option<String>)>,
}

/// Read the report at `path`.
pub fn read(path: &Path) -> Result<Report, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read the Trivy report {}: {e} (`trivy` in [scan] is relative to the policy file; write it with `trivy image --format json --output FILE IMAGE`)",
            path.display()
        )
    })?;
    parse(path, &text)
}

/// Parse a report's text.
pub fn parse(path: &Path, text: &str) -> Result<Report, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        format!(
            "{}:{}:{}: not JSON: {e}",
            path.display(),
            e.line(),
            e.column()
        )
    })?;
    let artifact = v["ArtifactName"].as_str().ok_or_else(|| {
        format!(
            "{}: no ArtifactName: not a Trivy JSON report (write it with `trivy image --format json`)",
            path.display()
        )
    })?;
    let strings = |key: &str| -> Vec<String> {
        v["Metadata"][key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut vulnerabilities = Vec::new();
    for r in v["Results"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        for x in r["Vulnerabilities"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            let Some(id) = x["VulnerabilityID"].as_str() else {
                continue;
            };
            vulnerabilities.push((
                id.to_string(),
                Severity::from_scanner(x["Severity"].as_str().unwrap_or("")),
                x["PkgName"].as_str().map(str::to_string),
            ));
        }
    }
    Ok(Report {
        path: path.to_path_buf(),
        artifact: artifact.to_string(),
        repo_tags: strings("RepoTags"),
        repo_digests: strings("RepoDigests"),
        vulnerabilities,
    })
}

/// Whether `report` describes `image`: by digest when both know it, else by name (the
/// artifact or one of its tags). `Err`: the report names the image but scanned another
/// digest (the tag moved since the scan).
fn covers(report: &Report, image: &ScannedImage) -> Result<bool, String> {
    let by_name = report.artifact == image.image || report.repo_tags.contains(&image.image);
    let Some(digest) = &image.digest else {
        return Ok(by_name);
    };
    let suffix = format!("@{digest}");
    let by_digest = report.artifact.ends_with(&suffix)
        || report.repo_digests.iter().any(|d| d.ends_with(&suffix));
    if by_digest {
        return Ok(true);
    }
    if by_name && !report.repo_digests.is_empty() {
        return Err(format!(
            "service {} image {}: the Trivy report {} scanned {}, but the release deploys {digest}: scan the image again",
            image.service,
            image.image,
            report.path.display(),
            report.repo_digests.join(", ")
        ));
    }
    Ok(by_name)
}

/// Every finding of `images` in `reports`, and one sentence per image no report covers.
pub fn findings(reports: &[Report], images: &[ScannedImage]) -> (Vec<Finding>, Vec<String>) {
    let mut found = Vec::new();
    let mut unscanned = Vec::new();
    for img in images {
        let mut covered = false;
        let mut mismatch = None;
        for r in reports {
            match covers(r, img) {
                Ok(true) => {
                    covered = true;
                    found.extend(r.vulnerabilities.iter().map(|(id, sev, pkg)| Finding {
                        service: img.service.clone(),
                        image: img.image.clone(),
                        id: id.clone(),
                        severity: *sev,
                        package: pkg.clone(),
                    }));
                }
                Ok(false) => {}
                Err(e) => mismatch = Some(e),
            }
        }
        if !covered {
            unscanned.push(mismatch.unwrap_or_else(|| {
                format!(
                    "service {} image {}: no Trivy report covers it (reports: {}); scan it with `trivy image --format json --output FILE {}` and list FILE in [scan] trivy",
                    img.service,
                    img.image,
                    reports
                        .iter()
                        .map(|r| r.artifact.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    img.image
                )
            }));
        }
    }
    (found, unscanned)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../../tests/fixtures/trivy/api-2.0.json");

    fn image(digest: Option<&str>) -> ScannedImage {
        ScannedImage {
            service: "api".into(),
            image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/cutover-scan/api:2.0".into(),
            digest: digest.map(str::to_string),
        }
    }

    #[test]
    fn the_fixture_reads_with_every_vulnerability() {
        let r = parse(Path::new("api-2.0.json"), FIXTURE).unwrap();
        assert_eq!(r.artifact, image(None).image);
        let ids: Vec<(&str, Severity)> = r
            .vulnerabilities
            .iter()
            .map(|(id, s, _)| (id.as_str(), *s))
            .collect();
        assert_eq!(
            ids,
            [
                ("CVE-2024-45490", Severity::Critical),
                ("CVE-2023-52425", Severity::High),
                ("CVE-2024-28757", Severity::Medium),
                ("CVE-2011-3374", Severity::Low),
            ]
        );
        assert_eq!(r.vulnerabilities[0].2.as_deref(), Some("libexpat1"));
    }

    #[test]
    fn a_report_of_another_digest_does_not_cover_the_image() {
        let r = parse(Path::new("api-2.0.json"), FIXTURE).unwrap();
        let (found, unscanned) = findings(std::slice::from_ref(&r), &[image(None)]);
        assert_eq!((found.len(), unscanned.len()), (4, 0));
        let pinned = r.repo_digests[0].split('@').nth(1).unwrap().to_string();
        let (found, _) = findings(std::slice::from_ref(&r), &[image(Some(&pinned))]);
        assert_eq!(found.len(), 4);
        let (found, unscanned) = findings(&[r], &[image(Some("sha256:0000"))]);
        assert!(found.is_empty());
        assert!(
            unscanned[0].contains("but the release deploys sha256:0000"),
            "{unscanned:?}"
        );
    }

    #[test]
    fn not_a_report_is_named() {
        let e = parse(Path::new("x.json"), "{\"Results\": []}").unwrap_err();
        assert!(e.starts_with("x.json: no ArtifactName"), "{e}");
        let e = parse(Path::new("x.json"), "{\n oops").unwrap_err();
        assert!(e.starts_with("x.json:2:"), "{e}");
    }
}
