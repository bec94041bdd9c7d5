//! Error codes carried by `error` replies.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A stable, documented error code. Clients match on these, never on the message text.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The message is not valid JSON, lacks `type` or `id`, has wrong field types, or is a binary frame.
    BadRequest,
    /// The `type` is not one this protocol version knows.
    UnknownType,
    /// No valid token: missing, forged, expired, or for another room; or a request before `join`.
    Unauthorized,
    /// Your role (or the target's token) does not allow this.
    Forbidden,
    /// The participant, invitation or room does not exist.
    NotFound,
    /// The room's state does not allow this now (e.g. the target is not on stage; already joined).
    Conflict,
    /// Every stage seat is taken.
    StageFull,
    /// Too many requests; slow down (see `limits` in `welcome`).
    RateLimited,
    /// The frame is larger than `limits.max_message_bytes`.
    TooLarge,
    /// The hub cannot serve this now (overloaded, shutting down, or its store is unreachable); retry later.
    Unavailable,
    /// Join refused: this identity is banned from the room.
    Banned,
    /// Join refused: the room is closed and this identity is not on its guest list.
    NotInvited,
    /// The room has ended.
    RoomEnded,
    /// Join refused: no protocol version in common.
    UnsupportedProtocol,
    /// A bug in the hub; the request did not take effect.
    Internal,
}

impl ErrorCode {
    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::UnknownType => "unknown_type",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::StageFull => "stage_full",
            Self::RateLimited => "rate_limited",
            Self::TooLarge => "too_large",
            Self::Unavailable => "unavailable",
            Self::Banned => "banned",
            Self::NotInvited => "not_invited",
            Self::RoomEnded => "room_ended",
            Self::UnsupportedProtocol => "unsupported_protocol",
            Self::Internal => "internal",
        }
    }

    /// Every code, for documentation and tests.
    pub const ALL: &'static [Self] = &[
        Self::BadRequest,
        Self::UnknownType,
        Self::Unauthorized,
        Self::Forbidden,
        Self::NotFound,
        Self::Conflict,
        Self::StageFull,
        Self::RateLimited,
        Self::TooLarge,
        Self::Unavailable,
        Self::Banned,
        Self::NotInvited,
        Self::RoomEnded,
        Self::UnsupportedProtocol,
        Self::Internal,
    ];
}
