//! One worker thread: a UDP socket, the peers it owns, their timers, and the fan-out to them.
//!
//! See the crate docs for the design. Per loop turn: wait in `mio::Poll` until the socket is readable, a waker
//! fires (command or forwarded packet) or the next timer is due; then read up to [`READ_BUDGET`] datagrams, run
//! the commands, fan out forwarded packets, fire due timers, emit active-speaker changes, flush the send batch and
//! wake the workers that were handed packets.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token, Waker};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::config::DtlsCert;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::rtp::{Extension, ExtensionValues, RtpWrite};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tokio::sync::{mpsc, oneshot};

use crate::filler::{FILLER_IDENTITY, FillerSource};
use crate::log_limit::LogLimiter;
use crate::send::{SLOT_BYTES, SendBatch};
use crate::srtp::{self, SrtpTx};
use crate::tcp::{MAX_FRAME, Read4571, Tcp};
use crate::wire::SdpKind;
use crate::{FillerStopReason, MediaError, MediaEvent, PeerState, Stats, wire};

pub(crate) const WAKER: Token = Token(0);
pub(crate) const SOCKET: Token = Token(1);
pub(crate) const LISTENER: Token = Token(2);
/// Datagrams read per loop turn before the other work gets a turn.
const READ_BUDGET: usize = 256;
/// Peers whose timers fire per loop turn: thousands of peers' timers can fall due together, and a fan-out waiting
/// behind all of them would be late by tens of milliseconds.
const TIMER_BUDGET: usize = 128;
/// Forwarded packets handled per loop turn.
const FORWARD_BUDGET: usize = 1024;
/// Copies a worker fans out in one loop turn before it reads more of its socket or queue (about 30-60 ms of
/// work): past it the turn runs its commands and timers first, so an offer or a handshake never waits behind a long
/// backlog of fan-outs.
const COPY_BUDGET: usize = 16_384;
/// Longest sleep when nothing is scheduled.
const MAX_WAIT: Duration = Duration::from_secs(1);
/// A slot whose publisher sent nothing for this long may be given to another publisher.
const SLOT_IDLE: Duration = Duration::from_secs(2);
/// Disconnected this long = failed.
const FAILED_AFTER: Duration = Duration::from_secs(15);
/// Log lines a peer can trigger repeatedly: at most one per this interval per worker (see [`LogLimiter`]).
const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// See [`crate::FORWARD_STALE_MS`].
const FORWARD_STALE: Duration = Duration::from_millis(crate::FORWARD_STALE_MS);
/// Listeners a fan-out touches together before writing to them (their cache misses overlap).
const FANOUT_GROUP: usize = 16;
/// Opus RTP clock.
const OPUS_HZ: u64 = 48_000;
/// One 20 ms Opus frame in RTP ticks.
const FRAME_TICKS: u64 = 960;
/// Filler packets a worker sends per filler per loop turn when it fell behind.
const FILLER_CATCH_UP: usize = 5;
/// A filler this late (the worker stalled) skips ahead instead of bursting.
const FILLER_MAX_LATE: Duration = Duration::from_millis(200);

/// A moved peer's room waits this long at most for the peer to arrive before its held-back commands run anyway.
const ARRIVAL_WAIT: Duration = Duration::from_secs(2);
/// Commands held back for one room while a peer moves in; past this the worker stops waiting.
const ARRIVAL_HOLD: usize = 4096;
/// Messages to one worker that wait in the outbox while its queue is full (datagrams are dropped past it).
const OUTBOX_MAX: usize = 4096;

/// What other threads hold of a worker.
pub(crate) struct WorkerLink {
    pub(crate) fwd_tx: SyncSender<Forwarded>,
    pub(crate) waker: Arc<Waker>,
    /// Peers on this worker (for placement).
    pub(crate) load: AtomicUsize,
    /// The worker's host candidate (the address its peers' ICE pairs end at).
    pub(crate) candidate: SocketAddr,
    /// Its passive ICE-TCP host candidate, when ICE-TCP is on.
    pub(crate) tcp_candidate: Option<SocketAddr>,
    /// The worker's socket, for sending: the peers it is home to may be hosted by another worker.
    pub(crate) socket: Arc<std::net::UdpSocket>,
}

/// What workers hand each other (one bounded channel per worker, in order).
pub(crate) enum Forwarded {
    /// A frame from a publisher (or the filler) on another worker.
    Frame { room: Arc<str>, source: Arc<str>, frame: Frame },
    /// A publisher of `room` spoke on another worker: filler `generation` stops, and its slots free.
    FillerSpeech { room: Arc<str>, generation: u64 },
    /// Rebalancing: the peer of (room, identity) moves here (`None`: the sender had no such peer).
    PeerIn { room: Arc<str>, identity: Arc<str>, peer: Option<(u64, Box<Peer>)> },
    /// A datagram (or, `tcp`, an ICE-TCP frame) the receiving peer's home worker read for it (`check`: it was routed
    /// by its STUN ufrag, so the `Rtc` must accept it first).
    Datagram { id: u64, source: SocketAddr, data: Box<[u8]>, check: bool, tcp: bool },
    /// A packet for the ICE-TCP connection from `to` (on the receiving worker, the home of peer `id`, whose `Rtc`
    /// sends there).
    TcpSend { id: u64, to: SocketAddr, data: Box<[u8]> },
    /// A routing change for peer `id`, homed on the receiving worker, hosted by the sender (or elsewhere).
    Route { id: u64, op: RouteOp },
}

/// Routing changes a peer's host sends its home worker, which reads its socket.
pub(crate) enum RouteOp {
    /// The peer's `Rtc` sends to this address (it passed ICE): route it.
    Addr(SocketAddr),
    /// These addresses are no longer the peer's (a new `Rtc`).
    Unbind(Vec<SocketAddr>),
    /// The peer's server-side ufrag changed (a renegotiation with an ICE restart).
    Ufrag { old: String, new: String },
    /// The peer is now hosted by this worker.
    Host(usize),
    /// The peer is gone: forget its addresses and ufrag.
    Gone { addrs: Vec<SocketAddr>, ufrag: String },
}

/// What a listener needs of a received frame.
#[derive(Clone)]
pub(crate) struct Frame {
    /// RTP time in 48 kHz ticks (str0m's extended timestamp).
    time: u64,
    network_time: Instant,
    data: Arc<[u8]>,
    audio_level: Option<i8>,
    voice_activity: Option<bool>,
}

pub(crate) enum Command {
    Offer {
        room: Arc<str>,
        identity: Arc<str>,
        offer: Box<CheckedOffer>,
        publish: Arc<AtomicBool>,
        record: Arc<AtomicBool>,
        generation: u64,
        reply: oneshot::Sender<Result<String, MediaError>>,
    },
    Answer {
        room: Arc<str>,
        identity: Arc<str>,
        answer: Box<SdpAnswer>,
        reply: oneshot::Sender<Result<(), MediaError>>,
    },
    RemovePeer {
        room: Arc<str>,
        identity: Arc<str>,
    },
    RemoveRoom {
        room: Arc<str>,
    },
    /// The workers hosting peers of `room` (a full replacement).
    RoomWorkers {
        room: Arc<str>,
        workers: Vec<usize>,
    },
    /// `identity` stopped publishing (or left): free the slots it had.
    SourceGone {
        room: Arc<str>,
        identity: Arc<str>,
    },
    /// Where the room's filler plays (worker, generation), or that it stopped (a full replacement; to every worker).
    FillerAt {
        room: Arc<str>,
        at: Option<(usize, u64)>,
    },
    /// Host the room's filler on this worker.
    PlayFiller {
        room: Arc<str>,
        source: FillerSource,
        generation: u64,
    },
    /// Stop the room's filler hosted here, if it plays.
    StopFiller {
        room: Arc<str>,
        reason: FillerStopReason,
    },
    /// Rebalancing: the peer of (room, identity) is on its way here; hold back the room's commands until it is in.
    Arriving {
        room: Arc<str>,
        identity: Arc<str>,
    },
    /// Rebalancing: hand the peer of (room, identity) to worker `to`.
    MoveOut {
        room: Arc<str>,
        identity: Arc<str>,
        to: usize,
    },
    Shutdown,
}

impl Command {
    /// The room a command is about.
    fn room(&self) -> Option<&Arc<str>> {
        match self {
            Self::Offer { room, .. }
            | Self::Answer { room, .. }
            | Self::RemovePeer { room, .. }
            | Self::RemoveRoom { room }
            | Self::RoomWorkers { room, .. }
            | Self::SourceGone { room, .. }
            | Self::FillerAt { room, .. }
            | Self::PlayFiller { room, .. }
            | Self::StopFiller { room, .. }
            | Self::Arriving { room, .. }
            | Self::MoveOut { room, .. } => Some(room),
            Self::Shutdown => None,
        }
    }
}

/// A client offer that passed the pre-checks, parsed.
pub(crate) struct CheckedOffer {
    pub(crate) sdp: SdpOffer,
    /// Its m-lines (counted by the pre-check).
    pub(crate) mlines: usize,
}

pub(crate) struct WorkerInit {
    pub(crate) idx: usize,
    pub(crate) socket: mio::net::UdpSocket,
    pub(crate) poll: Poll,
    pub(crate) candidate: SocketAddr,
    pub(crate) cmd_rx: Receiver<Command>,
    pub(crate) fwd_rx: Receiver<Forwarded>,
    pub(crate) links: Arc<[WorkerLink]>,
    pub(crate) events: mpsc::Sender<MediaEvent>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) speaker_interval: Duration,
    pub(crate) max_mlines: usize,
    pub(crate) loudest: usize,
    /// The ICE-TCP listener (registered as [`LISTENER`]), and the most connections it keeps.
    pub(crate) tcp: Option<mio::net::TcpListener>,
    pub(crate) max_tcp: usize,
    /// A handle on `poll`'s registry.
    pub(crate) registry: mio::Registry,
    /// The recording writer's queue.
    pub(crate) recorder: crate::recording::RecQueue,
}

