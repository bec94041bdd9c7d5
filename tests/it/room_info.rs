//! Issue #15, items 3 and 4, against a real hub: the room's description and pinned link (`set_room_info`, the
//! `room_info` event, `info` in the welcome snapshot), raised hands expiring after `room.hand_ttl_ms` (the raiser
//! told with `hand_lowered`), `clear_hands`, and both through the admin API (the same rules, named `by_admin`, in the
//! audit log).

use std::time::{Duration, Instant};

use podium_hub::Role;
use podium_hub::auth::Scope;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::TestHub;

#[tokio::test]
async fn moderators_set_the_description_and_pinned_link_everyone_sees_them() {
    let hub = TestHub::start().await;
    let (mut moderator, _) = hub.join("mod", "info", Role::Moderator).await;
    let (mut listener, welcome) = hub.join("lis", "info", Role::Speaker).await;
    assert!(welcome["state"].get("info").is_none(), "no info yet: omitted from the snapshot: {welcome}");

    // An audience member may not set it; bad values are refused with a clear message; nothing changes.
    listener.expect_error(json!({"type": "set_room_info", "description": "mine"}), "forbidden").await;
    let bad = moderator
        .expect_error(json!({"type": "set_room_info", "pinned_link": {"url": "javascript:alert(1)"}}), "bad_request")
        .await;
    assert!(bad["message"].as_str().is_some_and(|m| m.contains("http:// or https://")), "{bad}");
    let long = "x".repeat(1_001);
    let bad = moderator.expect_error(json!({"type": "set_room_info", "description": long}), "bad_request").await;
    assert!(bad["message"].as_str().is_some_and(|m| m.contains("1000 characters")), "{bad}");
    moderator.expect_error(json!({"type": "set_room_info"}), "bad_request").await;
    moderator.expect_error(json!({"type": "set_room_info", "pinned_link": "https://x.test"}), "bad_request").await;

    let info = json!({
        "description": "Weekly Rust hour.\nBe kind.",
        "pinned_link": {"url": "https://example.com/agenda", "title": "Agenda"},
    });
    let mut request = info.clone();
    request["type"] = json!("set_room_info");
    request["reason"] = json!("agenda is out");
    moderator.ok(request).await;
    for client in [&mut moderator, &mut listener] {
        let event = client.event("room_info", |_| true).await;
        assert_eq!(event["info"], info, "{event}");
        assert!(event["seq"].as_u64().is_some(), "{event}");
    }
    // A late joiner finds it in the welcome snapshot, and in get_state.
    let (mut late, welcome) = hub.join("late", "info", Role::Audience).await;
    assert_eq!(welcome["state"]["info"], info, "{welcome}");
    let state = late.ok(json!({"type": "get_state"})).await;
    assert_eq!(state["result"]["info"], info, "{state}");

    // Setting the same again changes nothing (no event); clearing the link keeps the description.
    moderator.ok(json!({"type": "set_room_info", "description": "Weekly Rust hour.\nBe kind."})).await;
    moderator.ok(json!({"type": "set_room_info", "pinned_link": null})).await;
    let event = late.event("room_info", |_| true).await;
    assert_eq!(event["info"], json!({"description": "Weekly Rust hour.\nBe kind."}), "one event, for the change");
    moderator.ok(json!({"type": "set_room_info", "description": null})).await;
    assert_eq!(late.event("room_info", |_| true).await["info"], json!({}));
    let (_, welcome) = hub.join("later", "info", Role::Audience).await;
    assert!(welcome["state"].get("info").is_none(), "cleared: omitted again: {welcome}");
    hub.stop().await;
}

