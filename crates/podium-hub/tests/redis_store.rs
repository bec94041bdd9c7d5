//! The hub on the Redis store, against a `redis-server` this test starts: room state outlives the hub, and while
//! Redis is down, requests that would change a room get `unavailable` and change nothing; the hub recovers by itself.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use podium_hub::auth::{TokenKeys, claims_for};
use podium_hub::{Config, Hub, Role};
use podium_store::redis_server::RedisServer;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const TIMEOUT: Duration = Duration::from_secs(10);

struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Client {
    async fn request(&mut self, mut body: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        body["id"] = json!(id);
        self.ws.send(Message::Text(body.to_string().into())).await.unwrap();
        loop {
            let msg = tokio::time::timeout(TIMEOUT, self.ws.next()).await.expect("reply in time");
            let Some(Ok(msg)) = msg else { panic!("connection closed before the reply to {body}") };
            let Message::Text(text) = msg else { continue };
            let v: Value = serde_json::from_str(&text).unwrap();
            if (v["type"] == "ok" || v["type"] == "error") && v["id"] == json!(id) {
                return v;
            }
        }
    }
}

async fn start_hub(store: &str) -> (String, TokenKeys, podium_hub::ShutdownHandle, tokio::task::JoinHandle<()>) {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.shutdown_grace_ms = 300;
    config.auth.secret = Some("redis-test".into());
    config.media.enabled = false;
    config.store.url = store.into();
    let keys = TokenKeys::new(config.auth.secret().as_bytes());
    let hub = Hub::bind(config).await.expect("hub binds and reaches Redis");
    let url = format!("ws://{}{}", hub.local_addr(), podium_hub::WS_PATH);
    let stop = hub.shutdown_handle();
    let task = tokio::spawn(async move {
        hub.run().await.unwrap();
    });
    (url, keys, stop, task)
}

async fn join(url: &str, keys: &TokenKeys, identity: &str, role: Role) -> (Client, Value) {
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut c = Client { ws, next_id: 1 };
    let token = keys.mint(&claims_for(identity, None, "summit", role, Duration::from_secs(600))).unwrap();
    let reply = c.request(json!({"type": "join", "token": token})).await;
    assert_eq!(reply["type"], "ok", "join of {identity}: {reply}");
    let welcome = reply["result"].clone();
    (c, welcome)
}

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
    let (url, keys, stop, task) = start_hub(&redis.url()).await;
    let (mut moderator, _) = join(&url, &keys, "alice", Role::Moderator).await;
    let (mut bob, _) = join(&url, &keys, "bob", Role::Speaker).await;
    let (mut carol, _) = join(&url, &keys, "carol", Role::Speaker).await;
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
    stop.shutdown();
    tokio::time::timeout(TIMEOUT, task).await.unwrap().unwrap();
    drop((moderator, carol));
    let (url, keys, stop, task) = start_hub(&redis.url()).await;
    let (_moderator, welcome) = join(&url, &keys, "alice", Role::Moderator).await;
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
    stop.shutdown();
    tokio::time::timeout(TIMEOUT, task).await.unwrap().unwrap();
}
