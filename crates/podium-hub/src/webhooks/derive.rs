//! What a committed transition means for webhooks and the audit log: derived in one place, from the room as last
//! committed, the transition's changes and its outputs, and what caused it (a participant's request, or the room's
//! own timers when there is no cause).

use podium_proto::webhook::WebhookParticipant;
use podium_room::{self as room, Changes, ParticipantId, Role, RoomState};

use crate::convert;

/// Who caused a transition, when a request did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Cause {
    /// The participant (or `admin:<key>`) whose request it was.
    pub(crate) actor: String,
    /// `websocket` or `api`.
    pub(crate) via: &'static str,
    /// The reason given with a moderation request.
    pub(crate) reason: Option<String>,
}

impl Cause {
    /// A participant's request over the websocket.
    pub(crate) fn websocket(who: &ParticipantId) -> Self {
        Self { actor: who.as_str().to_owned(), via: "websocket", reason: None }
    }
}

/// One derived event, before it gets its id and time.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Derived {
    pub(crate) kind: &'static str,
    pub(crate) participant: Option<WebhookParticipant>,
    pub(crate) actor: Option<String>,
    pub(crate) reason: Option<String>,
    pub(crate) settings: Option<podium_proto::RoomSettings>,
    /// `room.info_changed`: the description and pinned link now.
    pub(crate) info: Option<podium_proto::RoomInfo>,
    /// `chat.message_deleted`: the message's id (its author is `participant`).
    pub(crate) message_id: Option<u64>,
    /// `recording.started`, `recording.stopped`: the recording.
    pub(crate) recording_id: Option<String>,
}

/// Event types that are moderation actions (audited whoever the target is).
const MODERATION: &[&str] = &[
    "participant.kicked",
    "participant.banned",
    "participant.unbanned",
    "moderator.granted",
    "moderator.revoked",
    "guest.added",
    "guest.removed",
    "room.settings_changed",
    "room.info_changed",
    "chat.message_deleted",
    "recording.started",
    "recording.stopped",
];

/// Event types that are moderation actions when someone did them to another participant.
const ON_OTHERS: &[&str] = &[
    "participant.promoted",
    "participant.moved_to_audience",
    "participant.muted",
    "participant.invited",
    "hand.lowered",
];

impl Derived {
    fn new(kind: &'static str) -> Self {
        Self {
            kind,
            participant: None,
            actor: None,
            reason: None,
            settings: None,
            info: None,
            message_id: None,
            recording_id: None,
        }
    }

    /// True when the audit log records it.
    pub(crate) fn audited(&self) -> bool {
        let target = self.participant.as_ref().map(|p| p.id.as_str());
        match self.kind {
            "room.ended" => self.reason.as_deref() == Some("moderator"),
            k if MODERATION.contains(&k) => self.actor.is_some(),
            k if ON_OTHERS.contains(&k) => self.actor.is_some() && self.actor.as_deref() != target,
            _ => false,
        }
    }

    /// An audience member's join or leave (subject to `webhooks.audience`).
    pub(crate) fn audience_movement(&self) -> Option<bool> {
        let p = self.participant.as_ref()?;
        match self.kind {
            "participant.joined" if p.role == Some(podium_proto::Role::Audience) => Some(true),
            "participant.left" if p.previous_role == Some(podium_proto::Role::Audience) => Some(false),
            _ => None,
        }
    }
}

fn who(p: &room::ParticipantState, role: Option<Role>, previous: Option<Role>) -> WebhookParticipant {
    WebhookParticipant {
        id: p.id.as_str().to_owned(),
        name: Some(p.name.clone()),
        role: role.map(convert::role_to_proto),
        previous_role: previous.map(convert::role_to_proto),
    }
}

fn add<'a>(
    out: &'a mut Vec<Derived>,
    kind: &'static str,
    participant: Option<WebhookParticipant>,
    actor: Option<String>,
) -> &'a mut Derived {
    let at = out.len();
    out.push(Derived { participant, actor, ..Derived::new(kind) });
    &mut out[at]
}

fn bare(id: &ParticipantId) -> WebhookParticipant {
    WebhookParticipant { id: id.as_str().to_owned(), name: None, role: None, previous_role: None }
}

