//! The `OTEL_*` environment variables, read as the OpenTelemetry specification defines
//! them (SDK configuration and the OTLP exporter's), for traces over OTLP/HTTP protobuf.
//! Without an endpoint nothing is exported. Header values are secret: they are never
//! part of a message, a log line or `Debug` output.

use std::time::Duration;

/// Where and how spans are exported.
#[derive(Clone)]
pub struct OtelConfig {
    /// The full traces URL (`…/v1/traces`).
    pub endpoint: String,
    /// `OTEL_EXPORTER_OTLP_HEADERS` (then `…_TRACES_HEADERS`): secret.
    pub headers: Vec<(String, String)>,
    /// One export request's time limit.
    pub timeout: Duration,
    /// Longest time a finished span waits in the batch (`OTEL_BSP_SCHEDULE_DELAY`).
    pub schedule_delay: Duration,
    /// Spans waiting beyond this are dropped and counted (`OTEL_BSP_MAX_QUEUE_SIZE`).
    pub max_queue: usize,
    /// Spans per request (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`).
    pub max_batch: usize,
    /// `service.name` and `OTEL_RESOURCE_ATTRIBUTES`.
    pub resource: Vec<(String, String)>,
}

impl std::fmt::Debug for OtelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtelConfig")
            .field("endpoint", &crate::engine::notify::redact(&self.endpoint))
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .field("schedule_delay", &self.schedule_delay)
            .field("max_queue", &self.max_queue)
            .field("max_batch", &self.max_batch)
            .field("resource", &self.resource)
            .finish()
    }
}

impl OtelConfig {
    /// The configuration from the process environment.
    pub fn from_process_env() -> Result<Option<OtelConfig>, String> {
        OtelConfig::from_env(|k| std::env::var(k).ok())
    }

    /// `Ok(None)`: tracing is off (no endpoint, `OTEL_SDK_DISABLED=true`,
    /// `OTEL_TRACES_EXPORTER=none`). `Err`: a variable cutover cannot follow; the message
    /// names it (never a header value), and the caller exports nothing.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Option<OtelConfig>, String> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        if get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        if let Some(exporters) = get("OTEL_TRACES_EXPORTER") {
            let list: Vec<&str> = exporters.split(',').map(str::trim).collect();
            if list.contains(&"none") {
                return Ok(None);
            }
            if let Some(other) = list.iter().find(|e| **e != "otlp") {
                return Err(format!(
                    "OTEL_TRACES_EXPORTER={other} is not supported (only `otlp` or `none`); traces are not exported"
                ));
            }
        }
        let endpoint = match (
            get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            get("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(url), _) => url,
            (None, Some(base)) => format!("{}/v1/traces", base.trim_end_matches('/')),
            (None, None) => return Ok(None),
        };
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(format!(
                "the OTLP endpoint {} is not an http(s) URL; traces are not exported",
                crate::engine::notify::redact(&endpoint)
            ));
        }
        let protocol = get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| get("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .unwrap_or_else(|| "http/protobuf".into());
        if protocol != "http/protobuf" {
            return Err(format!(
                "OTLP protocol `{protocol}` is not supported (only http/protobuf); traces are not exported"
            ));
        }
        let mut headers = Vec::new();
        for var in [
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        ] {
            if let Some(v) = get(var) {
                for (k, v) in key_values(var, &v)? {
                    headers.retain(|(h, _): &(String, String)| !h.eq_ignore_ascii_case(&k));
                    headers.push((k, v));
                }
            }
        }
        let millis = |var: &str, default: u64| -> Result<Duration, String> {
            match get(var) {
                None => Ok(Duration::from_millis(default)),
                Some(v) => v.parse::<u64>().map(Duration::from_millis).map_err(|_| {
                    format!("{var}={v} is not a number of milliseconds; traces are not exported")
                }),
            }
        };
        let count = |var: &str, default: usize| -> Result<usize, String> {
            match get(var) {
                None => Ok(default),
                Some(v) => v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    format!("{var}={v} is not a positive number; traces are not exported")
                }),
            }
        };
        let timeout = match get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") {
            Some(_) => millis("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", 10_000)?,
            None => millis("OTEL_EXPORTER_OTLP_TIMEOUT", 10_000)?,
        };
        let mut resource = match get("OTEL_RESOURCE_ATTRIBUTES") {
            Some(v) => key_values("OTEL_RESOURCE_ATTRIBUTES", &v)?,
            None => Vec::new(),
        };
        let service = get("OTEL_SERVICE_NAME")
            .or_else(|| {
                resource
                    .iter()
                    .find(|(k, _)| k == "service.name")
                    .map(|(_, v)| v.clone())
            })
            .unwrap_or_else(|| "cutover".into());
        resource.retain(|(k, _)| k != "service.name");
        resource.insert(0, ("service.name".into(), service));
        let max_queue = count("OTEL_BSP_MAX_QUEUE_SIZE", 2048)?;
        Ok(Some(OtelConfig {
            endpoint,
            headers,
            timeout,
            schedule_delay: millis("OTEL_BSP_SCHEDULE_DELAY", 5000)?,
            max_queue,
            max_batch: count("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)?.min(max_queue),
            resource,
        }))
    }
}

