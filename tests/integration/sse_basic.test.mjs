// Server-Sent Events: response head, event wire format, XPUBLISH fields, subscriber counts,
// CORS, the retry hint, heartbeats and /health.
//
// Events are published with redis-cli and received by curl, the `eventsource` package and raw
// sockets (for exact bytes).

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer,
  subscribe,
  esConnect,
  curlStream,
  publish,
  xpublish,
  redisCli,
  info,
  waitInfo,
  waitUntil,
  rawRequest,
  getRequest,
  assertIncreasingIds,
  payloadLines,
  expectedFrame,
  sleep,
} from './lib/harness.mjs';

const ID_RE = '[^\\n]+'; // ids are opaque: any non-empty single-line string

/** Waits until the engine has noticed that every earlier subscriber went away. */
const quiesce = (srv) =>
  waitInfo(srv.socket, (i) => i.subscribers === 0, { timeout: 5000, message: 'subscribers == 0 (earlier clients closed)' });

describe('plain server (retry off, heartbeats off, no CORS)', () => {
  let srv;
  before(async () => {
    srv = await startServer();
  });
  after(async () => {
    await srv?.stop();
  });

  test('curl -N gets the SSE head and the events as they are published', async () => {
    await quiesce(srv);
    const curl = curlStream(srv.url('/sse/news'), { maxTime: 20 });
    try {
      await waitUntil(() => curl.out().includes('\r\n\r\n'), { timeout: 5000, message: 'curl response head' });
      await waitInfo(srv.socket, (i) => i.subscribers === 1, { message: 'subscribers == 1' });
      for (const p of ['first', 'second', 'third']) assert.equal(await publish(srv.socket, 'news', p), 1);
      await waitUntil(() => curl.out().includes('data: third\n\n'), { timeout: 5000, message: 'third event at curl' });

      const out = curl.out();
      const headEnd = out.indexOf('\r\n\r\n');
      const [statusLine, ...headerLines] = out.slice(0, headEnd).split('\r\n');
      assert.equal(statusLine, 'HTTP/1.1 200 OK');
      const h = Object.fromEntries(headerLines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
      assert.match(h['content-type'] ?? '', /^text\/event-stream(\s*;.*)?$/i);
      assert.equal(h['cache-control'], 'no-cache');
      assert.equal(h['x-accel-buffering'], 'no');
      assert.equal(h['content-length'], undefined, 'close-delimited: no Content-Length');
      assert.equal(h['transfer-encoding'], undefined, 'close-delimited: no chunked encoding');
      assert.equal(h['access-control-allow-origin'], undefined, 'no CORS header when cors_origin is empty');

      const body = out.slice(headEnd + 4);
      const m = new RegExp(`^id: (${ID_RE})\\ndata: first\\n\\nid: (${ID_RE})\\ndata: second\\n\\nid: (${ID_RE})\\ndata: third\\n\\n$`).exec(body);
      assert.ok(m, `body is exactly three events, no retry line, no comments: ${JSON.stringify(body)}`);
      assertIncreasingIds([m[1], m[2], m[3]]);
    } finally {
      curl.kill();
    }
  });

  // Payloads whose lines must survive: split on LF, CRLF and CR; EventSource rejoins with LF.
  const PAYLOADS = [
    'single line',
    'line1\nline2',
    'crlf1\r\ncrlf2\r\ncrlf3',
    'cr1\rcr2',
    'empty\n\nline in the middle',
    'trailing newline\n',
    '\n',
    '',
    'mixed\r\n\r\nends\rand\nmore\n',
    ' leading space kept',
    'data: injected?\n\nid: 999\nevent: evil',
    ':not a comment',
    'unicode é ✓ 🚀 and\ttabs',
  ];

  test('multi-line payloads arrive intact through eventsource and byte-exact on the wire', async () => {
    const ch = 'multiline';
    await quiesce(srv);
    const es = esConnect(srv.port, ch);
    const raw = await subscribe(srv.port, ch);
    try {
      await es.waitOpen();
      await waitInfo(srv.socket, (i) => i.subscribers === 2, { message: 'subscribers == 2' });
      for (const p of PAYLOADS) assert.equal(await publish(srv.socket, ch, p), 2, `PUBLISH ${JSON.stringify(p)}`);
      await es.waitCount(PAYLOADS.length);
      await raw.waitEvents(PAYLOADS.length);

      // eventsource: data rejoined with LF, type "message", nothing extra
      assert.deepEqual(
        es.received.map((e) => e.data),
        PAYLOADS.map((p) => p.replace(/\r\n|\r/g, '\n')),
      );
      assert.ok(es.received.every((e) => e.type === 'message'));
      assert.equal(es.errors.length, 0, 'no errors/reconnects');

      // raw: each frame is exactly id + one data line per payload line + blank line
      assert.equal(raw.events.length, PAYLOADS.length);
      PAYLOADS.forEach((p, i) => {
        const e = raw.events[i];
        assert.equal(e.raw.toString('utf8'), expectedFrame(e.id, p), `frame ${i} for ${JSON.stringify(p)}`);
        assert.deepEqual(e.dataLines.map((b) => b.toString('utf8')), payloadLines(p));
      });
      const body = raw.parser.bodyBuffer().toString('utf8');
      assert.equal(body, raw.events.map((e) => e.raw.toString('utf8')).join(''), 'nothing but the frames on the wire');
      assert.equal(raw.parser.other.length, 0);

      // every subscriber sees the same id for the same event, ids strictly increasing
      assert.deepEqual(es.received.map((e) => e.lastEventId), raw.events.map((e) => e.id));
      assertIncreasingIds(raw.events.map((e) => e.id));
    } finally {
      es.close();
      raw.close();
    }
  });

  test('a payload cannot inject fields: lines that look like fields stay data', async () => {
    const ch = 'inject';
    const raw = await subscribe(srv.port, ch);
    try {
      await waitInfo(srv.socket, (i) => i.subscribers >= 1, { message: 'subscriber' });
      await publish(srv.socket, ch, 'a\n\nid: 999\r\nevent: evil\rretry: 1');
      await raw.waitEvents(1);
      await sleep(200);
      assert.equal(raw.events.length, 1);
      assert.equal(raw.events[0].event, undefined);
      assert.notEqual(raw.events[0].id, '999');
      assert.deepEqual(raw.events[0].dataLines.map(String), ['a', '', 'id: 999', 'event: evil', 'retry: 1']);
      assert.deepEqual(raw.parser.retries, []);
    } finally {
      raw.close();
    }
  });

  test('XPUBLISH EVENT and ID set the event: and id: fields (eventsource and wire)', async () => {
    const ch = 'typed';
    await quiesce(srv);
    const es = esConnect(srv.port, ch, { types: ['greeting', 'farewell'] });
    const raw = await subscribe(srv.port, ch);
    try {
      await es.waitOpen();
      await waitInfo(srv.socket, (i) => i.subscribers === 2, { message: 'subscribers == 2' });

      assert.equal(await xpublish(srv.socket, ch, 'hello\nworld', { event: 'greeting', id: 'custom-42' }), 2);
      assert.equal(await xpublish(srv.socket, ch, 'only type', { event: 'farewell' }), 2);
      assert.equal(await xpublish(srv.socket, ch, 'only id', { id: 'abc:def/ghi' }), 2);
      assert.equal(await xpublish(srv.socket, ch, 'neither'), 2);

      await raw.waitEvents(4);
      await es.waitCount(4);
      const [a, b, c, d] = raw.events;
      assert.equal(a.raw.toString(), 'id: custom-42\nevent: greeting\ndata: hello\ndata: world\n\n');
      assert.match(b.raw.toString(), new RegExp(`^id: ${ID_RE}\\nevent: farewell\\ndata: only type\\n\\n$`));
      assert.equal(c.raw.toString(), 'id: abc:def/ghi\ndata: only id\n\n');
      assert.match(d.raw.toString(), new RegExp(`^id: ${ID_RE}\\ndata: neither\\n\\n$`));

      assert.deepEqual(es.received, [
        { type: 'greeting', data: 'hello\nworld', lastEventId: 'custom-42' },
        { type: 'farewell', data: 'only type', lastEventId: b.id },
        { type: 'message', data: 'only id', lastEventId: 'abc:def/ghi' },
        { type: 'message', data: 'neither', lastEventId: d.id },
      ]);
    } finally {
      es.close();
      raw.close();
    }
  });

  test('an XPUBLISH event type or id containing a line break cannot corrupt the stream', async () => {
    const ch = 'xinject';
    const raw = await subscribe(srv.port, ch);
    try {
      await waitInfo(srv.socket, (i) => i.subscribers >= 1, { message: 'subscriber' });
      const r1 = await redisCli(srv.socket, ['XPUBLISH', ch, 'p1', 'EVENT', 'x\nid: injected']);
      const r2 = await redisCli(srv.socket, ['XPUBLISH', ch, 'p2', 'ID', 'y\r\ndata: injected']);
      assert.equal(await publish(srv.socket, ch, 'marker'), 1);
      await raw.waitFor((c) => c.events.some((e) => e.data === 'marker'), 5000, 'marker event');
      for (const e of raw.events) {
        assert.notEqual(e.id, 'injected', `stream was injected (reply ${r1.stdout.trim()})`);
        assert.ok(!e.dataLines.map(String).includes('injected'), `stream was injected (reply ${r2.stdout.trim()})`);
        assert.ok(!/[\r\n]/.test(e.event ?? '') && !/[\r\n]/.test(e.id ?? ''));
      }
      assert.deepEqual(raw.parser.other, [], 'no stray lines on the wire');
    } finally {
      raw.close();
    }
  });

  test('PUBLISH returns the number of subscribers of that channel, across workers', async () => {
    assert.equal(await publish(srv.socket, 'nobody-here', 'x'), 0, 'no subscribers -> 0');

    const ch = 'counted';
    await quiesce(srv);
    const clients = [];
    try {
      for (let i = 0; i < 6; i++) clients.push(await subscribe(srv.port, ch));
      const other = await subscribe(srv.port, 'counted-other');
      clients.push(other);
      await waitInfo(srv.socket, (i) => i.subscribers === 7, { message: 'subscribers == 7' });
      assert.equal(await publish(srv.socket, ch, 'to six'), 6, 'only subscribers of this channel count');
      assert.equal(await publish(srv.socket, 'counted-other', 'to one'), 1);

      clients[0].close();
      clients[1].close();
      await waitInfo(srv.socket, (i) => i.subscribers === 5, { message: 'subscribers == 5 after two left' });
      assert.equal(await publish(srv.socket, ch, 'to four'), 4);

      for (const c of clients.slice(2, 6)) {
        await c.waitEvents(2);
        assert.deepEqual(c.events.map((e) => e.data), ['to six', 'to four']);
      }
    } finally {
      for (const c of clients) c.close();
    }
  });

  test('unknown query parameters are ignored: /sse/ch?x=1 subscribes to ch', async () => {
    const c = await subscribe(srv.port, null, { path: '/sse/withquery?utm=5&x=%20y' });
    try {
      await waitInfo(srv.socket, (i) => i.subscribers >= 1, { message: 'subscriber' });
      assert.equal(await publish(srv.socket, 'withquery', 'q'), 1);
      await c.waitEvents(1);
      assert.equal(c.events[0].data, 'q');
    } finally {
      c.close();
    }
  });

  test('channel names may use every allowed character, up to 128 of them', async () => {
    const names = ['Az09_.:@-', 'user@example.com', 'a', 'x'.repeat(128)];
    const clients = [];
    try {
      for (const n of names) clients.push(await subscribe(srv.port, n));
      await waitInfo(srv.socket, (i) => i.subscribers >= names.length, { message: 'subscribers' });
      for (const n of names) assert.equal(await publish(srv.socket, n, `to ${n.slice(0, 20)}`), 1, n);
      for (let i = 0; i < names.length; i++) {
        await clients[i].waitEvents(1);
        assert.equal(clients[i].events[0].data, `to ${names[i].slice(0, 20)}`);
      }
    } finally {
      for (const c of clients) c.close();
    }
  });

  test('no retry line and no heartbeat comments when both are 0', async () => {
    const c = await subscribe(srv.port, 'quiet');
    try {
      await waitInfo(srv.socket, (i) => i.subscribers >= 1, { message: 'subscriber' });
      await sleep(1500);
      assert.equal(c.parser.bodyBytes, 0, `idle stream sent ${JSON.stringify(c.parser.bodyBuffer().toString())}`);
      await publish(srv.socket, 'quiet', 'now');
      await c.waitEvents(1);
      assert.match(c.parser.bodyBuffer().toString(), new RegExp(`^id: ${ID_RE}\\ndata: now\\n\\n$`));
    } finally {
      c.close();
    }
  });

  test('GET /health answers 200 with a small body and closes the connection', async () => {
    for (const req of [getRequest('/health'), 'GET /health HTTP/1.0\r\n\r\n', getRequest('/health', ['Connection: keep-alive'])]) {
      const r = await rawRequest(srv.port, req, { timeout: 3000 });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.version, '1.1');
      assert.ok(r.closed, 'server closed the connection after /health');
      assert.ok(r.body.length > 0 && r.body.length < 4096, `small body: ${r.body.length} bytes`);
      const cl = r.headers['content-length'];
      if (cl) assert.equal(Number(cl[0]), r.body.length, 'Content-Length matches the body');
    }
    const curl = curlStream(srv.url('/health'), { maxTime: 5, extra: ['-f'] });
    const res = await curl.exited;
    assert.equal(res.code, 0, curl.err());
    assert.match(curl.out(), /^HTTP\/1\.1 200/);
  });
});

