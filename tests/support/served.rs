//! A `cutover serve` child process for CLI tests: stopped however the test ends (a failed
//! assertion must not leave a server running), waited on until `ctl status` answers, and
//! until it exits.

use std::process::{Child, Output};
use std::time::{Duration, Instant};

pub struct Served(pub Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Served {
    /// Run `status` (a `cutover ctl status`) until it succeeds and return its JSON; fails
    /// with the last answer and `log()` when the server exits or `within` passes.
    pub fn wait_status(
        &mut self,
        within: Duration,
        status: impl Fn() -> Output,
        log: impl Fn() -> String,
    ) -> serde_json::Value {
        let deadline = Instant::now() + within;
        loop {
            let st = status();
            if st.status.success() {
                return serde_json::from_slice(&st.stdout).unwrap();
            }
            assert!(
                Instant::now() < deadline && self.0.try_wait().unwrap().is_none(),
                "serve never answered: {}\n{}",
                String::from_utf8_lossy(&st.stderr),
                log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Wait until the server exits (fails after `within`, with `log()`).
    pub fn wait_exit(&mut self, within: Duration, log: impl Fn() -> String) {
        let deadline = Instant::now() + within;
        while self.0.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "serve did not finish\n{}", log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
