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

/// A request other than `join`, `leave` and `ping` as a room command, with its reason (moderation requests).
pub(crate) fn command_from_proto(
    request: proto::Request,
    default_page: usize,
) -> Option<(room::Command, Option<String>)> {
    use proto::Request as R;
    use room::Command as C;
    Some(match request {
        R::Join(_)
        | R::Leave
        | R::Ping
        | R::React { .. }
        | R::MediaOffer { .. }
        | R::MediaAnswer { .. }
        | R::MediaCandidate { .. } => {
            return None;
        }
        R::SendChat { text } => (C::SendChat { text }, None),
        R::DeleteChat { message_id, reason } => (C::DeleteChat { message_id }, reason),
        R::ChatHistory { before, limit } => (C::ChatHistory { before, limit: limit.map(|l| l as usize) }, None),
        R::GetState => (C::GetState, None),
        R::RaiseHand => (C::RaiseHand, None),
        R::LowerHand => (C::LowerHand, None),
        R::ApproveHand { participant, reason } => (C::ApproveHand { target: pid(&participant) }, reason),
        R::InviteToStage { participant, reason } => (C::InviteToStage { target: pid(&participant) }, reason),
        R::CancelInvite { participant, reason } => (C::CancelInvite { target: pid(&participant) }, reason),
        R::AcceptInvite => (C::AcceptInvite, None),
        R::DeclineInvite => (C::DeclineInvite, None),
        R::StepDown => (C::StepDown, None),
        R::MoveToAudience { participant, reason } => (C::MoveToAudience { target: pid(&participant) }, reason),
        R::SetMuted { muted } => (C::SetMuted { muted }, None),
        R::Mute { participant, reason } => (C::Mute { target: pid(&participant) }, reason),
        R::Kick { participant, reason } => (C::Kick { target: pid(&participant) }, reason),
        R::Ban { participant, reason } => (C::Ban { target: pid(&participant) }, reason),
        R::Unban { participant, reason } => (C::Unban { target: pid(&participant) }, reason),
        R::MakeModerator { participant, reason } => (C::MakeModerator { target: pid(&participant) }, reason),
        R::RevokeModerator { participant, reason } => (C::RevokeModerator { target: pid(&participant) }, reason),
        R::Handover { stage, reason } => (
            C::Handover { stage: stage.into_iter().map(|s| (pid(&s.participant), role_from_proto(s.role))).collect() },
            reason,
        ),
        R::UpdateSettings { open_mic, closed, stage_capacity, chat, chat_slow_mode_ms, reason } => {
            (C::UpdateSettings { open_mic, closed, stage_capacity, chat, chat_slow_mode_ms }, reason)
        }
        R::SetRoomInfo { description, pinned_link, reason } => (
            C::SetRoomInfo {
                description,
                pinned_link: pinned_link.map(|l| l.map(|l| room::PinnedLink { url: l.url, title: l.title })),
            },
            reason,
        ),
        R::ClearHands { reason } => (C::ClearHands, reason),
        R::StartRecording { reason } => (C::StartRecording { id: new_recording_id() }, reason),
        R::StopRecording { reason } => (C::StopRecording, reason),
        R::SetRecordingOptOut { opt_out } => (C::SetRecordingOptOut { opt_out }, None),
        R::InviteToRoom { identity, reason } => (C::InviteToRoom { identity: pid(&identity) }, reason),
        R::UninviteFromRoom { identity, reason } => (C::UninviteFromRoom { identity: pid(&identity) }, reason),
        R::ListAudience { after, limit } => {
            (C::ListAudience { after, limit: limit.map_or(default_page, |l| l as usize) }, None)
        }
        R::EndRoom { reason } => (C::EndRoom, reason),
    })
}

/// A fresh recording id: `rec_` and 20 lowercase hex digits (80 random bits).
pub(crate) fn new_recording_id() -> String {
    format!("rec_{:020x}", rand::random::<u128>() >> 48)
}

/// The wire form of a recording in progress.
pub(crate) fn recording(r: &room::Recording) -> proto::RecordingState {
    let (by, by_admin) = by(&r.by);
    proto::RecordingState { id: r.id.clone(), started_at_ms: r.started_at, by, by_admin }
}

/// An actor as the wire's `by` (a participant) and `by_admin` (an administrator).
pub(crate) fn by(actor: &room::Actor) -> (Option<String>, Option<String>) {
    match actor {
        room::Actor::Participant(id) => (Some(id.to_string()), None),
        room::Actor::Admin(id) => (None, Some(id.to_string())),
    }
}

fn reason(r: Option<&room::Reason>) -> Option<String> {
    r.map(|r| r.as_str().to_owned())
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
        C::Revoked => E::Unauthorized,
        C::RateLimited(_) => E::RateLimited,
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
        recording_opt_out: m.recording_opt_out,
    }
}

pub(crate) fn counts(c: &room::Counts) -> proto::Counts {
    proto::Counts { stage: c.stage, audience: c.audience, hands: c.hands, total: c.total }
}

pub(crate) fn settings(s: &room::Settings) -> proto::RoomSettings {
    proto::RoomSettings {
        open_mic: s.open_mic,
        closed: s.closed,
        stage_capacity: s.stage_capacity,
        chat: s.chat,
        chat_slow_mode_ms: s.chat_slow_mode_ms,
    }
}

pub(crate) fn chat_message(m: &room::ChatMessage) -> proto::ChatMessage {
    proto::ChatMessage {
        id: m.id,
        from: proto::Participant { id: m.from.to_string(), name: m.name.clone() },
        text: m.text.clone(),
        at_ms: m.at,
    }
}

