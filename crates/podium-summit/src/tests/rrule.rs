use std::collections::BTreeSet;

use super::H;
use crate::{GapRule, RRule, ScheduleError, Series, local_time};

const BERLIN: &str = "Europe/Berlin";

fn local(instants: &[i64]) -> Vec<String> {
    instants.iter().map(|at| local_time(BERLIN, *at).expect("in range")).collect()
}

#[test]
fn spring_forward_gap_shifts_forward_by_the_gap() {
    let series = Series::new("2025-03-28T02:30", "FREQ=DAILY;COUNT=4").expect("valid");
    let instants = series.expand(BERLIN, GapRule::ShiftForward).expect("expands");
    assert_eq!(
        local(&instants),
        ["2025-03-28T02:30:00", "2025-03-29T02:30:00", "2025-03-30T03:30:00", "2025-03-31T02:30:00"]
    );
    // 02:30 does not exist on the 30th: it runs at 01:30Z (02:30 at the offset before the gap), 24 h after the
    // 29th's and 23 h before the 31st's.
    assert_eq!(instants[2] - instants[1], 24 * H);
    assert_eq!(instants[3] - instants[2], 23 * H);
}

#[test]
fn spring_forward_gap_is_dropped_under_rfc_5545() {
    let series = Series::new("2025-03-28T02:30", "FREQ=DAILY;COUNT=4").expect("valid");
    let instants = series.expand(BERLIN, GapRule::Skip).expect("expands");
    // Dropped and not counted: COUNT=4 still gives four instances.
    assert_eq!(
        local(&instants),
        ["2025-03-28T02:30:00", "2025-03-29T02:30:00", "2025-03-31T02:30:00", "2025-04-01T02:30:00"]
    );
}

#[test]
fn fall_back_overlap_takes_the_first_occurrence_once() {
    for rule in [GapRule::ShiftForward, GapRule::Skip] {
        let series = Series::new("2025-10-25T02:30", "FREQ=DAILY;COUNT=3").expect("valid");
        let instants = series.expand(BERLIN, rule).expect("expands");
        assert_eq!(local(&instants), ["2025-10-25T02:30:00", "2025-10-26T02:30:00", "2025-10-27T02:30:00"]);
        // The 26th's 02:30 is the CEST one (00:30Z), not the CET one an hour later.
        assert_eq!(instants[1] - instants[0], 24 * H);
        assert_eq!(instants[2] - instants[1], 25 * H);
    }
}

