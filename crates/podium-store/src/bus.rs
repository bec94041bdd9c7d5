//! What a hub tells the other hubs sharing a room after each transition it committed: an [`Announcement`], sent on
//! the room's channel `podium:{R}:events` (see [`events_channel`]). It carries the [`Changes`] (so the others
//! follow the stored state without loading it) and the transition's outputs, with events already encoded as wire
//! frames (so the others deliver them to their own connections without re-running the transition).
//!
//! Messages for one hub (such as media signaling relayed to the room's media node) go on that hub's own channel
//! `podium:node:<id>` (see [`node_channel`]); a subscription reads both kinds as [`BusMessage`]s.
//!
//! A hub subscribes to its own channel and to the channels of the rooms it runs a task for, one plain `SUBSCRIBE`
//! per room ([`crate::Watcher`]), never to a pattern: a room's announcements reach only the hubs running it, and
//! Redis matches a `PUBLISH` against no pattern. [`EVENTS_PATTERN`] remains for tools and tests that follow every
//! room ([`crate::RedisStore::subscribe_all`]).
//!
//! The encoding is JSON; changes reuse the store's participant and field records (`codec.rs`). Unknown fields are
//! ignored, so a newer hub may add some.

use podium_room::{Changes, DisconnectReason, ParticipantId, Recipients};
use serde::{Deserialize, Serialize};

use crate::codec;

/// One hub's announcement of a committed transition (or of outputs without a transition, such as head counts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// The announcing hub (so it can skip its own announcements).
    pub node: String,
    /// The room's sequence number after the transition (for outputs without changes: the current one).
    pub seq: u64,
    /// What the transition changed (`None`: outputs only, such as head counts).
    pub changes: Option<Changes>,
    /// The transition's outputs, in order.
    pub outputs: Vec<Announced>,
    /// A participant whose session the announcing hub took over by a join: any other hub holding a connection for
    /// that identity closes it as a duplicate.
    pub joined: Option<ParticipantId>,
}

/// One output of an announced transition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Announced {
    /// An event, as the wire frame to send, and who gets it (resolved against the room after the transition).
    Event {
        /// Recipients.
        to: Recipients,
        /// The encoded server message.
        frame: String,
    },
    /// Close that participant's connection.
    Disconnect {
        /// Whose.
        who: ParticipantId,
        /// Why.
        reason: DisconnectReason,
    },
    /// The participant's media publish permission changed.
    Publish {
        /// Whose.
        who: ParticipantId,
        /// Allowed now.
        allowed: bool,
    },
    /// The room ended.
    Ended,
}

/// The pub/sub channel of `room`'s announcements (with the room's hash tag, like its keys).
pub fn events_channel(room: &str) -> String {
    format!("podium:{{{room}}}:events")
}

/// The pub/sub channel of messages for hub `node` (`podium:node:<id>`; see [`crate::RedisStore::send_to_node`]).
pub fn node_channel(node: &str) -> String {
    format!("podium:node:{node}")
}

/// One message from a [`crate::Subscription`] ([`crate::Subscription::next_message`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BusMessage {
    /// An announcement on a room's channel (normally an encoded [`Announcement`]).
    Room {
        /// The room.
        room: String,
        /// The message.
        text: String,
    },
    /// A message for the subscribed hub ([`crate::RedisStore::send_to_node`]).
    Node {
        /// The message.
        text: String,
    },
}

/// The pattern matching every room's channel ([`crate::RedisStore::subscribe_all`] only: hubs subscribe per room).
pub const EVENTS_PATTERN: &str = "podium:{*}:events";

/// The room an [`events_channel`] belongs to.
pub fn channel_room(channel: &str) -> Option<&str> {
    channel.strip_prefix("podium:{")?.strip_suffix("}:events")
}