#[tokio::test]
async fn a_raised_hand_expires_after_the_configured_time_and_the_raiser_is_told() {
    const TTL_MS: u64 = 400;
    let hub = TestHub::start_with(|c| c.room.hand_ttl_ms = TTL_MS).await;
    let (mut moderator, _) = hub.join("mod", "hands", Role::Moderator).await;
    let (mut raiser, _) = hub.join("ann", "hands", Role::Speaker).await;

    let before = Instant::now();
    let reply = raiser.ok(json!({"type": "raise_hand"})).await;
    assert_eq!(reply["result"]["position"], 1);
    let you = raiser.event("you", |e| e["you"]["hand_position"] == 1).await;
    let deadline = you["you"]["hand_expires_at_ms"].as_u64().expect("the raiser is told when the hand expires");
    moderator.event("hand_queue", |e| e["queue"]["total"] == 1).await;

    let lowered = raiser.event("hand_lowered", |_| true).await;
    let waited = before.elapsed();
    assert_eq!(lowered["cause"], "expired", "{lowered}");
    assert!(lowered.get("by").is_none() && lowered.get("by_admin").is_none(), "{lowered}");
    assert!(waited >= Duration::from_millis(TTL_MS - 50), "not early: lowered after {waited:?}");
    let you = raiser.event("you", |e| e["seq"] == lowered["seq"]).await;
    assert!(you["you"].get("hand_position").is_none() && you["you"].get("hand_expires_at_ms").is_none(), "{you}");
    let queue = moderator.event("hand_queue", |e| e["queue"]["total"] == 0).await;
    assert_eq!(queue["seq"], lowered["seq"], "one transition");

    // Raising again starts a new period.
    raiser.ok(json!({"type": "raise_hand"})).await;
    let you = raiser.event("you", |e| e["you"]["hand_position"] == 1).await;
    let again = you["you"]["hand_expires_at_ms"].as_u64().expect("a new deadline");
    assert!(again > deadline, "{again} after {deadline}");
    assert_eq!(raiser.event("hand_lowered", |_| true).await["cause"], "expired");
    hub.stop().await;
}

#[tokio::test]
async fn moderators_clear_the_hand_queue() {
    let hub = TestHub::start().await;
    let (mut moderator, _) = hub.join("mod", "clear", Role::Moderator).await;
    let mut raisers = Vec::new();
    for who in ["ann", "bob", "cy"] {
        let (mut c, _) = hub.join(who, "clear", Role::Speaker).await;
        c.ok(json!({"type": "raise_hand"})).await;
        raisers.push(c);
    }
    let (mut bystander, _) = hub.join("dee", "clear", Role::Speaker).await;
    moderator.event("hand_queue", |e| e["queue"]["total"] == 3).await;

    bystander.expect_error(json!({"type": "clear_hands"}), "forbidden").await;
    moderator.expect_error(json!({"type": "clear_hands", "reason": "bad\u{7}"}), "bad_request").await;
    moderator.ok(json!({"type": "clear_hands", "reason": "next topic"})).await;
    let queue = moderator.event("hand_queue", |e| e["queue"]["total"] == 0).await;
    for raiser in &mut raisers {
        let lowered = raiser.event("hand_lowered", |_| true).await;
        assert_eq!(
            (&lowered["cause"], &lowered["by"], &lowered["reason"], &lowered["seq"]),
            (&json!("cleared"), &json!("mod"), &json!("next topic"), &queue["seq"]),
            "each raiser is told, in the one transition: {lowered}"
        );
        raiser.event("you", |e| e["seq"] == queue["seq"] && e["you"].get("hand_position").is_none()).await;
    }
    let seen = bystander.drain(Duration::from_millis(200)).await;
    assert!(!seen.iter().any(|e| e["type"] == "hand_lowered"), "only raisers are told: {seen:?}");
    // Nothing raised: a no-op.
    moderator.ok(json!({"type": "clear_hands"})).await;
    hub.stop().await;
}

