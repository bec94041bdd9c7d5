//! iCalendar (RFC 5545) export of a release: a feed for the whole summit, one stage, one speaker or a
//! subscriber's set of slots.
//!
//! # The feed
//!
//! - Calendar: `VERSION:2.0`, a stable [`PRODID`], `CALSCALE:GREGORIAN`, `METHOD:PUBLISH`, `NAME` and
//!   `X-WR-CALNAME`, and `REFRESH-INTERVAL;VALUE=DURATION:PT1H` (RFC 7986) with `X-PUBLISHED-TTL:PT1H`.
//! - **One VEVENT per concrete slot** (a series is expanded: never an RRULE, whose instances in a DST gap RFC 5545
//!   §3.3.10 drops), sorted by start then GUID:
//!   - `UID:{slot guid}@{host}`: stable across releases, so a client updates the event in place;
//!   - `DTSTAMP` (the caller's `now`), `DTSTART`/`DTEND` in UTC (`Z`; no `VTIMEZONE` needed, and no floating
//!     time), truncated to the second;
//!   - `SEQUENCE`: the slot's counter ([`crate::ReleasedSlot::sequence`]: it goes up in each release that changed
//!     its time, stage or cancellation), so a moved slot supersedes the old copy;
//!   - `STATUS:CONFIRMED`, or `STATUS:CANCELLED` for a canceled slot, which **stays in the feed** (clients remove
//!     it from their view; a slot that disappeared would linger in theirs);
//!   - `SUMMARY` (title), `LOCATION` (the stage's display name from [`Details`], else its id), `DESCRIPTION`
//!     (abstract, description, speakers), `CATEGORIES` (track and type, or `Break`), `URL` (from the caller's
//!     function), `LAST-MODIFIED` (see [`last_modified`], else the release's time).
//! - Filters ([`Filter`]): the summit; a stage (its slots, breaks included); a person (the slots whose session
//!   names them, in any role); a set of slot GUIDs (a subscriber's; unknown GUIDs are ignored).
//!
//! # Writing
//!
//! Hand-written (about a hundred lines, no date-library dependency besides jiff; the Python `icalendar` library
//! parses it in the acceptance test): TEXT values escape `\`, `;`, `,` and newlines (RFC 5545 §3.3.11) and drop
//! other control characters; lines are CRLF-terminated and folded at 75 octets, never inside a UTF-8 sequence
//! (§3.1); a URL with a control character or a space is left out. Pure: the same release and options give the
//! same bytes.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::import::Details;
use crate::model::{Millis, PersonId, SlotGuid, SlotKind, StageId};
use crate::release::{Release, ReleasedSlot};

/// The calendar's `PRODID` (stable: clients de-duplicate feeds on it).
pub const PRODID: &str = "-//Podium//podium-summit//EN";

/// A slot's `URL`: a function of the released slot.
pub type SlotUrl = dyn Fn(&ReleasedSlot) -> Option<String>;

/// Which slots a feed has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    /// Every slot of the summit.
    Summit,
    /// One stage's slots.
    Stage(StageId),
    /// The slots of sessions that name this person.
    Person(PersonId),
    /// These slots (a subscriber's).
    Slots(BTreeSet<SlotGuid>),
}

/// Why an export was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IcalError {
    /// The UID host is empty, longer than 253 bytes, or not of `A-Z a-z 0-9 . - _ : [ ]`.
    #[error("bad UID host {0:?}")]
    BadHost(String),
    /// An instant the calendar cannot write.
    #[error("instant {0} out of range")]
    BadInstant(Millis),
    /// The filter's stage is not in the release.
    #[error("no stage {0:?} in the release")]
    NoStage(String),
    /// The filter's person is not in the release.
    #[error("no person {0:?} in the release")]
    NoPerson(String),
}

