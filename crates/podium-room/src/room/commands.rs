//! `handle_command`: one method per command. Each validates completely (no mutation) and only then begins a
//! transition, so a refused command changes nothing. A command that would change nothing is accepted as a no-op
//! without a transition.

use std::collections::HashMap;
use std::ops::Bound;

use super::Room;
use crate::command::{AudienceEntry, AudiencePage, Command, CommandError, Reply};
use crate::event::{DisconnectReason, EndReason, Event, Output, Recipients, StageCause};
use crate::state::{Invite, ParticipantState};
use crate::types::{Millis, ParticipantId, Role, Settings, sat_usize};

const NOT_IN_ROOM: &str = "you are not in this room";
const NO_TARGET: &str = "no such participant in this room";
const MODERATORS_ONLY: &str = "only moderators may do this";

type Outcome = Result<Reply, CommandError>;

impl Room {
    /// A command from a present participant. `Ok` means accepted (possibly as a no-op); `Err` changes nothing.
    pub fn handle_command(&mut self, now: Millis, from: &ParticipantId, command: Command) -> Outcome {
        if self.ended {
            return Err(CommandError::Ended);
        }
        let sender = self.participants.get(from).ok_or(CommandError::NotFound(NOT_IN_ROOM))?;
        let role = sender.role;
        match command {
            Command::RaiseHand => self.raise_hand_cmd(now, from),
            Command::LowerHand => self.lower_hand_cmd(now, from),
            Command::ApproveHand { target } => self.approve_hand(now, role, from, &target),
            Command::InviteToStage { target } => self.invite_to_stage(now, role, from, &target),
            Command::CancelInvite { target } => self.cancel_invite(now, role, &target),
            Command::AcceptInvite => self.accept_invite(now, from),
            Command::DeclineInvite => self.decline_invite(now, from),
            Command::StepDown => self.step_down(now, from),
            Command::MoveToAudience { target } => self.move_to_audience(now, role, from, &target),
            Command::SetMuted { muted } => self.set_muted_cmd(now, from, muted),
            Command::Mute { target } => self.mute(now, role, from, &target),
            Command::Kick { target } => self.remove_cmd(now, role, from, &target, DisconnectReason::Kicked),
            Command::Ban { target } => self.remove_cmd(now, role, from, &target, DisconnectReason::Banned),
            Command::Unban { target } => self.unban(now, role, &target),
            Command::MakeModerator { target } => self.make_moderator(now, role, from, &target),
            Command::RevokeModerator { target } => self.revoke_moderator(now, role, from, &target),
            Command::Handover { stage } => self.handover(now, role, from, &stage),
            Command::UpdateSettings { open_mic, closed, stage_capacity } => {
                self.update_settings(now, role, open_mic, closed, stage_capacity)
            }
            Command::InviteToRoom { identity } => self.guest_list(now, role, identity, true),
            Command::UninviteFromRoom { identity } => self.guest_list(now, role, identity, false),
            Command::ListAudience { after, limit } => self.list_audience(role, after, limit),
            Command::GetState => self.snapshot_for(from).map(Reply::State).ok_or(CommandError::NotFound(NOT_IN_ROOM)),
            Command::EndRoom => {
                require_moderator(role)?;
                let tx = self.begin();
                self.end(&tx, EndReason::ByModerator(from.clone()));
                Ok(Reply::Done)
            }
        }
    }

    fn target(&self, id: &ParticipantId) -> Result<&ParticipantState, CommandError> {
        self.participants.get(id).ok_or(CommandError::NotFound(NO_TARGET))
    }

