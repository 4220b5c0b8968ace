//! The built-in queries behind one version's counts, one set per data plane
//! (`spec.analysis.provider.dataPlane`). Each set selects the series of one backend's requests and
//! says which label tells a failed response from a good one; the provider sums both over the window,
//! so the judges read the same counts whichever data plane recorded them.
//!
//! Naming assumptions, as the docs state them:
//! - `shifter`: the proxies' outbound metrics by `dst_service`, through the apex `authority`.
//! - `linkerd`: inbound metrics by `deployment`, the Deployment named as the backend Service.
//! - `istio`: destination-reported metrics by `destination_workload`, named as the backend Service.
//! - `envoy`: upstream cluster metrics, clusters named `<namespace>_<service>_<port>` (Contour's
//!   statistics name for a Service port).

use shifter_crds::canary::DataPlane;

use crate::config::Target;

/// The two instant queries that make one backend's counts over one window.
#[derive(Debug, Clone, PartialEq)]
pub struct CountQueries {
    /// Responses in the window, summed by [`CountQueries::outcome_label`].
    pub responses: String,
    /// The label whose value says whether a response failed.
    pub outcome_label: &'static str,
    /// Cumulative latency buckets in milliseconds, summed by `le`.
    pub latency: String,
    outcome: Outcome,
}

/// How a response series says it failed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    /// `classification="failure"`, as Linkerd-style proxies classify responses.
    Classified,
    /// An HTTP status code of 5xx.
    ServerError,
}

impl CountQueries {
    /// The queries of `plane` for `backend` (the stable or canary Service) over `window_s` seconds.
    pub fn new(plane: DataPlane, target: &Target, backend: &str, window_s: i64) -> Self {
        let ns = escape(&target.namespace);
        let (responses, outcome_label, outcome, latency, selector) = match plane {
            DataPlane::Shifter => (
                "response_total",
                "classification",
                Outcome::Classified,
                "response_latency_ms_bucket",
                format!(
                    "direction=\"outbound\",dst_namespace=\"{ns}\",dst_service=\"{}\",authority=~\"{}(\\\\..*)?(:[0-9]+)?\"",
                    escape(backend),
                    escape(&regex_quote(&target.service)),
                ),
            ),
            DataPlane::Linkerd => (
                "response_total",
                "classification",
                Outcome::Classified,
                "response_latency_ms_bucket",
                format!("direction=\"inbound\",namespace=\"{ns}\",deployment=\"{}\"", escape(backend)),
            ),
            DataPlane::Istio => (
                "istio_requests_total",
                "response_code",
                Outcome::ServerError,
                "istio_request_duration_milliseconds_bucket",
                format!(
                    "reporter=\"destination\",destination_workload_namespace=\"{ns}\",destination_workload=\"{}\"",
                    escape(backend)
                ),
            ),
            DataPlane::Envoy => (
                "envoy_cluster_upstream_rq",
                "envoy_response_code",
                Outcome::ServerError,
                "envoy_cluster_upstream_rq_time_bucket",
                format!(
                    "envoy_cluster_name=~\"{}_{}_[0-9A-Za-z-]+\"",
                    escape(&regex_quote(&target.namespace)),
                    escape(&regex_quote(backend))
                ),
            ),
        };
        let range = window_s.max(1);
        CountQueries {
            responses: format!("sum by ({outcome_label}) (increase({responses}{{{selector}}}[{range}s]))"),
            outcome_label,
            latency: format!("sum by (le) (increase({latency}{{{selector}}}[{range}s]))"),
            outcome,
        }
    }

    /// Whether the responses whose [`CountQueries::outcome_label`] is `value` failed.
    pub fn failed(&self, value: Option<&str>) -> bool {
        match self.outcome {
            Outcome::Classified => value == Some("failure"),
            Outcome::ServerError => value.is_some_and(|code| code.len() == 3 && code.starts_with('5')),
        }
    }
}

/// A label value inside double quotes.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A literal inside a (fully anchored) PromQL regular expression.
fn regex_quote(v: &str) -> String {
    v.chars().fold(String::new(), |mut out, c| {
        if ".+*?()|[]{}^$\\".contains(c) {
            out.push('\\');
        }
        out.push(c);
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target { namespace: "shop".into(), service: "web".into(), stable: "web-v1".into(), canary: "web-v2".into() }
    }

    #[test]
    fn shifter_reads_one_backend_through_the_apex_authority_with_or_without_domain_and_port() {
        let q = CountQueries::new(DataPlane::Shifter, &target(), "web-v2", 60);
        let selector =
            r#"direction="outbound",dst_namespace="shop",dst_service="web-v2",authority=~"web(\\..*)?(:[0-9]+)?""#;
        assert_eq!(q.responses, format!("sum by (classification) (increase(response_total{{{selector}}}[60s]))"));
        assert_eq!(q.latency, format!("sum by (le) (increase(response_latency_ms_bucket{{{selector}}}[60s]))"));
    }

    #[test]
    fn linkerd_reads_inbound_metrics_of_the_deployment_named_as_the_backend() {
        let q = CountQueries::new(DataPlane::Linkerd, &target(), "web-v1", 30);
        let selector = r#"direction="inbound",namespace="shop",deployment="web-v1""#;
        assert_eq!(q.responses, format!("sum by (classification) (increase(response_total{{{selector}}}[30s]))"));
        assert_eq!(q.latency, format!("sum by (le) (increase(response_latency_ms_bucket{{{selector}}}[30s]))"));
        assert!(q.failed(Some("failure")) && !q.failed(Some("success")) && !q.failed(None));
    }

    #[test]
    fn istio_reads_what_the_destination_workload_reported() {
        let q = CountQueries::new(DataPlane::Istio, &target(), "web-v2", 60);
        let selector = r#"reporter="destination",destination_workload_namespace="shop",destination_workload="web-v2""#;
        assert_eq!(q.responses, format!("sum by (response_code) (increase(istio_requests_total{{{selector}}}[60s]))"));
        assert_eq!(
            q.latency,
            format!("sum by (le) (increase(istio_request_duration_milliseconds_bucket{{{selector}}}[60s]))")
        );
    }

    #[test]
    fn envoy_reads_every_port_of_the_backend_cluster_and_no_other_service() {
        let q = CountQueries::new(DataPlane::Envoy, &target(), "web-v2", 60);
        let selector = r#"envoy_cluster_name=~"shop_web-v2_[0-9A-Za-z-]+""#;
        assert_eq!(
            q.responses,
            format!("sum by (envoy_response_code) (increase(envoy_cluster_upstream_rq{{{selector}}}[60s]))")
        );
        assert_eq!(
            q.latency,
            format!("sum by (le) (increase(envoy_cluster_upstream_rq_time_bucket{{{selector}}}[60s]))")
        );
    }

    #[test]
    fn status_codes_fail_only_as_5xx() {
        let q = CountQueries::new(DataPlane::Envoy, &target(), "web-v2", 60);
        for (code, failed) in [("503", true), ("500", true), ("200", false), ("404", false), ("0", false), ("5", false)]
        {
            assert_eq!(q.failed(Some(code)), failed, "{code}");
        }
        assert!(!q.failed(None));
    }

    #[test]
    fn a_short_window_is_still_a_valid_range() {
        let q = CountQueries::new(DataPlane::Istio, &target(), "web-v2", 0);
        assert!(q.responses.ends_with("[1s]))"), "{}", q.responses);
    }
}
