//! The flags file cutover writes, read by flagd's evaluator (`support::flagd`): for every
//! tenant, each flag resolves to the value that tenant should have.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use cutover::flagd::{self, FlagFile};
use cutover::release::{self, LoadOptions, tenants::FlagValue};
use serde_json::Value;
use support::flagd::evaluate;

fn json(v: &FlagValue) -> Value {
    match v {
        FlagValue::Bool(b) => Value::Bool(*b),
        FlagValue::String(s) => Value::String(s.clone()),
    }
}

#[test]
fn every_tenant_reads_its_own_flags_as_tenants_promote_and_roll_back() {
    let loaded = release::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fleet.toml"),
        &LoadOptions::default(),
    )
    .expect("fleet.toml");
    let r = &loaded.release;
    let declared = flagd::declared(r);
    assert_eq!(declared.get("new_checkout"), Some(&FlagValue::Bool(false)));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flags.json");
    // Someone else's flag, in the file before cutover: kept.
    std::fs::write(
        &path,
        r#"{"flags": {"banner": {"state": "ENABLED", "variants": {"a": "hello", "b": "bye"},
            "defaultVariant": "a", "targeting": {"if": [{"==": [{"var": "region"}, "eu"]}, "b", null]}}}}"#,
    )
    .unwrap();
    // Tenants promote in ring order; after each, every tenant reads the promoted ones'
    // flags and the default for the others.
    let mut promoted: Vec<&str> = Vec::new();
    let mut before: BTreeMap<String, BTreeMap<String, FlagValue>> = BTreeMap::new();
    let order = [
        "acme", "globex", "initech", "umbrella", "hooli", "soylent", "stark", "wayne",
    ];
    for name in order {
        let previous = std::fs::read_to_string(&path).ok();
        let mut file = FlagFile::read(previous.as_deref(), &declared).expect("read");
        let t = r.tenants.iter().find(|t| t.name == name).unwrap();
        before.insert(name.into(), file.tenant_values(name));
        file.set_tenant(name, &t.flags).expect("set");
        flagd::write_atomic(&path, file.to_json().as_bytes()).expect("write");
        promoted.push(name);
        let text = std::fs::read_to_string(&path).unwrap();
        for t in &r.tenants {
            let want = if promoted.contains(&t.name.as_str()) {
                json(&t.flags["new_checkout"])
            } else {
                Value::Bool(false)
            };
            assert_eq!(
                evaluate(&text, "new_checkout", &t.name),
                want,
                "{name}: {}",
                t.name
            );
        }
        assert_eq!(
            evaluate(&text, "new_checkout", "not-a-tenant"),
            Value::Bool(false)
        );
        assert_eq!(
            evaluate(&text, "banner", "acme"),
            Value::String("hello".into())
        );
    }
    // stark set new_checkout = false: on for every promoted tenant but stark.
    let text = std::fs::read_to_string(&path).unwrap();
    for t in &r.tenants {
        let on = t.name != "stark";
        assert_eq!(
            evaluate(&text, "new_checkout", &t.name),
            Value::Bool(on),
            "{}",
            t.name
        );
    }
    // globex rolls back after its promotion: it gets back the values it had before.
    let mut file = FlagFile::read(Some(&text), &declared).unwrap();
    file.set_tenant("globex", &before["globex"]).unwrap();
    flagd::write_atomic(&path, file.to_json().as_bytes()).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        evaluate(&text, "new_checkout", "globex"),
        Value::Bool(false)
    );
    assert_eq!(evaluate(&text, "new_checkout", "acme"), Value::Bool(true));
}

#[test]
fn string_flags_and_odd_values_evaluate_for_every_tenant() {
    let declared = BTreeMap::from([("theme".to_string(), FlagValue::String("classic".into()))]);
    let mut file = FlagFile::read(None, &declared).unwrap();
    let values = [
        ("a", "dark"),
        ("b", ""),
        ("c", "classic"),
        ("d", "#2"),
        ("e", "line\nbreak"),
        ("f", "dark"),
    ];
    for (t, v) in values {
        file.set_tenant(
            t,
            &BTreeMap::from([("theme".into(), FlagValue::String(v.into()))]),
        )
        .unwrap();
    }
    let text = file.to_json();
    for (t, v) in values {
        assert_eq!(evaluate(&text, "theme", t), Value::String(v.into()), "{t}");
    }
    assert_eq!(
        evaluate(&text, "theme", "z"),
        Value::String("classic".into())
    );
}
