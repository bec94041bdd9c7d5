//! The aiortc peer harness shared by the audio end-to-end tests (`media_aiortc`, `media_redis`): `tests/media/peer.py`
//! processes that join a hub started in the test, negotiate with `media_offer`, publish sine tones and report, every
//! 0.5 s and per received track, the dominant frequency (FFT) and RMS of what they decoded.
//!
//! Needs Python with aiortc, numpy and websockets: `.ci/run` makes `.venv-media` and sets `PODIUM_PYTHON`; by hand,
//! `python3 -m venv .venv-media && .venv-media/bin/pip install -r tests/media/requirements.txt` and
//! `PODIUM_PYTHON=$PWD/.venv-media/bin/python cargo test -p podium-e2e --test it media_aiortc`.
//!
//! Also included (with `support`) by `crates/podium/tests/failover.rs`, whose hubs are `podium serve` processes: it
//! uses [`Peer::spawn_at`] and nothing of this crate but `support`.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use podium_hub::{Config, Role};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::support::TestHub;

/// From spawn to `ready` (joined, negotiated, ICE and DTLS connected): Python start-up, aiortc import, handshake.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// From the moment a tone should be audible to the listeners finding it.
pub(crate) const HEAR_TIMEOUT: Duration = Duration::from_secs(20);
/// A report counts as "heard" above this RMS (int16 scale); the tones are sent at amplitude 8000 (RMS ≈ 4000 decoded).
pub(crate) const LOUD_RMS: f64 = 1000.0;
/// Frequency tolerance of the acceptance criteria.
pub(crate) const TOLERANCE_HZ: f64 = 5.0;
/// This many consecutive reports (0.5 s each) on one track make a tone "heard steadily".
pub(crate) const STEADY_REPORTS: usize = 3;

pub(crate) fn now_unix() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs_f64()
}

pub(crate) fn python() -> String {
    std::env::var("PODIUM_PYTHON").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "python3".to_owned())
}

/// `tests/media/peer.py`, found from the including package's directory (`tests/` or `crates/podium/`).
pub(crate) fn peer_script() -> PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|dir| dir.join("tests").join("media").join("peer.py"))
        .find(|script| script.is_file())
        .unwrap_or_else(|| manifest.join("media").join("peer.py"))
}

