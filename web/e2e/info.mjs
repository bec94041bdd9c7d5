// Browser end to end of the room's description and pinned link and of raised hands going down, driven by Playwright
// in Debian's Chromium against a running hub that serves the demo (development mode: no auth.secret) with a short
// `room.hand_ttl_ms` (PODIUM_HAND_TTL_MS):
//   a moderator sets a description and a pinned link by clicking and typing, a listener's page shows them (as text
//   and as a link); the listener raises a hand, sees its countdown, and the hand goes down by itself when the TTL
//   passes (the listener is told, the moderator's queue empties); raised again, the moderator lowers every hand by
//   clicking; the moderator clears the link and the listener's page drops it.
// Screenshots go to $PODIUM_SCREENSHOTS (default target/web-e2e).
//
// Usage: PODIUM_HTTP=http://127.0.0.1:7880 PODIUM_HAND_TTL_MS=4000 node web/e2e/info.mjs  (tests/it/web_browser.rs)

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { demoRoomState, launchChromium, log, openDemo, reportPages, until } from "./chromium.mjs";

const base = process.env.PODIUM_HTTP;
if (!base) throw new Error("set PODIUM_HTTP to the hub's http://host:port");
const handTtlMs = Number(process.env.PODIUM_HAND_TTL_MS || "4000");
const shots = process.env.PODIUM_SCREENSHOTS || "target/web-e2e";
mkdirSync(shots, { recursive: true });

const room = `web-info-${Date.now().toString(36)}`;
const DESCRIPTION = "Weekly Rust audio hour.\nBe kind. <b>not bold</b>";
const LINK = { url: "https://example.com/agenda?day=2", title: "Agenda" };

const browser = await launchChromium();
const pages = [];
const open = (name, identity, role) =>
  openDemo(browser, base, pages, { name, identity, role, room, viewport: { width: 390, height: 844 } });
const text = (page, selector) => page.$eval(selector, (el) => el.textContent);
const toastSeen = (page, part) =>
  page.waitForFunction((p) => [...document.querySelectorAll(".toast")].some((t) => t.textContent.includes(p)), part, {
    timeout: 10_000,
  });

let failed = false;
try {
  const mod = await open("Moderator", "mod", "moderator");
  const lis = await open("Lisa", "lisa", "speaker");

  // Nothing set yet: the moderator sees the (empty) panel with its edit button, the listener no panel at all.
  await mod.waitForSelector("#info-edit:not([hidden])");
  if (!(await lis.$eval("#info-panel", (el) => el.hidden))) throw new Error("the listener sees an empty info panel");

  // The moderator types a description and a pinned link and saves.
  await mod.click("#info-edit");
  await mod.fill("#info-description-input", DESCRIPTION);
  await mod.fill("#info-link-url", LINK.url);
  await mod.fill("#info-link-title", LINK.title);
  await mod.click("#info-save");
  await mod.waitForSelector("#info-form", { state: "hidden" });
  log("moderator saved the description and pinned link");

  // The listener's page shows both: the description as text (markup not interpreted), the link with its title.
  await lis.waitForSelector("#info-link:not([hidden])", { timeout: 10_000 });
  const href = await lis.$eval("#info-link", (el) => el.getAttribute("href"));
  if (href !== LINK.url) throw new Error(`pinned link href ${href}`);
  const linkText = await text(lis, "#info-link");
  if (!linkText.includes(LINK.title)) throw new Error(`pinned link text ${JSON.stringify(linkText)}`);
  const desc = await text(lis, "#info-description");
  if (desc !== DESCRIPTION.trim()) throw new Error(`description ${JSON.stringify(desc)}`);
  if ((await lis.$$("#info-description b")).length !== 0) throw new Error("the description was rendered as HTML");
  if (await lis.isVisible("#info-edit")) throw new Error("the listener may edit the room info");
  const rel = await lis.$eval("#info-link", (el) => el.rel);
  if (!rel.includes("noopener")) throw new Error(`pinned link rel ${rel}`);
  await lis.screenshot({ path: join(shots, "info-1-listener-pinned-link.png"), fullPage: true });
  log("the listener sees the description and the pinned link");

  // Hand expiry: raised, with a countdown; gone by itself after the TTL, on both pages.
  await lis.click("#raise-hand");
  await lis.waitForSelector("#lower-hand:not([hidden])");
  await lis.waitForFunction(() => document.getElementById("you-status").textContent.includes("goes down in"), null, {
    timeout: 5_000,
  });
  log(`lisa's status: ${await text(lis, "#you-status")}`);
  await mod.waitForSelector('#hands li[data-participant="lisa"]', { timeout: 10_000 });
  const raisedAt = Date.now();
  await toastSeen(lis, "it was up too long");
  await lis.waitForSelector("#raise-hand:not([hidden])", { timeout: 5_000 });
  const lowered = Date.now() - raisedAt;
  await mod.waitForSelector('#hands li[data-participant="lisa"]', { state: "detached", timeout: 5_000 });
  log(`lisa's hand went down by itself after ${lowered} ms (TTL ${handTtlMs} ms)`);
  if (lowered > handTtlMs + 5_000) throw new Error(`the hand went down ${lowered} ms after it was raised`);

  // Raised again; the moderator lowers every hand by clicking.
  await lis.click("#raise-hand");
  await mod.waitForSelector('#hands li[data-participant="lisa"]', { timeout: 10_000 });
  await mod.click("#clear-hands");
  await toastSeen(lis, "lowered all raised hands");
  await lis.waitForSelector("#raise-hand:not([hidden])", { timeout: 5_000 });
  await mod.waitForSelector("#no-hands:not([hidden])", { timeout: 5_000 });
  log("the moderator lowered all hands");

  // The moderator clears the link (keeping the description); the listener's page drops it.
  await mod.click("#info-edit");
  await mod.fill("#info-link-url", "");
  await mod.click("#info-save");
  await lis.waitForSelector("#info-link", { state: "hidden", timeout: 10_000 });
  if ((await text(lis, "#info-description")) !== DESCRIPTION.trim()) throw new Error("the description changed");
  await until("lisa's room.info to lose the link", () =>
    lis.evaluate(() => window.demo.room.info && !window.demo.room.info.pinned_link),
  );
  log("the moderator cleared the pinned link");
  log("PASS");
} catch (e) {
  failed = true;
  console.error(`FAIL: ${e && e.stack ? e.stack : e}`);
  await reportPages(pages, demoRoomState, (name) => join(shots, `info-failure-${name}.png`));
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
