//! Degraded mode: two hubs on one Redis (a `redis-server` this test starts), which is down at boot, then blackholed
//! (SIGSTOP), then killed (`kill -9`) and restarted from its AOF. The hubs start anyway; while Redis is away,
//! requests that would change a room get `unavailable` quickly (never stuck behind Redis), while `ping` and reads
//! served from the room task's memory still answer; when Redis returns, both hubs reconnect and resubscribe by
//! themselves and the room is as it was.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use podium_hub::Role;
use podium_store::redis_server::RedisServer;
use serde_json::{Value, json};

mod common;

use common::{Client, Node, TIMEOUT};

/// The most a reply may take while Redis is away.
const FAST: Duration = Duration::from_millis(1500);
/// How long each outage lasts.
const OUTAGE: Duration = Duration::from_secs(4);

/// A hub on `store`, which must bind quickly even with Redis down.
async fn start_node(store: &str) -> Node {
    let started = Instant::now();
    let node = Node::start(store, |_| {}).await;
    assert!(started.elapsed() < Duration::from_secs(3), "binding took {:?}", started.elapsed());
    node
}

/// Joins, retrying while the hub is not connected to Redis yet; each attempt answers within [`FAST`].
async fn join_when_up(node: &Node, identity: &str, role: Role) -> Client {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let started = Instant::now();
        let (c, reply) = node.try_join(identity, role).await;
        assert!(started.elapsed() < FAST, "join took {:?} (reply {reply})", started.elapsed());
        if reply["type"] == "ok" {
            return c;
        }
        assert_eq!(reply["code"], "unavailable", "{reply}");
        assert!(Instant::now() < deadline, "the hub did not connect to Redis by itself");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn stage_ids(state: &Value) -> Vec<String> {
    state["stage"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect()
}

/// While Redis is away: every approval is refused `unavailable` quickly; `ping` and `get_state` answer.
async fn during_outage(moderator: &mut Client, listener: &mut Client, who: &str) {
    let until = Instant::now() + OUTAGE;
    let mut refused = 0;
    while Instant::now() < until {
        let reply = moderator.within(FAST, json!({"type": "approve_hand", "participant": who})).await;
        assert_eq!(reply["code"], "unavailable", "{reply}");
        refused += 1;
        assert_eq!(listener.within(FAST, json!({"type": "ping"})).await["type"], "ok");
        let state = listener.within(FAST, json!({"type": "get_state"})).await;
        assert_eq!(state["type"], "ok", "reads are served from memory: {state}");
        assert_eq!(moderator.within(FAST, json!({"type": "ping"})).await["type"], "ok");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(refused >= 3, "only {refused} requests in {OUTAGE:?}");
}

/// After Redis returns: approves `who` (retrying while `unavailable`) or finds them on stage already (a request
/// that timed out while Redis was stalled may have been applied when it woke; the room then resynced).
async fn approve_when_back(moderator: &mut Client, who: &str) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        assert!(Instant::now() < deadline, "the hub did not recover by itself");
        let reply = moderator.request(json!({"type": "approve_hand", "participant": who})).await;
        if reply["type"] == "ok" {
            return;
        }
        if reply["code"] != "unavailable" {
            let state = moderator.request(json!({"type": "get_state"})).await;
            assert!(stage_ids(&state["result"]).contains(&who.to_owned()), "{reply} / {state}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outages_answer_unavailable_quickly_and_the_hubs_recover_by_themselves() {
    // Redis is down when the hubs start: they start anyway, and joins are refused until it is up.
    let mut redis = RedisServer::start();
    redis.kill9();
    let a = start_node(&redis.url()).await;
    let b = start_node(&redis.url()).await;
    let (_, refused) = a.try_join("alice", Role::Moderator).await;
    assert_eq!(refused["code"], "unavailable", "{refused}");
    redis.restart();
    let mut alice = join_when_up(&a, "alice", Role::Moderator).await;
    let (mut bob, _) = a.join("bob", Role::Speaker).await;
    let mut carol = join_when_up(&b, "carol", Role::Speaker).await;
    let (mut lisa, _) = a.join("lisa", Role::Audience).await;
    let (mut luke, _) = b.join("luke", Role::Audience).await;
    assert_eq!(bob.request(json!({"type": "raise_hand"})).await["type"], "ok");
    assert_eq!(carol.request(json!({"type": "raise_hand"})).await["type"], "ok");
    alice
        .wait_for("both hands", |v| {
            (v["type"] == "hand_queue" && v["queue"]["total"] == 2)
                || (v["type"] == "resync" && v["state"]["hands"]["total"] == 2)
        })
        .await;

    // A blackholed Redis (stopped: connections open, no replies).
    redis.pause();
    during_outage(&mut alice, &mut lisa, "bob").await;
    redis.resume();
    approve_when_back(&mut alice, "bob").await;

    // Redis killed, then restarted from its AOF.
    redis.kill9();
    during_outage(&mut alice, &mut luke, "carol").await;
    redis.restart();
    approve_when_back(&mut alice, "carol").await;

    // Node B followed: its subscription came back (an event, or a resync after it resubscribed).
    let carol_on_stage = |v: &Value| {
        let state = if v["type"] == "resync" { &v["state"] } else { v };
        (v["type"] == "stage" || v["type"] == "resync")
            && state["stage"].as_array().is_some_and(|s| s.iter().any(|m| m["id"] == "carol"))
    };
    luke.wait_for("carol on stage, on node B", carol_on_stage).await;

    // Nothing acknowledged was lost: a newcomer on node B finds the room as the moderator sees it.
    let (_nina, welcome) = b.join("nina", Role::Audience).await;
    assert_eq!(stage_ids(&welcome["state"]), ["alice", "bob", "carol"], "{welcome}");
    assert_eq!(welcome["state"]["counts"]["hands"], 0, "{welcome}");
    let state = alice.request(json!({"type": "get_state"})).await;
    assert_eq!(stage_ids(&state["result"]), ["alice", "bob", "carol"], "{state}");
    drop((bob, carol, lisa, luke, alice));
    a.stop().await;
    b.stop().await;
}
