// The feed socket: RESP2 over a UNIX socket, spoken by redis-cli and by raw sockets.
//
// PING, INFO, PUBLISH, XPUBLISH, QUIT; pipelining; binary-safe payloads up to max_payload;
// command errors that keep the connection open; protocol errors that close it, after the events
// published before them on the same connection have gone out; and nothing else disturbed.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import {
  startServer,
  subscribe,
  esConnect,
  publish,
  redisCli,
  info,
  waitInfo,
  feedConnect,
  resp,
  bulkPublishCli,
  assertIncreasingIds,
  sleep,
} from './lib/harness.mjs';

const MAX_PAYLOAD = 64 * 1024; // max_payload = 64k below
const FEED = 'feed'; // the channel the collector listens on
const INFO_KEYS = [
  'connections',
  'worker_0_connections',
  'worker_1_connections',
  'subscribers',
  'published',
  'deliveries',
  'rejected_capacity',
  'slow_disconnects',
  'http_errors',
  'feed_connections',
  'feed_protocol_errors',
  'heartbeats',
];

/** A deterministic PRNG (mulberry32) for reproducible chunking. */
function prng(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('feed socket', () => {
  let srv;
  let collector; // raw SSE subscriber on FEED for the whole file
  const expected = []; // payloads (Buffers) published to FEED, in order
  const explicitId = new Set(); // indexes in `expected` published with XPUBLISH ... ID

  before(async () => {
    srv = await startServer({ feed: { max_payload: '64k', mode: '0600' } });
    collector = await subscribe(srv.port, FEED);
    await waitInfo(srv.socket, (i) => i.subscribers === 1, { message: 'collector subscribed' });
  });
  after(async () => {
    collector?.close();
    await srv?.stop();
  });

  /** Split lines of a payload as the encoder must (CRLF, CR, LF), as Buffers. */
  function lines(buf) {
    const out = [];
    let start = 0;
    for (let i = 0; i < buf.length; i++) {
      if (buf[i] === 0x0a || buf[i] === 0x0d) {
        out.push(buf.subarray(start, i));
        if (buf[i] === 0x0d && buf[i + 1] === 0x0a) i++;
        start = i + 1;
      }
    }
    out.push(buf.subarray(start));
    return out;
  }

  /** Waits for the collector to have everything in `expected` and checks it byte for byte. */
  async function collectorHasAll(ms = 10000) {
    await collector.waitEvents(expected.length, ms);
    assert.equal(collector.events.length, expected.length, 'no extra events');
    expected.forEach((p, i) => {
      const got = collector.events[i].dataLines;
      const want = lines(p);
      assert.equal(got.length, want.length, `event ${i}: number of data lines`);
      want.forEach((w, j) => assert.ok(got[j].equals(w), `event ${i} line ${j}: ${JSON.stringify(got[j].toString('latin1').slice(0, 80))} != ${JSON.stringify(w.toString('latin1').slice(0, 80))}`));
    });
    // engine-assigned ids increase; ids given with XPUBLISH ID are the publisher's business
    assertIncreasingIds(collector.events.filter((_, i) => !explicitId.has(i)).map((e) => e.id), 'collector ids');
  }

  test('the socket exists with the configured mode (0600)', () => {
    const st = fs.statSync(srv.socket);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o600);
  });

  test('PING answers PONG, PING msg answers msg (redis-cli and raw)', async () => {
    assert.equal((await redisCli(srv.socket, ['PING'])).stdout.trim(), 'PONG');
    assert.equal((await redisCli(srv.socket, ['PING', 'hello there'])).stdout.trim(), 'hello there');
    const c = await feedConnect(srv.socket);
    try {
      assert.deepEqual(await c.command('PING'), { type: '+', value: 'PONG' });
      const r = await c.command('PING', 'echo me');
      assert.ok(r.type === '$' || r.type === '+', `reply type ${r.type}`);
      assert.equal(r.value, 'echo me');
    } finally {
      c.close();
    }
  });

  test('INFO is a bulk of CRLF-separated key:value lines with every documented counter', async () => {
    const i = await info(srv.socket);
    for (const k of INFO_KEYS) {
      assert.ok(k in i, `INFO has ${k}`);
      assert.ok(Number.isInteger(i[k]) && i[k] >= 0, `${k} is a non-negative integer: ${i[k]}`);
    }
    assert.equal('worker_2_connections' in i, false, 'one worker_N_connections per worker (workers = 2)');
    assert.ok(i.feed_connections >= 1, 'the redis-cli asking counts as a feed connection');
    assert.ok(i.subscribers >= 1 && i.connections >= 1, 'the collector is counted');
    await waitInfo(srv.socket, (x) => x.connections === x.worker_0_connections + x.worker_1_connections, {
      timeout: 2000,
      message: 'connections == worker_0_connections + worker_1_connections',
    });

    const c = await feedConnect(srv.socket);
    try {
      const r = await c.command('INFO');
      assert.equal(r.type, '$');
      const body = r.value.replace(/\r\n$/, '');
      for (const line of body.split('\r\n')) {
        assert.ok(line === '' || line.startsWith('#') || /^[a-z0-9_]+:[^\r\n]*$/.test(line), `INFO line ${JSON.stringify(line)}`);
      }
      assert.ok(!/[^\r]\n/.test(r.value), 'lines end in CRLF');
    } finally {
      c.close();
    }
  });

  test('published and deliveries count events and the subscribers they were handed to', async () => {
    const subs = [];
    try {
      for (let i = 0; i < 3; i++) subs.push(await subscribe(srv.port, 'counters'));
      await waitInfo(srv.socket, (i) => i.subscribers === 4, { message: 'collector + 3 subscribers' });
      const before = await info(srv.socket);
      for (let k = 0; k < 5; k++) assert.equal(await publish(srv.socket, 'counters', `c${k}`), 3);
      assert.equal(await publish(srv.socket, 'counters-nobody', 'lost'), 0);
      for (const s of subs) await s.waitEvents(5);
      const after = await waitInfo(srv.socket, (i) => i.deliveries - before.deliveries >= 15, {
        message: 'deliveries grew by 15',
      });
      assert.equal(after.published - before.published, 6, 'published counts every PUBLISH, even to no one');
      assert.equal(after.deliveries - before.deliveries, 15, '5 events x 3 subscribers');
    } finally {
      for (const s of subs) s.close();
    }
    await waitInfo(srv.socket, (i) => i.subscribers === 1, { message: 'back to the collector alone' });
  });

  test('pipelined commands in one write are answered in order, errors included', async () => {
    const c = await feedConnect(srv.socket);
    try {
      const cmds = [resp('PING')];
      const want = [{ type: '+', value: 'PONG' }];
      for (let i = 0; i < 50; i++) {
        const p = Buffer.from(`pipelined ${i}`);
        cmds.push(resp('PUBLISH', FEED, p));
        want.push({ type: ':', value: 1 });
        expected.push(p);
      }
      cmds.push(resp('NOSUCHCOMMAND', 'x'));
      want.push('ERR unknown command');
      cmds.push(resp('PING', 'in between'));
      want.push('in between');
      const typed = Buffer.from('typed in a pipeline');
      cmds.push(resp('XPUBLISH', FEED, typed, 'EVENT', 'kind', 'ID', 'pipe-id-1'));
      want.push({ type: ':', value: 1 });
      explicitId.add(expected.length);
      expected.push(typed);
      c.send(Buffer.concat(cmds));
      const got = await c.replies(want.length);
      got.forEach((r, i) => {
        if (typeof want[i] === 'string' && want[i].startsWith('ERR')) {
          assert.equal(r.type, '-', `reply ${i}`);
          assert.ok(r.value.startsWith(want[i]), `reply ${i}: ${r.value}`);
        } else if (typeof want[i] === 'string') {
          assert.equal(r.value, want[i], `reply ${i}`);
        } else {
          assert.deepEqual(r, want[i], `reply ${i}`);
        }
      });
      await collectorHasAll();
      const last = collector.events[collector.events.length - 1];
      assert.equal(last.raw.toString(), 'id: pipe-id-1\nevent: kind\ndata: typed in a pipeline\n\n');
    } finally {
      c.close();
    }
  });

  test('commands split across many writes at arbitrary points are parsed', async () => {
    const c = await feedConnect(srv.socket);
    try {
      // one command, one byte per write
      const one = Buffer.from('byte by byte');
      expected.push(one);
      const bytes = resp('PUBLISH', FEED, one);
      for (const b of bytes) {
        c.send(Buffer.from([b]));
        await sleep(2);
      }
      assert.deepEqual(await c.reply(), { type: ':', value: 1 });

      // 40 commands cut into random pieces of 1..17 bytes
      const rnd = prng(42);
      const parts = [];
      for (let i = 0; i < 40; i++) {
        const p = Buffer.from(`chunked ${i} ${'x'.repeat(i)}\r\nsecond line`);
        expected.push(p);
        parts.push(resp('PUBLISH', FEED, p));
      }
      const all = Buffer.concat(parts);
      for (let off = 0; off < all.length; ) {
        const n = 1 + Math.floor(rnd() * 17);
        c.send(all.subarray(off, off + n));
        off += n;
        if (rnd() < 0.3) await sleep(1);
      }
      const rs = await c.replies(40);
      assert.ok(rs.every((r) => r.type === ':' && r.value === 1), JSON.stringify(rs.slice(0, 3)));
      await collectorHasAll();
    } finally {
      c.close();
    }
  });

  test('inline commands (as from telnet) work', async () => {
    const c = await feedConnect(srv.socket);
    try {
      c.send('PING\r\n');
      assert.deepEqual(await c.reply(), { type: '+', value: 'PONG' });
      c.send(`PUBLISH ${FEED} inline-payload\r\n`);
      expected.push(Buffer.from('inline-payload'));
      assert.deepEqual(await c.reply(), { type: ':', value: 1 });
      await collectorHasAll();
    } finally {
      c.close();
    }
  });

  test('payloads are binary safe: every byte arrives as sent (NUL, 0xff, controls, UTF-8)', async () => {
    const c = await feedConnect(srv.socket);
    try {
      const bin = Buffer.from([0x00, 0x01, 0x02, 0x7f, 0x80, 0xfe, 0xff, 0x09, 0x41, 0x00, 0x20, 0x1b]);
      const multi = Buffer.concat([Buffer.from('first\0line\r\n'), Buffer.from([0xc3, 0xa9, 0xff]), Buffer.from('\rthird\n')]);
      const allBytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i).filter((b) => b !== 0x0a && b !== 0x0d));
      for (const p of [bin, multi, allBytes]) {
        expected.push(p);
        assert.deepEqual(await c.command('PUBLISH', FEED, p), { type: ':', value: 1 });
      }
      await collectorHasAll();
    } finally {
      c.close();
    }
  });

  test('UTF-8, tabs and quotes survive redis-cli and eventsource', async () => {
    const es = esConnect(srv.port, 'utf8');
    try {
      await es.waitOpen();
      await waitInfo(srv.socket, (i) => i.subscribers === 2, { message: 'eventsource subscribed' });
      const payloads = ['tab\there', 'ünïcödé 日本語 🎉', `quotes ' " and \\ backslash`, 'two\tlines\nsecond\t😀'];
      for (const p of payloads) assert.equal(await publish(srv.socket, 'utf8', p), 1);
      await es.waitCount(payloads.length);
      assert.deepEqual(es.received.map((e) => e.data), payloads);
    } finally {
      es.close();
    }
    await waitInfo(srv.socket, (i) => i.subscribers === 1, { message: 'eventsource gone' });
  });

  test('hundreds of odd payloads through one redis-cli process arrive byte-exact', async () => {
    const cmds = [];
    for (let i = 0; i < 300; i++) {
      const p = Buffer.from(`#${i} "quoted" 'single' \\back\\ \t tab ü ${i % 7 === 0 ? 'multi\nline\r\nend' : ''}`);
      expected.push(p);
      cmds.push(i % 2 ? ['PUBLISH', FEED, p] : ['XPUBLISH', FEED, p]);
    }
    const replies = await bulkPublishCli(srv.socket, cmds);
    assert.deepEqual(replies, cmds.map(() => 1));
    await collectorHasAll();
  });

  test('large payloads: 60000 bytes raw, exactly max_payload via redis-cli', async () => {
    const c = await feedConnect(srv.socket);
    try {
      const big = Buffer.alloc(60000, 'x');
      big.write('start', 0);
      big.write('end', 60000 - 3);
      expected.push(big);
      assert.deepEqual(await c.command('PUBLISH', FEED, big), { type: ':', value: 1 });
    } finally {
      c.close();
    }
    const exact = 'y'.repeat(MAX_PAYLOAD - 5) + 'last!';
    expected.push(Buffer.from(exact));
    assert.equal(await publish(srv.socket, FEED, exact), 1, 'a payload of exactly max_payload bytes is accepted');
    await collectorHasAll();
  });

  // Errors that answer -ERR and keep the connection open.
  const COMMAND_ERRORS = [
    { name: 'unknown command', args: ['FLUSHALL'], prefix: 'ERR unknown command' },
    { name: 'PUBLISH with one argument', args: ['PUBLISH', 'onlyone'], prefix: 'ERR wrong number of arguments' },
    { name: 'PUBLISH with three arguments', args: ['PUBLISH', FEED, 'a', 'b'], prefix: 'ERR wrong number of arguments' },
    { name: 'PUBLISH with no arguments', args: ['PUBLISH'], prefix: 'ERR wrong number of arguments' },
    { name: 'XPUBLISH with one argument', args: ['XPUBLISH', FEED], prefix: 'ERR' },
    { name: 'invalid channel name (space)', args: ['PUBLISH', 'bad name', 'x'], prefix: 'ERR' },
    { name: 'invalid channel name (129 chars)', args: ['PUBLISH', 'c'.repeat(129), 'x'], prefix: 'ERR' },
    { name: 'invalid channel name (empty)', args: ['PUBLISH', '', 'x'], prefix: 'ERR' },
    { name: 'XPUBLISH invalid channel', args: ['XPUBLISH', 'bad/name', 'x', 'EVENT', 't'], prefix: 'ERR' },
    { name: 'XPUBLISH EVENT without a value', args: ['XPUBLISH', FEED, 'x', 'EVENT'], prefix: 'ERR' },
    { name: 'XPUBLISH unknown option', args: ['XPUBLISH', FEED, 'x', 'COLOR', 'red'], prefix: 'ERR' },
    { name: 'XPUBLISH ID with a space', args: ['XPUBLISH', FEED, 'x', 'ID', 'a b'], prefix: 'ERR' },
  ];

  for (const e of COMMAND_ERRORS) {
    test(`command error keeps the connection open: ${e.name}`, async () => {
      const c = await feedConnect(srv.socket);
      try {
        const r = await c.command(...e.args);
        assert.equal(r.type, '-', `error reply, got ${JSON.stringify(r)}`);
        assert.ok(r.value.startsWith(e.prefix), `"${r.value}" starts with "${e.prefix}"`);
        assert.deepEqual(await c.command('PING'), { type: '+', value: 'PONG' }, 'connection still usable');
        const p = Buffer.from(`after ${e.name}`);
        expected.push(p);
        assert.deepEqual(await c.command('PUBLISH', FEED, p), { type: ':', value: 1 });
      } finally {
        c.close();
      }
    });
  }

  test('redis-cli shows command errors and the engine goes on', async () => {
    const r = await redisCli(srv.socket, ['PUBLISH', 'onlyone']);
    assert.match(r.stdout + r.stderr, /ERR wrong number of arguments/);
    const u = await redisCli(srv.socket, ['NOPE']);
    assert.match(u.stdout + u.stderr, /ERR unknown command/);
    assert.equal((await redisCli(srv.socket, ['PING'])).stdout.trim(), 'PONG');
  });

  // Input that is not RESP: -ERR Protocol error, then the connection is closed.
  const PROTOCOL_ERRORS = [
    { name: 'bad multibulk length "*abc"', bytes: '*abc\r\n' },
    { name: 'bulk string without an array', bytes: '$5\r\nhello\r\n' },
    { name: 'bulk longer than declared', bytes: '*2\r\n$4\r\nPING\r\n$2\r\nhello\r\n' },
    { name: 'bad bulk length "$x"', bytes: '*2\r\n$4\r\nPING\r\n$x\r\n' },
    { name: 'array element that is not a bulk string', bytes: '*2\r\n$4\r\nPING\r\n:5\r\n' },
    // Only the header: the error must come as soon as the length is seen, before any data.
    { name: 'bulk length over max_payload', bytes: `*3\r\n$7\r\nPUBLISH\r\n$${FEED.length}\r\n${FEED}\r\n$${MAX_PAYLOAD + 1}\r\n` },
  ];

  let protocolErrorsBefore;
  let bystander; // a feed connection open across all the protocol errors
  test('(setup) a bystander feed connection and the counter before the protocol errors', async () => {
    protocolErrorsBefore = (await info(srv.socket)).feed_protocol_errors;
    bystander = await feedConnect(srv.socket);
    assert.deepEqual(await bystander.command('PING'), { type: '+', value: 'PONG' });
  });

  for (const [i, e] of PROTOCOL_ERRORS.entries()) {
    test(`protocol error closes the connection, earlier events still delivered: ${e.name}`, async () => {
      const c = await feedConnect(srv.socket);
      try {
        const before = Buffer.from(`before garbage ${i}`);
        expected.push(before);
        // A valid PUBLISH and then the garbage, in a single write.
        c.send(Buffer.concat([resp('PUBLISH', FEED, before), Buffer.from(e.bytes, 'latin1')]));
        const [ok, err] = await c.replies(2);
        assert.deepEqual(ok, { type: ':', value: 1 });
        assert.equal(err.type, '-');
        assert.match(err.value, /^ERR Protocol error/);
        assert.ok(await c.waitClosed(3000), 'the server closed the connection');
        await collectorHasAll();
      } finally {
        c.close();
      }
    });
  }

  test('a payload over max_payload sent in full is refused and closes the connection', async () => {
    const c = await feedConnect(srv.socket);
    try {
      c.send(resp('PUBLISH', FEED, Buffer.alloc(MAX_PAYLOAD + 1, 'z')));
      const r = await c.reply();
      assert.equal(r.type, '-');
      assert.match(r.value, /^ERR Protocol error/);
      assert.ok(await c.waitClosed(3000), 'closed');
    } finally {
      c.close();
    }
  });

  test('after the protocol errors: counter grew, bystander, redis-cli and SSE all still work', async () => {
    const i = await info(srv.socket);
    assert.equal(i.feed_protocol_errors - protocolErrorsBefore, PROTOCOL_ERRORS.length + 1);
    assert.deepEqual(await bystander.command('PING'), { type: '+', value: 'PONG' });
    const p = Buffer.from('from the bystander');
    expected.push(p);
    assert.deepEqual(await bystander.command('PUBLISH', FEED, p), { type: ':', value: 1 });
    expected.push(Buffer.from('from redis-cli'));
    assert.equal(await publish(srv.socket, FEED, 'from redis-cli'), 1);
    await collectorHasAll();
    assert.ok(!collector.isClosed());
    bystander.close();
  });

  test('QUIT answers OK and closes', async () => {
    const c = await feedConnect(srv.socket);
    try {
      c.send(resp('QUIT'));
      assert.deepEqual(await c.reply(), { type: '+', value: 'OK' });
      assert.ok(await c.waitClosed(3000), 'closed after QUIT');
    } finally {
      c.close();
    }
  });

  test('four connections publishing concurrently: every event once, per-connection order kept', async () => {
    const sub = await subscribe(srv.port, 'multi');
    const conns = [];
    try {
      await waitInfo(srv.socket, (i) => i.subscribers === 2, { message: 'multi subscriber' });
      for (let k = 0; k < 4; k++) conns.push(await feedConnect(srv.socket));
      const N = 150;
      conns.forEach((c, k) => {
        const cmds = [];
        for (let i = 0; i < N; i++) cmds.push(resp('PUBLISH', 'multi', `conn${k} seq${i}`));
        c.send(Buffer.concat(cmds));
      });
      const replies = await Promise.all(conns.map((c) => c.replies(N, 10000)));
      for (const rs of replies) assert.ok(rs.every((r) => r.type === ':' && r.value === 1));
      await sub.waitEvents(4 * N, 10000);
      await sleep(100);
      assert.equal(sub.events.length, 4 * N);
      assertIncreasingIds(sub.events.map((e) => e.id));
      for (let k = 0; k < 4; k++) {
        const seqs = sub.events.filter((e) => e.data.startsWith(`conn${k} `)).map((e) => Number(e.data.split('seq')[1]));
        assert.deepEqual(seqs, Array.from({ length: N }, (_, i) => i), `connection ${k} in order`);
      }
    } finally {
      for (const c of conns) c.close();
      sub.close();
    }
  });

  test('the collector got exactly what was published to it, and the engine is healthy', async () => {
    await collectorHasAll();
    await sleep(200);
    assert.equal(collector.events.length, expected.length);
    assert.deepEqual(collector.parser.other, []);
    const i = await info(srv.socket);
    assert.equal(i.subscribers, 1);
    assert.ok(i.feed_connections >= 1);
  });
});
