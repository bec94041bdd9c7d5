//! Messages from a client to the hub.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{PinnedLink, Role};

/// The correlation id of a request, echoed in its reply: a JSON number or string chosen by the client.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(untagged)]
pub enum RequestId {
    /// A non-negative integer id.
    Number(u64),
    /// A string id (at most 64 bytes).
    Text(String),
}

/// Every client message: a request with its `id`. The request's fields sit beside `type` and `id`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct ClientMessage {
    /// Correlation id, echoed in the reply.
    pub id: RequestId,
    /// The request itself, tagged by `type`.
    #[serde(flatten)]
    pub request: Request,
}

/// The two fields every client message must have, read first so that a bad message gets a precise error.
#[derive(Deserialize, Debug, Default)]
pub struct Envelope {
    /// The message type, if present and a string.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// The request id, if present and well formed.
    #[serde(default)]
    pub id: Option<RequestId>,
}

/// A client request. `join` must come first; every other request needs a joined connection.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Authenticate with a token and join a room. Must arrive within the auth timeout of connecting.
    Join(JoinRequest),
    /// Leave the room now, without a grace period; the hub then closes the socket (code 1000).
    Leave,
    /// Application-level keepalive; replies `ok` with no result.
    Ping,
    /// Fetch a full snapshot of the room as this participant sees it (for resynchronising).
    GetState,
    /// Audience: ask to speak. In open-mic rooms with a free seat this promotes at once.
    RaiseHand,
    /// Withdraw a raised hand.
    LowerHand,
    /// Moderator: promote a participant whose hand is raised.
    ApproveHand {
        /// The identity to promote.
        participant: String,
        /// Why (moderation requests only): at most 256 characters, no control characters. Carried in the
        /// resulting events and the audit log.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Moderator: invite an audience member to the stage; they must accept before the invite expires.
    InviteToStage {
        /// The identity to invite.
        participant: String,
        /// Why (moderation requests only): at most 256 characters, no control characters. Carried in the
        /// resulting events and the audit log.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Moderator: withdraw an invitation to the stage.
    CancelInvite {
        /// The invited identity.
        participant: String,
        /// Why (moderation requests only): at most 256 characters, no control characters. Carried in the
        /// resulting events and the audit log.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Accept a pending invitation to the stage.
    AcceptInvite,
    /// Decline a pending invitation to the stage.
    DeclineInvite,
    /// Speaker or moderator: leave the stage for the audience.
    StepDown,
    /// Moderator: move a speaker to the audience.
    MoveToAudience {
        /// The speaker's identity.
        participant: String,
        /// Why (moderation requests only): at most 256 characters, no control characters. Carried in the
        /// resulting events and the audit log.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Stage member: mute or unmute yourself.
    SetMuted {
        /// `true` to mute.
        muted: bool,
    },
    /// Moderator: mute a stage member. There is no remote unmute.
    Mute {
        /// The stage member's identity.
        participant: String,
        /// Why (moderation requests only): at most 256 characters, no control characters. Carried in the
        /// resulting events and the audit log.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Moderator: remove a participant from the room; they may join again.
    Kick {
        /// The identity to remove.
        participant: String,
        /// Why (moderation requests only): at most 256 characters, no control characters. Carried in the
        /// resulting events and the audit log.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Moderator: remove a participant and refuse that identity from now on.
    Ban {
        /// The identity to ban (need not be present).
        participant: String,
        /// Why (moderation requests only): at most 256 characters, no control characters. Carried in the
        /// resulting events and the audit log.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Moderator: lift a ban.
    Unban {
        /// The banned identity.
        participant: String,
        /// Why (moderation requests only): at most 256 characters, no control characters. Carried in the
        /// resulting events and the audit log.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Moderator: make a participant a moderator (their token must allow it).
    MakeModerator {
        /// The identity.
        participant: String,
        /// Why (moderation requests only): at most 256 characters, no control characters. Carried in the
        /// resulting events and the audit log.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Moderator: make a moderator a speaker again.
    RevokeModerator {
        /// The identity.
        participant: String,
        /// Why (moderation requests only): at most 256 characters, no control characters. Carried in the
        /// resulting events and the audit log.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Moderator: replace the whole stage in one transition. Everyone on stage and not listed goes to the audience.
    Handover {
        /// The new stage. Members already on stage keep their place in the stage order; newcomers take the stage
        /// in list order after them.
        stage: Vec<StageAssignment>,
        /// Why (moderation requests only): at most 256 characters, no control characters. Carried in the
        /// resulting events and the audit log.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Moderator: change room settings; absent fields stay as they are.
    UpdateSettings {
        /// Raised hands promote at once while seats are free.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        open_mic: Option<bool>,
        /// Only guests (see `invite_to_room`) and moderators may join.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        closed: Option<bool>,
        /// Seats on stage (moderators plus speakers).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stage_capacity: Option<u32>,
        /// Chat on or off (`send_chat` refused with `forbidden` while off).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chat: Option<bool>,
        /// Slow mode for participants who are not moderators, in milliseconds between messages (0: off); at most
        /// one hour (3,600,000).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chat_slow_mode_ms: Option<u32>,
        /// Why (moderation requests only): at most 256 characters, no control characters. Carried in the
        /// resulting events and the audit log.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Moderator: set or clear the room's description and pinned link (see [`RoomInfo`](crate::RoomInfo)). Each
    /// field: absent leaves it as it is, `null` clears it, a value sets it. At least one must be given. Everyone
    /// gets a `room_info` event.
    SetRoomInfo {
        /// Plain text, at most 1,000 characters; newlines and tabs allowed, no other control characters. An empty
        /// string clears it, like `null`.
        #[serde(default, deserialize_with = "double_option", skip_serializing_if = "Option::is_none")]
        #[schemars(with = "Option<String>")]
        description: Option<Option<String>>,
        /// An absolute `http`/`https` URL (at most 2,048 bytes) with an optional title (at most 200 characters).
        #[serde(default, deserialize_with = "double_option", skip_serializing_if = "Option::is_none")]
        #[schemars(with = "Option<PinnedLink>")]
        pinned_link: Option<Option<PinnedLink>>,
        /// Why (moderation requests only): at most 256 characters, no control characters. Carried in the
        /// resulting events and the audit log.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Moderator: lower every raised hand at once. Each raiser gets `hand_lowered` (`cause: "cleared"`).
    ClearHands {
        /// Why (moderation requests only): at most 256 characters, no control characters. Carried in the
        /// resulting events and the audit log.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Anyone joined: send a reaction (one of the hub's kinds, listed in `welcome.reactions`). Reactions are not room
    /// state: they are counted per window and sent to everyone as `reactions` events, never one event per reaction.
    React {
        /// The reaction's kind, such as `clap`: one of `welcome.reactions.kinds`.
        reaction: String,
    },
    /// Anyone joined: post a chat message to the room (while the room's `chat` setting is on). The result is
    /// `{"message_id": N}`; everyone gets a `chat` event.
    SendChat {
        /// The text: 1 to `max_chars` characters after trimming surrounding whitespace; newlines allowed, no other
        /// control characters.
        text: String,
    },
    /// Delete a chat message: a moderator any message, anyone else only their own. Everyone gets `chat_deleted`.
    DeleteChat {
        /// The message's id.
        message_id: u64,
        /// Why: at most 256 characters, no control characters. Carried in the event and the audit log.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Anyone joined: one page of the room's chat history, oldest first. The result is a [`ChatPage`](crate::ChatPage).
    ChatHistory {
        /// Only messages with an id below this (absent: the newest page).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<u64>,
        /// The most messages to return: default 50, at most the hub's `chat.page_limit` (default 100).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Moderator: start recording the room (see "Recording" in PROTOCOL.md). Everyone gets a `recording` event.
    /// `forbidden` when recording is off on this hub or for this room (or session), `conflict` when it records.
    StartRecording {
        /// Why (moderation requests only): at most 256 characters, no control characters. Carried in the
        /// resulting events and the audit log.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Moderator: stop recording; the replay is mixed afterwards (`recording.ready` webhook). `conflict` when the
    /// room does not record.
    StopRecording {
        /// Why (moderation requests only): at most 256 characters, no control characters. Carried in the
        /// resulting events and the audit log.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Anyone, about themselves: opt out of (or back into) recordings. An opted-out speaker's audio is never
    /// written. Shown as `you.recording_opt_out` and, on stage, `recording_opt_out` on the stage member.
    SetRecordingOptOut {
        /// True: never record me.
        opt_out: bool,
    },
    /// Moderator: put an identity on the guest list of a closed room.
    InviteToRoom {
        /// The identity to admit.
        identity: String,
        /// Why (moderation requests only): at most 256 characters, no control characters. Carried in the
        /// resulting events and the audit log.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Moderator: take an identity off the guest list (does not remove them if present).
    UninviteFromRoom {
        /// The identity.
        identity: String,
        /// Why (moderation requests only): at most 256 characters, no control characters. Carried in the
        /// resulting events and the audit log.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Moderator: page through the audience in join order.
    ListAudience {
        /// The cursor from the previous page's `next`; absent for the first page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<u64>,
        /// Page size (default 100, at most the server's page limit).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Moderator: end the room for everyone.
    EndRoom {
        /// Why (moderation requests only): at most 256 characters, no control characters. Carried in the
        /// resulting events and the audit log.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Media: the client's SDP offer (first negotiation, renegotiation, ICE restart). The result is the answer.
    MediaOffer {
        /// The offer SDP: at least one audio m-line; Opus is the only codec accepted.
        sdp: String,
    },
    /// Media: the client's answer to the latest server-sent `media_offer` event.
    MediaAnswer {
        /// The answer SDP.
        sdp: String,
    },
    /// Media: a trickled ICE candidate. The hub's SFU is ICE-lite and learns the client's address from its
    /// connectivity checks, so candidates are accepted and need not be sent.
    MediaCandidate {
        /// The candidate line (`candidate:…`), or an empty string for end-of-candidates.
        candidate: String,
        /// The m-line the candidate belongs to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mid: Option<String>,
    },
}

impl Request {
    /// The wire name of this request's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Join(_) => "join",
            Self::Leave => "leave",
            Self::Ping => "ping",
            Self::GetState => "get_state",
            Self::RaiseHand => "raise_hand",
            Self::LowerHand => "lower_hand",
            Self::ApproveHand { .. } => "approve_hand",
            Self::InviteToStage { .. } => "invite_to_stage",
            Self::CancelInvite { .. } => "cancel_invite",
            Self::AcceptInvite => "accept_invite",
            Self::DeclineInvite => "decline_invite",
            Self::StepDown => "step_down",
            Self::MoveToAudience { .. } => "move_to_audience",
            Self::SetMuted { .. } => "set_muted",
            Self::Mute { .. } => "mute",
            Self::Kick { .. } => "kick",
            Self::Ban { .. } => "ban",
            Self::Unban { .. } => "unban",
            Self::MakeModerator { .. } => "make_moderator",
            Self::RevokeModerator { .. } => "revoke_moderator",
            Self::Handover { .. } => "handover",
            Self::UpdateSettings { .. } => "update_settings",
            Self::SetRoomInfo { .. } => "set_room_info",
            Self::ClearHands { .. } => "clear_hands",
            Self::React { .. } => "react",
            Self::SendChat { .. } => "send_chat",
            Self::DeleteChat { .. } => "delete_chat",
            Self::ChatHistory { .. } => "chat_history",
            Self::StartRecording { .. } => "start_recording",
            Self::StopRecording { .. } => "stop_recording",
            Self::SetRecordingOptOut { .. } => "set_recording_opt_out",
            Self::InviteToRoom { .. } => "invite_to_room",
            Self::UninviteFromRoom { .. } => "uninvite_from_room",
            Self::ListAudience { .. } => "list_audience",
            Self::EndRoom { .. } => "end_room",
            Self::MediaOffer { .. } => "media_offer",
            Self::MediaAnswer { .. } => "media_answer",
            Self::MediaCandidate { .. } => "media_candidate",
        }
    }

    /// Every request `type` this version understands (for telling "unknown type" from "bad fields").
    pub const KINDS: &'static [&'static str] = &[
        "join",
        "leave",
        "ping",
        "get_state",
        "raise_hand",
        "lower_hand",
        "approve_hand",
        "invite_to_stage",
        "cancel_invite",
        "accept_invite",
        "decline_invite",
        "step_down",
        "move_to_audience",
        "set_muted",
        "mute",
        "kick",
        "ban",
        "unban",
        "make_moderator",
        "revoke_moderator",
        "handover",
        "update_settings",
        "set_room_info",
        "clear_hands",
        "react",
        "send_chat",
        "delete_chat",
        "chat_history",
        "start_recording",
        "stop_recording",
        "set_recording_opt_out",
        "invite_to_room",
        "uninvite_from_room",
        "list_audience",
        "end_room",
        "media_offer",
        "media_answer",
        "media_candidate",
    ];
}

/// The `join` request: the first message on every connection.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct JoinRequest {
    /// A signed access token (JWT, HS256) minted by the application or `podium token`.
    pub token: String,
    /// The room to join. Required when the token is valid for any room; otherwise it must match the token's room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// Protocol versions the client speaks; the hub picks the newest it shares. Defaults to `[1]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocols: Option<Vec<u32>>,
    /// The resume token from an earlier `welcome`, to take back a dropped session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<String>,
    /// Join in this role instead of the default (only `audience`, or a stage role for moderator tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
}

/// One seat of a `handover`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
// Error messages reach clients: name the shape, not the Rust type (the default says "struct StageAssignment").
#[serde(expecting = "an object with `participant` and `role`")]
pub struct StageAssignment {
    /// The identity to seat.
    pub participant: String,
    /// `speaker` or `moderator`.
    pub role: Role,
}

/// A field that may be absent (`None`), `null` (`Some(None)`) or a value (`Some(Some(..))`): serde's default reads
/// both absent and `null` as `None`.
fn double_option<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}
