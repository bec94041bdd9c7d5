// Browser end to end: the web SDK survives a hub drain as a real app does. Driven by Playwright (playwright-core) in
// Debian's Chromium against two hubs sharing one Redis (started by tests/it/web_drain.rs). Three pages load the SDK
// from hub B (/sdk/podium.js) and connect with `urls: [hubA, hubB]`, so they all join on hub A, which creates the
// room and holds its media: a moderator, a speaker (invited to the stage, unmuted, publishing Chromium's fake
// microphone) and a listener. Once the listener hears the speaker, the script prints `DRAIN` and the test drains
// hub A. Every page must end up connected to hub B with its role, the listener must keep receiving the speaker's
// audio (getStats() inbound-rtp packetsReceived and totalAudioEnergy, sampled every 200 ms in the page, summed over
// every peer connection the page made) with no gap longer than MAX_GAP_MS, and each page may make at most one new
// peer connection (one media epoch change).
//
// Usage: PODIUM_HUB_A=http://127.0.0.1:1 PODIUM_HUB_B=http://127.0.0.1:2 PODIUM_ROOM=r
//        PODIUM_TOKENS='{"mod":..,"spk":..,"lis":..}' node web/e2e/drain.mjs

import { createInterface } from "node:readline";
import { launchChromium, log, reportPages, until } from "./chromium.mjs";

const hubA = process.env.PODIUM_HUB_A;
const hubB = process.env.PODIUM_HUB_B;
const room = process.env.PODIUM_ROOM;
const tokens = JSON.parse(process.env.PODIUM_TOKENS || "{}");
if (!hubA || !hubB || !room || !tokens.mod) throw new Error("set PODIUM_HUB_A, PODIUM_HUB_B, PODIUM_ROOM, PODIUM_TOKENS");
const wsUrl = (http) => `${http.replace(/^http/, "ws")}/v1/ws`;
const urls = [wsUrl(hubA), wsUrl(hubB)];

/** The longest the listener may go without a new packet of the speaker's audio. */
const MAX_GAP_MS = 3000;
const SAMPLE_MS = 200;
const MIN_PACKETS = 100;

// The test answers `DRAINED` on stdin once hub A's drain has started.
const stdin = createInterface({ input: process.stdin });
const drained = new Promise((resolve) => stdin.on("line", (l) => l.trim() === "DRAINED" && resolve()));

const browser = await launchChromium();

// Runs in every page before the SDK: counts the peer connections the page creates and keeps them for getStats().
function instrument() {
  const Native = window.RTCPeerConnection;
  window.__pcs = [];
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      window.__pcs.push({ pc: this, at: Date.now(), labels: new Map(), last: new Map() });
    }
  };
}

// Runs in the page: joins with the SDK and records what the test checks later.
async function join({ urls, token, role }) {
  const { default: Podium } = await import("/sdk/podium.js");
  const r = await Podium.connect({ urls, token, role, media: { loopbackOnly: true } });
  window.room = r;
  window.__log = [];
  window.__epochs = [r.state.media_epoch];
  const note = (what) => window.__log.push({ t: Date.now(), what, url: r.url, connection: r.connection });
  r.on("media", (m) => {
    if (window.__epochs[window.__epochs.length - 1] !== m.epoch) {
      window.__epochs.push(m.epoch);
      note(`media epoch ${m.epoch}`);
    }
  });
  r.on("connection", (c) => note(`connection ${c}`));
  r.on("reconnected", (x) => note(`reconnected resumed=${x.resumed}`));
  r.on("closed", (x) => note(`closed ${x.code} ${x.reason}`));
  return { url: r.url, epoch: r.state.media_epoch, you: r.you };
}

// Runs in the page: samples getStats() of every peer connection the page made every `every` ms. Inbound audio is
// attributed to the participant the SDK's `media_tracks` named for its mid (labels of a replaced peer connection stay
// as they were), and each connection's last totals are kept once it is closed, so the sums only grow.
function startSampler({ every, who }) {
  window.__samples = [];
  const tick = async () => {
    const r = window.room;
    const entries = window.__pcs;
    const current = entries[entries.length - 1];
    if (current) {
      for (const t of r.media.tracks) if (t.participant && !current.labels.has(t.mid)) current.labels.set(t.mid, t.participant);
    }
    let packets = 0;
    let energy = 0;
    let sent = 0;
    let anyIn = 0;
    let onCurrent = 0;
    for (const e of entries) {
      if (e.pc.connectionState !== "closed") {
        try {
          const report = await e.pc.getStats();
          report.forEach((s) => {
            if (s.kind !== "audio") return;
            if (s.type === "inbound-rtp") e.last.set(`in/${s.mid}`, { mid: s.mid, p: s.packetsReceived || 0, en: s.totalAudioEnergy || 0 });
            else if (s.type === "outbound-rtp") e.last.set(`out/${s.mid}`, { p: s.packetsSent || 0 });
          });
        } catch {
          // closed meanwhile: keep its last totals
        }
      }
      for (const [k, v] of e.last) {
        if (k.startsWith("out/")) sent += v.p;
        else {
          anyIn += v.p;
          if (e.labels.get(v.mid) === who) {
            packets += v.p;
            energy += v.en;
            if (e === current) onCurrent += v.p;
          }
        }
      }
    }
    window.__samples.push({
      t: Date.now(),
      packets,
      energy,
      sent,
      anyIn,
      onCurrent,
      pcs: entries.length,
      url: r.url,
      connection: r.connection,
      epoch: r.media.epoch,
    });
  };
  window.__sampler = setInterval(() => void tick(), every);
}

