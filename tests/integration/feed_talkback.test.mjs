// Talking back, feed side: SUBSCRIBE / UNSUBSCRIBE / PING as redis-cli and raw RESP see them,
// the argument checks of SEND and CLOSE, the idle timeout of publishers, and what a publisher
// that disconnects mid-command has applied.
//
// Client messages reach listeners, and SEND / CLOSE reach connections, through the workers'
// side of talking back; the end-to-end tests for that are at the bottom.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import {
  startServer,
  subscribe,
  publish,
  redisCli,
  info,
  waitInfo,
  feedConnect,
  resp,
  sleep,
} from './lib/harness.mjs';
import {
  redisSubscribe,
  feedListener,
  pubsubReply,
  wsClient,
} from './lib/pubsub.mjs';

const CONTEXT_ERROR = /^ERR Can't execute '\w+': only \(UN\)SUBSCRIBE \/ PING \/ QUIT are allowed in this context$/;

describe('feed pub/sub and the checks of SEND and CLOSE', () => {
  let srv;
  before(async () => {
    srv = await startServer(); // two workers
  });
  after(async () => {
    await srv?.stop();
  });

  test('redis-cli SUBSCRIBE prints the confirmations and the connection counts as a listener', async () => {
    const sub = redisSubscribe(srv.socket, ['chat', 'news']);
    try {
      const lines = await sub.waitLines(6);
      assert.deepEqual(lines.slice(0, 6), ['subscribe', 'chat', '1', 'subscribe', 'news', '2']);
      await waitInfo(srv.socket, (i) => i.feed_listeners === 1, { message: 'one listener' });
    } finally {
      sub.kill();
    }
    await sub.exited;
    await waitInfo(srv.socket, (i) => i.feed_listeners === 0, { message: 'listener gone' });
  });

  test('raw RESP: confirmations, PING, the subscribed context, UNSUBSCRIBE', async () => {
    const c = await feedConnect(srv.socket);
    try {
      c.send(resp('SUBSCRIBE', 'a', 'b', 'a'));
      assert.deepEqual(await c.replies(3), [
        pubsubReply('subscribe', 'a', 1),
        pubsubReply('subscribe', 'b', 2),
        pubsubReply('subscribe', 'a', 2),
      ]);
      // Redis answers PING in subscribed mode with an array.
      assert.deepEqual(await c.command('PING'), {
        type: '*',
        value: [{ type: '$', value: 'pong' }, { type: '$', value: '' }],
      });
      assert.deepEqual(await c.command('PING', 'hi'), {
        type: '*',
        value: [{ type: '$', value: 'pong' }, { type: '$', value: 'hi' }],
      });
      for (const args of [['PUBLISH', 'a', 'x'], ['XPUBLISH', 'a', 'x'], ['INFO'], ['SEND', '0.0.0', 'x'], ['CLOSE', '0.0.0']]) {
        const r = await c.command(...args);
        assert.equal(r.type, '-', `${args[0]} in subscribed mode: ${JSON.stringify(r)}`);
        assert.match(r.value, CONTEXT_ERROR);
      }
      // Unknown commands and wrong arities are reported as such first, as Redis does.
      assert.match((await c.command('NOPE')).value, /^ERR unknown command 'NOPE'/);
      assert.match((await c.command('PUBLISH', 'a')).value, /^ERR wrong number of arguments for 'publish'/);

      c.send(resp('UNSUBSCRIBE', 'a', 'never'));
      assert.deepEqual(await c.replies(2), [pubsubReply('unsubscribe', 'a', 1), pubsubReply('unsubscribe', 'never', 1)]);
      c.send(resp('UNSUBSCRIBE'));
      assert.deepEqual(await c.reply(), pubsubReply('unsubscribe', 'b', 0));
      c.send(resp('UNSUBSCRIBE'));
      assert.deepEqual(await c.reply(), {
        type: '*',
        value: [{ type: '$', value: 'unsubscribe' }, { type: '$', value: null }, { type: ':', value: 0 }],
      });
      // Back out of subscribed mode: a publisher again.
      assert.deepEqual(await c.command('PING'), { type: '+', value: 'PONG' });
      assert.deepEqual(await c.command('PUBLISH', 'a', 'x'), { type: ':', value: 0 });
    } finally {
      c.close();
    }
  });

  test('SUBSCRIBE validates every channel name first and changes nothing when one is bad', async () => {
    const c = await feedConnect(srv.socket);
    try {
      for (const bad of ['bad/name', '', 'c'.repeat(129), 'sp ace']) {
        const r = await c.command('SUBSCRIBE', 'good', bad);
        assert.equal(r.type, '-');
        assert.match(r.value, /^ERR invalid channel name/);
      }
      // Still not subscribed: a publisher's command works.
      assert.deepEqual(await c.command('PUBLISH', 'good', 'x'), { type: ':', value: 0 });
      assert.deepEqual(await c.command('SUBSCRIBE', 'c'.repeat(128)), pubsubReply('subscribe', 'c'.repeat(128), 1));
    } finally {
      c.close();
    }
  });

  test('SUBSCRIBE to many channels in one command', async () => {
    const channels = Array.from({ length: 300 }, (_, i) => `many-${i}`);
    const c = await feedConnect(srv.socket);
    try {
      c.send(resp('SUBSCRIBE', ...channels));
      const replies = await c.replies(channels.length);
      replies.forEach((r, i) => assert.deepEqual(r, pubsubReply('subscribe', channels[i], i + 1)));
    } finally {
      c.close();
    }
  });

  // Every SEND and CLOSE here fails a check before reaching a worker.
  const BAD_ID = /^ERR invalid connection id \(expected <worker>\.<index>\.<generation>\)$/;
  const NO_WORKER = /^ERR invalid connection id: there is no worker \d+$/;
  const BAD_CODE = /^ERR close code must be 1000, 1001, 1003, 1007-1009, 1011-1014 or 3000-4999$/;
  const BAD_REASON = /^ERR close reason must be valid UTF-8 of at most 123 bytes$/;
  const ARITY = (cmd) => new RegExp(`^ERR wrong number of arguments for '${cmd}' command$`);
  const ERRORS = [
    { args: ['SEND'], re: ARITY('send') },
    { args: ['SEND', '0.0.0'], re: ARITY('send') },
    { args: ['SEND', '0.0.0', 'x', 'TEXT', 'more'], re: ARITY('send') },
    { args: ['SEND', 'abc', 'x'], re: BAD_ID },
    { args: ['SEND', '', 'x'], re: BAD_ID },
    { args: ['SEND', '0.0', 'x'], re: BAD_ID },
    { args: ['SEND', '0.0.0.0', 'x'], re: BAD_ID },
    { args: ['SEND', '0..0', 'x'], re: BAD_ID },
    { args: ['SEND', '0.0.65536', 'x'], re: BAD_ID },
    { args: ['SEND', '-1.0.0', 'x'], re: BAD_ID },
    { args: ['SEND', '+1.0.0', 'x'], re: BAD_ID },
    { args: ['SEND', '00.0.0', 'x'], re: BAD_ID },
    { args: ['SEND', ' 0.0.0', 'x'], re: BAD_ID },
    { args: ['SEND', '0.0.0 ', 'x'], re: BAD_ID },
    { args: ['SEND', '4294967296.0.0', 'x'], re: BAD_ID },
    { args: ['SEND', '0.4294967296.0', 'x'], re: BAD_ID },
    { args: ['SEND', '2.0.0', 'x'], re: NO_WORKER },
    { args: ['SEND', '4294967295.4294967295.65535', 'x'], re: NO_WORKER },
    { args: ['SEND', '0.0.0', 'x', 'JSON'], re: /^ERR SEND options are TEXT or BINARY$/ },
    { args: ['SEND', '0.0.0', Buffer.from([0xff, 0xfe]), 'TEXT'], re: /^ERR SEND TEXT needs a payload that is valid UTF-8$/ },
    { args: ['SEND', '0.0.0', Buffer.from([0xed, 0xa0, 0x80]), 'text'], re: /^ERR SEND TEXT needs a payload that is valid UTF-8$/ },
    { args: ['CLOSE'], re: ARITY('close') },
    { args: ['CLOSE', '0.0.0', '4000', 'bye', 'extra'], re: ARITY('close') },
    { args: ['CLOSE', 'x.y.z'], re: BAD_ID },
    { args: ['CLOSE', '1.2'], re: BAD_ID },
    { args: ['CLOSE', '7.0.0'], re: NO_WORKER },
    ...['999', '1002', '1004', '1005', '1006', '1010', '1015', '1016', '2000', '2999', '5000', '65535', '0', '',
      '4000x', '+4000', '-4000', '04000', '0100', ' 4000'].map((code) => ({ args: ['CLOSE', '0.0.0', code], re: BAD_CODE })),
    { args: ['CLOSE', '0.0.0', '4000', 'r'.repeat(124)], re: BAD_REASON },
    { args: ['CLOSE', '0.0.0', '4000', 'é'.repeat(62)], re: BAD_REASON },
    { args: ['CLOSE', '0.0.0', '4000', Buffer.from([0xc3, 0x28])], re: BAD_REASON },
    { args: ['CLOSE', '0.0.0', '1000', Buffer.from('bye\xff', 'latin1')], re: BAD_REASON },
  ];

  test(`SEND and CLOSE argument errors answer -ERR and keep the connection (${ERRORS.length} cases)`, async () => {
    const before = await info(srv.socket);
    const c = await feedConnect(srv.socket);
    try {
      for (const e of ERRORS) {
        const r = await c.command(...e.args);
        const shown = e.args.map((a) => (Buffer.isBuffer(a) ? `<${a.toString('hex')}>` : a)).join(' ');
        assert.equal(r.type, '-', `${shown}: expected an error, got ${JSON.stringify(r)}`);
        assert.match(r.value, e.re, shown);
      }
      assert.deepEqual(await c.command('PING'), { type: '+', value: 'PONG' });
    } finally {
      c.close();
    }
    const after = await info(srv.socket);
    assert.equal(after.feed_command_errors - before.feed_command_errors, ERRORS.length);
    assert.equal(after.feed_direct_sent, 0);
    assert.equal(after.feed_direct_missed, 0);
  });

  test('redis-cli shows the errors of SEND and CLOSE', async () => {
    assert.match((await redisCli(srv.socket, ['SEND', 'nope', 'hi'])).stdout, /ERR invalid connection id/);
    assert.match((await redisCli(srv.socket, ['SEND', '5.0.0', 'hi'])).stdout, /ERR invalid connection id: there is no worker 5/);
    assert.match((await redisCli(srv.socket, ['CLOSE', '0.0.0', '1006'])).stdout, /ERR close code must be/);
    assert.match((await redisCli(srv.socket, ['CLOSE'])).stdout, /ERR wrong number of arguments for 'close' command/);
    assert.equal((await redisCli(srv.socket, ['PING'])).stdout.trim(), 'PONG');
  });

  test('INFO has the talking-back counters', async () => {
    const i = await info(srv.socket);
    for (const k of [
      'feed_listeners',
      'feed_upstream_messages',
      'feed_upstream_unheard',
      'feed_listener_overflows',
      'feed_direct_sent',
      'feed_direct_missed',
      'feed_idle_timeouts',
    ]) {
      assert.equal(typeof i[k], 'number', `INFO ${k}`);
    }
  });

  test('a publisher that disconnects mid-command loses only that command', async () => {
    const sub = await subscribe(srv.port, 'partial');
    const before = await info(srv.socket);
    try {
      await waitInfo(srv.socket, (i) => i.subscribers === 1, { message: 'subscriber' });
      const s = net.connect(srv.socket);
      await new Promise((resolve, reject) => {
        s.once('connect', resolve);
        s.once('error', reject);
      });
      const fourth = resp('PUBLISH', 'partial', 'four');
      const bytes = Buffer.concat([
        resp('PUBLISH', 'partial', 'one'),
        resp('PUBLISH', 'partial', 'two'),
        resp('PUBLISH', 'partial', 'three'),
        fourth.subarray(0, fourth.length - 5),
      ]);
      // Written in one go, then the socket is closed at once, without reading any reply.
      await new Promise((resolve) => s.write(bytes, resolve));
      s.destroy();
      await sub.waitEvents(3);
      await sleep(300);
      assert.deepEqual(sub.events.map((e) => e.data), ['one', 'two', 'three']);
      const after = await info(srv.socket);
      assert.equal(after.published - before.published, 3);
    } finally {
      sub.close();
    }
  });

  test('a publisher that half-closes gets a reply for each complete command, then the close', async () => {
    const sub = await subscribe(srv.port, 'halfclose');
    try {
      await waitInfo(srv.socket, (i) => i.subscribers === 1, { message: 'subscriber' });
      const c = await feedConnect(srv.socket);
      const fourth = resp('PUBLISH', 'halfclose', 'four');
      c.socket.end(Buffer.concat([
        resp('PUBLISH', 'halfclose', 'one'),
        resp('PING'),
        resp('PUBLISH', 'halfclose', 'two'),
        resp('PUBLISH', 'halfclose', 'three'),
        fourth.subarray(0, 20),
      ]));
      assert.deepEqual(await c.replies(4), [
        { type: ':', value: 1 },
        { type: '+', value: 'PONG' },
        { type: ':', value: 1 },
        { type: ':', value: 1 },
      ]);
      assert.ok(await c.waitClosed(3000), 'the feed closes after the last reply');
      assert.equal(c.pendingReplies(), 0);
      await sub.waitEvents(3);
      await sleep(200);
      assert.deepEqual(sub.events.map((e) => e.data), ['one', 'two', 'three']);
    } finally {
      sub.close();
    }
  });
});

