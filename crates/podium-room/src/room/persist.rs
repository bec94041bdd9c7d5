//! Persistence: the full plain-data state, rebuilding a room from it, and per-transition change sets.

use std::collections::HashSet;

use super::Room;
use crate::state::{Changes, ParticipantState, RoomFields, RoomState};
use crate::types::{Millis, ParticipantId, Role, RoomConfig, sat_u32, sat_usize};

impl Room {
    /// A full plain-data copy of the room (participants sorted by join order). O(n log n): for stores and tests,
    /// not for every transition (use [`Room::take_changes`] there).
    pub fn state(&self) -> RoomState {
        let mut participants: Vec<ParticipantState> = self.participants.values().cloned().collect();
        participants.sort_by_key(|p| p.join_order);
        RoomState {
            name: self.name.clone(),
            seq: self.seq,
            settings: self.settings,
            ended: self.ended,
            empty_since: self.empty_since,
            next_order: self.next_order,
            persistent: self.persistent,
            revocations: self.revocations.iter().cloned().collect(),
            recording: self.recording.clone(),
            recordable: self.recordable,
            info: self.info.clone(),
            participants,
            bans: self.bans.iter().cloned().collect(),
            guests: self.guests.iter().cloned().collect(),
            next_chat_id: self.next_chat_id,
            chat: self.chat.values().cloned().collect(),
        }
    }

    /// Rebuilds a room from [`Room::state`]: `Room::from_state(room.state(), config).state() == room.state()`.
    ///
    /// Settings come from `state`; `config` supplies limits and timers. Head counts are sent once at the next
    /// [`Room::handle_timeout`] (due at once). Publish permissions are not re-announced: ask
    /// [`Room::may_publish`].
    ///
    /// Never panics. A state that breaks the room's invariants (hand-edited, or from another version) is repaired
    /// deterministically: later duplicates and banned identities are dropped, roles are clamped to ceilings,
    /// clashing order values are reassigned, hands and invitations that are not allowed are dropped, the
    /// audience is muted, a missing grace deadline expires at once, and the capacity grows to fit the stage. A
    /// repaired room's next [`Room::take_changes`] rewrites everything so the store converges.
    pub fn from_state(state: RoomState, config: RoomConfig) -> Self {
        let mut room = Self::blank(state.name, config, state.settings);
        room.seq = state.seq;
        room.base_seq = state.seq;
        room.ended = state.ended;
        room.empty_since = state.empty_since;
        room.bans = state.bans.into_iter().collect();
        room.guests = state.guests.into_iter().collect();
        room.persistent = state.persistent;
        room.info = state.info;
        room.chat = state.chat.into_iter().map(|m| (m.id, m)).collect();
        let past_chat = room.chat.last_key_value().map_or(1, |(id, _)| id.saturating_add(1));
        room.next_chat_id = state.next_chat_id.max(past_chat).max(1);
        room.recording = state.recording;
        room.recordable = state.recordable;
        // Everyone the stored state holds, repaired away or not: the next changes are relative to it.
        room.base_ids = state.participants.iter().map(|p| p.id.clone()).collect();
        let revocations_sorted = state.revocations.is_sorted() && {
            let mut unique = state.revocations.clone();
            unique.dedup();
            unique.len() == state.revocations.len()
        };
        room.revocations = state.revocations.into_iter().collect();
        let max_used =
            state.participants.iter().flat_map(|p| [Some(p.join_order), p.stage_since, p.hand_raised]).flatten().max();
        room.next_order = state.next_order.max(max_used.map_or(0, |m| m.saturating_add(1)));
        let mut repaired = room.next_order != state.next_order || !revocations_sorted;

        let mut join_orders = HashSet::with_capacity(state.participants.len());
        let mut dropped = Vec::new();
        for mut p in state.participants {
            if room.participants.contains_key(&p.id) || room.bans.contains(&p.id) {
                dropped.push(p.id);
                repaired = true;
                continue;
            }
            let original = p.clone();
            p.role = p.role.min(p.ceiling);
            if !join_orders.insert(p.join_order) {
                p.join_order = room.take_order();
                join_orders.insert(p.join_order);
            }
            if p.role.on_stage() {
                p.hand_raised = None;
                p.invite = None;
                let since = match p.stage_since {
                    Some(s) if !room.stage.contains_key(&s) => s,
                    _ => room.take_order(),
                };
                p.stage_since = Some(since);
                room.stage.insert(since, p.id.clone());
            } else {
                p.stage_since = None;
                p.muted = true;
                room.audience.insert(p.join_order, p.id.clone());
                if p.ceiling < Role::Speaker {
                    p.hand_raised = None;
                    p.invite = None;
                }
                if let Some(key) = p.hand_raised {
                    let key = if room.hands.contains_key(&key) { room.take_order() } else { key };
                    p.hand_raised = Some(key);
                    room.hands.insert(key, p.id.clone());
                }
                if let Some(at) = p.hand_expires_at.filter(|_| p.hand_raised.is_some()) {
                    room.hand_expiry.insert((at, p.id.clone()));
                }
                if let Some(invite) = &p.invite {
                    room.invites.insert((invite.expires_at, p.id.clone()));
                }
            }
            if p.hand_raised.is_none() {
                p.hand_expires_at = None;
            }
            if p.connected {
                p.grace_deadline = None;
            } else {
                let deadline = p.grace_deadline.unwrap_or(0);
                p.grace_deadline = Some(deadline);
                room.graces.insert((deadline, p.id.clone()));
            }
            repaired |= p != original;
            room.participants.insert(p.id.clone(), p);
        }
        if room.stage.len() > sat_usize(room.settings.stage_capacity) {
            room.settings.stage_capacity = sat_u32(room.stage.len());
            repaired = true;
        }
        if !room.ended {
            if room.participants.is_empty() && room.empty_since.is_none() {
                room.empty_since = Some(0);
                repaired = true;
            } else if !room.participants.is_empty() && room.empty_since.is_some() {
                room.empty_since = None;
                repaired = true;
            }
            // Head counts were not stored: send them once, at the next timeout.
            room.counts_flush_at = Some(0);
        }
        if repaired {
            room.fields_dirty = true;
            room.bans_dirty = true;
            room.guests_dirty = true;
            room.info_dirty = true;
            room.dirty = room.participants.keys().cloned().chain(dropped).collect();
        }
        room
    }

