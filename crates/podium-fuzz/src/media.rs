//! The two media targets, on one real SFU worker per thread ([`podium_media::fuzzing::FuzzWorker`]).
//!
//! - `sdp_offer`: the bytes (UTF-8) are an SDP offer for the worker's offer path.
//! - `media_datagram`: the first byte holds flags (bit 0: deliver the client's first STUN check, so its address
//!   is bound; bit 1: the peer may publish); then datagrams follow, each as a header byte (bit 7: from the client's
//!   address, else from an unknown one; bits 0..=6: clock step in 10 ms units), a little-endian `u16` length and
//!   that many bytes (cut to what is left). At most [`MAX_DATAGRAMS`] per input.

use std::cell::RefCell;
use std::time::Duration;

use podium_media::fuzzing::{Datagram, FuzzWorker};

/// Datagrams per input at most.
const MAX_DATAGRAMS: usize = 64;

thread_local! {
    static WORKER: RefCell<Option<FuzzWorker>> = const { RefCell::new(None) };
}

fn with_worker(f: impl FnOnce(&mut FuzzWorker)) {
    WORKER.with(|w| {
        let mut w = w.borrow_mut();
        if w.is_none() {
            *w = Some(FuzzWorker::new().unwrap_or_else(|e| panic!("cannot build a worker: {e}")));
        }
        if let Some(worker) = w.as_mut() {
            f(worker);
        }
    });
}

/// An untrusted SDP offer through the SFU's offer path; panics when an invariant breaks.
pub fn sdp_offer(data: &[u8]) {
    let Ok(sdp) = std::str::from_utf8(data) else { return };
    with_worker(|w| {
        if let Err(e) = w.offer(sdp) {
            panic!("{e}");
        }
    });
}

/// Splits `data` into the session flags and datagrams (see the module docs).
fn datagrams(data: &[u8]) -> (u8, Vec<Datagram<'_>>) {
    let Some((&flags, mut rest)) = data.split_first() else { return (0, Vec::new()) };
    let mut out = Vec::new();
    while out.len() < MAX_DATAGRAMS {
        let [header, lo, hi, tail @ ..] = rest else { break };
        let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(tail.len());
        let (payload, next) = tail.split_at(len);
        out.push(Datagram {
            from_client: header & 0x80 != 0,
            after: Duration::from_millis(u64::from(header & 0x7f) * 10),
            data: payload,
        });
        rest = next;
    }
    (flags, out)
}

/// Untrusted datagrams to a client session kept across inputs on a real worker ([`FuzzWorker::live`]); panics
/// when an invariant breaks.
pub fn media_datagram(data: &[u8]) {
    let (flags, datagrams) = datagrams(data);
    with_worker(|w| {
        if let Err(e) = w.live(flags & 1 != 0, flags & 2 != 0, &datagrams) {
            panic!("{e}");
        }
    });
}
