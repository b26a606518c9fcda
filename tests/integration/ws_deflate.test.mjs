// permessage-deflate conformance (RFC 7692) against the raw socket, in the manner of Autobahn
// sections 12 and 13: the negotiation of section 7 (parameters, values, duplicates, several
// offers, compression = off), the server's shared compressed frames (RSV1 from compress_min_size
// on, exact inflation, identical bytes for every subscriber, never RSV1 for a client that did not
// negotiate) and compressed client messages of 16 B to 64 KiB, whole and fragmented, with and
// without context takeover, at several window sizes. Every violation (RSV1 where it may not be,
// corrupt or truncated DEFLATE, a deflate bomb, invalid UTF-8 after inflation) gets its Close
// status (1002, 1007, 1009) on that connection alone, while bystanders on the same channel (a
// compressing WebSocket, a plain one and an SSE stream) keep receiving every event.
//
// Client-side compression is Node's zlib (raw DEFLATE, sync flush, 00 00 ff ff removed), never
// ringcast's; client messages are counted by the engine (INFO ws_messages_in) and dropped, so the
// counter shows that a message was accepted whole.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  startServer,
  wsFrame,
  feedConnect,
  subscribe,
  publish,
  info,
  waitInfo,
  rawRequest,
  getRequest,
} from './lib/harness.mjs';
import {
  RSV1,
  TAIL,
  compress,
  ContextDeflater,
  inflate,
  messageFrames,
  handshake,
  wsOpenDeflate,
  expectCloseWith,
  textPayload,
  binaryPayload,
} from './lib/deflate.mjs';

const CH = 'deflate';
const MAX = 64 * 1024; // max_message
const MIN = 64; // compress_min_size
const PLAIN = 'permessage-deflate; server_no_context_takeover';

let srv;
let feed;
let zBystander; // negotiated permessage-deflate
let plainBystander; // did not offer it
let sse;
let published = 0;

before(async () => {
  srv = await startServer({
    websocket: { compression: 'on', compress_min_size: MIN, max_message: MAX, ping_interval: 0, close_timeout: 1 },
  });
  feed = await feedConnect(srv.socket);
  zBystander = await wsOpenDeflate(srv.port, CH);
  plainBystander = await wsOpenDeflate(srv.port, CH, null, null);
  sse = await subscribe(srv.port, CH);
});

after(async () => {
  zBystander?.close();
  plainBystander?.close();
  sse?.close();
  feed?.close();
  await srv?.stop();
});

/** Publishes one event, every other one large enough to be compressed, and checks that every
 * bystander got it whole: the compressing one with RSV1 when it is large, the plain one never. */
async function bystandersKeepUp() {
  const n = published++;
  const large = n % 2 === 1;
  const payload = large ? `event ${n} ` + textPayload(500, n + 100).toString() : `event ${n}`;
  assert.equal(await publish(srv.socket, CH, payload), 3, 'the event reaches the three bystanders, no one else');
  await zBystander.waitFrames(published);
  await plainBystander.waitFrames(published);
  const z = zBystander.frames[n];
  const p = plainBystander.frames[n];
  assert.equal(z.opcode, 1);
  assert.equal(z.rsv, large ? RSV1 : 0);
  assert.equal((large ? inflate(z.payload) : z.payload).toString(), payload);
  assert.equal(p.opcode, 1);
  assert.equal(p.rsv, 0);
  assert.equal(p.payload.toString(), payload);
  await sse.waitEvents(published);
  assert.equal(sse.events[n].data, payload);
}

/** Opens a victim on the bystanders' channel that negotiates `offer`, sends `bytes`, expects a
 * Close with `code` after `accepted` good messages, and then checks the bystanders. */
async function expectClose(bytes, code, { offer = 'permessage-deflate', agreed = PLAIN, accepted = 0 } = {}) {
  const c = await wsOpenDeflate(srv.port, CH, offer, agreed);
  const before = await info(srv.socket);
  await expectCloseWith(c, typeof bytes === 'function' ? await bytes() : bytes, code);
  const after = await info(srv.socket);
  assert.equal(after.ws_errors, before.ws_errors + 1, 'the failure is counted once');
  assert.equal(after.ws_messages_in, before.ws_messages_in + accepted, 'messages accepted before the bad one');
  await bystandersKeepUp();
}

/** Pings with `tag` and waits for its pong, so that everything sent before has been read. Fails
 * on a Close. */
async function roundTrip(c, tag) {
  c.frame(0x9, tag);
  await c.waitFor((x) => x.frames.some((f) => f.opcode === 0x8 || (f.opcode === 0xa && f.payload.toString() === tag)),
    5000, `pong ${tag}`);
  const close = c.frames.find((f) => f.opcode === 0x8);
  assert.equal(close, undefined, `unexpected Close ${close?.payload.subarray(0, 2).toString('hex')}`);
}

/** Sends frames one write each. */
function sendAll(c, frames) {
  for (const f of frames) c.send(f);
}

/** Waits until INFO ws_messages_in reaches `want`, then checks it did not pass it. */
async function expectMessagesIn(want) {
  const i = await waitInfo(srv.socket, (x) => x.ws_messages_in >= want, { message: `ws_messages_in ${want}` });
  assert.equal(i.ws_messages_in, want);
}

