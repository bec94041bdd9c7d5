// Fails when the committed build (dist/podium.js) differs from a fresh build of sdk/src: run `npm run build`.
import { readFileSync } from "node:fs";
import { build } from "esbuild";

const fresh = await build({
  entryPoints: ["sdk/src/index.ts"],
  bundle: true,
  format: "esm",
  target: "es2020",
  legalComments: "none",
  write: false,
});
const built = fresh.outputFiles[0].text;
const committed = readFileSync("dist/podium.js", "utf8");
if (built !== committed) {
  console.error("web/dist/podium.js is stale: run `cd web && npm run build` and commit web/dist");
  process.exit(1);
}
console.log("web/dist/podium.js matches web/sdk/src");
