//! File-descriptor budget: how many descriptors a configuration needs (`fds_needed`) and
//! raising RLIMIT_NOFILE to fit (`raise_nofile`), or saying why it cannot be (`check_nofile`).
//! Uses rustix's safe getrlimit/setrlimit; it never lowers a limit. Like HAProxy, a process
//! with CAP_SYS_RESOURCE may raise the hard limit too (up to the kernel's `nr_open`).

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

use super::model::Config;

/// Descriptors kept free for stdio, the resolver, log files opened late, the runtime's own
/// eventfds and epoll, and similar.
pub const FD_SLACK: u64 = 64;

/// Two descriptors per connection (client side + server side), one per listener, one per
/// health-checked server (checks run one at a time per server), one per access log, plus slack.
pub fn fds_needed(cfg: &Config) -> u64 {
    let conns = (cfg.global.max_connections as u64).saturating_mul(2);
    let listeners: u64 = cfg.frontends.iter().map(|f| f.bind.len() as u64).sum();
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
    conns
        .saturating_add(listeners)
        .saturating_add(logs)
        .saturating_add(checks)
        .saturating_add(FD_SLACK)
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

/// Largest `max_connections` whose `fds_needed` fits in `fds` descriptors (other costs as in `cfg`).
pub fn max_connections_for(cfg: &Config, fds: u64) -> u64 {
    let fixed =
        fds_needed(cfg).saturating_sub((cfg.global.max_connections as u64).saturating_mul(2));
    fds.saturating_sub(fixed) / 2
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

    #[test]
    fn counts_connections_listeners_checks_logs_and_slack() {
        let c = cfg(1000);
        // 2000 + 2 listeners + 1 log + 3 checks + slack.
        assert_eq!(fds_needed(&c), 2000 + 2 + 1 + 3 + FD_SLACK);
        let mut no_health = c.clone();
        no_health.backends[0].health = None;
        assert_eq!(fds_needed(&no_health), 2000 + 2 + 1 + FD_SLACK);
    }

    #[test]
    fn huge_max_connections_saturates_instead_of_overflowing() {
        assert_eq!(fds_needed(&cfg(usize::MAX)), u64::MAX);
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
