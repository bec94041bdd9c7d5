//! Property tests: random sequences of joins (random ceilings and role requests), disconnects, leaves, time
//! advancing, and random commands from random participants with random targets. After every step the harness
//! checks the internal invariants, the `from_state` round trip and the store mirror; this file checks the rest.

use std::collections::{HashMap, HashSet};

use proptest::option;
use proptest::prelude::*;

use super::*;
use crate::Settings;
use crate::state::{Invite, ParticipantState};

use Command as C;
use Role::{Audience, Moderator, Speaker};

const IDS: [&str; 7] = ["p0", "p1", "p2", "p3", "p4", "p5", "p6"];

fn config() -> RoomConfig {
    RoomConfig {
        stage_capacity: 3,
        max_stage_capacity: 4,
        invite_ttl: 1_000,
        grace: 200,
        empty_timeout: 1_000,
        counts_interval: 50,
        hand_queue_event_limit: 2,
        max_page: 3,
        ..RoomConfig::default()
    }
}

/// Mostly `config()`, sometimes with edge values: one seat, open mic, closed, zero timers.
fn any_config() -> impl Strategy<Value = RoomConfig> {
    (
        1u32..=4,
        any::<bool>(),
        prop::bool::weighted(0.2),
        prop_oneof![Just(0u64), Just(200)],
        prop_oneof![Just(0u64), Just(50)],
    )
        .prop_map(|(stage_capacity, open_mic, closed, grace, counts_interval)| RoomConfig {
            stage_capacity,
            open_mic,
            closed,
            grace,
            counts_interval,
            invite_ttl: grace * 5,
            ..config()
        })
}

/// Who sends a command, or whom it targets.
#[derive(Clone, Debug)]
enum Pick {
    /// One of `IDS`, or an unknown identity past the end.
    Id(usize),
    /// The k-th (modulo) of the candidates that make sense for the command (hand raisers for `ApproveHand`,
    /// moderators as senders of moderator commands, ...), so that commands are often accepted.
    Smart(usize),
}

#[derive(Clone, Debug)]
enum Op {
    Join {
        who: usize,
        ceiling: Role,
        role: Option<Role>,
    },
    Disconnect(usize),
    Leave(usize),
    Advance(Millis),
    /// `command`'s target is filled in from `target` (except a `Handover` with `Pick::Id`, which keeps its list).
    Cmd {
        from: Pick,
        command: Command,
        target: Pick,
    },
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Audience), Just(Speaker), Just(Moderator)]
}

fn any_id() -> impl Strategy<Value = ParticipantId> {
    (0..=IDS.len()).prop_map(|i| pid(IDS.get(i).copied().unwrap_or("ghost")))
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![1 => (0..=IDS.len()).prop_map(Pick::Id), 2 => (0..8usize).prop_map(Pick::Smart)]
}

/// Commands with a placeholder target (filled in at run time).
fn command() -> impl Strategy<Value = Command> {
    let t = || pid("?");
    prop_oneof![
        3 => Just(C::RaiseHand),
        1 => Just(C::LowerHand),
        3 => Just(C::ApproveHand { target: t() }),
        3 => Just(C::InviteToStage { target: t() }),
        1 => Just(C::CancelInvite { target: t() }),
        3 => Just(C::AcceptInvite),
        1 => Just(C::DeclineInvite),
        2 => Just(C::StepDown),
        2 => Just(C::MoveToAudience { target: t() }),
        2 => any::<bool>().prop_map(|muted| C::SetMuted { muted }),
        1 => Just(C::Mute { target: t() }),
        1 => Just(C::Kick { target: t() }),
        1 => Just(C::Ban { target: t() }),
        1 => Just(C::Unban { target: t() }),
        2 => Just(C::MakeModerator { target: t() }),
        2 => Just(C::RevokeModerator { target: t() }),
        3 => proptest::collection::vec((any_id(), role()), 0..5).prop_map(|stage| C::Handover { stage }),
        2 => (option::of(any::<bool>()), option::of(any::<bool>()), option::of(0u32..6)).prop_map(
            |(open_mic, closed, stage_capacity)| C::UpdateSettings { open_mic, closed, stage_capacity }
        ),
        1 => Just(C::InviteToRoom { identity: t() }),
        1 => Just(C::UninviteFromRoom { identity: t() }),
        1 => (option::of(0u64..30), 0usize..5).prop_map(|(after, limit)| C::ListAudience { after, limit }),
        1 => Just(C::GetState),
    ]
}

fn join_op() -> impl Strategy<Value = Op> {
    (0..IDS.len(), role(), option::weighted(0.3, role())).prop_map(|(who, ceiling, role)| Op::Join {
        who,
        ceiling,
        role,
    })
}

