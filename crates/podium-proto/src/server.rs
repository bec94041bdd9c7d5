//! Messages from the hub to a client: replies and events.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{ErrorCode, RequestId, Role};

/// Every message the hub sends. `ok` and `error` answer requests; every other variant is an event. Room events
/// carry the room's sequence number `seq` (all events from one room transition share one `seq`; it only grows).
/// Media events (`media_offer`, `media_state`, `media_tracks`, `active_speakers`) describe this connection's media
/// session, not the room's state, and carry no `seq`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// A request succeeded.
    Ok {
        /// The request's id.
        id: RequestId,
        /// The request's result, for requests that have one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<Reply>,
    },
    /// A request failed, or a message could not be read as a request (then `id` is null).
    Error {
        /// The request's id, when it could be read.
        id: Option<RequestId>,
        /// The stable error code.
        code: ErrorCode,
        /// A human-readable explanation (not stable; do not match on it).
        message: String,
    },
    /// The stage changed: the full roster, and what changed it.
    Stage {
        /// Room sequence number.
        seq: u64,
        /// Moderators and speakers, in the order they took the stage.
        stage: Vec<StageMember>,
        /// What caused this change.
        cause: StageCause,
    },
    /// To stage members only: an audience member joined.
    ParticipantJoined {
        /// Room sequence number.
        seq: u64,
        /// Who joined.
        participant: Participant,
    },
    /// To stage members only: an audience member left.
    ParticipantLeft {
        /// Room sequence number.
        seq: u64,
        /// The identity that left.
        participant: String,
    },
    /// Head counts, coalesced: at most about one per second.
    Counts {
        /// Room sequence number.
        seq: u64,
        /// The counts.
        counts: Counts,
    },
    /// To moderators: the hand queue changed.
    HandQueue {
        /// Room sequence number.
        seq: u64,
        /// The queue.
        queue: HandQueue,
    },
    /// To one participant: their own state changed (role, mute, hand position, invitation).
    You {
        /// Room sequence number.
        seq: u64,
        /// The participant's own state.
        you: YourState,
    },
    /// The room's settings changed.
    Settings {
        /// Room sequence number.
        seq: u64,
        /// The new settings.
        settings: RoomSettings,
    },
    /// A moderator (or administrator) changed the room's description or pinned link: the whole info as it is now
    /// (an empty object when both were cleared).
    RoomInfo {
        /// Room sequence number.
        seq: u64,
        /// The description and pinned link.
        info: RoomInfo,
    },
    /// To you: the room lowered your raised hand, because it was up for the room's hand time-to-live
    /// (`cause: "expired"`) or a moderator cleared every hand (`cause: "cleared"`, with `by` or `by_admin`, and
    /// `reason` if they gave one). A `you` event without `hand_position` comes with it. Not sent when you lowered it
    /// yourself or were brought on stage.
    HandLowered {
        /// Room sequence number.
        seq: u64,
        /// Why it went down.
        cause: HandLoweredCause,
        /// The moderator who cleared the hands.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// The administrator who cleared the hands (then `by` is absent). Admin names are not identities.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by_admin: Option<String>,
        /// Why, when the moderator said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The room's reactions of one window, counted by kind (only kinds with a non-zero count; never empty). Not
    /// room state, so no `seq`. Each hub serving the room sends at most one per window: a client connected to a
    /// room that several hubs serve gets at most one per window from each.
    Reactions {
        /// Reactions per kind in this window.
        counts: BTreeMap<String, u64>,
        /// The window's length in milliseconds.
        window_ms: u32,
    },
    /// A chat message was posted. Sent to everyone.
    Chat {
        /// Room sequence number.
        seq: u64,
        /// The message.
        message: ChatMessage,
    },
    /// A chat message was deleted (by its author, a moderator, or an administrator). Sent to everyone.
    ChatDeleted {
        /// Room sequence number.
        seq: u64,
        /// The deleted message's id.
        message_id: u64,
        /// The participant who deleted it (its author or a moderator).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// The administrator who deleted it (then `by` is absent). Admin names are not identities.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by_admin: Option<String>,
        /// Why, when they said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// To everyone: the room started recording (`recording` is the recording) or stopped (`recording: null`).
    Recording {
        /// Room sequence number.
        seq: u64,
        /// The recording now running, or `null` when it stopped.
        recording: Option<RecordingState>,
    },
    /// To moderators: an invitation to the stage was accepted, declined, or expired.
    InviteAnswered {
        /// Room sequence number.
        seq: u64,
        /// The invited identity.
        participant: String,
        /// Whether they accepted (acceptance also shows as a `stage` event).
        accepted: bool,
        /// True when nobody answered before the invitation expired.
        expired: bool,
    },
    /// The hub had to drop events for this client (it fell behind); this full snapshot replaces them.
    Resync {
        /// Room sequence number of the snapshot.
        seq: u64,
        /// The room as this participant sees it.
        state: Box<RoomSnapshot>,
    },
    /// Media: the SFU renegotiates (it needs another downstream audio slot). Answer with a `media_answer` request.
    MediaOffer {
        /// The offer SDP.
        sdp: String,
    },
    /// Media: this connection's WebRTC transport changed state.
    MediaState {
        /// The new state.
        state: MediaState,
    },
    /// Media: which downstream slot (m-line) now carries whose audio.
    MediaTracks {
        /// Every downstream slot of this connection.
        tracks: Vec<MediaTrack>,
    },
    /// Media: who started or stopped speaking, from the audio level the speakers' clients report (RFC 6464).
    /// Only changes are sent, at most a few times per second.
    ActiveSpeakers {
        /// Stage members now speaking (or whose level changed), loudest first.
        speaking: Vec<Speaking>,
        /// Identities that stopped speaking.
        stopped: Vec<String>,
    },
    /// Media: the room's audio moved to another hub (its media hub died or is draining). Every peer connection made
    /// in an earlier media epoch is dead: close it and negotiate a new one with `media_offer`. Roles are unaffected.
    MediaMoved {
        /// The room's new media epoch (as in [`RoomSnapshot::media_epoch`]).
        media_epoch: u64,
    },
    /// Summit stages only: the stage's programme now and next (see [`ScheduleView`]). Sent right after the `join`
    /// reply in a scheduled stage room and in its backstage room, then whenever it changes (a slot starts or ends,
    /// backstage opens, a release moves a slot, a check-in). Each message is the whole view, never a diff: a
    /// client keeps the last one. Not part of the room's state: no `seq`.
    Schedule(Box<ScheduleView>),
    /// Fresh TURN credentials for this connection's peer connections (see [`IceServers`]), sent when half the
    /// lifetime of the last ones has passed, so that a connected client always holds credentials valid for at
    /// least half the configured lifetime. Only on hubs with TURN configured. Not room state: no `seq`.
    IceServers(IceServers),
}

/// The ICE servers (TURN) a participant's peer connections may use, with credentials minted by the hub for this
/// participant (the TURN REST API scheme: `username` is `<expiry>:<tag>`, `credential` an HMAC of it under the
/// secret the hub shares with the TURN server). Each entry has the fields of WebRTC's `RTCIceServer`, so the list
/// goes into a peer connection's configuration as it is.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct IceServers {
    /// The servers, as `RTCIceServer` dictionaries.
    pub servers: Vec<IceServer>,
    /// When the credentials expire, in milliseconds since the Unix epoch (hub clock): after that the TURN server
    /// refuses new allocations with them. An allocation made before keeps working as long as its client refreshes
    /// it.
    pub expires_at_ms: u64,
}

