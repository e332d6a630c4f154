//! The release's approval gates against the policy before a fresh run starts: a gate's
//! `approvers` may name `group:NAME` only from the policy's `[roster]`, and a gate that
//! nobody could ever approve (its approvers and the policy's share nobody it names by
//! name, or fewer people than it needs) is refused now rather than found at the gate.
//! The rule each gate enforces is `roster::gate_rule`: a gate tightens the policy's
//! `[approval]`, never loosens it. A tenant's `[tenant.approval]` is a gate like any other.

use super::roster::{GateAsk, gate_rule};
use super::{Policy, Refusal};
use crate::release::{Release, Step};

/// Every problem with the release's approval gates (its services' approval steps and its
/// tenants' `[tenant.approval]`) under `policy`.
pub fn check_gates(policy: &Policy, release: &Release) -> Vec<Refusal> {
    let mut gates: Vec<(String, GateAsk)> = Vec::new();
    for s in &release.services {
        for (i, step) in s.steps.iter().enumerate() {
            if let Step::Approval {
                approvers,
                approvals,
                four_eyes,
                ..
            } = step
            {
                gates.push((
                    format!("the approval gate of {} (step {})", s.name, i + 1),
                    GateAsk {
                        approvers,
                        approvals: *approvals,
                        four_eyes: *four_eyes,
                    },
                ));
            }
        }
    }
    for t in &release.tenants {
        if let Some(a) = &t.approval {
            gates.push((
                format!("the [tenant.approval] of tenant {}", t.name),
                GateAsk {
                    approvers: &a.approvers,
                    approvals: a.approvals,
                    four_eyes: a.four_eyes,
                },
            ));
        }
    }
    gates
        .iter()
        .flat_map(|(at, ask)| check_gate(policy, at, ask))
        .collect()
}

