// The room's state as one participant sees it, kept up to date from snapshots and events by the seq rules of
// PROTOCOL.md ("Sequence numbers and resync"). Pure: no sockets, no DOM, so it is unit-tested in Node.

import type {
  Counts,
  HandQueue,
  Participant,
  RoomSettings,
  RoomSnapshot,
  ServerMessage,
  StageCause,
  StageMember,
  YourState,
} from "./protocol.js";

/** What one message changed; the room emits an event of the same name for each. */
export type Change = "state" | "stage" | "hands" | "counts" | "you" | "settings";

/** Room state: the last snapshot with every later event applied. */
export interface RoomState {
  room: string;
  /** The seq of the last snapshot or event applied. */
  seq: number;
  settings: RoomSettings;
  stage: StageMember[];
  counts: Counts;
  you: YourState;
  /** The hand queue; only moderators receive it (undefined otherwise). */
  hands?: HandQueue;
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
  | { type: "invite_answered"; participant: string; accepted: boolean; expired: boolean };

export interface ApplyResult {
  changes: Change[];
  notices: Notice[];
}

const NOTHING: ApplyResult = { changes: [], notices: [] };

function clone<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

export class StateStore {
  private current: RoomState | null = null;
  /** Events whose seq is not greater than this are already reflected in the snapshot. */
  private snapshotSeq = -1;

  get state(): RoomState | null {
    return this.current;
  }

  /** Replaces all state with a snapshot (the welcome's, a `resync`'s). */
  replace(snapshot: RoomSnapshot): ApplyResult {
    const s = clone(snapshot);
    this.current = {
      room: s.room,
      seq: s.seq,
      settings: s.settings,
      stage: s.stage,
      counts: s.counts,
      you: s.you,
      hands: s.hands ?? (s.you.role === "moderator" ? { hands: [], total: 0 } : undefined),
      media_epoch: s.media_epoch ?? 0,
    };
    this.snapshotSeq = s.seq;
    return { changes: ["state", "stage", "hands", "counts", "you", "settings"], notices: [] };
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
