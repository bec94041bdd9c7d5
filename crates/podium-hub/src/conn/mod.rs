//! One task per websocket connection: the `join` handshake, then reading requests (rate-limited, size-checked,
//! parsed with precise errors) and forwarding them to the room task one at a time, pinging, and closing with a
//! documented code. Everything it sends goes through its writer (`writer`), a second future in the same task, so a
//! client that does not read can hold up nothing but its own writer, and loses its socket after the write timeout.
//!
//! Admission (`crate::admission`) and the handshake (`crate::http`) happen before any of this: a connection arrives
//! upgraded, with its [`Ticket`], and gives the ticket back when it joins.
//!
//! # Memory of an idle connection
//!
//! A hub holds tens of thousands of idle listeners, so what one holds while it waits is kept to its states' needs
//! (signaling benchmark in `docs/BENCHMARKS.md`, issue #13):
//! - no read or write buffer: the websocket framing is the connection's own (`frames`), reading into a buffer on the
//!   stack only when the socket has bytes, writing each frame straight from its (shared) bytes;
//! - one shared allocation for everything between the reader, the writer and the room task (`writer::Queue`: the
//!   outbox, the room's events, the close request), with no buffer while nothing is queued;
//! - the reader's, the writer's, closing's and each request's futures boxed, so the task holds only what waiting
//!   needs; one timer for the auth deadline and the pings (no per-connection `Interval`, which boxes its own), and
//!   one wait on the queue for a close request, the writer's end and room.
//!
//! About 2.6 KiB of heap per idle joined connection in all (task, boxes, queue, socket registration); the signaling
//! benchmark measures 3.8-4.4 KiB of RSS per idle listener with the room's share.

mod frames;
mod writer;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use std::pin::Pin;

use podium_proto::{self as proto, CloseCode, ErrorCode, Request, RequestId, ServerMessage};
use podium_room::ParticipantId;
use tokio::io::ReadHalf;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tracing::debug;

use self::frames::{FrameReader, ReadError};
pub(crate) use self::writer::{EventRefused, Queue};
use self::writer::{Out, Outbox, Stalled, Wake, WriterEnd};
use crate::admission::Ticket;
use crate::auth::AuthError;
use crate::convert;
use crate::hub::Shared;
use crate::link::Link;
use crate::media::MediaRequest;
use crate::room_task::{Failure, RoomHandle, RoomMsg};
use crate::tls::Stream;

/// The websocket path clients connect to.
pub const WS_PATH: &str = "/v1/ws";

/// How long closing may take at most (the writer's last frames and the close handshake), unless the write timeout is
/// shorter.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// When a connection is told to close while a request of its own waits for its answer, how long the answer may
/// still take (the request may be what closed it, like `end_room`).
const ANSWER_BEFORE_CLOSE: Duration = Duration::from_millis(200);

/// Runs an upgraded websocket connection to its end (`crate::http` did the handshake). `read_buf` holds what was
/// read past the handshake request; `ticket` is the connection's admission, given back when it joins.
///
/// The connection's future is boxed here, so the task that awaits it holds only the box (not its arguments too).
pub(crate) fn run(
    shared: Arc<Shared>,
    stream: Stream,
    read_buf: Vec<u8>,
    conn_id: u64,
    ticket: Ticket,
) -> Pin<Box<impl Future<Output = ()> + Send>> {
    Box::pin(Connection::new(shared, stream, read_buf, conn_id, ticket).run())
}

/// The state of a joined connection.
struct Joined {
    who: ParticipantId,
    room: RoomHandle,
}

/// What reading one frame led to.
enum Step {
    Continue,
    Close(CloseCode),
    Answer(Option<CloseFrame>),
}

/// Why the reader stopped reading.
enum Stop {
    /// Close with this code (a close frame is sent when the socket can still be written).
    Close(CloseCode),
    /// The client closed: answer its close frame (with its code and reason, as RFC 6455 suggests).
    Answer(Option<CloseFrame>),
    /// The client went away or its socket failed: nothing more to send.
    Gone,
}

