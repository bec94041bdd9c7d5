//! Prometheus metrics: `GET /metrics` in the OpenMetrics text format (prometheus-client). Every metric is listed,
//! with its type, labels and meaning, in `docs/METRICS.md`.
//!
//! # Design
//!
//! - Events are counters, counted where they happen through handles made once ([`Metrics`]): no label is built
//!   per event (label values are `&'static str` from closed sets, every series is created at startup, with 0).
//! - Current values that the hub already keeps elsewhere (rooms, TCP connections, the SFU's counters and fan-out
//!   histogram, the Redis store's operation counters and breaker, the webhook queue) are read at scrape time
//!   ([`Live`]), not counted twice.
//! - What only a room task knows (participants connected here by role, lagged connections, the room's lease) each
//!   task reports as its share of a gauge ([`RoomGauges`]): it adds the difference when its figures change and takes
//!   its share back when it ends, so a sum over hubs (`sum(podium_participants)`) counts every connected
//!   participant once.
//! - Labels are bounded: role (3), request kind (the protocol's request types), error code (the protocol's codes),
//!   drop reason, webhook endpoint (from the config). Never a room name or an identity.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use podium_proto::webhook::{EndpointStatus, WebhookStatus};
use podium_proto::{ErrorCode, Request};
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::http::AppState;
use crate::hub::{Persistence, Shared};

/// The content type of `/metrics` (what prometheus-client's text encoder writes).
pub(crate) const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The prefix of every metric name.
const PREFIX: &str = "podium";

/// Join latency buckets (seconds): a join is a token check, a room commit (a Redis round trip with Redis) and the
/// welcome.
const JOIN_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Fan-out buckets (seconds) the SFU's finer histogram is folded into.
const FANOUT_BOUNDS: [f64; 13] =
    [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1];

/// How long a scrape waits for the webhook queue figures (Redis reads) before it goes without them.
const WEBHOOK_STATUS_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabel {
    role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabel {
    /// `admin` (the admin API) or `other` (health, SDK, demo, development tokens, refused upgrades).
    surface: &'static str,
    /// `2xx`, `3xx`, `4xx` or `5xx` (`1xx`: websocket upgrades).
    class: &'static str,
}

const HTTP_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: String,
}

/// The roles, in the order of [`Metrics::participants`].
const ROLES: [(podium_room::Role, &str); 3] = [
    (podium_room::Role::Audience, "audience"),
    (podium_room::Role::Speaker, "speaker"),
    (podium_room::Role::Moderator, "moderator"),
];

/// The index of `role` in [`ROLES`].
pub(crate) fn role_index(role: podium_room::Role) -> usize {
    match role {
        podium_room::Role::Audience => 0,
        podium_room::Role::Speaker => 1,
        podium_room::Role::Moderator => 2,
    }
}

/// The buckets of the media request histograms (the join buckets, which span 1 ms to 5 s).
fn media_histogram() -> Histogram {
    Histogram::new(JOIN_BUCKETS)
}

/// The hub's metrics: the registry of what is counted as it happens, and handles to count with.
pub(crate) struct Metrics {
    registry: Registry,
    participants: [Gauge; 3],
    connections_lagged: Gauge,
    leases: Gauge,
    joins_ok: Counter,
    joins_refused: Counter,
    join_latency: Histogram,
    media_latency: Family<KindLabel, Histogram>,
    sfu_latency: Family<KindLabel, Histogram>,
    requests: Family<KindLabel, Counter>,
    errors: Family<CodeLabel, Counter>,
    lagged: Counter,
    resyncs: Counter,
    http: Family<HttpLabel, Counter>,
    summit: SummitMetrics,
    tls: TlsMetrics,
}

/// What TLS counts (handles on the hub's registry; see `crate::tls`).
#[derive(Clone, Debug)]
pub(crate) struct TlsMetrics {
    handshakes: Family<OutcomeLabel, Counter>,
    reloads: Family<OutcomeLabel, Counter>,
}

/// How a TLS handshake ended, as counted by `podium_tls_handshakes_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Handshake {
    /// Completed.
    Ok,
    /// Not completed within `tls.handshake_timeout_ms`.
    Timeout,
    /// Failed: no common protocol version or cipher suite, a malformed message, or closed half-way.
    Error,
    /// The client spoke plain HTTP to the TLS port (answered 400).
    PlainHttp,
}

