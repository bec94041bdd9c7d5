//! The schedule model: summit, stages, people, sessions, slots and shifts, and the work-in-progress [`Schedule`]
//! that holds them. Every constructor and edit validates its input and returns a [`ScheduleError`]; a value built
//! by them is valid, and [`Schedule::validate`] re-checks a deserialised one.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::rrule::{GapRule, Series};

/// An instant (milliseconds since the Unix epoch, UTC) or a duration in milliseconds.
pub type Millis = i64;

/// The latest instant the model accepts: 9999-12-31T23:59:59.999Z (the tz database's range).
pub const MAX_INSTANT: Millis = 253_402_300_799_999;
/// The longest duration the model accepts for a slot, a shift or any configured delay: 31 days.
pub const MAX_DURATION: Millis = 31 * 24 * 3_600_000;

const MAX_ID_LEN: usize = 128;
const MAX_TEXT_LEN: usize = 512;

/// Podium's namespace for slot GUIDs (a fixed, random v4 UUID). A slot's GUID is
/// `uuid_v5(uuid_v5(PODIUM_NAMESPACE, summit id), "{session code}/{occurrence}")`.
pub const PODIUM_NAMESPACE: Uuid = Uuid::from_u128(0x5d2c_1f7e_8a4b_4c6e_9f1a_2b3c_4d5e_6f70);

/// Why a schedule input was refused. Nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// An id is empty, longer than 128 bytes, or has a control character or `/`.
    #[error("bad {what} id {id:?}")]
    BadId {
        /// What kind of id.
        what: &'static str,
        /// The id.
        id: String,
    },
    /// A title or file name is longer than 512 bytes or has a control character.
    #[error("bad {what}")]
    BadText {
        /// Which field.
        what: &'static str,
    },
    /// Not an IANA time zone name known to the bundled tz database.
    #[error("unknown time zone {0:?}")]
    UnknownTimeZone(String),
    /// An instant outside `0..=MAX_INSTANT`.
    #[error("{what} out of range")]
    BadInstant {
        /// Which field.
        what: &'static str,
    },
    /// A duration not in its allowed range (see the field's docs).
    #[error("{what} out of range")]
    BadDuration {
        /// Which field.
        what: &'static str,
    },
    /// An interval whose end is not after its start.
    #[error("{what} ends before it starts")]
    EmptyInterval {
        /// What kind of interval.
        what: &'static str,
    },
    /// The id is already taken.
    #[error("{what} {id:?} exists")]
    Duplicate {
        /// What kind of id.
        what: &'static str,
        /// The id.
        id: String,
    },
    /// No such stage, person, session, slot or shift.
    #[error("no {what} {id:?}")]
    NotFound {
        /// What kind of id.
        what: &'static str,
        /// The id.
        id: String,
    },
    /// A series session's slots come from its recurrence rule; place or move them through it.
    #[error("session {0:?} is a series")]
    IsSeries(String),
    /// The recurrence rule does not parse, or is outside the supported subset.
    #[error("bad recurrence rule: {0}")]
    BadRule(String),
    /// The recurrence expands to more than [`crate::rrule::MAX_INSTANCES`] instances, or to none.
    #[error("recurrence expands to {0} instances")]
    BadInstanceCount(usize),
}

fn check_id(what: &'static str, id: &str) -> Result<(), ScheduleError> {
    if id.is_empty() || id.len() > MAX_ID_LEN || id.chars().any(|c| c.is_control() || c == '/') {
        return Err(ScheduleError::BadId { what, id: id.to_owned() });
    }
    Ok(())
}

fn check_text(what: &'static str, text: &str) -> Result<(), ScheduleError> {
    if text.len() > MAX_TEXT_LEN || text.chars().any(char::is_control) {
        return Err(ScheduleError::BadText { what });
    }
    Ok(())
}

pub(crate) fn check_instant(what: &'static str, at: Millis) -> Result<(), ScheduleError> {
    if !(0..=MAX_INSTANT).contains(&at) {
        return Err(ScheduleError::BadInstant { what });
    }
    Ok(())
}

