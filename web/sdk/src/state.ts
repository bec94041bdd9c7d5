// The room's state as one participant sees it, kept up to date from snapshots and events by the seq rules of
// PROTOCOL.md ("Sequence numbers and resync"). Pure: no sockets, no DOM, so it is unit-tested in Node.

import type {
  ChatDeleted,
  ChatMessage,
  Counts,
  HandLowered,
  HandQueue,
  Participant,
  RecordingState,
  RoomInfo,
  RoomSettings,
  RoomSnapshot,
  ServerMessage,
  StageCause,
  StageMember,
  YourState,
} from "./protocol.js";

/** What one message changed; the room emits an event of the same name for each. */
export type Change = "state" | "stage" | "hands" | "counts" | "you" | "settings" | "info" | "chat" | "recording";

/** How many chat messages the state keeps by default (the newest; older ones are paged in with `chat_history`). */
export const DEFAULT_CHAT_LIMIT = 500;

/** Room state: the last snapshot with every later event applied. */
export interface RoomState {
  room: string;
  /** The seq of the last snapshot or event applied. */
  seq: number;
  settings: RoomSettings;
  /** The description and pinned link (an empty object when the room has neither). */
  info: RoomInfo;
  stage: StageMember[];
  counts: Counts;
  you: YourState;
  /** The hand queue; only moderators receive it (undefined otherwise). */
  hands?: HandQueue;
  /**
   * The chat messages known here, oldest first: the snapshot's, every later `chat` event, and older pages loaded with
   * `Room.loadOlderChat`; deleted ones removed. At most the store's chat limit (the newest are kept).
   */
  chat: ChatMessage[];
  /** Older chat messages exist than the first of `chat` (page them with `chat_history`). */
  chatMore: boolean;
  /** The recording in progress, or null. */
  recording: RecordingState | null;
  /**
   * The room's media epoch (0 when the hub runs no media): from the last snapshot, or a later `media_moved`. A peer
   * connection negotiated under another epoch is dead.
   */
  media_epoch: number;
  /** The cause of the last stage change, if an event told it. */
  lastStageCause?: StageCause;
}

/** Side notifications that are not part of the state. */
export type Notice =
  | { type: "participant_joined"; participant: Participant }
  | { type: "participant_left"; participant: string }
  | { type: "invite_answered"; participant: string; accepted: boolean; expired: boolean }
  | { type: "hand_lowered"; lowered: HandLowered }
  | { type: "chat"; message: ChatMessage }
  | { type: "chat_deleted"; deleted: ChatDeleted };

export interface ApplyResult {
  changes: Change[];
  notices: Notice[];
}

const NOTHING: ApplyResult = { changes: [], notices: [] };

function clone<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

/** An event's `by`, `by_admin` and `reason`, those present. */
function attribution(msg: ServerMessage): { by?: string; by_admin?: string; reason?: string } {
  const out: { by?: string; by_admin?: string; reason?: string } = {};
  if (typeof msg.by === "string") out.by = msg.by;
  if (typeof msg.by_admin === "string") out.by_admin = msg.by_admin;
  if (typeof msg.reason === "string") out.reason = msg.reason;
  return out;
}

export class StateStore {
  private current: RoomState | null = null;
  /** Events whose seq is not greater than this are already reflected in the snapshot. */
  private snapshotSeq = -1;

  /** `chatLimit`: how many chat messages to keep at most (the newest), default {@link DEFAULT_CHAT_LIMIT}. */
  constructor(private readonly chatLimit = DEFAULT_CHAT_LIMIT) {
    if (!(chatLimit >= 1)) throw new RangeError("chatLimit must be at least 1");
  }

  get state(): RoomState | null {
    return this.current;
  }

