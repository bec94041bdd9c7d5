//! Property tests: random sequences of joins (random ceilings and role requests), disconnects, leaves, time
//! advancing, and random commands from random participants or an administrator with random targets and reasons
//! (revocations and persistence among them), in ad hoc and persistent rooms. After every step
//! [`Checker`](crate::conformance::Checker) checks everything the crate promises (invariants, persistence mirrors,
//! seq discipline, outputs, hand queue); the `room_commands` fuzz target runs the same checker.

use proptest::option;
use proptest::prelude::*;

use super::*;
use crate::conformance::{Checker, Step};
use crate::state::{Invite, ParticipantState};
use crate::{PinnedLink, RoomInfo, Settings};

use Command as C;
use Role::{Audience, Moderator, Speaker};

const IDS: [&str; 7] = ["p0", "p1", "p2", "p3", "p4", "p5", "p6"];
/// Token ids joins present and revocations name.
const TOKENS: [&str; 3] = ["t0", "t1", "t2"];

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
        revocation_ttl: 700,
        max_revocations: 2,
        hand_ttl: 300,
        chat_history: 3,
        chat_max_chars: 12,
        chat_max_age: 900,
        chat_snapshot: 2,
        chat_page_limit: 2,
        chat_room_per_second: 5,
        chat_room_burst: 2,
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
        prop::bool::weighted(0.25),
        prop_oneof![Just(0u64), Just(300)],
    )
        .prop_map(|(stage_capacity, open_mic, closed, grace, counts_interval, persistent, hand_ttl)| RoomConfig {
            stage_capacity,
            open_mic,
            closed,
            grace,
            counts_interval,
            persistent,
            invite_ttl: grace * 5,
            hand_ttl,
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
        /// An index into `TOKENS`.
        token: Option<usize>,
        /// Issued now (else at 0: before any revocation).
        fresh: bool,
    },
    Disconnect(usize),
    Leave(usize),
    Advance(Millis),
    /// `command`'s target is filled in from `target` (except a `Handover` with `Pick::Id`, which keeps its list).
    Cmd {
        from: Pick,
        command: Command,
        target: Pick,
        /// Sent by the administrator instead of `from`.
        admin: bool,
        reason: Option<String>,
    },
}

/// No reason mostly; sometimes a good one, one too long, or one with a control character.
fn reason() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        6 => Just(None),
        3 => Just(Some("spam".to_owned())),
        1 => Just(Some(String::new())),
        1 => Just(Some("x".repeat(257))),
        1 => Just(Some("bad\nline".to_owned())),
    ]
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
        4 => (
            proptest::collection::vec(any_id(), 0..3),
            proptest::collection::vec((any_id(), role()), 0..4),
            proptest::collection::vec(any_id(), 0..2),
            proptest::collection::vec(any_id(), 0..2),
        )
            .prop_map(|(demote, promote, moderators_add, moderators_remove)| C::HandoverDelta {
                demote,
                promote,
                moderators_add,
                moderators_remove,
            }),
        2 => (option::of(any::<bool>()), option::of(any::<bool>()), option::of(0u32..6)).prop_map(
            |(open_mic, closed, stage_capacity)| C::UpdateSettings { open_mic, closed, stage_capacity, chat: None, chat_slow_mode_ms: None }
        ),
        1 => Just(C::InviteToRoom { identity: t() }),
        1 => Just(C::UninviteFromRoom { identity: t() }),
        1 => (option::of(0u64..30), 0usize..5).prop_map(|(after, limit)| C::ListAudience { after, limit }),
        1 => Just(C::GetState),
        2 => (any::<bool>(), option::of(0..TOKENS.len())).prop_map(|(identity, token)| C::Revoke {
            identity: identity.then(|| pid("?")),
            token_id: token.map(|i| TOKENS[i].to_owned()),
        }),
        1 => any::<bool>().prop_map(|persistent| C::SetPersistent { persistent }),
        2 => (room_info_text(), room_info_link()).prop_map(|(description, pinned_link)| C::SetRoomInfo {
            description,
            pinned_link,
        }),
        2 => Just(C::ClearHands),
        3 => prop_oneof![Just("hi"), Just(" two\nlines "), Just(""), Just("tab\t"), Just("long message text")]
            .prop_map(|t| C::SendChat { text: t.to_owned() }),
        2 => (0u64..8).prop_map(|message_id| C::DeleteChat { message_id }),
        1 => (option::of(0u64..8), option::of(0usize..4)).prop_map(|(before, limit)| C::ChatHistory { before, limit }),
        1 => (option::of(any::<bool>()), option::of(prop_oneof![Just(0u32), Just(50), Just(3_600_001)]))
            .prop_map(|(chat, chat_slow_mode_ms)| C::UpdateSettings {
                open_mic: None,
                closed: None,
                stage_capacity: None,
                chat,
                chat_slow_mode_ms,
            }),
    ]
}

