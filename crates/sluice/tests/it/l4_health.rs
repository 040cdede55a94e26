//! Health checks seen through the real listener: a server that stops is taken out of rotation
//! and comes back when it listens again; a server that insists on PROXY headers stays up only
//! when the backend's checks send one (send_proxy), and is marked down otherwise.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use crate::support::*;
use sluice::balance::{Pool, ServerState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const LOOP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

const HEALTH: &str = "[backend.health]\nkind = \"KIND\"\ninterval = \"100ms\"\ntimeout = \"500ms\"\nrise = 1\nfall = 1\n";

fn state(pool: &Pool, name: &str) -> ServerState {
    pool.servers()
        .into_iter()
        .find(|s| s.name == name)
        .expect("server")
        .state
}

#[tokio::test]
async fn stopped_server_leaves_rotation_and_returns() {
    let a = NamedServer::start(LOOP, "a").await;
    let b = NamedServer::start(LOOP, "b").await;
    let b_addr = b.addr;
    let cfg = format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n[[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"be\"\n\n\
         [[backend]]\nname = \"be\"\n{}\n[[backend.servers]]\nname = \"a\"\naddr = \"{}\"\n[[backend.servers]]\nname = \"b\"\naddr = \"{}\"\n",
        HEALTH.replace("KIND", "tcp"),
        a.addr,
        b_addr
    );
    let sl = Sluice::start(&cfg).await;
    let pool = sl.pool("be");
    b.stop();
    wait_until("b marked down", || state(&pool, "b") == ServerState::Down).await;
    for _ in 0..4 {
        let mut c = client(sl.addr("fe")).await;
        assert_eq!(read_line(&mut c).await.unwrap(), "a");
    }
    let b = NamedServer::start_on(b_addr, "b").await;
    wait_until("b back up", || state(&pool, "b") == ServerState::Up).await;
    let mut names = Vec::new();
    for _ in 0..4 {
        let mut c = client(sl.addr("fe")).await;
        names.push(read_line(&mut c).await.unwrap());
    }
    assert!(
        names.iter().any(|n| n == "b"),
        "b got no traffic after coming back: {names:?}"
    );
    drop(b);
    sl.shutdown().await;
}

/// What one connection's PROXY header said: (version, command, the request that followed).
type SeenHeader = (proxy_header::Version, proxy_header::Command, String);

/// A server that closes any connection not starting with a valid PROXY header; after one, an
/// HTTP request gets `200`, anything else gets `src=<header source>\n`. Every header it
/// accepted is recorded with the first line of what followed.
async fn proxy_only_server() -> (SocketAddr, Arc<Mutex<Vec<SeenHeader>>>) {
    let l = TcpListener::bind((LOOP, 0)).await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut filled = 0;
                let opts = proxy_header::DecodeOptions::default();
                let (source, kind, rest) = loop {
                    let n = match s.read(&mut buf[filled..]).await {
                        Ok(n) if n > 0 => n,
                        _ => return,
                    };
                    filled += n;
                    match proxy_header::decode(&buf[..filled], &opts) {
                        Ok(proxy_header::Decoded::Complete { header, consumed }) => {
                            break (
                                header.source(),
                                (header.version, header.command),
                                buf[consumed..filled].to_vec(),
                            )
                        }
                        Ok(proxy_header::Decoded::Incomplete { .. }) if filled < buf.len() => {}
                        _ => return, // no PROXY header: hang up
                    }
                };
                let mut rest = rest;
                if rest.is_empty() {
                    let mut more = [0u8; 1024];
                    match s.read(&mut more).await {
                        Ok(n) if n > 0 => rest.extend_from_slice(&more[..n]),
                        _ => return,
                    }
                }
                let first = String::from_utf8_lossy(&rest);
                let first = first.lines().next().unwrap_or("").to_string();
                log.lock().unwrap().push((kind.0, kind.1, first));
                let reply = if rest.starts_with(b"GET ") || rest.starts_with(b"HEAD ") {
                    "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
                } else {
                    format!(
                        "src={}\n",
                        source.map(|s| s.to_string()).unwrap_or_default()
                    )
                };
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn checks_carry_proxy_headers_when_the_backend_sends_them() {
    let (server, seen) = proxy_only_server().await;
    let health = HEALTH.replace("KIND", "http");
    let cfg = format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n\
         [[frontend]]\nname = \"with\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"with_proxy\"\n\n\
         [[frontend]]\nname = \"without\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"no_proxy\"\n\n\
         [[backend]]\nname = \"with_proxy\"\nsend_proxy = \"v2\"\n{health}\n[[backend.servers]]\nname = \"s\"\naddr = \"{server}\"\n\n\
         [[backend]]\nname = \"no_proxy\"\n{health}\n[[backend.servers]]\nname = \"s\"\naddr = \"{server}\"\n"
    );
    let sl = Sluice::start(&cfg).await;
    // Without PROXY the server hangs up on every check: down after `fall` = 1 check.
    let without = sl.pool("no_proxy");
    wait_until("checks without PROXY to fail", || {
        state(&without, "s") == ServerState::Down
    })
    .await;
    // With send_proxy the checks get through; let a few run and the server is still up.
    let with = sl.pool("with_proxy");
    wait_until("several checks with PROXY", || {
        with.servers().iter().all(|s| s.checks_ok >= 3)
    })
    .await;
    assert_eq!(state(&with, "s"), ServerState::Up);
    // Every check spoke for the balancer itself: a v2 LOCAL header, then the HTTP check
    // (HAProxy's `check-send-proxy` does the same).
    let checks = seen.lock().unwrap().clone();
    assert!(checks.len() >= 3, "{checks:?}");
    for (version, command, first) in &checks {
        assert_eq!(
            (*version, *command),
            (proxy_header::Version::V2, proxy_header::Command::Local),
            "a check sent {checks:?}"
        );
        assert!(first.starts_with("GET / HTTP/1."), "{checks:?}");
    }
    let mut c = client(sl.addr("with")).await;
    let me = c.local_addr().unwrap();
    c.write_all(b"hello\n").await.unwrap();
    assert_eq!(read_line(&mut c).await.unwrap(), format!("src={me}"));
    // The frontend whose backend is down closes clients at once.
    let mut c = client(sl.addr("without")).await;
    assert!(closed_without_data(&mut c).await);
    sl.shutdown().await;
}