// ---------------------------------------------------------------------------------------------
// Negotiation (RFC 7692 section 7).

test('RFC 7692 7.1 a plain offer is accepted with server_no_context_takeover', async () => {
  assert.deepEqual((await handshake(srv.port, 'neg', ['permessage-deflate'])).extensions, [PLAIN]);
  // server_no_context_takeover offered by the client is what the server does anyway.
  assert.deepEqual((await handshake(srv.port, 'neg', ['permessage-deflate; server_no_context_takeover'])).extensions, [PLAIN]);
  // Whitespace around the separators is allowed (RFC 6455 9.1, OWS).
  assert.deepEqual((await handshake(srv.port, 'neg', ['permessage-deflate ;\tclient_no_context_takeover '])).extensions, [
    `${PLAIN}; client_no_context_takeover`,
  ]);
});

test('RFC 7692 7.1.2.2 client_max_window_bits without a value is accepted and not answered', async () => {
  assert.deepEqual((await handshake(srv.port, 'neg', ['permessage-deflate; client_max_window_bits'])).extensions, [PLAIN]);
});

test('RFC 7692 7.1.2.2 client_max_window_bits=8..15, also as a quoted-string, is answered with the same value', async () => {
  for (let bits = 8; bits <= 15; bits++) {
    for (const value of [String(bits), `"${bits}"`]) {
      const r = await handshake(srv.port, 'neg', [`permessage-deflate; client_max_window_bits=${value}`]);
      assert.equal(r.status, 101);
      assert.deepEqual(r.extensions, [`${PLAIN}; client_max_window_bits=${bits}`], value);
    }
  }
});

test('RFC 7692 7.1.2.1 server_max_window_bits=9..15 is answered with the same value; 15 gets compressed events, smaller windows plain ones', async () => {
  for (let bits = 9; bits <= 15; bits++) {
    const r = await handshake(srv.port, 'neg', [`permessage-deflate; server_max_window_bits=${bits}`]);
    assert.deepEqual(r.extensions, [`${PLAIN}; server_max_window_bits=${bits}`]);
  }
  // The shared frames are compressed with a 32 KiB window, so (ws_upgrade in engine/worker.c)
  // a client that limits the server's window is sent them uncompressed, which the extension
  // allows for any message; it has still negotiated the extension and may compress its own.
  const wide = await wsOpenDeflate(srv.port, 'window', 'permessage-deflate; server_max_window_bits=15', `${PLAIN}; server_max_window_bits=15`);
  const narrow = await wsOpenDeflate(srv.port, 'window', 'permessage-deflate; server_max_window_bits=10', `${PLAIN}; server_max_window_bits=10`);
  const quoted = await wsOpenDeflate(srv.port, 'window', 'permessage-deflate; server_max_window_bits="12"', `${PLAIN}; server_max_window_bits=12`);
  const payload = textPayload(2000, 7).toString();
  assert.equal(await publish(srv.socket, 'window', payload), 3);
  for (const c of [wide, narrow, quoted]) await c.waitFrames(1);
  assert.equal(wide.frames[0].rsv, RSV1);
  assert.equal(inflate(wide.frames[0].payload).toString(), payload);
  for (const c of [narrow, quoted]) {
    assert.equal(c.frames[0].rsv, 0);
    assert.equal(c.frames[0].payload.toString(), payload);
  }
  const before = (await info(srv.socket)).ws_messages_in;
  sendAll(narrow, messageFrames(0x1, compress(payload)));
  await roundTrip(narrow, 'narrow');
  await expectMessagesIn(before + 1);
  for (const c of [wide, narrow, quoted]) c.close();
});

test('RFC 7692 7.1 parameters are answered in a fixed order, whatever order they were offered in', async () => {
  const r = await handshake(srv.port, 'neg', [
    'permessage-deflate; client_max_window_bits=10; client_no_context_takeover; server_max_window_bits=11; server_no_context_takeover',
  ]);
  assert.deepEqual(r.extensions, [
    `${PLAIN}; client_no_context_takeover; server_max_window_bits=11; client_max_window_bits=10`,
  ]);
});

