// Browser end to end of the demo's summit panel, driven by Playwright (playwright-core) in Debian's Chromium, against
// a running hub that serves the demo app (development mode: no auth.secret, media on 127.0.0.1) and runs a summit
// released through its admin API by tests/it/web_summit.rs just before (two sessions on one stage):
//   a listener page sees the Now / Next panel with the first session's title and a countdown that decreases; the
//   first session's host (the identity from the schedule, `?identity=`) clicks "Go backstage", sees the backstage mic
//   check (the hub makes it a speaker there), and at the slot's time sees "You're live", its backstage connection
//   left, while the listener sees the host on stage and "Now" switching to the session; the host unmutes and the
//   listener hears the fake microphone; at the second slot's time "Now" switches again and the host leaves the stage.
// Every check is on the DOM (plus the SDK's state where the DOM shows nothing). Screenshots go to $PODIUM_SCREENSHOTS.
//
// Usage (run by tests/it/web_summit.rs):
//   PODIUM_HTTP=http://127.0.0.1:7880 PODIUM_SUMMIT='{"room": .., "host": {"id", "name", "role"}}' node web/e2e/summit.mjs
// The script loads the demo in both pages, prints READY, and reads the released programme as one JSON line on stdin
// ({"backstage_lead_ms", "slots": [{"guid", "title", "start_ms", "end_ms"}]}): the test releases the schedule only
// once the browser is up, so that a slow start on a loaded machine does not eat the seconds before the first slot.

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { launchChromium, loadDemo, log, reportPages, until } from "./chromium.mjs";

const base = process.env.PODIUM_HTTP;
if (!base) throw new Error("set PODIUM_HTTP to the hub's http://host:port");
const setup = JSON.parse(process.env.PODIUM_SUMMIT || "null");
if (!setup) throw new Error("set PODIUM_SUMMIT to {room, host} (JSON)");
const shots = process.env.PODIUM_SCREENSHOTS || "target/web-e2e";
mkdirSync(shots, { recursive: true });

const { room, host } = setup;
let summit; // the released programme, from stdin
let first;
let second;
const relative = (ms) => `${((Date.now() - ms) / 1000).toFixed(2)} s`;

/** Parses the demo's `m:ss` / `h:mm:ss` countdowns (after "in "), in seconds. */
function seconds(text) {
  const m = /(\d+):(\d\d)(?::(\d\d))?/.exec(text || "");
  if (!m) return null;
  return m[3] === undefined ? Number(m[1]) * 60 + Number(m[2]) : Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3]);
}

const text = (page, selector) => page.$eval(selector, (el) => el.textContent.trim()).catch(() => null);
const msToWait = (at, slackMs) => Math.max(0, at - Date.now()) + slackMs;

const browser = await launchChromium();
const pages = [];
/** The first line on stdin, as JSON. */
function readProgramme() {
  return new Promise((resolve, reject) => {
    let buf = "";
    process.stdin.setEncoding("utf8");
    process.stdin.on("data", (chunk) => {
      buf += chunk;
      const nl = buf.indexOf("\n");
      if (nl >= 0) {
        process.stdin.pause();
        resolve(JSON.parse(buf.slice(0, nl)));
      }
    });
    process.stdin.on("end", () => reject(new Error(`stdin closed before the programme: ${buf}`)));
  });
}

/** Loads the demo with the join form filled in (joined later by `join`). */
async function load(name, identity, role, extra = {}) {
  const viewport = { width: 420, height: 900 };
  const page = await loadDemo(browser, base, { name, identity, role, room, viewport, extraQuery: extra });
  pages.push({ name, page, identity, role });
  return page;
}

async function joinRoom(page) {
  const { name, identity, role } = pages.find((p) => p.page === page);
  await page.click("#join-button");
  await page.waitForSelector("#room-view:not([hidden])", { timeout: 15_000 });
  await page.waitForSelector("#conn-state.connected", { timeout: 15_000 });
  log(`${name} (${identity}, ${role} ceiling) joined ${room}, ${relative(first.start_ms)} from the first slot`);
  return page;
}