describe('server with cors_origin, retry and heartbeats', () => {
  let srv;
  const ORIGIN = 'https://app.example.com';
  before(async () => {
    srv = await startServer({
      http: { cors_origin: ORIGIN },
      sse: { retry: 2.5, heartbeat_interval: 0.3 },
    });
  });
  after(async () => {
    await srv?.stop();
  });

  test('Access-Control-Allow-Origin is sent when cors_origin is set', async () => {
    const c = await subscribe(srv.port, 'cors', { headers: [`Origin: ${ORIGIN}`] });
    try {
      assert.deepEqual(c.head.headers['access-control-allow-origin'], [ORIGIN]);
      assert.match(c.head.headers['content-type'][0], /^text\/event-stream/);
    } finally {
      c.close();
    }
  });

  test('the stream starts with "retry: <ms>" and a blank line', async () => {
    const c = await subscribe(srv.port, 'retry');
    try {
      await c.waitFor((x) => x.parser.bodyBytes >= 13, 3000, 'retry line');
      assert.equal(c.parser.bodyBuffer().subarray(0, 13).toString(), 'retry: 2500\n\n');
      assert.deepEqual(c.parser.retries, ['2500']);
    } finally {
      c.close();
    }
  });

  test('an idle stream gets heartbeat comments about every heartbeat_interval', async () => {
    const before = await info(srv.socket);
    const c = await subscribe(srv.port, 'idle');
    try {
      await c.waitFor((x) => x.parser.comments.length >= 2, 5000, 'two heartbeat comments');
      const n0 = c.parser.comments.length;
      await sleep(2000);
      const n = c.parser.comments.length - n0;
      // 0.3 s interval: about 6-7 in 2 s; allow slack both ways, but not "every loop iteration".
      assert.ok(n >= 2 && n <= 12, `${n} heartbeats in 2 s with heartbeat_interval 0.3`);
      assert.equal(c.events.length, 0, 'heartbeats are not events');
      assert.deepEqual(c.parser.other, [], 'only comments, retry and events on the wire');
      const after = await info(srv.socket);
      assert.ok(after.heartbeats > before.heartbeats, `INFO heartbeats grows (${before.heartbeats} -> ${after.heartbeats})`);
    } finally {
      c.close();
    }
  });

  test('heartbeats do not disturb events: eventsource gets exactly what was published', async () => {
    const es = esConnect(srv.port, 'beating');
    const raw = await subscribe(srv.port, 'beating');
    try {
      await es.waitOpen();
      await waitInfo(srv.socket, (i) => i.subscribers >= 2, { message: 'subscribers' });
      const sent = [];
      for (let i = 0; i < 8; i++) {
        sent.push(`beat ${i}\nline two`);
        await publish(srv.socket, 'beating', sent[i]);
        await sleep(150);
      }
      await es.waitCount(8);
      await raw.waitEvents(8);
      assert.deepEqual(es.received.map((e) => e.data), sent);
      assert.deepEqual(raw.events.map((e) => e.data), sent);
      for (const e of raw.events) assert.equal(e.raw.toString(), expectedFrame(e.id, e.data));
      assert.equal(es.errors.length, 0);
    } finally {
      es.close();
      raw.close();
    }
  });
});

describe('CORS off', () => {
  test('no Access-Control-Allow-Origin without cors_origin, even when the request has an Origin', async () => {
    const srv = await startServer({ http: { cors_origin: null } });
    try {
      const c = await subscribe(srv.port, 'nocors', { headers: ['Origin: https://evil.example'] });
      assert.equal(c.head.headers['access-control-allow-origin'], undefined);
      c.close();
    } finally {
      await srv.stop();
    }
  });
});
