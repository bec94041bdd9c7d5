//! The hub: accepts websocket connections and keeps the directory of running room tasks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use podium_room::{Changes, RoomState};
use podium_store::{Lease, MemoryStore, NodeInfo, NodeStatus, RedisOptions, RedisStore, RoomStore as _, StoreError};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::admission::Admission;
use crate::auth::TokenKeys;
use crate::config::{Config, StoreConfig};
use crate::room_task::{self, RoomHandle, RoomMsg};

/// State shared by every task of one hub.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) keys: TokenKeys,
    pub(crate) store: Persistence,
    /// The summit store beside it (`summit`).
    pub(crate) summits: crate::summit::Summits,
    /// Wakes this hub's summit runner (an admin request queued a command or released a schedule).
    pub(crate) summit_wake: Arc<tokio::sync::Notify>,
    /// The summit scheduler's clock (`[summit] time_scale`).
    pub(crate) summit_clock: crate::summit::Clock,
    /// Subscribes room tasks to their room's announcements (Redis only; `bus`).
    pub(crate) watches: Option<crate::bus::Watches>,
    /// The SFU, when `[media] enabled`.
    pub(crate) media: Option<podium_media::Media>,
    /// Running room tasks by room name. The lock guards only this map (looked up at join, changed when a room
    /// starts or ends), never a room's state: each room's state is owned by its task.
    rooms: Mutex<HashMap<String, RoomHandle>>,
    next_generation: AtomicU64,
    shutdown: watch::Sender<bool>,
    /// Set when `Hub::run` is done (connections closed). The announcement subscription and the node heartbeat run
    /// until then, not just until `shutdown`: a draining hub must still get the new media hub's `media_moved` and
    /// the answers to the media requests it relays for its clients, and must not be taken for gone (its clients'
    /// grace periods started) while they are still connected to it.
    stopped: watch::Sender<bool>,
    n_connections: AtomicUsize,
    /// The admin API's keys (`[admin] keys`).
    pub(crate) admin_keys: crate::admin::AdminKeys,
    /// The admin API's request rate per caller (`[admin] requests_per_second`).
    pub(crate) admin_rate: crate::admin::AdminRate,
    /// The admin API's idempotency keys, with the in-memory store (with Redis they live there).
    pub(crate) idempotency: crate::admin::idempotency::MemoryKeys,
    /// Per-source limits on connections that have not joined (and the summary of refused tokens).
    pub(crate) admission: Arc<Admission>,
    resume_secret: [u8; 16],
    /// This hub's name among the hubs sharing a Redis store (random per process): announcements carry it, and it
    /// holds room timer leases.
    pub(crate) node_id: String,
    /// The room media epoch this hub uses with the in-memory store (no lease): random per process, so clients of a
    /// restarted hub know their peer connections are dead.
    pub(crate) local_media_epoch: u64,
    /// Media requests relayed to other hubs, waiting for their answers.
    pub(crate) relayed: crate::relay::Pending,
    /// Set when the hub drains (SIGTERM with a shared store): rooms stop claiming leases.
    pub(crate) draining: AtomicBool,
    /// The shutdown asked for is a drain (hand rooms to other hubs first).
    drain_requested: AtomicBool,
    /// What the node registry said last (shared store only).
    pub(crate) registry: Mutex<Registry>,
    /// Webhooks and the audit log (`webhooks` module).
    pub(crate) hooks: Arc<crate::webhooks::Hooks>,
    /// Bounds the replay mixes running at once (`[recording] max_concurrent_mixes`).
    pub(crate) mixer: crate::recording::Mixer,
    /// What `/metrics` exports (`metrics` module).
    pub(crate) metrics: crate::metrics::Metrics,
    /// TLS on the listening socket (`[tls]`).
    pub(crate) tls: Option<crate::tls::Tls>,
}

/// The last reading of the node registry.
#[derive(Default)]
pub(crate) struct Registry {
    /// When it was read (`None`: never yet).
    pub(crate) read_at: Option<tokio::time::Instant>,
    /// Every registered hub, with whether it heartbeats.
    pub(crate) nodes: Vec<NodeStatus>,
}

