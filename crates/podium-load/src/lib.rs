//! Load generation against a Podium hub over the real protocol (issue #14, item 5): the library behind
//! `podium loadtest` (docs/LOADTEST.md). Pure client side: it speaks to a hub only through its websocket, its SFU
//! and (for its CPU and memory) its `/metrics`, so it works against a remote deployment.
//!
//! # What runs
//!
//! * **Listeners** join at a set rate (the storm): websocket, `join` with an audience token (minted from the
//!   operator's secret like `podium token`, or fetched from the admin API with an admin key), `media_offer` with a
//!   str0m offer (one `recvonly` audio m-line), ICE and DTLS, then SRTP. Most listeners count SRTP packets without
//!   decrypting them (`media.rs`); one in `sample_every` decrypts and checks every frame (`audio.rs`).
//! * **The speaker** (moderator token, unmuted, `sendrecv`) sends a libopus 440 Hz tone every 20 ms, each frame
//!   carrying its send time in Opus padding: the sampled listeners measure the end-to-end delay from it.
//! * **Scenarios** after the storm (see [`Scenario`]): listener churn, a reconnect storm, stage changes.
//! * **The hub's CPU and memory** from its `/metrics` or `/proc/<pid>` (`hubstat.rs`), and the generator's own.
//!
//! # Scale: thousands of listeners on a shared core
//!
//! * One DTLS certificate for every `Rtc` of the run (a key pair per peer would cost a key generation per join),
//!   except rejoins: the SFU tells a new peer connection of the same identity by its new fingerprint.
//! * Media threads own many peers each, with a timer heap (only due peers are touched) and `recvmmsg` reads
//!   (one system call per readable socket); counting allocates nothing per packet. Ticked threads sleep between
//!   polls so the hub's sends never wake a reader; one precise thread hosts the speaker and the sampled listeners.
//! * Websockets with 4 KiB read buffers, one tokio worker for all of them; every queue bounded.
//! * Sources: against a loopback hub, listener `i` opens its websocket and its UDP socket from `127.1.x.y`, one of
//!   `sources` loopback addresses (Linux routes all of 127/8 to `lo`), so the hub's per-source admission limits
//!   (`limits.pending_per_source`, `connects_per_source_per_second`) see many clients, and ports do not run out.
//! * The open-file limit is raised to its hard maximum at start (two descriptors per listener).
//!
//! # TLS
//!
//! A `wss://` hub: each session's TLS handshake runs over its own (source-bound) TCP stream, with one rustls
//! configuration for the run: the system's roots plus `ca_file` (`tls.rs`). The `/metrics` default is then
//! `https://`, fetched with the same extra authority.

mod audio;
mod hubstat;
mod media;
mod report;
mod signal;
mod tls;

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs as _, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

pub use hubstat::Usage;
pub use report::{CohortStats, DelayStats, ListenerReport, LossStats, PhaseStats, Report, StageStats, table};
pub use signal::End;
pub use tls::http_client;

/// What happens after (and during) the storm.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scenario {
    /// Listeners join at the rate and stay.
    Storm,
    /// After the storm, `rate` times a second the longest-present listener leaves and a new one joins, while the
    /// others (the seated ones) are measured.
    Churn { rate: f64 },
    /// `after` the storm, `count` listeners (all when 0) drop their websocket and peer connection without a word
    /// and rejoin at once (same identities, new peer connections).
    Reconnect { after: Duration, count: usize },
    /// After the storm, `rate` times a second a moderator invites the next listener to the stage; it accepts,
    /// unmutes and publishes the tone on a new `sendonly` m-line (the others answer the SFU's offers of a new slot);
    /// `hold` later the moderator moves it back to the audience.
    Stage { rate: f64, hold: Duration },
}

impl Scenario {
    fn name(&self) -> &'static str {
        match self {
            Self::Storm => "storm",
            Self::Churn { .. } => "churn",
            Self::Reconnect { .. } => "reconnect",
            Self::Stage { .. } => "stage",
        }
    }
}

