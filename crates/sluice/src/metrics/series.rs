//! One edge frontend's per-request series (responses by class, upstream response time),
//! each looked up in its family once and then kept: a request costs an atomic add instead
//! of two label `String`s, a hash and a read lock. A series still appears on first use.
//! Nothing here renders metrics.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use super::{global, status_class, Be, FeClass, HTTP_CLASSES};

/// The series a frontend's requests write, resolved lazily (see the module doc).
#[derive(Debug)]
pub(crate) struct RequestSeries {
    frontend: Arc<str>,
    backend: Arc<str>,
    responses: [OnceLock<Counter>; 6],
    upstream: OnceLock<Histogram>,
}

impl RequestSeries {
    pub(crate) fn new(frontend: Arc<str>, backend: Arc<str>) -> RequestSeries {
        RequestSeries {
            frontend,
            backend,
            responses: Default::default(),
            upstream: OnceLock::new(),
        }
    }

    /// `sluice_http_responses_total{frontend, class}` += 1.
    pub(crate) fn response(&self, status: u16) {
        let class = status_class(status);
        let i = HTTP_CLASSES.iter().position(|c| *c == class).unwrap_or(5);
        self.responses[i]
            .get_or_init(|| {
                let labels = FeClass {
                    frontend: self.frontend.to_string(),
                    class: class.to_string(),
                };
                global().http_responses.get_or_create(&labels).clone()
            })
            .inc();
    }

    /// One response time of the app servers of the frontend's backend.
    pub(crate) fn upstream(&self, took: Duration) {
        self.upstream
            .get_or_init(|| {
                let labels = Be {
                    backend: self.backend.to_string(),
                };
                global().upstream_duration.get_or_create(&labels).clone()
            })
            .observe(took.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_series_are_the_family_series() {
        let s = RequestSeries::new("series_fe".into(), "series_be".into());
        s.response(204);
        s.response(503);
        s.response(201);
        s.upstream(Duration::from_millis(3));
        let text = global().encode(&[]);
        assert!(
            text.contains("sluice_http_responses_total{frontend=\"series_fe\",class=\"2xx\"} 2")
        );
        assert!(
            text.contains("sluice_http_responses_total{frontend=\"series_fe\",class=\"5xx\"} 1")
        );
        assert!(!text.contains("frontend=\"series_fe\",class=\"4xx\""));
        assert!(text.contains("backend=\"series_be\""));
    }
}
