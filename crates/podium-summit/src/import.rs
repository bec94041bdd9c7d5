//! Import of a pretalx/frab `schedule.json`, and Podium's own JSON form of a schedule.
//!
//! # pretalx/frab `schedule.json`
//!
//! [`import_frab`] reads the de-facto conference format that pretalx and frab export (and C3VOC tooling reads):
//!
//! ```json
//! {"schedule": {"version": "1.0", "conference": {"acronym": "demo", "title": "Demo", "time_zone_name": "Europe/Berlin",
//!   "rooms": [{"name": "Main Hall", "guid": "..."}],
//!   "days": [{"index": 1, "date": "2025-06-14", "day_start": "...", "day_end": "...",
//!     "rooms": {"Main Hall": [{"guid": "...", "id": 1, "code": "ABC123", "title": "...", "start": "10:00",
//!       "duration": "00:30", "date": "2025-06-14T10:00:00+02:00", "room": "Main Hall", "type": "Talk",
//!       "track": "...", "abstract": "...", "url": "...", "do_not_record": false,
//!       "persons": [{"code": "XYZ", "public_name": "Ada"}]}]}}]}}}
//! ```
//!
//! The mapping, deterministic (the same file gives the same schedule, GUIDs included):
//!
//! - **Summit**: id from [`ImportOptions::summit_id`] (or the `acronym`), title, and `time_zone_name` (or
//!   [`ImportOptions::default_tz`]).
//! - **Stages** from rooms (`conference.rooms` and every room of every day): the stage id is the room name made a
//!   slug (lowercase ASCII letters, digits and `-`), the persistent room is `{acronym slug}-{stage id}` (within
//!   Podium's room-name rule: 1 to 128 of `A-Z a-z 0-9 . _ -`). Two names with the same slug get a suffix from a
//!   hash of the name (`-` and 8 hex digits), so the mapping never depends on order. The display names are kept
//!   in [`Details::stage_names`].
//! - **People** from `persons`: id [`ImportOptions::person_prefix`] + the person's `code` (pretalx), else `guid`,
//!   else `id`, else the slug of the name; name `public_name`, else `name`. Every person is a
//!   [`SessionRole::Speaker`] (a conference file has no hosts; give roles in the work-in-progress schedule).
//! - **Sessions** from events: the code is the event's `code` (pretalx), else `guid`, else `id`, else `slug`; the
//!   duration is `duration` (`HH:MM` or `HH:MM:SS`). An event of `type` `break` (any case) is a break. The same
//!   code twice (a pretalx session with several slots) is one session placed twice (occurrences in time order).
//! - **Slots**: the start is the event's `date` (ISO 8601 with an offset); without one, the day's `date` and the
//!   event's `start` in the summit's zone (the next day when `start` is before the day's `day_start` time).
//! - **GUIDs**: a Podium slot GUID is uuid v5 of the summit id and session code ([`Summit::slot_guid`]), not the
//!   source `guid` (the model derives every slot GUID, so releases keep it stable). The source event `guid` and
//!   `id` of each slot are kept in [`Imported::sources`].
//! - What the model does not hold (abstract, track, type, URL, language, `do_not_record`) is kept per session in
//!   [`Details::sessions`], for the iCalendar export.
//!
//! Titles and names have control characters (newlines) replaced by spaces; anything else the model refuses (a
//! title over 512 bytes, a zero duration, an unknown zone) is an [`ImportError`] naming the event. Nothing panics.
//!
//! # Podium's JSON
//!
//! [`export_podium_json`] / [`import_podium_json`]: `{"format": "podium-schedule", "version": 1, "schedule":
//! <Schedule>}` where `<Schedule>` is the serde form of [`Schedule`] (the work in progress): `summit` (`id`,
//! `title`, `tz`), `stages`, `people`, `sessions` (keyed by code), `slots` (keyed by GUID: `guid`, `stage`, `start`
//! and `end` in UTC milliseconds, `kind` `session` with `code` and `occurrence` or `break` with `key` and
//! `title`) and `shifts`. An import is checked with [`Schedule::validate`].

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::{
    MAX_DURATION, Millis, PODIUM_NAMESPACE, Person, PersonId, Schedule, ScheduleError, Session, SessionCode,
    SessionRole, SlotGuid, Stage, StageId, Summit,
};

