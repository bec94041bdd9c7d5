import type { ScheduledSlot, ScheduleView, ServerMessage } from "./protocol.js";
/** Countdowns for a ScheduleView at one moment, on the hub's clock. */
export interface SlotCountdown {
    /** The hub's clock at that moment: the local clock plus the clock offset. */
    serverNowMs: number;
    /** The slot on stage now: ms until its end (0 once it is due to end) and since its start. */
    now?: {
        slot: ScheduledSlot;
        remainingMs: number;
        elapsedMs: number;
    };
    /** The slots to come, soonest first: ms until each starts (0 once it is due). */
    next: {
        slot: ScheduledSlot;
        startsInMs: number;
    }[];
}
/** The view a `schedule` message carries (without `type`; a null `now` left out), or null if it is malformed. */
export declare function scheduleFromMessage(msg: ServerMessage): ScheduleView | null;
/** How far the hub's clock is ahead of the local one: `server_time_ms` minus the local time the view arrived. */
export declare function clockOffsetMs(view: ScheduleView, receivedAtMs: number): number;
/**
 * The countdowns at local time `localNowMs` (e.g. `Date.now()`), corrected by `clockOffsetMs` (the room's
 * `scheduleClockOffsetMs`): how long the slot on stage has left, and how long until each next slot starts.
 */
export declare function slotCountdown(view: ScheduleView, localNowMs: number, clockOffsetMs?: number): SlotCountdown;
/** The slot that lists `identity` among its people: the one on stage now, else the soonest next one; or null. */
export declare function slotFor(view: ScheduleView | null, identity: string | undefined): ScheduledSlot | null;
/** A countdown as `m:ss`, or `h:mm:ss` from an hour (rounded up to the second: 0.2 s left shows `0:01`). */
export declare function formatCountdown(ms: number): string;
