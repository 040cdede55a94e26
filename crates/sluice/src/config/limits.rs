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
    /// splice(2) pipes of L4 connections, two descriptors each (`l4::splice::MAX_PIPES`).
    pub pipes: u64,
    /// Listening sockets: one per bind address per worker thread (SO_REUSEPORT shards).
    pub listeners: u64,
    pub logs: u64,
    /// One per health-checked server (checks run one at a time per server).
    pub checks: u64,
    /// The `[admin]` listener and its connection cap.
    pub admin: u64,
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
    /// A `mode = "http"` frontend sends requests to it (HTTP/2 multiplexes many requests,
    /// each with its own upstream socket, over one client connection).
    http: bool,
    /// Σ of its servers' `max_connections` when every server has one, the address is
    /// fixed (not a host name, which DNS expands into any number of servers with the same
    /// limit each), and no edge reaches it over `protocol = "http"` (the keep-alive pool
    /// keeps idle sockets and connects in the background outside any lease). `None` otherwise.
    bound: Option<u64>,
}

fn reach(cfg: &Config) -> BTreeMap<&str, Reach> {
    let mut out: BTreeMap<&str, Reach> = BTreeMap::new();
    for f in &cfg.frontends {
        let r = out.entry(f.backend.as_str()).or_default();
        match f.mode {
            Mode::Tcp => r.tcp = true,
            Mode::Http => r.http = true,
        }
    }
    for (name, r) in out.iter_mut() {
        let Some(b) = cfg.backends.iter().find(|b| b.name == *name) else {
            continue; // validation reports the unknown backend
        };
        let fixed = |addr: &str| {
            !matches!(
                parse_server_addr(addr),
                Ok(ServerAddr::Host { .. }) | Err(_)
            )
        };
        let pooled = r.http && b.protocol == Protocol::Http;
        r.bound = if pooled || b.servers.is_empty() {
            None
        } else {
            b.servers.iter().try_fold(0u64, |sum, s| {
                (s.max_connections > 0 && fixed(&s.addr))
                    .then(|| sum.saturating_add(s.max_connections as u64))
            })
        };
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
/// on its server (L4 forwarding, uwsgi requests), which never exceeds that server's
/// `max_connections`. So:
/// - backends reached by L4 frontends only: server sockets ≤ `max_connections` and, when
///   every server is bounded, ≤ Σ server `max_connections`; splice pipes (≤ 2 per forwarded
///   connection, ≤ `MAX_PIPES` in all) two descriptors each;
/// - bounded backends an edge reaches over uwsgi: ≤ Σ server `max_connections` (HTTP/2
///   multiplexing does not change that: every request holds a lease);
/// - anything else (unbounded servers, host-name servers, the edge's HTTP keep-alive pool):
///   one server socket per client connection, as before. For an edge that is an estimate
///   (an HTTP/2 client may have 128 requests in flight, the pool keeps idle sockets): set
///   `max_connections` on the servers (uwsgi) to make it a bound.
pub fn fd_budget(cfg: &Config) -> FdBudget {
    let max = cfg.global.max_connections as u64;
    let reach = reach(cfg);
    // Server sockets that each belong to one client connection (so ≤ max_connections), and
    // those only bounded by their servers' limits.
    let mut paired: Option<u64> = Some(0);
    let mut edge_bounded = 0u64;
    // L4 connections that may be forwarded at once (for the pipes).
    let mut l4: Option<u64> = Some(0);
    for r in reach.values() {
        match (r.bound, r.http) {
            (Some(b), true) => edge_bounded = edge_bounded.saturating_add(b),
            (Some(b), false) => paired = paired.map(|p| p.saturating_add(b)),
            (None, _) => paired = None,
        }
        if r.tcp {
            l4 = match (l4, r.bound) {
                (Some(n), Some(b)) => Some(n.saturating_add(b)),
                _ => None,
            };
        }
    }
    let servers = paired
        .map_or(max, |p| p.min(max))
        .saturating_add(edge_bounded);
    let any_tcp = reach.values().any(|r| r.tcp);
    let l4 = if any_tcp {
        l4.map_or(max, |n| n.min(max))
    } else {
        0
    };
    let pipes = l4
        .saturating_mul(2)
        .min(crate::l4::splice::MAX_PIPES as u64)
        .saturating_mul(2);
    let listeners = cfg
        .frontends
        .iter()
        .map(|f| f.bind.len() as u64)
        .sum::<u64>()
        .saturating_mul(sockets_per_bind(cfg));
    let logs = cfg
        .frontends
        .iter()
        .filter(|f| f.access_log.is_some())
        .count() as u64;
    let checks: u64 = cfg
        .backends
        .iter()
        .filter(|b| b.health.is_some())
        .map(|b| b.servers.len() as u64)
        .sum();
    let admin = if cfg.admin.is_some() {
        1 + crate::admin::MAX_CONNECTIONS as u64
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

/// Backends (by name) whose server sockets are not bounded by their servers' limits, only
/// by `max_connections`, because some server has no `max_connections` or a host name.
/// Backends an edge reaches over `protocol = "http"` are not listed: no server limit
/// bounds them (the keep-alive pool).
pub fn unbounded_backends(cfg: &Config) -> Vec<String> {
    reach(cfg)
        .into_iter()
        .filter(|(name, r)| {
            r.bound.is_none()
                && !(r.http
                    && cfg
                        .backends
                        .iter()
                        .any(|b| b.name == *name && b.protocol == Protocol::Http))
        })
        .map(|(name, _)| name.to_string())
        .collect()
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
mod tests {
    use super::*;

    fn cfg(max: usize) -> Config {
        let mut c: Config = toml::from_str(
            r#"
            [[frontend]]
            name = "a"
            bind = ["127.0.0.1:0", "[::1]:0"]
            backend = "b"
            access_log = "/dev/null"
            [[backend]]
            name = "b"
            health = {}
            servers = [{ addr = "127.0.0.1:1" }, { addr = "127.0.0.1:2" }, { addr = "127.0.0.1:3" }]
            "#,
        )
        .unwrap();
        c.global.max_connections = max;
        c
    }

    fn budget(toml_text: &str, max: usize) -> FdBudget {
        let mut c: Config = toml::from_str(toml_text).unwrap();
        c.global.max_connections = max;
        fd_budget(&c)
    }

    /// A tcp frontend on backend "b" with three servers limited to `per` each (0 = none).
    fn l4(per: usize) -> String {
        format!(
            r#"
            [[frontend]]
            name = "a"
            bind = ["127.0.0.1:0"]
            backend = "b"
            [[backend]]
            name = "b"
            servers = [{{ addr = "127.0.0.1:1", max_connections = {per} }},
                       {{ addr = "127.0.0.1:2", max_connections = {per} }},
                       {{ addr = "unix:/run/s", max_connections = {per} }}]
            "#
        )
    }

    /// An edge frontend over `protocol` to two servers limited to `per` each.
    fn edge(protocol: &str, per: usize) -> String {
        format!(
            r#"
            [[frontend]]
            name = "e"
            mode = "http"
            bind = ["127.0.0.1:0"]
            backend = "app"
            [[backend]]
            name = "app"
            protocol = "{protocol}"
            servers = [{{ addr = "127.0.0.1:1", max_connections = {per} }},
                       {{ addr = "127.0.0.1:2", max_connections = {per} }}]
            "#
        )
    }

    #[test]
    fn counts_connections_listeners_checks_logs_and_slack() {
        let c = cfg(1000);
        let b = fd_budget(&c);
        // Unlimited servers: one server socket per connection; tcp: pipes for 2 directions.
        assert_eq!((b.clients, b.servers), (1000, 1000));
        assert_eq!(b.pipes, 2 * (2 * 1000u64).min(MAX_PIPES_U64));
        assert_eq!(b.listeners, 2 * sockets_per_bind(&c));
        let mut four = c.clone();
        four.global.threads = Some(4);
        assert_eq!(fd_budget(&four).listeners, 2 * 4);
        assert_eq!(
            fd_budget(&four).runtimes,
            RUNTIME_FDS * 5,
            "4 workers + control"
        );
        assert_eq!((b.logs, b.checks, b.admin, b.slack), (1, 3, 0, FD_SLACK));
        assert_eq!(b.runtimes, RUNTIME_FDS * (sockets_per_bind(&c) + 1));
        assert_eq!(fds_needed(&c), b.total());
        assert_eq!(
            b.total(),
            2000 + b.pipes + 2 * sockets_per_bind(&c) + 1 + 3 + b.runtimes + FD_SLACK
        );
        let mut no_health = c.clone();
        no_health.backends[0].health = None;
        assert_eq!(fds_needed(&no_health), fds_needed(&c) - 3);
    }

    const MAX_PIPES_U64: u64 = crate::l4::splice::MAX_PIPES as u64;

    #[test]
    fn servers_with_limits_bound_the_server_side() {
        // 3 servers x 100: at most 300 forwarded connections of the 11 500.
        let b = budget(&l4(100), 11_500);
        assert_eq!((b.clients, b.servers), (11_500, 300));
        assert_eq!(
            b.pipes,
            2 * 600,
            "two pipes per forwarded connection at most"
        );
        // The sum never beats max_connections itself (each server socket has a client).
        let b = budget(&l4(200), 100);
        assert_eq!((b.clients, b.servers, b.pipes), (100, 100, 400));
        // Many forwarded connections: pipes stop at MAX_PIPES.
        let b = budget(&l4(5000), 20_000);
        assert_eq!((b.servers, b.pipes), (15_000, 2 * MAX_PIPES_U64));
    }

    #[test]
    fn one_unlimited_or_host_name_server_unbounds_its_backend() {
        let unlimited = l4(200).replace("max_connections = 200 },\n", "max_connections = 0 },\n");
        assert_ne!(unlimited, l4(200));
        assert_eq!(budget(&unlimited, 5000).servers, 5000);
        // A host name expands to any number of addresses, each with the same limit.
        let dns = l4(200).replace("127.0.0.1:1", "app.internal:1");
        assert_eq!(budget(&dns, 5000).servers, 5000);
        let mut c: Config = toml::from_str(&dns).unwrap();
        c.global.max_connections = 5000;
        assert_eq!(unbounded_backends(&c), ["b"]);
        let mut c: Config = toml::from_str(&l4(200)).unwrap();
        c.global.max_connections = 5000;
        assert!(unbounded_backends(&c).is_empty());
    }

    #[test]
    fn an_edge_over_uwsgi_is_bounded_by_its_servers_even_beyond_max_connections() {
        // HTTP/2: 10 client connections may hold 2 x 300 requests, each with its socket.
        let b = budget(&edge("uwsgi", 300), 10);
        assert_eq!((b.clients, b.servers, b.pipes), (10, 600, 0));
        // The HTTP keep-alive pool is not bounded by server limits: one per connection.
        let b = budget(&edge("http", 300), 10);
        assert_eq!((b.clients, b.servers, b.pipes), (10, 10, 0));
        let mut c: Config = toml::from_str(&edge("http", 300)).unwrap();
        c.global.max_connections = 10;
        assert!(
            unbounded_backends(&c).is_empty(),
            "server limits would not help there"
        );
    }

    #[test]
    fn mixed_bounded_and_unbounded_backends_add_up() {
        let text = format!(
            "{}\n{}",
            l4(100),
            edge("uwsgi", 50).replace("127.0.0.1:2", "unix:/x")
        );
        let b = budget(&text, 1000);
        assert_eq!(b.servers, 300 + 100);
        let text = format!("{}\n{}", l4(0), edge("uwsgi", 50));
        let b = budget(&text, 1000);
        assert_eq!(b.servers, 1000 + 100);
    }

    #[test]
    fn edge_temp_files_are_counted() {
        let mut c: Config = toml::from_str(&edge("uwsgi", 10)).unwrap();
        c.global.max_temp_files = 300;
        let b = fd_budget(&c);
        assert_eq!(b.temp_files, 300);
        let mut without = c.clone();
        without.global.max_temp_files = 1;
        assert_eq!(b.total(), fds_needed(&without) + 299);
        // No edge, no temp files.
        assert_eq!(budget(&l4(10), 100).temp_files, 0);
    }

    #[test]
    fn admin_endpoint_is_counted() {
        let text = format!("{}\n[admin]\nbind = \"127.0.0.1:0\"\n", l4(10));
        assert_eq!(
            budget(&text, 100).admin,
            1 + crate::admin::MAX_CONNECTIONS as u64
        );
    }

    #[test]
    fn max_connections_for_is_the_largest_that_fits() {
        for text in [l4(0), l4(200), edge("uwsgi", 300), edge("http", 1)] {
            let c: Config = toml::from_str(&text).unwrap();
            for fds in [0u64, 100, 5_000, 20_000] {
                let m = max_connections_for(&c, fds);
                let mut at = c.clone();
                at.global.max_connections = m as usize;
                if m > 0 {
                    assert!(fds_needed(&at) <= fds, "{m} fits in {fds}");
                }
                at.global.max_connections = m as usize + 1;
                assert!(fds_needed(&at) > fds, "{} does not fit in {fds}", m + 1);
            }
        }
        // Bounded servers: the issue's 11 500 fit under a 20 000 hard limit.
        let c: Config = toml::from_str(&l4(200)).unwrap();
        assert!(max_connections_for(&c, 20_000) >= 11_500);
        let c: Config = toml::from_str(&l4(0)).unwrap();
        assert!(max_connections_for(&c, 20_000) < 10_000);
    }

    #[test]
    fn advice_names_the_backends_to_limit() {
        let mut c: Config = toml::from_str(&l4(0)).unwrap();
        c.global.max_connections = 50_000;
        let a = advice(&c, 20_000);
        assert!(
            a.contains("lower max_connections (now 50000) to at most"),
            "{a}"
        );
        assert!(
            a.contains("set max_connections on every server of backend b"),
            "{a}"
        );
        let mut c: Config = toml::from_str(&l4(10)).unwrap();
        c.global.max_connections = 50_000;
        assert!(!advice(&c, 20_000).contains("every server"));
    }

    #[test]
    fn huge_max_connections_saturates_instead_of_overflowing() {
        assert_eq!(fds_needed(&cfg(usize::MAX)), u64::MAX);
        // Huge per-server limits: the sum saturates, max_connections still caps L4.
        let huge = l4(i64::MAX as usize); // the largest TOML integer
        assert_eq!(budget(&huge, 1000).servers, 1000);
        let edge = edge("uwsgi", i64::MAX as usize);
        assert_eq!(budget(&edge, 1000).servers, 2 * i64::MAX as u64);
        assert_eq!(budget(&edge, 1000).total(), u64::MAX);
    }

    #[test]
    fn check_refuses_more_than_the_hard_limit() {
        assert!(check_nofile(16).is_ok());
        // Linux always has nr_open, so there is a finite ceiling to exceed.
        let ceiling = nofile_ceiling().expect("finite RLIMIT_NOFILE ceiling on Linux");
        let err = check_nofile(ceiling + 1).unwrap_err();
        assert!(err.contains("hard RLIMIT_NOFILE"), "{err}");
        assert!(check_nofile(ceiling).is_ok());
    }

    #[test]
    fn raise_is_a_no_op_below_the_soft_limit_and_fails_beyond_hard() {
        let (soft, _) = nofile_limits();
        let got = raise_nofile(16).unwrap();
        assert_eq!(Some(got), soft.or(Some(u64::MAX)));
        assert!(raise_nofile(u64::MAX).is_err());
    }
}
