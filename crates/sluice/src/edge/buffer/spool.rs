//! A request body being buffered (`SpoolWriter`: memory up to a bound, then a temp file that
//! takes the memory part with it) and the finished body (`Spooled`), which can be sent any
//! number of times (`Spooled::body`), so a retry to another server replays it. No reading
//! from clients and no limits on the total here: `request` does that.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use super::{TempFile, READ_CHUNK};

use crate::upstream::BoxError;

/// Collects a body: memory while it fits `mem_limit`, a temp file once attached.
#[derive(Debug)]
pub(crate) struct SpoolWriter {
    mem_limit: usize,
    /// The first frame, kept as is while it is the only one (no copy for one-frame bodies).
    first: Option<Bytes>,
    mem: BytesMut,
    file: Option<TempFile>,
    len: u64,
}

impl SpoolWriter {
    pub(crate) fn new(mem_limit: usize) -> SpoolWriter {
        SpoolWriter {
            mem_limit,
            first: None,
            mem: BytesMut::new(),
            file: None,
            len: 0,
        }
    }

    /// Bytes collected so far.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Whether `extra` more bytes need a temp file first (memory would pass its bound).
    pub(crate) fn needs_file(&self, extra: usize) -> bool {
        self.file.is_none() && self.len.saturating_add(extra as u64) > self.mem_limit as u64
    }

    /// Moves what is in memory to `file`; from now on everything goes there.
    pub(crate) fn attach(&mut self, file: TempFile) -> std::io::Result<()> {
        let mut at = 0u64;
        for part in [
            self.first.take().unwrap_or_default(),
            self.mem.split().freeze(),
        ] {
            file.write_at(&part, at)?;
            at += part.len() as u64;
        }
        self.mem = BytesMut::new();
        self.file = Some(file);
        Ok(())
    }

    pub(crate) fn push(&mut self, data: Bytes) -> std::io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if let Some(f) = &self.file {
            f.write_at(&data, self.len)?;
        } else if self.len == 0 {
            self.first = Some(data.clone());
        } else {
            if let Some(first) = self.first.take() {
                self.mem.reserve(first.len() + data.len());
                self.mem.extend_from_slice(&first);
            }
            self.mem.extend_from_slice(&data);
        }
        self.len += data.len() as u64;
        Ok(())
    }

    pub(crate) fn finish(self) -> Spooled {
        match self.file {
            Some(f) => Spooled::File(Arc::new(f), self.len),
            None => Spooled::Memory(self.first.unwrap_or_else(|| self.mem.freeze())),
        }
    }
}

/// A whole request body, in memory or in a temp file; cheap to replay.
#[derive(Debug, Clone)]
pub(crate) enum Spooled {
    Memory(Bytes),
    File(Arc<TempFile>, u64),
}

impl Spooled {
    pub(crate) fn len(&self) -> u64 {
        match self {
            Spooled::Memory(b) => b.len() as u64,
            Spooled::File(_, n) => *n,
        }
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the body went to a temp file.
    #[cfg(test)]
    pub(crate) fn spilled(&self) -> bool {
        matches!(self, Spooled::File(..))
    }

    /// The body from its first byte, as a fresh stream.
    pub(crate) fn body(&self) -> SpoolBody {
        match self {
            Spooled::Memory(b) => SpoolBody::Memory(Some(b.clone()).filter(|b| !b.is_empty())),
            Spooled::File(f, n) => SpoolBody::File {
                file: f.clone(),
                pos: 0,
                len: *n,
            },
        }
    }
}

/// One replay of a [`Spooled`] body: the memory part in one frame, a file in 64 KiB frames.
#[derive(Debug)]
pub(crate) enum SpoolBody {
    Memory(Option<Bytes>),
    File {
        file: Arc<TempFile>,
        pos: u64,
        len: u64,
    },
}

impl HttpBody for SpoolBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            SpoolBody::Memory(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            SpoolBody::File { file, pos, len } => {
                if *pos >= *len {
                    return Poll::Ready(None);
                }
                let n = (*len - *pos).min(READ_CHUNK as u64) as usize;
                let r = file.read_at(*pos, n);
                *pos += n as u64;
                Poll::Ready(Some(r.map(Frame::data).map_err(Into::into)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            SpoolBody::Memory(b) => b.is_none(),
            SpoolBody::File { pos, len, .. } => pos >= len,
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(match self {
            SpoolBody::Memory(b) => b.as_ref().map_or(0, |b| b.len() as u64),
            SpoolBody::File { pos, len, .. } => len.saturating_sub(*pos),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::TempFiles;
    use super::*;
    use http_body_util::BodyExt;

    async fn collect(s: &Spooled) -> (Vec<u8>, usize) {
        let mut body = s.body();
        assert_eq!(body.size_hint().exact(), Some(s.len()));
        let mut out = Vec::new();
        let mut frames = 0;
        while let Some(f) = body.frame().await {
            let d = f.unwrap().into_data().unwrap();
            assert!(d.len() <= READ_CHUNK);
            out.extend_from_slice(&d);
            frames += 1;
        }
        assert!(body.is_end_stream());
        (out, frames)
    }

    #[tokio::test]
    async fn one_frame_stays_in_memory_uncopied() {
        let mut w = SpoolWriter::new(16);
        let data = Bytes::from_static(b"0123456789");
        w.push(data.clone()).unwrap();
        assert!(!w.needs_file(6));
        assert!(w.needs_file(7));
        let s = w.finish();
        match &s {
            Spooled::Memory(b) => assert_eq!(b.as_ptr(), data.as_ptr()),
            other => panic!("{other:?}"),
        }
        assert_eq!(collect(&s).await, (data.to_vec(), 1));
        let empty = SpoolWriter::new(16).finish();
        assert!(empty.is_empty() && empty.body().is_end_stream());
        assert_eq!(collect(&empty).await.1, 0);
    }

    #[tokio::test]
    async fn frames_join_in_memory_then_move_to_a_file_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let cap = TempFiles::new(4);
        let mut w = SpoolWriter::new(100);
        let mut want = Vec::new();
        let mut next = 0u8;
        let mut part = |n: usize| {
            let b: Vec<u8> = (0..n)
                .map(|_| {
                    next = next.wrapping_add(7);
                    next
                })
                .collect();
            Bytes::from(b)
        };
        for n in [40, 50] {
            let p = part(n);
            want.extend_from_slice(&p);
            assert!(!w.needs_file(p.len()));
            w.push(p).unwrap();
        }
        // 90 + 30 > 100: the file takes the memory part, then everything else.
        let p = part(30);
        assert!(w.needs_file(p.len()));
        w.attach(cap.try_open(dir.path()).unwrap().unwrap())
            .unwrap();
        assert!(!w.needs_file(1 << 30));
        for p in [p, part(200_000), part(1)] {
            want.extend_from_slice(&p);
            w.push(p).unwrap();
        }
        assert_eq!(w.len(), want.len() as u64);
        let s = w.finish();
        assert!(s.spilled());
        assert_eq!(cap.in_use(), 1);
        // Replays (retries) see the same bytes each time.
        for _ in 0..3 {
            let (got, frames) = collect(&s).await;
            assert_eq!(got, want);
            assert_eq!(frames, want.len().div_ceil(READ_CHUNK));
        }
        drop(s);
        assert_eq!(cap.in_use(), 0, "the slot goes with the last replay");
    }
}
