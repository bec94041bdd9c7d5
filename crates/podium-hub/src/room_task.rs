//! One task per room. It alone owns the room's [`podium_room::Room`]; connections talk to it through its bounded
//! inbox, and it talks back through each connection's [`Link`]. Fan-out serialises an event once and hands the same
//! bytes to every recipient's queue without waiting: a connection that falls behind is marked lagged, skipped, and
//! later sent one `resync` snapshot instead of the events it missed (or closed if it stays behind too long).
//!
//! Every transition is committed to the store before its outputs take effect. When a commit fails, the transition is
//! void: the room goes back to the last committed state (kept here as `committed`), its outputs are dropped, the
//! request gets `unavailable`, and the task retries what a rolled-back transition would have done to the room's
//! connections (grace periods for dropped connections) and its timers after a short backoff. A conflict (the store
//! holds a newer version than this task: another writer, or a commit whose reply was lost) reloads the room from the
//! store and sends every connection a `resync`; a request whose transition lost such a race runs again on the
//! reloaded room (a few times), so it is answered as the newer room decides (`stage_full`, say).
//!
//! With a shared store (Redis), several hubs may run a task for the same room. Each commit is announced to the
//! others with its changes and its outputs as ready-made frames (see `bus` and `podium_store::bus`); they apply the
//! changes with [`Room::apply_changes`] and deliver the frames to their own connections, without re-running the
//! transition. A gap in sequence numbers reloads the room from the store and resyncs this hub's connections. A hub
//! only feeds the room inputs from its own connections (it never disconnects a participant connected elsewhere),
//! and only the hub holding the room's timer lease (`podium:{room}:owner`) runs its timers.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use podium_proto::{self as proto, CloseCode, ErrorCode};
use podium_room::{self as room, ParticipantId, Room, RoomState};
use podium_store::{Announced, Announcement, StoreError};
use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tracing::{Instrument as _, debug, error, info, trace, warn};

use crate::auth::Grant;
use crate::convert;
use crate::hub::Shared;
use crate::link::Link;
use crate::media::{self, MediaRequest};

/// An error reply: code and human-readable message.
pub(crate) type Failure = (ErrorCode, String);

/// A message to a room task.
#[derive(Debug)]
pub(crate) enum RoomMsg {
    /// A verified connection asks to join.
    Join {
        grant: Grant,
        role: Option<room::Role>,
        protocol: u32,
        link: Link,
        reply: oneshot::Sender<Result<Box<proto::Welcome>, Failure>>,
    },
    /// A joined connection's request.
    Command {
        who: ParticipantId,
        conn_id: u64,
        command: room::Command,
        reply: oneshot::Sender<Result<Option<proto::Reply>, Failure>>,
    },
    /// A joined connection dropped: start the grace period.
    Disconnect { who: ParticipantId, conn_id: u64 },
    /// A joined connection sent `leave`.
    Leave { who: ParticipantId, conn_id: u64, reply: oneshot::Sender<()> },
    /// A joined connection's media request (offer, answer, candidate).
    Media {
        who: ParticipantId,
        conn_id: u64,
        request: MediaRequest,
        reply: oneshot::Sender<Result<Option<proto::Reply>, Failure>>,
    },
    /// A media request finished in the SFU: remove the peer again if its participant left meanwhile.
    MediaSettled { who: ParticipantId },
    /// An event from the SFU for this room.
    MediaEvent(podium_media::MediaEvent),
    /// Another hub committed a transition of this room (or announced outputs without one).
    Remote(Box<Announcement>),
    /// Announcements may have been missed (the subscription was re-established): compare with the store.
    Recheck,
    /// The hub is shutting down: close every connection with `server_shutdown`.
    Shutdown,
}

/// The handle the directory keeps for a running room task.
#[derive(Clone, Debug)]
pub(crate) struct RoomHandle {
    /// Distinguishes successive tasks for the same room name.
    pub(crate) generation: u64,
    pub(crate) inbox: mpsc::Sender<RoomMsg>,
}

struct Entry {
    link: Link,
    /// Set when the connection's queue was full; events are skipped until a `resync` gets through.
    lagged_since: Option<Instant>,
}

