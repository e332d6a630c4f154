//! Variables and environments: `${name}` interpolation and its typing, `--set`, `env:`,
//! overlays, every error located in the original file, `render` as a fixed point, and
//! `validate` across environments.

mod support;

use std::path::Path;
use std::process::Command;

use cutover::release::{self, Diagnostic, LoadOptions, LoadedRelease, SetArg};
use proptest::prelude::*;

fn load(text: &str, env: Option<&str>, sets: &[&str]) -> Result<LoadedRelease, Vec<Diagnostic>> {
    release::load_text(
        Path::new("r.toml"),
        text,
        Path::new("."),
        &LoadOptions {
            env: env.map(str::to_string),
            sets: sets.iter().map(|s| s.parse::<SetArg>().unwrap()).collect(),
            lenient_env: false,
        },
    )
}

fn errors(text: &str, env: Option<&str>, sets: &[&str]) -> Vec<Diagnostic> {
    match load(text, env, sets) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(d) => d,
    }
}

/// The one diagnostic, with its headline `r.toml:LINE:COL: ...` and hint checked.
fn one(diags: &[Diagnostic], line: usize, col: usize, message: &str, hint: &str) {
    assert_eq!(diags.len(), 1, "{diags:#?}");
    let d = &diags[0];
    assert_eq!((d.line, d.col), (line, col), "{}", d);
    assert!(d.message.contains(message), "{d}");
    assert!(d.hint.as_deref().unwrap_or("").contains(hint), "{d}");
}

const BASE: &str = r#"[release]
name = "r"

[vars]
port = 18500
replicas = 2
tag = "2.4.0"
ratio = 1.5
on = true

[[service]]
name = "api"
strategy = "canary"
steps = [{ set_weight = 50 }, { pause = "1s" }]
[service.local]
listen = "127.0.0.1:${port}"
replicas = "${replicas}"
command = ["app", "--port", "{port}", "--tag=${tag}", "${ratio}/${on}", "cost $5, $${literal}"]
current = { revision = "v1" }
target = { revision = "v${tag}" }
"#;

#[test]
fn interpolation_keeps_text_and_an_exact_reference_keeps_the_type() {
    let r = load(BASE, None, &[]).expect("valid").release;
    let local = r.services[0].local.clone().unwrap();
    assert_eq!(local.listen, "127.0.0.1:18500");
    assert_eq!(local.replicas, 2, "\"${{replicas}}\" is an integer");
    assert_eq!(
        local.command,
        [
            "app",
            "--port",
            "{port}",
            "--tag=2.4.0",
            "1.5/true",
            "cost $5, ${literal}"
        ]
    );
    assert_eq!(local.target.revision, "v2.4.0");
}

#[test]
fn set_overrides_a_variable_in_its_declared_type() {
    let r = load(BASE, None, &["replicas=5", "tag=3.0.0", "tag=3.0.1"])
        .expect("valid")
        .release;
    let local = r.services[0].local.clone().unwrap();
    assert_eq!(local.replicas, 5);
    assert_eq!(local.target.revision, "v3.0.1", "the last --set wins");
}

#[test]
fn every_error_is_located_with_a_hint() {
    // (what is changed in BASE, --set values, line, column, message, hint)
    let cases: [(&str, &str, &[&str], usize, usize, &str, &str); 5] = [
        // A bad --set is located at the declaration.
        (
            "",
            "",
            &["replicas=many"],
            6,
            1,
            "--set replicas: `many` is not an integer",
            "pass an integer",
        ),
        // So is a name the release does not declare, with the nearest one.
        (
            "",
            "",
            &["replica=3"],
            4,
            1,
            "--set replica: the release declares no variable `replica`",
            "did you mean --set replicas=...",
        ),
        // `target = { revision = "v${tga}" }`: the reference starts at column 25.
        (
            "v${tag}",
            "v${tga}",
            &[],
            20,
            25,
            "unknown variable `tga`",
            "did you mean `${tag}`?",
        ),
        // A value of the wrong type that came from a variable names it.
        (
            "replicas = 2",
            "replicas = \"two\"",
            &[],
            17,
            12,
            "`service[0].local.replicas` must be an integer, not a string",
            "this is the value of variable `replicas`",
        ),
        (
            "v${tag}",
            "v${tag",
            &[],
            20,
            25,
            "`${` without a closing `}`",
            "$${",
        ),
    ];
    for (from, to, sets, line, col, message, hint) in cases {
        let text = if from.is_empty() {
            BASE.to_string()
        } else {
            BASE.replace(from, to)
        };
        one(&errors(&text, None, sets), line, col, message, hint);
    }
}

