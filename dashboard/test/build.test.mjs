// The committed dist/ is exactly what src/ builds to (the server embeds it),
// and the script stays small.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { test } from "node:test";
import { build } from "../build.mjs";

const dist = join(dirname(fileURLToPath(import.meta.url)), "../dist");

test("dist/ is the build of src/ (run `npm run build` after changing src/)", () => {
  for (const [name, text] of Object.entries(build())) {
    assert.equal(readFileSync(join(dist, name), "utf8"), text, `dist/${name} is stale`);
  }
});

test("the app script stays under 60 KB gzipped, the map under 45 KB", () => {
  const js = gzipSync(readFileSync(join(dist, "app.js")), { level: 9 }).length;
  const map = gzipSync(readFileSync(join(dist, "world.json")), { level: 9 }).length;
  console.log(`# app.js ${js} bytes gzipped, world.json ${map} bytes gzipped`);
  assert.ok(js < 60_000, `app.js is ${js} bytes gzipped`);
  assert.ok(map < 45_000, `world.json is ${map} bytes gzipped`);
});
