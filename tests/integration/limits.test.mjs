// Limits and shutdown: connection capacity (503 + rejected_capacity), slow consumers (disconnected
// once more than max_lag events behind, counted in slow_disconnects, nobody else harmed), and
// SIGTERM/SIGINT ending every stream and the process with exit code 0. Then the connection
// limits: max_connections over all workers (rejected_global), max_connections_per_address
// (rejected_address), and a worker ring's file table at a low RLIMIT_NOFILE (rejected_capacity).

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer,
  subscribe,
  sseConnect,
  esConnect,
  curlStream,
  publish,
  info,
  waitInfo,
  waitUntil,
  rawRequest,
  getRequest,
  feedConnect,
  resp,
  withTimeout,
  assertIncreasingIds,
  sleep,
  wsRaw,
} from './lib/harness.mjs';
import { startServerNofile, burst, assertRefused } from './lib/limits.mjs';

describe('capacity: workers = 1, max_connections_per_worker = 5', () => {
  const CAP = 5;
  let srv;
  const subs = [];
  before(async () => {
    srv = await startServer({ server: { workers: 1, max_connections_per_worker: CAP } });
  });
  after(async () => {
    for (const s of subs) s.close();
    await srv?.stop();
  });

  test('the connections beyond capacity get 503 (or are closed), counted; the others are unaffected', async () => {
    for (let i = 0; i < CAP; i++) subs.push(await subscribe(srv.port, 'cap'));
    const full = await waitInfo(srv.socket, (i) => i.subscribers === CAP && i.connections === CAP, {
      message: `${CAP} subscribers and connections`,
    });
    assert.equal(full.worker_0_connections, CAP);

    const EXTRA = 3;
    for (let k = 0; k < EXTRA; k++) {
      const r = await rawRequest(srv.port, getRequest('/sse/cap'), { timeout: 3000 });
      assert.ok(r.closed, `attempt ${k}: the refused connection is closed`);
      if (r.text.length) {
        assert.match(r.statusLine, /^HTTP\/1\.1 503( .*)?$/, `attempt ${k}: ${JSON.stringify(r.text.slice(0, 100))}`);
        assert.deepEqual(r.headers['retry-after'], ['1'], 'README: 503 with Retry-After: 1');
      }
    }
    const after = await info(srv.socket);
    assert.equal(after.rejected_capacity - full.rejected_capacity, EXTRA, 'rejected_capacity counts each refusal');
    assert.equal(after.subscribers, CAP);

    assert.equal(await publish(srv.socket, 'cap', 'still here'), CAP);
    for (const s of subs) {
      await s.waitEvents(1);
      assert.equal(s.events[0].data, 'still here');
      assert.ok(!s.isClosed());
    }
  });

  test('a freed slot can be used again', async () => {
    subs.shift().close();
    await waitInfo(srv.socket, (i) => i.connections === CAP - 1, { message: 'one connection fewer' });
    const again = await subscribe(srv.port, 'cap');
    subs.push(again);
    await waitInfo(srv.socket, (i) => i.subscribers === CAP, { message: 'back to capacity' });
    assert.equal(await publish(srv.socket, 'cap', 'welcome back'), CAP);
    await again.waitEvents(1);
    assert.equal(again.events[0].data, 'welcome back');
  });
});

