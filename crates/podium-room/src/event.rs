//! Outputs: events with their recipients, disconnects, media permissions, the end; and the views they carry.

use crate::command::Command;
use crate::types::{Actor, ChatMessage, Counts, Millis, ParticipantId, Reason, Recording, Role, RoomInfo, Settings};

/// Something the hub must do. Drain with [`Room::poll_output`](crate::Room::poll_output) after every input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Deliver `event` to `to`. `seq` is the room's sequence number after the transition that produced it.
    Event {
        /// Who receives it (resolved by the hub against the room as it is after the call).
        to: Recipients,
        /// The room's sequence number.
        seq: u64,
        /// The event.
        event: Event,
    },
    /// Close this participant's connection(s): they were removed.
    Disconnect {
        /// Who.
        who: ParticipantId,
        /// Why.
        reason: DisconnectReason,
    },
    /// Media permission changed: `allowed` is "on stage and not muted" (false once they left or the room ended).
    /// Emitted only when the value changes.
    Publish {
        /// Who.
        who: ParticipantId,
        /// May they publish audio now.
        allowed: bool,
    },
    /// Recording permission changed: `recorded` is "the room records, they are on stage and did not opt out"
    /// (false once that stops: the recording stopped, they left the stage or opted out, the room ended). Tell the
    /// media plane to write (or stop writing) their audio. Emitted only when the value changes.
    Record {
        /// Who.
        who: ParticipantId,
        /// Is their audio written now.
        recorded: bool,
    },
    /// The room is over: close every connection and drop the room.
    Ended {
        /// Why.
        reason: EndReason,
    },
    /// For the audit log and webhooks, not for participants: a moderation command (from a moderator or an
    /// administrator) was accepted and changed the room. Emitted after the transition's other outputs, with the
    /// same `seq`; no-ops and refusals emit none.
    Moderated {
        /// The room's sequence number after the transition.
        seq: u64,
        /// Who did it.
        by: Actor,
        /// The command as accepted.
        command: Command,
        /// Why, if they said.
        reason: Option<Reason>,
    },
}

/// Who receives an event.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Recipients {
    /// Every connected participant.
    Everyone,
    /// Moderators and speakers.
    Stage,
    /// Moderators.
    Moderators,
    /// One participant.
    One(ParticipantId),
}

/// Why a participant's connection must be closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DisconnectReason {
    /// Kicked by a moderator; may rejoin.
    Kicked,
    /// Banned by a moderator; refused from now on.
    Banned,
    /// Their identity or token was revoked by an administrator; refused until they present a newer token (identity
    /// revocation) or another token (token revocation).
    Revoked,
}

/// Why the room ended.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// A moderator or an administrator ended it.
    ByModerator {
        /// Who.
        by: Actor,
        /// Why, if they said.
        reason: Option<Reason>,
    },
    /// Nobody was present for `empty_timeout`.
    Empty,
}