    /// Applies a transition another writer committed (the store's [`Changes`] from `self.seq` to `changes.seq`),
    /// as if this room had run it, but emits nothing: whoever ran it delivered its events. Use it to follow a room
    /// that several hubs share. The head counts last sent are kept; if the counts changed, a counts flush is
    /// scheduled `counts_interval` after `now` (as after a local transition).
    ///
    /// Returns false and changes nothing unless `changes.base_seq == self.seq` and this room has no changes not yet
    /// taken ([`Room::take_changes`]); then rebuild the room from the stored state instead. O(changes · log n).
    pub fn apply_changes(&mut self, changes: &Changes, now: Millis) -> bool {
        let pending = self.seq != self.base_seq
            || !self.dirty.is_empty()
            || self.fields_dirty
            || self.bans_dirty
            || self.guests_dirty
            || self.info_dirty
            || !self.chat_added.is_empty()
            || !self.chat_removed.is_empty();
        if pending || changes.base_seq != self.seq || changes.seq < changes.base_seq {
            return false;
        }
        self.seq = changes.seq;
        self.base_seq = changes.seq;
        if let Some(f) = &changes.room {
            self.name.clone_from(&f.name);
            self.settings = f.settings;
            self.ended = f.ended;
            self.empty_since = f.empty_since;
            self.next_order = f.next_order;
            self.persistent = f.persistent;
            self.recording.clone_from(&f.recording);
            self.recordable = f.recordable;
            self.revocations = f.revocations.iter().cloned().collect();
            self.next_chat_id = f.next_chat_id;
        }
        for id in &changes.chat_removed {
            self.chat.remove(id);
        }
        for m in &changes.chat_added {
            self.chat.insert(m.id, m.clone());
            // Another writer's messages count against the room's flood cap here too.
            self.take_chat_token(now);
        }
        if let Some(bans) = &changes.bans {
            self.bans = bans.iter().cloned().collect();
        }
        if let Some(guests) = &changes.guests {
            self.guests = guests.iter().cloned().collect();
        }
        if let Some(info) = &changes.info {
            self.info.clone_from(info);
        }
        for id in changes.removed.iter().chain(changes.upserted.iter().map(|p| &p.id)) {
            self.unindex(id);
        }
        for p in &changes.upserted {
            self.index(p.clone());
        }
        for id in &changes.removed {
            self.base_ids.remove(id);
        }
        self.base_ids.extend(changes.upserted.iter().map(|p| p.id.clone()));
        if self.ended {
            self.counts_flush_at = None;
        } else if self.counts_flush_at.is_none() && self.counts_sent != Some(self.counts()) {
            self.counts_flush_at = Some(now.saturating_add(self.config.counts_interval));
        }
        true
    }