/// A downstream slot: one server-sending audio m-line.
struct Slot {
    mid: Mid,
    /// The negotiated Opus payload type (looked up once).
    pt: Option<Pt>,
    source: Option<Arc<str>>,
    /// When the current source last wrote to this slot.
    last_write: Option<Instant>,
    /// Last RTP time sent on this slot (48 kHz ticks) and when.
    last_out: Option<(u64, Instant)>,
    /// out time = in time + offset (wrapping).
    offset: u64,
    /// Next RTP sequence number (extended) on this slot.
    seq: u64,
    /// The m-line's SSRC (str0m's `StreamTx`), looked up on the first thin write.
    ssrc: Option<u32>,
    /// The listener's extension ids for the audio level and the mid, looked up on the first thin write.
    ext_ids: Option<(Option<u8>, Option<u8>)>,
    /// Packets and payload bytes sent on the thin path (for str0m's sender reports), and the packet count last
    /// reported to str0m.
    sent_packets: u64,
    sent_bytes: u64,
    reported_packets: u64,
    /// The source RTP time of the last frame written (a frame seen twice, around a move, is written once).
    last_in: Option<u64>,
}

/// `repr(C)`, hot fields first: the fan-out reads `connected`, `dest`, `srtp` and `slots` of every listener, and
/// they share the first cache lines of the box (touched a group of listeners at a time, before their writes), not
/// the far end of the ~4 KiB `Rtc`.
#[repr(C)]
pub(crate) struct Peer {
    connected: bool,
    /// The worker whose socket and candidate the peer's ICE pair uses: where its datagrams arrive and where its
    /// routes live. The hosting worker is another one after a rebalancing move.
    home: usize,
    /// Where str0m sends (the nominated ICE pair's remote address, and whether it is ICE-TCP), refreshed after
    /// every drain.
    dest: Option<(SocketAddr, bool)>,
    /// The thin egress path's SRTP keys (from the `Rtc`'s DTLS session, derived on the first thin write).
    srtp: Option<SrtpTx>,
    slots: Vec<Slot>,
    room: Arc<str>,
    identity: Arc<str>,
    rtc: Rtc,
    publish: Arc<AtomicBool>,
    /// Its audio goes to the room's recording (`Media::set_record`).
    record: Arc<AtomicBool>,
    generation: u64,
    ufrag: String,
    addrs: Vec<SocketAddr>,
    /// The server's own offer awaiting the client's answer, and the mid it adds.
    pending: Option<(SdpPendingOffer, Mid)>,
    next_timeout: Option<Instant>,
    reported: Option<PeerState>,
    disconnected_since: Option<Instant>,
    /// m-lines negotiated (the client's last offer, plus the SFU's own additions since): kept at most
    /// `max_mlines`, which bounds the peer's memory.
    mlines: usize,
    /// The client's DTLS certificate fingerprint (the `a=fingerprint` of its last offer): a new one means a new
    /// client peer connection, which needs a new `Rtc` (str0m keeps the first DTLS session of an `Rtc`).
    fingerprint: String,
}

/// Speaking state of one local publisher.
struct Level {
    last_loud: Option<Instant>,
    /// Loudest level (0..=127, 127 loudest) since the last report.
    peak: u8,
    reported: bool,
}

#[derive(Default)]
struct Room {
    /// Local peers by identity.
    peers: HashMap<Arc<str>, u64>,
    levels: HashMap<Arc<str>, Level>,
    loudest: Option<crate::loudest::Loudest>,
    /// The last frame fanned out per source: a listener moving in gets the one it may have missed in flight.
    last: HashMap<Arc<str>, Frame>,
}

/// Filler audio hosted by this worker: a virtual publisher paced by deadline.
struct Filler {
    source: FillerSource,
    generation: u64,
    /// Next packet to send.
    next: usize,
    /// When it is due (deadlines advance by packet durations from the start, so they do not drift).
    due: Instant,
    /// Its RTP time (48 kHz ticks, continuous across loops of the file).
    time: u64,
}

/// A room waiting for peers moving in, and the commands held back for it meanwhile.
struct Arrival {
    who: Vec<Arc<str>>,
    held: VecDeque<Command>,
    since: Instant,
}

/// Everything except the peers, so a peer and the rest can be borrowed at once.
struct Ctx {
    idx: usize,
    /// Read by this worker only; its sends go through `batch` (on the same socket, shared through `links`).
    socket: mio::net::UdpSocket,
    candidate: SocketAddr,
    links: Arc<[WorkerLink]>,
    events: mpsc::Sender<MediaEvent>,
    stats: Arc<Stats>,
    by_addr: HashMap<SocketAddr, u64>,
    by_ufrag: HashMap<String, u64>,
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Sends on this worker's socket.
    batch: SendBatch,
    /// Sends on other workers' sockets, for peers moved here (made on first use).
    foreign: Vec<Option<SendBatch>>,
    /// Messages to each worker that found its queue full, in order, retried every loop turn.
    outbox: Vec<VecDeque<Forwarded>>,
    /// ICE-TCP: the listener and its connections, when on.
    tcp: Option<Tcp>,
    /// The poll's registry (ICE-TCP connections register and change interest).
    registry: mio::Registry,
    /// Scratch list of ICE-TCP connections to close.
    tcp_closing: Vec<usize>,
    /// Frames received during a drain, fanned out after it.
    received: Vec<(u64, Frame)>,
    /// How long the datagram being handled waited in the socket's queue (zero for other input): counted into the
    /// arrival time of the frames it carried (see `recv`).
    waited: Duration,
    /// Copies fanned out in this loop turn (against [`COPY_BUDGET`]).
    turn_copies: usize,
    /// Peers whose connection state needs a look at tick time.
    disconnected: HashSet<u64>,
    /// Workers handed packets since the last wake (each woken once).
    to_wake: Vec<bool>,
    /// Most m-lines per peer: the SFU offers no further slot beyond it.
    max_mlines: usize,
    /// "rtc output did not settle": at most one line per interval (a peer could trigger it per datagram).
    settle_log: LogLimiter,
}

pub(crate) struct Worker {
    ctx: Ctx,
    poll: Poll,
    cmd_rx: Receiver<Command>,
    fwd_rx: Receiver<Forwarded>,
    /// Boxed: a `Peer` is ~4.5 KiB inline (its `Rtc`), and the map keeps up to half its slots empty. Keyed by our
    /// own sequential ids (no peer chooses them), so the fast Fx hash is safe here; a fan-out looks up every listener.
    peers: HashMap<u64, Box<Peer>, rustc_hash::FxBuildHasher>,
    rooms: HashMap<Arc<str>, Room>,
    /// Other workers hosting peers of a room.
    room_workers: HashMap<Arc<str>, Vec<usize>>,
    next_id: u64,
    speaker_interval: Duration,
    next_tick: Instant,
    /// The worker's DTLS certificate, shared by its peers (saves generating a key pair per join).
    cert: Option<DtlsCert>,
    /// Fillers hosted here, by room.
    fillers: HashMap<Arc<str>, Filler>,
    /// Where each room's filler plays (worker, generation), as far as this worker knows: speech of a local
    /// publisher stops it; forwarded filler frames of a room not listed here are dropped (a late one after a stop).
    filler_at: HashMap<Arc<str>, (usize, u64)>,
    /// [`FILLER_IDENTITY`], shared.
    filler_id: Arc<str>,
    /// Scratch list of one fan-out's listener ids (kept for its allocation).
    fanout_order: Vec<u64>,
    /// Reads the socket with the kernel's receive times.
    reader: crate::recv::Reader,
    loudest: usize,
    /// The recording writer's queue.
    recorder: crate::recording::RecQueue,
    /// Peers this worker is home to that another worker hosts (moved), by id: their datagrams go there.
    away: HashMap<u64, usize, rustc_hash::FxBuildHasher>,
    /// Rooms waiting for peers moving in.
    arriving: HashMap<Arc<str>, Arrival>,
}

fn emit(ctx: &Ctx, ev: MediaEvent) {
    if ctx.events.try_send(ev).is_err() {
        ctx.stats.events_dropped.fetch_add(1, Ordering::Relaxed);
    }
}

impl Worker {
    /// Builds the worker (on its own thread: the `sendmmsg` headers are not `Send`).
    pub(crate) fn new(init: WorkerInit) -> Self {
        let socket = init.socket;
        let n = init.links.len();
        let batch = SendBatch::new(init.links[init.idx].socket.clone(), init.stats.clone());
        let tcp = init.tcp.map(|l| Tcp::new(l, init.max_tcp));
        Self {
            ctx: Ctx {
                idx: init.idx,
                socket,
                candidate: init.candidate,
                links: init.links,
                events: init.events,
                stats: init.stats,
                by_addr: HashMap::new(),
                by_ufrag: HashMap::new(),
                timers: BinaryHeap::new(),
                batch,
                foreign: (0..n).map(|_| None).collect(),
                outbox: (0..n).map(|_| VecDeque::new()).collect(),
                tcp,
                registry: init.registry,
                tcp_closing: Vec::new(),
                received: Vec::with_capacity(64),
                waited: Duration::ZERO,
                turn_copies: 0,
                disconnected: HashSet::new(),
                to_wake: vec![false; n],
                max_mlines: init.max_mlines,
                settle_log: LogLimiter::new(LOG_INTERVAL),
            },
            poll: init.poll,
            cmd_rx: init.cmd_rx,
            fwd_rx: init.fwd_rx,
            peers: HashMap::default(),
            rooms: HashMap::new(),
            room_workers: HashMap::new(),
            // Ids are unique over all workers (the worker's index in the top bits): a peer keeps its id when moved.
            next_id: ((init.idx as u64) << 48) | 1,
            speaker_interval: init.speaker_interval,
            next_tick: Instant::now() + init.speaker_interval,
            cert: str0m::crypto::from_feature_flags().dtls_provider.generate_certificate(),
            fillers: HashMap::new(),
            filler_at: HashMap::new(),
            filler_id: Arc::from(FILLER_IDENTITY),
            fanout_order: Vec::new(),
            reader: crate::recv::Reader::new(),
            loudest: init.loudest,
            recorder: init.recorder,
            away: HashMap::default(),
            arriving: HashMap::new(),
        }
    }

