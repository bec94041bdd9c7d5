//! Tests: rule-by-rule unit tests (`rules`), a full scenario (`scenario`), property tests (`props`).
//!
//! Every test drives the room through [`Harness`], which after every input drains the outputs, checks the internal
//! invariants, checks that `from_state(state())` round-trips, and applies `take_changes` to a mirror of the store,
//! which must equal `state()`.

#![allow(clippy::unwrap_used)]

mod admin;
mod chat;
mod handover;
mod info_hands;
mod props;
mod recording;
mod rules;
mod scenario;

use crate::conformance::check_mirrors;
use crate::{
    Actor, AdminId, Command, CommandError, Counts, Event, Join, Joined, Millis, Output, ParticipantId, Recipients,
    Reply, Role, Room, RoomConfig, RoomState, StageCause,
};

pub(crate) fn pid(s: &str) -> ParticipantId {
    ParticipantId::new(s)
}

/// A participant as an actor.
pub(crate) fn act(s: &str) -> Actor {
    Actor::Participant(pid(s))
}

/// An administrator as an actor.
pub(crate) fn admin(s: &str) -> Actor {
    Actor::Admin(AdminId::new(s))
}

/// A config with small numbers, so tests hit the limits quickly.
pub(crate) fn small_config() -> RoomConfig {
    RoomConfig {
        stage_capacity: 3,
        max_stage_capacity: 5,
        invite_ttl: 1_000,
        grace: 500,
        empty_timeout: 2_000,
        counts_interval: 100,
        hand_queue_event_limit: 2,
        max_page: 3,
        ..RoomConfig::default()
    }
}

pub(crate) struct Harness {
    pub(crate) room: Room,
    pub(crate) config: RoomConfig,
    pub(crate) now: Millis,
    /// What a store would hold, built only from `take_changes`.
    pub(crate) store: Option<RoomState>,
    /// Another hub's copy of the room, following it only through `apply_changes`.
    pub(crate) replica: Option<Room>,
    /// The `Moderated` outputs [`Harness::drain`] took out, in order.
    pub(crate) moderated: Vec<Output>,
}

impl Harness {
    pub(crate) fn new(config: RoomConfig) -> Self {
        let room = Room::new("room", config.clone(), 0);
        Self::with_room(room, config)
    }

    pub(crate) fn with_room(room: Room, config: RoomConfig) -> Self {
        let mut h = Self { room, config, now: 0, store: None, replica: None, moderated: Vec::new() };
        h.check();
        h
    }

    pub(crate) fn with_defaults() -> Self {
        Self::new(RoomConfig::default())
    }

    /// Checks everything that must hold between inputs ([`check_mirrors`]); panics with the reason otherwise.
    pub(crate) fn check(&mut self) {
        if let Err(e) = check_mirrors(&mut self.room, &self.config, self.now, &mut self.store, &mut self.replica) {
            panic!("{e}");
        }
    }

    /// The outputs, without `Moderated` (kept in [`Harness::moderated`]).
    pub(crate) fn drain(&mut self) -> Vec<Output> {
        let (moderated, out) = std::iter::from_fn(|| self.room.poll_output())
            .partition::<Vec<_>, _>(|o| matches!(o, Output::Moderated { .. }));
        self.moderated.extend(moderated);
        out
    }

    pub(crate) fn join_as(&mut self, who: &str, ceiling: Role, role: Option<Role>) -> Result<Joined, CommandError> {
        let r = self.room.handle_join(self.now, Join::new(pid(who), format!("{who} name"), ceiling, role));
        self.check();
        r
    }

    /// Joins with the default role choice and drains the outputs.
    pub(crate) fn join(&mut self, who: &str, ceiling: Role) -> Joined {
        let joined = self.join_as(who, ceiling, None).expect("join");
        self.drain();
        joined
    }

    pub(crate) fn cmd(&mut self, from: &str, command: Command) -> Result<Reply, CommandError> {
        let r = self.room.handle_command(self.now, &pid(from), command);
        self.check();
        r
    }

    /// A command from any actor, with a reason.
    pub(crate) fn cmd_as(&mut self, by: &Actor, command: Command, reason: Option<&str>) -> Result<Reply, CommandError> {
        let r = self.room.handle_command_as(self.now, by, command, reason);
        self.check();
        r
    }