/// How participants get their tokens.
#[derive(Clone, Debug)]
pub enum Auth {
    /// The hub's `auth.secret`: tokens are minted here (HS256).
    Secret(String),
    /// An admin API key (scope `admin`): tokens come from `POST /v1/admin/tokens` at `base` (`http://host:port`).
    /// Slower (one request per join, under the admin API's rate limit).
    AdminKey { key: String, base: String, client: reqwest::Client },
}

impl Auth {
    /// A token for `identity` in `room` with the role ceiling `role`.
    pub(crate) async fn token(&self, identity: &str, room: &str, role: &str) -> anyhow::Result<String> {
        match self {
            Self::Secret(secret) => mint_token(secret, identity, room, role),
            Self::AdminKey { key, base, client } => {
                let body = json!({"identity": identity, "room": room, "role": role, "ttl_seconds": 3600});
                for _ in 0..20 {
                    let resp = client
                        .post(format!("{base}/v1/admin/tokens"))
                        .bearer_auth(key)
                        .json(&body)
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await
                        .context("admin API")?;
                    if resp.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
                        let wait = resp
                            .headers()
                            .get(reqwest::header::RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse::<f64>().ok())
                            .unwrap_or(1.0);
                        tokio::time::sleep(Duration::from_secs_f64(wait.clamp(0.05, 10.0))).await;
                        continue;
                    }
                    let v: Value = resp.error_for_status().context("admin API")?.json().await.context("admin API")?;
                    return v["token"].as_str().map(str::to_owned).context("no token in the admin API's answer");
                }
                bail!("the admin API kept answering 429")
            }
        }
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// The hub's websocket URL, e.g. `ws://127.0.0.1:7880/v1/ws` or `wss://hub.example.com` (a URL without a path
    /// gets `/v1/ws`; the port defaults to 80 for `ws://`, 443 for `wss://`).
    pub url: String,
    /// A PEM file of certificate authorities trusted besides the system's, for a `wss://` hub and its `https://`
    /// `/metrics` (e.g. a private CA).
    pub ca_file: Option<PathBuf>,
    pub auth: Auth,
    /// The room every participant joins.
    pub room: String,
    /// How many listeners join in the storm.
    pub listeners: usize,
    /// Joins started per second.
    pub rate: f64,
    /// How long the run lasts, from the first join (the storm included).
    pub duration: Duration,
    /// Also join one speaker that sends Opus.
    pub speaker: bool,
    pub scenario: Scenario,
    /// Ticked media threads the counting listeners are spread over (at least 1); one precise thread is added.
    pub media_threads: usize,
    /// Sleep between a ticked thread's polls.
    pub tick: Duration,
    /// Against a loopback hub: give every counting listener a socket of its own instead of an address of its own
    /// on its media thread's shared socket (see `media`); costs the generator a system call and an epoll event
    /// per listener and tick.
    pub socket_per_listener: bool,
    /// Loopback source addresses to spread over (against a loopback hub; 0: the default route's address only).
    pub sources: usize,
    /// One listener in this many decrypts and checks its audio (0: none).
    pub sample_every: usize,
    /// The hub's `/metrics` URL (`None`: derived from `url`).
    pub metrics_url: Option<String>,
    /// Read the hub's CPU and memory from `/proc/<pid>` instead.
    pub pid: Option<u32>,
}

/// The phases a listener goes through, in order.
pub const PHASES: [&str; 5] = ["websocket open", "joined", "answer", "connected", "first audio"];

/// Live counts for a progress display: how many listeners reached each phase, and failures.
#[derive(Debug, Default)]
pub struct Progress {
    /// Listener sessions started.
    pub started: AtomicUsize,
    /// Per phase of [`PHASES`].
    pub reached: [AtomicUsize; 5],
    /// Sessions that failed (their error is in the report).
    pub failed: AtomicUsize,
    /// RTP packets counted by all listeners.
    pub packets: AtomicU64,
    /// SFU offers answered.
    pub offers: AtomicU64,
    /// Sessions that left or dropped (churn, reconnect).
    pub ended: AtomicUsize,
}

