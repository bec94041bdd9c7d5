// Summit stages: the `schedule` event (what the stage runs now and next) and the pure helpers a client needs to show
// it: which slot is yours, and countdowns on the hub's clock. No sockets, no DOM, so it is unit-tested in Node.

import type { ScheduledSlot, ScheduleView, ServerMessage } from "./protocol.js";

/** Countdowns for a ScheduleView at one moment, on the hub's clock. */
export interface SlotCountdown {
  /** The hub's clock at that moment: the local clock plus the clock offset. */
  serverNowMs: number;
  /** The slot on stage now: ms until its end (0 once it is due to end) and since its start. */
  now?: { slot: ScheduledSlot; remainingMs: number; elapsedMs: number };
  /** The slots to come, soonest first: ms until each starts (0 once it is due). */
  next: { slot: ScheduledSlot; startsInMs: number }[];
}

/** The view a `schedule` message carries (without `type`; a null `now` left out), or null if it is malformed. */
export function scheduleFromMessage(msg: ServerMessage): ScheduleView | null {
  if (typeof msg.backstage !== "string" || typeof msg.server_time_ms !== "number") return null;
  const view: ScheduleView = {
    summit: String(msg.summit ?? ""),
    stage: String(msg.stage ?? ""),
    room: String(msg.room ?? ""),
    backstage: msg.backstage,
    release: typeof msg.release === "number" ? msg.release : 0,
    next: Array.isArray(msg.next) ? (JSON.parse(JSON.stringify(msg.next)) as ScheduledSlot[]) : [],
    server_time_ms: msg.server_time_ms,
  };
  if (msg.now) view.now = JSON.parse(JSON.stringify(msg.now)) as ScheduledSlot;
  return view;
}

/** How far the hub's clock is ahead of the local one: `server_time_ms` minus the local time the view arrived. */
export function clockOffsetMs(view: ScheduleView, receivedAtMs: number): number {
  return view.server_time_ms - receivedAtMs;
}

/**
 * The countdowns at local time `localNowMs` (e.g. `Date.now()`), corrected by `clockOffsetMs` (the room's
 * `scheduleClockOffsetMs`): how long the slot on stage has left, and how long until each next slot starts.
 */
export function slotCountdown(view: ScheduleView, localNowMs: number, clockOffsetMs = 0): SlotCountdown {
  const serverNowMs = localNowMs + clockOffsetMs;
  const out: SlotCountdown = {
    serverNowMs,
    next: view.next.map((slot) => ({ slot, startsInMs: Math.max(0, slot.start_ms - serverNowMs) })),
  };
  if (view.now) {
    out.now = {
      slot: view.now,
      remainingMs: Math.max(0, view.now.end_ms - serverNowMs),
      elapsedMs: Math.max(0, serverNowMs - view.now.start_ms),
    };
  }
  return out;
}

/** The slot that lists `identity` among its people: the one on stage now, else the soonest next one; or null. */
export function slotFor(view: ScheduleView | null, identity: string | undefined): ScheduledSlot | null {
  if (!view || !identity) return null;
  const lists = (slot: ScheduledSlot) => slot.people.some((p) => p.id === identity);
  if (view.now && lists(view.now)) return view.now;
  return view.next.find(lists) ?? null;
}

/** A countdown as `m:ss`, or `h:mm:ss` from an hour (rounded up to the second: 0.2 s left shows `0:01`). */
export function formatCountdown(ms: number): string {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}
