// WebRTC with the hub's SFU (PROTOCOL.md, "Media"): one RTCPeerConnection per media epoch (normally the whole time in
// the room), the client offers with `media_offer`, answers the SFU's `media_offer` events with `media_answer`,
// publishes the microphone while the participant is on stage, and plays every downstream slot in an <audio> element.
// When the room's media moves to another hub (a new media epoch), the peer connection is replaced by a new one, whose
// offer is sent again while the new media hub answers `unavailable` (for a moment after a move). When the device's
// network changes (`online`, `navigator.connection` `change`), or ICE stays `disconnected` past a short grace or
// fails, the same peer connection restarts ICE (`restartIce()` and a new offer): the SFU keeps the peer, its slots and
// publish permission, and learns the new address from the new checks (PROTOCOL.md, "Network changes").

import type { IceServers, MediaTrack, MediaTransportState, YourState } from "./protocol.js";

export interface MediaOptions {
  /** Set false for signaling only (no RTCPeerConnection). Default: true where WebRTC exists. */
  enabled?: boolean;
  /**
   * Your own ICE servers, used instead of the hub's. By default the peer connection uses the TURN servers the hub
   * hands out (the welcome's `ice_servers`, refreshed by `ice_servers` events); without them it needs none, since
   * the SFU offers its own address.
   */
  iceServers?: RTCIceServer[];
  /**
   * Relay candidates only (`iceTransportPolicy: "relay"`): every packet goes through a TURN server. For testing a
   * TURN deployment; without TURN servers no connection can be made. Default false.
   */
  forceRelay?: boolean;
  /** Offer only 127.0.0.1 candidates (for a hub on loopback, as in tests). Default false. */
  loopbackOnly?: boolean;
  /** Where the <audio> elements playing the room go. Default: a hidden element appended to document.body. */
  audioContainer?: HTMLElement;
  /** Microphone constraints for getUserMedia. Default `true`. */
  audio?: MediaTrackConstraints | boolean;
}

/** The media side as the application sees it. */
export interface MediaInfo {
  /** `new` until negotiated; then the SFU's `media_state` (`connected`, `disconnected`, `failed`), or `closed`. */
  state: "new" | "negotiating" | MediaTransportState | "closed";
  /** Downstream slots: whose audio each m-line carries. */
  tracks: MediaTrack[];
  /** True while the microphone is being sent (on stage). */
  publishing: boolean;
  /** The last media error, if any (a refused microphone, a failed negotiation). */
  error?: string;
  /** The room's media epoch the current peer connection was negotiated in (PROTOCOL.md, "Media" step 5). */
  epoch: number;
  /** ICE restarts of this session's peer connections so far (network changes, ICE failures; see `networkChanged`). */
  iceRestarts: number;
}

/** Inbound/outbound audio totals from getStats(), for diagnostics and tests. */
export interface MediaStats {
  connection: string | null;
  inbound: number;
  packetsReceived: number;
  packetsLost: number;
  totalAudioEnergy: number;
  audioLevel: number;
  packetsSent: number;
  bytesSent: number;
}

type Request = (type: string, fields?: Record<string, unknown>) => Promise<unknown>;

/**
 * PROTOCOL.md "Media" step 5: for a moment after the room's media moved to another hub (a `media_moved`, a reconnect,
 * a hub's death), `media_offer` may be answered `unavailable` until the new media hub is settled everywhere. An offer
 * sent within this long of a move or a reconnect is sent again while it is answered `unavailable`; at other times
 * `unavailable` means media is disabled on the hub, which retrying does not change.
 */
const SETTLING_MS = 5_000;
/** How long the same offer is sent again while it is answered `unavailable` ("about 10 s"). */
const UNAVAILABLE_RETRY_FOR_MS = 10_000;
/** The first retry of an offer answered `unavailable` waits this long, the next ones this long to twice it. */
const UNAVAILABLE_RETRY_MS = 250;

/**
 * After a media move, the old peer connection keeps playing until the new one is connected (make-before-break:
 * the draining hub forwards to old peer connections until then; closing first costs about half a second of
 * silence), or at most this long.
 */
const RETIRE_MAX_MS = 10_000;

/**
 * ICE `disconnected` (consent checks unanswered: the network changed or dropped) for this long restarts ICE: it may
 * recover by itself before (a short loss), and a restart costs a negotiation (PROTOCOL.md, "Network changes").
 */