fn check_duration(what: &'static str, ms: Millis, min: Millis) -> Result<(), ScheduleError> {
    if !(min..=MAX_DURATION).contains(&ms) {
        return Err(ScheduleError::BadDuration { what });
    }
    Ok(())
}

fn check_interval(what: &'static str, start: Millis, end: Millis) -> Result<(), ScheduleError> {
    check_instant(what, start)?;
    check_instant(what, end)?;
    if end <= start {
        return Err(ScheduleError::EmptyInterval { what });
    }
    check_duration(what, end - start, 1)
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A validated id: 1 to 128 bytes, no control characters, no `/`.
            pub fn new(id: impl Into<String>) -> Result<Self, ScheduleError> {
                let id = id.into();
                check_id($what, &id)?;
                Ok(Self(id))
            }

            /// The id as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub(crate) fn validate(&self) -> Result<(), ScheduleError> {
                check_id($what, &self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A stage's id.
    StageId,
    "stage"
);
id_type!(
    /// A person's id: their Podium identity (the token subject), so actions name them directly.
    PersonId,
    "person"
);
id_type!(
    /// A session's stable public code (pretalx `code`): the GUIDs of its slots derive from it.
    SessionCode,
    "session"
);
id_type!(
    /// A shift's id.
    ShiftId,
    "shift"
);

/// A slot's GUID: stable across releases (see [`PODIUM_NAMESPACE`]).
pub type SlotGuid = Uuid;

/// The summit: one event, with its display time zone (series are evaluated in it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summit {
    /// Id (the GUID namespace of its slots).
    pub id: String,
    /// Title.
    pub title: String,
    /// IANA time zone name, e.g. `Europe/Berlin`.
    pub tz: String,
}

impl Summit {
    /// A validated summit.
    pub fn new(id: &str, title: &str, tz: &str) -> Result<Self, ScheduleError> {
        let summit = Self { id: id.to_owned(), title: title.to_owned(), tz: tz.to_owned() };
        summit.validate()?;
        Ok(summit)
    }

    fn validate(&self) -> Result<(), ScheduleError> {
        check_id("summit", &self.id)?;
        check_text("title", &self.title)?;
        crate::rrule::time_zone(&self.tz)?;
        Ok(())
    }

    /// The GUID of occurrence `occurrence` (0-based) of session `code`.
    pub fn slot_guid(&self, code: &SessionCode, occurrence: u32) -> SlotGuid {
        let namespace = Uuid::new_v5(&PODIUM_NAMESPACE, self.id.as_bytes());
        Uuid::new_v5(&namespace, format!("{}/{occurrence}", code.as_str()).as_bytes())
    }

    /// The GUID of the break with caller-chosen `key` (breaks have no session code; the key keeps them stable).
    pub fn break_guid(&self, key: &str) -> SlotGuid {
        let namespace = Uuid::new_v5(&PODIUM_NAMESPACE, self.id.as_bytes());
        Uuid::new_v5(&namespace, format!("break/{key}").as_bytes())
    }
}

/// What a stage does when its current slot runs past its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OverrunPolicy {
    /// The slot ends at its end. `extend` may only use the free time before the next slot.
    HardStop,
    /// At its end the slot goes into overrun and ends at most `grace_ms` later; it never delays the next slot (the
    /// grace only uses free time), and a manual end or the next slot's start ends it sooner.
    SoftStop {
        /// Longest overrun, in ms (0 to [`MAX_DURATION`]).
        grace_ms: Millis,
    },
    /// `extend` moves the slot's end and pushes the later slots by the overlap, until gaps and breaks absorb it
    /// (a break shrinks, down to nothing, before a session moves).
    Cascade,
}

/// What runs on a stage that nobody is speaking on: after `dead_air_ms` of silence, or in place of a no-show
/// host that no standby could replace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EmptyPolicy {
    /// Play an audio file into the stage (the SFU's virtual speaker) until someone speaks.
    Filler {
        /// The Ogg Opus file (hub-side name; 1 to 512 bytes).
        file: String,
    },
    /// Open the mic: raised hands go on stage without a moderator until the next handover.
    OpenMic,
    /// Put the house host on stage until the next handover.
    HouseHost {
        /// Their identity.
        identity: PersonId,
    },
    /// Only report it.
    Nothing,
}

