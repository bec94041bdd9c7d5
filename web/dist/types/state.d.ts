import type { ChatDeleted, ChatMessage, Counts, HandLowered, HandQueue, Participant, RecordingState, RoomInfo, RoomSettings, RoomSnapshot, ServerMessage, StageCause, StageMember, YourState } from "./protocol.js";
/** What one message changed; the room emits an event of the same name for each. */
export type Change = "state" | "stage" | "hands" | "counts" | "you" | "settings" | "info" | "chat" | "recording";
/** How many chat messages the state keeps by default (the newest; older ones are paged in with `chat_history`). */
export declare const DEFAULT_CHAT_LIMIT = 500;
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
} | {
    type: "hand_lowered";
    lowered: HandLowered;
} | {
    type: "chat";
    message: ChatMessage;
} | {
    type: "chat_deleted";
    deleted: ChatDeleted;
};
export interface ApplyResult {
    changes: Change[];
    notices: Notice[];
}
export declare class StateStore {
    private readonly chatLimit;
    private current;
    /** Events whose seq is not greater than this are already reflected in the snapshot. */
    private snapshotSeq;
    /** `chatLimit`: how many chat messages to keep at most (the newest), default {@link DEFAULT_CHAT_LIMIT}. */
    constructor(chatLimit?: number);
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
    /**
     * Puts a `chat_history` page that was asked for with `before` = the id of the first message held (or of none) in
     * front of the messages held: only messages older than those held are taken, and no more than the chat limit
     * leaves room for (the newest of the page then). Returns whether `chat` changed.
     */
    prependChat(page: {
        messages: ChatMessage[];
        next_before?: number;
    }): boolean;
    /** Applies one event; returns what changed (nothing for stale, duplicate or unknown events). */
    apply(msg: ServerMessage): ApplyResult;
}
