// The npm package end to end: packs web/sdk (`npm pack`, whose prepack builds it), copies the Vite app template
// web/e2e/vite-app to a temp dir, installs its locked dependencies (`npm ci`) and the tarball
// (`npm install ./podium-sdk-x.y.z.tgz`), typechecks it against the package's declarations (`tsc --noEmit`), builds
// it (`vite build`), serves the build (`vite preview`), and Chromium (Playwright) opens it: the page joins the hub at
// $PODIUM_HTTP with a development token, and its joined state is checked on the page.
//
// Usage: PODIUM_HTTP=http://127.0.0.1:7880 node web/e2e/package.mjs   (run by tests/it/web_package.rs)

import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { launchChromium, log } from "./chromium.mjs";

const base = process.env.PODIUM_HTTP;
if (!base) throw new Error("set PODIUM_HTTP to the hub's http://host:port");
const here = dirname(fileURLToPath(import.meta.url));
const sdkDir = join(here, "..", "sdk");
const template = join(here, "vite-app");
const room = `web-pkg-${Date.now().toString(36)}`;

/** Runs a command in `cwd`, its output on stderr; returns its stdout. Throws when it fails. */
function run(cwd, cmd, args) {
  log(`$ (${cwd}) ${cmd} ${args.join(" ")}`);
  return execFileSync(cmd, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], timeout: 300_000 });
}

/** A free TCP port on 127.0.0.1 (for `vite preview`). */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const tmp = mkdtempSync(join(tmpdir(), "podium-pkg-"));
const app = join(tmp, "app");
let server = null;
let browser = null;
let failed = false;
try {
  cpSync(template, app, { recursive: true, filter: (src) => !/[/\\](node_modules|dist)$/.test(src) });
  const pkg = JSON.parse(readFileSync(join(sdkDir, "package.json"), "utf8"));
  const packed = JSON.parse(run(sdkDir, "npm", ["pack", "--json", "--pack-destination", app]));
  const tarball = packed[0].filename;
  if (tarball !== `podium-sdk-${pkg.version}.tgz`) throw new Error(`npm pack made ${tarball}`);
  const files = packed[0].files.map((f) => f.path);
  for (const need of ["package.json", "README.md", "dist/podium.js", "dist/index.d.ts"]) {
    if (!files.includes(need)) throw new Error(`the tarball lacks ${need}: ${files.join(", ")}`);
  }
  log(`packed ${tarball}: ${files.length} files`);

  run(app, "npm", ["ci", "--no-audit", "--no-fund", "--loglevel=error"]);
  run(app, "npm", ["install", `./${tarball}`, "--no-audit", "--no-fund", "--loglevel=error"]);
  const installed = JSON.parse(readFileSync(join(app, "node_modules/@podium/sdk/package.json"), "utf8"));
  if (installed.version !== pkg.version) throw new Error(`installed @podium/sdk ${installed.version}`);
  run(app, "npx", ["--no-install", "tsc", "--noEmit"]);
  run(app, "npx", ["--no-install", "vite", "build"]);
  if (!existsSync(join(app, "dist/index.html"))) throw new Error("vite build made no dist/index.html");
  log("the app typechecks and builds against the packed SDK");

  // Serve the build with Vite's own preview server, from the app's node_modules.
  const vite = await import(pathToFileURL(join(app, "node_modules/vite/dist/node/index.js")).href);
  const port = await freePort();
  server = await vite.preview({ root: app, logLevel: "warn", preview: { host: "127.0.0.1", port, strictPort: true } });
  const pageUrl = `http://127.0.0.1:${port}/`;

  // A development token (the hub runs without a secret), fetched here: the page only connects the websocket.
  const q = new URLSearchParams({ identity: "pkg-user", name: "Package User", room, role: "speaker" });
  const resp = await fetch(`${base}/dev/token?${q}`);
  if (!resp.ok) throw new Error(`/dev/token: ${resp.status} ${await resp.text()}`);
  const { token } = await resp.json();
  const ws = `${base.replace(/^http/, "ws")}/v1/ws`;

  browser = await launchChromium();
  const page = await browser.newPage();
  page.on("pageerror", (e) => log(`[page pageerror] ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") log(`[page console.error] ${m.text()}`);
  });
  await page.goto(`${pageUrl}?${new URLSearchParams({ ws, token, room })}`);
  await page.waitForSelector("body[data-joined]", { timeout: 20_000 });
  const status = await page.textContent("#status");
  const state = JSON.parse((await page.textContent("#state")) || "null");
  log(`page: ${status} ${JSON.stringify(state)}`);
  if ((await page.getAttribute("body", "data-joined")) !== "true") throw new Error(`the page did not join: ${status}`);
  const want = { protocol: 1, connection: "connected", room, role: "audience" };
  for (const [k, v] of Object.entries(want)) {
    if (state[k] !== v) throw new Error(`page state ${k} = ${JSON.stringify(state[k])}, want ${JSON.stringify(v)}`);
  }
  if (state.participant?.id !== "pkg-user") throw new Error(`participant ${JSON.stringify(state.participant)}`);
  log("the Vite app joined the hub with the packed SDK");
  log("PASS");
} catch (e) {
  failed = true;
  console.error(`FAIL: ${e && e.stack ? e.stack : e}`);
} finally {
  if (browser) await browser.close();
  if (server) await new Promise((r) => server.httpServer.close(r));
  rmSync(tmp, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
