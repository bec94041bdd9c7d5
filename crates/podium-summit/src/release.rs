//! Releases: immutable, numbered snapshots of the work-in-progress schedule, each with the diff from the one before
//! (pretalx's `freeze_schedule` and `changes`), release warnings, rollback, and per-slot iCalendar `SEQUENCE`s.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::model::{
    Millis, PersonId, Schedule, ScheduleError, SessionRole, SessionState, Shift, ShiftRole, Slot, SlotGuid, SlotKind,
    Stage, StageId, check_instant,
};

/// A slot as released.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasedSlot {
    /// The slot (GUID, stage, times, session or break).
    pub slot: Slot,
    /// The session's title, or the break's.
    pub title: String,
    /// The session's people (empty for a break).
    pub people: Vec<(PersonId, SessionRole)>,
    /// Canceled: its session was canceled or unconfirmed, or it left the schedule. Kept (for iCalendar's
    /// `STATUS:CANCELLED`) in every later release.
    pub canceled: bool,
    /// iCalendar `SEQUENCE`: the number of releases, after its first, in which its start, end, stage or
    /// cancellation changed.
    pub sequence: u32,
    /// May be recorded (its session's [`Session::record`](crate::model::Session::record); breaks: true).
    #[serde(default = "crate::model::recorded", skip_serializing_if = "crate::model::is_recorded")]
    pub record: bool,
}

/// A slot that moved between two releases.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moved {
    /// The slot.
    pub guid: SlotGuid,
    /// Start before.
    pub old_start: Millis,
    /// Start now.
    pub new_start: Millis,
    /// Stage before.
    pub old_stage: StageId,
    /// Stage now.
    pub new_stage: StageId,
}

/// What changed from the previous release (all sorted by GUID).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diff {
    /// Slots that were not in the previous release, or were canceled there.
    pub new: Vec<SlotGuid>,
    /// Slots that were live in the previous release and are canceled now.
    pub canceled: Vec<SlotGuid>,
    /// Slots with a new start or stage.
    pub moved: Vec<Moved>,
    /// Slots with the same start and stage, and a new end, title or people.
    pub changed: Vec<SlotGuid>,
}

impl Diff {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.new.is_empty() && self.canceled.is_empty() && self.moved.is_empty() && self.changed.is_empty()
    }
}

/// A release warning. Only [`Warning::StageOverlap`] is fatal: a release with one is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Warning {
    /// Two live slots overlap on one stage.
    StageOverlap {
        /// Stage.
        stage: StageId,
        /// The earlier slot.
        first: SlotGuid,
        /// The slot that starts before `first` ends.
        second: SlotGuid,
    },
    /// A person is in two overlapping live slots.
    DoubleBooked {
        /// Person.
        person: PersonId,
        /// The earlier slot.
        first: SlotGuid,
        /// The other.
        second: SlotGuid,
    },
    /// At some moment of a slot fewer lead or mod shifts than the stage's `min_moderators` run on its stage.
    Undermoderated {
        /// Slot.
        slot: SlotGuid,
        /// The fewest shifts running at any moment of it.
        shifts: u32,
        /// The stage's minimum.
        min: u32,
    },
    /// An always-on stage has nothing scheduled from `from` to `to` (between its first and last live slots).
    Gap {
        /// Stage.
        stage: StageId,
        /// Start of the gap.
        from: Millis,
        /// End of the gap.
        to: Millis,
    },
}

impl Warning {
    /// Refuses the release.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::StageOverlap { .. })
    }
}

/// Why a release or rollback was refused. Nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseError {
    /// The work-in-progress schedule is not valid.
    #[error(transparent)]
    Invalid(#[from] ScheduleError),
    /// Fatal warnings (overlapping slots on a stage).
    #[error("{} slots overlap", .0.len())]
    Overlap(Vec<Warning>),
    /// No release with that number.
    #[error("no release {0}")]
    NotFound(u64),
    /// No stage with that id in the release.
    #[error("no stage {0:?} in the release")]
    NoStage(String),
}

/// One released version of the schedule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// Number: 1, 2, 3, ... (a rollback is a new number).
    pub seq: u64,
    /// Name.
    pub name: String,
    /// Public changelog comment.
    pub comment: String,
    /// When it was made (UTC ms).
    pub published_at: Millis,
    /// Every slot ever released, live or canceled, by GUID.
    pub slots: BTreeMap<SlotGuid, ReleasedSlot>,
    /// Shifts.
    pub shifts: Vec<Shift>,
    /// Stages.
    pub stages: BTreeMap<StageId, Stage>,
    /// Changes from the previous release (everything is new in the first).
    pub diff: Diff,
    /// Non-fatal warnings at release time.
    pub warnings: Vec<Warning>,
    /// The work-in-progress schedule it was made from (what a rollback restores).
    pub schedule: Schedule,
}

