//! Frontend specs: bind addresses, mode, PROXY policy (CIDRs, timeout), TLS files, the access
//! log and the edge's client-side settings, all typed. Built by `config::convert`; read by
//! `runtime`, `l4`, `edge`, `proxy_protocol` and `tls`. No parsing here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

/// What a frontend speaks: forwarded TCP (L4) or HTTP (the edge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Tcp,
    Http,
}

/// How a tcp frontend moves bytes once a connection is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Forward {
    /// Copy small exchanges, splice(2) bulk ones (`l4::forward`).
    #[default]
    Auto,
    /// The kernel redirects bytes between the two sockets (BPF sockmap, `l4::sockmap`);
    /// `auto` where the kernel or privileges do not allow it.
    Sockmap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    #[default]
    Combined,
    Json,
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

/// One frontend.
#[derive(Debug, Clone, PartialEq)]
pub struct Frontend {
    pub name: String,
    /// Port 0 = any free port.
    pub bind: Vec<SocketAddr>,
    pub mode: Mode,
    /// The backend's name.
    pub backend: String,
    pub access_log: Option<super::LogTarget>,
    /// What an access line says (file, syslog and, in text mode, stderr).
    pub log_format: super::LineFormat,
    /// Access lines also go to the process log (stderr) at info.
    pub access_log_stderr: bool,
    /// Who may send a PROXY header; None: nobody does (the peer is the client).
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Edge only; None: plain HTTP.
    pub tls: Option<Tls>,
    /// Edge only: the client-side settings.
    pub edge: Edge,
    /// Tcp only: backends chosen by the ClientHello; None: always `backend`.
    pub routes: Option<super::Routes>,
    /// Tcp only: how bytes are moved (`forward`).
    pub forward: Forward,
}

/// Receiving PROXY headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyProtocol {
    /// Peers allowed to send a header.
    pub trusted: Vec<IpNet>,
    /// A trusted peer must complete its header within this.
    pub timeout: Duration,
    pub untrusted: Untrusted,
}

/// A TLS edge's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub cert: String,
    pub key: String,
    /// More certificates, chosen by SNI.
    pub certs: Vec<CertPair>,
    /// nginx-format ticket key files; empty (and no `ticket_secret`): a rotating random key.
    pub ticket_keys: Vec<String>,
    /// A secret shared by a fleet's edges: ticket keys derived from it per period.
    pub ticket_secret: Option<String>,
    /// The period of `ticket_secret`'s keys (wall clock).
    pub ticket_rotation: Duration,
    /// Stateful sessions kept; 0: none.
    pub session_cache: usize,
    /// Client certificates (mTLS); None: none asked for (`client_verify = "off"`).
    pub client: Option<ClientAuth>,
}

/// Whether the edge asks for a client certificate (nginx `ssl_verify_client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClientVerify {
    /// No certificate asked for.
    #[default]
    Off,
    /// Asked for; a client without one is served (`SSL_CLIENT_VERIFY=NONE`).
    Optional,
    /// A client without a valid certificate is refused in the handshake.
    Required,
}

/// Client certificate verification of a TLS edge (`[frontend.tls] client_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuth {
    /// PEM file of the CA certificates client certificates must chain to.
    pub ca: String,
    /// `Optional` or `Required` (never `Off`: that is no `ClientAuth`).
    pub verify: ClientVerify,
    /// Most intermediate CA certificates between a client certificate and a CA of `ca`
    /// (nginx `ssl_verify_depth`, OpenSSL's count).
    pub depth: u8,
    /// PEM file of CRLs (nginx `ssl_crl`): every certificate of the chain must be covered.
    pub crl: Option<String>,
    /// The app also gets the certificate itself (`SSL_CLIENT_CERT`, `X-SSL-Client-Cert`).
    pub pass_cert: bool,
}

/// One certificate and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPair {
    pub cert: String,
    pub key: String,
}

