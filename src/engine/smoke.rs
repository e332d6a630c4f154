//! Smoke tests: an HTTP request through the platform's test route (so it reaches the
//! candidate at any weight), or a program run with `{url}` filled in (argv, never a
//! shell), each bounded by its timeout.

use std::process::Stdio;
use std::sync::Arc;

use async_trait::async_trait;

use crate::platform::TestRoute;
use crate::release::Smoke;

use super::http;

/// The result of one smoke test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmokeOutcome {
    pub passed: bool,
    /// What happened, for people.
    pub detail: String,
}

/// Runs smoke tests (the real one, or a scripted one in tests).
#[async_trait]
pub trait SmokeTester: Send + Sync {
    /// `route` reaches the revision under test through the service's address;
    /// `direct_url` is one of its instances (`http://127.0.0.1:41234`), for `{url}`.
    async fn run(&self, test: &Smoke, route: &TestRoute, direct_url: &str) -> SmokeOutcome;
}

/// HTTP requests and argv commands, for real.
#[derive(Debug, Clone, Default)]
pub struct RealSmoke {
    /// Added to every command's inherited environment (`TRACEPARENT` when the run is
    /// traced: `crate::trace`).
    env: Vec<(String, String)>,
}

impl RealSmoke {
    pub fn shared() -> Arc<dyn SmokeTester> {
        Arc::new(RealSmoke::default())
    }

    /// Commands also get `env`.
    pub fn with_env(env: Vec<(String, String)>) -> Arc<dyn SmokeTester> {
        Arc::new(RealSmoke { env })
    }
}

#[async_trait]
impl SmokeTester for RealSmoke {
    async fn run(&self, test: &Smoke, route: &TestRoute, direct_url: &str) -> SmokeOutcome {
        let timeout = test.timeout.0;
        if let Some(req) = &test.request {
            let mut parts = req.split_whitespace();
            let (method, path) = match (parts.next(), parts.next()) {
                (Some(m), Some(p)) if p.starts_with('/') => (m, p),
                _ => {
                    return SmokeOutcome {
                        passed: false,
                        detail: format!("request `{req}` is not `METHOD /path`"),
                    };
                }
            };
            let url = format!("{}{}", route.base_url.trim_end_matches('/'), path);
            let headers = vec![route.header.clone()];
            return match http::request(method, &url, &headers, None, timeout).await {
                Ok(a) if a.status == test.expect_status => SmokeOutcome {
                    passed: true,
                    detail: format!("{method} {path} answered {}", a.status),
                },
                Ok(a) => SmokeOutcome {
                    passed: false,
                    detail: format!(
                        "{method} {path} answered {} (expected {}){}",
                        a.status,
                        test.expect_status,
                        first_line(&a.body)
                    ),
                },
                Err(e) => SmokeOutcome {
                    passed: false,
                    detail: e,
                },
            };
        }
        if let Some(argv) = &test.command {
            let argv: Vec<String> = argv
                .iter()
                .map(|a| a.replace("{url}", direct_url))
                .collect();
            let Some(program) = argv.first() else {
                return SmokeOutcome {
                    passed: false,
                    detail: "empty command".into(),
                };
            };
            let mut cmd = tokio::process::Command::new(program);
            cmd.args(&argv[1..])
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            let child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) => {
                    return SmokeOutcome {
                        passed: false,
                        detail: format!("cannot run `{program}`: {e}"),
                    };
                }
            };
            return match tokio::time::timeout(timeout, child.wait_with_output()).await {
                Err(_) => SmokeOutcome {
                    passed: false,
                    detail: format!("`{program}` did not finish within {}", test.timeout),
                },
                Ok(Err(e)) => SmokeOutcome {
                    passed: false,
                    detail: format!("`{program}`: {e}"),
                },
                Ok(Ok(out)) if out.status.success() => SmokeOutcome {
                    passed: true,
                    detail: format!("`{program}` exited 0"),
                },
                Ok(Ok(out)) => SmokeOutcome {
                    passed: false,
                    detail: format!(
                        "`{program}` failed ({}){}",
                        out.status,
                        first_line(&String::from_utf8_lossy(&out.stderr))
                    ),
                },
            };
        }
        SmokeOutcome {
            passed: false,
            detail: "smoke test has neither `request` nor `command`".into(),
        }
    }
}

fn first_line(text: &str) -> String {
    match text.lines().map(str::trim).find(|l| !l.is_empty()) {
        Some(l) => format!(": {}", l.chars().take(200).collect::<String>()),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::{Dur, default_smoke_timeout};

    fn smoke(command: Vec<&str>) -> Smoke {
        Smoke {
            name: "t".into(),
            request: None,
            expect_status: 200,
            command: Some(command.into_iter().map(String::from).collect()),
            timeout: default_smoke_timeout(),
        }
    }

    fn route() -> TestRoute {
        TestRoute {
            base_url: "http://127.0.0.1:9".into(),
            header: ("x-cutover-revision".into(), "v2".into()),
        }
    }

    #[tokio::test]
    async fn commands_get_the_url_as_an_argument_without_a_shell() {
        let ok = RealSmoke::default()
            .run(
                &smoke(vec!["test", "{url}", "=", "http://x:1"]),
                &route(),
                "http://x:1",
            )
            .await;
        assert!(ok.passed, "{ok:?}");
        // A shell would expand `$HOME`; argv passes it through literally.
        let lit = RealSmoke::default()
            .run(&smoke(vec!["test", "$HOME", "=", "$HOME"]), &route(), "u")
            .await;
        assert!(lit.passed, "{lit:?}");
        let bad = RealSmoke::default()
            .run(&smoke(vec!["false"]), &route(), "u")
            .await;
        assert!(!bad.passed && bad.detail.contains("failed"), "{bad:?}");
        let mut slow = smoke(vec!["sleep", "5"]);
        slow.timeout = Dur(std::time::Duration::from_millis(100));
        let t = RealSmoke::default().run(&slow, &route(), "u").await;
        assert!(!t.passed && t.detail.contains("did not finish"), "{t:?}");
        let missing = RealSmoke::default()
            .run(&smoke(vec!["/nonexistent/prog"]), &route(), "u")
            .await;
        assert!(
            !missing.passed && missing.detail.contains("cannot run"),
            "{missing:?}"
        );
    }
}
