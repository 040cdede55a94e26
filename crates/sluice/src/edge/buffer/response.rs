//! Response buffering (nginx `uwsgi_buffering on`): the app's body is read as fast as the app
//! writes it, into memory up to `response_buffer_size`, then into an unlinked temp file up to
//! `max_temp_file_size`; beyond that (or with no temp file slot) reading the app waits for
//! the client, i.e. streaming. The app's socket and the pool lease go as soon as its body
//! ended. A body already complete at the head costs no task and no file; only a body still
//! coming gets a pump task on the worker's runtime. Bytes keep their order: memory first,
//! then the file, and nothing goes to memory while the file holds unread bytes.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper::header::{HeaderMap, HeaderName};
use hyper::Response;

use super::{TempFile, TempFiles, READ_CHUNK};
use crate::upstream::{Body, UpstreamError};

/// nginx's per-response switch (`yes`/`no`); never passed to the client.
pub(crate) static X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

/// What bounds one buffered response.
#[derive(Debug, Clone)]
pub(crate) struct Limits<'a> {
    /// The frontend's `response_buffering`.
    pub enabled: bool,
    pub mem: usize,
    /// Largest temp file (0: never spill).
    pub max_file: u64,
    pub temp_dir: &'a std::path::Path,
}

/// Buffers `resp` as `limits` say. `lease` (the app server's slot) is returned when the
/// response streams as before (the caller keeps it until the client is done), dropped at
/// once when the body is already complete, or handed to the pump task, which drops it
/// when the app's body ended. `spilled` runs when a temp file is created.
pub(crate) fn buffer<L: Send + 'static>(
    resp: Response<Body>,
    lease: L,
    limits: &Limits<'_>,
    slots: &Arc<TempFiles>,
    spilled: impl Fn() + Send + 'static,
) -> (Response<Body>, Option<L>) {
    let (mut parts, mut body) = resp.into_parts();
    let mut on = limits.enabled;
    if let Some(v) = parts.headers.remove(&X_ACCEL_BUFFERING) {
        let v = v.as_bytes();
        if v.eq_ignore_ascii_case(b"no") {
            on = false;
        } else if v.eq_ignore_ascii_case(b"yes") {
            on = true;
        }
    }
    if !on {
        return (Response::from_parts(parts, body), Some(lease));
    }
    if body.is_end_stream() {
        drop(lease);
        return (Response::from_parts(parts, body), None);
    }
    // What is already there: polled without a task (a no-op waker: whoever polls the body
    // next, the pump or hyper, registers the real one).
    let mut cx = Context::from_waker(Waker::noop());
    let mut mem = VecDeque::new();
    let mut mem_bytes = 0usize;
    // Bounded: each pass takes a ready frame; stops at `limits.mem` bytes.
    let end = loop {
        if body.is_end_stream() {
            break Some(Ok(None));
        }
        if mem_bytes >= limits.mem && mem_bytes > 0 {
            break None;
        }
        match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Pending => break None,
            Poll::Ready(None) => break Some(Ok(None)),
            Poll::Ready(Some(Err(e))) => break Some(Err(e)),
            Poll::Ready(Some(Ok(f))) => match f.into_data() {
                Ok(d) if d.is_empty() => {}
                Ok(d) => {
                    mem_bytes += d.len();
                    mem.push_back(d);
                }
                Err(f) => {
                    if let Ok(t) = f.into_trailers() {
                        break Some(Ok(Some(t)));
                    }
                }
            },
        }
    };
    let remaining = body.size_hint().exact().map(|n| n + mem_bytes as u64);
    let mut state = State {
        mem,
        mem_bytes,
        mem_limit: limits.mem,
        file: None,
        file_read: 0,
        file_write: 0,
        max_file: limits.max_file,
        spill: None,
        done: None,
        reader: None,
        writer: None,
        writer_blocked: false,
        reader_gone: false,
        pops: 0,
    };
    match end {
        Some(Ok(None)) => {
            // Complete: the app is done with; one frame (or none) for the client.
            drop(body);
            drop(lease);
            let whole = match state.mem.len() {
                0 => Bytes::new(),
                1 => state.mem.pop_front().unwrap_or_default(),
                _ => {
                    let mut b = BytesMut::with_capacity(state.mem_bytes);
                    state.mem.iter().for_each(|c| b.extend_from_slice(c));
                    b.freeze()
                }
            };
            let body = Full::new(whole).map_err(|e| match e {}).boxed();
            (Response::from_parts(parts, body), None)
        }
        Some(end) => {
            // Trailers or an error after what was read: no pump, no lease.
            drop(body);
            drop(lease);
            state.done = Some(end);
            let reader = Buffered::new(state, remaining);
            (Response::from_parts(parts, reader.boxed()), None)
        }
        None => {
            state.spill = Some(Spill {
                dir: limits.temp_dir.to_path_buf(),
                slots: slots.clone(),
                spilled: Box::new(spilled),
            });
            let reader = Buffered::new(state, remaining);
            tokio::spawn(pump(body, reader.shared.clone(), lease));
            (Response::from_parts(parts, reader.boxed()), None)
        }
    }
}

