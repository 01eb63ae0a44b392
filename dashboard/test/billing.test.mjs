// The Billing page in Chromium against the real server: the demo owner
// opens it from the navigation (plan, usage bar, site and member counts,
// billing details with a refused and an accepted VAT id); the quota notices
// and a quota paused past its grace; a viewer sees no Billing link and a
// plain notice; and an upgrade through Stripe's checkout, against a
// loopback fake of Stripe's API, then the return, a signed webhook, the
// invoice it paid and the customer portal.
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import http from "node:http";
import { after, before, test } from "node:test";
import { start } from "./harness.mjs";

const PASSWORD = "violet anchor drifts 42 lanterns";
const STRIPE_KEY = "sk_test_engagetrack_dashboard";
const STRIPE_WEBHOOK_SECRET = "whsec_engagetrack_dashboard";
const PRICE = "price_growth_test";

let stack;
let stripe;
let org;

/// Stripe's API as far as the server uses it: checkout and portal sessions
/// (form-encoded, `Authorization: Bearer <key>`), and the pages they send the
/// browser to. Every call is kept for the assertions.
function fakeStripe() {
  const calls = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      const path = new URL(req.url, "http://fake").pathname;
      const json = (status, value) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(value));
      };
      const refuse = (status, message) => json(status, { error: { type: "invalid_request_error", message } });
      if (req.method === "POST" && path.startsWith("/v1/")) {
        const form = new URLSearchParams(body);
        calls.push({ path, authorization: req.headers.authorization, contentType: req.headers["content-type"], idempotencyKey: req.headers["idempotency-key"], form });
        if (req.headers.authorization !== `Bearer ${STRIPE_KEY}`) return refuse(401, "Invalid API Key provided");
        if (path === "/v1/checkout/sessions") {
          if (form.get("mode") !== "subscription") return refuse(400, "fake: mode must be subscription");
          if (!form.get("line_items[0][price]")) return refuse(400, "fake: no line_items[0][price]");
          if (!form.get("subscription_data[metadata][organization_id]")) return refuse(400, "fake: no subscription_data[metadata][organization_id]");
          return json(200, { id: "cs_test_1", object: "checkout.session", url: `${stripe.base}/pay/cs_test_1` });
        }
        if (path === "/v1/billing_portal/sessions") {
          if (!form.get("customer")) return refuse(400, "fake: no customer");
          return json(200, { id: "bps_test_1", object: "billing_portal.session", url: `${stripe.base}/portal/${form.get("customer")}` });
        }
        return refuse(404, `fake: no route ${path}`);
      }
      if (req.method === "GET" && /^\/(pay|portal)\/\w+$/.test(path)) {
        res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
        return res.end(`<!doctype html><title>Fake Stripe</title><h1>Fake Stripe ${path}</h1>`);
      }
      refuse(404, `fake: no route ${req.method} ${path}`);
    });
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve({ server, calls, base: `http://127.0.0.1:${server.address().port}` }))
  );
}

/// A Stripe event delivered as Stripe signs it (`t=…,v1=HMAC-SHA256(secret, "t.body")`).
async function deliver(type, object) {
  const t = Math.floor(Date.now() / 1000);
  const body = JSON.stringify({ id: `evt_${type.replace(/\W/g, "_")}_${t}`, object: "event", type, created: t, data: { object } });
  const signature = createHmac("sha256", STRIPE_WEBHOOK_SECRET).update(`${t}.${body}`).digest("hex");
  const res = await fetch(stack.base + "/webhooks/stripe", { method: "POST", headers: { "content-type": "application/json", "stripe-signature": `t=${t},v1=${signature}` }, body });
  const answer = await res.text();
  assert.equal(res.status, 200, `the ${type} webhook answered ${res.status}: ${answer}`);
  return JSON.parse(answer);
}

