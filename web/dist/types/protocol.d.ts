export type Role = "moderator" | "speaker" | "audience";
export interface Participant {
    id: string;
    name: string;
}
export interface StageMember {
    id: string;
    name: string;
    role: "moderator" | "speaker";
    muted: boolean;
    connected: boolean;
    /** Asked not to be recorded (`set_recording_opt_out`): their audio is never written. Omitted when false. */
    recording_opt_out?: boolean;
}
export interface Counts {
    stage: number;
    audience: number;
    hands: number;
    total: number;
}
export interface Invite {
    /** The moderator who invited; absent when an administrator did (then `by_admin`). */
    by?: string;
    /** The administrator who invited (admin API). */
    by_admin?: string;
    /** Why, if they said. */
    reason?: string;
    expires_at_ms: number;
}
export interface YourState {
    role: Role;
    ceiling: Role;
    muted: boolean;
    hand_position?: number;
    /**
     * When your raised hand goes down by itself, in milliseconds since the Unix epoch (hub clock); absent when your
     * hand is down or the room's hands never expire.
     */
    hand_expires_at_ms?: number;
    invite?: Invite;
    /** You asked not to be recorded (`set_recording_opt_out`). Omitted when false. */
    recording_opt_out?: boolean;
}
export interface HandQueue {
    hands: Participant[];
    total: number;
}
export interface RoomSettings {
    open_mic: boolean;
    closed: boolean;
    stage_capacity: number;
    /** Chat is on (default true; absent from hubs without chat). */
    chat?: boolean;
    /** Slow mode: how long a non-moderator waits between chat messages, in ms (0: off). */
    chat_slow_mode_ms?: number;
}
/** A link pinned for everyone (`set_room_info`). */
export interface PinnedLink {
    /** An absolute http:// or https:// URL. Open it only when the user asks. */
    url: string;
    /** Text to show for the link. */
    title?: string;
}
/**
 * The room's description and pinned link, set by moderators (`set_room_info`); an empty object means neither. The
 * description is plain text with newlines: show it as text, never as HTML.
 */
export interface RoomInfo {
    description?: string;
    pinned_link?: PinnedLink;
}
/** One chat message (`chat` events, the snapshot's `chat`, `chat_history` pages). */
export interface ChatMessage {
    /** Grows within a room: a later message has a greater id. */
    id: number;
    from: Participant;
    text: string;
    /** When the hub took it, in milliseconds since the Unix epoch (hub clock). */
    at_ms: number;
}
/** A page of `chat_history`: oldest first; `next_before` (absent when there is nothing older) pages on. */
export interface ChatPage {
    messages: ChatMessage[];
    next_before?: number;
}
/** A `chat_deleted` event without its `type` and `seq`. */
export interface ChatDeleted {
    message_id: number;
    /** The moderator (or author) who deleted it. */
    by?: string;
    /** The administrator who deleted it (admin API). */
    by_admin?: string;
    reason?: string;
}
/** The room is being recorded: by a moderator (`by`) or an administrator (`by_admin`). */
export interface RecordingState {
    id: string;
    started_at_ms: number;
    by?: string;
    by_admin?: string;
}
/** The hub's reactions (`welcome.reactions`): the kinds `react` accepts, the aggregation window and the rate. */
export interface ReactionsConfig {
    kinds: string[];
    window_ms: number;
    per_second: number;
}
/** A `reactions` event: the room's reactions of one window, per kind (no seq: not room state). */
export interface ReactionCounts {
    counts: Record<string, number>;
    window_ms: number;
}
/** Why the room lowered your hand (`hand_lowered`): its time ran out, or a moderator cleared every hand. */
export interface HandLowered {
    cause: "expired" | "cleared";
    /** `cleared`: the moderator who cleared the hands. */
    by?: string;
    /** `cleared`: the administrator who did. */
    by_admin?: string;
    reason?: string;
}
export interface RoomSnapshot {
    room: string;
    seq: number;
    settings: RoomSettings;
    /** The description and pinned link; absent when the room has neither. */
    info?: RoomInfo;
    stage: StageMember[];
    counts: Counts;
    you: YourState;
    hands?: HandQueue;
    /** The last chat messages, oldest first (absent when there are none). */
    chat?: ChatMessage[];
    /** Older chat messages exist: page with `chat_history`. */
    chat_more?: boolean;
    /** Present while the room is being recorded. */
    recording?: RecordingState;
    /**
     * Which incarnation of the room's media this snapshot belongs to (omitted = 0 when the hub runs no media). It
     * changes whenever the room's audio moves to another hub: a peer connection negotiated under another epoch is dead.
     */
    media_epoch?: number;
}
export interface Limits {
    max_message_bytes: number;
    requests_per_second: number;
    request_burst: number;
}
export interface Welcome {
    protocol: number;
    participant: Participant;
    resume_token: string;
    resumed: boolean;
    grace_ms: number;
    heartbeat_interval_ms: number;
    limits: Limits;
    state: RoomSnapshot;
    /** TURN servers and this participant's credentials for them; absent when the hub has no TURN configured. */
    ice_servers?: IceServers;
    /** The reactions the hub accepts (absent from hubs without reactions). */
    reactions?: ReactionsConfig;
}
/** One ICE server, shaped like WebRTC's RTCIceServer (PROTOCOL.md, "TURN"). */
export interface IceServer {
    /** `turn:` and `turns:` URLs. */
    urls: string[];
    /** `<expiry>:<tag>`: opaque. */
    username: string;
    /** The TURN password: opaque. */
    credential: string;
}
/**
 * TURN servers with credentials the hub minted for this participant: in the welcome, and again in `ice_servers`
 * events when half their lifetime has passed.
 */
