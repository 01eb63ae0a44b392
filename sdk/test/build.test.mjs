// The committed dist/et.js is exactly what a fresh build makes, and it fits
// the 2 KB gzip budget.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { build } from "../build.mjs";
import { SDK } from "./harness.mjs";

const BUDGET = 2048;
const committed = () => readFileSync(join(SDK, "dist/et.js"), "utf8");

test("dist/et.js is the reproducible build of src/et.js", () => {
  const fresh = build();
  assert.equal(build(), fresh, "two builds differ");
  assert.equal(committed(), fresh, "dist/et.js is stale: run `npm run build` in sdk/ and commit it");
});

test(`the tracker is at most ${BUDGET} bytes after gzip -9`, () => {
  // As a reviewer would measure it: `gzip -9 -c dist/et.js | wc -c` (the header keeps the name).
  const gz = execFileSync("gzip", ["-9", "-c", join(SDK, "dist/et.js")]);
  console.log(`et.js: ${committed().length} bytes, ${gz.length} bytes gzip -9 (budget ${BUDGET})`);
  assert.ok(gz.length <= BUDGET, `et.js is ${gz.length} bytes gzipped; the budget is ${BUDGET}`);
});
