//! A small websocket client speaking Podium's protocol as a third-party client would: raw JSON.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use podium_hub::auth::{TokenKeys, claims_for};
use podium_hub::{Config, Hub, Role, ShutdownHandle};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub(crate) const TIMEOUT: Duration = Duration::from_secs(5);

/// The tests that run Chromium or bound audio gaps take turns: on CI's two cores, two of them at once (three browser
/// pages beside two aiortc peers and a Redis restart) starve each other's peers, and their gap limits are strict.
pub(crate) static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub(crate) struct TestHub {
    pub(crate) addr: SocketAddr,
    pub(crate) keys: TokenKeys,
    /// The SFU's UDP sockets (empty when media is disabled).
    pub(crate) media: Vec<SocketAddr>,
    /// Reloads the TLS certificate (with `[tls]`).
    pub(crate) tls: Option<podium_hub::TlsHandle>,
    stop: ShutdownHandle,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestHub {
    pub(crate) async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub(crate) async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:0".parse().expect("literal address");
        config.auth.secret = Some("e2e-secret".into());
        config.server.shutdown_grace_ms = 500;
        tweak(&mut config);
        let keys = TokenKeys::new(config.auth.secret().as_bytes());
        let hub = Hub::bind(config).await.expect("bind hub");
        let addr = hub.local_addr();
        let media = hub.media_addrs();
        let tls = hub.tls_handle();
        let stop = hub.shutdown_handle();
        let task = tokio::spawn(hub.run());
        Self { addr, keys, media, tls, stop, task }
    }

    pub(crate) fn url(&self) -> String {
        format!("ws://{}{}", self.addr, podium_hub::WS_PATH)
    }

    pub(crate) fn token(&self, identity: &str, room: &str, role: Role) -> String {
        self.keys
            .mint(&claims_for(identity, Some(&identity.to_uppercase()), room, role, Duration::from_secs(600)))
            .expect("mint")
    }

    pub(crate) async fn connect(&self) -> Client {
        Client::connect(&self.url()).await
    }

    /// Connects and joins `room` as `identity`, returning the client and the welcome.
    pub(crate) async fn join(&self, identity: &str, room: &str, role: Role) -> (Client, Value) {
        let mut c = self.connect().await;
        let token = self.token(identity, room, role);
        let reply = c.request(json!({"type": "join", "token": token})).await;
        assert_eq!(reply["type"], "ok", "join of {identity} failed: {reply}");
        let welcome = reply["result"].clone();
        (c, welcome)
    }

    /// [`TestHub::join`], retrying while the hub has not connected to its Redis store yet (`unavailable`).
    pub(crate) async fn join_when_up(&self, identity: &str, room: &str, role: Role) -> (Client, Value) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let mut c = self.connect().await;
            let reply = c.request(json!({"type": "join", "token": self.token(identity, room, role)})).await;
            if reply["type"] == "ok" {
                return (c, reply["result"].clone());
            }
            assert_eq!(reply["code"], "unavailable", "join of {identity}: {reply}");
            assert!(tokio::time::Instant::now() < deadline, "the hub did not connect to Redis within 20 s: {reply}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An admin-grant token (the admin API) with `scope`, valid a minute.
    pub(crate) fn admin_token(&self, name: &str, scope: podium_hub::auth::Scope) -> String {
        let claims = podium_hub::auth::AdminClaims {
            sub: name.into(),
            admin: podium_hub::auth::AdminGrantClaim { scope },
            exp: podium_hub::auth::unix_now() + 60,
            iat: None,
        };
        self.keys.mint_admin(&claims).expect("mint")
    }

    pub(crate) async fn stop(self) {
        self.stop.shutdown();
        let _ = tokio::time::timeout(TIMEOUT, self.task).await;
    }
}

/// A websocket client; `S` is its connection (plain TCP by default, or TLS: see `tls.rs`).
pub(crate) struct Client<S = MaybeTlsStream<TcpStream>> {
    ws: WebSocketStream<S>,
    next_id: u64,
    /// Events received while waiting for something else.
    pub(crate) events: VecDeque<Value>,
    pub(crate) closed: Option<(u16, String)>,
}

impl Client {
    pub(crate) async fn connect(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("websocket connect");
        Self::over(ws)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// A client on a websocket already open.
    pub(crate) fn over(ws: WebSocketStream<S>) -> Self {
        Self { ws, next_id: 1, events: VecDeque::new(), closed: None }
    }

    pub(crate) async fn send_raw(&mut self, msg: Message) {
        self.ws.send(msg).await.expect("send");
    }

    pub(crate) async fn send_text(&mut self, text: &str) {
        self.send_raw(Message::Text(text.into())).await;
    }

    /// Reads the next JSON message (or None when the connection closed).
    async fn read(&mut self) -> Option<Value> {
        loop {
            let msg = tokio::time::timeout(TIMEOUT, self.ws.next()).await.expect("timed out waiting for a message");
            match msg {
                Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(&t).expect("hub sent invalid JSON")),
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) =
                        frame.map(|f| (u16::from(f.code), f.reason.to_string())).unwrap_or((1005, String::new()));
                    self.closed = Some((code, reason));
                    return None;
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => {
                    if self.closed.is_none() {
                        self.closed = Some((1006, String::new()));
                    }
                    return None;
                }
            }
        }
    }

    /// Sends a request with a fresh id and returns its reply; events that arrive first are kept.
    pub(crate) async fn request(&mut self, mut body: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        body["id"] = json!(id);
        self.send_text(&body.to_string()).await;
        self.reply_to(json!(id)).await
    }

    /// Waits for the reply with `id`.
    pub(crate) async fn reply_to(&mut self, id: Value) -> Value {
        loop {
            let msg = self.read().await.unwrap_or_else(|| panic!("closed {:?} before the reply to {id}", self.closed));
            if (msg["type"] == "ok" || msg["type"] == "error") && msg["id"] == id {
                return msg;
            }
            self.events.push_back(msg);
        }
    }

    /// Sends a request and asserts it fails with `code`.
    pub(crate) async fn expect_error(&mut self, body: Value, code: &str) -> Value {
        let reply = self.request(body.clone()).await;
        assert_eq!(reply["type"], "error", "expected {code} for {body}, got {reply}");
        assert_eq!(reply["code"], code, "expected {code} for {body}, got {reply}");
        reply
    }

    /// Sends a request and asserts it succeeds.
    pub(crate) async fn ok(&mut self, body: Value) -> Value {
        let reply = self.request(body.clone()).await;
        assert_eq!(reply["type"], "ok", "expected ok for {body}, got {reply}");
        reply
    }

    /// Waits for the next message of `kind` matching `pred` (buffered ones first); others are dropped.
    pub(crate) async fn event(&mut self, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
        while let Some(e) = self.events.pop_front() {
            if e["type"] == kind && pred(&e) {
                return e;
            }
        }
        loop {
            let msg = self.read().await.unwrap_or_else(|| panic!("closed {:?} while waiting for {kind}", self.closed));
            if msg["type"] == kind && pred(&msg) {
                return msg;
            }
        }
    }

    /// Waits for the hub to close the connection and returns (code, reason).
    pub(crate) async fn closed(&mut self) -> (u16, String) {
        while self.closed.is_none() {
            if self.read().await.is_none() {
                break;
            }
        }
        self.closed.clone().expect("closed")
    }

    /// Drains what arrives within `window` and returns it (plus what was buffered).
    pub(crate) async fn drain(&mut self, window: Duration) -> Vec<Value> {
        let mut out: Vec<Value> = self.events.drain(..).collect();
        let end = tokio::time::Instant::now() + window;
        loop {
            match tokio::time::timeout_at(end, self.ws.next()).await {
                Err(_) => return out,
                Ok(Some(Ok(Message::Text(t)))) => out.push(serde_json::from_str(&t).expect("json")),
                Ok(Some(Ok(Message::Close(frame)))) => {
                    self.closed = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                    return out;
                }
                Ok(Some(Ok(_))) => {}
                Ok(_) => return out,
            }
        }
    }
}

