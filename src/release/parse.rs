//! Reads a release file into [`Release`], reporting every structural problem (syntax, unknown
//! keys, wrong types, bad durations, unknown enum words) with its line and column. It walks
//! TOML's spanned tree by hand rather than through serde so that one bad field does not hide
//! the next one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::path::Path;

use toml::de::{DeTable, DeValue};

use super::diagnostic::{Diagnostic, SourceMap, nearest};
use super::environments::Environment;
use super::model::*;
use super::vars::SetArg;
use crate::duration::parse_duration;

mod metrics;
mod tenants;

/// Where values are in the file, looked up by path (`release.name`, `service[2]`,
/// `service[2].depends_on[0]`, `migration[0].expand`) in the parsed TOML tree, only when a
/// check needs to point at something: a valid release costs no lookups at all.
pub struct Spans<'d, 'i> {
    root: &'d DeTable<'i>,
    root_span: Range<usize>,
    broken: HashSet<String>,
}

impl Spans<'_, '_> {
    /// True when a problem was already reported at `path` or inside it, so later checks
    /// should not pile a second message on top of the first.
    pub fn is_broken(&self, path: &str) -> bool {
        self.broken.iter().any(|b| {
            b == path
                || b.strip_prefix(path)
                    .is_some_and(|rest| rest.starts_with(['.', '[']))
        })
    }

    /// Whether any problem was reported while parsing.
    pub fn any_broken(&self) -> bool {
        !self.broken.is_empty()
    }

    /// Whether the file wrote anything at `path`.
    pub fn present(&self, path: &str) -> bool {
        self.get(path).is_some()
    }

    /// The span of the value at `path`.
    pub fn get(&self, path: &str) -> Option<Range<usize>> {
        if path.is_empty() {
            return Some(self.root_span.clone());
        }
        let mut table = self.root;
        let mut found: Option<&toml::Spanned<DeValue>> = None;
        for segment in path.split('.') {
            if let Some(v) = found {
                table = match v.get_ref() {
                    DeValue::Table(t) => t,
                    _ => return None,
                };
            }
            let (key, indices) = segment
                .split_once('[')
                .map_or((segment, ""), |(k, rest)| (k, rest));
            let mut node = table.get(key)?;
            for idx in indices.split('[').filter(|x| !x.is_empty()) {
                let i: usize = idx.trim_end_matches(']').parse().ok()?;
                node = match node.get_ref() {
                    DeValue::Array(items) => items.into_iter().nth(i)?,
                    _ => return None,
                };
            }
            found = Some(node);
        }
        found.map(|v| v.span())
    }

