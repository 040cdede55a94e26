//! Slow POST (issue #12): 4 clients announce `Content-Length: 1000000` on `POST /echo` and
//! dribble the body one byte every 200 ms into a plain and a TLS edge in front of the real
//! uWSGI (one process, 4 threads, `--listen 4`). While they are held, a normal `GET /` gets
//! 200 from the app. Checks what a user sees (status, body), never how fast.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinSet;

use super::shield_peers::*;
use crate::support::edge::{raw_request, read_all, status_of, tls_table};
use crate::support::{client, wait_until, Sluice};

const SLOW_CLIENTS: usize = 4;
const DECLARED: usize = 1_000_000;
const TICK: Duration = Duration::from_millis(200);
/// Body bytes each slow client has sent before the normal request starts.
const WARMUP: usize = 5;
/// Upper bound on a slow client's life (it is aborted long before, when the check is done).
const MAX_TICKS: usize = 150;

const GET: &str = "GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n";

/// What one slow client did: body bytes written, and how it ended if it did.
#[derive(Default)]
struct Slow {
    sent: AtomicUsize,
    ended: AtomicBool,
    why: Mutex<String>,
}

/// Sends the head, then one body byte per `TICK` until the edge answers or closes, or
/// `MAX_TICKS` pass.
async fn dribble<S: AsyncRead + AsyncWrite + Send + 'static>(s: S, me: Arc<Slow>) {
    let (mut r, mut w) = tokio::io::split(s);
    let head = format!(
        "POST /echo HTTP/1.1\r\nHost: app.test\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {DECLARED}\r\n\r\n"
    );
    let end = |why: String| {
        *me.why.lock().unwrap() = why;
        me.ended.store(true, Ordering::SeqCst);
    };
    if let Err(e) = w.write_all(head.as_bytes()).await {
        return end(format!("head not written: {e}"));
    }
    let mut tick = tokio::time::interval(TICK);
    let mut buf = [0u8; 256];
    for _ in 0..MAX_TICKS {
        tokio::select! {
            got = r.read(&mut buf) => {
                let why = match got {
                    Ok(0) => "closed by the edge".to_string(),
                    Ok(n) => format!("answered: {:?}", String::from_utf8_lossy(&buf[..n]).lines().next()),
                    Err(e) => format!("read error: {e}"),
                };
                return end(why);
            }
            _ = tick.tick() => {
                if let Err(e) = w.write_all(b"x").await {
                    return end(format!("write failed: {e}"));
                }
                me.sent.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    end("ran out of ticks".into());
}

/// Runs the slow POSTs against frontend `fe` and, while they are held, one `GET /`.
async fn slow_posts_then_get(tls: bool) {
    let dir = tempfile::tempdir().unwrap();
    let Some(app) = Uwsgi::start(dir.path()).await else {
        return;
    };
    let (tls_line, der) = tls_table(dir.path());
    let big = "max_body = 2097152";
    let cfg = global()
        + &frontend("plain", "app", big)
        + &frontend("tls", "app", &format!("{big}\n{tls_line}"))
        + &backend("app", "uwsgi", &app.addr());
    let sl = Sluice::start(&cfg).await;
    let (name, to) = if tls {
        ("TLS", sl.addr("tls"))
    } else {
        ("plain", sl.addr("plain"))
    };

    let slow: Vec<Arc<Slow>> = (0..SLOW_CLIENTS).map(|_| Arc::default()).collect();
    let mut tasks = JoinSet::new();
    for me in &slow {
        let me = me.clone();
        if tls {
            let s = tls_connect(to, &der, &[b"http/1.1"]).await.expect("TLS");
            tasks.spawn(dribble(s, me));
        } else {
            tasks.spawn(dribble(client(to).await, me));
        }
    }
    wait_until(
        "every slow client sent its head and a few body bytes",
        || {
            slow.iter()
                .all(|s| s.sent.load(Ordering::SeqCst) >= WARMUP || s.ended.load(Ordering::SeqCst))
        },
    )
    .await;

    let normal = tokio::time::timeout(NORMAL_WAIT, async {
        if tls {
            let mut s = tls_connect(to, &der, &[b"http/1.1"]).await.expect("TLS");
            s.write_all(GET.as_bytes()).await.expect("write GET");
            read_all(&mut s).await
        } else {
            raw_request(to, GET.as_bytes()).await
        }
    })
    .await;
    let states: Vec<String> = slow
        .iter()
        .map(|s| {
            let sent = s.sent.load(Ordering::SeqCst);
            if s.ended.load(Ordering::SeqCst) {
                format!("ended after {sent} bytes: {}", s.why.lock().unwrap())
            } else {
                format!("held, {sent} bytes sent")
            }
        })
        .collect();
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    let resp = match normal {
        Ok(r) => r,
        Err(_) => panic!(
            "normal GET / through the {name} edge: no answer within {NORMAL_WAIT:?} while \
             {SLOW_CLIENTS} slow POSTs were held (slow clients: {states:?}); end of the uwsgi \
             log:\n{}",
            app.log_tail(8)
        ),
    };
    assert_eq!(
        status_of(&resp),
        "200",
        "normal GET / through the {name} edge while {SLOW_CLIENTS} slow POSTs were held: {resp}"
    );
    assert!(resp.contains("hello from the seed app"), "{resp}");
    // The attack was in place the whole time: no slow client was cut before the answer.
    assert!(
        slow.iter().all(|s| !s.ended.load(Ordering::SeqCst)),
        "a slow client ended early: {states:?}"
    );
    sl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_posts_do_not_hold_the_app_plain() {
    slow_posts_then_get(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_posts_do_not_hold_the_app_tls() {
    slow_posts_then_get(true).await;
}
