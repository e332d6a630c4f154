//! The generated fleet the fleet benches share (`validate_plan`, `fleet_engine`):
//! `tenants` tenants × 5 services (a chain of two and three leaves; canary with analysis
//! and a pause, blue-green with a smoke test), each tenant with its own ports and tags, in
//! 4 rings by tag (1 %, 9 %, 40 % and 50 % of the tenants; max_parallel 1, 5, 10 %, 25 %;
//! bakes 10m, 10m, 30m, none), failure budget 2 %, one flag.

/// The release file's text.
pub fn generate_fleet(tenants: usize) -> String {
    let mut t = String::from(
        "[release]\nname = \"bench-fleet\"\nmax_parallel = 2\nfailure_budget = \"2%\"\n\n[flags]\nfile = \"flags.json\"\n\n[vars]\nbase = 20000\nhold = \"1m\"\n",
    );
    for s in 0..5 {
        t.push_str(&format!("p{s} = {}\n", 20_000 + s));
    }
    for i in 0..tenants {
        let ports: Vec<String> = (0..5)
            .map(|s| format!("p{s} = {}", 30_000 + i * 5 + s))
            .collect();
        // Ring boundaries as shares of the fleet: 1 %, 10 %, 50 %.
        let share = i * 100 / tenants.max(1);
        t.push_str(&format!(
            "\n[[tenant]]\nname = \"tenant-{i}\"\ntags = [\"ring/{}\", \"tier/{}\"]\nvars = {{ {} }}\nflags = {{ new_checkout = {} }}\n",
            match share {
                0 => 0,
                1..10 => 1,
                10..50 => 2,
                _ => 3,
            },
            i % 3,
            ports.join(", "),
            i % 2 == 0
        ));
    }
    for (r, parallel, bake) in [
        (0, "1", "10m"),
        (1, "5", "10m"),
        (2, "10%", "30m"),
        (3, "25%", "0s"),
    ] {
        t.push_str(&format!(
            "\n[[ring]]\nname = \"ring-{r}\"\nselect = [\"tag:ring/{r}\"]\nmax_parallel = {}\nbake = \"{bake}\"\n",
            if parallel.ends_with('%') {
                format!("\"{parallel}\"")
            } else {
                parallel.to_string()
            }
        ));
    }
    for s in 0..5 {
        let deps = match s {
            0 => String::new(),
            1 => "\"svc-0\"".into(),
            _ => "\"svc-1\"".into(),
        };
        t.push_str(&format!(
            "\n[[service]]\nname = \"svc-{s}\"\ndepends_on = [{deps}]\n"
        ));
        if s % 2 == 0 {
            t.push_str("strategy = \"canary\"\nsteps = [{ set_weight = 10 }, { analysis = \"${hold}\" }, { set_weight = 50 }, { pause = \"${hold}\" }]\n[service.analysis]\nmin_duration = \"30s\"\n");
        } else {
            t.push_str("strategy = \"blue_green\"\n[[service.smoke]]\nname = \"ping\"\nrequest = \"GET /ping\"\n");
        }
        t.push_str(&format!(
            "[service.local]\nlisten = \"127.0.0.1:${{p{s}}}\"\ncommand = [\"cutover\", \"demo-service\", \"--port\", \"{{port}}\"]\ncurrent = {{ revision = \"v1\" }}\ntarget = {{ revision = \"v2\" }}\n"
        ));
    }
    t
}
