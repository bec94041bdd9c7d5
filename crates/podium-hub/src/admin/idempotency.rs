//! `Idempotency-Key` on the admin API's writes (IETF httpapi draft "The Idempotency-Key HTTP Header Field").
//!
//! A `POST`, `PUT`, `PATCH` or `DELETE` under `/v1/admin/` may carry `Idempotency-Key: "<key>"` (a structured-field
//! string; an unquoted token is accepted too), 1-255 printable ASCII characters. The key is scoped to the
//! credential that sent it (its SHA-256) and kept [`RETENTION`] (24 h), per hub group: in Redis with a shared
//! store (any hub replays what another hub answered), in this process with the in-memory store (at most
//! [`MEMORY_MAX_KEYS`], the oldest forgotten first).
//!
//! - First request with a key: processed; its response (status, content type, body) is kept, unless it is a 5xx
//!   or a 429 (transient: the retry is processed again).
//! - Retry with the same key and the same request (method, path, body: SHA-256 fingerprint): the kept response
//!   again, with `Idempotent-Replayed: true`.
//! - The same key with another request: `422` (`bad_request`).
//! - A retry while the first is still being processed: `409` (`conflict`), with `Retry-After: 1`.
//! - A malformed key: `400` (`bad_request`).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use podium_proto::ErrorCode;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::http::AppState;
use crate::http::problem::Problem;
use crate::hub::Persistence;

/// How long a key is kept.
pub(crate) const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// How long a key stays "in flight" at most (a hub that died mid-request frees it after this).
const IN_FLIGHT: Duration = Duration::from_secs(60);
/// Keys kept by one hub with the in-memory store.
pub(crate) const MEMORY_MAX_KEYS: usize = 10_000;
/// Largest response body kept for replay; a larger one is not kept (the retry is processed again).
const MAX_KEPT_BODY: usize = 256 * 1024;

/// What is kept per key.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Entry {
    InFlight { fingerprint: String },
    Done { fingerprint: String, status: u16, content_type: Option<String>, body: String },
}

impl Entry {
    fn fingerprint(&self) -> &str {
        match self {
            Self::InFlight { fingerprint } | Self::Done { fingerprint, .. } => fingerprint,
        }
    }
}

/// The kept entries by key (with when each was made), and the keys oldest first.
type Kept = (HashMap<String, (Instant, Entry)>, VecDeque<(Instant, String)>);

/// The in-memory keys (with the in-memory store).
#[derive(Default)]
pub(crate) struct MemoryKeys {
    inner: Mutex<Kept>,
}

impl MemoryKeys {
    fn put_if_absent(&self, key: &str, entry: Entry) -> Option<Entry> {
        let mut guard = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (map, order) = &mut *guard;
        let now = Instant::now();
        while let Some((at, k)) = order.front() {
            if now.duration_since(*at) < RETENTION && map.len() < MEMORY_MAX_KEYS {
                break;
            }
            if map.get(k).is_some_and(|(t, _)| t == at) {
                map.remove(k);
            }
            order.pop_front();
        }
        if let Some((_, existing)) = map.get(key) {
            return Some(existing.clone());
        }
        map.insert(key.to_owned(), (now, entry));
        order.push_back((now, key.to_owned()));
        None
    }

    fn put(&self, key: &str, entry: Entry) {
        let mut guard = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(slot) = guard.0.get_mut(key) {
            slot.1 = entry;
        }
    }

    fn delete(&self, key: &str) {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).0.remove(key);
    }
}

/// Parses the header: a structured-field string (`"..."`) or a bare token; 1-255 printable ASCII characters.
fn parse_key(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?.trim();
    let inner = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(text);
    let ok = (1..=255).contains(&inner.len()) && inner.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'"');
    ok.then(|| inner.to_owned())
}

fn sha256_b64(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hasher.finalize())
}