/// A stage: a persistent room that runs the stage's slots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    /// Id.
    pub id: StageId,
    /// The persistent room it runs in.
    pub room: String,
    /// The stage runs around the clock: a gap between its slots is a release warning.
    pub always_on: bool,
    /// Backstage opens this long before a slot (T − N); check-in (slots and shifts) opens then too. 0 to
    /// [`MAX_DURATION`].
    pub backstage_lead_ms: Millis,
    /// A host not checked in this long before the slot (T − k) is a no-show. 0 to `backstage_lead_ms`.
    pub checkin_deadline_ms: Millis,
    /// Overrun policy.
    pub overrun: OverrunPolicy,
    /// Empty (dead-air and no-show fallback) policy.
    pub empty: EmptyPolicy,
    /// Silence on the stage this long runs the empty policy; 0 turns dead-air detection off.
    pub dead_air_ms: Millis,
    /// Fewest shifts that should cover each slot (a release warning otherwise).
    pub min_moderators: u32,
    /// Standby hosts, in order of preference: one checked in for a slot replaces its no-show host.
    pub standby_hosts: Vec<PersonId>,
    /// Reminders: `Remind` this long before each session slot, each a duration 0 to [`MAX_DURATION`].
    pub reminder_offsets_ms: Vec<Millis>,
}

impl Stage {
    /// A stage with defaults: not always on, backstage 10 minutes before, check-in deadline 5 minutes before,
    /// hard stop, no empty policy, no dead-air detection, no moderator minimum, no standby hosts, no reminders.
    pub fn new(id: StageId, room: &str) -> Result<Self, ScheduleError> {
        let stage = Self {
            id,
            room: room.to_owned(),
            always_on: false,
            backstage_lead_ms: 10 * 60_000,
            checkin_deadline_ms: 5 * 60_000,
            overrun: OverrunPolicy::HardStop,
            empty: EmptyPolicy::Nothing,
            dead_air_ms: 0,
            min_moderators: 0,
            standby_hosts: Vec::new(),
            reminder_offsets_ms: Vec::new(),
        };
        stage.validate()?;
        Ok(stage)
    }

    /// Checks every field (see their docs).
    pub fn validate(&self) -> Result<(), ScheduleError> {
        self.id.validate()?;
        check_id("room", &self.room)?;
        check_duration("backstage_lead_ms", self.backstage_lead_ms, 0)?;
        check_duration("checkin_deadline_ms", self.checkin_deadline_ms, 0)?;
        if self.checkin_deadline_ms > self.backstage_lead_ms {
            return Err(ScheduleError::BadDuration { what: "checkin_deadline_ms" });
        }
        if let OverrunPolicy::SoftStop { grace_ms } = self.overrun {
            check_duration("grace_ms", grace_ms, 0)?;
        }
        match &self.empty {
            EmptyPolicy::Filler { file } => {
                if file.is_empty() {
                    return Err(ScheduleError::BadText { what: "filler file" });
                }
                check_text("filler file", file)?;
            }
            EmptyPolicy::HouseHost { identity } => identity.validate()?,
            EmptyPolicy::OpenMic | EmptyPolicy::Nothing => {}
        }
        check_duration("dead_air_ms", self.dead_air_ms, 0)?;
        for person in &self.standby_hosts {
            person.validate()?;
        }
        if self.reminder_offsets_ms.len() > 16 {
            return Err(ScheduleError::BadDuration { what: "reminder_offsets_ms (at most 16)" });
        }
        for &offset in &self.reminder_offsets_ms {
            check_duration("reminder offset", offset, 0)?;
        }
        Ok(())
    }
}

/// A person who can host, speak, moderate or take shifts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// Identity.
    pub id: PersonId,
    /// Display name.
    pub name: String,
}

impl Person {
    /// A validated person.
    pub fn new(id: PersonId, name: &str) -> Result<Self, ScheduleError> {
        check_text("name", name)?;
        Ok(Self { id, name: name.to_owned() })
    }
}

