//! Series: a subset of RFC 5545 recurrence rules, evaluated in the summit's time zone.
//!
//! Supported: `FREQ=DAILY|WEEKLY`, `INTERVAL`, `COUNT` or `UNTIL` (one of them is required; `UNTIL` in UTC,
//! `YYYYMMDDTHHMMSSZ`), `BYDAY` (plain weekdays, no ordinals), `BYHOUR`, `BYMINUTE`, `WKST`. Anything else is
//! refused, so a rule either means what RFC 5545 says or is an error. Instances are the rule's local date-times at
//! or after `DTSTART` (a `DTSTART` off the pattern is not itself an instance), within ten years of it.
//!
//! # The DST rule
//!
//! Local times are turned into instants with the summit's IANA zone (jiff's bundled tz database, so every hub
//! agrees). Two cases are not one-to-one:
//!
//! - **A gap** (spring forward: 02:30 does not exist in Europe/Berlin on the last Sunday of March). RFC 5545
//!   §3.3.10 says such an instance "MUST be ignored and MUST NOT be counted". A 24/7 summit cannot lose a
//!   session to the clock change, so Podium's default, [`GapRule::ShiftForward`], places it **later by the length
//!   of the gap** (02:30 CET does not exist, so it runs at 03:30 CEST: the same instant as 02:30 with the offset
//!   before the gap, which is also what RFC 5545 §3.3.5 does for a plain DATE-TIME). [`GapRule::Skip`] is the RFC
//!   behaviour, for whoever needs a series identical to what a calendar client expands.
//! - **An overlap** (fall back: 02:30 happens twice on the last Sunday of October). Both rules take the **first**
//!   occurrence (the offset before the transition), as RFC 5545 does; the instance exists once.
//!
//! So a daily 02:30 Europe/Berlin session has exactly one instance every day. Should shifting make an instance
//! coincide with the next one (`BYHOUR=2,3;BYMINUTE=30` on the spring-forward day), the duplicate is dropped and not
//! counted.

use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{Span, Timestamp};
use serde::{Deserialize, Serialize};

use crate::model::{Millis, ScheduleError, check_instant};

/// The most instances a series may have.
pub const MAX_INSTANCES: usize = 10_000;
/// Instances are at most this many days after `DTSTART`.
const MAX_SPAN_DAYS: i64 = 3_660;

/// What becomes of an instance whose local time does not exist (a DST gap).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GapRule {
    /// Podium's default: later by the length of the gap.
    #[default]
    ShiftForward,
    /// RFC 5545 §3.3.10: dropped, and not counted.
    Skip,
}

/// `FREQ`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Frequency {
    /// Every `INTERVAL` days.
    Daily,
    /// Every `INTERVAL` weeks.
    Weekly,
}

/// A parsed rule of the supported subset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RRule {
    /// `FREQ`.
    pub freq: Frequency,
    /// `INTERVAL` (1 to 1000).
    pub interval: u32,
    /// `COUNT`.
    pub count: Option<u32>,
    /// `UNTIL` (UTC ms, inclusive).
    pub until: Option<Millis>,
    /// `BYDAY`, Monday = 0 (sorted, no duplicates).
    pub by_day: Vec<u8>,
    /// `BYHOUR` (sorted, no duplicates).
    pub by_hour: Vec<u8>,
    /// `BYMINUTE` (sorted, no duplicates).
    pub by_minute: Vec<u8>,
    /// `WKST`, Monday = 0.
    pub week_start: u8,
}

fn bad(message: impl Into<String>) -> ScheduleError {
    ScheduleError::BadRule(message.into())
}

fn weekday(name: &str) -> Result<u8, ScheduleError> {
    const DAYS: [&str; 7] = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"];
    DAYS.iter()
        .position(|day| *day == name)
        .and_then(|index| u8::try_from(index).ok())
        .ok_or_else(|| bad(format!("bad weekday {name:?}")))
}

fn number_list(value: &str, max: u8) -> Result<Vec<u8>, ScheduleError> {
    let mut numbers = value
        .split(',')
        .map(|part| part.parse::<u8>().ok().filter(|n| *n <= max).ok_or_else(|| bad(format!("bad number {part:?}"))))
        .collect::<Result<Vec<_>, _>>()?;
    numbers.sort_unstable();
    numbers.dedup();
    Ok(numbers)
}