#[test]
fn a_daily_0230_berlin_session_runs_exactly_once_every_day_for_a_year() {
    let series = Series::new("2025-01-01T02:30", "FREQ=DAILY;UNTIL=20251231T235959Z").expect("valid");
    let instants = series.expand(BERLIN, GapRule::ShiftForward).expect("expands");
    assert_eq!(instants.len(), 365);
    let days: BTreeSet<String> = local(&instants).into_iter().map(|t| t[..10].to_owned()).collect();
    assert_eq!(days.len(), 365);
    assert!(instants.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn shifting_onto_the_next_instance_drops_the_duplicate() {
    let series = Series::new("2025-03-30T00:00", "FREQ=DAILY;COUNT=3;BYHOUR=2,3;BYMINUTE=30").expect("valid");
    let instants = series.expand(BERLIN, GapRule::ShiftForward).expect("expands");
    // 02:30 → 03:30 coincides with 03:30: kept once, not counted twice.
    assert_eq!(local(&instants), ["2025-03-30T03:30:00", "2025-03-31T02:30:00", "2025-03-31T03:30:00"]);
}

#[test]
fn weekly_by_day_with_interval() {
    // 2025-03-03 is a Monday.
    let series = Series::new("2025-03-03T18:00", "FREQ=WEEKLY;INTERVAL=2;BYDAY=WE,MO;COUNT=5").expect("valid");
    let instants = series.expand("UTC", GapRule::ShiftForward).expect("expands");
    let dates: Vec<String> = instants.iter().map(|at| local_time("UTC", *at).expect("ok")[..10].to_owned()).collect();
    assert_eq!(dates, ["2025-03-03", "2025-03-05", "2025-03-17", "2025-03-19", "2025-03-31"]);
}

#[test]
fn daily_by_day_and_by_hour() {
    // Weekdays only, twice a day; 2025-03-07 is a Friday.
    let series = Series::new("2025-03-07T00:00", "FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9,21;COUNT=4").expect("ok");
    let instants = series.expand("UTC", GapRule::ShiftForward).expect("expands");
    let times: Vec<String> = instants.iter().map(|at| local_time("UTC", *at).expect("ok")).collect();
    assert_eq!(times, ["2025-03-07T09:00:00", "2025-03-07T21:00:00", "2025-03-10T09:00:00", "2025-03-10T21:00:00"]);
}

#[test]
fn until_is_inclusive_and_in_utc() {
    let series = Series::new("2025-06-01T10:00", "FREQ=DAILY;UNTIL=20250603T080000Z").expect("valid");
    // 10:00 CEST is 08:00Z: the 3rd is exactly UNTIL and included.
    assert_eq!(series.expand(BERLIN, GapRule::ShiftForward).expect("expands").len(), 3);
}

#[test]
fn rules_outside_the_subset_are_refused() {
    for rule in [
        "FREQ=MONTHLY;COUNT=3",
        "FREQ=DAILY",
        "FREQ=DAILY;COUNT=3;UNTIL=20250101T000000Z",
        "FREQ=WEEKLY;BYDAY=1MO;COUNT=3",
        "FREQ=DAILY;COUNT=3;BYSETPOS=1",
        "FREQ=DAILY;COUNT=0",
        "FREQ=DAILY;COUNT=3;BYHOUR=24",
        "FREQ=DAILY;INTERVAL=0;COUNT=3",
        "FREQ=DAILY;UNTIL=20250101",
        "FREQ=DAILY;FREQ=WEEKLY;COUNT=1",
        "COUNT=3",
        "",
    ] {
        assert!(matches!(RRule::parse(rule), Err(ScheduleError::BadRule(_))), "{rule:?}");
    }
    assert!(Series::new("not a date", "FREQ=DAILY;COUNT=1").is_err());
    let series = Series::new("2025-01-01T00:00", "FREQ=DAILY;COUNT=1").expect("valid");
    assert!(matches!(series.expand("Mars/Olympus", GapRule::Skip), Err(ScheduleError::UnknownTimeZone(_))));
    // A rule that never matches within the span yields no instance, which is an error, not a hang.
    let never = Series::new("2025-01-01T00:00", "FREQ=DAILY;INTERVAL=7;BYDAY=TH;COUNT=3").expect("valid");
    assert_eq!(never.expand("UTC", GapRule::Skip), Err(ScheduleError::BadInstanceCount(0)));
    let too_many = Series::new(
        "2025-01-01T00:00",
        "FREQ=DAILY;BYHOUR=0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23;UNTIL=20300101T000000Z",
    )
    .expect("valid");
    assert!(matches!(too_many.expand("UTC", GapRule::Skip), Err(ScheduleError::BadInstanceCount(_))));
}

mod props {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use crate::{GapRule, Series, local_time};

    const ZONES: [&str; 4] = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC"];

    proptest! {
        /// A daily series at any local time, starting any day of 2024-2026, in zones with 1 h and 30 min DST
        /// shifts: under the Podium rule it has exactly one instance per local day, COUNT of them, ascending.
        #[test]
        fn daily_series_run_once_every_local_day(
            zone in 0..ZONES.len(),
            day in 0i64..(3 * 365),
            hour in 0i8..24,
            minute in 0i8..60,
            count in 1u32..120,
        ) {
            let date = jiff::civil::date(2024, 1, 1)
                .checked_add(jiff::Span::new().days(day))
                .expect("in range");
            let dtstart = format!("{date}T{hour:02}:{minute:02}");
            let series = Series::new(&dtstart, &format!("FREQ=DAILY;COUNT={count}")).expect("valid");
            let instants = series.expand(ZONES[zone], GapRule::ShiftForward).expect("expands");
            prop_assert_eq!(instants.len(), count as usize);
            prop_assert!(instants.windows(2).all(|w| w[0] < w[1]));
            let days: BTreeSet<String> = instants
                .iter()
                .map(|at| local_time(ZONES[zone], *at).expect("in range")[..10].to_owned())
                .collect();
            prop_assert_eq!(days.len(), count as usize);
            // RFC 5545's rule drops gap instances but still yields COUNT of them, and never more days than Podium's.
            let skipped = series.expand(ZONES[zone], GapRule::Skip).expect("expands");
            prop_assert_eq!(skipped.len(), count as usize);
            prop_assert!(skipped.last() >= instants.last());
        }

        /// Any rule string never panics: it parses and expands, or is refused.
        #[test]
        fn arbitrary_rules_never_panic(rule in "[A-Z=;,0-9TZ]{0,60}", dtstart in "[0-9T:-]{0,20}") {
            if let Ok(series) = Series::new(&dtstart, &rule) {
                let _ = series.expand("Europe/Berlin", GapRule::ShiftForward);
            }
        }
    }
}
