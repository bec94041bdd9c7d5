//! The scheduler runner: runs every summit's stages on the hub that holds the summit's lease.
//!
//! # Design
//!
//! Every hub runs one runner task. Each tick (every [`TICK`], or at once when an admin request wakes it) it takes or
//! renews the lease of every summit (`podium_store::summit`); for the summits it holds it:
//!
//! 1. loads what it does not have yet: the latest release, and each stage's record (the [`StageRun`] state, the
//!    outputs polled but not done yet, the people still to promote), or a new run for a stage without one;
//! 2. installs a new release when the schedule document's version moved (`handle_release`);
//! 3. applies the commands of the summit's inbox (start, end, extend, cancel, check in) and leaves their answers;
//! 4. feeds the inputs rooms give: check-ins (who is present in the backstage room) and speech (the stage control
//!    record's `heard`, written by the stage's media hub), then the time;
//! 5. **commits before acting**: the outputs polled are appended to the record's pending list and the records are
//!    written, fenced by the lease (a runner that lost its lease writes nothing and drops the summit);
//! 6. does the pending outputs in order (room commands as the administrator `scheduler`, filler requests through
//!    the stage control record, webhook events), and writes the records again once they are done;
//! 7. sends each stage room its `schedule` view when it changed.
//!
//! # Invariants
//!
//! - **No transition is lost by a failover.** An output is in a committed record before it is acted on and leaves
//!   the record only after; a new lease holder loads the records and does what is still pending. An output may
//!   therefore be done twice (the old holder died between acting and recording): every action is idempotent
//!   (`HandoverDelta` of a stage already so is a no-op; filler tokens are the output's `seq`) and every event's id is
//!   derived from the stage and the output's `seq`, so receivers de-duplicate on `webhook-id`.
//! - A failed action (store or room unavailable) stays at the head of the pending list and is tried again on the next
//!   tick; the ones behind it wait, so actions are done in order. A refusal (the room's rules said no) is logged and
//!   dropped: retrying cannot change it.
//! - The runner never blocks the hub: all of its work is on its own task, and each room command waits at most the
//!   admin API's bounds.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use podium_proto::webhook::SummitEvent;
use podium_proto::{ScheduleView, ScheduledPerson, ScheduledSlot, ServerMessage};
use podium_room::{self as room, ParticipantId};
use podium_store::{CtlField, SummitStore as _};
use podium_summit::{
    Action, Event, Item, Output, PersonId, Release, Releases, RunError, RunState, SlotGuid, SlotStatus, StageRun,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};

use super::rooms::StageRooms;
use super::{Command, CommandResult, SCHEDULE_DOC, Summits, backstage_room};
use crate::webhooks::Hooks;

/// Commands taken from an inbox per tick.
const INBOX_BATCH: usize = 32;
/// Attempts at an action before it is given up (about 30 s of ticks).
const MAX_ATTEMPTS: u32 = 120;

/// A stage's record in the store.
#[derive(Serialize, Deserialize, Clone, Debug)]
struct Record {
    state: RunState,
    /// Outputs polled and committed, not done yet, in order.
    #[serde(default)]
    pending: VecDeque<Output>,
    /// People the scheduler put on stage who were not in the room then: promoted when they are (person → also a
    /// moderator).
    #[serde(default)]
    absent: BTreeMap<String, bool>,
}

/// One stage of a held summit.
struct StageRunning {
    room: String,
    run: StageRun,
    pending: VecDeque<Output>,
    absent: BTreeMap<String, bool>,
    attempts: u32,
    heard_seen: u64,
    view: Option<String>,
    /// Subscribers already reminded for the reminder at the head of `pending` (in memory: a failover reminds
    /// them again, with the same event ids).
    reminded: usize,
    /// The record changed since it was last written.
    dirty: bool,
}

/// A summit this hub holds.
struct Held {
    version: u64,
    release: Option<Arc<Release>>,
    names: Arc<HashMap<String, String>>,
    stages: BTreeMap<String, StageRunning>,
}

/// The runner task's state.
pub(crate) struct Runner {
    summits: Summits,
    rooms: StageRooms,
    hooks: Arc<Hooks>,
    node: String,
    held: HashMap<String, Held>,
    /// The last failure reported per summit and when: the same failure is warned about once a minute at most.
    failures: HashMap<String, (String, std::time::Instant)>,
    clock: super::Clock,
    metrics: crate::metrics::SummitMetrics,
    /// How often it looks (`[summit] tick_ms`).
    tick: Duration,
    /// The summit lease's time to live (`[summit] lease_ms`), renewed every tick.
    lease_ttl: Duration,
}

fn ms_u64(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0)
}

impl Runner {
    pub(crate) fn new(
        summits: Summits,
        rooms: StageRooms,
        hooks: Arc<Hooks>,
        node: String,
        clock: super::Clock,
        config: &crate::config::SummitConfig,
        metrics: crate::metrics::SummitMetrics,
    ) -> Self {
        Self {
            summits,
            rooms,
            hooks,
            node,
            held: HashMap::new(),
            failures: HashMap::new(),
            clock,
            metrics,
            tick: Duration::from_millis(config.tick_ms),
            lease_ttl: Duration::from_millis(config.lease_ms),
        }
    }

