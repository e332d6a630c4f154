//! Checks that need the whole release: names, the dependency graph, strategies and their
//! steps, platform sections, listen addresses, migrations and the files they name.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;

use super::diagnostic::{Diagnostic, SourceMap, nearest};
use super::model::*;
use super::parse::Spans;

mod metrics;

/// Every semantic problem in a structurally sound release. `base` is the directory that
/// relative paths in the release are resolved against (the release file's directory).
pub fn validate(
    release: &Release,
    spans: &Spans<'_, '_>,
    map: &SourceMap,
    base: &Path,
) -> Vec<Diagnostic> {
    let mut v = Validator {
        spans,
        map,
        diags: Vec::new(),
    };
    v.release(release);
    let names = v.service_names(release);
    v.dependencies(release, &names);
    for (i, s) in release.services.iter().enumerate() {
        v.strategy(i, s);
        v.smoke(i, s);
        v.health(i, s);
        v.platform_section(i, s, release.release.platform);
    }
    v.listen_addresses(release);
    v.metrics(release);
    v.migrations(release, &names, base);
    v.freeze(release);
    v.diags
        .extend(super::fleet::check(release, spans, map, base));
    v.diags
}

struct Validator<'a> {
    spans: &'a Spans<'a, 'a>,
    map: &'a SourceMap,
    diags: Vec<Diagnostic>,
}

/// `service[3]`, formatted only when a message needs it.
#[derive(Clone, Copy)]
struct Indexed(&'static str, usize);

impl std::fmt::Display for Indexed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]", self.0, self.1)
    }
}