const ICE_DISCONNECTED_GRACE_MS = 1_500;
/** After a restart, another one (ICE `failed` again, or still `disconnected`) waits this long, doubling each time. */
const ICE_RESTART_BACKOFF_MS = 1_000;
/** The longest wait between two restarts. */
const ICE_RESTART_BACKOFF_MAX_MS = 16_000;

/** `navigator.connection` where the browser has it (Chrome, Android WebView): its `change` is a network change. */
interface NetworkInformationLike {
  addEventListener(type: "change", listener: () => void): void;
  removeEventListener(type: "change", listener: () => void): void;
}

function networkInformation(): NetworkInformationLike | null {
  if (typeof navigator === "undefined") return null;
  const c = (navigator as { connection?: NetworkInformationLike }).connection;
  return c && typeof c.addEventListener === "function" ? c : null;
}

function errorCode(e: unknown): string | undefined {
  return (e as { code?: string } | null)?.code;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function errorText(e: unknown): string {
  if (e && typeof e === "object" && "message" in e) return String((e as { message: unknown }).message);
  return String(e);
}

export class MediaSession {
  private pc: RTCPeerConnection | null = null;
  private transceiver: RTCRtpTransceiver | null = null;
  private mic: MediaStreamTrack | null = null;
  private chain: Promise<void> = Promise.resolve();
  private container: HTMLElement | null = null;
  private players = new Map<string, HTMLAudioElement>();
  /** The previous media epoch's peer connection and its players, kept until the new one connects. */
  private retiring: {
    pc: RTCPeerConnection;
    players: Map<string, HTMLAudioElement>;
    timer: ReturnType<typeof setTimeout>;
  } | null = null;
  private wantPublish = false;
  /** The participant's last known `you.muted` (the microphone track is disabled while muted). */
  private muted = true;
  /** A negotiation failed because the websocket dropped. */
  private interrupted = false;
  private closed = false;
  /**
   * Bumped whenever the peer connection is replaced: queued or running steps of an older generation are dropped
   * (they belong to a dead peer connection), and the new one does not wait for them.
   */
  private generation = 0;
  /** When the room's media last moved or the websocket last reconnected (`Date.now()`; see SETTLING_MS). */
  private settlingSince = -Infinity;
  /** The hub's TURN servers with this participant's latest credentials (PROTOCOL.md, "TURN"). */
  private hubIceServers: RTCIceServer[] = [];
  /** An ICE restart is queued (not yet started): a second trigger meanwhile adds nothing. */
  private restartQueued = false;
  /** An ICE restart's negotiation has not completed (a websocket drop cut it off: `resumed` restarts again). */
  private restarting = false;
  /** When the last ICE restart started (`Date.now()`), and the wait before another after a failure. */
  private lastRestartAt = -Infinity;
  private restartBackoff = ICE_RESTART_BACKOFF_MS;
  /** The pending restart after ICE `disconnected`'s grace or a backoff. */
  private restartTimer: ReturnType<typeof setTimeout> | null = null;
  /** Listens for network changes (`online`, `navigator.connection` `change`) while the session runs. */
  private readonly onNetworkChange = () => this.networkChanged();
  private listening = false;

  readonly info: MediaInfo = { state: "new", tracks: [], publishing: false, epoch: 0, iceRestarts: 0 };

  constructor(
    private readonly request: Request,
    private readonly options: MediaOptions,
    private readonly changed: (info: MediaInfo) => void,
  ) {}

  /** The media epoch the current peer connection belongs to. */
  get epoch(): number {
    return this.info.epoch;
  }

  /**
   * Creates the peer connection and negotiates, in media epoch `epoch`; `you` decides the transceiver's direction.
   */
  start(you: YourState, epoch = 0): void {
    this.info.epoch = epoch;
    this.listenForNetworkChanges();
    this.enqueue(async () => {
      this.createPeer(you);
      await this.negotiate();
    });
    this.update(you);
  }

  /** A new session after `resumed: false`: the SFU dropped the old peer; start over (the microphone too). */
  restart(you: YourState, epoch = this.info.epoch): void {
    this.settlingSince = Date.now();
    this.dropRetiring();
    this.replacePeer(false, epoch);
    this.start(you, epoch);
  }

  /**
   * The room's media is now in epoch `epoch` (a `media_moved` event, or a snapshot's `media_epoch`). If the peer
   * connection belongs to another epoch it is going away: negotiate a new one, keeping the microphone track when
   * still on stage (role, hand and mute are server state and do not change), and close the old one once the new
   * one is connected (it may still carry audio from a draining hub meanwhile). Returns whether it did; a second
   * notice of the same epoch (the event, then a snapshot) does nothing.
   */
  moved(you: YourState, epoch: number): boolean {
    if (this.closed || epoch === this.info.epoch) return false;
    this.settlingSince = Date.now();
    this.retire();
    this.replacePeer(you.role !== "audience", epoch);
    this.start(you, epoch);
    return true;
  }

  /**
   * The hub's TURN servers and fresh credentials (a welcome's `ice_servers`, or an `ice_servers` event). The next
   * peer connection uses them, and so does the current one's next gathering (an ICE restart): they replace its ICE
   * servers with `setConfiguration`, which leaves the running connection alone. Ignored when the application gave
   * its own `iceServers`.
   */
  setIceServers(ice: IceServers | undefined): void {
    if (!ice || this.options.iceServers) return;
    this.hubIceServers = ice.servers.map((s) => ({
      urls: [...s.urls],
      username: s.username,
      credential: s.credential,
    }));
    const pc = this.pc;
    if (!pc) return;
    try {
      pc.setConfiguration({ ...pc.getConfiguration(), iceServers: this.hubIceServers });
    } catch (e) {
      console.warn("podium media: could not apply fresh ICE servers:", e);
    }
  }

  /** Follows the participant's own state: publish on stage, stop in the audience; mute the track when muted. */
  update(you: YourState): void {
    const onStage = you.role !== "audience";
    this.muted = you.muted;
    if (this.mic) this.mic.enabled = !you.muted;
    if (onStage !== this.wantPublish) {
      this.wantPublish = onStage;
      this.enqueue(() => (onStage ? this.publish() : this.unpublish()));
    }
  }

  onServerOffer(sdp: string): void {
    this.enqueue(async () => {
      const pc = this.pc;
      if (!pc) return;
      await pc.setRemoteDescription({ type: "offer", sdp });
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      await this.gathered();
      await this.request("media_answer", { sdp: this.filter(pc.localDescription?.sdp ?? "") });
      this.attachAll();
    });
  }

  onState(state: MediaTransportState): void {
    this.info.state = state;
    this.changed(this.info);
    // The SFU gave up on our address (PROTOCOL.md, `media_state`): restart ICE at once.
    if (state === "failed") this.restartIce();
  }

  /**
   * The device's network changed (an `online` event, a `navigator.connection` `change`; an application that knows
   * better, e.g. a native shell's reachability callback, may call it too): restart ICE now, so the SFU learns the
   * new address with a new offer instead of waiting for the old one to time out. Role, slots and the microphone
   * are kept: it is the same peer connection (PROTOCOL.md, "Network changes").
   */
  networkChanged(): void {
    this.restartIce();
  }

  /**
   * Queues an ICE restart of the current peer connection (`restartIce()` and a new `media_offer` through the usual
   * negotiation), unless one is queued already. Nothing before the first negotiation or after `close`.
   */
  private restartIce(): void {
    if (this.closed || !this.pc || this.info.state === "new" || this.restartQueued) return;
    this.clearRestartTimer();
    this.restartQueued = true;
    this.enqueue(async () => {
      this.restartQueued = false;
      const pc = this.pc;
      if (!pc) return;
      this.lastRestartAt = Date.now();
      this.info.iceRestarts += 1;
      this.restarting = true;
      pc.restartIce();
      await this.negotiate();
      this.restarting = false;
    });
  }

  /** The browser's own view of the ICE connection: `disconnected` past a grace period, or `failed`, restarts ICE. */
  private iceStateChanged(pc: RTCPeerConnection): void {
    if (pc !== this.pc || this.closed) return;
    const state = pc.iceConnectionState;
    if (state === "connected" || state === "completed") {
      this.clearRestartTimer();
      this.restartBackoff = ICE_RESTART_BACKOFF_MS;
    } else if (state === "disconnected") {
      this.scheduleRestart(ICE_DISCONNECTED_GRACE_MS);
    } else if (state === "failed") {
      this.scheduleRestart(0);
    }
  }

  /**
   * Restarts ICE after `delay` ms, and no sooner than the backoff after the last restart (which doubles each time a
   * restart is followed by another, up to ICE_RESTART_BACKOFF_MAX_MS, and resets once ICE is connected).
   */
  private scheduleRestart(delay: number): void {
    if (this.restartTimer || this.restartQueued) return;
    const sinceLast = Date.now() - this.lastRestartAt;
    let wait = delay;
    if (sinceLast < this.restartBackoff) {
      wait = Math.max(wait, this.restartBackoff - sinceLast);
      this.restartBackoff = Math.min(this.restartBackoff * 2, ICE_RESTART_BACKOFF_MAX_MS);
    }
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      const state = this.pc?.iceConnectionState;
      if (state === "disconnected" || state === "failed") this.restartIce();
    }, wait);
  }

  private clearRestartTimer(): void {
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
  }

  private listenForNetworkChanges(): void {
    if (this.listening) return;
    this.listening = true;
    if (typeof window !== "undefined" && typeof window.addEventListener === "function") {
      window.addEventListener("online", this.onNetworkChange);
    }
    networkInformation()?.addEventListener("change", this.onNetworkChange);
  }

  private stopListening(): void {
    if (!this.listening) return;
    this.listening = false;
    if (typeof window !== "undefined" && typeof window.removeEventListener === "function") {
      window.removeEventListener("online", this.onNetworkChange);
    }
    networkInformation()?.removeEventListener("change", this.onNetworkChange);
  }

  onTracks(tracks: MediaTrack[]): void {
    this.info.tracks = tracks;
    for (const t of tracks) {
      const el = this.players.get(t.mid);
      if (el) el.dataset.participant = t.participant ?? "";
    }
    this.changed(this.info);
  }

  close(): void {
    this.closed = true;
    this.stopListening();
    this.clearRestartTimer();
    this.generation += 1;
    this.teardown();
    this.info.state = "closed";
    this.info.publishing = false;
    this.changed(this.info);
  }

  async stats(): Promise<MediaStats> {
    const out: MediaStats = {
      connection: this.pc ? this.pc.connectionState : null,
      inbound: 0,
      packetsReceived: 0,
      packetsLost: 0,
      totalAudioEnergy: 0,
      audioLevel: 0,
      packetsSent: 0,
      bytesSent: 0,
    };
    if (!this.pc) return out;
    const report = await this.pc.getStats();
    report.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "audio") {
        out.inbound += 1;
        out.packetsReceived += s.packetsReceived || 0;
        out.packetsLost += s.packetsLost || 0;
        out.totalAudioEnergy += s.totalAudioEnergy || 0;
        out.audioLevel = Math.max(out.audioLevel, s.audioLevel || 0);
      } else if (s.type === "outbound-rtp" && s.kind === "audio") {
        out.packetsSent += s.packetsSent || 0;
        out.bytesSent += s.bytesSent || 0;
      }
    });
    return out;
  }

  /**
   * After the websocket resumed the session: the peer connection is kept, but a negotiation cut off by the drop, or
   * given up after `unavailable` answers, is done again.
   */
  resumed(you: YourState): void {
    this.settlingSince = Date.now();
    this.update(you);
    if (!this.interrupted) return;
    this.interrupted = false;
    this.enqueue(async () => {
      const pc = this.pc;
      if (!pc) return;
      if (pc.signalingState === "have-local-offer") await pc.setLocalDescription({ type: "rollback" });
      // An ICE restart the drop cut off (likely: a network change takes the websocket down too) restarts again, so
      // the new offer carries new credentials.
      if (this.restarting) pc.restartIce();
      await this.negotiate();
      this.restarting = false;
    });
  }

  /** Runs `step` after the steps queued before it (one negotiation at a time), unless its peer connection is gone. */
  private enqueue(step: () => Promise<void>): void {
    const gen = this.generation;
    this.chain = this.chain
      .then(() => (this.closed || gen !== this.generation ? undefined : step()))
      .catch((e) => {
        // A step of a replaced peer connection may fail on the closed connection: that is expected.
        if (this.closed || gen !== this.generation) return;
        const code = errorCode(e);
        if (code === "disconnected" || code === "timeout") {
          // The websocket dropped mid-negotiation: redo it once the session is resumed.
          this.interrupted = true;
          return;
        }
        // Media unavailable (disabled, or still moving after retrying): shown as an error, tried again after the
        // next reconnect (a media move starts over anyway).
        if (code === "unavailable") this.interrupted = true;
        this.info.error = errorText(e);
        console.warn("podium media:", e);
        this.changed(this.info);
      });
  }

  private createPeer(you: YourState): void {
    const pc = new RTCPeerConnection({
      iceServers: this.options.iceServers ?? this.hubIceServers,
      iceTransportPolicy: this.options.forceRelay ? "relay" : "all",
    });
    this.pc = pc;
    // Anyone who may ever speak offers sendrecv (silent until on stage), so promotion needs no renegotiation.
    const direction: RTCRtpTransceiverDirection = you.ceiling === "audience" ? "recvonly" : "sendrecv";
    this.transceiver = pc.addTransceiver("audio", { direction });
    pc.ontrack = (e) => this.attach(e.transceiver);
    pc.oniceconnectionstatechange = () => this.iceStateChanged(pc);
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "connected" && pc === this.pc) this.dropRetiring();
      if (pc.connectionState === "closed" || pc.connectionState === "failed") this.changed(this.info);
    };
  }

  /**
   * Sets the current peer connection aside (still playing) for `replacePeer`, which then makes a new one; it is
   * closed when the new one connects, or after RETIRE_MAX_MS. An older one still set aside is closed now.
   */
  private retire(): void {
    this.dropRetiring();
    const pc = this.pc;
    if (!pc) return;
    pc.ontrack = null;
    pc.onconnectionstatechange = null;
    pc.oniceconnectionstatechange = null;
    const timer = setTimeout(() => this.dropRetiring(), RETIRE_MAX_MS);
    this.retiring = { pc, players: this.players, timer };
    this.pc = null;
    this.transceiver = null;
    this.players = new Map();
  }

  /** Closes the peer connection set aside by `retire`, if any. */
  private dropRetiring(): void {
    const r = this.retiring;
    if (!r) return;
    this.retiring = null;
    clearTimeout(r.timer);
    r.pc.close();
    for (const el of r.players.values()) {
      el.srcObject = null;
      el.remove();
    }
  }

  /**
   * Drops the peer connection (and with `keepMic` false the microphone) and whatever is queued for it; `start` then
   * makes a new one. The new queue does not wait for a step of the old connection still awaiting the hub.
   */
  private replacePeer(keepMic: boolean, epoch: number): void {
    this.clearRestartTimer();
    this.restartQueued = false;
    this.restarting = false;
    this.restartBackoff = ICE_RESTART_BACKOFF_MS;
    const mic = keepMic ? this.mic : null;
    this.mic = null;
    this.teardown();
    this.mic = mic;
    this.generation += 1;
    this.chain = Promise.resolve();
    this.interrupted = false;
    this.info.state = "new";
    this.info.tracks = [];
    this.info.error = undefined;
    this.info.epoch = epoch;
    this.changed(this.info);
  }

  private teardown(): void {
    if (this.closed) this.dropRetiring();
    this.mic?.stop();
    this.mic = null;
    this.wantPublish = false;
    this.info.publishing = false;
    this.pc?.close();
    this.pc = null;
    this.transceiver = null;
    for (const el of this.players.values()) {
      el.srcObject = null;
      el.remove();
    }
    this.players.clear();
  }

  /**
   * Sends a client offer and applies the SFU's answer, retrying after a `conflict` (an SFU offer pending) and, right
   * after a media move or a reconnect, while it is answered `unavailable` (see `sendOffer`).
   */
  private async negotiate(): Promise<void> {
    const pc = this.pc;
    if (!pc) return;
    this.info.state = this.info.state === "new" ? "negotiating" : this.info.state;
    for (let attempt = 0; ; attempt++) {
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      await this.gathered();
      try {
        const reply = await this.sendOffer(pc, this.filter(pc.localDescription?.sdp ?? ""));
        // Replaced meanwhile (a newer media move): the new peer connection negotiates for itself.
        if (!reply || pc !== this.pc) return;
        await pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
        this.attachAll();
        this.changed(this.info);
        return;
      } catch (e) {
        if (errorCode(e) !== "conflict" || attempt >= 5) throw e;
        if (pc !== this.pc) return;
        // The SFU's own offer awaits our answer: roll back, let its event be handled, then offer again.
        await pc.setLocalDescription({ type: "rollback" });
        const retry = sleep(100 * (attempt + 1));
        this.enqueue(async () => {
          await retry;
          await this.negotiate();
        });
        return;
      }
    }
  }

  /**
   * Sends `sdp` as `media_offer` and resolves with the SFU's answer. An offer sent soon after a media move or a
   * reconnect (SETTLING_MS) that is answered `unavailable` is sent again, the same offer, after 250 ms and then every
   * 250–500 ms, until it is answered or about 10 s have passed (then the error is thrown); resolves null when the peer
   * connection was replaced or closed meanwhile (PROTOCOL.md "Media" step 5).
   */
  private async sendOffer(pc: RTCPeerConnection, sdp: string): Promise<{ sdp: string } | null> {
    const sentAt = Date.now();
    const settling = sentAt - this.settlingSince <= SETTLING_MS;
    for (let retry = 0; ; retry++) {
      try {
        return (await this.request("media_offer", { sdp })) as { sdp: string };
      } catch (e) {
        if (!settling || errorCode(e) !== "unavailable" || Date.now() - sentAt >= UNAVAILABLE_RETRY_FOR_MS) throw e;
      }
      await sleep(UNAVAILABLE_RETRY_MS * (retry === 0 ? 1 : 1 + Math.random()));
      if (pc !== this.pc) return null;
    }
  }

  private async publish(): Promise<void> {
    if (!this.pc || !this.transceiver || !this.wantPublish) return;
    const gen = this.generation;
    if (!this.mic) {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: this.options.audio ?? true });
      const track = stream.getAudioTracks()[0];
      if (!track) throw new Error("getUserMedia returned no audio track");
      if (!this.wantPublish || gen !== this.generation || this.mic) {
        track.stop();
        return;
      }
      this.mic = track;
    }
    this.mic.enabled = !this.muted;
    await this.transceiver.sender.replaceTrack(this.mic);
    if (gen !== this.generation) return;
    if (this.transceiver.direction !== "sendrecv") {
      // A listener's recvonly m-line: add the microphone with a new offer.
      this.transceiver.direction = "sendrecv";
      await this.negotiate();
    }
    this.info.publishing = true;
    this.changed(this.info);
  }

  private async unpublish(): Promise<void> {
    if (this.transceiver) await this.transceiver.sender.replaceTrack(null);
    this.mic?.stop();
    this.mic = null;
    this.info.publishing = false;
    this.changed(this.info);
  }

  private attachAll(): void {
    for (const tr of this.pc?.getTransceivers() ?? []) {
      if (tr.currentDirection && tr.currentDirection.includes("recv")) this.attach(tr);
    }
  }

  private attach(tr: RTCRtpTransceiver): void {
    const mid = tr.mid;
    if (mid === null || typeof document === "undefined") return;
    const existing = this.players.get(mid);
    if (existing) {
      const cur = existing.srcObject as MediaStream | null;
      if (cur && cur.getTracks()[0] === tr.receiver.track) return;
    }
    // Chrome decodes received audio only when something consumes it.
    const el = existing ?? document.createElement("audio");
    el.autoplay = true;
    el.dataset.mid = mid;
    el.dataset.participant = this.info.tracks.find((t) => t.mid === mid)?.participant ?? "";
    el.srcObject = new MediaStream([tr.receiver.track]);
    if (!existing) {
      this.audioContainer().appendChild(el);
      this.players.set(mid, el);
    }
    el.play().catch(() => {
      // Autoplay refused until a user gesture; the application may call room.media.resumeAudio() on a click.
    });
  }

  /** Plays the room's audio elements again (call from a click handler when the browser blocked autoplay). */
  resumeAudio(): void {
    for (const el of this.players.values()) el.play().catch(() => undefined);
  }

  private audioContainer(): HTMLElement {
    if (this.options.audioContainer) return this.options.audioContainer;
    if (!this.container) {
      this.container = document.createElement("div");
      this.container.hidden = true;
      this.container.className = "podium-audio";
      document.body.appendChild(this.container);
    }
    return this.container;
  }

  /** Waits until ICE gathering completes (at most 3 s), so the SDP carries the candidates (no trickling). */
  private gathered(): Promise<void> {
    const pc = this.pc;
    if (!pc || pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(resolve, 3000);
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") {
          clearTimeout(t);
          resolve();
        }
      });
    });
  }

  private filter(sdp: string): string {
    if (!this.options.loopbackOnly) return sdp;
    return sdp
      .split("\r\n")
      .filter((l) => !l.startsWith("a=candidate:") || l.includes(" 127.0.0.1 "))
      .join("\r\n");
  }
}
