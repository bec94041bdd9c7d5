//! Identities, roles, configuration and the small value types shared by inputs, outputs and stored state.

use std::fmt;
use std::sync::Arc;

/// Milliseconds on the caller's clock (Podium uses milliseconds since the Unix epoch). The room never reads a clock:
/// every input carries `now`, and the caller keeps it non-decreasing.
pub type Millis = u64;

/// A participant's identity, as given by their access token. Cheap to clone (shared string).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ParticipantId(Arc<str>);

impl ParticipantId {
    /// Wraps an identity.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self(id.into())
    }

    /// The identity as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An administrator's name (from an admin API key or an admin-grant token). Not a participant: it holds no seat, is
/// not counted and receives no events. Admin names and participant identities are separate namespaces: an `AdminId`
/// and a `ParticipantId` with the same text are different actors (see [`Actor`]).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct AdminId(Arc<str>);

impl AdminId {
    /// Wraps an admin name.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self(id.into())
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AdminId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who sent a command: a participant in the room, or an administrator acting on it from outside.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum Actor {
    /// A present participant (a moderator, for moderation commands).
    Participant(ParticipantId),
    /// An administrator: moderator powers over every participant, but not a participant.
    Admin(AdminId),
}

impl Actor {
    /// The participant, when the actor is one.
    pub fn participant(&self) -> Option<&ParticipantId> {
        match self {
            Self::Participant(id) => Some(id),
            Self::Admin(_) => None,
        }
    }

    /// True for administrators.
    pub fn is_admin(&self) -> bool {
        matches!(self, Self::Admin(_))
    }

    /// A label for logs, webhooks and the audit log: the participant's identity, or `admin:<name>` (no identity
    /// can be mistaken for it: identities are checked by the hub, and an admin is never a participant).
    pub fn label(&self) -> String {
        match self {
            Self::Participant(id) => id.as_str().to_owned(),
            Self::Admin(admin) => format!("admin:{admin}"),
        }
    }
}

impl From<ParticipantId> for Actor {
    fn from(id: ParticipantId) -> Self {
        Self::Participant(id)
    }
}

impl From<AdminId> for Actor {
    fn from(id: AdminId) -> Self {
        Self::Admin(id)
    }
}

/// Why a moderator or administrator did something: free text for the audit log, webhooks and the people affected.
/// At most [`Reason::MAX_CHARS`] characters, no control characters. Cheap to clone (shared string).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Reason(Arc<str>);

impl Reason {
    /// The longest reason accepted, in characters.
    pub const MAX_CHARS: usize = 256;

    /// Checks and wraps a reason: `Err` (`BadRequest`) when it is longer than [`Reason::MAX_CHARS`] characters or
    /// holds a control character. An empty reason counts as none (`Ok(None)`).
    pub fn parse(text: &str) -> Result<Option<Self>, crate::CommandError> {
        if text.chars().any(char::is_control) {
            return Err(crate::CommandError::BadRequest("reason must not contain control characters"));
        }
        if text.chars().count() > Self::MAX_CHARS {
            return Err(crate::CommandError::BadRequest("reason must be at most 256 characters"));
        }
        Ok((!text.is_empty()).then(|| Self(text.into())))
    }

