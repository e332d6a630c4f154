//! `cutover load`: send HTTP load to one or more URLs and report counts and latency.

use std::process::ExitCode;
use std::time::Duration;

use hyper::header::{HeaderName, HeaderValue};

use crate::cli::{Error, init_logging, parse_seconds};
use crate::loadgen::{LoadConfig, LoadReport, run as run_load};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// URLs to load, used in turn (http:// only).
    #[arg(required = true)]
    pub urls: Vec<String>,
    /// Total requests per second over all URLs (0 = as fast as possible).
    #[arg(long)]
    pub rate: f64,
    /// How long to send (seconds, or a duration like 30s, 2m).
    #[arg(long, value_parser = parse_seconds)]
    pub duration: Duration,
    /// Concurrent connections (each keeps one keep-alive connection per URL).
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// `text` (a table) or `json` (one object).
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Stop after this many requests.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Per-request timeout (seconds, or a duration).
    #[arg(long, value_parser = parse_seconds, default_value = "10s")]
    pub timeout: Duration,
    /// Extra request header `name: value` (repeatable), e.g. `x-cutover-revision: v2`.
    #[arg(long = "header")]
    pub headers: Vec<String>,
}

fn parse_header(h: &str) -> Result<(HeaderName, HeaderValue), String> {
    let Some((name, value)) = h.split_once(':') else {
        return Err(format!(
            "--header `{h}` has no `:`; write it as `name: value`"
        ));
    };
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("--header `{h}`: `{}` is not a header name", name.trim()))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("--header `{h}`: the value is not a valid header value"))?;
    Ok((name, value))
}

pub fn run(args: LoadArgs) -> Result<ExitCode, Error> {
    init_logging();
    let mut urls = Vec::with_capacity(args.urls.len());
    for u in &args.urls {
        let uri = u.parse().map_err(|e| {
            Error::ToolInvalid(format!(
                "`{u}` is not a URL ({e}); write e.g. http://127.0.0.1:8080/"
            ))
        })?;
        urls.push(uri);
    }
    let mut headers = Vec::new();
    for h in &args.headers {
        headers.push(parse_header(h).map_err(Error::ToolInvalid)?);
    }
    let config = LoadConfig {
        urls,
        rate: args.rate,
        duration: args.duration,
        connections: args.connections,
        max_requests: args.requests,
        timeout: args.timeout,
        headers,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::ToolInternal(format!("cannot start the async runtime: {e}")))?;
    let report = runtime
        .block_on(run_load(config))
        .map_err(|e| Error::ToolInvalid(e.to_string()))?;
    match args.output {
        Output::Json => {
            let json = serde_json::to_string(&report)
                .map_err(|e| Error::ToolInternal(format!("cannot encode the report: {e}")))?;
            println!("{json}");
        }
        Output::Text => print!("{}", text_report(&report)),
    }
    Ok(ExitCode::SUCCESS)
}

/// The human-readable report.
pub fn text_report(r: &LoadReport) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{} requests in {:.1} s ({:.0} req/s, target {}), {} failed\n",
        r.requests,
        r.duration_s,
        r.achieved_rate,
        if r.target_rate > 0.0 {
            format!("{:.0}", r.target_rate)
        } else {
            "max".to_string()
        },
        r.failed
    ));
    for u in &r.urls {
        let status: Vec<String> = u.status.iter().map(|(s, n)| format!("{s}: {n}")).collect();
        out.push_str(&format!(
            "\n{}\n  requests {}  status [{}]  connection errors {}  timeouts {}\n",
            u.url,
            u.requests,
            status.join(", "),
            u.connection_errors,
            u.timeouts
        ));
        out.push_str(&format!(
            "  latency ms  p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}\n",
            u.latency.p50_ms, u.latency.p90_ms, u.latency.p99_ms, u.latency.max_ms
        ));
        if !u.revisions.is_empty() {
            let revs: Vec<String> = u
                .revisions
                .iter()
                .map(|(s, n)| format!("{s}: {n}"))
                .collect();
            out.push_str(&format!("  served by revision [{}]\n", revs.join(", ")));
        }
        for (e, n) in &u.errors {
            out.push_str(&format!("  error ×{n}: {e}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_flag_parses_and_refuses_garbage() {
        let (n, v) = parse_header("x-cutover-revision: v2").unwrap();
        assert_eq!(n.as_str(), "x-cutover-revision");
        assert_eq!(v.to_str().unwrap(), "v2");
        assert!(parse_header("novalue").unwrap_err().contains("name: value"));
    }
}
