//! The websocket framing of one connection (RFC 6455, server side), written for idle connections that cost nothing.
//!
//! tungstenite's `WebSocketStream` keeps a read buffer per connection for as long as the connection lives (4 KiB
//! here, and never smaller than the largest frame the client sent), a write buffer as large as the largest frame
//! written, and two waker proxies and a lock (`split`) in three more allocations. An idle listener needs none of that,
//! so the connection frames its bytes itself:
//!
//! - [`FrameReader`] reads from the socket into a buffer on the stack of the poll that reads, only when the socket
//!   has bytes (a pending read keeps nothing), and parses frames straight out of it: a frame's header in a 14-byte
//!   array, its payload into the message's own buffer (allocated at the header, at the frame's length, after the
//!   limits are checked), so a one-frame text message becomes its `Utf8Bytes` without a copy. Bytes read past the
//!   message handed out (a client that pipelines) wait in a buffer that exists only while they do. Between messages
//!   the reader holds no allocation at all.
//! - [`write_frame`] writes a frame's header and payload with one vectored write, straight from the shared
//!   `Utf8Bytes` of an event (no copy, no write buffer); a stream that cannot write vectored (TLS) gets them joined.
//!
//! What a client may send, and what happens when it breaks the protocol, is what tungstenite did (the hostile-client
//! tests check each close code): frames and messages over `limits.max_frame_bytes` close with 1009 (checked at the
//! header, before any payload is read or allocated); text that is not UTF-8 (also across fragments, and a close
//! reason) with 1007; reserved bits, an unmasked frame, an unknown opcode, a fragmented or over-125-byte control
//! frame, a continuation without a message, a new message inside a fragmented one, or a one-byte close payload with
//! 1002. A close frame is answered with the same code and reason (1002 for a code a peer may not send), pings are
//! answered by the connection (a pong with the same payload). Nothing here panics on input.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// The buffer on the stack of a read (never kept): the most `limits.read_buffer_bytes` may ask for.
pub(crate) const MAX_READ_CHUNK: usize = 16 * 1024;
/// The longest frame header: 2 bytes, an 8-byte length, a 4-byte mask.
const MAX_HEAD: usize = 14;
/// The longest control frame payload (RFC 6455, 5.5).
const MAX_CONTROL: usize = 125;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xa;

/// Why reading failed.
#[derive(Debug)]
pub(super) enum ReadError {
    /// A frame or a message over the limit (close 1009).
    TooBig,
    /// Text (or a close reason) that is not UTF-8 (close 1007).
    BadUtf8,
    /// Any other violation of RFC 6455 (close 1002); what it was.
    Protocol(&'static str),
    /// The socket failed.
    Io(io::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooBig => f.write_str("frame or message over the size limit"),
            Self::BadUtf8 => f.write_str("text that is not UTF-8"),
            Self::Protocol(what) => write!(f, "websocket protocol violation: {what}"),
            Self::Io(e) => write!(f, "read failed: {e}"),
        }
    }
}

/// The frame being read, once its header is.
struct Frame {
    opcode: u8,
    fin: bool,
    mask: [u8; 4],
    /// Payload bytes read so far (the mask's phase).
    done: usize,
    /// Payload bytes still to read.
    remaining: usize,
}

/// Reads one connection's messages (see the module docs). Idle, it holds no allocation.
pub(super) struct FrameReader {
    /// Bytes read from the socket per read at most (`limits.read_buffer_bytes`, at most [`MAX_READ_CHUNK`]).
    read_chunk: usize,
    max_frame: usize,
    max_message: usize,
    /// Bytes read past the message last handed out, from `carry_at` on; empty and unallocated when there are none.
    carry: Vec<u8>,
    carry_at: usize,
    /// The header being read.
    head: [u8; MAX_HEAD],
    head_len: u8,
    frame: Option<Frame>,
    /// The data message being assembled (text or binary, from its first frame) and its bytes so far.
    message: Option<(bool, Vec<u8>)>,
    /// The control frame's payload being read.
    control: Vec<u8>,
    /// A close frame or an error was read, or the stream ended: nothing more is read.
    done: bool,
}

