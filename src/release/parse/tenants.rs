//! Reading `[[tenant]]`, `[[ring]]`, `[flags]` and `[release] failure_budget` (the types are
//! in [`crate::release::tenants`]; the checks across them in [`crate::release::fleet`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use toml::de::DeValue;

use super::{Ex, Loc, Parser, Spans, Tbl, V, article, keys};
use crate::release::diagnostic::{Diagnostic, SourceMap, nearest};
use crate::release::fleet::{self, TenantRelease, Unresolved};
use crate::release::model::{OnTimeout, Release};
use crate::release::tenants::*;
use crate::release::vars::{Ctx, SetText, Vars};

impl Parser<'_> {
    /// An integer (at least `min`) or `"N%"`.
    pub(super) fn amount_of(&mut self, v: V, loc: Loc, min: i64, ex: Ex) -> Option<Amount> {
        match v.get_ref() {
            DeValue::String(s) => match Amount::parse_percent(s) {
                Some(a) => Some(a),
                None => {
                    self.err(
                        Some(v.span()),
                        format!("`{loc}` must be an integer or a percentage \"N%\" (0-100%), not \"{s}\""),
                        format!("write it like `{ex}`"),
                    );
                    None
                }
            },
            _ => self
                .int_of(v, loc, min, 1_000_000, ex)
                .map(|n| Amount::Count(n as u32)),
        }
    }

    pub(super) fn failure_budget(&mut self, t: &Tbl) -> Option<Amount> {
        let v = self.get(t, "failure_budget")?;
        self.amount_of(
            v,
            t.loc("failure_budget"),
            0,
            Ex::Assign("failure_budget", "1"),
        )
    }

    pub(super) fn flags_section(&mut self, root: &Tbl) -> Option<FlagsSection> {
        let t = self.opt_table(root, "flags", || "[flags]".into())?;
        self.check_keys(&t, keys::FLAGS);
        let file = self.track(
            || t.child("file"),
            |p| p.req_str(&t, "file", "\"flags.json\""),
        );
        let defaults = self.flag_map(&t, "defaults", "defaults = { theme = \"classic\" }");
        Some(FlagsSection {
            file: file.unwrap_or_default(),
            defaults,
        })
    }

    /// A table of flag values: `true`/`false` or strings.
    fn flag_map(&mut self, t: &Tbl, key: &str, example: &str) -> BTreeMap<String, FlagValue> {
        let mut out = BTreeMap::new();
        let Some(ft) = self.opt_table(t, key, || format!("`{}`", t.child(key))) else {
            return out;
        };
        for (k, v) in ft.t.iter() {
            let value = match v.get_ref() {
                DeValue::Boolean(b) => FlagValue::Bool(*b),
                DeValue::String(s) => FlagValue::String(s.to_string()),
                _ => {
                    self.wrong_type(
                        v,
                        ft.loc(k.get_ref()),
                        "true, false or a string (a flag's value)",
                        Ex::Literal(example),
                    );
                    continue;
                }
            };
            out.insert(k.get_ref().to_string(), value);
        }
        out
    }

    pub(super) fn tenant(&mut self, mut t: Tbl) -> Tenant {
        if let Some(DeValue::String(n)) = t.t.get("name").map(|v| v.get_ref()) {
            t.what = format!("[[tenant]] \"{n}\"");
        }
        let t = &t;
        self.check_keys(t, keys::TENANT);
        let name = self
            .track(|| t.child("name"), |p| p.req_str(t, "name", "\"acme\""))
            .unwrap_or_default();
        let tags = self
            .track(
                || t.child("tags"),
                |p| p.opt_str_list(t, "tags", "[\"tier/gold\", \"region/eu\"]"),
            )
            .unwrap_or_default();
        let vars = self.track(|| t.child("vars"), |p| p.var_map(t));
        let flags = self.track(
            || t.child("flags"),
            |p| p.flag_map(t, "flags", "flags = { new_checkout = true }"),
        );
        let smoke = self.track(
            || t.child("smoke"),
            |p| {
                let tables =
                    p.table_array(t, "smoke", || format!("[[tenant.smoke]] of {}", t.what));
                tables
                    .iter()
                    .map(|st| p.track(|| st.path.clone(), |p| p.tenant_smoke(st)))
                    .collect()
            },
        );
        let analysis = self.track(
            || t.child("analysis"),
            |p| {
                let at =
                    p.opt_table(t, "analysis", || format!("[tenant.analysis] of {}", t.what))?;
                p.check_keys(&at, keys::TENANT_ANALYSIS);
                Some(TenantAnalysis {
                    tolerance: p.opt_float(&at, "tolerance", 1.0, 1000.0, "1.1"),
                    max_error_rate: p.opt_float(&at, "max_error_rate", 0.0, 1.0, "0.01"),
                    max_p99: p.opt_dur(&at, "max_p99"),
                })
            },
        );
        let approval = self.track(
            || t.child("approval"),
            |p| {
                let at =
                    p.opt_table(t, "approval", || format!("[tenant.approval] of {}", t.what))?;
                p.check_keys(&at, keys::TENANT_APPROVAL);
                let timeout = p.opt_dur(&at, "timeout");
                if at.t.get("timeout").is_none() {
                    p.missing(&at, "timeout", "\"30m\"");
                }
                let on_timeout = p
                    .enum_of(
                        &at,
                        "on_timeout",
                        OnTimeout::NAMES,
                        &[OnTimeout::Rollback, OnTimeout::Promote, OnTimeout::Pause],
                    )
                    .unwrap_or_default();
                let approvals = p
                    .opt_int(
                        &at,
                        "approvals",
                        1,
                        i64::from(crate::release::model::MAX_APPROVALS),
                        "2",
                    )
                    .map_or(1, |n| n as u32);
                let approvers = p.approvers(&at, &format!("[tenant.approval] of {}", t.what));
                let four_eyes = p.opt_bool(&at, "four_eyes").unwrap_or(false);
                Some(TenantApproval {
                    timeout: timeout?,
                    on_timeout,
                    approvals,
                    approvers,
                    four_eyes,
                })
            },
        );
        Tenant {
            name,
            tags,
            vars,
            flags,
            smoke,
            analysis,
            approval,
        }
    }

    /// A tenant's `vars`: scalars only (declared in `[vars]`: checked by the fleet).
    fn var_map(&mut self, t: &Tbl) -> BTreeMap<String, VarValue> {
        let mut out = BTreeMap::new();
        let Some(vt) = self.opt_table(t, "vars", || format!("the vars of {}", t.what)) else {
            return out;
        };
        for (k, v) in vt.t.iter() {
            let value = match v.get_ref() {
                DeValue::Boolean(b) => VarValue::Boolean(*b),
                DeValue::String(s) => VarValue::String(s.to_string()),
                DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                    Ok(n) => VarValue::Integer(n),
                    Err(_) => {
                        self.wrong_type(
                            v,
                            vt.loc(k.get_ref()),
                            "a 64-bit integer",
                            Ex::Literal("vars = { port = 19951 }"),
                        );
                        continue;
                    }
                },
                DeValue::Float(f) => match f.as_str().parse::<f64>() {
                    Ok(x) => VarValue::Float(x),
                    Err(_) => continue,
                },
                _ => {
                    self.wrong_type(
                        v,
                        vt.loc(k.get_ref()),
                        "a string, integer, float or boolean",
                        Ex::Literal("vars = { port = 19951 }"),
                    );
                    continue;
                }
            };
            out.insert(k.get_ref().to_string(), value);
        }
        out
    }

    fn tenant_smoke(&mut self, t: &Tbl) -> TenantSmoke {
        self.check_keys(t, keys::TENANT_SMOKE);
        let service = self.req_str(t, "service", "\"api\"").unwrap_or_default();
        let s = self.smoke_fields(t);
        TenantSmoke {
            service,
            name: s.name,
            request: s.request,
            expect_status: s.expect_status,
            command: s.command,
            timeout: s.timeout,
        }
    }

    pub(super) fn ring(&mut self, mut t: Tbl) -> Ring {
        if let Some(DeValue::String(n)) = t.t.get("name").map(|v| v.get_ref()) {
            t.what = format!("[[ring]] \"{n}\"");
        }
        let t = &t;
        self.check_keys(t, keys::RING);
        let name = self
            .track(|| t.child("name"), |p| p.req_str(t, "name", "\"early\""))
            .unwrap_or_default();
        let select = self
            .track(
                || t.child("select"),
                |p| {
                    if t.t.get("select").is_none() {
                        p.missing(t, "select", "[\"acme\", \"tag:tier/gold\"]");
                    }
                    p.opt_str_list(t, "select", "[\"acme\", \"tag:tier/gold\"]")
                },
            )
            .unwrap_or_default();
        let max_parallel = self
            .get(t, "max_parallel")
            .and_then(|v| {
                self.amount_of(v, t.loc("max_parallel"), 1, Ex::Assign("max_parallel", "2"))
            })
            .unwrap_or(Amount::Count(1));
        let bake = self.opt_dur(t, "bake").unwrap_or_default();
        Ring {
            name,
            select,
            max_parallel,
            bake,
        }
    }
}

