//! Plain-data records of a room, for stores: the full state ([`RoomState`]) and one batch of transitions
//! ([`Changes`]). Stores keep these and know nothing of rules.

use std::collections::HashSet;

use crate::types::{Actor, ChatMessage, Millis, ParticipantId, Recording, Role, RoomInfo, Settings};

/// Everything needed to rebuild a room ([`Room::state`](crate::Room::state) /
/// [`Room::from_state`](crate::Room::from_state)). Participants are sorted by `join_order`; bans and guests by id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomState {
    /// Room name.
    pub name: String,
    /// Sequence number.
    pub seq: u64,
    /// Settings.
    pub settings: Settings,
    /// The room has ended.
    pub ended: bool,
    /// Since when nobody has been present (`None` while someone is).
    pub empty_since: Option<Millis>,
    /// The next value of the room's order counter (used for `join_order`, `stage_since` and `hand_raised`).
    pub next_order: u64,
    /// Never ended by the empty timeout; only `EndRoom` ends it.
    pub persistent: bool,
    /// Revoked identities and token ids still in force, sorted by `(until, identity, token_id)`.
    pub revocations: Vec<Revocation>,
    /// The recording in progress.
    pub recording: Option<Recording>,
    /// Whether the room may be recorded at all (false: created with `record: false`, or a summit slot that must not
    /// be recorded is on).
    pub recordable: bool,
    /// The description and pinned link.
    pub info: RoomInfo,
    /// Everyone present (connected or in grace), sorted by `join_order`.
    pub participants: Vec<ParticipantState>,
    /// Banned identities, sorted.
    pub bans: Vec<ParticipantId>,
    /// The closed-room guest list, sorted.
    pub guests: Vec<ParticipantId>,
    /// The id the next chat message gets (ids start at 1 and only grow).
    pub next_chat_id: u64,
    /// The chat history (not deleted, not trimmed yet), sorted by id.
    pub chat: Vec<ChatMessage>,
}

/// One participant's stored state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParticipantState {
    /// Identity.
    pub id: ParticipantId,
    /// Display name.
    pub name: String,
    /// The highest role their token allows.
    pub ceiling: Role,
    /// Role now (never above `ceiling`).
    pub role: Role,
    /// Muted (always true in the audience).
    pub muted: bool,
    /// False while the grace period runs.
    pub connected: bool,
    /// When the grace period ends (`Some` exactly when not connected).
    pub grace_deadline: Option<Millis>,
    /// Order counter value at join: audience paging order and cursor.
    pub join_order: u64,
    /// Order counter value at taking the stage (`Some` exactly when on stage): smaller is longer serving.
    pub stage_since: Option<u64>,
    /// Order counter value at raising the hand (audience only): queue order.
    pub hand_raised: Option<u64>,
    /// When the raised hand expires (only with `hand_raised`; `None`: never, as with `hand_ttl` 0).
    pub hand_expires_at: Option<Millis>,
    /// An open invitation to the stage (audience only).
    pub invite: Option<Invite>,
    /// The id (`jti`) of the token this session joined with, if it had one.
    pub token_id: Option<String>,
    /// When that token was issued (the later of its `iat` and `nbf`; 0 when it had neither).
    pub issued_at: Millis,
    /// They opted out of recordings: their audio is never written.
    pub recording_opt_out: bool,
}

/// A revoked identity or token id: joins it matches are refused until `until`.
///
/// It names an identity, a token id, or both, and matches a token when every part it names matches: the token's
/// subject is `identity`, and its id is `token_id`; when it names no token id, only tokens issued at or before `at`
/// match (a token minted after the revocation is accepted).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Revocation {
    /// When it lapses (`at` plus the room's `revocation_ttl`): no token it could match is valid after it.
    pub until: Millis,
    /// The revoked identity.
    pub identity: Option<ParticipantId>,
    /// The revoked token id (`jti`).
    pub token_id: Option<String>,
    /// When it was made.
    pub at: Millis,
}

impl Revocation {
    /// Whether a token for `identity` with id `token_id`, issued at `issued_at`, is refused by this revocation (at any
    /// time before `until`).
    pub fn matches(&self, identity: &ParticipantId, token_id: Option<&str>, issued_at: Millis) -> bool {
        let identity_ok = self.identity.as_ref().is_none_or(|i| i == identity);
        let token_ok = match &self.token_id {
            Some(t) => token_id == Some(t.as_str()),
            None => issued_at <= self.at,
        };
        identity_ok && token_ok
    }
}

/// A stored invitation to the stage.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Invite {
    /// The inviting moderator or administrator.
    pub by: Actor,
    /// When it lapses.
    pub expires_at: Millis,
}

/// The room-level fields of a [`RoomState`] (everything except `seq`, participants, bans and guests). Revocations
/// are few and short-lived (bounded by `max_revocations`, usually none), so they travel with the fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomFields {
    /// Room name.
    pub name: String,
    /// Settings.
    pub settings: Settings,
    /// The room has ended.
    pub ended: bool,
    /// Since when nobody has been present.
    pub empty_since: Option<Millis>,
    /// The next order counter value.
    pub next_order: u64,
    /// Never ended by the empty timeout.
    pub persistent: bool,
    /// Revocations in force, sorted.
    pub revocations: Vec<Revocation>,
    /// The id the next chat message gets.
    pub next_chat_id: u64,
    /// The recording in progress.
    pub recording: Option<Recording>,
    /// Whether the room may be recorded.
    pub recordable: bool,
}