/// How [`export_ical`] writes a feed.
#[derive(Clone, Copy)]
pub struct IcalOptions<'a> {
    /// The right-hand side of every `UID` (the hub's public host name).
    pub host: &'a str,
    /// `DTSTAMP` (UTC ms): when the feed was made.
    pub now: Millis,
    /// Display data (stage names, abstracts, tracks, URLs), e.g. from an import.
    pub details: Option<&'a Details>,
    /// Each slot's `URL` (e.g. its page or join link), if any.
    pub url: Option<&'a SlotUrl>,
    /// Each slot's `LAST-MODIFIED`, from [`last_modified`]; a slot not in it gets the release's time.
    pub last_modified: Option<&'a BTreeMap<SlotGuid, Millis>>,
}

impl<'a> IcalOptions<'a> {
    /// Options with only the host and `now`.
    pub fn new(host: &'a str, now: Millis) -> Self {
        Self { host, now, details: None, url: None, last_modified: None }
    }
}

/// When each slot last changed (its times, stage, title, people or cancellation): the `published_at` of the
/// latest of `releases` (oldest first) that changed it.
pub fn last_modified(releases: &[Release]) -> BTreeMap<SlotGuid, Millis> {
    let mut out = BTreeMap::new();
    let mut previous: Option<&Release> = None;
    for release in releases {
        for (guid, slot) in &release.slots {
            let before = previous.and_then(|p| p.slots.get(guid));
            let same = before.is_some_and(|b| {
                b.slot == slot.slot && b.title == slot.title && b.people == slot.people && b.canceled == slot.canceled
            });
            if !same {
                out.insert(*guid, release.published_at);
            }
        }
        previous = Some(release);
    }
    out
}

/// The release's slots that `filter` selects, as an iCalendar feed (see the module docs).
pub fn export_ical(release: &Release, filter: &Filter, options: &IcalOptions<'_>) -> Result<String, IcalError> {
    let host = options.host;
    if host.is_empty() || host.len() > 253 || !host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b))
    {
        return Err(IcalError::BadHost(host.to_owned()));
    }
    let people = release.schedule.people();
    let stage_name = |stage: &StageId| {
        options.details.and_then(|d| d.stage_names.get(stage)).cloned().unwrap_or_else(|| stage.as_str().to_owned())
    };
    let summit = &release.schedule.summit;
    let (selected, name): (Vec<&ReleasedSlot>, String) = match filter {
        Filter::Summit => (release.slots.values().collect(), summit.title.clone()),
        Filter::Stage(stage) => {
            if !release.stages.contains_key(stage) {
                return Err(IcalError::NoStage(stage.as_str().to_owned()));
            }
            let slots = release.slots.values().filter(|s| s.slot.stage == *stage).collect();
            (slots, format!("{}: {}", summit.title, stage_name(stage)))
        }
        Filter::Person(person) => {
            let slots: Vec<_> = release.slots.values().filter(|s| s.people.iter().any(|(p, _)| p == person)).collect();
            let display = match people.get(person) {
                Some(p) => p.name.clone(),
                None if !slots.is_empty() => person.as_str().to_owned(),
                None => return Err(IcalError::NoPerson(person.as_str().to_owned())),
            };
            (slots, format!("{}: {}", summit.title, display))
        }
        Filter::Slots(guids) => {
            (guids.iter().filter_map(|g| release.slots.get(g)).collect(), format!("{}: my sessions", summit.title))
        }
    };
    let mut selected = selected;
    selected.sort_by_key(|s| (s.slot.start, s.slot.guid));

    let mut w = Writer::default();
    w.line("BEGIN:VCALENDAR");
    w.line("VERSION:2.0");
    w.prop("PRODID", PRODID);
    w.line("CALSCALE:GREGORIAN");
    w.line("METHOD:PUBLISH");
    w.prop("NAME", &escape(&name));
    w.prop("X-WR-CALNAME", &escape(&name));
    w.line("REFRESH-INTERVAL;VALUE=DURATION:PT1H");
    w.line("X-PUBLISHED-TTL:PT1H");
    let dtstamp = utc(options.now)?;
    for released in selected {
        let slot = &released.slot;
        w.line("BEGIN:VEVENT");
        w.prop("UID", &format!("{}@{host}", slot.guid));
        w.prop("DTSTAMP", &dtstamp);
        w.prop("DTSTART", &utc(slot.start)?);
        w.prop("DTEND", &utc(slot.end)?);
        w.prop("SEQUENCE", &released.sequence.to_string());
        w.prop("STATUS", if released.canceled { "CANCELLED" } else { "CONFIRMED" });
        w.prop("SUMMARY", &escape(&released.title));
        w.prop("LOCATION", &escape(&stage_name(&slot.stage)));
        let (info, categories) = match &slot.kind {
            SlotKind::Session { code, .. } => {
                let info = options.details.and_then(|d| d.sessions.get(code));
                let categories: Vec<String> =
                    info.map(|i| i.track.iter().chain(i.kind.iter()).map(|c| escape(c)).collect()).unwrap_or_default();
                (info, categories)
            }
            SlotKind::Break { .. } => (None, vec!["Break".to_owned()]),
        };
        let mut description = Vec::new();
        if let Some(info) = info {
            description.extend([info.summary.trim(), info.description.trim()].into_iter().filter(|t| !t.is_empty()));
        }
        let names: Vec<&str> =
            released.people.iter().map(|(id, _)| people.get(id).map_or(id.as_str(), |p| p.name.as_str())).collect();
        let speakers = format!("With: {}", names.join(", "));
        if !names.is_empty() {
            description.push(&speakers);
        }
        if info.is_some_and(|i| i.do_not_record) {
            description.push("Not recorded.");
        }
        if !description.is_empty() {
            w.prop("DESCRIPTION", &escape(&description.join("\n\n")));
        }
        if !categories.is_empty() {
            w.prop("CATEGORIES", &categories.join(","));
        }
        let url = options.url.and_then(|f| f(released)).or_else(|| info.and_then(|i| i.url.clone()));
        if let Some(url) = url.filter(|u| !u.is_empty() && !u.chars().any(|c| c.is_control() || c.is_whitespace())) {
            w.prop("URL", &url);
        }
        let modified = options.last_modified.and_then(|m| m.get(&slot.guid)).copied().unwrap_or(release.published_at);
        w.prop("LAST-MODIFIED", &utc(modified)?);
        w.line("END:VEVENT");
    }
    w.line("END:VCALENDAR");
    Ok(w.out)
}

