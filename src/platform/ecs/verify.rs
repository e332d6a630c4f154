//! Read-only checks of a release against the AWS account, before any change: clusters,
//! services and their deployment controllers, task definitions and containers, target
//! groups, listener rules, secrets, and the IAM settings visible on the task definition.
//! Also the task-definition diff `cutover diff` prints. Nothing here writes to AWS.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::aws::call;
use super::secrets::{self, SecretIssue};
use super::taskdef::{self, Change};
use super::traffic::{self, short_tg};
use super::{Controller, EcsPlatform, Svc};
use crate::platform::PlatformError;

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    /// The release cannot run as written.
    Problem,
    /// Worth knowing, not blocking.
    Note,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub service: String,
    /// What was checked: `cluster prod`, `listener rule`, `secret api/db`.
    pub subject: String,
    pub status: Status,
    pub detail: String,
}

/// Every check of a release.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    pub fn problems(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Problem)
            .count()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last = "";
        for c in &self.checks {
            if c.service != last {
                writeln!(f, "service {}", c.service)?;
                last = &c.service;
            }
            let mark = match c.status {
                Status::Ok => "ok     ",
                Status::Problem => "PROBLEM",
                Status::Note => "note   ",
            };
            writeln!(f, "  {mark} {}: {}", c.subject, c.detail)?;
        }
        let n = self.problems();
        if n == 0 {
            writeln!(f, "everything the release needs is there")
        } else {
            writeln!(f, "{n} problem(s): fix them before deploying")
        }
    }
}

struct Out<'a> {
    service: &'a str,
    checks: &'a mut Vec<Check>,
}

impl Out<'_> {
    fn add(&mut self, subject: impl Into<String>, status: Status, detail: impl Into<String>) {
        self.checks.push(Check {
            service: self.service.to_string(),
            subject: subject.into(),
            status,
            detail: detail.into(),
        });
    }
}

/// Check every service of the platform's release. AWS errors become problems in the
/// report (access denied is a finding too); only an unusable configuration is an error.
pub async fn verify(platform: &EcsPlatform) -> Report {
    let mut checks = Vec::new();
    for svc in platform.services() {
        let mut out = Out {
            service: &svc.name,
            checks: &mut checks,
        };
        verify_service(platform, svc, &mut out).await;
    }
    Report { checks }
}

async fn verify_service(p: &EcsPlatform, svc: &Svc, out: &mut Out<'_>) {
    let retry = p.retry_policy();
    let c = &svc.cfg;
    let ecs = &svc.clients.ecs;
    match call(retry, "ecs:DescribeClusters", || {
        ecs.describe_clusters().clusters(&c.cluster).send()
    })
    .await
    {
        Ok(r) => match r.clusters().iter().find(|x| x.status() == Some("ACTIVE")) {
            Some(_) => out.add(
                format!("cluster {}", c.cluster),
                Status::Ok,
                format!("active in {}", svc.clients.region()),
            ),
            None => {
                out.add(
                    format!("cluster {}", c.cluster),
                    Status::Problem,
                    format!(
                        "no active cluster of that name in {}: check `cluster` and the region",
                        svc.clients.region()
                    ),
                );
                return;
            }
        },
        Err(e) => {
            out.add(
                format!("cluster {}", c.cluster),
                Status::Problem,
                e.to_string(),
            );
            return;
        }
    }
    let desc = match p.describe(svc).await {
        Ok(d) => d,
        Err(e) => {
            out.add(format!("service {}", c.service), Status::Problem, e.message);
            return;
        }
    };
    let controller = match EcsPlatform::controller(svc, &desc) {
        Ok(ctl) if ctl == svc.wanted_controller() => {
            out.add(
                format!("service {}", c.service),
                Status::Ok,
                format!(
                    "{:?} deployment controller, desired count {}",
                    ctl,
                    desc.desired_count()
                ),
            );
            ctl
        }
        Ok(ctl) => {
            out.add(
                format!("service {}", c.service),
                Status::Problem,
                format!(
                    "strategy \"{}\" needs the {:?} deployment controller, the service uses {:?}",
                    svc.strategy.as_str(),
                    svc.wanted_controller(),
                    ctl
                ),
            );
            ctl
        }
        Err(e) => {
            out.add(format!("service {}", c.service), Status::Problem, e.message);
            return;
        }
    };
    // The running task definition: the primary task set's, else the service's.
    let current = desc
        .task_sets()
        .iter()
        .find(|t| t.status() == Some("PRIMARY"))
        .and_then(|t| t.task_definition())
        .or(desc.task_definition());
    if controller == Controller::External && desc.task_sets().is_empty() {
        out.add(
            "task sets",
            Status::Note,
            "the service has no task set yet: the release's revision becomes its first",
        );
    }
    match current {
        None => out.add(
            "task definition",
            Status::Problem,
            "the service runs no task definition to derive the release's revision from",
        ),
        Some(arn) => match p.task_definition(svc, arn).await {
            Err(e) => out.add("task definition", Status::Problem, e.message),
            Ok(td) => verify_task_definition(p, svc, &td, out).await,
        },
    }
    if let Some(count) = c.desired_count
        && count as i32 != desc.desired_count()
    {
        out.add(
            "desired count",
            Status::Note,
            format!(
                "the release asks for {count} task(s) per revision, the service's desired count is {}",
                desc.desired_count()
            ),
        );
    }
    verify_load_balancing(p, svc, controller, out).await;
}

