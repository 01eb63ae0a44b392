// Site settings → Imports in Chromium against the real server: the demo
// owner uploads Plausible's CSV export zip (the integration tests' fixture),
// sees it listed as done, and the dashboard shows its totals with "Include
// imported data" on (kept in the URL, with the badge) and not with it off.
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, test } from "node:test";
import { start } from "./harness.mjs";

const FIXTURE = join(dirname(fileURLToPath(import.meta.url)), "../../tests/fixtures/imports/plausible_example_com_20240201.zip");

let stack;
before(async () => {
  stack = await start();
});
after(async () => {
  await stack?.stop();
});

test("upload a Plausible export and see its totals with imported data included", async () => {
  const page = await stack.page();
  await stack.signIn(page, stack.demo.email, stack.demo.password);
  await page.goto(stack.base + "/#/site/demo.engagetrack.test/settings");
  const panel = page.getByRole("region", { name: "Imports" });
  await panel.getByText("No imports yet.").waitFor();
  await panel.getByLabel("Source").selectOption("plausible");
  await panel.getByLabel("Export file").setInputFiles(FIXTURE);
  await panel.getByRole("button", { name: "Import" }).click();
  await panel.getByText(/^Imported 20 rows for 2024-01-01 – 2024-01-31\./).waitFor();
  const listed = panel.getByRole("table", { name: "Imports" });
  await listed.getByText("plausible_example_com_20240201.zip").waitFor();
  await listed.getByRole("cell", { name: "done" }).waitFor();

  const view = "/#/site/demo.engagetrack.test?period=custom&from=2024-01-01&to=2024-01-31";
  await page.goto(stack.base + view);
  const top = page.getByRole("region", { name: "Top stats" });
  const visitors = top.getByRole("button").first().locator(".stat-value");
  await top.getByRole("button").first().waitFor();
  assert.equal((await visitors.textContent()).trim(), "0");
  await page.getByLabel("Include imported data").check();
  await top.getByText("Includes imported data").waitFor();
  assert.match(page.url(), /imports=1/);
  await page.waitForFunction(() => document.querySelector(".top-stats .stat .stat-value")?.textContent.trim() === "17");
  // The toggle is in the URL: a reload keeps it.
  await page.reload();
  await top.getByText("Includes imported data").waitFor();
  assert.deepEqual(stack.consoleErrors, []);
  assert.deepEqual(stack.offsite, []);
});
