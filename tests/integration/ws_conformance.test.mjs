// WebSocket conformance against the raw socket, case by case in the manner of the Autobahn
// suite: framing (1), pings and pongs (2), reserved bits (3), opcodes (4), fragmentation (5),
// UTF-8 (6, split code points included), close handling (7), limits (9), keepalive. Each bad
// input gets its close status, only that connection closes, and a bystander WebSocket and SSE
// stream on the same channel keep receiving every event.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer,
  wsOpen,
  wsFrame,
  closeCode,
  feedConnect,
  subscribe,
  publish,
  info,
  waitInfo,
  sleep,
} from './lib/harness.mjs';

const CH = 'conf';
const MAX = 4096; // max_message
let srv;
let bystander;
let sse;
let published = 0;

before(async () => {
  srv = await startServer({
    websocket: { max_message: MAX, ping_interval: 0, close_timeout: 1 },
  });
  bystander = await wsOpen(srv.port, CH);
  sse = await subscribe(srv.port, CH);
});

after(async () => {
  bystander?.close();
  sse?.close();
  await srv?.stop();
});

/** Publishes one event and checks that both bystanders got it, in order. */
async function bystandersKeepUp() {
  const payload = `event ${published++}`;
  assert.equal(await publish(srv.socket, CH, payload), 2);
  await bystander.waitFrames(published);
  assert.equal(bystander.frames[published - 1].payload.toString(), payload);
  await sse.waitEvents(published);
  assert.equal(sse.events[published - 1].data, payload);
}

/** Sends `bytes` on a fresh WebSocket and expects a Close with `code`, then the TCP close. */
async function expectClose(bytes, code, { echo = false } = {}) {
  const c = await wsOpen(srv.port, 'victim', { unheard: false });
  for (const b of [].concat(bytes)) {
    c.send(b);
    await sleep(5);
  }
  await c.waitFor((x) => x.frames.some((f) => f.opcode === 0x8), 3000, `Close ${code}`);
  const close = c.frames.find((f) => f.opcode === 0x8);
  assert.equal(closeCode(close), code);
  assert.equal(close.masked, false);
  // Nothing follows our Close; the client answers it, and the server closes TCP.
  if (!echo) c.frame(0x8, Buffer.from([0x03, 0xe8]));
  assert.ok(await c.waitClosed(3000), 'the server closes the connection');
  assert.equal(c.frames.filter((f) => f.opcode === 0x8).length, 1);
  c.close();
  await bystandersKeepUp();
}

test('1.x framing: text and binary of every length class, in one write and byte by byte', async () => {
  const c = await wsOpen(srv.port, 'echo-less', { unheard: false });
  for (const n of [0, 125, 126, 127, 65535, 65536 - 1]) {
    if (n > MAX) continue;
    c.frame(0x1, 'a'.repeat(n));
    c.frame(0x2, Buffer.alloc(n, 0xff));
  }
  const frame = wsFrame(0x9, 'split');
  for (const b of frame) c.send(Buffer.from([b]));
  await c.waitFrames(1);
  assert.equal(c.frames[0].opcode, 0xa);
  assert.equal(c.frames[0].payload.toString(), 'split');
  await waitInfo(srv.socket, (i) => i.ws_messages_in >= 8, { message: 'messages counted' });
  c.close();
  await bystandersKeepUp();
});

test('2.x pings: pong with the same payload, 125 bytes, binary payload; pongs ignored', async () => {
  // One ping at a time, as Autobahn does: RFC 6455 5.5.3 lets a server that has not yet
  // answered earlier pings answer only the most recent one, so pings sent back to back may
  // legitimately get a single pong.
  const c = await wsOpen(srv.port, 'pings', { unheard: false });
  try {
    c.frame(0x9, '');
    await c.waitFrames(1);
    c.frame(0x9, Buffer.alloc(125, 0xfe));
    await c.waitFrames(2);
    c.frame(0xa, 'unsolicited');
    c.frame(0x9, 'last');
    await c.waitFrames(3);
    assert.deepEqual(c.frames.map((f) => f.opcode), [0xa, 0xa, 0xa]);
    assert.equal(c.frames[0].payload.length, 0);
    assert.deepEqual(c.frames[1].payload, Buffer.alloc(125, 0xfe));
    assert.equal(c.frames[2].payload.toString(), 'last');
  } finally {
    c.close();
  }
});

