//! The change ticket: `[release] change` is checked where it is written (FILE:LINE:COL),
//! `--change` by the argument parser; both exit 2 with the fix.

mod support;

use std::process::Command;

use support::CUTOVER;

const RELEASE: &str = r#"[release]
name = "shop"
change = "CHG-1 and a long story about why this release exists, which is not a reference"

[[service]]
name = "a"
strategy = "blue_green"
[service.local]
listen = "127.0.0.1:1"
command = ["x"]
current = { revision = "v1" }
target = { revision = "v2" }
"#;

#[test]
fn a_ticket_that_is_not_a_reference_is_refused_where_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("r.toml");
    std::fs::write(&file, RELEASE).unwrap();
    let out = Command::new(CUTOVER)
        .arg("validate")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("r.toml:3:10"), "{err}");
    assert!(
        err.contains("longer than 64") && err.contains("CHG-1234"),
        "{err}"
    );

    for bad in ["", "CHG-1\nrm -rf"] {
        let out = Command::new(CUTOVER)
            .args(["deploy", "--change", bad, "--state-dir"])
            .arg(dir.path())
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--change") && err.contains("CHG-1234"),
            "{err}"
        );
    }
}
