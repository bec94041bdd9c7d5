//! Media threads: many peers per thread on one mio poll, with a timer heap.
//!
//! # Design
//!
//! * **One `Rtc` and one UDP socket per peer**, both owned by one media thread for the peer's life. The hub's SFU
//!   routes by source address, so every peer needs its own; the sockets are spread over many loopback source
//!   addresses by the caller.
//! * **Counting, not decrypting.** Once a peer is connected, an SRTP RTP datagram (RFC 7983 first byte 128..=191,
//!   not an RTCP packet type) is counted by its clear header: SSRC and sequence number, per stream (a listener has
//!   one stream per downstream slot, at most [`MAX_STREAMS`]). Loss is the gap between the extended sequence
//!   numbers seen and the packets counted, from the stream's first packet on. STUN, DTLS and SRTCP go to the
//!   `Rtc`, so ICE consent, RTCP and renegotiation keep working. A **sampled** peer also hands its RTP to its `Rtc`
//!   (which decrypts it) and checks each frame: the speaker's marker gives the end-to-end delay, libopus the tone.
//! * **Reading.** `recvmmsg` up to [`BATCH`] datagrams per call, so a readable socket costs one system call per
//!   batch (not one more for `EAGAIN`: a short batch means the socket was drained, and mio's edge-triggered epoll
//!   reports it again when the next datagram arrives). Buffers are allocated once per thread; counting allocates
//!   nothing.
//! * **One socket for a thread's counting listeners** (against a loopback hub). A ticked thread then binds one
//!   UDP socket on `0.0.0.0` and gives each of its counting listeners a loopback address of its own on that port
//!   (`127.2.x.y`, see [`mux_ip`]): the hub still sees one address per peer, but the thread reads all of them
//!   with `recvmmsg` batches of [`MUX_BATCH`] from one queue, telling them apart by the destination address
//!   (`IP_PKTINFO`), and sends from each listener's address the same way. With a socket per listener a ticked
//!   turn costs an epoll event and a `recvmmsg` for one or two datagrams per listener; with the shared one, a
//!   system call per 64 datagrams and no epoll event per listener, so the generator leaves the cores to the hub
//!   it measures. Against a remote hub (one local address) every peer keeps its own socket.
//! * **Ticked or precise.** A *ticked* thread sleeps `tick` between polls and then polls without waiting: each
//!   turn reads everything that arrived meanwhile, and the hub's sends never wake a sleeping reader (on loopback the
//!   receiver's wake-up would run on the sender's core). Phase times are then up to one tick late. A *precise*
//!   thread blocks in epoll until a datagram or its next timer: it hosts the speakers and the sampled listeners, so
//!   send and receive times are exact to the scheduler.
//! * **Timers.** A binary heap of `(deadline, session)`; each peer remembers its current deadline and stale heap
//!   entries are skipped when popped, so a turn touches only the peers that are due.
//! * **Commands** come through a bounded channel and a mio waker: a new peer, its removal (a leave, a dropped
//!   connection), an SFU offer to answer, and the publish/unpublish steps of a promoted listener.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Event, Input, Output, Rtc};
use tokio::sync::oneshot;

use crate::Progress;
use crate::audio::{Check, Tone};

/// The waker's token (sessions are numbered from 0).
pub(crate) const WAKER: Token = Token(usize::MAX);
/// Datagrams read per `recvmmsg`.
const BATCH: usize = 8;
/// Datagrams read per `recvmmsg` from a thread's shared socket.
const MUX_BATCH: usize = 64;
/// The shared socket's receive buffer: a tick of 300,000 datagrams/s (about 1 KiB each in the kernel's count)
/// fits with room to spare.
const MUX_RCVBUF: usize = 32 << 20;
/// The shared socket's token.
const MUX: Token = Token(usize::MAX - 1);
/// Downstream streams (slots) tracked per peer.
pub(crate) const MAX_STREAMS: usize = 8;
/// Commands queued per thread.
pub(crate) const COMMANDS: usize = 4096;
/// Delay histogram: 100 µs buckets up to 10 s, then one overflow bucket.
pub(crate) const DELAY_BUCKET_US: u64 = 100;
pub(crate) const DELAY_BUCKETS: usize = 100_000;

