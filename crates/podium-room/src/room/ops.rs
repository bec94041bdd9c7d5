//! The room's internal operations: every mutation of a participant goes through these helpers, which keep the
//! indexes and change tracking consistent; and the internal views built on them.

use super::{Room, Tx};
use crate::event::{Event, InviteView, ParticipantSummary, Recipients, StageCause, YourState};
use crate::state::{Invite, ParticipantState};
use crate::types::{Millis, ParticipantId, Role, sat_u32, sat_usize};

impl Room {
    /// A participant for mutation, marked changed for the store.
    pub(super) fn pm(&mut self, id: &ParticipantId) -> Option<&mut ParticipantState> {
        let p = self.participants.get_mut(id)?;
        if !self.dirty.contains(id) {
            self.dirty.insert(id.clone());
        }
        Some(p)
    }

    /// The next order counter value.
    pub(super) fn take_order(&mut self) -> u64 {
        let v = self.next_order;
        self.next_order = self.next_order.saturating_add(1);
        self.fields_dirty = true;
        v
    }

    /// Changes a role, moving the participant between audience and stage as needed. Taking the stage: muted,
    /// new stage order, hand and invitation cleared. Leaving it: muted, back into the audience at their join order.
    pub(super) fn set_role(&mut self, id: &ParticipantId, role: Role, tx: &mut Tx) {
        let Some(p) = self.participants.get(id) else { return };
        let old = p.role;
        if old == role {
            return;
        }
        let (join_order, stage_since) = (p.join_order, p.stage_since);
        if !old.on_stage() {
            self.clear_hand(id, tx);
            self.set_invite(id, None, tx);
            self.audience.remove(&join_order);
            let since = self.take_order();
            self.stage.insert(since, id.clone());
            if let Some(p) = self.pm(id) {
                p.role = role;
                p.stage_since = Some(since);
                p.muted = true;
            }
        } else if !role.on_stage() {
            if let Some(since) = stage_since {
                self.stage.remove(&since);
            }
            self.audience.insert(join_order, id.clone());
            if let Some(p) = self.pm(id) {
                p.role = role;
                p.stage_since = None;
                p.muted = true;
            }
        } else if let Some(p) = self.pm(id) {
            p.role = role;
        }
        tx.you(id);
    }

    /// Lowers a raised hand (nothing if not raised), with its expiry.
    pub(super) fn clear_hand(&mut self, id: &ParticipantId, tx: &mut Tx) {
        let Some(p) = self.participants.get(id) else { return };
        let Some(key) = p.hand_raised else { return };
        if let Some(at) = p.hand_expires_at {
            self.hand_expiry.remove(&(at, id.clone()));
        }
        self.hands.remove(&key);
        if let Some(p) = self.pm(id) {
            p.hand_raised = None;
            p.hand_expires_at = None;
        }
        tx.hand_removed(key);
        tx.you(id);
    }

    /// Raises a hand at the end of the queue, expiring `hand_ttl` after `now` (never with 0); returns its 1-based
    /// position.
    pub(super) fn raise_hand(&mut self, id: &ParticipantId, now: Millis, tx: &mut Tx) -> u32 {
        let key = self.take_order();
        let expires_at = (self.config.hand_ttl > 0).then(|| now.saturating_add(self.config.hand_ttl));
        self.hands.insert(key, id.clone());
        if let Some(at) = expires_at {
            self.hand_expiry.insert((at, id.clone()));
        }
        if let Some(p) = self.pm(id) {
            p.hand_raised = Some(key);
            p.hand_expires_at = expires_at;
        }
        tx.hands_changed = true;
        tx.you(id);
        sat_u32(self.hands.len())
    }

    /// Sets or clears an invitation (nothing if unchanged).
    pub(super) fn set_invite(&mut self, id: &ParticipantId, invite: Option<Invite>, tx: &mut Tx) {
        let Some(p) = self.participants.get(id) else { return };
        if p.invite == invite {
            return;
        }
        if let Some(old) = &p.invite {
            self.invites.remove(&(old.expires_at, id.clone()));
        }
        if let Some(new) = &invite {
            self.invites.insert((new.expires_at, id.clone()));
        }
        if let Some(p) = self.pm(id) {
            p.invite = invite;
        }
        tx.you(id);
    }

    /// Sets the mute flag (stage members only; the audience is always muted).
    pub(super) fn set_muted(&mut self, id: &ParticipantId, muted: bool, tx: &mut Tx) {
        let changes = self.participants.get(id).is_some_and(|p| p.role.on_stage() && p.muted != muted);
        if changes && let Some(p) = self.pm(id) {
            p.muted = muted;
            tx.you(id);
        }
    }

