// A scriptable fake WebSocket and hub replies, for the SDK's unit tests.

import { Room, type SocketLike } from "../src/room.js";
import type { RoomSnapshot, Welcome } from "../src/protocol.js";

export class FakeSocket implements SocketLike {
  readyState = 0;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  sent: Record<string, unknown>[] = [];
  closedByClient = false;

  constructor(readonly url: string) {}

  send(data: string): void {
    this.sent.push(JSON.parse(data) as Record<string, unknown>);
  }

  close(): void {
    this.closedByClient = true;
    this.readyState = 3;
  }

  // ---- the hub's side ----

  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }

  push(msg: unknown): void {
    this.onmessage?.({ data: JSON.stringify(msg) });
  }

  /** The hub closes the connection (1006: dropped without a close frame). */
  drop(code = 1006, reason = ""): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }

  /** The last request of `type` the client sent. */
  last(type: string): Record<string, unknown> {
    const found = [...this.sent].reverse().find((m) => m.type === type);
    if (!found) throw new Error(`no ${type} sent; sent: ${JSON.stringify(this.sent)}`);
    return found;
  }

  ok(type: string, result?: unknown): void {
    const req = this.last(type);
    this.push(result === undefined ? { type: "ok", id: req.id } : { type: "ok", id: req.id, result });
  }

  error(type: string, code: string, message = code): void {
    this.push({ type: "error", id: this.last(type).id, code, message });
  }
}

/** A socket factory that records every socket it makes. */
export function sockets(): { factory: (url: string) => FakeSocket; all: FakeSocket[]; latest: () => FakeSocket } {
  const all: FakeSocket[] = [];
  return {
    all,
    factory: (url: string) => {
      const s = new FakeSocket(url);
      all.push(s);
      return s;
    },
    latest: () => {
      const s = all[all.length - 1];
      if (!s) throw new Error("no socket yet");
      return s;
    },
  };
}

export function snapshot(over: Partial<RoomSnapshot> = {}): RoomSnapshot {
  return {
    room: "summit",
    seq: 41,
    settings: { open_mic: false, closed: false, stage_capacity: 13 },
    stage: [{ id: "alice", name: "Alice", role: "moderator", muted: false, connected: true }],
    counts: { stage: 1, audience: 57, hands: 0, total: 58 },
    you: { role: "audience", ceiling: "speaker", muted: true },
    ...over,
  };
}

export function welcome(over: Partial<Welcome> = {}, state: Partial<RoomSnapshot> = {}): Welcome {
  return {
    protocol: 1,
    participant: { id: "bob", name: "Bob" },
    resume_token: "r1",
    resumed: false,
    grace_ms: 30000,
    heartbeat_interval_ms: 15000,
    limits: { max_message_bytes: 16384, requests_per_second: 20, request_burst: 40 },
    state: snapshot(state),
    ...over,
  };
}

/** Lets pending promise callbacks run. */
export async function flush(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

/** Connects a Room to `url` over a fake socket (no media) and completes the join with `w`. */
export async function joinedRoom(
  url: string,
  w: Welcome = welcome(),
  extra: Partial<ConstructorParameters<typeof Room>[0]> = {},
): Promise<{ room: Room; s: ReturnType<typeof sockets> }> {
  const s = sockets();
  const room = new Room({ url, token: "tok", room: "summit", media: false, socket: s.factory, ...extra });
  const opened = room.open();
  s.latest().open();
  await flush();
  s.latest().ok("join", w);
  await opened;
  return { room, s };
}
