//! The agent endpoint (`[agent]`), the edge's side of HAProxy's agent-check: one TCP
//! listener (`net::accept_loop`) answering each connection with one line and a close:
//! `drain` once the process stops accepting, `down` when none of its edges' app backends
//! has a server up, else `up ready NN%` from the load. It reads nothing it acts on.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::balance::Pool;
use crate::net;
use crate::spec::{self, AGENT_MAX_CONNECTIONS};

/// Writing the line and waiting for the balancer to close: at most this long each.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes read (and dropped: HAProxy's `agent-send`) before closing, so the close is a FIN
/// and not a reset that could discard the reply on the balancer's side.
const MAX_DISCARD: usize = 4096;

/// Where the endpoint finds the pools its edges send requests to (read at each
/// connection, so a reload's new pools count at once). `runtime::Live` implements it.
pub(crate) trait Edges: Send + Sync {
    /// The pools of the backends of every http-mode frontend.
    fn app_pools(&self) -> Vec<Arc<Pool>>;
}

/// A bound agent endpoint, ready to serve.
pub(crate) struct AgentEndpoint {
    listener: TcpListener,
    addr: SocketAddr,
    edges: Arc<dyn Edges>,
    capacity: Option<usize>,
}

impl std::fmt::Debug for AgentEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentEndpoint")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl AgentEndpoint {
    /// Binds `cfg.bind`, or adopts the socket a previous process handed over.
    pub(crate) fn bind(
        cfg: &spec::AgentEndpoint,
        edges: Arc<dyn Edges>,
        inherited: Option<std::net::TcpListener>,
    ) -> std::io::Result<AgentEndpoint> {
        let listener = match inherited {
            Some(l) => TcpListener::from_std(l)?,
            None => net::bind_single(cfg.bind)?,
        };
        let addr = listener.local_addr()?;
        tracing::info!("listening agent addr={addr}");
        Ok(AgentEndpoint {
            listener,
            addr,
            edges,
            capacity: cfg.capacity,
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A duplicate of the listening socket (for `sluice upgrade`'s successor).
    pub(crate) fn dup(&self) -> std::io::Result<OwnedFd> {
        std::os::fd::AsFd::as_fd(&self.listener).try_clone_to_owned()
    }

    /// Answers until `stop` is cancelled; says `drain` once `draining` is.
    pub(crate) async fn serve(self, draining: CancellationToken, stop: CancellationToken) {
        let limit = Arc::new(Semaphore::new(AGENT_MAX_CONNECTIONS));
        let label = format!("agent addr={}", self.addr);
        let on_conn = |stream: TcpStream, _peer: SocketAddr, permit| {
            let line = report(
                &self.edges.app_pools(),
                self.capacity,
                draining.is_cancelled(),
            );
            tokio::spawn(async move {
                let _permit = permit;
                answer(stream, line.as_bytes()).await;
            });
        };
        net::accept_loop(&label, || self.listener.accept(), on_conn, limit, &stop).await;
    }
}

/// Writes `line`, half-closes, then reads (bounded, timed) until the balancer closes.
async fn answer(mut stream: TcpStream, line: &[u8]) {
    let sent = tokio::time::timeout(IO_TIMEOUT, async {
        stream.write_all(line).await?;
        stream.shutdown().await
    })
    .await;
    if !matches!(sent, Ok(Ok(()))) {
        return;
    }
    let _ = tokio::time::timeout(IO_TIMEOUT, async {
        let mut buf = [0u8; 512];
        let mut read = 0;
        while read < MAX_DISCARD {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    })
    .await;
}

/// The line for the current state: `drain` while draining; `down #...` when no app backend
/// has a server that takes requests; else `up ready NN%` with
/// NN = max(1, 100 - floor(100 x in_flight / capacity)), where in_flight counts requests
/// holding or waiting for an app server slot and capacity is `[agent] capacity` or the sum
/// of the app servers' `max_connections`. Never `0%`: HAProxy reads that as drain.
pub(crate) fn report(pools: &[Arc<Pool>], capacity: Option<usize>, draining: bool) -> String {
    if draining {
        return "drain\n".into();
    }
    if !pools.iter().any(|p| p.any_up()) {
        return "down #no app server up\n".into();
    }
    let (mut in_flight, mut slots) = (0usize, 0usize);
    for p in pools {
        in_flight = in_flight.saturating_add(p.queued());
        for s in p.servers() {
            in_flight = in_flight.saturating_add(s.active);
            slots = slots.saturating_add(s.max_connections);
        }
    }
    format!(
        "up ready {}%\n",
        weight_pct(in_flight, capacity.unwrap_or(slots))
    )
}

/// max(1, 100 - floor(100 x in_flight / capacity)); 100 without a capacity.
pub(crate) fn weight_pct(in_flight: usize, capacity: usize) -> u64 {
    if capacity == 0 {
        return 100;
    }
    let busy = (in_flight as u128 * 100 / capacity as u128).min(100) as u64;
    (100 - busy).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::{ClientAddr, PeerAddr};
    use crate::balance::ServerId;

    #[test]
    fn report_says_drain_down_or_the_load() {
        let toml = "name = \"app\"\nservers = [{ addr = \"127.0.0.1:9\", max_connections = 4 }]\n\
                    [health]\nrise = 1\nfall = 1";
        let b: crate::config::Backend = toml::from_str(toml).unwrap();
        let pool = Pool::new(&b.spec().unwrap());
        let pools = vec![pool.clone()];
        assert_eq!(report(&pools, None, false), "up ready 100%\n");
        let client = ClientAddr::direct(PeerAddr("127.0.0.2:1".parse().unwrap()));
        let _lease = pool.select(&client, &[]).unwrap();
        // One of the server's 4 slots, or of a configured capacity of 2.
        assert_eq!(report(&pools, None, false), "up ready 75%\n");
        assert_eq!(report(&pools, Some(2), false), "up ready 50%\n");
        assert_eq!(report(&pools, None, true), "drain\n");
        pool.record_check(ServerId(0), Err("refused".into()));
        assert_eq!(report(&pools, None, false), "down #no app server up\n");
        assert_eq!(report(&pools, None, true), "drain\n", "drain wins");
    }

    #[test]
    fn weight_follows_the_documented_formula() {
        assert_eq!(weight_pct(0, 10), 100);
        assert_eq!(weight_pct(1, 10), 90);
        assert_eq!(weight_pct(5, 10), 50);
        assert_eq!(weight_pct(1, 3), 67);
        assert_eq!(weight_pct(10, 10), 1, "never 0%: that would be a drain");
        assert_eq!(weight_pct(500, 10), 1);
        assert_eq!(weight_pct(7, 0), 100);
    }
}
