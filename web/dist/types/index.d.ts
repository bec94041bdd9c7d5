import { connect, PodiumError, Room } from "./room.js";
import { formatCountdown, slotCountdown, slotFor } from "./schedule.js";
import { StateStore } from "./state.js";
export { connect, PodiumError, Room, StateStore };
export { Emitter } from "./emitter.js";
export { MediaSession } from "./media.js";
export type { MediaInfo, MediaOptions, MediaStats } from "./media.js";
export { clockOffsetMs, formatCountdown, scheduleFromMessage, slotCountdown, slotFor } from "./schedule.js";
export type { SlotCountdown } from "./schedule.js";
export type { BackstageOptions, ClosedInfo, ConnectOptions, ConnectionState, ReconnectOptions, RoomEvents, SocketFactory, SocketLike, } from "./room.js";
export type { Change, RoomState } from "./state.js";
export * from "./protocol.js";
/** The protocol version this SDK speaks. */
export declare const PROTOCOL_VERSION = 1;
export declare const Podium: {
    connect: typeof connect;
    Room: typeof Room;
    PodiumError: typeof PodiumError;
    PROTOCOL_VERSION: number;
    slotCountdown: typeof slotCountdown;
    slotFor: typeof slotFor;
    formatCountdown: typeof formatCountdown;
};
export default Podium;