describe('slow consumers: max_lag = 64', () => {
  const MAX_LAG = 64;
  const BIG = 48 * 1024; // bytes per payload, so that kernel buffers fill up quickly
  let srv;
  let feed;
  before(async () => {
    srv = await startServer({ channels: { history_size: 128, max_lag: MAX_LAG } });
    feed = await feedConnect(srv.socket);
  });
  after(async () => {
    feed?.close();
    await srv?.stop();
  });

  const bigPayload = (seq) => `seq=${seq} ` + 'L'.repeat(BIG - 20) + ` /${seq}`;
  const seqOf = (data) => Number(/^seq=(\d+) /.exec(data)?.[1]);

  /**
   * Publishes `count` big events to `ch` in batches, each batch in one write on the raw feed
   * connection; before the next batch, waits until `healthy` has received all so far, so that a
   * healthy reader is never anywhere near max_lag behind.
   */
  async function publishPaced(ch, count, healthy, batch = 16) {
    for (let s = 0; s < count; s += batch) {
      const n = Math.min(batch, count - s);
      const cmds = [];
      for (let i = 0; i < n; i++) cmds.push(resp('PUBLISH', ch, bigPayload(s + i)));
      feed.send(Buffer.concat(cmds));
      const rs = await feed.replies(n, 10000);
      assert.ok(rs.every((r) => r.type === ':'), JSON.stringify(rs.slice(0, 2)));
      await healthy.waitEvents(s + n, 15000);
    }
  }

  test('a paused client less than max_lag events behind is not disconnected', async () => {
    const before = await info(srv.socket);
    const slow = sseConnect(srv.port, 'underlag', { pause: true });
    const healthy = await subscribe(srv.port, 'underlag');
    try {
      await waitInfo(srv.socket, (i) => i.subscribers === 2, { message: 'slow and healthy subscribed' });
      const N = MAX_LAG - 8;
      await publishPaced('underlag', N, healthy, 8);
      await sleep(500);
      const mid = await info(srv.socket);
      assert.equal(mid.slow_disconnects, before.slow_disconnects, 'no slow consumer disconnect');
      slow.resume();
      await slow.waitEvents(N, 15000);
      assert.deepEqual(slow.events.map((e) => seqOf(e.data)), Array.from({ length: N }, (_, i) => i));
      assert.ok(slow.events.every((e) => e.data === bigPayload(seqOf(e.data))), 'payloads intact');
      assert.ok(!slow.isClosed(), 'still connected');
    } finally {
      slow.close();
      healthy.close();
    }
    await waitInfo(srv.socket, (i) => i.subscribers === 0, { message: 'both gone' });
  });

  test('a client that never reads is disconnected once too far behind; healthy ones get everything', async () => {
    const before = await info(srv.socket);
    const slow = sseConnect(srv.port, 'overlag', { pause: true });
    const healthy = await subscribe(srv.port, 'overlag');
    const es = esConnect(srv.port, 'overlag');
    try {
      await es.waitOpen();
      await waitInfo(srv.socket, (i) => i.subscribers === 3, { message: 'slow + 2 healthy subscribed' });
      // 400 x 48 KiB = ~19 MiB: far more than socket buffers plus max_lag events can hold.
      const N = 400;
      await publishPaced('overlag', N, healthy);

      const after = await waitInfo(srv.socket, (i) => i.slow_disconnects > before.slow_disconnects, {
        timeout: 10000,
        message: 'slow_disconnects to grow',
      });
      assert.equal(after.slow_disconnects - before.slow_disconnects, 1, 'exactly the one slow client');
      assert.equal(after.subscribers, 2, 'the healthy subscribers remain');

      // the healthy subscribers got all of it, in order, intact
      await es.waitCount(N, 20000);
      await healthy.waitEvents(N, 20000);
      assert.deepEqual(healthy.events.map((e) => seqOf(e.data)), Array.from({ length: N }, (_, i) => i));
      assert.ok(healthy.events.every((e) => e.data === bigPayload(seqOf(e.data))), 'raw payloads intact');
      assert.deepEqual(es.received.map((e) => seqOf(e.data)), Array.from({ length: N }, (_, i) => i));
      assert.ok(es.received.every((e) => e.data === bigPayload(seqOf(e.data))), 'eventsource payloads intact');
      assert.equal(es.errors.length, 0, 'eventsource was never disconnected');
      assertIncreasingIds(healthy.events.map((e) => e.id));
      assert.ok(!healthy.isClosed());

      // the slow client: reading now, it finds its stream ended, after a clean prefix
      slow.resume();
      await withTimeout(slow.closed, 15000, 'the slow client connection to be closed');
      const seqs = slow.events.map((e) => seqOf(e.data));
      assert.ok(seqs.length < N, `the slow client did not get everything (${seqs.length})`);
      assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => i), 'what it got is an in-order prefix');
      assert.ok(slow.events.every((e) => e.data === bigPayload(seqOf(e.data))), 'no torn events before the end');
    } finally {
      slow.close();
      healthy.close();
      es.close();
    }
  });
});

