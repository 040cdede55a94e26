//! Health check tests against real loopback servers: tcp/unix connect, `source` binding,
//! PROXY-strict receivers (v1/v2/none), http status, tls and https, timeouts, and the
//! spawned checker taking a server down and up again.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::check::{self, parse_status_line, CheckSpec};
use crate::balance::{Pool, ServerAddr, ServerState};
use crate::config::Backend;
use crate::spec;

/// The spec of a `[backend]` table; a server address "x" stands for one the test sets.
fn backend(toml: &str) -> spec::Backend {
    let mut cfg: Backend = toml::from_str(toml).expect("toml");
    for s in cfg.servers.iter_mut().filter(|s| s.addr == "x") {
        s.addr = "127.0.0.1:9".into();
    }
    cfg.spec().expect("backend spec")
}

fn spec(extra: &str, health: &str) -> CheckSpec {
    let cfg = backend(&format!(
        "name = \"be\"\n{extra}\nservers = [{{ addr = \"x\" }}]\n[health]\ntimeout = \"2s\"\n{health}"
    ));
    CheckSpec::from_backend(&cfg).expect("health configured")
}

/// Reads until `pred(buf)` holds, at most `max` bytes and 5 s. None on EOF/limit/timeout.
async fn read_until(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    max: usize,
    pred: impl Fn(&[u8]) -> bool,
) -> Option<()> {
    let fut = async {
        let mut chunk = [0u8; 512];
        while !pred(buf) {
            if buf.len() >= max {
                return None;
            }
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Some(())
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .ok()
        .flatten()
}

/// What a test server saw per connection: peer address and the PROXY header's description.
type Seen = Arc<Mutex<Vec<(SocketAddr, String)>>>;

/// An HTTP server answering `status`. With `strict`, a connection must start with a valid
/// PROXY header (checked with `proxy_header::decode`) or it is closed without an answer.
async fn http_server(strict: bool, status: u16) -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, peer)) = listener.accept().await else {
                return;
            };
            let seen = seen2.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut what = "no header".to_owned();
                if strict {
                    let opts = proxy_header::DecodeOptions::default();
                    let mut chunk = [0u8; 256];
                    loop {
                        match proxy_header::decode(&buf, &opts) {
                            Ok(proxy_header::Decoded::Complete { header, consumed }) => {
                                what = format!("{:?} {:?}", header.version, header.command);
                                if let Some(src) = header.source() {
                                    what = format!("{what} src={src}");
                                }
                                buf.drain(..consumed);
                                break;
                            }
                            Ok(proxy_header::Decoded::Incomplete { .. }) if buf.len() < 600 => {}
                            _ => return, // not a valid PROXY header: close, as a strict server
                        }
                        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await
                        {
                            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                            _ => return,
                        }
                    }
                }
                seen.lock().unwrap().push((peer, what));
                let end = |b: &[u8]| b.windows(4).any(|w| w == b"\r\n\r\n");
                if read_until(&mut s, &mut buf, 8192, end).await.is_none() {
                    return;
                }
                let reply = format!("HTTP/1.0 {status} Whatever\r\nContent-Length: 0\r\n\r\n");
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    (addr, seen)
}

/// A port with nobody listening (bound then released).
fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn tcp_check_connects_or_reports_refused() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let s = spec("", "kind = \"tcp\"");
    assert_eq!(
        check::run(&ServerAddr::Inet(l.local_addr().unwrap()), &s).await,
        Ok(())
    );
    let err = check::run(&ServerAddr::Inet(closed_port()), &s)
        .await
        .unwrap_err();
    assert_eq!(err, "connection refused");
}

#[tokio::test]
async fn tcp_check_over_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sock");
    let _l = tokio::net::UnixListener::bind(&path).unwrap();
    let s = spec("", "kind = \"tcp\"");
    assert_eq!(
        check::run(&ServerAddr::Unix(path.clone()), &s).await,
        Ok(())
    );
    let err = check::run(&ServerAddr::Unix(dir.path().join("missing.sock")), &s)
        .await
        .unwrap_err();
    assert_eq!(err, "no such socket");
}

