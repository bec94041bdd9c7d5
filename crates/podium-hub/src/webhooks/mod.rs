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
use podium_store::{CommitExtras, LanePeek, RedisStore, StoreError};
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
        let (derived, audience) = derive::derive(before, changes, outputs, cause);
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
                    participant: d.participant,
                    actor: d.actor,
                    reason: d.reason,
                    via: via.clone(),
                    settings: d.settings,
                    ..WebhookData::default()
                };
                add(d.kind, data);
            }
            let due = state.summary_at.is_none_or(|at| now.saturating_sub(at) >= self.config.audience_interval_ms);
            if self.config.audience == AudiencePolicy::Coalesced && due && state.joined + state.left > 0 {
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

    async fn peek(&self, lane: &str, endpoints: &[&str]) -> Result<LanePeek, StoreError> {
        match &self.redis {
            Some(r) => r.hooks_peek(lane, endpoints).await,
            None => Ok(self.memory.peek(lane, endpoints)),
        }
    }

    /// `None`: the lane's lease was lost.
    async fn advance(
        &self,
        lane: &str,
        endpoint: &str,
        cursor: Option<u64>,
        retry: Option<&Retry>,
    ) -> Result<Option<u64>, StoreError> {
        let state = retry.map(|r| serde_json::to_string(r).unwrap_or_default()).unwrap_or_default();
        let active = self.active();
        match &self.redis {
            Some(r) => r.hooks_advance(lane, &self.node, endpoint, cursor, &state, &active).await,
            None => Ok(Some(self.memory.advance(lane, endpoint, cursor, &state, &active))),
        }
    }

    /// The lane is caught up: forget it (if its index entry is stale) and give its lease up.
    async fn finish(&self, lane: &str) {
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

/// Delivers one lane's events, in order per endpoint, until it is caught up or its lease is lost.
async fn deliver_lane(hooks: &Hooks, lane: &str) {
    let renew_every = Duration::from_millis(hooks.config.lease_ms / 3);
    let mut renewed = Instant::now();
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
        let active = hooks.active();
        let peek = match hooks.peek(lane, &active).await {
            Ok(p) => p,
            Err(e) => {
                debug!(error = %e, lane, "reading a webhook lane failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if peek.endpoints.iter().all(|(_, _, item)| item.is_none()) {
            hooks.finish(lane).await;
            return;
        }
        let now = wall_ms();
        let mut wait_until: Option<u64> = None;
        let mut attempts = Vec::new();
        for (name, (cursor, state, item)) in active.iter().zip(&peek.endpoints) {
            let Some(item) = item else { continue };
            let Some(ep) = hooks.endpoints.iter().find(|e| e.name == *name) else { continue };
            let retry: Retry = serde_json::from_str(state).unwrap_or_default();
            let Some((id, kind, _, body)) = parse_entry(item) else {
                warn!(lane, endpoint = %name, "skipping an unreadable outbox entry");
                attempts.push((ep, *cursor, retry, None));
                continue;
            };
            if !ep.wants(kind) {
                attempts.push((ep, *cursor, retry, None));
            } else if retry.next_ms > now {
                wait_until = Some(wait_until.map_or(retry.next_ms, |w| w.min(retry.next_ms)));
            } else {
                attempts.push((ep, *cursor, retry, Some((id.to_owned(), body.to_owned()))));
            }
        }
        let sent = futures_util::future::join_all(attempts.into_iter().map(|(ep, cursor, retry, send)| async move {
            let outcome = match &send {
                Some((id, body)) => Some(hooks.send(ep, id, body).await),
                None => None,
            };
            (ep, cursor, retry, outcome)
        }))
        .await;
        let progressed = !sent.is_empty();
        for (ep, cursor, mut retry, outcome) in sent {
            let now = wall_ms();
            let advanced = match outcome {
                None => hooks.advance(lane, &ep.name, Some(cursor + 1), None).await,
                Some(Outcome::Delivered) => {
                    hooks.record(&ep.name, &[("delivered", 1)], &[("last_success_ms", now.to_string())]).await;
                    hooks.advance(lane, &ep.name, Some(cursor + 1), None).await
                }
                Some(Outcome::Gone) => {
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
                    Ok(Some(0))
                }
                Some(Outcome::Failed { error, retry_after }) => {
                    retry.attempts += 1;
                    let fields = [("last_error", format!("{lane}: {error}")), ("last_error_ms", now.to_string())];
                    match hooks.backoff(retry.attempts, retry_after) {
                        Some(delay) => {
                            retry.next_ms = now + u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                            retry.error = Some(error);
                            debug!(lane, endpoint = %ep.name, attempts = retry.attempts, ?delay, "webhook delivery failed; retrying later");
                            hooks.record(&ep.name, &[("failed", 1)], &fields).await;
                            hooks.advance(lane, &ep.name, None, Some(&retry)).await
                        }
                        None => {
                            warn!(lane, endpoint = %ep.name, attempts = retry.attempts, "webhook given up after the whole retry schedule");
                            hooks.record(&ep.name, &[("failed", 1), ("given_up", 1)], &fields).await;
                            hooks.advance(lane, &ep.name, Some(cursor + 1), None).await
                        }
                    }
                }
            };
            match advanced {
                Ok(Some(_)) => {}
                Ok(None) => {
                    info!(lane, "lost a webhook lane's lease; another hub delivers it");
                    return;
                }
                Err(e) => debug!(error = %e, lane, "storing webhook progress failed (the attempt repeats)"),
            }
        }
        if !progressed {
            let cap = renew_every.min(Duration::from_millis(hooks.config.poll_interval_ms.max(1) * 5));
            let wait = wait_until.map_or(cap, |w| Duration::from_millis(w.saturating_sub(wall_ms())).min(cap));
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = hooks.wake.notified() => {}
            }
        }
    }
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
            let Ok(peek) = h.peek(&lane, &names).await else { continue };
            status.dropped += peek.dropped;
            for (s, (cursor, state, item)) in status.endpoints.iter_mut().zip(&peek.endpoints) {
                s.queue_depth += peek.next.saturating_sub(*cursor);
                if let Some((_, _, ms, _)) = item.as_deref().and_then(parse_entry) {
                    let age = now.saturating_sub(ms);
                    s.oldest_age_ms = Some(s.oldest_age_ms.map_or(age, |a| a.max(age)));
                }
                if let Ok(retry) = serde_json::from_str::<Retry>(state) {
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
}
