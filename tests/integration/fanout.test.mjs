// Fan-out at scale: 2000 SSE clients on one channel across two workers, 500 events published
// through one redis-cli process. Every client receives every event exactly once, in order, with
// strictly increasing ids, the same id for the same event everywhere, and PUBLISH reports 2000.
//
// Most clients are `eventsource` instances; some are raw sockets that also check the exact bytes.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer,
  EventSource,
  sseConnect,
  bulkPublishCli,
  info,
  waitInfo,
  waitUntil,
  withTimeout,
  compareIds,
  expectedFrame,
  sleep,
} from './lib/harness.mjs';

const ES_CLIENTS = 1800;
const RAW_CLIENTS = 200;
const CLIENTS = ES_CLIENTS + RAW_CLIENTS;
const EVENTS = 500;
const CH = 'fanout';
const BATCH = 100; // clients connecting at once

const payload = (seq) => `seq=${seq} ${'p'.repeat(48)} end`;

/**
 * Checks one client's events as they arrive, so nothing has to be stored per event:
 * the next expected sequence number, strictly increasing ids, and the id every other client
 * saw for the same event (idBySeq, filled by whichever client sees an event first).
 */
const idBySeq = new Array(EVENTS);
function makeChecker(name) {
  const st = { name, next: 0, lastId: null, failure: null, errors: 0 };
  st.onEvent = (data, id) => {
    if (st.failure) return;
    const m = /^seq=(\d+) p+ end$/.exec(data);
    if (!m) return (st.failure = `${name}: unexpected data ${JSON.stringify(data.slice(0, 80))}`);
    const seq = Number(m[1]);
    if (seq !== st.next) return (st.failure = `${name}: got seq ${seq}, expected ${st.next} (lost, duplicated or reordered)`);
    if (!id) return (st.failure = `${name}: seq ${seq} has no id`);
    if (st.lastId !== null && compareIds(st.lastId, id) >= 0) {
      return (st.failure = `${name}: ids not increasing: ${st.lastId} then ${id}`);
    }
    if (idBySeq[seq] === undefined) idBySeq[seq] = id;
    else if (idBySeq[seq] !== id) return (st.failure = `${name}: seq ${seq} has id ${id}, another client saw ${idBySeq[seq]}`);
    st.lastId = id;
    st.next++;
  };
  return st;
}

let srv;
const esClients = [];
const rawClients = [];
after(async () => {
  for (const c of esClients) c.es.close();
  for (const c of rawClients) c.sock.close();
  await srv?.stop();
});

test(`${CLIENTS} clients (${ES_CLIENTS} eventsource + ${RAW_CLIENTS} raw) each get all ${EVENTS} events exactly once, in order`, { timeout: 180000 }, async (t) => {
  const t0 = Date.now();
  srv = await startServer({
    server: { workers: 2, max_connections_per_worker: 4096 },
    channels: { history_size: 1024, max_lag: 1024 },
  });

  // Connect in batches, waiting for each batch to be open before the next.
  for (let i = 0; i < CLIENTS; i += BATCH) {
    const opens = [];
    for (let j = i; j < Math.min(i + BATCH, CLIENTS); j++) {
      if (j < ES_CLIENTS) {
        const st = makeChecker(`es#${j}`);
        const es = new EventSource(`http://127.0.0.1:${srv.port}/sse/${CH}`);
        es.onmessage = (ev) => st.onEvent(ev.data, ev.lastEventId);
        es.onerror = () => {
          st.errors++;
        };
        opens.push(new Promise((resolve) => es.addEventListener('open', resolve)));
        esClients.push({ es, st });
      } else {
        const st = makeChecker(`raw#${j}`);
        const sock = sseConnect(srv.port, CH);
        rawClients.push({ sock, st, seen: 0 }); // checked by drainRaw() below
        opens.push(sock.waitHead(30000).then(() => assert.equal(sock.head.status, 200)));
      }
    }
    await withTimeout(Promise.all(opens), 30000, `batch of clients starting at ${i} to open`);
  }
  const subscribed = await waitInfo(srv.socket, (x) => x.subscribers === CLIENTS, {
    timeout: 60000,
    message: `INFO subscribers == ${CLIENTS}`,
  });
  assert.ok(subscribed.worker_0_connections > 0, `worker 0 has clients: ${subscribed.worker_0_connections}`);
  assert.ok(subscribed.worker_1_connections > 0, `worker 1 has clients: ${subscribed.worker_1_connections}`);
  const connectedMs = Date.now() - t0;

  // Raw clients: feed their parsed events to the checker as they come.
  const drainRaw = () => {
    for (const c of rawClients) {
      const evs = c.sock.events;
      while (c.seen < evs.length) {
        const e = evs[c.seen++];
        if (!c.st.failure && e.raw.toString() !== expectedFrame(e.id, e.data)) {
          c.st.failure = `${c.st.name}: frame not byte-exact: ${JSON.stringify(e.raw.toString())}`;
        }
        c.st.onEvent(e.data, e.id);
      }
      evs.length = 0; // the events are checked; free them
      c.seen = 0;
    }
  };

  const before = await info(srv.socket);
  const cmds = [];
  for (let s = 0; s < EVENTS; s++) cmds.push(['PUBLISH', CH, payload(s)]);
  const replies = await bulkPublishCli(srv.socket, cmds, { timeout: 120000 });
  const wrong = replies.map((r, i) => [i, r]).filter(([, r]) => r !== CLIENTS);
  assert.deepEqual(wrong.slice(0, 5), [], `every PUBLISH reaches all ${CLIENTS} subscribers`);
  const publishedMs = Date.now() - t0;

  const all = [...esClients.map((c) => c.st), ...rawClients.map((c) => c.st)];
  await waitUntil(() => {
    drainRaw();
    return all.every((st) => st.next === EVENTS || st.failure);
  }, {
    timeout: 120000,
    interval: 200,
    message: `all clients to receive ${EVENTS} events (${all.filter((s) => s.next === EVENTS).length} done)`,
  });
  await sleep(500); // anything extra would show up now
  drainRaw();

  const failures = all.filter((st) => st.failure).map((st) => st.failure);
  assert.deepEqual(failures.slice(0, 10), [], `${failures.length} clients saw wrong events`);
  const counts = all.filter((st) => st.next !== EVENTS).map((st) => `${st.name}: ${st.next}`);
  assert.deepEqual(counts.slice(0, 10), [], 'every client got exactly all events');
  const errored = esClients.filter((c) => c.st.errors > 0).length;
  assert.equal(errored, 0, `${errored} eventsource clients saw errors (disconnects/reconnects)`);
  assert.ok(rawClients.every((c) => !c.sock.isClosed()), 'raw clients are still connected');
  assert.equal(idBySeq.filter((x) => x !== undefined).length, EVENTS);

  const afterInfo = await waitInfo(srv.socket, (x) => x.deliveries - before.deliveries >= EVENTS * CLIENTS, {
    timeout: 10000,
    message: 'deliveries counted',
  });
  assert.equal(afterInfo.published - before.published, EVENTS);
  assert.equal(afterInfo.deliveries - before.deliveries, EVENTS * CLIENTS);
  assert.equal(afterInfo.slow_disconnects, 0);
  assert.equal(afterInfo.subscribers, CLIENTS);
  t.diagnostic(`connected in ${connectedMs} ms, published by ${publishedMs} ms, all received by ${Date.now() - t0} ms`);
});
