// The demo chat page in a real browser: `gatewayworker start` (the built debug binary) runs
// the register, gateway, two chat workers and the demo page on free ports; two headless
// Chromium pages join the same room, talk, whisper, and one leaves. Each step asserts what
// the pages show. A screenshot goes to artifacts/browser/<module>.png.
//
// Run by scripts/browser-test (which installs Chromium and playwright-core when missing).
// Environment: GW_BIN (the binary, default <target>/debug/gatewayworker), CHROMIUM
// (default /usr/bin/chromium), GW_CHAT (the chat module of wasm-workers/dist/ to run:
// chat.wasm, the default, or its AssemblyScript and C twins chat_as.wasm, chat_c.wasm),
// COMPRESSION (the gateway's --compression, default no-context-takeover: Chromium offers
// permessage-deflate and the pages check, through `WebSocket.extensions`, that it was
// agreed; `off` checks that it was not). Exits non-zero on any failure; every wait is bounded.

import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const BIN = process.env.GW_BIN ||
  join(process.env.CARGO_TARGET_DIR || join(ROOT, "target"), "debug", "gatewayworker");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const CHAT = process.env.GW_CHAT || "chat.wasm";
const COMPRESSION = process.env.COMPRESSION || "no-context-takeover";
const SCREENSHOT = join(ROOT, "artifacts", "browser", CHAT.replace(/\.wasm$/, "") + ".png");
/** Longest wait for any one thing the page should show. */
const STEP_MS = 10_000;
/** The whole test, browser start included. */
const TOTAL_MS = 90_000;

const watchdog = setTimeout(() => {
  console.error(`browser: FAILED: not done within ${TOTAL_MS} ms`);
  cleanup().finally(() => process.exit(1));
}, TOTAL_MS);

let server = null;
let context = null;
let profile = null;
const serverLog = [];

/** A port that was free a moment ago. */
function freePort() {
  return new Promise((ok, fail) => {
    const probe = createServer();
    probe.on("error", fail);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => ok(port));
    });
  });
}

/** Starts `gatewayworker start` and resolves once it logs that everything runs. */
function startServer(ports) {
  const args = [
    "start",
    "--wasm", join(ROOT, "wasm-workers/dist", CHAT),
    "--register", `127.0.0.1:${ports.register}`,
    "--listen", `websocket://127.0.0.1:${ports.public}`,
    "--start-port", String(ports.lan),
    "--demo-listen", `127.0.0.1:${ports.demo}`,
    "--compression", COMPRESSION,
  ];
  server = spawn(BIN, args, {
    env: { ...process.env, RUST_LOG: "info" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error("no `gatewayworker started` log line")), STEP_MS);
    const onData = (chunk) => {
      for (const line of chunk.toString().split("\n")) {
        if (line) serverLog.push(line);
        if (line.includes("gatewayworker started")) {
          clearTimeout(timer);
          ok();
        }
      }
    };
    server.stdout.on("data", onData);
    server.stderr.on("data", onData);
    server.on("error", (e) => { clearTimeout(timer); fail(e); });
    server.on("exit", (code) => { clearTimeout(timer); fail(new Error(`server exited with ${code}`)); });
  });
}

/** Stops the server with SIGTERM (bounded) and resolves to its exit code. */
function stopServer() {
  if (!server || server.exitCode !== null) return Promise.resolve(server?.exitCode ?? null);
  return new Promise((ok) => {
    const timer = setTimeout(() => { server.kill("SIGKILL"); ok(null); }, STEP_MS);
    server.removeAllListeners("exit");
    server.on("exit", (code) => { clearTimeout(timer); ok(code); });
    server.kill("SIGTERM");
  });
}

async function cleanup() {
  if (context) await context.close().catch(() => {});
  context = null;
  await stopServer();
  if (profile) rmSync(profile, { recursive: true, force: true });
}

