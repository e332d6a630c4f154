//! Releases with tenants: each tenant's own release (variables laid over the release's,
//! validation folded in), rings, `render --tenant`, and the order `--set` takes.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use cutover::release::{self, LoadOptions, tenants};

fn fleet() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fleet.toml")
}

fn listen(r: &release::Release, service: &str) -> String {
    r.service(service)
        .and_then(|s| s.local.clone())
        .map(|l| l.listen)
        .unwrap_or_default()
}

#[test]
fn each_tenant_runs_the_release_with_its_own_variables_and_checks() {
    let loaded = release::load(&fleet(), &LoadOptions::default()).expect("fleet.toml is valid");
    assert_eq!(loaded.tenants.len(), 8);
    let acme = loaded.tenant("acme").expect("acme");
    assert_eq!(listen(acme, "api"), "127.0.0.1:18511");
    assert_eq!(listen(acme, "web"), "127.0.0.1:18512");
    assert_eq!(
        listen(loaded.tenant("wayne").unwrap(), "web"),
        "127.0.0.1:18582"
    );
    // The release's own values are the base's, untouched by any tenant.
    assert_eq!(listen(&loaded.release, "api"), "127.0.0.1:18501");
    // acme's extra smoke test follows web's own; its bound tightens api's analysis.
    let web = acme.service("web").unwrap();
    let smoke: Vec<&str> = web.smoke.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(smoke, ["home page", "acme login page"]);
    assert_eq!(
        acme.service("api")
            .unwrap()
            .analysis
            .as_ref()
            .unwrap()
            .max_error_rate,
        0.01
    );
    let globex = loaded.tenant("globex").unwrap();
    assert_eq!(
        globex
            .service("api")
            .unwrap()
            .analysis
            .as_ref()
            .unwrap()
            .max_error_rate,
        0.02
    );
    assert_eq!(globex.service("web").unwrap().smoke.len(), 1);
    // A tenant's release has no fleet of its own.
    assert!(acme.tenants.is_empty() && acme.rings.is_empty() && acme.flags.is_none());
    assert_eq!(acme.release.failure_budget, None);
    // Rings in file order; a tenant in the first ring that selects it, in selection order.
    let r = &loaded.release;
    let names = |ring: &[usize]| -> Vec<&str> {
        ring.iter().map(|i| r.tenants[*i].name.as_str()).collect()
    };
    let members = tenants::members(&r.tenants, &r.rings);
    assert_eq!(names(&members[0]), ["acme"]);
    assert_eq!(
        names(&members[1]),
        ["globex", "initech", "umbrella", "hooli"]
    );
    assert_eq!(names(&members[2]), ["soylent", "stark", "wayne"]);
    assert_eq!(r.rings[2].max_parallel.parallel_of(members[2].len()), 2);
    assert_eq!(
        r.release
            .failure_budget
            .map(|b| b.budget_of(r.tenants.len())),
        Some(1)
    );
}

#[test]
fn set_comes_after_the_tenants_vars() {
    // --set of a variable the tenants set gives them all one value: two tenants would then
    // share a listen address, which is refused, naming both and the fix.
    let opts = LoadOptions {
        sets: vec!["api_port=19000".parse().unwrap()],
        ..Default::default()
    };
    let diags = release::load(&fleet(), &opts).expect_err("shared port");
    let text: String = diags.iter().map(|d| d.to_string()).collect();
    assert!(
        text.contains(
            "tenants \"acme\" and \"globex\" both run service \"api\" on 127.0.0.1:19000"
        ),
        "{text}"
    );
    // A --set of a variable no tenant sets reaches every tenant.
    let opts = LoadOptions {
        sets: vec!["version=3.0.1".parse().unwrap()],
        ..Default::default()
    };
    let loaded = release::load(&fleet(), &opts).expect("valid");
    for t in &loaded.tenants {
        let target = t
            .release
            .service("api")
            .unwrap()
            .local
            .clone()
            .unwrap()
            .target;
        assert_eq!(target.revision, "3.0.1", "{}", t.name);
    }
}

fn cutover(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(args)
        .output()
        .expect("run cutover")
}

#[test]
fn render_prints_one_tenants_release_and_is_a_fixed_point() {
    let file = fleet();
    let file = file.to_str().unwrap();
    let out = cutover(&["render", file]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--tenant NAME") && err.contains("acme, globex"),
        "{err}"
    );
    let out = cutover(&["render", file, "--tenant", "acmee"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no tenant `acmee`"));
    let out = cutover(&["render", file, "--tenant", "acme"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("listen = \"127.0.0.1:18511\""), "{text}");
    assert!(text.contains("acme login page"));
    assert!(!text.contains("[[tenant]]") && !text.contains("failure_budget"));
    let dir = tempfile::tempdir().unwrap();
    let again = dir.path().join("acme.toml");
    std::fs::write(&again, &text).unwrap();
    let out2 = cutover(&["render", again.to_str().unwrap()]);
    assert!(out2.status.success());
    assert_eq!(String::from_utf8(out2.stdout).unwrap(), text);
}

#[test]
fn validate_counts_tenants_and_rings() {
    let file = fleet();
    let out = cutover(&["validate", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ok (2 service(s), 0 migration(s), 8 tenant(s) in 3 ring(s))"),
        "{text}"
    );
}

#[test]
fn a_budget_without_tenants_and_rings_without_tenants_are_refused() {
    let base = "[release]\nname = \"x\"\nfailure_budget = \"10%\"\n\n[[service]]\nname = \"api\"\nstrategy = \"blue_green\"\n[service.local]\nlisten = \"127.0.0.1:18001\"\ncommand = [\"cutover\", \"demo-service\", \"--port\", \"{port}\"]\ncurrent = { revision = \"a\" }\ntarget = { revision = \"b\" }\n";
    let diags = release::load_str(Path::new("x.toml"), base, Path::new(".")).unwrap_err();
    assert_eq!(diags.len(), 1);
    assert_eq!((diags[0].line, diags[0].col), (3, 18));
    assert!(diags[0].message.contains("no [[tenant]]"));
    let rings = base.replace("failure_budget = \"10%\"\n", "")
        + "\n[[ring]]\nname = \"r\"\nselect = [\"a\"]\n";
    let diags = release::load_str(Path::new("x.toml"), &rings, Path::new(".")).unwrap_err();
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert!(diags[0].message.contains("rings but no [[tenant]]"));
}
