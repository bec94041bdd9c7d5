// Podium's browser client SDK. `const room = await Podium.connect({url, token, room})`.
// See web/README.md for the API and proto/PROTOCOL.md for the protocol underneath.

import { connect, PodiumError, Room } from "./room.js";
import { formatCountdown, slotCountdown, slotFor } from "./schedule.js";
import { StateStore } from "./state.js";

export { connect, PodiumError, Room, StateStore };
export { Emitter } from "./emitter.js";
export { MediaSession } from "./media.js";
export type { MediaInfo, MediaOptions, MediaStats } from "./media.js";
export { clockOffsetMs, formatCountdown, scheduleFromMessage, slotCountdown, slotFor } from "./schedule.js";
export type { SlotCountdown } from "./schedule.js";
export type {
  BackstageOptions,
  ClosedInfo,
  ConnectOptions,
  ConnectionState,
  ReconnectOptions,
  RoomEvents,
  SocketFactory,
  SocketLike,
} from "./room.js";
export type { Change, RoomState } from "./state.js";
export * from "./protocol.js";

/** The protocol version this SDK speaks. */
export const PROTOCOL_VERSION = 1;

export const Podium = { connect, Room, PodiumError, PROTOCOL_VERSION, slotCountdown, slotFor, formatCountdown };
export default Podium;
