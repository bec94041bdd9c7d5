//! The writing half of a connection: everything the hub sends to one client goes through here, and no write can
//! hold anything else up.
//!
//! The connection task runs this future next to its reader (one task, two futures), so a client that stops reading
//! blocks only its writer: the reader still reads, and still honours the auth deadline, the heartbeat and close
//! requests. One shared [`Queue`] per connection carries everything the writer writes: the reader's replies, pings
//! and at last a close frame (the outbox, [`Outbox`]), and the room's event frames, which the room task queues
//! itself through the connection's [`Link`](crate::link::Link) (bounded by `limits.outbound_queue`). The same
//! allocation holds the room's close request (the control slot), so a joined idle connection has exactly one shared
//! allocation besides its socket and its task. It is not a channel: a tokio channel allocates its first block of
//! slots up front (about 2 KiB for the events, about 2 KiB for the outbox), which every idle connection would pay
//! for; the queues here hold only what is queued, give their buffers back when they empty, and the first event
//! waits inline (a single event to an idle listener allocates nothing).
//!
//! Invariants:
//! - Every write (one batch of frames, then one flush) completes within `limits.write_timeout_ms`, or the writer gives
//!   up ([`WriterEnd::TimedOut`]) and the connection is dropped: a socket nobody reads is never kept.
//! - Replies go out in the order the reader queued them, before any event that is waiting; the room's events only
//!   after the welcome (the reader queues [`Out::Events`] behind it: the writer takes no event before it), and none
//!   after the outbox is closed.
//! - The reader reads a client's next frame only while the outbox has room for what answering it may queue
//!   ([`Outbox::has_room`], [`HEADROOM`]), so its sends never wait: a client that pipelines requests faster than it
//!   reads replies is slowed down (its frames stay unread), not dropped, and the reader keeps its deadlines while it
//!   waits for room ([`Outbox::room`]). Once the writer has ended, every send fails and [`Outbox::writer_gone`]
//!   completes, so the reader stops.
//! - The room's events are bounded separately (`limits.outbound_queue`); a full event queue refuses the event
//!   ([`EventRefused::Full`]) and the room task handles the lag (skips, then `resync`, then close 4010), exactly as
//!   with the channel this replaced.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::time::Duration;

use podium_proto::CloseCode;
use tokio::io::{AsyncWriteExt as _, WriteHalf};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::frames::write_frame;
use crate::tls::Stream;

pub(super) type Sink = WriteHalf<Stream>;

/// Frames queued for the writer at most (replies, pings, the close frame). The reader answers one request at a time,
/// so this fills only when the client stops reading.
const OUTBOX: usize = 64;
/// Frames the reader may queue for one client frame at most (the welcome and the room's events behind it, or a pong
/// and an error).
pub(super) const HEADROOM: usize = 2;
/// Frames written per flush at most.
const BATCH: usize = 64;

/// What the reader hands the writer.
pub(super) enum Out {
    Frame(Message),
    /// The room's event frames, from now on (queued right behind the welcome).
    Events,
    /// The last frame: write it and stop (no code: the answer to a client's close frame without one).
    Close(Option<CloseFrame>),
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

/// Why the room's event was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum EventRefused {
    /// The connection has `limits.outbound_queue` events waiting already: it is not reading.
    Full,
    /// The connection is closing or gone.
    Closed,
}

/// A FIFO whose first element waits inline: one element allocates nothing, and the buffer of the rest is given back
/// whenever it empties (an idle connection holds none).
struct InlineFirst<T> {
    first: Option<T>,
    rest: VecDeque<T>,
}

impl<T> Default for InlineFirst<T> {
    fn default() -> Self {
        Self { first: None, rest: VecDeque::new() }
    }
}

impl<T> InlineFirst<T> {
    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    fn push(&mut self, item: T) {
        if self.first.is_none() {
            self.first = Some(item);
        } else {
            self.rest.push_back(item);
        }
    }

    fn pop(&mut self) -> Option<T> {
        let item = self.first.take()?;
        self.first = self.rest.pop_front();
        if self.rest.is_empty() && self.rest.capacity() > 0 {
            self.rest = VecDeque::new();
        }
        Some(item)
    }
}

#[derive(Default)]
struct Items {
    /// The reader's frames.
    outbox: InlineFirst<Out>,
    /// The room's event frames.
    events: InlineFirst<Utf8Bytes>,
    /// The writer has taken [`Out::Events`]: events may be written.
    events_on: bool,
}

/// Everything one connection shares: the writer's queues (outbox and events), the wake-ups between the reader, the
/// writer and the room, and the room's close request. One allocation per connection.
pub(crate) struct Queue {
    /// Never locked across an await.
    items: std::sync::Mutex<Items>,
    /// Events waiting at most (`limits.outbound_queue`).
    max_events: usize,
    /// Something was queued, or the reader closed the queue (one waiter: the writer).
    to_writer: Notify,
    /// Room was made, or the writer ended, or a close was asked for (the reader may wait for all at once).
    to_reader: Notify,
    /// Give up the write in progress.
    abort: Notify,
    /// The reader will queue nothing more.
    closed: AtomicBool,
    /// The writer has ended.
    writer_gone: AtomicBool,
    /// The close the room (or the hub) asked for: a `CloseCode`'s code, 0 for none yet.
    close_code: AtomicU16,
}

