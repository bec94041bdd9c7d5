//! The run-time state machine of one stage ([`StageRun`]): slots through SCHEDULED → BACKSTAGE → ACTIVE →
//! COMPLETED (or CANCELED), handovers, the no-show ladder, dead air, shifts and reminders. See the crate docs for
//! the run-loop contract and the rules.

use std::collections::{BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::model::{
    EmptyPolicy, Millis, OverrunPolicy, PersonId, SessionRole, Shift, ShiftId, ShiftRole, SlotGuid, Stage,
};
use crate::release::{ReleaseError, StagePlan};

/// A slot's run-time status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotStatus {
    /// Waiting.
    Scheduled,
    /// Backstage open (T − backstage lead).
    Backstage,
    /// On stage.
    Active,
    /// Ran and ended.
    Completed,
    /// Will not run (or was stopped by `cancel`).
    Canceled,
}

impl SlotStatus {
    /// Completed or canceled: nothing more happens to it.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Canceled)
    }

    fn is_pending(self) -> bool {
        matches!(self, Self::Scheduled | Self::Backstage)
    }
}

/// Why a slot was canceled at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// `cancel`.
    Manual,
    /// A newly installed release canceled or dropped it.
    Release,
    /// A cascade pushed the slot before it over all of this break.
    Absorbed,
}

/// Why the empty policy ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FallbackReason {
    /// Nobody was heard for the stage's `dead_air_ms`.
    DeadAir,
    /// The slot's hosts did not check in and no standby host did.
    NoShow,
}

/// One slot's run-time record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotRun {
    /// GUID.
    pub guid: SlotGuid,
    /// Title.
    pub title: String,
    /// A break.
    pub is_break: bool,
    /// People and roles.
    pub people: Vec<(PersonId, SessionRole)>,
    /// Start as released.
    pub planned_start: Millis,
    /// End as released.
    pub planned_end: Millis,
    /// Start now (a cascade or a manual start moves it).
    pub start: Millis,
    /// End now (a cascade, `extend` or a manual end moves it).
    pub end: Millis,
    /// Status.
    pub status: SlotStatus,
    /// How many of the stage's reminders (largest offset first) are done.
    pub reminders_done: u32,
    /// The check-in deadline has been checked.
    pub no_show_checked: bool,
    /// Who checked in (its people, and standby hosts).
    pub checked_in: BTreeSet<PersonId>,
    /// Who was reported a no-show.
    pub no_show: Vec<PersonId>,
    /// The standby host that replaced its hosts.
    pub substitute: Option<PersonId>,
    /// A soft stop's grace is running.
    pub overrun: bool,
    /// When it went on stage.
    pub actual_start: Option<Millis>,
    /// When it ended or was canceled.
    pub actual_end: Option<Millis>,
    /// May be recorded (its session's `record`): the handover onto it says so.
    #[serde(default = "crate::model::recorded", skip_serializing_if = "crate::model::is_recorded")]
    pub record: bool,
}

/// One shift's run-time record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShiftRun {
    /// The shift.
    pub shift: Shift,
    /// Checked in.
    pub checked_in: bool,
    /// Started (moderator rights granted).
    pub started: bool,
    /// Ended.
    pub ended: bool,
}

/// A handover: one versioned transition of the stage, from the slot ending (if any) to the slot starting (if any).
///
/// The hub applies it as one room transition: `demote` leave the stage for the audience, `promote` join it as
/// speakers, then `moderators_add` become moderators and `moderators_remove` lose moderator rights (staying on stage
/// only if they are in the incoming slot). Shift moderators are in none of the lists: shifts alone grant and revoke
/// their rights.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handover {
    /// The slot ending.
    pub from: Option<SlotGuid>,
    /// The slot starting.
    pub to: Option<SlotGuid>,
    /// Leave the stage.
    pub demote: Vec<PersonId>,
    /// Join the stage (from backstage), in the slot's order, the substitute last.
    pub promote: Vec<PersonId>,
    /// Become moderators.
    pub moderators_add: Vec<PersonId>,
    /// Lose moderator rights.
    pub moderators_remove: Vec<PersonId>,
    /// Whether the stage's room may be recorded from now on: the incoming session's `record` (`false` stops a
    /// running recording); `None` (a break, or nobody incoming) leaves it as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<bool>,
}

/// What the hub must do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Open the slot's backstage room to these people (and to the stage's standby hosts).
    OpenBackstage {
        /// Slot.
        slot: SlotGuid,
        /// Its people.
        people: Vec<PersonId>,
    },
    /// Close the slot's backstage (its people are on stage, or it was canceled).
    CloseBackstage {
        /// Slot.
        slot: SlotGuid,
    },
    /// Hand the stage over.
    Handover(Handover),
    /// Put a late arrival of the running slot on stage.
    Promote {
        /// Slot.
        slot: SlotGuid,
        /// Person.
        person: PersonId,
        /// Also as a moderator.
        moderator: bool,
    },
    /// Make a shift moderator a stage moderator.
    GrantModerator {
        /// Person.
        person: PersonId,
    },
    /// Take a shift moderator's rights away.
    RevokeModerator {
        /// Person.
        person: PersonId,
    },
    /// Play the filler file into the stage.
    StartFiller {
        /// File.
        file: String,
    },
    /// Stop the filler.
    StopFiller,
    /// Open the mic.
    OpenMic,
    /// Close the mic.
    CloseMic,
    /// Put the house host on stage.
    CallHouseHost {
        /// Identity.
        identity: PersonId,
    },
    /// Remind the slot's subscribers: it starts in `offset_ms`.
    Remind {
        /// Slot.
        slot: SlotGuid,
        /// The reminder's offset.
        offset_ms: Millis,
    },
}