before(async () => {
  stripe = await fakeStripe();
  stack = await start({
    env: { ENGAGETRACK_STRIPE_API_URL: stripe.base },
    secrets: { "stripe-api-key": STRIPE_KEY, "stripe-webhook-secret": STRIPE_WEBHOOK_SECRET },
  });
  const { rows } = await stack.db.query("SELECT m.organization_id FROM memberships m JOIN users u ON u.id = m.user_id WHERE u.email = $1 AND m.role = 'owner'", [stack.demo.email]);
  assert.equal(rows.length, 1, "the demo owner owns one organisation");
  org = rows[0].organization_id;
});
after(async () => {
  await stack?.stop();
  await new Promise((r) => (stripe ? stripe.server.close(r) : r()));
});

const region = (page, name) => page.getByRole("region", { name, exact: true });

test("the owner opens Billing from the nav: plan, usage, limits, and the billing details", async () => {
  const page = await stack.page();
  await stack.signIn(page, stack.demo.email, stack.demo.password);
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Billing", exact: true }).click();
  await page.getByRole("heading", { name: "Billing: Demo" }).waitFor();
  assert.equal(new URL(page.url()).hash, `#/billing?org=${org}`);
  await stack.settled(page);

  const plan = region(page, "Plan");
  await plan.getByText("Free trial", { exact: true }).waitFor();
  assert.match(await plan.textContent(), /Trialing/);
  assert.match(await plan.textContent(), /Payment provider: none yet/);
  assert.match(await plan.textContent(), /Trial period: \d{1,2} \w{3,4} \d{4} – \d{1,2} \w{3,4} \d{4}/);

  const usage = region(page, "Usage");
  const bar = usage.getByRole("progressbar", { name: "Events this period" });
  assert.equal(await bar.getAttribute("aria-valuemax"), "10000");
  const used = Number(await bar.getAttribute("aria-valuenow"));
  assert.ok(Number.isInteger(used) && used >= 0, `aria-valuenow ${used}`);
  const valueText = await bar.getAttribute("aria-valuetext");
  assert.match(valueText, /^[\d,]+ of 10,000 events \(\d+%\)$/);
  assert.match(await usage.textContent(), /[\d,]+ of 10,000 events/);
  const { rows: [counts] } = await stack.db.query(
    `SELECT (SELECT count(*) FROM sites WHERE organization_id = $1 AND deleted_at IS NULL)::int AS sites,
            (SELECT count(*) FROM memberships WHERE organization_id = $1)::int AS members`,
    [org]
  );
  assert.ok(counts.sites >= 1);
  assert.match(await usage.textContent(), new RegExp(`${counts.sites} of 3 sites`));
  assert.match(await usage.textContent(), new RegExp(`${counts.members} of 3 members`));

  // A Stripe key but no plan with a price: nothing to buy yet.
  const plans = region(page, "Plans");
  await plans.getByText("Payments are not configured in this deployment.").waitFor();
  assert.equal(await plans.getByRole("button").count(), 0);
  await plans.getByRole("heading", { name: "Free trial (current)" }).waitFor();
  await region(page, "Invoices and payments").getByText("No invoices or payments yet.").waitFor();

  // None yet (the API answers 404): an empty form.
  const details = region(page, "Billing details");
  assert.equal(await details.getByLabel("Country").inputValue(), "");
  await details.getByLabel("Company (optional)").fill("Demo GmbH");
  await details.getByLabel("VAT id (optional)").fill("DE123");
  await details.getByLabel("Country").fill("de");
  await details.getByLabel("Address line 1").fill("Unter den Linden 1");
  await details.getByLabel("Postal code").fill("10117");
  await details.getByLabel("City").fill("Berlin");
  await details.getByRole("button", { name: "Save billing details" }).click();
  // The server's 400 reason, next to the form; what was typed stays.
  await details.getByRole("alert").filter({ hasText: "is not a valid VAT id for DE" }).waitFor();
  assert.equal(await details.getByLabel("City").inputValue(), "Berlin");
  await details.getByLabel("VAT id (optional)").fill("DE 136 695 976");
  await details.getByRole("button", { name: "Save billing details" }).click();
  await details.getByText("Billing details saved.").waitFor();
  assert.equal(await details.getByRole("alert").count(), 0);
  assert.equal(await details.getByLabel("VAT id (optional)").inputValue(), "DE136695976", "the normalised id is shown");
  await stack.shot(page, "billing");
  // Every control has an accessible name.
  const unnamed = await page.evaluate(() =>
    [...document.querySelectorAll("button, select, input, a[href]")]
      .filter((el) => !(el.getAttribute("aria-label") || el.getAttribute("aria-labelledby") || el.textContent.trim() || (el.labels && el.labels[0] && el.labels[0].textContent.trim())))
      .map((el) => el.outerHTML)
  );
  assert.deepEqual(unnamed, []);

  await page.reload();
  await page.getByRole("heading", { name: "Billing: Demo" }).waitFor();
  await stack.settled(page);
  const again = region(page, "Billing details");
  assert.equal(await again.getByLabel("Company (optional)").inputValue(), "Demo GmbH");
  assert.equal(await again.getByLabel("VAT id (optional)").inputValue(), "DE136695976");
  assert.equal(await again.getByLabel("Country").inputValue(), "DE");
  assert.equal(await again.getByLabel("Address line 1").inputValue(), "Unter den Linden 1");
  assert.equal(await again.getByLabel("Address line 2").inputValue(), "");
  assert.equal(await again.getByLabel("Postal code").inputValue(), "10117");
  assert.equal(await again.getByLabel("City").inputValue(), "Berlin");
  assert.equal(await page.locator(".notice.error").count(), 0);
  assert.deepEqual(stack.offsite, [], "the dashboard phones nobody");
  assert.deepEqual(stack.consoleErrors, []);
});