#[test]
fn env_values_are_read_and_kept_secret() {
    // SAFETY: this test binary's only use of this variable; set before any thread reads it.
    unsafe { std::env::set_var("CUTOVER_TEST_VARS_TAG", "9.9.9-from-env") };
    let text = BASE.replace("tag = \"2.4.0\"", "tag = \"env:CUTOVER_TEST_VARS_TAG\"");
    let loaded = load(&text, None, &[]).expect("valid");
    let local = loaded.release.services[0].local.clone().unwrap();
    assert_eq!(local.target.revision, "v9.9.9-from-env");
    let secrets = cutover::secrets::Secrets::from_release(&loaded.release);
    assert!(secrets.is_secret("9.9.9-from-env"));
    let shown = release::render::render(&loaded.release).unwrap();
    assert!(!shown.contains("9.9.9-from-env"), "{shown}");
    // A --set from the environment counts in the artifact by name only.
    let set = load(BASE, None, &["tag=env:CUTOVER_TEST_VARS_TAG"]).expect("valid");
    assert_eq!(
        set.release.services[0]
            .local
            .clone()
            .unwrap()
            .target
            .revision,
        "v9.9.9-from-env"
    );
    let artifact = serde_json::to_string(&set.artifact).unwrap();
    assert!(artifact.contains("env:CUTOVER_TEST_VARS_TAG"), "{artifact}");
    assert!(!artifact.contains("9.9.9"), "{artifact}");
    // Missing, it is an error naming the variable (not for validate).
    let missing = BASE.replace("tag = \"2.4.0\"", "tag = \"env:CUTOVER_TEST_VARS_UNSET\"");
    one(
        &errors(&missing, None, &[]),
        7,
        7,
        "variable `tag`: the environment variable `CUTOVER_TEST_VARS_UNSET` is not set",
        "export CUTOVER_TEST_VARS_UNSET",
    );
}

const ENVS: &str = r#"[release]
name = "r"

[vars]
port = 18500
replicas = 1

[environments.staging]
vars = { port = 18600 }

[environments.production]
requires = ["staging"]
vars = { port = 18700, replicas = 3 }
release = { max_parallel = 2 }
service.api = { health = { interval = "2s" } }

[[service]]
name = "api"
strategy = "canary"
steps = [{ set_weight = 50 }, { pause = "1s" }]
[service.local]
listen = "127.0.0.1:${port}"
replicas = "${replicas}"
command = ["app", "--port", "{port}"]
current = { revision = "v1" }
target = { revision = "v2" }
"#;

