//! File-descriptor budget: how many descriptors a configuration needs (`fds_needed`, itemised
//! by `fd_budget`) and raising RLIMIT_NOFILE to fit (`raise_nofile`), or saying why it cannot
//! be (`check_nofile`, `advice`). Uses rustix's safe getrlimit/setrlimit; it never lowers a
//! limit. Like HAProxy, a process with CAP_SYS_RESOURCE may raise the hard limit too.

use std::collections::BTreeMap;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

use super::model::{Config, Mode, Protocol};
use super::parsed::{parse_server_addr, ServerAddr};

/// Descriptors kept free for stdio, the resolver, log files opened late, the runtime's own
/// eventfds and epoll, and similar.
pub const FD_SLACK: u64 = 64;

/// Where the descriptors of a configuration go (see `fd_budget`). `total()` is `fds_needed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdBudget {
    /// One per client connection: `global.max_connections`.
    pub clients: u64,
    /// Server-side sockets: one per forwarded connection, at most `max_connections`, fewer
    /// when every server has a `max_connections` (see `fd_budget`).
    pub servers: u64,
    /// splice(2) pipes of L4 connections, two descriptors each (`spec::MAX_PIPES`).
    pub pipes: u64,
    /// Listening sockets: one per bind address per worker thread (SO_REUSEPORT shards), and
    /// the duplicate of each that the process keeps to hand to `sluice upgrade`'s successor.
    pub listeners: u64,
    pub logs: u64,
    /// One per health-checked server (checks run one at a time per server), two with an
    /// agent check.
    pub checks: u64,
    /// The `[admin]` and `[agent]` listeners and their connection caps.
    pub admin: u64,
    /// With `global.pid_file`: the locked pid file, the control socket beside it and the one
    /// control connection served at a time (`CONTROL_FDS`).
    pub control: u64,
    /// Each worker thread's event loop (and the control thread's): `RUNTIME_FDS` each.
    pub runtimes: u64,
    /// Edge temp files (buffered bodies): `global.max_temp_files` when an edge exists.
    pub temp_files: u64,
    pub slack: u64,
}

/// Descriptors one tokio runtime holds (measured on `sluice run`: each extra worker thread
/// adds 5 with one bind address, one of them its listening socket): epoll, eventfds, its
/// copy of the signal socket.
pub const RUNTIME_FDS: u64 = 4;

/// Descriptors `global.pid_file` adds: the pid file (held locked), the control socket's
/// listener and the connection it serves.
pub const CONTROL_FDS: u64 = 3;

impl FdBudget {
    pub fn total(&self) -> u64 {
        [
            self.clients,
            self.servers,
            self.pipes,
            self.listeners,
            self.logs,
            self.checks,
            self.admin,
            self.control,
            self.runtimes,
            self.temp_files,
            self.slack,
        ]
        .iter()
        .fold(0u64, |a, b| a.saturating_add(*b))
    }
}

/// How the frontends reach one backend, and what bounds its server-side sockets.
#[derive(Debug, Default)]
struct Reach {
    /// A `mode = "tcp"` frontend forwards to it (one server socket per forwarded connection,
    /// plus up to two splice pipes).
    tcp: bool,
    /// `mode = "http"` frontends sending requests to it (HTTP/2 multiplexes many requests,
    /// each with its own upstream socket, over one client connection).
    http: u64,
    /// L4: Σ of its servers' `max_connections` when every server has one and its address is
    /// fixed (not a host name, which DNS expands into any number of servers with the same
    /// limit each). `None` otherwise: one server socket per client connection.
    bound: Option<u64>,
    /// Edge: server sockets at most. Every edge server has a limit (`config::edge`), and
    /// every upstream socket is taken within it: a uwsgi request's socket within its lease,
    /// the HTTP keep-alive pool's sockets (in use, idle or connecting in the background)
    /// within a per-server cap of that frontend's pool. So: Σ limits for uwsgi, Σ limits
    /// per frontend for HTTP (each frontend has its own pool). A host-name server counts
    /// once (its addresses are not known before start).
    edge: u64,
}

