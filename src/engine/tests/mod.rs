//! Engine tests on the fake clock and the fake platform.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::testing::{FakePlatform, ScriptedSmoke};
use super::*;
use crate::platform::InstanceState;
use crate::release::Release;

mod active;
mod change_control;
mod commands;
mod fleet;
mod migration;
mod orchestration;
mod report;
mod resume;
mod rollout;

pub(crate) const START: u64 = 1_700_000_000_000;

/// A release of local services with the given `[[service]]` bodies (name first).
pub(crate) fn release(header: &str, services: &[(&str, &str)]) -> Release {
    let mut text = format!("[release]\nname = \"t\"\nplatform = \"local\"\n{header}\n");
    for (i, (name, body)) in services.iter().enumerate() {
        text.push_str(&format!(
            "\n[[service]]\nname = \"{name}\"\n{body}\n[service.local]\nlisten = \"127.0.0.1:{}\"\nreplicas = 2\ncommand = [\"cutover\", \"demo-service\", \"--port\", \"{{port}}\", \"--revision\", \"{{revision}}\"]\ncurrent = {{ revision = \"v1\" }}\ntarget = {{ revision = \"v2\" }}\n",
            19000 + i
        ));
    }
    match crate::release::load_str(Path::new("test.toml"), &text, Path::new(".")) {
        Ok(r) => r,
        Err(d) => panic!(
            "test release invalid:\n{}\n{text}",
            d.iter().map(|x| x.to_string()).collect::<String>()
        ),
    }
}

pub(crate) struct H {
    pub engine: Engine,
    pub clock: FakeClock,
    pub platform: Arc<FakePlatform>,
    pub smoke: ScriptedSmoke,
    pub rec: MemoryRecorder,
}

impl H {
    pub fn new(r: Release) -> H {
        let clock = FakeClock::new(START);
        let platform = FakePlatform::new(Arc::new(clock.clone()));
        H::with(r, clock, platform)
    }

    pub fn with(r: Release, clock: FakeClock, platform: Arc<FakePlatform>) -> H {
        H::with_options(
            r,
            clock,
            platform,
            EngineOptions {
                operator: "tester".into(),
                ..Default::default()
            },
        )
    }

    pub fn with_options(
        r: Release,
        clock: FakeClock,
        platform: Arc<FakePlatform>,
        options: EngineOptions,
    ) -> H {
        let smoke = ScriptedSmoke::new();
        let rec = MemoryRecorder::new();
        let plan = crate::plan::plan(&r);
        let engine = Engine::new(
            r,
            &plan,
            platform.clone(),
            Arc::new(clock.clone()),
            Box::new(rec.clone()),
            Arc::new(smoke.clone()),
            options,
        )
        .unwrap();
        H {
            engine,
            clock,
            platform,
            smoke,
            rec,
        }
    }

    /// Tick until nothing changes at the current time (background work included).
    pub async fn settle(&mut self) {
        for _ in 0..200 {
            // A migration stage runs on the blocking pool, in real time.
            for _ in 0..2000 {
                if !self.engine.migrations_busy() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
                self.engine.tick().await.unwrap();
            }
            let before = self.rec.snapshot().len();
            self.engine.tick().await.unwrap();
            for _ in 0..5 {
                tokio::task::yield_now().await;
            }
            self.engine.tick().await.unwrap();
            if self.rec.snapshot().len() == before {
                return;
            }
        }
        panic!("engine does not settle");
    }

    /// Let `d` pass, waking the engine whenever it asks.
    pub async fn run_for(&mut self, d: Duration) {
        let end = self.clock.now_ms() + d.as_millis() as u64;
        self.settle().await;
        loop {
            let t = self.engine.next_wakeup();
            if t > end {
                break;
            }
            self.clock.set(t);
            self.settle().await;
        }
        self.clock.set(end);
        self.settle().await;
    }

    pub async fn cmd(&mut self, text: &str) -> CommandReply {
        self.cmd_as(text, "alice").await
    }

    pub async fn cmd_as(&mut self, text: &str, operator: &str) -> CommandReply {
        let c = Command::parse(text).unwrap();
        let r = self.engine.handle(c, operator).await.unwrap();
        self.settle().await;
        r
    }

    pub async fn start(&mut self) {
        assert!(self.cmd("start").await.is_ok());
    }

    pub fn status(&self, s: &str) -> ServiceStatus {
        self.engine.state().service(s).unwrap().status
    }

    pub fn svc(&self, s: &str) -> ServiceState {
        self.engine.state().service(s).unwrap().clone()
    }

    pub fn events(&self) -> Vec<Event> {
        self.rec.snapshot()
    }

    pub fn no_traffic_on_stopped(&self) {
        let bad = self.platform.traffic_on_stopped();
        assert!(bad.is_empty(), "traffic on revisions not running: {bad:?}");
    }

    /// Run until the release finished (bounded).
    pub async fn finish(&mut self, limit: Duration) {
        let end = self.clock.now_ms() + limit.as_millis() as u64;
        while self.engine.state().status != ReleaseStatus::Finished {
            assert!(
                self.clock.now_ms() < end,
                "release not finished: {:#?}",
                self.engine.state()
            );
            self.run_for(Duration::from_secs(1)).await;
        }
    }
}

const CANARY: &str = "strategy = \"canary\"\nsteps = [ { set_weight = 10 }, { analysis = \"1m\" }, { set_weight = 50 }, { pause = \"30s\" } ]\n[service.analysis]\nmin_requests = 100\nmin_duration = \"30s\"\n";
const GATED: &str = "strategy = \"canary\"\nsteps = [ { set_weight = 10 }, { pause = \"forever\" }, { set_weight = 50 }, { approval = \"10m\", on_timeout = \"rollback\" } ]\n";

fn plain(deps: &[&str]) -> String {
    let d: Vec<String> = deps.iter().map(|x| format!("\"{x}\"")).collect();
    format!(
        "depends_on = [{}]\nstrategy = \"canary\"\nsteps = [ {{ set_weight = 50 }}, {{ pause = \"10s\" }} ]\n",
        d.join(", ")
    )
}