    fn raise_hand_cmd(&mut self, now: Millis, from: &ParticipantId) -> Outcome {
        let p = self.target(from)?;
        if p.role != Role::Audience {
            return Err(CommandError::Forbidden("only the audience raises hands"));
        }
        if p.ceiling < Role::Speaker {
            return Err(CommandError::Forbidden("token does not allow the stage"));
        }
        if p.hand_raised.is_some() {
            return Ok(Reply::Hand { position: self.hand_position(p), promoted: false });
        }
        let mut tx = self.begin();
        let reply = if self.settings.open_mic && self.seat_free() {
            self.set_role(from, Role::Speaker, &mut tx);
            self.emit_stage(StageCause::Promoted { id: from.clone(), by: None });
            Reply::Hand { position: None, promoted: true }
        } else {
            let position = self.raise_hand(from, &mut tx);
            Reply::Hand { position: Some(position), promoted: false }
        };
        self.finish(now, tx);
        Ok(reply)
    }

    fn lower_hand_cmd(&mut self, now: Millis, from: &ParticipantId) -> Outcome {
        if self.target(from)?.hand_raised.is_none() {
            return Ok(Reply::Done);
        }
        let mut tx = self.begin();
        self.clear_hand(from, &mut tx);
        self.finish(now, tx);
        Ok(Reply::Done)
    }

    fn approve_hand(&mut self, now: Millis, role: Role, from: &ParticipantId, target: &ParticipantId) -> Outcome {
        require_moderator(role)?;
        if self.target(target)?.hand_raised.is_none() {
            return Err(CommandError::Conflict("hand not raised"));
        }
        if !self.seat_free() {
            return Err(CommandError::StageFull);
        }
        let mut tx = self.begin();
        self.set_role(target, Role::Speaker, &mut tx);
        self.emit_stage(StageCause::Promoted { id: target.clone(), by: Some(from.clone()) });
        self.finish(now, tx);
        Ok(Reply::Done)
    }

    fn invite_to_stage(&mut self, now: Millis, role: Role, from: &ParticipantId, target: &ParticipantId) -> Outcome {
        require_moderator(role)?;
        let p = self.target(target)?;
        if p.role != Role::Audience {
            return Err(CommandError::Conflict("already on stage"));
        }
        if p.ceiling < Role::Speaker {
            return Err(CommandError::Forbidden("token does not allow the stage"));
        }
        let invite = Invite { by: from.clone(), expires_at: now.saturating_add(self.config.invite_ttl) };
        if p.invite.as_ref() == Some(&invite) {
            return Ok(Reply::Done);
        }
        let mut tx = self.begin();
        self.set_invite(target, Some(invite), &mut tx);
        self.finish(now, tx);
        Ok(Reply::Done)
    }

    fn cancel_invite(&mut self, now: Millis, role: Role, target: &ParticipantId) -> Outcome {
        require_moderator(role)?;
        if self.target(target)?.invite.is_none() {
            return Err(CommandError::NotFound("no invitation"));
        }
        let mut tx = self.begin();
        self.set_invite(target, None, &mut tx);
        self.finish(now, tx);
        Ok(Reply::Done)
    }

    /// The sender's invitation, if it is still open at `now`.
    fn live_invite(&self, from: &ParticipantId, now: Millis) -> Result<&ParticipantState, CommandError> {
        let p = self.target(from)?;
        match &p.invite {
            Some(invite) if invite.expires_at > now && p.role == Role::Audience => Ok(p),
            _ => Err(CommandError::NotFound("no invitation")),
        }
    }

    fn accept_invite(&mut self, now: Millis, from: &ParticipantId) -> Outcome {
        let p = self.live_invite(from, now)?;
        if p.ceiling < Role::Speaker {
            // Unreachable while invariants hold (an invitation is dropped when the ceiling falls); refuse anyway.
            return Err(CommandError::Forbidden("token does not allow the stage"));
        }
        if !self.seat_free() {
            return Err(CommandError::StageFull);
        }
        let mut tx = self.begin();
        self.set_role(from, Role::Speaker, &mut tx);
        self.emit_stage(StageCause::InviteAccepted(from.clone()));
        self.emit(Recipients::Moderators, Event::InviteAnswered { id: from.clone(), accepted: true, expired: false });
        self.finish(now, tx);
        Ok(Reply::Done)
    }

