// Turn latency without an LLM, as a visitor sees it: an open-loop rate of
// `startTurn` over HTTP, each turn followed with `chatTurn` on one held
// graphql-ws socket; prints p50/p99 from `startTurn` sent to `COMPLETED`
// received. Every response is checked for GraphQL `errors`.
// node turn_latency.mjs HTTP_BASE API_KEY TURNS RATE_PER_S
import { createRequire } from 'node:module';
const WebSocket = createRequire(`${process.env.NODE_PATH}/`)('ws');

const [base, key, turnsArg, rateArg] = process.argv.slice(2);
const turns = Number(turnsArg || 200), rate = Number(rateArg || 50);
const gql = async (query, variables, apiKey) => {
  const r = await fetch(`${base}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', ...(apiKey ? { 'x-api-key': apiKey } : {}) }, body: JSON.stringify({ query, variables }) });
  const v = await r.json();
  if (v.errors) throw new Error(JSON.stringify(v.errors));
  return v.data;
};
const kb = (await gql('mutation { createKnowledgeBase(input: {name: "Bench"}) { id } }', {}, key)).createKnowledgeBase.id;
await gql('mutation($kb: UUID!) { createKbArticle(input: {knowledgeBaseId: $kb, title: "Resetting your password", body: "Open the sign-in page and click Forgot password. The link stays valid for one hour."}) { id } }', { kb }, key);
const bot = (await gql('mutation($kb: UUID!) { createBot(input: {name: "Bench", knowledgeBaseIds: [$kb]}) { id } }', { kb }, key)).createBot.id;
const widget = (await gql('mutation($b: UUID!) { createChatWidget(input: {botId: $b}) { id } }', { b: bot }, key)).createChatWidget.id;

const ws = new WebSocket(base.replace('http', 'ws') + '/graphql', 'graphql-transport-ws');
const waiting = new Map();
await new Promise((resolve, reject) => {
  ws.on('error', reject);
  ws.on('open', () => ws.send(JSON.stringify({ type: 'connection_init', payload: {} })));
  ws.on('message', (raw) => {
    const m = JSON.parse(raw);
    if (m.type === 'connection_ack') resolve();
    else if (m.type === 'ping') ws.send(JSON.stringify({ type: 'pong' }));
    else if (m.type === 'next') {
      if (m.payload.errors) throw new Error(JSON.stringify(m.payload.errors));
      if (m.payload.data.chatTurn.status === 'COMPLETED') waiting.get(m.id)?.();
    } else if (m.type === 'error') throw new Error(JSON.stringify(m));
  });
});
const START = 'mutation($i: TurnInput!) { startTurn(input: $i) { turnId sessionToken } }';
const SUB = 'subscription($t: UUID!, $s: String) { chatTurn(turnId: $t, sessionToken: $s) { seq status } }';
const one = async () => {
  const t0 = performance.now();
  const s = (await gql(START, { i: { widgetId: widget, message: 'how do I reset my password' } })).startTurn;
  const done = new Promise((r) => waiting.set(s.turnId, r));
  ws.send(JSON.stringify({ type: 'subscribe', id: s.turnId, payload: { query: SUB, variables: { t: s.turnId, s: s.sessionToken } } }));
  await done;
  waiting.delete(s.turnId);
  return performance.now() - t0;
};
for (let i = 0; i < 10; i++) await one(); // warm up
const all = [];
const started = performance.now();
for (let i = 0; i < turns; i++) {
  const due = started + (i * 1000) / rate;
  const wait = due - performance.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  all.push(one());
}
const times = (await Promise.all(all)).sort((a, b) => a - b);
const p = (q) => times[Math.min(times.length - 1, Math.round((times.length - 1) * q))].toFixed(1);
console.log(JSON.stringify({ turns, rate_per_s: rate, p50_ms: p(0.5), p99_ms: p(0.99), max_ms: times.at(-1).toFixed(1) }));
process.exit(0);
