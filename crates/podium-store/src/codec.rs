//! How the Redis store encodes `podium-room`'s records: small JSON objects through serde mirror types, so
//! `podium-room` stays free of serde and a stored record reads plainly in `redis-cli`.
//!
//! A participant's identity is not in its record: it is the hash field the record is stored under. Optional values
//! are omitted when `None`. Unknown fields are ignored when decoding, so a newer hub may add fields that an older one
//! skips; removing or renaming a field needs a migration. Fields added later (`persistent`, `revocations`,
//! `token_id`, `issued_at`, an invitation's `by_admin`, `hand_expires_at`, the settings `chat` (true) and
//! `chat_slow_mode_ms` (0), `next_chat_id` (1), `recording`, `no_record`, `recording_opt_out`) are omitted at their
//! default and default when missing, so records
//! written before them decode unchanged. Chat messages are records of their own (members of the room's `chat`
//! sorted set, scored by id). The room's info (description, pinned link) is its
//! own record (the `info` entry of `podium:{room}:meta`, written only when it changes); a room stored before it has
//! none and loads with an empty one.

use podium_room::{
    Actor, AdminId, ChatMessage, Invite, ParticipantId, ParticipantState, PinnedLink, Recording, Revocation, Role,
    RoomFields, RoomInfo, Settings,
};
use serde::{Deserialize, Serialize};

/// The room-level fields (the `fields` entry of `podium:{room}:meta`).
#[derive(Serialize, Deserialize)]
struct FieldsRecord {
    name: String,
    open_mic: bool,
    closed: bool,
    stage_capacity: u32,
    ended: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    empty_since: Option<u64>,
    next_order: u64,
    #[serde(default, skip_serializing_if = "is_false")]
    persistent: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    revocations: Vec<RevocationRecord>,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    chat: bool,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    chat_slow_mode_ms: u32,
    #[serde(default = "one", skip_serializing_if = "is_one")]
    next_chat_id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    recording: Option<RecordingRecord>,
    /// Stored negated, so a room stored before it (no field) is recordable.
    #[serde(default, skip_serializing_if = "is_false")]
    no_record: bool,
}

/// The recording in progress (in the room's fields). `by` is an identity, or an admin name with `by_admin`.
#[derive(Serialize, Deserialize)]
struct RecordingRecord {
    id: String,
    started_at: u64,
    by: String,
    #[serde(default, skip_serializing_if = "is_false")]
    by_admin: bool,
}

/// One chat message (a member of the `podium:{room}:chat` sorted set, scored by its id).
#[derive(Serialize, Deserialize)]
struct ChatRecord {
    id: u64,
    from: String,
    name: String,
    text: String,
    at: u64,
}

/// One revocation in force (in the room's fields: there are few, and they lapse).
#[derive(Serialize, Deserialize)]
struct RevocationRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    identity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_id: Option<String>,
    at: u64,
    until: u64,
}

/// One participant (a value of the `podium:{room}:participants` hash).
#[derive(Serialize, Deserialize)]
struct ParticipantRecord {
    name: String,
    ceiling: RoleRecord,
    role: RoleRecord,
    muted: bool,
    connected: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    grace_deadline: Option<u64>,
    join_order: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stage_since: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hand_raised: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hand_expires_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    invite: Option<InviteRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_id: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    issued_at: u64,
    #[serde(default, skip_serializing_if = "is_false")]
    recording_opt_out: bool,
}

/// The room's description and pinned link (the `info` entry of `podium:{room}:meta`; `{}` when both are empty).
#[derive(Serialize, Deserialize)]
struct InfoRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    link: Option<LinkRecord>,
}

