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
//! and only the hub holding the room's lease (`podium:{room}:owner`) runs its timers and its media: `placement`
//! holds that part (the lease and media epoch, media requests run here or relayed, presence of gone hubs), and
//! `media_events` what the SFU says about the room's participants. `stage` is what a summit stage's task does for
//! the scheduler (its `schedule` frames; on its media hub, the stage control record's `heard` and `filler`).
//! `ice` keeps this hub's connections supplied with fresh TURN credentials.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use podium_proto::{self as proto, CloseCode, ErrorCode};
use podium_room::{self as room, ParticipantId, Room, RoomState};
use podium_store::{Announced, Announcement, StoreError, SummitStore as _};
use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tracing::{Instrument as _, debug, error, info, trace, warn};

use crate::auth::Grant;
use crate::convert;
use crate::hub::Shared;
use crate::leases::{LEASE, LEASE_RENEW};
use crate::link::Link;
use crate::media::MediaRequest;
use crate::relay::{NodeMessage, RelayedRequest};

mod ice;
mod media_events;
mod placement;
mod reactions;
mod recording;
mod stage;

use placement::media_moved_epoch;
pub(crate) use placement::media_moved_reply;

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
        /// The moderation request's `reason`, unchecked (the room checks it).
        reason: Option<String>,
        reply: oneshot::Sender<Result<Option<proto::Reply>, Failure>>,
    },
    /// An administrator's command (admin API): the same rules as a moderator's, from an actor that is not a
    /// participant (see `podium_room::Room::handle_admin`).
    Admin {
        admin: room::AdminId,
        command: room::Command,
        /// The action's `reason`, unchecked (the room checks it).
        reason: Option<String>,
        reply: oneshot::Sender<Result<room::Reply, Failure>>,
    },
    /// Create the room (admin API): refused with `conflict` when it is already stored.
    Create { admin: room::AdminId, setup: room::RoomSetup, reply: oneshot::Sender<Result<room::RoomView, Failure>> },
    /// A joined connection dropped: start the grace period.
    Disconnect { who: ParticipantId, conn_id: u64 },
    /// A joined connection sent `leave`.
    Leave { who: ParticipantId, conn_id: u64, reply: oneshot::Sender<()> },
    /// A joined connection's reaction: the kind's index in `[reactions] kinds` (checked by the connection, as is
    /// the sender's rate). Counted in the room's window (see `reactions`), never a transition.
    React {
        who: ParticipantId,
        conn_id: u64,
        kind: usize,
        reply: oneshot::Sender<Result<Option<proto::Reply>, Failure>>,
    },
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
    /// A media request relayed by another hub (this hub should be the room's media hub).
    Relayed { from: String, req: u64, who: ParticipantId, request: RelayedRequest },
    /// Claim the room's lease now (a draining hub handed the room over).
    ClaimLease,
    /// The lease keeper's answer for this room (see `leases`), asked at `asked_at`.
    Lease { lease: Result<podium_store::Lease, StoreError>, asked_at: tokio::time::Instant },
    /// These hubs stopped heartbeating: their participants' connections are gone.
    NodesGone(Arc<HashSet<String>>),
    /// The hub drains: stop claiming the lease, give it up, and ask `target` to take the room over.
    Drain { target: String },
    /// Another hub marked this participant disconnected while its connection here is alive (it took this hub for
    /// gone): mark them connected again.
    Reassert(ParticipantId),
    /// The summit scheduler's new `schedule` for this stage room: a whole server message (`{"type":"schedule",...}`,
    /// `ServerMessage::Schedule`). Remembered (a joining participant gets it right after its `join` reply),
    /// delivered to the room's connections here and announced to the other hubs' (see `stage`).
    Schedule { frame: Arc<str> },
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
    /// The last `media_tracks` frame the SFU sent for each participant (media hub only): a connection that resumes
    /// gets it again at once, since the slots may have changed while it was away (and no change may come soon).
    tracks: HashMap<ParticipantId, String>,
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
    /// Webhook state of the room (audience summaries, index touches).
    hooks: crate::webhooks::RoomHooks,
    /// Who caused the transition being flushed (a request), for webhooks and the audit log.
    cause: Option<crate::webhooks::Cause>,
    /// The hub running the room's media (the lease holder, as last seen; with the in-memory store, this hub).
    media_holder: Option<String>,
    /// Who held the room's lease at the last reading (or, while it lapsed, the hub it waits for).
    lease_holder: Option<String>,
    /// The room's media epoch as last seen (0: not known yet, or no media): it changes whenever the media hub does.
    media_epoch: u64,
    /// Messages taken from the inbox while following announcements after a lost race; they run next, in order.
    deferred: std::collections::VecDeque<RoomMsg>,
    /// This room's share of the hub's gauges, and the room's `(seq, connections)` when its participants were
    /// last counted (they are counted again only when either changed).
    gauges: crate::metrics::RoomGauges,
    counted_at: (u64, usize),
    /// The lease keeper's answers taken in (for the presence sweep every `PRESENCE_SWEEP_RENEWALS`).
    renewals: u64,
    /// What the room does as a summit stage (nothing for other rooms).
    stage: stage::Stage,
    /// When this hub's connections get fresh TURN credentials.
    ice: ice::IceRefresh,
    /// The reactions of the window in progress.
    reactions: reactions::Window,
    /// What this hub's SFU records for the room (`recording`).
    recording: Option<recording::Recording>,
}

