//! Narrow entry points for the fuzz targets (`crates/podium-fuzz`, `fuzz/`): a real [`Worker`] driven on the
//! calling thread, without its poll loop. Not part of the stable API (hidden from the docs).
//!
//! # Design
//!
//! [`FuzzWorker`] owns a worker built exactly as [`crate::Media::start`] builds one (a loopback UDP socket, its
//! `mio::Poll` and waker, the worker's own shared DTLS certificate), and calls the same methods its loop calls:
//! `command` for offers and peer removal, `handle_datagram` for every received datagram (routing by source address
//! or STUN ufrag, the RTP/publish check, `Receive::new`, `Rtc::accepts`, `handle_input`, the drain and fan-out).
//! Nothing else of the worker is replaced or mocked.
//!
//! - [`FuzzWorker::offer`]: an untrusted SDP offer through the same steps as [`crate::Media::offer`] (size and
//!   text pre-checks, str0m's parser) and then the worker's accept path (new `Rtc`, `accept_offer`, routing
//!   entries); the peer is removed again.
//! - [`FuzzWorker::session`]: a client `Rtc` (str0m, as a browser would be) makes an offer, the worker answers it;
//!   optionally the client's first STUN binding request (right ufrag and password) is delivered, so the client
//!   address is bound and later datagrams reach the peer's `Rtc` past ICE (DTLS, RTCP, RTP demux); then the
//!   untrusted datagrams arrive, each from the bound client address or from another address (the ufrag lookup
//!   path), with the clock moving forward by a given step; finally the peer is removed.
//! - [`FuzzWorker::live`]: the same, on a session kept across inputs (one per combination of the two flags, each
//!   with its own client address), so an input costs only its datagrams; a session is ended (peer removed, the
//!   worker checked idle of it) and set up again after [`LIVE_INPUTS`] inputs or [`LIVE_SPAN`] of its clock. This
//!   is what the `media_datagram` target uses: a full session per input runs at about 100 inputs/s.
//!
//! # Invariants checked (an `Err` is a fuzzer finding)
//!
//! - After a session or an offer the worker is idle again: no peer, no room, no address or ufrag route left.
//! - Outputs are bounded: the events a session emits stay within a small multiple of its inputs.
//!
//! Datagrams only ever go to the two loopback sockets this harness owns (the client addresses); nothing is read
//! from them, so the kernel drops what overflows their buffers.

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::config::DtlsCert;
use str0m::media::{Direction, MediaKind};
use str0m::{Candidate, Input, Output, RtcConfig};
use tokio::sync::{mpsc, oneshot};

use crate::worker::{CheckedOffer, Command, Forwarded, Worker, WorkerInit, WorkerLink};
use crate::{MediaConfig, MediaError, MediaEvent, Stats, wire};

/// A worker is rebuilt after this many uses, so that state a real worker keeps for its lifetime (the timer heap,
/// which only its loop prunes) does not grow without bound over millions of inputs.
const USES_PER_WORKER: u32 = 512;
/// At most this many events per session input (offer, bind, datagram) plus a constant.
const EVENTS_PER_INPUT: usize = 8;
/// A live session serves at most this many inputs before it is ended and set up again.
pub const LIVE_INPUTS: u32 = 256;
/// ... or until its clock has moved this far (ICE and DTLS timers then expire on their own, as they would).
pub const LIVE_SPAN: Duration = Duration::from_secs(120);

/// A peer kept across inputs by [`FuzzWorker::live`].
struct Live {
    room: Arc<str>,
    identity: Arc<str>,
    started: Instant,
    inputs: u32,
}

/// One untrusted datagram of a [`FuzzWorker::session`].
#[derive(Clone, Debug)]
pub struct Datagram<'a> {
    /// From the client's bound address (after ICE) rather than from an address the worker does not know.
    pub from_client: bool,
    /// The clock moves forward by this much before the datagram arrives.
    pub after: Duration,
    /// The payload.
    pub data: &'a [u8],
}

