//! The hub's HTTP surface, on hyper (HTTP/1.1) and axum: the websocket upgrade at `/v1/ws`, the demo app and the
//! SDK, development tokens, health (`/healthz`, `/readyz`) and, under `/v1/admin/`, the admin API.
//!
//! # Design
//!
//! The accept loop (`hub`) admits a TCP connection (per-source limits, `crate::admission`) and hands it to
//! [`serve`], which runs the TLS handshake when `[tls]` is on (`crate::tls`), then one hyper HTTP/1.1 connection on
//! it with the shared [`Router`]. The connection's facts
//! (peer address, id, admission ticket) travel with every request as a [`ConnInfo`] extension.
//!
//! A websocket upgrade does not spawn anything: the `/v1/ws` handler checks the handshake, parks hyper's
//! `OnUpgrade` and the connection's ticket in the [`ConnInfo`], and answers `101`. When hyper's connection future
//! returns (it hands the socket over after writing the `101`), [`serve`] takes the upgraded socket back as the
//! [`Stream`] (TCP, or TLS over it) plus whatever hyper had already read past the request, and runs the websocket connection
//! (`conn::run`) in the same task. An idle websocket therefore holds no HTTP state at all: hyper's buffers are
//! gone, and the task is what it was before the HTTP move (signaling benchmark: memory per idle listener).
//!
//! # Bounds
//!
//! - A connection must send its first byte within `auth.auth_timeout_ms`, and every request head within the same
//!   time (hyper's header read timeout); heads are limited to [`MAX_HEAD_BYTES`]. With TLS, the handshake must be
//!   done within `tls.handshake_timeout_ms` of the accept, and the first request head within the auth timeout after
//!   it (hyper's header read timeout starts when the connection is served).
//! - An HTTP connection (not upgraded) lives at most [`HTTP_CONNECTION_LIFETIME`]; then it is closed gracefully
//!   after its request in flight. Request bodies are limited by axum's body limit ([`MAX_BODY_BYTES`]).
//! - On shutdown, HTTP connections are closed gracefully; upgraded ones follow `conn`'s shutdown.
//! - Every error is an RFC 9457 problem ([`problem`]).

mod health;
mod pages;
pub(crate) mod problem;
mod upgrade;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::routing::get;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tower::ServiceExt as _;
use tracing::{Instrument as _, debug};

pub use self::pages::{DEMO_HTML, DEV_TOKEN_PATH, SDK_JS};
use crate::admission::Ticket;
use crate::auth::TokenKeys;
use crate::conn::WS_PATH;
use crate::hub::Shared;
use crate::tls::Stream;

/// Largest request head, in bytes (hyper's smallest read buffer limit).
pub(crate) const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Largest request body, in bytes.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest an HTTP connection (not upgraded to a websocket) is kept.
pub(crate) const HTTP_CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// How long a graceful close of an HTTP connection may take (its request in flight).
const HTTP_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// What the handlers share: the hub, through narrow views ([`FromRef`]).
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) shared: Arc<Shared>,
}

impl FromRef<AppState> for TokenKeys {
    fn from_ref(state: &AppState) -> Self {
        state.shared.keys.clone()
    }
}

/// One TCP connection's facts, attached to each of its requests.
pub(crate) struct ConnInfo {
    pub(crate) peer: SocketAddr,
    /// The connection's admission; `None` when its peer is a trusted proxy (admitted per request by the client
    /// address the proxy names) or once a websocket took it.
    ticket: Mutex<Option<Ticket>>,
    /// Set by the `/v1/ws` handler: the upgrade to run once hyper lets go of the socket.
    upgrade: Mutex<Option<(hyper::upgrade::OnUpgrade, Ticket)>>,
}

impl ConnInfo {
    fn take_ticket(&self) -> Option<Ticket> {
        self.ticket.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }

    fn park_upgrade(&self, on_upgrade: hyper::upgrade::OnUpgrade, ticket: Ticket) {
        *self.upgrade.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((on_upgrade, ticket));
    }

    fn take_upgrade(&self) -> Option<(hyper::upgrade::OnUpgrade, Ticket)> {
        self.upgrade.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }
}

/// Every route of the hub.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let demo = shared.config.server.demo_enabled(&shared.config.auth);
    let dev_tokens = shared.config.auth.secret.is_none();
    let mut router = Router::new()
        .route(WS_PATH, get(upgrade::websocket))
        .route("/sdk/podium.js", get(pages::sdk))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz));
    router = router.route("/metrics", get(crate::metrics::serve));
    if demo {
        router = router.route("/", get(pages::demo)).route("/index.html", get(pages::demo));
    }
    if dev_tokens {
        router = router.route(DEV_TOKEN_PATH, get(pages::dev_token));
    }
    router
        .merge(crate::admin::router(AppState { shared: Arc::clone(&shared) }))
        .fallback(problem::not_found)
        .layer(axum::middleware::from_fn(problem::problems_only))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&shared), count_responses))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(AppState { shared })
}