fn parse_until(value: &str) -> Result<Millis, ScheduleError> {
    let error = || bad(format!("UNTIL must be YYYYMMDDTHHMMSSZ, not {value:?}"));
    let digits = value.strip_suffix('Z').ok_or_else(error)?;
    let (date, time) = digits.split_once('T').ok_or_else(error)?;
    if date.len() != 8 || time.len() != 6 || !date.bytes().chain(time.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(error());
    }
    let field = |s: &str| s.parse::<i16>().map_err(|_| error());
    let datetime = DateTime::new(
        field(&date[..4])?,
        i8::try_from(field(&date[4..6])?).map_err(|_| error())?,
        i8::try_from(field(&date[6..])?).map_err(|_| error())?,
        i8::try_from(field(&time[..2])?).map_err(|_| error())?,
        i8::try_from(field(&time[2..4])?).map_err(|_| error())?,
        i8::try_from(field(&time[4..])?).map_err(|_| error())?,
        0,
    )
    .map_err(|_| error())?;
    let until = TimeZone::UTC.to_ambiguous_timestamp(datetime).compatible().map_err(|_| error())?.as_millisecond();
    check_instant("UNTIL", until)?;
    Ok(until)
}

impl RRule {
    /// Parses `FREQ=...;...` (without the `RRULE:` prefix; names are case-insensitive).
    pub fn parse(rule: &str) -> Result<Self, ScheduleError> {
        if rule.len() > 512 {
            return Err(bad("too long"));
        }
        let mut freq = None;
        let mut parsed = Self {
            freq: Frequency::Daily,
            interval: 1,
            count: None,
            until: None,
            by_day: Vec::new(),
            by_hour: Vec::new(),
            by_minute: Vec::new(),
            week_start: 0,
        };
        let mut seen = Vec::new();
        for part in rule.trim().to_ascii_uppercase().split(';') {
            let (key, value) = part.split_once('=').ok_or_else(|| bad(format!("bad part {part:?}")))?;
            if seen.contains(&key.to_owned()) {
                return Err(bad(format!("{key} twice")));
            }
            seen.push(key.to_owned());
            match key {
                "FREQ" => {
                    freq = Some(match value {
                        "DAILY" => Frequency::Daily,
                        "WEEKLY" => Frequency::Weekly,
                        _ => return Err(bad(format!("FREQ={value} is not supported (DAILY or WEEKLY)"))),
                    });
                }
                "INTERVAL" => {
                    parsed.interval = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=1000).contains(n))
                        .ok_or_else(|| bad("INTERVAL must be 1 to 1000"))?;
                }
                "COUNT" => {
                    parsed.count = Some(
                        value
                            .parse()
                            .ok()
                            .filter(|n| (1..=MAX_INSTANCES as u32).contains(n))
                            .ok_or_else(|| bad(format!("COUNT must be 1 to {MAX_INSTANCES}")))?,
                    );
                }
                "UNTIL" => parsed.until = Some(parse_until(value)?),
                "BYDAY" => {
                    let mut days = value.split(',').map(weekday).collect::<Result<Vec<_>, _>>()?;
                    days.sort_unstable();
                    days.dedup();
                    parsed.by_day = days;
                }
                "BYHOUR" => parsed.by_hour = number_list(value, 23)?,
                "BYMINUTE" => parsed.by_minute = number_list(value, 59)?,
                "WKST" => parsed.week_start = weekday(value)?,
                _ => return Err(bad(format!("{key} is not supported"))),
            }
        }
        parsed.freq = freq.ok_or_else(|| bad("FREQ is required"))?;
        match (parsed.count, parsed.until) {
            (Some(_), Some(_)) => Err(bad("COUNT and UNTIL together")),
            (None, None) => Err(bad("COUNT or UNTIL is required")),
            _ => Ok(parsed),
        }
    }
}

/// A series: a rule and its local start, `YYYY-MM-DDTHH:MM[:SS]` in the summit's zone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Series {
    /// Local `DTSTART`.
    pub dtstart: String,
    /// The rule.
    pub rule: RRule,
}

impl Series {
    /// Parses both parts.
    pub fn new(dtstart: &str, rule: &str) -> Result<Self, ScheduleError> {
        parse_local(dtstart)?;
        Ok(Self { dtstart: dtstart.to_owned(), rule: RRule::parse(rule)? })
    }

