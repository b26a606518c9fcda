// Lifecycle: what clients see when the engine stops (SIGTERM), and what a slow WebSocket
// consumer gets when it is cut.
//
// At SIGTERM the engine stops accepting, lets every stream send what it still has within
// shutdown_grace, then ends SSE streams with a retry: hint and closes WebSockets with 1001.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import {
  startServer,
  subscribe,
  sseConnect,
  wsOpen,
  closeCode,
  publish,
  bulkPublishCli,
  info,
  waitInfo,
  waitUntil,
  withTimeout,
} from './lib/harness.mjs';

test('SIGTERM: SSE streams get retry: and end, WebSockets get Close 1001, exit 0', async () => {
  const srv = await startServer({ server: { shutdown_grace: 3 }, sse: { retry: 1.5 } });
  const sse = await subscribe(srv.port, 'bye');
  const ws = new WebSocket(`ws://127.0.0.1:${srv.port}/ws/bye`);
  const got = [];
  ws.on('message', (d) => got.push(d.toString()));
  const wsClosed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  try {
    await waitInfo(srv.socket, (i) => i.subscribers === 2, { message: '2 subscribers' });
    assert.equal(await publish(srv.socket, 'bye', 'last words'), 2);
    await sse.waitEvents(1);
    await waitUntil(() => got.length === 1, { message: 'ws got the event' });
    const retriesBefore = sse.parser.retries.length;
    await srv.stop('SIGTERM', 6000); // asserts exit 0
    await withTimeout(sse.closed, 5000, 'the SSE stream to end');
    assert.deepEqual(sse.parser.retries.slice(retriesBefore), ['1500'], 'told when to come back');
    const c = await withTimeout(wsClosed, 5000, 'the WebSocket to close');
    assert.equal(c.code, 1001);
    assert.deepEqual(got, ['last words']);
  } finally {
    sse.close();
    ws.terminate();
  }
});

test('SIGTERM flushes a backlog to a slow reader within shutdown_grace', async () => {
  const srv = await startServer({
    server: { shutdown_grace: 10 },
    channels: { history_size: 4096, max_lag: 4096 },
  });
  // A reader that does not read yet: the events queue in its socket and in the history.
  const slow = sseConnect(srv.port, 'backlog', { pause: true });
  try {
    await waitInfo(srv.socket, (i) => i.subscribers === 1, { message: 'subscriber' });
    const payload = 'x'.repeat(4000);
    const n = 1500; // 6 MB: more than the socket buffers hold
    await bulkPublishCli(srv.socket, Array.from({ length: n }, (_, i) => ['PUBLISH', 'backlog', `${i} ${payload}`]));
    const stopping = srv.stop('SIGTERM', 15000);
    slow.resume();
    await stopping;
    await withTimeout(slow.closed, 5000, 'the stream to end');
    assert.equal(slow.events.length, n, 'every event was delivered before the stream ended');
    slow.events.forEach((e, i) => assert.equal(e.data.split(' ')[0], String(i)));
    assert.equal(slow.parser.retries.at(-1), '2000', 'the default retry hint at shutdown');
  } finally {
    slow.close();
  }
});

test('a WebSocket that falls max_lag behind is closed with 1008 and counted', async () => {
  const srv = await startServer({
    channels: { history_size: 64, max_lag: 16 },
    websocket: { ping_interval: 0, close_timeout: 10 },
  });
  const slow = await wsOpen(srv.port, 'lag');
  const healthy = await wsOpen(srv.port, 'lag');
  try {
    slow.socket.pause();
    await waitInfo(srv.socket, (i) => i.subscribers === 2, { message: '2 subscribers' });
    const payload = 'y'.repeat(60000);
    for (let i = 0; i < 400; i++) {
      await publish(srv.socket, 'lag', `${i} ${payload}`);
      if ((await info(srv.socket)).slow_disconnects >= 1) break;
    }
    await waitInfo(srv.socket, (i) => i.slow_disconnects === 1, { message: 'one slow consumer cut' });
    slow.socket.resume();
    await slow.waitFor((c) => c.frames.some((f) => f.opcode === 0x8), 10000, 'a Close frame');
    const close = slow.frames.find((f) => f.opcode === 0x8);
    assert.equal(closeCode(close), 1008);
    assert.equal(close.payload.subarray(2).toString(), 'too slow');
    // Every data frame before the Close is a whole event, in order.
    const data = slow.frames.filter((f) => f.opcode === 0x1);
    data.forEach((f, i) => assert.equal(f.payload.toString().split(' ')[0], String(i)));
    // The healthy reader lost nothing.
    const last = (await info(srv.socket)).deliveries;
    assert.ok(last > 0);
    const healthyFrames = healthy.frames.filter((f) => f.opcode === 0x1);
    healthyFrames.forEach((f, i) => assert.equal(f.payload.toString().split(' ')[0], String(i)));
  } finally {
    slow.close();
    healthy.close();
    await srv.stop();
  }
});