    /// A command from any actor that must succeed; returns its outputs (without `Moderated`).
    pub(crate) fn ok_as(&mut self, by: &Actor, command: Command, reason: Option<&str>) -> Vec<Output> {
        if let Err(e) = self.cmd_as(by, command.clone(), reason) {
            panic!("{by:?}: {command:?} refused: {e}");
        }
        self.drain()
    }

    /// A command from any actor that must be refused with `expected`, changing nothing.
    pub(crate) fn refused_as(&mut self, by: &Actor, command: Command, reason: Option<&str>, expected: CommandError) {
        let (seq, state) = (self.room.seq(), self.room.state());
        assert_eq!(self.cmd_as(by, command.clone(), reason), Err(expected), "{by:?}: {command:?}");
        assert_eq!(self.room.seq(), seq);
        assert_eq!(self.room.state(), state);
        assert_eq!(self.drain(), vec![], "a refused command emits nothing");
    }

    /// A command that must succeed; returns its outputs.
    pub(crate) fn ok(&mut self, from: &str, command: Command) -> Vec<Output> {
        let before = self.room.seq();
        if let Err(e) = self.cmd(from, command.clone()) {
            panic!("{from}: {command:?} refused: {e}");
        }
        let out = self.drain();
        assert!(self.room.seq() <= before + 1);
        out
    }

    /// A command that must be refused with `expected`, changing nothing.
    pub(crate) fn refused(&mut self, from: &str, command: Command, expected: CommandError) {
        let (seq, state) = (self.room.seq(), self.room.state());
        assert_eq!(self.cmd(from, command.clone()), Err(expected), "{from}: {command:?}");
        assert_eq!(self.room.seq(), seq);
        assert_eq!(self.room.state(), state);
        assert_eq!(self.drain(), vec![], "a refused command emits nothing");
    }

    /// A command accepted as a no-op: nothing changes, nothing is emitted.
    pub(crate) fn noop(&mut self, from: &str, command: Command) -> Reply {
        let (seq, state) = (self.room.seq(), self.room.state());
        let reply = self.cmd(from, command).expect("accepted");
        assert_eq!(self.room.seq(), seq);
        assert_eq!(self.room.state(), state);
        assert_eq!(self.drain(), vec![]);
        reply
    }

    pub(crate) fn disconnect(&mut self, who: &str) -> Vec<Output> {
        self.room.handle_disconnect(self.now, &pid(who));
        self.check();
        self.drain()
    }

    pub(crate) fn leave(&mut self, who: &str) -> Vec<Output> {
        self.room.handle_leave(self.now, &pid(who));
        self.check();
        self.drain()
    }

    /// Moves time to `now` and runs the timers.
    pub(crate) fn at(&mut self, now: Millis) -> Vec<Output> {
        self.now = self.now.max(now);
        self.room.handle_timeout(self.now);
        self.check();
        self.drain()
    }

    pub(crate) fn role(&self, who: &str) -> Option<Role> {
        self.room.role(&pid(who))
    }

    pub(crate) fn stage_ids(&self) -> Vec<(String, Role)> {
        self.room.stage().into_iter().map(|m| (m.id.as_str().to_owned(), m.role)).collect()
    }
}

/// The events in `out`, without recipients.
pub(crate) fn events(out: &[Output]) -> Vec<&Event> {
    out.iter()
        .filter_map(|o| match o {
            Output::Event { event, .. } => Some(event),
            _ => None,
        })
        .collect()
}

/// The causes of the `Stage` events in `out`.
pub(crate) fn stage_causes(out: &[Output]) -> Vec<StageCause> {
    events(out)
        .into_iter()
        .filter_map(|e| match e {
            Event::Stage { cause, .. } => Some(cause.clone()),
            _ => None,
        })
        .collect()
}

/// The `You` events in `out`, by recipient.
pub(crate) fn yous(out: &[Output]) -> Vec<(String, crate::YourState)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Event { to: Recipients::One(id), event: Event::You(y), .. } => {
                Some((id.as_str().to_owned(), y.clone()))
            }
            _ => None,
        })
        .collect()
}

/// The `Counts` events in `out`.
pub(crate) fn counts_events(out: &[Output]) -> Vec<Counts> {
    events(out)
        .into_iter()
        .filter_map(|e| match e {
            Event::Counts(c) => Some(*c),
            _ => None,
        })
        .collect()
}

/// The `Publish` outputs in `out`.
pub(crate) fn publishes(out: &[Output]) -> Vec<(String, bool)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Publish { who, allowed } => Some((who.as_str().to_owned(), *allowed)),
            _ => None,
        })
        .collect()
}
