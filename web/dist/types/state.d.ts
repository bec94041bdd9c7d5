import type { Counts, HandQueue, Participant, RoomSettings, RoomSnapshot, ServerMessage, StageCause, StageMember, YourState } from "./protocol.js";
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
export type Notice = {
    type: "participant_joined";
    participant: Participant;
} | {
    type: "participant_left";
    participant: string;
} | {
    type: "invite_answered";
    participant: string;
    accepted: boolean;
    expired: boolean;
};
export interface ApplyResult {
    changes: Change[];
    notices: Notice[];
}
export declare class StateStore {
    private current;
    /** Events whose seq is not greater than this are already reflected in the snapshot. */
    private snapshotSeq;
    get state(): RoomState | null;
    /** Replaces all state with a snapshot (the welcome's, a `resync`'s). */
    replace(snapshot: RoomSnapshot): ApplyResult;
    /**
     * A snapshot the client asked for (`get_state`). Its reply may arrive after newer events; a snapshot older than
     * what is already applied is ignored.
     */
    refresh(snapshot: RoomSnapshot): ApplyResult;
    /** A `media_moved` event (no seq): records the room's new media epoch. Returns whether it changed. */
    mediaMoved(epoch: number): boolean;
    /** Applies one event; returns what changed (nothing for stale, duplicate or unknown events). */
    apply(msg: ServerMessage): ApplyResult;
}
