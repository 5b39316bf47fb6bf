#!/usr/bin/env node
// Dashboard queries with an API key: the org, its latest chat sessions, and
// its open support tickets (contact form, hand-offs, flagged downvotes).
//
//   node client-examples/node/dashboard.mjs API_KEY [BASE_URL]
import { createChatbot } from "../sdk/index.js";

const [apiKey, baseUrl = "http://127.0.0.1:8080"] = process.argv.slice(2);
if (!apiKey) {
  console.error("usage: dashboard.mjs API_KEY [BASE_URL]");
  process.exit(2);
}
const api = createChatbot({ baseUrl, apiKey });

const { org, chatSessions, supportTickets } = await api.graphql(`{
  org { name plan creditBalance }
  chatSessions(first: 10) { nodes { id chatWidgetId createdAt updatedAt } }
  supportTickets(first: 20) { nodes { id source status name email message createdAt } }
}`);

console.log(`${org.name} (${org.plan}), ${org.creditBalance} credits`);
console.log(`\nchat sessions (${chatSessions.nodes.length}):`);
for (const s of chatSessions.nodes) console.log(`  ${s.id}  widget ${s.chatWidgetId ?? "-"}  last active ${s.updatedAt}`);
console.log(`\nsupport tickets (${supportTickets.nodes.length}):`);
for (const t of supportTickets.nodes) {
  console.log(`  ${t.createdAt}  ${t.source.padEnd(12)} ${t.status.padEnd(7)} ${t.email ?? "-"}  ${t.message.slice(0, 60)}`);
}
