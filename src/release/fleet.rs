//! A release with tenants: the checks across `[[tenant]]`, `[[ring]]`, `[flags]` and
//! `failure_budget`, and each tenant's own resolved release.
//!
//! **Each tenant's release.** The release is resolved once per tenant, on the same spanned
//! tree (so a problem is still located in the file, and named after the tenant): variables
//! are `[vars]`, then the environment's `vars` (`--env`), then the tenant's `vars`, then
//! `--set` (the command line overrides everything, as everywhere else; a `--set` of a
//! variable tenants set gives every tenant the same value, which the check of listen
//! addresses across tenants then reports on the local platform). A tenant may only set
//! variables `[vars]` declares, with the declared type. The tenant's `[[tenant.smoke]]`
//! tests are appended to its service's smoke tests, and its `[tenant.analysis]` bounds
//! replace each service's where they are stricter (validation refuses looser ones). The
//! approval gate stays with the tenant (`Tenant::approval`): it opens before the tenant's
//! first service starts.
//!
//! `${name}` inside `[[tenant]]` and `[[ring]]` tables is replaced with the release's
//! variables (not the tenant's own).

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::Path;

use toml::de::DeTable;

use super::diagnostic::{Diagnostic, SourceMap, nearest};
use super::model::*;
use super::parse::Spans;
use super::tenants::{self, Selector, Tenant};
use super::vars::Vars;

/// One tenant's release: every service of the release, resolved with the tenant's
/// variables, its extra smoke tests and its analysis bounds. It has no tenants, rings,
/// flags or failure budget of its own.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantRelease {
    pub name: String,
    pub release: Release,
}

/// What each tenant's resolution starts from: the document after the environment's
/// overlays and before `${name}` is replaced (without the fleet's own tables), and the
/// variables before `--set`.
#[derive(Debug, Clone)]
pub(crate) struct Unresolved<'i> {
    pub tree: DeTable<'i>,
    pub vars: Vars<'i>,
    /// Where an undeclared `--set` is reported.
    pub undeclared_at: Option<Range<usize>>,
}

impl<'i> Unresolved<'i> {
    pub(crate) fn new(
        root: &DeTable<'i>,
        vars: Vars<'i>,
        undeclared_at: Option<Range<usize>>,
    ) -> Self {
        let mut tree = DeTable::new();
        for (k, v) in root.iter() {
            if matches!(k.get_ref().as_ref(), "tenant" | "ring" | "flags") {
                continue;
            }
            let mut v = v.clone();
            if k.get_ref().as_ref() == "release"
                && let toml::de::DeValue::Table(t) = v.get_mut()
            {
                t.remove("failure_budget");
            }
            tree.insert(k.clone(), v);
        }
        Unresolved {
            tree,
            vars,
            undeclared_at,
        }
    }
}

/// The release as one tenant runs it, before that tenant's own settings: no fleet tables.
pub(crate) fn single(base: &Release) -> Release {
    let mut r = Release {
        flags: None,
        tenants: Vec::new(),
        rings: Vec::new(),
        ..base.clone_without_fleet()
    };
    r.release.failure_budget = None;
    r
}

impl Release {
    /// A copy without tenants, rings and flags (cheap with a thousand tenants).
    fn clone_without_fleet(&self) -> Release {
        Release {
            release: self.release.clone(),
            notify: self.notify.clone(),
            metrics: self.metrics.clone(),
            services: self.services.clone(),
            migrations: self.migrations.clone(),
            freeze: self.freeze.clone(),
            flags: None,
            tenants: Vec::new(),
            rings: Vec::new(),
            env_values: self.env_values.clone(),
        }
    }
}

/// Fold a tenant's validation settings into its release: extra smoke tests after the
/// service's own, and analysis bounds where they are stricter.
pub(crate) fn fold(tenant: &Tenant, release: &mut Release) {
    for s in &tenant.smoke {
        if let Some(svc) = release.services.iter_mut().find(|x| x.name == s.service) {
            svc.smoke.push(s.to_smoke());
        }
    }
    if let Some(a) = &tenant.analysis {
        for svc in &mut release.services {
            if let Some(sa) = svc.analysis.as_mut() {
                if let Some(t) = a.tolerance {
                    sa.tolerance = sa.tolerance.min(t);
                }
                if let Some(e) = a.max_error_rate {
                    sa.max_error_rate = sa.max_error_rate.min(e);
                }
                if let Some(p) = a.max_p99 {
                    sa.max_p99 = Some(sa.max_p99.map_or(p, |x| x.min(p)));
                }
            }
        }
    }
}

