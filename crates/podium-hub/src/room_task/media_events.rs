//! What the SFU says about a room's participants, and what the media hub remembers of it. SFU events
//! (`media_offer`, `media_state`, `media_tracks`, `active_speakers`) reach this hub's connections directly and the
//! others' through the room's channel (outputs-only announcements). Only the media hub delivers them: a late event
//! from peers this hub no longer serves is dropped. The media hub keeps the current speakers (`active_speakers`
//! carries only changes, so a participant whose media connects later is sent the whole list once) and each
//! participant's last `media_tracks` frame, which follows a resume (here, or on another hub: the join's
//! announcement names the participant) and a lagged connection's `resync`, since the slots may have changed while
//! the connection was away. A participant's slots are forgotten when it leaves the room, everyone's when the media
//! moves to another hub.

use super::*;
use crate::media;

impl RoomTask {
    /// Sends `who`'s connection (here, or on another hub) the slots the SFU last assigned it, if this hub runs the
    /// room's media: after a resume, whatever changed while the connection was away.
    pub(super) async fn send_tracks(&mut self, who: &ParticipantId) {
        if !self.runs_media() {
            return;
        }
        let Some(frame) = self.tracks.get(who).cloned() else { return };
        if self.conns.contains_key(who) {
            self.deliver(&room::Recipients::One(who.clone()), frame.into());
        } else {
            self.announce_frames(vec![(room::Recipients::One(who.clone()), frame)]).await;
        }
    }

    /// Delivers an SFU event of this room (media hub only) and remembers speakers and slots.
    pub(super) async fn on_media_event(&mut self, event: podium_media::MediaEvent) {
        use podium_media::{MediaEvent, PeerState};
        let tracks_of = match &event {
            MediaEvent::Tracks { identity, .. } => Some(ParticipantId::new(identity.as_str())),
            _ => None,
        };
        let connected = match &event {
            MediaEvent::ActiveSpeakers { speaking, stopped, .. } => {
                self.speaking.retain(|(id, _)| !stopped.contains(id) && !speaking.iter().any(|(s, _)| s == id));
                self.speaking.extend(speaking.iter().cloned());
                self.speaking.sort_by_key(|s| std::cmp::Reverse(s.1));
                self.note_heard();
                None
            }
            MediaEvent::State { identity, state: PeerState::Connected, .. } => Some(identity.clone()),
            _ => None,
        };
        if !self.runs_media() {
            // A late event from peers this hub no longer serves.
            return;
        }
        let Some((to, msg)) = media::event_message(event) else { return };
        let to = match to {
            Some(who) => room::Recipients::One(ParticipantId::new(who.as_str())),
            None => room::Recipients::Everyone,
        };
        // Participants connected to other hubs get it through the room's channel.
        let mut remote = Vec::new();
        let text = msg.to_json();
        if let Some(who) = tracks_of
            && self.room.role(&who).is_some()
        {
            self.tracks.insert(who, text.clone());
        }
        self.deliver(&to, text.clone().into());
        if !matches!(&to, room::Recipients::One(who) if self.conns.contains_key(who)) {
            remote.push((to, text));
        }
        // A newly connected participant missed the changes so far: give it the current speakers.
        if let Some(who) = connected
            && !self.speaking.is_empty()
        {
            let speaking =
                self.speaking.iter().map(|(p, level)| proto::Speaking { participant: p.clone(), level: *level });
            let msg = proto::ServerMessage::ActiveSpeakers { speaking: speaking.collect(), stopped: Vec::new() };
            let who = ParticipantId::new(who.as_str());
            let text = msg.to_json();
            if self.conns.contains_key(&who) {
                self.deliver(&room::Recipients::One(who), text.into());
            } else {
                remote.push((room::Recipients::One(who), text));
            }
        }
        self.announce_frames(remote).await;
    }
}
