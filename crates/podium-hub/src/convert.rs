//! Conversions between `podium-room`'s domain types and `podium-proto`'s wire types. The room crate knows nothing of
//! JSON; the proto crate knows nothing of rules; this module is the only place the two meet.

use podium_proto as proto;
use podium_room as room;

pub(crate) fn role_to_proto(role: room::Role) -> proto::Role {
    match role {
        room::Role::Audience => proto::Role::Audience,
        room::Role::Speaker => proto::Role::Speaker,
        room::Role::Moderator => proto::Role::Moderator,
    }
}

pub(crate) fn role_from_proto(role: proto::Role) -> room::Role {
    match role {
        proto::Role::Audience => room::Role::Audience,
        proto::Role::Speaker => room::Role::Speaker,
        proto::Role::Moderator => room::Role::Moderator,
    }
}

fn pid(id: &str) -> room::ParticipantId {
    room::ParticipantId::new(id)
}

/// A request other than `join`, `leave` and `ping` as a room command.
pub(crate) fn command_from_proto(request: proto::Request, default_page: usize) -> Option<room::Command> {
    use proto::Request as R;
    use room::Command as C;
    Some(match request {
        R::Join(_) | R::Leave | R::Ping | R::MediaOffer { .. } | R::MediaAnswer { .. } | R::MediaCandidate { .. } => {
            return None;
        }
        R::GetState => C::GetState,
        R::RaiseHand => C::RaiseHand,
        R::LowerHand => C::LowerHand,
        R::ApproveHand { participant } => C::ApproveHand { target: pid(&participant) },
        R::InviteToStage { participant } => C::InviteToStage { target: pid(&participant) },
        R::CancelInvite { participant } => C::CancelInvite { target: pid(&participant) },
        R::AcceptInvite => C::AcceptInvite,
        R::DeclineInvite => C::DeclineInvite,
        R::StepDown => C::StepDown,
        R::MoveToAudience { participant } => C::MoveToAudience { target: pid(&participant) },
        R::SetMuted { muted } => C::SetMuted { muted },
        R::Mute { participant } => C::Mute { target: pid(&participant) },
        R::Kick { participant } => C::Kick { target: pid(&participant) },
        R::Ban { participant } => C::Ban { target: pid(&participant) },
        R::Unban { participant } => C::Unban { target: pid(&participant) },
        R::MakeModerator { participant } => C::MakeModerator { target: pid(&participant) },
        R::RevokeModerator { participant } => C::RevokeModerator { target: pid(&participant) },
        R::Handover { stage } => {
            C::Handover { stage: stage.into_iter().map(|s| (pid(&s.participant), role_from_proto(s.role))).collect() }
        }
        R::UpdateSettings { open_mic, closed, stage_capacity } => {
            C::UpdateSettings { open_mic, closed, stage_capacity }
        }
        R::InviteToRoom { identity } => C::InviteToRoom { identity: pid(&identity) },
        R::UninviteFromRoom { identity } => C::UninviteFromRoom { identity: pid(&identity) },
        R::ListAudience { after, limit } => {
            C::ListAudience { after, limit: limit.map_or(default_page, |l| l as usize) }
        }
        R::EndRoom => C::EndRoom,
    })
}

pub(crate) fn error_code(error: &room::CommandError) -> proto::ErrorCode {
    use proto::ErrorCode as E;
    use room::CommandError as C;
    match error {
        C::Forbidden(_) => E::Forbidden,
        C::NotFound(_) => E::NotFound,
        C::Conflict(_) => E::Conflict,
        C::StageFull => E::StageFull,
        C::BadRequest(_) => E::BadRequest,
        C::Banned => E::Banned,
        C::NotInvited => E::NotInvited,
        C::Ended => E::RoomEnded,
        #[allow(unreachable_patterns)]
        _ => E::Internal,
    }
}

fn participant(p: &room::ParticipantSummary) -> proto::Participant {
    proto::Participant { id: p.id.to_string(), name: p.name.clone() }
}

pub(crate) fn stage_member(m: &room::StageMember) -> proto::StageMember {
    proto::StageMember {
        id: m.id.to_string(),
        name: m.name.clone(),
        role: role_to_proto(m.role),
        muted: m.muted,
        connected: m.connected,
    }
}

pub(crate) fn counts(c: &room::Counts) -> proto::Counts {
    proto::Counts { stage: c.stage, audience: c.audience, hands: c.hands, total: c.total }
}

pub(crate) fn settings(s: &room::Settings) -> proto::RoomSettings {
    proto::RoomSettings { open_mic: s.open_mic, closed: s.closed, stage_capacity: s.stage_capacity }
}

