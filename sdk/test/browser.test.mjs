// The tracker in a real Chromium, its beacons stored by the real
// `engagetrack serve`, checked in PostgreSQL.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { SDK, brief, start, storageVisitorHash } from "./harness.mjs";

let S;
before(async () => {
  S = await start();
});
after(async () => {
  await S?.stop();
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const ofType = (rows, t) => rows.filter((r) => r.event_type === t);
const count = (t, n) => (rows) => ofType(rows, t).length >= n;

// Records every storage and cookie access the page makes, and page errors.
const SPY = () => {
  window.__access = [];
  for (const m of ["getItem", "setItem", "removeItem", "clear", "key"]) {
    const orig = Storage.prototype[m];
    Storage.prototype[m] = function (...a) {
      const name = this === window.localStorage ? "localStorage" : "sessionStorage";
      window.__access.push(`${name}.${m}(${a[0] ?? ""})`);
      return orig.apply(this, a);
    };
  }
  const desc = Object.getOwnPropertyDescriptor(Document.prototype, "cookie");
  Object.defineProperty(document, "cookie", {
    get() {
      window.__access.push("cookie.get");
      return desc.get.call(this);
    },
    set(v) {
      window.__access.push("cookie.set");
      desc.set.call(this, v);
    },
  });
  const open = IDBFactory.prototype.open;
  IDBFactory.prototype.open = function (...a) {
    window.__access.push("indexedDB.open");
    return open.apply(this, a);
  };
};

async function newPage(ctx) {
  const page = await ctx.newPage();
  page.errors = [];
  page.on("pageerror", (e) => page.errors.push(e.message));
  page.beacons = [];
  page.on("request", (r) => {
    if (r.url().startsWith(S.api + "/api/e")) page.beacons.push(r);
  });
  return page;
}

async function deviceState(ctx, page) {
  return {
    cookies: (await ctx.cookies()).length,
    ...(await page.evaluate(async () => ({
      localStorage: localStorage.length,
      sessionStorage: sessionStorage.length,
      indexedDB: (await indexedDB.databases()).length,
    }))),
  };
}

test("the committed build is the one served at /et.js by engagetrack", async () => {
  const served = await (await fetch(S.api + "/et.js")).text();
  assert.equal(served, readFileSync(join(SDK, "dist/et.js"), "utf8"), "rebuild engagetrack after `npm run build`");
});

test("memory mode: pageview with its fields, nothing written to the device", async () => {
  const site = await S.newSite();
  // The script from the real /et.js, with the default endpoint (same origin as the script).
  S.route("/mem/", S.page({ site, src: S.api + "/et.js", api: null, title: "Memory page", body: "<p>hi</p>" }));
  const ctx = await S.context();
  await ctx.addInitScript(SPY);
  const page = await newPage(ctx);
  await page.goto(S.url("site.test", "/mem/a?utm_source=news&utm_campaign=spring&secret=1"), {
    referer: "https://www.google.com/search?q=x",
  });
  const rows = await S.waitRows(site, count("pageview", 1));
  const pv = ofType(rows, "pageview")[0];
  assert.equal(pv.hostname, "site.test");
  assert.equal(pv.pathname, "/mem/a");
  assert.equal(pv.utm_source, "news");
  assert.equal(pv.utm_campaign, "spring");
  assert.equal(pv.referrer_host, "google.com"); // the server drops "www."
  assert.equal(pv.screen_width, 1280);
  assert.equal(pv.screen_height, 720);
  assert.equal(pv.name, "pageview");

  // Leaving sends the engagement beacon; still nothing on the device.
  await page.evaluate(() => history.pushState({}, "", "/mem/b"));
  await S.waitRows(site, count("pageview", 2));
  const state = await deviceState(ctx, page);
  assert.deepEqual(state, { cookies: 0, localStorage: 0, sessionStorage: 0, indexedDB: 0 });
  const access = await page.evaluate(() => window.__access);
  assert.deepEqual(access, ["localStorage.getItem(et_ignore)"], "memory mode only reads the opt-out flag");
  const all = await S.rows(site);
  assert.equal(new Set(all.map((r) => r.session_hash)).size, 1, "one session for the tab");

  // The beacons went as text/plain, with no CORS preflight.
  for (const b of page.beacons) {
    assert.equal(b.method(), "POST");
    assert.match((await b.allHeaders())["content-type"], /^text\/plain/);
  }
  assert.ok(page.beacons.length >= 2);
  assert.deepEqual(page.errors, []);
});

test("SPA navigation: pushState/replaceState/popstate counted once per URL; hash changes ignored by default", async () => {
  const site = await S.newSite();
  S.route("/spa/", S.page({ site }));
  const ctx = await S.context();
  const page = await newPage(ctx);
  await page.goto(S.url("site.test", "/spa/a"));
  await S.waitRows(site, count("pageview", 1));
  const step = async (n, f) => {
    await page.evaluate(f);
    await S.waitRows(site, count("pageview", n), `${n} pageviews`);
  };
  await step(2, () => history.pushState({}, "", "/spa/b"));
  await page.evaluate(() => history.replaceState({ x: 1 }, "", "/spa/b")); // same URL: not counted
  await page.evaluate(() => history.pushState({}, "", "/spa/b")); // same URL again: not counted
  await page.evaluate(() => (location.hash = "#section")); // hash only: not counted
  await step(3, () => history.replaceState({}, "", "/spa/c"));
  await step(4, () => history.back()); // popstate back to /spa/b
  await sleep(800);
  const rows = await S.rows(site);
  assert.deepEqual(
    ofType(rows, "pageview").map((r) => r.pathname),
    ["/spa/a", "/spa/b", "/spa/c", "/spa/b"]
  );
  // Each page left gets its engagement beacon, for that page.
  const eng = await S.waitRows(site, count("engagement", 3));
  assert.deepEqual(ofType(eng, "engagement").map((r) => r.pathname).slice(0, 3), ["/spa/a", "/spa/b", "/spa/c"]);
  assert.deepEqual(page.errors, []);
});

test("hash mode (data-hash=\"true\") counts hash navigation", async () => {
  const site = await S.newSite();
  S.route("/hash/", S.page({ site, attrs: 'data-hash="true"' }));
  const page = await newPage(await S.context());
  await page.goto(S.url("site.test", "/hash/"));
  await S.waitRows(site, count("pageview", 1));
  await page.evaluate(() => (location.hash = "#/about"));
  await S.waitRows(site, count("pageview", 2));
  await page.evaluate(() => (location.hash = "#/about")); // same URL: not counted
  await page.evaluate(() => (location.hash = "#/pricing"));
  await S.waitRows(site, count("pageview", 3));
  await sleep(500);
  assert.equal(ofType(await S.rows(site), "pageview").length, 3);
});

test("automatic events: outbound, downloads, forms, mailto, tel and tagged clicks", async () => {
  const site = await S.newSite();
  const body = `
    <a id="out" href="https://partner.example/offer?x=1">partner</a>
    <a id="mid" href="https://partner.example/middle">middle</a>
    <a id="right" href="https://partner.example/right">right</a>
    <a id="pdf" href="/files/report.pdf">report</a>
    <a id="dl" href="/files/data.bin" download>data</a>
    <a id="mail" href="mailto:sales@example.com?subject=Hi">mail</a>
    <a id="tel" href="tel:+44 20 7946 0000">call</a>
    <a id="internal" href="/auto/next">next</a>
    <button id="cta" data-et-event="Signup" data-et-prop-plan="pro" data-et-prop-seats="3"><span id="inner">Sign up</span></button>
    <form id="newsletter" data-et-prop-list="weekly"><input name="email"><button id="go">go</button></form>
    <form name="contact"><button id="go2">go</button></form>
    <script>
      // The page keeps its visitors here: links and forms do not navigate.
      for (const t of ["click", "auxclick"]) document.addEventListener(t, (e) => { if (e.target.closest("a")) e.preventDefault(); });
      document.addEventListener("submit", (e) => e.preventDefault());
    </script>`;
  S.route("/auto/", S.page({ site, body }));
  const ctx = await S.context();
  const page = await newPage(ctx);
  await page.goto(S.url("site.test", "/auto/"));
  await S.waitRows(site, count("pageview", 1));
  for (const id of ["out", "pdf", "dl", "mail", "tel", "internal", "inner", "go", "go2"]) await page.click("#" + id);
  await page.click("#mid", { button: "middle" });
  await page.click("#right", { button: "right" });
  const rows = await S.waitRows(
    site,
    (r) => ["outbound", "download", "mailto", "tel", "click", "form"].every((t) => ofType(r, t).length) &&
      ofType(r, "download").length >= 2 && ofType(r, "form").length >= 2 && ofType(r, "outbound").length >= 2,
    "every automatic event"
  );
  await sleep(500);
  const all = await S.rows(site);
  assert.deepEqual(
    ofType(all, "outbound").map((r) => r.target).sort(),
    ["https://partner.example/middle", "https://partner.example/offer?x=1"],
    "a middle click counts, a right click does not"
  );
  assert.deepEqual(
    ofType(all, "download").map((r) => r.target).sort(),
    [S.url("site.test", "/files/data.bin"), S.url("site.test", "/files/report.pdf")]
  );
  const mail = ofType(all, "mailto");
  assert.equal(mail.length, 1);
  assert.ok(mail[0].sensitive, "the address is sealed");
  assert.equal(mail[0].target, null, "and not stored in the clear");
  assert.equal(ofType(all, "tel").length, 1);
  assert.ok(ofType(all, "tel")[0].sensitive);
  const click = ofType(all, "click");
  assert.equal(click.length, 1);
  assert.equal(click[0].name, "Signup");
  assert.deepEqual(click[0].props, { plan: "pro", seats: "3" });
  const forms = ofType(all, "form");
  assert.deepEqual(forms.map((r) => r.target).sort(), ["contact", "newsletter"]);
  assert.deepEqual(forms.find((r) => r.target === "newsletter").props, { list: "weekly" });
  // The internal link is neither outbound nor a download; one pageview only.
  assert.equal(ofType(all, "pageview").length, 1);
  assert.equal(all.length, rows.length);
  assert.deepEqual(page.errors, []);
  // The clear-text address and number are nowhere in the events table.
  const dump = JSON.stringify((await S.db.query("SELECT * FROM events WHERE site_id = $1", [site])).rows);
  // Whole spellings of the number: a bare "7946" also turns up by chance in
  // the dump's 19-digit visitor and session hashes.
  assert.ok(!dump.includes("sales@example.com"), "the address is nowhere");
  for (const spelled of ["+44 20 7946 0000", "+44%2020%207946%200000", "442079460000", "7946 0000", "79460000"]) {
    assert.ok(!dump.includes(spelled), `the number is nowhere (${spelled})`);
  }
});

test("data-download-extensions replaces the default list; outbound downloads count as downloads", async () => {
  const site = await S.newSite();
  const body = `<a id="epub" href="https://cdn.example/book.epub">epub</a><a id="pdf" href="/x.pdf">pdf</a>
    <script>document.addEventListener("click", (e) => e.preventDefault());</script>`;
  S.route("/ext/", S.page({ site, body, attrs: 'data-download-extensions="epub, mobi"' }));
  const page = await newPage(await S.context());
  await page.goto(S.url("site.test", "/ext/"));
  await S.waitRows(site, count("pageview", 1));
  await page.click("#epub");
  await page.click("#pdf");
  await S.waitRows(site, count("download", 1));
  await sleep(700);
  const all = await S.rows(site);
  assert.deepEqual(ofType(all, "download").map((r) => r.target), ["https://cdn.example/book.epub"]);
  assert.equal(ofType(all, "outbound").length, 0);
});

test("et() API: queued calls before load, custom events with revenue, purchase, identify", async () => {
  const site = await S.newSite();
  const head = `<script>window.et=window.et||function(){(et.q=et.q||[]).push(arguments)};
    et('event', 'Signup', {props: {plan: 'pro', seats: 3, trial: true}, revenue: {amount: 500, currency: 'EUR'}});</script>`;
  S.route("/api/", S.page({ site, head }));
  const page = await newPage(await S.context());
  await page.goto(S.url("site.test", "/api/"));
  await S.waitRows(site, count("custom", 1));
  await page.evaluate(() => {
    et("purchase", { amount: "19.99", currency: "USD", order_id: "A-1", props: { coupon: "X" } });
    et("identify", { id: "u-42", email: "ann@example.com", name: "Ann", avatar: "https://x.example/a.png" });
    et("event", "Plain");
  });
  const rows = await S.waitRows(site, (r) => ofType(r, "purchase").length && ofType(r, "identify").length && ofType(r, "custom").length == 2);
  const [signup] = ofType(rows, "custom").filter((r) => r.name === "Signup");
  assert.deepEqual(signup.props, { plan: "pro", seats: "3", trial: "true" });
  assert.equal(signup.revenue_minor, "500");
  assert.equal(signup.revenue_currency, "EUR");
  assert.ok(ofType(rows, "custom").some((r) => r.name === "Plain"));
  const [buy] = ofType(rows, "purchase");
  assert.equal(buy.revenue_minor, "1999");
  assert.equal(buy.revenue_currency, "USD");
  assert.equal(buy.order_id, "A-1");
  assert.deepEqual(buy.props, { coupon: "X" });
  const [who] = ofType(rows, "identify");
  assert.equal(who.user_id, "u-42");
  assert.ok(who.sensitive);
  assert.ok(!JSON.stringify(rows).includes("ann@example.com"));
  assert.equal(ofType(rows, "pageview").length, 1);
  assert.deepEqual(page.errors, []);
});

test("manual mode (data-auto=\"false\"): only et('pageview') counts pageviews", async () => {
  const site = await S.newSite();
  S.route("/manual/", S.page({ site, attrs: 'data-auto="false"' }));
  const page = await newPage(await S.context());
  await page.goto(S.url("site.test", "/manual/a"));
  await page.waitForFunction(() => typeof window.et === "function");
  await page.evaluate(() => history.pushState({}, "", "/manual/b"));
  await sleep(700);
  assert.equal((await S.rows(site)).length, 0, "no automatic pageview");
  await page.evaluate(() => et("pageview"));
  const rows = await S.waitRows(site, count("pageview", 1));
  assert.equal(rows[0].pathname, "/manual/b");
});

test("data-exclude, localhost, file: and the opt-out flag send nothing", async () => {
  const site = await S.newSite();
  S.route("/ex/", S.page({ site, attrs: 'data-exclude="/ex/private/*, /ex/admin"' }));
  S.route("/lh/", S.page({ site }));
  S.route("/lhin/", S.page({ site, attrs: "data-include-localhost" }));
  const ctx = await S.context();
  const page = await newPage(ctx);
  for (const p of ["/ex/private/x", "/ex/private/y/z", "/ex/admin"]) await page.goto(S.url("site.test", p));
  await page.goto(S.url("localhost", "/lh/"));
  await page.goto(S.url("127.0.0.1", "/lh/"));
  // The visitor's opt-out flag.
  await page.goto(S.url("site.test", "/ex/optout"));
  await page.evaluate(() => localStorage.setItem("et_ignore", "true"));
  await page.goto(S.url("site.test", "/ex/ignored"));
  await page.evaluate(() => localStorage.removeItem("et_ignore"));
  // Counted: an admin sub-page (the pattern has no *), and localhost when included.
  await page.goto(S.url("site.test", "/ex/admin/users"));
  await page.goto(S.url("localhost", "/lhin/"));
  await page.goto("about:blank");
  await sleep(800);
  const rows = await S.rows(site);
  assert.deepEqual(
    ofType(rows, "pageview").map((r) => r.hostname + r.pathname).sort(),
    ["localhost/lhin/", "site.test/ex/admin/users", "site.test/ex/optout"]
  );
  // A file: page is ignored, and nothing throws.
  const file = await newPage(ctx);
  const dir = mkdtempSync(join(tmpdir(), "et-file-"));
  writeFileSync(join(dir, "page.html"), S.page({ site, src: `http://127.0.0.1:${S.port}/et.js`, attrs: "" }));
  await file.goto("file://" + join(dir, "page.html"));
  await file.waitForFunction(() => typeof window.et === "function");
  await sleep(300);
  rmSync(dir, { recursive: true });
  assert.deepEqual(file.errors, []);
  assert.equal(file.beacons.length, 0);
});

test("storage mode: the visitor id survives reloads and tabs; the session is per tab with 30 min idle expiry", async () => {
  const site = await S.newSite();
  S.route("/st/", S.page({ site, attrs: 'data-persistence="storage"' }));
  const ctx = await S.context();
  const tab1 = await newPage(ctx);
  await tab1.goto(S.url("site.test", "/st/1"));
  await S.waitRows(site, count("pageview", 1));
  const vid = await tab1.evaluate(() => localStorage.getItem("et_vid"));
  assert.match(vid, /^[\w-]{16,64}$/);
  const [sid1] = (await tab1.evaluate(() => sessionStorage.getItem("et_sid"))).split(".");
  await tab1.reload();
  await S.waitRows(site, count("pageview", 2));
  assert.equal(await tab1.evaluate(() => localStorage.getItem("et_vid")), vid);
  assert.equal((await tab1.evaluate(() => sessionStorage.getItem("et_sid"))).split(".")[0], sid1, "a reload keeps the session");
  const tab2 = await newPage(ctx);
  await tab2.goto(S.url("site.test", "/st/2"));
  await S.waitRows(site, count("pageview", 3));
  assert.equal(await tab2.evaluate(() => localStorage.getItem("et_vid")), vid);
  // 31 idle minutes later, a new session.
  await tab1.evaluate(() => {
    const [id] = sessionStorage.getItem("et_sid").split(".");
    sessionStorage.setItem("et_sid", id + "." + (Date.now() - 31 * 60 * 1000));
  });
  await tab1.reload();
  const rows = await S.waitRows(site, count("pageview", 4));
  const pvs = ofType(rows, "pageview");
  const expected = storageVisitorHash(site, vid);
  assert.ok(pvs.every((r) => r.visitor_hash === expected), "every beacon carried the visitor id");
  const byPath = (p) => pvs.filter((r) => r.pathname === p).map((r) => r.session_hash);
  const [s1, s1again, s1late] = byPath("/st/1");
  assert.equal(s1, s1again);
  assert.notEqual(s1late, s1, "expired after 30 idle minutes");
  assert.notEqual(byPath("/st/2")[0], s1, "a new tab is a new session");
  assert.deepEqual(tab1.errors, []);
});

test("cross-domain: ids handed to allowed hosts, adopted and removed from the URL", async () => {
  const siteId = await S.newSite();
  const attrs = 'data-persistence="storage" data-allowed-hostnames="shop.test, blog.test"';
  S.route("/xd/", S.page({
    site: siteId,
    attrs,
    body: `<a id="shop" href="${S.url("shop.test", "/xd/cart?item=7")}">shop</a>
           <a id="other" href="${S.url("other.test", "/xd/elsewhere")}">other</a>`,
  }));
  const ctx = await S.context();
  const page = await newPage(ctx);
  await page.goto(S.url("blog.test", "/xd/post"));
  await S.waitRows(siteId, count("pageview", 1));
  const vid = await page.evaluate(() => localStorage.getItem("et_vid"));
  const [sid] = (await page.evaluate(() => sessionStorage.getItem("et_sid"))).split(".");
  await Promise.all([page.waitForURL(/shop\.test/), page.click("#shop")]);
  await S.waitRows(siteId, count("pageview", 2));
  assert.equal(page.url(), S.url("shop.test", "/xd/cart?item=7"), "the ids are gone from the URL");
  assert.equal(await page.evaluate(() => localStorage.getItem("et_vid")), vid, "visitor id adopted");
  assert.equal((await page.evaluate(() => sessionStorage.getItem("et_sid"))).split(".")[0], sid, "session adopted");
  const rows = await S.waitRows(siteId, count("outbound", 1));
  const pvs = ofType(rows, "pageview");
  assert.deepEqual(pvs.map((r) => r.hostname), ["blog.test", "shop.test"]);
  assert.equal(pvs[0].visitor_hash, pvs[1].visitor_hash);
  assert.equal(pvs[0].session_hash, pvs[1].session_hash);
  assert.equal(pvs[1].visitor_hash, storageVisitorHash(siteId, vid));

  // Hosts not on the list get no ids.
  await page.goto(S.url("blog.test", "/xd/post"));
  await Promise.all([page.waitForURL(/other\.test/), page.click("#other")]);
  assert.equal(page.url(), S.url("other.test", "/xd/elsewhere"));

  // Malformed ids are not adopted, but still removed.
  const fresh = await newPage(await S.context());
  await fresh.goto(S.url("shop.test", "/xd/cart?_et_vid=short&_et_sid=bad%20id&item=1"));
  await fresh.waitForFunction(() => typeof window.et === "function");
  assert.equal(fresh.url(), S.url("shop.test", "/xd/cart?item=1"));
  const adopted = await fresh.evaluate(() => localStorage.getItem("et_vid"));
  assert.notEqual(adopted, "short");
  assert.match(adopted, /^[\w-]{16,64}$/);
  assert.deepEqual([...page.errors, ...fresh.errors], []);
});

test("cross-domain parameters are ignored in memory mode", async () => {
  const site = await S.newSite();
  S.route("/xm/", S.page({ site, attrs: 'data-allowed-hostnames="shop.test"', body: `<a id="l" href="${S.url("shop.test", "/xm/x")}">x</a>` }));
  const ctx = await S.context();
  const page = await newPage(ctx);
  const vid = "A".repeat(20);
  await page.goto(S.url("site.test", `/xm/a?_et_vid=${vid}&_et_sid=BBBBBBBBBB`));
  await S.waitRows(site, count("pageview", 1));
  assert.match(page.url(), /_et_vid=/, "memory mode leaves the URL alone");
  await Promise.all([page.waitForURL(/shop\.test/), page.click("#l")]);
  assert.equal(page.url(), S.url("shop.test", "/xm/x"), "and decorates no link");
  assert.deepEqual(await deviceState(ctx, page), { cookies: 0, localStorage: 0, sessionStorage: 0, indexedDB: 0 });
  const rows = await S.waitRows(site, count("pageview", 2));
  assert.notEqual(rows[0].visitor_hash, storageVisitorHash(site, vid));
});

test("engagement: visible time and max scroll depth for a scripted scroll and wait", async () => {
  const site = await S.newSite();
  S.route("/eng/", S.page({ site, body: '<div style="height:5000px">tall</div>' }));
  const ctx = await S.context();
  const page = await newPage(ctx);
  const t0 = Date.now();
  await page.goto(S.url("site.test", "/eng/long"));
  await S.waitRows(site, count("pageview", 1));
  await sleep(1000);
  await page.evaluate(() => window.scrollTo(0, 2000));
  await sleep(300);
  await page.evaluate(() => window.scrollTo(0, 500)); // scrolling back up keeps the max
  await sleep(500);
  // The tab is hidden for 1.5 s: not engaged time.
  const setHidden = (hidden) =>
    page.evaluate((h) => {
      Object.defineProperty(document, "hidden", { value: h, configurable: true });
      Object.defineProperty(document, "visibilityState", { value: h ? "hidden" : "visible", configurable: true });
      document.dispatchEvent(new Event("visibilitychange"));
    }, hidden);
  await setHidden(true);
  const hiddenAt = Date.now();
  await S.waitRows(site, count("engagement", 1));
  await sleep(1500);
  const hiddenMs = Date.now() - hiddenAt;
  await setHidden(false);
  await sleep(700);
  await page.goto("about:blank"); // leaving the page reports the rest
  const total = Date.now() - t0;
  const rows = await S.waitRows(site, count("engagement", 2));
  const eng = ofType(rows, "engagement");
  assert.equal(eng.length, 2);
  const ms = eng.reduce((a, r) => a + r.engaged_ms, 0);
  assert.ok(eng[0].engaged_ms >= 1700, `first report ${eng[0].engaged_ms} ms`);
  assert.ok(eng[1].engaged_ms >= 600, `second report ${eng[1].engaged_ms} ms`);
  assert.ok(ms <= total - hiddenMs + 100, `engaged ${ms} ms of ${total} ms, ${hiddenMs} ms hidden`);
  // Bottom of the viewport at 2000 + 720 of 5000 + margins: about 54%.
  for (const r of eng) assert.ok(r.scroll_depth >= 52 && r.scroll_depth <= 56, `scroll ${r.scroll_depth}%`);
  assert.ok(eng.every((r) => r.pathname === "/eng/long"));
  assert.deepEqual(page.errors, []);
});

test("transport: fetch keepalive as text/plain when sendBeacon is missing", async () => {
  const site = await S.newSite();
  S.route("/fb/", S.page({ site }));
  const ctx = await S.context();
  await ctx.addInitScript(() => {
    delete Navigator.prototype.sendBeacon;
  });
  const page = await newPage(ctx);
  await page.goto(S.url("site.test", "/fb/"));
  await S.waitRows(site, count("pageview", 1));
  assert.equal(await page.evaluate(() => "sendBeacon" in navigator), false);
  const [req] = page.beacons;
  assert.equal(req.resourceType(), "fetch");
  assert.match((await req.allHeaders())["content-type"], /^text\/plain/);
  assert.ok(page.beacons.every((r) => r.method() === "POST"), "no preflight");
});

test("never throws into the page, whatever it is given", async () => {
  const site = await S.newSite();
  const head = `<script>window.et=function(){(et.q=et.q||[]).push(arguments)}; et(); et(null, null); et('purchase');</script>`;
  S.route("/safe/", S.page({ site, head, body: '<a id="bad" href="mailto:%E0%A4%A">bad</a>' }));
  S.route("/broken/", S.page({ site, api: "::not a url::", attrs: 'data-exclude="[" data-download-extensions="("' }));
  S.route("/nosite/", S.page({ site: "" }).replace(' data-site=""', ""));
  const ctx = await S.context();
  const page = await newPage(ctx);
  await page.goto(S.url("site.test", "/safe/"));
  await S.waitRows(site, count("pageview", 1));
  await page.evaluate(() => {
    et("identify");
    et("event");
    et("event", "x", { props: { nested: { no: 1 } } });
    et("purchase", { amount: 19.99, currency: "nope" });
    et(42, {}, {});
    history.pushState(null, "", "/safe/next");
    document.body.dispatchEvent(new Event("submit", { bubbles: true }));
  });
  await page.click("#bad");
  await page.evaluate(() => {
    document.dispatchEvent(new MouseEvent("click", { bubbles: true })); // a target without closest()
    document.dispatchEvent(new Event("submit"));
  });
  for (const p of ["/broken/", "/nosite/"]) await page.goto(S.url("site.test", p));
  await page.evaluate(() => {
    window.et?.("event", "x");
    history.pushState({}, "", "/broken/2");
  });
  await page.goto("about:blank");
  assert.deepEqual(page.errors, []);
  const rows = await S.waitRows(site, count("pageview", 2));
  assert.deepEqual(ofType(rows, "pageview").map((r) => r.pathname), ["/safe/", "/safe/next"]);
  assert.ok(rows.every((r) => r.event_type !== "mailto"), JSON.stringify(rows.map(brief)));
});

test("storage mode where storage is blocked (sandboxed frame) still counts, with a memory session", async () => {
  const site = await S.newSite();
  S.route("/sbx/inner", S.page({ site, attrs: 'data-persistence="storage" data-allowed-hostnames="shop.test"' }));
  S.route("/sbx/", `<!doctype html><iframe sandbox="allow-scripts" src="${S.url("site.test", "/sbx/inner?_et_vid=" + "V".repeat(20))}"></iframe>`);
  const page = await newPage(await S.context());
  await page.goto(S.url("site.test", "/sbx/"));
  const rows = await S.waitRows(site, count("pageview", 1));
  assert.equal(rows[0].pathname, "/sbx/inner");
  assert.notEqual(rows[0].visitor_hash, storageVisitorHash(site, "V".repeat(20)));
  const frame = page.frames()[1];
  assert.equal(await frame.evaluate(() => typeof window.et), "function");
  assert.equal(await frame.evaluate(() => location.search), "", "the ids are still removed from the URL");
  assert.deepEqual(page.errors, []);
});
