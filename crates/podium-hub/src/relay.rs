//! Messages from one hub to another (Redis only), on the receiving hub's channel `podium:node:<id>`.
//!
//! A room's media lives on one hub at a time (the holder of the room's lease, see `room_task`), but its participants'
//! websockets may be on any hub. A hub whose client sends a media request for a room whose media is elsewhere relays
//! it to the media hub ([`NodeMessage::MediaRequest`]) and waits for the [`NodeMessage::MediaReply`]; events the SFU
//! raises for a participant (its answer to a server offer, `media_state`, `media_tracks`) and for the room
//! (`active_speakers`, `media_moved`) travel the other way as ordinary room announcements. A draining hub asks
//! another to take a room over with [`NodeMessage::Adopt`].
//!
//! These are hub-internal records (JSON, unknown fields ignored), never sent to clients.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use podium_proto::ErrorCode;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::room_task::Failure;

/// How long a relayed media request may take before the client is told `unavailable`.
pub(crate) const RELAY_TIMEOUT: Duration = Duration::from_secs(5);

/// At most this many relayed requests wait for their reply at once on one hub; more are refused `unavailable`.
const MAX_PENDING: usize = 10_000;

/// One hub-to-hub message.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum NodeMessage {
    /// A client's media request, for the room's media hub.
    MediaRequest {
        /// The hub to answer.
        from: String,
        /// The request's number on that hub.
        req: u64,
        room: String,
        /// The participant (checked against the room on both hubs).
        who: String,
        request: RelayedRequest,
    },
    /// The media hub's answer to [`NodeMessage::MediaRequest`].
    MediaReply {
        req: u64,
        /// The answer SDP for an offer; nothing for an answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sdp: Option<String>,
        /// The error, when the request was refused: its protocol code and message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<(ErrorCode, String)>,
    },
    /// Start (or keep) a task for this room and claim its lease: the sender is draining.
    Adopt { room: String },
    /// Drain (what SIGTERM does): asked by an administrator through another hub's admin API.
    Drain { by: String },
}

/// A relayed media request's payload.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RelayedRequest {
    Offer(String),
    Answer(String),
}

impl NodeMessage {
    pub(crate) fn encode(&self) -> String {
        // A record of strings, numbers and unit-like enums always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub(crate) fn decode(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// What a relayed request's waiter receives: the answer SDP (offers) or nothing, or the failure.
pub(crate) type RelayResult = Result<Option<String>, Failure>;

/// Relayed requests waiting for the media hub's reply, by request number.
#[derive(Default)]
pub(crate) struct Pending {
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, oneshot::Sender<RelayResult>>>,
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<RelayResult>>> {
        // Only single inserts and removals happen under this lock: a poisoned map is still whole.
        self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a request; `None` when too many are waiting already.
    pub(crate) fn register(&self) -> Option<(u64, oneshot::Receiver<RelayResult>)> {
        let (tx, rx) = oneshot::channel();
        let req = self.next.fetch_add(1, Ordering::Relaxed);
        let mut waiting = self.lock();
        if waiting.len() >= MAX_PENDING {
            return None;
        }
        waiting.insert(req, tx);
        Some((req, rx))
    }

    /// Hands the reply to its waiter (a late or unknown reply is dropped).
    pub(crate) fn complete(&self, req: u64, result: RelayResult) {
        if let Some(tx) = self.lock().remove(&req) {
            let _ = tx.send(result);
        }
    }

    /// Forgets a request that timed out or could not be sent.
    pub(crate) fn forget(&self, req: u64) {
        self.lock().remove(&req);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let messages = [
            NodeMessage::MediaRequest {
                from: "a".into(),
                req: 7,
                room: "summit".into(),
                who: "alice".into(),
                request: RelayedRequest::Offer("v=0".into()),
            },
            NodeMessage::MediaReply { req: 7, sdp: Some("v=0".into()), error: None },
            NodeMessage::MediaReply { req: 8, sdp: None, error: Some((ErrorCode::Unauthorized, "no".into())) },
            NodeMessage::Adopt { room: "summit".into() },
            NodeMessage::Drain { by: "admin:ops".into() },
        ];
        for m in messages {
            assert_eq!(NodeMessage::decode(&m.encode()).expect("decodes"), m);
        }
        assert!(NodeMessage::decode("{\"kind\":\"nope\"}").is_err());
    }

    #[test]
    fn pending_replies_reach_their_waiter_once() {
        let pending = Pending::default();
        let (a, mut rx_a) = pending.register().expect("room for one");
        let (b, rx_b) = pending.register().expect("room for two");
        assert_ne!(a, b);
        pending.complete(b, Ok(None));
        pending.complete(b, Ok(Some("late".into())));
        assert_eq!(rx_b.blocking_recv().expect("answered"), Ok(None));
        assert!(rx_a.try_recv().is_err());
        pending.forget(a);
        pending.complete(a, Ok(None));
        assert!(rx_a.try_recv().is_err());
    }
}
