//! Environments: `[environments.NAME]` tables that give one release file the values of
//! staging, production, ... and the resolution of a release file for one of them.
//!
//! ```toml
//! [environments.production]
//! requires = ["staging"]                       # kept for the lifecycle gate
//! vars = { replicas = 3, port = 28081 }        # over [vars]
//! release = { max_parallel = 2 }               # over [release] (any key but `name`)
//! service.api = { local = { replicas = 4 } }   # over the [[service]] named "api"
//! ```
//!
//! Overlays are merged table by table into the release (a value, or an array, replaces what
//! was there); they keep their own place in the file, so a bad overlaid value is reported
//! where the overlay wrote it. The environment's name becomes `[release] environment`
//! unless the overlay's `release` sets it. Resolution order: `[vars]`, the environment's
//! `vars`, a tenant's `vars` (for each `[[tenant]]`, see [`super::fleet`]), `--set`; then the
//! overlays; then `${name}` everywhere (overlays included).

use std::collections::BTreeMap;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diagnostic::nearest;
use super::parse::keys;
use super::vars::{Ctx, SetText, Vars};

/// A declared environment, as the lifecycle gate and the parity diff read it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Environment {
    pub name: String,
    /// Environments that must have promoted the same artifact first (`requires`).
    pub requires: Vec<String>,
}

/// The keys an `[environments.NAME]` table accepts.
pub const ENVIRONMENT_KEYS: &[&str] = &["vars", "requires", "release", "service"];

/// What the resolution found, besides the tree it changed.
pub(crate) struct Resolution<'i> {
    /// The environment resolved for, if any.
    pub environment: Option<String>,
    /// Every declared environment, in name order.
    pub environments: Vec<Environment>,
    /// The variables in force, shown.
    pub vars: Vec<super::vars::ResolvedVar>,
    /// With `[[tenant]]`s: what each tenant's resolution starts from.
    pub for_tenants: Option<super::fleet::Unresolved<'i>>,
}

/// One environment's table as read.
struct Decl<'t, 'i> {
    name: String,
    key: Range<usize>,
    table: Option<&'t DeTable<'i>>,
}

/// Take `[vars]` and `[environments]` out of the document, pick the environment
/// (`selected`), and merge its variables, `--set` values and overlays; then interpolate.
/// Problems go to `cx.diags`.
pub(crate) fn resolve<'i>(
    root: &mut DeTable<'i>,
    root_span: Range<usize>,
    selected: Option<&str>,
    sets: &'i [SetText],
    cx: &mut Ctx<'_>,
) -> Resolution<'i> {
    let vars_table = root.remove("vars");
    let envs_table = root.remove("environments");
    let mut vars: Vars<'i> = BTreeMap::new();
    if let Some(v) = &vars_table {
        cx.declare(v, "[vars]", "[vars]", &mut vars);
    }
    let decls = read_decls(envs_table.as_ref(), cx);
    let environments = check_requires(&decls, cx);
    let names: Vec<&str> = decls.iter().map(|d| d.name.as_str()).collect();
    let envs_span = envs_table.as_ref().map(|t| t.span());
    let chosen = match (selected, decls.is_empty()) {
        (None, true) => None,
        (None, false) => {
            cx.diags.push(cx.map.diagnostic(
                envs_span.clone(),
                format!(
                    "this release declares environments ({}): say which one with --env NAME",
                    names.join(", ")
                ),
                Some(format!("e.g. --env {}; cutover does not guess", names[0])),
            ));
            None
        }
        (Some(want), true) => {
            cx.diags.push(cx.map.diagnostic(
                None,
                format!("--env {want}: this release declares no environments"),
                Some(format!(
                    "drop --env, or declare it: `[environments.{want}]` with `vars = {{ ... }}`"
                )),
            ));
            None
        }
        (Some(want), false) => match decls.iter().find(|d| d.name == want) {
            Some(d) => Some(d),
            None => {
                let hint = match nearest(want, &names) {
                    Some(n) => format!("did you mean --env {n}? declared: {}", names.join(", ")),
                    None => format!("declared environments: {}", names.join(", ")),
                };
                cx.diags.push(cx.map.diagnostic(
                    envs_span.clone(),
                    format!("--env {want}: the release declares no environment `{want}`"),
                    Some(hint),
                ));
                None
            }
        },
    };
    if let Some(d) = chosen
        && let Some(t) = d.table
        && let Some(v) = t.get("vars")
    {
        cx.declare(
            v,
            &format!("the vars of environment `{}`", d.name),
            &format!("environment {}", d.name),
            &mut vars,
        );
    }
    let undeclared_at = vars_table
        .as_ref()
        .map(|t| t.span())
        .or(envs_span)
        .or(Some(root_span.start..root_span.start));
    let before_sets = root.get("tenant").is_some().then(|| vars.clone());
    cx.apply_sets(sets, &mut vars, undeclared_at.clone());
    if let Some(d) = chosen {
        overlay(root, d, cx);
    }
    // Each tenant lays its vars between the environment's and --set (see `fleet`): it
    // starts from the variables before --set and the tree before `${name}` is replaced.
    let for_tenants =
        before_sets.map(|vars| super::fleet::Unresolved::new(root, vars, undeclared_at));
    cx.interpolate(root, &vars);
    Resolution {
        environment: chosen.map(|d| d.name.clone()),
        environments,
        vars: super::vars::shown(&vars),
        for_tenants,
    }
}

