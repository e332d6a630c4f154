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
    /// A gate that names its own `approvers` under a policy that names some too: each
    /// approver must also be one of these (the policy's), so a gate tightens the policy's
    /// rule and never loosens it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub within: Vec<String>,
}

/// What one approval gate of the release asks, besides its count (`approvals`):
/// `approvers` (operators or `group:NAME`) and `four_eyes`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GateAsk<'a> {
    pub approvers: &'a [String],
    pub approvals: u32,
    pub four_eyes: bool,
}

/// The rule an approval gate enforces: the policy's `[approval]` tightened by the gate's
/// own ask. The gate can only tighten: `required` is the larger count, four eyes holds if
/// either asks it, and a gate's `approvers` narrow the policy's (a person must be allowed
/// by both). `None` when neither says anything about who (then anyone may approve, and
/// the gate's `approvals` distinct people are needed).
pub fn gate_rule(policy: Option<&ApprovalRule>, gate: &GateAsk) -> Option<ApprovalRule> {
    if policy.is_none() && gate.approvers.is_empty() && !gate.four_eyes {
        return None;
    }
    let (policy_approvers, required, four_eyes) = match policy {
        Some(p) => (p.approvers.clone(), p.required, p.four_eyes),
        None => (Vec::new(), 1, false),
    };
    let (approvers, within) = if gate.approvers.is_empty() {
        (policy_approvers, Vec::new())
    } else {
        (gate.approvers.to_vec(), policy_approvers)
    };
    Some(ApprovalRule {
        approvers,
        required: required.max(gate.approvals).max(1),
        four_eyes: four_eyes || gate.four_eyes,
        within,
    })
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
        if let Some(why) = not_named(roster, &self.approvers, who) {
            return Err(why);
        }
        match not_named(roster, &self.within, who) {
            Some(why) => Err(format!(
                "{why} (the policy's [approval]; a gate's approvers cannot widen it)"
            )),
            None => Ok(()),
        }
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
        let within = if self.within.is_empty() {
            String::new()
        } else {
            format!(", within the policy's {}", self.within.join(", "))
        };
        format!("{} of {who}{eyes}{within}", self.required)
    }
}

/// Why `approvers` (empty: anyone) does not name `who`, if it does not.
fn not_named(roster: &Roster, approvers: &[String], who: &str) -> Option<String> {
    if approvers.is_empty() || approvers.iter().any(|a| matches(roster, a, who)) {
        return None;
    }
    Some(match approvers {
        [one] if one.starts_with("group:") => format!("{who} is not in {one}"),
        [one] => format!("{who} is not {one}, the only approver"),
        many => format!("{who} is not one of {}", many.join(", ")),
    })
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
            within: vec![],
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
            within: vec![],
        };
        assert_eq!(
            sre_only.check(&r, "carol", None, &[]),
            Err("carol is not in group:sre".into())
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

    #[test]
    fn a_gate_tightens_the_policy_and_never_loosens_it() {
        let mut r = roster();
        r.groups
            .insert("dba".into(), vec!["bob".into(), "dave".into()]);
        let policy = rule(false);
        let dba = ["group:dba".to_string()];
        // Gate: one of dba, four eyes; the policy: two of sre or carol.
        let g = gate_rule(
            Some(&policy),
            &GateAsk {
                approvers: &dba,
                approvals: 1,
                four_eyes: true,
            },
        )
        .unwrap();
        assert_eq!((g.required, g.four_eyes), (2, true));
        assert_eq!(g.approvers, dba);
        assert_eq!(g.within, ["group:sre", "carol"]);
        assert_eq!(g.check(&r, "bob", Some("alice"), &[]), Ok(()));
        assert_eq!(
            g.check(&r, "alice", Some("carol"), &[]),
            Err("alice is not in group:dba".into())
        );
        // dave is in dba but the policy does not name him: the gate cannot widen it.
        assert_eq!(
            g.check(&r, "dave", Some("alice"), &[]),
            Err("dave is not one of group:sre, carol (the policy's [approval]; a gate's approvers cannot widen it)".into())
        );
        assert_eq!(
            g.check(&r, "bob", Some("bob"), &[]),
            Err("bob started this release; four eyes: someone else must approve".into())
        );
        assert_eq!(
            g.describe(&r),
            "2 of group:dba (bob, dave), not the person who started it, within the policy's group:sre, carol"
        );
        // A gate asking more people than the policy raises the count; without a policy
        // and without approvers or four eyes there is no rule.
        let more = gate_rule(
            Some(&policy),
            &GateAsk {
                approvers: &[],
                approvals: 3,
                four_eyes: false,
            },
        )
        .unwrap();
        assert_eq!((more.required, more.approvers.len()), (3, 2));
        assert_eq!(
            gate_rule(
                None,
                &GateAsk {
                    approvers: &[],
                    approvals: 2,
                    four_eyes: false
                }
            ),
            None
        );
        let alone = gate_rule(
            None,
            &GateAsk {
                approvers: &dba,
                approvals: 2,
                four_eyes: false,
            },
        )
        .unwrap();
        assert_eq!((alone.required, alone.within.len()), (2, 0));
    }
}