struct Connection {
    shared: Arc<Shared>,
    /// The socket's reading half, and the websocket framing of what it reads.
    rd: ReadHalf<Stream>,
    frames: FrameReader,
    /// The writer's queue (see `writer`); the writer itself runs beside the reader in [`Connection::run`].
    outbox: Outbox,
    /// Filled by `run` with the writer's end of the socket until the writer starts.
    sink: Option<writer::Sink>,
    inbox: Option<writer::Inbox>,
    conn_id: u64,
    /// The client's address (after trusted proxies): failed tokens are counted against it.
    client_ip: IpAddr,
    /// Held until the connection joins: it counts against the per-source limit on connections not yet joined.
    ticket: Option<Ticket>,
    joined: Option<Joined>,
    bucket: TokenBucket,
    /// The sender's reactions (`[reactions] per_second`, `burst`), apart from the general request bucket.
    reactions: TokenBucket,
    last_heard: Instant,
    /// When the websocket was upgraded (join latency).
    opened: Instant,
}

impl Connection {
    fn new(shared: Arc<Shared>, stream: Stream, read_buf: Vec<u8>, conn_id: u64, ticket: Ticket) -> Self {
        let limits = &shared.config.limits;
        let bucket = TokenBucket::new(limits.requests_per_second, limits.request_burst);
        let reactions = TokenBucket::new(shared.config.reactions.per_second, shared.config.reactions.burst);
        // Messages are limited like frames here (`max_message_bytes` is the decoder's, with a precise error).
        let frames =
            FrameReader::new(limits.read_buffer_bytes, limits.max_frame_bytes, limits.max_frame_bytes, read_buf);
        let (rd, sink) = tokio::io::split(stream);
        let (outbox, inbox) = Outbox::new(limits.outbound_queue);
        Self {
            rd,
            frames,
            outbox,
            sink: Some(sink),
            inbox: Some(inbox),
            conn_id,
            client_ip: ticket.ip(),
            ticket: Some(ticket),
            joined: None,
            bucket,
            reactions,
            last_heard: Instant::now(),
            opened: Instant::now(),
            shared,
        }
    }

    /// Runs the reader and the writer side by side until either ends, then closes (see `close`).
    async fn run(mut self) {
        let write_timeout = Duration::from_millis(self.shared.config.limits.write_timeout_ms);
        let (Some(sink), Some(inbox)) = (self.sink.take(), self.inbox.take()) else { return };
        let writer = writer::run(sink, inbox, write_timeout);
        // The reader and the writer are boxed, and so is each message's handling: the task itself stays small, and
        // an idle connection holds only what its idle states need (signaling benchmark: memory per idle listener).
        let mut writer = Box::pin(writer);
        // The reader is never cancelled (it may be in the middle of a request to its room); when the writer ends
        // first, the reader sees it (`Outbox::writer_gone`, failing sends) and stops soon after.
        let (stop, written) = {
            let reader = self.read();
            let mut reader = Box::pin(reader);
            tokio::select! {
                biased;
                stop = &mut reader => (stop, None),
                done = &mut writer => (reader.await, Some(done)),
            }
        };
        self.leave_room();
        let (sink, end) = match written {
            Some(done) => done,
            // Boxed: closing's timers exist only while it runs.
            None => Box::pin(self.close(stop, writer.as_mut(), write_timeout)).await,
        };
        if end == WriterEnd::TimedOut {
            debug!("the client stopped reading; dropping its connection");
            // Reset instead of a graceful close: the kernel would otherwise keep trying to deliver what the client
            // does not read, holding the socket's memory for minutes.
            if self.rd.is_pair_of(&sink) {
                let stream = self.rd.unsplit(sink);
                // Linger zero never blocks (the deprecation is about non-zero lingers blocking on drop).
                #[allow(deprecated)]
                let _ = stream.tcp().set_linger(Some(Duration::ZERO));
            }
        }
    }

