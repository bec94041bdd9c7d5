//! Podium's media plane: an audio-only SFU on [str0m] (sans-IO WebRTC), sharded over worker threads.
//!
//! # Design
//!
//! * **Workers.** [`Media::start`] binds one UDP socket per worker thread (worker `i` binds `port + i`, or an
//!   ephemeral port when `port` is 0) and starts one plain OS thread per worker (one per core by default). Each
//!   worker owns its peers outright: their str0m [`Rtc`](str0m::Rtc) state machines, its socket, a timer heap and
//!   its routing maps. No lock is taken on the packet path. A new peer goes to the worker with the fewest peers of
//!   its room (then the least loaded), so a room's listeners are spread evenly and one packet's fan-out runs on every
//!   worker at once. Departures can leave a room uneven; then listeners are moved (below, "Rebalancing").
//! * **ICE-lite, one port per worker.** Every peer of a worker advertises the same host candidate (the worker's
//!   socket address, with [`MediaConfig::public_ip`] replacing the IP when set). The server never sends checks;
//!   it answers the client's STUN binding requests.
//! * **ICE-TCP** (`tcp.rs`, [`MediaConfig::tcp`]): each worker also listens on TCP at its UDP address and offers a
//!   passive TCP host candidate (RFC 6544), so a client whose UDP is blocked gets audio without a relay. A
//!   connection's RFC 4571 frames are handled like datagrams from its address (`Protocol::Tcp`); it is bound to a
//!   peer only when that peer's `Rtc` sends to it (after a STUN check with the right credentials), and until then
//!   only STUN with a known ufrag is taken from it. What goes to a TCP address (str0m's transmits and the thin
//!   path's packets, sealed aside and framed) is queued on the connection and written once per loop turn. Bounded:
//!   [`MediaConfig::max_tcp_connections`], 10 s to pass ICE, frames up to 4 KiB (a longer one closes the
//!   connection), 64 KiB queued per connection (past it packets are dropped, counted). A peer moved to another
//!   worker keeps its connection on its home worker, which reads it and writes what the host hands it.
//! * **Routing.** A datagram is routed by a hash map keyed by its source address (the 5-tuple; the local half is
//!   fixed per socket). A source is added to that map only when the peer's `Rtc` itself transmits to it, i.e. after
//!   a STUN check with the right ufrag *and* password succeeded. For an unknown source the STUN USERNAME is parsed
//!   without allocating and looked up by the server-side ufrag. Nothing else is accepted: no per-packet scan of
//!   peers. Garbage, unknown sources and STUN with a wrong ufrag are dropped and counted ([`MediaStats`]); STUN with
//!   a right ufrag but a wrong password is rejected by str0m's integrity check and never binds the address.
//! * **Timers.** A binary heap of `(deadline, peer)` keyed by each `Rtc`'s next `Output::Timeout`; stale entries are
//!   skipped when popped (each peer remembers its current deadline). Only due peers get `Input::Timeout`.
//! * **Waking.** Each worker blocks in `mio::Poll` with a timeout equal to its next timer deadline (capped at 1 s).
//!   Commands (from the async API, bounded `std::sync::mpsc::sync_channel`) and forwarded packets from other workers
//!   (a bounded channel per worker) wake it through a `mio::Waker`. Nothing busy-spins.
//! * **Publishing.** The media plane knows peers, rooms and tracks, not roles. [`Media::set_publish`] flips an
//!   `Arc<AtomicBool>` shared with the peer's worker, so it takes effect on the very next packet: RTP from a peer not
//!   allowed to publish is dropped on arrival, before decryption (RTCP still goes to str0m). The permission lives in
//!   the directory keyed by (room, identity), so renegotiation and ICE restarts keep it; it is forgotten on
//!   [`Media::remove_peer`] / [`Media::remove_room`].
//! * **Fan-out.** Audio received from a publishing peer on worker A is written to every other peer of the room on
//!   A, and handed (one bounded channel per worker, `try_send`, dropped and counted on overflow; the target workers
//!   are woken before A starts its own share, one wake per received packet) to every other worker that hosts peers
//!   of that room; each of those fans out to its own peers at the same time. A peer never receives its own audio. The payload is str0m's `Arc<[u8]>`, shared; it is copied once per
//!   listener, into that listener's datagram.
//! * **The thin egress path.** Forwarding a packet to a connected listener does not go through its `Rtc`: the worker
//!   writes the RTP header (the slot's SSRC, sequence number and rewritten time; the audio-level and mid extensions
//!   under the listener's negotiated ids) and the payload straight into the next buffer of the send batch, seals it
//!   there with the listener's SRTP keys (`srtp.rs`: derived once from the DTLS-exported keying material, AES-GCM or
//!   AES-CM/HMAC-SHA1 with aws-lc-rs) and addresses it to the nominated ICE pair. That is one header write, one copy
//!   of the payload, one AEAD seal and one slot of a `sendmmsg` batch per listener, and no allocation. str0m
//!   (patched, `third_party/str0m/PODIUM-PATCH.md`) exports the keying material and the nominated pair, and keeps
//!   doing ICE (consent, restarts), DTLS, RTCP (its sender reports are fed the thin path's counts and times on each
//!   of the peer's timer turns) and renegotiation. Until a listener's keys and pair are known (its first packets),
//!   str0m's own send path takes the packet, with the same sequence numbers, so no SRTP index is used twice.
//! * **Downstream slots.** Every audio m-line on which the server may send (the client's `sendrecv`/`recvonly`
//!   m-lines, and the server's own `sendonly` additions) is a slot carrying one publisher at a time. A publisher
//!   takes a free slot (never used, or whose publisher stopped: unpublished, removed, or silent for 2 s). When none
//!   is free the worker makes a server-initiated offer adding a `sendonly` audio m-line
//!   ([`MediaEvent::Offer`]); [`Media::answer`] completes it. Slot assignment changes are reported by
//!   [`MediaEvent::Tracks`]. No offer takes a peer past [`MediaConfig::max_mlines`] m-lines: then audio from
//!   further publishers is dropped for that listener (counted in `no_slot_dropped`) until a slot frees.
//! * **Offers are checked before str0m sees them** (`wire::precheck_offer`, one pass over the text): size
//!   ([`MediaConfig::max_sdp_bytes`]), line grammar, and the counts of what str0m keeps per peer: m-lines (at most
//!   [`MediaConfig::max_mlines`], ~11 KiB each), distinct SSRCs (at most as many as m-lines, 3-4 KiB each: a
//!   receive stream) and distinct ICE candidates (at most [`MAX_CANDIDATES`], ~1 KiB each). Errors carry messages of our
//!   own; str0m's error text (which can include heap addresses) goes to the debug log only.
//! * **Rebalancing.** When a peer leaves and its room's busiest worker then hosts two or more of the room's peers
//!   more than its least busy one, one listener (a peer not allowed to publish) moves from the one to the other, so
//!   the room stays within one peer per worker and a packet's fan-out stays N × cost / workers through churn
//!   ([`MediaStats::peers_moved`], [`Media::room_spread`]). The client notices nothing: a peer's ICE pair ends at
//!   its **home** worker's socket (where it was created) for its whole life, and only the work moves.
//!   * The directory (under its lock, like every command for a peer) tells the target `Arriving`, which holds
//!     back that room's commands until the peer is in (at most 2 s), then the source
//!     `MoveOut`, which takes the boxed peer out of its maps and hands it, whole (`Rtc`, slots, SRTP keys, timer),
//!     through the target's forwarding queue. Later commands go to the target.
//!   * The home worker keeps the peer's routes (source addresses, ufrag) and reads its datagrams: it hands them,
//!     copied, to the host (`Forwarded::Datagram`; a listener's are a few STUN and RTCP packets a second). The host
//!     sends on the home worker's socket (each worker may send on every worker's socket, with a batch per socket
//!     made on first use), writes the home's candidate into any renegotiation, and reports routing changes (a new
//!     address after ICE, a new ufrag after an ICE restart, a departure) to the home (`Forwarded::Route`).
//!   * Messages between workers that must not be lost (a peer, a route) wait in a per-target outbox, in order,
//!     while the target's queue is full; datagrams are dropped then, as packets are.
//!   * A frame in flight between the workers during the move could miss the listener: the target keeps the last
//!     frame it fanned out per source and writes it to the arriving listener if it had not got it, and a slot
//!     never writes the same frame twice, so a move loses no audio (`tests/rebalance.rs`). A moved listener that
//!     is later promoted is heard like any speaker, its packets taking the extra hop from its home.
//! * **Logs.** Nothing a remote peer sends is logged per datagram at `info` or above; the one `warn` a peer could
//!   repeat (an `Rtc` that does not settle) goes through a [`LogLimiter`]: one line per 10 s per worker.
//! * **RTP mode.** Every `Rtc` runs in str0m's RTP mode (`set_rtp_mode(true)`): a received Opus packet arrives as
//!   `Event::RtpPacket` (no depacketizer) and is written to each listener as one RTP packet with
//!   `direct_api().stream_tx_by_mid(mid).write_rtp(..)` (no packetizer, no frame queue): ~6 % less CPU per
//!   forwarded packet than the frame API (`docs/BENCHMARKS.md`). Each slot keeps the m-line's SSRC (str0m's) and
//!   its own sequence number (random start, +1 per packet, whatever the source). The RTP timestamp is rewritten by
//!   a per-slot offset recomputed on every source switch (new time = last sent time + the wall-clock gap, at least
//!   one 20 ms frame), so the outgoing stream stays continuous when its source changes; the first packet after a
//!   switch carries the marker bit (start of talkspurt). The audio level (RFC 6464) is passed on. On the fallback
//!   path (str0m's), after each write the listener's `Rtc` gets `Input::Timeout(now)` and is drained again, or the
//!   packet would wait for the peer's next timer (str0m pitfall: its pacer's queue state is refreshed only on
//!   timeouts).
//! * **Sending.** Datagrams go into a batch of up to 64 fixed 2 KiB buffers allocated once per worker (the thin
//!   path builds into them; str0m's own transmits, a few per peer per second, are copied in) and are sent with one
//!   `sendmmsg(2)` per batch (the `nix` crate's safe wrapper), flushed at the end of each fan-out and of each loop
//!   turn.
//! * **Fan-out time.** [`MediaStats::fanout`] is a histogram of, per received packet and worker, the time from its
//!   receipt to the return of the `sendmmsg` that carried that worker's last copy (one `Instant::now()` per flush).
//! * **Shared certificate.** A worker generates one DTLS certificate and gives it to all its peers (a key pair per
//!   peer cost ~60 µs of the ~1.1 ms of worker CPU a join takes); each answer carries its fingerprint as before.
//! * **Loudest-N.** A listener gets at most [`MediaConfig::loudest`] publishers of its room at once (default 3, 0
//!   = all): each worker keeps a `loudest.rs` selection per room, fed with every frame it fans out (local and
//!   forwarded, with the frame's receipt time on the worker that received it, so every worker of the room sees the
//!   same inputs and agrees). A frame of an unselected publisher goes to no listener; when a publisher is displaced
//!   its slots are freed at once, so the newcomer takes them (the slot keeps its SSRC, sequence and time continuity,
//!   the marker bit starts the talkspurt). Frames still travel to every worker of the room, which must all see them.
//!   Active speakers (below) are computed from every frame, selected or not. The filler is never limited.
//! * **Active speakers.** From the RFC 6464 audio-level header extension of publishing peers, per room and worker:
//!   a publisher speaks while it sent a packet louder than -50 dBov (or flagged voice activity and louder than
//!   -70 dBov) within the last `max(2 × interval, 400 ms)`. Every `active_speaker_interval_ms` only the changes are
//!   emitted ([`MediaEvent::ActiveSpeakers`]). A room whose publishers sit on several workers gets one event per
//!   worker with changes (each lists only its own publishers).
//! * **Filler.** [`Media::play_filler`] plays a [`FillerSource`] (an Ogg Opus file read and demuxed once by
//!   [`FillerSource::open`] or [`FillerSource::from_ogg`], off the packet path, into an `Arc` list of `Arc<[u8]>`
//!   Opus packets with their durations from the TOC byte; at most [`MAX_FILLER_BYTES`]; anything not mono/stereo
//!   Ogg Opus or malformed is refused with [`MediaError::BadFiller`]) into a room as a virtual publisher named
//!   [`FILLER_IDENTITY`]. It has no peer: one worker hosts it (the one with most of the room's peers, else the
//!   least loaded) and sends its next packet when due (the deadline advances by each packet's duration, normally
//!   20 ms, so it does not drift; a stalled worker sends at most 5 late packets per turn and skips ahead after
//!   200 ms), with a continuous RTP time across loops of the file, into the same fan-out as a received packet:
//!   local listeners, and the other workers of the room through their forwarding queues. Listeners get it on a
//!   slot like any publisher (marker bit, rewritten timestamps), late joiners too. Every worker knows where each
//!   room's filler plays (a `FillerAt` command to all of them); when a local publisher sends a packet that counts
//!   as speech (the active-speaker rule below), its worker frees the filler's slots on its listeners and, through
//!   the bounded forwarding queues and ahead of that packet, tells the host and the room's other workers, which
//!   do the same; the host stops it and emits [`MediaEvent::FillerStopped`] (reason `Speech`). A forwarded filler
//!   packet reaching a worker that already heard of the stop is dropped. [`Media::stop_filler`], a replacing
//!   [`Media::play_filler`] and [`Media::remove_room`] stop it too (`Stopped`, `Removed`);
//!   [`MediaEvent::FillerStarted`] reports the start. Speech stops only the filler generation it knew of, so a
//!   stop in flight never ends a newer filler.
//! * **Network changes** (a client's new local port or interface; `proto/MOBILE.md` and `proto/PROTOCOL.md`, "Network changes").
//!   The SFU follows the client's ICE, never a bare packet: its send address is the pair the client nominated
//!   last. A client that moved restarts ICE (a new `media_offer` with new credentials, on the same peer: same `Rtc`,
//!   DTLS session, slots and publish permission), and its first check from the new address (USE-CANDIDATE) moves
//!   the send pair there; the new address is routed when the `Rtc` answers that check, as any address is (on the
//!   peer's home worker, `RouteOp::Addr` when it is hosted elsewhere). A client may also nominate from its new
//!   address without restarting: the vendored ICE agent (`third_party/str0m/PODIUM-PATCH.md`, item 19) makes the
//!   latest fresh nomination the send pair even when its priority is lower than the old pair's (upstream keeps the
//!   highest-priority one, so the old, dead address until it times out 15 s later). Chosen over latching onto
//!   authenticated SRTCP or consent checks from a new address: an unknown source's SRTCP cannot be tied to a peer
//!   without trying every peer's keys (STUN carries the ufrag), a listener sends RTCP only about once a second and
//!   consent checks every ~5 s (too slow for "back within 1 s"), and a consent check from a new address also comes
//!   from a client's backup pairs, which must not take the stream. Security: a nomination needs MESSAGE-INTEGRITY
//!   under the peer's ICE password; a replay of one of its last four nominations (same transaction id) moves
//!   nothing, and switches are rate-limited (four at once, then one a second); RTP/RTCP from an address without a
//!   valid check is dropped. Tested by `tests/it/media_network.rs` (aiortc moving to 127.0.0.2: 20-50 ms of silence,
//!   0.32 s at worst seen; same role, slot and SSRC).
//! * **State.** [`MediaEvent::State`]: `Connected` on str0m's `Event::Connected` (ICE + DTLS + SRTP up) and when ICE
//!   recovers, `Disconnected` when ICE reports disconnected, `Failed` when it stays disconnected for 15 s or the
//!   `Rtc` dies. A new offer (ICE restart or a fresh one) renegotiates; if the `Rtc` is dead, a new one is built
//!   for the same peer, keeping its publish permission.
//!
//! # Invariants
//!
//! * Every queue is bounded: commands (1024 per worker), forwarded packets and filler stops (4096 per worker; a
//!   filler stop that finds a queue full is retried on the speaker's next loud packet), events (8192), the send
//!   batch (64), datagrams read per loop turn (256). Overflow drops and counts; it never blocks a worker (only the
//!   synchronous [`Media::set_publish`]/[`Media::remove_peer`]/[`Media::play_filler`]/[`Media::stop_filler`] may
//!   block briefly on a full command queue). Waits are bounded too: a packet older than [`FORWARD_STALE_MS`] when
//!   its worker gets to it is dropped and counted, not sent late: one handed over by another worker, and one that
//!   waited that long in the worker's own socket queue (the kernel's receive timestamp, `recv.rs`). A loop turn fans
//!   out at most about 16,000 copies before it runs its commands and timers again, so an offer or a handshake waits
//!   tens of milliseconds behind fan-outs, not seconds.
//! * All state of a peer lives on exactly one worker (its host), except its routes, which live on its home worker;
//!   all commands for a peer go to its host in order, including across a move.
//! * A room has at most one filler, hosted on one worker, and each start ([`MediaEvent::FillerStarted`]) gets
//!   exactly one [`MediaEvent::FillerStopped`] (unless the event channel overflows). The filler never speaks
//!   (its packets carry no audio level and never reach the active-speaker logic), so it cannot stop itself.
//!   Its packets are shared `Arc<[u8]>` slices made at load: sending one allocates nothing of ours.
//! * No input panics a worker: every parse is fallible and every error path drops and counts.
//! * Per-packet work on our side allocates nothing (hash lookups, `Arc` clones, preallocated channel slots and
//!   send buffers). str0m allocates per received packet (the payload's `Arc<[u8]>`) and per `Transmit` of its own
//!   (STUN, DTLS, RTCP: not per forwarded packet).
//! * Memory: about 13.4 KiB of heap (20.2 KiB RSS) per connected listener (55 KiB before the str0m patches trimmed
//!   what an audio listener never uses, 31.5 KiB after the first pass; `docs/BENCHMARKS.md` has the breakdown,
//!   `third_party/str0m/PODIUM-PATCH.md` the changes), nearly all str0m's and its ICE and DTLS crates'; peers are
//!   boxed so the peer map's spare capacity costs pointers, not whole `Rtc`s. Whatever a peer offers, it costs at
//!   most 320 KiB negotiated with the default limits (measured worst 90 KiB, against 13.6 KiB for a one-m-line
//!   offer: `tests/memory.rs`), plus its DTLS/SRTP state once connected.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, oneshot};

