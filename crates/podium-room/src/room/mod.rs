//! The room: its state, the connection-level inputs (join, disconnect, leave, timeout), outputs and getters.
//!
//! Internals, briefly: participants live in a `HashMap`; ordered indexes (audience by join order, stage by
//! stage order, hands by raise order, grace and invitation deadlines) make every command cost O(log n) plus the
//! stage size, except where the output itself is large (hand positions behind a removed hand, pages).
//! Every accepted transition runs between [`Room::begin`] (validation is finished, `seq` goes up) and
//! [`Room::finish`] (succession, hand queue and `You` events, publish permissions, empty timer, counts).

mod chat;
mod check;
mod commands;
mod ops;
mod persist;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use crate::command::{CommandError, Join, Joined};
use crate::event::{
    EndReason, Event, HandLowered, Output, ParticipantSummary, ParticipantView, Recipients, RoomView, Snapshot,
    StageCause, StageMember,
};
use crate::state::{ParticipantState, Revocation};
use crate::types::{
    ChatMessage, Counts, Millis, ParticipantId, Recording, Role, RoomConfig, RoomInfo, Settings, sat_u32,
};

/// The state machine of one room. See the crate documentation for the run-loop contract and the rules.
#[derive(Debug)]
pub struct Room {
    config: RoomConfig,
    name: String,
    seq: u64,
    settings: Settings,
    ended: bool,
    empty_since: Option<Millis>,
    /// One counter for join order, stage order and hand order: values are unique across all three.
    next_order: u64,
    participants: HashMap<ParticipantId, ParticipantState>,
    bans: BTreeSet<ParticipantId>,
    guests: BTreeSet<ParticipantId>,
    /// Never ended by the empty timeout.
    persistent: bool,
    /// Revocations, ordered by `until` first (the next to lapse is the first).
    revocations: BTreeSet<Revocation>,
    /// Description and pinned link.
    info: RoomInfo,
    /// The chat history by id (see the `chat` module).
    chat: BTreeMap<u64, ChatMessage>,
    /// The id the next chat message gets.
    next_chat_id: u64,
    /// The room-wide chat flood cap: tokens in thousandths, and when they were last refilled.
    chat_tokens: u64,
    chat_refilled_at: Millis,
    /// The recording in progress.
    recording: Option<Recording>,
    /// May be recorded at all.
    recordable: bool,

    // Indexes, always consistent with `participants` (see `check_invariants`).
    /// `join_order → id` for every audience member.
    audience: BTreeMap<u64, ParticipantId>,
    /// `stage_since → id` for every moderator and speaker.
    stage: BTreeMap<u64, ParticipantId>,
    /// `hand_raised → id`: the hand queue.
    hands: BTreeMap<u64, ParticipantId>,
    /// `(grace_deadline, id)` for everyone disconnected.
    graces: BTreeSet<(Millis, ParticipantId)>,
    /// `(expires_at, id)` for every open invitation.
    invites: BTreeSet<(Millis, ParticipantId)>,
    /// `(hand_expires_at, id)` for every raised hand that expires.
    hand_expiry: BTreeSet<(Millis, ParticipantId)>,

    outputs: VecDeque<Output>,

    /// The counts last sent (`None`: never sent since restore).
    counts_sent: Option<Counts>,
    /// When the pending counts flush is due.
    counts_flush_at: Option<Millis>,

    // Change tracking for `take_changes`.
    base_seq: u64,
    /// Who is in the room at `base_seq` (as the store has it): what tells a join from a change in
    /// [`Changes::joined`], without the store's side looking through the whole room.
    base_ids: HashSet<ParticipantId>,
    dirty: HashSet<ParticipantId>,
    fields_dirty: bool,
    bans_dirty: bool,
    guests_dirty: bool,
    info_dirty: bool,
    /// Chat messages posted and removed since the last `take_changes`.
    chat_added: Vec<ChatMessage>,
    chat_removed: Vec<u64>,
}

