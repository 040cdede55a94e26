//! The admin endpoint (`[admin]`): an HTTP/1.1 listener serving Prometheus metrics, the JSON
//! backends API, the stats page and its CSV/JSON exports. Limits and serving one connection
//! live here (binding, accepting: `net`); request checks in `guard`, idle eviction in `conns`,
//! routes in `api`, the page in `page`, its figures in `report`, CSV/JSON in `export`.

mod api;
mod conns;
mod export;
mod guard;
mod page;
mod report;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::balance::Pool;
use crate::net;
use crate::spec;

/// Admin connections served at once; taking the last slot closes the longest-idle
/// keep-alive connection, so a new one (a scrape) is always accepted.
pub(crate) use crate::spec::ADMIN_MAX_CONNECTIONS as MAX_CONNECTIONS;
/// A request head must arrive within this (also the keep-alive idle time between requests).
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head.
pub(crate) const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Largest request body (the POST JSON).
pub(crate) const MAX_BODY_BYTES: usize = 4 * 1024;
/// A request body must arrive within this.
pub(crate) const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// A response write that makes no progress for this long closes the connection (a client
/// that stops reading a large answer must not hold a slot until `CONNECTION_LIFETIME`).
pub(crate) const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// An admin connection is closed after this long in total (keep-alive included).
pub(crate) const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);

/// Where the admin endpoint finds what the process serves now (read at each request, so a
/// reload that replaces pools or frontends is seen at the next one).
pub(crate) trait View: Send + Sync {
    /// The current pools, in configuration order.
    fn pools(&self) -> Vec<Arc<Pool>>;
    /// The current configuration (frontends, limits).
    fn spec(&self) -> Arc<spec::Spec>;
    /// Every bound address with its frontend name, in configuration order.
    fn local_addrs(&self) -> Vec<(String, SocketAddr)>;
}

/// Why the admin endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminStartError {
    #[error("admin: cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// What every admin request needs.
pub(crate) struct State {
    pub view: Arc<dyn View>,
    /// Bearer token for POST calls, when configured.
    pub token: Option<String>,
    /// Accepted `Host` names besides IP literals and `localhost`.
    pub server_names: Vec<String>,
}

/// A bound admin listener, ready to serve.
pub(crate) struct AdminListener {
    listener: TcpListener,
    addr: SocketAddr,
    state: Arc<State>,
}

impl std::fmt::Debug for AdminListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminListener")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl AdminListener {
    /// Binds `cfg.bind` (port 0 picks a free port; see [`AdminListener::local_addr`]), or
    /// serves on `inherited` (the socket `sluice upgrade` handed over). Must run inside a
    /// tokio runtime. Logs `listening admin addr=...`.
    pub(crate) fn bind(
        cfg: &spec::Admin,
        view: Arc<dyn View>,
        inherited: Option<std::net::TcpListener>,
    ) -> Result<AdminListener, AdminStartError> {
        let addr = cfg.bind;
        let listener = match inherited {
            Some(l) => TcpListener::from_std(l),
            None => net::bind_single(addr),
        }
        .map_err(|source| AdminStartError::Bind { addr, source })?;
        let addr = listener.local_addr().unwrap_or(addr);
        tracing::info!("listening admin addr={addr}");
        Ok(AdminListener {
            listener,
            addr,
            state: Arc::new(State {
                view,
                token: cfg.token.clone(),
                server_names: cfg.server_names.clone(),
            }),
        })
    }

    /// The bound address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A duplicate of the listening socket (for a successor process).
    pub(crate) fn dup(&self) -> std::io::Result<std::os::fd::OwnedFd> {
        std::os::fd::AsFd::as_fd(&self.listener).try_clone_to_owned()
    }

    /// Serves until `shutdown` is cancelled; open admin connections end with it.
    pub(crate) async fn serve(self, shutdown: CancellationToken) {
        let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let conns = Arc::new(conns::Conns::default());
        let free = limit.clone();
        let label = format!("admin addr={}", self.addr);
        let on_conn = |stream, peer, permit| {
            let state = self.state.clone();
            let shutdown = shutdown.clone();
            let me = conns.register();
            if free.available_permits() == 0 {
                // The last slot: free one now so the next client is not left in the backlog.
                conns.evict_idlest(me.id());
            }
            tokio::spawn(async move {
                let _permit = permit;
                serve_conn(stream, peer, state, me, shutdown).await;
            });
        };
        net::accept_loop(&label, || self.listener.accept(), on_conn, limit, &shutdown).await;
    }
}

async fn serve_conn<IO>(
    stream: IO,
    peer: SocketAddr,
    state: Arc<State>,
    me: conns::Registered,
    shutdown: CancellationToken,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let evict = me.evict.clone();
    let me = Arc::new(me);
    let svc = service_fn(move |req| {
        let state = state.clone();
        let busy = me.busy();
        async move {
            let mut resp = match guard::check(req.method(), req.headers(), &state.server_names) {
                Ok(()) => api::handle(&state, req).await,
                Err(guard::Refused(status, why)) => api::error(status, why),
            };
            guard::harden(resp.headers_mut());
            drop(busy);
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(
            TokioIo::new(net::SendDeadline::new(stream, SEND_TIMEOUT)),
            svc,
        );
    let mut conn = std::pin::pin!(conn);
    let lifetime = tokio::time::sleep(CONNECTION_LIFETIME);
    let mut lifetime = std::pin::pin!(lifetime);
    let mut evicted = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!("admin connection from {peer}: {e}");
                }
                return;
            }
            // Closes at once when idle, after the response in flight otherwise.
            _ = evict.cancelled(), if !evicted => {
                evicted = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = lifetime.as_mut() => return,
            _ = shutdown.cancelled() => return,
        }
    }
}
