//! Request-side buffering: the `max_body` check on a declared length (before any body byte
//! is read, so an HTTP/1 `Expect: 100-continue` client gets its 413 without a 100), and
//! reading a whole body into a `Spooled` (memory, then an unlinked temp file under the
//! process cap) with `client_body_timeout` between reads. Sending it on is `service`'s job.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Body as HttpBody;
use hyper::header::{self, HeaderMap};
use hyper::StatusCode;

use super::spool::{SpoolWriter, Spooled};
use super::TempFiles;

/// Why a request body could not be buffered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// Declared or read size above `max_body`: 413.
    #[error("request body larger than max_body ({0} bytes)")]
    TooLarge(u64),
    /// No body bytes for `client_body_timeout`: 408 (as nginx answers).
    #[error("no request body bytes for {0:?}")]
    Timeout(Duration),
    /// The client's body failed (reset stream, bad chunked coding, early end): 400.
    #[error("request body: {0}")]
    Client(String),
    /// Every temp file slot stayed taken for `client_body_timeout`: 503.
    #[error("no temp file slot free (global.max_temp_files) for {0:?}")]
    NoSlot(Duration),
    /// The temp file could not be created or written: 500.
    #[error("request body temp file: {0}")]
    Io(std::io::Error),
}

impl BodyError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            BodyError::Client(_) => StatusCode::BAD_REQUEST,
            BodyError::NoSlot(_) => StatusCode::SERVICE_UNAVAILABLE,
            BodyError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The body length the client announced: the largest `Content-Length` value (HTTP/1 or
/// HTTP/2), or the body's lower size bound. Malformed values are hyper's and h2's to refuse.
pub(crate) fn declared_len(headers: &HeaderMap, body: &impl HttpBody) -> u64 {
    let field = headers
        .get_all(header::CONTENT_LENGTH)
        .iter()
        .filter_map(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    field.max(body.size_hint().lower())
}

/// 413 when the declared length is above `max_body`; reads nothing.
pub(crate) fn check_declared(
    headers: &HeaderMap,
    body: &impl HttpBody,
    max_body: u64,
) -> Result<(), BodyError> {
    if declared_len(headers, body) > max_body {
        return Err(BodyError::TooLarge(max_body));
    }
    Ok(())
}

/// What bounds one buffered request body.
#[derive(Debug, Clone)]
pub(crate) struct Limits<'a> {
    pub max_body: u64,
    pub mem: usize,
    pub temp_dir: &'a std::path::Path,
    /// Between two successful reads (and for a temp file slot).
    pub timeout: Duration,
}

/// Reads `body` to its end: in memory up to `limits.mem`, then into a temp file (waiting
/// for a slot of `slots` without reading further), at most `limits.max_body` bytes.
/// `spilled` is called once when the body goes to a file.
pub(crate) async fn read_body<B>(
    mut body: B,
    limits: &Limits<'_>,
    slots: &Arc<TempFiles>,
    spilled: impl FnOnce(),
) -> Result<Spooled, BodyError>
where
    B: HttpBody<Data = bytes::Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut w = SpoolWriter::new(limits.mem);
    let mut spilled = Some(spilled);
    let t = limits.timeout;
    // Bounded: each pass takes a frame within `t`; the total is bounded by `max_body`.
    while !body.is_end_stream() {
        let frame = match tokio::time::timeout(t, body.frame()).await {
            Err(_) => return Err(BodyError::Timeout(t)),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(BodyError::Client(e.to_string())),
            Ok(Some(Ok(f))) => f,
        };
        // Trailers are dropped (uwsgi has no place for them; nginx drops them too).
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if w.len().saturating_add(data.len() as u64) > limits.max_body {
            return Err(BodyError::TooLarge(limits.max_body));
        }
        if w.needs_file(data.len()) {
            let file = match slots.try_open(limits.temp_dir) {
                Some(f) => f,
                None => tokio::time::timeout(t, slots.open(limits.temp_dir))
                    .await
                    .map_err(|_| BodyError::NoSlot(t))?,
            }
            .map_err(BodyError::Io)?;
            w.attach(file).map_err(BodyError::Io)?;
            if let Some(f) = spilled.take() {
                f();
            }
        }
        w.push(data).map_err(BodyError::Io)?;
    }
    Ok(w.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::body::Frame;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::sync::mpsc;

    /// A body fed frame by frame from the test.
    struct Chan(mpsc::Receiver<Result<Frame<Bytes>, String>>);

    impl HttpBody for Chan {
        type Data = Bytes;
        type Error = String;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, String>>> {
            self.0.poll_recv(cx)
        }
    }

    fn chan() -> (mpsc::Sender<Result<Frame<Bytes>, String>>, Chan) {
        let (tx, rx) = mpsc::channel(64);
        (tx, Chan(rx))
    }

    fn limits(dir: &std::path::Path) -> Limits<'_> {
        Limits {
            max_body: 1000,
            mem: 100,
            temp_dir: dir,
            timeout: Duration::from_secs(60),
        }
    }

    async fn contents(s: &Spooled) -> Vec<u8> {
        s.body().collect().await.unwrap().to_bytes().to_vec()
    }

    #[test]
    fn declared_lengths_are_checked_before_reading() {
        let mut h = HeaderMap::new();
        let body = Full::new(Bytes::new());
        assert!(check_declared(&h, &body, 10).is_ok());
        h.insert(header::CONTENT_LENGTH, "11".parse().unwrap());
        assert!(matches!(
            check_declared(&h, &body, 10),
            Err(BodyError::TooLarge(10))
        ));
        h.insert(header::CONTENT_LENGTH, "10".parse().unwrap());
        assert!(check_declared(&h, &body, 10).is_ok());
        h.insert(
            header::CONTENT_LENGTH,
            "10000000000000000000000".parse().unwrap(),
        );
        assert!(
            check_declared(&h, &body, 10).is_ok(),
            "malformed: hyper's to refuse"
        );
        // HTTP/2: the length hyper knows from content-length.
        let sized = Full::new(Bytes::from_static(&[0; 11]));
        assert!(check_declared(&HeaderMap::new(), &sized, 10).is_err());
        assert_eq!(
            BodyError::TooLarge(1).status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            BodyError::Timeout(Duration::ZERO).status(),
            StatusCode::REQUEST_TIMEOUT
        );
    }

    #[tokio::test]
    async fn small_bodies_stay_in_memory_and_big_ones_spill_within_max_body() {
        let dir = tempfile::tempdir().unwrap();
        let cap = TempFiles::new(2);
        let (tx, body) = chan();
        for p in [&b"hello "[..], b"world"] {
            tx.send(Ok(Frame::data(Bytes::from_static(p))))
                .await
                .unwrap();
        }
        drop(tx);
        let mut called = false;
        let s = read_body(body, &limits(dir.path()), &cap, || called = true)
            .await
            .unwrap();
        assert!(!s.spilled() && !called);
        assert_eq!(contents(&s).await, b"hello world");

        let (tx, body) = chan();
        let mut want = Vec::new();
        for i in 0..10u8 {
            let p = vec![i; 99];
            want.extend_from_slice(&p);
            tx.send(Ok(Frame::data(Bytes::from(p)))).await.unwrap();
        }
        drop(tx);
        let s = read_body(body, &limits(dir.path()), &cap, || called = true)
            .await
            .unwrap();
        assert!(s.spilled() && called);
        assert_eq!(cap.in_use(), 1);
        assert_eq!(contents(&s).await, want);
        assert_eq!(contents(&s).await, want, "replayable");
        drop(s);
        assert_eq!(cap.in_use(), 0);

        let (tx, body) = chan();
        for _ in 0..11 {
            tx.send(Ok(Frame::data(Bytes::from(vec![0; 99]))))
                .await
                .unwrap();
        }
        let r = read_body(body, &limits(dir.path()), &cap, || ()).await;
        assert!(matches!(r, Err(BodyError::TooLarge(1000))), "{r:?}");
        assert_eq!(cap.in_use(), 0, "the file of a refused body is gone");

        let (tx, body) = chan();
        tx.send(Err("reset".into())).await.unwrap();
        let r = read_body(body, &limits(dir.path()), &cap, || ()).await;
        assert!(matches!(r, Err(BodyError::Client(_))), "{r:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn each_read_waits_at_most_the_body_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let cap = TempFiles::new(2);
        let (tx, body) = chan();
        let feeder = tokio::spawn(async move {
            // Slow but moving: 59 s between frames is fine.
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(59)).await;
                tx.send(Ok(Frame::data(Bytes::from_static(b"x"))))
                    .await
                    .unwrap();
            }
            tokio::time::sleep(Duration::from_secs(61)).await;
            drop(tx);
        });
        let start = tokio::time::Instant::now();
        let r = read_body(body, &limits(dir.path()), &cap, || ()).await;
        assert!(matches!(r, Err(BodyError::Timeout(_))), "{r:?}");
        assert_eq!(start.elapsed(), Duration::from_secs(3 * 59 + 60));
        feeder.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_spill_waits_for_a_slot_without_reading_more() {
        let dir = tempfile::tempdir().unwrap();
        let cap = TempFiles::new(1);
        let held = cap.try_open(dir.path()).unwrap().unwrap();
        let (tx, body) = chan();
        tx.send(Ok(Frame::data(Bytes::from(vec![1; 150]))))
            .await
            .unwrap();
        tx.send(Ok(Frame::data(Bytes::from(vec![2; 10]))))
            .await
            .unwrap();
        drop(tx);
        let task = {
            let (cap, dir) = (cap.clone(), dir.path().to_path_buf());
            tokio::spawn(async move {
                let l = Limits {
                    temp_dir: &dir,
                    ..limits(&dir)
                };
                read_body(body, &l, &cap, || ()).await.map(|s| s.len())
            })
        };
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!task.is_finished());
        drop(held);
        assert_eq!(task.await.unwrap().unwrap(), 160);

        // Nobody releases: 503 after the body timeout.
        let _held = cap.try_open(dir.path()).unwrap().unwrap();
        let (tx, body) = chan();
        tx.send(Ok(Frame::data(Bytes::from(vec![1; 150]))))
            .await
            .unwrap();
        let r = read_body(body, &limits(dir.path()), &cap, || ()).await;
        assert!(matches!(r, Err(BodyError::NoSlot(_))), "{r:?}");
        assert_eq!(r.unwrap_err().status(), StatusCode::SERVICE_UNAVAILABLE);
        drop(tx);
    }
}