#[test]
fn environments_override_variables_release_and_service_settings() {
    let staging = load(ENVS, Some("staging"), &[]).expect("staging");
    let prod = load(ENVS, Some("production"), &[]).expect("production");
    assert_eq!(staging.environment.as_deref(), Some("staging"));
    assert_eq!(
        staging.release.release.environment.as_deref(),
        Some("staging")
    );
    let (s, p) = (&staging.release.services[0], &prod.release.services[0]);
    assert_eq!(s.local.as_ref().unwrap().listen, "127.0.0.1:18600");
    assert_eq!(p.local.as_ref().unwrap().listen, "127.0.0.1:18700");
    assert_eq!(p.local.as_ref().unwrap().replicas, 3);
    assert_eq!(prod.release.release.max_parallel, 2);
    assert_eq!(staging.release.release.max_parallel, 1);
    assert_eq!(p.health.interval.as_secs(), 2);
    assert_eq!(s.health.interval, release::Health::default().interval);
    // Both are the same artifact; requires is kept for the lifecycle gate.
    assert_eq!(staging.artifact, prod.artifact);
    let production = prod
        .environments
        .iter()
        .find(|e| e.name == "production")
        .unwrap();
    assert_eq!(production.requires, ["staging"]);
    // The overlay's own `environment` wins over the environment's name.
    let named = ENVS.replace(
        "release = { max_parallel = 2 }",
        "release = { max_parallel = 2, environment = \"prod-eu\" }",
    );
    let r = load(&named, Some("production"), &[]).unwrap();
    assert_eq!(r.release.release.environment.as_deref(), Some("prod-eu"));
    assert_eq!(r.environment.as_deref(), Some("production"));
}

#[test]
fn a_release_with_environments_needs_env_and_lists_them() {
    one(
        &errors(ENVS, None, &[]),
        8,
        2,
        "declares environments (production, staging): say which one with --env NAME",
        "does not guess",
    );
    one(
        &errors(ENVS, Some("prodution"), &[]),
        8,
        2,
        "--env prodution: the release declares no environment `prodution`",
        "did you mean --env production?",
    );
    one(
        &errors(BASE, Some("staging"), &[]),
        1,
        1,
        "--env staging: this release declares no environments",
        "drop --env",
    );
}

#[test]
fn environment_errors_are_located_where_they_are_written() {
    // (what is changed in ENVS, into what, --env, line, column, message, hint)
    let cases: [(&str, &str, &str, usize, usize, &str, &str); 5] = [
        (
            "requires = [\"staging\"]",
            "requires = [\"stagin\"]",
            "staging",
            12,
            13,
            "requires `stagin`, which the release does not declare",
            "did you mean \"staging\"?",
        ),
        (
            "vars = { port = 18600 }",
            "vars = { port = 18600 }\nrequires = [\"production\"]",
            "staging",
            13,
            12,
            "cycle: production -> staging -> production",
            "remove one",
        ),
        (
            "service.api =",
            "service.apii =",
            "production",
            15,
            9,
            "changes service `apii`, which the release does not have",
            "did you mean `api`?",
        ),
        // An overlaid value of the wrong type is reported in the overlay.
        (
            "interval = \"2s\"",
            "interval = 2",
            "production",
            15,
            39,
            "`service[0].health.interval` must be a duration string with a unit",
            "\"2s\"",
        ),
        (
            "release = { max_parallel = 2 }",
            "release = { name = \"x\" }",
            "production",
            14,
            13,
            "`name` cannot be set by environment `production`",
            "the same in every environment",
        ),
    ];
    for (from, to, env, line, col, message, hint) in cases {
        one(
            &errors(&ENVS.replace(from, to), Some(env), &[]),
            line,
            col,
            message,
            hint,
        );
    }
}

#[test]
fn validate_checks_every_environment_and_names_the_one_at_fault() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("r.toml");
    // Only production's replicas are out of range.
    std::fs::write(&file, ENVS.replace("replicas = 3", "replicas = 0")).unwrap();
    let out = Command::new(support::CUTOVER)
        .arg("validate")
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            ":23:12: in environment `production`: `service[0].local.replicas` must be 1 to 1000"
        ),
        "{err}"
    );
    assert!(!err.contains("in environment `staging`"), "{err}");
    std::fs::write(&file, ENVS).unwrap();
    let out = Command::new(support::CUTOVER)
        .arg("validate")
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("environment(s) production, staging"),
        "{text}"
    );
}

