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
use futures_util::{SinkExt as _, StreamExt as _};
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
    let (mut bob, _) = b.join("bob", Role::Speaker).await;
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

/// A browser-style audio offer (Opus, sendrecv) for the SFU to answer.
fn audio_offer() -> String {
    [
        "v=0",
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "c=IN IP4 0.0.0.0",
        "a=ice-ufrag:Xq3b",
        "a=ice-pwd:2oMiFl3mR3vVqJ3yQ9hK7dZs",
        "a=fingerprint:sha-256 \
         5C:4E:2B:0C:9D:93:1A:61:3F:51:8B:A6:EA:2E:8C:70:42:AF:4C:58:F4:0B:2D:0A:3C:1B:77:6E:84:52:AA:19",
        "a=setup:actpass",
        "a=mid:0",
        "a=sendrecv",
        "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2",
        "",
    ]
    .join("\r\n")
}

fn with_media(c: &mut podium_hub::Config) {
    c.media.enabled = true;
    c.media.bind = [127, 0, 0, 1].into();
    c.media.port = 0;
    c.media.workers = 1;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_offers_on_any_hub_are_answered_by_the_rooms_media_hub() {
    let redis = RedisServer::start();
    let a = Node::start(&redis.url(), with_media).await;
    let b = Node::start(&redis.url(), with_media).await;
    // Alice's hub creates the room: it holds the lease, so the room's media lives there.
    let (mut alice, welcome_a) = a.join("alice", Role::Moderator).await;
    let (mut bob, welcome_b) = b.join("bob", Role::Moderator).await;
    let epoch = welcome_a["state"]["media_epoch"].as_u64().unwrap();
    assert!(epoch >= 1, "{welcome_a}");
    assert_eq!(welcome_b["state"]["media_epoch"], epoch, "both hubs name the same media epoch");

    let a_port = a.media[0].port();
    let b_port = b.media[0].port();
    for (who, client) in [("alice", &mut alice), ("bob", &mut bob)] {
        let reply = client.request(json!({"type": "media_offer", "sdp": audio_offer()})).await;
        assert_eq!(reply["type"], "ok", "{who}: {reply}");
        let answer = reply["result"]["sdp"].as_str().unwrap();
        assert!(answer.contains(&format!("127.0.0.1 {a_port} typ host")), "{who}'s answer names hub A's SFU: {answer}");
        assert!(!answer.contains(&format!(" {b_port} typ host")), "never hub B's: {answer}");
    }
    // Refusals travel back too: a bad offer relayed from hub B gets the SFU's documented code.
    let bad = bob.request(json!({"type": "media_offer", "sdp": "v=0\r\nnot sdp\r\n"})).await;
    assert_eq!(bad["code"], "bad_request", "{bad}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_request_waiting_for_a_dead_media_hub_does_not_hold_up_a_close() {
    let redis = RedisServer::start();
    // The room's lease belongs to a hub that died a moment ago (it has not lapsed yet): hub B relays media requests
    // there, and nobody answers.
    let store = podium_store::RedisStore::connect(&redis.url(), &podium_store::RedisOptions::default()).await.unwrap();
    let lease = store.claim_media(common::ROOM, "dead-hub", Duration::from_secs(60)).await.unwrap();
    assert!(lease.held);
    let b = Node::start(&redis.url(), with_media).await;
    let (mut bob, welcome) = b.join("bob", Role::Moderator).await;
    assert_eq!(welcome["state"]["media_epoch"], lease.epoch, "{welcome}");
    let offer = json!({"type": "media_offer", "id": "offer", "sdp": audio_offer()});
    bob.ws.send(Message::Text(offer.to_string().into())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Hub B shuts down meanwhile: bob's connection closes with 4007 at once, not after the relay's timeout.
    let closing = std::time::Instant::now();
    b.begin_stop();
    let code = loop {
        match tokio::time::timeout(TIMEOUT, bob.ws.next()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    let took = closing.elapsed();
    assert_eq!(code, Some(4007));
    assert!(took < Duration::from_secs(2), "closed after {took:?}");
    eprintln!("closed {took:?} after shutdown began, with a relayed request outstanding");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_taken_for_gone_while_alive_reasserts_its_participants() {
    let redis = RedisServer::start();
    let tweak = |c: &mut podium_hub::Config| c.room.grace_ms = 2_000;
    let a = Node::start(&redis.url(), tweak).await;
    let b = Node::start(&redis.url(), tweak).await;
    let (mut alice, _) = a.join("alice", Role::Moderator).await;
    let (mut bob, _) = b.join("bob", Role::Moderator).await;
    // Hub A (the lease holder) is made to believe bob's hub is a hub that has just stopped heartbeating (as when
    // hub B was cut off from Redis for a few seconds): a registry entry that ages out, and bob's presence on it.
    let store = podium_store::RedisStore::connect(&redis.url(), &podium_store::RedisOptions::default()).await.unwrap();
    let ghost = podium_store::NodeInfo { id: "partitioned".into(), url: None, draining: false };
    store.heartbeat(&ghost).await.unwrap();
    let client = ::redis::Client::open(redis.url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let key = podium_store::redis::presence_key(common::ROOM);
    let _: i64 = ::redis::cmd("HSET").arg(&key).arg("bob").arg("partitioned").query_async(&mut raw).await.unwrap();

    // Once the entry ages out, hub A starts bob's grace period; hub B, which holds bob's live connection, marks
    // him connected again at once, so he is never removed.
    let member = |v: &Value, connected: bool| {
        v["type"] == "stage"
            && v["stage"].as_array().unwrap().iter().any(|m| m["id"] == "bob" && m["connected"] == connected)
    };
    let down = alice.wait_for("bob marked disconnected", |v| member(v, false)).await;
    alice.seen.retain(|v| v["seq"].as_u64() > down["seq"].as_u64());
    let up = alice.wait_for("bob marked connected again", |v| member(v, true)).await;
    assert!(up["seq"].as_u64() > down["seq"].as_u64(), "{down} then {up}");
    let presence = store.presence(common::ROOM).await.unwrap();
    assert_ne!(presence["bob"], "partitioned", "presence names bob's real hub again: {presence:?}");

    // Past the grace period bob is still on stage, and his connection works.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let state = bob.request(json!({"type": "get_state"})).await;
    assert_eq!(stage_ids(&state["result"]["stage"]), ["alice", "bob"], "{state}");
    assert!(state["result"]["stage"].as_array().unwrap().iter().all(|m| m["connected"] == true), "{state}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_spreads_its_rooms_over_the_other_hubs() {
    let redis = RedisServer::start();
    let a = Node::start(&redis.url(), |_| {}).await;
    let b = Node::start(&redis.url(), |_| {}).await;
    let c = Node::start(&redis.url(), |_| {}).await;
    let rooms = ["r0", "r1", "r2", "r3"];
    let mut clients = Vec::new();
    for room in rooms {
        clients.push(a.join_room("alice", Role::Moderator, room).await.0);
    }
    let store = podium_store::RedisStore::connect(&redis.url(), &podium_store::RedisOptions::default()).await.unwrap();
    for room in rooms {
        assert_eq!(store.media_holder(room, &a.node_id).await.unwrap().holder.as_deref(), Some(a.node_id.as_str()));
    }
    // Hubs B and C must have heartbeat into the registry before A looks for somewhere to drain to.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while store.nodes(podium_hub::NODE_TTL).await.unwrap().iter().filter(|n| n.alive).count() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "three hubs in the registry");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let a_id = a.node_id.clone();
    a.drain().await;
    let mut holders = Vec::new();
    for room in rooms {
        let holder = store.media_holder(room, &a_id).await.unwrap().holder.unwrap_or_default();
        assert!(holder == b.node_id || holder == c.node_id, "{room} held by {holder:?}");
        holders.push(holder);
    }
    assert!(holders.contains(&b.node_id) && holders.contains(&c.node_id), "spread over both: {holders:?}");
    for mut client in clients {
        let code = loop {
            match tokio::time::timeout(TIMEOUT, client.ws.next()).await.unwrap() {
                Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        };
        assert_eq!(code, Some(4007), "clients of a drained hub are told to reconnect elsewhere");
    }
    b.stop().await;
    c.stop().await;
}

/// The number of room tasks a hub runs (its `podium_rooms` gauge, read from `/metrics`).
async fn running_rooms(node: &Node) -> u64 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = node.url.trim_start_matches("ws://").split('/').next().unwrap().to_owned();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut text = String::new();
    tokio::time::timeout(TIMEOUT, s.read_to_string(&mut text)).await.unwrap().unwrap();
    let line =
        text.lines().find(|l| l.starts_with("podium_rooms ")).unwrap_or_else(|| panic!("no podium_rooms: {text}"));
    line["podium_rooms ".len()..].trim().parse().unwrap()
}

/// Waits until `node` runs `n` room tasks.
async fn until_running(node: &Node, n: u64, what: &str) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let running = running_rooms(node).await;
        if running == n {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {running} room tasks, not {n}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A hub keeps no task for a room it has no connection in while another hub, alive, runs the room; when that hub
/// dies, a hub without a task takes the room over from the dead hub's list of held rooms, and the dead hub's
/// participants get their grace period and leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_without_connections_in_a_room_keeps_no_task_and_adopts_it_when_its_hub_dies() {
    let redis = RedisServer::start();
    let tweak = |c: &mut podium_hub::Config| {
        c.room.grace_ms = 1_000;
    };
    let a = Node::start(&redis.url(), tweak).await;
    let b = Node::start(&redis.url(), tweak).await;
    let (_alice, _) = a.join("alice", Role::Moderator).await;
    let (mut bob, _) = b.join("bob", Role::Moderator).await;
    until_running(&b, 1, "bob is connected to hub B").await;

    // Bob leaves: hub B has nobody in the room any more, and hub A (alive) holds its lease.
    let reply = bob.request(json!({"type": "leave"})).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    until_running(&b, 0, "hub B stops following a room it has no connection in").await;
    until_running(&a, 1, "hub A keeps the room").await;

    // Hub A dies (its registry readings have seen B alive by now) without recording alice's disconnect.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let died = std::time::Instant::now();
    a.stop().await;
    until_running(&b, 1, "hub B adopts the room the gone hub held").await;
    let store = podium_store::RedisStore::connect(&redis.url(), &podium_store::RedisOptions::default()).await.unwrap();
    let deadline = tokio::time::Instant::now() + TIMEOUT * 2;
    loop {
        let state = podium_store::RoomStore::load(&store, common::ROOM).await.unwrap();
        if state.as_ref().is_none_or(|s| s.participants.iter().all(|p| p.id.as_str() != "alice")) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "alice is still in the room: {state:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left = died.elapsed();
    eprintln!("hub A gone → alice removed after {left:?}");
    assert!(left >= Duration::from_millis(1_000), "not before the grace period: {left:?}");
    b.stop().await;
}

/// How many connections subscribe to `room`'s announcement channel (`PUBSUB NUMSUB`).
fn subscribers(redis: &RedisServer, room: &str) -> u64 {
    let reply = redis.command(&["PUBSUB", "NUMSUB", &format!("podium:{{{room}}}:events")]);
    let last = reply.trim_end().rsplit("\r\n").next().unwrap_or_default();
    last.strip_prefix(':').and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("PUBSUB NUMSUB: {reply:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_subscribes_to_a_room_only_while_it_runs_the_room() {
    let redis = RedisServer::start();
    let tweak = |c: &mut podium_hub::Config| {
        c.room.empty_timeout_ms = 200;
        c.room.counts_interval_ms = 100;
    };
    let a = Node::start(&redis.url(), tweak).await;
    let b = Node::start(&redis.url(), tweak).await;
    assert_eq!(subscribers(&redis, "summit"), 0, "no hub runs the room yet");

    // A room task subscribes before it loads the room, so it is subscribed once its first join is answered.
    let (mut alice, _) = a.join("alice", Role::Moderator).await;
    assert_eq!(subscribers(&redis, "summit"), 1, "hub A only");
    let (mut bob, _) = b.join("bob", Role::Speaker).await;
    assert_eq!(subscribers(&redis, "summit"), 2, "both hubs");
    assert_eq!(subscribers(&redis, "elsewhere"), 0);

    // B's task, started after A's commits, follows the later ones (and A follows B's).
    assert_eq!(bob.request(json!({"type": "raise_hand"})).await["type"], "ok");
    alice.wait_for("bob's hand on A", |v| v["type"] == "hand_queue" && v["queue"]["total"] == 1).await;
    assert_eq!(alice.request(json!({"type": "approve_hand", "participant": "bob"})).await["type"], "ok");
    bob.wait_for("bob promoted, on B", |v| v["type"] == "you" && v["you"]["role"] == "speaker").await;
    assert!(!bob.seen.iter().chain(&alice.seen).any(|v| v["type"] == "resync"), "followed, not resynced");

    // Everyone leaves; the room ends, both tasks stop and unsubscribe.
    for c in [&mut bob, &mut alice] {
        let _ = c.request(json!({"type": "leave"})).await;
    }
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while subscribers(&redis, "summit") > 0 {
        assert!(tokio::time::Instant::now() < deadline, "both hubs unsubscribed within {TIMEOUT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The room starts again on B: subscribed again.
    let (_carol, _) = b.join("carol", Role::Moderator).await;
    assert_eq!(subscribers(&redis, "summit"), 1, "hub B only");
    a.stop().await;
    b.stop().await;
}