fn op() -> impl Strategy<Value = Op> {
    let who = 0..IDS.len();
    prop_oneof![
        40 => join_op(),
        10 => who.clone().prop_map(Op::Disconnect),
        10 => who.prop_map(Op::Leave),
        20 => prop_oneof![0..60u64, 100..400u64].prop_map(Op::Advance),
        120 => (pick(), command(), pick()).prop_map(|(from, command, target)| Op::Cmd { from, command, target }),
        // Rarely: end the room (everything after must be refused).
        2 => (0..3usize).prop_map(|k| Op::Cmd { from: Pick::Smart(k), command: C::EndRoom, target: Pick::Id(0) }),
    ]
}

/// Resolves `from` and fills in the command's target.
fn resolve(room: &Room, from: &Pick, command: Command, target: &Pick) -> (ParticipantId, Command) {
    let state = room.state();
    let ps = &state.participants;
    let ids = |f: &dyn Fn(&ParticipantState) -> bool| -> Vec<ParticipantId> {
        ps.iter().filter(|p| f(p)).map(|p| p.id.clone()).collect()
    };
    let nth = |pick: &Pick, candidates: Vec<ParticipantId>| match pick {
        Pick::Id(i) => pid(IDS.get(*i).copied().unwrap_or("ghost")),
        Pick::Smart(k) if !candidates.is_empty() => candidates[k % candidates.len()].clone(),
        Pick::Smart(k) => pid(IDS[k % IDS.len()]),
    };
    let senders = match &command {
        C::RaiseHand | C::LowerHand => ids(&|p| p.role == Audience),
        C::AcceptInvite | C::DeclineInvite => ids(&|p| p.invite.is_some()),
        C::StepDown | C::SetMuted { .. } => ids(&|p| p.role != Audience),
        C::GetState => ids(&|_| true),
        _ => ids(&|p| p.role == Moderator),
    };
    let from = nth(from, senders);
    let to = |candidates: Vec<ParticipantId>| nth(target, candidates);
    let command = match command {
        C::ApproveHand { .. } => C::ApproveHand { target: to(room.hand_queue()) },
        C::InviteToStage { .. } => {
            C::InviteToStage { target: to(ids(&|p| p.role == Audience && p.ceiling >= Speaker)) }
        }
        C::CancelInvite { .. } => C::CancelInvite { target: to(ids(&|p| p.invite.is_some())) },
        C::MoveToAudience { .. } => C::MoveToAudience { target: to(ids(&|p| p.role == Speaker)) },
        C::Mute { .. } => C::Mute { target: to(ids(&|p| p.role != Audience)) },
        C::Kick { .. } => C::Kick { target: to(ids(&|p| p.role != Moderator)) },
        C::Ban { .. } => C::Ban { target: to(ids(&|p| p.role != Moderator)) },
        C::Unban { .. } => C::Unban { target: to(state.bans.clone()) },
        C::MakeModerator { .. } => {
            C::MakeModerator { target: to(ids(&|p| p.ceiling == Moderator && p.role != Moderator)) }
        }
        C::RevokeModerator { .. } => C::RevokeModerator { target: to(ids(&|p| p.role == Moderator)) },
        C::InviteToRoom { .. } => C::InviteToRoom { identity: to(vec![]) },
        C::UninviteFromRoom { .. } => C::UninviteFromRoom { identity: to(state.guests.clone()) },
        C::Handover { stage } => match target {
            Pick::Id(_) => C::Handover { stage },
            // A plausible new stage: up to k+1 participants whose tokens allow it, the first as moderator if allowed.
            Pick::Smart(k) => C::Handover {
                stage: ps
                    .iter()
                    .filter(|p| p.ceiling >= Speaker)
                    .skip(k % 3)
                    .take(k % 4 + 1)
                    .enumerate()
                    .map(|(i, p)| (p.id.clone(), if i == 0 || k % 2 == 0 { p.ceiling } else { Speaker }))
                    .collect(),
            },
        },
        other => other,
    };
    (from, command)
}

/// The observable state apart from `seq`, to tell a real change from a no-op.
fn without_seq(room: &Room) -> RoomState {
    RoomState { seq: 0, ..room.state() }
}

fn roles(room: &Room) -> HashMap<ParticipantId, Role> {
    room.state().participants.into_iter().map(|p| (p.id, p.role)).collect()
}

struct Model {
    h: Harness,
    /// Who the hub believes may publish, built only from `Publish` outputs.
    publishing: HashSet<ParticipantId>,
}

