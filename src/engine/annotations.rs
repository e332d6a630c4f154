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
    /// When the release started, if before this process (a resumed run): its finish is
    /// still a region.
    pub started_ms: Option<u64>,
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
            started_ms: None,
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn grafana(uid: Option<&str>) -> Grafana {
        Grafana {
            url: "https://grafana.example.com/".into(),
            token: "glsa_SECRET".into(),
            dashboard_uid: uid.map(str::to_string),
            tags: vec!["cutover".into(), "shop".into()],
            started_ms: None,
        }
    }

    fn finished(at_ms: u64, exit_code: u8) -> Event {
        Event {
            seq: 9,
            at_ms,
            kind: EventKind::ReleaseFinished {
                services: BTreeMap::new(),
                exit_code,
            },
        }
    }

    #[test]
    fn finish_is_a_region_when_the_start_was_seen_and_a_point_otherwise() {
        let g = grafana(None);
        assert_eq!(g.endpoint(), "https://grafana.example.com/api/annotations");
        let region = g
            .annotation("shop", Some(1_000), &finished(5_000, 0))
            .unwrap();
        assert_eq!(
            (region["time"].as_u64(), region["timeEnd"].as_u64()),
            (Some(1_000), Some(5_000))
        );
        assert_eq!(
            region["tags"],
            serde_json::json!(["cutover", "shop", "finish", "promoted"])
        );
        assert!(region.get("dashboardUID").is_none());
        let point = g.annotation("shop", None, &finished(5_000, 3)).unwrap();
        assert_eq!(point["time"].as_u64(), Some(5_000));
        assert!(point.get("timeEnd").is_none());
        assert!(point["tags"].as_array().unwrap().contains(&"failed".into()));
        let on_dashboard = grafana(Some("d1"));
        let a = on_dashboard
            .annotation("shop", None, &finished(5, 0))
            .unwrap();
        assert_eq!(a["dashboardUID"], "d1");
        let other = Event {
            seq: 3,
            at_ms: 1,
            kind: EventKind::Promoted {
                service: "api".into(),
            },
        };
        assert!(g.annotation("shop", None, &other).is_none());
        assert!(!format!("{g:?}").contains("SECRET"));
    }
}