/// `key1=value1,key2=value2` (W3C baggage-like, values percent-decoded), as the
/// specification writes headers and resource attributes. Errors name the variable and
/// the entry's position, never its value.
fn key_values(var: &str, text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, item) in text.split(',').enumerate() {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let Some((k, v)) = item.split_once('=') else {
            return Err(format!(
                "{var}: entry {} has no `=` (write key=value,key2=value2); traces are not exported",
                i + 1
            ));
        };
        let k = percent_decode(k.trim());
        if k.is_empty() {
            return Err(format!(
                "{var}: entry {} has an empty key; traces are not exported",
                i + 1
            ));
        }
        out.push((k, percent_decode(v.trim())));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn cfg(vars: &[(&str, &str)]) -> Result<Option<OtelConfig>, String> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        OtelConfig::from_env(|k| m.get(k).cloned())
    }

    #[test]
    fn no_endpoint_or_disabled_means_off() {
        assert!(cfg(&[]).unwrap().is_none());
        let on = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")];
        assert!(cfg(&on).unwrap().is_some());
        for off in [
            ("OTEL_SDK_DISABLED", "TRUE"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ] {
            assert!(cfg(&[on[0], off]).unwrap().is_none(), "{off:?}");
        }
        assert!(cfg(&[on[0], ("OTEL_TRACES_EXPORTER", "zipkin")]).is_err());
        assert!(cfg(&[on[0], ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).is_err());
    }

    #[test]
    fn endpoints_headers_and_resource_follow_the_spec() {
        let c = cfg(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s%3Dcret,x-a=1"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "X-A=2"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "team=pay%20ments,service.name=x",
            ),
            ("OTEL_SERVICE_NAME", "deployer"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(
            c.headers,
            vec![
                ("api-key".to_string(), "s=cret".to_string()),
                ("X-A".to_string(), "2".to_string())
            ]
        );
        assert_eq!(
            c.resource,
            vec![
                ("service.name".to_string(), "deployer".to_string()),
                ("team".to_string(), "pay ments".to_string())
            ]
        );
        assert!(!format!("{c:?}").contains("s=cret"));
        let c = cfg(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:1"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:2/custom"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.endpoint, "http://b:2/custom");
        assert_eq!(c.resource[0].1, "cutover");
        let e = cfg(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:1"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "Authorization Bearer s3cret"),
        ])
        .unwrap_err();
        assert!(
            e.contains("OTEL_EXPORTER_OTLP_HEADERS") && !e.contains("s3cret"),
            "{e}"
        );
    }
}