    /// The reader: reads and answers requests, keeps the deadlines, until the connection should close.
    async fn read(&mut self) -> Stop {
        let auth_deadline = Instant::now() + Duration::from_millis(self.shared.config.auth.auth_timeout_ms);
        let ping_interval = self.shared.config.heartbeat_interval();
        let mut next_ping = Instant::now() + ping_interval;
        let heartbeat_timeout = Duration::from_millis(self.shared.config.limits.heartbeat_timeout_ms);
        let mut shutdown = self.shared.shutdown_rx();
        // One timer for the auth deadline (until joined) and the pings (a tokio `Interval` would box its own).
        let timer = tokio::time::sleep_until(next_ping.min(auth_deadline));
        tokio::pin!(timer);
        loop {
            let joined = self.joined.is_some();
            let mut fired = false;
            // Read on only while answering cannot wait for the writer (see `writer`).
            let room = self.outbox.has_room();
            tokio::select! {
                biased;
                // A close asked for, the writer gone, or (while the outbox is full) room in it: one wait for all.
                wake = self.outbox.wake(!room) => match wake {
                    Wake::Close(code) => return Stop::Close(code),
                    Wake::WriterGone => return Stop::Gone,
                    Wake::Room => {}
                },
                _ = shutdown.changed(), if !joined => return Stop::Close(CloseCode::ServerShutdown),
                msg = next_message(&mut self.frames, &mut self.rd), if room => match msg {
                    None => return Stop::Gone,
                    Some(Err(e)) => return read_error(&e),
                    Some(Ok(msg)) => {
                        self.last_heard = Instant::now();
                        match Box::pin(self.on_message(msg)).await {
                            Ok(Step::Continue) => {}
                            Ok(Step::Close(code)) => return Stop::Close(code),
                            Ok(Step::Answer(frame)) => return Stop::Answer(frame),
                            // The writer ended: the client does not read (or its socket failed).
                            Err(Stalled) => return Stop::Gone,
                        }
                    }
                },
                () = &mut timer => {
                    fired = true;
                    let now = Instant::now();
                    if !joined && now >= auth_deadline {
                        return Stop::Close(CloseCode::AuthTimeout);
                    }
                    if now >= next_ping {
                        if self.last_heard.elapsed() > heartbeat_timeout {
                            return Stop::Close(CloseCode::HeartbeatTimeout);
                        }
                        // A full outbox means the writer is behind: it times out by itself if it stays stuck.
                        let _ = self.outbox.send(Out::Frame(Message::Ping(Default::default())));
                        // As `MissedTickBehavior::Delay`: a late ping moves the next one.
                        next_ping = now + ping_interval;
                    }
                }
            }
            let due = if self.joined.is_some() { next_ping } else { next_ping.min(auth_deadline) };
            // A timer that fired is always re-armed (an elapsed `Sleep` would complete again at once).
            if fired || timer.deadline() != due {
                timer.as_mut().reset(due);
            }
        }
    }

    /// Queues a message for the writer; never waits (the reader reads a frame only when there is room to answer).
    fn send(&self, msg: &ServerMessage) -> Result<(), Stalled> {
        self.outbox.send(Out::Frame(Message::Text(msg.to_json().into())))
    }

    fn send_error(&self, id: Option<RequestId>, code: ErrorCode, message: impl Into<String>) -> Result<(), Stalled> {
        self.shared.metrics.error(code);
        self.send(&ServerMessage::error(id, code, message))
    }

    async fn on_message(&mut self, msg: Message) -> Result<Step, Stalled> {
        let text = match msg {
            Message::Text(text) => text,
            Message::Binary(_) => {
                self.send_error(None, ErrorCode::BadRequest, "binary frames are not supported; send JSON text")?;
                return Ok(Step::Continue);
            }
            // Pings and pongs prove liveness; a ping gets its pong (there is room: see `writer::HEADROOM`).
            Message::Ping(payload) => {
                self.outbox.send(Out::Frame(Message::Pong(payload)))?;
                return Ok(Step::Continue);
            }
            Message::Pong(_) | Message::Frame(_) => return Ok(Step::Continue),
            Message::Close(frame) => return Ok(Step::Answer(frame)),
        };
        if !self.bucket.take(std::time::Instant::now()) {
            let id = proto::request_id(&text);
            self.send_error(id, ErrorCode::RateLimited, "too many requests; slow down")?;
            return Ok(Step::Continue);
        }
        // The whole decode path from untrusted text to a request lives in `podium_proto` (and is fuzzed there).
        let (id, request) = match proto::decode_client(&text, self.shared.config.limits.max_message_bytes) {
            Ok(decoded) => {
                self.shared.metrics.request(&decoded.1);
                decoded
            }
            Err(e) => {
                self.send_error(e.id, e.code, e.message)?;
                return Ok(Step::Continue);
            }
        };
        self.on_request(id, request).await
    }