/// Every problem of the fleet's tables in a structurally sound release (nothing when it
/// has no tenants, rings, flags or budget).
pub fn check(r: &Release, spans: &Spans, map: &SourceMap, base: &Path) -> Vec<Diagnostic> {
    let mut c = Checker {
        spans,
        map,
        diags: Vec::new(),
    };
    if r.tenants.is_empty() && r.rings.is_empty() && r.flags.is_none() {
        if r.release.failure_budget.is_some() {
            c.at(
                "release.failure_budget",
                "failure_budget counts failed tenants, and this release has no [[tenant]]",
                "remove it, or add `[[tenant]]` tables and `[[ring]]`s that select them",
            );
        }
        return c.diags;
    }
    c.names(r);
    c.rings(r);
    c.budget(r);
    c.validation(r);
    c.flags(r, base);
    c.migrations(r);
    c.diags
}

struct Checker<'a> {
    spans: &'a Spans<'a, 'a>,
    map: &'a SourceMap,
    diags: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn at(&mut self, path: &str, msg: impl Into<String>, hint: impl Into<String>) {
        let span = self.spans.nearest(path);
        self.diags
            .push(self.map.diagnostic(span, msg, Some(hint.into())));
    }

    fn broken(&self, path: &str) -> bool {
        self.spans.any_broken() && self.spans.is_broken(path)
    }

    fn line_of(&self, path: &str) -> usize {
        self.spans
            .nearest(path)
            .map_or(1, |s| self.map.position(s.start).0)
    }

    /// The engine runs a release's `[[migration]]`s once, against one database, and a
    /// release with tenants has one instance (and database) per tenant: refused, at the
    /// first migration.
    fn migrations(&mut self, r: &Release) {
        if r.tenants.is_empty() || r.migrations.is_empty() || self.broken("migration[0].name") {
            return;
        }
        self.at(
            "migration[0].name",
            format!(
                "this release has {} tenant(s) and [[migration]] \"{}\": cutover runs a release's migrations once, not per tenant",
                r.tenants.len(),
                r.migrations[0].name
            ),
            "run the migration in a release of its own, without [[tenant]], once for each tenant's database (its URL in a variable), then deploy this release without the [[migration]]",
        );
    }

    /// Tenant and ring names: valid, unique.
    fn names(&mut self, r: &Release) {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, t) in r.tenants.iter().enumerate() {
            if self.broken(&format!("tenant[{i}].name")) {
                continue;
            }
            if !tenants::is_tenant_name(&t.name) {
                self.at(
                    &format!("tenant[{i}].name"),
                    format!("tenant name \"{}\" is not valid", t.name),
                    "use 1-63 letters, digits, `-`, `_` and `.` (it names the tenant's services as TENANT/SERVICE)",
                );
                continue;
            }
            if let Some(&j) = seen.get(t.name.as_str()) {
                let line = self.line_of(&format!("tenant[{j}].name"));
                self.at(
                    &format!("tenant[{i}].name"),
                    format!("two tenants are named \"{}\"", t.name),
                    format!("the first is on line {line}; tenant names are unique in a release"),
                );
            } else {
                seen.insert(&t.name, i);
            }
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, ring) in r.rings.iter().enumerate() {
            if self.broken(&format!("ring[{i}].name")) {
                continue;
            }
            if ring.name.trim().is_empty() {
                self.at(
                    &format!("ring[{i}].name"),
                    "a ring's name is empty",
                    "name it, e.g. `name = \"early\"`",
                );
            } else if let Some(&j) = seen.get(ring.name.as_str()) {
                let line = self.line_of(&format!("ring[{j}].name"));
                self.at(
                    &format!("ring[{i}].name"),
                    format!("two rings are named \"{}\"", ring.name),
                    format!("the first is on line {line}; ring names are unique in a release"),
                );
            } else {
                seen.insert(&ring.name, i);
            }
        }
    }

    /// Selectors name known tenants and tags; every ring selects someone; every tenant is
    /// in a ring.
    fn rings(&mut self, r: &Release) {
        if r.rings.is_empty() {
            if !r.tenants.is_empty() && !self.broken("ring") {
                self.at(
                    "tenant[0]",
                    format!(
                        "this release has {} tenant(s) but no [[ring]] to deploy them in",
                        r.tenants.len()
                    ),
                    "add `[[ring]]` with `name = \"all\"` and `select = [\"tag:...\"]` or the tenants' names",
                );
            }
            return;
        }
        if r.tenants.is_empty() {
            self.at(
                "ring[0]",
                "this release has rings but no [[tenant]]",
                "add `[[tenant]]` tables with `name = \"...\"`, or remove the rings",
            );
            return;
        }
        let names: Vec<&str> = r.tenants.iter().map(|t| t.name.as_str()).collect();
        let mut tags: Vec<&str> = r
            .tenants
            .iter()
            .flat_map(|t| t.tags.iter().map(String::as_str))
            .collect();
        tags.sort_unstable();
        tags.dedup();
        let name_set: std::collections::HashSet<&str> = names.iter().copied().collect();
        let mut unknown = vec![false; r.rings.len()];
        for (i, ring) in r.rings.iter().enumerate() {
            if ring.select.is_empty() && !self.broken(&format!("ring[{i}].select")) {
                self.at(
                    &format!("ring[{i}].select"),
                    format!("ring \"{}\" selects nothing", ring.name),
                    "list tenants' names and/or `tag:TAG`, e.g. `select = [\"acme\", \"tag:tier/gold\"]`",
                );
            }
            for (j, s) in ring.select.iter().enumerate() {
                let path = format!("ring[{i}].select[{j}]");
                match Selector::parse(s) {
                    Selector::Name(n) if !name_set.contains(n) => {
                        unknown[i] = true;
                        let hint = match nearest(n, &names) {
                            Some(m) => format!("did you mean \"{m}\"?"),
                            None if n.contains(':') => "a tag is selected as `tag:TAG`".to_string(),
                            None => format!(
                                "select a tenant by its `name`, or tenants by `tag:TAG`; tenants: {}",
                                shown_list(&names)
                            ),
                        };
                        self.at(
                            &path,
                            format!("ring \"{}\" selects tenant \"{n}\", which the release does not have", ring.name),
                            hint,
                        );
                    }
                    Selector::Tag(t) if tags.binary_search(&t).is_err() => {
                        unknown[i] = true;
                        let hint = match nearest(t, &tags) {
                            Some(m) => format!("did you mean \"tag:{m}\"?"),
                            None if tags.is_empty() => {
                                "no tenant has `tags`; add `tags = [\"...\"]` to the tenants".into()
                            }
                            None => format!("the tenants' tags: {}", shown_list(&tags)),
                        };
                        self.at(
                            &path,
                            format!(
                                "ring \"{}\" selects tag \"{t}\", which no tenant has",
                                ring.name
                            ),
                            hint,
                        );
                    }
                    _ => {}
                }
            }
        }
        let members = tenants::members(&r.tenants, &r.rings);
        let mut placed = vec![false; r.tenants.len()];
        for (i, m) in members.iter().enumerate() {
            for &t in m {
                placed[t] = true;
            }
            if m.is_empty()
                && !r.rings[i].select.is_empty()
                && !unknown[i]
                && !self.broken(&format!("ring[{i}].select"))
            {
                self.at(
                    &format!("ring[{i}].select"),
                    format!(
                        "ring \"{}\" selects no tenant that an earlier ring has not already taken",
                        r.rings[i].name
                    ),
                    "a tenant is in the first ring that selects it: select other tenants, or remove this ring",
                );
            }
        }
        let last = r.rings.last().map_or("", |x| x.name.as_str());
        let mut first_of: HashMap<&str, usize> = HashMap::new();
        for (i, t) in r.tenants.iter().enumerate() {
            // A repeated name is reported as such, not as a tenant in no ring.
            let repeated = *first_of.entry(t.name.as_str()).or_insert(i) != i;
            if !placed[i] && !repeated && !self.broken(&format!("tenant[{i}].name")) {
                self.at(
                    &format!("tenant[{i}].name"),
                    format!("tenant \"{}\" is in no ring", t.name),
                    format!(
                        "select it in a ring: add \"{}\" (or one of its tags as `tag:TAG`) to a ring's `select`, e.g. ring \"{last}\"",
                        t.name
                    ),
                );
            }
        }
    }

    fn budget(&mut self, r: &Release) {
        let Some(b) = r.release.failure_budget else {
            return;
        };
        if r.tenants.is_empty() {
            self.at(
                "release.failure_budget",
                "failure_budget counts failed tenants, and this release has no [[tenant]]",
                "remove it, or add `[[tenant]]` tables",
            );
            return;
        }
        if let tenants::Amount::Count(n) = b
            && n as usize > r.tenants.len()
        {
            self.at(
                "release.failure_budget",
                format!(
                    "failure_budget {n} is more than the release's {} tenant(s)",
                    r.tenants.len()
                ),
                format!(
                    "at most {}: the budget counts tenants that may fail in the whole release",
                    r.tenants.len()
                ),
            );
        }
    }

    /// `[[tenant.smoke]]` names a service and is a request or a command; `[tenant.analysis]`
    /// only tightens.
    fn validation(&mut self, r: &Release) {
        let services: Vec<&str> = r.services.iter().map(|s| s.name.as_str()).collect();
        for (i, t) in r.tenants.iter().enumerate() {
            for (j, s) in t.smoke.iter().enumerate() {
                let p = format!("tenant[{i}].smoke[{j}]");
                if self.broken(&p) {
                    continue;
                }
                if !services.contains(&s.service.as_str()) {
                    let hint = match nearest(&s.service, &services) {
                        Some(n) => format!("did you mean \"{n}\"?"),
                        None => format!("the release's services: {}", shown_list(&services)),
                    };
                    self.at(
                        &format!("{p}.service"),
                        format!(
                            "smoke test \"{}\" of tenant \"{}\" is for service \"{}\", which the release does not have",
                            s.name, t.name, s.service
                        ),
                        hint,
                    );
                }
                if let Some((field, msg, hint)) = super::validate::smoke_problem(&s.to_smoke()) {
                    self.at(&format!("{p}{field}"), msg, hint);
                }
            }
            let Some(a) = &t.analysis else { continue };
            let p = format!("tenant[{i}].analysis");
            if self.broken(&p) {
                continue;
            }
            let analysed: Vec<(&str, &Analysis)> = r
                .services
                .iter()
                .filter_map(|s| s.analysis.as_ref().map(|a| (s.name.as_str(), a)))
                .collect();
            if analysed.is_empty() {
                self.at(
                    &p,
                    format!(
                        "tenant \"{}\" tightens analysis bounds, and no service has [service.analysis]",
                        t.name
                    ),
                    "remove [tenant.analysis], or add [service.analysis] to the services it should judge",
                );
                continue;
            }
            for (svc, sa) in analysed {
                let looser = [
                    ("tolerance", a.tolerance.is_some_and(|x| x > sa.tolerance)),
                    (
                        "max_error_rate",
                        a.max_error_rate.is_some_and(|x| x > sa.max_error_rate),
                    ),
                    (
                        "max_p99",
                        a.max_p99.is_some_and(|x| sa.max_p99.is_some_and(|s| x > s)),
                    ),
                ];
                for (key, is_looser) in looser {
                    if is_looser {
                        self.at(
                            &format!("{p}.{key}"),
                            format!(
                                "tenant \"{}\" sets a looser `{key}` than service \"{svc}\"'s analysis",
                                t.name
                            ),
                            "a tenant's analysis bounds can only tighten a service's: lower it, or loosen the service's bound",
                        );
                    }
                }
            }
        }
    }

    /// Flag keys flagd accepts, one type per flag, a default for string flags, a file.
    fn flags(&mut self, r: &Release, base: &Path) {
        let mut types: BTreeMap<&str, (&'static str, String)> = BTreeMap::new();
        let mut any = None;
        for (i, t) in r.tenants.iter().enumerate() {
            for (k, v) in &t.flags {
                any = any.or(Some(i));
                let path = format!("tenant[{i}].flags");
                if !tenants::is_flagd_key(k) {
                    self.at(
                        &path,
                        format!(
                            "flag key {k:?} of tenant \"{}\" is not a valid flagd flag key",
                            t.name
                        ),
                        "flagd keys are non-empty and on one line (no line breaks)",
                    );
                    continue;
                }
                match types.get(k.as_str()) {
                    Some((ty, first)) if *ty != v.type_name() => {
                        let msg = format!(
                            "flag \"{k}\" is {} for tenant \"{}\" and {ty} for {first}",
                            v.type_name(),
                            t.name
                        );
                        self.at(
                            &path,
                            msg,
                            "a flag has one type (flagd variants are all boolean or all string)",
                        );
                    }
                    Some(_) => {}
                    None => {
                        types.insert(k, (v.type_name(), format!("tenant \"{}\"", t.name)));
                    }
                }
            }
        }
        let Some(f) = &r.flags else {
            if let Some(i) = any {
                self.at(
                    &format!("tenant[{i}].flags"),
                    "tenants set flags, and the release names no flagd file to write them into",
                    "add `[flags]` with `file = \"flags.json\"` (relative to the release file)",
                );
            }
            return;
        };
        if !self.broken("flags.file") {
            let path = Path::new(&f.file);
            if f.file.trim().is_empty() {
                self.at(
                    "flags.file",
                    "the flags file's path is empty",
                    "write e.g. `file = \"flags.json\"`",
                );
            } else {
                let full = base.join(path);
                let dir = full.parent().filter(|p| !p.as_os_str().is_empty());
                if full.is_dir() {
                    self.at(
                        "flags.file",
                        format!("the flags file \"{}\" is a directory", f.file),
                        "name a JSON file, e.g. `file = \"flags.json\"`",
                    );
                } else if dir.is_some_and(|d| !d.is_dir()) {
                    self.at(
                        "flags.file",
                        format!(
                            "the directory of the flags file \"{}\" does not exist",
                            f.file
                        ),
                        "create it first; cutover writes the file, not its directory",
                    );
                }
            }
        }
        for (k, v) in &f.defaults {
            if !tenants::is_flagd_key(k) {
                self.at(
                    "flags.defaults",
                    format!("flag key {k:?} is not a valid flagd flag key"),
                    "flagd keys are non-empty and on one line (no line breaks)",
                );
            } else if let Some((ty, first)) = types.get(k.as_str())
                && *ty != v.type_name()
            {
                let msg = format!(
                    "the default of flag \"{k}\" is {} and {first} sets it as {ty}",
                    v.type_name()
                );
                self.at(
                    "flags.defaults",
                    msg,
                    "a flag has one type (flagd variants are all boolean or all string)",
                );
            }
        }
        for (k, (ty, first)) in &types {
            if *ty == "string" && !f.defaults.contains_key(*k) {
                self.at(
                    "flags",
                    format!("string flag \"{k}\" (set by {first}) has no default for the tenants that do not set it"),
                    format!("add it to `[flags] defaults`, e.g. `defaults = {{ {k} = \"...\" }}`"),
                );
            }
        }
    }
}

