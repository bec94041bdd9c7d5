//! Signed webhooks (Standard Webhooks v1) from a durable outbox, and the audit log. See `proto/WEBHOOKS.md`.
//!
//! - **At commit** ([`Hooks::at_commit`], called by the room task for every transition it commits): the
//!   transition's events are derived (`derive.rs`), filtered by the audience policy and the endpoints' filters,
//!   and returned as [`CommitExtras`] that the store writes in the same atomic step as the transition (Redis: the
//!   commit script; in memory: right after the commit, under no lock shared with anything else). Moderation
//!   actions go to the audit log the same way.
//! - **Delivery** ([`run`]): each hub polls the index of rooms (lanes) with queued events and delivers the lanes
//!   whose lease it takes (`podium:{room}:hooklease`), so one hub delivers a given room's events. Per room and
//!   endpoint, events go strictly in order: the next waits until the previous one was answered 2xx or given up
//!   after the retry schedule. Retry state (attempts, next attempt) is stored with the lane, so a hub taking a
//!   lane over continues the schedule.
//! - **Visibility**: [`Webhooks::status`] and [`Webhooks::audit`], for the admin API.

mod derive;
mod memory;
mod sign;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use podium_proto::webhook::{
    AudienceSummary, AuditEntry, AuditPage, EndpointStatus, WEBHOOK_TYPES, WebhookBody, WebhookData, WebhookPayload,
    WebhookStatus,
};
use podium_room::{self as room, Changes, RoomState};
use podium_store::redis::outbox::{FORGET_AFTER, TOUCH_EVERY};
use podium_store::{CommitExtras, EndpointPeek, LaneAdvance, LanePeek, RedisStore, StoreError};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};

use crate::config::{AudiencePolicy, AuditConfig, WebhooksConfig};
pub(crate) use derive::Cause;
pub(crate) use sign::parse_secret;

/// The `webhook-signature` header of a request (Standard Webhooks v1): `v1,<base64 HMAC-SHA256>` of
/// `{id}.{timestamp}.{body}` for each secret (`whsec_<base64>`), space-separated. What the hub sends; public for
/// `podium webhooks test`. An error names a malformed secret.
pub fn sign<S: AsRef<str>>(secrets: &[S], id: &str, timestamp: u64, body: &[u8]) -> Result<String, String> {
    let keys = secrets.iter().map(|s| parse_secret(s.as_ref())).collect::<Result<Vec<_>, _>>()?;
    Ok(sign::signature(&keys, id, timestamp, body))
}

/// `ms` since the Unix epoch as the payloads' `timestamp` (ISO 8601, UTC, milliseconds).
pub fn timestamp(ms: u64) -> String {
    iso8601(ms)
}

/// The lane of hub events (`node.drained`); room names cannot contain `@`.
pub(crate) const NODES_LANE: &str = "@nodes";

/// True when `pattern` (an exact type, or a prefix ending in `.*`) names at least one event type.
pub(crate) fn known_pattern(pattern: &str) -> bool {
    WEBHOOK_TYPES.iter().any(|t| matches(pattern, t))
}

fn matches(pattern: &str, kind: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => kind.starts_with(prefix),
        None => pattern == kind,
    }
}

/// One configured endpoint, with its keys decoded.
struct Endpoint {
    name: String,
    url: String,
    keys: Vec<Vec<u8>>,
    include: Vec<String>,
    exclude: Vec<String>,
    timeout: Duration,
}

impl Endpoint {
    fn wants(&self, kind: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| matches(p, kind)))
            && !self.exclude.iter().any(|p| matches(p, kind))
    }
}

/// Per-room state the room task keeps for webhooks.
#[derive(Debug, Default)]
pub(crate) struct RoomHooks {
    /// When this task last added the room to the lane index (Redis).
    touched: Option<Instant>,
    /// Coalesced audience movements not reported yet, and when the last summary went out.
    joined: u64,
    left: u64,
    summary_at: Option<u64>,
}

/// What a commit carries besides the transition, and whether the lane index must be touched first.
pub(crate) struct AtCommit {
    pub(crate) extras: CommitExtras,
    pub(crate) touch: bool,
}

/// An endpoint's retry state for the event at its cursor in one lane (stored with the lane).
#[derive(Serialize, Deserialize, Default, Debug, Clone, PartialEq, Eq)]
struct Retry {
    attempts: u32,
    next_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The webhook and audit machinery of one hub.
pub(crate) struct Hooks {
    config: WebhooksConfig,
    audit: AuditConfig,
    endpoints: Vec<Endpoint>,
    node: String,
    redis: Option<RedisStore>,
    memory: memory::MemoryOutbox,
    memory_audit: memory::MemoryAudit,
    /// Counters of the in-memory store (`<endpoint>:<field>` → value), as Redis keeps them in a hash.
    memory_fields: Mutex<std::collections::HashMap<String, String>>,
    client: reqwest::Client,
    /// Lanes this hub delivers now.
    running: Mutex<HashSet<String>>,
    /// Endpoints disabled (410), as last read.
    disabled: Mutex<HashSet<String>>,
    /// New events were queued by this hub.
    wake: Notify,
    next_id: AtomicU64,
    id_prefix: String,
}

fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `ms` since the epoch as ISO 8601 in UTC with milliseconds (`2026-03-01T12:00:00.000Z`).
fn iso8601(ms: u64) -> String {
    let secs = ms / 1_000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Days since 1970-01-01 to a civil date (proleptic Gregorian), counting 400-year eras from 0000-03-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60,
        ms % 1_000
    )
}

/// An outbox entry: `"<id> <type> <created_ms> <body>"`.
fn entry(id: &str, kind: &str, ms: u64, body: &str) -> String {
    format!("{id} {kind} {ms} {body}")
}

fn parse_entry(e: &str) -> Option<(&str, &str, u64, &str)> {
    let mut parts = e.splitn(4, ' ');
    let id = parts.next()?;
    let kind = parts.next()?;
    let ms = parts.next()?.parse().ok()?;
    Some((id, kind, ms, parts.next()?))
}