impl Handshake {
    const ALL: [Self; 4] = [Self::Ok, Self::Timeout, Self::Error, Self::PlainHttp];

    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Timeout => "timeout",
            Self::Error => "error",
            Self::PlainHttp => "plain_http",
        }
    }
}

impl TlsMetrics {
    /// A handshake ended.
    pub(crate) fn handshake(&self, outcome: Handshake) {
        self.handshakes.get_or_create(&OutcomeLabel { outcome: outcome.as_str() }).inc();
    }

    /// The certificate files were loaded again (`ok`) or could not be (the previous pair stays).
    pub(crate) fn reload(&self, ok: bool) {
        self.reloads.get_or_create(&OutcomeLabel { outcome: if ok { "ok" } else { "failed" } }).inc();
    }
}

/// Buckets of a handover's lateness, in seconds.
const HANDOVER_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0];

/// What the summit runner counts (handles on the hub's registry).
#[derive(Clone)]
pub(crate) struct SummitMetrics {
    /// Summits this hub runs (holds the lease of).
    pub(crate) running: Gauge,
    /// Handovers done, by how late after their time (scheduler seconds).
    pub(crate) handover_lateness: Histogram,
    /// Outputs done.
    pub(crate) outputs: Counter,
    /// Outputs given up after their retries.
    pub(crate) given_up: Counter,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let participants_family = Family::<RoleLabel, Gauge>::default();
        let participants = ROLES.map(|(_, role)| participants_family.get_or_create(&RoleLabel { role }).clone());
        registry.register(
            "participants",
            "Participants whose connection is on this hub, by role (a sum over hubs counts each once)",
            participants_family,
        );
        let connections_lagged = Gauge::default();
        registry.register(
            "connections_lagged",
            "Joined connections that fell behind and wait for a resync",
            connections_lagged.clone(),
        );
        let leases = Gauge::default();
        registry.register(
            "leases_held",
            "Rooms whose lease (timers and media) this hub holds (shared store only)",
            leases.clone(),
        );
        let joins = Family::<OutcomeLabel, Counter>::default();
        let joins_ok = joins.get_or_create(&OutcomeLabel { outcome: "ok" }).clone();
        let joins_refused = joins.get_or_create(&OutcomeLabel { outcome: "refused" }).clone();
        registry.register("joins", "Join requests answered, by outcome (ok: welcomed; refused: an error)", joins);
        let join_latency = Histogram::new(JOIN_BUCKETS);
        registry.register_with_unit(
            "join_latency",
            "Time from the websocket upgrade to the welcome of a join",
            Unit::Seconds,
            join_latency.clone(),
        );
        let media_latency = Family::<KindLabel, Histogram>::new_with_constructor(media_histogram as fn() -> Histogram);
        let sfu_latency = Family::<KindLabel, Histogram>::new_with_constructor(media_histogram as fn() -> Histogram);
        for kind in ["media_offer", "media_answer"] {
            let _ = media_latency.get_or_create(&KindLabel { kind });
            let _ = sfu_latency.get_or_create(&KindLabel { kind });
        }
        registry.register_with_unit(
            "media_request_latency",
            "Time from reading a media_offer or media_answer request to writing its reply, by request type",
            Unit::Seconds,
            media_latency.clone(),
        );
        registry.register_with_unit(
            "media_sfu_latency",
            "The SFU's part of a media request run on this hub: queued for its worker, then run there, by request type",
            Unit::Seconds,
            sfu_latency.clone(),
        );
        let requests = Family::<KindLabel, Counter>::default();
        for kind in Request::KINDS {
            let _ = requests.get_or_create(&KindLabel { kind });
        }
        registry.register("requests", "Websocket requests received (decoded), by type", requests.clone());
        let errors = Family::<CodeLabel, Counter>::default();
        for code in ErrorCode::ALL {
            let _ = errors.get_or_create(&CodeLabel { code: code.as_str() });
        }
        registry.register("errors", "Error replies sent on websockets, by error code", errors.clone());
        let lagged = Counter::default();
        registry.register(
            "connection_lags",
            "Times a joined connection's queue was full and it was marked lagged (it gets a resync later)",
            lagged.clone(),
        );
        let resyncs = Counter::default();
        registry.register(
            "resyncs",
            "Resync snapshots sent (after a lag, or a reload of the room from the store)",
            resyncs.clone(),
        );
        let http = Family::<HttpLabel, Counter>::default();
        for surface in ["admin", "other"] {
            for class in HTTP_CLASSES {
                let _ = http.get_or_create(&HttpLabel { surface, class });
            }
        }
        registry.register(
            "http_responses",
            "HTTP responses sent, by surface (admin API or other) and status class (1xx: websocket upgrades)",
            http.clone(),
        );
        let summit = SummitMetrics {
            running: Gauge::default(),
            handover_lateness: Histogram::new(HANDOVER_BUCKETS),
            outputs: Counter::default(),
            given_up: Counter::default(),
        };
        registry.register(
            "summits_running",
            "Summits whose scheduler runs on this hub (it holds their lease)",
            summit.running.clone(),
        );
        registry.register_with_unit(
            "summit_handover_lateness",
            "How late after its slot's time each stage handover was done (on the scheduler's clock)",
            Unit::Seconds,
            summit.handover_lateness.clone(),
        );
        registry.register("summit_outputs", "Scheduler outputs done (actions and events)", summit.outputs.clone());
        registry.register(
            "summit_outputs_given_up",
            "Scheduler outputs given up: refused by the room, or failing for about 30 s",
            summit.given_up.clone(),
        );
        let tls = TlsMetrics { handshakes: Family::default(), reloads: Family::default() };
        for outcome in Handshake::ALL {
            let _ = tls.handshakes.get_or_create(&OutcomeLabel { outcome: outcome.as_str() });
        }
        for outcome in ["ok", "failed"] {
            let _ = tls.reloads.get_or_create(&OutcomeLabel { outcome });
        }
        registry.register(
            "tls_handshakes",
            "TLS handshakes on the listening socket, by outcome (only with [tls])",
            tls.handshakes.clone(),
        );
        registry.register(
            "tls_certificate_reloads",
            "Loads of changed TLS certificate files (SIGHUP or a change seen), by outcome",
            tls.reloads.clone(),
        );
        Self {
            registry,
            summit,
            tls,
            participants,
            connections_lagged,
            leases,
            joins_ok,
            joins_refused,
            join_latency,
            media_latency,
            sfu_latency,
            requests,
            errors,
            lagged,
            resyncs,
            http,
        }
    }

    /// The summit runner's handles.
    pub(crate) fn summit(&self) -> SummitMetrics {
        self.summit.clone()
    }

    /// TLS's handles.
    pub(crate) fn tls(&self) -> TlsMetrics {
        self.tls.clone()
    }

    /// An HTTP response went out.
    pub(crate) fn http_response(&self, admin: bool, status: u16) {
        let class = HTTP_CLASSES[usize::from(status / 100).clamp(1, 5) - 1];
        self.http.get_or_create(&HttpLabel { surface: if admin { "admin" } else { "other" }, class }).inc();
    }

    /// A websocket request of this kind was decoded.
    pub(crate) fn request(&self, request: &Request) {
        self.requests.get_or_create(&KindLabel { kind: request.kind() }).inc();
    }

    /// An error reply was sent.
    pub(crate) fn error(&self, code: ErrorCode) {
        self.errors.get_or_create(&CodeLabel { code: code.as_str() }).inc();
    }

    /// A join was welcomed; `since` is when its websocket was upgraded.
    pub(crate) fn joined(&self, since: Instant) {
        self.joins_ok.inc();
        self.join_latency.observe(since.elapsed().as_secs_f64());
    }

    /// A media request (`media_offer` or `media_answer`) read at `since` was answered.
    pub(crate) fn media_answered(&self, kind: &'static str, since: Instant) {
        self.media_latency.get_or_create(&KindLabel { kind }).observe(since.elapsed().as_secs_f64());
    }

    /// The SFU answered a media request it was handed at `since`.
    pub(crate) fn sfu_answered(&self, kind: &'static str, since: Instant) {
        self.sfu_latency.get_or_create(&KindLabel { kind }).observe(since.elapsed().as_secs_f64());
    }

    /// A join was answered with an error.
    pub(crate) fn join_refused(&self) {
        self.joins_refused.inc();
    }

    /// Counts connections marked lagged.
    pub(crate) fn lagged(&self) -> &Counter {
        &self.lagged
    }

    /// A resync snapshot was sent.
    pub(crate) fn resynced(&self) {
        self.resyncs.inc();
    }

    /// A room task's share of the gauges (starts at zero).
    pub(crate) fn room_gauges(&self) -> RoomGauges {
        RoomGauges {
            participants: self.participants.clone(),
            connections_lagged: self.connections_lagged.clone(),
            leases: self.leases.clone(),
            reported: RoomFigures::default(),
        }
    }

    /// The whole exposition: what was counted, then `live`.
    fn encode(&self, live: Live) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode_registry(&mut out, &self.registry)?;
        let mut scraped = Registry::with_prefix(PREFIX);
        scraped.register_collector(Box::new(live));
        prometheus_client::encoding::text::encode_registry(&mut out, &scraped)?;
        // The standard process metrics, unprefixed (Prometheus's client libraries' names).
        let mut process = Registry::default();
        process.register_collector(Box::new(Process));
        prometheus_client::encoding::text::encode_registry(&mut out, &process)?;
        prometheus_client::encoding::text::encode_eof(&mut out)?;
        Ok(out)
    }
}

