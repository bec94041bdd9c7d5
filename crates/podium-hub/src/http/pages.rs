//! The demo app at `/` (and `/index.html`), the browser SDK at `/sdk/podium.js` (both embedded in the binary),
//! and, only with the development secret (no `auth.secret` configured), development tokens at `/dev/token`.
//!
//! The demo app is served when `server.demo` says so; unset, it follows the secret: on in development (no secret),
//! off once a real secret is configured. The SDK is always served (apps load it from the hub).

use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use podium_proto::{ErrorCode, Role};
use serde::Deserialize;
use serde_json::json;

use super::problem::Problem;
use crate::auth::{self, TokenKeys};
use crate::conn::WS_PATH;

/// The demo app (`web/demo/index.html`).
pub const DEMO_HTML: &str = include_str!("../../../../web/demo/index.html");
/// The browser SDK, an ES module built from `web/sdk` (`web/dist/podium.js`, committed).
pub const SDK_JS: &str = include_str!("../../../../web/dist/podium.js");
/// How long development tokens are valid.
const DEV_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// The path of the development token endpoint.
pub const DEV_TOKEN_PATH: &str = "/dev/token";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// `GET /`: the demo app.
pub(crate) async fn demo() -> Response {
    asset("text/html; charset=utf-8", DEMO_HTML)
}

/// `GET /sdk/podium.js`: the browser SDK.
pub(crate) async fn sdk() -> Response {
    asset("text/javascript; charset=utf-8", SDK_JS)
}

/// The query of `GET /dev/token`.
#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub(crate) struct DevTokenQuery {
    identity: Option<String>,
    room: Option<String>,
    role: Option<String>,
    name: Option<String>,
}

/// `GET /dev/token?identity=..&room=..&role=..[&name=..]`: a token signed with the development secret.
pub(crate) async fn dev_token(State(keys): State<TokenKeys>, Query(q): Query<DevTokenQuery>) -> Response {
    match mint_dev_token(&keys, q) {
        Ok(body) => Json(body).into_response(),
        Err(problem) => problem.into_response(),
    }
}

fn mint_dev_token(keys: &TokenKeys, q: DevTokenQuery) -> Result<serde_json::Value, Problem> {
    let bad = |detail: &str| Problem::new(ErrorCode::BadRequest, detail);
    let role = match q.role.as_deref() {
        None | Some("speaker") => Role::Speaker,
        Some("moderator") => Role::Moderator,
        Some("audience") => Role::Audience,
        Some(_) => return Err(bad("role is moderator, speaker or audience")),
    };
    let Some(identity) = q.identity.filter(|i| !i.is_empty() && i.len() <= 128 && !i.chars().any(char::is_control))
    else {
        return Err(bad("identity (1-128 bytes, no control characters) is required"));
    };
    let room = q.room.unwrap_or_else(|| "demo".to_owned());
    auth::validate_room_name(&room).map_err(|e| bad(&e.to_string()))?;
    let name = q.name.filter(|n| !n.is_empty());
    if name.as_ref().is_some_and(|n| n.chars().count() > 64 || n.chars().any(char::is_control)) {
        return Err(bad("name: at most 64 characters, no control characters"));
    }
    let claims = auth::claims_for(&identity, name.as_deref(), &room, role, DEV_TOKEN_TTL);
    let token = keys.mint(&claims).map_err(|e| Problem::new(ErrorCode::Internal, e.to_string()))?;
    Ok(json!({"token": token, "identity": identity, "room": room, "role": role.as_str(), "ws_path": WS_PATH}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(identity: Option<&str>, room: Option<&str>, role: Option<&str>) -> DevTokenQuery {
        DevTokenQuery {
            identity: identity.map(Into::into),
            room: room.map(Into::into),
            role: role.map(Into::into),
            name: None,
        }
    }

    #[test]
    fn dev_tokens_are_valid_and_checked() {
        let keys = TokenKeys::new(b"k");
        let v = mint_dev_token(&keys, query(Some("ann"), Some("demo"), Some("moderator"))).expect("minted");
        let grant = keys.verify(v["token"].as_str().expect("token"), Some("demo")).expect("valid token");
        assert_eq!((grant.identity.as_str(), grant.ceiling), ("ann", Role::Moderator));
        for bad in [
            query(None, Some("demo"), None),
            query(Some("a"), Some("b!"), None),
            query(Some("a"), None, Some("king")),
            query(Some("a\u{7}"), None, None),
        ] {
            let problem = mint_dev_token(&keys, bad).expect_err("refused");
            assert_eq!(problem.status(), axum::http::StatusCode::BAD_REQUEST);
        }
    }
}