impl Release {
    /// What one stage runs: its live and canceled slots and its shifts, for [`crate::StageRun`].
    pub fn stage_plan(&self, stage: &StageId) -> Result<StagePlan, ReleaseError> {
        let config = self.stages.get(stage).ok_or_else(|| ReleaseError::NoStage(stage.as_str().to_owned()))?;
        let mut slots: Vec<PlannedSlot> = self
            .slots
            .values()
            .filter(|released| released.slot.stage == *stage)
            .map(|released| PlannedSlot {
                guid: released.slot.guid,
                start: released.slot.start,
                end: released.slot.end,
                is_break: matches!(released.slot.kind, SlotKind::Break { .. }),
                title: released.title.clone(),
                people: released.people.clone(),
                canceled: released.canceled,
                record: released.record,
            })
            .collect();
        slots.sort_by_key(|slot| (slot.start, slot.guid));
        let shifts = self.shifts.iter().filter(|shift| shift.stage == *stage).cloned().collect();
        Ok(StagePlan { release_seq: self.seq, stage: config.clone(), slots, shifts })
    }
}

/// A slot as a stage runs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedSlot {
    /// GUID.
    pub guid: SlotGuid,
    /// Start (UTC ms).
    pub start: Millis,
    /// End (UTC ms).
    pub end: Millis,
    /// A break (nobody is handed the stage).
    pub is_break: bool,
    /// Title.
    pub title: String,
    /// People and roles.
    pub people: Vec<(PersonId, SessionRole)>,
    /// Canceled.
    pub canceled: bool,
    /// May be recorded.
    #[serde(default = "crate::model::recorded", skip_serializing_if = "crate::model::is_recorded")]
    pub record: bool,
}

/// Everything one stage's run needs from a release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagePlan {
    /// The release it comes from.
    pub release_seq: u64,
    /// The stage.
    pub stage: Stage,
    /// Slots, sorted by start.
    pub slots: Vec<PlannedSlot>,
    /// The stage's shifts.
    pub shifts: Vec<Shift>,
}

impl StagePlan {
    /// Checks the stage, that GUIDs and shift ids are unique, intervals valid, and live slots do not overlap.
    pub fn validate(&self) -> Result<(), ReleaseError> {
        self.stage.validate()?;
        let mut guids = BTreeSet::new();
        let mut live: Vec<&PlannedSlot> = Vec::new();
        for slot in &self.slots {
            check_interval(slot.start, slot.end)?;
            if !guids.insert(slot.guid) {
                return Err(ScheduleError::Duplicate { what: "slot", id: slot.guid.to_string() }.into());
            }
            for (person, _) in &slot.people {
                PersonId::new(person.as_str())?;
            }
            if !slot.canceled {
                live.push(slot);
            }
        }
        live.sort_by_key(|slot| (slot.start, slot.guid));
        for pair in live.windows(2) {
            if pair[1].start < pair[0].end {
                return Err(ReleaseError::Overlap(vec![Warning::StageOverlap {
                    stage: self.stage.id.clone(),
                    first: pair[0].guid,
                    second: pair[1].guid,
                }]));
            }
        }
        let mut ids = BTreeSet::new();
        for shift in &self.shifts {
            check_interval(shift.start, shift.end)?;
            if !ids.insert(&shift.id) {
                return Err(ScheduleError::Duplicate { what: "shift", id: shift.id.as_str().to_owned() }.into());
            }
        }
        Ok(())
    }
}

fn check_interval(start: Millis, end: Millis) -> Result<(), ScheduleError> {
    check_instant("start", start)?;
    check_instant("end", end)?;
    if end <= start {
        return Err(ScheduleError::EmptyInterval { what: "slot" });
    }
    Ok(())
}

/// A summit's schedule history: the work-in-progress schedule and every release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Releases {
    wip: Schedule,
    released: Vec<Release>,
}

impl Releases {
    /// No releases yet.
    pub fn new(wip: Schedule) -> Self {
        Self { wip, released: Vec::new() }
    }

    /// The work-in-progress schedule.
    pub fn wip(&self) -> &Schedule {
        &self.wip
    }

    /// The work-in-progress schedule, to edit.
    pub fn wip_mut(&mut self) -> &mut Schedule {
        &mut self.wip
    }

    /// Every release, oldest first.
    pub fn all(&self) -> &[Release] {
        &self.released
    }

    /// The latest release.
    pub fn latest(&self) -> Option<&Release> {
        self.released.last()
    }

    /// Release number `seq`.
    pub fn get(&self, seq: u64) -> Option<&Release> {
        self.released.iter().find(|release| release.seq == seq)
    }

