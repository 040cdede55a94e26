//! A small RFC 6455 client for the WebSocket tests: masked frames out, frames in (server
//! frames unmasked, fragments joined, at most `MAX_MESSAGE`), over any byte stream (HTTP/1.1
//! after a 101, TLS or not) or an HTTP/2 extended CONNECT stream (RFC 8441, the `h2` crate).
//! The opening handshake's request and checks live with the tests; no extensions.

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::within;

/// Largest message (or control payload) a test accepts.
pub const MAX_MESSAGE: usize = 1 << 20;

pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// One frame as the client sends it: FIN set, masked with a fixed-per-call key.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | opcode);
    let n = payload.len();
    if n < 126 {
        out.push(0x80 | n as u8);
    } else if n <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    let key: [u8; 4] = rand::random();
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// One parsed frame: (FIN, opcode, unmasked payload, bytes of the buffer it took).
pub type Frame = (bool, u8, Vec<u8>, usize);

/// Parses one frame at the start of `buf`; None when more bytes are needed.
pub fn parse_frame(buf: &[u8]) -> Result<Option<Frame>, String> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (fin, opcode) = (buf[0] & 0x80 != 0, buf[0] & 0x0F);
    let masked = buf[1] & 0x80 != 0;
    let (len, mut at) = match buf[1] & 0x7F {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => {
            let n = u64::from_be_bytes(buf[2..10].try_into().unwrap());
            (usize::try_from(n).map_err(|_| "huge frame")?, 10)
        }
        126 | 127 => return Ok(None),
        n => (n as usize, 2),
    };
    if len > MAX_MESSAGE {
        return Err(format!("frame of {len} bytes"));
    }
    let key = if masked {
        if buf.len() < at + 4 {
            return Ok(None);
        }
        at += 4;
        Some([buf[at - 4], buf[at - 3], buf[at - 2], buf[at - 1]])
    } else {
        None
    };
    if buf.len() < at + len {
        return Ok(None);
    }
    let mut payload = buf[at..at + len].to_vec();
    if let Some(k) = key {
        payload
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b ^= k[i % 4]);
    }
    Ok(Some((fin, opcode, payload, at + len)))
}

/// Where the frames travel.
pub enum Transport {
    Io(Box<dyn IoStream>),
    H2(h2::SendStream<Bytes>, h2::RecvStream),
}

pub trait IoStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> IoStream for T {}

/// A WebSocket client connection after its opening handshake.
pub struct Ws {
    t: Transport,
    buf: BytesMut,
    eof: bool,
}

impl Ws {
    /// `leftover`: bytes read past the handshake's answer.
    pub fn new(t: Transport, leftover: &[u8]) -> Ws {
        Ws {
            t,
            buf: BytesMut::from(leftover),
            eof: false,
        }
    }

    pub async fn send(&mut self, opcode: u8, payload: &[u8]) {
        let frame = client_frame(opcode, payload);
        match &mut self.t {
            Transport::Io(s) => {
                within("ws write", s.write_all(&frame))
                    .await
                    .expect("ws write");
            }
            Transport::H2(tx, _) => tx.send_data(frame.into(), false).expect("h2 send"),
        }
    }

    /// More bytes; false at EOF.
    async fn fill(&mut self) -> bool {
        match &mut self.t {
            Transport::Io(s) => {
                let n = within("ws read", s.read_buf(&mut self.buf))
                    .await
                    .expect("ws read");
                n > 0
            }
            Transport::H2(_, rx) => match within("h2 data", rx.data()).await {
                Some(Ok(d)) => {
                    let _ = rx.flow_control().release_capacity(d.len());
                    self.buf.extend_from_slice(&d);
                    true
                }
                Some(Err(e)) => panic!("h2 stream: {e}"),
                None => false,
            },
        }
    }

    /// The next frame (fragments of a data message joined); None at EOF.
    pub async fn recv(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut message: Option<(u8, Vec<u8>)> = None;
        loop {
            match parse_frame(&self.buf).expect("bad frame from server") {
                Some((fin, opcode, payload, used)) => {
                    self.buf.advance(used);
                    if opcode >= 0x8 {
                        return Some((opcode, payload));
                    }
                    let m = message.get_or_insert((opcode, Vec::new()));
                    m.1.extend_from_slice(&payload);
                    assert!(m.1.len() <= MAX_MESSAGE, "message too large");
                    if fin {
                        return message;
                    }
                }
                None => {
                    if self.eof || !self.fill().await {
                        self.eof = true;
                        assert!(self.buf.is_empty(), "EOF inside a frame");
                        return None;
                    }
                }
            }
        }
    }

    /// Ends the sending side (HTTP/2: END_STREAM; a byte stream: shutdown).
    pub async fn finish(&mut self) {
        match &mut self.t {
            Transport::Io(s) => {
                let _ = within("ws shutdown", s.shutdown()).await;
            }
            Transport::H2(tx, _) => {
                let _ = tx.send_data(Bytes::new(), true);
            }
        }
    }
}

/// Reads an HTTP/1.1 answer head from `s` (at most 64 KiB): (head text, bytes after it).
pub async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i + 4]).into_owned();
            return (head, buf[i + 4..].to_vec());
        }
        assert!(buf.len() < 64 * 1024, "answer head too large");
        let n = within("read head", s.read(&mut chunk))
            .await
            .expect("read head");
        assert!(
            n > 0,
            "EOF before the answer head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}