    /// The instants of the series' instances in `tz` (ascending, at most [`MAX_INSTANCES`], at least one).
    pub fn expand(&self, tz: &str, gap_rule: GapRule) -> Result<Vec<Millis>, ScheduleError> {
        let tz = time_zone(tz)?;
        let start = parse_local(&self.dtstart)?;
        let rule = &self.rule;
        let mut times = Vec::new();
        let hours = if rule.by_hour.is_empty() { vec![start.hour()] } else { by_i8(&rule.by_hour) };
        let minutes = if rule.by_minute.is_empty() { vec![start.minute()] } else { by_i8(&rule.by_minute) };
        for &hour in &hours {
            for &minute in &minutes {
                times.push(Time::new(hour, minute, start.second(), 0).map_err(|e| bad(e.to_string()))?);
            }
        }
        let days: Vec<u8> = match (rule.freq, rule.by_day.is_empty()) {
            (_, false) => rule.by_day.clone(),
            (Frequency::Weekly, true) => vec![monday_zero(start.weekday())],
            (Frequency::Daily, true) => (0..7).collect(),
        };
        let first_day = match rule.freq {
            Frequency::Daily => start.date(),
            Frequency::Weekly => {
                let back = (i64::from(monday_zero(start.weekday())) - i64::from(rule.week_start)).rem_euclid(7);
                add_days(start.date(), -back)?
            }
        };
        let mut instants: Vec<Millis> = Vec::new();
        let mut period = 0i64;
        'periods: loop {
            let (step, days_in_period) = match rule.freq {
                Frequency::Daily => (period * i64::from(rule.interval), 1),
                Frequency::Weekly => (period * 7 * i64::from(rule.interval), 7),
            };
            if step > MAX_SPAN_DAYS {
                break;
            }
            for offset in 0..days_in_period {
                let date = add_days(first_day, step + offset)?;
                if !days.contains(&monday_zero(date.weekday())) {
                    continue;
                }
                for time in &times {
                    let local = date.to_datetime(*time);
                    if local < start {
                        continue;
                    }
                    let ambiguous = tz.to_ambiguous_timestamp(local);
                    if gap_rule == GapRule::Skip && matches!(ambiguous.offset(), AmbiguousOffset::Gap { .. }) {
                        continue;
                    }
                    let at = ambiguous.compatible().map_err(|e| bad(e.to_string()))?.as_millisecond();
                    if rule.until.is_some_and(|until| at > until) {
                        break 'periods;
                    }
                    if instants.last().is_some_and(|last| *last >= at) {
                        continue;
                    }
                    check_instant("instance", at)?;
                    instants.push(at);
                    if rule.count.is_some_and(|count| instants.len() >= count as usize) {
                        break 'periods;
                    }
                    if instants.len() > MAX_INSTANCES {
                        return Err(ScheduleError::BadInstanceCount(instants.len()));
                    }
                }
            }
            period += 1;
        }
        if instants.is_empty() {
            return Err(ScheduleError::BadInstanceCount(0));
        }
        Ok(instants)
    }
}

fn by_i8(values: &[u8]) -> Vec<i8> {
    values.iter().filter_map(|v| i8::try_from(*v).ok()).collect()
}

fn monday_zero(day: Weekday) -> u8 {
    u8::try_from(day.to_monday_zero_offset()).unwrap_or(0)
}

fn add_days(date: Date, days: i64) -> Result<Date, ScheduleError> {
    date.checked_add(Span::new().days(days)).map_err(|e| bad(e.to_string()))
}

fn parse_local(dtstart: &str) -> Result<DateTime, ScheduleError> {
    if dtstart.len() > 32 {
        return Err(bad("bad DTSTART"));
    }
    let local: DateTime = dtstart.parse().map_err(|_| bad(format!("bad DTSTART {dtstart:?}")))?;
    if local.year() < 1970 {
        return Err(bad("DTSTART before 1970"));
    }
    Ok(local)
}

/// Looks up an IANA zone in the bundled tz database.
pub(crate) fn time_zone(name: &str) -> Result<TimeZone, ScheduleError> {
    if name.len() > 64 {
        return Err(ScheduleError::UnknownTimeZone(name.to_owned()));
    }
    TimeZone::get(name).map_err(|_| ScheduleError::UnknownTimeZone(name.to_owned()))
}

/// `at` as local time in `tz`, `YYYY-MM-DDTHH:MM:SS` (for messages and tests).
pub fn local_time(tz: &str, at: Millis) -> Result<String, ScheduleError> {
    let tz = time_zone(tz)?;
    let timestamp = Timestamp::from_millisecond(at).map_err(|_| ScheduleError::BadInstant { what: "instant" })?;
    Ok(tz.to_datetime(timestamp).strftime("%Y-%m-%dT%H:%M:%S").to_string())
}
