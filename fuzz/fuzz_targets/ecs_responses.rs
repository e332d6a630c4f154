//! How cutover interprets what AWS answers, without the network: CloudWatch
//! `GetMetricData` sums and percentiles (`counters_from`, `quantiles_from`), ALB rule
//! actions (`split_of`, `with_split`, percentages, ARNs taken apart), ECS deployments,
//! tasks and task states (`rollout_of`, `task_ip`, `fold_rollout`, `instance_state`),
//! task definitions (`secret_refs`, `derive`, `diff`). The SDK types are built from an
//! `arbitrary` description with any values a (misbehaving or emulated) service could send.
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use aws_sdk_ecs::types as ecs;
use aws_sdk_elasticloadbalancingv2::types as elb;
use cutover::platform::ecs::metrics::{counters_from, quantiles_from};
use cutover::platform::ecs::taskdef::{derive, diff, secret_ref, secret_refs};
use cutover::platform::ecs::traffic::{
    Split, listener_of, load_balancer_dimension, short_tg, split_of, with_split,
};
use cutover::platform::ecs::{fold_rollout, instance_state, rolling_percents, rollout_of, task_ip};
use cutover::platform::{InstanceHealth, InstanceState, RevisionHealth};
use cutover_fuzz::Text;
use libfuzzer_sys::fuzz_target;

const METRIC_IDS: &[&str] = &[
    "requests",
    "errors",
    "connection_errors",
    "slow",
    "samples",
    "p50",
    "p90",
    "p99",
];
const ARNS: &[&str] = &[
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/api-blue/73e2d6bc24d8a067",
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/api-green/2453ed029918f21f",
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/prod-alb/50dc6c495c0c9188/f2f7dc8efc522ab2/9683b2d02a6cabee",
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/prod-alb/50dc6c495c0c9188/f2f7dc8efc522ab2",
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:api/db-AbCdEf",
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:api/db:password:AWSCURRENT:",
];
const ACTION_TYPES: &[&str] = &["forward", "redirect", "authenticate-oidc", "fixed-response"];
const STATUSES: &[&str] = &["PRIMARY", "ACTIVE", "INACTIVE"];
const ROLLOUT: &[&str] = &["COMPLETED", "FAILED", "IN_PROGRESS"];
const TASK_STATUSES: &[&str] = &[
    "RUNNING",
    "PENDING",
    "STOPPED",
    "DEPROVISIONING",
    "STOPPING",
];

fn key_value(k: &Option<String>, v: &Option<String>) -> ecs::KeyValuePair {
    let mut kv = ecs::KeyValuePair::builder();
    if let Some(k) = k {
        kv = kv.name(k);
    }
    if let Some(v) = v {
        kv = kv.value(v);
    }
    kv.build()
}

#[derive(Arbitrary, Debug)]
struct Tuple {
    arn: Option<Text>,
    weight: Option<i32>,
}

#[derive(Arbitrary, Debug)]
struct Act {
    kind: Text,
    target_group: Option<Text>,
    forward: Option<Vec<Tuple>>,
}

#[derive(Arbitrary, Debug)]
struct Dep {
    id: Option<String>,
    status: Text,
    task_definition: Option<Text>,
    rollout: Option<Text>,
    reason: Option<String>,
    desired: i32,
    running: i32,
    pending: i32,
}

#[derive(Arbitrary, Debug)]
struct TaskIn {
    container_ips: Vec<Vec<Option<String>>>,
    attachments: Vec<(Text, Vec<(Option<String>, Option<String>)>)>,
}

#[derive(Arbitrary, Debug)]
struct Container {
    name: Option<Text>,
    image: Option<String>,
    env: Vec<(Option<String>, Option<String>)>,
    secrets: Vec<(String, Text)>,
}

#[derive(Arbitrary, Debug)]
struct TaskDef {
    arn: Option<String>,
    cpu: Option<String>,
    memory: Option<String>,
    containers: Vec<Container>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    metrics: Vec<(Text, Vec<f64>)>,
    actions: Vec<Act>,
    split: Vec<(Text, u32)>,
    arns: Vec<Text>,
    desired_count: i32,
    wanted: Text,
    deployments: Vec<Dep>,
    task: TaskIn,
    state: (
        Text,
        Option<String>,
        Option<String>,
        Option<(String, Option<String>)>,
    ),
    rolling: (u32, u32, u32),
    health: (u32, Vec<bool>),
    current: TaskDef,
    new_image: String,
    env: BTreeMap<String, String>,
    secret_env: BTreeMap<String, Text>,
    pins: Vec<(Text, String)>,
}

fn action(a: &Act) -> elb::Action {
    let mut b =
        elb::Action::builder().r#type(elb::ActionTypeEnum::from(a.kind.s(ACTION_TYPES).as_str()));
    if let Some(t) = &a.target_group {
        b = b.target_group_arn(t.s(ARNS));
    }
    if let Some(tuples) = &a.forward {
        let mut f = elb::ForwardActionConfig::builder();
        for t in tuples {
            let mut tb = elb::TargetGroupTuple::builder();
            if let Some(arn) = &t.arn {
                tb = tb.target_group_arn(arn.s(ARNS));
            }
            if let Some(w) = t.weight {
                tb = tb.weight(w);
            }
            f = f.target_groups(tb.build());
        }
        b = b.forward_config(f.build());
    }
    b.build()
}

