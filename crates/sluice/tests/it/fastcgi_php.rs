//! FastCGI with the real php-fpm (Debian `php-fpm`, issue #16): a client bound to 127.0.0.2 →
//! sluice balancer (PROXY v2) → sluice TLS edge (`protocol = "fastcgi"`) → php-fpm started by
//! the test, on a unix socket (through a counting relay, to see keep-alive reuse) and on TCP.
//! The app sees the real client; POST bodies and a 10 MiB answer arrive byte-exact; PHP's
//! stderr lands in sluice's log. Skips loudly without php-fpm.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};

use crate::support::edge::*;
use crate::support::*;

const SCRIPTS: &[(&str, &str)] = &[
    (
        "vars.php",
        "<?php foreach (['REMOTE_ADDR', 'SCRIPT_FILENAME', 'SCRIPT_NAME', 'REQUEST_URI', \
         'QUERY_STRING', 'HTTPS', 'SERVER_SOFTWARE', 'GATEWAY_INTERFACE', 'DOCUMENT_ROOT'] as $k) \
         { echo $k, '=', $_SERVER[$k] ?? '', \"\\n\"; }",
    ),
    (
        "echo.php",
        "<?php header('Content-Type: application/octet-stream'); \
         echo file_get_contents('php://input');",
    ),
    (
        "big.php",
        "<?php header('Content-Type: application/octet-stream'); \
         for ($i = 0; $i < 10240; $i++) { echo str_pad(sprintf('%08d', $i), 1024, '.'); }",
    ),
    (
        "stderr.php",
        "<?php error_log('php-said-this-on-stderr ' . chr(27) . '[1m'); echo 'ok';",
    ),
    (
        "teapot.php",
        "<?php http_response_code(418); header('X-From: php'); echo 'short and stout';",
    ),
    (
        "sub/index.php",
        "<?php echo 'index of ', $_SERVER['SCRIPT_NAME'];",
    ),
];

/// The 10 MiB big.php writes.
fn big_body() -> Vec<u8> {
    let mut v = Vec::with_capacity(10 << 20);
    for i in 0..10240 {
        let mut block = format!("{i:08}").into_bytes();
        block.resize(1024, b'.');
        v.extend_from_slice(&block);
    }
    v
}

/// php-fpm's master process. Dropping it sends SIGTERM, on which php-fpm stops its workers
/// and exits (waited for, at most 5 s); `ChildGuard`'s SIGKILL alone would orphan them.
struct PhpFpm(ChildGuard);

impl Drop for PhpFpm {
    fn drop(&mut self) {
        let child = &mut self.0 .0;
        if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < end {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// php-fpm (foreground, no php.ini) with one pool listening on `listen`, its scripts under
/// `<dir>/www`; ready once `probe` connects. None after a SKIP line without php-fpm.
async fn start_php_fpm(dir: &Path, listen: &str, probe: Probe, pool: &str) -> Option<PhpFpm> {
    let fpm = tool(
        "php-fpm",
        &[
            "php-fpm",
            "/usr/sbin/php-fpm8.4",
            "/usr/sbin/php-fpm8.3",
            "/usr/sbin/php-fpm8.2",
            "/usr/sbin/php-fpm8.1",
            "/usr/sbin/php-fpm",
        ],
    )?;
    let www = dir.join("www");
    std::fs::create_dir_all(www.join("sub")).unwrap();
    for (name, src) in SCRIPTS {
        std::fs::write(www.join(name), src).unwrap();
    }
    // php-fpm refuses to run as root unless told (-R), and then wants the pool's user.
    let root = rustix::process::geteuid().is_root();
    let user = if root {
        "user = root\ngroup = root\n"
    } else {
        ""
    };
    let conf = write_file(
        dir,
        "php-fpm.conf",
        &format!(
            "[global]\npid = {d}/php-fpm.pid\nerror_log = {d}/php-fpm.log\ndaemonize = no\n\n\
             [app]\nlisten = {listen}\npm = static\npm.max_children = 2\n{user}{pool}\n",
            d = dir.display()
        ),
    );
    let (c, p) = (conf.display().to_string(), dir.display().to_string());
    let mut args = vec!["-n", "-F", "-y", &c, "-p", &p];
    if root {
        args.push("-R");
    }
    let mut child = spawn_peer(&fpm, &args, &dir.join("php-fpm.out"));
    wait_ready("php-fpm", &mut child, &dir.join("php-fpm.log"), probe).await;
    Some(PhpFpm(child))
}

/// A unix-socket relay to `target` that counts the connections sluice opens.
async fn counting_relay(dir: &Path, target: PathBuf) -> (PathBuf, Arc<AtomicUsize>) {
    let path = dir.join("relay.sock");
    let l = UnixListener::bind(&path).unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let n = count.clone();
    tokio::spawn(async move {
        while let Ok((mut a, _)) = l.accept().await {
            n.fetch_add(1, Ordering::SeqCst);
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut b) = UnixStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                }
            });
        }
    });
    (path, count)
}

