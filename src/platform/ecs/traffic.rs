//! ALB traffic: the weighted `forward` action of a listener rule (or a listener's default
//! action) between the blue and green target groups, and the test rule that sends requests
//! carrying `x-cutover-revision: <revision>` to one target group.
//!
//! A split is read live before every change; cutover refuses to change a rule whose split is
//! not the one it last saw or set (an infrastructure-as-code run resetting the rule is a
//! known failure), unless the rule already holds the split asked for.

use std::collections::BTreeMap;
use std::fmt;

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, HttpHeaderConditionConfig, RuleCondition,
    TargetGroupTuple,
};

use super::aws::{AwsError, Clients, RetryPolicy, call};
use crate::platform::TEST_ROUTE_HEADER;

/// The weights of a forward action by target group ARN (relative ALB weights, 0-999).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split(pub BTreeMap<String, u32>);

impl Split {
    /// The weight of `tg` (0 when the rule does not name it).
    pub fn get(&self, tg: &str) -> u32 {
        self.0.get(tg).copied().unwrap_or(0)
    }
    /// The sum of the weights (in `u64`: a rule read back may hold any weights).
    pub fn total(&self) -> u64 {
        self.0.values().map(|w| u64::from(*w)).sum()
    }
    /// Equal as traffic: target groups at 0 count as absent.
    pub fn same_traffic(&self, other: &Split) -> bool {
        let nz = |s: &Split| -> BTreeMap<String, u32> {
            s.0.iter()
                .filter(|(_, w)| **w > 0)
                .map(|(k, w)| (k.clone(), *w))
                .collect()
        };
        let (a, b) = (nz(self), nz(other));
        // Relative weights: 90/10 and 9/1 send the same traffic.
        let (ta, tb) = (self.total(), other.total());
        a.len() == b.len()
            && a.iter().all(|(k, w)| {
                b.get(k).is_some_and(|v| {
                    u128::from(*w) * u128::from(tb) == u128::from(*v) * u128::from(ta)
                })
            })
    }
    /// Weights as integer percentages summing to 100 (largest remainder), by target group.
    pub fn percentages(&self) -> Vec<(String, u8)> {
        let total = self.total();
        if total == 0 {
            return Vec::new();
        }
        let mut rows: Vec<(String, u64, u64)> = self
            .0
            .iter()
            .filter(|(_, w)| **w > 0)
            .map(|(k, w)| {
                let w = u64::from(*w) * 100;
                (k.clone(), w / total, w % total)
            })
            .collect();
        let mut left = 100 - rows.iter().map(|r| r.1).sum::<u64>();
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by(|a, b| rows[*b].2.cmp(&rows[*a].2));
        for i in order {
            if left == 0 {
                break;
            }
            rows[i].1 += 1;
            left -= 1;
        }
        rows.into_iter().map(|(k, p, _)| (k, p as u8)).collect()
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(no forward action)");
        }
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(k, w)| format!("{}={w}", short_tg(k)))
            .collect();
        f.write_str(&parts.join(" "))
    }
}

/// `targetgroup/api-blue/73e2d6bc24d8a067` → `api-blue`, for messages.
pub fn short_tg(arn: &str) -> &str {
    arn.split("targetgroup/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or(arn)
}

/// The split a list of actions forwards with: the `forward` action's target groups, or
/// its single `TargetGroupArn` (weight 1). Empty when there is no forward action.
pub fn split_of(actions: &[Action]) -> Split {
    let mut out = BTreeMap::new();
    for a in actions {
        if a.r#type() != Some(&ActionTypeEnum::Forward) {
            continue;
        }
        match a.forward_config().map(|f| f.target_groups()) {
            Some(tgs) if !tgs.is_empty() => {
                for t in tgs {
                    if let Some(arn) = t.target_group_arn() {
                        // A target group without a weight gets ALB's default, 1.
                        let w = out.entry(arn.to_string()).or_insert(0u32);
                        *w = w.saturating_add(t.weight().unwrap_or(1).max(0) as u32);
                    }
                }
            }
            _ => {
                if let Some(arn) = a.target_group_arn() {
                    let w = out.entry(arn.to_string()).or_insert(0u32);
                    *w = w.saturating_add(1);
                }
            }
        }
    }
    Split(out)
}

/// `actions` with the forward action replaced by a weighted one for `split`; other actions
/// (authentication, say) and the stickiness setting are kept in place.
pub fn with_split(actions: &[Action], split: &Split) -> Vec<Action> {
    let tuples: Vec<TargetGroupTuple> = split
        .0
        .iter()
        .map(|(arn, w)| {
            TargetGroupTuple::builder()
                .target_group_arn(arn)
                .weight(i32::try_from(*w).unwrap_or(i32::MAX))
                .build()
        })
        .collect();
    let mut replaced = false;
    let mut out: Vec<Action> = actions
        .iter()
        .map(|a| {
            if a.r#type() != Some(&ActionTypeEnum::Forward) || replaced {
                let mut kept = a.clone();
                // DescribeRules never returns an OIDC client secret; resubmitting the
                // action without it needs this flag, or ModifyRule is rejected.
                if let Some(oidc) = kept.authenticate_oidc_config.as_mut()
                    && oidc.client_secret.is_none()
                {
                    oidc.use_existing_client_secret = Some(true);
                }
                return kept;
            }
            replaced = true;
            let mut fc = ForwardActionConfig::builder().set_target_groups(Some(tuples.clone()));
            if let Some(st) = a
                .forward_config()
                .and_then(|f| f.target_group_stickiness_config())
            {
                fc = fc.target_group_stickiness_config(st.clone());
            }
            let mut new = a.clone();
            new.target_group_arn = None;
            new.forward_config = Some(fc.build());
            new
        })
        .collect();
    if !replaced {
        out.push(
            Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .forward_config(
                    ForwardActionConfig::builder()
                        .set_target_groups(Some(tuples))
                        .build(),
                )
                .build(),
        );
    }
    out
}