    async fn on_request(&mut self, id: RequestId, request: Request) -> Result<Step, Stalled> {
        let Some(joined) = &self.joined else {
            return match request {
                Request::Join(join) => {
                    let step = self.on_join(id, join).await;
                    if self.joined.is_some() {
                        self.shared.metrics.joined(self.opened.into_std());
                    } else {
                        self.shared.metrics.join_refused();
                    }
                    step
                }
                Request::Ping => {
                    self.send(&ServerMessage::Ok { id, result: None })?;
                    Ok(Step::Continue)
                }
                other => {
                    let msg = format!("`{}` needs a joined connection; send `join` first", other.kind());
                    self.send_error(Some(id), ErrorCode::Unauthorized, msg)?;
                    Ok(Step::Continue)
                }
            };
        };
        let (who, room) = (joined.who.clone(), joined.room.clone());
        match request {
            Request::Join(_) => {
                self.send_error(Some(id), ErrorCode::Conflict, "already joined")?;
                Ok(Step::Continue)
            }
            Request::Ping => {
                self.send(&ServerMessage::Ok { id, result: None })?;
                Ok(Step::Continue)
            }
            Request::Leave => {
                let (tx, rx) = oneshot::channel();
                let msg = RoomMsg::Leave { who, conn_id: self.conn_id, reply: tx };
                if self.ask_room(&room, msg).await {
                    let _ = rx.await;
                }
                self.joined = None;
                self.send(&ServerMessage::Ok { id, result: None })?;
                Ok(Step::Close(CloseCode::Normal))
            }
            Request::MediaOffer { sdp } => self.media_request(id, who, &room, MediaRequest::Offer(sdp)).await,
            Request::MediaAnswer { sdp } => self.media_request(id, who, &room, MediaRequest::Answer(sdp)).await,
            Request::MediaCandidate { .. } => self.media_request(id, who, &room, MediaRequest::Candidate).await,
            Request::React { reaction } => {
                let Some(kind) = self.shared.config.reactions.kinds.iter().position(|k| *k == reaction) else {
                    self.send_error(Some(id), ErrorCode::BadRequest, "unknown reaction: see welcome.reactions.kinds")?;
                    return Ok(Step::Continue);
                };
                if !self.reactions.take(std::time::Instant::now()) {
                    // Dropped: the sender reacts faster than `[reactions] per_second` (the socket stays open).
                    self.send_error(Some(id), ErrorCode::RateLimited, "too many reactions; slow down")?;
                    return Ok(Step::Continue);
                }
                let conn_id = self.conn_id;
                self.relay(id, &room, |reply| RoomMsg::React { who, conn_id, kind, reply }).await
            }
            other => {
                let page = self.shared.config.room.max_page.min(100);
                let Some((command, reason)) = convert::command_from_proto(other, page) else {
                    self.send_error(Some(id), ErrorCode::Internal, "request has no room command")?;
                    return Ok(Step::Continue);
                };
                let conn_id = self.conn_id;
                self.relay(id, &room, |reply| RoomMsg::Command { who, conn_id, command, reason, reply }).await
            }
        }
    }

    async fn media_request(
        &mut self,
        id: RequestId,
        who: ParticipantId,
        room: &RoomHandle,
        request: MediaRequest,
    ) -> Result<Step, Stalled> {
        let conn_id = self.conn_id;
        let kind = match request {
            MediaRequest::Offer(_) => Some("media_offer"),
            MediaRequest::Answer(_) => Some("media_answer"),
            MediaRequest::Candidate => None,
        };
        let since = Instant::now();
        let step = self.relay(id, room, |reply| RoomMsg::Media { who, conn_id, request, reply }).await;
        if let Some(kind) = kind {
            self.shared.metrics.media_answered(kind, since.into_std());
        }
        step
    }

    /// Sends a request to the room task and writes its answer as this request's reply.
    async fn relay(
        &mut self,
        id: RequestId,
        room: &RoomHandle,
        msg: impl FnOnce(oneshot::Sender<Result<Option<proto::Reply>, Failure>>) -> RoomMsg,
    ) -> Result<Step, Stalled> {
        let (tx, rx) = oneshot::channel();
        let reply = if self.ask_room(room, msg(tx)).await {
            // A close asked for meanwhile (shutdown, drain, removal) does not wait for a slow answer (a media request
            // relayed to another hub may take seconds); the answer is dropped.
            // A request whose own effect closes the connection (`end_room`) still gets its answer first.
            let mut rx = rx;
            let answer = tokio::select! {
                biased;
                answer = &mut rx => Some(answer),
                _ = self.outbox.close_requested() => tokio::time::timeout(ANSWER_BEFORE_CLOSE, &mut rx).await.ok(),
            };
            match answer {
                Some(answer) => {
                    answer.unwrap_or_else(|_| Err((ErrorCode::Unavailable, "the room did not answer".into())))
                }
                // The main loop sees the close next.
                None => return Ok(Step::Continue),
            }
        } else {
            Err((ErrorCode::Unavailable, "the room is not available".into()))
        };
        match reply {
            Ok(result) => self.send(&ServerMessage::Ok { id, result })?,
            Err((code, message)) => self.send_error(Some(id), code, message)?,
        }
        Ok(Step::Continue)
    }