test("the quota notices, and a quota past its grace says events are not being stored", async () => {
  const { db } = stack;
  const { rows: [saved] } = await db.query("SELECT plan_id, current_period_start, current_period_end FROM subscriptions WHERE organization_id = $1", [org]);
  // A tiny plan, and a period that began 29 days ago: the demo's rolled-up
  // days count against it. One transaction, so the quota job (every 5
  // minutes) sees all of it or none.
  await db.query("BEGIN");
  await db.query("INSERT INTO plans (id, name, monthly_events, max_sites, max_members, retention_days) VALUES ('tiny-test', 'Tiny test', 10, 3, 3, 30)");
  await db.query(
    "UPDATE subscriptions SET plan_id = 'tiny-test', current_period_start = now() - interval '29 days', current_period_end = now() + interval '1 day' WHERE organization_id = $1",
    [org]
  );
  await db.query(
    `INSERT INTO quota_notices (organization_id, period_start, threshold, events, quota)
     SELECT organization_id, current_period_start, t, t / 10, 10 FROM subscriptions, unnest(ARRAY[80, 100]) AS t WHERE organization_id = $1`,
    [org]
  );
  await db.query("INSERT INTO quota_drops (organization_id, period_start, dropped) SELECT organization_id, current_period_start, 4242 FROM subscriptions WHERE organization_id = $1", [org]);
  await db.query("COMMIT");
  try {
    const page = await stack.page();
    await stack.signIn(page, stack.demo.email, stack.demo.password);
    await page.goto(`${stack.base}/#/billing?org=${org}`);
    await stack.settled(page);
    const usage = region(page, "Usage");
    const bar = usage.getByRole("progressbar", { name: "Events this period" });
    assert.match(await bar.getAttribute("aria-valuetext"), /^[\d,]+ of 10 events \([\d,]+%\)$/);
    assert.equal(await bar.getAttribute("aria-valuenow"), "10");
    assert.match(await bar.getAttribute("class"), /\bpaused\b/);
    await usage.getByText("Events are not being stored").waitFor();
    assert.match(await usage.textContent(), /4,242 events were refused/);
    await usage.getByText("80% of this period's events were used (8 of 10)").waitFor();
    await usage.getByText("this period's 10 events were used up (10)").waitFor();
    await stack.shot(page, "billing-paused");
    assert.deepEqual(stack.consoleErrors, []);
  } finally {
    await db.query("DELETE FROM quota_notices WHERE organization_id = $1", [org]);
    await db.query("DELETE FROM quota_drops WHERE organization_id = $1", [org]);
    await db.query("UPDATE subscriptions SET plan_id = $2, current_period_start = $3, current_period_end = $4 WHERE organization_id = $1", [
      org,
      saved.plan_id,
      saved.current_period_start,
      saved.current_period_end,
    ]);
    await db.query("DELETE FROM plans WHERE id = 'tiny-test'");
  }
});

