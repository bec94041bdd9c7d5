//! Issue #15, item 2, against a real hub: room chat (`send_chat`, `delete_chat`, `chat_history`, the `chat` and
//! `chat_deleted` events, `chat` in the snapshot), its settings (`chat`, `chat_slow_mode_ms`) from a moderator and the
//! admin API, every refusal (after which the connection still works), the admin API's history and deletion (audited),
//! and two hubs sharing a room's chat through Redis across restarts.

use std::time::Duration;

use podium_hub::Role;
use podium_hub::auth::Scope;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Client, TestHub};

/// Sends a chat message and returns its id.
async fn say(client: &mut Client, text: &str) -> u64 {
    let reply = client.ok(json!({"type": "send_chat", "text": text})).await;
    reply["result"]["message_id"].as_u64().unwrap_or_else(|| panic!("a message id: {reply}"))
}

/// The ids of a page's messages.
fn ids(page: &Value) -> Vec<u64> {
    page["messages"].as_array().expect("messages").iter().map(|m| m["id"].as_u64().expect("id")).collect()
}

/// The connection still answers after a refusal.
async fn still_works(client: &mut Client) {
    client.ok(json!({"type": "ping"})).await;
}

#[tokio::test]
async fn chat_messages_reach_everyone_and_refusals_leave_the_connection_working() {
    let hub = TestHub::start_with(|c| c.chat.max_chars = 20).await;
    let (mut moderator, welcome) = hub.join("mod", "chat", Role::Moderator).await;
    assert!(welcome["state"].get("chat").is_none() && welcome["state"].get("chat_more").is_none(), "{welcome}");
    assert_eq!(welcome["state"]["settings"]["chat"], true, "{welcome}");
    let (mut alice, _) = hub.join("alice", "chat", Role::Speaker).await;
    let (mut bob, _) = hub.join("bob", "chat", Role::Audience).await;

    let id = say(&mut alice, "  hello\nworld  ").await;
    for client in [&mut moderator, &mut alice, &mut bob] {
        let event = client.event("chat", |_| true).await;
        let message = &event["message"];
        assert_eq!(message["id"], id, "{event}");
        assert_eq!(message["text"], "hello\nworld", "trimmed, newline kept: {event}");
        assert_eq!(message["from"], json!({"id": "alice", "name": "ALICE"}), "{event}");
        assert!(message["at_ms"].as_u64().is_some_and(|t| t > 1_700_000_000_000), "{event}");
        assert!(event["seq"].as_u64().is_some(), "a room event: {event}");
    }
    let second = say(&mut bob, "hi").await;
    assert!(second > id, "ids only grow: {second} after {id}");

    // Bad text: empty after trimming, too long, a control character other than a newline.
    for text in ["   ", &"é".repeat(21), "tab\there", "bell\u{7}"] {
        let refused = bob.expect_error(json!({"type": "send_chat", "text": text}), "bad_request").await;
        assert!(refused["message"].as_str().is_some_and(|m| m.contains("chat text")), "{refused}");
        still_works(&mut bob).await;
    }
    bob.expect_error(json!({"type": "send_chat"}), "bad_request").await;
    still_works(&mut bob).await;

    // Deleting: someone else's message is forbidden, an unknown id not found; the author and a moderator may.
    let forged = bob.expect_error(json!({"type": "delete_chat", "message_id": id}), "forbidden").await;
    assert!(forged["message"].as_str().is_some_and(|m| m.contains("moderators")), "{forged}");
    still_works(&mut bob).await;
    bob.expect_error(json!({"type": "delete_chat", "message_id": 9_999}), "not_found").await;
    still_works(&mut bob).await;
    bob.ok(json!({"type": "delete_chat", "message_id": second})).await;
    let deleted = alice.event("chat_deleted", |_| true).await;
    assert_eq!((&deleted["message_id"], &deleted["by"]), (&json!(second), &json!("bob")), "{deleted}");
    bob.expect_error(json!({"type": "delete_chat", "message_id": second}), "not_found").await;
    moderator.ok(json!({"type": "delete_chat", "message_id": id, "reason": "off topic"})).await;
    let deleted = bob.event("chat_deleted", |e| e["message_id"] == id).await;
    assert_eq!((&deleted["by"], &deleted["reason"]), (&json!("mod"), &json!("off topic")), "{deleted}");
    bob.expect_error(json!({"type": "delete_chat", "message_id": id, "reason": "x\u{7}"}), "bad_request").await;

    // Chat off: everyone is refused (moderators too), until it is on again.
    bob.expect_error(json!({"type": "update_settings", "chat": false}), "forbidden").await;
    moderator.ok(json!({"type": "update_settings", "chat": false})).await;
    let settings = bob.event("settings", |e| e["settings"]["chat"] == false).await;
    assert_eq!(settings["settings"]["chat_slow_mode_ms"], 0, "{settings}");
    let off = bob.expect_error(json!({"type": "send_chat", "text": "anyone?"}), "forbidden").await;
    assert!(off["message"].as_str().is_some_and(|m| m.contains("chat is off")), "{off}");
    moderator.expect_error(json!({"type": "send_chat", "text": "me?"}), "forbidden").await;
    still_works(&mut bob).await;
    moderator.ok(json!({"type": "update_settings", "chat": true})).await;
    say(&mut bob, "back").await;

    // Slow mode: speakers and the audience wait between messages, moderators do not.
    moderator.expect_error(json!({"type": "update_settings", "chat_slow_mode_ms": 3_600_001}), "bad_request").await;
    moderator.ok(json!({"type": "update_settings", "chat_slow_mode_ms": 1_500})).await;
    bob.event("settings", |e| e["settings"]["chat_slow_mode_ms"] == 1_500).await;
    let slow = bob.expect_error(json!({"type": "send_chat", "text": "again"}), "rate_limited").await;
    assert!(slow["message"].as_str().is_some_and(|m| m.contains("slow mode")), "{slow}");
    still_works(&mut bob).await;
    say(&mut alice, "one").await;
    alice.expect_error(json!({"type": "send_chat", "text": "two"}), "rate_limited").await;
    for n in 0..3 {
        say(&mut moderator, &format!("mod {n}")).await;
    }
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    say(&mut bob, "after the wait").await;
    say(&mut alice, "two").await;
    hub.stop().await;
}

