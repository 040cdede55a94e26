//! Unit tests of response buffering: the fast path, spilling in order, the bounds (memory,
//! file size, temp file cap), releasing the app before the client is done, a client gone.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use hyper::header::HeaderValue;
use tokio::sync::mpsc;

use super::*;

type Item = Result<Frame<Bytes>, UpstreamError>;

/// An app body fed by the test; counts the frames the edge took.
struct AppBody {
    rx: mpsc::Receiver<Item>,
    taken: Arc<AtomicUsize>,
}

impl HttpBody for AppBody {
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let r = self.rx.poll_recv(cx);
        if let Poll::Ready(Some(_)) = &r {
            self.taken.fetch_add(1, Ordering::SeqCst);
        }
        r
    }
}

/// Set when the "lease" is dropped.
struct Lease(Arc<AtomicBool>);

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

struct App {
    tx: Option<mpsc::Sender<Item>>,
    taken: Arc<AtomicUsize>,
    released: Arc<AtomicBool>,
}

fn app(cap: usize) -> (App, Response<Body>, Lease) {
    let (tx, rx) = mpsc::channel(cap);
    let taken = Arc::new(AtomicUsize::new(0));
    let released = Arc::new(AtomicBool::new(false));
    let body = AppBody {
        rx,
        taken: taken.clone(),
    }
    .boxed();
    let a = App {
        tx: Some(tx),
        taken,
        released: released.clone(),
    };
    (a, Response::new(body), Lease(released))
}

impl App {
    async fn send(&self, b: Vec<u8>) {
        let tx = self.tx.as_ref().unwrap();
        tx.send(Ok(Frame::data(Bytes::from(b)))).await.unwrap();
    }

    fn end(&mut self) {
        self.tx = None;
    }
}

fn limits(dir: &std::path::Path, mem: usize, max_file: u64) -> Limits<'_> {
    Limits {
        enabled: true,
        mem,
        max_file,
        temp_dir: dir,
    }
}

fn part(i: usize, n: usize) -> Vec<u8> {
    (0..n).map(|k| (i * 31 + k) as u8).collect()
}

async fn read_all(body: &mut Body) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(f) = body.frame().await {
        if let Ok(d) = f.unwrap().into_data() {
            out.extend_from_slice(&d);
        }
    }
    out
}

fn alive() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test]
async fn a_complete_body_costs_no_task_and_releases_the_app_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let slots = TempFiles::new(4);
    let (mut a, resp, lease) = app(4);
    a.send(b"hello ".to_vec()).await;
    a.send(b"world".to_vec()).await;
    a.end();
    let before = alive();
    let (resp, lease) = buffer(
        resp,
        lease,
        &limits(dir.path(), 1024, 1 << 20),
        &slots,
        || {},
    );
    assert!(lease.is_none());
    assert!(a.released.load(Ordering::SeqCst));
    assert_eq!(alive(), before, "no pump task");
    let mut body = resp.into_body();
    assert_eq!(body.size_hint().exact(), Some(11));
    assert_eq!(read_all(&mut body).await, b"hello world");
    assert_eq!(slots.in_use(), 0);
}

#[tokio::test]
async fn x_accel_buffering_no_streams_and_is_not_passed_on() {
    let dir = tempfile::tempdir().unwrap();
    let slots = TempFiles::new(4);
    let (mut a, mut resp, lease) = app(4);
    resp.headers_mut()
        .insert(&X_ACCEL_BUFFERING, HeaderValue::from_static("No"));
    a.send(b"x".to_vec()).await;
    a.end();
    let (resp, lease) = buffer(
        resp,
        lease,
        &limits(dir.path(), 1024, 1 << 20),
        &slots,
        || {},
    );
    assert!(lease.is_some(), "streaming: the caller keeps the lease");
    assert!(!resp.headers().contains_key(&X_ACCEL_BUFFERING));
    assert_eq!(a.taken.load(Ordering::SeqCst), 0, "nothing read ahead");
    // Off in the config, "yes" from the app: buffered.
    let (mut a, mut resp, lease) = app(4);
    resp.headers_mut()
        .insert(&X_ACCEL_BUFFERING, HeaderValue::from_static("yes"));
    a.send(b"x".to_vec()).await;
    a.end();
    let off = Limits {
        enabled: false,
        ..limits(dir.path(), 1024, 1 << 20)
    };
    let (resp, lease) = buffer(resp, lease, &off, &slots, || {});
    assert!(lease.is_none() && !resp.headers().contains_key(&X_ACCEL_BUFFERING));
}