/// The edge (its own process, so its log can be read) over FastCGI server `app`, and a
/// balancer in front of it sending PROXY v2. Returns both and the certificate's DER.
async fn tiers(dir: &Path, app: &str, keepalive: usize) -> (SluiceProcess, Sluice, Vec<u8>) {
    let (tls, der) = tls_table(dir);
    let cfg = write_file(
        dir,
        "edge.toml",
        &format!(
            "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n\
             [[frontend]]\nname = \"php_edge\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\n\
             backend = \"php\"\nmax_body = 4194304\nproxy_protocol = {{ trusted = [\"127.0.0.1/32\"] }}\n{tls}\n\n\
             [[backend]]\nname = \"php\"\nprotocol = \"fastcgi\"\nroot = \"{www}\"\n\
             keepalive = {keepalive}\n[[backend.servers]]\naddr = \"{app}\"\n",
            www = dir.join("www").display(),
        ),
    );
    let edge = SluiceProcess::start(&cfg, 1);
    let lb = Sluice::start(&format!(
        "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n\
         [[frontend]]\nname = \"php_lb\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"edges\"\n\n\
         [[backend]]\nname = \"edges\"\nsend_proxy = \"v2\"\n\
         [[backend.servers]]\naddr = \"{}\"\n",
        edge.addr("php_edge")
    ))
    .await;
    (edge, lb, der)
}