#[tokio::test]
async fn history_pages_with_cursors_the_snapshot_has_the_last_messages_and_the_room_caps_floods() {
    const HISTORY: usize = 25;
    let hub = TestHub::start_with(|c| {
        c.chat.history_messages = HISTORY;
        c.chat.snapshot_messages = 5;
        c.chat.page_limit = 10;
        c.chat.room_messages_per_second = 1_000;
        c.chat.room_messages_burst = 1_000;
    })
    .await;
    let (mut moderator, _) = hub.join("mod", "pages", Role::Moderator).await;
    let mut sent = Vec::new();
    for n in 0..30 {
        sent.push(say(&mut moderator, &format!("message {n}")).await);
    }
    // Trimmed by count: the oldest five are gone.
    let kept = &sent[sent.len() - HISTORY..];

    let (mut reader, welcome) = hub.join("reader", "pages", Role::Audience).await;
    let snapshot: Vec<u64> = welcome["state"]["chat"]
        .as_array()
        .expect("chat in the snapshot")
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(snapshot, kept[kept.len() - 5..], "the last five, oldest first");
    assert_eq!(welcome["state"]["chat_more"], true, "{welcome}");
    assert_eq!(welcome["state"]["chat"][4]["text"], "message 29");

    // Paging back from the newest: three pages of ten, five and the end.
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let mut request = json!({"type": "chat_history", "limit": 10});
        if let Some(b) = before {
            request["before"] = json!(b);
        }
        let reply = reader.ok(request).await;
        let page = reply["result"].clone();
        pages.push(ids(&page));
        match page.get("next_before") {
            Some(next) => before = next.as_u64(),
            None => break,
        }
    }
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert_eq!(pages.iter().rev().flatten().copied().collect::<Vec<_>>(), kept, "every kept message once, in order");
    assert_eq!(pages[0].len(), 10);
    // The default page (50) is capped by the page limit; out-of-range limits are refused.
    let reply = reader.ok(json!({"type": "chat_history"})).await;
    assert_eq!(ids(&reply["result"]).len(), 10, "{reply}");
    reader.expect_error(json!({"type": "chat_history", "limit": 11}), "bad_request").await;
    reader.expect_error(json!({"type": "chat_history", "limit": 0}), "bad_request").await;
    still_works(&mut reader).await;
    // Deleted messages are not returned.
    moderator.ok(json!({"type": "delete_chat", "message_id": kept[24]})).await;
    let reply = reader.ok(json!({"type": "chat_history", "limit": 3})).await;
    assert_eq!(ids(&reply["result"]), kept[21..24], "{reply}");
    hub.stop().await;

    // The room-wide flood cap: a burst of three, then about one a second, over every sender.
    let hub = TestHub::start_with(|c| {
        c.chat.room_messages_per_second = 1;
        c.chat.room_messages_burst = 3;
    })
    .await;
    let (mut a, _) = hub.join("a", "flood", Role::Speaker).await;
    let (mut b, _) = hub.join("b", "flood", Role::Speaker).await;
    say(&mut a, "1").await;
    say(&mut b, "2").await;
    say(&mut a, "3").await;
    let capped = b.expect_error(json!({"type": "send_chat", "text": "4"}), "rate_limited").await;
    assert!(capped["message"].as_str().is_some_and(|m| m.contains("too many chat messages")), "{capped}");
    still_works(&mut b).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    say(&mut b, "4").await;
    hub.stop().await;
}

