use super::{H, M, T0, pid};
use crate::{
    GapRule, Person, Recurrence, ReleaseError, Releases, Schedule, ScheduleError, Series, Session, SessionCode,
    SessionRole, SessionState, Shift, ShiftId, ShiftRole, Stage, StageId, Summit, Warning,
};

fn code(c: &str) -> SessionCode {
    SessionCode::new(c).expect("valid code")
}

fn sid(s: &str) -> StageId {
    StageId::new(s).expect("valid id")
}

fn schedule() -> Schedule {
    let mut schedule = Schedule::new(Summit::new("summit-2025", "The Summit", "Europe/Berlin").expect("valid"));
    for stage in ["main", "side"] {
        schedule.put_stage(Stage::new(sid(stage), &format!("room-{stage}")).expect("valid")).expect("added");
    }
    for person in ["alice", "bob", "carol", "dave"] {
        schedule.put_person(Person::new(pid(person), person).expect("valid")).expect("added");
    }
    for (c, host) in [("A", "alice"), ("B", "bob"), ("C", "carol")] {
        let session = Session::new(code(c), &format!("Session {c}"), 50 * M, vec![(pid(host), SessionRole::Host)])
            .expect("valid");
        schedule.add_session(session).expect("added");
    }
    schedule
}

#[test]
fn slot_guids_are_uuid_v5_of_code_and_occurrence_and_survive_moves() {
    let mut schedule = schedule();
    let first = schedule.place(&code("A"), &sid("main"), T0).expect("placed");
    let second = schedule.place(&code("A"), &sid("main"), T0 + H).expect("placed");
    assert_ne!(first, second);
    assert_eq!(first, schedule.summit.slot_guid(&code("A"), 0));
    assert_eq!(second, schedule.summit.slot_guid(&code("A"), 1));
    assert_eq!(first.get_version_num(), 5);
    schedule.move_slot(first, &sid("side"), T0 + 5 * H).expect("moved");
    assert_eq!(schedule.slots()[&first].start, T0 + 5 * H);
    // Another summit's slots never collide.
    let other = Summit::new("other", "Other", "UTC").expect("valid");
    assert_ne!(other.slot_guid(&code("A"), 0), first);
}

#[test]
fn first_release_is_all_new() {
    let mut schedule = schedule();
    let a = schedule.place(&code("A"), &sid("main"), T0).expect("placed");
    let mut releases = Releases::new(schedule);
    let release = releases.release("v1", "first", T0 - 24 * H).expect("released");
    assert_eq!(release.seq, 1);
    assert_eq!(release.diff.new, vec![a]);
    assert_eq!(release.slots[&a].sequence, 0);
}

#[test]
fn diff_and_sequence_between_releases() {
    let mut schedule = schedule();
    let a = schedule.place(&code("A"), &sid("main"), T0).expect("placed");
    let b = schedule.place(&code("B"), &sid("main"), T0 + H).expect("placed");
    let c = schedule.place(&code("C"), &sid("side"), T0).expect("placed");
    let mut releases = Releases::new(schedule);
    releases.release("v1", "", T0 - 48 * H).expect("released");

    let wip = releases.wip_mut();
    wip.move_slot(a, &sid("side"), T0 + 2 * H).expect("moved");
    wip.set_session_state(&code("B"), SessionState::Canceled).expect("canceled");
    wip.update_session(&code("C"), "Renamed", 50 * M, vec![(pid("carol"), SessionRole::Host)]).expect("updated");
    let d = wip.add_break("lunch", "Lunch", &sid("main"), T0 + 3 * H, T0 + 4 * H).expect("added");
    let release = releases.release("v2", "moves", T0 - 24 * H).expect("released");
    assert_eq!(release.seq, 2);
    assert_eq!(release.diff.new, vec![d]);
    assert_eq!(release.diff.canceled, vec![b]);
    assert_eq!(release.diff.moved.len(), 1);
    let moved = &release.diff.moved[0];
    assert_eq!((moved.guid, moved.old_start, moved.new_start), (a, T0, T0 + 2 * H));
    assert_eq!((moved.old_stage.as_str(), moved.new_stage.as_str()), ("main", "side"));
    assert_eq!(release.diff.changed, vec![c]);
    assert_eq!(release.slots[&a].sequence, 1);
    assert_eq!(release.slots[&b].sequence, 1);
    assert!(release.slots[&b].canceled);
    assert_eq!(release.slots[&c].sequence, 0, "a title change is not a material change");

    // A removed slot stays canceled; its SEQUENCE does not move again.
    releases.wip_mut().remove_slot(a).expect("removed");
    let release = releases.release("v3", "", T0 - 12 * H).expect("released");
    assert_eq!(release.diff.canceled, vec![a]);
    assert!(release.slots[&a].canceled && release.slots[&b].canceled);
    assert_eq!((release.slots[&a].sequence, release.slots[&b].sequence), (2, 1));
    let release = releases.release("v4", "", T0 - 11 * H).expect("released");
    assert!(release.diff.is_empty());
    assert_eq!((release.slots[&a].sequence, release.slots[&b].sequence), (2, 1));
    assert!(release.slots[&a].canceled);
}

