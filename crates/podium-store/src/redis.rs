//! The Redis store: rooms live in Redis (or Redis Cluster), so they survive hub restarts and can be shared by hubs.
//!
//! # Keys
//!
//! Every key of room `R` carries the hash tag `{R}`, so one room's keys live on one Cluster slot and a Lua script
//! may touch them all; the node registry is one key of its own:
//!
//! | key                       | type   | contents                                                                 |
//! |---------------------------|--------|--------------------------------------------------------------------------|
//! | `podium:{R}:meta`         | hash   | `seq`: the room's sequence number (decimal); `fields`: room fields; `info`: description and pinned link (written only when they change; absent: none) |
//! | `podium:{R}:participants` | hash   | identity → participant record                                            |
//! | `podium:{R}:bans`         | set    | banned identities                                                        |
//! | `podium:{R}:guests`       | set    | the closed room's guest list                                             |
//! | `podium:{R}:chat`         | zset   | chat history: message records scored by id (trimmed by the room's commits) |
//! | `podium:{R}:owner`        | string | node id of the hub running the room's timers and media: a lease (`PX`)   |
//! | `podium:{R}:media`        | string | `<epoch> <node>` (decimal epoch, a space, node id): no expiry            |
//! | `podium:{R}:presence`     | hash   | identity → node id of the hub holding that participant's connection      |
//! | `podium:{R}:claims`       | hash   | node id → `<since_ms> <last_ms>`: who claims the lease since when (1 h)  |
//! | `podium:nodes`            | hash   | node id → `{"url": string or null, "draining": bool, "seen_ms": ms}`     |
//! | `podium:held:<node>`      | set    | rooms whose lease hub `<node>` holds (60 s past its last heartbeat)      |
//!
//! Records are JSON (see `codec.rs`). A room exists exactly when its `meta` hash has a `seq`. The media epoch
//! grows by one whenever the room's lease goes to a node other than the one the media key names
//! ([`RedisStore::claim_media`]); a lapsed lease prefers that node for a while (the claims hash), so a Redis outage
//! moves no media. Presence is written by commits ([`RedisStore::commit_present`]) and, for a join that changed
//! nothing, by [`RedisStore::present`]. The node
//! registry is one key (no hash tag needed), stamped with Redis's clock by [`RedisStore::heartbeat`] and pruned by
//! [`RedisStore::nodes`].
//!
//! Pub/sub channels: `podium:{R}:events` (room `R`'s announcements, see [`crate::bus`]) and `podium:node:<id>`
//! (messages for hub `<id>`, [`RedisStore::send_to_node`]). A hub's one pub/sub connection
//! ([`RedisStore::subscribe`]) subscribes to its node channel, and to the channel of each room it runs a task for
//! ([`Watcher`]): plain `SUBSCRIBE`s, no pattern, so a `PUBLISH` reaches only the hubs running the room.
//!
//! # Round trips
//!
//! `commit` is one `EVALSHA` of [`COMMIT_LUA`]: it compares the stored `seq` with the commit's base, and only then
//! writes every change and the new `seq`, atomically (a script runs alone; with `appendfsync always` its effects
//! reach the AOF before the reply). After Redis restarted (script cache empty) the first commit on a connection costs
//! two more round trips (`NOSCRIPT`, `SCRIPT LOAD`, `EVALSHA` again). `load` is one `EVALSHA` of [`LOAD_LUA`] (a
//! consistent snapshot); `remove` is one `DEL` of the room's nine keys (with its lease, media epoch, presence and
//! claims).
//!
//! # Failures
//!
//! Every Redis error is [`StoreError::Unavailable`]: nothing panics, and the connection reconnects by itself
//! (`ConnectionManager`, or the cluster client's own reconnection). With Sentinel (`redis+sentinel://` URLs) an
//! outage or a `READONLY` reply (the master was demoted) also drops the connection, and the next one goes to the
//! master the sentinels name then; until a failover has happened that fails and the breaker stays open. A commit
//! whose connection dropped after sending, or whose reply did not come in time, may or may not have been applied
//! (a stalled Redis runs it when it wakes); the writer learns which from its next commit (a
//! [`StoreError::Conflict`] whose `found` is the new sequence number) or by loading.
//!
//! Redis being down must not hold up the callers (a room task waits for its commits): every operation is bounded
//! by [`RedisOptions::response_timeout`], and a circuit breaker fails operations at once (without sending them)
//! while Redis is known to be unreachable. An outage (a connection error, a timeout, `LOADING`) opens the breaker
//! for [`RedisOptions::breaker_open`]; a background probe (`PING` every [`RedisOptions::probe_interval`]) keeps it
//! open while Redis stays unreachable and closes it as soon as Redis answers. Should the probe not run (no
//! multi-threaded runtime to drive it), the breaker lets a trial operation through once the period has passed.
//! [`RedisStore::open`] does not need Redis to be up: the first connection is made by the probe (or a trial).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster_async::ClusterConnection;
use ::redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use ::redis::{Cmd, Pipeline, RedisError, RedisFuture, Script, Value};
use podium_room::{Changes, ParticipantId, RoomState};

use crate::bus::BusMessage;
use crate::codec;
use crate::{RoomStore, StoreError};

pub mod leases;
mod op_stats;
pub mod outbox;

pub use self::op_stats::{OP_LATENCY_BOUNDS, RedisOpStats};
use outbox::CommitExtras;

/// The commit script. KEYS: meta, participants, bans, guests, presence, chat. ARGV (a fixed header of twelve, then
/// variable-length lists in header order):
///
/// | ARGV | contents |
/// |------|----------|
/// | 1 | base seq |
/// | 2 | new seq |
/// | 3 | encoded room fields (empty: unchanged) |
/// | 4 | number of removed ids |
/// | 5 | number of upserted participants |
/// | 6 | number of bans (-1: unchanged) |
/// | 7 | number of guests (-1: unchanged) |
/// | 8 | number of announcements (0 or 1) |
/// | 9 | number of presence entries (0 or 1) |
/// | 10 | encoded room info (description, pinned link; empty: unchanged), the `info` entry of `meta` |
/// | 11 | number of chat messages posted |
/// | 12 | number of chat messages gone (deleted or trimmed) |
///
/// From ARGV 13 on: the removed ids, the upserted (id, record) pairs, the bans, the guests, the announcement
/// (channel, message) pairs, the presence (identity, node) pairs, the chat messages posted (id, record) pairs
/// (`ZADD chat id record`), the ids of chat messages gone (`ZREMRANGEBYSCORE chat id id`).
///
/// With the optional KEYS 7-9 (the room's webhook outbox list, its outbox state hash and its audit stream, see
/// the `outbox` module) the ARGV end with: the number of outbox entries and the outbox's cap, the entries (appended
/// to the list; the state's `next` counts them; past the cap the oldest are trimmed, `base` moves up and `dropped`
/// counts them), then the number of audit entries, the stream's `MAXLEN ~`, the retention age in ms (0: by count
/// only) and the entries (`XADD` field `e`; with an age, trimmed by `MINID ~` and the key expires after it). So the
/// room's webhook events and audit entries are written exactly when, and in the same atomic step as, its transition.
///
/// After the checks and writes it sets each presence entry (`HSET presence identity node`), then removes every
/// removed id from the presence hash (so a removed participant never stays present), then publishes the
/// announcement (so announcements leave in commit order, and only for commits that took place). Creating a room
/// (no stored `seq`) first deletes whatever its other keys held. Returns `{"ok"}`, or `{"conflict"}` (no such room)
/// / `{"conflict", found_seq}`.
pub const COMMIT_LUA: &str = r"
local found = redis.call('HGET', KEYS[1], 'seq')
if not found then
  if ARGV[1] ~= '0' or ARGV[3] == '' then return {'conflict'} end
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
elseif found ~= ARGV[1] then
  return {'conflict', found}
end
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], 'seq', ARGV[2], 'fields', ARGV[3])
else
  redis.call('HSET', KEYS[1], 'seq', ARGV[2])
end
local n_removed, n_upserted = tonumber(ARGV[4]), tonumber(ARGV[5])
local n_bans, n_guests = tonumber(ARGV[6]), tonumber(ARGV[7])
local n_announced, n_present = tonumber(ARGV[8]), tonumber(ARGV[9])
local n_chat, n_chat_gone = tonumber(ARGV[11]), tonumber(ARGV[12])
if ARGV[10] ~= '' then
  redis.call('HSET', KEYS[1], 'info', ARGV[10])
end
local i = 13
local removed_at = i
for _ = 1, n_removed do
  redis.call('HDEL', KEYS[2], ARGV[i]); i = i + 1