pub(crate) fn chat_page(p: &room::ChatPage) -> proto::ChatPage {
    proto::ChatPage { messages: p.messages.iter().map(chat_message).collect(), next_before: p.next_before }
}

pub(crate) fn info(i: &room::RoomInfo) -> proto::RoomInfo {
    proto::RoomInfo {
        description: i.description.clone(),
        pinned_link: i.pinned_link.as_ref().map(|l| proto::PinnedLink { url: l.url.clone(), title: l.title.clone() }),
    }
}

pub(crate) fn you(y: &room::YourState) -> proto::YourState {
    proto::YourState {
        role: role_to_proto(y.role),
        ceiling: role_to_proto(y.ceiling),
        muted: y.muted,
        hand_position: y.hand_position,
        hand_expires_at_ms: y.hand_expires_at,
        invite: y.invite.as_ref().map(|i| {
            let (by, by_admin) = by(&i.by);
            proto::Invite { by, by_admin, expires_at_ms: i.expires_at }
        }),
        recording_opt_out: y.recording_opt_out,
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
        info: info(&s.info),
        recording: s.recording.as_ref().map(recording),
        stage: s.stage.iter().map(stage_member).collect(),
        counts: counts(&s.counts),
        you: you(&s.you),
        hands: s.hands.as_ref().map(|(h, total)| hand_queue(h, *total)),
        // Set by the room task, which knows where the room's media lives.
        media_epoch: 0,
        chat: s.chat.iter().map(chat_message).collect(),
        chat_more: s.chat_more,
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
        room::Reply::ChatSent { message_id } => Some(proto::Reply::ChatSent { message_id }),
        room::Reply::Chat(page) => Some(proto::Reply::Chat(chat_page(&page))),
        // Only administrators get these, and they do not use the websocket.
        room::Reply::Room(_) | room::Reply::HandedOver { .. } => None,
    }
}

fn cause(c: &room::StageCause) -> proto::StageCause {
    use proto::StageCause as P;
    use room::StageCause as C;
    let s = |id: &room::ParticipantId| id.to_string();
    let opt = |b: Option<&room::Actor>| b.map_or((None, None), by);
    match c {
        C::Joined(id) => P::Joined { participant: s(id) },
        C::Left(id) => P::Left { participant: s(id) },
        C::Promoted { id, by: b, reason: r } => {
            let (by, by_admin) = opt(b.as_ref());
            P::Promoted { participant: s(id), by, by_admin, reason: reason(r.as_ref()) }
        }
        C::InviteAccepted(id) => P::InviteAccepted { participant: s(id) },
        C::SteppedDown(id) => P::SteppedDown { participant: s(id) },
        C::MovedToAudience { id, by: b, reason: r } => {
            let (by, by_admin) = by(b);
            P::MovedToAudience { participant: s(id), by, by_admin, reason: reason(r.as_ref()) }
        }
        C::Muted { id, by: b, reason: r } => {
            let (by, by_admin) = opt(b.as_ref());
            P::Muted { participant: s(id), by, by_admin, reason: reason(r.as_ref()) }
        }
        C::Unmuted(id) => P::Unmuted { participant: s(id) },
        C::ModeratorGranted { id, by: b, reason: r } => {
            let (by, by_admin) = by(b);
            P::ModeratorGranted { participant: s(id), by, by_admin, reason: reason(r.as_ref()) }
        }
        C::ModeratorRevoked { id, by: b, reason: r } => {
            let (by, by_admin) = by(b);
            P::ModeratorRevoked { participant: s(id), by, by_admin, reason: reason(r.as_ref()) }
        }
        C::Removed { id, by: b, reason: r } => {
            let (by, by_admin) = by(b);
            P::Removed { participant: s(id), by, by_admin, reason: reason(r.as_ref()) }
        }
        C::Revoked { id, by: b, reason: r } => {
            let (by, by_admin) = by(b);
            P::Revoked { participant: s(id), by, by_admin, reason: reason(r.as_ref()) }
        }
        C::Handover { by: b, reason: r } => {
            let (by, by_admin) = by(b);
            P::Handover { by, by_admin, reason: reason(r.as_ref()) }
        }
        C::Succession(id) => P::Succession { participant: s(id) },
        C::Disconnected(id) => P::Disconnected { participant: s(id) },
        C::Reconnected(id) => P::Reconnected { participant: s(id) },
        C::RecordingOptOut(id) => P::RecordingOptOut { participant: s(id) },
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
        E::RoomInfo(i) => S::RoomInfo { seq, info: info(i) },
        E::Recording(r) => S::Recording { seq, recording: r.as_ref().map(recording) },
        E::HandLowered(room::HandLowered::Expired) => {
            S::HandLowered { seq, cause: proto::HandLoweredCause::Expired, by: None, by_admin: None, reason: None }
        }
        E::HandLowered(room::HandLowered::Cleared { by: b, reason: r }) => {
            let (by, by_admin) = by(b);
            S::HandLowered { seq, cause: proto::HandLoweredCause::Cleared, by, by_admin, reason: reason(r.as_ref()) }
        }
        E::Chat(m) => S::Chat { seq, message: chat_message(m) },
        E::ChatDeleted { message_id, author: _, by: b, reason: r } => {
            let (by, by_admin) = by(b);
            S::ChatDeleted { seq, message_id: *message_id, by, by_admin, reason: reason(r.as_ref()) }
        }
        E::InviteAnswered { id, accepted, expired } => {
            S::InviteAnswered { seq, participant: id.to_string(), accepted: *accepted, expired: *expired }
        }
    }
}
