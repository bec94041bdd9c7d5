//! RFC 9457 problem details: every HTTP error the hub answers, with the same error codes as the websocket protocol.
//!
//! A problem is `application/problem+json` with `type` = `urn:podium:error:<code>` (one type per
//! [`ErrorCode`], stable), `title` (the code's fixed phrase), `status` (always the real HTTP status), `detail`
//! (this occurrence, for people) and the extension member `code` (the protocol's snake_case error code, for
//! programs). Axum's own rejections (malformed JSON, a wrong content type, an unknown path or method) are turned
//! into problems too, so no route ever answers `text/plain` errors.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use podium_proto::ErrorCode;
use serde::Serialize;

/// The media type of a problem.
pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// One problem (RFC 9457).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Problem {
    #[serde(rename = "type")]
    kind: String,
    title: &'static str,
    status: u16,
    detail: String,
    code: &'static str,
    /// Seconds to wait before retrying (also sent as `Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after: Option<u64>,
}

impl Problem {
    /// The protocol error code and the detail, for logs.
    pub(crate) fn describe(&self) -> String {
        format!("{}: {}", self.code, self.detail)
    }

    /// A problem with the HTTP status that goes with `code` (see [`status_of`]).
    pub(crate) fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self::with_status(status_of(code), code, detail)
    }

    /// A problem with an explicit status (e.g. 405 or 415, which have no protocol error code of their own).
    pub(crate) fn with_status(status: StatusCode, code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("urn:podium:error:{}", code.as_str()),
            title: title_of(code),
            status: status.as_u16(),
            detail: detail.into(),
            code: code.as_str(),
            retry_after: None,
        }
    }

    /// Asks the client to wait `seconds` before retrying.
    pub(crate) fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The HTTP status.
    pub(crate) fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (self.status(), body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The HTTP status an error code maps to.
pub(crate) fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadRequest | ErrorCode::UnknownType | ErrorCode::UnsupportedProtocol => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden | ErrorCode::Banned | ErrorCode::NotInvited => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Conflict | ErrorCode::StageFull => StatusCode::CONFLICT,
        ErrorCode::RoomEnded => StatusCode::GONE,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The fixed title of each problem type.
fn title_of(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::BadRequest => "Bad request",
        ErrorCode::UnknownType => "Unknown request type",
        ErrorCode::Unauthorized => "Not authenticated",
        ErrorCode::Forbidden => "Not allowed",
        ErrorCode::NotFound => "Not found",
        ErrorCode::Conflict => "Conflicts with the current state",
        ErrorCode::StageFull => "The stage is full",
        ErrorCode::RateLimited => "Too many requests",
        ErrorCode::TooLarge => "Too large",
        ErrorCode::Unavailable => "Temporarily unavailable",
        ErrorCode::Banned => "Banned from the room",
        ErrorCode::NotInvited => "Not on the guest list",
        ErrorCode::RoomEnded => "The room has ended",
        ErrorCode::UnsupportedProtocol => "Unsupported protocol version",
        _ => "Internal error",
    }
}

/// The fallback for paths no route matches.
pub(crate) async fn not_found() -> Problem {
    Problem::new(ErrorCode::NotFound, "no such path")
}

/// Turns axum's plain-text rejections (and any other non-problem error from the framework: 405, 413, 415…) into
/// problems, keeping their status and headers (e.g. `Allow`).
pub(crate) async fn problems_only(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROBLEM_JSON));
    if is_problem {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let detail = match axum::body::to_bytes(body, 4096).await {
        Ok(bytes) if !bytes.is_empty() => String::from_utf8_lossy(&bytes).trim().to_owned(),
        _ => status.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    let code = match status {
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::TooLarge,
        StatusCode::TOO_MANY_REQUESTS => ErrorCode::RateLimited,
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
        StatusCode::FORBIDDEN => ErrorCode::Forbidden,
        StatusCode::CONFLICT => ErrorCode::Conflict,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Unavailable,
        s if s.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::BadRequest,
    };
    let problem = Problem::with_status(status, code, detail);
    let fresh = problem.into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    Response::from_parts(parts, fresh.into_body())
}
