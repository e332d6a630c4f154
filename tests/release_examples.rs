//! Every shipped example parses and validates; the hand-written parser agrees with serde
//! on them; the key lists the parser accepts are exactly the schema's properties.

use std::path::{Path, PathBuf};

use cutover::release::{self, Release, parse::keys};

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_validates() {
    let files = examples();
    assert!(
        files.len() >= 4,
        "expected at least 4 examples, found {}",
        files.len()
    );
    for f in files {
        if let Err(diags) = release::load(&f) {
            panic!(
                "{} is invalid:\n{}",
                f.display(),
                diags.iter().map(|d| d.to_string()).collect::<String>()
            );
        }
    }
}

#[test]
fn the_examples_cover_what_the_docs_promise() {
    let load = |name: &str| {
        release::load(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("examples")
                .join(name),
        )
        .expect(name)
        .release
    };
    let bg = load("blue-green.toml");
    assert_eq!(bg.services.len(), 1);
    assert_eq!(bg.services[0].strategy, release::StrategyKind::BlueGreen);
    let diamond = load("canary-diamond.toml");
    assert_eq!(diamond.services.len(), 6);
    let orders = diamond.service("orders").expect("orders");
    assert_eq!(orders.depends_on, ["payments", "inventory"]);
    for side in ["payments", "inventory"] {
        assert_eq!(diamond.service(side).expect(side).depends_on, ["ledger"]);
    }
    assert_eq!(load("migration.toml").migrations.len(), 1);
    assert_eq!(
        load("ecs-canary.toml").release.platform,
        release::PlatformKind::Ecs
    );
}

#[test]
fn parser_and_serde_read_the_examples_alike() {
    for f in examples() {
        let text = std::fs::read_to_string(&f).expect("read");
        let ours = release::load(&f).expect("valid").release;
        let theirs: Release =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: serde: {e}", f.display()));
        assert_eq!(ours, theirs, "{}", f.display());
    }
}

fn properties(schema: &serde_json::Value, def: Option<&str>) -> Vec<String> {
    let node = match def {
        None => schema,
        Some(d) => &schema["$defs"][d],
    };
    let mut keys: Vec<String> = node["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("no properties for {def:?}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

fn sorted(keys: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    v.sort();
    v
}

#[test]
fn parser_keys_match_the_published_schema() {
    let schema = release::json_schema();
    assert_eq!(properties(&schema, None), sorted(keys::TOP));
    let pairs: [(&str, &[&str]); 12] = [
        ("ReleaseSection", keys::RELEASE),
        ("Notify", keys::NOTIFY),
        ("Service", keys::SERVICE),
        ("Linear", keys::LINEAR),
        ("BlueGreen", keys::BLUE_GREEN),
        ("Rolling", keys::ROLLING),
        ("Health", keys::HEALTH),
        ("Smoke", keys::SMOKE),
        ("Analysis", keys::ANALYSIS),
        ("LocalService", keys::LOCAL),
        ("RevisionRun", keys::REVISION),
        ("EcsService", keys::ECS),
    ];
    for (def, keys) in pairs {
        assert_eq!(properties(&schema, Some(def)), sorted(keys), "{def}");
    }
    assert_eq!(
        properties(&schema, Some("Migration")),
        sorted(keys::MIGRATION)
    );
    // Every field is documented for editors.
    for def in schema["$defs"].as_object().expect("$defs").values() {
        if let Some(props) = def["properties"].as_object() {
            for (k, v) in props {
                let described = v.get("description").is_some()
                    || v["allOf"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| x.get("description").is_some()));
                assert!(described, "property `{k}` has no description: {v}");
            }
        }
    }
}

#[test]
fn schema_command_prints_the_schema() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
        .arg("schema")
        .output()
        .expect("run");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("schema is JSON");
    assert_eq!(v["title"], "cutover release");
    assert!(
        v["$defs"]["Step"]["oneOf"]
            .as_array()
            .is_some_and(|a| a.len() == 4)
    );
}

#[test]
fn readme_documents_every_key() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README");
    let all: [&[&str]; 14] = [
        keys::TOP,
        keys::RELEASE,
        keys::NOTIFY,
        keys::SERVICE,
        keys::LINEAR,
        keys::BLUE_GREEN,
        keys::ROLLING,
        keys::HEALTH,
        keys::SMOKE,
        keys::ANALYSIS,
        keys::LOCAL,
        keys::REVISION,
        keys::ECS,
        keys::MIGRATION,
    ];
    for key in all.iter().flat_map(|k| k.iter()) {
        let forms = [
            format!("`{key}`"),
            format!("`{key} ="),
            format!("{{ {key},"),
            format!(", {key} }}"),
            format!("[{key}]"),
        ];
        assert!(
            forms.iter().any(|f| readme.contains(f.as_str())),
            "README does not document `{key}`"
        );
    }
}
