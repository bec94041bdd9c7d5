//! Inputs from participants and administrators: joins, commands, and their replies and errors.

use crate::event::{RoomView, Snapshot};
use crate::types::{ChatMessage, Millis, ParticipantId, PinnedLink, Role};

/// A request to join the room (the hub has verified the token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Join {
    /// The identity from the token.
    pub id: ParticipantId,
    /// Display name.
    pub name: String,
    /// The highest role the token allows.
    pub ceiling: Role,
    /// The role asked for; `None` lets the room choose (moderator tokens go on stage when a seat is free).
    pub role: Option<Role>,
    /// The token's id (`jti`), if it has one: a revocation may name it.
    pub token_id: Option<String>,
    /// When the token was issued, in [`Millis`]: the later of its `iat` and `nbf` (seconds × 1000), 0 when it has
    /// neither. A revocation of the identity refuses tokens issued at or before it.
    pub issued_at: Millis,
}

impl Join {
    /// A join with a token that has no id and no issue time (revocable by identity only, as if issued at 0).
    pub fn new(id: ParticipantId, name: impl Into<String>, ceiling: Role, role: Option<Role>) -> Self {
        Self { id, name: name.into(), ceiling, role, token_id: None, issued_at: 0 }
    }
}

/// The result of an accepted join.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Joined {
    /// The identity was already present (connected or in its grace period); its state was kept.
    pub resumed: bool,
    /// The participant's role now.
    pub role: Role,
}

/// A command from a participant who is in the room, or from an administrator. See the rules table in the crate
/// documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Audience: ask to speak (promoted at once in an open-mic room with a free seat).
    RaiseHand,
    /// Withdraw one's own raised hand.
    LowerHand,
    /// Moderator: bring a raised hand onto the stage.
    ApproveHand {
        /// Whose hand.
        target: ParticipantId,
    },
    /// Moderator: invite an audience member onto the stage.
    InviteToStage {
        /// Who.
        target: ParticipantId,
    },
    /// Moderator: withdraw an invitation to the stage.
    CancelInvite {
        /// Who.
        target: ParticipantId,
    },
    /// Take the stage by accepting one's invitation.
    AcceptInvite,
    /// Decline one's invitation.
    DeclineInvite,
    /// Speaker or moderator: go back to the audience.
    StepDown,
    /// Moderator: send a speaker back to the audience.
    MoveToAudience {
        /// Who.
        target: ParticipantId,
    },
    /// Stage member: mute or unmute oneself.
    SetMuted {
        /// The new state.
        muted: bool,
    },
    /// Moderator: mute a stage member (there is no remote unmute).
    Mute {
        /// Who.
        target: ParticipantId,
    },
    /// Moderator: remove a participant (they may rejoin).
    Kick {
        /// Who.
        target: ParticipantId,
    },
    /// Moderator: remove an identity and refuse it from now on (present or not).
    Ban {
        /// Who.
        target: ParticipantId,
    },
    /// Moderator: lift a ban.
    Unban {
        /// Who.
        target: ParticipantId,
    },
    /// Moderator: make a participant (whose token allows it) a moderator.
    MakeModerator {
        /// Who.
        target: ParticipantId,
    },
    /// Moderator: make a moderator a speaker.
    RevokeModerator {
        /// Who.
        target: ParticipantId,
    },
    /// Moderator: replace the whole stage in one transition.
    Handover {
        /// The new stage, each with `Speaker` or `Moderator`.
        stage: Vec<(ParticipantId, Role)>,
    },
    /// Administrator (the summit scheduler): change part of the stage in one transition, given as changes to the
    /// stage as it is (unlike [`Command::Handover`], which lists the whole new stage). Identities not present are
    /// skipped (reported in [`Reply::HandedOver`]); everything else is validated first and the command is applied
    /// whole or refused whole. See the rules table.
    HandoverDelta {
        /// Leave the stage for the audience (muted); audience members listed are left as they are.
        demote: Vec<ParticipantId>,
        /// Take the stage with at least this role (`Speaker` or `Moderator`); a role is never lowered.
        promote: Vec<(ParticipantId, Role)>,
        /// Become moderators (onto the stage if in the audience).
        moderators_add: Vec<ParticipantId>,
        /// Lose moderator rights: a moderator becomes a speaker (and leaves the stage if also in `demote`).
        moderators_remove: Vec<ParticipantId>,
    },
    /// Moderator: change settings (`None` leaves a setting as it is).
    UpdateSettings {
        /// Open mic.
        open_mic: Option<bool>,
        /// Closed room.
        closed: Option<bool>,
        /// Seats on the stage.
        stage_capacity: Option<u32>,
        /// Chat on or off.
        chat: Option<bool>,
        /// Slow mode in ms (0: off), at most [`Settings::MAX_CHAT_SLOW_MODE_MS`](crate::Settings::MAX_CHAT_SLOW_MODE_MS).
        chat_slow_mode_ms: Option<u32>,
    },
    /// Moderator: set or clear the room's description and pinned link. For each: `None` leaves it as it is,
    /// `Some(None)` clears it, `Some(Some(..))` sets it (checked as [`RoomInfo`](crate::RoomInfo) and
    /// [`PinnedLink::new`] say; an empty description or title counts as none).
    SetRoomInfo {
        /// The description.
        description: Option<Option<String>>,
        /// The pinned link (checked again by the room, whoever built it).
        pinned_link: Option<Option<PinnedLink>>,
    },
    /// Moderator: lower every raised hand at once.
    ClearHands,
    /// Moderator: start recording, under the id `id` (made by the caller, checked by [`Recording::check_id`](crate::Recording::check_id)).
    StartRecording {
        /// The recording's id.
        id: String,
    },
    /// Moderator: stop recording.
    StopRecording,
    /// Anyone, about themselves: opt out of recordings (or back in).
    SetRecordingOptOut {
        /// True: never record me.
        opt_out: bool,
    },
    /// Administrator: allow or forbid recording the room (a summit slot with `record: false`). Forbidding stops a
    /// running recording.
    SetRecordable {
        /// May the room be recorded.
        recordable: bool,
    },
    /// Moderator: put an identity on the closed-room guest list.
    InviteToRoom {
        /// Who.
        identity: ParticipantId,
    },
    /// Moderator: take an identity off the guest list.
    UninviteFromRoom {
        /// Who.
        identity: ParticipantId,
    },
    /// Moderator: one page of the audience, in join order.
    ListAudience {
        /// Cursor: the `next` of the previous page (exclusive); `None` for the first page.
        after: Option<u64>,
        /// Page size, `1..=max_page`.
        limit: usize,
    },
    /// The room as the sender sees it.
    GetState,
    /// Anyone present: post a chat message (checked by [`ChatMessage::check_text`](crate::ChatMessage::check_text)).
    SendChat {
        /// The text.
        text: String,
    },
    /// Delete a chat message: its author, or a moderator (any message).
    DeleteChat {
        /// The message's id.
        message_id: u64,
    },
    /// Anyone present (and administrators): one page of chat history, oldest first.
    ChatHistory {
        /// Only messages with an id below this (`None`: the newest page).
        before: Option<u64>,
        /// The most messages to return, in `1..=chat_page_limit` (`None`: 50, or the page limit if lower).
        limit: Option<usize>,
    },
    /// Moderator: end the room for everyone.
    EndRoom,
    /// Administrator: refuse an identity's or a token's access to the room from now on, and remove whoever present
    /// it matches. At least one of the two; see [`Revocation`](crate::Revocation) for what it matches.
    Revoke {
        /// The identity: its tokens issued at or before now are refused (all of them, with `token_id`: that one).
        identity: Option<ParticipantId>,
        /// The token id (`jti`): that token is refused.
        token_id: Option<String>,
    },
    /// Administrator: make the room persistent (never ended by the empty timeout) or ad hoc again.
    SetPersistent {
        /// The new value.
        persistent: bool,
    },
}

