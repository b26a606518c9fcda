// Helpers for tests that move a lot of data: an SSE reader over a raw socket that keeps nothing
// but what it is told to (harness.mjs's sseConnect keeps every body byte, which is right for
// exact-wire tests and wrong for 100 MB), windowed publishing on one raw feed connection, and the
// server's memory from /proc.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { resp, sleep } from './harness.mjs';

/**
 * A streaming SSE parser: push(Buffer) calls onEvent({id, event, data}) for every complete
 * event (data lines joined with '\n', as a latin1 string: tests compare bytes, not text) and
 * onRetry(value) for retry: fields. Keeps only the incomplete tail. Comments are counted.
 */
export class SseStreamParser {
  constructor({ onEvent, onRetry = () => {} }) {
    this.onEvent = onEvent;
    this.onRetry = onRetry;
    this.pending = '';
    this.comments = 0;
    this.cur = null;
  }

  push(chunk) {
    this.pending += chunk.toString('latin1');
    let start = 0;
    for (;;) {
      const nl = this.pending.indexOf('\n', start);
      if (nl < 0) break;
      this.line(this.pending.slice(start, nl));
      start = nl + 1;
    }
    this.pending = start ? this.pending.slice(start) : this.pending;
  }

  /** Forgets a half-received event (the connection carrying it is gone). */
  reset() {
    this.pending = '';
    this.cur = null;
  }

  line(l) {
    if (l === '') {
      const c = this.cur;
      this.cur = null;
      if (c && c.data !== undefined) this.onEvent({ id: c.id, event: c.event, data: c.data });
      return;
    }
    if (l[0] === ':') {
      this.comments++;
      return;
    }
    const i = l.indexOf(':');
    const field = i < 0 ? l : l.slice(0, i);
    let v = i < 0 ? '' : l.slice(i + 1);
    if (v[0] === ' ') v = v.slice(1);
    this.cur ||= {};
    if (field === 'data') this.cur.data = this.cur.data === undefined ? v : this.cur.data + '\n' + v;
    else if (field === 'id') this.cur.id = v;
    else if (field === 'event') this.cur.event = v;
    else if (field === 'retry') this.onRetry(v);
  }
}

/**
 * GET `target` on a raw socket; every event goes to onEvent and is not kept. Returns
 * {socket, status (once the head is in), headText, bytes, waitHead(ms), closed (promise),
 * isClosed(), close()}.
 */
export function sseStream(port, target, { onEvent, headers = [] } = {}) {
  const s = net.connect({ host: '127.0.0.1', port });
  s.setNoDelay(true);
  const parser = new SseStreamParser({ onEvent });
  const c = { socket: s, status: null, headText: null, bytes: 0, closedFlag: false, error: null, parser };
  let head = Buffer.alloc(0);
  let headSeen;
  const headPromise = new Promise((resolve) => (headSeen = resolve));
  c.closed = new Promise((resolve) =>
    s.on('close', () => {
      c.closedFlag = true;
      headSeen();
      resolve();
    }),
  );
  s.on('error', (e) => (c.error = e));
  s.on('connect', () => {
    s.write(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\n` +
      headers.map((h) => h + '\r\n').join('') + '\r\n');
  });
  s.on('data', (d) => {
    c.bytes += d.length;
    if (c.status === null) {
      head = Buffer.concat([head, d]);
      const i = head.indexOf('\r\n\r\n');
      if (i < 0) return;
      c.headText = head.subarray(0, i).toString('latin1');
      c.status = Number(/^HTTP\/1\.1 (\d{3})/.exec(c.headText)?.[1] ?? 0);
      headSeen();
      const rest = head.subarray(i + 4);
      head = null;
      if (rest.length) parser.push(rest);
      return;
    }
    parser.push(d);
  });
  c.waitHead = async (ms = 5000) => {
    let t;
    await Promise.race([headPromise, new Promise((r) => (t = setTimeout(r, ms)))]);
    clearTimeout(t);
    if (c.status === null) throw new Error(`no response head for GET ${target} within ${ms} ms (closed: ${c.closedFlag})`);
    return c;
  };
  c.isClosed = () => c.closedFlag;
  c.close = () => s.destroy();
  return c;
}

/**
 * Publishes `count` events on the raw feed connection `feed` (harness feedConnect) in windows of
 * `window` commands, each window in one write; waits for the window's replies (at most
 * `replyTimeout` ms) and then for `between(doneSoFar)` if given, before the next window.
 * cmd(i) returns the argument array of command i. Every reply must be an integer; returns them.
 */
export async function publishWindowed(feed, count, cmd, { window = 32, between, replyTimeout = 20000 } = {}) {
  const out = [];
  for (let i = 0; i < count; i += window) {
    const n = Math.min(window, count - i);
    const bufs = [];
    for (let k = 0; k < n; k++) bufs.push(resp(...cmd(i + k)));
    feed.send(Buffer.concat(bufs));
    const rs = await feed.replies(n, replyTimeout);
    const bad = rs.filter((r) => r.type !== ':');
    assert.deepEqual(bad.slice(0, 3), [], `publish replies in the window at ${i}`);
    for (const r of rs) out.push(r.value);
    if (between) await between(i + n);
  }
  return out;
}

/** The fields of /proc/<pid>/status that are sizes, in bytes ({VmRSS, VmHWM, ...}). */
export function procStatus(pid) {
  const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const out = {};
  for (const m of text.matchAll(/^(\w+):\s+(\d+) kB$/gm)) out[m[1]] = Number(m[2]) * 1024;
  return out;
}

/**
 * Samples VmRSS of pid every `interval` ms until stop() is called; stop() returns
 * {samples, peak (the largest VmRSS sampled), hwm (VmHWM at stop: the kernel's own peak)}.
 */
export function sampleRss(pid, { interval = 20 } = {}) {
  let running = true;
  let peak = 0;
  let samples = 0;
  const loop = (async () => {
    while (running) {
      try {
        const st = procStatus(pid);
        peak = Math.max(peak, st.VmRSS);
        samples++;
      } catch {
        // the process is gone; stop() will say so through hwm
      }
      await sleep(interval);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      let hwm = null;
      try {
        hwm = procStatus(pid).VmHWM;
      } catch {
        // gone
      }
      return { samples, peak, hwm };
    },
  };
}

export const MiB = 1024 * 1024;