    pub(crate) fn run(mut self) {
        let span = tracing::info_span!("media_worker", worker = self.ctx.idx, addr = %self.ctx.candidate);
        let _enter = span.enter();
        tracing::debug!("worker running");
        let mut events = Events::with_capacity(16);
        let mut buf = vec![0u8; 2048];
        let mut more_socket = false;
        let mut more_fwd = false;
        // ICE-TCP connections that were readable and may hold more (edge-triggered: read on until idle).
        let mut tcp_ready: Vec<usize> = Vec::new();
        let mut frame = vec![0u8; MAX_FRAME];
        loop {
            self.ctx.turn_copies = 0;
            let now = Instant::now();
            let wait = if more_socket || more_fwd || !tcp_ready.is_empty() {
                Duration::ZERO
            } else {
                let mut next =
                    self.ctx.timers.peek().map_or(self.next_tick, |Reverse((t, _))| (*t).min(self.next_tick));
                for f in self.fillers.values() {
                    next = next.min(f.due);
                }
                next.saturating_duration_since(now).min(MAX_WAIT)
            };
            if let Err(e) = self.poll.poll(&mut events, Some(wait))
                && e.kind() != ErrorKind::Interrupted
            {
                tracing::error!(error = %e, "poll failed; worker stops");
                return;
            }
            for ev in events.iter() {
                match ev.token() {
                    SOCKET => more_socket = true,
                    WAKER => {}
                    LISTENER => self.accept_tcp(),
                    token => {
                        let Some(idx) = self.ctx.tcp.as_ref().and_then(|t| t.conn_of(token)) else { continue };
                        if ev.is_writable()
                            && let Some(t) = self.ctx.tcp.as_mut()
                        {
                            t.writable(idx, &self.ctx.registry, &mut self.ctx.tcp_closing);
                        }
                        if (ev.is_readable() || ev.is_read_closed() || ev.is_error()) && !tcp_ready.contains(&idx) {
                            tcp_ready.push(idx);
                        }
                    }
                }
            }
            if more_socket {
                more_socket = self.read_socket(&mut buf);
            }
            if !tcp_ready.is_empty() {
                self.read_tcp(&mut tcp_ready, &mut frame);
            }
            if !self.run_commands() {
                break;
            }
            more_fwd = self.run_forwarded();
            self.run_timers();
            self.run_fillers();
            let now = Instant::now();
            if now >= self.next_tick {
                self.tick(now);
                self.next_tick = now + self.speaker_interval;
            }
            self.ctx.flush_all();
            self.ctx.flush_outboxes();
            wake_handed(&mut self.ctx);
        }
        for p in self.peers.values_mut() {
            p.rtc.disconnect();
        }
        tracing::debug!("worker stopped");
    }

    /// Accepts pending ICE-TCP connections.
    fn accept_tcp(&mut self) {
        let Some(t) = self.ctx.tcp.as_mut() else { return };
        let (accepted, refused) = t.accept(&self.ctx.registry, Instant::now(), READ_BUDGET);
        self.ctx.stats.tcp_accepted.fetch_add(accepted, Ordering::Relaxed);
        self.ctx.stats.tcp_refused.fetch_add(refused, Ordering::Relaxed);
        if accepted + refused >= READ_BUDGET as u64 {
            // More may be pending past the budget, and mio reports readiness only for new ones: next turn.
            let _ = self.ctx.links[self.ctx.idx].waker.wake();
        }
    }

    /// Reads frames from the readable ICE-TCP connections, up to the budget each; those that may hold more stay in
    /// `ready` for the next turn.
    fn read_tcp(&mut self, ready: &mut Vec<usize>, frame: &mut [u8]) {
        let mut i = 0;
        while i < ready.len() {
            let idx = ready[i];
            let mut more = true;
            for _ in 0..READ_BUDGET {
                let Some(t) = self.ctx.tcp.as_mut() else { return };
                match t.read_frame(idx, frame) {
                    Read4571::Frame(n) => {
                        let Some(c) = t.conn(idx) else { break };
                        let (remote, bound) = (c.remote, c.peer);
                        self.ctx.stats.datagrams_in.fetch_add(1, Ordering::Relaxed);
                        self.handle_tcp_frame(Instant::now(), remote, bound, &frame[..n]);
                    }
                    Read4571::Idle => {
                        more = false;
                        break;
                    }
                    Read4571::Closed => {
                        self.ctx.close_tcp(idx);
                        more = false;
                        break;
                    }
                }
            }
            if more {
                i += 1;
            } else {
                ready.swap_remove(i);
            }
        }
    }