/// The names of the environments a release text declares (without resolving anything):
/// `validate` checks each one.
pub fn declared_names(text: &str) -> Vec<String> {
    let Ok(doc) = DeTable::parse(text) else {
        return Vec::new();
    };
    match doc.get_ref().get("environments").map(|v| v.get_ref()) {
        Some(DeValue::Table(t)) => t.iter().map(|(k, _)| k.get_ref().to_string()).collect(),
        _ => Vec::new(),
    }
}

fn read_decls<'t, 'i>(
    table: Option<&'t Spanned<DeValue<'i>>>,
    cx: &mut Ctx<'_>,
) -> Vec<Decl<'t, 'i>> {
    let Some(table) = table else {
        return Vec::new();
    };
    let DeValue::Table(t) = table.get_ref() else {
        cx.diags.push(cx.map.diagnostic(
            Some(table.span()),
            "`environments` must be a table of environments",
            Some("write `[environments.staging]` then `vars = { ... }`".into()),
        ));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in t.iter() {
        let name = k.get_ref().to_string();
        let table = match v.get_ref() {
            DeValue::Table(et) => {
                for (ek, _) in et.iter() {
                    let key: &str = ek.get_ref();
                    if !ENVIRONMENT_KEYS.contains(&key) {
                        let hint = match nearest(key, ENVIRONMENT_KEYS) {
                            Some(n) => format!("did you mean `{n}`?"),
                            None => format!("valid keys here: {}", ENVIRONMENT_KEYS.join(", ")),
                        };
                        cx.diags.push(cx.map.diagnostic(
                            Some(ek.span()),
                            format!("unknown key `{key}` in [environments.{name}]"),
                            Some(hint),
                        ));
                    }
                }
                Some(et)
            }
            other => {
                cx.diags.push(cx.map.diagnostic(
                    Some(v.span()),
                    format!(
                        "environment `{name}` must be a table, not {}",
                        other.type_str()
                    ),
                    Some(format!(
                        "write `[environments.{name}]` then `vars = {{ ... }}`"
                    )),
                ));
                None
            }
        };
        out.push(Decl {
            name,
            key: k.span(),
            table,
        });
    }
    out
}

/// Read each environment's `requires`: names that exist, not itself, and no cycle.
fn check_requires(decls: &[Decl], cx: &mut Ctx<'_>) -> Vec<Environment> {
    let names: Vec<&str> = decls.iter().map(|d| d.name.as_str()).collect();
    let mut out = Vec::new();
    let mut spans: BTreeMap<String, Range<usize>> = BTreeMap::new();
    for d in decls {
        let mut requires = Vec::new();
        if let Some(v) = d.table.and_then(|t| t.get("requires")) {
            spans.insert(d.name.clone(), v.span());
            match v.get_ref() {
                DeValue::Array(items) => {
                    for item in items.iter() {
                        match item.get_ref() {
                            DeValue::String(r) if names.contains(&r.as_ref()) && r != &d.name => {
                                requires.push(r.to_string());
                            }
                            DeValue::String(r) if r == &d.name => {
                                cx.diags.push(cx.map.diagnostic(
                                    Some(item.span()),
                                    format!("environment `{r}` requires itself"),
                                    Some("remove it from `requires`".into()),
                                ));
                            }
                            DeValue::String(r) => {
                                let hint = match nearest(r, &names) {
                                    Some(n) => format!("did you mean \"{n}\"?"),
                                    None => format!("declared environments: {}", names.join(", ")),
                                };
                                cx.diags.push(cx.map.diagnostic(
                                    Some(item.span()),
                                    format!(
                                        "environment `{}` requires `{r}`, which the release does not declare",
                                        d.name
                                    ),
                                    Some(hint),
                                ));
                            }
                            other => cx.diags.push(cx.map.diagnostic(
                                Some(item.span()),
                                format!(
                                    "`requires` lists environment names, not {}",
                                    other.type_str()
                                ),
                                Some("write it like `requires = [\"staging\"]`".into()),
                            )),
                        }
                    }
                }
                other => cx.diags.push(cx.map.diagnostic(
                    Some(v.span()),
                    format!(
                        "`requires` must be an array of environment names, not {}",
                        other.type_str()
                    ),
                    Some("write it like `requires = [\"staging\"]`".into()),
                )),
            }
        }
        out.push(Environment {
            name: d.name.clone(),
            requires,
        });
    }
    if let Some(cycle) = find_cycle(&out) {
        let at = cycle.first().and_then(|n| spans.get(n)).cloned();
        cx.diags.push(cx.map.diagnostic(
            at,
            format!("the environments' `requires` form a cycle: {}", cycle.join(" -> ")),
            Some("an environment can only require environments that come before it; remove one of these".into()),
        ));
    }
    out
}

/// A cycle in `requires`, as the names along it (the first repeated at the end).
fn find_cycle(envs: &[Environment]) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        envs: &[Environment],
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let start = path.iter().position(|p| p == n).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(n.to_string(), 1);
        path.push(n.to_string());
        if let Some(e) = envs.iter().find(|e| e.name == n) {
            for r in &e.requires {
                if let Some(c) = visit(r, envs, state, path) {
                    return Some(c);
                }
            }
        }
        path.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    envs.iter()
        .find_map(|e| visit(&e.name, envs, &mut state, &mut Vec::new()))
}

