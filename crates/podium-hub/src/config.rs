//! Hub configuration: a TOML file (every key optional) overlaid with `PODIUM_SECTION__KEY` environment variables.
//! `deploy/podium.toml` documents every key with its default.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

/// The secret used when none is configured. Tokens signed with it are for development only; `podium serve` warns.
pub const DEVELOPMENT_SECRET: &str = "podium-development-secret-change-me";

/// The whole configuration.
#[derive(Deserialize, Clone, Debug, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listening socket and identity of this node.
    pub server: ServerConfig,
    /// HTTPS and WSS on the listening socket.
    pub tls: TlsConfig,
    /// Token verification.
    pub auth: AuthConfig,
    /// Per-connection limits.
    pub limits: LimitsConfig,
    /// Defaults for new rooms.
    pub room: RoomDefaults,
    /// Where room state is kept.
    pub store: StoreConfig,
    /// The SFU (WebRTC audio).
    pub media: MediaSection,
    /// The admin API.
    pub admin: AdminConfig,
    /// Signed webhooks (Standard Webhooks) to your backend.
    pub webhooks: WebhooksConfig,
    /// The per-room audit log of moderation actions.
    pub audit: AuditConfig,
    /// The summit scheduler.
    pub summit: SummitConfig,
    /// TURN servers handed to clients, with credentials minted per participant.
    pub turn: TurnConfig,
    /// Room chat.
    pub chat: ChatConfig,
    /// Reactions.
    pub reactions: ReactionsConfig,
    /// Recording rooms and mixing their replays.
    pub recording: RecordingConfig,
}

/// `[recording]`: recording rooms (the SFU writes each speaker's Opus packets to Ogg files) and mixing replays with
/// ffmpeg (see `proto/PROTOCOL.md`, "Recording", and `proto/ADMIN.md`, "Recordings").
#[derive(Deserialize, Clone, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct RecordingConfig {
    /// Rooms may be recorded on this hub (a moderator or the admin API starts it). Off: `start_recording` is
    /// refused with `forbidden`.
    pub enabled: bool,
    /// Where track files and replays go: `<dir>/<recording id>/` holds the tracks, `<dir>/<recording id>.ogg` the
    /// replay and `<dir>/<recording id>.json` its description.
    pub dir: PathBuf,
    /// The ffmpeg binary that mixes replays.
    pub ffmpeg: PathBuf,
    /// Mixes running at once (more wait their turn).
    pub max_concurrent_mixes: usize,
    /// A mix taking longer than this is killed and reported failed (`recording.failed`), in seconds.
    pub mix_timeout_s: u64,
    /// The replay's Opus bitrate, in kbit/s (6-256).
    pub bitrate_kbps: u32,
    /// Audio packets queued from the SFU's workers to its recording writer thread; past it they are dropped and
    /// counted (`podium_media_dropped_total{reason="record_queue_full"}`).
    pub queue_packets: usize,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            dir: PathBuf::from("recordings"),
            ffmpeg: PathBuf::from("/usr/bin/ffmpeg"),
            max_concurrent_mixes: 2,
            mix_timeout_s: 600,
            bitrate_kbps: 64,
            queue_packets: podium_media::DEFAULT_RECORD_QUEUE,
        }
    }
}

/// `[chat]`: room chat (see `proto/PROTOCOL.md`, "Chat").
#[derive(Deserialize, Clone, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct ChatConfig {
    /// Whether chat is on in a new room (moderators switch it with `update_settings`).
    pub enabled: bool,
    /// The longest message, in characters after trimming.
    pub max_chars: usize,
    /// Slow mode of a new room, in ms between one participant's messages (moderators exempt; 0: off).
    pub slow_mode_ms: u32,
    /// The room-wide flood cap: messages per second over every sender, sustained.
    pub room_messages_per_second: u32,
    /// The room-wide flood cap's burst.
    pub room_messages_burst: u32,
    /// Messages a room keeps (the oldest go first).
    pub history_messages: usize,
    /// Messages older than this are dropped (0: by count only).
    pub history_max_age_s: u64,
    /// The last messages a snapshot (`welcome`, `resync`, `get_state`) carries.
    pub snapshot_messages: usize,
    /// The largest `chat_history` page (and admin API page).
    pub page_limit: usize,
}

impl Default for ChatConfig {
    /// The state machine's own defaults.
    fn default() -> Self {
        let c = podium_room::RoomConfig::default();
        Self {
            enabled: c.chat,
            max_chars: c.chat_max_chars,
            slow_mode_ms: c.chat_slow_mode_ms,
            room_messages_per_second: c.chat_room_per_second,
            room_messages_burst: c.chat_room_burst,
            history_messages: c.chat_history,
            history_max_age_s: c.chat_max_age / 1_000,
            snapshot_messages: c.chat_snapshot,
            page_limit: c.chat_page_limit,
        }
    }
}

/// `[reactions]`: emoji reactions, counted per window (see `proto/PROTOCOL.md`, "Reactions").
#[derive(Deserialize, Clone, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct ReactionsConfig {
    /// The kinds `react` accepts: each 1-32 characters of `a-z`, `0-9`, `_`; at most 64.
    pub kinds: Vec<String>,
    /// Reactions per second one participant may send, sustained.
    pub per_second: u32,
    /// The per-participant burst.
    pub burst: u32,
    /// The counting window: each hub sends a room's counts at most once per window.
    pub window_ms: u32,
}

impl Default for ReactionsConfig {
    fn default() -> Self {
        Self {
            kinds: ["clap", "heart", "laugh", "fire", "raised_hands", "plus_one"].map(String::from).to_vec(),
            per_second: 3,
            burst: 10,
            window_ms: 500,
        }
    }
}

impl ReactionsConfig {
    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.kinds.is_empty() && self.kinds.len() <= 64, "reactions.kinds: between 1 and 64 kinds");
        for kind in &self.kinds {
            anyhow::ensure!(
                (1..=32).contains(&kind.len())
                    && kind.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "reactions.kinds: {kind:?}: 1-32 characters of a-z, 0-9 and _"
            );
        }
        anyhow::ensure!(self.per_second > 0 && self.burst > 0, "reactions: per_second and burst must be positive");
        anyhow::ensure!((50..=60_000).contains(&self.window_ms), "reactions.window_ms must be 50-60000");
        Ok(())
    }
}

