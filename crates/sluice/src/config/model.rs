//! The configuration as users write it (TOML, contract keys of issues #3 and #4).
//! Plain serde data with defaults; loading, spans and cross-checks live in `config::load`, the
//! conversion into the runtime's typed `spec` in `config::convert`. The enums are `spec`'s.

use std::time::Duration;

use serde::Deserialize;

use super::duration::Dur;
use crate::spec;
pub use crate::spec::{
    AccessLogFormat, Balance, ClientVerify, Forward, HealthKind, Mode, Protocol, SendProxy,
    Untrusted, DEFAULT_MAX_QUEUE, DEFAULT_MAX_TEMP_FILES, FASTCGI_MAX_CONNECTIONS,
    HTTP_MAX_CONNECTIONS, UWSGI_MAX_CONNECTIONS,
};

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
    /// The agent endpoint balancers' agent checks ask (HAProxy agent-check); off when absent.
    #[serde(default)]
    pub agent: Option<AgentEndpoint>,
}

/// `[agent]`: a TCP endpoint answering HAProxy's agent-check protocol for this process's
/// edges (one line per connection: `drain`, `down` or `up ready NN%`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentEndpoint {
    /// "127.0.0.1:9999".
    pub bind: String,
    /// Requests in flight that mean 100 % busy; unset: the sum of the edges' app servers'
    /// `max_connections`.
    #[serde(default)]
    pub capacity: Option<usize>,
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
    /// Host names the admin endpoint answers to besides IP literals and `localhost` (a
    /// request with another `Host` is refused: DNS rebinding).
    #[serde(default)]
    pub server_names: Vec<String>,
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
    /// Edge: temp files (buffered request and response bodies) open at once in the whole
    /// process; a request body that must spill waits for a slot, a response streams.
    pub max_temp_files: usize,
}

impl Default for Global {
    fn default() -> Self {
        Global {
            max_connections: 20_000,
            grace: Dur(Duration::from_secs(30)),
            pid_file: None,
            resolvers: Vec::new(),
            threads: None,
            max_temp_files: DEFAULT_MAX_TEMP_FILES,
        }
    }
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
    /// Tcp only: `"auto"` (copy, splice bulk) or `"sockmap"` (the kernel forwards).
    #[serde(default)]
    pub forward: Forward,
    #[serde(default)]
    pub access_log: Option<String>,
    #[serde(default)]
    pub access_log_format: AccessLogFormat,
    /// What an access line says: `combined`/`conn`/`tcplog`/`json` or a `$variable` template
    /// (checked by `spec::LineFormat::parse`); overrides `access_log_format`.
    #[serde(default)]
    pub log_format: Option<String>,
    /// Access lines also go to the process log (stderr, target `sluice::access`/`conn`).
    #[serde(default = "yes")]
    pub access_log_stderr: bool,
    #[serde(default)]
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Edge only (mode = "http"): omit for plain HTTP.
    #[serde(default)]
    pub tls: Option<Tls>,
    /// Edge only: largest request body (nginx `client_max_body_size`): a declared
    /// Content-Length above it gets 413 before any body byte is read, a body of unknown
    /// length is cut with 413 when it grows past it.
    #[serde(default = "default_max_body")]
    pub max_body: usize,
    /// Edge only: read the whole request body before contacting the app server
    /// (nginx `uwsgi_request_buffering` / `proxy_request_buffering`, on by default).
    #[serde(default = "yes")]
    pub request_buffering: bool,
    /// Edge only: read the app's response as fast as it comes, into memory then a temp file,
    /// so the app server is released while a slow client reads (nginx `uwsgi_buffering`).
    #[serde(default = "yes")]
    pub response_buffering: bool,
    /// Edge only: request body bytes kept in memory; beyond, an unlinked temp file
    /// (nginx `client_body_buffer_size`, 16k on 64-bit).
    #[serde(default = "default_body_buffer_size")]
    pub body_buffer_size: usize,
    /// Edge only: response bytes kept in memory per request before spilling to a temp file
    /// (nginx `uwsgi_buffer_size` + `uwsgi_buffers`: 36 KiB on x86_64; 64 KiB here).
    #[serde(default = "default_response_buffer_size")]
    pub response_buffer_size: usize,
    /// Edge only: largest response temp file; beyond it the response streams at the
    /// client's pace. 0 = never spill (nginx `uwsgi_max_temp_file_size 1024m`).
    #[serde(default = "default_max_temp_file_size")]
    pub max_temp_file_size: u64,
    /// Edge only: where request/response temp files go (created unlinked). Default: the
    /// system temp directory ($TMPDIR or /tmp).
    #[serde(default)]
    pub temp_dir: Option<String>,
    /// Edge only: pass header names with `_` to the app (nginx `underscores_in_headers`,
    /// off: they are dropped, since `X-Forwarded_For` and `X-Forwarded-For` collide in
    /// CGI-style variables).
    #[serde(default)]
    pub underscores_in_headers: bool,
    /// Edge only, HTTP apps: PROXY v2 TLVs sent as request headers, `{ TLV = "Header" }`
    /// (TLV names as nginx's `$proxy_protocol_tlv_NAME`); client-sent copies are removed.
    #[serde(default)]
    pub proxy_protocol_tlv_headers: std::collections::BTreeMap<String, String>,
    /// Edge only: forwarding-header policy (`[frontend.forwarded]`).
    #[serde(default)]
    pub forwarded: Option<Forwarded>,
    /// Edge only: the `Upgrade` protocols passed to the app (HTTP/1.1 `Upgrade`, HTTP/2
    /// extended CONNECT `:protocol`); any other `Upgrade` is stripped. `h2c` is refused.
    #[serde(default = "default_upgrade_protocols")]
    pub upgrade_protocols: Vec<String>,
    /// Edge only: client-side timeouts.
    #[serde(default)]
    pub timeouts: FrontendTimeouts,
    /// Edge only: client-side limits.
    #[serde(default)]
    pub limits: FrontendLimits,
    /// Tcp only: backends chosen by the client's TLS ClientHello, first match wins;
    /// `backend` is the default (`config/routes.rs` checks them).
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Tcp only, with `routes`: longest wait for the ClientHello (nginx `preread_timeout`).
    #[serde(default)]
    pub preread_timeout: Option<Dur>,
    /// Tcp only, with `routes`: what a client sending no ClientHello gets.
    #[serde(default)]
    pub no_hello: Option<crate::spec::NoHello>,
}