/// Up to this many participants leaving in one change set are looked up one by one; more take one pass over the
/// room.
const FEW: usize = 8;

/// What changed between two versions of a room ([`Room::take_changes`](crate::Room::take_changes)): apply to the
/// stored state at `base_seq` to get the state at `seq`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changes {
    /// The sequence number the changes apply to.
    pub base_seq: u64,
    /// The sequence number after applying them.
    pub seq: u64,
    /// The room-level fields, when any changed (always present in the first changes of a new room).
    pub room: Option<RoomFields>,
    /// Participants added or changed (full records), sorted by `join_order`.
    pub upserted: Vec<ParticipantState>,
    /// Of `upserted`, the identities that were not in the room at `base_seq` (sorted): its joins. A hint, so that
    /// whoever applies the changes or compares them with the state at `base_seq` need not look through the whole
    /// room for each of them; empty is always correct (the room is then searched).
    pub joined: Vec<ParticipantId>,
    /// Participants removed, sorted.
    pub removed: Vec<ParticipantId>,
    /// The whole ban list, when it changed.
    pub bans: Option<Vec<ParticipantId>>,
    /// The whole guest list, when it changed.
    pub guests: Option<Vec<ParticipantId>>,
    /// The description and pinned link, when they changed (apart from the fields, which change with every join:
    /// the text travels only when it changes).
    pub info: Option<RoomInfo>,
    /// Chat messages posted, sorted by id.
    pub chat_added: Vec<ChatMessage>,
    /// Chat messages gone (deleted, or trimmed by count or age), by id, sorted.
    pub chat_removed: Vec<u64>,
}

impl RoomState {
    /// Applies `changes` (the caller has checked `self.seq == changes.base_seq`).
    pub fn apply(&mut self, changes: &Changes) {
        self.seq = changes.seq;
        if let Some(f) = &changes.room {
            self.name.clone_from(&f.name);
            self.settings = f.settings;
            self.ended = f.ended;
            self.empty_since = f.empty_since;
            self.next_order = f.next_order;
            self.persistent = f.persistent;
            self.revocations.clone_from(&f.revocations);
            self.recording.clone_from(&f.recording);
            self.recordable = f.recordable;
            self.next_chat_id = f.next_chat_id;
        }
        if !changes.chat_removed.is_empty() {
            self.chat.retain(|m| changes.chat_removed.binary_search(&m.id).is_err());
        }
        for m in &changes.chat_added {
            // Ids only grow: a new message goes at the end (an id already held is replaced, for idempotence).
            match self.chat.binary_search_by_key(&m.id, |c| c.id) {
                Ok(i) => self.chat[i] = m.clone(),
                Err(i) => self.chat.insert(i, m.clone()),
            }
        }
        if let Some(bans) = &changes.bans {
            self.bans.clone_from(bans);
        }
        if let Some(guests) = &changes.guests {
            self.guests.clone_from(guests);
        }
        if let Some(info) = &changes.info {
            self.info.clone_from(info);
        }
        // One join or leave touches one record: find it by identity or by join order, without hashing or moving
        // every participant (a room of thousands commits many times a second). Many leaving at once (a hub's
        // listeners whose grace ran out together) take one pass, not a search and a shift each.
        if changes.removed.len() > FEW {
            let gone: HashSet<&ParticipantId> = changes.removed.iter().collect();
            self.participants.retain(|p| !gone.contains(&p.id));
        } else {
            for id in &changes.removed {
                if let Some(i) = self.participants.iter().position(|p| &p.id == id) {
                    self.participants.remove(i);
                }
            }
        }
        for p in &changes.upserted {
            match self.participants.binary_search_by_key(&p.join_order, |q| q.join_order) {
                Ok(i) if self.participants[i].id == p.id => self.participants[i] = p.clone(),
                _ => {
                    // A join is not here yet; anyone else may be, under another join order (a repaired room).
                    if changes.joined.binary_search(&p.id).is_err()
                        && let Some(i) = self.participants.iter().position(|q| q.id == p.id)
                    {
                        self.participants.remove(i);
                    }
                    let at = self.participants.partition_point(|q| q.join_order < p.join_order);
                    self.participants.insert(at, p.clone());
                }
            }
        }
    }

    /// The state a store creates from the first changes of a new room: `Some` when `changes.base_seq == 0` and
    /// they carry the room's fields.
    pub fn created_by(changes: &Changes) -> Option<Self> {
        if changes.base_seq != 0 {
            return None;
        }
        let fields = changes.room.as_ref()?;
        let mut state = Self {
            name: fields.name.clone(),
            seq: 0,
            settings: fields.settings,
            ended: fields.ended,
            empty_since: fields.empty_since,
            next_order: fields.next_order,
            persistent: fields.persistent,
            revocations: fields.revocations.clone(),
            recording: fields.recording.clone(),
            recordable: fields.recordable,
            info: RoomInfo::default(),
            participants: Vec::new(),
            bans: Vec::new(),
            guests: Vec::new(),
            next_chat_id: fields.next_chat_id,
            chat: Vec::new(),
        };
        state.apply(changes);
        Some(state)
    }
}