#[test]
fn render_prints_the_resolved_release_and_refuses_to_guess() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("r.toml");
    std::fs::write(&file, ENVS).unwrap();
    let run = |args: &[&str]| {
        Command::new(support::CUTOVER)
            .arg("render")
            .arg(&file)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--env", "production", "--set", "port=19999"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("environment = \"production\""), "{text}");
    assert!(text.contains("listen = \"127.0.0.1:19999\""), "{text}");
    assert!(text.contains("replicas = 3"), "{text}");
    assert!(text.contains("interval = \"2s\""), "{text}");
    assert!(
        !text.contains("[vars]") && !text.contains("environments"),
        "{text}"
    );
    let refused = run(&[]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{err}");
    assert!(
        err.contains("r.toml:8:2:") && err.contains("production, staging"),
        "{err}"
    );
}

/// A release whose values all come from generated variables.
fn generated(port: u16, replicas: u32, rev: &str, args: &[String], weight: u8) -> String {
    let quoted = |s: &str| toml::Value::String(s.to_string()).to_string();
    format!(
        r#"[release]
name = "gen"

[vars]
port = {port}
replicas = {replicas}
rev = {rev}
weight = {weight}
{args}

[environments.one]
vars = {{ port = {p2} }}

[environments.two]
requires = ["one"]
release = {{ max_parallel = "${{replicas}}" }}

[[service]]
name = "api"
strategy = "canary"
steps = [{{ set_weight = "${{weight}}" }}, {{ pause = "1s" }}]
[service.local]
listen = "127.0.0.1:${{port}}"
replicas = "${{replicas}}"
command = ["app", "--port", "{{port}}", {refs}]
current = {{ revision = "old-${{rev}}" }}
target = {{ revision = "${{rev}}" }}
"#,
        rev = quoted(rev),
        p2 = port.wrapping_add(1).max(1),
        args = args
            .iter()
            .enumerate()
            .map(|(i, a)| format!("a{i} = {}", quoted(a)))
            .collect::<Vec<_>>()
            .join("\n"),
        refs = (0..args.len())
            .map(|i| format!("\"x${{a{i}}}y\""))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Rendering a release resolved with its own values, then loading and rendering that
    /// again, gives the same text; and the values are the variables' values.
    #[test]
    fn render_is_a_fixed_point(
        port in 1024u16..65000,
        replicas in 1u32..50,
        rev in "[a-zA-Z0-9._-]{1,12}",
        args in proptest::collection::vec("[ -~é€\\$\\{\\}]{0,12}", 0..4),
        weight in 1u8..100,
        env in prop_oneof![Just("one"), Just("two")],
    ) {
        let text = generated(port, replicas, &rev, &args, weight);
        let first = load(&text, Some(env), &[]).map_err(|d| {
            TestCaseError::fail(format!("{text}\n{}", d.iter().map(|d| d.to_string()).collect::<String>()))
        })?;
        let local = first.release.services[0].local.clone().unwrap();
        prop_assert_eq!(local.replicas, replicas);
        prop_assert_eq!(&local.target.revision, &rev);
        for (i, a) in args.iter().enumerate() {
            prop_assert_eq!(&local.command[3 + i], &format!("x{a}y"));
        }
        let rendered = release::render::render(&first.release).unwrap();
        let again = load(&rendered, None, &[]).map_err(|d| {
            TestCaseError::fail(format!("{rendered}\n{}", d.iter().map(|d| d.to_string()).collect::<String>()))
        })?;
        prop_assert_eq!(&again.release, &first.release);
        prop_assert_eq!(release::render::render(&again.release).unwrap(), rendered);
    }

    /// Any text in a string is either interpolated or reported, never a panic.
    #[test]
    fn any_string_is_safe(s in "\\PC{0,40}") {
        let text = BASE.replace("v${tag}", &s.replace('\\', "\\\\").replace('"', "\\\""));
        let _ = load(&text, None, &[]);
    }
}