// Offers the server must decline (RFC 7692 section 7: an unknown parameter, a parameter twice, an
// invalid value, or a configuration the server does not support): the handshake still succeeds,
// without the extension.
const declined = [
  ['an unknown parameter', 'permessage-deflate; foo'],
  ['an unknown parameter with a value', 'permessage-deflate; client_max_window_bits; foo=1'],
  ['a parameter name in another case', 'permessage-deflate; Client_Max_Window_Bits'],
  ['client_max_window_bits twice', 'permessage-deflate; client_max_window_bits; client_max_window_bits=10'],
  ['server_max_window_bits twice', 'permessage-deflate; server_max_window_bits=10; server_max_window_bits=10'],
  ['client_no_context_takeover twice', 'permessage-deflate; client_no_context_takeover; client_no_context_takeover'],
  ['server_no_context_takeover twice', 'permessage-deflate; server_no_context_takeover; server_no_context_takeover'],
  ['server_no_context_takeover with a value', 'permessage-deflate; server_no_context_takeover=1'],
  ['client_no_context_takeover with a quoted value', 'permessage-deflate; client_no_context_takeover="x"'],
  ['server_max_window_bits without a value', 'permessage-deflate; server_max_window_bits'],
  ['server_max_window_bits=8 (zlib cannot compress with a 256-byte window)', 'permessage-deflate; server_max_window_bits=8'],
  ['server_max_window_bits=7', 'permessage-deflate; server_max_window_bits=7'],
  ['server_max_window_bits=16', 'permessage-deflate; server_max_window_bits=16'],
  ['server_max_window_bits=0', 'permessage-deflate; server_max_window_bits=0'],
  ['server_max_window_bits with a leading zero', 'permessage-deflate; server_max_window_bits=010'],
  ['server_max_window_bits=09', 'permessage-deflate; server_max_window_bits=09'],
  ['server_max_window_bits quoted with a leading zero', 'permessage-deflate; server_max_window_bits="010"'],
  ['server_max_window_bits not a number', 'permessage-deflate; server_max_window_bits=1x'],
  ['client_max_window_bits=7', 'permessage-deflate; client_max_window_bits=7'],
  ['client_max_window_bits=16', 'permessage-deflate; client_max_window_bits=16'],
  ['client_max_window_bits quoted 16', 'permessage-deflate; client_max_window_bits="16"'],
  ['client_max_window_bits with a leading zero', 'permessage-deflate; client_max_window_bits=08'],
  ['client_max_window_bits negative', 'permessage-deflate; client_max_window_bits=-9'],
  ['an extension name in another case', 'Permessage-Deflate'],
];
test('RFC 7692 7 an offer with an unknown, repeated or badly valued parameter is declined whole: 101 without the extension', async () => {
  for (const [what, offer] of declined) {
    const r = await handshake(srv.port, 'neg', [offer]);
    assert.equal(r.status, 101, `${what}: ${r.head}`);
    assert.equal(r.extensions, undefined, `${what}: ${offer} got ${r.extensions}`);
  }
});

test('RFC 7692 7 a client whose offer was declined may not set RSV1: 1002', () =>
  expectClose(messageFrames(0x1, compress('hello')), 1002, { offer: 'permessage-deflate; server_max_window_bits=8', agreed: null }));

// Values that break the grammar of RFC 6455 section 9.1 (a quoted-string must unescape to a
// token): the engine refuses the handshake with 400, as rc_deflate_negotiate() documents.
const malformed = [
  ['a trailing semicolon', 'permessage-deflate;'],
  ['an empty parameter name', 'permessage-deflate; =10'],
  ['an empty value', 'permessage-deflate; client_max_window_bits='],
  ['a missing semicolon', 'permessage-deflate client_max_window_bits'],
  ['an unterminated quoted-string', 'permessage-deflate; server_max_window_bits="10'],
  ['an empty quoted-string', 'permessage-deflate; server_max_window_bits=""'],
  ['a quoted-string that is not a token', 'permessage-deflate; server_max_window_bits="1 0"'],
  ['a quoted extension name', '"permessage-deflate"'],
  ['a broken element after an acceptable offer', 'permessage-deflate, permessage-deflate; ='],
];
test('RFC 6455 9.1 a Sec-WebSocket-Extensions value that breaks the grammar is answered 400', async () => {
  for (const [what, offer] of malformed) {
    const r = await handshake(srv.port, 'neg', [offer]);
    assert.equal(r.status, 400, `${what}: ${offer}: ${r.head}`);
  }
});

test('RFC 7692 7 of several offers the first acceptable one wins, also across header lines', async () => {
  const cases = [
    [['permessage-deflate; server_max_window_bits=8, permessage-deflate; client_no_context_takeover, permessage-deflate'],
      `${PLAIN}; client_no_context_takeover`],
    [['permessage-deflate; server_max_window_bits=10, permessage-deflate'], `${PLAIN}; server_max_window_bits=10`],
    [['permessage-deflate; foo, permessage-deflate; client_max_window_bits=12'], `${PLAIN}; client_max_window_bits=12`],
    [['x-webkit-deflate-frame', 'permessage-deflate; foo', 'permessage-deflate; client_max_window_bits=12'],
      `${PLAIN}; client_max_window_bits=12`],
    [['permessage-deflate; client_no_context_takeover', 'permessage-deflate'], `${PLAIN}; client_no_context_takeover`],
    [['foo; bar="a\\b", baz; q=1, permessage-deflate'], PLAIN],
  ];
  for (const [lines, want] of cases) {
    const r = await handshake(srv.port, 'neg', lines);
    assert.deepEqual(r.extensions, [want], JSON.stringify(lines));
  }
  // Nothing acceptable at all: no extension.
  const none = await handshake(srv.port, 'neg', ['permessage-deflate; server_max_window_bits=8, x-webkit-deflate-frame']);
  assert.equal(none.status, 101);
  assert.equal(none.extensions, undefined);
});

