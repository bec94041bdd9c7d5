//! Webhook payloads (Standard Webhooks v1, see `proto/WEBHOOKS.md`), the audit log's entries, and the delivery
//! status the admin API shows. Like the websocket messages, these are the only `serde` shapes of what Podium sends
//! out; the hub builds them, signs them and delivers them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Role, RoomInfo, RoomSettings};

/// The body of one webhook request: `{"type": "room.started", "timestamp": "...", "data": {...}}`. Every type has
/// the same `data` shape ([`WebhookData`]); which fields are set depends on the type.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(tag = "type")]
pub enum WebhookPayload {
    /// A room was created (its first participant joined, or it was created through the API).
    #[serde(rename = "room.started")]
    RoomStarted(WebhookBody),
    /// A room ended (a moderator ended it, or it stayed empty for `room.empty_timeout_ms`).
    #[serde(rename = "room.ended")]
    RoomEnded(WebhookBody),
    /// A moderator changed the room's settings.
    #[serde(rename = "room.settings_changed")]
    RoomSettingsChanged(WebhookBody),
    /// A moderator changed the room's description or pinned link (`info`: both as they are now).
    #[serde(rename = "room.info_changed")]
    RoomInfoChanged(WebhookBody),
    /// A chat message was deleted (`message_id`, `author`; `actor` is who deleted it, `reason` theirs). No event is
    /// sent per chat message posted: there would be too many.
    #[serde(rename = "chat.message_deleted")]
    ChatMessageDeleted(WebhookBody),
    /// Someone joined (stage members always; audience members per `webhooks.audience`).
    #[serde(rename = "participant.joined")]
    ParticipantJoined(WebhookBody),
    /// Someone left: by choice, their grace period ran out, or they were removed (`reason`).
    #[serde(rename = "participant.left")]
    ParticipantLeft(WebhookBody),
    /// An audience member came onto the stage (hand approved, open mic, invitation accepted).
    #[serde(rename = "participant.promoted")]
    ParticipantPromoted(WebhookBody),
    /// A stage member went back to the audience (stepped down, or sent there by a moderator).
    #[serde(rename = "participant.moved_to_audience")]
    ParticipantMovedToAudience(WebhookBody),
    /// A stage member was muted (by a moderator, or by themselves when `actor` is the participant).
    #[serde(rename = "participant.muted")]
    ParticipantMuted(WebhookBody),
    /// A stage member unmuted themselves.
    #[serde(rename = "participant.unmuted")]
    ParticipantUnmuted(WebhookBody),
    /// A moderator invited an audience member onto the stage.
    #[serde(rename = "participant.invited")]
    ParticipantInvited(WebhookBody),
    /// A moderator removed a participant (they may rejoin).
    #[serde(rename = "participant.kicked")]
    ParticipantKicked(WebhookBody),
    /// A moderator banned an identity (present or not).
    #[serde(rename = "participant.banned")]
    ParticipantBanned(WebhookBody),
    /// A moderator lifted a ban.
    #[serde(rename = "participant.unbanned")]
    ParticipantUnbanned(WebhookBody),
    /// An audience member raised their hand.
    #[serde(rename = "hand.raised")]
    HandRaised(WebhookBody),
    /// A raised hand went down without a promotion: withdrawn (`actor` is the participant), cleared by a moderator
    /// (`clear_hands`: `actor` is the moderator, `reason` theirs), expired (no `actor`, `reason` is `expired`), or
    /// dropped by the room (no `actor`).
    #[serde(rename = "hand.lowered")]
    HandLowered(WebhookBody),
    /// A participant was made a moderator (by a moderator, or by succession when `actor` is absent).
    #[serde(rename = "moderator.granted")]
    ModeratorGranted(WebhookBody),
    /// A moderator became a speaker again.
    #[serde(rename = "moderator.revoked")]
    ModeratorRevoked(WebhookBody),
    /// An identity was added to a closed room's guest list.
    #[serde(rename = "guest.added")]
    GuestAdded(WebhookBody),
    /// An identity was taken off the guest list.
    #[serde(rename = "guest.removed")]
    GuestRemoved(WebhookBody),
    /// `webhooks.audience = "coalesced"`: audience joins and leaves since the previous summary.
    #[serde(rename = "audience.summary")]
    AudienceSummary(WebhookBody),
    /// A room started recording (`recording_id`; `actor` who started it).
    #[serde(rename = "recording.started")]
    RecordingStarted(WebhookBody),
    /// A room stopped recording (`recording_id`; `actor` who stopped it, absent when the room or session ended).
    #[serde(rename = "recording.stopped")]
    RecordingStopped(WebhookBody),
    /// A recording's replay is mixed and stored: `recording_id`, `duration_ms`, `bytes`, `chapters`, `url`.
    #[serde(rename = "recording.ready")]
    RecordingReady(WebhookBody),
    /// A recording's replay could not be made (`recording_id`, `error`); its track files are kept.
    #[serde(rename = "recording.failed")]
    RecordingFailed(WebhookBody),
    /// A hub drained (SIGTERM): its rooms moved to other hubs.
    #[serde(rename = "node.drained")]
    NodeDrained(WebhookBody),
    /// A summit release was installed on a stage (`summit.release`).
    #[serde(rename = "schedule.released")]
    ScheduleReleased(WebhookBody),
    /// A slot's backstage opened (T − the stage's backstage lead).
    #[serde(rename = "slot.backstage_opened")]
    SlotBackstageOpened(WebhookBody),
    /// A slot went on stage (its handover).
    #[serde(rename = "slot.started")]
    SlotStarted(WebhookBody),
    /// A slot ended.
    #[serde(rename = "slot.ended")]
    SlotEnded(WebhookBody),
    /// A slot ran past its planned end (`summit.until_ms`: it ends at the latest then).
    #[serde(rename = "slot.overrun")]
    SlotOverrun(WebhookBody),
    /// A slot was extended (`summit.end_ms`).
    #[serde(rename = "slot.extended")]
    SlotExtended(WebhookBody),
    /// An overrun cascade moved a slot (`summit.start_ms`, `summit.end_ms`).
    #[serde(rename = "slot.moved")]
    SlotMoved(WebhookBody),
    /// A slot was canceled (`summit.reason`: `manual`, `release`, `absorbed`).
    #[serde(rename = "slot.canceled")]
    SlotCanceled(WebhookBody),
    /// A slot starts in `summit.offset_ms`: one event per subscriber (`summit.subscriber`), rate-capped.
    #[serde(rename = "slot.reminder")]
    SlotReminder(WebhookBody),
    /// A slot's person (or a standby host) checked in.
    #[serde(rename = "speaker.checked_in")]
    SpeakerCheckedIn(WebhookBody),
    /// A slot's person had not checked in by the check-in deadline.
    #[serde(rename = "speaker.no_show")]
    SpeakerNoShow(WebhookBody),
    /// A standby host replaced a slot's missing hosts (`summit.person`).
    #[serde(rename = "speaker.substituted")]
    SpeakerSubstituted(WebhookBody),
    /// The stage's empty policy ran (`summit.reason`: `dead_air` or `no_show`).
    #[serde(rename = "stage.empty")]
    StageEmpty(WebhookBody),
    /// A moderator checked in for their shift.
    #[serde(rename = "shift.checked_in")]
    ShiftCheckedIn(WebhookBody),
    /// A moderator shift started: its person got stage-moderator rights.
    #[serde(rename = "shift.started")]
    ShiftStarted(WebhookBody),
    /// A shift started without its person checked in: page `summit.backups`.
    #[serde(rename = "shift.missed")]
    ShiftMissed(WebhookBody),
    /// A moderator shift ended.
    #[serde(rename = "shift.ended")]
    ShiftEnded(WebhookBody),
}

