//! One participant's signaling: websocket, `join`, `media_offer`, then the events it must act on.
//!
//! A session is one join of one identity: a listener of the storm, a churn replacement, a rejoin after a reconnect,
//! the speaker. While it lasts it answers the SFU's own `media_offer` events (a new downstream slot, when more stage
//! members publish than it has slots) through its media thread, and in the stage scenario accepts invitations,
//! unmutes and publishes the tone on a new `sendonly` m-line, and stops when moved back to the audience.
//! Events that arrive while a request awaits its reply are kept (at most [`DEFERRED`]) and acted on afterwards.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind};
use str0m::{Candidate, RtcConfig};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream};

use crate::media::{Cmd, Handle, Peer, PeerSocket};
use crate::{Auth, Progress};

/// Events kept while a request awaits its reply.
const DEFERRED: usize = 64;
/// How long a request may wait for its reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

pub(crate) type Ws = tokio_tungstenite::WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// What every session shares.
pub(crate) struct Common {
    pub(crate) url: String,
    pub(crate) hub: SocketAddr,
    /// The TLS configuration of a `wss://` hub (`None`: `ws://`).
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) room: String,
    pub(crate) auth: Auth,
    pub(crate) progress: Arc<Progress>,
    pub(crate) done: watch::Receiver<bool>,
    /// Accept stage invitations and publish (the stage scenario).
    pub(crate) stage: bool,
    /// The DTLS certificate every `Rtc` of the run shares.
    pub(crate) cert: Option<str0m::config::DtlsCert>,
}

/// What the orchestrator may tell a session.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Control {
    /// Send `leave` and go.
    Leave,
    /// Drop the websocket and the peer connection without a word (a reconnect storm).
    Drop,
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum End {
    /// Present until the end of the run.
    #[default]
    Stayed,
    /// Left (churn).
    Left,
    /// Dropped its connections (reconnect).
    Dropped,
    /// Failed.
    Failed,
}

/// One session's signaling outcome.
#[derive(Debug, Default)]
pub(crate) struct SignalReport {
    /// Websocket open, joined, answer.
    pub(crate) phases: [Option<Duration>; 3],
    pub(crate) end: End,
    pub(crate) error: Option<String>,
    /// Stage: invitations accepted, publications negotiated, times moved back.
    pub(crate) promoted: u32,
    pub(crate) published: u32,
    pub(crate) demoted: u32,
    /// Time from the invitation's arrival to the SFU's answer to the publishing offer.
    pub(crate) publish_ms: Vec<f64>,
}

/// Opens the websocket, from `source` when given (a loopback alias: the hub's limits count per source address); for
/// a `wss://` hub the TLS handshake runs over that same stream, the server name being the URL's host.
pub(crate) async fn connect(c: &Common, source: Option<IpAddr>) -> anyhow::Result<Ws> {
    let tcp = match source {
        Some(ip) => {
            let s = if ip.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }
                .context("tcp socket")?;
            s.bind(SocketAddr::new(ip, 0)).with_context(|| format!("binding {ip}"))?;
            s.connect(c.hub).await.context("connecting to the hub")?
        }
        None => tokio::net::TcpStream::connect(c.hub).await.context("connecting to the hub")?,
    };
    let _ = tcp.set_nodelay(true);
    // Small buffers: thousands of mostly idle websockets.
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let connector = match &c.tls {
        Some(tls) => Connector::Rustls(Arc::clone(tls)),
        None => Connector::Plain,
    };
    let (ws, _) = tokio_tungstenite::client_async_tls_with_config(c.url.as_str(), tcp, Some(config), Some(connector))
        .await
        .context(if c.tls.is_some() { "TLS or websocket handshake" } else { "websocket handshake" })?;
    Ok(ws)
}

/// A joined websocket with its request counter and the events that arrived while waiting for replies.
pub(crate) struct Conn {
    pub(crate) ws: Ws,
    next_id: u64,
    pub(crate) deferred: VecDeque<Value>,
}

impl Conn {
    pub(crate) fn new(ws: Ws) -> Self {
        Self { ws, next_id: 1, deferred: VecDeque::new() }
    }

    /// Sends a request (its `id` is added) and waits for its `ok`; an `error` fails with the reply's code.
    pub(crate) async fn request(&mut self, mut msg: Value) -> anyhow::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        msg["id"] = json!(id);
        self.ws.send(Message::text(msg.to_string())).await.context("websocket send")?;
        let deadline = tokio::time::Instant::now() + REPLY_TIMEOUT;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .with_context(|| format!("no answer to {} within {REPLY_TIMEOUT:?}", msg["type"]))?
                .context("websocket closed")?
                .context("websocket")?;
            let Message::Text(text) = frame else { continue };
            let v: Value = serde_json::from_str(&text).context("hub sent invalid JSON")?;
            if v["id"] == json!(id) {
                match v["type"].as_str() {
                    Some("ok") => return Ok(v["result"].clone()),
                    Some("error") => {
                        return Err(RequestError(v["code"].as_str().unwrap_or("").to_owned()))
                            .with_context(|| format!("{} refused: {v}", msg["type"]));
                    }
                    _ => {}
                }
            } else if wanted(&text) {
                if self.deferred.len() == DEFERRED {
                    self.deferred.pop_front();
                }
                self.deferred.push_back(v);
            }
        }
    }
}

