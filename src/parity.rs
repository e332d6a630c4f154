//! The parity diff of two environments of one release (`cutover diff FILE --between A B`):
//! every difference between what A and B run is classified as *declared* (it follows
//! from the release's variables or overlays: the two resolved releases ask for it) or
//! *drift* (nothing in the release explains it: a change made by hand, or an environment
//! that does not run what the release says).
//!
//! This module holds the rule; the live fields of an ECS environment come from
//! [`crate::platform::ecs::parity`], and on the local platform the two resolved releases
//! are compared directly (every difference there is declared by construction).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::platform::ecs::parity::{Fields, LiveService, cpu_units, memory_mib, secret_name};
use crate::release::Release;

/// Declared or drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Declared,
    Drift,
}

/// One difference between the two environments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// The release's service (empty for release-wide settings on the local platform).
    pub service: String,
    /// `container.app.env.LOG_LEVEL`, `service.desired_count`, `release.environment`.
    pub path: String,
    pub class: Class,
    /// The value in A and in B (`None`: not set there). Environment values are shown as
    /// fingerprints (`sha256:…`): they may be secrets.
    pub a: Option<String>,
    pub b: Option<String>,
    /// Why it is classed so, in a sentence.
    pub why: String,
}

/// Whether the two environments run the same image, per service: checked first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageCheck {
    pub service: String,
    pub a: Option<String>,
    pub b: Option<String>,
    pub same: bool,
}

/// The whole comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Parity {
    /// The two environments' names, A then B.
    pub between: [String; 2],
    /// Where the values came from: `ecs` (what runs now) or `release` (the resolved files).
    pub source: String,
    pub images: Vec<ImageCheck>,
    pub differences: Vec<Difference>,
}

impl Parity {
    /// Differences nothing in the release explains.
    pub fn drift(&self) -> usize {
        self.differences
            .iter()
            .filter(|d| d.class == Class::Drift)
            .count()
    }
}

/// The parity of two ECS environments: `a` and `b` are the release resolved for each,
/// `live_a` and `live_b` what their services run now
/// ([`crate::platform::ecs::parity::live`]).
pub fn of_ecs(
    names: [String; 2],
    a: &Release,
    b: &Release,
    live_a: &[LiveService],
    live_b: &[LiveService],
) -> Parity {
    let (da, db) = (declared_ecs(a), declared_ecs(b));
    let empty = Fields::new();
    let mut images = Vec::new();
    let mut differences = Vec::new();
    for s in &a.services {
        let Some(e) = &s.ecs else { continue };
        let la = live_a
            .iter()
            .find(|l| l.service == s.name)
            .map(|l| &l.fields);
        let lb = live_b
            .iter()
            .find(|l| l.service == s.name)
            .map(|l| &l.fields);
        let (la, lb) = (la.unwrap_or(&empty), lb.unwrap_or(&empty));
        images.push(image_check(&s.name, &e.container, la, lb));
        differences.extend(classify(
            &s.name,
            da.get(&s.name).unwrap_or(&empty),
            db.get(&s.name).unwrap_or(&empty),
            la,
            lb,
        ));
    }
    Parity {
        between: names,
        source: "ecs".into(),
        images,
        differences,
    }
}

/// The parity of two environments of a release on the local platform: the resolved
/// releases compared, every difference declared.
pub fn of_releases(names: [String; 2], a: &Release, b: &Release) -> Parity {
    Parity {
        between: names,
        source: "release".into(),
        images: Vec::new(),
        differences: resolved(a, b),
    }
}