/// The longest input [`import_frab`] and [`import_podium_json`] read: 32 MiB.
pub const MAX_INPUT: usize = 32 << 20;

const MAX_ROOM: usize = 128;

/// Why an import was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// Not JSON of the expected shape (serde's message has the line and column).
    #[error("malformed schedule JSON: {0}")]
    Json(String),
    /// Larger than [`MAX_INPUT`].
    #[error("input is larger than {MAX_INPUT} bytes")]
    TooLarge,
    /// Podium's JSON with another `format` or `version`.
    #[error("not a Podium schedule (format {format:?}, version {version})")]
    Format {
        /// The `format` found.
        format: String,
        /// The `version` found.
        version: u32,
    },
    /// One event (or room, or person) is not usable.
    #[error("event {event:?}: {reason}")]
    Event {
        /// The event's code, guid, id or title.
        event: String,
        /// What is wrong.
        reason: String,
    },
    /// The model refused a value.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
}

/// How [`import_frab`] maps a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportOptions {
    /// The summit id (the namespace of its slot GUIDs). `None`: the conference `acronym`.
    pub summit_id: Option<String>,
    /// The zone when the file has no `time_zone_name`.
    pub default_tz: String,
    /// Prefix of imported people's ids (their Podium identities).
    pub person_prefix: String,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self { summit_id: None, default_tz: "UTC".to_owned(), person_prefix: "pretalx-".to_owned() }
    }
}

/// What an imported session has that the model does not hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Abstract (pretalx `abstract`).
    pub summary: String,
    /// Longer description.
    pub description: String,
    /// Track.
    pub track: Option<String>,
    /// Type (`Talk`, `Workshop`, ...).
    pub kind: Option<String>,
    /// Public page.
    pub url: Option<String>,
    /// Language.
    pub language: Option<String>,
    /// Must not be recorded.
    pub do_not_record: bool,
}

/// Display data the model does not hold, for the iCalendar export.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Details {
    /// Stage display names (the source room names).
    pub stage_names: BTreeMap<StageId, String>,
    /// Per session.
    pub sessions: BTreeMap<SessionCode, SessionInfo>,
}

/// Where a slot came from in the source file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSlot {
    /// The event's `guid`.
    pub guid: Option<String>,
    /// The event's `id` (as text).
    pub id: Option<String>,
}

/// An imported schedule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Imported {
    /// The work-in-progress schedule (valid).
    pub schedule: Schedule,
    /// Display data.
    pub details: Details,
    /// Source ids of each slot, by Podium slot GUID.
    pub sources: BTreeMap<SlotGuid, SourceSlot>,
    /// The file's schedule `version`.
    pub version: Option<String>,
}

#[derive(Deserialize)]
struct FrabRoot {
    schedule: FrabSchedule,
}

#[derive(Deserialize)]
struct FrabSchedule {
    #[serde(default)]
    version: Option<String>,
    conference: FrabConference,
}

#[derive(Deserialize)]
struct FrabConference {
    acronym: String,
    title: String,
    #[serde(default)]
    time_zone_name: Option<String>,
    #[serde(default)]
    rooms: Vec<FrabRoom>,
    days: Vec<FrabDay>,
}

#[derive(Deserialize)]
struct FrabRoom {
    name: String,
}

#[derive(Deserialize)]
struct FrabDay {
    date: String,
    #[serde(default)]
    day_start: Option<String>,
    #[serde(default)]
    rooms: BTreeMap<String, Vec<FrabEvent>>,
}