/// Whether an ARN names a listener (weights in its default action) or a listener rule.
fn is_listener(arn: &str) -> bool {
    arn.contains(":listener/") && !arn.contains(":listener-rule/")
}

/// The listener a rule belongs to: `.../listener-rule/app/N/LB/L/R` → `.../listener/app/N/LB/L`.
pub fn listener_of(rule_arn: &str) -> String {
    if is_listener(rule_arn) {
        return rule_arn.to_string();
    }
    let swapped = rule_arn.replacen(":listener-rule/", ":listener/", 1);
    match swapped.rfind('/') {
        Some(i) => swapped[..i].to_string(),
        None => swapped,
    }
}

/// The load balancer's CloudWatch dimension (`app/NAME/ID`) from a listener or rule ARN.
pub fn load_balancer_dimension(arn: &str) -> Option<String> {
    let rest = arn
        .split(":listener-rule/")
        .nth(1)
        .or_else(|| arn.split(":listener/").nth(1))?;
    let parts: Vec<&str> = rest.split('/').collect();
    (parts.len() >= 3).then(|| parts[..3].join("/"))
}

/// The actions of a rule, or the default actions of a listener, read live.
pub async fn read_actions(
    clients: &Clients,
    retry: &RetryPolicy,
    arn: &str,
) -> Result<Vec<Action>, AwsError> {
    let elb = &clients.elb;
    if is_listener(arn) {
        let out = call(retry, "elbv2:DescribeListeners", || {
            elb.describe_listeners().listener_arns(arn).send()
        })
        .await?;
        Ok(out
            .listeners()
            .first()
            .map(|l| l.default_actions().to_vec())
            .unwrap_or_default())
    } else {
        let out = call(retry, "elbv2:DescribeRules", || {
            elb.describe_rules().rule_arns(arn).send()
        })
        .await?;
        Ok(out
            .rules()
            .first()
            .map(|r| r.actions().to_vec())
            .unwrap_or_default())
    }
}

/// Replace the actions of a rule (or a listener's default actions) in one call: ALB applies
/// it atomically, a request sees the old split or the new one.
pub async fn write_actions(
    clients: &Clients,
    retry: &RetryPolicy,
    arn: &str,
    actions: Vec<Action>,
) -> Result<(), AwsError> {
    let elb = &clients.elb;
    if is_listener(arn) {
        call(retry, "elbv2:ModifyListener", || {
            elb.modify_listener()
                .listener_arn(arn)
                .set_default_actions(Some(actions.clone()))
                .send()
        })
        .await?;
    } else {
        call(retry, "elbv2:ModifyRule", || {
            elb.modify_rule()
                .rule_arn(arn)
                .set_actions(Some(actions.clone()))
                .send()
        })
        .await?;
    }
    Ok(())
}

/// Point the test rule at `tg` for requests carrying `x-cutover-revision: revision`.
/// Conditions on other fields (a host header, say) are kept. Returns whether it changed.
pub async fn point_test_rule(
    clients: &Clients,
    retry: &RetryPolicy,
    rule_arn: &str,
    tg: &str,
    revision: &str,
) -> Result<bool, AwsError> {
    let elb = &clients.elb;
    let out = call(retry, "elbv2:DescribeRules", || {
        elb.describe_rules().rule_arns(rule_arn).send()
    })
    .await?;
    let rule = out.rules().first();
    let conditions = rule.map(|r| r.conditions().to_vec()).unwrap_or_default();
    let actions = rule.map(|r| r.actions().to_vec()).unwrap_or_default();
    let header_matches = conditions.iter().any(|c| is_test_header(c, Some(revision)));
    let target = Split(BTreeMap::from([(tg.to_string(), 1)]));
    if header_matches && split_of(&actions).same_traffic(&target) {
        return Ok(false);
    }
    let mut new_conditions: Vec<RuleCondition> = conditions
        .into_iter()
        .filter(|c| !is_test_header(c, None))
        .map(|mut c| {
            // DescribeRules fills both `values` and the typed config; ModifyRule takes one.
            if c.field() != Some("http-header") {
                c.values = None;
            }
            c
        })
        .collect();
    new_conditions.push(
        RuleCondition::builder()
            .field("http-header")
            .http_header_config(
                HttpHeaderConditionConfig::builder()
                    .http_header_name(TEST_ROUTE_HEADER)
                    .values(revision)
                    .build(),
            )
            .build(),
    );
    let new_actions = vec![
        Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .forward_config(
                ForwardActionConfig::builder()
                    .target_groups(
                        TargetGroupTuple::builder()
                            .target_group_arn(tg)
                            .weight(1)
                            .build(),
                    )
                    .build(),
            )
            .build(),
    ];
    call(retry, "elbv2:ModifyRule", || {
        elb.modify_rule()
            .rule_arn(rule_arn)
            .set_conditions(Some(new_conditions.clone()))
            .set_actions(Some(new_actions.clone()))
            .send()
    })
    .await?;
    Ok(true)
}