#[derive(Serialize, Deserialize)]
struct AnnouncementRecord {
    node: String,
    seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    changes: Option<ChangesRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    outputs: Vec<OutputRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    joined: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct ChangesRecord {
    base_seq: u64,
    seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    room: Option<String>,
    /// `(identity, participant record)` pairs.
    #[serde(default)]
    upserted: Vec<(String, String)>,
    /// Of those, the joins ([`Changes::joined`]); absent from an older hub's announcement (then empty, which is
    /// always correct).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    joined: Vec<String>,
    #[serde(default)]
    removed: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bans: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    guests: Option<Vec<String>>,
    /// The room's info record, when it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    info: Option<String>,
    /// Chat message records posted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    chat_added: Vec<String>,
    /// Ids of chat messages gone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    chat_removed: Vec<u64>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum OutputRecord {
    Event {
        to: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        who: Option<String>,
        frame: String,
    },
    /// `revoked` was added later: omitted when false, and an older hub reads a revoked participant as kicked.
    Disconnect {
        who: String,
        banned: bool,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        revoked: bool,
    },
    Publish {
        who: String,
        allowed: bool,
    },
    Ended,
}

fn ids(list: &[ParticipantId]) -> Vec<String> {
    list.iter().map(|id| id.as_str().to_owned()).collect()
}

fn to_ids(list: Vec<String>) -> Vec<ParticipantId> {
    list.into_iter().map(ParticipantId::new).collect()
}

impl Announcement {
    /// The JSON text sent on the channel.
    pub fn encode(&self) -> String {
        let changes = self.changes.as_ref().map(|c| ChangesRecord {
            base_seq: c.base_seq,
            seq: c.seq,
            room: c.room.as_ref().map(codec::encode_fields),
            upserted: c.upserted.iter().map(|p| (p.id.as_str().to_owned(), codec::encode_participant(p))).collect(),
            joined: ids(&c.joined),
            removed: ids(&c.removed),
            bans: c.bans.as_deref().map(ids),
            guests: c.guests.as_deref().map(ids),
            info: c.info.as_ref().map(codec::encode_info),
            chat_added: c.chat_added.iter().map(codec::encode_chat).collect(),
            chat_removed: c.chat_removed.clone(),
        });
        let outputs = self
            .outputs
            .iter()
            .map(|o| match o {
                Announced::Event { to, frame } => {
                    let (to, who) = match to {
                        Recipients::Everyone => ("everyone", None),
                        Recipients::Stage => ("stage", None),
                        Recipients::Moderators => ("moderators", None),
                        Recipients::One(who) => ("one", Some(who.as_str().to_owned())),
                    };
                    OutputRecord::Event { to: to.into(), who, frame: frame.clone() }
                }
                Announced::Disconnect { who, reason } => OutputRecord::Disconnect {
                    who: who.as_str().to_owned(),
                    banned: matches!(reason, DisconnectReason::Banned),
                    revoked: matches!(reason, DisconnectReason::Revoked),
                },
                Announced::Publish { who, allowed } => {
                    OutputRecord::Publish { who: who.as_str().to_owned(), allowed: *allowed }
                }
                Announced::Ended => OutputRecord::Ended,
            })
            .collect();
        let record = AnnouncementRecord {
            node: self.node.clone(),
            seq: self.seq,
            changes,
            outputs,
            joined: self.joined.as_ref().map(|id| id.as_str().to_owned()),
        };
        // Strings, integers, booleans and lists only: serialising cannot fail.
        serde_json::to_string(&record).unwrap_or_else(|e| unreachable!("plain records always serialise: {e}"))
    }

    /// Reads [`Announcement::encode`]'s text.
    pub fn decode(text: &str) -> Result<Self, String> {
        let r: AnnouncementRecord = serde_json::from_str(text).map_err(|e| format!("announcement: {e}"))?;
        let changes = match r.changes {
            None => None,
            Some(c) => Some(Changes {
                base_seq: c.base_seq,
                seq: c.seq,
                room: c.room.as_deref().map(codec::decode_fields).transpose()?,
                upserted: c
                    .upserted
                    .iter()
                    .map(|(id, record)| codec::decode_participant(id, record))
                    .collect::<Result<_, _>>()?,
                joined: {
                    // Sorted, as the room makes it (it is searched by bisection).
                    let mut joined = to_ids(c.joined);
                    joined.sort();
                    joined
                },
                removed: to_ids(c.removed),
                bans: c.bans.map(to_ids),
                guests: c.guests.map(to_ids),
                info: c.info.as_deref().map(codec::decode_info).transpose()?,
                chat_added: c.chat_added.iter().map(|m| codec::decode_chat(m)).collect::<Result<_, _>>()?,
                chat_removed: c.chat_removed,
            }),
        };
        let outputs = r
            .outputs
            .into_iter()
            .map(|o| match o {
                OutputRecord::Event { to, who, frame } => {
                    let to = match (to.as_str(), who) {
                        ("everyone", _) => Recipients::Everyone,
                        ("stage", _) => Recipients::Stage,
                        ("moderators", _) => Recipients::Moderators,
                        ("one", Some(who)) => Recipients::One(ParticipantId::new(who)),
                        (other, _) => return Err(format!("announcement: unknown recipients {other:?}")),
                    };
                    Ok(Announced::Event { to, frame })
                }
                OutputRecord::Disconnect { who, banned, revoked } => Ok(Announced::Disconnect {
                    who: ParticipantId::new(who),
                    reason: match (banned, revoked) {
                        (_, true) => DisconnectReason::Revoked,
                        (true, false) => DisconnectReason::Banned,
                        (false, false) => DisconnectReason::Kicked,
                    },
                }),
                OutputRecord::Publish { who, allowed } => {
                    Ok(Announced::Publish { who: ParticipantId::new(who), allowed })
                }
                OutputRecord::Ended => Ok(Announced::Ended),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { node: r.node, seq: r.seq, changes, outputs, joined: r.joined.map(ParticipantId::new) })
    }
}

#[cfg(test)]
mod tests {
    use podium_room::{ChatMessage, ParticipantState, PinnedLink, Revocation, Role, RoomFields, RoomInfo, Settings};

