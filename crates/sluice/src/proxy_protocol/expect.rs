//! Receiving PROXY headers: decides from the peer address whether a header is required,
//! reads it within a deadline into a bounded buffer and yields the real client address plus
//! any application bytes read past the header. It does not write anything to the peer.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use proxy_header::{DecodeOptions, Decoded, DEFAULT_MAX_V2_LEN};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::ConnId;
use crate::addr::{ClientAddr, LocalAddr, PeerAddr};
use crate::spec::{self, Untrusted};

/// Who may send a PROXY header, how long they get, and what to do with everyone else.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub trusted: Vec<IpNet>,
    pub timeout: Duration,
    pub untrusted: Untrusted,
    /// Cap on the v2 length field; the read buffer is `16 + max_v2_len` bytes.
    pub max_v2_len: usize,
}

impl Policy {
    /// The policy of a frontend's `proxy_protocol` spec.
    pub(crate) fn new(cfg: &spec::ProxyProtocol) -> Policy {
        Policy {
            trusted: cfg.trusted.clone(),
            timeout: cfg.timeout,
            untrusted: cfg.untrusted,
            max_v2_len: DEFAULT_MAX_V2_LEN,
        }
    }

    /// Whether `ip` falls in a trusted CIDR (IPv4-mapped IPv6 peers count as IPv4).
    pub(crate) fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|net| net.contains(&ip))
    }
}

/// A connection that may proceed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Accepted {
    /// The real client: the header's source, else the peer itself.
    pub client: ClientAddr,
    /// The header's destination, else the socket's local address.
    pub local: LocalAddr,
    /// Application bytes read after the header; they must be handed on untouched.
    pub leftover: Vec<u8>,
    /// True when a PROXY header was received (even LOCAL/UNKNOWN ones).
    pub header_received: bool,
    /// The connection id from the header's UNIQUE_ID TLV (v2), when it had a usable one.
    pub unique_id: Option<ConnId>,
    /// The v2 header's TLV area as received (validated; empty for v1 and without a header).
    pub tlvs: Vec<u8>,
}

/// A connection that must be closed, and why (for the connection log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejected {
    /// Short stable code: "untrusted", "timeout", "closed", "too_long", "io", or the
    /// decoder's own reason code ("v1_bad_port", ...).
    pub code: &'static str,
    /// Human-readable detail.
    pub reason: String,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.reason)
    }
}

impl std::error::Error for Rejected {}

fn rejected(code: &'static str, reason: impl Into<String>) -> Rejected {
    Rejected {
        code,
        reason: reason.into(),
    }
}

/// Applies `policy` to a fresh connection from `peer` that reached `local`.
///
/// A trusted peer must send a complete v1 or v2 header within `policy.timeout`; an
/// untrusted peer is rejected at once or, with `untrusted = "direct"`, accepted as the
/// client itself without reading anything. Never lets an untrusted peer set the client.
pub(crate) async fn expect_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    peer: PeerAddr,
    local: LocalAddr,
    policy: &Policy,
) -> Result<Accepted, Rejected> {
    if !policy.is_trusted(peer.0.ip()) {
        return match policy.untrusted {
            Untrusted::Direct => Ok(Accepted {
                client: ClientAddr::direct(peer),
                local,
                leftover: Vec::new(),
                header_received: false,
                unique_id: None,
                tlvs: Vec::new(),
            }),
            Untrusted::Reject => Err(rejected(
                "untrusted",
                format!("peer {} is not in proxy_protocol.trusted", peer.0.ip()),
            )),
        };
    }
    match tokio::time::timeout(policy.timeout, read_header(stream, peer, local, policy)).await {
        Ok(result) => result,
        Err(_) => Err(rejected(
            "timeout",
            format!("no complete PROXY header within {:?}", policy.timeout),
        )),
    }
}

async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    peer: PeerAddr,
    local: LocalAddr,
    policy: &Policy,
) -> Result<Accepted, Rejected> {
    let opts = DecodeOptions {
        max_v2_len: policy.max_v2_len,
    };
    let cap = 16 + policy.max_v2_len;
    let mut buf = vec![0u8; cap];
    let mut filled = 0usize;
    loop {
        let n = stream
            .read(&mut buf[filled..])
            .await
            .map_err(|e| rejected("io", format!("reading PROXY header: {e}")))?;
        if n == 0 {
            return Err(rejected(
                "closed",
                format!("connection closed after {filled} bytes, before a complete PROXY header"),
            ));
        }
        filled += n;
        match proxy_header::decode(&buf[..filled], &opts) {
            Ok(Decoded::Complete { header, consumed }) => {
                // A v1 TCP6 line or v2 INET6 block may carry IPv4-mapped addresses (HAProxy
                // promotes mixed families that way): the client is the plain IPv4 address.
                let client = match header.source() {
                    Some(src) => ClientAddr::from_trusted_header(canonical(src)),
                    None => ClientAddr::direct(peer),
                };
                let local = header
                    .destination()
                    .map(|d| LocalAddr(canonical(d)))
                    .unwrap_or(local);
                let leftover = buf[consumed..filled].to_vec();
                return Ok(Accepted {
                    client,
                    local,
                    leftover,
                    header_received: true,
                    unique_id: header.tlvs.unique_id().and_then(ConnId::from_unique_id),
                    tlvs: header.tlvs.as_bytes().to_vec(),
                });
            }
            Ok(Decoded::Incomplete { .. }) if filled < cap => continue,
            Ok(Decoded::Incomplete { .. }) => {
                return Err(rejected(
                    "too_long",
                    format!("no complete PROXY header in {cap} bytes"),
                ))
            }
            Err(invalid) => return Err(rejected(invalid.reason(), invalid.to_string())),
        }
    }
}

