// The dashboard's browser-test stack: a fresh PostgreSQL database, the demo
// seeded by `engagetrack seed-demo`, the real `engagetrack serve` on
// loopback, and Debian's Chromium driven by playwright-core. stop() tears
// it all down and drops the database. `start({ env, secrets })` adds
// variables to the server's environment and secrets (name → text, written
// as the hex the secrets file holds) before it starts.
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import pg from "pg";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const ROOT = join(here, "../..");
export const SCREENSHOTS = join(here, "screenshots");
export const USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function engagetrackBin() {
  const bin = [process.env.ENGAGETRACK_BIN, join(ROOT, "target/debug/engagetrack"), join(ROOT, "target/release/engagetrack")].filter(Boolean).find(existsSync);
  if (!bin) throw new Error("engagetrack not built: run `cargo build --bin engagetrack`");
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

export async function start({ seed = true, env: extraEnv = {}, secrets = {} } = {}) {
  const cleanups = [];
  const stack = {
    stop: async () => {
      for (const f of cleanups.reverse()) {
        try {
          await f();
        } catch (e) {
          console.error("cleanup:", e);
        }
      }
    },
  };
  try {
    const adminUrl = new URL(process.env.DATABASE_URL || "postgres://postgres@127.0.0.1:5432/postgres");
    const dbName = `et_ui_${process.pid}_${randomBytes(4).toString("hex")}`;
    const admin = new pg.Client({ connectionString: adminUrl.href });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${dbName}`);
    cleanups.push(async () => {
      await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
      await admin.end();
    });
    const dbUrl = new URL(adminUrl.href);
    dbUrl.pathname = "/" + dbName;
    const work = mkdtempSync(join(tmpdir(), "et-ui-"));
    cleanups.push(() => rmSync(work, { recursive: true, force: true }));
    const secretsFile = join(work, "secrets.json");
    if (Object.keys(secrets).length) {
      // The server adds the secrets it needs and keeps these.
      const hex = Object.fromEntries(Object.entries(secrets).map(([name, text]) => [name, Buffer.from(text).toString("hex")]));
      writeFileSync(secretsFile, JSON.stringify(hex), { mode: 0o600 });
    }
    const env = { ...process.env, DATABASE_URL: dbUrl.href, ENGAGETRACK_SECRETS_FILE: secretsFile, RUST_LOG: process.env.RUST_LOG || "warn", ...extraEnv };
    const bin = engagetrackBin();
    if (seed) {
      const { stdout } = await promisify(execFile)(bin, ["seed-demo", "--days", "30", "--visitors", "600"], { env, maxBuffer: 1 << 24 });
      stack.demo = JSON.parse(stdout.trim().split("\n").pop());
    }
    const port = await freePort();
    const server = spawn(bin, ["serve", "--addr", `127.0.0.1:${port}`], { env, stdio: ["ignore", "inherit", "inherit"] });
    let exited = null;
    server.on("exit", (code) => (exited = code));
    cleanups.push(async () => {
      if (exited === null) {
        server.kill("SIGTERM");
        await new Promise((r) => server.once("exit", r));
      }
    });
    stack.base = `http://127.0.0.1:${port}`;
    for (let i = 0; ; i++) {
      if (exited !== null) throw new Error(`engagetrack serve exited with ${exited}`);
      try {
        if ((await fetch(stack.base + "/healthz")).ok) break;
      } catch {}
      if (i > 600) throw new Error("engagetrack serve did not become healthy");
      await sleep(100);
    }
    const db = new pg.Client({ connectionString: dbUrl.href });
    await db.connect();
    cleanups.push(() => db.end());
    stack.db = db;
    /// The token of the newest mail to `to` whose link has `path`.
    stack.mailedLink = async (to, path) => {
      for (let i = 0; i < 50; i++) {
        const { rows } = await db.query("SELECT body FROM mail_outbox WHERE to_address = $1 ORDER BY id DESC", [to]);
        for (const r of rows) {
          const m = r.body.match(new RegExp(`(https?://\\S+${path}\\?token=[\\w-]+)`));
          if (m) return m[1];
        }
        await sleep(100);
      }
      throw new Error(`no mail to ${to} with ${path}`);
    };
    const browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", `--user-agent=${USER_AGENT}`],
    });
    cleanups.push(() => browser.close());
    stack.browser = browser;
    /// A fresh browser context (its own cookies); every request leaving loopback fails the test.
    stack.context = async (options = {}) => {
      const context = await browser.newContext({ userAgent: USER_AGENT, locale: "en-GB", ...options });
      stack.offsite = [];
      await context.route(/^(?!http:\/\/127\.0\.0\.1)/, (route) => {
        stack.offsite.push(route.request().url());
        route.abort();
      });
      return context;
    };
    stack.page = async (options) => {
      const context = await stack.context(options);
      const page = await context.newPage();
      stack.consoleErrors = [];
      page.on("pageerror", (e) => stack.consoleErrors.push(String(e)));
      return page;
    };
    /// Waits until no panel is loading any more.
    stack.settled = async (page) => {
      await page.waitForFunction(() => document.querySelectorAll(".spinner").length === 0, null, { timeout: 20000 });
    };
    stack.shot = async (page, name) => {
      await stack.settled(page);
      mkdirSync(SCREENSHOTS, { recursive: true });
      await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
    };
    /// Signs in through the form.
    stack.signIn = async (page, email, password) => {
      await page.goto(stack.base + "/#/login");
      await page.getByLabel("Email").fill(email);
      await page.getByLabel("Password").fill(password);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.getByRole("heading", { name: "Your sites" }).waitFor();
    };
    return stack;
  } catch (e) {
    await stack.stop();
    throw e;
  }
}