/// One entry of a tcp frontend's `routes`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Host names (`a.example`) or wildcards (`*.b.example`), any of which matches the SNI.
    #[serde(default)]
    pub sni: Vec<String>,
    /// ALPN protocol names (`h2`, `http/1.1`, `acme-tls/1`), any of which is offered.
    #[serde(default)]
    pub alpn: Vec<String>,
    pub backend: String,
}

fn default_max_body() -> usize {
    1 << 20
}

fn default_upgrade_protocols() -> Vec<String> {
    vec!["websocket".into()]
}

fn default_body_buffer_size() -> usize {
    16 * 1024
}

fn default_response_buffer_size() -> usize {
    64 * 1024
}

fn default_max_temp_file_size() -> u64 {
    1 << 30
}

/// `[frontend.timeouts]` (edge): nginx's defaults where nginx has the directive.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FrontendTimeouts {
    /// TLS handshake (nginx `ssl_handshake_timeout` is 60s; 10s here: a handshake is a few
    /// round trips, and a pending one holds a descriptor).
    pub handshake: Dur,
    /// A request head must arrive within this (nginx `client_header_timeout`, 60s).
    pub header: Dur,
    /// Between two successful reads of the request body (nginx `client_body_timeout`, 60s).
    pub body: Dur,
    /// Between two successful writes to the client (nginx `send_timeout`, 60s).
    pub send: Dur,
    /// An idle keep-alive connection is closed after this (nginx `keepalive_timeout`, 75s).
    pub keepalive: Dur,
    /// An upgraded connection (WebSocket) with no byte in either direction is closed after
    /// this (nginx: `proxy_read_timeout`/`uwsgi_read_timeout` on the tunnel, 60s).
    pub tunnel: Dur,
}

impl Default for FrontendTimeouts {
    fn default() -> Self {
        FrontendTimeouts {
            handshake: Dur(Duration::from_secs(10)),
            header: Dur(Duration::from_secs(60)),
            body: Dur(Duration::from_secs(60)),
            send: Dur(Duration::from_secs(60)),
            keepalive: Dur(Duration::from_secs(75)),
            tunnel: Dur(Duration::from_secs(60)),
        }
    }
}

