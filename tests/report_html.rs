//! The HTML release report in a real browser: headless Debian `chromium` (scripts/test
//! installs it; this test fails without it) renders the page from a file, with no network,
//! and the DOM it builds holds the verdict charts of every analysed service.

mod support;

use std::process::Command;

use cutover::engine::FinalStatus::{Promoted, RolledBack};
use cutover::judge::Outcome;
use support::journals::RunWriter;

/// Headless Chromium with a throwaway profile and nothing that phones home.
fn chromium(profile: &std::path::Path, args: &[&str]) -> std::process::Output {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output();
    match out {
        Ok(o) => o,
        Err(e) => panic!(
            "cannot run `chromium` ({e}): install it (scripts/test does: apt-get install chromium)"
        ),
    }
}

#[test]
fn chromium_renders_the_report_with_the_charts_of_every_analysed_service() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = cutover::journal::timefmt::now_ms() - 3_600_000;
    let mut w = RunWriter::new(
        dir.path(),
        "shop",
        Some("production"),
        Some("CHG-1234"),
        &["api", "web", "docs"],
        t0,
    );
    w.start(0.0, "ann")
        .launch(1.0, "api")
        .launch(1.0, "web")
        .launch(1.0, "docs");
    for i in 1..=20 {
        let s = 1.0 + f64::from(i) * 3.0;
        w.window(s, "api", 1, 0, 40.0 + f64::from(i % 3));
        w.window(
            s,
            "web",
            1,
            if i > 8 { 25 } else { 0 },
            if i > 8 { 150.0 } else { 42.0 },
        );
    }
    w.verdict(62.0, "api", Outcome::Pass)
        .verdict(30.0, "web", Outcome::Fail)
        .rollback(30.0, 31.0, "web", None)
        .promote(63.0, "api")
        .promote(20.0, "docs");
    let run = w.finish(
        64.0,
        "rolled_back",
        &[("api", Promoted), ("web", RolledBack), ("docs", Promoted)],
    );

    let state = dir.path().to_string_lossy().into_owned();
    let out = support::cutover_ok(["report", &run, "--format", "html", "--state-dir", &state]);
    let page = dir.path().join("report.html");
    std::fs::write(&page, &out.stdout).unwrap();
    let url = format!("file://{}", page.display());

    let profile = tempfile::tempdir().unwrap();
    let dom = chromium(profile.path(), &["--dump-dom", &url]);
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("CHG-1234"), "the change ticket is on the page");
    // Every analysed service has its split, error-rate and latency charts; `docs` ran no
    // analysis and has a split chart only.
    for svc in ["api", "web"] {
        for chart in ["split", "errors", "latency"] {
            let id = format!("id=\"chart-{svc}-{chart}\"");
            assert!(dom.contains(&id), "{id} is not in the DOM");
        }
    }
    assert!(dom.contains("id=\"chart-docs-split\"") && !dom.contains("chart-docs-errors"));
    // The rollback row with its times, and the journal's last hash.
    assert!(dom.contains("id=\"rollbacks\""));
    let hash = cutover::journal::verify(dir.path(), Some(&run))
        .unwrap()
        .runs[0]
        .last_hash
        .clone();
    assert!(dom.contains(&hash));
    // Nothing the page would fetch.
    assert!(!dom.contains("<script") && !dom.contains(" src=\"") && !dom.contains("<link"));

    // And it paints: a screenshot comes out as a PNG of the window's size.
    let png = dir.path().join("report.png");
    let shot = chromium(
        profile.path(),
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,2000",
            &url,
        ],
    );
    assert!(
        shot.status.success(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    // IHDR: width and height, big-endian, at bytes 16..24.
    let dim = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    assert_eq!((dim(16), dim(20)), (1280, 2000));
}