test('compression = off: the server answers no extension, sends no RSV1, and fails RSV1 from the client with 1002', async () => {
  const off = await startServer({ websocket: { compression: 'off', ping_interval: 0, close_timeout: 1 } });
  try {
    for (const offer of ['permessage-deflate', 'permessage-deflate; client_max_window_bits', 'permessage-deflate;']) {
      const r = await handshake(off.port, 'off', [offer]);
      assert.equal(r.status, 101, `${offer}: ${r.head}`);
      assert.equal(r.extensions, undefined, offer);
    }
    const c = await wsOpenDeflate(off.port, 'off', 'permessage-deflate', null);
    const big = 'z'.repeat(5000);
    assert.equal(await publish(off.socket, 'off', big), 1);
    await c.waitFrames(1);
    assert.equal(c.frames[0].rsv, 0);
    assert.equal(c.frames[0].payload.toString(), big);
    await expectCloseWith(c, messageFrames(0x1, compress(big)), 1002);
  } finally {
    await off.stop();
  }
});

// ---------------------------------------------------------------------------------------------
// Server frames.

test('server frames: events of compress_min_size bytes or more arrive with RSV1 and inflate on their own to the exact payload; smaller ones arrive plain', async () => {
  const a = await wsOpenDeflate(srv.port, 'frames');
  const b = await wsOpenDeflate(srv.port, 'frames', 'permessage-deflate; client_max_window_bits; client_no_context_takeover',
    `${PLAIN}; client_no_context_takeover`);
  const events = [
    ['small', false],
    ['a'.repeat(MIN - 1), false],
    ['a'.repeat(MIN), true],
    [textPayload(1000, 3).toString(), true],
    [JSON.stringify({ list: Array.from({ length: 400 }, (_, i) => ({ i, name: `item-${i}` })) }), true],
    // Past 64 KiB uncompressed: the plain frame has a 64-bit length.
    [textPayload(70000, 4).toString(), true],
    ['', false],
  ];
  for (const [p] of events) assert.equal(await publish(srv.socket, 'frames', p), 2);
  for (const c of [a, b]) {
    await c.waitFrames(events.length);
    events.forEach(([p, compressed], i) => {
      const f = c.frames[i];
      assert.equal(f.opcode, 1, `event ${i}`);
      assert.equal(f.fin, true);
      assert.equal(f.rsv, compressed ? RSV1 : 0, `event ${i} (${p.length} B)`);
      // A fresh inflater for every frame: server_no_context_takeover.
      const got = compressed ? inflate(f.payload) : f.payload;
      assert.ok(got.equals(Buffer.from(p)), `event ${i} inflates to its payload`);
      if (compressed) assert.ok(f.payload.length < Buffer.byteLength(p), `event ${i} is smaller compressed`);
    });
  }
  a.close();
  b.close();
});

test('server frames: XPUBLISH TEXT and BINARY keep their opcode when compressed; a payload that does not shrink goes uncompressed', async () => {
  const c = await wsOpenDeflate(srv.port, 'kinds');
  const noise = crypto.randomBytes(4096);
  const events = [
    // [args after the payload, payload, opcode, compressed]
    [['BINARY'], Buffer.from(textPayload(3000, 5)), 2, true],
    [['TEXT'], Buffer.from(textPayload(3000, 6)), 1, true],
    [[], Buffer.alloc(3000, 0xff), 2, true], // not UTF-8: binary without being told
    [['BINARY'], binaryPayload(5000, 9), 2, true],
    [['BINARY'], noise, 2, false], // random bytes do not compress (rc_event_new keeps the plain frame)
    [['TEXT'], Buffer.from('tiny'), 1, false],
  ];
  for (const [opts, payload] of events) {
    assert.deepEqual(await feed.command('XPUBLISH', 'kinds', payload, ...opts), { type: ':', value: 1 });
  }
  await c.waitFrames(events.length);
  events.forEach(([opts, payload, opcode, compressed], i) => {
    const f = c.frames[i];
    assert.equal(f.opcode, opcode, `event ${i} ${opts}`);
    assert.equal(f.rsv, compressed ? RSV1 : 0, `event ${i} ${opts}`);
    assert.ok((compressed ? inflate(f.payload) : f.payload).equals(payload), `event ${i} payload`);
  });
  c.close();
});

test('server frames: every negotiating subscriber gets identical bytes; a client that did not negotiate never sees RSV1', async () => {
  // Enough connections that both workers have some of each kind.
  const z = [];
  const plain = [];
  for (let i = 0; i < 4; i++) {
    z.push(await wsOpenDeflate(srv.port, 'same'));
    z.push(await wsOpenDeflate(srv.port, 'same', 'permessage-deflate; client_max_window_bits=10', `${PLAIN}; client_max_window_bits=10`));
    plain.push(await wsOpenDeflate(srv.port, 'same', null, null));
    plain.push(await wsOpenDeflate(srv.port, 'same', 'permessage-deflate; foo', null));
    plain.push(await wsOpenDeflate(srv.port, 'same', 'permessage-deflate; server_max_window_bits=9', `${PLAIN}; server_max_window_bits=9`));
  }
  const payloads = [];
  for (let i = 0; i < 20; i++) payloads.push(i % 3 === 0 ? `short ${i}` : textPayload(200 + 997 * i, 50 + i).toString());
  for (const p of payloads) assert.equal(await publish(srv.socket, 'same', p), z.length + plain.length);
  for (const c of [...z, ...plain]) await c.waitFrames(payloads.length);
  for (const c of z) {
    assert.deepEqual(c.frames.map((f) => [f.opcode, f.rsv, f.fin]), z[0].frames.map((f) => [f.opcode, f.rsv, f.fin]));
    c.frames.forEach((f, i) => assert.ok(f.payload.equals(z[0].frames[i].payload), `event ${i}: the same bytes`));
  }
  z[0].frames.forEach((f, i) => {
    assert.equal(f.rsv, i % 3 === 0 ? 0 : RSV1);
    assert.equal((f.rsv ? inflate(f.payload) : f.payload).toString(), payloads[i]);
  });
  for (const c of plain) {
    c.frames.forEach((f, i) => {
      assert.equal(f.rsv, 0);
      assert.equal(f.payload.toString(), payloads[i]);
    });
  }
  for (const c of [...z, ...plain]) c.close();
});

