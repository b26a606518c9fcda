// Issue 5, the memory bound: engine memory stays flat while clients that never read hold
// connections under a sustained publish load. 50 raw SSE clients send their request and never
// read again (their kernel receive buffers fill, then the server's send buffers), 2 readers on
// the same channel read everything; well over 100 MB is published through one raw feed
// connection. The server's RSS (VmRSS sampled, and the kernel's VmHWM) must grow by far less
// than what was published, the never-readers must be cut as slow consumers rather than held,
// and the readers must get every event, in order, intact. Three ways of bounding it: small counts
// (history_size/max_lag 64), the defaults (counts 1024, the built-in byte limits), and explicit
// history_max_bytes/max_lag_bytes with counts at 1024.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startServer, feedConnect, info, waitInfo, waitUntil, sleep, BIN } from './lib/harness.mjs';
import { sseStream, publishWindowed, procStatus, sampleRss, MiB } from './lib/streams.mjs';
import { execFileSync } from 'node:child_process';

const NEVER_READERS = 50;
const READERS = 2;
const PAYLOAD = 64 * 1024;
const EVENTS = 2000; // 2000 x 64 KiB = 125 MiB = 131 MB of payload
const WINDOW = 16; // publishes in flight on the feed connection
const GROWTH_BOUND = 40 * MiB;
const CH = 'mem';

const payload = (seq) => {
  const head = `seq=${seq} `;
  const tail = ` /${seq}`;
  return head + 'M'.repeat(PAYLOAD - head.length - tail.length) + tail;
};

/** AddressSanitizer keeps freed memory in quarantine (256 MB): RSS says nothing there. */
function sanitized() {
  try {
    return /libasan/.test(execFileSync('ldd', [BIN], { encoding: 'utf8', timeout: 5000 }));
  } catch {
    return false;
  }
}
const ASAN = sanitized() ? 'the binary is built with AddressSanitizer, whose quarantine holds freed memory' : false;

/** A client that sends its request and never reads a byte (its socket stays paused). */
function neverReader(port) {
  const s = net.connect({ host: '127.0.0.1', port });
  const c = { socket: s, closed: false, error: null };
  s.on('connect', () => {
    s.write(`GET /sse/${CH} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`);
    s.pause();
  });
  s.pause();
  s.on('error', (e) => (c.error = e));
  s.on('close', () => (c.closed = true));
  return c;
}

/** A reader that checks each event as it comes (next seq, intact payload, id present). */
function reader(port, name) {
  const st = { name, next: 0, failure: null, lastId: null };
  st.stream = sseStream(port, `/sse/${CH}`, {
    onEvent: (ev) => {
      if (st.failure) return;
      const m = /^seq=(\d+) /.exec(ev.data);
      const seq = m ? Number(m[1]) : NaN;
      if (seq !== st.next) {
        st.failure = `${name}: got ${m ? `seq ${seq}` : JSON.stringify(ev.data.slice(0, 40))}, expected seq ${st.next}`;
      } else if (ev.data !== payload(seq)) {
        st.failure = `${name}: seq ${seq} payload damaged (length ${ev.data.length}, want ${PAYLOAD})`;
      } else if (!ev.id) {
        st.failure = `${name}: seq ${seq} has no id`;
      } else {
        st.lastId = ev.id;
        st.next++;
      }
    },
  });
  return st;
}