impl Hooks {
    /// `redis`: the shared store, when there is one (else the in-memory outbox and audit log are used).
    pub(crate) fn new(config: &WebhooksConfig, audit: &AuditConfig, node: &str, redis: Option<RedisStore>) -> Self {
        let endpoints = config
            .endpoints
            .iter()
            .map(|e| Endpoint {
                name: e.name.clone(),
                url: e.url.clone(),
                // Validated with the configuration.
                keys: e.secrets.iter().filter_map(|s| parse_secret(s).ok()).collect(),
                include: e.include.clone(),
                exclude: e.exclude.clone(),
                timeout: Duration::from_millis(e.timeout_ms),
            })
            .collect();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("podium-webhooks/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(4)
            .build()
            .unwrap_or_default();
        Self {
            config: config.clone(),
            audit: audit.clone(),
            endpoints,
            node: node.to_owned(),
            redis,
            memory: memory::MemoryOutbox::default(),
            memory_audit: memory::MemoryAudit::default(),
            memory_fields: Mutex::default(),
            client,
            running: Mutex::default(),
            disabled: Mutex::default(),
            wake: Notify::new(),
            next_id: AtomicU64::new(0),
            id_prefix: format!("msg_{:016x}", rand::random::<u64>()),
        }
    }

    fn event_id(&self) -> String {
        format!("{}{:08x}", self.id_prefix, self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// The webhook events and audit entries of a transition the room task is about to commit (`before`: the room
    /// as last committed). `None` when there is nothing to write.
    pub(crate) fn at_commit(
        &self,
        state: &mut RoomHooks,
        name: &str,
        before: Option<&RoomState>,
        changes: &Changes,
        outputs: &[room::Output],
        cause: Option<&Cause>,
    ) -> Option<AtCommit> {
        let derived = derive::derive(before, changes, outputs, cause);
        let now = wall_ms();
        let via = cause.map(|c| c.via.to_owned());
        let audit: Vec<String> = derived
            .iter()
            .filter(|d| d.audited())
            .map(|d| {
                let e = AuditEntry {
                    id: String::new(),
                    time_ms: now,
                    action: d.kind.to_owned(),
                    actor: d.actor.clone(),
                    target: d.participant.as_ref().map(|p| p.id.clone()),
                    reason: d.reason.clone(),
                    via: via.clone(),
                    seq: changes.seq,
                };
                serde_json::to_string(&e).unwrap_or_default()
            })
            .collect();
        let mut kept = Vec::new();
        for d in derived {
            match (d.audience_movement(), self.config.audience) {
                (Some(_), AudiencePolicy::Off) => {}
                (Some(joined), AudiencePolicy::Coalesced) => {
                    if joined {
                        state.joined += 1
                    } else {
                        state.left += 1
                    }
                }
                _ => kept.push(d),
            }
        }
        let mut hooks = Vec::new();
        if !self.endpoints.is_empty() {
            let mut index = 0u32;
            let mut add = |kind: &str, data: WebhookData| {
                if !self.endpoints.iter().any(|e| e.wants(kind)) {
                    return;
                }
                let id = self.event_id();
                let mut data =
                    WebhookData { id: id.clone(), room: Some(name.to_owned()), seq: Some(changes.seq), index, ..data };
                index += 1;
                let timestamp = iso8601(now);
                let mut body =
                    WebhookPayload::new(kind, WebhookBody { timestamp: timestamp.clone(), data: data.clone() })
                        .map(|p| p.to_json())
                        .unwrap_or_default();
                if body.len() > self.config.max_body_bytes {
                    data = WebhookData {
                        id: data.id,
                        room: data.room,
                        seq: data.seq,
                        index: data.index,
                        ..WebhookData::default()
                    };
                    body = WebhookPayload::new(kind, WebhookBody { timestamp, data })
                        .map(|p| p.to_json())
                        .unwrap_or_default();
                }
                hooks.push(entry(&id, kind, now, &body));
            };
            for d in kept {
                let data = WebhookData {
                    actor: d.actor,
                    reason: d.reason,
                    via: via.clone(),
                    settings: d.settings,
                    info: d.info,
                    author: d.message_id.and(d.participant.as_ref().map(|p| p.id.clone())),
                    message_id: d.message_id,
                    participant: d.participant,
                    recording_id: d.recording_id,
                    ..WebhookData::default()
                };
                add(d.kind, data);
            }
            let due = state.summary_at.is_none_or(|at| now.saturating_sub(at) >= self.config.audience_interval_ms);
            if self.config.audience == AudiencePolicy::Coalesced && due && state.joined + state.left > 0 {
                let audience = derive::audience_after(before, changes);
                let summary = AudienceSummary { joined: state.joined, left: state.left, audience };
                add("audience.summary", WebhookData { audience: Some(summary), ..WebhookData::default() });
                state.joined = 0;
                state.left = 0;
                state.summary_at = Some(now);
            }
        }
        if hooks.is_empty() && audit.is_empty() {
            return None;
        }
        let touch = !hooks.is_empty() && state.touched.is_none_or(|t| t.elapsed() >= TOUCH_EVERY);
        if touch {
            state.touched = Some(Instant::now());
        }
        let max_age_ms = self.audit.max_age_s.saturating_mul(1_000);
        Some(AtCommit {
            extras: CommitExtras {
                hooks,
                hooks_cap: self.config.max_queue_per_room,
                audit,
                audit_max_len: self.audit.max_entries,
                audit_max_age_ms: max_age_ms,
            },
            touch,
        })
    }

    /// After a commit that carried `extras` succeeded: with the in-memory store, queue and record them now (the
    /// commit and this run on the room task with no await between); with Redis they are stored already. Wakes
    /// this hub's deliverers either way.
    pub(crate) fn committed(&self, room: &str, extras: CommitExtras) {
        if self.redis.is_none() {
            if !extras.hooks.is_empty() {
                self.memory.append(room, extras.hooks, extras.hooks_cap, self.config.memory_max_events);
            }
            if !extras.audit.is_empty() {
                self.memory_audit.append(
                    room,
                    extras.audit,
                    wall_ms(),
                    extras.audit_max_len,
                    extras.audit_max_age_ms,
                    self.audit.memory_max_rooms,
                );
            }
        }
        self.wake.notify_waiters();
    }

    /// Queues scheduler events of a summit stage, in order, on the lane of the stage's room (so a stage's events
    /// and its room's events reach an endpoint in one order). `events`: (id, type, data); the id is stable across a
    /// scheduler failover, so an event queued again after one is de-duplicated by receivers on `webhook-id`.
    /// Errors are the store's: the caller keeps the events and tries again.
    pub(crate) async fn summit_events(
        &self,
        room: &str,
        events: Vec<(String, &'static str, podium_proto::webhook::SummitEvent)>,
    ) -> Result<(), StoreError> {
        let now = wall_ms();
        let entries: Vec<String> = events
            .into_iter()
            .filter(|(_, kind, _)| self.endpoints.iter().any(|e| e.wants(kind)))
            .filter_map(|(id, kind, summit)| {
                let data = WebhookData {
                    id: id.clone(),
                    room: Some(room.to_owned()),
                    summit: Some(summit),
                    ..WebhookData::default()
                };
                let body = WebhookPayload::new(kind, WebhookBody { timestamp: iso8601(now), data })?.to_json();
                Some(entry(&id, kind, now, &body))
            })
            .collect();
        if entries.is_empty() {
            return Ok(());
        }
        match &self.redis {
            Some(r) => r.hooks_append(room, &entries, self.config.max_queue_per_room, now).await?,
            None => self.memory.append(room, entries, self.config.max_queue_per_room, self.config.memory_max_events),
        }
        self.wake.notify_waiters();
        Ok(())
    }

    /// Queues a recording's `recording.ready` or `recording.failed` (`data`: its fields) on the lane of its room.
    pub(crate) async fn recording_event(&self, room: &str, kind: &'static str, data: WebhookData) {
        if !self.endpoints.iter().any(|e| e.wants(kind)) {
            return;
        }
        let now = wall_ms();
        let id = self.event_id();
        let data = WebhookData { id: id.clone(), room: Some(room.to_owned()), ..data };
        let Some(payload) = WebhookPayload::new(kind, WebhookBody { timestamp: iso8601(now), data }) else { return };
        let e = entry(&id, kind, now, &payload.to_json());
        match &self.redis {
            Some(r) => {
                if let Err(e) = r.hooks_append(room, &[e], self.config.max_queue_per_room, now).await {
                    warn!(error = %e, kind, "queueing a recording webhook failed");
                }
            }
            None => self.memory.append(room, vec![e], self.config.max_queue_per_room, self.config.memory_max_events),
        }
        self.wake.notify_waiters();
    }

    /// Queues `node.drained` for this hub (a drain started).
    pub(crate) async fn node_drained(&self) {
        if !self.endpoints.iter().any(|e| e.wants("node.drained")) {
            return;
        }
        let now = wall_ms();
        let id = self.event_id();
        let data = WebhookData { id: id.clone(), node: Some(self.node.clone()), ..WebhookData::default() };
        let body = WebhookPayload::NodeDrained(WebhookBody { timestamp: iso8601(now), data }).to_json();
        let e = entry(&id, "node.drained", now, &body);
        match &self.redis {
            Some(r) => {
                if let Err(e) = r.hooks_append(NODES_LANE, &[e], self.config.max_queue_per_room, now).await {
                    warn!(error = %e, "queueing node.drained failed");
                }
            }
            None => {
                self.memory.append(NODES_LANE, vec![e], self.config.max_queue_per_room, self.config.memory_max_events)
            }
        }
        self.wake.notify_waiters();
    }

    fn active(&self) -> Vec<&str> {
        let disabled = self.disabled.lock().unwrap_or_else(PoisonError::into_inner);
        self.endpoints.iter().filter(|e| !disabled.contains(&e.name)).map(|e| e.name.as_str()).collect()
    }

    async fn lanes(&self, limit: usize) -> Result<(Vec<(String, u64)>, u64), StoreError> {
        match &self.redis {
            Some(r) => r.hooks_lanes(limit).await,
            None => {
                let (lanes, total) = self.memory.lanes(limit);
                Ok((lanes.into_iter().map(|l| (l, 0)).collect(), total))
            }
        }
    }

    async fn lease(&self, lane: &str) -> Result<bool, StoreError> {
        match &self.redis {
            Some(r) => r.hooks_lease(lane, &self.node, Duration::from_millis(self.config.lease_ms)).await,
            None => Ok(true),
        }
    }

    /// Up to `window` events from each endpoint's cursor.
    async fn peek(&self, lane: &str, endpoints: &[&str], window: usize) -> Result<LanePeek, StoreError> {
        match &self.redis {
            Some(r) => r.hooks_peek(lane, endpoints, window).await,
            None => Ok(self.memory.peek(lane, endpoints, window)),
        }
    }

    /// Stores an endpoint's progress on `lane`: its cursor (when given), its retry state (none clears it) and the
    /// deliveries since the last advance (counted with the lane; see [`Hooks::flush_delivered`]). One write. `None`:
    /// the lane's lease was lost.
    async fn advance(
        &self,
        lane: &str,
        endpoint: &str,
        cursor: Option<u64>,
        retry: Option<&Retry>,
        delivered: u64,
    ) -> Result<Option<u64>, StoreError> {
        let state = retry.map(|r| serde_json::to_string(r).unwrap_or_default()).unwrap_or_default();
        let active = self.active();
        let now_ms = wall_ms();
        match &self.redis {
            Some(r) => {
                let advance = LaneAdvance { endpoint, cursor, state: &state, delivered, now_ms };
                r.hooks_advance(lane, &self.node, &advance, &active).await
            }
            None => {
                let left = self.memory.advance(lane, endpoint, cursor, &state, &active);
                if delivered > 0 {
                    let by = i64::try_from(delivered).unwrap_or(i64::MAX);
                    self.record(endpoint, &[("delivered", by)], &[("last_success_ms", now_ms.to_string())]).await;
                }
                Ok(Some(left))
            }
        }
    }

    /// Adds the deliveries counted with `lane` to the shared counters (Redis; in memory they are added at once).
    async fn flush_delivered(&self, lane: &str) {
        let Some(r) = &self.redis else { return };
        let names: Vec<&str> = self.endpoints.iter().map(|e| e.name.as_str()).collect();
        let taken = match r.hooks_take_delivered(lane, &names).await {
            Ok(taken) => taken,
            Err(e) => {
                debug!(error = %e, lane, "reading a lane's delivery counts failed (they stay with the lane)");
                return;
            }
        };
        for (name, (delivered, last_ms)) in names.iter().zip(taken) {
            if delivered > 0 {
                let by = i64::try_from(delivered).unwrap_or(i64::MAX);
                self.record(name, &[("delivered", by)], &[("last_success_ms", last_ms.to_string())]).await;
            }
        }
    }

    /// The lane is caught up: count its deliveries, forget it (if its index entry is stale) and give its lease up.
    async fn finish(&self, lane: &str) {
        self.flush_delivered(lane).await;
        match &self.redis {
            Some(r) => {
                let before = wall_ms().saturating_sub(u64::try_from(FORGET_AFTER.as_millis()).unwrap_or(u64::MAX));
                if let Err(e) = r.hooks_forget(lane, before).await {
                    debug!(error = %e, lane, "forgetting a delivered lane failed");
                }
                if let Err(e) = r.hooks_unlease(lane, &self.node).await {
                    debug!(error = %e, lane, "releasing a lane failed");
                }
            }
            None => self.memory.forget(lane, &self.active()),
        }
    }

    async fn record(&self, endpoint: &str, counters: &[(&str, i64)], fields: &[(&str, String)]) {
        match &self.redis {
            Some(r) => {
                if let Err(e) = r.hooks_record(endpoint, counters, fields).await {
                    debug!(error = %e, "recording webhook counters failed");
                }
            }
            None => {
                let mut map = self.memory_fields.lock().unwrap_or_else(PoisonError::into_inner);
                for (name, by) in counters {
                    let slot = map.entry(format!("{endpoint}:{name}")).or_default();
                    let n: i64 = slot.parse().unwrap_or(0);
                    *slot = (n + by).to_string();
                }
                for (name, value) in fields {
                    map.insert(format!("{endpoint}:{name}"), value.clone());
                }
            }
        }
    }

    async fn fields(&self) -> std::collections::HashMap<String, String> {
        match &self.redis {
            Some(r) => r.hooks_endpoints().await.unwrap_or_default(),
            None => self.memory_fields.lock().unwrap_or_else(PoisonError::into_inner).clone(),
        }
    }

    /// Re-reads which endpoints are disabled (shared by the hubs).
    async fn refresh_disabled(&self) {
        let fields = self.fields().await;
        let disabled: HashSet<String> = self
            .endpoints
            .iter()
            .filter(|e| fields.contains_key(&format!("{}:disabled", e.name)))
            .map(|e| e.name.clone())
            .collect();
        *self.disabled.lock().unwrap_or_else(PoisonError::into_inner) = disabled;
    }

    /// The delay before retry number `attempts` (1-based), with jitter, at least `retry_after`; `None` once the
    /// schedule is exhausted.
    fn backoff(&self, attempts: u32, retry_after: Option<Duration>) -> Option<Duration> {
        let base = *self.config.retry_schedule_ms.get(usize::try_from(attempts).ok()?.checked_sub(1)?)?;
        let jitter = self.config.retry_jitter * (rand::random::<f64>() * 2.0 - 1.0);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
        let ms = ((base as f64) * (1.0 + jitter)).max(0.0) as u64;
        let floor = retry_after
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).min(self.config.max_retry_after_ms));
        Some(Duration::from_millis(ms.max(floor)))
    }

    /// One delivery attempt.
    async fn send(&self, ep: &Endpoint, id: &str, body: &str) -> Outcome {
        let ts = wall_ms() / 1_000;
        let mut req = self
            .client
            .post(&ep.url)
            .timeout(ep.timeout)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string());
        if !ep.keys.is_empty() {
            req = req.header("webhook-signature", sign::signature(&ep.keys, id, ts, body.as_bytes()));
        }
        match req.body(body.to_owned()).send().await {
            Ok(resp) if resp.status().is_success() => Outcome::Delivered,
            Ok(resp) if resp.status() == reqwest::StatusCode::GONE => Outcome::Gone,
            Ok(resp) => {
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                Outcome::Failed { error: format!("HTTP {}", resp.status().as_u16()), retry_after }
            }
            Err(e) => {
                let what = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "connection failed"
                } else {
                    "request failed"
                };
                Outcome::Failed { error: what.to_owned(), retry_after: None }
            }
        }
    }
}