/// A negotiated peer handed to a media thread.
pub(crate) struct Peer {
    pub(crate) session: usize,
    pub(crate) rtc: Rtc,
    pub(crate) socket: PeerSocket,
    pub(crate) started: Instant,
    /// Send the tone on this m-line (a speaker).
    pub(crate) send: Option<Mid>,
    /// Decrypt and check what it receives.
    pub(crate) sample: bool,
}

/// Where a peer's datagrams go through.
pub(crate) enum PeerSocket {
    /// A socket of its own.
    Own(UdpSocket),
    /// The thread's shared socket ([`Handle::mux`]), from and to this address of the peer's own.
    Shared(SocketAddr),
}

/// The address of counting listener `id` on a thread's shared socket: 127.2.0.1 on, 250 per /24, so no address
/// ends in 0 or 255.
pub(crate) fn mux_ip(id: usize) -> Ipv4Addr {
    let (hi, k) = (id / 62_500, id % 62_500);
    Ipv4Addr::new(127, (2 + hi).min(254) as u8, (k / 250) as u8, (k % 250 + 1) as u8)
}

/// What the signaling side asks a media thread.
pub(crate) enum Cmd {
    Add(Box<Peer>),
    /// The session left or dropped its connection: close its peer, keep its report.
    Remove(usize),
    /// The SFU's own offer: answer it.
    Offer {
        session: usize,
        sdp: String,
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// Add a `sendonly` m-line to publish on: the offer to send.
    Publish {
        session: usize,
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// The SFU's answer to that offer; the tone starts when the m-line can send.
    Answer {
        session: usize,
        sdp: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Stop sending (moved to the audience).
    Unpublish(usize),
}

/// A handle on a media thread.
#[derive(Clone)]
pub(crate) struct Handle {
    pub(crate) tx: mpsc::SyncSender<Cmd>,
    pub(crate) waker: Arc<Waker>,
    /// The port of the thread's shared socket, when it has one.
    pub(crate) mux: Option<u16>,
}

impl Handle {
    /// Queues a command without blocking; a full queue is an error.
    pub(crate) fn send(&self, cmd: Cmd) -> anyhow::Result<()> {
        self.tx.try_send(cmd).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => anyhow::anyhow!("media thread queue full"),
            mpsc::TrySendError::Disconnected(_) => anyhow::anyhow!("media thread gone"),
        })?;
        let _ = self.waker.wake();
        Ok(())
    }
}

/// A media thread's outcome for one session.
#[derive(Debug, Default, Clone)]
pub(crate) struct MediaReport {
    pub(crate) connected: Option<Duration>,
    pub(crate) first_audio: Option<Duration>,
    pub(crate) packets: u64,
    pub(crate) lost: u64,
    /// Frames sent (speakers and promoted listeners).
    pub(crate) sent: u64,
    /// SFU offers answered.
    pub(crate) offers: u64,
    pub(crate) error: Option<String>,
}

/// A media thread's outcome.
#[derive(Default)]
pub(crate) struct ThreadReport {
    pub(crate) sessions: HashMap<usize, MediaReport>,
    /// Sampled (decrypting) peers hosted.
    pub(crate) sampled: usize,
    /// End-to-end delay histogram of the sampled listeners (see [`DELAY_BUCKET_US`]).
    pub(crate) delay: Vec<u64>,
    pub(crate) frames_marked: u64,
    /// Speaker frames the sampled listeners never got (by the marker's frame number).
    pub(crate) frames_missing: u64,
    pub(crate) decoded: u64,
    pub(crate) tone: u64,
    pub(crate) bad: u64,
}

/// RTP sequence tracking of one stream: extended first and highest sequence numbers.
#[derive(Debug, Default, Clone, Copy)]
struct Seq {
    ssrc: u32,
    first: u64,
    max: u64,
    packets: u64,
}

impl Seq {
    fn start(ssrc: u32, seq: u16) -> Self {
        let e = u64::from(seq) + (1 << 16);
        Self { ssrc, first: e, max: e, packets: 1 }
    }

    fn see(&mut self, seq: u16) {
        self.packets += 1;
        // Extend against the highest seen: the nearest value with these low 16 bits.
        let base = self.max & !0xffff;
        let mut best = self.max;
        let mut dist = u64::MAX;
        for b in [base.wrapping_sub(1 << 16), base, base + (1 << 16)] {
            let e = b.wrapping_add(u64::from(seq));
            if e.abs_diff(self.max) < dist {
                dist = e.abs_diff(self.max);
                best = e;
            }
        }
        self.max = self.max.max(best);
    }