/// A person's role in a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionRole {
    /// Leads the session; a stage moderator while it runs.
    Host,
    /// Leads with the host; a stage moderator while it runs.
    CoHost,
    /// Speaks.
    Speaker,
    /// Moderates the session (a stage moderator while it runs).
    Moderator,
}

impl SessionRole {
    /// Hosts and co-hosts: a session with some, none of them checked in, is a no-show.
    pub fn leads(self) -> bool {
        matches!(self, Self::Host | Self::CoHost)
    }

    /// Gets stage-moderator rights while the session runs.
    pub fn moderates(self) -> bool {
        !matches!(self, Self::Speaker)
    }
}

/// A session's editorial state (pretalx's, reduced): only confirmed sessions are released.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Accepted, not confirmed by its speakers: kept out of releases.
    Accepted,
    /// Confirmed: released.
    Confirmed,
    /// Canceled or withdrawn: its released slots become canceled.
    Canceled,
}

/// A session: the content, placed by slots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Stable code.
    pub code: SessionCode,
    /// Title.
    pub title: String,
    /// Length of each of its slots (1 ms to [`MAX_DURATION`]).
    pub duration_ms: Millis,
    /// People and their roles, in order (a person at most once).
    pub people: Vec<(PersonId, SessionRole)>,
    /// State.
    pub state: SessionState,
    /// A series: the stage and rule its slots come from (`None`: placed one by one).
    pub recurrence: Option<Recurrence>,
    /// Its slots may be recorded (default). `false` (an import's `do_not_record`): while one of its slots is on
    /// stage the stage's room must not be recorded, and a recording running when it starts stops.
    #[serde(default = "recorded", skip_serializing_if = "is_recorded")]
    pub record: bool,
}

/// The default of [`Session::record`] (and of the slots made from it).
pub(crate) fn recorded() -> bool {
    true
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `skip_serializing_if` passes a reference.
pub(crate) fn is_recorded(record: &bool) -> bool {
    *record
}

impl Session {
    /// A confirmed, not recurring session.
    pub fn new(
        code: SessionCode,
        title: &str,
        duration_ms: Millis,
        people: Vec<(PersonId, SessionRole)>,
    ) -> Result<Self, ScheduleError> {
        let session = Self {
            code,
            title: title.to_owned(),
            duration_ms,
            people,
            state: SessionState::Confirmed,
            recurrence: None,
            record: true,
        };
        session.validate()?;
        Ok(session)
    }

    fn validate(&self) -> Result<(), ScheduleError> {
        self.code.validate()?;
        check_text("title", &self.title)?;
        check_duration("duration_ms", self.duration_ms, 1)?;
        let mut seen = BTreeSet::new();
        for (person, _) in &self.people {
            person.validate()?;
            if !seen.insert(person) {
                return Err(ScheduleError::Duplicate { what: "session person", id: person.0.clone() });
            }
        }
        Ok(())
    }
}

/// A session's series: every instance of `series` runs on `stage`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recurrence {
    /// Stage.
    pub stage: StageId,
    /// The rule and its local start.
    pub series: Series,
    /// How instances in a DST gap are placed.
    pub gap_rule: GapRule,
}

/// What a slot holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SlotKind {
    /// An occurrence of a session.
    Session {
        /// Session.
        code: SessionCode,
        /// 0-based occurrence index.
        occurrence: u32,
    },
    /// A break: nobody on stage (the empty policy may run).
    Break {
        /// The key its GUID derives from.
        key: String,
        /// Title.
        title: String,
    },
}

/// A placed slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    /// GUID, stable across releases.
    pub guid: SlotGuid,
    /// Stage.
    pub stage: StageId,
    /// Start (UTC ms).
    pub start: Millis,
    /// End (UTC ms), after `start`.
    pub end: Millis,
    /// Session or break.
    pub kind: SlotKind,
}

/// A moderator's role in a shift.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShiftRole {
    /// Leads the shift.
    Lead,
    /// Moderates.
    Mod,
    /// On call: paged when someone misses a shift.
    Backup,
}