/// What the release asks each ECS service of one environment to run, as the same paths
/// [`crate::platform::ecs::parity`] reads live: image, environment, secrets, task CPU and
/// memory, desired count. Keyed by the release's service name.
pub fn declared_ecs(release: &Release) -> BTreeMap<String, Fields> {
    let mut out = BTreeMap::new();
    for s in &release.services {
        let Some(e) = &s.ecs else { continue };
        let mut f = Fields::new();
        let c = format!("container.{}", e.container);
        f.insert(format!("{c}.image"), e.image.clone());
        for (k, v) in &e.env {
            f.insert(format!("{c}.env.{k}"), v.clone());
        }
        for (k, arn) in &e.secret_env {
            f.insert(format!("{c}.secret.{k}"), secret_name(arn));
        }
        if let Some(cpu) = &e.cpu {
            f.insert("task.cpu".into(), cpu_units(cpu));
        }
        if let Some(m) = &e.memory {
            f.insert("task.memory".into(), memory_mib(m));
        }
        if let Some(n) = e.desired_count {
            f.insert("service.desired_count".into(), n.to_string());
        }
        out.insert(s.name.clone(), f);
    }
    out
}

/// Classify the differences between the live fields of A and B, given what the
/// release declares for each.
pub fn classify(
    service: &str,
    declared_a: &Fields,
    declared_b: &Fields,
    live_a: &Fields,
    live_b: &Fields,
) -> Vec<Difference> {
    let paths: BTreeSet<&String> = live_a
        .keys()
        .chain(live_b.keys())
        .chain(declared_a.keys())
        .chain(declared_b.keys())
        .collect();
    let mut out = Vec::new();
    for p in paths {
        let (la, lb) = (live_a.get(p), live_b.get(p));
        let (da, db) = (declared_a.get(p), declared_b.get(p));
        let release_differs = da != db;
        let follows = |live: Option<&String>, decl: Option<&String>| decl.is_none() || live == decl;
        let (class, why) = if la == lb {
            match (da, db) {
                (Some(x), Some(y)) if x != y => (
                    Class::Drift,
                    "the release declares different values, but both environments run the same"
                        .to_string(),
                ),
                _ => continue,
            }
        } else if release_differs && follows(la, da) && follows(lb, db) {
            (
                Class::Declared,
                "follows from the release's variables or overlays".to_string(),
            )
        } else if let Some(d) = da.filter(|d| la != Some(*d)) {
            (
                Class::Drift,
                format!("the release declares {} for A", shown(p, Some(d))),
            )
        } else if let Some(d) = db.filter(|d| lb != Some(*d)) {
            (
                Class::Drift,
                format!("the release declares {} for B", shown(p, Some(d))),
            )
        } else if da.is_some() && da == db {
            (
                Class::Drift,
                "the release declares the same value for both".to_string(),
            )
        } else {
            (
                Class::Drift,
                "not declared by the release: changed outside cutover".to_string(),
            )
        };
        out.push(Difference {
            service: service.to_string(),
            path: p.clone(),
            class,
            a: la.map(|v| display(p, v)),
            b: lb.map(|v| display(p, v)),
            why,
        });
    }
    out
}

/// The image check of one service, from live (or resolved) fields.
pub fn image_check(service: &str, container: &str, a: &Fields, b: &Fields) -> ImageCheck {
    let key = format!("container.{container}.image");
    let (a, b) = (a.get(&key).cloned(), b.get(&key).cloned());
    ImageCheck {
        service: service.to_string(),
        same: a.is_some() && a == b,
        a,
        b,
    }
}

/// Compare two resolved releases directly (the local platform): every difference is
/// declared, since both come from the same file.
pub fn resolved(a: &Release, b: &Release) -> Vec<Difference> {
    let (fa, fb) = (flatten_release(a), flatten_release(b));
    // Anything either release marks or resolves as secret (an `env:` variable used in any
    // field, say) is masked wherever it appears, beyond the fields `display` fingerprints.
    let (sa, sb) = (
        crate::secrets::Secrets::from_release(a),
        crate::secrets::Secrets::from_release(b),
    );
    let shown = |path: &str, v: &String| sb.scrub(&sa.scrub(&display(path, v)));
    let keys: BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
    keys.into_iter()
        .filter(|k| fa.get(*k) != fb.get(*k))
        .map(|k| {
            let (service, path) = split_service(a, k);
            Difference {
                service,
                path: path.clone(),
                class: Class::Declared,
                a: fa.get(k).map(|v| shown(&path, v)),
                b: fb.get(k).map(|v| shown(&path, v)),
                why: "follows from the release's variables or overlays".into(),
            }
        })
        .collect()
}