impl Registry {
    /// Hubs that heartbeat, by id; `None` unless the registry was read within `fresh`.
    pub(crate) fn alive(&self, fresh: Duration) -> Option<std::collections::HashSet<String>> {
        let read_at = self.read_at?;
        (read_at.elapsed() <= fresh).then(|| self.nodes.iter().filter(|n| n.alive).map(|n| n.info.id.clone()).collect())
    }
}

impl Shared {
    /// The running task for `room`, started if there is none.
    pub(crate) fn room(self: &Arc<Self>, room: &str) -> RoomHandle {
        let mut rooms = self.lock_rooms();
        if let Some(handle) = rooms.get(room)
            && !handle.inbox.is_closed()
        {
            return handle.clone();
        }
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let handle = room_task::spawn(Arc::clone(self), room.to_owned(), generation);
        rooms.insert(room.to_owned(), handle.clone());
        handle
    }

    /// The running task for `room`, if there is one (never starts one).
    pub(crate) fn running_room(&self, room: &str) -> Option<RoomHandle> {
        self.lock_rooms().get(room).filter(|h| !h.inbox.is_closed()).cloned()
    }

    /// Every running room task.
    pub(crate) fn running_rooms(&self) -> Vec<RoomHandle> {
        self.lock_rooms().values().cloned().collect()
    }

    /// Every running room task, with its room's name.
    pub(crate) fn running_room_names(&self) -> Vec<(String, RoomHandle)> {
        self.lock_rooms().iter().map(|(name, handle)| (name.clone(), handle.clone())).collect()
    }

    /// How many room tasks run (for metrics).
    pub(crate) fn running_room_count(&self) -> usize {
        self.lock_rooms().len()
    }

    /// Open TCP connections, HTTP and websockets (for metrics).
    pub(crate) fn connection_count(&self) -> usize {
        self.n_connections.load(Ordering::Relaxed)
    }

    /// Removes a room task that ended (unless a newer task already took its place).
    pub(crate) fn forget_room(&self, room: &str, generation: u64) {
        let mut rooms = self.lock_rooms();
        if rooms.get(room).is_some_and(|h| h.generation == generation) {
            rooms.remove(room);
        }
    }

    pub(crate) fn lock_registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        // Only whole-value assignments and reads happen under this lock.
        self.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Starts a drain (see [`ShutdownHandle::drain`]).
    pub(crate) fn request_drain(&self) {
        self.drain_requested.store(true, Ordering::Release);
        let _ = self.shutdown.send(true);
    }

    /// True once a shutdown or drain was asked for.
    pub(crate) fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// This hub's entry in the node registry.
    pub(crate) fn node_info(&self) -> NodeInfo {
        NodeInfo { id: self.node_id.clone(), url: self.config.server.public_url.clone(), draining: self.is_draining() }
    }

    fn lock_rooms(&self) -> std::sync::MutexGuard<'_, HashMap<String, RoomHandle>> {
        // Every critical section on this map is a single insert, get or remove, which cannot leave it half-changed,
        // so a poisoned lock is still consistent.
        self.rooms.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn shutdown_rx(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Changes once the hub has stopped (see `stopped`).
    pub(crate) fn stopped_rx(&self) -> watch::Receiver<bool> {
        self.stopped.subscribe()
    }

    /// An opaque token naming this participant's session in this room on this hub.
    pub(crate) fn resume_token(&self, room: &str, identity: &str) -> String {
        use std::hash::{BuildHasher as _, Hasher as _};
        // Not a credential (the access token is): it only tells a client which session it is resuming.
        let mut h = std::hash::RandomState::new().build_hasher();
        h.write(&self.resume_secret);
        h.write(room.as_bytes());
        h.write(identity.as_bytes());
        format!("{:016x}{:016x}", h.finish(), rand::random::<u64>())
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The SFU's worker threads would otherwise outlive a hub that never ran or whose tasks all ended.
        if let Some(media) = &self.media {
            media.shutdown();
        }
    }
}

/// The hub's handle on its store (`[store] url`).
#[allow(clippy::large_enum_variant)] // One per hub, inside `Shared`: boxing would only add an indirection.
pub(crate) enum Persistence {
    /// Rooms in this process only.
    Memory(MemoryStore),
    /// Rooms in Redis.
    Redis(RedisStore),
}

impl Persistence {
    /// Opens the store `config` names. A malformed URL fails at startup; an unreachable Redis does not: the hub
    /// starts degraded (rooms answer `unavailable`) and connects when Redis is up.
    async fn open(config: &StoreConfig) -> anyhow::Result<Self> {
        if config.is_memory() {
            return Ok(Self::Memory(MemoryStore::new()));
        }
        let store = RedisStore::open(&config.url, &RedisOptions::default())
            .await
            .with_context(|| format!("opening the store {}", config.url))?;
        if store.is_degraded() {
            warn!(url = %config.url, "room store: redis, unreachable for now; rooms answer `unavailable` until it is up");
        } else {
            info!(url = %config.url, "room store: redis");
        }
        Ok(Self::Redis(store))
    }