#[derive(Deserialize)]
struct FrabEvent {
    #[serde(default)]
    guid: Option<String>,
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    slug: Option<String>,
    title: String,
    #[serde(default)]
    start: Option<String>,
    duration: String,
    #[serde(default)]
    date: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    track: Option<String>,
    #[serde(default, rename = "abstract")]
    summary: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    do_not_record: Option<bool>,
    #[serde(default)]
    persons: Vec<FrabPerson>,
}

#[derive(Deserialize)]
struct FrabPerson {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    guid: Option<String>,
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    public_name: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

/// A JSON id (string or number) as text.
fn id_text(value: &Option<serde_json::Value>) -> Option<String> {
    match value {
        Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

fn nonempty(value: &Option<String>) -> Option<String> {
    value.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
}

/// `text` with control characters replaced by spaces and trimmed.
fn clean(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>().trim().to_owned()
}

/// Lowercase ASCII letters and digits, other runs as one `-`, no `-` at either end.
pub fn slug(text: &str) -> String {
    let mut out = String::new();
    let mut dash = false;
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c.to_ascii_lowercase());
        } else {
            dash = true;
        }
    }
    out
}

fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].trim_end_matches('-')
}

fn name_hash(name: &str) -> String {
    let hash = Uuid::new_v5(&PODIUM_NAMESPACE, name.as_bytes());
    hash.simple().to_string()[..8].to_owned()
}

/// `HH:MM` or `HH:MM:SS` (hours may exceed 24) as milliseconds.
fn parse_duration(text: &str) -> Option<Millis> {
    let parts: Vec<&str> = text.trim().split(':').collect();
    if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let num = |p: &str| p.parse::<i64>().ok().filter(|&n| n < 100_000);
    let hours = num(parts[0])?;
    let minutes = num(parts[1]).filter(|&m| m < 60)?;
    let seconds = match parts.get(2) {
        Some(p) => num(p).filter(|&s| s < 60)?,
        None => 0,
    };
    let ms = ((hours * 60 + minutes) * 60 + seconds) * 1000;
    (1..=MAX_DURATION).contains(&ms).then_some(ms)
}

fn parse_hhmm(text: &str) -> Option<Time> {
    let (h, m) = text.trim().split_once(':')?;
    let m = m.get(..2).unwrap_or(m);
    Time::new(h.parse().ok()?, m.parse().ok()?, 0, 0).ok()
}

/// The time of day of a `day_start` (`2025-06-14T09:00:00+02:00`), if any.
fn day_start_time(text: &str) -> Option<Time> {
    let (_, time) = text.split_once('T')?;
    parse_hhmm(time)
}