/// A moderator shift on a stage: stage-moderator rights from `start` to `end`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shift {
    /// Id.
    pub id: ShiftId,
    /// Stage.
    pub stage: StageId,
    /// Moderator.
    pub person: PersonId,
    /// Role.
    pub role: ShiftRole,
    /// Start (UTC ms).
    pub start: Millis,
    /// End (UTC ms), after `start`.
    pub end: Millis,
}

impl Shift {
    /// A validated shift (the stage and person are checked when it is added to a schedule).
    pub fn new(
        id: ShiftId,
        stage: StageId,
        person: PersonId,
        role: ShiftRole,
        start: Millis,
        end: Millis,
    ) -> Result<Self, ScheduleError> {
        check_interval("shift", start, end)?;
        Ok(Self { id, stage, person, role, start, end })
    }
}

/// The work-in-progress schedule of a summit: everything a release snapshots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// Summit.
    pub summit: Summit,
    stages: BTreeMap<StageId, Stage>,
    people: BTreeMap<PersonId, Person>,
    sessions: BTreeMap<SessionCode, Session>,
    slots: BTreeMap<SlotGuid, Slot>,
    shifts: BTreeMap<ShiftId, Shift>,
}

impl Schedule {
    /// An empty schedule.
    pub fn new(summit: Summit) -> Self {
        Self {
            summit,
            stages: BTreeMap::new(),
            people: BTreeMap::new(),
            sessions: BTreeMap::new(),
            slots: BTreeMap::new(),
            shifts: BTreeMap::new(),
        }
    }

    /// Stages by id.
    pub fn stages(&self) -> &BTreeMap<StageId, Stage> {
        &self.stages
    }
    /// People by id.
    pub fn people(&self) -> &BTreeMap<PersonId, Person> {
        &self.people
    }
    /// Sessions by code.
    pub fn sessions(&self) -> &BTreeMap<SessionCode, Session> {
        &self.sessions
    }
    /// Slots by GUID.
    pub fn slots(&self) -> &BTreeMap<SlotGuid, Slot> {
        &self.slots
    }
    /// Shifts by id.
    pub fn shifts(&self) -> &BTreeMap<ShiftId, Shift> {
        &self.shifts
    }

    /// Adds or replaces a stage (its slots and shifts stay).
    pub fn put_stage(&mut self, stage: Stage) -> Result<(), ScheduleError> {
        stage.validate()?;
        for person in stage.standby_hosts.iter().chain(match &stage.empty {
            EmptyPolicy::HouseHost { identity } => Some(identity),
            _ => None,
        }) {
            self.person(person)?;
        }
        self.stages.insert(stage.id.clone(), stage);
        Ok(())
    }

    /// Adds or replaces a person.
    pub fn put_person(&mut self, person: Person) -> Result<(), ScheduleError> {
        person.id.validate()?;
        check_text("name", &person.name)?;
        self.people.insert(person.id.clone(), person);
        Ok(())
    }

    /// Adds a session (its people must exist). A recurrence is expanded into its slots at once.
    pub fn add_session(&mut self, session: Session) -> Result<Vec<SlotGuid>, ScheduleError> {
        session.validate()?;
        if self.sessions.contains_key(&session.code) {
            return Err(ScheduleError::Duplicate { what: "session", id: session.code.0.clone() });
        }
        for (person, _) in &session.people {
            self.person(person)?;
        }
        let recurrence = session.recurrence.clone();
        let code = session.code.clone();
        self.sessions.insert(code.clone(), session);
        match recurrence {
            None => Ok(Vec::new()),
            Some(recurrence) => {
                let placed = self.set_recurrence(&code, Some(recurrence));
                if placed.is_err() {
                    self.sessions.remove(&code);
                }
                placed
            }
        }
    }