#[tokio::test]
async fn administrators_set_room_info_and_clear_hands_through_the_admin_api() {
    let hub = TestHub::start().await;
    let (mut moderator, _) = hub.join("mod", "api", Role::Moderator).await;
    let (mut raiser, _) = hub.join("ann", "api", Role::Speaker).await;
    raiser.ok(json!({"type": "raise_hand"})).await;
    let http = reqwest::Client::new();
    let base = format!("http://{}/v1/admin/rooms/api", hub.addr);
    let call = |method: reqwest::Method, path: &str, token: String, body: Option<Value>| {
        let mut req = http.request(method, format!("{base}{path}")).bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        async move {
            let resp = req.send().await.expect("request");
            let status = resp.status();
            let text = resp.text().await.expect("body");
            (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("JSON") })
        }
    };
    let moderate = || hub.admin_token("ops", Scope::Moderate);

    // The same rules as a moderator's request: bad values are refused (problem+json with the protocol code).
    let (status, problem) =
        call(reqwest::Method::PATCH, "/info", moderate(), Some(json!({"pinned_link": {"url": "ftp://example.com"}})))
            .await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_request")), "{problem}");
    let (status, _) =
        call(reqwest::Method::PATCH, "/info", hub.admin_token("dash", Scope::Read), Some(json!({"description": "x"})))
            .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the read scope may not");

    let (status, room) = call(
        reqwest::Method::PATCH,
        "/info",
        moderate(),
        Some(json!({"description": "Main stage", "pinned_link": {"url": "https://example.com/a"}, "reason": "day 2"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{room}");
    let info = json!({"description": "Main stage", "pinned_link": {"url": "https://example.com/a"}});
    assert_eq!(room["info"], info, "{room}");
    assert_eq!(moderator.event("room_info", |_| true).await["info"], info);
    assert_eq!(raiser.event("room_info", |_| true).await["info"], info);

    let (status, _) =
        call(reqwest::Method::DELETE, "/hands", moderate(), Some(json!({"reason": "starting over"}))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let lowered = raiser.event("hand_lowered", |_| true).await;
    assert_eq!(
        (&lowered["cause"], &lowered["by_admin"], &lowered["reason"]),
        (&json!("cleared"), &json!("ops"), &json!("starting over")),
        "{lowered}"
    );
    assert!(lowered.get("by").is_none(), "an administrator is not an identity: {lowered}");

    // Both are in the room's audit log, as the administrator's.
    let (status, audit) = call(reqwest::Method::GET, "/audit?limit=100", moderate(), None).await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let entries: Vec<(String, String, String)> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (s("action"), s("actor"), s("reason"))
        })
        .collect();
    let expected = [
        ("room.info_changed".to_owned(), "admin:ops".to_owned(), "day 2".to_owned()),
        ("hand.lowered".to_owned(), "admin:ops".to_owned(), "starting over".to_owned()),
    ];
    for entry in expected {
        assert!(entries.contains(&entry), "{entry:?} in {entries:?}");
    }
    hub.stop().await;
}

/// Two hubs sharing a room through Redis: the info set on one reaches the other's clients and its welcome snapshots
/// (it travels in the commit's announcement, apart from the room's fields); a hand raised on one hub expires by the
/// lease hub's timer and the raiser, on the other hub, is told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_info_and_hand_expiry_follow_the_room_across_hubs() {
    const TTL_MS: u64 = 600;
    let redis = podium_store::redis_server::RedisServer::start();
    let shared = |c: &mut podium_hub::Config| {
        c.store.url = redis.url();
        c.room.hand_ttl_ms = TTL_MS;
    };
    let a = TestHub::start_with(shared).await;
    let b = TestHub::start_with(shared).await;
    let (mut moderator, _) = a.join_when_up("mod", "shared", Role::Moderator).await;
    let (mut listener, _) = b.join_when_up("lis", "shared", Role::Speaker).await;

    let info = json!({"description": "Across hubs", "pinned_link": {"url": "https://example.com/x", "title": "X"}});
    let mut request = info.clone();
    request["type"] = json!("set_room_info");
    moderator.ok(request).await;
    assert_eq!(listener.event("room_info", |_| true).await["info"], info, "delivered by the other hub");
    let (_, welcome) = b.join("late", "shared", Role::Audience).await;
    assert_eq!(welcome["state"]["info"], info, "the other hub's copy of the room has it: {welcome}");

    let before = Instant::now();
    listener.ok(json!({"type": "raise_hand"})).await;
    moderator.event("hand_queue", |e| e["queue"]["total"] == 1).await;
    let lowered = listener.event("hand_lowered", |_| true).await;
    assert_eq!(lowered["cause"], "expired", "{lowered}");
    assert!(before.elapsed() >= Duration::from_millis(TTL_MS - 50), "not early: {:?}", before.elapsed());
    moderator.event("hand_queue", |e| e["queue"]["total"] == 0).await;
    a.stop().await;
    b.stop().await;
}