    /// Up to `limit` stored room names after `after`, by name.
    pub(crate) async fn rooms_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, StoreError> {
        match self {
            Self::Memory(s) => s.rooms_after(after, limit).await,
            Self::Redis(s) => s.rooms_after(after, limit).await,
        }
    }

    pub(crate) async fn load(&self, room: &str) -> Result<Option<RoomState>, StoreError> {
        match self {
            Self::Memory(s) => s.load(room).await,
            Self::Redis(s) => s.load(room).await,
        }
    }

    /// True when other hubs may share the rooms (Redis): transitions are announced, and timers need the lease.
    pub(crate) fn is_shared(&self) -> bool {
        matches!(self, Self::Redis(_))
    }

    /// Publishes an announcement without a transition (nothing to do in memory).
    pub(crate) async fn publish(&self, room: &str, announcement: &str) -> Result<(), StoreError> {
        match self {
            Self::Memory(_) => Ok(()),
            Self::Redis(s) => s.publish(room, announcement).await,
        }
    }

    /// Stores one transition (an error means it was not acknowledged, see [`StoreError`]) and, on Redis, publishes
    /// `announcement` with it (see [`RedisStore::commit_present`]), also recording (when `present` is set) which hub
    /// that participant is connected to, and writing the transition's webhook events and audit entries (`at`):
    /// with Redis in the commit's script (after adding the room to the webhook index when `at.touch`), in memory
    /// right after the commit succeeded.
    pub(crate) async fn commit_with(
        &self,
        room: &str,
        changes: &Changes,
        announcement: Option<&str>,
        present: Option<(&str, &str)>,
        at: Option<&crate::webhooks::AtCommit>,
    ) -> Result<(), StoreError> {
        match self {
            Self::Memory(s) => s.commit(room, changes).await,
            Self::Redis(s) => {
                if at.is_some_and(|at| at.touch) {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                    s.hooks_touch(room, now).await?;
                }
                s.commit_with(room, changes, announcement, present, at.map(|at| &at.extras)).await
            }
        }
    }

    /// Claims or renews the room's lease (timers and media); in memory this hub always holds it.
    pub(crate) async fn claim_media(&self, room: &str, node: &str, lease: Duration) -> Result<Lease, StoreError> {
        match self {
            Self::Memory(_) => Ok(Lease { held: true, holder: Some(node.to_owned()), epoch: 0 }),
            Self::Redis(s) => s.claim_media(room, node, lease).await,
        }
    }

    /// Who holds the room's lease, without claiming it.
    pub(crate) async fn media_holder(&self, room: &str, node: &str) -> Result<Lease, StoreError> {
        match self {
            Self::Memory(_) => Ok(Lease { held: true, holder: Some(node.to_owned()), epoch: 0 }),
            Self::Redis(s) => s.media_holder(room, node).await,
        }
    }

    /// Which hub each participant of the room is connected to (Redis only; empty in memory).
    pub(crate) async fn presence(&self, room: &str) -> Result<HashMap<String, String>, StoreError> {
        match self {
            Self::Memory(_) => Ok(HashMap::new()),
            Self::Redis(s) => s.presence(room).await,
        }
    }

    /// Sends a hub-to-hub message (Redis only); the number of hubs that received it.
    pub(crate) async fn send_to_node(&self, node: &str, text: &str) -> Result<u64, StoreError> {
        match self {
            Self::Memory(_) => Ok(0),
            Self::Redis(s) => s.send_to_node(node, text).await,
        }
    }

