// The npm package's metadata (web/sdk/package.json) against the SDK: the version rule and the entry points.
import { describe, expect, it } from "vitest";

import { PROTOCOL_VERSION } from "../src/index.js";
import packageJson from "../package.json";

const pkg = packageJson as {
  name: string;
  version: string;
  license: string;
  type: string;
  types: string;
  files: string[];
  exports: Record<string, Record<string, string> | string>;
} & Record<string, unknown>;

describe("@podium/sdk package", () => {
  it("has a major version equal to the protocol version (README: Versions)", () => {
    const [major, minor, patch] = pkg.version.split(".").map(Number);
    expect(major).toBe(PROTOCOL_VERSION);
    expect(Number.isInteger(minor) && Number.isInteger(patch)).toBe(true);
  });

  it("exports the ES module with its type declarations", () => {
    expect(pkg.name).toBe("@podium/sdk");
    expect(pkg.type).toBe("module");
    expect(pkg.license).toBe("Apache-2.0");
    const root = pkg.exports["."] as Record<string, string>;
    // `types` first, as TypeScript requires.
    expect(Object.keys(root)[0]).toBe("types");
    expect(root.types).toBe(pkg.types);
    expect(root.import).toBe("./dist/podium.js");
    expect(pkg.files).toContain("README.md");
  });
});
