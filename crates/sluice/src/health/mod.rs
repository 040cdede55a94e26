//! Active health checks: one task per server checks it every `interval` (start times spread
//! over the interval), feeding results into the pool's rise/fall state machine, which logs
//! each state change once; with `health.agent`, a second task per server asks its agent
//! (`agent`). Both step a server's slow-start ramp. The check kinds live in `check`; the
//! agent endpoint an edge serves to its balancers in `endpoint`.

pub(crate) mod agent;
mod check;
pub(crate) mod endpoint;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::balance::{CheckReport, Pool, ServerId};
use crate::spec;
use check::CheckSpec;

/// Starts health checking every server of `pool` until `shutdown` is cancelled. Must be called
/// inside a tokio runtime. Returns None when the backend has no `[health]` section: servers
/// then stay up, and live connection failures are only counted (as HAProxy without `check`).
///
/// Servers start up (as HAProxy): `fall` consecutive failures take one down, `rise`
/// consecutive successes bring it back. Failures from live traffic count as failed checks.
pub(crate) fn spawn(
    pool: Arc<Pool>,
    cfg: &spec::Backend,
    shutdown: CancellationToken,
) -> Option<JoinHandle<()>> {
    let spec = Arc::new(CheckSpec::from_backend(cfg)?);
    let interval = cfg.health.as_ref()?.interval.max(Duration::from_millis(10));
    let agent = cfg.health.as_ref()?.agent.clone();
    let source = cfg.source;
    Some(tokio::spawn(async move {
        let n = pool.len().max(1) as u32;
        let mut tasks = JoinSet::new();
        for i in 0..pool.len() {
            if let Some(a) = &agent {
                let target = pool
                    .server_addr(ServerId(i))
                    .and_then(|(_, addr)| agent::AgentTarget::new(&addr, a, source));
                if let Some(target) = target {
                    let every = a.interval.max(Duration::from_millis(10));
                    tasks.spawn(agent_loop(
                        pool.clone(),
                        ServerId(i),
                        target,
                        every,
                        every * i as u32 / n,
                        shutdown.clone(),
                    ));
                }
            }
            // Spread first checks evenly over one interval so servers are not hit in bursts.
            let offset = interval * i as u32 / n;
            tasks.spawn(check_loop(
                pool.clone(),
                ServerId(i),
                spec.clone(),
                interval,
                offset,
                shutdown.clone(),
            ));
        }
        while tasks.join_next().await.is_some() {}
    }))
}

async fn check_loop(
    pool: Arc<Pool>,
    id: ServerId,
    spec: Arc<CheckSpec>,
    interval: Duration,
    offset: Duration,
    shutdown: CancellationToken,
) {
    let Some((name, addr)) = pool.server_addr(id) else {
        return;
    };
    let mut ticks = tokio::time::interval_at(Instant::now() + offset, interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
            _ = warmup(&pool, id) => {
                pool.warmup_step(id);
                continue;
            }
        }
        if pool.in_maint(id) {
            // Maintenance (admin API): no checks, so nothing can mark the server up or down.
            continue;
        }
        let start = Instant::now();
        let (outcome, status, code) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = check::run_report(&addr, &spec) => r,
        };
        let took = start.elapsed();
        crate::metrics::global().health_check(pool.name(), &name, took);
        let report = CheckReport {
            status,
            code,
            detail: match &outcome {
                Ok(()) => String::new(),
                Err(why) => why.clone(),
            },
            took,
            at: std::time::Instant::now(),
        };
        pool.set_last_check(id, &name, report);
        pool.record_check_named(id, &name, outcome.map(|()| took));
    }
}

/// Completes when server `id`'s slow-start weight steps up next; never while it is not
/// warming up.
async fn warmup(pool: &Pool, id: ServerId) {
    match pool.warmup_next(id) {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Asks server `id`'s agent every `interval` and applies its reply. An agent that cannot be
/// reached or answers nonsense changes nothing (HAProxy: connectivity is the active
/// check's business); the first failure of a streak is logged.
async fn agent_loop(
    pool: Arc<Pool>,
    id: ServerId,
    target: agent::AgentTarget,
    interval: Duration,
    offset: Duration,
    shutdown: CancellationToken,
) {
    let Some((name, _)) = pool.server_addr(id) else {
        return;
    };
    let mut ticks = tokio::time::interval_at(Instant::now() + offset, interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
            _ = warmup(&pool, id) => {
                pool.warmup_step(id);
                continue;
            }
        }
        let r = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = agent::ask(&target) => r,
        };
        match r {
            Ok(reply) => {
                if failing {
                    tracing::info!(
                        backend = %pool.name(), server = %name,
                        "server {}/{} agent answers again: {reply}", pool.name(), name
                    );
                }
                failing = false;
                pool.apply_agent(id, &name, &reply);
            }
            Err(why) => {
                if !failing {
                    tracing::warn!(
                        backend = %pool.name(), server = %name,
                        "server {}/{} agent {}: {why} (state unchanged)",
                        pool.name(), name, target.addr
                    );
                }
                failing = true;
            }
        }
    }
}