/// Every event type, in documentation order (the names of [`WebhookPayload`]'s variants on the wire).
pub const WEBHOOK_TYPES: &[&str] = &[
    "room.started",
    "room.ended",
    "room.settings_changed",
    "room.info_changed",
    "chat.message_deleted",
    "participant.joined",
    "participant.left",
    "participant.promoted",
    "participant.moved_to_audience",
    "participant.muted",
    "participant.unmuted",
    "participant.invited",
    "participant.kicked",
    "participant.banned",
    "participant.unbanned",
    "hand.raised",
    "hand.lowered",
    "moderator.granted",
    "moderator.revoked",
    "guest.added",
    "guest.removed",
    "audience.summary",
    "recording.started",
    "recording.stopped",
    "recording.ready",
    "recording.failed",
    "node.drained",
    "schedule.released",
    "slot.backstage_opened",
    "slot.started",
    "slot.ended",
    "slot.overrun",
    "slot.extended",
    "slot.moved",
    "slot.canceled",
    "slot.reminder",
    "speaker.checked_in",
    "speaker.no_show",
    "speaker.substituted",
    "stage.empty",
    "shift.checked_in",
    "shift.started",
    "shift.missed",
    "shift.ended",
];

/// The common part of every payload.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct WebhookBody {
    /// When the event happened (the commit of the room transition), ISO 8601 in UTC with milliseconds.
    pub timestamp: String,
    /// What happened.
    pub data: WebhookData,
}

