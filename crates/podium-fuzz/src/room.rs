//! The `room_commands` target: a room driven by an arbitrary sequence of inputs, checked after every step by
//! [`podium_room::conformance::Checker`] (the same checker as the property tests).
//!
//! The bytes decode (with `arbitrary`) into a room configuration and up to [`MAX_STEPS`] steps. Identities come
//! from a pool of seven plus one that never joins, so senders and targets often exist; token ids from a pool of
//! three; commands come from participants or from an administrator, with or without a reason (good, too long, or
//! with a control character); all else is arbitrary. New kinds of input were added at the end of each enum, and the
//! persistent flag in a spare bit, so older corpus inputs still decode much as they did. Chat (issue #15): posts with
//! good and bad texts, deletions of small ids (often existing), history pages, and the chat settings (slow mode, some
//! beyond its bound), on a room whose chat limits come from the configuration's existing fields (a history of 1-4,
//! pages of 1-3, an age limit of twice the grace period, a tight flood cap).

use arbitrary::{Arbitrary, Unstructured};
use podium_room::conformance::{Checker, Step};
use podium_room::{Actor, AdminId, Command, Join, Millis, ParticipantId, Role, RoomConfig};

/// Steps per input at most (longer inputs are cut, so one input stays fast).
const MAX_STEPS: usize = 64;
const IDS: [&str; 8] = ["p0", "p1", "p2", "p3", "p4", "p5", "p6", "ghost"];
const TOKENS: [&str; 3] = ["t0", "t1", "t2"];

