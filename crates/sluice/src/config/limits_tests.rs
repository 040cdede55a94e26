//! Tests for `config::limits`: the descriptor budget of L4 and edge configurations, the
//! largest `max_connections` that fits, the advice, and the RLIMIT_NOFILE calls.

use super::*;
use crate::config::model::{HTTP_MAX_CONNECTIONS, UWSGI_MAX_CONNECTIONS};

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
    // Two binds, each socket with the duplicate kept for `sluice upgrade`.
    assert_eq!(b.listeners, 2 * 2 * sockets_per_bind(&c));
    let mut four = c.clone();
    four.global.threads = Some(4);
    assert_eq!(fd_budget(&four).listeners, 2 * 2 * 4);
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
        2000 + b.pipes + 2 * 2 * sockets_per_bind(&c) + 1 + 3 + b.runtimes + FD_SLACK
    );
    // A pid file adds itself, the control socket and its one connection.
    assert_eq!(b.control, 0);
    let mut pid = c.clone();
    pid.global.pid_file = Some("/run/sluice.pid".into());
    assert_eq!(fd_budget(&pid).control, CONTROL_FDS);
    assert_eq!(fds_needed(&pid), fds_needed(&c) + CONTROL_FDS);
    let mut no_health = c.clone();
    no_health.backends[0].health = None;
    assert_eq!(fds_needed(&no_health), fds_needed(&c) - 3);
}

const MAX_PIPES_U64: u64 = crate::spec::MAX_PIPES as u64;

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
fn an_edge_is_bounded_by_its_servers_even_beyond_max_connections() {
    // HTTP/2: 10 client connections may hold 2 x 300 requests; each waits for a lease.
    let b = budget(&edge("uwsgi", 300), 10);
    assert_eq!((b.clients, b.servers, b.pipes), (10, 600, 0));
    // The HTTP keep-alive pool keeps its sockets (idle or connecting) within the same caps.
    let b = budget(&edge("http", 300), 10);
    assert_eq!((b.clients, b.servers, b.pipes), (10, 600, 0));
    let mut c: Config = toml::from_str(&edge("http", 300)).unwrap();
    c.global.max_connections = 10;
    assert!(
        unbounded_backends(&c).is_empty(),
        "edges are always bounded"
    );
    assert_eq!(edge_sockets(&c), [("app".to_string(), 600)]);
}

#[test]
fn edge_servers_without_a_limit_get_their_default() {
    let unset = |protocol: &str| edge(protocol, 1).replace(", max_connections = 1", "");
    assert!(!unset("uwsgi").contains("max_connections"));
    let b = budget(&unset("uwsgi"), 10_000);
    assert_eq!(b.servers, 2 * UWSGI_MAX_CONNECTIONS as u64);
    let b = budget(&unset("http"), 10_000);
    assert_eq!(b.servers, 2 * HTTP_MAX_CONNECTIONS as u64);
    // A second frontend on the same backend: its own HTTP pool, the same uwsgi leases.
    let second = "[[frontend]]\nname = \"e2\"\nmode = \"http\"\nbind = [\"127.0.0.1:0\"]\n\
                  backend = \"app\"\n";
    let b = budget(&format!("{second}{}", unset("http")), 100);
    assert_eq!(b.servers, 2 * 2 * HTTP_MAX_CONNECTIONS as u64);
    let b = budget(&format!("{second}{}", unset("uwsgi")), 100);
    assert_eq!(b.servers, 2 * UWSGI_MAX_CONNECTIONS as u64);
    // A host name counts once (its addresses are not known before start).
    let b = budget(&unset("uwsgi").replace("127.0.0.1:1", "app.internal:1"), 10);
    assert_eq!(b.servers, 2 * UWSGI_MAX_CONNECTIONS as u64);
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
fn admin_endpoint_is_counted() {
    let text = format!("{}\n[admin]\nbind = \"127.0.0.1:0\"\n", l4(10));
    assert_eq!(
        budget(&text, 100).admin,
        1 + crate::spec::ADMIN_MAX_CONNECTIONS as u64
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
    // Edge sockets do not shrink with max_connections: the advice names them.
    let mut c: Config = toml::from_str(&edge("uwsgi", 9_000)).unwrap();
    c.global.max_connections = 50_000;
    let a = advice(&c, 20_000);
    assert!(
        a.contains("lower max_connections (now 50000) to at most "),
        "{a}"
    );
    assert!(
        a.contains("edge backends") && a.contains("app (18000)"),
        "{a}"
    );
    assert!(a.contains("global.max_temp_files (1024)"), "{a}");
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