/// `[frontend.limits]` (edge).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FrontendLimits {
    /// Largest request head in bytes: HTTP/1 431 beyond, HTTP/2 header list size
    /// (nginx `large_client_header_buffers 4 8k`: 32k).
    pub header_bytes: usize,
    /// Most header fields in an HTTP/1 request (431 beyond).
    pub headers: usize,
    /// HTTP/2 concurrent streams per connection (nginx `http2_max_concurrent_streams`).
    pub h2_streams: u32,
    /// Requests served on one connection before it is closed (nginx `keepalive_requests`).
    pub keepalive_requests: u64,
}

impl Default for FrontendLimits {
    fn default() -> Self {
        FrontendLimits {
            header_bytes: 32 * 1024,
            headers: 100,
            h2_streams: 128,
            keepalive_requests: 1000,
        }
    }
}

/// `[frontend.forwarded]` (edge): which hops' forwarding headers are believed, where the
/// client address may come from, which fields the app gets (nginx's realip module and
/// `proxy_set_header X-Forwarded-*`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forwarded {
    /// CIDRs whose forwarding headers are believed (nginx `set_real_ip_from`).
    #[serde(default)]
    pub trusted: Vec<String>,
    /// nginx `real_ip_header`: `none`, `x-forwarded-for` or `forwarded`.
    #[serde(default)]
    pub real_ip_header: spec::RealIpHeader,
    /// nginx `real_ip_recursive`.
    #[serde(default)]
    pub recursive: bool,
    /// Fields the app gets (all others removed).
    #[serde(default = "default_emit")]
    pub emit: Vec<spec::ForwardField>,
    /// `ip` or `obfuscated`: the `for=` of the `Forwarded` element the edge adds.
    #[serde(default)]
    pub forwarded_for: spec::ForwardedFor,
}

fn default_emit() -> Vec<spec::ForwardField> {
    spec::DEFAULT_EMIT.to_vec()
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

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub cert: String,
    pub key: String,
    #[serde(default)]
    pub certs: Vec<CertPair>,
    #[serde(default)]
    pub ticket_keys: Vec<String>,
    /// A file of at least 32 random bytes shared by every edge: ticket keys derived from it.
    #[serde(default)]
    pub ticket_secret: Option<String>,
    /// How often `ticket_secret`'s key changes (wall clock); default 12 h.
    #[serde(default)]
    pub ticket_rotation: Option<Dur>,
    #[serde(default = "default_session_cache")]
    pub session_cache: usize,
    /// CA certificates for client certificates (nginx `ssl_client_certificate`).
    #[serde(default)]
    pub client_ca: Option<String>,
    /// nginx `ssl_verify_client`; unset: off (refused when `client_ca` is set, see validate).
    #[serde(default)]
    pub client_verify: Option<ClientVerify>,
    /// nginx `ssl_verify_depth` (intermediate CAs allowed), 0..=6.
    #[serde(default = "default_verify_depth")]
    pub client_verify_depth: u8,
    /// CRLs for client certificate chains (nginx `ssl_crl`).
    #[serde(default)]
    pub client_crl: Option<String>,
    /// Pass the client certificate's PEM to the app.
    #[serde(default)]
    pub pass_client_cert: bool,
}

fn default_verify_depth() -> u8 {
    1
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

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    pub name: String,
    #[serde(default)]
    pub balance: Balance,
    /// `balance = "hash"`: what is hashed (`source`, `sni`).
    #[serde(default)]
    pub hash_key: Option<crate::spec::HashKey>,
    #[serde(default)]
    pub send_proxy: SendProxy,
    /// Extra v2 TLVs: a UNIQUE_ID per connection when true.
    #[serde(default)]
    pub proxy_v2_unique_id: bool,
    /// Add a CRC32C TLV to v2 headers.
    #[serde(default = "yes")]
    pub proxy_v2_crc32c: bool,
    /// v2: an AUTHORITY TLV with the SNI of the client's TLS ClientHello (read, not answered).
    #[serde(default)]
    pub proxy_v2_authority: bool,
    /// v2: an ALPN TLV with the protocols the client's TLS ClientHello offers.
    #[serde(default)]
    pub proxy_v2_alpn: bool,
    /// v2: copy the TLVs of the PROXY v2 header received from a trusted peer.
    #[serde(default)]
    pub proxy_v2_pass_tlvs: bool,
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
    /// `protocol = "grpc"` only: TLS to the app servers (`config/upstream_tls.rs`).
    #[serde(default)]
    pub tls: Option<crate::spec::UpstreamTls>,
    /// `protocol = "fastcgi"`: DOCUMENT_ROOT and SCRIPT_FILENAME's first part (nginx `root`).
    #[serde(default)]
    pub root: Option<String>,
    /// `protocol = "fastcgi"`: appended to a path ending in `/` (nginx `fastcgi_index`).
    #[serde(default)]
    pub index: Option<String>,
    /// `protocol = "fastcgi"`: idle connections kept per server (0: none, as nginx).
    #[serde(default)]
    pub keepalive: Option<usize>,
    /// How often host-name servers are re-resolved (issue #7, servers from DNS).
    #[serde(default = "default_resolve_interval")]
    pub resolve_interval: Dur,
    /// Most requests (edge) or connections (L4) waiting for a free server slot when every
    /// server is at `max_connections` (HAProxy `maxqueue`); beyond it 503 (edge) or a close.
    #[serde(default = "default_max_queue")]
    pub max_queue: usize,
    pub servers: Vec<Server>,
}

