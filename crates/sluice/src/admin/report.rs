//! What the stats page and its CSV/JSON exports show, gathered at one instant from the
//! admin `View`, the metrics and `/proc/self`: a process row, one row per frontend and per
//! backend with its servers. It reads only; rendering is `export`'s, routing `api`'s.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::View;
use crate::balance::{AdminMode, ServerSnapshot, ServerState};
use crate::metrics::{self, FrontendFigures};
use crate::spec::Mode;

/// The process row (HAProxy's `show info` essentials).
#[derive(Debug)]
pub(crate) struct Process {
    pub version: &'static str,
    pub pid: u32,
    /// Since the process started (None when `/proc` cannot tell).
    pub uptime: Option<Duration>,
    /// `global.max_connections`: connections served at once, all frontends together.
    pub max_connections: usize,
    /// Connections open on every frontend now.
    pub current_connections: u64,
    /// The soft RLIMIT_NOFILE, and the descriptors open now.
    pub fd_limit: Option<u64>,
    pub open_fds: Option<u64>,
    /// Worker threads (`global.threads`, one per CPU when unset).
    pub threads: usize,
}

/// One frontend.
#[derive(Debug)]
pub(crate) struct Frontend {
    pub name: String,
    pub mode: &'static str,
    pub backend: String,
    pub addrs: Vec<SocketAddr>,
    pub figures: FrontendFigures,
}

/// One server, with its times relative to the report's instant.
#[derive(Debug)]
pub(crate) struct Server {
    pub snap: ServerSnapshot,
    /// HAProxy's status word: UP, DOWN, DRAIN, MAINT, or "no check" for a ready server
    /// of a backend without `[health]`.
    pub status: &'static str,
    /// How long it has been in its current state.
    pub since: Duration,
    /// How long ago its last check ended.
    pub checked_ago: Option<Duration>,
}

/// One backend and its servers.
#[derive(Debug)]
pub(crate) struct Backend {
    pub name: String,
    pub balance: String,
    pub queue: usize,
    pub backup_active: bool,
    /// True when the backend has `[health]` checks.
    pub checked: bool,
    pub servers: Vec<Server>,
}

impl Backend {
    /// UP while a server can take traffic, else DOWN.
    pub(crate) fn status(&self) -> &'static str {
        if self.servers.iter().any(|s| usable(&s.snap)) {
            "UP"
        } else {
            "DOWN"
        }
    }

    /// Usable primary and backup servers (HAProxy's `act` and `bck` of a backend row).
    pub(crate) fn usable(&self) -> (usize, usize) {
        let up = self.servers.iter().filter(|s| usable(&s.snap));
        let bck = up.clone().filter(|s| s.snap.backup).count();
        (up.count() - bck, bck)
    }
}

fn usable(s: &ServerSnapshot) -> bool {
    s.admin == AdminMode::Ready && s.state == ServerState::Up
}

/// Everything at one instant.
#[derive(Debug)]
pub(crate) struct Report {
    pub process: Process,
    pub frontends: Vec<Frontend>,
    pub backends: Vec<Backend>,
}

/// Gathers the report now.
pub(crate) fn gather(view: &dyn View) -> Report {
    let now = Instant::now();
    let spec = view.spec();
    let addrs = view.local_addrs();
    let m = metrics::global();
    let frontends: Vec<Frontend> = spec
        .frontends
        .iter()
        .map(|f| Frontend {
            name: f.name.clone(),
            mode: match f.mode {
                Mode::Tcp => "tcp",
                Mode::Http => "http",
            },
            backend: f.backend.clone(),
            addrs: addrs
                .iter()
                .filter(|(n, _)| *n == f.name)
                .map(|(_, a)| *a)
                .collect(),
            figures: m.frontend_figures(&f.name),
        })
        .collect();
    let backends = view
        .pools()
        .iter()
        .map(|p| {
            let checked = spec
                .backends
                .iter()
                .find(|b| b.name == p.name())
                .is_some_and(|b| b.health.is_some());
            let servers = p
                .servers()
                .into_iter()
                .map(|snap| Server {
                    status: match metrics::display_state(&snap) {
                        "up" if !checked => "no check",
                        "up" => "UP",
                        "down" => "DOWN",
                        "drain" => "DRAIN",
                        _ => "MAINT",
                    },
                    since: now.saturating_duration_since(snap.since),
                    checked_ago: snap
                        .last_check
                        .as_ref()
                        .map(|c| now.saturating_duration_since(c.at)),
                    snap,
                })
                .collect();
            Backend {
                name: p.name().to_string(),
                balance: format!("{:?}", p.balance()).to_lowercase(),
                queue: p.queue_len(),
                backup_active: p.backup_active(),
                checked,
                servers,
            }
        })
        .collect();
    let proc_stats = metrics::process_stats();
    let unix_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let process = Process {
        version: env!("CARGO_PKG_VERSION"),
        pid: std::process::id(),
        uptime: proc_stats
            .start_time_seconds
            .map(|start| Duration::from_secs_f64((unix_now - start).max(0.0))),
        max_connections: spec.global.max_connections,
        current_connections: frontends.iter().map(|f| f.figures.current).sum(),
        fd_limit: proc_stats.max_fds.map(|v| v as u64),
        open_fds: proc_stats.open_fds.map(|v| v as u64),
        threads: spec.global.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        }),
    };
    Report {
        process,
        frontends,
        backends,
    }
}