    fn lost(&self) -> u64 {
        (self.max - self.first + 1).saturating_sub(self.packets)
    }
}

struct Live {
    rtc: Rtc,
    /// `None`: the thread's shared socket.
    socket: Option<mio::net::UdpSocket>,
    local: SocketAddr,
    session: usize,
    started: Instant,
    connected: bool,
    /// The deadline last asked for by the `Rtc` (or the tone), as pushed on the heap.
    next: Instant,
    streams: [Seq; MAX_STREAMS],
    nstreams: usize,
    report: MediaReport,
    /// The m-line and tone of a sender.
    tone: Option<(Mid, Tone, Instant)>,
    /// A promoted listener's offer awaiting the SFU's answer.
    pending: Option<(SdpPendingOffer, Mid)>,
    check: Option<Box<Check>>,
}

impl Live {
    fn count(&mut self, d: &[u8], now: Instant, progress: &Progress) {
        if self.report.packets == 0 {
            self.report.first_audio = Some(now.duration_since(self.started));
            progress.reached[4].fetch_add(1, Ordering::Relaxed);
        }
        self.report.packets += 1;
        let ssrc = u32::from_be_bytes([d[8], d[9], d[10], d[11]]);
        let seq = u16::from_be_bytes([d[2], d[3]]);
        if let Some(s) = self.streams[..self.nstreams].iter_mut().find(|s| s.ssrc == ssrc) {
            s.see(seq);
        } else if self.nstreams < MAX_STREAMS {
            self.streams[self.nstreams] = Seq::start(ssrc, seq);
            self.nstreams += 1;
        }
    }

    fn finish(mut self) -> MediaReport {
        self.report.lost = self.streams[..self.nstreams].iter().map(Seq::lost).sum();
        self.report
    }
}

/// The shared parts of a thread's context.
pub(crate) struct Shared {
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) progress: Arc<Progress>,
    /// The run's clock origin: marker times are µs since it.
    pub(crate) base: Instant,
}

/// Starts a media thread; `tick` is `None` for a precise one. `mux`: give it a shared socket for its counting
/// listeners (against a loopback hub).
pub(crate) fn spawn(
    name: String,
    tick: Option<Duration>,
    shared: Shared,
    mux: bool,
) -> anyhow::Result<(Handle, std::thread::JoinHandle<ThreadReport>)> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    // The socket here, registered, so a failure is the caller's; its `recvmmsg` headers on the thread (they are
    // not `Send`).
    let mux = if mux { Some(Mux::socket(&poll)?) } else { None };
    let port = mux.as_ref().map(|(_, port)| *port);
    let mux = mux.map(|(socket, _)| socket);
    let (tx, rx) = mpsc::sync_channel(COMMANDS);
    let handle =
        std::thread::Builder::new().name(name).spawn(move || Thread::new(poll, rx, tick, shared, mux).run())?;
    Ok((Handle { tx, waker, mux: port }, handle))
}

/// A thread's shared socket and what it needs to read it.
struct Mux {
    socket: mio::net::UdpSocket,
    /// Listener address (the datagram's destination) → session.
    by_ip: HashMap<Ipv4Addr, usize>,
    hdrs: MultiHeaders<SockaddrStorage>,
    bufs: Box<[[u8; 2048]; MUX_BATCH]>,
    /// Datagrams of a batch for a peer's `Rtc` (STUN, DTLS, RTCP, a sampled peer's RTP): handled after the batch.
    control: Vec<(usize, SocketAddr, Vec<u8>)>,
}

impl Mux {
    /// The shared socket, bound on all addresses (so on every 127/8 address) with a port of its own and registered
    /// with `poll`, and its port.
    fn socket(poll: &Poll) -> anyhow::Result<(mio::net::UdpSocket, u16)> {
        use nix::sys::socket::{setsockopt, sockopt};
        let std = UdpSocket::bind("0.0.0.0:0")?;
        std.set_nonblocking(true)?;
        setsockopt(&std, sockopt::Ipv4PacketInfo, &true)?;
        // Above `rmem_max` only with CAP_NET_ADMIN; otherwise the most the system allows.
        if setsockopt(&std, sockopt::RcvBufForce, &MUX_RCVBUF).is_err() {
            let _ = setsockopt(&std, sockopt::RcvBuf, &MUX_RCVBUF);
        }
        let port = std.local_addr()?.port();
        let mut socket = mio::net::UdpSocket::from_std(std);
        poll.registry().register(&mut socket, MUX, Interest::READABLE)?;
        Ok((socket, port))
    }

