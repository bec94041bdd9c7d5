//! ICE-TCP (RFC 6544): a worker's passive TCP host candidate, for clients whose UDP is blocked.
//!
//! Each worker listens on TCP at its UDP socket's address (the same port when it is free). A client connects
//! (`tcptype active`) and sends STUN, DTLS, RTP and RTCP framed as RFC 4571 says: a 16-bit big-endian length, then
//! the packet. Everything else is as for UDP: the frames go to the peer's `Rtc` with `Protocol::Tcp`, and what the
//! `Rtc` (or the thin egress path) sends to a TCP address goes out framed on that connection.
//!
//! # Invariants
//!
//! * Bounded: at most `max` connections per worker (further ones are accepted and closed at once), a read buffer
//!   of one largest frame per connection, a write buffer of [`WRITE_MAX`] bytes (a packet that does not fit is
//!   dropped and counted: audio is not worth queueing behind a stalled reader), and a connection that has not passed
//!   ICE within [`UNBOUND_FOR`] is closed.
//! * A connection is bound to a peer only when that peer's `Rtc` sends to it, i.e. after a STUN check with the
//!   right ufrag and password arrived on it, as UDP sources are. Before that, only STUN with a known ufrag is
//!   accepted on it.
//! * Writes are collected per loop turn and written with one `write` per connection ([`Tcp::flush`]); a full
//!   socket buffer registers interest in writability and keeps the rest.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

/// Largest frame accepted (RFC 4571 allows 65,535; a WebRTC packet is at most about 1,500 bytes, a DTLS handshake
/// flight fragment likewise).
pub(crate) const MAX_FRAME: usize = 4096;
/// Bytes queued for one connection at most.
pub(crate) const WRITE_MAX: usize = 64 * 1024;
/// A connection that no peer's `Rtc` has sent to by then is closed.
pub(crate) const UNBOUND_FOR: Duration = Duration::from_secs(10);
/// The first token of connections (below: the waker, the UDP socket, the TCP listener).
pub(crate) const FIRST_CONN: usize = 3;

/// One accepted connection.
pub(crate) struct Conn {
    stream: TcpStream,
    pub(crate) remote: SocketAddr,
    /// Bytes read and not yet a whole frame.
    rbuf: Box<[u8]>,
    rlen: usize,
    /// Framed bytes to write; `wpos` of them are written.
    wbuf: Vec<u8>,
    wpos: usize,
    /// The peer whose `Rtc` sent to this connection.
    pub(crate) peer: Option<u64>,
    opened: Instant,
    /// Registered for writability too (a write found the socket buffer full).
    want_write: bool,
}

/// A worker's TCP listener and its connections.
pub(crate) struct Tcp {
    listener: TcpListener,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    by_addr: HashMap<SocketAddr, usize>,
    /// Connections with bytes to write this turn.
    dirty: Vec<usize>,
    max: usize,
}

/// What reading a connection gave.
pub(crate) enum Read4571 {
    /// A whole frame, copied into the caller's buffer (this many bytes).
    Frame(usize),
    /// Nothing more for now.
    Idle,
    /// The connection is closed (by the client, an error or a bad frame).
    Closed,
}

impl Tcp {
    pub(crate) fn new(listener: TcpListener, max: usize) -> Self {
        Self { listener, conns: Vec::new(), free: Vec::new(), by_addr: HashMap::new(), dirty: Vec::new(), max }
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.by_addr.len()
    }