let passed = 0;
async function step(name, body) {
  await body();
  passed += 1;
  console.log(`  ok ${passed} - ${name}`);
}

/** Fills the login form and joins; retries while no worker is linked yet (the gateway
 * then closes new clients at once and the page says it could not connect). */
async function joinRoom(page, nick, room) {
  const deadline = Date.now() + STEP_MS;
  for (;;) {
    await page.fill("#nick", nick);
    await page.fill("#room", room);
    await page.click("#join");
    const joined = await page
      .waitForFunction(() => !document.getElementById("chat-view").hidden ||
        (document.getElementById("login-error").textContent !== "" &&
          !document.getElementById("join").disabled), null, { timeout: STEP_MS })
      .then(() => page.isVisible("#chat-view"));
    if (joined) return;
    assert.ok(Date.now() < deadline, `${nick} could not join: ${await page.textContent("#login-error")}`);
    await page.waitForTimeout(200);
  }
}

/** The texts of the notices (join/leave/error lines) a page shows. */
const notices = (page) => page.$$eval("#messages li.notice", (lis) => lis.map((li) => li.textContent));
/** The member names a page lists. */
const members = (page) => page.$$eval("#members li", (lis) => lis.map((li) => li.dataset.name));
/** Waits until `page` shows a message bubble from `from` with `text`; returns its classes. */
async function waitMessage(page, from, text) {
  const li = page.locator("#messages li.msg", { has: page.locator(".bubble", { hasText: text }) })
    .filter({ has: page.locator(".who", { hasText: from }) });
  await li.first().waitFor({ timeout: STEP_MS });
  return li.first().getAttribute("class");
}
async function waitNotice(page, text) {
  await page.locator("#messages li.notice", { hasText: text }).first().waitFor({ timeout: STEP_MS });
}
async function waitMembers(page, expected) {
  await page.waitForFunction(
    (want) => JSON.stringify([...document.querySelectorAll("#members li")].map((li) => li.dataset.name)) === want,
    JSON.stringify(expected), { timeout: STEP_MS },
  ).catch(async () => assert.deepEqual(await members(page), expected));
}

