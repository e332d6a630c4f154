//! The console's command-line surface: `--help`, `check-config` on good and bad
//! fixtures (exit codes, FILE:LINE messages), `print`.

use std::process::Command;

fn cutover(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(args)
        .env_remove("CUTOVER_CONFIG_DIR")
        .env_remove("CUTOVER_THEME")
        .env_remove("CUTOVER_KEYMAP")
        .env_remove("CUTOVER_STATE_DIR")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/console/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn help() {
    let (code, out, _) = cutover(&["--help"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!(out);
    let (code, out, _) = cutover(&["demo", "--help"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!("demo_help", out);
}

#[test]
fn check_config_accepts_the_good_fixture() {
    let (code, out, err) = cutover(&["check-config", "--config-dir", &fixture("good")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("keymap and themes are valid"), "{out}");
}

#[test]
fn check_config_names_every_problem_with_file_and_line() {
    let dir = fixture("bad");
    let (code, _, err) = cutover(&["check-config", "--config-dir", &dir]);
    assert_eq!(code, 2, "{err}");
    let err = err.replace(&dir, "BAD");
    insta::assert_snapshot!(err);
    for needle in [
        "BAD/keymap.toml:3: unknown action `explode`",
        "BAD/keymap.toml:4: `<Hyper-r>`: unknown modifier `Hyper`",
        "BAD/keymap.toml:6: `<S-r>` is the same key as `R` in [global]",
        "BAD/keymap.toml:8: unknown section `[panes]`",
        "BAD/themes/broken.toml:6: unknown slot `health.fantastic`",
        "BAD/themes/broken.toml:7: `health.down`: fg \"blood-red\"",
        "BAD/themes/broken.toml:8: `dim`: unknown modifier",
        "theme `loop`: `inherits` goes round in a circle",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in\n{err}");
    }
}

#[test]
fn print_keymap_dirs_and_slots() {
    let (code, out, err) = cutover(&["print", "keymap", "--config-dir", &fixture("good")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"<C-r>\"        = \"rollback\""), "{out}");
    assert!(out.contains("\"j\""), "vim base applied:\n{out}");
    assert!(
        !out.contains("\"t\"            = \"retry\""),
        "unbound:\n{out}"
    );
    insta::assert_snapshot!("print_keymap_good", out);
    let (code, out, _) = cutover(&["print", "theme-slots"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!("print_theme_slots", out);
    let (code, out, _) = cutover(&["print", "dirs", "--config-dir", "/tmp/x"]);
    assert_eq!(code, 0);
    assert!(out.contains("keymap   /tmp/x/keymap.toml"), "{out}");
    let (code, _, err) = cutover(&["print", "keymap", "--config-dir", &fixture("bad")]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown action `explode`"), "{err}");
}
