//! `[metrics]` and `[service.analysis.prometheus]`: where the judge reads traffic from.

use super::{Parser, Tbl, keys};
use crate::release::model::{
    MetricsProvider, MetricsSection, PrometheusQueries, PrometheusTemplate, default_metrics_timeout,
};

impl Parser<'_> {
    pub(super) fn metrics(&mut self, t: &Tbl) -> MetricsSection {
        self.check_keys(t, keys::METRICS);
        MetricsSection {
            provider: self
                .enum_of(
                    t,
                    "provider",
                    MetricsProvider::NAMES,
                    &[MetricsProvider::Default, MetricsProvider::Prometheus],
                )
                .unwrap_or_default(),
            url: self.opt_str(t, "url", "\"http://127.0.0.1:9090\""),
            template: self
                .enum_of(
                    t,
                    "template",
                    PrometheusTemplate::NAMES,
                    &PrometheusTemplate::ALL,
                )
                .unwrap_or_default(),
            username: self.opt_str(t, "username", "\"cutover\""),
            password: self.opt_str(t, "password", "\"env:PROMETHEUS_PASSWORD\""),
            bearer_token: self.opt_str(t, "bearer_token", "\"env:PROMETHEUS_TOKEN\""),
            timeout: self
                .opt_dur(t, "timeout")
                .unwrap_or_else(default_metrics_timeout),
        }
    }

    pub(super) fn prometheus_queries(&mut self, t: &Tbl) -> PrometheusQueries {
        self.check_keys(t, keys::PROMETHEUS_QUERIES);
        let example =
            "\"sum(my_requests_total{app=\\\"{{service}}\\\",version=\\\"{{revision}}\\\"})\"";
        PrometheusQueries {
            requests: self.opt_str(t, "requests", example),
            errors: self.opt_str(t, "errors", example),
            slow: self.opt_str(t, "slow", example),
        }
    }
}