/// `service.api.local.listen` becomes (`api`, `local.listen`); release-wide keys keep
/// their path.
fn split_service(r: &Release, key: &str) -> (String, String) {
    if let Some(rest) = key.strip_prefix("service.") {
        for s in &r.services {
            if let Some(p) = rest.strip_prefix(&format!("{}.", s.name)) {
                return (s.name.clone(), p.to_string());
            }
        }
    }
    (String::new(), key.to_string())
}

/// A release as dotted paths to scalar values; services keyed by name, not position.
pub fn flatten_release(r: &Release) -> Fields {
    let mut out = Fields::new();
    let Ok(mut v) = serde_json::to_value(r) else {
        return out;
    };
    if let Some(obj) = v.as_object_mut()
        && let Some(serde_json::Value::Array(services)) = obj.remove("service")
    {
        let mut by_name = serde_json::Map::new();
        for s in services {
            let name = s["name"].as_str().unwrap_or("?").to_string();
            by_name.insert(name, s);
        }
        obj.insert("service".into(), serde_json::Value::Object(by_name));
    }
    flatten("", &v, &mut out);
    out
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Fields) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        serde_json::Value::Object(m) => m.iter().for_each(|(k, x)| flatten(&join(k), x, out)),
        serde_json::Value::Array(a) if a.iter().all(|x| !x.is_object()) => {
            out.insert(prefix.to_string(), v.to_string());
        }
        serde_json::Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| flatten(&join(&i.to_string()), x, out)),
        serde_json::Value::Null => {}
        serde_json::Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// Values that may be secret (environment values, URLs with credentials, webhooks) are
/// shown as a fingerprint; everything else as it is.
fn display(path: &str, v: &str) -> String {
    if may_be_secret(path) {
        format!("sha256:{}", &crate::journal::sha256_hex(v.as_bytes())[..12])
    } else {
        v.to_string()
    }
}

fn shown(path: &str, v: Option<&String>) -> String {
    match v {
        Some(v) => format!("\"{}\"", display(path, v)),
        None => "nothing".into(),
    }
}

fn may_be_secret(path: &str) -> bool {
    path.contains(".env.")
        || path.starts_with("env.")
        || path.contains("webhook")
        || path.contains("database")
        || path.contains("headers")
        || path.ends_with(".command")
        || path.contains(".command.")
}

