//! Hostile HTTP at the edge over real sockets: smuggling shapes (CL+TE, duplicate
//! Content-Length, obs-fold, bare LF/CR), oversized heads, bad methods/URIs, truncated
//! bodies, HTTP/2 rapid reset and CONTINUATION floods, invalid TLS records. Each gets a clean
//! 4xx or a close; the app never sees a request twice or half; the edge keeps serving.
//! In `shield/` (issue #12): strict HTTP, clients gone before their response (499), h2spec,
//! and the attacks on the app behind the edge (slow POST, bodyless HTTP/2 streams, huge
//! declared lengths) with the real uWSGI and an HTTP app.

#[path = "shield/client_gone.rs"]
mod client_gone;
#[path = "shield/h2spec.rs"]
mod h2spec;
#[path = "shield/declared_length.rs"]
mod shield_declared_length;
#[path = "shield/h2_streams.rs"]
mod shield_h2_streams;
#[path = "shield/peers.rs"]
mod shield_peers;
#[path = "shield/slow_post.rs"]
mod shield_slow_post;
#[path = "shield/strict_http.rs"]
mod strict_http;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::support::edge::*;
use crate::support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Complete requests the app received: (request line, body).
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// Decodes a complete chunked body at the start of `buf`: (body, bytes used), or None.
fn dechunk(buf: &[u8]) -> Option<(Vec<u8>, usize)> {
    let (mut body, mut pos) = (Vec::new(), 0);
    loop {
        let line_end = pos + buf.get(pos..)?.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&buf[pos..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        pos = line_end + 2;
        if size == 0 {
            // No trailers expected from the edge: the empty line ends the body.
            return (buf.get(pos..pos + 2)? == b"\r\n").then_some((body, pos + 2));
        }
        body.extend_from_slice(buf.get(pos..pos + size)?);
        pos += size + 2;
    }
}

/// A keep-alive HTTP/1.1 app that records each complete request (Content-Length or chunked
/// body) and answers 200. An incomplete request is never recorded.
async fn recording_app() -> (SocketAddr, Seen) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let rec = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let rec = rec.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    if let Some((line, body, used)) = parse_request(&buf) {
                        buf.drain(..used);
                        rec.lock().unwrap().push((line, body));
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if s.write_all(ok).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    if buf.len() > 1 << 20 {
                        return;
                    }
                    match tokio::time::timeout(DEADLINE, s.read(&mut chunk)).await {
                        Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                        _ => return,
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// One complete request at the start of `buf`: ("METHOD path", body, bytes used).
fn parse_request(buf: &[u8]) -> Option<(String, Vec<u8>, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(n) = req.parse(buf).ok()? else {
        return None;
    };
    let line = format!("{} {}", req.method?, req.path?);
    let value = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    };
    if value("transfer-encoding").is_some() {
        let (body, used) = dechunk(&buf[n..])?;
        return Some((line, body, n + used));
    }
    let len: usize = value("content-length").map_or(Some(0), |v| v.parse().ok())?;
    let body = buf.get(n..n + len)?.to_vec();
    Some((line, body, n + len))
}

fn config(app: SocketAddr, cert: &std::path::Path, key: &std::path::Path) -> String {
    format!(
        "[global]\nmax_connections = 200\ngrace = \"1s\"\n\n\
         [[frontend]]\nname = \"web\"\nmode = \"http\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"app\"\n\n\
         [[frontend]]\nname = \"tls\"\nmode = \"http\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"app\"\n\
         tls = {{ cert = \"{}\", key = \"{}\" }}\n\n\
         [[backend]]\nname = \"app\"\nprotocol = \"http\"\nretries = 0\n\
         [[backend.servers]]\nname = \"a\"\naddr = \"{app}\"\n",
        cert.display(),
        key.display()
    )
}

/// Raw HTTP/1.1 inputs the edge must refuse outright: (name, bytes, acceptable statuses).
/// CL+TE is not here: RFC 9112 §6.3 lets a server process it by Transfer-Encoding alone
/// and close (hyper's choice); that case has its own test.
fn refused() -> Vec<(&'static str, Vec<u8>, &'static [&'static str])> {
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40 << 10)
    );
    let mut many = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..150 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let bad: &[&str] = &["400", ""];
    vec![
        (
            "duplicate Content-Length",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabcGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            bad,
        ),
        (
            "obs-fold",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n".to_vec(),
            bad,
        ),
        (
            "bare CR in a header",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            bad,
        ),
        (
            "space before colon",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc".to_vec(),
            bad,
        ),
        (
            "bad chunk size",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n".to_vec(),
            bad,
        ),
        ("oversized header", big.into_bytes(), &["431", "400", ""]),
        ("too many headers", many.into_bytes(), &["431", "400", ""]),
        ("invalid method", b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), bad),
        ("space in URI", b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), bad),
        ("control byte in URI", b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), bad),
        ("broken authority", b"GET http://[::1 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), bad),
        ("unknown version", b"GET / HTTP/7.3\r\nHost: x\r\n\r\n".to_vec(), &["400", "505", ""]),
        ("binary garbage", b"\x00\xff\x16\x03\x01garbage\r\n\r\n".to_vec(), bad),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_smuggling_requests_never_reach_the_app() {
    let (app, seen) = recording_app().await;
    let dir = tempfile::tempdir().unwrap();
    let (c, k, _) = cert(dir.path());
    let sl = Sluice::start(&config(app, &c, &k)).await;
    let web = sl.addr("web");
    for (name, bytes, statuses) in refused() {
        let resp = raw_request(web, &bytes).await;
        let status = status_of(&resp);
        assert!(
            statuses.contains(&status),
            "{name}: got {status:?}: {}",
            resp.lines().next().unwrap_or("")
        );
        assert_eq!(
            resp.matches("HTTP/1.1 ").count(),
            usize::from(!status.is_empty()),
            "{name}: more than one response: {resp}"
        );
        let got = seen.lock().unwrap().clone();
        assert!(got.is_empty(), "{name}: the app saw {got:?}");
    }
    // A request the edge accepts is forwarded exactly once, body whole.
    let resp = raw_request(
        web,
        b"POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .await;
    assert_eq!(status_of(&resp), "200", "{resp}");
    assert_eq!(
        seen.lock().unwrap().clone(),
        vec![("POST /ok".to_string(), b"hello".to_vec())]
    );
    sl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_lf_and_truncated_bodies_are_never_forwarded_twice_or_half() {
    let (app, seen) = recording_app().await;
    let dir = tempfile::tempdir().unwrap();
    let (c, k, _) = cert(dir.path());
    let log = dir.path().join("web.log");
    let cfg = config(app, &c, &k).replace(
        "backend = \"app\"\n\n[[frontend]]\nname = \"tls\"",
        &format!(
            "backend = \"app\"\naccess_log = \"{}\"\n\n[[frontend]]\nname = \"tls\"",
            log.display()
        ),
    );
    let sl = Sluice::start(&cfg).await;
    let web = sl.addr("web");
    // Bare LF line ends: RFC 9112 lets a recipient accept them; if accepted, the app gets
    // one clean request (the edge re-frames it), never two.
    let resp = raw_request(web, b"GET /lf HTTP/1.1\nHost: x\nConnection: close\n\n").await;
    let status = status_of(&resp).to_string();
    assert!(["200", "400", ""].contains(&status.as_str()), "{resp}");
    let expect_lf = usize::from(status == "200");
    assert_eq!(seen.lock().unwrap().len(), expect_lf);
    // A body shorter than its Content-Length, then the client hangs up: the app must not
    // get a complete request (it may see a head whose body never completes).
    let mut s = client(web).await;
    s.write_all(b"POST /half HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        .await
        .unwrap();
    s.shutdown().await.unwrap();
    let resp = read_all(&mut s).await;
    assert!(["400", ""].contains(&status_of(&resp)), "{resp}");
    // CL+TE: Transfer-Encoding wins (Content-Length dropped), one request with the chunked
    // body, then the connection closes: the bytes after it are never a second request.
    let resp = raw_request(
        web,
        b"POST /clte HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    let status = status_of(&resp).to_string();
    assert!(["200", "400", ""].contains(&status.as_str()), "{resp}");
    assert!(resp.matches("HTTP/1.1 ").count() <= 1, "{resp}");
    let expect_clte = status == "200";
    // Pipelined requests on one connection: each forwarded once, in order.
    let resp = raw_request(
        web,
        b"GET /p1 HTTP/1.1\r\nHost: x\r\n\r\nGET /p2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(resp.matches("HTTP/1.1 200").count(), 2, "{resp}");
    // The edge is done with the half request once it logged it: never as a 200 the app
    // answered (a wrongly completed forward), but as the client leaving mid-body.
    let half = wait_for_log_line(&log, &["\"POST /half HTTP/1.1\""]).await;
    assert!(!half.contains("\" 200 "), "{half}");
    wait_for_log_line(&log, &["\"GET /p2 HTTP/1.1\""]).await;
    let got = seen.lock().unwrap().clone();
    let lines: Vec<&str> = got.iter().map(|(l, _)| l.as_str()).collect();
    let mut want = Vec::new();
    if expect_lf == 1 {
        want.push("GET /lf");
    }
    if expect_clte {
        want.push("POST /clte");
        let clte = got.iter().find(|(l, _)| l == "POST /clte").unwrap();
        assert_eq!(clte.1, b"abc", "CL+TE body");
    }
    want.extend(["GET /p1", "GET /p2"]);
    assert_eq!(lines, want, "forwarded: {got:?}");
    sl.shutdown().await;
}

// ---------------------------------------------------------------- HTTP/2 floods

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK for GET http://x/ using static-table indexes and a literal :authority.
const GET_BLOCK: &[u8] = &[0x82, 0x86, 0x84, 0x01, 0x01, b'x'];

/// Writes `frames` until the edge closes or `max` are sent; then reads until EOF.
/// Returns (frames written, saw a GOAWAY frame).
async fn flood(to: SocketAddr, frames: impl Iterator<Item = Vec<u8>>) -> (usize, bool) {
    let s = client(to).await;
    let (mut r, mut w) = s.into_split();
    let reader = tokio::spawn(async move {
        let mut all = Vec::new();
        let mut b = vec![0u8; 16384];
        while all.len() < 4 << 20 {
            match tokio::time::timeout(DEADLINE, r.read(&mut b)).await {
                Ok(Ok(n)) if n > 0 => all.extend_from_slice(&b[..n]),
                Ok(_) => return (all, true),
                Err(_) => return (all, false),
            }
        }
        (all, false)
    });
    let mut sent = 0;
    let mut out = PREFACE.to_vec();
    out.extend(frame(4, 0, 0, &[]));
    for f in frames {
        out.extend(f);
        if out.len() > 32 << 10 {
            if w.write_all(&out).await.is_err() {
                break;
            }
            out.clear();
        }
        sent += 1;
    }
    let _ = w.write_all(&out).await;
    let (got, closed) = within("edge closes the flood", reader).await.unwrap();
    assert!(closed, "the edge kept a flooding connection open");
    (sent, has_goaway(&got))
}

fn has_goaway(mut bytes: &[u8]) -> bool {
    while bytes.len() >= 9 {
        let len =
            (usize::from(bytes[0]) << 16) | (usize::from(bytes[1]) << 8) | usize::from(bytes[2]);
        if bytes[3] == 7 {
            return true;
        }
        bytes = bytes.get(9 + len..).unwrap_or(&[]);
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_rapid_reset_and_continuation_floods_are_cut() {
    let (app, seen) = recording_app().await;
    let dir = tempfile::tempdir().unwrap();
    let (c, k, der) = cert(dir.path());
    let sl = Sluice::start(&config(app, &c, &k)).await;
    let web = sl.addr("web");

    // Rapid reset: HEADERS immediately cancelled, 5000 times on one connection.
    let resets = (0..5000u32).flat_map(|i| {
        let id = 2 * i + 1;
        [
            frame(1, 0x5, id, GET_BLOCK),
            frame(3, 0, id, &8u32.to_be_bytes()),
        ]
    });
    let (sent, goaway) = flood(web, resets).await;
    let forwarded = seen.lock().unwrap().len();
    eprintln!("rapid reset: {sent} frames written, GOAWAY: {goaway}, forwarded: {forwarded}");
    assert!(
        goaway,
        "a rapid-reset flood must end with GOAWAY, not a bare close"
    );
    assert!(
        forwarded <= sluice::edge::MAX_PENDING_ACCEPT_RESETS,
        "{forwarded} reset streams reached the app (limit {})",
        sluice::edge::MAX_PENDING_ACCEPT_RESETS
    );

    // CONTINUATION flood: one header block that never ends (no END_HEADERS), 8 MiB of it.
    let mut hdr = Vec::new();
    for _ in 0..10 {
        hdr.extend_from_slice(&[0x00, 0x03, b'x', b'-', b'a', 0x64]);
        hdr.extend_from_slice(&[b'a'; 100]);
    }
    let head = std::iter::once(frame(1, 0x1, 1, GET_BLOCK));
    let conts = (0..8000).map(move |_| frame(9, 0, 1, &hdr));
    let (sent, _) = flood(web, head.chain(conts)).await;
    eprintln!("CONTINUATION flood: {sent} frames written before the close");
    assert_eq!(
        seen.lock().unwrap().len(),
        forwarded,
        "a flood request reached the app"
    );

    // Invalid TLS records on the TLS port: closed, nothing forwarded.
    let tls = sl.addr("tls");
    for junk in [
        b"\x16\x03\x01\xff\xff\x01\x00".to_vec(),
        b"\x17\x03\x03\x00\x10AAAAAAAAAAAAAAAA".to_vec(),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        [&b"\x16\x03\x01\x00\x05"[..], &[0xff; 5], &[0x15; 64]].concat(),
    ] {
        let resp = raw_request(tls, &junk).await;
        assert!(
            !resp.contains("HTTP/1.1"),
            "TLS port answered plain HTTP: {resp}"
        );
    }
    assert_eq!(seen.lock().unwrap().len(), forwarded);

    // The edge still serves, over both ports.
    let resp = raw_request(
        web,
        b"GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), "200", "{resp}");
    let resp = tls_request(
        CLIENT_IP,
        tls,
        b"",
        &der,
        "GET /tls HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(status_of(&resp), "200", "{resp}");
    sl.shutdown().await;
}