// ---------------------------------------------------------------------------------------------
// Client messages (Autobahn 12.x and 13.x).

const SIZES = [16, 64, 256, 1024, 4096, 8192, 16384, 32768, 65536];

/** Fragment sizes: one frame, two, frames of 64 bytes, and frames of one byte for short ones. */
function fragmentings(compressedLen) {
  const out = [0, Math.ceil(compressedLen / 2), 64];
  if (compressedLen <= 300) out.push(1);
  return out;
}

// Autobahn's 13.x cases use windows of 8 and 15 bits; zlib compresses a raw stream with a 512-byte
// window when asked for 256 bytes, so the smallest window that a client here keeps to is 9 bits.
const configs = [
  { name: '13.1 default: context takeover, 32 KiB window', offer: 'permessage-deflate; client_max_window_bits', agreed: PLAIN, takeover: true, windowBits: 15 },
  { name: '13.2 client_no_context_takeover', offer: 'permessage-deflate; client_no_context_takeover', agreed: `${PLAIN}; client_no_context_takeover`, takeover: false, windowBits: 15 },
  { name: '13.3 client_max_window_bits=9, context takeover', offer: 'permessage-deflate; client_max_window_bits=9', agreed: `${PLAIN}; client_max_window_bits=9`, takeover: true, windowBits: 9 },
  { name: '13.4 client_max_window_bits=15, context takeover', offer: 'permessage-deflate; client_max_window_bits=15', agreed: `${PLAIN}; client_max_window_bits=15`, takeover: true, windowBits: 15 },
  { name: '13.5 client_max_window_bits=9 and client_no_context_takeover', offer: 'permessage-deflate; client_no_context_takeover; client_max_window_bits=9', agreed: `${PLAIN}; client_no_context_takeover; client_max_window_bits=9`, takeover: false, windowBits: 9 },
];

for (const cfg of configs) {
  test(`Autobahn 12.x/${cfg.name}: compressed text and binary of 16 B to 64 KiB, in one frame and fragmented, are accepted whole`, async () => {
    const c = await wsOpenDeflate(srv.port, 'in', cfg.offer, cfg.agreed);
    const deflater = cfg.takeover ? new ContextDeflater({ windowBits: cfg.windowBits }) : null;
    const before = (await info(srv.socket)).ws_messages_in;
    let sent = 0;
    let fragments = 0;
    try {
      for (const size of SIZES) {
        for (const [opcode, payload] of [[0x1, textPayload(size, size)], [0x2, binaryPayload(size, size)]]) {
          const plainLen = compress(payload, { windowBits: cfg.windowBits }).length;
          for (const fragment of fragmentings(plainLen)) {
            // With context takeover every message continues the same DEFLATE stream, so each
            // repetition of a payload is mostly references back into the previous messages.
            const data = deflater ? await deflater.compress(payload) : compress(payload, { windowBits: cfg.windowBits });
            const frames = messageFrames(opcode, data, { fragment });
            fragments += frames.length;
            for (const f of frames) c.send(f);
            sent++;
          }
        }
      }
      await roundTrip(c, 'all sent');
      assert.deepEqual(c.frames.map((f) => f.opcode), [0xa], 'no Close: every message was accepted');
      await expectMessagesIn(before + sent);
      assert.ok(fragments > sent * 2, `${sent} messages in ${fragments} frames`);
    } finally {
      deflater?.close();
      c.close();
    }
  });
}

test('Autobahn 13.x with context takeover a message that refers back into the previous one inflates correctly', async () => {
  const c = await wsOpenDeflate(srv.port, 'in', 'permessage-deflate; client_max_window_bits', PLAIN);
  const deflater = new ContextDeflater();
  const before = (await info(srv.socket)).ws_messages_in;
  try {
    const m = textPayload(4000, 77);
    const first = await deflater.compress(m);
    const second = await deflater.compress(m);
    // The second is a handful of back-references: it cannot be inflated without the first.
    assert.ok(second.length * 10 < first.length, `first ${first.length} B, second ${second.length} B`);
    assert.throws(() => inflate(second), /distance too far back|invalid/);
    sendAll(c, messageFrames(0x1, first));
    sendAll(c, messageFrames(0x1, second));
    // Fragmented as well, a byte per frame, and the RFC 7692 7.2.3.2 example: "Hello" twice,
    // the second time as a reference into the first.
    const third = await deflater.compress(m);
    for (const f of messageFrames(0x1, third, { fragment: 1 })) c.send(f);
    c.send(wsFrame(0x1, Buffer.from('f248cdc9c90700', 'hex'), { rsv: RSV1 }));
    c.send(wsFrame(0x1, Buffer.from('f200110000', 'hex'), { rsv: RSV1 }));
    await roundTrip(c, 'takeover');
    assert.equal(c.frames.length, 1, 'no Close');
    await expectMessagesIn(before + 5);
  } finally {
    deflater.close();
    c.close();
  }
});

