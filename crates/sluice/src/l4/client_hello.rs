//! Reading the client's TLS ClientHello on a balancer without terminating TLS (nginx's
//! `ssl_preread`): bytes are read into a bounded buffer within a timeout and handed to rustls'
//! `Acceptor`, which parses them; we take the SNI and the offered ALPN protocols and never
//! answer the client. The bytes read are forwarded to the server first. No parsing here.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Most bytes read while waiting for a complete ClientHello (a few TLS records; a hello with
/// a post-quantum key share is ~1.8 KiB).
pub(crate) const MAX_HELLO: usize = 16 * 1024;

/// What a ClientHello says, for the PROXY v2 header and the connection log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Hello {
    /// The SNI host name (`$ssl_preread_server_name`).
    pub sni: Option<String>,
    /// The offered protocols, comma-separated (`$ssl_preread_alpn_protocols`).
    pub alpn: Option<String>,
    /// The offered protocols as sent (for routes).
    pub protocols: Vec<Vec<u8>>,
}

/// The outcome of looking at the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Inspect {
    Hello(Hello),
    /// A TLS record that is not complete yet.
    More,
    /// Not a TLS ClientHello: rustls' reason.
    NotTls(String),
}

/// Looks at `bytes` (everything the client sent so far) with a fresh rustls `Acceptor`.
/// Pure and panic-free on any input; used by the fuzz target too.
pub(crate) fn inspect(bytes: &[u8]) -> Inspect {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut rest = bytes;
    while !rest.is_empty() {
        match acceptor.read_tls(&mut rest) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Inspect::NotTls(e.to_string()),
        }
    }
    match acceptor.accept() {
        Ok(None) => Inspect::More,
        Ok(Some(accepted)) => {
            let ch = accepted.client_hello();
            let protocols: Vec<Vec<u8>> = ch
                .alpn()
                .map(|ps| ps.map(<[u8]>::to_vec).collect())
                .unwrap_or_default();
            let names: Vec<String> = protocols
                .iter()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            Inspect::Hello(Hello {
                sni: ch.server_name().map(str::to_string),
                alpn: Some(names.join(",")).filter(|a| !a.is_empty()),
                protocols,
            })
        }
        Err((e, _alert)) => Inspect::NotTls(e.to_string()),
    }
}

/// Why no ClientHello was taken (a `debug` log line; the connection is forwarded anyway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NoHello {
    NotTls(String),
    Timeout,
    TooLarge,
    Closed,
    Io(String),
}

impl std::fmt::Display for NoHello {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoHello::NotTls(why) => write!(f, "not a TLS ClientHello: {why}"),
            NoHello::Timeout => f.write_str("no complete ClientHello within the preread timeout"),
            NoHello::TooLarge => write!(f, "no complete ClientHello in {MAX_HELLO} bytes"),
            NoHello::Closed => f.write_str("client closed before a complete ClientHello"),
            NoHello::Io(e) => write!(f, "reading the ClientHello: {e}"),
        }
    }
}

/// Reads from `client` onto `buf` (which may already hold bytes that came after an incoming
/// PROXY header) until it holds a complete ClientHello, at most `MAX_HELLO` bytes and
/// `timeout`. Whatever is read stays in `buf`, to be forwarded before anything else.
pub(crate) async fn read_hello(
    client: &mut TcpStream,
    buf: &mut Vec<u8>,
    timeout: Duration,
) -> Result<Hello, NoHello> {
    let read = async {
        loop {
            if !buf.is_empty() {
                match inspect(buf) {
                    Inspect::Hello(h) => return Ok(h),
                    Inspect::NotTls(why) => return Err(NoHello::NotTls(why)),
                    Inspect::More => {}
                }
            }
            if buf.len() >= MAX_HELLO {
                return Err(NoHello::TooLarge);
            }
            let at = buf.len();
            buf.resize(MAX_HELLO, 0);
            let got = client.read(&mut buf[at..]).await;
            buf.truncate(at + *got.as_ref().unwrap_or(&0));
            match got {
                Ok(0) => return Err(NoHello::Closed),
                Ok(_) => {}
                Err(e) => return Err(NoHello::Io(e.to_string())),
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(NoHello::Timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello as rustls' client writes it, for `sni` offering `alpn`.
    fn client_hello(sni: &str, alpn: &[&[u8]]) -> Vec<u8> {
        use std::sync::Arc;
        let roots = rustls::RootCertStore::empty();
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn sni_and_alpn_come_from_a_real_hello_split_anywhere() {
        let hello = client_hello("app.example", &[b"h2", b"http/1.1"]);
        let want = Inspect::Hello(Hello {
            sni: Some("app.example".into()),
            alpn: Some("h2,http/1.1".into()),
            protocols: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        });
        assert_eq!(inspect(&hello), want);
        for cut in [1, 5, 6, hello.len() / 2, hello.len() - 1] {
            assert_eq!(inspect(&hello[..cut]), Inspect::More, "cut at {cut}");
        }
        let bare = client_hello("x.test", &[]);
        assert!(matches!(
            inspect(&bare),
            Inspect::Hello(Hello { alpn: None, .. })
        ));
    }

    #[test]
    fn plain_text_is_not_tls() {
        assert!(matches!(
            inspect(b"GET / HTTP/1.1\r\n\r\n"),
            Inspect::NotTls(_)
        ));
        assert!(matches!(inspect(b"SSH-2.0-x\r\n"), Inspect::NotTls(_)));
    }
}