end
for _ = 1, n_upserted do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]); i = i + 2
end
if n_bans >= 0 then
  redis.call('DEL', KEYS[3])
  for _ = 1, n_bans do redis.call('SADD', KEYS[3], ARGV[i]); i = i + 1 end
end
if n_guests >= 0 then
  redis.call('DEL', KEYS[4])
  for _ = 1, n_guests do redis.call('SADD', KEYS[4], ARGV[i]); i = i + 1 end
end
local announced_at = i
i = i + 2 * n_announced
for _ = 1, n_present do
  redis.call('HSET', KEYS[5], ARGV[i], ARGV[i + 1]); i = i + 2
end
for _ = 1, n_chat do
  redis.call('ZADD', KEYS[6], ARGV[i], ARGV[i + 1]); i = i + 2
end
for _ = 1, n_chat_gone do
  redis.call('ZREMRANGEBYSCORE', KEYS[6], ARGV[i], ARGV[i]); i = i + 1
end
for j = removed_at, removed_at + n_removed - 1 do
  redis.call('HDEL', KEYS[5], ARGV[j])
end
for j = announced_at, announced_at + 2 * n_announced - 1, 2 do
  redis.call('PUBLISH', ARGV[j], ARGV[j + 1])
end
if KEYS[7] then
  local n_hooks, cap = tonumber(ARGV[i]), tonumber(ARGV[i + 1]); i = i + 2
  if n_hooks > 0 then
    for _ = 1, n_hooks do redis.call('RPUSH', KEYS[7], ARGV[i]); i = i + 1 end
    local tail = redis.call('HINCRBY', KEYS[8], 'next', n_hooks)
    local base = tonumber(redis.call('HGET', KEYS[8], 'base') or '0')
    if tail - base > cap then
      redis.call('LTRIM', KEYS[7], tail - base - cap, -1)
      redis.call('HSET', KEYS[8], 'base', tail - cap)
      redis.call('HINCRBY', KEYS[8], 'dropped', tail - base - cap)
    end
  end
  local n_audit, max_len, max_age = tonumber(ARGV[i]), ARGV[i + 1], tonumber(ARGV[i + 2]); i = i + 3
  for _ = 1, n_audit do
    redis.call('XADD', KEYS[9], 'MAXLEN', '~', max_len, '*', 'e', ARGV[i]); i = i + 1
  end
  if n_audit > 0 and max_age > 0 then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    redis.call('XTRIM', KEYS[9], 'MINID', '~', string.format('%d', now - max_age))
    redis.call('PEXPIRE', KEYS[9], max_age)
  end
end
return {'ok'}
";

/// The load script. KEYS: meta, participants, bans, guests, chat. Returns nil (no such room) or `{seq, fields,
/// {id, record, ...}, bans, guests, info, chat}` (`info` empty for a room stored before it; `chat` the message
/// records in id order).
pub const LOAD_LUA: &str = r"
local seq = redis.call('HGET', KEYS[1], 'seq')
if not seq then return false end
local fields = redis.call('HGET', KEYS[1], 'fields') or ''
local info = redis.call('HGET', KEYS[1], 'info') or ''
return {seq, fields, redis.call('HGETALL', KEYS[2]), redis.call('SMEMBERS', KEYS[3]), redis.call('SMEMBERS', KEYS[4]),
  info, redis.call('ZRANGE', KEYS[5], 0, -1)}
";

/// Records which node holds a participant's connection without a transition (a session taken over while still
/// connected changes nothing in the room), then publishes an announcement. KEYS: participants, presence. ARGV:
/// identity, node, then optionally the announcement's channel and message. The presence entry is set only while the
/// participant is in the room (a participant removed meanwhile never becomes present again). Returns 1 when it was
/// set, 0 when the participant is not in the room.
pub const PRESENT_LUA: &str = r"
local set = 0
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]); set = 1
end
if ARGV[3] then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
return set
";

/// Claims or renews the room's timer lease. KEYS: the owner key. ARGV: node id, lease in ms. Returns 1 when the
/// node holds the lease (now renewed), 0 when another node does.
pub const CLAIM_LUA: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2]); return 1
elseif not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]); return 1
end
return 0
";

/// Releases the room's timer lease if this node holds it, and forgets this node's watch of the lease (so the next
/// claimer need not wait for it, see [`CLAIM_MEDIA_LUA`]). KEYS: the owner key, the claims key. ARGV: node id.
pub const RELEASE_LUA: &str = r"
if KEYS[2] then redis.call('HDEL', KEYS[2], ARGV[1]) end
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Claims or renews the room's lease and tells its media epoch ([`RedisStore::claim_media`]). KEYS: the owner key,
/// the media key, the claims key. ARGV: node id, lease in ms, contact in ms, grace in ms, watch (`1`: record the
/// claimer's watch even when it holds the lease; `0`: not then). Returns `{1, node, epoch}`
/// when the node holds the lease (now renewed; the media key names it, with a new epoch if it named another node or
/// none), `{0, holder, epoch}` when it does not: another node holds the lease, or the lease lapsed but its last
/// holder (the media key's node, named as `holder`) may still come back for it (below). The media key is unchanged
/// then; epoch 0 when there is none. An unreadable media value counts as none.
///
/// A claim records the claimer's *watch* in the claims hash: `"<since_ms> <last_ms>"` by Redis's `TIME`, where
/// `since_ms` is when its current run of claims began (a gap longer than the contact window between two claims
/// starts a new run: the claimer, or Redis, was away); the hash's hour-long expiry is renewed by a node's first
/// claim in each minute. The exception is the holder's renewal without `watch` (ARGV 5 is `0`; the lease and the
/// media key name the claimer): three commands, the lease extended and nothing else written. A hub's batched
/// renewals ask for the watch every 30 s ([`RedisStore::claim_media_many`]), so the holder's `last_ms` that others
/// compare with is at most that old (plus a renewal). A lapsed lease whose media node is another node goes
/// to the claimer only when the claimer was watching while that node still renewed (its run began before the media
/// node's last recorded watch plus the lease: the media node stopped renewing while Redis answered, so it is dead or
/// cut off), or when the claimer has been watching for the grace window (the media node had that long to come back
/// and did not), or when the media node left no watch (it released the lease, or an older build held it). So after
/// a Redis outage, which every hub's run spans, the media node re-claims its own lease, while a hub killed with
/// Redis up loses it as soon as it lapses to any hub that has been claiming for the grace window (a hub that only
/// began claiming within the last 30 s may wait out the rest of that window).
pub const CLAIM_MEDIA_LUA: &str = r"
local holder = redis.call('GET', KEYS[1])
local epoch, media_node = 0, false
local media = redis.call('GET', KEYS[2])
if media then
  local space = string.find(media, ' ', 1, true)
  if space then
    epoch = tonumber(string.sub(media, 1, space - 1)) or 0
    media_node = string.sub(media, space + 1)
  end
end
if ARGV[5] == '0' and holder == ARGV[1] and media_node == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, ARGV[1], epoch}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease, contact, grace = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local since = now
local refresh = true
local mine = redis.call('HGET', KEYS[3], ARGV[1])
if mine then
  local s, last = string.match(mine, '^(%d+) (%d+)$')
  if s and now - tonumber(last) <= contact then since = tonumber(s) end
  if last and math.floor(tonumber(last) / 60000) == math.floor(now / 60000) then refresh = false end
end
redis.call('HSET', KEYS[3], ARGV[1], string.format('%d %d', since, now))
if refresh then redis.call('PEXPIRE', KEYS[3], 3600000) end
if holder and holder ~= ARGV[1] then return {0, holder, epoch} end
if not holder and media_node and media_node ~= ARGV[1] then
  local theirs = redis.call('HGET', KEYS[3], media_node)
  if theirs then
    local _, last = string.match(theirs, '^(%d+) (%d+)$')
    if last and since > tonumber(last) + lease and now < since + grace then return {0, media_node, epoch} end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if media_node ~= ARGV[1] then
  epoch = epoch + 1
  redis.call('SET', KEYS[2], string.format('%d', epoch) .. ' ' .. ARGV[1])
end
return {1, ARGV[1], epoch}
";

/// Records a node's heartbeat. KEYS: the node registry ([`NODES_KEY`]). ARGV: node id, the node's JSON record
/// without its closing brace and ending in `"seen_ms":`. Appends Redis's own `TIME` in milliseconds and the brace.
pub const HEARTBEAT_LUA: &str = r"
local t = redis.call('TIME')
local ms = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ms .. '}')
return 1
";

