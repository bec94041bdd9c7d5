//! The admin API's JSON bodies (request and response), with their OpenAPI schemas.

use podium_room::{self as room, Room};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Scope;

/// A role in a room.
#[derive(Serialize, Deserialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ApiRole {
    Audience,
    Speaker,
    Moderator,
}

impl From<room::Role> for ApiRole {
    fn from(r: room::Role) -> Self {
        match r {
            room::Role::Audience => Self::Audience,
            room::Role::Speaker => Self::Speaker,
            room::Role::Moderator => Self::Moderator,
        }
    }
}

impl From<ApiRole> for room::Role {
    fn from(r: ApiRole) -> Self {
        match r {
            ApiRole::Audience => Self::Audience,
            ApiRole::Speaker => Self::Speaker,
            ApiRole::Moderator => Self::Moderator,
        }
    }
}

/// A room's settings.
#[derive(Serialize, ToSchema, Clone, Copy, Debug)]
pub(crate) struct SettingsView {
    /// Anyone who raises a hand goes on stage while a seat is free.
    pub(crate) open_mic: bool,
    /// Only identities on the guest list may join.
    pub(crate) closed: bool,
    /// Seats on the stage.
    pub(crate) stage_capacity: u32,
    /// Chat is on.
    pub(crate) chat: bool,
    /// Slow mode: ms a participant who is not a moderator waits between chat messages (0: off).
    pub(crate) chat_slow_mode_ms: u32,
}

/// A room's description and pinned link (both absent when unset).
#[derive(Serialize, ToSchema, Clone, Debug)]
pub(crate) struct InfoView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) pinned_link: Option<LinkView>,
}

/// A pinned link.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct LinkView {
    /// An absolute `http://` or `https://` URL with a host, at most 2,048 bytes, without whitespace.
    pub(crate) url: String,
    /// At most 200 characters, no control characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) title: Option<String>,
}

/// The description and pinned link to set: an absent field stays as it is, `null` clears it. At least one.
#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetInfo {
    /// Plain text, at most 1,000 characters; newlines and tabs allowed, no other control characters.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub(crate) description: Option<Option<String>>,
    /// The link to pin.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<LinkView>)]
    pub(crate) pinned_link: Option<Option<LinkView>>,
    /// At most 256 characters, no control characters; recorded in the audit log and webhooks.
    pub(crate) reason: Option<String>,
}

/// Absent (`None`), `null` (`Some(None)`) or a value.
fn double_option<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Head counts.
#[derive(Serialize, ToSchema, Clone, Copy, Debug)]
pub(crate) struct CountsView {
    pub(crate) stage: u32,
    pub(crate) audience: u32,
    /// Raised hands.
    pub(crate) hands: u32,
    pub(crate) total: u32,
}

/// One stage member.
#[derive(Serialize, ToSchema, Clone, Debug)]
pub(crate) struct StageMemberView {
    pub(crate) identity: String,
    pub(crate) name: String,
    pub(crate) role: ApiRole,
    pub(crate) muted: bool,
    /// False while their grace period runs.
    pub(crate) connected: bool,
}

/// A room.
#[derive(Serialize, ToSchema, Clone, Debug)]
pub(crate) struct RoomInfo {
    pub(crate) name: String,
    /// The room's sequence number (one per transition).
    pub(crate) seq: u64,
    /// Never ended by the empty timeout; only an explicit end ends it.
    pub(crate) persistent: bool,
    pub(crate) settings: SettingsView,
    /// The description and pinned link.
    pub(crate) info: InfoView,
    pub(crate) counts: CountsView,
    pub(crate) stage: Vec<StageMemberView>,
    /// Banned identities.
    pub(crate) bans: Vec<String>,
    /// The closed-room guest list.
    pub(crate) guests: Vec<String>,
}

impl RoomInfo {
    pub(crate) fn of(room: &Room, state: &room::RoomState) -> Self {
        let view = room.view();
        Self {
            name: view.room,
            seq: view.seq,
            persistent: view.persistent,
            settings: SettingsView {
                open_mic: view.settings.open_mic,
                closed: view.settings.closed,
                stage_capacity: view.settings.stage_capacity,
                chat: view.settings.chat,
                chat_slow_mode_ms: view.settings.chat_slow_mode_ms,
            },
            info: InfoView {
                description: view.info.description,
                pinned_link: view.info.pinned_link.map(|l| LinkView { url: l.url, title: l.title }),
            },
            counts: CountsView {
                stage: view.counts.stage,
                audience: view.counts.audience,
                hands: view.counts.hands,
                total: view.counts.total,
            },
            stage: view
                .stage
                .into_iter()
                .map(|m| StageMemberView {
                    identity: m.id.as_str().to_owned(),
                    name: m.name,
                    role: m.role.into(),
                    muted: m.muted,
                    connected: m.connected,
                })
                .collect(),
            bans: state.bans.iter().map(|b| b.as_str().to_owned()).collect(),
            guests: state.guests.iter().map(|g| g.as_str().to_owned()).collect(),
        }
    }
}