pub(crate) struct RoomTask {
    name: String,
    generation: u64,
    shared: Arc<Shared>,
    room: Room,
    inbox: mpsc::Receiver<RoomMsg>,
    conns: HashMap<ParticipantId, Entry>,
    n_lagged: usize,
    last_now: u64,
    shutting_down: bool,
    /// Who the SFU last said is speaking, and how loud: `active_speakers` events carry only changes, so a
    /// participant whose media connects later is sent this whole list once.
    speaking: Vec<(String, u8)>,
    /// The room as last committed to the store (`None`: never committed): what a failed transition rolls back to.
    committed: Option<RoomState>,
    /// After a failed commit: when to retry the room's timers and pending disconnects (until then they wait).
    store_retry_at: Option<tokio::time::Instant>,
    /// Participants whose connection to this hub ended but whose disconnect or leave is not stored yet (its commit
    /// failed). Only these are disconnected at the retry: a participant connected to another hub is not ours to
    /// disconnect.
    dropped: HashSet<ParticipantId>,
    /// Until when this hub holds the room's timer lease (shared store only; `None`: not held).
    owner_until: Option<tokio::time::Instant>,
    /// The room fell behind the store (a gap in announcements) and reloading failed: reload at the retry.
    reload_pending: bool,
    /// A commit failed without an answer (Redis unreachable or too slow): it may still have been applied, so the
    /// retry compares the room with the store (and resyncs if it moved).
    recheck_pending: bool,
    /// The participant whose join is being committed: its new connection is in `conns` (to get the join's events)
    /// but not welcomed yet, so a reload during the commit neither closes it nor resyncs it.
    joining: Option<ParticipantId>,
}

/// How long a room waits after a failed commit before its timers run again.
const STORE_RETRY: Duration = Duration::from_millis(500);

/// How long a room's timer lease lasts, and how often its holder renews it (others try to take it as often).
const LEASE: Duration = Duration::from_millis(3000);
const LEASE_RENEW: Duration = Duration::from_millis(1000);

/// How often a request whose transition lost a race with another writer runs again on the reloaded room.
const CONFLICT_RETRIES: usize = 3;

/// Spawns the task for `name` and returns its handle.
pub(crate) fn spawn(shared: Arc<Shared>, name: String, generation: u64) -> RoomHandle {
    let (tx, rx) = mpsc::channel(shared.config.limits.room_inbox);
    let span = tracing::info_span!("room", room = %name);
    let task = RoomTask {
        room: Room::new(name.clone(), shared.config.room.room_config(), wall_ms()),
        name,
        generation,
        shared,
        inbox: rx,
        conns: HashMap::new(),
        n_lagged: 0,
        last_now: 0,
        shutting_down: false,
        speaking: Vec::new(),
        committed: None,
        store_retry_at: None,
        dropped: HashSet::new(),
        owner_until: None,
        reload_pending: false,
        recheck_pending: false,
        joining: None,
    };
    tokio::spawn(task.run().instrument(span));
    RoomHandle { generation, inbox: tx }
}

fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl RoomTask {
    /// Milliseconds since the epoch, never going backwards within this room.
    fn now(&mut self) -> u64 {
        self.last_now = self.last_now.max(wall_ms());
        self.last_now
    }

    async fn run(mut self) {
        info!("room task started");
        match self.shared.store.load(&self.name).await {
            Ok(Some(state)) => {
                info!(seq = state.seq, "room restored from the store");
                self.room = Room::from_state(state.clone(), self.shared.config.room.room_config());
                self.committed = Some(state);
            }
            Ok(None) => {}
            Err(e) => {
                // Starting empty would fork the room's history; the next join starts a new task that tries again.
                error!(error = %e, "loading the room failed; refusing its requests");
                self.stop(ErrorCode::Unavailable, "the room's store is unreachable; retry later");
                return;
            }
        }
        let mut lag_tick = tokio::time::interval(Duration::from_millis(100));
        lag_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let shared_store = self.shared.store.is_shared();
        let mut lease_tick = tokio::time::interval(LEASE_RENEW);
        lease_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            // After a failed commit, the room's timers wait for the retry (else an overdue timer would spin). Only
            // the hub holding the timer lease runs them.
            let deadline = match self.store_retry_at {
                Some(at) => Some(at),
                None if self.runs_timers() => self.room.poll_timeout().map(|at| {
                    let wait = at.saturating_sub(wall_ms());
                    tokio::time::Instant::now() + Duration::from_millis(wait)
                }),
                None => None,
            };
            tokio::select! {
                msg = self.inbox.recv() => match msg {
                    Some(msg) => self.handle(msg).await,
                    None => break,
                },
                () = sleep_until_opt(deadline) => {
                    if self.store_retry_at.take().is_some() {
                        if self.reload_pending {
                            self.reload().await;
                        } else if self.recheck_pending {
                            self.recheck().await;
                        }
                        self.disconnect_orphans();
                    }
                    if self.runs_timers() {
                        let now = self.now();
                        self.guarded(|room| room.handle_timeout(now));
                    }
                    let _ = self.flush(None).await;
                }
                _ = lag_tick.tick(), if self.n_lagged > 0 => self.retry_lagged().await,
                _ = lease_tick.tick(), if shared_store => self.renew_lease().await,
            }
            if self.room.is_ended() || (self.shutting_down && self.inbox.is_empty()) {
                break;
            }
        }
        self.stop(ErrorCode::RoomEnded, "the room has ended");
        if self.owner_until.take().is_some() {
            self.shared.store.release_owner(&self.name, &self.shared.node_id).await;
        }
    }

    /// True when this hub runs the room's timers: always with the in-memory store; with a shared store, while it
    /// holds the room's timer lease.
    fn runs_timers(&self) -> bool {
        !self.shared.store.is_shared() || self.owner_until.is_some_and(|until| tokio::time::Instant::now() < until)
    }

    /// Claims or renews the room's timer lease. A lease is trusted until a little before it would expire, counted
    /// from before the request, so two hubs never both believe they hold it (clocks permitting).
    async fn renew_lease(&mut self) {
        let asked_at = tokio::time::Instant::now();
        match self.shared.store.claim_owner(&self.name, &self.shared.node_id, LEASE).await {
            Ok(true) => {
                if self.owner_until.is_none() {
                    info!("this hub now runs the room's timers");
                }
                self.owner_until = Some(asked_at + LEASE - LEASE_RENEW / 2);
            }
            Ok(false) => {
                if self.owner_until.take().is_some() {
                    info!("another hub runs the room's timers now");
                }
            }
            // Keep what we had: it lapses by itself at `owner_until`.
            Err(e) => debug!(error = %e, "renewing the room's timer lease failed"),
        }
    }

    /// Leaves the directory and answers every queued request with `code`.
    fn stop(&mut self, code: ErrorCode, message: &str) {
        self.shared.forget_room(&self.name, self.generation);
        // Requests that raced with the end get a clear answer rather than a dropped channel.
        self.inbox.close();
        while let Ok(msg) = self.inbox.try_recv() {
            refuse(msg, code, message);
        }
        info!("room task stopped");
    }

    async fn handle(&mut self, msg: RoomMsg) {
        match msg {
            RoomMsg::Join { grant, role, protocol, link, reply } => {
                // The join's handling time in this task (its commit included), logged with `joined`.
                let started = Instant::now();
                let who = ParticipantId::new(grant.identity.as_str());
                let now = self.now();
                let join = room::Join {
                    id: who.clone(),
                    name: grant.name.clone(),
                    ceiling: convert::role_from_proto(grant.ceiling),
                    role,
                };
                let mut attempt = 0;
                let joined = loop {
                    let Some(result) = self.guarded(|room| room.handle_join(now, join.clone())) else {
                        let _ = reply.send(Err((ErrorCode::Internal, "the room failed and was restored".into())));
                        return;
                    };
                    let joined = match result {
                        Err(e) => {
                            debug!(identity = %who, error = %e, "join refused");
                            let _ = reply.send(Err((convert::error_code(&e), e.to_string())));
                            return;
                        }
                        Ok(joined) => joined,
                    };
                    let old = self.remove_conn(&who);
                    self.conns.insert(who.clone(), Entry { link: link.clone(), lagged_since: None });
                    self.joining = Some(who.clone());
                    let flushed = self.flush(Some(who.clone())).await;
                    self.joining = None;
                    match flushed {
                        Ok(()) => {
                            if let Some(old) = old {
                                old.link.control.close(CloseCode::DuplicateIdentity);
                            }
                            break joined;
                        }
                        Err(e) => {
                            // The join did not happen: whoever was connected before stays.
                            self.remove_conn(&who);
                            if let Some(mut old) = old {
                                // A conflict reloaded the room while it was out of the map: it needs a resync too.
                                old.lagged_since.get_or_insert_with(Instant::now);
                                self.insert_conn(who.clone(), old);
                            }
                            if matches!(e, StoreError::Conflict { .. }) && attempt < CONFLICT_RETRIES {
                                attempt += 1;
                                debug!(identity = %who, attempt, "join lost a race; trying again on the reloaded room");
                                continue;
                            }
                            let _ = reply.send(Err(store_failure(&e)));
                            return;
                        }
                    }
                };
                {
                    {
                        let Some(snapshot) = self.room.snapshot_for(&who) else {
                            let _ = reply.send(Err((ErrorCode::Internal, "joined participant has no snapshot".into())));
                            return;
                        };
                        let limits = &self.shared.config.limits;
                        let welcome = proto::Welcome {
                            protocol,
                            participant: proto::Participant { id: grant.identity, name: grant.name },
                            resume_token: self.shared.resume_token(&self.name, who.as_str()),
                            resumed: joined.resumed,
                            grace_ms: self.shared.config.room.grace_ms,
                            heartbeat_interval_ms: limits.heartbeat_interval_ms,
                            limits: proto::Limits {
                                max_message_bytes: limits.max_message_bytes as u32,
                                requests_per_second: limits.requests_per_second,
                                request_burst: limits.request_burst,
                            },
                            state: convert::snapshot(&snapshot),
                        };
                        let handled_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                        info!(identity = %who, resumed = joined.resumed, role = ?joined.role, handled_us, "joined");
                        let _ = reply.send(Ok(Box::new(welcome)));
                    }
                }
            }
            RoomMsg::Command { who, conn_id, command, reply } => {
                if !self.is_current(&who, conn_id) {
                    let _ = reply
                        .send(Err((ErrorCode::Conflict, "this session was taken over by another connection".into())));
                    return;
                }
                let mut attempt = 0;
                let (flushed, result) = loop {
                    let now = self.now();
                    let result = self.guarded(|room| room.handle_command(now, &who, command.clone()));
                    let flushed = self.flush(None).await;
                    if matches!(flushed, Err(StoreError::Conflict { .. }))
                        && attempt < CONFLICT_RETRIES
                        && self.is_current(&who, conn_id)
                    {
                        attempt += 1;
                        debug!(identity = %who, attempt, "command lost a race; running it again on the reloaded room");
                        continue;
                    }
                    break (flushed, result);
                };
                let answer = match (flushed, result) {
                    (Err(e), _) => Err(store_failure(&e)),
                    (Ok(()), Some(Ok(r))) => Ok(convert::reply(r)),
                    (Ok(()), Some(Err(e))) => {
                        debug!(identity = %who, error = %e, "command refused");
                        Err((convert::error_code(&e), e.to_string()))
                    }
                    (Ok(()), None) => Err((
                        ErrorCode::Internal,
                        "the room failed and was restored; the request did not take effect".into(),
                    )),
                };
                let _ = reply.send(answer);
            }
            RoomMsg::Disconnect { who, conn_id } => {
                if self.is_current(&who, conn_id) {
                    self.remove_conn(&who);
                    self.dropped.insert(who.clone());
                    let now = self.now();
                    self.guarded(|room| room.handle_disconnect(now, &who));
                    // On failure, the retry after the backoff starts the grace period again (`disconnect_orphans`).
                    let _ = self.flush(None).await;
                }
            }
            RoomMsg::Leave { who, conn_id, reply } => {
                if self.is_current(&who, conn_id) {
                    self.remove_conn(&who);
                    self.dropped.insert(who.clone());
                    let now = self.now();
                    self.guarded(|room| room.handle_leave(now, &who));
                    // On failure the leave becomes a dropped connection (grace period) at the retry.
                    let _ = self.flush(None).await;
                }
                let _ = reply.send(());
            }
            RoomMsg::Media { who, conn_id, request, reply } => self.on_media_request(who, conn_id, request, reply),
            RoomMsg::MediaSettled { who } => {
                if self.room.role(&who).is_none()
                    && let Some(media) = &self.shared.media
                {
                    media.remove_peer(&self.name, who.as_str());
                }
            }
            RoomMsg::MediaEvent(event) => self.on_media_event(event),
            RoomMsg::Remote(announcement) => self.on_remote(*announcement).await,
            RoomMsg::Recheck => self.recheck().await,
            RoomMsg::Shutdown => {
                info!(connections = self.conns.len(), "closing connections for shutdown");
                for entry in self.conns.values() {
                    entry.link.control.close(CloseCode::ServerShutdown);
                }
                self.conns.clear();
                self.n_lagged = 0;
                self.shutting_down = true;
            }
        }
    }

    /// Checks the sender is this room's current connection for `who`, then runs the request in the SFU on its own
    /// task (SDP work must not hold up the room), answering the connection directly.
    fn on_media_request(
        &mut self,
        who: ParticipantId,
        conn_id: u64,
        request: MediaRequest,
        reply: oneshot::Sender<Result<Option<proto::Reply>, Failure>>,
    ) {
        if !self.is_current(&who, conn_id) || self.room.role(&who).is_none() {
            let _ = reply.send(Err((ErrorCode::Unauthorized, "not in this room (left, removed or taken over)".into())));
            return;
        }
        let Some(media) = self.shared.media.clone() else {
            let _ = reply.send(Err((ErrorCode::Unavailable, "media is not enabled on this hub".into())));
            return;
        };
        if matches!(request, MediaRequest::Candidate) {
            let _ = reply.send(Ok(None));
            return;
        }
        // The state machine's permission, in case its `Publish` output came before the peer existed.
        media.set_publish(&self.name, who.as_str(), self.room.may_publish(&who));
        let room = self.name.clone();
        let Some(inbox) = self.shared.running_room(&room).map(|h| h.inbox) else {
            let _ = reply.send(Err((ErrorCode::Unavailable, "the room is not available".into())));
            return;
        };
        tokio::spawn(async move {
            let result = match request {
                MediaRequest::Offer(sdp) => media
                    .offer(&room, who.as_str(), &sdp)
                    .await
                    .map(|sdp| Some(proto::Reply::Answer { sdp }))
                    .map_err(|e| media::failure(&e)),
                MediaRequest::Answer(sdp) => {
                    media.answer(&room, who.as_str(), &sdp).await.map(|()| None).map_err(|e| media::failure(&e))
                }
                MediaRequest::Candidate => Ok(None),
            };
            if let Err((code, message)) = &result {
                debug!(identity = %who, ?code, %message, "media request refused");
            }
            let _ = reply.send(result);
            let _ = inbox.send(RoomMsg::MediaSettled { who }).await;
        });
    }

    fn on_media_event(&mut self, event: podium_media::MediaEvent) {
        use podium_media::{MediaEvent, PeerState};
        let connected = match &event {
            MediaEvent::ActiveSpeakers { speaking, stopped, .. } => {
                self.speaking.retain(|(id, _)| !stopped.contains(id) && !speaking.iter().any(|(s, _)| s == id));
                self.speaking.extend(speaking.iter().cloned());
                self.speaking.sort_by_key(|s| std::cmp::Reverse(s.1));
                None
            }
            MediaEvent::State { identity, state: PeerState::Connected, .. } => Some(identity.clone()),
            _ => None,
        };
        let (to, msg) = media::event_message(event);
        let frame: Utf8Bytes = msg.to_json().into();
        match to {
            Some(who) => self.deliver(&room::Recipients::One(ParticipantId::new(who.as_str())), frame),
            None => self.deliver(&room::Recipients::Everyone, frame),
        }
        // A newly connected participant missed the changes so far: give it the current speakers.
        if let Some(who) = connected
            && !self.speaking.is_empty()
        {
            let speaking =
                self.speaking.iter().map(|(p, level)| proto::Speaking { participant: p.clone(), level: *level });
            let msg = proto::ServerMessage::ActiveSpeakers { speaking: speaking.collect(), stopped: Vec::new() };
            self.deliver(&room::Recipients::One(ParticipantId::new(who.as_str())), msg.to_json().into());
        }
    }

    fn is_current(&self, who: &ParticipantId, conn_id: u64) -> bool {
        self.conns.get(who).is_some_and(|e| e.link.conn_id == conn_id)
    }

    fn insert_conn(&mut self, who: ParticipantId, entry: Entry) {
        if entry.lagged_since.is_some() {
            self.n_lagged += 1;
        }
        if let Some(replaced) = self.conns.insert(who, entry)
            && replaced.lagged_since.is_some()
        {
            self.n_lagged -= 1;
        }
    }

    fn remove_conn(&mut self, who: &ParticipantId) -> Option<Entry> {
        let entry = self.conns.remove(who)?;
        if entry.lagged_since.is_some() {
            self.n_lagged -= 1;
        }
        Some(entry)
    }

    /// Runs `f` on the room, containing a panic: the room is rebuilt from the last stored state and `None` returned.
    fn guarded<T>(&mut self, f: impl FnOnce(&mut Room) -> T) -> Option<T> {
        match std::panic::catch_unwind(AssertUnwindSafe(|| f(&mut self.room))) {
            Ok(v) => Some(v),
            Err(_) => {
                error!("room state machine panicked; restoring the last stored state");
                self.restore_committed();
                None
            }
        }
    }

    /// Puts the room back to its last committed state, dropping the outputs of what came after.
    fn restore_committed(&mut self) {
        let config = self.shared.config.room.room_config();
        self.room = match &self.committed {
            Some(state) => Room::from_state(state.clone(), config),
            None => Room::new(self.name.clone(), config, wall_ms()),
        };
        // Outputs of the void transitions; drop them. (Pending changes are none after `from_state`, and after
        // `new` the room's fields, which the first commit must carry.)
        while self.room.poll_output().is_some() {}
    }

    /// A commit failed: the transition is void. Roll back (or, on a conflict, reload the newer stored version) and
    /// hold the room's timers until the retry.
    async fn commit_failed(&mut self, error: &StoreError) {
        if matches!(error, StoreError::Conflict { .. }) {
            // Another hub wrote first (or a commit's reply was lost): expected with shared rooms.
            info!(%error, "a room transition lost a race; reloading the room");
        } else {
            warn!(%error, "committing a room transition failed; rolling it back");
        }
        self.store_retry_at = Some(tokio::time::Instant::now() + STORE_RETRY);
        if matches!(error, StoreError::Conflict { .. }) && self.reload().await {
            return;
        }
        if matches!(error, StoreError::Unavailable(_)) {
            self.recheck_pending = true;
        }
        self.restore_committed();
    }

    /// Reloads the room from the store and resyncs this hub's connections; false (and a retry scheduled) when the
    /// store cannot be read.
    async fn reload(&mut self) -> bool {
        match self.shared.store.load(&self.name).await {
            Ok(state) => {
                info!(seq = state.as_ref().map(|s| s.seq), "room reloaded from the store");
                self.install(state);
                true
            }
            Err(e) => {
                warn!(error = %e, "reloading the room failed; retrying");
                self.reload_pending = true;
                self.store_retry_at = Some(tokio::time::Instant::now() + STORE_RETRY);
                false
            }
        }
    }

    /// Compares the room with the store and resyncs if the store moved; when the store cannot be read, reloads at
    /// the retry.
    async fn recheck(&mut self) {
        let current = self.committed.as_ref().map(|s| s.seq);
        match self.shared.store.load(&self.name).await {
            Ok(state) if state.as_ref().map(|s| s.seq) != current => {
                info!(seq = state.as_ref().map(|s| s.seq), "the store is ahead of this room; resyncing");
                self.install(state);
            }
            Ok(_) => self.recheck_pending = false,
            Err(e) => {
                debug!(error = %e, "checking the room against the store failed; retrying");
                self.reload_pending = true;
                self.store_retry_at = Some(tokio::time::Instant::now() + STORE_RETRY);
            }
        }
    }

    /// Makes `state` (just loaded) the room, and resyncs this hub's connections.
    fn install(&mut self, state: Option<RoomState>) {
        self.reload_pending = false;
        self.recheck_pending = false;
        self.committed = state;
        self.restore_committed();
        self.resync_all();
    }

    /// Another hub's announcement: follow its changes (a gap reloads from the store), then deliver its outputs to
    /// this hub's connections. Nothing here is fed to the room as an input, so nothing is emitted twice.
    async fn on_remote(&mut self, a: Announcement) {
        if let Some(who) = &a.joined
            && let Some(entry) = self.remove_conn(who)
        {
            info!(identity = %who, node = %a.node, "session taken over on another hub");
            entry.link.control.close(CloseCode::DuplicateIdentity);
        }
        let current = self.committed.as_ref().map_or(0, |s| s.seq);
        match &a.changes {
            Some(changes) => {
                if changes.seq <= current && self.committed.is_some() {
                    trace!(seq = changes.seq, "stale announcement skipped");
                    return;
                }
                let follows = match &mut self.committed {
                    Some(state) if state.seq == changes.base_seq => {
                        state.apply(changes);
                        true
                    }
                    Some(_) => false,
                    None => match RoomState::created_by(changes) {
                        Some(state) => {
                            self.committed = Some(state);
                            true
                        }
                        None => false,
                    },
                };
                if !follows {
                    info!(have = current, base = changes.base_seq, "missed announcements; reloading the room");
                    self.reload().await;
                    return;
                }
                let now = self.now();
                if !self.guarded(|room| room.apply_changes(changes, now)).unwrap_or(false) {
                    self.restore_committed();
                }
                if let Some(media) = &self.shared.media {
                    for who in &changes.removed {
                        media.remove_peer(&self.name, who.as_str());
                    }
                }
            }
            None if a.seq == current => {}
            None if a.seq < current => return,
            None => {
                info!(have = current, announced = a.seq, "missed announcements; reloading the room");
                self.reload().await;
                return;
            }
        }
        for output in a.outputs {
            match output {
                Announced::Event { to, frame } => self.deliver(&to, frame.into()),
                Announced::Disconnect { who, reason } => {
                    if let Some(entry) = self.remove_conn(&who) {
                        info!(identity = %who, ?reason, "closing participant removed on another hub");
                        entry.link.control.close(close_code(reason));
                    }
                }
                Announced::Publish { who, allowed } => {
                    if let Some(media) = &self.shared.media {
                        media.set_publish(&self.name, who.as_str(), allowed);
                    }
                }
                Announced::Ended => {
                    info!("room ended on another hub");
                    self.close_all(CloseCode::RoomEnded);
                    if let Some(media) = &self.shared.media {
                        media.remove_room(&self.name);
                    }
                }
            }
        }
        // Anyone removed without a `Disconnect` (a leave or grace expiry of a duplicate session) is gone too.
        if let Some(changes) = &a.changes {
            for who in &changes.removed {
                if let Some(entry) = self.remove_conn(who) {
                    entry.link.control.close(CloseCode::Removed);
                }
            }
        }
    }

    fn close_all(&mut self, code: CloseCode) {
        for entry in self.conns.values() {
            entry.link.control.close(code);
        }
        self.conns.clear();
        self.n_lagged = 0;
    }

    /// After a reload: every connection gets a `resync` (through the lagged path), connections whose participant is
    /// gone are closed, and publish permissions follow the reloaded room.
    fn resync_all(&mut self) {
        let now = Instant::now();
        let joining = self.joining.clone();
        let joining = joining.as_ref();
        let gone: Vec<ParticipantId> =
            self.conns.keys().filter(|who| Some(*who) != joining && self.room.role(who).is_none()).cloned().collect();
        for who in gone {
            if let Some(entry) = self.remove_conn(&who) {
                entry.link.control.close(CloseCode::Removed);
            }
        }
        for (who, entry) in &mut self.conns {
            if Some(who) != joining && entry.lagged_since.is_none() {
                entry.lagged_since = Some(now);
                self.n_lagged += 1;
            }
        }
        if let Some(media) = &self.shared.media {
            for who in self.conns.keys() {
                media.set_publish(&self.name, who.as_str(), self.room.may_publish(who));
            }
        }
    }

    /// Starts the grace period of participants the room thinks connected but who have no connection here (their
    /// disconnect or leave was rolled back). Only connections this hub held count (`dropped`).
    fn disconnect_orphans(&mut self) {
        let orphans: Vec<ParticipantId> = self
            .dropped
            .iter()
            .filter(|id| !self.conns.contains_key(*id) && self.room.participant(id).is_some_and(|p| p.connected))
            .cloned()
            .collect();
        let now = self.now();
        for who in orphans {
            self.guarded(|room| room.handle_disconnect(now, &who));
        }
    }

    /// Drains the room's outputs: persists the transition, then delivers events and closes. When the commit fails,
    /// nothing is delivered and the room is back at its last committed state.
    ///
    /// With a shared store the transition is announced to the other hubs in the same round trip as the commit
    /// (`joined`: the participant whose session this transition's join took over, so other hubs close theirs).
    async fn flush(&mut self, joined: Option<ParticipantId>) -> Result<(), StoreError> {
        let changes = self.room.take_changes();
        let outputs: Vec<room::Output> = std::iter::from_fn(|| self.room.poll_output()).collect();
        let announcement =
            if self.shared.store.is_shared() && (changes.is_some() || !outputs.is_empty() || joined.is_some()) {
                Some(self.announcement(changes.clone(), &outputs, joined))
            } else {
                None
            };
        if let Some(changes) = changes {
            if let Err(e) = self.shared.store.commit_announced(&self.name, &changes, announcement.as_deref()).await {
                self.commit_failed(&e).await;
                return Err(e);
            }
            match &mut self.committed {
                Some(state) => state.apply(&changes),
                None => self.committed = RoomState::created_by(&changes),
            }
            // Whoever left the room leaves the SFU too (a no-op for those who never negotiated media), which also
            // forgets their publish permission.
            if let Some(media) = &self.shared.media {
                for who in &changes.removed {
                    media.remove_peer(&self.name, who.as_str());
                }
            }
            if !self.dropped.is_empty() {
                let (room, conns) = (&self.room, &self.conns);
                self.dropped.retain(|id| !conns.contains_key(id) && room.participant(id).is_some_and(|p| p.connected));
            }
        } else if let Some(text) = &announcement
            && let Err(e) = self.shared.store.publish(&self.name, text).await
        {
            // Only outputs without a transition (head counts): the other hubs get the next ones.
            debug!(error = %e, "announcing outputs failed");
        }
        for output in outputs {
            match output {
                room::Output::Event { to, seq, event } => {
                    let frame: Utf8Bytes = convert::event(seq, &event).to_json().into();
                    self.deliver(&to, frame);
                }
                room::Output::Disconnect { who, reason } => {
                    let code = close_code(reason);
                    if let Some(entry) = self.remove_conn(&who) {
                        info!(identity = %who, ?code, "closing removed participant");
                        entry.link.control.close(code);
                    }
                }
                room::Output::Publish { who, allowed } => {
                    trace!(identity = %who, allowed, "publish permission changed");
                    if let Some(media) = &self.shared.media {
                        media.set_publish(&self.name, who.as_str(), allowed);
                    }
                }
                room::Output::Ended { reason } => {
                    info!(?reason, "room ended");
                    self.close_all(CloseCode::RoomEnded);
                    if let Some(media) = &self.shared.media {
                        media.remove_room(&self.name);
                    }
                    self.shared.store.remove(&self.name).await;
                }
            }
        }
        Ok(())
    }

    /// The announcement of a transition for the other hubs: its changes and outputs, events as wire frames.
    fn announcement(
        &self,
        changes: Option<podium_room::Changes>,
        outputs: &[room::Output],
        joined: Option<ParticipantId>,
    ) -> String {
        let announced = outputs
            .iter()
            .map(|output| match output {
                room::Output::Event { to, seq, event } => {
                    Announced::Event { to: to.clone(), frame: convert::event(*seq, event).to_json() }
                }
                room::Output::Disconnect { who, reason } => Announced::Disconnect { who: who.clone(), reason: *reason },
                room::Output::Publish { who, allowed } => Announced::Publish { who: who.clone(), allowed: *allowed },
                room::Output::Ended { .. } => Announced::Ended,
            })
            .collect();
        Announcement { node: self.shared.node_id.clone(), seq: self.room.seq(), changes, outputs: announced, joined }
            .encode()
    }

    fn deliver(&mut self, to: &room::Recipients, frame: Utf8Bytes) {
        match to {
            room::Recipients::Everyone => {
                let now = Instant::now();
                for entry in self.conns.values_mut() {
                    send_frame(entry, &frame, now, &mut self.n_lagged);
                }
            }
            room::Recipients::Stage | room::Recipients::Moderators => {
                let only_moderators = matches!(to, room::Recipients::Moderators);
                let now = Instant::now();
                for member in self.room.stage() {
                    if only_moderators && member.role != room::Role::Moderator {
                        continue;
                    }
                    if let Some(entry) = self.conns.get_mut(&member.id) {
                        send_frame(entry, &frame, now, &mut self.n_lagged);
                    }
                }
            }
            room::Recipients::One(who) => {
                if let Some(entry) = self.conns.get_mut(who) {
                    send_frame(entry, &frame, Instant::now(), &mut self.n_lagged);
                }
            }
        }
    }

    /// Sends lagged connections a snapshot once their queue has room; closes those behind for too long.
    async fn retry_lagged(&mut self) {
        let max_lag = Duration::from_millis(self.shared.config.limits.max_lag_ms);
        let lagged: Vec<ParticipantId> =
            self.conns.iter().filter(|(_, e)| e.lagged_since.is_some()).map(|(id, _)| id.clone()).collect();
        for who in lagged {
            let Some(entry) = self.conns.get(&who) else { continue };
            let since = entry.lagged_since.unwrap_or_else(Instant::now);
            if since.elapsed() > max_lag {
                warn!(identity = %who, "closing a connection that stayed behind");
                if let Some(entry) = self.remove_conn(&who) {
                    entry.link.control.close(CloseCode::SlowConsumer);
                }
                self.dropped.insert(who.clone());
                let now = self.now();
                self.guarded(|room| room.handle_disconnect(now, &who));
                let _ = self.flush(None).await;
                continue;
            }
            let Some(snapshot) = self.room.snapshot_for(&who) else { continue };
            let frame: Utf8Bytes =
                proto::ServerMessage::Resync { seq: snapshot.seq, state: convert::snapshot(&snapshot) }
                    .to_json()
                    .into();
            if let Some(entry) = self.conns.get_mut(&who)
                && entry.link.frames.try_send(frame).is_ok()
            {
                entry.lagged_since = None;
                self.n_lagged -= 1;
                debug!(identity = %who, "resync sent");
            }
        }
    }
}