impl ChatConfig {
    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!((1..=10_000).contains(&self.max_chars), "chat.max_chars must be 1-10000");
        anyhow::ensure!(
            self.slow_mode_ms <= podium_room::Settings::MAX_CHAT_SLOW_MODE_MS,
            "chat.slow_mode_ms must be at most 3600000"
        );
        anyhow::ensure!(
            self.room_messages_per_second > 0 && self.room_messages_burst > 0,
            "chat: room_messages_per_second and room_messages_burst must be positive"
        );
        anyhow::ensure!((1..=100_000).contains(&self.history_messages), "chat.history_messages must be 1-100000");
        anyhow::ensure!(
            self.page_limit >= 1 && self.snapshot_messages <= self.history_messages,
            "chat: page_limit must be positive, snapshot_messages at most history_messages"
        );
        Ok(())
    }
}

/// `[summit]`: the summit scheduler (see `proto/ADMIN.md`, "Summits").
#[derive(Deserialize, Clone, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct SummitConfig {
    /// This hub runs summits (takes their leases). Off: it still serves the API and the stage rooms.
    pub enabled: bool,
    /// How often the runner looks at its summits, in ms (50-5000).
    pub tick_ms: u64,
    /// The summit lease's time to live, in ms: how long a summit waits for another hub after the one running it
    /// died. At least three ticks.
    pub lease_ms: u64,
    /// **Tests and benchmarks only**: the scheduler's clock runs this many times faster than real time from
    /// `clock_origin_ms` (schedule times, releases' `published_at` and the `schedule` view's times are then on that
    /// clock; rooms, tokens and webhooks stay on real time). 1: real time.
    pub time_scale: u32,
    /// With `time_scale` above 1: the real instant (ms since the Unix epoch) where the scheduler's clock equals
    /// real time. Every hub of a group must have the same. 0: when this hub started.
    pub clock_origin_ms: u64,
}

impl Default for SummitConfig {
    fn default() -> Self {
        Self { enabled: true, tick_ms: 250, lease_ms: 1_500, time_scale: 1, clock_origin_ms: 0 }
    }
}

/// `[webhooks]`: where events go and how hard delivery tries (see `proto/WEBHOOKS.md`).
#[derive(Deserialize, Clone, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// The receivers. None: no events are queued at all.
    pub endpoints: Vec<EndpointConfig>,
    /// Audience members' `participant.joined` / `participant.left`: `on` (each one), `off` (none) or `coalesced`
    /// (an `audience.summary` at most every `audience_interval_ms`). Stage members' always go out.
    pub audience: AudiencePolicy,
    /// With `audience = "coalesced"`: the shortest time between two summaries of a room.
    pub audience_interval_ms: u64,
    /// Delays before the retries of a failed delivery (after the first attempt), in ms; once all failed, the
    /// event is given up. Each delay gets up to `retry_jitter` of itself added or taken off at random.
    pub retry_schedule_ms: Vec<u64>,
    /// Jitter of the retry delays, as a fraction (0 to 1).
    pub retry_jitter: f64,
    /// A `Retry-After` answer delays the retry to at least that long, but never more than this.
    pub max_retry_after_ms: u64,
    /// How long a hub's claim to deliver a room's events lasts without renewal (renewed every third of it); after
    /// a hub dies, another takes its rooms over this long after.
    pub lease_ms: u64,
    /// How often each hub looks for rooms with queued events that no hub delivers.
    pub poll_interval_ms: u64,
    /// Most rooms one hub delivers at once (each has at most one request in flight per endpoint).
    pub max_rooms_in_flight: usize,
    /// Most events queued per room (Redis); past it the oldest are dropped and counted.
    pub max_queue_per_room: u64,
    /// With the in-memory store: most events queued on this hub in all; past it the oldest are dropped and
    /// counted.
    pub memory_max_events: usize,
    /// Largest payload sent, in bytes; an event over it is sent without its optional data fields.
    pub max_body_bytes: usize,
    /// How many rooms with queued events the status looks at (queue depth, oldest age).
    pub status_scan_rooms: usize,
}

/// One webhook receiver.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// A name for status and logs (unique; letters, digits, `-` and `_`).
    pub name: String,
    /// `https://...` (or `http://...`) URL the events are POSTed to.
    pub url: String,
    /// Signing secrets, `whsec_<base64>`; several during a rotation (every one signs: several signatures).
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Event types sent (exact, or a prefix ending in `.*`, like `participant.*`); empty: all.
    #[serde(default)]
    pub include: Vec<String>,
    /// Event types never sent (same forms), applied after `include`.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// How long one attempt may take, in ms.
    #[serde(default = "default_endpoint_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_endpoint_timeout_ms() -> u64 {
    15_000
}

/// Which audience joins and leaves become webhooks.
#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AudiencePolicy {
    /// Each one.
    #[default]
    On,
    /// None.
    Off,
    /// Counted into `audience.summary` events.
    Coalesced,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            audience: AudiencePolicy::On,
            audience_interval_ms: 10_000,
            // Standard Webhooks' example schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h.
            retry_schedule_ms: [5, 300, 1_800, 7_200, 18_000, 36_000, 50_400, 72_000, 86_400]
                .map(|s| s * 1_000)
                .to_vec(),
            retry_jitter: 0.2,
            max_retry_after_ms: 3_600_000,
            lease_ms: 30_000,
            poll_interval_ms: 1_000,
            max_rooms_in_flight: 256,
            max_queue_per_room: 10_000,
            memory_max_events: 100_000,
            max_body_bytes: 20_480,
            status_scan_rooms: 1_000,
        }
    }
}

/// `[audit]`
#[derive(Deserialize, Clone, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Entries kept per room (about: Redis trims whole blocks, `MAXLEN ~`).
    pub max_entries: u64,
    /// Entries older than this are dropped too (0: kept by count only); with Redis, a room's whole log expires
    /// this long after its last entry.
    pub max_age_s: u64,
    /// With the in-memory store: most rooms whose log is kept (the least recently written go first).
    pub memory_max_rooms: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self { max_entries: 10_000, max_age_s: 0, memory_max_rooms: 10_000 }
    }
}