/// One ICE server, shaped like WebRTC's `RTCIceServer`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct IceServer {
    /// `turn:` and `turns:` URLs (RFC 7065), e.g. `turn:turn.example.com:3478?transport=udp`.
    pub urls: Vec<String>,
    /// The TURN username: `<expiry in seconds since the Unix epoch>:<opaque tag of the participant>`.
    pub username: String,
    /// The TURN password: base64 of HMAC-SHA1(secret, username).
    pub credential: String,
}

/// What a summit stage runs now and next, with times. Times are milliseconds since the Unix epoch (UTC);
/// `server_time_ms` is the hub's clock when the view was made, so a client can correct its own for countdowns.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct ScheduleView {
    /// The summit's id.
    pub summit: String,
    /// The stage's id in the summit.
    pub stage: String,
    /// The stage's room.
    pub room: String,
    /// The stage's backstage room (where a slot's people check in before it starts).
    pub backstage: String,
    /// The release the stage runs.
    pub release: u64,
    /// The slot on stage now, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now: Option<ScheduledSlot>,
    /// The next slots (not yet started, not canceled), soonest first, at most three.
    pub next: Vec<ScheduledSlot>,
    /// The hub's clock when this view was made.
    pub server_time_ms: u64,
}

/// One slot of a stage's programme.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct ScheduledSlot {
    /// The slot's GUID (stable across releases; the iCalendar `UID` is `{guid}@{host}`).
    pub guid: String,
    /// Title.
    pub title: String,
    /// A break (nobody on stage).
    #[serde(default)]
    pub is_break: bool,
    /// `scheduled`, `backstage`, `active`, `completed` or `canceled`.
    pub status: String,
    /// Start (as it stands now: an overrun or `extend` moves it).
    pub start_ms: u64,
    /// End (as it stands now).
    pub end_ms: u64,
    /// The slot's people, in the schedule's order.
    pub people: Vec<ScheduledPerson>,
}