#[tokio::test]
async fn the_admin_api_reads_and_deletes_chat_audited_and_switches_it() {
    let hub = TestHub::start().await;
    let (mut moderator, _) = hub.join("mod", "adminchat", Role::Moderator).await;
    let (mut bob, _) = hub.join("bob", "adminchat", Role::Audience).await;
    let first = say(&mut bob, "first").await;
    let second = say(&mut bob, "second").await;
    let http = reqwest::Client::new();
    let base = format!("http://{}/v1/admin/rooms/adminchat", hub.addr);
    let reader = hub.admin_token("viewer", Scope::Read);
    let ops = hub.admin_token("ops", Scope::Moderate);

    let page: Value = http
        .get(format!("{base}/chat?limit=1"))
        .bearer_auth(&reader)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(ids(&page), [second], "{page}");
    assert_eq!(page["next_before"], second, "{page}");
    assert_eq!(page["messages"][0]["from"], json!({"id": "bob", "name": "BOB"}), "{page}");
    let bad = http.get(format!("{base}/chat?limit=1000")).bearer_auth(&reader).send().await.expect("get");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let forbidden = http.delete(format!("{base}/chat/{first}")).bearer_auth(&reader).send().await.expect("delete");
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN, "deleting needs scope moderate");

    let deleted = http
        .delete(format!("{base}/chat/{first}"))
        .bearer_auth(&ops)
        .json(&json!({"reason": "spam"}))
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let event = bob.event("chat_deleted", |_| true).await;
    assert_eq!(
        (&event["message_id"], &event["by_admin"], &event["reason"]),
        (&json!(first), &json!("ops"), &json!("spam")),
        "{event}"
    );
    assert!(event.get("by").is_none(), "{event}");
    let again = http.delete(format!("{base}/chat/{first}")).bearer_auth(&ops).send().await.expect("delete");
    assert_eq!(again.status(), StatusCode::NOT_FOUND);

    // Slow mode through the admin API (`PATCH` needs scope admin).
    let admin = hub.admin_token("root", Scope::Admin);
    let patched =
        http.patch(&base).bearer_auth(&admin).json(&json!({"chat_slow_mode_ms": 60_000})).send().await.expect("patch");
    assert_eq!(patched.status(), StatusCode::OK);
    let room: Value = patched.json().await.expect("json");
    assert_eq!(room["settings"]["chat_slow_mode_ms"], 60_000, "{room}");
    bob.event("settings", |e| e["settings"]["chat_slow_mode_ms"] == 60_000).await;
    bob.expect_error(json!({"type": "send_chat", "text": "third"}), "rate_limited").await;
    say(&mut moderator, "moderators are exempt").await;

    // The deletions are in the audit log.
    let audit: Value =
        http.get(format!("{base}/audit")).bearer_auth(&reader).send().await.expect("audit").json().await.expect("json");
    let entries = audit["entries"].as_array().expect("entries");
    assert!(
        entries.iter().any(|e| e["action"] == "chat.message_deleted"
            && e["actor"] == "admin:ops"
            && e["target"] == "bob"
            && e["reason"] == "spam"),
        "{audit}"
    );
    hub.stop().await;
}