/// `[server]`
#[derive(Deserialize, Clone, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on for websocket connections.
    pub listen: SocketAddr,
    /// Most simultaneous connections; more are refused at accept.
    pub max_connections: usize,
    /// How long shutdown waits for connections to close after telling them why.
    pub shutdown_grace_ms: u64,
    /// With a shared store: how long a draining hub (SIGTERM) waits for other hubs to take its rooms' media over
    /// before it closes its connections (each client then reconnects to another hub and resumes).
    pub drain_timeout_ms: u64,
    /// The websocket URL clients can reach this hub at directly (e.g. `wss://hub-3.example.com/ws`). Recorded in the
    /// node registry for operators; optional.
    pub public_url: Option<String>,
    /// Reverse proxies (addresses or CIDR blocks) whose `proxy_header` names the client's address; from any other
    /// peer that header is ignored. Per-source limits count the client's address.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Which header the trusted proxies append the client's address to: `x-forwarded-for` or `forwarded` (RFC 7239).
    pub proxy_header: ProxyHeader,
    /// Serve the demo app at `/`. Unset: on with the development secret, off once `auth.secret` is configured.
    pub demo: Option<bool>,
}

impl ServerConfig {
    /// Whether the demo app is served (see [`Self::demo`]).
    pub fn demo_enabled(&self, auth: &AuthConfig) -> bool {
        self.demo.unwrap_or(auth.secret.is_none())
    }
}

/// The header a trusted reverse proxy records the client's address in.
#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ProxyHeader {
    /// `X-Forwarded-For: client, proxy1, ...`
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239).
    Forwarded,
}

impl ProxyHeader {
    /// The header's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7880)),
            max_connections: 100_000,
            shutdown_grace_ms: 2_000,
            drain_timeout_ms: 5_000,
            public_url: None,
            trusted_proxies: Vec::new(),
            proxy_header: ProxyHeader::default(),
            demo: None,
        }
    }
}

/// `[tls]`: the listening socket serves HTTPS and WSS (and nothing in plain text) from a certificate and key in PEM
/// files, re-read when they change (see `crate::tls`).
#[derive(Deserialize, Clone, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, PEM: the hub's certificate first, then the intermediates. TLS is on when this is set
    /// (and `key`).
    pub cert: Option<PathBuf>,
    /// The certificate's private key, PEM (PKCS#8, PKCS#1 RSA or SEC1 EC; not encrypted).
    pub key: Option<PathBuf>,
    /// A connection must complete its TLS handshake within this long of being accepted, or it is closed.
    pub handshake_timeout_ms: u64,
    /// How often the two files are checked for a change (a renewal): a changed pair is loaded for new connections.
    /// 0: only on SIGHUP.
    pub reload_interval_ms: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self { cert: None, key: None, handshake_timeout_ms: 10_000, reload_interval_ms: 60_000 }
    }
}

impl TlsConfig {
    /// Whether the listening socket speaks TLS.
    pub fn enabled(&self) -> bool {
        self.cert.is_some() && self.key.is_some()
    }
}

/// `[admin]`: who may call the admin API (`/v1/admin/`), besides holders of admin-grant tokens signed with the
/// token secret.
#[derive(Deserialize, Clone, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// API keys, each stored as the SHA-256 of the key (`podium admin-key` makes one).
    pub keys: Vec<AdminKey>,
    /// Requests per second each caller (an API key's or an admin token's name) may make, on average; more are
    /// refused with 429 `rate_limited` and `Retry-After`. 0: no limit.
    pub requests_per_second: u32,
    /// How many requests a caller may make at once beyond the average (the bucket's size; 0: the rate).
    pub request_burst: u32,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self { keys: Vec::new(), requests_per_second: 50, request_burst: 100 }
    }
}

/// One admin API key.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct AdminKey {
    /// Names the key's holder in the audit log and webhooks (`admin:<name>`).
    pub name: String,
    /// SHA-256 of the key, 64 hex digits.
    pub sha256: String,
    /// What the key may do: `read`, `moderate` or `admin` (each includes the ones before it).
    pub scope: crate::auth::Scope,
}

/// `[auth]`
#[derive(Deserialize, Clone, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 secret shared with whatever mints tokens. Unset means the development secret.
    pub secret: Option<String>,
    /// A token must arrive (in `join`) within this long of connecting.
    pub auth_timeout_ms: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self { secret: None, auth_timeout_ms: 5_000 }
    }
}

impl AuthConfig {
    /// The effective secret.
    pub fn secret(&self) -> &str {
        self.secret.as_deref().unwrap_or(DEVELOPMENT_SECRET)
    }
}

/// `[limits]`
#[derive(Deserialize, Clone, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest text frame processed; larger ones get `too_large` and the connection stays.
    pub max_message_bytes: usize,
    /// Largest frame read at all; larger ones close the connection with 1009.
    pub max_frame_bytes: usize,
    /// Sustained requests per second per connection.
    pub requests_per_second: u32,
    /// Burst of requests per connection.
    pub request_burst: u32,
    /// Interval of websocket pings from the hub.
    pub heartbeat_interval_ms: u64,
    /// Silence after which a connection is closed (4008).
    pub heartbeat_timeout_ms: u64,
    /// Events queued per connection before the hub stops queueing and later sends `resync`.
    pub outbound_queue: usize,
    /// How long a connection may stay behind before it is closed (4010).
    pub max_lag_ms: u64,
    /// Requests queued per room.
    pub room_inbox: usize,
    /// Bytes read from a websocket per read at most, 14 to 16384. The read goes into a buffer on the stack of the
    /// read itself: no connection keeps a read buffer (a frame's payload is read into its message).
    pub read_buffer_bytes: usize,
    /// Longest a write to a client may take (a batch of frames into its socket); a client that does not read for
    /// this long loses its connection, with no close frame (it could not be written).
    pub write_timeout_ms: u64,
    /// Connections that have not joined yet, per source address (IPv4 address or IPv6 /64); more get HTTP 429.
    pub pending_per_source: u32,
    /// New connections per second per source address (token bucket, with `connect_burst_per_source`); more get
    /// HTTP 429.
    pub connects_per_source_per_second: u32,
    /// Burst of new connections per source address.
    pub connect_burst_per_source: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 16 * 1024,
            max_frame_bytes: 64 * 1024,
            requests_per_second: 20,
            request_burst: 40,
            heartbeat_interval_ms: 15_000,
            heartbeat_timeout_ms: 45_000,
            outbound_queue: 128,
            max_lag_ms: 10_000,
            room_inbox: 4_096,
            read_buffer_bytes: 4 * 1024,
            write_timeout_ms: 10_000,
            pending_per_source: 256,
            connects_per_source_per_second: 200,
            connect_burst_per_source: 1_000,
        }
    }
}