/// What happened, for webhooks ([`Event::kind`] is the webhook type).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// `schedule.released`: a release was installed.
    ScheduleReleased {
        /// Release number.
        seq: u64,
    },
    /// `slot.backstage_opened`.
    BackstageOpened {
        /// Slot.
        slot: SlotGuid,
    },
    /// `slot.started`.
    SlotStarted {
        /// Slot.
        slot: SlotGuid,
    },
    /// `slot.ended`.
    SlotEnded {
        /// Slot.
        slot: SlotGuid,
    },
    /// `slot.overrun`: past its end (a soft stop's grace, or a cascade).
    SlotOverrun {
        /// Slot.
        slot: SlotGuid,
        /// It ends at the latest then.
        until: Millis,
    },
    /// `slot.extended`.
    SlotExtended {
        /// Slot.
        slot: SlotGuid,
        /// New end.
        end: Millis,
    },
    /// `slot.moved`: a cascade pushed it.
    SlotMoved {
        /// Slot.
        slot: SlotGuid,
        /// New start.
        start: Millis,
        /// New end.
        end: Millis,
    },
    /// `slot.canceled`.
    SlotCanceled {
        /// Slot.
        slot: SlotGuid,
        /// Why.
        reason: CancelReason,
    },
    /// `speaker.checked_in`.
    CheckedIn {
        /// Slot.
        slot: SlotGuid,
        /// Person.
        person: PersonId,
    },
    /// `speaker.no_show`: not checked in by T − k.
    NoShow {
        /// Slot.
        slot: SlotGuid,
        /// Person.
        person: PersonId,
    },
    /// `speaker.substituted`: a standby host replaced the slot's hosts.
    Substituted {
        /// Slot.
        slot: SlotGuid,
        /// The standby host.
        substitute: PersonId,
    },
    /// `stage.empty`: the empty policy ran.
    Fallback {
        /// The active slot.
        slot: Option<SlotGuid>,
        /// Why.
        reason: FallbackReason,
    },
    /// `shift.checked_in`.
    ShiftCheckedIn {
        /// Shift.
        shift: ShiftId,
        /// Person.
        person: PersonId,
    },
    /// `shift.started`.
    ShiftStarted {
        /// Shift.
        shift: ShiftId,
        /// Person.
        person: PersonId,
    },
    /// `shift.missed`: not checked in at its start; page the backups.
    ShiftMissed {
        /// Shift.
        shift: ShiftId,
        /// Person.
        person: PersonId,
        /// Backup shifts' people running then.
        backups: Vec<PersonId>,
    },
    /// `shift.ended`.
    ShiftEnded {
        /// Shift.
        shift: ShiftId,
        /// Person.
        person: PersonId,
    },
}

impl Event {
    /// The webhook event type.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ScheduleReleased { .. } => "schedule.released",
            Self::BackstageOpened { .. } => "slot.backstage_opened",
            Self::SlotStarted { .. } => "slot.started",
            Self::SlotEnded { .. } => "slot.ended",
            Self::SlotOverrun { .. } => "slot.overrun",
            Self::SlotExtended { .. } => "slot.extended",
            Self::SlotMoved { .. } => "slot.moved",
            Self::SlotCanceled { .. } => "slot.canceled",
            Self::CheckedIn { .. } => "speaker.checked_in",
            Self::NoShow { .. } => "speaker.no_show",
            Self::Substituted { .. } => "speaker.substituted",
            Self::Fallback { .. } => "stage.empty",
            Self::ShiftCheckedIn { .. } => "shift.checked_in",
            Self::ShiftStarted { .. } => "shift.started",
            Self::ShiftMissed { .. } => "shift.missed",
            Self::ShiftEnded { .. } => "shift.ended",
        }
    }
}

/// An action or an event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Item {
    /// For the hub to do.
    Action(Action),
    /// For webhooks.
    Event(Event),
}

/// One output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    /// The stage's output counter (1, 2, 3, ...; for consumers to order and deduplicate).
    pub seq: u64,
    /// When it was due (UTC ms): at or before the `now` of the call that produced it; earlier after a jump.
    pub at: Millis,
    /// What.
    pub item: Item,
}

