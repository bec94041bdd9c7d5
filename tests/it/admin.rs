//! The admin API (`/v1/admin/`) against a real hub over HTTP, with real websocket participants: authentication and
//! scopes, rooms (create, list, show, update, end; persistent rooms outlive their last participant), participants
//! (list with role filter and cursor, show), moderation that reaches the participants at once, bans, revocation,
//! minted tokens, nodes, and problem+json errors.

use std::time::Duration;

use podium_hub::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Client, TestHub};

const ADMIN_KEY: &str = "adm_test_0123456789abcdef";
const READ_KEY: &str = "adm_read_0123456789abcdef";

/// `ops` (scope admin, `ADMIN_KEY`) and `dashboard` (scope read, `READ_KEY`).
fn admin_keys() -> Vec<podium_hub::config::AdminKey> {
    vec![
        podium_hub::config::AdminKey {
            name: "ops".into(),
            sha256: podium_hub::admin_key_hash(ADMIN_KEY),
            scope: podium_hub::auth::Scope::Admin,
        },
        podium_hub::config::AdminKey {
            name: "dashboard".into(),
            sha256: podium_hub::admin_key_hash(READ_KEY),
            scope: podium_hub::auth::Scope::Read,
        },
    ]
}

async fn hub() -> TestHub {
    TestHub::start_with(|c| {
        c.admin.keys = admin_keys();
        // Ad hoc rooms end 300 ms after their last participant; persistent rooms never do.
        c.room.empty_timeout_ms = 300;
        c.room.grace_ms = 300;
    })
    .await
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(hub: &TestHub) -> Self {
        Self { http: reqwest::Client::new(), base: format!("http://{}", hub.addr) }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let problem = resp
            .headers()
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap_or_default() == "application/problem+json");
        let text = resp.text().await.expect("body");
        let value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("JSON body") };
        if !status.is_success() {
            assert!(problem, "{status} answered as problem+json: {text}");
            assert_eq!(value["status"].as_u64(), Some(u64::from(status.as_u16())), "{value}");
        }
        (status, value)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, Some(ADMIN_KEY), None).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(ADMIN_KEY), Some(body)).await
    }
}