/// Mints an HS256 access token (the claims of proto/PROTOCOL.md, "Authentication"), valid for an hour.
pub fn mint_token(secret: &str, identity: &str, room: &str, role: &str) -> anyhow::Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).context("clock")?.as_secs();
    let claims = json!({"sub": identity, "room": room, "role": role, "iat": now, "exp": now + 3600});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .context("minting a token")
}

/// `ws://host:port` → `ws://host:port/v1/ws` (`wss://` likewise); anything with a path is kept.
fn ws_url(url: &str) -> anyhow::Result<String> {
    let Some(rest) = url.strip_prefix("ws://").or_else(|| url.strip_prefix("wss://")) else {
        bail!("--url must start with ws:// or wss://");
    };
    if rest.is_empty() || rest.starts_with('/') {
        bail!("--url has no host: {url}");
    }
    Ok(if rest.contains('/') { url.to_owned() } else { format!("{url}/v1/ws") })
}

/// Whether `url` (already through [`ws_url`]) is `wss://`.
fn is_tls(url: &str) -> bool {
    url.starts_with("wss://")
}

/// `ws://host:port/...` → (`host:port`, the hub's address); the port defaults to 80 (`ws://`) or 443 (`wss://`).
fn hub_addr(url: &str) -> anyhow::Result<(String, SocketAddr)> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    // A port follows the last ':' outside an IPv6 literal's brackets.
    let has_port = authority.rsplit_once(':').is_some_and(|(_, p)| !p.contains(']'));
    let default_port = if is_tls(url) { 443 } else { 80 };
    let with_port = if has_port { authority.to_owned() } else { format!("{authority}:{default_port}") };
    let hub = with_port.to_socket_addrs().context("resolving the hub")?.next().context("the hub has no address")?;
    Ok((with_port, hub))
}

/// The local address a socket would use to reach the hub.
fn local_ip_towards(hub: SocketAddr) -> anyhow::Result<IpAddr> {
    let probe = UdpSocket::bind(if hub.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }).context("probe socket")?;
    probe.connect(hub).context("no route to the hub")?;
    Ok(probe.local_addr().context("probe address")?.ip())
}

/// The loopback source of session `id`: 127.1.x.y, one of `sources`.
fn source_of(id: usize, sources: usize) -> IpAddr {
    let k = id % sources.max(1);
    IpAddr::V4(Ipv4Addr::new(127, 1, (k / 250) as u8, (k % 250 + 1) as u8))
}

/// Raises the open-file limit to its hard maximum; returns the soft limit now in force.
fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return 0 };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return hard;
    }
    soft
}

/// A running session.
struct Running {
    identity: String,
    cohort: &'static str,
    sample: bool,
    ctl: mpsc::Sender<signal::Control>,
    handle: tokio::task::JoinHandle<signal::SignalReport>,
}

/// What the orchestrator needs to start sessions.
struct Spawner {
    common: Arc<signal::Common>,
    precise: media::Handle,
    ticked: Vec<media::Handle>,
    local_ip: IpAddr,
    loopback: bool,
    sources: usize,
    sample_every: usize,
    next_id: usize,
    role: &'static str,
}

impl Spawner {
    fn spawn(&mut self, identity: String, cohort: &'static str, speaker: bool, runs: &mut Vec<Running>) -> usize {
        let id = self.next_id;
        self.next_id += 1;
        let sample = !speaker && self.sample_every > 0 && id.is_multiple_of(self.sample_every);
        let media = if speaker || sample { self.precise.clone() } else { self.ticked[id % self.ticked.len()].clone() };
        let source = (self.loopback && self.sources > 0).then(|| source_of(id, self.sources));
        let s = signal::Session {
            id,
            identity: identity.clone(),
            role: if speaker { "moderator" } else { self.role },
            source,
            local_ip: self.local_ip,
            speaker,
            sample,
            fresh_cert: cohort == "reconnect",
        };
        if !speaker {
            self.common.progress.started.fetch_add(1, Ordering::Relaxed);
        }
        let (ctl, rx) = mpsc::channel(4);
        let handle = tokio::spawn(signal::session(Arc::clone(&self.common), s, media, rx));
        runs.push(Running { identity, cohort, sample, ctl, handle });
        runs.len() - 1
    }
}