#[tokio::test]
async fn check_binds_source_address() {
    let (addr, seen) = http_server(false, 200).await;
    let s = spec("source = \"127.0.0.2\"", "kind = \"http\"");
    assert_eq!(check::run(&ServerAddr::Inet(addr), &s).await, Ok(()));
    assert_eq!(seen.lock().unwrap()[0].0.ip().to_string(), "127.0.0.2");
}

#[tokio::test]
async fn proxy_strict_server_accepts_checks_only_with_header() {
    let (addr, seen) = http_server(true, 200).await;
    let target = ServerAddr::Inet(addr);
    let none = spec("", "kind = \"http\"");
    let err = check::run(&target, &none).await.unwrap_err();
    assert_eq!(err, "connection closed before the HTTP status line");

    let v2 = spec("send_proxy = \"v2\"", "kind = \"http\"");
    assert_eq!(check::run(&target, &v2).await, Ok(()));
    let v1 = spec(
        "send_proxy = \"v1\"\nsource = \"127.0.0.2\"",
        "kind = \"http\"",
    );
    assert_eq!(check::run(&target, &v1).await, Ok(()));

    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].1, "V2 Local");
    // v1 carries the check's own addresses: source 127.0.0.2 and its real port.
    assert_eq!(seen[1].1, format!("V1 Proxy src={}", seen[1].0));
    assert_eq!(seen[1].0.ip().to_string(), "127.0.0.2");
}

#[tokio::test]
async fn http_check_expects_status() {
    let (ok, _) = http_server(false, 200).await;
    let (unavailable, _) = http_server(false, 503).await;
    let s = spec("", "kind = \"http\"\npath = \"/healthz\"");
    assert_eq!(check::run(&ServerAddr::Inet(ok), &s).await, Ok(()));
    let err = check::run(&ServerAddr::Inet(unavailable), &s)
        .await
        .unwrap_err();
    assert_eq!(err, "HTTP status 503, expected 200");
    let s503 = spec("", "kind = \"http\"\nexpect_status = 503");
    assert_eq!(
        check::run(&ServerAddr::Inet(unavailable), &s503).await,
        Ok(())
    );
}

#[tokio::test]
async fn check_times_out_on_a_silent_server() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s); // never answers
        }
    });
    let mut s = spec("", "kind = \"http\"");
    s.timeout = Duration::from_millis(200);
    let err = check::run(&ServerAddr::Inet(addr), &s).await.unwrap_err();
    assert_eq!(err, "timeout after 200ms");
    hold.abort();
}