/// Why a run input was refused. Nothing was changed (time still advanced to `now`, and what was due ran).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The plan or state is not valid.
    #[error(transparent)]
    Invalid(#[from] ReleaseError),
    /// A plan for another stage.
    #[error("plan for another stage")]
    WrongStage,
    /// A state that breaks an invariant (a named problem).
    #[error("bad state: {0}")]
    BadState(&'static str),
    /// No slot is running.
    #[error("no slot is active")]
    NotActive,
    /// No slot is waiting.
    #[error("no slot is next")]
    NothingNext,
    /// No such slot.
    #[error("no slot {0}")]
    NoSlot(SlotGuid),
    /// The slot is completed or canceled.
    #[error("slot {0} is over")]
    Over(SlotGuid),
    /// Nothing to check this person in to now (check-in opens with the backstage, and for shifts as long before
    /// their start, and closes at their end).
    #[error("nothing to check in to")]
    NotExpected,
    /// A negative extension.
    #[error("bad extension")]
    BadExtension,
}

/// Everything a stage's run is: what [`StageRun::state`] gives and [`StageRun::from_state`] takes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    /// The installed release.
    pub release_seq: u64,
    /// The stage's configuration (from the release).
    pub stage: Stage,
    /// Slots, sorted by (start, GUID).
    pub slots: Vec<SlotRun>,
    /// Shifts, sorted by (start, id).
    pub shifts: Vec<ShiftRun>,
    /// The latest `now` seen (time never goes back).
    pub now: Millis,
    /// When the latest transition ran (≤ `now`).
    pub cursor: Millis,
    /// The running slot.
    pub active: Option<SlotGuid>,
    /// Whom the scheduler put on stage for the running slot (its people and substitute).
    pub on_stage: BTreeSet<PersonId>,
    /// Whom the running slot made moderators.
    pub session_moderators: BTreeSet<PersonId>,
    /// When someone was last heard (or the watch last restarted).
    pub last_heard: Millis,
    /// The empty policy ran for the current silence: the dead-air watch waits for speaking.
    pub silent: bool,
    /// The filler is playing.
    pub filler: bool,
    /// The mic is open.
    pub open_mic: bool,
    /// The house host is on stage.
    pub house_host: Option<PersonId>,
    /// The output counter.
    pub output_seq: u64,
    /// Outputs not yet polled.
    pub outputs: VecDeque<Output>,
}

/// What is due next, in the order ties at one instant run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    Backstage(usize),
    Remind(usize),
    NoShowCheck(usize),
    ShiftStart(usize),
    SlotEnd(usize),
    SlotStart(usize),
    ShiftEnd(usize),
    DeadAir,
}

impl Due {
    fn rank(self) -> u8 {
        match self {
            Self::Backstage(_) => 0,
            Self::Remind(_) => 1,
            Self::NoShowCheck(_) => 2,
            Self::ShiftStart(_) => 3,
            Self::SlotEnd(_) => 4,
            Self::SlotStart(_) => 5,
            Self::ShiftEnd(_) => 6,
            Self::DeadAir => 7,
        }
    }
}

/// The run of one stage. See the crate docs.
#[derive(Clone, Debug)]
pub struct StageRun {
    state: RunState,
}

impl StageRun {
    /// Starts running `plan` at `now`: nothing is on stage yet; its first output is [`Event::ScheduleReleased`]
    /// (as for a later release), then what is due at `now` runs at once (a slot whose start has passed goes on stage
    /// now; see "The jump rule").
    pub fn new(plan: StagePlan, now: Millis) -> Result<Self, RunError> {
        plan.validate()?;
        let mut run = Self {
            state: RunState {
                release_seq: plan.release_seq,
                stage: plan.stage.clone(),
                slots: Vec::new(),
                shifts: Vec::new(),
                now,
                cursor: now,
                active: None,
                on_stage: BTreeSet::new(),
                session_moderators: BTreeSet::new(),
                last_heard: now,
                silent: false,
                filler: false,
                open_mic: false,
                house_host: None,
                output_seq: 0,
                outputs: VecDeque::new(),
            },
        };
        let seq = plan.release_seq;
        run.merge(plan);
        run.push_event(now, Event::ScheduleReleased { seq });
        run.advance(now);
        Ok(run)
    }

    /// The whole state, to persist (drain [`StageRun::poll_output`] first, or the pending outputs are persisted
    /// with it).
    pub fn state(&self) -> &RunState {
        &self.state
    }

    /// Resumes a persisted run. Continuing it gives the same outputs as the run that was persisted.
    pub fn from_state(state: RunState) -> Result<Self, RunError> {
        state.stage.validate().map_err(ReleaseError::from)?;
        let actives: Vec<&SlotRun> = state.slots.iter().filter(|slot| slot.status == SlotStatus::Active).collect();
        match (actives.as_slice(), state.active) {
            ([], None) => {}
            ([slot], Some(guid)) if slot.guid == guid => {}
            _ => return Err(RunError::BadState("active slot")),
        }
        if state.cursor > state.now {
            return Err(RunError::BadState("cursor after now"));
        }
        if !state.slots.windows(2).all(|pair| (pair[0].start, pair[0].guid) < (pair[1].start, pair[1].guid)) {
            return Err(RunError::BadState("slot order"));
        }
        if state.slots.iter().any(|slot| slot.end < slot.start) {
            return Err(RunError::BadState("slot times"));
        }
        Ok(Self { state })
    }

    /// The installed release.
    pub fn release_seq(&self) -> u64 {
        self.state.release_seq
    }

    /// Slots, sorted by start.
    pub fn slots(&self) -> &[SlotRun] {
        &self.state.slots
    }

    /// The running slot.
    pub fn active(&self) -> Option<&SlotRun> {
        let guid = self.state.active?;
        self.state.slots.iter().find(|slot| slot.guid == guid)
    }

    /// The next slot to go on stage.
    pub fn next(&self) -> Option<&SlotRun> {
        self.state.slots.iter().find(|slot| slot.status.is_pending())
    }