    /// Runs until `stop`, then gives the leases up.
    pub(crate) async fn run(mut self, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
        loop {
            self.tick().await;
            tokio::select! {
                _ = stop.changed() => break,
                () = wake.notified() => {}
                () = tokio::time::sleep(self.tick) => {}
            }
        }
        for id in self.held.keys() {
            let _ = self.summits.unlease(id, &self.node).await;
        }
    }

    async fn tick(&mut self) {
        let ids = match self.summits.summit_ids().await {
            Ok(ids) => ids,
            Err(e) => {
                debug!(error = %e, "listing summits failed");
                return;
            }
        };
        self.held.retain(|id, _| ids.contains(id));
        for id in &ids {
            let id = id.clone();
            match self.summits.lease(&id, &self.node, self.lease_ttl).await {
                Ok(true) => match self.tick_summit(&id).await {
                    Ok(()) => {
                        self.failures.remove(&id);
                    }
                    Err(e) => {
                        let now = std::time::Instant::now();
                        let repeat = self
                            .failures
                            .get(&id)
                            .is_some_and(|(last, at)| *last == e && now.duration_since(*at) < Duration::from_secs(60));
                        if repeat {
                            debug!(summit = %id, error = %e, "the summit's run failed again; retrying");
                        } else {
                            warn!(summit = %id, error = %e, "the summit's run failed on this hub; retrying");
                            self.failures.insert(id.clone(), (e, now));
                        }
                        self.held.remove(&id);
                    }
                },
                Ok(false) => {
                    if self.held.remove(&id).is_some() {
                        info!(summit = %id, "another hub runs the summit now");
                    }
                }
                Err(e) => debug!(summit = %id, error = %e, "summit lease failed"),
            }
        }
        self.metrics.running.set(i64::try_from(self.held.len()).unwrap_or(i64::MAX));
    }

    async fn tick_summit(&mut self, id: &str) -> Result<(), String> {
        let now = self.clock.now();
        if !self.held.contains_key(id) {
            let held = self.load(id, now).await?;
            info!(summit = %id, stages = held.stages.len(), "running the summit on this hub");
            self.held.insert(id.to_owned(), held);
        }
        self.install_release(id, now).await?;
        self.apply_inbox(id, now).await;
        self.feed_rooms(id).await;
        let Some(held) = self.held.get_mut(id) else { return Ok(()) };
        let now = self.clock.now();
        for stage in held.stages.values_mut() {
            stage.run.handle_timeout(now);
            poll(stage);
        }
        if !self.commit(id).await? {
            return Err("lost the lease".into());
        }
        self.act(id).await;
        if !self.commit(id).await? {
            return Err("lost the lease".into());
        }
        self.publish_views(id).await;
        Ok(())
    }

    /// Loads a summit's latest release and stage records.
    async fn load(&self, id: &str, now: i64) -> Result<Held, String> {
        let doc = self.summits.doc_get(id, SCHEDULE_DOC).await.map_err(|e| e.to_string())?;
        let records = self.summits.runs_get(id).await.map_err(|e| e.to_string())?;
        let (version, releases) = match doc {
            Some(doc) => (doc.version, serde_json::from_str::<Releases>(&doc.body).map_err(|e| e.to_string())?),
            None => return Ok(Held { version: 0, release: None, names: Arc::default(), stages: BTreeMap::new() }),
        };
        let release = releases.latest().cloned().map(Arc::new);
        let mut held = Held { version, release: None, names: Arc::default(), stages: BTreeMap::new() };
        for (stage, text) in records {
            match serde_json::from_str::<Record>(&text) {
                Ok(record) => match StageRun::from_state(record.state) {
                    Ok(run) => {
                        let room = run.state().stage.room.clone();
                        held.stages.insert(
                            stage,
                            StageRunning {
                                room,
                                run,
                                pending: record.pending,
                                absent: record.absent,
                                attempts: 0,
                                heard_seen: 0,
                                reminded: 0,
                                view: None,
                                dirty: false,
                            },
                        );
                    }
                    Err(e) => warn!(summit = %id, stage, error = %e, "a stored stage run is invalid; starting it anew"),
                },
                Err(e) => warn!(summit = %id, stage, error = %e, "a stored stage record is unreadable; starting anew"),
            }
        }
        if let Some(release) = release {
            self.adopt_release(id, &mut held, release, now).await;
        }
        Ok(held)
    }