/// A list for hints, at most 12 names.
fn shown_list(names: &[&str]) -> String {
    if names.len() <= 12 {
        names.join(", ")
    } else {
        format!("{}, … ({} in all)", names[..12].join(", "), names.len())
    }
}

/// Across tenants: on the local platform every tenant's service listens on its own
/// address; on ECS each tenant's service is its own ECS service. Reported at the tenant
/// that repeats another's.
pub(crate) fn across(
    resolved: &[TenantRelease],
    spans: &Spans,
    map: &SourceMap,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, t) in resolved.iter().enumerate() {
        for s in &t.release.services {
            let key = match (&s.local, &s.ecs) {
                (Some(l), _) if t.release.release.platform == PlatformKind::Local => {
                    format!("listen {}", l.listen)
                }
                (_, Some(e)) if t.release.release.platform == PlatformKind::Ecs => {
                    format!("ECS service {}/{}", e.cluster, e.service)
                }
                _ => continue,
            };
            match seen.get(&key) {
                Some(&j) if j != i => {
                    let what = key.split_once(' ').map_or(key.as_str(), |x| x.1);
                    let msg = if key.starts_with("listen") {
                        format!(
                            "tenants \"{}\" and \"{}\" both run service \"{}\" on {what}",
                            resolved[j].name, t.name, s.name
                        )
                    } else {
                        format!(
                            "tenants \"{}\" and \"{}\" both deploy service \"{}\" to the {key}",
                            resolved[j].name, t.name, s.name
                        )
                    };
                    out.push(map.diagnostic(
                        spans.nearest(&format!("tenant[{i}].vars")).or(spans.nearest(&format!("tenant[{i}]"))),
                        msg,
                        Some("give each tenant its own instance through a variable in its `vars` (e.g. `vars = { port = 19951 }` and `listen = \"127.0.0.1:${port}\"`)".into()),
                    ));
                }
                Some(_) => {}
                None => {
                    seen.insert(key, i);
                }
            }
        }
    }
    out
}
