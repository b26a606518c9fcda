// permessage-deflate (RFC 7692) helpers for raw-socket tests: building compressed client frames
// with Node's zlib, inflating server frames, and deterministic payloads. The compressed bytes
// come from zlib, never from ringcast, so a test cannot agree with the engine by construction.

import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import { wsFrame, wsRaw, wsOpen, closeCode, sleep } from './harness.mjs';

/** The four bytes a sync flush ends with, which RFC 7692 7.2.1 has the sender remove. */
export const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);

/** RSV1 in harness.wsFrame()'s `rsv` option (RSV1-3 as a 3-bit number, RSV1 the high bit). */
export const RSV1 = 4;

const SYNC = { finishFlush: zlib.constants.Z_SYNC_FLUSH };

/**
 * Compresses one message on its own (no context), as RFC 7692 7.2.1 says: raw DEFLATE, sync
 * flush, the trailing 00 00 ff ff removed.
 */
export function compress(data, { windowBits = 15, level = zlib.constants.Z_DEFAULT_COMPRESSION } = {}) {
  const buf = Buffer.isBuffer(data) ? data : Buffer.from(data, 'utf8');
  const out = zlib.deflateRawSync(buf, { ...SYNC, windowBits, level });
  assert.deepEqual(out.subarray(-4), TAIL, 'a sync flush ends with 00 00 ff ff');
  return out.subarray(0, out.length - 4);
}

/**
 * A compressor that keeps its window from one message to the next (context takeover), as a
 * client that did not agree to client_no_context_takeover may: each message is the output of one
 * more sync flush of the same DEFLATE stream, without its 00 00 ff ff.
 */
export class ContextDeflater {
  constructor({ windowBits = 15 } = {}) {
    this.z = zlib.createDeflateRaw({ windowBits });
    this.chunks = [];
    this.z.on('data', (d) => this.chunks.push(d));
  }

  compress(data) {
    const buf = Buffer.isBuffer(data) ? data : Buffer.from(data, 'utf8');
    return new Promise((resolve, reject) => {
      this.z.once('error', reject);
      this.z.write(buf);
      this.z.flush(zlib.constants.Z_SYNC_FLUSH, () => {
        this.z.off('error', reject);
        const out = Buffer.concat(this.chunks);
        this.chunks = [];
        if (out.length < 4 || !out.subarray(-4).equals(TAIL)) {
          reject(new Error(`sync flush did not end with 00 00 ff ff: ${out.toString('hex')}`));
          return;
        }
        resolve(out.subarray(0, out.length - 4));
      });
    });
  }

  close() {
    this.z.close();
  }
}

/** Inflates the payload of one compressed message on its own (server_no_context_takeover). */
export function inflate(payload) {
  return zlib.inflateRawSync(Buffer.concat([payload, TAIL]), SYNC);
}

/**
 * The client frames of one message: `payload` (already compressed when rsv1) cut into frames of
 * at most `fragment` bytes (0: a single frame). RSV1 goes on the first frame only, as RFC 7692
 * 6.1 requires; `rsvOnContinuation` puts it on every continuation frame as well, to break that.
 */
export function messageFrames(opcode, payload, { fragment = 0, rsv1 = true, rsvOnContinuation = false } = {}) {
  const size = fragment > 0 ? fragment : Math.max(payload.length, 1);
  const frames = [];
  let at = 0;
  do {
    const piece = payload.subarray(at, at + size);
    const first = at === 0;
    at += piece.length;
    const rsv = (first && rsv1) || (!first && rsvOnContinuation) ? RSV1 : 0;
    frames.push(wsFrame(first ? opcode : 0x0, piece, { fin: at >= payload.length, rsv }));
  } while (at < payload.length);
  return frames;
}

/** One Sec-WebSocket-Extensions request line per offer value. */
export function offerHeaders(...offers) {
  return offers.map((o) => `Sec-WebSocket-Extensions: ${o}`);
}

/**
 * Performs an opening handshake with the given Sec-WebSocket-Extensions lines and returns
 * {status, extensions: [values] | undefined, head} without keeping the connection.
 */
export async function handshake(port, channel, offers) {
  const c = wsRaw(port, channel, { headers: offerHeaders(...offers), unheard: false });
  try {
    await c.waitHead(3000);
    return { status: c.head.status, extensions: c.head.headers['sec-websocket-extensions'], head: c.headText };
  } finally {
    c.close();
  }
}

/**
 * Opens a WebSocket that offers `offer` (a permessage-deflate offer value, or null for none) and
 * asserts the extension answer: `agreed` (the exact value) or none when agreed is null.
 */
export async function wsOpenDeflate(port, channel, offer = 'permessage-deflate', agreed = 'permessage-deflate; server_no_context_takeover') {
  const c = await wsOpen(port, channel, { headers: offer === null ? [] : offerHeaders(offer), unheard: false });
  assert.deepEqual(c.head.headers['sec-websocket-extensions'], agreed === null ? undefined : [agreed], c.headText);
  return c;
}

/**
 * Sends bytes (a Buffer or an array, written a few ms apart) and expects the server's Close with
 * `code`, unmasked and without RSV bits, and nothing after it; answers it and expects the TCP
 * close. Returns the Close frame.
 */
export async function expectCloseWith(c, bytes, code) {
  try {
    for (const b of [].concat(bytes)) {
      c.send(b);
      await sleep(2);
    }
    await c.waitFor((x) => x.frames.some((f) => f.opcode === 0x8), 5000, `Close ${code}`);
    const i = c.frames.findIndex((f) => f.opcode === 0x8);
    const close = c.frames[i];
    assert.equal(closeCode(close), code, `close payload ${close.payload.toString('hex')}`);
    assert.equal(close.masked, false);
    assert.equal(close.rsv, 0, 'a Close frame never has RSV1');
    assert.equal(close.fin, true);
    c.frame(0x8, Buffer.from([0x03, 0xe8]));
    assert.ok(await c.waitClosed(3000), 'the server closes the connection after the handshake');
    assert.equal(c.frames.length, i + 1, 'nothing follows the Close');
    return close;
  } finally {
    // Also when the expectation failed: a victim left open would distort the tests after it.
    c.close();
  }
}

/** A deterministic generator (xorshift32) for payloads that are the same on every run. */
export function rng(seed = 0x9e3779b9) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

const WORDS = ['event', 'tick', 'price', 'κόσμε', 'données', '𝄞', '€', 'seq', 'channel', '日本語', 'ok', '{"a":1}'];

/**
 * Valid UTF-8 text of exactly n bytes: words (one-, two-, three- and four-byte characters)
 * chosen by a seeded generator, so that it compresses like real text, padded with ASCII.
 */
export function textPayload(n, seed = 1) {
  const next = rng(seed);
  const parts = [];
  let len = 0;
  for (;;) {
    const w = WORDS[next() % WORDS.length] + (next() % 3 === 0 ? String(next() % 1000) : '') + ' ';
    const b = Buffer.byteLength(w);
    if (len + b > n) break;
    parts.push(w);
    len += b;
  }
  const out = Buffer.from(parts.join('') + 'x'.repeat(n - len), 'utf8');
  assert.equal(out.length, n);
  return out;
}

/** Binary data of n bytes that compresses somewhat: random bytes from a small alphabet, in runs. */
export function binaryPayload(n, seed = 2) {
  const next = rng(seed);
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; ) {
    const run = 1 + (next() % 8);
    const byte = next() & 0x1f ? next() & 0x3f : 0xff;
    for (let k = 0; k < run && i < n; k++) out[i++] = byte;
  }
  return out;
}