    /// Installs a new release if the schedule document moved.
    async fn install_release(&mut self, id: &str, now: i64) -> Result<(), String> {
        let version = self.summits.doc_version(id, SCHEDULE_DOC).await.map_err(|e| e.to_string())?;
        let Some(held) = self.held.get(id) else { return Ok(()) };
        if version == held.version {
            return Ok(());
        }
        let Some(doc) = self.summits.doc_get(id, SCHEDULE_DOC).await.map_err(|e| e.to_string())? else {
            return Ok(());
        };
        let releases = serde_json::from_str::<Releases>(&doc.body).map_err(|e| e.to_string())?;
        let Some(mut held) = self.held.remove(id) else { return Ok(()) };
        held.version = doc.version;
        match releases.latest().cloned() {
            Some(release) if held.release.as_ref().is_none_or(|r| r.seq != release.seq) => {
                self.adopt_release(id, &mut held, Arc::new(release), now).await;
            }
            _ => {}
        }
        self.held.insert(id.to_owned(), held);
        Ok(())
    }

    /// Gives every stage of `release` its plan: a new run, or `handle_release` of the running one (unless it runs
    /// that release already, as after a failover). Makes sure the stage and backstage rooms exist.
    async fn adopt_release(&self, id: &str, held: &mut Held, release: Arc<Release>, now: i64) {
        let names: HashMap<String, String> =
            release.schedule.people().values().map(|p| (p.id.as_str().to_owned(), p.name.clone())).collect();
        held.names = Arc::new(names);
        for stage_id in release.stages.keys() {
            let plan = match release.stage_plan(stage_id) {
                Ok(plan) => plan,
                Err(e) => {
                    warn!(summit = %id, stage = stage_id.as_str(), error = %e, "a stage's plan is invalid");
                    continue;
                }
            };
            let room = plan.stage.room.clone();
            for r in [room.clone(), backstage_room(&room)] {
                if let Err(e) = self.rooms.ensure(r.as_str()).await {
                    warn!(summit = %id, room = %r, error = %e, "creating a stage room failed");
                }
            }
            match held.stages.get_mut(stage_id.as_str()) {
                Some(running) if running.run.release_seq() == release.seq => {}
                Some(running) => {
                    if let Err(e) = running.run.handle_release(plan, now) {
                        warn!(summit = %id, stage = stage_id.as_str(), error = %e, "installing a release failed");
                    }
                    running.room = room;
                    poll(running);
                }
                None => match StageRun::new(plan, now) {
                    Ok(run) => {
                        let mut running = StageRunning {
                            room,
                            run,
                            pending: VecDeque::new(),
                            absent: BTreeMap::new(),
                            attempts: 0,
                            heard_seen: 0,
                            reminded: 0,
                            view: None,
                            dirty: true,
                        };
                        poll(&mut running);
                        held.stages.insert(stage_id.as_str().to_owned(), running);
                    }
                    Err(e) => warn!(summit = %id, stage = stage_id.as_str(), error = %e, "starting a stage failed"),
                },
            }
        }
        held.release = Some(release);
    }

    /// Applies the inbox's commands and leaves their answers.
    async fn apply_inbox(&mut self, id: &str, now: i64) {
        let commands = match self.summits.inbox_take(id, INBOX_BATCH).await {
            Ok(c) => c,
            Err(e) => {
                debug!(summit = %id, error = %e, "reading the summit inbox failed");
                return;
            }
        };
        for text in commands {
            let Ok(command) = serde_json::from_str::<Command>(&text) else {
                warn!(summit = %id, "an unreadable summit command was dropped");
                continue;
            };
            let result = match self.held.get_mut(id) {
                Some(held) => apply(held, &command.kind, now),
                None => CommandResult::error("not_found", "the summit is not running"),
            };
            if let Some(held) = self.held.get_mut(id)
                && let Some(stage) = held.stages.get_mut(command.kind.stage())
            {
                poll(stage);
            }
            let body = serde_json::to_string(&result).unwrap_or_default();
            if let Err(e) = self.summits.result_put(id, &command.id, &body).await {
                debug!(summit = %id, error = %e, "leaving a command's answer failed");
            }
        }
    }

