//! Who may approve: the roster's groups (`[roster] groups = { sre = ["alice", "bob"] }`)
//! and an approval rule (`approvers`: operators or `group:NAME`; `required` distinct
//! people; `four_eyes`: the person who started the release does not count). The engine
//! asks [`ApprovalRule::check`] before it records an approval; the rule and the roster it
//! was resolved with are journaled when the release starts, so resume and audit read the
//! same answer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Groups of operators by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roster {
    pub groups: BTreeMap<String, Vec<String>>,
}

/// Who may answer a gate and how many must.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRule {
    /// Operators by name, or `group:NAME` from the roster; empty = anyone.
    #[serde(default)]
    pub approvers: Vec<String>,
    /// Distinct people needed.
    pub required: u32,
    /// The person who started the release may not approve it.
    #[serde(default)]
    pub four_eyes: bool,
}

impl ApprovalRule {
    /// Whether `who` may approve now: `started_by` started the release, `so_far` approved
    /// already. The refusal says why, in words for the person refused.
    pub fn check(
        &self,
        roster: &Roster,
        who: &str,
        started_by: Option<&str>,
        so_far: &[String],
    ) -> Result<(), String> {
        if self.four_eyes && started_by == Some(who) {
            return Err(format!(
                "{who} started this release; four eyes: someone else must approve"
            ));
        }
        if so_far.iter().any(|p| p == who) {
            return Err(format!(
                "{who} already approved; this gate needs {} different people",
                self.required
            ));
        }
        if self.approvers.is_empty() || self.approvers.iter().any(|a| matches(roster, a, who)) {
            return Ok(());
        }
        Err(match self.approvers.as_slice() {
            [one] => match one.strip_prefix("group:") {
                Some(g) => format!("{who} is not in group {g}"),
                None => format!("{who} is not {one}, the only approver"),
            },
            many => format!("{who} is not one of {}", many.join(", ")),
        })
    }

    /// For a gate on screen: `2 of group:sre (alice, bob), not the starter`.
    pub fn describe(&self, roster: &Roster) -> String {
        let who = if self.approvers.is_empty() {
            "anyone".to_string()
        } else {
            self.approvers
                .iter()
                .map(|a| match a.strip_prefix("group:") {
                    Some(g) => match roster.groups.get(g) {
                        Some(m) => format!("{a} ({})", m.join(", ")),
                        None => format!("{a} (no such group)"),
                    },
                    None => a.clone(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let eyes = if self.four_eyes {
            ", not the person who started it"
        } else {
            ""
        };
        format!("{} of {who}{eyes}", self.required)
    }
}

/// Whether `approver` (a name or `group:NAME`) names `who`.
fn matches(roster: &Roster, approver: &str, who: &str) -> bool {
    match approver.strip_prefix("group:") {
        Some(g) => roster
            .groups
            .get(g)
            .is_some_and(|m| m.iter().any(|p| p == who)),
        None => approver == who,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roster() -> Roster {
        Roster {
            groups: BTreeMap::from([("sre".into(), vec!["alice".into(), "bob".into()])]),
        }
    }

    fn rule(four_eyes: bool) -> ApprovalRule {
        ApprovalRule {
            approvers: vec!["group:sre".into(), "carol".into()],
            required: 2,
            four_eyes,
        }
    }

    #[test]
    fn group_members_and_named_operators_may_approve_others_are_told_why_not() {
        let r = roster();
        assert_eq!(rule(false).check(&r, "bob", Some("alice"), &[]), Ok(()));
        assert_eq!(rule(false).check(&r, "carol", Some("alice"), &[]), Ok(()));
        assert_eq!(
            rule(false).check(&r, "mallory", Some("alice"), &[]),
            Err("mallory is not one of group:sre, carol".into())
        );
        let sre_only = ApprovalRule {
            approvers: vec!["group:sre".into()],
            required: 1,
            four_eyes: false,
        };
        assert_eq!(
            sre_only.check(&r, "carol", None, &[]),
            Err("carol is not in group sre".into())
        );
    }

    #[test]
    fn four_eyes_refuses_the_starter_and_each_person_counts_once() {
        let r = roster();
        assert_eq!(
            rule(true).check(&r, "alice", Some("alice"), &[]),
            Err("alice started this release; four eyes: someone else must approve".into())
        );
        assert_eq!(rule(false).check(&r, "alice", Some("alice"), &[]), Ok(()));
        assert_eq!(
            rule(true).check(&r, "bob", Some("alice"), &["bob".into()]),
            Err("bob already approved; this gate needs 2 different people".into())
        );
    }

    #[test]
    fn the_description_names_the_members() {
        assert_eq!(
            rule(true).describe(&roster()),
            "2 of group:sre (alice, bob), carol, not the person who started it"
        );
    }
}
