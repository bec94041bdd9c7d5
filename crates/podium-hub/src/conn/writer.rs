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

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::SinkExt as _;
use futures_util::stream::SplitSink;
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::tls::Stream;

pub(super) type Sink = SplitSink<WebSocketStream<Stream>, Message>;

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

/// The queue between the reader and the writer. Not a channel: a channel allocates its first block of slots up
/// front (about 2 KiB here), which every idle connection would pay for; this holds only what is queued.
#[derive(Default)]
struct Queue {
    /// Never locked across an await.
    items: std::sync::Mutex<VecDeque<Out>>,
    /// Something was queued, or the reader closed the queue (one waiter: the writer).
    to_writer: Notify,
    /// Room was made, or the writer ended (the reader may wait for both at once).
    to_reader: Notify,
    /// Give up the write in progress.
    abort: Notify,
    /// The reader will queue nothing more.
    closed: AtomicBool,
    /// The writer has ended.
    writer_gone: AtomicBool,
}

impl Queue {
    fn items(&self) -> std::sync::MutexGuard<'_, VecDeque<Out>> {
        // A push or a pop cannot leave the queue half-changed, so a poisoned lock is still consistent.
        self.items.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn pop(&self) -> Option<Out> {
        let out = {
            let mut items = self.items();
            let out = items.pop_front();
            if items.is_empty() && items.capacity() > 0 {
                // An idle connection holds no buffer.
                *items = VecDeque::new();
            }
            out
        };
        if out.is_some() {
            self.to_reader.notify_waiters();
        }
        out
    }

    /// Waits until `ready` holds, woken by `notify` (registered before each check, so no wake-up is missed).
    async fn wait(&self, notify: &Notify, ready: impl Fn() -> bool) {
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if ready() {
                return;
            }
            notified.await;
        }
    }
}

/// The reader's end of the writer's queue.
pub(super) struct Outbox(Arc<Queue>);

/// The writer's end; dropping it (when the writer ends) tells the reader.
pub(super) struct Inbox(Arc<Queue>);

impl Drop for Inbox {
    fn drop(&mut self) {
        self.0.writer_gone.store(true, Ordering::Release);
        self.0.to_reader.notify_waiters();
    }
}

/// The writer ended (or, for [`Outbox::send`] without [`Outbox::has_room`] first, the outbox is full): the client
/// is not reading.
#[derive(Debug)]
pub(super) struct Stalled;

impl Outbox {
    pub(super) fn new() -> (Self, Inbox) {
        let queue = Arc::new(Queue::default());
        (Self(Arc::clone(&queue)), Inbox(queue))
    }

    /// Queues `out` if there is room now (after [`Self::has_room`], there is for [`HEADROOM`] frames).
    pub(super) fn send(&self, out: Out) -> Result<(), Stalled> {
        let q = &self.0;
        if q.closed.load(Ordering::Acquire) || q.writer_gone.load(Ordering::Acquire) {
            return Err(Stalled);
        }
        {
            let mut items = q.items();
            if items.len() >= OUTBOX {
                return Err(Stalled);
            }
            items.push_back(out);
        }
        q.to_writer.notify_one();
        Ok(())
    }

    /// True when [`HEADROOM`] frames fit (or the writer is gone, which the reader learns from its next send).
    pub(super) fn has_room(&self) -> bool {
        self.0.writer_gone.load(Ordering::Acquire) || self.0.items().len() + HEADROOM <= OUTBOX
    }

    /// Completes once [`Self::has_room`] holds.
    pub(super) async fn room(&self) {
        self.0.wait(&self.0.to_reader, || self.has_room()).await;
    }

    /// Completes once the writer has ended.
    pub(super) async fn writer_gone(&self) {
        self.0.wait(&self.0.to_reader, || self.0.writer_gone.load(Ordering::Acquire)).await;
    }

    /// Nothing more will be queued: the writer ends once it has written what is.
    pub(super) fn close(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.to_writer.notify_one();
    }

    /// Makes the writer give up the write it is stuck in (it ends with [`WriterEnd::TimedOut`]).
    pub(super) fn abort(&self) {
        self.0.abort.notify_one();
    }
}

impl Inbox {
    /// The next item, or `None` once the queue is closed and empty.
    async fn recv(&self) -> Option<Out> {
        let q = &self.0;
        q.wait(&q.to_writer, || !q.items().is_empty() || q.closed.load(Ordering::Acquire)).await;
        q.pop()
    }

    fn try_recv(&self) -> Option<Out> {
        self.0.pop()
    }
}

/// Writes what the outbox and then the room's event queue hold until the outbox closes, a close frame is written,
/// or a write fails, times out or is aborted. Returns the sink so the caller can reunite the socket.
pub(super) async fn run(mut sink: Sink, outbox: Inbox, timeout: Duration) -> (Sink, WriterEnd) {
    let abort = &outbox.0.abort;
    let mut events: Option<mpsc::Receiver<Utf8Bytes>> = None;
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
                Some(Out::Close(frame)) => Message::Close(Some(frame)),
            },
            frame = next_event(&mut events) => match frame {
                Some(text) => Message::Text(text),
                None => {
                    events = None;
                    continue;
                }
            },
        };
        // Boxed: the write's state (its timer, the sink's futures) exists only while writing, not in every idle
        // connection's writer.
        match Box::pin(write(&mut sink, timeout, abort, first, &outbox, &mut events)).await {
            Ok(false) => {}
            Ok(true) => return (sink, WriterEnd::Done),
            Err(end) => return (sink, end),
        }
    }
}

/// The next frame that is ready without waiting: from the outbox first, then the room's events.
fn ready(outbox: &Inbox, events: &mut Option<mpsc::Receiver<Utf8Bytes>>) -> Option<Message> {
    loop {
        match outbox.try_recv() {
            Some(Out::Frame(m)) => return Some(m),
            Some(Out::Close(frame)) => return Some(Message::Close(Some(frame))),
            Some(Out::Events(rx)) => *events = Some(rx),
            None => return events.as_mut()?.try_recv().ok().map(Message::Text),
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

/// Writes `first` and whatever else is ready (up to [`BATCH`] frames, or through a close frame), with one flush,
/// within `timeout` (and unless aborted). `Ok(true)` when a close frame went out.
async fn write(
    sink: &mut Sink,
    timeout: Duration,
    abort: &Notify,
    first: Message,
    outbox: &Inbox,
    events: &mut Option<mpsc::Receiver<Utf8Bytes>>,
) -> Result<bool, WriterEnd> {
    let all = async {
        let mut next = Some(first);
        let mut n = 0;
        let mut closing = false;
        while let Some(m) = next.take() {
            closing = matches!(m, Message::Close(_));
            sink.feed(m).await?;
            n += 1;
            if !closing && n < BATCH {
                next = ready(outbox, events);
            }
        }
        sink.flush().await.map(|()| closing)
    };
    // A timed-out batch's unwritten frames are dropped with the future.
    let result = tokio::select! {
        result = tokio::time::timeout(timeout, all) => result,
        () = abort.notified() => return Err(WriterEnd::TimedOut),
    };
    match result {
        Ok(Ok(closing)) => Ok(closing),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "write failed");
            Err(WriterEnd::Failed)
        }
        Err(_) => Err(WriterEnd::TimedOut),
    }
}