    /// Check-ins from the backstage rooms, speech from the stage control records, and the people to promote who
    /// have joined the stage room since.
    async fn feed_rooms(&mut self, id: &str) {
        let Some(held) = self.held.get_mut(id) else { return };
        for stage in held.stages.values_mut() {
            let state = stage.run.state();
            let waiting = state.slots.iter().any(|s| matches!(s.status, SlotStatus::Backstage | SlotStatus::Active))
                || state.shifts.iter().any(|s| !s.ended && !s.checked_in);
            if waiting {
                // One read of the backstage: who is there checks in, and the expected ones take its stage (the
                // mic check), as far as their tokens allow.
                let backstage = backstage_room(&stage.room);
                match self.rooms.present(&backstage).await {
                    Ok(present) => {
                        for (who, _) in &present {
                            check_in(stage, who, self.clock.now());
                        }
                        let expected = expected_backstage(stage.run.state());
                        let promote: Vec<ParticipantId> = present
                            .into_iter()
                            .filter(|(who, role)| *role == room::Role::Audience && expected.contains(who.as_str()))
                            .map(|(who, _)| who)
                            .collect();
                        if !promote.is_empty() {
                            let change = Change { promote, ..Change::default() };
                            let done = match fitted(&self.rooms, &backstage, change).await {
                                // Everyone left out (audience-only tokens): nothing to ask.
                                Ok((room::Command::HandoverDelta { promote, .. }, _)) if promote.is_empty() => Ok(()),
                                Ok((command, _)) => self.rooms.command(&backstage, command).await.map(drop),
                                Err(e) => Err(e),
                            };
                            if let Err(e) = done {
                                debug!(room = %backstage, error = %e, "putting checked-in people on the backstage stage failed");
                            }
                        }
                    }
                    Err(e) => debug!(room = %stage.room, error = %e, "reading the backstage failed"),
                }
            }
            match self.summits.ctl_get(&stage.room).await {
                Ok(ctl) => {
                    if let Some(heard) = ctl.heard_ms
                        && heard > stage.heard_seen
                    {
                        stage.heard_seen = heard;
                        // `heard` is real time; the run is on the scheduler's clock.
                        stage.run.handle_speaking(self.clock.now());
                        stage.dirty = true;
                        poll(stage);
                    }
                }
                Err(e) => debug!(room = %stage.room, error = %e, "reading the stage control record failed"),
            }
            let absent: Vec<String> = stage.absent.keys().cloned().collect();
            let asked: Vec<&str> = absent.iter().map(String::as_str).collect();
            if !absent.is_empty()
                && let Ok(present) = self.rooms.present_among(&stage.room, &asked).await
            {
                let here: Vec<(String, bool)> = stage
                    .absent
                    .iter()
                    .filter(|(p, _)| present.iter().any(|q| q.id.as_str() == p.as_str()))
                    .map(|(p, m)| (p.clone(), *m))
                    .collect();
                for (person, moderator) in here {
                    match promote_person(&self.rooms, &stage.room, &person, moderator).await {
                        Ok(_) => {
                            stage.absent.remove(&person);
                            stage.dirty = true;
                        }
                        Err(e) => debug!(room = %stage.room, person, error = %e, "promoting a late arrival failed"),
                    }
                }
            }
        }
    }

    /// Writes the changed records, fenced by the lease; false when the lease is lost.
    async fn commit(&mut self, id: &str) -> Result<bool, String> {
        let Some(held) = self.held.get_mut(id) else { return Ok(true) };
        let mut records = Vec::new();
        for (stage_id, stage) in &mut held.stages {
            if !stage.dirty {
                continue;
            }
            let record = Record {
                state: stage.run.state().clone(),
                pending: stage.pending.clone(),
                absent: stage.absent.clone(),
            };
            records.push((stage_id.clone(), serde_json::to_string(&record).map_err(|e| e.to_string())?));
        }
        if records.is_empty() {
            return Ok(true);
        }
        let written = self.summits.runs_put(id, &self.node, &records).await.map_err(|e| e.to_string())?;
        if written {
            for stage in held.stages.values_mut() {
                stage.dirty = false;
            }
        }
        Ok(written)
    }

    /// Does the pending outputs of every stage, in order.
    async fn act(&mut self, id: &str) {
        let Some(held) = self.held.get_mut(id) else { return };
        let release = held.release.clone();
        for (stage_id, stage) in &mut held.stages {
            while let Some(output) = stage.pending.front().cloned() {
                let done = match &output.item {
                    Item::Action(Action::Remind { slot, offset_ms }) => {
                        match remind(&self.summits, &self.hooks, id, stage_id, stage, &output, *slot, *offset_ms).await
                        {
                            Ok(true) => Ok(()),
                            // The budget of this tick is spent: the rest next tick.
                            Ok(false) => break,
                            Err(e) => Err((true, e)),
                        }
                    }
                    Item::Action(action) => {
                        do_action(&self.rooms, &self.summits, stage, &output, action, self.clock.now()).await
                    }
                    Item::Event(event) => {
                        let data = event_data(id, stage_id, release.as_deref(), &stage.run, &output, event);
                        let event_id = format!("sum_{id}_{stage_id}_{}", output.seq);
                        self.hooks
                            .summit_events(&stage.room, vec![(event_id, event.kind(), data)])
                            .await
                            .map_err(|e| (true, e.to_string()))
                    }
                };
                match done {
                    Ok(()) => {}
                    Err((retry, e)) => {
                        stage.attempts += 1;
                        if retry && stage.attempts < MAX_ATTEMPTS {
                            debug!(summit = %id, stage = %stage_id, seq = output.seq, error = %e, "a scheduler output failed; retrying");
                            break;
                        }
                        warn!(summit = %id, stage = %stage_id, seq = output.seq, error = %e, "a scheduler output was given up");
                        self.metrics.given_up.inc();
                    }
                }
                if let Item::Action(Action::Handover(_)) = &output.item {
                    let late = (self.clock.now() - output.at).max(0);
                    #[allow(clippy::cast_precision_loss)]
                    self.metrics.handover_lateness.observe(late as f64 / 1_000.0);
                }
                self.metrics.outputs.inc();
                stage.attempts = 0;
                stage.pending.pop_front();
                stage.dirty = true;
            }
        }
    }

