//! Decoding one client text frame into a request, with the precise error the hub replies with.
//!
//! This is the whole path from untrusted text to a typed [`Request`], in the order the hub applies it:
//!
//! 1. size: longer than `max_bytes` → `too_large` (no id: the frame is not read);
//! 2. the [`Envelope`] (`type` and `id` only) → `bad_request` "malformed JSON" when the frame is not a JSON object;
//! 3. `type` present and a string, else `bad_request` (echoing the id if it was readable);
//! 4. `id` present and a number or string, else `bad_request`;
//! 5. a string `id` of at most [`MAX_ID_BYTES`], else `bad_request` (the id is not echoed);
//! 6. `type` one of [`Request::KINDS`], else `unknown_type` (with the id);
//! 7. the full [`ClientMessage`], else `bad_request` "invalid `type`: …" (with the id).
//!
//! Invariants (checked by the `client_message` fuzz target and its corpus replay test): it never panics; on `Ok`,
//! the request's [`Request::kind`] is the frame's `type`, a string id is at most [`MAX_ID_BYTES`], and the
//! message re-encoded with `serde_json` decodes to the same `(id, request)`; on `Err`, the code is one of
//! `too_large`, `bad_request`, `unknown_type`.

use crate::{ClientMessage, Envelope, ErrorCode, Request, RequestId};

/// The longest string request id, in bytes.
pub const MAX_ID_BYTES: usize = 64;

/// Why a client frame was refused: the `error` reply to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// The request id to echo, when it could be read (and was acceptable).
    pub id: Option<RequestId>,
    /// The error code.
    pub code: ErrorCode,
    /// The human-readable message.
    pub message: String,
}

impl DecodeError {
    fn new(id: Option<RequestId>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self { id, code, message: message.into() }
    }
}

/// Decodes one client text frame of at most `max_bytes` (see the module docs for the order of checks).
pub fn decode_client(text: &str, max_bytes: usize) -> Result<(RequestId, Request), DecodeError> {
    if text.len() > max_bytes {
        return Err(DecodeError::new(None, ErrorCode::TooLarge, format!("messages are limited to {max_bytes} bytes")));
    }
    let env = serde_json::from_str::<Envelope>(text)
        .map_err(|e| DecodeError::new(None, ErrorCode::BadRequest, format!("malformed JSON: {e}")))?;
    let Some(kind) = env.kind else {
        return Err(DecodeError::new(env.id, ErrorCode::BadRequest, "missing `type`"));
    };
    let Some(id) = env.id else {
        return Err(DecodeError::new(None, ErrorCode::BadRequest, "missing or malformed `id` (a number or a string)"));
    };
    if let RequestId::Text(s) = &id
        && s.len() > MAX_ID_BYTES
    {
        return Err(DecodeError::new(None, ErrorCode::BadRequest, "`id` strings are limited to 64 bytes"));
    }
    if !Request::KINDS.contains(&kind.as_str()) {
        return Err(DecodeError::new(Some(id), ErrorCode::UnknownType, format!("unknown type `{kind}`")));
    }
    match serde_json::from_str::<ClientMessage>(text) {
        Ok(m) => Ok((id, m.request)),
        Err(e) => Err(DecodeError::new(Some(id), ErrorCode::BadRequest, format!("invalid `{kind}`: {e}"))),
    }
}

/// The request id of a frame, if it has a readable one, for replies to frames refused before decoding (rate
/// limiting). Never fails.
pub fn request_id(text: &str) -> Option<RequestId> {
    serde_json::from_str::<Envelope>(text).unwrap_or_default().id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> (Option<RequestId>, ErrorCode) {
        let e = decode_client(text, 256).err().unwrap_or_else(|| panic!("accepted {text}"));
        (e.id, e.code)
    }

    #[test]
    fn every_step_refuses_with_its_error() {
        assert_eq!(
            code(&format!("{{\"type\":\"ping\",\"id\":1,\"x\":\"{}\"}}", "a".repeat(300))).1,
            ErrorCode::TooLarge
        );
        assert_eq!(code("{"), (None, ErrorCode::BadRequest));
        assert_eq!(code(r#"{"id":3}"#), (Some(RequestId::Number(3)), ErrorCode::BadRequest));
        assert_eq!(code(r#"{"type":"ping"}"#), (None, ErrorCode::BadRequest));
        assert_eq!(code(&format!(r#"{{"type":"ping","id":"{}"}}"#, "i".repeat(65))), (None, ErrorCode::BadRequest));
        assert_eq!(code(r#"{"type":"teleport","id":5}"#), (Some(RequestId::Number(5)), ErrorCode::UnknownType));
        assert_eq!(
            code(r#"{"type":"kick","id":"k","participant":7}"#),
            (Some(RequestId::Text("k".into())), ErrorCode::BadRequest)
        );
    }

    #[test]
    fn accepts_a_request() {
        let (id, request) =
            decode_client(r#"{"type":"set_muted","id":"m1","muted":true}"#, 256).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(id, RequestId::Text("m1".into()));
        assert_eq!(request, Request::SetMuted { muted: true });
        assert_eq!(request_id(r#"{"id":9,"type":"nope"}"#), Some(RequestId::Number(9)));
        assert_eq!(request_id("garbage"), None);
    }
}