/// Lists the node registry. KEYS: the node registry ([`NODES_KEY`]). ARGV: the age in ms beyond which an entry is
/// deleted. Returns `{now_ms, {id, record, ...}}` (Redis's `TIME`; the entries kept). Entries whose `seen_ms`
/// cannot be read are returned as they are (never deleted).
pub const NODES_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local all = redis.call('HGETALL', KEYS[1])
local kept = {}
for i = 1, #all, 2 do
  local ok, record = pcall(cjson.decode, all[i + 1])
  if ok and type(record) == 'table' and type(record.seen_ms) == 'number' and now - record.seen_ms > limit then
    redis.call('HDEL', KEYS[1], all[i])
  else
    kept[#kept + 1] = all[i]
    kept[#kept + 1] = all[i + 1]
  end
end
return {now, kept}
";

/// The node registry: a hash, node id → JSON `{"url": string or null, "draining": bool, "seen_ms": Redis TIME in
/// ms}` ([`RedisStore::heartbeat`]). One key, so it works unchanged on a Redis Cluster.
pub const NODES_KEY: &str = "podium:nodes";

/// The key naming the node that runs `room`'s timers and media (a lease: it expires unless renewed).
pub fn owner_key(room: &str) -> String {
    format!("podium:{{{room}}}:owner")
}

/// The key holding `room`'s media epoch and node, `"<epoch> <node>"` (no expiry; see [`RedisStore::claim_media`]).
pub fn media_key(room: &str) -> String {
    format!("podium:{{{room}}}:media")
}

/// The hash of `room`'s connected participants: identity → node id of the hub holding the connection (see
/// [`RedisStore::commit_present`]).
pub fn presence_key(room: &str) -> String {
    format!("podium:{{{room}}}:presence")
}

/// The sorted set of `room`'s chat history: message records scored by id (see [`COMMIT_LUA`]).
pub fn chat_key(room: &str) -> String {
    format!("podium:{{{room}}}:chat")
}

/// The hash of the hubs watching `room`'s lease: node id → `"<since_ms> <last_ms>"` (see [`CLAIM_MEDIA_LUA`]).
pub fn claims_key(room: &str) -> String {
    format!("podium:{{{room}}}:claims")
}

/// The index of stored rooms (a sorted set, all scores 0, so members sort by name): for listing rooms. It is its own
/// key (not in any room's slot), so it is written beside the commit, not in it: a room is added before its first
/// commit and removed after it is forgotten, and a listing skips (and cleans) names whose room is gone.
pub const ROOMS_KEY: &str = "podium:rooms";

/// The four keys of `room`, in the order the scripts take them: meta, participants, bans, guests.
pub fn room_keys(room: &str) -> [String; 4] {
    // The keys' suffixes contain no `}:`, so distinct rooms never share a key; the hash tag is the text between the
    // first `{` and the next `}`, the same for all four keys of a room whatever its name.
    ["meta", "participants", "bans", "guests"].map(|k| format!("podium:{{{room}}}:{k}"))
}

/// Timeouts and reconnection of a [`RedisStore`].
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// How long to wait for a TCP connection to Redis.
    pub connect_timeout: Duration,
    /// How long to wait for a reply before the command fails as unavailable.
    pub response_timeout: Duration,
    /// How often a dropped single-node connection is retried before a command fails (it is retried again on the
    /// next command).
    pub reconnect_retries: usize,
    /// After an outage, how long operations fail at once without being sent (extended while the probe fails).
    pub breaker_open: Duration,
    /// How often the background probe checks whether Redis answers again.
    pub probe_interval: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_millis(500),
            response_timeout: Duration::from_millis(500),
            reconnect_retries: 1,
            breaker_open: Duration::from_secs(1),
            probe_interval: Duration::from_millis(250),
        }
    }
}

/// How to (re)connect.
enum Target {
    Single(::redis::Client),
    Cluster(Box<::redis::cluster::ClusterClient>),
    /// The master of a Sentinel-monitored group, looked up through the sentinels on every (re)connection. The
    /// client keeps its connections to the sentinels; the lock serialises lookups.
    Sentinel(Box<tokio::sync::Mutex<SentinelClient>>),
}

impl Target {
    /// A client for a pub/sub connection: the server itself, a cluster's first seed node (`PUBLISH` reaches every
    /// node), or the Sentinel group's current master.
    async fn pubsub_client(&self, pubsub_url: &str) -> Result<::redis::Client, RedisError> {
        match self {
            Self::Single(_) | Self::Cluster(_) => ::redis::Client::open(pubsub_url),
            Self::Sentinel(sentinel) => sentinel.lock().await.async_get_client().await,
        }
    }
}

/// The connection (made lazily) and the circuit breaker, shared by a store's clones and its probe.
struct Link {
    target: Target,
    options: RedisOptions,
    /// `None` until the first connection succeeds; afterwards the connection reconnects by itself.
    conn: Mutex<Option<Conn>>,
    /// While set and in the future, operations fail at once.
    open_until: Mutex<Option<Instant>>,
    /// A probe task is running.
    probing: AtomicBool,
    /// Latencies and failures of operations (for metrics).
    ops: op_stats::OpCounters,
}

impl Link {
    /// True for a Redis Cluster (a pipeline there must stay within one slot).
    fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster(_))
    }

    fn lock_conn(&self) -> std::sync::MutexGuard<'_, Option<Conn>> {
        // Only a clone or an assignment happens under this lock: a poisoned lock still holds a whole value.
        self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_open(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        // As above: a plain assignment or read.
        self.open_until.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// True while the breaker fails operations at once.
    fn is_open(&self) -> bool {
        self.lock_open().is_some_and(|until| Instant::now() < until)
    }

    /// How a single-node connection (to a server, or to a Sentinel group's master) reconnects.
    fn manager_config(&self) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.options.connect_timeout))
            .set_response_timeout(Some(self.options.response_timeout))
            .set_number_of_retries(self.options.reconnect_retries)
            .set_max_delay(Duration::from_millis(200))
    }

    /// The longest a new connection may take: a connection and a reply, twice with Sentinel (a sentinel, then the
    /// master).
    fn establish_bound(&self) -> Duration {
        let once = self.options.connect_timeout + self.options.response_timeout;
        if matches!(self.target, Target::Sentinel(_)) { once * 2 } else { once }
    }

    /// Makes a new connection, bounded by [`Link::establish_bound`].
    async fn establish(&self) -> Result<Conn, StoreError> {
        let bound = self.establish_bound();
        let made = tokio::time::timeout(bound, async {
            match &self.target {
                Target::Single(client) => {
                    ConnectionManager::new_with_config(client.clone(), self.manager_config()).await.map(Conn::Single)
                }
                Target::Cluster(client) => client.get_async_connection().await.map(Conn::Cluster),
                Target::Sentinel(sentinel) => {
                    // Asks the sentinels for the master (and checks that it says it is one), then connects to it.
                    let client = sentinel.lock().await.async_get_client().await?;
                    ConnectionManager::new_with_config(client, self.manager_config()).await.map(Conn::Single)
                }
            }
        })
        .await;
        match made {
            Ok(Ok(conn)) => {
                *self.lock_conn() = Some(conn.clone());
                Ok(conn)
            }
            Ok(Err(e)) => Err(unavailable(&e)),
            Err(_) => Err(StoreError::Unavailable(format!("no connection to redis within {bound:?}"))),
        }
    }

    /// The connection to send an operation on, or a fast failure while the breaker is open.
    async fn conn(self: &Arc<Self>) -> Result<Conn, StoreError> {
        if self.is_open() {
            self.ops.error();
            return Err(StoreError::Unavailable(
                "redis is unreachable (failing fast; reconnecting in the background)".into(),
            ));
        }
        let existing = self.lock_conn().clone();
        match existing {
            Some(conn) => Ok(conn),
            None => self.establish().await.inspect_err(|_| {
                self.ops.error();
                self.trip();
            }),
        }
    }

    /// Runs one operation on the connection, bounded by the response timeout; an outage opens the breaker.
    async fn run<T, F>(self: &Arc<Self>, op: impl FnOnce(Conn) -> F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, RedisError>>,
    {
        let conn = self.conn().await?;
        let started = Instant::now();
        let result = tokio::time::timeout(self.options.response_timeout, op(conn)).await;
        self.ops.record(started.elapsed());
        match result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                self.ops.error();
                // With Sentinel, a read-only reply means the master we know was demoted: find the new one.
                let demoted = matches!(self.target, Target::Sentinel(_))
                    && e.kind() == ::redis::ErrorKind::Server(::redis::ServerErrorKind::ReadOnly);
                if is_outage(&e) || demoted {
                    self.trip();
                }
                Err(unavailable(&e))
            }
            Err(_) => {
                self.ops.error();
                self.trip();
                Err(StoreError::Unavailable(format!("no reply from redis within {:?}", self.options.response_timeout)))
            }
        }
    }

    /// Opens the breaker (or extends it) and starts the probe if none runs. With Sentinel, also drops the
    /// connection, so the next one goes to whichever server the sentinels name master by then (the connection
    /// would otherwise reconnect to the old master's address).
    fn trip(self: &Arc<Self>) {
        self.ops.trip();
        *self.lock_open() = Some(Instant::now() + self.options.breaker_open);
        if matches!(self.target, Target::Sentinel(_)) {
            *self.lock_conn() = None;
        }
        if !self.probing.swap(true, Ordering::AcqRel) {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(probe(Arc::downgrade(self)));
                }
                // No runtime to probe from: trial operations after the open period take its place.
                Err(_) => self.probing.store(false, Ordering::Release),
            }
        }
    }
}