export interface IceServers {
    servers: IceServer[];
    /** When the credentials expire, in milliseconds since the Unix epoch (hub clock). */
    expires_at_ms: number;
}
export interface StageCause {
    kind: string;
    participant?: string;
    /** The moderator who did it (absent for an administrator, then `by_admin`, or for the participant's own act). */
    by?: string;
    /** The administrator who did it (admin API). */
    by_admin?: string;
    /** Why, if the moderator or administrator said. */
    reason?: string;
}
export interface AudienceEntry {
    id: string;
    name: string;
    hand_raised: boolean;
    connected: boolean;
}
export interface AudiencePage {
    entries: AudienceEntry[];
    next?: number;
    total: number;
}
export interface MediaTrack {
    mid: string;
    participant: string | null;
}
export interface Speaking {
    participant: string;
    level: number;
}
export type MediaTransportState = "connected" | "disconnected" | "failed";
/** The room's audio moved to another hub: every peer connection of an earlier media epoch is dead (no `seq`). */
export interface MediaMoved {
    type: "media_moved";
    media_epoch: number;
}
/** Any message from the hub: a reply (`ok`, `error`) or an event. */
export interface ServerMessage {
    type: string;
    id?: string | number | null;
    seq?: number;
    [field: string]: unknown;
}
/** The hub is draining (deploy, shutdown): reconnect at once, to another hub if there is one. */
export declare const CLOSE_SERVER_SHUTDOWN = 4007;
/**
 * Close codes after which the SDK does not reconnect by itself (see "Close codes" in PROTOCOL.md and MOBILE.md
 * section 7): the client left, was refused, removed or replaced, the room ended, the client's token was revoked (4012), or the client broke the WebSocket
 * protocol (1002) or sent text that is not UTF-8 (1007), which a reconnect would only repeat until the client is fixed.
 */
export declare const FINAL_CLOSE_CODES: ReadonlySet<number>;
/** `join` errors after which the hub closes the connection for good. */
export declare const FINAL_JOIN_ERRORS: ReadonlySet<string>;
export declare const CLOSE_REASONS: Readonly<Record<number, string>>;
/** A slot's status: waiting, its people checking in backstage, on stage, over, or called off. */
export type SlotStatus = "scheduled" | "backstage" | "active" | "completed" | "canceled";
/** A person's part in a slot. */
export type ScheduleRole = "host" | "co_host" | "speaker" | "moderator";
/** A person of a ScheduledSlot. */
export interface ScheduledPerson {
    /** Identity: the same as in access tokens. */
    id: string;
    /** Display name (absent when the schedule has none). */
    name?: string | null;
    role: ScheduleRole;
    /** Joined the backstage room, or was checked in through the admin API. */
    checked_in: boolean;
}
/** One slot of a summit stage's programme. Times are milliseconds since the Unix epoch, on the hub's clock. */
export interface ScheduledSlot {
    /** Stable across releases. */
    guid: string;
    title: string;
    /** A break: nobody is on stage. */
    is_break: boolean;
    status: SlotStatus;
    /** Start, as it stands now (an overrun or `extend` moves it). */
    start_ms: number;
    end_ms: number;
    /** In the schedule's order. */
    people: ScheduledPerson[];
}
/**
 * What a summit stage runs now and next (the `schedule` event without its `type`): sent in the stage's room and in
 * its backstage room after the join and on every change, always the whole view. Not part of the room state (no seq).
 */
export interface ScheduleView {
    summit: string;
    /** The stage's id in the summit. */
    stage: string;
    /** The stage's room. */
    room: string;
    /** The stage's backstage room, `{room}.backstage`. */
    backstage: string;
    /** The release the stage runs. */
    release: number;
    /** The slot on stage now; absent between slots. */
    now?: ScheduledSlot;
    /** Up to three slots still to come, soonest first (canceled ones left out). */
    next: ScheduledSlot[];
    /** The hub's clock when the view was made. */
    server_time_ms: number;
}
