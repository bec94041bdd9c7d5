//! Conformance checking: drives a [`Room`] one input at a time and checks, after every input, everything the crate
//! documentation promises. Used by the unit and property tests (`src/tests/`) and by the `room_commands` fuzz
//! target (`crates/podium-fuzz`); not part of the stable API (hidden from the docs).
//!
//! # What is checked after every input
//!
//! - The internal invariants ([`Room::check_invariants`]): indexes agree with the participants, roles within
//!   ceilings, stage within capacity, the audience muted, hands and invitations only on the audience, the empty
//!   timer in step with presence.
//! - Persistence: `Room::from_state(room.state())` round-trips; a store mirror built only from
//!   [`Room::take_changes`] equals `state()`; a replica following only [`Room::apply_changes`] equals the room,
//!   keeps its own invariants and emits nothing.
//! - Sequence numbers: one accepted input that changes state is exactly one transition (`seq + 1`, every event
//!   carries it); refused inputs and no-ops change nothing, emit nothing and keep `seq`; timeouts may run several
//!   transitions in order; `Counts` never increments `seq`.
//! - Outputs: each event goes to the recipients its kind allows; `Publish` is emitted only on change and the set
//!   it builds equals `may_publish` over the room; `Disconnect` only for someone no longer present; `Ended` only
//!   once the room is ended; an ended room refuses every command with `Ended`.
//! - Authority: a command by a non-moderator never changes another participant's role.
//! - Hand queue: no duplicates, audience only, positions are 1-based places, surviving entries keep their order;
//!   the head counts match the room.
//! - Timers: after `handle_timeout(now)` nothing is due at or before `now`.
//!
//! Every check returns `Err` with a message naming what broke; the callers turn it into a test failure or a
//! fuzzer crash. Checking never panics on its own.

use std::collections::{HashMap, HashSet};

use crate::{
    Command, CommandError, Event, Join, Millis, Output, ParticipantId, Recipients, Role, Room, RoomConfig, RoomState,
};

/// Returns `Err(format!(..))` from the enclosing function when the condition is false.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// One input to a room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// [`Room::handle_join`].
    Join(Join),
    /// [`Room::handle_disconnect`].
    Disconnect(ParticipantId),
    /// [`Room::handle_leave`].
    Leave(ParticipantId),
    /// Moves the clock forward by this much, then [`Room::handle_timeout`].
    Advance(Millis),
    /// [`Room::handle_command`] from this participant.
    Command(ParticipantId, Command),
}

/// Checks the persistence mirrors of `room` at time `now` and advances them by the room's pending changes.
///
/// `store` is what a store would hold, built only from [`Room::take_changes`]; `replica` is another hub's copy
/// following only [`Room::apply_changes`]. Both start as `None` and are created from the first changes.
pub fn check_mirrors(
    room: &mut Room,
    config: &RoomConfig,
    now: Millis,
    store: &mut Option<RoomState>,
    replica: &mut Option<Room>,
) -> Result<(), String> {
    room.check_invariants().map_err(|e| format!("invariant broken: {e}\n{:#?}", room.state()))?;
    let state = room.state();
    let restored = Room::from_state(state.clone(), config.clone());
    ensure!(restored.state() == state, "from_state(state()) must round-trip");
    if let Some(changes) = room.take_changes() {
        match replica {
            Some(replica) => {
                ensure!(replica.apply_changes(&changes, now), "the replica follows every transition");
                ensure!(replica.poll_output().is_none(), "applying changes emits nothing");
            }
            None => {
                let created = RoomState::created_by(&changes).ok_or("the first changes create the room")?;
                *replica = Some(Room::from_state(created, config.clone()));
            }
        }
        match store {
            Some(stored) => {
                ensure!(stored.seq == changes.base_seq, "changes must apply to the stored version");
                stored.apply(&changes);
            }
            None => *store = Some(RoomState::created_by(&changes).ok_or("the first changes create the room")?),
        }
    }
    if let Some(stored) = store {
        ensure!(stored == &state, "the store mirror must equal the room");
    }
    if let Some(replica) = replica {
        replica.check_invariants().map_err(|e| format!("replica invariant broken: {e}\n{:#?}", replica.state()))?;
        ensure!(replica.state() == state, "the replica must equal the room");
    }
    Ok(())
}

