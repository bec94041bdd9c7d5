//! Websocket close codes the hub uses.

/// Why the hub closed a connection: the websocket close frame's code, with the snake_case name as its reason text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseCode {
    /// 1000: the client sent `leave`.
    Normal,
    /// 1002: the client broke the websocket protocol (an unmasked frame, reserved bits set, an unknown opcode, a
    /// control frame over 125 bytes or fragmented, a continuation frame with nothing to continue).
    ProtocolError,
    /// 1007: a text message was not valid UTF-8.
    InvalidPayload,
    /// 1009: a frame exceeded the hard frame limit, so the stream could not continue.
    MessageTooBig,
    /// 4000: the token was missing, forged, expired or for another room.
    BadAuth,
    /// 4001: no `join` arrived within the auth timeout.
    AuthTimeout,
    /// 4002: no protocol version in common.
    UnsupportedProtocol,
    /// 4003: another connection joined with the same identity and took over the session.
    DuplicateIdentity,
    /// 4004: a moderator removed you; you may join again.
    Removed,
    /// 4005: you are banned from this room.
    Banned,
    /// 4006: the room ended.
    RoomEnded,
    /// 4007: the hub is shutting down; reconnect (to another node) and resume.
    ServerShutdown,
    /// 4008: nothing was heard from the client within the heartbeat timeout.
    HeartbeatTimeout,
    /// 4009: the room is closed and you are not on its guest list.
    NotInvited,
    /// 4010: the client read too slowly and the hub could not keep its queue bounded.
    SlowConsumer,
    /// 4011: the hub could not serve the room (its room task failed or its store is unreachable); reconnect and resume.
    Unavailable,
    /// 4012: an administrator revoked your identity or token in this room.
    Revoked,
}

impl CloseCode {
    /// The numeric websocket close code.
    pub fn code(self) -> u16 {
        match self {
            Self::Normal => 1000,
            Self::ProtocolError => 1002,
            Self::InvalidPayload => 1007,
            Self::MessageTooBig => 1009,
            Self::BadAuth => 4000,
            Self::AuthTimeout => 4001,
            Self::UnsupportedProtocol => 4002,
            Self::DuplicateIdentity => 4003,
            Self::Removed => 4004,
            Self::Banned => 4005,
            Self::RoomEnded => 4006,
            Self::ServerShutdown => 4007,
            Self::HeartbeatTimeout => 4008,
            Self::NotInvited => 4009,
            Self::SlowConsumer => 4010,
            Self::Unavailable => 4011,
            Self::Revoked => 4012,
        }
    }

    /// The reason text sent in the close frame.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Normal => "leave",
            Self::ProtocolError => "protocol_error",
            Self::InvalidPayload => "invalid_utf8",
            Self::MessageTooBig => "too_large",
            Self::BadAuth => "bad_auth",
            Self::AuthTimeout => "auth_timeout",
            Self::UnsupportedProtocol => "unsupported_protocol",
            Self::DuplicateIdentity => "duplicate_identity",
            Self::Removed => "removed",
            Self::Banned => "banned",
            Self::RoomEnded => "room_ended",
            Self::ServerShutdown => "server_shutdown",
            Self::HeartbeatTimeout => "heartbeat_timeout",
            Self::NotInvited => "not_invited",
            Self::SlowConsumer => "slow_consumer",
            Self::Unavailable => "unavailable",
            Self::Revoked => "revoked",
        }
    }

    /// Looks a numeric code up.
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.code() == code)
    }

    /// Every close code, for documentation and tests.
    pub const ALL: &'static [Self] = &[
        Self::Normal,
        Self::ProtocolError,
        Self::InvalidPayload,
        Self::MessageTooBig,
        Self::BadAuth,
        Self::AuthTimeout,
        Self::UnsupportedProtocol,
        Self::DuplicateIdentity,
        Self::Removed,
        Self::Banned,
        Self::RoomEnded,
        Self::ServerShutdown,
        Self::HeartbeatTimeout,
        Self::NotInvited,
        Self::SlowConsumer,
        Self::Unavailable,
        Self::Revoked,
    ];
}
