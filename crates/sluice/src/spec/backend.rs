//! Backend and server specs: balance, PROXY sending, source address, timeouts (`queue`
//! already defaulted), health checks, and servers with their names and limits resolved.
//! Built by `config::convert`; read by `balance`, `health`, `l4`, `edge` and `discovery`.

use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::addr::ServerAddr;

/// Default `backend.max_queue`.
pub const DEFAULT_MAX_QUEUE: usize = 1024;

/// Default `max_connections` of a server of an http-mode backend with `protocol = "uwsgi"`:
/// uWSGI's default `listen` backlog, so one edge never overflows it (beyond it a connect
/// fails and the client gets 502).
pub const UWSGI_MAX_CONNECTIONS: usize = 100;

/// Default `max_connections` of a server of an http-mode backend with `protocol = "http"`:
/// the keep-alive pool's idle limit per server (`upstream::HttpOpts::max_idle_per_server`).
pub const HTTP_MAX_CONNECTIONS: usize = 256;

/// Default `max_connections` of a server of an http-mode backend with `protocol = "fastcgi"`:
/// as for uwsgi, a listen backlog's worth (php-fpm queues what its children cannot take).
pub const FASTCGI_MAX_CONNECTIONS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Balance {
    #[default]
    Roundrobin,
    Leastconn,
    Source,
    Random,
    /// Maglev consistent hashing of `hash_key`.
    Hash,
}

/// What `balance = "hash"` hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HashKey {
    /// The client's IP address (not its port).
    #[default]
    Source,
    /// The SNI of the client's TLS ClientHello (tcp frontends; the client IP without one).
    Sni,
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
    /// HTTP/2 with prior knowledge, one multiplexed connection pool per server.
    H2c,
    /// gRPC over HTTP/2 (h2c): unbuffered streams, trailers, gRPC error statuses.
    Grpc,
    Fastcgi,
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

/// One backend.
#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    pub name: String,
    pub balance: Balance,
    /// `balance = "hash"`: the key hashed.
    pub hash_key: HashKey,
    pub send_proxy: SendProxy,
    /// v2 headers carry a UNIQUE_ID TLV.
    pub proxy_v2_unique_id: bool,
    /// v2 headers carry a CRC32C TLV.
    pub proxy_v2_crc32c: bool,
    /// v2 headers carry an AUTHORITY TLV: the SNI of the client's TLS ClientHello.
    pub proxy_v2_authority: bool,
    /// v2 headers carry an ALPN TLV: the protocols the ClientHello offers, comma-separated.
    pub proxy_v2_alpn: bool,
    /// v2 headers carry the TLVs of the header received from a trusted peer.
    pub proxy_v2_pass_tlvs: bool,
    /// Local address for connections to servers (port chosen by the system).
    pub source: Option<IpAddr>,
    pub retries: u32,
    pub timeouts: Timeouts,
    /// None: no active checks.
    pub health: Option<Health>,
    /// Edge only: how requests reach the app servers.
    pub protocol: Protocol,
    /// `protocol = "grpc"` only: TLS to the app servers (nginx `grpc_pass grpcs://`).
    pub tls: Option<UpstreamTls>,
    /// `protocol = "fastcgi"` only: root, index, keepalive.
    pub fastcgi: FastCgi,
    /// How often host-name servers are re-resolved.
    pub resolve_interval: Duration,
    /// Most requests or connections waiting for a free server slot.
    pub max_queue: usize,
    /// In configuration order.
    pub servers: Vec<Server>,
}

/// TLS from the edge to gRPC app servers (`[backend.tls]`), named after nginx's `grpc_ssl_*`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// Check the server's certificate against `trusted_certificate` and `name` (nginx
    /// `grpc_ssl_verify`, off by default as there).
    #[serde(default)]
    pub verify: bool,
    /// PEM file of the CAs trusted when `verify` (nginx `grpc_ssl_trusted_certificate`).
    #[serde(default)]
    pub trusted_certificate: Option<String>,
    /// The name checked in the certificate (nginx `grpc_ssl_name`); default: the server's
    /// host (name or address).
    #[serde(default)]
    pub name: Option<String>,
    /// Send `name` as SNI (nginx `grpc_ssl_server_name`, off by default as there).
    #[serde(default)]
    pub server_name: bool,
}

/// The FastCGI keys of a backend (`protocol = "fastcgi"`; defaults elsewhere).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FastCgi {
    /// `root`: DOCUMENT_ROOT and the first part of SCRIPT_FILENAME (nginx `root`).
    pub root: String,
    /// `index`: appended to a path ending in `/` (nginx `fastcgi_index`).
    pub index: String,
    /// `keepalive`: idle connections kept per server, sent FCGI_KEEP_CONN (nginx upstream
    /// `keepalive` with `fastcgi_keep_conn on`); 0: a connection per request.
    pub keepalive: usize,
}

/// Backend timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    /// L4: a forwarded connection idle this long is closed.
    pub idle: Duration,
    /// Edge: response head and between two reads of the response body.
    pub read: Duration,
    /// Edge: between two successful writes of the request.
    pub send: Duration,
    /// Waiting in the backend queue for a free server slot (`connect` when not configured).
    pub queue: Duration,
    /// L4: waiting for the client's TLS ClientHello (`proxy_v2_authority`/`_alpn` only).
    pub preread: Duration,
}

/// Active health checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub kind: HealthKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    /// http(s) only.
    pub path: String,
    pub expect_status: u16,
    /// HAProxy's agent-check, on top of the active checks.
    pub agent: Option<Agent>,
}

/// `health.agent`: ask an agent (HAProxy's agent-check protocol) for the server's state and
/// weight every `interval`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// Where the agent listens (HAProxy `agent-addr`); None: the server's own address.
    pub addr: Option<IpAddr>,
    /// HAProxy `agent-port`.
    pub port: u16,
    /// HAProxy `agent-inter`.
    pub interval: Duration,
    /// Connect and read the reply within this.
    pub timeout: Duration,
    /// Sent once connected (HAProxy `agent-send`); empty: nothing.
    pub send: String,
}

/// One server of a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// As configured, or "srvN" (1-based position); servers from DNS: `NAME-IP`.
    pub name: String,
    /// A `Host` address is expanded into `Inet` servers by `discovery` before a pool is built.
    pub addr: ServerAddr,
    pub weight: u32,
    pub backup: bool,
    /// Requests (edge) or connections (L4) at once; 0 = unlimited.
    pub max_connections: usize,
    /// After coming back up, the weight ramps from 1/20 to full over this (HAProxy
    /// `slowstart`); zero: at once.
    pub slow_start: Duration,
}
