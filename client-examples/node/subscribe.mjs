#!/usr/bin/env node
// A Node graphql-ws subscriber: asks the bot a question with `startTurn` and
// prints the turn's events from the `chatTurn` subscription as they arrive
// (status, streamed answer text, citations), using the SDK in ../sdk.
//
//   node client-examples/node/subscribe.mjs WIDGET_ID [BASE_URL] ["question"]
//
// Node 22+ has a global WebSocket; on Node 20 install the `ws` package.
import { createRequire } from "node:module";
import { createChatbot } from "../sdk/index.js";

const [widgetId, baseUrl = "http://127.0.0.1:8080", question = "How do I install the chat widget?"] =
  process.argv.slice(2);
if (!widgetId) {
  console.error("usage: subscribe.mjs WIDGET_ID [BASE_URL] [QUESTION]");
  process.exit(2);
}
const WebSocket = globalThis.WebSocket ?? createRequire(import.meta.url)("ws");
const chatbot = createChatbot({ baseUrl, WebSocket });

const turn = chatbot.stream({ widgetId, message: question });
for await (const event of turn) {
  switch (event.status) {
    case "ANSWER_DELTA":
      process.stdout.write(event.delta);
      break;
    case "ANSWERED":
      process.stdout.write("\n");
      for (const c of event.citations) console.log(`  [source] ${c.title} (${c.articleId})`);
      break;
    default:
      console.log(`#${event.seq} ${event.status}${event.text && event.status !== "ANALYZING" ? `: ${event.text}` : ""}`);
  }
}
const { sessionId } = await turn.started;
console.log(`continue this conversation with sessionId=${sessionId}`);