/// What a browser scenario (`web/e2e/*.mjs`, Playwright in Chromium) needs: `web/` with its npm packages, and Chromium
/// (`/usr/bin/chromium` or `PODIUM_CHROMIUM`).
pub(crate) struct Browser {
    pub(crate) web: std::path::PathBuf,
    pub(crate) chromium: String,
}

impl Browser {
    /// Checks that Node.js's packages and Chromium are there.
    pub(crate) fn find() -> Self {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_owned();
        let web = root.join("web");
        assert!(
            web.join("node_modules/playwright-core").is_dir(),
            "web/node_modules is missing: run `bash tests/run` (it runs `npm ci` in web/), or `cd web && npm ci`"
        );
        let chromium = std::env::var("PODIUM_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
        assert!(std::path::Path::new(&chromium).exists(), "Chromium not found at {chromium}; `.ci/run` installs it");
        Self { web, chromium }
    }

    /// Runs `web/e2e/<script>` with node and `env` (plus `PODIUM_CHROMIUM`) to its end, killed after `limit`; prints
    /// its output and returns its stdout. Panics unless it exits 0 having printed `PASS`.
    pub(crate) async fn run(&self, script: &str, env: &[(&str, String)], limit: Duration) -> String {
        let mut command = std::process::Command::new("node");
        command
            .arg(self.web.join("e2e").join(script))
            .current_dir(&self.web)
            .env("PODIUM_CHROMIUM", &self.chromium)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().expect("start node (Node.js is needed for the browser test)");
        let pid = child.id();
        let out = match tokio::time::timeout(limit, tokio::task::spawn_blocking(|| child.wait_with_output())).await {
            Ok(out) => out.expect("join").expect("wait for node"),
            Err(_) => {
                // The script closes its browser itself; kill node if it hangs.
                let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
                panic!("the browser scenario {script} did not finish within {limit:?}");
            }
        };
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!("{stdout}{stderr}");
        assert!(out.status.success(), "the browser scenario {script} failed ({}):\n{stdout}\n{stderr}", out.status);
        assert!(stdout.contains("PASS"), "{script} did not pass");
        stdout
    }
}

/// The demo's browser tests' hub: development mode (no secret: the demo gets tokens from `/dev/token`) and the SFU on
/// loopback with one worker.
pub(crate) fn demo_with_media(c: &mut Config) {
    c.auth.secret = None;
    c.media.enabled = true;
    c.media.bind = [127, 0, 0, 1].into();
    c.media.port = 0;
    c.media.workers = 1;
}

/// Where the browser tests save screenshots: `target/web-e2e` (or under `CARGO_TARGET_DIR`).
pub(crate) fn screenshots_dir() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_owned();
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("web-e2e")
}