    /// The next output, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.state.outputs.pop_front()
    }

    /// When [`StageRun::handle_timeout`] must be called next (an absolute time, after the latest `now`); `None`:
    /// nothing is left to happen without an input.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.next_due().map(|(at, _)| at.max(self.state.cursor))
    }

    /// Time passed: runs everything due by `now`, each at its due time, in order.
    pub fn handle_timeout(&mut self, now: Millis) {
        self.advance(now);
    }

    /// Someone unmuted was heard on the stage (the hub reports real speakers only, never the filler): restarts the
    /// dead-air watch, and stops the filler.
    pub fn handle_speaking(&mut self, now: Millis) {
        self.advance(now);
        let at = self.state.cursor;
        self.state.last_heard = at;
        if self.state.silent {
            self.state.silent = false;
            if self.state.filler {
                self.state.filler = false;
                self.push_action(at, Action::StopFiller);
            }
        }
    }

    /// `person` checked in: into the backstage of every open slot that lists them (standby hosts: every slot in
    /// backstage), a late arrival of the running slot goes on stage at once, and into each of their shifts whose
    /// check-in is open. Checking in again is a no-op.
    pub fn handle_check_in(&mut self, person: &PersonId, now: Millis) -> Result<(), RunError> {
        self.advance(now);
        let at = self.state.cursor;
        let mut expected = false;
        let standby = self.state.stage.standby_hosts.contains(person);
        for index in 0..self.state.slots.len() {
            let slot = &self.state.slots[index];
            if slot.is_break || !matches!(slot.status, SlotStatus::Backstage | SlotStatus::Active) {
                continue;
            }
            let role = slot.people.iter().find(|(p, _)| p == person).map(|(_, role)| *role);
            if role.is_none() && !(standby && slot.status == SlotStatus::Backstage) {
                continue;
            }
            expected = true;
            let guid = slot.guid;
            let active = slot.status == SlotStatus::Active;
            if !self.state.slots[index].checked_in.insert(person.clone()) {
                continue;
            }
            self.push_event(at, Event::CheckedIn { slot: guid, person: person.clone() });
            if let (true, Some(role)) = (active, role)
                && self.state.on_stage.insert(person.clone())
            {
                let moderator = role.moderates() && !self.on_shift(person);
                if moderator {
                    self.state.session_moderators.insert(person.clone());
                }
                self.push_action(at, Action::Promote { slot: guid, person: person.clone(), moderator });
            }
        }
        let lead = self.state.stage.backstage_lead_ms;
        for index in 0..self.state.shifts.len() {
            let shift = &self.state.shifts[index];
            if shift.shift.person != *person || shift.ended || at < shift.shift.start.saturating_sub(lead) {
                continue;
            }
            expected = true;
            if !shift.checked_in {
                let id = shift.shift.id.clone();
                self.state.shifts[index].checked_in = true;
                self.push_event(at, Event::ShiftCheckedIn { shift: id, person: person.clone() });
            }
        }
        if expected { Ok(()) } else { Err(RunError::NotExpected) }
    }

    /// Starts the next slot now (early), ending the running one.
    pub fn handle_start(&mut self, now: Millis) -> Result<SlotGuid, RunError> {
        self.advance(now);
        let at = self.state.cursor;
        let index = self.state.slots.iter().position(|slot| slot.status.is_pending()).ok_or(RunError::NothingNext)?;
        let guid = self.state.slots[index].guid;
        self.state.slots[index].start = at;
        self.start_slot(index, at);
        self.resort();
        Ok(guid)
    }

    /// Ends the running slot now.
    pub fn handle_end(&mut self, now: Millis) -> Result<SlotGuid, RunError> {
        self.advance(now);
        let at = self.state.cursor;
        let index = self.active_index().ok_or(RunError::NotActive)?;
        let guid = self.state.slots[index].guid;
        self.end_active(at, SlotStatus::Completed);
        Ok(guid)
    }

    /// Extends the running slot by `ms` and returns its new end. Under a hard or soft stop it only takes free time
    /// (up to the next slot's start); under a cascade the later slots move (see [`crate::OverrunPolicy`]).
    pub fn handle_extend(&mut self, ms: Millis, now: Millis) -> Result<Millis, RunError> {
        if !(0..=crate::model::MAX_DURATION).contains(&ms) {
            return Err(RunError::BadExtension);
        }
        self.advance(now);
        let at = self.state.cursor;
        let index = self.active_index().ok_or(RunError::NotActive)?;
        let guid = self.state.slots[index].guid;
        let wanted = self.state.slots[index].end.max(at).saturating_add(ms);
        let next_start =
            self.state.slots[index + 1..].iter().find(|slot| slot.status.is_pending()).map(|slot| slot.start);
        let end = match (self.state.stage.overrun, next_start) {
            (OverrunPolicy::Cascade, _) | (_, None) => wanted,
            (_, Some(next)) => wanted.min(next.max(self.state.slots[index].end)),
        };
        let slot = &mut self.state.slots[index];
        slot.end = end;
        slot.overrun = false;
        let planned_end = slot.planned_end;
        self.push_event(at, Event::SlotExtended { slot: guid, end });
        if self.state.stage.overrun == OverrunPolicy::Cascade {
            if end > planned_end {
                self.push_event(at, Event::SlotOverrun { slot: guid, until: end });
            }
            self.cascade(index, at);
        }
        Ok(end)
    }

    /// Cancels a slot: a waiting one will not run (its backstage closes); the running one leaves the stage now.
    pub fn handle_cancel(&mut self, slot: SlotGuid, now: Millis) -> Result<(), RunError> {
        self.advance(now);
        let at = self.state.cursor;
        let index = self.state.slots.iter().position(|s| s.guid == slot).ok_or(RunError::NoSlot(slot))?;
        match self.state.slots[index].status {
            SlotStatus::Completed | SlotStatus::Canceled => Err(RunError::Over(slot)),
            SlotStatus::Active => {
                self.end_active(at, SlotStatus::Canceled);
                self.push_event(at, Event::SlotCanceled { slot, reason: CancelReason::Manual });
                Ok(())
            }
            SlotStatus::Scheduled | SlotStatus::Backstage => {
                self.cancel_pending(index, at, CancelReason::Manual);
                Ok(())
            }
        }
    }

    /// Installs a new release of the stage: the running slot keeps running (to the new release's end for it, if it
    /// is still live there); completed and canceled slots stay so; waiting slots follow the new release (moved,
    /// canceled, or new; a slot it dropped is canceled); shifts follow it too (a running shift that it dropped ends
    /// now).
    pub fn handle_release(&mut self, plan: StagePlan, now: Millis) -> Result<(), RunError> {
        plan.validate()?;
        if plan.stage.id != self.state.stage.id {
            return Err(RunError::WrongStage);
        }
        self.advance(now);
        let at = self.state.cursor;
        let seq = plan.release_seq;
        self.merge(plan);
        self.push_event(at, Event::ScheduleReleased { seq });
        self.advance(now);
        Ok(())
    }

    // ---- internals ----

    fn merge(&mut self, plan: StagePlan) {
        let at = self.state.cursor;
        self.state.release_seq = plan.release_seq;
        self.state.stage = plan.stage;
        let mut seen = BTreeSet::new();
        for planned in plan.slots {
            seen.insert(planned.guid);
            match self.state.slots.iter().position(|slot| slot.guid == planned.guid) {
                None => {
                    if planned.canceled {
                        continue;
                    }
                    self.state.slots.push(SlotRun {
                        guid: planned.guid,
                        title: planned.title,
                        is_break: planned.is_break,
                        people: planned.people,
                        planned_start: planned.start,
                        planned_end: planned.end,
                        start: planned.start,
                        end: planned.end,
                        status: SlotStatus::Scheduled,
                        reminders_done: 0,
                        no_show_checked: false,
                        checked_in: BTreeSet::new(),
                        no_show: Vec::new(),
                        substitute: None,
                        overrun: false,
                        actual_start: None,
                        actual_end: None,
                        record: planned.record,
                    });
                }
                Some(index) => {
                    let slot = &mut self.state.slots[index];
                    match slot.status {
                        SlotStatus::Completed | SlotStatus::Canceled => {}
                        SlotStatus::Active => {
                            if !planned.canceled {
                                slot.planned_end = planned.end;
                                slot.end = planned.end.max(at);
                                slot.title = planned.title;
                            }
                        }
                        SlotStatus::Scheduled | SlotStatus::Backstage => {
                            if planned.canceled {
                                self.cancel_pending(index, at, CancelReason::Release);
                            } else {
                                slot.planned_start = planned.start;
                                slot.planned_end = planned.end;
                                slot.start = planned.start;
                                slot.end = planned.end;
                                slot.title = planned.title;
                                slot.is_break = planned.is_break;
                                slot.people = planned.people;
                                slot.record = planned.record;
                            }
                        }
                    }
                }
            }
        }
        for index in 0..self.state.slots.len() {
            if self.state.slots[index].status.is_pending() && !seen.contains(&self.state.slots[index].guid) {
                self.cancel_pending(index, at, CancelReason::Release);
            }
        }
        let mut shifts = Vec::new();
        for shift in plan.shifts {
            match self.state.shifts.iter().position(|run| run.shift.id == shift.id) {
                Some(index) => {
                    let mut run = self.state.shifts.remove(index);
                    run.shift = shift;
                    shifts.push(run);
                }
                None => shifts.push(ShiftRun { shift, checked_in: false, started: false, ended: false }),
            }
        }
        // A running shift the release dropped ends now; one that never started just goes.
        let dropped: Vec<ShiftRun> = std::mem::take(&mut self.state.shifts);
        for mut run in dropped {
            if run.started && !run.ended {
                run.shift.end = at;
                shifts.push(run);
            }
        }
        shifts.sort_by(|a, b| (a.shift.start, &a.shift.id).cmp(&(b.shift.start, &b.shift.id)));
        self.state.shifts = shifts;
        self.resort();
    }

    fn resort(&mut self) {
        self.state.slots.sort_by_key(|slot| (slot.start, slot.guid));
    }

    fn active_index(&self) -> Option<usize> {
        let guid = self.state.active?;
        self.state.slots.iter().position(|slot| slot.guid == guid)
    }

    fn on_shift(&self, person: &PersonId) -> bool {
        self.state.shifts.iter().any(|run| run.started && !run.ended && run.shift.person == *person)
    }

    fn max_lead(&self) -> Millis {
        let reminders = self.state.stage.reminder_offsets_ms.iter().copied().max().unwrap_or(0);
        self.state.stage.backstage_lead_ms.max(reminders)
    }

    fn reminder_offsets(&self) -> Vec<Millis> {
        let mut offsets = self.state.stage.reminder_offsets_ms.clone();
        offsets.sort_unstable_by(|a, b| b.cmp(a));
        offsets.dedup();
        offsets
    }

    fn grace(&self) -> Millis {
        match self.state.stage.overrun {
            OverrunPolicy::SoftStop { grace_ms } => grace_ms,
            OverrunPolicy::HardStop | OverrunPolicy::Cascade => 0,
        }
    }

    fn next_due(&self) -> Option<(Millis, Due)> {
        let stage = &self.state.stage;
        let mut best: Option<(Millis, Due)> = None;
        let mut consider = |at: Millis, due: Due| {
            if best.is_none_or(|(best_at, best_due)| (at, due.rank(), due) < (best_at, best_due.rank(), best_due)) {
                best = Some((at, due));
            }
        };
        let max_lead = self.max_lead();
        let offsets = self.reminder_offsets();
        let first_pending = self.state.slots.iter().position(|slot| slot.status.is_pending());
        if let Some(index) = self.active_index() {
            let slot = &self.state.slots[index];
            let end = if slot.overrun { slot.end.saturating_add(self.grace()) } else { slot.end };
            let preempted = first_pending.is_some_and(|next| self.state.slots[next].start <= end);
            if !preempted {
                consider(end, Due::SlotEnd(index));
            }
        }
        let mut limit: Option<Millis> = None;
        for (index, slot) in self.state.slots.iter().enumerate().skip(first_pending.unwrap_or(usize::MAX)) {
            if limit.is_some_and(|limit| slot.start.saturating_sub(max_lead) > limit) {
                break;
            }
            if !slot.status.is_pending() {
                continue;
            }
            if !slot.is_break {
                if slot.status == SlotStatus::Scheduled {
                    consider(slot.start.saturating_sub(stage.backstage_lead_ms), Due::Backstage(index));
                }
                if let Some(offset) = usize::try_from(slot.reminders_done).ok().and_then(|i| offsets.get(i)) {
                    consider(slot.start.saturating_sub(*offset), Due::Remind(index));
                }
                if !slot.no_show_checked {
                    consider(slot.start.saturating_sub(stage.checkin_deadline_ms), Due::NoShowCheck(index));
                }
            }
            consider(slot.start, Due::SlotStart(index));
            limit = Some(limit.map_or(slot.start, |limit| limit.min(slot.start)));
        }
        for (index, run) in self.state.shifts.iter().enumerate() {
            if !run.started {
                consider(run.shift.start, Due::ShiftStart(index));
            } else if !run.ended {
                consider(run.shift.end, Due::ShiftEnd(index));
            }
        }
        if stage.dead_air_ms > 0 && !self.state.silent && (self.state.active.is_some() || stage.always_on) {
            consider(self.state.last_heard.saturating_add(stage.dead_air_ms), Due::DeadAir);
        }
        best
    }

    fn advance(&mut self, now: Millis) {
        // The clock rule: time never goes back.
        self.state.now = self.state.now.max(now);
        let now = self.state.now;
        // Every step marks something done, so this ends; the bound only guards against a bug looping forever.
        let bound = 16
            * (self.state.slots.len() + self.state.shifts.len() + 4)
            * (self.state.stage.reminder_offsets_ms.len() + 4);
        for _ in 0..bound {
            let Some((due_at, due)) = self.next_due() else { break };
            if due_at > now {
                break;
            }
            let at = due_at.max(self.state.cursor);
            self.state.cursor = at;
            self.run_due(due, at);
        }
        self.state.cursor = now;
    }

    fn run_due(&mut self, due: Due, at: Millis) {
        match due {
            Due::Backstage(index) => {
                let slot = &mut self.state.slots[index];
                slot.status = SlotStatus::Backstage;
                let guid = slot.guid;
                let people = slot.people.iter().map(|(p, _)| p.clone()).collect();
                self.push_action(at, Action::OpenBackstage { slot: guid, people });
                self.push_event(at, Event::BackstageOpened { slot: guid });
            }
            Due::Remind(index) => {
                let offsets = self.reminder_offsets();
                let slot = &mut self.state.slots[index];
                let offset = usize::try_from(slot.reminders_done).ok().and_then(|i| offsets.get(i)).copied();
                slot.reminders_done = slot.reminders_done.saturating_add(1);
                let guid = slot.guid;
                if let Some(offset_ms) = offset {
                    self.push_action(at, Action::Remind { slot: guid, offset_ms });
                }
            }
            Due::NoShowCheck(index) => self.check_no_show(index, at),
            Due::SlotStart(index) => self.start_slot(index, at),
            Due::SlotEnd(index) => {
                let grace = self.grace();
                let slot = &mut self.state.slots[index];
                if grace > 0 && !slot.overrun {
                    slot.overrun = true;
                    let until = slot.end.saturating_add(grace);
                    let guid = slot.guid;
                    self.push_event(at, Event::SlotOverrun { slot: guid, until });
                } else {
                    self.end_active(at, SlotStatus::Completed);
                }
            }
            Due::ShiftStart(index) => self.start_shift(index, at),
            Due::ShiftEnd(index) => self.end_shift(index, at),
            Due::DeadAir => {
                let slot = self.state.active;
                self.run_empty_policy(at);
                self.push_event(at, Event::Fallback { slot, reason: FallbackReason::DeadAir });
            }
        }
    }

    fn check_no_show(&mut self, index: usize, at: Millis) {
        let slot = &mut self.state.slots[index];
        if slot.no_show_checked {
            return;
        }
        slot.no_show_checked = true;
        let guid = slot.guid;
        let missing: Vec<PersonId> =
            slot.people.iter().map(|(p, _)| p).filter(|p| !slot.checked_in.contains(*p)).cloned().collect();
        slot.no_show.clone_from(&missing);
        for person in missing {
            self.push_event(at, Event::NoShow { slot: guid, person });
        }
    }

    fn start_slot(&mut self, index: usize, at: Millis) {
        if self.state.slots[index].status == SlotStatus::Scheduled && !self.state.slots[index].is_break {
            // Started before its backstage opened (a manual start): open it now, so every slot passes through it.
            self.run_due(Due::Backstage(index), at);
        }
        if !self.state.slots[index].is_break {
            self.check_no_show(index, at);
        }
        let offsets = self.reminder_offsets().len();
        let stage = self.state.stage.clone();
        let slot = &mut self.state.slots[index];
        slot.reminders_done = u32::try_from(offsets).unwrap_or(u32::MAX);
        slot.status = SlotStatus::Active;
        slot.actual_start = Some(at);
        let guid = slot.guid;
        let is_break = slot.is_break;
        let people = slot.people.clone();
        let checked_in = slot.checked_in.clone();

        // The no-show ladder: hosts (or, without hosts, anyone) checked in, else a standby host, else the fallback.
        let leads: Vec<&PersonId> = people.iter().filter(|(_, role)| role.leads()).map(|(p, _)| p).collect();
        let present = |p: &PersonId| checked_in.contains(p);
        let missing_lead = !is_break
            && if leads.is_empty() {
                !people.iter().any(|(p, _)| present(p))
            } else {
                !leads.iter().any(|p| present(p))
            };
        let substitute = if missing_lead {
            stage.standby_hosts.iter().find(|p| present(p) && !people.iter().any(|(q, _)| q == *p)).cloned()
        } else {
            None
        };
        slot.substitute.clone_from(&substitute);
        let fallback = missing_lead && substitute.is_none();

        let mut incoming: Vec<(PersonId, bool)> =
            people.iter().filter(|(p, _)| present(p)).map(|(p, role)| (p.clone(), role.moderates())).collect();
        if let Some(substitute) = &substitute {
            incoming.push((substitute.clone(), true));
        }
        let previous = self.state.active;
        if let Some(previous) = previous
            && let Some(previous_index) = self.state.slots.iter().position(|s| s.guid == previous)
        {
            let previous_slot = &mut self.state.slots[previous_index];
            previous_slot.status = SlotStatus::Completed;
            previous_slot.actual_end = Some(at);
            previous_slot.end = previous_slot.end.min(at).max(previous_slot.start);
            previous_slot.overrun = false;
        }
        self.state.active = Some(guid);
        let stop_fallback = !incoming.is_empty() && !fallback;
        self.hand_over(at, previous, Some(guid), &incoming, stop_fallback);
        if let Some(previous) = previous {
            self.push_event(at, Event::SlotEnded { slot: previous });
        }
        if !is_break {
            self.push_action(at, Action::CloseBackstage { slot: guid });
        }
        self.push_event(at, Event::SlotStarted { slot: guid });
        if let Some(substitute) = substitute {
            self.push_event(at, Event::Substituted { slot: guid, substitute });
        }
        if fallback {
            self.run_empty_policy(at);
            self.push_event(at, Event::Fallback { slot: Some(guid), reason: FallbackReason::NoShow });
        }
    }

    /// One handover to `incoming` (person, moderates): demotes the rest of the scheduler's stage, rotates the
    /// session moderators, and (when `stop_fallback`) stops what the empty policy started.
    fn hand_over(
        &mut self,
        at: Millis,
        from: Option<SlotGuid>,
        to: Option<SlotGuid>,
        incoming: &[(PersonId, bool)],
        stop_fallback: bool,
    ) {
        let shift_people: BTreeSet<PersonId> = self
            .state
            .shifts
            .iter()
            .filter(|run| run.started && !run.ended)
            .map(|run| run.shift.person.clone())
            .collect();
        let incoming_set: BTreeSet<&PersonId> = incoming.iter().map(|(p, _)| p).collect();
        let mut outgoing = self.state.on_stage.clone();
        let house_host = if stop_fallback { self.state.house_host.take() } else { None };
        outgoing.extend(house_host);
        let demote: Vec<PersonId> = outgoing
            .into_iter()
            .filter(|p| {
                !incoming_set.contains(p) && !shift_people.contains(p) && self.state.house_host.as_ref() != Some(p)
            })
            .collect();
        let new_moderators: BTreeSet<PersonId> = incoming
            .iter()
            .filter(|(p, moderates)| *moderates && !shift_people.contains(p))
            .map(|(p, _)| p.clone())
            .collect();
        let promote: Vec<PersonId> =
            incoming.iter().map(|(p, _)| p).filter(|p| !self.state.on_stage.contains(*p)).cloned().collect();
        let moderators_add: Vec<PersonId> =
            new_moderators.iter().filter(|p| !self.state.session_moderators.contains(*p)).cloned().collect();
        let moderators_remove: Vec<PersonId> = self
            .state
            .session_moderators
            .iter()
            .filter(|p| !new_moderators.contains(*p) && !shift_people.contains(*p))
            .cloned()
            .collect();
        self.state.on_stage = incoming.iter().map(|(p, _)| p.clone()).collect();
        self.state.session_moderators = new_moderators;
        let record = to
            .and_then(|guid| self.state.slots.iter().find(|s| s.guid == guid))
            .filter(|slot| !slot.is_break)
            .map(|slot| slot.record);
        self.push_action(
            at,
            Action::Handover(Handover { from, to, demote, promote, moderators_add, moderators_remove, record }),
        );
        if stop_fallback {
            if self.state.filler {
                self.state.filler = false;
                self.push_action(at, Action::StopFiller);
            }
            if self.state.open_mic {
                self.state.open_mic = false;
                self.push_action(at, Action::CloseMic);
            }
            self.state.silent = false;
            self.state.last_heard = at;
        } else if from.is_none() && !self.state.stage.always_on {
            // The dead-air watch starts with the slot.
            self.state.last_heard = at;
        }
    }

    fn end_active(&mut self, at: Millis, status: SlotStatus) {
        let Some(index) = self.active_index() else { return };
        let slot = &mut self.state.slots[index];
        slot.status = status;
        slot.actual_end = Some(at);
        slot.end = slot.end.min(at).max(slot.start);
        slot.overrun = false;
        let guid = slot.guid;
        self.state.active = None;
        // Between slots only an always-on stage keeps what the empty policy started.
        let stop_fallback = !self.state.stage.always_on;
        self.hand_over(at, Some(guid), None, &[], stop_fallback);
        if status == SlotStatus::Completed {
            self.push_event(at, Event::SlotEnded { slot: guid });
        }
    }

    fn cancel_pending(&mut self, index: usize, at: Millis, reason: CancelReason) {
        let slot = &mut self.state.slots[index];
        let was_backstage = slot.status == SlotStatus::Backstage;
        slot.status = SlotStatus::Canceled;
        slot.actual_end = Some(at);
        let guid = slot.guid;
        if was_backstage {
            self.push_action(at, Action::CloseBackstage { slot: guid });
        }
        self.push_event(at, Event::SlotCanceled { slot: guid, reason });
    }

    /// Pushes the slots after `index` so none starts before the one before it ends: gaps absorb the drift, a break
    /// shrinks (and one pushed over entirely is canceled as absorbed), a session moves whole.
    fn cascade(&mut self, index: usize, at: Millis) {
        let mut edge = self.state.slots[index].end;
        for next in index + 1..self.state.slots.len() {
            let slot = &mut self.state.slots[next];
            if !slot.status.is_pending() {
                continue;
            }
            if slot.start >= edge {
                break;
            }
            let guid = slot.guid;
            if slot.is_break {
                if edge >= slot.end {
                    self.cancel_pending(next, at, CancelReason::Absorbed);
                    continue;
                }
                slot.start = edge;
                let (start, end) = (slot.start, slot.end);
                self.push_event(at, Event::SlotMoved { slot: guid, start, end });
                break;
            }
            let drift = edge.saturating_sub(slot.start);
            slot.start = edge;
            slot.end = slot.end.saturating_add(drift);
            edge = slot.end;
            let (start, end) = (slot.start, slot.end);
            self.push_event(at, Event::SlotMoved { slot: guid, start, end });
        }
        self.resort();
    }

    fn run_empty_policy(&mut self, at: Millis) {
        self.state.silent = true;
        match self.state.stage.empty.clone() {
            EmptyPolicy::Filler { file } => {
                if !self.state.filler {
                    self.state.filler = true;
                    self.push_action(at, Action::StartFiller { file });
                }
            }
            EmptyPolicy::OpenMic => {
                if !self.state.open_mic {
                    self.state.open_mic = true;
                    self.push_action(at, Action::OpenMic);
                }
            }
            EmptyPolicy::HouseHost { identity } => {
                if self.state.house_host.is_none() && !self.state.on_stage.contains(&identity) {
                    self.state.house_host = Some(identity.clone());
                    self.push_action(at, Action::CallHouseHost { identity });
                }
            }
            EmptyPolicy::Nothing => {}
        }
    }

    fn start_shift(&mut self, index: usize, at: Millis) {
        let already = self.on_shift(&self.state.shifts[index].shift.person);
        let run = &mut self.state.shifts[index];
        run.started = true;
        let (id, person, checked_in, start) =
            (run.shift.id.clone(), run.shift.person.clone(), run.checked_in, run.shift.start);
        if !already && !self.state.session_moderators.contains(&person) {
            self.push_action(at, Action::GrantModerator { person: person.clone() });
        }
        // A session made them a moderator; from now on the shift holds the right.
        self.state.session_moderators.remove(&person);
        self.push_event(at, Event::ShiftStarted { shift: id.clone(), person: person.clone() });
        if !checked_in {
            let backups: Vec<PersonId> = self
                .state
                .shifts
                .iter()
                .filter(|run| {
                    run.shift.role == ShiftRole::Backup
                        && run.shift.person != person
                        && run.shift.start <= start
                        && start < run.shift.end
                })
                .map(|run| run.shift.person.clone())
                .collect();
            self.push_event(at, Event::ShiftMissed { shift: id, person, backups });
        }
    }

    fn end_shift(&mut self, index: usize, at: Millis) {
        let run = &mut self.state.shifts[index];
        run.ended = true;
        let (id, person) = (run.shift.id.clone(), run.shift.person.clone());
        if !self.on_shift(&person) {
            if self.state.on_stage.contains(&person) && self.active_moderates(&person) {
                // Still a moderator of the running slot: the session holds the right until its handover.
                self.state.session_moderators.insert(person.clone());
            } else {
                self.push_action(at, Action::RevokeModerator { person: person.clone() });
            }
        }
        self.push_event(at, Event::ShiftEnded { shift: id, person });
    }

    fn active_moderates(&self, person: &PersonId) -> bool {
        let Some(index) = self.active_index() else { return false };
        let slot = &self.state.slots[index];
        slot.substitute.as_ref() == Some(person) || slot.people.iter().any(|(p, role)| p == person && role.moderates())
    }

    fn push_action(&mut self, at: Millis, action: Action) {
        self.push(at, Item::Action(action));
    }

    fn push_event(&mut self, at: Millis, event: Event) {
        self.push(at, Item::Event(event));
    }

    fn push(&mut self, at: Millis, item: Item) {
        self.state.output_seq = self.state.output_seq.saturating_add(1);
        self.state.outputs.push_back(Output { seq: self.state.output_seq, at, item });
    }
}
