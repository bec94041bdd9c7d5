// The media session's negotiation and publishing logic, against a fake RTCPeerConnection and getUserMedia.

import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import type { MediaOptions } from "../src/media.js";
import type { IceServers } from "../src/protocol.js";
import { Room } from "../src/room.js";
import { snapshot, sockets, welcome } from "./fake.js";

const URL = "ws://hub.test/v1/ws";
const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 0));
};

class FakeTrack {
  enabled = true;
  stopped = false;
  stop() {
    this.stopped = true;
  }
}

class FakeTransceiver {
  mid: string | null = null;
  currentDirection: string | null = null;
  receiver = { track: { id: "remote" } };
  sender = {
    track: null as FakeTrack | null,
    replaceTrack: async (t: FakeTrack | null) => {
      this.sender.track = t;
    },
  };
  constructor(public direction: string) {}
}

let offers = 0;
class FakePeer {
  static all: FakePeer[] = [];
  transceivers: FakeTransceiver[] = [];
  localDescription: { type: string; sdp: string } | null = null;
  remoteDescription: { type: string; sdp: string } | null = null;
  iceGatheringState = "complete";
  connectionState = "new";
  signalingState = "stable";
  closed = false;
  restarts = 0;
  log: string[] = [];
  ontrack: unknown = null;
  onconnectionstatechange: unknown = null;
  /** Every configuration set after the constructor's (setConfiguration). */
  reconfigured: RTCConfiguration[] = [];
  constructor(public config: RTCConfiguration = {}) {
    FakePeer.all.push(this);
  }
  getConfiguration() {
    return { ...this.config };
  }
  setConfiguration(c: RTCConfiguration) {
    this.config = c;
    this.reconfigured.push(c);
  }
  addTransceiver(_kind: string, init: { direction: string }) {
    const t = new FakeTransceiver(init.direction);
    this.transceivers.push(t);
    return t;
  }
  getTransceivers() {
    return this.transceivers;
  }
  async createOffer() {
    offers += 1;
    const dirs = this.transceivers.map((t) => t.direction).join(",");
    return {
      type: "offer",
      sdp: `offer${offers} ${dirs}\r\na=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\na=candidate:2 1 udp 1 10.1.2.3 5000 typ host\r\n`,
    };
  }
  async createAnswer() {
    return { type: "answer", sdp: "client-answer\r\n" };
  }
  async setLocalDescription(d: { type: string; sdp?: string }) {
    this.log.push(`local ${d.type}`);
    if (d.type === "rollback") {
      this.localDescription = null;
      this.signalingState = "stable";
      return;
    }
    this.localDescription = { type: d.type, sdp: d.sdp ?? "" };
    this.signalingState = d.type === "offer" ? "have-local-offer" : "stable";
  }
  async setRemoteDescription(d: { type: string; sdp: string }) {
    this.log.push(`remote ${d.type}`);
    this.remoteDescription = d;
    this.transceivers.forEach((t, i) => {
      t.mid = String(i);
      t.currentDirection = t.direction;
    });
  }
  restartIce() {
    this.restarts += 1;
  }
  iceConnectionState = "new";
  oniceconnectionstatechange: (() => void) | null = null;
  /** The browser's ICE agent changes state. */
  ice(state: string) {
    this.iceConnectionState = state;
    this.oniceconnectionstatechange?.();
  }
  addEventListener() {}
  close() {
    this.closed = true;
  }
  async getStats() {
    return new Map();
  }
}

async function joinedWithMedia(w = welcome(), media: MediaOptions = {}) {
  const s = sockets();
  const options = { loopbackOnly: true, ...media };
  const room = new Room({ url: URL, token: "tok", room: "summit", media: options, socket: s.factory });
  const opened = room.open();
  s.latest().open();
  await settle();
  s.latest().ok("join", w);
  await opened;
  await settle();
  return { room, s, ws: s.latest() };
}

function mediaOffers(ws: { sent: Record<string, unknown>[] }) {
  return ws.sent.filter((m) => m.type === "media_offer");
}

/** With fake timers: the websocket drops (1006) and the reconnect's socket opens; its `join` awaits the reply. */
async function dropAndReopen(s: ReturnType<typeof sockets>): Promise<void> {
  s.latest().drop(1006);
  await vi.advanceTimersByTimeAsync(600);
  s.latest().open();
  await vi.advanceTimersByTimeAsync(0);
}

