//! The scan gate offline: `cutover policy check` reads the policy's Trivy reports against
//! the release's images (exit 2 listing every finding at or above the severity, unless
//! waived by name with a reason; the gate's environments respected), and a bad `[scan]` is
//! located. The gate at the start of an ECS run (digests, ECR findings, journaling) is
//! tested against moto in tests/ecs_deploy.rs.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::CUTOVER;

const IMAGE: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/cutover-scan/api:2.0";

fn release(dir: &Path, environment: &str) -> String {
    let file = dir.join("release.toml");
    std::fs::write(
        &file,
        format!(
            r#"[release]
name = "scan"
platform = "ecs"
environment = "{environment}"

[[service]]
name = "api"
strategy = "rolling"
[service.ecs]
cluster = "prod"
service = "api"
container = "app"
image = "{IMAGE}"
region = "us-east-1"
"#
        ),
    )
    .expect("write release");
    file.to_string_lossy().to_string()
}

/// A policy with `scan` next to a copy of the Trivy fixture (`reports/api.json`).
fn policy(dir: &Path, scan: &str) -> String {
    let reports = dir.join("reports");
    std::fs::create_dir_all(&reports).expect("mkdir");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/trivy/api-2.0.json"),
        reports.join("api.json"),
    )
    .expect("copy fixture");
    let file = dir.join("policy.toml");
    std::fs::write(&file, scan).expect("write policy");
    file.to_string_lossy().to_string()
}

fn check(dir: &Path, release: &str, policy: &str) -> (Option<i32>, String) {
    let out: Output = Command::new(CUTOVER)
        .args(["policy", "check", release, "--policy", policy])
        .env("CUTOVER_CONFIG_DIR", dir.join("config"))
        .env_remove("CUTOVER_POLICY")
        .output()
        .expect("run cutover");
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

const SCAN: &str = r#"[scan]
severity = "HIGH"
trivy = "reports/api.json"
environments = ["production"]
"#;

#[test]
fn policy_check_lists_each_finding_at_or_above_the_severity_until_it_is_waived() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rel = release(dir.path(), "production");
    let pol = policy(dir.path(), SCAN);
    let (code, t) = check(dir.path(), &rel, &pol);
    assert_eq!(code, Some(2), "{t}");
    assert!(
        t.contains(&format!(
            "scan: service api image {IMAGE}: CRITICAL CVE-2024-45490 in libexpat1"
        )),
        "{t}"
    );
    assert!(
        t.contains(&format!(
            "scan: service api image {IMAGE}: HIGH CVE-2023-52425 in libexpat1"
        )),
        "{t}"
    );
    assert!(!t.contains("CVE-2024-28757"), "MEDIUM is below HIGH: {t}");
    assert!(t.contains("[[scan.waiver]] id = \"CVE-2024-45490\""), "{t}");

    // One waived: the other still refuses.
    let one = format!(
        "{SCAN}[[scan.waiver]]\nid = \"CVE-2024-45490\"\nreason = \"expat never parses untrusted XML here\"\n"
    );
    let (code, t) = check(dir.path(), &rel, &policy(dir.path(), &one));
    assert_eq!(code, Some(2), "{t}");
    assert!(!t.contains("CRITICAL CVE-2024-45490 in"), "{t}");
    assert!(t.contains("1 waived: CVE-2024-45490"), "{t}");

    // Both waived (one only for this image's repository): the release may start.
    let both = format!(
        "{one}[[scan.waiver]]\nid = \"CVE-2023-52425\"\nreason = \"DoS only\"\nimage = \"{}\"\n",
        IMAGE.trim_end_matches(":2.0")
    );
    let (code, t) = check(dir.path(), &rel, &policy(dir.path(), &both));
    assert_eq!(code, Some(0), "{t}");
    assert!(t.contains("0 finding(s) at or above HIGH, 2 waived"), "{t}");

    // Outside the gate's environments nothing is scanned.
    let staging = release(dir.path(), "staging");
    let (code, t) = check(dir.path(), &staging, &pol);
    assert_eq!(code, Some(0), "{t}");
    assert!(!t.contains("scan gate"), "{t}");
}

#[test]
fn an_image_no_report_covers_refuses_and_a_bad_scan_table_is_located() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rel = release(dir.path(), "production");
    std::fs::write(
        &rel,
        std::fs::read_to_string(&rel)
            .expect("read")
            .replace(":2.0", ":2.1"),
    )
    .expect("write");
    let (code, t) = check(dir.path(), &rel, &policy(dir.path(), SCAN));
    assert_eq!(code, Some(2), "{t}");
    assert!(t.contains("api:2.1: no Trivy report covers it"), "{t}");

    let bad = "[scan]\nseverity = \"SEVERE\"\ntrivy = \"reports/api.json\"\n\n[[scan.waiver]]\nid = \"CVE-1\"\nreason = \" \"\nexpires = \"next year\"\n\n[images]\npin = \"always\"\n";
    let (code, t) = check(dir.path(), &rel, &policy(dir.path(), bad));
    assert_eq!(code, Some(2), "{t}");
    for want in [
        "policy.toml:2:12: [scan] severity = \"SEVERE\" is not a severity",
        "policy.toml:7:10: [[scan.waiver]] CVE-1 has an empty reason",
        "policy.toml:8:11: [[scan.waiver]] expires = \"next year\" is not a date",
        "policy.toml:11:7: [images] pin = \"always\" is not a pinning mode",
    ] {
        assert!(t.contains(want), "{want}\n{t}");
    }
}
