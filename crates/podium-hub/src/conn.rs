//! One task per websocket connection: the `join` handshake, then reading requests (rate-limited, size-checked,
//! parsed with precise errors) and forwarding them to the room task one at a time, writing replies and the room's
//! event frames, pinging, and closing with a documented code.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use podium_proto::{self as proto, ClientMessage, CloseCode, Envelope, ErrorCode, Request, RequestId, ServerMessage};
use podium_room::ParticipantId;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{
    ErrorResponse, Request as HttpRequest, Response as HttpResponse,
};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::{Instrument as _, debug, info, warn};

use crate::auth::AuthError;
use crate::convert;
use crate::http;
use crate::hub::Shared;
use crate::link::{Control, Link};
use crate::media::MediaRequest;
use crate::room_task::{Failure, RoomHandle, RoomMsg};

/// The websocket path clients connect to.
pub const WS_PATH: &str = "/v1/ws";

/// When a connection is told to close while a request of its own waits for its answer, how long the answer may
/// still take (the request may be what closed it, like `end_room`).
const ANSWER_BEFORE_CLOSE: Duration = Duration::from_millis(200);

type Ws = WebSocketStream<TcpStream>;

/// Accepts the websocket handshake and runs the connection to its end.
pub(crate) async fn serve(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr, conn_id: u64) {
    let span = tracing::info_span!("conn", id = conn_id, %peer);
    async move {
        let _ = stream.set_nodelay(true);
        let limits = &shared.config.limits;
        let ws_config = tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(limits.read_buffer_bytes)
            .write_buffer_size(0)
            .max_write_buffer_size(limits.max_frame_bytes * 4)
            .max_message_size(Some(limits.max_frame_bytes))
            .max_frame_size(Some(limits.max_frame_bytes));
        // The callback's signature is tungstenite's `Callback` trait; the large error type is theirs.
        #[allow(clippy::result_large_err)]
        let check_path = |req: &HttpRequest, resp: HttpResponse| -> Result<HttpResponse, ErrorResponse> {
            if req.uri().path() == WS_PATH {
                Ok(resp)
            } else {
                let mut err = ErrorResponse::new(Some(format!("not found; connect to {WS_PATH}")));
                *err.status_mut() = tungstenite::http::StatusCode::NOT_FOUND;
                Err(err)
            }
        };
        // Plain HTTP requests (the demo app, the SDK, development tokens) are answered here; only the websocket
        // path goes on to the handshake. Both must complete within the auth timeout.
        let deadline = Instant::now() + Duration::from_millis(shared.config.auth.auth_timeout_ms);
        let mut stream = stream;
        match tokio::time::timeout_at(deadline, http::peek_route(&stream)).await {
            Ok(Some(http::Route::WebSocket)) => {}
            Ok(Some(http::Route::Http)) => {
                let served = http::serve(&shared.config, &shared.keys, &mut stream);
                if tokio::time::timeout_at(deadline, served).await.is_err() {
                    debug!("http request timed out");
                }
                return;
            }
            Ok(None) | Err(_) => {
                debug!("no request line before the timeout");
                return;
            }
        }
        let handshake = tokio_tungstenite::accept_hdr_async_with_config(stream, check_path, Some(ws_config));
        let ws = match tokio::time::timeout_at(deadline, handshake).await {
            Ok(Ok(ws)) => ws,
            Ok(Err(e)) => {
                debug!(error = %e, "websocket handshake failed");
                return;
            }
            Err(_) => {
                debug!("websocket handshake timed out");
                return;
            }
        };
        Connection::new(shared, ws, conn_id).run().await;
    }
    .instrument(span)
    .await;
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
}

struct Connection {
    shared: Arc<Shared>,
    ws: Ws,
    conn_id: u64,
    joined: Option<Joined>,
    control: Arc<Control>,
    frames_tx: Option<mpsc::Sender<tungstenite::Utf8Bytes>>,
    frames_rx: mpsc::Receiver<tungstenite::Utf8Bytes>,
    bucket: TokenBucket,
    last_heard: Instant,
}

impl Connection {
    fn new(shared: Arc<Shared>, ws: Ws, conn_id: u64) -> Self {
        let limits = &shared.config.limits;
        let (tx, rx) = mpsc::channel(limits.outbound_queue);
        let bucket = TokenBucket::new(limits.requests_per_second, limits.request_burst);
        Self {
            ws,
            conn_id,
            joined: None,
            control: Arc::new(Control::default()),
            frames_tx: Some(tx),
            frames_rx: rx,
            bucket,
            last_heard: Instant::now(),
            shared,
        }
    }