async fn verify_task_definition(
    p: &EcsPlatform,
    svc: &Svc,
    td: &aws_sdk_ecs::types::TaskDefinition,
    out: &mut Out<'_>,
) {
    let c = &svc.cfg;
    let arn = td.task_definition_arn().unwrap_or("");
    let container = match taskdef::container(td, &c.container) {
        Ok(x) => x,
        Err(e) => {
            out.add(
                format!("container {}", c.container),
                Status::Problem,
                e.to_string(),
            );
            return;
        }
    };
    out.add(
        format!("container {}", c.container),
        Status::Ok,
        format!("in {arn}"),
    );
    let running = container.image().unwrap_or("");
    if running == c.image {
        out.add(
            "image",
            Status::Note,
            format!("{} already runs {running}", c.container),
        );
    } else if !c.image.contains(':') && !c.image.contains('@') {
        out.add(
            "image",
            Status::Problem,
            format!(
                "\"{}\" has no tag or digest: pin the image (`repo:2.3.1` or `repo@sha256:...`)",
                c.image
            ),
        );
    } else {
        out.add(
            "image",
            Status::Ok,
            format!("{running} → {} (the registry is not queried)", c.image),
        );
    }
    let new = match taskdef::derive(td, c, &BTreeMap::new()) {
        Ok(n) => n,
        Err(e) => {
            out.add("new task definition", Status::Problem, e.to_string());
            return;
        }
    };
    let mut refs: Vec<String> = taskdef::secret_refs(&new.def)
        .into_iter()
        .map(|(_, _, v)| v)
        .collect();
    refs.extend(c.secrets.iter().cloned());
    refs.sort();
    refs.dedup();
    if !refs.is_empty() && td.execution_role_arn().is_none() {
        out.add(
            "execution role",
            Status::Problem,
            "the task definition uses secrets but has no executionRoleArn: ECS could not fetch them",
        );
    } else if let Some(role) = td.execution_role_arn() {
        out.add("execution role", Status::Ok, role);
    }
    match td.task_role_arn() {
        Some(role) => out.add("task role", Status::Ok, role),
        None => out.add(
            "task role",
            Status::Note,
            "none: the containers get no AWS credentials",
        ),
    }
    for r in &refs {
        if taskdef::secret_ref(r).is_none() {
            out.add(
                format!("secret {r}"),
                Status::Note,
                "not a Secrets Manager ARN (an SSM parameter?): not checked",
            );
        }
    }
    match secrets::preflight(&svc.clients, p.retry_policy(), &refs).await {
        Ok(versions) => {
            for v in versions {
                out.add(
                    format!("secret {}", v.name),
                    Status::Ok,
                    format!("exists, readable, version {}", v.version_id),
                );
            }
        }
        Err(issues) => {
            for SecretIssue { reference, problem } in &issues {
                let issue = SecretIssue {
                    reference: reference.clone(),
                    problem: problem.clone(),
                };
                out.add(
                    format!("secret {reference}"),
                    Status::Problem,
                    issue.to_string(),
                );
            }
        }
    }
}

