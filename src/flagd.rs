//! The flagd flag-definition file of a release with tenants (`[flags] file`): a pure model
//! of the file ([`FlagFile`]) and an atomic write ([`write_atomic`]). The engine decides
//! when to write (a tenant promoted, a promoted tenant rolled back); this module decides
//! what the file says.
//!
//! **What cutover writes.** One flag per key the release's tenants set (or `[flags]
//! defaults` names), in flagd's `flags` schema: `"state": "ENABLED"`, `variants` (boolean:
//! `"on": true, "off": false`; string: one variant per value in use, named by the value),
//! `defaultVariant` (the value of every tenant not listed), and `targeting` on the
//! evaluation-context attribute `tenant`:
//!
//! ```json
//! {"if": [{"in": [{"var": "tenant"}, ["acme", "globex"]]}, "on", "off"]}
//! ```
//!
//! one `in` per value that differs from the default, then the default. A flag whose tenants
//! all have the default has no targeting.
//!
//! **The previous content.** [`FlagFile::read`] takes what the file holds: a tenant keeps
//! the value the file gives it until cutover sets it again, and a flag already in the file
//! keeps its default (the release's default applies to flags new to the file). Everything
//! cutover does not manage is kept as it is: other flags, `$schema`, `$evaluators`,
//! `metadata`. A flag the release manages but whose definition cutover cannot read back
//! (targeting of another shape, another type, variants that do not match) is refused, with
//! the flag's name and what to do: cutover never overwrites a rule someone else wrote.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value, json};

use crate::release::Release;
use crate::release::tenants::{FlagValue, is_flagd_key};

/// The evaluation-context attribute targeting reads.
pub const TENANT_ATTRIBUTE: &str = "tenant";

/// Why a flags file cannot be read or updated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagFileError {
    /// The previous content is not a flagd flag-definition document.
    NotFlagd(String),
    /// A flag the release manages is defined in a way cutover did not write.
    Foreign { flag: String, why: String },
    /// A value for a flag the release does not declare, or of another type.
    Undeclared { flag: String, why: String },
}

impl fmt::Display for FlagFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlagFileError::NotFlagd(why) => write!(
                f,
                "the flags file is not a flagd flag-definition file ({why}); fix or remove it (cutover writes `{{\"flags\": {{...}}}}`)"
            ),
            FlagFileError::Foreign { flag, why } => write!(
                f,
                "flag {flag:?} in the flags file was not written by cutover ({why}); cutover will not overwrite it: rename the release's flag, or remove the flag from the file"
            ),
            FlagFileError::Undeclared { flag, why } => write!(f, "flag {flag:?}: {why}"),
        }
    }
}

impl std::error::Error for FlagFileError {}

/// A flag cutover manages: its default and the tenants that differ from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedFlag {
    pub default: FlagValue,
    /// Tenants whose value is not the default.
    pub tenants: BTreeMap<String, FlagValue>,
    /// `ENABLED` unless the file says otherwise (kept as read).
    pub state: String,
}

/// The flags file as cutover sees it: the flags it manages, and everything else verbatim.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagFile {
    managed: BTreeMap<String, ManagedFlag>,
    /// The document without the managed flags.
    rest: Map<String, Value>,
}