impl Validator<'_> {
    /// Whether a problem was already reported at or inside `path` (cheap when none was).
    fn broken(&self, path: std::fmt::Arguments<'_>) -> bool {
        self.spans.any_broken() && self.spans.is_broken(&path.to_string())
    }

    fn at(&mut self, path: &str, msg: impl Into<String>, hint: impl Into<String>) {
        let span = self.spans.nearest(path);
        self.diags
            .push(self.map.diagnostic(span, msg, Some(hint.into())));
    }

    /// `[release] pin_secret`: `env:VAR` only (a value written in the file would be journaled
    /// with the release), and only where cutover's own proxy routes (the local platform).
    /// The message never quotes what was written: it may be the secret itself.
    /// `[notify.grafana]`: a URL (or `env:VAR`) without credentials, a token from
    /// `env:VAR` only, tags that are words. Messages never repeat a value that may be
    /// secret.
    fn grafana(&mut self, g: &crate::release::model::GrafanaNotify) {
        let env_name = |v: &str| {
            v.strip_prefix("env:").map(|var| {
                !var.is_empty() && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
        };
        match env_name(&g.url) {
            Some(true) => {}
            Some(false) => self.at(
                "notify.grafana.url",
                "grafana url: `env:` needs an environment variable name",
                "write e.g. \"env:GRAFANA_URL\" (the variable holds the URL)",
            ),
            None if !(g.url.starts_with("http://") || g.url.starts_with("https://")) => self.at(
                "notify.grafana.url",
                "grafana url is not an http(s) URL",
                "write Grafana's base URL, e.g. \"https://grafana.example.com\", or env:VAR",
            ),
            None if g
                .url
                .split_once("://")
                .is_some_and(|(_, rest)| rest.split(['/', '?']).next().is_some_and(|a| a.contains('@'))) =>
            {
                self.at(
                    "notify.grafana.url",
                    "grafana url carries credentials (`user:password@`): they would be journaled",
                    "remove them from the URL and give a service account token: token = \"env:GRAFANA_TOKEN\"",
                )
            }
            None => {}
        }
        match env_name(&g.token) {
            Some(true) => {}
            Some(false) => self.at(
                "notify.grafana.token",
                "grafana token: `env:` needs an environment variable name",
                "write e.g. \"env:GRAFANA_TOKEN\" (the variable holds the token)",
            ),
            None => self.at(
                "notify.grafana.token",
                "grafana token is written in the file: a token must come from the environment (it would be journaled and shown)",
                "export it and write token = \"env:GRAFANA_TOKEN\"",
            ),
        }
        if g.dashboard_uid
            .as_deref()
            .is_some_and(|u| u.trim().is_empty())
        {
            self.at(
                "notify.grafana.dashboard_uid",
                "grafana dashboard_uid is empty",
                "give the dashboard's UID (the part after /d/ in its URL), or leave the key out",
            );
        }
        for (i, tag) in g.tags.iter().enumerate() {
            if tag.trim().is_empty() {
                self.at(
                    &format!("notify.grafana.tags[{i}]"),
                    format!("grafana tag {i} is empty"),
                    "write a word, e.g. \"payments\", or remove it",
                );
            }
        }
    }

    fn pin_secret(&mut self, pin: &str, platform: PlatformKind) {
        let var = pin.trim().strip_prefix("env:");
        if !var.is_some_and(|v| {
            !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }) {
            self.at(
                "release.pin_secret",
                "pin_secret must name an environment variable that holds the secret",
                "write `pin_secret = \"env:CUTOVER_PIN_SECRET\"` and export CUTOVER_PIN_SECRET (at least 16 characters, e.g. `openssl rand -hex 24`)",
            );
            // Nor does the excerpt of the line show it.
            if let Some(d) = self.diags.last_mut()
                && let Some((line, width)) = d.excerpt.as_mut()
                && !pin.trim().is_empty()
            {
                *line = line.replace(pin, crate::secrets::MASK);
                // The caret covers the quoted mask, not the length of the secret.
                *width = crate::secrets::MASK.len() + 2;
            }
        } else if platform != PlatformKind::Local {
            self.at(
                "release.pin_secret",
                "pin_secret applies to the local platform's proxy only",
                "remove it: on ECS the test listener rule decides who reaches a revision",
            );
        }
    }

    fn line_of(&self, path: &str) -> usize {
        self.spans
            .nearest(path)
            .map_or(1, |s| self.map.position(s.start).0)
    }

    fn release(&mut self, r: &Release) {
        if r.release.name.trim().is_empty() && !self.broken(format_args!("release.name")) {
            self.at(
                "release.name",
                "the release's name is empty",
                "name it, e.g. `name = \"checkout-2026-11-27\"`",
            );
        }
        if let Some(n) = &r.notify {
            for (i, url) in n.webhooks.iter().enumerate() {
                if let Some(var) = url.strip_prefix("env:") {
                    if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        self.at(
                            &format!("notify.webhooks[{i}]"),
                            format!("webhook {i}: `env:` needs an environment variable name"),
                            "write e.g. \"env:SLACK_WEBHOOK_URL\" (the variable holds the URL)",
                        );
                    }
                } else if !(url.starts_with("http://") || url.starts_with("https://")) {
                    // The value may be a secret: the message names the entry, not the text.
                    self.at(
                        &format!("notify.webhooks[{i}]"),
                        format!("webhook {i} is not an http(s) URL"),
                        "write a full URL, e.g. \"https://hooks.slack.com/services/...\", or env:VAR",
                    );
                }
            }
        }
        if let Some(g) = r.notify.as_ref().and_then(|n| n.grafana.as_ref()) {
            self.grafana(g);
        }
        if let Some(pin) = &r.release.pin_secret {
            self.pin_secret(pin, r.release.platform);
        }
        if let Some(c) = &r.release.change
            && let Err(why) = super::change::check(c)
        {
            self.at(
                "release.change",
                &why,
                "`change` is the change ticket's reference, e.g. `change = \"CHG-1234\"`",
            );
        }
        if r.services.is_empty() {
            self.at(
                "release",
                "the release has no services",
                "add a `[[service]]` table with a name and a strategy",
            );
        }
    }

    fn service_names(&mut self, r: &Release) -> HashSet<String> {
        let mut first: HashMap<&str, usize> = HashMap::new();
        for (i, s) in r.services.iter().enumerate() {
            let path = format!("service[{i}].name");
            if self.broken(format_args!("{path}")) {
                continue;
            }
            if s.name.trim().is_empty() {
                self.at(
                    &path,
                    "a service's name is empty",
                    "name it, e.g. `name = \"payments\"`",
                );
                continue;
            }
            if !s
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            {
                self.at(
                    &path,
                    format!("service name \"{}\" has characters other than letters, digits, `-`, `_`, `.`", s.name),
                    "use a plain name such as \"payments-api\"; it appears in URLs, headers and file names",
                );
            }
            match first.get(s.name.as_str()) {
                Some(j) => {
                    let line = self.line_of(&format!("service[{j}].name"));
                    self.at(
                        &path,
                        format!("duplicate service name \"{}\"", s.name),
                        format!("it is already used on line {line}; service names must be unique"),
                    );
                }
                None => {
                    first.insert(&s.name, i);
                }
            }
        }
        r.services.iter().map(|s| s.name.clone()).collect()
    }

    fn dependencies(&mut self, r: &Release, names: &HashSet<String>) {
        let known: Vec<&str> = r.services.iter().map(|s| s.name.as_str()).collect();
        for (i, s) in r.services.iter().enumerate() {
            if self.broken(format_args!("service[{i}].depends_on")) {
                continue;
            }
            let mut seen = HashSet::new();
            for (j, d) in s.depends_on.iter().enumerate() {
                let path = format!("service[{i}].depends_on[{j}]");
                if d == &s.name {
                    self.at(
                        &path,
                        format!("service \"{}\" depends on itself", s.name),
                        "remove it from its own depends_on",
                    );
                } else if !names.contains(d) {
                    let hint = match nearest(d, &known) {
                        Some(n) => format!("did you mean \"{n}\"?"),
                        None => format!("known services: {}", known.join(", ")),
                    };
                    self.at(
                        &path,
                        format!("service \"{}\" depends on unknown service \"{d}\"", s.name),
                        hint,
                    );
                } else if !seen.insert(d) {
                    self.at(
                        &path,
                        format!("service \"{}\" lists \"{d}\" twice in depends_on", s.name),
                        "list it once",
                    );
                }
            }
        }
        for cycle in find_cycles(r) {
            let first = cycle[0];
            let ring: Vec<&str> = cycle.iter().map(|i| r.services[*i].name.as_str()).collect();
            let to = cycle.get(1).copied().unwrap_or(first);
            let j = r.services[first]
                .depends_on
                .iter()
                .position(|d| *d == r.services[to].name)
                .unwrap_or(0);
            self.at(
                &format!("service[{first}].depends_on[{j}]"),
                format!("dependency cycle: {} -> {}", ring.join(" -> "), ring[0]),
                "services in a cycle can never start; remove one of these dependencies",
            );
        }
    }

    fn strategy(&mut self, i: usize, s: &Service) {
        let p = Indexed("service", i);
        if self.broken(format_args!("{p}.strategy")) {
            return;
        }
        let strategy = s.strategy.as_str();
        let misplaced = [
            ("linear", s.linear.is_some(), StrategyKind::Linear),
            (
                "blue_green",
                s.blue_green.is_some(),
                StrategyKind::BlueGreen,
            ),
            ("rolling", s.rolling.is_some(), StrategyKind::Rolling),
        ];
        for (key, present, kind) in misplaced {
            if present && s.strategy != kind {
                self.at(
                    &format!("{p}.{key}"),
                    format!(
                        "`{key}` settings on service \"{}\" whose strategy is \"{strategy}\"",
                        s.name
                    ),
                    format!("set `strategy = \"{key}\"` or remove the `{key}` settings"),
                );
            }
        }
        if s.strategy != StrategyKind::Canary && !s.steps.is_empty() {
            self.at(
                &format!("{p}.steps"),
                format!(
                    "`steps` on service \"{}\" whose strategy is \"{strategy}\"",
                    s.name
                ),
                "steps belong to strategy \"canary\"; remove them or set `strategy = \"canary\"`",
            );
        }
        match s.strategy {
            StrategyKind::Canary => self.canary(i, s),
            StrategyKind::Linear if s.linear.is_none() => self.at(
                &format!("{p}.strategy"),
                format!(
                    "service \"{}\" uses strategy \"linear\" without its settings",
                    s.name
                ),
                "add `linear = { step = 10, every = \"1m\" }`",
            ),
            StrategyKind::Rolling => {
                let batch = s.rolling.as_ref().map_or(1, |r| r.batch);
                let unavailable = s.rolling.as_ref().map_or(0, |r| r.max_unavailable);
                if let Some(l) = &s.local {
                    if batch > l.replicas {
                        self.at(
                            &format!("{p}.rolling"),
                            format!("rolling batch {batch} of service \"{}\" is larger than its {} replicas", s.name, l.replicas),
                            format!("use `batch = {}` or fewer", l.replicas),
                        );
                    }
                    if unavailable >= l.replicas {
                        self.at(
                            &format!("{p}.rolling"),
                            format!(
                                "max_unavailable {unavailable} of service \"{}\" would allow all {} replicas to be down",
                                s.name, l.replicas
                            ),
                            "keep at least one replica serving: lower max_unavailable",
                        );
                    }
                }
            }
            _ => {}
        }
    }

    fn canary(&mut self, i: usize, s: &Service) {
        let p = Indexed("service", i);
        if self.broken(format_args!("{p}.steps")) {
            return;
        }
        if s.steps.is_empty() {
            self.at(
                &format!("{p}.strategy"),
                format!("canary service \"{}\" has no steps", s.name),
                "add e.g. `steps = [{ set_weight = 10 }, { analysis = \"2m\" }, { set_weight = 50 }, { analysis = \"2m\" }]`",
            );
            return;
        }
        let mut last: Option<(u8, usize)> = None;
        for (j, step) in s.steps.iter().enumerate() {
            if let Step::SetWeight(w) = step {
                if let Some((prev, pj)) = last
                    && *w <= prev
                {
                    self.at(
                        &format!("{p}.steps[{j}]"),
                        format!(
                            "weights of service \"{}\" must increase: step {} sets {w}% after step {} set {prev}%",
                            s.name,
                            j + 1,
                            pj + 1
                        ),
                        "a canary only moves traffic toward the candidate; roll back to go the other way",
                    );
                }
                last = Some((*w, j));
            }
        }
        if last.is_none() {
            self.at(
                &format!("{p}.steps"),
                format!(
                    "canary service \"{}\" never sends traffic to the candidate",
                    s.name
                ),
                "add a `{ set_weight = 10 }` step",
            );
        }
        let waits = s
            .steps
            .iter()
            .any(|st| matches!(st, Step::Analysis(_) | Step::Pause(_)));
        if !waits {
            self.at(
                &format!("{p}.steps"),
                format!("canary service \"{}\" has no analysis and no pause: nothing watches the canary", s.name),
                "add `{ analysis = \"2m\" }` (or a pause) after the first set_weight",
            );
        }
        let has_analysis_step = s.steps.iter().any(|st| matches!(st, Step::Analysis(_)));
        if has_analysis_step && let Some(a) = &s.analysis {
            for (j, st) in s.steps.iter().enumerate() {
                if let Step::Analysis(d) = st
                    && d.0 < a.min_duration.0
                {
                    self.at(
                        &format!("{p}.steps[{j}]"),
                        format!(
                            "analysis step {} of service \"{}\" lasts {d}, shorter than min_duration {}: it can never pass",
                            j + 1,
                            s.name,
                            a.min_duration
                        ),
                        format!("make the step at least {} or lower `min_duration`", a.min_duration),
                    );
                }
            }
        }
    }

    fn smoke(&mut self, i: usize, s: &Service) {
        for (j, t) in s.smoke.iter().enumerate() {
            let p = format_args!("service[{i}].smoke[{j}]").to_string();
            if self.broken(format_args!("{p}")) {
                continue;
            }
            if let Some((field, msg, hint)) = smoke_problem(t) {
                self.at(&format!("{p}{field}"), msg, hint);
            }
        }
    }

    fn health(&mut self, i: usize, s: &Service) {
        if self.broken(format_args!("service[{i}].health")) {
            return;
        }
        let h = &s.health;
        if !h.path.starts_with('/') {
            self.at(
                &format!("service[{i}].health.path"),
                format!("health path \"{}\" does not start with /", h.path),
                format!("write it like \"/{}\"", h.path.trim_start_matches('/')),
            );
        }
        if h.timeout.0 > h.interval.0 {
            self.at(
                &format!("service[{i}].health.timeout"),
                format!(
                    "health timeout {} is longer than the interval {}",
                    h.timeout, h.interval
                ),
                "a check must finish before the next starts: lower `timeout` or raise `interval`",
            );
        }
    }

    fn platform_section(&mut self, i: usize, s: &Service, platform: PlatformKind) {
        let p = Indexed("service", i);
        let section = match platform {
            PlatformKind::Local => format!("{p}.local"),
            PlatformKind::Ecs => format!("{p}.ecs"),
        };
        let broken = self.broken(format_args!("{section}"));
        if self.spans.present(&section) && (s.local.is_none() && s.ecs.is_none() || broken) {
            // Already reported where it was written; values that were read are still
            // checked one by one (they cannot cascade from the broken ones).
            if platform == PlatformKind::Ecs
                && let Some(e) = &s.ecs
            {
                self.ecs_values(&p, s, e);
            }
            return;
        }
        match platform {
            PlatformKind::Local => {
                let Some(l) = &s.local else {
                    self.at(
                        &format!("{p}.name"),
                        format!("service \"{}\" has no [service.local] section, and the release's platform is \"local\"", s.name),
                        "add `[service.local]` with listen, command, current and target after this service",
                    );
                    return;
                };
                if l.command.first().is_none_or(|c| c.trim().is_empty()) {
                    self.at(
                        &format!("{p}.local.command"),
                        format!("service \"{}\" has an empty command", s.name),
                        "name the program to run, e.g. [\"cutover\", \"demo-service\", \"--port\", \"{port}\"]",
                    );
                } else if !l.command.iter().any(|a| a.contains("{port}")) {
                    self.at(
                        &format!("{p}.local.command"),
                        format!("the command of service \"{}\" never uses {{port}}", s.name),
                        "each replica gets its own port; pass it, e.g. [\"./server\", \"--port\", \"{port}\"]",
                    );
                }
                if l.current.revision == l.target.revision {
                    self.at(
                        &format!("{p}.local.target"),
                        format!(
                            "service \"{}\" rolls out revision \"{}\", which is already current",
                            s.name, l.target.revision
                        ),
                        "give the target a different revision name",
                    );
                }
            }
            PlatformKind::Ecs => {
                let Some(e) = &s.ecs else {
                    self.at(
                        &format!("{p}.name"),
                        format!("service \"{}\" has no [service.ecs] section, and the release's platform is \"ecs\"", s.name),
                        "add `[service.ecs]` with cluster, service, container and image after this service",
                    );
                    return;
                };
                if s.strategy != StrategyKind::Rolling {
                    if e.listener_rule.is_none() {
                        self.at(
                            &format!("{p}.ecs"),
                            format!("service \"{}\" uses strategy \"{}\" on ECS without a listener_rule", s.name, s.strategy.as_str()),
                            "name the ALB listener rule whose weights cutover moves: `listener_rule = \"arn:...\"`",
                        );
                    }
                    if e.target_groups.len() != 2 {
                        self.at(
                            &format!("{p}.ecs.target_groups"),
                            format!(
                                "service \"{}\" on ECS needs exactly 2 target groups (blue and green), found {}",
                                s.name,
                                e.target_groups.len()
                            ),
                            "list the blue and the green target group ARNs",
                        );
                    }
                    if !s.smoke.is_empty() && e.test_listener_rule.is_none() {
                        self.at(
                            &format!("{p}.ecs"),
                            format!(
                                "service \"{}\" has smoke tests but no test_listener_rule to reach the candidate at weight 0",
                                s.name
                            ),
                            "name an ALB listener rule cutover may point at the candidate: `test_listener_rule = \"arn:...:listener-rule/...\"`",
                        );
                    }
                }
                self.ecs_values(&p, s, e);
            }
        }
    }

    /// Shapes of ECS values that AWS would reject only after the release started.
    fn ecs_values(&mut self, p: &Indexed, s: &Service, e: &EcsService) {
        let arn_checks = [
            (
                "listener_rule",
                e.listener_rule.as_deref(),
                ":elasticloadbalancing:",
            ),
            (
                "test_listener_rule",
                e.test_listener_rule.as_deref(),
                ":elasticloadbalancing:",
            ),
        ];
        for (key, value, part) in arn_checks {
            if let Some(v) = value
                && !(v.starts_with("arn:") && v.contains(part))
            {
                self.at(
                    &format!("{p}.ecs.{key}"),
                    format!(
                        "`{key}` of service \"{}\" is not a load balancer ARN: \"{v}\"",
                        s.name
                    ),
                    "copy the ARN from the console or `aws elbv2 describe-rules`",
                );
            }
        }
        for (i, tg) in e.target_groups.iter().enumerate() {
            if !(tg.starts_with("arn:") && tg.contains(":targetgroup/")) {
                self.at(
                    &format!("{p}.ecs.target_groups[{i}]"),
                    format!("target group \"{tg}\" of service \"{}\" is not a target group ARN", s.name),
                    "write the full ARN: \"arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID\"",
                );
            }
        }
        if e.target_groups.len() == 2 && e.target_groups[0] == e.target_groups[1] {
            self.at(
                &format!("{p}.ecs.target_groups[1]"),
                format!("service \"{}\" names the same target group twice", s.name),
                "blue and green must be two different target groups",
            );
        }
        let secrets = e
            .secrets
            .iter()
            .enumerate()
            .map(|(i, a)| (format!("{p}.ecs.secrets[{i}]"), a))
            .chain(
                e.secret_env
                    .iter()
                    .map(|(k, a)| (format!("{p}.ecs.secret_env.{k}"), a)),
            );
        let bad: Vec<(String, String)> = secrets
            .filter(|(_, a)| !(a.starts_with("arn:") && a.contains(":secretsmanager:")))
            .map(|(path, a)| (path, a.clone()))
            .collect();
        for (path, a) in bad {
            self.at(
                &path,
                format!(
                    "\"{a}\" of service \"{}\" is not a Secrets Manager ARN",
                    s.name
                ),
                "write the secret's ARN: \"arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME\"",
            );
        }
        if let Some(u) = &e.url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            self.at(
                &format!("{p}.ecs.url"),
                format!(
                    "url \"{u}\" of service \"{}\" has no http:// or https://",
                    s.name
                ),
                "write it like \"https://api.example.com\"",
            );
        }
        for (key, value) in [("cpu", &e.cpu), ("memory", &e.memory)] {
            if let Some(v) = value
                && v.parse::<u32>().is_err()
            {
                self.at(
                    &format!("{p}.ecs.{key}"),
                    format!(
                        "{key} \"{v}\" of service \"{}\" is not a whole number",
                        s.name
                    ),
                    if key == "cpu" {
                        "write CPU units as a number in a string, e.g. \"256\" or \"1024\""
                    } else {
                        "write memory in MiB as a number in a string, e.g. \"512\""
                    },
                );
            }
        }
    }

    fn listen_addresses(&mut self, r: &Release) {
        let mut seen: BTreeMap<SocketAddr, usize> = BTreeMap::new();
        for (i, s) in r.services.iter().enumerate() {
            let Some(l) = &s.local else { continue };
            let path = format!("service[{i}].local.listen");
            match l.listen.parse::<SocketAddr>() {
                Err(_) => self.at(
                    &path,
                    format!(
                        "listen address \"{}\" of service \"{}\" is not IP:PORT",
                        l.listen, s.name
                    ),
                    "write it like \"127.0.0.1:18081\"",
                ),
                Ok(addr) => {
                    if let Some(j) = seen.get(&addr) {
                        let other = &r.services[*j].name;
                        let line = self.line_of(&format!("service[{j}].local.listen"));
                        self.at(
                            &path,
                            format!(
                                "services \"{other}\" and \"{}\" both listen on {addr}",
                                s.name
                            ),
                            format!(
                                "\"{other}\" took it on line {line}; give each service its own port"
                            ),
                        );
                    } else {
                        seen.insert(addr, i);
                    }
                }
            }
        }
    }

    /// `[[freeze]]`: a 5-field cron, an IANA zone, a duration that is not zero, one name
    /// per window.
    fn freeze(&mut self, r: &Release) {
        for (i, f) in r.freeze.iter().enumerate() {
            let p = Indexed("freeze", i);
            if self.broken(format_args!("{p}")) {
                continue;
            }
            for (key, msg, hint) in
                crate::policy::freeze::problems(&f.cron, &f.timezone, *f.duration)
            {
                self.at(&format!("{p}.{key}"), msg, hint);
            }
            if r.freeze[..i].iter().any(|o| o.name == f.name) {
                self.at(
                    &format!("{p}.name"),
                    format!("a second freeze window named `{}`", f.name),
                    "give each window its own name: refusals and the journal name it",
                );
            }
        }
    }

    fn migrations(&mut self, r: &Release, names: &HashSet<String>, base: &Path) {
        let known: Vec<&str> = r.services.iter().map(|s| s.name.as_str()).collect();
        for (i, m) in r.migrations.iter().enumerate() {
            let p = Indexed("migration", i);
            let db = m.database.as_str();
            if !(db.starts_with("sqlite://")
                || db.starts_with("postgres://")
                || db.starts_with("postgresql://")
                || db.starts_with("env:"))
            {
                self.at(
                    &format!("{p}.database"),
                    format!("database of migration \"{}\" is not a sqlite://, postgres:// or env: URL", m.name),
                    "write \"sqlite://data/app.db\", \"postgres://host/db\" or \"env:DATABASE_URL\"",
                );
            } else if !db.starts_with("env:") && crate::migrate::RedactedUrl::new(db).as_str() != db
            {
                // The release file is journaled whole, and plans and errors show it.
                let shown = crate::migrate::RedactedUrl::new(db);
                self.at(
                    &format!("{p}.database"),
                    format!(
                        "database of migration \"{}\" has a password in it ({shown}); the release is stored in the journal",
                        m.name
                    ),
                    "put the URL in an environment variable and write \"env:DATABASE_URL\" (or use ~/.pgpass)",
                );
                // Nor does the excerpt of the line show it.
                if let Some(d) = self.diags.last_mut()
                    && let Some((line, _)) = d.excerpt.as_mut()
                {
                    *line = line.replace(db, shown.as_str());
                }
            }
            if m.services.is_empty() && !self.broken(format_args!("{p}.services")) {
                self.at(
                    &format!("{p}.services"),
                    format!("migration \"{}\" lists no services", m.name),
                    "name the services whose revisions use the tables it changes",
                );
            }
            for (j, s) in m.services.iter().enumerate() {
                if !names.contains(s) {
                    let hint = match nearest(s, &known) {
                        Some(n) => format!("did you mean \"{n}\"?"),
                        None => format!("known services: {}", known.join(", ")),
                    };
                    self.at(
                        &format!("{p}.services[{j}]"),
                        format!("migration \"{}\" names unknown service \"{s}\"", m.name),
                        hint,
                    );
                }
            }
            let files = [
                ("expand", Some(&m.expand)),
                ("contract", m.contract.as_ref()),
                ("undo_expand", m.undo_expand.as_ref()),
            ];
            for (key, file) in files {
                let Some(file) = file else { continue };
                if self.broken(format_args!("{p}.{key}")) {
                    continue;
                }
                let full = base.join(file);
                if !full.is_file() {
                    self.at(
                        &format!("{p}.{key}"),
                        format!(
                            "{key} file \"{file}\" of migration \"{}\" does not exist",
                            m.name
                        ),
                        format!(
                            "paths are relative to the release file; looked for {}",
                            full.display()
                        ),
                    );
                }
            }
        }
    }
}