/// The stage roster of a `stage` event or snapshot as (id, role, muted) triples.
pub(crate) fn roster(stage: &Value) -> Vec<(String, String, bool)> {
    stage
        .as_array()
        .expect("stage is an array")
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap_or_default().to_owned(),
                m["role"].as_str().unwrap_or_default().to_owned(),
                m["muted"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

pub(crate) fn on_stage(stage: &Value, id: &str) -> Option<String> {
    roster(stage).into_iter().find(|(i, _, _)| i == id).map(|(_, role, _)| role)
}

/// Starts `tests/webhooks/receiver.py` on a free port, verifying every request with PyPI's `standardwebhooks`
/// against `key`: its port, the requests it logged (as it prints them), and the process (kill it when done).
pub(crate) fn webhook_receiver(key: &str) -> (u64, std::sync::Arc<std::sync::Mutex<Vec<Value>>>, std::process::Child) {
    use std::io::BufRead as _;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/webhooks/receiver.py");
    let python = std::env::var("PODIUM_PYTHON").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| {
        let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv-media/bin/python");
        if std::path::Path::new(venv).exists() { venv.to_owned() } else { "python3".to_owned() }
    });
    let mut receiver = std::process::Command::new(python)
        .args([script, "0", key])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the receiver (python with standardwebhooks)");
    let mut lines = std::io::BufReader::new(receiver.stdout.take().expect("stdout")).lines();
    let first: Value = serde_json::from_str(&lines.next().and_then(Result::ok).unwrap_or_default())
        .expect("the receiver needs `standardwebhooks` (tests/media/requirements.txt; PODIUM_PYTHON)");
    let port = first["port"].as_u64().expect("port");
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let sink = std::sync::Arc::clone(&log);
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                sink.lock().expect("log").push(v);
            }
        }
    });
    (port, log, receiver)
}