/// Bookkeeping for one accepted transition.
struct Tx {
    moderators_before: Vec<ParticipantId>,
    publishing_before: Vec<ParticipantId>,
    recorded_before: Vec<ParticipantId>,
    /// The hand queue changed (a moderator-visible change).
    hands_changed: bool,
    /// The smallest queue key removed: everyone behind it moved up and gets a `You`.
    hands_from: Option<u64>,
    /// Participants whose own state changed, in order, without duplicates.
    you: Vec<ParticipantId>,
    you_set: HashSet<ParticipantId>,
    /// Emitted after the events.
    disconnect: Vec<Output>,
}

impl Tx {
    fn you(&mut self, id: &ParticipantId) {
        if self.you_set.insert(id.clone()) {
            self.you.push(id.clone());
        }
    }

    fn hand_removed(&mut self, key: u64) {
        self.hands_changed = true;
        self.hands_from = Some(self.hands_from.map_or(key, |k| k.min(key)));
    }
}

/// What a room is created with ([`Room::create`]); `None` takes the value from the [`RoomConfig`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomSetup {
    /// Open mic.
    pub open_mic: Option<bool>,
    /// Closed room.
    pub closed: Option<bool>,
    /// Seats on the stage, in `1..=max_stage_capacity`.
    pub stage_capacity: Option<u32>,
    /// Persistent: never ended by the empty timeout, only by `EndRoom`.
    pub persistent: Option<bool>,
    /// The closed-room guest list to start with.
    pub guests: Vec<ParticipantId>,
    /// `Some(false)`: the room must never be recorded (`StartRecording` is refused). Default: it may be.
    pub record: Option<bool>,
}

impl Room {
    /// A new, empty room with the settings of `config`. Its empty timer starts at `now`: unless the room is
    /// persistent, it ends if nobody joins within `empty_timeout`.
    pub fn new(name: impl Into<String>, config: RoomConfig, now: Millis) -> Self {
        let settings = Settings {
            open_mic: config.open_mic,
            closed: config.closed,
            stage_capacity: config.stage_capacity,
            chat: config.chat,
            chat_slow_mode_ms: config.chat_slow_mode_ms.min(Settings::MAX_CHAT_SLOW_MODE_MS),
        };
        let persistent = config.persistent;
        let mut room = Self::blank(name.into(), config, settings);
        room.persistent = persistent;
        room.empty_since = Some(now);
        room.counts_sent = Some(Counts::default());
        // The first changes of a new room carry its fields, so a store can create it.
        room.fields_dirty = true;
        room
    }

    /// A new, empty room (as [`Room::new`]) whose settings, persistence and guest list come from `setup` where it
    /// gives them. `BadRequest` when the stage capacity is outside `1..=max_stage_capacity`. Its first
    /// [`Room::take_changes`] carries all of it, so the store creates the room with it.
    pub fn create(
        name: impl Into<String>,
        config: RoomConfig,
        now: Millis,
        setup: RoomSetup,
    ) -> Result<Self, CommandError> {
        if let Some(capacity) = setup.stage_capacity
            && (capacity == 0 || capacity > config.max_stage_capacity)
        {
            return Err(CommandError::BadRequest("stage_capacity out of range"));
        }
        let mut room = Self::new(name, config, now);
        room.settings = Settings {
            open_mic: setup.open_mic.unwrap_or(room.settings.open_mic),
            closed: setup.closed.unwrap_or(room.settings.closed),
            stage_capacity: setup.stage_capacity.unwrap_or(room.settings.stage_capacity),
            ..room.settings
        };
        room.persistent = setup.persistent.unwrap_or(room.persistent);
        room.recordable = setup.record.unwrap_or(true);
        room.guests = setup.guests.into_iter().collect();
        room.guests_dirty = !room.guests.is_empty();
        Ok(room)
    }