/// `[room]`: defaults for new rooms.
#[derive(Deserialize, Clone, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct RoomDefaults {
    /// Seats on stage (moderators plus speakers).
    pub stage_capacity: u32,
    /// Upper bound a moderator may raise the capacity to.
    pub max_stage_capacity: u32,
    /// Raised hands promote at once while seats are free.
    pub open_mic: bool,
    /// Only guests and moderators may join.
    pub closed: bool,
    /// Invitations to the stage expire after this long.
    pub invite_ttl_ms: u64,
    /// A raised hand goes down by itself this long after it was raised (the raiser gets `hand_lowered`); 0: hands
    /// never expire. Default 15 min.
    pub hand_ttl_ms: u64,
    /// A dropped connection keeps its role, hand and mute state this long.
    pub grace_ms: u64,
    /// A room nobody is in ends after this long.
    pub empty_timeout_ms: u64,
    /// Head counts are pushed at most this often.
    pub counts_interval_ms: u64,
    /// Most hands listed in a `hand_queue` event.
    pub hand_queue_event_limit: usize,
    /// Largest `list_audience` page.
    pub max_page: usize,
}

impl Default for RoomDefaults {
    /// The state machine's own defaults, so the two never disagree.
    fn default() -> Self {
        let c = podium_room::RoomConfig::default();
        Self {
            stage_capacity: c.stage_capacity,
            max_stage_capacity: c.max_stage_capacity,
            open_mic: c.open_mic,
            closed: c.closed,
            invite_ttl_ms: c.invite_ttl,
            hand_ttl_ms: c.hand_ttl,
            grace_ms: c.grace,
            empty_timeout_ms: c.empty_timeout,
            counts_interval_ms: c.counts_interval,
            hand_queue_event_limit: c.hand_queue_event_limit,
            max_page: c.max_page,
        }
    }
}

impl Config {
    /// The state machine's configuration: `[room]`, `[chat]` and whether this hub records (`[recording] enabled`).
    pub fn room_config(&self) -> podium_room::RoomConfig {
        let c = &self.chat;
        podium_room::RoomConfig {
            recording: self.recording.enabled,
            chat: c.enabled,
            chat_slow_mode_ms: c.slow_mode_ms,
            chat_max_chars: c.max_chars,
            chat_history: c.history_messages,
            chat_max_age: c.history_max_age_s.saturating_mul(1_000),
            chat_snapshot: c.snapshot_messages,
            chat_page_limit: c.page_limit,
            chat_room_per_second: c.room_messages_per_second,
            chat_room_burst: c.room_messages_burst,
            ..self.room.room_config()
        }
    }
}

impl RoomDefaults {
    /// The state machine's configuration (`[room]` only: [`Config::room_config`] adds `[chat]`).
    pub fn room_config(&self) -> podium_room::RoomConfig {
        podium_room::RoomConfig {
            stage_capacity: self.stage_capacity,
            max_stage_capacity: self.max_stage_capacity,
            open_mic: self.open_mic,
            closed: self.closed,
            invite_ttl: self.invite_ttl_ms,
            hand_ttl: self.hand_ttl_ms,
            grace: self.grace_ms,
            empty_timeout: self.empty_timeout_ms,
            counts_interval: self.counts_interval_ms,
            hand_queue_event_limit: self.hand_queue_event_limit,
            max_page: self.max_page,
            ..podium_room::RoomConfig::default()
        }
    }
}

/// `[media]`: the SFU's UDP sockets and limits.
#[derive(Deserialize, Clone, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct MediaSection {
    /// Run the SFU. When false, media requests are answered `unavailable`.
    pub enabled: bool,
    /// Address the UDP sockets bind to.
    pub bind: IpAddr,
    /// First UDP port; worker `i` binds `port + i`. 0 picks free ports.
    pub port: u16,
    /// Media worker threads, each with its own socket. 0 means one per core.
    pub workers: usize,
    /// The address clients should send media to, when it differs from `bind` (NAT 1:1, cloud hosts).
    pub public_ip: Option<IpAddr>,
    /// Largest SDP accepted, in bytes (offers and answers).
    pub max_sdp_bytes: usize,
    /// Most m-lines (of any kind) in an offer; the SFU adds no downstream slot past it either. Bounds a peer's
    /// memory.
    pub max_mlines: usize,
    /// `active_speakers` events are sent at most this often.
    pub active_speaker_interval_ms: u64,
    /// Most WebRTC peers on this node.
    pub max_peers: usize,
    /// Loudest-N: a listener receives at most this many speakers at once, the loudest (RFC 6464 audio level, with
    /// hysteresis), on at most this many downstream slots. 0 = no limit.
    pub loudest: usize,
    /// ICE-TCP: each worker also listens on TCP at its UDP address and offers a passive TCP candidate, for clients
    /// whose UDP is blocked.
    pub tcp: bool,
    /// Most ICE-TCP connections at once on this node.
    pub max_tcp_connections: usize,
}

impl Default for MediaSection {
    /// The media crate's own defaults, plus `enabled`.
    fn default() -> Self {
        let m = podium_media::MediaConfig::default();
        Self {
            enabled: true,
            bind: m.bind,
            port: m.port,
            workers: m.workers,
            public_ip: m.public_ip,
            max_sdp_bytes: m.max_sdp_bytes,
            max_mlines: m.max_mlines,
            active_speaker_interval_ms: m.active_speaker_interval_ms,
            max_peers: m.max_peers,
            loudest: m.loudest,
            tcp: m.tcp,
            max_tcp_connections: m.max_tcp_connections,
        }
    }
}