    async fn run(mut self) {
        let auth_deadline = Instant::now() + Duration::from_millis(self.shared.config.auth.auth_timeout_ms);
        let mut ping = tokio::time::interval(self.shared.config.heartbeat_interval());
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ping.reset();
        let heartbeat_timeout = Duration::from_millis(self.shared.config.limits.heartbeat_timeout_ms);
        let mut shutdown = self.shared.shutdown_rx();
        let control = Arc::clone(&self.control);
        let close = loop {
            let joined = self.joined.is_some();
            tokio::select! {
                biased;
                code = control.closed() => break Some(code),
                _ = shutdown.changed(), if !joined => break Some(CloseCode::ServerShutdown),
                () = tokio::time::sleep_until(auth_deadline), if !joined => break Some(CloseCode::AuthTimeout),
                frame = self.frames_rx.recv(), if joined => {
                    let Some(frame) = frame else { break Some(CloseCode::Unavailable) };
                    if self.write_frames(frame).await.is_err() {
                        break None;
                    }
                }
                msg = self.ws.next() => match msg {
                    None => break None,
                    Some(Err(tungstenite::Error::Capacity(e))) => {
                        debug!(error = %e, "frame over the hard limit");
                        break Some(CloseCode::MessageTooBig);
                    }
                    Some(Err(e)) => {
                        debug!(error = %e, "read failed");
                        break None;
                    }
                    Some(Ok(msg)) => {
                        self.last_heard = Instant::now();
                        match self.on_message(msg).await {
                            Ok(Step::Continue) => {}
                            Ok(Step::Close(code)) => break Some(code),
                            Err(_) => break None,
                        }
                    }
                },
                _ = ping.tick() => {
                    if self.last_heard.elapsed() > heartbeat_timeout {
                        break Some(CloseCode::HeartbeatTimeout);
                    }
                    if self.ws.send(Message::Ping(Default::default())).await.is_err() {
                        break None;
                    }
                }
            }
        };
        self.finish(close).await;
    }

    /// Writes one frame and whatever else is already queued, then flushes once.
    async fn write_frames(&mut self, first: tungstenite::Utf8Bytes) -> Result<(), tungstenite::Error> {
        self.ws.feed(Message::Text(first)).await?;
        let mut n = 1;
        while n < 64 {
            match self.frames_rx.try_recv() {
                Ok(frame) => self.ws.feed(Message::Text(frame)).await?,
                Err(_) => break,
            }
            n += 1;
        }
        self.ws.flush().await
    }

    async fn send(&mut self, msg: &ServerMessage) -> Result<(), tungstenite::Error> {
        self.ws.send(Message::Text(msg.to_json().into())).await
    }

    async fn send_error(
        &mut self,
        id: Option<RequestId>,
        code: ErrorCode,
        message: impl Into<String>,
    ) -> Result<(), tungstenite::Error> {
        self.send(&ServerMessage::error(id, code, message)).await
    }

    async fn on_message(&mut self, msg: Message) -> Result<Step, tungstenite::Error> {
        let text = match msg {
            Message::Text(text) => text,
            Message::Binary(_) => {
                self.send_error(None, ErrorCode::BadRequest, "binary frames are not supported; send JSON text").await?;
                return Ok(Step::Continue);
            }
            // Pongs and pings only prove liveness; tungstenite answers pings itself.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return Ok(Step::Continue),
            Message::Close(_) => return Ok(Step::Close(CloseCode::Normal)),
        };
        if !self.bucket.take(std::time::Instant::now()) {
            let id = envelope(&text).id;
            self.send_error(id, ErrorCode::RateLimited, "too many requests; slow down").await?;
            return Ok(Step::Continue);
        }
        let max = self.shared.config.limits.max_message_bytes;
        if text.len() > max {
            self.send_error(None, ErrorCode::TooLarge, format!("messages are limited to {max} bytes")).await?;
            return Ok(Step::Continue);
        }
        let env = match serde_json::from_str::<Envelope>(&text) {
            Ok(env) => env,
            Err(e) => {
                self.send_error(None, ErrorCode::BadRequest, format!("malformed JSON: {e}")).await?;
                return Ok(Step::Continue);
            }
        };
        let Some(kind) = env.kind else {
            self.send_error(env.id, ErrorCode::BadRequest, "missing `type`").await?;
            return Ok(Step::Continue);
        };
        let Some(id) = env.id else {
            self.send_error(None, ErrorCode::BadRequest, "missing or malformed `id` (a number or a string)").await?;
            return Ok(Step::Continue);
        };
        if let RequestId::Text(s) = &id
            && s.len() > 64
        {
            self.send_error(None, ErrorCode::BadRequest, "`id` strings are limited to 64 bytes").await?;
            return Ok(Step::Continue);
        }
        if !Request::KINDS.contains(&kind.as_str()) {
            self.send_error(Some(id), ErrorCode::UnknownType, format!("unknown type `{kind}`")).await?;
            return Ok(Step::Continue);
        }
        let request = match serde_json::from_str::<ClientMessage>(&text) {
            Ok(m) => m.request,
            Err(e) => {
                self.send_error(Some(id), ErrorCode::BadRequest, format!("invalid `{kind}`: {e}")).await?;
                return Ok(Step::Continue);
            }
        };
        self.on_request(id, request).await
    }

