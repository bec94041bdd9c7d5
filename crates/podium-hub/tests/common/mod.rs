//! Shared by the hub's Redis tests: a raw-JSON websocket client and a hub ("node") on port 0 with a given store.

#![allow(dead_code, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use podium_hub::auth::{TokenKeys, claims_for};
use podium_hub::{Config, Hub, Role};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);
/// The room every test joins.
pub(crate) const ROOM: &str = "summit";

pub(crate) struct Client {
    pub(crate) ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// Server messages read while waiting for something else.
    pub(crate) seen: Vec<Value>,
}

impl Client {
    pub(crate) async fn connect(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Self { ws, next_id: 1, seen: Vec::new() }
    }

    pub(crate) async fn request(&mut self, mut body: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        body["id"] = json!(id);
        self.ws.send(Message::Text(body.to_string().into())).await.unwrap();
        loop {
            let v = self.read().await;
            if (v["type"] == "ok" || v["type"] == "error") && v["id"] == json!(id) {
                return v;
            }
            self.seen.push(v);
        }
    }

    /// A request whose reply must come within `limit`.
    pub(crate) async fn within(&mut self, limit: Duration, body: Value) -> Value {
        let started = Instant::now();
        let what = body.to_string();
        let reply = self.request(body).await;
        assert!(started.elapsed() < limit, "{what} took {:?} (reply {reply})", started.elapsed());
        reply
    }

    pub(crate) async fn read(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(TIMEOUT, self.ws.next()).await.expect("a message in time");
            let Some(Ok(msg)) = msg else { panic!("connection closed while waiting for a message") };
            if let Message::Text(text) = msg {
                return serde_json::from_str(&text).unwrap();
            }
        }
    }

    /// The first message (seen before or arriving now) for which `pred` holds.
    pub(crate) async fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.seen.iter().position(&pred) {
            return self.seen.remove(i);
        }
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            assert!(tokio::time::Instant::now() < deadline, "no {what} in time; saw {:?}", self.seen);
            let v = self.read().await;
            if pred(&v) {
                return v;
            }
            self.seen.push(v);
        }
    }
}

/// One hub on port 0 (media off) with the store at `store`.
pub(crate) struct Node {
    pub(crate) url: String,
    pub(crate) keys: TokenKeys,
    /// The SFU's UDP addresses (empty with media off).
    pub(crate) media: Vec<std::net::SocketAddr>,
    /// Its id in the node registry.
    pub(crate) node_id: String,
    stop: podium_hub::ShutdownHandle,
    task: tokio::task::JoinHandle<()>,
}

impl Node {
    pub(crate) async fn start(store: &str, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.server.shutdown_grace_ms = 300;
        config.auth.secret = Some("redis-test".into());
        config.media.enabled = false;
        config.store.url = store.into();
        tweak(&mut config);
        let keys = TokenKeys::new(config.auth.secret().as_bytes());
        let hub = Hub::bind(config).await.expect("the hub binds");
        let url = format!("ws://{}{}", hub.local_addr(), podium_hub::WS_PATH);
        let stop = hub.shutdown_handle();
        let media = hub.media_addrs();
        let node_id = hub.node_id().to_owned();
        let task = tokio::spawn(async move {
            hub.run().await.unwrap();
        });
        Self { url, keys, media, node_id, stop, task }
    }

    pub(crate) fn token(&self, identity: &str, role: Role) -> String {
        self.keys.mint(&claims_for(identity, None, ROOM, role, Duration::from_secs(600))).unwrap()
    }

    /// Connects and sends `join`; returns the client and the reply (`ok` or `error`).
    pub(crate) async fn try_join(&self, identity: &str, role: Role) -> (Client, Value) {
        let mut c = Client::connect(&self.url).await;
        let reply = c.request(json!({"type": "join", "token": self.token(identity, role)})).await;
        (c, reply)
    }

    /// Joins and returns the client and the welcome.
    pub(crate) async fn join(&self, identity: &str, role: Role) -> (Client, Value) {
        let (c, reply) = self.try_join(identity, role).await;
        assert_eq!(reply["type"], "ok", "join of {identity}: {reply}");
        (c, reply["result"].clone())
    }

    pub(crate) async fn stop(self) {
        self.stop.shutdown();
        tokio::time::timeout(TIMEOUT, self.task).await.unwrap().unwrap();
    }

    /// Joins room `room` and returns the client and the welcome.
    pub(crate) async fn join_room(&self, identity: &str, role: Role, room: &str) -> (Client, Value) {
        let token = self.keys.mint(&claims_for(identity, None, room, role, Duration::from_secs(600))).unwrap();
        let mut c = Client::connect(&self.url).await;
        let reply = c.request(json!({"type": "join", "token": token})).await;
        assert_eq!(reply["type"], "ok", "join of {identity} to {room}: {reply}");
        (c, reply["result"].clone())
    }

    /// Drains the hub (what SIGTERM does) and waits until it has stopped.
    pub(crate) async fn drain(self) {
        self.stop.drain();
        tokio::time::timeout(TIMEOUT * 2, self.task).await.unwrap().unwrap();
    }

    /// Starts stopping without waiting for the hub to finish.
    pub(crate) fn begin_stop(&self) {
        self.stop.shutdown();
    }
}
