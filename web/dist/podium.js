// sdk/src/emitter.ts
var Emitter = class {
  constructor() {
    this.listeners = /* @__PURE__ */ new Map();
  }
  /** Calls `fn` on every `event`; returns a function that unsubscribes. */
  on(event, fn) {
    let set = this.listeners.get(event);
    if (!set) {
      set = /* @__PURE__ */ new Set();
      this.listeners.set(event, set);
    }
    set.add(fn);
    return () => this.off(event, fn);
  }
  off(event, fn) {
    this.listeners.get(event)?.delete(fn);
  }
  /** Resolves with the next `event`. */
  once(event) {
    return new Promise((resolve) => {
      const off = this.on(event, (v) => {
        off();
        resolve(v);
      });
    });
  }
  emit(event, value) {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(value);
      } catch (e) {
        console.error(`podium: a "${String(event)}" listener threw`, e);
      }
    }
  }
};

// sdk/src/media.ts
var SETTLING_MS = 5e3;
var UNAVAILABLE_RETRY_FOR_MS = 1e4;
var UNAVAILABLE_RETRY_MS = 250;
var RETIRE_MAX_MS = 1e4;
var ICE_DISCONNECTED_GRACE_MS = 1500;
var ICE_RESTART_BACKOFF_MS = 1e3;
var ICE_RESTART_BACKOFF_MAX_MS = 16e3;
function networkInformation() {
  if (typeof navigator === "undefined") return null;
  const c = navigator.connection;
  return c && typeof c.addEventListener === "function" ? c : null;
}
function errorCode(e) {
  return e?.code;
}
function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
function errorText(e) {
  if (e && typeof e === "object" && "message" in e) return String(e.message);
  return String(e);
}
var MediaSession = class {
  constructor(request, options, changed) {
    this.request = request;
    this.options = options;
    this.changed = changed;
    this.pc = null;
    this.transceiver = null;
    this.mic = null;
    this.chain = Promise.resolve();
    this.container = null;
    this.players = /* @__PURE__ */ new Map();
    /** The previous media epoch's peer connection and its players, kept until the new one connects. */
    this.retiring = null;
    this.wantPublish = false;
    /** The participant's last known `you.muted` (the microphone track is disabled while muted). */
    this.muted = true;
    /** A negotiation failed because the websocket dropped. */
    this.interrupted = false;
    this.closed = false;
    /**
     * Bumped whenever the peer connection is replaced: queued or running steps of an older generation are dropped
     * (they belong to a dead peer connection), and the new one does not wait for them.
     */
    this.generation = 0;
    /** When the room's media last moved or the websocket last reconnected (`Date.now()`; see SETTLING_MS). */
    this.settlingSince = -Infinity;
    /** The hub's TURN servers with this participant's latest credentials (PROTOCOL.md, "TURN"). */
    this.hubIceServers = [];
    /** An ICE restart is queued (not yet started): a second trigger meanwhile adds nothing. */
    this.restartQueued = false;
    /** An ICE restart's negotiation has not completed (a websocket drop cut it off: `resumed` restarts again). */
    this.restarting = false;
    /** When the last ICE restart started (`Date.now()`), and the wait before another after a failure. */
    this.lastRestartAt = -Infinity;
    this.restartBackoff = ICE_RESTART_BACKOFF_MS;
    /** The pending restart after ICE `disconnected`'s grace or a backoff. */
    this.restartTimer = null;
    /** Listens for network changes (`online`, `navigator.connection` `change`) while the session runs. */
    this.onNetworkChange = () => this.networkChanged();
    this.listening = false;
    this.info = { state: "new", tracks: [], publishing: false, epoch: 0, iceRestarts: 0 };
  }
  /** The media epoch the current peer connection belongs to. */
  get epoch() {
    return this.info.epoch;
  }
  /**
   * Creates the peer connection and negotiates, in media epoch `epoch`; `you` decides the transceiver's direction.
   */
  start(you, epoch = 0) {
    this.info.epoch = epoch;
    this.listenForNetworkChanges();
    this.enqueue(async () => {
      this.createPeer(you);
      await this.negotiate();
    });
    this.update(you);
  }
  /** A new session after `resumed: false`: the SFU dropped the old peer; start over (the microphone too). */
  restart(you, epoch = this.info.epoch) {
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
  moved(you, epoch) {
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
  setIceServers(ice) {
    if (!ice || this.options.iceServers) return;
    this.hubIceServers = ice.servers.map((s) => ({
      urls: [...s.urls],
      username: s.username,
      credential: s.credential
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
  update(you) {
    const onStage = you.role !== "audience";
    this.muted = you.muted;
    if (this.mic) this.mic.enabled = !you.muted;
    if (onStage !== this.wantPublish) {
      this.wantPublish = onStage;
      this.enqueue(() => onStage ? this.publish() : this.unpublish());
    }
  }
  onServerOffer(sdp) {
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
  onState(state) {
    this.info.state = state;
    this.changed(this.info);
    if (state === "failed") this.restartIce();
  }
  /**
   * The device's network changed (an `online` event, a `navigator.connection` `change`; an application that knows
   * better, e.g. a native shell's reachability callback, may call it too): restart ICE now, so the SFU learns the
   * new address with a new offer instead of waiting for the old one to time out. Role, slots and the microphone
   * are kept: it is the same peer connection (PROTOCOL.md, "Network changes").
   */
  networkChanged() {
    this.restartIce();
  }
  /**
   * Queues an ICE restart of the current peer connection (`restartIce()` and a new `media_offer` through the usual
   * negotiation), unless one is queued already. Nothing before the first negotiation or after `close`.
   */
  restartIce() {
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
  iceStateChanged(pc) {
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
  scheduleRestart(delay) {
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
  clearRestartTimer() {
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
  }
  listenForNetworkChanges() {
    if (this.listening) return;
    this.listening = true;
    if (typeof window !== "undefined" && typeof window.addEventListener === "function") {
      window.addEventListener("online", this.onNetworkChange);
    }
    networkInformation()?.addEventListener("change", this.onNetworkChange);
  }
  stopListening() {
    if (!this.listening) return;
    this.listening = false;
    if (typeof window !== "undefined" && typeof window.removeEventListener === "function") {
      window.removeEventListener("online", this.onNetworkChange);
    }
    networkInformation()?.removeEventListener("change", this.onNetworkChange);
  }
  onTracks(tracks) {
    this.info.tracks = tracks;
    for (const t of tracks) {
      const el = this.players.get(t.mid);
      if (el) el.dataset.participant = t.participant ?? "";
    }
    this.changed(this.info);
  }
  close() {
    this.closed = true;
    this.stopListening();
    this.clearRestartTimer();
    this.generation += 1;
    this.teardown();
    this.info.state = "closed";
    this.info.publishing = false;
    this.changed(this.info);
  }
  async stats() {
    const out = {
      connection: this.pc ? this.pc.connectionState : null,
      inbound: 0,
      packetsReceived: 0,
      packetsLost: 0,
      totalAudioEnergy: 0,
      audioLevel: 0,
      packetsSent: 0,
      bytesSent: 0
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
  resumed(you) {
    this.settlingSince = Date.now();
    this.update(you);
    if (!this.interrupted) return;
    this.interrupted = false;
    this.enqueue(async () => {
      const pc = this.pc;
      if (!pc) return;
      if (pc.signalingState === "have-local-offer") await pc.setLocalDescription({ type: "rollback" });
      if (this.restarting) pc.restartIce();
      await this.negotiate();
      this.restarting = false;
    });
  }
  /** Runs `step` after the steps queued before it (one negotiation at a time), unless its peer connection is gone. */
  enqueue(step) {
    const gen = this.generation;
    this.chain = this.chain.then(() => this.closed || gen !== this.generation ? void 0 : step()).catch((e) => {
      if (this.closed || gen !== this.generation) return;
      const code = errorCode(e);
      if (code === "disconnected" || code === "timeout") {
        this.interrupted = true;
        return;
      }
      if (code === "unavailable") this.interrupted = true;
      this.info.error = errorText(e);
      console.warn("podium media:", e);
      this.changed(this.info);
    });
  }
  createPeer(you) {
    const pc = new RTCPeerConnection({
      iceServers: this.options.iceServers ?? this.hubIceServers,
      iceTransportPolicy: this.options.forceRelay ? "relay" : "all"
    });
    this.pc = pc;
    const direction = you.ceiling === "audience" ? "recvonly" : "sendrecv";
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
  retire() {
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
    this.players = /* @__PURE__ */ new Map();
  }
  /** Closes the peer connection set aside by `retire`, if any. */
  dropRetiring() {
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
  replacePeer(keepMic, epoch) {
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
    this.info.error = void 0;
    this.info.epoch = epoch;
    this.changed(this.info);
  }
  teardown() {
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
  async negotiate() {
    const pc = this.pc;
    if (!pc) return;
    this.info.state = this.info.state === "new" ? "negotiating" : this.info.state;
    for (let attempt = 0; ; attempt++) {
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      await this.gathered();
      try {
        const reply = await this.sendOffer(pc, this.filter(pc.localDescription?.sdp ?? ""));
        if (!reply || pc !== this.pc) return;
        await pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
        this.attachAll();
        this.changed(this.info);
        return;
      } catch (e) {
        if (errorCode(e) !== "conflict" || attempt >= 5) throw e;
        if (pc !== this.pc) return;
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
  async sendOffer(pc, sdp) {
    const sentAt = Date.now();
    const settling = sentAt - this.settlingSince <= SETTLING_MS;
    for (let retry = 0; ; retry++) {
      try {
        return await this.request("media_offer", { sdp });
      } catch (e) {
        if (!settling || errorCode(e) !== "unavailable" || Date.now() - sentAt >= UNAVAILABLE_RETRY_FOR_MS) throw e;
      }
      await sleep(UNAVAILABLE_RETRY_MS * (retry === 0 ? 1 : 1 + Math.random()));
      if (pc !== this.pc) return null;
    }
  }
  async publish() {
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
      this.transceiver.direction = "sendrecv";
      await this.negotiate();
    }
    this.info.publishing = true;
    this.changed(this.info);
  }
  async unpublish() {
    if (this.transceiver) await this.transceiver.sender.replaceTrack(null);
    this.mic?.stop();
    this.mic = null;
    this.info.publishing = false;
    this.changed(this.info);
  }
  attachAll() {
    for (const tr of this.pc?.getTransceivers() ?? []) {
      if (tr.currentDirection && tr.currentDirection.includes("recv")) this.attach(tr);
    }
  }
  attach(tr) {
    const mid = tr.mid;
    if (mid === null || typeof document === "undefined") return;
    const existing = this.players.get(mid);
    if (existing) {
      const cur = existing.srcObject;
      if (cur && cur.getTracks()[0] === tr.receiver.track) return;
    }
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
    });
  }
  /** Plays the room's audio elements again (call from a click handler when the browser blocked autoplay). */
  resumeAudio() {
    for (const el of this.players.values()) el.play().catch(() => void 0);
  }
  audioContainer() {
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
  gathered() {
    const pc = this.pc;
    if (!pc || pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(resolve, 3e3);
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") {
          clearTimeout(t);
          resolve();
        }
      });
    });
  }
  filter(sdp) {
    if (!this.options.loopbackOnly) return sdp;
    return sdp.split("\r\n").filter((l) => !l.startsWith("a=candidate:") || l.includes(" 127.0.0.1 ")).join("\r\n");
  }
};

// sdk/src/protocol.ts
var CLOSE_SERVER_SHUTDOWN = 4007;
var FINAL_CLOSE_CODES = /* @__PURE__ */ new Set([
  1e3,
  1002,
  1007,
  4e3,
  4002,
  4003,
  4004,
  4005,
  4006,
  4009,
  4012
]);
var FINAL_JOIN_ERRORS = /* @__PURE__ */ new Set([
  "unsupported_protocol",
  "unauthorized",
  "bad_request",
  "banned",
  "not_invited",
  "room_ended",
  "forbidden",
  "stage_full"
]);
var CLOSE_REASONS = {
  1e3: "leave",
  1002: "protocol_error",
  1007: "invalid_utf8",
  1009: "too_large",
  4e3: "bad_auth",
  4001: "auth_timeout",
  4002: "unsupported_protocol",
  4003: "duplicate_identity",
  4004: "removed",
  4005: "banned",
  4006: "room_ended",
  4007: "server_shutdown",
  4008: "heartbeat_timeout",
  4009: "not_invited",
  4010: "slow_consumer",
  4011: "unavailable",
  4012: "revoked"
};

// sdk/src/schedule.ts
function scheduleFromMessage(msg) {
  if (typeof msg.backstage !== "string" || typeof msg.server_time_ms !== "number") return null;
  const view = {
    summit: String(msg.summit ?? ""),
    stage: String(msg.stage ?? ""),
    room: String(msg.room ?? ""),
    backstage: msg.backstage,
    release: typeof msg.release === "number" ? msg.release : 0,
    next: Array.isArray(msg.next) ? JSON.parse(JSON.stringify(msg.next)) : [],
    server_time_ms: msg.server_time_ms
  };
  if (msg.now) view.now = JSON.parse(JSON.stringify(msg.now));
  return view;
}
function clockOffsetMs(view, receivedAtMs) {
  return view.server_time_ms - receivedAtMs;
}
function slotCountdown(view, localNowMs, clockOffsetMs2 = 0) {
  const serverNowMs = localNowMs + clockOffsetMs2;
  const out = {
    serverNowMs,
    next: view.next.map((slot) => ({ slot, startsInMs: Math.max(0, slot.start_ms - serverNowMs) }))
  };
  if (view.now) {
    out.now = {
      slot: view.now,
      remainingMs: Math.max(0, view.now.end_ms - serverNowMs),
      elapsedMs: Math.max(0, serverNowMs - view.now.start_ms)
    };
  }
  return out;
}
function slotFor(view, identity) {
  if (!view || !identity) return null;
  const lists = (slot) => slot.people.some((p) => p.id === identity);
  if (view.now && lists(view.now)) return view.now;
  return view.next.find(lists) ?? null;
}
function formatCountdown(ms) {
  const total = Math.max(0, Math.ceil(ms / 1e3));
  const h = Math.floor(total / 3600);
  const m = Math.floor(total % 3600 / 60);
  const s = String(total % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

// sdk/src/state.ts
var DEFAULT_CHAT_LIMIT = 500;
var NOTHING = { changes: [], notices: [] };
function clone(v) {
  return JSON.parse(JSON.stringify(v));
}
function attribution(msg) {
  const out = {};
  if (typeof msg.by === "string") out.by = msg.by;
  if (typeof msg.by_admin === "string") out.by_admin = msg.by_admin;
  if (typeof msg.reason === "string") out.reason = msg.reason;
  return out;
}
var StateStore = class {
  /** `chatLimit`: how many chat messages to keep at most (the newest), default {@link DEFAULT_CHAT_LIMIT}. */
  constructor(chatLimit = DEFAULT_CHAT_LIMIT) {
    this.chatLimit = chatLimit;
    this.current = null;
    /** Events whose seq is not greater than this are already reflected in the snapshot. */
    this.snapshotSeq = -1;
    if (!(chatLimit >= 1)) throw new RangeError("chatLimit must be at least 1");
  }
  get state() {
    return this.current;
  }
  /** Replaces all state with a snapshot (the welcome's, a `resync`'s). */
  replace(snapshot) {
    const s = clone(snapshot);
    const chat = s.chat ?? [];
    const cut = Math.max(0, chat.length - this.chatLimit);
    this.current = {
      room: s.room,
      seq: s.seq,
      settings: s.settings,
      info: s.info ?? {},
      stage: s.stage,
      counts: s.counts,
      you: s.you,
      hands: s.hands ?? (s.you.role === "moderator" ? { hands: [], total: 0 } : void 0),
      chat: chat.slice(cut),
      chatMore: s.chat_more === true || cut > 0,
      recording: s.recording ?? null,
      media_epoch: s.media_epoch ?? 0
    };
    this.snapshotSeq = s.seq;
    return {
      changes: ["state", "stage", "hands", "counts", "you", "settings", "info", "chat", "recording"],
      notices: []
    };
  }
  /**
   * A snapshot the client asked for (`get_state`). Its reply may arrive after newer events; a snapshot older than
   * what is already applied is ignored.
   */
  refresh(snapshot) {
    if (this.current && snapshot.seq < this.current.seq) return NOTHING;
    return this.replace(snapshot);
  }
  /** A `media_moved` event (no seq): records the room's new media epoch. Returns whether it changed. */
  mediaMoved(epoch) {
    if (!this.current || this.current.media_epoch === epoch) return false;
    this.current.media_epoch = epoch;
    return true;
  }
  /**
   * Puts a `chat_history` page that was asked for with `before` = the id of the first message held (or of none) in
   * front of the messages held: only messages older than those held are taken, and no more than the chat limit
   * leaves room for (the newest of the page then). Returns whether `chat` changed.
   */
  prependChat(page) {
    const s = this.current;
    if (!s) return false;
    const first = s.chat[0]?.id ?? Infinity;
    const older = page.messages.filter((m) => m.id < first).sort((a, b) => a.id - b.id);
    const room = Math.max(0, this.chatLimit - s.chat.length);
    const taken = older.slice(Math.max(0, older.length - room));
    const more = page.next_before !== void 0 || taken.length < older.length;
    if (taken.length === 0 && more === s.chatMore) return false;
    s.chat = [...clone(taken), ...s.chat];
    s.chatMore = more;
    return true;
  }
  /** Applies one event; returns what changed (nothing for stale, duplicate or unknown events). */
  apply(msg) {
    if (msg.type === "resync") {
      return this.replace(msg.state);
    }
    const s = this.current;
    if (!s || typeof msg.seq !== "number") return NOTHING;
    if (msg.seq <= this.snapshotSeq || msg.seq < s.seq) return NOTHING;
    const changes = [];
    const notices = [];
    switch (msg.type) {
      case "stage":
        s.stage = clone(msg.stage);
        s.lastStageCause = msg.cause;
        changes.push("stage");
        break;
      case "counts":
        s.counts = clone(msg.counts);
        changes.push("counts");
        break;
      case "you": {
        const you = clone(msg.you);
        const wasModerator = s.you.role === "moderator";
        s.you = you;
        changes.push("you");
        if (you.role === "moderator" && !wasModerator && !s.hands) {
          s.hands = { hands: [], total: 0 };
          changes.push("hands");
        } else if (you.role !== "moderator" && s.hands) {
          s.hands = void 0;
          changes.push("hands");
        }
        break;
      }
      case "hand_queue":
        s.hands = clone(msg.queue);
        changes.push("hands");
        break;
      case "settings":
        s.settings = clone(msg.settings);
        changes.push("settings");
        break;
      case "room_info":
        s.info = clone(msg.info ?? {});
        changes.push("info");
        break;
      case "hand_lowered": {
        const lowered = { cause: msg.cause, ...attribution(msg) };
        notices.push({ type: "hand_lowered", lowered });
        break;
      }
      case "chat": {
        const message = clone(msg.message);
        if (s.chat.some((m) => m.id === message.id)) return NOTHING;
        s.chat.push(message);
        if (s.chat.length > 1 && s.chat[s.chat.length - 2].id > message.id) s.chat.sort((a, b) => a.id - b.id);
        if (s.chat.length > this.chatLimit) {
          s.chat.splice(0, s.chat.length - this.chatLimit);
          s.chatMore = true;
        }
        changes.push("chat");
        notices.push({ type: "chat", message });
        break;
      }
      case "chat_deleted": {
        const deleted = { message_id: msg.message_id, ...attribution(msg) };
        const before = s.chat.length;
        s.chat = s.chat.filter((m) => m.id !== deleted.message_id);
        if (s.chat.length !== before) changes.push("chat");
        notices.push({ type: "chat_deleted", deleted });
        break;
      }
      case "recording":
        s.recording = msg.recording ? clone(msg.recording) : null;
        changes.push("recording");
        break;
      case "participant_joined":
        notices.push({ type: "participant_joined", participant: msg.participant });
        break;
      case "participant_left":
        notices.push({ type: "participant_left", participant: msg.participant });
        break;
      case "invite_answered":
        notices.push({
          type: "invite_answered",
          participant: msg.participant,
          accepted: msg.accepted,
          expired: msg.expired
        });
        break;
      default:
        return NOTHING;
    }
    s.seq = Math.max(s.seq, msg.seq);
    return { changes, notices };
  }
};

// sdk/src/room.ts
function hubUrls(options) {
  const all = [...options.url ? [options.url] : [], ...options.urls ?? []];
  const urls = all.filter((u, i) => all.indexOf(u) === i);
  if (urls.length === 0) throw new TypeError("Podium: give the hub's websocket URL (`url` or `urls`)");
  return urls;
}
var PodiumError = class extends Error {
  constructor(code, message, request) {
    super(message);
    this.code = code;
    this.request = request;
    this.name = "PodiumError";
  }
};
var OPEN = 1;
var CLOSE_DROPPED = 1006;
function defaultSocket(url) {
  return new WebSocket(url);
}
function isStageRole(role) {
  return role === "speaker" || role === "moderator";
}
function hasWebRtc() {
  return typeof RTCPeerConnection !== "undefined" && typeof navigator !== "undefined";
}
var Room = class _Room extends Emitter {
  constructor(options) {
    super();
    this.options = options;
    this.ws = null;
    this.nextId = 1;
    this.pending = /* @__PURE__ */ new Map();
    this.welcomeMsg = null;
    this.connState = "connecting";
    /** Index in `urls` of the hub of the current (or last) connection. */
    this.urlIndex = 0;
    /** Reconnect attempts since the last successful join (for `maxAttempts`). */
    this.attempts = 0;
    /** The exponent of the next backoff delay. */
    this.backoff = 0;
    /** The next reconnect goes at once (see `firstAttemptAtOnce`). */
    this.reconnectAtOnce = false;
    this.reconnectTimer = null;
    this.heartbeat = null;
    this.speaking = /* @__PURE__ */ new Map();
    this.mediaSession = null;
    this.mediaInfo = { state: "new", tracks: [], publishing: false, epoch: 0, iceRestarts: 0 };
    this.scheduleView = null;
    this.scheduleOffset = 0;
    this.backstageRoom = null;
    this.backstageJoin = null;
    this.urls = hubUrls(options);
    this.store = new StateStore(options.chatLimit);
  }
  /** The websocket URL of the hub this room is connected (or connecting) to. */
  get url() {
    return this.urls[this.urlIndex];
  }
  // ---- state ----
  /** The current room state (null before the first welcome). */
  get state() {
    return this.store.state;
  }
  get you() {
    return this.store.state?.you;
  }
  get stage() {
    return this.store.state?.stage ?? [];
  }
  get counts() {
    return this.store.state?.counts;
  }
  get hands() {
    return this.store.state?.hands;
  }
  get settings() {
    return this.store.state?.settings;
  }
  /** The description and pinned link (an empty object when the room has neither; undefined before the welcome). */
  get info() {
    return this.store.state?.info;
  }
  /**
   * When your raised hand goes down by itself, in ms since the Unix epoch on the hub's clock (`you.hand_expires_at_ms`);
   * null while your hand is down or when the room's hands never expire.
   */
  get handExpiresAt() {
    return this.store.state?.you.hand_expires_at_ms ?? null;
  }
  /** The chat messages known here, oldest first (see `RoomState.chat`). */
  get chat() {
    return this.store.state?.chat ?? [];
  }
  /** Older chat messages exist than the first of `chat`: `loadOlderChat()` fetches them. */
  get chatMore() {
    return this.store.state?.chatMore ?? false;
  }
  /** The recording in progress, or null. */
  get recording() {
    return this.store.state?.recording ?? null;
  }
  /** The reactions the hub accepts (`welcome.reactions`), or null when it has none. */
  get reactionsConfig() {
    return this.welcomeMsg?.reactions ?? null;
  }
  /** Who you are: identity and display name. */
  get participant() {
    return this.welcomeMsg?.participant;
  }
  /** The last welcome (negotiated protocol, resume token, limits). */
  get welcome() {
    return this.welcomeMsg;
  }
  get connection() {
    return this.connState;
  }
  get speakers() {
    return [...this.speaking.entries()].map(([participant, level]) => ({ participant, level })).sort((a, b) => b.level - a.level);
  }
  get media() {
    return this.mediaInfo;
  }
  // ---- summit stages: schedule and backstage ----
  /** The last `schedule` view (summit stages and their backstage rooms), or null. */
  get schedule() {
    return this.scheduleView;
  }
  /** How far the hub's clock is ahead of this one: `server_time_ms` minus `Date.now()` when the view arrived. */
  get scheduleClockOffsetMs() {
    return this.scheduleOffset;
  }
  /** The backstage room joined with `joinBackstage`, while it is open. */
  get backstage() {
    return this.backstageRoom;
  }
  /** The schedule's `now` or `next` slot that lists you (`now` first), or null. */
  mySlot() {
    return slotFor(this.scheduleView, this.participant?.id);
  }
  /** The schedule's countdowns at local time `localNowMs`, corrected to the hub's clock; null without a schedule. */
  scheduleCountdown(localNowMs = Date.now()) {
    return this.scheduleView ? slotCountdown(this.scheduleView, localNowMs, this.scheduleOffset) : null;
  }
  /**
   * Joins the stage's backstage room (`schedule.backstage`) in the audience, on a second connection to the same
   * hub(s): joining it checks you in, and the hub puts you on its stage for a mic check. When this room then puts you
   * on its stage (your slot starts), the backstage room is left by itself. Resolves with the backstage Room (the
   * one already open, if any); rejects without a schedule, or if you are on this room's stage already.
   */
  joinBackstage(options) {
    if (this.backstageRoom) return Promise.resolve(this.backstageRoom);
    if (!this.backstageJoin) {
      this.backstageJoin = this.openBackstage(options).finally(() => {
        this.backstageJoin = null;
      });
    }
    return this.backstageJoin;
  }
  /** Leaves the backstage room, if one is open. */
  async leaveBackstage() {
    const backstage = this.backstageRoom;
    if (!backstage) return;
    this.backstageRoom = null;
    this.emit("backstage", null);
    await backstage.leave().catch(() => void 0);
  }
  async openBackstage(options) {
    const view = this.scheduleView;
    if (!view) throw new PodiumError("not_found", "no schedule: not a summit stage's room", "join");
    this.checkBackstageAllowed();
    const urls = [...this.urls.slice(this.urlIndex), ...this.urls.slice(0, this.urlIndex)];
    const backstage = new _Room({
      urls,
      token: options.token,
      room: view.backstage,
      role: "audience",
      media: options.media === void 0 ? this.options.media : options.media,
      reconnect: this.options.reconnect,
      requestTimeoutMs: this.options.requestTimeoutMs,
      chatLimit: this.options.chatLimit,
      socket: this.options.socket
    });
    await backstage.open();
    try {
      this.checkBackstageAllowed();
    } catch (e) {
      await backstage.leave().catch(() => void 0);
      throw e;
    }
    this.backstageRoom = backstage;
    backstage.on("closed", () => {
      if (this.backstageRoom !== backstage) return;
      this.backstageRoom = null;
      this.emit("backstage", null);
    });
    this.emit("backstage", backstage);
    return backstage;
  }
  checkBackstageAllowed() {
    if (this.connState === "closed") throw new PodiumError("closed", "the stage room is closed", "join");
    if (isStageRole(this.you?.role)) throw new PodiumError("conflict", "you are on the stage already", "join");
  }
  /** Totals of the peer connection's audio stats (zeros without media). */
  stats() {
    return this.mediaSession ? this.mediaSession.stats() : Promise.resolve(null);
  }
  /**
   * Tells the SDK the device's network changed (a native shell's reachability callback, say): the peer connection
   * restarts ICE at once (PROTOCOL.md, "Network changes"). The SDK already does this by itself on the browser's
   * `online` event and on `navigator.connection` `change`, and when ICE stays disconnected or fails.
   */
  networkChanged() {
    this.mediaSession?.networkChanged();
  }
  /** Plays the room's audio again; call from a click handler if the browser blocked autoplay. */
  resumeAudio() {
    this.mediaSession?.resumeAudio();
  }
  // ---- actions (one per protocol request) ----
  raiseHand() {
    return this.request("raise_hand");
  }
  lowerHand() {
    return this.request("lower_hand");
  }
  approveHand(participant) {
    return this.request("approve_hand", { participant });
  }
  inviteToStage(participant) {
    return this.request("invite_to_stage", { participant });
  }
  cancelInvite(participant) {
    return this.request("cancel_invite", { participant });
  }
  acceptInvite() {
    return this.request("accept_invite");
  }
  declineInvite() {
    return this.request("decline_invite");
  }
  stepDown() {
    return this.request("step_down");
  }
  moveToAudience(participant) {
    return this.request("move_to_audience", { participant });
  }
  /** Mutes or unmutes yourself (taking the stage leaves you muted). */
  setMuted(muted) {
    return this.request("set_muted", { muted });
  }
  /** Mutes a stage member (moderators; there is no remote unmute). */
  mute(participant) {
    return this.request("mute", { participant });
  }
  kick(participant) {
    return this.request("kick", { participant });
  }
  ban(participant) {
    return this.request("ban", { participant });
  }
  unban(participant) {
    return this.request("unban", { participant });
  }
  makeModerator(participant) {
    return this.request("make_moderator", { participant });
  }
  revokeModerator(participant) {
    return this.request("revoke_moderator", { participant });
  }
  handover(stage) {
    return this.request("handover", { stage });
  }
  updateSettings(settings) {
    return this.request("update_settings", { ...settings });
  }
  /**
   * Sets or clears the description and pinned link (moderators): a field left out stays as it is, `null` (or an
   * empty description) clears it.
   */
  setRoomInfo(info) {
    return this.request("set_room_info", { ...info });
  }
  /** Lowers every raised hand (moderators); each raiser gets `hand_lowered` with cause `cleared`. */
  clearHands(reason) {
    return this.request("clear_hands", reason === void 0 ? {} : { reason });
  }
  /**
   * Sends a reaction, one of `reactionsConfig.kinds`. Everyone sees the room's reactions summed per window in
   * `reactions` events; over the hub's rate this rejects with `rate_limited` (the reaction is dropped).
   */
  react(reaction) {
    return this.request("react", { reaction });
  }
  /**
   * Sends a chat message; resolves with its id. Rejects with `forbidden` when chat is off, `rate_limited` in slow mode
   * or over the room's rate, `bad_request` for empty or too long text.
   */
  async sendChat(text) {
    const result = await this.request("send_chat", { text });
    return result.message_id;
  }
  /** Deletes a chat message: your own, or anyone's as a moderator. */
  deleteChat(messageId, reason) {
    const fields = { message_id: messageId };
    if (reason !== void 0) fields.reason = reason;
    return this.request("delete_chat", fields);
  }
  /** One page of the chat's history: messages with ids below `before` (the newest when absent), oldest first. */
  chatHistory(options = {}) {
    return this.request("chat_history", { ...options });
  }
  /**
   * Loads the page of chat messages before the first one held into `room.chat` (emits `chat_messages`); resolves with the
   * messages added (none when there is nothing older, or `room.chat` holds `chatLimit` messages already).
   */
  async loadOlderChat(limit = 50) {
    const first = this.chat[0]?.id;
    const page = await this.chatHistory(first === void 0 ? { limit } : { before: first, limit });
    const before = new Set(this.chat.map((m) => m.id));
    if (this.store.prependChat(page)) this.emit("chat_messages", this.chat);
    return this.chat.filter((m) => !before.has(m.id));
  }
  /** Starts recording the room (moderators); `conflict` when it records already. */
  startRecording(reason) {
    return this.request("start_recording", reason === void 0 ? {} : { reason });
  }
  /** Stops the recording (moderators); `conflict` when the room does not record. */
  stopRecording(reason) {
    return this.request("stop_recording", reason === void 0 ? {} : { reason });
  }
  /** Asks not to be recorded (or withdraws that): your audio is then never written. */
  setRecordingOptOut(optOut) {
    return this.request("set_recording_opt_out", { opt_out: optOut });
  }
  inviteToRoom(identity) {
    return this.request("invite_to_room", { identity });
  }
  uninviteFromRoom(identity) {
    return this.request("uninvite_from_room", { identity });
  }
  listAudience(options = {}) {
    return this.request("list_audience", { ...options });
  }
  endRoom() {
    return this.request("end_room");
  }
  ping() {
    return this.request("ping");
  }
  /** Fetches a fresh snapshot and applies it. */
  async getState() {
    const snapshot = await this.request("get_state");
    const result = this.store.refresh(snapshot);
    this.applied(result);
    if (result.changes.length > 0) this.followMediaEpoch();
    return this.store.state;
  }
  /** Leaves the room now (no grace period) and closes the connection. */
  async leave() {
    try {
      if (this.connState === "connected") await this.request("leave");
    } finally {
      this.shutdown({ code: 1e3, reason: "leave" });
    }
  }
  /**
   * Sends any request and resolves with its `ok` result; rejects with a PodiumError carrying the protocol code.
   * Requests made while the connection is down are rejected with `disconnected`.
   */
  request(type, fields = {}) {
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN || this.connState !== "connected" && type !== "join") {
      return Promise.reject(new PodiumError("disconnected", `not connected (${this.connState})`, type));
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.pending.delete(id)) reject(new PodiumError("timeout", `no reply to ${type}`, type));
      }, this.options.requestTimeoutMs ?? 15e3);
      this.pending.set(id, { type, resolve, reject, timer });
      ws.send(JSON.stringify({ ...fields, type, id }));
    });
  }
  // ---- connection ----
  /**
   * Connects and joins; resolves with the welcome or rejects. With several URLs, a hub that cannot be reached (the
   * websocket does not open, or drops or times out before the welcome) is skipped for the next; a refused join is
   * not retried.
   */
  async open() {
    this.setConnection("connecting");
    for (let i = 0; ; i++) {
      this.urlIndex = i;
      try {
        return await this.connectOnce(false);
      } catch (e) {
        const unreachable = e instanceof PodiumError && (e.code === "disconnected" || e.code === "timeout");
        if (unreachable && i + 1 < this.urls.length && this.connState === "connecting") {
          this.dropSocket();
          continue;
        }
        this.shutdown({ code: 0, reason: "join failed", error: e instanceof PodiumError ? e : void 0 });
        throw e;
      }
    }
  }
  async connectOnce(resume) {
    const factory = this.options.socket ?? defaultSocket;
    const ws = factory(this.url);
    this.ws = ws;
    await new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new PodiumError("timeout", "the websocket did not open")),
        this.options.requestTimeoutMs ?? 15e3
      );
      const fail = (e) => {
        clearTimeout(timer);
        reject(e);
      };
      ws.onopen = () => {
        clearTimeout(timer);
        resolve();
      };
      ws.onerror = () => fail(new PodiumError("disconnected", "websocket error"));
      ws.onclose = (ev) => fail(new PodiumError("disconnected", `websocket closed ${ev.code} ${ev.reason}`));
    });
    ws.onmessage = (ev) => this.onMessage(ws, ev.data);
    ws.onclose = (ev) => this.onSocketClosed(ws, ev.code, ev.reason);
    ws.onerror = null;
    const token = typeof this.options.token === "function" ? await this.options.token() : this.options.token;
    const join = { token, protocols: [1] };
    if (this.options.room) join.room = this.options.room;
    if (this.options.role && (!resume || this.options.role === "audience")) join.role = this.options.role;
    if (resume && this.welcomeMsg) join.resume = this.welcomeMsg.resume_token;
    const welcome = await this.request("join", join);
    const previous = this.welcomeMsg;
    this.welcomeMsg = welcome;
    this.attempts = 0;
    this.backoff = 0;
    this.speaking.clear();
    this.applied(this.store.replace(welcome.state));
    this.emit("speakers", []);
    this.setConnection("connected");
    this.startHeartbeat(welcome.heartbeat_interval_ms);
    this.startOrKeepMedia(welcome, previous !== null);
    return welcome;
  }
  startOrKeepMedia(welcome, rejoin) {
    if (this.options.media === false || !hasWebRtc()) return;
    const you = welcome.state.you;
    const epoch = welcome.state.media_epoch ?? 0;
    if (!this.mediaSession) {
      this.mediaSession = new MediaSession(
        (type, fields) => this.request(type, fields),
        this.options.media ?? {},
        (info) => {
          this.mediaInfo = { ...info, tracks: [...info.tracks] };
          this.emit("media", this.mediaInfo);
        }
      );
      this.mediaSession.setIceServers(welcome.ice_servers);
      this.mediaSession.start(you, epoch);
      return;
    }
    this.mediaSession.setIceServers(welcome.ice_servers);
    if (rejoin && !welcome.resumed) {
      this.mediaSession.restart(you, epoch);
    } else if (this.mediaSession.moved(you, epoch)) {
    } else {
      this.mediaSession.resumed(you);
    }
  }
  onMessage(ws, data) {
    if (ws !== this.ws || typeof data !== "string") return;
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if ((msg.type === "ok" || msg.type === "error") && typeof msg.id === "number") {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      clearTimeout(p.timer);
      if (msg.type === "ok") p.resolve(msg.result);
      else p.reject(new PodiumError(String(msg.code), String(msg.message ?? msg.code), p.type));
      return;
    }
    switch (msg.type) {
      case "media_offer":
        this.mediaSession?.onServerOffer(msg.sdp);
        return;
      case "media_state":
        this.mediaSession?.onState(msg.state);
        return;
      case "media_tracks":
        if (this.mediaSession) this.mediaSession.onTracks(msg.tracks);
        else {
          this.mediaInfo = { ...this.mediaInfo, tracks: msg.tracks };
          this.emit("media", this.mediaInfo);
        }
        return;
      case "active_speakers":
        for (const s of msg.speaking ?? []) this.speaking.set(s.participant, s.level);
        for (const p of msg.stopped ?? []) this.speaking.delete(p);
        this.emit("speakers", this.speakers);
        return;
      case "schedule": {
        const view = scheduleFromMessage(msg);
        if (!view) return;
        this.scheduleView = view;
        this.scheduleOffset = clockOffsetMs(view, Date.now());
        this.emit("schedule", view);
        return;
      }
      case "reactions":
        if (msg.counts && typeof msg.counts === "object") {
          this.emit("reactions", {
            counts: { ...msg.counts },
            window_ms: typeof msg.window_ms === "number" ? msg.window_ms : 0
          });
        }
        return;
      case "ice_servers":
        this.mediaSession?.setIceServers(msg);
        return;
      case "media_moved":
        if (typeof msg.media_epoch !== "number") return;
        this.store.mediaMoved(msg.media_epoch);
        this.followMediaEpoch();
        return;
      default:
        this.applied(this.store.apply(msg));
        if (msg.type === "resync") this.followMediaEpoch();
    }
  }
  /**
   * PROTOCOL.md "Media" step 5: a peer connection negotiated in another media epoch than the room's is dead; replace
   * it. Both a `media_moved` and a later snapshot may announce the same epoch: only the first replaces it.
   */
  followMediaEpoch() {
    const s = this.store.state;
    if (!s || !this.mediaSession) return;
    if (this.mediaSession.moved(s.you, s.media_epoch)) {
      if (this.speaking.size > 0) {
        this.speaking.clear();
        this.emit("speakers", []);
      }
    }
  }
  /** Emits the events for what a snapshot or event changed, and lets the media follow `you`. */
  applied(result) {
    const s = this.store.state;
    if (!s) return;
    if (this.backstageRoom && isStageRole(s.you.role) && result.changes.includes("you")) void this.leaveBackstage();
    for (const change of result.changes) {
      switch (change) {
        case "state":
          this.emit("state", s);
          break;
        case "stage": {
          const onStage = new Set(s.stage.map((m) => m.id));
          let dropped = false;
          for (const id of this.speaking.keys()) {
            if (!onStage.has(id)) {
              this.speaking.delete(id);
              dropped = true;
            }
          }
          this.emit("stage", s.stage);
          if (dropped) this.emit("speakers", this.speakers);
          break;
        }
        case "hands":
          this.emit("hands", s.hands);
          break;
        case "counts":
          this.emit("counts", s.counts);
          break;
        case "you":
          this.emit("you", s.you);
          this.mediaSession?.update(s.you);
          break;
        case "settings":
          this.emit("settings", s.settings);
          break;
        case "info":
          this.emit("info", s.info);
          break;
        case "chat":
          this.emit("chat_messages", s.chat);
          break;
        case "recording":
          this.emit("recording", s.recording);
          break;
      }
    }
    for (const n of result.notices) {
      switch (n.type) {
        case "participant_joined":
          this.emit("participant_joined", n.participant);
          break;
        case "participant_left":
          this.emit("participant_left", n.participant);
          break;
        case "invite_answered":
          this.emit("invite_answered", { participant: n.participant, accepted: n.accepted, expired: n.expired });
          break;
        case "hand_lowered":
          this.emit("hand_lowered", n.lowered);
          break;
        case "chat":
          this.emit("chat", n.message);
          break;
        case "chat_deleted":
          this.emit("chat_deleted", n.deleted);
          break;
      }
    }
  }
  onSocketClosed(ws, code, reason) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.stopHeartbeat();
    const wasConnected = this.connState === "connected";
    this.rejectPending(new PodiumError("disconnected", `websocket closed ${code} ${reason}`));
    if (this.connState === "closed") return;
    if (FINAL_CLOSE_CODES.has(code) || this.options.reconnect === false) {
      this.shutdown({ code, reason: reason || CLOSE_REASONS[code] || "" });
      return;
    }
    if (this.connState === "connecting") return;
    if (wasConnected && this.firstAttemptAtOnce(code)) this.reconnectAtOnce = true;
    this.scheduleReconnect();
  }
  /**
   * Whether the first reconnect after losing a joined connection goes without a backoff delay (PROTOCOL.md "Grace
   * and resume", MOBILE.md section 8): when it goes to another hub (several URLs: the hub that dropped us may be
   * dead, another resumes the session at once), and after 4007 always (the hub is draining). With a single hub, an
   * abrupt drop waits the first backoff step.
   */
  firstAttemptAtOnce(code) {
    return code === CLOSE_SERVER_SHUTDOWN || this.urls.length > 1;
  }
  scheduleReconnect() {
    if (this.connState === "closed" || this.reconnectTimer) return;
    this.setConnection("reconnecting");
    const opts = this.options.reconnect || {};
    const max = opts.maxAttempts ?? Infinity;
    if (this.attempts >= max) {
      this.shutdown({ code: 0, reason: "gave up reconnecting" });
      return;
    }
    let delay = 0;
    if (this.reconnectAtOnce) {
      this.reconnectAtOnce = false;
    } else {
      const initial = opts.initialDelayMs ?? 500;
      const cap = opts.maxDelayMs ?? 1e4;
      const base = Math.min(cap, initial * 2 ** this.backoff);
      delay = base / 2 + Math.random() * base / 2;
      this.backoff += 1;
    }
    this.attempts += 1;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.urlIndex = (this.urlIndex + 1) % this.urls.length;
      this.connectOnce(true).then(
        (welcome) => this.emit("reconnected", { resumed: welcome.resumed }),
        (e) => {
          if (e instanceof PodiumError && e.request === "join" && FINAL_JOIN_ERRORS.has(e.code)) {
            this.shutdown({ code: 0, reason: `join refused: ${e.code}`, error: e });
            return;
          }
          this.dropSocket();
          this.scheduleReconnect();
        }
      );
    }, delay);
  }
  /** Closes the current socket without `leave` (the hub keeps the session for the grace period). */
  dropSocket() {
    const ws = this.ws;
    this.ws = null;
    this.stopHeartbeat();
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close();
      } catch {
      }
    }
    this.rejectPending(new PodiumError("disconnected", "connection dropped"));
  }
  /** Simulates a dropped connection (for tests and "reconnect now" buttons): reconnects and resumes. */
  reconnectNow() {
    if (this.connState === "closed") return;
    if (this.connState === "connected" && this.firstAttemptAtOnce(CLOSE_DROPPED)) this.reconnectAtOnce = true;
    this.dropSocket();
    if (this.reconnectTimer) {
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = null;
    }
    this.attempts = 0;
    this.backoff = 0;
    this.scheduleReconnect();
  }
  startHeartbeat(intervalMs) {
    this.stopHeartbeat();
    const every = Math.max(1e3, intervalMs || 15e3);
    this.heartbeat = setInterval(() => {
      const ws = this.ws;
      this.request("ping").catch((e) => {
        if (e.code === "timeout" && ws === this.ws) this.reconnectNow();
      });
    }, every);
  }
  stopHeartbeat() {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
  }
  rejectPending(err) {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new PodiumError(err.code, err.message, p.type));
    }
    this.pending.clear();
  }
  setConnection(state) {
    if (this.connState === state) return;
    this.connState = state;
    this.emit("connection", state);
  }
  shutdown(info) {
    if (this.connState === "closed") return;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.dropSocket();
    this.mediaSession?.close();
    void this.leaveBackstage();
    this.setConnection("closed");
    this.emit("closed", info);
  }
  /** Closes the connection without `leave` (the session stays in its grace period). */
  disconnect() {
    this.shutdown({ code: 0, reason: "disconnected by the client" });
  }
};
async function connect(options) {
  const room = new Room(options);
  await room.open();
  return room;
}

// sdk/src/index.ts
var PROTOCOL_VERSION = 1;
var Podium = { connect, Room, PodiumError, PROTOCOL_VERSION, slotCountdown, slotFor, formatCountdown };
var index_default = Podium;
export {
  CLOSE_REASONS,
  CLOSE_SERVER_SHUTDOWN,
  Emitter,
  FINAL_CLOSE_CODES,
  FINAL_JOIN_ERRORS,
  MediaSession,
  PROTOCOL_VERSION,
  Podium,
  PodiumError,
  Room,
  StateStore,
  clockOffsetMs,
  connect,
  index_default as default,
  formatCountdown,
  scheduleFromMessage,
  slotCountdown,
  slotFor
};