    /// The reason as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A participant's role in the room, ordered by power: `Audience < Speaker < Moderator`.
///
/// The same type is used for a token's *ceiling* (the highest role its holder may ever have in the room).
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Role {
    /// Listens; may raise a hand if the token allows the stage.
    Audience,
    /// On stage; may publish audio when not muted.
    Speaker,
    /// On stage; runs the room.
    Moderator,
}

impl Role {
    /// True for speakers and moderators (the stage).
    pub const fn on_stage(self) -> bool {
        !matches!(self, Self::Audience)
    }
}

/// Configuration of a room: its initial settings, limits and timers. Settings (`stage_capacity`, `open_mic`,
/// `closed`) are only the starting values of a new room; moderators change them and they are stored with the room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomConfig {
    /// Seats on the stage (moderators plus speakers, including those in their grace period). Default 13.
    pub stage_capacity: u32,
    /// The largest `stage_capacity` a moderator may set. Default 100.
    pub max_stage_capacity: u32,
    /// Whether a raised hand is promoted at once while a seat is free. Default false.
    pub open_mic: bool,
    /// Whether only guests (and moderator tokens) may join. Default false.
    pub closed: bool,
    /// How long an invitation to the stage stays open. Default 60 s.
    pub invite_ttl: Millis,
    /// How long a dropped connection keeps its participant's state. Default 30 s.
    pub grace: Millis,
    /// How long a room with nobody in it lives before it ends. Default 5 min.
    pub empty_timeout: Millis,
    /// Head counts are sent at most once per this interval. Default 1 s.
    pub counts_interval: Millis,
    /// A hand queue event carries at most this many entries (plus the total). Default 100.
    pub hand_queue_event_limit: usize,
    /// The largest page `ListAudience` returns. Default 200.
    pub max_page: usize,
    /// Whether a new room is persistent: never ended by the empty timeout, only by `EndRoom`. Default false.
    pub persistent: bool,
    /// How long a revocation is kept: the longest lifetime (issue to expiry) of a token the hub accepts. After it,
    /// no token the revocation could refuse is still valid, so it is dropped. Default 24 h.
    pub revocation_ttl: Millis,
    /// The most revocations a room holds at once; a `Revoke` beyond it is refused (`Conflict`). Default 256.
    pub max_revocations: usize,
    /// How long a raised hand stays up before the room lowers it (`HandLowered { Expired }` to the raiser).
    /// Counted from the raise; raising again after the hand went down starts a new period. 0: hands never expire.
    /// Default 15 min.
    pub hand_ttl: Millis,
    /// Whether chat is on in a new room (a setting moderators change). Default true.
    pub chat: bool,
    /// Slow mode of a new room: how long a participant who is not a moderator waits between chat messages (a
    /// setting moderators change, at most [`Settings::MAX_CHAT_SLOW_MODE_MS`]). 0: off. Default 0.
    pub chat_slow_mode_ms: u32,
    /// The longest chat message, in characters after trimming. Default 500.
    pub chat_max_chars: usize,
    /// The most chat messages a room keeps; the oldest go first. Default 1,000.
    pub chat_history: usize,
    /// How long a chat message is kept. 0: by count only. Default 7 days.
    pub chat_max_age: Millis,
    /// How many of the last chat messages a snapshot carries. Default 50.
    pub chat_snapshot: usize,
    /// The largest page `ChatHistory` returns. Default 100.
    pub chat_page_limit: usize,
    /// The room-wide flood cap: chat messages per second, sustained (over every sender). Default 20.
    pub chat_room_per_second: u32,
    /// The room-wide flood cap's burst. Default 40.
    pub chat_room_burst: u32,
    /// Whether this hub records rooms at all (`[recording] enabled`): without it `StartRecording` is refused
    /// (`Forbidden`). Default false.
    pub recording: bool,
}

impl Default for RoomConfig {
    fn default() -> Self {
        Self {
            stage_capacity: 13,
            max_stage_capacity: 100,
            open_mic: false,
            closed: false,
            invite_ttl: 60_000,
            grace: 30_000,
            empty_timeout: 300_000,
            counts_interval: 1_000,
            hand_queue_event_limit: 100,
            max_page: 200,
            persistent: false,
            revocation_ttl: 24 * 3_600_000,
            max_revocations: 256,
            hand_ttl: 15 * 60_000,
            chat: true,
            chat_slow_mode_ms: 0,
            chat_max_chars: 500,
            chat_history: 1_000,
            chat_max_age: 7 * 24 * 3_600_000,
            chat_snapshot: 50,
            chat_page_limit: 100,
            chat_room_per_second: 20,
            chat_room_burst: 40,
            recording: false,
        }
    }
}

/// The settings a moderator may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Settings {
    /// Raised hands are promoted at once while a seat is free.
    pub open_mic: bool,
    /// Only guests (and moderator tokens) may join.
    pub closed: bool,
    /// Seats on the stage.
    pub stage_capacity: u32,
    /// Chat is on: participants may post.
    pub chat: bool,
    /// Slow mode: how long a participant who is not a moderator waits between chat messages, in ms (0: off).
    pub chat_slow_mode_ms: u32,
}

impl Settings {
    /// The longest slow mode a moderator may set: one hour.
    pub const MAX_CHAT_SLOW_MODE_MS: u32 = 3_600_000;
}

/// One chat message. Values held by a room have passed [`ChatMessage::check_text`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChatMessage {
    /// The room's id for it: ids only grow within a room (the room's counter, committed with the message, so
    /// every writer sharing the room through a store continues the same sequence).
    pub id: u64,
    /// Who posted it.
    pub from: ParticipantId,
    /// Their display name at the time.
    pub name: String,
    /// The text, trimmed, never empty.
    pub text: String,
    /// When it was accepted.
    pub at: Millis,
}

impl ChatMessage {
    /// Checks a message's text: trimmed of surrounding whitespace, it must be 1..=`max_chars` characters without
    /// control characters other than newline; `BadRequest` naming what is wrong. Returns the trimmed text.
    pub fn check_text(text: &str, max_chars: usize) -> Result<String, crate::CommandError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(crate::CommandError::BadRequest("chat text must not be empty"));
        }
        if text.chars().any(|c| c.is_control() && c != '\n') {
            return Err(crate::CommandError::BadRequest(
                "chat text must not contain control characters other than newlines",
            ));
        }
        if text.chars().count() > max_chars {
            return Err(crate::CommandError::BadRequest("chat text is too long"));
        }
        Ok(text.to_owned())
    }
}