/// A room under conformance checking: feed it [`Step`]s with [`Checker::step`].
pub struct Checker {
    room: Room,
    config: RoomConfig,
    now: Millis,
    store: Option<RoomState>,
    replica: Option<Room>,
    /// Who may publish, built only from `Publish` outputs.
    publishing: HashSet<ParticipantId>,
}

impl Checker {
    /// A new, empty room named `room` with `config`, at time 0.
    pub fn new(config: RoomConfig) -> Self {
        let room = Room::new("room", config.clone(), 0);
        Self { room, config, now: 0, store: None, replica: None, publishing: HashSet::new() }
    }

    /// The room as it is now.
    pub fn room(&self) -> &Room {
        &self.room
    }

    /// The current time.
    pub fn now(&self) -> Millis {
        self.now
    }

    /// Feeds one input, drains the outputs and checks everything (see the module docs). `Err` names what broke.
    pub fn step(&mut self, step: &Step) -> Result<(), String> {
        let room = &self.room;
        let (seq_before, state_before, roles_before, queue_before) =
            (room.seq(), without_seq(room), roles(room), room.hand_queue());
        let mut is_timeout = false;
        match step {
            Step::Join(join) => {
                let r = self.room.handle_join(self.now, join.clone());
                self.check_mirrors()?;
                match r {
                    Ok(joined) => {
                        ensure!(Some(joined.role) == self.room.role(&join.id), "joined role differs from the room's");
                        ensure!(joined.role <= join.ceiling, "joined above the ceiling");
                    }
                    Err(_) => self.ensure_unchanged(seq_before, &state_before)?,
                }
            }
            Step::Disconnect(who) => {
                self.room.handle_disconnect(self.now, who);
                self.check_mirrors()?;
            }
            Step::Leave(who) => {
                self.room.handle_leave(self.now, who);
                self.check_mirrors()?;
                if !self.room.is_ended() {
                    ensure!(self.room.role(who).is_none(), "{who} still present after leaving");
                }
            }
            Step::Advance(d) => {
                is_timeout = true;
                self.now = self.now.saturating_add(*d);
                self.room.handle_timeout(self.now);
                self.check_mirrors()?;
                if let Some(at) = self.room.poll_timeout() {
                    ensure!(at > self.now, "all work due at {} was done; next at {at}", self.now);
                }
            }
            Step::Command(from, command) => {
                let sender_role = self.room.role(from);
                let ended = self.room.is_ended();
                let r = self.room.handle_command(self.now, from, command.clone());
                self.check_mirrors()?;
                match &r {
                    Err(_) => self.ensure_unchanged(seq_before, &state_before)?,
                    Ok(_) => {
                        ensure!(!ended, "an ended room accepts nothing");
                        ensure!(sender_role.is_some(), "only present participants command");
                        if sender_role != Some(Role::Moderator) {
                            let after = roles(&self.room);
                            for (id, role) in &roles_before {
                                ensure!(
                                    id == from || after.get(id) == Some(role),
                                    "{command:?} by {from} (not a moderator) changed {id}'s role"
                                );
                            }
                        }
                    }
                }
                if ended {
                    ensure!(r == Err(CommandError::Ended), "an ended room answers Ended, got {r:?}");
                }
            }
        }
        self.check_outputs(seq_before, &state_before, is_timeout)?;
        self.check_room(&queue_before)
    }

    fn check_mirrors(&mut self) -> Result<(), String> {
        check_mirrors(&mut self.room, &self.config, self.now, &mut self.store, &mut self.replica)
    }

    fn ensure_unchanged(&mut self, seq: u64, state: &RoomState) -> Result<(), String> {
        ensure!(self.room.seq() == seq, "a refused input moved seq");
        ensure!(&without_seq(&self.room) == state, "a refused input changed the state");
        ensure!(self.room.poll_output().is_none(), "a refused input emits nothing");
        Ok(())
    }

