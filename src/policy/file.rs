//! The policy file (`policy.toml`): its keys and their located errors. Unknown keys, wrong
//! types, bad cron, unknown zones, bad durations, groups the roster does not have and Rego
//! files that cannot be read are each reported at `FILE:LINE:COL`, all in one pass.
//!
//! ```toml
//! [[freeze]]
//! name = "year-end"
//! cron = "0 18 * * 5"
//! duration = "64h"
//! timezone = "Europe/Berlin"
//! environments = ["production"]
//!
//! [roster]
//! groups = { sre = ["alice", "bob"] }
//!
//! [approval]          # every approval gate of a release under this policy
//! approvers = ["group:sre"]
//! required = 2
//! four_eyes = true
//!
//! [break_glass]       # what `--break-glass REASON` needs
//! approvers = ["group:sre"]
//! required = 1
//!
//! [[rego]]
//! file = "policies/production.rego"
//! ```

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::freeze::{self, FreezeWindow};
use super::roster::{ApprovalRule, Roster};
use super::{Policy, RegoSource};
use crate::release::Diagnostic;
use crate::release::diagnostic::SourceMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    freeze: Vec<RawFreeze>,
    #[serde(default)]
    roster: Option<RawRoster>,
    #[serde(default)]
    approval: Option<RawRule>,
    #[serde(default)]
    break_glass: Option<RawRule>,
    #[serde(default)]
    rego: Vec<RawRego>,
    #[serde(default)]
    images: Option<super::scan::RawImages>,
    #[serde(default)]
    scan: Option<super::scan::RawScan>,
}

/// A `[[freeze]]` table as written; also the release's `[[freeze]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFreeze {
    name: Spanned<String>,
    cron: Spanned<String>,
    duration: Spanned<String>,
    timezone: Spanned<String>,
    #[serde(default)]
    environments: Vec<String>,
    #[serde(default)]
    tenant_tags: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoster {
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    approvers: Option<Spanned<Vec<String>>>,
    required: Spanned<i64>,
    #[serde(default)]
    four_eyes: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRego {
    file: Spanned<String>,
}

/// Read and check the policy file at `path`.
pub fn load(path: &Path) -> Result<Policy, Vec<Diagnostic>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic {
            file: path.to_path_buf(),
            line: 1,
            col: 1,
            message: format!("cannot read the policy file: {e}"),
            hint: Some(
                "check the path given by --policy or CUTOVER_POLICY, or remove policy.toml from the config directory".into(),
            ),
            excerpt: None,
        }]
    })?;
    parse(path, &text)
}

/// Check the policy file's `text` (read from `path`; Rego files are relative to it).
pub fn parse(path: &Path, text: &str) -> Result<Policy, Vec<Diagnostic>> {
    let map = SourceMap::new(path, text);
    let raw: RawPolicy = toml::from_str(text).map_err(|e| {
        vec![map.diagnostic(
            e.span(),
            e.message().trim().to_string(),
            Some("the policy file has [[freeze]], [roster], [approval], [break_glass], [[rego]], [images] and [scan]; see docs/change-control.md".into()),
        )]
    })?;
    let mut problems = Vec::new();
    let freeze = freeze_windows(&map, raw.freeze, &mut problems);
    let roster = Roster {
        groups: raw.roster.map(|r| r.groups).unwrap_or_default(),
    };
    let approval = raw
        .approval
        .map(|r| rule(&map, "approval", r, &roster, &mut problems));
    let break_glass = raw
        .break_glass
        .map(|r| rule(&map, "break_glass", r, &roster, &mut problems));
    let base = path.parent().unwrap_or(Path::new(""));
    let mut rego = Vec::new();
    for r in raw.rego {
        let file = base.join(r.file.get_ref());
        match std::fs::read_to_string(&file) {
            Ok(text) => match super::rego::compile(&file, &text) {
                Ok(()) => rego.push(RegoSource { path: file, text }),
                Err(e) => problems.push(map.diagnostic(
                    Some(r.file.span()),
                    format!("the Rego policy {} does not compile: {e}", file.display()),
                    Some("it needs `package cutover` and a set rule `deny` of strings (`deny contains msg if { … }`)".into()),
                )),
            },
            Err(e) => problems.push(map.diagnostic(
                Some(r.file.span()),
                format!("cannot read the Rego policy {}: {e}", file.display()),
                Some("`file` is relative to the policy file".into()),
            )),
        }
    }
    let images = raw
        .images
        .map(|i| super::scan::pin_mode(&map, i, &mut problems))
        .unwrap_or_default();
    let scan = raw
        .scan
        .and_then(|s| super::scan::scan_policy(&map, path, s, &mut problems));
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Policy {
        images,
        scan,
        path: Some(path.to_path_buf()),
        freeze,
        roster,
        approval,
        break_glass,
        rego,
    })
}

