//! The `client_message` target: a client text frame through the hub's decode sequence.

use podium_proto::{ClientMessage, ErrorCode, MAX_ID_BYTES, RequestId, decode_client};

/// The hub's default `limits.max_message_bytes`.
const MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// Decodes `data` as a client frame (websocket text frames are UTF-8; other bytes are refused before this) and
/// checks the decoder's promises (see [`podium_proto::decode_client`]).
pub fn client_message(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = podium_proto::request_id(text);
    match decode_client(text, MAX_MESSAGE_BYTES) {
        Ok((id, request)) => {
            if let RequestId::Text(s) = &id {
                assert!(s.len() <= MAX_ID_BYTES, "accepted an id of {} bytes", s.len());
            }
            let kind = serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|v| v.get("type").and_then(|t| t.as_str().map(str::to_owned)));
            assert_eq!(kind.as_deref(), Some(request.kind()), "decoded kind differs from `type`");
            let again = serde_json::to_string(&ClientMessage { id: id.clone(), request: request.clone() })
                .unwrap_or_else(|e| panic!("a decoded request does not encode: {e}"));
            match decode_client(&again, usize::MAX) {
                Ok(decoded) => assert_eq!(decoded, (id, request), "re-encoded request decodes differently"),
                Err(e) => panic!("re-encoded request refused: {e:?}\n{again}"),
            }
        }
        Err(e) => assert!(
            matches!(e.code, ErrorCode::TooLarge | ErrorCode::BadRequest | ErrorCode::UnknownType),
            "unexpected error code {:?}",
            e.code
        ),
    }
}