    async fn on_request(&mut self, id: RequestId, request: Request) -> Result<Step, tungstenite::Error> {
        let Some(joined) = &self.joined else {
            return match request {
                Request::Join(join) => self.on_join(id, join).await,
                Request::Ping => {
                    self.send(&ServerMessage::Ok { id, result: None }).await?;
                    Ok(Step::Continue)
                }
                other => {
                    let msg = format!("`{}` needs a joined connection; send `join` first", other.kind());
                    self.send_error(Some(id), ErrorCode::Unauthorized, msg).await?;
                    Ok(Step::Continue)
                }
            };
        };
        let (who, room) = (joined.who.clone(), joined.room.clone());
        match request {
            Request::Join(_) => {
                self.send_error(Some(id), ErrorCode::Conflict, "already joined").await?;
                Ok(Step::Continue)
            }
            Request::Ping => {
                self.send(&ServerMessage::Ok { id, result: None }).await?;
                Ok(Step::Continue)
            }
            Request::Leave => {
                let (tx, rx) = oneshot::channel();
                let msg = RoomMsg::Leave { who, conn_id: self.conn_id, reply: tx };
                if self.ask_room(&room, msg).await {
                    let _ = rx.await;
                }
                self.joined = None;
                self.send(&ServerMessage::Ok { id, result: None }).await?;
                Ok(Step::Close(CloseCode::Normal))
            }
            Request::MediaOffer { sdp } => self.media_request(id, who, &room, MediaRequest::Offer(sdp)).await,
            Request::MediaAnswer { sdp } => self.media_request(id, who, &room, MediaRequest::Answer(sdp)).await,
            Request::MediaCandidate { .. } => self.media_request(id, who, &room, MediaRequest::Candidate).await,
            other => {
                let page = self.shared.config.room.max_page.min(100);
                let Some(command) = convert::command_from_proto(other, page) else {
                    self.send_error(Some(id), ErrorCode::Internal, "request has no room command").await?;
                    return Ok(Step::Continue);
                };
                let conn_id = self.conn_id;
                self.relay(id, &room, |reply| RoomMsg::Command { who, conn_id, command, reply }).await
            }
        }
    }

    async fn media_request(
        &mut self,
        id: RequestId,
        who: ParticipantId,
        room: &RoomHandle,
        request: MediaRequest,
    ) -> Result<Step, tungstenite::Error> {
        let conn_id = self.conn_id;
        self.relay(id, room, |reply| RoomMsg::Media { who, conn_id, request, reply }).await
    }