/// The events of one committed transition, in a fixed order: room started, joins, stage changes (and hands),
/// removals, bans, guests, settings, info, room ended.
pub(crate) fn derive(
    before: Option<&RoomState>,
    changes: &Changes,
    outputs: &[room::Output],
    cause: Option<&Cause>,
) -> Vec<Derived> {
    let created = changes.base_seq == 0;
    let empty;
    let before = match before {
        Some(b) => b,
        None => {
            match RoomState::created_by(&Changes { upserted: Vec::new(), removed: Vec::new(), ..changes.clone() }) {
                Some(state) if created => {
                    empty = state;
                    &empty
                }
                // Not the room's first commit and nothing to compare with: only what the outputs say.
                _ => return ended(outputs),
            }
        }
    };
    // The room-level fields after the transition, read from the changes where they carry them: the participants are
    // never copied, so a commit costs the size of what changed, not of the room (a 6,000-listener room commits 100
    // joins/s).
    let fields = changes.room.as_ref();
    let settings_after = fields.map_or(before.settings, |f| f.settings);
    let ended_after = fields.map_or(before.ended, |f| f.ended);
    let info_after = changes.info.as_ref().unwrap_or(&before.info);
    let bans_after = changes.bans.as_ref().unwrap_or(&before.bans);
    let guests_after = changes.guests.as_ref().unwrap_or(&before.guests);
    let actor = cause.map(|c| c.actor.clone());
    let reason = cause.and_then(|c| c.reason.clone());
    let find = |id: &ParticipantId| find(before, id);
    let mut out = Vec::new();
    if created {
        let at = add(&mut out, "room.started", None, actor.clone());
        at.settings = Some(convert::settings(&settings_after));
    }
    // Joins first, then what changed for those already in.
    let previous: Vec<Option<&room::ParticipantState>> =
        changes.upserted.iter().map(|p| previous(before, changes, p)).collect();
    for (p, old) in changes.upserted.iter().zip(&previous) {
        if old.is_none() {
            add(&mut out, "participant.joined", Some(who(p, Some(p.role), None)), Some(p.id.as_str().to_owned()));
        }
    }
    for (p, old) in changes.upserted.iter().zip(&previous) {
        let Some(old) = *old else { continue };
        let roles = |kind| (kind, Some(who(p, Some(p.role), Some(old.role))));
        if old.role != p.role {
            let (kind, target) = match (old.role, p.role) {
                (Role::Audience, _) => roles("participant.promoted"),
                (_, Role::Audience) => roles("participant.moved_to_audience"),
                (Role::Speaker, Role::Moderator) => roles("moderator.granted"),
                _ => roles("moderator.revoked"),
            };
            let at = add(&mut out, kind, target, actor.clone());
            at.reason.clone_from(&reason);
        } else if p.role.on_stage() && old.muted != p.muted {
            let kind = if p.muted { "participant.muted" } else { "participant.unmuted" };
            let at = add(&mut out, kind, Some(who(p, Some(p.role), None)), actor.clone());
            at.reason.clone_from(&reason);
        }
        if old.hand_raised.is_none() && p.hand_raised.is_some() {
            add(&mut out, "hand.raised", Some(who(p, Some(p.role), None)), actor.clone());
        } else if old.hand_raised.is_some() && p.hand_raised.is_none() && p.role == Role::Audience {
            let at = add(&mut out, "hand.lowered", Some(who(p, Some(p.role), None)), actor.clone());
            // Cleared by a moderator: their reason. Lowered by the room's timer (no request): it expired.
            at.reason = match &actor {
                Some(_) => reason.clone(),
                None if expired(outputs, &p.id) => Some("expired".to_owned()),
                None => None,
            };
        }
        if old.invite.is_none()
            && let Some(invite) = &p.invite
        {
            let at = add(&mut out, "participant.invited", Some(who(p, Some(p.role), None)), Some(invite.by.label()));
            at.reason.clone_from(&reason);
        }
    }
    // Why each was disconnected (kicked, banned, revoked; the first reason given), read once: a transition may
    // remove thousands.
    let mut disconnected = std::collections::HashMap::new();
    for o in outputs {
        if let room::Output::Disconnect { who, reason } = o {
            disconnected.entry(who).or_insert(*reason);
        }
    }
    let removed_why = |id: &ParticipantId| disconnected.get(id).copied();
    for (id, old) in changes.removed.iter().zip(records(before, &changes.removed)) {
        let Some(old) = old else { continue };
        let why = match removed_why(id) {
            Some(room::DisconnectReason::Kicked) => {
                let at = add(&mut out, "participant.kicked", Some(who(old, None, Some(old.role))), actor.clone());
                at.reason.clone_from(&reason);
                "kicked"
            }
            Some(room::DisconnectReason::Banned) => "banned",
            Some(room::DisconnectReason::Revoked) => "revoked",
            None if ended_after => "ended",
            None if actor.as_deref() == Some(id.as_str()) => "left",
            None => "timeout",
        };
        let at = add(&mut out, "participant.left", Some(who(old, None, Some(old.role))), actor.clone());
        at.reason = Some(why.to_owned());
    }
    for (list_before, list_after, added, gone) in [
        (&before.bans, bans_after, "participant.banned", "participant.unbanned"),
        (&before.guests, guests_after, "guest.added", "guest.removed"),
    ] {
        for id in list_after.iter().filter(|id| !list_before.contains(id)) {
            let target = find(id).map_or_else(|| bare(id), |p| who(p, None, Some(p.role)));
            let at = add(&mut out, added, Some(target), actor.clone());
            at.reason.clone_from(&reason);
        }
        for id in list_before.iter().filter(|id| !list_after.contains(id)) {
            let at = add(&mut out, gone, Some(bare(id)), actor.clone());
            at.reason.clone_from(&reason);
        }
    }
    if !created && before.settings != settings_after {
        let at = add(&mut out, "room.settings_changed", None, actor.clone());
        at.settings = Some(convert::settings(&settings_after));
        at.reason.clone_from(&reason);
    }
    if before.info != *info_after {
        let at = add(&mut out, "room.info_changed", None, actor.clone());
        at.info = Some(convert::info(info_after));
        at.reason.clone_from(&reason);
    }
    out.extend(chat_deleted(before, outputs));
    let mut recording_event = false;
    for o in outputs {
        if let room::Output::Event { event: room::Event::Recording(r), .. } = o {
            recording_event = true;
            let (kind, id) = match r {
                Some(r) => ("recording.started", Some(r.id.clone())),
                None => ("recording.stopped", before.recording.as_ref().map(|r| r.id.clone())),
            };
            let at = add(&mut out, kind, None, actor.clone());
            at.recording_id = id;
            at.reason.clone_from(&reason);
        }
    }
    if let Some(r) = &before.recording
        && !recording_event
        && ended_after
    {
        // The room's end stops the recording without an event of its own.
        let at = add(&mut out, "recording.stopped", None, None);
        at.recording_id = Some(r.id.clone());
        at.reason = Some("ended".to_owned());
    }
    out.extend(ended(outputs));
    out
}