impl MediaSection {
    /// The SFU's configuration.
    pub fn media_config(&self) -> podium_media::MediaConfig {
        podium_media::MediaConfig {
            bind: self.bind,
            port: self.port,
            workers: self.workers,
            public_ip: self.public_ip,
            max_sdp_bytes: self.max_sdp_bytes,
            max_mlines: self.max_mlines,
            active_speaker_interval_ms: self.active_speaker_interval_ms,
            max_peers: self.max_peers,
            loudest: self.loudest,
            tcp: self.tcp,
            max_tcp_connections: self.max_tcp_connections,
            // `[recording] queue_packets`, set where the SFU starts.
            record_queue: podium_media::DEFAULT_RECORD_QUEUE,
        }
    }
}

/// `[store]`
#[derive(Deserialize, Clone, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `memory` (the embedded default), `redis://[user:password@]host:port[/db]` (one Redis server; also
    /// `redis+unix:///path/to/socket`), `redis+cluster://host:port,host:port` (a Redis Cluster's seed nodes), or
    /// `redis+sentinel://host:port,host:port/<master>[/db]` (Redis Sentinels and the master's name).
    pub url: String,
}

impl StoreConfig {
    /// The URL schemes `url` may have besides `memory`.
    pub const REDIS_SCHEMES: [&str; 5] =
        ["redis://", "redis+unix://", "unix://", "redis+cluster://", "redis+sentinel://"];

    /// True when `url` selects the embedded store.
    pub fn is_memory(&self) -> bool {
        self.url == "memory"
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { url: "memory".into() }
    }
}

// ---- [turn] ----

/// `[turn]`: TURN servers for clients that cannot reach the SFU directly (UDP blocked, strict NATs), handed to each
/// participant in its `welcome` with short-lived credentials the hub mints (the TURN REST API scheme that coturn
/// implements with `use-auth-secret`; see `crate::turn` and `deploy/turnserver.conf`). The SFU needs no change: a
/// relayed client reaches its UDP host candidate from the TURN server's relay address.
#[derive(Deserialize, Clone)]
#[serde(default, deny_unknown_fields)]
pub struct TurnConfig {
    /// `turn:` and `turns:` URLs (RFC 7065), e.g. `turn:turn.example.com:3478?transport=udp`,
    /// `turn:turn.example.com:3478?transport=tcp`, `turns:turn.example.com:5349?transport=tcp`. Empty: no TURN.
    pub urls: Vec<String>,
    /// The secret shared with the TURN server (coturn's `static-auth-secret`), at least 16 characters. Never logged.
    /// Also `PODIUM_TURN__SECRET`, or `secret_file`.
    pub secret: Option<String>,
    /// A file whose first line is the secret (a mounted secret), instead of `secret`.
    pub secret_file: Option<PathBuf>,
    /// How long minted credentials are valid, in seconds (10 s to 7 days). The hub sends fresh ones when half of
    /// this has passed.
    pub credential_ttl_s: u64,
}

impl Default for TurnConfig {
    fn default() -> Self {
        // One hour: a credential copied out of a client stops opening relays within the hour, while refreshing
        // costs one small frame per connection every half hour. coturn checks the expiry only when an allocation
        // is made, so a relayed call outlives it.
        Self { urls: Vec::new(), secret: None, secret_file: None, credential_ttl_s: 3_600 }
    }
}

impl std::fmt::Debug for TurnConfig {
    /// Everything but the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnConfig")
            .field("urls", &self.urls)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("secret_file", &self.secret_file)
            .field("credential_ttl_s", &self.credential_ttl_s)
            .finish()
    }
}

impl TurnConfig {
    /// True when TURN servers are configured (the welcome then carries `ice_servers`).
    pub fn enabled(&self) -> bool {
        !self.urls.is_empty()
    }

    /// Reads `secret_file` into `secret` (its first line, without surrounding whitespace).
    fn read_secret_file(&mut self) -> anyhow::Result<()> {
        let Some(path) = &self.secret_file else { return Ok(()) };
        anyhow::ensure!(self.secret.is_none(), "turn: give `secret` or `secret_file`, not both");
        let text =
            std::fs::read_to_string(path).with_context(|| format!("turn.secret_file: reading {}", path.display()))?;
        self.secret = Some(text.lines().next().unwrap_or_default().trim().to_owned());
        Ok(())
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (10..=7 * 86_400).contains(&self.credential_ttl_s),
            "turn.credential_ttl_s must be between 10 and 604800 (7 days)"
        );
        if !self.enabled() {
            return Ok(());
        }
        let secret = self.secret.as_deref().unwrap_or_default();
        anyhow::ensure!(
            secret.chars().count() >= 16,
            "turn: with turn.urls set, `secret` (or `secret_file`, or PODIUM_TURN__SECRET) must hold the TURN server's \
             static-auth-secret, at least 16 characters"
        );
        for url in &self.urls {
            check_turn_url(url).map_err(|why| anyhow::anyhow!("turn.urls: {url:?}: {why}"))?;
        }
        Ok(())
    }
}

/// Checks the shape of a `turn:`/`turns:` URL (RFC 7065): a host, an optional port, an optional `transport` of
/// `udp` or `tcp` (`turns:` is TLS over TCP only).
fn check_turn_url(url: &str) -> Result<(), &'static str> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("turns:") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("turn:") {
        (false, rest)
    } else {
        return Err("must start with `turn:` or `turns:`");
    };
    let (authority, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    if authority.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '@')) {
        return Err("needs a host and optionally `:port`, without spaces, a path or a user");
    }
    // `[v6]:port`, `[v6]`, `host:port` or `host`.
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, "")) => (host, None),
            Some((host, port)) => (host, Some(port.strip_prefix(':').ok_or("needs `:` after `]`")?)),
            None => return Err("has `[` without `]`"),
        },
        None if authority.matches(':').count() > 1 => return Err("IPv6 addresses go in brackets: `[2001:db8::1]`"),
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err("needs a host");
    }
    if port.is_some_and(|p| p.parse::<u16>().map_or(true, |p| p == 0)) {
        return Err("has a port that is not 1-65535");
    }
    match query {
        None | Some("transport=tcp") => Ok(()),
        Some("transport=udp") if !tls => Ok(()),
        Some("transport=udp") => Err("`turns:` runs over TLS, so its transport is `tcp`"),
        Some(_) => Err("the only query is `transport=udp` or `transport=tcp`"),
    }
}