test("a viewer of the organisation sees no Billing link for it, and the page says why", async () => {
  const page = await stack.page();
  await page.goto(stack.base + "/#/signup");
  await page.getByLabel("Email").fill("vera@example.com");
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Create account" }).click();
  await page.getByText("We sent a confirmation link").waitFor();
  await page.goto(await stack.mailedLink("vera@example.com", "/verify-email"));
  await page.getByText("Your email address is confirmed").waitFor();
  await stack.signIn(page, "vera@example.com", PASSWORD);
  await stack.db.query("INSERT INTO memberships (organization_id, user_id, role) SELECT $1, id, 'viewer' FROM users WHERE email = $2", [org, "vera@example.com"]);
  await page.reload();
  const nav = page.getByRole("navigation", { name: "Main" });
  await nav.getByRole("link", { name: "Demo", exact: true }).waitFor(); // the Demo team's link
  assert.equal(await nav.locator(`a[href^="#/billing"][href*="${org}"]`).count(), 0, "no Billing link for the Demo organisation");
  // Vera owns the organisation every account starts with: its Billing link is there.
  assert.deepEqual(await nav.locator('a[href^="#/billing"]').allTextContents(), ["vera's sites billing"]);
  await page.goto(`${stack.base}/#/billing?org=${org}`);
  await page.getByText("Only owners and billing members can see billing.").waitFor();
  assert.equal(await page.getByRole("region", { name: "Plan", exact: true }).count(), 0);

  // With the billing role she sees the Demo organisation's billing.
  await stack.db.query("UPDATE memberships SET role = 'billing' WHERE organization_id = $1 AND user_id = (SELECT id FROM users WHERE email = $2)", [org, "vera@example.com"]);
  await page.reload();
  await nav.getByRole("link", { name: "Demo billing", exact: true }).click();
  await page.getByRole("heading", { name: "Billing: Demo" }).waitFor();
  await region(page, "Plan").getByText("Free trial", { exact: true }).waitFor();
  await stack.db.query("DELETE FROM memberships WHERE organization_id = $1 AND user_id = (SELECT id FROM users WHERE email = $2)", [org, "vera@example.com"]);
  assert.deepEqual(stack.consoleErrors, []);
});

