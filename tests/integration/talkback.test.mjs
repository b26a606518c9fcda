// Talking back over WebSocket: run-time /subscribe and /unsubscribe, the reply formats of raw
// and envelope mode, bad commands that get an error instead of a dropped connection, and what a
// client hears when nobody upstream listens. The feed's side (SUBSCRIBE, SEND, CLOSE) has its
// own tests in feed_pubsub.test.mjs.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startServer, publish, xpublish, info, waitInfo, waitUntil, rawRequest, wsOpen, wsFrame, closeCode } from './lib/harness.mjs';

let srv;

before(async () => {
  srv = await startServer({ channels: { max_channels_per_connection: 3 }, websocket: { ping_interval: 0 } });
});

after(async () => {
  await srv?.stop();
});

/** A `ws` client that records every message as {text, binary}. */
async function client(target, protocols) {
  const ws = new WebSocket(`ws://127.0.0.1:${srv.port}${target}`, protocols);
  const c = { ws, msgs: [] };
  ws.on('message', (d, binary) => c.msgs.push({ text: d.toString(), binary }));
  c.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  c.wait = (n, what = `${n} messages`) => waitUntil(() => c.msgs.length >= n, { timeout: 5000, message: what });
  c.texts = () => c.msgs.map((m) => m.text);
  return c;
}

test('raw mode: /subscribe adds a channel live, replies start with "!"', async () => {
  const c = await client('/ws/raw.a');
  try {
    c.ws.send('/subscribe raw.b');
    await c.wait(1);
    assert.equal(c.msgs[0].text, '!subscribed raw.b');
    assert.equal(await publish(srv.socket, 'raw.b', 'from b'), 1);
    assert.equal(await publish(srv.socket, 'raw.a', 'from a'), 1);
    await c.wait(3);
    assert.deepEqual(c.texts().slice(1), ['from b', 'from a'], 'both channels, in publish order');
    c.ws.send('/unsubscribe raw.a');
    await c.wait(4);
    assert.equal(c.msgs[3].text, '!unsubscribed raw.a');
    assert.equal(await publish(srv.socket, 'raw.a', 'gone'), 0);
    assert.equal(await publish(srv.socket, 'raw.b', 'still'), 1);
    await c.wait(5);
    assert.equal(c.msgs[4].text, 'still');
  } finally {
    c.ws.terminate();
  }
});

test('envelope mode: events carry id and channel; replies are header lines', async () => {
  const c = await client('/ws?channel=env.a');
  try {
    await waitInfo(srv.socket, (i) => i.subscribers >= 1, { message: 'subscriber' });
    await xpublish(srv.socket, 'env.a', 'hello', { event: 'greeting' });
    await c.wait(1);
    const [line, payload] = c.msgs[0].text.split('\n');
    const [kind, id, channel, type] = line.split(' ');
    assert.equal(kind, 'event');
    assert.match(id, /^[0-9a-f]+-\d+$/);
    assert.equal(channel, 'env.a');
    assert.equal(type, 'greeting');
    assert.equal(payload, 'hello');
    c.ws.send('/subscribe env.b');
    await c.wait(2);
    assert.equal(c.msgs[1].text, 'subscribed env.b\n');
    // A binary payload travels in a binary message with the same header line.
    await xpublish(srv.socket, 'env.b', 'binary', { binary: true });
    await c.wait(3);
    assert.equal(c.msgs[2].binary, true);
  } finally {
    c.ws.terminate();
  }
});