/// A real worker on the calling thread. See the module docs.
pub struct FuzzWorker {
    worker: Worker,
    uses: u32,
    /// Keeps the worker's command channel open.
    _cmd_tx: SyncSender<Command>,
    /// Keeps the worker's forward channel open.
    _fwd_tx: SyncSender<Forwarded>,
    events: mpsc::Receiver<MediaEvent>,
    /// The client's address and another one; both are sockets of ours.
    client: UdpSocket,
    stranger: UdpSocket,
    client_cert: Option<DtlsCert>,
    generation: u64,
    max_sdp_bytes: usize,
    /// Live sessions by flags (bit 0: bound, bit 1: may publish), each with its own client socket.
    live: [Option<Live>; 4],
    live_clients: [UdpSocket; 4],
    /// The live sessions' clock: only moves forward.
    now: Instant,
}

impl FuzzWorker {
    /// Builds a worker bound to an ephemeral loopback port.
    pub fn new() -> std::io::Result<Self> {
        str0m::crypto::from_feature_flags().install_process_default();
        let (worker, cmd_tx, fwd_tx, events) = build_worker()?;
        Ok(Self {
            worker,
            uses: 0,
            _cmd_tx: cmd_tx,
            _fwd_tx: fwd_tx,
            events,
            client: UdpSocket::bind("127.0.0.1:0")?,
            stranger: UdpSocket::bind("127.0.0.1:0")?,
            client_cert: str0m::crypto::from_feature_flags().dtls_provider.generate_certificate(),
            generation: 0,
            max_sdp_bytes: MediaConfig::default().max_sdp_bytes,
            live: [None, None, None, None],
            live_clients: [
                UdpSocket::bind("127.0.0.1:0")?,
                UdpSocket::bind("127.0.0.1:0")?,
                UdpSocket::bind("127.0.0.1:0")?,
                UdpSocket::bind("127.0.0.1:0")?,
            ],
            now: Instant::now(),
        })
    }