/// `::ffff:a.b.c.d` → `a.b.c.d`, other addresses unchanged.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tokio::io::AsyncWriteExt;

    fn policy(untrusted: Untrusted) -> Policy {
        Policy {
            trusted: vec!["127.0.0.1/32".parse().unwrap()],
            timeout: Duration::from_secs(5),
            untrusted,
            max_v2_len: DEFAULT_MAX_V2_LEN,
        }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn trusted_v1_header_sets_client_and_keeps_leftover() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        // Written in two pieces: the header split across reads must still decode.
        let task = tokio::spawn(async move {
            a.write_all(b"PROXY TCP4 127.0.0.2 127.0.0.1 5555 ")
                .await
                .unwrap();
            a.write_all(b"443\r\nGET / HTTP/1.0\r\n").await.unwrap();
            a
        });
        let got = expect_header(
            &mut b,
            PeerAddr(sa("127.0.0.1:40000")),
            LocalAddr(sa("127.0.0.1:8443")),
            &policy(Untrusted::Reject),
        )
        .await
        .unwrap();
        let _a = task.await.unwrap();
        assert_eq!(
            got.client,
            ClientAddr::from_trusted_header(sa("127.0.0.2:5555"))
        );
        assert_eq!(got.local, LocalAddr(sa("127.0.0.1:443")));
        assert!(got.header_received);
        // Anything after the header that arrived in the same reads is application data.
        let mut rest = got.leftover.clone();
        if rest.len() < 16 {
            let mut more = vec![0u8; 16 - rest.len()];
            b.read_exact(&mut more).await.unwrap();
            rest.extend_from_slice(&more);
        }
        assert_eq!(rest, b"GET / HTTP/1.0\r\n");
    }

    #[tokio::test]
    async fn ipv4_mapped_addresses_become_plain_ipv4() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(b"PROXY TCP6 ::ffff:127.0.0.2 ::ffff:127.0.0.1 5555 443\r\n")
            .await
            .unwrap();
        let got = expect_header(
            &mut b,
            PeerAddr(sa("127.0.0.1:40000")),
            LocalAddr(sa("127.0.0.1:8443")),
            &policy(Untrusted::Reject),
        )
        .await
        .unwrap();
        assert_eq!(
            got.client,
            ClientAddr::from_trusted_header(sa("127.0.0.2:5555"))
        );
        assert_eq!(got.local, LocalAddr(sa("127.0.0.1:443")));
    }

    #[tokio::test]
    async fn untrusted_peer_rejected_or_direct() {
        let (_a, mut b) = tokio::io::duplex(64);
        let peer = PeerAddr(sa("127.0.0.2:1234"));
        let local = LocalAddr(sa("127.0.0.1:80"));
        let err = expect_header(&mut b, peer, local, &policy(Untrusted::Reject))
            .await
            .unwrap_err();
        assert_eq!(err.code, "untrusted");
        let ok = expect_header(&mut b, peer, local, &policy(Untrusted::Direct))
            .await
            .unwrap();
        assert_eq!(
            ok.client,
            ClientAddr::from_trusted_header(sa("127.0.0.2:1234"))
        );
        assert!(!ok.header_received && ok.leftover.is_empty());
    }

    #[tokio::test]
    async fn garbage_is_rejected_with_decoder_reason() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let err = expect_header(
            &mut b,
            PeerAddr(sa("127.0.0.1:1")),
            LocalAddr(sa("127.0.0.1:2")),
            &policy(Untrusted::Reject),
        )
        .await
        .unwrap_err();
        assert_ne!(err.code, "timeout");
        assert!(!err.reason.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn silent_trusted_peer_times_out() {
        let (_a, mut b) = tokio::io::duplex(64);
        let err = expect_header(
            &mut b,
            PeerAddr(sa("127.0.0.1:1")),
            LocalAddr(sa("127.0.0.1:2")),
            &policy(Untrusted::Reject),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code, "timeout");
    }

    #[tokio::test]
    async fn early_close_is_rejected() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(b"PROXY TCP4 ").await.unwrap();
        drop(a);
        let err = expect_header(
            &mut b,
            PeerAddr(sa("127.0.0.1:1")),
            LocalAddr(sa("127.0.0.1:2")),
            &policy(Untrusted::Reject),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code, "closed");
    }
}
