//! Recording (issue #15, item 5): who starts and stops it, the hub's and the room's switches, per-speaker opt-out,
//! and the `Record` outputs that tell the media plane whose audio to write.

use super::*;
use crate::{Recording, RoomSetup};

use Command as C;
use CommandError as E;
use Role::{Moderator, Speaker};

/// A recording-enabled room: moderator `m`, speakers `s` and `t` (on stage), listener `l`.
fn room() -> Harness {
    let mut h = Harness::new(RoomConfig { recording: true, stage_capacity: 5, ..small_config() });
    h.join("m", Moderator);
    h.join("s", Speaker);
    h.join("t", Speaker);
    h.join("l", Speaker);
    for who in ["s", "t"] {
        h.ok("m", C::InviteToStage { target: pid(who) });
        h.ok(who, C::AcceptInvite);
    }
    h.moderated.clear();
    h
}

fn start(id: &str) -> Command {
    C::StartRecording { id: id.into() }
}

/// The `Record` outputs in `out`, sorted.
fn records(out: &[Output]) -> Vec<(String, bool)> {
    let mut r: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Record { who, recorded } => Some((who.as_str().to_owned(), *recorded)),
            _ => None,
        })
        .collect();
    r.sort();
    r
}

fn recorded(h: &Harness, who: &str) -> bool {
    h.room.is_recorded(&pid(who))
}

#[test]
fn a_moderator_starts_and_stops_and_everyone_is_told() {
    let mut h = room();
    h.now = 5_000;
    let seq = h.room.seq();
    let out = h.ok("m", start("rec_1"));
    let rec = Recording { id: "rec_1".into(), started_at: 5_000, by: act("m") };
    assert!(out.contains(&Output::Event {
        to: Recipients::Everyone,
        seq: seq + 1,
        event: Event::Recording(Some(rec.clone()))
    }));
    assert_eq!(records(&out), vec![("m".into(), true), ("s".into(), true), ("t".into(), true)], "the stage");
    assert_eq!(h.room.recording(), Some(&rec));
    assert_eq!(h.room.snapshot_for(&pid("l")).unwrap().recording, Some(rec.clone()), "in every snapshot");
    assert_eq!(h.room.view().recording, Some(rec));
    assert!(!recorded(&h, "l"), "the audience is not recorded");
    assert!(matches!(h.moderated.as_slice(), [Output::Moderated { command: C::StartRecording { .. }, .. }]));

    h.refused("m", start("rec_2"), E::Conflict("the room is being recorded already"));
    let out = h.ok("m", C::StopRecording);
    assert_eq!(events(&out), vec![&Event::Recording(None)]);
    assert_eq!(records(&out), vec![("m".into(), false), ("s".into(), false), ("t".into(), false)]);
    assert_eq!(h.room.recording(), None);
    h.refused("m", C::StopRecording, E::Conflict("the room is not being recorded"));
}

#[test]
fn only_moderators_and_administrators_record() {
    let mut h = room();
    h.refused("s", start("rec_1"), E::Forbidden("only moderators may do this"));
    h.refused("l", start("rec_1"), E::Forbidden("only moderators may do this"));
    h.refused("zz", start("rec_1"), E::NotFound("you are not in this room"));
    h.refused("m", start(""), E::BadRequest("recording id must be 1-64 letters, digits, _ or -"));
    h.refused("m", start("../x"), E::BadRequest("recording id must be 1-64 letters, digits, _ or -"));
    h.refused("m", start(&"a".repeat(65)), E::BadRequest("recording id must be 1-64 letters, digits, _ or -"));
    let out = h.ok_as(&admin("ops"), start("rec_a"), Some("archive"));
    assert_eq!(h.room.recording().map(|r| r.by.clone()), Some(admin("ops")));
    assert_eq!(records(&out).len(), 3);
    h.refused("s", C::StopRecording, E::Forbidden("only moderators may do this"));
    h.ok_as(&admin("ops"), C::StopRecording, None);
    assert!(matches!(
        h.moderated.as_slice(),
        [Output::Moderated { reason: Some(r), .. }, Output::Moderated { command: C::StopRecording, .. }]
            if r.as_str() == "archive"
    ));
}