/// One gate's problems: a `group:NAME` the roster lacks, or nobody who could ever answer.
fn check_gate(policy: &Policy, at: &str, ask: &GateAsk) -> Vec<Refusal> {
    let mut out = Vec::new();
    for a in ask.approvers {
        if let Some(g) = a.strip_prefix("group:")
            && !policy.roster.groups.contains_key(g)
        {
            out.push(Refusal::Invalid {
                message: format!(
                    "{at} names group:{g}, which the policy's [roster] does not have ({}); add it to [roster] groups or name the operators",
                    match &policy.path {
                        Some(p) => format!("policy {}", p.display()),
                        None => "no policy file".to_string(),
                    }
                ),
            });
        }
    }
    let Some(rule) = gate_rule(policy.approval.as_ref(), ask) else {
        return out;
    };
    if rule.approvers.is_empty() {
        return out;
    }
    // The people the gate's names reach (groups expanded), allowed by the policy.
    let mut people: Vec<&str> = Vec::new();
    for a in &rule.approvers {
        match a.strip_prefix("group:") {
            Some(g) => people.extend(
                policy
                    .roster
                    .groups
                    .get(g)
                    .into_iter()
                    .flatten()
                    .map(String::as_str),
            ),
            None => people.push(a),
        }
    }
    people.sort_unstable();
    people.dedup();
    people.retain(|p| rule.check(&policy.roster, p, None, &[]).is_ok());
    if (people.len() as u64) < u64::from(rule.required) {
        out.push(Refusal::Invalid {
            message: format!(
                "{at} can never be approved: it needs {} and only {} qualify ({}); a gate's approvers narrow the policy's [approval], they cannot widen it",
                rule.describe(&policy.roster),
                people.len(),
                if people.is_empty() {
                    "nobody".to_string()
                } else {
                    people.join(", ")
                }
            ),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{ApprovalRule, Roster};

    fn release(gate: &str) -> Release {
        let text = format!(
            r#"[release]
name = "r"
platform = "local"

[[service]]
name = "api"
strategy = "canary"
steps = [{{ set_weight = 10 }}, {{ pause = "1m" }}, {gate}]
[service.local]
listen = "127.0.0.1:18431"
command = ["cutover", "demo-service", "--port", "{{port}}", "--revision", "{{revision}}"]
current = {{ revision = "v1" }}
target = {{ revision = "v2" }}
"#
        );
        crate::release::load_test_text(&text).unwrap().release
    }

    fn policy() -> Policy {
        Policy {
            roster: Roster {
                groups: [
                    ("sre".to_string(), vec!["alice".into(), "bob".into()]),
                    ("dba".to_string(), vec!["bob".into(), "dave".into()]),
                ]
                .into(),
            },
            approval: Some(ApprovalRule {
                approvers: vec!["group:sre".into()],
                required: 1,
                four_eyes: false,
                within: vec![],
            }),
            ..Policy::default()
        }
    }

    fn messages(p: &Policy, gate: &str) -> Vec<String> {
        check_gates(p, &release(gate))
            .iter()
            .map(Refusal::message)
            .collect()
    }

    #[test]
    fn a_gate_within_the_policy_passes() {
        assert_eq!(
            messages(
                &policy(),
                r#"{ approval = "10m", approvers = ["group:dba"] }"#
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            messages(&policy(), r#"{ approval = "10m" }"#),
            Vec::<String>::new()
        );
    }

    #[test]
    fn an_unknown_group_and_a_gate_nobody_can_answer_are_refused_before_the_start() {
        let m = messages(
            &policy(),
            r#"{ approval = "10m", approvers = ["group:ops"] }"#,
        );
        assert!(
            m[0].starts_with("the approval gate of api (step 3) names group:ops, which the policy's [roster] does not have"),
            "{m:#?}"
        );
        // dba ∩ sre is bob alone; two people can never approve.
        let m = messages(
            &policy(),
            r#"{ approval = "10m", approvers = ["group:dba"], approvals = 2 }"#,
        );
        assert_eq!(m.len(), 1, "{m:#?}");
        assert!(
            m[0].starts_with("the approval gate of api (step 3) can never be approved: it needs 2 of group:dba (bob, dave), within the policy's group:sre and only 1 qualify (bob)"),
            "{m:#?}"
        );
        // Without a policy a named group cannot be resolved.
        let m = messages(
            &Policy::default(),
            r#"{ approval = "10m", approvers = ["group:dba"] }"#,
        );
        assert!(m[0].contains("no policy file"), "{m:#?}");
    }

    #[test]
    fn a_tenant_approval_is_checked_like_a_gate() {
        let text = r#"[release]
name = "r"
platform = "local"

[vars]
port = 18440

[[tenant]]
name = "acme"
vars = { port = 18441 }
[tenant.approval]
timeout = "30m"
approvers = ["group:dba"]
approvals = 2

[[tenant]]
name = "globex"
vars = { port = 18442 }
[tenant.approval]
timeout = "30m"
approvers = ["group:ops"]

[[ring]]
name = "all"
select = ["acme", "globex"]

[[service]]
name = "api"
strategy = "canary"
steps = [{ set_weight = 10 }, { pause = "1m" }]
[service.local]
listen = "127.0.0.1:${port}"
command = ["cutover", "demo-service", "--port", "{port}", "--revision", "{revision}"]
current = { revision = "v1" }
target = { revision = "v2" }
"#;
        let release = crate::release::load_test_text(text).unwrap().release;
        let m: Vec<String> = check_gates(&policy(), &release)
            .iter()
            .map(Refusal::message)
            .collect();
        assert_eq!(m.len(), 3, "{m:#?}");
        assert!(
            m[0].starts_with("the [tenant.approval] of tenant acme can never be approved: it needs 2 of group:dba (bob, dave), within the policy's group:sre and only 1 qualify (bob)"),
            "{m:#?}"
        );
        assert!(
            m[1].starts_with("the [tenant.approval] of tenant globex names group:ops, which the policy's [roster] does not have"),
            "{m:#?}"
        );
        assert!(
            m[2].starts_with("the [tenant.approval] of tenant globex can never be approved"),
            "{m:#?}"
        );
    }
}
