//! Import of pretalx/frab `schedule.json` and Podium's JSON; the iCalendar writer and export.

use std::collections::BTreeSet;

use crate::ical::{escape, fold_into};
use crate::{
    Filter, IcalError, IcalOptions, ImportError, ImportOptions, Imported, PersonId, Releases, ScheduleError,
    SessionCode, SlotKind, StageId, export_ical, export_podium_json, import_frab, import_podium_json, last_modified,
};

const FIXTURE: &str = include_str!("../../tests/fixtures/schedule-two-days.json");
/// 2025-06-14T08:00:00Z (10:00 in Berlin).
const KEYNOTE: i64 = 1_749_888_000_000;
const M: i64 = 60_000;

fn imported() -> Imported {
    import_frab(FIXTURE, &ImportOptions::default()).expect("the fixture imports")
}

fn code(c: &str) -> SessionCode {
    SessionCode::new(c).expect("valid")
}

fn minimal(events: &str) -> String {
    format!(
        r#"{{"schedule": {{"version": "1", "conference": {{"acronym": "x", "title": "X", "time_zone_name": "Europe/Berlin",
        "days": [{{"index": 1, "date": "2025-06-14", "day_start": "2025-06-14T09:00:00+02:00",
        "rooms": {{"Hall": [{events}]}}}}]}}}}}}"#
    )
}

#[test]
fn fixture_maps_rooms_people_sessions_and_slots() {
    let imported = imported();
    let s = &imported.schedule;
    assert_eq!(s.summit.id, "tidepool-2025");
    assert_eq!(s.summit.tz, "Europe/Berlin");
    let stages: Vec<(&str, &str)> = s.stages().values().map(|st| (st.id.as_str(), st.room.as_str())).collect();
    assert_eq!(
        stages,
        [("main-hall", "tidepool-2025-main-hall"), ("studio-b-workshops", "tidepool-2025-studio-b-workshops")]
    );
    assert_eq!(imported.details.stage_names[&StageId::new("studio-b-workshops").unwrap()], "Studio B / Workshops");
    let people: Vec<&str> = s.people().keys().map(PersonId::as_str).collect();
    assert_eq!(
        people,
        ["pretalx-PX1ADA", "pretalx-PX2BEN", "pretalx-PX3CLE", "pretalx-c0ffee00-0000-4000-8000-000000000005"]
    );
    assert_eq!(s.people()[&PersonId::new("pretalx-c0ffee00-0000-4000-8000-000000000005").unwrap()].name, "Dana Yu");
    assert_eq!(s.sessions().len(), 5, "the break is not a session; W8RSTU is one session");
    assert_eq!(s.slots().len(), 7);
    let keynote = &s.sessions()[&code("KQ7XRA")];
    assert_eq!(keynote.duration_ms, 45 * M);
    assert_eq!(keynote.people.len(), 2);
    let guid = s.summit.slot_guid(&code("KQ7XRA"), 0);
    assert_eq!(s.slots()[&guid].start, KEYNOTE);
    assert_eq!(imported.sources[&guid].guid.as_deref(), Some("1d7e2f50-0b1a-5c3e-8e7a-0f1e2d3c4b01"));
    assert_eq!(imported.sources[&guid].id.as_deref(), Some("101"));
    // The workshop runs twice: occurrences 0 (day 1) and 1 (day 2).
    let day1 = &s.slots()[&s.summit.slot_guid(&code("W8RSTU"), 0)];
    let day2 = &s.slots()[&s.summit.slot_guid(&code("W8RSTU"), 1)];
    assert_eq!(day2.start - day1.start, 24 * 60 * M);
    let lunch = &s.slots()[&s.summit.break_guid("LUNCH1")];
    assert!(matches!(&lunch.kind, SlotKind::Break { title, .. } if title == "Lunch"));
    let info = &imported.details.sessions[&code("M3NOPQ")];
    assert_eq!(info.track.as_deref(), Some("Community"));
    assert!(info.do_not_record);
    assert!(!s.session(&code("M3NOPQ")).expect("imported").record, "do_not_record: its slots are not recorded");
    assert!(s.session(&code("KQ7XRA")).expect("imported").record);
    assert_eq!(imported.version.as_deref(), Some("0.3 Lighthouse"));
    assert_eq!(import_frab(FIXTURE, &ImportOptions::default()), Ok(imported), "deterministic");
}

