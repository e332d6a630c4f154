//! Change control: the policy file (`--policy FILE`, else `CUTOVER_POLICY`, else
//! `policy.toml` in the config directory) with its freeze windows ([`freeze`]), roster and
//! approval rules ([`roster`]) and Rego policies ([`rego`]); the file's keys and located
//! errors are [`file`]. [`check`] is what a fresh deploy or serve asks before anything
//! changes: is a window open, and does any policy deny. See docs/change-control.md.

pub mod file;
pub mod freeze;
pub mod gates;
pub mod rego;
pub mod roster;
pub mod scan;
pub mod trivy;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use freeze::FreezeWindow;
pub use roster::{ApprovalRule, Roster};

/// A policy file, read and checked. `Policy::default()` is no policy at all.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Where it was read from (none for the empty policy).
    pub path: Option<PathBuf>,
    pub freeze: Vec<FreezeWindow>,
    pub roster: Roster,
    /// Who may answer the release's approval gates.
    pub approval: Option<ApprovalRule>,
    /// What `--break-glass REASON` needs.
    pub break_glass: Option<ApprovalRule>,
    pub rego: Vec<RegoSource>,
    /// `[images] pin`: how an ECS release's tags are pinned to digests.
    pub images: scan::PinMode,
    /// `[scan]`: the image scan gate.
    pub scan: Option<scan::ScanPolicy>,
}

/// A Rego file and its text.
#[derive(Debug, Clone)]
pub struct RegoSource {
    pub path: PathBuf,
    pub text: String,
}

/// The policy file in force: `flag` (`--policy`), else `CUTOVER_POLICY`, else
/// `policy.toml` in the config directory if there is one. `None`: no policy.
pub fn locate(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(f) = flag {
        return Some(f.to_path_buf());
    }
    if let Some(v) = std::env::var_os("CUTOVER_POLICY").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(v));
    }
    let p = crate::console::config::Dirs::resolve(None)
        .config
        .join("policy.toml");
    p.is_file().then_some(p)
}

/// Read the policy in force (see [`locate`]); the empty policy when there is none.
pub fn load(flag: Option<&Path>) -> Result<Policy, Vec<crate::release::Diagnostic>> {
    match locate(flag) {
        Some(p) => file::load(&p),
        None => Ok(Policy::default()),
    }
}

/// What the engine is given and journals with the release: the windows that apply to its
/// environment, the roster and rules as they were when it started, and a break-glass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeControl {
    /// The policy file, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub freeze: Vec<FreezeWindow>,
    #[serde(default, skip_serializing_if = "Roster::is_empty")]
    pub roster: Roster,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalRule>,
    /// `--break-glass REASON` started the release inside a window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<FreezeBreak>,
    /// The policy's `[break_glass]`: what a pending break-glass still needs (approvals
    /// given through `cutover ctl approve-break-glass` or the console).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass_rule: Option<ApprovalRule>,
    /// The Rego files evaluated before the start (each passed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rego: Vec<String>,
    /// `[images] pin` when the policy sets it (else `ecr-only`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<scan::PinMode>,
    /// `[scan]` when it applies to the release's environment (checked on ECS at the start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan: Option<scan::ScanPolicy>,
}

impl ChangeControl {
    /// Nothing to enforce or to record.
    pub fn is_empty(&self) -> bool {
        *self == ChangeControl::default()
    }
}

impl Roster {
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

/// A release started inside a freeze window with `--break-glass REASON`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreezeBreak {
    pub operator: String,
    pub reason: String,
    /// The window open at the start.
    pub window: String,
    /// Who approved the break-glass (checked against `[break_glass]`); while `pending`,
    /// those so far.
    pub approvers: Vec<String>,
    /// Requested without all the approvals `[break_glass]` needs: the engine waits,
    /// before any platform action, for the rest (`approve-break-glass`), or for the
    /// window to close.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
}

/// The context a fresh run is checked in.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub environment: Option<&'a str>,
    pub operator: &'a str,
    pub change: Option<&'a str>,
    pub now: chrono::DateTime<chrono::Utc>,
    /// `--break-glass REASON` and its approvers.
    pub break_glass: Option<(&'a str, &'a [String])>,
}

/// Why a release may not start. Each is printed and journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Refusal {
    /// A freeze window is open (and no valid break-glass).
    Freeze {
        window: String,
        ends: String,
        message: String,
    },
    /// A Rego policy denied it.
    Deny { policy: String, message: String },
    /// A policy could not be evaluated, or a break-glass is not allowed.
    Invalid { message: String },
    /// The image scan gate: a finding at or above the policy's severity (`id`), or an
    /// image without a usable scan.
    Scan {
        #[serde(skip_serializing_if = "Option::is_none")]
        service: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        image: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        severity: Option<scan::Severity>,
        message: String,
    },
}

impl Refusal {
    pub fn message(&self) -> String {
        match self {
            Refusal::Freeze { message, .. }
            | Refusal::Invalid { message }
            | Refusal::Scan { message, .. } => message.clone(),
            Refusal::Deny { policy, message } => format!("policy {policy} denies: {message}"),
        }
    }
}