let failed = false;
try {
  // 1. The listener: the Now / Next panel, nothing on stage yet, the first session next with a running countdown.
  // A moderator ceiling (what the admin API gives hosts) joins the audience with `?join=audience`: the scheduler puts
  // the host on stage at the slot's time.
  const hostJoin = host.role === "moderator" ? { join: "audience" } : {};
  // Both pages join right away (the slot is seconds away); the host's page is looked at from step 2 on.
  const [lee, ada] = await Promise.all([load("Lee", "lee", "audience"), load(host.name, host.id, host.role, hostJoin)]);
  console.log("READY");
  summit = await readProgramme();
  [first, second] = summit.slots;
  log(`the programme: ${summit.slots.map((s) => `"${s.title}" in ${((s.start_ms - Date.now()) / 1000).toFixed(1)} s`).join(", ")}`);
  await Promise.all([joinRoom(lee), joinRoom(ada)]);
  await lee.waitForSelector("#schedule-panel:not([hidden])", { timeout: 10_000 });
  const nowBefore = await text(lee, "#now-slot");
  if (nowBefore !== "Nothing on stage right now.") throw new Error(`"Now" before the first slot: ${nowBefore}`);
  const nextTitles = await lee.$$eval("#next-slots .slot .title", (els) => els.map((e) => e.textContent.trim()));
  if (nextTitles[0] !== first.title || nextTitles[1] !== second.title) {
    throw new Error(`"Next" lists ${JSON.stringify(nextTitles)}, not [${first.title}, ${second.title}]`);
  }
  const nextPeople = await text(lee, `#next-slots .slot[data-guid="${first.guid}"] .dim`);
  if (!nextPeople?.includes(host.name)) throw new Error(`the first slot's people: ${nextPeople}`);
  const countdown = `#next-slots [data-countdown="${first.guid}"]`;
  const c1 = await text(lee, countdown);
  await new Promise((r) => setTimeout(r, 2_200));
  const c2 = await text(lee, countdown);
  const [s1, s2] = [seconds(c1), seconds(c2)];
  log(`the listener's countdown to "${first.title}": "${c1}" then "${c2}"`);
  if (!c1?.startsWith("in ") || s1 === null || s2 === null || !(s2 < s1) || s1 - s2 > 4) {
    throw new Error(`the countdown does not run down: "${c1}" then "${c2}"`);
  }
  const expected = Math.round((first.start_ms - Date.now()) / 1000);
  if (Math.abs(s2 - expected) > 2) throw new Error(`the countdown says ${s2} s, the slot is ${expected} s away`);
  await lee.screenshot({ path: join(shots, "summit-1-listener-next.png"), fullPage: true });

  // 2. The first session's host: the panel marks its slot and offers "Go backstage".
  await ada.waitForSelector("#schedule-panel:not([hidden])", { timeout: 10_000 });
  await ada.waitForSelector(`#next-slots .slot.mine[data-guid="${first.guid}"]`, { timeout: 5_000 });
  await ada.waitForSelector("#backstage-offer:not([hidden])", { timeout: 5_000 });
  const role0 = await ada.evaluate(() => window.demo.room.you.role);
  if (role0 !== "audience") throw new Error(`the host joined the stage room as ${role0}, not in the audience`);
  // Backstage opens `backstage_lead_ms` before the slot: the hint says so.
  await ada.waitForFunction(
    () => document.getElementById("backstage-hint").textContent.includes("check in backstage now"),
    null,
    { timeout: msToWait(first.start_ms - summit.backstage_lead_ms, 3_000) },
  );
  log(`backstage open for the host, ${relative(first.start_ms)} from the slot`);
  await ada.click("#go-backstage");

  // 3. Backstage: the mic check panel, the hub puts the host on the backstage stage as a speaker.
  await ada.waitForSelector("#backstage-panel:not([hidden])", { timeout: 10_000 });
  await ada.waitForSelector("#backstage-offer", { state: "hidden", timeout: 5_000 });
  await ada.waitForSelector(`#backstage-stage span[data-participant="${host.id}"]`, { timeout: 8_000 });
  await ada.waitForSelector("#backstage-mute:not([hidden])", { timeout: 5_000 });
  const backstageRole = await ada.evaluate(() => window.demo.backstage?.you?.role);
  if (backstageRole !== "speaker") throw new Error(`the host's role backstage is ${backstageRole}, not speaker`);
  const status = await text(ada, "#backstage-status");
  if (!status.startsWith("Checked in. Only the people backstage hear you")) throw new Error(`backstage: ${status}`);
  const conn = await text(ada, "#backstage-conn");
  if (conn !== "connected") throw new Error(`the backstage connection is ${conn}`);
  if (!(await text(ada, "#backstage-stage")).includes(`${host.name} (you)`)) throw new Error("not on the backstage stage");
  // The listener's panel shows the check-in (✓) once the hub's view says so.
  await lee.waitForFunction(
    ({ guid }) => document.querySelector(`#next-slots .slot[data-guid="${guid}"] .dim`)?.textContent.includes("✓"),
    { guid: first.guid },
    { timeout: 5_000 },
  );
  log(`the host is on the backstage stage as a speaker (mic check), ${relative(first.start_ms)} from the slot`);
  await ada.screenshot({ path: join(shots, "summit-2-host-backstage.png"), fullPage: true });
  if (Date.now() > first.start_ms - 300) throw new Error("the backstage check ran into the slot's time: too slow");

  // 4. The slot's time: "You're live" on the host's page, the backstage left; the listener sees the host on stage
  // and "Now" switches to the session.
  await ada.waitForSelector("#live-state:not([hidden])", { timeout: msToWait(first.start_ms, 5_000) });
  const liveLate = Date.now() - first.start_ms;
  const live = await text(ada, "#live-state");
  log(`the host's page says "${live}" ${liveLate} ms after the slot's time`);
  if (!live.startsWith("You're live")) throw new Error(`live state: ${live}`);
  if (liveLate < -300) throw new Error(`live ${-liveLate} ms before the slot's time`);
  await ada.waitForSelector("#backstage-panel", { state: "hidden", timeout: 5_000 });
  if ((await ada.evaluate(() => window.demo.backstage)) !== null) throw new Error("the backstage room is still open");
  const stageRole = await ada.evaluate(() => window.demo.room.you.role);
  log(`the host's role on the stage room: ${stageRole}`);
  if (stageRole === "audience") throw new Error("live but in the audience");
  await ada.waitForSelector(`#now-slot .slot.mine[data-guid="${first.guid}"]`, { timeout: 3_000 });
  await ada.waitForSelector("#mute-toggle:not([hidden])", { timeout: 5_000 });

  await lee.waitForSelector(`#stage .member[data-participant="${host.id}"]`, { timeout: 5_000 });
  await lee.waitForFunction(
    ({ title }) => document.querySelector("#now-slot .title")?.textContent.trim() === title,
    { title: first.title },
    { timeout: 5_000 },
  );
  const left = await text(lee, "#now-countdown");
  if (!/^\d+:\d\d left$/.test(left ?? "") || seconds(left) > Math.ceil((first.end_ms - first.start_ms) / 1000)) {
    throw new Error(`"Now" countdown: ${left}`);
  }
  const nextNow = await lee.$$eval("#next-slots .slot .title", (els) => els.map((e) => e.textContent.trim()));
  if (nextNow[0] !== second.title) throw new Error(`"Next" during the first slot: ${JSON.stringify(nextNow)}`);
  log(`the listener sees ${host.id} on stage and "Now: ${first.title}" (${left}), ${relative(first.start_ms)} after`);
  await lee.screenshot({ path: join(shots, "summit-3-listener-live.png"), fullPage: true });
  await ada.screenshot({ path: join(shots, "summit-3-host-live.png"), fullPage: true });

  // 5. The host unmutes on the stage room's connection; the listener hears the fake microphone.
  const publishing = () => ada.evaluate(() => window.demo.room.media.publishing);
  await until("the host's microphone to be published", publishing, 30_000, 200);
  await ada.click("#mute-toggle");
  await lee.waitForSelector(`#stage .member[data-participant="${host.id}"][data-muted="false"]`, { timeout: 5_000 });
  await ada.waitForFunction(() => document.getElementById("live-state").textContent === "You're live", null, {
    timeout: 3_000,
  });
  const heard = await until(
    "the listener to receive audio with energy",
    async () => {
      const s = (await lee.evaluate(async () => await window.demo.room.stats())) ?? {};
      return { ok: s.packetsReceived > 50 && s.totalAudioEnergy > 0, ...s };
    },
    Math.max(3_000, first.end_ms - Date.now() - 500),
    250,
  );
  log(`the listener hears the host: ${heard.packetsReceived} packets`);

  // 6. The second slot's time: "Now" switches to it and the first slot's host goes back to the audience.
  await lee.waitForFunction(
    ({ title }) => document.querySelector("#now-slot .title")?.textContent.trim() === title,
    { title: second.title },
    { timeout: msToWait(second.start_ms, 5_000) },
  );
  log(`the listener's "Now" is "${second.title}", ${relative(second.start_ms)} from its time`);
  await lee.waitForSelector(`#stage .member[data-participant="${host.id}"]`, { state: "detached", timeout: 5_000 });
  await ada.waitForSelector("#live-state", { state: "hidden", timeout: 5_000 });
  log("the first host is back in the audience; its page no longer says live");
  log("PASS");
} catch (e) {
  failed = true;
  console.error(`FAIL: ${e && e.stack ? e.stack : e}`);
  const describe = () => {
    const r = window.demo && window.demo.room;
    const b = window.demo && window.demo.backstage;
    return r
      ? {
          connection: r.connection,
          you: r.you,
          schedule: r.schedule,
          backstage: b ? { connection: b.connection, you: b.you, stage: b.stage } : null,
          panel: document.getElementById("schedule-panel")?.innerText,
          toasts: document.getElementById("toasts")?.innerText,
        }
      : null;
  };
  await reportPages(pages, describe, (name) => join(shots, `summit-failure-${name}.png`));
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
