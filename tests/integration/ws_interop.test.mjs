// Interop with a WebSocket client no one here wrote: the `ws` npm package receives events with
// and without permessage-deflate (its offer negotiated, large events compressed once and shared),
// next to `eventsource` clients on the same channel; its automatic pongs keep it alive under
// keepalive pings, while a client that never answers is closed with 1001 and counted.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import {
  startServer,
  esConnect,
  wsOpen,
  closeCode,
  bulkPublishCli,
  info,
  waitUntil,
  withTimeout,
  sleep,
} from './lib/harness.mjs';

const servers = [];
after(async () => {
  for (const s of servers) await s.stop();
});

/** Opens a `ws` client on /ws/<channel> and records its messages as {text, binary}. */
async function wsClient(port, channel, opts = {}) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws/${channel}`, opts);
  const rec = { ws, got: [], closed: null };
  ws.on('message', (data, isBinary) => rec.got.push({ data: Buffer.from(data), isBinary }));
  ws.on('close', (code) => (rec.closed = code));
  await withTimeout(new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  }), 5000, `ws open on /ws/${channel}`);
  return rec;
}

test('ws receives events with and without permessage-deflate, next to eventsource', async () => {
  const srv = await startServer({ websocket: { compression: 'on', compress_min_size: 64, ping_interval: 0 } });
  servers.push(srv);
  const plain = await wsClient(srv.port, 'mix', { perMessageDeflate: false });
  const deflate = await wsClient(srv.port, 'mix', { perMessageDeflate: true });
  const tight = await wsClient(srv.port, 'mix', {
    perMessageDeflate: { serverMaxWindowBits: 10, clientNoContextTakeover: true },
  });
  const es = esConnect(srv.port, 'mix');
  await es.waitOpen();
  assert.equal(plain.ws.extensions, '');
  // `ws` reports the names of the extensions it agreed to.
  assert.equal(deflate.ws.extensions, 'permessage-deflate');
  assert.equal(tight.ws.extensions, 'permessage-deflate');

  const payloads = [
    'small',
    'é'.repeat(50),
    'big '.repeat(5000),
    JSON.stringify({ list: Array.from({ length: 300 }, (_, i) => ({ i, name: `item-${i}` })) }),
    '',
  ];
  const replies = await bulkPublishCli(srv.socket, payloads.map((p) => ['PUBLISH', 'mix', p]));
  assert.deepEqual(replies, payloads.map(() => 4));
  for (const c of [plain, deflate, tight]) {
    await waitUntil(() => c.got.length === payloads.length, { message: 'ws messages' });
    assert.deepEqual(c.got.map((m) => m.data.toString()), payloads);
    assert.ok(c.got.every((m) => !m.isBinary));
  }
  await es.waitCount(payloads.length);
  assert.deepEqual(es.received.map((e) => e.data), payloads);

  // A ws client sends text, binary and a compressed message; each is counted, none echoed.
  deflate.ws.send('x'.repeat(3000));
  deflate.ws.send(Buffer.from([1, 2, 3]));
  plain.ws.send('hello');
  await waitUntil(async () => (await info(srv.socket)).ws_messages_in === 3, { message: 'ws_messages_in 3' });

  for (const c of [plain, deflate, tight]) {
    c.ws.close(1000);
    await waitUntil(() => c.closed !== null, { message: 'close handshake' });
    assert.equal(c.closed, 1000);
  }
  es.close();
});

test('keepalive: ws answers pings and stays; a silent client is closed with 1001 and counted', async () => {
  const srv = await startServer({ websocket: { ping_interval: 0.6, pong_timeout: 0.3, close_timeout: 0.5 } });
  servers.push(srv);
  const alive = await wsClient(srv.port, 'ka');
  let pings = 0;
  alive.ws.on('ping', () => pings++);
  const silent = await wsOpen(srv.port, 'ka');
  await silent.waitFor((c) => c.frames.some((f) => f.opcode === 0x8), 4000, 'Close for a missing pong');
  assert.equal(silent.frames[0].opcode, 0x9, 'a ping came first');
  assert.equal(closeCode(silent.frames.find((f) => f.opcode === 0x8)), 1001);
  assert.ok(await silent.waitClosed(2000));
  await sleep(1500);
  assert.ok(pings >= 2, `pings ${pings}`);
  assert.equal(alive.closed, null);
  const i = await info(srv.socket);
  assert.equal(i.ws_pong_timeouts, 1);
  assert.ok(i.ws_pings >= 3);
  assert.equal(i.subscribers, 1);
  alive.ws.close();
});

test('the shared compressed frame: RSV1 from compress_min_size on, raw DEFLATE without context', async () => {
  const srv = await startServer({ websocket: { compression: 'on', compress_min_size: 64, ping_interval: 0 } });
  servers.push(srv);
  const zlib = await import('node:zlib');
  const offer = { headers: ['Sec-WebSocket-Extensions: permessage-deflate'] };
  const a = await wsOpen(srv.port, 'z', offer);
  const b = await wsOpen(srv.port, 'z', offer);
  const payloads = ['tiny', 'r'.repeat(64), 'abc'.repeat(1000)];
  await bulkPublishCli(srv.socket, payloads.map((p) => ['PUBLISH', 'z', p]));
  for (const c of [a, b]) {
    await c.waitFrames(3);
    assert.deepEqual(c.frames.map((f) => f.rsv), [0, 4, 4]);
    assert.equal(c.frames[0].payload.toString(), 'tiny');
    for (let i = 1; i < 3; i++) {
      const out = zlib.inflateRawSync(Buffer.concat([c.frames[i].payload, Buffer.from([0, 0, 0xff, 0xff])]), {
        finishFlush: zlib.constants.Z_SYNC_FLUSH,
      });
      assert.equal(out.toString(), payloads[i]);
    }
  }
  // Every subscriber got the same compressed bytes.
  assert.deepEqual(a.frames[2].payload, b.frames[2].payload);
  a.close();
  b.close();
});