/// What must follow an announcement applied by `apply_remote`.
#[derive(Default)]
struct RemoteNext {
    /// The room fell behind (a gap): reload it from the store.
    reload: bool,
    /// The room's media moved: look at the lease.
    media_moved: bool,
}

/// How long a task that lost a commit race waits for the winners' announcements before reloading instead.
const FOLLOW_AHEAD_WAIT: Duration = Duration::from_millis(50);

/// How long a room waits after a failed commit before its timers run again.
const STORE_RETRY: Duration = Duration::from_millis(500);

/// Every this many lease renewals (30 s), the lease holder also compares the room's presence with the whole node
/// registry (the registry watcher only reports hubs it saw alive and then gone).
const PRESENCE_SWEEP_RENEWALS: u64 = 60;

/// How long a request whose transition keeps losing races with other writers runs again on the newer room before
/// it is answered `unavailable` (a burst of joins into one room from several hubs can take several rounds).
const CONFLICT_RETRY_FOR: Duration = Duration::from_secs(2);

/// Spawns the task for `name` and returns its handle.
pub(crate) fn spawn(shared: Arc<Shared>, name: String, generation: u64) -> RoomHandle {
    let (tx, rx) = mpsc::channel(shared.config.limits.room_inbox);
    let span = tracing::info_span!("room", room = %name);
    // With the in-memory store no other hub exists: the media is here, in this process's epoch.
    let media_holder = (!shared.store.is_shared()).then(|| shared.node_id.clone());
    let media_epoch = if shared.store.is_shared() || shared.media.is_none() { 0 } else { shared.local_media_epoch };
    let task = RoomTask {
        gauges: shared.metrics.room_gauges(),
        counted_at: (0, 0),
        renewals: 0,
        room: Room::new(name.clone(), shared.config.room_config(), wall_ms()),
        name,
        generation,
        shared,
        inbox: rx,
        conns: HashMap::new(),
        n_lagged: 0,
        last_now: 0,
        shutting_down: false,
        speaking: Vec::new(),
        tracks: HashMap::new(),
        committed: None,
        store_retry_at: None,
        dropped: HashSet::new(),
        owner_until: None,
        reload_pending: false,
        recheck_pending: false,
        joining: None,
        hooks: crate::webhooks::RoomHooks::default(),
        cause: None,
        media_holder,
        lease_holder: None,
        media_epoch,
        deferred: std::collections::VecDeque::new(),
        stage: stage::Stage::default(),
        ice: ice::IceRefresh::default(),
        reactions: reactions::Window::default(),
        recording: None,
    };
    tokio::spawn(task.run().instrument(span));
    RoomHandle { generation, inbox: tx }
}