    fn decline_invite(&mut self, now: Millis, from: &ParticipantId) -> Outcome {
        self.live_invite(from, now)?;
        let mut tx = self.begin();
        self.set_invite(from, None, &mut tx);
        self.emit(Recipients::Moderators, Event::InviteAnswered { id: from.clone(), accepted: false, expired: false });
        self.finish(now, tx);
        Ok(Reply::Done)
    }

    fn step_down(&mut self, now: Millis, from: &ParticipantId) -> Outcome {
        if !self.target(from)?.role.on_stage() {
            return Err(CommandError::Conflict("not on stage"));
        }
        let mut tx = self.begin();
        self.set_role(from, Role::Audience, &mut tx);
        self.emit_stage(StageCause::SteppedDown(from.clone()));
        self.finish(now, tx);
        Ok(Reply::Done)
    }

    fn move_to_audience(&mut self, now: Millis, role: Role, from: &ParticipantId, target: &ParticipantId) -> Outcome {
        require_moderator(role)?;
        match self.target(target)?.role {
            Role::Moderator => return Err(CommandError::Forbidden("revoke moderator first")),
            Role::Audience => return Err(CommandError::Conflict("not on stage")),
            Role::Speaker => {}
        }
        let mut tx = self.begin();
        self.set_role(target, Role::Audience, &mut tx);
        self.emit_stage(StageCause::MovedToAudience { id: target.clone(), by: from.clone() });
        self.finish(now, tx);
        Ok(Reply::Done)
    }

    fn set_muted_cmd(&mut self, now: Millis, from: &ParticipantId, muted: bool) -> Outcome {
        let p = self.target(from)?;
        if !p.role.on_stage() {
            return Err(CommandError::Forbidden("the audience cannot publish"));
        }
        if p.muted == muted {
            return Ok(Reply::Done);
        }
        let mut tx = self.begin();
        self.set_muted(from, muted, &mut tx);
        let cause =
            if muted { StageCause::Muted { id: from.clone(), by: None } } else { StageCause::Unmuted(from.clone()) };
        self.emit_stage(cause);
        self.finish(now, tx);
        Ok(Reply::Done)
    }

    fn mute(&mut self, now: Millis, role: Role, from: &ParticipantId, target: &ParticipantId) -> Outcome {
        require_moderator(role)?;
        let p = self.target(target)?;
        if !p.role.on_stage() {
            return Err(CommandError::Conflict("not on stage"));
        }
        if p.muted {
            return Ok(Reply::Done);
        }
        let mut tx = self.begin();
        self.set_muted(target, true, &mut tx);
        self.emit_stage(StageCause::Muted { id: target.clone(), by: Some(from.clone()) });
        self.finish(now, tx);
        Ok(Reply::Done)
    }

    /// Kick or ban.
    fn remove_cmd(
        &mut self,
        now: Millis,
        role: Role,
        from: &ParticipantId,
        target: &ParticipantId,
        reason: DisconnectReason,
    ) -> Outcome {
        require_moderator(role)?;
        if target == from {
            return Err(CommandError::BadRequest("cannot remove yourself"));
        }
        let present = match (self.participants.get(target), reason) {
            (Some(p), _) if p.role == Role::Moderator => {
                return Err(CommandError::Forbidden("cannot remove a moderator"));
            }
            (Some(_), _) => true,
            (None, DisconnectReason::Kicked) => return Err(CommandError::NotFound(NO_TARGET)),
            (None, DisconnectReason::Banned) => false,
        };
        let ban = reason == DisconnectReason::Banned;
        if ban && !present && self.bans.contains(target) {
            return Ok(Reply::Done);
        }
        let mut tx = self.begin();
        if ban {
            self.bans.insert(target.clone());
            self.bans_dirty = true;
        }
        if present {
            self.remove_with_events(target, StageCause::Removed { id: target.clone(), by: from.clone() }, &mut tx);
            tx.disconnect = Some(Output::Disconnect { who: target.clone(), reason });
        }
        self.finish(now, tx);
        Ok(Reply::Done)
    }

