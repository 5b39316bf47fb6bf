// Quick RSS-per-socket probe: opens N graphql-ws sockets against a running
// server, each with one `orgEvents` subscription, and prints the server's RSS
// before, with every socket held, and after they close.
// node socket_rss.mjs URL API_KEY PID N
import { createRequire } from 'node:module';
const WebSocket = createRequire(`${process.env.NODE_PATH}/`)('ws');
import { readFileSync } from 'node:fs';

const [url, key, pid, nArg] = process.argv.slice(2);
const n = Number(nArg || 1000);
const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function open(i) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, 'graphql-transport-ws', { localAddress: `127.0.0.${2 + (i % 200)}` });
    ws.on('error', reject);
    ws.on('open', () => ws.send(JSON.stringify({ type: 'connection_init', payload: { apiKey: key } })));
    ws.on('message', (raw) => {
      const m = JSON.parse(raw);
      if (m.type === 'connection_ack') {
        // SUBSCRIBE=0: sockets without a subscription, to tell their cost apart.
        if (process.env.SUBSCRIBE !== '0') ws.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: 'subscription { orgEvents { kind } }' } }));
        setTimeout(() => resolve(ws), 0);
      } else if (m.type === 'ping') ws.send(JSON.stringify({ type: 'pong' }));
      else if (m.type === 'error') reject(new Error(JSON.stringify(m)));
    });
  });
}

await sleep(300);
const before = rss();
const sockets = [];
for (let i = 0; i < n; i += 100) {
  const batch = [];
  for (let j = i; j < Math.min(n, i + 100); j++) batch.push(open(j));
  sockets.push(...(await Promise.all(batch)));
}
await sleep(2000);
const held = rss();
for (const ws of sockets) ws.close();
// AFTER_MS: how long to wait after closing before reading RSS again (default 4 s).
await sleep(Number(process.env.AFTER_MS || 4000));
const after = rss();
console.log(JSON.stringify({ sockets: n, rss_before_kb: before, rss_held_kb: held, rss_after_kb: after,
  per_socket_kb: ((held - before) / n).toFixed(2) }));
process.exit(0);