    /// Sends each stage room its schedule view when it changed.
    async fn publish_views(&mut self, id: &str) {
        let Some(held) = self.held.get_mut(id) else { return };
        for (stage_id, stage) in &mut held.stages {
            let view = view_of(id, stage_id, stage, &held.names, 0);
            let key = serde_json::to_string(&view).unwrap_or_default();
            if stage.view.as_deref() == Some(key.as_str()) {
                continue;
            }
            let mut view = view;
            view.server_time_ms = ms_u64(self.clock.now());
            let frame: Arc<str> = ServerMessage::Schedule(Box::new(view)).to_json().into();
            let mut ok = true;
            for room in [stage.room.clone(), backstage_room(&stage.room)] {
                if let Err(e) = self.summits.ctl_set(&room, CtlField::Schedule, Some(&frame)).await {
                    debug!(room = %room, error = %e, "storing the schedule view failed");
                    ok = false;
                }
                self.rooms.schedule(&room, Arc::clone(&frame));
            }
            if ok {
                stage.view = Some(key);
            }
        }
    }
}

/// `slot.reminder` events per tick and stage, at most: the reminder fan-out's rate cap (400 per second per stage).
const REMINDERS_PER_TICK: usize = 100;

/// Queues the `slot.reminder` of one reminder output for the slot's subscribers, [`REMINDERS_PER_TICK`] at a time;
/// true when all are queued.
#[allow(clippy::too_many_arguments)]
async fn remind(
    summits: &Summits,
    hooks: &Hooks,
    summit: &str,
    stage_id: &str,
    stage: &mut StageRunning,
    output: &Output,
    slot: SlotGuid,
    offset_ms: i64,
) -> Result<bool, String> {
    let subs: BTreeMap<String, BTreeSet<SlotGuid>> = match summits.doc_get(summit, super::SUBSCRIPTIONS_DOC).await {
        Ok(Some(d)) => serde_json::from_str(&d.body).unwrap_or_default(),
        Ok(None) => BTreeMap::new(),
        Err(e) => return Err(e.to_string()),
    };
    let following: Vec<&String> = subs.iter().filter(|(_, slots)| slots.contains(&slot)).map(|(who, _)| who).collect();
    let batch: Vec<_> = following
        .iter()
        .skip(stage.reminded)
        .take(REMINDERS_PER_TICK)
        .enumerate()
        .map(|(i, who)| {
            let run = stage.run.slots().iter().find(|s| s.guid == slot);
            let data = SummitEvent {
                summit: summit.to_owned(),
                stage: stage_id.to_owned(),
                stage_seq: output.seq,
                due: crate::webhooks::timestamp(ms_u64(output.at)),
                release: stage.run.release_seq(),
                slot: Some(slot.to_string()),
                title: run.map(|s| s.title.clone()),
                start_ms: run.map(|s| ms_u64(s.start)),
                offset_ms: Some(ms_u64(offset_ms)),
                subscriber: Some((*who).clone()),
                ..SummitEvent::default()
            };
            (format!("sum_{summit}_{stage_id}_{}_{}", output.seq, stage.reminded + i), "slot.reminder", data)
        })
        .collect();
    let n = batch.len();
    if n > 0 {
        hooks.summit_events(&stage.room, batch).await.map_err(|e| e.to_string())?;
    }
    stage.reminded += n;
    if stage.reminded >= following.len() {
        stage.reminded = 0;
        return Ok(true);
    }
    Ok(false)
}

/// Moves what the run has to say into the pending list.
fn poll(stage: &mut StageRunning) {
    while let Some(output) = stage.run.poll_output() {
        stage.pending.push_back(output);
        stage.dirty = true;
    }
}

/// Checks `who` in, if the run expects them; quietly otherwise.
fn check_in(stage: &mut StageRunning, who: &ParticipantId, now: i64) {
    let Ok(person) = PersonId::new(who.as_str()) else { return };
    let state = stage.run.state();
    let known = state.slots.iter().any(|s| {
        matches!(s.status, SlotStatus::Backstage | SlotStatus::Active)
            && !s.checked_in.contains(&person)
            && (s.people.iter().any(|(p, _)| *p == person)
                || (s.status == SlotStatus::Backstage && state.stage.standby_hosts.contains(&person)))
    }) || state.shifts.iter().any(|s| s.shift.person == person && !s.ended && !s.checked_in);
    if !known {
        return;
    }
    match stage.run.handle_check_in(&person, now) {
        Ok(()) | Err(RunError::NotExpected) => poll(stage),
        Err(e) => debug!(person = person.as_str(), error = %e, "a check-in was refused"),
    }
}