#[test]
fn summit_id_option_changes_the_guid_namespace() {
    let options = ImportOptions { summit_id: Some("other".to_owned()), ..ImportOptions::default() };
    let other = import_frab(FIXTURE, &options).expect("imports");
    assert_eq!(other.schedule.summit.id, "other");
    assert!(other.schedule.slots().keys().all(|g| !imported().schedule.slots().contains_key(g)));
}

#[test]
fn without_a_date_the_day_and_start_are_local_and_past_midnight_is_the_next_day() {
    let json = minimal(
        r#"{"code": "A", "title": "Morning", "start": "10:00", "duration": "0:30", "persons": []},
           {"code": "B", "title": "Night\nowl", "start": "00:30", "duration": "00:30:00", "persons": []}"#,
    );
    let imported = import_frab(&json, &ImportOptions::default()).expect("imports");
    let s = &imported.schedule;
    let a = &s.slots()[&s.summit.slot_guid(&code("A"), 0)];
    let b = &s.slots()[&s.summit.slot_guid(&code("B"), 0)];
    assert_eq!(a.start, KEYNOTE);
    assert_eq!(b.start, KEYNOTE + (14 * 60 + 30) * M, "00:30 local the next day is 22:30Z");
    assert_eq!(s.sessions()[&code("B")].title, "Night owl");
}

#[test]
fn colliding_room_slugs_get_distinct_stable_ids() {
    let json = r#"{"schedule": {"conference": {"acronym": "x", "title": "X", "time_zone_name": "UTC",
        "rooms": [{"name": "Hall A"}, {"name": "hall-a"}, {"name": "!!!"}], "days": []}}}"#;
    let imported = import_frab(json, &ImportOptions::default()).expect("imports");
    let ids: BTreeSet<&str> = imported.schedule.stages().keys().map(StageId::as_str).collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|id| id.starts_with("hall-a-") || id.starts_with("room-")), "{ids:?}");
    for stage in imported.schedule.stages().values() {
        assert!(stage.room.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') && stage.room.len() <= 128);
    }
}

