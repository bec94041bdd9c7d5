//! Access tokens: JWTs signed with HS256 that say who the holder is, which room they may join, and the highest role
//! they may hold there.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use podium_proto::Role;
use serde::{Deserialize, Serialize};

/// The room claim that admits its holder to any room.
pub const ANY_ROOM: &str = "*";

/// Longest identity accepted, in bytes.
pub const MAX_IDENTITY_BYTES: usize = 128;
/// Longest display name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Identities starting with this are the hub's virtual speakers (`~filler`): no token may claim one.
pub const RESERVED_IDENTITY_PREFIX: char = '~';

/// Longest room name accepted, in bytes.
pub const MAX_ROOM_BYTES: usize = 128;

/// The claims of a Podium access token.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// The identity: unique per person within a room.
    pub sub: String,
    /// Display name; defaults to `sub`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The room this token admits to, or `*` for any room.
    pub room: String,
    /// The highest role the holder may have.
    pub role: Role,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Not valid before, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Token id: a revocation may name it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

/// What a verified token grants for one join.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The identity.
    pub identity: String,
    /// The display name.
    pub name: String,
    /// The room being joined.
    pub room: String,
    /// The role ceiling.
    pub ceiling: Role,
    /// The token's id (`jti`), when it has one.
    pub token_id: Option<String>,
    /// When the token was issued, seconds since the Unix epoch: the later of `iat` and `nbf` (0 with neither).
    pub issued_at: u64,
}

/// Why a token was refused.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// The signature does not verify, or the token is not a well-formed JWT.
    #[error("invalid token: {0}")]
    Invalid(&'static str),
    /// The token has expired.
    #[error("token expired")]
    Expired,
    /// The token's `nbf` is in the future.
    #[error("token not valid yet (its nbf is in the future)")]
    NotYetValid,
    /// The token is for another room.
    #[error("token is for another room")]
    WrongRoom,
    /// No room was named and the token is valid for any room.
    #[error("the token is valid for any room, so `room` is required")]
    RoomRequired,
    /// The identity, name or room name breaks a size or character rule.
    #[error("{0}")]
    BadClaim(&'static str),
}

/// What is wrong with a token, in words of our own: the JWT library's error text names its Rust types
/// (`InvalidSignature`) and must not reach clients.
fn token_problem(kind: &jsonwebtoken::errors::ErrorKind) -> &'static str {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::InvalidSignature => "the signature does not verify",
        K::InvalidAlgorithm | K::MissingAlgorithm | K::InvalidAlgorithmName | K::UnsupportedAlgorithm => {
            "the token must be signed with HS256"
        }
        K::MissingRequiredClaim(_) => "a required claim (sub, exp) is missing",
        K::InvalidClaimFormat(_) | K::Json(_) | K::Utf8(_) => "the claims are not well-formed",
        K::ExpiredSignature => "the token has expired",
        K::ImmatureSignature => "the token is not valid yet",
        _ => "it is not a well-formed JWT",
    }
}

/// Signs and verifies tokens with one shared secret.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(..)")
    }
}

impl TokenKeys {
    /// Keys from the shared HS256 secret.
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self { encoding: EncodingKey::from_secret(secret), decoding: DecodingKey::from_secret(secret), validation }
    }

    /// Mints a token.
    pub fn mint(&self, claims: &Claims) -> Result<String, AuthError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| AuthError::Invalid(token_problem(e.kind())))
    }

    /// Verifies a token for joining `requested_room` (or the token's own room when `None`).
    pub fn verify(&self, token: &str, requested_room: Option<&str>) -> Result<Grant, AuthError> {
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                kind => AuthError::Invalid(token_problem(kind)),
            })?;
        let claims = data.claims;
        let room = match (claims.room.as_str(), requested_room) {
            (ANY_ROOM, Some(room)) => room.to_owned(),
            (ANY_ROOM, None) => return Err(AuthError::RoomRequired),
            (own, Some(room)) if own != room => return Err(AuthError::WrongRoom),
            (own, _) => own.to_owned(),
        };
        validate_room_name(&room)?;
        if claims.sub.is_empty() || claims.sub.len() > MAX_IDENTITY_BYTES || claims.sub.chars().any(char::is_control) {
            return Err(AuthError::BadClaim("identity must be 1-128 bytes without control characters"));
        }
        if claims.sub.starts_with(RESERVED_IDENTITY_PREFIX) {
            return Err(AuthError::BadClaim("identities starting with `~` are reserved for virtual speakers"));
        }
        let name = claims.name.unwrap_or_else(|| claims.sub.clone());
        if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
            return Err(AuthError::BadClaim("name must be at most 64 characters without control characters"));
        }
        let issued_at = claims.iat.unwrap_or(0).max(claims.nbf.unwrap_or(0));
        Ok(Grant { identity: claims.sub, name, room, ceiling: claims.role, token_id: claims.jti, issued_at })
    }
}

/// What an administrator may do through the admin API; each scope includes the ones before it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Read rooms, participants, nodes, webhook status and the audit log.
    Read,
    /// Also act on participants (mute, move, invite, kick, ban, guest list, revoke).
    Moderate,
    /// Also create, update and end rooms, mint tokens and drain nodes.
    Admin,
}

impl Scope {
    /// The scope's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Moderate => "moderate",
            Self::Admin => "admin",
        }
    }
}

