//! The writing half of a connection: everything the hub sends to one client goes through here, and no write can
//! hold anything else up.
//!
//! The connection task runs this future next to its reader (one task, two futures), so a client that stops reading
//! blocks only its writer: the reader still reads, and still honours the auth deadline, the heartbeat and close
//! requests. The reader hands the writer replies, pings and at last a close frame through a small bounded queue
//! ([`Outbox`]); after the welcome it hands over the room's queue of event frames, which the writer drains itself.
//!
//! Invariants:
//! - Every write (one batch of frames, then one flush) completes within `limits.write_timeout_ms`, or the writer gives
//!   up ([`WriterEnd::TimedOut`]) and the connection is dropped: a socket nobody reads is never kept.
//! - Replies go out in the order the reader queued them; the room's events only after the welcome (they are handed
//!   over behind it in the same queue).
//! - The reader reads a client's next frame only while the outbox has room for what answering it may queue
//!   ([`Outbox::has_room`], [`HEADROOM`]), so its sends never wait: a client that pipelines requests faster than it
//!   reads replies is slowed down (its frames stay unread), not dropped, and the reader keeps its deadlines while it
//!   waits for room ([`Outbox::room`]). Once the writer has ended, every send fails and [`Outbox::writer_gone`]
//!   completes, so the reader stops.

use std::sync::Arc;
use std::time::Duration;

use futures_util::SinkExt as _;
use futures_util::stream::SplitSink;
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

pub(super) type Sink = SplitSink<WebSocketStream<TcpStream>, Message>;

/// Frames queued for the writer at most (replies, pings, the close frame). The reader answers one request at a time,
/// so this fills only when the client stops reading.
const OUTBOX: usize = 64;
/// Frames the reader may queue for one client frame at most (the welcome and the room's events behind it).
pub(super) const HEADROOM: usize = 2;
/// Frames written per flush at most.
const BATCH: usize = 64;

/// What the reader hands the writer.
pub(super) enum Out {
    Frame(Message),
    /// The room's event frames, from now on (sent right behind the welcome).
    Events(mpsc::Receiver<Utf8Bytes>),
    /// The last frame: write it and stop.
    Close(CloseFrame),
}

/// How the writer ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum WriterEnd {
    /// The reader is done with it (the outbox closed) or the close frame went out.
    Done,
    /// A write did not complete within the write timeout: the client is not reading.
    TimedOut,
    /// The socket failed.
    Failed,
}

/// The reader's end of the writer's queue.
pub(super) struct Outbox {
    tx: Option<mpsc::Sender<Out>>,
    abort: Arc<Notify>,
}

/// The writer's end.
pub(super) struct Inbox {
    rx: mpsc::Receiver<Out>,
    abort: Arc<Notify>,
}

/// The writer ended (or the outbox is full, for [`Outbox::try_send`]): the client is not reading.
#[derive(Debug)]
pub(super) struct Stalled;

impl Outbox {
    pub(super) fn new() -> (Self, Inbox) {
        let (tx, rx) = mpsc::channel(OUTBOX);
        let abort = Arc::new(Notify::new());
        (Self { tx: Some(tx), abort: Arc::clone(&abort) }, Inbox { rx, abort })
    }

    /// Queues `out` if there is room now (after [`Self::has_room`], there is for [`HEADROOM`] frames).
    pub(super) fn send(&self, out: Out) -> Result<(), Stalled> {
        self.tx.as_ref().ok_or(Stalled)?.try_send(out).map_err(|_| Stalled)
    }

    /// True when [`HEADROOM`] frames fit (or the writer is gone, which the reader learns from its next send).
    pub(super) fn has_room(&self) -> bool {
        self.tx.as_ref().is_none_or(|tx| tx.capacity() >= HEADROOM || tx.is_closed())
    }

