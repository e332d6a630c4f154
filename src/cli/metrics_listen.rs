//! `--metrics-listen ADDR` of deploy, serve, resume and demo.

use std::net::SocketAddr;

/// Where the local platform serves `/metrics`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct MetricsListenArg {
    /// Serve Prometheus `GET /metrics` (the proxy's per-revision series and cutover's own
    /// release metrics) and `GET /weights` on ADDR, e.g. 127.0.0.1:9464 (platform local;
    /// overrides `[release] metrics_listen`).
    #[arg(long, value_name = "ADDR", value_hint = clap::ValueHint::Other)]
    pub metrics_listen: Option<SocketAddr>,
}

impl MetricsListenArg {
    /// The release with the flag laid over `[release] metrics_listen`.
    pub fn apply(&self, release: &mut crate::release::Release) {
        if let Some(addr) = self.metrics_listen {
            release.release.metrics_listen = Some(addr.to_string());
        }
    }
}