/// One page of rooms.
#[derive(Serialize, ToSchema, Debug)]
pub(crate) struct RoomPage {
    pub(crate) rooms: Vec<RoomInfo>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) next: Option<String>,
}

/// Paging of a list.
#[derive(Deserialize, IntoParams, Debug, Default)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// The `next` of the previous page.
    pub(crate) cursor: Option<String>,
    /// Page size, 1-100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub(crate) limit: Option<u32>,
}

/// Paging and a role filter.
#[derive(Deserialize, IntoParams, Debug, Default)]
#[into_params(parameter_in = Query)]
pub(crate) struct ParticipantQuery {
    /// The `next` of the previous page.
    pub(crate) cursor: Option<String>,
    /// Page size, 1-100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub(crate) limit: Option<u32>,
    /// Only participants with this role.
    pub(crate) role: Option<ApiRole>,
}

/// A new room.
#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateRoom {
    /// 1-128 characters of `A-Z a-z 0-9 . _ -`.
    pub(crate) name: String,
    pub(crate) open_mic: Option<bool>,
    pub(crate) closed: Option<bool>,
    /// Seats on the stage (1 to the hub's `room.max_stage_capacity`).
    pub(crate) stage_capacity: Option<u32>,
    /// Default true: a room created through the API stays until it is ended.
    pub(crate) persistent: Option<bool>,
    /// The closed-room guest list to start with.
    #[serde(default)]
    pub(crate) guests: Vec<String>,
    /// `false`: the room must never be recorded (`start_recording` is refused with `forbidden`). Default true.
    pub(crate) record: Option<bool>,
}

/// Settings to change (absent ones stay as they are).
#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateRoom {
    pub(crate) open_mic: Option<bool>,
    pub(crate) closed: Option<bool>,
    pub(crate) stage_capacity: Option<u32>,
    /// Chat on or off.
    pub(crate) chat: Option<bool>,
    /// Chat slow mode in ms (0: off; at most 3,600,000).
    pub(crate) chat_slow_mode_ms: Option<u32>,
    pub(crate) persistent: Option<bool>,
    /// Recorded in the audit log and webhooks.
    pub(crate) reason: Option<String>,
}

/// Query of `GET /v1/admin/rooms/{room}/chat`.
#[derive(Deserialize, utoipa::IntoParams, Debug)]
#[into_params(parameter_in = Query)]
pub(crate) struct ChatQuery {
    /// Only messages with an id below this (absent: the newest page).
    pub(crate) before: Option<u64>,
    /// The most messages to return: default 50, at most `[chat] page_limit` (default 100).
    pub(crate) limit: Option<u32>,
}

/// One chat message.
#[derive(Serialize, ToSchema, Clone, Debug)]
pub(crate) struct ChatMessageView {
    /// The message's id (only grows within a room).
    pub(crate) id: u64,
    /// Who posted it.
    pub(crate) from: ChatAuthorView,
    /// The text (plain text; may hold newlines).
    pub(crate) text: String,
    /// When it was posted, in milliseconds since the Unix epoch.
    pub(crate) at_ms: u64,
}

/// The author of a chat message.
#[derive(Serialize, ToSchema, Clone, Debug)]
pub(crate) struct ChatAuthorView {
    /// Identity.
    pub(crate) id: String,
    /// Display name when they posted.
    pub(crate) name: String,
}

/// One page of a room's chat history, oldest first (the websocket's `chat_history` result).
#[derive(Serialize, ToSchema, Clone, Debug)]
pub(crate) struct ChatPageView {
    pub(crate) messages: Vec<ChatMessageView>,
    /// Pass as `before` for the next older page; absent when there is nothing older.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) next_before: Option<u64>,
}

impl ChatPageView {
    pub(crate) fn of(page: &room::ChatPage) -> Self {
        Self {
            messages: page
                .messages
                .iter()
                .map(|m| ChatMessageView {
                    id: m.id,
                    from: ChatAuthorView { id: m.from.to_string(), name: m.name.clone() },
                    text: m.text.clone(),
                    at_ms: m.at,
                })
                .collect(),
            next_before: page.next_before,
        }
    }
}

/// A participant.
#[derive(Serialize, ToSchema, Clone, Debug)]
pub(crate) struct ParticipantInfo {
    pub(crate) identity: String,
    pub(crate) name: String,
    pub(crate) role: ApiRole,
    /// The highest role their token allows.
    pub(crate) ceiling: ApiRole,
    pub(crate) muted: bool,
    /// False while their grace period runs.
    pub(crate) connected: bool,
    /// 1-based place in the hand queue, when their hand is raised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) hand_position: Option<u32>,
    /// Invited onto the stage, not answered yet.
    pub(crate) invited: bool,
}

impl From<room::ParticipantView> for ParticipantInfo {
    fn from(p: room::ParticipantView) -> Self {
        Self {
            identity: p.id.as_str().to_owned(),
            name: p.name,
            role: p.role.into(),
            ceiling: p.ceiling.into(),
            muted: p.muted,
            connected: p.connected,
            hand_position: p.hand_position,
            invited: p.invited,
        }
    }
}

