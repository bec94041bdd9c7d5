//! Batched UDP sends: datagrams are collected and flushed with one `sendmmsg(2)` per batch.
//!
//! The batch owns its buffers: [`BATCH`] fixed slots of [`SLOT_BYTES`] allocated once. The thin egress path writes
//! each forwarded packet straight into the next slot ([`SendBatch::push_with`]: header, payload and SRTP tag built
//! in place); str0m's own transmits (STUN, DTLS, RTCP: a few per peer per second) are copied into one.

use std::io::IoSlice;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};

use crate::Stats;

/// Datagrams per `sendmmsg` call.
pub(crate) const BATCH: usize = 64;

/// Bytes per batch slot: above str0m's largest datagram (its MTU is 1,150 bytes by default).
pub(crate) const SLOT_BYTES: usize = 2048;

/// A bounded batch of outgoing datagrams in buffers allocated once, for one socket.
pub(crate) struct SendBatch {
    socket: Arc<UdpSocket>,
    stats: Arc<Stats>,
    addrs: Vec<SocketAddr>,
    /// `BATCH` slots of `SLOT_BYTES`; slot `i` holds `lens[i]` bytes.
    bufs: Box<[u8]>,
    lens: Vec<usize>,
    headers: MultiHeaders<SockaddrStorage>,
    /// Receipt times of packets whose last local copy is queued: their fan-out ends with the next flush.
    fanouts: Vec<Instant>,
}

impl SendBatch {
    pub(crate) fn new(socket: Arc<UdpSocket>, stats: Arc<Stats>) -> Self {
        Self {
            socket,
            stats,
            addrs: Vec::with_capacity(BATCH),
            bufs: vec![0u8; BATCH * SLOT_BYTES].into_boxed_slice(),
            lens: Vec::with_capacity(BATCH),
            headers: MultiHeaders::preallocate(BATCH, None),
            fanouts: Vec::with_capacity(16),
        }
    }

    /// Queues a copy of one datagram, flushing first if the batch is full; one larger than a slot is sent on its
    /// own.
    pub(crate) fn push(&mut self, to: SocketAddr, data: &[u8]) {
        if data.len() > SLOT_BYTES {
            let stats = &self.stats;
            match self.socket.send_to(data, to) {
                Ok(_) => {
                    stats.datagrams_out.fetch_add(1, Ordering::Relaxed);
                    stats.send_calls.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    stats.send_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            return;
        }
        self.push_with(to, |slot| {
            slot[..data.len()].copy_from_slice(data);
            Some(data.len())
        });
    }

    /// Queues one datagram that `write` builds in the next slot (returning its length, or `None` to queue nothing),
    /// flushing first if the batch is full.
    pub(crate) fn push_with(
        &mut self,
        to: SocketAddr,
        write: impl FnOnce(&mut [u8; SLOT_BYTES]) -> Option<usize>,
    ) -> bool {
        if self.lens.len() == BATCH {
            self.flush();
        }
        let i = self.lens.len();
        let slot: &mut [u8; SLOT_BYTES] = match (&mut self.bufs[i * SLOT_BYTES..(i + 1) * SLOT_BYTES]).try_into() {
            Ok(s) => s,
            Err(_) => return false,
        };
        match write(slot) {
            Some(len) if len <= SLOT_BYTES => {
                self.addrs.push(to);
                self.lens.push(len);
                true
            }
            _ => false,
        }
    }

    /// Marks the end of one packet's fan-out: everything of it is queued; the next flush records its time.
    pub(crate) fn fanout_done(&mut self, received: Instant) {
        self.fanouts.push(received);
    }

    /// Sends everything queued. A full socket buffer (`EAGAIN`) drops the rest of the batch, counted.
    pub(crate) fn flush(&mut self) {
        let stats = &self.stats;
        let socket = &self.socket;
        let mut start = 0usize;
        let n = self.lens.len();
        while start < n {
            let count = n - start;
            let bufs = &self.bufs;
            let lens = &self.lens;
            let slices: [[IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|i| {
                let k = start + i;
                [IoSlice::new(lens.get(k).map_or(&[][..], |len| &bufs[k * SLOT_BYTES..k * SLOT_BYTES + len]))]
            });
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
        self.lens.clear();
        if !self.fanouts.is_empty() {
            let now = Instant::now();
            for t in self.fanouts.drain(..) {
                stats.record_fanout(now.saturating_duration_since(t));
            }
        }
    }
}
