//! Browser end to end: Debian's headless Chromium publishes its fake microphone as a speaker on stage, a second
//! Chromium page listens, and the listener's WebRTC stats (getStats() inbound-rtp audio) prove that the audio went
//! through the hub's SFU: packets received, none lost, and non-zero decoded audio energy.
//!
//! The page is `tests/media/web/peer.html`, served by a tiny HTTP responder in this test. Chromium is driven over the
//! Chrome DevTools Protocol (flattened sessions on the browser websocket).
//! This test needs Chromium: `/usr/bin/chromium` or `PODIUM_CHROMIUM`; `.ci/run` installs it when missing.

use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt as _, StreamExt as _};
use podium_hub::Role;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::support::TestHub;

const PEER_HTML: &str = include_str!("../media/web/peer.html");
const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";
/// How long the listener has to reach the goal once both pages are open.
const AUDIO_TIMEOUT: Duration = Duration::from_secs(40);
/// Opus frames are 20 ms: 100 packets are two seconds of audio.
const MIN_PACKETS: u64 = 100;

#[tokio::test]
async fn chromium_speaker_is_heard_by_chromium_listener() {
    let _heavy = crate::support::HEAVY.lock().await;
    let hub = TestHub::start_with(|c| {
        c.media.enabled = true;
        c.media.bind = [127, 0, 0, 1].into();
        c.media.port = 0;
        c.media.workers = 1;
    })
    .await;
    let page = PageServer::start().await;
    let browser = Chromium::launch().await;
    let mut cdp = Cdp::connect(&browser.devtools_url).await;

    let room = "chromium-audio";
    // A moderator token joins on stage; the page unmutes itself, so the SFU lets it publish.
    let speaker_url = page.peer_url(&hub.url(), &hub.token("alice", room, Role::Moderator), "speak");
    let listener_url = page.peer_url(&hub.url(), &hub.token("bob", room, Role::Audience), "listen");

    let speaker = cdp.open(&speaker_url).await;
    let listener = cdp.open(&listener_url).await;

    let (last_speaker, last_listener) = until_heard(&mut cdp, &browser, &speaker, &listener, String::new).await;

    eprintln!("listener stats: {last_listener}");
    eprintln!("speaker stats: {last_speaker}");
    assert!(
        last_speaker["packetsSent"].as_u64().unwrap_or(0) > 0,
        "the speaker sent no audio yet the listener heard some: {last_speaker}"
    );
    assert_eq!(last_listener["connection"], "connected", "listener: {last_listener}");

    // An ICE restart by the listener (new local credentials, renegotiated with `media_offer`): the SFU's forwarded
    // audio (sealed by its thin egress path) follows the newly nominated pair and keeps being decoded.
    let before = last_listener;
    let ufrag = cdp
        .eval_json(&listener, "(async () => JSON.stringify(await window.podium.restartIce()))()")
        .await
        .expect("restartIce");
    assert!(ufrag.is_string() && ufrag != before["ufrag"], "no new ICE ufrag: {ufrag} (was {})", before["ufrag"]);
    let restarted = tokio::time::Instant::now();
    let goal = before["packetsReceived"].as_u64().unwrap_or(0) + 150; // 3 s of 20 ms packets
    let after = loop {
        let s = cdp.stats(&listener).await.unwrap_or_else(|e| json!({ "unavailable": e.to_string() }));
        if s["packetsReceived"].as_u64().is_some_and(|n| n >= goal)
            && s["totalAudioEnergy"].as_f64() > before["totalAudioEnergy"].as_f64()
        {
            break s;
        }
        if restarted.elapsed() > AUDIO_TIMEOUT {
            panic!(
                "after the ICE restart the listener did not get 150 more packets within {AUDIO_TIMEOUT:?}: {s}\n\
                 listener log:\n{}",
                cdp.page_log(&listener).await
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!("after the ICE restart ({:.1} s): {after}", restarted.elapsed().as_secs_f64());
    assert_eq!(after["ufrag"], ufrag, "listener: {after}");
    assert_eq!(after["connection"], "connected", "listener: {after}");

    drop(cdp);
    drop(browser);
    hub.stop().await;
}

/// ICE-TCP: a Chromium listener that may not use UDP (its WebRTC IP handling policy `disable_non_proxied_udp` and
/// no proxy: UDP is blocked as behind a firewall that allows only TCP) hears a Chromium speaker (UDP, its own
/// browser) through the SFU's passive TCP candidate, with no relay.
#[tokio::test]
async fn chromium_listener_without_udp_hears_over_ice_tcp() {
    let _heavy = crate::support::HEAVY.lock().await;
    let hub = TestHub::start_with(|c| {
        c.media.enabled = true;
        c.media.bind = [127, 0, 0, 1].into();
        c.media.port = 0;
        c.media.workers = 1;
        c.media.tcp = true;
    })
    .await;
    let page = PageServer::start().await;
    let speaker_browser = Chromium::launch().await;
    // The profile preference behind Chromium's WebRTC IP handling policy (what the enterprise policy and extensions
    // set): with no proxy configured, WebRTC may not use UDP at all.
    let no_udp = json!({ "webrtc": { "ip_handling_policy": "disable_non_proxied_udp" } });
    let listener_browser = Chromium::launch_with(Some(no_udp)).await;
    let mut speaker_cdp = Cdp::connect(&speaker_browser.devtools_url).await;
    let mut listener_cdp = Cdp::connect(&listener_browser.devtools_url).await;

    let room = "chromium-ice-tcp";
    let speaker_url = page.peer_url(&hub.url(), &hub.token("alice", room, Role::Moderator), "speak");
    let listener_url = page.peer_url(&hub.url(), &hub.token("bob", room, Role::Audience), "listen");
    let speaker = speaker_cdp.open(&speaker_url).await;
    let listener = listener_cdp.open(&listener_url).await;

    let (last_speaker, last_listener) =
        until_heard_in(&mut speaker_cdp, Some(&mut listener_cdp), &listener_browser, &speaker, &listener, String::new)
            .await;
    eprintln!("listener stats: {last_listener}");
    eprintln!("speaker stats: {last_speaker}");
    assert_eq!(
        last_listener["pair"]["local"]["protocol"], "tcp",
        "the listener's audio came over ICE-TCP: {last_listener}"
    );
    // Its active TCP candidate shows as host or peer-reflexive (the port it connected from), never a relay.
    assert_ne!(last_listener["pair"]["local"]["candidateType"], "relay", "no relay: {last_listener}");
    assert_eq!(last_speaker["pair"]["local"]["protocol"], "udp", "the speaker used UDP: {last_speaker}");
    drop((speaker_cdp, listener_cdp));
    drop((speaker_browser, listener_browser));
    hub.stop().await;
}

/// Polls both pages' stats until the listener has [`heard`] the speaker and returns the last (speaker, listener)
/// stats; panics with both pages' logs, Chromium's and `more()` when a page fails or [`AUDIO_TIMEOUT`] passes.
pub(crate) async fn until_heard(
    cdp: &mut Cdp,
    browser: &Chromium,
    speaker: &Page,
    listener: &Page,
    more: impl Fn() -> String,
) -> (Value, Value) {
    until_heard_in(cdp, None, browser, speaker, listener, more).await
}

/// [`until_heard`], with the listener's page in another browser when `listener_cdp` drives it (`listener_browser`
/// is then that browser).
pub(crate) async fn until_heard_in(
    speaker_cdp: &mut Cdp,
    mut listener_cdp: Option<&mut Cdp>,
    listener_browser: &Chromium,
    speaker: &Page,
    listener: &Page,
    more: impl Fn() -> String,
) -> (Value, Value) {
    let deadline = tokio::time::Instant::now() + AUDIO_TIMEOUT;
    loop {
        let last_speaker = speaker_cdp.stats(speaker).await.unwrap_or_else(|e| json!({ "unavailable": e.to_string() }));
        let lc: &mut Cdp = match listener_cdp.as_deref_mut() {
            Some(c) => c,
            None => &mut *speaker_cdp,
        };
        let last_listener = lc.stats(listener).await.unwrap_or_else(|e| json!({ "unavailable": e.to_string() }));
        if heard(&last_listener) {
            return (last_speaker, last_listener);
        }
        let failed = [&last_speaker, &last_listener].iter().any(|s| s["state"] == "failed" || s["state"] == "closed");
        if failed || tokio::time::Instant::now() >= deadline {
            let why = if failed { "a page failed" } else { "timed out" };
            let listener_log = lc.page_log(listener).await;
            panic!(
                "{why}: the listener did not receive > {MIN_PACKETS} audio packets with no loss and audio energy > 0 \
                 within {AUDIO_TIMEOUT:?}.\nlast listener stats: {last_listener}\nlast speaker stats: {last_speaker}\n\
                 listener log:\n{listener_log}\nspeaker log:\n{}\nchromium stderr (tail):\n{}\n{}",
                speaker_cdp.page_log(speaker).await,
                listener_browser.stderr_tail(),
                more(),
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The acceptance criterion on the listener's inbound audio.
fn heard(stats: &Value) -> bool {
    stats["packetsReceived"].as_u64().is_some_and(|n| n > MIN_PACKETS)
        && stats["packetsLost"].as_i64() == Some(0)
        && stats["totalAudioEnergy"].as_f64().is_some_and(|e| e > 0.0)
}

/// Serves `peer.html` on 127.0.0.1:0 (any other path is 404) until dropped.
pub(crate) struct PageServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl PageServer {
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the page server");
        let addr = listener.local_addr().expect("page server address");
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_one(stream));
            }
        });
        Self { addr, task }
    }

    pub(crate) fn peer_url(&self, ws: &str, token: &str, mode: &str) -> String {
        format!("http://{}/peer.html?ws={}&token={}&mode={mode}", self.addr, encode(ws), encode(token))
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_one(mut stream: TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let path = head.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = if path == "/peer.html" || path.starts_with("/peer.html?") {
        ("200 OK", PEER_HTML)
    } else {
        ("404 Not Found", "not found\n")
    };
    let kind = if status.starts_with("200") { "text/html; charset=utf-8" } else { "text/plain" };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A headless Chromium with a fake microphone and a temporary profile; killed (with its process group) on drop.
pub(crate) struct Chromium {
    child: Child,
    profile: PathBuf,
    pub(crate) devtools_url: String,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

impl Chromium {
    pub(crate) async fn launch() -> Self {
        Self::launch_with(None).await
    }

    /// Launches with `prefs` as the profile's preferences (e.g. a WebRTC IP handling policy).
    pub(crate) async fn launch_with(prefs: Option<Value>) -> Self {
        let bin = std::env::var("PODIUM_CHROMIUM").unwrap_or_else(|_| DEFAULT_CHROMIUM.to_owned());
        assert!(
            Path::new(&bin).exists(),
            "Chromium not found at {bin}. This end-to-end audio test needs Debian's headless Chromium: `.ci/run` \
             installs it when missing (apt-get install -y --no-install-recommends chromium), or set PODIUM_CHROMIUM \
             to another Chromium binary."
        );
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let profile = std::env::temp_dir().join(format!("podium-chromium-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&profile).expect("create the Chromium profile directory");
        if let Some(prefs) = prefs {
            let default = profile.join("Default");
            std::fs::create_dir_all(&default).expect("create the Chromium profile directory");
            std::fs::write(default.join("Preferences"), prefs.to_string()).expect("write the profile's preferences");
        }

        let mut child = Command::new(&bin)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                // A fake microphone (a beeping tone) and an auto-accepted permission prompt.
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                "--autoplay-policy=no-user-gesture-required",
                "--allow-loopback-in-peer-connection",
                // Real host addresses instead of mDNS names in ICE candidates, so 127.0.0.1 can be kept.
                "--disable-features=WebRtcHideLocalIpsWithMdns",
                "--disable-background-networking",
                "--disable-background-timer-throttling",
                "--disable-renderer-backgrounding",
                "--disable-backgrounding-occluded-windows",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-dev-shm-usage",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own process group, so that drop can kill the renderers and helpers too.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start Chromium ({bin}): {e}"));

        // Chromium prints "DevTools listening on ws://…" on stderr; keep reading (a tail for failure messages).
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let (url_tx, url_rx) = tokio::sync::oneshot::channel();
        let pipe = child.stderr.take().expect("piped stderr");
        let tail = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut url_tx = Some(url_tx);
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("DevTools listening on ")
                    && let Some(tx) = url_tx.take()
                {
                    let _ = tx.send(url.trim().to_owned());
                }
                let mut tail = tail.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if tail.len() >= 200 {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });

        let mut browser = Self { child, profile, devtools_url: String::new(), stderr };
        match tokio::time::timeout(Duration::from_secs(30), url_rx).await {
            Ok(Ok(url)) => browser.devtools_url = url,
            Ok(Err(_)) => panic!(
                "Chromium ({bin}) exited before announcing its DevTools endpoint (status {:?}); stderr:\n{}",
                browser.child.try_wait(),
                browser.stderr_tail()
            ),
            Err(_) => panic!("Chromium did not announce its DevTools endpoint within 30 s; stderr:\n{}", {
                browser.stderr_tail()
            }),
        }
        browser
    }

    fn stderr_tail(&self) -> String {
        let tail = self.stderr.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Without a system bus Chromium logs dbus errors all the time; they are noise here.
        tail.iter().filter(|l| !l.contains(":ERROR:dbus/")).map(String::as_str).collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // The process group is the browser's pid (process_group(0)); kill it with every helper process in it.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Helpers may still be writing into the profile for a moment.
        for _ in 0..10 {
            if std::fs::remove_dir_all(&self.profile).is_ok() || !self.profile.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A page opened over CDP: its target and flattened session.
pub(crate) struct Page {
    session: String,
}

/// A Chrome DevTools Protocol client on the browser endpoint (flattened sessions).
pub(crate) struct Cdp {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Cdp {
    pub(crate) async fn connect(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .unwrap_or_else(|e| panic!("connect to Chromium's DevTools at {url}: {e}"));
        Self { ws, next_id: 1 }
    }

    /// Sends one command and returns its `result`; events and other replies are skipped.
    async fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.ws.send(Message::Text(msg.to_string().into())).await?;
        let reply = tokio::time::timeout(Duration::from_secs(15), async {
            while let Some(frame) = self.ws.next().await {
                if let Message::Text(text) = frame? {
                    let v: Value = serde_json::from_str(&text)?;
                    if v["id"] == id {
                        return Ok(v);
                    }
                }
            }
            anyhow::bail!("the DevTools connection closed")
        })
        .await
        .map_err(|_| anyhow::anyhow!("no reply to {method} within 15 s"))??;
        if let Some(err) = reply.get("error") {
            anyhow::bail!("{method} failed: {err}");
        }
        Ok(reply["result"].clone())
    }

    /// Opens `url` in a new tab and attaches to it.
    pub(crate) async fn open(&mut self, url: &str) -> Page {
        let target = self.call(None, "Target.createTarget", json!({ "url": url })).await.expect("Target.createTarget");
        let target_id = target["targetId"].as_str().expect("targetId").to_owned();
        let attached = self
            .call(None, "Target.attachToTarget", json!({ "targetId": target_id, "flatten": true }))
            .await
            .expect("Target.attachToTarget");
        Page { session: attached["sessionId"].as_str().expect("sessionId").to_owned() }
    }

    /// Evaluates `expression` (which yields a JSON string or a promise of one) in the page and parses it.
    pub(crate) async fn eval_json(&mut self, page: &Page, expression: &str) -> anyhow::Result<Value> {
        let result = self
            .call(
                Some(&page.session),
                "Runtime.evaluate",
                json!({ "expression": expression, "awaitPromise": true, "returnByValue": true }),
            )
            .await?;
        if let Some(ex) = result.get("exceptionDetails") {
            anyhow::bail!("page threw: {}", ex["exception"]["description"].as_str().unwrap_or(&ex.to_string()));
        }
        match &result["result"]["value"] {
            Value::String(s) => Ok(serde_json::from_str(s)?),
            other => anyhow::bail!("not a JSON string: {other}"),
        }
    }

    /// `window.podium.stats()` of the page (not ready while the page is still loading).
    async fn stats(&mut self, page: &Page) -> anyhow::Result<Value> {
        self.eval_json(
            page,
            "(async () => window.podium ? JSON.stringify(await window.podium.stats()) : '{\"state\":\"loading\"}')()",
        )
        .await
    }

    /// The page's own log, for failure messages.
    async fn page_log(&mut self, page: &Page) -> String {
        match self.eval_json(page, "JSON.stringify(window.podium ? window.podium.log : ['(no window.podium)'])").await {
            Ok(Value::Array(lines)) => {
                lines.iter().map(|l| format!("  {}", l.as_str().unwrap_or_default())).collect::<Vec<_>>().join("\n")
            }
            Ok(other) => format!("  {other}"),
            Err(e) => format!("  (unavailable: {e})"),
        }
    }
}