#[test]
fn refused_when_the_hub_or_the_room_does_not_record() {
    let mut h = Harness::new(small_config());
    h.join("m", Moderator);
    h.refused("m", start("rec_1"), E::Forbidden("recording is disabled on this hub"));

    let config = RoomConfig { recording: true, ..small_config() };
    let setup = RoomSetup { record: Some(false), ..RoomSetup::default() };
    let room = Room::create("r", config.clone(), 0, setup).unwrap();
    let mut h = Harness::with_room(room, config);
    h.join("m", Moderator);
    assert!(!h.room.view().recordable);
    h.refused("m", start("rec_1"), E::Forbidden("this room (or the session on stage) must not be recorded"));
    // An administrator allows it again (a summit slot that may be recorded), then forbids it: that stops it.
    h.refused("m", C::SetRecordable { recordable: true }, E::Forbidden("only administrators may do this"));
    h.ok_as(&admin("sched"), C::SetRecordable { recordable: true }, None);
    h.ok("m", start("rec_1"));
    assert!(recorded(&h, "m"));
    let out = h.ok_as(&admin("sched"), C::SetRecordable { recordable: false }, None);
    assert_eq!(events(&out), vec![&Event::Recording(None)]);
    assert_eq!(records(&out), vec![("m".into(), false)]);
    assert_eq!(h.room.recording(), None);
    h.refused("m", start("rec_2"), E::Forbidden("this room (or the session on stage) must not be recorded"));
}

#[test]
fn an_opted_out_speaker_is_never_recorded() {
    let mut h = room();
    // Opting out before the recording: shown in `you` and the stage roster.
    let out = h.ok("s", C::SetRecordingOptOut { opt_out: true });
    assert_eq!(stage_causes(&out), vec![StageCause::RecordingOptOut(pid("s"))]);
    assert!(yous(&out).iter().any(|(id, y)| id == "s" && y.recording_opt_out));
    assert!(h.room.stage().iter().any(|m| m.id == pid("s") && m.recording_opt_out));
    assert_eq!(records(&out), vec![], "nothing records yet");
    h.noop("s", C::SetRecordingOptOut { opt_out: true });

    let out = h.ok("m", start("rec_1"));
    assert_eq!(records(&out), vec![("m".into(), true), ("t".into(), true)], "s is not recorded");
    // Opting out during the recording stops the writing at once; opting back in resumes it.
    let out = h.ok("t", C::SetRecordingOptOut { opt_out: true });
    assert_eq!(records(&out), vec![("t".into(), false)]);
    let out = h.ok("s", C::SetRecordingOptOut { opt_out: false });
    assert_eq!(records(&out), vec![("s".into(), true)]);
    // An audience member's opt-out: `you` only, no stage event, nothing to record.
    let out = h.ok("l", C::SetRecordingOptOut { opt_out: true });
    assert_eq!(stage_causes(&out), vec![]);
    assert_eq!(records(&out), vec![]);
    assert!(h.room.snapshot_for(&pid("l")).unwrap().you.recording_opt_out);
    // Administrators have no self to opt out.
    h.refused_as(
        &admin("ops"),
        C::SetRecordingOptOut { opt_out: true },
        None,
        E::Forbidden("an administrator is not a participant: this command acts on the sender's own state"),
    );
}

#[test]
fn stage_changes_follow_the_recording() {
    let mut h = room();
    h.ok("m", start("rec_1"));
    // Leaving the stage stops it, coming on starts it.
    let out = h.ok("s", C::StepDown);
    assert_eq!(records(&out), vec![("s".into(), false)]);
    h.ok("m", C::InviteToStage { target: pid("l") });
    let out = h.ok("l", C::AcceptInvite);
    assert_eq!(records(&out), vec![("l".into(), true)]);
    let out = h.leave("t");
    assert_eq!(records(&out), vec![("t".into(), false)]);
    // The room's end: nobody is recorded, the recording is gone (no `Recording` event: everyone is closed).
    let out = h.ok("m", C::EndRoom);
    assert_eq!(records(&out), vec![("l".into(), false), ("m".into(), false)]);
    assert!(!events(&out).iter().any(|e| matches!(e, Event::Recording(_))));
    assert_eq!(h.room.recording(), None);
}

#[test]
fn recording_state_survives_the_store_and_replicas() {
    let mut h = room();
    h.ok("s", C::SetRecordingOptOut { opt_out: true });
    h.ok("m", start("rec_1"));
    let state = h.room.state();
    assert!(state.recording.is_some() && state.recordable);
    assert!(state.participants.iter().any(|p| p.id == pid("s") && p.recording_opt_out));
    let back = Room::from_state(state.clone(), h.config.clone());
    assert_eq!(back.state(), state);
    assert!(back.is_recorded(&pid("m")) && !back.is_recorded(&pid("s")));
}