    /// The span of `path`, else of the nearest enclosing path that has one.
    pub fn nearest(&self, path: &str) -> Option<Range<usize>> {
        let mut p = path;
        loop {
            if let Some(s) = self.get(p) {
                return Some(s);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

/// The keys each table accepts. A test checks these against `cutover schema`.
pub mod keys {
    pub const TOP: &[&str] = &[
        "release",
        "notify",
        "metrics",
        "service",
        "migration",
        "freeze",
        "vars",
        "environments",
        "flags",
        "tenant",
        "ring",
    ];
    /// The keys of an `[environments.NAME]` table.
    pub const ENVIRONMENT: &[&str] = crate::release::environments::ENVIRONMENT_KEYS;
    pub const RELEASE: &[&str] = &[
        "name",
        "platform",
        "max_parallel",
        "on_failure",
        "progress_deadline",
        "environment",
        "pin_secret",
        "metrics_listen",
        "change",
        "failure_budget",
    ];
    pub const NOTIFY: &[&str] = &["webhooks", "grafana"];
    pub const GRAFANA: &[&str] = &["url", "token", "dashboard_uid", "tags"];
    /// The keys of `[metrics]`.
    pub const METRICS: &[&str] = &[
        "provider",
        "url",
        "template",
        "username",
        "password",
        "bearer_token",
        "timeout",
    ];
    /// The keys of `[service.analysis.prometheus]`.
    pub const PROMETHEUS_QUERIES: &[&str] = &["requests", "errors", "slow"];
    pub const SERVICE: &[&str] = &[
        "name",
        "depends_on",
        "strategy",
        "steps",
        "linear",
        "blue_green",
        "rolling",
        "health",
        "smoke",
        "analysis",
        "local",
        "ecs",
    ];
    pub const LINEAR: &[&str] = &["step", "every"];
    pub const BLUE_GREEN: &[&str] = &["keep_old_for", "auto_promote"];
    pub const ROLLING: &[&str] = &["batch", "max_unavailable"];
    pub const HEALTH: &[&str] = &[
        "path",
        "interval",
        "timeout",
        "healthy_after",
        "unhealthy_after",
    ];
    pub const SMOKE: &[&str] = &["name", "request", "expect_status", "command", "timeout"];
    pub const ANALYSIS: &[&str] = &[
        "judge",
        "tolerance",
        "min_requests",
        "min_duration",
        "max_error_rate",
        "max_p99",
        "alpha",
        "failure_limit",
        "bursty",
        "on_inconclusive",
        "prometheus",
    ];
    pub const LOCAL: &[&str] = &[
        "listen",
        "replicas",
        "command",
        "current",
        "target",
        "drain_timeout",
    ];
    pub const REVISION: &[&str] = &["revision", "args", "env"];
    pub const ECS: &[&str] = &[
        "cluster",
        "service",
        "container",
        "image",
        "listener_rule",
        "target_groups",
        "secrets",
        "region",
        "test_listener_rule",
        "url",
        "desired_count",
        "env",
        "secret_env",
        "cpu",
        "memory",
    ];
    pub const FREEZE: &[&str] = &[
        "name",
        "cron",
        "duration",
        "timezone",
        "environments",
        "tenant_tags",
    ];
    pub const FLAGS: &[&str] = &["file", "defaults"];
    pub const TENANT: &[&str] = &[
        "name", "tags", "vars", "flags", "smoke", "analysis", "approval",
    ];
    pub const TENANT_SMOKE: &[&str] = &[
        "service",
        "name",
        "request",
        "expect_status",
        "command",
        "timeout",
    ];
    pub const TENANT_ANALYSIS: &[&str] = &["tolerance", "max_error_rate", "max_p99"];
    pub const TENANT_APPROVAL: &[&str] = &[
        "timeout",
        "on_timeout",
        "approvals",
        "approvers",
        "four_eyes",
    ];
    pub const RING: &[&str] = &["name", "select", "max_parallel", "bake"];
    pub const MIGRATION: &[&str] = &[
        "name",
        "database",
        "expand",
        "contract",
        "undo_expand",
        "services",
        "bake",
    ];
}

/// Parse the text of a release file and, when its structure allows, check the whole
/// release. Returns the release only when no problem was found; otherwise every problem,
/// in file order. Never panics on any input. `base` resolves relative paths. A release
/// that declares environments is refused here: it needs [`resolve_and_validate`].
pub fn parse_and_validate(
    map: &SourceMap,
    text: &str,
    base: &Path,
) -> Result<Release, Vec<Diagnostic>> {
    resolve_and_validate(map, text, base, &Selection::default()).map(|r| r.release)
}

/// Which environment and variable values to resolve a release text with.
#[derive(Debug, Clone, Default)]
pub struct Selection<'a> {
    /// `--env NAME`.
    pub env: Option<&'a str>,
    /// `--set NAME=VALUE`, in command-line order.
    pub sets: &'a [SetArg],
    /// A missing environment variable behind `env:` is not an error (`validate`).
    pub lenient_env: bool,
}

/// A release resolved for one environment, with what the resolution found.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub release: Release,
    /// The environment resolved for (`--env`), if the release declares environments.
    pub environment: Option<String>,
    /// Every environment the release declares.
    pub environments: Vec<Environment>,
    /// The variables in force, shown (`***` for values read from the environment).
    pub vars: Vec<super::vars::ResolvedVar>,
    /// Each `[[tenant]]`'s own release, in file order (empty without tenants).
    pub tenants: Vec<super::fleet::TenantRelease>,
}

/// [`parse_and_validate`] for one environment and `--set` values: variables and overlays
/// are resolved on the spanned tree first ([`super::vars`], [`super::environments`]), so
/// every problem is still located in the original text.
pub fn resolve_and_validate(
    map: &SourceMap,
    text: &str,
    base: &Path,
    sel: &Selection,
) -> Result<Resolved, Vec<Diagnostic>> {
    // Read before the tree exists: values built from them live in it.
    let set_texts = super::vars::read_sets(sel.sets);
    let (mut doc, errors) = DeTable::parse_recoverable(text);
    let mut p = Parser {
        map,
        diags: Vec::new(),
        broken: HashSet::new(),
        substituted: HashMap::new(),
        env_values: Vec::new(),
    };
    for e in &errors {
        let msg = e.message().trim().to_string();
        let msg = msg.lines().next().unwrap_or("invalid TOML").to_string();
        p.diags.push(map.diagnostic(
            e.span(),
            format!("TOML syntax error: {msg}"),
            Some("fix the syntax first; see https://toml.io for the format".into()),
        ));
    }
    if !errors.is_empty() {
        // A damaged document yields misleading follow-up errors; report syntax alone.
        return Err(p.diags);
    }
    let mut cx = super::vars::Ctx {
        map,
        text,
        diags: Vec::new(),
        lenient_env: sel.lenient_env,
        env_values: Vec::new(),
        substituted: HashMap::new(),
    };
    let root_span = doc.span();
    let resolution =
        super::environments::resolve(doc.get_mut(), root_span, sel.env, &set_texts, &mut cx);
    p.diags = cx.diags;
    p.substituted = cx.substituted;
    let root = Tbl {
        t: doc.get_ref(),
        span: doc.span(),
        path: String::new(),
        what: "the file".into(),
    };
    let release = p.release(&root);
    let mut diags = p.diags;
    let mut tenants = Vec::new();
    if let Some(r) = &release {
        let spans = Spans {
            root: doc.get_ref(),
            root_span: doc.span(),
            broken: p.broken,
        };
        diags.extend(super::validate::validate(r, &spans, map, base));
        if !r.tenants.is_empty()
            && let Some(u) = &resolution.for_tenants
        {
            let each = tenants::Each {
                map,
                text,
                base,
                sets: &set_texts,
                lenient_env: sel.lenient_env,
                env_values: &cx.env_values,
                // With other problems, only the tenants' variables are checked.
                vars_only: !diags.is_empty(),
            };
            let (resolved, problems) = each.resolve(r, u, &spans);
            tenants = resolved;
            diags.extend(problems);
        }
    }
    // A problem's line may hold a secret (an env value beside a bad key, a webhook URL
    // that is not http(s)): errors never show one. A table with a problem is dropped from
    // the release, so the env values read are added.
    if !diags.is_empty() {
        let mut secrets = release
            .as_ref()
            .map(crate::secrets::Secrets::from_release)
            .unwrap_or_default();
        secrets.extend(p.env_values);
        diags.iter_mut().for_each(|d| d.hide(&secrets));
    }
    diags.sort_by_key(|d| (d.line, d.col));
    diags.dedup();
    match release {
        Some(mut release) if diags.is_empty() => {
            release.env_values = cx.env_values;
            Ok(Resolved {
                release,
                environment: resolution.environment,
                environments: resolution.environments,
                vars: resolution.vars,
                tenants,
            })
        }
        _ => Err(diags),
    }
}

struct Parser<'m> {
    map: &'m SourceMap,
    diags: Vec<Diagnostic>,
    /// Paths where a problem was reported (see [`Spans::is_broken`]).
    broken: HashSet<String>,
    /// Values that are a whole variable (`"${replicas}"`): span start -> the variable.
    substituted: HashMap<usize, String>,
    /// Every `env` value read, kept even when its table is dropped for a problem: the
    /// excerpts of problems must not show them.
    env_values: Vec<String>,
}

/// A table being read, with where it is and how to name it in messages.
struct Tbl<'t, 'i> {
    t: &'t DeTable<'i>,
    span: Range<usize>,
    path: String,
    what: String,
}

impl Tbl<'_, '_> {
    fn child(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }
}

type V<'t, 'i> = &'t toml::Spanned<DeValue<'i>>;

fn article(ty: &str) -> &'static str {
    match ty {
        "integer" | "array" => "an",
        _ => "a",
    }
}