mod filler;
#[doc(hidden)]
pub mod fuzzing;
mod log_limit;
mod loudest;
mod recording;
mod recv;
mod send;
mod srtp;
mod tcp;
mod wire;
mod worker;

pub use filler::{FILLER_IDENTITY, FillerSource, MAX_FILLER_BYTES, MAX_FILLER_PACKET};
pub use log_limit::LogLimiter;
pub use recording::{
    DEFAULT_RECORD_QUEUE, MAX_OPEN_SEGMENTS, MAX_RECORDINGS, RESYNC_SAMPLES, RecordedTracks, SEGMENT_GAP, Segment,
};

use worker::{Command, Forwarded, WorkerLink};

/// Commands queued per worker.
const COMMAND_QUEUE: usize = 1024;
/// Forwarded packets queued per worker.
const FORWARD_QUEUE: usize = 4096;
/// A packet from another worker older than this when its turn comes is dropped ([`MediaStats::stale_dropped`]).
pub const FORWARD_STALE_MS: u64 = 250;
/// Events queued for the hub.
const EVENT_QUEUE: usize = 8192;
/// Most distinct `a=candidate` lines in an offer (the SFU is ICE-lite and learns the client's address from its
/// checks; each candidate costs str0m about 1.2 KiB).
pub const MAX_CANDIDATES: usize = 32;
/// Default of [`MediaConfig::max_mlines`]: the default stage (13 seats) heard at once by a listener, plus its own
/// m-line, with room to spare.
pub const DEFAULT_MAX_MLINES: usize = 16;

