import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import type { ScheduledSlot, ScheduleView } from "../src/protocol.js";
import { Room } from "../src/room.js";
import { formatCountdown, scheduleFromMessage, slotCountdown, slotFor } from "../src/schedule.js";
import { flush, sockets, welcome } from "./fake.js";

const URL = "ws://hub.test/v1/ws";
const T = 1764921600000; // the opening slot's start

function slot(over: Partial<ScheduledSlot> = {}): ScheduledSlot {
  return {
    guid: "g-open",
    title: "Opening",
    is_break: false,
    status: "active",
    start_ms: T,
    end_ms: T + 30 * 60_000,
    people: [{ id: "ada", name: "Ada", role: "host", checked_in: true }],
    ...over,
  };
}

/** A `schedule` message: Opening on stage (Ada), then a talk by Bob at T + 30 min. */
function scheduleMsg(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    type: "schedule",
    summit: "s1",
    stage: "main",
    room: "s1-main",
    backstage: "s1-main.backstage",
    release: 3,
    now: slot(),
    next: [
      slot({
        guid: "g-talk",
        title: "Talk",
        status: "backstage",
        start_ms: T + 30 * 60_000,
        end_ms: T + 60 * 60_000,
        people: [{ id: "bob", name: "Bob", role: "speaker", checked_in: false }],
      }),
    ],
    server_time_ms: T + 400_000,
    ...over,
  };
}

function view(over: Record<string, unknown> = {}): ScheduleView {
  return scheduleFromMessage(scheduleMsg(over) as never)!;
}

describe("schedule helpers", () => {
  it("reads a schedule message as a view, leaving out type and a null now", () => {
    const v = view({ now: null });
    expect(v).not.toHaveProperty("type");
    expect(v).not.toHaveProperty("now");
    expect(v.backstage).toBe("s1-main.backstage");
    expect(v.next.map((s) => s.title)).toEqual(["Talk"]);
    expect(scheduleFromMessage({ type: "schedule" })).toBeNull();
  });

  it("counts down on the hub's clock, corrected by the clock offset", () => {
    const v = view();
    // The local clock is 5 s behind the hub's: at local T + 395 s, the hub says T + 400 s.
    const c = slotCountdown(v, T + 395_000, 5_000);
    expect(c.serverNowMs).toBe(T + 400_000);
    expect(c.now).toMatchObject({ remainingMs: 1_400_000, elapsedMs: 400_000 });
    expect(c.now?.slot.title).toBe("Opening");
    expect(c.next).toEqual([{ slot: v.next[0], startsInMs: 1_400_000 }]);
    // Without the offset the countdown would be 5 s too long.
    expect(slotCountdown(v, T + 395_000).now?.remainingMs).toBe(1_405_000);
    // Past the end and the next start: zero, not negative.
    const late = slotCountdown(v, T + 3_600_000, 5_000);
    expect(late.now?.remainingMs).toBe(0);
    expect(late.next[0]?.startsInMs).toBe(0);
    expect(slotCountdown(view({ now: undefined, next: [] }), T).now).toBeUndefined();
  });

  it("finds your slot, now before next", () => {
    const v = view();
    expect(slotFor(v, "ada")?.title).toBe("Opening");
    expect(slotFor(v, "bob")?.title).toBe("Talk");
    expect(slotFor(v, "carol")).toBeNull();
    expect(slotFor(null, "ada")).toBeNull();
  });

  it("formats countdowns", () => {
    expect(formatCountdown(0)).toBe("0:00");
    expect(formatCountdown(200)).toBe("0:01");
    expect(formatCountdown(65_000)).toBe("1:05");
    expect(formatCountdown(3_600_000 + 61_000)).toBe("1:01:01");
    expect(formatCountdown(-5)).toBe("0:00");
  });
});