/// An admitted TCP connection.
pub(crate) struct Accepted {
    pub(crate) stream: tokio::net::TcpStream,
    pub(crate) peer: SocketAddr,
    pub(crate) conn_id: u64,
    /// `None` when the peer is a trusted proxy.
    pub(crate) ticket: Option<Ticket>,
}

/// Counts every HTTP response by surface and status class (`podium_http_responses_total`).
async fn count_responses(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let admin = request.uri().path().starts_with("/v1/admin/");
    let response = next.run(request).await;
    shared.metrics.http_response(admin, response.status().as_u16());
    response
}

/// Serves one admitted TCP connection: HTTP requests until it closes, or a websocket once it upgrades.
///
/// Not an `async fn`: the task's future then holds only the hub, the span and two boxes in turn, not the arguments
/// as well. The HTTP phase is boxed (with the router and the accepted socket) and over before the websocket starts:
/// nothing of hyper's connection (buffers, timers, the service) stays in this task while the websocket runs, and the
/// websocket's future is one box (`conn::run`).
pub(crate) fn serve(shared: Arc<Shared>, router: Router, accepted: Accepted) -> impl Future<Output = ()> + Send {
    let conn_id = accepted.conn_id;
    let span = tracing::info_span!("conn", id = conn_id, peer = %accepted.peer);
    let http = Box::pin(upgrade(Arc::clone(&shared), router, accepted).instrument(span.clone()));
    async move {
        let Some((stream, read_buf, ticket)) = http.await else { return };
        crate::conn::run(shared, stream, read_buf, conn_id, ticket).instrument(span).await;
    }
}

/// Serves HTTP on the connection; once a websocket upgrade was accepted, the connection's stream, what was read past
/// the upgrade request, and the connection's admission ticket.
async fn upgrade(shared: Arc<Shared>, router: Router, accepted: Accepted) -> Option<(Stream, Vec<u8>, Ticket)> {
    let shared = &*shared;
    let auth_timeout = Duration::from_millis(shared.config.auth.auth_timeout_ms);
    let (on_upgrade, ticket) = http_phase(shared, router, accepted).await?;
    let upgraded = match tokio::time::timeout(auth_timeout, on_upgrade).await {
        Ok(Ok(upgraded)) => upgraded,
        Ok(Err(e)) => {
            debug!(error = %e, "websocket upgrade failed");
            return None;
        }
        Err(_) => return None,
    };
    let Ok(parts) = upgraded.downcast::<TokioIo<Stream>>() else {
        debug!("upgraded connection is not the connection's stream");
        return None;
    };
    // `read_buf` may share hyper's whole read buffer (8 KiB): copy what it holds and let the buffer go, or every idle
    // connection keeps it.
    let hyper::upgrade::Parts { io, read_buf: pre_read, .. } = parts;
    Some((io.into_inner(), pre_read.to_vec(), ticket))
}

/// Serves HTTP requests on the connection until it closes (`None`) or a websocket upgrade was accepted (its
/// upgrade and admission ticket).
async fn http_phase(
    shared: &Shared,
    router: Router,
    accepted: Accepted,
) -> Option<(hyper::upgrade::OnUpgrade, Ticket)> {
    let Accepted { stream, peer, ticket, .. } = accepted;
    let _ = stream.set_nodelay(true);
    let auth_timeout = Duration::from_millis(shared.config.auth.auth_timeout_ms);
    let stream = match &shared.tls {
        // Bounded by the handshake timeout; the first request head by hyper's header timeout below.
        Some(tls) => tls.accept(stream).await?,
        None => {
            // A connection that sends nothing is dropped after the auth timeout, before hyper's connection (and its
            // buffers) exists.
            if !matches!(tokio::time::timeout(auth_timeout, stream.readable()).await, Ok(Ok(()))) {
                debug!("nothing sent before the timeout");
                return None;
            }
            Stream::Plain(stream)
        }
    };
    let info = Arc::new(ConnInfo { peer, ticket: Mutex::new(ticket), upgrade: Mutex::new(None) });
    let service = {
        let info = Arc::clone(&info);
        hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(Arc::clone(&info));
            router.clone().oneshot(request)
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(auth_timeout).max_buf_size(MAX_HEAD_BYTES);
    let connection = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
    let mut connection = std::pin::pin!(connection);
    let mut shutdown = shared.shutdown_rx();
    let lifetime = tokio::time::sleep(HTTP_CONNECTION_LIFETIME);
    let mut lifetime = std::pin::pin!(lifetime);
    let mut closing = false;
    let result = loop {
        tokio::select! {
            result = connection.as_mut() => break result,
            _ = shutdown.changed(), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
                lifetime.as_mut().reset(tokio::time::Instant::now() + HTTP_CLOSE_GRACE);
            }
            () = lifetime.as_mut() => {
                if closing {
                    debug!("http connection did not close in time");
                    return None;
                }
                connection.as_mut().graceful_shutdown();
                closing = true;
                lifetime.as_mut().reset(tokio::time::Instant::now() + HTTP_CLOSE_GRACE);
            }
        }
    };
    if let Err(e) = result {
        debug!(error = %e, "http connection ended with an error");
    }
    info.take_upgrade()
}