/// Checks Redis every `probe_interval` until it answers (connecting first if there is no connection yet), keeping
/// the breaker open meanwhile; then closes it. Ends when the store is dropped.
async fn probe(link: Weak<Link>) {
    loop {
        let Some(interval) = link.upgrade().map(|l| l.options.probe_interval) else { return };
        tokio::time::sleep(interval).await;
        let Some(link) = link.upgrade() else { return };
        let existing = link.lock_conn().clone();
        let conn = match existing {
            Some(conn) => Ok(conn),
            None => link.establish().await,
        };
        let answered = match conn {
            Ok(mut conn) => matches!(
                tokio::time::timeout(
                    link.options.response_timeout,
                    ::redis::cmd("PING").query_async::<String>(&mut conn)
                )
                .await,
                Ok(Ok(_))
            ),
            Err(_) => false,
        };
        if answered {
            link.probing.store(false, Ordering::Release);
            *link.lock_open() = None;
            return;
        }
        *link.lock_open() = Some(Instant::now() + link.options.breaker_open);
    }
}

/// True when `e` means Redis is unreachable or not serving (as opposed to a refused or malformed command).
fn is_outage(e: &RedisError) -> bool {
    use ::redis::RetryMethod;
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.retry_method(),
            RetryMethod::Reconnect | RetryMethod::WaitAndRetry | RetryMethod::ReconnectFromInitialConnections
        )
}

/// A connection that reconnects by itself: to one server, or to a cluster.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// Rooms kept in Redis. Cheap to clone (clones share the connection).
#[derive(Clone)]
pub struct RedisStore {
    link: Arc<Link>,
    /// A single-node URL for subscriptions (for a cluster, its first seed node: `PUBLISH` reaches every node; unused
    /// with Sentinel, whose subscriptions go to the current master).
    pubsub_url: String,
    commit_script: Script,
    present_script: Script,
    load_script: Script,
    claim_script: Script,
    claim_media_script: Script,
    release_script: Script,
    heartbeat_script: Script,
    nodes_script: Script,
}

impl RedisStore {
    /// Runs one command (for the store's other modules).
    pub(crate) async fn run_cmd<T: ::redis::FromRedisValue + Send + 'static>(
        &self,
        cmd: ::redis::Cmd,
    ) -> Result<T, StoreError> {
        self.link.run(|mut conn| async move { cmd.query_async(&mut conn).await }).await
    }

    /// Runs one script invocation (for the store's other modules).
    pub(crate) async fn run_script<T: ::redis::FromRedisValue + Send + 'static>(
        &self,
        invocation: ::redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        self.link.run(|mut conn| async move { invocation.invoke_async(&mut conn).await }).await
    }

    /// Runs one pipeline whose replies are all ignored (for the store's other modules).
    pub(crate) async fn run_pipe(&self, pipe: ::redis::Pipeline) -> Result<(), StoreError> {
        self.link.run(|mut conn| async move { pipe.query_async::<()>(&mut conn).await }).await
    }
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.link.target {
            Target::Single(_) => "single",
            Target::Cluster(_) => "cluster",
            Target::Sentinel(_) => "sentinel",
        };
        f.debug_struct("RedisStore").field("kind", &kind).field("open", &self.link.is_open()).finish_non_exhaustive()
    }
}

fn unavailable(e: &RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// The nodes of a `redis+cluster://host:port,host:port/` URL, as single-node URLs.
fn cluster_nodes(url: &str) -> Option<Vec<String>> {
    let rest = url.strip_prefix("redis+cluster://")?;
    let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (auth, hosts) = match hosts.rsplit_once('@') {
        Some((auth, hosts)) => (format!("{auth}@"), hosts),
        None => (String::new(), hosts),
    };
    let nodes: Vec<String> =
        hosts.split(',').filter(|h| !h.is_empty()).map(|h| format!("redis://{auth}{h}/{path}")).collect();
    Some(nodes)
}

/// A parsed `redis+sentinel://` URL ([`sentinel_group`]).
struct SentinelGroup {
    /// The sentinels, as single-node URLs.
    sentinels: Vec<String>,
    /// The monitored group's master name.
    name: String,
    /// Credentials and database for the master.
    master: ::redis::RedisConnectionInfo,
}

/// The default port of a sentinel.
const SENTINEL_PORT: u16 = 26379;

/// Reads `redis+sentinel://[user:password@]host[:port],host[:port],.../<master name>[/db]` (sentinel port 26379
/// by default; the credentials and database are the master's, the sentinels are asked without credentials).
/// `None` for another scheme.
fn sentinel_group(url: &str) -> Option<Result<SentinelGroup, String>> {
    let rest = url.strip_prefix("redis+sentinel://")?;
    Some((|| {
        let (hosts, path) = rest.split_once('/').ok_or("no master name (redis+sentinel://HOSTS/MASTER[/DB])")?;
        let (auth, hosts) = match hosts.rsplit_once('@') {
            Some((auth, hosts)) => (format!("{auth}@"), hosts),
            None => (String::new(), hosts),
        };
        let sentinels: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| {
                // A port follows the last `:`, unless that is inside an IPv6 address's brackets.
                let has_port = h.rsplit_once(':').is_some_and(|(_, port)| !port.contains(']'));
                if has_port { format!("redis://{h}/") } else { format!("redis://{h}:{SENTINEL_PORT}/") }
            })
            .collect();
        let first = sentinels.first().ok_or("no sentinels")?;
        let mut path = path.trim_end_matches('/').split('/');
        let name = path.next().filter(|n| !n.is_empty()).ok_or("no master name")?.to_owned();
        let db = path.next().unwrap_or("0");
        if path.next().is_some() {
            return Err("a path other than /MASTER[/DB]".to_owned());
        }
        // The URL parser decodes the credentials and checks the database; the host is a sentinel's.
        let host = first.trim_start_matches("redis://");
        let master = ::redis::IntoConnectionInfo::into_connection_info(format!("redis://{auth}{host}{db}"))
            .map_err(|e| e.to_string())?
            .redis_settings()
            .clone();
        Ok(SentinelGroup { sentinels, name, master })
    })())
}

/// [`sentinel_group`]'s parts, for the tests: sentinels, master name, the master's connection settings.
#[cfg(test)]
pub(crate) fn sentinel_group_for_tests(
    url: &str,
) -> Result<(Vec<String>, String, ::redis::RedisConnectionInfo), String> {
    let group = sentinel_group(url).ok_or("not a sentinel url")??;
    Ok((group.sentinels, group.name, group.master))
}

impl RedisStore {
    /// Connects to `url`: `redis://[user:password@]host:port[/db]` (one server),
    /// `redis+cluster://[user:password@]host:port,host:port,...` (a Redis Cluster, discovered from these seed nodes),
    /// or `redis+sentinel://[user:password@]host[:port],host[:port],.../<master name>[/db]` (the master of a
    /// Sentinel-monitored group, found through these sentinels, port 26379 by default; the credentials and database
    /// are the master's, the sentinels are asked without credentials). Fails when the URL is malformed or Redis
    /// cannot be reached now; afterwards, dropped connections are re-established by themselves, with Sentinel to
    /// whichever server the sentinels name master then (after an outage or a `READONLY` reply).
    pub async fn connect(url: &str, options: &RedisOptions) -> Result<Self, StoreError> {
        let store = Self::new(url, options)?;
        store.link.establish().await?;
        Ok(store)
    }

    /// Like [`RedisStore::connect`], but does not wait for Redis: when it cannot be reached now, operations fail
    /// as unavailable (at once, see the breaker) until the background probe has connected. Must be called within a
    /// Tokio runtime. Fails only when the URL is malformed.
    pub async fn open(url: &str, options: &RedisOptions) -> Result<Self, StoreError> {
        let store = Self::new(url, options)?;
        if store.link.establish().await.is_err() {
            store.link.trip();
        }
        Ok(store)
    }