    fn new(socket: mio::net::UdpSocket) -> Self {
        Self {
            socket,
            by_ip: HashMap::new(),
            hdrs: MultiHeaders::preallocate(MUX_BATCH, Some(nix::cmsg_space!(nix::libc::in_pktinfo))),
            bufs: Box::new([[0; 2048]; MUX_BATCH]),
            control: Vec::new(),
        }
    }

    /// Sends `data` from `from` (one of the thread's listener addresses) to `to`.
    fn send(&self, from: SocketAddr, to: SocketAddr, data: &[u8]) {
        use nix::sys::socket::{ControlMessage, SockaddrIn, sendmsg};
        let (IpAddr::V4(src), SocketAddr::V4(to)) = (from.ip(), to) else { return };
        let info = nix::libc::in_pktinfo {
            ipi_ifindex: 0,
            ipi_spec_dst: nix::libc::in_addr { s_addr: u32::from(src).to_be() },
            ipi_addr: nix::libc::in_addr { s_addr: 0 },
        };
        let iov = [std::io::IoSlice::new(data)];
        let _ = sendmsg(
            self.socket.as_raw_fd(),
            &iov,
            &[ControlMessage::Ipv4PacketInfo(&info)],
            MsgFlags::MSG_DONTWAIT,
            Some(&SockaddrIn::from(to)),
        );
    }
}

struct Thread {
    poll: Poll,
    rx: mpsc::Receiver<Cmd>,
    tick: Option<Duration>,
    shared: Shared,
    live: HashMap<usize, Box<Live>>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    report: ThreadReport,
    hdrs: MultiHeaders<SockaddrStorage>,
    bufs: Box<[[u8; 2048]; BATCH]>,
    mux: Option<Mux>,
}

impl Thread {
    fn new(
        poll: Poll,
        rx: mpsc::Receiver<Cmd>,
        tick: Option<Duration>,
        shared: Shared,
        mux: Option<mio::net::UdpSocket>,
    ) -> Self {
        Self {
            poll,
            rx,
            tick,
            shared,
            live: HashMap::new(),
            timers: BinaryHeap::new(),
            report: ThreadReport { delay: vec![0; DELAY_BUCKETS + 1], ..ThreadReport::default() },
            hdrs: MultiHeaders::preallocate(BATCH, None),
            bufs: Box::new([[0; 2048]; BATCH]),
            mux: mux.map(Mux::new),
        }
    }

    fn run(mut self) -> ThreadReport {
        let mut events = Events::with_capacity(4096);
        while !self.shared.stop.load(Ordering::Relaxed) {
            let wait = match self.tick {
                Some(tick) => {
                    std::thread::sleep(tick);
                    Duration::ZERO
                }
                None => {
                    let due = self.timers.peek().map_or(Instant::now() + Duration::from_millis(50), |t| t.0.0);
                    due.saturating_duration_since(Instant::now()).min(Duration::from_millis(50))
                }
            };
            let _ = self.poll.poll(&mut events, Some(wait));
            while let Ok(cmd) = self.rx.try_recv() {
                self.command(cmd);
            }
            for ev in &events {
                match ev.token() {
                    WAKER => {}
                    MUX => self.readable_mux(),
                    t => self.readable(t.0),
                }
            }
            self.timers_due();
        }
        let mut report = self.report;
        for (session, l) in self.live {
            report.sessions.insert(session, l.finish());
        }
        report
    }

