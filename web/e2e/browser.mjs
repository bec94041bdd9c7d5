// Browser end to end, driven by Playwright (playwright-core) in Debian's Chromium, against a running hub that serves
// the demo app (development mode: no auth.secret, media enabled on 127.0.0.1):
//   a moderator page, a listener page that raises its hand, the moderator approves by clicking, the new speaker
//   unmutes and its fake microphone is heard by a third page (getStats(): audio packets and energy), which keeps
//   hearing it across a websocket drop and across a network change (an `online` event: the SDK restarts ICE), the
//   moderator moves the speaker back to the audience by clicking, and the third page stops receiving; then invite, accept,
//   mute, remove and end room, all by clicking.
// Screenshots of the moderator's view go to $PODIUM_SCREENSHOTS (default target/web-e2e).
//
// Usage: PODIUM_HTTP=http://127.0.0.1:7880 node web/e2e/browser.mjs   (run by tests/it/web_browser.rs)

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { demoRoomState, launchChromium, log, openDemo, reportPages, until, untilHeard } from "./chromium.mjs";

const base = process.env.PODIUM_HTTP;
if (!base) throw new Error("set PODIUM_HTTP to the hub's http://host:port");
const shots = process.env.PODIUM_SCREENSHOTS || "target/web-e2e";
mkdirSync(shots, { recursive: true });

const room = `web-e2e-${Date.now().toString(36)}`;
const MIN_PACKETS = 100;

const browser = await launchChromium();

const pages = [];
const open = (name, identity, role, viewport) => openDemo(browser, base, pages, { name, identity, role, room, viewport });

const stats = (page) => page.evaluate(async () => (await window.demo.room.stats()) ?? {});