/// Milliseconds since the Unix epoch (0 before it).
pub(crate) fn wall_ms() -> u64 {
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
        // With a shared store the lease is asked for together with the room (one round trip's wait), so the first
        // join is welcomed with the room's media epoch. The room's announcements are subscribed to before it is
        // loaded (so none published after the load is missed), and unsubscribed from when the task ends, however
        // it ends (`watched` is dropped with this function's locals).
        let asked_at = tokio::time::Instant::now();
        let mut watched = None;
        // The stage control record is read with the room (after the watch: a `schedule` announced later arrives).
        let (loaded, lease, ctl) = if self.shared.store.is_shared() {
            let watch_then_load = async {
                if let Some(watches) = &self.shared.watches {
                    watched = Some(watches.watch(&self.name).await?);
                }
                let (loaded, ctl) =
                    tokio::join!(self.shared.store.load(&self.name), self.shared.summits.ctl_get(&self.name));
                Ok::<_, StoreError>((loaded?, ctl))
            };
            let (loaded, lease) = tokio::join!(watch_then_load, self.ask_lease());
            let (loaded, ctl) = match loaded {
                Ok((loaded, ctl)) => (Ok(loaded), Some(ctl)),
                Err(e) => (Err(e), None),
            };
            (loaded, Some(lease), ctl)
        } else {
            let loaded = self.shared.store.load(&self.name).await;
            (loaded, None, Some(self.shared.summits.ctl_get(&self.name).await))
        };
        let _watched = watched;
        match loaded {
            Ok(Some(state)) => {
                info!(seq = state.seq, "room restored from the store");
                self.room = Room::from_state(state.clone(), self.shared.config.room_config());
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
        if let Some(ctl) = ctl {
            self.take_stored_stage(ctl);
        }
        if let Some(lease) = lease {
            self.apply_lease(lease, asked_at).await;
        }
        let mut stage_tick = tokio::time::interval(stage::RECONCILE_EVERY);
        stage_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut lag_tick = tokio::time::interval(Duration::from_millis(100));
        lag_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            self.report_metrics();
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
            if let Some(msg) = self.deferred.pop_front() {
                self.handle(msg).await;
                continue;
            }
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
                _ = stage_tick.tick(), if self.tends_stage() => self.stage_tick(),
                () = sleep_until_opt(self.ice.next_due()) => self.refresh_ice(),
                () = sleep_until_opt(self.reactions.due) => self.flush_reactions().await,
                done = stage::join_opt(&mut self.stage.reconcile) => self.reconciled(done),
            }
            self.sync_recording();
            if self.room.is_ended() || (self.shutting_down && self.inbox.is_empty()) {
                break;
            }
            if self.is_idle() {
                self.finish_recording();
                self.go_idle().await;
                return;
            }
        }
        self.finish_recording();
        self.stop(ErrorCode::RoomEnded, "the room has ended");
        self.release_lease().await;
    }

    /// Reports this room's share of the hub's gauges: participants connected here by role (counted again only
    /// after a transition or a connection change: the stage is small, the audience is the rest), lagged
    /// connections, and whether this hub holds the room's lease.
    fn report_metrics(&mut self) {
        let mut figures = self.gauges.reported();
        let at = (self.room.seq(), self.conns.len());
        if at != self.counted_at {
            self.counted_at = at;
            let mut by_role = [0i64; 3];
            for member in self.room.stage() {
                if self.conns.contains_key(&member.id) {
                    by_role[crate::metrics::role_index(member.role)] += 1;
                }
            }
            by_role[crate::metrics::role_index(room::Role::Audience)] =
                i64::try_from(self.conns.len()).unwrap_or(i64::MAX) - by_role[1] - by_role[2];
            figures.participants = by_role;
        }
        figures.lagged = i64::try_from(self.n_lagged).unwrap_or(i64::MAX);
        figures.lease = self.owner_until.is_some_and(|until| tokio::time::Instant::now() < until);
        self.gauges.report(figures);
    }

    /// True when this hub runs the room's timers: always with the in-memory store; with a shared store, while it
    /// holds the room's timer lease.
    fn runs_timers(&self) -> bool {
        !self.shared.store.is_shared() || self.owner_until.is_some_and(|until| tokio::time::Instant::now() < until)
    }

    /// True when this hub's task is not needed for the room: nobody is connected to the room here, nothing is
    /// pending, and either the room is persistent and empty (it has no timers), or another hub, alive, holds its
    /// lease (it runs the timers and the media), or the room is not stored at all. The next request or join starts
    /// a new task, which loads the room from the store. So an empty persistent room costs the hub no task and no
    /// Redis traffic, and neither does a room whose participants are all connected to other hubs.
    fn is_idle(&self) -> bool {
        let quiet = self.conns.is_empty()
            && self.joining.is_none()
            && self.deferred.is_empty()
            && self.inbox.is_empty()
            && self.store_retry_at.is_none()
            && self.dropped.is_empty()
            && !self.reload_pending
            && !self.recheck_pending;
        let stored = self.committed.is_some();
        quiet
            && ((stored && self.room.is_persistent() && self.room.is_empty())
                || (stored && self.shared.store.is_shared() && !self.runs_media() && self.held_elsewhere())
                || (!stored && self.room.is_empty()))
    }

    /// Ends the task of an idle room (see [`Self::is_idle`]): leaves the directory first, so anything that comes
    /// later starts a new task, then hands what raced into the inbox to that new task, in order.
    async fn go_idle(&mut self) {
        self.shared.forget_room(&self.name, self.generation);
        self.inbox.close();
        // Only what needs an answer or carries a request starts the next task; lease answers, announcements and
        // the like are this task's and end with it (the next task reads the room and its lease afresh).
        let mut raced = Vec::new();
        while let Ok(msg) = self.inbox.try_recv() {
            if matches!(
                msg,
                RoomMsg::Join { .. }
                    | RoomMsg::Command { .. }
                    | RoomMsg::Admin { .. }
                    | RoomMsg::Create { .. }
                    | RoomMsg::Leave { .. }
                    | RoomMsg::Media { .. }
                    | RoomMsg::Relayed { .. }
                    | RoomMsg::ClaimLease
                    // The other hubs' connections of the room still need it.
                    | RoomMsg::Schedule { .. }
            ) {
                raced.push(msg);
            }
        }
        self.release_lease().await;
        if !raced.is_empty() {
            let next = self.shared.room(&self.name);
            for msg in raced {
                if let Err(e) = next.inbox.send(msg).await {
                    refuse(e.0, ErrorCode::Unavailable, "the room is restarting; retry");
                }
            }
        }
        info!("room task idle: stopped (the room stays in the store)");
    }

    /// Leaves the directory and answers every queued request with `code`.
    fn stop(&mut self, code: ErrorCode, message: &str) {
        self.shared.forget_room(&self.name, self.generation);
        // Requests that raced with the end get a clear answer rather than a dropped channel.
        self.inbox.close();
        for msg in std::mem::take(&mut self.deferred) {
            refuse(msg, code, message);
        }
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
                    token_id: grant.token_id.clone(),
                    issued_at: grant.issued_at.saturating_mul(1000),
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
                                old.link.close(CloseCode::DuplicateIdentity);
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
                            if matches!(e, StoreError::Conflict { .. }) && started.elapsed() < CONFLICT_RETRY_FOR {
                                attempt += 1;
                                debug!(identity = %who, attempt, "join lost a race; trying again on the reloaded room");
                                race_backoff(attempt).await;
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
                        let ice_servers = self.mint_ice(&who);
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
                            state: proto::RoomSnapshot {
                                media_epoch: self.client_media_epoch(),
                                ..convert::snapshot(&snapshot)
                            },
                            ice_servers,
                            reactions: Some(self.reactions_info()),
                        };
                        let handled_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                        info!(identity = %who, resumed = joined.resumed, role = ?joined.role, handled_us, "joined");
                        let _ = reply.send(Ok(Box::new(welcome)));
                        self.send_schedule(&who);
                        if joined.resumed {
                            self.send_tracks(&who).await;
                        }
                    }
                }
            }
            RoomMsg::React { who, conn_id, kind, reply } => self.react(&who, conn_id, kind, reply),
            RoomMsg::Command { who, conn_id, command, reason, reply } => {
                if !self.is_current(&who, conn_id) {
                    let _ = reply
                        .send(Err((ErrorCode::Conflict, "this session was taken over by another connection".into())));
                    return;
                }
                let mut attempt = 0;
                let started = Instant::now();
                let (flushed, result) = loop {
                    let now = self.now();
                    let by = room::Actor::Participant(who.clone());
                    let result =
                        self.guarded(|room| room.handle_command_as(now, &by, command.clone(), reason.as_deref()));
                    let mut cause = crate::webhooks::Cause::websocket(&who);
                    cause.reason = reason.clone();
                    self.cause = Some(cause);
                    let flushed = self.flush(None).await;
                    if matches!(flushed, Err(StoreError::Conflict { .. }))
                        && started.elapsed() < CONFLICT_RETRY_FOR
                        && self.is_current(&who, conn_id)
                    {
                        attempt += 1;
                        debug!(identity = %who, attempt, "command lost a race; running it again on the reloaded room");
                        race_backoff(attempt).await;
                        continue;
                    }
                    break (flushed, result);
                };
                let answer = match (flushed, result) {
                    (Err(e), _) => Err(store_failure(&e)),
                    (Ok(()), Some(Ok(r))) => Ok(convert::reply(r).map(|reply| match reply {
                        proto::Reply::State(mut state) => {
                            state.media_epoch = self.client_media_epoch();
                            proto::Reply::State(state)
                        }
                        other => other,
                    })),
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
            RoomMsg::Create { admin, setup, reply } => {
                if self.committed.is_some() || self.room.seq() > 0 {
                    let _ = reply.send(Err((ErrorCode::Conflict, format!("room {:?} already exists", self.name))));
                    return;
                }
                let now = self.now();
                match Room::create(self.name.clone(), self.shared.config.room_config(), now, setup) {
                    Ok(room) => self.room = room,
                    Err(e) => {
                        let _ = reply.send(Err((convert::error_code(&e), e.to_string())));
                        return;
                    }
                }
                self.cause =
                    Some(crate::webhooks::Cause { actor: room::Actor::Admin(admin).label(), via: "api", reason: None });
                let answer = match self.flush(None).await {
                    Ok(()) => Ok(self.room.view()),
                    Err(StoreError::Conflict { .. }) => {
                        Err((ErrorCode::Conflict, format!("room {:?} already exists", self.name)))
                    }
                    Err(e) => Err(store_failure(&e)),
                };
                let _ = reply.send(answer);
            }
            RoomMsg::Admin { admin, command, reason, reply } => {
                let mut attempt = 0;
                let started = Instant::now();
                let (flushed, result) = loop {
                    let now = self.now();
                    let result =
                        self.guarded(|room| room.handle_admin(now, &admin, command.clone(), reason.as_deref()));
                    self.cause = Some(crate::webhooks::Cause {
                        actor: room::Actor::Admin(admin.clone()).label(),
                        via: "api",
                        reason: reason.clone(),
                    });
                    let flushed = self.flush(None).await;
                    if matches!(flushed, Err(StoreError::Conflict { .. })) && started.elapsed() < CONFLICT_RETRY_FOR {
                        attempt += 1;
                        debug!(%admin, attempt, "admin command lost a race; running it again on the reloaded room");
                        race_backoff(attempt).await;
                        continue;
                    }
                    break (flushed, result);
                };
                let answer = match (flushed, result) {
                    (Err(e), _) => Err(store_failure(&e)),
                    (Ok(()), Some(Ok(r))) => Ok(r),
                    (Ok(()), Some(Err(e))) => Err((convert::error_code(&e), e.to_string())),
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
                    self.depart(&who, false).await;
                }
            }
            RoomMsg::Leave { who, conn_id, reply } => {
                if self.is_current(&who, conn_id) {
                    self.remove_conn(&who);
                    self.dropped.insert(who.clone());
                    self.depart(&who, true).await;
                }
                let _ = reply.send(());
            }
            RoomMsg::Media { who, conn_id, request, reply } => {
                self.on_media_request(who, conn_id, request, reply).await;
            }
            RoomMsg::Relayed { from, req, who, request } => self.on_relayed(from, req, who, request),
            RoomMsg::ClaimLease => self.renew_lease().await,
            RoomMsg::Lease { lease, asked_at } => {
                self.apply_lease(lease, asked_at).await;
                self.renewals += 1;
                if self.renewals.is_multiple_of(PRESENCE_SWEEP_RENEWALS) {
                    // Catches hubs that died before this one ever saw them alive.
                    self.expire_dead_presence(None).await;
                }
            }
            RoomMsg::Reassert(who) => self.reassert(who).await,
            RoomMsg::NodesGone(gone) => self.expire_dead_presence(Some(&gone)).await,
            RoomMsg::Drain { target } => {
                self.release_lease().await;
                info!(%target, "draining: handing the room over");
                let adopt = NodeMessage::Adopt { room: self.name.clone() }.encode();
                if let Err(e) = self.shared.store.send_to_node(&target, &adopt).await {
                    warn!(error = %e, "asking another hub to take the room over failed");
                }
            }
            RoomMsg::MediaSettled { who } => {
                if self.room.role(&who).is_none()
                    && let Some(media) = &self.shared.media
                {
                    media.remove_peer(&self.name, who.as_str());
                }
            }
            RoomMsg::MediaEvent(event) => self.on_media_event(event).await,
            RoomMsg::Remote(announcement) => self.on_remote(*announcement).await,
            RoomMsg::Recheck => self.recheck().await,
            RoomMsg::Schedule { frame } => self.on_schedule(frame).await,
            RoomMsg::Shutdown => {
                info!(connections = self.conns.len(), "closing connections for shutdown");
                for entry in self.conns.values() {
                    entry.link.close(CloseCode::ServerShutdown);
                }
                self.conns.clear();
                self.n_lagged = 0;
                self.shutting_down = true;
            }
        }
    }

    /// Commits the end of `who`'s connection to this hub (already out of `conns`): a `leave`, or a dropped
    /// connection (its grace period starts). Like a request, a transition that lost a commit race to another hub
    /// runs again on the newer room: the race is lost whenever another hub committed a moment before and its
    /// announcement had not arrived yet, and following that announcement must not swallow the departure (the
    /// participant would stay in the room, connected, with no connection anywhere). If it still fails, the retry
    /// after the backoff starts the grace period (`disconnect_orphans`).
    async fn depart(&mut self, who: &ParticipantId, leave: bool) {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            let now = self.now();
            if leave {
                self.guarded(|room| room.handle_leave(now, who));
                self.cause = Some(crate::webhooks::Cause::websocket(who));
            } else {
                self.guarded(|room| room.handle_disconnect(now, who));
            }
            let flushed = self.flush(None).await;
            let orphan = !self.conns.contains_key(who) && self.room.participant(who).is_some_and(|p| p.connected);
            match flushed {
                Err(StoreError::Conflict { .. }) if orphan && started.elapsed() < CONFLICT_RETRY_FOR => {
                    attempt += 1;
                    debug!(identity = %who, attempt, leave, "a departure lost a race; running it again");
                    race_backoff(attempt).await;
                }
                Err(_) if orphan => {
                    // Also after a conflict that was followed (`commit_failed` schedules no retry then).
                    self.store_retry_at.get_or_insert_with(|| tokio::time::Instant::now() + STORE_RETRY);
                    return;
                }
                Ok(()) | Err(_) => return,
            }
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
        let config = self.shared.config.room_config();
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
            debug!(%error, "a room transition lost a race");
        } else {
            warn!(%error, "committing a room transition failed; rolling it back");
        }
        if let StoreError::Conflict { found: Some(found), .. } = error
            && self.committed.as_ref().is_some_and(|s| s.seq < *found)
            && self.follow_ahead(*found).await
        {
            return;
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
        // A session resumed (or taken over) on another hub: its connection there gets the current slots from here.
        let joined = a.joined.clone();
        let next = self.apply_remote(a);
        if let Some(who) = joined {
            self.send_tracks(&who).await;
        }
        if next.reload {
            self.reload().await;
        }
        if next.media_moved {
            // Learn the new media hub now (the lease says which), before this hub's clients offer again.
            self.renew_lease().await;
        }
    }

    /// Follows one announcement without awaiting anything; says what must follow (a reload, a look at the lease).
    fn apply_remote(&mut self, a: Announcement) -> RemoteNext {
        let mut next = RemoteNext::default();
        if let Some(who) = &a.joined
            && let Some(entry) = self.remove_conn(who)
        {
            info!(identity = %who, node = %a.node, "session taken over on another hub");
            entry.link.close(CloseCode::DuplicateIdentity);
        }
        let current = self.committed.as_ref().map_or(0, |s| s.seq);
        // Outputs without a transition (head counts, media events) are delivered whatever the sequence number:
        // clients ignore stale head counts by their `seq`, and media events have none.
        if let Some(changes) = &a.changes {
            if changes.seq <= current && self.committed.is_some() {
                trace!(seq = changes.seq, "stale announcement skipped");
                return next;
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
                next.reload = true;
                return next;
            }
            let now = self.now();
            if !self.guarded(|room| room.apply_changes(changes, now)).unwrap_or(false) {
                self.restore_committed();
            }
            if let Some(media) = &self.shared.media {
                for who in &changes.removed {
                    media.remove_peer(&self.name, who.as_str());
                    self.tracks.remove(who);
                }
            }
            // Only a hub that took this one for gone disconnects a participant whose connection is here.
            for p in &changes.upserted {
                if !p.connected && self.conns.contains_key(&p.id) && self.joining.as_ref() != Some(&p.id) {
                    warn!(identity = %p.id, node = %a.node, "another hub took this hub for gone; reasserting");
                    self.deferred.push_back(RoomMsg::Reassert(p.id.clone()));
                }
            }
        }
        for output in a.outputs {
            match output {
                Announced::Event { to, frame } => match media_moved_epoch(&frame) {
                    // Only the new media hub announces it: follow at once (the frame reaches this hub's
                    // connections through `set_media`, once per epoch, never going back).
                    Some(epoch) => {
                        next.media_moved = true;
                        self.set_media(Some(a.node.clone()), epoch);
                    }
                    None => {
                        if stage::is_schedule_frame(&frame) {
                            self.stage.remember(&frame);
                        }
                        self.deliver(&to, frame.into());
                    }
                },
                Announced::Disconnect { who, reason } => {
                    if let Some(entry) = self.remove_conn(&who) {
                        info!(identity = %who, ?reason, "closing participant removed on another hub");
                        entry.link.close(close_code(reason));
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
                    entry.link.close(CloseCode::Removed);
                }
            }
        }
        if a.changes.is_none() && a.seq > current {
            info!(have = current, announced = a.seq, "missed announcements; reloading the room");
            next.reload = true;
        }
        next
    }

    /// The stored room is at `found`, ahead of this task: another hub's commits won the race. Their announcements
    /// were published by those commits and are arriving in the inbox; follow them (a few milliseconds at most)
    /// instead of reloading the whole room and resyncing every connection. Other messages taken from the inbox
    /// meanwhile run afterwards, in order. False when they did not all arrive in time (the caller reloads).
    async fn follow_ahead(&mut self, found: u64) -> bool {
        self.restore_committed();
        // A connection whose join is being committed is not welcomed yet: it must not get these events.
        let joining = self.joining.clone().and_then(|who| self.remove_conn(&who).map(|entry| (who, entry)));
        let deadline = tokio::time::Instant::now() + FOLLOW_AHEAD_WAIT;
        let mut follow_lease = false;
        while self.committed.as_ref().map_or(0, |s| s.seq) < found {
            match tokio::time::timeout_at(deadline, self.inbox.recv()).await {
                Ok(Some(RoomMsg::Remote(a))) => {
                    let next = self.apply_remote(*a);
                    follow_lease |= next.media_moved;
                    if next.reload {
                        break;
                    }
                }
                Ok(Some(other)) => self.deferred.push_back(other),
                Ok(None) | Err(_) => break,
            }
        }
        if let Some((who, entry)) = joining {
            self.insert_conn(who, entry);
        }
        if follow_lease {
            self.deferred.push_back(RoomMsg::ClaimLease);
        }
        let caught_up = self.committed.as_ref().map_or(0, |s| s.seq) == found;
        if caught_up {
            debug!(seq = found, "followed the announcements that won the race");
        }
        caught_up
    }

    fn close_all(&mut self, code: CloseCode) {
        for entry in self.conns.values() {
            entry.link.close(code);
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
                entry.link.close(CloseCode::Removed);
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
        let cause = self.cause.take();
        let changes = self.room.take_changes();
        let outputs: Vec<room::Output> = std::iter::from_fn(|| self.room.poll_output()).collect();
        let announcement =
            if self.shared.store.is_shared() && (changes.is_some() || !outputs.is_empty() || joined.is_some()) {
                Some(self.announcement(changes.clone(), &outputs, joined.clone()))
            } else {
                None
            };
        if let Some(changes) = changes {
            let present = joined.as_ref().map(|who| (who.as_str(), self.shared.node_id.as_str()));
            let hooks = Arc::clone(&self.shared.hooks);
            let at = hooks.at_commit(
                &mut self.hooks,
                &self.name,
                self.committed.as_ref(),
                &changes,
                &outputs,
                cause.as_ref(),
            );
            if let Err(e) =
                self.shared.store.commit_with(&self.name, &changes, announcement.as_deref(), present, at.as_ref()).await
            {
                self.commit_failed(&e).await;
                return Err(e);
            }
            if let Some(at) = at {
                hooks.committed(&self.name, at.extras);
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
            for who in &changes.removed {
                self.tracks.remove(who);
            }
            if !self.dropped.is_empty() {
                let (room, conns) = (&self.room, &self.conns);
                self.dropped.retain(|id| !conns.contains_key(id) && room.participant(id).is_some_and(|p| p.connected));
            }
        } else if let Some(text) = &announcement {
            // Outputs without a transition (head counts: the other hubs get the next ones), or a join that changed
            // nothing (a session taken over while connected), whose presence moves here all the same.
            let published = match &joined {
                Some(who) => self.present_here(who, text).await,
                None => self.shared.store.publish(&self.name, text).await,
            };
            if let Err(e) = published {
                debug!(error = %e, "announcing outputs failed");
            }
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
                        entry.link.close(code);
                    }
                }
                room::Output::Publish { who, allowed } => {
                    trace!(identity = %who, allowed, "publish permission changed");
                    if let Some(media) = &self.shared.media {
                        media.set_publish(&self.name, who.as_str(), allowed);
                    }
                }
                // The media hub follows the room's recording after the turn (`sync_recording`), whichever hub ran
                // the transition.
                room::Output::Record { .. } => {}
                // For the audit log and webhooks (not delivered to participants).
                room::Output::Moderated { .. } => {}
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
            .filter_map(|output| {
                Some(match output {
                    room::Output::Event { to, seq, event } => {
                        Announced::Event { to: to.clone(), frame: convert::event(*seq, event).to_json() }
                    }
                    room::Output::Disconnect { who, reason } => {
                        Announced::Disconnect { who: who.clone(), reason: *reason }
                    }
                    room::Output::Publish { who, allowed } => {
                        Announced::Publish { who: who.clone(), allowed: *allowed }
                    }
                    room::Output::Ended { .. } => Announced::Ended,
                    // Only the hub that ran the transition reports it (audit log, webhooks); recording follows
                    // the room's state (`sync_recording`).
                    room::Output::Moderated { .. } | room::Output::Record { .. } => return None,
                })
            })
            .collect();
        Announcement { node: self.shared.node_id.clone(), seq: self.room.seq(), changes, outputs: announced, joined }
            .encode()
    }

    fn deliver(&mut self, to: &room::Recipients, frame: Utf8Bytes) {
        let lagged_before = self.n_lagged;
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
        // Delivering only ever marks connections lagged.
        self.shared.metrics.lagged().inc_by(u64::try_from(self.n_lagged - lagged_before).unwrap_or(0));
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
                    entry.link.close(CloseCode::SlowConsumer);
                }
                self.dropped.insert(who.clone());
                self.depart(&who, false).await;
                continue;
            }
            let Some(snapshot) = self.room.snapshot_for(&who) else { continue };
            let frame: Utf8Bytes = proto::ServerMessage::Resync {
                seq: snapshot.seq,
                state: Box::new(proto::RoomSnapshot {
                    media_epoch: self.client_media_epoch(),
                    ..convert::snapshot(&snapshot)
                }),
            }
            .to_json()
            .into();
            // Slot changes were skipped too.
            let tracks = if self.runs_media() { self.tracks.get(&who).cloned() } else { None };
            if let Some(entry) = self.conns.get_mut(&who)
                && entry.link.try_send(frame).is_ok()
            {
                entry.lagged_since = None;
                self.n_lagged -= 1;
                self.shared.metrics.resynced();
                debug!(identity = %who, "resync sent");
                if let Some(tracks) = tracks {
                    let _ = entry.link.try_send(tracks.into());
                }
            }
        }
    }
}

