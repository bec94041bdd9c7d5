import { describe, expect, it } from "vitest";

import { StateStore } from "../src/state.js";
import { snapshot } from "./fake.js";

const alice = { id: "alice", name: "Alice", role: "moderator" as const, muted: false, connected: true };
const bob = { id: "bob", name: "Bob", role: "speaker" as const, muted: true, connected: true };

describe("StateStore", () => {
  it("replaces everything with a snapshot and reports every part changed", () => {
    const s = new StateStore();
    const r = s.replace(snapshot());
    expect(r.changes).toEqual(["state", "stage", "hands", "counts", "you", "settings", "info", "chat", "recording"]);
    expect(s.state?.seq).toBe(41);
    expect(s.state?.stage).toEqual([alice]);
    expect(s.state?.hands).toBeUndefined();
  });

  it("ignores events whose seq is not greater than the snapshot's (the join's own events)", () => {
    const s = new StateStore();
    s.replace(snapshot());
    expect(s.apply({ type: "stage", seq: 41, stage: [], cause: { kind: "joined", participant: "x" } }).changes).toEqual(
      [],
    );
    expect(s.apply({ type: "stage", seq: 40, stage: [] }).changes).toEqual([]);
    expect(s.state?.stage).toEqual([alice]);
  });

  it("applies newer events, several per seq, and counts repeating the current seq", () => {
    const s = new StateStore();
    s.replace(snapshot());
    const st = s.apply({ type: "stage", seq: 43, stage: [alice, bob], cause: { kind: "promoted", participant: "bob" } });
    expect(st.changes).toEqual(["stage"]);
    expect(s.state?.lastStageCause).toEqual({ kind: "promoted", participant: "bob" });
    const you = s.apply({ type: "you", seq: 43, you: { role: "speaker", ceiling: "speaker", muted: true } });
    expect(you.changes).toEqual(["you"]);
    const counts = s.apply({ type: "counts", seq: 43, counts: { stage: 2, audience: 56, hands: 0, total: 58 } });
    expect(counts.changes).toEqual(["counts"]);
    expect(s.state?.counts.stage).toBe(2);
    expect(s.state?.seq).toBe(43);
    // An event older than what was applied is dropped.
    expect(s.apply({ type: "stage", seq: 42, stage: [] }).changes).toEqual([]);
    expect(s.state?.stage).toEqual([alice, bob]);
  });

  it("keeps the hand queue for moderators only", () => {
    const s = new StateStore();
    s.replace(snapshot({ you: { role: "moderator", ceiling: "moderator", muted: false } }));
    expect(s.state?.hands).toEqual({ hands: [], total: 0 });
    s.apply({ type: "hand_queue", seq: 42, queue: { hands: [{ id: "bob", name: "Bob" }], total: 1 } });
    expect(s.state?.hands?.total).toBe(1);
    const r = s.apply({ type: "you", seq: 43, you: { role: "speaker", ceiling: "moderator", muted: false } });
    expect(r.changes).toEqual(["you", "hands"]);
    expect(s.state?.hands).toBeUndefined();
    const back = s.apply({ type: "you", seq: 44, you: { role: "moderator", ceiling: "moderator", muted: false } });
    expect(back.changes).toEqual(["you", "hands"]);
    expect(s.state?.hands).toEqual({ hands: [], total: 0 });
  });

  it("replaces all state on resync", () => {
    const s = new StateStore();
    s.replace(snapshot());
    s.apply({ type: "stage", seq: 50, stage: [alice, bob] });
    const r = s.apply({ type: "resync", seq: 412, state: snapshot({ seq: 412, stage: [] }) });
    expect(r.changes).toContain("state");
    expect(s.state?.seq).toBe(412);
    expect(s.state?.stage).toEqual([]);
    // Events up to the resync's seq are ignored afterwards.
    expect(s.apply({ type: "stage", seq: 412, stage: [alice] }).changes).toEqual([]);
    expect(s.apply({ type: "stage", seq: 413, stage: [alice] }).changes).toEqual(["stage"]);
  });

  it("ignores a get_state snapshot older than the events already applied", () => {
    const s = new StateStore();
    s.replace(snapshot());
    s.apply({ type: "stage", seq: 45, stage: [alice, bob] });
    expect(s.refresh(snapshot({ seq: 44, stage: [] })).changes).toEqual([]);
    expect(s.state?.stage).toEqual([alice, bob]);
    expect(s.refresh(snapshot({ seq: 46, stage: [] })).changes).toContain("state");
    expect(s.state?.stage).toEqual([]);
  });

  it("reports audience notices and ignores unknown events without advancing seq", () => {
    const s = new StateStore();
    s.replace(snapshot());
    const j = s.apply({ type: "participant_joined", seq: 42, participant: { id: "henry", name: "Henry" } });
    expect(j.notices).toEqual([{ type: "participant_joined", participant: { id: "henry", name: "Henry" } }]);
    expect(s.apply({ type: "teleported", seq: 99 }).changes).toEqual([]);
    expect(s.state?.seq).toBe(42);
    const a = s.apply({ type: "invite_answered", seq: 43, participant: "dave", accepted: false, expired: true });
    expect(a.notices[0]).toEqual({ type: "invite_answered", participant: "dave", accepted: false, expired: true });
  });

  it("does not let later mutation of a message change the state", () => {
    const s = new StateStore();
    const snap = snapshot();
    s.replace(snap);
    snap.stage.push(bob);
    expect(s.state?.stage).toEqual([alice]);
  });
  it("keeps the media epoch from snapshots (0 when omitted) and media_moved", () => {
    const s = new StateStore();
    s.replace(snapshot());
    expect(s.state?.media_epoch).toBe(0);
    s.replace(snapshot({ media_epoch: 3 }));
    expect(s.state?.media_epoch).toBe(3);
    expect(s.mediaMoved(4)).toBe(true);
    expect(s.mediaMoved(4)).toBe(false);
    expect(s.state?.media_epoch).toBe(4);
    // media_moved has no seq and is no state event.
    expect(s.apply({ type: "media_moved", media_epoch: 9 }).changes).toEqual([]);
    expect(s.state?.seq).toBe(41);
  });
});