let failed = false;
try {
  // A phone-sized moderator screen; the others need no particular size.
  const mod = await open("Moderator", "mod", "moderator", { width: 390, height: 844 });
  const lis = await open("Lisa", "lisa", "speaker", { width: 390, height: 844 });
  const ear = await open("Earl", "earl", "audience", { width: 800, height: 600 });

  await mod.waitForSelector('#stage .member[data-participant="mod"]');
  await mod.screenshot({ path: join(shots, "1-moderator-joined.png"), fullPage: true });

  // The listener raises a hand; the moderator sees it and approves by clicking.
  await lis.click("#raise-hand");
  await lis.waitForSelector("#lower-hand:not([hidden])");
  const approve = '#hands li[data-participant="lisa"] button[data-action="approve"]';
  await mod.waitForSelector(approve, { timeout: 10_000 });
  await mod.screenshot({ path: join(shots, "2-moderator-hand-raised.png"), fullPage: true });
  await mod.click(approve);
  log("moderator approved lisa's hand");

  // Lisa is on stage (muted); her page publishes the microphone and she unmutes herself.
  await lis.waitForSelector("#mute-toggle:not([hidden])", { timeout: 10_000 });
  await until("lisa's microphone to be published", () => lis.evaluate(() => window.demo.room.media.publishing));
  await lis.click("#mute-toggle");
  await mod.waitForSelector('#stage .member[data-participant="lisa"][data-muted="false"]', { timeout: 10_000 });
  log("lisa is on stage and unmuted");

  // The third page hears her: inbound audio packets and energy.
  const heard = await untilHeard("earl", ear, MIN_PACKETS);
  log(`earl hears lisa: ${JSON.stringify(heard)}`);
  const sent = await stats(lis);
  if (!(sent.packetsSent > 0)) throw new Error(`lisa sent nothing: ${JSON.stringify(sent)}`);

  // Earl's websocket drops: the SDK reconnects and resumes, and the audio keeps flowing on the same peer connection.
  const resumed = ear.evaluate(
    () =>
      new Promise((resolve) => {
        const room = window.demo.room;
        room.once("reconnected").then(resolve);
        room.reconnectNow();
      }),
  );
  const { resumed: wasResumed } = await resumed;
  if (!wasResumed) throw new Error("earl's session was not resumed");
  const before = (await stats(ear)).packetsReceived;
  await until("earl to keep receiving after the resume", async () => {
    const s = await stats(ear);
    return { ok: s.packetsReceived > before + 25, ...s };
  });
  log("earl's websocket dropped and resumed; audio kept flowing");

  // Earl's network changes (the browser's `online` event): the SDK restarts ICE by itself on the same peer connection
  // (PROTOCOL.md, "Network changes"); the audio goes on with at most a short gap, on the same slot.
  const tracksBefore = JSON.stringify(await ear.evaluate(() => window.demo.room.media.tracks));
  const gap = await ear.evaluate(
    () =>
      new Promise((resolve) => {
        const room = window.demo.room;
        const samples = [];
        const started = performance.now();
        window.dispatchEvent(new Event("online"));
        const timer = setInterval(async () => {
          const s = await room.stats();
          samples.push([performance.now() - started, s.packetsReceived, s.inbound]);
          if (samples.length < 60) return; // 3 s
          clearInterval(timer);
          // The longest stretch without a new packet, from the event on.
          let longest = 0;
          let since = 0;
          for (let i = 1; i < samples.length; i++) {
            if (samples[i][1] > samples[i - 1][1]) since = samples[i][0];
            longest = Math.max(longest, samples[i][0] - since);
          }
          resolve({ longest, restarts: room.media.iceRestarts, samples: samples.slice(-1), inbound: s.inbound });
        }, 50);
      }),
  );
  log(`earl's network changed: ${JSON.stringify(gap)}`);
  if (gap.restarts !== 1) throw new Error(`the SDK did not restart ICE once on 'online': ${JSON.stringify(gap)}`);
  if (!(gap.longest < 1000)) throw new Error(`earl received nothing for ${gap.longest} ms after the ICE restart`);
  if (gap.inbound !== 1) throw new Error(`earl has ${gap.inbound} inbound audio streams after the restart`);
  const tracksAfter = JSON.stringify(await ear.evaluate(() => window.demo.room.media.tracks));
  if (tracksAfter !== tracksBefore) throw new Error(`earl's slots changed: ${tracksBefore} -> ${tracksAfter}`);

  // The moderator's view shows her speaking (active speakers from the SFU); not fatal if the tone is too quiet.
  const speaking = await mod
    .waitForSelector('#stage .member.speaking[data-participant="lisa"]', { timeout: 10_000 })
    .then(() => true)
    .catch(() => false);
  log(`speaking indicator on the moderator's view: ${speaking}`);
  await mod.screenshot({ path: join(shots, "3-moderator-speaker-live.png"), fullPage: true });

  // The moderator moves her back to the audience by clicking; the third page stops receiving.
  await mod.click('#stage .member[data-participant="lisa"] button[data-action="move-to-audience"]');
  await mod.waitForSelector('#stage .member[data-participant="lisa"]', { state: "detached", timeout: 10_000 });
  log("moderator moved lisa to the audience");
  await lis.waitForSelector("#raise-hand:not([hidden])", { timeout: 10_000 });
  await until("lisa's page to stop publishing", async () => !(await lis.evaluate(() => window.demo.room.media.publishing)));
  let previous = (await stats(ear)).packetsReceived;
  let stableSince = Date.now();
  const stopped = await until(
    "earl to stop receiving audio (no new packets for 2 s)",
    async () => {
      const s = await stats(ear);
      if (s.packetsReceived !== previous) {
        previous = s.packetsReceived;
        stableSince = Date.now();
      }
      return { ok: Date.now() - stableSince >= 2000, ...s };
    },
    15_000,
    250,
  );
  log(`earl stopped receiving at ${stopped.packetsReceived} packets`);
  await mod.screenshot({ path: join(shots, "4-moderator-after-move.png"), fullPage: true });

  // The other moderator controls: invite from the listener list (accepted on lisa's page), mute, remove, end room.
  const invite = '#audience li[data-participant="lisa"] button[data-action="invite"]';
  await mod.waitForSelector(invite, { timeout: 10_000 });
  await mod.click(invite);
  await lis.waitForSelector("#invite:not([hidden])", { timeout: 10_000 });
  await lis.click("#accept-invite");
  await mod.waitForSelector('#stage .member[data-participant="lisa"][data-muted="true"]', { timeout: 10_000 });
  await lis.click("#mute-toggle");
  const muteLisa = '#stage .member[data-participant="lisa"] button[data-action="mute"]';
  await mod.waitForSelector(muteLisa, { timeout: 10_000 });
  await mod.click(muteLisa);
  await lis.waitForSelector("#mute-toggle.primary", { timeout: 10_000 }); // "Unmute" again
  log("invite accepted; the moderator muted lisa");
  await mod.click('#stage .member[data-participant="lisa"] button[data-action="remove"]');
  await until("lisa's page to be closed (removed)", () => lis.evaluate(() => window.demo.room.connection === "closed"));
  await mod.waitForSelector('#stage .member[data-participant="lisa"]', { state: "detached", timeout: 10_000 });
  log("lisa removed");
  await mod.click("#end-room");
  await until("earl's page to be closed (room ended)", () => ear.evaluate(() => window.demo.room.connection === "closed"));
  await until("the moderator's page to be closed", () => mod.evaluate(() => window.demo.room.connection === "closed"));
  log("room ended");
  log("PASS");
} catch (e) {
  failed = true;
  console.error(`FAIL: ${e && e.stack ? e.stack : e}`);
  await reportPages(pages, demoRoomState, (name) => join(shots, `failure-${name}.png`));
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