/// `YYYYMMDDTHHMMSSZ`.
fn utc(at: Millis) -> Result<String, IcalError> {
    let ts = Timestamp::from_millisecond(at).map_err(|_| IcalError::BadInstant(at))?;
    if at < 0 {
        return Err(IcalError::BadInstant(at));
    }
    Ok(ts.to_zoned(TimeZone::UTC).strftime("%Y%m%dT%H%M%SZ").to_string())
}

/// RFC 5545 §3.3.11 TEXT escaping: `\` `;` `,` and newlines escaped, CR and other control characters (but tab)
/// dropped.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push('\t'),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Content lines, CRLF-terminated and folded at 75 octets.
#[derive(Default)]
struct Writer {
    out: String,
}

impl Writer {
    fn prop(&mut self, name: &str, value: &str) {
        self.line(&format!("{name}:{value}"));
    }

    fn line(&mut self, line: &str) {
        fold_into(&mut self.out, line);
    }
}

/// Appends `line` folded (RFC 5545 §3.1): no physical line over 75 octets without its CRLF; a continuation starts
/// with one space (which counts); never splits a UTF-8 sequence.
pub(crate) fn fold_into(out: &mut String, line: &str) {
    let mut rest = line;
    let mut limit = 75;
    loop {
        if rest.len() <= limit {
            out.push_str(rest);
            out.push_str("\r\n");
            return;
        }
        let mut cut = limit;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push_str(&rest[..cut]);
        out.push_str("\r\n ");
        rest = &rest[cut..];
        limit = 74;
    }
}