/// What one room task contributes to the gauges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RoomFigures {
    /// Participants connected to this hub, by role ([`role_index`]).
    pub(crate) participants: [i64; 3],
    /// Its lagged connections.
    pub(crate) lagged: i64,
    /// Whether this hub holds the room's lease.
    pub(crate) lease: bool,
}

/// A room task's share of the gauges: [`RoomGauges::report`] adds what changed; dropping it takes the share back.
pub(crate) struct RoomGauges {
    participants: [Gauge; 3],
    connections_lagged: Gauge,
    leases: Gauge,
    reported: RoomFigures,
}

impl RoomGauges {
    /// The room's figures now.
    pub(crate) fn report(&mut self, now: RoomFigures) {
        if now == self.reported {
            return;
        }
        for ((gauge, new), old) in self.participants.iter().zip(now.participants).zip(self.reported.participants) {
            if new != old {
                gauge.inc_by(new - old);
            }
        }
        if now.lagged != self.reported.lagged {
            self.connections_lagged.inc_by(now.lagged - self.reported.lagged);
        }
        if now.lease != self.reported.lease {
            self.leases.inc_by(i64::from(now.lease) - i64::from(self.reported.lease));
        }
        self.reported = now;
    }

    /// What was reported last.
    pub(crate) fn reported(&self) -> RoomFigures {
        self.reported
    }
}