test('Autobahn 13.x compressed and uncompressed messages may alternate; the window survives the uncompressed ones', async () => {
  const c = await wsOpenDeflate(srv.port, 'in');
  const deflater = new ContextDeflater();
  const before = (await info(srv.socket)).ws_messages_in;
  try {
    const m = textPayload(2000, 78);
    sendAll(c, messageFrames(0x1, await deflater.compress(m)));
    c.frame(0x1, m); // RSV1 clear: not compressed, not part of the DEFLATE stream
    c.frame(0x2, Buffer.from([0xff, 0xfe]), { fin: false });
    c.frame(0x0, Buffer.from([0xfd]));
    for (const f of messageFrames(0x1, await deflater.compress(m), { fragment: 3 })) c.send(f);
    await roundTrip(c, 'alternate');
    assert.equal(c.frames.length, 1, 'no Close');
    await expectMessagesIn(before + 4);
  } finally {
    deflater.close();
    c.close();
  }
});

test('RFC 7692 7.2.3 the RFC example encodings are accepted: stored block, final blocks, two blocks, empty message', async () => {
  const c = await wsOpenDeflate(srv.port, 'in');
  const before = (await info(srv.socket)).ws_messages_in;
  const examples = [
    'f248cdc9c90700', // 7.2.3.1 "Hello"
    '000500faff48656c6c6f00', // 7.2.3.3 a stored block
    'f348cdc9c9070000', // 7.2.3.4 a BFINAL block, then an empty stored block header
    'f348cdc9c90700', // the same as zlib's Z_FINISH makes it
    'f24805000000ffffcac9c90700', // 7.2.3.5 two blocks in one message
    'f24805000000ffffcbc9c90700', // the same with BFINAL on the second block
    'f248cdc9c90704', // "Hello", then the header of an empty stored block with BFINAL set
    '00', // 7.2.3.6 an empty message: one empty stored block header
  ];
  for (const hex of examples) c.send(wsFrame(0x1, Buffer.from(hex, 'hex'), { rsv: RSV1 }));
  // The two-block example again, with the frame boundary between its blocks.
  c.send(wsFrame(0x1, Buffer.from('f2480500', 'hex'), { rsv: RSV1, fin: false }));
  c.send(wsFrame(0x0, Buffer.from('0000ffffcac9c90700', 'hex')));
  // After all of that the context still works: "Hello" as a reference back.
  c.send(wsFrame(0x1, Buffer.from('f200110000', 'hex'), { rsv: RSV1 }));
  await roundTrip(c, 'examples');
  assert.equal(c.frames.length, 1, 'no Close');
  await expectMessagesIn(before + examples.length + 2);
  c.close();
});

test('RFC 7692 7.2.3.6 a compressed message may have empty fragments, first and last, and may end with a fragment of one 00 byte', async () => {
  const c = await wsOpenDeflate(srv.port, 'in');
  const before = (await info(srv.socket)).ws_messages_in;
  const m = textPayload(5000, 22);
  const data = compress(m);
  // Empty first and last fragments; RSV1 goes on the empty first one.
  c.send(wsFrame(0x1, Buffer.alloc(0), { rsv: RSV1, fin: false }));
  c.send(wsFrame(0x0, data.subarray(0, 100), { fin: false }));
  c.send(wsFrame(0x0, Buffer.alloc(0), { fin: false }));
  c.send(wsFrame(0x0, data.subarray(100), { fin: false }));
  c.send(wsFrame(0x0, Buffer.alloc(0)));
  // A sender that did not know the message had ended: the data flushed with its 00 00 ff ff
  // kept, then a last fragment holding only the header of an empty stored block (7.2.3.6).
  c.send(wsFrame(0x2, Buffer.concat([data, TAIL]), { rsv: RSV1, fin: false }));
  c.send(wsFrame(0x0, Buffer.from([0x00])));
  await roundTrip(c, 'empty fragments');
  await expectMessagesIn(before + 2);
  c.close();
});

test('Autobahn 5.x pings between the fragments of a compressed message are answered, and the message is accepted', async () => {
  const c = await wsOpenDeflate(srv.port, 'in');
  const before = (await info(srv.socket)).ws_messages_in;
  const frames = messageFrames(0x2, compress(binaryPayload(10000, 11)), { fragment: 500 });
  frames.forEach((f, i) => {
    c.send(f);
    if (i % 3 === 0) c.frame(0x9, `mid ${i}`);
  });
  await roundTrip(c, 'end');
  assert.ok(c.frames.every((f) => f.opcode === 0xa && f.rsv === 0), 'only pongs, none with RSV1');
  await expectMessagesIn(before + 1);
  c.close();
});