    fn command(&mut self, cmd: Cmd) {
        let now = Instant::now();
        match cmd {
            Cmd::Add(peer) => {
                let Peer { session, rtc, socket, started, send, sample } = *peer;
                let (socket, local) = match socket {
                    PeerSocket::Own(socket) => {
                        let Ok(local) = socket.local_addr() else { return };
                        let mut socket = mio::net::UdpSocket::from_std(socket);
                        if self.poll.registry().register(&mut socket, Token(session), Interest::READABLE).is_err() {
                            return;
                        }
                        (Some(socket), local)
                    }
                    PeerSocket::Shared(local) => {
                        let (Some(mux), IpAddr::V4(ip)) = (self.mux.as_mut(), local.ip()) else { return };
                        mux.by_ip.insert(ip, session);
                        (None, local)
                    }
                };
                let tone = send.and_then(|mid| Tone::new().ok().map(|t| (mid, t, now)));
                let check = if sample { Check::new().ok().map(Box::new) } else { None };
                self.report.sampled += usize::from(check.is_some());
                let mut l = Box::new(Live {
                    rtc,
                    socket,
                    local,
                    session,
                    started,
                    connected: false,
                    next: now,
                    streams: [Seq::default(); MAX_STREAMS],
                    nstreams: 0,
                    report: MediaReport::default(),
                    tone,
                    pending: None,
                    check,
                });
                self.drive(&mut l, now);
                self.live.insert(session, l);
            }
            Cmd::Remove(session) => {
                if let Some(mut l) = self.live.remove(&session) {
                    match (l.socket.as_mut(), self.mux.as_mut(), l.local.ip()) {
                        (Some(socket), _, _) => {
                            let _ = self.poll.registry().deregister(socket);
                        }
                        (None, Some(mux), IpAddr::V4(ip)) => {
                            mux.by_ip.remove(&ip);
                        }
                        _ => {}
                    }
                    self.report.sessions.insert(session, l.finish());
                }
            }
            Cmd::Offer { session, sdp, reply } => {
                let Some(mut l) = self.live.remove(&session) else {
                    let _ = reply.send(Err("no such peer".into()));
                    return;
                };
                let answer = SdpOffer::from_sdp_string(&sdp)
                    .map_err(|e| format!("the SFU's offer does not parse: {e}"))
                    .and_then(|o| l.rtc.sdp_api().accept_offer(o).map_err(|e| format!("offer refused: {e}")))
                    .map(|a| a.to_sdp_string());
                if answer.is_ok() {
                    l.report.offers += 1;
                    self.shared.progress.offers.fetch_add(1, Ordering::Relaxed);
                }
                let _ = reply.send(answer);
                self.drive(&mut l, now);
                self.live.insert(session, l);
            }
            Cmd::Publish { session, reply } => {
                let Some(l) = self.live.get_mut(&session) else {
                    let _ = reply.send(Err("no such peer".into()));
                    return;
                };
                let mut api = l.rtc.sdp_api();
                let mid = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
                match api.apply() {
                    Some((offer, pending)) => {
                        l.pending = Some((pending, mid));
                        let _ = reply.send(Ok(offer.to_sdp_string()));
                    }
                    None => {
                        let _ = reply.send(Err("no offer to make".into()));
                    }
                }
            }
            Cmd::Answer { session, sdp, reply } => {
                let Some(mut l) = self.live.remove(&session) else {
                    let _ = reply.send(Err("no such peer".into()));
                    return;
                };
                let r = match l.pending.take() {
                    None => Err("no pending offer".to_owned()),
                    Some((pending, mid)) => SdpAnswer::from_sdp_string(&sdp)
                        .map_err(|e| format!("the SFU's answer does not parse: {e}"))
                        .and_then(|a| {
                            l.rtc.sdp_api().accept_answer(pending, a).map_err(|e| format!("answer refused: {e}"))
                        })
                        .and_then(|()| Tone::new().map(|t| l.tone = Some((mid, t, now))).map_err(|e| format!("{e:#}"))),
                };
                let _ = reply.send(r);
                self.drive(&mut l, now);
                self.live.insert(session, l);
            }
            Cmd::Unpublish(session) => {
                if let Some(l) = self.live.get_mut(&session) {
                    l.tone = None;
                }
            }
        }
    }