impl Drop for RoomGauges {
    fn drop(&mut self) {
        self.report(RoomFigures::default());
    }
}

/// Values read at scrape time from where the hub keeps them.
#[derive(Debug)]
struct Live {
    rooms: usize,
    connections: usize,
    draining: bool,
    media: Option<MediaFigures>,
    store: Option<StoreFigures>,
    webhooks: Option<WebhookStatus>,
}

#[derive(Debug)]
struct MediaFigures {
    stats: podium_media::MediaStats,
    workers: usize,
    workers_alive: usize,
}

#[derive(Debug)]
struct StoreFigures {
    ops: podium_store::RedisOpStats,
    degraded: bool,
}

impl Live {
    async fn read(shared: &Shared) -> Self {
        let media = shared.media.as_ref().map(|m| MediaFigures {
            stats: m.stats(),
            workers: m.workers(),
            workers_alive: m.workers_alive(),
        });
        let store = match &shared.store {
            Persistence::Redis(s) => Some(StoreFigures { ops: s.op_stats(), degraded: s.is_degraded() }),
            Persistence::Memory(_) => None,
        };
        let webhooks = if shared.config.webhooks.endpoints.is_empty() {
            None
        } else {
            let hooks = crate::webhooks::Webhooks(std::sync::Arc::clone(&shared.hooks));
            tokio::time::timeout(WEBHOOK_STATUS_TIMEOUT, hooks.status()).await.ok()
        };
        Self {
            rooms: shared.running_room_count(),
            connections: shared.connection_count(),
            draining: shared.is_draining() || shared.is_shutting_down(),
            media,
            store,
            webhooks,
        }
    }
}

/// Writes one unlabelled gauge or counter.
fn scalar(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    kind: MetricType,
    value: u64,
) -> std::fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, unit, kind)?;
    match kind {
        MetricType::Counter => metric.encode_counter::<NoLabelSet, _, f64>(&value, None),
        _ => metric.encode_gauge(&value),
    }
}

