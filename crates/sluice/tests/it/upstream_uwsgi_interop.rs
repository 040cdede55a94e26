//! Interop: sluice's uwsgi client against the real uWSGI (python3 plugin) running the seed's
//! Flask app (examples/seed/app.py) on a unix socket in a temp dir. Proves the app sees the
//! real client from the context, bodies of unknown length arrive, and big bodies stream.
//! Skips loudly without uwsgi/plugin/Flask unless SLUICE_REQUIRE_INTEROP=1.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper::{Request, StatusCode};
use sluice::addr::{ClientAddr, LocalAddr, PeerAddr};
use sluice::upstream::{Forwarding, RequestContext, Scheme, ServerAddr, UwsgiClient, UwsgiOpts};

use crate::support::{start_seed_uwsgi, tool, wait_unix};

fn ctx() -> RequestContext {
    RequestContext {
        client: ClientAddr::direct(PeerAddr("127.0.0.2:40000".parse().unwrap())),
        forwarding: Forwarding::direct(
            ClientAddr::direct(PeerAddr("127.0.0.2:40000".parse().unwrap())),
            Scheme::Https,
        ),
        local: LocalAddr("127.0.0.1:8443".parse().unwrap()),
        scheme: Scheme::Https,
        server_name: "app.test".into(),
        server_port: 8443,
        tls_version: None,
        tls_resumed: false,
        request_id: None,
        client_cert: None,
        proxy_tlvs: Default::default(),
    }
}

/// A body of unknown length (like a chunked HTTP/1.1 or an HTTP/2 upload).
struct Unsized(VecDeque<Bytes>);

impl HttpBody for Unsized {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|c| Ok(Frame::data(c))))
    }
    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[tokio::test]
async fn real_uwsgi_sees_the_context_client_and_streams() {
    let dir = tempfile::tempdir().unwrap();
    let Some(uwsgi) = tool("uwsgi", &["/usr/bin/uwsgi", "uwsgi"]) else {
        return;
    };
    let Some((mut peer, sock)) = start_seed_uwsgi(&uwsgi, dir.path()) else {
        return;
    };
    wait_unix(&sock, &mut peer, dir.path()).await;
    let addr = ServerAddr::Unix(sock);
    let client = UwsgiClient::new(UwsgiOpts::default());

    let req = Request::get("/?a=1")
        .header("host", "app.test")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = client.send(&addr, req, &ctx()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&text);
    for want in [
        "client=127.0.0.2\n",
        "remote_port=40000\n",
        "scheme=https\n",
        "https=on\n",
        "host=app.test\n",
        "server_name=app.test\n",
        "server_port=8443\n",
        "server_addr=127.0.0.1\n",
        "path=/\n",
        "query=a=1\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }

    let chunks: VecDeque<Bytes> = (0..10).map(|_| Bytes::from(vec![b'q'; 1000])).collect();
    let req = Request::post("/echo")
        .header("host", "app.test")
        .body(Unsized(chunks))
        .unwrap();
    let resp = client.send(&addr, req, &ctx()).await.unwrap();
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&text[..], b"len=10000\n");

    let req = Request::get("/big?mb=32")
        .header("host", "app.test")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = client.send(&addr, req, &ctx()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let (mut total, mut max_frame) = (0u64, 0usize);
    while let Some(f) = body.frame().await {
        let data = f.unwrap().into_data().unwrap();
        total += data.len() as u64;
        max_frame = max_frame.max(data.len());
    }
    assert_eq!(total, 32 << 20);
    assert!(
        max_frame <= 2 * sluice::upstream::uwsgi::CHUNK,
        "frame of {max_frame} bytes"
    );
}
