// Limits and shutdown: connection capacity (503 + rejected_capacity), slow consumers (disconnected
// once more than max_lag events behind, counted in slow_disconnects, nobody else harmed), and
// SIGTERM/SIGINT ending every stream and the process with exit code 0.

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
} from './lib/harness.mjs';

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
