// Engine bugs found while writing other tests, each reproduced the way it was found.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, sseConnect, feedConnect, resp, info, waitInfo } from './lib/harness.mjs';


/**
 * The feed's release_acked() releases every queued event whose `pending` count is already 0 when
 * an earlier event's ACK arrives, including one whose own ACK message is still on its way to the
 * feed. If no worker holds that event any more (no history keeps it), rc_event_put() frees it,
 * and its ACK then makes on_ack() read ev->origin from freed memory (feed.c:235; ASan:
 * heap-use-after-free, freed by release_acked). Large payloads make the freed block go back to
 * the system at once, so the release build dies of SIGSEGV. At 5a817d8 a channel nobody
 * subscribed to was enough (workers kept no history for it); at 039c1be every worker keeps every
 * channel's history, so it takes events leaving the history while they are still being
 * acknowledged: a history of 1 event, or payloads big enough for history_max_bytes (8 MiB).
 */
async function pipelineToNobody(overrides, { payloadBytes, windows, per = 50 }) {
  const srv = await startServer({ server: { workers: 2 }, ...overrides });
  const feed = await feedConnect(srv.socket);
  try {
    const payload = 'x'.repeat(payloadBytes);
    for (let w = 0; w < windows; w++) {
      const cmds = [];
      for (let k = 0; k < per; k++) cmds.push(resp('PUBLISH', 'nobody', payload));
      feed.send(Buffer.concat(cmds));
      const rs = await feed.replies(per, 20000);
      assert.deepEqual(rs.filter((r) => r.type !== ':' || r.value !== 0).slice(0, 3), [], `window ${w}`);
    }
    const i = await info(srv.socket);
    assert.equal(i.published, windows * per);
  } finally {
    feed.close();
    await srv.stop(); // asserts the server is still running and exits 0
  }
}

test('pipelined PUBLISHes of 900 kB to a channel nobody listens to, default limits: every reply :0, no crash', { timeout: 120000 }, async () => {
  await pipelineToNobody({}, { payloadBytes: 900000, windows: 30 });
});

test('pipelined PUBLISHes of 32 KiB with history_size 1: every reply :0, no crash', { timeout: 60000 }, async () => {
  await pipelineToNobody({ channels: { history_size: 1, max_lag: 1 } }, { payloadBytes: 32 * 1024, windows: 40 });
});

test('pipelined PUBLISHes of 32 KiB to a channel nobody listens to (how it showed at 5a817d8)', { timeout: 60000 }, async () => {
  await pipelineToNobody({}, { payloadBytes: 32 * 1024, windows: 40 });
});

/** The same bug as it first showed at 5a817d8: the only subscriber is cut as a slow consumer. */
test('the only subscriber cut as a slow consumer while publishes are pipelined: no crash', { timeout: 60000 }, async () => {
  const srv = await startServer({ server: { workers: 2 }, channels: { history_size: 64, max_lag: 64 } });
  const slow = sseConnect(srv.port, 'alone', { pause: true });
  const feed = await feedConnect(srv.socket);
  try {
    await waitInfo(srv.socket, (i) => i.subscribers === 1, { message: 'the slow client subscribed' });
    const payload = 'y'.repeat(32 * 1024);
    const replies = [];
    for (let w = 0; w < 20; w++) {
      const cmds = [];
      for (let k = 0; k < 20; k++) cmds.push(resp('PUBLISH', 'alone', payload));
      feed.send(Buffer.concat(cmds));
      for (const r of await feed.replies(20, 10000)) replies.push(r.value);
    }
    assert.ok(replies[0] === 1 && replies.at(-1) === 0, `1 while subscribed, 0 after the cut: ${replies.join(',')}`);
    const i = await info(srv.socket);
    assert.equal(i.slow_disconnects, 1);
  } finally {
    slow.close();
    feed.close();
    await srv.stop();
  }
});