describe('signals end streams and the process cleanly', () => {
  for (const signal of ['SIGTERM', 'SIGINT']) {
    test(`${signal}: curl -N streams end, idle and half-open connections do not block, exit 0`, async () => {
      const srv = await startServer({ server: { shutdown_grace: 1 } });
      const curls = [];
      const extras = [];
      try {
        for (let i = 0; i < 3; i++) curls.push(curlStream(srv.url('/sse/bye'), { maxTime: 30 }));
        const es = esConnect(srv.port, 'bye');
        extras.push({ close: () => es.close() });
        await es.waitOpen();
        await waitInfo(srv.socket, (i) => i.subscribers === 4, { message: '4 subscribers' });
        assert.equal(await publish(srv.socket, 'bye', 'last words'), 4);
        for (const c of curls) {
          await waitUntil(() => c.out().includes('data: last words\n\n'), { timeout: 5000, message: 'curl got the event' });
        }
        await es.waitCount(1);

        // an idle feed connection and a request head that never completes
        const idleFeed = await feedConnect(srv.socket);
        extras.push(idleFeed);
        const partial = rawRequest(srv.port, 'GET /sse/half HTTP/1.1\r\nHost: 127.0.0.1\r\n', { timeout: 8000 });
        await sleep(100);

        const t0 = Date.now();
        const res = await srv.stop(signal, 5000); // asserts exit code 0 within 5 s
        assert.ok(res.ms < 5000);
        for (const c of curls) {
          const r = await withTimeout(c.exited, 5000, 'curl to exit after the server stopped');
          assert.equal(r.code, 0, `curl exits 0 at the end of a close-delimited stream: ${c.err()}`);
          assert.match(c.out(), /^HTTP\/1\.1 200/);
        }
        assert.ok(Date.now() - t0 < 8000);
        const pr = await partial;
        assert.ok(pr.closed, 'the half-sent request was closed');
        assert.ok(await idleFeed.waitClosed(3000), 'the idle feed connection was closed');
      } finally {
        for (const c of curls) c.kill();
        for (const x of extras) x.close();
        await srv.stop().catch(() => {});
      }
    });
  }
});

/** The events' data fields of an SSE body that curl printed (head included). */
function curlEvents(out) {
  return [...out.matchAll(/^data: (.*)$/gm)].map((m) => m[1]);
}

describe('global limit: workers = 2, max_connections = 5', () => {
  const MAX = 5;
  let srv;
  const subs = [];
  before(async () => {
    srv = await startServer({ server: { workers: 2, max_connections: MAX } });
    // the start-up /health checks are connections too; let them go first
    await waitInfo(srv.socket, (i) => i.connections === 0, { message: 'no connections' });
  });
  after(async () => {
    for (const s of subs) s.close();
    await srv?.stop();
  });

  test('connections 6 to 10 get 503 with Retry-After whichever worker takes them, counted; the streams lose nothing', async () => {
    for (let i = 0; i < MAX; i++) subs.push(await subscribe(srv.port, 'glob'));
    const full = await waitInfo(srv.socket, (i) => i.subscribers === MAX && i.connections === MAX, {
      message: `${MAX} subscribers`,
    });
    assert.equal(full.worker_0_connections + full.worker_1_connections, MAX);
    assert.equal(await publish(srv.socket, 'glob', 'before'), MAX);

    // four SSE requests and one WebSocket upgrade: the limit is on connections, not protocols
    for (let k = 0; k < 4; k++) {
      const r = await rawRequest(srv.port, getRequest('/sse/glob'), { timeout: 3000 });
      assertRefused(r, `SSE attempt ${k}`);
    }
    const ws = wsRaw(srv.port, 'glob');
    try {
      await ws.waitHead(3000);
      assert.equal(ws.head.status, 503, ws.headText);
      assert.deepEqual(ws.head.headers['retry-after'], ['1']);
      assert.ok(await ws.waitClosed(3000), 'the refused WebSocket is closed');
    } finally {
      ws.close();
    }

    const after = await waitInfo(srv.socket, (i) => i.connections === MAX, { message: 'refused connections gone' });
    assert.equal(after.rejected_global - full.rejected_global, 5, 'rejected_global counts each refusal');
    assert.equal(after.rejected_capacity, full.rejected_capacity, 'not a capacity refusal');
    assert.equal(after.rejected_address, full.rejected_address);
    assert.equal(after.subscribers, MAX);

    assert.equal(await publish(srv.socket, 'glob', 'after'), MAX);
    for (const s of subs) {
      await s.waitEvents(2);
      assert.deepEqual(s.events.map((e) => e.data), ['before', 'after']);
      assert.ok(!s.isClosed());
    }
  });

  test('closing streams frees places: new connections are accepted again, up to the limit', async () => {
    const before = await info(srv.socket);
    subs.shift().close();
    subs.shift().close();
    await waitInfo(srv.socket, (i) => i.connections === MAX - 2, { message: 'two connections fewer' });
    subs.push(await subscribe(srv.port, 'glob'));
    subs.push(await subscribe(srv.port, 'glob'));
    await waitInfo(srv.socket, (i) => i.subscribers === MAX && i.connections === MAX, { message: 'full again' });
    assertRefused(await rawRequest(srv.port, getRequest('/sse/glob'), { timeout: 3000 }), 'over the limit again');
    const after = await waitInfo(srv.socket, (i) => i.connections === MAX, { message: 'the refused one gone' });
    assert.equal(after.rejected_global - before.rejected_global, 1);

    assert.equal(await publish(srv.socket, 'glob', 'last'), MAX);
    for (const s of subs) {
      await s.waitEvents(1);
      assert.equal(s.events.at(-1).data, 'last');
    }
  });
});

