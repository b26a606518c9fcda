// [sse] watch_disconnects: with it on (the default) a hang-up is seen at once; with it off a
// stream holds no receive, still gets every event, and a hang-up is noticed when the next
// heartbeat or event to it fails.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, subscribe, publish, info, waitInfo, sleep } from './lib/harness.mjs';

describe('watch_disconnects = on (default)', () => {
  let srv;
  before(async () => {
    srv = await startServer({ server: { workers: 2 }, sse: { heartbeat_interval: 0 } });
  });
  after(async () => srv?.stop());

  test('a client that hangs up is no longer a subscriber within a second, without heartbeats', async () => {
    const c = await subscribe(srv.port, 'w');
    await waitInfo(srv.socket, (i) => i.subscribers === 1);
    c.close();
    await waitInfo(srv.socket, (i) => i.subscribers === 0 && i.connections === 0, { timeout: 1000 });
  });
});

describe('watch_disconnects = off', () => {
  let srv;
  before(async () => {
    srv = await startServer({
      server: { workers: 2 },
      sse: { watch_disconnects: 'off', heartbeat_interval: 0.3 },
    });
  });
  after(async () => srv?.stop());

  test('streams still receive every event in order', async () => {
    const clients = [];
    for (let i = 0; i < 20; i++) clients.push(await subscribe(srv.port, 'off'));
    for (let i = 1; i <= 50; i++) assert.equal(await publish(srv.socket, 'off', `e${i}`), 20);
    for (const c of clients) {
      await c.waitEvents(50);
      assert.deepEqual(
        c.events.map((e) => e.data),
        Array.from({ length: 50 }, (_, i) => `e${i + 1}`),
      );
      c.close();
    }
  });

  test('a hang-up is noticed through the heartbeats, and bytes from the client do no harm', async () => {
    await waitInfo(srv.socket, (i) => i.connections === 0, { timeout: 5000 });
    const c = await subscribe(srv.port, 'hb');
    c.socket.write('unexpected bytes after the request\r\n');
    await sleep(700);
    assert.equal((await info(srv.socket)).subscribers, 1, 'the stream is still open');
    c.close();
    // Two heartbeats at most: the first reaches a closed socket, which answers with a reset,
    // and the second fails.
    await waitInfo(srv.socket, (i) => i.subscribers === 0 && i.connections === 0, { timeout: 3000 });
  });
});
