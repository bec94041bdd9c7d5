//! The hub's plain HTTP routes over raw TCP: the demo app at `/` (when enabled), the SDK at `/sdk/podium.js`,
//! development tokens at `/dev/token` (only without a configured secret), health, problem+json 404/405 for anything
//! else, bounded request heads, keep-alive; and the websocket at `/v1/ws` still works beside them.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::{Client, TIMEOUT, TestHub};

/// One HTTP exchange: writes `request` (in the given pieces, with a pause between them) and reads the whole response.
async fn exchange(hub: &TestHub, pieces: &[&[u8]]) -> (String, String, Vec<u8>) {
    let mut s = TcpStream::connect(hub.addr).await.expect("connect");
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        s.write_all(piece).await.expect("write");
    }
    let mut raw = Vec::new();
    tokio::time::timeout(TIMEOUT, s.read_to_end(&mut raw)).await.expect("response in time").expect("read");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw[split + 4..].to_vec();
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, head, body)
}

async fn get(hub: &TestHub, path: &str) -> (String, String, Vec<u8>) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: podium.test\r\nUser-Agent: test\r\nConnection: close\r\n\r\n");
    exchange(hub, &[req.as_bytes()]).await
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

#[tokio::test]
async fn serves_the_demo_app_and_the_sdk() {
    let hub = TestHub::start_with(|c| c.server.demo = Some(true)).await;

    let (status, head, body) = get(&hub, "/").await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{head}");
    assert_eq!(header(&head, "content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(header(&head, "content-length"), Some(body.len().to_string().as_str()));
    assert_eq!(body, podium_hub::DEMO_HTML.as_bytes());
    assert!(String::from_utf8_lossy(&body).contains("/sdk/podium.js"), "the demo loads the SDK");

    let (status, head, body) = get(&hub, "/sdk/podium.js").await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{head}");
    assert_eq!(header(&head, "content-type"), Some("text/javascript; charset=utf-8"));
    assert_eq!(body, podium_hub::SDK_JS.as_bytes());
    let js = String::from_utf8_lossy(&body);
    assert!(js.contains("export") && js.contains("media_offer"), "an ES module speaking the protocol");

    // HEAD: the same head, no body.
    let (status, head, body) =
        exchange(&hub, &[b"HEAD /sdk/podium.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"]).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(header(&head, "content-length"), Some(podium_hub::SDK_JS.len().to_string().as_str()));
    assert!(body.is_empty());

    // A request line that arrives in pieces.
    let (status, _, body) =
        exchange(&hub, &[b"GE", b"T / HT", b"TP/1.1\r\nHost: x\r\nConnection: close\r\n", b"\r\n"]).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body.len(), podium_hub::DEMO_HTML.len());

    hub.stop().await;
}

#[tokio::test]
async fn unknown_paths_methods_and_huge_heads_are_refused() {
    let hub = TestHub::start().await;
    // With a configured secret the demo app is off unless enabled; unknown paths are problems (RFC 9457).
    for path in ["/", "/index.html", "/v1", "/sdk/", "/favicon.ico", "/../etc/passwd", "/v1/wsx"] {
        let (status, head, body) = get(&hub, path).await;
        assert_eq!(status, "HTTP/1.1 404 Not Found", "{path}");
        assert_eq!(header(&head, "content-type"), Some("application/problem+json"), "{path}");
        let problem: Value = serde_json::from_slice(&body).expect("problem json");
        assert_eq!((problem["status"].as_u64(), problem["code"].as_str()), (Some(404), Some("not_found")), "{path}");
        assert_eq!(problem["type"], "urn:podium:error:not_found");
    }
    // The hub has a configured secret here: no development tokens.
    let (status, _, _) = get(&hub, "/dev/token?identity=ann&room=demo").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");

    let post = b"POST /sdk/podium.js HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let (status, head, body) = exchange(&hub, &[post]).await;
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    assert_eq!(header(&head, "allow"), Some("GET,HEAD"));
    assert_eq!(header(&head, "content-type"), Some("application/problem+json"));
    let problem: Value = serde_json::from_slice(&body).expect("problem json");
    assert_eq!(problem["status"], 405);

    // The websocket path without an upgrade: 426, saying what to do.
    let (status, head, _) = get(&hub, "/v1/ws").await;
    assert_eq!(status, "HTTP/1.1 426 Upgrade Required", "{head}");
    assert_eq!(header(&head, "upgrade"), Some("websocket"));

    // Health: alive and ready.
    let (status, _, body) = get(&hub, "/healthz").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(serde_json::from_slice::<Value>(&body).expect("json")["status"], "ok");
    let (status, _, body) = get(&hub, "/readyz").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(serde_json::from_slice::<Value>(&body).expect("json")["status"], "ready");

    let huge = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000));
    let mut s = TcpStream::connect(hub.addr).await.expect("connect");
    let _ = s.write_all(huge.as_bytes()).await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(TIMEOUT, s.read_to_end(&mut raw)).await.expect("answered in time");
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 431 "), "{}", String::from_utf8_lossy(&raw));

    // A request line longer than the head limit.
    let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(10_000));
    let mut s = TcpStream::connect(hub.addr).await.expect("connect");
    let _ = s.write_all(long.as_bytes()).await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(TIMEOUT, s.read_to_end(&mut raw)).await.expect("answered in time");
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 431 "), "{}", String::from_utf8_lossy(&raw));

    // The websocket still works on its path.
    let (mut c, welcome) = hub.join("ann", "web-room", podium_hub::Role::Moderator).await;
    assert_eq!(welcome["state"]["room"], "web-room");
    c.ok(json!({"type": "ping"})).await;
    hub.stop().await;
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_auth_timeout() {
    let hub = TestHub::start_with(|c| c.auth.auth_timeout_ms = 300).await;
    let mut s = TcpStream::connect(hub.addr).await.expect("connect");
    let _ = s.write_all(b"GET / HT").await;
    let mut raw = Vec::new();
    // Closed (a reset, since the half line was never read) well before the test's own timeout.
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut raw)).await.expect("closed in time");
    assert!(raw.is_empty(), "nothing answered to half a request line: {}", String::from_utf8_lossy(&raw));
    hub.stop().await;
}