#[test]
fn unconfirmed_sessions_are_not_released() {
    let mut schedule = schedule();
    let a = schedule.place(&code("A"), &sid("main"), T0).expect("placed");
    schedule.set_session_state(&code("A"), SessionState::Accepted).expect("set");
    let mut releases = Releases::new(schedule);
    assert!(releases.release("v1", "", T0).expect("released").slots.is_empty());
    releases.wip_mut().set_session_state(&code("A"), SessionState::Confirmed).expect("set");
    assert_eq!(releases.release("v2", "", T0).expect("released").diff.new, vec![a]);
}

#[test]
fn stage_overlap_refuses_the_release() {
    let mut schedule = schedule();
    let a = schedule.place(&code("A"), &sid("main"), T0).expect("placed");
    let b = schedule.place(&code("B"), &sid("main"), T0 + 30 * M).expect("placed");
    let mut releases = Releases::new(schedule);
    let error = releases.release("v1", "", T0).expect_err("overlap");
    assert_eq!(error, ReleaseError::Overlap(vec![Warning::StageOverlap { stage: sid("main"), first: a, second: b }]));
    assert!(releases.all().is_empty());
    // Back to back is fine.
    releases.wip_mut().move_slot(b, &sid("main"), T0 + 50 * M).expect("moved");
    assert!(releases.release("v1", "", T0).is_ok());
}

#[test]
fn warnings_double_booking_coverage_and_gaps() {
    let mut schedule = schedule();
    let mut main = schedule.stages()[&sid("main")].clone();
    main.always_on = true;
    main.min_moderators = 1;
    schedule.put_stage(main).expect("updated");
    schedule
        .add_session(Session::new(code("D"), "D", 50 * M, vec![(pid("alice"), SessionRole::Speaker)]).expect("valid"))
        .expect("added");
    let a = schedule.place(&code("A"), &sid("main"), T0).expect("placed");
    let d = schedule.place(&code("D"), &sid("side"), T0 + 10 * M).expect("placed");
    let b = schedule.place(&code("B"), &sid("main"), T0 + H).expect("placed");
    // Dave covers A whole and B's first half; a backup does not count.
    let shift = |id: &str, person: &str, role, start, end| {
        Shift::new(ShiftId::new(id).expect("ok"), sid("main"), pid(person), role, start, end).expect("ok")
    };
    schedule.put_shift(shift("s1", "dave", ShiftRole::Lead, T0 - H, T0 + 85 * M)).expect("ok");
    schedule.put_shift(shift("s2", "carol", ShiftRole::Backup, T0, T0 + 3 * H)).expect("ok");
    let releases = Releases::new(schedule);
    let warnings = releases.warnings().expect("valid");
    assert!(warnings.contains(&Warning::DoubleBooked { person: pid("alice"), first: a, second: d }));
    assert!(warnings.contains(&Warning::Undermoderated { slot: b, shifts: 0, min: 1 }));
    assert!(!warnings.iter().any(|w| matches!(w, Warning::Undermoderated { slot, .. } if *slot == a)));
    assert!(warnings.contains(&Warning::Gap { stage: sid("main"), from: T0 + 50 * M, to: T0 + H }));
    assert!(!warnings.iter().any(Warning::is_fatal));
}