/// Fails (does not skip) when the Python side is missing, saying how to get it.
pub(crate) fn require_aiortc() {
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    let result = CHECK.get_or_init(|| {
        let py = python();
        let out = Command::new(&py)
            .args(["-c", "import aiortc, av, numpy, websockets; print(aiortc.__version__)"])
            .output()
            .map_err(|e| format!("cannot run `{py}`: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("`{py}` cannot import aiortc/numpy/websockets:\n{}", String::from_utf8_lossy(&out.stderr)))
        }
    });
    if let Err(why) = result {
        panic!(
            "the aiortc end-to-end tests need Python with aiortc, numpy and websockets. {why}\n\
             Run `.ci/run` (it creates .venv-media and sets PODIUM_PYTHON), or by hand:\n  \
             python3 -m venv .venv-media && .venv-media/bin/pip install -r tests/media/requirements.txt\n  \
             export PODIUM_PYTHON=$PWD/.venv-media/bin/python"
        );
    }
}

/// A hub whose SFU binds ephemeral UDP ports on loopback.
pub(crate) async fn media_hub() -> TestHub {
    media_hub_with(|_| {}).await
}

/// [`media_hub`], with more configuration (applied after the media settings).
pub(crate) async fn media_hub_with(tweak: impl FnOnce(&mut Config)) -> TestHub {
    TestHub::start_with(|c| {
        c.media.enabled = true;
        c.media.bind = [127, 0, 0, 1].into();
        c.media.port = 0;
        c.media.workers = 1;
        tweak(c);
    })
    .await
}

/// A peer under test, as the tests read it: its events (JSON, in the shape of `peer.py`'s lines) arrive on a channel
/// and are kept, in order, as the test takes them. `R` is what runs it: a `peer.py` process ([`Peer`]) or the
/// webrtc-rs client's task (`webrtcrs::Listener`).
pub(crate) struct Harness<R: Runner> {
    pub(crate) name: String,
    lines: mpsc::UnboundedReceiver<Value>,
    /// Every event taken from `lines` so far, in order.
    pub(crate) seen: Vec<Value>,
    /// When each event of `seen` was taken (Unix seconds; the test reads events as they come while it waits).
    pub(crate) seen_at: Vec<f64>,
    pub(crate) runner: R,
}

/// What runs a [`Harness`]'s peer, and what it has to say when a test fails.
pub(crate) trait Runner: Sized {
    /// Whether the peer has ended, for a timeout's message (`process exit: …`, `task finished: …`).
    fn ended(&mut self) -> String;

    /// `peer`'s last events and whatever else helps to understand a failure.
    fn diagnostics(peer: &Harness<Self>) -> String;
}

impl<R: Runner> Harness<R> {
    pub(crate) fn new(name: &str, lines: mpsc::UnboundedReceiver<Value>, runner: R) -> Self {
        Self { name: name.to_owned(), lines, seen: Vec::new(), seen_at: Vec::new(), runner }
    }

    pub(crate) fn diagnostics(&self) -> String {
        R::diagnostics(self)
    }

    /// The next event, or None at `deadline` or when the peer has ended.
    pub(crate) async fn next_until(&mut self, deadline: Instant) -> Option<Value> {
        let v = tokio::time::timeout_at(deadline, self.lines.recv()).await.ok().flatten()?;
        self.seen.push(v.clone());
        self.seen_at.push(now_unix());
        Some(v)
    }

    /// Reads events until one matches `pred`; panics with diagnostics on timeout or when the peer has ended.
    pub(crate) async fn wait_for(&mut self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            match self.next_until(deadline).await {
                Some(v) if pred(&v) => return v,
                Some(v) if v["event"] == "error" => eprintln!("{}: {v}", self.name),
                Some(_) => {}
                None => {
                    let ended = self.runner.ended();
                    panic!("{}: no {what} within {timeout:?} ({ended})\n{}", self.name, self.diagnostics())
                }
            }
        }
    }

    /// Reads everything that arrives for `window`; returns it.
    pub(crate) async fn collect(&mut self, window: Duration) -> Vec<Value> {
        let deadline = Instant::now() + window;
        let mut out = Vec::new();
        while let Some(v) = self.next_until(deadline).await {
            out.push(v);
        }
        out
    }

    /// Every event seen so far with `event` == `kind`.
    pub(crate) fn seen_events<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.seen.iter().filter(move |v| v["event"] == kind)
    }

    /// Every hub event of `type` seen so far.
    pub(crate) fn hub_events<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.seen_events("ws").map(|v| &v["msg"]).filter(move |m| m["type"] == kind)
    }

    /// The last `other` events other than audio reports (which come every 0.5 s and would crowd out the rest), then
    /// the last `audio` audio reports; one a line.
    pub(crate) fn last_events(&self, other: usize, audio: usize) -> String {
        let tail = |is_audio: bool, n: usize| -> Vec<String> {
            let lines: Vec<String> =
                self.seen.iter().filter(|v| (v["event"] == "audio") == is_audio).map(Value::to_string).collect();
            lines[lines.len().saturating_sub(n)..].to_vec()
        };
        let mut last = tail(false, other);
        last.extend(tail(true, audio));
        last.join("\n")
    }

    /// Reads events until `STEADY_REPORTS` consecutive audio reports of one (peer connection, mid) carry `hz` (± `tol`)
    /// loudly, on a peer connection of generation `min_gen` or later, counting the reports seen before; returns that
    /// mid and the reports, or None after `timeout`.
    pub(crate) async fn steady_tone(
        &mut self,
        hz: f64,
        tol: f64,
        min_gen: u64,
        timeout: Duration,
    ) -> Option<(String, Vec<Value>)> {
        let deadline = Instant::now() + timeout;
        let mut runs: BTreeMap<(u64, String), Vec<Value>> = BTreeMap::new();
        let mut checked = 0;
        loop {
            for v in self.seen[checked..].iter().filter(|v| v["event"] == "audio") {
                let key = (v["gen"].as_u64().unwrap_or(0), v["mid"].as_str().unwrap_or_default().to_owned());
                if key.0 < min_gen {
                    continue;
                }
                let run = runs.entry(key.clone()).or_default();
                if is_tone(v, hz, tol) {
                    run.push(v.clone());
                    if run.len() >= STEADY_REPORTS {
                        return Some((key.1, std::mem::take(run)));
                    }
                } else {
                    run.clear();
                }
            }
            checked = self.seen.len();
            self.next_until(deadline).await?;
        }
    }
}