fn send_frame(entry: &mut Entry, frame: &Utf8Bytes, now: Instant, n_lagged: &mut usize) {
    if entry.lagged_since.is_some() {
        return;
    }
    match entry.link.frames.try_send(frame.clone()) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            entry.lagged_since = Some(now);
            *n_lagged += 1;
        }
        // The connection task is gone; its Disconnect message is on the way.
        Err(mpsc::error::TrySendError::Closed(_)) => {}
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn close_code(reason: room::DisconnectReason) -> CloseCode {
    match reason {
        room::DisconnectReason::Kicked => CloseCode::Removed,
        room::DisconnectReason::Banned => CloseCode::Banned,
    }
}

/// The reply to a request whose transition the store did not take.
fn store_failure(error: &StoreError) -> Failure {
    let message = match error {
        StoreError::Conflict { .. } => "the room changed meanwhile and was reloaded; the request did not take effect",
        _ => {
            "the room's store is unreachable; the request was not acknowledged, retry later (should it have taken \
             effect after all, the room resyncs)"
        }
    };
    (ErrorCode::Unavailable, message.into())
}

/// Answers a message that will not be handled.
pub(crate) fn refuse(msg: RoomMsg, code: ErrorCode, message: &str) {
    match msg {
        RoomMsg::Join { reply, .. } => {
            let _ = reply.send(Err((code, message.into())));
        }
        RoomMsg::Command { reply, .. } => {
            let _ = reply.send(Err((code, message.into())));
        }
        RoomMsg::Leave { reply, .. } => {
            let _ = reply.send(());
        }
        RoomMsg::Media { reply, .. } => {
            let _ = reply.send(Err((code, message.into())));
        }
        RoomMsg::Disconnect { .. }
        | RoomMsg::MediaSettled { .. }
        | RoomMsg::MediaEvent(_)
        | RoomMsg::Remote(_)
        | RoomMsg::Recheck
        | RoomMsg::Shutdown => {}
    }
}