/// Two hubs sharing a room through Redis: a message sent on one reaches the other's listeners and history, ids
/// continue one sequence whichever hub writes, reactions counted on one reach the other's listeners, and the history
/// survives restarting both hubs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_and_reactions_follow_the_room_across_hubs_and_restarts() {
    let redis = podium_store::redis_server::RedisServer::start();
    let shared = |c: &mut podium_hub::Config| c.store.url = redis.url();
    let a = TestHub::start_with(shared).await;
    let b = TestHub::start_with(shared).await;
    let (mut speaker, _) = a.join_when_up("ann", "across", Role::Speaker).await;
    let (mut listener, _) = b.join_when_up("lis", "across", Role::Audience).await;

    let first = say(&mut speaker, "from hub A").await;
    let event = listener.event("chat", |_| true).await;
    assert_eq!((&event["message"]["id"], &event["message"]["text"]), (&json!(first), &json!("from hub A")));
    let second = say(&mut listener, "from hub B").await;
    assert!(second > first, "one sequence of ids across hubs: {second} after {first}");
    speaker.event("chat", |e| e["message"]["id"] == second).await;
    let page = listener.ok(json!({"type": "chat_history"})).await;
    assert_eq!(ids(&page["result"]), [first, second], "{page}");
    listener.ok(json!({"type": "delete_chat", "message_id": second})).await;
    speaker.event("chat_deleted", |e| e["message_id"] == second).await;

    // Reactions from hub A's listeners are counted on hub B, beside B's own: each hub sends its window's counts, so a
    // listener gets at most one event per window from each hub.
    let started = std::time::Instant::now();
    for _ in 0..4 {
        speaker.ok(json!({"type": "react", "reaction": "clap"})).await;
        listener.ok(json!({"type": "react", "reaction": "heart"})).await;
    }
    let mut seen = std::collections::BTreeMap::<String, u64>::new();
    let mut events = 0;
    while seen.values().sum::<u64>() < 8 {
        let event = listener.event("reactions", |_| true).await;
        events += 1;
        for (kind, n) in event["counts"].as_object().expect("counts") {
            *seen.entry(kind.clone()).or_default() += n.as_u64().expect("a count");
        }
    }
    let later = listener.drain(Duration::from_millis(700)).await;
    assert!(later.iter().all(|e| e["type"] != "reactions"), "nothing more: {later:?}");
    assert_eq!(seen, [("clap".to_owned(), 4), ("heart".to_owned(), 4)].into(), "each counted once on hub B");
    let windows = started.elapsed().as_millis() as usize / 500 + 1;
    assert!(events <= 2 * windows, "{events} events in {windows} windows from two hubs");

    drop(speaker);
    drop(listener);
    a.stop().await;
    b.stop().await;
    let a = TestHub::start_with(shared).await;
    let (mut back, welcome) = a.join_when_up("ann", "across", Role::Speaker).await;
    let snapshot: Vec<u64> =
        welcome["state"]["chat"].as_array().expect("chat kept").iter().map(|m| m["id"].as_u64().unwrap()).collect();
    assert_eq!(snapshot, [first], "the history survived the restart (the deleted message stays deleted)");
    let third = say(&mut back, "after the restart").await;
    assert!(third > second, "ids keep growing after a restart: {third}");
    a.stop().await;
}