/// A participant's record in `before`, by identity: a look through the room, for the few who leave or are banned
/// in one transition.
fn find<'a>(before: &'a RoomState, id: &ParticipantId) -> Option<&'a room::ParticipantState> {
    before.participants.iter().find(|p| &p.id == id)
}

/// The records of `ids` in `before`: a look through the room for each of a few, one pass for many (a hub's
/// listeners whose grace ran out together leave in one transition).
fn records<'a>(before: &'a RoomState, ids: &[ParticipantId]) -> Vec<Option<&'a room::ParticipantState>> {
    /// Up to this many are looked for one by one (`RoomState::apply` draws the line at the same place).
    const FEW: usize = 8;
    if ids.len() <= FEW {
        return ids.iter().map(|id| find(before, id)).collect();
    }
    let mut at: std::collections::HashMap<&ParticipantId, usize> =
        ids.iter().enumerate().map(|(i, id)| (id, i)).collect();
    let mut out = vec![None; ids.len()];
    for p in &before.participants {
        if let Some(i) = at.remove(&p.id) {
            out[i] = Some(p);
        }
    }
    out
}

/// An upserted participant's earlier record: none for a join (the changes say who joined), otherwise found by its
/// join order (the room keeps it while the participant stays), by identity only if the room was repaired. A join
/// into a room of thousands thus costs what changed, not a scan of the room.
fn previous<'a>(
    before: &'a RoomState,
    changes: &Changes,
    p: &room::ParticipantState,
) -> Option<&'a room::ParticipantState> {
    if changes.joined.binary_search(&p.id).is_ok() {
        return None;
    }
    match before.participants.binary_search_by_key(&p.join_order, |q| q.join_order) {
        Ok(i) if before.participants[i].id == p.id => Some(&before.participants[i]),
        _ => find(before, &p.id),
    }
}