/// How a pumped response may spill.
struct Spill {
    dir: PathBuf,
    slots: Arc<TempFiles>,
    spilled: Box<dyn Fn() + Send>,
}

/// What the pump and the client's body share.
struct State {
    mem: VecDeque<Bytes>,
    mem_bytes: usize,
    mem_limit: usize,
    file: Option<TempFile>,
    /// Unread file bytes are `file_read..file_write`; both go back to 0 once read.
    file_read: u64,
    file_write: u64,
    max_file: u64,
    /// None: no file for this response (not pumped, or creating one failed).
    spill: Option<Spill>,
    /// The app's body ended: trailers, or an error to pass on.
    done: Option<Result<Option<HeaderMap>, UpstreamError>>,
    reader: Option<Waker>,
    writer: Option<Waker>,
    /// The pump waits for room.
    writer_blocked: bool,
    reader_gone: bool,
    /// Chunks the client's side has taken: the pump spills only when this stood still.
    pops: u64,
}

fn lock(s: &Mutex<State>) -> MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

fn set_waker(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

impl State {
    fn unread_file(&self) -> u64 {
        self.file_write - self.file_read
    }

    /// Stores `data` in memory, or gives it back when memory is full or the file holds
    /// unread bytes (they go first).
    fn push_mem(&mut self, data: Bytes) -> Result<(), Bytes> {
        let len = data.len();
        if self.unread_file() == 0
            && (self.mem_bytes == 0 || self.mem_bytes + len <= self.mem_limit)
        {
            self.mem_bytes += len;
            self.mem.push_back(data);
            return Ok(());
        }
        Err(data)
    }

    /// Stores `data` in order, or gives it back when there is no room (the pump waits).
    fn push(&mut self, data: Bytes) -> Result<(), Bytes> {
        let data = match self.push_mem(data) {
            Ok(()) => return Ok(()),
            Err(d) => d,
        };
        let len = data.len();
        if self.file_write + len as u64 > self.max_file || !self.open_file() {
            return Err(data);
        }
        let Some(file) = &self.file else {
            return Err(data);
        };
        match file.write_at(&data, self.file_write) {
            Ok(()) => {
                self.file_write += len as u64;
                Ok(())
            }
            Err(e) => {
                tracing::warn!("response temp file: {e}; streaming the rest");
                self.spill = None;
                Err(data)
            }
        }
    }

    /// Has a temp file, or creates one when a slot is free (false: stream).
    fn open_file(&mut self) -> bool {
        if self.file.is_some() {
            return true;
        }
        let Some(sp) = &self.spill else { return false };
        match sp.slots.try_open(&sp.dir) {
            None => false,
            Some(Ok(f)) => {
                (sp.spilled)();
                self.file = Some(f);
                true
            }
            Some(Err(e)) => {
                tracing::warn!(
                    "cannot create a response temp file in {}: {e}; streaming",
                    sp.dir.display()
                );
                self.spill = None;
                false
            }
        }
    }

    /// The oldest bytes: memory first, then the file.
    fn pop(&mut self) -> Option<std::io::Result<Bytes>> {
        if let Some(b) = self.mem.pop_front() {
            self.mem_bytes -= b.len();
            return Some(Ok(b));
        }
        let unread = self.unread_file();
        let file = self.file.as_ref().filter(|_| unread > 0)?;
        let n = unread.min(READ_CHUNK as u64) as usize;
        Some(file.read_at(self.file_read, n).inspect(|_| {
            self.file_read += n as u64;
            if self.file_read == self.file_write {
                self.file_read = 0;
                self.file_write = 0;
            }
        }))
    }

    fn wake_reader(&mut self) {
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }

    fn wake_writer(&mut self) {
        self.writer_blocked = false;
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }
}

/// Reads the app's body into `shared` until it ends or the client goes away, then lets go
/// of the app (body, hence socket, and `lease`) before telling the client's side.
async fn pump<L>(mut body: Body, shared: Arc<Mutex<State>>, lease: L) {
    // `pops` when the pump last found memory full; see `to_memory`.
    let mut seen = None;
    // One timer for every grace wait of this pump, moved forward each time: a fresh
    // `timeout` per wait registered a new timer each time, and a timer earlier than every
    // other one makes tokio wake its own driver (an eventfd write and an extra epoll_wait
    // per 64 KiB chunk of a bulk download).
    let grace = tokio::time::sleep(SPILL_GRACE);
    tokio::pin!(grace);
    // Bounded: each pass takes one frame of the app's body (which has its read timeout).
    let end = loop {
        let next = std::future::poll_fn(|cx| {
            {
                let mut s = lock(&shared);
                if s.reader_gone {
                    return Poll::Ready(None);
                }
                set_waker(&mut s.writer, cx);
            }
            Pin::new(&mut body).poll_frame(cx).map(Some)
        })
        .await;
        let frame = match next {
            None => break None,
            Some(None) => break Some(Ok(None)),
            Some(Some(Err(e))) => break Some(Err(e)),
            Some(Some(Ok(f))) => f,
        };
        let data = match frame.into_data() {
            Ok(d) if d.is_empty() => continue,
            Ok(d) => d,
            Err(f) => match f.into_trailers() {
                Ok(t) => break Some(Ok(Some(t))),
                Err(_) => continue,
            },
        };
        let Some(data) = to_memory(&shared, data, &mut seen, grace.as_mut()).await else {
            break None;
        };
        let mut pending = data;
        let stored = std::future::poll_fn(|cx| {
            let mut s = lock(&shared);
            if s.reader_gone {
                return Poll::Ready(false);
            }
            let Some(d) = pending.take() else {
                return Poll::Ready(true);
            };
            match s.push(d) {
                Ok(()) => {
                    s.wake_reader();
                    Poll::Ready(true)
                }
                Err(d) => {
                    pending = Some(d);
                    s.writer_blocked = true;
                    set_waker(&mut s.writer, cx);
                    Poll::Pending
                }
            }
        })
        .await;
        if !stored {
            break None;
        }
    };
    drop(body);
    drop(lease);
    if let Some(end) = end {
        let mut s = lock(&shared);
        s.done = Some(end);
        s.wake_reader();
    }
}

/// Puts `data` in memory, waiting while the client takes bytes (nginx's rule: write to the
/// temp file only when the client is not taking any). The client's side is polled only when
/// it can write to the client, so when memory is full and it took bytes since the pump last
/// looked, the pump waits for its next pop, at most `SPILL_GRACE`; if it took nothing in
/// that while (its socket or window stays full: a slow client) the bytes go to the file as
/// before, without waiting again until it takes some, so a slow client still holds no app
/// worker. Returns None when the client went away, Some(Some(data)) when `data` is still to
/// store (file, or wait).
async fn to_memory(
    shared: &Mutex<State>,
    data: Bytes,
    seen: &mut Option<u64>,
    mut grace: Pin<&mut tokio::time::Sleep>,
) -> Option<Option<Bytes>> {
    let mut data = data;
    // Bounded: each wait follows a pop by the client's side since the last one, and the
    // client takes a finite body; otherwise the loop ends.
    loop {
        {
            let mut s = lock(shared);
            if s.reader_gone {
                return None;
            }
            match s.push_mem(data) {
                Ok(()) => {
                    s.wake_reader();
                    return Some(None);
                }
                Err(d) => data = d,
            }
            if *seen == Some(s.pops) {
                return Some(Some(data));
            }
            *seen = Some(s.pops);
        }
        // The client's side took bytes since the last look: give it a short while to take
        // more (a pop wakes the pump) before calling it stalled.
        let took = std::future::poll_fn(|cx| {
            let mut s = lock(shared);
            if s.reader_gone || Some(s.pops) != *seen {
                return Poll::Ready(());
            }
            s.writer_blocked = true;
            set_waker(&mut s.writer, cx);
            Poll::Pending
        });
        grace
            .as_mut()
            .reset(tokio::time::Instant::now() + SPILL_GRACE);
        tokio::select! {
            () = took => {}
            () = grace.as_mut() => {}
        }
    }
}

/// How long a full buffer waits for a client that was taking bytes before spilling.
const SPILL_GRACE: std::time::Duration = std::time::Duration::from_millis(2);

/// The client's side of a buffered response.
struct Buffered {
    shared: Arc<Mutex<State>>,
    /// Bytes still to come when the app announced a length.
    remaining: Option<u64>,
    finished: bool,
}

impl Buffered {
    fn new(state: State, remaining: Option<u64>) -> Buffered {
        Buffered {
            shared: Arc::new(Mutex::new(state)),
            remaining,
            finished: false,
        }
    }
}

impl HttpBody for Buffered {
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        let mut s = lock(&this.shared);
        match s.pop() {
            Some(Ok(b)) => {
                s.pops += 1;
                if s.writer_blocked {
                    s.wake_writer();
                }
                drop(s);
                if let Some(r) = &mut this.remaining {
                    *r = r.saturating_sub(b.len() as u64);
                }
                return Poll::Ready(Some(Ok(Frame::data(b))));
            }
            Some(Err(e)) => {
                s.reader_gone = true;
                s.wake_writer();
                drop(s);
                this.finished = true;
                return Poll::Ready(Some(Err(UpstreamError::Io(e))));
            }
            None => {}
        }
        match s.done.take() {
            None => {
                set_waker(&mut s.reader, cx);
                Poll::Pending
            }
            Some(end) => {
                drop(s);
                this.finished = true;
                Poll::Ready(match end {
                    Ok(None) => None,
                    Ok(Some(t)) => Some(Ok(Frame::trailers(t))),
                    Err(e) => Some(Err(e)),
                })
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        if self.finished {
            return true;
        }
        let s = lock(&self.shared);
        s.mem.is_empty() && s.unread_file() == 0 && matches!(s.done, Some(Ok(None)))
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

impl Drop for Buffered {
    fn drop(&mut self) {
        let mut s = lock(&self.shared);
        s.reader_gone = true;
        s.mem.clear();
        s.mem_bytes = 0;
        s.file = None;
        s.wake_writer();
    }
}

#[cfg(test)]
#[path = "response_tests.rs"]
mod tests;