    /// One ICE-TCP frame from `remote`, bound to peer `bound` if its `Rtc` sent there already; else only STUN with
    /// a known ufrag is taken.
    fn handle_tcp_frame(&mut self, now: Instant, remote: SocketAddr, bound: Option<u64>, data: &[u8]) {
        let (id, check) = match bound {
            Some(id) => (id, false),
            None => match wire::stun_local_ufrag(data).and_then(|u| self.ctx.by_ufrag.get(u)) {
                Some(id) => (*id, true),
                None => {
                    self.ctx.stats.unknown_dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            },
        };
        if !self.peers.contains_key(&id) {
            if let Some(&w) = self.away.get(&id) {
                let msg = Forwarded::Datagram { id, source: remote, data: data.into(), check, tcp: true };
                if !self.ctx.hand(w, msg, false) {
                    self.ctx.stats.cross_worker_dropped.fetch_add(1, Ordering::Relaxed);
                }
            } else {
                self.ctx.stats.unknown_dropped.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        self.receive(now, id, remote, data, check, true);
    }

    /// Reads up to the budget; returns whether the socket may hold more.
    fn read_socket(&mut self, buf: &mut [u8]) -> bool {
        for _ in 0..READ_BUDGET {
            if self.ctx.turn_copies >= COPY_BUDGET {
                return true;
            }
            match self.reader.recv(&self.ctx.socket, buf) {
                Ok((n, source, waited)) => {
                    let now = Instant::now();
                    self.ctx.stats.datagrams_in.fetch_add(1, Ordering::Relaxed);
                    self.ctx.waited = waited;
                    self.handle_datagram(now, source, &buf[..n]);
                    self.ctx.waited = Duration::ZERO;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    // E.g. ICMP port unreachable surfacing as ECONNREFUSED: not fatal.
                    tracing::trace!(error = %e, "recv_from");
                }
            }
        }
        true
    }

    pub(crate) fn handle_datagram(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        let stats = &self.ctx.stats;
        let (id, by_ufrag) = if let Some(id) = self.ctx.by_addr.get(&source) {
            (*id, false)
        } else if let Some(id) = wire::stun_local_ufrag(data).and_then(|u| self.ctx.by_ufrag.get(u)) {
            (*id, true)
        } else {
            stats.unknown_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if !self.peers.contains_key(&id) {
            if let Some(&w) = self.away.get(&id) {
                // A peer homed here and hosted by worker `w` (moved to even out its room): its host handles it.
                let msg = Forwarded::Datagram { id, source, data: data.into(), check: by_ufrag, tcp: false };
                if !self.ctx.hand(w, msg, false) {
                    self.ctx.stats.cross_worker_dropped.fetch_add(1, Ordering::Relaxed);
                }
            } else {
                stats.unknown_dropped.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        self.receive(now, id, source, data, by_ufrag, false);
    }

    /// Gives a datagram to peer `id` hosted here (`check`: routed by its STUN ufrag, so the `Rtc` must accept it
    /// first), and fans out what it carried.
    fn receive(&mut self, now: Instant, id: u64, source: SocketAddr, data: &[u8], check: bool, tcp: bool) {
        let stats = &self.ctx.stats;
        let by_ufrag = check;
        let Some(peer) = self.peers.get_mut(&id) else {
            stats.unknown_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if wire::is_rtp(data) && !peer.publish.load(Ordering::Acquire) {
            stats.unpublished_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let link = &self.ctx.links[peer.home];
        let (proto, local) = match (tcp, link.tcp_candidate) {
            (true, Some(at)) => (Protocol::Tcp, at),
            _ => (Protocol::Udp, link.candidate),
        };
        let Ok(recv) = Receive::new(proto, source, local, data) else {
            stats.garbage_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let input = Input::Receive(now, recv);
        if by_ufrag && !peer.rtc.accepts(&input) {
            stats.garbage_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Err(e) = peer.rtc.handle_input(input) {
            tracing::debug!(peer = %peer.identity, error = %e, "rtc refused input");
            stats.garbage_dropped.fetch_add(1, Ordering::Relaxed);
        }
        drain(id, peer, &mut self.ctx, now);
        self.fan_out_received(now);
    }

    /// Fans out the frames collected by the last drain(s).
    fn fan_out_received(&mut self, now: Instant) {
        if self.ctx.received.is_empty() {
            return;
        }
        let mut received = std::mem::take(&mut self.ctx.received);
        let waited = self.ctx.waited;
        for (src_id, mut frame) in received.drain(..) {
            let Some(src) = self.peers.get(&src_id) else { continue };
            if !src.publish.load(Ordering::Acquire) {
                self.ctx.stats.unpublished_dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            // The frame arrived when the kernel queued its datagram, not when this worker got to it.
            if let Some(t) = frame.network_time.checked_sub(waited) {
                frame.network_time = t;
            }
            if now.saturating_duration_since(frame.network_time) > FORWARD_STALE {
                // This worker fell behind and the frame waited in the socket's queue: shed it here, before it costs
                // a fan-out on every worker of the room, as the other workers shed late frames they are handed.
                self.ctx.stats.stale_dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            self.ctx.stats.media_in.fetch_add(1, Ordering::Relaxed);
            let room = src.room.clone();
            let source = src.identity.clone();
            if src.record.load(Ordering::Relaxed) {
                // Arc clones into a preallocated slot of a bounded queue: never waits (full: dropped, counted).
                self.recorder.push(crate::recording::RecPacket {
                    room: room.clone(),
                    identity: source.clone(),
                    time: frame.time,
                    at: frame.network_time,
                    data: frame.data.clone(),
                });
            }
            let loud = self.rooms.get_mut(&room).is_some_and(|r| note_level(r, &source, &frame, now));
            if loud && self.filler_at.contains_key(&room) {
                // Before this frame goes anywhere: the filler's slots must be free for it.
                self.filler_speech(&room);
            }
            forward(&mut self.ctx, &self.room_workers, &room, &source, &frame);
            // Wake the other workers now, not at the end of the turn: they fan out their share while this one does.
            wake_handed(&mut self.ctx);
            self.fan_out_local(&room, &source, &frame, now);
        }
        // Keep the allocation.
        if self.ctx.received.is_empty() {
            self.ctx.received = received;
        }
    }

    /// A local publisher of `room` spoke while a filler plays: stop it here or tell its host, and free its slots on
    /// every worker of the room (the messages go ahead of the speech frame in each worker's queue).
    fn filler_speech(&mut self, room: &Arc<str>) {
        let Some(&(host, generation)) = self.filler_at.get(room) else { return };
        self.filler_gone(room, generation, FillerStopReason::Speech);
        let mut told_all = true;
        let others = self.room_workers.get(room).map(|v| &v[..]).unwrap_or_default();
        let mut targets =
            others.iter().copied().chain((host != self.ctx.idx && !others.contains(&host)).then_some(host));
        for w in &mut targets {
            if w == self.ctx.idx {
                continue;
            }
            match self.ctx.links[w].fwd_tx.try_send(Forwarded::FillerSpeech { room: room.clone(), generation }) {
                Ok(()) => self.ctx.to_wake[w] = true,
                Err(_) => told_all = false,
            }
        }
        if !told_all {
            // Retried on the next loud packet.
            self.filler_at.insert(room.clone(), (host, generation));
        }
    }

    /// Filler `generation` of `room` is over, as far as this worker is concerned: forget where it plays, stop it if
    /// hosted here (with the event), and free the slots it had on local listeners.
    fn filler_gone(&mut self, room: &Arc<str>, generation: u64, reason: FillerStopReason) {
        if self.filler_at.get(room).is_some_and(|(_, g)| *g == generation) {
            self.filler_at.remove(room);
        }
        if self.fillers.get(room).is_some_and(|f| f.generation == generation) {
            self.fillers.remove(room);
            emit(&self.ctx, MediaEvent::FillerStopped { room: room.to_string(), reason });
            tracing::debug!(room = %room, ?reason, "filler stopped");
        }
        let id = self.filler_id.clone();
        self.source_gone(room, &id);
    }

    /// Sends the due packets of the fillers hosted here.
    fn run_fillers(&mut self) {
        if self.fillers.is_empty() {
            return;
        }
        let mut fillers = std::mem::take(&mut self.fillers);
        let source = self.filler_id.clone();
        for (room, f) in &mut fillers {
            let now = Instant::now();
            if now.saturating_duration_since(f.due) > FILLER_MAX_LATE {
                f.due = now;
            }
            for _ in 0..FILLER_CATCH_UP {
                if f.due > now {
                    break;
                }
                let Some(p) = f.source.packets.get(f.next) else {
                    f.next = 0;
                    break;
                };
                let frame = Frame {
                    time: f.time,
                    network_time: now,
                    data: p.data.clone(),
                    audio_level: None,
                    voice_activity: None,
                };
                forward(&mut self.ctx, &self.room_workers, room, &source, &frame);
                self.fan_out_local(room, &source, &frame, now);
                f.time = f.time.wrapping_add(u64::from(p.ticks));
                f.due += Duration::from_micros(u64::from(p.ticks) * 1_000_000 / OPUS_HZ);
                f.next = (f.next + 1) % f.source.packets.len();
            }
        }
        self.fillers = fillers;
    }

    /// Writes a frame of `source` to every local peer of `room` except `source` itself.
    fn fan_out_local(&mut self, room: &Arc<str>, source: &Arc<str>, frame: &Frame, now: Instant) {
        let n = self.loudest;
        let Some(r) = self.rooms.get_mut(room) else { return };
        if n > 0 && **source != *self.filler_id {
            let l = r.loudest.get_or_insert_with(|| crate::loudest::Loudest::new(n));
            let o = l.observe(source, frame.audio_level, frame.voice_activity, frame.network_time);
            if let Some(d) = o.deselected {
                self.free_slots(room, &d);
            }
            if !o.selected {
                return;
            }
        }
        let Some(r) = self.rooms.get_mut(room) else { return };
        match r.last.get_mut(source) {
            Some(f) => f.clone_from(frame),
            None => {
                r.last.insert(source.clone(), frame.clone());
            }
        }
        let Some(r) = self.rooms.get(room) else { return };
        let mut wrote = false;
        // The listeners' ids first (a scratch list kept by the worker), then the listeners in groups: at thousands
        // of listeners each peer's state is a cache miss (the boxed peer, then its slots), and reading a whole
        // group's first, independent loads one after the other, lets those misses overlap instead of stalling
        // one by one (a plain load: the workspace forbids the `unsafe` prefetch intrinsic).
        let mut order = std::mem::take(&mut self.fanout_order);
        order.clear();
        order.extend(r.peers.iter().filter(|(ident, _)| *ident != source).map(|(_, id)| *id));
        for group in order.chunks(FANOUT_GROUP) {
            let mut touched = 0u64;
            for id in group {
                if let Some(p) = self.peers.get(id) {
                    touched ^= u64::from(p.connected);
                }
            }
            for id in group {
                if let Some(p) = self.peers.get(id) {
                    touched ^= p.slots.first().map_or(0, |s| s.seq);
                }
            }
            std::hint::black_box(touched);
            for &id in group {
                let Some(peer) = self.peers.get_mut(&id) else { continue };
                if !peer.connected {
                    continue;
                }
                write_frame(id, peer, &mut self.ctx, source, frame, now);
                self.ctx.turn_copies += 1;
                wrote = true;
            }
        }
        self.fanout_order = order;
        if wrote {
            // Send the last copies now rather than after the rest of the loop turn.
            self.ctx.batch.fanout_done(frame.network_time);
            self.ctx.flush_all();
        }
    }

    /// Runs queued commands; returns false on shutdown.
    fn run_commands(&mut self) -> bool {
        loop {
            match self.cmd_rx.try_recv() {
                Ok(Command::Shutdown) | Err(TryRecvError::Disconnected) => return false,
                Ok(cmd) => self.command(cmd),
                Err(TryRecvError::Empty) => return true,
            }
        }
    }

    pub(crate) fn command(&mut self, cmd: Command) {
        let now = Instant::now();
        // While a peer of the room moves in, the room's commands wait for it, in order (they were queued after
        // the directory sent it here, and may concern it).
        if !matches!(cmd, Command::Arriving { .. })
            && let Some(a) = cmd.room().and_then(|r| self.arriving.get_mut(r))
        {
            if a.held.len() < ARRIVAL_HOLD {
                a.held.push_back(cmd);
                return;
            }
            // Something is badly stuck: stop waiting rather than hold commands without bound.
            let room = cmd.room().cloned();
            if let Some(room) = room {
                self.stop_waiting(&room);
            }
        }
        match cmd {
            Command::Offer { room, identity, offer, publish, record, generation, reply } => {
                let res = self.offer(now, room, identity, *offer, (publish, record), generation);
                let _ = reply.send(res);
            }
            Command::Answer { room, identity, answer, reply } => {
                let res = self.answer(now, &room, &identity, *answer);
                let _ = reply.send(res);
            }
            Command::RemovePeer { room, identity } => {
                let id = self.rooms.get(&room).and_then(|r| r.peers.get(&identity)).copied();
                if let Some(id) = id {
                    self.remove_peer(id);
                }
                self.source_gone(&room, &identity);
            }
            Command::RemoveRoom { room } => {
                let ids: Vec<u64> =
                    self.rooms.get(&room).map(|r| r.peers.values().copied().collect()).unwrap_or_default();
                for id in ids {
                    self.remove_peer(id);
                }
                self.rooms.remove(&room);
            }
            Command::RoomWorkers { room, workers } => {
                let others: Vec<usize> = workers.into_iter().filter(|w| *w != self.ctx.idx).collect();
                if others.is_empty() {
                    self.room_workers.remove(&room);
                } else {
                    self.room_workers.insert(room, others);
                }
            }
            Command::SourceGone { room, identity } => self.source_gone(&room, &identity),
            Command::FillerAt { room, at } => match at {
                Some(at) => {
                    self.filler_at.insert(room, at);
                }
                None => {
                    if self.filler_at.remove(&room).is_some() {
                        let id = self.filler_id.clone();
                        self.source_gone(&room, &id);
                    }
                }
            },
            Command::PlayFiller { room, source, generation } => {
                if source.packets.is_empty() {
                    return;
                }
                if let Some(old) = self.fillers.remove(&room) {
                    emit(
                        &self.ctx,
                        MediaEvent::FillerStopped { room: room.to_string(), reason: FillerStopReason::Stopped },
                    );
                    tracing::debug!(room = %room, generation = old.generation, "filler replaced");
                }
                emit(&self.ctx, MediaEvent::FillerStarted { room: room.to_string() });
                tracing::debug!(room = %room, generation, packets = source.packets.len(), "filler started");
                // A random first RTP time, as for any new stream.
                let time = u64::from(rand_u16(&Mid::from("filler"))) * FRAME_TICKS;
                self.fillers.insert(room, Filler { source, generation, next: 0, due: now, time });
            }
            Command::StopFiller { room, reason } => {
                if let Some(generation) = self.fillers.get(&room).map(|f| f.generation) {
                    self.filler_gone(&room, generation, reason);
                }
            }
            Command::Arriving { room, identity } => {
                self.arriving
                    .entry(room)
                    .or_insert_with(|| Arrival { who: Vec::new(), held: VecDeque::new(), since: now })
                    .who
                    .push(identity);
            }
            Command::MoveOut { room, identity, to } => self.move_out(room, identity, to),
            Command::Shutdown => {}
        }
    }

    /// Hands the peer of (room, identity) to worker `to` (rebalancing). Its routes stay with its home worker,
    /// which is told where it went; its state (the `Rtc`, slots, SRTP keys, timers) goes whole.
    fn move_out(&mut self, room: Arc<str>, identity: Arc<str>, to: usize) {
        let id = self.rooms.get(&room).and_then(|r| r.peers.get(&identity)).copied();
        let peer = id.and_then(|id| Some((id, self.take_peer(id)?)));
        if let Some((id, peer)) = &peer {
            if peer.home == self.ctx.idx {
                self.away.insert(*id, to);
            } else if peer.home != to {
                self.ctx.hand(peer.home, Forwarded::Route { id: *id, op: RouteOp::Host(to) }, true);
            }
            tracing::debug!(room = %room, peer = %identity, to, "peer moved out");
        }
        self.ctx.hand(to, Forwarded::PeerIn { room, identity, peer }, true);
    }

    /// Takes a peer out of this worker's maps (not its routes: see `remove_peer` for a departure).
    fn take_peer(&mut self, id: u64) -> Option<Box<Peer>> {
        let peer = self.peers.remove(&id)?;
        self.ctx.disconnected.remove(&id);
        if let Some(r) = self.rooms.get_mut(&peer.room) {
            if r.peers.get(&peer.identity) == Some(&id) {
                r.peers.remove(&peer.identity);
            }
            r.levels.remove(&peer.identity);
            if r.peers.is_empty() {
                self.rooms.remove(&peer.room);
            }
        }
        Some(peer)
    }

    /// A peer moved in from another worker (or its former host had none: `peer` is `None`).
    fn move_in(&mut self, room: Arc<str>, identity: Arc<str>, peer: Option<(u64, Box<Peer>)>) {
        if let Some((id, mut peer)) = peer {
            if peer.home == self.ctx.idx {
                self.away.remove(&id);
            }
            if let Some(t) = peer.next_timeout {
                self.ctx.timers.push(Reverse((t, id)));
            } else {
                // Let its `Rtc` say when it next needs time.
                peer.next_timeout = Some(Instant::now());
                self.ctx.timers.push(Reverse((Instant::now(), id)));
            }
            if peer.disconnected_since.is_some() {
                self.ctx.disconnected.insert(id);
            }
            let r = self.rooms.entry(room.clone()).or_default();
            r.peers.insert(identity.clone(), id);
            // The frame of each of its sources fanned out here last, if the peer did not get it: one that was in
            // flight between the workers during the move (written once: see `write_frame`).
            let now = Instant::now();
            let missed: Vec<(Arc<str>, Frame)> = peer
                .slots
                .iter()
                .filter_map(|slot| {
                    let source = slot.source.as_ref()?;
                    let f = r.last.get(source)?;
                    let fresh = now.saturating_duration_since(f.network_time) < FORWARD_STALE;
                    (slot.last_in != Some(f.time) && fresh).then(|| (source.clone(), f.clone()))
                })
                .collect();
            if peer.connected {
                for (source, f) in &missed {
                    write_frame(id, &mut peer, &mut self.ctx, source, f, now);
                }
                self.ctx.flush_all();
            }
            self.peers.insert(id, peer);
            tracing::debug!(room = %room, peer = %identity, "peer moved in");
        }
        let done = match self.arriving.get_mut(&room) {
            Some(a) => {
                if let Some(i) = a.who.iter().position(|w| *w == identity) {
                    a.who.swap_remove(i);
                }
                a.who.is_empty()
            }
            None => false,
        };
        if done {
            self.stop_waiting(&room);
        }
    }

    /// Runs the commands held back for `room` (its arrivals are in, or took too long).
    fn stop_waiting(&mut self, room: &Arc<str>) {
        let Some(a) = self.arriving.remove(room) else { return };
        if !a.who.is_empty() {
            tracing::warn!(room = %room, waiting = a.who.len(), "moving peers did not arrive in time");
        }
        for cmd in a.held {
            self.command(cmd);
        }
    }

    /// A new `Rtc` whose host candidate is worker `home`'s.
    fn new_rtc(&self, now: Instant, home: usize) -> Rtc {
        let mut config = RtcConfig::new();
        if let Some(cert) = &self.cert {
            config = config.set_dtls_cert(cert.clone());
        }
        let mut rtc = config
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .clear_extension_map()
            .set_extension(1, Extension::AudioLevel)
            .set_extension(4, Extension::RtpMid)
            .build(now);
        if let Ok(c) = Candidate::host(self.ctx.links[home].candidate, "udp") {
            rtc.add_local_candidate(c);
        }
        if let Some(at) = self.ctx.links[home].tcp_candidate
            && let Ok(c) = Candidate::builder().tcp().host(at).tcptype(TcpType::Passive).build()
        {
            rtc.add_local_candidate(c);
        }
        rtc
    }

    fn offer(
        &mut self,
        now: Instant,
        room: Arc<str>,
        identity: Arc<str>,
        offer: CheckedOffer,
        (publish, record): (Arc<AtomicBool>, Arc<AtomicBool>),
        generation: u64,
    ) -> Result<String, MediaError> {
        let CheckedOffer { sdp: offer, mlines } = offer;
        let fingerprint = offer_fingerprint(&offer);
        let existing = self.rooms.get(&room).and_then(|r| r.peers.get(&identity)).copied();
        if let Some(id) = existing {
            let (rebuild, home) = match self.peers.get(&id) {
                Some(p) if p.pending.is_some() => return Err(MediaError::Conflict),
                Some(p) => (!p.rtc.is_alive() || p.fingerprint != fingerprint, p.home),
                None => return Err(MediaError::UnknownPeer),
            };
            let fresh = rebuild.then(|| self.new_rtc(now, home));
            let Some(peer) = self.peers.get_mut(&id) else { return Err(MediaError::UnknownPeer) };
            if let Some(fresh) = fresh {
                // A dead Rtc, or a new client peer connection (new DTLS certificate), cannot renegotiate: start over
                // with a new Rtc, same peer, same permission. The old addresses and states go with the old Rtc.
                peer.rtc.disconnect();
                peer.rtc = fresh;
                peer.slots.clear();
                peer.srtp = None;
                peer.dest = None;
                peer.connected = false;
                peer.reported = None;
                peer.disconnected_since = None;
                peer.fingerprint = fingerprint;
                self.ctx.disconnected.remove(&id);
                let addrs = std::mem::take(&mut peer.addrs);
                if home == self.ctx.idx {
                    unbind(&mut self.ctx, id, &addrs);
                } else {
                    self.ctx.hand(home, Forwarded::Route { id, op: RouteOp::Unbind(addrs) }, true);
                }
            }
            let answer = peer.rtc.sdp_api().accept_offer(offer).map_err(|e| wire::apply_failed(SdpKind::Offer, &e))?;
            peer.mlines = mlines;
            let ufrag = peer.rtc.direct_api().local_ice_credentials().ufrag;
            if ufrag != peer.ufrag {
                let old = std::mem::replace(&mut peer.ufrag, ufrag.clone());
                if home == self.ctx.idx {
                    self.ctx.by_ufrag.remove(&old);
                    self.ctx.by_ufrag.insert(ufrag, id);
                } else {
                    self.ctx.hand(home, Forwarded::Route { id, op: RouteOp::Ufrag { old, new: ufrag } }, true);
                }
            }
            peer.publish = publish;
            peer.record = record;
            drain(id, peer, &mut self.ctx, now);
            tracing::debug!(room = %room, peer = %identity, "renegotiated");
            return Ok(answer.to_sdp_string());
        }
        let mut rtc = self.new_rtc(now, self.ctx.idx);
        let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| wire::apply_failed(SdpKind::Offer, &e))?;
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        let id = self.next_id;
        self.next_id += 1;
        self.ctx.by_ufrag.insert(ufrag.clone(), id);
        let mut peer = Peer {
            home: self.ctx.idx,
            room: room.clone(),
            identity: identity.clone(),
            rtc,
            publish,
            record,
            generation,
            ufrag,
            addrs: Vec::new(),
            slots: Vec::new(),
            pending: None,
            next_timeout: None,
            connected: false,
            reported: None,
            disconnected_since: None,
            fingerprint,
            mlines,
            srtp: None,
            dest: None,
        };
        drain(id, &mut peer, &mut self.ctx, now);
        self.peers.insert(id, Box::new(peer));
        self.rooms.entry(room.clone()).or_default().peers.insert(identity.clone(), id);
        tracing::debug!(room = %room, peer = %identity, generation, "peer created");
        Ok(answer.to_sdp_string())
    }

    fn answer(&mut self, now: Instant, room: &str, identity: &str, answer: SdpAnswer) -> Result<(), MediaError> {
        let id = self.rooms.get(room).and_then(|r| r.peers.get(identity)).copied().ok_or(MediaError::UnknownPeer)?;
        let peer = self.peers.get_mut(&id).ok_or(MediaError::UnknownPeer)?;
        let Some((pending, mid)) = peer.pending.take() else {
            return Err(MediaError::NoPendingOffer);
        };
        peer.rtc.sdp_api().accept_answer(pending, answer).map_err(|e| wire::apply_failed(SdpKind::Answer, &e))?;
        peer.mlines += 1;
        // str0m emits no MediaAdded for m-lines of its own offer: add the slot here.
        if let Some(dir) = peer.rtc.media(mid).map(|m| m.direction()) {
            update_slot(peer, &self.ctx, mid, dir);
        }
        drain(id, peer, &mut self.ctx, now);
        Ok(())
    }

    fn remove_peer(&mut self, id: u64) {
        let Some(mut peer) = self.take_peer(id) else { return };
        peer.rtc.disconnect();
        if peer.home == self.ctx.idx {
            unbind(&mut self.ctx, id, &peer.addrs);
            if self.ctx.by_ufrag.get(&peer.ufrag) == Some(&id) {
                self.ctx.by_ufrag.remove(&peer.ufrag);
            }
            self.close_stale_tcp(Instant::now(), Some(id));
        } else {
            let op = RouteOp::Gone { addrs: std::mem::take(&mut peer.addrs), ufrag: std::mem::take(&mut peer.ufrag) };
            self.ctx.hand(peer.home, Forwarded::Route { id, op }, true);
        }
        tracing::debug!(room = %peer.room, peer = %peer.identity, generation = peer.generation, "peer removed");
    }

    /// Frees the slots `identity` had on the local peers of `room`.
    fn source_gone(&mut self, room: &Arc<str>, identity: &str) {
        if let Some(r) = self.rooms.get_mut(room) {
            if let Some(l) = r.loudest.as_mut() {
                l.remove(identity);
            }
            r.last.remove(identity);
        }
        self.free_slots(room, identity);
    }

    fn free_slots(&mut self, room: &Arc<str>, identity: &str) {
        let Some(r) = self.rooms.get(room) else { return };
        for id in r.peers.values() {
            let Some(peer) = self.peers.get_mut(id) else { continue };
            let mut changed = false;
            for s in &mut peer.slots {
                if s.source.as_deref() == Some(identity) {
                    s.source = None;
                    s.last_write = None;
                    changed = true;
                }
            }
            if changed {
                emit_tracks(&self.ctx, peer);
            }
        }
    }

    /// Fans out frames from other workers; returns whether the queue may hold more.
    fn run_forwarded(&mut self) -> bool {
        for _ in 0..FORWARD_BUDGET {
            if self.ctx.turn_copies >= COPY_BUDGET {
                return true;
            }
            match self.fwd_rx.try_recv() {
                Ok(Forwarded::Frame { room, source, frame }) => {
                    // A filler frame that crossed a stop (speech, stop_filler) in flight must not take a slot back.
                    if *source == *self.filler_id && !self.filler_at.contains_key(&room) {
                        continue;
                    }
                    let now = Instant::now();
                    if now.saturating_duration_since(frame.network_time) > FORWARD_STALE {
                        // This worker fell behind (its core was busy elsewhere): shed late audio, do not send it
                        // late. Only under overload, so the room's workers may then briefly disagree on loudest-N.
                        self.ctx.stats.stale_dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    self.fan_out_local(&room, &source, &frame, now);
                }
                Ok(Forwarded::FillerSpeech { room, generation }) => {
                    self.filler_gone(&room, generation, FillerStopReason::Speech);
                }
                Ok(Forwarded::PeerIn { room, identity, peer }) => self.move_in(room, identity, peer),
                Ok(Forwarded::Datagram { id, source, data, check, tcp }) => {
                    self.receive(Instant::now(), id, source, &data, check, tcp);
                }
                Ok(Forwarded::TcpSend { id, to, data }) => self.ctx.send_tcp(self.ctx.idx, id, to, &data),
                Ok(Forwarded::Route { id, op }) => self.route(id, op),
                Err(_) => return false,
            }
        }
        true
    }

    fn run_timers(&mut self) {
        let now = Instant::now();
        let mut budget = TIMER_BUDGET;
        while let Some(Reverse((t, id))) = self.ctx.timers.peek().copied() {
            if t > now || budget == 0 {
                // Past the budget the rest waits for the next turn (the poll does not sleep: a deadline passed).
                break;
            }
            budget -= 1;
            self.ctx.timers.pop();
            let Some(peer) = self.peers.get_mut(&id) else { continue };
            if peer.next_timeout != Some(t) {
                continue; // stale entry
            }
            peer.next_timeout = None;
            report_thin_sends(peer);
            if let Err(e) = peer.rtc.handle_input(Input::Timeout(now)) {
                tracing::debug!(peer = %peer.identity, error = %e, "timeout input failed");
            }
            drain(id, peer, &mut self.ctx, now);
            self.fan_out_received(now);
        }
        // Stale entries pile up when deadlines move; rebuild when the heap is much larger than the peer count.
        if self.ctx.timers.len() > 64 + 4 * self.peers.len() {
            self.ctx.timers =
                self.peers.iter().filter_map(|(id, p)| p.next_timeout.map(|t| Reverse((t, *id)))).collect();
        }
    }

    /// Closes the ICE-TCP connections that passed no ICE in time, and those of peer `gone`.
    fn close_stale_tcp(&mut self, now: Instant, gone: Option<u64>) {
        let Some(t) = self.ctx.tcp.as_ref() else { return };
        let mut stale = std::mem::take(&mut self.ctx.tcp_closing);
        t.stale(now, gone, &mut stale);
        for idx in stale.drain(..) {
            if self.ctx.tcp.as_mut().and_then(|t| t.close(&self.ctx.registry, idx)).is_none() && gone.is_none() {
                self.ctx.stats.tcp_refused.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.ctx.tcp_closing = stale;
    }

    /// A routing change for peer `id`, homed here and hosted elsewhere.
    fn route(&mut self, id: u64, op: RouteOp) {
        let ctx = &mut self.ctx;
        match op {
            RouteOp::Addr(a) => {
                ctx.by_addr.insert(a, id);
            }
            RouteOp::Unbind(addrs) => unbind(ctx, id, &addrs),
            RouteOp::Ufrag { old, new } => {
                if ctx.by_ufrag.get(&old) == Some(&id) {
                    ctx.by_ufrag.remove(&old);
                }
                ctx.by_ufrag.insert(new, id);
            }
            RouteOp::Host(w) => {
                if w == ctx.idx {
                    return; // Moving home: its `PeerIn` follows.
                }
                self.away.insert(id, w);
            }
            RouteOp::Gone { addrs, ufrag } => {
                unbind(ctx, id, &addrs);
                if ctx.by_ufrag.get(&ufrag) == Some(&id) {
                    ctx.by_ufrag.remove(&ufrag);
                }
                self.away.remove(&id);
                self.close_stale_tcp(Instant::now(), Some(id));
            }
        }
    }

    /// Periodic work: active-speaker changes, slow failure detection.
    fn tick(&mut self, now: Instant) {
        let late: Vec<Arc<str>> = self
            .arriving
            .iter()
            .filter(|(_, a)| now.saturating_duration_since(a.since) > ARRIVAL_WAIT)
            .map(|(r, _)| r.clone())
            .collect();
        for room in late {
            self.stop_waiting(&room);
        }
        self.close_stale_tcp(now, None);
        let hold = (self.speaker_interval * 2).max(Duration::from_millis(400));
        for (room, r) in &mut self.rooms {
            let mut speaking = Vec::new();
            let mut stopped = Vec::new();
            r.levels.retain(|ident, l| {
                let active = l.last_loud.is_some_and(|t| now.duration_since(t) < hold);
                if active && !l.reported {
                    speaking.push((ident.to_string(), l.peak));
                    l.reported = true;
                } else if !active && l.reported {
                    stopped.push(ident.to_string());
                    l.reported = false;
                }
                l.peak = 0;
                active || l.last_loud.is_some_and(|t| now.duration_since(t) < Duration::from_secs(10))
            });
            if !speaking.is_empty() || !stopped.is_empty() {
                emit(&self.ctx, MediaEvent::ActiveSpeakers { room: room.to_string(), speaking, stopped });
            }
        }
        let mut failed = Vec::new();
        for id in &self.ctx.disconnected {
            let Some(peer) = self.peers.get_mut(id) else {
                failed.push(*id);
                continue;
            };
            let dead = !peer.rtc.is_alive();
            if dead || peer.disconnected_since.is_some_and(|t| now.duration_since(t) >= FAILED_AFTER) {
                set_state(&self.ctx, peer, PeerState::Failed);
                failed.push(*id);
            } else if peer.disconnected_since.is_none() {
                failed.push(*id);
            }
        }
        for id in failed {
            self.ctx.disconnected.remove(&id);
        }
    }
}

/// Forgets the routes of `addrs` that lead to peer `id`.
fn unbind(ctx: &mut Ctx, id: u64, addrs: &[SocketAddr]) {
    for a in addrs {
        if ctx.by_addr.get(a) == Some(&id) {
            ctx.by_addr.remove(a);
        }
    }
}

impl Ctx {
    /// The send batch for a peer whose home is worker `home` (its ICE pair uses that worker's socket).
    fn out(&mut self, home: usize) -> &mut SendBatch {
        if home == self.idx {
            return &mut self.batch;
        }
        let (links, stats) = (&self.links, &self.stats);
        self.foreign[home].get_or_insert_with(|| SendBatch::new(links[home].socket.clone(), stats.clone()))
    }

    /// Sends everything queued, this worker's own socket last (its batch records the fan-out times).
    fn flush_all(&mut self) {
        for b in self.foreign.iter_mut().flatten() {
            b.flush();
        }
        if let Some(t) = self.tcp.as_mut() {
            t.flush(&self.registry, &mut self.tcp_closing);
            while let Some(idx) = self.tcp_closing.pop() {
                t.close(&self.registry, idx);
            }
        }
        self.batch.flush();
    }

    /// Closes ICE-TCP connection `idx`.
    fn close_tcp(&mut self, idx: usize) {
        if let Some(t) = self.tcp.as_mut() {
            t.close(&self.registry, idx);
        }
    }

    /// Sends one packet of peer `id` (homed on worker `home`) on the ICE-TCP connection from `to`: here if this is
    /// its home, else through its home (a copy).
    fn send_tcp(&mut self, home: usize, id: u64, to: SocketAddr, packet: &[u8]) {
        if home != self.idx {
            let msg = Forwarded::TcpSend { id, to, data: packet.into() };
            if !self.hand(home, msg, false) {
                self.stats.send_dropped.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        let Some(t) = self.tcp.as_mut() else { return };
        // The `Rtc` sends only where ICE succeeded: the connection is the peer's.
        t.bind(to, id);
        if t.send(to, packet) {
            self.stats.datagrams_out.fetch_add(1, Ordering::Relaxed);
        } else {
            self.stats.send_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Hands `msg` to worker `w`, in order with what this worker handed it before: into its queue, or while that
    /// is full into the outbox for it, retried every loop turn. `keep`: a message that must not be lost (a peer, a
    /// route); otherwise (a datagram) it is dropped when the queue is full. Returns whether it was kept.
    fn hand(&mut self, w: usize, msg: Forwarded, keep: bool) -> bool {
        let q = &mut self.outbox[w];
        if q.is_empty() {
            match self.links[w].fwd_tx.try_send(msg) {
                Ok(()) => {
                    self.to_wake[w] = true;
                    true
                }
                Err(TrySendError::Full(msg)) if keep => {
                    q.push_back(msg);
                    true
                }
                Err(_) => false,
            }
        } else if keep || q.len() < OUTBOX_MAX {
            // Kept messages are few (one per move or route change); they wait, never dropped.
            q.push_back(msg);
            true
        } else {
            false
        }
    }

    /// Retries the outboxes.
    fn flush_outboxes(&mut self) {
        for (w, q) in self.outbox.iter_mut().enumerate() {
            while let Some(msg) = q.pop_front() {
                match self.links[w].fwd_tx.try_send(msg) {
                    Ok(()) => self.to_wake[w] = true,
                    Err(TrySendError::Full(msg)) => {
                        q.push_front(msg);
                        break;
                    }
                    Err(TrySendError::Disconnected(_)) => q.clear(),
                }
            }
        }
    }
}

/// Wakes the workers that were handed packets or messages since the last call (one wake each).
fn wake_handed(ctx: &mut Ctx) {
    for (w, flag) in ctx.to_wake.iter_mut().enumerate() {
        if std::mem::take(flag) {
            let _ = ctx.links[w].waker.wake();
        }
    }
}

/// Hands a frame of `source` to the other workers hosting peers of `room` (`try_send`: dropped and counted when a
/// queue is full).
fn forward(
    ctx: &mut Ctx,
    room_workers: &HashMap<Arc<str>, Vec<usize>>,
    room: &Arc<str>,
    source: &Arc<str>,
    frame: &Frame,
) {
    let Some(workers) = room_workers.get(room) else { return };
    for &w in workers {
        if w == ctx.idx {
            continue;
        }
        let fwd = Forwarded::Frame { room: room.clone(), source: source.clone(), frame: frame.clone() };
        match ctx.links[w].fwd_tx.try_send(fwd) {
            Ok(()) => ctx.to_wake[w] = true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                ctx.stats.cross_worker_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Updates the speaking state of `source` from a frame's RFC 6464 audio level; returns whether the frame counts as
/// speech.
fn note_level(r: &mut Room, source: &Arc<str>, frame: &Frame, now: Instant) -> bool {
    let Some(level) = frame.audio_level else { return false };
    // str0m gives -dBov as a negative number (0 loudest, -127 silence).
    let dbov = level.unsigned_abs().min(127);
    let loud = crate::loudest::is_speech(Some(level), frame.voice_activity);
    if !loud && !r.levels.contains_key(source) {
        return false;
    }
    let l = match r.levels.get_mut(source) {
        Some(l) => l,
        None => r.levels.entry(source.clone()).or_insert(Level { last_loud: None, peak: 0, reported: false }),
    };
    if loud {
        l.last_loud = Some(now);
        l.peak = l.peak.max(127 - dbov);
    }
    loud
}

fn set_state(ctx: &Ctx, peer: &mut Peer, state: PeerState) {
    if peer.reported == Some(state) {
        return;
    }
    peer.reported = Some(state);
    emit(ctx, MediaEvent::State { room: peer.room.to_string(), identity: peer.identity.to_string(), state });
}

fn emit_tracks(ctx: &Ctx, peer: &Peer) {
    let tracks = peer.slots.iter().map(|s| (s.mid.to_string(), s.source.as_ref().map(|x| x.to_string()))).collect();
    emit(ctx, MediaEvent::Tracks { room: peer.room.to_string(), identity: peer.identity.to_string(), tracks });
}

/// Drains a peer's `Rtc`: queues transmits, schedules its timer, handles events.
fn drain(id: u64, peer: &mut Peer, ctx: &mut Ctx, now: Instant) {
    let mut guard = 0u32;
    loop {
        guard += 1;
        if guard > 10_000 {
            if let Some(suppressed) = ctx.settle_log.allow(now) {
                tracing::warn!(peer = %peer.identity, suppressed, "rtc output did not settle");
            }
            break;
        }
        let out = match peer.rtc.poll_output() {
            Ok(o) => o,
            Err(e) => {
                tracing::debug!(peer = %peer.identity, error = %e, "poll_output failed");
                break;
            }
        };
        match out {
            Output::Timeout(t) => {
                if !peer.rtc.is_alive() {
                    peer.next_timeout = None;
                    if peer.connected || peer.reported.is_some() {
                        peer.connected = false;
                        set_state(ctx, peer, PeerState::Failed);
                    }
                    break;
                }
                if peer.next_timeout != Some(t) {
                    peer.next_timeout = Some(t);
                    ctx.timers.push(Reverse((t, id)));
                }
                break;
            }
            Output::Transmit(t) if t.proto == Protocol::Tcp => {
                let data: Vec<u8> = t.contents.into();
                ctx.send_tcp(peer.home, id, t.destination, &data);
            }
            Output::Transmit(t) => {
                // The Rtc only sends to addresses that passed ICE (ufrag + password): bind them for routing, on
                // the worker that reads the peer's socket.
                if peer.home == ctx.idx {
                    if ctx.by_addr.get(&t.destination) != Some(&id) {
                        ctx.by_addr.insert(t.destination, id);
                        if !peer.addrs.contains(&t.destination) {
                            peer.addrs.push(t.destination);
                        }
                    }
                } else if !peer.addrs.contains(&t.destination) {
                    peer.addrs.push(t.destination);
                    ctx.hand(peer.home, Forwarded::Route { id, op: RouteOp::Addr(t.destination) }, true);
                }
                let data: Vec<u8> = t.contents.into();
                ctx.out(peer.home).push(t.destination, &data);
            }
            Output::Event(ev) => handle_event(id, peer, ctx, ev, now),
        }
    }
    peer.dest = peer.rtc.direct_api().send_addr().map(|(proto, _, to)| (to, proto == Protocol::Tcp));
}

/// The first `a=fingerprint` value of an offer (session or media level), or empty when it has none.
fn offer_fingerprint(offer: &SdpOffer) -> String {
    let sdp = offer.to_sdp_string();
    sdp.lines().find_map(|l| l.trim_end().strip_prefix("a=fingerprint:")).unwrap_or_default().to_owned()
}

fn handle_event(id: u64, peer: &mut Peer, ctx: &mut Ctx, ev: Event, now: Instant) {
    match ev {
        Event::Connected => {
            peer.connected = true;
            peer.disconnected_since = None;
            set_state(ctx, peer, PeerState::Connected);
        }
        Event::IceConnectionStateChange(s) => match s {
            IceConnectionState::Disconnected => {
                peer.disconnected_since = Some(now);
                ctx.disconnected.insert(id);
                set_state(ctx, peer, PeerState::Disconnected);
            }
            IceConnectionState::Connected | IceConnectionState::Completed => {
                peer.disconnected_since = None;
                if peer.connected {
                    set_state(ctx, peer, PeerState::Connected);
                }
            }
            _ => {}
        },
        Event::MediaAdded(m) if m.kind == MediaKind::Audio => update_slot(peer, ctx, m.mid, m.direction),
        Event::MediaChanged(m) => update_slot(peer, ctx, m.mid, m.direction),
        // RTP mode: every received RTP packet (Opus: one frame each; empty ones are BWE padding).
        Event::RtpPacket(p) if !p.payload.is_empty() => {
            let time = p.time.rebase(str0m::media::Frequency::FORTY_EIGHT_KHZ).numer();
            ctx.received.push((
                id,
                Frame {
                    time,
                    network_time: p.timestamp,
                    data: p.payload,
                    audio_level: p.header.ext_vals.audio_level,
                    voice_activity: p.header.ext_vals.voice_activity,
                },
            ));
        }
        _ => {}
    }
}

/// Adds, keeps or removes the slot of `mid` depending on whether the server may send on it.
fn update_slot(peer: &mut Peer, ctx: &Ctx, mid: Mid, dir: Direction) {
    let pos = peer.slots.iter().position(|s| s.mid == mid);
    match (dir.is_sending(), pos) {
        (true, None) => {
            // RFC 3550: a random first sequence number (ROC 0, so below 2^15 leaves room before the wrap).
            let seq = u64::from(rand_u16(&mid) & 0x7fff);
            peer.slots.push(Slot {
                mid,
                pt: None,
                source: None,
                last_write: None,
                last_out: None,
                offset: 0,
                seq,
                ssrc: None,
                ext_ids: None,
                sent_packets: 0,
                sent_bytes: 0,
                reported_packets: 0,
                last_in: None,
            });
            emit_tracks(ctx, peer);
        }
        (false, Some(i)) => {
            peer.slots.remove(i);
            emit_tracks(ctx, peer);
        }
        _ => {}
    }
}

/// Writes one frame of `source` to a listener: picks (or requests) its slot, rewrites the RTP time, writes,
/// and drains the listener so the packet goes out now.
fn write_frame(id: u64, peer: &mut Peer, ctx: &mut Ctx, source: &Arc<str>, frame: &Frame, now: Instant) {
    let idx = match peer.slots.iter().position(|s| s.source.as_deref() == Some(&**source)) {
        // The same frame again (handed to the listener's old and new worker around a move): written once.
        Some(i) if peer.slots[i].last_in == Some(frame.time) => return,
        Some(i) => i,
        None => {
            let free = peer.slots.iter().position(|s| {
                s.source.is_none() || s.last_write.is_none_or(|t| now.saturating_duration_since(t) >= SLOT_IDLE)
            });
            match free {
                Some(i) => {
                    peer.slots[i].source = Some(source.clone());
                    peer.slots[i].last_write = None;
                    emit_tracks(ctx, peer);
                    i
                }
                None => {
                    ctx.stats.no_slot_dropped.fetch_add(1, Ordering::Relaxed);
                    request_slot(peer, ctx);
                    return;
                }
            }
        }
    };
    let mid = peer.slots[idx].mid;
    let pt = match peer.slots[idx].pt {
        Some(pt) => pt,
        None => {
            let remote = peer.rtc.media(mid).map(|m| m.remote_pts().to_vec()).unwrap_or_default();
            let found = peer
                .rtc
                .codec_config()
                .params()
                .iter()
                .find(|p| p.spec().codec == Codec::Opus && remote.contains(&p.pt()))
                .map(|p| p.pt());
            let Some(pt) = found else {
                ctx.stats.no_slot_dropped.fetch_add(1, Ordering::Relaxed);
                return;
            };
            peer.slots[idx].pt = Some(pt);
            pt
        }
    };
    let slot = &mut peer.slots[idx];
    // Continuity: on a source switch (or the first write), place the new source right after what was last sent.
    let switched = slot.last_write.is_none();
    if switched {
        slot.offset = match slot.last_out {
            Some((last, at)) => {
                let gap = now.saturating_duration_since(at).as_micros() as u64 * OPUS_HZ / 1_000_000;
                last.wrapping_add(gap.max(FRAME_TICKS)).wrapping_sub(frame.time)
            }
            None => 0,
        };
    }
    let out = frame.time.wrapping_add(slot.offset);
    slot.last_out = Some((out, now));
    slot.last_in = Some(frame.time);
    slot.last_write = Some(now);
    let seq = slot.seq;
    if write_thin(id, peer, ctx, idx, frame, out as u32, switched) {
        let slot = &mut peer.slots[idx];
        slot.seq = seq.wrapping_add(1);
        ctx.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        return;
    }
    // Not yet possible (no keys or no nominated pair yet, an unknown SRTP profile): str0m's own send path.
    let ext = ExtensionValues {
        audio_level: frame.audio_level,
        voice_activity: frame.voice_activity,
        ..ExtensionValues::default()
    };
    // RTP mode: the packet is written as is (one Opus frame), no packetizer; RTP time is 32 bits on the wire.
    let write = RtpWrite::new(pt, seq.into(), out as u32, frame.network_time, frame.data.clone())
        .marker(switched)
        .ext_vals(ext)
        .nackable(false);
    let mut api = peer.rtc.direct_api();
    let Some(tx) = api.stream_tx_by_mid(mid, None) else {
        ctx.stats.no_slot_dropped.fetch_add(1, Ordering::Relaxed);
        return;
    };
    tx.write_rtp(write);
    peer.slots[idx].seq = seq.wrapping_add(1);
    ctx.stats.forwarded.fetch_add(1, Ordering::Relaxed);
    // str0m pitfall: the written packet leaves only on the next timeout; feed it now.
    if let Err(e) = peer.rtc.handle_input(Input::Timeout(now)) {
        tracing::debug!(peer = %peer.identity, error = %e, "timeout input failed");
    }
    drain(id, peer, ctx, now);
}

/// The thin egress path: builds the RTP packet of `frame` for slot `idx` straight into the send batch (header with
/// the slot's SSRC, sequence number and rewritten time, the audio-level and mid extensions under the listener's ids,
/// the shared payload), seals it with the listener's SRTP keys in place and queues it for the nominated pair: no
/// `Rtc` call, no allocation. Returns false, having queued nothing, when that is not possible yet (no SRTP keys or
/// nominated pair yet, no SSRC for the m-line); str0m's send path takes the packet then.
fn write_thin(id: u64, peer: &mut Peer, ctx: &mut Ctx, idx: usize, frame: &Frame, time: u32, marker: bool) -> bool {
    let Some((dest, tcp)) = peer.dest else { return false };
    if peer.srtp.is_none() {
        let keys =
            peer.rtc.direct_api().srtp_keying_material().map(|(km, profile, client)| (km.to_vec(), profile, client));
        let Some((km, profile, client)) = keys else { return false };
        peer.srtp = SrtpTx::new(&km, profile, client);
        if peer.srtp.is_none() {
            return false;
        }
    }
    let slot = &mut peer.slots[idx];
    if slot.ssrc.is_none() {
        slot.ssrc = peer.rtc.direct_api().stream_tx_by_mid(slot.mid, None).map(|tx| *tx.ssrc());
    }
    if slot.ext_ids.is_none() {
        let ids = peer.rtc.media(slot.mid).map(|m| {
            let map = m.remote_extmap();
            (map.id_of(Extension::AudioLevel), map.id_of(Extension::RtpMid))
        });
        slot.ext_ids = Some(ids.unwrap_or((None, None)));
    }
    let (Some(ssrc), Some((level_id, mid_id)), Some(pt), Some(keys)) = (slot.ssrc, slot.ext_ids, slot.pt, &peer.srtp)
    else {
        return false;
    };
    let seq = slot.seq;
    let payload = &frame.data[..];
    let mid = slot.mid;
    let build = |buf: &mut [u8; SLOT_BYTES]| {
        let level = frame.audio_level.zip(level_id).map(|(l, id)| {
            let v = if frame.voice_activity == Some(true) { 0x80 } else { 0 };
            (id, v | (l.unsigned_abs().min(127)))
        });
        let header_len = rtp_header(buf, marker, *pt, seq as u16, time, ssrc, level, mid_id.map(|id| (id, &*mid)));
        let len = header_len + payload.len();
        if len + srtp::MAX_OVERHEAD > SLOT_BYTES {
            return None;
        }
        buf[header_len..len].copy_from_slice(payload);
        keys.protect(buf, header_len, len, ssrc, seq)
    };
    let queued = if tcp {
        // ICE-TCP (rare: clients whose UDP is blocked): built aside, then framed onto the connection.
        let mut buf = [0u8; SLOT_BYTES];
        match build(&mut buf) {
            Some(len) => {
                ctx.send_tcp(peer.home, id, dest, &buf[..len]);
                slot.sent_packets += 1;
                slot.sent_bytes += payload.len() as u64;
                return true;
            }
            None => false,
        }
    } else {
        ctx.out(peer.home).push_with(dest, build)
    };
    if queued {
        slot.sent_packets += 1;
        slot.sent_bytes += payload.len() as u64;
    } else {
        ctx.stats.send_dropped.fetch_add(1, Ordering::Relaxed);
    }
    // Queued or refused (a payload too large for a datagram), the packet is done with.
    true
}

/// Writes an RTP header (RFC 3550) with one-byte header extensions (RFC 8285) for the audio level (RFC 6464: id and
/// the V bit with the level) and the mid, and returns its length (at most 36 bytes). An extension whose id is not a
/// one-byte id (1-14), or a mid longer than 16 bytes, is left out. (str0m's own header writer is not public.)
#[allow(clippy::too_many_arguments)]
fn rtp_header(
    buf: &mut [u8],
    marker: bool,
    pt: u8,
    seq: u16,
    time: u32,
    ssrc: u32,
    level: Option<(u8, u8)>,
    mid: Option<(u8, &str)>,
) -> usize {
    let mid = mid.filter(|(id, m)| (1..=14).contains(id) && !m.is_empty() && m.len() <= 16);
    let level = level.filter(|(id, _)| (1..=14).contains(id));
    let has_ext = level.is_some() || mid.is_some();
    buf[0] = if has_ext { 0x90 } else { 0x80 };
    buf[1] = (u8::from(marker) << 7) | (pt & 0x7f);
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    buf[4..8].copy_from_slice(&time.to_be_bytes());
    buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
    if !has_ext {
        return 12;
    }
    let mut at = 16;
    if let Some((id, v)) = level {
        buf[at] = id << 4;
        buf[at + 1] = v;
        at += 2;
    }
    if let Some((id, m)) = mid {
        buf[at] = (id << 4) | (m.len() as u8 - 1);
        buf[at + 1..at + 1 + m.len()].copy_from_slice(m.as_bytes());
        at += 1 + m.len();
    }
    while (at - 16) % 4 != 0 {
        buf[at] = 0;
        at += 1;
    }
    buf[12..14].copy_from_slice(&[0xbe, 0xde]);
    buf[14..16].copy_from_slice(&(((at - 16) / 4) as u16).to_be_bytes());
    at
}

/// Tells str0m what the thin path sent on each slot since the last report, so its sender reports are right.
fn report_thin_sends(peer: &mut Peer) {
    for slot in &mut peer.slots {
        if slot.sent_packets == slot.reported_packets {
            continue;
        }
        let Some((time, at)) = slot.last_out else { continue };
        let mut api = peer.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(slot.mid, None) else { continue };
        let last = slot.seq.wrapping_sub(1);
        tx.record_external_send(
            slot.sent_packets,
            slot.sent_bytes,
            time as u32,
            at,
            str0m::media::Frequency::FORTY_EIGHT_KHZ,
            last.into(),
        );
        slot.reported_packets = slot.sent_packets;
    }
}

/// Starts a server-initiated offer adding one `sendonly` audio m-line, unless one is already pending or the peer
/// has `max_mlines` m-lines already (then frames find no slot until one frees: see the crate docs).
fn request_slot(peer: &mut Peer, ctx: &Ctx) {
    if peer.pending.is_some() || peer.mlines >= ctx.max_mlines {
        return;
    }
    let mut api = peer.rtc.sdp_api();
    let mid = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let Some((offer, pending)) = api.apply() else { return };
    peer.pending = Some((pending, mid));
    tracing::debug!(peer = %peer.identity, "server offer for another slot");
    emit(
        ctx,
        MediaEvent::Offer {
            room: peer.room.to_string(),
            identity: peer.identity.to_string(),
            sdp: offer.to_sdp_string(),
        },
    );
}

/// A pseudo-random 16-bit value (first sequence numbers need not be secret, only unpredictable enough to not
/// collide with a previous stream's).
fn rand_u16(salt: &Mid) -> u16 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    salt.hash(&mut h);
    Instant::now().hash(&mut h);
    h.finish() as u16
}

impl Worker {
    /// No peer, room or route is left (after every peer was removed); the fuzz harness checks it.
    pub(crate) fn is_idle(&self) -> bool {
        self.peers.is_empty()
            && self.rooms.is_empty()
            && self.ctx.by_addr.is_empty()
            && self.ctx.by_ufrag.is_empty()
            && self.away.is_empty()
    }
}