impl Config {
    /// Reads the file (if given) and overlays the environment (`PODIUM_SERVER__LISTEN=0.0.0.0:7880`, ...).
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                toml::from_str::<toml::Table>(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => toml::Table::new(),
        };
        overlay_env(&mut table, std::env::vars())?;
        let mut config: Self = toml::Value::Table(table).try_into().context("invalid configuration")?;
        config.turn.read_secret_file()?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> anyhow::Result<()> {
        let l = &self.limits;
        anyhow::ensure!(l.max_message_bytes >= 256, "limits.max_message_bytes must be at least 256");
        anyhow::ensure!(
            l.max_frame_bytes >= l.max_message_bytes,
            "limits.max_frame_bytes must be >= max_message_bytes"
        );
        anyhow::ensure!(l.requests_per_second > 0 && l.request_burst > 0, "limits: request rates must be positive");
        anyhow::ensure!(l.outbound_queue >= 4 && l.room_inbox >= 4, "limits: queues must hold at least 4 entries");
        anyhow::ensure!(l.heartbeat_interval_ms > 0, "limits.heartbeat_interval_ms must be positive");
        anyhow::ensure!(l.write_timeout_ms > 0, "limits.write_timeout_ms must be positive");
        anyhow::ensure!(
            (14..=16 * 1024).contains(&l.read_buffer_bytes),
            "limits.read_buffer_bytes must be between 14 and 16384"
        );
        anyhow::ensure!(
            l.pending_per_source > 0 && l.connects_per_source_per_second > 0 && l.connect_burst_per_source > 0,
            "limits: per-source limits must be positive"
        );
        anyhow::ensure!(
            l.heartbeat_timeout_ms > l.heartbeat_interval_ms,
            "limits.heartbeat_timeout_ms must exceed the interval"
        );
        anyhow::ensure!(self.media.max_mlines >= 1, "media.max_mlines must be at least 1");
        anyhow::ensure!(
            self.media.loudest <= self.media.max_mlines,
            "media.loudest must be at most media.max_mlines (0 = no limit)"
        );
        for key in &self.admin.keys {
            anyhow::ensure!(
                key.sha256.len() == 64 && key.sha256.bytes().all(|b| b.is_ascii_hexdigit()),
                "admin.keys: {:?}: sha256 must be 64 hex digits (the SHA-256 of the key)",
                key.name
            );
            anyhow::ensure!(
                !key.name.is_empty() && key.name.len() <= 64 && !key.name.chars().any(char::is_control),
                "admin.keys: names are 1-64 bytes without control characters"
            );
        }
        let r = &self.room;
        anyhow::ensure!(
            r.stage_capacity >= 1 && r.stage_capacity <= r.max_stage_capacity,
            "room.stage_capacity must be between 1 and room.max_stage_capacity"
        );
        anyhow::ensure!(
            r.max_page >= 1 && r.counts_interval_ms > 0,
            "room: max_page and counts_interval_ms must be positive"
        );
        anyhow::ensure!(
            self.store.is_memory() || StoreConfig::REDIS_SCHEMES.iter().any(|s| self.store.url.starts_with(s)),
            "store.url: `memory`, or a URL starting with one of {:?}",
            StoreConfig::REDIS_SCHEMES
        );
        let tls = &self.tls;
        anyhow::ensure!(
            tls.cert.is_some() == tls.key.is_some(),
            "tls.cert and tls.key go together: set both (HTTPS and WSS) or neither"
        );
        anyhow::ensure!(tls.handshake_timeout_ms > 0, "tls.handshake_timeout_ms must be positive");
        anyhow::ensure!(
            tls.reload_interval_ms == 0 || tls.reload_interval_ms >= 100,
            "tls.reload_interval_ms: 0 (only on SIGHUP) or at least 100"
        );
        self.validate_webhooks()?;
        self.validate_summit()?;
        self.chat.validate()?;
        self.reactions.validate()?;
        self.validate_recording()?;
        self.turn.validate()?;
        Ok(())
    }

    fn validate_recording(&self) -> anyhow::Result<()> {
        let r = &self.recording;
        anyhow::ensure!((1..=64).contains(&r.max_concurrent_mixes), "recording.max_concurrent_mixes must be 1-64");
        anyhow::ensure!((1..=86_400).contains(&r.mix_timeout_s), "recording.mix_timeout_s must be 1-86400");
        anyhow::ensure!((6..=256).contains(&r.bitrate_kbps), "recording.bitrate_kbps must be 6-256");
        anyhow::ensure!((16..=1 << 20).contains(&r.queue_packets), "recording.queue_packets must be 16-1048576");
        Ok(())
    }

    fn validate_summit(&self) -> anyhow::Result<()> {
        let s = &self.summit;
        anyhow::ensure!((50..=5_000).contains(&s.tick_ms), "summit.tick_ms must be 50-5000");
        anyhow::ensure!(s.lease_ms >= 3 * s.tick_ms, "summit.lease_ms must be at least three ticks");
        anyhow::ensure!((1..=100_000).contains(&s.time_scale), "summit.time_scale must be 1-100000");
        Ok(())
    }

    fn validate_webhooks(&self) -> anyhow::Result<()> {
        let w = &self.webhooks;
        let mut names = std::collections::HashSet::new();
        for e in &w.endpoints {
            anyhow::ensure!(
                !e.name.is_empty()
                    && e.name.len() <= 64
                    && e.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "webhooks.endpoints: name {:?}: 1-64 letters, digits, - or _",
                e.name
            );
            anyhow::ensure!(names.insert(e.name.as_str()), "webhooks.endpoints: name {:?} used twice", e.name);
            anyhow::ensure!(
                e.url.starts_with("https://") || e.url.starts_with("http://"),
                "webhooks.endpoints.{}: url must start with https:// or http://",
                e.name
            );
            for secret in &e.secrets {
                crate::webhooks::parse_secret(secret)
                    .map_err(|why| anyhow::anyhow!("webhooks.endpoints.{}: secret: {why}", e.name))?;
            }
            for pattern in e.include.iter().chain(&e.exclude) {
                anyhow::ensure!(
                    crate::webhooks::known_pattern(pattern),
                    "webhooks.endpoints.{}: {pattern:?} names no event type",
                    e.name
                );
            }
            anyhow::ensure!(e.timeout_ms > 0, "webhooks.endpoints.{}: timeout_ms must be positive", e.name);
        }
        anyhow::ensure!(!w.retry_schedule_ms.is_empty(), "webhooks.retry_schedule_ms: at least one delay");
        anyhow::ensure!((0.0..=1.0).contains(&w.retry_jitter), "webhooks.retry_jitter: between 0 and 1");
        anyhow::ensure!(w.lease_ms >= 300 && w.poll_interval_ms > 0, "webhooks: lease_ms >= 300, poll_interval_ms > 0");
        anyhow::ensure!(
            w.max_rooms_in_flight > 0 && w.max_queue_per_room > 0 && w.memory_max_events > 0,
            "webhooks: queue and in-flight bounds must be positive"
        );
        anyhow::ensure!(w.max_body_bytes >= 1_024, "webhooks.max_body_bytes: at least 1024");
        anyhow::ensure!(w.audience_interval_ms > 0, "webhooks.audience_interval_ms must be positive");
        anyhow::ensure!(self.audit.max_entries > 0, "audit.max_entries must be positive");
        Ok(())
    }

