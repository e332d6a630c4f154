//! Commands: what a person (through any front end) asks the engine to do. They all enter
//! through one channel as [`CommandRequest`]s, carry the operator's name, and get an
//! answer: done (with what was done) or refused (with why).

use std::fmt;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// Something an operator asks. `service: None` means the whole release where allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "command")]
pub enum Command {
    /// Begin the release (a loaded engine waits for this).
    Start,
    /// Freeze weights: no more steps until `resume` (health and judges keep watching and
    /// still roll back on failure).
    Pause { service: Option<String> },
    /// Lift a pause.
    Resume { service: Option<String> },
    /// Move a service on to its next step now (ends a pause, an analysis, a gate).
    Promote { service: String },
    /// Skip every remaining step: all traffic to the candidate, then promote.
    PromoteAll { service: String },
    /// Traffic back to the baseline first, cleanup after; `None` rolls back the release.
    Rollback { service: Option<String> },
    /// Stop the release: services in flight roll back, pending ones are skipped,
    /// promoted ones stay.
    Abort,
    /// Approve a waiting approval gate.
    Approve { service: String },
    /// Reject a waiting approval gate: the service rolls back.
    Reject { service: String },
    /// Roll a rolled-back (or failed) service out again.
    Retry { service: String },
    /// Confirm the contract of a migration that waits for it (every listed service
    /// promoted and baked). Contract is one-way.
    Contract { migration: String },
    /// Leave a tenant out of the release (with `--reason`): it is skipped (rolled back if
    /// it was running) and does not count against the failure budget.
    Exclude { tenant: String },
    /// Approve the break-glass the release was started with (`--break-glass REASON`)
    /// and that waits, before any platform action, for the approvals the policy's
    /// `[break_glass]` names. Checked against the roster and four eyes.
    ApproveBreakGlass,
}

impl Command {
    pub fn service(&self) -> Option<&str> {
        match self {
            Command::Start
            | Command::Abort
            | Command::Contract { .. }
            | Command::Exclude { .. }
            | Command::ApproveBreakGlass => None,
            Command::Pause { service }
            | Command::Resume { service }
            | Command::Rollback { service } => service.as_deref(),
            Command::Promote { service }
            | Command::PromoteAll { service }
            | Command::Approve { service }
            | Command::Reject { service }
            | Command::Retry { service } => Some(service),
        }
    }

    /// The command's name as typed (`promote-all`).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Start => "start",
            Command::Pause { .. } => "pause",
            Command::Resume { .. } => "resume",
            Command::Promote { .. } => "promote",
            Command::PromoteAll { .. } => "promote-all",
            Command::Rollback { .. } => "rollback",
            Command::Abort => "abort",
            Command::Approve { .. } => "approve",
            Command::Reject { .. } => "reject",
            Command::Retry { .. } => "retry",
            Command::Contract { .. } => "contract",
            Command::Exclude { .. } => "exclude",
            Command::ApproveBreakGlass => "approve-break-glass",
        }
    }

    /// Parse what a person types: `promote payments`, `rollback`, `pause orders`.
    pub fn parse(text: &str) -> Result<Command, String> {
        let mut words = text.split_whitespace();
        let verb = words.next().unwrap_or_default();
        let target = words.next().map(str::to_string);
        if words.next().is_some() {
            return Err(format!(
                "`{text}`: too many words; write e.g. `promote payments`"
            ));
        }
        let need = |t: Option<String>| {
            t.ok_or_else(|| format!("`{verb}` needs a service name, e.g. `{verb} payments`"))
        };
        Ok(match verb {
            "start" => Command::Start,
            "pause" => Command::Pause { service: target },
            "resume" => Command::Resume { service: target },
            "promote" => Command::Promote {
                service: need(target)?,
            },
            "promote-all" => Command::PromoteAll {
                service: need(target)?,
            },
            "rollback" => Command::Rollback { service: target },
            "abort" => Command::Abort,
            "approve" => Command::Approve {
                service: need(target)?,
            },
            "reject" => Command::Reject {
                service: need(target)?,
            },
            "retry" => Command::Retry {
                service: need(target)?,
            },
            "approve-break-glass" if target.is_none() => Command::ApproveBreakGlass,
            "approve-break-glass" => {
                return Err(
                    "`approve-break-glass` takes no service: it approves the release's break-glass"
                        .into(),
                );
            }
            "contract" => Command::Contract {
                migration: target.ok_or_else(|| {
                    "`contract` needs a migration name, e.g. `contract split-customer-name`"
                        .to_string()
                })?,
            },
            "exclude" => Command::Exclude {
                tenant: target.ok_or_else(|| {
                    "`exclude` needs a tenant name, e.g. `exclude acme`".to_string()
                })?,
            },
            other => {
                return Err(format!(
                    "unknown command `{other}`; one of start, pause, resume, promote, promote-all, rollback, abort, approve, reject, retry, contract, exclude, approve-break-glass"
                ));
            }
        })
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self, self.service()) {
            (Command::Contract { migration }, _) => write!(f, "contract {migration}"),
            (Command::Exclude { tenant }, _) => write!(f, "exclude {tenant}"),
            (_, Some(s)) => write!(f, "{} {s}", self.name()),
            (_, None) => f.write_str(self.name()),
        }
    }
}