    /// True while Redis is known to be unreachable (operations fail at once).
    pub fn is_degraded(&self) -> bool {
        self.link.is_open()
    }

    /// Latencies and failures of this store's operations so far (shared by its clones), for metrics.
    pub fn op_stats(&self) -> RedisOpStats {
        self.link.ops.snapshot()
    }

    fn new(url: &str, options: &RedisOptions) -> Result<Self, StoreError> {
        let bad_url = |e: RedisError| StoreError::Unavailable(format!("store url {url:?}: {e}"));
        let mut pubsub_url = url.to_owned();
        let target = if let Some(nodes) = cluster_nodes(url) {
            if nodes.is_empty() {
                return Err(StoreError::Unavailable(format!("store url {url:?}: no cluster nodes")));
            }
            pubsub_url.clone_from(&nodes[0]);
            let client = ::redis::cluster::ClusterClientBuilder::new(nodes)
                .connection_timeout(options.connect_timeout)
                .response_timeout(options.response_timeout)
                .build()
                .map_err(bad_url)?;
            Target::Cluster(Box::new(client))
        } else if let Some(sentinel) = sentinel_group(url) {
            let sentinel = sentinel.map_err(|e| StoreError::Unavailable(format!("store url {url:?}: {e}")))?;
            let master = SentinelNodeConnectionInfo::default().set_redis_connection_info(sentinel.master);
            let client =
                SentinelClient::build(sentinel.sentinels, sentinel.name, Some(master), SentinelServerType::Master)
                    .map_err(bad_url)?;
            Target::Sentinel(Box::new(tokio::sync::Mutex::new(client)))
        } else {
            Target::Single(::redis::Client::open(url).map_err(bad_url)?)
        };
        Ok(Self {
            link: Arc::new(Link {
                target,
                options: options.clone(),
                conn: Mutex::new(None),
                open_until: Mutex::new(None),
                probing: AtomicBool::new(false),
                ops: op_stats::OpCounters::default(),
            }),
            pubsub_url,
            commit_script: Script::new(COMMIT_LUA),
            present_script: Script::new(PRESENT_LUA),
            load_script: Script::new(LOAD_LUA),
            claim_script: Script::new(CLAIM_LUA),
            claim_media_script: Script::new(CLAIM_MEDIA_LUA),
            release_script: Script::new(RELEASE_LUA),
            heartbeat_script: Script::new(HEARTBEAT_LUA),
            nodes_script: Script::new(NODES_LUA),
        })
    }

    /// Like [`RoomStore::commit`], and when the commit takes place, publishes `announcement` on the room's channel
    /// in the same script (one round trip; announcements leave in commit order).
    pub async fn commit_announced(
        &self,
        room: &str,
        changes: &Changes,
        announcement: Option<&str>,
    ) -> Result<(), StoreError> {
        self.commit_present(room, changes, announcement, None).await
    }

    /// Like [`RedisStore::commit_announced`] (the same single script and round trip), and when the commit takes
    /// place, also records presence in the room's presence hash ([`presence_key`]): `present = Some((identity,
    /// node))` sets `identity → node` (the hub `node` now holds that participant's connection), and every
    /// participant in `changes.removed` is deleted from it (even one named by `present`). [`MemoryStore`] needs no
    /// presence: it serves one hub.
    ///
    /// [`MemoryStore`]: crate::MemoryStore
    pub async fn commit_present(
        &self,
        room: &str,
        changes: &Changes,
        announcement: Option<&str>,
        present: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        self.commit_with(room, changes, announcement, present, None).await
    }

    /// Like [`RedisStore::commit_present`] (the same single script and round trip), and when the commit takes
    /// place, also appends `extras`' webhook events to the room's outbox and its audit entries to the room's audit
    /// stream (see [`CommitExtras`]).
    pub async fn commit_with(
        &self,
        room: &str,
        changes: &Changes,
        announcement: Option<&str>,
        present: Option<(&str, &str)>,
        extras: Option<&CommitExtras>,
    ) -> Result<(), StoreError> {
        if changes.base_seq == 0 {
            // A new room: indexed first, so a crash between the two leaves at worst a name the listing skips.
            let mut cmd = ::redis::cmd("ZADD");
            cmd.arg(ROOMS_KEY).arg(0).arg(room);
            self.link.run(|mut conn| async move { cmd.query_async::<i64>(&mut conn).await }).await?;
        }
        let mut invocation = self.commit_script.prepare_invoke();
        for key in room_keys(room) {
            invocation.key(key);
        }
        invocation.key(presence_key(room));
        invocation.key(chat_key(room));
        let channel = crate::bus::events_channel(room);
        for arg in commit_args(changes, announcement.map(|text| (channel.as_str(), text)), present) {
            invocation.arg(arg);
        }
        if let Some(extras) = extras {
            invocation.key(outbox::hooks_key(room)).key(outbox::hookstate_key(room)).key(outbox::audit_key(room));
            for arg in extras.args() {
                invocation.arg(arg);
            }
        }
        let reply: Vec<String> =
            self.link.run(|mut conn| async move { invocation.invoke_async(&mut conn).await }).await?;
        match reply.as_slice() {
            [ok] if ok == "ok" => Ok(()),
            [c] if c == "conflict" => Err(StoreError::Conflict { expected: changes.base_seq, found: None }),
            [c, found] if c == "conflict" => {
                let found = found.parse().map_err(|e| StoreError::Corrupt(format!("room {room:?}: seq: {e}")))?;
                Err(StoreError::Conflict { expected: changes.base_seq, found: Some(found) })
            }
            other => Err(StoreError::Corrupt(format!("room {room:?}: unexpected commit reply {other:?}"))),
        }
    }

    /// Records that hub `node` holds `identity`'s connection now, without a transition, and publishes
    /// `announcement` after it on the room's channel: one script ([`PRESENT_LUA`]). For a session taken over by a
    /// new connection while the participant still counted as connected (so the join changed nothing to commit):
    /// presence follows the connection at once, so the hub that held the old connection is not taken for holding it
    /// when it goes away. False when `identity` is not in the room (nothing recorded).
    pub async fn present(
        &self,
        room: &str,
        identity: &str,
        node: &str,
        announcement: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut invocation = self.present_script.prepare_invoke();
        let [_, participants, ..] = room_keys(room);
        invocation.key(participants).key(presence_key(room)).arg(identity).arg(node);
        if let Some(text) = announcement {
            invocation.arg(crate::bus::events_channel(room)).arg(text);
        }
        let set: i64 = self.link.run(|mut conn| async move { invocation.invoke_async(&mut conn).await }).await?;
        Ok(set == 1)
    }