    /// Untrusted `datagrams` on the live session for (`bind`, `publish`), set up first when there is none. Events
    /// are bounded per input; when the session ends, the worker must hold nothing of it. `Err` is a broken
    /// invariant.
    pub fn live(&mut self, bind: bool, publish: bool, datagrams: &[Datagram<'_>]) -> Result<(), String> {
        let slot = usize::from(bind) | usize::from(publish) << 1;
        if self.live[slot].is_none() {
            if self.uses >= USES_PER_WORKER {
                self.end_all_live()?;
                self.recycle();
            }
            self.uses += 1;
            let room: Arc<str> = Arc::from(format!("live{slot}"));
            let identity: Arc<str> = Arc::from(format!("peer{slot}"));
            self.now = self.now.max(Instant::now());
            let client_addr = self.live_clients[slot].local_addr().map_err(|e| e.to_string())?;
            self.connect(self.now, client_addr, &room, &identity, bind, publish)?;
            self.drain_events(EVENTS_PER_INPUT * 2)?;
            self.live[slot] = Some(Live { room, identity, started: self.now, inputs: 0 });
        }
        let client_addr = self.live_clients[slot].local_addr().map_err(|e| e.to_string())?;
        let stranger_addr = self.stranger.local_addr().map_err(|e| e.to_string())?;
        for d in datagrams {
            self.now += d.after;
            let source = if d.from_client { client_addr } else { stranger_addr };
            self.worker.handle_datagram(self.now, source, d.data);
        }
        self.drain_events(EVENTS_PER_INPUT * (1 + datagrams.len()))?;
        let end = self.live[slot].as_mut().is_some_and(|live| {
            live.inputs += 1;
            live.inputs >= LIVE_INPUTS || self.now.duration_since(live.started) >= LIVE_SPAN
        });
        if end {
            self.end_live(slot)?;
        }
        Ok(())
    }

    /// Ends every live session; the worker must then be idle.
    fn end_all_live(&mut self) -> Result<(), String> {
        for slot in 0..self.live.len() {
            self.end_live(slot)?;
        }
        if !self.worker.is_idle() {
            return Err("the worker kept state of removed peers".into());
        }
        Ok(())
    }

    /// Removes a live session's peer; the worker must hold no route to it afterwards.
    fn end_live(&mut self, slot: usize) -> Result<(), String> {
        let Some(live) = self.live[slot].take() else { return Ok(()) };
        self.worker.command(Command::RemovePeer { room: live.room, identity: live.identity });
        if self.live.iter().all(Option::is_none) && !self.worker.is_idle() {
            return Err("the worker kept state of removed peers".into());
        }
        self.drain_events(EVENTS_PER_INPUT)
    }

    fn drain_events(&mut self, max_events: usize) -> Result<(), String> {
        let mut n = 0usize;
        while self.events.try_recv().is_ok() {
            n += 1;
        }
        if n > max_events {
            return Err(format!("{n} events for at most {max_events}"));
        }
        Ok(())
    }

    /// An untrusted SDP offer: pre-checks, parse, the worker's accept path, then removal. Returns the answer.
    pub fn offer(&mut self, sdp: &str) -> Result<Result<String, MediaError>, String> {
        if self.live.iter().any(Option::is_some) {
            self.end_all_live()?;
        }
        self.recycle();
        let now = Instant::now();
        let result = parse_offer(sdp, self.max_sdp_bytes).and_then(|offer| self.send_offer(now, offer));
        self.remove_peer();
        self.check_after(2)?;
        Ok(result)
    }

    /// A client session: offer and answer, optionally ICE (`bind`), then `datagrams`; then removal. The client may
    /// publish when `publish` is set. `Err` is a broken invariant.
    pub fn session(&mut self, bind: bool, publish: bool, datagrams: &[Datagram<'_>]) -> Result<(), String> {
        if self.live.iter().any(Option::is_some) {
            self.end_all_live()?;
        }
        self.recycle();
        let mut now = Instant::now().max(self.now);
        let client_addr = self.client.local_addr().map_err(|e| e.to_string())?;
        let stranger_addr = self.stranger.local_addr().map_err(|e| e.to_string())?;
        self.connect(now, client_addr, &Arc::from("room"), &Arc::from("peer"), bind, publish)?;
        for d in datagrams {
            now += d.after;
            let source = if d.from_client { client_addr } else { stranger_addr };
            self.worker.handle_datagram(now, source, d.data);
        }
        self.now = now;
        self.remove_peer();
        self.check_after(EVENTS_PER_INPUT * (2 + datagrams.len()))
    }

    /// A client `Rtc` (str0m, as a browser) at `client_addr` offers, the worker answers as `identity` in `room`;
    /// with `bind`, the client's first connectivity check (right ufrag and password) binds its address.
    fn connect(
        &mut self,
        now: Instant,
        client_addr: std::net::SocketAddr,
        room: &Arc<str>,
        identity: &Arc<str>,
        bind: bool,
        publish: bool,
    ) -> Result<(), String> {
        let mut config = RtcConfig::new();
        if let Some(cert) = &self.client_cert {
            config = config.set_dtls_cert(cert.clone());
        }
        let mut client = config.clear_codecs().enable_opus(true, false).build(now);
        if let Ok(c) = Candidate::host(client_addr, "udp") {
            client.add_local_candidate(c);
        }
        let mut api = client.sdp_api();
        api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, pending) = api.apply().ok_or("the client made no offer")?;
        let publish_flag = Arc::new(AtomicBool::new(publish));
        let answer = self
            .send_offer_to(room, identity, CheckedOffer { sdp: offer, mlines: 1 }, publish_flag)
            .map_err(|e| format!("valid offer refused: {e}"))?;
        let answer = SdpAnswer::from_sdp_string(&answer).map_err(|e| format!("unparsable answer: {e}"))?;
        client.sdp_api().accept_answer(pending, answer).map_err(|e| format!("answer refused: {e}"))?;
        if bind {
            client.handle_input(Input::Timeout(now)).map_err(|e| e.to_string())?;
            for _ in 0..64 {
                match client.poll_output() {
                    Ok(Output::Transmit(t)) => {
                        if wire::is_stun(&t.contents) {
                            self.worker.handle_datagram(now, client_addr, &t.contents);
                            break;
                        }
                    }
                    Ok(Output::Event(_)) => {}
                    Ok(Output::Timeout(_)) | Err(_) => break,
                }
            }
        }
        Ok(())
    }

    fn send_offer(&mut self, _now: Instant, offer: CheckedOffer) -> Result<String, MediaError> {
        self.send_offer_to(&Arc::from("room"), &Arc::from("peer"), offer, Arc::new(AtomicBool::new(false)))
    }

    fn send_offer_to(
        &mut self,
        room: &Arc<str>,
        identity: &Arc<str>,
        offer: CheckedOffer,
        publish: Arc<AtomicBool>,
    ) -> Result<String, MediaError> {
        self.generation += 1;
        let (tx, mut rx) = oneshot::channel();
        self.worker.command(Command::Offer {
            room: room.clone(),
            identity: identity.clone(),
            offer: Box::new(offer),
            publish,
            record: Arc::new(AtomicBool::new(false)),
            generation: self.generation,
            reply: tx,
        });
        rx.try_recv().unwrap_or(Err(MediaError::Unavailable))
    }

    fn remove_peer(&mut self) {
        self.worker.command(Command::RemovePeer { room: Arc::from("room"), identity: Arc::from("peer") });
    }

    /// The worker holds nothing of the session any more, and it emitted at most `max_events` events.
    fn check_after(&mut self, max_events: usize) -> Result<(), String> {
        if !self.worker.is_idle() {
            return Err("the worker kept state of a removed peer".into());
        }
        self.drain_events(max_events)
    }

    fn recycle(&mut self) {
        self.uses += 1;
        if self.uses >= USES_PER_WORKER
            && let Ok((worker, cmd_tx, fwd_tx, events)) = build_worker()
        {
            self.worker = worker;
            self._cmd_tx = cmd_tx;
            self._fwd_tx = fwd_tx;
            self.events = events;
            self.uses = 0;
        }
    }
}

/// The steps [`crate::Media::offer`] takes before handing an offer to a worker.
fn parse_offer(sdp: &str, max_bytes: usize) -> Result<CheckedOffer, MediaError> {
    let shape = wire::precheck_offer(sdp, max_bytes, crate::DEFAULT_MAX_MLINES)?;
    let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| wire::parse_failed(wire::SdpKind::Offer, &e))?;
    Ok(CheckedOffer { sdp: offer, mlines: shape.mlines })
}

