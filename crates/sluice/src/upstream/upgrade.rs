//! Upgraded requests to an app (WebSocket, issue #16): the request head goes out on a fresh
//! connection with its `Upgrade` (a uwsgi packet with HTTP_UPGRADE/HTTP_CONNECTION, or an
//! HTTP/1.1 head), the app's answer head is read under the read timeout and a size cap. On 101
//! the socket comes back with the bytes read past the head; any other answer streams as an
//! ordinary response. Relaying the tunnel is the edge's (`edge/tunnel.rs`); no pooling here.

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::header::{self, HeaderMap};
use hyper::http::request::Parts;
use hyper::{Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::body::IdleTimeout;
use super::connect::connect_send;
use super::headers::strip_hop_by_hop;
use super::uwsgi::stream::UwsgiBody;
use super::uwsgi::{framing, take_final_head, Framing};
use super::{Body, RequestContext, ServerAddr, UpstreamError};

/// The app's side of a switched connection (a TCP or unix socket).
pub trait TunnelIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> TunnelIo for T {}

/// What an upgrade attempt gives back.
pub enum Upgraded {
    /// The app switched protocols (101): its head's fields, the socket and the bytes it sent
    /// after the head (the start of the tunnel).
    Switched {
        headers: HeaderMap,
        io: Box<dyn TunnelIo>,
        leftover: Bytes,
    },
    /// The app answered otherwise (403, 426, ...): an ordinary response, body streaming.
    Answered(Response<Body>),
}

/// Timeouts and caps of one upgrade attempt.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub connect: std::time::Duration,
    /// Writing the head and waiting for each read of the answer head (and its body).
    pub read: std::time::Duration,
    /// Largest answer head.
    pub max_head: usize,
}

/// The uwsgi packet of `parts` plus `HTTP_UPGRADE = proto` and `HTTP_CONNECTION = Upgrade`
/// (the packet builder drops hop-by-hop fields; uWSGI and WSGI apps read these two).
pub(crate) fn uwsgi_packet(
    parts: &Parts,
    ctx: &RequestContext,
    proto: &str,
    document_root: &str,
    underscores: bool,
) -> Result<Vec<u8>, UpstreamError> {
    let mut packet = super::uwsgi::packet::build(parts, ctx, 0, document_root, underscores)?;
    for (k, v) in [
        (&b"HTTP_UPGRADE"[..], proto.as_bytes()),
        (b"HTTP_CONNECTION", b"Upgrade"),
    ] {
        let (Ok(kl), Ok(vl)) = (u16::try_from(k.len()), u16::try_from(v.len())) else {
            return Err(UpstreamError::HeadersTooLarge);
        };
        packet.extend_from_slice(&kl.to_le_bytes());
        packet.extend_from_slice(k);
        packet.extend_from_slice(&vl.to_le_bytes());
        packet.extend_from_slice(v);
    }
    let size = u16::try_from(packet.len() - 4).map_err(|_| UpstreamError::HeadersTooLarge)?;
    packet[1..3].copy_from_slice(&size.to_le_bytes());
    Ok(packet)
}

/// An HTTP/1.1 request head for `parts` (its fields already prepared for the app) asking to
/// upgrade to `proto`.
pub(crate) fn http_head(parts: &Parts, proto: &str) -> Vec<u8> {
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(pq.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Connection: Upgrade\r\nUpgrade: ");
    out.extend_from_slice(proto.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out
}

/// Sends `head` (a uwsgi packet or an HTTP/1.1 head) to `addr` on a new connection and reads
/// the answer head.
pub(crate) async fn exchange(
    addr: &ServerAddr,
    head: &[u8],
    limits: Limits,
) -> Result<Upgraded, UpstreamError> {
    let (mut conn, sent) = connect_send(addr, limits.connect, head).await?;
    match tokio::time::timeout(limits.read, conn.write_all(&head[sent..])).await {
        Ok(r) => r.map_err(UpstreamError::Io)?,
        Err(_) => return Err(UpstreamError::Timeout),
    }
    let mut buf = BytesMut::with_capacity(4096);
    let mut interim = 0;
    let head = loop {
        if let Some(h) = take_final_head(&mut buf, limits.max_head, &mut interim)
            .map_err(UpstreamError::BadResponse)?
        {
            break h;
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        let n = tokio::time::timeout(limits.read, conn.read_buf(&mut buf))
            .await
            .map_err(|_| UpstreamError::Timeout)?
            .map_err(UpstreamError::Io)?;
        if n == 0 {
            return Err(UpstreamError::BadResponse(
                "upstream closed before a complete response head".into(),
            ));
        }
    };
    if head.status == StatusCode::SWITCHING_PROTOCOLS {
        return Ok(Upgraded::Switched {
            headers: head.headers,
            io: Box::new(conn),
            leftover: buf.freeze(),
        });
    }
    if head.status.as_u16() < 200 {
        return Err(UpstreamError::BadResponse(format!(
            "unexpected status {}",
            head.status
        )));
    }
    let framing = framing(&head, false).map_err(UpstreamError::BadResponse)?;
    let mut headers = head.headers;
    strip_hop_by_hop(&mut headers);
    if !matches!(framing, Framing::Length(_)) {
        headers.remove(header::CONTENT_LENGTH);
    }
    let body = UwsgiBody::new(conn, buf, framing, None);
    let body = IdleTimeout::new(body, limits.read, None).boxed();
    let mut resp = Response::new(body);
    *resp.status_mut() = head.status;
    *resp.headers_mut() = headers;
    Ok(Upgraded::Answered(resp))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str) -> Parts {
        let (p, ()) = hyper::Request::get(uri)
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .body(())
            .unwrap()
            .into_parts();
        p
    }

    #[test]
    fn http_head_asks_for_the_upgrade() {
        let h = String::from_utf8(http_head(&parts("http://a.test/ws?x=1"), "websocket")).unwrap();
        assert!(h.starts_with("GET /ws?x=1 HTTP/1.1\r\n"), "{h}");
        assert!(
            h.contains("sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
            "{h}"
        );
        assert!(
            h.ends_with("Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
            "{h}"
        );
    }

    #[tokio::test]
    async fn answers_other_than_101_stream_as_responses() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = ServerAddr::Inet(l.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut b = [0u8; 1024];
            let _ = s.read(&mut b).await;
            let _ = s
                .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno")
                .await;
        });
        let limits = Limits {
            connect: std::time::Duration::from_secs(5),
            read: std::time::Duration::from_secs(5),
            max_head: 4096,
        };
        let head = http_head(&parts("/ws"), "websocket");
        let Upgraded::Answered(resp) = exchange(&addr, &head, limits).await.unwrap() else {
            panic!("a 403 is an answer")
        };
        assert_eq!(resp.status(), 403);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"no");
    }
}
