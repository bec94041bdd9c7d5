//! `GET /v1/ws`: the websocket handshake (RFC 6455 §4.2), checked here and completed by hyper's upgrade.
//!
//! Refusals, all problems (RFC 9457): not a websocket request → `426 Upgrade Required` (`bad_request`), a bad
//! handshake (version ≠ 13, no key) → `400` (`bad_request`), a source over its limits (behind a trusted proxy,
//! where admission happens here) → `429` with `Retry-After: 1` (`rate_limited`).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use podium_proto::ErrorCode;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::problem::Problem;
use super::{AppState, ConnInfo};
use crate::admission;

/// Whether a comma-separated header contains `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

pub(crate) async fn websocket(State(state): State<AppState>, mut request: Request) -> Response {
    let Some(info) = request.extensions().get::<Arc<ConnInfo>>().cloned() else {
        return Problem::new(ErrorCode::Internal, "connection facts missing").into_response();
    };
    let headers = request.headers();
    if !has_token(headers, header::CONNECTION, "upgrade") || !has_token(headers, header::UPGRADE, "websocket") {
        let mut response = Problem::with_status(
            StatusCode::UPGRADE_REQUIRED,
            ErrorCode::BadRequest,
            "this is the websocket endpoint: connect with a websocket client",
        )
        .into_response();
        response.headers_mut().insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        return response;
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).is_none_or(|v| v.as_bytes() != b"13") {
        let mut response = Problem::new(ErrorCode::BadRequest, "unsupported websocket version (13 is)").into_response();
        response.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return response;
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Problem::new(ErrorCode::BadRequest, "missing Sec-WebSocket-Key").into_response();
    };
    let accept = derive_accept_key(key.as_bytes());
    let ticket = match info.take_ticket() {
        Some(ticket) => ticket,
        None => {
            // Through a trusted proxy: admitted by the client's address the proxy recorded.
            let shared = &state.shared;
            let proxy_header = shared.config.server.proxy_header;
            let values = headers.get_all(proxy_header.name()).iter().filter_map(|v| v.to_str().ok());
            let client = if shared.admission.is_trusted_proxy(info.peer.ip()) {
                admission::forwarded_client(&shared.admission, proxy_header, values).unwrap_or(info.peer.ip())
            } else {
                info.peer.ip()
            };
            match shared.admission.admit(client) {
                Ok(ticket) => ticket,
                Err(refusal) => {
                    return Problem::new(ErrorCode::RateLimited, refusal.message()).retry_after(1).into_response();
                }
            }
        }
    };
    let Some(on_upgrade) = request.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return Problem::new(ErrorCode::BadRequest, "this connection cannot be upgraded").into_response();
    };
    info.park_upgrade(on_upgrade, ticket);
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = response.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    response
}
