//! Per-backend and per-server series filled from the pools at scrape time: state, weight
//! (configured and effective), active connections, totals, connect failures, check results, queue length. Families are
//! cleared first, so servers gone after a reload disappear. Live recording is in `metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::names::*;
use super::{Be, Srv, SrvResult, SrvState};
use crate::balance::{AdminMode, Pool, ServerSnapshot, ServerState};

#[derive(Default)]
pub(super) struct PoolFamilies {
    state: Family<SrvState, Gauge>,
    weight: Family<Srv, Gauge>,
    effective_weight: Family<Srv, Gauge<f64, AtomicU64>>,
    active: Family<Srv, Gauge>,
    connections: Family<Srv, Counter>,
    connect_failures: Family<Srv, Counter>,
    checks: Family<SrvResult, Counter>,
    queue: Family<Be, Gauge>,
}

/// The state a status page shows: admin modes win over health.
pub(crate) fn display_state(s: &ServerSnapshot) -> &'static str {
    match (s.admin, s.state) {
        (AdminMode::Maint, _) => "maint",
        (AdminMode::Drain, _) => "drain",
        (AdminMode::Ready, ServerState::Up) => "up",
        (AdminMode::Ready, ServerState::Down) => "down",
    }
}

const STATES: [&str; 4] = ["up", "down", "drain", "maint"];

/// Counters here mirror the pool's own monotonic counters, so they are stored, not added.
fn set_counter(c: &Counter, v: u64) {
    c.inner().store(v, Ordering::Relaxed);
}

fn gauge(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl PoolFamilies {
    pub(super) fn register(&self, r: &mut Registry) {
        r.register(SERVER_STATE, SERVER_STATE_HELP, self.state.clone());
        r.register(SERVER_WEIGHT, SERVER_WEIGHT_HELP, self.weight.clone());
        r.register(
            SERVER_EFFECTIVE_WEIGHT,
            SERVER_EFFECTIVE_WEIGHT_HELP,
            self.effective_weight.clone(),
        );
        r.register(SERVER_ACTIVE, SERVER_ACTIVE_HELP, self.active.clone());
        r.register(
            SERVER_CONNECTIONS,
            SERVER_CONNECTIONS_HELP,
            self.connections.clone(),
        );
        r.register(
            SERVER_CONNECT_FAILURES,
            SERVER_CONNECT_FAILURES_HELP,
            self.connect_failures.clone(),
        );
        r.register(HEALTH_CHECKS, HEALTH_CHECKS_HELP, self.checks.clone());
        r.register(BACKEND_QUEUE, BACKEND_QUEUE_HELP, self.queue.clone());
    }

    pub(super) fn refresh(&self, pools: &[Arc<Pool>]) {
        self.state.clear();
        self.weight.clear();
        self.effective_weight.clear();
        self.active.clear();
        self.connections.clear();
        self.connect_failures.clear();
        self.checks.clear();
        self.queue.clear();
        for pool in pools {
            let backend = pool.name().to_string();
            self.queue
                .get_or_create(&Be {
                    backend: backend.clone(),
                })
                .set(gauge(pool.queue_len() as u64));
            for s in pool.servers() {
                let srv = Srv {
                    backend: backend.clone(),
                    server: s.name.clone(),
                };
                let now = display_state(&s);
                for st in STATES {
                    let label = SrvState {
                        backend: backend.clone(),
                        server: s.name.clone(),
                        state: st.to_string(),
                    };
                    self.state.get_or_create(&label).set(i64::from(st == now));
                }
                self.weight.get_or_create(&srv).set(i64::from(s.weight));
                self.effective_weight
                    .get_or_create(&srv)
                    .set(s.effective_weight);
                self.active.get_or_create(&srv).set(gauge(s.active as u64));
                set_counter(&self.connections.get_or_create(&srv), s.total);
                set_counter(
                    &self.connect_failures.get_or_create(&srv),
                    s.connect_failures,
                );
                for (result, v) in [("ok", s.checks_ok), ("failed", s.checks_failed)] {
                    let label = SrvResult {
                        backend: backend.clone(),
                        server: s.name.clone(),
                        result: result.to_string(),
                    };
                    set_counter(&self.checks.get_or_create(&label), v);
                }
            }
        }
    }
}
