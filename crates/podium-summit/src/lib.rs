//! The pure summit scheduler: the schedule of a summit and the run-time state machine of each of its stages.
//!
//! # What it does
//!
//! - **The schedule model** ([`model`]): a [`Summit`] (with its IANA time zone), [`Stage`]s (each runs in one
//!   persistent room, with its backstage lead T − N, check-in deadline T − k, [`OverrunPolicy`], [`EmptyPolicy`],
//!   dead-air threshold, `min_moderators`, standby hosts and reminder offsets), [`Person`]s, [`Session`]s (people
//!   with [`SessionRole`]s, a [`SessionState`], optionally a series), [`Slot`]s (a session occurrence or a break,
//!   with a GUID that is uuid v5 of the session code and occurrence index, so stable across releases) and
//!   [`Shift`]s. [`Schedule`] is the work in progress; all its edits validate and return a [`ScheduleError`].
//!   Instants are UTC milliseconds ([`Millis`]).
//! - **Series** ([`rrule`]): an RFC 5545 RRULE subset (`FREQ=DAILY|WEEKLY`, `INTERVAL`, `COUNT`, `UNTIL`, `BYDAY`,
//!   `BYHOUR`, `BYMINUTE`, `WKST`), evaluated in the summit's zone with the DST rule below.
//! - **Releases** ([`release`]): [`Releases::release`] snapshots the WIP as an immutable, numbered [`Release`]
//!   with a pretalx-style [`Diff`] from the previous one (new, canceled, moved, changed), [`Warning`]s (a stage
//!   overlap is fatal and refuses the release; double-booked people, under-moderated slots and gaps on an
//!   always-on stage are not), rollback, and per-slot iCalendar `SEQUENCE`s (the number of releases in which the
//!   slot's time, stage or cancellation changed). A released slot that is canceled, or that leaves the WIP, stays
//!   in every later release with `canceled` set.
//! - **The run** ([`run`]): a [`StageRun`] per stage, built from a release's [`StagePlan`], takes time and
//!   inputs and gives [`Action`]s for the hub (open backstage, hand over, grant and revoke moderators, filler, open
//!   mic, house host, reminders) and [`Event`]s for webhooks.
//!
//! - **Import** ([`import`]): [`import_frab`] reads a pretalx/frab `schedule.json` into a [`Schedule`] (stages from
//!   rooms, with deterministic persistent room names; people; sessions; slots), with the display data the model
//!   does not hold ([`Details`]: room names, abstracts, tracks, URLs) and each slot's source `guid`/`id`
//!   ([`Imported::sources`]: Podium slot GUIDs are always derived, uuid v5 of summit id and session code, so the
//!   source GUIDs are kept beside them, not as them). [`export_podium_json`] / [`import_podium_json`] are Podium's
//!   own versioned JSON of a schedule (the serde of [`Schedule`], validated on import).
//! - **iCalendar export** ([`ical`]): [`export_ical`] writes a [`Release`] as RFC 5545 text for the whole summit,
//!   one stage, one person or a subscriber's set of slots ([`Filter`]): one VEVENT per concrete slot, `UID` =
//!   `{slot guid}@{host}`, UTC `DTSTART`/`DTEND`, `SEQUENCE` = the slot's counter, canceled slots kept as
//!   `STATUS:CANCELLED`, a stable [`PRODID`] and `REFRESH-INTERVAL` (RFC 7986). [`last_modified`] gives each slot's
//!   `LAST-MODIFIED` from the release history.
//!
//! # What it does not do
//!
//! No IO, no async, no clock reads, no randomness: time is an input (the export's `DTSTAMP` too). It never panics
//! on any input; a refused input returns an error and changes nothing. The tz database is jiff's bundled copy,
//! never the host's. It does not fetch schedules, serve feeds, persist, deliver webhooks or touch rooms: the hub
//! does, from the values here (all serde).
//!
//! # The run-loop contract
//!
//! In the `quinn-proto` / `podium-room` style:
//!
//! 1. Build a run with [`StageRun::new`] (a [`Release::stage_plan`] and `now`), or resume one with
//!    [`StageRun::from_state`].
//! 2. Feed an input: [`StageRun::handle_timeout`], [`StageRun::handle_check_in`], [`StageRun::handle_speaking`]
//!    (a real, unmuted speaker was heard; never the filler), [`StageRun::handle_start`], [`StageRun::handle_end`],
//!    [`StageRun::handle_extend`], [`StageRun::handle_cancel`], [`StageRun::handle_release`] (a new release). Every
//!    input first runs everything due up to its `now`, then applies itself.
//! 3. Drain [`StageRun::poll_output`] until `None`, doing the actions in order. Each [`Output`] carries a per-stage
//!    `seq` and `at`, the instant it was due (earlier than `now` after a jump).
//! 4. Persist [`StageRun::state`] if wanted, wait until [`StageRun::poll_timeout`] or the next input, and go to 2.
//!
//! # The slot lifecycle
//!
//! SCHEDULED → BACKSTAGE at T − `backstage_lead_ms` ([`Action::OpenBackstage`]) → at T − `checkin_deadline_ms` each
//! of its people not checked in is an [`Event::NoShow`] → ACTIVE at T: one [`Action::Handover`] from the running
//! slot (which completes) to it → COMPLETED at its end (a handover to nobody, unless the next slot starts then),
//! or CANCELED. Breaks skip the backstage, check-in and reminders. Reminders: [`Action::Remind`] at T − each of the
//! stage's offsets (session slots). Overrun: [`OverrunPolicy`] (hard stop: ends at its end; soft stop: overruns into
//! free time up to the grace; cascade: `extend` pushes later slots until gaps and breaks absorb the drift).
//!
//! **No-show ladder.** At T, a slot with hosts (host, co-host) none of whom checked in, or without hosts and with
//! nobody checked in, is handed to the first standby host checked in for it ([`Event::Substituted`]); without one,
//! the handover promotes whoever did check in and the stage's [`EmptyPolicy`] runs ([`Event::Fallback`]). A late
//! arrival goes on stage at once ([`Action::Promote`]).
//!
//! **Never dead air.** While a slot is active (or always, on an `always_on` stage), `dead_air_ms` without
//! [`StageRun::handle_speaking`] runs the empty policy: [`Action::StartFiller`] (stopped by [`Action::StopFiller`]
//! the moment someone speaks), [`Action::OpenMic`] or [`Action::CallHouseHost`] (until the next handover that puts
//! someone on stage). The stage is never closed.
//!
//! **Shifts.** At a shift's start [`Action::GrantModerator`] (and [`Event::ShiftMissed`], naming the backups on
//! duty, if its person has not checked in; check-in opens `backstage_lead_ms` before); at its end
//! [`Action::RevokeModerator`], unless another of their shifts is running or the running slot still makes them a
//! moderator (its handover then removes the right). Handovers never touch shift moderators.
//!
//! # Invariants
//!
//! - At most one slot of a stage is ACTIVE, and it is [`StageRun::active`]: a slot's start completes the running
//!   one in the same handover.
//! - Every slot goes through its transitions in order (SCHEDULED → BACKSTAGE → ACTIVE → COMPLETED for sessions), and
//!   each slot that became ACTIVE had exactly one handover into it, in time order: outputs are produced in
//!   non-decreasing `at`.
//! - Same inputs, same outputs and state (no hidden input); [`StageRun::state`] → serde → [`StageRun::from_state`]
//!   continues exactly as the original would.
//! - A release never has overlapping live slots on a stage; slot GUIDs never change across releases.
//!
//! # The DST rule
//!
//! Series are evaluated in local time and then made instants; an instance in a DST gap is **moved later by the
//! length of the gap** (RFC 5545 §3.3.10 drops it; [`GapRule::Skip`] does that on request), one in a DST overlap
//! takes the first occurrence. A daily 02:30 Europe/Berlin session runs exactly once every day. Slot lengths are
//! absolute: a session across a DST change lasts its duration. See [`rrule`].
//!
//! # The clock rule
//!
//! Time never goes back: every input's `now` is taken as `max(now, latest now)`, so a clock stepping back delays
//! nothing already due and repeats nothing.
//!
//! # The jump rule
//!
//! A forward jump skips nothing. Everything due up to `now` runs in order, each at its due time (`at`): a slot
//! whose whole window was jumped over is reported BACKSTAGE, no-show checked, started (its handover) and ended, and
//! is COMPLETED, never silently missed; the hub sees that `at` is past and may skip the media part. The same
//! holds for slots a release installs in the past and for a run built after its first slots: their transitions run
//! at once, at the run's current time.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod ical;
pub mod import;
pub mod model;
pub mod release;
pub mod rrule;
pub mod run;

pub use ical::{Filter, IcalError, IcalOptions, PRODID, SlotUrl, export_ical, last_modified};
pub use import::{
    Details, ImportError, ImportOptions, Imported, SessionInfo, SourceSlot, export_podium_json, import_frab,
    import_podium_json,
};
pub use model::{
    EmptyPolicy, MAX_DURATION, MAX_INSTANT, Millis, OverrunPolicy, PODIUM_NAMESPACE, Person, PersonId, Recurrence,
    Schedule, ScheduleError, Session, SessionCode, SessionRole, SessionState, Shift, ShiftId, ShiftRole, Slot,
    SlotGuid, SlotKind, Stage, StageId, Summit,
};
pub use release::{Diff, Moved, PlannedSlot, Release, ReleaseError, ReleasedSlot, Releases, StagePlan, Warning};
pub use rrule::{Frequency, GapRule, MAX_INSTANCES, RRule, Series, local_time};
pub use run::{
    Action, CancelReason, Event, FallbackReason, Handover, Item, Output, RunError, RunState, ShiftRun, SlotRun,
    SlotStatus, StageRun,
};

#[cfg(test)]
mod tests;