#[tokio::test]
async fn a_big_body_spills_in_order_and_the_app_is_released_before_the_client_reads() {
    let dir = tempfile::tempdir().unwrap();
    let slots = TempFiles::new(4);
    let spills = Arc::new(AtomicUsize::new(0));
    let (mut a, resp, lease) = app(2);
    a.send(part(0, 1000)).await;
    let counted = spills.clone();
    let (resp, lease) = buffer(
        resp,
        lease,
        &limits(dir.path(), 4096, 1 << 20),
        &slots,
        move || {
            counted.fetch_add(1, Ordering::SeqCst);
        },
    );
    assert!(lease.is_none());
    let mut want = part(0, 1000);
    for i in 1..200 {
        let p = part(i, 1000 + i);
        want.extend_from_slice(&p);
        a.send(p).await;
    }
    a.end();
    // Nobody reads the client side, yet the app is read to its end and let go.
    let released = a.released.clone();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !released.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("app released while the client has not read");
    assert_eq!(spills.load(Ordering::SeqCst), 1);
    assert_eq!(slots.in_use(), 1);
    let mut body = resp.into_body();
    assert_eq!(read_all(&mut body).await, want);
    drop(body);
    assert_eq!(slots.in_use(), 0);
}

#[tokio::test]
async fn without_a_file_the_app_waits_for_the_client() {
    let dir = tempfile::tempdir().unwrap();
    // max_temp_file_size = 0, and (second round) no temp file slot: memory, then streaming.
    for (max_file, cap) in [(0u64, 4usize), (1 << 20, 0)] {
        let slots = TempFiles::new(cap);
        let (mut a, resp, lease) = app(1);
        a.send(part(0, 10)).await;
        let (resp, _) = buffer(
            resp,
            lease,
            &limits(dir.path(), 3000, max_file),
            &slots,
            || {},
        );
        let feeder = tokio::spawn(async move {
            for i in 1..50 {
                a.send(part(i, 1000)).await;
            }
            a.end();
            a
        });
        // 3 KiB of memory, one frame in the pump, one in the channel: the app stops there.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert!(
            !feeder.is_finished(),
            "the app was read past the memory bound"
        );
        let mut body = resp.into_body();
        let mut want = part(0, 10);
        (1..50).for_each(|i| want.extend_from_slice(&part(i, 1000)));
        assert_eq!(read_all(&mut body).await, want);
        let a = feeder.await.unwrap();
        assert!(a.released.load(Ordering::SeqCst));
        assert_eq!(slots.in_use(), 0);
    }
}

#[tokio::test]
async fn a_client_that_goes_away_stops_the_pump() {
    let dir = tempfile::tempdir().unwrap();
    let slots = TempFiles::new(4);
    let (a, resp, lease) = app(1);
    a.send(part(0, 10)).await;
    let (resp, _) = buffer(resp, lease, &limits(dir.path(), 100, 0), &slots, || {});
    tokio::task::yield_now().await;
    assert!(!a.released.load(Ordering::SeqCst));
    drop(resp);
    let released = a.released.clone();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !released.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("pump stopped");
}

#[tokio::test]
async fn an_app_error_reaches_the_client_after_the_bytes_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let slots = TempFiles::new(4);
    let (a, resp, lease) = app(4);
    a.send(b"part".to_vec()).await;
    let tx = a.tx.clone().unwrap();
    tx.send(Err(UpstreamError::Timeout)).await.unwrap();
    let (resp, _) = buffer(resp, lease, &limits(dir.path(), 100, 0), &slots, || {});
    assert!(a.released.load(Ordering::SeqCst));
    let mut body = resp.into_body();
    let f = body.frame().await.unwrap().unwrap();
    assert_eq!(&f.into_data().unwrap()[..], b"part");
    assert!(matches!(
        body.frame().await,
        Some(Err(UpstreamError::Timeout))
    ));
}