    use super::*;

    #[test]
    fn announcements_round_trip() {
        let p = ParticipantState {
            id: ParticipantId::new("ada"),
            name: "Ada".into(),
            ceiling: Role::Moderator,
            role: Role::Speaker,
            muted: false,
            connected: true,
            grace_deadline: None,
            join_order: 1,
            stage_since: Some(2),
            hand_raised: None,
            hand_expires_at: Some(9_000),
            invite: None,
            token_id: Some("jti-1".into()),
            issued_at: 7_000,
            recording_opt_out: true,
        };
        let a = Announcement {
            node: "n1".into(),
            seq: 5,
            changes: Some(Changes {
                base_seq: 4,
                seq: 5,
                room: Some(RoomFields {
                    name: "r".into(),
                    settings: Settings {
                        open_mic: false,
                        closed: true,
                        stage_capacity: 3,
                        chat: true,
                        chat_slow_mode_ms: 0,
                    },
                    ended: false,
                    empty_since: None,
                    next_order: 3,
                    persistent: true,
                    revocations: vec![Revocation {
                        until: 9,
                        identity: Some(ParticipantId::new("mallory")),
                        token_id: None,
                        at: 1,
                    }],
                    next_chat_id: 8,
                    recording: Some(podium_room::Recording {
                        id: "rec_1".into(),
                        started_at: 3,
                        by: podium_room::Actor::Participant(ParticipantId::new("ada")),
                    }),
                    recordable: true,
                }),
                upserted: vec![p],
                joined: vec![ParticipantId::new("ada")],
                removed: vec![ParticipantId::new("bob")],
                bans: Some(vec![ParticipantId::new("eve")]),
                guests: None,
                info: Some(RoomInfo {
                    description: Some("About\nthis".into()),
                    pinned_link: Some(PinnedLink { url: "https://x.test".into(), title: None }),
                }),
                chat_added: vec![ChatMessage {
                    id: 7,
                    from: ParticipantId::new("ada"),
                    name: "Ada".into(),
                    text: "hi\nthere".into(),
                    at: 1_234,
                }],
                chat_removed: vec![2, 3],
            }),
            outputs: vec![
                Announced::Event { to: Recipients::One(ParticipantId::new("ada")), frame: "{\"type\":\"you\"}".into() },
                Announced::Event { to: Recipients::Stage, frame: "{}".into() },
                Announced::Disconnect { who: ParticipantId::new("bob"), reason: DisconnectReason::Kicked },
                Announced::Disconnect { who: ParticipantId::new("eve"), reason: DisconnectReason::Banned },
                Announced::Disconnect { who: ParticipantId::new("mallory"), reason: DisconnectReason::Revoked },
                Announced::Publish { who: ParticipantId::new("ada"), allowed: true },
                Announced::Ended,
            ],
            joined: Some(ParticipantId::new("ada")),
        };
        assert_eq!(Announcement::decode(&a.encode()), Ok(a));
        assert!(Announcement::decode("{").is_err());
        assert_eq!(channel_room(&events_channel("a}b")), Some("a}b"));
    }
}