#[derive(Serialize, Deserialize)]
struct LinkRecord {
    url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    title: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RoleRecord {
    Audience,
    Speaker,
    Moderator,
}

/// `by` is a participant's identity, or an administrator's name when `by_admin` is set.
#[derive(Serialize, Deserialize)]
struct InviteRecord {
    by: String,
    #[serde(default, skip_serializing_if = "is_false")]
    by_admin: bool,
    expires_at: u64,
}

/// An actor as stored: the identity or admin name, and whether it is an admin.
fn actor_record(by: &Actor) -> (String, bool) {
    match by {
        Actor::Participant(id) => (id.as_str().to_owned(), false),
        Actor::Admin(id) => (id.as_str().to_owned(), true),
    }
}

fn actor_from_record(by: String, by_admin: bool) -> Actor {
    if by_admin { Actor::Admin(AdminId::new(by)) } else { Actor::Participant(ParticipantId::new(by)) }
}

impl From<&Invite> for InviteRecord {
    fn from(i: &Invite) -> Self {
        let (by, by_admin) = actor_record(&i.by);
        Self { by, by_admin, expires_at: i.expires_at }
    }
}

impl From<InviteRecord> for Invite {
    fn from(r: InviteRecord) -> Self {
        Self { by: actor_from_record(r.by, r.by_admin), expires_at: r.expires_at }
    }
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `skip_serializing_if` passes a reference.
fn is_false(b: &bool) -> bool {
    !*b
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `skip_serializing_if` passes a reference.
fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `skip_serializing_if` passes a reference.
fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `skip_serializing_if` passes a reference.
fn is_true(b: &bool) -> bool {
    *b
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `skip_serializing_if` passes a reference.
fn is_one(n: &u64) -> bool {
    *n == 1
}

fn yes() -> bool {
    true
}

fn one() -> u64 {
    1
}

impl From<Role> for RoleRecord {
    fn from(r: Role) -> Self {
        match r {
            Role::Audience => Self::Audience,
            Role::Speaker => Self::Speaker,
            Role::Moderator => Self::Moderator,
        }
    }
}

impl From<RoleRecord> for Role {
    fn from(r: RoleRecord) -> Self {
        match r {
            RoleRecord::Audience => Self::Audience,
            RoleRecord::Speaker => Self::Speaker,
            RoleRecord::Moderator => Self::Moderator,
        }
    }
}

fn to_json(value: &impl Serialize) -> String {
    // Serialising these plain structs (strings, integers, booleans; no maps with non-string keys) cannot fail.
    serde_json::to_string(value).unwrap_or_else(|e| unreachable!("plain records always serialise: {e}"))
}

/// Encodes a room's fields.
pub(crate) fn encode_fields(f: &RoomFields) -> String {
    to_json(&FieldsRecord {
        name: f.name.clone(),
        open_mic: f.settings.open_mic,
        closed: f.settings.closed,
        stage_capacity: f.settings.stage_capacity,
        ended: f.ended,
        empty_since: f.empty_since,
        next_order: f.next_order,
        persistent: f.persistent,
        revocations: f
            .revocations
            .iter()
            .map(|r| RevocationRecord {
                identity: r.identity.as_ref().map(|i| i.as_str().to_owned()),
                token_id: r.token_id.clone(),
                at: r.at,
                until: r.until,
            })
            .collect(),
        chat: f.settings.chat,
        chat_slow_mode_ms: f.settings.chat_slow_mode_ms,
        next_chat_id: f.next_chat_id,
        recording: f.recording.as_ref().map(|r| {
            let (by, by_admin) = actor_record(&r.by);
            RecordingRecord { id: r.id.clone(), started_at: r.started_at, by, by_admin }
        }),
        no_record: !f.recordable,
    })
}

/// Decodes a room's fields.
pub(crate) fn decode_fields(text: &str) -> Result<RoomFields, String> {
    let r: FieldsRecord = serde_json::from_str(text).map_err(|e| format!("room fields: {e}"))?;
    Ok(RoomFields {
        name: r.name,
        settings: Settings {
            open_mic: r.open_mic,
            closed: r.closed,
            stage_capacity: r.stage_capacity,
            chat: r.chat,
            chat_slow_mode_ms: r.chat_slow_mode_ms,
        },
        ended: r.ended,
        empty_since: r.empty_since,
        next_order: r.next_order,
        persistent: r.persistent,
        revocations: r
            .revocations
            .into_iter()
            .map(|r| Revocation {
                until: r.until,
                identity: r.identity.map(ParticipantId::new),
                token_id: r.token_id,
                at: r.at,
            })
            .collect(),
        next_chat_id: r.next_chat_id,
        recording: r.recording.map(|r| Recording {
            id: r.id,
            started_at: r.started_at,
            by: actor_from_record(r.by, r.by_admin),
        }),
        recordable: !r.no_record,
    })
}

/// Encodes a chat message.
pub(crate) fn encode_chat(m: &ChatMessage) -> String {
    to_json(&ChatRecord {
        id: m.id,
        from: m.from.as_str().to_owned(),
        name: m.name.clone(),
        text: m.text.clone(),
        at: m.at,
    })
}

/// Decodes a chat message.
pub(crate) fn decode_chat(text: &str) -> Result<ChatMessage, String> {
    let r: ChatRecord = serde_json::from_str(text).map_err(|e| format!("chat message: {e}"))?;
    Ok(ChatMessage { id: r.id, from: ParticipantId::new(r.from), name: r.name, text: r.text, at: r.at })
}

/// Encodes a room's info (never empty text: `{}` for no info).
pub(crate) fn encode_info(info: &RoomInfo) -> String {
    to_json(&InfoRecord {
        description: info.description.clone(),
        link: info.pinned_link.as_ref().map(|l| LinkRecord { url: l.url.clone(), title: l.title.clone() }),
    })
}

/// Decodes a room's info; an empty text (a room stored before room info existed) is no info.
pub(crate) fn decode_info(text: &str) -> Result<RoomInfo, String> {
    if text.is_empty() {
        return Ok(RoomInfo::default());
    }
    let r: InfoRecord = serde_json::from_str(text).map_err(|e| format!("room info: {e}"))?;
    Ok(RoomInfo { description: r.description, pinned_link: r.link.map(|l| PinnedLink { url: l.url, title: l.title }) })
}

/// Encodes a participant (without its identity, which is the hash field).
pub(crate) fn encode_participant(p: &ParticipantState) -> String {
    to_json(&ParticipantRecord {
        name: p.name.clone(),
        ceiling: p.ceiling.into(),
        role: p.role.into(),
        muted: p.muted,
        connected: p.connected,
        grace_deadline: p.grace_deadline,
        join_order: p.join_order,
        stage_since: p.stage_since,
        hand_raised: p.hand_raised,
        hand_expires_at: p.hand_expires_at,
        invite: p.invite.as_ref().map(InviteRecord::from),
        token_id: p.token_id.clone(),
        issued_at: p.issued_at,
        recording_opt_out: p.recording_opt_out,
    })
}

/// Decodes the participant stored under `id`.
pub(crate) fn decode_participant(id: &str, text: &str) -> Result<ParticipantState, String> {
    let r: ParticipantRecord = serde_json::from_str(text).map_err(|e| format!("participant {id:?}: {e}"))?;
    Ok(ParticipantState {
        id: ParticipantId::new(id),
        name: r.name,
        ceiling: r.ceiling.into(),
        role: r.role.into(),
        muted: r.muted,
        connected: r.connected,
        grace_deadline: r.grace_deadline,
        join_order: r.join_order,
        stage_since: r.stage_since,
        hand_raised: r.hand_raised,
        hand_expires_at: r.hand_expires_at,
        invite: r.invite.map(Invite::from),
        token_id: r.token_id,
        issued_at: r.issued_at,
        recording_opt_out: r.recording_opt_out,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn role() -> impl Strategy<Value = Role> {
        prop_oneof![Just(Role::Audience), Just(Role::Speaker), Just(Role::Moderator)]
    }

    prop_compose! {
        fn participant()(
            id in "\\PC{0,12}",
            name in "\\PC{0,20}",
            ceiling in role(),
            role in role(),
            muted: bool,
            connected: bool,
            grace_deadline: Option<u64>,
            join_order: u64,
            stage_since: Option<u64>,
            hand_raised: Option<u64>,
            hand_expires_at: Option<u64>,
            invite in proptest::option::of(("\\PC{0,12}", any::<bool>(), any::<u64>())),
            token_id in proptest::option::of("\\PC{0,12}"),
            issued_at: u64,
            recording_opt_out: bool,
        ) -> ParticipantState {
            ParticipantState {
                id: ParticipantId::new(id),
                name,
                ceiling,
                role,
                muted,
                connected,
                grace_deadline,
                join_order,
                stage_since,
                hand_raised,
                hand_expires_at,
                invite: invite.map(|(by, admin, expires_at)| Invite {
                    by: if admin { Actor::Admin(AdminId::new(by)) } else { Actor::Participant(ParticipantId::new(by)) },
                    expires_at,
                }),
                token_id,
                issued_at,
                recording_opt_out,
            }
        }
    }

    prop_compose! {
        fn fields()(
            name in "\\PC{0,20}",
            open_mic: bool,
            closed: bool,
            stage_capacity: u32,
            ended: bool,
            empty_since: Option<u64>,
            next_order: u64,
            persistent: bool,
            revocations in proptest::collection::vec(
                (proptest::option::of("\\PC{0,12}"), proptest::option::of("\\PC{0,12}"), any::<u64>(), any::<u64>()),
                0..3,
            ),
            recording in proptest::option::of(("\\PC{0,12}", any::<u64>(), "\\PC{0,12}", any::<bool>())),
            recordable: bool,
        ) -> RoomFields {
            let revocations = revocations
                .into_iter()
                .map(|(identity, token_id, at, until)| Revocation {
                    until,
                    identity: identity.map(ParticipantId::new),
                    token_id,
                    at,
                })
                .collect();
            RoomFields {
                name,
                settings: Settings { open_mic, closed, stage_capacity, chat: true, chat_slow_mode_ms: 0 },
                ended,
                empty_since,
                next_order,
                persistent,
                revocations,
                next_chat_id: next_order.max(1),
                recording: recording.map(|(id, started_at, by, admin)| Recording {
                    id,
                    started_at,
                    by: if admin { Actor::Admin(AdminId::new(by)) } else { Actor::Participant(ParticipantId::new(by)) },
                }),
                recordable,
            }
        }
    }

    proptest! {
        #[test]
        fn participants_round_trip(p in participant()) {
            let text = encode_participant(&p);
            prop_assert_eq!(decode_participant(p.id.as_str(), &text), Ok(p));
        }

        #[test]
        fn fields_round_trip(f in fields()) {
            prop_assert_eq!(decode_fields(&encode_fields(&f)), Ok(f));
        }

        #[test]
        fn info_round_trips(
            description in proptest::option::of("\\PC{0,40}"),
            link in proptest::option::of(("\\PC{0,40}", proptest::option::of("\\PC{0,20}"))),
        ) {
            let info = RoomInfo {
                description,
                pinned_link: link.map(|(url, title)| PinnedLink { url, title }),
            };
            let text = encode_info(&info);
            prop_assert!(!text.is_empty(), "an empty text means no info was ever stored");
            prop_assert_eq!(decode_info(&text), Ok(info));
        }
    }

    #[test]
    fn records_are_plain_json() {
        let p = ParticipantState {
            id: ParticipantId::new("ada"),
            name: "Ada".into(),
            ceiling: Role::Moderator,
            role: Role::Audience,
            muted: true,
            connected: true,
            grace_deadline: None,
            join_order: 3,
            stage_since: None,
            hand_raised: Some(7),
            hand_expires_at: None,
            invite: None,
            recording_opt_out: false,
            token_id: None,
            issued_at: 0,
        };
        assert_eq!(
            encode_participant(&p),
            r#"{"name":"Ada","ceiling":"moderator","role":"audience","muted":true,"connected":true,"join_order":3,"hand_raised":7}"#
        );
        assert!(decode_participant("x", "{").is_err());
        // No info is `{}` (never empty text); a room stored before room info existed has no `info` entry: none.
        assert_eq!(encode_info(&RoomInfo::default()), "{}");
        assert_eq!(decode_info(""), Ok(RoomInfo::default()));
        assert_eq!(
            encode_info(&RoomInfo {
                description: Some("Hi".into()),
                pinned_link: Some(PinnedLink { url: "https://x.test".into(), title: None })
            }),
            r#"{"description":"Hi","link":{"url":"https://x.test"}}"#
        );
        assert!(decode_info("[").is_err());
        // Records written before token ids, admin invitations, persistence and revocations decode with defaults.
        let old = r#"{"name":"Ada","ceiling":"speaker","role":"audience","muted":true,"connected":true,"join_order":3,"invite":{"by":"m","expires_at":9}}"#;
        let p = decode_participant("ada", old).unwrap();
        assert_eq!((p.token_id, p.issued_at), (None, 0));
        assert_eq!(p.invite.map(|i| i.by), Some(Actor::Participant(ParticipantId::new("m"))));
        let f = decode_fields(
            r#"{"name":"r","open_mic":false,"closed":false,"stage_capacity":3,"ended":false,"next_order":4}"#,
        )
        .unwrap();
        assert!(!f.persistent && f.revocations.is_empty());
        assert!(decode_fields(r#"{"name":"r"}"#).is_err());
    }
}
