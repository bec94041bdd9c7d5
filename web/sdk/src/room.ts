// A connection to one Podium room: join, requests and replies, room state as events, automatic reconnect and
// resume, and the media session; in a summit stage's room, its schedule and the backstage room.

import { Emitter } from "./emitter.js";
import { MediaSession, type MediaInfo, type MediaOptions, type MediaStats } from "./media.js";
import {
  CLOSE_REASONS,
  CLOSE_SERVER_SHUTDOWN,
  FINAL_CLOSE_CODES,
  FINAL_JOIN_ERRORS,
  type AudiencePage,
  type ChatDeleted,
  type ChatMessage,
  type ChatPage,
  type Counts,
  type HandLowered,
  type HandQueue,
  type IceServers,
  type MediaTrack,
  type MediaTransportState,
  type Participant,
  type PinnedLink,
  type ReactionCounts,
  type ReactionsConfig,
  type RecordingState,
  type Role,
  type RoomInfo,
  type RoomSettings,
  type RoomSnapshot,
  type ScheduledSlot,
  type ScheduleView,
  type ServerMessage,
  type Speaking,
  type StageMember,
  type Welcome,
  type YourState,
} from "./protocol.js";
import { clockOffsetMs, scheduleFromMessage, slotCountdown, slotFor, type SlotCountdown } from "./schedule.js";
import { type ApplyResult, type RoomState, StateStore } from "./state.js";

