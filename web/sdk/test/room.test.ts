import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { PodiumError, Room } from "../src/room.js";
import { flush, joinedRoom, sockets, welcome } from "./fake.js";

const URL = "ws://hub.test/v1/ws";

/** Connects a Room over a fake socket and completes the join with `w`. */
const joined = (w = welcome(), extra: Partial<ConstructorParameters<typeof Room>[0]> = {}) => joinedRoom(URL, w, extra);

describe("Room", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
    vi.restoreAllMocks();
  });

  it("joins with the token and room, and applies the welcome", async () => {
    const s = sockets();
    const room = new Room({ url: URL, token: "tok", room: "summit", media: false, socket: s.factory });
    const states: unknown[] = [];
    room.on("state", (st) => states.push(st));
    const opened = room.open();
    expect(room.connection).toBe("connecting");
    s.latest().open();
    await flush();
    const join = s.latest().last("join");
    expect(join).toMatchObject({ type: "join", token: "tok", room: "summit", protocols: [1] });
    expect(join.resume).toBeUndefined();
    s.latest().ok("join", welcome());
    const w = await opened;
    expect(w.participant.id).toBe("bob");
    expect(room.connection).toBe("connected");
    expect(room.you?.role).toBe("audience");
    expect(room.stage.map((m) => m.id)).toEqual(["alice"]);
    expect(states).toHaveLength(1);
  });

  it("rejects open() when the join is refused, with the protocol code", async () => {
    const s = sockets();
    const room = new Room({ url: URL, token: "bad", media: false, socket: s.factory });
    const closed = vi.fn();
    room.on("closed", closed);
    const opened = room.open();
    s.latest().open();
    await flush();
    s.latest().error("join", "unauthorized", "token expired");
    await expect(opened).rejects.toMatchObject({ name: "PodiumError", code: "unauthorized", request: "join" });
    expect(room.connection).toBe("closed");
    expect(closed).toHaveBeenCalledOnce();
  });

  it("emits events for each part of the state, applying seq", async () => {
    const { room, s } = await joined();
    const seen: string[] = [];
    for (const ev of ["stage", "you", "counts", "hands", "settings", "state"] as const) room.on(ev, () => seen.push(ev));
    const ws = s.latest();
    // The join's own event, with the welcome's seq: ignored.
    ws.push({ type: "stage", seq: 41, stage: [], cause: { kind: "joined", participant: "x" } });
    ws.push({ type: "you", seq: 42, you: { role: "audience", ceiling: "speaker", muted: true, hand_position: 1 } });
    ws.push({ type: "counts", seq: 42, counts: { stage: 1, audience: 57, hands: 1, total: 58 } });
    ws.push({ type: "settings", seq: 43, settings: { open_mic: true, closed: false, stage_capacity: 13 } });
    expect(seen).toEqual(["you", "counts", "settings"]);
    expect(room.you?.hand_position).toBe(1);
    expect(room.counts?.hands).toBe(1);
    expect(room.settings?.open_mic).toBe(true);
    ws.push({ type: "resync", seq: 500, state: welcome().state });
    expect(seen).toContain("state");
    expect(room.state?.seq).toBe(41);
  });

  it("resolves actions with the ok result and rejects with the error code", async () => {
    const { room, s } = await joined();
    const ws = s.latest();
    const raised = room.raiseHand();
    expect(ws.last("raise_hand")).toEqual({ type: "raise_hand", id: ws.last("raise_hand").id });
    ws.ok("raise_hand", { position: 1, promoted: false });
    await expect(raised).resolves.toEqual({ position: 1, promoted: false });

    const approve = room.approveHand("erin");
    expect(ws.last("approve_hand")).toMatchObject({ participant: "erin" });
    ws.error("approve_hand", "forbidden", "forbidden: not a moderator");
    const err = await approve.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PodiumError);
    expect(err).toMatchObject({ code: "forbidden", request: "approve_hand" });

    const muted = room.setMuted(false);
    expect(ws.last("set_muted")).toMatchObject({ muted: false });
    ws.ok("set_muted");
    await expect(muted).resolves.toBeUndefined();
  });

  it("sends every protocol request with its fields", async () => {
    const { room, s } = await joined();
    const ws = s.latest();
    const calls: [() => Promise<unknown>, Record<string, unknown>][] = [
      [() => room.lowerHand(), { type: "lower_hand" }],
      [() => room.inviteToStage("d"), { type: "invite_to_stage", participant: "d" }],
      [() => room.cancelInvite("d"), { type: "cancel_invite", participant: "d" }],
      [() => room.acceptInvite(), { type: "accept_invite" }],
      [() => room.declineInvite(), { type: "decline_invite" }],
      [() => room.stepDown(), { type: "step_down" }],
      [() => room.moveToAudience("c"), { type: "move_to_audience", participant: "c" }],
      [() => room.mute("c"), { type: "mute", participant: "c" }],
      [() => room.kick("m"), { type: "kick", participant: "m" }],
      [() => room.ban("m"), { type: "ban", participant: "m" }],
      [() => room.unban("m"), { type: "unban", participant: "m" }],
      [() => room.makeModerator("e"), { type: "make_moderator", participant: "e" }],
      [() => room.revokeModerator("e"), { type: "revoke_moderator", participant: "e" }],
      [
        () => room.handover([{ participant: "a", role: "moderator" }]),
        { type: "handover", stage: [{ participant: "a", role: "moderator" }] },
      ],
      [() => room.updateSettings({ open_mic: true }), { type: "update_settings", open_mic: true }],
      [() => room.inviteToRoom("h"), { type: "invite_to_room", identity: "h" }],
      [() => room.uninviteFromRoom("h"), { type: "uninvite_from_room", identity: "h" }],
      [() => room.listAudience({ limit: 2 }), { type: "list_audience", limit: 2 }],
      [() => room.endRoom(), { type: "end_room" }],
    ];
    for (const [call, expected] of calls) {
      const p = call();
      const sent = ws.sent[ws.sent.length - 1]!;
      expect(sent).toEqual({ ...expected, id: sent.id });
      ws.ok(expected.type as string);
      await p;
    }
  });

  it("reconnects after a dropped connection and resumes with the last resume token", async () => {
    const { room, s } = await joined();
    const states: string[] = [];
    room.on("connection", (c) => states.push(c));
    const reconnected = vi.fn();
    room.on("reconnected", reconnected);
    const pending = room.raiseHand();
    s.latest().drop(1006);
    await expect(pending).rejects.toMatchObject({ code: "disconnected" });
    expect(states).toEqual(["reconnecting"]);
    await expect(room.lowerHand()).rejects.toMatchObject({ code: "disconnected" });

    expect(s.all).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(600);
    expect(s.all).toHaveLength(2);
    s.latest().open();
    await flush();
    expect(s.latest().last("join")).toMatchObject({ token: "tok", room: "summit", resume: "r1" });
    s.latest().ok("join", welcome({ resumed: true, resume_token: "r2" }, { seq: 45 }));
    await flush();
    expect(reconnected).toHaveBeenCalledWith({ resumed: true });
    expect(room.connection).toBe("connected");
    expect(room.state?.seq).toBe(45);
    expect(states).toEqual(["reconnecting", "connected"]);

    // The next drop resumes with the newest resume token.
    s.latest().drop(4008, "heartbeat_timeout");
    await vi.advanceTimersByTimeAsync(600);
    s.latest().open();
    await flush();
    expect(s.latest().last("join")).toMatchObject({ resume: "r2" });
  });

  it("replaces the state when the session was not resumed", async () => {
    const { room, s } = await joined(welcome({}, { you: { role: "speaker", ceiling: "speaker", muted: false } }));
    const stages: unknown[] = [];
    room.on("stage", (st) => stages.push(st));
    const you = vi.fn();
    room.on("you", you);
    s.latest().drop(1006);
    await vi.advanceTimersByTimeAsync(600);
    s.latest().open();
    await flush();
    // The grace period ran out meanwhile: a fresh session in the audience, and a new room seq.
    s.latest().ok("join", welcome({ resumed: false }, { seq: 3, stage: [] }));
    await flush();
    expect(room.you?.role).toBe("audience");
    expect(you).toHaveBeenCalledWith({ role: "audience", ceiling: "speaker", muted: true });
    expect(stages).toEqual([[]]);
    // Events of the new room (seq lower than before the drop) are applied.
    s.latest().push({ type: "stage", seq: 4, stage: [{ id: "x", name: "X", role: "speaker", muted: true, connected: true }] });
    expect(room.stage.map((m) => m.id)).toEqual(["x"]);
  });

  it("backs off exponentially while the hub is unreachable, and resets after success", async () => {
    const { room, s } = await joined(welcome(), { reconnect: { initialDelayMs: 1000, maxDelayMs: 4000 } });
    vi.spyOn(Math, "random").mockReturnValue(0.999);
    s.latest().drop(1006);
    const waits: number[] = [];
    for (let i = 0; i < 4; i++) {
      const before = s.all.length;
      let waited = 0;
      while (s.all.length === before) {
        await vi.advanceTimersByTimeAsync(100);
        waited += 100;
      }
      waits.push(waited);
      s.latest().drop(1006); // the connection attempt fails
      await flush();
    }
    expect(waits).toEqual([1000, 2000, 4000, 4000]);
    expect(room.connection).toBe("reconnecting");
    room.disconnect();
    expect(room.connection).toBe("closed");
  });

  it("gives up after maxAttempts", async () => {
    const { room, s } = await joined(welcome(), { reconnect: { initialDelayMs: 10, maxAttempts: 2 } });
    const closed = vi.fn();
    room.on("closed", closed);
    s.latest().drop(1006);
    for (let i = 0; i < 2; i++) {
      await vi.advanceTimersByTimeAsync(100);
      s.latest().drop(1006);
      await flush();
    }
    expect(room.connection).toBe("closed");
    expect(closed).toHaveBeenCalledWith({ code: 0, reason: "gave up reconnecting" });
  });

  it.each([
    [4004, "removed"],
    [4005, "banned"],
    [4006, "room_ended"],
    [4003, "duplicate_identity"],
    [4009, "not_invited"],
    [1000, "leave"],
    [1002, "protocol_error"],
    [1007, "invalid_utf8"],
  ])("does not reconnect after close %i (%s)", async (code, reason) => {
    const { room, s } = await joined();
    const closed = vi.fn();
    room.on("closed", closed);
    s.latest().drop(code, reason);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(s.all).toHaveLength(1);
    expect(room.connection).toBe("closed");
    expect(closed).toHaveBeenCalledWith({ code, reason });
  });

  it("names the close reason from the code when the close frame has none", async () => {
    const { room, s } = await joined();
    const closed = vi.fn();
    room.on("closed", closed);
    s.latest().drop(1007);
    expect(closed).toHaveBeenCalledWith({ code: 1007, reason: "invalid_utf8" });
    expect(room.connection).toBe("closed");
  });

  it("waits the first backoff step before the first reconnect with a single hub", async () => {
    const { room, s } = await joined();
    vi.spyOn(Math, "random").mockReturnValue(0.999);
    s.latest().drop(1006);
    await vi.advanceTimersByTimeAsync(450);
    expect(s.all).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(50);
    expect(s.all).toHaveLength(2);
    room.disconnect();
  });

  it("reconnects after server_shutdown, slow_consumer, unavailable and too_large closes", async () => {
    for (const code of [4007, 4010, 4011, 4001, 4008, 1009]) {
      const { s } = await joined();
      s.latest().drop(code);
      await vi.advanceTimersByTimeAsync(600);
      expect(s.all).toHaveLength(2);
    }
  });

  it("stops when a reconnect's join is refused for good, retries when it is unavailable", async () => {
    const { room, s } = await joined();
    s.latest().drop(1006);
    await vi.advanceTimersByTimeAsync(600);
    s.latest().open();
    await flush();
    s.latest().error("join", "unavailable");
    await flush();
    expect(s.latest().closedByClient).toBe(true);
    expect(room.connection).toBe("reconnecting");
    await vi.advanceTimersByTimeAsync(1100);
    expect(s.all).toHaveLength(3);
    const closed = vi.fn();
    room.on("closed", closed);
    s.latest().open();
    await flush();
    s.latest().error("join", "banned");
    await flush();
    expect(room.connection).toBe("closed");
    expect(closed.mock.calls[0]![0]).toMatchObject({ error: { code: "banned" } });
  });

  it("leave sends leave, then closes without reconnecting", async () => {
    const { room, s } = await joined();
    const left = room.leave();
    s.latest().ok("leave");
    await left;
    expect(room.connection).toBe("closed");
    await vi.advanceTimersByTimeAsync(60_000);
    expect(s.all).toHaveLength(1);
  });

  it("pings on the heartbeat interval and reconnects when a ping goes unanswered", async () => {
    const { room, s } = await joined(welcome({ heartbeat_interval_ms: 1000 }), { requestTimeoutMs: 500 });
    await vi.advanceTimersByTimeAsync(1000);
    expect(s.latest().last("ping")).toBeTruthy();
    s.latest().ok("ping");
    await vi.advanceTimersByTimeAsync(1000);
    // This ping is not answered: after the request timeout the socket is dropped and a reconnect scheduled.
    await vi.advanceTimersByTimeAsync(500);
    expect(s.all[0]!.closedByClient).toBe(true);
    expect(room.connection).toBe("reconnecting");
    await vi.advanceTimersByTimeAsync(600);
    expect(s.all).toHaveLength(2);
  });

  it("tracks active speakers and forgets those who leave the stage", async () => {
    const { room, s } = await joined();
    const seen: unknown[] = [];
    room.on("speakers", (sp) => seen.push(sp));
    const ws = s.latest();
    ws.push({ type: "active_speakers", speaking: [{ participant: "alice", level: 90 }], stopped: [] });
    expect(room.speakers).toEqual([{ participant: "alice", level: 90 }]);
    ws.push({ type: "stage", seq: 50, stage: [], cause: { kind: "left", participant: "alice" } });
    expect(room.speakers).toEqual([]);
    ws.push({ type: "active_speakers", speaking: [{ participant: "carol", level: 20 }], stopped: [] });
    ws.push({ type: "active_speakers", speaking: [], stopped: ["carol"] });
    expect(seen).toHaveLength(4);
    expect(room.speakers).toEqual([]);
  });

  it("keeps media_tracks without WebRTC", async () => {
    const { room, s } = await joined();
    const media = vi.fn();
    room.on("media", media);
    s.latest().push({ type: "media_tracks", tracks: [{ mid: "0", participant: "alice" }] });
    expect(room.media.tracks).toEqual([{ mid: "0", participant: "alice" }]);
    expect(media).toHaveBeenCalledOnce();
  });
  describe("several hub URLs", () => {
    const HUBS = ["ws://a.test/v1/ws", "ws://b.test/v1/ws", "ws://c.test/v1/ws"];

    async function joinedOn(urls: string[], extra: Partial<ConstructorParameters<typeof Room>[0]> = {}) {
      const s = sockets();
      const room = new Room({ urls, token: "tok", room: "summit", media: false, socket: s.factory, ...extra });
      const opened = room.open();
      s.latest().open();
      await flush();
      s.latest().ok("join", welcome());
      await opened;
      return { room, s };
    }

    /** Waits until the next socket is made; returns how long that took (ms, in steps of 50). */
    async function nextSocket(s: ReturnType<typeof sockets>, limit = 60_000): Promise<number> {
      const before = s.all.length;
      let waited = 0;
      await vi.advanceTimersByTimeAsync(0);
      while (s.all.length === before && waited < limit) {
        await vi.advanceTimersByTimeAsync(50);
        waited += 50;
      }
      expect(s.all.length).toBe(before + 1);
      return waited;
    }

    it("rotates to the next URL at once after server_shutdown (4007), then with backoff", async () => {
      const { room, s } = await joinedOn(HUBS);
      vi.spyOn(Math, "random").mockReturnValue(0.999);
      expect(s.latest().url).toBe(HUBS[0]);
      expect(room.url).toBe(HUBS[0]);

      s.latest().drop(4007, "server_shutdown");
      await vi.advanceTimersByTimeAsync(0);
      expect(s.all).toHaveLength(2); // no backoff delay
      expect(s.latest().url).toBe(HUBS[1]);
      expect(room.url).toBe(HUBS[1]);
      // That hub is down too: the next attempt backs off, and goes to the third.
      s.latest().drop(1006);
      expect(await nextSocket(s)).toBe(500);
      expect(s.latest().url).toBe(HUBS[2]);
      s.latest().open();
      await flush();
      expect(s.latest().last("join")).toMatchObject({ token: "tok", resume: "r1" });
      s.latest().ok("join", welcome({ resumed: true }));
      await flush();
      expect(room.connection).toBe("connected");

      // Draining again: at once, around to the first URL.
      s.latest().drop(4007, "server_shutdown");
      await vi.advanceTimersByTimeAsync(0);
      expect(s.all).toHaveLength(4);
      expect(s.latest().url).toBe(HUBS[0]);
      room.disconnect();
    });

    it.each([4008, 4010, 4011])("goes at once to the next hub after close %i of a joined connection", async (code) => {
      const { room, s } = await joinedOn(HUBS);
      vi.spyOn(Math, "random").mockReturnValue(0.999);
      s.latest().drop(code);
      await vi.advanceTimersByTimeAsync(0);
      expect(s.all).toHaveLength(2);
      expect(s.latest().url).toBe(HUBS[1]);
      s.latest().open();
      await flush();
      s.latest().ok("join", welcome({ resumed: true }));
      await flush();
      expect(room.connection).toBe("connected");
      // Backoff starts over after a successful join: the next drop goes at once again.
      s.latest().drop(1006);
      await vi.advanceTimersByTimeAsync(0);
      expect(s.all).toHaveLength(3);
      expect(s.latest().url).toBe(HUBS[2]);
      room.disconnect();
    });

    it("goes at once to the next hub when a ping goes unanswered", async () => {
      const { room, s } = await joinedOn(HUBS, { requestTimeoutMs: 500 });
      await vi.advanceTimersByTimeAsync(15_000 + 500); // the ping is not answered
      expect(s.all[0]!.closedByClient).toBe(true);
      // (A timeout set while fake timers run waits at least 1 ms; a backoff step would be 250 ms or more.)
      await vi.advanceTimersByTimeAsync(1);
      expect(s.all).toHaveLength(2);
      expect(s.latest().url).toBe(HUBS[1]);
      room.disconnect();
    });

    it("does not retry at once when a hub closes with 4007 before the welcome", async () => {
      const { room, s } = await joinedOn(HUBS);
      vi.spyOn(Math, "random").mockReturnValue(0.999);
      s.latest().drop(4007);
      await vi.advanceTimersByTimeAsync(0);
      s.latest().open();
      await flush();
      s.latest().drop(4007); // this hub is draining as well, during the join
      expect(await nextSocket(s)).toBe(500);
      expect(s.latest().url).toBe(HUBS[2]);
      room.disconnect();
    });

    it("rotates to the next URL on each attempt after a dropped connection, the first at once", async () => {
      const { room, s } = await joinedOn(HUBS, { reconnect: { initialDelayMs: 100, maxDelayMs: 100 } });
      vi.spyOn(Math, "random").mockReturnValue(0.999);
      s.latest().drop(1006);
      await vi.advanceTimersByTimeAsync(0);
      // The hub may have died: the first attempt goes to the next one without a backoff delay.
      expect(s.all).toHaveLength(2);
      const urls: string[] = [s.latest().url];
      s.latest().drop(1006); // unreachable too: back off from now on
      for (let i = 0; i < 3; i++) {
        expect(await nextSocket(s)).toBe(100);
        urls.push(s.latest().url);
        s.latest().drop(1006); // unreachable
      }
      expect(urls).toEqual([HUBS[1], HUBS[2], HUBS[0], HUBS[1]]);
      room.disconnect();
    });

    it("keeps the single url option working, and puts url before urls", async () => {
      const s = sockets();
      const urls = [HUBS[0]!, HUBS[2]!];
      const room = new Room({ url: HUBS[2], urls, token: "tok", media: false, socket: s.factory });
      const opened = room.open();
      expect(s.latest().url).toBe(HUBS[2]);
      s.latest().open();
      await flush();
      s.latest().ok("join", welcome());
      await opened;
      s.latest().drop(4007);
      await vi.advanceTimersByTimeAsync(0);
      expect(s.latest().url).toBe(HUBS[0]);
      expect(() => new Room({ token: "tok" })).toThrow(TypeError);
      room.disconnect();
    });

    it("tries the next URL when the first hub cannot be reached on open, but not after a refused join", async () => {
      const s = sockets();
      const room = new Room({ urls: HUBS, token: "tok", media: false, socket: s.factory, requestTimeoutMs: 1000 });
      const opened = room.open();
      s.latest().drop(1006); // refused
      await flush();
      expect(s.latest().url).toBe(HUBS[1]);
      await vi.advanceTimersByTimeAsync(1000); // never opens
      expect(s.all[1]!.closedByClient).toBe(true);
      expect(s.latest().url).toBe(HUBS[2]);
      s.latest().open();
      await flush();
      s.latest().ok("join", welcome());
      await expect(opened).resolves.toMatchObject({ resumed: false });
      expect(room.url).toBe(HUBS[2]);
      room.disconnect();

      const s2 = sockets();
      const refused = new Room({ urls: HUBS, token: "bad", media: false, socket: s2.factory });
      const opened2 = refused.open();
      s2.latest().open();
      await flush();
      s2.latest().error("join", "unauthorized");
      await expect(opened2).rejects.toMatchObject({ code: "unauthorized" });
      expect(s2.all).toHaveLength(1);
      expect(refused.connection).toBe("closed");
    });
  });
});
