#!/usr/bin/env node
// The JavaScript side of the test suite, against a running server that has the
// demo seeded (tests/tests/api/scripts.rs starts one and runs this):
//
//   node tests/browser/run.mjs BASE_URL [--no-browser]
//
// Environment: WAYFINDER_API_KEY (a key of the demo org: required),
// WAYFINDER_WIDGET_ID (default: read from BASE_URL/demo).
//
// Checks, in order:
// 1. the checked-in chat.min.js / widget.min.js / tour.min.js are what their sources build
//    to, and within budget;
// 2. the SDK's tests and every client example, run as a user would;
// 3. (unless --no-browser) headless Chromium (Debian's /usr/bin/chromium,
//    driven by playwright-core) on the demo page, a page with hostile CSS, the
//    embed example, a page on an origin the widget doesn't allow, and a phone
//    screen; tour.js's flows on the demo page; recorder.js recording a login-only page
//    of a customer's app. Screenshots go to tests/artifacts/.
//
// Needs `npm ci` in tests/browser. Prints "N passed, N failed" last and exits
// non-zero on any failure.
import { spawn, spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdir, readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, "../..");
const artifacts = join(repo, "tests/artifacts");
const args = process.argv.slice(2);
const base = (args.find((a) => !a.startsWith("--")) ?? "").replace(/\/+$/, "");
const withBrowser = !args.includes("--no-browser");
const apiKey = process.env.WAYFINDER_API_KEY;
if (!base || !apiKey) {
  console.error("usage: WAYFINDER_API_KEY=… node tests/browser/run.mjs BASE_URL [--no-browser]");
  process.exit(2);
}

const results = [];
async function check(name, fn) {
  const started = Date.now();
  try {
    await fn();
    results.push(true);
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (err) {
    results.push(false);
    console.log(`FAIL ${name}\n     ${String(err?.stack ?? err).replaceAll("\n", "\n     ")}`);
  }
}

async function gql(query, variables = {}, headers = {}) {
  const response = await fetch(`${base}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": apiKey, ...headers },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  if (body.errors) throw new Error(JSON.stringify(body.errors));
  return body.data;
}

/** Runs a command; resolves its stdout, rejects with its output on failure or timeout. */
function run(cmd, argv, { env = {}, timeoutMs = 60_000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, {
      cwd: repo,
      env: { ...process.env, NODE_PATH: join(here, "node_modules"), ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${cmd} ${argv.join(" ")} exited ${code ?? signal}:\n${out}`));
    });
  });
}

const widgetId =
  process.env.WAYFINDER_WIDGET_ID ??
  (await (await fetch(`${base}/demo`)).text()).match(/data-widget-id="([0-9a-f-]{36})"/)?.[1];
assert.ok(widgetId, "no demo widget: start the server on an empty database with the demo");

// ---- 1. the minified scripts
await check("chat.min.js, widget.min.js, tour.min.js and recorder.min.js are built from their sources, within budget", async () => {
  await run("node", [join(repo, "api/assets/build.mjs"), "--check"]);
});