/// The data of an event. `room`, `seq` and `index` order a room's events: every event of one transition has the
/// transition's `seq` and its place in it as `index`; events are delivered per room in `(seq, index)` order.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
pub struct WebhookData {
    /// The event's id, the same as the `webhook-id` header (stable across retries): de-duplicate on it.
    pub id: String,
    /// The room (absent for node events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// The room's sequence number after the transition (absent for node events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The event's place among its transition's events (0-based).
    #[serde(default)]
    pub index: u32,
    /// The participant the event is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant: Option<WebhookParticipant>,
    /// Who did it: a moderator's identity, the participant themselves, or `admin:<key name>` for the admin API.
    /// Absent when the room did it by itself (timers, succession).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Why: the reason a moderator gave, or for `participant.left` / `room.ended` how it happened (`left`,
    /// `timeout`, `kicked`, `banned`, `ended`, `empty`, `moderator`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How the action reached the room: `websocket` or `api` (absent for the room's own doings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// `room.started`, `room.settings_changed`: the room's settings now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<RoomSettings>,
    /// `room.info_changed`: the room's description and pinned link now (an empty object when both were cleared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<RoomInfo>,
    /// `chat.message_deleted`: the deleted message's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<u64>,
    /// `chat.message_deleted`: the identity who posted the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// `audience.summary`: joins and leaves of audience members since the previous summary, and how many are in
    /// the audience now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<AudienceSummary>,
    /// `recording.*`: the recording's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_id: Option<String>,
    /// `recording.ready`: the replay's length in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// `recording.ready`: the replay file's size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// `recording.ready`: the replay's chapters (speaker turns or summit slots), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chapters: Vec<Chapter>,
    /// `recording.ready`: where the admin API serves the replay (`/v1/admin/recordings/{id}/replay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `recording.failed`: what went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `node.drained`: the hub's node id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Summit events (`schedule.*`, `slot.*`, `speaker.*`, `stage.*`, `shift.*`): what the scheduler did. `room`
    /// is then the stage's room and `seq` is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summit: Option<SummitEvent>,
}

/// A chapter of a replay.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct Chapter {
    /// Where it starts, in milliseconds from the start of the replay.
    pub start_ms: u64,
    /// The speaker's name, or the summit slot's title.
    pub title: String,
}