/// The flags a release manages and the default of each: `[flags] defaults`, else `false`
/// for a boolean flag (validation requires a default for a string flag; one that slipped
/// through defaults to the empty string).
pub fn declared(release: &Release) -> BTreeMap<String, FlagValue> {
    let mut out: BTreeMap<String, FlagValue> = BTreeMap::new();
    let defaults = release.flags.as_ref().map(|f| &f.defaults);
    for t in &release.tenants {
        for (k, v) in &t.flags {
            if out.contains_key(k) {
                continue;
            }
            let d = defaults.and_then(|d| d.get(k)).cloned().unwrap_or(match v {
                FlagValue::Bool(_) => FlagValue::Bool(false),
                FlagValue::String(_) => FlagValue::String(String::new()),
            });
            out.insert(k.clone(), d);
        }
    }
    if let Some(d) = defaults {
        for (k, v) in d {
            out.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    out
}

impl FlagFile {
    /// Read the previous content (`None`: no file yet) for the flags a release declares
    /// (key → default, see [`declared`]).
    pub fn read(
        previous: Option<&str>,
        declared: &BTreeMap<String, FlagValue>,
    ) -> Result<FlagFile, FlagFileError> {
        let mut rest = match previous.map(str::trim) {
            None | Some("") => {
                let mut m = Map::new();
                m.insert(
                    "$schema".into(),
                    Value::String("https://flagd.dev/schema/v0/flags.json".into()),
                );
                m
            }
            Some(text) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(m)) => m,
                Ok(_) => return Err(FlagFileError::NotFlagd("not a JSON object".into())),
                Err(e) => return Err(FlagFileError::NotFlagd(format!("not JSON: {e}"))),
            },
        };
        let mut flags = match rest.remove("flags") {
            None => Map::new(),
            Some(Value::Object(f)) => f,
            Some(_) => return Err(FlagFileError::NotFlagd("`flags` is not an object".into())),
        };
        let mut managed = BTreeMap::new();
        for (key, default) in declared {
            let flag = match flags.remove(key) {
                None => ManagedFlag {
                    default: default.clone(),
                    tenants: BTreeMap::new(),
                    state: "ENABLED".into(),
                },
                Some(v) => read_flag(key, &v, default)?,
            };
            managed.insert(key.clone(), flag);
        }
        rest.insert("flags".into(), Value::Object(flags));
        Ok(FlagFile { managed, rest })
    }

    /// The value `tenant` gets for `key` (`None` for a flag cutover does not manage).
    pub fn value(&self, tenant: &str, key: &str) -> Option<&FlagValue> {
        let f = self.managed.get(key)?;
        Some(f.tenants.get(tenant).unwrap_or(&f.default))
    }

    /// Every managed flag's value for `tenant`: what to journal before changing it, and
    /// what [`FlagFile::set_tenant`] restores.
    pub fn tenant_values(&self, tenant: &str) -> BTreeMap<String, FlagValue> {
        self.managed
            .iter()
            .map(|(k, f)| {
                (
                    k.clone(),
                    f.tenants.get(tenant).unwrap_or(&f.default).clone(),
                )
            })
            .collect()
    }

    /// Give `tenant` these values (a promoted tenant's flags, or a rolled-back tenant's
    /// previous values); the flags it does not name keep their value for it.
    pub fn set_tenant(
        &mut self,
        tenant: &str,
        values: &BTreeMap<String, FlagValue>,
    ) -> Result<(), FlagFileError> {
        for (k, v) in values {
            let Some(f) = self.managed.get_mut(k) else {
                return Err(FlagFileError::Undeclared {
                    flag: k.clone(),
                    why: "the release does not declare this flag".into(),
                });
            };
            if f.default.type_name() != v.type_name() {
                return Err(FlagFileError::Undeclared {
                    flag: k.clone(),
                    why: format!(
                        "the flag is {}, and the value for tenant {tenant:?} is {}",
                        f.default.type_name(),
                        v.type_name()
                    ),
                });
            }
            if *v == f.default {
                f.tenants.remove(tenant);
            } else {
                f.tenants.insert(tenant.to_string(), v.clone());
            }
        }
        Ok(())
    }

    /// The document as JSON (pretty, with a final newline): the managed flags written
    /// anew, everything else as read.
    pub fn to_json(&self) -> String {
        let mut doc = self.rest.clone();
        let mut flags = match doc.remove("flags") {
            Some(Value::Object(f)) => f,
            _ => Map::new(),
        };
        for (k, f) in &self.managed {
            flags.insert(k.clone(), write_flag(f));
        }
        // Keys in order, whichever map serde_json was built with.
        let mut sorted: Vec<(String, Value)> = flags.into_iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        doc.insert("flags".into(), Value::Object(sorted.into_iter().collect()));
        let mut text =
            serde_json::to_string_pretty(&Value::Object(doc)).unwrap_or_else(|_| "{}".into());
        text.push('\n');
        text
    }
}

