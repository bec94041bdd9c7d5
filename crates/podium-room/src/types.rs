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