fn task_definition(t: &TaskDef) -> ecs::TaskDefinition {
    let mut b = ecs::TaskDefinition::builder();
    if let Some(a) = &t.arn {
        b = b.task_definition_arn(a);
    }
    if let Some(c) = &t.cpu {
        b = b.cpu(c);
    }
    if let Some(m) = &t.memory {
        b = b.memory(m);
    }
    for c in &t.containers {
        let mut cb = ecs::ContainerDefinition::builder();
        if let Some(n) = &c.name {
            cb = cb.name(n.s(&["app", "sidecar"]));
        }
        if let Some(i) = &c.image {
            cb = cb.image(i);
        }
        for (k, v) in &c.env {
            cb = cb.environment(key_value(k, v));
        }
        for (name, from) in &c.secrets {
            if let Ok(s) = ecs::Secret::builder()
                .name(name)
                .value_from(from.s(ARNS))
                .build()
            {
                cb = cb.secrets(s);
            }
        }
        b = b.container_definitions(cb.build());
    }
    b.build()
}

fuzz_target!(|x: Input| {
    // CloudWatch.
    let mut sums: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (id, values) in &x.metrics {
        sums.entry(id.s(METRIC_IDS)).or_default().extend(values);
    }
    let _ = counters_from(&sums);
    let _ = quantiles_from(&sums);

    // ALB rules.
    let actions: Vec<elb::Action> = x.actions.iter().map(action).collect();
    let live = split_of(&actions);
    let _ = (live.to_string(), live.percentages(), live.total());
    let want = Split(x.split.iter().map(|(t, w)| (t.s(ARNS), *w)).collect());
    let _ = (
        want.same_traffic(&live),
        want.percentages(),
        want.to_string(),
    );
    let rewritten = with_split(&actions, &want);
    let _ = split_of(&rewritten);
    for a in &x.arns {
        let a = a.s(ARNS);
        let _ = (
            short_tg(&a),
            listener_of(&a),
            load_balancer_dimension(&a),
            secret_ref(&a),
        );
    }

    // ECS services, deployments, tasks.
    let mut svc = ecs::Service::builder().desired_count(x.desired_count);
    for d in &x.deployments {
        let mut b = ecs::Deployment::builder()
            .status(d.status.s(STATUSES))
            .desired_count(d.desired)
            .running_count(d.running)
            .pending_count(d.pending);
        if let Some(id) = &d.id {
            b = b.id(id);
        }
        if let Some(t) = &d.task_definition {
            b = b.task_definition(t.s(&["td:1", "td:2"]));
        }
        if let Some(r) = &d.rollout {
            b = b.rollout_state(ecs::DeploymentRolloutState::from(r.s(ROLLOUT).as_str()));
        }
        if let Some(r) = &d.reason {
            b = b.rollout_state_reason(r);
        }
        svc = svc.deployments(b.build());
    }
    let svc = svc.build();
    let _ = rollout_of(&svc, &x.wanted.s(&["td:1", "td:2"]), "v2".into());
    let mut health = RevisionHealth {
        revision: "v2".into(),
        desired: x.health.0,
        instances: x
            .health
            .1
            .iter()
            .enumerate()
            .map(|(i, ok)| InstanceHealth {
                id: i.to_string(),
                address: String::new(),
                state: if *ok {
                    InstanceState::Healthy
                } else {
                    InstanceState::Starting
                },
            })
            .collect(),
    };
    for d in svc.deployments() {
        fold_rollout(&mut health, d);
    }
    let mut task = ecs::Task::builder();
    for ips in &x.task.container_ips {
        let mut c = ecs::Container::builder();
        for ip in ips {
            let mut n = ecs::NetworkInterface::builder();
            if let Some(ip) = ip {
                n = n.private_ipv4_address(ip);
            }
            c = c.network_interfaces(n.build());
        }
        task = task.containers(c.build());
    }
    for (kind, details) in &x.task.attachments {
        let mut a = ecs::Attachment::builder().r#type(kind.s(&["ElasticNetworkInterface"]));
        for (k, v) in details {
            a = a.details(key_value(k, v));
        }
        task = task.attachments(a.build());
    }
    let _ = task_ip(&task.build());
    let (status, container, stopped, target) = &x.state;
    let target = target.as_ref().map(|(s, d)| (s.as_str(), d.as_deref()));
    let _ = instance_state(
        &status.s(TASK_STATUSES),
        container.as_deref(),
        stopped.as_deref(),
        target,
    );
    let rolling = cutover::release::Rolling {
        batch: x.rolling.0,
        max_unavailable: x.rolling.1,
    };
    let _ = rolling_percents(&rolling, x.rolling.2);

    // Task definitions.
    let current = task_definition(&x.current);
    let _ = secret_refs(&current);
    let secret_env: BTreeMap<String, String> = x
        .secret_env
        .iter()
        .map(|(k, v)| (k.clone(), v.s(ARNS)))
        .collect();
    let cfg = serde_json::json!({
        "cluster": "prod", "service": "api", "container": "app", "image": x.new_image,
        "env": x.env, "secret_env": secret_env,
    });
    let Ok(cfg) = serde_json::from_value::<cutover::release::EcsService>(cfg) else {
        return;
    };
    let pins: BTreeMap<String, String> =
        x.pins.iter().map(|(a, v)| (a.s(ARNS), v.clone())).collect();
    if let Ok(new) = derive(&current, &cfg, &pins) {
        let _ = diff(&current, &new.def, "app");
    }
});
