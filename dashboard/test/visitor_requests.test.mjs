// Site settings → Visitor requests in Chromium against the real server: the
// demo owner finds an identified visitor by email, exports their events as a
// JSON download and erases them after the confirm; bad keys show the reason.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, test } from "node:test";
import { USER_AGENT, start } from "./harness.mjs";

let stack;
before(async () => {
  stack = await start();
});
after(async () => {
  await stack?.stop();
});

test("find, export and erase an identified visitor from the site's settings", async () => {
  const site = stack.demo.site_id;
  for (const body of [
    { type: "pageview", url: "https://demo.engagetrack.test/account" },
    { type: "identify", url: "https://demo.engagetrack.test/account", user: { id: "dash-user-1", email: "Grace@Example.org" } },
  ]) {
    const res = await fetch(stack.base + "/api/e", {
      method: "POST",
      headers: { "content-type": "text/plain", "user-agent": USER_AGENT, "x-forwarded-for": "203.0.113.77" },
      body: JSON.stringify({ site, sid: "dash-session-1", ...body }),
    });
    assert.equal(res.status, 202);
  }
  const page = await stack.page();
  await stack.signIn(page, stack.demo.email, stack.demo.password);
  await page.goto(stack.base + "/#/site/demo.engagetrack.test/settings");
  const panel = page.getByRole("region", { name: "Visitor requests" });
  await panel.getByText("memory mode (the default) cannot be found").waitFor();

  await panel.getByLabel("Find the visitor by").selectOption("visitor_id");
  await panel.getByLabel("Value").fill("short");
  await panel.getByRole("button", { name: "Find" }).click();
  await panel.getByText("16 to 64 characters").waitFor();

  await panel.getByLabel("Find the visitor by").selectOption("email");
  await panel.getByLabel("Value").fill(" grace@example.org");
  await panel.getByRole("button", { name: "Find" }).click();
  await panel.getByText(/^2 events in 1 sessions on 1 days/).waitFor();

  const [download] = await Promise.all([page.waitForEvent("download"), panel.getByRole("button", { name: "Export (JSON)" }).click()]);
  assert.match(download.suggestedFilename(), /^engagetrack-visitor-demo\.engagetrack\.test-\d{4}-\d{2}-\d{2}\.json$/);
  const exported = JSON.parse(readFileSync(await download.path(), "utf8"));
  assert.equal(exported.count, 2);
  assert.equal(exported.events.find((e) => e.event_type === "identify").details.email, "Grace@Example.org");

  page.once("dialog", (d) => d.accept());
  await panel.getByRole("button", { name: "Erase…" }).click();
  await panel.getByText(/^Erased 2 events; statistics of 1 days rebuilt\./).waitFor();
  await panel.getByRole("button", { name: "Find" }).click();
  await panel.getByText("No events match.").waitFor();
  assert.deepEqual(stack.offsite, []);
  assert.deepEqual(stack.consoleErrors, []);
});