fn send_frame(entry: &mut Entry, frame: &Utf8Bytes, now: Instant, n_lagged: &mut usize) {
    if entry.lagged_since.is_some() {
        return;
    }
    match entry.link.try_send(frame.clone()) {
        Ok(()) => {}
        Err(crate::link::EventRefused::Full) => {
            entry.lagged_since = Some(now);
            *n_lagged += 1;
        }
        // The connection task is gone; its Disconnect message is on the way.
        Err(crate::link::EventRefused::Closed) => {}
    }
}

/// Before running a request again that lost its `attempt`-th race in a row: from the second loss on, a random pause
/// of up to `attempt` ms (at most 20), so two hubs pushing a burst into one room stop colliding commit for commit
/// (while this room pauses, the other hub's commits go through).
async fn race_backoff(attempt: usize) {
    if attempt >= 2 {
        let cap = u64::try_from(attempt.min(20)).unwrap_or(20) * 1_000;
        tokio::time::sleep(Duration::from_micros(rand::random::<u64>() % cap)).await;
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
        room::DisconnectReason::Revoked => CloseCode::Revoked,
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
        RoomMsg::Admin { reply, .. } => {
            let _ = reply.send(Err((code, message.into())));
        }
        RoomMsg::Create { reply, .. } => {
            let _ = reply.send(Err((code, message.into())));
        }
        RoomMsg::Leave { reply, .. } => {
            let _ = reply.send(());
        }
        RoomMsg::Media { reply, .. } | RoomMsg::React { reply, .. } => {
            let _ = reply.send(Err((code, message.into())));
        }
        RoomMsg::Disconnect { .. }
        | RoomMsg::Relayed { .. }
        | RoomMsg::ClaimLease
        | RoomMsg::Lease { .. }
        | RoomMsg::NodesGone(_)
        | RoomMsg::Drain { .. }
        | RoomMsg::Reassert(_)
        | RoomMsg::MediaSettled { .. }
        | RoomMsg::MediaEvent(_)
        | RoomMsg::Remote(_)
        | RoomMsg::Recheck
        | RoomMsg::Schedule { .. }
        | RoomMsg::Shutdown => {}
    }
}