describe('per-address limit: workers = 2, max_connections_per_address = 3', () => {
  const PER = 3;
  let srv;
  const subs = [];
  const curls = [];
  before(async () => {
    srv = await startServer({ server: { workers: 2, max_connections_per_address: PER } });
    await waitInfo(srv.socket, (i) => i.connections === 0, { message: 'no connections' });
  });
  after(async () => {
    for (const s of subs) s.close();
    for (const c of curls) c.kill();
    await srv?.stop();
  });

  /** An SSE stream from 127.0.0.2 through curl --interface; resolves once its 200 head is in. */
  async function curlFrom2(channel) {
    const c = curlStream(srv.url(`/sse/${channel}`), { maxTime: 60, extra: ['--interface', '127.0.0.2'] });
    curls.push(c);
    await waitUntil(() => /^HTTP\/1\.1 \d{3}/.test(c.out()) && c.out().includes('\r\n\r\n'), {
      timeout: 5000,
      message: `curl from 127.0.0.2: ${c.err()}`,
    });
    assert.match(c.out(), /^HTTP\/1\.1 200/, c.out());
    return c;
  }

  test('from 127.0.0.1 the 4th connection gets 503 while 127.0.0.2 still gets in; counted; streams lose nothing', async () => {
    const other = await curlFrom2('addr');
    for (let i = 0; i < PER; i++) subs.push(await subscribe(srv.port, 'addr'));
    const full = await waitInfo(srv.socket, (i) => i.subscribers === PER + 1 && i.connections === PER + 1, {
      message: `${PER + 1} subscribers`,
    });
    assert.equal(full.client_addresses, 2, '127.0.0.1 and 127.0.0.2');
    assert.equal(await publish(srv.socket, 'addr', 'e1'), PER + 1);

    for (let k = 0; k < 3; k++) {
      assertRefused(await rawRequest(srv.port, getRequest('/sse/addr'), { timeout: 3000 }), `127.0.0.1 attempt ${k}`);
    }
    // 127.0.0.2 has one of its three: it still gets in, twice
    const other2 = await curlFrom2('addr');
    const other3 = await curlFrom2('addr');

    const after = await waitInfo(srv.socket, (i) => i.subscribers === PER + 3 && i.connections === PER + 3, {
      message: 'refused connections gone, 127.0.0.2 streams in',
    });
    assert.equal(after.rejected_address - full.rejected_address, 3, 'rejected_address counts each refusal');
    assert.equal(after.rejected_global, full.rejected_global);
    assert.equal(after.rejected_capacity, full.rejected_capacity);
    // and now 127.0.0.2 is full as well
    const fourth = curlStream(srv.url('/sse/addr'), { maxTime: 10, extra: ['--interface', '127.0.0.2'] });
    curls.push(fourth);
    const r4 = await withTimeout(fourth.exited, 5000, 'the refused curl to exit');
    assert.match(fourth.out(), /^HTTP\/1\.1 503/, `curl: ${fourth.err()}`);
    assert.equal(r4.code, 0, 'a complete 503 response');
    await waitInfo(srv.socket, (i) => i.rejected_address - full.rejected_address === 4 && i.connections === PER + 3, {
      message: 'the fourth from 127.0.0.2 counted and gone',
    });

    assert.equal(await publish(srv.socket, 'addr', 'e2'), PER + 3);
    for (const s of subs) {
      await s.waitEvents(2);
      assert.deepEqual(s.events.map((e) => e.data), ['e1', 'e2']);
    }
    await waitUntil(() => curlEvents(other.out()).length >= 2, { message: 'the first 127.0.0.2 stream got both' });
    assert.deepEqual(curlEvents(other.out()), ['e1', 'e2']);
    for (const c of [other2, other3]) {
      await waitUntil(() => curlEvents(c.out()).length >= 1, { message: 'the later 127.0.0.2 streams got e2' });
      assert.deepEqual(curlEvents(c.out()), ['e2']);
    }
  });

  test('after one of its streams closes, 127.0.0.1 can connect again, and only once', async () => {
    const before = await info(srv.socket);
    subs.shift().close();
    await waitInfo(srv.socket, (i) => i.connections === before.connections - 1, { message: 'one stream gone' });
    subs.push(await subscribe(srv.port, 'addr'));
    assertRefused(await rawRequest(srv.port, getRequest('/sse/addr'), { timeout: 3000 }), 'and the next is over again');
    const after = await waitInfo(srv.socket, (i) => i.connections === before.connections, { message: 'back to full' });
    assert.equal(after.rejected_address - before.rejected_address, 1);

    // every connection from 127.0.0.2 closed: its address leaves the table
    for (const c of curls) c.kill();
    await waitInfo(srv.socket, (i) => i.client_addresses === 1 && i.connections === PER, {
      message: 'only 127.0.0.1 left',
    });
    assert.equal(await publish(srv.socket, 'addr', 'e3'), PER);
    for (const s of subs) {
      await s.waitFor((c) => c.events.at(-1)?.data === 'e3', 5000, 'e3');
    }
  });
});