/// Parses a pretalx/frab `schedule.json` into a Podium schedule (see the module docs for the mapping).
pub fn import_frab(json: &str, options: &ImportOptions) -> Result<Imported, ImportError> {
    if json.len() > MAX_INPUT {
        return Err(ImportError::TooLarge);
    }
    let root: FrabRoot = serde_json::from_str(json).map_err(|e| ImportError::Json(e.to_string()))?;
    let conference = root.schedule.conference;
    let summit_id = options.summit_id.clone().unwrap_or_else(|| conference.acronym.clone());
    let tz_name = nonempty(&conference.time_zone_name).unwrap_or_else(|| options.default_tz.clone());
    let summit = Summit::new(&summit_id, &clean(&conference.title), &tz_name)?;
    let tz = crate::rrule::time_zone(&tz_name)?;
    let mut schedule = Schedule::new(summit);
    let mut details = Details::default();

    // Stages: every room name, sorted; ids from slugs, a hash suffix on a collision.
    let mut room_names: BTreeSet<String> = conference.rooms.iter().map(|r| r.name.clone()).collect();
    for day in &conference.days {
        room_names.extend(day.rooms.keys().cloned());
    }
    let mut by_slug: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for name in &room_names {
        by_slug.entry(slug(name)).or_default().push(name.clone());
    }
    let acronym = slug(&conference.acronym);
    let mut stage_of: BTreeMap<String, StageId> = BTreeMap::new();
    for (base, names) in &by_slug {
        for name in names {
            let base = if base.is_empty() { "room" } else { base.as_str() };
            let id = if names.len() > 1 || base == "room" {
                format!("{}-{}", truncate(base, MAX_ROOM - 9), name_hash(name))
            } else {
                truncate(base, MAX_ROOM).to_owned()
            };
            let room = if acronym.is_empty() {
                id.clone()
            } else {
                format!("{}-{}", truncate(&acronym, MAX_ROOM.saturating_sub(id.len() + 1)), id)
            };
            let room = truncate(&room, MAX_ROOM).to_owned();
            let stage_id = StageId::new(id)?;
            schedule.put_stage(Stage::new(stage_id.clone(), &room)?)?;
            details.stage_names.insert(stage_id.clone(), clean(name));
            stage_of.insert(name.clone(), stage_id);
        }
    }

    // Events in time order (then room and source ids), so occurrences are numbered deterministically.
    let mut events = Vec::new();
    for day in &conference.days {
        let day_date: Option<Date> = day.date.trim().get(..10).and_then(|d| d.parse().ok());
        let day_start = day.day_start.as_deref().and_then(day_start_time);
        for (room, list) in &day.rooms {
            for event in list {
                let label = nonempty(&event.code)
                    .or_else(|| nonempty(&event.guid))
                    .or_else(|| id_text(&event.id))
                    .unwrap_or_else(|| clean(&event.title));
                let fail = |reason: String| ImportError::Event { event: label.clone(), reason };
                let start = match nonempty(&event.date) {
                    Some(date) => match date.parse::<Timestamp>() {
                        Ok(ts) => ts,
                        Err(_) => {
                            let local: DateTime =
                                date.parse().map_err(|_| fail(format!("bad date {date:?} (want ISO 8601)")))?;
                            tz.to_ambiguous_timestamp(local)
                                .compatible()
                                .map_err(|e| fail(format!("date {date:?}: {e}")))?
                        }
                    },
                    None => {
                        let date = day_date.ok_or_else(|| fail(format!("no date, and bad day date {:?}", day.date)))?;
                        let text = nonempty(&event.start).ok_or_else(|| fail("no date and no start".to_owned()))?;
                        let time = parse_hhmm(&text).ok_or_else(|| fail(format!("bad start {text:?} (want HH:MM)")))?;
                        let date = match day_start {
                            Some(first) if time < first => {
                                date.tomorrow().map_err(|e| fail(format!("start {text:?}: {e}")))?
                            }
                            _ => date,
                        };
                        tz.to_ambiguous_timestamp(date.to_datetime(time))
                            .compatible()
                            .map_err(|e| fail(format!("start {text:?}: {e}")))?
                    }
                };
                let duration = parse_duration(&event.duration)
                    .ok_or_else(|| fail(format!("bad duration {:?} (want HH:MM, not zero)", event.duration)))?;
                events.push((start.as_millisecond(), room.clone(), label, duration, event));
            }
        }
    }
    events.sort_by(|a, b| (a.0, &a.1, &a.2).cmp(&(b.0, &b.1, &b.2)));

    let mut sources = BTreeMap::new();
    for (start, room, label, duration, event) in events {
        let fail = |reason: String| ImportError::Event { event: label.clone(), reason };
        let stage = stage_of.get(&room).cloned().ok_or_else(|| fail(format!("unknown room {room:?}")))?;
        let code = nonempty(&event.code)
            .or_else(|| nonempty(&event.guid))
            .or_else(|| id_text(&event.id))
            .or_else(|| nonempty(&event.slug))
            .ok_or_else(|| fail("no code, guid, id or slug".to_owned()))?;
        let title = clean(&event.title);
        let source = SourceSlot { guid: nonempty(&event.guid), id: id_text(&event.id) };
        if event.kind.as_deref().is_some_and(|k| k.trim().eq_ignore_ascii_case("break")) {
            let end = start.saturating_add(duration);
            let guid = schedule.add_break(&code, &title, &stage, start, end).map_err(|e| fail(e.to_string()))?;
            sources.insert(guid, source);
            continue;
        }
        let code = SessionCode::new(code).map_err(|e| fail(e.to_string()))?;
        match schedule.sessions().get(&code) {
            Some(existing) if existing.duration_ms != duration => {
                return Err(fail("the same code with another duration".to_owned()));
            }
            Some(_) => {}
            None => {
                let mut people = Vec::new();
                for person in &event.persons {
                    let name = nonempty(&person.public_name).or_else(|| nonempty(&person.name));
                    let key = nonempty(&person.code)
                        .or_else(|| nonempty(&person.guid))
                        .or_else(|| id_text(&person.id))
                        .or_else(|| name.as_deref().map(slug).filter(|s| !s.is_empty()))
                        .ok_or_else(|| fail("a person without code, guid, id or name".to_owned()))?;
                    let id =
                        PersonId::new(format!("{}{key}", options.person_prefix)).map_err(|e| fail(e.to_string()))?;
                    let name = clean(&name.unwrap_or_else(|| key.clone()));
                    schedule.put_person(Person::new(id.clone(), &name).map_err(|e| fail(e.to_string()))?)?;
                    if !people.iter().any(|(p, _)| *p == id) {
                        people.push((id, SessionRole::Speaker));
                    }
                }
                let mut session =
                    Session::new(code.clone(), &title, duration, people).map_err(|e| fail(e.to_string()))?;
                // `do_not_record`: its slots must not be recorded (the hub refuses and stops recording then).
                session.record = !event.do_not_record.unwrap_or(false);
                schedule.add_session(session).map_err(|e| fail(e.to_string()))?;
                details.sessions.insert(
                    code.clone(),
                    SessionInfo {
                        summary: event.summary.clone().unwrap_or_default(),
                        description: event.description.clone().unwrap_or_default(),
                        track: nonempty(&event.track),
                        kind: nonempty(&event.kind),
                        url: nonempty(&event.url),
                        language: nonempty(&event.language),
                        do_not_record: event.do_not_record.unwrap_or(false),
                    },
                );
            }
        }
        let guid = schedule.place(&code, &stage, start).map_err(|e| fail(e.to_string()))?;
        sources.insert(guid, source);
    }
    schedule.validate()?;
    Ok(Imported { schedule, details, sources, version: root.schedule.version })
}