fn is_test_header(c: &RuleCondition, value: Option<&str>) -> bool {
    c.field() == Some("http-header")
        && c.http_header_config().is_some_and(|h| {
            h.http_header_name()
                .is_some_and(|n| n.eq_ignore_ascii_case(TEST_ROUTE_HEADER))
                && value.is_none_or(|v| h.values().iter().any(|x| x == v))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLUE: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/api-blue/1";
    const GREEN: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/api-green/2";

    fn split(pairs: &[(&str, u32)]) -> Split {
        Split(pairs.iter().map(|(k, w)| (k.to_string(), *w)).collect())
    }

    #[test]
    fn plain_forward_counts_as_all_traffic() {
        let a = Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .target_group_arn(BLUE)
            .build();
        let s = split_of(&[a]);
        assert!(s.same_traffic(&split(&[(BLUE, 100), (GREEN, 0)])));
        assert_eq!(s.percentages(), vec![(BLUE.to_string(), 100)]);
    }

    #[test]
    fn same_traffic_ignores_scale_and_zero_entries() {
        assert!(split(&[(BLUE, 90), (GREEN, 10)]).same_traffic(&split(&[(BLUE, 9), (GREEN, 1)])));
        assert!(
            !split(&[(BLUE, 90), (GREEN, 10)]).same_traffic(&split(&[(BLUE, 80), (GREEN, 20)]))
        );
        assert!(split(&[(BLUE, 5)]).same_traffic(&split(&[(BLUE, 100), (GREEN, 0)])));
        assert!(!split(&[]).same_traffic(&split(&[(BLUE, 1)])));
    }

    #[test]
    fn percentages_sum_to_100() {
        // Weights read back from a rule may be any size: no overflow (a fuzz finding).
        let big = split(&[(BLUE, u32::MAX), (GREEN, u32::MAX)]);
        assert_eq!(big.total(), 2 * u64::from(u32::MAX));
        let p = big.percentages();
        assert_eq!(
            p.iter().map(|(_, x)| u32::from(*x)).sum::<u32>(),
            100,
            "{p:?}"
        );
        assert!(big.same_traffic(&split(&[(BLUE, 1), (GREEN, 1)])));
        let p = split(&[(BLUE, 1), (GREEN, 2)]).percentages();
        assert_eq!(p.iter().map(|x| x.1 as u32).sum::<u32>(), 100);
        assert_eq!(p, vec![(BLUE.to_string(), 33), (GREEN.to_string(), 67)]);
    }

    #[test]
    fn with_split_keeps_other_actions_and_replaces_forward() {
        let auth = Action::builder()
            .r#type(ActionTypeEnum::AuthenticateOidc)
            .order(1)
            .build();
        let fwd = Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .order(2)
            .target_group_arn(BLUE)
            .build();
        let out = with_split(&[auth.clone(), fwd], &split(&[(BLUE, 75), (GREEN, 25)]));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], auth);
        let oidc = Action::builder()
            .r#type(ActionTypeEnum::AuthenticateOidc)
            .authenticate_oidc_config(
                aws_sdk_elasticloadbalancingv2::types::AuthenticateOidcActionConfig::builder()
                    .issuer("https://idp")
                    .client_id("cutover")
                    .build(),
            )
            .build();
        let kept = with_split(&[oidc], &split(&[(BLUE, 1)]));
        assert_eq!(
            kept[0]
                .authenticate_oidc_config()
                .and_then(|c| c.use_existing_client_secret()),
            Some(true)
        );
        assert_eq!(out[1].order(), Some(2));
        assert_eq!(out[1].target_group_arn(), None);
        assert_eq!(split_of(&out), split(&[(BLUE, 75), (GREEN, 25)]));
    }

    #[test]
    fn arns_are_taken_apart() {
        let rule = "arn:aws:elasticloadbalancing:us-east-1:1:listener-rule/app/prod/50dc/f2f7/9683";
        assert_eq!(
            listener_of(rule),
            "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/prod/50dc/f2f7"
        );
        assert_eq!(
            load_balancer_dimension(rule).as_deref(),
            Some("app/prod/50dc")
        );
        let listener = "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/prod/50dc/f2f7";
        assert_eq!(listener_of(listener), listener);
        assert_eq!(
            load_balancer_dimension(listener).as_deref(),
            Some("app/prod/50dc")
        );
        assert_eq!(short_tg(BLUE), "api-blue");
    }
}
