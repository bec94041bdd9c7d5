//! A summit stage's `schedule` on two hubs sharing one Redis (a `redis-server` this test starts): a room task reads
//! the stage control record's `schedule` when it starts and sends it to each participant right after the `join`
//! reply; a `schedule` announced by another hub (what a hub does with the runner's new frame) reaches every hub's
//! connections and is the one later joiners get.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use podium_hub::Role;
use podium_store::redis_server::RedisServer;
use podium_store::{Announced, Announcement};
use serde_json::{Value, json};

mod common;

use common::{Client, Node, ROOM};

fn schedule(release: u64, title: &str) -> Value {
    json!({
        "type": "schedule",
        "summit": "s1",
        "stage": "main",
        "room": ROOM,
        "backstage": format!("{ROOM}.backstage"),
        "release": release,
        "now": {
            "guid": "9f0c5c9e-3d8e-5b7a-9d53-2b0c6f7f3a11",
            "title": title,
            "is_break": false,
            "status": "active",
            "start_ms": 1_764_921_600_000_u64,
            "end_ms": 1_764_923_400_000_u64,
            "people": [{"id": "ada", "name": "Ada", "role": "host", "checked_in": true}]
        },
        "next": [],
        "server_time_ms": 1_764_922_000_000_u64
    })
}

fn now_ms() -> u64 {
    u64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// Asserts that `got` is `want` sent at join: the same view, with the hub's clock at sending.
fn assert_sent_at_join(got: &Value, want: &Value, since: u64) {
    assert_eq!(got["type"], "schedule", "{got}");
    assert!(got["server_time_ms"].as_u64().unwrap() >= since, "server_time_ms is the moment of sending: {got}");
    let mut got = got.clone();
    got["server_time_ms"] = want["server_time_ms"].clone();
    assert_eq!(&got, want);
}

/// Joins `room` as `identity` and returns the client and the message right after the join reply.
async fn join_and_next(node: &Node, identity: &str, role: Role) -> (Client, Value) {
    let (mut client, reply) = node.try_join(identity, role).await;
    assert_eq!(reply["type"], "ok", "join of {identity}: {reply}");
    assert!(client.seen.is_empty(), "nothing before the join reply: {:?}", client.seen);
    let next = client.read().await;
    (client, next)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joiners_get_the_stage_schedule_and_announced_changes_reach_every_hub() {
    let redis = RedisServer::start();
    // The scheduler's view of the stage, in the room's stage control record.
    let first = schedule(1, "Opening");
    let client = redis::Client::open(redis.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("podium:{{{ROOM}}}:stagectl");
    let _: i64 =
        redis::cmd("HSET").arg(&key).arg("schedule").arg(first.to_string()).query_async(&mut con).await.unwrap();

    let a = Node::start(&redis.url(), |_| {}).await;
    let b = Node::start(&redis.url(), |_| {}).await;
    let since = now_ms();
    // The moderator creates the room (her own join's `stage` event may come first).
    let (mut alice, _) = a.join("alice", Role::Moderator).await;
    let got = alice.wait_for("the schedule", |v| v["type"] == "schedule").await;
    assert_sent_at_join(&got, &first, since);
    // A listener on the same hub, and one on another hub (whose room task reads the record when it starts): the
    // schedule is the message right after the join reply.
    let (_carol, got) = join_and_next(&a, "carol", Role::Audience).await;
    assert_sent_at_join(&got, &first, since);
    let (mut bob, got) = join_and_next(&b, "bob", Role::Audience).await;
    assert_sent_at_join(&got, &first, since);

    // Hub A's task announces the runner's new frame (outputs only, to everyone), as it does for RoomMsg::Schedule.
    // As `ServerMessage::to_json` writes it (`type` first).
    let second = schedule(2, "Keynote");
    let frame = serde_json::from_value::<podium_proto::ServerMessage>(second.clone()).unwrap().to_json();
    assert!(frame.starts_with(r#"{"type":"schedule""#), "{frame}");
    let seq = alice.request(json!({"type": "get_state"})).await["result"]["seq"].as_u64().unwrap();
    let announcement = Announcement {
        node: a.node_id.clone(),
        seq,
        changes: None,
        outputs: vec![Announced::Event { to: podium_room::Recipients::Everyone, frame }],
        joined: None,
    };
    let store = podium_store::RedisStore::connect(&redis.url(), &podium_store::RedisOptions::default()).await.unwrap();
    store.publish(ROOM, &announcement.encode()).await.unwrap();
    let got = bob.wait_for("the new schedule on hub B", |v| v["type"] == "schedule").await;
    assert_eq!(got, second, "delivered as announced");
    // Hub B remembered it: a later joiner there gets the new view, though the record still holds the first.
    let since = now_ms();
    let (_dave, got) = join_and_next(&b, "dave", Role::Audience).await;
    assert_sent_at_join(&got, &second, since);
    a.stop().await;
    b.stop().await;
}