/** The part of the browser's WebSocket the client uses (tests pass a fake). */
export interface SocketLike {
  readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
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

/** `url` and `urls` as one list, `url` first, without repeats. */
function hubUrls(options: ConnectOptions): string[] {
  const all = [...(options.url ? [options.url] : []), ...(options.urls ?? [])];
  const urls = all.filter((u, i) => all.indexOf(u) === i);
  if (urls.length === 0) throw new TypeError("Podium: give the hub's websocket URL (`url` or `urls`)");
  return urls;
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
export class PodiumError extends Error {
  constructor(
    /** The protocol's error code (`forbidden`, `not_found`, ...), or `disconnected` / `timeout` / `closed`. */
    readonly code: string,
    message: string,
    /** The request type that failed. */
    readonly request?: string,
  ) {
    super(message);
    this.name = "PodiumError";
  }
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
  reconnected: { resumed: boolean };
  closed: ClosedInfo;
  participant_joined: Participant;
  participant_left: string;
  invite_answered: { participant: string; accepted: boolean; expired: boolean };
  /** Summit stages: what the stage runs now and next (the whole view, on every change). */
  schedule: ScheduleView;
  /** The backstage room once joined (`joinBackstage`), then null when it is left (promotion, `leaveBackstage`, a close). */
  backstage: Room | null;
}

interface Pending {
  type: string;
  resolve: (v: unknown) => void;
  reject: (e: PodiumError) => void;
  timer: ReturnType<typeof setTimeout>;
}

const OPEN = 1;
/** The close code a websocket reports when it dropped without a close frame. */
const CLOSE_DROPPED = 1006;

function defaultSocket(url: string): SocketLike {
  return new WebSocket(url) as unknown as SocketLike;
}

function isStageRole(role: Role | undefined): boolean {
  return role === "speaker" || role === "moderator";
}

function hasWebRtc(): boolean {
  return typeof RTCPeerConnection !== "undefined" && typeof navigator !== "undefined";
}

export class Room extends Emitter<RoomEvents> {
  private readonly store: StateStore;
  private ws: SocketLike | null = null;
  private nextId = 1;
  private pending = new Map<number, Pending>();
  private welcomeMsg: Welcome | null = null;
  private connState: ConnectionState = "connecting";
  private readonly urls: string[];
  /** Index in `urls` of the hub of the current (or last) connection. */
  private urlIndex = 0;
  /** Reconnect attempts since the last successful join (for `maxAttempts`). */
  private attempts = 0;
  /** The exponent of the next backoff delay. */
  private backoff = 0;
  /** The next reconnect goes at once (see `firstAttemptAtOnce`). */
  private reconnectAtOnce = false;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private heartbeat: ReturnType<typeof setInterval> | null = null;
  private speaking = new Map<string, number>();
  private mediaSession: MediaSession | null = null;
  private mediaInfo: MediaInfo = { state: "new", tracks: [], publishing: false, epoch: 0, iceRestarts: 0 };
  private scheduleView: ScheduleView | null = null;
  private scheduleOffset = 0;
  private backstageRoom: Room | null = null;
  private backstageJoin: Promise<Room> | null = null;

  constructor(private readonly options: ConnectOptions) {
    super();
    this.urls = hubUrls(options);
    this.store = new StateStore(options.chatLimit);
  }

  /** The websocket URL of the hub this room is connected (or connecting) to. */
  get url(): string {
    return this.urls[this.urlIndex]!;
  }

  // ---- state ----

  /** The current room state (null before the first welcome). */
  get state(): RoomState | null {
    return this.store.state;
  }
  get you(): YourState | undefined {
    return this.store.state?.you;
  }
  get stage(): StageMember[] {
    return this.store.state?.stage ?? [];
  }
  get counts(): Counts | undefined {
    return this.store.state?.counts;
  }
  get hands(): HandQueue | undefined {
    return this.store.state?.hands;
  }
  get settings(): RoomSettings | undefined {
    return this.store.state?.settings;
  }
  /** The description and pinned link (an empty object when the room has neither; undefined before the welcome). */
  get info(): RoomInfo | undefined {
    return this.store.state?.info;
  }
  /**
   * When your raised hand goes down by itself, in ms since the Unix epoch on the hub's clock (`you.hand_expires_at_ms`);
   * null while your hand is down or when the room's hands never expire.
   */
  get handExpiresAt(): number | null {
    return this.store.state?.you.hand_expires_at_ms ?? null;
  }
  /** The chat messages known here, oldest first (see `RoomState.chat`). */
  get chat(): ChatMessage[] {
    return this.store.state?.chat ?? [];
  }
  /** Older chat messages exist than the first of `chat`: `loadOlderChat()` fetches them. */
  get chatMore(): boolean {
    return this.store.state?.chatMore ?? false;
  }
  /** The recording in progress, or null. */
  get recording(): RecordingState | null {
    return this.store.state?.recording ?? null;
  }
  /** The reactions the hub accepts (`welcome.reactions`), or null when it has none. */
  get reactionsConfig(): ReactionsConfig | null {
    return this.welcomeMsg?.reactions ?? null;
  }
  /** Who you are: identity and display name. */
  get participant(): Participant | undefined {
    return this.welcomeMsg?.participant;
  }
  /** The last welcome (negotiated protocol, resume token, limits). */
  get welcome(): Welcome | null {
    return this.welcomeMsg;
  }
  get connection(): ConnectionState {
    return this.connState;
  }
  get speakers(): Speaking[] {
    return [...this.speaking.entries()]
      .map(([participant, level]) => ({ participant, level }))
      .sort((a, b) => b.level - a.level);
  }
  get media(): MediaInfo {
    return this.mediaInfo;
  }

  // ---- summit stages: schedule and backstage ----

  /** The last `schedule` view (summit stages and their backstage rooms), or null. */
  get schedule(): ScheduleView | null {
    return this.scheduleView;
  }
  /** How far the hub's clock is ahead of this one: `server_time_ms` minus `Date.now()` when the view arrived. */
  get scheduleClockOffsetMs(): number {
    return this.scheduleOffset;
  }
  /** The backstage room joined with `joinBackstage`, while it is open. */
  get backstage(): Room | null {
    return this.backstageRoom;
  }

  /** The schedule's `now` or `next` slot that lists you (`now` first), or null. */
  mySlot(): ScheduledSlot | null {
    return slotFor(this.scheduleView, this.participant?.id);
  }

  /** The schedule's countdowns at local time `localNowMs`, corrected to the hub's clock; null without a schedule. */
  scheduleCountdown(localNowMs = Date.now()): SlotCountdown | null {
    return this.scheduleView ? slotCountdown(this.scheduleView, localNowMs, this.scheduleOffset) : null;
  }

  /**
   * Joins the stage's backstage room (`schedule.backstage`) in the audience, on a second connection to the same
   * hub(s): joining it checks you in, and the hub puts you on its stage for a mic check. When this room then puts you
   * on its stage (your slot starts), the backstage room is left by itself. Resolves with the backstage Room (the
   * one already open, if any); rejects without a schedule, or if you are on this room's stage already.
   */
  joinBackstage(options: BackstageOptions): Promise<Room> {
    if (this.backstageRoom) return Promise.resolve(this.backstageRoom);
    if (!this.backstageJoin) {
      this.backstageJoin = this.openBackstage(options).finally(() => {
        this.backstageJoin = null;
      });
    }
    return this.backstageJoin;
  }

  /** Leaves the backstage room, if one is open. */
  async leaveBackstage(): Promise<void> {
    const backstage = this.backstageRoom;
    if (!backstage) return;
    this.backstageRoom = null;
    this.emit("backstage", null);
    await backstage.leave().catch(() => undefined);
  }

  private async openBackstage(options: BackstageOptions): Promise<Room> {
    const view = this.scheduleView;
    if (!view) throw new PodiumError("not_found", "no schedule: not a summit stage's room", "join");
    this.checkBackstageAllowed();
    // The hub this room reached first, then the others in turn.
    const urls = [...this.urls.slice(this.urlIndex), ...this.urls.slice(0, this.urlIndex)];
    const backstage = new Room({
      urls,
      token: options.token,
      room: view.backstage,
      role: "audience",
      media: options.media === undefined ? this.options.media : options.media,
      reconnect: this.options.reconnect,
      requestTimeoutMs: this.options.requestTimeoutMs,
      chatLimit: this.options.chatLimit,
      socket: this.options.socket,
    });
    await backstage.open();
    try {
      // Promoted here (or gone) while the backstage join was on its way: it is over already.
      this.checkBackstageAllowed();
    } catch (e) {
      await backstage.leave().catch(() => undefined);
      throw e;
    }
    this.backstageRoom = backstage;
    backstage.on("closed", () => {
      if (this.backstageRoom !== backstage) return;
      this.backstageRoom = null;
      this.emit("backstage", null);
    });
    this.emit("backstage", backstage);
    return backstage;
  }

  private checkBackstageAllowed(): void {
    if (this.connState === "closed") throw new PodiumError("closed", "the stage room is closed", "join");
    if (isStageRole(this.you?.role)) throw new PodiumError("conflict", "you are on the stage already", "join");
  }

  /** Totals of the peer connection's audio stats (zeros without media). */
  stats(): Promise<MediaStats | null> {
    return this.mediaSession ? this.mediaSession.stats() : Promise.resolve(null);
  }

  /**
   * Tells the SDK the device's network changed (a native shell's reachability callback, say): the peer connection
   * restarts ICE at once (PROTOCOL.md, "Network changes"). The SDK already does this by itself on the browser's
   * `online` event and on `navigator.connection` `change`, and when ICE stays disconnected or fails.
   */
  networkChanged(): void {
    this.mediaSession?.networkChanged();
  }

  /** Plays the room's audio again; call from a click handler if the browser blocked autoplay. */
  resumeAudio(): void {
    this.mediaSession?.resumeAudio();
  }

  // ---- actions (one per protocol request) ----

  raiseHand(): Promise<{ position: number | null; promoted: boolean }> {
    return this.request("raise_hand") as Promise<{ position: number | null; promoted: boolean }>;
  }
  lowerHand(): Promise<void> {
    return this.request("lower_hand") as Promise<void>;
  }
  approveHand(participant: string): Promise<void> {
    return this.request("approve_hand", { participant }) as Promise<void>;
  }
  inviteToStage(participant: string): Promise<void> {
    return this.request("invite_to_stage", { participant }) as Promise<void>;
  }
  cancelInvite(participant: string): Promise<void> {
    return this.request("cancel_invite", { participant }) as Promise<void>;
  }
  acceptInvite(): Promise<void> {
    return this.request("accept_invite") as Promise<void>;
  }
  declineInvite(): Promise<void> {
    return this.request("decline_invite") as Promise<void>;
  }
  stepDown(): Promise<void> {
    return this.request("step_down") as Promise<void>;
  }
  moveToAudience(participant: string): Promise<void> {
    return this.request("move_to_audience", { participant }) as Promise<void>;
  }
  /** Mutes or unmutes yourself (taking the stage leaves you muted). */
  setMuted(muted: boolean): Promise<void> {
    return this.request("set_muted", { muted }) as Promise<void>;
  }
  /** Mutes a stage member (moderators; there is no remote unmute). */
  mute(participant: string): Promise<void> {
    return this.request("mute", { participant }) as Promise<void>;
  }
  kick(participant: string): Promise<void> {
    return this.request("kick", { participant }) as Promise<void>;
  }
  ban(participant: string): Promise<void> {
    return this.request("ban", { participant }) as Promise<void>;
  }
  unban(participant: string): Promise<void> {
    return this.request("unban", { participant }) as Promise<void>;
  }
  makeModerator(participant: string): Promise<void> {
    return this.request("make_moderator", { participant }) as Promise<void>;
  }
  revokeModerator(participant: string): Promise<void> {
    return this.request("revoke_moderator", { participant }) as Promise<void>;
  }
  handover(stage: { participant: string; role: "speaker" | "moderator" }[]): Promise<void> {
    return this.request("handover", { stage }) as Promise<void>;
  }
  updateSettings(settings: Partial<RoomSettings>): Promise<void> {
    return this.request("update_settings", { ...settings }) as Promise<void>;
  }
  /**
   * Sets or clears the description and pinned link (moderators): a field left out stays as it is, `null` (or an
   * empty description) clears it.
   */
  setRoomInfo(info: { description?: string | null; pinned_link?: PinnedLink | null; reason?: string }): Promise<void> {
    return this.request("set_room_info", { ...info }) as Promise<void>;
  }
  /** Lowers every raised hand (moderators); each raiser gets `hand_lowered` with cause `cleared`. */
  clearHands(reason?: string): Promise<void> {
    return this.request("clear_hands", reason === undefined ? {} : { reason }) as Promise<void>;
  }
  /**
   * Sends a reaction, one of `reactionsConfig.kinds`. Everyone sees the room's reactions summed per window in
   * `reactions` events; over the hub's rate this rejects with `rate_limited` (the reaction is dropped).
   */
  react(reaction: string): Promise<void> {
    return this.request("react", { reaction }) as Promise<void>;
  }
  /**
   * Sends a chat message; resolves with its id. Rejects with `forbidden` when chat is off, `rate_limited` in slow mode
   * or over the room's rate, `bad_request` for empty or too long text.
   */
  async sendChat(text: string): Promise<number> {
    const result = (await this.request("send_chat", { text })) as { message_id: number };
    return result.message_id;
  }
  /** Deletes a chat message: your own, or anyone's as a moderator. */
  deleteChat(messageId: number, reason?: string): Promise<void> {
    const fields: Record<string, unknown> = { message_id: messageId };
    if (reason !== undefined) fields.reason = reason;
    return this.request("delete_chat", fields) as Promise<void>;
  }
  /** One page of the chat's history: messages with ids below `before` (the newest when absent), oldest first. */
  chatHistory(options: { before?: number; limit?: number } = {}): Promise<ChatPage> {
    return this.request("chat_history", { ...options }) as Promise<ChatPage>;
  }
  /**
   * Loads the page of chat messages before the first one held into `room.chat` (emits `chat_messages`); resolves with the
   * messages added (none when there is nothing older, or `room.chat` holds `chatLimit` messages already).
   */
  async loadOlderChat(limit = 50): Promise<ChatMessage[]> {
    const first = this.chat[0]?.id;
    const page = await this.chatHistory(first === undefined ? { limit } : { before: first, limit });
    const before = new Set(this.chat.map((m) => m.id));
    if (this.store.prependChat(page)) this.emit("chat_messages", this.chat);
    return this.chat.filter((m) => !before.has(m.id));
  }
  /** Starts recording the room (moderators); `conflict` when it records already. */
  startRecording(reason?: string): Promise<void> {
    return this.request("start_recording", reason === undefined ? {} : { reason }) as Promise<void>;
  }
  /** Stops the recording (moderators); `conflict` when the room does not record. */
  stopRecording(reason?: string): Promise<void> {
    return this.request("stop_recording", reason === undefined ? {} : { reason }) as Promise<void>;
  }
  /** Asks not to be recorded (or withdraws that): your audio is then never written. */
  setRecordingOptOut(optOut: boolean): Promise<void> {
    return this.request("set_recording_opt_out", { opt_out: optOut }) as Promise<void>;
  }
  inviteToRoom(identity: string): Promise<void> {
    return this.request("invite_to_room", { identity }) as Promise<void>;
  }
  uninviteFromRoom(identity: string): Promise<void> {
    return this.request("uninvite_from_room", { identity }) as Promise<void>;
  }
  listAudience(options: { after?: number; limit?: number } = {}): Promise<AudiencePage> {
    return this.request("list_audience", { ...options }) as Promise<AudiencePage>;
  }
  endRoom(): Promise<void> {
    return this.request("end_room") as Promise<void>;
  }
  ping(): Promise<void> {
    return this.request("ping") as Promise<void>;
  }
  /** Fetches a fresh snapshot and applies it. */
  async getState(): Promise<RoomState | null> {
    const snapshot = (await this.request("get_state")) as RoomSnapshot;
    const result = this.store.refresh(snapshot);
    this.applied(result);
    if (result.changes.length > 0) this.followMediaEpoch();
    return this.store.state;
  }
  /** Leaves the room now (no grace period) and closes the connection. */
  async leave(): Promise<void> {
    try {
      if (this.connState === "connected") await this.request("leave");
    } finally {
      this.shutdown({ code: 1000, reason: "leave" });
    }
  }

  /**
   * Sends any request and resolves with its `ok` result; rejects with a PodiumError carrying the protocol code.
   * Requests made while the connection is down are rejected with `disconnected`.
   */
  request(type: string, fields: Record<string, unknown> = {}): Promise<unknown> {
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN || (this.connState !== "connected" && type !== "join")) {
      return Promise.reject(new PodiumError("disconnected", `not connected (${this.connState})`, type));
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.pending.delete(id)) reject(new PodiumError("timeout", `no reply to ${type}`, type));
      }, this.options.requestTimeoutMs ?? 15000);
      this.pending.set(id, { type, resolve, reject, timer });
      ws.send(JSON.stringify({ ...fields, type, id }));
    });
  }

  // ---- connection ----

  /**
   * Connects and joins; resolves with the welcome or rejects. With several URLs, a hub that cannot be reached (the
   * websocket does not open, or drops or times out before the welcome) is skipped for the next; a refused join is
   * not retried.
   */
  async open(): Promise<Welcome> {
    this.setConnection("connecting");
    for (let i = 0; ; i++) {
      this.urlIndex = i;
      try {
        return await this.connectOnce(false);
      } catch (e) {
        const unreachable = e instanceof PodiumError && (e.code === "disconnected" || e.code === "timeout");
        if (unreachable && i + 1 < this.urls.length && this.connState === "connecting") {
          this.dropSocket();
          continue;
        }
        this.shutdown({ code: 0, reason: "join failed", error: e instanceof PodiumError ? e : undefined });
        throw e;
      }
    }
  }

  private async connectOnce(resume: boolean): Promise<Welcome> {
    const factory = this.options.socket ?? defaultSocket;
    const ws = factory(this.url);
    this.ws = ws;
    await new Promise<void>((resolve, reject) => {
      // A hub that is down may leave the websocket hanging rather than refuse it: give up (and move on) in time.
      const timer = setTimeout(
        () => reject(new PodiumError("timeout", "the websocket did not open")),
        this.options.requestTimeoutMs ?? 15000,
      );
      const fail = (e: PodiumError) => {
        clearTimeout(timer);
        reject(e);
      };
      ws.onopen = () => {
        clearTimeout(timer);
        resolve();
      };
      ws.onerror = () => fail(new PodiumError("disconnected", "websocket error"));
      ws.onclose = (ev) => fail(new PodiumError("disconnected", `websocket closed ${ev.code} ${ev.reason}`));
    });
    ws.onmessage = (ev) => this.onMessage(ws, ev.data);
    ws.onclose = (ev) => this.onSocketClosed(ws, ev.code, ev.reason);
    ws.onerror = null;
    const token = typeof this.options.token === "function" ? await this.options.token() : this.options.token;
    const join: Record<string, unknown> = { token, protocols: [1] };
    if (this.options.room) join.room = this.options.room;
    // A stage role is asked for on the first join only: a resumed session keeps its role, and a fresh one after the
    // grace period joins as the token allows (asking for the stage again could fail with `stage_full`).
    if (this.options.role && (!resume || this.options.role === "audience")) join.role = this.options.role;
    if (resume && this.welcomeMsg) join.resume = this.welcomeMsg.resume_token;
    const welcome = (await this.request("join", join)) as Welcome;
    const previous = this.welcomeMsg;
    this.welcomeMsg = welcome;
    this.attempts = 0;
    this.backoff = 0;
    this.speaking.clear();
    this.applied(this.store.replace(welcome.state));
    this.emit("speakers", []);
    this.setConnection("connected");
    this.startHeartbeat(welcome.heartbeat_interval_ms);
    this.startOrKeepMedia(welcome, previous !== null);
    return welcome;
  }

  private startOrKeepMedia(welcome: Welcome, rejoin: boolean): void {
    if (this.options.media === false || !hasWebRtc()) return;
    const you = welcome.state.you;
    const epoch = welcome.state.media_epoch ?? 0;
    if (!this.mediaSession) {
      this.mediaSession = new MediaSession(
        (type, fields) => this.request(type, fields),
        this.options.media ?? {},
        (info) => {
          this.mediaInfo = { ...info, tracks: [...info.tracks] };
          this.emit("media", this.mediaInfo);
        },
      );
      this.mediaSession.setIceServers(welcome.ice_servers);
      this.mediaSession.start(you, epoch);
      return;
    }
    // Every welcome carries fresh TURN credentials: for the peer connection a restart or a move creates, and for
    // the current one's next gathering.
    this.mediaSession.setIceServers(welcome.ice_servers);
    if (rejoin && !welcome.resumed) {
      // A fresh session: the SFU dropped the old peer connection.
      this.mediaSession.restart(you, epoch);
    } else if (this.mediaSession.moved(you, epoch)) {
      // Resumed, but the room's media moved to another hub meanwhile: the peer connection was replaced.
    } else {
      // Resumed: media kept flowing; follow the (possibly changed) role, finish a negotiation the drop cut off.
      this.mediaSession.resumed(you);
    }
  }

  private onMessage(ws: SocketLike, data: unknown): void {
    if (ws !== this.ws || typeof data !== "string") return;
    let msg: ServerMessage;
    try {
      msg = JSON.parse(data) as ServerMessage;
    } catch {
      return;
    }
    if ((msg.type === "ok" || msg.type === "error") && typeof msg.id === "number") {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      clearTimeout(p.timer);
      if (msg.type === "ok") p.resolve(msg.result);
      else p.reject(new PodiumError(String(msg.code), String(msg.message ?? msg.code), p.type));
      return;
    }
    switch (msg.type) {
      case "media_offer":
        this.mediaSession?.onServerOffer(msg.sdp as string);
        return;
      case "media_state":
        this.mediaSession?.onState(msg.state as MediaTransportState);
        return;
      case "media_tracks":
        if (this.mediaSession) this.mediaSession.onTracks(msg.tracks as MediaTrack[]);
        else {
          this.mediaInfo = { ...this.mediaInfo, tracks: msg.tracks as MediaTrack[] };
          this.emit("media", this.mediaInfo);
        }
        return;
      case "active_speakers":
        for (const s of (msg.speaking as Speaking[]) ?? []) this.speaking.set(s.participant, s.level);
        for (const p of (msg.stopped as string[]) ?? []) this.speaking.delete(p);
        this.emit("speakers", this.speakers);
        return;
      case "schedule": {
        const view = scheduleFromMessage(msg);
        if (!view) return;
        this.scheduleView = view;
        this.scheduleOffset = clockOffsetMs(view, Date.now());
        this.emit("schedule", view);
        return;
      }
      case "reactions":
        // Aggregated per window by the hub; not room state (no seq).
        if (msg.counts && typeof msg.counts === "object") {
          this.emit("reactions", {
            counts: { ...(msg.counts as Record<string, number>) },
            window_ms: typeof msg.window_ms === "number" ? msg.window_ms : 0,
          });
        }
        return;
      case "ice_servers":
        // Fresh TURN credentials, sent when half the lifetime of the last ones has passed.
        this.mediaSession?.setIceServers(msg as unknown as IceServers);
        return;
      case "media_moved":
        if (typeof msg.media_epoch !== "number") return;
        this.store.mediaMoved(msg.media_epoch);
        this.followMediaEpoch();
        return;
      default:
        this.applied(this.store.apply(msg));
        if (msg.type === "resync") this.followMediaEpoch();
    }
  }

  /**
   * PROTOCOL.md "Media" step 5: a peer connection negotiated in another media epoch than the room's is dead; replace
   * it. Both a `media_moved` and a later snapshot may announce the same epoch: only the first replaces it.
   */
  private followMediaEpoch(): void {
    const s = this.store.state;
    if (!s || !this.mediaSession) return;
    if (this.mediaSession.moved(s.you, s.media_epoch)) {
      // The old hub's speaker levels and slots are gone with it.
      if (this.speaking.size > 0) {
        this.speaking.clear();
        this.emit("speakers", []);
      }
    }
  }

  /** Emits the events for what a snapshot or event changed, and lets the media follow `you`. */
  private applied(result: ApplyResult): void {
    const s = this.store.state;
    if (!s) return;
    // On this room's stage now (your slot started): from here on you speak on this connection, not backstage.
    if (this.backstageRoom && isStageRole(s.you.role) && result.changes.includes("you")) void this.leaveBackstage();
    for (const change of result.changes) {
      switch (change) {
        case "state":
          this.emit("state", s);
          break;
        case "stage": {
          const onStage = new Set(s.stage.map((m) => m.id));
          let dropped = false;
          for (const id of this.speaking.keys()) {
            if (!onStage.has(id)) {
              this.speaking.delete(id);
              dropped = true;
            }
          }
          this.emit("stage", s.stage);
          if (dropped) this.emit("speakers", this.speakers);
          break;
        }
        case "hands":
          this.emit("hands", s.hands);
          break;
        case "counts":
          this.emit("counts", s.counts);
          break;
        case "you":
          this.emit("you", s.you);
          this.mediaSession?.update(s.you);
          break;
        case "settings":
          this.emit("settings", s.settings);
          break;
        case "info":
          this.emit("info", s.info);
          break;
        case "chat":
          this.emit("chat_messages", s.chat);
          break;
        case "recording":
          this.emit("recording", s.recording);
          break;
      }
    }
    for (const n of result.notices) {
      switch (n.type) {
        case "participant_joined":
          this.emit("participant_joined", n.participant);
          break;
        case "participant_left":
          this.emit("participant_left", n.participant);
          break;
        case "invite_answered":
          this.emit("invite_answered", { participant: n.participant, accepted: n.accepted, expired: n.expired });
          break;
        case "hand_lowered":
          this.emit("hand_lowered", n.lowered);
          break;
        case "chat":
          this.emit("chat", n.message);
          break;
        case "chat_deleted":
          this.emit("chat_deleted", n.deleted);
          break;
      }
    }
  }

  private onSocketClosed(ws: SocketLike, code: number, reason: string): void {
    if (ws !== this.ws) return;
    this.ws = null;
    this.stopHeartbeat();
    const wasConnected = this.connState === "connected";
    this.rejectPending(new PodiumError("disconnected", `websocket closed ${code} ${reason}`));
    if (this.connState === "closed") return;
    if (FINAL_CLOSE_CODES.has(code) || this.options.reconnect === false) {
      this.shutdown({ code, reason: reason || CLOSE_REASONS[code] || "" });
      return;
    }
    // Before the first welcome, `open` handles the failed join (and may try the next URL).
    if (this.connState === "connecting") return;
    // Only from a joined connection, so that hubs refusing us (4007 before the welcome) are retried with backoff.
    if (wasConnected && this.firstAttemptAtOnce(code)) this.reconnectAtOnce = true;
    this.scheduleReconnect();
  }

  /**
   * Whether the first reconnect after losing a joined connection goes without a backoff delay (PROTOCOL.md "Grace
   * and resume", MOBILE.md section 8): when it goes to another hub (several URLs: the hub that dropped us may be
   * dead, another resumes the session at once), and after 4007 always (the hub is draining). With a single hub, an
   * abrupt drop waits the first backoff step.
   */
  private firstAttemptAtOnce(code: number): boolean {
    return code === CLOSE_SERVER_SHUTDOWN || this.urls.length > 1;
  }

  private scheduleReconnect(): void {
    if (this.connState === "closed" || this.reconnectTimer) return;
    this.setConnection("reconnecting");
    const opts = this.options.reconnect || {};
    const max = opts.maxAttempts ?? Infinity;
    if (this.attempts >= max) {
      this.shutdown({ code: 0, reason: "gave up reconnecting" });
      return;
    }
    let delay = 0;
    if (this.reconnectAtOnce) {
      this.reconnectAtOnce = false;
    } else {
      const initial = opts.initialDelayMs ?? 500;
      const cap = opts.maxDelayMs ?? 10000;
      const base = Math.min(cap, initial * 2 ** this.backoff);
      delay = base / 2 + (Math.random() * base) / 2;
      this.backoff += 1;
    }
    this.attempts += 1;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      // Every attempt goes to the next hub: the last one may be draining or dead.
      this.urlIndex = (this.urlIndex + 1) % this.urls.length;
      this.connectOnce(true).then(
        (welcome) => this.emit("reconnected", { resumed: welcome.resumed }),
        (e: unknown) => {
          if (e instanceof PodiumError && e.request === "join" && FINAL_JOIN_ERRORS.has(e.code)) {
            this.shutdown({ code: 0, reason: `join refused: ${e.code}`, error: e });
            return;
          }
          // The socket may still be open (e.g. `unavailable`): drop it and try again later.
          this.dropSocket();
          this.scheduleReconnect();
        },
      );
    }, delay);
  }

  /** Closes the current socket without `leave` (the hub keeps the session for the grace period). */
  private dropSocket(): void {
    const ws = this.ws;
    this.ws = null;
    this.stopHeartbeat();
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close();
      } catch {
        // already closed
      }
    }
    this.rejectPending(new PodiumError("disconnected", "connection dropped"));
  }

  /** Simulates a dropped connection (for tests and "reconnect now" buttons): reconnects and resumes. */
  reconnectNow(): void {
    if (this.connState === "closed") return;
    // A connection that stopped answering is an abrupt drop (the hub may be dead).
    if (this.connState === "connected" && this.firstAttemptAtOnce(CLOSE_DROPPED)) this.reconnectAtOnce = true;
    this.dropSocket();
    if (this.reconnectTimer) {
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = null;
    }
    this.attempts = 0;
    this.backoff = 0;
    this.scheduleReconnect();
  }

  private startHeartbeat(intervalMs: number): void {
    this.stopHeartbeat();
    // Browsers answer the hub's pings themselves; this `ping` detects a dead connection on our side.
    const every = Math.max(1000, intervalMs || 15000);
    this.heartbeat = setInterval(() => {
      const ws = this.ws;
      this.request("ping").catch((e: PodiumError) => {
        if (e.code === "timeout" && ws === this.ws) this.reconnectNow();
      });
    }, every);
  }

  private stopHeartbeat(): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
  }

  private rejectPending(err: PodiumError): void {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new PodiumError(err.code, err.message, p.type));
    }
    this.pending.clear();
  }

  private setConnection(state: ConnectionState): void {
    if (this.connState === state) return;
    this.connState = state;
    this.emit("connection", state);
  }

  private shutdown(info: ClosedInfo): void {
    if (this.connState === "closed") return;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.dropSocket();
    this.mediaSession?.close();
    void this.leaveBackstage();
    this.setConnection("closed");
    this.emit("closed", info);
  }

  /** Closes the connection without `leave` (the session stays in its grace period). */
  disconnect(): void {
    this.shutdown({ code: 0, reason: "disconnected by the client" });
  }
}

/** Connects to a hub and joins a room; resolves once joined (with the welcome's state applied). */
export async function connect(options: ConnectOptions): Promise<Room> {
  const room = new Room(options);
  await room.open();
  return room;
}
