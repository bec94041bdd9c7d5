//! The admin API under `/v1/admin/`: rooms, participants, moderation, tokens and hubs, for operators and app
//! backends. Documented in `proto/ADMIN.md`; its OpenAPI 3.1 document (`proto/openapi.json`) is generated from
//! these handlers ([`openapi`]) and checked against the committed file by a test.
//!
//! # Design
//!
//! - **No side door.** Every change to a room is a command from an administrator actor
//!   (`podium_room::Room::handle_admin`) run by the room's task, like a moderator's websocket request: the same
//!   rules, the same commit (and, with Redis, the same announcement to the other hubs, so an action taken through
//!   hub B on a participant connected to hub A takes effect there at once), the same webhooks and audit entries
//!   (`via: "api"`, actor `admin:<name>`).
//! - **Reads come from the store**, not from a room task: listing or showing rooms starts no task and costs a
//!   room nothing.
//! - **Authentication**: `Authorization: Bearer <key>` where the key's SHA-256 is configured in `[admin] keys` (each
//!   with a name and a scope), or an admin-grant token (a JWT signed with `auth.secret` carrying an `admin` claim;
//!   `podium token --admin`). Scopes: `read` < `moderate` < `admin`.
//! - **Errors** are RFC 9457 problems with the websocket protocol's error codes (`crate::http::problem`).

pub(crate) mod idempotency;
mod model;
mod routes;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use podium_proto::ErrorCode;
use sha2::{Digest as _, Sha256};

pub(crate) use self::model::ProblemDoc;
pub(crate) use self::routes::{ApiResult, ask, router};
use crate::auth::Scope;
use crate::config::AdminConfig;
use crate::http::AppState;
use crate::http::problem::Problem;

/// The configured API keys, by the SHA-256 of the key.
#[derive(Debug, Default)]
pub(crate) struct AdminKeys {
    by_hash: HashMap<[u8; 32], (String, Scope)>,
}

impl AdminKeys {
    pub(crate) fn new(config: &AdminConfig) -> Self {
        let mut by_hash = HashMap::new();
        for key in &config.keys {
            let mut hash = [0u8; 32];
            for (i, byte) in hash.iter_mut().enumerate() {
                // Validated at load: 64 hex digits.
                *byte = u8::from_str_radix(key.sha256.get(2 * i..2 * i + 2).unwrap_or("00"), 16).unwrap_or(0);
            }
            by_hash.insert(hash, (key.name.clone(), key.scope));
        }
        Self { by_hash }
    }

    fn lookup(&self, key: &str) -> Option<&(String, Scope)> {
        let hash: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        self.by_hash.get(&hash)
    }
}

/// The admin API's OpenAPI 3.1 document, as committed in `proto/openapi.json`.
pub fn openapi_json() -> String {
    let mut text = routes::openapi().to_pretty_json().unwrap_or_default();
    text.push('\n');
    text
}

/// A new random admin API key (256 bits).
pub fn new_key() -> String {
    format!("pdm_{:032x}{:032x}", rand::random::<u128>(), rand::random::<u128>())
}

/// SHA-256 of `key` as hex: what `[admin] keys` stores.
pub fn key_hash(key: &str) -> String {
    Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// An authenticated administrator.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    pub(crate) name: String,
    pub(crate) scope: Scope,
}

impl Caller {
    /// `forbidden` unless the caller's scope includes `scope`.
    pub(crate) fn require(&self, scope: Scope) -> Result<(), Problem> {
        if self.scope >= scope {
            Ok(())
        } else {
            Err(Problem::new(
                ErrorCode::Forbidden,
                format!("this needs the `{}` scope; {:?} has `{}`", scope.as_str(), self.name, self.scope.as_str()),
            ))
        }
    }

    pub(crate) fn admin_id(&self) -> podium_room::AdminId {
        podium_room::AdminId::new(self.name.as_str())
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let unauthorized = |detail: &str| Problem::new(ErrorCode::Unauthorized, detail);
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("missing `Authorization: Bearer <admin key or admin token>`"))?;
        let value = header.to_str().map_err(|_| unauthorized("malformed Authorization header"))?;
        let credential = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| unauthorized("the Authorization scheme must be Bearer"))?;
        if let Some((name, scope)) = state.shared.admin_keys.lookup(credential) {
            state.shared.admin_rate.check(name)?;
            return Ok(Self { name: name.clone(), scope: *scope });
        }
        match state.shared.keys.verify_admin(credential) {
            Ok((name, scope)) => {
                state.shared.admin_rate.check(&name)?;
                Ok(Self { name, scope })
            }
            Err(e) => {
                // Counted per source and logged as a summary, like refused participant tokens.
                if let Some(info) = parts.extensions.get::<Arc<crate::http::ConnInfo>>() {
                    state.shared.admission.auth_failed(info.peer.ip());
                }
                Err(unauthorized(&format!("not an admin key, and not a valid admin-grant token: {e}")))
            }
        }
    }
}

/// The admin API's request rate per caller (`[admin] requests_per_second`, `request_burst`): a bucket per caller
/// name (an API key's, or an admin token's), so one runaway script cannot take the hub from the others. Callers are
/// authenticated first, so the buckets are bounded by the configured keys and the names the token secret's holders
/// mint; idle full buckets are dropped now and then.
pub(crate) struct AdminRate {
    limiter: Option<governor::DefaultKeyedRateLimiter<String>>,
    rate: u32,
}

impl AdminRate {
    /// Buckets are dropped once full again when more than this many exist.
    const TIDY_ABOVE: usize = 1024;

    pub(crate) fn new(config: &AdminConfig) -> Self {
        let limiter = std::num::NonZeroU32::new(config.requests_per_second).map(|rate| {
            let burst = std::num::NonZeroU32::new(config.request_burst).unwrap_or(rate);
            governor::RateLimiter::keyed(governor::Quota::per_second(rate).allow_burst(burst))
        });
        Self { limiter, rate: config.requests_per_second }
    }

    /// `rate_limited` (429, with `Retry-After`) when `caller` is over its rate.
    pub(crate) fn check(&self, caller: &str) -> Result<(), Problem> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        if limiter.len() > Self::TIDY_ABOVE {
            limiter.retain_recent();
        }
        limiter.check_key(&caller.to_owned()).map_err(|not_until| {
            use governor::clock::Clock as _;
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            Problem::new(
                ErrorCode::RateLimited,
                format!("{caller:?} made more than {} requests per second; retry later", self.rate),
            )
            .retry_after(wait.as_secs().max(1))
        })
    }
}

/// Shared by the route modules: the hub behind the state.
pub(crate) type Shared = Arc<crate::hub::Shared>;