const FORMAT: &str = "podium-schedule";
const VERSION: u32 = 1;

#[derive(Serialize)]
struct PodiumOut<'a> {
    format: &'a str,
    version: u32,
    schedule: &'a Schedule,
}

#[derive(Deserialize)]
struct PodiumIn {
    format: String,
    version: u32,
    schedule: Schedule,
}

/// Podium's JSON form of a work-in-progress schedule (see the module docs).
pub fn export_podium_json(schedule: &Schedule) -> String {
    let out = PodiumOut { format: FORMAT, version: VERSION, schedule };
    // Serialising plain data with string keys cannot fail; an error would give an empty object.
    serde_json::to_string_pretty(&out).unwrap_or_else(|_| "{}".to_owned())
}

/// Reads Podium's JSON form of a schedule and validates it.
pub fn import_podium_json(json: &str) -> Result<Schedule, ImportError> {
    if json.len() > MAX_INPUT {
        return Err(ImportError::TooLarge);
    }
    let input: PodiumIn = serde_json::from_str(json).map_err(|e| ImportError::Json(e.to_string()))?;
    if input.format != FORMAT || input.version != VERSION {
        return Err(ImportError::Format { format: input.format, version: input.version });
    }
    input.schedule.validate()?;
    Ok(input.schedule)
}