/// nginx's rule: a client that keeps taking bytes gets a body of many times the memory size
/// with no temp file; once it stops taking, the rest spills and the app is let go.
#[tokio::test]
async fn only_a_client_that_stops_taking_bytes_makes_it_spill() {
    let dir = tempfile::tempdir().unwrap();
    let slots = TempFiles::new(4);
    let spills = Arc::new(AtomicUsize::new(0));
    let (mut a, resp, lease) = app(2);
    a.send(part(0, 1000)).await;
    let counted = spills.clone();
    let (resp, _) = buffer(
        resp,
        lease,
        &limits(dir.path(), 4096, 1 << 20),
        &slots,
        move || {
            counted.fetch_add(1, Ordering::SeqCst);
        },
    );
    let mut body = resp.into_body();
    let (stop_tx, mut stop_rx) = mpsc::channel::<()>(1);
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        // Bounded: the body ends after the app's 400 parts.
        loop {
            let f = tokio::select! {
                biased;
                _ = stop_rx.recv() => break,
                f = body.frame() => f,
            };
            let Some(f) = f else { break };
            got.extend_from_slice(&f.unwrap().into_data().unwrap());
        }
        (body, got)
    });
    let mut want = part(0, 1000);
    for i in 1..200 {
        let p = part(i, 1000 + i);
        want.extend_from_slice(&p);
        a.send(p).await;
    }
    // 200 kB (50 × memory) went through a client taking bytes: no temp file.
    assert_eq!(spills.load(Ordering::SeqCst), 0);
    assert_eq!(slots.in_use(), 0);
    stop_tx.send(()).await.unwrap();
    let (mut body, mut got) = reader.await.unwrap();
    for i in 200..400 {
        let p = part(i, 1000 + i);
        want.extend_from_slice(&p);
        a.send(p).await;
    }
    a.end();
    let released = a.released.clone();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !released.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("app released while the client has stopped reading");
    assert_eq!(spills.load(Ordering::SeqCst), 1);
    assert_eq!(slots.in_use(), 1);
    got.extend_from_slice(&read_all(&mut body).await);
    assert_eq!(got, want);
}

/// Any interleaving of pushes and pops yields the bytes in order, within the bounds.
#[test]
fn push_and_pop_keep_order_across_memory_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let slots = TempFiles::new(1);
    let mut s = State {
        mem: VecDeque::new(),
        mem_bytes: 0,
        mem_limit: 500,
        file: None,
        file_read: 0,
        file_write: 0,
        max_file: 5000,
        spill: Some(Spill {
            dir: dir.path().to_path_buf(),
            slots: slots.clone(),
            spilled: Box::new(|| {}),
        }),
        done: None,
        reader: None,
        writer: None,
        writer_blocked: false,
        reader_gone: false,
        pops: 0,
    };
    let (mut sent, mut got) = (Vec::new(), Vec::new());
    let mut rng = 12345u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut i = 0;
    let mut refused = 0;
    for _ in 0..5000 {
        if next() % 3 != 0 {
            let p = part(i, (next() % 700) as usize + 1);
            match s.push(Bytes::from(p.clone())) {
                Ok(()) => {
                    sent.extend_from_slice(&p);
                    i += 1;
                }
                Err(back) => {
                    assert_eq!(&back[..], &p[..]);
                    refused += 1;
                }
            }
        } else if let Some(b) = s.pop() {
            got.extend_from_slice(&b.unwrap());
        }
        assert!(s.mem_bytes <= 500 + 700);
        assert!(s.file_write <= 5000);
        assert_eq!(&sent[..got.len()], &got[..]);
    }
    while let Some(b) = s.pop() {
        got.extend_from_slice(&b.unwrap());
    }
    assert_eq!(got, sent);
    assert!(s.file.is_some() && refused > 0, "both paths taken");
    assert_eq!(slots.in_use(), 1);
}