/// Everyone who may be on the backstage stage now: people of slots in backstage, standby hosts while a slot is in
/// backstage, and moderators on shift (so they hear the next session's mic check). Not the running slot's people:
/// they are on the main stage.
fn expected_backstage(state: &RunState) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut any_backstage = false;
    for slot in &state.slots {
        if slot.status == SlotStatus::Backstage {
            any_backstage = true;
            out.extend(slot.people.iter().map(|(p, _)| p.as_str().to_owned()));
        }
    }
    if any_backstage {
        out.extend(state.stage.standby_hosts.iter().map(|p| p.as_str().to_owned()));
    }
    out.extend(state.shifts.iter().filter(|s| s.started && !s.ended).map(|s| s.shift.person.as_str().to_owned()));
    out
}

fn pid(p: &PersonId) -> ParticipantId {
    ParticipantId::new(p.as_str())
}

/// A stage change the scheduler wants.
#[derive(Default)]
struct Change {
    demote: Vec<ParticipantId>,
    promote: Vec<ParticipantId>,
    moderators_add: Vec<ParticipantId>,
    moderators_remove: Vec<ParticipantId>,
}

/// `change` as one `HandoverDelta`, fitted to what the people's tokens allow (the room refuses a whole transition
/// that gives anyone more than their ceiling): a moderator's role beyond someone's ceiling becomes a speaker's, and
/// someone whose ceiling is the audience is left out (returned, for the log). People not in the room are listed as
/// they are (the room skips them and reports them absent).
async fn fitted(rooms: &StageRooms, room: &str, mut change: Change) -> Result<(room::Command, Vec<String>), String> {
    let asked: Vec<String> =
        change.promote.iter().chain(&change.moderators_add).map(|p| p.as_str().to_owned()).collect();
    let ids: Vec<&str> = asked.iter().map(String::as_str).collect();
    let present = rooms.present_among(room, &ids).await.map_err(|e| format!("unavailable: {e}"))?;
    let ceiling = |p: &ParticipantId| present.iter().find(|q| q.id == *p).map(|q| q.ceiling);
    let mut left_out = Vec::new();
    let mut moderators_add = Vec::new();
    for p in std::mem::take(&mut change.moderators_add) {
        match ceiling(&p) {
            Some(room::Role::Moderator) | None => moderators_add.push(p),
            Some(room::Role::Speaker) => {
                if !change.promote.contains(&p) {
                    change.promote.push(p);
                }
            }
            Some(room::Role::Audience) => left_out.push(p.as_str().to_owned()),
        }
    }
    let mut promote = Vec::new();
    for p in change.promote {
        if ceiling(&p) == Some(room::Role::Audience) {
            left_out.push(p.as_str().to_owned());
        } else {
            promote.push((p, room::Role::Speaker));
        }
    }
    left_out.dedup();
    let command = room::Command::HandoverDelta {
        demote: change.demote,
        promote,
        moderators_add,
        moderators_remove: change.moderators_remove,
    };
    Ok((command, left_out))
}

/// Puts `person` on stage (and makes them a moderator), as their token allows.
async fn promote_person(rooms: &StageRooms, room: &str, person: &str, moderator: bool) -> Result<room::Reply, String> {
    let who = ParticipantId::new(person);
    let change = Change {
        promote: vec![who.clone()],
        moderators_add: if moderator { vec![who] } else { Vec::new() },
        ..Change::default()
    };
    let (command, left_out) = fitted(rooms, room, change).await?;
    if !left_out.is_empty() {
        // Done with them: asking again (each tick) could not change their token.
        warn!(room, person, "a scheduled person's token does not allow the stage; left in the audience");
        return Ok(room::Reply::HandedOver { absent: Vec::new() });
    }
    rooms.command(room, command).await
}

