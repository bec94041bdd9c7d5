//! The summit scheduler's input surface: schedule files (pretalx/frab `schedule.json`, Podium's JSON) as the admin
//! API takes them, and everything the hub then does with an accepted one.

use std::collections::BTreeSet;

use podium_summit::{
    Filter, IcalOptions, ImportOptions, Releases, SlotStatus, StageRun, export_ical, export_podium_json, import_frab,
    import_podium_json,
};

/// The first byte picks the format (even: frab, odd: Podium's JSON); the rest is the file. An accepted schedule is
/// released, exported as iCalendar, and each stage is run across every slot boundary (and a day beyond), checking
/// that at most one slot is ever active, that the run's state survives a JSON round trip, and that Podium's JSON
/// of the schedule imports back to the same schedule. Refusals are fine; panics are not.
pub fn summit_schedule(data: &[u8]) {
    let Some((&format, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let schedule = if format % 2 == 0 {
        let options = ImportOptions { summit_id: Some("fuzz".into()), ..ImportOptions::default() };
        match import_frab(text, &options) {
            Ok(imported) => imported.schedule,
            Err(_) => return,
        }
    } else {
        match import_podium_json(text) {
            Ok(s) => s,
            Err(_) => return,
        }
    };
    let again = import_podium_json(&export_podium_json(&schedule)).expect("Podium's JSON of a valid schedule imports");
    assert_eq!(again, schedule, "Podium's JSON round trip");
    let mut releases = Releases::new(schedule);
    let Ok(release) = releases.release("fuzz", "", 0) else { return };
    let release = release.clone();
    let _ = export_ical(&release, &Filter::Summit, &IcalOptions::new("fuzz.invalid", 0));
    for stage in release.stages.keys() {
        let Ok(plan) = release.stage_plan(stage) else { continue };
        let mut times: BTreeSet<i64> = BTreeSet::new();
        for slot in &plan.slots {
            times.extend([slot.start - 1, slot.start, slot.end, slot.end + 1]);
        }
        let first = times.first().copied().unwrap_or(0).saturating_sub(86_400_000);
        let Ok(mut run) = StageRun::new(plan, first) else { continue };
        // A bounded walk: at most 256 instants.
        for &t in times.iter().take(256) {
            run.handle_timeout(t);
            while run.poll_output().is_some() {}
            let active = run.slots().iter().filter(|s| s.status == SlotStatus::Active).count();
            assert!(active <= 1, "two active slots on a stage");
            let state = run.state().clone();
            let text = serde_json::to_string(&state).expect("state serialises");
            let back: podium_summit::RunState = serde_json::from_str(&text).expect("state deserialises");
            assert_eq!(back, state, "state round trip");
        }
    }
}