    /// The stored records of these participants of `room` (`None`: not in the room), in order: one `HMGET`,
    /// whatever the room's size.
    pub async fn participants_among(
        &self,
        room: &str,
        ids: &[&str],
    ) -> Result<Vec<Option<podium_room::ParticipantState>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = ::redis::cmd("HMGET");
        cmd.arg(format!("podium:{{{room}}}:participants"));
        for id in ids {
            cmd.arg(*id);
        }
        let texts: Vec<Option<String>> = self.run_cmd(cmd).await?;
        texts
            .into_iter()
            .zip(ids)
            .map(|(text, id)| match text {
                None => Ok(None),
                Some(t) => codec::decode_participant(id, &t).map(Some).map_err(StoreError::Corrupt),
            })
            .collect()
    }

    /// `room`'s presence hash: identity → node id of the hub holding that participant's connection (see
    /// [`RedisStore::commit_present`]). One `HGETALL`.
    pub async fn presence(&self, room: &str) -> Result<HashMap<String, String>, StoreError> {
        let mut cmd = ::redis::cmd("HGETALL");
        cmd.arg(presence_key(room));
        self.link.run(|mut conn| async move { cmd.query_async(&mut conn).await }).await
    }

    /// Publishes an announcement without a transition (such as head counts) on the room's channel.
    pub async fn publish(&self, room: &str, announcement: &str) -> Result<(), StoreError> {
        let mut cmd = ::redis::cmd("PUBLISH");
        cmd.arg(crate::bus::events_channel(room)).arg(announcement);
        self.link.run(|mut conn| async move { cmd.query_async::<i64>(&mut conn).await }).await.map(drop)
    }

    /// Claims `room`'s timer lease for `node`, or renews it; true when `node` holds it for `lease` from now.
    pub async fn claim_owner(&self, room: &str, node: &str, lease: Duration) -> Result<bool, StoreError> {
        let ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut invocation = self.claim_script.prepare_invoke();
        invocation.key(owner_key(room)).arg(node).arg(ms);
        let held: i64 = self.link.run(|mut conn| async move { invocation.invoke_async(&mut conn).await }).await?;
        Ok(held == 1)
    }

    /// Gives up `room`'s timer lease if `node` holds it, and forgets `node`'s watch of it ([`claims_key`]).
    pub async fn release_owner(&self, room: &str, node: &str) -> Result<(), StoreError> {
        let mut invocation = self.release_script.prepare_invoke();
        invocation.key(owner_key(room)).key(claims_key(room)).arg(node);
        let _: i64 = self.link.run(|mut conn| async move { invocation.invoke_async(&mut conn).await }).await?;
        Ok(())
    }

    /// Claims `room`'s lease for `node`, or renews it, and tells the room's media epoch: one script
    /// ([`CLAIM_MEDIA_LUA`]) on the owner key ([`owner_key`], the same lease as [`RedisStore::claim_owner`]) and the
    /// media key ([`media_key`], `"<epoch> <node>"`, no expiry).
    ///
    /// When another node holds the lease: `held` is false, `holder` names that node, and `epoch` is the stored one
    /// (0 if none). Otherwise `node` holds the lease for `lease` from now; the epoch stays when the media key
    /// already names `node` (a hub renewing its lease, or re-claiming it after Redis lost the lease, keeps its
    /// media), and is the stored one plus 1 (1 if none) when it names another node or none. So every change of the
    /// room's media node bumps the epoch. [`RedisStore::release_owner`] releases the lease and keeps the media key,
    /// so the next claimer bumps the epoch; [`RoomStore::remove`] deletes both (a room made again under the same
    /// name starts at epoch 1). [`MemoryStore`] needs no lease: one hub runs every room.
    ///
    /// A lapsed (not released) lease prefers its last holder, so that a Redis outage moves no media: another node
    /// takes it at once only if it kept claiming (gaps of at most two thirds of `lease`) since before the lease ran
    /// out, else after claiming for twice `lease` (see [`CLAIM_MEDIA_LUA`]); until then `held` is false and
    /// `holder` names the last holder. Every claim records the claimer's watch in [`claims_key`], which
    /// `release_owner` deletes.
    ///
    /// [`MemoryStore`]: crate::MemoryStore
    pub async fn claim_media(&self, room: &str, node: &str, lease: Duration) -> Result<Lease, StoreError> {
        self.claim_media_watching(room, node, lease, true).await
    }

    /// [`RedisStore::claim_media`], with the holder's watch recorded only when `watch` (see [`CLAIM_MEDIA_LUA`]).
    async fn claim_media_watching(
        &self,
        room: &str,
        node: &str,
        lease: Duration,
        watch: bool,
    ) -> Result<Lease, StoreError> {
        let ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX).max(1);
        let (contact, grace) = (ms * 2 / 3, ms.saturating_mul(2));
        let mut invocation = self.claim_media_script.prepare_invoke();
        invocation.key(owner_key(room)).key(media_key(room)).key(claims_key(room)).arg(node).arg(ms);
        invocation.arg(contact).arg(grace).arg(u8::from(watch));
        let (held, holder, epoch): (i64, String, u64) =
            self.link.run(|mut conn| async move { invocation.invoke_async(&mut conn).await }).await?;
        Ok(Lease { held: held == 1, holder: Some(holder), epoch })
    }

    /// Who holds `room`'s lease and the room's media epoch, without claiming anything (a draining hub watches its
    /// rooms move). `held` is true when `node` is the holder; `holder` is `None` when nobody holds the lease.
    pub async fn media_holder(&self, room: &str, node: &str) -> Result<Lease, StoreError> {
        let mut cmd = ::redis::cmd("MGET");
        cmd.arg(owner_key(room)).arg(media_key(room));
        let (holder, media): (Option<String>, Option<String>) =
            self.link.run(|mut conn| async move { cmd.query_async(&mut conn).await }).await?;
        Ok(lease_of(holder, media, node))
    }

    /// Records that hub `info.id` is alive now, with its URL and whether it drains, in the node registry
    /// ([`NODES_KEY`]), stamped with Redis's clock (the hubs' clocks do not matter). One script
    /// ([`HEARTBEAT_LUA`]).
    pub async fn heartbeat(&self, info: &NodeInfo) -> Result<(), StoreError> {
        let head = heartbeat_head(info);
        let mut invocation = self.heartbeat_script.prepare_invoke();
        invocation.key(NODES_KEY).arg(&info.id).arg(head);
        let _: i64 = self.link.run(|mut conn| async move { invocation.invoke_async(&mut conn).await }).await?;
        Ok(())
    }

    /// Every hub in the node registry, sorted by id, with the age of its last heartbeat by Redis's clock; `alive`
    /// when that age is at most `ttl`. The same script ([`NODES_LUA`]) deletes the entries older than `10 * ttl`
    /// or 60 s, whichever is longer. Entries this build cannot read are left out.
    pub async fn nodes(&self, ttl: Duration) -> Result<Vec<NodeStatus>, StoreError> {
        let mut invocation = self.nodes_script.prepare_invoke();
        invocation.key(NODES_KEY).arg(nodes_limit_ms(ttl));
        let (now_ms, entries): (u64, Vec<String>) =
            self.link.run(|mut conn| async move { invocation.invoke_async(&mut conn).await }).await?;
        Ok(node_statuses(now_ms, &entries, ttl))
    }

    /// Deletes hub `id` from the node registry (a hub leaving for good). One `HDEL`.
    pub async fn forget_node(&self, id: &str) -> Result<(), StoreError> {
        let mut cmd = ::redis::cmd("HDEL");
        cmd.arg(NODES_KEY).arg(id);
        self.link.run(|mut conn| async move { cmd.query_async::<i64>(&mut conn).await }).await.map(drop)
    }

    /// Publishes `text` on hub `node`'s own channel ([`node_channel`]); a [`RedisStore::subscribe`] of that node
    /// receives it as [`BusMessage::Node`]. Returns how many subscribers received it (0 is not an error: the hub
    /// may be gone). On a Redis Cluster the count covers only the subscribers of the node that took the `PUBLISH`.
    ///
    /// [`node_channel`]: crate::bus::node_channel
    pub async fn send_to_node(&self, node: &str, text: &str) -> Result<u64, StoreError> {
        let mut cmd = ::redis::cmd("PUBLISH");
        cmd.arg(crate::bus::node_channel(node)).arg(text);
        self.link.run(|mut conn| async move { cmd.query_async::<u64>(&mut conn).await }).await
    }

    /// Sets `key` to `value` for `ttl` unless it exists; returns what it holds when it does (`None`: set now).
    /// Keys are the caller's (e.g. `podium:idem:…`), in no room's slot.
    pub async fn put_if_absent(&self, key: &str, value: &str, ttl: Duration) -> Result<Option<String>, StoreError> {
        let script = ::redis::Script::new(
            "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end \
             return redis.call('GET', KEYS[1])",
        );
        let mut invocation = script.prepare_invoke();
        invocation.key(key).arg(value).arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        self.link.run(|mut conn| async move { invocation.invoke_async(&mut conn).await }).await
    }

    /// Sets `key` to `value` for `ttl`.
    pub async fn put(&self, key: &str, value: &str, ttl: Duration) -> Result<(), StoreError> {
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(key).arg(value).arg("PX").arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        self.link.run(|mut conn| async move { cmd.query_async::<()>(&mut conn).await }).await
    }

    /// Deletes `key`.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let mut cmd = ::redis::cmd("DEL");
        cmd.arg(key);
        self.link.run(|mut conn| async move { cmd.query_async::<i64>(&mut conn).await }).await.map(drop)
    }

    /// Sends `PING` (a health check).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.link
            .run(|mut conn| async move { ::redis::cmd("PING").query_async::<String>(&mut conn).await })
            .await
            .map(drop)
    }

    /// Subscribes to every room's announcements (`PSUBSCRIBE` [`EVENTS_PATTERN`]) on a connection of its own; each
    /// item is `(room, message)`. The stream ends when the connection drops (messages sent meanwhile are lost:
    /// resubscribe and reload). Fails within the connect and response timeouts when Redis does not answer. For
    /// tools and tests: a hub follows only the rooms it runs ([`RedisStore::subscribe`]).
    ///
    /// [`EVENTS_PATTERN`]: crate::bus::EVENTS_PATTERN
    pub async fn subscribe_all(&self) -> Result<Subscription, StoreError> {
        self.subscribe_to(None).await
    }

    /// Subscribes, on one connection of its own, to the messages for hub `node` ([`RedisStore::send_to_node`]),
    /// and to no room yet: [`Subscription::watcher`] adds and removes rooms' announcement channels on the same
    /// connection. Read both with [`Subscription::next_message`]. They arrive on the same connection, so messages
    /// published in some order on one Redis server (a room channel and the node channel alike) arrive in that
    /// order. The stream ends when the connection drops (messages sent meanwhile are lost, and so are the
    /// connection's room subscriptions: subscribe again, watch the rooms again and reload). Fails within the
    /// connect and response timeouts when Redis does not answer.
    pub async fn subscribe(&self, node: &str) -> Result<Subscription, StoreError> {
        self.subscribe_to(Some(crate::bus::node_channel(node))).await
    }

    async fn subscribe_to(&self, node_channel: Option<String>) -> Result<Subscription, StoreError> {
        let bound = self.link.establish_bound();
        let subscribed = tokio::time::timeout(bound, async {
            let client = self.link.target.pubsub_client(&self.pubsub_url).await?;
            let mut pubsub = client.get_async_pubsub().await?;
            match &node_channel {
                Some(channel) => pubsub.subscribe(channel).await?,
                None => pubsub.psubscribe(crate::bus::EVENTS_PATTERN).await?,
            }
            Ok::<_, RedisError>(pubsub)
        })
        .await;
        match subscribed {
            Ok(Ok(pubsub)) => {
                let (sink, stream) = pubsub.split();
                let watcher = Watcher { sink, bound: self.link.options.response_timeout };
                Ok(Subscription { stream, node_channel, watcher })
            }
            Ok(Err(e)) => Err(unavailable(&e)),
            Err(_) => Err(StoreError::Unavailable(format!("no subscription to redis within {bound:?}"))),
        }
    }
}