/// A description to set: leave it, clear it, a good one, or one that is refused.
fn room_info_text() -> impl Strategy<Value = Option<Option<String>>> {
    prop_oneof![
        2 => Just(None),
        1 => Just(Some(None)),
        1 => Just(Some(Some(String::new()))),
        2 => prop_oneof![Just("one"), Just("two\nlines")].prop_map(|t| Some(Some(t.to_owned()))),
        1 => prop_oneof![Just("x".repeat(1_001)), Just("bell\u{7}".to_owned())].prop_map(|t| Some(Some(t))),
    ]
}

/// A pinned link to set: leave it, clear it, a good one, or one that is refused.
fn room_info_link() -> impl Strategy<Value = Option<Option<PinnedLink>>> {
    let link = |url: &str, title: Option<&str>| PinnedLink { url: url.into(), title: title.map(Into::into) };
    prop_oneof![
        2 => Just(None),
        1 => Just(Some(None)),
        2 => Just(Some(Some(link("https://example.com/a", Some("A"))))),
        1 => Just(Some(Some(link("http://example.com", None)))),
        1 => Just(Some(Some(link("javascript:alert(1)", None)))),
        1 => Just(Some(Some(link("https://", Some("no host"))))),
    ]
}

fn join_op() -> impl Strategy<Value = Op> {
    (0..IDS.len(), role(), option::weighted(0.3, role()), option::of(0..TOKENS.len()), any::<bool>())
        .prop_map(|(who, ceiling, role, token, fresh)| Op::Join { who, ceiling, role, token, fresh })
}

fn op() -> impl Strategy<Value = Op> {
    let who = 0..IDS.len();
    prop_oneof![
        40 => join_op(),
        10 => who.clone().prop_map(Op::Disconnect),
        10 => who.prop_map(Op::Leave),
        20 => prop_oneof![0..60u64, 100..400u64].prop_map(Op::Advance),
        120 => (pick(), command(), pick(), prop::bool::weighted(0.25), reason())
            .prop_map(|(from, command, target, admin, reason)| Op::Cmd { from, command, target, admin, reason }),
        // Rarely: end the room (everything after must be refused).
        2 => (0..3usize, any::<bool>()).prop_map(|(k, admin)| Op::Cmd {
            from: Pick::Smart(k),
            command: C::EndRoom,
            target: Pick::Id(0),
            admin,
            reason: None,
        }),
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
        C::Revoke { identity, token_id } => C::Revoke { identity: identity.map(|_| to(ids(&|_| true))), token_id },
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
        C::HandoverDelta { demote, promote, moderators_add, moderators_remove } => match target {
            Pick::Id(_) => C::HandoverDelta { demote, promote, moderators_add, moderators_remove },
            // A plausible scheduler handover: the first stage members out, as many allowed listeners in (the first
            // as its ceiling), moderator rights moved from a stayer to a newcomer now and then.
            Pick::Smart(k) => {
                let stage = room.stage();
                let out: Vec<ParticipantId> = stage.iter().take(k % 3 + 1).map(|m| m.id.clone()).collect();
                let incoming: Vec<&ParticipantState> = ps
                    .iter()
                    .filter(|p| p.role == Audience && p.ceiling >= Speaker)
                    .skip(k % 2)
                    .take(k % 4 + 1)
                    .collect();
                let promote = incoming
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (p.id.clone(), if i == 0 { p.ceiling } else { Speaker }))
                    .collect();
                let stayer_mods = stage.iter().skip(out.len()).filter(|m| m.role == Moderator).map(|m| m.id.clone());
                let moderators_remove = if k % 2 == 0 { stayer_mods.take(1).collect() } else { Vec::new() };
                let moderators_add =
                    incoming.iter().filter(|p| p.ceiling == Moderator).take(k % 2).map(|p| p.id.clone()).collect();
                C::HandoverDelta { demote: out, promote, moderators_add, moderators_remove }
            }
        },
        other => other,
    };
    (from, command)
}