    /// Sends to the room's inbox, waiting a bounded time when it is full. False when the room is gone or stuck.
    async fn ask_room(&self, room: &RoomHandle, msg: RoomMsg) -> bool {
        matches!(tokio::time::timeout(Duration::from_secs(5), room.inbox.send(msg)).await, Ok(Ok(())))
    }

    async fn on_join(&mut self, id: RequestId, join: proto::JoinRequest) -> Result<Step, Stalled> {
        let versions = join.protocols.clone().unwrap_or_else(|| vec![proto::PROTOCOL_VERSION]);
        let Some(protocol) = proto::negotiate(&versions) else {
            let msg = format!("no common protocol version; this hub speaks {:?}", proto::SUPPORTED_VERSIONS);
            self.send_error(Some(id), ErrorCode::UnsupportedProtocol, msg)?;
            return Ok(Step::Close(CloseCode::UnsupportedProtocol));
        };
        let grant = match self.shared.keys.verify(&join.token, join.room.as_deref()) {
            Ok(grant) => grant,
            Err(e) => {
                let code = match e {
                    AuthError::BadClaim(_) | AuthError::RoomRequired => ErrorCode::BadRequest,
                    _ => ErrorCode::Unauthorized,
                };
                // One summary line per interval for all refused tokens (see `admission`), not one per attempt.
                debug!(error = %e, "token refused");
                self.shared.admission.auth_failed(self.client_ip);
                self.send_error(Some(id), code, e.to_string())?;
                return Ok(Step::Close(CloseCode::BadAuth));
            }
        };
        let identity = grant.identity.clone();
        let room_name = grant.room.clone();
        let link = Link::new(self.conn_id, self.outbox.queue());
        let role = join.role.map(convert::role_from_proto);
        // A room task can end between lookup and send; then a fresh one is created (once).
        let mut attempt = 0;
        let (handle, reply) = loop {
            let handle = self.shared.room(&room_name);
            let (tx, rx) = oneshot::channel();
            let msg = RoomMsg::Join { grant: grant.clone(), role, protocol, link: link.clone(), reply: tx };
            if !self.ask_room(&handle, msg).await {
                // The task stopped between lookup and send (an idle persistent room): once more, with a new one.
                if attempt == 0 && handle.inbox.is_closed() {
                    attempt += 1;
                    continue;
                }
                self.send_error(Some(id), ErrorCode::Unavailable, "the room is not available; retry")?;
                return Ok(Step::Continue);
            }
            match rx.await {
                Ok(Err((ErrorCode::RoomEnded, _))) if attempt == 0 => attempt += 1,
                Ok(reply) => break (handle, reply),
                Err(_) => break (handle, Err((ErrorCode::Unavailable, "the room is not available; retry".into()))),
            }
        };
        match reply {
            Ok(welcome) => {
                tracing::Span::current().record("identity", identity.as_str());
                // The room task logs the join (once per join, with its outcome).
                debug!(identity = %identity, room = %room_name, "joined");
                self.joined = Some(Joined { who: ParticipantId::new(identity.as_str()), room: handle });
                // Joined connections no longer count against their source's limit on pending connections.
                self.ticket = None;
                self.send(&ServerMessage::Ok { id, result: Some(proto::Reply::Welcome(welcome)) })?;
                // The room's events (the room may have queued some already), right behind the welcome.
                self.outbox.send(Out::Events)?;
                Ok(Step::Continue)
            }
            Err((code, message)) => {
                self.send_error(Some(id), code, message)?;
                let close = match code {
                    ErrorCode::Banned => Some(CloseCode::Banned),
                    ErrorCode::NotInvited => Some(CloseCode::NotInvited),
                    ErrorCode::RoomEnded => Some(CloseCode::RoomEnded),
                    // The room refused the token as revoked.
                    ErrorCode::Unauthorized => Some(CloseCode::BadAuth),
                    ErrorCode::Forbidden | ErrorCode::StageFull | ErrorCode::BadRequest => None,
                    _ => None,
                };
                Ok(close.map_or(Step::Continue, Step::Close))
            }
        }
    }

