//! The release parser and validator, structure-aware: an `arbitrary` release (services,
//! dependencies, strategies, steps, analysis, smoke tests, platform sections, migrations,
//! tenants with their vars, flags and checks, rings and the failure budget;
//! names and values drawn from the vocabulary of real releases or left free) written out as
//! TOML, so the fuzzer spends its time in validation and planning instead of TOML syntax.
#![no_main]

use arbitrary::Arbitrary;
use cutover_fuzz::{Text, pick};
use libfuzzer_sys::fuzz_target;
use toml::{Table, Value};

const NAMES: &[&str] = &["api", "db", "ledger", "web", "worker", "a", "b", "c"];
const UNITS: &[&str] = &["ms", "s", "m", "h", "", "d", "1m30s"];
const STRATEGIES: &[&str] = &["canary", "blue_green", "linear", "rolling", "recreate"];
const ON_FAILURE: &[&str] = &[
    "rollback_dependents",
    "rollback_release",
    "pause",
    "explode",
];
const JUDGES: &[&str] = &["sequential", "threshold", "oracle"];
const ARNS: &[&str] = &[
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/prod-alb/50dc6c495c0c9188/f2f7dc8efc522ab2/9683b2d02a6cabee",
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/api-blue/73e2d6bc24d8a067",
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/api-green/2453ed029918f21f",
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:api/db",
    "arn:aws:",
];

/// A name from the vocabulary, or any text.
#[derive(Arbitrary, Debug)]
struct Word(Text);
impl Word {
    fn v(&self) -> Value {
        Value::String(self.0.s(NAMES))
    }
}