#[test]
fn status_line_parser_is_strict_and_total() {
    assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r"), Ok(200));
    assert_eq!(parse_status_line(b"HTTP/1.0 503"), Ok(503));
    for bad in [
        &b""[..],
        b"HTTP/1.1 20",
        b"HTTP/2 200 OK",
        b"HTTP/1.1 2000",
        b"SSH-2.0",
        b"HTTP/1.1 abc",
    ] {
        assert!(
            parse_status_line(bad).is_err(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

/// A rustls server with an rcgen self-signed certificate; answers HTTP `status` after the
/// handshake. Returns its address.
async fn tls_server(status: u16) -> SocketAddr {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(Ok(mut tls)) =
                    tokio::time::timeout(Duration::from_secs(5), acceptor.accept(s)).await
                else {
                    return;
                };
                let mut buf = [0u8; 1024];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") && got.len() < 8192 {
                    match tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = tls.write_all(reply.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn tls_and_https_checks_against_self_signed_server() {
    let addr = tls_server(200).await;
    let target = ServerAddr::Inet(addr);
    assert_eq!(
        check::run(&target, &spec("", "kind = \"tls\"")).await,
        Ok(())
    );
    assert_eq!(
        check::run(&target, &spec("", "kind = \"https\"")).await,
        Ok(())
    );
    let by_name = ServerAddr::Host {
        host: "localhost".into(),
        port: addr.port(),
    };
    let s = spec("source = \"127.0.0.1\"", "kind = \"https\"");
    assert_eq!(check::run(&by_name, &s).await, Ok(()));
    // A plain-text server (answers and closes at once) fails a TLS check.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n").await;
        }
    });
    let err = check::run(&ServerAddr::Inet(plain), &spec("", "kind = \"tls\""))
        .await
        .unwrap_err();
    assert!(err.starts_with("tls handshake"), "{err}");
    let bad = tls_server(500).await;
    let err = check::run(&ServerAddr::Inet(bad), &spec("", "kind = \"https\""))
        .await
        .unwrap_err();
    assert_eq!(err, "HTTP status 500, expected 200");
}

#[tokio::test]
async fn spawned_checker_takes_server_down_and_up() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut cfg = backend(
        "name = \"be\"\nservers = [{ name = \"s1\", addr = \"x\" }]\n\
         [health]\nkind = \"tcp\"\ninterval = \"20ms\"\ntimeout = \"1s\"\nfall = 2\nrise = 2\n",
    );
    cfg.servers[0].addr = ServerAddr::Inet(addr);
    let pool = Pool::new(&cfg);
    let shutdown = CancellationToken::new();
    let task = super::spawn(pool.clone(), &cfg, shutdown.clone()).expect("checks configured");

    let wait_for = |want: ServerState, min_checks: u64| {
        let pool = pool.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let s = &pool.servers()[0];
                if s.state == want && s.checks_ok + s.checks_failed >= min_checks {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "server never became {want}: {s:?}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    wait_for(ServerState::Up, 2).await;
    assert!(pool.servers()[0].last_check_latency.is_some());
    drop(listener);
    wait_for(ServerState::Down, 0).await;
    assert!(!pool.any_up());
    assert_eq!(
        pool.servers()[0].last_error.as_deref(),
        Some("connection refused")
    );
    let _again = std::net::TcpListener::bind(addr).expect("rebind the same port");
    wait_for(ServerState::Up, 0).await;
    assert!(pool.any_up());

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("checker stops")
        .unwrap();
}

#[tokio::test]
async fn no_health_section_means_no_checker() {
    let mut cfg = backend("name = \"be\"\nservers = [{ addr = \"x\" }]");
    cfg.servers[0].addr = ServerAddr::Inet(closed_port());
    let pool = Pool::new(&cfg);
    assert!(super::spawn(pool, &cfg, CancellationToken::new()).is_none());
}

/// The stats page's check column: HAProxy's status per layer reached, with the HTTP code.
#[tokio::test]
async fn reports_haproxy_check_status() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open = ServerAddr::Inet(l.local_addr().unwrap());
    let tcp = spec("", "kind = \"tcp\"");
    let (r, status, code) = check::run_report(&open, &tcp).await;
    assert_eq!((r, status, code), (Ok(()), "L4OK", None));
    let (r, status, _) = check::run_report(&ServerAddr::Inet(closed_port()), &tcp).await;
    assert_eq!(
        (r.unwrap_err().as_str(), status),
        ("connection refused", "L4CON")
    );

    let (ok, _) = http_server(false, 200).await;
    let (unavailable, _) = http_server(false, 503).await;
    let http = spec("", "kind = \"http\"");
    let (r, status, code) = check::run_report(&ServerAddr::Inet(ok), &http).await;
    assert_eq!((r, status, code), (Ok(()), "L7OK", Some(200)));
    let (r, status, code) = check::run_report(&ServerAddr::Inet(unavailable), &http).await;
    assert!(r.is_err());
    assert_eq!((status, code), ("L7STS", Some(503)));

    // Connected, then silence: the timeout is an L7 one.
    let mut slow = spec("", "kind = \"http\"");
    slow.timeout = Duration::from_millis(200);
    let (r, status, _) = check::run_report(&open, &slow).await;
    assert_eq!(
        (r.unwrap_err().as_str(), status),
        ("timeout after 200ms", "L7TOUT")
    );
}