/// Default of [`MediaConfig::loudest`].
pub const DEFAULT_LOUDEST: usize = 3;

/// Configuration of the media plane.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Address the UDP sockets bind to. Default 127.0.0.1.
    pub bind: IpAddr,
    /// First UDP port; worker i binds port+i; 0 = ephemeral ports.
    pub port: u16,
    /// Number of worker threads; 0 = one per core.
    pub workers: usize,
    /// Advertised in the host candidate instead of `bind` (NAT 1:1). Needed when `bind` is unspecified (0.0.0.0).
    pub public_ip: Option<IpAddr>,
    /// Largest accepted SDP, in bytes. Default 16 KiB.
    pub max_sdp_bytes: usize,
    /// Most m-lines (of any kind) in an offer, and most distinct SSRCs it declares; the SFU's own offers never take
    /// a peer past it either. Default 16. Bounds a peer's memory (see the crate docs).
    pub max_mlines: usize,
    /// Minimum interval between two active-speaker events of a room. Default 300 ms.
    pub active_speaker_interval_ms: u64,
    /// Most peers at once (over all workers). Default 20 000.
    pub max_peers: usize,
    /// Loudest-N: a listener receives at most this many publishers at once, the loudest unmuted ones by RFC 6464
    /// audio level, with hysteresis (the `loudest` module). Default 3; 0 = no limit (every publisher).
    pub loudest: usize,
    /// ICE-TCP (RFC 6544): each worker also listens on TCP at its UDP address (same port when free) and offers a
    /// passive TCP host candidate, for clients whose UDP is blocked. Default on.
    pub tcp: bool,
    /// Most ICE-TCP connections at once (over all workers, split evenly). Default 4096.
    pub max_tcp_connections: usize,
    /// Packets queued from the workers to the recording writer thread (`recording.rs`); past it they are dropped
    /// and counted ([`MediaStats::record_dropped`]). Default [`DEFAULT_RECORD_QUEUE`].
    pub record_queue: usize,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            workers: 0,
            public_ip: None,
            max_sdp_bytes: 16 * 1024,
            max_mlines: DEFAULT_MAX_MLINES,
            active_speaker_interval_ms: 300,
            max_peers: 20_000,
            loudest: DEFAULT_LOUDEST,
            tcp: true,
            max_tcp_connections: 4096,
            record_queue: DEFAULT_RECORD_QUEUE,
        }
    }
}