/** The longest time (ms) without an increase of `key` among `samples` within [from, to]. */
function longestGap(samples, key, from, to) {
  let prev = null;
  let lastIncrease = from;
  let gap = 0;
  for (const s of samples) {
    if (prev !== null && s[key] > prev && s.t >= from && s.t <= to) {
      gap = Math.max(gap, s.t - lastIncrease);
      lastIncrease = s.t;
    }
    prev = s[key];
  }
  return Math.max(gap, to - lastIncrease);
}

const pages = [];
async function open(name, token, role, expected) {
  const context = await browser.newContext({ permissions: ["microphone"] });
  await context.addInitScript(instrument);
  const page = await context.newPage();
  page.on("console", (m) => {
    if (m.location().url.endsWith("/favicon.ico")) return;
    if (m.type() === "error" || m.type() === "warning") log(`[${name} console.${m.type()}] ${m.text()}`);
  });
  page.on("pageerror", (e) => log(`[${name} pageerror] ${e.message}`));
  // Any page of the hub's origin will do (a secure context: 127.0.0.1); the SDK is imported from it.
  await page.goto(`${hubB}/sdk/podium.js`);
  const joined = await page.evaluate(join, { urls, token, role });
  pages.push({ name, page, role: expected });
  log(`${name} joined ${room} on ${joined.url} as ${joined.you.role} (media epoch ${joined.epoch})`);
  if (joined.url !== urls[0]) throw new Error(`${name} joined on ${joined.url}, not hub A`);
  return page;
}