/// A variant's name for a value: `on`/`off`, or the string itself when flagd accepts it
/// as a key (else `v1`, `v2`, ... in value order).
fn variant_names(f: &ManagedFlag) -> Vec<(String, FlagValue)> {
    let mut values: Vec<&FlagValue> = f.tenants.values().collect();
    values.push(&f.default);
    values.sort();
    values.dedup();
    let mut out: Vec<(String, FlagValue)> = Vec::new();
    for (i, v) in values.into_iter().enumerate() {
        let name = match v {
            FlagValue::Bool(true) => "on".to_string(),
            FlagValue::Bool(false) => "off".to_string(),
            FlagValue::String(s)
                if is_flagd_key(s) && !out.iter().any(|(n, _)| n == s) && !s.starts_with('#') =>
            {
                s.clone()
            }
            FlagValue::String(_) => format!("#{}", i + 1),
        };
        out.push((name, v.clone()));
    }
    out
}

fn to_json_value(v: &FlagValue) -> Value {
    match v {
        FlagValue::Bool(b) => Value::Bool(*b),
        FlagValue::String(s) => Value::String(s.clone()),
    }
}

fn write_flag(f: &ManagedFlag) -> Value {
    let names = variant_names(f);
    let name_of = |v: &FlagValue| {
        names
            .iter()
            .find(|(_, x)| x == v)
            .map(|(n, _)| n.clone())
            .unwrap_or_default()
    };
    let variants: Map<String, Value> = names
        .iter()
        .map(|(n, v)| (n.clone(), to_json_value(v)))
        .collect();
    let default = name_of(&f.default);
    let mut by_value: BTreeMap<&FlagValue, Vec<&str>> = BTreeMap::new();
    for (t, v) in &f.tenants {
        by_value.entry(v).or_default().push(t);
    }
    let mut flag = Map::new();
    flag.insert("state".into(), Value::String(f.state.clone()));
    flag.insert("variants".into(), Value::Object(variants));
    flag.insert("defaultVariant".into(), Value::String(default.clone()));
    if !by_value.is_empty() {
        let mut args = Vec::new();
        for (v, tenants) in by_value {
            args.push(json!({ "in": [{ "var": TENANT_ATTRIBUTE }, tenants] }));
            args.push(Value::String(name_of(v)));
        }
        args.push(Value::String(default));
        flag.insert("targeting".into(), json!({ "if": args }));
    }
    Value::Object(flag)
}