    fn blank(name: String, config: RoomConfig, settings: Settings) -> Self {
        let chat_tokens = u64::from(config.chat_room_burst).saturating_mul(1_000);
        Self {
            config,
            name,
            seq: 0,
            settings,
            ended: false,
            empty_since: None,
            next_order: 0,
            participants: HashMap::new(),
            bans: BTreeSet::new(),
            guests: BTreeSet::new(),
            persistent: false,
            revocations: BTreeSet::new(),
            info: RoomInfo::default(),
            chat: BTreeMap::new(),
            next_chat_id: 1,
            chat_tokens,
            chat_refilled_at: 0,
            recording: None,
            recordable: true,
            audience: BTreeMap::new(),
            stage: BTreeMap::new(),
            hands: BTreeMap::new(),
            graces: BTreeSet::new(),
            invites: BTreeSet::new(),
            hand_expiry: BTreeSet::new(),
            outputs: VecDeque::new(),
            counts_sent: None,
            counts_flush_at: None,
            base_seq: 0,
            base_ids: HashSet::new(),
            dirty: HashSet::new(),
            fields_dirty: false,
            bans_dirty: false,
            guests_dirty: false,
            info_dirty: false,
            chat_added: Vec::new(),
            chat_removed: Vec::new(),
        }
    }

    // ------------------------------------------------------------------------------------------------ inputs

    /// A participant joins, or takes over their existing session (see the rules table).
    pub fn handle_join(&mut self, now: Millis, join: Join) -> Result<Joined, CommandError> {
        if self.ended {
            return Err(CommandError::Ended);
        }
        if self.bans.contains(&join.id) {
            return Err(CommandError::Banned);
        }
        if self.revoked(now, &join.id, join.token_id.as_deref(), join.issued_at) {
            return Err(CommandError::Revoked);
        }
        if self.participants.contains_key(&join.id) {
            return Ok(self.resume(now, join));
        }
        if self.settings.closed && join.ceiling < Role::Moderator && !self.guests.contains(&join.id) {
            return Err(CommandError::NotInvited);
        }
        let role = match join.role {
            None if join.ceiling == Role::Moderator && self.seat_free() => Role::Moderator,
            None | Some(Role::Audience) => Role::Audience,
            Some(wanted) => {
                if join.ceiling != Role::Moderator {
                    return Err(CommandError::Forbidden("only moderator tokens may join onto the stage"));
                }
                if !self.seat_free() {
                    return Err(CommandError::StageFull);
                }
                wanted
            }
        };

        let tx = self.begin();
        let join_order = self.take_order();
        let stage_since = if role.on_stage() { Some(self.take_order()) } else { None };
        let id = join.id;
        let p = ParticipantState {
            id: id.clone(),
            name: join.name,
            ceiling: join.ceiling,
            role,
            muted: true,
            connected: true,
            grace_deadline: None,
            join_order,
            stage_since,
            hand_raised: None,
            hand_expires_at: None,
            invite: None,
            token_id: join.token_id,
            issued_at: join.issued_at,
            recording_opt_out: false,
        };
        let summary = ParticipantSummary { id: id.clone(), name: p.name.clone() };
        match stage_since {
            Some(since) => {
                self.stage.insert(since, id.clone());
            }
            None => {
                self.audience.insert(join_order, id.clone());
            }
        }
        self.participants.insert(id.clone(), p);
        self.dirty.insert(id.clone());
        if role.on_stage() {
            self.emit_stage(StageCause::Joined(id));
        } else {
            self.emit(Recipients::Stage, Event::ParticipantJoined { participant: summary });
        }
        self.finish(now, tx);
        Ok(Joined { resumed: false, role })
    }