/// Does one action. `Err((retry, why))`: `retry` when it may work later (the store or the room was unavailable).
async fn do_action(
    rooms: &StageRooms,
    summits: &Summits,
    stage: &mut StageRunning,
    output: &Output,
    action: &Action,
    now: i64,
) -> Result<(), (bool, String)> {
    let room = stage.room.clone();
    let refused = |e: String| {
        let retry = e.starts_with("unavailable") || e.starts_with("not_found");
        (retry, e)
    };
    match action {
        Action::OpenBackstage { slot, people } => {
            debug!(room = %room, slot = %slot, people = people.len(), "backstage open");
            Ok(())
        }
        Action::CloseBackstage { slot } => {
            // The slot's people leave the backstage stage (they are on the main stage now, or canceled).
            let people: Vec<ParticipantId> = stage
                .run
                .slots()
                .iter()
                .find(|s| s.guid == *slot)
                .map(|s| s.people.iter().map(|(p, _)| pid(p)).collect())
                .unwrap_or_default();
            if people.is_empty() {
                return Ok(());
            }
            let command = room::Command::HandoverDelta {
                demote: people,
                promote: Vec::new(),
                moderators_add: Vec::new(),
                moderators_remove: Vec::new(),
            };
            rooms.command(&backstage_room(&room), command).await.map(drop).map_err(refused)
        }
        Action::Handover(h) => {
            // A session that must not be recorded: the room becomes unrecordable (stopping a running recording)
            // before its people take the stage; the next recordable session allows it again. A no-op when unchanged.
            if let Some(recordable) = h.record {
                rooms.command(&room, room::Command::SetRecordable { recordable }).await.map_err(refused)?;
            }
            if h.demote.is_empty()
                && h.promote.is_empty()
                && h.moderators_add.is_empty()
                && h.moderators_remove.is_empty()
            {
                return Ok(());
            }
            let change = Change {
                demote: h.demote.iter().map(pid).collect(),
                promote: h.promote.iter().map(pid).collect(),
                moderators_add: h.moderators_add.iter().map(pid).collect(),
                moderators_remove: h.moderators_remove.iter().map(pid).collect(),
            };
            let (command, left_out) = fitted(rooms, &room, change).await.map_err(refused)?;
            if !left_out.is_empty() {
                warn!(room = %room, ?left_out, "scheduled people whose tokens do not allow the stage; left in the audience");
            }
            let reply = rooms.command(&room, command).await.map_err(refused)?;
            for gone in h.demote.iter().chain(&h.moderators_remove) {
                stage.absent.remove(gone.as_str());
            }
            if let room::Reply::HandedOver { absent } = reply {
                for who in absent {
                    let moderator = h.moderators_add.iter().any(|p| p.as_str() == who.as_str());
                    if h.promote.iter().chain(&h.moderators_add).any(|p| p.as_str() == who.as_str()) {
                        stage.absent.insert(who.as_str().to_owned(), moderator);
                    }
                }
            }
            info!(room = %room, from = ?h.from, to = ?h.to, late_ms = now - output.at, "handover");
            Ok(())
        }
        Action::Promote { person, .. } | Action::CallHouseHost { identity: person } => {
            // A late arrival moderates if their session role does; the house host leads the stage.
            let m = match action {
                Action::Promote { moderator, .. } => *moderator,
                _ => true,
            };
            let reply = promote_person(rooms, &room, person.as_str(), m).await.map_err(refused)?;
            if let room::Reply::HandedOver { absent } = reply
                && !absent.is_empty()
            {
                stage.absent.insert(person.as_str().to_owned(), m);
            }
            Ok(())
        }
        Action::GrantModerator { person } => {
            let change = Change { moderators_add: vec![pid(person)], ..Change::default() };
            let (command, left_out) = fitted(rooms, &room, change).await.map_err(refused)?;
            if !left_out.is_empty() {
                warn!(room = %room, person = person.as_str(), "a shift moderator's token does not allow the stage");
                return Ok(());
            }
            let reply = rooms.command(&room, command).await.map_err(refused)?;
            if let room::Reply::HandedOver { absent } = reply
                && !absent.is_empty()
            {
                stage.absent.insert(person.as_str().to_owned(), true);
            }
            Ok(())
        }
        Action::RevokeModerator { person } => {
            stage.absent.remove(person.as_str());
            let who = pid(person);
            let command = room::Command::HandoverDelta {
                demote: vec![who.clone()],
                promote: Vec::new(),
                moderators_add: Vec::new(),
                moderators_remove: vec![who],
            };
            rooms.command(&room, command).await.map(drop).map_err(refused)
        }
        Action::StartFiller { file } => {
            let value = format!("{} {file}", output.seq);
            summits.ctl_set(&room, CtlField::Filler, Some(&value)).await.map_err(|e| (true, e.to_string()))
        }
        Action::StopFiller => summits.ctl_set(&room, CtlField::Filler, None).await.map_err(|e| (true, e.to_string())),
        Action::OpenMic | Action::CloseMic => {
            let command = room::Command::UpdateSettings {
                open_mic: Some(matches!(action, Action::OpenMic)),
                closed: None,
                stage_capacity: None,
                chat: None,
                chat_slow_mode_ms: None,
            };
            match rooms.command(&room, command).await {
                Ok(_) => Ok(()),
                Err(e) if e.starts_with("conflict") => Ok(()),
                Err(e) => Err(refused(e)),
            }
        }
        // Done by `remind`, which has the subscriptions.
        Action::Remind { .. } => Ok(()),
    }
}