    /// Sends a request to the room task and writes its answer as this request's reply.
    async fn relay(
        &mut self,
        id: RequestId,
        room: &RoomHandle,
        msg: impl FnOnce(oneshot::Sender<Result<Option<proto::Reply>, Failure>>) -> RoomMsg,
    ) -> Result<Step, tungstenite::Error> {
        let (tx, rx) = oneshot::channel();
        let reply = if self.ask_room(room, msg(tx)).await {
            // A close asked for meanwhile (shutdown, drain, removal) does not wait for a slow answer (a media request
            // relayed to another hub may take seconds); the answer is dropped.
            // A request whose own effect closes the connection (`end_room`) still gets its answer first.
            let control = Arc::clone(&self.control);
            let mut rx = rx;
            let answer = tokio::select! {
                biased;
                answer = &mut rx => Some(answer),
                _ = control.closed() => tokio::time::timeout(ANSWER_BEFORE_CLOSE, &mut rx).await.ok(),
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
            Ok(result) => self.send(&ServerMessage::Ok { id, result }).await?,
            Err((code, message)) => self.send_error(Some(id), code, message).await?,
        }
        Ok(Step::Continue)
    }

    /// Sends to the room's inbox, waiting a bounded time when it is full. False when the room is gone or stuck.
    async fn ask_room(&self, room: &RoomHandle, msg: RoomMsg) -> bool {
        matches!(tokio::time::timeout(Duration::from_secs(5), room.inbox.send(msg)).await, Ok(Ok(())))
    }

    async fn on_join(&mut self, id: RequestId, join: proto::JoinRequest) -> Result<Step, tungstenite::Error> {
        let versions = join.protocols.clone().unwrap_or_else(|| vec![proto::PROTOCOL_VERSION]);
        let Some(protocol) = proto::negotiate(&versions) else {
            let msg = format!("no common protocol version; this hub speaks {:?}", proto::SUPPORTED_VERSIONS);
            self.send_error(Some(id), ErrorCode::UnsupportedProtocol, msg).await?;
            return Ok(Step::Close(CloseCode::UnsupportedProtocol));
        };
        let grant = match self.shared.keys.verify(&join.token, join.room.as_deref()) {
            Ok(grant) => grant,
            Err(e) => {
                let code = match e {
                    AuthError::BadClaim(_) | AuthError::RoomRequired => ErrorCode::BadRequest,
                    _ => ErrorCode::Unauthorized,
                };
                info!(error = %e, "token refused");
                self.send_error(Some(id), code, e.to_string()).await?;
                return Ok(Step::Close(CloseCode::BadAuth));
            }
        };
        let Some(frames) = self.frames_tx.clone() else {
            self.send_error(Some(id), ErrorCode::Conflict, "this connection already left").await?;
            return Ok(Step::Close(CloseCode::Normal));
        };
        let identity = grant.identity.clone();
        let room_name = grant.room.clone();
        let link = Link { conn_id: self.conn_id, frames, control: Arc::clone(&self.control) };
        let role = join.role.map(convert::role_from_proto);
        // A room task can end between lookup and send; then a fresh one is created (once).
        let mut attempt = 0;
        let (handle, reply) = loop {
            let handle = self.shared.room(&room_name);
            let (tx, rx) = oneshot::channel();
            let msg = RoomMsg::Join { grant: grant.clone(), role, protocol, link: link.clone(), reply: tx };
            if !self.ask_room(&handle, msg).await {
                self.send_error(Some(id), ErrorCode::Unavailable, "the room is not available; retry").await?;
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
                info!(identity = %identity, room = %room_name, "joined");
                self.joined = Some(Joined { who: ParticipantId::new(identity.as_str()), room: handle });
                self.send(&ServerMessage::Ok { id, result: Some(proto::Reply::Welcome(welcome)) }).await?;
                Ok(Step::Continue)
            }
            Err((code, message)) => {
                self.send_error(Some(id), code, message).await?;
                let close = match code {
                    ErrorCode::Banned => Some(CloseCode::Banned),
                    ErrorCode::NotInvited => Some(CloseCode::NotInvited),
                    ErrorCode::RoomEnded => Some(CloseCode::RoomEnded),
                    ErrorCode::Forbidden | ErrorCode::StageFull | ErrorCode::BadRequest => None,
                    _ => None,
                };
                Ok(close.map_or(Step::Continue, Step::Close))
            }
        }
    }

    /// Tells the room (a dropped connection starts the grace period) and closes the socket with `code`.
    async fn finish(mut self, close: Option<CloseCode>) {
        if let Some(joined) = self.joined.take() {
            // A connection the room itself closed (removed, replaced, ended) is already forgotten there, and the
            // room ignores this message for it.
            let msg = RoomMsg::Disconnect { who: joined.who, conn_id: self.conn_id };
            match joined.room.inbox.try_send(msg) {
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
                Err(mpsc::error::TrySendError::Full(msg)) => {
                    warn!("room inbox full at disconnect; the grace period starts when it drains");
                    let inbox = joined.room.inbox.clone();
                    tokio::spawn(async move {
                        let _ = inbox.send(msg).await;
                    });
                }
            }
        }
        self.frames_tx = None;
        if let Some(code) = close {
            debug!(code = code.code(), reason = code.reason(), "closing");
            let frame = CloseFrame { code: WsCloseCode::from(code.code()), reason: code.reason().into() };
            let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.close(Some(frame))).await;
            // Drain until the peer acknowledges the close (bounded), so the close frame is not lost to a reset.
            let _ =
                tokio::time::timeout(Duration::from_secs(2), async { while self.ws.next().await.is_some() {} }).await;
        }
    }
}

fn envelope(text: &str) -> Envelope {
    serde_json::from_str(text).unwrap_or_default()
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
