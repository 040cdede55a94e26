//! Process-wide Prometheus metrics (prometheus-client): per-frontend connection, byte, PROXY
//! and edge counters recorded where things happen, plus per-backend/server gauges read from
//! the pools at scrape time. Names live in `names`; the HTTP endpoint is `admin`'s job.
//! One registry per process (`global()`), so counters add up across frontends of any mode;
//! `process_*` and `sluice_build_info` too. Rendered as OpenMetrics or Prometheus text 0.0.4.

mod counted;
#[cfg(test)]
mod docs_tests;
mod format;
mod frontend_stats;
mod names;
mod process_stats;
mod scrape;
mod series;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub(crate) use counted::Counted;
pub(crate) use format::Format;
use frontend_stats::FrontendStats;
use names::*;
pub(crate) use process_stats::read as process_stats;
pub(crate) use scrape::display_state;
pub(crate) use series::RequestSeries;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Build {
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Fe {
    frontend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FeReason {
    frontend: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FeTls {
    frontend: String,
    version: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FeClass {
    frontend: String,
    class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FeDirection {
    frontend: String,
    direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FeProto {
    frontend: String,
    protocol: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FePath {
    frontend: String,
    path: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Be {
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Srv {
    backend: String,
    server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SrvState {
    backend: String,
    server: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SrvResult {
    backend: String,
    server: String,
    result: String,
}

type HistFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// 0.5 ms .. ~16 s: health checks and app responses.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// One frontend's counters, resolved once per connection (cheap `Arc` clones).
#[derive(Clone, Debug)]
pub(crate) struct FrontendHandles {
    accepted: Counter,
    current: Gauge,
    received: Counter,
    sent: Counter,
    stats: Arc<FrontendStats>,
}

impl FrontendHandles {
    /// A connection was accepted: like [`Metrics::conn_opened`] on handles a frontend
    /// resolved once at build time (no name lookup, no lock per connection).
    pub(crate) fn conn_opened(&self) -> ConnGuard {
        self.accepted.inc();
        let now = self.current.inc() + 1;
        self.stats.opened(u64::try_from(now).unwrap_or(0));
        ConnGuard(self.clone())
    }

    /// Connections open on the frontend now.
    pub(crate) fn current(&self) -> u64 {
        self.current.get().max(0) as u64
    }

    /// Adds bytes received from / sent to clients.
    pub(crate) fn add_bytes(&self, received: u64, sent: u64) {
        if received > 0 {
            self.received.inc_by(received);
        }
        if sent > 0 {
            self.sent.inc_by(sent);
        }
    }
}

/// Counts one open connection on a frontend: `current` goes down when it drops.
#[derive(Debug)]
pub(crate) struct ConnGuard(FrontendHandles);

impl ConnGuard {
    pub(crate) fn handles(&self) -> &FrontendHandles {
        &self.0
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.current.dec();
    }
}

/// One open upgraded connection (`Metrics::upgraded`).
#[derive(Debug)]
pub(crate) struct UpgradedGuard(Gauge);

impl Drop for UpgradedGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Every metric family of the process.
pub struct Metrics {
    registry: Mutex<Registry>,
    frontends: RwLock<HashMap<String, FrontendHandles>>,
    fe_accepted: Family<Fe, Counter>,
    fe_current: Family<Fe, Gauge>,
    fe_received: Family<Fe, Counter>,
    fe_sent: Family<Fe, Counter>,
    proxy_rejected: Family<FeReason, Counter>,
    tls_handshakes: Family<FeTls, Counter>,
    tls_failures: Family<Fe, Counter>,
    ticket_failures: Family<Fe, Counter>,
    http_responses: Family<FeClass, Counter>,
    spilled_bodies: Family<FeDirection, Counter>,
    log_dropped: Family<Fe, Counter>,
    upgraded: Family<FeProto, Counter>,
    upgraded_current: Family<FeProto, Gauge>,
    sockmap: Family<FePath, Counter>,
    upstream_duration: HistFamily<Be>,
    health_duration: HistFamily<Srv>,
    pools: scrape::PoolFamilies,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Metrics {
        let mut r = Registry::default();
        let m = Metrics {
            frontends: RwLock::new(HashMap::new()),
            fe_accepted: Family::default(),
            fe_current: Family::default(),
            fe_received: Family::default(),
            fe_sent: Family::default(),
            proxy_rejected: Family::default(),
            tls_handshakes: Family::default(),
            tls_failures: Family::default(),
            ticket_failures: Family::default(),
            http_responses: Family::default(),
            spilled_bodies: Family::default(),
            log_dropped: Family::default(),
            upgraded: Family::default(),
            upgraded_current: Family::default(),
            sockmap: Family::default(),
            upstream_duration: Family::new_with_constructor(latency_histogram),
            health_duration: Family::new_with_constructor(latency_histogram),
            pools: scrape::PoolFamilies::default(),
            registry: Mutex::new(Registry::default()),
        };
        r.register(
            FRONTEND_CONNECTIONS,
            FRONTEND_CONNECTIONS_HELP,
            m.fe_accepted.clone(),
        );
        r.register(
            FRONTEND_CURRENT,
            FRONTEND_CURRENT_HELP,
            m.fe_current.clone(),
        );
        r.register(
            FRONTEND_RECEIVED,
            FRONTEND_RECEIVED_HELP,
            m.fe_received.clone(),
        );
        r.register(FRONTEND_SENT, FRONTEND_SENT_HELP, m.fe_sent.clone());
        r.register(
            PROXY_REJECTED,
            PROXY_REJECTED_HELP,
            m.proxy_rejected.clone(),
        );
        r.register(
            TLS_HANDSHAKES,
            TLS_HANDSHAKES_HELP,
            m.tls_handshakes.clone(),
        );
        r.register(
            TLS_HANDSHAKE_FAILURES,
            TLS_HANDSHAKE_FAILURES_HELP,
            m.tls_failures.clone(),
        );
        r.register(
            TICKET_DECRYPT_FAILURES,
            TICKET_DECRYPT_FAILURES_HELP,
            m.ticket_failures.clone(),
        );
        r.register(
            HTTP_RESPONSES,
            HTTP_RESPONSES_HELP,
            m.http_responses.clone(),
        );
        r.register(
            SPILLED_BODIES,
            SPILLED_BODIES_HELP,
            m.spilled_bodies.clone(),
        );
        r.register(LOG_DROPPED, LOG_DROPPED_HELP, m.log_dropped.clone());
        r.register(UPGRADED, UPGRADED_HELP, m.upgraded.clone());
        r.register(
            SOCKMAP_CONNECTIONS,
            SOCKMAP_CONNECTIONS_HELP,
            m.sockmap.clone(),
        );
        r.register(
            UPGRADED_CURRENT,
            UPGRADED_CURRENT_HELP,
            m.upgraded_current.clone(),
        );
        r.register(
            UPSTREAM_DURATION,
            UPSTREAM_DURATION_HELP,
            m.upstream_duration.clone(),
        );
        r.register(
            HEALTH_CHECK_DURATION,
            HEALTH_CHECK_DURATION_HELP,
            m.health_duration.clone(),
        );
        m.pools.register(&mut r);
        let build: Family<Build, Gauge> = Family::default();
        build
            .get_or_create(&Build {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);
        r.register(BUILD_INFO, BUILD_INFO_HELP, build);
        r.register_collector(Box::new(process_stats::ProcessCollector));
        *m.registry.lock().unwrap_or_else(|e| e.into_inner()) = r;
        m
    }

    /// The counters of frontend `name` (created at zero on first use).
    pub(crate) fn frontend(&self, name: &str) -> FrontendHandles {
        if let Some(h) = self
            .frontends
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return h.clone();
        }
        let label = Fe {
            frontend: name.to_string(),
        };
        let h = FrontendHandles {
            accepted: self.fe_accepted.get_or_create(&label).clone(),
            current: self.fe_current.get_or_create(&label).clone(),
            received: self.fe_received.get_or_create(&label).clone(),
            sent: self.fe_sent.get_or_create(&label).clone(),
            stats: Arc::default(),
        };
        self.frontends
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_string())
            .or_insert(h)
            .clone()
    }

    /// Connections open on every frontend of the process now (HAProxy's `actconn`).
    pub(crate) fn current_connections(&self) -> u64 {
        self.frontends
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(FrontendHandles::current)
            .sum()
    }

    /// A connection was accepted on `frontend`; it counts as open until the guard drops.
    pub(crate) fn conn_opened(&self, frontend: &str) -> ConnGuard {
        self.frontend(frontend).conn_opened()
    }

    /// A connection was closed because of its PROXY header (`reason`: `Rejected::code`).
    pub(crate) fn proxy_rejected(&self, frontend: &str, reason: &str) {
        self.frontend(frontend).stats.rejected(reason);
        self.proxy_rejected
            .get_or_create(&FeReason {
                frontend: frontend.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// A TLS handshake completed (`version` as "TLSv1.3"; `resumed` from the session).
    pub(crate) fn tls_handshake(&self, frontend: &str, version: &str, resumed: bool) {
        self.tls_handshakes
            .get_or_create(&FeTls {
                frontend: frontend.to_string(),
                version: if version.is_empty() {
                    "unknown"
                } else {
                    version
                }
                .to_string(),
                kind: if resumed { "resumed" } else { "full" }.to_string(),
            })
            .inc();
    }

    /// A session ticket a client offered did not decrypt.
    pub(crate) fn ticket_decrypt_failed(&self, frontend: &str) {
        self.ticket_failures
            .get_or_create(&Fe {
                frontend: frontend.to_string(),
            })
            .inc();
    }

    /// A TLS handshake failed or timed out.
    pub(crate) fn tls_handshake_failed(&self, frontend: &str) {
        self.tls_failures
            .get_or_create(&Fe {
                frontend: frontend.to_string(),
            })
            .inc();
    }

    /// The counter of access lines of `frontend` its syslog target dropped.
    pub(crate) fn log_dropped(&self, frontend: &str) -> Counter {
        self.log_dropped
            .get_or_create(&Fe {
                frontend: frontend.to_string(),
            })
            .clone()
    }

    /// A request or response body of `frontend` went to a temp file (`direction`:
    /// "request" or "response").
    pub(crate) fn body_spilled(&self, frontend: &str, direction: &'static str) {
        self.spilled_bodies
            .get_or_create(&FeDirection {
                frontend: frontend.to_string(),
                direction: direction.to_string(),
            })
            .inc();
    }

    /// A request of `frontend` switched to `protocol` (WebSocket): counted now, open until
    /// the guard drops.
    pub(crate) fn upgraded(&self, frontend: &str, protocol: &str) -> UpgradedGuard {
        let key = FeProto {
            frontend: frontend.to_string(),
            protocol: protocol.to_string(),
        };
        self.upgraded.get_or_create(&key).inc();
        let open = self.upgraded_current.get_or_create(&key).clone();
        open.inc();
        UpgradedGuard(open)
    }

    /// A connection of a `forward = "sockmap"` frontend took `path` ("sockmap" or
    /// "fallback").
    pub(crate) fn sockmap_connection(&self, frontend: &str, path: &'static str) {
        self.sockmap
            .get_or_create(&FePath {
                frontend: frontend.to_string(),
                path: path.to_string(),
            })
            .inc();
    }

    /// One active health check of `backend`/`server` took `took` (whatever its result).
    pub(crate) fn health_check(&self, backend: &str, server: &str, took: Duration) {
        self.health_duration
            .get_or_create(&Srv {
                backend: backend.to_string(),
                server: server.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// What the stats page shows of frontend `name`; zeros before its first connection
    /// (nothing is created: reading does not add series to the metrics).
    pub(crate) fn frontend_figures(&self, name: &str) -> FrontendFigures {
        let fe = Fe {
            frontend: name.to_string(),
        };
        let count = |f: &Family<Fe, Counter>| f.get(&fe).map_or(0, |c| c.get());
        let mut http = [0; 6];
        for (i, class) in HTTP_CLASSES.iter().enumerate() {
            let label = FeClass {
                frontend: name.to_string(),
                class: (*class).to_string(),
            };
            http[i] = self.http_responses.get(&label).map_or(0, |c| c.get());
        }
        let stats = self
            .frontends
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .map(|h| h.stats.clone());
        FrontendFigures {
            current: self
                .fe_current
                .get(&fe)
                .map_or(0, |g| u64::try_from(g.get()).unwrap_or(0)),
            max_current: stats.as_ref().map_or(0, |s| s.max_current()),
            total: count(&self.fe_accepted),
            rate: stats.as_ref().map_or(0, |s| s.rate()),
            rate_max: stats.as_ref().map_or(0, |s| s.rate_max()),
            bytes_in: count(&self.fe_received),
            bytes_out: count(&self.fe_sent),
            denied: stats.as_ref().map_or(0, |s| s.denied()),
            proxy_errors: stats.as_ref().map_or(0, |s| s.proxy_errors()),
            tls_failures: count(&self.tls_failures),
            http,
        }
    }

    /// Everything in OpenMetrics text, per-server values read from `pools` right now.
    pub fn encode(&self, pools: &[std::sync::Arc<crate::balance::Pool>]) -> String {
        self.encode_as(pools, Format::OpenMetrics)
    }

    /// Everything in `format` (its content type: [`Format::content_type`]).
    pub(crate) fn encode_as(
        &self,
        pools: &[std::sync::Arc<crate::balance::Pool>],
        format: Format,
    ) -> String {
        // The lock also serialises concurrent scrapes' refresh of the per-server families.
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        self.pools.refresh(pools);
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::warn!("cannot encode metrics: {e}");
        }
        match format {
            Format::OpenMetrics => out,
            Format::Text004 => format::openmetrics_to_text004(&out),
        }
    }
}

/// The status classes `RequestSeries::response` counts, in the order of `FrontendFigures::http`.
pub(crate) const HTTP_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

/// One frontend's figures for the stats page (HAProxy's frontend row).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FrontendFigures {
    /// Connections open now (`scur`) and the most at once (`smax`).
    pub current: u64,
    pub max_current: u64,
    /// Connections accepted (`stot`).
    pub total: u64,
    /// Connections per second over the last second (`rate`) and its peak (`rate_max`).
    pub rate: u64,
    pub rate_max: u64,
    /// Bytes from and to clients (`bin`, `bout`).
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Refused for their source: PROXY header from an untrusted peer (`dcon`).
    pub denied: u64,
    /// Closed for a bad PROXY header (malformed, too slow, too long).
    pub proxy_errors: u64,
    /// Failed or timed-out TLS handshakes.
    pub tls_failures: u64,
    /// HTTP responses by `HTTP_CLASSES` (`hrsp_1xx` .. `hrsp_other`).
    pub http: [u64; 6],
}

/// "1xx" .. "5xx"; anything else "other".
pub(crate) fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_appear_with_labels() {
        let m = global();
        let g = m.conn_opened("unit_fe");
        g.handles().add_bytes(10, 20);
        m.proxy_rejected("unit_fe", "untrusted");
        m.tls_handshake("unit_fe", "TLSv1.3", true);
        RequestSeries::new("unit_fe".into(), "unit_be".into()).response(503);
        let text = m.encode(&[]);
        assert!(text.contains("sluice_frontend_connections_total{frontend=\"unit_fe\"} 1"));
        assert!(text.contains("sluice_frontend_current_connections{frontend=\"unit_fe\"} 1"));
        assert!(text.contains("sluice_frontend_received_bytes_total{frontend=\"unit_fe\"} 10"));
        assert!(text.contains("sluice_frontend_sent_bytes_total{frontend=\"unit_fe\"} 20"));
        assert!(text
            .contains("sluice_proxy_rejected_total{frontend=\"unit_fe\",reason=\"untrusted\"} 1"));
        assert!(text.contains(
            "sluice_tls_handshakes_total{frontend=\"unit_fe\",version=\"TLSv1.3\",kind=\"resumed\"} 1"
        ));
        assert!(text.contains("sluice_http_responses_total{frontend=\"unit_fe\",class=\"5xx\"} 1"));
        drop(g);
        let text = m.encode(&[]);
        assert!(text.contains("sluice_frontend_current_connections{frontend=\"unit_fe\"} 0"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn status_classes() {
        assert_eq!(status_class(101), "1xx");
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(431), "4xx");
        assert_eq!(status_class(999), "other");
    }
}