/// Where a value is, built into text only when a message needs it (a valid file formats
/// nothing: the 1,000-service benchmark depends on it).
#[derive(Clone, Copy)]
struct Loc<'a> {
    base: &'a str,
    key: &'a str,
    index: Option<usize>,
}

impl std::fmt::Display for Loc<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.base.is_empty() {
            write!(f, "{}.", self.base)?;
        }
        f.write_str(self.key)?;
        if let Some(i) = self.index {
            write!(f, "[{i}]")?;
        }
        Ok(())
    }
}

impl<'t> Tbl<'t, '_> {
    fn loc<'a>(&'a self, key: &'a str) -> Loc<'a> {
        Loc {
            base: &self.path,
            key,
            index: None,
        }
    }
}

/// How to write a value correctly, for hints: `key = example`, or a literal snippet.
#[derive(Clone, Copy)]
enum Ex<'a> {
    Assign(&'a str, &'a str),
    Literal(&'a str),
}

impl std::fmt::Display for Ex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ex::Assign(k, e) => write!(f, "{k} = {e}"),
            Ex::Literal(l) => f.write_str(l),
        }
    }
}

impl Parser<'_> {
    /// Run `f`; if it reported anything, mark the path `path()` names as broken for the
    /// later checks.
    fn track<T>(&mut self, path: impl FnOnce() -> String, f: impl FnOnce(&mut Self) -> T) -> T {
        let before = self.diags.len();
        let out = f(self);
        if self.diags.len() > before {
            self.broken.insert(path());
        }
        out
    }

    fn err(
        &mut self,
        span: Option<Range<usize>>,
        msg: impl Into<String>,
        hint: impl Into<Option<String>>,
    ) {
        self.diags.push(self.map.diagnostic(span, msg, hint.into()));
    }

    /// Report keys that the table does not accept, naming the nearest valid one.
    fn check_keys(&mut self, tbl: &Tbl, known: &[&str]) {
        for (k, _) in tbl.t.iter() {
            let key: &str = k.get_ref();
            if known.contains(&key) {
                continue;
            }
            let hint = match nearest(key, known) {
                Some(n) => format!("did you mean `{n}`?"),
                None => format!("valid keys here: {}", known.join(", ")),
            };
            self.err(
                Some(k.span()),
                format!("unknown key `{key}` in {}", tbl.what),
                hint,
            );
        }
    }

    fn get<'t, 'i>(&mut self, tbl: &Tbl<'t, 'i>, key: &str) -> Option<V<'t, 'i>> {
        tbl.t.get(key)
    }

    fn missing(&mut self, tbl: &Tbl, key: &str, example: &str) {
        self.err(
            Some(tbl.span.clone()),
            format!("missing `{key}` in {}", tbl.what),
            format!("add `{key} = {example}`"),
        );
    }

    fn wrong_type(&mut self, v: V, loc: Loc, expected: &str, ex: Ex) {
        let found = v.get_ref().type_str();
        let hint = match self.substituted.get(&v.span().start) {
            Some(var) => format!(
                "this is the value of variable `{var}`: give `{var}` {expected} (in [vars], the environment's vars or --set), or write it like `{ex}`"
            ),
            None => format!("write it like `{ex}`"),
        };
        self.err(
            Some(v.span()),
            format!("`{loc}` must be {expected}, not {} {found}", article(found)),
            hint,
        );
    }

    fn string_of(&mut self, v: V, loc: Loc, ex: Ex) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => {
                self.wrong_type(v, loc, "a string", ex);
                None
            }
        }
    }

    fn req_str(&mut self, tbl: &Tbl, key: &str, example: &str) -> Option<String> {
        match self.get(tbl, key) {
            Some(v) => self.string_of(v, tbl.loc(key), Ex::Assign(key, example)),
            None => {
                self.missing(tbl, key, example);
                None
            }
        }
    }

    fn opt_str(&mut self, tbl: &Tbl, key: &str, example: &str) -> Option<String> {
        let v = self.get(tbl, key)?;
        self.string_of(v, tbl.loc(key), Ex::Assign(key, example))
    }

    fn int_of(&mut self, v: V, loc: Loc, min: i64, max: i64, ex: Ex) -> Option<i64> {
        let n = match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
            _ => {
                self.wrong_type(v, loc, "an integer", ex);
                return None;
            }
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                let range = if max == i64::MAX {
                    format!("at least {min}")
                } else {
                    format!("{min} to {max}")
                };
                self.err(
                    Some(v.span()),
                    format!("`{loc}` must be {range}"),
                    format!("write it like `{ex}`"),
                );
                None
            }
        }
    }

    fn opt_int(&mut self, tbl: &Tbl, key: &str, min: i64, max: i64, example: &str) -> Option<i64> {
        let v = self.get(tbl, key)?;
        self.int_of(v, tbl.loc(key), min, max, Ex::Assign(key, example))
    }

    fn opt_float(
        &mut self,
        tbl: &Tbl,
        key: &str,
        min: f64,
        max: f64,
        example: &str,
    ) -> Option<f64> {
        let v = self.get(tbl, key)?;
        let loc = tbl.loc(key);
        let x = match v.get_ref() {
            DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .map(|n| n as f64),
            _ => {
                self.wrong_type(v, loc, "a number", Ex::Assign(key, example));
                return None;
            }
        };
        match x {
            Some(x) if x.is_finite() && x >= min && x <= max => Some(x),
            _ => {
                self.err(
                    Some(v.span()),
                    format!("`{loc}` must be between {min} and {max}"),
                    format!("write it like `{key} = {example}`"),
                );
                None
            }
        }
    }

    fn opt_bool(&mut self, tbl: &Tbl, key: &str) -> Option<bool> {
        let v = self.get(tbl, key)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type(v, tbl.loc(key), "true or false", Ex::Assign(key, "true"));
                None
            }
        }
    }

    fn dur_of(&mut self, v: V, loc: Loc, key: &str) -> Option<Dur> {
        let s = match v.get_ref() {
            DeValue::String(s) => s,
            DeValue::Integer(i) => {
                self.err(
                    Some(v.span()),
                    format!(
                        "`{loc}` must be a duration string with a unit, not the bare number {}",
                        i.as_str()
                    ),
                    format!("write it like `{key} = \"{}s\"`", i.as_str()),
                );
                return None;
            }
            _ => {
                self.wrong_type(v, loc, "a duration string", Ex::Assign(key, "\"30s\""));
                return None;
            }
        };
        match parse_duration(s) {
            Ok(d) => Some(Dur(d)),
            Err(e) => {
                self.err(
                    Some(v.span()),
                    format!("`{loc}` is not a valid duration: {e}"),
                    "durations are a number with a unit: \"500ms\", \"30s\", \"5m\", \"1h\""
                        .to_string(),
                );
                None
            }
        }
    }

    fn opt_dur(&mut self, tbl: &Tbl, key: &str) -> Option<Dur> {
        let v = self.get(tbl, key)?;
        self.dur_of(v, tbl.loc(key), key)
    }

    /// An approval's `approvers` (an approval step's, a `[tenant.approval]`'s): operators
    /// or `group:NAME`; a name that names nobody is reported in `what`.
    fn approvers(&mut self, tbl: &Tbl, what: &str) -> Vec<String> {
        let approvers = self
            .opt_str_list(tbl, "approvers", "[\"alice\", \"group:dba\"]")
            .unwrap_or_default();
        if let Some(bad) = approvers
            .iter()
            .find(|a| a.trim().is_empty() || a.trim() == "group:")
        {
            self.err(
                tbl.t.get("approvers").map(|v| v.span()),
                format!("`{bad}` in the approvers of {what} names nobody"),
                "write an operator's name or group:NAME of the policy's [roster]".to_string(),
            );
        }
        approvers
    }

    fn opt_str_list(&mut self, tbl: &Tbl, key: &str, example: &str) -> Option<Vec<String>> {
        let v = self.get(tbl, key)?;
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong_type(
                v,
                tbl.loc(key),
                "an array of strings",
                Ex::Assign(key, example),
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.into_iter().enumerate() {
            let loc = Loc {
                index: Some(i),
                ..tbl.loc(key)
            };
            match self.string_of(item, loc, Ex::Assign(key, example)) {
                Some(s) => out.push(s),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// An optional table of string values (`env = { A = "b" }`); every non-string value is
    /// reported at its own place.
    fn str_map(&mut self, tbl: &Tbl, key: &str, example: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if let Some(et) = self.opt_table(tbl, key, || format!("`{}`", tbl.child(key))) {
            for (k, v) in et.t.iter() {
                if let Some(s) = self.string_of(v, et.loc(k.get_ref()), Ex::Literal(example)) {
                    out.insert(k.get_ref().to_string(), s);
                }
            }
        }
        out
    }

    fn enum_of<T: Copy>(
        &mut self,
        tbl: &Tbl,
        key: &str,
        names: &[&str],
        values: &[T],
    ) -> Option<T> {
        let v = self.get(tbl, key)?;
        let loc = tbl.loc(key);
        let DeValue::String(s) = v.get_ref() else {
            let example = format!("\"{}\"", names[0]);
            self.wrong_type(v, loc, "a string", Ex::Assign(key, &example));
            return None;
        };
        match names.iter().position(|n| *n == s.as_ref()) {
            Some(i) => Some(values[i]),
            None => {
                let hint = match nearest(s, names) {
                    Some(n) => format!("did you mean \"{n}\"? valid values: {}", quoted(names)),
                    None => format!("valid values: {}", quoted(names)),
                };
                self.err(
                    Some(v.span()),
                    format!("unknown {key} \"{s}\" in `{loc}`"),
                    hint,
                );
                None
            }
        }
    }

    /// The sub-table at `key`; `what` names it in messages and is built only if it exists.
    fn opt_table<'t, 'i>(
        &mut self,
        tbl: &Tbl<'t, 'i>,
        key: &str,
        what: impl FnOnce() -> String,
    ) -> Option<Tbl<'t, 'i>> {
        let v = self.get(tbl, key)?;
        let path = tbl.loc(key).to_string();
        match v.get_ref() {
            DeValue::Table(t) => Some(Tbl {
                t,
                span: v.span(),
                path,
                what: what(),
            }),
            _ => {
                let example = format!("[{path}]");
                self.wrong_type(v, tbl.loc(key), "a table", Ex::Literal(&example));
                None
            }
        }
    }

    fn table_array<'t, 'i>(
        &mut self,
        tbl: &Tbl<'t, 'i>,
        key: &str,
        what: impl FnOnce() -> String,
    ) -> Vec<Tbl<'t, 'i>> {
        let Some(v) = self.get(tbl, key) else {
            return Vec::new();
        };
        let path = tbl.loc(key).to_string();
        let example = format!("[[{path}]]");
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong_type(v, tbl.loc(key), "an array of tables", Ex::Literal(&example));
            return Vec::new();
        };
        let what = what();
        let mut out = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let loc = Loc {
                index: Some(i),
                ..tbl.loc(key)
            };
            match item.get_ref() {
                DeValue::Table(t) => out.push(Tbl {
                    t,
                    span: item.span(),
                    path: loc.to_string(),
                    what: format!("{what} #{}", i + 1),
                }),
                _ => self.wrong_type(item, loc, "a table", Ex::Literal(&example)),
            }
        }
        out
    }

    // ---- the release's own structure ----

    fn release(&mut self, root: &Tbl) -> Option<Release> {
        self.check_keys(root, keys::TOP);
        let section = match self.opt_table(root, "release", || "[release]".into()) {
            Some(t) => Some(self.release_section(&t)),
            None => {
                if root.t.get("release").is_none() {
                    self.err(
                        None,
                        "missing the [release] table",
                        "start the file with `[release]` and `name = \"...\"`".to_string(),
                    );
                }
                None
            }
        };
        let notify = self
            .opt_table(root, "notify", || "[notify]".into())
            .map(|t| {
                self.check_keys(&t, keys::NOTIFY);
                Notify {
                    webhooks: self
                        .opt_str_list(&t, "webhooks", "[\"http://127.0.0.1:9099/hook\"]")
                        .unwrap_or_default(),
                    grafana: self
                        .opt_table(&t, "grafana", || "[notify.grafana]".into())
                        .map(|g| self.grafana(&g)),
                }
            });
        let metrics = self.track(
            || "metrics".into(),
            |p| {
                p.opt_table(root, "metrics", || "[metrics]".into())
                    .map(|t| p.metrics(&t))
            },
        );
        let services = self
            .table_array(root, "service", || "[[service]]".into())
            .into_iter()
            .map(|t| self.service(t))
            .collect();
        let migrations = self
            .table_array(root, "migration", || "[[migration]]".into())
            .into_iter()
            .map(|t| self.migration(t))
            .collect();
        let freeze = self
            .table_array(root, "freeze", || "[[freeze]]".into())
            .into_iter()
            .map(|t| self.freeze(t))
            .collect();
        let flags = self.track(|| "flags".into(), |p| p.flags_section(root));
        let tenants = self
            .table_array(root, "tenant", || "[[tenant]]".into())
            .into_iter()
            .map(|t| self.tenant(t))
            .collect();
        let rings = self
            .table_array(root, "ring", || "[[ring]]".into())
            .into_iter()
            .map(|t| self.ring(t))
            .collect();
        Some(Release {
            release: section?,
            notify,
            metrics,
            services,
            migrations,
            freeze,
            flags,
            tenants,
            rings,
            env_values: Vec::new(),
        })
    }

    fn release_section(&mut self, t: &Tbl) -> ReleaseSection {
        self.check_keys(t, keys::RELEASE);
        let name = self.track(
            || t.child("name"),
            |p| p.req_str(t, "name", "\"checkout-2026-11-27\""),
        );
        let platform = self
            .enum_of(
                t,
                "platform",
                PlatformKind::NAMES,
                &[PlatformKind::Local, PlatformKind::Ecs],
            )
            .unwrap_or_default();
        let max_parallel = self
            .opt_int(t, "max_parallel", 1, 10_000, "2")
            .map_or(default_max_parallel(), |n| n as u32);
        let on_failure = self
            .enum_of(
                t,
                "on_failure",
                FailurePolicy::NAMES,
                &[
                    FailurePolicy::RollbackDependents,
                    FailurePolicy::RollbackRelease,
                    FailurePolicy::Pause,
                ],
            )
            .unwrap_or_default();
        let progress_deadline = self
            .opt_dur(t, "progress_deadline")
            .unwrap_or_else(default_progress_deadline);
        let environment = self.opt_str(t, "environment", "\"production\"");
        let pin_secret = self.opt_str(t, "pin_secret", "\"env:CUTOVER_PIN_SECRET\"");
        let metrics_listen = self.opt_str(t, "metrics_listen", "\"127.0.0.1:9464\"");
        let change = self.opt_str(t, "change", "\"CHG-1234\"");
        let failure_budget = self.track(|| t.child("failure_budget"), |p| p.failure_budget(t));
        ReleaseSection {
            name: name.unwrap_or_default(),
            platform,
            max_parallel,
            on_failure,
            progress_deadline,
            environment,
            pin_secret,
            metrics_listen,
            change,
            failure_budget,
        }
    }

    /// A service, best effort: a part that could not be read is reported, replaced by its
    /// default and marked broken so that whole-release checks do not report it again.
    fn service(&mut self, mut t: Tbl) -> Service {
        // Name the service in messages once we know its name.
        if let Some(DeValue::String(n)) = t.t.get("name").map(|v| v.get_ref()) {
            t.what = format!("[[service]] \"{n}\"");
        }
        let t = &t;
        self.check_keys(t, keys::SERVICE);
        let name = self
            .track(|| t.child("name"), |p| p.req_str(t, "name", "\"payments\""))
            .unwrap_or_default();
        let depends_on = self
            .track(
                || t.child("depends_on"),
                |p| p.opt_str_list(t, "depends_on", "[\"ledger\"]"),
            )
            .unwrap_or_default();
        let strategy = self.track(
            || t.child("strategy"),
            |p| {
                if t.t.get("strategy").is_some() {
                    p.enum_of(
                        t,
                        "strategy",
                        StrategyKind::NAMES,
                        &[
                            StrategyKind::BlueGreen,
                            StrategyKind::Canary,
                            StrategyKind::Linear,
                            StrategyKind::Rolling,
                        ],
                    )
                } else {
                    p.missing(t, "strategy", "\"canary\"");
                    None
                }
            },
        );
        if strategy.is_none() {
            self.broken.insert(t.child("strategy"));
        }
        let steps = self.track(|| t.child("steps"), |p| p.steps(t));
        let linear = self.track(
            || t.child("linear"),
            |p| {
                let lt =
                    p.opt_table(t, "linear", || format!("the linear settings of {}", t.what))?;
                p.check_keys(&lt, keys::LINEAR);
                let step = p.opt_int(&lt, "step", 1, 100, "10").map(|n| n as u8);
                if lt.t.get("step").is_none() {
                    p.missing(&lt, "step", "10");
                }
                let every = p.opt_dur(&lt, "every");
                if lt.t.get("every").is_none() {
                    p.missing(&lt, "every", "\"1m\"");
                }
                Some(Linear {
                    step: step?,
                    every: every?,
                })
            },
        );
        let blue_green = self.track(
            || t.child("blue_green"),
            |p| {
                p.opt_table(t, "blue_green", || {
                    format!("the blue_green settings of {}", t.what)
                })
                .map(|bt| {
                    p.check_keys(&bt, keys::BLUE_GREEN);
                    BlueGreen {
                        keep_old_for: p
                            .opt_dur(&bt, "keep_old_for")
                            .unwrap_or_else(default_keep_old_for),
                        auto_promote: p.opt_bool(&bt, "auto_promote").unwrap_or(true),
                    }
                })
            },
        );
        let rolling = self.track(
            || t.child("rolling"),
            |p| {
                p.opt_table(t, "rolling", || {
                    format!("the rolling settings of {}", t.what)
                })
                .map(|rt| {
                    p.check_keys(&rt, keys::ROLLING);
                    Rolling {
                        batch: p
                            .opt_int(&rt, "batch", 1, 10_000, "1")
                            .map_or(1, |n| n as u32),
                        max_unavailable: p
                            .opt_int(&rt, "max_unavailable", 0, 10_000, "0")
                            .map_or(0, |n| n as u32),
                    }
                })
            },
        );
        let health = self.track(
            || t.child("health"),
            |p| match p.opt_table(t, "health", || format!("[service.health] of {}", t.what)) {
                Some(ht) => p.health(&ht),
                None => Health::default(),
            },
        );
        let smoke = self.track(
            || t.child("smoke"),
            |p| {
                let tables =
                    p.table_array(t, "smoke", || format!("[[service.smoke]] of {}", t.what));
                tables
                    .iter()
                    .map(|st| p.track(|| st.path.clone(), |p| p.smoke(st)))
                    .collect()
            },
        );
        let analysis = self.track(
            || t.child("analysis"),
            |p| {
                p.opt_table(t, "analysis", || {
                    format!("[service.analysis] of {}", t.what)
                })
                .map(|at| p.analysis(&at))
            },
        );
        let local = self.track(
            || t.child("local"),
            |p| {
                p.opt_table(t, "local", || format!("[service.local] of {}", t.what))
                    .and_then(|lt| p.local(&lt))
            },
        );
        let ecs = self.track(
            || t.child("ecs"),
            |p| {
                p.opt_table(t, "ecs", || format!("[service.ecs] of {}", t.what))
                    .and_then(|et| p.ecs(&et))
            },
        );
        Service {
            name,
            depends_on,
            strategy: strategy.unwrap_or(StrategyKind::Canary),
            steps,
            linear,
            blue_green,
            rolling,
            health,
            smoke,
            analysis,
            local,
            ecs,
        }
    }

    fn steps(&mut self, t: &Tbl) -> Vec<Step> {
        let Some(v) = self.get(t, "steps") else {
            return Vec::new();
        };
        let path = t.child("steps");
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong_type(
                v,
                t.loc("steps"),
                "an array of steps",
                Ex::Literal("steps = [{ set_weight = 5 }, { analysis = \"2m\" }]"),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let ipath = format!("{path}[{i}]");
            let DeValue::Table(st) = item.get_ref() else {
                let loc = Loc {
                    index: Some(i),
                    ..t.loc("steps")
                };
                self.wrong_type(item, loc, "a step table", Ex::Literal("{ set_weight = 5 }"));
                continue;
            };
            let tbl = Tbl {
                t: st,
                span: item.span(),
                path: ipath.clone(),
                what: format!("step {} of {}", i + 1, t.what),
            };
            self.check_keys(&tbl, STEP_KEYS);
            let kinds: Vec<&str> = ["set_weight", "analysis", "pause", "approval"]
                .into_iter()
                .filter(|k| st.get(*k).is_some())
                .collect();
            if kinds.len() != 1 {
                let msg = if kinds.is_empty() {
                    format!("step {} of {} does nothing", i + 1, t.what)
                } else {
                    format!("step {} of {} mixes {}", i + 1, t.what, kinds.join(" and "))
                };
                self.err(
                    Some(item.span()),
                    msg,
                    "each step has exactly one of set_weight, analysis, pause, approval: split it into several steps"
                        .to_string(),
                );
                continue;
            }
            if st.get("approvals").is_some() && kinds[0] != "approval" {
                self.err(
                    st.get("approvals").map(|v| v.span()).or(Some(item.span())),
                    format!("`approvals` in step {} belongs to an approval step", i + 1),
                    "remove it, or make the step `{ approval = \"10m\", approvals = 2 }`"
                        .to_string(),
                );
            }
            for key in ["approvers", "four_eyes"] {
                if st.get(key).is_some() && kinds[0] != "approval" {
                    self.err(
                        st.get(key).map(|v| v.span()).or(Some(item.span())),
                        format!("`{key}` in step {} belongs to an approval step", i + 1),
                        "remove it, or make the step `{ approval = \"10m\", approvers = [\"group:dba\"], four_eyes = true }`".to_string(),
                    );
                }
            }
            if st.get("on_timeout").is_some() && kinds[0] != "approval" {
                self.err(
                    st.get("on_timeout").map(|v| v.span()).or(Some(item.span())),
                    format!("`on_timeout` in step {} belongs to an approval step", i + 1),
                    "remove it, or make the step `{ approval = \"10m\", on_timeout = \"rollback\" }`".to_string(),
                );
            }
            let step = match kinds[0] {
                "set_weight" => {
                    let Some(wv) = self.get(&tbl, "set_weight") else {
                        continue;
                    };
                    self.int_of(
                        wv,
                        tbl.loc("set_weight"),
                        0,
                        i64::MAX,
                        Ex::Literal("{ set_weight = 25 }"),
                    )
                    .and_then(|w| {
                        if w > 100 {
                            self.err(
                                Some(wv.span()),
                                format!("weight {w} in step {} of {} is above 100", i + 1, t.what),
                                "weights are percentages of traffic, 0-100".to_string(),
                            );
                            None
                        } else {
                            Some(Step::SetWeight(w as u8))
                        }
                    })
                }
                "analysis" => self.opt_dur(&tbl, "analysis").map(Step::Analysis),
                "pause" => {
                    let Some(pv) = self.get(&tbl, "pause") else {
                        continue;
                    };
                    if let DeValue::String(s) = pv.get_ref()
                        && s.as_ref() == "forever"
                    {
                        Some(Step::Pause(PauseFor::Forever))
                    } else {
                        self.dur_of(pv, tbl.loc("pause"), "pause")
                            .map(|d| Step::Pause(PauseFor::For(d)))
                    }
                }
                _ => {
                    let timeout = self.opt_dur(&tbl, "approval");
                    let on_timeout = self
                        .enum_of(
                            &tbl,
                            "on_timeout",
                            OnTimeout::NAMES,
                            &[OnTimeout::Rollback, OnTimeout::Promote, OnTimeout::Pause],
                        )
                        .unwrap_or_default();
                    let approvals = match st.get("approvals") {
                        None => Some(1),
                        Some(av) => self
                            .int_of(
                                av,
                                tbl.loc("approvals"),
                                1,
                                i64::from(crate::release::model::MAX_APPROVALS),
                                Ex::Literal("{ approval = \"10m\", approvals = 2 }"),
                            )
                            .map(|n| n as u32),
                    };
                    let approvers = self.approvers(&tbl, &format!("step {} of {}", i + 1, t.what));
                    let four_eyes = self.opt_bool(&tbl, "four_eyes").unwrap_or(false);
                    timeout
                        .zip(approvals)
                        .map(|(timeout, approvals)| Step::Approval {
                            timeout,
                            on_timeout,
                            approvals,
                            approvers,
                            four_eyes,
                        })
                }
            };
            if let Some(s) = step {
                out.push(s);
            }
        }
        out
    }

    fn health(&mut self, t: &Tbl) -> Health {
        self.check_keys(t, keys::HEALTH);
        let d = Health::default();
        Health {
            path: self.opt_str(t, "path", "\"/healthz\"").unwrap_or(d.path),
            interval: self.opt_dur(t, "interval").unwrap_or(d.interval),
            timeout: self.opt_dur(t, "timeout").unwrap_or(d.timeout),
            healthy_after: self
                .opt_int(t, "healthy_after", 1, 1000, "2")
                .map_or(d.healthy_after, |n| n as u32),
            unhealthy_after: self
                .opt_int(t, "unhealthy_after", 1, 1000, "3")
                .map_or(d.unhealthy_after, |n| n as u32),
        }
    }

    fn grafana(&mut self, t: &Tbl) -> GrafanaNotify {
        self.check_keys(t, keys::GRAFANA);
        GrafanaNotify {
            url: self
                .req_str(t, "url", "\"https://grafana.example.com\"")
                .unwrap_or_default(),
            token: self
                .req_str(t, "token", "\"env:GRAFANA_TOKEN\"")
                .unwrap_or_default(),
            dashboard_uid: self.opt_str(t, "dashboard_uid", "\"cutover-releases\""),
            tags: self
                .opt_str_list(t, "tags", "[\"payments\"]")
                .unwrap_or_default(),
        }
    }

    fn smoke(&mut self, t: &Tbl) -> Smoke {
        self.check_keys(t, keys::SMOKE);
        self.smoke_fields(t)
    }

    /// A smoke test's fields (`[[service.smoke]]`, `[[tenant.smoke]]`), keys checked by the caller.
    fn smoke_fields(&mut self, t: &Tbl) -> Smoke {
        Smoke {
            name: self.req_str(t, "name", "\"ping\"").unwrap_or_default(),
            request: self.opt_str(t, "request", "\"GET /api/ping\""),
            expect_status: self
                .opt_int(t, "expect_status", 100, 599, "200")
                .map_or(200, |n| n as u16),
            command: self.opt_str_list(t, "command", "[\"./smoke.sh\", \"{url}\"]"),
            timeout: self
                .opt_dur(t, "timeout")
                .unwrap_or_else(default_smoke_timeout),
        }
    }

    fn analysis(&mut self, t: &Tbl) -> Analysis {
        self.check_keys(t, keys::ANALYSIS);
        let d = Analysis::default();
        Analysis {
            judge: self
                .enum_of(
                    t,
                    "judge",
                    JudgeKind::NAMES,
                    &[JudgeKind::Sequential, JudgeKind::Threshold],
                )
                .unwrap_or_default(),
            tolerance: self
                .opt_float(t, "tolerance", 1.0, 1000.0, "1.25")
                .unwrap_or(d.tolerance),
            min_requests: self
                .opt_int(t, "min_requests", 0, i64::MAX, "500")
                .map_or(d.min_requests, |n| n as u64),
            min_duration: self.opt_dur(t, "min_duration").unwrap_or(d.min_duration),
            max_error_rate: self
                .opt_float(t, "max_error_rate", 0.0, 1.0, "0.05")
                .unwrap_or(d.max_error_rate),
            max_p99: self.opt_dur(t, "max_p99"),
            alpha: self
                .opt_float(t, "alpha", 0.000_001, 0.5, "0.01")
                .unwrap_or(d.alpha),
            failure_limit: self
                .opt_int(t, "failure_limit", 0, 1000, "0")
                .map_or(0, |n| n as u32),
            bursty: self.opt_bool(t, "bursty").unwrap_or(false),
            on_inconclusive: self
                .enum_of(
                    t,
                    "on_inconclusive",
                    OnInconclusive::NAMES,
                    &[OnInconclusive::Pause, OnInconclusive::Extend],
                )
                .unwrap_or_default(),
            prometheus: self.track(
                || t.child("prometheus"),
                |p| {
                    p.opt_table(t, "prometheus", || {
                        format!("[service.analysis.prometheus] of {}", t.what)
                    })
                    .map(|pt| p.prometheus_queries(&pt))
                },
            ),
        }
    }

    fn revision(&mut self, t: &Tbl, key: &str) -> Option<RevisionRun> {
        let Some(rt) = self.opt_table(t, key, || format!("`{}`", t.child(key))) else {
            if t.t.get(key).is_none() {
                self.missing(t, key, "{ revision = \"v1\" }");
            }
            return None;
        };
        self.check_keys(&rt, keys::REVISION);
        let revision = self.req_str(&rt, "revision", "\"v2\"");
        let args = self
            .opt_str_list(&rt, "args", "[\"--error-rate\", \"0.02\"]")
            .unwrap_or_default();
        let env = self.str_map(&rt, "env", "env = { FEATURE_X = \"on\" }");
        self.env_values.extend(env.values().cloned());
        Some(RevisionRun {
            revision: revision?,
            args,
            env,
        })
    }

    fn local(&mut self, t: &Tbl) -> Option<LocalService> {
        self.check_keys(t, keys::LOCAL);
        let before = self.diags.len();
        let listen = self.req_str(t, "listen", "\"127.0.0.1:18081\"");
        let replicas = self
            .opt_int(t, "replicas", 1, 1000, "2")
            .map_or(1, |n| n as u32);
        let command = self.opt_str_list(
            t,
            "command",
            "[\"cutover\", \"demo-service\", \"--port\", \"{port}\"]",
        );
        if t.t.get("command").is_none() {
            self.missing(t, "command", "[\"./my-service\", \"--port\", \"{port}\"]");
        }
        let current = self.revision(t, "current");
        let target = self.revision(t, "target");
        let drain_timeout = self
            .opt_dur(t, "drain_timeout")
            .unwrap_or_else(default_drain_timeout);
        if self.diags.len() > before {
            return None;
        }
        Some(LocalService {
            listen: listen?,
            replicas,
            command: command?,
            current: current?,
            target: target?,
            drain_timeout,
        })
    }

    fn ecs(&mut self, t: &Tbl) -> Option<EcsService> {
        self.check_keys(t, keys::ECS);
        let cluster = self.req_str(t, "cluster", "\"prod\"");
        let service = self.req_str(t, "service", "\"payments\"");
        let container = self.req_str(t, "container", "\"app\"");
        let image = self.req_str(
            t,
            "image",
            "\"123456789012.dkr.ecr.us-east-1.amazonaws.com/payments:2.3.1\"",
        );
        let listener_rule =
            self.opt_str(t, "listener_rule", "\"arn:aws:elasticloadbalancing:...\"");
        let target_groups = self
            .opt_str_list(
                t,
                "target_groups",
                "[\"arn:...:targetgroup/blue/...\", \"arn:...:targetgroup/green/...\"]",
            )
            .unwrap_or_default();
        let secrets = self
            .opt_str_list(t, "secrets", "[\"arn:aws:secretsmanager:...\"]")
            .unwrap_or_default();
        let region = self.opt_str(t, "region", "\"us-east-1\"");
        let test_listener_rule = self.opt_str(
            t,
            "test_listener_rule",
            "\"arn:aws:elasticloadbalancing:...:listener-rule/...\"",
        );
        let url = self.opt_str(t, "url", "\"https://api.example.com\"");
        let desired_count = self
            .opt_int(t, "desired_count", 1, 5000, "2")
            .map(|n| n as u32);
        let env = self.str_map(t, "env", "env = { LOG_LEVEL = \"info\" }");
        self.env_values.extend(env.values().cloned());
        let secret_env = self.str_map(
            t,
            "secret_env",
            "secret_env = { DB_PASSWORD = \"arn:aws:secretsmanager:...\" }",
        );
        let cpu = self.opt_str(t, "cpu", "\"256\"");
        let memory = self.opt_str(t, "memory", "\"512\"");
        // Optional values that failed are left out (and reported); the section stays, so
        // validation still checks every value that was read.
        Some(EcsService {
            cluster: cluster?,
            service: service?,
            container: container?,
            image: image?,
            listener_rule,
            target_groups,
            secrets,
            region,
            test_listener_rule,
            url,
            desired_count,
            env,
            secret_env,
            cpu,
            memory,
        })
    }

    fn freeze(&mut self, mut t: Tbl) -> Freeze {
        if let Some(DeValue::String(n)) = t.t.get("name").map(|v| v.get_ref()) {
            t.what = format!("[[freeze]] \"{n}\"");
        }
        let t = &t;
        self.check_keys(t, keys::FREEZE);
        let req = |p: &mut Self, key: &str, example: &str| {
            p.track(|| t.child(key), |p| p.req_str(t, key, example))
                .unwrap_or_default()
        };
        let name = req(self, "name", "\"year-end\"");
        let cron = req(self, "cron", "\"0 18 * * 5\"");
        let timezone = req(self, "timezone", "\"Europe/Berlin\"");
        if t.t.get("duration").is_none() {
            self.missing(t, "duration", "\"64h\"");
        }
        let duration = self.opt_dur(t, "duration").unwrap_or_default();
        let environments = self
            .opt_str_list(t, "environments", "[\"production\"]")
            .unwrap_or_default();
        let tenant_tags = self
            .opt_str_list(t, "tenant_tags", "[\"tier/gold\"]")
            .unwrap_or_default();
        Freeze {
            name,
            cron,
            duration,
            timezone,
            environments,
            tenant_tags,
        }
    }

    fn migration(&mut self, mut t: Tbl) -> Migration {
        if let Some(DeValue::String(n)) = t.t.get("name").map(|v| v.get_ref()) {
            t.what = format!("[[migration]] \"{n}\"");
        }
        let t = &t;
        self.check_keys(t, keys::MIGRATION);
        let field = |p: &mut Self, key: &str, example: &str, required: bool| {
            p.track(
                || t.child(key),
                |p| {
                    if required {
                        p.req_str(t, key, example)
                    } else {
                        p.opt_str(t, key, example)
                    }
                },
            )
        };
        let name = field(self, "name", "\"split-customer-name\"", true).unwrap_or_default();
        let database =
            field(self, "database", "\"sqlite://data/app.db\"", true).unwrap_or_default();
        let expand = field(self, "expand", "\"migrations/0007_expand.sql\"", true);
        let contract = field(self, "contract", "\"migrations/0007_contract.sql\"", false);
        let undo_expand = field(
            self,
            "undo_expand",
            "\"migrations/0007_undo_expand.sql\"",
            false,
        );
        if expand.is_none() {
            self.broken.insert(t.child("expand"));
        }
        let services = self.track(
            || t.child("services"),
            |p| {
                if t.t.get("services").is_none() {
                    p.missing(t, "services", "[\"payments\"]");
                }
                p.opt_str_list(t, "services", "[\"payments\"]")
            },
        );
        let bake = self.opt_dur(t, "bake").unwrap_or_else(default_bake);
        Migration {
            name,
            database,
            expand: expand.unwrap_or_default(),
            contract,
            undo_expand,
            services: services.unwrap_or_default(),
            bake,
        }
    }
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}
