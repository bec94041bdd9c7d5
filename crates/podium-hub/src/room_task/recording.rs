//! Recording on the hub that runs the room's media: the room says whether it records and who is recorded
//! ([`Room::recording`](podium_room::Room::recording), [`Room::is_recorded`](podium_room::Room::is_recorded)); this
//! module makes the SFU follow it, whichever hub ran the transition.
//!
//! After every turn of the room task, [`RoomTask::sync_recording`] compares what the room says with what this hub's
//! SFU does: it starts the SFU's recording (in a new part directory, see `crate::recording`) when the room records
//! and this hub runs its media, stops it when either ends (the recording stopped, the room ended, the media moved to
//! another hub, the task ends), and marks exactly the recorded stage members' audio for writing
//! (`Media::set_record`). A stopped part is mixed on a task of its own (`crate::recording::mix`). The room's own
//! transitions are not touched, so a replica hub (not running the media) does nothing; the media hub follows the
//! announced transitions of the others the same way.

use super::*;

/// What this hub's SFU records for the room.
pub(super) struct Recording {
    /// The room's recording id.
    id: String,
    /// This hub's part of it (its directory and replay name).
    part: String,
    /// Whose audio the SFU writes.
    recorded: HashSet<ParticipantId>,
    /// Display names of everyone recorded, for the chapters.
    names: HashMap<String, String>,
    /// The SFU refused to start (the directory could not be made): nothing to stop or mix.
    failed: bool,
    /// The room's `seq` when the recorded set was last compared (the stage changes only with a transition).
    synced_seq: Option<u64>,
}

impl RoomTask {
    /// Makes this hub's SFU record what the room says (see the module docs). Cheap when nothing records.
    pub(super) fn sync_recording(&mut self) {
        let want = if self.runs_media() { self.room.recording().map(|r| r.id.clone()) } else { None };
        if want.is_none() && self.recording.is_none() {
            return;
        }
        if self.recording.as_ref().map(|r| &r.id) != want.as_ref() {
            self.finish_recording();
            if let Some(id) = want {
                self.begin_recording(id);
            }
        }
        let Some(media) = self.shared.media.clone() else { return };
        let Some(rec) = self.recording.as_mut().filter(|r| !r.failed) else { return };
        // Most turns of the task change nothing (a message, a timer): compare only after a transition.
        let seq = self.room.seq();
        if rec.synced_seq.replace(seq) == Some(seq) {
            return;
        }
        let now: HashSet<ParticipantId> =
            self.room.stage().into_iter().filter(|m| self.room.is_recorded(&m.id)).map(|m| m.id).collect();
        if now == rec.recorded {
            return;
        }
        for id in now.difference(&rec.recorded) {
            media.set_record(&self.name, id.as_str(), true);
            if let Some(p) = self.room.participant(id) {
                rec.names.insert(id.to_string(), p.name.clone());
            }
        }
        for id in rec.recorded.difference(&now) {
            media.set_record(&self.name, id.as_str(), false);
        }
        rec.recorded = now;
    }

    fn begin_recording(&mut self, id: String) {
        let Some(media) = &self.shared.media else { return };
        let dir = &self.shared.config.recording.dir;
        let part = crate::recording::part_name(dir, &id);
        let failed = match media.start_recording(&self.name, &part, dir) {
            Ok(path) => {
                info!(recording = %id, part = %part, path = %path.display(), "recording started on this hub");
                false
            }
            Err(e) => {
                warn!(recording = %id, error = %e, "starting the recording failed");
                let shared = self.shared.clone();
                let room = self.name.clone();
                let data = podium_proto::webhook::WebhookData {
                    recording_id: Some(part.clone()),
                    error: Some(format!("starting the recording failed: {e}")),
                    ..Default::default()
                };
                tokio::spawn(async move { shared.hooks.recording_event(&room, "recording.failed", data).await });
                true
            }
        };
        self.recording =
            Some(Recording { id, part, recorded: HashSet::new(), names: HashMap::new(), failed, synced_seq: None });
    }

    /// Stops this hub's recording of the room, if any, and mixes it on a task of its own.
    pub(super) fn finish_recording(&mut self) {
        let Some(rec) = self.recording.take() else { return };
        let Some(media) = self.shared.media.clone() else { return };
        // (A no-op for peers already gone: `set_record(false)` never makes an entry.)
        for id in &rec.recorded {
            media.set_record(&self.name, id.as_str(), false);
        }
        if rec.failed {
            return;
        }
        info!(recording = %rec.id, part = %rec.part, "recording stopped on this hub");
        let (shared, room) = (self.shared.clone(), self.name.clone());
        tokio::spawn(async move {
            let Some(tracks) = media.stop_recording(&room).await else {
                warn!(recording = %rec.part, "the SFU's recording writer did not answer; no replay");
                return;
            };
            let job = crate::recording::MixJob { room, part: rec.part, recording_id: rec.id, tracks, names: rec.names };
            crate::recording::mix(shared, job).await;
        });
    }
}
