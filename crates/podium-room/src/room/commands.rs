//! `handle_command`: one method per command. Each validates completely (no mutation) and only then begins a
//! transition, so a refused command changes nothing. A command that would change nothing is accepted as a no-op
//! without a transition.

use std::collections::{HashMap, HashSet};
use std::ops::Bound;

use super::Room;
use crate::command::{AudienceEntry, AudiencePage, Command, CommandError, Reply};
use crate::event::{DisconnectReason, EndReason, Event, HandLowered, Output, Recipients, StageCause};
use crate::state::{Invite, ParticipantState, Revocation};
use crate::types::{
    Actor, AdminId, Millis, ParticipantId, PinnedLink, Reason, Recording, Role, RoomInfo, Settings, sat_usize,
};

const NOT_IN_ROOM: &str = "you are not in this room";
const NO_TARGET: &str = "no such participant in this room";
const MODERATORS_ONLY: &str = "only moderators may do this";
const ADMINS_ONLY: &str = "only administrators may do this";
/// Longest identity or token id a revocation accepts, in bytes (the hub's identity limit).
const MAX_REVOKED_BYTES: usize = 128;

type Outcome = Result<Reply, CommandError>;

/// Who may send a command.
#[derive(Clone, Copy, PartialEq, Eq)]
enum May {
    /// Any present participant (administrators too, for reads).
    Anyone,
    /// A present participant acting on their own state (never an administrator).
    Participant,
    /// A moderator or an administrator.
    Moderator,
    /// An administrator only.
    Admin,
}

fn who_may(command: &Command) -> May {
    match command {
        Command::GetState | Command::DeleteChat { .. } | Command::ChatHistory { .. } => May::Anyone,
        Command::SendChat { .. } => May::Participant,
        Command::RaiseHand
        | Command::LowerHand
        | Command::AcceptInvite
        | Command::DeclineInvite
        | Command::StepDown
        | Command::SetMuted { .. }
        | Command::SetRecordingOptOut { .. } => May::Participant,
        Command::Revoke { .. }
        | Command::SetPersistent { .. }
        | Command::HandoverDelta { .. }
        | Command::SetRecordable { .. } => May::Admin,
        Command::ApproveHand { .. }
        | Command::InviteToStage { .. }
        | Command::CancelInvite { .. }
        | Command::MoveToAudience { .. }
        | Command::Mute { .. }
        | Command::Kick { .. }
        | Command::Ban { .. }
        | Command::Unban { .. }
        | Command::MakeModerator { .. }
        | Command::RevokeModerator { .. }
        | Command::Handover { .. }
        | Command::UpdateSettings { .. }
        | Command::SetRoomInfo { .. }
        | Command::ClearHands
        | Command::StartRecording { .. }
        | Command::StopRecording
        | Command::InviteToRoom { .. }
        | Command::UninviteFromRoom { .. }
        | Command::ListAudience { .. }
        | Command::EndRoom => May::Moderator,
    }
}

/// Whether a command is a moderation action: it may carry a reason, and once accepted (as a transition) it is
/// reported with [`Output::Moderated`].
fn is_moderation(command: &Command) -> bool {
    (matches!(who_may(command), May::Moderator | May::Admin) && !matches!(command, Command::ListAudience { .. }))
        || matches!(command, Command::DeleteChat { .. })
}

/// The sender of an accepted-so-far command: who, with what authority, and why.
pub(super) struct Act {
    pub(super) by: Actor,
    /// The sender's role; administrators act as moderators.
    pub(super) role: Role,
    pub(super) reason: Option<Reason>,
}

impl Act {
    /// The sending participant (`None` for an administrator).
    pub(super) fn participant(&self) -> Option<&ParticipantId> {
        self.by.participant()
    }
}

impl Room {
    /// A command from a present participant, without a reason: [`Room::handle_command_as`] with
    /// [`Actor::Participant`]. `Ok` means accepted (possibly as a no-op); `Err` changes nothing.
    pub fn handle_command(&mut self, now: Millis, from: &ParticipantId, command: Command) -> Outcome {
        self.handle_command_as(now, &Actor::Participant(from.clone()), command, None)
    }

    /// A command from an administrator: [`Room::handle_command_as`] with [`Actor::Admin`].
    pub fn handle_admin(&mut self, now: Millis, admin: &AdminId, command: Command, reason: Option<&str>) -> Outcome {
        self.handle_command_as(now, &Actor::Admin(admin.clone()), command, reason)
    }