    /// Gives up the room's timer lease (if held).
    pub(crate) async fn release_owner(&self, room: &str, node: &str) {
        if let Self::Redis(s) = self
            && let Err(e) = s.release_owner(room, node).await
        {
            warn!(error = %e, "releasing a room's timer lease failed (it expires by itself)");
        }
    }

    pub(crate) async fn remove(&self, room: &str) {
        let result = match self {
            Self::Memory(s) => s.remove(room).await,
            Self::Redis(s) => s.remove(room).await,
        };
        if let Err(e) = result {
            warn!(error = %e, "forgetting an ended room failed");
        }
    }
}

/// Answers a connection refused by admission with `429 Too Many Requests` and closes it.
async fn refuse(stream: tokio::net::TcpStream, refusal: crate::admission::Refusal) {
    answer_and_close(stream, refusal.http_response().as_bytes()).await;
}

/// Writes a plain HTTP answer on a connection and closes it, reading (and discarding) what the client sent meanwhile
/// so the answer is not lost to a reset; at most [`REFUSE_GRACE`].
pub(crate) async fn answer_and_close(mut stream: tokio::net::TcpStream, answer: &[u8]) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let _ = tokio::time::timeout(REFUSE_GRACE, async {
        stream.write_all(answer).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 512];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// How long a refused connection is kept to deliver its answer.
const REFUSE_GRACE: Duration = Duration::from_millis(500);

/// A bound, not yet running hub.
pub struct Hub {
    listener: TcpListener,
    shared: Arc<Shared>,
    media_events: Option<podium_media::MediaEvents>,
    /// This hub's pub/sub connection (Redis only), subscribed before the first client can join a room.
    subscription: Option<podium_store::Subscription>,
    /// The room tasks' requests to watch their rooms on that connection (Redis only).
    watch_requests: Option<crate::bus::WatchRequests>,
}

/// Tells a running hub to shut down; dropping it does not.
#[derive(Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
}

impl ShutdownHandle {
    /// Starts a graceful shutdown: no new connections, every client told `server_shutdown`.
    pub fn shutdown(&self) {
        let _ = self.shared.shutdown.send(true);
    }

