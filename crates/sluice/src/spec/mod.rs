//! The typed specification the runtime works on: addresses, CIDRs, durations and server names
//! already resolved from the configuration (`config::convert` builds a `Spec` once per load).
//! Plain data with `PartialEq` so reloads diff values; no parsing, no I/O, no runtime state.
//! Depends on nothing in the crate but `addr`. The one exception to "no parsing": access log
//! formats and targets (`logformat.rs`), parsed here so `config` can check them at load.

mod backend;
mod frontend;
mod logformat;
mod proxy_tlv;
mod route;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use backend::{
    Agent, Backend, Balance, FastCgi, HashKey, Health, HealthKind, Protocol, SendProxy, Server,
    Timeouts, UpstreamTls, DEFAULT_MAX_QUEUE, FASTCGI_MAX_CONNECTIONS, HTTP_MAX_CONNECTIONS,
    UWSGI_MAX_CONNECTIONS,
};
pub use frontend::{
    AccessLogFormat, CertPair, ClientAuth, ClientLimits, ClientTimeouts, ClientVerify, Edge,
    Forward, ForwardField, Forwarded, ForwardedFor, Frontend, Mode, ProxyProtocol, RealIpHeader,
    Tls, Untrusted, DEFAULT_EMIT,
};
pub use logformat::{
    Escape, LineFormat, LogTarget, Piece, SyslogServer, SyslogTarget, Template, Var, COMBINED,
    CONN, TCPLOG,
};
pub use proxy_tlv::TlvName;
pub use route::{NoHello, Route, Routes, SniPattern, DEFAULT_PREREAD_TIMEOUT};

/// Edge: temp files (buffered bodies) open at once in the whole process unless
/// `global.max_temp_files` says otherwise.
pub const DEFAULT_MAX_TEMP_FILES: usize = 1024;

/// Most splice(2) pipes open at once in the process (each holds two descriptors); beyond,
/// L4 connections copy through user space (`l4::splice`, counted by `config::limits`).
pub const MAX_PIPES: usize = 1024;

/// `[frontend.tls] ticket_rotation` when unset: nginx's advice for key rotation, and the
/// random key's period.
pub const DEFAULT_TICKET_ROTATION: Duration = Duration::from_secs(12 * 60 * 60);
/// Shortest and longest `ticket_rotation`: a ticket lives two periods, and TLS 1.3 caps a
/// ticket's lifetime at 7 days (RFC 8446 §4.6.1).
pub const TICKET_ROTATION_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(302_400));

/// Most admin connections served at once (`admin`, counted by `config::limits`).
pub const ADMIN_MAX_CONNECTIONS: usize = 64;

/// Most agent-endpoint connections served at once (`health::endpoint`, counted by
/// `config::limits`); each is one line and a close.
pub const AGENT_MAX_CONNECTIONS: usize = 16;

/// Everything one configuration asks the runtime for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Spec {
    pub global: Global,
    pub frontends: Vec<Frontend>,
    pub backends: Vec<Backend>,
    /// The admin endpoint; off when None.
    pub admin: Option<Admin>,
    /// The agent endpoint balancers ask about this process (`[agent]`); off when None.
    pub agent: Option<AgentEndpoint>,
}

/// `[agent]`: answers HAProxy's agent-check protocol for this process's edges: `drain` while
/// shutting down, `down` when no app server is up, else `up ready NN%` from the load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentEndpoint {
    /// Port 0 picks a free port.
    pub bind: SocketAddr,
    /// Requests in flight (held or queued on the edges' app servers) that mean 100 % busy;
    /// None: the sum of the app servers' `max_connections`.
    pub capacity: Option<usize>,
}

/// `[global]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Global {
    /// All frontends together; accept pauses at the limit.
    pub max_connections: usize,
    /// On SIGTERM: stop accepting, let connections finish this long.
    pub grace: Duration,
    /// Where `sluice run` writes its pid.
    pub pid_file: Option<PathBuf>,
    /// DNS servers for re-resolving host-name servers; empty = the system resolver.
    pub resolvers: Vec<SocketAddr>,
    /// Worker threads; None: one per CPU. Read at start only.
    pub threads: Option<usize>,
    /// Edge temp files open at once in the whole process.
    pub max_temp_files: usize,
    /// File descriptors the configuration needs at most (`config::limits::fds_needed`,
    /// computed when the spec is built): RLIMIT_NOFILE is raised to fit it.
    pub fds_needed: u64,
}

impl Default for Global {
    fn default() -> Self {
        Global {
            max_connections: 20_000,
            grace: Duration::from_secs(30),
            pid_file: None,
            resolvers: Vec::new(),
            threads: None,
            max_temp_files: DEFAULT_MAX_TEMP_FILES,
            fds_needed: 0,
        }
    }
}

/// `[admin]`: metrics, JSON API and stats page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// Port 0 picks a free port.
    pub bind: SocketAddr,
    /// Bearer token required for write calls when set.
    pub token: Option<String>,
    /// A non-loopback bind without a token was allowed explicitly.
    pub allow_public: bool,
    /// Host names accepted in `Host` besides IP literals and `localhost` (lowercase).
    pub server_names: Vec<String>,
}