impl Model {
    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let room = &self.h.room;
        let (seq_before, state_before, roles_before, queue_before) =
            (room.seq(), without_seq(room), roles(room), room.hand_queue());
        let mut is_timeout = false;
        match op {
            Op::Join { who, ceiling, role } => {
                let r = self.h.join_as(IDS[*who], *ceiling, *role);
                if let Ok(joined) = r {
                    prop_assert_eq!(Some(joined.role), self.h.role(IDS[*who]));
                    prop_assert!(joined.role <= *ceiling);
                } else {
                    self.assert_unchanged(seq_before, &state_before)?;
                }
            }
            Op::Disconnect(who) => {
                self.h.room.handle_disconnect(self.h.now, &pid(IDS[*who]));
                self.h.check();
            }
            Op::Leave(who) => {
                self.h.room.handle_leave(self.h.now, &pid(IDS[*who]));
                self.h.check();
                if !self.h.room.is_ended() {
                    prop_assert_eq!(self.h.role(IDS[*who]), None);
                }
            }
            Op::Advance(d) => {
                is_timeout = true;
                self.h.now += d;
                self.h.room.handle_timeout(self.h.now);
                self.h.check();
                if let Some(at) = self.h.room.poll_timeout() {
                    prop_assert!(at > self.h.now, "all work due at {} was done; next at {at}", self.h.now);
                }
            }
            Op::Cmd { from, command, target } => {
                let (from, command) = resolve(&self.h.room, from, command.clone(), target);
                let sender_role = self.h.room.role(&from);
                let ended = self.h.room.is_ended();
                let r = self.h.room.handle_command(self.h.now, &from, command.clone());
                self.h.check();
                match &r {
                    Err(_) => self.assert_unchanged(seq_before, &state_before)?,
                    Ok(_) => {
                        prop_assert!(!ended, "an ended room accepts nothing");
                        prop_assert!(sender_role.is_some(), "only present participants command");
                        if sender_role != Some(Moderator) {
                            // Only moderators' commands change other participants' roles.
                            let after = roles(&self.h.room);
                            for (id, role) in &roles_before {
                                if id != &from {
                                    prop_assert_eq!(
                                        after.get(id),
                                        Some(role),
                                        "{:?} by {} changed {}",
                                        command,
                                        from,
                                        id
                                    );
                                }
                            }
                        }
                    }
                }
                if ended {
                    prop_assert_eq!(r, Err(CommandError::Ended));
                }
            }
        }
        self.check_outputs(seq_before, &state_before, is_timeout)?;
        self.check_room(&queue_before)
    }

    fn assert_unchanged(&mut self, seq: u64, state: &RoomState) -> Result<(), TestCaseError> {
        prop_assert_eq!(self.h.room.seq(), seq);
        prop_assert_eq!(&without_seq(&self.h.room), state);
        prop_assert!(self.h.room.poll_output().is_none(), "a refused input emits nothing");
        Ok(())
    }

    fn check_outputs(
        &mut self,
        seq_before: u64,
        state_before: &RoomState,
        is_timeout: bool,
    ) -> Result<(), TestCaseError> {
        let seq = self.h.room.seq();
        let changed = &without_seq(&self.h.room) != state_before;
        let out = self.h.drain();
        if is_timeout {
            prop_assert!(seq >= seq_before);
            prop_assert!(changed || seq == seq_before, "seq moved without a change");
        } else if changed {
            prop_assert_eq!(seq, seq_before + 1, "one input, one transition");
        } else {
            prop_assert_eq!(seq, seq_before, "a no-op keeps seq");
            prop_assert!(out.is_empty(), "a no-op emits nothing: {:?}", out);
        }
        let mut last_seq = seq_before;
        for o in &out {
            match o {
                Output::Event { to, seq: s, event } => {
                    match event {
                        Event::Counts(_) => prop_assert!(is_timeout && *s >= last_seq && *s <= seq),
                        _ if is_timeout => prop_assert!(*s > seq_before && *s >= last_seq && *s <= seq),
                        _ => prop_assert_eq!(*s, seq, "every event of a transition carries its seq"),
                    }
                    last_seq = *s;
                    let to_ok = match event {
                        Event::Stage { .. } | Event::Settings(_) | Event::Counts(_) => *to == Recipients::Everyone,
                        Event::ParticipantJoined { .. } | Event::ParticipantLeft { .. } => *to == Recipients::Stage,
                        Event::HandQueue { hands, total } => {
                            prop_assert!(hands.len() <= 2 && hands.len() <= *total);
                            matches!(to, Recipients::Moderators | Recipients::One(_))
                        }
                        Event::You(_) => matches!(to, Recipients::One(_)),
                        Event::InviteAnswered { .. } => *to == Recipients::Moderators,
                    };
                    prop_assert!(to_ok, "{:?} to {:?}", event, to);
                }
                Output::Publish { who, allowed } => {
                    let was = self.publishing.contains(who);
                    prop_assert_ne!(was, *allowed, "Publish only on change ({})", who);
                    if *allowed {
                        self.publishing.insert(who.clone());
                    } else {
                        self.publishing.remove(who);
                    }
                }
                Output::Disconnect { who, .. } => prop_assert!(self.h.room.role(who).is_none()),
                Output::Ended { .. } => prop_assert!(self.h.room.is_ended()),
            }
        }
        Ok(())
    }

    fn check_room(&self, queue_before: &[ParticipantId]) -> Result<(), TestCaseError> {
        let room = &self.h.room;
        let state = room.state();
        prop_assert!(room.stage().len() <= state.settings.stage_capacity as usize);
        let mut publishing = HashSet::new();
        for p in &state.participants {
            prop_assert!(p.role <= p.ceiling);
            let may = room.may_publish(&p.id);
            prop_assert_eq!(may, !room.is_ended() && p.role != Audience && !p.muted);
            if p.role == Audience {
                prop_assert!(!may, "the audience never publishes");
            }
            if may {
                publishing.insert(p.id.clone());
            }
        }
        prop_assert_eq!(&publishing, &self.publishing, "Publish outputs track may_publish");

        let queue = room.hand_queue();
        let unique: HashSet<_> = queue.iter().collect();
        prop_assert_eq!(unique.len(), queue.len(), "no duplicates in the hand queue");
        for (i, id) in queue.iter().enumerate() {
            prop_assert_eq!(room.role(id), Some(Audience), "only the audience is in the queue");
            let position = room.participant(id).and_then(|p| p.hand_position);
            prop_assert_eq!(position, Some(i as u32 + 1), "hand positions are 1-based queue places");
        }
        // Relative order of surviving entries never changes.
        let before: HashSet<_> = queue_before.iter().collect();
        let survivors_now: Vec<_> = queue.iter().filter(|id| before.contains(id)).collect();
        let survivors_then: Vec<_> = queue_before.iter().filter(|id| unique.contains(id)).collect();
        prop_assert_eq!(survivors_now, survivors_then);

        let counts = room.counts();
        prop_assert_eq!(counts.total as usize, room.len());
        prop_assert_eq!(counts.stage + counts.audience, counts.total);
        prop_assert_eq!(counts.hands as usize, queue.len());
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_keep_every_invariant(
        config in any_config(),
        joins in proptest::collection::vec(join_op(), 1..6),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let mut model = Model { h: Harness::new(config), publishing: HashSet::new() };
        // Start with a moderator on stage, so moderator commands are exercised from the first step.
        let opening = Op::Join { who: 0, ceiling: Moderator, role: None };
        for op in std::iter::once(&opening).chain(&joins).chain(&ops) {
            model.step(op)?;
        }
    }

    #[test]
    fn from_state_repairs_any_state(state in arbitrary_state()) {
        let room = Room::from_state(state, config());
        if let Err(e) = room.check_invariants() {
            return Err(TestCaseError::fail(e));
        }
        let repaired = room.state();
        prop_assert_eq!(Room::from_state(repaired.clone(), config()).state(), repaired);
    }
}