/// A pub/sub connection: one hub's own messages and the announcements of the rooms its [`Watcher`] watches (from
/// [`RedisStore::subscribe`]), or every room's announcements (from [`RedisStore::subscribe_all`]).
pub struct Subscription {
    stream: ::redis::aio::PubSubStream,
    /// The hub's own channel ([`RedisStore::subscribe`]); `None` from [`RedisStore::subscribe_all`].
    node_channel: Option<String>,
    watcher: Watcher,
}

impl Subscription {
    /// The next `(room, message)`; `None` when the connection dropped. Skips the hub's own messages: read a
    /// [`RedisStore::subscribe`] subscription with [`Subscription::next_message`] instead.
    pub async fn next(&mut self) -> Option<(String, String)> {
        loop {
            if let BusMessage::Room { room, text } = self.next_message().await? {
                return Some((room, text));
            }
        }
    }

    /// The next room announcement or message for this hub, in the order Redis sent them; `None` when the connection
    /// dropped. Messages that are not UTF-8 are skipped.
    pub async fn next_message(&mut self) -> Option<BusMessage> {
        use futures_util::StreamExt as _;
        loop {
            let msg = self.stream.next().await?;
            let Ok(text) = std::str::from_utf8(msg.get_payload_bytes()) else { continue };
            let channel = msg.get_channel_name();
            if self.node_channel.as_deref() == Some(channel) {
                return Some(BusMessage::Node { text: text.to_owned() });
            }
            let Some(room) = crate::bus::channel_room(channel) else { continue };
            return Some(BusMessage::Room { room: room.to_owned(), text: text.to_owned() });
        }
    }

    /// The handle that adds and removes rooms on this connection (it fails once the subscription is dropped).
    pub fn watcher(&self) -> Watcher {
        self.watcher.clone()
    }
}

/// Adds rooms' announcement channels to a [`Subscription`]'s connection and removes them (`SUBSCRIBE` /
/// `UNSUBSCRIBE` `podium:{R}:events`). Plain channels, so on a Redis Cluster too a room's announcements reach the
/// connection (a `PUBLISH` is forwarded to every node), whichever node it is on.
///
/// Redis keeps one subscription per channel and connection: watching a room twice and unwatching it once leaves it
/// unwatched. Counting watchers of a room is the caller's business, and so is issuing a connection's commands in a
/// sensible order: the commands of all clones go on the connection in the order they are called, and each waits
/// for all of Redis's confirmations (at most the store's response timeout; a command that timed out may still be
/// applied later, when Redis wakes).
#[derive(Clone)]
pub struct Watcher {
    sink: ::redis::aio::PubSubSink,
    /// How long to wait for each command's confirmations.
    bound: Duration,
}

/// How many channels one `SUBSCRIBE` or `UNSUBSCRIBE` names at most (larger sets are sent in several commands).
const WATCH_CHUNK: usize = 512;

impl Watcher {
    /// Subscribes to `room`'s announcements; returns once Redis confirmed, so whatever is published on the room's
    /// channel afterwards reaches the subscription (unless its connection drops).
    pub async fn watch(&self, room: &str) -> Result<(), StoreError> {
        self.watch_rooms([room]).await
    }

    /// Unsubscribes from `room`'s announcements; returns once Redis confirmed (messages already on their way may
    /// still arrive).
    pub async fn unwatch(&self, room: &str) -> Result<(), StoreError> {
        self.unwatch_rooms([room]).await
    }