/// Turns a generated operation into the room input it stands for (resolving `Pick`s against the room).
fn to_step(room: &Room, now: Millis, op: &Op) -> Step {
    match op {
        Op::Join { who, ceiling, role, token, fresh } => Step::Join(Join {
            token_id: token.map(|i| TOKENS[i].to_owned()),
            issued_at: if *fresh { now } else { 0 },
            ..Join::new(pid(IDS[*who]), format!("{} name", IDS[*who]), *ceiling, *role)
        }),
        Op::Disconnect(who) => Step::Disconnect(pid(IDS[*who])),
        Op::Leave(who) => Step::Leave(pid(IDS[*who])),
        Op::Advance(d) => Step::Advance(*d),
        Op::Cmd { from, command, target, admin, reason } => {
            // An administrator-only handover is mostly sent by one (a `Pick::Id` sender still tries it).
            let admin = *admin || (matches!(command, C::HandoverDelta { .. }) && matches!(from, Pick::Smart(_)));
            let (from, command) = resolve(room, from, command.clone(), target);
            match (admin, reason) {
                (false, None) => Step::Command(from, command),
                (false, Some(_)) => Step::Act { by: Actor::Participant(from), command, reason: reason.clone() },
                (true, _) => Step::Act { by: admin_actor(), command, reason: reason.clone() },
            }
        }
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
        let mut checker = Checker::new(config);
        // Start with a moderator on stage, so moderator commands are exercised from the first step.
        let opening = Op::Join { who: 0, ceiling: Moderator, role: None, token: None, fresh: false };
        for op in std::iter::once(&opening).chain(&joins).chain(&ops) {
            let step = to_step(checker.room(), checker.now(), op);
            checker.step(&step).map_err(TestCaseError::fail)?;
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
        option::of(small()),
    )
        .prop_map(
            |(
                who,
                ceiling,
                role,
                muted,
                connected,
                grace_deadline,
                join_order,
                stage_since,
                hand_raised,
                invite,
                hand_expires_at,
            )| {
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
                    hand_expires_at,
                    invite: invite.map(|(by, expires_at)| Invite { by: act(IDS[by]), expires_at }),
                    token_id: None,
                    issued_at: 0,
                    recording_opt_out: join_order % 3 == 0,
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
            settings: Settings { open_mic: false, closed: false, stage_capacity, chat: true, chat_slow_mode_ms: 0 },
            ended,
            empty_since,
            next_order,
            recording: None,
            recordable: seq % 2 == 0,
            participants,
            bans: bans.into_iter().map(|i| pid(IDS[i])).collect(),
            guests: vec![],
            persistent: false,
            revocations: vec![],
            info: RoomInfo::default(),
            next_chat_id: 1,
            chat: vec![],
        })
}

fn admin_actor() -> Actor {
    Actor::Admin(AdminId::new("ops"))
}
