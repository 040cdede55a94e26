//! The configuration as users write it (TOML, contract keys of issues #3 and #4).
//! Plain serde data with defaults; loading, spans and cross-checks live in `config::load`.

use std::time::Duration;

use serde::Deserialize;

use super::duration::Dur;

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub global: Global,
    #[serde(default, rename = "frontend")]
    pub frontends: Vec<Frontend>,
    #[serde(default, rename = "backend")]
    pub backends: Vec<Backend>,
    /// The admin endpoint (metrics, JSON API, stats page); off when absent.
    #[serde(default)]
    pub admin: Option<Admin>,
}

/// `[admin]`: HTTP endpoint with /metrics, /api/backends and the stats page (issue #7).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// "127.0.0.1:9100". A non-loopback address needs `token` or `allow_public = true`.
    pub bind: String,
    /// Bearer token required for write calls (POST) when set.
    #[serde(default)]
    pub token: Option<String>,
    /// Allow a non-loopback bind without a token (anyone who reaches it can drain servers).
    #[serde(default)]
    pub allow_public: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Global {
    /// All frontends together; accept pauses at the limit.
    pub max_connections: usize,
    /// On SIGTERM: stop accepting, let connections finish this long.
    pub grace: Dur,
    /// `sluice run` writes its pid here (removed on exit); `sluice reload` reads it.
    pub pid_file: Option<String>,
    /// DNS servers ("ip:port") for re-resolving host-name servers; empty = the system
    /// resolver (/etc/resolv.conf, /etc/hosts).
    pub resolvers: Vec<String>,
    /// Worker threads (HAProxy's `nbthread`), each with its own single-threaded runtime and
    /// one SO_REUSEPORT socket per listening address, so accepting and serving run on every
    /// core. Unset: one per CPU. Read at start only.
    pub threads: Option<usize>,
}

impl Default for Global {
    fn default() -> Self {
        Global {
            max_connections: 20_000,
            grace: Dur(Duration::from_secs(30)),
            pid_file: None,
            resolvers: Vec::new(),
            threads: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Tcp,
    Http,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Frontend {
    pub name: String,
    /// "0.0.0.0:443", "[::]:443", "127.0.0.1:0".
    pub bind: Vec<String>,
    #[serde(default)]
    pub mode: Mode,
    pub backend: String,
    #[serde(default)]
    pub access_log: Option<String>,
    #[serde(default)]
    pub access_log_format: AccessLogFormat,
    #[serde(default)]
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Edge only (mode = "http"): omit for plain HTTP.
    #[serde(default)]
    pub tls: Option<Tls>,
    /// Edge only: largest buffered request body of unknown length (413 beyond).
    #[serde(default = "default_max_body")]
    pub max_body: usize,
}

fn default_max_body() -> usize {
    1 << 20
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    #[default]
    Combined,
    Json,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyProtocol {
    /// CIDRs allowed to send a PROXY header ("10.0.0.10/32", "::1/128").
    pub trusted: Vec<String>,
    /// A trusted peer must complete its header within this.
    #[serde(default = "default_pp_timeout")]
    pub timeout: Dur,
    #[serde(default)]
    pub untrusted: Untrusted,
}

fn default_pp_timeout() -> Dur {
    Dur(Duration::from_secs(5))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Untrusted {
    /// Close connections from untrusted addresses at once.
    #[default]
    Reject,
    /// Treat them as direct clients that send no header.
    Direct,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub cert: String,
    pub key: String,
    #[serde(default)]
    pub certs: Vec<CertPair>,
    #[serde(default)]
    pub ticket_keys: Vec<String>,
    #[serde(default = "default_session_cache")]
    pub session_cache: usize,
}

fn default_session_cache() -> usize {
    20_000
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertPair {
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Balance {
    #[default]
    Roundrobin,
    Leastconn,
    Source,
    Random,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SendProxy {
    #[default]
    None,
    V1,
    V2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// L4 backends (tcp frontends) ignore this.
    #[default]
    Http,
    Uwsgi,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    pub name: String,
    #[serde(default)]
    pub balance: Balance,
    #[serde(default)]
    pub send_proxy: SendProxy,
    /// Extra v2 TLVs: a UNIQUE_ID per connection when true.
    #[serde(default)]
    pub proxy_v2_unique_id: bool,
    /// Add a CRC32C TLV to v2 headers.
    #[serde(default = "yes")]
    pub proxy_v2_crc32c: bool,
    /// Local address for connections to servers.
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default = "default_retries")]
    pub retries: u32,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub health: Option<Health>,
    /// Edge only: how requests reach the app servers.
    #[serde(default)]
    pub protocol: Protocol,
    /// How often host-name servers are re-resolved (issue #7, servers from DNS).
    #[serde(default = "default_resolve_interval")]
    pub resolve_interval: Dur,
    pub servers: Vec<Server>,
}

fn default_resolve_interval() -> Dur {
    Dur(Duration::from_secs(30))
}

fn yes() -> bool {
    true
}

fn default_retries() -> u32 {
    3
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    pub connect: Dur,
    pub idle: Dur,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Dur(Duration::from_secs(5)),
            idle: Dur(Duration::from_secs(300)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HealthKind {
    #[default]
    Tcp,
    Tls,
    Http,
    Https,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Health {
    pub kind: HealthKind,
    pub interval: Dur,
    pub timeout: Dur,
    pub rise: u32,
    pub fall: u32,
    /// http(s) only.
    pub path: String,
    pub expect_status: u16,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            kind: HealthKind::Tcp,
            interval: Dur(Duration::from_secs(2)),
            timeout: Dur(Duration::from_secs(1)),
            rise: 2,
            fall: 3,
            path: "/".into(),
            expect_status: 200,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Defaults to "srvN" (1-based position) when omitted.
    #[serde(default)]
    pub name: Option<String>,
    /// "ip:port", "host:port" (resolved at start) or "unix:/path".
    pub addr: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default)]
    pub backup: bool,
    /// 0 = unlimited.
    #[serde(default)]
    pub max_connections: usize,
}

fn default_weight() -> u32 {
    1
}