enum Outcome {
    Delivered,
    Gone,
    Failed { error: String, retry_after: Option<Duration> },
}

/// Delivers queued events until `stop` (this hub's share: the lanes whose lease it takes).
pub(crate) async fn run(hooks: Arc<Hooks>, mut stop: watch::Receiver<bool>) {
    if hooks.endpoints.is_empty() {
        return;
    }
    let poll = Duration::from_millis(hooks.config.poll_interval_ms);
    loop {
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            () = hooks.wake.notified() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        hooks.refresh_disabled().await;
        let max = hooks.config.max_rooms_in_flight;
        let lanes = match hooks.lanes(max.saturating_mul(2)).await {
            Ok((lanes, _)) => lanes,
            Err(e) => {
                debug!(error = %e, "listing webhook lanes failed");
                continue;
            }
        };
        for (lane, _) in lanes {
            {
                let running = hooks.running.lock().unwrap_or_else(PoisonError::into_inner);
                if running.len() >= max {
                    break;
                }
                if running.contains(&lane) {
                    continue;
                }
            }
            if !matches!(hooks.lease(&lane).await, Ok(true)) {
                continue;
            }
            hooks.running.lock().unwrap_or_else(PoisonError::into_inner).insert(lane.clone());
            let hooks = Arc::clone(&hooks);
            tokio::spawn(async move {
                deliver_lane(&hooks, &lane).await;
                hooks.running.lock().unwrap_or_else(PoisonError::into_inner).remove(&lane);
            });
        }
    }
}