/// Merge the chosen environment's `release` and `service` overlays into the document,
/// and name the release's environment after it.
fn overlay<'i>(root: &mut DeTable<'i>, d: &Decl<'_, 'i>, cx: &mut Ctx<'_>) {
    if let Some(DeValue::Table(release)) = root.get_mut("release").map(|v| v.get_mut()) {
        release.insert(
            Spanned::new(d.key.clone(), "environment".into()),
            Spanned::new(d.key.clone(), DeValue::String(d.name.clone().into())),
        );
    }
    let Some(t) = d.table else {
        return;
    };
    if let Some(v) = t.get("release") {
        match v.get_ref() {
            DeValue::Table(over) => {
                let allowed: Vec<&str> = keys::RELEASE
                    .iter()
                    .copied()
                    .filter(|k| *k != "name")
                    .collect();
                for (k, _) in over.iter() {
                    let key: &str = k.get_ref();
                    if !allowed.contains(&key) {
                        let hint = if key == "name" {
                            "the release's name is the same in every environment (the lifecycle gate compares runs by it)".to_string()
                        } else {
                            match nearest(key, &allowed) {
                                Some(n) => format!("did you mean `{n}`?"),
                                None => format!("an environment may set: {}", allowed.join(", ")),
                            }
                        };
                        cx.diags.push(cx.map.diagnostic(
                            Some(k.span()),
                            format!("`{key}` cannot be set by environment `{}`", d.name),
                            Some(hint),
                        ));
                    }
                }
                if let Some(DeValue::Table(release)) = root.get_mut("release").map(|v| v.get_mut())
                {
                    merge(release, over, &["name"]);
                }
            }
            other => cx.diags.push(cx.map.diagnostic(
                Some(v.span()),
                format!(
                    "`release` of environment `{}` must be a table, not {}",
                    d.name,
                    other.type_str()
                ),
                Some("write it like `release = { max_parallel = 2 }`".into()),
            )),
        }
    }
    if let Some(v) = t.get("service") {
        let DeValue::Table(services) = v.get_ref() else {
            cx.diags.push(cx.map.diagnostic(
                Some(v.span()),
                format!("`service` of environment `{}` must be a table of services by name", d.name),
                Some(format!("write it like `[environments.{}.service.api]` then `local = {{ replicas = 4 }}`", d.name)),
            ));
            return;
        };
        let mut targets: Vec<(String, usize)> = Vec::new();
        if let Some(DeValue::Array(items)) = root.get("service").map(|v| v.get_ref()) {
            for (i, item) in items.iter().enumerate() {
                if let Some(n) = item
                    .get_ref()
                    .get("name")
                    .and_then(|n| n.get_ref().as_str())
                {
                    targets.push((n.to_string(), i));
                }
            }
        }
        let names: Vec<&str> = targets.iter().map(|(n, _)| n.as_str()).collect();
        for (k, ov) in services.iter() {
            let name: &str = k.get_ref();
            let Some(index) = targets.iter().find(|(n, _)| n == name).map(|(_, i)| *i) else {
                let hint = match nearest(name, &names) {
                    Some(n) => format!("did you mean `{n}`?"),
                    None => format!("the release's services: {}", names.join(", ")),
                };
                cx.diags.push(cx.map.diagnostic(
                    Some(k.span()),
                    format!("environment `{}` changes service `{name}`, which the release does not have", d.name),
                    Some(hint),
                ));
                continue;
            };
            let DeValue::Table(over) = ov.get_ref() else {
                cx.diags.push(cx.map.diagnostic(
                    Some(ov.span()),
                    format!(
                        "the settings of service `{name}` in environment `{}` must be a table",
                        d.name
                    ),
                    Some("write it like `service.api = { local = { replicas = 4 } }`".into()),
                ));
                continue;
            };
            if let Some(nk) = over
                .iter()
                .find(|(k, _)| k.get_ref() == "name")
                .map(|(k, _)| k.span())
            {
                cx.diags.push(cx.map.diagnostic(
                    Some(nk),
                    format!("environment `{}` cannot rename service `{name}`", d.name),
                    Some("a service's name is the same in every environment; remove `name`".into()),
                ));
                continue;
            }
            if let Some(DeValue::Array(items)) = root.get_mut("service").map(|v| v.get_mut())
                && let Some(DeValue::Table(base)) = items.get_mut(index).map(|v| v.get_mut())
            {
                merge(base, over, &[]);
            }
        }
    }
}

/// Lay `over` onto `base` (but the keys in `skip`): tables merge key by key, anything
/// else replaces.
fn merge<'i>(base: &mut DeTable<'i>, over: &DeTable<'i>, skip: &[&str]) {
    for (k, v) in over.iter() {
        let key: &str = k.get_ref();
        if skip.contains(&key) {
            continue;
        }
        match (base.get_mut(key), v.get_ref()) {
            (Some(existing), DeValue::Table(o)) if existing.get_ref().is_table() => {
                if let DeValue::Table(b) = existing.get_mut() {
                    merge(b, o, &[]);
                }
            }
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}