describe('RLIMIT_NOFILE = 64 caps a worker ring: workers = 1', () => {
  const NOFILE = 64;
  const CAP = 60; // the limit less its reserve of a sixteenth (64 above 1024)
  let srv;
  const subs = [];
  before(async () => {
    srv = await startServerNofile(NOFILE, { server: { workers: 1 } });
    await waitInfo(srv.socket, (i) => i.connections === 0, { message: 'no connections' });
  });
  after(async () => {
    for (const s of subs) s.close();
    await srv?.stop();
  });

  test('the capacity stays below the limit; beyond it 503, or a closed connection once the ring is full, each counted', async () => {
    const start = await info(srv.socket);
    assert.equal(start.capacity_per_worker, CAP);
    for (let i = 0; i < CAP; i++) subs.push(await subscribe(srv.port, 'nofile'));
    const full = await waitInfo(srv.socket, (i) => i.subscribers === CAP, { message: `${CAP} subscribers` });
    assert.equal(await publish(srv.socket, 'nofile', 'one'), CAP);

    // one at a time: the reserve has room, so each is told 503
    for (let k = 0; k < 3; k++) {
      assertRefused(await rawRequest(srv.port, getRequest('/sse/nofile'), { timeout: 3000 }), `attempt ${k}`);
    }
    // forty at once: more than the reserve holds, so the kernel closes some without a word
    const BURST = 40;
    const rs = await burst(srv.port, BURST, getRequest('/sse/nofile'));
    const kinds = rs.map((r, k) => assertRefused(r, `burst ${k}`, { allowBare: true }));
    assert.ok(kinds.includes('503'), `some were told 503: ${kinds.join(',')}`);

    const after = await waitInfo(srv.socket, (i) => i.connections === CAP && i.rejected_capacity - full.rejected_capacity === 3 + BURST, {
      message: 'every refusal counted, the refused connections gone',
    });
    assert.equal(after.subscribers, CAP);
    assert.equal(after.rejected_global, 0);

    assert.equal(await publish(srv.socket, 'nofile', 'two'), CAP);
    for (const s of subs) {
      await s.waitEvents(2);
      assert.deepEqual(s.events.map((e) => e.data), ['one', 'two']);
      assert.ok(!s.isClosed());
    }

    // a freed place is taken again
    subs.shift().close();
    await waitInfo(srv.socket, (i) => i.connections === CAP - 1, { message: 'one fewer' });
    subs.push(await subscribe(srv.port, 'nofile'));
    assert.equal(await publish(srv.socket, 'nofile', 'three'), CAP);
    await subs.at(-1).waitEvents(1);
  });
});