    /// A command from a participant (who must be present) or an administrator (who acts as a moderator over every
    /// participant but is not one), with an optional reason for moderation commands (see the rules table). `Ok`
    /// means accepted (possibly as a no-op); `Err` changes nothing and emits nothing. An accepted moderation
    /// command that changed the room ends its outputs with [`Output::Moderated`].
    pub fn handle_command_as(&mut self, now: Millis, by: &Actor, command: Command, reason: Option<&str>) -> Outcome {
        if self.ended {
            return Err(CommandError::Ended);
        }
        let may = who_may(&command);
        let role = match by {
            Actor::Participant(id) => {
                let sender = self.participants.get(id).ok_or(CommandError::NotFound(NOT_IN_ROOM))?;
                match may {
                    May::Admin => return Err(CommandError::Forbidden(ADMINS_ONLY)),
                    May::Moderator => require_moderator(sender.role)?,
                    May::Anyone | May::Participant => {}
                }
                sender.role
            }
            Actor::Admin(_) => {
                if may == May::Participant {
                    return Err(CommandError::Forbidden(
                        "an administrator is not a participant: this command acts on the sender's own state",
                    ));
                }
                Role::Moderator
            }
        };
        let reason = reason.map(Reason::parse).transpose()?.flatten();
        if reason.is_some() && !is_moderation(&command) {
            return Err(CommandError::BadRequest("only moderation commands take a reason"));
        }
        let act = Act { by: by.clone(), role, reason };
        let seq = self.seq;
        let audited = is_moderation(&command).then(|| command.clone());
        let outcome = self.dispatch(now, &act, command);
        if let Some(command) = audited
            && outcome.is_ok()
            && self.seq != seq
        {
            let Act { by, reason, .. } = act;
            self.outputs.push_back(Output::Moderated { seq: self.seq, by, command, reason });
        }
        outcome
    }