/// The answer to an accepted command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Accepted; nothing to return.
    Done,
    /// Result of `RaiseHand`.
    Hand {
        /// 1-based place in the hand queue; `None` when promoted at once.
        position: Option<u32>,
        /// True when an open-mic room put the sender on stage at once.
        promoted: bool,
    },
    /// Result of `ListAudience`.
    Audience(AudiencePage),
    /// Result of `GetState` from a participant.
    State(Snapshot),
    /// Result of `GetState` from an administrator: the room as a moderator sees it, without a `you`.
    Room(RoomView),
    /// Result of `SendChat`: the new message's id.
    ChatSent {
        /// The id.
        message_id: u64,
    },
    /// Result of `ChatHistory`.
    Chat(ChatPage),
    /// Result of `HandoverDelta` (accepted, possibly as a no-op).
    HandedOver {
        /// The listed identities that were not present and were skipped, each once, in the order first listed.
        absent: Vec<ParticipantId>,
    },
}

/// One page of the audience.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudiencePage {
    /// Audience members in join order.
    pub entries: Vec<AudienceEntry>,
    /// Cursor for the next page (pass as `after`): the join order of the last entry. `None` on the last page.
    pub next: Option<u64>,
    /// The audience's size.
    pub total: usize,
}

/// One page of chat history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatPage {
    /// The messages, oldest first.
    pub messages: Vec<ChatMessage>,
    /// Cursor for the next older page (pass as `before`): the id of the first message. `None` when nothing is older.
    pub next_before: Option<u64>,
}

/// One audience member in a page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudienceEntry {
    /// Identity.
    pub id: ParticipantId,
    /// Display name.
    pub name: String,
    /// Whether their hand is raised.
    pub hand_raised: bool,
    /// False while their grace period runs.
    pub connected: bool,
}

/// Why an input was refused. A refused input changes nothing and emits nothing.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandError {
    /// The sender's role, or the target's token ceiling, does not allow it.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// The sender or target is not in the room, or there is no such invitation or ban.
    #[error("not found: {0}")]
    NotFound(&'static str),
    /// The room's state does not allow it (e.g. the target is not on stage).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// No free seat on the stage.
    #[error("stage is full")]
    StageFull,
    /// Malformed arguments.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// Join refused: the identity is banned.
    #[error("banned")]
    Banned,
    /// Join refused: the room is closed and the identity is not a guest.
    #[error("not invited")]
    NotInvited,
    /// The room has ended; it accepts no more input.
    #[error("room ended")]
    Ended,
    /// Join refused: the identity or token was revoked (code `unauthorized`, as for any token that is not valid).
    #[error("access revoked")]
    Revoked,
    /// Too many at once: slow mode, or the room's chat flood cap. Nothing changed; try again later.
    #[error("rate limited: {0}")]
    RateLimited(&'static str),
}

impl CommandError {
    /// The stable error code (snake case), as used on the wire.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::StageFull => "stage_full",
            Self::BadRequest(_) => "bad_request",
            Self::Banned => "banned",
            Self::NotInvited => "not_invited",
            Self::Ended => "room_ended",
            Self::Revoked => "unauthorized",
            Self::RateLimited(_) => "rate_limited",
        }
    }
}