/// Events from the media plane to the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// A server-initiated offer (another downstream slot is needed); answer with [`Media::answer`].
    Offer { room: String, identity: String, sdp: String },
    /// The peer's connection state changed.
    State { room: String, identity: String, state: PeerState },
    /// Which downstream slot (mid) carries whose audio, for the peer `identity`.
    Tracks { room: String, identity: String, tracks: Vec<(String, Option<String>)> },
    /// Who started (with level 0..=127, 127 loudest) and who stopped speaking.
    ActiveSpeakers { room: String, speaking: Vec<(String, u8)>, stopped: Vec<String> },
    /// Filler audio started playing into the room ([`Media::play_filler`]).
    FillerStarted { room: String },
    /// The room's filler audio stopped, and why. Sent once per [`MediaEvent::FillerStarted`].
    FillerStopped { room: String, reason: FillerStopReason },
}

/// Why filler audio stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FillerStopReason {
    /// A real publisher of the room spoke (its RFC 6464 level counted as speech).
    Speech,
    /// [`Media::stop_filler`], or [`Media::play_filler`] replacing it.
    Stopped,
    /// [`Media::remove_room`].
    Removed,
}

/// Connection state of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    Connected,
    Disconnected,
    Failed,
}

/// Errors of the media API.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The SDP is malformed or not usable; the message is ours (never a dependency's text) and says what is wrong.
    #[error("{0}")]
    BadSdp(String),
    /// The SDP is larger than [`MediaConfig::max_sdp_bytes`].
    #[error("the SDP is larger than {max} bytes (the media limit)")]
    TooLarge { max: usize },
    /// The offer has more of something that costs the SFU memory than a limit allows: m-lines
    /// ([`MediaConfig::max_mlines`]), distinct SSRCs (as many as m-lines) or distinct ICE candidates
    /// ([`MAX_CANDIDATES`]).
    #[error("the offer has more than {max} {what}")]
    TooMany { what: &'static str, max: usize },
    #[error("a server offer awaits its answer: answer it first, then retry")]
    Conflict,
    /// An answer arrived but the SFU has no offer of its own pending for this peer.
    #[error("no offer from the SFU awaits an answer")]
    NoPendingOffer,
    #[error("no media session: send media_offer first")]
    UnknownPeer,
    #[error("media plane unavailable")]
    Unavailable,
    /// A filler file was refused: not Ogg, not Opus, malformed, or too large; the message says which.
    #[error("{0}")]
    BadFiller(String),
    #[error("media I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// The receiving end of the media events (a bounded channel; events are dropped and counted when it is full).
pub struct MediaEvents {
    rx: mpsc::Receiver<MediaEvent>,
}

impl MediaEvents {
    /// The next event, or `None` once the media plane has shut down.
    pub async fn recv(&mut self) -> Option<MediaEvent> {
        self.rx.recv().await
    }
}

/// Sub-buckets per power of two in [`FanoutHistogram`] (relative bucket width ≤ 1/16).
const HIST_SUB_BITS: u32 = 4;
const HIST_SUB: usize = 1 << HIST_SUB_BITS;
/// Buckets of [`FanoutHistogram`]: microseconds up to 2^32 (71 minutes), larger values land in the last one.
pub const FANOUT_BUCKETS: usize = HIST_SUB * (32 - HIST_SUB_BITS as usize + 1);

/// Bucket of a value in microseconds (log-linear: exact below 16 µs, then 16 buckets per power of two).
fn hist_bucket(us: u64) -> usize {
    let us = us.min((1 << 32) - 1);
    if us < HIST_SUB as u64 {
        return us as usize;
    }
    let e = 63 - us.leading_zeros();
    let sub = ((us >> (e - HIST_SUB_BITS)) as usize) & (HIST_SUB - 1);
    HIST_SUB * (e - HIST_SUB_BITS + 1) as usize + sub
}

/// Largest value (µs) of a bucket.
fn hist_upper(idx: usize) -> u64 {
    if idx < HIST_SUB {
        return idx as u64;
    }
    let e = (idx / HIST_SUB) as u32 + HIST_SUB_BITS - 1;
    let sub = (idx % HIST_SUB) as u64;
    ((HIST_SUB as u64 + sub + 1) << (e - HIST_SUB_BITS)) - 1
}

/// Histogram of the fan-out time of received audio packets, per worker that fanned it out: from the packet's
/// receipt (its `Input::Receive` time) to the return of the `sendmmsg` that carried the worker's last copy of it.
/// Packets with no local listener are not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FanoutHistogram {
    /// Counts per log-linear bucket of microseconds.
    pub buckets: [u64; FANOUT_BUCKETS],
    /// Sum of the recorded times, in microseconds.
    pub sum_us: u64,
}

impl Default for FanoutHistogram {
    fn default() -> Self {
        Self { buckets: [0; FANOUT_BUCKETS], sum_us: 0 }
    }
}

impl FanoutHistogram {
    /// Number of recorded fan-outs.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The counts recorded since `earlier` (a snapshot taken before this one).
    #[must_use]
    pub fn since(&self, earlier: &Self) -> Self {
        let mut out = *self;
        for (o, e) in out.buckets.iter_mut().zip(earlier.buckets.iter()) {
            *o = o.saturating_sub(*e);
        }
        out.sum_us = self.sum_us.saturating_sub(earlier.sum_us);
        out
    }

    /// The largest value (µs) that bucket `idx` holds (the last bucket also holds every larger value): for
    /// exporting the histogram with coarser bounds (Prometheus).
    pub fn bucket_upper_us(idx: usize) -> u64 {
        hist_upper(idx)
    }

    /// The `q` quantile (0..=1) as the upper bound of its bucket (≤ 1/16 above the true value); `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<std::time::Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(std::time::Duration::from_micros(hist_upper(i)));
            }
        }
        None
    }
}

/// Counters of the media plane (all workers together), for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaStats {
    /// Datagrams read from the sockets.
    pub datagrams_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// `sendmmsg` calls.
    pub send_calls: u64,
    /// Datagrams that could not be sent (socket buffer full or a send error).
    pub send_dropped: u64,
    /// Datagrams that were not STUN/DTLS/RTP/RTCP, failed str0m's parse, or were refused by the peer's `Rtc`.
    pub garbage_dropped: u64,
    /// Datagrams from an unknown source that were not STUN with a known ufrag.
    pub unknown_dropped: u64,
    /// RTP from peers not allowed to publish, dropped on arrival.
    pub unpublished_dropped: u64,
    /// Audio frames received from publishing peers.
    pub media_in: u64,
    /// Audio frames written to listeners.
    pub forwarded: u64,
    /// Frames not written because the listener had no free slot (yet).
    pub no_slot_dropped: u64,
    /// Frames dropped because another worker's queue was full.
    pub cross_worker_dropped: u64,
    /// Frames from another worker dropped because they were older than [`FORWARD_STALE_MS`] when their turn came
    /// (the receiving worker fell behind: late audio is shed, not sent late).
    pub stale_dropped: u64,
    /// Events dropped because the event channel was full.
    pub events_dropped: u64,
    /// Listeners moved to another worker to even out a room (see the crate docs, "Rebalancing").
    pub peers_moved: u64,
    /// ICE-TCP connections accepted.
    pub tcp_accepted: u64,
    /// ICE-TCP connections refused (over `max_tcp_connections`) or closed before passing ICE in time.
    pub tcp_refused: u64,
    /// Audio frames queued to the recording writer.
    pub record_queued: u64,
    /// Audio frames of recorded publishers dropped because the recording queue was full.
    pub record_dropped: u64,
    /// Fan-out time of received packets (all workers together).
    pub fanout: FanoutHistogram,
}

