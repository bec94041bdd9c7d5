// The demo app over https:// from a host name that is not loopback, driven by Playwright in Debian's Chromium
// against a hub serving TLS itself ([tls], started by tests/it/web_tls.rs with a certificate from a test CA).
// Chromium resolves the name to 127.0.0.1 (--host-resolver-rules) and trusts that one certificate by its public key
// (--ignore-certificate-errors-spki-list), so every other certificate check stays on. A moderator page joins: the
// page is a secure context (over plain http:// from such a name there would be no navigator.mediaDevices, so no
// microphone), its SDK connects over wss://, and its fake microphone is published and unmuted; a listener page joins
// over wss:// too and hears it (getStats(): packets and energy).
//
// Usage: PODIUM_HTTPS=https://podium.test:7880 PODIUM_HOST_RULES="MAP podium.test 127.0.0.1" PODIUM_SPKI=<base64>
//        node web/e2e/tls.mjs   (run by tests/it/web_tls.rs)

import { demoRoomState, launchChromium, log, reportPages, until, untilHeard } from "./chromium.mjs";

const base = process.env.PODIUM_HTTPS;
const rules = process.env.PODIUM_HOST_RULES;
const spki = process.env.PODIUM_SPKI;
if (!base || !rules || !spki) throw new Error("set PODIUM_HTTPS, PODIUM_HOST_RULES and PODIUM_SPKI");
const host = new URL(base).host;
const room = `tls-e2e-${Date.now().toString(36)}`;
const MIN_PACKETS = 50;

const browser = await launchChromium([`--host-resolver-rules=${rules}`, `--ignore-certificate-errors-spki-list=${spki}`]);

const pages = [];
async function open(name, identity, role) {
  const context = await browser.newContext({ permissions: ["microphone"] });
  const page = await context.newPage();
  const sockets = [];
  page.on("websocket", (ws) => sockets.push(ws.url()));
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") log(`[${name} console.${m.type()}] ${m.text()}`);
  });
  page.on("pageerror", (e) => log(`[${name} pageerror] ${e.message}`));
  const q = new URLSearchParams({ room, name, identity, role });
  const response = await page.goto(`${base}/?${q}`);
  if (!response.ok()) throw new Error(`${name}: the demo answered ${response.status()}`);
  const where = await page.evaluate(() => ({
    protocol: location.protocol,
    host: location.host,
    secure: window.isSecureContext,
    mediaDevices: !!navigator.mediaDevices,
  }));
  if (where.protocol !== "https:" || where.host !== host || !where.secure || !where.mediaDevices) {
    throw new Error(`${name}: not a secure context at ${base}: ${JSON.stringify(where)}`);
  }
  await page.click("#join-button");
  await page.waitForSelector("#room-view:not([hidden])", { timeout: 15_000 });
  await page.waitForSelector("#conn-state.connected", { timeout: 15_000 });
  const wss = `wss://${host}/v1/ws`;
  if (!sockets.includes(wss)) throw new Error(`${name}: the SDK did not connect to ${wss}: ${JSON.stringify(sockets)}`);
  pages.push({ name, page });
  log(`${name} joined ${room} as ${role} over ${wss} (secure context: ${where.secure})`);
  return page;
}

let failed = false;
try {
  const mod = await open("Moderator", "mod", "moderator");
  // On stage: the microphone (getUserMedia, secure contexts only) is published; the moderator unmutes.
  await mod.waitForSelector("#mute-toggle:not([hidden])", { timeout: 10_000 });
  await until("the moderator's microphone to be published", () => mod.evaluate(() => window.demo.room.media.publishing));
  if (await mod.evaluate(() => window.demo.room.you.muted)) await mod.click("#mute-toggle");
  await mod.waitForSelector('#stage .member[data-participant="mod"][data-muted="false"]', { timeout: 10_000 });
  log("the moderator publishes the microphone, unmuted");

  const ear = await open("Earl", "earl", "audience");
  const heard = await untilHeard("earl", ear, MIN_PACKETS);
  log(`earl hears the moderator: ${JSON.stringify(heard)}`);
  log("PASS");
} catch (e) {
  failed = true;
  console.error(`FAIL: ${e && e.stack ? e.stack : e}`);
  await reportPages(pages, demoRoomState);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