async function main() {
  const started = Date.now();
  // The ports are free when chosen, but the kernel may hand one to an outgoing connection
  // (the server's own, to its register) before the server binds it: then choose again.
  let ports;
  for (let attempt = 1; ; attempt += 1) {
    ports = { register: await freePort(), public: await freePort(), lan: await freePort(), demo: await freePort() };
    try {
      await startServer(ports);
      break;
    } catch (e) {
      if (attempt >= 3 || !serverLog.some((line) => line.includes("is in use"))) throw e;
      console.log(`  a port was taken before the server bound it (attempt ${attempt}); new ports`);
      serverLog.length = 0;
    }
  }
  const url = `http://127.0.0.1:${ports.demo}/`;

  profile = mkdtempSync(join(tmpdir(), "gatewayworker-chromium-"));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1000, height: 640 },
    timeout: 30_000,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  // Keeps every WebSocket the page opens reachable, to read its negotiated extensions.
  await context.addInitScript(() => {
    const Native = window.WebSocket;
    window.__sockets = [];
    window.WebSocket = class extends Native {
      constructor(...args) {
        super(...args);
        window.__sockets.push(this);
      }
    };
  });
  const pageErrors = [];
  const ann = context.pages()[0] || await context.newPage();
  const bob = await context.newPage();
  for (const page of [ann, bob]) {
    page.setDefaultTimeout(STEP_MS);
    page.on("pageerror", (e) => pageErrors.push(String(e)));
  }
  const room = "demo-" + process.pid;

  await step("the page is served with the gateway's websocket URL filled in", async () => {
    const response = await ann.goto(url);
    assert.equal(response.status(), 200);
    assert.equal(await ann.title(), "gatewayworker chat");
    assert.equal(await ann.inputValue("#server"), `ws://127.0.0.1:${ports.public}/`);
    await bob.goto(url);
  });

  await step("ann joins and sees herself in the room", async () => {
    await joinRoom(ann, "ann", room);
    assert.equal(await ann.textContent("#room-name"), "# " + room);
    await waitMembers(ann, ["ann"]);
  });

  await step("bob joins: ann sees the join notice, both list both", async () => {
    await joinRoom(bob, "bob", room);
    await waitNotice(ann, "bob joined");
    await waitMembers(ann, ["ann", "bob"]);
    await waitMembers(bob, ["ann", "bob"]);
    assert.deepEqual(await notices(bob), [`You joined #${room} as bob`]);
  });

  await step("messages reach the other page (and the sender's own)", async () => {
    await ann.fill("#text", "hello bob");
    await ann.click("#send");
    assert.match(await waitMessage(bob, "ann", "hello bob"), /\btheirs\b/);
    assert.match(await waitMessage(ann, "ann", "hello bob"), /\bmine\b/);
    await bob.fill("#text", "hi ann <b>not bold</b>");
    await bob.press("#text", "Enter");
    await waitMessage(ann, "bob", "hi ann <b>not bold</b>");
    assert.equal(await ann.locator("#messages b").count(), 0, "message text is not HTML");
  });

  await step(`permessage-deflate is ${COMPRESSION === "off" ? "not " : ""}negotiated (--compression ${COMPRESSION})`, async () => {
    for (const page of [ann, bob]) {
      const extensions = await page.evaluate(() =>
        window.__sockets.filter((s) => s.readyState === WebSocket.OPEN).map((s) => s.extensions));
      assert.equal(extensions.length, 1, "one open socket per page");
      if (COMPRESSION === "off") {
        assert.equal(extensions[0], "");
      } else {
        assert.match(extensions[0], /^permessage-deflate\b/);
      }
    }
  });

  await step("a long message (compressed both ways when negotiated) arrives intact", async () => {
    const long = "compress me ".repeat(80) + "end";
    await ann.fill("#text", long);
    await ann.click("#send");
    await waitMessage(bob, "ann", long);
  });

  await step("a whisper reaches only its addressee", async () => {
    await bob.fill("#text", "/w ann psst");
    await bob.click("#send");
    assert.match(await waitMessage(ann, "bob (whisper)", "psst"), /\bwhisper\b/);
    await waitMessage(bob, "to ann (whisper)", "psst");
  });

  await step("bob leaves: ann sees the leave notice and bob is gone from her list", async () => {
    await bob.click("#leave");
    await bob.locator("#login-view").waitFor({ state: "visible" });
    await waitNotice(ann, "bob left");
    await waitMembers(ann, ["ann"]);
    const seen = await notices(ann);
    assert.deepEqual(seen, [`You joined #${room} as ann`, "bob joined", "bob left"]);
    assert.equal(await bob.inputValue("#nick"), "bob", "bob's page keeps his nickname to rejoin");
  });

  await step("screenshot saved", async () => {
    mkdirSync(dirname(SCREENSHOT), { recursive: true });
    await ann.screenshot({ path: SCREENSHOT });
  });

  await step("no script errors on either page", async () => {
    assert.deepEqual(pageErrors, []);
  });

  await context.close();
  context = null;
  await step("SIGTERM stops the server with exit 0", async () => {
    assert.equal(await stopServer(), 0);
  });
  console.log(`browser: screenshot ${SCREENSHOT}; ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

try {
  await main();
  console.log(`browser (${CHAT}): ${passed} passed, 0 failed`);
  await cleanup();
  clearTimeout(watchdog);
} catch (e) {
  console.error(`browser (${CHAT}): FAILED after ${passed} step(s): ${e.stack || e}`);
  console.error("server log (last lines):\n  " + serverLog.slice(-30).join("\n  "));
  console.log(`browser: ${passed} passed, 1 failed`);
  await cleanup();
  clearTimeout(watchdog);
  process.exit(1);
}