    /// Reads the shared socket until it is drained: counted datagrams are counted in place, the rest handed to
    /// their peers' `Rtc` after each batch.
    fn readable_mux(&mut self) {
        let Some(mut mux) = self.mux.take() else { return };
        let fd = mux.socket.as_raw_fd();
        loop {
            let mut counted = 0u64;
            let n = {
                let Mux { hdrs, bufs, by_ip, control, .. } = &mut mux;
                let mut iovs = bufs.each_mut().map(|b| [std::io::IoSliceMut::new(&mut b[..])]);
                let Ok(results) = recvmmsg(fd, hdrs, iovs.iter_mut(), MsgFlags::MSG_DONTWAIT, None) else { break };
                let now = Instant::now();
                let mut n = 0;
                let mut meta = [(0usize, None::<SocketAddr>, None::<usize>); MUX_BATCH];
                for m in results {
                    let to = m.cmsgs().ok().and_then(|mut c| {
                        c.find_map(|c| match c {
                            ControlMessageOwned::Ipv4PacketInfo(i) => {
                                by_ip.get(&Ipv4Addr::from(u32::from_be(i.ipi_addr.s_addr))).copied()
                            }
                            _ => None,
                        })
                    });
                    meta[n] = (m.bytes, m.address.and_then(to_std), to);
                    n += 1;
                }
                for (i, &(len, from, session)) in meta[..n].iter().enumerate() {
                    let (Some(session), Some(from)) = (session, from) else { continue };
                    let Some(l) = self.live.get_mut(&session) else { continue };
                    let d = &bufs[i][..len];
                    let rtp = len >= 12 && (128..=191).contains(&d[0]) && !(192..=223).contains(&d[1]);
                    if l.connected && rtp && l.check.is_none() {
                        l.count(d, now, &self.shared.progress);
                        counted += 1;
                    } else {
                        control.push((session, from, d.to_vec()));
                    }
                }
                n
            };
            self.shared.progress.packets.fetch_add(counted, Ordering::Relaxed);
            let control = std::mem::take(&mut mux.control);
            self.mux = Some(mux);
            let now = Instant::now();
            for (session, from, d) in &control {
                let Some(mut l) = self.live.remove(session) else { continue };
                if let Ok(r) = Receive::new(Protocol::Udp, *from, l.local, d) {
                    let _ = l.rtc.handle_input(Input::Receive(now, r));
                }
                self.drive(&mut l, now);
                self.live.insert(*session, l);
            }
            let Some(m) = self.mux.take() else { return };
            mux = m;
            mux.control = control;
            mux.control.clear();
            if n < MUX_BATCH {
                break;
            }
        }
        self.mux = Some(mux);
    }

    /// Reads a readable socket until it is drained.
    fn readable(&mut self, session: usize) {
        let Some(mut l) = self.live.remove(&session) else { return };
        let Some(fd) = l.socket.as_ref().map(|s| s.as_raw_fd()) else {
            self.live.insert(session, l);
            return;
        };
        let mut lens = [(0usize, None::<SocketAddr>); BATCH];
        loop {
            let n = {
                let mut iovs = self.bufs.each_mut().map(|b| [std::io::IoSliceMut::new(&mut b[..])]);
                match recvmmsg(fd, &mut self.hdrs, iovs.iter_mut(), MsgFlags::MSG_DONTWAIT, None) {
                    Ok(results) => {
                        let mut n = 0;
                        for m in results {
                            lens[n] = (m.bytes, m.address.and_then(to_std));
                            n += 1;
                        }
                        n
                    }
                    Err(_) => 0,
                }
            };
            let now = Instant::now();
            for (i, &(len, from)) in lens[..n].iter().enumerate() {
                let d = &self.bufs[i][..len];
                // SRTP RTP (RFC 7983: 128..=191; RTCP's packet types 192..=223 in the second byte): counted.
                let rtp = len >= 12 && (128..=191).contains(&d[0]) && !(192..=223).contains(&d[1]);
                if l.connected && rtp {
                    l.count(d, now, &self.shared.progress);
                    self.shared.progress.packets.fetch_add(1, Ordering::Relaxed);
                    if l.check.is_none() {
                        continue;
                    }
                }
                let Some(from) = from else { continue };
                if let Ok(r) = Receive::new(Protocol::Udp, from, l.local, d) {
                    let _ = l.rtc.handle_input(Input::Receive(now, r));
                }
                self.drive(&mut l, now);
            }
            if n < BATCH {
                break;
            }
        }
        self.live.insert(session, l);
    }

    fn timers_due(&mut self) {
        let now = Instant::now();
        while let Some(&Reverse((t, session))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            let Some(mut l) = self.live.remove(&session) else { continue };
            if l.next == t {
                // Popped: whatever the `Rtc` asks next is pushed anew.
                l.next = now + Duration::from_secs(365 * 86_400);
                self.speak(&mut l, now);
                let _ = l.rtc.handle_input(Input::Timeout(now));
                self.drive(&mut l, now);
            }
            self.live.insert(session, l);
        }
    }