impl Queue {
    fn items(&self) -> std::sync::MutexGuard<'_, Items> {
        // A push or a pop cannot leave the queue half-changed, so a poisoned lock is still consistent.
        self.items.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The next frame to write, if one is ready: the outbox first, then (after [`Out::Events`], and while the outbox
    /// is open) the room's events.
    fn pop(&self) -> Option<Message> {
        let (msg, from_outbox) = {
            let mut items = self.items();
            loop {
                match items.outbox.pop() {
                    Some(Out::Frame(m)) => break (Some(m), true),
                    Some(Out::Close(frame)) => break (Some(Message::Close(frame)), true),
                    Some(Out::Events) => items.events_on = true,
                    None if items.events_on && !self.closed.load(Ordering::Acquire) => {
                        break (items.events.pop().map(Message::Text), false);
                    }
                    None => break (None, false),
                }
            }
        };
        if from_outbox {
            self.to_reader.notify_waiters();
        }
        msg
    }

    /// True when [`Self::pop`] has something, or the outbox is closed.
    fn ready(&self) -> bool {
        let closed = self.closed.load(Ordering::Acquire);
        let items = self.items();
        !items.outbox.is_empty() || closed || (items.events_on && !items.events.is_empty())
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

    /// Queues one of the room's event frames (see [`EventRefused`]).
    pub(crate) fn try_send_event(&self, frame: Utf8Bytes) -> Result<(), EventRefused> {
        if self.closed.load(Ordering::Acquire) || self.writer_gone.load(Ordering::Acquire) {
            return Err(EventRefused::Closed);
        }
        {
            let mut items = self.items();
            if items.events.len() >= self.max_events {
                return Err(EventRefused::Full);
            }
            items.events.push(frame);
        }
        self.to_writer.notify_one();
        Ok(())
    }

    /// Asks the connection to close with `code` (the first request wins).
    pub(crate) fn close(&self, code: CloseCode) {
        if self.close_code.compare_exchange(0, code.code(), Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.to_reader.notify_waiters();
        }
    }

    fn close_requested(&self) -> Option<CloseCode> {
        let code = self.close_code.load(Ordering::Acquire);
        // unwrap_or: only codes from CloseCode::code() are ever stored.
        (code != 0).then(|| CloseCode::from_code(code).unwrap_or(CloseCode::Unavailable))
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

/// What [`Outbox::wake`] saw.
pub(super) enum Wake {
    Close(CloseCode),
    WriterGone,
    Room,
}

/// The writer ended (or, for [`Outbox::send`] without [`Outbox::has_room`] first, the outbox is full): the client
/// is not reading.
#[derive(Debug)]
pub(super) struct Stalled;

impl Outbox {
    /// A connection's queues, with room for `max_events` of the room's events.
    pub(super) fn new(max_events: usize) -> (Self, Inbox) {
        let queue = Arc::new(Queue {
            items: std::sync::Mutex::default(),
            max_events,
            to_writer: Notify::new(),
            to_reader: Notify::new(),
            abort: Notify::new(),
            closed: AtomicBool::new(false),
            writer_gone: AtomicBool::new(false),
            close_code: AtomicU16::new(0),
        });
        (Self(Arc::clone(&queue)), Inbox(queue))
    }

    /// The queue, for the room task's [`Link`](crate::link::Link).
    pub(super) fn queue(&self) -> Arc<Queue> {
        Arc::clone(&self.0)
    }

    /// Queues `out` if there is room now (after [`Self::has_room`], there is for [`HEADROOM`] frames).
    pub(super) fn send(&self, out: Out) -> Result<(), Stalled> {
        let q = &self.0;
        if q.closed.load(Ordering::Acquire) || q.writer_gone.load(Ordering::Acquire) {
            return Err(Stalled);
        }
        {
            let mut items = q.items();
            if items.outbox.len() >= OUTBOX {
                return Err(Stalled);
            }
            items.outbox.push(out);
        }
        q.to_writer.notify_one();
        Ok(())
    }

    /// True when [`HEADROOM`] frames fit (or the writer is gone, which the reader learns from its next send).
    pub(super) fn has_room(&self) -> bool {
        self.0.writer_gone.load(Ordering::Acquire) || self.0.items().outbox.len() + HEADROOM <= OUTBOX
    }

    /// Completes once a close was asked for, the writer has ended, or (with `for_room`) [`Self::has_room`] holds:
    /// the reader's one wait on the queue (one waker registration, not three).
    pub(super) async fn wake(&self, for_room: bool) -> Wake {
        let q = &self.0;
        let state = || {
            if let Some(code) = q.close_requested() {
                Some(Wake::Close(code))
            } else if q.writer_gone.load(Ordering::Acquire) {
                Some(Wake::WriterGone)
            } else if for_room && self.has_room() {
                Some(Wake::Room)
            } else {
                None
            }
        };
        loop {
            let notified = q.to_reader.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(wake) = state() {
                return wake;
            }
            notified.await;
        }
    }

    /// Completes once a close was asked for ([`Queue::close`]), with its code.
    pub(super) async fn close_requested(&self) -> CloseCode {
        self.0.wait(&self.0.to_reader, || self.0.close_requested().is_some()).await;
        self.0.close_requested().unwrap_or(CloseCode::Unavailable)
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
    /// The next frame, or `None` once the outbox is closed and empty.
    async fn recv(&self) -> Option<Message> {
        let q = &self.0;
        loop {
            q.wait(&q.to_writer, || q.ready()).await;
            if let Some(msg) = q.pop() {
                return Some(msg);
            }
            if q.closed.load(Ordering::Acquire) {
                return None;
            }
            // Only the events marker was queued: wait for what follows it.
        }
    }

    fn try_recv(&self) -> Option<Message> {
        self.0.pop()
    }
}

/// Writes what the outbox and then the room's event queue hold until the outbox closes, a close frame is written,
/// or a write fails, times out or is aborted. Returns the sink so the caller can reunite the socket.
pub(super) async fn run(mut sink: Sink, inbox: Inbox, timeout: Duration) -> (Sink, WriterEnd) {
    let abort = &inbox.0.abort;
    loop {
        let Some(first) = inbox.recv().await else { return (sink, WriterEnd::Done) };
        // Boxed: the write's state (its timer, the socket's futures) exists only while writing, not in every idle
        // connection's writer.
        match Box::pin(write(&mut sink, timeout, abort, first, &inbox)).await {
            Ok(false) => {}
            Ok(true) => return (sink, WriterEnd::Done),
            Err(end) => return (sink, end),
        }
    }
}

/// Writes `first` and whatever else is ready (up to [`BATCH`] frames, or through a close frame), with one flush,
/// within `timeout` (and unless aborted). `Ok(true)` when a close frame went out.
async fn write(
    sink: &mut Sink,
    timeout: Duration,
    abort: &Notify,
    first: Message,
    inbox: &Inbox,
) -> Result<bool, WriterEnd> {
    let all = async {
        let mut next = Some(first);
        let mut n = 0;
        let mut closing = false;
        while let Some(m) = next.take() {
            closing = matches!(m, Message::Close(_));
            write_frame(sink, &m).await?;
            n += 1;
            if !closing && n < BATCH {
                next = inbox.try_recv();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_element_waits_inline_and_the_buffer_goes_when_empty() {
        let mut q = InlineFirst::default();
        q.push(1);
        assert_eq!(q.rest.capacity(), 0);
        q.push(2);
        q.push(3);
        assert_eq!(q.len(), 3);
        assert_eq!(q.pop(), Some(1));
        assert_eq!(q.pop(), Some(2));
        assert_eq!(q.rest.capacity(), 0, "the buffer is given back once only the inline element is left");
        assert_eq!(q.pop(), Some(3));
        assert_eq!(q.pop(), None);
        assert!(q.is_empty());
    }

    #[test]
    fn events_wait_for_the_marker_and_are_bounded() {
        let (mut outbox, inbox) = Outbox::new(2);
        let queue = outbox.queue();
        queue.try_send_event("e1".into()).expect("queued");
        queue.try_send_event("e2".into()).expect("queued");
        assert_eq!(queue.try_send_event("e3".into()), Err(EventRefused::Full));
        // Nothing before the welcome and its marker.
        assert_eq!(inbox.try_recv(), None);
        outbox.send(Out::Frame(Message::Text("welcome".into()))).expect("room");
        outbox.send(Out::Events).expect("room");
        assert_eq!(inbox.try_recv(), Some(Message::Text("welcome".into())));
        assert_eq!(inbox.try_recv(), Some(Message::Text("e1".into())));
        // A reply goes before the events still waiting.
        outbox.send(Out::Frame(Message::Text("reply".into()))).expect("room");
        assert_eq!(inbox.try_recv(), Some(Message::Text("reply".into())));
        assert_eq!(inbox.try_recv(), Some(Message::Text("e2".into())));
        assert_eq!(inbox.try_recv(), None);
        // Closed: no events any more.
        queue.try_send_event("e4".into()).expect("queued");
        outbox.close();
        assert_eq!(inbox.try_recv(), None);
        assert_eq!(queue.try_send_event("e5".into()), Err(EventRefused::Closed));
        drop(inbox);
        assert_eq!(queue.try_send_event("e6".into()), Err(EventRefused::Closed));
    }
}