/// Check a fresh run of a release whose plan JSON is `plan`: the freeze windows (release
/// and policy), the break-glass, and every Rego policy. `Ok` carries what the engine
/// enforces and journals; `Err` every reason it may not start.
pub fn check(
    policy: &Policy,
    release_windows: &[FreezeWindow],
    plan: serde_json::Value,
    ctx: &Context,
) -> Result<ChangeControl, Vec<Refusal>> {
    let mut refusals = Vec::new();
    let windows: Vec<FreezeWindow> = policy
        .freeze
        .iter()
        .chain(release_windows)
        .filter(|w| {
            w.environments.is_empty()
                || ctx
                    .environment
                    .is_some_and(|e| w.environments.iter().any(|x| x == e))
        })
        .cloned()
        .collect();
    let compiled: Vec<freeze::Compiled> = windows
        .iter()
        .filter_map(|w| freeze::Compiled::new(w).ok())
        .collect();
    let mut break_glass = None;
    if let Some(open) = freeze::frozen_at(&compiled, ctx.environment, ctx.now) {
        let refused = |extra: String| Refusal::Freeze {
            window: open.name.clone(),
            ends: open.ends_text(),
            message: format!(
                "the freeze window `{}` is open until {}{}; deploy after it ends{extra}",
                open.name,
                open.ends_text(),
                ctx.environment
                    .map(|e| format!(" (environment {e})"))
                    .unwrap_or_default(),
            ),
        };
        match ctx.break_glass {
            None => refusals.push(refused(
                ", or with --break-glass REASON and the approvals the policy's [break_glass] names"
                    .into(),
            )),
            Some((reason, approvers)) => {
                match break_glass_allowed(policy, ctx.operator, reason, approvers) {
                    Ok(pending) => {
                        break_glass = Some(FreezeBreak {
                            operator: ctx.operator.to_string(),
                            reason: reason.trim().to_string(),
                            window: open.name.clone(),
                            approvers: approvers.to_vec(),
                            pending,
                        })
                    }
                    Err(why) => refusals.push(refused(format!("; --break-glass refused: {why}"))),
                }
            }
        }
    }
    let input = rego::Input {
        plan,
        environment: ctx.environment.map(str::to_string),
        operator: ctx.operator.to_string(),
        change: ctx.change.map(str::to_string),
        time: ctx.now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        tenants: Vec::new(),
    };
    match rego::evaluate(&policy.rego, &input) {
        Ok(denies) => refusals.extend(denies.into_iter().map(|d| Refusal::Deny {
            policy: d.policy,
            message: d.message,
        })),
        Err(e) => refusals.push(Refusal::Invalid {
            message: format!(
                "a Rego policy could not be evaluated (a policy that cannot answer refuses): {e}"
            ),
        }),
    }
    if !refusals.is_empty() {
        return Err(refusals);
    }
    Ok(ChangeControl {
        policy: policy.path.as_ref().map(|p| p.display().to_string()),
        freeze: windows,
        roster: policy.roster.clone(),
        approval: policy.approval.clone(),
        break_glass_rule: break_glass.as_ref().and(policy.break_glass.clone()),
        break_glass,
        rego: policy
            .rego
            .iter()
            .map(|r| r.path.display().to_string())
            .collect(),
        images: (policy.images != scan::PinMode::default()).then_some(policy.images),
        scan: policy
            .scan
            .clone()
            .filter(|s| s.applies_to(ctx.environment)),
    })
}

/// The tenant-tag windows (`tenant_tags`, the policy's and the release's) open at
/// `now` that hold some of `tenants` (name, tags): each refuses a release that would start
/// them, naming the window, the tenants and when it ends. A break-glass covers
/// release-wide windows only: deploy the other tenants, or after the window.
pub fn check_tenants(
    policy: &Policy,
    release_windows: &[FreezeWindow],
    environment: Option<&str>,
    tenants: &[(&str, &[String])],
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<Refusal> {
    let compiled: Vec<freeze::Compiled> = policy
        .freeze
        .iter()
        .chain(release_windows)
        .filter_map(|w| freeze::Compiled::new(w).ok())
        .collect();
    freeze::tenants_frozen_at(&compiled, environment, tenants, now)
        .into_iter()
        .map(|h| {
            let tags = compiled
                .iter()
                .find(|c| c.window.name == h.window.name)
                .map(|c| c.window.tenant_tags.clone())
                .unwrap_or_default();
            Refusal::Freeze {
                window: h.window.name.clone(),
                ends: h.window.ends_text(),
                message: format!(
                    "{}; deploy after it ends, or without those tenants",
                    h.message(&tags)
                ),
            }
        })
        .collect()
}

/// Whether `--break-glass REASON` with `approvers` may start: each approver allowed by the
/// policy's `[break_glass]`; `Ok(true)` when more approvals are still needed (the engine
/// waits for them before any platform action).
fn break_glass_allowed(
    policy: &Policy,
    operator: &str,
    reason: &str,
    approvers: &[String],
) -> Result<bool, String> {
    if reason.trim().is_empty() {
        return Err("it needs a reason (a ticket, an incident, a sentence)".into());
    }
    let Some(rule) = &policy.break_glass else {
        return Err(
            "the policy has no [break_glass] (who may approve breaking a freeze); add one".into(),
        );
    };
    let mut so_far: Vec<String> = Vec::new();
    for a in approvers {
        rule.check(&policy.roster, a, Some(operator), &so_far)?;
        so_far.push(a.clone());
    }
    Ok((so_far.len() as u64) < u64::from(rule.required))
}

#[cfg(test)]
mod tests;