/// The summit part of a scheduler event.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
pub struct SummitEvent {
    /// The summit's id.
    pub summit: String,
    /// The stage's id.
    pub stage: String,
    /// The stage's event counter: events of one stage are numbered 1, 2, ... in order (a scheduler failover
    /// continues the count, and an event re-sent after a failover has the same `id`).
    pub stage_seq: u64,
    /// When it was due (ISO 8601, UTC). Later than `timestamp` never; earlier after a clock jump or failover.
    pub due: String,
    /// The release the stage runs.
    pub release: u64,
    /// The slot, for slot and speaker events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// The slot's title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The person (speaker and shift events; the standby host for `speaker.substituted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
    /// The shift, for shift events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<String>,
    /// `shift.missed`: the backup moderators on duty then.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backups: Vec<String>,
    /// `slot.canceled`, `stage.empty`: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The slot's start (milliseconds since the Unix epoch), where it matters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ms: Option<u64>,
    /// The slot's end, where it matters (`slot.extended`, `slot.moved`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_ms: Option<u64>,
    /// `slot.overrun`: it ends at the latest then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
    /// `slot.reminder`: how long before the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_ms: Option<u64>,
    /// `slot.reminder`: the subscriber to remind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriber: Option<String>,
}

/// A participant named by an event.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct WebhookParticipant {
    /// Identity (from the access token).
    pub id: String,
    /// Display name, when the participant is (or was) in the room; absent for bans of absent identities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Role after the event (absent when they are not in the room any more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Role before the event, when it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_role: Option<Role>,
}

/// Coalesced audience movements.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AudienceSummary {
    /// Audience members who joined since the previous summary.
    pub joined: u64,
    /// Audience members who left since the previous summary.
    pub left: u64,
    /// Audience members in the room now.
    pub audience: u64,
}

/// One entry of a room's audit log: a moderation action.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// The entry's cursor: pass it as `after` to read the entries that follow.
    pub id: String,
    /// When, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// What was done: the webhook event type (`participant.kicked`, `room.settings_changed`, ...).
    pub action: String,
    /// Who did it (see [`WebhookData::actor`]); absent for the room's own doings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Whom it was done to (absent for room-wide actions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The reason given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `websocket` or `api`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// The room's sequence number after the action.
    pub seq: u64,
}

/// A page of a room's audit log, oldest first.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct AuditPage {
    /// The entries.
    pub entries: Vec<AuditEntry>,
    /// Pass as `after` for the next page; absent when this page reached the end (for now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// What the hubs know about webhook delivery: per endpoint, what is queued and how the last attempts went.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
pub struct WebhookStatus {
    /// One entry per configured endpoint.
    pub endpoints: Vec<EndpointStatus>,
    /// How many rooms with queued events were looked at for the queue figures.
    pub rooms_scanned: u64,
    /// True when more rooms have queued events than were looked at (the queue figures are then lower bounds).
    pub truncated: bool,
    /// Events dropped because a room's queue (or, with the in-memory store, the hub's queue) was full.
    pub dropped: u64,
}

/// The delivery state of one endpoint.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
pub struct EndpointStatus {
    /// The endpoint's name (`webhooks.endpoints[].name`).
    pub name: String,
    /// Its URL.
    pub url: String,
    /// Disabled after it answered `410 Gone` (delivery stops until it is re-enabled).
    pub disabled: bool,
    /// Events waiting for this endpoint, over the rooms scanned.
    pub queue_depth: u64,
    /// Age in milliseconds of the oldest event waiting for this endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_age_ms: Option<u64>,
    /// Rooms whose next event for this endpoint is waiting for a retry.
    pub rooms_retrying: u64,
    /// The earliest retry planned (milliseconds since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_ms: Option<u64>,
    /// Failed attempts of the event at the head of the most-retried room.
    pub max_attempts: u32,
    /// Events delivered (a 2xx answer), in all.
    pub delivered: u64,
    /// Failed attempts, in all.
    pub failed_attempts: u64,
    /// Events given up after the whole retry schedule failed.
    pub given_up: u64,
    /// The last failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the last failure happened (milliseconds since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_ms: Option<u64>,
    /// When the last delivery succeeded (milliseconds since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_ms: Option<u64>,
}