    /// Starts a drain (what SIGTERM does): with a shared store and another live hub, this hub stops taking
    /// connections, hands each room (and its media) to the other hub, then closes its connections with
    /// `server_shutdown` so clients reconnect there and resume. Otherwise the same as [`Self::shutdown`].
    pub fn drain(&self) {
        self.shared.request_drain();
    }
}

impl Hub {
    /// Binds the listening socket.
    pub async fn bind(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        // The certificate first: a bad file stops the hub before it binds or starts anything.
        let metrics = crate::metrics::Metrics::new();
        let tls = crate::tls::Tls::new(&config.tls, metrics.tls())?;
        let listener = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("binding {}", config.server.listen))?;
        let (shutdown, _) = watch::channel(false);
        let (stopped, _) = watch::channel(false);
        let store = Persistence::open(&config.store).await?;
        // Subscribed before the first client can join a room, when Redis is up; otherwise `bus::follow` keeps
        // trying (rooms cannot start meanwhile: they watch their room on this connection before loading it).
        let node_id = format!("{:016x}", rand::random::<u64>());
        let subscription = match &store {
            Persistence::Redis(redis) if !redis.is_degraded() => match redis.subscribe(&node_id).await {
                Ok(subscription) => Some(subscription),
                Err(e) => {
                    warn!(error = %e, "subscribing to room announcements failed; retrying in the background");
                    None
                }
            },
            Persistence::Redis(_) | Persistence::Memory(_) => None,
        };
        let (media, media_events) = if config.media.enabled {
            let (media, events) = podium_media::Media::start(podium_media::MediaConfig {
                record_queue: config.recording.queue_packets,
                ..config.media.media_config()
            })
            .context("starting the SFU")?;
            info!(sockets = ?media.local_addrs(), "media plane listening");
            (Some(media), Some(events))
        } else {
            (None, None)
        };
        let redis = match &store {
            Persistence::Redis(redis) => Some(redis.clone()),
            Persistence::Memory(_) => None,
        };
        let (watches, watch_requests) = match &redis {
            Some(_) => {
                let (watches, requests) = crate::bus::Watches::new();
                (Some(watches), Some(requests))
            }
            None => (None, None),
        };
        let hooks = Arc::new(crate::webhooks::Hooks::new(&config.webhooks, &config.audit, &node_id, redis));
        let shared = Arc::new(Shared {
            hooks,
            mixer: crate::recording::Mixer::new(&config.recording),
            metrics,
            tls,
            keys: TokenKeys::new(config.auth.secret().as_bytes()),
            summit_wake: Arc::default(),
            summit_clock: crate::summit::Clock::new(&config.summit),
            summits: match &store {
                Persistence::Memory(_) => crate::summit::Summits::Memory(Arc::default()),
                Persistence::Redis(r) => crate::summit::Summits::Redis(Box::new(r.clone())),
            },
            store,
            watches,
            media,
            rooms: Mutex::new(HashMap::new()),
            next_generation: AtomicU64::new(1),
            shutdown,
            stopped,
            n_connections: AtomicUsize::new(0),
            admin_keys: crate::admin::AdminKeys::new(&config.admin),
            admin_rate: crate::admin::AdminRate::new(&config.admin),
            idempotency: crate::admin::idempotency::MemoryKeys::default(),
            admission: Admission::new(&config.limits, config.server.trusted_proxies.clone()),
            resume_secret: rand::random(),
            node_id,
            // Below 2^53, so JavaScript clients read it exactly.
            local_media_epoch: u64::from(rand::random::<u32>()) + 1,
            relayed: crate::relay::Pending::default(),
            draining: AtomicBool::new(false),
            drain_requested: AtomicBool::new(false),
            registry: Mutex::new(Registry::default()),
            config,
        });
        Ok(Self { listener, shared, media_events, subscription, watch_requests })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        // unwrap_or: a bound TcpListener always has a local address; the fallback is never used.
        self.listener.local_addr().unwrap_or_else(|_| self.shared.config.server.listen)
    }

    /// This hub's id in the node registry and in announcements (random per process).
    pub fn node_id(&self) -> &str {
        &self.shared.node_id
    }

    /// True when rooms live in a shared store (Redis), so other hubs may serve them too.
    pub fn is_shared(&self) -> bool {
        self.shared.store.is_shared()
    }

    /// The SFU's UDP addresses (empty when media is disabled).
    pub fn media_addrs(&self) -> Vec<SocketAddr> {
        self.shared.media.as_ref().map(podium_media::Media::local_addrs).unwrap_or_default()
    }

    /// Webhook delivery status and the audit log, for the admin API.
    pub fn webhooks(&self) -> crate::webhooks::Webhooks {
        crate::webhooks::Webhooks(Arc::clone(&self.shared.hooks))
    }

    /// A handle to reload the TLS certificate (`None` without `[tls]`).
    pub fn tls_handle(&self) -> Option<crate::tls::TlsHandle> {
        self.shared.tls.as_ref().map(crate::tls::Tls::handle)
    }