#[test]
fn malformed_input_is_a_clear_error() {
    let opts = ImportOptions::default();
    assert!(matches!(import_frab("not json", &opts), Err(ImportError::Json(_))));
    assert!(matches!(import_frab(r#"{"schedule": {}}"#, &opts), Err(ImportError::Json(m)) if m.contains("conference")));
    let bad = |events: &str| import_frab(&minimal(events), &opts).expect_err("refused");
    let err = bad(r#"{"code": "A", "title": "T", "start": "10:00", "duration": "soon", "persons": []}"#);
    assert!(
        matches!(&err, ImportError::Event { event, reason } if event == "A" && reason.contains("duration")),
        "{err}"
    );
    let err = bad(r#"{"code": "A", "title": "T", "start": "10:00", "duration": "00:00", "persons": []}"#);
    assert!(matches!(err, ImportError::Event { .. }));
    let err = bad(r#"{"code": "A", "title": "T", "date": "yesterday", "duration": "00:10", "persons": []}"#);
    assert!(matches!(&err, ImportError::Event { reason, .. } if reason.contains("date")), "{err}");
    let err = bad(r#"{"title": "T", "start": "10:00", "duration": "00:10", "persons": []}"#);
    assert!(matches!(&err, ImportError::Event { reason, .. } if reason.contains("code")), "{err}");
    let err = bad(r#"{"code": "A/B", "title": "T", "start": "10:00", "duration": "00:10", "persons": []}"#);
    assert!(matches!(err, ImportError::Event { .. }));
    let err =
        bad(&format!(r#"{{"code": "A", "title": "{}", "start": "10:00", "duration": "00:10"}}"#, "x".repeat(600)));
    assert!(matches!(err, ImportError::Event { .. }));
    let err = bad(r#"{"code": "A", "title": "T", "start": "10:00", "duration": "00:10"},
           {"code": "A", "title": "T", "start": "11:00", "duration": "00:20"}"#);
    assert!(matches!(&err, ImportError::Event { reason, .. } if reason.contains("another duration")), "{err}");
    let err = bad(r#"{"code": "A", "title": "T", "start": "10:00", "duration": "00:10", "persons": [{}]}"#);
    assert!(matches!(err, ImportError::Event { .. }));
    let err = bad(r#"{"code": "A", "title": 5, "start": "10:00", "duration": "00:10"}"#);
    assert!(matches!(err, ImportError::Json(_)));
    let json = minimal("").replace("Europe/Berlin", "Mars/Olympus");
    assert_eq!(
        import_frab(&json, &opts),
        Err(ImportError::Schedule(ScheduleError::UnknownTimeZone("Mars/Olympus".into())))
    );
    // Two live slots overlapping on one stage import (the release refuses them, naming both).
    let json = minimal(
        r#"{"code": "A", "title": "T", "start": "10:00", "duration": "01:00"},
           {"code": "B", "title": "T", "start": "10:30", "duration": "01:00"}"#,
    );
    let imported = import_frab(&json, &opts).expect("imports");
    assert!(Releases::new(imported.schedule).release("r1", "", KEYNOTE).is_err());
}

#[test]
fn podium_json_round_trips_and_checks() {
    let schedule = imported().schedule;
    let json = export_podium_json(&schedule);
    assert!(json.contains(r#""format": "podium-schedule""#));
    assert_eq!(import_podium_json(&json), Ok(schedule));
    let other = json.replace(r#""version": 1"#, r#""version": 2"#);
    assert!(matches!(import_podium_json(&other), Err(ImportError::Format { version: 2, .. })));
    let dangling = json.replace(r#""stage": "studio-b-workshops""#, r#""stage": "nowhere""#);
    assert!(matches!(import_podium_json(&dangling), Err(ImportError::Schedule(ScheduleError::NotFound { .. }))));
    assert!(matches!(import_podium_json("[]"), Err(ImportError::Json(_))));
}

fn unfold(text: &str) -> String {
    text.replace("\r\n ", "")
}

#[test]
fn text_escaping_follows_rfc_5545() {
    assert_eq!(escape("a,b;c\\d\ne\r\u{7}f\tg"), "a\\,b\\;c\\\\d\\nef\tg");
}

#[test]
fn lines_fold_at_75_octets_without_splitting_characters() {
    for line in ["x".repeat(75), "x".repeat(76), "y".repeat(300), "é".repeat(100), format!("A{}", "🎙".repeat(60))] {
        let mut out = String::new();
        fold_into(&mut out, &line);
        assert!(out.ends_with("\r\n"));
        for physical in out.trim_end_matches("\r\n").split("\r\n") {
            assert!(physical.len() <= 75, "{} octets", physical.len());
        }
        assert_eq!(unfold(&out), format!("{line}\r\n"));
    }
    let mut out = String::new();
    fold_into(&mut out, &"x".repeat(75));
    assert!(!out.contains("\r\n "), "75 octets fit");
}

fn released(imported: &Imported) -> Releases {
    let mut releases = Releases::new(imported.schedule.clone());
    releases.release("r1", "first", KEYNOTE - 7 * 24 * 60 * M).expect("releases");
    releases
}

fn events(ics: &str) -> Vec<String> {
    unfold(ics).split("BEGIN:VEVENT\r\n").skip(1).map(str::to_owned).collect()
}

#[test]
fn export_has_one_event_per_slot_with_the_conventions() {
    let imported = imported();
    let releases = released(&imported);
    let release = releases.latest().expect("released");
    let mut options = IcalOptions::new("podium.example.org", KEYNOTE);
    options.details = Some(&imported.details);
    let ics = export_ical(release, &Filter::Summit, &options).expect("exports");
    assert!(ics.starts_with("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Podium//podium-summit//EN\r\n"));
    assert!(ics.contains("\r\nREFRESH-INTERVAL;VALUE=DURATION:PT1H\r\n"));
    assert!(ics.ends_with("END:VCALENDAR\r\n"));
    assert!(ics.split("\r\n").all(|line| line.len() <= 75));
    let events = events(&ics);
    assert_eq!(events.len(), 7);
    let keynote = imported.schedule.summit.slot_guid(&code("KQ7XRA"), 0);
    let first = &events[0];
    assert!(first.contains(&format!("UID:{keynote}@podium.example.org\r\n")), "{first}");
    for want in [
        "DTSTAMP:20250614T080000Z",
        "DTSTART:20250614T080000Z",
        "DTEND:20250614T084500Z",
        "SEQUENCE:0",
        "STATUS:CONFIRMED",
        "SUMMARY:Opening keynote: Listening at scale",
        "LOCATION:Main Hall",
        "DESCRIPTION:Why 24/7 rooms need a stage manager\\; and what it does\\, exactly.\\n\\nWith: Ada Quinn\\, Ben Ortiz",
        "CATEGORIES:Audio,Keynote",
        "URL:https://example.org/tidepool-2025/talk/KQ7XRA/",
        "LAST-MODIFIED:20250607T080000Z",
    ] {
        assert!(first.contains(&format!("{want}\r\n")), "{want} in {first}");
    }
    assert!(events[1].contains("CATEGORIES:Break\r\n") && !events[1].contains("URL:"), "{}", events[1]);
    assert!(events.iter().all(|e| e.contains("STATUS:CONFIRMED")));
    assert_eq!(export_ical(release, &Filter::Summit, &options), Ok(ics), "pure");
}

#[test]
fn filters_select_a_stage_a_person_or_a_set() {
    let imported = imported();
    let releases = released(&imported);
    let release = releases.latest().expect("released");
    let options = IcalOptions::new("podium.example.org", KEYNOTE);
    let count = |filter: Filter| events(&export_ical(release, &filter, &options).expect("exports")).len();
    assert_eq!(count(Filter::Stage(StageId::new("main-hall").unwrap())), 5);
    assert_eq!(count(Filter::Stage(StageId::new("studio-b-workshops").unwrap())), 2);
    assert_eq!(count(Filter::Person(PersonId::new("pretalx-PX1ADA").unwrap())), 3);
    assert_eq!(count(Filter::Person(PersonId::new("pretalx-PX2BEN").unwrap())), 3);
    let summit = &imported.schedule.summit;
    let set: BTreeSet<_> = [summit.slot_guid(&code("Z9CLOS"), 0), summit.slot_guid(&code("NOPE"), 0)].into();
    assert_eq!(count(Filter::Slots(set)), 1);
    assert_eq!(
        export_ical(release, &Filter::Stage(StageId::new("nope").unwrap()), &options),
        Err(IcalError::NoStage("nope".into()))
    );
    assert!(matches!(
        export_ical(release, &Filter::Person(PersonId::new("nobody").unwrap()), &options),
        Err(IcalError::NoPerson(_))
    ));
    for host in ["", "a b", "x,y", "evil\r\nX:1"] {
        assert!(matches!(
            export_ical(release, &Filter::Summit, &IcalOptions::new(host, KEYNOTE)),
            Err(IcalError::BadHost(_))
        ));
    }
    let url = |slot: &crate::ReleasedSlot| Some(format!("https://podium.example.org/s/{}", slot.slot.guid));
    let options = IcalOptions { url: Some(&url), ..options };
    let ics = export_ical(release, &Filter::Summit, &options).expect("exports");
    assert_eq!(events(&ics).iter().filter(|e| e.contains("URL:https://podium.example.org/s/")).count(), 7);
}

#[test]
fn a_second_release_bumps_the_moved_slot_and_keeps_the_canceled_one() {
    let imported = imported();
    let mut releases = released(&imported);
    let summit = imported.schedule.summit.clone();
    let moved = summit.slot_guid(&code("H4VWXY"), 0);
    let canceled = summit.slot_guid(&code("Z9CLOS"), 0);
    let wip = releases.wip_mut();
    let start = wip.slots()[&moved].start;
    wip.move_slot(moved, &StageId::new("main-hall").unwrap(), start + 60 * M).expect("moves");
    wip.remove_slot(canceled).expect("removes");
    releases.release("r2", "moved one, canceled one", KEYNOTE - 24 * 60 * M).expect("releases");
    let modified = last_modified(releases.all());
    let mut options = IcalOptions::new("podium.example.org", KEYNOTE);
    options.last_modified = Some(&modified);
    let ics = export_ical(releases.latest().expect("r2"), &Filter::Summit, &options).expect("exports");
    let events = events(&ics);
    assert_eq!(events.len(), 7, "the canceled slot stays");
    let event = |guid: uuid::Uuid| events.iter().find(|e| e.contains(&format!("UID:{guid}@"))).expect("present");
    let m = event(moved);
    assert!(
        m.contains("SEQUENCE:1\r\n") && m.contains("DTSTART:20250615T090000Z\r\n") && m.contains("STATUS:CONFIRMED")
    );
    assert!(m.contains("LAST-MODIFIED:20250613T080000Z\r\n"), "{m}");
    let c = event(canceled);
    assert!(c.contains("SEQUENCE:1\r\n") && c.contains("STATUS:CANCELLED\r\n"), "{c}");
    let keynote = event(summit.slot_guid(&code("KQ7XRA"), 0));
    assert!(keynote.contains("SEQUENCE:0\r\n") && keynote.contains("LAST-MODIFIED:20250607T080000Z\r\n"));
}