    /// What releasing now would warn about (fatal ones included), without releasing.
    pub fn warnings(&self) -> Result<Vec<Warning>, ReleaseError> {
        self.wip.validate()?;
        let slots = self.publish(self.latest());
        Ok(warnings(&self.wip, &slots))
    }

    /// Snapshots the work-in-progress schedule as release `seq + 1`, with its diff from the latest. Refused with
    /// [`ReleaseError::Overlap`] when live slots overlap on a stage. Releasing an unchanged schedule is allowed (an
    /// empty diff).
    pub fn release(&mut self, name: &str, comment: &str, now: Millis) -> Result<&Release, ReleaseError> {
        self.wip.validate()?;
        check_instant("published_at", now)?;
        for (what, text) in [("name", name), ("comment", comment)] {
            if text.len() > 4096 || text.chars().any(|c| c.is_control() && c != '\n') {
                return Err(ScheduleError::BadText { what }.into());
            }
        }
        let previous = self.latest();
        let mut slots = self.publish(previous);
        let all = warnings(&self.wip, &slots);
        let (fatal, warnings): (Vec<_>, Vec<_>) = all.into_iter().partition(Warning::is_fatal);
        if !fatal.is_empty() {
            return Err(ReleaseError::Overlap(fatal));
        }
        let diff = match previous {
            None => {
                Diff { new: slots.values().filter(|s| !s.canceled).map(|s| s.slot.guid).collect(), ..Diff::default() }
            }
            Some(previous) => diff(&previous.slots, &slots),
        };
        if let Some(previous) = previous {
            for slot in slots.values_mut() {
                if let Some(old) = previous.slots.get(&slot.slot.guid) {
                    let material = old.slot.start != slot.slot.start
                        || old.slot.end != slot.slot.end
                        || old.slot.stage != slot.slot.stage
                        || old.canceled != slot.canceled;
                    slot.sequence = old.sequence.saturating_add(u32::from(material));
                }
            }
        }
        let seq = previous.map_or(1, |previous| previous.seq.saturating_add(1));
        let release = Release {
            seq,
            name: name.to_owned(),
            comment: comment.to_owned(),
            published_at: now,
            slots,
            shifts: self.wip.shifts().values().cloned().collect(),
            stages: self.wip.stages().clone(),
            diff,
            warnings,
            schedule: self.wip.clone(),
        };
        self.released.push(release);
        self.latest().ok_or(ReleaseError::NotFound(seq))
    }

    /// Puts release `seq`'s schedule back as the work in progress (pretalx's `unfreeze`); nothing is released.
    pub fn restore_wip(&mut self, seq: u64) -> Result<(), ReleaseError> {
        let release = self.get(seq).ok_or(ReleaseError::NotFound(seq))?;
        self.wip = release.schedule.clone();
        Ok(())
    }

    /// Rolls back to release `seq`: restores its schedule and releases it as a new number (whose diff undoes what
    /// came after). On refusal the work in progress is left as it was.
    pub fn rollback(&mut self, seq: u64, name: &str, comment: &str, now: Millis) -> Result<&Release, ReleaseError> {
        let schedule = self.get(seq).ok_or(ReleaseError::NotFound(seq))?.schedule.clone();
        let saved = std::mem::replace(&mut self.wip, schedule);
        let failed = self.release(name, comment, now).err();
        match failed {
            Some(error) => {
                self.wip = saved;
                Err(error)
            }
            None => self.latest().ok_or(ReleaseError::NotFound(seq)),
        }
    }

    /// The slots a release of the current WIP holds: WIP slots of confirmed sessions and breaks live, WIP slots of
    /// canceled sessions canceled, and every previously released slot no longer live kept as canceled.
    fn publish(&self, previous: Option<&Release>) -> BTreeMap<SlotGuid, ReleasedSlot> {
        let mut slots = BTreeMap::new();
        for slot in self.wip.slots().values() {
            let (title, people, state, record) = match &slot.kind {
                SlotKind::Break { title, .. } => (title.clone(), Vec::new(), SessionState::Confirmed, true),
                SlotKind::Session { code, .. } => match self.wip.session(code) {
                    Ok(session) => (session.title.clone(), session.people.clone(), session.state, session.record),
                    Err(_) => continue,
                },
            };
            let canceled = match state {
                SessionState::Confirmed => false,
                SessionState::Canceled => true,
                SessionState::Accepted => continue,
            };
            if canceled && previous.is_none_or(|previous| !previous.slots.contains_key(&slot.guid)) {
                continue;
            }
            slots.insert(slot.guid, ReleasedSlot { slot: slot.clone(), title, people, canceled, sequence: 0, record });
        }
        if let Some(previous) = previous {
            for (guid, old) in &previous.slots {
                slots.entry(*guid).or_insert_with(|| ReleasedSlot { canceled: true, ..old.clone() });
            }
        }
        slots
    }
}