/// The edge's client-side settings of one frontend (ignored by tcp frontends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// Largest request body (413 beyond).
    pub max_body: usize,
    pub request_buffering: bool,
    pub response_buffering: bool,
    pub body_buffer_size: usize,
    pub response_buffer_size: usize,
    /// Largest response temp file; 0 = never spill.
    pub max_temp_file_size: u64,
    /// None: the system temp directory.
    pub temp_dir: Option<PathBuf>,
    pub underscores_in_headers: bool,
    /// HTTP apps: these PROXY v2 TLVs as request headers (lowercase names).
    pub proxy_tlv_headers: Vec<(super::TlvName, String)>,
    /// Forwarding-header policy (`[frontend.forwarded]`).
    pub forwarded: Forwarded,
    /// `Upgrade` protocols passed to the app (lowercase; `websocket` by default).
    pub upgrade_protocols: Vec<String>,
    pub timeouts: ClientTimeouts,
    pub limits: ClientLimits,
}

/// Client-side timeouts of one edge frontend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTimeouts {
    /// TLS handshake.
    pub handshake: Duration,
    /// Request head (nginx `client_header_timeout`).
    pub header: Duration,
    /// Between two successful reads of the request body (nginx `client_body_timeout`).
    pub body: Duration,
    /// Between two successful writes to the client (nginx `send_timeout`).
    pub send: Duration,
    /// Idle keep-alive connection (nginx `keepalive_timeout`).
    pub keepalive: Duration,
    /// Idle upgraded connection (WebSocket), no byte either way.
    pub tunnel: Duration,
}

/// Client-side limits of one edge frontend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// Request head bytes (HTTP/1 read buffer, HTTP/2 header list).
    pub header_bytes: usize,
    /// Header fields in an HTTP/1 request.
    pub headers: usize,
    /// HTTP/2 concurrent streams per connection.
    pub h2_streams: u32,
    /// Requests on one connection before it is closed.
    pub keepalive_requests: u64,
}

/// Where the edge may take the client address from, besides a PROXY header
/// (nginx `real_ip_header`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum RealIpHeader {
    /// Only the connection (or its trusted PROXY header) says who the client is.
    #[default]
    #[serde(rename = "none")]
    None,
    #[serde(rename = "x-forwarded-for", alias = "X-Forwarded-For")]
    XForwardedFor,
    #[serde(rename = "forwarded", alias = "Forwarded")]
    Forwarded,
}

/// A forwarding field the edge can write for the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum ForwardField {
    #[serde(rename = "x-forwarded-for", alias = "X-Forwarded-For")]
    XForwardedFor,
    #[serde(rename = "x-real-ip", alias = "X-Real-IP")]
    XRealIp,
    #[serde(rename = "x-forwarded-proto", alias = "X-Forwarded-Proto")]
    XForwardedProto,
    #[serde(rename = "x-forwarded-host", alias = "X-Forwarded-Host")]
    XForwardedHost,
    #[serde(rename = "forwarded", alias = "Forwarded")]
    Forwarded,
}

/// How the edge names the client in the `for=` of the `Forwarded` element it adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ForwardedFor {
    /// The address (`for=192.0.2.7`, `for="[2001:db8::7]"`).
    #[default]
    Ip,
    /// An RFC 7239 obfuscated identifier, the same for one address within one process
    /// (`for=_3f09c2a17b44e1d0`).
    Obfuscated,
}

/// The forwarding-header policy of one edge frontend (`[frontend.forwarded]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// Hops whose forwarding headers are believed (nginx `set_real_ip_from`); the address
    /// checked is the connection's client (after a trusted PROXY header).
    pub trusted: Vec<IpNet>,
    /// Take the client address from this header of a trusted hop (nginx `real_ip_header`).
    pub real_ip_header: RealIpHeader,
    /// Skip trusted addresses from the right of the list (nginx `real_ip_recursive`).
    pub recursive: bool,
    /// The fields the app gets, in the edge's values; every other forwarding field is removed.
    pub emit: Vec<ForwardField>,
    pub forwarded_for: ForwardedFor,
}

/// `emit` when unset: what earlier versions sent HTTP apps.
pub const DEFAULT_EMIT: [ForwardField; 3] = [
    ForwardField::XForwardedFor,
    ForwardField::XRealIp,
    ForwardField::XForwardedProto,
];

impl Default for Forwarded {
    fn default() -> Self {
        Forwarded {
            trusted: Vec::new(),
            real_ip_header: RealIpHeader::None,
            recursive: false,
            emit: DEFAULT_EMIT.to_vec(),
            forwarded_for: ForwardedFor::Ip,
        }
    }
}
