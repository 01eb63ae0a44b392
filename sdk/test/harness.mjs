// The browser-test stack: a fresh PostgreSQL database, the real
// `engagetrack serve` on loopback, a fixture web server on loopback, and
// Debian's Chromium driven by playwright-core. Everything is torn down (and
// the database dropped) by stop().
import { spawn } from "node:child_process";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
export const SDK = join(here, "..");
const ROOT = join(SDK, "..");

// A normal desktop Chrome: the headless UA is a bot UA and the edge drops bots.
export const USER_AGENT =
  "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function engagetrackBin() {
  const candidates = [
    process.env.ENGAGETRACK_BIN,
    join(ROOT, "target/debug/engagetrack"),
    join(ROOT, "target/release/engagetrack"),
  ].filter(Boolean);
  const bin = candidates.find((p) => existsSync(p));
  if (!bin) throw new Error(`engagetrack not built: run \`cargo build --bin engagetrack\` (looked in ${candidates})`);
  return bin;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/// Storage mode's visitor hash, as shared/src/visitor.rs computes it: the
/// first 64 bits of the SHA-256, lowest bit set (the storage-mode mark).
export function storageVisitorHash(siteId, vid) {
  const h = createHash("sha256");
  h.update("vid");
  h.update(Buffer.from(siteId.replace(/-/g, ""), "hex"));
  h.update(vid);
  return BigInt.asIntN(64, h.digest().readBigUInt64BE(0) | 1n).toString();
}

export async function start() {
  const stack = { cleanups: [] };
  const cleanup = (f) => stack.cleanups.unshift(f);
  stack.stop = async () => {
    for (const f of stack.cleanups) {
      try {
        await f();
      } catch (e) {
        console.error("cleanup:", e);
      }
    }
  };
  try {
    await setUp(stack, cleanup);
  } catch (e) {
    await stack.stop();
    throw e;
  }
  return stack;
}

async function setUp(stack, cleanup) {
  // 1. A fresh database.
  const adminUrl = new URL(process.env.DATABASE_URL || "postgres://postgres@127.0.0.1:5432/postgres");
  const dbName = `et_sdk_${process.pid}_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: adminUrl.href });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  cleanup(async () => {
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    await admin.end();
  });
  const dbUrl = new URL(adminUrl.href);
  dbUrl.pathname = "/" + dbName;

  // 2. The real server against it.
  const work = mkdtempSync(join(tmpdir(), "et-sdk-"));
  cleanup(() => rmSync(work, { recursive: true, force: true }));
  const apiPort = await freePort();
  const server = spawn(engagetrackBin(), ["serve", "--addr", `127.0.0.1:${apiPort}`], {
    env: {
      ...process.env,
      DATABASE_URL: dbUrl.href,
      ENGAGETRACK_SECRETS_FILE: join(work, "secrets.json"),
      RUST_LOG: process.env.RUST_LOG || "warn",
    },
    stdio: ["ignore", "inherit", "inherit"],
  });
  let exited = null;
  server.on("exit", (code) => (exited = code));
  cleanup(async () => {
    if (exited === null) {
      server.kill("SIGTERM");
      await new Promise((r) => server.once("exit", r));
    }
  });
  stack.api = `http://127.0.0.1:${apiPort}`;
  for (let i = 0; ; i++) {
    if (exited !== null) throw new Error(`engagetrack serve exited with ${exited}`);
    try {
      if ((await fetch(stack.api + "/healthz")).ok) break;
    } catch {}
    if (i > 600) throw new Error("engagetrack serve did not become healthy in 60 s");
    await sleep(100);
  }

  const db = new pg.Client({ connectionString: dbUrl.href });
  await db.connect();
  cleanup(() => db.end());
  stack.db = db;
  /// A new site per test keeps tests apart; each in an organisation of its
  /// own, since a domain is unique within an organisation.
  stack.newSite = async (domain = "site.test") => {
    const id = randomUUID();
    await db.query("INSERT INTO organizations (id, name, slug) VALUES ($1, 'SDK tests', $2)", [id, "sdk-" + id.slice(0, 8)]);
    await db.query("INSERT INTO sites (id, organization_id, domain, name) VALUES ($1, $1, $2, $2)", [id, domain]);
    return id;
  };
  stack.rows = async (siteId) =>
    (
      await db.query(
        `SELECT event_type, name, hostname, pathname, referrer, referrer_host, utm_source, utm_campaign,
                screen_width, screen_height, engaged_ms, scroll_depth, revenue_minor, revenue_currency,
                order_id, target, user_id, props, sensitive, visitor_hash::text AS visitor_hash,
                session_hash::text AS session_hash
           FROM events WHERE site_id = $1 ORDER BY ts, id`,
        [siteId]
      )
    ).rows;
  /// Waits until `pred(rows)` holds (or 10 s pass) and returns the rows.
  stack.waitRows = async (siteId, pred, what = "the expected rows") => {
    let rows;
    for (let i = 0; i < 100; i++) {
      rows = await stack.rows(siteId);
      if (pred(rows)) return rows;
      await sleep(100);
    }
    throw new Error(`timed out waiting for ${what}; rows: ${JSON.stringify(rows.map(brief), null, 1)}`);
  };

  // 3. Fixture pages: each test registers its pages under its own path prefix.
  const routes = new Map();
  const fixture = http.createServer((req, res) => {
    const path = req.url.split("?")[0];
    if (path === "/et.js") {
      res.writeHead(200, { "content-type": "application/javascript" });
      return res.end(readFileSync(join(SDK, "dist/et.js")));
    }
    const prefix = [...routes.keys()].find((p) => path.startsWith(p));
    if (!prefix) {
      res.writeHead(404);
      return res.end("no fixture");
    }
    const body = routes.get(prefix);
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(typeof body === "function" ? body(req) : body);
  });
  await new Promise((r) => fixture.listen(0, "127.0.0.1", r));
  cleanup(() => new Promise((r) => fixture.close(r)));
  stack.port = fixture.address().port;
  stack.route = (prefix, html) => routes.set(prefix, html);
  /// http://HOST.test:PORT/PATH — every *.test host resolves to the loopback fixture server.
  stack.url = (host, path) => `http://${host}:${stack.port}${path}`;
  /// A page with the tracker; `attrs` are extra attributes of the script tag.
  stack.page = ({ site, attrs = "", head = "", body = "", title = "Fixture", src = "/et.js", api = stack.api + "/api/e" }) =>
    `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title>${head}` +
    `<script defer data-site="${site}"${api ? ` data-api="${api}"` : ""} ${attrs} src="${src}"></script>` +
    `</head><body>${body}</body></html>`;

  // 4. Chromium: Debian's, never a downloaded one; only loopback is reachable.
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--host-resolver-rules=MAP *.test 127.0.0.1, MAP localhost 127.0.0.1",
      // Beacons sent while a page unloads go out with the browser's own UA,
      // not the context's; the headless one is a bot UA the ingest drops.
      `--user-agent=${USER_AGENT}`,
    ],
  });
  cleanup(() => browser.close());
  stack.browser = browser;
  /// A fresh browser context (its own cookies and storage) with a desktop UA.
  stack.context = async () => {
    const ctx = await browser.newContext({ userAgent: USER_AGENT, viewport: { width: 1280, height: 720 } });
    cleanup(() => ctx.close());
    return ctx;
  };
}

/// A row without the noise, for failure messages.
export function brief(r) {
  const o = {};
  for (const [k, v] of Object.entries(r)) if (v !== null) o[k] = k === "sensitive" ? "<sealed>" : v;
  return o;
}