async fn verify_load_balancing(
    p: &EcsPlatform,
    svc: &Svc,
    controller: Controller,
    out: &mut Out<'_>,
) {
    let c = &svc.cfg;
    let retry = p.retry_policy();
    let elb = &svc.clients.elb;
    if !c.target_groups.is_empty() {
        match call(retry, "elbv2:DescribeTargetGroups", || {
            elb.describe_target_groups()
                .set_target_group_arns(Some(c.target_groups.clone()))
                .send()
        })
        .await
        {
            Ok(r) => {
                for tg in &c.target_groups {
                    match r
                        .target_groups()
                        .iter()
                        .find(|x| x.target_group_arn() == Some(tg.as_str()))
                    {
                        Some(x) => out.add(
                            format!("target group {}", short_tg(tg)),
                            Status::Ok,
                            format!(
                                "{} {} on port {}",
                                x.protocol().map_or("", |p| p.as_str()),
                                x.target_type().map_or("", |t| t.as_str()),
                                x.port().unwrap_or(0)
                            ),
                        ),
                        None => out.add(
                            format!("target group {}", short_tg(tg)),
                            Status::Problem,
                            "not found",
                        ),
                    }
                }
            }
            Err(e) => out.add("target groups", Status::Problem, e.to_string()),
        }
    }
    if controller == Controller::External
        && let Some(rule) = &c.listener_rule
    {
        match traffic::read_actions(&svc.clients, retry, rule).await {
            Ok(actions) => {
                let split = traffic::split_of(&actions);
                let foreign: Vec<&String> = split
                    .0
                    .keys()
                    .filter(|tg| !c.target_groups.contains(tg))
                    .collect();
                if split.0.is_empty() {
                    out.add(
                        "listener rule",
                        Status::Problem,
                        format!("{rule} has no forward action"),
                    );
                } else if !foreign.is_empty() {
                    out.add(
                        "listener rule",
                        Status::Problem,
                        format!(
                            "forwards to target groups the release does not name: {}",
                            foreign
                                .iter()
                                .map(|t| short_tg(t))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                } else {
                    out.add("listener rule", Status::Ok, format!("forwards {split}"));
                }
            }
            Err(e) if e.is_not_found() => out.add(
                "listener rule",
                Status::Problem,
                format!("{rule} not found"),
            ),
            Err(e) => out.add("listener rule", Status::Problem, e.to_string()),
        }
    }
    if let Some(rule) = &c.test_listener_rule {
        match call(retry, "elbv2:DescribeRules", || {
            elb.describe_rules().rule_arns(rule).send()
        })
        .await
        {
            Ok(r) if !r.rules().is_empty() => out.add(
                "test listener rule",
                Status::Ok,
                "exists; cutover points it at the candidate",
            ),
            Ok(_) => out.add(
                "test listener rule",
                Status::Problem,
                format!("{rule} not found"),
            ),
            Err(e) if e.is_not_found() => out.add(
                "test listener rule",
                Status::Problem,
                format!("{rule} not found"),
            ),
            Err(e) => out.add("test listener rule", Status::Problem, e.to_string()),
        }
    }
}

/// What the release would change in one service's task definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceDiff {
    pub service: String,
    /// The running task definition compared against.
    pub task_definition: String,
    pub changes: Vec<Change>,
}

/// The task-definition changes of every service, against what runs now. Secrets are
/// shown as references, never values, and are not pinned (no secret is read).
pub async fn diff(platform: &EcsPlatform) -> Result<Vec<ServiceDiff>, PlatformError> {
    let mut out = Vec::new();
    for svc in platform.services() {
        let desc = platform.describe(svc).await?;
        let current = desc
            .task_sets()
            .iter()
            .find(|t| t.status() == Some("PRIMARY"))
            .and_then(|t| t.task_definition())
            .or(desc.task_definition())
            .ok_or_else(|| svc.fatal("the ECS service runs no task definition"))?
            .to_string();
        let td = platform.task_definition(svc, &current).await?;
        let new = taskdef::derive(&td, &svc.cfg, &BTreeMap::new())
            .map_err(|e| svc.fatal(e.to_string()))?;
        out.push(ServiceDiff {
            service: svc.name.clone(),
            task_definition: current,
            changes: taskdef::diff(&td, &new.def, &svc.cfg.container),
        });
    }
    Ok(out)
}