fn diff(old: &BTreeMap<SlotGuid, ReleasedSlot>, new: &BTreeMap<SlotGuid, ReleasedSlot>) -> Diff {
    let mut diff = Diff::default();
    for (guid, slot) in new {
        match old.get(guid) {
            None if !slot.canceled => diff.new.push(*guid),
            None => {}
            Some(before) => match (before.canceled, slot.canceled) {
                (true, false) => diff.new.push(*guid),
                (false, true) => diff.canceled.push(*guid),
                (true, true) => {}
                (false, false) => {
                    if before.slot.start != slot.slot.start || before.slot.stage != slot.slot.stage {
                        diff.moved.push(Moved {
                            guid: *guid,
                            old_start: before.slot.start,
                            new_start: slot.slot.start,
                            old_stage: before.slot.stage.clone(),
                            new_stage: slot.slot.stage.clone(),
                        });
                    } else if before.slot.end != slot.slot.end
                        || before.title != slot.title
                        || before.people != slot.people
                    {
                        diff.changed.push(*guid);
                    }
                }
            },
        }
    }
    diff
}

fn warnings(schedule: &Schedule, slots: &BTreeMap<SlotGuid, ReleasedSlot>) -> Vec<Warning> {
    let mut warnings = Vec::new();
    let mut by_stage: BTreeMap<&StageId, Vec<&ReleasedSlot>> = BTreeMap::new();
    let mut by_person: BTreeMap<&PersonId, Vec<&ReleasedSlot>> = BTreeMap::new();
    for slot in slots.values().filter(|slot| !slot.canceled) {
        by_stage.entry(&slot.slot.stage).or_default().push(slot);
        for (person, _) in &slot.people {
            by_person.entry(person).or_default().push(slot);
        }
    }
    for (stage, stage_slots) in &mut by_stage {
        stage_slots.sort_by_key(|slot| (slot.slot.start, slot.slot.guid));
        let always_on = schedule.stages().get(*stage).is_some_and(|stage| stage.always_on);
        let mut latest: Option<&ReleasedSlot> = None;
        for slot in stage_slots.iter() {
            if let Some(before) = latest {
                if slot.slot.start < before.slot.end {
                    warnings.push(Warning::StageOverlap {
                        stage: (*stage).clone(),
                        first: before.slot.guid,
                        second: slot.slot.guid,
                    });
                } else if always_on && slot.slot.start > before.slot.end {
                    warnings.push(Warning::Gap { stage: (*stage).clone(), from: before.slot.end, to: slot.slot.start });
                }
            }
            if latest.is_none_or(|before| slot.slot.end > before.slot.end) {
                latest = Some(slot);
            }
        }
    }
    for (person, person_slots) in &mut by_person {
        person_slots.sort_by_key(|slot| (slot.slot.start, slot.slot.guid));
        let mut latest: Option<&ReleasedSlot> = None;
        for slot in person_slots.iter() {
            if let Some(before) = latest
                && slot.slot.start < before.slot.end
            {
                warnings.push(Warning::DoubleBooked {
                    person: (*person).clone(),
                    first: before.slot.guid,
                    second: slot.slot.guid,
                });
            }
            if latest.is_none_or(|before| slot.slot.end > before.slot.end) {
                latest = Some(slot);
            }
        }
    }
    for slot in slots.values().filter(|slot| !slot.canceled) {
        let Some(stage) = schedule.stages().get(&slot.slot.stage) else { continue };
        if stage.min_moderators == 0 {
            continue;
        }
        let shifts: Vec<&Shift> = schedule
            .shifts()
            .values()
            .filter(|shift| {
                shift.stage == slot.slot.stage
                    && shift.role != ShiftRole::Backup
                    && shift.start < slot.slot.end
                    && shift.end > slot.slot.start
            })
            .collect();
        let fewest = min_coverage(slot.slot.start, slot.slot.end, &shifts);
        if fewest < stage.min_moderators {
            warnings.push(Warning::Undermoderated { slot: slot.slot.guid, shifts: fewest, min: stage.min_moderators });
        }
    }
    warnings
}

/// The fewest of `shifts` running at any moment of `[start, end)`.
fn min_coverage(start: Millis, end: Millis, shifts: &[&Shift]) -> u32 {
    let mut points: Vec<Millis> = vec![start];
    points.extend(shifts.iter().flat_map(|shift| [shift.start, shift.end]).filter(|p| (start..end).contains(p)));
    points
        .iter()
        .map(|&p| shifts.iter().filter(|shift| shift.start <= p && p < shift.end).count())
        .min()
        .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
}
