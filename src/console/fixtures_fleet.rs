//! Scripted fleet releases (tenants in rings) for the fleet view's snapshots and the
//! render benchmark: a real release file with `[[tenant]]`s and `[[ring]]`s, flattened
//! and planned as the engine does, and [`FleetEvent`]s folded as the engine publishes them.

use std::collections::BTreeMap;
use std::path::Path;

use crate::engine::{EventKind, FleetEvent, TenantStatus, Trigger, fleet_initial_state};
use crate::release::Release;
use crate::release::tenants::FlagValue;

use super::fixtures::Script;

const SERVICES: [&str; 3] = ["api", "web", "worker"];

/// A ring: name, selectors, `max_parallel`, `bake`.
pub type RingSpec<'a> = (&'a str, Vec<String>, usize, &'a str);

/// A release of `tenants` (name, tags), each running the first `services` of api, web
/// (after api) and worker (after api) on ports of its own, in `rings`.
pub fn fleet_release(
    tenants: &[(String, Vec<String>)],
    rings: &[RingSpec],
    services: usize,
    budget: &str,
) -> Release {
    let mut t = format!(
        "[release]\nname = \"shop-3.0.0-fleet\"\nplatform = \"local\"\nenvironment = \"production\"\nfailure_budget = {budget}\n\n[flags]\nfile = \"flags.json\"\n\n[vars]\n"
    );
    let services = &SERVICES[..services.clamp(1, SERVICES.len())];
    for (k, s) in services.iter().enumerate() {
        t.push_str(&format!("{s}_port = {}\n", 29000 + k));
    }
    for (i, (name, tags)) in tenants.iter().enumerate() {
        let tags: Vec<String> = tags.iter().map(|x| format!("\"{x}\"")).collect();
        let ports: Vec<String> = services
            .iter()
            .enumerate()
            .map(|(k, s)| format!("{s}_port = {}", 30000 + 3 * i + k))
            .collect();
        t.push_str(&format!(
            "\n[[tenant]]\nname = \"{name}\"\ntags = [{}]\nvars = {{ {} }}\nflags = {{ new_checkout = true }}\n",
            tags.join(", "),
            ports.join(", ")
        ));
    }
    for (name, select, max, bake) in rings {
        let sel: Vec<String> = select.iter().map(|x| format!("\"{x}\"")).collect();
        t.push_str(&format!(
            "\n[[ring]]\nname = \"{name}\"\nselect = [{}]\nmax_parallel = {max}\nbake = \"{bake}\"\n",
            sel.join(", ")
        ));
    }
    for s in services {
        t.push_str(&format!("\n[[service]]\nname = \"{s}\"\n"));
        if *s != "api" {
            t.push_str("depends_on = [\"api\"]\n");
        }
        t.push_str("strategy = \"canary\"\nsteps = [ { set_weight = 10 }, { analysis = \"1m\" }, { set_weight = 50 }, { analysis = \"1m\" } ]\n");
        t.push_str(&format!(
            "[service.local]\nlisten = \"127.0.0.1:${{{s}_port}}\"\ncommand = [\"cutover\", \"demo-service\", \"--port\", \"{{port}}\", \"--revision\", \"{{revision}}\"]\ncurrent = {{ revision = \"v2.9\" }}\ntarget = {{ revision = \"v3.0\" }}\n"
        ));
    }
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    match crate::release::load_text(Path::new("fleet.toml"), &t, &base, &Default::default()) {
        Ok(l) => crate::release::flatten::flatten(&l.release, &l.tenants),
        Err(d) => panic!(
            "fixture fleet release invalid: {}",
            d.iter().map(|x| x.to_string()).collect::<String>()
        ),
    }
}

/// A loaded fleet release: `release_loaded` and the fleet's `loaded`.
pub fn fleet_script(release: Release) -> Script {
    let plan = crate::plan::engine_plan(&release);
    let order: Vec<String> = plan.services.iter().map(|s| s.name.clone()).collect();
    let fleet = fleet_initial_state(&release, &order);
    let mut s = Script::with_plan(release, plan);
    s.fleet(FleetEvent::Loaded {
        fleet: Box::new(fleet),
    });
    s
}

impl Script {
    pub fn fleet(&mut self, event: FleetEvent) {
        self.push(EventKind::Fleet { event });
    }

    /// Start `tenant` and promote every service of it.
    pub fn promote_tenant(&mut self, tenant: &str) {
        self.fleet(FleetEvent::TenantStarted {
            tenant: tenant.into(),
        });
        for s in self.tenant_services(tenant) {
            self.promote(&s);
        }
        self.fleet(FleetEvent::TenantPromoted {
            tenant: tenant.into(),
        });
    }

    fn tenant_services(&self, tenant: &str) -> Vec<String> {
        let prefix = format!("{tenant}/");
        self.plan
            .services
            .iter()
            .filter(|s| s.name.starts_with(&prefix))
            .map(|s| s.name.clone())
            .collect()
    }

    /// `tenant` fails at its api's analysis: rolled back, counted.
    pub fn fail_tenant(&mut self, tenant: &str, failures: usize) {
        self.fleet(FleetEvent::TenantStarted {
            tenant: tenant.into(),
        });
        let api = format!("{tenant}/api");
        self.run_to(&api, 2);
        let why = "canary error rate 4.1 % against the baseline's 0.3 % (sequential judge)";
        self.rollback(&api, why, Trigger::Automatic, true);
        for s in self
            .tenant_services(tenant)
            .into_iter()
            .filter(|s| *s != api)
        {
            self.push(EventKind::Skipped {
                service: s,
                reason: "a dependency rolled back".into(),
            });
        }
        self.fleet(FleetEvent::TenantFailed {
            tenant: tenant.into(),
            outcome: TenantStatus::RolledBack,
            reason: format!("{api} rolled back: {why}"),
            failures,
        });
    }