impl prometheus_client::collector::Collector for Live {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> std::fmt::Result {
        use MetricType::{Counter, Gauge};
        let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        scalar(&mut e, "rooms", "Rooms with a running task on this hub", None, Gauge, n(self.rooms))?;
        scalar(&mut e, "connections", "Open TCP connections (HTTP and websockets)", None, Gauge, n(self.connections))?;
        scalar(&mut e, "draining", "1 while the hub drains or shuts down", None, Gauge, u64::from(self.draining))?;
        if let Some(m) = &self.media {
            let s = &m.stats;
            scalar(&mut e, "media_workers", "SFU worker threads started", None, Gauge, n(m.workers))?;
            scalar(&mut e, "media_workers_alive", "SFU worker threads running", None, Gauge, n(m.workers_alive))?;
            scalar(&mut e, "media_datagrams_received", "UDP datagrams read by the SFU", None, Counter, s.datagrams_in)?;
            scalar(&mut e, "media_datagrams_sent", "UDP datagrams sent by the SFU", None, Counter, s.datagrams_out)?;
            scalar(&mut e, "media_packets_received", "Audio packets from publishers", None, Counter, s.media_in)?;
            scalar(
                &mut e,
                "media_packets_forwarded",
                "Audio packets written to listeners",
                None,
                Counter,
                s.forwarded,
            )?;
            let help = "Listeners the SFU moved to another worker to even out their room after departures";
            scalar(&mut e, "media_peers_moved", help, None, Counter, s.peers_moved)?;
            let help = "Audio packets the SFU queued to its recording writer";
            scalar(&mut e, "media_packets_recorded", help, None, Counter, s.record_queued)?;
            let help = "ICE-TCP connections the SFU accepted";
            scalar(&mut e, "media_tcp_connections_accepted", help, None, Counter, s.tcp_accepted)?;
            let help = "ICE-TCP connections the SFU closed at once (over media.max_tcp_connections) or for not passing ICE in time";
            scalar(&mut e, "media_tcp_connections_refused", help, None, Counter, s.tcp_refused)?;
            let mut drops = e.encode_descriptor(
                "media_dropped",
                "Datagrams, packets or events the SFU dropped, by reason",
                None,
                Counter,
            )?;
            for (reason, v) in [
                ("send_failed", s.send_dropped),
                ("garbage", s.garbage_dropped),
                ("unknown_source", s.unknown_dropped),
                ("not_publishing", s.unpublished_dropped),
                ("no_slot", s.no_slot_dropped),
                ("worker_queue_full", s.cross_worker_dropped),
                ("worker_late", s.stale_dropped),
                ("event_queue_full", s.events_dropped),
                ("record_queue_full", s.record_dropped),
            ] {
                drops.encode_family(&ReasonLabel { reason })?.encode_counter::<NoLabelSet, _, f64>(&v, None)?;
            }
            let (sum, count, buckets) = fold_fanout(&s.fanout);
            e.encode_descriptor(
                "media_fanout",
                "Per received packet and worker, from its receipt to the send of the worker's last copy",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?
            .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        }
        if let Some(st) = &self.store {
            let buckets: Vec<(f64, u64)> = podium_store::OP_LATENCY_BOUNDS
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .zip(st.ops.latency_buckets)
                .collect();
            e.encode_descriptor(
                "redis_operation_latency",
                "Redis operations (commands, scripts, pipelines) from send to reply or timeout",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?
            .encode_histogram::<NoLabelSet>(st.ops.latency_sum_seconds, st.ops.count(), &buckets, None)?;
            let help = "Redis operations that failed (error, timeout, or refused by the open breaker)";
            scalar(&mut e, "redis_operation_errors", help, None, Counter, st.ops.errors)?;
            let help = "Times an outage opened (or kept open) the Redis circuit breaker";
            scalar(&mut e, "redis_breaker_trips", help, None, Counter, st.ops.breaker_trips)?;
            let help = "1 while the Redis circuit breaker is open (operations fail at once)";
            scalar(&mut e, "redis_breaker_open", help, None, Gauge, u64::from(st.degraded))?;
        }
        if let Some(w) = &self.webhooks {
            encode_webhooks(&mut e, w)?;
        }
        Ok(())
    }
}

/// The standard process metrics of Prometheus's client libraries (`process_cpu_seconds_total`,
/// `process_resident_memory_bytes`, ...), read from `/proc/self` at scrape time. Nothing is exported where `/proc`
/// cannot be read (not Linux).
#[derive(Debug)]
struct Process;

/// The kernel's fixed clock tick for `/proc` times (`USER_HZ`, 100 on every Linux architecture Podium builds for).
const USER_HZ: f64 = 100.0;

/// What `/proc/self` says, or `None` where it cannot be read.
struct ProcessFigures {
    cpu_seconds: f64,
    resident_bytes: u64,
    virtual_bytes: u64,
    threads: u64,
    start_time_seconds: f64,
    open_fds: u64,
    max_fds: Option<u64>,
}

fn process_figures() -> Option<ProcessFigures> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces), from field 3 (state) on.
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |n: usize| rest.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let (utime, stime, threads, start, vsize) = (field(14)?, field(15)?, field(20)?, field(22)?, field(23)?);
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let rss_kib =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse::<u64>().ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let btime = boot.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse::<u64>().ok()?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    let max_fds = std::fs::read_to_string("/proc/self/limits").ok().and_then(|l| {
        l.lines().find(|l| l.starts_with("Max open files"))?.split_whitespace().nth(3)?.parse::<u64>().ok()
    });
    Some(ProcessFigures {
        cpu_seconds: (utime + stime) as f64 / USER_HZ,
        resident_bytes: rss_kib * 1024,
        virtual_bytes: vsize,
        threads,
        start_time_seconds: btime as f64 + start as f64 / USER_HZ,
        open_fds,
        max_fds,
    })
}

