//! Grafana annotations (`[notify.grafana]`): the release's start, each rollback and its
//! finish posted to Grafana's HTTP API (`POST /api/annotations`) as deploy markers, by
//! the notifier ([`super::notify`]) with its retries, in the background. The finish
//! marks the whole release as a region when its start was seen. The token is sent as
//! `Authorization: Bearer` and never logged.

use super::state::{Event, EventKind, describe};

/// Where annotations go, resolved at start (`env:` read).
#[derive(Clone)]
pub struct Grafana {
    /// Grafana's base URL.
    pub url: String,
    /// Secret.
    pub token: String,
    pub dashboard_uid: Option<String>,
    /// `cutover`, the release, its environment, then the release's own tags.
    pub tags: Vec<String>,
}

impl std::fmt::Debug for Grafana {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grafana")
            .field("url", &super::notify::redact(&self.url))
            .field("dashboard_uid", &self.dashboard_uid)
            .field("tags", &self.tags)
            .finish_non_exhaustive()
    }
}

impl Grafana {
    /// From `[notify.grafana]`: `env:` values read (a missing variable is an error naming
    /// it, never a value).
    pub fn resolve(
        g: &crate::release::GrafanaNotify,
        release: &str,
        environment: Option<&str>,
    ) -> Result<Grafana, String> {
        let read = |key: &str, v: &str| -> Result<String, String> {
            match v.strip_prefix("env:") {
                None => Ok(v.to_string()),
                Some(var) => match std::env::var(var) {
                    Ok(value) if !value.trim().is_empty() => Ok(value.trim().to_string()),
                    _ => Err(format!(
                        "[notify.grafana] {key} = \"env:{var}\": the environment variable is not set; export {var}"
                    )),
                },
            }
        };
        let url = read("url", &g.url)?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "[notify.grafana] url: {} does not hold an http(s) URL",
                g.url
            ));
        }
        let mut tags = vec!["cutover".to_string(), release.to_string()];
        tags.extend(environment.map(str::to_string));
        tags.extend(g.tags.iter().cloned());
        Ok(Grafana {
            url,
            token: read("token", &g.token)?,
            dashboard_uid: g.dashboard_uid.clone(),
            tags,
        })
    }

    /// `POST` here.
    pub fn endpoint(&self) -> String {
        format!("{}/api/annotations", self.url.trim_end_matches('/'))
    }

    /// The request's headers (the token: secret).
    pub fn headers(&self) -> Vec<(String, String)> {
        vec![("Authorization".into(), format!("Bearer {}", self.token))]
    }

    /// The annotation for `e`, if it is a start, a rollback or the finish; `started_ms`
    /// is when the release started (the finish then covers the whole release).
    pub fn annotation(
        &self,
        release: &str,
        started_ms: Option<u64>,
        e: &Event,
    ) -> Option<serde_json::Value> {
        let (tag, time, end) = match &e.kind {
            EventKind::ReleaseStarted { .. } => ("start", e.at_ms, None),
            EventKind::RollbackStarted { .. } => ("rollback", e.at_ms, None),
            EventKind::ReleaseFinished { .. } => match started_ms {
                Some(t) if t <= e.at_ms => ("finish", t, Some(e.at_ms)),
                _ => ("finish", e.at_ms, None),
            },
            _ => return None,
        };
        let mut tags = self.tags.clone();
        tags.push(tag.to_string());
        if let EventKind::ReleaseFinished { exit_code, .. } = &e.kind {
            tags.push(
                if *exit_code == 0 {
                    "promoted"
                } else {
                    "failed"
                }
                .into(),
            );
        }
        let mut body = serde_json::json!({
            "time": time,
            "tags": tags,
            "text": format!("{release}: {}", describe(e)),
        });
        if let Some(end) = end {
            body["timeEnd"] = end.into();
        }
        if let Some(uid) = &self.dashboard_uid {
            body["dashboardUID"] = uid.clone().into();
        }
        Some(body)
    }
}
