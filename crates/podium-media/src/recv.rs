//! Reading a worker's UDP socket with the kernel's receive time.
//!
//! The socket has `SO_TIMESTAMPNS` on (see `Media::start`), so each datagram comes with the time the kernel queued
//! it. A worker that falls behind (its core busy with other work, or a long fan-out) finds datagrams that waited in
//! the socket's queue; the wait is what makes audio late, and only the kernel's timestamp shows it: the time of
//! the read is the same for a fresh datagram and for one that waited a second. The worker counts that wait into
//! the frame's arrival time and sheds frames that are already older than `FORWARD_STALE_MS` instead of fanning
//! them out late (a fan-out to thousands of listeners is the expensive part; shedding it lets the worker catch up,
//! and its commands, such as offers, and handshakes wait less).
//!
//! The timestamp is wall-clock (`CLOCK_REALTIME`); a wait outside 0..[`MAX_WAIT`] (a clock step between the kernel's
//! stamp and our read) is taken as zero, so a clock change can never make fresh audio look late.

use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg};
use nix::sys::time::TimeSpec;

/// Longer waits than this are taken for a clock step, not a wait (a socket buffer holds a few seconds at most).
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(10);

/// Turns `SO_TIMESTAMPNS` on for `socket`; false if the kernel refused (waits then read as zero).
pub(crate) fn enable_timestamps(socket: &std::net::UdpSocket) -> bool {
    nix::sys::socket::setsockopt(socket, nix::sys::socket::sockopt::ReceiveTimestampns, &true).is_ok()
}

/// A reader with its control-message buffer, allocated once.
pub(crate) struct Reader {
    cmsg: Vec<u8>,
}

impl Reader {
    pub(crate) fn new() -> Self {
        Self { cmsg: nix::cmsg_space!(TimeSpec) }
    }

    /// Reads one datagram into `buf`: its length, its source, and how long it waited in the socket's queue (zero
    /// when the kernel gave no timestamp). Errors are the socket's (`WouldBlock` when it is empty); a datagram
    /// from an address that is not IP is read and reported as `InvalidData`.
    pub(crate) fn recv(
        &mut self,
        socket: &impl AsRawFd,
        buf: &mut [u8],
    ) -> std::io::Result<(usize, SocketAddr, Duration)> {
        let mut iov = [IoSliceMut::new(buf)];
        let msg = recvmsg::<SockaddrStorage>(socket.as_raw_fd(), &mut iov, Some(&mut self.cmsg), MsgFlags::empty())
            .map_err(std::io::Error::from)?;
        let mut waited = Duration::ZERO;
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmTimestampns(ts) = c {
                    waited = wait_since(ts);
                }
            }
        }
        let source = msg.address.as_ref().and_then(to_socket_addr);
        let n = msg.bytes;
        match source {
            Some(source) => Ok((n, source, waited)),
            None => Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "datagram from a non-IP address")),
        }
    }
}

/// How long ago the kernel stamped `ts` (realtime), or zero for a stamp in the future or past [`MAX_WAIT`].
fn wait_since(ts: TimeSpec) -> Duration {
    let (Ok(secs), Ok(nanos)) = (u64::try_from(ts.tv_sec()), u32::try_from(ts.tv_nsec())) else {
        return Duration::ZERO;
    };
    let Some(stamp) = UNIX_EPOCH.checked_add(Duration::new(secs, nanos)) else { return Duration::ZERO };
    match SystemTime::now().duration_since(stamp) {
        Ok(w) if w <= MAX_WAIT => w,
        _ => Duration::ZERO,
    }
}

fn to_socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A datagram that sat in the queue is read with (at least) that wait; one read at once with a short wait.
    #[test]
    fn reads_the_time_a_datagram_waited_in_the_queue() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(enable_timestamps(&rx), "SO_TIMESTAMPNS");
        rx.set_nonblocking(true).unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        let mut reader = Reader::new();
        let mut buf = [0u8; 64];
        let err = reader.recv(&rx, &mut buf).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
        // The kernel turns receive timestamps on for the whole stack a moment after the first socket asks (a
        // deferred static key); until then a datagram is stamped when it is read. The hub's sockets ask at start.
        std::thread::sleep(Duration::from_millis(200));

        tx.send_to(b"old", to).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        tx.send_to(b"new", to).unwrap();
        let (n, source, waited) = reader.recv(&rx, &mut buf).unwrap();
        assert_eq!((&buf[..n], source), (&b"old"[..], tx.local_addr().unwrap()));
        assert!(waited >= Duration::from_millis(290) && waited < Duration::from_secs(5), "{waited:?}");
        let (n, _, waited) = reader.recv(&rx, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"new");
        assert!(waited < Duration::from_millis(250), "{waited:?}");
    }

    #[test]
    fn clock_steps_read_as_no_wait() {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let future = now + Duration::from_secs(60);
        assert_eq!(wait_since(TimeSpec::new(future.as_secs() as i64, 0)), Duration::ZERO);
        let long_ago = now - Duration::from_secs(3600);
        assert_eq!(wait_since(TimeSpec::new(long_ago.as_secs() as i64, 0)), Duration::ZERO);
        let recent = now - Duration::from_secs(2);
        let w = wait_since(TimeSpec::new(recent.as_secs() as i64, i64::from(recent.subsec_nanos())));
        assert!(w >= Duration::from_secs(2) && w < Duration::from_secs(3), "{w:?}");
    }
}