    /// A handle to stop the hub later.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle { shared: Arc::clone(&self.shared) }
    }

    /// Accepts connections until shut down, then closes every connection with `server_shutdown`.
    pub async fn run(self) -> anyhow::Result<()> {
        let Self { listener, shared, media_events, subscription, watch_requests } = self;
        if let Some(events) = media_events {
            tokio::spawn(crate::media::dispatch(Arc::clone(&shared), events));
        }
        // Webhook delivery runs until the hub has stopped (a draining hub keeps delivering meanwhile).
        tokio::spawn(crate::webhooks::run(Arc::clone(&shared.hooks), shared.stopped.subscribe()));
        crate::summit::spawn_runner(&shared, Arc::clone(&shared.summit_wake), shared.shutdown_rx());
        if let Some(tls) = &shared.tls {
            tokio::spawn(tls.watcher(shared.shutdown_rx()));
        }
        let heartbeat = match &shared.store {
            Persistence::Redis(store) => {
                // Always set with Redis (`bind`).
                if let Some(requests) = watch_requests {
                    tokio::spawn(crate::bus::follow(Arc::clone(&shared), store.clone(), subscription, requests));
                }
                tokio::spawn(crate::leases::keep(Arc::clone(&shared), store.clone()));
                Some(tokio::spawn(crate::nodes::heartbeat(Arc::clone(&shared), store.clone())))
            }
            Persistence::Memory(_) => None,
        };
        let mut shutdown = shared.shutdown_rx();
        let router = crate::http::router(Arc::clone(&shared));
        let mut next_conn: u64 = 1;
        let mut sweep = tokio::time::interval(crate::admission::SWEEP_INTERVAL);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        info!(addr = %listener.local_addr()?, "hub listening");
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(x) => x,
                        Err(e) => {
                            // Typically EMFILE: back off instead of spinning; logged as a summary.
                            shared.admission.accept_failed(&e);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let n = shared.n_connections.fetch_add(1, Ordering::AcqRel);
                    if n >= shared.config.server.max_connections {
                        shared.n_connections.fetch_sub(1, Ordering::AcqRel);
                        shared.admission.refused_at_capacity();
                        drop(stream);
                        continue;
                    }
                    // Connections from a trusted proxy are admitted by the client address its headers name.
                    let ticket = if shared.admission.is_trusted_proxy(peer.ip()) {
                        None
                    } else {
                        match shared.admission.admit(peer.ip()) {
                            Ok(ticket) => Some(ticket),
                            // With TLS, before any handshake work: a plain 429 would mean nothing to the client.
                            Err(_) if shared.tls.is_some() => {
                                drop(stream);
                                shared.n_connections.fetch_sub(1, Ordering::AcqRel);
                                continue;
                            }
                            Err(refusal) => {
                                let shared = Arc::clone(&shared);
                                tokio::spawn(async move {
                                    refuse(stream, refusal).await;
                                    shared.n_connections.fetch_sub(1, Ordering::AcqRel);
                                });
                                continue;
                            }
                        }
                    };
                    let conn_id = next_conn;
                    next_conn += 1;
                    let accepted = crate::http::Accepted { stream, peer, conn_id, ticket };
                    // The connection counts until its task ends (or is dropped).
                    let counted = ConnectionCount(Arc::clone(&shared));
                    let serve = crate::http::serve(Arc::clone(&shared), router.clone(), accepted);
                    tokio::spawn(async move {
                        serve.await;
                        drop(counted);
                    });
                }
                _ = sweep.tick() => shared.admission.sweep(),
            }
        }
        drop(listener);
        if shared.drain_requested.load(Ordering::Acquire)
            && let Persistence::Redis(store) = &shared.store
        {
            let timeout = Duration::from_millis(shared.config.server.drain_timeout_ms);
            crate::nodes::drain(&shared, store, timeout).await;
        }
        let rooms = shared.running_rooms();
        info!(rooms = rooms.len(), "shutting down");
        for room in rooms {
            let _ = room.inbox.send(RoomMsg::Shutdown).await;
        }
        let grace = Duration::from_millis(shared.config.server.shutdown_grace_ms);
        let deadline = tokio::time::Instant::now() + grace;
        while shared.n_connections.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(media) = &shared.media {
            media.shutdown();
        }
        // The subscription and the heartbeat end here (before leaving the registry, which a heartbeat would undo).
        let _ = shared.stopped.send(true);
        if let Some(heartbeat) = heartbeat {
            // A heartbeat already on its way would put the entry back after `forget_node`.
            let _ = tokio::time::timeout(Duration::from_secs(1), heartbeat).await;
        }
        if let Persistence::Redis(store) = &shared.store
            && let Err(e) = store.forget_node(&shared.node_id).await
        {
            debug!(error = %e, "leaving the node registry failed (the entry ages out)");
        }
        info!(left = shared.n_connections.load(Ordering::Acquire), "hub stopped");
        Ok(())
    }
}

/// Counts one connection in `Shared::n_connections` until dropped.
struct ConnectionCount(Arc<Shared>);

impl Drop for ConnectionCount {
    fn drop(&mut self) {
        self.0.n_connections.fetch_sub(1, Ordering::AcqRel);
    }
}