impl WebhookPayload {
    /// Builds the payload of type `kind` (one of [`WEBHOOK_TYPES`]); `None` for an unknown type.
    pub fn new(kind: &str, body: WebhookBody) -> Option<Self> {
        Some(match kind {
            "room.started" => Self::RoomStarted(body),
            "room.ended" => Self::RoomEnded(body),
            "room.settings_changed" => Self::RoomSettingsChanged(body),
            "room.info_changed" => Self::RoomInfoChanged(body),
            "chat.message_deleted" => Self::ChatMessageDeleted(body),
            "participant.joined" => Self::ParticipantJoined(body),
            "participant.left" => Self::ParticipantLeft(body),
            "participant.promoted" => Self::ParticipantPromoted(body),
            "participant.moved_to_audience" => Self::ParticipantMovedToAudience(body),
            "participant.muted" => Self::ParticipantMuted(body),
            "participant.unmuted" => Self::ParticipantUnmuted(body),
            "participant.invited" => Self::ParticipantInvited(body),
            "participant.kicked" => Self::ParticipantKicked(body),
            "participant.banned" => Self::ParticipantBanned(body),
            "participant.unbanned" => Self::ParticipantUnbanned(body),
            "hand.raised" => Self::HandRaised(body),
            "hand.lowered" => Self::HandLowered(body),
            "moderator.granted" => Self::ModeratorGranted(body),
            "moderator.revoked" => Self::ModeratorRevoked(body),
            "guest.added" => Self::GuestAdded(body),
            "guest.removed" => Self::GuestRemoved(body),
            "audience.summary" => Self::AudienceSummary(body),
            "recording.started" => Self::RecordingStarted(body),
            "recording.stopped" => Self::RecordingStopped(body),
            "recording.ready" => Self::RecordingReady(body),
            "recording.failed" => Self::RecordingFailed(body),
            "node.drained" => Self::NodeDrained(body),
            "schedule.released" => Self::ScheduleReleased(body),
            "slot.backstage_opened" => Self::SlotBackstageOpened(body),
            "slot.started" => Self::SlotStarted(body),
            "slot.ended" => Self::SlotEnded(body),
            "slot.overrun" => Self::SlotOverrun(body),
            "slot.extended" => Self::SlotExtended(body),
            "slot.moved" => Self::SlotMoved(body),
            "slot.canceled" => Self::SlotCanceled(body),
            "slot.reminder" => Self::SlotReminder(body),
            "speaker.checked_in" => Self::SpeakerCheckedIn(body),
            "speaker.no_show" => Self::SpeakerNoShow(body),
            "speaker.substituted" => Self::SpeakerSubstituted(body),
            "stage.empty" => Self::StageEmpty(body),
            "shift.checked_in" => Self::ShiftCheckedIn(body),
            "shift.started" => Self::ShiftStarted(body),
            "shift.missed" => Self::ShiftMissed(body),
            "shift.ended" => Self::ShiftEnded(body),
            _ => return None,
        })
    }

    /// The payload's JSON text (the exact bytes that are signed and sent).
    pub fn to_json(&self) -> String {
        // Serialising these plain structs cannot fail (string keys, no maps with non-string keys).
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The JSON Schema of every webhook payload.
pub fn webhook_schema() -> schemars::Schema {
    schemars::schema_for!(WebhookPayload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_builds_and_names_itself() {
        for kind in WEBHOOK_TYPES {
            let body = WebhookBody { timestamp: "2026-01-01T00:00:00.000Z".into(), data: WebhookData::default() };
            let payload = WebhookPayload::new(kind, body).unwrap_or_else(|| panic!("{kind}"));
            let v: serde_json::Value = serde_json::from_str(&payload.to_json()).expect("json");
            assert_eq!(v["type"], *kind);
            assert!(v["data"].is_object());
        }
        assert!(
            WebhookPayload::new("nope", WebhookBody { timestamp: String::new(), data: WebhookData::default() })
                .is_none()
        );
    }
}