/// A domain event (the hub converts it to the wire format).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// To everyone: the stage roster or a member's role, mute or connection changed.
    Stage {
        /// Moderators and speakers, in the order they took the stage.
        stage: Vec<StageMember>,
        /// What changed it.
        cause: StageCause,
    },
    /// To the stage: an audience member joined.
    ParticipantJoined {
        /// Who.
        participant: ParticipantSummary,
    },
    /// To the stage: an audience member left.
    ParticipantLeft {
        /// Who.
        id: ParticipantId,
    },
    /// To everyone, coalesced: head counts.
    Counts(Counts),
    /// To moderators: the hand queue changed (first `hand_queue_event_limit` entries, oldest first).
    HandQueue {
        /// The first raised hands.
        hands: Vec<ParticipantSummary>,
        /// How many hands are raised in all.
        total: usize,
    },
    /// To one participant: their own state changed (role, ceiling, mute, hand position, invitation).
    You(YourState),
    /// To everyone: a moderator changed the settings.
    Settings(Settings),
    /// To everyone: a moderator changed the room's description or pinned link (the whole info, as it is now).
    RoomInfo(RoomInfo),
    /// To the raiser: the room lowered their hand (also a `You` without a hand position, and `HandQueue` to the
    /// moderators). Not sent when they lowered it themselves or took the stage.
    HandLowered(HandLowered),
    /// To everyone: a chat message was posted.
    Chat(ChatMessage),
    /// To everyone: a chat message was deleted.
    ChatDeleted {
        /// The message's id.
        message_id: u64,
        /// Who had posted it (for webhooks and the audit log; not on the wire).
        author: ParticipantId,
        /// Who deleted it: its author, a moderator, or an administrator.
        by: Actor,
        /// Why, if they said.
        reason: Option<Reason>,
    },
    /// To everyone: the room started recording (`Some`) or stopped (`None`).
    Recording(Option<Recording>),
    /// To moderators: an invitation to the stage was accepted, declined, or expired.
    InviteAnswered {
        /// The invited participant.
        id: ParticipantId,
        /// Whether they accepted (acceptance also shows as a `Stage` event).
        accepted: bool,
        /// True when nobody answered before the invitation expired.
        expired: bool,
    },
}

/// Why the room lowered a raised hand.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HandLowered {
    /// It was up for `hand_ttl`.
    Expired,
    /// A moderator or administrator cleared the queue (`ClearHands`).
    Cleared {
        /// Who.
        by: Actor,
        /// Why, if they said.
        reason: Option<Reason>,
    },
}

/// One seat on the stage.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StageMember {
    /// Identity.
    pub id: ParticipantId,
    /// Display name.
    pub name: String,
    /// `Speaker` or `Moderator`.
    pub role: Role,
    /// Muted.
    pub muted: bool,
    /// False while their grace period runs.
    pub connected: bool,
    /// Opted out of recordings.
    pub recording_opt_out: bool,
}

/// A participant's identity and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ParticipantSummary {
    /// Identity.
    pub id: ParticipantId,
    /// Display name.
    pub name: String,
}

/// What changed the stage. `by` names the moderator or administrator who did it, `reason` what they said.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum StageCause {
    /// Joined the room straight onto the stage.
    Joined(ParticipantId),
    /// A stage member left the room (explicitly, or their grace period ran out).
    Left(ParticipantId),
    /// Promoted from the audience: hand approved by `by`, or open mic when `by` is `None`.
    Promoted {
        /// Who.
        id: ParticipantId,
        /// The approving moderator or administrator.
        by: Option<Actor>,
        /// Why, if they said.
        reason: Option<Reason>,
    },
    /// Accepted an invitation.
    InviteAccepted(ParticipantId),
    /// Went back to the audience by choice.
    SteppedDown(ParticipantId),
    /// Sent back to the audience by a moderator.
    MovedToAudience {
        /// Who.
        id: ParticipantId,
        /// The moderator or administrator.
        by: Actor,
        /// Why, if they said.
        reason: Option<Reason>,
    },
    /// Muted, by a moderator or by themselves (`by` is `None`).
    Muted {
        /// Who.
        id: ParticipantId,
        /// The moderator or administrator.
        by: Option<Actor>,
        /// Why, if they said.
        reason: Option<Reason>,
    },
    /// Unmuted themselves.
    Unmuted(ParticipantId),
    /// Made a moderator.
    ModeratorGranted {
        /// Who.
        id: ParticipantId,
        /// The moderator or administrator.
        by: Actor,
        /// Why, if they said.
        reason: Option<Reason>,
    },
    /// No longer a moderator.
    ModeratorRevoked {
        /// Who.
        id: ParticipantId,
        /// The moderator or administrator.
        by: Actor,
        /// Why, if they said.
        reason: Option<Reason>,
    },
    /// Kicked or banned by a moderator.
    Removed {
        /// Who.
        id: ParticipantId,
        /// The moderator or administrator.
        by: Actor,
        /// Why, if they said.
        reason: Option<Reason>,
    },
    /// Removed because an administrator revoked their identity or token.
    Revoked {
        /// Who.
        id: ParticipantId,
        /// The administrator.
        by: Actor,
        /// Why, if they said.
        reason: Option<Reason>,
    },
    /// A moderator replaced the whole stage.
    Handover {
        /// The moderator or administrator.
        by: Actor,
        /// Why, if they said.
        reason: Option<Reason>,
    },
    /// The last moderator went; the longest-serving eligible speaker became moderator.
    Succession(ParticipantId),
    /// A stage member's connection dropped; the seat is kept for the grace period.
    Disconnected(ParticipantId),
    /// A stage member's session was taken over by a new connection (back within the grace period, or a duplicate
    /// connection; their token's name and ceiling now apply).
    Reconnected(ParticipantId),
    /// A stage member opted out of recordings, or back in.
    RecordingOptOut(ParticipantId),
}

