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
//! - Authority: a command by anyone but a moderator or an administrator never changes another participant's role;
//!   administrator-only commands (`Revoke`, `SetPersistent`) are accepted only from administrators, and commands on
//!   the sender's own state never from them.
//! - Actors and reasons: an accepted moderation command that changed the room ends its outputs with exactly one
//!   `Moderated` naming its actor, command and reason; every `by` in its events is that actor and every `reason`
//!   that reason; a reason longer than 256 characters or with a control character is refused; other commands emit
//!   no `Moderated`.
//! - Revocations: at most `max_revocations`, each lapsing `revocation_ttl` after it was made; no present
//!   participant's token matches a revocation in force; a join refused as revoked matches one; only `Revoke`
//!   disconnects with `Revoked`.
//! - Persistent rooms never end by the empty timeout.
//! - Hand queue: no duplicates, audience only, positions are 1-based places, surviving entries keep their order;
//!   the head counts match the room.
//! - Timers: after `handle_timeout(now)` nothing is due at or before `now`; a hand that expired went down (its
//!   raiser told with `HandLowered { Expired }`, only by the timer), and a cleared one names the `ClearHands` actor.
//! - Room info: `RoomInfo` goes to everyone.
//!
//! Every check returns `Err` with a message naming what broke; the callers turn it into a test failure or a
//! fuzzer crash. Checking never panics on its own.

use std::collections::{HashMap, HashSet};

use crate::{
    Actor, Command, CommandError, DisconnectReason, EndReason, Event, HandLowered, Join, Millis, Output, ParticipantId,
    Reason, Recipients, Role, Room, RoomConfig, RoomState, StageCause,
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
    /// [`Room::handle_command_as`]: a command from a participant or an administrator, with a reason.
    Act {
        /// The sender.
        by: Actor,
        /// The command.
        command: Command,
        /// The reason, unchecked.
        reason: Option<String>,
    },
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
        // The joins the changes name are exactly the upserted identities the stored version does not hold.
        let held = |id: &ParticipantId| store.as_ref().is_some_and(|s| s.participants.iter().any(|p| &p.id == id));
        let mut joins: Vec<_> = changes.upserted.iter().filter(|p| !held(&p.id)).map(|p| p.id.clone()).collect();
        joins.sort();
        ensure!(changes.joined == joins, "changes.joined {:?} must be the joins {joins:?}", changes.joined);
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
    /// Whose audio is recorded, built only from `Record` outputs.
    recorded: HashSet<ParticipantId>,
}

impl Checker {
    /// A new, empty room named `room` with `config`, at time 0.
    pub fn new(config: RoomConfig) -> Self {
        Self::with_room(Room::new("room", config.clone(), 0), config)
    }

