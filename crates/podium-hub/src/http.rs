//! The hub's few plain HTTP routes, served on the websocket's port before any handshake: the demo app at `/`, the
//! browser SDK at `/sdk/podium.js` (both embedded in the binary), and, only with the development secret (no
//! `auth.secret` configured), development tokens at `/dev/token`. `/v1/ws` goes on to the websocket handshake;
//! anything else is 404.
//!
//! Deliberately small: one request per connection (`Connection: close`), GET and HEAD only, a bounded request head
//! read within the auth timeout.

use std::time::Duration;

use podium_proto::Role;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tracing::debug;

use crate::auth::{self, TokenKeys};
use crate::config::Config;
use crate::conn::WS_PATH;

/// The demo app (`web/demo/index.html`).
pub const DEMO_HTML: &str = include_str!("../../../web/demo/index.html");
/// The browser SDK, an ES module built from `web/sdk` (`web/dist/podium.js`, committed).
pub const SDK_JS: &str = include_str!("../../../web/dist/podium.js");
/// Largest request head read, in bytes.
pub(crate) const MAX_HEAD_BYTES: usize = 8 * 1024;
/// How long development tokens are valid.
const DEV_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// The path of the development token endpoint.
pub const DEV_TOKEN_PATH: &str = "/dev/token";

/// What the first request on a connection is.
pub(crate) enum Route {
    /// The websocket path: go on with the handshake (nothing was consumed from the stream).
    WebSocket,
    /// A plain HTTP request, answered and done.
    Http,
}

/// Peeks at the request line (without consuming it) and decides. `None`: the peer went away or sent nothing usable.
pub(crate) async fn peek_route(stream: &TcpStream) -> Option<Route> {
    let mut buf = vec![0u8; MAX_HEAD_BYTES];
    let mut seen = 0;
    loop {
        let n = stream.peek(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        if let Some(end) = buf[..n].windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&buf[..end]);
            let target = line.split(' ').nth(1).unwrap_or("");
            let path = target.split('?').next().unwrap_or("");
            return Some(if path == WS_PATH { Route::WebSocket } else { Route::Http });
        }
        if n >= buf.len() {
            // No request line within the head limit: answered (with 431) as plain HTTP.
            return Some(Route::Http);
        }
        if n == seen {
            // `peek` returns at once while data is buffered; wait a little for the rest of the line.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        seen = n;
    }
}

/// One response.
struct Response {
    status: &'static str,
    content_type: &'static str,
    body: String,
}

impl Response {
    fn new(status: &'static str, content_type: &'static str, body: impl Into<String>) -> Self {
        Self { status, content_type, body: body.into() }
    }

    fn text(status: &'static str, body: &str) -> Self {
        Self::new(status, "text/plain; charset=utf-8", format!("{body}\n"))
    }
}