/// A person of a slot.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct ScheduledPerson {
    /// Identity (the same as in access tokens).
    pub id: String,
    /// Display name, when the schedule has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `host`, `co_host`, `speaker` or `moderator`.
    pub role: String,
    /// Checked in (joined the backstage, or checked in through the admin API).
    #[serde(default)]
    pub checked_in: bool,
}

/// The state of a connection's WebRTC transport.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MediaState {
    /// ICE and DTLS are up; audio flows.
    Connected,
    /// Connectivity was lost; it may come back by itself.
    Disconnected,
    /// The transport failed: send a new `media_offer` (with an ICE restart). Roles are unaffected.
    Failed,
}

/// One downstream audio slot.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct MediaTrack {
    /// The m-line's `mid`.
    pub mid: String,
    /// Whose audio the slot carries now, or null when it is idle.
    pub participant: Option<String>,
}

/// A stage member who is speaking.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct Speaking {
    /// The identity.
    pub participant: String,
    /// Loudness, 0 (silence) to 127 (loudest): 127 minus the RFC 6464 level in -dBov.
    pub level: u8,
}

/// A request's result. Which shape comes back depends on the request (see `proto/PROTOCOL.md`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub enum Reply {
    /// Result of `join`.
    Welcome(Box<Welcome>),
    /// Result of `get_state`.
    State(Box<RoomSnapshot>),
    /// Result of `list_audience`.
    Audience(AudiencePage),
    /// Result of `raise_hand`.
    Hand {
        /// 1-based place in the hand queue, or null when promoted at once.
        position: Option<u32>,
        /// True when an open-mic room put the participant on stage at once.
        promoted: bool,
    },
    /// Result of `media_offer`.
    Answer {
        /// The SFU's answer SDP.
        sdp: String,
    },
    /// Result of `send_chat`.
    ChatSent {
        /// The new message's id.
        message_id: u64,
    },
    /// Result of `chat_history`.
    Chat(ChatPage),
}

/// The result of `join`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct Welcome {
    /// The negotiated protocol version.
    pub protocol: u32,
    /// Your identity and display name.
    pub participant: Participant,
    /// Present this in the next `join` to take back this session after a dropped connection.
    pub resume_token: String,
    /// True when this connection took over an existing session (its role, hand and mute state were kept).
    pub resumed: bool,
    /// How long a dropped connection's state is kept, in milliseconds.
    pub grace_ms: u64,
    /// How often the hub pings, in milliseconds; a client silent for the heartbeat timeout (by default three
    /// intervals) is disconnected (close code 4008).
    pub heartbeat_interval_ms: u64,
    /// The limits the hub enforces on this connection.
    pub limits: Limits,
    /// The room as you see it.
    pub state: RoomSnapshot,
    /// TURN servers and this participant's credentials for them; absent when the hub has no TURN configured (the
    /// SFU's own address is then all a client needs). Fresh ones follow in `ice_servers` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ice_servers: Option<IceServers>,
    /// The reactions this hub accepts and how it counts them (absent from hubs without reactions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reactions: Option<ReactionsInfo>,
}