/// The middleware (see the module docs).
pub(crate) async fn layer(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let writes = matches!(*request.method(), Method::POST | Method::PUT | Method::PATCH | Method::DELETE);
    let Some(value) = request.headers().get("idempotency-key").filter(|_| writes) else {
        return next.run(request).await;
    };
    let Some(key) = parse_key(value) else {
        return Problem::new(ErrorCode::BadRequest, "Idempotency-Key: 1-255 printable ASCII characters, quoted")
            .into_response();
    };
    let credential = request.headers().get(header::AUTHORIZATION).map_or(&b""[..], HeaderValue::as_bytes);
    let scope = sha256_b64(&[credential]);
    let (parts, body) = request.into_parts();
    let limit = if crate::summit::api::is_schedule_upload(parts.uri.path()) {
        crate::summit::api::MAX_SCHEDULE_BYTES
    } else {
        crate::http::MAX_BODY_BYTES
    };
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        return Problem::new(ErrorCode::TooLarge, "the body is too large").into_response();
    };
    let fingerprint = sha256_b64(&[parts.method.as_str().as_bytes(), parts.uri.path().as_bytes(), &bytes]);
    let store_key = format!("podium:idem:{scope}:{key}");
    let store = Keys { state: &state };
    let pending = Entry::InFlight { fingerprint: fingerprint.clone() };
    match store.put_if_absent(&store_key, &pending).await {
        Err(problem) => return problem.into_response(),
        Ok(Some(existing)) if existing.fingerprint() != fingerprint => {
            return Problem::with_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::BadRequest,
                "this Idempotency-Key was used for another request",
            )
            .into_response();
        }
        Ok(Some(Entry::InFlight { .. })) => {
            return Problem::new(ErrorCode::Conflict, "a request with this Idempotency-Key is still being processed")
                .retry_after(1)
                .into_response();
        }
        Ok(Some(Entry::Done { status, content_type, body, .. })) => {
            let mut response = (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body).into_response();
            let headers = response.headers_mut();
            if let Some(v) = content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
                headers.insert(header::CONTENT_TYPE, v);
            } else {
                headers.remove(header::CONTENT_TYPE);
            }
            headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
            return response;
        }
        Ok(None) => {}
    }
    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    let status = response.status();
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        store.delete(&store_key).await;
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_KEPT_BODY).await else {
        store.delete(&store_key).await;
        return Problem::new(ErrorCode::Internal, "the response was too large to keep").into_response();
    };
    let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let done = Entry::Done {
        fingerprint,
        status: status.as_u16(),
        content_type,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    };
    store.put(&store_key, &done).await;
    Response::from_parts(parts, Body::from(bytes))
}

/// Where the keys live: Redis (shared by the hub group) or this process.
struct Keys<'a> {
    state: &'a AppState,
}

impl Keys<'_> {
    async fn put_if_absent(&self, key: &str, entry: &Entry) -> Result<Option<Entry>, Problem> {
        match &self.state.shared.store {
            Persistence::Redis(store) => {
                let text = serde_json::to_string(entry).unwrap_or_default();
                let existing = store.put_if_absent(key, &text, IN_FLIGHT).await.map_err(|e| {
                    Problem::new(ErrorCode::Unavailable, format!("idempotency keys: {e}")).retry_after(1)
                })?;
                Ok(existing.and_then(|t| serde_json::from_str(&t).ok()))
            }
            Persistence::Memory(_) => Ok(self.state.shared.idempotency.put_if_absent(key, entry.clone())),
        }
    }

    async fn put(&self, key: &str, entry: &Entry) {
        match &self.state.shared.store {
            Persistence::Redis(store) => {
                let text = serde_json::to_string(entry).unwrap_or_default();
                if let Err(e) = store.put(key, &text, RETENTION).await {
                    tracing::warn!(error = %e, "keeping an idempotent response failed (a retry runs again)");
                }
            }
            Persistence::Memory(_) => self.state.shared.idempotency.put(key, entry.clone()),
        }
    }

    async fn delete(&self, key: &str) {
        match &self.state.shared.store {
            Persistence::Redis(store) => {
                let _ = store.delete(key).await;
            }
            Persistence::Memory(_) => self.state.shared.idempotency.delete(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_quoted_strings_or_tokens() {
        assert_eq!(parse_key(&HeaderValue::from_static("\"8e03-abc\"")).as_deref(), Some("8e03-abc"));
        assert_eq!(parse_key(&HeaderValue::from_static("plain")).as_deref(), Some("plain"));
        assert_eq!(parse_key(&HeaderValue::from_static("\"\"")), None);
        assert_eq!(parse_key(&HeaderValue::from_static("has space")), None);
        let long = "k".repeat(256);
        assert_eq!(parse_key(&HeaderValue::from_str(&long).expect("header")), None);
    }

    #[test]
    fn memory_keys_expire_by_count() {
        let keys = MemoryKeys::default();
        for i in 0..=MEMORY_MAX_KEYS {
            assert!(keys.put_if_absent(&i.to_string(), Entry::InFlight { fingerprint: "f".into() }).is_none());
        }
        // The oldest made room for the newest.
        assert!(keys.put_if_absent("0", Entry::InFlight { fingerprint: "g".into() }).is_none());
        assert!(
            keys.put_if_absent(&MEMORY_MAX_KEYS.to_string(), Entry::InFlight { fingerprint: "g".into() }).is_some()
        );
    }
}