/// `"GET /api/ping"` → (method, path).
/// What is wrong with a smoke test (`[[service.smoke]]`, `[[tenant.smoke]]`), if anything:
/// the field to point at (`""`, `.request`, `.command`), the message and the hint.
pub(crate) fn smoke_problem(t: &Smoke) -> Option<(&'static str, String, &'static str)> {
    match (&t.request, &t.command) {
        (Some(_), Some(_)) => Some((
            "",
            format!("smoke test \"{}\" has both `request` and `command`", t.name),
            "keep one: a smoke test is either an HTTP request or a program",
        )),
        (None, None) => Some((
            "",
            format!(
                "smoke test \"{}\" has neither `request` nor `command`",
                t.name
            ),
            "add `request = \"GET /api/ping\"` or `command = [\"./smoke.sh\", \"{url}\"]`",
        )),
        (Some(req), None) if parse_request(req).is_none() => Some((
            ".request",
            format!("smoke request \"{req}\" is not `METHOD /path`"),
            "write it like \"GET /api/ping\" (methods: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS)",
        )),
        (None, Some(cmd)) if cmd.first().is_none_or(|c| c.trim().is_empty()) => Some((
            ".command",
            format!("smoke test \"{}\" has an empty command", t.name),
            "name a program and its arguments, e.g. [\"./smoke.sh\", \"{url}\"]",
        )),
        _ => None,
    }
}