/// A duration as people write them, or any text, or a bare number (a type error).
#[derive(Arbitrary, Debug)]
enum Dur {
    Good(u16, u8),
    Free(String),
    Number(i64),
}
impl Dur {
    fn v(&self) -> Value {
        match self {
            Dur::Good(n, u) => Value::String(format!("{n}{}", pick(UNITS, *u))),
            Dur::Free(s) => Value::String(s.clone()),
            Dur::Number(n) => Value::Integer(*n),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Num {
    Small(u8),
    Any(i64),
    Float(f64),
    Text(String),
}
impl Num {
    fn v(&self) -> Value {
        match self {
            Num::Small(n) => Value::Integer(i64::from(*n)),
            Num::Any(n) => Value::Integer(*n),
            Num::Float(f) => Value::Float(*f),
            Num::Text(s) => Value::String(s.clone()),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Step {
    SetWeight(Num),
    Analysis(Dur),
    Pause(Option<Dur>),
    Approval(Dur, Option<u8>, Option<Num>),
    Mixed(Num, Dur),
}
impl Step {
    fn v(&self) -> Value {
        let mut t = Table::new();
        match self {
            Step::SetWeight(n) => {
                t.insert("set_weight".into(), n.v());
            }
            Step::Analysis(d) => {
                t.insert("analysis".into(), d.v());
            }
            Step::Pause(d) => {
                let v = d.as_ref().map_or(Value::Table(Table::new()), Dur::v);
                t.insert("pause".into(), v);
            }
            Step::Approval(d, on_timeout, approvals) => {
                t.insert("approval".into(), d.v());
                if let Some(o) = on_timeout {
                    t.insert(
                        "on_timeout".into(),
                        Value::String(pick(&["rollback", "promote", "pause", "x"], *o)),
                    );
                }
                if let Some(a) = approvals {
                    t.insert("approvals".into(), a.v());
                }
            }
            Step::Mixed(n, d) => {
                t.insert("set_weight".into(), n.v());
                t.insert("analysis".into(), d.v());
            }
        }
        Value::Table(t)
    }
}

#[derive(Arbitrary, Debug)]
struct Analysis {
    judge: Option<u8>,
    tolerance: Option<Num>,
    min_requests: Option<Num>,
    min_duration: Option<Dur>,
    max_error_rate: Option<Num>,
    max_p99: Option<Dur>,
    alpha: Option<Num>,
    failure_limit: Option<Num>,
    bursty: Option<bool>,
    on_inconclusive: Option<u8>,
}

#[derive(Arbitrary, Debug)]
struct Smoke {
    name: Word,
    request: Option<String>,
    expect_status: Option<Num>,
    command: Option<Vec<String>>,
    timeout: Option<Dur>,
}

#[derive(Arbitrary, Debug)]
struct Revision {
    revision: Word,
    args: Option<Vec<String>>,
    env: Vec<(String, String)>,
}
impl Revision {
    fn v(&self) -> Value {
        let mut t = Table::new();
        t.insert("revision".into(), self.revision.v());
        if let Some(a) = &self.args {
            t.insert("args".into(), strings(a));
        }
        if !self.env.is_empty() {
            let env: Table = self
                .env
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            t.insert("env".into(), Value::Table(env));
        }
        Value::Table(t)
    }
}

#[derive(Arbitrary, Debug)]
struct Local {
    port: u16,
    listen: Option<String>,
    replicas: Option<Num>,
    command: Vec<String>,
    current: Revision,
    target: Revision,
    drain_timeout: Option<Dur>,
}

#[derive(Arbitrary, Debug)]
struct Ecs {
    cluster: Word,
    image: Word,
    listener_rule: Option<u8>,
    target_groups: Vec<u8>,
    secrets: Vec<u8>,
    desired_count: Option<Num>,
    cpu: Option<Num>,
    region: Option<String>,
}

#[derive(Arbitrary, Debug)]
struct Health {
    path: Option<String>,
    interval: Option<Dur>,
    timeout: Option<Dur>,
    healthy_after: Option<Num>,
    unhealthy_after: Option<Num>,
}

#[derive(Arbitrary, Debug)]
struct Service {
    name: Word,
    depends_on: Vec<Word>,
    strategy: Option<u8>,
    steps: Option<Vec<Step>>,
    linear: Option<(Num, Dur)>,
    blue_green: Option<(Option<Dur>, Option<bool>)>,
    rolling: Option<(Num, Num)>,
    health: Option<Health>,
    smoke: Vec<Smoke>,
    analysis: Option<Analysis>,
    local: Option<Local>,
    ecs: Option<Ecs>,
    /// A key nobody expects, at the service level.
    extra: Option<(String, Num)>,
}

#[derive(Arbitrary, Debug)]
struct Migration {
    name: Word,
    database: Option<String>,
    expand: Option<String>,
    contract: Option<String>,
    undo_expand: Option<String>,
    services: Vec<Word>,
    bake: Option<Dur>,
}

const TENANTS: &[&str] = &["acme", "globex", "initech", "a/b", "", "tag:gold"];
const TAGS: &[&str] = &["gold", "tier/silver", "region/eu", ""];
const AMOUNTS: &[&str] = &["1", "25%", "100%", "101%", "-1%", "%", "0"];

#[derive(Arbitrary, Debug)]
struct Tenant {
    name: Text,
    tags: Vec<Text>,
    /// The `port` variable: declared in [vars] when any tenant sets it.
    port: Option<Num>,
    flags: Vec<(Text, Option<bool>)>,
    approval: Option<(Dur, Option<Num>)>,
    smoke: Option<(Word, Option<String>)>,
    max_error_rate: Option<Num>,
}

#[derive(Arbitrary, Debug)]
struct Ring {
    name: Word,
    select: Vec<(bool, Text)>,
    max_parallel: Option<Text>,
    bake: Option<Dur>,
}

fn tenant(t: &Tenant) -> Value {
    let mut x = Table::new();
    x.insert("name".into(), Value::String(t.name.s(TENANTS)));
    if !t.tags.is_empty() {
        let tags = t.tags.iter().map(|g| Value::String(g.s(TAGS)));
        x.insert("tags".into(), Value::Array(tags.collect()));
    }
    put(&mut x, "vars", &t.port, |p| {
        Value::Table(Table::from_iter([("port".to_string(), p.v())]))
    });
    if !t.flags.is_empty() {
        let flags = t.flags.iter().map(|(k, v)| {
            let v = v.map_or(Value::String(k.s(TAGS)), Value::Boolean);
            (k.s(&["new_checkout", "theme", "a\nb"]), v)
        });
        x.insert("flags".into(), Value::Table(flags.collect()));
    }
    put(&mut x, "approval", &t.approval, |(d, n)| {
        let mut a = Table::from_iter([("timeout".to_string(), d.v())]);
        put(&mut a, "approvals", n, Num::v);
        Value::Table(a)
    });
    put(&mut x, "smoke", &t.smoke, |(svc, req)| {
        let mut m = Table::from_iter([
            ("service".to_string(), svc.v()),
            ("name".to_string(), Value::String("tenant smoke".into())),
        ]);
        put(&mut m, "request", req, |r| Value::String(r.clone()));
        Value::Array(vec![Value::Table(m)])
    });
    put(&mut x, "analysis", &t.max_error_rate, |n| {
        Value::Table(Table::from_iter([("max_error_rate".to_string(), n.v())]))
    });
    Value::Table(x)
}

fn ring(r: &Ring) -> Value {
    let mut x = Table::new();
    x.insert("name".into(), r.name.v());
    let select = r.select.iter().map(|(tag, t)| {
        Value::String(if *tag {
            format!("tag:{}", t.s(TAGS))
        } else {
            t.s(TENANTS)
        })
    });
    x.insert("select".into(), Value::Array(select.collect()));
    put(&mut x, "max_parallel", &r.max_parallel, |m| {
        let s = m.s(AMOUNTS);
        s.parse::<i64>().map_or(Value::String(s), Value::Integer)
    });
    put(&mut x, "bake", &r.bake, Dur::v);
    Value::Table(x)
}

#[derive(Arbitrary, Debug)]
struct Release {
    name: Option<Word>,
    failure_budget: Option<Text>,
    flags_file: Option<String>,
    tenants: Vec<Tenant>,
    rings: Vec<Ring>,
    ecs: bool,
    max_parallel: Option<Num>,
    on_failure: Option<u8>,
    progress_deadline: Option<Dur>,
    environment: Option<String>,
    webhooks: Option<Vec<String>>,
    services: Vec<Service>,
    migrations: Vec<Migration>,
}

fn strings(v: &[String]) -> Value {
    Value::Array(v.iter().cloned().map(Value::String).collect())
}

fn put<T>(t: &mut Table, key: &str, v: &Option<T>, f: impl Fn(&T) -> Value) {
    if let Some(x) = v {
        t.insert(key.into(), f(x));
    }
}

fn service(s: &Service) -> Value {
    let mut t = Table::new();
    t.insert("name".into(), s.name.v());
    if !s.depends_on.is_empty() {
        t.insert(
            "depends_on".into(),
            Value::Array(s.depends_on.iter().map(Word::v).collect()),
        );
    }
    put(&mut t, "strategy", &s.strategy, |i| {
        Value::String(pick(STRATEGIES, *i))
    });
    put(&mut t, "steps", &s.steps, |st| {
        Value::Array(st.iter().map(Step::v).collect())
    });
    put(&mut t, "linear", &s.linear, |(n, d)| {
        Value::Table(Table::from_iter([
            ("step".into(), n.v()),
            ("every".into(), d.v()),
        ]))
    });
    put(&mut t, "blue_green", &s.blue_green, |(k, a)| {
        let mut b = Table::new();
        put(&mut b, "keep_old_for", k, Dur::v);
        put(&mut b, "auto_promote", a, |x| Value::Boolean(*x));
        Value::Table(b)
    });
    put(&mut t, "rolling", &s.rolling, |(b, u)| {
        Value::Table(Table::from_iter([
            ("batch".into(), b.v()),
            ("max_unavailable".into(), u.v()),
        ]))
    });
    put(&mut t, "health", &s.health, |h| {
        let mut x = Table::new();
        put(&mut x, "path", &h.path, |p| Value::String(p.clone()));
        put(&mut x, "interval", &h.interval, Dur::v);
        put(&mut x, "timeout", &h.timeout, Dur::v);
        put(&mut x, "healthy_after", &h.healthy_after, Num::v);
        put(&mut x, "unhealthy_after", &h.unhealthy_after, Num::v);
        Value::Table(x)
    });
    if !s.smoke.is_empty() {
        let smoke = s.smoke.iter().map(|m| {
            let mut x = Table::new();
            x.insert("name".into(), m.name.v());
            put(&mut x, "request", &m.request, |r| Value::String(r.clone()));
            put(&mut x, "expect_status", &m.expect_status, Num::v);
            put(&mut x, "command", &m.command, |c| strings(c));
            put(&mut x, "timeout", &m.timeout, Dur::v);
            Value::Table(x)
        });
        t.insert("smoke".into(), Value::Array(smoke.collect()));
    }
    put(&mut t, "analysis", &s.analysis, |a| {
        let mut x = Table::new();
        put(&mut x, "judge", &a.judge, |i| {
            Value::String(pick(JUDGES, *i))
        });
        put(&mut x, "tolerance", &a.tolerance, Num::v);
        put(&mut x, "min_requests", &a.min_requests, Num::v);
        put(&mut x, "min_duration", &a.min_duration, Dur::v);
        put(&mut x, "max_error_rate", &a.max_error_rate, Num::v);
        put(&mut x, "max_p99", &a.max_p99, Dur::v);
        put(&mut x, "alpha", &a.alpha, Num::v);
        put(&mut x, "failure_limit", &a.failure_limit, Num::v);
        put(&mut x, "bursty", &a.bursty, |b| Value::Boolean(*b));
        put(&mut x, "on_inconclusive", &a.on_inconclusive, |i| {
            Value::String(pick(&["pause", "extend", "fail"], *i))
        });
        Value::Table(x)
    });
    put(&mut t, "local", &s.local, |l| {
        let mut x = Table::new();
        let listen = l
            .listen
            .clone()
            .unwrap_or_else(|| format!("127.0.0.1:{}", l.port));
        x.insert("listen".into(), Value::String(listen));
        put(&mut x, "replicas", &l.replicas, Num::v);
        let mut command = vec!["cutover".to_string(), "{port}".into(), "{revision}".into()];
        command.extend(l.command.iter().cloned());
        x.insert("command".into(), strings(&command));
        x.insert("current".into(), l.current.v());
        x.insert("target".into(), l.target.v());
        put(&mut x, "drain_timeout", &l.drain_timeout, Dur::v);
        Value::Table(x)
    });
    put(&mut t, "ecs", &s.ecs, |e| {
        let mut x = Table::new();
        x.insert("cluster".into(), e.cluster.v());
        x.insert("service".into(), s.name.v());
        x.insert("container".into(), Value::String("app".into()));
        x.insert("image".into(), e.image.v());
        put(&mut x, "listener_rule", &e.listener_rule, |i| {
            Value::String(pick(ARNS, *i))
        });
        if !e.target_groups.is_empty() {
            let tgs = e
                .target_groups
                .iter()
                .map(|i| Value::String(pick(ARNS, *i)));
            x.insert("target_groups".into(), Value::Array(tgs.collect()));
        }
        if !e.secrets.is_empty() {
            let s = e.secrets.iter().map(|i| Value::String(pick(ARNS, *i)));
            x.insert("secrets".into(), Value::Array(s.collect()));
        }
        put(&mut x, "desired_count", &e.desired_count, Num::v);
        put(&mut x, "cpu", &e.cpu, Num::v);
        put(&mut x, "region", &e.region, |r| Value::String(r.clone()));
        Value::Table(x)
    });
    put(&mut t, "extra", &s.extra, |(_, n)| n.v());
    if let Some((k, n)) = &s.extra {
        t.remove("extra");
        t.insert(k.clone(), n.v());
    }
    Value::Table(t)
}

fn release(r: &Release) -> Table {
    let mut top = Table::new();
    let mut rel = Table::new();
    put(&mut rel, "name", &r.name, Word::v);
    let platform = if r.ecs { "ecs" } else { "local" };
    rel.insert("platform".into(), Value::String(platform.into()));
    put(&mut rel, "max_parallel", &r.max_parallel, Num::v);
    put(&mut rel, "on_failure", &r.on_failure, |i| {
        Value::String(pick(ON_FAILURE, *i))
    });
    put(&mut rel, "progress_deadline", &r.progress_deadline, Dur::v);
    put(&mut rel, "environment", &r.environment, |e| {
        Value::String(e.clone())
    });
    put(&mut rel, "failure_budget", &r.failure_budget, |b| {
        let s = b.s(AMOUNTS);
        s.parse::<i64>().map_or(Value::String(s), Value::Integer)
    });
    top.insert("release".into(), Value::Table(rel));
    put(&mut top, "flags", &r.flags_file, |f| {
        Value::Table(Table::from_iter([("file".to_string(), Value::String(f.clone()))]))
    });
    if r.tenants.iter().any(|t| t.port.is_some()) {
        let vars = Table::from_iter([("port".to_string(), Value::Integer(18000))]);
        top.insert("vars".into(), Value::Table(vars));
    }
    if !r.tenants.is_empty() {
        top.insert(
            "tenant".into(),
            Value::Array(r.tenants.iter().map(tenant).collect()),
        );
    }
    if !r.rings.is_empty() {
        top.insert("ring".into(), Value::Array(r.rings.iter().map(ring).collect()));
    }
    if let Some(w) = &r.webhooks {
        let n = Table::from_iter([("webhooks".to_string(), strings(w))]);
        top.insert("notify".into(), Value::Table(n));
    }
    top.insert(
        "service".into(),
        Value::Array(r.services.iter().map(service).collect()),
    );
    if !r.migrations.is_empty() {
        let ms = r.migrations.iter().map(|m| {
            let mut x = Table::new();
            x.insert("name".into(), m.name.v());
            put(&mut x, "database", &m.database, |d| {
                Value::String(d.clone())
            });
            put(&mut x, "expand", &m.expand, |d| Value::String(d.clone()));
            put(&mut x, "contract", &m.contract, |d| {
                Value::String(d.clone())
            });
            put(&mut x, "undo_expand", &m.undo_expand, |d| {
                Value::String(d.clone())
            });
            x.insert(
                "services".into(),
                Value::Array(m.services.iter().map(Word::v).collect()),
            );
            put(&mut x, "bake", &m.bake, Dur::v);
            Value::Table(x)
        });
        top.insert("migration".into(), Value::Array(ms.collect()));
    }
    top
}

fuzz_target!(|r: Release| {
    if let Ok(text) = toml::to_string(&release(&r)) {
        cutover_fuzz::check_release(&text);
    }
});
