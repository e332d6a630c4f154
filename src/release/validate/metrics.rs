//! `[metrics]`, `[service.analysis.prometheus]` and `[release] metrics_listen`.

use std::net::SocketAddr;

use super::Validator;
use crate::metrics::prometheus_templates::{template, unknown_placeholders};
use crate::release::model::*;

fn env_name_ok(var: &str) -> bool {
    !var.is_empty() && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Validator<'_> {
    /// The last problem's excerpt shows `secret` masked (as `pin_secret`'s does).
    fn mask_last(&mut self, secret: &str) {
        if let Some(d) = self.diags.last_mut()
            && let Some((line, width)) = d.excerpt.as_mut()
            && !secret.trim().is_empty()
        {
            *line = line.replace(secret, crate::secrets::MASK);
            *width = crate::secrets::MASK.len() + 2;
        }
    }

    pub(super) fn metrics(&mut self, r: &Release) {
        if let Some(addr) = &r.release.metrics_listen {
            if addr.parse::<SocketAddr>().is_err() {
                self.at(
                    "release.metrics_listen",
                    format!("metrics_listen \"{addr}\" is not IP:PORT"),
                    "write it like \"127.0.0.1:9464\" (or pass --metrics-listen ADDR)",
                );
            } else if r.release.platform != PlatformKind::Local {
                self.at(
                    "release.metrics_listen",
                    "metrics_listen is served by the local platform only",
                    "remove it, or use `cutover serve`'s control API `GET /metrics` for cutover's own metrics",
                );
            }
        }
        let prometheus = r
            .metrics
            .as_ref()
            .filter(|m| m.provider == MetricsProvider::Prometheus);
        match prometheus {
            Some(m) => self.prometheus_section(m),
            None => {
                if r.metrics.as_ref().is_some_and(|m| m.url.is_some()) {
                    self.at(
                        "metrics.url",
                        "[metrics] url has no effect without provider = \"prometheus\"",
                        "add `provider = \"prometheus\"`, or remove url",
                    );
                }
            }
        }
        for (i, s) in r.services.iter().enumerate() {
            let Some(q) = s.analysis.as_ref().and_then(|a| a.prometheus.as_ref()) else {
                continue;
            };
            if prometheus.is_none() {
                self.at(
                    &format!("service[{i}].analysis.prometheus"),
                    format!(
                        "service \"{}\" overrides Prometheus queries, but the release does not read Prometheus",
                        s.name
                    ),
                    "add `[metrics]` with `provider = \"prometheus\"` and `url`, or remove this table",
                );
            }
            for (key, v) in [
                ("requests", &q.requests),
                ("errors", &q.errors),
                ("slow", &q.slow),
            ] {
                let Some(v) = v else { continue };
                let path = format!("service[{i}].analysis.prometheus.{key}");
                let unknown = unknown_placeholders(v);
                if v.trim().is_empty() {
                    self.at(&path, format!("the `{key}` query is empty"), "write a PromQL expression that returns one cumulative count, or remove the key");
                } else if !unknown.is_empty() {
                    self.at(
                        &path,
                        format!(
                            "the `{key}` query uses unknown placeholder {}",
                            unknown.join(", ")
                        ),
                        "cutover fills in {{service}}, {{revision}} and (in slow) {{le}}",
                    );
                } else if !v.contains("{{revision}}") {
                    self.at(
                        &path,
                        format!("the `{key}` query does not name the revision"),
                        "select the revision with {{revision}}, e.g. `version=\"{{revision}}\"`: without it both arms read the same numbers",
                    );
                } else if key == "slow" && !v.contains("{{le}}") {
                    self.at(
                        &path,
                        "the `slow` query does not use {{le}}",
                        "count above the judge's slow threshold, e.g. `sum(x_count{...}) - sum(x_bucket{...,le=\"{{le}}\"})`",
                    );
                }
            }
        }
        // The judge counts "slow" at `max_p99`: it must be a bucket of the histogram, or
        // Prometheus would interpolate and silently change the test. The local proxy adds
        // every service's threshold to its own buckets (template `cutover`).
        if let Some(m) = prometheus
            && m.template != PrometheusTemplate::Cutover
        {
            let t = template(m.template);
            let default = crate::judge::AnalysisConfig::default().max_p99;
            for (i, s) in r.services.iter().enumerate() {
                let a = s.analysis.as_ref();
                if a.and_then(|a| a.prometheus.as_ref())
                    .is_some_and(|q| q.slow.is_some())
                {
                    continue;
                }
                let threshold = a.and_then(|a| a.max_p99).map_or(default, |d| d.0);
                if t.bucket_for(threshold, &[]).is_none() {
                    let path = if a.and_then(|a| a.max_p99).is_some() {
                        format!("service[{i}].analysis.max_p99")
                    } else {
                        format!("service[{i}]")
                    };
                    self.at(
                        &path,
                        format!(
                            "service \"{}\": the slow threshold {} is not a bucket of the `{}` template's histogram",
                            s.name,
                            crate::duration::format_duration(threshold),
                            t.name
                        ),
                        format!(
                            "set [service.analysis] max_p99 to one of its buckets: {} (or override the `slow` query)",
                            t.buckets_text()
                        ),
                    );
                }
            }
        }
    }

    fn prometheus_section(&mut self, m: &MetricsSection) {
        match m.url.as_deref().map(str::trim) {
            None => self.at(
                "metrics",
                "[metrics] provider = \"prometheus\" has no url",
                "add `url = \"http://127.0.0.1:9090\"` (or `url = \"env:PROMETHEUS_URL\"`)",
            ),
            Some(u) => match u.strip_prefix("env:") {
                Some(var) if !env_name_ok(var) => self.at(
                    "metrics.url",
                    "[metrics] url: `env:` needs an environment variable name",
                    "write e.g. \"env:PROMETHEUS_URL\"",
                ),
                Some(_) => {}
                None => {
                    if !(u.starts_with("http://") || u.starts_with("https://"))
                        || u.parse::<hyper::Uri>().map_or(true, |x| x.host().is_none())
                    {
                        self.at(
                            "metrics.url",
                            "[metrics] url is not an http(s) URL",
                            "write the server's base URL, e.g. \"http://127.0.0.1:9090\"",
                        );
                    } else if u.contains('@') {
                        self.at(
                            "metrics.url",
                            "[metrics] url holds credentials, which would be journaled with the release",
                            "use `username` and `password = \"env:VAR\"`, or `url = \"env:PROMETHEUS_URL\"`",
                        );
                        self.mask_last(u);
                    }
                }
            },
        }
        for (key, v) in [("password", &m.password), ("bearer_token", &m.bearer_token)] {
            if let Some(v) = v
                && !v.trim().strip_prefix("env:").is_some_and(env_name_ok)
            {
                // The value may be the secret itself: the message does not quote it.
                self.at(
                    &format!("metrics.{key}"),
                    format!("[metrics] {key} must name an environment variable"),
                    format!(
                        "write `{key} = \"env:PROMETHEUS_{}\"` and export that variable",
                        key.to_uppercase()
                    ),
                );
                self.mask_last(v);
            }
        }
        if m.username.is_some() != m.password.is_some() {
            let key = if m.username.is_some() {
                "username"
            } else {
                "password"
            };
            self.at(
                &format!("metrics.{key}"),
                "basic auth needs both username and password",
                "add the other one, or remove this key",
            );
            if let Some(p) = &m.password {
                self.mask_last(p);
            }
        }
        if m.bearer_token.is_some() && m.username.is_some() {
            self.at(
                "metrics.bearer_token",
                "[metrics] has both basic auth and a bearer token",
                "keep one of them",
            );
            if let Some(t) = &m.bearer_token {
                self.mask_last(t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    const SERVICE: &str = "[[service]]\nname = \"api\"\nstrategy = \"canary\"\nsteps = [{ set_weight = 10 }, { analysis = \"1m\" }]\n[service.local]\nlisten = \"127.0.0.1:18999\"\ncommand = [\"x\", \"{port}\"]\ncurrent = { revision = \"v1\" }\ntarget = { revision = \"v2\" }\n";

    /// The problems of a release (file, line, message, hint), or none.
    fn problems(text: &str) -> Vec<(usize, String, String)> {
        match crate::release::load_str(Path::new("r.toml"), text, Path::new(".")) {
            Ok(_) => Vec::new(),
            Err(d) => d
                .into_iter()
                .map(|d| {
                    let excerpt = d.excerpt.map(|e| e.0).unwrap_or_default();
                    (
                        d.line,
                        d.message,
                        format!("{} {excerpt}", d.hint.unwrap_or_default()),
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn a_valid_prometheus_release_passes() {
        let text = format!(
            "[release]\nname = \"r\"\nmetrics_listen = \"127.0.0.1:9464\"\n[metrics]\nprovider = \"prometheus\"\nurl = \"env:PROM_URL\"\ntemplate = \"istio\"\nusername = \"u\"\npassword = \"env:PROM_PASSWORD\"\n{SERVICE}[service.analysis]\nmax_p99 = \"250ms\"\n"
        );
        assert_eq!(problems(&text), vec![]);
    }

    #[test]
    fn the_slow_threshold_must_be_a_bucket_of_the_template() {
        let text = format!(
            "[release]\nname = \"r\"\n[metrics]\nprovider = \"prometheus\"\nurl = \"http://127.0.0.1:9090\"\ntemplate = \"linkerd\"\n{SERVICE}[service.analysis]\nmax_p99 = \"250ms\"\n"
        );
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].0, 17, "located at max_p99: {p:?}");
        assert!(
            p[0].1.contains("250ms is not a bucket of the `linkerd`"),
            "{p:?}"
        );
        assert!(p[0].2.contains("200, 300"), "{p:?}");
        // The local proxy adds every threshold to its own buckets.
        let ok = text.replace("linkerd", "cutover");
        assert_eq!(problems(&ok), vec![]);
        // Overriding `slow` takes the responsibility.
        let own = format!(
            "{text}[service.analysis.prometheus]\nslow = 'sum(x_count{{v=\"{{{{revision}}}}\"}}) - sum(x_bucket{{v=\"{{{{revision}}}}\",le=\"{{{{le}}}}\"}})'\n"
        );
        assert_eq!(problems(&own), vec![]);
    }

    #[test]
    fn urls_auth_and_placeholders_are_checked_without_quoting_secrets() {
        let text = format!(
            "[release]\nname = \"r\"\nmetrics_listen = \"localhost\"\n[metrics]\nprovider = \"prometheus\"\nurl = \"http://u:hunter2@prom:9090\"\npassword = \"hunter3\"\n{SERVICE}[service.analysis.prometheus]\nrequests = 'sum(x{{v=\"{{{{revison}}}}\"}})'\nerrors = 'sum(x)'\n"
        );
        let p = problems(&text);
        let all = format!("{p:?}");
        for needle in [
            "metrics_listen \\\"localhost\\\" is not IP:PORT",
            "url holds credentials",
            "password must name an environment variable",
            "basic auth needs both username and password",
            "unknown placeholder {{revison}}",
            "the `errors` query does not name the revision",
        ] {
            assert!(all.contains(needle), "{needle}: {all}");
        }
        assert!(
            !p.iter()
                .any(|(_, m, h)| m.contains("hunter") || h.contains("hunter")),
            "{all}"
        );
        let lines: Vec<usize> = p.iter().map(|x| x.0).collect();
        assert!(
            lines.contains(&3) && lines.contains(&6) && lines.contains(&19),
            "{p:?}"
        );
    }

    #[test]
    fn overrides_need_the_prometheus_provider() {
        let text = format!(
            "[release]\nname = \"r\"\n{SERVICE}[service.analysis.prometheus]\nrequests = 'sum(x{{v=\"{{{{revision}}}}\"}})'\n"
        );
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].1.contains("does not read Prometheus"), "{p:?}");
    }
}