type Built = (Worker, SyncSender<Command>, SyncSender<Forwarded>, mpsc::Receiver<MediaEvent>);

/// One worker as [`crate::Media::start`] builds it (socket, poll, waker, channels), not started.
fn build_worker() -> std::io::Result<Built> {
    let std_sock = UdpSocket::bind("127.0.0.1:0")?;
    std_sock.set_nonblocking(true)?;
    let send_sock = Arc::new(std_sock.try_clone()?);
    let mut socket = mio::net::UdpSocket::from_std(std_sock);
    let candidate = socket.local_addr()?;
    let poll = mio::Poll::new()?;
    poll.registry().register(&mut socket, crate::worker::SOCKET, mio::Interest::READABLE)?;
    let waker = Arc::new(mio::Waker::new(poll.registry(), crate::worker::WAKER)?);
    let (fwd_tx, fwd_rx) = sync_channel(16);
    let (cmd_tx, cmd_rx) = sync_channel(16);
    let links: Arc<[WorkerLink]> = vec![WorkerLink {
        fwd_tx: fwd_tx.clone(),
        waker,
        load: AtomicUsize::new(0),
        candidate,
        tcp_candidate: None,
        socket: send_sock,
    }]
    .into();
    let (ev_tx, ev_rx) = mpsc::channel(1024);
    let registry = poll.registry().try_clone()?;
    let init = WorkerInit {
        max_mlines: crate::DEFAULT_MAX_MLINES,
        loudest: crate::DEFAULT_LOUDEST,
        idx: 0,
        socket,
        poll,
        candidate,
        cmd_rx,
        fwd_rx,
        links,
        events: ev_tx,
        stats: Arc::new(Stats::default()),
        speaker_interval: Duration::from_millis(300),
        tcp: None,
        max_tcp: 0,
        registry,
        // No writer: nothing is marked for recording here (a push would be dropped and counted).
        recorder: crate::recording::queue(1).0,
    };
    Ok((Worker::new(init), cmd_tx, fwd_tx, ev_rx))
}