/// The `admin` claim of an admin-grant token.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AdminGrantClaim {
    /// The highest scope granted.
    pub scope: Scope,
}

/// The claims of an admin-grant token: `sub` names the administrator (audit log, webhooks), `admin` grants a
/// scope. It carries no `room` and `role`, so it cannot join a room; a participant token has no `admin`, so it
/// cannot call the admin API.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AdminClaims {
    /// The administrator's name.
    pub sub: String,
    /// The grant.
    pub admin: AdminGrantClaim,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

impl TokenKeys {
    /// Mints an admin-grant token.
    pub fn mint_admin(&self, claims: &AdminClaims) -> Result<String, AuthError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| AuthError::Invalid(token_problem(e.kind())))
    }

    /// Verifies an admin-grant token: the administrator's name and scope.
    pub fn verify_admin(&self, token: &str) -> Result<(String, Scope), AuthError> {
        let data = jsonwebtoken::decode::<AdminClaims>(token, &self.decoding, &self.validation).map_err(|e| match e
            .kind()
        {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
            jsonwebtoken::errors::ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            jsonwebtoken::errors::ErrorKind::Json(_) => AuthError::Invalid("not an admin-grant token"),
            kind => AuthError::Invalid(token_problem(kind)),
        })?;
        let claims = data.claims;
        if claims.sub.is_empty() || claims.sub.len() > MAX_IDENTITY_BYTES || claims.sub.chars().any(char::is_control) {
            return Err(AuthError::BadClaim("sub must be 1-128 bytes without control characters"));
        }
        Ok((claims.sub, claims.admin.scope))
    }
}

/// Checks a room name: 1-128 bytes of `[A-Za-z0-9._-]`.
pub fn validate_room_name(room: &str) -> Result<(), AuthError> {
    let ok = !room.is_empty()
        && room.len() <= MAX_ROOM_BYTES
        && room.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok { Ok(()) } else { Err(AuthError::BadClaim("room names are 1-128 characters of A-Z a-z 0-9 . _ -")) }
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Claims for a token valid from now for `ttl`.
pub fn claims_for(identity: &str, name: Option<&str>, room: &str, role: Role, ttl: Duration) -> Claims {
    let now = unix_now();
    Claims {
        sub: identity.to_owned(),
        name: name.map(str::to_owned),
        room: room.to_owned(),
        role,
        exp: now + ttl.as_secs(),
        iat: Some(now),
        nbf: None,
        jti: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(b"test-secret")
    }

    #[test]
    fn round_trip() {
        let k = keys();
        let t =
            k.mint(&claims_for("alice", Some("Alice"), "summit", Role::Moderator, Duration::from_secs(60))).unwrap();
        let g = k.verify(&t, None).unwrap();
        assert_eq!(
            g,
            Grant {
                identity: "alice".into(),
                name: "Alice".into(),
                room: "summit".into(),
                ceiling: Role::Moderator,
                token_id: None,
                issued_at: g.issued_at,
            }
        );
        assert_eq!(k.verify(&t, Some("summit")).unwrap().room, "summit");
    }

    #[test]
    fn refuses_reserved_identities() {
        let k = keys();
        let t = k.mint(&claims_for("~filler", None, "r1", Role::Speaker, Duration::from_secs(60))).unwrap();
        assert!(matches!(k.verify(&t, None), Err(AuthError::BadClaim(_))));
        let t = k.mint(&claims_for("a~b", None, "r1", Role::Speaker, Duration::from_secs(60))).unwrap();
        assert!(k.verify(&t, None).is_ok(), "only a leading `~` is reserved");
    }

    #[test]
    fn refuses_forged_expired_and_other_room() {
        let k = keys();
        let t = k.mint(&claims_for("a", None, "r1", Role::Audience, Duration::from_secs(60))).unwrap();
        assert_eq!(k.verify(&t, Some("r2")), Err(AuthError::WrongRoom));
        let forged = TokenKeys::new(b"other")
            .mint(&claims_for("a", None, "r1", Role::Moderator, Duration::from_secs(60)))
            .unwrap();
        assert!(matches!(k.verify(&forged, None), Err(AuthError::Invalid(_))));
        let mut c = claims_for("a", None, "r1", Role::Audience, Duration::from_secs(60));
        c.exp = unix_now() - 3600;
        let expired = k.mint(&c).unwrap();
        assert_eq!(k.verify(&expired, None), Err(AuthError::Expired));
        let mut c = claims_for("a", None, "r1", Role::Audience, Duration::from_secs(7200));
        c.nbf = Some(unix_now() + 3600);
        let early = k.mint(&c).unwrap();
        assert_eq!(k.verify(&early, None), Err(AuthError::NotYetValid));
        assert!(AuthError::NotYetValid.to_string().contains("not valid yet"));
        assert!(matches!(k.verify("garbage", None), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn any_room_needs_a_room() {
        let k = keys();
        let t = k.mint(&claims_for("a", None, ANY_ROOM, Role::Speaker, Duration::from_secs(60))).unwrap();
        assert_eq!(k.verify(&t, None), Err(AuthError::RoomRequired));
        assert_eq!(k.verify(&t, Some("x")).unwrap().room, "x");
        assert!(matches!(k.verify(&t, Some("bad room!")), Err(AuthError::BadClaim(_))));
    }
}
