//! Every fixture under tests/fixtures/invalid is a hand-broken release. Each line that
//! should be reported carries a trailing `# expect: TEXT [&& TEXT ...]` comment: the test
//! asserts a diagnostic on exactly that line whose message or hint contains every TEXT,
//! and that nothing is reported on unmarked lines (no noise, no cascades).

mod support;

use std::path::PathBuf;
use std::process::Command;

use cutover::release;

fn fixtures() -> Vec<PathBuf> {
    support::release::toml_files("tests/fixtures/invalid")
}

/// (line, expected substrings) for each marked line.
fn expectations(text: &str) -> Vec<(usize, Vec<String>)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let (_, want) = line.split_once("# expect: ")?;
            Some((
                i + 1,
                want.split(" && ").map(|s| s.trim().to_string()).collect(),
            ))
        })
        .collect()
}

#[test]
fn there_are_at_least_thirty_invalid_fixtures() {
    assert!(fixtures().len() >= 30, "only {} fixtures", fixtures().len());
}

#[test]
fn every_invalid_fixture_reports_each_problem_on_its_line() {
    let mut failures = Vec::new();
    for file in fixtures() {
        let text = std::fs::read_to_string(&file).expect("read fixture");
        let expected = expectations(&text);
        assert!(
            !expected.is_empty(),
            "{} has no `# expect:` marker",
            file.display()
        );
        let diags = match release::load(&file) {
            Ok(_) => {
                failures.push(format!("{}: accepted, but it is broken", file.display()));
                continue;
            }
            Err(d) => d,
        };
        for (line, wants) in &expected {
            let found = diags.iter().any(|d| {
                // Message and hint only: the excerpt repeats the source line, marker included.
                let shown = format!("{} {}", d.message, d.hint.as_deref().unwrap_or(""));
                d.line == *line && wants.iter().all(|w| shown.contains(w.as_str()))
            });
            if !found {
                failures.push(format!(
                    "{}:{line}: expected {:?}, got:\n{}",
                    file.display(),
                    wants,
                    diags.iter().map(|d| d.to_string()).collect::<String>()
                ));
            }
        }
        for d in &diags {
            if !expected.iter().any(|(line, _)| *line == d.line) {
                failures.push(format!(
                    "{}: unexpected diagnostic: {}",
                    file.display(),
                    d.headline()
                ));
            }
            assert!(
                d.hint.is_some(),
                "{}: no hint for {}",
                file.display(),
                d.headline()
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn validate_prints_file_line_col_and_exits_2() {
    let files = fixtures();
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .arg("validate")
        .args(&files)
        .output()
        .expect("run cutover validate");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // One headline per problem, in FILE:LINE:COL: form, from every file.
    for file in &files {
        let prefix = format!("{}:", file.display());
        assert!(
            stderr.lines().any(|l| l.starts_with(&prefix)
                && l[prefix.len()..]
                    .split(':')
                    .take(2)
                    .all(|n| n.parse::<usize>().is_ok())),
            "no FILE:LINE:COL line for {}",
            file.display()
        );
    }
    assert!(
        stderr.contains("  hint: did you mean `depends_on`?"),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .last()
            .is_some_and(|l| l.ends_with(&format!("in {} file(s)", files.len())))
    );
}

#[test]
fn a_missing_file_is_reported_not_panicked_on() {
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["validate", "does/not/exist.toml"])
        .output()
        .expect("run cutover validate");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("does/not/exist.toml:1:1: cannot read the release file"),
        "{stderr}"
    );
}

/// `cutover validate FIXTURE`: its exit code and everything it printed.
fn validate(fixture: &str) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["validate", fixture])
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), all)
}

#[test]
fn a_database_password_is_refused_and_never_printed() {
    let (code, all) = validate("tests/fixtures/invalid/45-database-url-with-password.toml");
    assert_eq!(code, Some(2));
    assert!(all.contains("has a password in it"), "{all}");
    assert!(all.contains("env:DATABASE_URL"), "{all}");
    assert!(!all.contains("s3cret"), "the password was printed: {all}");
}

#[test]
fn a_pin_secret_written_in_the_file_is_refused_and_never_printed() {
    let (code, all) = validate("tests/fixtures/invalid/47-pin-secret-not-env.toml");
    assert_eq!(code, Some(2));
    assert!(all.contains("47-pin-secret-not-env.toml:3:14"), "{all}");
    assert!(all.contains("env:CUTOVER_PIN_SECRET"), "{all}");
    assert!(
        !all.contains("shared-secret-written-in-the-file"),
        "the secret was printed: {all}"
    );
}
