//! The channel between a room task and one connection task: events go down a bounded queue of ready-made JSON
//! frames; closing goes through a separate, never-full control slot so it cannot be blocked by a full queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use podium_proto::CloseCode;
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// Out-of-band instruction to close a connection.
#[derive(Debug, Default)]
pub(crate) struct Control {
    code: AtomicU16,
    notify: Notify,
}

impl Control {
    /// Asks the connection to close with `code` (the first request wins).
    pub(crate) fn close(&self, code: CloseCode) {
        if self.code.compare_exchange(0, code.code(), Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.notify.notify_one();
        }
    }

    /// Waits until a close is requested, and returns its code.
    pub(crate) async fn closed(&self) -> CloseCode {
        loop {
            let code = self.code.load(Ordering::Acquire);
            if code != 0 {
                // unwrap_or: only codes from CloseCode::code() are ever stored.
                return CloseCode::from_code(code).unwrap_or(CloseCode::Unavailable);
            }
            self.notify.notified().await;
        }
    }
}

/// What a room task holds for one joined connection.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    /// Unique per connection within this hub.
    pub(crate) conn_id: u64,
    /// Ready-made JSON frames for the client.
    pub(crate) frames: mpsc::Sender<Utf8Bytes>,
    /// Close requests.
    pub(crate) control: Arc<Control>,
}