    /// Heartbeat interval.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.limits.heartbeat_interval_ms)
    }
}

/// Settings whose values are text, taken from the environment as they are.
const STRING_KEYS: [(&str, &str); 7] = [
    ("auth", "secret"),
    ("server", "public_url"),
    ("store", "url"),
    ("tls", "cert"),
    ("tls", "key"),
    ("turn", "secret"),
    ("turn", "secret_file"),
];

/// Applies `PODIUM_SECTION__KEY=value` variables; values parse as TOML (numbers, booleans) or else as strings, except
/// text settings (`STRING_KEYS`), which are always strings.
fn overlay_env(table: &mut toml::Table, vars: impl Iterator<Item = (String, String)>) -> anyhow::Result<()> {
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix("PODIUM_") else { continue };
        let Some((section, key)) = rest.split_once("__") else { continue };
        let section = section.to_ascii_lowercase();
        let key = key.to_ascii_lowercase();
        // Text settings stay text even when they look like a number (a secret of digits, say).
        let text = STRING_KEYS.contains(&(section.as_str(), key.as_str()));
        let parsed = if text {
            toml::Value::String(value)
        } else {
            toml::from_str::<toml::Table>(&format!("v = {value}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or(toml::Value::String(value))
        };
        let entry = table.entry(section.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(section_table) = entry else {
            anyhow::bail!("configuration: `{section}` is not a section");
        };
        section_table.insert(key, parsed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overlays_file_values() {
        let mut t: toml::Table = toml::from_str("[server]\nlisten = \"127.0.0.1:1\"\n").unwrap();
        let vars = vec![
            ("PODIUM_SERVER__LISTEN".to_owned(), "0.0.0.0:9000".to_owned()),
            ("PODIUM_LIMITS__REQUESTS_PER_SECOND".to_owned(), "7".to_owned()),
            ("PODIUM_ROOM__OPEN_MIC".to_owned(), "true".to_owned()),
            ("PODIUM_AUTH__SECRET".to_owned(), "s3cret".to_owned()),
            ("HOME".to_owned(), "/root".to_owned()),
        ];
        overlay_env(&mut t, vars.into_iter()).unwrap();
        let c: Config = toml::Value::Table(t).try_into().unwrap();
        assert_eq!(c.server.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(c.limits.requests_per_second, 7);
        assert!(c.room.open_mic);
        assert_eq!(c.auth.secret(), "s3cret");
        c.validate().unwrap();
    }

    #[test]
    fn store_urls() {
        let mut c = Config::default();
        for url in [
            "memory",
            "redis://127.0.0.1:6379/",
            "redis+cluster://a:7000,b:7001",
            "redis+unix:///run/r.sock",
            "redis+sentinel://s1:26379,s2:26379/mymaster",
        ] {
            c.store.url = url.into();
            c.validate().unwrap();
        }
        for url in ["", "postgres://x", "redis"] {
            c.store.url = url.into();
            assert!(c.validate().is_err(), "{url}");
        }
    }

    #[test]
    fn media_loudest() {
        assert_eq!(Config::default().media.loudest, 3);
        let mut t = toml::Table::new();
        overlay_env(&mut t, [("PODIUM_MEDIA__LOUDEST".to_owned(), "5".to_owned())].into_iter()).unwrap();
        let mut c: Config = toml::Value::Table(t).try_into().unwrap();
        assert_eq!(c.media.media_config().loudest, 5);
        c.validate().unwrap();
        c.media.loudest = 0;
        c.validate().unwrap();
        c.media.loudest = c.media.max_mlines + 1;
        assert!(c.validate().is_err());
    }

    #[test]
    fn tls_files_from_the_environment() {
        let mut table = toml::Table::new();
        let vars = [("PODIUM_TLS__CERT", "/etc/podium/fullchain.pem"), ("PODIUM_TLS__KEY", "/etc/podium/privkey.pem")];
        overlay_env(&mut table, vars.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned()))).unwrap();
        let c: Config = toml::Value::Table(table).try_into().unwrap();
        c.validate().unwrap();
        assert!(c.tls.enabled());
        assert_eq!(c.tls.key.as_deref(), Some(Path::new("/etc/podium/privkey.pem")));
        let mut half = c.clone();
        half.tls.key = None;
        assert!(half.validate().is_err(), "a certificate without a key");
        assert!(!Config::default().tls.enabled());
    }

    #[test]
    fn unknown_keys_are_errors() {
        let r: Result<Config, _> = toml::from_str("[server]\nlisen = \"x\"\n");
        assert!(r.is_err());
    }

    #[test]
    fn sample_config_parses() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/podium.toml");
        let c = Config::load(Some(Path::new(path))).unwrap();
        assert_eq!(c.room.stage_capacity, 13);
        let defaults = WebhooksConfig::default();
        assert_eq!(c.webhooks.retry_schedule_ms, defaults.retry_schedule_ms);
        assert_eq!((c.webhooks.lease_ms, c.audit.max_entries), (defaults.lease_ms, AuditConfig::default().max_entries));
        let (chat, reactions) = (ChatConfig::default(), ReactionsConfig::default());
        assert_eq!(c.chat.history_max_age_s, 7 * 24 * 3_600);
        assert_eq!(
            (c.chat.max_chars, c.chat.page_limit, c.chat.snapshot_messages),
            (chat.max_chars, chat.page_limit, 50)
        );
        assert_eq!((c.reactions.kinds, c.reactions.window_ms), (reactions.kinds, reactions.window_ms));
    }

    #[test]
    fn reaction_kinds_and_chat_limits_are_checked() {
        let mut c = Config::default();
        c.validate().unwrap();
        c.reactions.kinds = vec!["Clap".into()];
        assert!(c.validate().is_err(), "upper case");
        c.reactions.kinds = vec!["a".repeat(33)];
        assert!(c.validate().is_err(), "too long");
        c.reactions.kinds = vec![];
        assert!(c.validate().is_err(), "none");
        let mut c = Config::default();
        c.chat.snapshot_messages = c.chat.history_messages + 1;
        assert!(c.validate().is_err());
        let mut c = Config::default();
        c.chat.slow_mode_ms = 3_600_001;
        assert!(c.validate().is_err());
    }

    #[test]
    fn webhook_endpoints_from_the_environment() {
        let mut table = toml::Table::new();
        let endpoints = r#"[{name = "app", url = "https://x.example/h", secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], exclude = ["hand.*"]}]"#;
        let vars = [("PODIUM_WEBHOOKS__ENDPOINTS", endpoints), ("PODIUM_WEBHOOKS__AUDIENCE", "coalesced")];
        overlay_env(&mut table, vars.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned()))).unwrap();
        let c: Config = toml::Value::Table(table).try_into().unwrap();
        c.validate().unwrap();
        assert_eq!(c.webhooks.endpoints[0].timeout_ms, 15_000);
        assert_eq!(c.webhooks.audience, AudiencePolicy::Coalesced);
        let mut bad = c.clone();
        bad.webhooks.endpoints[0].secrets = vec!["whsec_short".into()];
        assert!(bad.validate().is_err());
        let mut bad = c;
        bad.webhooks.endpoints[0].include = vec!["nothing.*".into()];
        assert!(bad.validate().is_err());
    }

    #[test]
    fn text_settings_from_the_environment_stay_text() {
        let mut table = toml::Table::new();
        let vars = [
            ("PODIUM_AUTH__SECRET", "12345"),
            ("PODIUM_LIMITS__REQUESTS_PER_SECOND", "50"),
            ("PODIUM_SERVER__PUBLIC_URL", "wss://hub-1.example.com/v1/ws"),
        ];
        overlay_env(&mut table, vars.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned()))).unwrap();
        let c: Config = toml::Value::Table(table).try_into().unwrap();
        assert_eq!(c.auth.secret.as_deref(), Some("12345"));
        assert_eq!(c.limits.requests_per_second, 50);
        assert_eq!(c.server.public_url.as_deref(), Some("wss://hub-1.example.com/v1/ws"));
    }

    // ---- [turn] ----

    #[test]
    fn turn_urls_and_secret_are_checked() {
        let mut c = Config::default();
        assert!(!c.turn.enabled());
        c.validate().unwrap();
        c.turn.urls = vec!["turn:turn.example.com:3478?transport=udp".into()];
        assert!(c.validate().is_err(), "TURN URLs need a secret");
        c.turn.secret = Some("too-short".into());
        assert!(c.validate().is_err(), "a secret under 16 characters");
        c.turn.secret = Some("0123456789abcdef".into());
        c.validate().unwrap();
        for good in [
            "turn:turn.example.com",
            "turn:198.51.100.7:3478?transport=tcp",
            "turns:turn.example.com:5349?transport=tcp",
            "turns:turn.example.com:443",
            "turn:[2001:db8::1]:3478?transport=udp",
        ] {
            check_turn_url(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "stun:turn.example.com:3478",
            "turn:",
            "turn::3478",
            "turn:turn.example.com:0",
            "turn:turn.example.com:99999",
            "turn:2001:db8::1:3478",
            "turn:[2001:db8::1",
            "turn:user@turn.example.com",
            "turn:turn.example.com/path",
            "turns:turn.example.com:5349?transport=udp",
            "turn:turn.example.com?transport=sctp",
            "turn:turn example.com",
        ] {
            assert!(check_turn_url(bad).is_err(), "{bad} passed");
        }
        c.turn.urls.push("http://turn.example.com".into());
        assert!(c.validate().is_err());
        c.turn.urls.pop();
        for ttl in [9, 7 * 86_400 + 1] {
            c.turn.credential_ttl_s = ttl;
            assert!(c.validate().is_err(), "ttl {ttl}");
        }
    }

    #[test]
    fn turn_secret_from_the_environment_or_a_file_and_never_in_debug() {
        let mut table = toml::Table::new();
        let vars = [
            ("PODIUM_TURN__URLS", r#"["turn:127.0.0.1:3478?transport=udp", "turn:127.0.0.1:3478?transport=tcp"]"#),
            ("PODIUM_TURN__SECRET", "12345678901234567890"),
            ("PODIUM_TURN__CREDENTIAL_TTL_S", "600"),
        ];
        overlay_env(&mut table, vars.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned()))).unwrap();
        let c: Config = toml::Value::Table(table).try_into().unwrap();
        c.validate().unwrap();
        assert_eq!(c.turn.urls.len(), 2);
        assert_eq!(c.turn.secret.as_deref(), Some("12345678901234567890"));
        assert_eq!(c.turn.credential_ttl_s, 600);
        let shown = format!("{c:?}");
        assert!(!shown.contains("12345678901234567890") && shown.contains("<redacted>"), "{shown}");

        let dir = std::env::temp_dir().join(format!("podium-turn-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secret");
        std::fs::write(&file, "  from-a-mounted-secret-file \nsecond line\n").unwrap();
        let conf = dir.join("podium.toml");
        let text =
            format!("[turn]\nurls = [\"turn:127.0.0.1:3478\"]\nsecret_file = {:?}\n", file.display().to_string());
        std::fs::write(&conf, &text).unwrap();
        let loaded = Config::load(Some(&conf)).unwrap();
        assert_eq!(loaded.turn.secret.as_deref(), Some("from-a-mounted-secret-file"));
        std::fs::write(&conf, format!("{text}secret = \"0123456789abcdef\"\n")).unwrap();
        assert!(Config::load(Some(&conf)).is_err(), "both `secret` and `secret_file`");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