    fn unban(&mut self, now: Millis, role: Role, target: &ParticipantId) -> Outcome {
        require_moderator(role)?;
        if !self.bans.contains(target) {
            return Err(CommandError::NotFound("not banned"));
        }
        let tx = self.begin();
        self.bans.remove(target);
        self.bans_dirty = true;
        self.finish(now, tx);
        Ok(Reply::Done)
    }

    fn make_moderator(&mut self, now: Millis, role: Role, from: &ParticipantId, target: &ParticipantId) -> Outcome {
        require_moderator(role)?;
        let p = self.target(target)?;
        if p.ceiling != Role::Moderator {
            return Err(CommandError::Forbidden("token does not allow moderating"));
        }
        match p.role {
            Role::Moderator => return Ok(Reply::Done),
            Role::Audience if !self.seat_free() => return Err(CommandError::StageFull),
            Role::Audience | Role::Speaker => {}
        }
        let mut tx = self.begin();
        self.set_role(target, Role::Moderator, &mut tx);
        self.emit_stage(StageCause::ModeratorGranted { id: target.clone(), by: from.clone() });
        self.finish(now, tx);
        Ok(Reply::Done)
    }

    fn revoke_moderator(&mut self, now: Millis, role: Role, from: &ParticipantId, target: &ParticipantId) -> Outcome {
        require_moderator(role)?;
        if self.target(target)?.role != Role::Moderator {
            return Err(CommandError::Conflict("not a moderator"));
        }
        if self.moderators().len() <= 1 {
            return Err(CommandError::Conflict("last moderator"));
        }
        let mut tx = self.begin();
        self.set_role(target, Role::Speaker, &mut tx);
        self.emit_stage(StageCause::ModeratorRevoked { id: target.clone(), by: from.clone() });
        self.finish(now, tx);
        Ok(Reply::Done)
    }

    fn handover(&mut self, now: Millis, role: Role, from: &ParticipantId, stage: &[(ParticipantId, Role)]) -> Outcome {
        require_moderator(role)?;
        if stage.is_empty() {
            return Err(CommandError::BadRequest("a handover needs at least one stage member"));
        }
        if stage.iter().any(|(_, r)| !r.on_stage()) {
            return Err(CommandError::BadRequest("handover roles must be speaker or moderator"));
        }
        let mut listed: HashMap<&ParticipantId, Role> = HashMap::with_capacity(stage.len());
        for (id, r) in stage {
            if listed.insert(id, *r).is_some() {
                return Err(CommandError::BadRequest("duplicate participant in handover"));
            }
        }
        for (id, r) in stage {
            if !self.participants.contains_key(id) {
                return Err(CommandError::NotFound(NO_TARGET));
            }
            if self.participants.get(id).is_some_and(|p| p.ceiling < *r) {
                return Err(CommandError::Forbidden("token does not allow that role"));
            }
        }
        if stage.len() > sat_usize(self.settings.stage_capacity) {
            return Err(CommandError::StageFull);
        }
        let leaving: Vec<ParticipantId> = self.stage.values().filter(|id| !listed.contains_key(id)).cloned().collect();
        // The outcome includes succession (the sender is a moderator, so there is one before): with no moderator
        // listed, the longest-serving listed member whose token allows it becomes moderator (stayers keep their
        // stage order, newcomers follow in list order). A handover that would end where it started is a no-op.
        let may_moderate =
            |id: &&ParticipantId| self.participants.get(*id).is_some_and(|p| p.ceiling == Role::Moderator);
        let heir = if listed.values().any(|r| *r == Role::Moderator) {
            None
        } else {
            let stayer = self.stage.values().filter(|id| listed.contains_key(id)).find(may_moderate);
            stayer.or_else(|| stage.iter().map(|(id, _)| id).filter(|id| !self.stage_member(id)).find(may_moderate))
        };
        let unchanged = leaving.is_empty()
            && stage.iter().all(|(id, r)| {
                let role = if heir == Some(id) { Role::Moderator } else { *r };
                self.participants.get(id).is_some_and(|p| p.role == role)
            });
        if unchanged {
            return Ok(Reply::Done);
        }
        let mut tx = self.begin();
        for id in &leaving {
            self.set_role(id, Role::Audience, &mut tx);
        }
        for (id, r) in stage {
            self.set_role(id, *r, &mut tx);
        }
        self.emit_stage(StageCause::Handover { by: from.clone() });
        self.finish(now, tx);
        Ok(Reply::Done)
    }

