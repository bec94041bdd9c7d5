//! Two hubs on one Redis (a `redis-server` this test starts), each with its own websocket clients in one room: a
//! transition made on one hub reaches the other hub's clients with the same sequence number, races for the last
//! stage seat have one winner, head counts include both hubs' participants, and a kick closes the target's
//! connection on the other hub.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use podium_hub::Role;
use podium_store::redis_server::RedisServer;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

mod common;

use common::{Node, TIMEOUT};
use futures_util::StreamExt as _;
use tokio_tungstenite::tungstenite::Message;

async fn two_nodes(stage_capacity: u32) -> (RedisServer, Node, Node) {
    let redis = RedisServer::start();
    let tweak = |c: &mut podium_hub::Config| {
        c.room.stage_capacity = stage_capacity;
        c.room.counts_interval_ms = 100;
    };
    let a = Node::start(&redis.url(), tweak).await;
    let b = Node::start(&redis.url(), tweak).await;
    (redis, a, b)
}

fn stage_ids(stage: &Value) -> Vec<String> {
    stage.as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_on_one_hub_sees_a_promotion_made_on_the_other() {
    let (_redis, a, b) = two_nodes(13).await;
    let (mut alice, _) = b.join("alice", Role::Moderator).await;
    let (mut bob, welcome) = a.join("bob", Role::Speaker).await;
    assert_eq!(stage_ids(&welcome["state"]["stage"]), ["alice"], "node A loaded the room node B created");

    assert_eq!(bob.request(json!({"type": "raise_hand"})).await["type"], "ok");
    let queue = alice.wait_for("hand queue on node B", |v| v["type"] == "hand_queue").await;
    assert_eq!(queue["queue"]["hands"][0]["id"], "bob", "{queue}");

    assert_eq!(alice.request(json!({"type": "approve_hand", "participant": "bob"})).await["type"], "ok");
    let promoted = |v: &Value| v["type"] == "stage" && v["cause"]["kind"] == "promoted";
    let on_b = alice.wait_for("stage event on node B", promoted).await;
    let on_a = bob.wait_for("stage event on node A", promoted).await;
    assert_eq!(on_a, on_b, "the same event, seq included, on both hubs");
    assert_eq!(stage_ids(&on_a["stage"]), ["alice", "bob"]);
    let you = bob.wait_for("you event on node A", |v| v["type"] == "you" && v["you"]["role"] == "speaker").await;
    assert_eq!(you["seq"], on_a["seq"], "{you}");
    assert!(
        !bob.seen.iter().chain(&alice.seen).any(|v| v["type"] == "resync"),
        "followed by announcements, not by resyncs"
    );

    // Both hubs agree on the room.
    let state_a = bob.request(json!({"type": "get_state"})).await;
    let state_b = alice.request(json!({"type": "get_state"})).await;
    assert_eq!(state_a["result"]["seq"], state_b["result"]["seq"]);
    assert_eq!(state_a["result"]["stage"], state_b["result"]["stage"]);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderators_on_two_hubs_racing_for_the_last_seat_one_wins() {
    for round in 0..3 {
        // Two moderators take two of three seats; bob and carol race for the last one.
        let (_redis, a, b) = two_nodes(3).await;
        let (mut alice, _) = a.join("alice", Role::Moderator).await;
        let (mut dave, _) = b.join("dave", Role::Moderator).await;
        let (mut bob, _) = a.join("bob", Role::Speaker).await;
        let (mut carol, _) = b.join("carol", Role::Speaker).await;
        assert_eq!(bob.request(json!({"type": "raise_hand"})).await["type"], "ok");
        assert_eq!(carol.request(json!({"type": "raise_hand"})).await["type"], "ok");
        // Both hubs know both hands before the race: an event, or a resync if the raises raced each other.
        for m in [&mut alice, &mut dave] {
            m.wait_for("both hands", |v| {
                (v["type"] == "hand_queue" && v["queue"]["total"] == 2)
                    || (v["type"] == "resync" && v["state"]["hands"]["total"] == 2)
            })
            .await;
        }

        let (ra, rd) = tokio::join!(
            alice.request(json!({"type": "approve_hand", "participant": "bob"})),
            dave.request(json!({"type": "approve_hand", "participant": "carol"})),
        );
        let oks = [&ra, &rd].iter().filter(|r| r["type"] == "ok").count();
        assert_eq!(oks, 1, "round {round}: exactly one approval wins: {ra} / {rd}");
        let loser = if ra["type"] == "ok" { &rd } else { &ra };
        assert_eq!(loser["code"], "stage_full", "round {round}: the loser is told the stage is full: {loser}");

        // Both hubs converge on the same three-seat stage.
        let mut last = (Value::Null, Value::Null);
        for _ in 0..50 {
            let sa = alice.request(json!({"type": "get_state"})).await["result"].clone();
            let sb = dave.request(json!({"type": "get_state"})).await["result"].clone();
            if sa["seq"] == sb["seq"] && sa["stage"] == sb["stage"] {
                assert_eq!(sa["stage"].as_array().unwrap().len(), 3, "{sa}");
                last = (Value::Null, Value::Null);
                break;
            }
            last = (sa, sb);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(last, (Value::Null, Value::Null), "round {round}: the hubs did not converge");
        a.stop().await;
        b.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_include_participants_on_both_hubs() {
    let (_redis, a, b) = two_nodes(13).await;
    let (mut alice, _) = a.join("alice", Role::Moderator).await;
    let (mut bob, _) = b.join("bob", Role::Audience).await;
    let (_carol, _) = b.join("carol", Role::Audience).await;
    let (_erin, _) = a.join("erin", Role::Audience).await;
    let full = |v: &Value| v["type"] == "counts" && v["counts"]["total"] == 4;
    let on_a = alice.wait_for("counts of 4 on node A", full).await;
    let on_b = bob.wait_for("counts of 4 on node B", full).await;
    assert_eq!(on_a["counts"], json!({"stage": 1, "audience": 3, "hands": 0, "total": 4}), "{on_a}");
    assert_eq!(on_a, on_b);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kick_on_one_hub_closes_the_target_on_the_other_with_4004() {
    let (_redis, a, b) = two_nodes(13).await;
    let (mut alice, _) = b.join("alice", Role::Moderator).await;
    let (mut eve, _) = a.join("eve", Role::Audience).await;
    // Node B learns of eve's join from node A's announcement; a kick before that would be `not_found` there.
    alice.wait_for("eve's arrival on node B", |v| v["type"] == "participant_joined").await;
    assert_eq!(alice.request(json!({"type": "kick", "participant": "eve"})).await["type"], "ok");
    let close = tokio::time::timeout(TIMEOUT, async {
        loop {
            match eve.ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => {}
                other => panic!("connection ended without a close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("eve's connection closed in time");
    assert_eq!(close.map(|f| f.code), Some(CloseCode::Library(4004)));
    let state = alice.request(json!({"type": "get_state"})).await;
    assert_eq!(state["result"]["counts"]["total"], 1, "{state}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_in_announcements_reloads_the_room_and_resyncs_its_connections() {
    let (redis, a, b) = two_nodes(13).await;
    let (mut alice, _) = a.join("alice", Role::Moderator).await;
    let (mut bob, _) = b.join("bob", Role::Speaker).await;
    // Bob joined last, on B: B is at the stored seq.
    let seq = bob.request(json!({"type": "get_state"})).await["result"]["seq"].as_u64().unwrap();
    // An announcement from a third hub that is ahead of everyone: both hubs missed something and must reload.
    let ahead = json!({"node": "elsewhere", "seq": seq + 5}).to_string();
    let published = redis.command(&["PUBLISH", "podium:{summit}:events", &ahead]);
    assert!(published.starts_with(":2"), "both hubs subscribed: {published}");
    for c in [&mut alice, &mut bob] {
        let resync = c.wait_for("resync", |v| v["type"] == "resync").await;
        // The store is the truth: the reloaded room is at the stored seq, not the bogus one.
        assert_eq!(resync["seq"], json!(seq), "{resync}");
    }
    // And the room works on as before.
    assert_eq!(bob.request(json!({"type": "raise_hand"})).await["type"], "ok");
    alice.wait_for("bob's hand", |v| v["type"] == "hand_queue" && v["queue"]["total"] == 1).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_participants_of_a_hub_that_is_gone_get_their_grace_period_and_leave() {
    let redis = RedisServer::start();
    let tweak = |c: &mut podium_hub::Config| {
        c.room.grace_ms = 1_500;
        c.room.counts_interval_ms = 100;
    };
    let a = Node::start(&redis.url(), tweak).await;
    let b = Node::start(&redis.url(), tweak).await;
    // Alice's hub creates the room, so it holds the room's lease and runs its timers.
    let (mut alice, _) = a.join("alice", Role::Moderator).await;
    let (_bob, welcome) = b.join("bob", Role::Moderator).await;
    assert_eq!(stage_ids(&welcome["state"]["stage"]), ["alice", "bob"]);
    let store = podium_store::RedisStore::connect(&redis.url(), &podium_store::RedisOptions::default()).await.unwrap();
    let presence = store.presence(common::ROOM).await.unwrap();
    assert_eq!(presence.len(), 2, "both participants' hubs are recorded: {presence:?}");
    assert_ne!(presence["alice"], presence["bob"]);

    // Hub B goes away without recording bob's disconnect (as if it crashed) and leaves the node registry, after
    // hub A's registry readings have seen it alive.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let stopped = std::time::Instant::now();
    b.stop().await;
    let bob_down = |v: &Value| {
        v["type"] == "stage"
            && v["stage"].as_array().unwrap().iter().any(|m| m["id"] == "bob" && m["connected"] == false)
    };
    let down = alice.wait_for("bob shown disconnected once his hub is gone", bob_down).await;
    let noticed = stopped.elapsed();
    alice.seen.retain(|v| v["seq"].as_u64() > down["seq"].as_u64());
    let bob_gone = |v: &Value| v["type"] == "stage" && stage_ids(&v["stage"]) == ["alice"];
    alice.wait_for("bob gone after the grace period", bob_gone).await;
    let left = stopped.elapsed();
    eprintln!("hub gone → bob disconnected after {noticed:?}, left after {left:?}");
    assert!(noticed < Duration::from_secs(5), "noticed within a few seconds: {noticed:?}");
    assert!(left >= Duration::from_millis(1_500), "not before the grace period: {left:?}");
    a.stop().await;
}
