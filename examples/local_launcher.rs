//! Used by `tests/local_platform.rs`: starts a local platform with two replicas whose
//! shell first forks a `sleep` (a grandchild that `PR_SET_PDEATHSIG` does not cover), prints
//! the replica pids once healthy, then waits to be killed (at most two minutes).
//!
//! Usage: `local_launcher STATE_DIR MARKS_DIR CUTOVER_BINARY`

use std::time::{Duration, Instant};

use cutover::platform::Platform;
use cutover::platform::local::{
    HealthCheck, LocalConfig, LocalPlatform, LocalServiceConfig, RevisionRun,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: local_launcher STATE_DIR MARKS_DIR CUTOVER_BINARY";
    let (Some(state), Some(marks), Some(cutover)) = (args.next(), args.next(), args.next()) else {
        return Err(usage.into());
    };
    let script = format!(
        "sleep 300 & echo $! > '{marks}/sleep-{{replica}}'; exec '{cutover}' demo-service --port {{port}} --revision {{revision}}"
    );
    let mut service = LocalServiceConfig::new(
        "api",
        "127.0.0.1:0".parse()?,
        vec!["sh".into(), "-c".into(), script],
    )
    .with_revision("v1", RevisionRun::default());
    service.health = HealthCheck {
        interval: Duration::from_millis(50),
        healthy_after: 1,
        ..HealthCheck::default()
    };
    let platform = LocalPlatform::start(LocalConfig {
        state_dir: state.into(),
        admin: None,
        services: vec![service],
    })
    .await?;
    platform.launch("api", "v1", 2).await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while platform.health("api", "v1").await?.healthy() < 2 {
        if Instant::now() > deadline {
            platform.shutdown().await;
            return Err("replicas did not become healthy".into());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let pids = platform.pids("api", "v1").await;
    let line: Vec<String> = pids.iter().map(u32::to_string).collect();
    println!("{}", line.join(" "));
    tokio::time::sleep(Duration::from_secs(120)).await;
    platform.shutdown().await;
    Ok(())
}