/// The hub's reactions, announced in `welcome`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct ReactionsInfo {
    /// The kinds `react` accepts (each 1-32 characters of `a-z`, `0-9`, `_`).
    pub kinds: Vec<String>,
    /// The length of a counting window in milliseconds: at most one `reactions` event per window (per hub).
    pub window_ms: u32,
    /// How many reactions per second one participant may send (sustained; a short burst may go above it).
    pub per_second: u32,
}

/// One chat message.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct ChatMessage {
    /// The message's id: it only grows within a room (shared by every hub serving it).
    pub id: u64,
    /// Who posted it (identity and display name at the time).
    pub from: Participant,
    /// The text (trimmed; may hold newlines). Show it as text, never as HTML.
    pub text: String,
    /// When the hub accepted it, in milliseconds since the Unix epoch (hub clock).
    pub at_ms: u64,
}

/// One page of chat history (`chat_history`, and the admin API's `GET /v1/admin/rooms/{room}/chat`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct ChatPage {
    /// The messages, oldest first (deleted ones are left out).
    pub messages: Vec<ChatMessage>,
    /// Pass as `before` for the next older page; absent when there is nothing older.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<u64>,
}

/// Per-connection limits, announced in `welcome`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted text frame, in bytes.
    pub max_message_bytes: u32,
    /// Sustained requests per second.
    pub requests_per_second: u32,
    /// Requests allowed in a burst.
    pub request_burst: u32,
}

/// A room as one participant sees it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct RoomSnapshot {
    /// The room's name.
    pub room: String,
    /// Room sequence number of this snapshot: it already reflects every event with a `seq` up to and including
    /// this one, so ignore events whose `seq` is not greater.
    pub seq: u64,
    /// Room settings.
    pub settings: RoomSettings,
    /// The room's description and pinned link; absent when it has neither.
    #[serde(default, skip_serializing_if = "RoomInfo::is_empty")]
    pub info: RoomInfo,
    /// The recording running now; absent when the room does not record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<RecordingState>,
    /// Moderators and speakers, in the order they took the stage.
    pub stage: Vec<StageMember>,
    /// Head counts.
    pub counts: Counts,
    /// Your own state.
    pub you: YourState,
    /// The hand queue: present for moderators only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hands: Option<HandQueue>,
    /// Which incarnation of the room's media this snapshot belongs to: it changes whenever the room's audio moves
    /// to another hub. A peer connection negotiated under another epoch is dead: make a new one. 0 when the hub
    /// runs no media (then the field is omitted).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub media_epoch: u64,
    /// The room's last chat messages (at most the hub's `chat.snapshot_messages`, default 50), oldest first;
    /// absent when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chat: Vec<ChatMessage>,
    /// True when older chat messages exist than those in `chat` (page back with `chat_history`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub chat_more: bool,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `skip_serializing_if` passes a reference.
fn is_false(b: &bool) -> bool {
    !*b
}

/// An identity and its display name.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct Participant {
    /// The identity (the token's subject).
    pub id: String,
    /// Display name.
    pub name: String,
}

/// One seat on the stage.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct StageMember {
    /// The identity.
    pub id: String,
    /// Display name.
    pub name: String,
    /// `moderator` or `speaker`.
    pub role: Role,
    /// Whether they are muted.
    pub muted: bool,
    /// False while their connection is down and the grace period runs.
    pub connected: bool,
    /// True when they opted out of recordings (`set_recording_opt_out`): their audio is never written. Omitted
    /// when false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub recording_opt_out: bool,
}