impl<R: Runner> Drop for Harness<R> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.diagnostics());
        }
    }
}

/// One `peer.py` process: its stdout lines (JSON) arrive as the events; stdin takes commands. Killed on drop.
pub(crate) type Peer = Harness<PeerProcess>;

/// What runs a [`Peer`]: the `peer.py` process.
pub(crate) struct PeerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    next_tag: u64,
}

impl Runner for PeerProcess {
    fn ended(&mut self) -> String {
        format!("process exit: {:?}", self.child.try_wait().ok().flatten())
    }

    fn diagnostics(peer: &Peer) -> String {
        let stderr: Vec<String> = peer.runner.stderr.lock().map(|t| t.iter().cloned().collect()).unwrap_or_default();
        format!(
            "--- {} last stdout lines:\n{}\n--- {} stderr (tail):\n{}",
            peer.name,
            peer.last_events(25, 4),
            peer.name,
            stderr.join("\n")
        )
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Peer {
    pub(crate) fn spawn(hub: &TestHub, name: &str, identity: &str, room: &str, role: Role, args: &[&str]) -> Self {
        Self::spawn_at(name, &hub.url(), &hub.token(identity, room, role), args)
    }

    /// A peer joining the hub at `url` with `token` (for hubs not started in this process).
    pub(crate) fn spawn_at(name: &str, url: &str, token: &str, args: &[&str]) -> Self {
        require_aiortc();
        let mut child = Command::new(python())
            .arg("-u")
            .arg(peer_script())
            .args(["--url", url, "--token", token])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {} {}: {e}", python(), peer_script().display()));

        let (tx, lines) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value = serde_json::from_str(&line).unwrap_or_else(|_| json!({"event": "raw", "line": line}));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let tail = Arc::clone(&stderr);
        let err = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let mut tail = tail.lock().expect("stderr lock");
                if tail.len() == 60 {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
        let stdin = child.stdin.take();
        Self::new(name, lines, PeerProcess { child, stdin, stderr, next_tag: 1 })
    }

    pub(crate) async fn ready(&mut self) {
        self.wait_for("`ready`", READY_TIMEOUT, |v| v["event"] == "ready").await;
    }

    pub(crate) fn command(&mut self, cmd: &Value) {
        let stdin = self.runner.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{cmd}").and_then(|()| stdin.flush()).expect("write to peer stdin");
    }

    /// Sends a protocol request through the peer's own websocket; returns the hub's reply.
    pub(crate) async fn request(&mut self, body: Value) -> Value {
        let tag = self.runner.next_tag;
        self.runner.next_tag += 1;
        self.command(&json!({"send": body, "tag": tag}));
        let what = format!("reply to {body}");
        let reply = self.wait_for(&what, Duration::from_secs(10), |v| v["event"] == "reply" && v["tag"] == tag).await;
        reply["msg"].clone()
    }

    /// Sends a `peer.py` stdin command (`drop_ws`, `rejoin`, `media_cut`, `new_pc`, `stats`, ...); returns its reply.
    pub(crate) async fn control(&mut self, mut cmd: Value, timeout: Duration) -> Value {
        let tag = self.runner.next_tag;
        self.runner.next_tag += 1;
        cmd["tag"] = json!(tag);
        self.command(&cmd);
        let what = format!("reply to command {cmd}");
        let reply = self.wait_for(&what, timeout, |v| v["event"] == "reply" && v["tag"] == tag).await;
        reply["msg"].clone()
    }

    pub(crate) async fn ok(&mut self, body: Value) -> Value {
        let reply = self.request(body.clone()).await;
        assert_eq!(reply["type"], "ok", "{}: expected ok for {body}, got {reply}", self.name);
        reply
    }

    /// Waits until `STEADY_REPORTS` consecutive reports of one track carry `hz` (± `TOLERANCE_HZ`) loudly.
    /// Returns that track's mid and the matching reports.
    pub(crate) async fn until_heard(&mut self, hz: f64, timeout: Duration) -> (String, Vec<Value>) {
        let deadline = Instant::now() + timeout;
        let mut runs: std::collections::HashMap<String, Vec<Value>> = std::collections::HashMap::new();
        loop {
            let Some(v) = self.next_until(deadline).await else {
                panic!(
                    "{}: did not hear {hz} Hz ± {TOLERANCE_HZ} steadily within {timeout:?}\n{}",
                    self.name,
                    self.diagnostics()
                );
            };
            if v["event"] != "audio" {
                continue;
            }
            let mid = v["mid"].as_str().unwrap_or_default().to_owned();
            let run = runs.entry(mid.clone()).or_default();
            if is_tone(&v, hz, TOLERANCE_HZ) {
                run.push(v);
                if run.len() >= STEADY_REPORTS {
                    return (mid, std::mem::take(run));
                }
            } else {
                run.clear();
            }
        }
    }

    /// Closes stdin (the peer leaves and exits) and waits for the exit.
    pub(crate) async fn finish(mut self) -> ExitStatus {
        drop(self.runner.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.runner.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within 10 s of stdin EOF\n{}",
                self.name,
                self.diagnostics()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A loud report whose dominant frequency is `hz` ± `tol`.
pub(crate) fn is_tone(report: &Value, hz: f64, tol: f64) -> bool {
    report["event"] == "audio"
        && report["rms"].as_f64().unwrap_or(0.0) > LOUD_RMS
        && report["frames"].as_u64().unwrap_or(0) >= 10
        && report["freq"].as_f64().is_some_and(|f| (f - hz).abs() <= tol)
}

pub(crate) fn freqs(reports: &[Value]) -> Vec<f64> {
    reports.iter().filter_map(|r| r["freq"].as_f64()).collect()
}

/// The Unix time of the last loud 20 ms frame `p` decoded on `mid`, over the whole run (NaN if none).
pub(crate) fn last_loud_on(p: &Peer, mid: &str) -> f64 {
    p.seen_events("audio")
        .filter(|r| r["mid"] == mid)
        .filter_map(|r| r["last_loud_t"].as_f64())
        .fold(f64::NAN, f64::max)
}

/// The participant a listener's latest `media_tracks` event puts on `mid`.
pub(crate) fn track_owner(peer: &Peer, mid: &str) -> Option<String> {
    let last = peer.hub_events("media_tracks").last()?;
    last["tracks"]
        .as_array()?
        .iter()
        .find(|t| t["mid"] == mid)
        .and_then(|t| t["participant"].as_str().map(str::to_owned))
}

/// `p`'s reports on `mid` whose window ended within `from..=to` (Unix seconds).
pub(crate) fn reports_on<'a>(p: &'a Peer, mid: &str, from: f64, to: f64) -> Vec<&'a Value> {
    p.seen_events("audio")
        .filter(|r| r["mid"] == mid && r["t"].as_f64().is_some_and(|t| (from..=to).contains(&t)))
        .collect()
}

/// The longest stretch within `from..=to` (Unix seconds) in which none of `reports` (audio reports, of any peer
/// connections and tracks) had a loud frame; and when it started. Each report covers its window from its first to its
/// last loud frame, except for its longest wait between two loud frames (`max_loud_gap`), which counts as silence too
/// when it started at `from` or later and ended at `gaps_end_by` or earlier (`to`: within the stretch;
/// `f64::INFINITY`: also a gap that runs on past `to`, whole).
pub(crate) fn longest_silence<'a>(
    reports: impl IntoIterator<Item = &'a Value>,
    from: f64,
    to: f64,
    gaps_end_by: f64,
) -> (f64, f64) {
    let reports: Vec<&Value> =
        reports.into_iter().filter(|r| r["t"].as_f64().is_some_and(|t| t >= from && t <= to + 1.0)).collect();
    let mut spans: Vec<(f64, f64)> = reports
        .iter()
        .filter_map(|r| Some((r["first_loud_t"].as_f64()?, r["last_loud_t"].as_f64()?)))
        .filter(|(first, last)| *last >= from && *first <= to)
        .collect();
    spans.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut longest = (0.0, from);
    let mut heard_until = from;
    for (first, last) in spans {
        if first - heard_until > longest.0 {
            longest = (first - heard_until, heard_until);
        }
        heard_until = heard_until.max(last);
    }
    if to - heard_until > longest.0 {
        longest = (to - heard_until, heard_until);
    }
    for r in &reports {
        if let (Some(gap), Some(last)) = (r["max_loud_gap"].as_f64(), r["last_loud_t"].as_f64())
            && gap > longest.0
            && last - gap >= from
            && last <= gaps_end_by
        {
            longest = (gap, last - gap);
        }
    }
    longest
}