/// The webhook data of a stage event.
fn event_data(
    summit: &str,
    stage: &str,
    release: Option<&Release>,
    run: &StageRun,
    output: &Output,
    event: &Event,
) -> SummitEvent {
    let title_of = |guid: &SlotGuid| run.slots().iter().find(|s| s.guid == *guid).map(|s| s.title.clone());
    let start_of = |guid: &SlotGuid| run.slots().iter().find(|s| s.guid == *guid).map(|s| ms_u64(s.start));
    let mut data = SummitEvent {
        summit: summit.to_owned(),
        stage: stage.to_owned(),
        stage_seq: output.seq,
        due: crate::webhooks::timestamp(ms_u64(output.at)),
        release: release.map_or(run.release_seq(), |r| r.seq.min(run.release_seq()).max(run.release_seq())),
        ..SummitEvent::default()
    };
    let slot = |data: &mut SummitEvent, guid: &SlotGuid| {
        data.slot = Some(guid.to_string());
        data.title = title_of(guid);
        data.start_ms = start_of(guid);
    };
    match event {
        Event::ScheduleReleased { seq } => data.release = *seq,
        Event::BackstageOpened { slot: g } | Event::SlotStarted { slot: g } | Event::SlotEnded { slot: g } => {
            slot(&mut data, g)
        }
        Event::SlotOverrun { slot: g, until } => {
            slot(&mut data, g);
            data.until_ms = Some(ms_u64(*until));
        }
        Event::SlotExtended { slot: g, end } => {
            slot(&mut data, g);
            data.end_ms = Some(ms_u64(*end));
        }
        Event::SlotMoved { slot: g, start, end } => {
            slot(&mut data, g);
            data.start_ms = Some(ms_u64(*start));
            data.end_ms = Some(ms_u64(*end));
        }
        Event::SlotCanceled { slot: g, reason } => {
            slot(&mut data, g);
            data.reason = Some(serde_plain(reason));
        }
        Event::CheckedIn { slot: g, person } | Event::NoShow { slot: g, person } => {
            slot(&mut data, g);
            data.person = Some(person.as_str().to_owned());
        }
        Event::Substituted { slot: g, substitute } => {
            slot(&mut data, g);
            data.person = Some(substitute.as_str().to_owned());
        }
        Event::Fallback { slot: g, reason } => {
            if let Some(g) = g {
                slot(&mut data, g);
            }
            data.reason = Some(serde_plain(reason));
        }
        Event::ShiftCheckedIn { shift, person }
        | Event::ShiftStarted { shift, person }
        | Event::ShiftEnded { shift, person } => {
            data.shift = Some(shift.as_str().to_owned());
            data.person = Some(person.as_str().to_owned());
        }
        Event::ShiftMissed { shift, person, backups } => {
            data.shift = Some(shift.as_str().to_owned());
            data.person = Some(person.as_str().to_owned());
            data.backups = backups.iter().map(|p| p.as_str().to_owned()).collect();
        }
    }
    data
}

/// A unit enum's serde name (`manual`, `dead_air`, ...).
fn serde_plain<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// The stage's schedule view (without the server time).
fn view_of(
    summit: &str,
    stage_id: &str,
    stage: &StageRunning,
    names: &HashMap<String, String>,
    server_time_ms: u64,
) -> ScheduleView {
    let slot_view = |s: &podium_summit::SlotRun| ScheduledSlot {
        guid: s.guid.to_string(),
        title: s.title.clone(),
        is_break: s.is_break,
        status: serde_plain(&s.status),
        start_ms: ms_u64(s.start),
        end_ms: ms_u64(s.end),
        people: s
            .people
            .iter()
            .map(|(p, role)| ScheduledPerson {
                id: p.as_str().to_owned(),
                name: names.get(p.as_str()).cloned(),
                role: serde_plain(role),
                checked_in: s.checked_in.contains(p),
            })
            .collect(),
    };
    let slots = stage.run.slots();
    let now = stage.run.active().map(slot_view);
    let next = slots
        .iter()
        .filter(|s| matches!(s.status, SlotStatus::Scheduled | SlotStatus::Backstage))
        .take(3)
        .map(slot_view)
        .collect();
    ScheduleView {
        summit: summit.to_owned(),
        stage: stage_id.to_owned(),
        room: stage.room.clone(),
        backstage: backstage_room(&stage.room),
        release: stage.run.release_seq(),
        now,
        next,
        server_time_ms,
    }
}

/// Applies one inbox command to the held summit.
fn apply(held: &mut Held, kind: &super::CommandKind, now: i64) -> CommandResult {
    use super::CommandKind as K;
    let Some(stage) = held.stages.get_mut(kind.stage()) else {
        return CommandResult::error("not_found", "no such stage in the running release");
    };
    let result = match kind {
        K::Start { .. } => stage.run.handle_start(now).map(|g| CommandResult::slot(g, None)),
        K::End { .. } => stage.run.handle_end(now).map(|g| CommandResult::slot(g, None)),
        K::Extend { ms, .. } => stage.run.handle_extend(*ms, now).map(CommandResult::end),
        K::Cancel { slot, .. } => match slot.parse::<SlotGuid>() {
            Ok(g) => stage.run.handle_cancel(g, now).map(|()| CommandResult::slot(g, None)),
            Err(_) => return CommandResult::error("bad_request", "`slot` is not a slot GUID"),
        },
        K::CheckIn { person, .. } => match PersonId::new(person.as_str()) {
            Ok(p) => stage.run.handle_check_in(&p, now).map(|()| CommandResult::ok()),
            Err(e) => return CommandResult::error("bad_request", &e.to_string()),
        },
    };
    match result {
        Ok(r) => r,
        Err(e) => CommandResult::from_run_error(&e),
    }
}