impl FrameReader {
    /// A reader for frames and messages of at most `max_frame` and `max_message` bytes, reading at most
    /// `read_chunk` bytes per read, starting with `pre_read` (what was read past the upgrade request).
    pub(super) fn new(read_chunk: usize, max_frame: usize, max_message: usize, pre_read: Vec<u8>) -> Self {
        Self {
            read_chunk: read_chunk.clamp(MAX_HEAD, MAX_READ_CHUNK),
            max_frame,
            max_message,
            carry: pre_read,
            carry_at: 0,
            head: [0; MAX_HEAD],
            head_len: 0,
            frame: None,
            message: None,
            control: Vec::new(),
            done: false,
        }
    }

    /// The next message: `None` once the stream ended, a close frame was read, or after an error.
    pub(super) fn poll_next<S: AsyncRead + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        mut io: Pin<&mut S>,
    ) -> Poll<Option<Result<Message, ReadError>>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            if self.carry_at < self.carry.len() {
                let carry = std::mem::take(&mut self.carry);
                let (used, out) = self.feed(&carry[self.carry_at..]);
                self.carry_at += used;
                if self.carry_at < carry.len() {
                    self.carry = carry;
                } else {
                    // Drained: the buffer goes (an idle connection holds none).
                    self.carry_at = 0;
                }
                if let Some(out) = out {
                    return Poll::Ready(Some(self.handed(out)));
                }
                continue;
            }
            let mut buf = [MaybeUninit::<u8>::uninit(); MAX_READ_CHUNK];
            let mut buf = ReadBuf::uninit(&mut buf[..self.read_chunk]);
            if let Err(e) = ready!(io.as_mut().poll_read(cx, &mut buf)) {
                self.done = true;
                return Poll::Ready(Some(Err(ReadError::Io(e))));
            }
            let data = buf.filled();
            if data.is_empty() {
                // The client went away (in the middle of a frame or not).
                self.done = true;
                return Poll::Ready(None);
            }
            let (used, out) = self.feed(data);
            if let Some(out) = out {
                if used < data.len() && out.is_ok() {
                    self.carry = data[used..].to_vec();
                    self.carry_at = 0;
                }
                return Poll::Ready(Some(self.handed(out)));
            }
        }
    }

    /// Marks the reader done after an error or a close frame.
    fn handed(&mut self, out: Result<Message, ReadError>) -> Result<Message, ReadError> {
        if matches!(out, Err(_) | Ok(Message::Close(_))) {
            self.done = true;
            self.carry = Vec::new();
            self.carry_at = 0;
            self.message = None;
            self.control = Vec::new();
        }
        out
    }

    /// Parses `data` until a message (or an error) is complete; returns how many bytes it used.
    fn feed(&mut self, data: &[u8]) -> (usize, Option<Result<Message, ReadError>>) {
        let mut at = 0;
        loop {
            if self.frame.is_none() {
                // The header: 2 bytes, then as many as those say.
                loop {
                    let have = usize::from(self.head_len);
                    let need = head_len(&self.head[..have]);
                    if have == need {
                        break;
                    }
                    if at == data.len() {
                        return (at, None);
                    }
                    let n = (need - have).min(data.len() - at);
                    self.head[have..have + n].copy_from_slice(&data[at..at + n]);
                    self.head_len += n as u8;
                    at += n;
                }
                let head = self.head;
                let len = usize::from(self.head_len);
                self.head_len = 0;
                if let Err(e) = self.start(&head[..len]) {
                    return (at, Some(Err(e)));
                }
            }
            let Some(frame) = self.frame.as_mut() else { continue };
            let n = frame.remaining.min(data.len() - at);
            let target = if frame.opcode >= OP_CLOSE {
                &mut self.control
            } else {
                // A data frame always has its message (set up by `start`).
                match self.message.as_mut() {
                    Some((_, bytes)) => bytes,
                    None => return (at, Some(Err(ReadError::Protocol("a data frame without a message")))),
                }
            };
            let from = target.len();
            target.extend_from_slice(&data[at..at + n]);
            unmask(&mut target[from..], frame.mask, frame.done);
            frame.done += n;
            frame.remaining -= n;
            at += n;
            if frame.remaining > 0 {
                return (at, None);
            }
            if let Some(out) = self.finish() {
                return (at, Some(out));
            }
        }
    }

    /// Checks a complete header and sets up the frame it starts (and its message for a first data frame).
    fn start(&mut self, head: &[u8]) -> Result<(), ReadError> {
        let (b0, b1) = (head[0], head[1]);
        let (fin, opcode) = (b0 & 0x80 != 0, b0 & 0x0f);
        let (len, mask_at) = match b1 & 0x7f {
            126 => (u64::from(u16::from_be_bytes([head[2], head[3]])), 4),
            127 => {
                let mut be = [0; 8];
                be.copy_from_slice(&head[2..10]);
                (u64::from_be_bytes(be), 10)
            }
            n => (u64::from(n), 2),
        };
        // As tungstenite: the size limit first, before anything of the payload is read.
        let len = match usize::try_from(len) {
            Ok(len) if len <= self.max_frame => len,
            _ => return Err(ReadError::TooBig),
        };
        if b0 & 0x70 != 0 {
            return Err(ReadError::Protocol("reserved bits set"));
        }
        if b1 & 0x80 == 0 {
            return Err(ReadError::Protocol("an unmasked client frame"));
        }
        let mut mask = [0; 4];
        mask.copy_from_slice(&head[mask_at..mask_at + 4]);
        match opcode {
            OP_CLOSE | OP_PING | OP_PONG => {
                if !fin {
                    return Err(ReadError::Protocol("a fragmented control frame"));
                }
                if len > MAX_CONTROL {
                    return Err(ReadError::Protocol("a control frame over 125 bytes"));
                }
                self.control = Vec::with_capacity(len);
            }
            OP_TEXT | OP_BINARY => {
                if self.message.is_some() {
                    return Err(ReadError::Protocol("a new message inside a fragmented one"));
                }
                if len > self.max_message {
                    return Err(ReadError::TooBig);
                }
                self.message = Some((opcode == OP_TEXT, Vec::with_capacity(len)));
            }
            OP_CONTINUATION => {
                let Some((_, bytes)) = self.message.as_mut() else {
                    return Err(ReadError::Protocol("a continuation with nothing to continue"));
                };
                if bytes.len().saturating_add(len) > self.max_message {
                    return Err(ReadError::TooBig);
                }
                bytes.reserve_exact(len);
            }
            _ => return Err(ReadError::Protocol("an unknown opcode")),
        }
        self.frame = Some(Frame { opcode, fin, mask, done: 0, remaining: len });
        Ok(())
    }

    /// The frame is read: the message it completes, if any.
    fn finish(&mut self) -> Option<Result<Message, ReadError>> {
        let frame = self.frame.take()?;
        match frame.opcode {
            OP_CLOSE => Some(close_frame(std::mem::take(&mut self.control))),
            OP_PING => Some(Ok(Message::Ping(Bytes::from(std::mem::take(&mut self.control))))),
            OP_PONG => Some(Ok(Message::Pong(Bytes::from(std::mem::take(&mut self.control))))),
            _ if !frame.fin => None,
            _ => {
                let (text, bytes) = self.message.take()?;
                Some(if text {
                    Utf8Bytes::try_from(bytes).map(Message::Text).map_err(|_| ReadError::BadUtf8)
                } else {
                    Ok(Message::Binary(Bytes::from(bytes)))
                })
            }
        }
    }
}