/// The audience after the transition: before's, less those the changes take out of it, plus those they put in.
/// A pass over the room: asked only when an `audience.summary` goes out, not at every commit.
pub(crate) fn audience_after(before: Option<&RoomState>, changes: &Changes) -> u64 {
    let upserted = || changes.upserted.iter().filter(|p| p.role == Role::Audience).count();
    let audience = match before {
        // The room's first commit holds everyone; any other without a version to compare with counts nothing.
        None if changes.base_seq == 0 => upserted(),
        None => 0,
        Some(before) => {
            let in_audience = |old: Option<&room::ParticipantState>| old.is_some_and(|p| p.role == Role::Audience);
            let mut audience = before.participants.iter().filter(|p| p.role == Role::Audience).count();
            for (id, old) in changes.removed.iter().zip(records(before, &changes.removed)) {
                if !changes.upserted.iter().any(|p| &p.id == id) {
                    audience = audience.saturating_sub(usize::from(in_audience(old)));
                }
            }
            for p in &changes.upserted {
                audience = audience.saturating_sub(usize::from(in_audience(previous(before, changes, p))))
                    + usize::from(p.role == Role::Audience);
            }
            audience
        }
    };
    u64::try_from(audience).unwrap_or(u64::MAX)
}

/// Whether the outputs tell `id` that their hand expired.
fn expired(outputs: &[room::Output], id: &ParticipantId) -> bool {
    outputs.iter().any(|o| {
        matches!(o, room::Output::Event {
            to: room::Recipients::One(to),
            event: room::Event::HandLowered(room::HandLowered::Expired),
            ..
        } if to == id)
    })
}

/// `chat.message_deleted` for each deletion in the outputs (by its author, a moderator or an administrator).
fn chat_deleted<'a>(before: &'a RoomState, outputs: &'a [room::Output]) -> impl Iterator<Item = Derived> + 'a {
    outputs.iter().filter_map(move |o| match o {
        room::Output::Event { event: room::Event::ChatDeleted { message_id, author, by, reason }, .. } => {
            let name = before.chat.iter().find(|m| m.id == *message_id).map(|m| m.name.clone());
            let mut d = Derived::new("chat.message_deleted");
            d.participant = Some(WebhookParticipant { name, ..bare(author) });
            d.actor = Some(by.label());
            d.reason = reason.as_ref().map(ToString::to_string);
            d.message_id = Some(*message_id);
            Some(d)
        }
        _ => None,
    })
}