/// Events read per endpoint and lane at once, delivered one by one in order; also the most delivered events whose
/// cursor move is not stored yet (a hub dying then makes the next one send them again).
const WINDOW: usize = 32;
/// Delivered events' cursor move is stored before the next request once the oldest of them is this old.
const STORE_AFTER: Duration = Duration::from_millis(100);
/// How often a lane's deliveries, counted with the lane, are added to the shared counters while it is delivered.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Delivers one lane's events, in order per endpoint, until it is caught up or its lease is lost.
async fn deliver_lane(hooks: &Hooks, lane: &str) {
    let renew_every = Duration::from_millis(hooks.config.lease_ms / 3);
    let mut renewed = Instant::now();
    let mut flushed = Instant::now();
    loop {
        if renewed.elapsed() >= renew_every {
            match hooks.lease(lane).await {
                Ok(true) => renewed = Instant::now(),
                Ok(false) => return,
                Err(_) => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        if flushed.elapsed() >= FLUSH_EVERY {
            hooks.flush_delivered(lane).await;
            flushed = Instant::now();
        }
        let active = hooks.active();
        let peek = match hooks.peek(lane, &active, WINDOW).await {
            Ok(p) => p,
            Err(e) => {
                debug!(error = %e, lane, "reading a webhook lane failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if peek.endpoints.iter().all(|p| p.events.is_empty()) {
            hooks.finish(lane).await;
            return;
        }
        // Runs stop taking new events when the lease is due for renewal.
        let until = renewed + renew_every;
        let runs = active.iter().zip(peek.endpoints).filter_map(|(name, p)| {
            let ep = hooks.endpoints.iter().find(|e| e.name == *name)?;
            (!p.events.is_empty()).then(|| deliver_run(hooks, lane, ep, p, until))
        });
        let ends = futures_util::future::join_all(runs).await;
        if ends.iter().any(|e| matches!(e, RunEnd::LeaseLost)) {
            info!(lane, "lost a webhook lane's lease; another hub delivers it");
            return;
        }
        if !ends.iter().any(|e| matches!(e, RunEnd::Progressed)) {
            let wait_until =
                ends.iter().filter_map(|e| if let RunEnd::Waiting(at) = e { Some(*at) } else { None }).min();
            let mut cap = renew_every.min(Duration::from_millis(hooks.config.poll_interval_ms.max(1) * 5));
            if ends.iter().any(|e| matches!(e, RunEnd::Failed)) {
                cap = cap.min(Duration::from_secs(1));
            }
            let wait = wait_until.map_or(cap, |w| Duration::from_millis(w.saturating_sub(wall_ms())).min(cap));
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = hooks.wake.notified() => {}
            }
        }
    }
}

/// How a run of one endpoint's events ended.
enum RunEnd {
    /// Some events were delivered, given up or skipped, or an attempt failed (its retry is stored).
    Progressed,
    /// The event at the cursor waits for its next attempt (ms since the epoch).
    Waiting(u64),
    /// Storing progress failed; the events not stored are sent again.
    Failed,
    /// This hub no longer holds the lane.
    LeaseLost,
}

/// Delivers `peek.events` (from `peek.cursor` on) to `ep` one by one, in order, while they succeed: stores the
/// cursor once over a run of successes (and skipped or given-up events), at the latest before the next request once
/// the oldest unstored one is [`STORE_AFTER`] old, and at the end. A failure stores the cursor past the events
/// before it and the failed event's retry state, and ends the run. No new request starts after `until`.
async fn deliver_run(hooks: &Hooks, lane: &str, ep: &Endpoint, peek: EndpointPeek, until: Instant) -> RunEnd {
    let EndpointPeek { cursor, state, events } = peek;
    // The stored retry state is the event at the cursor's.
    let mut first_retry = Some(serde_json::from_str::<Retry>(&state).unwrap_or_default());
    let mut stored = cursor;
    let mut pos = cursor;
    let mut delivered = 0u64;
    let mut pending_since: Option<Instant> = None;
    let store = |pos: u64, retry: Option<Retry>, delivered: u64| async move {
        match hooks.advance(lane, &ep.name, Some(pos), retry.as_ref(), delivered).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(RunEnd::LeaseLost),
            Err(e) => {
                debug!(error = %e, lane, endpoint = %ep.name, "storing webhook progress failed (the attempts repeat)");
                Err(RunEnd::Failed)
            }
        }
    };
    for (i, item) in events.iter().enumerate() {
        if i > 0 && Instant::now() >= until {
            break;
        }
        let retry = if i == 0 { first_retry.take().unwrap_or_default() } else { Retry::default() };
        let Some((id, kind, _, body)) = parse_entry(item) else {
            warn!(lane, endpoint = %ep.name, "skipping an unreadable outbox entry");
            pos += 1;
            pending_since.get_or_insert_with(Instant::now);
            continue;
        };
        if !ep.wants(kind) {
            pos += 1;
            pending_since.get_or_insert_with(Instant::now);
            continue;
        }
        if retry.next_ms > wall_ms() {
            // Only the event at the stored cursor can have a retry pending (so nothing is unstored here).
            return RunEnd::Waiting(retry.next_ms);
        }
        if pos > stored
            && (pos - stored >= u64::try_from(WINDOW).unwrap_or(u64::MAX)
                || pending_since.is_some_and(|t| t.elapsed() >= STORE_AFTER))
        {
            if let Err(end) = store(pos, None, delivered).await {
                return end;
            }
            (stored, delivered, pending_since) = (pos, 0, None);
        }
        let outcome = hooks.send(ep, id, body).await;
        let now = wall_ms();
        match outcome {
            Outcome::Delivered => {
                pos += 1;
                delivered += 1;
                pending_since.get_or_insert_with(Instant::now);
            }
            Outcome::Gone => {
                warn!(endpoint = %ep.name, "webhook endpoint answered 410 Gone: disabled");
                hooks
                    .record(
                        &ep.name,
                        &[("failed", 1)],
                        &[
                            ("disabled", now.to_string()),
                            ("last_error", "HTTP 410: disabled".into()),
                            ("last_error_ms", now.to_string()),
                        ],
                    )
                    .await;
                hooks.disabled.lock().unwrap_or_else(PoisonError::into_inner).insert(ep.name.clone());
                // The cursor stays at the refused event (sent first when the endpoint is enabled again).
                if pos > stored
                    && let Err(end) = store(pos, None, delivered).await
                {
                    return end;
                }
                return RunEnd::Progressed;
            }
            Outcome::Failed { error, retry_after } => {
                let mut retry = retry;
                retry.attempts += 1;
                let fields = [("last_error", format!("{lane}: {error}")), ("last_error_ms", now.to_string())];
                match hooks.backoff(retry.attempts, retry_after) {
                    Some(delay) => {
                        retry.next_ms = now + u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                        retry.error = Some(error);
                        debug!(lane, endpoint = %ep.name, attempts = retry.attempts, ?delay, "webhook delivery failed; retrying later");
                        hooks.record(&ep.name, &[("failed", 1)], &fields).await;
                        return match store(pos, Some(retry), delivered).await {
                            Ok(()) => RunEnd::Progressed,
                            Err(end) => end,
                        };
                    }
                    None => {
                        warn!(lane, endpoint = %ep.name, attempts = retry.attempts, "webhook given up after the whole retry schedule");
                        hooks.record(&ep.name, &[("failed", 1), ("given_up", 1)], &fields).await;
                        pos += 1;
                        pending_since.get_or_insert_with(Instant::now);
                    }
                }
            }
        }
    }
    // The run's end (this also clears a retry state left for an event skipped now).
    if pos > stored
        && let Err(end) = store(pos, None, delivered).await
    {
        return end;
    }
    RunEnd::Progressed
}

/// The admin API's view of webhooks and the audit log. Cheap to clone.
#[derive(Clone)]
pub struct Webhooks(pub(crate) Arc<Hooks>);

impl Webhooks {
    /// Per endpoint: counters shared by the hubs, and the queue over up to `webhooks.status_scan_rooms` rooms.
    pub async fn status(&self) -> WebhookStatus {
        let h = &self.0;
        let fields = h.fields().await;
        let names: Vec<&str> = h.endpoints.iter().map(|e| e.name.as_str()).collect();
        let mut status = WebhookStatus {
            endpoints: h
                .endpoints
                .iter()
                .map(|e| {
                    let num = |f: &str| fields.get(&format!("{}:{f}", e.name)).and_then(|v| v.parse::<u64>().ok());
                    EndpointStatus {
                        name: e.name.clone(),
                        url: e.url.clone(),
                        disabled: fields.contains_key(&format!("{}:disabled", e.name)),
                        delivered: num("delivered").unwrap_or(0),
                        failed_attempts: num("failed").unwrap_or(0),
                        given_up: num("given_up").unwrap_or(0),
                        last_error: fields.get(&format!("{}:last_error", e.name)).cloned(),
                        last_error_ms: num("last_error_ms"),
                        last_success_ms: num("last_success_ms"),
                        ..EndpointStatus::default()
                    }
                })
                .collect(),
            ..WebhookStatus::default()
        };
        let Ok((lanes, total)) = h.lanes(h.config.status_scan_rooms).await else { return status };
        status.rooms_scanned = u64::try_from(lanes.len()).unwrap_or(u64::MAX);
        status.truncated = total > status.rooms_scanned;
        let now = wall_ms();
        for (lane, _) in lanes {
            let Ok(peek) = h.peek(&lane, &names, 1).await else { continue };
            status.dropped += peek.dropped;
            for (s, p) in status.endpoints.iter_mut().zip(&peek.endpoints) {
                s.queue_depth += peek.next.saturating_sub(p.cursor);
                if let Some((_, _, ms, _)) = p.events.first().and_then(|e| parse_entry(e)) {
                    let age = now.saturating_sub(ms);
                    s.oldest_age_ms = Some(s.oldest_age_ms.map_or(age, |a| a.max(age)));
                }
                if let Ok(retry) = serde_json::from_str::<Retry>(&p.state) {
                    s.rooms_retrying += 1;
                    s.max_attempts = s.max_attempts.max(retry.attempts);
                    s.next_attempt_ms = Some(s.next_attempt_ms.map_or(retry.next_ms, |n| n.min(retry.next_ms)));
                }
            }
        }
        if h.redis.is_none() {
            status.dropped = h.memory.dropped();
        }
        status
    }

    /// Up to `limit` (1-1000) audit entries of `room` after the cursor `after`, oldest first.
    pub async fn audit(&self, room: &str, after: Option<&str>, limit: usize) -> Result<AuditPage, String> {
        let limit = limit.clamp(1, 1_000);
        let raw = match &self.0.redis {
            Some(r) => r.audit(room, after, limit).await.map_err(|e| e.to_string())?,
            None => {
                let after = after.map(|a| a.parse::<u64>().map_err(|_| "bad cursor".to_owned())).transpose()?;
                self.0.memory_audit.read(room, after, limit)
            }
        };
        let full = raw.len() == limit;
        let entries: Vec<AuditEntry> = raw
            .into_iter()
            .filter_map(|(id, text)| serde_json::from_str::<AuditEntry>(&text).ok().map(|e| AuditEntry { id, ..e }))
            .collect();
        let next = if full { entries.last().map(|e| e.id.clone()) } else { None };
        Ok(AuditPage { entries, next })
    }

    /// Delivers to an endpoint disabled by a `410` again (from its next queued event).
    pub async fn enable_endpoint(&self, name: &str) -> Result<(), String> {
        match &self.0.redis {
            Some(r) => r.hooks_clear(name, "disabled").await.map_err(|e| e.to_string())?,
            None => {
                self.0.memory_fields.lock().unwrap_or_else(PoisonError::into_inner).remove(&format!("{name}:disabled"));
            }
        }
        self.0.disabled.lock().unwrap_or_else(PoisonError::into_inner).remove(name);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EndpointConfig;

    fn hooks(tweak: impl FnOnce(&mut WebhooksConfig)) -> Hooks {
        let mut config = WebhooksConfig::default();
        config.endpoints.push(EndpointConfig {
            name: "app".into(),
            url: "http://127.0.0.1:9/".into(),
            secrets: vec!["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()],
            include: Vec::new(),
            exclude: vec!["hand.*".into()],
            timeout_ms: 1_000,
        });
        tweak(&mut config);
        Hooks::new(&config, &AuditConfig::default(), "n1", None)
    }

    #[test]
    fn filters_take_exact_types_and_prefixes() {
        let h = hooks(|c| c.endpoints[0].include = vec!["participant.*".into(), "room.ended".into()]);
        let ep = &h.endpoints[0];
        assert!(ep.wants("participant.joined"));
        assert!(ep.wants("room.ended"));
        assert!(!ep.wants("room.started"));
        assert!(known_pattern("participant.*") && known_pattern("node.drained") && !known_pattern("nope.*"));
        let h = hooks(|_| {});
        assert!(!h.endpoints[0].wants("hand.raised") && h.endpoints[0].wants("participant.left"));
    }

    #[test]
    fn backoff_follows_the_schedule_with_jitter_and_retry_after() {
        let h = hooks(|c| {
            c.retry_schedule_ms = vec![1_000, 10_000];
            c.retry_jitter = 0.2;
            c.max_retry_after_ms = 60_000;
        });
        for _ in 0..100 {
            let d = h.backoff(1, None).expect("first retry");
            assert!((800..=1_200).contains(&d.as_millis()), "{d:?}");
            let d = h.backoff(2, None).expect("second retry");
            assert!((8_000..=12_000).contains(&d.as_millis()), "{d:?}");
        }
        assert_eq!(h.backoff(1, Some(Duration::from_secs(30))), Some(Duration::from_secs(30)));
        assert_eq!(h.backoff(1, Some(Duration::from_secs(3_600))), Some(Duration::from_secs(60)));
        assert_eq!(h.backoff(3, None), None, "schedule exhausted: given up");
    }

    #[test]
    fn iso_timestamps() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_614_265_330_123), "2021-02-25T15:02:10.123Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn public_sign_uses_the_hubs_signatures() {
        let sig = sign(
            &["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig.as_deref(), Ok("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="));
        assert!(sign(&["whsec_AAAA"], "msg_1", 1, b"{}").is_err());
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
    }

    /// A receiver on 127.0.0.1 answering each request with the next of `statuses` (then 204); returns its URL and
    /// the `webhook-id`s it got, in order.
    async fn receiver(statuses: Vec<u16>) -> (String, Arc<Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let got = Arc::new(Mutex::new(Vec::new()));
        let ids = Arc::clone(&got);
        tokio::spawn(async move {
            let mut statuses = statuses.into_iter();
            loop {
                let Ok((mut conn, _)) = listener.accept().await else { return };
                let mut buf = Vec::new();
                loop {
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(str::to_owned))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            let id = text
                                .lines()
                                .find_map(|l| l.strip_prefix("webhook-id: ").map(str::to_owned))
                                .unwrap_or_default();
                            ids.lock().expect("ids").push(id);
                            let status = statuses.next().unwrap_or(204);
                            let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
                            if conn.write_all(reply.as_bytes()).await.is_err() {
                                break;
                            }
                            buf.drain(..end + 4 + len);
                            continue;
                        }
                    }
                    let mut chunk = [0u8; 4096];
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            }
        });
        (url, got)
    }

    /// A run delivers a window in order, stores the cursor once over its successes, and on a failure stores the
    /// successes before it and the failed event's retry state; the deliveries are counted.
    #[tokio::test]
    async fn a_run_delivers_in_order_and_stores_its_progress() {
        let (url, got) = receiver(vec![204, 204, 204, 500]).await;
        let h = hooks(|c| {
            c.endpoints[0].url = url;
            c.retry_schedule_ms = vec![60_000];
        });
        let events: Vec<String> = (0..6).map(|i| entry(&format!("e{i}"), "participant.joined", 1, "{}")).collect();
        let hand = entry("h", "hand.raised", 1, "{}");
        let queued = [&events[..2], &[hand], &events[2..]].concat();
        h.memory.append("r", queued, 100, 100);
        let peek = h.memory.peek("r", &["app"], WINDOW).endpoints.remove(0);
        assert_eq!(peek.events.len(), 7);
        let until = Instant::now() + Duration::from_secs(30);
        assert!(matches!(deliver_run(&h, "r", &h.endpoints[0], peek, until).await, RunEnd::Progressed));
        // e0, e1, (the hand is filtered out), e2 delivered; e3 failed: the cursor is at e3 with its retry state.
        assert_eq!(*got.lock().expect("ids"), ["e0", "e1", "e2", "e3"]);
        let p = h.memory.peek("r", &["app"], 1).endpoints.remove(0);
        assert_eq!((p.cursor, p.events), (4, vec![events[3].clone()]));
        let retry: Retry = serde_json::from_str(&p.state).expect("retry state");
        assert_eq!(retry.attempts, 1);
        assert!(retry.next_ms > wall_ms());
        let fields = h.fields().await;
        assert_eq!(fields.get("app:delivered").map(String::as_str), Some("3"));
        assert_eq!(fields.get("app:failed").map(String::as_str), Some("1"));
        // Not before its next attempt; then the rest in one run.
        let peek = h.memory.peek("r", &["app"], WINDOW).endpoints.remove(0);
        assert!(matches!(deliver_run(&h, "r", &h.endpoints[0], peek.clone(), until).await, RunEnd::Waiting(_)));
        let due = Retry { next_ms: 0, ..retry };
        h.memory.advance("r", "app", None, &serde_json::to_string(&due).expect("json"), &["app"]);
        let peek = h.memory.peek("r", &["app"], WINDOW).endpoints.remove(0);
        assert!(matches!(deliver_run(&h, "r", &h.endpoints[0], peek, until).await, RunEnd::Progressed));
        assert_eq!(*got.lock().expect("ids"), ["e0", "e1", "e2", "e3", "e3", "e4", "e5"]);
        let p = h.memory.peek("r", &["app"], 1).endpoints.remove(0);
        assert_eq!((p.cursor, p.state.as_str(), p.events.len()), (7, "", 0));
        assert_eq!(h.fields().await.get("app:delivered").map(String::as_str), Some("6"));
    }

    /// Audience joins under each policy: one event each, none, or a summary per interval.
    #[test]
    fn audience_policies() {
        use podium_room::{Join, ParticipantId, Role, Room, RoomConfig};
        let run = |policy: AudiencePolicy, interval: u64| -> Vec<String> {
            let h = hooks(|c| {
                c.audience = policy;
                c.audience_interval_ms = interval;
            });
            let mut room = Room::new("r", RoomConfig::default(), 1_000);
            let mut committed: Option<RoomState> = None;
            let mut state = RoomHooks::default();
            let mut kinds = Vec::new();
            for (i, id) in ["m", "a", "b", "c"].into_iter().enumerate() {
                let ceiling = if i == 0 { Role::Moderator } else { Role::Audience };
                room.handle_join(1_000, Join::new(ParticipantId::new(id), id, ceiling, None)).expect("join");
                let outputs: Vec<_> = std::iter::from_fn(|| room.poll_output()).collect();
                let changes = room.take_changes().expect("changes");
                if let Some(at) = h.at_commit(&mut state, "r", committed.as_ref(), &changes, &outputs, None) {
                    kinds.extend(at.extras.hooks.iter().map(|e| parse_entry(e).expect("entry").1.to_owned()));
                    assert!(
                        at.extras.hooks.iter().all(|e| parse_entry(e).is_some_and(|(_, _, _, b)| b.len() < 20_480))
                    );
                }
                match &mut committed {
                    Some(s) => s.apply(&changes),
                    None => committed = RoomState::created_by(&changes),
                }
            }
            kinds
        };
        let stage = ["room.started", "participant.joined"];
        assert_eq!(run(AudiencePolicy::On, 1), [&stage[..], &["participant.joined"; 3]].concat());
        assert_eq!(run(AudiencePolicy::Off, 1), stage);
        // The first audience join is summarised at once; the next two wait for the interval.
        assert_eq!(run(AudiencePolicy::Coalesced, 3_600_000), [&stage[..], &["audience.summary"]].concat());
        assert_eq!(run(AudiencePolicy::Coalesced, 0), [&stage[..], &["audience.summary"; 3]].concat());
    }

    #[test]
    fn a_chat_deletion_carries_the_message_id_author_actor_and_reason() {
        use podium_room::{Actor, Command, Join, ParticipantId, Role, Room, RoomConfig};
        let h = hooks(|_| {});
        let mut room = Room::new("r", RoomConfig::default(), 1_000);
        let mut committed: Option<RoomState> = None;
        let mut state = RoomHooks::default();
        let mut bodies = Vec::new();
        let (m, a) = (ParticipantId::new("m"), ParticipantId::new("a"));
        for step in 0..4 {
            match step {
                0 => drop(room.handle_join(1_000, Join::new(m.clone(), "M", Role::Moderator, None))),
                1 => drop(room.handle_join(1_000, Join::new(a.clone(), "Ann", Role::Audience, None))),
                2 => drop(room.handle_command(1_001, &a, Command::SendChat { text: "buy now".into() })),
                _ => {
                    let by = Actor::Participant(m.clone());
                    drop(room.handle_command_as(1_002, &by, Command::DeleteChat { message_id: 1 }, Some("spam")));
                }
            }
            let outputs: Vec<_> = std::iter::from_fn(|| room.poll_output()).collect();
            let changes = room.take_changes().expect("changes");
            let cause = Cause { reason: Some("spam".into()), ..Cause::websocket(&m) };
            if let Some(at) = h.at_commit(&mut state, "r", committed.as_ref(), &changes, &outputs, Some(&cause)) {
                bodies.extend(at.extras.hooks.iter().map(|e| parse_entry(e).expect("entry").3.to_owned()));
            }
            match &mut committed {
                Some(s) => s.apply(&changes),
                None => committed = RoomState::created_by(&changes),
            }
        }
        let deleted: Vec<serde_json::Value> = bodies
            .iter()
            .map(|b| serde_json::from_str(b).expect("json"))
            .filter(|v: &serde_json::Value| v["type"] == "chat.message_deleted")
            .collect();
        assert_eq!(deleted.len(), 1, "{bodies:?}");
        let data = &deleted[0]["data"];
        assert_eq!(
            (&data["message_id"], &data["author"], &data["participant"]["name"], &data["actor"], &data["reason"]),
            (
                &serde_json::json!(1),
                &serde_json::json!("a"),
                &serde_json::json!("Ann"),
                &serde_json::json!("m"),
                &serde_json::json!("spam")
            ),
            "{data}"
        );
    }
}