/// The moderator's tally in the stage scenario.
#[derive(Debug, Default)]
struct ModTally {
    invites: u32,
    invite_errors: u32,
    moves: u32,
    move_errors: u32,
    error: Option<String>,
}

/// The stage scenario's moderator: its own connection, no media.
async fn moderator(
    common: Arc<signal::Common>,
    identity: String,
    mut orders: mpsc::Receiver<(bool, String)>,
) -> ModTally {
    let mut t = ModTally::default();
    let r = async {
        let token = common.auth.token(&identity, &common.room, "moderator").await?;
        let mut conn = signal::Conn::new(signal::connect(&common, None).await?);
        conn.request(json!({"type": "join", "token": token, "room": common.room})).await?;
        while let Some((invite, who)) = orders.recv().await {
            conn.deferred.clear();
            let msg = if invite {
                json!({"type": "invite_to_stage", "participant": who})
            } else {
                json!({"type": "move_to_audience", "participant": who})
            };
            match (invite, conn.request(msg).await) {
                (true, Ok(_)) => t.invites += 1,
                (false, Ok(_)) => t.moves += 1,
                (true, Err(e)) => {
                    t.invite_errors += 1;
                    t.error = Some(format!("{e:#}"));
                }
                (false, Err(e)) => {
                    t.move_errors += 1;
                    t.error = Some(format!("{e:#}"));
                }
            }
        }
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = r {
        t.error = Some(format!("moderator: {e:#}"));
    }
    t
}

/// Runs the load test; `progress` is updated as it goes.
pub fn run(config: &Config, progress: Arc<Progress>) -> anyhow::Result<Report> {
    let url = ws_url(&config.url)?;
    let (authority, hub) = hub_addr(&url)?;
    let tls = if is_tls(&url) { Some(tls::client_config(config.ca_file.as_deref())?) } else { None };
    let http = http_client(config.ca_file.as_deref())?;
    let local_ip = local_ip_towards(hub)?;
    let fd_limit = raise_fd_limit();
    let loopback = hub.ip().is_loopback() && hub.is_ipv4();
    let mux = loopback && config.sources > 0 && !config.socket_per_listener;
    let stop = Arc::new(AtomicBool::new(false));
    let base = Instant::now();
    let shared = || media::Shared { stop: Arc::clone(&stop), progress: Arc::clone(&progress), base };
    let mut threads = Vec::new();
    let (precise, h) = media::spawn("podium-load-p".into(), None, shared(), false)?;
    threads.push((precise.clone(), h));
    let mut ticked = Vec::new();
    for t in 0..config.media_threads.max(1) {
        let (handle, h) = media::spawn(format!("podium-load-{t}"), Some(config.tick), shared(), mux)?;
        ticked.push(handle.clone());
        threads.push((handle, h));
    }
    let hub_source = match (config.pid, &config.metrics_url) {
        (Some(pid), _) => hubstat::Source::Pid(pid),
        (None, Some(u)) => hubstat::Source::Metrics(u.clone()),
        (None, None) => {
            let scheme = if tls.is_some() { "https" } else { "http" };
            hubstat::Source::Metrics(format!("{scheme}://{authority}/metrics"))
        }
    };

    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().context("tokio runtime")?;
    let outcome = runtime.block_on(async {
        let start = tokio::time::Instant::now();
        let run_id = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        let (done_tx, done_rx) = watch::channel(false);
        let stage = matches!(config.scenario, Scenario::Stage { .. });
        let common = Arc::new(signal::Common {
            url: url.clone(),
            hub,
            tls,
            room: config.room.clone(),
            auth: config.auth.clone(),
            progress: Arc::clone(&progress),
            done: done_rx.clone(),
            stage,
            cert: Some(str0m::crypto::from_feature_flags().dtls_provider.generate_certificate()).flatten(),
        });
        // Resource figures, once a second until the end.
        let sampler = {
            let mut done = done_rx.clone();
            let source = hub_source.clone();
            tokio::spawn(async move {
                let client = http;
                let mut hub = hubstat::Series::new(match source {
                    hubstat::Source::Metrics(_) => "metrics",
                    hubstat::Source::Pid(_) => "proc",
                });
                let mut me = hubstat::Series::new("proc");
                loop {
                    hub.add(hubstat::read_hub(&client, &source).await);
                    me.add(hubstat::read_proc("self"));
                    tokio::select! {
                        _ = done.changed() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
                hub.add(hubstat::read_hub(&client, &source).await);
                me.add(hubstat::read_proc("self"));
                (hub.usage(), me.usage())
            })
        };
        let mut spawner = Spawner {
            common: Arc::clone(&common),
            precise: precise.clone(),
            ticked: ticked.clone(),
            local_ip,
            loopback,
            sources: config.sources,
            sample_every: config.sample_every,
            next_id: 0,
            role: if stage { "speaker" } else { "audience" },
        };
        let mut runs: Vec<Running> = Vec::new();
        let speaker =
            config.speaker.then(|| spawner.spawn(format!("load-{run_id}-speaker"), "speaker", true, &mut runs));
        if speaker.is_some() {
            // Let the speaker take the stage before the storm.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let start = start.max(tokio::time::Instant::now());
        let end = start + config.duration;
        let interval = Duration::from_secs_f64(1.0 / config.rate.max(0.001));
        let mut present: VecDeque<usize> = VecDeque::new();
        for i in 0..config.listeners {
            let at = start + interval.mul_f64(i as f64);
            if at >= end {
                break;
            }
            tokio::time::sleep_until(at).await;
            present.push_back(spawner.spawn(format!("load-{run_id}-{i}"), "storm", false, &mut runs));
        }
        let mut extra = config.listeners;
        let mut modr = None;
        match config.scenario {
            Scenario::Storm => {}
            Scenario::Churn { rate } => {
                let every = Duration::from_secs_f64(1.0 / rate.max(0.001));
                let mut at = tokio::time::Instant::now() + every;
                // Stop a second before the end, so the last newcomers have joined when it is measured.
                while at + Duration::from_secs(1) < end {
                    tokio::time::sleep_until(at).await;
                    if let Some(k) = present.pop_front() {
                        let _ = runs[k].ctl.try_send(signal::Control::Leave);
                        progress.ended.fetch_add(1, Ordering::Relaxed);
                    }
                    let k = spawner.spawn(format!("load-{run_id}-{extra}"), "churn", false, &mut runs);
                    extra += 1;
                    present.push_back(k);
                    at += every;
                }
            }
            Scenario::Reconnect { after, count } => {
                tokio::time::sleep_until((tokio::time::Instant::now() + after).min(end)).await;
                let n = if count == 0 { present.len() } else { count.min(present.len()) };
                let dropped: Vec<usize> = present.drain(..n).collect();
                for &k in &dropped {
                    let _ = runs[k].ctl.try_send(signal::Control::Drop);
                    progress.ended.fetch_add(1, Ordering::Relaxed);
                }
                for k in dropped {
                    let identity = runs[k].identity.clone();
                    present.push_back(spawner.spawn(identity, "reconnect", false, &mut runs));
                }
            }
            Scenario::Stage { rate, hold } => {
                let (tx, rx) = mpsc::channel(64);
                let m = tokio::spawn(moderator(Arc::clone(&common), format!("load-{run_id}-moderator"), rx));
                let every = Duration::from_secs_f64(1.0 / rate.max(0.001));
                let mut at = tokio::time::Instant::now() + Duration::from_millis(500);
                let mut moves: VecDeque<(tokio::time::Instant, String)> = VecDeque::new();
                let candidates: Vec<usize> = present.iter().copied().filter(|&k| !runs[k].sample).collect();
                let mut next = 0;
                while at + hold + Duration::from_secs(1) < end && !candidates.is_empty() {
                    while let Some((t, who)) = moves.front().cloned() {
                        if t > at {
                            break;
                        }
                        tokio::time::sleep_until(t).await;
                        let _ = tx.try_send((false, who));
                        moves.pop_front();
                    }
                    tokio::time::sleep_until(at).await;
                    let who = runs[candidates[next % candidates.len()]].identity.clone();
                    next += 1;
                    let _ = tx.try_send((true, who.clone()));
                    moves.push_back((at + hold, who));
                    at += every;
                }
                for (t, who) in moves {
                    tokio::time::sleep_until(t.min(end)).await;
                    let _ = tx.try_send((false, who));
                }
                drop(tx);
                modr = Some(m);
            }
        }
        tokio::time::sleep_until(end).await;
        let _ = done_tx.send(true);
        let mut sessions = Vec::new();
        for r in runs {
            let rep = r.handle.await.unwrap_or_else(|e| signal::SignalReport {
                error: Some(format!("task: {e}")),
                end: End::Failed,
                ..signal::SignalReport::default()
            });
            sessions.push((r.identity, r.cohort, rep));
        }
        let tally = match modr {
            Some(m) => Some(m.await.unwrap_or_default()),
            None => None,
        };
        let usage = sampler.await.unwrap_or_default();
        anyhow::Ok((sessions, speaker, tally, usage))
    });
    stop.store(true, Ordering::Relaxed);
    let mut media_report = media::ThreadReport { delay: vec![0; media::DELAY_BUCKETS + 1], ..Default::default() };
    for (handle, join) in threads {
        let _ = handle.waker.wake();
        drop(handle);
        let r = join.join().map_err(|_| anyhow::anyhow!("a media thread panicked"))?;
        media_report.sessions.extend(r.sessions);
        for (a, b) in media_report.delay.iter_mut().zip(&r.delay) {
            *a += b;
        }
        media_report.sampled += r.sampled;
        media_report.frames_marked += r.frames_marked;
        media_report.frames_missing += r.frames_missing;
        media_report.decoded += r.decoded;
        media_report.tone += r.tone;
        media_report.bad += r.bad;
    }
    let (sessions, speaker, tally, (hub_usage, gen_usage)) = outcome?;
    let stage = tally.map(|t| (t.invites, t.invite_errors, t.moves, t.move_errors, t.error));
    Ok(report::summarize(report::Inputs {
        scenario: config.scenario.name(),
        sessions,
        speaker,
        media: media_report,
        stage,
        hub: hub_usage,
        generator: gen_usage,
        fd_limit,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_get_the_websocket_path_and_their_schemes_default_port() {
        assert_eq!(ws_url("ws://127.0.0.1:7880").expect("ws"), "ws://127.0.0.1:7880/v1/ws");
        assert_eq!(ws_url("wss://127.0.0.1").expect("wss"), "wss://127.0.0.1/v1/ws");
        assert_eq!(ws_url("wss://127.0.0.1:8443/x").expect("path kept"), "wss://127.0.0.1:8443/x");
        assert!(ws_url("http://127.0.0.1").is_err());
        assert!(ws_url("wss://").is_err());
        let port = |u: &str| hub_addr(u).expect("address").1.port();
        assert_eq!(port("wss://127.0.0.1/v1/ws"), 443);
        assert_eq!(port("ws://127.0.0.1/v1/ws"), 80);
        assert_eq!(port("wss://127.0.0.1:8443/v1/ws"), 8443);
        assert_eq!(port("ws://[::1]/v1/ws"), 80);
        assert_eq!(hub_addr("wss://[::1]:9/v1/ws").expect("v6").0, "[::1]:9");
    }
}