/// Why a command was not carried out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{command} refused: {reason}")]
pub struct Refusal {
    pub command: String,
    pub reason: String,
}

/// The answer to a command: what was done, or why not.
pub type CommandReply = Result<String, Refusal>;

/// A command on its way into the engine.
#[derive(Debug)]
pub struct CommandRequest {
    pub command: Command,
    /// `$USER` or `--operator`.
    pub operator: String,
    /// Where the answer goes (dropped senders are fine).
    pub reply: Option<oneshot::Sender<CommandReply>>,
    /// The operator's stated reason, journaled with the command.
    pub note: Option<String>,
    /// Set by a front end that refused the command itself (read-only or bad credential):
    /// the engine only journals the refusal with this reason, so the attempt is audited.
    pub denied: Option<String>,
}

impl CommandRequest {
    pub fn new(
        command: Command,
        operator: &str,
    ) -> (CommandRequest, oneshot::Receiver<CommandReply>) {
        let (tx, rx) = oneshot::channel();
        (
            CommandRequest {
                command,
                operator: operator.to_string(),
                reply: Some(tx),
                note: None,
                denied: None,
            },
            rx,
        )
    }

    /// The same request with the operator's stated reason.
    pub fn with_note(mut self, note: Option<String>) -> CommandRequest {
        self.note = note.filter(|n| !n.trim().is_empty());
        self
    }

    /// A request refused before the engine: it is journaled as refused with `reason`.
    pub fn denied(mut self, reason: impl Into<String>) -> CommandRequest {
        self.denied = Some(reason.into());
        self
    }
}

/// The operator's name: `--operator`, else `$USER`, else `unknown`.
pub fn operator_name(flag: Option<&str>) -> String {
    flag.map(str::to_string)
        .filter(|s| !s.trim().is_empty())
        .or_else(|| std::env::var("USER").ok().filter(|s| !s.is_empty()))
        .or_else(login_name)
        .unwrap_or_else(|| "unknown".to_string())
}

/// The login name of the process's user from the password database, for shells and
/// services that run without `$USER` (cron, systemd, some containers).
fn login_name() -> Option<String> {
    let mut buf = vec![0u8; 4096];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwuid_r writes into `pwd` and `buf`, which outlive the call; on success
    // `result` points at `pwd` and `pw_name` into `buf`.
    let rc = unsafe {
        libc::getpwuid_r(
            libc::getuid(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: pw_name is a NUL-terminated string inside `buf`.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    name.to_str()
        .ok()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_falls_back_to_the_login_name() {
        assert_eq!(operator_name(Some("alice")), "alice");
        // Whatever the environment, the fallback chain never yields an empty name.
        assert!(!operator_name(None).is_empty());
        assert!(login_name().is_some_and(|n| !n.is_empty()));
    }

    #[test]
    fn typed_commands_parse_and_print_back() {
        for t in [
            "start",
            "pause",
            "pause orders",
            "resume",
            "promote payments",
            "promote-all payments",
            "rollback",
            "rollback orders",
            "abort",
            "approve a",
            "reject a",
            "retry a",
            "contract split-customer-name",
            "exclude acme",
        ] {
            let c = Command::parse(t).unwrap();
            assert_eq!(c.to_string(), t);
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(serde_json::from_str::<Command>(&json).unwrap(), c);
        }
        assert!(
            Command::parse("promote")
                .unwrap_err()
                .contains("needs a service")
        );
        assert!(
            Command::parse("contract")
                .unwrap_err()
                .contains("needs a migration name")
        );
        assert_eq!(
            serde_json::to_value(Command::parse("contract m").unwrap()).unwrap(),
            serde_json::json!({"command": "contract", "migration": "m"})
        );
        assert!(
            Command::parse("launch x")
                .unwrap_err()
                .contains("unknown command")
        );
    }
}
