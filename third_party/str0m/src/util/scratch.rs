//! PODIUM PATCH: per-thread scratch buffers.
//!
//! An `Rtc` used to own two 2,000-byte buffers that only live for the length of one call: the one DTLS output is
//! written into, and the one the next RTP packet is built in before it is encrypted. With many `Rtc` per thread
//! (a server), that is 4 KiB per peer of memory that is never in use between calls. A thread now keeps one buffer
//! of each kind, lent out for the call and given back when the [`Scratch`] is dropped, so the steady state does
//! not allocate: one take and one give-back per use, each a thread-local `Cell` swap.
//!
//! If a kind is lent out twice at once (not done today), the second borrower gets a fresh buffer, and the larger
//! of the two is the one kept. A thread that is being torn down falls back to a fresh buffer that is dropped
//! after use.

use std::cell::Cell;
use std::ops::{Deref, DerefMut};
use std::thread::LocalKey;

thread_local! {
    static DTLS: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    static RTP: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// A buffer lent by the current thread, given back on drop.
pub(crate) struct Scratch {
    buf: Vec<u8>,
    home: &'static LocalKey<Cell<Vec<u8>>>,
}

impl Scratch {
    /// The thread's buffer for DTLS output, at least `len` bytes long.
    pub fn dtls(len: usize) -> Scratch {
        Self::take(&DTLS, len)
    }

    /// The thread's buffer for building an outgoing RTP packet (its user sizes it).
    pub fn rtp() -> Scratch {
        Self::take(&RTP, 0)
    }

    fn take(home: &'static LocalKey<Cell<Vec<u8>>>, len: usize) -> Scratch {
        let mut buf = home.try_with(Cell::take).unwrap_or_default();
        if buf.len() < len {
            buf.resize(len, 0);
        }
        Scratch { buf, home }
    }

    /// The buffer as a `Vec`, for users that resize it.
    pub fn vec_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }
}

impl Deref for Scratch {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.buf
    }
}

impl DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        let _ = self.home.try_with(|cell| {
            let other = cell.take();
            cell.set(if other.capacity() > buf.capacity() {
                other
            } else {
                buf
            });
        });
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn reuses_the_thread_buffer() {
        let ptr = {
            let mut s = Scratch::dtls(2000);
            assert_eq!(s.len(), 2000);
            s[0] = 1;
            s.as_ptr()
        };
        let s = Scratch::dtls(1000);
        assert_eq!(s.as_ptr(), ptr);
        assert!(s.len() >= 1000);
    }

    #[test]
    fn nested_takes_get_their_own_buffer() {
        let a = Scratch::dtls(100);
        let b = Scratch::dtls(100);
        assert_ne!(a.as_ptr(), b.as_ptr());
        drop(b);
        drop(a);
        let c = Scratch::dtls(100);
        assert_eq!(c.len(), 100);
    }
}
