//! Bad input of every kind gets its documented code, and nothing else breaks: the connection, the room and the
//! other clients carry on.

use std::time::Duration;

use podium_hub::Role;
use podium_hub::auth::{Claims, TokenKeys, claims_for, unix_now};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::support::TestHub;

#[tokio::test]
async fn malformed_messages_get_precise_errors_and_the_connection_stays() {
    let hub = TestHub::start_with(|c| c.limits.max_message_bytes = 1024).await;
    let (mut m, _) = hub.join("mod", "bad", Role::Moderator).await;
    let (mut c, _) = hub.join("c", "bad", Role::Speaker).await;

    c.send_text("{not json").await;
    let e = c.reply_to(serde_json::Value::Null).await;
    assert_eq!((e["type"].as_str(), e["code"].as_str()), (Some("error"), Some("bad_request")));

    c.send_text(r#"{"type":"teleport","id":5}"#).await;
    let e = c.reply_to(json!(5)).await;
    assert_eq!(e["code"], "unknown_type");

    c.send_text(r#"{"type":"raise_hand"}"#).await;
    let e = c.reply_to(serde_json::Value::Null).await;
    assert_eq!(e["code"], "bad_request");
    assert!(e["message"].as_str().unwrap_or_default().contains("id"), "{e}");

    c.send_text(r#"{"id":6}"#).await;
    assert_eq!(c.reply_to(json!(6)).await["code"], "bad_request");

    c.send_text(r#"{"type":"mute","id":7,"participant":42}"#).await;
    assert_eq!(c.reply_to(json!(7)).await["code"], "bad_request");

    c.send_raw(Message::Binary(vec![1, 2, 3].into())).await;
    assert_eq!(c.reply_to(serde_json::Value::Null).await["code"], "bad_request");

    let big = format!(r#"{{"type":"ping","id":8,"pad":"{}"}}"#, "x".repeat(2000));
    c.send_text(&big).await;
    assert_eq!(c.reply_to(serde_json::Value::Null).await["code"], "too_large");

    c.expect_error(json!({"type": "join", "token": "x"}), "conflict").await;

    // Still fine, and so is the room.
    c.ok(json!({"type": "raise_hand"})).await;
    m.event("hand_queue", |e| e["queue"]["total"] == 1).await;
    m.ok(json!({"type": "approve_hand", "participant": "c"})).await;
    hub.stop().await;
}

#[tokio::test]
async fn a_frame_over_the_hard_limit_closes_only_that_connection() {
    let hub = TestHub::start_with(|c| {
        c.limits.max_message_bytes = 1024;
        c.limits.max_frame_bytes = 4096;
    })
    .await;
    let (mut other, _) = hub.join("other", "r", Role::Speaker).await;
    let (mut c, _) = hub.join("c", "r", Role::Speaker).await;
    c.send_text(&"x".repeat(10_000)).await;
    assert_eq!(c.closed().await.0, 1009);
    other.ok(json!({"type": "ping"})).await;
    other.ok(json!({"type": "raise_hand"})).await;
    hub.stop().await;
}

#[tokio::test]
async fn flooding_past_the_rate_limit_is_refused_then_recovers() {
    let hub = TestHub::start_with(|c| {
        c.limits.requests_per_second = 10;
        c.limits.request_burst = 10;
    })
    .await;
    let (mut other, _) = hub.join("other", "flood", Role::Speaker).await;
    let (mut c, _) = hub.join("c", "flood", Role::Speaker).await;
    for i in 0..60 {
        c.send_text(&format!(r#"{{"type":"ping","id":{}}}"#, 1000 + i)).await;
    }
    let mut limited = 0;
    let mut ok = 0;
    for i in 0..60 {
        let r = c.reply_to(json!(1000 + i)).await;
        match (r["type"].as_str(), r["code"].as_str()) {
            (Some("ok"), _) => ok += 1,
            (Some("error"), Some("rate_limited")) => limited += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(limited >= 40, "expected most of the flood refused, got {limited} refused, {ok} ok");
    // The join itself spent one token of the burst of 10.
    assert!(ok >= 9, "the rest of the burst must pass, got {ok}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    c.ok(json!({"type": "ping"})).await;
    other.ok(json!({"type": "raise_hand"})).await;
    hub.stop().await;
}

#[tokio::test]
async fn missing_forged_expired_and_other_room_tokens_are_refused() {
    let hub = TestHub::start().await;
    let (mut m, _) = hub.join("mod", "secure", Role::Moderator).await;

    // A request before joining.
    let mut c = hub.connect().await;
    c.expect_error(json!({"type": "get_state"}), "unauthorized").await;
    // A join without a token field.
    c.expect_error(json!({"type": "join"}), "bad_request").await;
    // An empty token.
    c.expect_error(json!({"type": "join", "token": ""}), "unauthorized").await;
    assert_eq!(c.closed().await, (4000, "bad_auth".into()));

    let forged = TokenKeys::new(b"not-the-secret")
        .mint(&claims_for("evil", None, "secure", Role::Moderator, Duration::from_secs(60)))
        .expect("mint");
    let mut c = hub.connect().await;
    c.expect_error(json!({"type": "join", "token": forged}), "unauthorized").await;
    assert_eq!(c.closed().await.0, 4000);

    let expired = hub
        .keys
        .mint(&Claims { exp: unix_now() - 600, ..claims_for("late", None, "secure", Role::Speaker, Duration::ZERO) })
        .expect("mint");
    let mut c = hub.connect().await;
    let e = c.expect_error(json!({"type": "join", "token": expired}), "unauthorized").await;
    assert!(e["message"].as_str().unwrap_or_default().contains("expired"), "{e}");
    assert_eq!(c.closed().await.0, 4000);

    let other_room = hub.token("x", "elsewhere", Role::Speaker);
    let mut c = hub.connect().await;
    c.expect_error(json!({"type": "join", "token": other_room, "room": "secure"}), "unauthorized").await;
    assert_eq!(c.closed().await.0, 4000);

    let mut c = hub.connect().await;
    let token = hub.token("v", "secure", Role::Speaker);
    c.expect_error(json!({"type": "join", "token": token, "protocols": [99]}), "unsupported_protocol").await;
    assert_eq!(c.closed().await.0, 4002);

    // The room never noticed.
    let state = m.ok(json!({"type": "get_state"})).await;
    assert_eq!(state["result"]["counts"]["total"], 1);
    hub.stop().await;
}

#[tokio::test]
async fn audience_cannot_use_moderator_commands() {
    let hub = TestHub::start().await;
    let (mut m, _) = hub.join("mod", "r", Role::Moderator).await;
    let (mut a, _) = hub.join("a", "r", Role::Speaker).await;
    let (mut b, _) = hub.join("b", "r", Role::Speaker).await;
    b.ok(json!({"type": "raise_hand"})).await;
    for cmd in [
        json!({"type": "approve_hand", "participant": "b"}),
        json!({"type": "invite_to_stage", "participant": "b"}),
        json!({"type": "move_to_audience", "participant": "mod"}),
        json!({"type": "mute", "participant": "mod"}),
        json!({"type": "kick", "participant": "b"}),
        json!({"type": "ban", "participant": "b"}),
        json!({"type": "unban", "participant": "b"}),
        json!({"type": "make_moderator", "participant": "a"}),
        json!({"type": "revoke_moderator", "participant": "mod"}),
        json!({"type": "handover", "stage": [{"participant": "a", "role": "speaker"}]}),
        json!({"type": "update_settings", "open_mic": true}),
        json!({"type": "invite_to_room", "identity": "z"}),
        json!({"type": "list_audience"}),
        json!({"type": "end_room"}),
    ] {
        a.expect_error(cmd, "forbidden").await;
    }
    // Nothing changed: b's hand is still first, the moderator still moderates.
    let state = m.ok(json!({"type": "get_state"})).await["result"].clone();
    assert_eq!(state["hands"]["hands"][0]["id"], "b");
    assert_eq!(state["stage"].as_array().map(Vec::len), Some(1));
    m.ok(json!({"type": "approve_hand", "participant": "b"})).await;
    hub.stop().await;
}