describe("MediaSession", () => {
  const mics: FakeTrack[] = [];
  beforeEach(() => {
    FakePeer.all = [];
    mics.length = 0;
    vi.stubGlobal("RTCPeerConnection", FakePeer);
    vi.stubGlobal("navigator", {
      mediaDevices: {
        getUserMedia: vi.fn(async () => {
          const t = new FakeTrack();
          mics.push(t);
          return { getAudioTracks: () => [t] };
        }),
      },
    });
  });
  afterEach(() => {
    vi.unstubAllGlobals();
  });

  it("offers sendrecv when the ceiling allows the stage, keeping only loopback candidates", async () => {
    const { room, ws } = await joinedWithMedia();
    const pc = FakePeer.all[0]!;
    expect(pc.transceivers.map((t) => t.direction)).toEqual(["sendrecv"]);
    const offer = ws.last("media_offer");
    expect(offer.sdp).toContain("127.0.0.1");
    expect(offer.sdp).not.toContain("10.1.2.3");
    ws.ok("media_offer", { sdp: "answer-sdp" });
    await settle();
    expect(pc.remoteDescription).toEqual({ type: "answer", sdp: "answer-sdp" });
    expect(room.media.publishing).toBe(false);
    room.disconnect();
    expect(pc.closed).toBe(true);
  });

  it("offers recvonly for a listener-only token", async () => {
    const { room } = await joinedWithMedia(
      welcome({}, { you: { role: "audience", ceiling: "audience", muted: true } }),
    );
    expect(FakePeer.all[0]!.transceivers.map((t) => t.direction)).toEqual(["recvonly"]);
    room.disconnect();
  });

  it("publishes the microphone on promotion, follows mute, and stops on return to the audience", async () => {
    const { room, ws } = await joinedWithMedia();
    ws.ok("media_offer", { sdp: "answer-sdp" });
    await settle();
    const tr = FakePeer.all[0]!.transceivers[0]!;

    ws.push({ type: "you", seq: 43, you: { role: "speaker", ceiling: "speaker", muted: true } });
    await settle();
    expect(mics).toHaveLength(1);
    expect(tr.sender.track).toBe(mics[0]);
    expect(mics[0]!.enabled).toBe(false);
    expect(room.media.publishing).toBe(true);
    // No renegotiation: the m-line was sendrecv from the start.
    expect(mediaOffers(ws)).toHaveLength(1);

    ws.push({ type: "you", seq: 44, you: { role: "speaker", ceiling: "speaker", muted: false } });
    expect(mics[0]!.enabled).toBe(true);

    ws.push({ type: "you", seq: 45, you: { role: "audience", ceiling: "speaker", muted: true } });
    await settle();
    expect(tr.sender.track).toBeNull();
    expect(mics[0]!.stopped).toBe(true);
    expect(room.media.publishing).toBe(false);
    room.disconnect();
  });

  it("adds the microphone with a new offer when the m-line was recvonly", async () => {
    const { room, ws } = await joinedWithMedia(
      welcome({}, { you: { role: "audience", ceiling: "audience", muted: true } }),
    );
    ws.ok("media_offer", { sdp: "a1" });
    await settle();
    // A later token with a higher ceiling, on a resumed session, now on stage.
    ws.push({ type: "you", seq: 50, you: { role: "speaker", ceiling: "speaker", muted: true } });
    await settle();
    const offers2 = mediaOffers(ws);
    expect(offers2).toHaveLength(2);
    expect(offers2[1]!.sdp).toContain("sendrecv");
    ws.ok("media_offer", { sdp: "a2" });
    await settle();
    expect(room.media.publishing).toBe(true);
    room.disconnect();
  });

  it("answers the SFU's offers with media_answer", async () => {
    const { room, ws } = await joinedWithMedia();
    ws.ok("media_offer", { sdp: "a1" });
    await settle();
    ws.push({ type: "media_offer", sdp: "server-offer" });
    await settle();
    const pc = FakePeer.all[0]!;
    expect(pc.log.slice(-2)).toEqual(["remote offer", "local answer"]);
    expect(ws.last("media_answer").sdp).toBe("client-answer\r\n");
    ws.ok("media_answer");
    await settle();
    ws.push({ type: "media_tracks", tracks: [{ mid: "0", participant: "alice" }] });
    expect(room.media.tracks).toEqual([{ mid: "0", participant: "alice" }]);
    room.disconnect();
  });

  it("rolls back and offers again after a conflict", async () => {
    const { room, ws } = await joinedWithMedia();
    ws.error("media_offer", "conflict", "an SFU offer is pending");
    await settle();
    const pc = FakePeer.all[0]!;
    expect(pc.log).toContain("local rollback");
    await new Promise((r) => setTimeout(r, 150));
    await settle();
    expect(mediaOffers(ws)).toHaveLength(2);
    ws.ok("media_offer", { sdp: "a2" });
    await settle();
    expect(pc.remoteDescription?.sdp).toBe("a2");
    room.disconnect();
  });

  it("restarts ICE when the SFU reports failure", async () => {
    const { room, ws } = await joinedWithMedia();
    ws.ok("media_offer", { sdp: "a1" });
    await settle();
    ws.push({ type: "media_state", state: "failed" });
    await settle();
    expect(room.media.state).toBe("failed");
    expect(FakePeer.all[0]!.restarts).toBe(1);
    expect(mediaOffers(ws)).toHaveLength(2);
    ws.ok("media_offer", { sdp: "a2" });
    ws.push({ type: "media_state", state: "connected" });
    expect(room.media.state).toBe("connected");
    room.disconnect();
  });

  describe("network changes (PROTOCOL.md, \"Network changes\")", () => {
    /** Joined, the first offer answered, ICE connected; with fake timers. */
    async function connected() {
      const joined = await joinedWithMedia();
      joined.ws.ok("media_offer", { sdp: "a1" });
      await settle();
      const pc = FakePeer.all[0]!;
      pc.ice("connected");
      vi.useFakeTimers();
      return { ...joined, pc };
    }

    it("restarts ICE on the same peer connection when ICE stays disconnected past the grace, keeping slots", async () => {
      const { room, ws, pc } = await connected();
      try {
        ws.push({ type: "media_tracks", tracks: [{ mid: "0", participant: "alice" }] });
        // A short loss that recovers by itself: nothing.
        pc.ice("disconnected");
        await vi.advanceTimersByTimeAsync(1000);
        pc.ice("connected");
        await vi.advanceTimersByTimeAsync(5000);
        expect(pc.restarts).toBe(0);
        expect(mediaOffers(ws)).toHaveLength(1);

        // Disconnected for good: restartIce() and a new offer on the same peer connection, after 1.5 s.
        pc.ice("disconnected");
        await vi.advanceTimersByTimeAsync(1400);
        expect(pc.restarts).toBe(0);
        await vi.advanceTimersByTimeAsync(200);
        expect(pc.restarts).toBe(1);
        expect(mediaOffers(ws)).toHaveLength(2);
        ws.ok("media_offer", { sdp: "a2" });
        await vi.advanceTimersByTimeAsync(0);
        expect(pc.remoteDescription?.sdp).toBe("a2");
        expect(FakePeer.all).toHaveLength(1);
        expect(room.media.tracks).toEqual([{ mid: "0", participant: "alice" }]);
        expect(room.media.iceRestarts).toBe(1);
        room.disconnect();
      } finally {
        vi.useRealTimers();
      }
    });

    it("restarts at once on ICE failure, then backs off while it keeps failing", async () => {
      const { room, ws, pc } = await connected();
      try {
        pc.ice("failed");
        await vi.advanceTimersByTimeAsync(0);
        expect(pc.restarts).toBe(1);
        ws.ok("media_offer", { sdp: "a2" });
        await vi.advanceTimersByTimeAsync(0);
        // Failing again right away: the next restart waits 1 s, the one after 2 s.
        pc.ice("failed");
        await vi.advanceTimersByTimeAsync(900);
        expect(pc.restarts).toBe(1);
        await vi.advanceTimersByTimeAsync(200);
        expect(pc.restarts).toBe(2);
        ws.ok("media_offer", { sdp: "a3" });
        await vi.advanceTimersByTimeAsync(0);
        pc.ice("failed");
        await vi.advanceTimersByTimeAsync(1500);
        expect(pc.restarts).toBe(2);
        await vi.advanceTimersByTimeAsync(600);
        expect(pc.restarts).toBe(3);
        ws.ok("media_offer", { sdp: "a4" });
        await vi.advanceTimersByTimeAsync(0);
        // Connected again: the backoff starts over.
        pc.ice("connected");
        await vi.advanceTimersByTimeAsync(10_000);
        pc.ice("failed");
        await vi.advanceTimersByTimeAsync(0);
        expect(pc.restarts).toBe(4);
        room.disconnect();
      } finally {
        vi.useRealTimers();
      }
    });

    it("restarts ICE on an online event and a navigator.connection change, once per change", async () => {
      const win = new EventTarget();
      const connection = new EventTarget();
      vi.stubGlobal("window", win);
      vi.stubGlobal("navigator", { ...navigator, connection });
      const { room, ws, pc } = await connected();
      try {
        win.dispatchEvent(new Event("online"));
        // A second notice of the same change while the restart is queued adds nothing.
        connection.dispatchEvent(new Event("change"));
        await vi.advanceTimersByTimeAsync(0);
        expect(pc.restarts).toBe(1);
        expect(mediaOffers(ws)).toHaveLength(2);
        ws.ok("media_offer", { sdp: "a2" });
        await vi.advanceTimersByTimeAsync(0);
        connection.dispatchEvent(new Event("change"));
        await vi.advanceTimersByTimeAsync(0);
        expect(pc.restarts).toBe(2);
        ws.ok("media_offer", { sdp: "a3" });
        await vi.advanceTimersByTimeAsync(0);
        room.disconnect();
        // Closed: no more listening.
        win.dispatchEvent(new Event("online"));
        await vi.advanceTimersByTimeAsync(0);
        expect(pc.restarts).toBe(2);
      } finally {
        vi.useRealTimers();
      }
    });

    it("restarts again after the websocket resumed when a drop cut the restart off", async () => {
      const { room, s, pc } = await connected();
      try {
        room.networkChanged();
        await vi.advanceTimersByTimeAsync(0);
        expect(pc.restarts).toBe(1);
        await dropAndReopen(s); // the restart's media_offer never gets its answer
        s.latest().ok("join", welcome({ resumed: true }));
        await vi.advanceTimersByTimeAsync(0);
        expect(pc.restarts).toBe(2);
        expect(mediaOffers(s.latest())).toHaveLength(1);
        s.latest().ok("media_offer", { sdp: "a2" });
        await vi.advanceTimersByTimeAsync(0);
        expect(pc.remoteDescription?.sdp).toBe("a2");
        expect(FakePeer.all).toHaveLength(1);
        room.disconnect();
      } finally {
        vi.useRealTimers();
      }
    });
  });

  it("keeps the peer connection on a resumed session and starts a new one otherwise", async () => {
    const { room, s, ws } = await joinedWithMedia();
    ws.ok("media_offer", { sdp: "a1" });
    await settle();
    vi.useFakeTimers();
    try {
      await dropAndReopen(s);
      s.latest().ok("join", welcome({ resumed: true }));
      await vi.advanceTimersByTimeAsync(0);
      expect(FakePeer.all).toHaveLength(1);
      expect(mediaOffers(s.latest())).toHaveLength(0);

      await dropAndReopen(s);
      s.latest().ok("join", welcome({ resumed: false }, { seq: 2 }));
      await vi.advanceTimersByTimeAsync(0);
      expect(FakePeer.all).toHaveLength(2);
      expect(FakePeer.all[0]!.closed).toBe(true);
      expect(mediaOffers(s.latest())).toHaveLength(1);
      room.disconnect();
    } finally {
      vi.useRealTimers();
    }
  });

  it("redoes a negotiation cut off by a websocket drop once the session resumes", async () => {
    const { room, s, ws } = await joinedWithMedia();
    expect(mediaOffers(ws)).toHaveLength(1);
    vi.useFakeTimers();
    try {
      await dropAndReopen(s); // the media_offer's reply never comes
      s.latest().ok("join", welcome({ resumed: true }));
      await vi.advanceTimersByTimeAsync(0);
      expect(FakePeer.all).toHaveLength(1);
      expect(FakePeer.all[0]!.log).toContain("local rollback");
      expect(mediaOffers(s.latest())).toHaveLength(1);
      expect(room.media.error).toBeUndefined();
      room.disconnect();
    } finally {
      vi.useRealTimers();
    }
  });

  it.each([4003, 4004, 4005, 4006, 4009, 1002, 1007])(
    "closes the peer connection and stops the microphone after close %i",
    async (code) => {
      const { room, s, ws } = await joinedWithMedia(
        welcome({}, { you: { role: "speaker", ceiling: "speaker", muted: false } }),
      );
      ws.ok("media_offer", { sdp: "a1" });
      await settle();
      expect(mics).toHaveLength(1);
      ws.drop(code);
      await settle();
      expect(room.connection).toBe("closed");
      expect(FakePeer.all).toHaveLength(1);
      expect(FakePeer.all[0]!.closed).toBe(true);
      expect(mics[0]!.stopped).toBe(true);
      expect(room.media).toMatchObject({ state: "closed", publishing: false });
      expect(s.all).toHaveLength(1);
    },
  );

  it("uses the hub's TURN servers, applies fresh ones to the peer connection, and can force relaying", async () => {
    const urls = ["turn:turn.test:3478?transport=udp", "turns:turn.test:5349"];
    const turn = (username: string, expires: number): IceServers => ({
      servers: [{ urls, username, credential: "c-" + username }],
      expires_at_ms: expires,
    });
    const { room, s, ws } = await joinedWithMedia(welcome({ ice_servers: turn("1000:t", 1_000_000) }), {
      forceRelay: true,
    });
    const pc = FakePeer.all[0]!;
    expect(pc.config.iceTransportPolicy).toBe("relay");
    expect(pc.config.iceServers).toEqual([{ urls, username: "1000:t", credential: "c-1000:t" }]);
    ws.ok("media_offer", { sdp: "a1" });
    await settle();

    // Half their lifetime later the hub sends new ones: the running connection gets them with setConfiguration.
    ws.push({ type: "ice_servers", ...turn("2800:t", 2_800_000) });
    expect(pc.reconfigured).toHaveLength(1);
    expect(pc.config.iceServers?.[0]).toMatchObject({ username: "2800:t", credential: "c-2800:t" });
    expect(pc.config.iceTransportPolicy).toBe("relay");
    expect(FakePeer.all).toHaveLength(1);

    // A fresh session after a reconnect: the welcome's new credentials go into the new peer connection.
    vi.useFakeTimers();
    try {
      await dropAndReopen(s);
      s.latest().ok("join", welcome({ resumed: false, ice_servers: turn("4600:t", 4_600_000) }, { seq: 2 }));
      await vi.advanceTimersByTimeAsync(0);
      expect(FakePeer.all).toHaveLength(2);
      expect(FakePeer.all[1]!.config.iceServers?.[0]).toMatchObject({ username: "4600:t" });
      room.disconnect();
    } finally {
      vi.useRealTimers();
    }
  });

  it("keeps the application's own ICE servers and needs none without TURN", async () => {
    const own = [{ urls: "turn:own.test:3478", username: "u", credential: "p" }];
    const hub = (username: string): IceServers => ({
      servers: [{ urls: ["turn:hub.test"], username, credential: "c" }],
      expires_at_ms: 1000,
    });
    const { room, ws } = await joinedWithMedia(welcome({ ice_servers: hub("1:t") }), { iceServers: own });
    expect(FakePeer.all[0]!.config).toEqual({ iceServers: own, iceTransportPolicy: "all" });
    ws.push({ type: "ice_servers", ...hub("2:t") });
    expect(FakePeer.all[0]!.reconfigured).toHaveLength(0);
    room.disconnect();

    FakePeer.all = [];
    const plain = await joinedWithMedia();
    expect(FakePeer.all[0]!.config).toEqual({ iceServers: [], iceTransportPolicy: "all" });
    plain.room.disconnect();
  });

  it("relabels the slots from the media_tracks that follows a resumed welcome", async () => {
    const { room, s, ws } = await joinedWithMedia();
    ws.ok("media_offer", { sdp: "a1" });
    await settle();
    ws.push({ type: "media_tracks", tracks: [{ mid: "0", participant: "alice" }] });
    vi.useFakeTimers();
    try {
      await dropAndReopen(s);
      // The hub sends both at once: the welcome, then the slots as they are now (alice left hers meanwhile).
      s.latest().ok("join", welcome({ resumed: true }));
      s.latest().push({ type: "media_tracks", tracks: [{ mid: "0", participant: null }] });
      await vi.advanceTimersByTimeAsync(0);
      expect(room.connection).toBe("connected");
      expect(FakePeer.all).toHaveLength(1);
      expect(room.media.tracks).toEqual([{ mid: "0", participant: null }]);
      room.disconnect();
    } finally {
      vi.useRealTimers();
    }
  });

  describe("media epoch (the room's audio moved to another hub)", () => {
    it("replaces the peer connection on media_moved, with exactly one new offer", async () => {
      const { room, ws } = await joinedWithMedia(welcome({}, { media_epoch: 3 }));
      ws.ok("media_offer", { sdp: "a1" });
      await settle();
      expect(room.media.epoch).toBe(3);
      const tracks = { type: "media_tracks", tracks: [{ mid: "0", participant: "alice" }] };
      ws.push(tracks);
      ws.push({ type: "active_speakers", speaking: [{ participant: "alice", level: 90 }], stopped: [] });
      const states: string[] = [];
      room.on("media", (m) => states.push(m.state));

      ws.push({ type: "media_moved", media_epoch: 4 });
      await settle();
      expect(FakePeer.all).toHaveLength(2);
      // Make-before-break: the old peer connection plays on until the new one is connected.
      expect(FakePeer.all[0]!.closed).toBe(false);
      expect(FakePeer.all[1]!.closed).toBe(false);
      expect(FakePeer.all[1]!.transceivers.map((t) => t.direction)).toEqual(["sendrecv"]);
      expect(mediaOffers(ws)).toHaveLength(2);
      expect(room.media.epoch).toBe(4);
      expect(room.state?.media_epoch).toBe(4);
      expect(room.media.tracks).toEqual([]); // the new hub tells the slots again
      expect(room.speakers).toEqual([]);
      expect(states[0]).toBe("new");
      ws.ok("media_offer", { sdp: "a2" });
      await settle();
      expect(FakePeer.all[1]!.remoteDescription?.sdp).toBe("a2");
      expect(FakePeer.all[0]!.closed).toBe(false);
      const fresh = FakePeer.all[1]!;
      fresh.connectionState = "connected";
      (fresh.onconnectionstatechange as () => void)();
      expect(FakePeer.all[0]!.closed).toBe(true);
      expect(fresh.closed).toBe(false);

      // The same epoch again, by event or in a snapshot (resync, get_state): nothing more.
      ws.push({ type: "media_moved", media_epoch: 4 });
      ws.push({ type: "resync", seq: 60, state: snapshot({ seq: 60, media_epoch: 4 }) });
      const got = room.getState();
      ws.ok("get_state", snapshot({ seq: 61, media_epoch: 4 }));
      await got;
      await settle();
      expect(FakePeer.all).toHaveLength(2);
      expect(mediaOffers(ws)).toHaveLength(2);
      expect(room.media.error).toBeUndefined();
      room.disconnect();
    });

    it("renegotiates once when a resync shows a new epoch before the media_moved arrives", async () => {
      const { room, ws } = await joinedWithMedia(welcome({}, { media_epoch: 1 }));
      ws.ok("media_offer", { sdp: "a1" });
      await settle();
      ws.push({ type: "resync", seq: 70, state: snapshot({ seq: 70, media_epoch: 2 }) });
      await settle();
      expect(mediaOffers(ws)).toHaveLength(2);
      ws.push({ type: "media_moved", media_epoch: 2 });
      await settle();
      expect(FakePeer.all).toHaveLength(2);
      expect(mediaOffers(ws)).toHaveLength(2);
      expect(room.media.epoch).toBe(2);
      room.disconnect();
    });

    it("renegotiates when a get_state snapshot shows a new epoch", async () => {
      const { room, ws } = await joinedWithMedia();
      ws.ok("media_offer", { sdp: "a1" });
      await settle();
      expect(room.media.epoch).toBe(0); // no media_epoch in the welcome
      const got = room.getState();
      ws.ok("get_state", snapshot({ seq: 45, media_epoch: 1 }));
      await got;
      await settle();
      expect(FakePeer.all).toHaveLength(2);
      expect(mediaOffers(ws)).toHaveLength(2);
      room.disconnect();
    });

    it("keeps the microphone track, role and mute across a move", async () => {
      const { room, ws } = await joinedWithMedia(
        welcome({}, { you: { role: "speaker", ceiling: "speaker", muted: false } }),
      );
      ws.ok("media_offer", { sdp: "a1" });
      await settle();
      expect(mics).toHaveLength(1);
      expect(room.media.publishing).toBe(true);

      ws.push({ type: "media_moved", media_epoch: 1 });
      await settle();
      const pc = FakePeer.all[1]!;
      expect(mediaOffers(ws)).toHaveLength(2);
      ws.ok("media_offer", { sdp: "a2" });
      await settle();
      // The same track on the new peer connection, still enabled: no second getUserMedia, no new mute state.
      expect(mics).toHaveLength(1);
      expect(mics[0]!.stopped).toBe(false);
      expect(mics[0]!.enabled).toBe(true);
      expect(pc.transceivers[0]!.sender.track).toBe(mics[0]);
      expect(room.media.publishing).toBe(true);
      expect(room.you).toEqual({ role: "speaker", ceiling: "speaker", muted: false });
      expect(ws.sent.filter((m) => m.type === "set_muted" || m.type === "raise_hand")).toHaveLength(0);
      room.disconnect();
      expect(mics[0]!.stopped).toBe(true);
    });

    it("does not wait for a negotiation of the dead peer connection", async () => {
      const { room, ws } = await joinedWithMedia();
      expect(mediaOffers(ws)).toHaveLength(1); // its reply has not come yet
      ws.push({ type: "media_moved", media_epoch: 1 });
      await settle();
      expect(FakePeer.all).toHaveLength(2);
      const offers2 = mediaOffers(ws);
      expect(offers2).toHaveLength(2);
      // The old hub's answer (or its error) arrives late: it is dropped, and is no media error.
      ws.push({ type: "error", id: offers2[0]!.id, code: "unavailable", message: "media moved" });
      ws.push({ type: "ok", id: offers2[1]!.id, result: { sdp: "a2" } });
      await settle();
      expect(FakePeer.all[1]!.remoteDescription?.sdp).toBe("a2");
      expect(FakePeer.all[0]!.remoteDescription).toBeNull();
      expect(room.media.error).toBeUndefined();
      expect(mediaOffers(ws)).toHaveLength(2);
      room.disconnect();
    });

    describe("an offer answered unavailable right after a move", () => {
      /** Joined with an answered offer, then (with fake timers) the room's media moves to epoch 1. */
      async function moved() {
        const joined = await joinedWithMedia();
        joined.ws.ok("media_offer", { sdp: "a1" });
        await settle();
        vi.useFakeTimers();
        vi.spyOn(Math, "random").mockReturnValue(0.999);
        joined.ws.push({ type: "media_moved", media_epoch: 1 });
        await vi.advanceTimersByTimeAsync(0);
        expect(mediaOffers(joined.ws)).toHaveLength(2);
        return joined;
      }
      afterEach(() => {
        vi.useRealTimers();
        vi.restoreAllMocks();
      });

      it("sends the same offer again after 250 ms, then every 250–500 ms, until it is answered", async () => {
        const { room, ws } = await moved();
        const pc = FakePeer.all[1]!;
        ws.error("media_offer", "unavailable", "the room's media is moving to another hub; retry");
        await vi.advanceTimersByTimeAsync(249);
        expect(mediaOffers(ws)).toHaveLength(2);
        await vi.advanceTimersByTimeAsync(1);
        expect(mediaOffers(ws)).toHaveLength(3);
        ws.error("media_offer", "unavailable");
        await vi.advanceTimersByTimeAsync(490);
        expect(mediaOffers(ws)).toHaveLength(3);
        await vi.advanceTimersByTimeAsync(10);
        const offers = mediaOffers(ws);
        expect(offers).toHaveLength(4);
        // The same offer each time, from the same (new) peer connection.
        expect(offers[3]!.sdp).toBe(offers[1]!.sdp);
        expect(pc.log.filter((l) => l === "local offer")).toHaveLength(1);
        ws.ok("media_offer", { sdp: "a2" });
        await vi.advanceTimersByTimeAsync(0);
        expect(pc.remoteDescription?.sdp).toBe("a2");
        expect(FakePeer.all).toHaveLength(2);
        expect(room.media.error).toBeUndefined();
        await vi.advanceTimersByTimeAsync(5000);
        expect(mediaOffers(ws)).toHaveLength(4);
        room.disconnect();
      });

      it("gives up after about 10 s, shows the error, and tries again after the next reconnect", async () => {
        const { room, s, ws } = await moved();
        const media = vi.fn();
        room.on("media", media);
        for (let i = 0; i < 100 && mediaOffers(ws).length < 100; i++) {
          const before = mediaOffers(ws).length;
          ws.error("media_offer", "unavailable", "the room's media is moving to another hub; retry");
          await vi.advanceTimersByTimeAsync(500);
          if (mediaOffers(ws).length === before) break;
        }
        // 250 ms, then 500 ms apart (Math.random is 0.999): about 10 s of retries.
        const sent = mediaOffers(ws).length - 1;
        expect(sent).toBeGreaterThanOrEqual(20);
        expect(sent).toBeLessThanOrEqual(22);
        expect(room.media.error).toMatch(/moving to another hub/);
        expect(media).toHaveBeenLastCalledWith(expect.objectContaining({ error: expect.stringMatching(/moving/) }));
        await vi.advanceTimersByTimeAsync(5000);
        expect(mediaOffers(ws)).toHaveLength(sent + 1);

        await dropAndReopen(s);
        s.latest().ok("join", welcome({ resumed: true }, { media_epoch: 1 }));
        await vi.advanceTimersByTimeAsync(0);
        expect(FakePeer.all).toHaveLength(2);
        expect(mediaOffers(s.latest())).toHaveLength(1);
        s.latest().ok("media_offer", { sdp: "a3" });
        await vi.advanceTimersByTimeAsync(0);
        expect(FakePeer.all[1]!.remoteDescription?.sdp).toBe("a3");
        room.disconnect();
      });

      it("stops retrying when a newer media_moved arrives, and negotiates for that epoch", async () => {
        const { room, ws } = await moved();
        ws.error("media_offer", "unavailable");
        await vi.advanceTimersByTimeAsync(100);
        ws.push({ type: "media_moved", media_epoch: 2 });
        await vi.advanceTimersByTimeAsync(0);
        expect(FakePeer.all).toHaveLength(3);
        expect(mediaOffers(ws)).toHaveLength(3);
        expect(mediaOffers(ws)[2]!.sdp).not.toBe(mediaOffers(ws)[1]!.sdp);
        await vi.advanceTimersByTimeAsync(1000);
        expect(mediaOffers(ws)).toHaveLength(3); // the epoch-1 offer is not sent again
        ws.ok("media_offer", { sdp: "a3" });
        await vi.advanceTimersByTimeAsync(0);
        expect(FakePeer.all[2]!.remoteDescription?.sdp).toBe("a3");
        expect(room.media).toMatchObject({ epoch: 2, error: undefined });
        room.disconnect();
      });

      it("retries after a reconnect too (a new session's offer)", async () => {
        const { room, s, ws } = await joinedWithMedia();
        ws.ok("media_offer", { sdp: "a1" });
        await settle();
        vi.useFakeTimers();
        await dropAndReopen(s);
        s.latest().ok("join", welcome({ resumed: false }, { seq: 2 }));
        await vi.advanceTimersByTimeAsync(0);
        expect(mediaOffers(s.latest())).toHaveLength(1);
        s.latest().error("media_offer", "unavailable");
        await vi.advanceTimersByTimeAsync(250);
        expect(mediaOffers(s.latest())).toHaveLength(2);
        s.latest().ok("media_offer", { sdp: "a2" });
        await vi.advanceTimersByTimeAsync(0);
        expect(FakePeer.all[1]!.remoteDescription?.sdp).toBe("a2");
        expect(room.media.error).toBeUndefined();
        room.disconnect();
      });

      it("does not retry an unavailable answer long after any move (media disabled on the hub)", async () => {
        const { room, ws } = await joinedWithMedia();
        ws.error("media_offer", "unavailable", "media is disabled on this hub");
        await settle();
        expect(room.media.error).toBe("media is disabled on this hub");
        await new Promise((r) => setTimeout(r, 600));
        expect(mediaOffers(ws)).toHaveLength(1);
        room.disconnect();
      });
    });

    it("renegotiates after a resumed welcome with another media_epoch, not with the same", async () => {
      const { room, s, ws } = await joinedWithMedia(welcome({}, { media_epoch: 5 }));
      ws.ok("media_offer", { sdp: "a1" });
      await settle();
      vi.useFakeTimers();
      try {
        await dropAndReopen(s);
        s.latest().ok("join", welcome({ resumed: true }, { media_epoch: 5 }));
        await vi.advanceTimersByTimeAsync(0);
        expect(FakePeer.all).toHaveLength(1);
        expect(mediaOffers(s.latest())).toHaveLength(0);

        // The room's media moved while the websocket was down (the media_moved event was missed).
        await dropAndReopen(s);
        s.latest().ok("join", welcome({ resumed: true }, { media_epoch: 6 }));
        await vi.advanceTimersByTimeAsync(0);
        expect(FakePeer.all).toHaveLength(2);
        // The old one is closed when the new one connects, or at the latest after 10 s.
        expect(FakePeer.all[0]!.closed).toBe(false);
        await vi.advanceTimersByTimeAsync(10_000);
        expect(FakePeer.all[0]!.closed).toBe(true);
        expect(mediaOffers(s.latest())).toHaveLength(1);
        expect(room.media.epoch).toBe(6);

        // The media_moved for that epoch, arriving now, changes nothing.
        s.latest().push({ type: "media_moved", media_epoch: 6 });
        await vi.advanceTimersByTimeAsync(0);
        expect(FakePeer.all).toHaveLength(2);
        expect(mediaOffers(s.latest())).toHaveLength(1);
        room.disconnect();
      } finally {
        vi.useRealTimers();
      }
    });
  });
});