/// How long the header that starts with `have` is (2 until its second byte is known).
fn head_len(have: &[u8]) -> usize {
    let Some(&b1) = have.get(1) else { return 2 };
    let ext = match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
    2 + ext + mask
}

/// Unmasks `bytes`, the payload from offset `done` on.
fn unmask(bytes: &mut [u8], mask: [u8; 4], done: usize) {
    for (i, b) in bytes.iter_mut().enumerate() {
        *b ^= mask[(done + i) % 4];
    }
}

/// A close frame's payload: no code, or a code and a UTF-8 reason; a code a peer may not send is answered as a
/// protocol violation (as tungstenite does).
fn close_frame(payload: Vec<u8>) -> Result<Message, ReadError> {
    match payload.len() {
        0 => Ok(Message::Close(None)),
        1 => Err(ReadError::Protocol("a one-byte close frame")),
        _ => {
            let code = WsCloseCode::from(u16::from_be_bytes([payload[0], payload[1]]));
            let reason = Utf8Bytes::try_from(Bytes::from(payload).slice(2..)).map_err(|_| ReadError::BadUtf8)?;
            let frame = if code.is_allowed() {
                CloseFrame { code, reason }
            } else {
                CloseFrame { code: WsCloseCode::Protocol, reason: Utf8Bytes::from_static("Protocol violation") }
            };
            Ok(Message::Close(Some(frame)))
        }
    }
}

