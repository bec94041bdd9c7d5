// Shared by the browser tests: Debian's Chromium, headless, with a fake microphone and camera granted without a
// prompt, autoplay allowed and loopback ICE candidates kept (the hubs under test listen on 127.0.0.1); and two helpers.
import { chromium } from "playwright-core";

export const executablePath = process.env.PODIUM_CHROMIUM || "/usr/bin/chromium";

export function launchChromium(extraArgs = []) {
  return chromium.launch({
    executablePath,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--use-fake-device-for-media-stream",
      "--use-fake-ui-for-media-stream",
      "--autoplay-policy=no-user-gesture-required",
      "--allow-loopback-in-peer-connection",
      "--disable-features=WebRtcHideLocalIpsWithMdns",
      "--disable-background-networking",
      "--disable-background-timer-throttling",
      "--disable-renderer-backgrounding",
      "--disable-backgrounding-occluded-windows",
      "--disable-component-update",
      "--disable-sync",
      "--disable-quic",
      "--no-first-run",
      "--disable-dev-shm-usage",
      ...extraArgs,
    ],
  });
}

/** Logs a line with the time of day. */
export const log = (msg) => console.log(`${new Date().toISOString().slice(11, 23)} ${msg}`);

/**
 * After a failure: for each page, saves a screenshot where `shotPath(name)` gives a path, and prints what `describe`
 * returns when run in the page.
 */
export async function reportPages(pages, describe, shotPath = () => null) {
  for (const { name, page } of pages) {
    try {
      const path = shotPath(name);
      if (path) await page.screenshot({ path, fullPage: true });
      console.error(`${name}: ${JSON.stringify(await page.evaluate(describe))}`);
    } catch (err) {
      console.error(`${name}: (unavailable: ${err.message})`);
    }
  }
}

/** Run in a demo page (`reportPages`): the SDK room's connection, the participant's state, media and stats. */
export async function demoRoomState() {
  const r = window.demo && window.demo.room;
  return r ? { connection: r.connection, you: r.you, media: r.media, stats: await r.stats() } : null;
}

/** Waits until the demo `page` has received more than `minPackets` audio packets with energy; its stats then. */
export function untilHeard(what, page, minPackets, timeoutMs = 40_000) {
  return until(
    `${what} to receive > ${minPackets} packets with energy`,
    async () => {
      const s = (await page.evaluate(async () => await window.demo.room.stats())) ?? {};
      return { ok: s.packetsReceived > minPackets && s.totalAudioEnergy > 0, ...s };
    },
    timeoutMs,
    500,
  );
}

/** Calls `fn` every `everyMs` until it returns something truthy without `ok: false`; throws after `timeoutMs`. */
export async function until(what, fn, timeoutMs = 30_000, everyMs = 250) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last && last.ok !== false) return last;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * Loads the demo at `base` in a new context of `browser` with the join form filled in from the query (a development
 * token for `identity`, the token's ceiling `role`), logging the page's console errors and accepting dialogs.
 */
export async function loadDemo(browser, base, { name, identity, role, room, viewport, extraQuery = {} }) {
  const context = await browser.newContext({ viewport, permissions: ["microphone"] });
  const page = await context.newPage();
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") log(`[${name} console.${m.type()}] ${m.text()}`);
  });
  page.on("pageerror", (e) => log(`[${name} pageerror] ${e.message}`));
  page.on("dialog", (d) => d.accept());
  const q = new URLSearchParams({ room, name, identity, role, ...extraQuery });
  await page.goto(`${base}/?${q}`);
  // Generous: on a loaded machine the first page of a fresh browser may take a while.
  await page.waitForSelector("#join-button:not([disabled])", { timeout: 60_000 });
  return page;
}

/**
 * `loadDemo`, then joins by clicking "Join room" and waits until connected; pushes `{name, page}` onto `pages` (for
 * `reportPages`).
 */
export async function openDemo(browser, base, pages, options) {
  const page = await loadDemo(browser, base, options);
  await page.click("#join-button");
  await page.waitForSelector("#room-view:not([hidden])", { timeout: 15_000 });
  await page.waitForSelector("#conn-state.connected", { timeout: 15_000 });
  pages.push({ name: options.name, page });
  log(`${options.name} joined ${options.room} as ${options.role}`);
  return page;
}
