//! Podium's wire protocol, version 1: every message a client and the hub exchange over the websocket, and every
//! error and close code.
//!
//! This crate is the only place with client-facing `serde` types. It does no IO and knows nothing about rooms'
//! rules; `podium-hub` converts between these types and `podium-room`'s domain types. The JSON Schemas in
//! `proto/schema/` are generated from these types, and a test fails when they drift.
//!
//! Shape of the protocol (see `proto/PROTOCOL.md` for the full catalogue with examples):
//! - Every client message is a JSON text frame with a `type` and an `id` ([`ClientMessage`]).
//! - Every request gets exactly one reply with the same `id`: [`ServerMessage::Ok`] or [`ServerMessage::Error`].
//! - The hub pushes events ([`ServerMessage`]'s other variants); each carries the room's sequence number `seq`.
//! - The connection ends with a websocket close frame whose code is a [`CloseCode`].

#![warn(missing_docs)]

mod client;
mod close;
mod decode;
mod error;
mod server;
pub mod webhook;

pub use client::{ClientMessage, Envelope, JoinRequest, Request, RequestId, StageAssignment};
pub use close::CloseCode;
pub use decode::{DecodeError, MAX_ID_BYTES, decode_client, request_id};
pub use error::ErrorCode;
pub use server::{
    AudienceEntry, AudiencePage, ChatMessage, ChatPage, Counts, HandLoweredCause, HandQueue, IceServer, IceServers,
    Invite, Limits, MediaState, MediaTrack, Participant, PinnedLink, ReactionsInfo, RecordingState, Reply, RoomInfo,
    RoomSettings, RoomSnapshot, ScheduleView, ScheduledPerson, ScheduledSlot, ServerMessage, Speaking, StageCause,
    StageMember, Welcome, YourState,
};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The protocol versions this build speaks, oldest first.
pub const SUPPORTED_VERSIONS: &[u32] = &[1];

/// The newest protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Picks the newest version both sides speak, or `None` when they share none.
pub fn negotiate(client_versions: &[u32]) -> Option<u32> {
    SUPPORTED_VERSIONS.iter().rev().find(|v| client_versions.contains(v)).copied()
}

/// A participant's role in a room.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Listens; may raise a hand.
    Audience,
    /// On the stage; may be heard.
    Speaker,
    /// On the stage; conducts the room.
    Moderator,
}

impl Role {
    /// The snake_case name used on the wire and in tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Audience => "audience",
            Self::Speaker => "speaker",
            Self::Moderator => "moderator",
        }
    }
}

/// The JSON Schema of every message a client may send.
pub fn client_schema() -> schemars::Schema {
    schemars::schema_for!(ClientMessage)
}

/// The JSON Schema of every message the hub may send.
pub fn server_schema() -> schemars::Schema {
    schemars::schema_for!(ServerMessage)
}

pub use webhook::webhook_schema;

#[cfg(test)]
mod tests;