    /// Accepts what is pending (up to `budget`); returns how many connections were accepted and how many refused
    /// for the limit.
    pub(crate) fn accept(&mut self, registry: &Registry, now: Instant, budget: usize) -> (u64, u64) {
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..budget {
            let (mut stream, remote) = match self.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and the like: leave the rest pending until the next readiness.
                    tracing::debug!(error = %e, "tcp accept");
                    break;
                }
            };
            if self.open() >= self.max || self.by_addr.contains_key(&remote) {
                refused += 1;
                continue; // dropped: closed
            }
            let idx = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            if registry.register(&mut stream, Token(FIRST_CONN + idx), Interest::READABLE).is_err() {
                self.free.push(idx);
                continue;
            }
            let _ = stream.set_nodelay(true);
            self.conns[idx] = Some(Conn {
                stream,
                remote,
                rbuf: vec![0u8; 2 + MAX_FRAME].into_boxed_slice(),
                rlen: 0,
                wbuf: Vec::new(),
                wpos: 0,
                peer: None,
                opened: now,
                want_write: false,
            });
            self.by_addr.insert(remote, idx);
            accepted += 1;
        }
        (accepted, refused)
    }

    /// The connection behind a poll token, if it is one of ours.
    pub(crate) fn conn_of(&self, token: Token) -> Option<usize> {
        let idx = token.0.checked_sub(FIRST_CONN)?;
        self.conns.get(idx)?.as_ref().map(|_| idx)
    }

    pub(crate) fn conn(&self, idx: usize) -> Option<&Conn> {
        self.conns.get(idx)?.as_ref()
    }

    /// Reads the next whole frame of connection `idx` into `out` (at least [`MAX_FRAME`] bytes).
    pub(crate) fn read_frame(&mut self, idx: usize, out: &mut [u8]) -> Read4571 {
        let Some(c) = self.conns.get_mut(idx).and_then(Option::as_mut) else { return Read4571::Closed };
        loop {
            if c.rlen >= 2 {
                let len = usize::from(u16::from_be_bytes([c.rbuf[0], c.rbuf[1]]));
                if len > MAX_FRAME || len == 0 {
                    return Read4571::Closed;
                }
                if c.rlen >= 2 + len {
                    out[..len].copy_from_slice(&c.rbuf[2..2 + len]);
                    c.rbuf.copy_within(2 + len..c.rlen, 0);
                    c.rlen -= 2 + len;
                    return Read4571::Frame(len);
                }
            }
            match c.stream.read(&mut c.rbuf[c.rlen..]) {
                Ok(0) => return Read4571::Closed,
                Ok(n) => c.rlen += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Read4571::Idle,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Read4571::Closed,
            }
        }
    }

    /// Binds the connection from `remote` to peer `id` (its `Rtc` sends there: the address passed ICE).
    pub(crate) fn bind(&mut self, remote: SocketAddr, id: u64) {
        if let Some(c) = self.by_addr.get(&remote).and_then(|i| self.conns[*i].as_mut()) {
            c.peer = Some(id);
        }
    }

    /// Queues one packet, framed, for the connection from `to`; false when there is none or its buffer is full.
    pub(crate) fn send(&mut self, to: SocketAddr, packet: &[u8]) -> bool {
        let Some(&idx) = self.by_addr.get(&to) else { return false };
        let Some(c) = self.conns[idx].as_mut() else { return false };
        let Ok(len) = u16::try_from(packet.len()) else { return false };
        if c.wbuf.len() - c.wpos + 2 + packet.len() > WRITE_MAX {
            return false;
        }
        if c.wpos == c.wbuf.len() {
            c.wbuf.clear();
            c.wpos = 0;
            self.dirty.push(idx);
        }
        c.wbuf.extend_from_slice(&len.to_be_bytes());
        c.wbuf.extend_from_slice(packet);
        true
    }

    /// Writes what was queued this turn (one `write` per connection, more only for a partial write); returns the
    /// connections that failed (to be closed by the caller).
    pub(crate) fn flush(&mut self, registry: &Registry, failed: &mut Vec<usize>) {
        for idx in self.dirty.drain(..) {
            let Some(c) = self.conns.get_mut(idx).and_then(Option::as_mut) else { continue };
            if c.want_write {
                continue; // waits for writability
            }
            write_out(c, registry, idx, failed);
        }
    }

    /// The connection became writable again.
    pub(crate) fn writable(&mut self, idx: usize, registry: &Registry, failed: &mut Vec<usize>) {
        let Some(c) = self.conns.get_mut(idx).and_then(Option::as_mut) else { return };
        if c.want_write {
            c.want_write = false;
            let _ = registry.reregister(&mut c.stream, Token(FIRST_CONN + idx), Interest::READABLE);
        }
        write_out(c, registry, idx, failed);
    }

    /// Closes connection `idx`; returns the peer it was bound to.
    pub(crate) fn close(&mut self, registry: &Registry, idx: usize) -> Option<u64> {
        let mut c = self.conns.get_mut(idx)?.take()?;
        let _ = registry.deregister(&mut c.stream);
        if self.by_addr.get(&c.remote) == Some(&idx) {
            self.by_addr.remove(&c.remote);
        }
        self.free.push(idx);
        c.peer
    }

    /// Connections no peer has sent to within [`UNBOUND_FOR`], and those of peer `gone` if any.
    pub(crate) fn stale(&self, now: Instant, gone: Option<u64>, out: &mut Vec<usize>) {
        for (i, c) in self.conns.iter().enumerate() {
            let Some(c) = c else { continue };
            let unbound = c.peer.is_none() && now.saturating_duration_since(c.opened) >= UNBOUND_FOR;
            if unbound || (gone.is_some() && c.peer == gone) {
                out.push(i);
            }
        }
    }
}

fn write_out(c: &mut Conn, registry: &Registry, idx: usize, failed: &mut Vec<usize>) {
    while c.wpos < c.wbuf.len() {
        match c.stream.write(&c.wbuf[c.wpos..]) {
            Ok(0) => {
                failed.push(idx);
                return;
            }
            Ok(n) => c.wpos += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if !c.want_write {
                    c.want_write = true;
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    let _ = registry.reregister(&mut c.stream, Token(FIRST_CONN + idx), interest);
                }
                return;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => {
                failed.push(idx);
                return;
            }
        }
    }
    c.wbuf.clear();
    c.wpos = 0;
    if c.wbuf.capacity() > 4 * 1024 {
        // A burst (a DTLS flight) grew it: give the memory back.
        c.wbuf.shrink_to(4 * 1024);
    }
}