    /// Replaces a session's title, duration and people (its slots keep their starts; their ends follow the new
    /// duration).
    pub fn update_session(
        &mut self,
        code: &SessionCode,
        title: &str,
        duration_ms: Millis,
        people: Vec<(PersonId, SessionRole)>,
    ) -> Result<(), ScheduleError> {
        let mut session = self.session(code)?.clone();
        session.title = title.to_owned();
        session.duration_ms = duration_ms;
        session.people = people;
        session.validate()?;
        for (person, _) in &session.people {
            self.person(person)?;
        }
        let mut ends = Vec::new();
        for slot in self.slots.values() {
            if matches!(&slot.kind, SlotKind::Session { code: c, .. } if c == code) {
                let end = slot.start.saturating_add(duration_ms);
                check_instant("slot end", end)?;
                ends.push((slot.guid, end));
            }
        }
        for (guid, end) in ends {
            if let Some(slot) = self.slots.get_mut(&guid) {
                slot.end = end;
            }
        }
        self.sessions.insert(code.clone(), session);
        Ok(())
    }

    /// Sets a session's state.
    pub fn set_session_state(&mut self, code: &SessionCode, state: SessionState) -> Result<(), ScheduleError> {
        let session = self.sessions.get_mut(code).ok_or_else(|| not_found("session", code.as_str()))?;
        session.state = state;
        Ok(())
    }

    /// Sets (or clears) a session's recurrence and replaces all of its slots with the expansion (a moved instance
    /// goes back to the rule). Instance `i` of the expansion is occurrence `i`, so a longer `COUNT` keeps the
    /// GUIDs of the instances already there.
    pub fn set_recurrence(
        &mut self,
        code: &SessionCode,
        recurrence: Option<Recurrence>,
    ) -> Result<Vec<SlotGuid>, ScheduleError> {
        let session = self.session(code)?;
        let duration = session.duration_ms;
        let mut new_slots = Vec::new();
        if let Some(recurrence) = &recurrence {
            self.stage(&recurrence.stage)?;
            let starts = recurrence.series.expand(&self.summit.tz, recurrence.gap_rule)?;
            for (occurrence, start) in starts.into_iter().enumerate() {
                let end = start.saturating_add(duration);
                check_interval("slot", start, end)?;
                let occurrence = u32::try_from(occurrence).map_err(|_| ScheduleError::BadInstanceCount(usize::MAX))?;
                new_slots.push(Slot {
                    guid: self.summit.slot_guid(code, occurrence),
                    stage: recurrence.stage.clone(),
                    start,
                    end,
                    kind: SlotKind::Session { code: code.clone(), occurrence },
                });
            }
        }
        self.slots.retain(|_, slot| !matches!(&slot.kind, SlotKind::Session { code: c, .. } if c == code));
        let guids = new_slots.iter().map(|slot| slot.guid).collect();
        for slot in new_slots {
            self.slots.insert(slot.guid, slot);
        }
        if let Some(session) = self.sessions.get_mut(code) {
            session.recurrence = recurrence;
        }
        Ok(guids)
    }

