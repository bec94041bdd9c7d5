//! The pure stage state machine of one Podium room.
//!
//! # What it does
//!
//! [`Room`] holds everything about one live audio room: who is present (connected, or in the grace period after
//! a dropped connection), their roles (moderator, speaker, audience) and token ceilings, the hand queue,
//! invitations to the stage, mutes, bans, the closed-room guest list, settings, the room's description and pinned
//! link ([`RoomInfo`]), raised hands expiring after `hand_ttl`, succession when the last moderator goes, coalesced head counts, and the room's sequence number. **Every rule about who may do what
//! lives here** (the table below) and nowhere else.
//!
//! # What it does not do
//!
//! No IO, no async, no locks, no clock reads, no randomness, no serialisation. It never sees connections or
//! tokens: the hub verifies tokens, routes events to connections, converts to wire types, and stores
//! [`RoomState`] / [`Changes`]. Time is an input (`now`, in [`Millis`], non-decreasing, supplied by the caller).
//! It never panics on any input; a refused input changes nothing and emits nothing.
//!
//! # The run-loop contract
//!
//! Modelled on `quinn-proto` (inputs `handle_*`, outputs `poll_*`, time as a parameter):
//!
//! 1. Feed an input: [`Room::handle_join`], [`Room::handle_command`] (a participant, no reason),
//!    [`Room::handle_command_as`] / [`Room::handle_admin`] (any [`Actor`], with a reason), [`Room::handle_disconnect`],
//!    [`Room::handle_leave`], or [`Room::handle_timeout`].
//! 2. After **every** `handle_*` call, take [`Room::take_changes`] (commit it to the store) and drain
//!    [`Room::poll_output`] until `None`: events with their [`Recipients`], [`Output::Disconnect`] (close that
//!    participant's connection), [`Output::Publish`] (media permission changed), [`Output::Ended`] (close
//!    everyone, drop the room), [`Output::Moderated`] (for the audit log and webhooks only). Recipients are resolved against the room as it is after the call
//!    ([`Room::stage`]).
//! 3. Wait until [`Room::poll_timeout`] (an absolute time; `None`: nothing to wait for) or the next input,
//!    whichever comes first; at the deadline call [`Room::handle_timeout`] and go to 2.
//!
//! A copy of the room that another writer drives (another hub sharing the room through a store) follows it with
//! [`Room::apply_changes`]: the other writer's [`Changes`], applied without re-running the transition and without
//! emitting anything (the writer delivered its events).
//!
//! # Sequence numbers
//!
//! Every accepted input that changes state is one transition: [`Room::seq`] goes up by exactly one and every event
//! of that transition carries the new value (a transition's follow-ups, such as succession, share it). Refused
//! inputs and no-ops (raising a raised hand, muting the muted, ...) change nothing, emit nothing, and keep `seq`.
//! [`Event::Counts`] is coalesced (at most one per `counts_interval`, only when the counts changed since the last
//! one) and carries the current `seq` without incrementing it. One `handle_timeout` call may run several
//! transitions (each expired grace period, invitation or raised hand is its own).
//!
//! # Invariants
//!
//! - Stage size (moderators + speakers, including those in grace) ≤ `stage_capacity`.
//! - Every role ≤ its token ceiling.
//! - The audience is always muted and never publishes; [`Room::may_publish`] is "on stage and not muted".
//! - The hand queue holds audience members whose ceiling allows the stage, each once, in raise order; surviving
//!   entries never change relative order. Invitations likewise exist only for such audience members.
//! - Only a moderator's or an administrator's command changes another participant's role (besides succession,
//!   which follows a moderator leaving).
//! - No present participant's token (its `token_id` and `issued_at`, recorded at join) matches a revocation in
//!   force; there are at most `max_revocations`, each lapsing `revocation_ttl` after it was made.
//! - A persistent room never ends by the empty timeout.
//!
//! # Actors, reasons, persistence, revocation
//!
//! A command comes from an [`Actor`]: a present participant, or an administrator ([`AdminId`]). An administrator
//! is not a side door: it goes through the same rules table, acting as a moderator over every participant (token
//! ceilings, stage capacity, present targets, the last moderator, ...), with these differences: it is never a
//! participant (no seat, not counted, no events; `GetState` answers [`Reply::Room`], a moderator's view without
//! `you`), it may `Kick`/`Ban` a moderator, it cannot send the commands that act on the sender's own state
//! (`Forbidden`), and only it may `Revoke`, `SetPersistent` and `HandoverDelta`. Admin names and identities are
//! separate namespaces: events carry `by: Actor`, never a bare string.
//!
//! Moderation commands (every moderator command except `ListAudience`, plus the administrator's) take an optional
//! [`Reason`]; any other command given one is refused (`BadRequest`), as is a reason over 256 characters or with a
//! control character. The reason is carried in the transition's `Stage` causes and `Ended`, and every accepted
//! moderation command that changed the room ends its outputs with one [`Output::Moderated`] (actor, command,
//! reason), also for commands no participant sees (a ban of an absent identity, the guest list, a revocation).
//!
//! A persistent room ([`RoomConfig::persistent`], [`Room::create`] with a [`RoomSetup`], `SetPersistent`) keeps its
//! settings, bans and guest list while empty and ends only by `EndRoom`.
//!
//! A [`Revocation`] names an identity and/or a token id (`jti`). It refuses a join (`CommandError::Revoked`, code
//! `unauthorized`) whose token it matches: by token id exactly; by identity alone, tokens issued at or before it
//! ([`Join::issued_at`]; a token minted later is accepted). Whoever present it matches is removed at once
//! (`StageCause::Revoked`, [`DisconnectReason::Revoked`]). It lapses `revocation_ttl` after it was made (which
//! must be at least the lifetime of any token the hub accepts), pruned by [`Room::handle_timeout`] as its own
//! transition; a `Revoke` beyond `max_revocations` in force is refused (`Conflict`). Revoking the same
//! identity/token id again refreshes its time. Revocations and the persistent flag are room fields
//! ([`RoomFields`]), so they travel in [`Changes`] and survive [`Room::state`] / [`Room::from_state`].
//! - `Room::from_state(room.state(), config).state() == room.state()`.
//!
//! # Room info and hand expiry
//!
//! [`RoomInfo`] (description, pinned link) is text, so it is not part of the `Copy` [`Settings`] nor of the
//! [`RoomFields`] (which most transitions rewrite: every join moves the order counter): it travels in
//! [`Changes::info`] only in the transition that changed it, and lives in [`RoomState::info`]. A raised hand's
//! deadline is stored with the participant ([`ParticipantState::hand_expires_at`]) and indexed like invitations; it
//! is fixed when the hand goes up and dropped whenever the hand goes down (lowered, approved, promoted, cleared,
//! removed). The raiser sees it in [`YourState::hand_expires_at`]. A room restored under another `hand_ttl` keeps
//! the stored deadlines (a hand stored without one never expires).
//!
//! # Chat and reactions
//!
//! The chat history is room state (see `room/chat.rs`): posts and deletions are transitions, their messages and
//! removed ids travel in [`Changes::chat_added`] / [`Changes::chat_removed`] and the next id in [`RoomFields`], so a
//! store holds exactly the history and writers sharing the room continue one sequence of ids. Slow mode reads the
//! history (a deleted message no longer counts); the flood cap is a token bucket of this copy of the room (not
//! stored), fed by other writers' messages in [`Room::apply_changes`] too. Reactions are not room state:
//! [`Room::may_react`] only checks the sender (present, room not ended); the hub counts them.
//!
//! # Rules
//!
//! Joins ([`Room::handle_join`]) and connection events:
//!
//! | input | who may | preconditions | effect | errors |
//! |---|---|---|---|---|
//! | join (any) | — | checked first: not ended, not banned, no revocation in force matches the token | — | `Ended`, `Banned`, `Revoked` |
//! | join (new identity) | anyone not banned; in a closed room only guests and moderator tokens | role `None`: moderator token and a free seat → Moderator, else Audience. `Some(Audience)` → Audience. `Some(Speaker \| Moderator)`: moderator token, free seat | added, connected; stage members start muted; empty timer stops | `Ended`, `Banned`, `NotInvited`, `Forbidden` (asking for the stage without a moderator token), `StageFull` |
//! | join (identity present, connected or in grace) | same identity (not banned) | none (also in a closed room: they are already in) | takes over the session: connected, grace cleared, name and ceiling from the new token, role clamped down to the ceiling (audience ceiling: hand and invitation dropped); role, mute, hand place and invitation otherwise kept. `Stage` (`Reconnected`) if on stage. `Joined { resumed: true }`. Nothing changed (duplicate connection, same token) → no-op | `Ended`, `Banned` |
//! | disconnect | hub | present and connected (else no-op) | connected = false, grace deadline = now + `grace`; `Stage` (`Disconnected`) if on stage | none |
//! | leave / grace expiry | hub / timer | present (else no-op) | removed from room, queue, invitations; `Stage` (`Left`) if on stage, else `ParticipantLeft` to the stage; queue and positions behind updated; empty room starts the empty timer | none |
//! | invitation expiry | timer | invitation open | cleared; `You` to them; `InviteAnswered { accepted: false, expired: true }` to moderators | none |
//! | hand expiry | timer | hand raised `hand_ttl` ago (deadline fixed at the raise; `hand_ttl` 0: never) | lowered (one transition per hand); `HandLowered { Expired }` and `You` to the raiser; queue updated as for `LowerHand` | none |
//! | empty timeout | timer | not persistent; nobody present for `empty_timeout` | room ends: `Ended { Empty }` | none |
//! | revocation lapse | timer | `until` reached | dropped (one transition, no event) | none |
//! | chat expiry | timer | the oldest chat message is `chat_max_age` old (0: never) | every message that old dropped (one transition, no event) | none |
//!
//! Commands ([`Room::handle_command_as`]). A participant sender must be present (`NotFound` otherwise), and the room
//! not ended (`Ended`). Checks run in the order listed: the sender's role first, then arguments (the reason
//! among them), then the target. "Moderator" below means a moderator or an administrator.
//!
//! | command | who may | preconditions | effect | errors |
//! |---|---|---|---|---|
//! | `RaiseHand` | audience with a ceiling ≥ speaker | not raised (else no-op, replies current place; the deadline is not refreshed) | open mic and a free seat: Speaker at once (`Promoted { by: None }`), `Hand { position: None, promoted: true }`; else appended to the queue, expiring at now + `hand_ttl` (none with 0), `Hand { position, promoted: false }` | `Forbidden` |
//! | `LowerHand` | anyone | raised (else no-op) | leaves the queue; those behind move up | — |
//! | `ApproveHand { target }` | moderator | target present, hand raised, free seat | Speaker, muted, hand and invitation cleared; `Promoted { by }` | `Forbidden`, `NotFound`, `Conflict`, `StageFull` |
//! | `InviteToStage { target }` | moderator | target present, in the audience, ceiling ≥ speaker | invitation created or refreshed, expiring at now + `invite_ttl`; `You` to target | `Forbidden`, `NotFound`, `Conflict` |
//! | `CancelInvite { target }` | moderator | target present with an invitation | cleared; `You` to target | `Forbidden`, `NotFound` |
//! | `AcceptInvite` | invited audience member | invitation open (not past `expires_at`), free seat (else refused, invitation kept) | Speaker, muted, hand cleared; `InviteAccepted`; `InviteAnswered { accepted: true }` to moderators | `NotFound`, `StageFull` |
//! | `DeclineInvite` | invited audience member | invitation open | cleared; `InviteAnswered { accepted: false, expired: false }` to moderators | `NotFound` |
//! | `StepDown` | speaker or moderator | on stage | Audience (muted); `SteppedDown`; succession if it was the last moderator | `Conflict` |
//! | `MoveToAudience { target }` | moderator | target present and a speaker | Audience; `MovedToAudience` | `Forbidden` (also: target is a moderator, "revoke moderator first"), `NotFound`, `Conflict` (target in the audience) |
//! | `SetMuted { muted }` | speaker or moderator (self) | differs (else no-op) | mute state set; `Muted { by: None }` / `Unmuted` | `Forbidden` (audience) |
//! | `Mute { target }` | moderator | target present and on stage; not muted (else no-op) | muted; `Muted { by }`. There is no remote unmute | `Forbidden`, `NotFound`, `Conflict` |
//! | `Kick { target }` | moderator | target ≠ self, present, not a moderator (administrators may) | removed like a leave (`Removed`); `Disconnect { Kicked }`; may rejoin | `Forbidden`, `BadRequest`, `NotFound` |
//! | `Ban { target }` | moderator | target ≠ self; if present, not a moderator (administrators may); not already banned (else no-op) | banned (present or not); if present removed (`Removed`), `Disconnect { Banned }` | `Forbidden`, `BadRequest` |
//! | `Unban { target }` | moderator | banned | ban lifted | `Forbidden`, `NotFound` |
//! | `MakeModerator { target }` | moderator | target present, ceiling = moderator; already moderator → no-op; audience needs a free seat | Moderator (from the audience: onto the stage, muted); `ModeratorGranted` | `Forbidden`, `NotFound`, `StageFull` |
//! | `RevokeModerator { target }` | moderator | target present and a moderator, not the only one | Speaker; `ModeratorRevoked` | `Forbidden`, `NotFound`, `Conflict` ("last moderator") |
//! | `Handover { stage }` | moderator | non-empty; roles speaker/moderator; no duplicates; all present; ceilings allow the roles; len ≤ capacity; same as now → no-op | one transition: unlisted stage members → Audience; listed get their role (newcomers muted, take the stage in list order, hand and invitation cleared; stayers keep mute and stage order); one `Stage` (`Handover`); succession applies after | `Forbidden`, `BadRequest`, `NotFound`, `StageFull` |
//! | `HandoverDelta { demote, promote, moderators_add, moderators_remove }` | administrator | at least one identity listed; `promote` roles speaker/moderator; no identity twice in a list; none both demoted and promoted/added, none both added (or promoted to moderator) and removed; identities not present are skipped and reported (`HandedOver { absent }`); every new role within its ceiling; stage size after the whole change ≤ capacity (a full stage can be swapped in one step); no role changes (or only succession would undo them) → no-op | one transition, all or nothing: `demote` → Audience (muted; audience members listed left as they are); `moderators_remove`: a moderator → Speaker; `promote (id, r)`: role raised to at least `r` (never lowered); `moderators_add` → Moderator. Applied leavers first, then role changes on stage, then newcomers (muted, hand and invitation cleared, taking the stage in list order); one `Stage` (`Handover`); succession applies after | `Forbidden`, `BadRequest`, `StageFull` |
//! | `UpdateSettings { .. }` | moderator | at least one field; capacity in `1..=max_stage_capacity` and ≥ stage size; `chat_slow_mode_ms` ≤ one hour; differs (else no-op) | settings changed; `Settings` to everyone. Turning open mic on does not promote the queue | `Forbidden`, `BadRequest`, `Conflict` |
//! | `SendChat { text }` | anyone present (not an administrator) | text valid ([`ChatMessage::check_text`]: trimmed, 1..=`chat_max_chars` characters, no control characters but newline); chat on; not a moderator: the sender's last message in the history at least `chat_slow_mode_ms` ago; a token in the room's flood cap (`chat_room_per_second`, burst `chat_room_burst`) | message stored with the next id, the history trimmed to `chat_history`; `Chat` to everyone; `ChatSent { message_id }` | `BadRequest`, `Forbidden` (chat off), `RateLimited` (slow mode, flood cap) |
//! | `DeleteChat { message_id }` | its author, or a moderator | the message is in the history | removed; `ChatDeleted { author, by, reason }` to everyone (a moderation command: takes a reason, audited) | `NotFound`, `Forbidden` |
//! | `ChatHistory { before, limit }` | anyone (administrators too) | limit in `1..=chat_page_limit` (default 50, or the limit if lower) | read-only: the page of messages with id < `before`, oldest first; `next_before` the first one's id when older ones exist | `BadRequest` |
//! | `SetRoomInfo { description, pinned_link }` | moderator | at least one given (`Some`); a description ≤ 1,000 characters without control characters other than newline, CR and tab; a link an absolute `http(s)` URL with a host, ≤ 2,048 bytes, no whitespace or control characters, its title ≤ 200 characters without control characters (empty text counts as none); differs (else no-op) | info set (`Some(None)` clears a field, `None` leaves it); `RoomInfo` (the whole info) to everyone | `Forbidden`, `BadRequest` |
//! | `ClearHands` | moderator | a hand raised (else no-op) | every hand lowered in one transition; `HandLowered { Cleared { by, reason } }` and `You` to each raiser, one `HandQueue` to moderators | `Forbidden`, `BadRequest` (reason) |
//! | `StartRecording { id }` | moderator | id 1-64 bytes of `[A-Za-z0-9_-]`; `config.recording` (the hub records at all) and the room recordable; not recording | recording set (`started_at` now, `by` the actor); `Recording(Some)` to everyone; `Record { recorded: true }` for every stage member not opted out | `Forbidden`, `BadRequest`, `Conflict` |
//! | `StopRecording` | moderator | recording | recording cleared; `Recording(None)` to everyone; `Record { recorded: false }` for those recorded | `Forbidden`, `Conflict` |
//! | `SetRecordingOptOut { opt_out }` | anyone (self; not administrators) | differs (else no-op) | flag set; `You`; `Stage` (`RecordingOptOut`) when on stage; `Record` when it changes whether they are recorded | `Forbidden` (administrator) |
//! | `SetRecordable { recordable }` | administrator | differs (else no-op) | flag set (a room created with `RoomSetup::record` false starts unrecordable); `false` stops a running recording (`Recording(None)`) | `Forbidden` |
//! | `InviteToRoom` / `UninviteFromRoom { identity }` | moderator | — (idempotent) | guest list changed | `Forbidden` |
//! | `ListAudience { after, limit }` | moderator | limit in `1..=max_page` | read-only: audience in join order after the cursor; `next` is the last entry's join order, `None` on the last page | `Forbidden`, `BadRequest` |
//! | `GetState` | anyone | — | read-only: [`Snapshot`] (hand queue for moderators only); an administrator gets [`RoomView`] | — |
//! | `EndRoom` | moderator | — | room ends: `Publish { allowed: false }` for anyone publishing, `Ended { ByModerator }`; every later input → `Ended` | `Forbidden` |
//! | `Revoke { identity, token_id }` | administrator | at least one; each 1-128 bytes, no control characters; fewer than `max_revocations` others in force; same entry at the same time → no-op | revocation recorded (lapsed ones pruned, an earlier one for the same identity/token id replaced); matching participants removed (`Revoked`), `Disconnect { Revoked }` | `Forbidden`, `BadRequest`, `Conflict` |
//! | `SetPersistent { persistent }` | administrator | differs (else no-op) | flag set; no event | `Forbidden` |
//!
//! After every transition:
//!
//! - **Succession**: if the stage had a moderator before and has none after, the longest-serving speaker whose
//!   ceiling is moderator becomes moderator (same `seq`, `Stage` with `Succession`). Without such a speaker the
//!   room runs on unmoderated; a moderator token joining later takes the stage as moderator if a seat is free.
//! - **Hand queue**: if it changed, `HandQueue` (first `hand_queue_event_limit` entries and the total) to the
//!   moderators, and `You` to everyone whose place moved. A participant who just became moderator while the
//!   queue did not change gets the queue (`HandQueue` to `One`).
//! - **You**: one `You` to each participant whose own state (role, ceiling, mute, hand place, invitation)
//!   changed.
//! - **Publish**: `Publish` for everyone whose [`Room::may_publish`] changed (including `false` on leaving).
//! - **Record**: `Record` for everyone whose [`Room::is_recorded`] changed (the room records, on stage, not opted
//!   out; `false` on leaving the stage, opting out, the recording stopping or the room ending). The room's end
//!   clears the recording without a `Recording` event (everyone is disconnected).
//! - **Counts**: if the head counts differ from the last ones sent, a flush is scheduled `counts_interval` later.

#![warn(missing_docs)]

mod command;
#[doc(hidden)]
pub mod conformance;
mod event;
mod room;
mod state;
mod types;

pub use command::{AudienceEntry, AudiencePage, ChatPage, Command, CommandError, Join, Joined, Reply};
pub use event::{
    DisconnectReason, EndReason, Event, HandLowered, InviteView, Output, ParticipantSummary, ParticipantView,
    Recipients, RoomView, Snapshot, StageCause, StageMember, YourState,
};
pub use room::{Room, RoomSetup};
pub use state::{Changes, Invite, ParticipantState, Revocation, RoomFields, RoomState};
pub use types::{
    Actor, AdminId, ChatMessage, Counts, Millis, ParticipantId, PinnedLink, Reason, Recording, Role, RoomConfig,
    RoomInfo, Settings,
};

#[cfg(test)]
mod tests;