    /// An identity already present joins again: the new connection takes over the session.
    fn resume(&mut self, now: Millis, join: Join) -> Joined {
        let id = join.id;
        let Some(p) = self.participants.get(&id) else {
            // Unreachable: the caller checked presence. Answer as a no-op rather than panic.
            return Joined { resumed: true, role: Role::Audience };
        };
        let role = p.role.min(join.ceiling);
        let was_disconnected = !p.connected;
        let name_changed = p.name != join.name;
        let ceiling_changed = p.ceiling != join.ceiling;
        let role_changed = role != p.role;
        let token_changed = p.token_id != join.token_id || p.issued_at != join.issued_at;
        let on_stage_before = p.role.on_stage();
        let grace_key = p.grace_deadline.map(|d| (d, id.clone()));
        let hand_raised = p.hand_raised.is_some();
        if !(was_disconnected || name_changed || ceiling_changed || role_changed || token_changed) {
            return Joined { resumed: true, role };
        }

        let mut tx = self.begin();
        if let Some(key) = grace_key {
            self.graces.remove(&key);
        }
        if let Some(p) = self.pm(&id) {
            p.connected = true;
            p.grace_deadline = None;
            p.name = join.name;
            p.ceiling = join.ceiling;
            p.token_id = join.token_id;
            p.issued_at = join.issued_at;
        }
        if ceiling_changed {
            tx.you(&id);
        }
        if role_changed {
            self.set_role(&id, role, &mut tx);
        }
        if join.ceiling < Role::Speaker {
            // The token no longer allows the stage: a raised hand or an invitation would be a way up.
            self.clear_hand(&id, &mut tx);
            self.set_invite(&id, None, &mut tx);
        } else if name_changed && hand_raised {
            // Names show in the moderators' queue.
            tx.hands_changed = true;
        }
        if on_stage_before && (was_disconnected || name_changed || role_changed) {
            self.emit_stage(StageCause::Reconnected(id));
        }
        self.finish(now, tx);
        Joined { resumed: true, role }
    }

    /// A participant's connection dropped: they stay (disconnected) for the grace period, keeping their state.
    /// Unknown or already disconnected identities and an ended room: nothing happens.
    pub fn handle_disconnect(&mut self, now: Millis, who: &ParticipantId) {
        if self.ended {
            return;
        }
        let Some(p) = self.participants.get(who) else { return };
        if !p.connected {
            return;
        }
        let on_stage = p.role.on_stage();
        let tx = self.begin();
        let deadline = now.saturating_add(self.config.grace);
        self.graces.insert((deadline, who.clone()));
        if let Some(p) = self.pm(who) {
            p.connected = false;
            p.grace_deadline = Some(deadline);
        }
        if on_stage {
            self.emit_stage(StageCause::Disconnected(who.clone()));
        }
        self.finish(now, tx);
    }

    /// A participant left explicitly: removed at once. Unknown identities and an ended room: nothing happens.
    pub fn handle_leave(&mut self, now: Millis, who: &ParticipantId) {
        if self.ended || !self.participants.contains_key(who) {
            return;
        }
        let mut tx = self.begin();
        self.remove_with_events(who, StageCause::Left(who.clone()), &mut tx);
        self.finish(now, tx);
    }

    /// Time passed: expires grace periods (each a leave), invitations and raised hands, ends a room empty for too long, and
    /// sends coalesced head counts. Call when [`Room::poll_timeout`] is due (calling early or late is harmless).
    pub fn handle_timeout(&mut self, now: Millis) {
        if self.ended {
            return;
        }
        while let Some((deadline, id)) = self.graces.first().cloned() {
            if deadline > now {
                break;
            }
            self.graces.remove(&(deadline, id.clone()));
            let expired = self.participants.get(&id).is_some_and(|p| p.grace_deadline == Some(deadline));
            if expired {
                let mut tx = self.begin();
                self.remove_with_events(&id, StageCause::Left(id.clone()), &mut tx);
                self.finish(now, tx);
            }
        }
        while let Some((expires_at, id)) = self.invites.first().cloned() {
            if expires_at > now {
                break;
            }
            self.invites.remove(&(expires_at, id.clone()));
            let expired =
                self.participants.get(&id).and_then(|p| p.invite.as_ref()).is_some_and(|i| i.expires_at == expires_at);
            if expired {
                let mut tx = self.begin();
                self.set_invite(&id, None, &mut tx);
                self.emit(Recipients::Moderators, Event::InviteAnswered { id, accepted: false, expired: true });
                self.finish(now, tx);
            }
        }
        while let Some((expires_at, id)) = self.hand_expiry.first().cloned() {
            if expires_at > now {
                break;
            }
            self.hand_expiry.remove(&(expires_at, id.clone()));
            let expired = self.participants.get(&id).is_some_and(|p| p.hand_expires_at == Some(expires_at));
            if expired {
                let mut tx = self.begin();
                self.clear_hand(&id, &mut tx);
                self.emit(Recipients::One(id), Event::HandLowered(HandLowered::Expired));
                self.finish(now, tx);
            }
        }
        if self.chat_expired(now) {
            let tx = self.begin();
            self.trim_chat(now, self.config.chat_history.max(1));
            self.finish(now, tx);
        }
        if self.revocations.first().is_some_and(|r| r.until <= now) {
            let tx = self.begin();
            self.prune_revocations(now);
            self.finish(now, tx);
        }
        if !self.persistent
            && self.participants.is_empty()
            && self.empty_since.is_some_and(|since| now >= since.saturating_add(self.config.empty_timeout))
        {
            let tx = self.begin();
            self.end(&tx, EndReason::Empty);
            return;
        }
        if self.counts_flush_at.is_some_and(|at| at <= now) {
            self.counts_flush_at = None;
            let counts = self.counts();
            if self.counts_sent != Some(counts) {
                self.counts_sent = Some(counts);
                self.emit(Recipients::Everyone, Event::Counts(counts));
            }
        }
    }