fn reach(cfg: &Config) -> BTreeMap<&str, Reach> {
    let max = cfg.global.max_connections as u64;
    let modes = super::edge::backend_modes(cfg);
    let mut out: BTreeMap<&str, Reach> = BTreeMap::new();
    for f in &cfg.frontends {
        let r = out.entry(f.backend.as_str()).or_default();
        match f.mode {
            Mode::Tcp => r.tcp = true,
            Mode::Http => r.http += 1,
        }
        for route in &f.routes {
            out.entry(route.backend.as_str()).or_default().tcp = true;
        }
    }
    for (name, r) in out.iter_mut() {
        let Some(k) = cfg.backends.iter().position(|b| b.name == *name) else {
            continue; // validation reports the unknown backend
        };
        let b = &cfg.backends[k];
        let fixed = |addr: &str| {
            !matches!(
                parse_server_addr(addr),
                Ok(ServerAddr::Host { .. }) | Err(_)
            )
        };
        let caps = || (0..b.servers.len()).map(|j| super::edge::effective_cap(cfg, &modes, k, j));
        r.bound = if b.servers.is_empty() {
            None
        } else {
            b.servers
                .iter()
                .zip(caps())
                .try_fold(0u64, |sum, (s, cap)| {
                    (cap > 0 && fixed(&s.addr)).then(|| sum.saturating_add(cap as u64))
                })
        };
        if r.http > 0 {
            // 0 (unlimited) is refused on edges; an unvalidated one counts as one per client.
            let sum = caps().fold(0u64, |sum, c| {
                sum.saturating_add(if c == 0 { max } else { c as u64 })
            });
            let pools = match b.protocol {
                Protocol::Http | Protocol::H2c | Protocol::Grpc => r.http,
                // In-use sockets within the lease, plus each frontend's idle ones (≤ a cap).
                Protocol::Fastcgi if b.keepalive.unwrap_or(0) > 0 => r.http + 1,
                _ => 1,
            };
            r.edge = sum.saturating_mul(pools);
        }
    }
    out
}

/// Worker threads, hence listening sockets per bind address: `global.threads` or else one
/// per CPU (what `sluice run` starts).
fn sockets_per_bind(cfg: &Config) -> u64 {
    let default = || std::thread::available_parallelism().map_or(1, |n| n.get());
    cfg.global.threads.unwrap_or_else(default).max(1) as u64
}

/// Where the descriptors of `cfg` go. A connection holds its client socket from accept, and
/// a server socket only once it is forwarded; the server socket lives within the lease taken
/// on its server (L4 forwarding, uwsgi requests) or within the HTTP pool's per-server cap,
/// which never exceed that server's `max_connections`. So:
/// - backends reached by L4 frontends: server sockets ≤ `max_connections` and, when every
///   server is bounded, ≤ Σ server `max_connections`; splice pipes (≤ 2 per forwarded
///   connection, ≤ `MAX_PIPES` in all) two descriptors each;
/// - backends an edge reaches: ≤ Σ server `max_connections` (every edge server has one; a
///   default when unset), per frontend for `protocol = "http"` (each frontend has its own
///   keep-alive pool), whatever the clients do: HTTP/2 streams beyond it wait in the queue.
pub fn fd_budget(cfg: &Config) -> FdBudget {
    let max = cfg.global.max_connections as u64;
    let reach = reach(cfg);
    // Server sockets that each belong to one L4 client connection (so ≤ max_connections),
    // and the edges' sockets, bounded by their servers' limits only.
    let mut paired: Option<u64> = Some(0);
    let mut edge = 0u64;
    for r in reach.values() {
        if r.tcp {
            paired = match (paired, r.bound) {
                (Some(p), Some(b)) => Some(p.saturating_add(b)),
                _ => None,
            };
        }
        edge = edge.saturating_add(r.edge);
    }
    let any_tcp = reach.values().any(|r| r.tcp);
    // L4 connections that may be forwarded at once (also what the pipes serve).
    let l4 = if any_tcp {
        paired.map_or(max, |n| n.min(max))
    } else {
        0
    };
    let servers = l4.saturating_add(edge);
    let pipes = l4
        .saturating_mul(2)
        .min(crate::spec::MAX_PIPES as u64)
        .saturating_mul(2);
    let listeners = cfg
        .frontends
        .iter()
        .map(|f| f.bind.len() as u64)
        .sum::<u64>()
        .saturating_mul(sockets_per_bind(cfg))
        .saturating_mul(2);
    let logs = cfg
        .frontends
        .iter()
        .filter(|f| f.access_log.is_some())
        .count() as u64;
    let checks: u64 = cfg
        .backends
        .iter()
        .filter(|b| b.health.is_some())
        // An agent check runs beside the active one.
        .map(|b| {
            let agent = b.health.as_ref().is_some_and(|h| h.agent.is_some());
            b.servers.len() as u64 * if agent { 2 } else { 1 }
        })
        .sum();
    let admin = if cfg.admin.is_some() {
        1 + crate::spec::ADMIN_MAX_CONNECTIONS as u64
    } else {
        0
    } + if cfg.agent.is_some() {
        1 + crate::spec::AGENT_MAX_CONNECTIONS as u64
    } else {
        0
    };
    FdBudget {
        clients: max,
        servers,
        pipes,
        listeners,
        logs,
        checks,
        admin,
        control: if cfg.global.pid_file.is_some() {
            CONTROL_FDS
        } else {
            0
        },
        runtimes: RUNTIME_FDS.saturating_mul(sockets_per_bind(cfg).saturating_add(1)),
        temp_files: if cfg.frontends.iter().any(|f| f.mode == Mode::Http) {
            cfg.global.max_temp_files as u64
        } else {
            0
        },
        slack: FD_SLACK,
    }
}

/// Descriptors `cfg` needs at most: `fd_budget(cfg).total()`.
pub fn fds_needed(cfg: &Config) -> u64 {
    fd_budget(cfg).total()
}