    /// Removes a participant from the room and every index.
    pub(super) fn remove_participant(&mut self, id: &ParticipantId, tx: &mut Tx) -> Option<ParticipantState> {
        let p = self.participants.remove(id)?;
        self.dirty.insert(id.clone());
        match p.stage_since {
            Some(since) if p.role.on_stage() => {
                self.stage.remove(&since);
            }
            _ => {
                self.audience.remove(&p.join_order);
            }
        }
        if let Some(key) = p.hand_raised {
            self.hands.remove(&key);
            tx.hand_removed(key);
        }
        if let Some(at) = p.hand_expires_at {
            self.hand_expiry.remove(&(at, id.clone()));
        }
        if let Some(invite) = &p.invite {
            self.invites.remove(&(invite.expires_at, id.clone()));
        }
        if let Some(deadline) = p.grace_deadline {
            self.graces.remove(&(deadline, id.clone()));
        }
        Some(p)
    }

    /// Removes a participant and tells who needs to know: the stage roster, or the stage's audience list.
    pub(super) fn remove_with_events(&mut self, id: &ParticipantId, cause: StageCause, tx: &mut Tx) {
        let Some(p) = self.remove_participant(id, tx) else { return };
        if p.role.on_stage() {
            self.emit_stage(cause);
        } else {
            self.emit(Recipients::Stage, Event::ParticipantLeft { id: p.id });
        }
    }

    // ------------------------------------------------------------------------------------------------- views

    pub(super) fn seat_free(&self) -> bool {
        self.stage.len() < sat_usize(self.settings.stage_capacity)
    }

    pub(super) fn moderators(&self) -> Vec<ParticipantId> {
        self.stage
            .values()
            .filter(|id| self.participants.get(*id).is_some_and(|p| p.role == Role::Moderator))
            .cloned()
            .collect()
    }

    pub(super) fn publishing(&self) -> Vec<ParticipantId> {
        self.stage_where(|p| !p.muted)
    }

    /// Stage members whose audio is recorded now (see [`Room::is_recorded`]).
    pub(super) fn recorded(&self) -> Vec<ParticipantId> {
        if self.recording.is_none() {
            return Vec::new();
        }
        self.stage_where(|p| !p.recording_opt_out)
    }

    /// Stage members (in stage order) for whom `keep` holds; none once the room ended.
    fn stage_where(&self, keep: impl Fn(&ParticipantState) -> bool) -> Vec<ParticipantId> {
        if self.ended {
            return Vec::new();
        }
        self.stage
            .values()
            .filter(|id| self.participants.get(*id).is_some_and(|p| p.role.on_stage() && keep(p)))
            .cloned()
            .collect()
    }

    /// 1-based place in the queue.
    pub(super) fn hand_position(&self, p: &ParticipantState) -> Option<u32> {
        let key = p.hand_raised?;
        Some(sat_u32(self.hands_before(key).saturating_add(1)))
    }

    /// How many queued hands have a key below `key`, counting from both ends at once: O(min(ahead, behind)), so
    /// the newest hands (the common case: a raise, a snapshot) cost O(1) even in a long queue.
    pub(super) fn hands_before(&self, key: u64) -> usize {
        let mut ahead = self.hands.range(..key);
        let mut behind = self.hands.range(key..);
        let mut counted = 0usize;
        loop {
            if ahead.next().is_none() {
                return counted;
            }
            if behind.next().is_none() {
                // `behind` ran out after `counted` entries: all the others are ahead.
                return self.hands.len().saturating_sub(counted);
            }
            counted += 1;
        }
    }

    pub(super) fn your_state(&self, p: &ParticipantState, hand_position: Option<u32>) -> YourState {
        YourState {
            role: p.role,
            ceiling: p.ceiling,
            muted: p.muted,
            hand_position,
            hand_expires_at: p.hand_expires_at.filter(|_| p.hand_raised.is_some()),
            invite: p.invite.as_ref().map(|i| InviteView { by: i.by.clone(), expires_at: i.expires_at }),
            recording_opt_out: p.recording_opt_out,
        }
    }

    pub(super) fn hand_summaries(&self) -> Vec<ParticipantSummary> {
        self.hands
            .values()
            .take(self.config.hand_queue_event_limit)
            .filter_map(|id| self.participants.get(id))
            .map(|p| ParticipantSummary { id: p.id.clone(), name: p.name.clone() })
            .collect()
    }
}