test("Upgrade opens Stripe's checkout; the return, the webhook, the invoice and the portal", async () => {
  await stack.db.query("UPDATE plans SET price_ids = $1 WHERE id = 'growth'", [JSON.stringify({ stripe: PRICE })]);
  const page = await stack.page();
  await stack.signIn(page, stack.demo.email, stack.demo.password);
  await page.goto(`${stack.base}/#/billing?org=${org}`);
  await stack.settled(page);
  const plans = region(page, "Plans");
  const upgrade = plans.getByRole("button", { name: "Upgrade to Growth with Stripe" });
  await upgrade.waitFor();
  assert.equal(await plans.getByRole("button").count(), 1, "only the plan with a price is offered");
  assert.equal(await plans.getByText("Payments are not configured").count(), 0);
  await upgrade.click();
  await page.waitForURL(`${stripe.base}/pay/cs_test_1`);
  await page.getByRole("heading", { name: "Fake Stripe /pay/cs_test_1" }).waitFor();

  const checkout = stripe.calls.filter((c) => c.path === "/v1/checkout/sessions");
  assert.equal(checkout.length, 1);
  const [call] = checkout;
  assert.equal(call.authorization, `Bearer ${STRIPE_KEY}`);
  assert.match(call.contentType, /^application\/x-www-form-urlencoded/);
  assert.match(call.idempotencyKey, /^[0-9a-f-]{36}$/);
  assert.equal(call.form.get("mode"), "subscription");
  assert.equal(call.form.get("line_items[0][price]"), PRICE);
  assert.equal(call.form.get("subscription_data[metadata][organization_id]"), org);
  assert.equal(call.form.get("customer_email"), stack.demo.email);
  const success = call.form.get("success_url");
  assert.match(success, new RegExp(`^http://127\\.0\\.0\\.1:\\d+/billing\\?org=${org}&checkout=done$`));
  const { rows: started } = await stack.db.query("SELECT provider, plan_id, external_id FROM billing_checkouts WHERE organization_id = $1", [org]);
  assert.deepEqual(started, [{ provider: "stripe", plan_id: "growth", external_id: "cs_test_1" }]);

  // Stripe sends the customer back to /billing?org=…&checkout=done.
  await page.goto(success);
  await page.getByText("Thanks: your plan changes as soon as the payment provider confirms it.").waitFor();
  assert.equal(new URL(page.url()).pathname, "/");
  assert.equal(new URL(page.url()).hash, `#/billing?org=${org}&checkout=done`);

  // Then Stripe confirms: the subscription, and the invoice it paid.
  const now = Math.floor(Date.now() / 1000);
  const end = now + 30 * 86400;
  const subscription = { id: "sub_test_1", object: "subscription", customer: "cus_test_1", status: "active", cancel_at_period_end: false, current_period_start: now, current_period_end: end, metadata: { organization_id: org }, items: { data: [{ price: { id: PRICE } }] } };
  assert.equal((await deliver("customer.subscription.created", subscription)).outcome, "applied");
  const invoice = { id: "in_test_1", object: "invoice", customer: "cus_test_1", subscription: "sub_test_1", amount_paid: 4900, currency: "eur", subscription_details: { metadata: { organization_id: org } }, lines: { data: [{ period: { start: now, end } }] } };
  assert.equal((await deliver("invoice.paid", invoice)).outcome, "applied");
  await page.reload();
  await stack.settled(page);
  const plan = region(page, "Plan");
  await plan.getByText("Growth", { exact: true }).waitFor();
  assert.match(await plan.textContent(), /Active/);
  assert.match(await plan.textContent(), /Payment provider: Stripe/);
  const records = region(page, "Invoices and payments");
  await records.getByRole("cell", { name: "€49.00" }).waitFor();
  await records.getByText("in_test_1").waitFor();
  assert.equal(await plans.getByRole("button", { name: /^Upgrade/ }).count(), 0, "a paying organisation changes plan in the portal");
  await stack.shot(page, "billing-active");

  await plans.getByRole("button", { name: "Manage billing" }).click();
  await page.waitForURL(`${stripe.base}/portal/cus_test_1`);
  const portal = stripe.calls.filter((c) => c.path === "/v1/billing_portal/sessions");
  assert.equal(portal.length, 1);
  assert.equal(portal[0].authorization, `Bearer ${STRIPE_KEY}`);
  assert.equal(portal[0].form.get("customer"), "cus_test_1");
  assert.match(portal[0].form.get("return_url"), new RegExp(`/billing\\?org=${org}$`));
  assert.deepEqual(stack.offsite, []);
  assert.deepEqual(stack.consoleErrors, []);
});
