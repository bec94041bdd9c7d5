//! Checks that the indexes agree with the participants and that the room's invariants hold (for the tests and
//! the fuzz target, through [`crate::conformance`]).

use std::collections::HashSet;

use super::Room;
use crate::types::{Role, Settings, sat_usize};

impl Room {
    /// Every internal invariant; `Err` names the first one broken. For tests and fuzzing, not the stable API.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut join_orders = HashSet::new();
        let (mut n_hands, mut n_invites, mut n_graces, mut n_expiring) = (0, 0, 0, 0);
        for (id, p) in &self.participants {
            let who = id.as_str();
            if &p.id != id {
                return Err(format!("{who}: keyed under another id"));
            }
            if p.role > p.ceiling {
                return Err(format!("{who}: role {:?} above ceiling {:?}", p.role, p.ceiling));
            }
            if self.bans.contains(id) {
                return Err(format!("{who}: banned but present"));
            }
            if !join_orders.insert(p.join_order) {
                return Err(format!("{who}: duplicate join order"));
            }
            for v in [Some(p.join_order), p.stage_since, p.hand_raised].into_iter().flatten() {
                if v >= self.next_order {
                    return Err(format!("{who}: order value {v} not below next_order {}", self.next_order));
                }
            }
            if p.role.on_stage() {
                let Some(since) = p.stage_since else { return Err(format!("{who}: on stage without stage_since")) };
                if self.stage.get(&since) != Some(id) {
                    return Err(format!("{who}: missing from the stage index"));
                }
                if p.hand_raised.is_some() || p.invite.is_some() {
                    return Err(format!("{who}: on stage with a hand or invitation"));
                }
            } else {
                if p.stage_since.is_some() {
                    return Err(format!("{who}: audience with stage_since"));
                }
                if self.audience.get(&p.join_order) != Some(id) {
                    return Err(format!("{who}: missing from the audience index"));
                }
                if !p.muted {
                    return Err(format!("{who}: audience not muted"));
                }
            }
            if let Some(key) = p.hand_raised {
                n_hands += 1;
                if p.role != Role::Audience || p.ceiling < Role::Speaker || self.hands.get(&key) != Some(id) {
                    return Err(format!("{who}: bad hand"));
                }
            }
            if let Some(at) = p.hand_expires_at {
                n_expiring += 1;
                if p.hand_raised.is_none() || !self.hand_expiry.contains(&(at, id.clone())) {
                    return Err(format!("{who}: hand expiry without a raised hand, or missing from its index"));
                }
            }
            if let Some(invite) = &p.invite {
                n_invites += 1;
                if p.role != Role::Audience
                    || p.ceiling < Role::Speaker
                    || !self.invites.contains(&(invite.expires_at, id.clone()))
                {
                    return Err(format!("{who}: bad invitation"));
                }
            }
            match (p.connected, p.grace_deadline) {
                (true, None) => {}
                (false, Some(d)) if self.graces.contains(&(d, id.clone())) => n_graces += 1,
                _ => return Err(format!("{who}: connected / grace mismatch")),
            }
        }
        if self.audience.len() + self.stage.len() != self.participants.len() {
            return Err("audience + stage != participants".into());
        }
        if self.hands.len() != n_hands
            || self.invites.len() != n_invites
            || self.graces.len() != n_graces
            || self.hand_expiry.len() != n_expiring
        {
            return Err("stale entries in the hand, hand expiry, invitation or grace index".into());
        }
        if self.stage.len() > sat_usize(self.settings.stage_capacity) {
            return Err(format!("stage {} over capacity {}", self.stage.len(), self.settings.stage_capacity));
        }
        if !self.ended && self.participants.is_empty() != self.empty_since.is_some() {
            return Err("empty timer out of step with presence".into());
        }
        if self.chat.len() > self.config.chat_history.max(1) {
            return Err(format!("chat history of {} over {}", self.chat.len(), self.config.chat_history));
        }
        for (id, m) in &self.chat {
            if *id != m.id || *id == 0 || *id >= self.next_chat_id {
                return Err(format!("chat message {id}: id out of step (next {})", self.next_chat_id));
            }
            let text_ok = !m.text.is_empty()
                && m.text.trim() == m.text
                && m.text.chars().count() <= self.config.chat_max_chars
                && !m.text.chars().any(|c| c.is_control() && c != '\n');
            if !text_ok {
                return Err(format!("chat message {id}: text not as checked"));
            }
        }
        if self.settings.chat_slow_mode_ms > Settings::MAX_CHAT_SLOW_MODE_MS {
            return Err("chat slow mode over its bound".into());
        }
        Ok(())
    }
}
