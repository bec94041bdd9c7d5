// Room info, hand expiry, reactions, chat and recording (issue #15): the state rules and the Room's API.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import type { ChatMessage } from "../src/protocol.js";
import type { Room } from "../src/room.js";
import { StateStore } from "../src/state.js";
import { joinedRoom, snapshot, welcome } from "./fake.js";

const URL = "ws://hub.test/v1/ws";

function msg(id: number, text = `m${id}`): ChatMessage {
  return { id, from: { id: "alice", name: "Alice" }, text, at_ms: 1_765_000_000_000 + id };
}

async function joined(w = welcome(), extra: Partial<ConstructorParameters<typeof Room>[0]> = {}) {
  const { room, s } = await joinedRoom(URL, w, extra);
  return { room, ws: s.latest() };
}

describe("StateStore: issue #15 parts", () => {
  it("takes info, chat and recording from the snapshot, with defaults when absent", () => {
    const s = new StateStore();
    s.replace(snapshot());
    expect(s.state).toMatchObject({ info: {}, chat: [], chatMore: false, recording: null });
    s.replace(
      snapshot({
        info: { description: "Rust hour", pinned_link: { url: "https://example.com/a", title: "Agenda" } },
        chat: [msg(3), msg(4)],
        chat_more: true,
        recording: { id: "rec_1", started_at_ms: 5, by: "alice" },
      }),
    );
    expect(s.state?.info.pinned_link?.title).toBe("Agenda");
    expect(s.state?.chat.map((m) => m.id)).toEqual([3, 4]);
    expect(s.state?.chatMore).toBe(true);
    expect(s.state?.recording).toEqual({ id: "rec_1", started_at_ms: 5, by: "alice" });
  });

  it("applies room_info, recording, chat and chat_deleted by the seq rules", () => {
    const s = new StateStore();
    s.replace(snapshot({ chat: [msg(1)] }));
    // Not newer than the snapshot: ignored.
    expect(s.apply({ type: "room_info", seq: 41, info: { description: "old" } }).changes).toEqual([]);
    expect(s.apply({ type: "room_info", seq: 42, info: { description: "new" } }).changes).toEqual(["info"]);
    expect(s.state?.info).toEqual({ description: "new" });
    expect(s.apply({ type: "room_info", seq: 43, info: {} }).changes).toEqual(["info"]);
    expect(s.state?.info).toEqual({});

    const rec = s.apply({ type: "recording", seq: 44, recording: { id: "rec_2", started_at_ms: 9, by_admin: "ops" } });
    expect(rec.changes).toEqual(["recording"]);
    expect(s.state?.recording?.by_admin).toBe("ops");
    expect(s.apply({ type: "recording", seq: 45, recording: null }).changes).toEqual(["recording"]);
    expect(s.state?.recording).toBeNull();

    const chat = s.apply({ type: "chat", seq: 46, message: msg(2, "hi") });
    expect(chat.changes).toEqual(["chat"]);
    expect(chat.notices).toEqual([{ type: "chat", message: msg(2, "hi") }]);
    // The same message again (a duplicate delivery) changes nothing.
    expect(s.apply({ type: "chat", seq: 47, message: msg(2, "hi") }).changes).toEqual([]);
    const del = s.apply({ type: "chat_deleted", seq: 48, message_id: 1, by: "mod1", reason: "spam" });
    expect(del.changes).toEqual(["chat"]);
    expect(del.notices).toEqual([{ type: "chat_deleted", deleted: { message_id: 1, by: "mod1", reason: "spam" } }]);
    expect(s.state?.chat.map((m) => m.id)).toEqual([2]);
    // Deleting a message not held here: told, but nothing changed.
    const gone = s.apply({ type: "chat_deleted", seq: 49, message_id: 77, by_admin: "ops" });
    expect(gone.changes).toEqual([]);
    expect(gone.notices).toEqual([{ type: "chat_deleted", deleted: { message_id: 77, by_admin: "ops" } }]);
  });

  it("passes hand_lowered on as a notice, then the you of the same seq applies", () => {
    const s = new StateStore();
    s.replace(
      snapshot({ you: { role: "audience", ceiling: "speaker", muted: true, hand_position: 1, hand_expires_at_ms: 99 } }),
    );
    const lowered = s.apply({ type: "hand_lowered", seq: 50, cause: "cleared", by: "alice", reason: "next topic" });
    expect(lowered.changes).toEqual([]);
    expect(lowered.notices).toEqual([
      { type: "hand_lowered", lowered: { cause: "cleared", by: "alice", reason: "next topic" } },
    ]);
    const you = s.apply({ type: "you", seq: 50, you: { role: "audience", ceiling: "speaker", muted: true } });
    expect(you.changes).toEqual(["you"]);
    expect(s.state?.you.hand_expires_at_ms).toBeUndefined();
  });

  it("keeps at most chatLimit messages: the newest, and then there are older ones", () => {
    const s = new StateStore(3);
    s.replace(snapshot({ chat: [msg(1), msg(2), msg(3), msg(4)] }));
    expect(s.state?.chat.map((m) => m.id)).toEqual([2, 3, 4]);
    expect(s.state?.chatMore).toBe(true);
    const s2 = new StateStore(3);
    s2.replace(snapshot({ chat: [msg(1), msg(2)] }));
    expect(s2.state?.chatMore).toBe(false);
    s2.apply({ type: "chat", seq: 42, message: msg(3) });
    expect(s2.state?.chatMore).toBe(false);
    s2.apply({ type: "chat", seq: 43, message: msg(4) });
    expect(s2.state?.chat.map((m) => m.id)).toEqual([2, 3, 4]);
    expect(s2.state?.chatMore).toBe(true);
    expect(() => new StateStore(0)).toThrow(RangeError);
  });

  it("prepends older pages only, within the limit", () => {
    const s = new StateStore(5);
    s.replace(snapshot({ chat: [msg(10), msg(11)], chat_more: true }));
    // A page with an overlapping message (11) and older ones; more remain.
    expect(s.prependChat({ messages: [msg(7), msg(8), msg(9)], next_before: 7 })).toBe(true);
    expect(s.state?.chat.map((m) => m.id)).toEqual([7, 8, 9, 10, 11]);
    expect(s.state?.chatMore).toBe(true);
    // Full: nothing more is taken, and older ones stay to be had.
    expect(s.prependChat({ messages: [msg(5), msg(6)] })).toBe(false);
    expect(s.state?.chat).toHaveLength(5);
    expect(s.state?.chatMore).toBe(true);
    const t = new StateStore(10);
    t.replace(snapshot({ chat: [msg(4)], chat_more: true }));
    expect(t.prependChat({ messages: [msg(1), msg(3), msg(4)] })).toBe(true);
    expect(t.state?.chat.map((m) => m.id)).toEqual([1, 3, 4]);
    expect(t.state?.chatMore).toBe(false);
    // The last page already applied: no change.
    expect(t.prependChat({ messages: [] })).toBe(false);
  });
});