/// Check `[[freeze]]` tables (the policy file's or the release's).
pub(super) fn freeze_windows(
    map: &SourceMap,
    raw: Vec<RawFreeze>,
    problems: &mut Vec<Diagnostic>,
) -> Vec<FreezeWindow> {
    let mut out: Vec<FreezeWindow> = Vec::new();
    for f in raw {
        let mut bad = |span: Range<usize>, message: String, hint: &str| {
            problems.push(map.diagnostic(Some(span), message, Some(hint.to_string())));
        };
        if out.iter().any(|w| &w.name == f.name.get_ref()) {
            bad(
                f.name.span(),
                format!("a second freeze window named `{}`", f.name.get_ref()),
                "give each window its own name: refusals and the journal name it",
            );
        }
        // A duration that does not read is reported here; the other checks still run.
        let (duration, readable) = match crate::duration::parse_duration(f.duration.get_ref()) {
            Ok(d) => (d, true),
            Err(e) => {
                bad(
                    f.duration.span(),
                    format!("`{}`: {}", f.duration.get_ref(), e.0),
                    "e.g. \"64h\" or \"2h30m\"",
                );
                (std::time::Duration::from_secs(1), false)
            }
        };
        let found = freeze::problems(f.cron.get_ref(), f.timezone.get_ref(), duration);
        for (key, msg, hint) in &found {
            let span = match *key {
                "cron" => f.cron.span(),
                "timezone" => f.timezone.span(),
                _ => f.duration.span(),
            };
            bad(span, msg.clone(), hint);
        }
        let duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        if readable && found.is_empty() {
            out.push(FreezeWindow {
                name: f.name.into_inner(),
                cron: f.cron.into_inner(),
                duration_ms,
                timezone: f.timezone.into_inner(),
                environments: f.environments,
                tenant_tags: f.tenant_tags,
            });
        }
    }
    out
}

fn rule(
    map: &SourceMap,
    table: &str,
    r: RawRule,
    roster: &Roster,
    problems: &mut Vec<Diagnostic>,
) -> ApprovalRule {
    let approvers = r
        .approvers
        .unwrap_or_else(|| Spanned::new(0..0, Vec::new()));
    for a in approvers.get_ref() {
        if let Some(g) = a.strip_prefix("group:")
            && !roster.groups.contains_key(g)
        {
            let known: Vec<&str> = roster.groups.keys().map(String::as_str).collect();
            problems.push(map.diagnostic(
                Some(approvers.span()),
                format!(
                    "[{table}] approvers names group `{g}`, which [roster] groups does not have"
                ),
                Some(if known.is_empty() {
                    "add it: [roster] groups = { NAME = [\"alice\", \"bob\"] }".into()
                } else {
                    format!("the roster's groups: {}", known.join(", "))
                }),
            ));
        }
    }
    let required = match u32::try_from(*r.required.get_ref()) {
        Ok(n) if n >= 1 => n,
        _ => {
            problems.push(map.diagnostic(
                Some(r.required.span()),
                format!("[{table}] required is a number of people, at least 1"),
                None,
            ));
            1
        }
    };
    ApprovalRule {
        approvers: approvers.into_inner(),
        required,
        four_eyes: r.four_eyes,
        within: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Policy, Vec<String>> {
        parse(Path::new("policy.toml"), text)
            .map_err(|d| d.iter().map(Diagnostic::headline).collect())
    }

    #[test]
    fn a_full_policy_reads() {
        let p = check(
            r#"
[[freeze]]
name = "year-end"
cron = "0 18 * * 5"
duration = "64h"
timezone = "Europe/Berlin"
environments = ["production"]

[roster]
groups = { sre = ["alice", "bob"] }

[approval]
approvers = ["group:sre"]
required = 2
four_eyes = true

[break_glass]
approvers = ["group:sre", "carol"]
required = 1
"#,
        )
        .unwrap();
        assert_eq!(p.freeze[0].duration_ms, 64 * 3_600_000);
        assert_eq!(p.roster.groups["sre"], ["alice", "bob"]);
        assert_eq!(p.approval.unwrap().required, 2);
        assert_eq!(p.break_glass.unwrap().approvers, ["group:sre", "carol"]);
    }

    #[test]
    fn every_bad_value_is_located() {
        let e = check(
            r#"[[freeze]]
name = "a"
cron = "0 18 * *"
duration = "64 hours"
timezone = "Europe/Berlim"

[approval]
approvers = ["group:ops"]
required = 0
"#,
        )
        .unwrap_err();
        assert_eq!(e.len(), 5, "{e:#?}");
        assert!(
            e[1].starts_with("policy.toml:3:8: `0 18 * *` has 4 field(s)"),
            "{e:#?}"
        );
        assert!(
            e[2].starts_with("policy.toml:5:12: `Europe/Berlim` is not an IANA time zone"),
            "{e:#?}"
        );
        assert!(e[0].starts_with("policy.toml:4:12: `64 hours`"), "{e:#?}");
        assert!(
            e[3].starts_with("policy.toml:8:13: [approval] approvers names group `ops`"),
            "{e:#?}"
        );
        assert!(
            e[4].starts_with("policy.toml:9:12: [approval] required"),
            "{e:#?}"
        );
    }

    #[test]
    fn unknown_keys_and_missing_rego_files_are_located() {
        let e = check("[[freeze]]\nname = \"a\"\ncorn = \"x\"\n").unwrap_err();
        assert!(
            e[0].starts_with("policy.toml:3:1: unknown field `corn`"),
            "{e:#?}"
        );
        let e = check("[[rego]]\nfile = \"no/such.rego\"\n").unwrap_err();
        assert!(
            e[0].starts_with("policy.toml:2:8: cannot read the Rego policy no/such.rego"),
            "{e:#?}"
        );
    }
}