    fn update_settings(
        &mut self,
        now: Millis,
        role: Role,
        open_mic: Option<bool>,
        closed: Option<bool>,
        stage_capacity: Option<u32>,
    ) -> Outcome {
        require_moderator(role)?;
        if open_mic.is_none() && closed.is_none() && stage_capacity.is_none() {
            return Err(CommandError::BadRequest("nothing to update"));
        }
        if let Some(capacity) = stage_capacity {
            if capacity == 0 || capacity > self.config.max_stage_capacity {
                return Err(CommandError::BadRequest("stage_capacity out of range"));
            }
            if sat_usize(capacity) < self.stage.len() {
                return Err(CommandError::Conflict("more members on stage than that"));
            }
        }
        let old = self.settings;
        let new = Settings {
            open_mic: open_mic.unwrap_or(old.open_mic),
            closed: closed.unwrap_or(old.closed),
            stage_capacity: stage_capacity.unwrap_or(old.stage_capacity),
        };
        if new == old {
            return Ok(Reply::Done);
        }
        let tx = self.begin();
        self.settings = new;
        self.fields_dirty = true;
        self.emit(Recipients::Everyone, Event::Settings(new));
        self.finish(now, tx);
        Ok(Reply::Done)
    }

    fn guest_list(&mut self, now: Millis, role: Role, identity: ParticipantId, add: bool) -> Outcome {
        require_moderator(role)?;
        if self.guests.contains(&identity) == add {
            return Ok(Reply::Done);
        }
        let tx = self.begin();
        if add {
            self.guests.insert(identity);
        } else {
            self.guests.remove(&identity);
        }
        self.guests_dirty = true;
        self.finish(now, tx);
        Ok(Reply::Done)
    }

    fn list_audience(&self, role: Role, after: Option<u64>, limit: usize) -> Outcome {
        require_moderator(role)?;
        if limit == 0 || limit > self.config.max_page {
            return Err(CommandError::BadRequest("limit out of range"));
        }
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut range = self.audience.range((start, Bound::Unbounded));
        let mut entries = Vec::with_capacity(limit.min(self.audience.len()));
        let mut last = None;
        for (order, id) in range.by_ref().take(limit) {
            if let Some(p) = self.participants.get(id) {
                entries.push(AudienceEntry {
                    id: p.id.clone(),
                    name: p.name.clone(),
                    hand_raised: p.hand_raised.is_some(),
                    connected: p.connected,
                });
            }
            last = Some(*order);
        }
        let next = if range.next().is_some() { last } else { None };
        Ok(Reply::Audience(AudiencePage { entries, next, total: self.audience.len() }))
    }
}

impl Room {
    fn stage_member(&self, id: &ParticipantId) -> bool {
        self.participants.get(id).is_some_and(|p| p.role.on_stage())
    }
}

fn require_moderator(role: Role) -> Result<(), CommandError> {
    if role == Role::Moderator { Ok(()) } else { Err(CommandError::Forbidden(MODERATORS_ONLY)) }
}