describe("Room: issue #15 API", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
    vi.restoreAllMocks();
  });

  it("sends the new requests with their fields and resolves their results", async () => {
    const { room, ws } = await joined();
    const calls: [() => Promise<unknown>, Record<string, unknown>, unknown, unknown][] = [
      [
        () => room.setRoomInfo({ description: "Rust hour", pinned_link: { url: "https://example.com", title: "T" } }),
        { type: "set_room_info", description: "Rust hour", pinned_link: { url: "https://example.com", title: "T" } },
        undefined,
        undefined,
      ],
      [() => room.setRoomInfo({ pinned_link: null }), { type: "set_room_info", pinned_link: null }, undefined, undefined],
      [() => room.clearHands(), { type: "clear_hands" }, undefined, undefined],
      [() => room.clearHands("next topic"), { type: "clear_hands", reason: "next topic" }, undefined, undefined],
      [() => room.react("clap"), { type: "react", reaction: "clap" }, undefined, undefined],
      [() => room.sendChat("hi"), { type: "send_chat", text: "hi" }, { message_id: 42 }, 42],
      [() => room.deleteChat(42), { type: "delete_chat", message_id: 42 }, undefined, undefined],
      [() => room.deleteChat(42, "spam"), { type: "delete_chat", message_id: 42, reason: "spam" }, undefined, undefined],
      [
        () => room.chatHistory({ before: 42, limit: 2 }),
        { type: "chat_history", before: 42, limit: 2 },
        { messages: [msg(40), msg(41)], next_before: 40 },
        { messages: [msg(40), msg(41)], next_before: 40 },
      ],
      [() => room.startRecording(), { type: "start_recording" }, undefined, undefined],
      [() => room.stopRecording("done"), { type: "stop_recording", reason: "done" }, undefined, undefined],
      [() => room.setRecordingOptOut(true), { type: "set_recording_opt_out", opt_out: true }, undefined, undefined],
    ];
    for (const [call, expected, result, resolved] of calls) {
      const p = call();
      const sent = ws.sent[ws.sent.length - 1]!;
      expect(sent).toEqual({ ...expected, id: sent.id });
      ws.ok(expected.type as string, result);
      await expect(p).resolves.toEqual(resolved);
    }
    // Refusals carry the contract's codes.
    const slow = room.sendChat("again");
    ws.error("send_chat", "rate_limited", "rate limited: slow mode");
    await expect(slow).rejects.toMatchObject({ code: "rate_limited", request: "send_chat" });
    const twice = room.startRecording();
    ws.error("start_recording", "conflict", "conflict: already recording");
    await expect(twice).rejects.toMatchObject({ code: "conflict", request: "start_recording" });
  });

  it("exposes info, hand expiry, chat, recording and the reaction kinds, with their events", async () => {
    const w = welcome(
      { reactions: { kinds: ["clap", "heart"], window_ms: 500, per_second: 3 } },
      {
        info: { description: "Weekly" },
        chat: [msg(5)],
        chat_more: true,
        you: { role: "audience", ceiling: "speaker", muted: true, hand_position: 2, hand_expires_at_ms: 1_765_000_900_000 },
        stage: [
          { id: "alice", name: "Alice", role: "moderator", muted: false, connected: true, recording_opt_out: true },
        ],
      },
    );
    const { room, ws } = await joined(w);
    expect(room.info).toEqual({ description: "Weekly" });
    expect(room.handExpiresAt).toBe(1_765_000_900_000);
    expect(room.chat.map((m) => m.id)).toEqual([5]);
    expect(room.chatMore).toBe(true);
    expect(room.recording).toBeNull();
    expect(room.reactionsConfig?.kinds).toEqual(["clap", "heart"]);
    expect(room.stage[0]?.recording_opt_out).toBe(true);

    const seen: [string, unknown][] = [];
    for (const ev of [
      "info",
      "hand_lowered",
      "you",
      "reactions",
      "chat",
      "chat_messages",
      "chat_deleted",
      "recording",
    ] as const) {
      room.on(ev, (v) => seen.push([ev, v]));
    }
    ws.push({ type: "room_info", seq: 42, info: { pinned_link: { url: "https://example.com/slides" } } });
    ws.push({ type: "hand_lowered", seq: 43, cause: "expired" });
    ws.push({ type: "you", seq: 43, you: { role: "audience", ceiling: "speaker", muted: true } });
    ws.push({ type: "reactions", counts: { clap: 120, heart: 4 }, window_ms: 500 });
    ws.push({ type: "chat", seq: 44, message: msg(6, "hello") });
    ws.push({ type: "chat_deleted", seq: 45, message_id: 5, by: "alice" });
    ws.push({ type: "recording", seq: 46, recording: { id: "rec_9", started_at_ms: 7, by: "alice" } });
    expect(seen.map(([ev]) => ev)).toEqual([
      "info",
      "hand_lowered",
      "you",
      "reactions",
      "chat_messages",
      "chat",
      "chat_messages",
      "chat_deleted",
      "recording",
    ]);
    expect(room.info).toEqual({ pinned_link: { url: "https://example.com/slides" } });
    expect(seen[1]![1]).toEqual({ cause: "expired" });
    expect(room.handExpiresAt).toBeNull();
    expect(seen[3]![1]).toEqual({ counts: { clap: 120, heart: 4 }, window_ms: 500 });
    expect(seen[5]![1]).toEqual(msg(6, "hello"));
    expect(room.chat.map((m) => m.id)).toEqual([6]);
    expect(room.recording?.id).toBe("rec_9");
    // The reactions event does not touch the room state's seq.
    expect(room.state?.seq).toBe(46);
    ws.push({ type: "recording", seq: 47, recording: null });
    expect(room.recording).toBeNull();
    expect(seen[seen.length - 1]).toEqual(["recording", null]);
  });

  it("loadOlderChat pages before the first message held and prepends the page", async () => {
    const { room, ws } = await joined(welcome({}, { chat: [msg(50), msg(51)], chat_more: true }));
    const changed = vi.fn();
    room.on("chat_messages", changed);
    const older = room.loadOlderChat(2);
    expect(ws.last("chat_history")).toMatchObject({ before: 50, limit: 2 });
    ws.ok("chat_history", { messages: [msg(48), msg(49)], next_before: 48 });
    await expect(older).resolves.toEqual([msg(48), msg(49)]);
    expect(room.chat.map((m) => m.id)).toEqual([48, 49, 50, 51]);
    expect(room.chatMore).toBe(true);
    expect(changed).toHaveBeenCalledOnce();
    const last = room.loadOlderChat(2);
    ws.ok("chat_history", { messages: [msg(47)] });
    await expect(last).resolves.toEqual([msg(47)]);
    expect(room.chatMore).toBe(false);
  });

  it("loadOlderChat with no message held asks for the newest page", async () => {
    const { room, ws } = await joined();
    const p = room.loadOlderChat();
    expect(ws.last("chat_history")).toEqual({ type: "chat_history", id: ws.last("chat_history").id, limit: 50 });
    ws.ok("chat_history", { messages: [msg(1), msg(2)] });
    await expect(p).resolves.toHaveLength(2);
    expect(room.chat.map((m) => m.id)).toEqual([1, 2]);
  });

  it("bounds room.chat by chatLimit", async () => {
    const { room, ws } = await joined(welcome({}, { chat: [msg(1), msg(2)] }), { chatLimit: 2 });
    ws.push({ type: "chat", seq: 42, message: msg(3) });
    expect(room.chat.map((m) => m.id)).toEqual([2, 3]);
    expect(room.chatMore).toBe(true);
  });

  it("ignores a reactions event without counts", async () => {
    const { room, ws } = await joined();
    const fn = vi.fn();
    room.on("reactions", fn);
    ws.push({ type: "reactions" });
    ws.push({ type: "reactions", counts: { fire: 2 } });
    expect(fn).toHaveBeenCalledTimes(1);
    expect(fn).toHaveBeenCalledWith({ counts: { fire: 2 }, window_ms: 0 });
  });
});
