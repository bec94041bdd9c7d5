//! Batched UDP sends: transmits are collected and flushed with one `sendmmsg(2)` per batch.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::Instant;

use mio::net::UdpSocket;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};

use crate::Stats;

/// Datagrams per `sendmmsg` call.
pub(crate) const BATCH: usize = 64;

/// A bounded batch of outgoing datagrams (the buffers are str0m's, moved in, not copied).
pub(crate) struct SendBatch {
    addrs: Vec<SocketAddr>,
    bufs: Vec<Vec<u8>>,
    headers: MultiHeaders<SockaddrStorage>,
    /// Receipt times of packets whose last local copy is queued: their fan-out ends with the next flush.
    fanouts: Vec<Instant>,
}

impl SendBatch {
    pub(crate) fn new() -> Self {
        Self {
            addrs: Vec::with_capacity(BATCH),
            bufs: Vec::with_capacity(BATCH),
            headers: MultiHeaders::preallocate(BATCH, None),
            fanouts: Vec::with_capacity(16),
        }
    }

    /// Queues one datagram, flushing first if the batch is full.
    pub(crate) fn push(&mut self, socket: &UdpSocket, stats: &Stats, to: SocketAddr, buf: Vec<u8>) {
        if self.bufs.len() == BATCH {
            self.flush(socket, stats);
        }
        self.addrs.push(to);
        self.bufs.push(buf);
    }

    /// Marks the end of one packet's fan-out: everything of it is queued; the next flush records its time.
    pub(crate) fn fanout_done(&mut self, received: Instant) {
        self.fanouts.push(received);
    }

    /// Sends everything queued. A full socket buffer (`EAGAIN`) drops the rest of the batch, counted.
    pub(crate) fn flush(&mut self, socket: &UdpSocket, stats: &Stats) {
        let mut start = 0usize;
        let n = self.bufs.len();
        while start < n {
            let count = n - start;
            let slices: [[IoSlice<'_>; 1]; BATCH] =
                std::array::from_fn(|i| [IoSlice::new(self.bufs.get(start + i).map_or(&[][..], |b| &b[..]))]);
            let addrs: [Option<SockaddrStorage>; BATCH] =
                std::array::from_fn(|i| self.addrs.get(start + i).map(|a| SockaddrStorage::from(*a)));
            let res = sendmmsg(
                socket.as_raw_fd(),
                &mut self.headers,
                slices[..count].iter(),
                &addrs[..count],
                [],
                MsgFlags::MSG_DONTWAIT,
            );
            match res {
                Ok(results) => {
                    let sent = results.count();
                    stats.datagrams_out.fetch_add(sent as u64, Ordering::Relaxed);
                    stats.send_calls.fetch_add(1, Ordering::Relaxed);
                    if sent == 0 {
                        stats.send_dropped.fetch_add(count as u64, Ordering::Relaxed);
                        break;
                    }
                    start += sent;
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    // EAGAIN (buffer full) or a per-destination error on the first datagram: drop that one
                    // and carry on with the rest, so one bad address cannot block the batch.
                    stats.send_dropped.fetch_add(1, Ordering::Relaxed);
                    if e != nix::errno::Errno::EAGAIN {
                        tracing::debug!(error = %e, to = %self.addrs[start], "sendmmsg failed");
                    }
                    start += 1;
                }
            }
        }
        self.addrs.clear();
        self.bufs.clear();
        if !self.fanouts.is_empty() {
            let now = Instant::now();
            for t in self.fanouts.drain(..) {
                stats.record_fanout(now.saturating_duration_since(t));
            }
        }
    }
}