#[tokio::test]
async fn authentication_and_scopes() {
    let hub = hub().await;
    let api = Api::new(&hub);
    let (status, problem) = api.call(reqwest::Method::GET, "/v1/admin/rooms", None, None).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
    let (status, _) = api.call(reqwest::Method::GET, "/v1/admin/rooms", Some("wrong-key"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A participant token is not an admin credential.
    let participant = hub.token("ann", "r", Role::Moderator);
    let (status, _) = api.call(reqwest::Method::GET, "/v1/admin/rooms", Some(&participant), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // An admin-grant token signed with the secret is.
    let admin_token = hub.admin_token("cli", podium_hub::auth::Scope::Moderate);
    let (status, me) = api.call(reqwest::Method::GET, "/v1/admin/whoami", Some(&admin_token), None).await;
    assert_eq!((status, me), (StatusCode::OK, json!({"name": "cli", "scope": "moderate"})));
    // Scopes: read may list, not create; moderate may not create either.
    let (status, _) = api.call(reqwest::Method::GET, "/v1/admin/rooms", Some(READ_KEY), None).await;
    assert_eq!(status, StatusCode::OK);
    for key in [READ_KEY, admin_token.as_str()] {
        let (status, problem) =
            api.call(reqwest::Method::POST, "/v1/admin/rooms", Some(key), Some(json!({"name": "x"}))).await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")));
    }
    // Malformed bodies and unknown fields are problems too.
    let (status, _) = api.post("/v1/admin/rooms", json!({"name": "x", "colour": "red"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, problem) = api.post("/v1/admin/rooms", json!({"name": "no spaces"})).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_request")));
    // The document is served.
    let (status, doc) = api.call(reqwest::Method::GET, "/v1/admin/openapi.json", None, None).await;
    assert_eq!((status, doc["openapi"].as_str()), (StatusCode::OK, Some("3.1.0")));
    // Counted: admin API responses by status class.
    let metrics = api.http.get(format!("{}/metrics", api.base)).send().await.expect("metrics");
    let metrics = metrics.text().await.expect("text");
    let count = |class: &str| -> u64 {
        let prefix = format!("podium_http_responses_total{{surface=\"admin\",class=\"{class}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    assert!(count("4xx") >= 7 && count("2xx") >= 3, "{metrics}");
    hub.stop().await;
}

#[tokio::test]
async fn rooms_participants_and_moderation() {
    let hub = hub().await;
    let api = Api::new(&hub);

    let (status, room) = api
        .post(
            "/v1/admin/rooms",
            json!({"name": "summit", "stage_capacity": 4, "closed": true, "guests": ["mod", "sam", "al", "bo"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{room}");
    assert_eq!(room["persistent"], true);
    assert_eq!(
        room["settings"],
        json!({"open_mic": false, "closed": true, "stage_capacity": 4, "chat": true, "chat_slow_mode_ms": 0})
    );
    let (status, problem) = api.post("/v1/admin/rooms", json!({"name": "summit"})).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")));

    // Participants join over the websocket; the closed room admits its guests only.
    let (mut moderator, _) = hub.join("mod", "summit", Role::Moderator).await;
    let (mut speaker, _) = hub.join("sam", "summit", Role::Speaker).await;
    let (mut al, _) = hub.join("al", "summit", Role::Audience).await;
    let (mut bo, _) = hub.join("bo", "summit", Role::Audience).await;
    let mut stranger = Client::connect(&hub.url()).await;
    stranger
        .expect_error(json!({"type": "join", "token": hub.token("zed", "summit", Role::Audience)}), "not_invited")
        .await;

    // The administrator invites sam onto the stage; sam accepts.
    let (status, _) = api.post("/v1/admin/rooms/summit/participants/sam/invite_to_stage", json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let you = speaker.event("you", |e| !e["you"]["invite"].is_null()).await;
    assert_eq!(you["you"]["invite"]["by_admin"], "ops", "{you}");
    speaker.ok(json!({"type": "accept_invite"})).await;
    speaker.ok(json!({"type": "set_muted", "muted": false})).await;

    let (status, page) = api.get("/v1/admin/rooms/summit/participants?role=audience&limit=1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["participants"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["participants"][0]["identity"], "al");
    let cursor = page["next"].as_str().expect("a next page").to_owned();
    let (_, page) =
        api.get(&format!("/v1/admin/rooms/summit/participants?role=audience&limit=1&cursor={cursor}")).await;
    assert_eq!(page["participants"][0]["identity"], "bo");
    assert!(page.get("next").is_none(), "{page}");
    let (status, sam) = api.get("/v1/admin/rooms/summit/participants/sam").await;
    assert_eq!((status, sam["role"].as_str(), sam["muted"].as_bool()), (StatusCode::OK, Some("speaker"), Some(false)));
    let (status, _) = api.get("/v1/admin/rooms/summit/participants/nobody").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Moderation through the API reaches everyone at once, named as the administrator, with its reason.
    let (status, _) =
        api.post("/v1/admin/rooms/summit/participants/sam/mute", json!({"reason": "feedback on the line"})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let stage = moderator.event("stage", |e| e["cause"]["kind"] == "muted").await;
    assert_eq!(stage["cause"]["by_admin"], "ops", "{stage}");
    assert_eq!(stage["cause"]["reason"], "feedback on the line", "{stage}");
    speaker.event("stage", |e| e["cause"]["kind"] == "muted").await;
    // The same rules as a moderator: muting someone in the audience is refused.
    let (status, problem) = api.post("/v1/admin/rooms/summit/participants/al/mute", json!({})).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")), "{problem}");
    // ... and so are the token ceilings: al's token allows the audience only.
    let (status, problem) = api.post("/v1/admin/rooms/summit/participants/al/invite_to_stage", json!({})).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{problem}");
    let (status, _) = api.post("/v1/admin/rooms/summit/participants/sam/move_to_audience", json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.post("/v1/admin/rooms/summit/participants/bo/kick", json!({"reason": "spam"})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(bo.closed().await.0, 4004);
    let (status, problem) = api.post("/v1/admin/rooms/summit/participants/bo/launch", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");

    // A ban holds whether or not they are present; the room keeps it.
    let (status, _) = api.call(reqwest::Method::PUT, "/v1/admin/rooms/summit/bans/bo", Some(ADMIN_KEY), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let mut again = Client::connect(&hub.url()).await;
    again.expect_error(json!({"type": "join", "token": hub.token("bo", "summit", Role::Audience)}), "banned").await;
    let (_, room) = api.get("/v1/admin/rooms/summit").await;
    assert_eq!(room["bans"], json!(["bo"]));
    assert_eq!(room["counts"]["total"], 3);

    // Revocation: the identity's present session ends (4012) and its old token no longer joins; a token minted
    // through the API after the revocation does.
    let (status, _) =
        api.post("/v1/admin/rooms/summit/revocations", json!({"identity": "al", "reason": "leaked"})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(al.closed().await.0, 4012);
    let mut old = Client::connect(&hub.url()).await;
    let reply = old.request(json!({"type": "join", "token": hub.token("al", "summit", Role::Audience)})).await;
    assert_eq!(reply["code"], "unauthorized", "{reply}");
    tokio::time::sleep(Duration::from_millis(1_100)).await; // issue times are in whole seconds
    let (status, minted) =
        api.post("/v1/admin/tokens", json!({"identity": "al", "room": "summit", "role": "audience"})).await;
    assert_eq!(status, StatusCode::CREATED, "{minted}");
    let mut fresh = Client::connect(&hub.url()).await;
    fresh.ok(json!({"type": "join", "token": minted["token"]})).await;

    // Settings.
    let (status, room) = api
        .call(reqwest::Method::PATCH, "/v1/admin/rooms/summit", Some(ADMIN_KEY), Some(json!({"open_mic": true})))
        .await;
    assert_eq!((status, room["settings"]["open_mic"].as_bool()), (StatusCode::OK, Some(true)));

    // Everyone leaves: the persistent room stays (with its ban), an ad hoc room ends.
    let (mut adhoc, _) = hub.join("mod", "adhoc", Role::Moderator).await;
    for c in [&mut moderator, &mut speaker, &mut fresh, &mut adhoc] {
        c.ok(json!({"type": "leave"})).await;
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (status, room) = api.get("/v1/admin/rooms/summit").await;
    assert_eq!((status, room["counts"]["total"].as_u64()), (StatusCode::OK, Some(0)), "{room}");
    assert_eq!(room["bans"], json!(["bo"]));
    let (status, _) = api.get("/v1/admin/rooms/adhoc").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = api.get("/v1/admin/rooms").await;
    let names: Vec<&str> = list["rooms"].as_array().expect("rooms").iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["summit"]);
    // The empty persistent room costs the hub no task (reads come from the store).
    let metrics = api.http.get(format!("{}/metrics", api.base)).send().await.expect("metrics");
    let metrics = metrics.text().await.expect("text");
    assert!(metrics.lines().any(|l| l == "podium_rooms 0"), "{metrics}");
    // An action on it starts one for the moment: a guest added, then the task stops again.
    let (status, _) =
        api.call(reqwest::Method::PUT, "/v1/admin/rooms/summit/guests/newcomer", Some(ADMIN_KEY), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, room) = api.get("/v1/admin/rooms/summit").await;
    assert!(room["guests"].as_array().expect("guests").iter().any(|g| g == "newcomer"), "{room}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = api.http.get(format!("{}/metrics", api.base)).send().await.expect("metrics");
        if metrics.text().await.expect("text").lines().any(|l| l == "podium_rooms 0") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the idle room's task did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And a join wakes it.
    let (mut back, _) = hub.join("mod", "summit", Role::Moderator).await;
    back.ok(json!({"type": "leave"})).await;

    // Nodes: this hub.
    let (_, nodes) = api.get("/v1/admin/nodes").await;
    assert_eq!(nodes["nodes"].as_array().map(Vec::len), Some(1));
    assert_eq!(nodes["nodes"][0]["this"], true);

    // The end.
    let (status, _) = api.call(reqwest::Method::DELETE, "/v1/admin/rooms/summit", Some(ADMIN_KEY), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.get("/v1/admin/rooms/summit").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    hub.stop().await;
}

#[tokio::test]
async fn idempotent_retries_of_a_create_return_the_same_room() {
    let hub = hub().await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/v1/admin/rooms", hub.addr);
    let create = |body: Value, key: &'static str| {
        http.post(&url).bearer_auth(ADMIN_KEY).header("Idempotency-Key", key).json(&body).send()
    };
    let first = create(json!({"name": "once", "stage_capacity": 3}), "\"k-1\"").await.expect("create");
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.expect("room");
    // The retry gets the same answer (not 409 `conflict`), marked as a replay; nothing is created twice.
    let retry = create(json!({"name": "once", "stage_capacity": 3}), "\"k-1\"").await.expect("retry");
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert_eq!(retry.headers().get("idempotent-replayed").and_then(|v| v.to_str().ok()), Some("true"));
    assert_eq!(retry.json::<Value>().await.expect("room"), first);
    // Without the key, the same create is a conflict; with the key and another body, 422.
    let plain = http.post(&url).bearer_auth(ADMIN_KEY).json(&json!({"name": "once"})).send().await.expect("create");
    assert_eq!(plain.status(), StatusCode::CONFLICT);
    let other = create(json!({"name": "twice"}), "\"k-1\"").await.expect("create");
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let bad = create(json!({"name": "x"}), "\"\"").await.expect("create");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    hub.stop().await;
}

/// schemathesis (PyPI) against the live API with the committed document: no 5xx, and every response (status, content
/// type, headers, body) as the document says. Draining the hub is left out (it would stop the hub under test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_errors_and_no_response_outside_the_document() {
    let python = crate::aiortc::python();
    let st = std::path::Path::new(&python).with_file_name("st");
    assert!(
        st.is_file(),
        "schemathesis not found at {} (PODIUM_PYTHON's venv): `bash tests/run` installs it into .venv-media",
        st.display()
    );
    let hub = hub().await;
    let api = Api::new(&hub);
    // Something to find: a room with people in it.
    let (status, _) = api.post("/v1/admin/rooms", json!({"name": "0", "guests": ["0"]})).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_moderator, _) = hub.join("0", "0", Role::Moderator).await;
    let (_listener, _) = hub.join("listener", "0", Role::Audience).await;
    let document = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/openapi.json");
    let out = tokio::process::Command::new(&st)
        .arg("run")
        .arg(&document)
        .args(["--url", &format!("http://{}", hub.addr)])
        .args(["-H", &format!("Authorization: Bearer {ADMIN_KEY}")])
        .args(["--max-examples", "25", "--seed", "20261205", "--workers", "1"])
        .args(["--exclude-operation-id", "drain_node"])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,\
             response_schema_conformance",
        ])
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("run schemathesis");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "schemathesis failed:\n{report}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(report.contains("passed"), "{report}");
    // The hub still serves.
    let (status, _) = api.get("/v1/admin/rooms/0").await;
    assert!(status == StatusCode::OK || status == StatusCode::NOT_FOUND, "{status}");
    hub.stop().await;
}

/// Each caller has its own request rate (`[admin] requests_per_second`, `request_burst`): past it, 429
/// `rate_limited` with `Retry-After`; another caller is not held up, and the bucket fills again with time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_over_its_rate_is_refused_with_429_and_others_are_not() {
    let hub = TestHub::start_with(|c| {
        c.admin.keys = admin_keys();
        c.admin.requests_per_second = 1;
        c.admin.request_burst = 5;
    })
    .await;
    let api = Api::new(&hub);
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(api.call(reqwest::Method::GET, "/v1/admin/rooms", Some(ADMIN_KEY), None).await.0);
    }
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    // The burst, plus at most one refilled while the requests were made.
    assert!((5..=6).contains(&ok), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");

    let response = reqwest::Client::new()
        .get(format!("http://{}/v1/admin/rooms", hub.addr))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "rate_limited", "{problem}");

    // Another caller has its own bucket; the first one's refills.
    let (status, _) = api.call(reqwest::Method::GET, "/v1/admin/rooms", Some(READ_KEY), None).await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (status, _) = api.call(reqwest::Method::GET, "/v1/admin/rooms", Some(ADMIN_KEY), None).await;
    assert_eq!(status, StatusCode::OK);
}