impl prometheus_client::collector::Collector for Process {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> std::fmt::Result {
        use MetricType::Gauge;
        let Some(p) = process_figures() else { return Ok(()) };
        e.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            MetricType::Counter,
        )?
        .encode_counter::<NoLabelSet, _, f64>(&p.cpu_seconds, None)?;
        let help = "Resident memory size in bytes";
        scalar(&mut e, "process_resident_memory_bytes", help, None, Gauge, p.resident_bytes)?;
        scalar(&mut e, "process_virtual_memory_bytes", "Virtual memory size in bytes", None, Gauge, p.virtual_bytes)?;
        scalar(&mut e, "process_threads", "Number of OS threads in the process", None, Gauge, p.threads)?;
        scalar(&mut e, "process_open_fds", "Number of open file descriptors", None, Gauge, p.open_fds)?;
        if let Some(max) = p.max_fds {
            scalar(&mut e, "process_max_fds", "Maximum number of open file descriptors", None, Gauge, max)?;
        }
        e.encode_descriptor(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            None,
            Gauge,
        )?
        .encode_gauge(&p.start_time_seconds)?;
        Ok(())
    }
}

/// The webhook figures: per endpoint; the same on every hub of a group (they are read from the shared outbox).
fn encode_webhooks(e: &mut DescriptorEncoder<'_>, w: &WebhookStatus) -> std::fmt::Result {
    type Pick = fn(&EndpointStatus) -> f64;
    let families: [(&str, &str, Option<Unit>, MetricType, Pick); 5] = [
        (
            "webhook_queue_depth",
            "Events waiting for the endpoint (over the rooms scanned; group-wide)",
            None,
            MetricType::Gauge,
            |s| s.queue_depth as f64,
        ),
        (
            "webhook_oldest_age",
            "Age of the oldest event waiting for the endpoint (0 when none; group-wide)",
            Some(Unit::Seconds),
            MetricType::Gauge,
            |s| s.oldest_age_ms.unwrap_or(0) as f64 / 1000.0,
        ),
        ("webhook_delivered", "Events delivered (group-wide)", None, MetricType::Counter, |s| s.delivered as f64),
        ("webhook_failures", "Failed delivery attempts (group-wide)", None, MetricType::Counter, |s| {
            s.failed_attempts as f64
        }),
        (
            "webhook_given_up",
            "Events given up after the whole retry schedule (group-wide)",
            None,
            MetricType::Counter,
            |s| s.given_up as f64,
        ),
    ];
    for (name, help, unit, kind, pick) in &families {
        let mut metric = e.encode_descriptor(name, help, unit.as_ref(), *kind)?;
        for s in &w.endpoints {
            let label = EndpointLabel { endpoint: s.name.clone() };
            let mut series = metric.encode_family(&label)?;
            match kind {
                MetricType::Counter => series.encode_counter::<NoLabelSet, _, f64>(&(pick(s) as u64), None)?,
                _ => series.encode_gauge(&pick(s))?,
            }
        }
    }
    let help = "Events dropped because a queue was full (group-wide with Redis)";
    scalar(e, "webhook_dropped", help, None, MetricType::Counter, w.dropped)
}