    /// Checks `room`, new at time 0 (as made by [`Room::new`] or [`Room::create`] with `config`).
    pub fn with_room(room: Room, config: RoomConfig) -> Self {
        Self { room, config, now: 0, store: None, replica: None, publishing: HashSet::new(), recorded: HashSet::new() }
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
                    Err(e) => {
                        let revoked = self.room.revoked(self.now, &join.id, join.token_id.as_deref(), join.issued_at);
                        ensure!(
                            (e == CommandError::Revoked)
                                == (revoked && e != CommandError::Ended && e != CommandError::Banned),
                            "a join is refused as revoked exactly when a revocation in force matches it (got {e:?})"
                        );
                        self.ensure_unchanged(seq_before, &state_before)?;
                    }
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
                return self.act(
                    &Actor::Participant(from.clone()),
                    command,
                    None,
                    seq_before,
                    &state_before,
                    &roles_before,
                    &queue_before,
                );
            }
            Step::Act { by, command, reason } => {
                return self.act(
                    by,
                    command,
                    reason.as_deref(),
                    seq_before,
                    &state_before,
                    &roles_before,
                    &queue_before,
                );
            }
        }
        let out = self.check_outputs(seq_before, &state_before, is_timeout)?;
        ensure!(!out.iter().any(|o| matches!(o, Output::Moderated { .. })), "only commands emit Moderated: {out:?}");
        self.check_room(&queue_before)
    }

    /// One command from `by`, checked.
    #[allow(clippy::too_many_arguments)]
    fn act(
        &mut self,
        by: &Actor,
        command: &Command,
        reason: Option<&str>,
        seq_before: u64,
        state_before: &RoomState,
        roles_before: &HashMap<ParticipantId, Role>,
        queue_before: &[ParticipantId],
    ) -> Result<(), String> {
        let sender_role = by.participant().and_then(|p| self.room.role(p));
        let ended = self.room.is_ended();
        let r = self.room.handle_command_as(self.now, by, command.clone(), reason);
        self.check_mirrors()?;
        let admin_only =
            matches!(command, Command::Revoke { .. } | Command::SetPersistent { .. } | Command::SetRecordable { .. });
        let own_state = matches!(
            command,
            Command::RaiseHand
                | Command::LowerHand
                | Command::AcceptInvite
                | Command::DeclineInvite
                | Command::StepDown
                | Command::SetMuted { .. }
                | Command::SendChat { .. }
                | Command::SetRecordingOptOut { .. }
        );
        let parsed = match reason.map(Reason::parse).transpose() {
            Ok(parsed) => parsed.flatten(),
            Err(_) => {
                ensure!(r.is_err(), "{command:?} accepted with a malformed reason {reason:?}");
                None
            }
        };
        match &r {
            Err(_) => self.ensure_unchanged(seq_before, state_before)?,
            Ok(_) => {
                ensure!(!ended, "an ended room accepts nothing");
                ensure!(by.is_admin() || sender_role.is_some(), "only present participants command");
                ensure!(!admin_only || by.is_admin(), "{command:?} accepted from {by:?}, not an administrator");
                ensure!(
                    !own_state || !by.is_admin(),
                    "{command:?} acts on one's own state, accepted from an administrator"
                );
                if !by.is_admin() && sender_role != Some(Role::Moderator) {
                    let after = roles(&self.room);
                    for (id, role) in roles_before {
                        ensure!(
                            by.participant() == Some(id) || after.get(id) == Some(role),
                            "{command:?} by {by:?} (not a moderator) changed {id}'s role"
                        );
                    }
                }
            }
        }
        if ended {
            ensure!(r == Err(CommandError::Ended), "an ended room answers Ended, got {r:?}");
        }
        let out = self.check_outputs(seq_before, state_before, false)?;
        let transition = r.is_ok() && self.room.seq() != seq_before;
        let moderated: Vec<&Output> = out.iter().filter(|o| matches!(o, Output::Moderated { .. })).collect();
        let moderation = !own_state
            && !matches!(command, Command::GetState | Command::ListAudience { .. } | Command::ChatHistory { .. });
        if transition && moderation {
            let expected = Output::Moderated {
                seq: self.room.seq(),
                by: by.clone(),
                command: command.clone(),
                reason: parsed.clone(),
            };
            ensure!(moderated == [&expected], "expected exactly {expected:?} last, got {moderated:?}");
            ensure!(out.last() == Some(&expected), "Moderated comes last");
        } else {
            ensure!(moderated.is_empty(), "{command:?} (no moderation transition) emitted {moderated:?}");
        }
        for o in &out {
            let (by_seen, reason_seen) = match o {
                Output::Event { event: Event::Stage { cause, .. }, .. } => {
                    let (StageCause::Promoted { by: Some(b), reason, .. }
                    | StageCause::Muted { by: Some(b), reason, .. }
                    | StageCause::MovedToAudience { by: b, reason, .. }
                    | StageCause::ModeratorGranted { by: b, reason, .. }
                    | StageCause::ModeratorRevoked { by: b, reason, .. }
                    | StageCause::Removed { by: b, reason, .. }
                    | StageCause::Revoked { by: b, reason, .. }
                    | StageCause::Handover { by: b, reason }) = cause
                    else {
                        continue;
                    };
                    (b, reason)
                }
                Output::Ended { reason: EndReason::ByModerator { by: b, reason } } => (b, reason),
                Output::Event { event: Event::HandLowered(HandLowered::Cleared { by: b, reason }), .. } => {
                    ensure!(matches!(command, Command::ClearHands), "hands cleared by {command:?}");
                    (b, reason)
                }
                Output::Disconnect { reason: DisconnectReason::Revoked, .. } => {
                    ensure!(matches!(command, Command::Revoke { .. }), "Revoked disconnect from {command:?}");
                    continue;
                }
                _ => continue,
            };
            ensure!(by_seen == by, "{o:?} names {by_seen:?}, but {by:?} sent it");
            ensure!(reason_seen == &parsed, "{o:?} carries reason {reason_seen:?}, not {parsed:?}");
        }
        self.check_room(queue_before)
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

    fn check_outputs(
        &mut self,
        seq_before: u64,
        state_before: &RoomState,
        is_timeout: bool,
    ) -> Result<Vec<Output>, String> {
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
                        Event::RoomInfo(_) | Event::Chat(_) | Event::ChatDeleted { .. } | Event::Recording(_) => {
                            *to == Recipients::Everyone
                        }
                        Event::HandLowered(cause) => {
                            ensure!(
                                is_timeout == (*cause == HandLowered::Expired),
                                "{cause:?}: hands expire only by the timer, and the timer only expires them"
                            );
                            match to {
                                Recipients::One(id) => ensure!(
                                    self.room.participant(id).is_some_and(|p| p.hand_position.is_none()),
                                    "HandLowered to {id}, whose hand is not down"
                                ),
                                _ => ensure!(false, "HandLowered to {to:?}"),
                            }
                            true
                        }
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
                Output::Record { who, recorded } => {
                    let was = self.recorded.contains(who);
                    ensure!(was != *recorded, "Record only on change ({who})");
                    if *recorded {
                        self.recorded.insert(who.clone());
                    } else {
                        self.recorded.remove(who);
                    }
                }
                Output::Disconnect { who, .. } => {
                    ensure!(self.room.role(who).is_none(), "{who} disconnected but present")
                }
                Output::Ended { reason } => {
                    ensure!(self.room.is_ended(), "Ended output but the room is not ended");
                    ensure!(
                        !(*reason == EndReason::Empty && self.room.is_persistent()),
                        "a persistent room ended by the empty timeout"
                    );
                }
                Output::Moderated { seq: s, .. } => ensure!(*s == seq, "Moderated at seq {s}, not {seq}"),
            }
        }
        Ok(out)
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
        let recorded: HashSet<ParticipantId> =
            state.participants.iter().filter(|p| room.is_recorded(&p.id)).map(|p| p.id.clone()).collect();
        ensure!(recorded == self.recorded, "Record outputs must track is_recorded");
        for p in &state.participants {
            let should = room.recording().is_some() && p.role != Role::Audience && !p.recording_opt_out;
            ensure!(room.is_recorded(&p.id) == (should && !room.is_ended()), "{}: is_recorded wrong", p.id);
        }

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

        let ttl = self.config.revocation_ttl;
        ensure!(state.revocations.len() <= self.config.max_revocations, "more revocations than max_revocations");
        for r in &state.revocations {
            ensure!(r.identity.is_some() || r.token_id.is_some(), "{r:?} names nothing");
            ensure!(r.until == r.at.saturating_add(ttl), "{r:?} does not lapse revocation_ttl after it was made");
            if r.until <= self.now {
                continue;
            }
            for p in &state.participants {
                ensure!(
                    !r.matches(&p.id, p.token_id.as_deref(), p.issued_at),
                    "{} present with a token {r:?} revokes",
                    p.id
                );
            }
        }
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