async function run(t, channels) {
  const srv = await startServer({ server: { workers: 2 }, channels });
  const pid = srv.proc.pid;
  const never = [];
  const readers = [];
  let feed;
  try {
    for (let i = 0; i < NEVER_READERS; i++) never.push(neverReader(srv.port));
    for (let i = 0; i < READERS; i++) readers.push(reader(srv.port, `reader#${i}`));
    for (const r of readers) {
      await r.stream.waitHead(5000);
      assert.equal(r.stream.status, 200, r.stream.headText);
    }
    await waitInfo(srv.socket, (x) => x.subscribers === NEVER_READERS + READERS, {
      message: `${NEVER_READERS + READERS} subscribers`,
    });
    feed = await feedConnect(srv.socket);
    const before = await info(srv.socket);

    // A few events first, so that anything allocated once (rings, buffers) is in the baseline.
    await publishWindowed(feed, 4, (i) => ['PUBLISH', CH, payload(i)], { window: 4 });
    await waitUntil(() => readers.every((r) => r.next >= 4 || r.failure), { timeout: 10000, message: 'warm-up events' });
    await sleep(200);
    const base = procStatus(pid);
    const sampler = sampleRss(pid, { interval: 20 });

    // The rest, paced by the readers: before each window both readers have caught up to within
    // one window, so a reader is never near max_lag (it would be cut, which the test would see).
    let published = 4;
    let mem;
    try {
      await publishWindowed(feed, EVENTS - 4, (i) => ['PUBLISH', CH, payload(i + 4)], {
        window: WINDOW,
        between: async (done) => {
          published = 4 + done;
          await waitUntil(() => readers.every((r) => r.next >= published - WINDOW || r.failure || r.stream.isClosed()), {
            timeout: 20000,
            interval: 5,
            message: `readers to catch up to ${published - WINDOW} (at ${readers.map((r) => r.next)})`,
          });
          const f = readers.find((r) => r.failure);
          if (f) throw new Error(f.failure);
        },
      });
      await waitUntil(() => readers.every((r) => r.next >= EVENTS || r.failure || r.stream.isClosed()), {
        timeout: 30000,
        message: `readers to get all ${EVENTS} events (at ${readers.map((r) => r.next)})`,
      });
    } finally {
      mem = await sampler.stop();
    }

    // The peak: the kernel's high-water mark if it rose during the run, else the sampled peak.
    const peak = Math.max(mem.peak, mem.hwm > base.VmHWM ? mem.hwm : 0);
    const growth = peak - base.VmRSS;
    const publishedBytes = EVENTS * PAYLOAD;
    t.diagnostic(
      `published ${(publishedBytes / 1e6).toFixed(0)} MB; RSS baseline ${(base.VmRSS / MiB).toFixed(1)} MiB, ` +
        `peak ${(peak / MiB).toFixed(1)} MiB (sampled ${(mem.peak / MiB).toFixed(1)} MiB over ${mem.samples} samples, ` +
        `VmHWM ${(mem.hwm / MiB).toFixed(1)} MiB), growth ${(growth / MiB).toFixed(1)} MiB`,
    );

    for (const r of readers) assert.equal(r.failure, null);
    for (const r of readers) assert.equal(r.next, EVENTS, `${r.name} got every event (closed: ${r.stream.isClosed()})`);
    for (const r of readers) assert.ok(!r.stream.isClosed(), `${r.name} is still connected`);

    const after = await waitInfo(srv.socket, (x) => x.slow_disconnects - before.slow_disconnects >= NEVER_READERS, {
      timeout: 10000,
      message: `slow_disconnects to count the ${NEVER_READERS} never-readers`,
    });
    assert.equal(after.slow_disconnects - before.slow_disconnects, NEVER_READERS, 'exactly the never-readers were cut');
    assert.equal(after.subscribers, READERS, 'only the readers remain subscribed');
    assert.equal(after.published - before.published, EVENTS);
    assert.ok(publishedBytes > 100e6, 'well over 100 MB published');
    assert.ok(
      growth < GROWTH_BOUND,
      `RSS grew by ${(growth / MiB).toFixed(1)} MiB (bound ${GROWTH_BOUND / MiB} MiB) while ${(publishedBytes / MiB).toFixed(0)} MiB were published`,
    );

    // Cut means cut: each never-reader's connection is closed (what it finds once it reads is
    // what its kernel buffers held, then the end of the stream).
    for (const c of never) c.socket.resume();
    await waitUntil(() => never.every((c) => c.closed), { timeout: 15000, message: 'never-readers see their streams end' });
  } finally {
    for (const c of never) c.socket.destroy();
    for (const r of readers) r.stream.close();
    feed?.close();
    await srv.stop();
  }
}

describe('memory stays flat under clients that never read', { timeout: 300000 }, () => {
  test(`${NEVER_READERS} never-readers + ${READERS} readers, ${EVENTS} x ${PAYLOAD / 1024} KiB published (history_size/max_lag 64)`, { timeout: 180000, skip: ASAN }, async (t) => {
    await run(t, { history_size: 64, max_lag: 64 });
  });

  // history_size and max_lag at 1024 would let 1024 x 64 KiB (x2: the SSE and the WebSocket
  // frame) pile up per channel; the built-in byte limits (history_max_bytes 8 MiB, max_lag_bytes
  // 4 MiB since 039c1be) are what keeps it flat. (At 5a817d8, without them, this grew 134 MiB.)
  test('the default [channels] limits: counts at 1024, the built-in byte limits', { timeout: 180000, skip: ASAN }, async (t) => {
    await run(t, {});
  });

  test('the same with the byte limits: history_max_bytes 8m, max_lag_bytes 2m, counts at 1024', { timeout: 180000, skip: ASAN }, async (t) => {
    await run(t, { history_size: 1024, max_lag: 1024, history_max_bytes: '8m', max_lag_bytes: '2m' });
  });
});
