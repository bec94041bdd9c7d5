//! A raw websocket client for abuse tests: it writes whatever bytes a test wants (malformed frames, floods that are
//! never read) on a plain TCP socket after a hand-written upgrade, and reads the hub's frames itself.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

/// Opcodes (the first byte of a frame is `FIN | opcode` for these).
pub(crate) const TEXT: u8 = 0x81;
pub(crate) const BINARY: u8 = 0x82;
pub(crate) const PING: u8 = 0x89;

pub(crate) struct Raw {
    pub(crate) stream: TcpStream,
    buf: Vec<u8>,
}

/// What came back from the upgrade request when it was not `101`.
#[derive(Debug)]
pub(crate) struct Refused {
    /// The status code (0 when the connection closed without a response).
    pub(crate) status: u16,
    /// The whole response (head and whatever body arrived).
    pub(crate) response: String,
}

impl Raw {
    /// Upgrades a new connection to `addr`'s websocket path, from `from` when given (any 127.0.0.0/8 address works
    /// on Linux loopback), with extra request header lines, and a receive buffer of `rcvbuf` bytes when given.
    pub(crate) async fn connect_with(
        addr: SocketAddr,
        from: Option<IpAddr>,
        headers: &[(&str, &str)],
        rcvbuf: Option<u32>,
    ) -> Result<Self, Refused> {
        let socket = TcpSocket::new_v4().expect("socket");
        if let Some(ip) = from {
            socket.bind(SocketAddr::new(ip, 0)).expect("bind the source address");
        }
        if let Some(size) = rcvbuf {
            socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
        }
        let mut stream = socket.connect(addr).await.expect("tcp connect");
        let mut request = format!(
            "GET /v1/ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        if stream.write_all(request.as_bytes()).await.is_err() {
            return Err(Refused { status: 0, response: String::new() });
        }
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        // Byte by byte, so nothing after the head is consumed.
        while !head.ends_with(b"\r\n\r\n") {
            match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte)).await {
                Ok(Ok(1)) => head.push(byte[0]),
                _ => break,
            }
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        if status == 101 {
            return Ok(Self { stream, buf: Vec::new() });
        }
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut rest)).await;
        Err(Refused { status, response: text + &String::from_utf8_lossy(&rest) })
    }

    /// A raw client on a socket whose upgrade is done.
    pub(crate) fn from_stream(stream: TcpStream) -> Self {
        Self { stream, buf: Vec::new() }
    }

    pub(crate) async fn connect(addr: SocketAddr) -> Self {
        Self::connect_with(addr, None, &[], None).await.expect("websocket upgrade")
    }

    /// One frame with `first` as its first byte (FIN, reserved bits, opcode), masked (as clients must) or not.
    pub(crate) fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
        let mut f = vec![first];
        let mask_bit = if masked { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => f.push(mask_bit | n as u8),
            n if n <= 0xffff => {
                f.push(mask_bit | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(mask_bit | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if masked {
            let key = [0x37, 0xfa, 0x21, 0x3d];
            f.extend_from_slice(&key);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        } else {
            f.extend_from_slice(payload);
        }
        f
    }

    pub(crate) async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    pub(crate) async fn send_text(&mut self, text: &str) {
        self.send(&Self::frame(TEXT, text.as_bytes(), true)).await.expect("send");
    }

    /// The next frame from the hub as (opcode, payload); `None` when the connection ended first (or after
    /// `within`).
    pub(crate) async fn next_frame(&mut self, within: Duration) -> Option<(u8, Vec<u8>)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some((frame, used)) = parse(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                _ => return None,
            }
        }
    }

    /// Reads until the hub's close frame and returns its code; `None` when the connection ended without one.
    pub(crate) async fn close_code(&mut self, within: Duration) -> Option<u16> {
        while let Some((opcode, payload)) = self.next_frame(within).await {
            if opcode == 8 {
                return Some(payload.get(..2).map_or(1005, |c| u16::from_be_bytes([c[0], c[1]])));
            }
        }
        None
    }
}

/// One complete server frame at the start of `buf`: ((opcode, payload), bytes used).
fn parse(buf: &[u8]) -> Option<((u8, Vec<u8>), usize)> {
    let (b0, b1) = (*buf.first()?, *buf.get(1)?);
    let (len, mut at) = match b1 & 0x7f {
        126 => (usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])), 4),
        127 => (usize::try_from(u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?)).ok()?, 10),
        n => (usize::from(n), 2),
    };
    if b1 & 0x80 != 0 {
        at += 4;
    }
    let payload = buf.get(at..at + len)?.to_vec();
    Some(((b0 & 0x0f, payload), at + len))
}