/// Writes `msg` as one unmasked frame (header and payload together). Does not flush.
pub(super) async fn write_frame<S: AsyncWrite + Unpin + ?Sized>(io: &mut S, msg: &Message) -> io::Result<()> {
    let close;
    let (opcode, payload): (u8, &[u8]) = match msg {
        Message::Text(text) => (OP_TEXT, text.as_bytes()),
        Message::Binary(bytes) => (OP_BINARY, bytes),
        Message::Ping(bytes) => (OP_PING, bytes),
        Message::Pong(bytes) => (OP_PONG, bytes),
        Message::Close(frame) => {
            close = frame.as_ref().map(|f| {
                let mut payload = Vec::with_capacity(2 + f.reason.len());
                payload.extend_from_slice(&u16::from(f.code).to_be_bytes());
                // Control frames carry at most 125 bytes: a longer reason is cut (at a character boundary).
                let mut end = f.reason.len().min(MAX_CONTROL - 2);
                while !f.reason.is_char_boundary(end) {
                    end -= 1;
                }
                payload.extend_from_slice(&f.reason.as_bytes()[..end]);
                payload
            });
            (OP_CLOSE, close.as_deref().unwrap_or_default())
        }
        // Never sent by the hub.
        Message::Frame(_) => return Ok(()),
    };
    let mut head = [0u8; 10];
    head[0] = 0x80 | opcode;
    let head_len = match payload.len() {
        n if n < 126 => {
            head[1] = n as u8;
            2
        }
        n if n <= usize::from(u16::MAX) => {
            head[1] = 126;
            head[2..4].copy_from_slice(&(n as u16).to_be_bytes());
            4
        }
        n => {
            head[1] = 127;
            head[2..10].copy_from_slice(&(n as u64).to_be_bytes());
            10
        }
    };
    let head = &head[..head_len];
    if !io.is_write_vectored() {
        // One write, so a TLS stream makes one record of the frame, not one of its header.
        let mut joined = Vec::with_capacity(head.len() + payload.len());
        joined.extend_from_slice(head);
        joined.extend_from_slice(payload);
        return tokio::io::AsyncWriteExt::write_all(io, &joined).await;
    }
    let mut written = 0;
    let total = head.len() + payload.len();
    while written < total {
        let n = std::future::poll_fn(|cx| {
            let bufs = if written < head.len() {
                [io::IoSlice::new(&head[written..]), io::IoSlice::new(payload)]
            } else {
                [io::IoSlice::new(&payload[written - head.len()..]), io::IoSlice::new(&[])]
            };
            Pin::new(&mut *io).poll_write_vectored(cx, &bufs)
        })
        .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        written += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    /// Feeds `bytes` in pieces of `step` and collects the messages.
    fn read_all(bytes: &[u8], step: usize) -> Vec<Result<Message, String>> {
        let mut reader = FrameReader::new(4096, 70_000, 70_000, Vec::new());
        let mut out = Vec::new();
        for piece in bytes.chunks(step) {
            let mut piece = piece;
            while !piece.is_empty() && !reader.done {
                let (used, msg) = reader.feed(piece);
                piece = &piece[used..];
                if let Some(msg) = msg {
                    out.push(reader.handed(msg).map_err(|e| e.to_string()));
                }
            }
        }
        out
    }

    #[test]
    fn frames_split_anywhere_read_the_same() {
        let big = "x".repeat(66_000);
        let bytes = [
            masked(0x81, b"hello"),
            masked(0x89, b"p"),
            masked(0x01, "h\u{e9}".as_bytes()),
            masked(0x8a, b""),
            masked(0x80, "llo \u{e9}t\u{e9}".as_bytes()),
            masked(0x81, big.as_bytes()),
            masked(0x82, &[0, 1, 2]),
            masked(0x88, &[0x03, 0xe8, b'b', b'y', b'e']),
        ]
        .concat();
        let expected = vec![
            Ok(Message::Text("hello".into())),
            Ok(Message::Ping(Bytes::from_static(b"p"))),
            Ok(Message::Pong(Bytes::new())),
            Ok(Message::Text("h\u{e9}llo \u{e9}t\u{e9}".into())),
            Ok(Message::Text(big.as_str().into())),
            Ok(Message::Binary(Bytes::from_static(&[0, 1, 2]))),
            Ok(Message::Close(Some(CloseFrame { code: WsCloseCode::Normal, reason: "bye".into() }))),
        ];
        for step in [1, 2, 3, 7, 13, 100, 4096, bytes.len()] {
            assert_eq!(read_all(&bytes, step), expected, "step {step}");
        }
    }

    #[test]
    fn violations_are_errors() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (masked(0x81, &[0xff]), "UTF-8"),
            ([masked(0x01, &[0xe2, 0x82]), masked(0x80, &[0x28])].concat(), "UTF-8"),
            (masked(0xc1, b"x"), "reserved"),
            (masked(0x83, b"x"), "opcode"),
            (masked(0x8b, b""), "opcode"),
            (masked(0x89, &[0; 126]), "125"),
            (masked(0x09, b""), "fragmented"),
            (masked(0x80, b"x"), "nothing to continue"),
            ([masked(0x01, b"{"), masked(0x82, b"x")].concat(), "inside"),
            (masked(0x81, &[b'x'; 70_001]), "size"),
            ([masked(0x01, &[b'x'; 40_000]), masked(0x80, &[b'x'; 40_000])].concat(), "size"),
            (masked(0x88, &[3]), "one-byte"),
            (masked(0x88, &[0x03, 0xe8, 0xff]), "UTF-8"),
            (vec![0x81, 0x01, b'x'], "unmasked"),
        ];
        for (bytes, what) in cases {
            let out = read_all(&bytes, 5);
            let last = out.last().expect("an outcome");
            assert!(matches!(last, Err(e) if e.contains(what)), "{what}: {out:?}");
        }
    }

    #[test]
    fn a_close_code_a_peer_may_not_send_is_answered_as_a_protocol_violation() {
        let out = read_all(&masked(0x88, &[0x03, 0xed]), 64);
        let Some(Ok(Message::Close(Some(frame)))) = out.first() else { panic!("{out:?}") };
        assert_eq!(frame.code, WsCloseCode::Protocol);
    }

    #[tokio::test]
    async fn frames_written_are_read_back() {
        for len in [0, 125, 126, 65_535, 65_536] {
            let text = "y".repeat(len);
            let mut out = Vec::new();
            write_frame(&mut out, &Message::Text(text.as_str().into())).await.expect("write");
            let head = match len {
                n if n < 126 => 2,
                n if n <= 0xffff => 4,
                _ => 10,
            };
            assert_eq!(out.len(), head + len);
            assert_eq!(out[0], 0x81);
            assert_eq!(&out[head..], text.as_bytes());
        }
        let mut out = Vec::new();
        let close = CloseFrame { code: WsCloseCode::from(4010), reason: "\u{e9}".repeat(100).into() };
        write_frame(&mut out, &Message::Close(Some(close))).await.expect("write");
        assert_eq!(out[0], 0x88);
        assert!(usize::from(out[1]) <= MAX_CONTROL);
        assert!(std::str::from_utf8(&out[4..]).is_ok());
    }
}