pub(crate) struct Stats {
    pub(crate) datagrams_in: AtomicU64,
    pub(crate) datagrams_out: AtomicU64,
    pub(crate) send_calls: AtomicU64,
    pub(crate) send_dropped: AtomicU64,
    pub(crate) garbage_dropped: AtomicU64,
    pub(crate) unknown_dropped: AtomicU64,
    pub(crate) unpublished_dropped: AtomicU64,
    pub(crate) media_in: AtomicU64,
    pub(crate) forwarded: AtomicU64,
    pub(crate) no_slot_dropped: AtomicU64,
    pub(crate) cross_worker_dropped: AtomicU64,
    pub(crate) stale_dropped: AtomicU64,
    pub(crate) events_dropped: AtomicU64,
    pub(crate) peers_moved: AtomicU64,
    pub(crate) tcp_accepted: AtomicU64,
    pub(crate) tcp_refused: AtomicU64,
    pub(crate) fanout: Box<[AtomicU64]>,
    pub(crate) fanout_sum_us: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            datagrams_in: AtomicU64::default(),
            datagrams_out: AtomicU64::default(),
            send_calls: AtomicU64::default(),
            send_dropped: AtomicU64::default(),
            garbage_dropped: AtomicU64::default(),
            unknown_dropped: AtomicU64::default(),
            unpublished_dropped: AtomicU64::default(),
            media_in: AtomicU64::default(),
            forwarded: AtomicU64::default(),
            no_slot_dropped: AtomicU64::default(),
            cross_worker_dropped: AtomicU64::default(),
            stale_dropped: AtomicU64::default(),
            events_dropped: AtomicU64::default(),
            peers_moved: AtomicU64::default(),
            tcp_accepted: AtomicU64::default(),
            tcp_refused: AtomicU64::default(),
            fanout: (0..FANOUT_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            fanout_sum_us: AtomicU64::default(),
        }
    }
}

impl Stats {
    /// Records one fan-out time.
    pub(crate) fn record_fanout(&self, elapsed: std::time::Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.fanout[hist_bucket(us)].fetch_add(1, Ordering::Relaxed);
        self.fanout_sum_us.fetch_add(us.min(1 << 32), Ordering::Relaxed);
    }

    fn snapshot(&self) -> MediaStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MediaStats {
            datagrams_in: g(&self.datagrams_in),
            datagrams_out: g(&self.datagrams_out),
            send_calls: g(&self.send_calls),
            send_dropped: g(&self.send_dropped),
            garbage_dropped: g(&self.garbage_dropped),
            unknown_dropped: g(&self.unknown_dropped),
            unpublished_dropped: g(&self.unpublished_dropped),
            media_in: g(&self.media_in),
            forwarded: g(&self.forwarded),
            no_slot_dropped: g(&self.no_slot_dropped),
            cross_worker_dropped: g(&self.cross_worker_dropped),
            stale_dropped: g(&self.stale_dropped),
            events_dropped: g(&self.events_dropped),
            peers_moved: g(&self.peers_moved),
            tcp_accepted: g(&self.tcp_accepted),
            tcp_refused: g(&self.tcp_refused),
            // Filled in by `Media::stats` (the recording queue keeps its own counters).
            record_queued: 0,
            record_dropped: 0,
            fanout: FanoutHistogram {
                buckets: std::array::from_fn(|i| g(&self.fanout[i])),
                sum_us: g(&self.fanout_sum_us),
            },
        }
    }
}

/// Handle to the media plane. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct Media {
    inner: Arc<Inner>,
}

struct Inner {
    config: MediaConfig,
    links: Arc<[WorkerLink]>,
    cmd_txs: Vec<SyncSender<Command>>,
    addrs: Vec<SocketAddr>,
    stats: Arc<Stats>,
    /// The recording writer's queue (`recording.rs`).
    recorder: recording::RecQueue,
    dir: Mutex<Directory>,
    closed: AtomicBool,
    peer_count: AtomicUsize,
    /// The worker threads (never joined: they end with the SFU; `is_finished` tells whether one died).
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Who is where: the control-plane view (locked only by API calls, never per packet).
#[derive(Default)]
struct Directory {
    rooms: HashMap<String, DirRoom>,
    next_gen: u64,
    /// Rooms with filler audio: the worker hosting it and its generation (a stop for an older filler is ignored).
    fillers: HashMap<String, (usize, u64)>,
}

#[derive(Default)]
struct DirRoom {
    members: HashMap<String, DirMember>,
    /// Peers of this room per worker.
    counts: Vec<u32>,
}

struct DirMember {
    /// The worker hosting the peer and the peer's generation, once an offer created it.
    peer: Option<(usize, u64)>,
    publish: Arc<AtomicBool>,
    /// Whether its audio goes to the room's recording ([`Media::set_record`]).
    record: Arc<AtomicBool>,
}

impl DirMember {
    fn new() -> Self {
        Self { peer: None, publish: Arc::new(AtomicBool::new(false)), record: Arc::new(AtomicBool::new(false)) }
    }
}

impl DirRoom {
    /// The entry of `identity` (made if new), with the room's per-worker counts sized for `n` workers.
    fn member(&mut self, identity: &str, n: usize) -> &mut DirMember {
        if self.counts.len() != n {
            self.counts.resize(n, 0);
        }
        self.members.entry(identity.to_owned()).or_insert_with(DirMember::new)
    }