/// A recording in progress (see "Recording" in PROTOCOL.md).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct RecordingState {
    /// The recording's id (`rec_` and 20 lowercase letters and digits): the id of its replay in the admin API and
    /// the `recording.*` webhooks.
    pub id: String,
    /// When it started, in milliseconds since the Unix epoch (server clock).
    pub started_at_ms: u64,
    /// The moderator who started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The administrator who started it (then `by` is absent). Admin names are not identities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_admin: Option<String>,
}

/// What changed the stage. `by` names the moderator who did it, when one did; `by_admin` the administrator, when
/// one did (never both); `reason` what they said, if anything.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StageCause {
    /// Joined the room straight onto the stage (only moderator tokens do).
    Joined {
        /// Who.
        participant: String,
    },
    /// A stage member left the room (`leave`, or their grace period ran out).
    Left {
        /// Who.
        participant: String,
    },
    /// Promoted from the audience (hand approved, or open mic when `by` is absent).
    Promoted {
        /// Who.
        participant: String,
        /// The approving moderator.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// The administrator, when one did it (then `by` is absent). Admin names are not identities.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by_admin: Option<String>,
        /// Why, when they said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Accepted an invitation to the stage.
    InviteAccepted {
        /// Who.
        participant: String,
    },
    /// Left the stage by choice.
    SteppedDown {
        /// Who.
        participant: String,
    },
    /// Moved to the audience by a moderator.
    MovedToAudience {
        /// Who.
        participant: String,
        /// The moderator, when a moderator did it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// The administrator, when one did it (then `by` is absent). Admin names are not identities.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by_admin: Option<String>,
        /// Why, when they said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Muted (by themselves when `by` is absent).
    Muted {
        /// Who.
        participant: String,
        /// The moderator.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// The administrator, when one did it (then `by` is absent). Admin names are not identities.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by_admin: Option<String>,
        /// Why, when they said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Unmuted themselves.
    Unmuted {
        /// Who.
        participant: String,
    },
    /// Made a moderator.
    ModeratorGranted {
        /// Who.
        participant: String,
        /// The moderator, when a moderator did it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// The administrator, when one did it (then `by` is absent). Admin names are not identities.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by_admin: Option<String>,
        /// Why, when they said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// No longer a moderator.
    ModeratorRevoked {
        /// Who.
        participant: String,
        /// The moderator, when a moderator did it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// The administrator, when one did it (then `by` is absent). Admin names are not identities.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by_admin: Option<String>,
        /// Why, when they said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Removed (kicked or banned) by a moderator.
    Removed {
        /// Who.
        participant: String,
        /// The moderator, when a moderator did it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// The administrator, when one did it (then `by` is absent). Admin names are not identities.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by_admin: Option<String>,
        /// Why, when they said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Several seats changed in one step: a moderator (or administrator) replaced the whole stage (`handover`), or
    /// an administrator, such as the summit scheduler at a slot's start, handed over part of it (some members to
    /// the audience, others onto the stage, moderator rights moved). The new stage is in the event.
    Handover {
        /// The moderator, when a moderator did it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// The administrator, when one did it (then `by` is absent). Admin names are not identities.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by_admin: Option<String>,
        /// Why, when they said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Removed because an administrator revoked their identity or token.
    Revoked {
        /// Who.
        participant: String,
        /// Always absent (only administrators revoke); kept for the shape every `by` cause shares.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// The administrator, when one did it (then `by` is absent). Admin names are not identities.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by_admin: Option<String>,
        /// Why, when they said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The last moderator left; the longest-serving eligible speaker became moderator.
    Succession {
        /// The new moderator.
        participant: String,
    },
    /// A stage member's connection dropped; their seat is kept for the grace period.
    Disconnected {
        /// Who.
        participant: String,
    },
    /// A new connection took over a stage member's session (back within the grace period, or a second connection
    /// whose token changed the name or lowered the role).
    Reconnected {
        /// Who.
        participant: String,
    },
    /// A stage member opted out of recordings or back in (`set_recording_opt_out`): see their
    /// `recording_opt_out`.
    RecordingOptOut {
        /// Who.
        participant: String,
    },
}

/// Head counts.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Counts {
    /// Moderators plus speakers.
    pub stage: u32,
    /// Everyone else.
    pub audience: u32,
    /// Raised hands.
    pub hands: u32,
    /// Everyone present.
    pub total: u32,
}

/// The hand queue, oldest first (only the first entries; `total` counts all).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct HandQueue {
    /// The first raised hands, oldest first.
    pub hands: Vec<Participant>,
    /// How many hands are raised in all.
    pub total: u32,
}

/// A participant's own state.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct YourState {
    /// Current role.
    pub role: Role,
    /// The highest role the token allows.
    pub ceiling: Role,
    /// Whether you are muted (always true in the audience).
    pub muted: bool,
    /// 1-based place in the hand queue, when your hand is raised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hand_position: Option<u32>,
    /// When your raised hand expires, in milliseconds since the Unix epoch (server clock); absent when your hand is
    /// down or the room's hands never expire. Raising again after it went down starts a new period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hand_expires_at_ms: Option<u64>,
    /// A pending invitation to the stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite: Option<Invite>,
    /// True when you opted out of recordings (`set_recording_opt_out`). Omitted when false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub recording_opt_out: bool,
}

/// A pending invitation to the stage.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct Invite {
    /// The inviting moderator, when a moderator invited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The inviting administrator, when an administrator invited (then `by` is absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_admin: Option<String>,
    /// When it expires, in milliseconds since the Unix epoch (server clock).
    pub expires_at_ms: u64,
}

/// The room's description and pinned link, set by moderators (`set_room_info`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomInfo {
    /// Plain text, at most 1,000 characters; may hold newlines. Show it as text, never as HTML.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A link pinned for everyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_link: Option<PinnedLink>,
}

impl RoomInfo {
    /// Neither a description nor a link.
    pub fn is_empty(&self) -> bool {
        self.description.is_none() && self.pinned_link.is_none()
    }
}

/// A pinned link.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct PinnedLink {
    /// An absolute `http://` or `https://` URL with a host, at most 2,048 bytes, without whitespace.
    pub url: String,
    /// Text to show for it, at most 200 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// Why the room lowered a raised hand.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HandLoweredCause {
    /// It was raised for the room's hand time-to-live.
    Expired,
    /// A moderator or administrator cleared every raised hand.
    Cleared,
}

/// Room settings a moderator can change.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoomSettings {
    /// Raised hands promote at once while seats are free.
    pub open_mic: bool,
    /// Only guests and moderators may join.
    pub closed: bool,
    /// Seats on stage (moderators plus speakers).
    pub stage_capacity: u32,
    /// Chat is on: participants may post (`send_chat`). Default true.
    #[serde(default = "yes")]
    pub chat: bool,
    /// Slow mode: how long a participant who is not a moderator waits between chat messages, in milliseconds
    /// (0: off).
    #[serde(default)]
    pub chat_slow_mode_ms: u32,
}

fn yes() -> bool {
    true
}

/// One page of the audience list.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct AudiencePage {
    /// Audience members in join order.
    pub entries: Vec<AudienceEntry>,
    /// Cursor for the next page (`after`), absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
    /// Audience size.
    pub total: u32,
}

/// One audience member in a page.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct AudienceEntry {
    /// The identity.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Whether their hand is raised.
    pub hand_raised: bool,
    /// False while their connection is down and the grace period runs.
    pub connected: bool,
}

impl ServerMessage {
    /// An `error` reply.
    pub fn error(id: Option<RequestId>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error { id, code, message: message.into() }
    }

    /// Serialises to a JSON text frame.
    pub fn to_json(&self) -> String {
        // unwrap: these types hold only strings, numbers, bools, vectors and maps with string keys, which
        // serde_json always serialises.
        #[allow(clippy::unwrap_used)]
        serde_json::to_string(self).unwrap()
    }
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `skip_serializing_if` passes a reference.
fn is_zero(n: &u64) -> bool {
    *n == 0
}