/// One page of participants, in join order.
#[derive(Serialize, ToSchema, Debug)]
pub(crate) struct ParticipantPage {
    pub(crate) participants: Vec<ParticipantInfo>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) next: Option<String>,
}

/// The optional reason of a moderation action.
#[derive(Deserialize, ToSchema, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActionBody {
    /// At most 256 characters, no control characters; recorded in the audit log and webhooks.
    pub(crate) reason: Option<String>,
}

/// A moderation action on a participant.
#[derive(Deserialize, Serialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Action {
    /// Mute a stage member.
    Mute,
    /// Send a stage member back to the audience.
    MoveToAudience,
    /// Invite an audience member onto the stage.
    InviteToStage,
    /// Withdraw an invitation to the stage.
    CancelInvite,
    /// Bring a raised hand onto the stage.
    ApproveHand,
    /// Make a participant (whose token allows it) a moderator.
    MakeModerator,
    /// Make a moderator a speaker.
    RevokeModerator,
    /// Remove the participant (they may rejoin).
    Kick,
}

/// What to revoke: an identity (tokens issued up to now), a token id, or both (tokens matching both).
#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevokeBody {
    pub(crate) identity: Option<String>,
    pub(crate) token_id: Option<String>,
    pub(crate) reason: Option<String>,
}

/// A participant token to mint.
#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct MintToken {
    pub(crate) identity: String,
    /// Display name (default: the identity).
    pub(crate) name: Option<String>,
    /// The room, or `*` for any room.
    pub(crate) room: String,
    /// The highest role the holder may have (default speaker).
    pub(crate) role: Option<ApiRole>,
    /// Validity in seconds, 60 to 86,400 (default 3,600).
    pub(crate) ttl_seconds: Option<u64>,
}

/// A minted token.
#[derive(Serialize, ToSchema, Debug)]
pub(crate) struct MintedToken {
    pub(crate) token: String,
    /// The token's id (`jti`): a revocation may name it.
    pub(crate) token_id: String,
    /// Expiry, seconds since the Unix epoch.
    pub(crate) expires_at: u64,
}

/// A hub.
#[derive(Serialize, ToSchema, Debug)]
pub(crate) struct NodeView {
    pub(crate) id: String,
    /// The websocket URL it was configured with (`server.public_url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) url: Option<String>,
    pub(crate) draining: bool,
    /// Heartbeating.
    pub(crate) alive: bool,
    /// How long ago its last heartbeat was, by the store's clock (0 with the in-memory store).
    pub(crate) heartbeat_age_ms: u64,
    /// How many rooms' leases it holds (it runs their timers and media); with the in-memory store, the rooms it runs.
    pub(crate) leases: u64,
    /// The hub answering this request.
    pub(crate) this: bool,
}

/// The hubs.
#[derive(Serialize, ToSchema, Debug)]
pub(crate) struct NodeList {
    pub(crate) nodes: Vec<NodeView>,
}

/// Who is calling.
#[derive(Serialize, ToSchema, Debug)]
pub(crate) struct WhoAmI {
    pub(crate) name: String,
    pub(crate) scope: ScopeView,
}

/// A scope.
#[derive(Serialize, ToSchema, Clone, Copy, Debug)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ScopeView {
    Read,
    Moderate,
    Admin,
}

impl From<Scope> for ScopeView {
    fn from(s: Scope) -> Self {
        match s {
            Scope::Read => Self::Read,
            Scope::Moderate => Self::Moderate,
            Scope::Admin => Self::Admin,
        }
    }
}

/// An RFC 9457 problem.
#[derive(Serialize, ToSchema, Debug)]
pub(crate) struct ProblemDoc {
    /// `urn:podium:error:<code>`.
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) title: String,
    pub(crate) status: u16,
    pub(crate) detail: String,
    /// The protocol's error code.
    pub(crate) code: String,
    /// Seconds to wait before retrying (with 429).
    pub(crate) retry_after: Option<u64>,
}

/// A recording just started.
#[derive(Serialize, ToSchema, Debug)]
pub(crate) struct RecordingStarted {
    /// The recording's id (its replay's, once mixed).
    pub(crate) id: String,
}

/// Filters and paging of the replay list.
#[derive(Deserialize, IntoParams, Debug, Default)]
#[into_params(parameter_in = Query)]
pub(crate) struct RecordingQuery {
    /// Only this room's replays.
    pub(crate) room: Option<String>,
    /// The `next` of the previous page (a replay id).
    pub(crate) after: Option<String>,
    /// Page size, 1-100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub(crate) limit: Option<u32>,
}

/// A page of replays, by start time.
#[derive(Serialize, ToSchema, Debug)]
pub(crate) struct RecordingPage {
    /// The replays (each as `GET /v1/admin/recordings/{id}` describes it).
    pub(crate) recordings: Vec<crate::recording::Replay>,
    /// Pass as `after` for the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) next: Option<String>,
}
