// The history window of a channel is bounded three ways, each configurable per channel-name
// prefix: by events (history_size), by payload bytes (history_max_bytes) and by age
// (history_ttl). What left the window is what a resuming client is told it missed.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, subscribe, publish, info, waitInfo, waitUntil, sleep } from './lib/harness.mjs';

let srv;
let instance;

before(async () => {
  srv = await startServer({
    channels: { history_size: 100, history_ttl: 1, history_max_bytes: '1k' },
    'channels:keep.': { history_size: 3, history_ttl: 0, history_max_bytes: '1m' },
    'channels:keep.long.': { history_size: 5, history_ttl: 0 },
  });
  instance = (await info(srv.socket)).instance;
});

after(async () => {
  await srv?.stop();
});

/** Publishes n events (payload(i)) and returns the engine seq of the last (= publishes so far). */
async function publishMany(channel, n, payload = (i) => `e${i}`) {
  for (let i = 0; i < n; i++) await publish(srv.socket, channel, payload(i));
  const i = await info(srv.socket);
  return i.published;
}

/** Resumes on `channel` after engine seq `seq`: the stream's events (a gap event included). */
async function resume(channel, seq, wantEvents) {
  const c = await subscribe(srv.port, channel, { headers: [`Last-Event-ID: ${instance}-${seq}`] });
  try {
    await c.waitEvents(wantEvents);
    await sleep(100);
    return c.events.map((e) => ({ event: e.event, data: e.data }));
  } finally {
    c.close();
  }
}

test('history_ttl: events older than the time limit leave; a resume before them gets a gap', async () => {
  const first = await publishMany('ttl.a', 0);
  await publishMany('ttl.a', 3);
  // Within the time limit, the whole window is replayed without a gap.
  let got = await resume('ttl.a', first, 3);
  assert.deepEqual(got.map((e) => e.data), ['e0', 'e1', 'e2']);
  await sleep(2200); // the sweep runs every second; one second of history_ttl has passed
  const last = await publishMany('ttl.a', 1, () => 'fresh');
  got = await resume('ttl.a', first, 2);
  assert.deepEqual(got, [
    { event: 'ringcast-gap', data: 'too-old' },
    { event: undefined, data: 'fresh' },
  ]);
  assert.ok(last > first);
});

test('history_max_bytes: the oldest events leave when the payloads exceed the byte limit', async () => {
  const before = (await info(srv.socket)).published;
  // 10 events of 300 bytes: 1 KiB holds the last three.
  await publishMany('bytes.a', 10, (i) => `${i}`.padEnd(300, '.'));
  const got = await resume('bytes.a', before, 4);
  assert.equal(got[0].event, 'ringcast-gap');
  assert.deepEqual(got.slice(1).map((e) => e.data.split('.')[0]), ['7', '8', '9']);
});

test('[channels:PREFIX] overrides: the longest matching prefix wins', async () => {
  const before = (await info(srv.socket)).published;
  await publishMany('keep.x', 8);
  await publishMany('keep.long.x', 8);
  await sleep(2200); // history_ttl = 0 in both sections: nothing expires
  const short = await resume('keep.x', before, 4);
  assert.deepEqual(short.map((e) => e.data), ['too-old', 'e5', 'e6', 'e7']);
  const long = await resume('keep.long.x', before + 8, 6);
  // keep.long. leaves history_max_bytes out: it is the [channels] value, 1k, which holds five.
  assert.deepEqual(long.map((e) => e.data), ['too-old', 'e3', 'e4', 'e5', 'e6', 'e7']);
});

test('channels without subscribers or history are forgotten', async () => {
  await publishMany('forget.me', 1);
  const withIt = (await info(srv.socket)).channels;
  await waitUntil(async () => (await info(srv.socket)).channels < withIt, {
    timeout: 5000,
    message: 'the channel to be forgotten after history_ttl',
  });
});