    /// Sends a sender's due frames.
    fn speak(&mut self, l: &mut Live, now: Instant) {
        let Some((mid, tone, next)) = l.tone.as_mut() else { return };
        if !l.connected {
            *next = now + Duration::from_millis(20);
            return;
        }
        let mut wrote = false;
        while *next <= now {
            let sent_us = now.duration_since(self.shared.base).as_micros() as u64;
            let Ok(data) = tone.next_frame(sent_us) else { return };
            let Some(w) = l.rtc.writer(*mid) else { return };
            let Some(pt) = w.payload_params().find(|p| p.spec().codec == Codec::Opus).map(|p| p.pt()) else {
                return;
            };
            let t = MediaTime::new((tone.frame - 1) * crate::audio::FRAME as u64, Frequency::FORTY_EIGHT_KHZ);
            if w.audio_level(-20, true).write(pt, now, t, data).is_ok() {
                l.report.sent += 1;
                wrote = true;
            }
            *next += Duration::from_millis(20);
            // A stalled thread skips ahead rather than bursting.
            if now.duration_since(*next) > Duration::from_millis(200) {
                *next = now;
            }
        }
        if wrote {
            // str0m's pacer refreshes its queue state only on timeouts: send now, not at the next timer.
            let _ = l.rtc.handle_input(Input::Timeout(now));
        }
    }

    /// Drives `l`'s `Rtc` until it wants to wait, and keeps its timer.
    fn drive(&mut self, l: &mut Live, now: Instant) {
        let next = loop {
            match l.rtc.poll_output() {
                Ok(Output::Timeout(t)) => break t,
                Ok(Output::Transmit(t)) => match (&l.socket, &self.mux) {
                    (Some(socket), _) => {
                        let _ = socket.send_to(&t.contents, t.destination);
                    }
                    (None, Some(mux)) => mux.send(l.local, t.destination, &t.contents),
                    (None, None) => {}
                },
                Ok(Output::Event(Event::Connected)) => {
                    if !l.connected {
                        l.connected = true;
                        l.report.connected = Some(now.duration_since(l.started));
                        self.shared.progress.reached[3].fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(Output::Event(Event::MediaData(m))) => self.sampled(l, &m.data, now),
                Ok(Output::Event(_)) => {}
                Err(e) => {
                    l.report.error.get_or_insert_with(|| format!("rtc: {e}"));
                    break now + Duration::from_secs(3600);
                }
            }
        };
        let next = match &l.tone {
            Some((_, _, t)) if *t < next => *t,
            _ => next,
        };
        // Never due again in this turn: a peer asking for "now" again waits a little, so a turn ends.
        let next = next.max(now + Duration::from_micros(500));
        if next != l.next {
            l.next = next;
            self.timers.push(Reverse((next, l.session)));
        }
    }

    /// A decrypted frame of a sampled listener: its delay and its audio.
    fn sampled(&mut self, l: &mut Live, data: &[u8], now: Instant) {
        let Some(check) = l.check.as_mut() else { return };
        let r = &mut self.report;
        match crate::audio::marker(data) {
            Some((frame, sent_us)) => {
                let missing = check.frames_missing;
                check.frame(frame);
                r.frames_missing += check.frames_missing - missing;
                let at = now.duration_since(self.shared.base).as_micros() as u64;
                let bucket = (at.saturating_sub(sent_us) / DELAY_BUCKET_US).min(DELAY_BUCKETS as u64) as usize;
                r.delay[bucket] += 1;
                r.frames_marked += 1;
            }
            None => r.bad += 1,
        }
        let (decoded, tone, bad) = (check.decoded, check.tone, check.bad);
        check.check(data);
        r.decoded += check.decoded - decoded;
        r.tone += check.tone - tone;
        r.bad += check.bad - bad;
    }
}

fn to_std(a: SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_addresses_on_a_shared_socket_are_distinct_loopback_hosts() {
        let mut seen = std::collections::HashSet::new();
        for id in 0..200_000 {
            let ip = mux_ip(id);
            assert!(ip.is_loopback(), "{id}: {ip}");
            let [_, b, _, d] = ip.octets();
            assert!(b >= 2 && d != 0 && d != 255, "{id}: {ip}");
            assert!(seen.insert(ip), "{id}: {ip} twice");
        }
    }

    #[test]
    fn sequence_numbers_wrap_and_gaps_count_as_loss() {
        let mut s = Seq::start(1, 65_530);
        for seq in [65_531u16, 65_532, 65_535, 0, 1, 3] {
            s.see(seq);
        }
        // 65530..=3 is 10 numbers, 7 seen.
        assert_eq!(s.lost(), 3);
        // A late duplicate of an old number does not move the highest.
        s.see(65_533);
        assert_eq!(s.max, s.first + 9);
    }
}