/// Reads the request head (bounded) and answers it. The caller bounds the time.
pub(crate) async fn serve(config: &Config, keys: &TokenKeys, stream: &mut TcpStream) {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let complete = loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            break true;
        }
        if head.len() >= MAX_HEAD_BYTES {
            break false;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    };
    let head_only;
    let response = if complete {
        let text = String::from_utf8_lossy(&head);
        let mut parts = text.lines().next().unwrap_or("").split(' ');
        let method = parts.next().unwrap_or("");
        let target = parts.next().unwrap_or("");
        head_only = method == "HEAD";
        route(config, keys, method, target)
    } else {
        head_only = false;
        Response::text("431 Request Header Fields Too Large", "request head too large")
    };
    debug!(status = response.status, "http response");
    let body = if head_only { "" } else { response.body.as_str() };
    let out = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\n\
         X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n{body}",
        response.status,
        response.content_type,
        response.body.len(),
    );
    let _ = stream.write_all(out.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn route(config: &Config, keys: &TokenKeys, method: &str, target: &str) -> Response {
    if method != "GET" && method != "HEAD" {
        return Response::text("405 Method Not Allowed", "only GET and HEAD");
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match path {
        "/" | "/index.html" => Response::new("200 OK", "text/html; charset=utf-8", DEMO_HTML),
        "/sdk/podium.js" => Response::new("200 OK", "text/javascript; charset=utf-8", SDK_JS),
        DEV_TOKEN_PATH if config.auth.secret.is_none() => dev_token(keys, query),
        _ => Response::text("404 Not Found", &format!("not found; the websocket is at {WS_PATH}")),
    }
}

/// `GET /dev/token?identity=..&room=..&role=..[&name=..]`: a token signed with the development secret.
fn dev_token(keys: &TokenKeys, query: &str) -> Response {
    let mut identity = None;
    let mut room = None;
    let mut role = Role::Speaker;
    let mut name = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let Some(v) = percent_decode(v) else {
            return Response::text("400 Bad Request", "malformed percent-encoding");
        };
        match k {
            "identity" => identity = Some(v),
            "room" => room = Some(v),
            "name" => name = Some(v),
            "role" => {
                role = match v.as_str() {
                    "moderator" => Role::Moderator,
                    "speaker" => Role::Speaker,
                    "audience" => Role::Audience,
                    _ => return Response::text("400 Bad Request", "role is moderator, speaker or audience"),
                }
            }
            _ => {}
        }
    }
    let Some(identity) = identity.filter(|i| !i.is_empty() && i.len() <= 128 && !i.chars().any(char::is_control))
    else {
        return Response::text("400 Bad Request", "identity (1-128 bytes, no control characters) is required");
    };
    let room = room.unwrap_or_else(|| "demo".to_owned());
    if let Err(e) = auth::validate_room_name(&room) {
        return Response::text("400 Bad Request", &e.to_string());
    }
    let name = name.filter(|n| !n.is_empty());
    if name.as_ref().is_some_and(|n| n.chars().count() > 64 || n.chars().any(char::is_control)) {
        return Response::text("400 Bad Request", "name: at most 64 characters, no control characters");
    }
    let claims = auth::claims_for(&identity, name.as_deref(), &room, role, DEV_TOKEN_TTL);
    match keys.mint(&claims) {
        Ok(token) => Response::new(
            "200 OK",
            "application/json",
            json!({"token": token, "identity": identity, "room": room, "role": role.as_str(), "ws_path": WS_PATH})
                .to_string(),
        ),
        Err(e) => Response::text("500 Internal Server Error", &e.to_string()),
    }
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space); `None` for bad escapes or non-UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_query_values() {
        assert_eq!(percent_decode("a%20b+c").as_deref(), Some("a b c"));
        assert_eq!(percent_decode("%C3%A9").as_deref(), Some("é"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%FF"), None);
    }

    #[test]
    fn dev_tokens_only_without_a_configured_secret() {
        let mut config = Config::default();
        let keys = TokenKeys::new(config.auth.secret().as_bytes());
        let r = route(&config, &keys, "GET", "/dev/token?identity=ann&room=demo&role=moderator");
        assert_eq!(r.status, "200 OK");
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("json");
        let grant = keys.verify(v["token"].as_str().expect("token"), Some("demo")).expect("valid token");
        assert_eq!((grant.identity.as_str(), grant.ceiling), ("ann", Role::Moderator));
        assert_eq!(route(&config, &keys, "GET", "/dev/token?room=demo").status, "400 Bad Request");
        assert_eq!(route(&config, &keys, "GET", "/dev/token?identity=a&room=b%21").status, "400 Bad Request");
        assert_eq!(route(&config, &keys, "GET", "/dev/token?identity=a&role=king").status, "400 Bad Request");
        config.auth.secret = Some("s3cret".into());
        assert_eq!(route(&config, &keys, "GET", "/dev/token?identity=ann").status, "404 Not Found");
    }

    #[test]
    fn routes() {
        let config = Config::default();
        let keys = TokenKeys::new(b"k");
        assert_eq!(route(&config, &keys, "GET", "/").content_type, "text/html; charset=utf-8");
        assert_eq!(route(&config, &keys, "HEAD", "/sdk/podium.js").status, "200 OK");
        assert_eq!(route(&config, &keys, "GET", "/sdk/other.js").status, "404 Not Found");
        assert_eq!(route(&config, &keys, "POST", "/").status, "405 Method Not Allowed");
    }
}