    fn dispatch(&mut self, now: Millis, act: &Act, command: Command) -> Outcome {
        let role = act.role;
        // Participant-only commands: `handle_command_as` refused them from administrators.
        let me = act.participant().cloned().ok_or(CommandError::Forbidden(ADMINS_ONLY));
        match command {
            Command::RaiseHand => self.raise_hand_cmd(now, &me?),
            Command::LowerHand => self.lower_hand_cmd(now, &me?),
            Command::ApproveHand { target } => self.approve_hand(now, act, &target),
            Command::InviteToStage { target } => self.invite_to_stage(now, act, &target),
            Command::CancelInvite { target } => self.cancel_invite(now, role, &target),
            Command::AcceptInvite => self.accept_invite(now, &me?),
            Command::DeclineInvite => self.decline_invite(now, &me?),
            Command::StepDown => self.step_down(now, &me?),
            Command::MoveToAudience { target } => self.move_to_audience(now, act, &target),
            Command::SetMuted { muted } => self.set_muted_cmd(now, &me?, muted),
            Command::Mute { target } => self.mute(now, act, &target),
            Command::Kick { target } => self.remove_cmd(now, act, &target, DisconnectReason::Kicked),
            Command::Ban { target } => self.remove_cmd(now, act, &target, DisconnectReason::Banned),
            Command::Unban { target } => self.unban(now, role, &target),
            Command::MakeModerator { target } => self.make_moderator(now, act, &target),
            Command::RevokeModerator { target } => self.revoke_moderator(now, act, &target),
            Command::Handover { stage } => self.handover(now, act, &stage),
            Command::HandoverDelta { demote, promote, moderators_add, moderators_remove } => {
                self.handover_delta(now, act, &Delta { demote, promote, moderators_add, moderators_remove })
            }
            Command::UpdateSettings { open_mic, closed, stage_capacity, chat, chat_slow_mode_ms } => self
                .update_settings(
                    now,
                    role,
                    SettingsUpdate { open_mic, closed, stage_capacity, chat, chat_slow_mode_ms },
                ),
            Command::SendChat { text } => self.send_chat(now, &me?, role, &text),
            Command::DeleteChat { message_id } => self.delete_chat(now, act, message_id),
            Command::ChatHistory { before, limit } => self.chat_history(before, limit),
            Command::SetRoomInfo { description, pinned_link } => {
                self.set_room_info(now, role, description, pinned_link)
            }
            Command::ClearHands => self.clear_hands(now, act),
            Command::StartRecording { id } => self.start_recording(now, act, id),
            Command::StopRecording => self.stop_recording(now, act),
            Command::SetRecordingOptOut { opt_out } => self.set_recording_opt_out(now, &me?, opt_out),
            Command::SetRecordable { recordable } => self.set_recordable(now, act, recordable),
            Command::InviteToRoom { identity } => self.guest_list(now, role, identity, true),
            Command::UninviteFromRoom { identity } => self.guest_list(now, role, identity, false),
            Command::ListAudience { after, limit } => self.list_audience(role, after, limit),
            Command::GetState => match act.participant() {
                Some(from) => self.snapshot_for(from).map(Reply::State).ok_or(CommandError::NotFound(NOT_IN_ROOM)),
                None => Ok(Reply::Room(self.view())),
            },
            Command::EndRoom => {
                require_moderator(role)?;
                let tx = self.begin();
                self.end(&tx, EndReason::ByModerator { by: act.by.clone(), reason: act.reason.clone() });
                Ok(Reply::Done)
            }
            Command::Revoke { identity, token_id } => self.revoke(now, act, identity, token_id),
            Command::SetPersistent { persistent } => self.set_persistent(now, act, persistent),
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
            self.emit_stage(StageCause::Promoted { id: from.clone(), by: None, reason: None });
            Reply::Hand { position: None, promoted: true }
        } else {
            let position = self.raise_hand(from, now, &mut tx);
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

    fn approve_hand(&mut self, now: Millis, act: &Act, target: &ParticipantId) -> Outcome {
        require_moderator(act.role)?;
        if self.target(target)?.hand_raised.is_none() {
            return Err(CommandError::Conflict("hand not raised"));
        }
        if !self.seat_free() {
            return Err(CommandError::StageFull);
        }
        let mut tx = self.begin();
        self.set_role(target, Role::Speaker, &mut tx);
        self.emit_stage(StageCause::Promoted {
            id: target.clone(),
            by: Some(act.by.clone()),
            reason: act.reason.clone(),
        });
        self.finish(now, tx);
        Ok(Reply::Done)
    }

    fn invite_to_stage(&mut self, now: Millis, act: &Act, target: &ParticipantId) -> Outcome {
        require_moderator(act.role)?;
        let p = self.target(target)?;
        if p.role != Role::Audience {
            return Err(CommandError::Conflict("already on stage"));
        }
        if p.ceiling < Role::Speaker {
            return Err(CommandError::Forbidden("token does not allow the stage"));
        }
        let invite = Invite { by: act.by.clone(), expires_at: now.saturating_add(self.config.invite_ttl) };
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

    fn move_to_audience(&mut self, now: Millis, act: &Act, target: &ParticipantId) -> Outcome {
        require_moderator(act.role)?;
        match self.target(target)?.role {
            Role::Moderator => return Err(CommandError::Forbidden("revoke moderator first")),
            Role::Audience => return Err(CommandError::Conflict("not on stage")),
            Role::Speaker => {}
        }
        let mut tx = self.begin();
        self.set_role(target, Role::Audience, &mut tx);
        self.emit_stage(StageCause::MovedToAudience {
            id: target.clone(),
            by: act.by.clone(),
            reason: act.reason.clone(),
        });
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
        let cause = if muted {
            StageCause::Muted { id: from.clone(), by: None, reason: None }
        } else {
            StageCause::Unmuted(from.clone())
        };
        self.emit_stage(cause);
        self.finish(now, tx);
        Ok(Reply::Done)
    }

    fn mute(&mut self, now: Millis, act: &Act, target: &ParticipantId) -> Outcome {
        require_moderator(act.role)?;
        let p = self.target(target)?;
        if !p.role.on_stage() {
            return Err(CommandError::Conflict("not on stage"));
        }
        if p.muted {
            return Ok(Reply::Done);
        }
        let mut tx = self.begin();
        self.set_muted(target, true, &mut tx);
        self.emit_stage(StageCause::Muted { id: target.clone(), by: Some(act.by.clone()), reason: act.reason.clone() });
        self.finish(now, tx);
        Ok(Reply::Done)
    }

    /// Kick or ban. Moderators cannot remove moderators; administrators can.
    fn remove_cmd(&mut self, now: Millis, act: &Act, target: &ParticipantId, reason: DisconnectReason) -> Outcome {
        require_moderator(act.role)?;
        if act.participant() == Some(target) {
            return Err(CommandError::BadRequest("cannot remove yourself"));
        }
        let present = match (self.participants.get(target), reason) {
            (Some(p), _) if p.role == Role::Moderator && !act.by.is_admin() => {
                return Err(CommandError::Forbidden("cannot remove a moderator"));
            }
            (Some(_), _) => true,
            (None, DisconnectReason::Kicked | DisconnectReason::Revoked) => {
                return Err(CommandError::NotFound(NO_TARGET));
            }
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
            let cause = StageCause::Removed { id: target.clone(), by: act.by.clone(), reason: act.reason.clone() };
            self.remove_with_events(target, cause, &mut tx);
            tx.disconnect.push(Output::Disconnect { who: target.clone(), reason });
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

    fn make_moderator(&mut self, now: Millis, act: &Act, target: &ParticipantId) -> Outcome {
        require_moderator(act.role)?;
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
        self.emit_stage(StageCause::ModeratorGranted {
            id: target.clone(),
            by: act.by.clone(),
            reason: act.reason.clone(),
        });
        self.finish(now, tx);
        Ok(Reply::Done)
    }

    fn revoke_moderator(&mut self, now: Millis, act: &Act, target: &ParticipantId) -> Outcome {
        require_moderator(act.role)?;
        if self.target(target)?.role != Role::Moderator {
            return Err(CommandError::Conflict("not a moderator"));
        }
        if self.moderators().len() <= 1 {
            return Err(CommandError::Conflict("last moderator"));
        }
        let mut tx = self.begin();
        self.set_role(target, Role::Speaker, &mut tx);
        self.emit_stage(StageCause::ModeratorRevoked {
            id: target.clone(),
            by: act.by.clone(),
            reason: act.reason.clone(),
        });
        self.finish(now, tx);
        Ok(Reply::Done)
    }

    fn handover(&mut self, now: Millis, act: &Act, stage: &[(ParticipantId, Role)]) -> Outcome {
        require_moderator(act.role)?;
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
        // The outcome includes succession when the stage has a moderator now (always, when a moderator sends it; an
        // administrator may hand over an unmoderated stage): with no moderator listed, the longest-serving listed
        // member whose token allows it becomes moderator (stayers keep their stage order, newcomers follow in list
        // order). A handover that would end where it started is a no-op.
        let may_moderate =
            |id: &&ParticipantId| self.participants.get(*id).is_some_and(|p| p.ceiling == Role::Moderator);
        let heir = if listed.values().any(|r| *r == Role::Moderator) || self.moderators().is_empty() {
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
        self.emit_stage(StageCause::Handover { by: act.by.clone(), reason: act.reason.clone() });
        self.finish(now, tx);
        Ok(Reply::Done)
    }

    /// The administrator's handover as changes to the current stage (the rules table, `HandoverDelta`).
    fn handover_delta(&mut self, now: Millis, act: &Act, delta: &Delta) -> Outcome {
        if !act.by.is_admin() {
            return Err(CommandError::Forbidden(ADMINS_ONLY));
        }
        let Delta { demote, promote, moderators_add, moderators_remove } = delta;
        if demote.is_empty() && promote.is_empty() && moderators_add.is_empty() && moderators_remove.is_empty() {
            return Err(CommandError::BadRequest("a handover names at least one participant"));
        }
        if promote.iter().any(|(_, r)| !r.on_stage()) {
            return Err(CommandError::BadRequest("handover roles must be speaker or moderator"));
        }
        let demoted = distinct(demote.iter())?;
        let promoted: HashMap<&ParticipantId, Role> = {
            let mut map = HashMap::with_capacity(promote.len());
            for (id, r) in promote {
                if map.insert(id, *r).is_some() {
                    return Err(CommandError::BadRequest(DUPLICATE));
                }
            }
            map
        };
        let added = distinct(moderators_add.iter())?;
        let removed = distinct(moderators_remove.iter())?;
        if demoted.iter().any(|id| promoted.contains_key(id) || added.contains(id)) {
            return Err(CommandError::BadRequest("a participant is both demoted and promoted"));
        }
        if removed.iter().any(|id| added.contains(id) || promoted.get(id) == Some(&Role::Moderator)) {
            return Err(CommandError::BadRequest("a participant both gains and loses moderator rights"));
        }
        // Every listed identity once, in the order first listed (demote, promote, moderators_add,
        // moderators_remove): the absent are skipped, the present get their new role.
        let listed = demote
            .iter()
            .chain(promote.iter().map(|(id, _)| id))
            .chain(moderators_add.iter())
            .chain(moderators_remove.iter());
        let mut seen: HashSet<&ParticipantId> = HashSet::new();
        let mut absent: Vec<ParticipantId> = Vec::new();
        let mut changes: Vec<(&ParticipantId, Role)> = Vec::new();
        for id in listed {
            if !seen.insert(id) {
                continue;
            }
            let Some(p) = self.participants.get(id) else {
                absent.push(id.clone());
                continue;
            };
            let role = if demoted.contains(id) {
                Role::Audience
            } else {
                let mut role = p.role;
                if removed.contains(id) && role == Role::Moderator {
                    role = Role::Speaker;
                }
                if let Some(r) = promoted.get(id) {
                    role = role.max(*r);
                }
                if added.contains(id) {
                    role = Role::Moderator;
                }
                role
            };
            if role > p.ceiling {
                return Err(CommandError::Forbidden("token does not allow that role"));
            }
            if role != p.role {
                changes.push((id, role));
            }
        }
        let joining = changes.iter().filter(|(id, r)| r.on_stage() && !self.stage_member(id)).count();
        let leaving = changes.iter().filter(|(_, r)| !r.on_stage()).count();
        let size = self.stage.len().saturating_sub(leaving).saturating_add(joining);
        if size > sat_usize(self.settings.stage_capacity) {
            return Err(CommandError::StageFull);
        }
        let reply = Reply::HandedOver { absent };
        if changes.is_empty() || self.undone_by_succession(&changes) {
            return Ok(reply);
        }
        // Leaving first, then role changes on stage, then newcomers (who take the stage in list order).
        changes.sort_by_key(|(id, r)| match (r.on_stage(), self.stage_member(id)) {
            (false, _) => 0u8,
            (true, true) => 1,
            (true, false) => 2,
        });
        let mut tx = self.begin();
        for (id, role) in changes {
            self.set_role(id, role, &mut tx);
        }
        self.emit_stage(StageCause::Handover { by: act.by.clone(), reason: act.reason.clone() });
        self.finish(now, tx);
        Ok(reply)
    }

    /// Whether succession after applying `changes` (present participants, each once, with a role that differs
    /// from theirs) would put every role back as it was: then the command is a no-op, not a transition.
    fn undone_by_succession(&self, changes: &[(&ParticipantId, Role)]) -> bool {
        let new_role = |id: &ParticipantId| {
            changes
                .iter()
                .find(|(c, _)| *c == id)
                .map(|(_, r)| *r)
                .or_else(|| self.participants.get(id).map(|p| p.role))
        };
        let moderated_after = self.stage.values().any(|id| new_role(id) == Some(Role::Moderator))
            || changes.iter().any(|(_, r)| *r == Role::Moderator);
        if self.moderators().is_empty() || moderated_after {
            return false;
        }
        // Succession picks the longest-serving speaker who may moderate: stayers in stage order, then newcomers.
        let may_moderate = |id: &ParticipantId| self.participants.get(id).is_some_and(|p| p.ceiling == Role::Moderator);
        let stayers = self.stage.values().filter(|id| new_role(id).is_some_and(Role::on_stage));
        let newcomers = changes.iter().filter(|(id, r)| r.on_stage() && !self.stage_member(id)).map(|(id, _)| *id);
        let heir = stayers.chain(newcomers).find(|id| may_moderate(id));
        // The only change undone is a single moderator losing rights and getting them straight back.
        matches!((heir, changes), (Some(heir), [(id, Role::Speaker)]) if heir == *id)
    }

    fn update_settings(&mut self, now: Millis, role: Role, update: SettingsUpdate) -> Outcome {
        let SettingsUpdate { open_mic, closed, stage_capacity, chat, chat_slow_mode_ms } = update;
        require_moderator(role)?;
        if open_mic.is_none()
            && closed.is_none()
            && stage_capacity.is_none()
            && chat.is_none()
            && chat_slow_mode_ms.is_none()
        {
            return Err(CommandError::BadRequest("nothing to update"));
        }
        if chat_slow_mode_ms.is_some_and(|ms| ms > Settings::MAX_CHAT_SLOW_MODE_MS) {
            return Err(CommandError::BadRequest("chat_slow_mode_ms must be at most 3600000 (one hour)"));
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
            chat: chat.unwrap_or(old.chat),
            chat_slow_mode_ms: chat_slow_mode_ms.unwrap_or(old.chat_slow_mode_ms),
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

    fn set_room_info(
        &mut self,
        now: Millis,
        role: Role,
        description: Option<Option<String>>,
        pinned_link: Option<Option<PinnedLink>>,
    ) -> Outcome {
        require_moderator(role)?;
        if description.is_none() && pinned_link.is_none() {
            return Err(CommandError::BadRequest("nothing to update: give description and/or pinned_link"));
        }
        let description = match description {
            None => self.info.description.clone(),
            Some(text) => text.map(RoomInfo::check_description).transpose()?.flatten(),
        };
        let pinned_link = match pinned_link {
            None => self.info.pinned_link.clone(),
            Some(link) => link.map(|l| PinnedLink::new(l.url, l.title)).transpose()?,
        };
        let info = RoomInfo { description, pinned_link };
        if info == self.info {
            return Ok(Reply::Done);
        }
        let tx = self.begin();
        self.info = info.clone();
        self.info_dirty = true;
        self.emit(Recipients::Everyone, Event::RoomInfo(info));
        self.finish(now, tx);
        Ok(Reply::Done)
    }

    /// Lowers every raised hand in one transition; each raiser gets `HandLowered { Cleared }` and a `You`, the
    /// moderators one `HandQueue`. No hands: a no-op.
    fn clear_hands(&mut self, now: Millis, act: &Act) -> Outcome {
        require_moderator(act.role)?;
        if self.hands.is_empty() {
            return Ok(Reply::Done);
        }
        let mut tx = self.begin();
        let raised: Vec<ParticipantId> = self.hands.values().cloned().collect();
        for id in &raised {
            self.clear_hand(id, &mut tx);
        }
        for id in raised {
            let cause = HandLowered::Cleared { by: act.by.clone(), reason: act.reason.clone() };
            self.emit(Recipients::One(id), Event::HandLowered(cause));
        }
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

    /// Records a revocation and removes whoever present it matches.
    fn revoke(&mut self, now: Millis, act: &Act, identity: Option<ParticipantId>, token_id: Option<String>) -> Outcome {
        if !act.by.is_admin() {
            return Err(CommandError::Forbidden(ADMINS_ONLY));
        }
        if identity.is_none() && token_id.is_none() {
            return Err(CommandError::BadRequest("a revocation names an identity, a token id, or both"));
        }
        let well_formed = |s: &str| !s.is_empty() && s.len() <= MAX_REVOKED_BYTES && !s.chars().any(char::is_control);
        if identity.as_ref().is_some_and(|i| !well_formed(i.as_str()))
            || token_id.as_deref().is_some_and(|t| !well_formed(t))
        {
            return Err(CommandError::BadRequest(
                "identity and token id must be 1-128 bytes without control characters",
            ));
        }
        let entry = Revocation { until: now.saturating_add(self.config.revocation_ttl), identity, token_id, at: now };
        let same = |r: &&Revocation| r.identity == entry.identity && r.token_id == entry.token_id;
        let replaced = self.revocations.iter().find(same).cloned();
        let others = self.revocations.iter().filter(|r| r.until > now && Some(*r) != replaced.as_ref()).count();
        if others >= self.config.max_revocations {
            return Err(CommandError::Conflict("too many revocations in force"));
        }
        let matched: Vec<ParticipantId> = self
            .participants
            .values()
            .filter(|p| entry.matches(&p.id, p.token_id.as_deref(), p.issued_at))
            .map(|p| p.id.clone())
            .collect();
        if replaced.as_ref() == Some(&entry) && matched.is_empty() {
            return Ok(Reply::Done);
        }
        let mut tx = self.begin();
        self.prune_revocations(now);
        if let Some(old) = &replaced {
            self.revocations.remove(old);
        }
        self.revocations.insert(entry);
        self.fields_dirty = true;
        let mut matched = matched;
        matched.sort();
        for id in matched {
            let cause = StageCause::Revoked { id: id.clone(), by: act.by.clone(), reason: act.reason.clone() };
            self.remove_with_events(&id, cause, &mut tx);
            tx.disconnect.push(Output::Disconnect { who: id, reason: DisconnectReason::Revoked });
        }
        self.finish(now, tx);
        Ok(Reply::Done)
    }

    fn start_recording(&mut self, now: Millis, act: &Act, id: String) -> Outcome {
        require_moderator(act.role)?;
        Recording::check_id(&id)?;
        if !self.config.recording {
            return Err(CommandError::Forbidden("recording is disabled on this hub"));
        }
        if !self.recordable {
            return Err(CommandError::Forbidden("this room (or the session on stage) must not be recorded"));
        }
        if self.recording.is_some() {
            return Err(CommandError::Conflict("the room is being recorded already"));
        }
        let tx = self.begin();
        let recording = Recording { id, started_at: now, by: act.by.clone() };
        self.recording = Some(recording.clone());
        self.fields_dirty = true;
        self.emit(Recipients::Everyone, Event::Recording(Some(recording)));
        self.finish(now, tx);
        Ok(Reply::Done)
    }

    fn stop_recording(&mut self, now: Millis, act: &Act) -> Outcome {
        require_moderator(act.role)?;
        if self.recording.is_none() {
            return Err(CommandError::Conflict("the room is not being recorded"));
        }
        let tx = self.begin();
        self.recording = None;
        self.fields_dirty = true;
        self.emit(Recipients::Everyone, Event::Recording(None));
        self.finish(now, tx);
        Ok(Reply::Done)
    }

    fn set_recording_opt_out(&mut self, now: Millis, from: &ParticipantId, opt_out: bool) -> Outcome {
        let p = self.target(from)?;
        if p.recording_opt_out == opt_out {
            return Ok(Reply::Done);
        }
        let on_stage = p.role.on_stage();
        let mut tx = self.begin();
        if let Some(p) = self.pm(from) {
            p.recording_opt_out = opt_out;
        }
        tx.you(from);
        if on_stage {
            self.emit_stage(StageCause::RecordingOptOut(from.clone()));
        }
        self.finish(now, tx);
        Ok(Reply::Done)
    }

    fn set_recordable(&mut self, now: Millis, act: &Act, recordable: bool) -> Outcome {
        if !act.by.is_admin() {
            return Err(CommandError::Forbidden(ADMINS_ONLY));
        }
        if self.recordable == recordable {
            return Ok(Reply::Done);
        }
        let tx = self.begin();
        self.recordable = recordable;
        self.fields_dirty = true;
        if !recordable && self.recording.take().is_some() {
            self.emit(Recipients::Everyone, Event::Recording(None));
        }
        self.finish(now, tx);
        Ok(Reply::Done)
    }

    fn set_persistent(&mut self, now: Millis, act: &Act, persistent: bool) -> Outcome {
        if !act.by.is_admin() {
            return Err(CommandError::Forbidden(ADMINS_ONLY));
        }
        if self.persistent == persistent {
            return Ok(Reply::Done);
        }
        let tx = self.begin();
        self.persistent = persistent;
        self.fields_dirty = true;
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

const DUPLICATE: &str = "duplicate participant in handover";

/// The fields of an `UpdateSettings` (`None`: unchanged).
struct SettingsUpdate {
    open_mic: Option<bool>,
    closed: Option<bool>,
    stage_capacity: Option<u32>,
    chat: Option<bool>,
    chat_slow_mode_ms: Option<u32>,
}

/// The lists of a `HandoverDelta`.
struct Delta {
    demote: Vec<ParticipantId>,
    promote: Vec<(ParticipantId, Role)>,
    moderators_add: Vec<ParticipantId>,
    moderators_remove: Vec<ParticipantId>,
}

/// The identities of one list, refused if one appears twice.
fn distinct<'a>(ids: impl Iterator<Item = &'a ParticipantId>) -> Result<HashSet<&'a ParticipantId>, CommandError> {
    let mut set = HashSet::new();
    for id in ids {
        if !set.insert(id) {
            return Err(CommandError::BadRequest(DUPLICATE));
        }
    }
    Ok(set)
}

fn require_moderator(role: Role) -> Result<(), CommandError> {
    if role == Role::Moderator { Ok(()) } else { Err(CommandError::Forbidden(MODERATORS_ONLY)) }
}