  /** Replaces all state with a snapshot (the welcome's, a `resync`'s). */
  replace(snapshot: RoomSnapshot): ApplyResult {
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
      hands: s.hands ?? (s.you.role === "moderator" ? { hands: [], total: 0 } : undefined),
      chat: chat.slice(cut),
      chatMore: s.chat_more === true || cut > 0,
      recording: s.recording ?? null,
      media_epoch: s.media_epoch ?? 0,
    };
    this.snapshotSeq = s.seq;
    return {
      changes: ["state", "stage", "hands", "counts", "you", "settings", "info", "chat", "recording"],
      notices: [],
    };
  }

  /**
   * A snapshot the client asked for (`get_state`). Its reply may arrive after newer events; a snapshot older than
   * what is already applied is ignored.
   */
  refresh(snapshot: RoomSnapshot): ApplyResult {
    if (this.current && snapshot.seq < this.current.seq) return NOTHING;
    return this.replace(snapshot);
  }

  /** A `media_moved` event (no seq): records the room's new media epoch. Returns whether it changed. */
  mediaMoved(epoch: number): boolean {
    if (!this.current || this.current.media_epoch === epoch) return false;
    this.current.media_epoch = epoch;
    return true;
  }

  /**
   * Puts a `chat_history` page that was asked for with `before` = the id of the first message held (or of none) in
   * front of the messages held: only messages older than those held are taken, and no more than the chat limit
   * leaves room for (the newest of the page then). Returns whether `chat` changed.
   */
  prependChat(page: { messages: ChatMessage[]; next_before?: number }): boolean {
    const s = this.current;
    if (!s) return false;
    const first = s.chat[0]?.id ?? Infinity;
    const older = page.messages.filter((m) => m.id < first).sort((a, b) => a.id - b.id);
    const room = Math.max(0, this.chatLimit - s.chat.length);
    const taken = older.slice(Math.max(0, older.length - room));
    const more = page.next_before !== undefined || taken.length < older.length;
    if (taken.length === 0 && more === s.chatMore) return false;
    s.chat = [...clone(taken), ...s.chat];
    s.chatMore = more;
    return true;
  }

  /** Applies one event; returns what changed (nothing for stale, duplicate or unknown events). */
  apply(msg: ServerMessage): ApplyResult {
    if (msg.type === "resync") {
      return this.replace(msg.state as RoomSnapshot);
    }
    const s = this.current;
    if (!s || typeof msg.seq !== "number") return NOTHING;
    // Reflected in the snapshot already, or older than what was applied (counts may repeat the current seq).
    if (msg.seq <= this.snapshotSeq || msg.seq < s.seq) return NOTHING;
    const changes: Change[] = [];
    const notices: Notice[] = [];
    switch (msg.type) {
      case "stage":
        s.stage = clone(msg.stage as StageMember[]);
        s.lastStageCause = msg.cause as StageCause | undefined;
        changes.push("stage");
        break;
      case "counts":
        s.counts = clone(msg.counts as Counts);
        changes.push("counts");
        break;
      case "you": {
        const you = clone(msg.you as YourState);
        const wasModerator = s.you.role === "moderator";
        s.you = you;
        changes.push("you");
        if (you.role === "moderator" && !wasModerator && !s.hands) {
          s.hands = { hands: [], total: 0 };
          changes.push("hands");
        } else if (you.role !== "moderator" && s.hands) {
          s.hands = undefined;
          changes.push("hands");
        }
        break;
      }
      case "hand_queue":
        s.hands = clone(msg.queue as HandQueue);
        changes.push("hands");
        break;
      case "settings":
        s.settings = clone(msg.settings as RoomSettings);
        changes.push("settings");
        break;
      case "room_info":
        s.info = clone((msg.info as RoomInfo | undefined) ?? {});
        changes.push("info");
        break;
      case "hand_lowered": {
        const lowered: HandLowered = { cause: msg.cause as HandLowered["cause"], ...attribution(msg) };
        notices.push({ type: "hand_lowered", lowered });
        break;
      }
      case "chat": {
        const message = clone(msg.message as ChatMessage);
        if (s.chat.some((m) => m.id === message.id)) return NOTHING;
        s.chat.push(message);
        // Ids only grow within a room, so this is at the end but for a message that crossed a page loaded meanwhile.
        if (s.chat.length > 1 && s.chat[s.chat.length - 2]!.id > message.id) s.chat.sort((a, b) => a.id - b.id);
        if (s.chat.length > this.chatLimit) {
          s.chat.splice(0, s.chat.length - this.chatLimit);
          s.chatMore = true;
        }
        changes.push("chat");
        notices.push({ type: "chat", message });
        break;
      }
      case "chat_deleted": {
        const deleted: ChatDeleted = { message_id: msg.message_id as number, ...attribution(msg) };
        const before = s.chat.length;
        s.chat = s.chat.filter((m) => m.id !== deleted.message_id);
        if (s.chat.length !== before) changes.push("chat");
        notices.push({ type: "chat_deleted", deleted });
        break;
      }
      case "recording":
        s.recording = msg.recording ? clone(msg.recording as RecordingState) : null;
        changes.push("recording");
        break;
      case "participant_joined":
        notices.push({ type: "participant_joined", participant: msg.participant as Participant });
        break;
      case "participant_left":
        notices.push({ type: "participant_left", participant: msg.participant as string });
        break;
      case "invite_answered":
        notices.push({
          type: "invite_answered",
          participant: msg.participant as string,
          accepted: msg.accepted as boolean,
          expired: msg.expired as boolean,
        });
        break;
      default:
        // Unknown events are ignored (the hub may add some within version 1), and they do not advance seq.
        return NOTHING;
    }
    s.seq = Math.max(s.seq, msg.seq);
    return { changes, notices };
  }
}
