//! Routing by ClientHello on the balancer (issue #17): a tcp frontend with `routes` sends
//! `a.example` to edge A, `*.b.example` to edge B, an `acme-tls/1` ALPN to its own server,
//! everything else to its default backend, without terminating TLS (the real `openssl
//! s_client` sees each edge's own certificate). A client sending no ClientHello gets the
//! default backend or is refused (`no_hello`); one too slow to send it is cut at
//! `preread_timeout`. Edges are sluice TLS frontends in a second in-process instance.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::edge::*;
use crate::support::*;

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A self-signed certificate for `names`, written as `<file>.pem` / `<file>.key`; returns the
/// paths and the PEM text.
fn cert_for(dir: &Path, file: &str, names: &[&str]) -> (PathBuf, PathBuf, String) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let ck = rcgen::generate_simple_self_signed(names).unwrap();
    let (c, k) = (
        dir.join(format!("{file}.pem")),
        dir.join(format!("{file}.key")),
    );
    std::fs::write(&c, ck.cert.pem()).unwrap();
    std::fs::write(&k, ck.key_pair.serialize_pem()).unwrap();
    (c, k, ck.cert.pem())
}

/// The base64 body of a PEM certificate, as one string (s_client wraps lines the same way,
/// but compare without line breaks to be safe).
fn pem_body(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

fn has_cert(out: &str, pem: &str) -> bool {
    let flat: String = out.lines().collect();
    flat.contains(&pem_body(pem))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_and_alpn_pick_the_backend_without_terminating_tls() {
    let Some(openssl) = tool("openssl", &["/usr/bin/openssl", "openssl"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let app = http_echo_app().await;
    let (ca, ka, pem_a) = cert_for(d, "a", &["a.example"]);
    let (cb, kb, pem_b) = cert_for(d, "b", &["*.b.example"]);
    let edge = |name: &str, c: &Path, k: &Path| {
        format!(
            "[[frontend]]\nname = \"{name}\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\n\
             backend = \"sni_app\"\ntls = {{ cert = \"{}\", key = \"{}\" }}\n\n",
            c.display(),
            k.display()
        )
    };
    let edges = Sluice::start(&format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n{}{}\
         [[backend]]\nname = \"sni_app\"\nprotocol = \"http\"\n[[backend.servers]]\naddr = \"{app}\"\n",
        edge("sni_edge_a", &ca, &ka),
        edge("sni_edge_b", &cb, &kb),
    ))
    .await;
    let default = NamedServer::start(LO, "default").await;
    let acme = NamedServer::start(LO, "acme").await;
    let backend = |name: &str, addr: std::net::SocketAddr| {
        format!("[[backend]]\nname = \"{name}\"\n[[backend.servers]]\naddr = \"{addr}\"\n\n")
    };
    // ACME's TLS-ALPN-01 first: it must win over the name routes (first match wins).
    let routes = "routes = [\n  { alpn = [\"acme-tls/1\"], backend = \"sni_acme\" },\n  \
                  { sni = [\"a.example\"], backend = \"sni_a\" },\n  \
                  { sni = [\"*.b.example\"], alpn = [\"http/1.1\", \"h2\"], backend = \"sni_b\" },\n]\n";
    let frontend = |name: &str, extra: &str| {
        format!(
            "[[frontend]]\nname = \"{name}\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"sni_default\"\n\
             access_log = \"{}/{name}.log\"\npreread_timeout = \"500ms\"\n{extra}{routes}\n",
            d.display()
        )
    };
    let lb = Sluice::start(&format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n{}{}{}{}{}{}",
        frontend("sni_lb", ""),
        frontend("sni_lb_strict", "no_hello = \"reject\"\n"),
        backend("sni_a", edges.addr("sni_edge_a")),
        backend("sni_b", edges.addr("sni_edge_b")),
        backend("sni_acme", acme.addr),
        backend("sni_default", default.addr),
    ))
    .await;
    let to = lb.addr("sni_lb");
    let get = b"GET /r HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

    // SNI a.example: edge A's certificate and its app's answer.
    let out = s_client(&openssl, to, &["-servername", "a.example"], get).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(has_cert(&text, &pem_a), "not edge A's certificate:\n{text}");
    assert!(text.contains("HTTP/1.1 200"), "{text}");
    // A name under *.b.example (offering http/1.1): edge B.
    let args = ["-servername", "x.y.b.example", "-alpn", "http/1.1"];
    let out = s_client(&openssl, to, &args, get).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(has_cert(&text, &pem_b), "not edge B's certificate:\n{text}");
    assert!(text.contains("HTTP/1.1 200"), "{text}");
    // b.example itself is not under *.b.example, and without a matching ALPN the B route
    // does not hold either: both go to the default backend, as does a hello without SNI.
    for args in [
        &["-servername", "b.example", "-alpn", "h2"][..],
        &["-servername", "x.b.example", "-alpn", "imap"][..],
        &["-noservername"][..],
    ] {
        let before = default.accepted();
        let _ = s_client(&openssl, to, args, b"").await;
        assert_eq!(
            default.accepted(),
            before + 1,
            "{args:?} not to the default"
        );
    }
    // An ACME TLS-ALPN-01 validation for a.example: its own backend.
    let _ = s_client(
        &openssl,
        to,
        &["-servername", "a.example", "-alpn", "acme-tls/1"],
        b"",
    )
    .await;
    assert_eq!(acme.accepted(), 1);

    // Not TLS: the default backend gets the bytes (no_hello = "default") ...
    let mut c = within("connect", connect_from(CLIENT_IP, to))
        .await
        .unwrap();
    c.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut line = [0u8; 8];
    within("default answers", c.read_exact(&mut line))
        .await
        .unwrap();
    assert_eq!(&line, b"default\n");
    drop(c);
    // ... or is refused (no_hello = "reject"), nothing forwarded.
    let before = default.accepted();
    let mut c = within("connect", connect_from(CLIENT_IP, lb.addr("sni_lb_strict")))
        .await
        .unwrap();
    c.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    assert!(closed_without_data(&mut c).await, "garbage not refused");
    assert_eq!(default.accepted(), before);
    let log = d.join("sni_lb_strict.log");
    wait_for_log_line(&log, &["end=no_hello"]).await;

    // A slowloris ClientHello (a record header and a few bytes, then nothing): cut at
    // preread_timeout (500ms), forwarded nowhere.
    let mut c = within("connect", connect_from(CLIENT_IP, to))
        .await
        .unwrap();
    c.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])
        .await
        .unwrap();
    let started = std::time::Instant::now();
    assert!(closed_without_data(&mut c).await, "slow hello not cut");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "cut too early"
    );
    let line = wait_for_log_line(&d.join("sni_lb.log"), &["end=preread_timeout"]).await;
    assert!(line.contains(" backend=sni_default "), "{line}");

    // The routing decision is the log line's backend.
    let lines = std::fs::read_to_string(d.join("sni_lb.log")).unwrap();
    for be in ["sni_a", "sni_b", "sni_acme"] {
        assert!(
            lines
                .lines()
                .any(|l| l.contains(&format!(" backend={be} "))),
            "{be}: {lines}"
        );
    }
    lb.shutdown().await;
    edges.shutdown().await;
}