fn ended(outputs: &[room::Output]) -> Vec<Derived> {
    outputs
        .iter()
        .filter_map(|o| match o {
            room::Output::Ended { reason } => {
                let mut d = Derived::new("room.ended");
                match reason {
                    room::EndReason::ByModerator { by, reason } => {
                        d.actor = Some(by.label());
                        d.reason = Some(reason.as_ref().map_or_else(|| "moderator".to_owned(), |r| r.to_string()));
                    }
                    room::EndReason::Empty => d.reason = Some("empty".into()),
                }
                Some(d)
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use podium_room::{Command, Join, Room, RoomConfig};

    use super::*;

    fn join(room: &mut Room, now: u64, id: &str, ceiling: Role) {
        room.handle_join(now, Join::new(ParticipantId::new(id), id.to_uppercase(), ceiling, None)).expect("join");
    }

    /// Runs `step` on the room and derives its events as the room task would.
    fn step(
        room: &mut Room,
        committed: &mut Option<RoomState>,
        actor: Option<&str>,
        f: impl FnOnce(&mut Room),
    ) -> Vec<String> {
        f(room);
        let outputs: Vec<_> = std::iter::from_fn(|| room.poll_output()).collect();
        let Some(changes) = room.take_changes() else { return Vec::new() };
        let cause = actor.map(|a| Cause::websocket(&ParticipantId::new(a)));
        let events = derive(committed.as_ref(), &changes, &outputs, cause.as_ref());
        let audience = audience_after(committed.as_ref(), &changes);
        match committed {
            Some(state) => state.apply(&changes),
            None => *committed = RoomState::created_by(&changes),
        }
        // The audience from the changes alone is the audience of the state after them.
        let after =
            committed.as_ref().map_or(0, |s| s.participants.iter().filter(|p| p.role == Role::Audience).count());
        assert_eq!(audience, after as u64, "{changes:?}");
        assert_eq!(committed.as_ref(), Some(&room.state()), "the committed copy follows the room");
        events
            .iter()
            .map(|d| {
                let target = d.participant.as_ref().map_or("-", |p| p.id.as_str());
                let by = d.actor.as_deref().unwrap_or("-");
                let why = d.reason.as_deref().unwrap_or("-");
                format!("{} {target} by {by} ({why}){}", d.kind, if d.audited() { " audited" } else { "" })
            })
            .collect()
    }

    #[test]
    fn many_leaving_at_once_are_each_reported_with_their_reason() {
        let mut room = Room::new("r", RoomConfig::default(), 1_000);
        let mut c = None;
        step(&mut room, &mut c, None, |r| join(r, 1_000, "m", Role::Moderator));
        let ids: Vec<String> = (0..40).map(|i| format!("l{i:02}")).collect();
        for id in &ids {
            step(&mut room, &mut c, None, |r| join(r, 1_001, id, Role::Audience));
        }
        // A hub's connections drop together; a moderator kicks one of them meanwhile. Their grace runs out at once:
        // one transition removes 39 (the store mirror and the audience count are checked by `step`).
        for id in &ids {
            step(&mut room, &mut c, None, |r| r.handle_disconnect(2_000, &ParticipantId::new(id.as_str())));
        }
        let kicked = ParticipantId::new("l07");
        let kick = |r: &mut Room| {
            r.handle_command(2_001, &ParticipantId::new("m"), Command::Kick { target: kicked.clone() }).expect("kick");
        };
        assert_eq!(
            step(&mut room, &mut c, Some("m"), kick),
            ["participant.kicked l07 by m (-) audited", "participant.left l07 by m (kicked)"]
        );
        let left = step(&mut room, &mut c, None, |r| r.handle_timeout(2_000 + RoomConfig::default().grace));
        let expected: Vec<String> =
            ids.iter().filter(|id| *id != "l07").map(|id| format!("participant.left {id} by - (timeout)")).collect();
        assert_eq!(left, expected);
        assert_eq!(c.as_ref().map(|s| s.participants.len()), Some(1));
    }

    #[test]
    fn transitions_become_events() {
        let mut room = Room::new("r", RoomConfig::default(), 1_000);
        let mut c = None;
        let m = ParticipantId::new("m");
        let a = ParticipantId::new("a");
        assert_eq!(
            step(&mut room, &mut c, None, |r| join(r, 1_000, "m", Role::Moderator)),
            ["room.started - by - (-)", "participant.joined m by m (-)"]
        );
        assert_eq!(
            step(&mut room, &mut c, None, |r| join(r, 1_001, "a", Role::Speaker)),
            ["participant.joined a by a (-)"]
        );
        let cmd = |r: &mut Room, now, who: &ParticipantId, command| {
            r.handle_command(now, who, command).expect("accepted");
        };
        assert_eq!(
            step(&mut room, &mut c, Some("a"), |r| cmd(r, 1_002, &a, Command::RaiseHand)),
            ["hand.raised a by a (-)"]
        );
        assert_eq!(
            step(&mut room, &mut c, Some("m"), |r| cmd(r, 1_003, &m, Command::ApproveHand { target: a.clone() })),
            ["participant.promoted a by m (-) audited"]
        );
        assert_eq!(
            step(&mut room, &mut c, Some("a"), |r| cmd(r, 1_004, &a, Command::SetMuted { muted: false })),
            ["participant.unmuted a by a (-)"]
        );
        assert_eq!(
            step(&mut room, &mut c, Some("m"), |r| cmd(r, 1_005, &m, Command::Mute { target: a.clone() })),
            ["participant.muted a by m (-) audited"]
        );
        assert_eq!(
            step(&mut room, &mut c, Some("m"), |r| cmd(r, 1_006, &m, Command::Kick { target: a.clone() })),
            ["participant.kicked a by m (-) audited", "participant.left a by m (kicked)"]
        );
        assert_eq!(
            step(&mut room, &mut c, Some("m"), |r| cmd(r, 1_007, &m, Command::Ban { target: ParticipantId::new("x") })),
            ["participant.banned x by m (-) audited"]
        );
        assert_eq!(
            step(&mut room, &mut c, Some("m"), |r| cmd(
                r,
                1_008,
                &m,
                Command::Unban { target: ParticipantId::new("x") }
            )),
            ["participant.unbanned x by m (-) audited"]
        );
        assert_eq!(
            step(&mut room, &mut c, Some("m"), |r| cmd(r, 1_009, &m, Command::EndRoom)),
            ["room.ended - by m (moderator) audited"]
        );
    }

    #[test]
    fn room_info_and_lowered_hands_become_events() {
        let config = RoomConfig { hand_ttl: 1_000, ..RoomConfig::default() };
        let mut room = Room::new("r", config, 1_000);
        let mut c = None;
        let m = ParticipantId::new("m");
        step(&mut room, &mut c, None, |r| join(r, 1_000, "m", Role::Moderator));
        for (now, who) in [(1_001, "a"), (1_002, "b")] {
            step(&mut room, &mut c, None, |r| join(r, now, who, Role::Speaker));
            let id = ParticipantId::new(who);
            step(&mut room, &mut c, Some(who), |r| drop(r.handle_command(now, &id, Command::RaiseHand)));
        }
        let info = Command::SetRoomInfo { description: Some(Some("About".into())), pinned_link: None };
        assert_eq!(
            step(&mut room, &mut c, Some("m"), |r| drop(r.handle_command(1_003, &m, info))),
            ["room.info_changed - by m (-) audited"]
        );
        // a's hand expires (the room's timer: no actor, reason "expired"); then m clears b's.
        assert_eq!(step(&mut room, &mut c, None, |r| r.handle_timeout(2_001)), ["hand.lowered a by - (expired)"]);
        let cause = Cause { reason: Some("next".into()), ..Cause::websocket(&m) };
        clear_hands(&mut room, &mut c, &cause);
    }

    /// `clear_hands` from `cause`'s actor: one audited `hand.lowered` per hand, with the moderator's reason.
    fn clear_hands(room: &mut Room, committed: &mut Option<RoomState>, cause: &Cause) {
        let by = podium_room::Actor::Participant(ParticipantId::new(cause.actor.as_str()));
        room.handle_command_as(2_002, &by, Command::ClearHands, cause.reason.as_deref()).expect("accepted");
        let outputs: Vec<_> = std::iter::from_fn(|| room.poll_output()).collect();
        let changes = room.take_changes().expect("changed");
        let events = derive(committed.as_ref(), &changes, &outputs, Some(cause));
        let seen: Vec<_> =
            events.iter().map(|d| (d.kind, d.actor.as_deref(), d.reason.as_deref(), d.audited())).collect();
        assert_eq!(seen, [("hand.lowered", Some("m"), Some("next"), true)]);
        let d = &events[0];
        assert_eq!(d.participant.as_ref().map(|p| p.id.as_str()), Some("b"));
    }

    #[test]
    fn chat_deletions_become_audited_events_and_posts_none() {
        let mut room = Room::new("r", RoomConfig::default(), 1_000);
        let mut c = None;
        let (m, a) = (ParticipantId::new("m"), ParticipantId::new("a"));
        step(&mut room, &mut c, None, |r| join(r, 1_000, "m", Role::Moderator));
        step(&mut room, &mut c, None, |r| join(r, 1_000, "a", Role::Audience));
        let post = |r: &mut Room| {
            r.handle_command(1_001, &a, Command::SendChat { text: "hi".into() }).expect("posted");
        };
        assert_eq!(step(&mut room, &mut c, Some("a"), post), Vec::<String>::new(), "no event per message");
        let delete = |r: &mut Room| {
            r.handle_command_as(
                1_002,
                &room::Actor::Participant(m.clone()),
                Command::DeleteChat { message_id: 1 },
                Some("spam"),
            )
            .expect("deleted");
        };
        assert_eq!(step(&mut room, &mut c, Some("m"), delete), ["chat.message_deleted a by m (spam) audited"]);
        // The author deleting their own: still an entry, the author the actor.
        step(&mut room, &mut c, Some("a"), post);
        let own = |r: &mut Room| {
            r.handle_command(1_003, &a, Command::DeleteChat { message_id: 2 }).expect("deleted");
        };
        assert_eq!(step(&mut room, &mut c, Some("a"), own), ["chat.message_deleted a by a (-) audited"]);
    }

    #[test]
    fn audience_movements_are_recognised() {
        let mut d = Derived::new("participant.joined");
        d.participant = Some(WebhookParticipant {
            id: "l".into(),
            name: None,
            role: Some(podium_proto::Role::Audience),
            previous_role: None,
        });
        assert_eq!(d.audience_movement(), Some(true));
        if let Some(p) = d.participant.as_mut() {
            p.role = Some(podium_proto::Role::Speaker);
        }
        assert_eq!(d.audience_movement(), None);
    }
}