test('Autobahn 9.x a compressed message that inflates to exactly max_message is accepted, one byte more fails with 1009', async () => {
  const c = await wsOpenDeflate(srv.port, 'in');
  const before = (await info(srv.socket)).ws_messages_in;
  sendAll(c, messageFrames(0x2, compress(Buffer.alloc(MAX, 0x61))));
  sendAll(c, messageFrames(0x1, compress(textPayload(MAX, 12)), { fragment: 100 }));
  await roundTrip(c, 'exact');
  await expectMessagesIn(before + 2);
  c.close();
  await expectClose(messageFrames(0x2, compress(Buffer.alloc(MAX + 1, 0x61))), 1009);
  await expectClose(messageFrames(0x1, compress(textPayload(MAX + 1, 12)), { fragment: 100 }), 1009);
});

test('Autobahn 9.x a deflate bomb (1 MiB of zeros in about 1 KiB) fails with 1009, whole or fragmented; the server and everyone else carry on', async () => {
  const bomb = compress(Buffer.alloc(1024 * 1024));
  assert.ok(bomb.length < 2048, `bomb is ${bomb.length} B`);
  // Another client of the extension, mid-conversation with its own context, on another worker
  // or the same one.
  const other = await wsOpenDeflate(srv.port, 'in');
  const deflater = new ContextDeflater();
  const before = (await info(srv.socket)).ws_messages_in;
  try {
    sendAll(other, messageFrames(0x1, await deflater.compress(textPayload(3000, 13))));
    await roundTrip(other, 'before');
    await expectClose(messageFrames(0x2, bomb), 1009);
    await expectClose(messageFrames(0x2, bomb, { fragment: 16 }), 1009);
    // Text: fails for size before the UTF-8 check could matter.
    await expectClose(messageFrames(0x1, bomb, { fragment: 200 }), 1009);
    // With context takeover on the victim too, after a good message.
    await expectClose(async () => {
      const d = new ContextDeflater();
      const good = await d.compress('good');
      const bad = await d.compress(Buffer.alloc(1024 * 1024));
      d.close();
      return [...messageFrames(0x1, good), ...messageFrames(0x2, bad)];
    }, 1009, { accepted: 1 });
    sendAll(other, messageFrames(0x1, await deflater.compress(textPayload(3000, 13)), { fragment: 7 }));
    await roundTrip(other, 'still here');
    assert.deepEqual(other.frames.map((f) => f.opcode), [0xa, 0xa], 'the other client was not closed');
    // The three good messages above: the other client's two, and the victim's first.
    await expectMessagesIn(before + 3);
    const health = await rawRequest(srv.port, getRequest('/health'), { timeout: 2000 });
    assert.equal(health.status, 200);
  } finally {
    deflater.close();
    other.close();
  }
});

test('Autobahn 9.x a compressed message is also held to max_message on the wire: incompressible data just over it fails with 1009', async () => {
  // Random bytes grow a little when "compressed"; they would inflate to exactly max_message, but
  // the wire bytes already pass it (rc_ws_check_frame, include/ringcast/ws.h).
  const data = compress(crypto.randomBytes(MAX));
  assert.ok(data.length > MAX);
  await expectClose(messageFrames(0x2, data), 1009);
  await expectClose(messageFrames(0x2, data, { fragment: 4096 }), 1009);
});

const corrupt = [
  ['a reserved block type (BTYPE 11)', Buffer.from('ff', 'hex')],
  ['a stored block whose NLEN is not the complement of LEN', Buffer.from('000500000048656c6c6f', 'hex')],
  ['a reference before the start of the stream (RFC 7692 7.2.3.2 sent first)', Buffer.from('f200110000', 'hex')],
  ['an invalid code lengths set', Buffer.from('04c0', 'hex')],
  ['random bytes', Buffer.from('7f3ab2c9e5d1087744', 'hex')],
];
for (const [what, bytes] of corrupt) {
  test(`RFC 7692 7.2.2 corrupt DEFLATE data fails with 1007: ${what}`, () => {
    assert.throws(() => inflate(bytes), 'zlib refuses it too');
    return expectClose(wsFrame(0x2, bytes, { rsv: RSV1 }), 1007);
  });
}

test('RFC 7692 7.2.2 corrupt DEFLATE data in a later fragment fails with 1007', async () => {
  // A good first block, completed by its own 00 00 ff ff, then a block of the reserved type.
  const data = Buffer.concat([compress(binaryPayload(20000, 14)), TAIL, Buffer.from([0xff])]);
  assert.throws(() => inflate(data), /invalid block type/);
  const frames = messageFrames(0x2, data, { fragment: 300 });
  assert.ok(frames.length > 3);
  await expectClose(frames, 1007);
});

