//! The ECS platform against moto (an AWS emulator): task definitions, task sets, weighted
//! listener rules, rolling updates, secrets, CloudWatch, verify/diff, and faults injected
//! by a proxy. Needs moto: `MOTO_ENDPOINT`, or the venv described in tests/support/moto.rs;
//! without either the tests fail.

mod support;

use std::time::Duration;

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
use cutover::metrics::RevisionCounters;
use cutover::platform::Platform;
use cutover::platform::ecs::EcsPlatform;
use cutover::platform::ecs::verify::{self, Status};
use cutover::policy::scan::PinMode;
use support::ecs::*;
use support::fault::{Fault, FaultProxy};
use support::moto;

fn w(pairs: &[(&str, u8)]) -> Vec<(String, u8)> {
    pairs.iter().map(|(r, p)| (r.to_string(), *p)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_runs_step_by_step_through_the_platform_trait() {
    let ep = &moto::moto().endpoint;
    let conf = config(ep).await;
    let fx = external(&conf, ep, "canary").await;
    let c = clients(&conf);
    let p =
        EcsPlatform::from_release_with_retry(&fx.canary_release(""), &conf, fast_retry()).unwrap();
    assert_eq!(p.name(), "ecs");
    assert_eq!(p.weights("api").await.unwrap(), w(&[("1.0", 100)]));

    // Launch: a new task definition revision from the running one, a task set on green.
    let before = revisions(&c, &fx.family).await;
    p.launch("api", "2.0", 0).await.unwrap();
    assert_eq!(revisions(&c, &fx.family).await, before + 1);
    let desc = c
        .ecs
        .describe_services()
        .cluster(&fx.cluster)
        .services(&fx.service)
        .send()
        .await
        .unwrap();
    let sets = desc.services()[0].task_sets();
    assert_eq!(sets.len(), 2);
    let v2 = sets
        .iter()
        .find(|t| t.external_id() == Some("2.0"))
        .expect("task set of 2.0");
    assert_eq!(
        v2.load_balancers()[0].target_group_arn(),
        Some(fx.green.as_str())
    );
    let td2 = c
        .ecs
        .describe_task_definition()
        .task_definition(v2.task_definition().unwrap())
        .send()
        .await
        .unwrap();
    let td2 = td2.task_definition().unwrap();
    assert_eq!(td2.container_definitions()[0].image(), Some("repo/api:2.0"));
    assert_eq!(td2.execution_role_arn(), Some(EXEC_ROLE));
    // The running revision is untouched.
    let td1 = c
        .ecs
        .describe_task_definition()
        .task_definition(&fx.td_v1)
        .send()
        .await
        .unwrap();
    assert_eq!(
        td1.task_definition().unwrap().container_definitions()[0].image(),
        Some("repo/api:1.0")
    );
    // Launching again is a no-op.
    p.launch("api", "2.0", 0).await.unwrap();
    assert_eq!(revisions(&c, &fx.family).await, before + 1);

    // Test traffic reaches the candidate at weight 0 through the test rule.
    let route = p.test_route("api", "2.0").await.unwrap();
    assert_eq!(
        route.header,
        ("x-cutover-revision".to_string(), "2.0".to_string())
    );
    assert!(
        route.base_url.starts_with("http://") && route.base_url.ends_with(":80"),
        "{}",
        route.base_url
    );
    let tr = c
        .elb
        .describe_rules()
        .rule_arns(&fx.test_rule)
        .send()
        .await
        .unwrap();
    let cond = tr.rules()[0]
        .conditions()
        .iter()
        .find_map(|c| c.http_header_config())
        .unwrap();
    assert_eq!(cond.values(), ["2.0"]);
    assert_eq!(
        rule_weights(&c, &fx.test_rule).await,
        vec![(fx.green.clone(), 1)]
    );

    // Health: moto runs no tasks at desired count 0; the platform reports that honestly.
    let h = p.health("api", "2.0").await.unwrap();
    assert_eq!(h.revision, "2.0");
    assert_eq!(h.desired, 0);
    assert!(h.instances.is_empty());
    assert!(!h.all_healthy());

    // Shift step by step; every step is read back from the rule itself.
    for pct in [5u8, 25, 50] {
        p.set_weights("api", &w(&[("1.0", 100 - pct), ("2.0", pct)]))
            .await
            .unwrap();
        assert_eq!(
            rule_weights(&c, &fx.rule).await,
            {
                let mut v = vec![
                    (fx.blue.clone(), i32::from(100 - pct)),
                    (fx.green.clone(), i32::from(pct)),
                ];
                v.sort();
                v
            },
            "at {pct}%"
        );
        assert_eq!(
            p.weights("api").await.unwrap(),
            w(&[("1.0", 100 - pct), ("2.0", pct)])
        );
        assert_eq!(
            primary(&c, &fx.cluster, &fx.service).await.as_deref(),
            Some("1.0")
        );
    }
    // Setting the split in force again is a no-op that succeeds.
    p.set_weights("api", &w(&[("1.0", 50), ("2.0", 50)]))
        .await
        .unwrap();

    // Promote: all traffic to 2.0, which becomes the primary task set.
    p.set_weights("api", &w(&[("2.0", 100)])).await.unwrap();
    assert_eq!(p.weights("api").await.unwrap(), w(&[("2.0", 100)]));
    assert_eq!(
        primary(&c, &fx.cluster, &fx.service).await.as_deref(),
        Some("2.0")
    );
    let inv = p.inventory().await.unwrap();
    assert_eq!(inv.len(), 2);
    assert!(inv.iter().any(|r| r.revision == "2.0" && r.weight == 100));
    assert!(inv.iter().any(|r| r.revision == "1.0" && r.weight == 0));

    // Retiring the revision with traffic is refused; the old one drains and goes.
    let err = p
        .retire("api", "2.0", Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(err.message.contains("primary"), "{err}");
    p.retire("api", "1.0", Duration::from_secs(7))
        .await
        .unwrap();
    let attrs = c
        .elb
        .describe_target_group_attributes()
        .target_group_arn(&fx.blue)
        .send()
        .await
        .unwrap();
    let delay = attrs
        .attributes()
        .iter()
        .find(|a| a.key() == Some("deregistration_delay.timeout_seconds"))
        .and_then(|a| a.value());
    assert_eq!(delay, Some("7"));
    let inv = p.inventory().await.unwrap();
    assert_eq!(inv.len(), 1);
    assert_eq!(inv[0].revision, "2.0");
    // Retiring what is gone is a no-op.
    p.retire("api", "1.0", Duration::from_secs(7))
        .await
        .unwrap();
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_restores_the_weights_and_the_primary_task_set() {
    let ep = &moto::moto().endpoint;
    let conf = config(ep).await;
    let fx = external(&conf, ep, "rollback").await;
    let c = clients(&conf);
    let p =
        EcsPlatform::from_release_with_retry(&fx.canary_release(""), &conf, fast_retry()).unwrap();
    p.launch("api", "2.0", 0).await.unwrap();
    p.set_weights("api", &w(&[("1.0", 75), ("2.0", 25)]))
        .await
        .unwrap();
    p.set_weights("api", &w(&[("2.0", 100)])).await.unwrap();
    assert_eq!(
        primary(&c, &fx.cluster, &fx.service).await.as_deref(),
        Some("2.0")
    );
    // Instant rollback: the old task set never stopped.
    p.set_weights("api", &w(&[("1.0", 100)])).await.unwrap();
    assert_eq!(p.weights("api").await.unwrap(), w(&[("1.0", 100)]));
    let mut expected = vec![(fx.blue.clone(), 100), (fx.green.clone(), 0)];
    expected.sort();
    assert_eq!(rule_weights(&c, &fx.rule).await, expected);
    assert_eq!(
        primary(&c, &fx.cluster, &fx.service).await.as_deref(),
        Some("1.0")
    );
    // The candidate is then taken out.
    p.retire("api", "2.0", Duration::from_secs(1))
        .await
        .unwrap();
    let inv = p.inventory().await.unwrap();
    assert_eq!(inv.len(), 1);
    assert_eq!((inv[0].revision.as_str(), inv[0].weight), ("1.0", 100));
    // Naming the retired revision at 0 is fine; at any other weight it is refused.
    p.set_weights("api", &w(&[("1.0", 100), ("2.0", 0)]))
        .await
        .unwrap();
    assert!(
        p.set_weights("api", &w(&[("1.0", 90), ("2.0", 10)]))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_changed_by_someone_else_is_not_touched() {
    let ep = &moto::moto().endpoint;
    let conf = config(ep).await;
    let fx = external(&conf, ep, "drift").await;
    let c = clients(&conf);
    let p =
        EcsPlatform::from_release_with_retry(&fx.canary_release(""), &conf, fast_retry()).unwrap();
    p.launch("api", "2.0", 0).await.unwrap();
    p.set_weights("api", &w(&[("1.0", 90), ("2.0", 10)]))
        .await
        .unwrap();
    // An infrastructure-as-code run rewrites the rule behind cutover's back.
    c.elb
        .modify_rule()
        .rule_arn(&fx.rule)
        .actions(forward(&[(&fx.blue, 60), (&fx.green, 40)]))
        .send()
        .await
        .unwrap();
    let err = p
        .set_weights("api", &w(&[("1.0", 75), ("2.0", 25)]))
        .await
        .unwrap_err();
    assert!(err.message.contains("changed outside cutover"), "{err}");
    assert!(!err.retryable);
    let mut untouched = vec![(fx.blue.clone(), 60), (fx.green.clone(), 40)];
    untouched.sort();
    assert_eq!(rule_weights(&c, &fx.rule).await, untouched);
    // Asking for the split already in force is fine (idempotent), as is adopting the
    // live split after a person looked.
    p.set_weights("api", &w(&[("1.0", 60), ("2.0", 40)]))
        .await
        .unwrap();
    c.elb
        .modify_rule()
        .rule_arn(&fx.rule)
        .actions(forward(&[(&fx.blue, 100), (&fx.green, 0)]))
        .send()
        .await
        .unwrap();
    assert!(
        p.set_weights("api", &w(&[("1.0", 50), ("2.0", 50)]))
            .await
            .is_err()
    );
    p.accept_live_weights("api").await.unwrap();
    p.set_weights("api", &w(&[("1.0", 50), ("2.0", 50)]))
        .await
        .unwrap();
    assert_eq!(
        p.weights("api").await.unwrap(),
        w(&[("1.0", 50), ("2.0", 50)])
    );
    // A restarted cutover told (from its journal) what it set last catches a change made
    // while it was not running.
    let resumed =
        EcsPlatform::from_release_with_retry(&fx.canary_release(""), &conf, fast_retry()).unwrap();
    resumed
        .expect_weights("api", &w(&[("1.0", 90), ("2.0", 10)]))
        .await
        .unwrap();
    let err = resumed
        .set_weights("api", &w(&[("1.0", 25), ("2.0", 75)]))
        .await
        .unwrap_err();
    assert!(err.message.contains("changed outside cutover"), "{err}");
    // A split naming a revision without a task set is refused before anything changes.
    let err = p
        .set_weights("api", &w(&[("1.0", 50), ("9.9", 50)]))
        .await
        .unwrap_err();
    assert!(err.message.contains("\"9.9\" has no task set"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_and_rollback_through_update_service() {
    let ep = &moto::moto().endpoint;
    let conf = config(ep).await;
    let fx = rolling(&conf, ep, "rolling").await;
    let c = clients(&conf);
    let p = EcsPlatform::from_release_with_retry(&fx.release(), &conf, fast_retry()).unwrap();
    assert_eq!(p.replicas("worker").await.unwrap(), 2);
    assert_eq!(p.weights("worker").await.unwrap(), w(&[("1.0", 100)]));
    p.launch("worker", "2.0", 2).await.unwrap();
    let desc = c
        .ecs
        .describe_services()
        .cluster(&fx.cluster)
        .services(&fx.service)
        .send()
        .await
        .unwrap();
    let s = &desc.services()[0];
    let td = s.task_definition().unwrap().to_string();
    assert_ne!(td, fx.td_v1);
    let dc = s.deployment_configuration().unwrap();
    assert_eq!(dc.minimum_healthy_percent(), Some(100));
    assert_eq!(dc.maximum_percent(), Some(150));
    let new = c
        .ecs
        .describe_task_definition()
        .task_definition(&td)
        .send()
        .await
        .unwrap();
    let app = &new.task_definition().unwrap().container_definitions()[0];
    assert_eq!(app.image(), Some("repo/worker:2.0"));
    assert!(
        app.environment()
            .iter()
            .any(|kv| kv.name() == Some("MODE") && kv.value() == Some("fast"))
    );
    assert_eq!(p.weights("worker").await.unwrap(), w(&[("2.0", 100)]));
    // moto never moves a deployment forward; the platform says so rather than inventing
    // progress (real ECS reports IN_PROGRESS, then COMPLETED or FAILED).
    let r = p.rollout("worker").await.unwrap();
    assert_eq!(r.revision, "2.0");
    // moto 5.2 leaves the old PRIMARY deployment in place after UpdateService.
    assert_eq!(r.state, "NOT_STARTED", "{r:?}");
    assert_eq!(r.task_definition, td);
    // Launch again: already there.
    p.launch("worker", "2.0", 2).await.unwrap();
    // Roll back: the service goes back to the previous task definition.
    p.set_weights("worker", &w(&[("1.0", 100)])).await.unwrap();
    let desc = c
        .ecs
        .describe_services()
        .cluster(&fx.cluster)
        .services(&fx.service)
        .send()
        .await
        .unwrap();
    assert_eq!(
        desc.services()[0].task_definition(),
        Some(fx.td_v1.as_str())
    );
    assert_eq!(p.weights("worker").await.unwrap(), w(&[("1.0", 100)]));
    // A split between revisions means nothing to a rolling service.
    assert!(
        p.set_weights("worker", &w(&[("1.0", 50), ("2.0", 50)]))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rolling_strategy_refuses_an_external_service() {
    let ep = &moto::moto().endpoint;
    let conf = config(ep).await;
    let fx = external(&conf, ep, "mismatch").await;
    // A rolling release pointed at an EXTERNAL service: moto would accept the calls that
    // real ECS rejects; the platform checks the controller first.
    let r = release(&format!(
        r#"
[release]
name = "x"
platform = "ecs"
[[service]]
name = "api"
strategy = "rolling"
[service.ecs]
cluster = "{}"
service = "{}"
container = "app"
image = "repo/api:2.0"
region = "us-east-1"
"#,
        fx.cluster, fx.service
    ));
    let p = EcsPlatform::from_release_with_retry(&r, &conf, fast_retry()).unwrap();
    let err = p.launch("api", "2.0", 1).await.unwrap_err();
    assert!(
        err.message.contains("needs the ECS deployment controller"),
        "{err}"
    );
    let report = verify::verify(&p).await;
    assert!(report.problems() >= 1, "{report}");
}

async fn secret(c: &support::moto::Moto, conf: &aws_config::SdkConfig, name: &str) -> String {
    let _ = c;
    let cl = clients(conf);
    cl.secrets
        .create_secret()
        .name(name)
        .secret_string("hunter2-do-not-print")
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_checked_pinned_and_never_shown() {
    let m = moto::moto();
    let ep = &m.endpoint;
    let conf = config(ep).await;
    let fx = external(&conf, ep, "secrets").await;
    let c = clients(&conf);
    let arn = secret(m, &conf, &format!("{}/db", fx.name)).await;
    let version = current_version(&c, &arn).await;
    let p = EcsPlatform::from_release_with_retry(
        &fx.canary_release(&format!(
            "secrets = [\"{arn}\"]\nsecret_env = {{ DB_PASSWORD = \"{arn}\" }}"
        )),
        &conf,
        fast_retry(),
    )
    .unwrap();
    p.launch("api", "2.0", 0).await.unwrap();
    let recorded = p.secret_versions("api");
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].arn, arn);
    assert_eq!(recorded[0].version_id, version);
    // The new task definition references exactly that version.
    let desc = c
        .ecs
        .describe_services()
        .cluster(&fx.cluster)
        .services(&fx.service)
        .send()
        .await
        .unwrap();
    let td = desc.services()[0]
        .task_sets()
        .iter()
        .find(|t| t.external_id() == Some("2.0"))
        .unwrap()
        .task_definition()
        .unwrap()
        .to_string();
    let td = c
        .ecs
        .describe_task_definition()
        .task_definition(&td)
        .send()
        .await
        .unwrap();
    let s = &td.task_definition().unwrap().container_definitions()[0].secrets()[0];
    assert_eq!(s.name(), "DB_PASSWORD");
    assert_eq!(s.value_from(), format!("{arn}:::{version}"));
    // Nothing printable carries the value.
    let report = verify::verify(&p).await;
    assert!(!format!("{report}{report:?}").contains("hunter2"));
    assert!(!format!("{recorded:?}").contains("hunter2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_deleted_secret_stops_the_launch_before_any_change() {
    let m = moto::moto();
    let ep = &m.endpoint;
    let conf = config(ep).await;
    let fx = external(&conf, ep, "nosecret").await;
    let c = clients(&conf);
    let missing = format!(
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:{}/gone-AbCdEf",
        fx.name
    );
    let doomed = secret(m, &conf, &format!("{}/doomed", fx.name)).await;
    c.secrets
        .delete_secret()
        .secret_id(&doomed)
        .recovery_window_in_days(7)
        .send()
        .await
        .unwrap();
    let p = EcsPlatform::from_release_with_retry(
        &fx.canary_release(&format!(
            "secret_env = {{ A = \"{missing}\", B = \"{doomed}\" }}"
        )),
        &conf,
        fast_retry(),
    )
    .unwrap();
    let before = revisions(&c, &fx.family).await;
    let err = p.launch("api", "2.0", 0).await.unwrap_err();
    assert!(err.message.contains("secrets preflight failed"), "{err}");
    assert!(err.message.contains("does not exist"), "{err}");
    assert!(err.message.contains("scheduled for deletion"), "{err}");
    assert!(!err.message.contains("hunter2"));
    assert_eq!(
        revisions(&c, &fx.family).await,
        before,
        "no task definition registered"
    );
    let inv = p.inventory().await.unwrap();
    assert_eq!(inv.len(), 1, "no task set created");
    // verify reports both, as problems.
    let report = verify::verify(&p).await;
    let secret_problems: Vec<_> = report
        .checks
        .iter()
        .filter(|c| c.subject.starts_with("secret") && c.status == Status::Problem)
        .collect();
    assert_eq!(secret_problems.len(), 2, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudwatch_counters_come_from_put_metric_data_and_missing_stays_missing() {
    let ep = &moto::moto().endpoint;
    let conf = config(ep).await;
    let fx = external(&conf, ep, "metrics").await;
    let c = clients(&conf);
    let p =
        EcsPlatform::from_release_with_retry(&fx.canary_release(""), &conf, fast_retry()).unwrap();
    p.launch("api", "2.0", 0).await.unwrap();
    let source = p.metrics();
    assert_eq!(source.name(), "cloudwatch");
    // No data yet: unknown, not zero.
    assert_eq!(
        source
            .counters("api", "2.0", Duration::from_millis(500))
            .await
            .unwrap(),
        None
    );
    let tg_dim = fx.green.rsplit(':').next().unwrap().to_string();
    let lb_dim = fx
        .load_balancer
        .split(":loadbalancer/")
        .nth(1)
        .unwrap()
        .to_string();
    let dims = vec![
        Dimension::builder()
            .name("TargetGroup")
            .value(&tg_dim)
            .build(),
        Dimension::builder()
            .name("LoadBalancer")
            .value(&lb_dim)
            .build(),
    ];
    let now = std::time::SystemTime::now();
    // Counters start at the task set's creation (data before it belongs to whatever the
    // target group served earlier): a point "a second ago" must not fall before it, or
    // the test fails whenever the launch and the put straddle a minute.
    let created = {
        let d = c
            .ecs
            .describe_services()
            .cluster(&fx.cluster)
            .services(&fx.service)
            .send()
            .await
            .unwrap();
        let t = d.services()[0]
            .task_sets()
            .iter()
            .find(|t| t.external_id() == Some("2.0"))
            .and_then(|t| t.created_at().copied())
            .unwrap();
        std::time::SystemTime::try_from(t).unwrap()
    };
    let datum = |name: &str, value: f64, ago: u64| {
        MetricDatum::builder()
            .metric_name(name)
            .set_dimensions(Some(dims.clone()))
            .timestamp(DateTime::from(
                (now - Duration::from_secs(ago)).max(created),
            ))
            .value(value)
            .build()
    };
    c.cloudwatch
        .put_metric_data()
        .namespace("AWS/ApplicationELB")
        .metric_data(datum("RequestCount", 120.0, 1))
        .metric_data(datum("RequestCount", 80.0, 0))
        .metric_data(datum("HTTPCode_Target_5XX_Count", 3.0, 1))
        .metric_data(datum("TargetResponseTime", 0.120, 1))
        .metric_data(datum("TargetResponseTime", 0.900, 0))
        .send()
        .await
        .unwrap();
    // Data of another target group (the stable revision) does not leak in.
    let blue_dim = fx.blue.rsplit(':').next().unwrap().to_string();
    c.cloudwatch
        .put_metric_data()
        .namespace("AWS/ApplicationELB")
        .metric_data(
            MetricDatum::builder()
                .metric_name("RequestCount")
                .dimensions(
                    Dimension::builder()
                        .name("TargetGroup")
                        .value(&blue_dim)
                        .build(),
                )
                .dimensions(
                    Dimension::builder()
                        .name("LoadBalancer")
                        .value(&lb_dim)
                        .build(),
                )
                .timestamp(DateTime::from(now))
                .value(1000.0)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let got = source
        .counters("api", "2.0", Duration::from_millis(500))
        .await
        .unwrap()
        .expect("data");
    assert_eq!(
        got,
        RevisionCounters {
            requests: 200,
            errors_5xx: 3,
            connection_errors: 0,
            slow: got.slow,
        }
    );
    let stable = source
        .counters("api", "1.0", Duration::from_millis(500))
        .await
        .unwrap()
        .expect("stable data");
    assert_eq!(stable.requests, 1000);
    assert_eq!(stable.errors_5xx, 0);
    // Latency quantiles need percentile statistics, which CloudWatch has and moto 5.2
    // answers with an internal error: the source must then say it could not be asked,
    // never invent a latency.
    match source
        .recent_latency("api", "2.0", Duration::from_secs(60))
        .await
    {
        Ok(Some(q)) => {
            assert_eq!(q.samples, 2);
            assert!(q.p99_ms >= q.p50_ms);
        }
        Ok(None) => panic!("two samples were put, the answer cannot be \"no data\""),
        Err(e) => assert!(e.message.contains("GetMetricData"), "{e}"),
    }
    // A revision the platform does not know has no metrics.
    assert_eq!(
        source
            .counters("api", "7.7", Duration::from_millis(500))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_5xx_are_retried_with_backoff() {
    let ep = &moto::moto().endpoint;
    let direct = config(ep).await;
    let fx = external(&direct, ep, "retry").await;
    let c = clients(&direct);
    let proxy = FaultProxy::start(ep).await;
    let conf = config(&proxy.endpoint).await;
    let p =
        EcsPlatform::from_release_with_retry(&fx.canary_release(""), &conf, fast_retry()).unwrap();
    proxy.inject("DescribeServices", Fault::Throttle, 2);
    proxy.inject("CreateTaskSet", Fault::Status(503), 1);
    proxy.inject("RegisterTaskDefinition", Fault::Throttle, 1);
    p.launch("api", "2.0", 0).await.unwrap();
    assert!(proxy.count("DescribeServices") >= 3);
    assert_eq!(proxy.count("CreateTaskSet"), 2);
    assert_eq!(proxy.count("RegisterTaskDefinition"), 2);
    // (launch pointed the test rule at the candidate: one ModifyRule already)
    let modify_before = proxy.count("ModifyRule");
    proxy.inject("ModifyRule", Fault::Throttle, 2);
    proxy.inject("DescribeRules", Fault::Status(500), 1);
    p.set_weights("api", &w(&[("1.0", 90), ("2.0", 10)]))
        .await
        .unwrap();
    assert_eq!(
        proxy.count("ModifyRule") - modify_before,
        3,
        "two throttled, one through"
    );
    let mut expected = vec![(fx.blue.clone(), 90), (fx.green.clone(), 10)];
    expected.sort();
    assert_eq!(rule_weights(&c, &fx.rule).await, expected);
    assert_eq!(
        proxy.faults_served(),
        7,
        "every injected fault was met and retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_shift_reports_the_split_in_force_and_leaves_it_whole() {
    let ep = &moto::moto().endpoint;
    let direct = config(ep).await;
    let fx = external(&direct, ep, "failshift").await;
    let c = clients(&direct);
    let proxy = FaultProxy::start(ep).await;
    let conf = config(&proxy.endpoint).await;
    let p =
        EcsPlatform::from_release_with_retry(&fx.canary_release(""), &conf, fast_retry()).unwrap();
    p.launch("api", "2.0", 0).await.unwrap();
    p.set_weights("api", &w(&[("1.0", 95), ("2.0", 5)]))
        .await
        .unwrap();
    // ModifyRule never gets through: after the retries, the error says what is in force.
    let modify_before = proxy.count("ModifyRule");
    proxy.inject("ModifyRule", Fault::Status(503), u32::MAX);
    let err = p
        .set_weights("api", &w(&[("1.0", 75), ("2.0", 25)]))
        .await
        .unwrap_err();
    assert_eq!(
        proxy.count("ModifyRule") - modify_before,
        fast_retry().max_attempts
    );
    assert!(err.retryable);
    assert!(err.message.contains("the rule forwards"), "{err}");
    assert!(
        err.message.contains("=95") && err.message.contains("=5"),
        "{err}"
    );
    let mut still = vec![(fx.blue.clone(), 95), (fx.green.clone(), 5)];
    still.sort();
    assert_eq!(rule_weights(&c, &fx.rule).await, still);
    // The engine can try again once the API recovers; the old split is still expected.
    proxy.clear();
    p.set_weights("api", &w(&[("1.0", 75), ("2.0", 25)]))
        .await
        .unwrap();

    // An answer lost after the change went through: the read-back finds the split in
    // force is the one asked for, and the shift counts as done.
    proxy.inject("ModifyRule", Fault::ForwardThenStatus(500), u32::MAX);
    p.set_weights("api", &w(&[("1.0", 50), ("2.0", 50)]))
        .await
        .unwrap();
    proxy.clear();
    assert_eq!(
        p.weights("api").await.unwrap(),
        w(&[("1.0", 50), ("2.0", 50)])
    );
    // And the next shift is not mistaken for outside interference.
    p.set_weights("api", &w(&[("2.0", 100)])).await.unwrap();

    // When even reading back fails, the error says the split is unknown, loudly.
    proxy.inject("ModifyRule", Fault::Status(503), u32::MAX);
    proxy.inject("DescribeRules", Fault::Status(503), u32::MAX);
    let err = p.set_weights("api", &w(&[("1.0", 100)])).await.unwrap_err();
    assert!(
        err.message.contains("could not read") || err.message.contains("failed after"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_and_diff_read_the_account_without_changing_it() {
    let ep = &moto::moto().endpoint;
    let conf = config(ep).await;
    let fx = external(&conf, ep, "verify").await;
    let c = clients(&conf);
    let p = EcsPlatform::from_release_with_retry(
        &fx.canary_release("env = { LOG_LEVEL = \"debug\" }\ncpu = \"512\""),
        &conf,
        fast_retry(),
    )
    .unwrap();
    let before = revisions(&c, &fx.family).await;
    let report = verify::verify(&p).await;
    assert_eq!(report.problems(), 0, "{report}");
    let text = report.to_string();
    for needle in [
        "cluster",
        "listener rule",
        "target group",
        "test listener rule",
        "image",
    ] {
        assert!(text.contains(needle), "{needle} in\n{text}");
    }
    let diffs = verify::diff(&p).await.unwrap();
    assert_eq!(diffs.len(), 1);
    let fields: Vec<&str> = diffs[0].changes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(fields, ["cpu", "image", "env.LOG_LEVEL"]);
    assert_eq!(revisions(&c, &fx.family).await, before, "read-only");

    // A release naming things that do not exist gets every one reported.
    let broken = release(&format!(
        r#"
[release]
name = "x"
platform = "ecs"
[[service]]
name = "api"
strategy = "blue_green"
[service.ecs]
cluster = "{cluster}"
service = "no-such-service"
container = "app"
image = "repo/api:2.0"
listener_rule = "{rule}"
target_groups = ["{blue}", "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/nope/0123456789abcdef"]
region = "us-east-1"
[[service]]
name = "db"
strategy = "blue_green"
[service.ecs]
cluster = "no-such-cluster"
service = "x"
container = "app"
image = "repo/db:2.0"
listener_rule = "{rule}"
target_groups = ["{blue}", "{green}"]
region = "us-east-1"
"#,
        cluster = fx.cluster,
        rule = fx.rule,
        blue = fx.blue,
        green = fx.green,
    ));
    let p = EcsPlatform::from_release_with_retry(&broken, &conf, fast_retry()).unwrap();
    let report = verify::verify(&p).await;
    let problems: Vec<String> = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Problem)
        .map(|c| format!("{} {}", c.service, c.subject))
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("api service no-such-service")),
        "{report}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("db cluster no-such-cluster")),
        "{report}"
    );
}

#[test]
fn the_cli_verifies_and_diffs_a_release_file_against_the_endpoint() {
    let ep = moto::moto().endpoint.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fx = rt.block_on(async {
        let conf = config(&ep).await;
        external(&conf, &ep, "cli").await
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("release.toml");
    std::fs::write(
        &file,
        format!(
            r#"[release]
name = "cli"
platform = "ecs"
[[service]]
name = "api"
strategy = "blue_green"
[service.ecs]
cluster = "{}"
service = "{}"
container = "app"
image = "repo/api:2.0"
listener_rule = "{}"
target_groups = ["{}", "{}"]
"#,
            fx.cluster, fx.service, fx.rule, fx.blue, fx.green
        ),
    )
    .unwrap();
    let run = |cmd: &str| {
        cutover_cli(&ep, dir.path())
            .arg(cmd)
            .arg(&file)
            .output()
            .unwrap()
    };
    let out = run("verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("everything the release needs is there"),
        "{stdout}"
    );
    let out = run("diff");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("image\n    - repo/api:1.0\n    + repo/api:2.0"),
        "{stdout}"
    );
    // A local release is refused with a clear message and exit 2.
    let local = dir.path().join("local.toml");
    std::fs::write(
        &local,
        "[release]\nname = \"l\"\n[[service]]\nname = \"a\"\nstrategy = \"blue_green\"\n[service.local]\nlisten = \"127.0.0.1:18099\"\ncommand = [\"x\", \"{port}\"]\ncurrent = { revision = \"v1\" }\ntarget = { revision = \"v2\" }\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
        .arg("verify")
        .arg(&local)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("checks ECS releases"));
}

/// Run one service's steps the way the engine will: launch, smoke route, shift by the
/// release's weights, promote. Returns the weights seen after each shift.
async fn roll_out(
    p: &EcsPlatform,
    service: &str,
    stable: &str,
    candidate: &str,
    steps: &[u8],
) -> Vec<Vec<(String, u8)>> {
    p.launch(service, candidate, 0).await.unwrap();
    let route = p.test_route(service, candidate).await.unwrap();
    assert_eq!(route.header.1, candidate);
    let mut seen = Vec::new();
    for pct in steps {
        let split = if *pct == 100 {
            w(&[(candidate, 100)])
        } else {
            w(&[(stable, 100 - pct), (candidate, *pct)])
        };
        p.set_weights(service, &split).await.unwrap();
        seen.push(p.weights(service).await.unwrap());
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_service_release_rolls_out_in_order_and_rolls_back_whole() {
    let ep = &moto::moto().endpoint;
    let conf = config(ep).await;
    let api = external(&conf, ep, "rel-api").await;
    let web = external(&conf, ep, "rel-web").await;
    let c = clients(&conf);
    let r = release(&format!(
        r#"
[release]
name = "two"
platform = "ecs"
on_failure = "rollback_release"

[[service]]
name = "api"
strategy = "canary"
steps = [{{ set_weight = 10 }}, {{ analysis = "1m" }}, {{ set_weight = 50 }}, {{ analysis = "1m" }}]
[service.ecs]
cluster = "{ac}"
service = "{asv}"
container = "app"
image = "repo/api:2.0"
listener_rule = "{ar}"
test_listener_rule = "{atr}"
target_groups = ["{ab}", "{ag}"]
region = "us-east-1"

[[service]]
name = "web"
depends_on = ["api"]
strategy = "blue_green"
[service.ecs]
cluster = "{wc}"
service = "{wsv}"
container = "app"
image = "repo/web:2.0"
listener_rule = "{wr}"
test_listener_rule = "{wtr}"
target_groups = ["{wb}", "{wg}"]
region = "us-east-1"
"#,
        ac = api.cluster,
        asv = api.service,
        ar = api.rule,
        atr = api.test_rule,
        ab = api.blue,
        ag = api.green,
        wc = web.cluster,
        wsv = web.service,
        wr = web.rule,
        wtr = web.test_rule,
        wb = web.blue,
        wg = web.green,
    ));
    let plan = cutover::plan::plan(&r);
    let p = EcsPlatform::from_release_with_retry(&r, &conf, fast_retry()).unwrap();
    // The plan names the candidate revision by the image tag; the platform uses the same.
    let revision_of = |svc: &str| {
        cutover::plan::expand(&r, r.service(svc).unwrap())
            .iter()
            .find_map(|s| match &s.action {
                cutover::plan::Action::Launch { revision, .. } => Some(revision.clone()),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(revision_of("api"), "2.0");
    assert!(!plan.waves.is_empty());
    let api_seen = roll_out(&p, "api", "1.0", "2.0", &[10, 50, 100]).await;
    assert_eq!(
        api_seen,
        vec![
            w(&[("1.0", 90), ("2.0", 10)]),
            w(&[("1.0", 50), ("2.0", 50)]),
            w(&[("2.0", 100)]),
        ]
    );
    let web_seen = roll_out(&p, "web", "1.0", "2.0", &[100]).await;
    assert_eq!(web_seen, vec![w(&[("2.0", 100)])]);
    assert_eq!(
        primary(&c, &api.cluster, &api.service).await.as_deref(),
        Some("2.0")
    );
    assert_eq!(
        primary(&c, &web.cluster, &web.service).await.as_deref(),
        Some("2.0")
    );
    let inv = p.inventory().await.unwrap();
    assert_eq!(
        inv.len(),
        4,
        "old task sets stay up for instant rollback: {inv:?}"
    );

    // web's bake fails: the whole release rolls back in reverse order, one weight change
    // and one primary switch per service.
    for svc in ["web", "api"] {
        p.set_weights(svc, &w(&[("1.0", 100)])).await.unwrap();
        p.retire(svc, "2.0", Duration::from_secs(0)).await.unwrap();
    }
    for fx in [&api, &web] {
        assert_eq!(
            primary(&c, &fx.cluster, &fx.service).await.as_deref(),
            Some("1.0")
        );
        let mut expected = vec![(fx.blue.clone(), 100), (fx.green.clone(), 0)];
        expected.sort();
        assert_eq!(rule_weights(&c, &fx.rule).await, expected);
    }
    let inv = p.inventory().await.unwrap();
    assert_eq!(inv.len(), 2);
    assert!(inv.iter().all(|r| r.revision == "1.0" && r.weight == 100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_secret_answer_never_reaches_an_error_message() {
    let m = moto::moto();
    let ep = &m.endpoint;
    let direct = config(ep).await;
    let fx = external(&direct, ep, "leak").await;
    let arn = secret(m, &direct, &format!("{}/db", fx.name)).await;
    let proxy = FaultProxy::start(ep).await;
    let conf = config(&proxy.endpoint).await;
    let p = EcsPlatform::from_release_with_retry(
        &fx.canary_release(&format!("secret_env = {{ DB = \"{arn}\" }}")),
        &conf,
        fast_retry(),
    )
    .unwrap();
    // A mangled answer that carries the value: the SDK cannot parse it, and the error
    // (and so every message and log line built from it) must not quote it.
    proxy.inject(
        "GetSecretValue",
        Fault::Respond(200, r#"{"SecretString": "hunter2-do-not-print", "#),
        u32::MAX,
    );
    let err = p.launch("api", "2.0", 0).await.unwrap_err();
    assert!(err.message.contains("secret"), "{err}");
    assert!(!err.message.contains("hunter2"), "{err}");
    proxy.clear();
    proxy.inject(
        "GetSecretValue",
        Fault::Respond(500, r#"{"SecretString": "hunter2-do-not-print"}"#),
        u32::MAX,
    );
    let err = p.launch("api", "2.0", 0).await.unwrap_err();
    assert!(!err.message.contains("hunter2"), "{err}");
    let report = verify::verify(&p).await;
    assert!(!format!("{report}").contains("hunter2"));
}

async fn resolve(
    rel: &cutover::release::Release,
    conf: &aws_config::SdkConfig,
    mode: PinMode,
) -> Result<cutover::platform::ecs::images::ImagePins, cutover::platform::PlatformError> {
    cutover::platform::ecs::images::resolve(rel, conf, &fast_retry(), mode).await
}

/// A rolling service deployed by digest: the platform still knows the revision by its tag
/// (the task definition's `cutover.revision` label), so weights, rollout and rollback
/// work as with a tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_service_deployed_by_digest_keeps_its_revision_name() {
    let ep = &moto::moto().endpoint;
    let conf = config(ep).await;
    let fx = rolling(&conf, ep, "rolldig").await;
    let c = clients(&conf);
    let repo_name = format!("{}/worker", fx.service);
    let repo = ecr_repository(&conf, &repo_name).await;
    let digest = ecr_push(&conf, &repo_name, "2.0", 'e').await;
    let mut rel = fx.release();
    rel.services[0].ecs.as_mut().unwrap().image = format!("{repo}:2.0");
    let pins = resolve(&rel, &conf, PinMode::Required).await.unwrap();
    assert_eq!(
        pins.services["worker"].digest.as_deref(),
        Some(digest.as_str())
    );
    let p = EcsPlatform::from_release_with_retry(&rel, &conf, fast_retry()).unwrap();
    p.apply_images(&pins);
    p.launch("worker", "2.0", 2).await.unwrap();
    let desc = c
        .ecs
        .describe_services()
        .cluster(&fx.cluster)
        .services(&fx.service)
        .send()
        .await
        .unwrap();
    let td = desc.services()[0].task_definition().unwrap();
    assert_eq!(
        container_image(&c, td).await,
        (format!("{repo}@{digest}"), Some("2.0".to_string()))
    );
    assert_eq!(p.weights("worker").await.unwrap(), w(&[("2.0", 100)]));
    assert_eq!(p.rollout("worker").await.unwrap().revision, "2.0");
    p.set_weights("worker", &w(&[("1.0", 100)])).await.unwrap();
    assert_eq!(p.weights("worker").await.unwrap(), w(&[("1.0", 100)]));

    // A tag outside ECR under `required` is refused, naming the service and the fix.
    let mut other = fx.release();
    other.services[0].ecs.as_mut().unwrap().image = "ghcr.io/acme/worker:2.0".into();
    let e = resolve(&other, &conf, PinMode::Required).await.unwrap_err();
    assert_eq!(e.service, "worker");
    assert!(
        e.message
            .contains("ghcr.io/acme/worker:2.0 is a tag outside ECR"),
        "{e}"
    );
    // A tag ECR does not have: refused before anything changes, naming the fix.
    let mut missing = fx.release();
    missing.services[0].ecs.as_mut().unwrap().image = format!("{repo}:9.9");
    let e = resolve(&missing, &conf, PinMode::EcrOnly)
        .await
        .unwrap_err();
    assert!(!e.retryable, "{e}");
    assert!(
        e.message.contains("tag `9.9` is not in ECR repository")
            && e.message.contains("push the image"),
        "{e}"
    );
}