    /// [`Watcher::watch`] for several rooms, in as few commands as possible.
    pub async fn watch_rooms<'a>(&self, rooms: impl IntoIterator<Item = &'a str>) -> Result<(), StoreError> {
        self.send(true, rooms).await
    }

    /// [`Watcher::unwatch`] for several rooms, in as few commands as possible.
    pub async fn unwatch_rooms<'a>(&self, rooms: impl IntoIterator<Item = &'a str>) -> Result<(), StoreError> {
        self.send(false, rooms).await
    }

    async fn send<'a>(&self, subscribe: bool, rooms: impl IntoIterator<Item = &'a str>) -> Result<(), StoreError> {
        let channels: Vec<String> = rooms.into_iter().map(crate::bus::events_channel).collect();
        for chunk in channels.chunks(WATCH_CHUNK) {
            let mut sink = self.sink.clone();
            let sent = tokio::time::timeout(self.bound, async {
                if subscribe { sink.subscribe(chunk).await } else { sink.unsubscribe(chunk).await }
            })
            .await;
            match sent {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(unavailable(&e)),
                Err(_) => {
                    return Err(StoreError::Unavailable(format!(
                        "no subscription confirmation from redis within {:?}",
                        self.bound
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The lease `node` sees in a room's owner and media keys (read, not claimed).
fn lease_of(holder: Option<String>, media: Option<String>, node: &str) -> Lease {
    let epoch = media.as_deref().and_then(|m| m.split_once(' ')).and_then(|(e, _)| e.parse().ok()).unwrap_or(0);
    Lease { held: holder.as_deref() == Some(node), holder, epoch }
}

/// A heartbeat's record for [`HEARTBEAT_LUA`]: the JSON object without its closing brace, ending in `"seen_ms":`.
fn heartbeat_head(info: &NodeInfo) -> String {
    let record = serde_json::to_string(&NodeRecordOut { url: info.url.as_deref(), draining: info.draining })
        // A string, an optional string and a boolean: serialising cannot fail.
        .unwrap_or_else(|e| unreachable!("plain records always serialise: {e}"));
    // The record is a JSON object, so it ends with its closing brace; the script appends the time and the brace.
    format!("{},\"seen_ms\":", record.strip_suffix('}').unwrap_or(&record))
}

/// The age past which [`NODES_LUA`] deletes a registry entry: `10 * ttl` or 60 s, whichever is longer.
fn nodes_limit_ms(ttl: Duration) -> u64 {
    let limit = ttl.saturating_mul(10).max(Duration::from_secs(60));
    u64::try_from(limit.as_millis()).unwrap_or(u64::MAX)
}

/// The registry entries [`NODES_LUA`] returned, read at Redis time `now_ms`: sorted by id, unreadable ones left out.
fn node_statuses(now_ms: u64, entries: &[String], ttl: Duration) -> Vec<NodeStatus> {
    let mut nodes: Vec<NodeStatus> = entries
        .chunks_exact(2)
        .filter_map(|pair| {
            let record: NodeRecordIn = serde_json::from_str(&pair[1]).ok()?;
            let age = Duration::from_millis(now_ms.saturating_sub(record.seen_ms));
            let info = NodeInfo { id: pair[0].clone(), url: record.url, draining: record.draining };
            Some(NodeStatus { info, alive: age <= ttl, age })
        })
        .collect();
    nodes.sort_by(|a, b| a.info.id.cmp(&b.info.id));
    nodes
}

/// A hub's claim on a room's lease ([`RedisStore::claim_media`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The claiming node holds the lease (it runs the room's timers and media).
    pub held: bool,
    /// The node holding the lease (the claimer when `held`). Always set by [`RedisStore::claim_media`].
    pub holder: Option<String>,
    /// The room's media epoch: it grows by one each time the room's media moves to another node (0: no node has
    /// held it yet).
    pub epoch: u64,
}

/// What a hub tells about itself in the node registry ([`RedisStore::heartbeat`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node id.
    pub id: String,
    /// Where clients or other hubs reach this hub, if it says.
    pub url: Option<String>,
    /// The hub is draining: it takes no new rooms or connections.
    pub draining: bool,
}

/// A node registry entry as [`RedisStore::nodes`] finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// What the hub said in its last heartbeat.
    pub info: NodeInfo,
    /// The last heartbeat is at most the given TTL old.
    pub alive: bool,
    /// How long ago the last heartbeat was, by Redis's clock (zero if Redis's clock went back).
    pub age: Duration,
}

/// A node registry record as written ([`HEARTBEAT_LUA`] appends `seen_ms`).
#[derive(serde::Serialize)]
struct NodeRecordOut<'a> {
    url: Option<&'a str>,
    draining: bool,
}

/// A node registry record as read.
#[derive(serde::Deserialize)]
struct NodeRecordIn {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    draining: bool,
    seen_ms: u64,
}

/// The arguments of [`COMMIT_LUA`] for `changes`, an announcement `(channel, message)` and a presence entry
/// `(identity, node)`.
fn commit_args(changes: &Changes, announcement: Option<(&str, &str)>, present: Option<(&str, &str)>) -> Vec<String> {
    let list_len =
        |l: &Option<Vec<ParticipantId>>| l.as_ref().map_or(-1, |l| i64::try_from(l.len()).unwrap_or(i64::MAX));
    let mut args = Vec::with_capacity(
        10 + changes.removed.len()
            + 2 * changes.upserted.len()
            + changes.bans.as_ref().map_or(0, Vec::len)
            + changes.guests.as_ref().map_or(0, Vec::len)
            + 2 * usize::from(announcement.is_some())
            + 2 * usize::from(present.is_some()),
    );
    args.push(changes.base_seq.to_string());
    args.push(changes.seq.to_string());
    args.push(changes.room.as_ref().map(codec::encode_fields).unwrap_or_default());
    args.push(changes.removed.len().to_string());
    args.push(changes.upserted.len().to_string());
    args.push(list_len(&changes.bans).to_string());
    args.push(list_len(&changes.guests).to_string());
    args.push(usize::from(announcement.is_some()).to_string());
    args.push(usize::from(present.is_some()).to_string());
    args.push(changes.info.as_ref().map(codec::encode_info).unwrap_or_default());
    args.push(changes.chat_added.len().to_string());
    args.push(changes.chat_removed.len().to_string());
    args.extend(changes.removed.iter().map(|id| id.as_str().to_owned()));
    for p in &changes.upserted {
        args.push(p.id.as_str().to_owned());
        args.push(codec::encode_participant(p));
    }
    for list in [&changes.bans, &changes.guests].into_iter().flatten() {
        args.extend(list.iter().map(|id| id.as_str().to_owned()));
    }
    for (a, b) in announcement.into_iter().chain(present) {
        args.push(a.to_owned());
        args.push(b.to_owned());
    }
    for m in &changes.chat_added {
        args.push(m.id.to_string());
        args.push(codec::encode_chat(m));
    }
    args.extend(changes.chat_removed.iter().map(u64::to_string));
    args
}

type Loaded = (String, String, Vec<String>, Vec<String>, Vec<String>, String, Vec<String>);

fn decode_state(loaded: Loaded) -> Result<RoomState, String> {
    let (seq, fields, participants, bans, guests, info, chat) = loaded;
    let seq: u64 = seq.parse().map_err(|e| format!("seq {seq:?}: {e}"))?;
    let fields = codec::decode_fields(&fields)?;
    if participants.len() % 2 != 0 {
        return Err("participants: odd HGETALL reply".into());
    }
    let mut list = participants
        .chunks_exact(2)
        .map(|pair| codec::decode_participant(&pair[0], &pair[1]))
        .collect::<Result<Vec<_>, _>>()?;
    list.sort_by_key(|p| p.join_order);
    let sorted = |ids: Vec<String>| {
        let mut ids: Vec<ParticipantId> = ids.into_iter().map(ParticipantId::new).collect();
        ids.sort();
        ids
    };
    Ok(RoomState {
        name: fields.name,
        seq,
        settings: fields.settings,
        ended: fields.ended,
        empty_since: fields.empty_since,
        next_order: fields.next_order,
        persistent: fields.persistent,
        revocations: fields.revocations,
        recording: fields.recording,
        recordable: fields.recordable,
        info: codec::decode_info(&info)?,
        participants: list,
        bans: sorted(bans),
        guests: sorted(guests),
        next_chat_id: fields.next_chat_id,
        chat: {
            let mut chat = chat.iter().map(|m| codec::decode_chat(m)).collect::<Result<Vec<_>, _>>()?;
            chat.sort_by_key(|m| m.id);
            chat
        },
    })
}

impl RoomStore for RedisStore {
    async fn load(&self, room: &str) -> Result<Option<RoomState>, StoreError> {
        let mut invocation = self.load_script.prepare_invoke();
        for key in room_keys(room) {
            invocation.key(key);
        }
        invocation.key(chat_key(room));
        let loaded: Option<Loaded> =
            self.link.run(|mut conn| async move { invocation.invoke_async(&mut conn).await }).await?;
        loaded.map(decode_state).transpose().map_err(|e| StoreError::Corrupt(format!("room {room:?}: {e}")))
    }

    async fn commit(&self, room: &str, changes: &Changes) -> Result<(), StoreError> {
        self.commit_announced(room, changes, None).await
    }

    /// Deletes the room's keys, its lease, media epoch and presence with them: one `DEL`.
    async fn remove(&self, room: &str) -> Result<(), StoreError> {
        let mut cmd = ::redis::cmd("DEL");
        cmd.arg(&room_keys(room))
            .arg(owner_key(room))
            .arg(media_key(room))
            .arg(presence_key(room))
            .arg(claims_key(room))
            .arg(chat_key(room));
        self.link.run(|mut conn| async move { cmd.query_async::<i64>(&mut conn).await }).await?;
        self.unindex(room).await
    }

    async fn rooms_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, StoreError> {
        let mut names = Vec::with_capacity(limit);
        let mut cursor = after.map_or_else(|| "-".to_owned(), |a| format!("({a}"));
        // Names whose room is gone (a crash between unindexing steps) are skipped and cleaned; a few rounds at most.
        for _ in 0..8 {
            let want = limit - names.len();
            let mut cmd = ::redis::cmd("ZRANGE");
            cmd.arg(ROOMS_KEY).arg(&cursor).arg("+").arg("BYLEX").arg("LIMIT").arg(0).arg(want);
            let batch: Vec<String> = self.link.run(|mut conn| async move { cmd.query_async(&mut conn).await }).await?;
            let Some(last) = batch.last() else { break };
            cursor = format!("({last}");
            let full = batch.len() == want;
            for name in batch {
                let mut exists = ::redis::cmd("EXISTS");
                exists.arg(&room_keys(&name)[0]);
                let n: i64 = self.link.run(|mut conn| async move { exists.query_async(&mut conn).await }).await?;
                if n > 0 {
                    names.push(name);
                } else {
                    self.unindex(&name).await?;
                }
            }
            if !full || names.len() == limit {
                break;
            }
        }
        Ok(names)
    }
}

impl RedisStore {
    async fn unindex(&self, room: &str) -> Result<(), StoreError> {
        let mut cmd = ::redis::cmd("ZREM");
        cmd.arg(ROOMS_KEY).arg(room);
        self.link.run(|mut conn| async move { cmd.query_async::<i64>(&mut conn).await }).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_room_hash_tag() {
        assert_eq!(
            room_keys("demo"),
            ["podium:{demo}:meta", "podium:{demo}:participants", "podium:{demo}:bans", "podium:{demo}:guests"]
        );
    }

    #[test]
    fn cluster_urls_name_their_seed_nodes() {
        assert_eq!(cluster_nodes("redis://h:1/"), None);
        assert_eq!(cluster_nodes("redis+cluster://a:7000,b:7001").unwrap(), ["redis://a:7000/", "redis://b:7001/"]);
        assert_eq!(cluster_nodes("redis+cluster://u:p@a:7000/").unwrap(), ["redis://u:p@a:7000/"]);
    }
}