/// L4 backends (by name) whose server sockets are not bounded by their servers' limits, only
/// by `max_connections`, because some server has no `max_connections` or a host name.
/// Edge backends are always bounded by their servers' limits.
pub fn unbounded_backends(cfg: &Config) -> Vec<String> {
    reach(cfg)
        .into_iter()
        .filter(|(_, r)| r.tcp && r.bound.is_none())
        .map(|(name, _)| name.to_string())
        .collect()
}

/// Edge backends (by name) with the server sockets they may hold, largest first.
pub fn edge_sockets(cfg: &Config) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = reach(cfg)
        .into_iter()
        .filter(|(_, r)| r.http > 0)
        .map(|(name, r)| (name.to_string(), r.edge))
        .collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.1));
    v
}

/// The current (soft, hard) RLIMIT_NOFILE; `None` means unlimited.
pub fn nofile_limits() -> (Option<u64>, Option<u64>) {
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    (current, maximum)
}

/// The kernel's ceiling for any process (`/proc/sys/fs/nr_open`), which also caps an
/// "unlimited" hard limit. `None` when unknown.
fn nr_open() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/sys/fs/nr_open").ok()?;
    text.trim().parse().ok()
}

/// Largest `max_connections` whose `fds_needed` fits in `fds` descriptors (everything else
/// as in `cfg`). `fds_needed` grows with `max_connections`, so a binary search finds it.
pub fn max_connections_for(cfg: &Config, fds: u64) -> u64 {
    let mut probe = cfg.clone();
    let mut fits = |m: u64| {
        probe.global.max_connections = usize::try_from(m).unwrap_or(usize::MAX);
        fds_needed(&probe) <= fds
    };
    let (mut lo, mut hi) = (0u64, fds.saturating_add(1)); // fits(lo); !fits(hi) (≥1 fd each)
    if !fits(0) {
        return 0;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// What to do when `cfg` needs more descriptors than the `ceiling`: the largest
/// `max_connections` that fits, and which backends to give per-server `max_connections`
/// (server sockets then count against their sum instead of one per connection).
pub fn advice(cfg: &Config, ceiling: u64) -> String {
    let most = max_connections_for(cfg, ceiling);
    let now = cfg.global.max_connections;
    let mut out = format!("lower max_connections (now {now}) to at most {most}");
    let open = unbounded_backends(cfg);
    if !open.is_empty() {
        out.push_str(&format!(
            ", or set max_connections on every server of backend {} (server-side \
             descriptors then count against their sum, not one per connection)",
            open.join(", ")
        ));
    }
    let edges: Vec<String> = edge_sockets(cfg)
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{name} ({n})"))
        .collect();
    if !edges.is_empty() {
        out.push_str(&format!(
            "; edge backends hold up to the sum of their servers' max_connections in server \
             sockets, whatever max_connections is: {}",
            edges.join(", ")
        ));
    }
    let temp = fd_budget(cfg).temp_files;
    if temp > 0 {
        out.push_str(&format!(
            "; edge request/response temp files take up to global.max_temp_files ({temp}) \
             descriptors: lower it where descriptors are scarce"
        ));
    }
    out
}

/// A process with CAP_SYS_RESOURCE (root, outside a restricted container) may raise the
/// hard limit itself. Read from /proc/self/status so `check` can tell without trying.
fn privileged() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

/// The lowest ceiling on RLIMIT_NOFILE this process could reach: the hard limit (or, as
/// root, no hard limit), capped by the kernel's `nr_open`. `None` when neither is known/finite.
pub fn nofile_ceiling() -> Option<u64> {
    let (_, hard) = nofile_limits();
    let hard = if privileged() { None } else { hard };
    match (hard, nr_open()) {
        (Some(h), Some(n)) => Some(h.min(n)),
        (Some(h), None) => Some(h),
        (None, n) => n,
    }
}

/// Whether `needed` descriptors fit under the hard limit, i.e. `raise_nofile` could succeed
/// without privileges. Changes nothing.
pub fn check_nofile(needed: u64) -> Result<(), String> {
    match nofile_ceiling() {
        Some(c) if c < needed => Err(format!(
            "needs {needed} file descriptors but the hard RLIMIT_NOFILE is {c}; raise it \
             (ulimit -Hn, systemd LimitNOFILE=)"
        )),
        _ => Ok(()),
    }
}

/// Raises the soft RLIMIT_NOFILE (up to the hard limit; as root, the hard one with it) so
/// that `needed` descriptors fit.
/// Returns the soft limit now in force; never lowers it.
pub fn raise_nofile(needed: u64) -> Result<u64, String> {
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let soft = match current {
        None => return Ok(u64::MAX),
        Some(s) if s >= needed => return Ok(s),
        Some(s) => s,
    };
    check_nofile(needed)?;
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(needed),
            maximum: match maximum {
                Some(h) if h < needed => Some(needed),
                other => other,
            },
        },
    )
    .map_err(|e| format!("cannot raise RLIMIT_NOFILE from {soft} to {needed}: {e}"))?;
    Ok(needed)
}

#[cfg(test)]
#[path = "limits_tests.rs"]
mod tests;
