// WebSocket fan-out at scale: 2000 `ws` clients (half with permessage-deflate) and 200 raw SSE
// clients on one channel over two workers; 500 events through one redis-cli. Every client gets
// every event exactly once, in order, and PUBLISH reports every subscriber.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startServer, sseConnect, bulkPublishCli, info, waitUntil, withTimeout } from './lib/harness.mjs';

const WS_CLIENTS = 2000;
const SSE_CLIENTS = 200;
const EVENTS = 500;
const CH = 'wsfan';
const BATCH = 100;

const payload = (seq) => `seq=${seq} ${'p'.repeat(seq % 3 === 0 ? 400 : 40)} end`;

let srv;
const wss = [];
const sses = [];
after(async () => {
  for (const w of wss) w.ws.terminate();
  for (const s of sses) s.close();
  await srv?.stop();
});

function checker(name) {
  const st = { name, next: 0, failure: null };
  st.onData = (data) => {
    if (st.failure) return;
    const m = /^seq=(\d+) p+ end$/.exec(data);
    if (!m) return (st.failure = `${name}: unexpected ${JSON.stringify(data.slice(0, 60))}`);
    if (Number(m[1]) !== st.next) return (st.failure = `${name}: got ${m[1]}, expected ${st.next}`);
    st.next++;
  };
  return st;
}

test(`${WS_CLIENTS} ws + ${SSE_CLIENTS} SSE clients each get all ${EVENTS} events once, in order`, { timeout: 240000 }, async () => {
  srv = await startServer({
    server: { workers: 2, max_connections_per_worker: 4096 },
    channels: { history_size: 1024, max_lag: 1024 },
    websocket: { compression: 'on', compress_min_size: 256, ping_interval: 0 },
  });
  for (let i = 0; i < WS_CLIENTS; i += BATCH) {
    const opens = [];
    for (let j = i; j < Math.min(i + BATCH, WS_CLIENTS); j++) {
      const st = checker(`ws#${j}`);
      const ws = new WebSocket(`ws://127.0.0.1:${srv.port}/ws/${CH}`, { perMessageDeflate: j % 2 === 0 });
      ws.on('message', (d) => st.onData(d.toString()));
      ws.on('error', (e) => (st.failure ??= `ws#${j}: ${e.message}`));
      wss.push({ ws, st });
      opens.push(withTimeout(new Promise((r, e) => {
        ws.once('open', r);
        ws.once('error', e);
      }), 10000, `ws#${j} open`));
    }
    await Promise.all(opens);
  }
  for (let j = 0; j < SSE_CLIENTS; j++) {
    const st = checker(`sse#${j}`);
    const c = sseConnect(srv.port, CH);
    c.st = st;
    sses.push(c);
  }
  await Promise.all(sses.map((c) => c.waitHead(10000)));
  const workers = await info(srv.socket);
  assert.equal(workers.subscribers, WS_CLIENTS + SSE_CLIENTS);
  assert.ok(workers.worker_0_connections > 100 && workers.worker_1_connections > 100, 'both workers serve clients');

  const cmds = Array.from({ length: EVENTS }, (_, s) => ['PUBLISH', CH, payload(s)]);
  const replies = await bulkPublishCli(srv.socket, cmds, { timeout: 180000 });
  assert.ok(replies.every((r) => r === WS_CLIENTS + SSE_CLIENTS), `replies ${[...new Set(replies)]}`);

  await waitUntil(() => wss.every((w) => w.st.next === EVENTS || w.st.failure), { timeout: 120000, interval: 200, message: 'ws clients done' });
  for (const w of wss) assert.equal(w.st.failure, null);
  await waitUntil(() => sses.every((c) => c.events.length >= EVENTS), { timeout: 120000, interval: 200, message: 'SSE clients done' });
  for (const c of sses) {
    for (const e of c.events) c.st.onData(e.data);
    assert.equal(c.st.failure, null);
    assert.equal(c.st.next, EVENTS);
  }
  const i = await info(srv.socket);
  assert.equal(i.slow_disconnects, 0);
  assert.equal(i.ws_errors, 0);
});