    fn workers(&self) -> Vec<usize> {
        self.counts.iter().enumerate().filter(|(_, c)| **c > 0).map(|(i, _)| i).collect()
    }
}

impl Media {
    /// Binds the sockets and starts the worker threads.
    pub fn start(config: MediaConfig) -> Result<(Self, MediaEvents), MediaError> {
        str0m::crypto::from_feature_flags().install_process_default();
        if config.bind.is_unspecified() && config.public_ip.is_none() {
            return Err(MediaError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "media bind address is unspecified (0.0.0.0 or ::): set public_ip to the address clients reach",
            )));
        }
        let n = if config.workers == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        } else {
            config.workers
        };
        let stats = Arc::new(Stats::default());
        let (ev_tx, ev_rx) = mpsc::channel(EVENT_QUEUE);

        let mut sockets = Vec::with_capacity(n);
        let mut send_socks = Vec::with_capacity(n);
        let mut listeners = Vec::with_capacity(n);
        for i in 0..n {
            let port = if config.port == 0 {
                0
            } else {
                u16::try_from(usize::from(config.port) + i).map_err(|_| {
                    MediaError::Io(std::io::Error::new(std::io::ErrorKind::InvalidInput, "UDP port range overflows"))
                })?
            };
            let std_sock = std::net::UdpSocket::bind(SocketAddr::new(config.bind, port))?;
            std_sock.set_nonblocking(true)?;
            let _ = nix::sys::socket::setsockopt(&std_sock, nix::sys::socket::sockopt::SndBuf, &(4 << 20));
            let _ = nix::sys::socket::setsockopt(&std_sock, nix::sys::socket::sockopt::RcvBuf, &(4 << 20));
            if !recv::enable_timestamps(&std_sock) {
                tracing::warn!("SO_TIMESTAMPNS refused: audio that waited in the socket's queue cannot be told late");
            }
            // The worker reads its socket; every worker may send on it (for peers moved off their home worker).
            send_socks.push(Arc::new(std_sock.try_clone()?));
            let udp_addr = std_sock.local_addr()?;
            sockets.push(mio::net::UdpSocket::from_std(std_sock));
            let listener = if config.tcp {
                // The UDP socket's port when it is free on TCP too, else any.
                let l = std::net::TcpListener::bind(udp_addr)
                    .or_else(|_| std::net::TcpListener::bind(SocketAddr::new(udp_addr.ip(), 0)))?;
                l.set_nonblocking(true)?;
                Some(mio::net::TcpListener::from_std(l))
            } else {
                None
            };
            listeners.push(listener);
        }
        let mut addrs = Vec::with_capacity(n);
        let mut polls = Vec::with_capacity(n);
        let mut links = Vec::with_capacity(n);
        let mut fwd_rxs: Vec<Receiver<Forwarded>> = Vec::with_capacity(n);
        let mut cmd_rxs = Vec::with_capacity(n);
        let mut cmd_txs = Vec::with_capacity(n);
        for ((s, send_sock), listener) in sockets.iter_mut().zip(send_socks).zip(&mut listeners) {
            let local = s.local_addr()?;
            addrs.push(local);
            let candidate = SocketAddr::new(config.public_ip.unwrap_or(local.ip()), local.port());
            let tcp_candidate = match listener {
                Some(l) => {
                    let at = l.local_addr()?;
                    Some(SocketAddr::new(config.public_ip.unwrap_or(at.ip()), at.port()))
                }
                None => None,
            };
            let poll = mio::Poll::new()?;
            poll.registry().register(s, worker::SOCKET, mio::Interest::READABLE)?;
            if let Some(l) = listener {
                poll.registry().register(l, worker::LISTENER, mio::Interest::READABLE)?;
            }
            let waker = Arc::new(mio::Waker::new(poll.registry(), worker::WAKER)?);
            let (ftx, frx) = sync_channel(FORWARD_QUEUE);
            let (ctx, crx) = sync_channel(COMMAND_QUEUE);
            links.push(WorkerLink {
                fwd_tx: ftx,
                waker,
                load: AtomicUsize::new(0),
                candidate,
                tcp_candidate,
                socket: send_sock,
            });
            fwd_rxs.push(frx);
            cmd_rxs.push(crx);
            cmd_txs.push(ctx);
            polls.push(poll);
        }
        let links: Arc<[WorkerLink]> = links.into();
        let mut threads = Vec::with_capacity(n);
        let (recorder, rec_rx) = recording::queue(config.record_queue);
        threads.push(recording::spawn_writer(rec_rx)?);
        let tcp_per_worker = config.max_tcp_connections.div_ceil(n);
        for (i, ((((socket, poll), frx), crx), tcp)) in
            sockets.into_iter().zip(polls).zip(fwd_rxs).zip(cmd_rxs).zip(listeners).enumerate()
        {
            let local = addrs[i];
            let candidate = SocketAddr::new(config.public_ip.unwrap_or(local.ip()), local.port());
            let registry = poll.registry().try_clone()?;
            let init = worker::WorkerInit {
                idx: i,
                socket,
                poll,
                candidate,
                cmd_rx: crx,
                fwd_rx: frx,
                links: links.clone(),
                events: ev_tx.clone(),
                stats: stats.clone(),
                speaker_interval: std::time::Duration::from_millis(config.active_speaker_interval_ms.max(1)),
                max_mlines: config.max_mlines,
                loudest: config.loudest,
                tcp,
                max_tcp: tcp_per_worker,
                registry,
                recorder: recorder.clone(),
            };
            threads.push(
                std::thread::Builder::new()
                    .name(format!("podium-media-{i}"))
                    .spawn(move || worker::Worker::new(init).run())?,
            );
        }
        tracing::info!(workers = n, addrs = ?addrs, "media plane started");
        let inner = Inner {
            config,
            links,
            cmd_txs,
            addrs,
            stats,
            recorder,
            dir: Mutex::new(Directory::default()),
            closed: AtomicBool::new(false),
            peer_count: AtomicUsize::new(0),
            threads,
        };
        Ok((Self { inner: Arc::new(inner) }, MediaEvents { rx: ev_rx }))
    }

    /// The bound UDP socket addresses, one per worker.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.inner.addrs.clone()
    }

    /// How many worker threads are running (all of them, unless one panicked or the SFU was shut down).
    pub fn workers_alive(&self) -> usize {
        self.inner.threads.iter().filter(|t| !t.is_finished()).count()
    }

    /// How many worker threads were started.
    pub fn workers(&self) -> usize {
        self.inner.threads.len()
    }

    /// Counters over all workers.
    pub fn stats(&self) -> MediaStats {
        let mut stats = self.inner.stats.snapshot();
        stats.record_queued = self.inner.recorder.queued.load(Ordering::Relaxed);
        stats.record_dropped = self.inner.recorder.dropped.load(Ordering::Relaxed);
        stats
    }

    fn dir(&self) -> MutexGuard<'_, Directory> {
        self.inner.dir.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a command without blocking; `Unavailable` when the worker is gone or its queue is full.
    fn try_command(&self, worker: usize, cmd: Command) -> Result<(), MediaError> {
        match self.inner.cmd_txs[worker].try_send(cmd) {
            Ok(()) => {
                let _ = self.inner.links[worker].waker.wake();
                Ok(())
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(MediaError::Unavailable),
        }
    }

    /// Queues a command that must not be lost; may block briefly when the worker's queue is full.
    fn command(&self, worker: usize, cmd: Command) {
        if self.inner.cmd_txs[worker].send(cmd).is_ok() {
            let _ = self.inner.links[worker].waker.wake();
        }
    }

    fn broadcast_room_workers(&self, room: &Arc<str>, workers: &[usize]) {
        for w in 0..self.inner.cmd_txs.len() {
            self.command(w, Command::RoomWorkers { room: room.clone(), workers: workers.to_vec() });
        }
    }

    fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// A client's offer; creates the peer on first use (on the worker with the fewest of the room's peers, then the
    /// least loaded). Returns the answer SDP.
    pub async fn offer(&self, room: &str, identity: &str, sdp: &str) -> Result<String, MediaError> {
        if self.is_closed() {
            return Err(MediaError::Unavailable);
        }
        let shape = wire::precheck_offer(sdp, self.inner.config.max_sdp_bytes, self.inner.config.max_mlines)?;
        let offer =
            str0m::change::SdpOffer::from_sdp_string(sdp).map_err(|e| wire::parse_failed(wire::SdpKind::Offer, &e))?;
        let room_arc: Arc<str> = Arc::from(room);
        let identity_arc: Arc<str> = Arc::from(identity);
        let n = self.inner.cmd_txs.len();
        let (tx, rx) = oneshot::channel();
        // Queued under the directory's lock, like every command for a peer: a rebalancing move (which also takes
        // the lock) then comes strictly before or after it in the worker's queue.
        let (generation, created, queued) = {
            let mut dir = self.dir();
            let next_gen = dir.next_gen;
            let r = dir.rooms.entry(room.to_owned()).or_default();
            if r.counts.len() != n {
                r.counts.resize(n, 0);
            }
            let member = r.members.entry(identity.to_owned()).or_insert_with(DirMember::new);
            let publish = member.publish.clone();
            let record = member.record.clone();
            let (worker, generation, created) = if let Some((w, g)) = member.peer {
                (w, g, false)
            } else {
                if self.inner.peer_count.load(Ordering::Relaxed) >= self.inner.config.max_peers {
                    return Err(MediaError::Unavailable);
                }
                // The worker with the fewest of this room's peers, then the least loaded: a room's listeners are
                // spread evenly, so one packet's fan-out runs on every worker at once (N × cost / workers).
                let w = (0..n)
                    .min_by_key(|i| (r.counts[*i], self.inner.links[*i].load.load(Ordering::Relaxed)))
                    .unwrap_or(0);
                member.peer = Some((w, next_gen));
                self.inner.links[w].load.fetch_add(1, Ordering::Relaxed);
                self.inner.peer_count.fetch_add(1, Ordering::Relaxed);
                let was_empty = r.counts[w] == 0;
                r.counts[w] += 1;
                let workers = r.workers();
                dir.next_gen += 1;
                if was_empty {
                    self.broadcast_room_workers(&room_arc, &workers);
                }
                (w, next_gen, true)
            };
            let cmd = Command::Offer {
                room: room_arc,
                identity: identity_arc,
                offer: Box::new(worker::CheckedOffer { sdp: offer, mlines: shape.mlines }),
                publish,
                record,
                generation,
                reply: tx,
            };
            (generation, created, self.try_command(worker, cmd))
        };
        let result = match queued {
            Ok(()) => rx.await.unwrap_or(Err(MediaError::Unavailable)),
            Err(e) => Err(e),
        };
        if result.is_err() && created {
            // The worker did not keep the new peer: forget it here too.
            self.forget_peer(room, identity, Some(generation));
        }
        result
    }

    /// Forgets the peer of (room, identity) and tells the workers.
    ///
    /// `generation: Some(g)` undoes a failed creation: only that generation is forgotten and the publish
    /// permission is kept. `None` removes the peer whatever its generation, and its permission with it.
    fn forget_peer(&self, room: &str, identity: &str, generation: Option<u64>) {
        let mut dir = self.dir();
        let Some(r) = dir.rooms.get_mut(room) else { return };
        let Some(member) = r.members.get_mut(identity) else { return };
        if generation.is_none() {
            member.publish.store(false, Ordering::Release);
        }
        let peer = member.peer;
        match (peer, generation) {
            (Some((_, g)), Some(want)) if g != want => return,
            (None, Some(_)) => return,
            _ => {}
        }
        if generation.is_none() {
            r.members.remove(identity);
        } else {
            member.peer = None;
        }
        let room_arc: Arc<str> = Arc::from(room);
        let identity_arc: Arc<str> = Arc::from(identity);
        if let Some((w, _)) = peer {
            self.inner.links[w].load.fetch_sub(1, Ordering::Relaxed);
            self.inner.peer_count.fetch_sub(1, Ordering::Relaxed);
            r.counts[w] = r.counts[w].saturating_sub(1);
            let workers = r.workers();
            self.command(w, Command::RemovePeer { room: room_arc.clone(), identity: identity_arc.clone() });
            for &ow in &workers {
                self.command(ow, Command::SourceGone { room: room_arc.clone(), identity: identity_arc.clone() });
            }
            if r.counts[w] == 0 {
                self.broadcast_room_workers(&room_arc, &workers);
            }
            self.rebalance(&room_arc, r);
        }
        if r.members.is_empty() {
            dir.rooms.remove(room);
        }
    }

    /// After a peer left: when the room's busiest worker has two or more of its peers more than its least busy one,
    /// moves one listener (a peer not allowed to publish) from the one to the other, so one packet's fan-out stays
    /// N × cost / workers as people leave. One move per departure keeps a room that joins spread evenly within one
    /// peer per worker. The move happens under the directory's lock, like every command for a peer: the target is
    /// told first (`Arriving`: it holds back the room's commands until the peer is in), then the source
    /// (`MoveOut`); later commands go to the target.
    fn rebalance(&self, room: &Arc<str>, r: &mut DirRoom) {
        let n = r.counts.len();
        if n < 2 {
            return;
        }
        let (Some(hi), Some(lo)) = ((0..n).max_by_key(|i| r.counts[*i]), (0..n).min_by_key(|i| r.counts[*i])) else {
            return;
        };
        if r.counts[hi] < r.counts[lo] + 2 {
            return;
        }
        let pick = r
            .members
            .iter_mut()
            .find(|(_, m)| matches!(m.peer, Some((w, _)) if w == hi) && !m.publish.load(Ordering::Acquire));
        let Some((identity, member)) = pick else { return };
        let Some((_, generation)) = member.peer else { return };
        member.peer = Some((lo, generation));
        let identity: Arc<str> = Arc::from(identity.as_str());
        let was_empty = r.counts[lo] == 0;
        r.counts[hi] -= 1;
        r.counts[lo] += 1;
        self.inner.links[hi].load.fetch_sub(1, Ordering::Relaxed);
        self.inner.links[lo].load.fetch_add(1, Ordering::Relaxed);
        self.command(lo, Command::Arriving { room: room.clone(), identity: identity.clone() });
        self.command(hi, Command::MoveOut { room: room.clone(), identity, to: lo });
        if was_empty || r.counts[hi] == 0 {
            self.broadcast_room_workers(room, &r.workers());
        }
        self.inner.stats.peers_moved.fetch_add(1, Ordering::Relaxed);
    }

    /// How many peers of `room` each worker hosts (index = worker), e.g. to watch rebalancing.
    pub fn room_spread(&self, room: &str) -> Vec<u32> {
        self.dir().rooms.get(room).map(|r| r.counts.clone()).unwrap_or_default()
    }

    /// The client's answer to a server-initiated offer.
    pub async fn answer(&self, room: &str, identity: &str, sdp: &str) -> Result<(), MediaError> {
        if self.is_closed() {
            return Err(MediaError::Unavailable);
        }
        wire::precheck_answer(sdp, self.inner.config.max_sdp_bytes)?;
        let answer = str0m::change::SdpAnswer::from_sdp_string(sdp)
            .map_err(|e| wire::parse_failed(wire::SdpKind::Answer, &e))?;
        let (tx, rx) = oneshot::channel();
        {
            // Queued under the lock (see `offer`).
            let dir = self.dir();
            let worker = dir.rooms.get(room).and_then(|r| r.members.get(identity)).and_then(|m| m.peer).map(|(w, _)| w);
            let Some(worker) = worker else { return Err(MediaError::UnknownPeer) };
            let cmd = Command::Answer {
                room: Arc::from(room),
                identity: Arc::from(identity),
                answer: Box::new(answer),
                reply: tx,
            };
            self.try_command(worker, cmd)?;
        }
        rx.await.unwrap_or(Err(MediaError::Unavailable))
    }

    /// May be called before the peer exists (remembered). Takes effect at once: `false` stops forwarding.
    pub fn set_publish(&self, room: &str, identity: &str, allowed: bool) {
        let mut dir = self.dir();
        let n = self.inner.cmd_txs.len();
        let r = dir.rooms.entry(room.to_owned()).or_default();
        let was = r.member(identity, n).publish.swap(allowed, Ordering::AcqRel);
        if was && !allowed {
            let room_arc: Arc<str> = Arc::from(room);
            let identity_arc: Arc<str> = Arc::from(identity);
            for w in r.workers() {
                self.command(w, Command::SourceGone { room: room_arc.clone(), identity: identity_arc.clone() });
            }
        }
    }

    /// Drops the peer (left, kicked, banned, grace expired) and its publish permission. Later offers create a new
    /// peer.
    pub fn remove_peer(&self, room: &str, identity: &str) {
        self.forget_peer(room, identity, None);
    }

    /// Drops every peer of a room (room ended).
    pub fn remove_room(&self, room: &str) {
        let mut dir = self.dir();
        let Some(r) = dir.rooms.remove(room) else { return };
        let room_arc: Arc<str> = Arc::from(room);
        for m in r.members.values() {
            m.publish.store(false, Ordering::Release);
            if let Some((w, _)) = m.peer {
                self.inner.links[w].load.fetch_sub(1, Ordering::Relaxed);
                self.inner.peer_count.fetch_sub(1, Ordering::Relaxed);
            }
        }
        for w in r.workers() {
            self.command(w, Command::RemoveRoom { room: room_arc.clone() });
        }
        self.broadcast_room_workers(&room_arc, &[]);
        if let Some((w, _)) = dir.fillers.remove(room) {
            self.end_filler(&room_arc, w, FillerStopReason::Removed);
        }
    }

    /// Plays `source` into `room` as a virtual publisher named [`FILLER_IDENTITY`], looping, until a real publisher
    /// of the room speaks, [`Media::stop_filler`] or [`Media::remove_room`] ([`MediaEvent::FillerStopped`] says
    /// which). Replaces the room's current filler, if any. The room need not have peers yet: listeners who join
    /// later hear it too. Emits [`MediaEvent::FillerStarted`].
    pub fn play_filler(&self, room: &str, source: &FillerSource) -> Result<(), MediaError> {
        if self.is_closed() {
            return Err(MediaError::Unavailable);
        }
        let mut dir = self.dir();
        let room_arc: Arc<str> = Arc::from(room);
        if let Some((old, _)) = dir.fillers.remove(room) {
            self.end_filler(&room_arc, old, FillerStopReason::Stopped);
        }
        // Host it where most of the room's peers are (fewest cross-worker copies), else on the least-loaded worker.
        let n = self.inner.cmd_txs.len();
        let w = dir
            .rooms
            .get(room)
            .and_then(|r| (0..r.counts.len()).filter(|w| r.counts[*w] > 0).max_by_key(|w| r.counts[*w]))
            .unwrap_or_else(|| (0..n).min_by_key(|i| self.inner.links[*i].load.load(Ordering::Relaxed)).unwrap_or(0));
        let generation = dir.next_gen;
        dir.next_gen += 1;
        dir.fillers.insert(room.to_owned(), (w, generation));
        // Every worker learns where the filler is first (so speech anywhere can stop it), then the host starts it.
        for x in 0..n {
            self.command(x, Command::FillerAt { room: room_arc.clone(), at: Some((w, generation)) });
        }
        self.command(w, Command::PlayFiller { room: room_arc, source: source.clone(), generation });
        Ok(())
    }

    /// Stops the room's filler audio, if it plays ([`MediaEvent::FillerStopped`] with
    /// [`FillerStopReason::Stopped`] when it did).
    pub fn stop_filler(&self, room: &str) {
        let mut dir = self.dir();
        if let Some((w, _)) = dir.fillers.remove(room) {
            self.end_filler(&Arc::from(room), w, FillerStopReason::Stopped);
        }
    }

    fn end_filler(&self, room: &Arc<str>, host: usize, reason: FillerStopReason) {
        self.command(host, Command::StopFiller { room: room.clone(), reason });
        for x in 0..self.inner.cmd_txs.len() {
            self.command(x, Command::FillerAt { room: room.clone(), at: None });
        }
    }

    /// Starts recording `room` as `id`: from now on the audio of its publishers marked with [`Media::set_record`]
    /// is written to Ogg Opus files in `dir/id/` (created here), one per segment (see `recording.rs`). A recording
    /// already running for the room is closed and replaced. Blocking file IO (one directory): from async code, keep
    /// it short or call it in `spawn_blocking`.
    pub fn start_recording(
        &self,
        room: &str,
        id: &str,
        dir: &std::path::Path,
    ) -> Result<std::path::PathBuf, MediaError> {
        if self.is_closed() {
            return Err(MediaError::Unavailable);
        }
        let path = dir.join(id);
        std::fs::create_dir_all(&path)?;
        let msg = recording::RecMsg::Start { room: Arc::from(room), id: id.to_owned(), dir: path.clone() };
        if !self.inner.recorder.control(msg) {
            return Err(MediaError::Unavailable);
        }
        Ok(path)
    }

    /// Whether `identity`'s audio in `room` is written to the room's recording (while one runs). May be called
    /// before the peer exists (remembered, like [`Media::set_publish`]); takes effect on the next packet. The hub
    /// decides (the media plane knows no roles or opt-outs): opted-out speakers are never marked.
    pub fn set_record(&self, room: &str, identity: &str, on: bool) {
        let mut dir = self.dir();
        if !on {
            // Never makes an entry: the peer (or the whole room) may be gone already.
            if let Some(m) = dir.rooms.get(room).and_then(|r| r.members.get(identity)) {
                m.record.store(false, Ordering::Release);
            }
            return;
        }
        let n = self.inner.cmd_txs.len();
        dir.rooms.entry(room.to_owned()).or_default().member(identity, n).record.store(true, Ordering::Release);
    }

    /// Stops recording `room`: closes its files (after every packet queued before this call) and returns what was
    /// written; `None` when it was not recording. Waits at most 30 s for the writer.
    pub async fn stop_recording(&self, room: &str) -> Option<RecordedTracks> {
        let (tx, rx) = oneshot::channel();
        let recorder = self.inner.recorder.clone();
        let msg = recording::RecMsg::Stop { room: Arc::from(room), reply: tx };
        // The send may wait while the queue is full: not on the async runtime's thread.
        let sent = tokio::task::spawn_blocking(move || recorder.control(msg)).await.unwrap_or(false);
        if !sent {
            return None;
        }
        tokio::time::timeout(recording::STOP_TIMEOUT, rx).await.ok()?.ok().flatten()
    }

    /// Stops the workers. Later calls return `Unavailable`; the event stream ends.
    pub fn shutdown(&self) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        for w in 0..self.inner.cmd_txs.len() {
            self.command(w, Command::Shutdown);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets() {
        let mut prev = 0;
        for us in [0u64, 1, 15, 16, 17, 31, 32, 100, 1_000, 20_000, 1 << 31, (1 << 32) - 1, u64::MAX] {
            let b = hist_bucket(us);
            assert!(b < FANOUT_BUCKETS && b >= prev, "{us}");
            let lo = if b == 0 { 0 } else { hist_upper(b - 1) + 1 };
            assert!(us.min((1 << 32) - 1) >= lo && us.min((1 << 32) - 1) <= hist_upper(b), "{us} in bucket {b}");
            prev = b;
        }
        let stats = Stats::default();
        for ms in 1..=100u64 {
            stats.record_fanout(std::time::Duration::from_millis(ms));
        }
        let h = stats.snapshot().fanout;
        assert_eq!(h.count(), 100);
        assert_eq!(h.sum_us, 5_050_000);
        let p50 = h.quantile(0.5).unwrap().as_micros();
        assert!((50_000..=53_200).contains(&p50), "{p50}");
        assert_eq!(h.since(&h).count(), 0);
    }
}