test('bad commands get an error message and the connection stays open', async () => {
  const c = await client('/ws?channel=bad.a');
  const before = (await info(srv.socket)).ws_command_errors;
  try {
    const cases = [
      ['/join x', /^error unknown command/],
      ['/subscribe', /^error missing channel name/],
      ['/subscribe a/b', /^error invalid channel name/],
      ['/subscribe bad.a', /^error already subscribed to bad\.a/],
      ['/unsubscribe nope', /^error not subscribed to nope/],
    ];
    for (const [cmd] of cases) c.ws.send(cmd);
    await c.wait(cases.length);
    cases.forEach(([cmd, re], i) => assert.match(c.msgs[i].text, re, cmd));
    // Over max_channels_per_connection (3).
    c.ws.send('/subscribe bad.b');
    c.ws.send('/subscribe bad.c');
    c.ws.send('/subscribe bad.d');
    await c.wait(cases.length + 3);
    assert.deepEqual(c.texts().slice(cases.length), [
      'subscribed bad.b\n',
      'subscribed bad.c\n',
      'error too many channels (max_channels_per_connection is 3)\n',
    ]);
    assert.equal((await info(srv.socket)).ws_command_errors, before + cases.length + 1);
    assert.equal(c.ws.readyState, WebSocket.OPEN);
    assert.equal(await publish(srv.socket, 'bad.c', 'alive'), 1);
    await c.wait(cases.length + 4);
  } finally {
    c.ws.terminate();
  }
});

test('a client message nobody listens to is answered so, and counted', async () => {
  const c = await client('/ws/lonely');
  const before = (await info(srv.socket)).ws_upstream_unheard;
  try {
    c.ws.send('anyone?');
    c.ws.send(Buffer.from([1, 2, 3]));
    await c.wait(2);
    assert.deepEqual(c.texts(), ['!error nobody is listening on lonely', '!error nobody is listening on lonely']);
    assert.equal((await info(srv.socket)).ws_upstream_unheard, before + 2);
    // A connection that left all its channels has nothing to tag a message with.
    c.ws.send('/unsubscribe lonely');
    c.ws.send('still here');
    await c.wait(4);
    assert.deepEqual(c.texts().slice(2), ['!unsubscribed lonely', '!error not subscribed to any channel']);
  } finally {
    c.ws.terminate();
  }
});

test('multi-channel requests: more channels than allowed is a 400, counted', async () => {
  const before = (await info(srv.socket)).channel_limit;
  const r = await rawRequest(
    srv.port,
    'GET /sse?channel=a&channel=b&channel=c&channel=d HTTP/1.1\r\nHost: x\r\n\r\n',
  );
  assert.equal(r.status, 400);
  const ws = await rawRequest(
    srv.port,
    'GET /ws?channel=a&channel=b&channel=c&channel=d HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n' +
      'Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
  );
  assert.equal(ws.status, 400);
  assert.equal((await info(srv.socket)).channel_limit, before + 2);
  // Duplicates count once; no channel at all, a bad name or a bad escape is a 400 too.
  const dup = await rawRequest(
    srv.port,
    'GET /sse?channel=a&channel=a&channel=a&channel=a HTTP/1.1\r\nHost: x\r\n\r\n',
    { timeout: 300 },
  );
  assert.equal(dup.status, 200);
  for (const q of ['', '?x=1', '?channel=a/b', '?channel=%zz', '?channel=a&envelope=2']) {
    const bad = await rawRequest(srv.port, `GET /sse${q} HTTP/1.1\r\nHost: x\r\n\r\n`);
    assert.equal(bad.status, 400, q);
  }
});

test('a client that lets max_queued replies pile up is closed with 1008, and counted', async () => {
  const small = await startServer({ websocket: { max_queued: 1, ping_interval: 0 } });
  try {
    const c = await wsOpen(small.port, 'q');
    const other = await wsOpen(small.port, 'q');
    // Three commands in one write: their replies are queued before any can be sent.
    c.send(Buffer.concat([wsFrame(0x1, '/x'), wsFrame(0x1, '/y'), wsFrame(0x1, '/z')]));
    await c.waitFor((x) => x.frames.some((f) => f.opcode === 0x8), 5000, 'a Close');
    const close = c.frames.find((f) => f.opcode === 0x8);
    assert.equal(closeCode(close), 1008);
    assert.equal(close.payload.subarray(2).toString(), 'replies not read');
    assert.equal((await info(small.socket)).ws_queue_overflows, 1);
    assert.equal(await publish(small.socket, 'q', 'still here'), 1);
    await other.waitFrames(1);
    other.close();
    c.close();
  } finally {
    await small.stop();
  }
});
