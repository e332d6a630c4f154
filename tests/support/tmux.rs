//! A tmux server of the test's own (`-L socket`), killed on drop: a real terminal for the
//! console, driven with `send-keys` and read with `capture-pane`. Needs tmux (Debian
//! package `tmux`); a test using it fails without it.

use std::process::Command;
use std::time::{Duration, Instant};

pub struct Tmux {
    pub socket: String,
}

impl Tmux {
    /// A server on a socket named after `name` and this process.
    pub fn new(name: &str) -> Tmux {
        Tmux {
            socket: format!("cutover-{name}-{}", std::process::id()),
        }
    }

    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux must be installed (Debian package `tmux`)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A detached session `demo` of `width`×`height` running `cmd` (a shell line).
    pub fn start(&self, width: u16, height: u16, cmd: &str) {
        let (w, h) = (width.to_string(), height.to_string());
        self.run(&["new-session", "-d", "-s", "demo", "-x", &w, "-y", &h, cmd]);
    }

    pub fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "demo"])
    }

    pub fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool, secs: u64) -> String {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            if Instant::now() > end {
                panic!("timed out waiting for {what}; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}