describe("Room: schedule and backstage", () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(T + 395_000); // 5 s behind the hub
  });
  afterEach(() => {
    vi.useRealTimers();
    vi.restoreAllMocks();
  });

  /** Bob joins the stage room s1-main in the audience; the hub sends the schedule after the welcome. */
  async function joinedStage(extra: Partial<ConstructorParameters<typeof Room>[0]> = {}) {
    const s = sockets();
    const room = new Room({ url: URL, token: "stage-tok", room: "s1-main", media: false, socket: s.factory, ...extra });
    const opened = room.open();
    s.latest().open();
    await flush();
    s.latest().ok("join", welcome({}, { room: "s1-main" }));
    await opened;
    s.latest().push(scheduleMsg());
    return { room, s, stageWs: s.latest() };
  }

  /** Joins the backstage room over the next fake socket. */
  async function backstageOf(room: Room, s: ReturnType<typeof sockets>) {
    const joining = room.joinBackstage({ token: "backstage-tok" });
    await flush();
    const ws = s.latest();
    ws.open();
    await flush();
    ws.ok("join", welcome({}, { room: "s1-main.backstage", stage: [] }));
    const backstage = await joining;
    return { backstage, ws };
  }

  it("keeps the last schedule, emits it, and knows the clock offset and your slot", async () => {
    const { room, stageWs } = await joinedStage();
    expect(room.schedule?.now?.title).toBe("Opening");
    expect(room.scheduleClockOffsetMs).toBe(5_000);
    expect(room.mySlot()?.title).toBe("Talk");
    expect(room.scheduleCountdown()?.next[0]?.startsInMs).toBe(1_400_000);

    const seen: ScheduleView[] = [];
    room.on("schedule", (v) => seen.push(v));
    // The opening ended: nothing on stage now, Bob's talk next; the hub's clock is now 2 s behind.
    vi.setSystemTime(T + 1_802_000);
    stageWs.push(scheduleMsg({ now: undefined, server_time_ms: T + 1_800_000 }));
    expect(seen).toHaveLength(1);
    expect(seen[0]).toBe(room.schedule);
    expect(room.schedule?.now).toBeUndefined();
    expect(room.scheduleClockOffsetMs).toBe(-2_000);
    expect(room.scheduleCountdown()?.next[0]?.startsInMs).toBe(0);
    // Not part of the state: no seq moved, and a resync keeps it.
    stageWs.push({ type: "resync", seq: 500, state: welcome().state });
    expect(room.schedule?.next[0]?.title).toBe("Talk");
    room.disconnect();
  });

  it("joins the backstage room named in the schedule, in the audience, on the same hub", async () => {
    const { room, s } = await joinedStage();
    const events: (Room | null)[] = [];
    room.on("backstage", (b) => events.push(b));
    const { backstage, ws } = await backstageOf(room, s);
    expect(ws.url).toBe(URL);
    expect(ws.last("join")).toMatchObject({ token: "backstage-tok", room: "s1-main.backstage", role: "audience" });
    expect(backstage.connection).toBe("connected");
    expect(room.backstage).toBe(backstage);
    expect(events).toEqual([backstage]);
    // Joining again gives the same room.
    await expect(room.joinBackstage({ token: "x" })).resolves.toBe(backstage);
    expect(s.all).toHaveLength(2);
    room.disconnect();
  });

  it("leaves the backstage room when the stage room puts you on its stage", async () => {
    const { room, s, stageWs } = await joinedStage();
    const { backstage, ws } = await backstageOf(room, s);
    // The hub's mic check: on the backstage stage.
    ws.push({ type: "you", seq: 42, you: { role: "speaker", ceiling: "speaker", muted: true } });
    expect(backstage.you?.role).toBe("speaker");
    expect(room.backstage).toBe(backstage);

    const events: (Room | null)[] = [];
    room.on("backstage", (b) => events.push(b));
    // The slot starts: promoted on the stage room.
    stageWs.push({ type: "you", seq: 42, you: { role: "speaker", ceiling: "speaker", muted: true } });
    expect(room.you?.role).toBe("speaker");
    expect(events).toEqual([null]);
    expect(room.backstage).toBeNull();
    expect(ws.last("leave")).toBeTruthy();
    ws.ok("leave");
    await flush();
    expect(backstage.connection).toBe("closed");
    expect(events).toEqual([null]);
    // The stage room is untouched.
    expect(room.connection).toBe("connected");
    // On stage already: no backstage.
    await expect(room.joinBackstage({ token: "x" })).rejects.toMatchObject({ code: "conflict" });
    room.disconnect();
  });

  it("keeps both connections reconnecting on their own", async () => {
    const { room, s, stageWs } = await joinedStage({ reconnect: { initialDelayMs: 100, maxDelayMs: 100 } });
    vi.spyOn(Math, "random").mockReturnValue(0.999);
    const { backstage, ws } = await backstageOf(room, s);
    ws.drop(1006);
    expect(backstage.connection).toBe("reconnecting");
    expect(room.backstage).toBe(backstage);
    await vi.advanceTimersByTimeAsync(100);
    const again = s.latest();
    expect(again).not.toBe(ws);
    again.open();
    await flush();
    expect(again.last("join")).toMatchObject({ room: "s1-main.backstage", token: "backstage-tok", resume: "r1" });
    again.ok("join", welcome({ resumed: true }, { room: "s1-main.backstage" }));
    await flush();
    expect(backstage.connection).toBe("connected");

    stageWs.drop(1006);
    await vi.advanceTimersByTimeAsync(100);
    s.latest().open();
    await flush();
    expect(s.latest().last("join")).toMatchObject({ room: "s1-main", token: "stage-tok" });
    s.latest().ok("join", welcome({ resumed: true }, { room: "s1-main" }));
    await flush();
    expect(room.connection).toBe("connected");
    expect(room.backstage).toBe(backstage);
    // A resumed session in the audience keeps the backstage; the schedule is kept across the reconnect.
    expect(room.schedule?.backstage).toBe("s1-main.backstage");
    // Closing the stage room leaves the backstage room.
    room.disconnect();
    again.ok("leave");
    await flush();
    expect(backstage.connection).toBe("closed");
  });

  it("forgets a backstage room that closes by itself, and refuses one without a schedule", async () => {
    const { room, s } = await joinedStage();
    const { ws } = await backstageOf(room, s);
    const events: (Room | null)[] = [];
    room.on("backstage", (b) => events.push(b));
    ws.drop(4004, "removed");
    expect(events).toEqual([null]);
    expect(room.backstage).toBeNull();
    room.disconnect();

    const plain = sockets();
    const other = new Room({ url: URL, token: "t", room: "demo", media: false, socket: plain.factory });
    const opened = other.open();
    plain.latest().open();
    await flush();
    plain.latest().ok("join", welcome());
    await opened;
    await expect(other.joinBackstage({ token: "x" })).rejects.toMatchObject({ code: "not_found" });
    expect(plain.all).toHaveLength(1);
    other.disconnect();
  });
});