    fn ring_done(&mut self, ring: &str, bake_ms: u64) {
        self.fleet(FleetEvent::RingBaking {
            ring: ring.into(),
            until_ms: self.now + bake_ms,
        });
        self.advance(bake_ms);
        self.fleet(FleetEvent::RingDone { ring: ring.into() });
    }
}

fn tenant(name: &str, tags: &[&str]) -> (String, Vec<String>) {
    (
        name.to_string(),
        tags.iter().map(|t| t.to_string()).collect(),
    )
}

/// Eight tenants in three rings (`early`: the gold ones; `main`; `late`), budget 2:
/// - `baking`: early done, main baking (7m12s left) after dyna failed and echo was
///   excluded; gala paused in the pending ring late.
/// - `approval`: then main done, late running: gala rolling out, hive awaiting approval.
pub fn fleet_scenario(name: &str) -> Script {
    let tenants = [
        tenant("acme", &["tier/gold", "region/eu"]),
        tenant("bolt", &["tier/gold", "region/us"]),
        tenant("corp", &["tier/silver", "region/eu"]),
        tenant("dyna", &["tier/silver", "region/us"]),
        tenant("echo", &["tier/silver", "region/eu"]),
        tenant("fern", &["tier/bronze", "region/us"]),
        tenant("gala", &["tier/bronze", "region/eu"]),
        tenant("hive", &["tier/bronze", "region/us"]),
    ];
    let sel = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let rings = [
        ("early", sel(&["tag:tier/gold"]), 2, "10m"),
        ("main", sel(&["tag:tier/silver", "fern"]), 2, "15m"),
        ("late", sel(&["gala", "hive"]), 2, "5m"),
    ];
    let mut s = fleet_script(fleet_release(&tenants, &rings, 3, "2"));
    s.start();
    s.fleet(FleetEvent::RingStarted {
        ring: "early".into(),
    });
    for t in ["acme", "bolt"] {
        s.promote_tenant(t);
        s.fleet(FleetEvent::FlagsWritten {
            tenant: t.into(),
            file: "flags.json".into(),
            before: String::new(),
            after: String::new(),
            previous: BTreeMap::from([("new_checkout".to_string(), FlagValue::Bool(false))]),
            restored: false,
        });
    }
    s.ring_done("early", 600_000);
    s.fleet(FleetEvent::RingStarted {
        ring: "main".into(),
    });
    s.promote_tenant("corp");
    s.fail_tenant("dyna", 1);
    s.fleet(FleetEvent::TenantExcluded {
        tenant: "echo".into(),
        reason: "excluded by alice: customer asked to wait until Monday".into(),
    });
    s.promote_tenant("fern");
    s.fleet(FleetEvent::RingBaking {
        ring: "main".into(),
        until_ms: s.now + 900_000,
    });
    s.advance(468_000);
    s.fleet(FleetEvent::TenantPaused {
        tenant: "gala".into(),
    });
    if name == "approval" {
        s.advance(432_000);
        s.fleet(FleetEvent::RingDone {
            ring: "main".into(),
        });
        s.fleet(FleetEvent::RingStarted {
            ring: "late".into(),
        });
        s.fleet(FleetEvent::TenantResumed {
            tenant: "gala".into(),
        });
        s.fleet(FleetEvent::TenantStarted {
            tenant: "gala".into(),
        });
        s.run_to("gala/api", 2);
        s.fleet(FleetEvent::TenantAwaitingApproval {
            tenant: "hive".into(),
            deadline_ms: Some(s.now + 1_800_000),
        });
        s.advance(252_000);
    }
    s
}

/// `tenants` tenants × `services` services in `rings` rings (a small first ring, then
/// each larger), budget 10 %: the first ring done, the second running with two tenants
/// in flight and one failed, the rest pending.
pub fn big_fleet(tenants: usize, services: usize, rings: usize) -> Script {
    let rings = rings.max(1);
    // Ring sizes 1 %, then the rest split evenly.
    let first = (tenants / 100).max(1);
    let ring_of = |i: usize| {
        if i < first {
            0
        } else {
            1 + (i - first) * (rings - 1).max(1) / (tenants - first).max(1)
        }
        .min(rings - 1)
    };
    let list: Vec<(String, Vec<String>)> = (0..tenants)
        .map(|i| {
            (
                format!("tenant-{i:04}"),
                vec![format!("ring/r{}", ring_of(i)), format!("tier/t{}", i % 3)],
            )
        })
        .collect();
    let names: Vec<String> = (0..rings).map(|r| format!("r{r}")).collect();
    let spec: Vec<RingSpec> = names
        .iter()
        .map(|n| (n.as_str(), vec![format!("tag:ring/{n}")], 10, "10m"))
        .collect();
    let mut s = fleet_script(fleet_release(&list, &spec, services, "\"10%\""));
    s.start();
    s.fleet(FleetEvent::RingStarted { ring: "r0".into() });
    for (name, _) in list.iter().take(first) {
        s.promote_tenant(name);
    }
    s.ring_done("r0", 600_000);
    if rings > 1 && tenants > first + 3 {
        s.fleet(FleetEvent::RingStarted { ring: "r1".into() });
        s.fail_tenant(&list[first].0, 1);
        for (name, _) in &list[first + 1..first + 3] {
            s.fleet(FleetEvent::TenantStarted {
                tenant: name.clone(),
            });
            s.run_to(&format!("{name}/api"), 1);
        }
    }
    s.advance(30_000);
    s
}