    /// Tells the room that this connection is gone (a dropped connection starts the grace period).
    fn leave_room(&mut self) {
        if let Some(joined) = self.joined.take() {
            // A connection the room itself closed (removed, replaced, ended) is already forgotten there, and the
            // room ignores this message for it.
            let msg = RoomMsg::Disconnect { who: joined.who, conn_id: self.conn_id };
            match joined.room.inbox.try_send(msg) {
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
                Err(mpsc::error::TrySendError::Full(msg)) => {
                    // Per connection, so not above debug: the room logs its own overload.
                    debug!("room inbox full at disconnect; the grace period starts when it drains");
                    let inbox = joined.room.inbox.clone();
                    tokio::spawn(async move {
                        let _ = inbox.send(msg).await;
                    });
                }
            }
        }
        self.ticket = None;
    }

    /// Ends the connection the reader stopped: with a close frame when `stop` asks for one and the writer can still
    /// write it, then waits (bounded) for the client's own close frame so ours is not lost to a reset. The writer
    /// gets at most the write timeout or [`CLOSE_GRACE`], whichever is shorter.
    async fn close(
        &mut self,
        stop: Stop,
        writer: Pin<&mut impl Future<Output = (writer::Sink, WriterEnd)>>,
        write_timeout: Duration,
    ) -> (writer::Sink, WriterEnd) {
        let deadline = Instant::now() + write_timeout.min(CLOSE_GRACE);
        let closing = match stop {
            Stop::Close(code) => {
                debug!(code = code.code(), reason = code.reason(), "closing");
                let frame = CloseFrame { code: WsCloseCode::from(code.code()), reason: code.reason().into() };
                self.outbox.send(Out::Close(Some(frame))).is_ok()
            }
            Stop::Answer(frame) => {
                debug!(code = frame.as_ref().map(|f| u16::from(f.code)), "the client closed");
                self.outbox.send(Out::Close(frame)).is_ok()
            }
            Stop::Gone => false,
        };
        // Whatever is queued goes out (and the close frame last); then the writer ends.
        self.outbox.close();
        let mut writer = writer;
        let (sink, end) = match tokio::time::timeout_at(deadline, writer.as_mut()).await {
            Ok(done) => done,
            Err(_) => {
                // Still stuck on a write: the client is not reading.
                self.outbox.abort();
                writer.await
            }
        };
        if closing && end == WriterEnd::Done {
            // Drain until the peer acknowledges the close (or anything fails).
            let (frames, rd) = (&mut self.frames, &mut self.rd);
            let drain = async { while let Some(Ok(_)) = next_message(frames, rd).await {} };
            let _ = tokio::time::timeout_at(deadline, drain).await;
        }
        (sink, end)
    }
}

/// The next message the client sent (see `frames`); borrows only the reading half, so the reader's other
/// branches can wait beside it.
fn next_message<'a>(
    frames: &'a mut FrameReader,
    rd: &'a mut ReadHalf<Stream>,
) -> impl Future<Output = Option<Result<Message, ReadError>>> + 'a {
    std::future::poll_fn(move |cx| frames.poll_next(cx, Pin::new(&mut *rd)))
}

/// What a read error means for the connection: a close code when the client broke the websocket protocol (the
/// socket may still take our close frame), or gone.
fn read_error(e: &ReadError) -> Stop {
    let code = match e {
        ReadError::TooBig => CloseCode::MessageTooBig,
        ReadError::BadUtf8 => CloseCode::InvalidPayload,
        ReadError::Protocol(_) => CloseCode::ProtocolError,
        ReadError::Io(_) => {
            debug!(error = %e, "read failed");
            return Stop::Gone;
        }
    };
    debug!(error = %e, code = code.code(), "websocket protocol error");
    Stop::Close(code)
}

/// A token bucket: `rate` tokens per second, holding at most `burst`.
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: std::time::Instant,
}

impl TokenBucket {
    fn new(rate: u32, burst: u32) -> Self {
        Self { rate: f64::from(rate), burst: f64::from(burst), tokens: f64::from(burst), at: std::time::Instant::now() }
    }

    fn take(&mut self, now: std::time::Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