#[test]
fn check_refuses_bad_routes() {
    let dir = tempfile::tempdir().unwrap();
    let run = |frontend_extra: &str, mode: &str| {
        let text = format!(
            "[global]\nmax_connections = 100\n\n[[frontend]]\nname = \"f\"\nbind = [\"127.0.0.1:0\"]\nmode = \"{mode}\"\nbackend = \"d\"\n\
             {frontend_extra}\n\n\
             [[backend]]\nname = \"d\"\nservers = [{{ addr = \"127.0.0.1:9\" }}]\n\n\
             [[backend]]\nname = \"u\"\nprotocol = \"uwsgi\"\nservers = [{{ addr = \"127.0.0.1:9\" }}]\n"
        );
        let path = write_file(dir.path(), "sluice.toml", &text);
        let out = sluice_cli(&["check"], &path);
        (out.status.success(), output_text(&out), path)
    };
    for (extra, mode, why) in [
        (
            "routes = [{ sni = [\"a..b\"], backend = \"d\" }]",
            "tcp",
            "not a host name",
        ),
        ("routes = [{ backend = \"d\" }]", "tcp", "needs sni or alpn"),
        (
            "routes = [{ sni = [\"a\"], backend = \"nope\" }]",
            "tcp",
            "no backend named",
        ),
        (
            "routes = [{ sni = [\"a\"], backend = \"u\" }]",
            "tcp",
            "app protocol",
        ),
        (
            "routes = [{ alpn = [\"\"], backend = \"d\" }]",
            "tcp",
            "1 to 255 bytes",
        ),
        (
            "routes = [{ sni = [\"a\"], backend = \"d\" }]",
            "http",
            "tcp-mode frontends",
        ),
        ("no_hello = \"reject\"", "tcp", "no effect without routes"),
        (
            "preread_timeout = \"0s\"\nroutes = [{ sni = [\"a\"], backend = \"d\" }]",
            "tcp",
            "longer than 0s",
        ),
    ] {
        let (ok, text, path) = run(extra, mode);
        assert!(!ok, "{extra} accepted");
        assert!(text.contains(why), "{extra}: {text}");
        assert!(
            text.contains(&format!("{}:9:", path.display()))
                || text.contains(&format!("{}:10:", path.display())),
            "no file:line:col: {text}"
        );
    }
    let (ok, text, _) = run(
        "routes = [{ sni = [\"*.B.example\", \"a.example\"], alpn = [\"acme-tls/1\"], backend = \"d\" }]",
        "tcp",
    );
    assert!(ok, "{text}");
}
