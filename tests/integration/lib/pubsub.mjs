// Helpers for talking back: feed connections that SUBSCRIBE (through redis-cli and raw RESP),
// and `ws` clients whose messages go upstream.
//
// Like harness.mjs, every wait is bounded, and every spawned process is registered with its
// track(), so it is killed when the test process exits.

import { spawn } from 'node:child_process';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { feedConnect, resp, track, withTimeout } from './harness.mjs';

/**
 * Runs `redis-cli -s sock SUBSCRIBE channels...` and collects its output lines. redis-cli prints
 * each element of each reply on a line of its own when stdout is not a terminal, so a
 * confirmation is three lines (subscribe, channel, count) and a message too (message, channel,
 * "<conn-id> <payload>").
 * Returns {proc, lines(), waitLines(n, ms), messages(), exited, kill()}.
 */
export function redisSubscribe(sock, channels) {
  const proc = spawn('redis-cli', ['-s', sock, 'SUBSCRIBE', ...channels], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  track(proc);
  let out = '';
  let err = '';
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stdout.on('data', (d) => (out += d));
  proc.stderr.on('data', (d) => (err += d));
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  const lines = () => out.split('\n').filter((l, i, a) => i < a.length - 1 || l.length);
  const sub = {
    proc,
    exited,
    lines,
    /** Waits until at least n lines have been printed; returns them all. */
    async waitLines(n, ms = 5000) {
      const deadline = Date.now() + ms;
      while (lines().length < n) {
        if (Date.now() > deadline || proc.exitCode !== null) {
          throw new Error(`redis-cli SUBSCRIBE: wanted ${n} lines, got ${JSON.stringify(lines())} (stderr ${JSON.stringify(err)})`);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
      return lines();
    },
    /** The pushed messages so far as {channel, text}. */
    messages() {
      const l = lines();
      const msgs = [];
      for (let i = 0; i + 2 < l.length; i += 3) {
        if (l[i] === 'message') msgs.push({ channel: l[i + 1], text: l[i + 2] });
      }
      return msgs;
    },
    kill() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    },
  };
  return sub;
}

/**
 * A raw feed connection that has subscribed to `channels`; the confirmations are checked.
 * Its pushed messages are read with nextMessage(ms) -> {channel, id, payload}.
 */
export async function feedListener(sock, channels) {
  const c = await feedConnect(sock);
  c.send(resp('SUBSCRIBE', ...channels));
  const confirmations = await c.replies(channels.length);
  confirmations.forEach((r, i) => {
    assert.deepEqual(r, {
      type: '*',
      value: [
        { type: '$', value: 'subscribe' },
        { type: '$', value: channels[i] },
        { type: ':', value: i + 1 },
      ],
    });
  });
  c.nextMessage = async (ms = 5000) => {
    const r = await c.reply(ms);
    assert.equal(r.type, '*', `a pushed message, got ${JSON.stringify(r)}`);
    const [kind, channel, body] = r.value.map((v) => v.value);
    assert.equal(kind, 'message');
    const sp = body.indexOf(' ');
    return { channel, id: body.slice(0, sp), payload: body.slice(sp + 1) };
  };
  return c;
}

/** The RESP pub/sub confirmation that redis-server sends for one channel. */
export function pubsubReply(kind, channel, count) {
  return {
    type: '*',
    value: [
      { type: '$', value: kind },
      { type: '$', value: channel },
      { type: ':', value: count },
    ],
  };
}

/**
 * Opens a `ws` client on `path` (e.g. /ws/chat) and records its messages as {data, isBinary}
 * and its close as {code, reason}. Returns {ws, got, closed (promise), waitMessages(n, ms)}.
 */
export async function wsClient(port, path, opts = {}) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, opts);
  const rec = { ws, got: [], close: null };
  ws.on('message', (data, isBinary) => rec.got.push({ data: Buffer.from(data), isBinary }));
  rec.closed = new Promise((resolve) =>
    ws.on('close', (code, reason) => {
      rec.close = { code, reason: reason.toString('utf8') };
      resolve(rec.close);
    }),
  );
  ws.on('error', () => {});
  await withTimeout(
    new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    }),
    5000,
    `ws open on ${path}`,
  );
  rec.waitMessages = async (n, ms = 5000) => {
    const deadline = Date.now() + ms;
    while (rec.got.length < n) {
      if (Date.now() > deadline) throw new Error(`ws ${path}: wanted ${n} messages, got ${rec.got.length}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return rec.got;
  };
  return rec;
}