    /// Removes a participant and its index entries (nothing if absent).
    fn unindex(&mut self, id: &ParticipantId) {
        let Some(p) = self.participants.remove(id) else { return };
        if self.audience.get(&p.join_order) == Some(id) {
            self.audience.remove(&p.join_order);
        }
        if let Some(since) = p.stage_since
            && self.stage.get(&since) == Some(id)
        {
            self.stage.remove(&since);
        }
        if let Some(key) = p.hand_raised
            && self.hands.get(&key) == Some(id)
        {
            self.hands.remove(&key);
        }
        if let Some(at) = p.hand_expires_at {
            self.hand_expiry.remove(&(at, id.clone()));
        }
        if let Some(deadline) = p.grace_deadline {
            self.graces.remove(&(deadline, id.clone()));
        }
        if let Some(invite) = &p.invite {
            self.invites.remove(&(invite.expires_at, id.clone()));
        }
    }

    /// Adds a participant record as stored (consistent: written by a room) to the participants and indexes.
    fn index(&mut self, p: ParticipantState) {
        let id = p.id.clone();
        match p.stage_since {
            Some(since) if p.role.on_stage() => {
                self.stage.insert(since, id.clone());
            }
            _ => {
                self.audience.insert(p.join_order, id.clone());
            }
        }
        if let Some(key) = p.hand_raised {
            self.hands.insert(key, id.clone());
        }
        if let Some(at) = p.hand_expires_at {
            self.hand_expiry.insert((at, id.clone()));
        }
        if let Some(deadline) = p.grace_deadline {
            self.graces.insert((deadline, id.clone()));
        }
        if let Some(invite) = &p.invite {
            self.invites.insert((invite.expires_at, id.clone()));
        }
        self.participants.insert(id, p);
    }

    /// What changed since the last call (or since creation / restore): `None` if nothing did. The hub commits
    /// it to the store after every input; applying it to the stored state at `base_seq` gives [`Room::state`].
    pub fn take_changes(&mut self) -> Option<Changes> {
        let nothing = self.seq == self.base_seq
            && self.dirty.is_empty()
            && !self.fields_dirty
            && !self.bans_dirty
            && !self.guests_dirty
            && !self.info_dirty
            && self.chat_added.is_empty()
            && self.chat_removed.is_empty();
        if nothing {
            return None;
        }
        let mut upserted = Vec::new();
        let mut removed = Vec::new();
        for id in std::mem::take(&mut self.dirty) {
            match self.participants.get(&id) {
                Some(p) => upserted.push(p.clone()),
                None => removed.push(id),
            }
        }
        upserted.sort_by_key(|p| p.join_order);
        removed.sort();
        let mut joined: Vec<ParticipantId> =
            upserted.iter().filter(|p| !self.base_ids.contains(&p.id)).map(|p| p.id.clone()).collect();
        joined.sort();
        for id in &removed {
            self.base_ids.remove(id);
        }
        self.base_ids.extend(joined.iter().cloned());
        let changes = Changes {
            base_seq: self.base_seq,
            seq: self.seq,
            room: self.fields_dirty.then(|| RoomFields {
                name: self.name.clone(),
                settings: self.settings,
                ended: self.ended,
                empty_since: self.empty_since,
                next_order: self.next_order,
                persistent: self.persistent,
                revocations: self.revocations.iter().cloned().collect(),
                next_chat_id: self.next_chat_id,
                recording: self.recording.clone(),
                recordable: self.recordable,
            }),
            upserted,
            joined,
            removed,
            bans: self.bans_dirty.then(|| self.bans.iter().cloned().collect()),
            guests: self.guests_dirty.then(|| self.guests.iter().cloned().collect()),
            info: self.info_dirty.then(|| self.info.clone()),
            chat_added: std::mem::take(&mut self.chat_added),
            chat_removed: {
                let mut removed = std::mem::take(&mut self.chat_removed);
                removed.sort_unstable();
                removed.dedup();
                removed
            },
        };
        self.base_seq = self.seq;
        self.fields_dirty = false;
        self.bans_dirty = false;
        self.guests_dirty = false;
        self.info_dirty = false;
        Some(changes)
    }
}