/// An `error` reply's code.
#[derive(Debug)]
pub(crate) struct RequestError(pub(crate) String);

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "error {}", self.0)
    }
}

impl std::error::Error for RequestError {}

/// Events a session acts on: the SFU's offers and its own state (invitations, demotion).
fn wanted(text: &str) -> bool {
    text.contains("\"media_offer\"") || text.contains("\"type\":\"you\"") || text.contains("\"type\": \"you\"")
}

/// A session's parameters.
pub(crate) struct Session {
    pub(crate) id: usize,
    pub(crate) identity: String,
    /// The token's role (the ceiling).
    pub(crate) role: &'static str,
    /// Websocket and UDP source address.
    pub(crate) source: Option<IpAddr>,
    /// The UDP source when `source` is `None`.
    pub(crate) local_ip: IpAddr,
    /// Speaker: unmute and send the tone.
    pub(crate) speaker: bool,
    pub(crate) sample: bool,
    /// Generate this peer's own DTLS certificate instead of the run's shared one (a rejoin).
    pub(crate) fresh_cert: bool,
}

/// Runs one session to its end; `ctl` carries the orchestrator's orders.
pub(crate) async fn session(
    c: Arc<Common>,
    s: Session,
    media: Handle,
    mut ctl: mpsc::Receiver<Control>,
) -> SignalReport {
    let mut rep = SignalReport::default();
    let mut done = c.done.clone();
    let r = async {
        let token = c.auth.token(&s.identity, &c.room, s.role).await?;
        let started = Instant::now();
        let ws = connect(&c, s.source).await?;
        rep.phases[0] = Some(started.elapsed());
        if !s.speaker {
            c.progress.reached[0].fetch_add(1, Ordering::Relaxed);
        }
        let mut conn = Conn::new(ws);
        conn.request(json!({"type": "join", "token": token, "room": c.room})).await?;
        rep.phases[1] = Some(started.elapsed());
        if !s.speaker {
            c.progress.reached[1].fetch_add(1, Ordering::Relaxed);
        }
        if s.speaker {
            conn.request(json!({"type": "set_muted", "muted": false})).await?;
        }
        // A counting listener against a loopback hub: an address of its own on its media thread's shared socket.
        let (socket, local) = match media.mux.filter(|_| s.source.is_some() && !s.speaker && !s.sample) {
            Some(port) => {
                let local = SocketAddr::new(IpAddr::V4(crate::media::mux_ip(s.id)), port);
                (PeerSocket::Shared(local), local)
            }
            None => {
                let socket =
                    UdpSocket::bind(SocketAddr::new(s.source.unwrap_or(s.local_ip), 0)).context("binding UDP")?;
                socket.set_nonblocking(true).context("nonblocking")?;
                let local = socket.local_addr().context("local address")?;
                (PeerSocket::Own(socket), local)
            }
        };
        let mut config = RtcConfig::new();
        // A rejoin under the same identity is a new peer connection to the SFU only with a new fingerprint.
        if let Some(cert) = c.cert.as_ref().filter(|_| !s.fresh_cert) {
            config = config.set_dtls_cert(cert.clone());
        }
        let mut rtc = config.clear_codecs().enable_opus(true, false).build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").context("candidate")?);
        let mut api = rtc.sdp_api();
        let dir = if s.speaker { Direction::SendRecv } else { Direction::RecvOnly };
        let mid = api.add_media(MediaKind::Audio, dir, None, None, None);
        let (offer, pending): (_, SdpPendingOffer) = api.apply().context("no offer")?;
        let result = conn.request(json!({"type": "media_offer", "sdp": offer.to_sdp_string()})).await?;
        let answer = SdpAnswer::from_sdp_string(result["sdp"].as_str().context("no sdp in the answer")?)
            .context("the SFU's answer does not parse")?;
        rtc.sdp_api().accept_answer(pending, answer).context("the SFU's answer was not accepted")?;
        rep.phases[2] = Some(started.elapsed());
        if !s.speaker {
            c.progress.reached[2].fetch_add(1, Ordering::Relaxed);
        }
        let peer = Peer { session: s.id, rtc, socket, started, send: s.speaker.then_some(mid), sample: s.sample };
        media.send(Cmd::Add(Box::new(peer)))?;
        let mut invited_at = None;
        let mut publishing = false;
        loop {
            while let Some(ev) = conn.deferred.pop_front() {
                event(&c, &s, &media, &mut conn, ev, &mut rep, &mut invited_at, &mut publishing).await?;
            }
            tokio::select! {
                _ = done.changed() => {
                    let _ = conn.ws.close(None).await;
                    return anyhow::Ok(End::Stayed);
                }
                order = ctl.recv() => match order {
                    Some(Control::Leave) => {
                        let _ = media.send(Cmd::Remove(s.id));
                        let _ = conn.request(json!({"type": "leave"})).await;
                        let _ = conn.ws.close(None).await;
                        return Ok(End::Left);
                    }
                    Some(Control::Drop) => {
                        let _ = media.send(Cmd::Remove(s.id));
                        return Ok(End::Dropped);
                    }
                    None => {}
                },
                frame = conn.ws.next() => match frame {
                    Some(Ok(Message::Text(text))) if wanted(&text) => {
                        let v: Value = serde_json::from_str(&text).context("hub sent invalid JSON")?;
                        conn.deferred.push_back(v);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => bail!("websocket: {e}"),
                    None => bail!("the hub closed the websocket"),
                },
            }
        }
    }
    .await;
    match r {
        Ok(end) => rep.end = end,
        Err(e) => {
            rep.end = End::Failed;
            rep.error = Some(format!("{e:#}"));
            if !s.speaker {
                c.progress.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    rep
}

/// Acts on one event.
#[allow(clippy::too_many_arguments)]
async fn event(
    c: &Common,
    s: &Session,
    media: &Handle,
    conn: &mut Conn,
    ev: Value,
    rep: &mut SignalReport,
    invited_at: &mut Option<Instant>,
    publishing: &mut bool,
) -> anyhow::Result<()> {
    match ev["type"].as_str() {
        Some("media_offer") if ev["id"].is_null() => {
            let sdp = ev["sdp"].as_str().context("an SFU offer without sdp")?.to_owned();
            let (tx, rx) = oneshot::channel();
            media.send(Cmd::Offer { session: s.id, sdp, reply: tx })?;
            let answer = rx.await.context("media thread gone")?.map_err(anyhow::Error::msg)?;
            conn.request(json!({"type": "media_answer", "sdp": answer})).await?;
        }
        Some("you") if c.stage && !s.speaker => {
            let you = &ev["you"];
            let role = you["role"].as_str().unwrap_or("");
            if role == "audience" && you["invite"].is_object() && invited_at.is_none() {
                *invited_at = Some(Instant::now());
                conn.request(json!({"type": "accept_invite"})).await?;
                rep.promoted += 1;
            } else if role != "audience" && !*publishing {
                if let Some(at) = invited_at.take() {
                    conn.request(json!({"type": "set_muted", "muted": false})).await?;
                    publish(s, media, conn).await?;
                    *publishing = true;
                    rep.published += 1;
                    rep.publish_ms.push(at.elapsed().as_secs_f64() * 1e3);
                }
            } else if role == "audience" && *publishing {
                media.send(Cmd::Unpublish(s.id))?;
                *publishing = false;
                rep.demoted += 1;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Adds a `sendonly` m-line and negotiates it; on `conflict` (the SFU's own offer is pending) answers that first.
async fn publish(s: &Session, media: &Handle, conn: &mut Conn) -> anyhow::Result<()> {
    for _ in 0..5 {
        let (tx, rx) = oneshot::channel();
        media.send(Cmd::Publish { session: s.id, reply: tx })?;
        let offer = rx.await.context("media thread gone")?.map_err(anyhow::Error::msg)?;
        match conn.request(json!({"type": "media_offer", "sdp": offer})).await {
            Ok(result) => {
                let sdp = result["sdp"].as_str().context("no sdp in the answer")?.to_owned();
                let (tx, rx) = oneshot::channel();
                media.send(Cmd::Answer { session: s.id, sdp, reply: tx })?;
                return rx.await.context("media thread gone")?.map_err(anyhow::Error::msg);
            }
            Err(e) if e.downcast_ref::<RequestError>().is_some_and(|r| r.0 == "conflict") => {
                // Answer the SFU's pending offer (kept while we waited), then offer again.
                let offers: Vec<Value> = conn.deferred.iter().filter(|v| v["type"] == "media_offer").cloned().collect();
                conn.deferred.retain(|v| v["type"] != "media_offer");
                for ev in offers {
                    let sdp = ev["sdp"].as_str().unwrap_or("").to_owned();
                    let (tx, rx) = oneshot::channel();
                    media.send(Cmd::Offer { session: s.id, sdp, reply: tx })?;
                    let answer = rx.await.context("media thread gone")?.map_err(anyhow::Error::msg)?;
                    conn.request(json!({"type": "media_answer", "sdp": answer})).await?;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
    bail!("publishing: the SFU kept its own offer pending")
}
