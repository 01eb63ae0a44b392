// Notices in Chromium against the real server: a notice published after the
// demo account was made shows as a banner with its text and link; Dismiss
// hides it, the server records it, and a reload does not bring it back.
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

test("a notice shows as a banner until dismissed, and stays dismissed after a reload", async () => {
  // As `engagetrack notice publish` writes it (its logic has Rust tests of its own).
  const {
    rows: [{ id }],
  } = await stack.db.query(
    `INSERT INTO notices (title, body, link, material, published_at)
     VALUES ('Privacy policy update', E'We now keep exports for 7 days.\n\nNothing else changes.', 'https://engagetrack.test/privacy', false, now())
     RETURNING id`
  );
  const page = await stack.page();
  const loaded = page.waitForResponse((r) => r.url().endsWith("/api/notices"));
  await stack.signIn(page, stack.demo.email, stack.demo.password);
  await loaded;
  const notices = page.getByRole("region", { name: "Notices", exact: true });
  const banner = notices.getByRole("region", { name: "Privacy policy update" });
  await banner.waitFor();
  assert.match(await banner.textContent(), /We now keep exports for 7 days\.\s*Nothing else changes\./);
  assert.equal(await banner.getByRole("link", { name: "Read more" }).getAttribute("href"), "https://engagetrack.test/privacy");
  await stack.shot(page, "notice-banner");

  await banner.getByRole("button", { name: "Dismiss: Privacy policy update" }).click();
  await notices.waitFor({ state: "detached" });
  const { rows } = await stack.db.query("SELECT first_seen_at IS NOT NULL AS seen, dismissed_at IS NOT NULL AS dismissed FROM notice_views WHERE notice_id = $1", [id]);
  assert.deepEqual(rows, [{ seen: true, dismissed: true }]);

  const reloaded = page.waitForResponse((r) => r.url().endsWith("/api/notices"));
  await page.reload();
  const answer = await (await reloaded).json();
  assert.deepEqual(answer, { notices: [] });
  await page.getByRole("heading", { name: "Your sites" }).waitFor();
  assert.equal(await page.getByRole("region", { name: "Notices" }).count(), 0);
  assert.deepEqual(stack.consoleErrors, []);
  assert.deepEqual(stack.offsite, []);
});
