//! Connecting to an app server for the upstream clients: `net::connect_send` (tcp or unix,
//! `Host` names resolved at connect time) with TCP_NODELAY, its errors mapped to
//! [`UpstreamError`], and hyper's `Connection` for the pooled stream. No pooling, no retries
//! across servers (the balancer picks another server; the HTTP pool reuses streams).

use std::time::Duration;

use crate::net::{self, Stream};

use super::{ServerAddr, UpstreamError};

/// Connects to `addr` within `timeout` (the whole resolution + all attempts).
pub(crate) async fn connect(addr: &ServerAddr, timeout: Duration) -> Result<Stream, UpstreamError> {
    connect_send(addr, timeout, &[]).await.map(|(c, _)| c)
}

/// Like [`connect`], and on a unix socket also sends as much of `first` as the socket takes
/// at once (see `net::connect_send`). Returns how many bytes of `first` went out; the caller
/// writes the rest.
pub(crate) async fn connect_send(
    addr: &ServerAddr,
    timeout: Duration,
    first: &[u8],
) -> Result<(Stream, usize), UpstreamError> {
    match net::connect_send(addr, None, timeout, first).await {
        Ok((s, sent)) => {
            s.set_nodelay(true).map_err(UpstreamError::Connect)?;
            Ok((s, sent))
        }
        Err(e) if net::is_connect_timeout(&e) => Err(UpstreamError::Timeout),
        Err(e) => Err(UpstreamError::Connect(e)),
    }
}

impl hyper_util::client::legacy::connect::Connection for Stream {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        hyper_util::client::legacy::connect::Connected::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_map_to_connect_and_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.sock");
        let addr = ServerAddr::Unix(path.clone());
        // Nobody listening: a connect error (502 upstream), not a timeout.
        let err = connect(&addr, Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(err, UpstreamError::Connect(_)), "{err:?}");
        // A listener whose one-connection queue is full drops the next SYN: 504 upstream.
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
        sock.bind(&any.into()).unwrap();
        sock.listen(0).unwrap();
        let addr = ServerAddr::Inet(sock.local_addr().unwrap().as_socket().unwrap());
        let _queued = connect(&addr, Duration::from_secs(5)).await.unwrap();
        let err = connect(&addr, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(err, UpstreamError::Timeout), "{err:?}");
    }

    #[tokio::test]
    async fn tcp_streams_get_nodelay() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = ServerAddr::Inet(l.local_addr().unwrap());
        let Stream::Tcp(s) = connect(&addr, Duration::from_secs(5)).await.unwrap() else {
            panic!("an inet address gives a TCP stream")
        };
        assert!(s.nodelay().unwrap());
    }
}