describe('feed idle timeout', () => {
  test('a silent publisher is closed after idle_timeout; listeners and active publishers stay', async () => {
    const srv = await startServer({ feed: { idle_timeout: '0.3' } });
    try {
      // Each publisher is used as soon as it is connected: 0.3 s is not much for a slow start.
      const listener = await feedListener(srv.socket, ['quiet']);
      const silent = await feedConnect(srv.socket);
      assert.deepEqual(await silent.command('PING'), { type: '+', value: 'PONG' });
      const busy = await feedConnect(srv.socket);
      const t0 = Date.now();
      while (Date.now() - t0 < 900) {
        assert.deepEqual(await busy.command('PING'), { type: '+', value: 'PONG' });
        await sleep(100);
      }
      assert.ok(await silent.waitClosed(2000), 'the silent publisher was closed');
      assert.ok(!busy.isClosed(), 'the busy publisher stays');
      assert.ok(!listener.isClosed(), 'the listener stays');
      assert.deepEqual(await listener.command('PING'), {
        type: '*',
        value: [{ type: '$', value: 'pong' }, { type: '$', value: '' }],
      });
      const i = await info(srv.socket);
      assert.equal(i.feed_idle_timeouts, 1);
      busy.close();
      listener.close();
    } finally {
      await srv.stop();
    }
  });
});