fn default_max_queue() -> usize {
    DEFAULT_MAX_QUEUE
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
    /// L4 (tcp) backends: a forwarded connection with no bytes either way for this long is
    /// closed (HAProxy `timeout client`/`timeout server`). Edge backends use `read`/`send`.
    pub idle: Dur,
    /// Edge backends: longest wait for the app's response head and between two reads of
    /// its body (nginx `uwsgi_read_timeout` / `proxy_read_timeout`, 60s).
    pub read: Dur,
    /// Edge backends: longest wait between two successful writes of the request to the app
    /// (nginx `uwsgi_send_timeout` / `proxy_send_timeout`, 60s).
    pub send: Dur,
    /// How long a request (or an L4 connection) may wait in the backend's queue for a free
    /// server slot when every server is at `max_connections` (HAProxy `timeout queue`,
    /// nginx's upstream `queue ... timeout`); 503 when it expires. Default: `connect`,
    /// which is how long a queued request waited before this key existed.
    pub queue: Option<Dur>,
    /// L4 with `proxy_v2_authority`/`proxy_v2_alpn`: longest wait for the client's TLS
    /// ClientHello before forwarding without those TLVs (nginx `preread_timeout`, 30s).
    pub preread: Dur,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Dur(Duration::from_secs(5)),
            idle: Dur(Duration::from_secs(300)),
            read: Dur(Duration::from_secs(60)),
            send: Dur(Duration::from_secs(60)),
            queue: None,
            preread: Dur(Duration::from_secs(30)),
        }
    }
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
    /// HAProxy's agent-check: `{ port = 9999, interval = "2s" }`.
    pub agent: Option<Agent>,
}

/// `health.agent`: HAProxy's `agent-check` with `agent-port`, `agent-addr`, `agent-inter`,
/// `agent-send`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    /// An IP address; unset: the server's own address.
    #[serde(default)]
    pub addr: Option<String>,
    pub port: u16,
    #[serde(default = "default_agent_interval")]
    pub interval: Dur,
    /// Connect and read the reply within this; unset: the health table's `timeout`.
    #[serde(default)]
    pub timeout: Option<Dur>,
    /// Sent once connected (TOML escapes: "backend-a\n").
    #[serde(default)]
    pub send: String,
}

fn default_agent_interval() -> Dur {
    Dur(Duration::from_secs(2))
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
            agent: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Defaults to "srvN" (1-based position) when omitted.
    #[serde(default)]
    pub name: Option<String>,
    /// "ip:port", "host:port" (resolved at start) or "unix:/path". Empty when `srv` is set
    /// (exactly one of the two; `validate` checks).
    #[serde(default)]
    pub addr: String,
    /// A DNS SRV name (`_app._tcp.example.test`): one server per record (`discovery`).
    #[serde(default)]
    pub srv: Option<String>,
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default)]
    pub backup: bool,
    /// Requests (edge) or connections (L4) to this server at once; 0 = unlimited (L4 only).
    /// Unset: unlimited on L4 backends; on http-mode backends [`UWSGI_MAX_CONNECTIONS`] or
    /// [`HTTP_MAX_CONNECTIONS`] (`config::load` fills it in; see `config::edge`).
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// After coming back up (not at start), the weight ramps linearly to full over this
    /// (HAProxy `slowstart`).
    #[serde(default)]
    pub slow_start: Option<Dur>,
}

impl Server {
    /// The configured limit, 0 (unlimited) when unset. After `config::load` it is always set.
    pub fn cap(&self) -> usize {
        self.max_connections.unwrap_or(0)
    }
}

fn default_weight() -> u32 {
    1
}