/// A participant's own state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct YourState {
    /// Role now.
    pub role: Role,
    /// The highest role their token allows.
    pub ceiling: Role,
    /// Muted (always true in the audience).
    pub muted: bool,
    /// 1-based place in the hand queue, when raised.
    pub hand_position: Option<u32>,
    /// When the raised hand expires (`None` when not raised, or hands never expire).
    pub hand_expires_at: Option<Millis>,
    /// An open invitation to the stage.
    pub invite: Option<InviteView>,
    /// Opted out of recordings.
    pub recording_opt_out: bool,
}

/// The room as one participant sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Room name.
    pub room: String,
    /// Sequence number.
    pub seq: u64,
    /// Settings.
    pub settings: Settings,
    /// Description and pinned link.
    pub info: RoomInfo,
    /// The recording in progress.
    pub recording: Option<Recording>,
    /// The stage roster.
    pub stage: Vec<StageMember>,
    /// Current head counts.
    pub counts: Counts,
    /// Their own state.
    pub you: YourState,
    /// For moderators only: the first `hand_queue_event_limit` raised hands and the total.
    pub hands: Option<(Vec<ParticipantSummary>, usize)>,
    /// The last `chat_snapshot` chat messages, oldest first.
    pub chat: Vec<ChatMessage>,
    /// Older chat messages exist than those in `chat`.
    pub chat_more: bool,
}

/// The room as an administrator sees it ([`Room::view`](crate::Room::view), `GetState` from an administrator): what a
/// moderator sees, without a participant's own state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomView {
    /// Room name.
    pub room: String,
    /// Sequence number.
    pub seq: u64,
    /// Settings.
    pub settings: Settings,
    /// Never ended by the empty timeout.
    pub persistent: bool,
    /// May be recorded (not created with `record: false`, no unrecorded summit slot on).
    pub recordable: bool,
    /// Description and pinned link.
    pub info: RoomInfo,
    /// The recording in progress.
    pub recording: Option<Recording>,
    /// The stage roster.
    pub stage: Vec<StageMember>,
    /// Current head counts.
    pub counts: Counts,
    /// The first `hand_queue_event_limit` raised hands and the total.
    pub hands: (Vec<ParticipantSummary>, usize),
}

/// Everything about one participant, for the hub and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParticipantView {
    /// Identity.
    pub id: ParticipantId,
    /// Display name.
    pub name: String,
    /// Role now.
    pub role: Role,
    /// The highest role their token allows.
    pub ceiling: Role,
    /// Muted.
    pub muted: bool,
    /// False while their grace period runs.
    pub connected: bool,
    /// 1-based place in the hand queue.
    pub hand_position: Option<u32>,
    /// Holds an invitation to the stage.
    pub invited: bool,
    /// The id (`jti`) of the token the session joined with.
    pub token_id: Option<String>,
    /// When that token was issued (see [`Join::issued_at`](crate::Join::issued_at)).
    pub issued_at: Millis,
}

/// An invitation to the stage, as its holder sees it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InviteView {
    /// The inviting moderator or administrator.
    pub by: Actor,
    /// When it lapses.
    pub expires_at: Millis,
}
