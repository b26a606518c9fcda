// The cutting proxy (lib/proxy.mjs) the resume tests rely on, checked against the real server:
// bytes pass through untouched, cuts reach both the client and the server, reconnects go through,
// cutRandom cuts exactly what it says, an outage refuses new connections, a client that stops
// reading stays a slow consumer (the proxy does not soak up the stream), and close() is bounded.
// None of this needs resume: after a cut the clients start live again.

import { describe, test, before, after, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import {
  startServer,
  sseConnect,
  EventSource,
  publish,
  feedConnect,
  info,
  waitInfo,
  waitUntil,
  withTimeout,
  expectedFrame,
} from './lib/harness.mjs';
import { startProxy } from './lib/proxy.mjs';

describe('the cutting proxy', () => {
  let srv;
  let px; // a fresh proxy per test: clients may leave idle connections behind (undici does)
  before(async () => {
    srv = await startServer({ sse: { retry: 0.02 }, channels: { history_size: 64, max_lag: 64 } });
  });
  beforeEach(async () => {
    px = await startProxy(srv.port);
  });
  afterEach(async () => {
    await px?.close();
  });
  after(async () => {
    await srv?.stop();
  });

  test('bytes pass through unchanged, both ways', async () => {
    const c = sseConnect(px.port, 'px1');
    try {
      await c.waitHead();
      assert.equal(c.head.status, 200, c.headText);
      await waitInfo(srv.socket, (i) => i.subscribers === 1, { message: 'subscribed through the proxy' });
      assert.equal(await publish(srv.socket, 'px1', 'one\ntwo'), 1);
      await c.waitEvents(1);
      assert.equal(c.events[0].raw.toString(), expectedFrame(c.events[0].id, 'one\ntwo'));
      assert.deepEqual(c.parser.retries, ['20'], 'the retry: hint passed through');
    } finally {
      c.close();
    }
    await waitInfo(srv.socket, (i) => i.subscribers === 0, { message: 'the client hang-up reached the server' });
    assert.equal(px.count(), 0);
  });

  for (const mode of ['reset', 'close']) {
    test(`cutAll (${mode}) ends raw clients and the server side; eventsource and ws reconnect through it`, async () => {
      const raws = [sseConnect(px.port, 'px2'), sseConnect(px.port, 'px2')];
      const got = [];
      const es = new EventSource(px.url('/sse/px2'));
      let opens = 0;
      let errors = 0;
      es.onopen = () => opens++;
      es.onerror = () => errors++;
      es.onmessage = (e) => got.push(e.data);
      let wsOpens = 0;
      const wsGot = [];
      let ws;
      let stopWs = false;
      const openWs = () => {
        ws = new WebSocket(px.wsUrl('/ws/px2'));
        ws.on('open', () => wsOpens++);
        ws.on('message', (d) => wsGot.push(d.toString()));
        ws.on('error', () => {});
        ws.on('close', () => {
          if (!stopWs) setTimeout(openWs, 20);
        });
      };
      openWs();
      try {
        for (const r of raws) await r.waitHead();
        await waitUntil(() => opens === 1 && wsOpens === 1, { message: 'eventsource and ws open' });
        await waitInfo(srv.socket, (i) => i.subscribers === 4, { message: '4 subscribers' });
        assert.equal(px.count(), 4);
        assert.equal(await publish(srv.socket, 'px2', 'before'), 4);
        await waitUntil(() => got.length === 1 && wsGot.length === 1, { message: 'first event' });

        const cutsBefore = px.cuts;
        assert.equal(px.cutAll({ mode }), 4);
        assert.equal(px.cuts - cutsBefore, 4);
        for (const r of raws) await withTimeout(r.closed, 3000, 'the raw client sees the cut');
        await waitUntil(() => opens === 2 && wsOpens === 2, { timeout: 5000, message: `reconnects (es ${opens}, ws ${wsOpens})` });
        assert.ok(errors >= 1, 'eventsource saw the cut as an error');
        await waitInfo(srv.socket, (i) => i.subscribers === 2, { message: 'the server dropped the cut streams; the reconnected two are in' });
        assert.equal(await publish(srv.socket, 'px2', 'after'), 2);
        await waitUntil(() => got.length === 2 && wsGot.length === 2, { message: 'the event after the reconnect' });
        assert.deepEqual(got, ['before', 'after']);
        assert.deepEqual(wsGot, ['before', 'after']);
      } finally {
        stopWs = true;
        es.close();
        ws.terminate();
        for (const r of raws) r.close();
      }
      await waitInfo(srv.socket, (i) => i.subscribers === 0, { message: 'all gone' });
    });
  }

  test('cutRandom({count}) cuts exactly that many, and a fraction of 0 or 1 none or all', async () => {
    const cs = Array.from({ length: 6 }, () => sseConnect(px.port, 'px3'));
    try {
      for (const c of cs) await c.waitHead();
      await waitInfo(srv.socket, (i) => i.subscribers === 6, { message: '6 subscribers' });
      assert.equal(px.cutRandom({ count: 2 }), 2);
      await waitUntil(() => cs.filter((c) => c.isClosed()).length === 2, { message: '2 clients cut' });
      await waitInfo(srv.socket, (i) => i.subscribers === 4, { message: '4 left' });
      assert.equal(px.count(), 4);
      assert.equal(px.cutRandom(0), 0);
      assert.equal(px.cutRandom(1), 4);
      await waitUntil(() => cs.every((c) => c.isClosed()), { message: 'all cut' });
      await waitInfo(srv.socket, (i) => i.subscribers === 0, { message: 'none left' });
    } finally {
      for (const c of cs) c.close();
    }
  });

  test('setDown(true) resets new connections until setDown(false)', async () => {
    px.setDown(true);
    try {
      const c = sseConnect(px.port, 'px4');
      await withTimeout(c.closed, 3000, 'the refused connection to close');
      assert.equal(c.head, null);
    } finally {
      px.setDown(false);
    }
    const c = sseConnect(px.port, 'px4');
    try {
      await c.waitHead();
      assert.equal(c.head.status, 200);
    } finally {
      c.close();
    }
  });

  test('a client that stops reading through the proxy is still cut as a slow consumer', async () => {
    const before = await info(srv.socket);
    const slow = sseConnect(px.port, 'px5', { pause: true });
    const feed = await feedConnect(srv.socket);
    try {
      await waitInfo(srv.socket, (i) => i.subscribers === 1, { message: 'slow subscribed' });
      // Up to 400 x 32 KiB, far more than max_lag (64) events plus every buffer on the way, one
      // at a time until the cut. (Pipelined publishes to a channel nobody listens to any more
      // crash ringcast at this commit: see regressions.test.mjs.)
      for (let s = 0; s < 400; s++) {
        const r = await feed.command('PUBLISH', 'px5', 'x'.repeat(32 * 1024));
        assert.equal(r.type, ':');
        if (r.value === 0) break;
      }
      await waitInfo(srv.socket, (i) => i.slow_disconnects === before.slow_disconnects + 1, {
        message: 'the slow client behind the proxy is cut',
      });
    } finally {
      feed.close();
      slow.close();
    }
  });

  test('close() cuts what is left and returns', async () => {
    const extra = await startProxy(srv.port);
    const c = sseConnect(extra.port, 'px6');
    await c.waitHead();
    await withTimeout(extra.close(1000), 3000, 'close() to return');
    await withTimeout(c.closed, 3000, 'the client to be cut by close()');
    await assert.rejects(
      withTimeout(
        new Promise((resolve, reject) => {
          const s = sseConnect(extra.port, 'px6');
          s.socket.once('error', reject);
          s.closed.then(() => (s.head ? resolve() : reject(new Error('closed'))));
        }),
        3000,
        'connect after close',
      ),
      'nothing listens after close()',
    );
  });
});
