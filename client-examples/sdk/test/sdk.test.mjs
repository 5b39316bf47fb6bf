// Tests of wayfinder-sdk against a running server:
//
//   WAYFINDER_URL=http://127.0.0.1:8080 WAYFINDER_WIDGET_ID=… WAYFINDER_API_KEY=… node --test client-examples/sdk/test/
//
// (tests/tests/api/scripts.rs runs this against a fresh server with the demo seeded.)
// WebSocket: the global one, else the `ws` package (npm ci in tests/browser and
// NODE_PATH=tests/browser/node_modules, as the test harness does).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { createChatbot, WayfinderError } from "../index.js";

const WebSocket = globalThis.WebSocket ?? createRequire(import.meta.url)("ws");
const baseUrl = process.env.WAYFINDER_URL ?? "http://127.0.0.1:8080";
const widgetId = process.env.WAYFINDER_WIDGET_ID;
const apiKey = process.env.WAYFINDER_API_KEY;
assert.ok(widgetId, "set WAYFINDER_WIDGET_ID");

const chatbot = createChatbot({ baseUrl, WebSocket });

test("sendMessage answers and continues the conversation with sessionId", async () => {
  const first = await chatbot.sendMessage({ widgetId, message: "How do I install the chat widget?" });
  assert.ok(first.reply.length > 0);
  assert.equal(first.status, "ANSWERED");
  assert.ok(first.citations.length > 0, "the answer cites an article");
  assert.ok(first.sessionId && first.conversationId);

  const second = await chatbot.sendMessage({ widgetId, message: "What about API keys?", sessionId: first.sessionId });
  assert.equal(second.conversationId, first.conversationId, "same conversation");
});

test("stream yields the turn's events in order, ending with COMPLETED", async () => {
  const turn = chatbot.stream({ widgetId, message: "What happens when the AI is off?" });
  const events = [];
  for await (const event of turn) events.push(event);
  const statuses = events.map((e) => e.status);
  assert.equal(statuses[0], "ANALYZING");
  assert.equal(statuses.at(-1), "COMPLETED");
  assert.deepEqual(
    events.map((e) => e.seq),
    events.map((_, i) => i + 1),
    "seq 1, 2, 3… without gaps",
  );
  const answer = events.find((e) => e.status === "ANSWERED");
  assert.ok(answer, `an ANSWERED event among ${statuses}`);
  const streamed = events.filter((e) => e.status === "ANSWER_DELTA").map((e) => e.delta).join("");
  assert.ok(streamed.length > 0, "the answer was streamed in pieces");

  const { sessionId, conversationId } = await turn.started;
  const next = await chatbot.sendMessage({ widgetId, message: "Thanks!", sessionId });
  assert.equal(next.conversationId, conversationId);
});

test("an unknown widget is NOT_FOUND", async () => {
  await assert.rejects(
    chatbot.sendMessage({ widgetId: "00000000-0000-0000-0000-000000000000", message: "hi" }),
    (err) => err instanceof WayfinderError && err.code === "NOT_FOUND",
  );
});

test("a botId needs an API key", { skip: !apiKey && "set WAYFINDER_API_KEY" }, async () => {
  const dashboard = createChatbot({ baseUrl, apiKey, WebSocket });
  const { bots } = await dashboard.graphql("{ bots(first: 1) { nodes { id } } }");
  const botId = bots.nodes[0].id;
  const reply = await dashboard.sendMessage({ botId, message: "What is Wayfinder?" });
  assert.ok(reply.reply.length > 0);
  await assert.rejects(chatbot.sendMessage({ botId, message: "hi" }), (err) => err.code === "UNAUTHENTICATED");
});

test("stream without a WebSocket implementation explains itself", async () => {
  const bare = createChatbot({ baseUrl, WebSocket: null });
  if (globalThis.WebSocket) return; // Node 22+: there is always one
  await assert.rejects(
    (async () => {
      for await (const _ of bare.stream({ widgetId, message: "hi" }));
    })(),
    (err) => err.code === "NO_WEBSOCKET",
  );
});

test("identify makes every message carry the signed identity", async () => {
  const sent = [];
  const fakeFetch = async (_url, init) => {
    sent.push(JSON.parse(init.body).variables.input);
    return { status: 200, json: async () => ({ data: { sendMessage: { turnId: "t", sessionId: "s", sessionToken: "k", status: "ANSWERED", text: "hi", citations: [] } } }) };
  };
  const chatbot = createChatbot({ baseUrl: "http://sdk.invalid", fetch: fakeFetch });
  chatbot.identify({ userId: "42", userHash: "ab".repeat(32), traits: { plan: "pro" } });
  await chatbot.sendMessage({ widgetId: "w", message: "hi" });
  await chatbot.sendMessage({ widgetId: "w", message: "hi", userId: "43", userHash: "cd" });
  chatbot.identify(null);
  await chatbot.sendMessage({ widgetId: "w", message: "hi" });
  assert.deepEqual(
    sent.map((i) => [i.userId, i.userHash, i.traits]),
    [["42", "ab".repeat(32), { plan: "pro" }], ["43", "cd", undefined], [undefined, undefined, undefined]],
  );
});

test("tours: visitPage starts nothing unasked; reportTourRun keeps a session and ignores unknown content", async () => {
  const visit = await chatbot.tours.visitPage({ widgetId, pageUrl: `${baseUrl}/demo` });
  assert.equal(visit.content, null);
  const r = await chatbot.tours.reportTourRun({
    widgetId,
    pageUrl: `${baseUrl}/demo`,
    events: [{ run: "sdk1", id: "0192f5d2-0000-7000-8000-0000000000aa", type: "started", step: 0 }],
  });
  assert.deepEqual([r.accepted, r.ignored], [0, 1]);
  assert.ok(r.sessionId, "a session was made for the visitor");
  await assert.rejects(
    chatbot.tours.reportTourRun({ widgetId, sessionId: r.sessionId, events: [{ run: "sdk1", id: "x", type: "clicked", step: 0 }] }),
    (err) => err instanceof WayfinderError && err.code === "BAD_USER_INPUT",
  );
});
