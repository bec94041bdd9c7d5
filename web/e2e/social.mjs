// Browser end to end of reactions, chat and the recording indicator (issue #15), driven by Playwright in Debian's
// Chromium against a running hub that serves the demo (development mode: no auth.secret) with reactions, chat and
// recording on:
//   a listener clicks a reaction and the moderator's page counts it (aggregated by the hub, floating up); the listener
//   sends a chat message by typing, the moderator's page shows it and deletes it by clicking, and it disappears from
//   the listener's page; after more messages than a snapshot holds, a late joiner loads the older ones by clicking
//   "Load older messages"; the moderator starts recording by clicking and the listener's page shows the red REC
//   indicator, which goes away when the moderator stops.
// Screenshots go to $PODIUM_SCREENSHOTS (default target/web-e2e).
//
// Usage: PODIUM_HTTP=http://127.0.0.1:7880 node web/e2e/social.mjs   (run by tests/it/web_social.rs)
// PODIUM_PARTS=reactions,chat,recording (the default: all) runs only those parts.

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { demoRoomState, launchChromium, log, openDemo, reportPages, until } from "./chromium.mjs";

const base = process.env.PODIUM_HTTP;
if (!base) throw new Error("set PODIUM_HTTP to the hub's http://host:port");
const shots = process.env.PODIUM_SCREENSHOTS || "target/web-e2e";
mkdirSync(shots, { recursive: true });

const room = `web-social-${Date.now().toString(36)}`;
/** More than a snapshot carries by default (`[chat] snapshot_messages` 50). */
const BACKLOG = 55;
const parts = new Set((process.env.PODIUM_PARTS || "reactions,chat,recording").split(","));

const browser = await launchChromium();
const pages = [];
const open = (name, identity, role) =>
  openDemo(browser, base, pages, { name, identity, role, room, viewport: { width: 390, height: 844 } });
const chatItem = (text) => `#chat-list li:has(.text:text-is(${JSON.stringify(text)}))`;

let failed = false;
try {
  const mod = await open("Moderator", "mod", "moderator");
  const lis = await open("Lisa", "lisa", "speaker");

  if (parts.has("reactions")) {
    // Reactions: the bar offers the hub's kinds; three claps from the listener reach the moderator's page summed.
    const clap = '#reaction-buttons button[data-kind="clap"]';
    await lis.waitForSelector(clap, { timeout: 10_000 });
    const kinds = await lis.$$eval("#reaction-buttons button", (bs) => bs.map((b) => b.dataset.kind));
    log(`reaction kinds: ${kinds.join(", ")}`);
    for (let i = 0; i < 3; i++) await lis.click(clap);
    const seen = await until("the moderator's page to count 3 claps", async () => {
      const n = Number((await mod.textContent('#reaction-buttons [data-count="clap"]')) || "0");
      return { ok: n >= 3, n };
    });
    log(`the moderator's page counted ${seen.n} claps`);
    await mod
      .waitForSelector('#reaction-float .float[data-kind="clap"]', { state: "attached", timeout: 5_000 })
      .catch(() => log("(the floating clap had already faded)"));
  }
  if (parts.has("chat")) {
    // Chat: the listener sends by typing; the moderator sees it and deletes it; it disappears for the listener.
    const hello = `hello from lisa ${Date.now() % 1000}`;
    await lis.fill("#chat-input", hello);
    await lis.click("#chat-send");
    await mod.waitForSelector(chatItem(hello), { timeout: 10_000 });
    await lis.waitForSelector(chatItem(hello), { timeout: 10_000 });
    await mod.screenshot({ path: join(shots, "social-1-moderator-chat.png"), fullPage: true });
    log("the moderator's page shows lisa's message");
    await mod.click(`${chatItem(hello)} button[data-action="delete"]`);
    await lis.waitForSelector(chatItem(hello), { state: "detached", timeout: 10_000 });
    await mod.waitForSelector(chatItem(hello), { state: "detached", timeout: 10_000 });
    log("the moderator deleted it; gone on lisa's page");

    // A backlog longer than a snapshot: a late joiner pages the older ones in with "Load older messages".
    await mod.evaluate(async (n) => {
      for (let i = 1; i <= n; i++) {
        await window.demo.room.sendChat(`backlog ${i}`);
        await new Promise((r) => setTimeout(r, 70)); // under the room's and the connection's rates
      }
    }, BACKLOG);
    const late = await open("Late", "late", "audience");
    await late.waitForSelector(chatItem(`backlog ${BACKLOG}`), { timeout: 10_000 });
    if (await late.$(chatItem("backlog 1"))) throw new Error("the snapshot already held the whole backlog");
    await late.click("#chat-older");
    await late.waitForSelector(chatItem("backlog 1"), { timeout: 10_000 });
    const ids = await late.$$eval("#chat-list li", (lis) => lis.map((li) => Number(li.dataset.messageId)));
    if (ids.some((id, i) => i > 0 && id <= ids[i - 1])) throw new Error(`chat not in order: ${ids}`);
    log(`the late joiner loaded older messages: ${ids.length} in order`);
  }
  if (parts.has("recording")) {
    // Recording: the moderator starts it; the listener's page shows REC; it goes away when stopped.
    if (!(await lis.$eval("#rec-indicator", (el) => el.hidden))) throw new Error("REC shown before recording");
    await mod.click("#recording-toggle");
    await lis.waitForSelector("#rec-indicator:not([hidden])", { timeout: 10_000 });
    await mod.waitForSelector('#recording-toggle[data-recording="true"]', { timeout: 10_000 });
    await lis.screenshot({ path: join(shots, "social-2-listener-rec.png"), fullPage: true });
    log("the listener's page shows REC");
    await mod.click("#recording-toggle");
    await lis.waitForSelector("#rec-indicator", { state: "hidden", timeout: 10_000 });
    log("recording stopped; REC gone");
  }
  log("PASS");
} catch (e) {
  failed = true;
  console.error(`FAIL: ${e && e.stack ? e.stack : e}`);
  await reportPages(pages, demoRoomState, (name) => join(shots, `social-failure-${name}.png`));
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
