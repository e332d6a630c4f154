//! `cutover completions` and `cutover man` are generated from the clap definitions: the
//! snapshots show them changing with the commands (a new flag changes a reviewed snapshot),
//! and every shell's script names every command.

mod support;

use std::process::Command;

use support::CUTOVER;

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(CUTOVER).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

const COMMANDS: &[&str] = &[
    "validate",
    "plan",
    "schema",
    "completions",
    "man",
    "deploy",
    "resume",
    "serve",
    "attach",
    "ctl",
    "demo",
    "history",
    "audit",
    "migrate",
    "verify",
    "diff",
];

#[test]
fn every_shell_gets_a_script_that_names_every_command() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let (code, text) = run(&["completions", shell]);
        assert_eq!(code, Some(0), "{shell}");
        for c in COMMANDS {
            assert!(text.contains(c), "{shell} completion lacks `{c}`");
        }
        // Flags of a subcommand are completed too.
        assert!(text.contains("state-dir"), "{shell}");
    }
    let (code, _) = run(&["completions", "tcsh"]);
    assert_eq!(code, Some(2), "an unknown shell is a usage error");
    let (_, bash) = run(&["completions", "bash"]);
    insta::assert_snapshot!("completions_bash", bash);
}

#[test]
fn man_writes_a_page_per_command_and_they_follow_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let (code, said) = run(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert_eq!(code, Some(0));
    let mut pages: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    assert!(said.contains(&format!("wrote {} manual pages", pages.len())));
    insta::assert_snapshot!("man_pages", pages.join("\n"));
    for page in &pages {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(
            text.starts_with(".ie") && text.contains(".TH"),
            "{page} is not roff"
        );
    }
    let deploy = std::fs::read_to_string(dir.path().join("cutover-deploy.1")).unwrap();
    insta::assert_snapshot!("man_deploy", deploy);
    let (code, main) = run(&["man"]);
    assert_eq!(code, Some(0));
    assert!(main.contains(".SH SUBCOMMANDS") && main.contains("cutover\\-deploy(1)"));
}
