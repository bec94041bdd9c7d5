import { Emitter } from "./emitter.js";
import { type MediaInfo, type MediaOptions, type MediaStats } from "./media.js";
import { type AudiencePage, type ChatDeleted, type ChatMessage, type ChatPage, type Counts, type HandLowered, type HandQueue, type Participant, type PinnedLink, type ReactionCounts, type ReactionsConfig, type RecordingState, type Role, type RoomInfo, type RoomSettings, type ScheduledSlot, type ScheduleView, type Speaking, type StageMember, type Welcome, type YourState } from "./protocol.js";
import { type SlotCountdown } from "./schedule.js";
import { type RoomState } from "./state.js";
/** The part of the browser's WebSocket the client uses (tests pass a fake). */
export interface SocketLike {
    readyState: number;
    onopen: ((ev: unknown) => void) | null;
    onmessage: ((ev: {
        data: unknown;
    }) => void) | null;
    onclose: ((ev: {
        code: number;
        reason: string;
    }) => void) | null;
    onerror: ((ev: unknown) => void) | null;
    send(data: string): void;
    close(code?: number, reason?: string): void;
}
export type SocketFactory = (url: string) => SocketLike;
export interface ReconnectOptions {
    /** First delay before reconnecting, in ms (default 500). */
    initialDelayMs?: number;
    /** Longest delay between attempts, in ms (default 10000). */
    maxDelayMs?: number;
    /** Give up after this many failed attempts in a row (default: never). */
    maxAttempts?: number;
}
export interface ConnectOptions {
    /** The hub's websocket URL, e.g. `ws://127.0.0.1:7880/v1/ws`. Give `url`, `urls`, or both (`url` is tried first). */
    url?: string;
    /**
     * Several hubs' websocket URLs, tried in turn: the first join goes to the first URL that opens (the next is tried
     * when a websocket cannot be opened), and every reconnect attempt moves on to the next URL, so that a draining
     * (close 4007) or dead hub is skipped.
     */
    urls?: string[];
    /** The access token, or a function returning a fresh one (called on every (re)connect). */
    token: string | (() => string | Promise<string>);
    /** The room; required when the token is valid for any room (`*`). */
    room?: string;
    /** `join`'s role: `audience` to join the audience with a moderator token, or a stage role (moderator tokens). */
    role?: Role;
    /** WebRTC settings, or `false` for signaling only. */
    media?: MediaOptions | false;
    reconnect?: ReconnectOptions | false;
    /** How long a request may wait for its reply (default 15000 ms). */
    requestTimeoutMs?: number;
    /** How many chat messages `room.chat` keeps at most, the newest (default 500). */
    chatLimit?: number;
    /** Creates the websocket (default: the browser's WebSocket). */
    socket?: SocketFactory;
}
/** `joinBackstage`'s options: the rest (hub URLs, reconnect, timeouts) are the stage room's. */
export interface BackstageOptions {
    /** An access token for the backstage room (ceiling speaker or moderator), or a function returning a fresh one. */
    token: string | (() => string | Promise<string>);
    /** WebRTC settings for the backstage connection, or `false` (default: the stage room's). */
    media?: MediaOptions | false;
}
/** A refused request (`error` reply), or a request that could not complete (`disconnected`, `timeout`). */
export declare class PodiumError extends Error {
    /** The protocol's error code (`forbidden`, `not_found`, ...), or `disconnected` / `timeout` / `closed`. */
    readonly code: string;
    /** The request type that failed. */
    readonly request?: string | undefined;
    constructor(
    /** The protocol's error code (`forbidden`, `not_found`, ...), or `disconnected` / `timeout` / `closed`. */
    code: string, message: string, 
    /** The request type that failed. */
    request?: string | undefined);
}
export type ConnectionState = "connecting" | "connected" | "reconnecting" | "closed";
export interface ClosedInfo {
    /** The websocket close code (see "Close codes"), or 0 when the client gave up reconnecting. */
    code: number;
    reason: string;
    /** The join error that ended it, if one did. */
    error?: PodiumError;
}
export interface RoomEvents {
    /** The whole state after a snapshot (welcome, resync, resume). */
    state: RoomState;
    stage: StageMember[];
    /** The hand queue (moderators only; undefined for others). */
    hands: HandQueue | undefined;
    counts: Counts;
    you: YourState;
    settings: RoomSettings;
    /** The description and pinned link changed (`room_info`), or a snapshot brought them. */
    info: RoomInfo;
    /** The room lowered your raised hand: it expired, or a moderator cleared the hands (a `you` follows). */
    hand_lowered: HandLowered;
    /** The room's reactions of one window, per kind (at most one per window). */
    reactions: ReactionCounts;
    /** A new chat message (`room.chat` has it too). */
    chat: ChatMessage;
    /** `room.chat` changed: a message came, was deleted, older ones were loaded, or a snapshot replaced them. */
    chat_messages: ChatMessage[];
    /** A chat message was deleted (by its author, a moderator or an administrator). */
    chat_deleted: ChatDeleted;
    /** Recording started (the state) or stopped (null); also after a snapshot. */
    recording: RecordingState | null;
    /** Stage members speaking now, loudest first. */
    speakers: Speaking[];
    media: MediaInfo;
    connection: ConnectionState;
    /** After an automatic reconnect: `resumed` false means the session was lost and state was replaced. */
    reconnected: {
        resumed: boolean;
    };
    closed: ClosedInfo;
    participant_joined: Participant;
    participant_left: string;
    invite_answered: {
        participant: string;
        accepted: boolean;
        expired: boolean;
    };
    /** Summit stages: what the stage runs now and next (the whole view, on every change). */
    schedule: ScheduleView;
    /** The backstage room once joined (`joinBackstage`), then null when it is left (promotion, `leaveBackstage`, a close). */
    backstage: Room | null;
}
export declare class Room extends Emitter<RoomEvents> {
    private readonly options;
    private readonly store;
    private ws;
    private nextId;
    private pending;
    private welcomeMsg;
    private connState;
    private readonly urls;
    /** Index in `urls` of the hub of the current (or last) connection. */
    private urlIndex;
    /** Reconnect attempts since the last successful join (for `maxAttempts`). */
    private attempts;
    /** The exponent of the next backoff delay. */
    private backoff;
    /** The next reconnect goes at once (see `firstAttemptAtOnce`). */
    private reconnectAtOnce;
    private reconnectTimer;
    private heartbeat;
    private speaking;
    private mediaSession;
    private mediaInfo;
    private scheduleView;
    private scheduleOffset;
    private backstageRoom;
    private backstageJoin;
    constructor(options: ConnectOptions);
    /** The websocket URL of the hub this room is connected (or connecting) to. */
    get url(): string;
    /** The current room state (null before the first welcome). */
    get state(): RoomState | null;
    get you(): YourState | undefined;
    get stage(): StageMember[];
    get counts(): Counts | undefined;
    get hands(): HandQueue | undefined;
    get settings(): RoomSettings | undefined;
    /** The description and pinned link (an empty object when the room has neither; undefined before the welcome). */
    get info(): RoomInfo | undefined;
    /**
     * When your raised hand goes down by itself, in ms since the Unix epoch on the hub's clock (`you.hand_expires_at_ms`);
     * null while your hand is down or when the room's hands never expire.
     */
    get handExpiresAt(): number | null;
    /** The chat messages known here, oldest first (see `RoomState.chat`). */
    get chat(): ChatMessage[];
    /** Older chat messages exist than the first of `chat`: `loadOlderChat()` fetches them. */
    get chatMore(): boolean;
    /** The recording in progress, or null. */
    get recording(): RecordingState | null;
    /** The reactions the hub accepts (`welcome.reactions`), or null when it has none. */
    get reactionsConfig(): ReactionsConfig | null;
    /** Who you are: identity and display name. */
    get participant(): Participant | undefined;
    /** The last welcome (negotiated protocol, resume token, limits). */
    get welcome(): Welcome | null;
    get connection(): ConnectionState;
    get speakers(): Speaking[];
    get media(): MediaInfo;
    /** The last `schedule` view (summit stages and their backstage rooms), or null. */
    get schedule(): ScheduleView | null;
    /** How far the hub's clock is ahead of this one: `server_time_ms` minus `Date.now()` when the view arrived. */
    get scheduleClockOffsetMs(): number;
    /** The backstage room joined with `joinBackstage`, while it is open. */
    get backstage(): Room | null;
    /** The schedule's `now` or `next` slot that lists you (`now` first), or null. */
    mySlot(): ScheduledSlot | null;
    /** The schedule's countdowns at local time `localNowMs`, corrected to the hub's clock; null without a schedule. */
    scheduleCountdown(localNowMs?: number): SlotCountdown | null;
    /**
     * Joins the stage's backstage room (`schedule.backstage`) in the audience, on a second connection to the same
     * hub(s): joining it checks you in, and the hub puts you on its stage for a mic check. When this room then puts you
     * on its stage (your slot starts), the backstage room is left by itself. Resolves with the backstage Room (the
     * one already open, if any); rejects without a schedule, or if you are on this room's stage already.
     */
    joinBackstage(options: BackstageOptions): Promise<Room>;
    /** Leaves the backstage room, if one is open. */
    leaveBackstage(): Promise<void>;
    private openBackstage;
    private checkBackstageAllowed;
    /** Totals of the peer connection's audio stats (zeros without media). */
    stats(): Promise<MediaStats | null>;
    /**
     * Tells the SDK the device's network changed (a native shell's reachability callback, say): the peer connection
     * restarts ICE at once (PROTOCOL.md, "Network changes"). The SDK already does this by itself on the browser's
     * `online` event and on `navigator.connection` `change`, and when ICE stays disconnected or fails.
     */
    networkChanged(): void;
    /** Plays the room's audio again; call from a click handler if the browser blocked autoplay. */
    resumeAudio(): void;
    raiseHand(): Promise<{
        position: number | null;
        promoted: boolean;
    }>;
    lowerHand(): Promise<void>;
    approveHand(participant: string): Promise<void>;
    inviteToStage(participant: string): Promise<void>;
    cancelInvite(participant: string): Promise<void>;
    acceptInvite(): Promise<void>;
    declineInvite(): Promise<void>;
    stepDown(): Promise<void>;
    moveToAudience(participant: string): Promise<void>;
    /** Mutes or unmutes yourself (taking the stage leaves you muted). */
    setMuted(muted: boolean): Promise<void>;
    /** Mutes a stage member (moderators; there is no remote unmute). */
    mute(participant: string): Promise<void>;
    kick(participant: string): Promise<void>;
    ban(participant: string): Promise<void>;
    unban(participant: string): Promise<void>;
    makeModerator(participant: string): Promise<void>;
    revokeModerator(participant: string): Promise<void>;
    handover(stage: {
        participant: string;
        role: "speaker" | "moderator";
    }[]): Promise<void>;
    updateSettings(settings: Partial<RoomSettings>): Promise<void>;
    /**
     * Sets or clears the description and pinned link (moderators): a field left out stays as it is, `null` (or an
     * empty description) clears it.
     */
    setRoomInfo(info: {
        description?: string | null;
        pinned_link?: PinnedLink | null;
        reason?: string;
    }): Promise<void>;
    /** Lowers every raised hand (moderators); each raiser gets `hand_lowered` with cause `cleared`. */
    clearHands(reason?: string): Promise<void>;
    /**
     * Sends a reaction, one of `reactionsConfig.kinds`. Everyone sees the room's reactions summed per window in
     * `reactions` events; over the hub's rate this rejects with `rate_limited` (the reaction is dropped).
     */
    react(reaction: string): Promise<void>;
    /**
     * Sends a chat message; resolves with its id. Rejects with `forbidden` when chat is off, `rate_limited` in slow mode
     * or over the room's rate, `bad_request` for empty or too long text.
     */
    sendChat(text: string): Promise<number>;
    /** Deletes a chat message: your own, or anyone's as a moderator. */
    deleteChat(messageId: number, reason?: string): Promise<void>;
    /** One page of the chat's history: messages with ids below `before` (the newest when absent), oldest first. */
    chatHistory(options?: {
        before?: number;
        limit?: number;
    }): Promise<ChatPage>;
    /**
     * Loads the page of chat messages before the first one held into `room.chat` (emits `chat_messages`); resolves with the
     * messages added (none when there is nothing older, or `room.chat` holds `chatLimit` messages already).
     */
    loadOlderChat(limit?: number): Promise<ChatMessage[]>;
    /** Starts recording the room (moderators); `conflict` when it records already. */
    startRecording(reason?: string): Promise<void>;
    /** Stops the recording (moderators); `conflict` when the room does not record. */
    stopRecording(reason?: string): Promise<void>;
    /** Asks not to be recorded (or withdraws that): your audio is then never written. */
    setRecordingOptOut(optOut: boolean): Promise<void>;
    inviteToRoom(identity: string): Promise<void>;
    uninviteFromRoom(identity: string): Promise<void>;
    listAudience(options?: {
        after?: number;
        limit?: number;
    }): Promise<AudiencePage>;
    endRoom(): Promise<void>;
    ping(): Promise<void>;
    /** Fetches a fresh snapshot and applies it. */
    getState(): Promise<RoomState | null>;
    /** Leaves the room now (no grace period) and closes the connection. */
    leave(): Promise<void>;
    /**
     * Sends any request and resolves with its `ok` result; rejects with a PodiumError carrying the protocol code.
     * Requests made while the connection is down are rejected with `disconnected`.
     */
    request(type: string, fields?: Record<string, unknown>): Promise<unknown>;
    /**
     * Connects and joins; resolves with the welcome or rejects. With several URLs, a hub that cannot be reached (the
     * websocket does not open, or drops or times out before the welcome) is skipped for the next; a refused join is
     * not retried.
     */
    open(): Promise<Welcome>;
    private connectOnce;
    private startOrKeepMedia;
    private onMessage;
    /**
     * PROTOCOL.md "Media" step 5: a peer connection negotiated in another media epoch than the room's is dead; replace
     * it. Both a `media_moved` and a later snapshot may announce the same epoch: only the first replaces it.
     */
    private followMediaEpoch;
    /** Emits the events for what a snapshot or event changed, and lets the media follow `you`. */
    private applied;
    private onSocketClosed;
    /**
     * Whether the first reconnect after losing a joined connection goes without a backoff delay (PROTOCOL.md "Grace
     * and resume", MOBILE.md section 8): when it goes to another hub (several URLs: the hub that dropped us may be
     * dead, another resumes the session at once), and after 4007 always (the hub is draining). With a single hub, an
     * abrupt drop waits the first backoff step.
     */
    private firstAttemptAtOnce;
    private scheduleReconnect;
    /** Closes the current socket without `leave` (the hub keeps the session for the grace period). */
    private dropSocket;
    /** Simulates a dropped connection (for tests and "reconnect now" buttons): reconnects and resumes. */
    reconnectNow(): void;
    private startHeartbeat;
    private stopHeartbeat;
    private rejectPending;
    private setConnection;
    private shutdown;
    /** Closes the connection without `leave` (the session stays in its grace period). */
    disconnect(): void;
}
/** Connects to a hub and joins a room; resolves once joined (with the welcome's state applied). */
export declare function connect(options: ConnectOptions): Promise<Room>;