#[tokio::test]
async fn development_tokens_in_development_mode() {
    let hub = TestHub::start_with(|c| c.auth.secret = None).await;
    let (status, head, body) = get(&hub, "/dev/token?identity=ann%20b&name=Ann+B&room=dev-room&role=moderator").await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{head}");
    assert_eq!(header(&head, "content-type"), Some("application/json"));
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["identity"], "ann b");
    assert_eq!(v["role"], "moderator");
    let token = v["token"].as_str().expect("token").to_owned();

    // The token joins that room as a moderator.
    let mut c = Client::connect(&hub.url()).await;
    let reply = c.request(json!({"type": "join", "token": token})).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    assert_eq!(reply["result"]["participant"], json!({"id": "ann b", "name": "Ann B"}));
    assert_eq!(reply["result"]["state"]["you"]["role"], "moderator");

    for bad in
        ["/dev/token", "/dev/token?identity=", "/dev/token?identity=a&room=no%2Fslash", "/dev/token?identity=a&role=x"]
    {
        let (status, _, _) = get(&hub, bad).await;
        assert_eq!(status, "HTTP/1.1 400 Bad Request", "{bad}");
    }
    hub.stop().await;
}

#[tokio::test]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let hub = TestHub::start().await;
    let mut s = TcpStream::connect(hub.addr).await.expect("connect");
    let two =
        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /sdk/podium.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    s.write_all(two.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(TIMEOUT, s.read_to_end(&mut raw)).await.expect("answered and closed in time").expect("read");
    let text = String::from_utf8_lossy(&raw);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{}", &text[..text.len().min(400)]);
    assert!(text.ends_with(podium_hub::SDK_JS), "the second answer is the SDK");
    hub.stop().await;
}
