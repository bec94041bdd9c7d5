//! Reactions: counted per room and window, never one event per reaction, never a transition or a store write.
//!
//! A connection checks a reaction's kind and its sender's token bucket (`conn`); the room task checks the rules
//! (`Room::may_react`: present, room not ended) and adds it to the window's counts. The first reaction of an idle
//! window starts it; when it ends, the counts go to every connection of the room on this hub as one `reactions`
//! event and, with a shared store, to the other hubs serving the room as an announcement without changes (they
//! deliver the frame to their connections as it is). So each hub sends a room's listeners at most one event per
//! window, and a listener sees every hub's counts: at most one event per window from each hub serving the room.
//! Memory: one counter per configured kind per room task, and the window's deadline.

use std::collections::BTreeMap;
use std::time::Duration;

use podium_proto::{self as proto, ErrorCode};
use podium_room::{ParticipantId, Recipients};
use podium_store::{Announced, Announcement};
use tokio::sync::oneshot;
use tracing::debug;

use super::{Failure, RoomTask};
use crate::convert;

/// The counts of the window in progress.
#[derive(Default)]
pub(super) struct Window {
    /// Per configured kind (by index in `[reactions] kinds`).
    counts: Vec<u64>,
    /// When the window ends (`None`: no reaction since the last one ended).
    pub(super) due: Option<tokio::time::Instant>,
}

impl RoomTask {
    /// A connection's reaction (its kind already checked, by index, and its sender's rate).
    pub(super) fn react(
        &mut self,
        who: &ParticipantId,
        conn_id: u64,
        kind: usize,
        reply: oneshot::Sender<Result<Option<proto::Reply>, Failure>>,
    ) {
        if !self.is_current(who, conn_id) {
            let _ = reply.send(Err((ErrorCode::Conflict, "this session was taken over by another connection".into())));
            return;
        }
        if let Err(e) = self.room.may_react(who) {
            let _ = reply.send(Err((convert::error_code(&e), e.to_string())));
            return;
        }
        let kinds = self.shared.config.reactions.kinds.len();
        let window = &mut self.reactions;
        if window.counts.len() != kinds {
            window.counts.resize(kinds, 0);
        }
        let Some(count) = window.counts.get_mut(kind) else {
            let _ = reply.send(Err((ErrorCode::BadRequest, "unknown reaction".into())));
            return;
        };
        *count += 1;
        if window.due.is_none() {
            let length = Duration::from_millis(u64::from(self.shared.config.reactions.window_ms));
            window.due = Some(tokio::time::Instant::now() + length);
        }
        let _ = reply.send(Ok(None));
    }

    /// What `welcome.reactions` says.
    pub(super) fn reactions_info(&self) -> proto::ReactionsInfo {
        let r = &self.shared.config.reactions;
        proto::ReactionsInfo { kinds: r.kinds.clone(), window_ms: r.window_ms, per_second: r.per_second }
    }

    /// The window ended: sends its counts (if any) here and to the other hubs, and starts idle.
    pub(super) async fn flush_reactions(&mut self) {
        self.reactions.due = None;
        let kinds = &self.shared.config.reactions.kinds;
        let counts: BTreeMap<String, u64> = self
            .reactions
            .counts
            .iter_mut()
            .zip(kinds)
            .filter(|(n, _)| **n > 0)
            .map(|(n, kind)| (kind.clone(), std::mem::take(n)))
            .collect();
        if counts.is_empty() {
            return;
        }
        let window_ms = self.shared.config.reactions.window_ms;
        let frame = proto::ServerMessage::Reactions { counts, window_ms }.to_json();
        self.deliver(&Recipients::Everyone, frame.clone().into());
        if self.shared.store.is_shared() {
            let seq = self.committed.as_ref().map_or(0, |s| s.seq);
            let outputs = vec![Announced::Event { to: Recipients::Everyone, frame }];
            let text =
                Announcement { node: self.shared.node_id.clone(), seq, changes: None, outputs, joined: None }.encode();
            if let Err(e) = self.shared.store.publish(&self.name, &text).await {
                debug!(error = %e, "announcing reactions failed");
            }
        }
    }
}