let failed = false;
try {
  const mod = await open("moderator", tokens.mod, undefined, "moderator");
  const spk = await open("speaker", tokens.spk, undefined, "speaker");
  const lis = await open("listener", tokens.lis, undefined, "audience");

  // The moderator invites the speaker, who accepts and unmutes.
  await mod.evaluate(() => window.room.inviteToStage("spk"));
  await until("the speaker's invitation", () => spk.evaluate(() => !!window.room.you.invite));
  await spk.evaluate(() => window.room.acceptInvite());
  await until("the speaker on stage, publishing", () =>
    spk.evaluate(() => ({ ok: window.room.you.role === "speaker" && window.room.media.publishing, you: window.room.you })),
  );
  await spk.evaluate(() => window.room.setMuted(false));
  await until("the speaker unmuted", () => mod.evaluate(() => window.room.stage.some((m) => m.id === "spk" && !m.muted)));
  log("the speaker is on stage, unmuted and publishing");

  for (const { page } of pages) await page.evaluate(startSampler, { every: SAMPLE_MS, who: "spk" });
  const heard = await until(
    `the listener to receive > ${MIN_PACKETS} packets of the speaker's audio with energy`,
    async () => {
      const s = await lis.evaluate(() => window.__samples[window.__samples.length - 1]);
      return { ok: !!s && s.packets > MIN_PACKETS && s.energy > 0, ...s };
    },
    40_000,
    500,
  );
  log(`the listener hears the speaker on hub A: ${JSON.stringify(heard)}`);
  const epochBefore = await lis.evaluate(() => window.room.state.media_epoch);
  await new Promise((r) => setTimeout(r, 2000));

  // Hub A drains.
  const drainAt = Date.now();
  console.log("DRAIN");
  await drained;
  log("hub A is draining");

  const hubBUrl = urls[1];
  for (const { name, page, role } of pages) {
    await until(
      `${name} connected to hub B as ${role} with the new media epoch`,
      () =>
        page.evaluate(
          ({ hubBUrl, role, epochBefore }) => {
            const r = window.room;
            return {
              ok:
                r.connection === "connected" &&
                r.url === hubBUrl &&
                r.you.role === role &&
                r.state.media_epoch > epochBefore &&
                r.media.epoch === r.state.media_epoch &&
                r.media.state === "connected",
              connection: r.connection,
              url: r.url,
              role: r.you.role,
              epoch: r.state.media_epoch,
              pcEpoch: r.media.epoch,
              media: r.media.state,
            };
          },
          { hubBUrl, role, epochBefore },
        ),
      30_000,
    );
  }
  log("every page is connected to hub B with its role and the new media epoch");

  // The speaker is still unmuted and publishing on the new peer connection; the listener hears it there.
  const spkState = await spk.evaluate(() => ({ you: window.room.you, publishing: window.room.media.publishing }));
  if (spkState.you.muted || !spkState.publishing) throw new Error(`the speaker lost its microphone: ${JSON.stringify(spkState)}`);
  await until(
    "the listener to receive the speaker's audio on its new peer connection",
    () =>
      lis.evaluate((min) => {
        const e = window.__pcs[window.__pcs.length - 1];
        let p = 0;
        let en = 0;
        for (const v of e.last.values()) {
          if (v.mid !== undefined && e.labels.get(v.mid) === "spk") {
            p += v.p;
            en += v.en;
          }
        }
        return { ok: window.__pcs.length > 1 && p > min && en > 0, pcs: window.__pcs.length, packets: p, energy: en };
      }, MIN_PACKETS),
    20_000,
  );
  // A few more seconds on hub B only.
  await new Promise((r) => setTimeout(r, 3000));

  const results = [];
  for (const { name, page } of pages) {
    const r = await page.evaluate(() => {
      clearInterval(window.__sampler);
      return {
        samples: window.__samples,
        pcs: window.__pcs.map((e) => e.at),
        epochs: window.__epochs,
        log: window.__log,
        you: window.room.you,
        url: window.room.url,
      };
    });
    results.push({ name, ...r });
  }
  const problems = [];
  for (const r of results) {
    const created = r.pcs.map((t) => `${((t - drainAt) / 1000).toFixed(2)} s`).join(", ");
    log(
      `${r.name}: ${r.pcs.length} peer connections (created at ${created} relative to the drain), media epochs ` +
        `${JSON.stringify(r.epochs)}, role ${r.you.role}, on ${r.url}; ` +
        r.log.map((l) => `${((l.t - drainAt) / 1000).toFixed(2)} s ${l.what}`).join("; "),
    );
    if (r.pcs.length > 2) problems.push(`${r.name} created ${r.pcs.length} peer connections (at most 2 allowed)`);
    if (r.epochs.length > 2) problems.push(`${r.name} went through media epochs ${JSON.stringify(r.epochs)}`);
  }
  const lisSamples = results.find((r) => r.name === "listener").samples;
  const spkSamples = results.find((r) => r.name === "speaker").samples;
  const from = drainAt - 1000;
  const endAt = Math.min(...results.map((r) => r.samples[r.samples.length - 1].t));
  const gap = longestGap(lisSamples, "packets", from, endAt);
  const energyGap = longestGap(lisSamples, "energy", from, endAt);
  const sentGap = longestGap(spkSamples, "sent", from, endAt);
  const before = lisSamples.filter((s) => s.t <= drainAt).pop();
  const last = lisSamples[lisSamples.length - 1];
  log(
    `listener: ${lisSamples.length} samples; the speaker's packets ${before.packets} at the drain, ${last.packets} at ` +
      `the end (${(last.energy - before.energy).toFixed(3)} energy since)`,
  );
  log(`MEASURED longest gap in the speaker's packets at the listener across the drain: ${gap} ms (limit ${MAX_GAP_MS} ms)`);
  log(`MEASURED longest gap in the listener's audio energy: ${energyGap} ms; in the speaker's packets sent: ${sentGap} ms`);
  const onB = lisSamples.find((s) => s.pcs > 1 && s.onCurrent > 0);
  const closedA = results.map((r) => r.log.find((l) => l.what === "connection reconnecting")).filter(Boolean);
  log(
    `the listener's new peer connection (hub B) received the speaker's audio ${onB ? onB.t - drainAt : "never"} ms ` +
      `after the drain; hub A closed the websockets ${closedA.map((l) => l.t - drainAt).join(", ")} ms after it`,
  );
  if (gap > MAX_GAP_MS) problems.push(`the listener went ${gap} ms without the speaker's packets`);
  if (energyGap > MAX_GAP_MS) problems.push(`the listener went ${energyGap} ms without audio energy`);
  if (!(last.energy > before.energy)) problems.push("no audio energy at the listener after the drain");
  if (problems.length > 0) {
    // The listener's samples around the drain, for the failure report.
    const around = lisSamples.filter((s) => s.t >= drainAt - 1000 && s.t <= drainAt + 8000);
    console.error(around.map((s) => `${s.t - drainAt} ${s.packets} ${s.energy.toFixed(3)} pcs=${s.pcs} ${s.connection} ${s.url}`).join("\n"));
    throw new Error(problems.join("; "));
  }
  log("PASS");
} catch (e) {
  failed = true;
  console.error(`FAIL: ${e && e.stack ? e.stack : e}`);
  await reportPages(pages, () => {
    const r = window.room;
    return r
      ? { connection: r.connection, url: r.url, you: r.you, media: r.media, epoch: r.state && r.state.media_epoch, pcs: window.__pcs.length, log: window.__log }
      : null;
  });
} finally {
  stdin.close();
  await browser.close();
}
process.exit(failed ? 1 : 0);