test('2.x a ping of 126 bytes fails with 1002', () => expectClose(wsFrame(0x9, Buffer.alloc(126)), 1002));
test('5.x a fragmented ping fails with 1002', () => expectClose(wsFrame(0x9, 'x', { fin: false }), 1002));
test('1.x an unmasked frame fails with 1002', () => expectClose(wsFrame(0x1, 'hi', { mask: false }), 1002));
for (const rsv of [1, 2, 4, 7]) {
  test(`3.x RSV bits ${rsv} without an extension fail with 1002`, () => expectClose(wsFrame(0x1, 'x', { rsv }), 1002));
}
for (const op of [3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf]) {
  test(`4.x reserved opcode ${op} fails with 1002`, () => expectClose(wsFrame(op, ''), 1002));
}
test('5.x a continuation without a start fails with 1002', () => expectClose(wsFrame(0x0, 'x'), 1002));
test('5.x a new text frame inside a fragmented message fails with 1002', () =>
  expectClose([wsFrame(0x1, 'a', { fin: false }), wsFrame(0x1, 'b')], 1002));

test('5.x fragmented messages, with pings in the middle answered', async () => {
  const c = await wsOpen(srv.port, 'frag', { unheard: false });
  const before = (await info(srv.socket)).ws_messages_in;
  c.frame(0x1, 'frag', { fin: false });
  c.frame(0x9, 'mid');
  c.frame(0x0, 'ment', { fin: false });
  c.frame(0x0, 'ed');
  c.frame(0x2, Buffer.from([1]), { fin: false });
  c.frame(0x0, Buffer.from([2]));
  await c.waitFrames(1);
  assert.equal(c.frames[0].payload.toString(), 'mid');
  await waitInfo(srv.socket, (i) => i.ws_messages_in === before + 2, { message: 'two messages' });
  c.close();
});

test('6.x valid UTF-8, also split inside code points across frames', async () => {
  const c = await wsOpen(srv.port, 'utf8', { unheard: false });
  const before = (await info(srv.socket)).ws_messages_in;
  const text = Buffer.from('κόσμε 𝄞 €', 'utf8');
  for (let cut = 1; cut < text.length; cut++) {
    c.frame(0x1, text.subarray(0, cut), { fin: false });
    c.frame(0x0, text.subarray(cut));
  }
  c.frame(0x9, 'done');
  await c.waitFrames(1);
  await waitInfo(srv.socket, (i) => i.ws_messages_in === before + text.length - 1, { message: 'all valid' });
  assert.equal(c.frames.length, 1);
  c.close();
});

const badUtf8 = [
  ['an invalid byte', Buffer.from([0x61, 0xff])],
  ['a surrogate', Buffer.from([0xed, 0xa0, 0x80])],
  ['an overlong form', Buffer.from([0xc0, 0xaf])],
  ['above U+10FFFF', Buffer.from([0xf4, 0x90, 0x80, 0x80])],
  ['a truncated code point at the end', Buffer.from([0xe2, 0x82])],
];
for (const [name, bytes] of badUtf8) {
  test(`6.x text with ${name} fails with 1007`, () => expectClose(wsFrame(0x1, bytes), 1007));
}

test('6.x invalid UTF-8 fails at the fragment that carries it, before the message ends', async () => {
  // The first fragment ends in the middle of a code point whose second byte is impossible.
  await expectClose([wsFrame(0x1, Buffer.from([0x61, 0xf4]), { fin: false }), wsFrame(0x0, Buffer.from([0x90]), { fin: false })], 1007);
});

