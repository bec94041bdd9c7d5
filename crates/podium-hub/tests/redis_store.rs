//! The hub on the Redis store, against a `redis-server` this test starts: room state outlives the hub, and while
//! Redis is down, requests that would change a room get `unavailable` and change nothing; the hub recovers by itself.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use podium_hub::Role;
use podium_store::redis_server::RedisServer;
use serde_json::{Value, json};

mod common;

use common::{Client, Node};

/// Retries `approve_hand` (answered `unavailable` meanwhile) until the hub reaches Redis again.
async fn approve_when_redis_is_back(moderator: &mut Client, who: &str) {
    let mut approved = Value::Null;
    for _ in 0..50 {
        approved = moderator.request(json!({"type": "approve_hand", "participant": who})).await;
        if approved["type"] == "ok" {
            return;
        }
        assert_eq!(approved["code"], "unavailable", "{approved}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the hub did not reconnect to Redis by itself: {approved}");
}

fn stage_roles(welcome: &Value) -> Vec<(String, String)> {
    welcome["state"]["stage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_str().unwrap().to_owned(), m["role"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_state_outlives_the_hub_and_redis_outages_answer_unavailable() {
    let mut redis = RedisServer::start();
    let node = Node::start(&redis.url(), |_| {}).await;
    let (mut moderator, _) = node.join("alice", Role::Moderator).await;
    let (mut bob, _) = node.join("bob", Role::Speaker).await;
    let (mut carol, _) = node.join("carol", Role::Speaker).await;
    assert_eq!(bob.request(json!({"type": "raise_hand"})).await["type"], "ok");
    assert_eq!(carol.request(json!({"type": "raise_hand"})).await["type"], "ok");

    redis.kill9();
    let reply = moderator.request(json!({"type": "approve_hand", "participant": "bob"})).await;
    assert_eq!(reply["code"], "unavailable", "{reply}");
    // Reads need no store.
    let state = moderator.request(json!({"type": "get_state"})).await;
    assert_eq!(state["type"], "ok", "{state}");
    assert_eq!(state["result"]["hands"]["total"], 2, "the refused approval changed nothing: {state}");

    redis.restart();
    approve_when_redis_is_back(&mut moderator, "bob").await;

    // A connection dropped while Redis is down: its grace period starts once Redis is back.
    redis.kill9();
    drop(bob);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reply = moderator.request(json!({"type": "approve_hand", "participant": "carol"})).await;
    assert_eq!(reply["code"], "unavailable", "{reply}");
    redis.restart();
    approve_when_redis_is_back(&mut moderator, "carol").await;
    let mut bob_connected = Value::Null;
    for _ in 0..50 {
        let state = moderator.request(json!({"type": "get_state"})).await;
        let stage = state["result"]["stage"].as_array().unwrap().clone();
        bob_connected = stage.iter().find(|m| m["id"] == "bob").expect("bob on stage")["connected"].clone();
        if bob_connected == false {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(bob_connected, false, "bob's dropped connection was applied after the outage");

    // A new hub on the same Redis (the first one stopped) finds the room as it was.
    node.stop().await;
    drop((moderator, carol));
    let node = Node::start(&redis.url(), |_| {}).await;
    let (_moderator, welcome) = node.join("alice", Role::Moderator).await;
    assert_eq!(welcome["resumed"], true, "{welcome}");
    assert_eq!(
        stage_roles(&welcome),
        [
            ("alice".to_owned(), "moderator".to_owned()),
            ("bob".to_owned(), "speaker".to_owned()),
            ("carol".to_owned(), "speaker".to_owned())
        ]
    );
    assert_eq!(welcome["state"]["hands"]["total"], 0, "{welcome}");
    node.stop().await;
}
