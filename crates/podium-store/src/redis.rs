//! The Redis store: rooms live in Redis (or Redis Cluster), so they survive hub restarts and can be shared by hubs.
//!
//! # Keys
//!
//! Every key of room `R` carries the hash tag `{R}`, so one room's keys live on one Cluster slot and a Lua script
//! may touch them all:
//!
//! | key                          | type | contents                                                             |
//! |------------------------------|------|----------------------------------------------------------------------|
//! | `podium:{R}:meta`            | hash | `seq`: the room's sequence number (decimal); `fields`: room fields   |
//! | `podium:{R}:participants`    | hash | identity → participant record                                        |
//! | `podium:{R}:bans`            | set  | banned identities                                                    |
//! | `podium:{R}:guests`          | set  | the closed room's guest list                                         |
//!
//! Records are JSON (see `codec.rs`). A room exists exactly when its `meta` hash has a `seq`.
//!
//! # Round trips
//!
//! `commit` is one `EVALSHA` of [`COMMIT_LUA`]: it compares the stored `seq` with the commit's base, and only then
//! writes every change and the new `seq`, atomically (a script runs alone; with `appendfsync always` its effects
//! reach the AOF before the reply). After Redis restarted (script cache empty) the first commit on a connection costs
//! two more round trips (`NOSCRIPT`, `SCRIPT LOAD`, `EVALSHA` again). `load` is one `EVALSHA` of [`LOAD_LUA`] (a
//! consistent snapshot); `remove` is one `DEL` of the four keys.
//!
//! # Failures
//!
//! Every Redis error is [`StoreError::Unavailable`]: nothing panics, and the connection reconnects by itself
//! (`ConnectionManager`, or the cluster client's own reconnection). A commit whose connection dropped after sending,
//! or whose reply did not come in time, may or may not have been applied (a stalled Redis runs it when it wakes);
//! the writer learns which from its next commit (a [`StoreError::Conflict`] whose `found` is the new sequence
//! number) or by loading.
//!
//! Redis being down must not hold up the callers (a room task waits for its commits): every operation is bounded
//! by [`RedisOptions::response_timeout`], and a circuit breaker fails operations at once (without sending them)
//! while Redis is known to be unreachable. An outage (a connection error, a timeout, `LOADING`) opens the breaker
//! for [`RedisOptions::breaker_open`]; a background probe (`PING` every [`RedisOptions::probe_interval`]) keeps it
//! open while Redis stays unreachable and closes it as soon as Redis answers. Should the probe not run (no
//! multi-threaded runtime to drive it), the breaker lets a trial operation through once the period has passed.
//! [`RedisStore::open`] does not need Redis to be up: the first connection is made by the probe (or a trial).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Cmd, Pipeline, RedisError, RedisFuture, Script, Value};
use podium_room::{Changes, ParticipantId, RoomState};

use crate::codec;
use crate::{RoomStore, StoreError};

/// The commit script. KEYS: meta, participants, bans, guests. ARGV: base seq, new seq, encoded room fields (empty:
/// unchanged), number of removed ids, number of upserted participants, number of bans (-1: unchanged), number of
/// guests (-1: unchanged), then the removed ids, the upserted (id, record) pairs, the bans, the guests, and
/// optionally a channel and a message, published after the writes (so announcements leave in commit order, and only
/// for commits that took place). Returns `{"ok"}`, or `{"conflict"}` (no such room) / `{"conflict", found_seq}`.
pub const COMMIT_LUA: &str = r"
local found = redis.call('HGET', KEYS[1], 'seq')
if not found then
  if ARGV[1] ~= '0' or ARGV[3] == '' then return {'conflict'} end
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
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
local i = 8
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
if ARGV[i] then redis.call('PUBLISH', ARGV[i], ARGV[i + 1]) end
return {'ok'}
";

/// The load script. KEYS as for [`COMMIT_LUA`]. Returns nil (no such room) or
/// `{seq, fields, {id, record, ...}, bans, guests}`.
pub const LOAD_LUA: &str = r"
local seq = redis.call('HGET', KEYS[1], 'seq')
if not seq then return false end
local fields = redis.call('HGET', KEYS[1], 'fields') or ''
return {seq, fields, redis.call('HGETALL', KEYS[2]), redis.call('SMEMBERS', KEYS[3]), redis.call('SMEMBERS', KEYS[4])}
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

