// Plausible's official tracker (npm @plausible-analytics/tracker, pinned in
// package.json) in a real Chromium, pointed at our `POST /api/event`: its
// pageviews, custom events with props, revenue, outbound links and file
// downloads are stored by the real `engagetrack serve`, checked in PostgreSQL.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import http from "node:http";
import { createRequire } from "node:module";
import { after, before, test } from "node:test";
import { brief, start } from "./harness.mjs";

const TRACKER = readFileSync(createRequire(import.meta.url).resolve("@plausible-analytics/tracker"), "utf8");

let S, site;
before(async () => {
  S = await start();
  site = await S.newSite("tracker.test");
  await new Promise((r) => app.listen(0, "127.0.0.1", r));
  app.port = app.address().port;
});
after(async () => {
  await new Promise((r) => app.close(r));
  await S?.stop();
});

const page = (endpoint) => `<!doctype html><html><head><meta charset="utf-8"><title>Plausible tracker</title>
<script type="module">
  import { init, track } from "/plausible.js";
  init({ domain: "tracker.test", endpoint: ${JSON.stringify(endpoint)}, captureOnLocalhost: true, outboundLinks: true, fileDownloads: true });
  window.track = track;
</script></head><body>
<a id="guide" href="/files/guide.pdf?v=2">The guide</a>
<a id="away" href="http://other.test:PORT/away">Elsewhere</a>
</body></html>`;

// The site as its owner would run it: pages, the tracker served from the same
// origin as an ES module, and `/api/event` handed on to EngageTrack (a
// first-party proxy, so the tracker's default relative endpoint works).
const app = http.createServer(async (req, res) => {
  const path = req.url.split("?")[0];
  const send = (type, body) => {
    res.writeHead(200, { "content-type": type });
    res.end(body.replaceAll("PORT", String(app.port)));
  };
  if (path === "/plausible.js") return send("text/javascript", TRACKER);
  if (path.startsWith("/app")) return send("text/html; charset=utf-8", page("/api/event"));
  if (path.startsWith("/cross")) return send("text/html; charset=utf-8", page(S.api + "/api/event"));
  if (path === "/files/guide.pdf" || path === "/away") return send("text/plain", "a file");
  if (path === "/api/event" && req.method === "POST") {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const answer = await fetch(S.api + "/api/event", {
      method: "POST",
      headers: { "content-type": req.headers["content-type"] || "text/plain", "user-agent": req.headers["user-agent"] },
      body: Buffer.concat(chunks),
    });
    const dropped = answer.headers.get("x-plausible-dropped");
    res.writeHead(answer.status, { "content-type": answer.headers.get("content-type"), ...(dropped ? { "x-plausible-dropped": dropped } : {}) });
    return res.end(await answer.text());
  }
  res.writeHead(404);
  res.end("no fixture");
});

const ofType = (rows, t) => rows.filter((r) => r.event_type === t);
const url = (path) => `http://tracker.test:${app.port}${path}`;

test("the official Plausible tracker records pageviews, props, revenue, outbound links and downloads", async () => {
  const ctx = await S.context();
  const tab = await ctx.newPage();
  const errors = [];
  tab.on("pageerror", (e) => errors.push(e.message));
  const answers = [];
  tab.on("response", (r) => r.url().endsWith("/api/event") && answers.push([r.status(), r.headers()["x-plausible-dropped"]]));

  await tab.goto(url("/app/"));
  await S.waitRows(site, (rows) => ofType(rows, "pageview").length >= 1, "the first pageview");
  // A single-page-app navigation is a pageview of its own.
  await tab.evaluate(() => history.pushState({}, "", "/app/pricing"));
  await S.waitRows(site, (rows) => ofType(rows, "pageview").length >= 2, "the pushState pageview");

  const tracked = await tab.evaluate(async () => {
    const sent = (name, options) => new Promise((callback) => window.track(name, { ...options, callback }));
    return [await sent("Signup", { props: { plan: "pro" } }), await sent("Purchase", { revenue: { amount: "15.99", currency: "USD" } })];
  });
  assert.deepEqual(tracked, [{ status: 202 }, { status: 202 }]);

  // The download link keeps the page (its default is prevented before the
  // tracker sees the click, which it still records); the outbound link leaves it.
  await tab.evaluate(() => document.getElementById("guide").addEventListener("click", (e) => e.preventDefault()));
  await tab.click("#guide");
  await S.waitRows(site, (rows) => ofType(rows, "download").length >= 1, "the file download");
  await Promise.all([tab.waitForURL(`http://other.test:${app.port}/away`), tab.click("#away")]);

  const rows = await S.waitRows(site, (rows) => ofType(rows, "outbound").length >= 1, "the outbound link click");
  const show = JSON.stringify(rows.map(brief), null, 1);
  assert.deepEqual(
    ofType(rows, "pageview").map((r) => [r.hostname, r.pathname, r.referrer]),
    [
      ["tracker.test", "/app/", null],
      ["tracker.test", "/app/pricing", null],
    ],
    show
  );
  const custom = ofType(rows, "custom").map((r) => [r.name, r.props, r.revenue_minor, r.revenue_currency]);
  assert.deepEqual(custom, [
    ["Signup", { plan: "pro" }, null, null],
    ["Purchase", {}, "1599", "USD"],
  ], show);
  assert.deepEqual(ofType(rows, "download").map((r) => [r.name, r.target, r.pathname]), [["download", url("/files/guide.pdf"), "/app/pricing"]], show);
  assert.deepEqual(ofType(rows, "outbound").map((r) => [r.name, r.target]), [["outbound", `http://other.test:${app.port}/away`]], show);
  // One visitor: the same browser, address and day.
  assert.equal(new Set(rows.map((r) => r.visitor_hash)).size, 1, show);
  assert.ok(answers.length >= 5 && answers.every(([status, dropped]) => status === 202 && !dropped), JSON.stringify(answers));
  assert.deepEqual(errors, []);
});

test("pointed straight at EngageTrack from another origin, the tracker reads our answer (CORS)", async () => {
  const ctx = await S.context();
  const tab = await ctx.newPage();
  await tab.goto(url("/cross/"));
  const answer = await tab.evaluate(() => new Promise((callback) => window.track("Newsletter", { props: { list: "weekly" }, callback })));
  assert.deepEqual(answer, { status: 202 }, "without Access-Control-Allow-Origin the callback would get an error");
  const rows = await S.waitRows(site, (rows) => rows.some((r) => r.name === "Newsletter"), "the cross-origin event");
  assert.deepEqual(rows.find((r) => r.name === "Newsletter").props, { list: "weekly" });
});