    /// Places one more occurrence of a (not recurring) session: the next unused occurrence index.
    pub fn place(&mut self, code: &SessionCode, stage: &StageId, start: Millis) -> Result<SlotGuid, ScheduleError> {
        let session = self.session(code)?;
        if session.recurrence.is_some() {
            return Err(ScheduleError::IsSeries(code.0.clone()));
        }
        self.stage(stage)?;
        let end = start.saturating_add(session.duration_ms);
        check_interval("slot", start, end)?;
        let occurrence = self
            .slots
            .values()
            .filter_map(|slot| match &slot.kind {
                SlotKind::Session { code: c, occurrence } if c == code => Some(occurrence.saturating_add(1)),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        let guid = self.summit.slot_guid(code, occurrence);
        self.slots.insert(
            guid,
            Slot { guid, stage: stage.clone(), start, end, kind: SlotKind::Session { code: code.clone(), occurrence } },
        );
        Ok(guid)
    }

    /// Places a break (its GUID derives from `key`, unique in the summit).
    pub fn add_break(
        &mut self,
        key: &str,
        title: &str,
        stage: &StageId,
        start: Millis,
        end: Millis,
    ) -> Result<SlotGuid, ScheduleError> {
        check_id("break", key)?;
        check_text("title", title)?;
        self.stage(stage)?;
        check_interval("break", start, end)?;
        let guid = self.summit.break_guid(key);
        if self.slots.contains_key(&guid) {
            return Err(ScheduleError::Duplicate { what: "break", id: key.to_owned() });
        }
        let kind = SlotKind::Break { key: key.to_owned(), title: title.to_owned() };
        self.slots.insert(guid, Slot { guid, stage: stage.clone(), start, end, kind });
        Ok(guid)
    }

    /// Moves a slot to `stage` at `start`, keeping its length (also one instance of a series: an override that
    /// lasts until the series' rule is set again).
    pub fn move_slot(&mut self, guid: SlotGuid, stage: &StageId, start: Millis) -> Result<(), ScheduleError> {
        self.stage(stage)?;
        let slot = self.slots.get(&guid).ok_or_else(|| not_found("slot", &guid.to_string()))?;
        let end = start.saturating_add(slot.end.saturating_sub(slot.start));
        check_interval("slot", start, end)?;
        if let Some(slot) = self.slots.get_mut(&guid) {
            slot.stage = stage.clone();
            slot.start = start;
            slot.end = end;
        }
        Ok(())
    }

    /// Removes a slot (a released one becomes canceled in the next release).
    pub fn remove_slot(&mut self, guid: SlotGuid) -> Result<(), ScheduleError> {
        self.slots.remove(&guid).map(drop).ok_or_else(|| not_found("slot", &guid.to_string()))
    }

    /// Adds or replaces a shift.
    pub fn put_shift(&mut self, shift: Shift) -> Result<(), ScheduleError> {
        shift.id.validate()?;
        check_interval("shift", shift.start, shift.end)?;
        self.stage(&shift.stage)?;
        self.person(&shift.person)?;
        self.shifts.insert(shift.id.clone(), shift);
        Ok(())
    }

    /// Removes a shift.
    pub fn remove_shift(&mut self, id: &ShiftId) -> Result<(), ScheduleError> {
        self.shifts.remove(id).map(drop).ok_or_else(|| not_found("shift", id.as_str()))
    }

    /// Checks every value and reference (for a deserialised schedule).
    pub fn validate(&self) -> Result<(), ScheduleError> {
        self.summit.validate()?;
        for (id, stage) in &self.stages {
            if *id != stage.id {
                return Err(not_found("stage", id.as_str()));
            }
            stage.validate()?;
        }
        for (id, person) in &self.people {
            if *id != person.id {
                return Err(not_found("person", id.as_str()));
            }
            check_text("name", &person.name)?;
        }
        for (code, session) in &self.sessions {
            if *code != session.code {
                return Err(not_found("session", code.as_str()));
            }
            session.validate()?;
            for (person, _) in &session.people {
                self.person(person)?;
            }
        }
        for (guid, slot) in &self.slots {
            if *guid != slot.guid {
                return Err(not_found("slot", &guid.to_string()));
            }
            self.stage(&slot.stage)?;
            check_interval("slot", slot.start, slot.end)?;
            if let SlotKind::Session { code, .. } = &slot.kind {
                self.session(code)?;
            }
        }
        for (id, shift) in &self.shifts {
            if *id != shift.id {
                return Err(not_found("shift", id.as_str()));
            }
            self.stage(&shift.stage)?;
            self.person(&shift.person)?;
            check_interval("shift", shift.start, shift.end)?;
        }
        Ok(())
    }

    pub(crate) fn session(&self, code: &SessionCode) -> Result<&Session, ScheduleError> {
        self.sessions.get(code).ok_or_else(|| not_found("session", code.as_str()))
    }

    pub(crate) fn stage(&self, id: &StageId) -> Result<&Stage, ScheduleError> {
        self.stages.get(id).ok_or_else(|| not_found("stage", id.as_str()))
    }

    fn person(&self, id: &PersonId) -> Result<&Person, ScheduleError> {
        self.people.get(id).ok_or_else(|| not_found("person", id.as_str()))
    }
}

fn not_found(what: &'static str, id: &str) -> ScheduleError {
    ScheduleError::NotFound { what, id: id.to_owned() }
}