/// The report as text: the image check first, then each difference with its class.
pub fn render(p: &Parity) -> String {
    let [a, b] = &p.between;
    let mut s = format!("parity of {a} (A) and {b} (B), from {}\n", p.source);
    for i in &p.images {
        let line = if i.same {
            format!(
                "  image   {}: the same in both ({})\n",
                i.service,
                i.a.as_deref().unwrap_or("-")
            )
        } else {
            format!(
                "  IMAGE   {}: {a} runs {}, {b} runs {}\n",
                i.service,
                i.a.as_deref().unwrap_or("nothing"),
                i.b.as_deref().unwrap_or("nothing")
            )
        };
        s.push_str(&line);
    }
    for d in &p.differences {
        let mark = match d.class {
            Class::Declared => "declared",
            Class::Drift => "DRIFT   ",
        };
        let place = if d.service.is_empty() {
            d.path.clone()
        } else {
            format!("{}: {}", d.service, d.path)
        };
        s.push_str(&format!(
            "  {mark} {place}\n      {a}: {}\n      {b}: {}\n      {}\n",
            d.a.as_deref().unwrap_or("(not set)"),
            d.b.as_deref().unwrap_or("(not set)"),
            d.why
        ));
    }
    let n = p.drift();
    let declared = p.differences.len() - n;
    if n == 0 {
        s.push_str(&format!(
            "no drift: {declared} difference(s), every one declared by the release\n"
        ));
    } else {
        s.push_str(&format!(
            "{n} difference(s) the release does not declare (drift), {declared} declared: make {a} and {b} run what the release says (deploy it), or declare the difference in [environments]\n"
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_declared_difference_that_runs_is_declared() {
        let da = f(&[
            ("service.desired_count", "2"),
            ("container.app.image", "r:2"),
        ]);
        let db = f(&[
            ("service.desired_count", "4"),
            ("container.app.image", "r:2"),
        ]);
        let la = f(&[
            ("service.desired_count", "2"),
            ("container.app.image", "r:2"),
        ]);
        let lb = f(&[
            ("service.desired_count", "4"),
            ("container.app.image", "r:2"),
        ]);
        let d = classify("api", &da, &db, &la, &lb);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].path, "service.desired_count");
        assert_eq!(d[0].class, Class::Declared);
        assert_eq!(
            (d[0].a.as_deref(), d[0].b.as_deref()),
            (Some("2"), Some("4"))
        );
    }

    #[test]
    fn a_variable_added_by_hand_is_drift_and_its_value_is_not_shown() {
        let decl = f(&[("container.app.image", "r:2")]);
        let la = f(&[("container.app.image", "r:2")]);
        let lb = f(&[
            ("container.app.image", "r:2"),
            ("container.app.env.DEBUG", "hunter2-secret"),
        ]);
        let d = classify("api", &decl, &decl, &la, &lb);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].path, "container.app.env.DEBUG");
        assert_eq!(d[0].class, Class::Drift);
        assert_eq!(d[0].a, None);
        let shown = d[0].b.clone().unwrap_or_default();
        assert!(shown.starts_with("sha256:") && !shown.contains("hunter2"));
        assert!(d[0].why.contains("not declared"));
    }

    #[test]
    fn an_environment_not_running_the_release_is_drift() {
        // Both declare image r:2; B still runs r:1.
        let decl = f(&[("container.app.image", "r:2")]);
        let la = f(&[("container.app.image", "r:2")]);
        let lb = f(&[("container.app.image", "r:1")]);
        let d = classify("api", &decl, &decl, &la, &lb);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].class, Class::Drift);
        assert!(d[0].why.contains("for B"), "{}", d[0].why);
        // A declared difference that does not run is drift too.
        let da = f(&[("service.desired_count", "2")]);
        let db = f(&[("service.desired_count", "4")]);
        let same = f(&[("service.desired_count", "2")]);
        let d = classify("api", &da, &db, &same, &same);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].class, Class::Drift);
    }

    #[test]
    fn an_overlay_on_one_side_only_is_declared() {
        let da = f(&[("container.app.env.TRACE", "on")]);
        let la = f(&[("container.app.env.TRACE", "on")]);
        let d = classify("api", &da, &Fields::new(), &la, &Fields::new());
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].class, Class::Declared);
    }

    #[test]
    fn render_names_the_drift_and_the_image_check() {
        let p = Parity {
            between: ["staging".into(), "production".into()],
            source: "ecs".into(),
            images: vec![ImageCheck {
                service: "api".into(),
                a: Some("r:2".into()),
                b: Some("r:2".into()),
                same: true,
            }],
            differences: classify(
                "api",
                &Fields::new(),
                &Fields::new(),
                &Fields::new(),
                &f(&[("container.app.env.DEBUG", "1")]),
            ),
        };
        let text = render(&p);
        assert!(
            text.contains("image   api: the same in both (r:2)"),
            "{text}"
        );
        assert!(
            text.contains("DRIFT    api: container.app.env.DEBUG"),
            "{text}"
        );
        assert!(
            text.contains("1 difference(s) the release does not declare"),
            "{text}"
        );
        assert_eq!(p.drift(), 1);
    }
}