/// A flag as cutover wrote it, read back; anything else is refused.
fn read_flag(key: &str, v: &Value, declared: &FlagValue) -> Result<ManagedFlag, FlagFileError> {
    let foreign = |why: &str| FlagFileError::Foreign {
        flag: key.to_string(),
        why: why.to_string(),
    };
    let obj = v.as_object().ok_or_else(|| foreign("not an object"))?;
    let state = match obj.get("state") {
        None => "ENABLED".to_string(),
        Some(Value::String(s)) if s == "ENABLED" || s == "DISABLED" => s.clone(),
        Some(_) => return Err(foreign("its state is not ENABLED or DISABLED")),
    };
    let variants = obj
        .get("variants")
        .and_then(Value::as_object)
        .ok_or_else(|| foreign("no variants"))?;
    let mut values: BTreeMap<&str, FlagValue> = BTreeMap::new();
    for (name, value) in variants {
        let value = match (value, declared) {
            (Value::Bool(b), FlagValue::Bool(_)) => FlagValue::Bool(*b),
            (Value::String(s), FlagValue::String(_)) => FlagValue::String(s.clone()),
            _ => {
                return Err(foreign(&format!(
                    "variant {name:?} is not a {} (the release's flag is {})",
                    declared.type_name(),
                    declared.type_name()
                )));
            }
        };
        values.insert(name, value);
    }
    let variant = |name: &Value| -> Result<FlagValue, FlagFileError> {
        let n = name
            .as_str()
            .ok_or_else(|| foreign("a variant is named by a string"))?;
        values
            .get(n)
            .cloned()
            .ok_or_else(|| foreign(&format!("variant {n:?} is not among its variants")))
    };
    let default = variant(
        obj.get("defaultVariant")
            .ok_or_else(|| foreign("no defaultVariant"))?,
    )?;
    let mut tenants = BTreeMap::new();
    match obj.get("targeting") {
        None => {}
        Some(Value::Object(t)) if t.is_empty() => {}
        Some(t) => {
            let args = t
                .as_object()
                .filter(|o| o.len() == 1)
                .and_then(|o| o.get("if"))
                .and_then(Value::as_array)
                .ok_or_else(|| foreign("its targeting is not cutover's `if` over `tenant`"))?;
            let mut pairs = args.chunks_exact(2);
            // JSONLogic's `if` takes the first condition that holds.
            let mut seen = std::collections::HashSet::new();
            for pair in &mut pairs {
                let names = tenant_list(&pair[0]).ok_or_else(|| {
                    foreign("a condition is not `{\"in\": [{\"var\": \"tenant\"}, [...]]}`")
                })?;
                let value = variant(&pair[1])?;
                for n in names {
                    if seen.insert(n.clone()) && value != default {
                        tenants.insert(n, value.clone());
                    }
                }
            }
            if let [last] = pairs.remainder()
                && variant(last)? != default
            {
                return Err(foreign(
                    "its targeting ends with a variant other than the default",
                ));
            }
        }
    }
    Ok(ManagedFlag {
        default,
        tenants,
        state,
    })
}