pub fn parse_request(text: &str) -> Option<(&str, &str)> {
    let mut parts = text.split_whitespace();
    let method = parts.next()?;
    let path = parts.next()?;
    if parts.next().is_some() || !path.starts_with('/') {
        return None;
    }
    ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
        .contains(&method)
        .then_some((method, path))
}

/// Each elementary cycle reachable in the dependency graph, once, as service indices in
/// dependency order (a depends on b depends on ... depends on a).
fn find_cycles(r: &Release) -> Vec<Vec<usize>> {
    let index: HashMap<&str, usize> = r
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let edges: Vec<Vec<usize>> = r
        .services
        .iter()
        .map(|s| {
            s.depends_on
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .filter(|_| true)
                .collect()
        })
        .collect();
    // 0 = unvisited, 1 = on stack, 2 = done.
    let mut state = vec![0u8; r.services.len()];
    let mut stack = Vec::new();
    let mut cycles: Vec<Vec<usize>> = Vec::new();
    let mut seen_sets: HashSet<Vec<usize>> = HashSet::new();
    fn dfs(
        n: usize,
        edges: &[Vec<usize>],
        state: &mut [u8],
        stack: &mut Vec<usize>,
        cycles: &mut Vec<Vec<usize>>,
        seen: &mut HashSet<Vec<usize>>,
    ) {
        state[n] = 1;
        stack.push(n);
        for &m in &edges[n] {
            if m == n {
                continue; // self-dependency is reported on its own
            }
            if state[m] == 1 {
                if let Some(pos) = stack.iter().position(|x| *x == m) {
                    let cycle = stack[pos..].to_vec();
                    let mut key = cycle.clone();
                    key.sort_unstable();
                    if seen.insert(key) {
                        cycles.push(cycle);
                    }
                }
            } else if state[m] == 0 {
                dfs(m, edges, state, stack, cycles, seen);
            }
        }
        stack.pop();
        state[n] = 2;
    }
    for n in 0..r.services.len() {
        if state[n] == 0 {
            dfs(
                n,
                &edges,
                &mut state,
                &mut stack,
                &mut cycles,
                &mut seen_sets,
            );
        }
    }
    cycles
}