/// An HTTP/1.1 connection over TLS from 127.0.0.2 to `to`.
async fn client(to: SocketAddr, der: &[u8]) -> SendRequest<Full<Bytes>> {
    let tcp = within("connect", connect_from(CLIENT_IP, to))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from(HOST).unwrap();
    let tls = within(
        "tls handshake",
        tls_connector(der, &[b"http/1.1"]).connect(name, tcp),
    )
    .await
    .unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

/// One request on `c`: status, the `x-from` header and the whole body.
async fn call(
    c: &mut SendRequest<Full<Bytes>>,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> (StatusCode, Option<String>, Bytes) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", HOST)
        .header("content-type", "application/octet-stream")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    within("connection ready", c.ready()).await.unwrap();
    let resp = within("response", c.send_request(req)).await.unwrap();
    let status = resp.status();
    let from = resp
        .headers()
        .get("x-from")
        .map(|v| v.to_str().unwrap().to_string());
    let body = within("body", resp.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    (status, from, body)
}

fn text(b: &Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn php_fpm_behind_the_tls_edge_sees_the_client_and_keeps_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("php.sock");
    let listen = sock.display().to_string();
    let probe = Probe::Unix(sock.clone());
    let Some(_fpm) = start_php_fpm(dir.path(), &listen, probe, "").await else {
        return;
    };
    let (relay, conns) = counting_relay(dir.path(), sock).await;
    let (edge, lb, der) = tiers(dir.path(), &format!("unix:{}", relay.display()), 4).await;
    let mut c = client(lb.addr("php_lb"), &der).await;

    let (st, _, b) = call(&mut c, "GET", "/vars.php?x=1", vec![]).await;
    let vars = text(&b);
    assert_eq!(st, StatusCode::OK, "{vars}");
    let www = dir.path().join("www").display().to_string();
    for want in [
        "REMOTE_ADDR=127.0.0.2".to_string(),
        format!("SCRIPT_FILENAME={www}/vars.php"),
        "SCRIPT_NAME=/vars.php".into(),
        "REQUEST_URI=/vars.php?x=1".into(),
        "QUERY_STRING=x=1".into(),
        "HTTPS=on".into(),
        "GATEWAY_INTERFACE=CGI/1.1".into(),
        format!("DOCUMENT_ROOT={www}"),
    ] {
        assert!(
            vars.lines().any(|l| l == want),
            "{want} missing in:\n{vars}"
        );
    }
    assert!(vars.contains("SERVER_SOFTWARE=sluice/"), "{vars}");

    // A POST body (binary, not a multiple of any record size) comes back byte-exact.
    let body: Vec<u8> = (0..(1 << 20) + 12_345u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let (st, _, b) = call(&mut c, "POST", "/echo.php", body.clone()).await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        b[..] == body[..],
        "echoed {} bytes of {}",
        b.len(),
        body.len()
    );

    // 10 MiB from PHP, whole.
    let (st, _, b) = call(&mut c, "GET", "/big.php", vec![]).await;
    assert_eq!(st, StatusCode::OK);
    let want = big_body();
    assert!(b[..] == want[..], "got {} bytes of {}", b.len(), want.len());

    // Status and headers set by PHP; a directory gets fastcgi_index.
    let (st, from, b) = call(&mut c, "GET", "/teapot.php", vec![]).await;
    assert_eq!(
        (st.as_u16(), from.as_deref()),
        (418, Some("php")),
        "{}",
        text(&b)
    );
    let (st, _, b) = call(&mut c, "GET", "/sub/", vec![]).await;
    assert_eq!(
        (st, text(&b).as_str()),
        (StatusCode::OK, "index of /sub/index.php")
    );

    // PHP's error_log() goes out as FastCGI STDERR and lands in sluice's log, escaped.
    let (st, _, b) = call(&mut c, "GET", "/stderr.php", vec![]).await;
    assert_eq!((st, text(&b).as_str()), (StatusCode::OK, "ok"));
    let logged = |needle: &str| {
        let lines = edge.stderr.lock().unwrap();
        lines
            .iter()
            .any(|l| l.contains("FastCGI sent in stderr") && l.contains(needle))
    };
    wait_until("PHP's stderr in sluice's log", || {
        logged("php-said-this-on-stderr \\u{1b}[1m")
    })
    .await;

    // A script that does not exist: php-fpm's 404, its complaint logged.
    let (st, _, _) = call(&mut c, "GET", "/missing.php", vec![]).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    wait_until("php-fpm's 'Primary script unknown'", || {
        logged("Primary script unknown")
    })
    .await;

    // Seven requests, one FastCGI connection (FCGI_KEEP_CONN and the idle pool).
    assert_eq!(conns.load(Ordering::SeqCst), 1);
    lb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_php_fpm_closes_after_max_requests_cost_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("php.sock");
    let listen = sock.display().to_string();
    let probe = Probe::Unix(sock.clone());
    // Each child exits (closing its kept connection) after two requests.
    let pool = "pm.max_requests = 2";
    let Some(_fpm) = start_php_fpm(dir.path(), &listen, probe, pool).await else {
        return;
    };
    let (relay, conns) = counting_relay(dir.path(), sock).await;
    let (_edge, lb, der) = tiers(dir.path(), &format!("unix:{}", relay.display()), 4).await;
    let mut c = client(lb.addr("php_lb"), &der).await;
    for i in 0..8 {
        let path = format!("/vars.php?i={i}");
        let (st, _, b) = call(&mut c, "GET", &path, vec![]).await;
        assert_eq!(st, StatusCode::OK, "request {i}: {}", text(&b));
        assert!(text(&b).contains("REMOTE_ADDR=127.0.0.2"), "{}", text(&b));
    }
    let n = conns.load(Ordering::SeqCst);
    assert!((4..=8).contains(&n), "{n} connections for 8 requests");
    lb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn php_fpm_over_tcp_without_keepalive() {
    let dir = tempfile::tempdir().unwrap();
    // php-fpm cannot listen on port 0: a port free a moment ago.
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port([127, 0, 0, 1].into())));
    let Some(_fpm) = start_php_fpm(dir.path(), &addr.to_string(), Probe::Tcp(addr), "").await
    else {
        return;
    };
    let (_edge, lb, der) = tiers(dir.path(), &addr.to_string(), 0).await;
    let mut c = client(lb.addr("php_lb"), &der).await;
    for _ in 0..2 {
        let (st, _, b) = call(&mut c, "GET", "/vars.php", vec![]).await;
        assert_eq!(st, StatusCode::OK, "{}", text(&b));
        assert!(text(&b).contains("REMOTE_ADDR=127.0.0.2"), "{}", text(&b));
    }
    let (st, _, b) = call(&mut c, "POST", "/echo.php", b"over tcp".to_vec()).await;
    assert_eq!((st, text(&b).as_str()), (StatusCode::OK, "over tcp"));
    let (st, _, b) = call(&mut c, "HEAD", "/vars.php", vec![]).await;
    assert_eq!((st, b.len()), (StatusCode::OK, 0));
    let (st, _, b) = call(&mut c, "GET", "/teapot.php", vec![]).await;
    assert_eq!((st.as_u16(), text(&b).as_str()), (418, "short and stout"));
    lb.shutdown().await;
}