/// `{"in": [{"var": "tenant"}, ["a", "b"]]}` → the names.
fn tenant_list(cond: &Value) -> Option<Vec<String>> {
    let args = cond
        .as_object()
        .filter(|o| o.len() == 1)?
        .get("in")?
        .as_array()?;
    let [var, list] = args.as_slice() else {
        return None;
    };
    if var != &json!({ "var": TENANT_ATTRIBUTE }) {
        return None;
    }
    list.as_array()?
        .iter()
        .map(|n| n.as_str().map(str::to_string))
        .collect()
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Replace `path` with `content` atomically: a temporary file in the same directory,
/// written and fsync'd, renamed over `path`, then the directory fsync'd (so the rename
/// itself survives a crash). A reader sees the old file or the new one, never a part.
pub fn write_atomic(path: &Path, content: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file", path.display()),
        )
    })?;
    let tmp = dir.join(format!(
        ".{}.cutover-{}-{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        TMP_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(content)?;
        f.sync_all()
    })();
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(v: bool) -> FlagValue {
        FlagValue::Bool(v)
    }

    fn decl() -> BTreeMap<String, FlagValue> {
        BTreeMap::from([
            ("new_checkout".to_string(), b(false)),
            ("theme".to_string(), FlagValue::String("classic".into())),
        ])
    }

    #[test]
    fn a_new_file_lists_each_flag_with_targeting_only_where_tenants_differ() {
        let mut f = FlagFile::read(None, &decl()).unwrap();
        f.set_tenant("acme", &BTreeMap::from([("new_checkout".into(), b(true))]))
            .unwrap();
        let v: Value = serde_json::from_str(&f.to_json()).unwrap();
        let nc = &v["flags"]["new_checkout"];
        assert_eq!(nc["state"], "ENABLED");
        assert_eq!(nc["defaultVariant"], "off");
        assert_eq!(nc["variants"], json!({"off": false, "on": true}));
        assert_eq!(
            nc["targeting"],
            json!({"if": [{"in": [{"var": "tenant"}, ["acme"]]}, "on", "off"]})
        );
        assert_eq!(v["flags"]["theme"]["defaultVariant"], "classic");
        assert!(v["flags"]["theme"].get("targeting").is_none());
    }

    #[test]
    fn reading_back_what_was_written_gives_the_same_values() {
        let mut f = FlagFile::read(None, &decl()).unwrap();
        f.set_tenant(
            "a",
            &BTreeMap::from([
                ("new_checkout".into(), b(true)),
                ("theme".into(), FlagValue::String("dark".into())),
            ]),
        )
        .unwrap();
        f.set_tenant(
            "b",
            &BTreeMap::from([("theme".into(), FlagValue::String(String::new()))]),
        )
        .unwrap();
        let text = f.to_json();
        let again = FlagFile::read(Some(&text), &decl()).unwrap();
        assert_eq!(again, f);
        assert_eq!(again.to_json(), text);
        assert_eq!(
            again.value("b", "theme"),
            Some(&FlagValue::String(String::new()))
        );
        assert_eq!(again.value("c", "new_checkout"), Some(&b(false)));
        // Back to the default: no targeting left.
        let mut f = again;
        f.set_tenant("a", &BTreeMap::from([("new_checkout".into(), b(false))]))
            .unwrap();
        let v: Value = serde_json::from_str(&f.to_json()).unwrap();
        assert!(v["flags"]["new_checkout"].get("targeting").is_none());
    }

    #[test]
    fn foreign_flags_are_kept_and_foreign_rules_on_ours_refused() {
        let prev = r#"{"$evaluators": {"x": {"in": ["a", ["a"]]}}, "metadata": {"team": "web"},
            "flags": {"other": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a",
                                "targeting": {"fractional": [["a", 50], ["b", 50]]}}}}"#;
        let f = FlagFile::read(Some(prev), &decl()).unwrap();
        let v: Value = serde_json::from_str(&f.to_json()).unwrap();
        assert_eq!(v["flags"]["other"]["targeting"]["fractional"][0][1], 50);
        assert_eq!(v["metadata"]["team"], "web");
        assert!(v["$evaluators"]["x"].is_object());
        let theirs = r#"{"flags": {"new_checkout": {"state": "ENABLED", "variants": {"on": true, "off": false},
            "defaultVariant": "off", "targeting": {"fractional": [["on", 50], ["off", 50]]}}}}"#;
        let e = FlagFile::read(Some(theirs), &decl()).unwrap_err();
        assert!(matches!(e, FlagFileError::Foreign { ref flag, .. } if flag == "new_checkout"));
        assert!(e.to_string().contains("will not overwrite"), "{e}");
        let typed = r#"{"flags": {"new_checkout": {"state": "ENABLED", "variants": {"a": "x"}, "defaultVariant": "a"}}}"#;
        assert!(FlagFile::read(Some(typed), &decl()).is_err());
        assert!(matches!(
            FlagFile::read(Some("[1]"), &decl()),
            Err(FlagFileError::NotFlagd(_))
        ));
        assert!(matches!(
            FlagFile::read(Some("{"), &decl()),
            Err(FlagFileError::NotFlagd(_))
        ));
    }

    #[test]
    fn a_flag_already_in_the_file_keeps_its_default() {
        let prev = r#"{"flags": {"new_checkout": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}}}"#;
        let f = FlagFile::read(Some(prev), &decl()).unwrap();
        assert_eq!(f.value("anyone", "new_checkout"), Some(&b(true)));
        let mut f = f;
        assert!(
            f.set_tenant("a", &BTreeMap::from([("nope".into(), b(true))]))
                .is_err()
        );
        assert!(
            f.set_tenant("a", &BTreeMap::from([("theme".into(), b(true))]))
                .is_err()
        );
    }

    #[test]
    fn the_atomic_write_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flags.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "two");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["flags.json"]);
        let missing = dir.path().join("nope/flags.json");
        assert!(write_atomic(&missing, b"x").is_err());
    }
}