    fn check_outputs(&mut self, seq_before: u64, state_before: &RoomState, is_timeout: bool) -> Result<(), String> {
        let seq = self.room.seq();
        let changed = &without_seq(&self.room) != state_before;
        let out: Vec<Output> = std::iter::from_fn(|| self.room.poll_output()).collect();
        if is_timeout {
            ensure!(seq >= seq_before, "seq went back");
            ensure!(changed || seq == seq_before, "seq moved without a change");
        } else if changed {
            ensure!(seq == seq_before + 1, "one input, one transition: seq {seq_before} -> {seq}");
        } else {
            ensure!(seq == seq_before, "a no-op keeps seq");
            ensure!(out.is_empty(), "a no-op emits nothing: {out:?}");
        }
        let mut last_seq = seq_before;
        for o in &out {
            match o {
                Output::Event { to, seq: s, event } => {
                    match event {
                        Event::Counts(_) => {
                            ensure!(is_timeout && *s >= last_seq && *s <= seq, "Counts at seq {s} out of order")
                        }
                        _ if is_timeout => {
                            ensure!(
                                *s > seq_before && *s >= last_seq && *s <= seq,
                                "timer event at seq {s} out of order"
                            )
                        }
                        _ => ensure!(*s == seq, "every event of a transition carries its seq: {s} != {seq}"),
                    }
                    last_seq = *s;
                    let to_ok = match event {
                        Event::Stage { .. } | Event::Settings(_) | Event::Counts(_) => *to == Recipients::Everyone,
                        Event::ParticipantJoined { .. } | Event::ParticipantLeft { .. } => *to == Recipients::Stage,
                        Event::HandQueue { hands, total } => {
                            ensure!(
                                hands.len() <= self.config.hand_queue_event_limit && hands.len() <= *total,
                                "hand queue event with {} of {total} entries",
                                hands.len()
                            );
                            matches!(to, Recipients::Moderators | Recipients::One(_))
                        }
                        Event::You(_) => matches!(to, Recipients::One(_)),
                        Event::InviteAnswered { .. } => *to == Recipients::Moderators,
                    };
                    ensure!(to_ok, "{event:?} to {to:?}");
                }
                Output::Publish { who, allowed } => {
                    let was = self.publishing.contains(who);
                    ensure!(was != *allowed, "Publish only on change ({who})");
                    if *allowed {
                        self.publishing.insert(who.clone());
                    } else {
                        self.publishing.remove(who);
                    }
                }
                Output::Disconnect { who, .. } => {
                    ensure!(self.room.role(who).is_none(), "{who} disconnected but present")
                }
                Output::Ended { .. } => ensure!(self.room.is_ended(), "Ended output but the room is not ended"),
            }
        }
        Ok(())
    }

    fn check_room(&self, queue_before: &[ParticipantId]) -> Result<(), String> {
        let room = &self.room;
        let state = room.state();
        ensure!(room.stage().len() <= state.settings.stage_capacity as usize, "stage over capacity");
        let mut publishing = HashSet::new();
        for p in &state.participants {
            ensure!(p.role <= p.ceiling, "{}: role above ceiling", p.id);
            let may = room.may_publish(&p.id);
            ensure!(may == (!room.is_ended() && p.role != Role::Audience && !p.muted), "{}: may_publish wrong", p.id);
            if may {
                publishing.insert(p.id.clone());
            }
        }
        ensure!(publishing == self.publishing, "Publish outputs must track may_publish");

        let queue = room.hand_queue();
        let unique: HashSet<_> = queue.iter().collect();
        ensure!(unique.len() == queue.len(), "duplicates in the hand queue");
        for (i, id) in queue.iter().enumerate() {
            ensure!(room.role(id) == Some(Role::Audience), "{id} in the queue but not in the audience");
            let position = room.participant(id).and_then(|p| p.hand_position);
            ensure!(position == u32::try_from(i + 1).ok(), "{id}: hand position {position:?} at place {}", i + 1);
        }
        let before: HashSet<_> = queue_before.iter().collect();
        let survivors_now: Vec<_> = queue.iter().filter(|id| before.contains(id)).collect();
        let survivors_then: Vec<_> = queue_before.iter().filter(|id| unique.contains(id)).collect();
        ensure!(survivors_now == survivors_then, "surviving hands changed order");

        let counts = room.counts();
        ensure!(counts.total as usize == room.len(), "counts.total wrong");
        ensure!(counts.stage + counts.audience == counts.total, "stage + audience != total");
        ensure!(counts.hands as usize == queue.len(), "counts.hands wrong");
        Ok(())
    }
}

/// The observable state apart from `seq`, to tell a real change from a no-op.
fn without_seq(room: &Room) -> RoomState {
    RoomState { seq: 0, ..room.state() }
}

fn roles(room: &Room) -> HashMap<ParticipantId, Role> {
    room.state().participants.into_iter().map(|p| (p.id, p.role)).collect()
}