/// Arbitrary (mostly inconsistent) states: duplicates, clashing order values, roles above ceilings, hands on the
/// stage, missing grace deadlines, banned participants, and so on.
fn arbitrary_state() -> impl Strategy<Value = RoomState> {
    let small = || 0u64..8;
    let participant = (
        0..IDS.len(),
        role(),
        role(),
        any::<bool>(),
        any::<bool>(),
        option::of(small()),
        small(),
        option::of(small()),
        option::of(small()),
        option::of((0..IDS.len(), small())),
    )
        .prop_map(
            |(who, ceiling, role, muted, connected, grace_deadline, join_order, stage_since, hand_raised, invite)| {
                ParticipantState {
                    id: pid(IDS[who]),
                    name: IDS[who].into(),
                    ceiling,
                    role,
                    muted,
                    connected,
                    grace_deadline,
                    join_order,
                    stage_since,
                    hand_raised,
                    invite: invite.map(|(by, expires_at)| Invite { by: pid(IDS[by]), expires_at }),
                }
            },
        );
    (
        any::<u64>(),
        0u32..5,
        any::<bool>(),
        option::of(small()),
        small(),
        proptest::collection::vec(participant, 0..8),
        proptest::collection::vec(0..IDS.len(), 0..2),
    )
        .prop_map(|(seq, stage_capacity, ended, empty_since, next_order, participants, bans)| RoomState {
            name: "r".into(),
            seq,
            settings: Settings { open_mic: false, closed: false, stage_capacity },
            ended,
            empty_since,
            next_order,
            participants,
            bans: bans.into_iter().map(|i| pid(IDS[i])).collect(),
            guests: vec![],
        })
}