    // ----------------------------------------------------------------------------------------------- outputs

    /// The earliest time [`Room::handle_timeout`] has work: a grace period, invitation, raised hand or revocation
    /// ending, a counts flush, or the empty room's end (not for a persistent room). `None` when there is nothing to wait for
    /// (or the room ended).
    pub fn poll_timeout(&self) -> Option<Millis> {
        if self.ended {
            return None;
        }
        let empty_end = if self.participants.is_empty() && !self.persistent {
            self.empty_since.map(|since| since.saturating_add(self.config.empty_timeout))
        } else {
            None
        };
        [
            self.graces.first().map(|g| g.0),
            self.invites.first().map(|i| i.0),
            self.hand_expiry.first().map(|h| h.0),
            self.revocations.first().map(|r| r.until),
            self.chat_expiry(),
            self.counts_flush_at,
            empty_end,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next output. Drain until `None` after every `handle_*` call.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    // ----------------------------------------------------------------------------------------------- getters

    /// The room's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sequence number: how many state-changing transitions the room has gone through.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The room has ended; it accepts no more input.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// A present participant's role.
    pub fn role(&self, who: &ParticipantId) -> Option<Role> {
        self.participants.get(who).map(|p| p.role)
    }

    /// Everything about a present participant.
    pub fn participant(&self, who: &ParticipantId) -> Option<ParticipantView> {
        let p = self.participants.get(who)?;
        Some(ParticipantView {
            id: p.id.clone(),
            name: p.name.clone(),
            role: p.role,
            ceiling: p.ceiling,
            muted: p.muted,
            connected: p.connected,
            hand_position: self.hand_position(p),
            invited: p.invite.is_some(),
            token_id: p.token_id.clone(),
            issued_at: p.issued_at,
        })
    }

    /// The room as an administrator sees it: a moderator's view without a participant's own state.
    pub fn view(&self) -> RoomView {
        RoomView {
            room: self.name.clone(),
            seq: self.seq,
            settings: self.settings,
            persistent: self.persistent,
            recordable: self.recordable,
            info: self.info.clone(),
            recording: self.recording.clone(),
            stage: self.stage(),
            counts: self.counts(),
            hands: (self.hand_summaries(), self.hands.len()),
        }
    }

    /// Whether the room is persistent (never ended by the empty timeout).
    pub fn is_persistent(&self) -> bool {
        self.persistent
    }

    /// The revocations in force (some may have lapsed at `now` until the next [`Room::handle_timeout`]), the next
    /// to lapse first.
    pub fn revocations(&self) -> impl Iterator<Item = &Revocation> {
        self.revocations.iter()
    }

    /// Whether a join with this token would be refused as revoked at `now`.
    pub fn revoked(&self, now: Millis, identity: &ParticipantId, token_id: Option<&str>, issued_at: Millis) -> bool {
        self.revocations.iter().any(|r| r.until > now && r.matches(identity, token_id, issued_at))
    }

    /// Drops the revocations that lapsed at `now` (the caller runs the transition).
    fn prune_revocations(&mut self, now: Millis) {
        let before = self.revocations.len();
        self.revocations.retain(|r| r.until > now);
        if self.revocations.len() != before {
            self.fields_dirty = true;
        }
    }

    /// Moderators and speakers, in the order they took the stage.
    pub fn stage(&self) -> Vec<StageMember> {
        self.stage
            .values()
            .filter_map(|id| self.participants.get(id))
            .map(|p| StageMember {
                id: p.id.clone(),
                name: p.name.clone(),
                role: p.role,
                muted: p.muted,
                connected: p.connected,
                recording_opt_out: p.recording_opt_out,
            })
            .collect()
    }

    /// Current head counts.
    pub fn counts(&self) -> Counts {
        Counts {
            stage: sat_u32(self.stage.len()),
            audience: sat_u32(self.audience.len()),
            hands: sat_u32(self.hands.len()),
            total: sat_u32(self.participants.len()),
        }
    }

    /// The room as `who` sees it (the hand queue only for moderators).
    pub fn snapshot_for(&self, who: &ParticipantId) -> Option<Snapshot> {
        let p = self.participants.get(who)?;
        let (chat, chat_more) = self.chat_tail(None, self.config.chat_snapshot);
        Some(Snapshot {
            room: self.name.clone(),
            seq: self.seq,
            settings: self.settings,
            info: self.info.clone(),
            recording: self.recording.clone(),
            stage: self.stage(),
            counts: self.counts(),
            you: self.your_state(p, self.hand_position(p)),
            hands: (p.role == Role::Moderator).then(|| (self.hand_summaries(), self.hands.len())),
            chat,
            chat_more,
        })
    }

    /// Current settings.
    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// The description and pinned link.
    pub fn info(&self) -> &RoomInfo {
        &self.info
    }

    /// The recording in progress.
    pub fn recording(&self) -> Option<&Recording> {
        self.recording.as_ref()
    }

    /// Whether `who`'s audio is recorded now: the room records, they are on stage and did not opt out.
    pub fn is_recorded(&self, who: &ParticipantId) -> bool {
        self.recording.is_some()
            && !self.ended
            && self.participants.get(who).is_some_and(|p| p.role.on_stage() && !p.recording_opt_out)
    }

    /// The whole hand queue, oldest first.
    pub fn hand_queue(&self) -> Vec<ParticipantId> {
        self.hands.values().cloned().collect()
    }

    /// Whether an identity is banned.
    pub fn is_banned(&self, identity: &ParticipantId) -> bool {
        self.bans.contains(identity)
    }

    /// Participants present (connected or in their grace period).
    pub fn len(&self) -> usize {
        self.participants.len()
    }

    /// Nobody is present.
    pub fn is_empty(&self) -> bool {
        self.participants.is_empty()
    }

    /// Whether `who` may publish audio: on stage, not muted, and the room has not ended.
    pub fn may_publish(&self, who: &ParticipantId) -> bool {
        !self.ended && self.participants.get(who).is_some_and(|p| p.role.on_stage() && !p.muted)
    }

    // ------------------------------------------------------------------------------------------- transitions

    /// Starts an accepted transition: all validation is done. Increments `seq` (every event of this transition
    /// carries the new value) and records what `finish` compares against.
    fn begin(&mut self) -> Tx {
        self.seq = self.seq.saturating_add(1);
        Tx {
            moderators_before: self.moderators(),
            publishing_before: self.publishing(),
            recorded_before: self.recorded(),
            hands_changed: false,
            hands_from: None,
            you: Vec::new(),
            you_set: HashSet::new(),
            disconnect: Vec::new(),
        }
    }

    /// Ends a transition: succession, hand queue, `You` events, publish permissions, empty timer, counts.
    fn finish(&mut self, now: Millis, mut tx: Tx) {
        if !tx.moderators_before.is_empty() && self.moderators().is_empty() {
            self.succession(&mut tx);
        }
        if tx.hands_changed {
            let hands = self.hand_summaries();
            self.emit(Recipients::Moderators, Event::HandQueue { hands, total: self.hands.len() });
        }
        // New moderators learn the queue (the broadcast above already reaches them when the queue changed).
        if !tx.hands_changed && !self.hands.is_empty() {
            for id in self.moderators() {
                if !tx.moderators_before.contains(&id) {
                    let hands = self.hand_summaries();
                    self.emit(Recipients::One(id), Event::HandQueue { hands, total: self.hands.len() });
                }
            }
        }
        self.emit_you(&tx);
        self.emit_publish(&tx);
        self.emit_record(&tx);
        self.outputs.extend(tx.disconnect.drain(..));
        if self.participants.is_empty() {
            if self.empty_since.is_none() {
                self.empty_since = Some(now);
                self.fields_dirty = true;
            }
        } else if self.empty_since.is_some() {
            self.empty_since = None;
            self.fields_dirty = true;
        }
        if self.counts_flush_at.is_none() && self.counts_sent != Some(self.counts()) {
            self.counts_flush_at = Some(now.saturating_add(self.config.counts_interval));
        }
    }

    /// Ends the room (the transition `tx` was begun by the caller).
    fn end(&mut self, tx: &Tx, reason: EndReason) {
        self.ended = true;
        self.fields_dirty = true;
        self.counts_flush_at = None;
        // Nobody publishes in an ended room, and nothing is recorded.
        self.recording = None;
        self.emit_publish(tx);
        self.emit_record(tx);
        self.outputs.push_back(Output::Ended { reason });
    }

    /// The last moderator is gone: the longest-serving speaker whose token allows it takes over.
    fn succession(&mut self, tx: &mut Tx) {
        let heir = self
            .stage
            .values()
            .filter_map(|id| self.participants.get(id))
            .find(|p| p.role == Role::Speaker && p.ceiling == Role::Moderator)
            .map(|p| p.id.clone());
        if let Some(heir) = heir {
            self.set_role(&heir, Role::Moderator, tx);
            self.emit_stage(StageCause::Succession(heir));
        }
    }

    fn emit_you(&mut self, tx: &Tx) {
        // Everyone behind the first removed hand moved up: one pass with a running position.
        let behind_from = tx.hands_from;
        for id in &tx.you {
            let Some(p) = self.participants.get(id) else { continue };
            if let (Some(from), Some(key)) = (behind_from, p.hand_raised)
                && key >= from
            {
                continue; // sent in the pass below
            }
            let you = self.your_state(p, self.hand_position(p));
            self.emit(Recipients::One(id.clone()), Event::You(you));
        }
        if let Some(from) = behind_from {
            let mut position = self.hands_before(from);
            let mut events = Vec::new();
            for id in self.hands.range(from..).map(|(_, id)| id) {
                position = position.saturating_add(1);
                let Some(p) = self.participants.get(id) else { continue };
                events.push((id.clone(), self.your_state(p, Some(sat_u32(position)))));
            }
            for (id, you) in events {
                self.emit(Recipients::One(id), Event::You(you));
            }
        }
    }

    fn emit_publish(&mut self, tx: &Tx) {
        let now = self.publishing();
        self.emit_flags(&tx.publishing_before, now, |who, allowed| Output::Publish { who, allowed });
    }

    fn emit_record(&mut self, tx: &Tx) {
        let now = self.recorded();
        self.emit_flags(&tx.recorded_before, now, |who, recorded| Output::Record { who, recorded });
    }

    /// One output per participant who left the set `before` (`false`) or joined it in `now` (`true`).
    fn emit_flags(
        &mut self,
        before: &[ParticipantId],
        now: Vec<ParticipantId>,
        output: impl Fn(ParticipantId, bool) -> Output,
    ) {
        for id in before {
            if !now.contains(id) {
                self.outputs.push_back(output(id.clone(), false));
            }
        }
        for id in now {
            if !before.contains(&id) {
                self.outputs.push_back(output(id, true));
            }
        }
    }

    fn emit(&mut self, to: Recipients, event: Event) {
        self.outputs.push_back(Output::Event { to, seq: self.seq, event });
    }

    fn emit_stage(&mut self, cause: StageCause) {
        let stage = self.stage();
        self.emit(Recipients::Everyone, Event::Stage { stage, cause });
    }
}