test('7.x close: echoes the code; empty close is answered with 1000; the server closes TCP', async () => {
  for (const [payload, want] of [[Buffer.from([0x03, 0xe8]), 1000], [Buffer.alloc(0), 1000], [Buffer.concat([Buffer.from([0x0f, 0xa0]), Buffer.from('bye')]), 4000]]) {
    const c = await wsOpen(srv.port, 'closer', { unheard: false });
    c.frame(0x8, payload);
    await c.waitFrames(1);
    assert.equal(c.frames[0].opcode, 0x8);
    assert.equal(closeCode(c.frames[0]), want);
    assert.ok(await c.waitClosed(2000));
  }
});

for (const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535]) {
  test(`7.x close code ${code} fails with 1002`, () => {
    const p = Buffer.alloc(2);
    p.writeUInt16BE(code);
    return expectClose(wsFrame(0x8, p), 1002, { echo: true });
  });
}
test('7.x a close with one byte fails with 1002', () => expectClose(wsFrame(0x8, Buffer.from([3])), 1002, { echo: true }));
test('7.x a close reason that is not UTF-8 fails with 1002', () =>
  expectClose(wsFrame(0x8, Buffer.from([0x03, 0xe8, 0xff])), 1002, { echo: true }));

test('7.x after its Close the server drops a client that never answers, within close_timeout', async () => {
  const c = await wsOpen(srv.port, 'silent', { unheard: false });
  c.send(wsFrame(0x1, 'x', { mask: false }));
  await c.waitFrames(1);
  const t0 = Date.now();
  assert.ok(await c.waitClosed(3000));
  const ms = Date.now() - t0;
  assert.ok(ms >= 800 && ms < 2500, `closed after ${ms} ms (close_timeout 1 s)`);
});

test('9.x a message over max_message fails with 1009, whole or in fragments', async () => {
  await expectClose(wsFrame(0x2, Buffer.alloc(MAX + 1)), 1009);
  await expectClose(wsFrame(0x2, Buffer.alloc(0), { len: 2 ** 40 }), 1009);
  await expectClose([wsFrame(0x1, 'a'.repeat(MAX), { fin: false }), wsFrame(0x0, 'b')], 1009);
});

test('a message of exactly max_message bytes is accepted', async () => {
  const c = await wsOpen(srv.port, 'limit', { unheard: false });
  c.frame(0x2, Buffer.alloc(MAX - 1), { fin: false });
  c.frame(0x0, Buffer.alloc(1));
  c.frame(0x9, 'ok');
  await c.waitFrames(1);
  assert.equal(c.frames[0].opcode, 0xa);
  c.close();
});

test('a 64-bit length with the top bit set fails with 1002', () =>
  expectClose(Buffer.from([0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]), 1002, { echo: true }));

test('server frames: text for UTF-8, binary otherwise, XPUBLISH TEXT/BINARY', async () => {
  const c = await wsOpen(srv.port, 'kinds', { unheard: false });
  const feed = await feedConnect(srv.socket);
  await publish(srv.socket, 'kinds', 'plain');
  assert.deepEqual(await feed.command('XPUBLISH', 'kinds', 'as binary', 'BINARY'), { type: ':', value: 1 });
  assert.deepEqual(await feed.command('XPUBLISH', 'kinds', 'as text', 'text', 'EVENT', 't'), { type: ':', value: 1 });
  const bad = await feed.command('XPUBLISH', 'kinds', Buffer.from([0xff]), 'TEXT');
  assert.equal(bad.type, '-');
  assert.match(bad.value, /TEXT needs a payload that is valid UTF-8/);
  assert.equal((await feed.command('XPUBLISH', 'kinds', 'x', 'TEXT', 'BINARY')).type, '-');
  feed.close();
  await c.waitFrames(3);
  assert.deepEqual(c.frames.map((f) => [f.opcode, f.fin, f.rsv, f.payload.toString()]), [
    [1, true, 0, 'plain'],
    [2, true, 0, 'as binary'],
    [1, true, 0, 'as text'],
  ]);
  c.close();
});

test('the engine counted the failures and kept every bystander whole', async () => {
  await bystandersKeepUp();
  const i = await info(srv.socket);
  assert.ok(i.ws_errors >= 30, `ws_errors ${i.ws_errors}`);
  await waitInfo(srv.socket, (x) => x.subscribers === 2, { message: 'only the bystanders left' });
});