// RFC 7692 7.2.1 ends every compressed message with (part of) the header of an empty stored block,
// which the receiver's 00 00 ff ff completes. A message cut short before it, or an empty payload,
// leaves the tail to be read as compressed data: it is invalid, not a shorter message.
const cutShort = [
  ['"Hello" without its last byte (it used to pass as "Hello")', 'f248cdc9c907'],
  ['"Hello" without its last two bytes (it used to pass as "Hellh")', 'f248cdc9c9'],
  ['"Hello" cut inside its first literal', 'f248cd'],
  ['an empty payload with RSV1', ''],
];
for (const [what, hex] of cutShort) {
  for (const [mode, offer, agreed] of [
    ['with context takeover', 'permessage-deflate', PLAIN],
    ['with client_no_context_takeover', 'permessage-deflate; client_no_context_takeover', `${PLAIN}; client_no_context_takeover`],
  ]) {
    test(`RFC 7692 7.2.1 a compressed message cut short fails with 1007, ${mode}: ${what}`, () =>
      expectClose(
        // A good message first, and a good one after, which must not be the one blamed.
        [wsFrame(0x1, compress('first'), { rsv: RSV1 }), wsFrame(0x1, Buffer.from(hex, 'hex'), { rsv: RSV1 }), wsFrame(0x1, compress('after'), { rsv: RSV1 })],
        1007,
        { offer, agreed, accepted: 1 },
      ));
  }
}

test('RFC 7692 7.1.1.2 with client_no_context_takeover a reference into the previous message fails with 1007', () =>
  expectClose(async () => {
    const d = new ContextDeflater();
    const m = textPayload(1000, 15);
    const first = await d.compress(m);
    const second = await d.compress(m);
    d.close();
    return [...messageFrames(0x1, first), ...messageFrames(0x1, second)];
  }, 1007, { offer: 'permessage-deflate; client_no_context_takeover', agreed: `${PLAIN}; client_no_context_takeover`, accepted: 1 }));

test('RFC 7692 6 RSV1 on a continuation frame fails with 1002', async () => {
  const frames = messageFrames(0x1, compress(textPayload(3000, 16)), { fragment: 100, rsvOnContinuation: true });
  assert.ok(frames.length > 2);
  await expectClose(frames, 1002);
  // Also when the message itself was not compressed.
  await expectClose([wsFrame(0x1, 'abc', { fin: false }), wsFrame(0x0, compress('def'), { rsv: RSV1 })], 1002);
});

test('RFC 6455 5.2 RSV1 without the extension negotiated fails with 1002', async () => {
  await expectClose(messageFrames(0x1, compress('hello')), 1002, { offer: null, agreed: null });
  await expectClose(messageFrames(0x2, compress(Buffer.alloc(100))), 1002, { offer: 'x-webkit-deflate-frame', agreed: null });
});

for (const [name, opcode, payload] of [['ping', 0x9, 'p'], ['pong', 0xa, 'q'], ['close', 0x8, Buffer.from([0x03, 0xe8])]]) {
  test(`RFC 7692 6 RSV1 on a ${name} frame fails with 1002`, () => expectClose(wsFrame(opcode, payload, { rsv: RSV1 }), 1002));
}

test('RFC 7692 6 RSV1 on a ping between the fragments of a compressed message fails with 1002', () => {
  const frames = messageFrames(0x1, compress(textPayload(2000, 17)), { fragment: 200 });
  return expectClose([frames[0], wsFrame(0x9, 'mid', { rsv: RSV1 }), ...frames.slice(1)], 1002);
});

test('Autobahn 5.x a new compressed message inside a fragmented one fails with 1002', () => {
  const frames = messageFrames(0x1, compress(textPayload(2000, 18)), { fragment: 200 });
  return expectClose([frames[0], ...messageFrames(0x1, compress('again'))], 1002);
});

const badText = [
  ['an invalid byte', Buffer.concat([Buffer.from('valid text '), Buffer.from([0xff]), Buffer.from(' more')])],
  ['a surrogate', Buffer.from([0x61, 0xed, 0xa0, 0x80])],
  ['an overlong form', Buffer.from([0xc0, 0xaf])],
  ['a code point above U+10FFFF', Buffer.from([0xf4, 0x90, 0x80, 0x80])],
  ['a truncated code point at the end', Buffer.concat([textPayload(1000, 19), Buffer.from([0xe2, 0x82])])],
];
for (const [what, bytes] of badText) {
  test(`Autobahn 6.x compressed text that inflates to ${what} fails with 1007`, () => expectClose(messageFrames(0x1, compress(bytes)), 1007));
}

test('Autobahn 6.x compressed text with invalid UTF-8 deep inside, fragmented, fails with 1007', () => {
  const text = Buffer.concat([textPayload(20000, 20), Buffer.from([0xf8]), textPayload(20000, 21)]);
  return expectClose(messageFrames(0x1, compress(text), { fragment: 512 }), 1007);
});

test('the engine counted every failure and the bystanders kept receiving every event', async () => {
  await bystandersKeepUp();
  await bystandersKeepUp();
  await waitInfo(srv.socket, (x) => x.subscribers === 3, { message: 'only the bystanders left' });
  const i = await info(srv.socket);
  assert.ok(i.ws_errors >= 30, `ws_errors ${i.ws_errors}`);
  assert.equal(zBystander.frames.length, published);
  assert.equal(plainBystander.frames.length, published);
  assert.ok(zBystander.frames.some((f) => f.rsv === RSV1));
  assert.ok(plainBystander.frames.every((f) => f.rsv === 0));
});