// ---- 2. the SDK and the client examples
const exampleEnv = { WAYFINDER_URL: base, WAYFINDER_WIDGET_ID: widgetId, WAYFINDER_API_KEY: apiKey };
await check("SDK: node --test client-examples/sdk/test/", async () => {
  const out = await run("node", ["--test", "client-examples/sdk/test/"], { env: exampleEnv });
  assert.match(out, /# fail 0/);
});
await check("example: curl/rest.sh", async () => {
  const out = await run("bash", ["client-examples/curl/rest.sh", widgetId, base]);
  assert.match(out, /"reply":"/);
  assert.match(out, /"ok":true/);
});
await check("example: curl/graphql.sh", async () => {
  const out = await run("bash", ["client-examples/curl/graphql.sh", widgetId, base]);
  assert.match(out, /"personaName"/);
  assert.match(out, /"sendMessage":\{"status":"ANSWERED"/);
  assert.match(out, /"submitFeedback":\{"ok":true\}/);
});
await check("example: curl/dashboard.sh", async () => {
  const out = await run("bash", ["client-examples/curl/dashboard.sh", apiKey, base]);
  assert.match(out, /"org":\{/);
  assert.doesNotMatch(out, /"errors"/);
});
await check("example: node/subscribe.mjs (graphql-ws subscriber)", async () => {
  const out = await run("node", ["client-examples/node/subscribe.mjs", widgetId, base]);
  assert.match(out, /#1 ANALYZING/);
  assert.match(out, /\[source\]/);
  assert.match(out, /COMPLETED/);
  assert.match(out, /sessionId=/);
});
// The demo widget's identity secret: rotated here, since it is shown only once.
const identitySecret = (
  await gql(`mutation($id: UUID!) { rotateChatWidgetIdentitySecret(id: $id) { identitySecret } }`, { id: widgetId })
).rotateChatWidgetIdentitySecret.identitySecret;
const identifiedUser = async (userId) =>
  (await gql(`query($u: String!) { endUsers(filter: {userId: $u}) { nodes { userId identified traits } } }`, { u: userId }))
    .endUsers.nodes[0];
await check("example: identity/hash.mjs and hash.py sign a user id the server verifies", async () => {
  const userId = `example-${randomUUID()}`;
  const env = { WAYFINDER_IDENTITY_SECRET: identitySecret };
  const hash = (await run("node", ["client-examples/identity/hash.mjs", userId], { env })).trim();
  assert.match(hash, /^[0-9a-f]{64}$/);
  if (spawnSync("python3", ["--version"]).status === 0) {
    assert.equal((await run("python3", ["client-examples/identity/hash.py", userId], { env })).trim(), hash);
  } else {
    console.log("     (no python3: hash.py not run)");
  }
  const r = await fetch(`${base}/widgets/${widgetId}/chat`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ message: "How do I install the chat widget?", userId, userHash: hash, traits: { plan: "pro" } }),
  });
  assert.equal(r.status, 200);
  const user = await identifiedUser(userId);
  assert.equal(user?.identified, true);
  assert.equal(user.traits.plan, "pro");
});
await check("example: node/dashboard.mjs (sessions and tickets)", async () => {
  const out = await run("node", ["client-examples/node/dashboard.mjs", apiKey, base]);
  assert.match(out, /chat sessions \([1-9]/);
  assert.match(out, /CONTACT_FORM/, "rest.sh's contact request is a ticket");
});

// ---- 3. in the browser
if (withBrowser) {
  const { chromium } = await import("playwright-core");
  await mkdir(artifacts, { recursive: true });

  // Pages on other origins: the embed example and the hostile page (allowed
  // origin), and the embed example again on an origin the widget doesn't list.
  const serve = () =>
    new Promise((resolve) => {
      const server = createServer(async (req, res) => {
        const path = new URL(req.url, "http://x").pathname;
        const file = path.startsWith("/app/")
          ? "tests/browser/tour-app.html"
          : { "/embed": "client-examples/embed/index.html", "/hostile": "tests/browser/hostile.html" }[path];
        if (!file) return res.writeHead(404).end();
        const html = (await readFile(join(repo, file), "utf8"))
          .replaceAll("http://127.0.0.1:8080", base)
          .replaceAll("{{BASE}}", base)
          .replaceAll("{{WIDGET_ID}}", widgetId)
          .replaceAll("WIDGET_ID", widgetId);
        res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(html);
      });
      server.listen(0, "127.0.0.1", () => resolve(server));
    });
  const allowedServer = await serve();
  const foreignServer = await serve();
  const allowed = `http://127.0.0.1:${allowedServer.address().port}`;
  const foreign = `http://127.0.0.1:${foreignServer.address().port}`;
  await gql(`mutation($i: UpdateChatWidgetInput!) { updateChatWidget(input: $i) { id } }`, {
    i: { id: widgetId, allowedOrigins: [base, allowed] },
  });

  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  // launch() gives each context a fresh, empty profile (its own --user-data-dir).
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  context.setDefaultTimeout(20_000);
  const pageErrors = [];
  const open = async (url, ctx = context) => {
    const page = await ctx.newPage();
    page.on("pageerror", (err) => pageErrors.push(`${url}: ${err.message}`));
    await page.goto(url);
    return page;
  };
  const storedSession = (page) =>
    page.evaluate((key) => JSON.parse(localStorage.getItem(key) || "{}"), `wayfinder:${widgetId}`);

  let demo;
  const frames = [];
  const question = "How do I install the chat widget?";
  await check("demo page: the bubble opens an accessible dialog with the greeting", async () => {
    demo = await open(`${base}/demo`);
    demo.on("websocket", (ws) => ws.on("framereceived", (f) => frames.push(String(f.payload))));
    const bubble = demo.locator("button.b");
    assert.equal(await bubble.getAttribute("aria-expanded"), "false");
    await bubble.click();
    const dialog = demo.getByRole("dialog");
    await dialog.waitFor();
    assert.equal(await bubble.getAttribute("aria-expanded"), "true");
    assert.equal(await dialog.getAttribute("aria-modal"), "true");
    await demo.getByRole("log").getByText("Wayfinder Guide").first().waitFor();
    assert.equal(await demo.locator("#t").textContent(), "Wayfinder Guide");
  });

  await check("demo page: a question streams an answer with a citation link", async () => {
    // Record every status line the panel shows.
    await demo.evaluate(() => {
      const host = [...document.documentElement.children].find((e) => e.shadowRoot);
      const status = host.shadowRoot.querySelector("[role=status]");
      window.__statuses = [];
      new MutationObserver(() => window.__statuses.push(status.textContent)).observe(status, {
        childList: true,
        characterData: true,
        subtree: true,
      });
    });
    const input = demo.getByRole("dialog").getByRole("textbox", { name: "Message" });
    assert.ok(await input.evaluate((el) => el.getRootNode().activeElement === el), "the message box has focus");
    await input.fill(question);
    await input.press("Enter");
    await demo.locator(".m.u", { hasText: question }).waitFor();
    const link = demo.locator('.l a[href^="#wayfinder-article-"]').first();
    await link.waitFor();
    assert.match(await link.textContent(), /\S/);
    const statuses = await demo.evaluate(() => window.__statuses);
    assert.ok(statuses.includes("Looking that up…"), `status line showed ${JSON.stringify(statuses)}`);
    const kinds = frames.map((f) => JSON.parse(f)?.payload?.data?.chatTurn?.status).filter(Boolean);
    const firstDelta = kinds.indexOf("ANSWER_DELTA");
    assert.ok(firstDelta >= 0 && firstDelta < kinds.indexOf("ANSWERED"), `streamed before the answer: ${kinds}`);
    assert.ok(kinds.includes("COMPLETED"));
    const answer = await demo.locator(".m:not(.u)").last().textContent();
    assert.ok(answer.length > 40, `answer: ${answer}`);
  });

  await check("demo page: screenshot of the open panel", async () => {
    await demo.screenshot({ path: join(artifacts, "chat-panel.png") });
  });

  await check("demo page: an up-vote is stored", async () => {
    await demo.getByRole("button", { name: "Yes" }).last().click();
    await demo.getByText("Thanks!").waitFor();
    const { feedback } = await gql(`{ feedback(first: 100) { nodes { vote } } }`);
    assert.ok(feedback.nodes.some((f) => f.vote === "UP"));
  });

  await check("demo page: keyboard — Tab stays in the panel, Escape closes and returns focus", async () => {
    const focused = () => demo.evaluate(() => {
      const host = [...document.documentElement.children].find((e) => e.shadowRoot);
      const el = host.shadowRoot.activeElement;
      return el && (el.getAttribute("aria-label") || el.textContent || el.tagName);
    });
    await demo.getByRole("dialog").getByRole("button", { name: "Send" }).focus();
    await demo.keyboard.press("Tab");
    assert.equal(await focused(), "Close chat", "Tab from the last control wraps to the first");
    await demo.keyboard.press("Shift+Tab");
    assert.equal(await focused(), "Send", "Shift+Tab from the first wraps to the last");
    await demo.keyboard.press("Escape");
    assert.equal(await demo.getByRole("dialog").count(), 0, "Escape closes the panel");
    assert.equal(await focused(), "Open chat");
    await demo.keyboard.press("Enter");
    await demo.getByRole("dialog").waitFor();
  });

  await check("demo page: after a reload the conversation continues", async () => {
    const before = await storedSession(demo);
    assert.ok(before.t && before.s, "the session token is kept in localStorage");
    await demo.reload();
    await demo.locator("button.b").click();
    // The earlier exchange is replayed from the session's events.
    await demo.locator(".m.u", { hasText: question }).waitFor();
    await demo.locator('.l a[href^="#wayfinder-article-"]').first().waitFor();
    const input = demo.getByRole("dialog").getByRole("textbox", { name: "Message" });
    await input.fill("What about API keys?");
    await input.press("Enter");
    await demo.locator(".m.u", { hasText: "What about API keys?" }).waitFor();
    await demo.getByRole("button", { name: "Yes" }).nth(1).waitFor();
    const after = await storedSession(demo);
    assert.equal(after.s, before.s, "same session after the reload");
    assert.equal((await demo.locator(".m.u").count()), 2);
  });

  await check("demo page: the contact form opens a ticket", async () => {
    const email = `visitor-${Date.now()}@example.com`;
    const form = demo.locator("form[novalidate]");
    await form.locator("input[name=name]").fill("Grace Visitor");
    await form.locator("input[name=email]").fill(email);
    await form.locator("textarea[name=message]").fill("I'd like a demo for my team.");
    const { widgetConfig } = await gql(`query($w: UUID!) { widgetConfig(widgetId: $w) { contactMinFillMs } }`, { w: widgetId });
    await demo.waitForTimeout(widgetConfig.contactMinFillMs + 300);
    await form.getByRole("button", { name: "Send" }).click();
    await demo.getByText("Thanks for your message").waitFor();
    const { supportTickets } = await gql(`{ supportTickets(first: 100) { nodes { email source name } } }`);
    const ticket = supportTickets.nodes.find((t) => t.email === email);
    assert.ok(ticket, "the ticket is listed");
    assert.equal(ticket.source, "CONTACT_FORM");
    assert.equal(ticket.name, "Grace Visitor");
  });

  await check("hostile CSS and a throwing localStorage: the widget still renders and answers", async () => {
    const page = await open(`${allowed}/hostile`);
    const bubble = page.locator("button.b");
    await bubble.waitFor();
    const box = await bubble.boundingBox();
    assert.ok(box && box.width >= 40 && box.height >= 40, `bubble box ${JSON.stringify(box)}`);
    await bubble.click();
    const dialog = page.getByRole("dialog");
    await dialog.waitFor();
    const panel = await dialog.boundingBox();
    assert.ok(panel.width > 300 && panel.height > 300, `panel box ${JSON.stringify(panel)}`);
    const input = page.getByRole("textbox", { name: "Message" });
    await input.fill("What is Wayfinder?");
    await input.press("Enter");
    await page.locator('.l a[href^="#wayfinder-article-"]').first().waitFor();
    await page.screenshot({ path: join(artifacts, "chat-panel-hostile.png") });
    await page.close();
  });

  await check("embed example: both scripts render on an allowed origin", async () => {
    const page = await open(`${allowed}/embed`);
    await page.locator("button.b").click();
    await page.getByRole("log").getByText("Wayfinder Guide").first().waitFor();
    await page.locator("form[novalidate] input[name=email]").waitFor();
    assert.equal(await page.locator("form[novalidate] button").isDisabled(), false, "the form has its challenge");
    await page.close();
  });

  await check("an origin the widget doesn't allow is refused, without breaking the page", async () => {
    const page = await open(`${foreign}/embed`);
    await page.locator("button.b").click();
    await page.getByText(/may not be used from/).first().waitFor();
    await page.locator("[role=alert]", { hasText: /may not be used from/ }).waitFor();
    await page.close();
  });

  await check("phone screen: the open panel fills the screen", async () => {
    const phone = await browser.newContext({ viewport: { width: 375, height: 700 }, isMobile: true, hasTouch: true });
    const page = await open(`${base}/demo`, phone);
    await page.locator("button.b").click();
    const box = await page.getByRole("dialog").boundingBox();
    const rounded = [box.x, box.y, box.width, box.height].map(Math.round);
    assert.deepEqual(rounded, [0, 0, 375, 700], `panel box ${JSON.stringify(box)}`);
    await page.screenshot({ path: join(artifacts, "chat-panel-phone.png") });
    await phone.close();
  });

  await check("hand-off: the offered button asks for an email and opens a ticket", async () => {
    const { bots } = await gql(`{ bots(first: 10) { nodes { id name } } }`);
    const bot = bots.nodes.find((b) => b.name === "Demo bot") ?? bots.nodes[0];
    await gql(`mutation($i: UpdateBotInput!) { updateBot(input: $i) { id } }`, { i: { id: bot.id, fallbackToHuman: true } });
    try {
      const input = demo.getByRole("dialog").getByRole("textbox", { name: "Message" });
      await input.fill("zyxwvut qqqqqq");
      await input.press("Enter");
      const handoff = demo.getByRole("button", { name: "Talk to a person" });
      await handoff.click();
      assert.equal(await input.getAttribute("type"), "email");
      const email = `handoff-${Date.now()}@example.com`;
      await input.fill(email);
      await input.press("Enter");
      // The bot's hand-off message answers; the box asks questions again.
      await demo.getByRole("log").getByText("passed your question to our team").waitFor();
      assert.notEqual(await input.getAttribute("type"), "email");
      const { supportTickets } = await gql(`{ supportTickets(first: 100) { nodes { email source } } }`);
      assert.ok(
        supportTickets.nodes.some((t) => t.email === email && t.source === "HANDOFF"),
        JSON.stringify(supportTickets.nodes),
      );
    } finally {
      await gql(`mutation($i: UpdateBotInput!) { updateBot(input: $i) { id } }`, { i: { id: bot.id, fallbackToHuman: false } }).catch(
        (err) => console.log(`     (could not reset the demo bot: ${err.message})`),
      );
    }
  });

  // Scripts the chat's turns (startTurn over HTTP, chatTurn over the websocket)
  // so that each answer carries `content()`: the widget tested alone.
  const scriptTurns = async (page, content) => {
    await page.route(`${base}/graphql`, (route) => {
      const body = route.request().postData() ?? "";
      if (!body.includes("startTurn")) return route.fallback();
      return route.fulfill({
        json: { data: { startTurn: { turnId: crypto.randomUUID(), sessionId: crypto.randomUUID(), sessionToken: "t" } } },
      });
    });
    await page.routeWebSocket(`${base.replace(/^http/, "ws")}/graphql`, (ws) => {
      ws.onMessage((raw) => {
        const m = JSON.parse(String(raw));
        if (m.type === "connection_init") ws.send(JSON.stringify({ type: "connection_ack" }));
        if (m.type !== "subscribe") return;
        const turnId = m.payload.variables.i;
        const event = (seq, status, extra = {}) =>
          ws.send(JSON.stringify({
            id: m.id,
            type: "next",
            payload: { data: { chatTurn: {
              seq, turnId, status, text: "", delta: null, messageId: crypto.randomUUID(), handoffOffered: false,
              navigateTo: null, citations: [], content: null, ...extra,
            } } },
          }));
        event(1, "ANALYZING", { text: "show me how to create a report" });
        event(2, "MATCHED_CONTENT", { text: "Here is a walkthrough: Create a report.", content: content() });
        event(3, "COMPLETED");
        ws.send(JSON.stringify({ id: m.id, type: "complete" }));
      });
    });
  };
  const askForWalkthrough = async (page) => {
    const input = page.getByRole("dialog").getByRole("textbox", { name: "Message" });
    await input.fill("show me how to create a report");
    await input.press("Enter");
    await page.getByRole("button", { name: "Start walkthrough", exact: true }).click();
  };
  const contentId = "0192f5d2-0000-7000-8000-000000000001";

  await check("walkthrough pill: dispatches wayfinder:content, tour.js shows it, navigates to another start page", async () => {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    page.on("pageerror", (err) => pageErrors.push(`pill: ${err.message}`));
    let startUrl = `${base}/demo`;
    await scriptTurns(page, () => ({
      kind: "FLOW",
      id: contentId,
      startUrl,
      steps: [{
        pageUrl: startUrl, targetSelector: "#create-report", title: "Create a report", body: "Start here.", placement: "BOTTOM",
        locators: [{ kind: "ID", value: "#create-report" }],
      }],
    }));
    await page.goto(`${base}/demo`);
    await page.evaluate(() => window.addEventListener("wayfinder:content", (e) => (window.__content = e.detail)));
    await page.locator("button.b").click();
    await askForWalkthrough(page);
    const detail = await page.evaluate(() => window.__content);
    assert.equal(detail.kind, "FLOW");
    assert.equal(detail.steps[0].targetSelector, "#create-report");
    // tour.js (on the demo page) shows the step.
    await page.getByRole("dialog", { name: "Create a report" }).waitFor();
    await page.getByRole("button", { name: "↻ Restart walkthrough" }).waitFor();
    await page.getByRole("button", { name: "Close tour" }).click();
    assert.equal(await page.getByRole("dialog", { name: "Create a report" }).count(), 0);

    startUrl = `${allowed}/embed`;
    const input = page.getByRole("dialog").getByRole("textbox", { name: "Message" });
    await input.fill("show me how to create a report");
    await input.press("Enter");
    await page.getByRole("button", { name: "Start walkthrough", exact: true }).click();
    await page.waitForURL(`${allowed}/embed`);
    await ctx.close();
  });

  await check("walkthrough pill: chat.js loads tour.js only when a walkthrough starts", async () => {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    page.on("pageerror", (err) => pageErrors.push(`lazy tour: ${err.message}`));
    const loaded = [];
    page.on("request", (r) => r.url().includes("/tour.js") && loaded.push(r.url()));
    await scriptTurns(page, () => ({
      kind: "TOOLTIP",
      id: contentId,
      startUrl: `${allowed}/embed`,
      steps: [{ pageUrl: `${allowed}/embed`, targetSelector: "h1", title: "Your product", body: "This is it.", placement: "RIGHT" }],
    }));
    await page.goto(`${allowed}/embed`);
    await page.locator("button.b").click();
    await page.getByRole("log").getByText("Wayfinder Guide").first().waitFor();
    assert.deepEqual(loaded, [], "tour.js is not loaded with the bubble");
    await askForWalkthrough(page);
    const tip = page.getByRole("dialog", { name: "Your product" });
    await tip.waitFor();
    assert.deepEqual(loaded, [`${base}/tour.js`]);
    assert.equal(await tip.getByRole("button", { name: "Done" }).count(), 1, "one step: Done");
    await tip.getByRole("button", { name: "Done" }).click();
    await tip.waitFor({ state: "detached" });
    await ctx.close();
  });

  // ---- tour.js on its own, through `wayfinder.flows.start`
  const tourPage = async (ctx = context, url = `${base}/demo`) => {
    const page = await open(url, ctx);
    await page.waitForFunction(() => window.wayfinder?.flows?.start);
    await page.evaluate(() => {
      window.__tour = [];
      for (const t of ["started", "step", "completed", "dismissed", "target-missing"])
        window.addEventListener(`wayfinder:flow-${t}`, (e) => window.__tour.push([t, e.detail.step, e.detail.locators?.length]));
    });
    return page;
  };
  const tourEvents = (page) => page.evaluate(() => window.__tour.map((e) => e.filter((x) => x !== undefined).join(":")));
  // What has focus inside tour.js's shadow root.
  const tourFocus = (page) =>
    page.evaluate(() => {
      const el = document.activeElement?.shadowRoot?.activeElement;
      return el && (el.getAttribute("aria-label") || (el.getAttribute("role") === "dialog" ? "dialog" : el.textContent));
    });
  // Whether the highlight comes to sit around the element (it glides there), within 2 s.
  const ringOn = (page, selector) =>
    page
      .waitForFunction(
        (selector) => {
          const host = [...document.documentElement.children].find((h) => h.shadowRoot?.querySelector(".r"));
          const ring = host?.shadowRoot.querySelector(".r").getBoundingClientRect();
          const el = document.querySelector(selector)?.getBoundingClientRect();
          return ring && el && Math.max(Math.abs(ring.left + 6 - el.left), Math.abs(ring.top + 6 - el.top), Math.abs(ring.width - 12 - el.width)) < 2;
        },
        selector,
        { timeout: 2000 },
      )
      .then(() => true, () => false);
  const demoFlow = {
    kind: "FLOW",
    id: contentId,
    steps: [
      {
        // The best locator broke; the role + name one still matches.
        title: "Create a report", body: "Everything starts here.", placement: "BOTTOM", targetSelector: "#create-report-old",
        locators: [{ kind: "TEST_ID", value: '[data-testid="create"]' }, { kind: "ROLE", value: 'role=button[name="Create a report"]' }],
      },
      { title: "Pricing", body: "Plans and prices.", placement: "LEFT", targetSelector: "", locators: [{ kind: "TEXT", value: 'text="Pricing"' }] },
      { title: "Sharing", body: "Invite your team.", placement: "TOP", targetSelector: "#sharing" },
    ],
  };

  await check("tour.js: a three-step flow over the demo page, by keyboard and mouse", async () => {
    const page = await tourPage();
    assert.equal(await page.evaluate((f) => window.wayfinder.flows.start(f), demoFlow), true);
    const step1 = page.getByRole("dialog", { name: "Create a report" });
    await step1.waitFor();
    await step1.getByText("Step 1 of 3").waitFor();
    assert.equal(await tourFocus(page), "dialog", "focus moves to the popover");
    assert.ok(await ringOn(page, "#create-report"), "the highlight is around the button");
    assert.equal(await step1.getByRole("button", { name: "Back" }).count(), 0, "no Back on the first step");
    // Keyboard: Tab reaches Next, Enter goes on.
    await page.keyboard.press("Tab");
    assert.equal(await tourFocus(page), "Next");
    await page.keyboard.press("Enter");
    const step2 = page.getByRole("dialog", { name: "Pricing" });
    await step2.getByText("Step 2 of 3").waitFor();
    assert.ok(await ringOn(page, "#pricing-link"), "found by its text");
    // Tab stays inside: Back, Next, Close, then Back again; Shift+Tab wraps back.
    for (const want of ["Back", "Next", "Close tour", "Back"]) {
      await page.keyboard.press("Tab");
      assert.equal(await tourFocus(page), want);
    }
    await page.keyboard.press("Shift+Tab");
    assert.equal(await tourFocus(page), "Close tour");
    // Mouse: Back, then Next twice.
    await step2.getByRole("button", { name: "Back" }).click();
    await step1.waitFor();
    await step1.getByRole("button", { name: "Next" }).click();
    await step2.getByRole("button", { name: "Next" }).click();
    const step3 = page.getByRole("dialog", { name: "Sharing" });
    await step3.getByText("Step 3 of 3").waitFor();
    // The popover sits on screen, not over its element.
    const pop = await step3.boundingBox();
    const target = await page.locator("#sharing").boundingBox();
    assert.ok(pop.y >= 0 && pop.y + pop.height <= 800, `popover ${JSON.stringify(pop)}`);
    assert.ok(pop.y + pop.height <= target.y || pop.y >= target.y + target.height, "beside the element, not over it");
    await page.screenshot({ path: join(artifacts, "tour-step.png") });
    // Following scroll: the highlight stays on the element.
    await page.mouse.wheel(0, 120);
    await page.waitForTimeout(200);
    assert.ok(await ringOn(page, "#sharing"), "the highlight follows the scroll");
    await step3.getByRole("button", { name: "Done" }).focus();
    await page.keyboard.press("Enter");
    await step3.waitFor({ state: "detached" });
    assert.deepEqual(await tourEvents(page), [
      "started:0", "step:0", "step:1", "step:0", "step:1", "step:2", "completed:2",
    ]);
    // Escape ends a flow: dismissed at the step it was on.
    await page.evaluate((f) => window.wayfinder.flows.start(f), demoFlow);
    await step1.waitFor();
    await page.keyboard.press("Escape");
    await step1.waitFor({ state: "detached" });
    assert.deepEqual((await tourEvents(page)).slice(-1), ["dismissed:0"]);
    // start(id): content shown before on this page.
    assert.equal(await page.evaluate((id) => window.wayfinder.flows.start(id), contentId), true);
    await step1.waitFor();
    await page.evaluate(() => window.wayfinder.flows.end());
    await step1.waitFor({ state: "detached" });
    assert.equal(await page.evaluate(() => window.wayfinder.flows.start("unknown")), false);
    await page.close();
  });

  await check("tour.js: a late element is waited for, a re-rendered one found again, a missing one skipped and reported", async () => {
    const page = await tourPage();
    const started = Date.now();
    await page.evaluate(() => {
      setTimeout(() => {
        const b = Object.assign(document.createElement("button"), { id: "late", textContent: "Late button" });
        document.querySelector(".hero").append(b);
      }, 1000);
      window.wayfinder.flows.start({
        id: "late-flow",
        timeoutMs: 2500,
        steps: [
          { title: "Late", body: "It came.", targetSelector: "#late", placement: "BOTTOM" },
          { title: "Never", body: "Not there.", targetSelector: "#never", locators: [{ kind: "TEST_ID", value: '[data-testid="never"]' }] },
          { title: "Moves", body: "Re-rendered.", targetSelector: "#create-report", placement: "BOTTOM" },
        ],
      });
    });
    await page.getByRole("dialog", { name: "Late" }).waitFor();
    assert.ok(Date.now() - started >= 900, "shown once the element came");
    assert.ok(await ringOn(page, "#late"));
    await page.getByRole("button", { name: "Next" }).click();
    const moves = page.getByRole("dialog", { name: "Moves" });
    await moves.waitFor({ timeout: 6000 });
    assert.deepEqual((await tourEvents(page)).slice(-2), ["target-missing:1:2", "step:2"], "the missing step is reported and skipped");
    // The app re-renders the button elsewhere: the highlight follows the new one.
    await page.evaluate(() => {
      const old = document.querySelector("#create-report");
      const fresh = old.cloneNode(true);
      old.remove();
      document.querySelector("#contact").before(fresh);
    });
    await page.waitForTimeout(300);
    assert.ok(await ringOn(page, "#create-report"), "the highlight is on the re-rendered button");
    await moves.getByRole("button", { name: "Done" }).click();
    // missing: "END" ends the flow at a missing element instead.
    await page.evaluate(() =>
      window.wayfinder.flows.start({ id: "ends", missing: "END", timeoutMs: 500, steps: [{ title: "Gone", targetSelector: "#never" }, { title: "After", targetSelector: "h1" }] }),
    );
    await page.waitForFunction(() => window.__tour.some((e) => e[0] === "dismissed"));
    assert.deepEqual((await tourEvents(page)).slice(-3), ["started:0", "target-missing:0:1", "dismissed:0"]);
    assert.equal(await page.getByRole("dialog", { name: "After" }).count(), 0);
    await page.close();
  });

  await check("tour.js: on a phone screen the popover fits and stays readable", async () => {
    const phone = await browser.newContext({ viewport: { width: 375, height: 700 }, isMobile: true, hasTouch: true });
    const page = await tourPage(phone);
    await page.evaluate((f) => window.wayfinder.flows.start(f), { ...demoFlow, steps: demoFlow.steps.slice(1) });
    const pop = page.getByRole("dialog", { name: "Pricing" });
    await pop.waitFor();
    const box = await pop.boundingBox();
    assert.ok(box.x >= 0 && box.x + box.width <= 375 && box.width >= 300, `popover ${JSON.stringify(box)}`);
    await page.screenshot({ path: join(artifacts, "tour-phone.png") });
    await phone.close();
  });

  // ---- tour.js with the server: auto-start, across pages and routes, reports and the funnel
  await check("tour.js: an auto-started flow runs once, across a page load and an SPA route, by keyboard; the funnel shows it", async () => {
    const { sites } = await gql("{ sites { nodes { id } } }");
    const app = (p) => `${allowed}/app/${p}`;
    const { createFlow } = await gql(
      `mutation($i: CreateFlowInput!) { createFlow(input: $i) { id } }`,
      {
        i: {
          name: "Across pages",
          siteId: sites.nodes[0].id,
          status: "PUBLISHED",
          autoStart: "/app/one",
          steps: [
            { pageUrl: app("one"), targetSelector: "#start-here", title: "Start", body: "Here it begins.", placement: "BOTTOM" },
            {
              pageUrl: app("two"), targetSelector: "#gone", title: "Save it", body: "On the next page.", placement: "BOTTOM",
              locators: [{ kind: "TEST_ID", value: '[data-testid="save"]' }],
            },
            { pageUrl: app("three"), targetSelector: "#finish", title: "Finish", body: "The app takes you there.", placement: "TOP", waitForNavigation: true },
          ],
        },
      },
    );
    const flowId = createFlow.id;
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    page.on("pageerror", (err) => pageErrors.push(`tour app: ${err.message}`));
    const hosts = () => page.evaluate(() => [...document.documentElement.children].filter((h) => h.shadowRoot?.querySelector(".r")).length);
    await page.goto(app("one"));
    // Started by itself (visitPage), on the first step.
    const step1 = page.getByRole("dialog", { name: "Start" });
    await step1.waitFor();
    await step1.getByText("Step 1 of 3").waitFor();
    // Next, by keyboard: the second step is on another page, so tour.js goes there.
    await page.keyboard.press("Tab");
    await page.keyboard.press("Enter");
    await page.waitForURL(app("two"));
    const step2 = page.getByRole("dialog", { name: "Save it" });
    await step2.getByText("Step 2 of 3").waitFor();
    assert.equal(await hosts(), 1, "one run on the page");
    // The third waits for the app's own navigation (an SPA route), then carries on.
    await page.keyboard.press("Tab");
    await page.keyboard.press("Tab");
    await page.keyboard.press("Enter");
    await page.waitForTimeout(400);
    assert.equal(page.url(), app("two"), "tour.js does not navigate a waiting step");
    assert.equal(await page.getByRole("dialog", { name: "Finish" }).count(), 0);
    await page.locator("#spa-three").click();
    const step3 = page.getByRole("dialog", { name: "Finish" });
    await step3.getByText("Step 3 of 3").waitFor();
    assert.ok(await ringOn(page, "#finish"), "found after the route rendered");
    await page.keyboard.press("Tab");
    await page.keyboard.press("Tab");
    await page.keyboard.press("Enter");
    await step3.waitFor({ state: "detached" });
    // Once per visitor: the page again starts nothing.
    await page.goto(app("one"));
    await page.waitForTimeout(1500);
    assert.equal(await step1.count(), 0, "auto-started once");
    // The server saw exactly that.
    let funnel;
    for (let i = 0; i < 50; i++) {
      ({ tourFunnel: funnel } = await gql(
        `query($c: UUID!) { tourFunnel(contentId: $c) { started autoStarted completed dismissed targetMissing steps { reached } } }`,
        { c: flowId },
      ));
      if (funnel.completed) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.deepEqual(funnel, {
      started: 1, autoStarted: 1, completed: 1, dismissed: 0, targetMissing: 0,
      steps: [{ reached: 1 }, { reached: 1 }, { reached: 1 }],
    });
    const { tourRuns } = await gql(`query($c: UUID!) { tourRuns(filter: {contentId: $c}) { nodes { trigger status stepsSeen pageUrl } } }`, { c: flowId });
    assert.deepEqual(tourRuns.nodes, [{ trigger: "AUTO", status: "COMPLETED", stepsSeen: [0, 1, 2], pageUrl: app("three") }]);
    // Unpublished for the next checks.
    await gql(`mutation($i: UpdateFlowInput!) { updateFlow(input: $i) { id } }`, { i: { id: flowId, autoStart: "" } });
    await ctx.close();
  });

  await check("tour.js: a run started on one page carries on after a full load and a pushState route; a missing target is reported", async () => {
    const app = (p) => `${allowed}/app/${p}`;
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    page.on("pageerror", (err) => pageErrors.push(`tour app 2: ${err.message}`));
    await page.goto(app("one"));
    await page.waitForFunction(() => window.wayfinder?.flows?.start);
    const steps = [
      { pageUrl: app("one"), targetSelector: "#start-here", title: "A", body: "", placement: "BOTTOM" },
      { pageUrl: app("one"), targetSelector: "#never", title: "Missing", body: "", placement: "BOTTOM" },
      { pageUrl: app("two"), targetSelector: '[data-testid="save"]', title: "B", body: "", placement: "BOTTOM" },
      { pageUrl: app("three"), targetSelector: "#finish", title: "C", body: "", placement: "BOTTOM" },
    ];
    const { sites } = await gql("{ sites { nodes { id } } }");
    const { createFlow } = await gql(`mutation($i: CreateFlowInput!) { createFlow(input: $i) { id } }`, {
      i: { name: "Started by the SDK", siteId: sites.nodes[0].id, status: "PUBLISHED", steps },
    });
    const flow = { id: createFlow.id, timeoutMs: 800, steps };
    await page.evaluate((f) => {
      window.__missing = [];
      addEventListener("wayfinder:flow-target-missing", (e) => window.__missing.push(e.detail.step));
      window.wayfinder.flows.start(f);
    }, flow);
    await page.getByRole("dialog", { name: "A" }).waitFor();
    await page.getByRole("button", { name: "Next" }).click();
    // The missing step is skipped: on to the next page.
    await page.waitForURL(app("two"));
    await page.getByRole("dialog", { name: "B" }).waitFor();
    // The visitor takes the app's SPA route to the next step's page: it moves on there.
    await page.locator("#spa-three").click();
    await page.getByRole("dialog", { name: "C" }).waitFor();
    // Back goes to the previous page again.
    await page.getByRole("button", { name: "Back" }).click();
    await page.waitForURL(app("two"));
    await page.getByRole("dialog", { name: "B" }).waitFor();
    // In another tab of the same visitor nothing carries on (sessionStorage is per tab).
    const other = await ctx.newPage();
    await other.goto(app("two"));
    await other.waitForFunction(() => window.wayfinder?.flows?.start);
    await other.waitForTimeout(500);
    assert.equal(await other.getByRole("dialog").count(), 0);
    await page.keyboard.press("Escape");
    await page.getByRole("dialog", { name: "B" }).waitFor({ state: "detached" });
    await page.reload();
    await page.waitForFunction(() => window.wayfinder?.flows?.start);
    await page.waitForTimeout(500);
    assert.equal(await page.getByRole("dialog").count(), 0, "an ended run does not come back");
    // What the server stored: one manual run, the missing step, dismissed at B.
    let run;
    for (let i = 0; i < 50 && run?.status !== "DISMISSED"; i++) {
      const { tourRuns } = await gql(
        `query($c: UUID!) { tourRuns(filter: {contentId: $c}) { nodes { trigger status stepsSeen missingSteps dismissedAtStep lastMissingLocators } } }`,
        { c: flow.id },
      );
      run = tourRuns.nodes[0];
      if (run?.status !== "DISMISSED") await new Promise((r) => setTimeout(r, 200));
    }
    assert.deepEqual(run, {
      trigger: "MANUAL", status: "DISMISSED", stepsSeen: [0, 2, 3], missingSteps: [1], dismissedAtStep: 2, lastMissingLocators: ["#never"],
    });
    await ctx.close();
  });

  await check("rate limited: the widget shows a friendly line, never an error page", async () => {
    // The server's 429 (the Rust tests check it is sent); here the widget's handling of it.
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    page.on("pageerror", (err) => pageErrors.push(`limited: ${err.message}`));
    const line = "You are going a little fast: please try again in 12 s.";
    await page.route(`${base}/graphql`, (route) => {
      const body = route.request().postData() ?? "";
      if (!body.includes("startTurn")) return route.fallback();
      return route.fulfill({
        status: 429,
        headers: { "retry-after": "12" },
        json: { errors: [{ message: line, extensions: { code: "RATE_LIMITED", retryAfter: 12 } }] },
      });
    });
    await page.goto(`${base}/demo`);
    await page.locator("button.b").click();
    const input = page.getByRole("dialog").getByRole("textbox", { name: "Message" });
    await input.fill("hello?");
    await input.press("Enter");
    await page.getByRole("dialog").getByText(line).waitFor({ timeout: 10_000 });
    assert.ok(await input.isEditable(), "the visitor can try again");
    await ctx.close();
  });

  await check("chat.js: wayfinder.identify() sends the signed user with each message", async () => {
    const ctx = await browser.newContext();
    const page = await open(`${base}/demo`, ctx);
    const userId = `browser-${randomUUID()}`;
    const userHash = (
      await run("node", ["client-examples/identity/hash.mjs", userId], { env: { WAYFINDER_IDENTITY_SECRET: identitySecret } })
    ).trim();
    await page.evaluate(
      ([userId, userHash]) => window.wayfinder.identify({ userId, userHash, traits: { plan: "enterprise", email: "ada@example.com" } }),
      [userId, userHash],
    );
    await page.locator("button.b").click();
    const input = page.getByRole("dialog").getByRole("textbox", { name: "Message" });
    await input.fill(question);
    await input.press("Enter");
    let user;
    for (let i = 0; i < 50 && !user; i++) {
      user = await identifiedUser(userId);
      if (!user) await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(user?.identified, true, "the visitor is identified");
    assert.equal(user.traits.plan, "enterprise");
    assert.equal(user.traits.email, "ada@example.com");
    // Signing out forgets the conversation: the next message is anonymous.
    await page.waitForFunction((key) => JSON.parse(localStorage.getItem(key) || "{}").t, `wayfinder:${widgetId}`);
    await page.evaluate(() => window.wayfinder.identify(null));
    assert.deepEqual(await storedSession(page), {});
    await ctx.close();
  });

  // recorder.js on a customer's app behind a login: a home page and a members-only
  // billing page whose controls only exist once its script ran.
  const appPage = (title, body) =>
    `<!doctype html><html><head><title>${title}</title></head><body>` +
    `<nav><a href="/">Home</a> <a href="/billing">Billing</a></nav><main>${body}</main>` +
    `<script src="${base}/recorder.js" async></script></body></html>`;
  const customerApp = await new Promise((resolve) => {
    const server = createServer((req, res) => {
      const path = new URL(req.url, "http://x").pathname;
      const member = (req.headers.cookie ?? "").includes("session=member");
      const html = (body) => res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(body);
      if (path === "/") return html(appPage("Acme", `<h1>Acme</h1><button data-testid="new-project">New project</button>`));
      if (path === "/login") return html(appPage("Sign in", `<form><input name="email" placeholder="Email"><button>Sign in</button></form>`));
      if (path === "/billing" && !member) return res.writeHead(302, { location: "/login" }).end();
      if (path === "/billing")
        return html(
          appPage(
            "Billing",
            `<h1>Billing</h1><div id="plans">Loading…</div><script>
            setTimeout(() => {
              const plans = document.getElementById("plans");
              plans.innerHTML = '<label>Coupon <input placeholder="Coupon code"></label>' +
                '<button id="ember1234">Apply</button><button>Download invoice</button>' +
                '<div class="row"><button class="btn">Cancel</button></div><div class="row"><button class="btn">Cancel</button></div>';
            }, 400);
            </script>`,
          ),
        );
      res.writeHead(404).end();
    });
    server.listen(0, "127.0.0.1", () => resolve(server));
  });
  const appOrigin = `http://127.0.0.1:${customerApp.address().port}`;
  const sitePages = async (id) =>
    (await gql(`query($id: UUID!) { site(id: $id) { mapVersion pages { urlPattern recorded elements { label locators { kind value } } } } }`, { id })).site;

  await check("recorder.js: a member's browser records a login-only page the crawler can't reach, with unique locators", async () => {
    const { createSite } = await gql(`mutation($u: String!) { createSite(input: {name: "Acme app", baseUrl: $u}) { id } }`, { u: appOrigin });
    const { startSiteRecording } = await gql(`mutation($s: UUID!) { startSiteRecording(siteId: $s) { startUrl } }`, { s: createSite.id });
    const ctx = await browser.newContext();
    await ctx.addCookies([{ name: "session", value: "member", url: appOrigin }]);
    const page = await open(startSiteRecording.startUrl, ctx);
    await page.waitForFunction(() => !location.hash, null, { timeout: 5000 });
    assert.ok(!page.url().includes("wayfinder-record"), "the token left the address bar");
    // The badge says so once the page is in the map.
    await page.waitForFunction(() => document.querySelector("wayfinder-recorder")?.dataset.mapVersion, null, { timeout: 10_000 });
    await page.getByRole("link", { name: "Billing" }).click();
    await page.waitForURL(`${appOrigin}/billing`);
    await page.getByRole("button", { name: "Download invoice" }).waitFor();
    let billing;
    for (let i = 0; i < 75 && !billing?.elements.some((e) => e.label === "Download invoice"); i++) {
      await page.waitForTimeout(200);
      billing = (await sitePages(createSite.id)).pages.find((p) => p.urlPattern === "/billing");
    }
    assert.ok(billing, "the billing page was recorded");
    assert.equal(billing.recorded, true);
    const labels = billing.elements.map((e) => e.label);
    for (const want of ["Download invoice", "Apply", "Coupon", "Home", "Billing"]) assert.ok(labels.includes(want), `${want} in ${labels}`);
    assert.equal(labels.filter((l) => l === "Cancel").length, 2, "both identical buttons, told apart structurally");
    for (const el of billing.elements) {
      assert.ok(el.locators.length > 0);
      for (const l of el.locators) {
        assert.ok(!l.value.includes("ember1234"), `a generated id was used: ${l.value}`);
        if (["TEST_ID", "ID", "LABEL", "CSS"].includes(l.kind)) {
          const n = await page.evaluate((sel) => document.querySelectorAll(sel).length, l.value);
          assert.equal(n, 1, `${l.kind} ${l.value} matches ${n} elements`);
        }
      }
    }
    const coupon = billing.elements.find((e) => e.label === "Coupon");
    assert.deepEqual(coupon.locators.slice(0, 2), [
      { kind: "ROLE", value: 'role=textbox[name="Coupon"]' },
      { kind: "LABEL", value: '[placeholder="Coupon code"]' },
    ]);
    const home = (await sitePages(createSite.id)).pages.find((p) => p.urlPattern === "/");
    assert.deepEqual(home?.elements.find((e) => e.label === "New project")?.locators[0], { kind: "TEST_ID", value: '[data-testid="new-project"]' });
    await page.screenshot({ path: join(artifacts, "recorder-badge.png") });

    // Without a token in the tab, the script sends nothing.
    const plain = await browser.newContext();
    const other = await plain.newPage();
    const posts = [];
    other.on("request", (r) => r.url().includes("/recorder/pages") && posts.push(r.url()));
    await other.goto(`${appOrigin}/`);
    await other.waitForTimeout(1500);
    assert.deepEqual(posts, []);
    await plain.close();
    await ctx.close();
  });

  await check("no script error reached any host page", async () => {
    assert.deepEqual(pageErrors, []);
  });

  await browser.close();
  customerApp.close();
  allowedServer.close();
  foreignServer.close();
}

const passed = results.filter(Boolean).length;
const failed = results.length - passed;
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