    /// Completes once [`Self::has_room`] holds.
    pub(super) async fn room(&self) {
        if let Some(tx) = &self.tx {
            // Permits are released at once: only the reader sends, so the room stays until it does.
            let _ = tx.reserve_many(HEADROOM).await;
        }
    }

    /// Completes once the writer has ended.
    pub(super) async fn writer_gone(&self) {
        match &self.tx {
            Some(tx) => tx.closed().await,
            None => std::future::pending().await,
        }
    }

    /// Nothing more will be queued: the writer ends once it has written what is.
    pub(super) fn close(&mut self) {
        self.tx = None;
    }

    /// Makes the writer give up the write it is stuck in (it ends with [`WriterEnd::TimedOut`]).
    pub(super) fn abort(&self) {
        self.abort.notify_one();
    }
}

/// Writes what the outbox and then the room's event queue hold until the outbox closes, a close frame is written,
/// or a write fails, times out or is aborted. Returns the sink so the caller can reunite the socket.
pub(super) async fn run(mut sink: Sink, inbox: Inbox, timeout: Duration) -> (Sink, WriterEnd) {
    let Inbox { rx: mut outbox, abort } = inbox;
    let mut events: Option<mpsc::Receiver<Utf8Bytes>> = None;
    let mut batch: Vec<Message> = Vec::new();
    loop {
        // Wait for the first frame (the outbox first: replies, and the close frame, never wait behind events).
        let first = tokio::select! {
            biased;
            out = outbox.recv() => match out {
                None => return (sink, WriterEnd::Done),
                Some(Out::Frame(m)) => m,
                Some(Out::Events(rx)) => {
                    events = Some(rx);
                    continue;
                }
                Some(Out::Close(frame)) => {
                    let end = write(&mut sink, timeout, &abort, &mut Vec::new(), Some(frame)).await;
                    return (sink, end.unwrap_or(WriterEnd::Done));
                }
            },
            frame = next_event(&mut events) => match frame {
                Some(text) => Message::Text(text),
                None => {
                    events = None;
                    continue;
                }
            },
        };
        batch.push(first);
        // Then whatever else is ready, up to a batch.
        let mut close = None;
        while batch.len() < BATCH && close.is_none() {
            match outbox.try_recv() {
                Ok(Out::Frame(m)) => batch.push(m),
                Ok(Out::Events(rx)) => events = Some(rx),
                Ok(Out::Close(frame)) => close = Some(frame),
                Err(_) => match events.as_mut().map(mpsc::Receiver::try_recv) {
                    Some(Ok(text)) => batch.push(Message::Text(text)),
                    _ => break,
                },
            }
        }
        let closing = close.is_some();
        if let Some(end) = write(&mut sink, timeout, &abort, &mut batch, close).await {
            return (sink, end);
        }
        if closing {
            return (sink, WriterEnd::Done);
        }
    }
}

/// The next event frame, or never when there is no event queue yet.
async fn next_event(events: &mut Option<mpsc::Receiver<Utf8Bytes>>) -> Option<Utf8Bytes> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Writes `batch` (emptied) and then `close`, with one flush, within `timeout` (and unless aborted). `None` when
/// all went out.
async fn write(
    sink: &mut Sink,
    timeout: Duration,
    abort: &Notify,
    batch: &mut Vec<Message>,
    close: Option<CloseFrame>,
) -> Option<WriterEnd> {
    let all = async {
        for m in batch.drain(..) {
            sink.feed(m).await?;
        }
        if let Some(frame) = close {
            sink.feed(Message::Close(Some(frame))).await?;
        }
        sink.flush().await
    };
    // A timed-out batch's unwritten frames are dropped with the future.
    let result = tokio::select! {
        result = tokio::time::timeout(timeout, all) => result,
        () = abort.notified() => return Some(WriterEnd::TimedOut),
    };
    match result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "write failed");
            Some(WriterEnd::Failed)
        }
        Err(_) => Some(WriterEnd::TimedOut),
    }
}