#[test]
fn rollback_releases_an_earlier_version_again() {
    let mut schedule = schedule();
    let a = schedule.place(&code("A"), &sid("main"), T0).expect("placed");
    let mut releases = Releases::new(schedule);
    releases.release("v1", "", T0 - 3 * H).expect("released");
    releases.wip_mut().move_slot(a, &sid("main"), T0 + H).expect("moved");
    releases.release("v2", "", T0 - 2 * H).expect("released");
    let release = releases.rollback(1, "v3", "back", T0 - H).expect("rolled back");
    assert_eq!(release.seq, 3);
    assert_eq!(release.slots[&a].slot.start, T0);
    assert_eq!(release.diff.moved[0].old_start, T0 + H);
    assert_eq!(release.slots[&a].sequence, 2);
    assert_eq!(releases.wip().slots()[&a].start, T0);
    assert_eq!(releases.rollback(9, "x", "", T0).map(|r| r.seq), Err(ReleaseError::NotFound(9)));
}

#[test]
fn series_sessions_expand_into_stable_slots() {
    let mut schedule = schedule();
    let mut session =
        Session::new(code("night"), "Night owls", 30 * M, vec![(pid("dave"), SessionRole::Host)]).expect("valid");
    session.recurrence = Some(Recurrence {
        stage: sid("main"),
        series: Series::new("2025-03-29T02:30", "FREQ=DAILY;COUNT=3").expect("valid"),
        gap_rule: GapRule::ShiftForward,
    });
    let guids = schedule.add_session(session).expect("added");
    assert_eq!(guids.len(), 3);
    assert_eq!(guids[2], schedule.summit.slot_guid(&code("night"), 2));
    assert_eq!(schedule.place(&code("night"), &sid("main"), T0), Err(ScheduleError::IsSeries("night".to_owned())));
    let mut releases = Releases::new(schedule);
    let release = releases.release("v1", "", T0 - 48 * H).expect("released");
    let plan = release.stage_plan(&sid("main")).expect("stage");
    assert_eq!(plan.slots.len(), 3);
    assert!(plan.slots.windows(2).all(|w| w[0].start < w[1].start));
}

#[test]
fn constructors_validate() {
    assert!(Summit::new("s", "t", "Not/AZone").is_err());
    assert!(StageId::new("").is_err());
    assert!(StageId::new("a/b").is_err());
    assert!(StageId::new("x".repeat(129)).is_err());
    let mut stage = Stage::new(sid("main"), "room").expect("valid");
    stage.checkin_deadline_ms = stage.backstage_lead_ms + 1;
    assert!(stage.validate().is_err());
    assert!(Session::new(code("A"), "A", 0, vec![]).is_err());
    assert!(
        Session::new(code("A"), "A", M, vec![(pid("x"), SessionRole::Host), (pid("x"), SessionRole::Speaker)]).is_err()
    );
    let mut schedule = schedule();
    assert!(schedule.place(&code("A"), &sid("nowhere"), T0).is_err());
    assert!(schedule.place(&code("A"), &sid("main"), -1).is_err());
    assert!(schedule.place(&code("A"), &sid("main"), i64::MAX).is_err());
    assert!(schedule.add_break("b", "B", &sid("main"), T0, T0).is_err());
    assert!(Shift::new(ShiftId::new("s").expect("ok"), sid("main"), pid("alice"), ShiftRole::Mod, T0, T0 - 1).is_err());
}
