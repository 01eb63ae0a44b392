// The Funnels panel in Chromium against the real server: the demo user
// builds a funnel (a page, a page pattern, a goal) over visits seeded on a
// day of their own and reads its numbers; the dashboard's filter changes them;
// a goal step that no longer exists shows the server's reason.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { start } from "./harness.mjs";

let stack;
before(async () => {
  stack = await start();
});
after(async () => {
  await stack?.stop();
});

test("the demo user builds a funnel and sees conversion and drop-off per step", async () => {
  // A day long before the demo's traffic, so these visits are the only ones.
  const day = new Date(Date.now() - 200 * 86400e3).toISOString().slice(0, 10);
  const {
    rows: [{ id: site }],
  } = await stack.db.query("SELECT id FROM sites WHERE domain = 'demo.engagetrack.test'");
  const visits = [
    // 1 (Firefox): the whole funnel.
    [1, "Firefox", [["pageview", "/", 0], ["pageview", "/pricing", 1], ["click", "Signup", 2]]],
    // 2: the first two steps (a pricing page the pattern matches).
    [2, "Chrome", [["pageview", "/", 0], ["pageview", "/pricing/team", 1]]],
    // 3: step 1 only.
    [3, "Chrome", [["pageview", "/", 0]]],
    // 4: the pricing page before "/": step 1 only.
    [4, "Chrome", [["pageview", "/pricing", 0], ["pageview", "/", 1]]],
  ];
  for (const [visitor, browser, events] of visits) {
    for (const [type, what, minute] of events) {
      await stack.db.query(
        `INSERT INTO events (id, site_id, ts, event_type, name, visitor_hash, session_hash, hostname, pathname, browser)
         VALUES (gen_random_uuid(), $1, $2::date + make_interval(hours => 10, mins => $3), $4, $5, $6, $6, 'demo.engagetrack.test', $7, $8)`,
        [site, day, minute, type, type === "pageview" ? "pageview" : what, 900000 + visitor, type === "pageview" ? what : "/signup", browser]
      );
    }
  }

  const page = await stack.page({ viewport: { width: 1280, height: 900 } });
  await stack.signIn(page, stack.demo.email, stack.demo.password);
  await page.goto(`${stack.base}/#/site/demo.engagetrack.test?period=custom&from=${day}&to=${day}`);
  const panel = page.getByRole("region", { name: "Funnels" });
  await panel.getByText("Build the steps").waitFor();
  await panel.getByLabel("Step 2 page").fill("/pricing*");
  await panel.getByRole("button", { name: "Add step" }).click();
  await panel.getByLabel("Step 3 kind").selectOption("goal");
  await panel.getByLabel("Step 3 goal").selectOption("Signup");
  const answered = page.waitForResponse((r) => r.url().endsWith("/api/v2/funnel"));
  await panel.getByRole("button", { name: "Show funnel" }).click();
  assert.equal((await answered).status(), 200);
  const steps = panel.getByRole("list", { name: "Funnel steps" });
  await steps.waitFor();
  const step = (n) => steps.getByRole("listitem").nth(n - 1);
  assert.match(await step(1).textContent(), /1\. Visit \/\s*4 visits · 4 visitors · 100%/);
  assert.match(await step(2).textContent(), /2\. Visit \/pricing\*\s*2 visits · 2 visitors · 50%.*Drop-off 2 \(50%\); 50% of step 1/);
  assert.match(await step(3).textContent(), /3\. Signup\s*1 visits · 1 visitors · 25%.*Drop-off 1 \(50%\); 50% of step 2/);
  assert.match(await panel.textContent(), /Converted: 25% of visits that began the funnel/);
  await stack.shot(page, "funnel");

  // The dashboard's filters apply: Firefox's one visit goes all the way.
  const filtered = page.waitForResponse((r) => r.url().endsWith("/api/v2/funnel"));
  await page.getByRole("region", { name: "Devices" }).getByRole("button", { name: "Firefox" }).click();
  const body = (await filtered).request().postDataJSON();
  assert.deepEqual(body.filters, [["is", "visit:browser", ["Firefox"]]]);
  await panel.getByText("Converted: 100%").waitFor();
  assert.match(await step(2).textContent(), /1 visits · 1 visitors · 100%.*Drop-off 0 \(0%\)/);

  // A page pattern the server refuses shows its reason.
  await panel.getByLabel("Step 1 page").fill("pricing");
  await panel.getByRole("button", { name: "Show funnel" }).click();
  await panel.getByRole("alert").getByText("a page pattern starts with `/`").waitFor();
  assert.deepEqual(stack.offsite, []);
  assert.deepEqual(stack.consoleErrors, []);
});
