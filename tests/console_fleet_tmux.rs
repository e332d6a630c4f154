//! The fleet console in a real terminal: `cutover demo --fleet` in tmux; while the last
//! ring's tenants wait at their approval gates (20 s before they promote themselves), an
//! operator filters the tree down to one tenant, approves `wayne` with Ctrl-A and excludes
//! `stark` with E and a reason; the engine acts on both (wayne starts before its gate times
//! out, stark is skipped) and the journal names the operator. Needs tmux (Debian package
//! `tmux`); fails without it.

mod support;

use std::process::Command;

use support::tmux::Tmux;

/// The tree's row of `tenant` (`├─▸ ? wayne  awaiting approval …`), or "".
fn tenant_row<'a>(screen: &'a str, tenant: &str) -> &'a str {
    screen
        .lines()
        .find(|l| l.contains(&format!(" {tenant} ")) && (l.contains("├─") || l.contains("└─")))
        .unwrap_or("")
}

fn keys(t: &Tmux, keys: &[&str]) {
    let mut args = vec!["send-keys", "-t", "demo"];
    args.extend_from_slice(keys);
    t.run(&args);
}

fn typed(t: &Tmux, text: &str) {
    t.run(&["send-keys", "-t", "demo", "-l", text]);
}

/// Filter the tree down to `tenant` and move the cursor onto it (the detail pane's title
/// names the selected tenant).
fn select_tenant(t: &Tmux, tenant: &str) {
    keys(t, &["/"]);
    typed(t, tenant);
    keys(t, &["Enter"]);
    t.wait_for(
        &format!("the filter on {tenant}"),
        |s| s.contains(&format!("filter \"{tenant}\"")),
        10,
    );
    for _ in 0..4 {
        if t.screen().contains(&format!("Tenant: {tenant} ")) {
            return;
        }
        keys(t, &["Down"]);
        std::thread::sleep(std::time::Duration::from_millis(150));
    }
    t.wait_for(
        &format!("{tenant} selected"),
        |s| s.contains(&format!("Tenant: {tenant} ")),
        5,
    );
}

#[test]
fn approve_and_exclude_tenants_with_their_keys_in_a_real_terminal() {
    support::net::wait_for_fleet_demo_ports();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let t = Tmux::new("console-fleet");
    let cmd = format!(
        "CUTOVER_STATE_DIR={} USER=oncall {} demo --fleet; echo \"exit $?\"; sleep 60",
        state.display(),
        support::CUTOVER
    );
    t.start(170, 50, &cmd);
    t.wait_for("the fleet tree", |s| s.contains("Fleet: rings"), 60);
    // The last ring opens its gates once the first two rings promoted and baked.
    t.wait_for(
        "the last ring's approval gates",
        |s| {
            tenant_row(s, "wayne").contains("awaiting approval")
                && tenant_row(s, "stark").contains("awaiting approval")
        },
        150,
    );

    // Exclude stark, with a reason.
    select_tenant(&t, "stark");
    keys(&t, &["E"]);
    t.wait_for(
        "the reason prompt",
        |s| s.contains("Exclude tenant stark"),
        5,
    );
    typed(&t, "customer asked to wait");
    keys(&t, &["Enter"]);
    let screen = t.wait_for(
        "stark excluded",
        |s| tenant_row(s, "stark").contains("excluded"),
        10,
    );
    assert!(
        tenant_row(&screen, "stark").contains('⊘'),
        "{}",
        tenant_row(&screen, "stark")
    );
    keys(&t, &["Escape"]);

    // Approve wayne: it starts before its gate's 20 s are up.
    select_tenant(&t, "wayne");
    keys(&t, &["C-a"]);
    let screen = t.wait_for(
        "wayne approved and running",
        |s| {
            let row = tenant_row(s, "wayne");
            !row.is_empty() && !row.contains("awaiting approval")
        },
        10,
    );
    assert!(
        !tenant_row(&screen, "wayne").contains("skipped"),
        "{screen}"
    );
    keys(&t, &["Escape"]);

    // The end: q quits and prints the demo's closing. With stark excluded by hand the demo
    // is not the one it promises (every tenant but initech promoted), so it exits with the
    // run's own code: 3, a tenant rolled back.
    t.wait_for("the release to finish", |s| s.contains("FINISHED"), 150);
    keys(&t, &["q"]);
    // The shell's own `exit N` line, after the console left the screen (the console's log
    // may hold "exit" too).
    let after = t.wait_for(
        "the exit line",
        |s| s.lines().any(|l| l.starts_with("exit ")),
        30,
    );
    assert!(after.lines().any(|l| l.trim() == "exit 3"), "{after}");
    let promoted = after
        .lines()
        .find(|l| l.starts_with("tenants promoted:"))
        .unwrap_or_else(|| panic!("no promoted line:\n{after}"));
    assert!(promoted.contains("wayne"), "{promoted}");
    assert!(!promoted.contains("stark"), "{promoted}");
    let stark = after
        .lines()
        .find(|l| l.starts_with("tenant stark:"))
        .unwrap_or_else(|| panic!("no line for stark:\n{after}"));
    assert!(stark.contains("customer asked to wait"), "{stark}");

    // What the engine journaled: stark excluded with the reason and wayne approved, both by
    // the operator at the keyboard.
    let history = Command::new(support::CUTOVER)
        .args(["history", "--output", "json", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    let runs: serde_json::Value = serde_json::from_slice(&history.stdout)
        .unwrap_or_else(|e| panic!("history ({e}): {}", support::output_text(&history)));
    let run = runs[0]["run_id"]
        .as_str()
        .unwrap_or_else(|| panic!("a run id in {runs}"))
        .to_string();
    let audit = Command::new(support::CUTOVER)
        .args(["audit", &run, "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    let audit = support::output_text(&audit);
    let line_with = |what: &[&str]| {
        assert!(
            audit.lines().any(|l| what.iter().all(|w| l.contains(w))),
            "no audit line with {what:?}:\n{audit}"
        )
    };
    line_with(&["oncall", "exclude", "stark", "customer asked to wait"]);
    line_with(&["oncall", "approve", "wayne"]);
}
