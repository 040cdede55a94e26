//! The real stack: curl (from 127.0.0.2) → HAProxy (`mode tcp`, `send-proxy`, connecting
//! from 127.0.0.10) → two sluice edges (TLS, PROXY trusted from 127.0.0.10) → the real
//! uWSGI running the seed Flask app. Both edges serve in turn and everyone sees 127.0.0.2.
//! Skips loudly without haproxy/uwsgi/Flask/curl unless SLUICE_REQUIRE_INTEROP=1.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::support;
use crate::support::edge::*;
use crate::support::*;

const LOOP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_two_edges_real_uwsgi_flask() {
    let Some(haproxy) = tool("haproxy", &["/usr/sbin/haproxy", "haproxy"]) else {
        return;
    };
    let Some(uwsgi) = tool("uwsgi", &["/usr/bin/uwsgi", "uwsgi"]) else {
        return;
    };
    let Some(curl) = tool("curl", &["/usr/bin/curl", "curl"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some((mut uw, sock)) = start_seed_uwsgi(&uwsgi, dir.path()) else {
        return;
    };
    wait_unix(&sock, &mut uw, dir.path()).await;

    let (c, k, _) = cert(dir.path());
    let edge = |name: &str| {
        format!(
            "[[frontend]]\nname = \"{name}\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\n\
             backend = \"flask\"\naccess_log = \"{d}/{name}.log\"\n\
             proxy_protocol = {{ trusted = [\"127.0.0.10/32\"] }}\n\
             tls = {{ cert = \"{c}\", key = \"{k}\" }}\n\n",
            d = dir.path().display(),
            c = c.display(),
            k = k.display()
        )
    };
    let cfg = format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n{}{}\
         [[backend]]\nname = \"flask\"\nprotocol = \"uwsgi\"\n\
         [[backend.servers]]\naddr = \"unix:{}\"\n",
        edge("edge1"),
        edge("edge2"),
        sock.display()
    );
    let sl = Sluice::start(&cfg).await;
    let port = free_port(LOOP);
    let hcfg = format!(
        "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\n\
         frontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n\n\
         backend be\n  balance roundrobin\n\
         \x20 server e1 {} send-proxy source 127.0.0.10\n\
         \x20 server e2 {} send-proxy source 127.0.0.10\n",
        sl.addr("edge1"),
        sl.addr("edge2")
    );
    let _haproxy = start_haproxy(&haproxy, dir.path(), &hcfg, SocketAddr::new(LOOP, port)).await;

    for i in 0..4 {
        let curl = curl.clone();
        let url = format!("https://{HOST}:{port}/?n={i}");
        let resolve = format!("{HOST}:{port}:127.0.0.1");
        // Alternate HTTP/1.1 and HTTP/2: uwsgi echoes SERVER_PROTOCOL=HTTP/2.0 back in its
        // status line, which the edge must accept.
        let proto = if i % 2 == 0 { "--http1.1" } else { "--http2" };
        let out = tokio::task::spawn_blocking(move || {
            support::edge::curl(&curl, &[proto, "-k", "--resolve", &resolve, &url])
        })
        .await
        .unwrap();
        for want in [
            "hello from the seed app\n",
            "client=127.0.0.2\n",
            "scheme=https\n",
            "https=on\n",
            &format!("query=n={i}\n"),
        ] {
            assert!(out.contains(want), "request {i}: missing {want:?} in {out}");
        }
    }
    for name in ["edge1", "edge2"] {
        let log = dir.path().join(format!("{name}.log"));
        let line = wait_for_log_line(&log, &["\"GET /?n="]).await;
        assert!(
            line.starts_with("127.0.0.2 - - ["),
            "{name} logged the balancer, not the client: {line}"
        );
        assert!(line.contains(" 200 "), "{line}");
    }
    sl.shutdown().await;
}