/// The SFU's fan-out histogram folded into [`FANOUT_BOUNDS`]: sum (seconds), count, and per-bucket counts (the
/// last one `+Inf`). A fine bucket lands in the first coarse bucket that holds its largest value.
fn fold_fanout(h: &podium_media::FanoutHistogram) -> (f64, u64, Vec<(f64, u64)>) {
    let mut buckets: Vec<(f64, u64)> = FANOUT_BOUNDS.iter().map(|b| (*b, 0)).chain([(f64::INFINITY, 0)]).collect();
    for (i, c) in h.buckets.iter().enumerate().filter(|(_, c)| **c > 0) {
        let upper = podium_media::FanoutHistogram::bucket_upper_us(i) as f64 / 1e6;
        let at = FANOUT_BOUNDS.iter().position(|b| upper <= *b).unwrap_or(FANOUT_BOUNDS.len());
        buckets[at].1 += c;
    }
    (h.sum_us as f64 / 1e6, h.count(), buckets)
}

/// `GET /metrics`.
pub(crate) async fn serve(State(state): State<AppState>) -> Response {
    let shared = &state.shared;
    let live = Live::read(shared).await;
    match shared.metrics.encode(live) {
        Ok(text) => ([(CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], text).into_response(),
        Err(_) => {
            crate::http::problem::Problem::new(ErrorCode::Internal, "encoding the metrics failed").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_gauges_add_and_take_back_their_share() {
        let metrics = Metrics::new();
        let mut a = metrics.room_gauges();
        let mut b = metrics.room_gauges();
        a.report(RoomFigures { participants: [3, 1, 1], lagged: 1, lease: true });
        b.report(RoomFigures { participants: [2, 0, 1], lagged: 0, lease: false });
        assert_eq!(metrics.participants.each_ref().map(Gauge::get), [5, 1, 2]);
        a.report(RoomFigures { participants: [2, 2, 1], lagged: 0, lease: true });
        assert_eq!(metrics.participants.each_ref().map(Gauge::get), [4, 2, 2]);
        assert_eq!((metrics.connections_lagged.get(), metrics.leases.get()), (0, 1));
        drop(a);
        assert_eq!(metrics.participants.each_ref().map(Gauge::get), [2, 0, 1]);
        assert_eq!(metrics.leases.get(), 0);
    }

    #[test]
    fn exposition_has_every_series_from_the_start() {
        let metrics = Metrics::new();
        metrics.error(ErrorCode::Forbidden);
        let live = Live { rooms: 2, connections: 3, draining: false, media: None, store: None, webhooks: None };
        let text = metrics.encode(live).unwrap();
        assert!(text.contains("podium_participants{role=\"audience\"} 0\n"), "{text}");
        assert!(text.contains("podium_errors_total{code=\"forbidden\"} 1\n"), "{text}");
        assert!(text.contains("podium_errors_total{code=\"stage_full\"} 0\n"), "{text}");
        assert!(text.contains("podium_requests_total{kind=\"raise_hand\"} 0\n"), "{text}");
        assert!(text.contains("podium_join_latency_seconds_bucket{le=\"+Inf\"} 0\n"), "{text}");
        assert!(text.contains("podium_rooms 2\n"), "{text}");
        assert!(text.contains("podium_tls_handshakes_total{outcome=\"timeout\"} 0\n"), "{text}");
        assert!(text.contains("podium_tls_certificate_reloads_total{outcome=\"failed\"} 0\n"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn fanout_folds_into_coarse_buckets() {
        let mut h = podium_media::FanoutHistogram::default();
        // 5 µs (exact bucket 5), and the bucket holding 1 ms.
        h.buckets[5] = 2;
        let ms = (0..podium_media::FANOUT_BUCKETS)
            .find(|i| podium_media::FanoutHistogram::bucket_upper_us(*i) >= 1000)
            .unwrap();
        h.buckets[ms] = 1;
        h.sum_us = 1010;
        let (sum, count, buckets) = fold_fanout(&h);
        assert_eq!(count, 3);
        assert!((sum - 0.00101).abs() < 1e-12);
        assert_eq!(buckets[0], (0.00001, 2));
        let total: u64 = buckets.iter().map(|b| b.1).sum();
        assert_eq!(total, 3);
        assert_eq!(buckets.last().unwrap().0, f64::INFINITY);
    }
}
