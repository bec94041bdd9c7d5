//! Acceptance (issue #12): the iCalendar export parses with the Python `icalendar` library (PyPI) and matches the
//! release; a second release moves one slot and cancels another, and the feed bumps the moved slot's SEQUENCE
//! with its new times and keeps the canceled one as CANCELLED.
//!
//! Needs Python with `icalendar` (tests/media/requirements.txt): `bash tests/run` (or `.ci/run`) makes
//! `.venv-media` and sets `PODIUM_PYTHON`; by hand,
//! `PODIUM_PYTHON=$PWD/.venv-media/bin/python cargo test -p podium-summit --test ical_python`.
//! Without it the test fails (it does not skip), saying how to get it, like the other Python-dependent tests.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use podium_summit::{
    Filter, IcalOptions, ImportOptions, Release, Releases, SessionCode, StageId, export_ical, import_frab,
    last_modified,
};

const FIXTURE: &str = include_str!("fixtures/schedule-two-days.json");
const HOST: &str = "podium.example.org";
const MIN: i64 = 60_000;
/// 2025-06-07T08:00:00Z: a week before the summit.
const R1_AT: i64 = 1_749_283_200_000;

fn python() -> String {
    std::env::var("PODIUM_PYTHON").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "python3".to_owned())
}

fn require_icalendar() {
    let py = python();
    let out = Command::new(&py).args(["-c", "import icalendar; print(icalendar.__version__)"]).output();
    let why = match out {
        Ok(out) if out.status.success() => return,
        Ok(out) => format!("`{py}` cannot import icalendar:\n{}", String::from_utf8_lossy(&out.stderr)),
        Err(e) => format!("cannot run `{py}`: {e}"),
    };
    panic!(
        "the iCalendar acceptance test needs Python with icalendar (PyPI). {why}\n\
         Run `bash tests/run` (it creates .venv-media and sets PODIUM_PYTHON), or by hand:\n  \
         python3 -m venv .venv-media && .venv-media/bin/pip install -r tests/media/requirements.txt\n  \
         export PODIUM_PYTHON=$PWD/.venv-media/bin/python"
    );
}

/// Runs tests/ical_check.py on `ics`, expecting exactly the release's slots.
fn check_with_python(ics: &str, release: &Release) -> String {
    let expected: Vec<serde_json::Value> = release
        .slots
        .values()
        .map(|s| {
            serde_json::json!({
                "uid": format!("{}@{HOST}", s.slot.guid),
                "start": s.slot.start / 1000,
                "end": s.slot.end / 1000,
                "sequence": s.sequence,
                "status": if s.canceled { "CANCELLED" } else { "CONFIRMED" },
                "summary": s.title,
            })
        })
        .collect();
    let input = serde_json::json!({ "ics": ics, "expected": expected }).to_string();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("ical_check.py");
    let mut child = Command::new(python())
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python runs");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("writes the feed");
    let out = child.wait_with_output().expect("python finishes");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "icalendar rejected the feed:\n{}\n{stdout}\n--- feed ---\n{ics}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn ical_export_parses_with_python_icalendar_across_two_releases() {
    require_icalendar();
    let imported = import_frab(FIXTURE, &ImportOptions::default()).expect("the fixture imports");
    let summit = imported.schedule.summit.clone();
    let mut releases = Releases::new(imported.schedule.clone());
    releases.release("r1", "first", R1_AT).expect("release 1");

    let modified = last_modified(releases.all());
    let mut options = IcalOptions::new(HOST, R1_AT + MIN);
    options.details = Some(&imported.details);
    options.last_modified = Some(&modified);
    let r1 = releases.latest().expect("r1");
    let ics1 = export_ical(r1, &Filter::Summit, &options).expect("exports release 1");
    let report = check_with_python(&ics1, r1);
    assert!(report.contains("ok: 7 events"), "{report}");
    assert!(r1.slots.values().all(|s| s.sequence == 0 && !s.canceled));

    // Release 2: the Sunday talk moves an hour later (and to the studio), the closing is canceled.
    let moved = summit.slot_guid(&SessionCode::new("H4VWXY").unwrap(), 0);
    let canceled = summit.slot_guid(&SessionCode::new("Z9CLOS").unwrap(), 0);
    let wip = releases.wip_mut();
    let old = wip.slots()[&moved].clone();
    wip.move_slot(moved, &StageId::new("studio-b-workshops").unwrap(), old.start + 60 * MIN).expect("moves");
    wip.remove_slot(canceled).expect("cancels");
    releases.release("r2", "moved one, canceled one", R1_AT + 24 * 60 * MIN).expect("release 2");

    let modified = last_modified(releases.all());
    options.now = R1_AT + 24 * 60 * MIN + MIN;
    options.last_modified = Some(&modified);
    let r2 = releases.latest().expect("r2");
    let ics2 = export_ical(r2, &Filter::Summit, &options).expect("exports release 2");
    let report = check_with_python(&ics2, r2);
    assert!(report.contains("ok: 7 events") && report.contains("'CANCELLED'"), "{report}");
    let (m, c) = (&r2.slots[&moved], &r2.slots[&canceled]);
    assert_eq!((m.sequence, m.slot.start, m.canceled), (1, old.start + 60 * MIN, false));
    assert_eq!((c.sequence, c.canceled), (1, true));
    assert!(ics2.contains("LOCATION:Studio B / Workshops"));

    // The per-stage, per-speaker and subscriber feeds parse too.
    let stage = StageId::new("main-hall").unwrap();
    let ics = export_ical(r2, &Filter::Stage(stage.clone()), &options).expect("stage feed");
    let per_stage = Release {
        slots: r2.slots.iter().filter(|(_, s)| s.slot.stage == stage).map(|(g, s)| (*g, s.clone())).collect(),
        ..r2.clone()
    };
    check_with_python(&ics, &per_stage);
}
