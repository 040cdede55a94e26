//! `Server::run`: the control loop of a running server. It starts accepting, then applies
//! reload requests (prepare and commit a new configuration) and DNS changes (pools updated
//! in place) one at a time until shutdown, and then drains. SIGUSR1 reopens the log files
//! meanwhile. Accepting and draining themselves are `server::Acceptor`'s.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::control::Request;
use super::handover::{HandedSocket, SocketRole};
use super::summary::ReloadSummary;
use super::{dns, prepare, BuildError, Server};
use crate::log::LogFiles;
use crate::process::{notify, signals};
use crate::server;
use crate::spec::Spec;

impl Server {
    /// Accepts until `shutdown` completes, applying reloads meanwhile; then stops accepting
    /// (closing the listeners), lets open connections finish for up to `global.grace`, and
    /// force-closes the rest. SIGUSR1 reopens the log files meanwhile.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), BuildError> {
        let sd = self.parts.shutdown.clone();
        let reopen = spawn_reopen(self.parts.logs.clone(), sd.stop_accepting.clone());
        // The admin endpoint stays up through the grace period (watch the drain).
        if let Some(admin) = self.admin.take() {
            tokio::spawn(admin.serve(sd.stop_background.clone()));
        }
        // The agent endpoint says `drain` from the moment accepting stops, through the grace
        // period; after a handover the successor answers on the same socket instead.
        let agent = self.agent.take().map(|agent| {
            let stop = sd.stop_background.child_token();
            let (handed, stop_on) = (self.handed_over.clone(), stop.clone());
            tokio::spawn(async move {
                handed.cancelled().await;
                stop_on.cancel();
            });
            (
                stop.clone(),
                tokio::spawn(agent.serve(sd.stop_accepting.clone(), stop)),
            )
        });
        let listeners = std::mem::take(&mut self.listeners);
        self.acceptor.start(listeners);
        let (dns_tx, mut dns_rx) = mpsc::channel(1);
        tokio::spawn(crate::discovery::refresh_loop(
            self.parts.discovery.clone(),
            dns_tx,
            sd.stop_background.clone(),
        ));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(req) = self.requests.recv() => {
                    let (cfg, reply) = match req {
                        Request::Apply(cfg, reply) => (*cfg, reply),
                        Request::Export(reply) => {
                            let _ = reply.send(self.export());
                            continue;
                        }
                    };
                    notify::reloading();
                    let primed = tokio::select! {
                        p = self.parts.discovery.prime(&cfg) => p,
                        _ = &mut shutdown => break,
                    };
                    let outcome = primed.map_err(BuildError::from).and_then(|()| self.apply(cfg));
                    notify::ready();
                    let _ = reply.send(outcome);
                }
                Some(()) = dns_rx.recv() => self.dns_changed(),
                // Reap accept loops of removed listeners as they finish.
                () = self.acceptor.reap() => {}
            }
        }
        // Our duplicates go first: each socket closes with its accept loop (connections are
        // refused, not queued), unless a successor process holds it.
        self.running.listeners.clear();
        self.admin_dup = None;
        self.agent_dup = None;
        // Handed over: this process stops answering the agent before it stops accepting,
        // so it never says `drain` for an upgrade; checks from now on wait in the shared
        // socket's queue for the successor (which accepts on the same sockets).
        if let Some((stop, task)) = agent.filter(|_| self.handed_over.is_cancelled()) {
            stop.cancel();
            let _ = task.await;
        }
        self.acceptor.drain(self.grace).await;
        sd.stop_background.cancel();
        if let Some(r) = reopen {
            let _ = r.await;
        }
        self.acceptor.stop_workers().await;
        tracing::info!("shutdown complete");
        Ok(())
    }

    /// Puts `cfg` in effect (see `prepare`) and starts accepting on the newly bound
    /// sockets. On error nothing changed.
    fn apply(&mut self, cfg: Spec) -> Result<ReloadSummary, BuildError> {
        let prepared = prepare::prepare(&cfg, &self.running, &self.parts.ctx())?;
        let old = &self.running.cfg;
        if cfg.admin != old.admin {
            tracing::warn!("reload: [admin] changes need a restart; the endpoint stays as it was");
        }
        if cfg.agent != old.agent {
            tracing::warn!("reload: [agent] changes need a restart; the endpoint stays as it was");
        }
        if cfg.global.pid_file != old.global.pid_file {
            tracing::warn!("reload: global.pid_file changes need a restart");
        }
        if cfg.global.threads != old.global.threads {
            tracing::warn!("reload: global.threads changes need a restart");
        }
        super::raise_nofile(&cfg);
        crate::edge::buffer::TempFiles::global().set_limit(cfg.global.max_temp_files);
        self.acceptor.set_limit(cfg.global.max_connections.max(1));
        self.grace = cfg.global.grace;
        let (running, listeners, summary) = prepared.commit();
        server::log_listening(&listeners, self.parts.sockets_per_bind);
        self.acceptor.start(listeners);
        self.running = running;
        self.live.set(
            self.running.pools(),
            self.running.addrs(),
            &self.running.cfg,
        );
        Ok(summary)
    }

    /// Duplicates of the listening sockets, for `sluice upgrade`.
    fn export(&self) -> std::io::Result<Vec<HandedSocket>> {
        let mut out = self.running.export()?;
        if let Some((bind, addr, fd)) = &self.admin_dup {
            out.push(HandedSocket {
                role: SocketRole::Admin { bind: *bind },
                addr: *addr,
                fd: fd.try_clone()?,
            });
        }
        if let Some((bind, addr, fd)) = &self.agent_dup {
            out.push(HandedSocket {
                role: SocketRole::Agent { bind: *bind },
                addr: *addr,
                fd: fd.try_clone()?,
            });
        }
        Ok(out)
    }

    /// A DNS answer changed: update the affected pools in place.
    fn dns_changed(&mut self) {
        match dns::update_pools(&mut self.running, &self.parts.ctx()) {
            Ok(summary) => tracing::info!("dns: servers updated: {summary}"),
            Err(e) => tracing::error!("dns: cannot update servers: {e}"),
        }
    }
}

/// SIGUSR1 → reopen every log file, until `stop`.
fn spawn_reopen(
    logs: Arc<LogFiles>,
    stop: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let mut sig = match signals::reopen_requests() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot listen for SIGUSR1 (log reopen disabled): {e}");
            return None;
        }
    };
    Some(tokio::spawn(async move {
        loop {
            tokio::select! {
                got = sig.recv() => match got {
                    Some(()) => logs.reopen_all(),
                    None => break,
                },
                _ = stop.cancelled() => break,
            }
        }
    }))
}