// End to end: a WebSocket client, the workers' side of talking back and a feed listener.
describe('talking back end to end', () => {
  let srv;
  before(async () => {
    srv = await startServer();
  });
  after(async () => {
    await srv?.stop();
  });

  test('a ws client message reaches redis-cli SUBSCRIBE; SEND and CLOSE reach the client', async () => {
    const sub = redisSubscribe(srv.socket, ['chat']);
    const client = await wsClient(srv.port, '/ws/chat');
    try {
      await sub.waitLines(3);
      client.ws.send('hello');
      const lines = await sub.waitLines(6);
      assert.deepEqual(lines.slice(3, 5), ['message', 'chat']);
      const m = /^(\d+\.\d+\.\d+) hello$/.exec(lines[5]);
      assert.ok(m, `"<conn-id> hello", got ${JSON.stringify(lines[5])}`);
      const id = m[1];
      await waitInfo(srv.socket, (i) => i.feed_upstream_messages === 1, { message: 'one upstream message' });

      assert.equal((await redisCli(srv.socket, ['SEND', id, 'hi there'])).stdout.trim(), '1');
      await client.waitMessages(1);
      assert.deepEqual(client.got[0], { data: Buffer.from('hi there'), isBinary: false });
      assert.equal((await redisCli(srv.socket, ['SEND', id, '\xff', 'BINARY'])).stdout.trim(), '1');
      await client.waitMessages(2);
      assert.equal(client.got[1].isBinary, true);

      assert.equal((await redisCli(srv.socket, ['CLOSE', id, '4000', 'see you'])).stdout.trim(), '1');
      assert.deepEqual(await client.closed, { code: 4000, reason: 'see you' });
      // The id is stale now: the connection is gone, whatever reuses its slot.
      await sleep(100);
      assert.equal((await redisCli(srv.socket, ['SEND', id, 'late'])).stdout.trim(), '0');
      assert.equal((await redisCli(srv.socket, ['CLOSE', id])).stdout.trim(), '0');
      const i = await info(srv.socket);
      assert.equal(i.feed_direct_sent, 3);
      assert.equal(i.feed_direct_missed, 2);
    } finally {
      sub.kill();
      client.ws.terminate();
    }
  });

  test('several listeners each get the message, and its id answers SEND', async () => {
    const a = await feedListener(srv.socket, ['room']);
    const b = await feedListener(srv.socket, ['room', 'other']);
    const client = await wsClient(srv.port, '/ws/room');
    try {
      client.ws.send('ping from the browser');
      const ma = await a.nextMessage();
      const mb = await b.nextMessage();
      assert.deepEqual(ma, mb);
      assert.equal(ma.channel, 'room');
      assert.equal(ma.payload, 'ping from the browser');
      assert.deepEqual(await a.command('UNSUBSCRIBE'), pubsubReply('unsubscribe', 'room', 0));
      const pub = await feedConnect(srv.socket);
      assert.deepEqual(await pub.command('SEND', ma.id, 'pong from the backend'), { type: ':', value: 1 });
      await client.waitMessages(1);
      assert.equal(client.got[0].data.toString(), 'pong from the backend');
      pub.close();
    } finally {
      a.close();
      b.close();
      client.ws.terminate();
    }
  });

  test('a listener that stops reading is cut at max_subscriber_buffer', async () => {
    const small = await startServer({ feed: { max_subscriber_buffer: '64k' }, websocket: { ping_interval: 0 } });
    try {
      const slow = await feedListener(small.socket, ['flood']);
      slow.socket.pause(); // reads nothing more (past what node buffers)
      const fast = await feedListener(small.socket, ['flood']);
      const client = await wsClient(small.port, '/ws/flood');
      const chunk = 'x'.repeat(8192);
      // One message at a time, each read by the fast listener before the next: the slow one's
      // backlog grows by a message each round, while the fast one never holds more than one.
      let sent = 0;
      let overflows = 0;
      while (overflows === 0 && sent < 400) {
        client.ws.send(chunk);
        sent++;
        const m = await fast.nextMessage();
        assert.equal(m.payload, chunk);
        if (sent % 10 === 0) overflows = (await info(small.socket)).feed_listener_overflows;
      }
      assert.equal(overflows, 1, `the slow listener was cut within ${sent} messages`);
      slow.socket.resume(); // to read up to the close
      assert.ok(await slow.waitClosed(3000), 'the slow listener was closed');
      client.ws.send('after');
      assert.equal((await fast.nextMessage()).payload, 'after');
      const i = await info(small.socket);
      assert.equal(i.feed_listeners, 1);
      assert.equal(i.feed_listener_overflows, 1);
      fast.close();
      client.ws.terminate();
    } finally {
      await small.stop();
    }
  });
});
