//! Validates and plans a generated 1,000-service release and prints the figures.
//! Target (issue 2): under 20 ms for validate + plan on this machine.
//! Then a fleet: 1,000 tenants × 5 services in 4 rings, each tenant with its own ports
//! (so each is resolved and checked on its own). Target (issue 15): validate + plan of the
//! fleet, rings included, under 100 ms.
//!
//!     cargo bench --bench validate_plan
//!
//! Prints min / median / p99 over repeated runs of: parse + validate, plan, and both.

use std::path::Path;
use std::time::{Duration, Instant};

use cutover::{plan, release};

#[path = "common/fleet.rs"]
mod fleet_gen;
use fleet_gen::generate_fleet;

/// A layered DAG: 1,000 services in 20 layers of 50, each depending on up to 3 services of
/// the layer above; a mix of strategies, smoke tests and analysis sections.
fn generate(n: usize) -> String {
    let mut t = String::from(
        "[release]\nname = \"bench-1000\"\nmax_parallel = 8\nprogress_deadline = \"10m\"\n",
    );
    let width = 50;
    for i in 0..n {
        let layer = i / width;
        let mut deps = Vec::new();
        if layer > 0 {
            for k in 0..3 {
                let j = (layer - 1) * width + (i * 7 + k * 13) % width;
                let d = format!("\"svc-{j}\"");
                if !deps.contains(&d) {
                    deps.push(d);
                }
            }
        }
        t.push_str(&format!(
            "\n[[service]]\nname = \"svc-{i}\"\ndepends_on = [{}]\n",
            deps.join(", ")
        ));
        match i % 4 {
            0 => t.push_str(
                "strategy = \"canary\"\nsteps = [{ set_weight = 5 }, { analysis = \"2m\" }, { set_weight = 25 }, { pause = \"1m\" }, { set_weight = 50 }, { approval = \"10m\", on_timeout = \"rollback\" }]\n",
            ),
            1 => t.push_str("strategy = \"blue_green\"\nblue_green = { keep_old_for = \"5m\" }\n"),
            2 => t.push_str("strategy = \"linear\"\nlinear = { step = 10, every = \"1m\" }\n"),
            _ => t.push_str("strategy = \"rolling\"\nrolling = { batch = 1 }\n"),
        }
        t.push_str(
            "[service.health]\npath = \"/healthz\"\ninterval = \"1s\"\ntimeout = \"500ms\"\n",
        );
        t.push_str("[[service.smoke]]\nname = \"ping\"\nrequest = \"GET /api/ping\"\n");
        if i % 4 != 1 {
            t.push_str("[service.analysis]\nmin_requests = 500\nmin_duration = \"1m\"\nmax_p99 = \"500ms\"\n");
        }
        t.push_str(&format!(
            "[service.local]\nlisten = \"127.0.0.1:{}\"\nreplicas = 3\ncommand = [\"cutover\", \"demo-service\", \"--port\", \"{{port}}\", \"--revision\", \"{{revision}}\"]\ncurrent = {{ revision = \"v1\" }}\ntarget = {{ revision = \"v2\", env = {{ FEATURE = \"on\" }} }}\n",
            20_000 + i
        ));
    }
    t
}

fn fleet(runs: usize) {
    let tenants = 1000;
    let text = generate_fleet(tenants);
    let name = Path::new("bench-fleet.toml");
    // The flags file's directory is checked: resolve against one that exists.
    let base = std::env::temp_dir();
    let opts = release::LoadOptions::default();
    let load = || release::load_text(name, &text, &base, &opts);
    let l = load().unwrap_or_else(|d| {
        eprintln!(
            "generated fleet is invalid:\n{}",
            d.iter().map(|x| x.to_string()).collect::<String>()
        );
        std::process::exit(1);
    });
    let f = plan::plan_fleet(&l.release, &l.tenants).expect("a fleet");
    let services: usize = f
        .rings
        .iter()
        .flat_map(|r| &r.tenants)
        .map(|t| t.services.len())
        .sum();
    assert_eq!(services, tenants * 5);
    let (mut v, mut pl, mut both) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let t0 = Instant::now();
        let l = load().expect("valid");
        let t1 = Instant::now();
        let p = plan::plan(&l.release);
        let f = plan::plan_fleet(&l.release, &l.tenants);
        let t2 = Instant::now();
        std::hint::black_box((&p, &f));
        v.push(t1 - t0);
        pl.push(t2 - t1);
        both.push(t2 - t0);
    }
    println!();
    println!(
        "validate + plan of a generated fleet: {tenants} tenants × 5 services = {services} tenant-services in {} rings, {} KiB of TOML, {runs} runs",
        f.rings.len(),
        text.len() / 1024
    );
    table(vec![
        ("parse + validate", v),
        ("plan with rings", pl),
        ("validate + plan", both),
    ]);
    println!("target: validate + plan of 1,000 tenants × 5 services under 100 ms");
}

/// Min, median and p99 of each phase, one row each.
fn table(rows: Vec<(&str, Vec<Duration>)>) {
    println!(
        "{:<20} {:>10} {:>10} {:>10}",
        "phase", "min", "median", "p99"
    );
    for (label, xs) in rows {
        let (min, med, p99) = stats(xs);
        println!(
            "{:<20} {:>8.2}ms {:>8.2}ms {:>8.2}ms",
            label,
            min.as_secs_f64() * 1e3,
            med.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
}

fn stats(mut xs: Vec<Duration>) -> (Duration, Duration, Duration) {
    xs.sort();
    let p = |q: f64| xs[((xs.len() - 1) as f64 * q).round() as usize];
    (xs[0], p(0.5), p(0.99))
}

fn main() {
    let n = 1000;
    let text = generate(n);
    let name = Path::new("bench-1000.toml");
    let base = Path::new(".");
    // Warm up and check the generated release is valid.
    let r = release::load_str(name, &text, base).unwrap_or_else(|d| {
        eprintln!(
            "generated release is invalid:\n{}",
            d.iter().map(|x| x.to_string()).collect::<String>()
        );
        std::process::exit(1);
    });
    let p = plan::plan(&r);
    assert_eq!(p.services.len(), n);
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let (mut v, mut pl, mut both, mut syntax) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        let (doc, errors) = toml::de::DeTable::parse_recoverable(&text);
        std::hint::black_box((&doc, &errors));
        syntax.push(t.elapsed());
        let t0 = Instant::now();
        let r = release::load_str(name, &text, base).expect("valid");
        let t1 = Instant::now();
        let p = plan::plan(&r);
        let t2 = Instant::now();
        std::hint::black_box(&p);
        v.push(t1 - t0);
        pl.push(t2 - t1);
        both.push(t2 - t0);
    }
    println!(
        "validate + plan of a generated release: {n} services, {} waves, {} steps, {} KiB of TOML, {runs} runs",
        p.waves.len(),
        p.services.iter().map(|s| s.steps.len()).sum::<usize>(),
        text.len() / 1024
    );
    table(vec![
        ("  of which TOML", syntax),
        ("parse + validate", v),
        ("plan", pl),
        ("validate + plan", both),
    ]);
    println!("target: validate + plan under 20 ms");
    fleet(runs.min(20));
}