fn token(t: u8) -> String {
    TOKENS[usize::from(t) % TOKENS.len()].to_owned()
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum R {
    Audience,
    Speaker,
    Moderator,
}

impl From<R> for Role {
    fn from(r: R) -> Self {
        match r {
            R::Audience => Self::Audience,
            R::Speaker => Self::Speaker,
            R::Moderator => Self::Moderator,
        }
    }
}

/// An index into [`IDS`] (modulo).
#[derive(Arbitrary, Debug, Clone, Copy)]
struct Who(u8);

impl Who {
    fn id(self) -> ParticipantId {
        ParticipantId::new(IDS[usize::from(self.0) % IDS.len()])
    }
}

#[derive(Arbitrary, Debug)]
struct Config {
    stage_capacity: u8,
    max_extra: u8,
    open_mic: bool,
    closed: bool,
    invite_ttl: u16,
    grace: u16,
    empty_timeout: u16,
    counts_interval: u16,
    hand_queue_event_limit: u8,
    max_page: u8,
}

impl From<Config> for RoomConfig {
    fn from(c: Config) -> Self {
        let stage_capacity = u32::from(c.stage_capacity % 6) + 1;
        Self {
            stage_capacity,
            max_stage_capacity: stage_capacity + u32::from(c.max_extra % 4),
            // The top bit of `max_extra` (unused by the line above) makes the room persistent.
            persistent: c.max_extra & 0x80 != 0,
            // The next bit (also unused above) turns hand expiry off; otherwise hands expire after three invitations.
            hand_ttl: if c.max_extra & 0x40 != 0 { 0 } else { Millis::from(c.invite_ttl) * 3 },
            revocation_ttl: Millis::from(c.invite_ttl) * 2 + 1,
            max_revocations: 2,
            open_mic: c.open_mic,
            closed: c.closed,
            invite_ttl: Millis::from(c.invite_ttl),
            grace: Millis::from(c.grace),
            empty_timeout: Millis::from(c.empty_timeout),
            counts_interval: Millis::from(c.counts_interval),
            hand_queue_event_limit: usize::from(c.hand_queue_event_limit % 5),
            max_page: usize::from(c.max_page % 5) + 1,
            // Chat: short texts, a short history and pages, a tight flood cap, and an age limit near the grace
            // period, so trimming, paging and refusals all happen within an input.
            chat: !c.closed || c.open_mic,
            chat_slow_mode_ms: u32::from(c.counts_interval % 3) * 100,
            chat_max_chars: 8,
            chat_history: usize::from(c.max_page % 4) + 1,
            chat_max_age: Millis::from(c.grace) * 2,
            chat_snapshot: usize::from(c.hand_queue_event_limit % 3),
            chat_page_limit: usize::from(c.max_page % 3) + 1,
            chat_room_per_second: 2,
            chat_room_burst: 3,
            // The top bit of `max_page` (the line above keeps it modulo 5) turns recording off for the hub.
            recording: c.max_page & 0x80 == 0,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Cmd {
    RaiseHand,
    LowerHand,
    ApproveHand(Who),
    InviteToStage(Who),
    CancelInvite(Who),
    AcceptInvite,
    DeclineInvite,
    StepDown,
    MoveToAudience(Who),
    SetMuted(bool),
    Mute(Who),
    Kick(Who),
    Ban(Who),
    Unban(Who),
    MakeModerator(Who),
    RevokeModerator(Who),
    Handover(Vec<(Who, R)>),
    UpdateSettings {
        open_mic: Option<bool>,
        closed: Option<bool>,
        stage_capacity: Option<u8>,
    },
    InviteToRoom(Who),
    UninviteFromRoom(Who),
    ListAudience {
        after: Option<u8>,
        limit: u8,
    },
    GetState,
    EndRoom,
    Revoke {
        identity: Option<Who>,
        token: Option<u8>,
    },
    SetPersistent(bool),
    HandoverDelta {
        demote: Vec<Who>,
        promote: Vec<(Who, R)>,
        moderators_add: Vec<Who>,
        moderators_remove: Vec<Who>,
    },
    /// `None`: leave it; `Some(None)`: clear it.
    SetRoomInfo {
        description: Option<Option<Text>>,
        link: Option<Option<(Link, Option<Text>)>>,
    },
    ClearHands,
    SendChat(ChatText),
    /// A message id (small, so it often exists).
    DeleteChat(u8),
    ChatHistory {
        before: Option<u8>,
        limit: Option<u8>,
    },
    /// `UpdateSettings` of the chat settings only (slow mode in units of 100 ms, some beyond the hour).
    ChatSettings {
        chat: Option<bool>,
        slow: Option<u16>,
    },
    /// A good id (`true`) or a malformed one.
    StartRecording(bool),
    StopRecording,
    SetRecordingOptOut(bool),
    SetRecordable(bool),
}

/// A chat message: good, blank, too long (more than 8 characters after trimming), with a newline (allowed) or
/// another control character.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum ChatText {
    Good,
    Blank,
    TooLong,
    Newline,
    Control,
}

impl ChatText {
    fn text(self) -> String {
        match self {
            Self::Good => "  hi  ".into(),
            Self::Blank => " \n ".into(),
            Self::TooLong => "é".repeat(9),
            Self::Newline => "a\nb".into(),
            Self::Control => "a\tb".into(),
        }
    }
}

/// Text for room info: good, empty, too long (in characters), or with a control character (a newline is allowed in
/// a description, not in a title).
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Text {
    Good,
    Empty,
    TooLong,
    Newline,
    Control,
}

impl Text {
    fn text(self) -> String {
        match self {
            Self::Good => "About us".into(),
            Self::Empty => String::new(),
            Self::TooLong => "é".repeat(1_001),
            Self::Newline => "two\nlines".into(),
            Self::Control => "a\u{1b}b".into(),
        }
    }
}

/// A pinned link's URL: good ones and each kind of bad one.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Link {
    Https,
    Http,
    NoHost,
    Scheme,
    Space,
    TooLong,
}

impl Link {
    fn url(self) -> String {
        match self {
            Self::Https => "https://example.com/a".into(),
            Self::Http => "HTTP://example.com".into(),
            Self::NoHost => "https:///x".into(),
            Self::Scheme => "javascript:alert(1)".into(),
            Self::Space => "https://exa mple.com".into(),
            Self::TooLong => format!("https://example.com/{}", "a".repeat(2_048)),
        }
    }
}

/// A reason: absent, good, empty, too long, or with a control character.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Why {
    Good,
    Empty,
    TooLong,
    Control,
}

impl Why {
    fn text(self) -> String {
        match self {
            Self::Good => "spam".into(),
            Self::Empty => String::new(),
            Self::TooLong => "é".repeat(257),
            Self::Control => "a\u{7}b".into(),
        }
    }
}

impl From<Cmd> for Command {
    fn from(c: Cmd) -> Self {
        match c {
            Cmd::RaiseHand => Self::RaiseHand,
            Cmd::LowerHand => Self::LowerHand,
            Cmd::ApproveHand(w) => Self::ApproveHand { target: w.id() },
            Cmd::InviteToStage(w) => Self::InviteToStage { target: w.id() },
            Cmd::CancelInvite(w) => Self::CancelInvite { target: w.id() },
            Cmd::AcceptInvite => Self::AcceptInvite,
            Cmd::DeclineInvite => Self::DeclineInvite,
            Cmd::StepDown => Self::StepDown,
            Cmd::MoveToAudience(w) => Self::MoveToAudience { target: w.id() },
            Cmd::SetMuted(muted) => Self::SetMuted { muted },
            Cmd::Mute(w) => Self::Mute { target: w.id() },
            Cmd::Kick(w) => Self::Kick { target: w.id() },
            Cmd::Ban(w) => Self::Ban { target: w.id() },
            Cmd::Unban(w) => Self::Unban { target: w.id() },
            Cmd::MakeModerator(w) => Self::MakeModerator { target: w.id() },
            Cmd::RevokeModerator(w) => Self::RevokeModerator { target: w.id() },
            Cmd::Handover(stage) => {
                Self::Handover { stage: stage.into_iter().map(|(w, r)| (w.id(), r.into())).collect() }
            }
            Cmd::UpdateSettings { open_mic, closed, stage_capacity } => Self::UpdateSettings {
                open_mic,
                closed,
                stage_capacity: stage_capacity.map(|c| u32::from(c % 8)),
                chat: None,
                chat_slow_mode_ms: None,
            },
            Cmd::InviteToRoom(w) => Self::InviteToRoom { identity: w.id() },
            Cmd::UninviteFromRoom(w) => Self::UninviteFromRoom { identity: w.id() },
            Cmd::ListAudience { after, limit } => {
                Self::ListAudience { after: after.map(u64::from), limit: usize::from(limit % 6) }
            }
            Cmd::GetState => Self::GetState,
            Cmd::EndRoom => Self::EndRoom,
            Cmd::Revoke { identity, token: t } => {
                Self::Revoke { identity: identity.map(Who::id), token_id: t.map(token) }
            }
            Cmd::SetPersistent(persistent) => Self::SetPersistent { persistent },
            Cmd::HandoverDelta { demote, promote, moderators_add, moderators_remove } => Self::HandoverDelta {
                demote: demote.into_iter().map(Who::id).collect(),
                promote: promote.into_iter().map(|(w, r)| (w.id(), r.into())).collect(),
                moderators_add: moderators_add.into_iter().map(Who::id).collect(),
                moderators_remove: moderators_remove.into_iter().map(Who::id).collect(),
            },
            Cmd::SetRoomInfo { description, link } => Self::SetRoomInfo {
                description: description.map(|d| d.map(Text::text)),
                pinned_link: link.map(|l| {
                    l.map(|(url, title)| podium_room::PinnedLink { url: url.url(), title: title.map(Text::text) })
                }),
            },
            Cmd::ClearHands => Self::ClearHands,
            Cmd::SendChat(text) => Self::SendChat { text: text.text() },
            Cmd::DeleteChat(id) => Self::DeleteChat { message_id: u64::from(id % 12) },
            Cmd::ChatHistory { before, limit } => Self::ChatHistory {
                before: before.map(|b| u64::from(b % 12)),
                limit: limit.map(|l| usize::from(l % 5)),
            },
            Cmd::ChatSettings { chat, slow } => Self::UpdateSettings {
                open_mic: None,
                closed: None,
                stage_capacity: None,
                chat,
                chat_slow_mode_ms: slow.map(|s| u32::from(s) * 100),
            },
            Cmd::StartRecording(good) => Self::StartRecording { id: if good { "rec_1".into() } else { "../x".into() } },
            Cmd::StopRecording => Self::StopRecording,
            Cmd::SetRecordingOptOut(opt_out) => Self::SetRecordingOptOut { opt_out },
            Cmd::SetRecordable(recordable) => Self::SetRecordable { recordable },
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Join {
        who: Who,
        ceiling: R,
        role: Option<R>,
    },
    Disconnect(Who),
    Leave(Who),
    Advance(u16),
    Command(Who, Cmd),
    /// A join with a token id, issued at 0 or now.
    JoinToken {
        who: Who,
        ceiling: R,
        role: Option<R>,
        token: u8,
        fresh: bool,
    },
    /// A command from a participant (`admin` false) or the administrator, with a reason.
    Act {
        admin: bool,
        who: Who,
        cmd: Cmd,
        why: Option<Why>,
    },
}

impl Op {
    /// The step this stands for at time `now`.
    fn step(self, now: Millis) -> Step {
        match self {
            Self::Join { who, ceiling, role } => {
                let id = who.id();
                let name = format!("{id} name");
                Step::Join(Join::new(id, name, ceiling.into(), role.map(Into::into)))
            }
            Self::Disconnect(w) => Step::Disconnect(w.id()),
            Self::Leave(w) => Step::Leave(w.id()),
            Self::Advance(d) => Step::Advance(Millis::from(d)),
            Self::Command(w, c) => Step::Command(w.id(), c.into()),
            Self::JoinToken { who, ceiling, role, token: t, fresh } => {
                let id = who.id();
                let name = format!("{id} name");
                Step::Join(Join {
                    token_id: Some(token(t)),
                    issued_at: if fresh { now } else { 0 },
                    ..Join::new(id, name, ceiling.into(), role.map(Into::into))
                })
            }
            Self::Act { admin, who, cmd, why } => Step::Act {
                by: if admin { Actor::Admin(AdminId::new("ops")) } else { Actor::Participant(who.id()) },
                command: cmd.into(),
                reason: why.map(Why::text),
            },
        }
    }
}

/// Runs the room on the steps `data` decodes to; panics with the checker's message when a promise breaks.
pub fn room_commands(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(config) = Config::arbitrary(&mut u) else { return };
    let mut checker = Checker::new(config.into());
    for _ in 0..MAX_STEPS {
        if u.is_empty() {
            break;
        }
        let Ok(op) = Op::arbitrary(&mut u) else { break };
        let step = op.step(checker.now());
        if let Err(e) = checker.step(&step) {
            panic!("after {step:?} at {} ms: {e}", checker.now());
        }
    }
}