/// The room's description and pinned link, set by moderators (`SetRoomInfo`): shown to everyone, in the snapshot
/// and as `RoomInfo` events. Kept apart from the small `Copy` [`Settings`] (it holds text, and is stored and
/// replicated only when it changes). Values held here have passed [`RoomInfo::check_description`] and
/// [`PinnedLink::new`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RoomInfo {
    /// Plain text, at most [`RoomInfo::MAX_DESCRIPTION_CHARS`] characters; newlines (and tabs) allowed, no other
    /// control characters. Never empty (an empty description is none).
    pub description: Option<String>,
    /// A link pinned for everyone.
    pub pinned_link: Option<PinnedLink>,
}

impl RoomInfo {
    /// The longest description, in characters.
    pub const MAX_DESCRIPTION_CHARS: usize = 1_000;

    /// Checks a description: `Ok(None)` for an empty one (it clears), `BadRequest` when it is longer than
    /// [`RoomInfo::MAX_DESCRIPTION_CHARS`] characters or holds a control character other than newline, carriage
    /// return and tab.
    pub fn check_description(text: String) -> Result<Option<String>, crate::CommandError> {
        if text.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
            return Err(crate::CommandError::BadRequest(
                "description must not contain control characters other than newlines and tabs",
            ));
        }
        if text.chars().count() > Self::MAX_DESCRIPTION_CHARS {
            return Err(crate::CommandError::BadRequest("description must be at most 1000 characters"));
        }
        Ok((!text.is_empty()).then_some(text))
    }
}

/// A link pinned in a room: an absolute `http` or `https` URL and an optional title. Build with [`PinnedLink::new`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PinnedLink {
    /// The URL: `http://` or `https://` (scheme in any case), a non-empty host, at most
    /// [`PinnedLink::MAX_URL_BYTES`] bytes, no whitespace or control characters (percent-encode them).
    pub url: String,
    /// Text to show for it, at most [`PinnedLink::MAX_TITLE_CHARS`] characters, no control characters; never empty.
    pub title: Option<String>,
}

impl PinnedLink {
    /// The longest URL, in bytes.
    pub const MAX_URL_BYTES: usize = 2_048;
    /// The longest title, in characters.
    pub const MAX_TITLE_CHARS: usize = 200;

    /// Checks and builds a pinned link (an empty title counts as none); `BadRequest` naming what is wrong.
    pub fn new(url: String, title: Option<String>) -> Result<Self, crate::CommandError> {
        use crate::CommandError::BadRequest;
        if url.len() > Self::MAX_URL_BYTES {
            return Err(BadRequest("pinned link URL must be at most 2048 bytes"));
        }
        if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(BadRequest("pinned link URL must not contain whitespace or control characters"));
        }
        let rest = ["http://", "https://"].iter().find_map(|scheme| {
            url.get(..scheme.len()).filter(|s| s.eq_ignore_ascii_case(scheme)).map(|_| &url[scheme.len()..])
        });
        let Some(rest) = rest else {
            return Err(BadRequest("pinned link URL must be an absolute http:// or https:// URL"));
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = authority.rsplit('@').next().unwrap_or_default();
        if host.is_empty() || host.starts_with(':') {
            return Err(BadRequest("pinned link URL must name a host"));
        }
        let title = match title {
            Some(t) if t.chars().any(char::is_control) => {
                return Err(BadRequest("pinned link title must not contain control characters"));
            }
            Some(t) if t.chars().count() > Self::MAX_TITLE_CHARS => {
                return Err(BadRequest("pinned link title must be at most 200 characters"));
            }
            Some(t) if t.is_empty() => None,
            t => t,
        };
        Ok(Self { url, title })
    }
}

/// A recording in progress (`StartRecording`). The id comes from the caller (the room draws no random numbers):
/// the hub makes one per recording.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Recording {
    /// The recording's id (`rec_...`), also its replay's.
    pub id: String,
    /// When it started.
    pub started_at: Millis,
    /// Who started it.
    pub by: Actor,
}

impl Recording {
    /// The longest id accepted, in bytes.
    pub const MAX_ID_BYTES: usize = 64;

    /// Checks an id: 1 to [`Recording::MAX_ID_BYTES`] bytes of ASCII letters, digits, `_` and `-` (it names files).
    pub fn check_id(id: &str) -> Result<(), crate::CommandError> {
        if id.is_empty()
            || id.len() > Self::MAX_ID_BYTES
            || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(crate::CommandError::BadRequest("recording id must be 1-64 letters, digits, _ or -"));
        }
        Ok(())
    }
}

/// Head counts. Participants in their grace period count as present.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Counts {
    /// Moderators plus speakers.
    pub stage: u32,
    /// Everyone else.
    pub audience: u32,
    /// Raised hands.
    pub hands: u32,
    /// Everyone present.
    pub total: u32,
}

/// `usize` to `u32`, saturating (counts and positions beyond 4 billion are not a real concern, but must not wrap).
pub(crate) fn sat_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// `u32` to `usize`, saturating (only relevant on 16-bit targets).
pub(crate) fn sat_usize(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}