/// Releases the room's timer lease if this node holds it. KEYS: the owner key. ARGV: node id.
pub const RELEASE_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// The key naming the node that runs `room`'s timers (a lease: it expires unless renewed).
pub fn owner_key(room: &str) -> String {
    format!("podium:{{{room}}}:owner")
}

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
}

impl Link {
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

    /// Makes a new connection, bounded by the connect and response timeouts.
    async fn establish(&self) -> Result<Conn, StoreError> {
        let bound = self.options.connect_timeout + self.options.response_timeout;
        let made = tokio::time::timeout(bound, async {
            match &self.target {
                Target::Single(client) => {
                    let config = ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(self.options.connect_timeout))
                        .set_response_timeout(Some(self.options.response_timeout))
                        .set_number_of_retries(self.options.reconnect_retries)
                        .set_max_delay(Duration::from_millis(200));
                    ConnectionManager::new_with_config(client.clone(), config).await.map(Conn::Single)
                }
                Target::Cluster(client) => client.get_async_connection().await.map(Conn::Cluster),
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
            return Err(StoreError::Unavailable(
                "redis is unreachable (failing fast; reconnecting in the background)".into(),
            ));
        }
        let existing = self.lock_conn().clone();
        match existing {
            Some(conn) => Ok(conn),
            None => self.establish().await.inspect_err(|_| self.trip()),
        }
    }

    /// Runs one operation on the connection, bounded by the response timeout; an outage opens the breaker.
    async fn run<T, F>(self: &Arc<Self>, op: impl FnOnce(Conn) -> F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, RedisError>>,
    {
        let conn = self.conn().await?;
        match tokio::time::timeout(self.options.response_timeout, op(conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if is_outage(&e) {
                    self.trip();
                }
                Err(unavailable(&e))
            }
            Err(_) => {
                self.trip();
                Err(StoreError::Unavailable(format!("no reply from redis within {:?}", self.options.response_timeout)))
            }
        }
    }

    /// Opens the breaker (or extends it) and starts the probe if none runs.
    fn trip(self: &Arc<Self>) {
        *self.lock_open() = Some(Instant::now() + self.options.breaker_open);
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
    /// A single-node URL for subscriptions (for a cluster, its first seed node: `PUBLISH` reaches every node).
    pubsub_url: String,
    commit_script: Script,
    load_script: Script,
    claim_script: Script,
    release_script: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.link.target {
            Target::Single(_) => "single",
            Target::Cluster(_) => "cluster",
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

impl RedisStore {
    /// Connects to `url`: `redis://[user:password@]host:port[/db]` (one server), or
    /// `redis+cluster://[user:password@]host:port,host:port,...` (a Redis Cluster, discovered from these seed nodes).
    /// Fails when the URL is malformed or Redis cannot be reached now; afterwards, dropped connections are
    /// re-established by themselves.
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
            }),
            pubsub_url,
            commit_script: Script::new(COMMIT_LUA),
            load_script: Script::new(LOAD_LUA),
            claim_script: Script::new(CLAIM_LUA),
            release_script: Script::new(RELEASE_LUA),
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
        let mut invocation = self.commit_script.prepare_invoke();
        for key in room_keys(room) {
            invocation.key(key);
        }
        for arg in commit_args(changes) {
            invocation.arg(arg);
        }
        if let Some(text) = announcement {
            invocation.arg(crate::bus::events_channel(room)).arg(text);
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

    /// Gives up `room`'s timer lease if `node` holds it.
    pub async fn release_owner(&self, room: &str, node: &str) -> Result<(), StoreError> {
        let mut invocation = self.release_script.prepare_invoke();
        invocation.key(owner_key(room)).arg(node);
        let _: i64 = self.link.run(|mut conn| async move { invocation.invoke_async(&mut conn).await }).await?;
        Ok(())
    }

    /// Sends `PING` (a health check).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.link
            .run(|mut conn| async move { ::redis::cmd("PING").query_async::<String>(&mut conn).await })
            .await
            .map(drop)
    }

    /// Subscribes to every room's announcements on a connection of its own; each item is `(room, message)`. The
    /// stream ends when the connection drops (messages sent meanwhile are lost: resubscribe and reload). Fails
    /// within the connect and response timeouts when Redis does not answer.
    pub async fn subscribe_all(&self) -> Result<Subscription, StoreError> {
        let client = ::redis::Client::open(self.pubsub_url.as_str()).map_err(|e| unavailable(&e))?;
        let bound = self.link.options.connect_timeout + self.link.options.response_timeout;
        let subscribed = tokio::time::timeout(bound, async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.psubscribe(crate::bus::EVENTS_PATTERN).await?;
            Ok::<_, RedisError>(pubsub)
        })
        .await;
        match subscribed {
            Ok(Ok(pubsub)) => Ok(Subscription { stream: pubsub.into_on_message() }),
            Ok(Err(e)) => Err(unavailable(&e)),
            Err(_) => Err(StoreError::Unavailable(format!("no subscription to redis within {bound:?}"))),
        }
    }
}

/// Every room's announcements ([`RedisStore::subscribe_all`]).
pub struct Subscription {
    stream: ::redis::aio::PubSubStream,
}

impl Subscription {
    /// The next `(room, message)`; `None` when the connection dropped.
    pub async fn next(&mut self) -> Option<(String, String)> {
        use futures_util::StreamExt as _;
        loop {
            let msg = self.stream.next().await?;
            let Some(room) = crate::bus::channel_room(msg.get_channel_name()) else { continue };
            let Ok(text) = std::str::from_utf8(msg.get_payload_bytes()) else { continue };
            return Some((room.to_owned(), text.to_owned()));
        }
    }
}

/// The arguments of [`COMMIT_LUA`] for `changes`.
fn commit_args(changes: &Changes) -> Vec<String> {
    let list_len =
        |l: &Option<Vec<ParticipantId>>| l.as_ref().map_or(-1, |l| i64::try_from(l.len()).unwrap_or(i64::MAX));
    let mut args = Vec::with_capacity(
        7 + changes.removed.len()
            + 2 * changes.upserted.len()
            + changes.bans.as_ref().map_or(0, Vec::len)
            + changes.guests.as_ref().map_or(0, Vec::len),
    );
    args.push(changes.base_seq.to_string());
    args.push(changes.seq.to_string());
    args.push(changes.room.as_ref().map(codec::encode_fields).unwrap_or_default());
    args.push(changes.removed.len().to_string());
    args.push(changes.upserted.len().to_string());
    args.push(list_len(&changes.bans).to_string());
    args.push(list_len(&changes.guests).to_string());
    args.extend(changes.removed.iter().map(|id| id.as_str().to_owned()));
    for p in &changes.upserted {
        args.push(p.id.as_str().to_owned());
        args.push(codec::encode_participant(p));
    }
    for list in [&changes.bans, &changes.guests].into_iter().flatten() {
        args.extend(list.iter().map(|id| id.as_str().to_owned()));
    }
    args
}

type Loaded = (String, String, Vec<String>, Vec<String>, Vec<String>);

fn decode_state(loaded: Loaded) -> Result<RoomState, String> {
    let (seq, fields, participants, bans, guests) = loaded;
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
        participants: list,
        bans: sorted(bans),
        guests: sorted(guests),
    })
}

impl RoomStore for RedisStore {
    async fn load(&self, room: &str) -> Result<Option<RoomState>, StoreError> {
        let mut invocation = self.load_script.prepare_invoke();
        for key in room_keys(room) {
            invocation.key(key);
        }
        let loaded: Option<Loaded> =
            self.link.run(|mut conn| async move { invocation.invoke_async(&mut conn).await }).await?;
        loaded.map(decode_state).transpose().map_err(|e| StoreError::Corrupt(format!("room {room:?}: {e}")))
    }

    async fn commit(&self, room: &str, changes: &Changes) -> Result<(), StoreError> {
        self.commit_announced(room, changes, None).await
    }

    async fn remove(&self, room: &str) -> Result<(), StoreError> {
        let mut cmd = ::redis::cmd("DEL");
        cmd.arg(&room_keys(room));
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
