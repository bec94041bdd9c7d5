//! Chat and reactions: the rules for posting, deleting and reading chat messages, the room's chat history, and who
//! may react.
//!
//! The history is part of the room ([`RoomState::chat`](crate::RoomState::chat)): a map by id, trimmed to
//! `chat_history` messages (the oldest go first) and to `chat_max_age` (a timer, see [`Room::handle_timeout`]).
//! Every post and deletion is a transition: the message (or the removed ids) travel in [`Changes`](crate::Changes)
//! (`chat_added`, `chat_removed`), and the next id in the room's fields, so a store keeps exactly the room's
//! history and every writer sharing the room continues one sequence of ids. Slow mode reads the sender's last
//! message from the history (a deleted or trimmed message no longer counts). The room-wide flood cap is a token
//! bucket in this copy of the room (not stored): messages another writer committed take tokens from it too
//! ([`Room::apply_changes`]), so the cap holds across writers up to what they post at the same instant.
//!
//! Reactions are not room state: [`Room::may_react`] is the rules check, the hub counts them.

use super::Room;
use crate::command::{ChatPage, CommandError, Reply};
use crate::event::{Event, Recipients};
use crate::room::commands::Act;
use crate::types::{ChatMessage, Millis, ParticipantId, Role};

type Outcome = Result<Reply, CommandError>;

/// The page `ChatHistory` returns when it names no limit (or the page limit, if lower).
const DEFAULT_CHAT_PAGE: usize = 50;

impl Room {
    /// Whether `who` may react now: present in the room, and the room not ended (`NotFound`, `Ended`). Reactions
    /// are not room state: nothing changes, and the hub counts accepted ones.
    pub fn may_react(&self, who: &ParticipantId) -> Result<(), CommandError> {
        if self.ended {
            return Err(CommandError::Ended);
        }
        if !self.participants.contains_key(who) {
            return Err(CommandError::NotFound("you are not in this room"));
        }
        Ok(())
    }

    /// The room's chat history, oldest first.
    pub fn chat(&self) -> impl Iterator<Item = &ChatMessage> {
        self.chat.values()
    }

    /// Up to `limit` messages with an id below `before` (all when `None`), oldest first, and whether older ones
    /// exist.
    pub(super) fn chat_tail(&self, before: Option<u64>, limit: usize) -> (Vec<ChatMessage>, bool) {
        let range = self.chat.range(..before.unwrap_or(u64::MAX));
        let mut page: Vec<ChatMessage> = range.rev().take(limit.saturating_add(1)).map(|(_, m)| m.clone()).collect();
        let more = page.len() > limit;
        page.truncate(limit);
        page.reverse();
        (page, more)
    }

    /// The earliest time a chat message becomes too old (`None`: no messages, or no age limit).
    pub(super) fn chat_expiry(&self) -> Option<Millis> {
        if self.config.chat_max_age == 0 {
            return None;
        }
        self.chat.first_key_value().map(|(_, m)| m.at.saturating_add(self.config.chat_max_age))
    }

    /// Drops messages past `chat_max_age` at `now` and, beyond `keep`, the oldest; records them for the store.
    /// The caller runs a transition.
    pub(super) fn trim_chat(&mut self, now: Millis, keep: usize) {
        let max_age = self.config.chat_max_age;
        while let Some((&id, m)) = self.chat.first_key_value() {
            let too_old = max_age > 0 && m.at.saturating_add(max_age) <= now;
            if !too_old && self.chat.len() <= keep {
                break;
            }
            self.chat.remove(&id);
            self.chat_removed.push(id);
        }
    }

    /// Whether the chat history holds messages that are too old at `now`.
    pub(super) fn chat_expired(&self, now: Millis) -> bool {
        self.chat_expiry().is_some_and(|at| at <= now)
    }

    /// Refills the flood cap's bucket to `now` and takes one token if there is one.
    pub(super) fn take_chat_token(&mut self, now: Millis) -> bool {
        let per_second = u64::from(self.config.chat_room_per_second);
        let cap = u64::from(self.config.chat_room_burst).saturating_mul(1_000);
        let elapsed = now.saturating_sub(self.chat_refilled_at);
        self.chat_refilled_at = self.chat_refilled_at.max(now);
        self.chat_tokens = self.chat_tokens.saturating_add(elapsed.saturating_mul(per_second)).min(cap);
        if self.chat_tokens >= 1_000 {
            self.chat_tokens -= 1_000;
            true
        } else {
            false
        }
    }

    pub(super) fn send_chat(&mut self, now: Millis, from: &ParticipantId, role: Role, text: &str) -> Outcome {
        let text = ChatMessage::check_text(text, self.config.chat_max_chars)?;
        if !self.settings.chat {
            return Err(CommandError::Forbidden("chat is off in this room"));
        }
        let slow = Millis::from(self.settings.chat_slow_mode_ms);
        if slow > 0 && role != Role::Moderator {
            let last = self.chat.values().rev().find(|m| &m.from == from).map(|m| m.at);
            if last.is_some_and(|at| now < at.saturating_add(slow)) {
                return Err(CommandError::RateLimited("slow mode: wait before sending another message"));
            }
        }
        let name = self.participants.get(from).map(|p| p.name.clone()).unwrap_or_default();
        if !self.take_chat_token(now) {
            return Err(CommandError::RateLimited("too many chat messages in this room; try again shortly"));
        }
        let tx = self.begin();
        let id = self.next_chat_id;
        self.next_chat_id = id.saturating_add(1);
        self.fields_dirty = true;
        let message = ChatMessage { id, from: from.clone(), name, text, at: now };
        self.chat.insert(id, message.clone());
        self.chat_added.push(message.clone());
        self.trim_chat(now, self.config.chat_history.max(1));
        self.emit(Recipients::Everyone, Event::Chat(message));
        self.finish(now, tx);
        Ok(Reply::ChatSent { message_id: id })
    }

    pub(super) fn delete_chat(&mut self, now: Millis, act: &Act, message_id: u64) -> Outcome {
        let Some(message) = self.chat.get(&message_id) else {
            return Err(CommandError::NotFound("no such chat message"));
        };
        let own = act.participant() == Some(&message.from);
        if !own && act.role != Role::Moderator {
            return Err(CommandError::Forbidden("only moderators may delete others' messages"));
        }
        let author = message.from.clone();
        let tx = self.begin();
        self.chat.remove(&message_id);
        self.chat_removed.push(message_id);
        let event = Event::ChatDeleted { message_id, author, by: act.by.clone(), reason: act.reason.clone() };
        self.emit(Recipients::Everyone, event);
        self.finish(now, tx);
        Ok(Reply::Done)
    }

    pub(super) fn chat_history(&self, before: Option<u64>, limit: Option<usize>) -> Outcome {
        let limit = limit.unwrap_or(DEFAULT_CHAT_PAGE.min(self.config.chat_page_limit));
        if limit == 0 || limit > self.config.chat_page_limit {
            return Err(CommandError::BadRequest("limit out of range"));
        }
        let (messages, more) = self.chat_tail(before, limit);
        let next_before = if more { messages.first().map(|m| m.id) } else { None };
        Ok(Reply::Chat(ChatPage { messages, next_before }))
    }
}
