//! The hub's side of the SFU: starting it, turning its events into protocol messages for the right room task, and
//! mapping its errors to protocol error codes.
//!
//! The SFU ([`podium_media`]) knows peers, rooms and tracks, not roles. The room task is the only caller that
//! changes what the SFU believes about a participant: it forwards the state machine's `Publish` outputs
//! (`set_publish`), removes peers whose participant left the room, and removes a room's peers when it ends. Media
//! requests from a connection go through the room task too, so an offer from someone who was just removed is
//! refused there, in order with the removal.

use std::sync::Arc;
use std::time::Duration;

use podium_media::{LogLimiter, MediaError, MediaEvent, MediaEvents, PeerState};
use podium_proto::{self as proto, ErrorCode};
use tracing::{debug, warn};

use crate::hub::Shared;
use crate::room_task::{Failure, RoomMsg};

/// A media request from a joined connection.
#[derive(Debug)]
pub(crate) enum MediaRequest {
    /// The client's offer; the reply carries the answer.
    Offer(String),
    /// The client's answer to the SFU's offer.
    Answer(String),
    /// A trickled candidate (the SFU is ICE-lite and does not need it).
    Candidate,
}

/// Maps an SFU error to the documented protocol error (`proto/PROTOCOL.md`, `media_offer` and `media_answer`).
///
/// The messages are the SFU's own fixed texts; nothing of a dependency's error text reaches a client (an I/O
/// error's text is logged at debug level instead).
pub(crate) fn failure(e: &MediaError) -> Failure {
    match e {
        MediaError::BadSdp(_) | MediaError::BadFiller(_) => (ErrorCode::BadRequest, e.to_string()),
        MediaError::TooLarge { .. } | MediaError::TooMany { .. } => (ErrorCode::TooLarge, e.to_string()),
        MediaError::Conflict | MediaError::NoPendingOffer => (ErrorCode::Conflict, e.to_string()),
        MediaError::UnknownPeer => (ErrorCode::NotFound, e.to_string()),
        MediaError::Unavailable => (ErrorCode::Unavailable, e.to_string()),
        MediaError::Io(io) => {
            debug!(error = %io, "media I/O error");
            (ErrorCode::Unavailable, MediaError::Unavailable.to_string())
        }
    }
}

/// The protocol message for an SFU event, and its recipient (`None`: everyone in the room); `None` for the events
/// no client is told (filler audio: for the scheduler).
pub(crate) fn event_message(event: MediaEvent) -> Option<(Option<String>, proto::ServerMessage)> {
    Some(match event {
        MediaEvent::Offer { identity, sdp, .. } => (Some(identity), proto::ServerMessage::MediaOffer { sdp }),
        MediaEvent::State { identity, state, .. } => {
            let state = match state {
                PeerState::Connected => proto::MediaState::Connected,
                PeerState::Disconnected => proto::MediaState::Disconnected,
                PeerState::Failed => proto::MediaState::Failed,
            };
            (Some(identity), proto::ServerMessage::MediaState { state })
        }
        MediaEvent::Tracks { identity, tracks, .. } => {
            let tracks = tracks.into_iter().map(|(mid, participant)| proto::MediaTrack { mid, participant }).collect();
            (Some(identity), proto::ServerMessage::MediaTracks { tracks })
        }
        MediaEvent::ActiveSpeakers { speaking, stopped, .. } => {
            let speaking =
                speaking.into_iter().map(|(participant, level)| proto::Speaking { participant, level }).collect();
            (None, proto::ServerMessage::ActiveSpeakers { speaking, stopped })
        }
        MediaEvent::FillerStarted { .. } | MediaEvent::FillerStopped { .. } => return None,
    })
}

fn event_room(event: &MediaEvent) -> &str {
    match event {
        MediaEvent::Offer { room, .. }
        | MediaEvent::State { room, .. }
        | MediaEvent::Tracks { room, .. }
        | MediaEvent::ActiveSpeakers { room, .. }
        | MediaEvent::FillerStarted { room }
        | MediaEvent::FillerStopped { room, .. } => room,
    }
}

/// Hands each SFU event to its room's task. A room that is not running here has no one to tell.
pub(crate) async fn dispatch(shared: Arc<Shared>, mut events: MediaEvents) {
    // Media events follow remote input (offers, talking): one line per interval at most.
    let mut dropped_log = LogLimiter::new(Duration::from_secs(10));
    while let Some(event) = events.recv().await {
        if matches!(event, MediaEvent::FillerStarted { .. } | MediaEvent::FillerStopped { .. }) {
            // Filler audio is the summit scheduler's (not wired yet): no client is told.
            debug!(?event, "filler event");
            continue;
        }
        let Some(room) = shared.running_room(event_room(&event)) else {
            debug!(room = event_room(&event), "media event for a room not running here");
            continue;
        };
        // Bounded wait: one stuck room must not hold up every other room's media events.
        let sent = tokio::time::timeout(Duration::from_millis(200), room.inbox.send(RoomMsg::MediaEvent(event))).await;
        match sent {
            Ok(Ok(())) => {}
            // The room ended meanwhile: nobody is left to tell.
            Ok(Err(_)) => debug!("media event for a room that just ended"),
            Err(_) => {
                if let Some(suppressed) = dropped_log.allow(std::time::Instant::now()) {
                    warn!(suppressed, "a room's inbox stayed full; a media event was dropped");
                }
            }
        }
    }
}
