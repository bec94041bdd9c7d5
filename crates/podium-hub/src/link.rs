//! What a room task holds for one connection: its id and the connection's shared queue (`conn::writer`), through
//! which it queues ready-made JSON event frames (bounded: a full queue refuses) and asks the connection to close (a
//! separate, never-full slot, so a close cannot be blocked by a full queue).

use std::sync::Arc;

use podium_proto::CloseCode;
use tokio_tungstenite::tungstenite::Utf8Bytes;

pub(crate) use crate::conn::{EventRefused, Queue};

/// What a room task holds for one joined connection.
#[derive(Clone)]
pub(crate) struct Link {
    /// Unique per connection within this hub.
    pub(crate) conn_id: u64,
    queue: Arc<Queue>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("conn_id", &self.conn_id).finish_non_exhaustive()
    }
}

impl Link {
    pub(crate) fn new(conn_id: u64, queue: Arc<Queue>) -> Self {
        Self { conn_id, queue }
    }

    /// Queues a ready-made JSON frame for the client, unless its queue is full or the connection is closing.
    pub(crate) fn try_send(&self, frame: Utf8Bytes) -> Result<(), EventRefused> {
        self.queue.try_send_event(frame)
    }

    /// Asks the connection to close with `code` (the first request wins).
    pub(crate) fn close(&self, code: CloseCode) {
        self.queue.close(code);
    }
}