pub(crate) fn you(y: &room::YourState) -> proto::YourState {
    proto::YourState {
        role: role_to_proto(y.role),
        ceiling: role_to_proto(y.ceiling),
        muted: y.muted,
        hand_position: y.hand_position,
        invite: y.invite.as_ref().map(|i| proto::Invite { by: i.by.to_string(), expires_at_ms: i.expires_at }),
    }
}

fn hand_queue(hands: &[room::ParticipantSummary], total: usize) -> proto::HandQueue {
    proto::HandQueue { hands: hands.iter().map(participant).collect(), total: total as u32 }
}

pub(crate) fn snapshot(s: &room::Snapshot) -> proto::RoomSnapshot {
    proto::RoomSnapshot {
        room: s.room.clone(),
        seq: s.seq,
        settings: settings(&s.settings),
        stage: s.stage.iter().map(stage_member).collect(),
        counts: counts(&s.counts),
        you: you(&s.you),
        hands: s.hands.as_ref().map(|(h, total)| hand_queue(h, *total)),
        // Set by the room task, which knows where the room's media lives.
        media_epoch: 0,
    }
}

pub(crate) fn audience_page(p: &room::AudiencePage) -> proto::AudiencePage {
    proto::AudiencePage {
        entries: p
            .entries
            .iter()
            .map(|e| proto::AudienceEntry {
                id: e.id.to_string(),
                name: e.name.clone(),
                hand_raised: e.hand_raised,
                connected: e.connected,
            })
            .collect(),
        next: p.next,
        total: p.total as u32,
    }
}

pub(crate) fn reply(r: room::Reply) -> Option<proto::Reply> {
    match r {
        room::Reply::Done => None,
        room::Reply::Hand { position, promoted } => Some(proto::Reply::Hand { position, promoted }),
        room::Reply::Audience(page) => Some(proto::Reply::Audience(audience_page(&page))),
        room::Reply::State(snap) => Some(proto::Reply::State(Box::new(snapshot(&snap)))),
    }
}

fn cause(c: &room::StageCause) -> proto::StageCause {
    use proto::StageCause as P;
    use room::StageCause as C;
    let s = |id: &room::ParticipantId| id.to_string();
    match c {
        C::Joined(id) => P::Joined { participant: s(id) },
        C::Left(id) => P::Left { participant: s(id) },
        C::Promoted { id, by } => P::Promoted { participant: s(id), by: by.as_ref().map(s) },
        C::InviteAccepted(id) => P::InviteAccepted { participant: s(id) },
        C::SteppedDown(id) => P::SteppedDown { participant: s(id) },
        C::MovedToAudience { id, by } => P::MovedToAudience { participant: s(id), by: s(by) },
        C::Muted { id, by } => P::Muted { participant: s(id), by: by.as_ref().map(s) },
        C::Unmuted(id) => P::Unmuted { participant: s(id) },
        C::ModeratorGranted { id, by } => P::ModeratorGranted { participant: s(id), by: s(by) },
        C::ModeratorRevoked { id, by } => P::ModeratorRevoked { participant: s(id), by: s(by) },
        C::Removed { id, by } => P::Removed { participant: s(id), by: s(by) },
        C::Handover { by } => P::Handover { by: s(by) },
        C::Succession(id) => P::Succession { participant: s(id) },
        C::Disconnected(id) => P::Disconnected { participant: s(id) },
        C::Reconnected(id) => P::Reconnected { participant: s(id) },
    }
}

pub(crate) fn event(seq: u64, e: &room::Event) -> proto::ServerMessage {
    use proto::ServerMessage as S;
    use room::Event as E;
    match e {
        E::Stage { stage, cause: c } => {
            S::Stage { seq, stage: stage.iter().map(stage_member).collect(), cause: cause(c) }
        }
        E::ParticipantJoined { participant: p } => S::ParticipantJoined { seq, participant: participant(p) },
        E::ParticipantLeft { id } => S::ParticipantLeft { seq, participant: id.to_string() },
        E::Counts(c) => S::Counts { seq, counts: counts(c) },
        E::HandQueue { hands, total } => S::HandQueue { seq, queue: hand_queue(hands, *total) },
        E::You(y) => S::You { seq, you: you(y) },
        E::Settings(s) => S::Settings { seq, settings: settings(s) },
        E::InviteAnswered { id, accepted, expired } => {
            S::InviteAnswered { seq, participant: id.to_string(), accepted: *accepted, expired: *expired }
        }
    }
}