/// What each tenant's resolution needs besides the release and its tree.
pub(super) struct Each<'a> {
    pub map: &'a SourceMap,
    pub text: &'a str,
    pub base: &'a Path,
    pub sets: &'a [SetText],
    pub lenient_env: bool,
    /// Values the release read from the environment (secret).
    pub env_values: &'a [String],
    /// Check each tenant's variables only (the release has other problems).
    pub vars_only: bool,
}

impl Each<'_> {
    /// Every tenant's release (see [`crate::release::fleet`]): a tenant without `vars` is
    /// the release as resolved; one with `vars` is resolved again from `u` and checked,
    /// each problem named after the tenant. Then the checks across tenants.
    pub(super) fn resolve<'i>(
        &self,
        r: &Release,
        u: &Unresolved<'i>,
        spans: &Spans<'_, 'i>,
    ) -> (Vec<TenantRelease>, Vec<Diagnostic>) {
        let single = fleet::single(r);
        let mut out = Vec::with_capacity(r.tenants.len());
        let mut diags = Vec::new();
        for (i, t) in r.tenants.iter().enumerate() {
            let mut release = if t.vars.is_empty() {
                single.clone()
            } else {
                match self.one(i, t, u, spans) {
                    Ok(release) => release,
                    Err(mut problems) => {
                        diags.append(&mut problems);
                        continue;
                    }
                }
            };
            fleet::fold(t, &mut release);
            out.push(TenantRelease {
                name: t.name.clone(),
                release,
            });
        }
        if diags.is_empty() && !self.vars_only {
            diags = fleet::across(&out, spans, self.map);
        }
        (out, diags)
    }

    fn one<'i>(
        &self,
        i: usize,
        t: &Tenant,
        u: &Unresolved<'i>,
        spans: &Spans<'_, 'i>,
    ) -> Result<Release, Vec<Diagnostic>> {
        let mut cx = Ctx {
            map: self.map,
            text: self.text,
            diags: Vec::new(),
            lenient_env: self.lenient_env,
            env_values: Vec::new(),
            substituted: HashMap::new(),
        };
        let mut vars = u.vars.clone();
        if let Some(table) = tenant_vars(spans, i) {
            let mut own = Vars::new();
            cx.declare(
                table,
                &format!("the vars of tenant `{}`", t.name),
                &format!("tenant {}", t.name),
                &mut own,
            );
            let declared: Vec<&str> = u.vars.keys().map(String::as_str).collect();
            for (name, var) in own {
                match u.vars.get(&name) {
                    None => {
                        let hint = match nearest(&name, &declared) {
                            Some(n) => format!("did you mean `{n}`?"),
                            None => format!(
                                "declare it in [vars] with the release's own value, e.g. `{name} = ...`; a tenant's vars override declared variables"
                            ),
                        };
                        cx.diags.push(self.map.diagnostic(
                            Some(var.decl.clone()),
                            format!(
                                "tenant `{}` sets variable `{name}`, which [vars] does not declare",
                                t.name
                            ),
                            Some(hint),
                        ));
                    }
                    Some(declared) if declared.value.type_str() != var.value.type_str() => {
                        cx.diags.push(self.map.diagnostic(
                            Some(var.decl.clone()),
                            format!(
                                "tenant `{}` gives `{name}` {} {}, and [vars] declares it as {} {}",
                                t.name,
                                article(var.value.type_str()),
                                var.value.type_str(),
                                article(declared.value.type_str()),
                                declared.value.type_str()
                            ),
                            Some(format!(
                                "give it {} {} here",
                                article(declared.value.type_str()),
                                declared.value.type_str()
                            )),
                        ));
                    }
                    Some(_) => {
                        vars.insert(name, var);
                    }
                }
            }
        }
        if !cx.diags.is_empty() || self.vars_only {
            return Err(cx.diags);
        }
        cx.apply_sets(self.sets, &mut vars, u.undeclared_at.clone());
        let mut tree = u.tree.clone();
        cx.interpolate(&mut tree, &vars);
        let mut p = Parser {
            map: self.map,
            diags: std::mem::take(&mut cx.diags),
            broken: HashSet::new(),
            substituted: std::mem::take(&mut cx.substituted),
            env_values: Vec::new(),
        };
        let root_span = spans.root_span.clone();
        let root = Tbl {
            t: &tree,
            span: root_span.clone(),
            path: String::new(),
            what: "the file".into(),
        };
        let release = p.release(&root);
        let mut diags = p.diags;
        if let Some(r) = &release {
            let spans = Spans {
                root: &tree,
                root_span,
                broken: p.broken,
            };
            diags.extend(crate::release::validate::validate(
                r, &spans, self.map, self.base,
            ));
        }
        let mut env_values = self.env_values.to_vec();
        env_values.append(&mut cx.env_values);
        match release {
            Some(mut release) if diags.is_empty() => {
                release.env_values = env_values;
                Ok(release)
            }
            _ => {
                let mut secrets = crate::secrets::Secrets::default();
                secrets.extend(env_values);
                let vars_line = tenant_vars(spans, i).map(|v| self.map.position(v.span().start).0);
                for d in &mut diags {
                    d.message = format!("tenant `{}`: {}", t.name, d.message);
                    if let Some(line) = vars_line {
                        let h = d.hint.take().unwrap_or_default();
                        d.hint = Some(format!(
                            "{h}{}with tenant `{}`'s vars (line {line})",
                            if h.is_empty() { "" } else { "; " },
                            t.name
                        ));
                    }
                    d.hide(&secrets);
                }
                Err(diags)
            }
        }
    }
}

/// The spanned `vars` table of `tenant[i]`.
fn tenant_vars<'t, 'i>(spans: &Spans<'t, 'i>, i: usize) -> Option<&'t toml::Spanned<DeValue<'i>>> {
    let DeValue::Array(items) = spans.root.get("tenant")?.get_ref() else {
        return None;
    };
    match items.get(i)?.get_ref() {
        DeValue::Table(t) => t.get("vars"),
        _ => None,
    }
}
