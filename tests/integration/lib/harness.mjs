// Shared helpers for the ringcast integration tests.
//
// Everything here talks to a real ringcast binary ($RINGCAST_BIN) over loopback TCP and a UNIX
// socket, with clients no one here wrote (curl, redis-cli, the `eventsource` package) plus raw
// sockets for the byte-exact and malformed-input cases. Every wait is bounded; every spawned
// process is killed when the test process exits, whatever happened.

import { spawn, execFile } from 'node:child_process';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { EventSource } from 'eventsource';

/**
 * The `eventsource` npm package: v4, a WHATWG-conformant EventSource on Node's fetch (undici),
 * with a linear-time parser (eventsource-parser) and Last-Event-ID sent on reconnect. (v2's
 * node:http parser rescans each chunk from its start for every line, quadratic under load.)
 */
export { EventSource };

export { sleep };

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(HERE, '../../..');

/** The binary under test: $RINGCAST_BIN, else <repo>/build/ringcast for manual runs. */
export const BIN = process.env.RINGCAST_BIN || path.join(REPO_ROOT, 'build', 'ringcast');

function requireBinary() {
  if (!fs.existsSync(BIN)) {
    throw new Error(`ringcast binary not found at ${BIN}; build it or set RINGCAST_BIN`);
  }
}

// ---------------------------------------------------------------------------------------------
// Process bookkeeping: anything we spawn is SIGKILLed if the test process exits with it alive.

const live = new Set();
process.on('exit', () => {
  for (const p of live) {
    try {
      p.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
});

/** Registers a spawned process to be SIGKILLed if the test process exits with it alive. */
export function track(proc) {
  live.add(proc);
  proc.once('exit', () => live.delete(proc));
  return proc;
}

/** Resolves with {code, signal} when proc exits, or null after `ms`. */
export function waitExit(proc, ms) {
  if (proc.exitCode !== null || proc.signalCode !== null) {
    return Promise.resolve({ code: proc.exitCode, signal: proc.signalCode });
  }
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      proc.off('exit', onExit);
      resolve(null);
    }, ms);
    function onExit(code, signal) {
      clearTimeout(t);
      resolve({ code, signal });
    }
    proc.once('exit', onExit);
  });
}

// ---------------------------------------------------------------------------------------------
// Generic waiting.

/**
 * Polls fn (sync or async) every `interval` ms until it returns a truthy value, which is
 * returned. Throws after `timeout` ms, with `message` and the last value or error seen.
 */
export async function waitUntil(fn, { timeout = 5000, interval = 25, message = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  let lastErr;
  for (;;) {
    try {
      last = await fn();
      lastErr = undefined;
      if (last) return last;
    } catch (e) {
      lastErr = e;
    }
    if (Date.now() >= deadline) {
      const detail = lastErr ? `last error: ${lastErr.message}` : `last value: ${fmt(last)}`;
      throw new Error(`timed out after ${timeout} ms waiting for ${message} (${detail})`);
    }
    await sleep(interval);
  }
}

function fmt(v) {
  try {
    const s = JSON.stringify(v);
    return s && s.length > 300 ? s.slice(0, 300) + '...' : s;
  } catch {
    return String(v);
  }
}

/** Rejects with a clear message if `promise` does not settle within ms. */
export function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      t = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

// ---------------------------------------------------------------------------------------------
// Config files and the server.

/** A free TCP port on 127.0.0.1: bind :0, read the port, close. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** A fresh temporary directory with a short path (UNIX socket paths must fit in 108 bytes). */
export function makeTempDir() {
  let base = os.tmpdir();
  if (base.length > 60) base = '/tmp';
  return fs.mkdtempSync(path.join(base, 'rc-it-'));
}

const SECTION_ORDER = ['server', 'http', 'sse', 'channels', 'feed', 'websocket', 'log'];

/** Renders {section: {key: value}} as ini text; keys whose value is null/undefined are left out. */
export function renderIni(sections) {
  const names = [
    ...SECTION_ORDER.filter((s) => s in sections),
    ...Object.keys(sections).filter((s) => !SECTION_ORDER.includes(s)),
  ];
  let out = '; written by tests/integration/lib/harness.mjs\n';
  for (const name of names) {
    out += `[${name}]\n`;
    for (const [k, v] of Object.entries(sections[name] || {})) {
      if (v === null || v === undefined) continue;
      out += `${k} = ${v}\n`;
    }
    out += '\n';
  }
  return out;
}

/** Deep-merges override sections into base sections (one level: section -> key). */
export function mergeConfig(base, overrides = {}) {
  const out = {};
  for (const [s, keys] of Object.entries(base)) out[s] = { ...keys };
  for (const [s, keys] of Object.entries(overrides)) out[s] = { ...(out[s] || {}), ...keys };
  return out;
}

/**
 * The configuration every test server starts from. Heartbeats and the retry hint are off so
 * that streams carry exactly the events a test publishes; tests that want them turn them on.
 */
export function baseConfig({ port, dir }) {
  return {
    server: {
      listen: `127.0.0.1:${port}`,
      workers: 2,
      shutdown_grace: 1,
    },
    sse: { heartbeat_interval: 0, retry: 0 },
    feed: { socket: path.join(dir, 'feed.sock') },
    log: { level: 'info' },
  };
}

/**
 * Starts ringcast with baseConfig() merged with `overrides` ({section: {key: value}}, a null
 * value removes a key). Waits (at most 10 s) until GET /health answers 200 and the feed socket
 * accepts connections. Returns
 *   {port, socket, dir, configPath, config, proc, stderr(), stdout(), exited, stop(signal)}
 * where stop() sends SIGTERM (or `signal`), waits at most 5 s and asserts exit code 0.
 */
export async function startServer(overrides = {}) {
  requireBinary();
  const dir = makeTempDir();
  const port = await freePort();
  const config = mergeConfig(baseConfig({ port, dir }), overrides);
  const configPath = path.join(dir, 'ringcast.ini');
  fs.writeFileSync(configPath, renderIni(config));
  const socket = config.feed.socket;

  const proc = track(spawn(BIN, ['-c', configPath], { stdio: ['ignore', 'pipe', 'pipe'] }));
  let stderr = '';
  let stdout = '';
  proc.stderr.setEncoding('utf8');
  proc.stdout.setEncoding('utf8');
  proc.stderr.on('data', (d) => {
    stderr += d;
  });
  proc.stdout.on('data', (d) => {
    stdout += d;
  });
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  let exitInfo = null;
  exited.then((e) => {
    exitInfo = e;
  });

  const srv = {
    port,
    socket,
    dir,
    configPath,
    config,
    proc,
    exited,
    stderr: () => stderr,
    stdout: () => stdout,
    url: (p) => `http://127.0.0.1:${port}${p}`,
    stop: null,
  };

  let stopping = null;
  srv.stop = (signal = 'SIGTERM', ms = 5000) => {
    if (!stopping) stopping = doStop(signal, ms);
    return stopping;
  };
  async function doStop(signal, ms) {
    try {
      if (!exitInfo) {
        const t0 = Date.now();
        proc.kill(signal);
        const r = await waitExit(proc, ms);
        if (!r) {
          proc.kill('SIGKILL');
          await waitExit(proc, 2000);
          throw new Error(`ringcast did not exit within ${ms} ms of ${signal}\n--- stderr ---\n${tail(stderr)}`);
        }
        r.ms = Date.now() - t0;
        assert.equal(r.signal, null, `ringcast died of ${r.signal} after ${signal}\n--- stderr ---\n${tail(stderr)}`);
        assert.equal(r.code, 0, `ringcast exited ${r.code} after ${signal}\n--- stderr ---\n${tail(stderr)}`);
        return r;
      }
      throw new Error(`ringcast had already exited (${fmt(exitInfo)}) before stop()\n--- stderr ---\n${tail(stderr)}`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }

  const deadline = Date.now() + 10000;
  for (;;) {
    if (exitInfo) {
      fs.rmSync(dir, { recursive: true, force: true });
      throw new Error(`ringcast exited during start-up (${fmt(exitInfo)})\n--- stderr ---\n${tail(stderr)}`);
    }
    if ((await healthOk(port)) && (await canConnectUnix(socket))) break;
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      await waitExit(proc, 2000);
      fs.rmSync(dir, { recursive: true, force: true });
      throw new Error(`ringcast not ready within 10 s (/health 200 and feed socket)\n--- stderr ---\n${tail(stderr)}`);
    }
    await sleep(50);
  }
  return srv;
}

function tail(s, n = 4000) {
  return s.length > n ? '...' + s.slice(-n) : s;
}

async function healthOk(port) {
  try {
    const r = await rawRequest(port, 'GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n', { timeout: 1000 });
    return r.status === 200;
  } catch {
    return false;
  }
}

function canConnectUnix(p) {
  return new Promise((resolve) => {
    const s = net.connect(p);
    const t = setTimeout(() => {
      s.destroy();
      resolve(false);
    }, 1000);
    s.once('connect', () => {
      clearTimeout(t);
      s.destroy();
      resolve(true);
    });
    s.once('error', () => {
      clearTimeout(t);
      resolve(false);
    });
  });
}

/** Runs the binary with argv and no server expectations: {code, signal, stdout, stderr}. */
export function runBin(args, { timeout = 5000 } = {}) {
  requireBinary();
  return new Promise((resolve, reject) => {
    const p = track(spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8');
    p.stderr.setEncoding('utf8');
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const t = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`${BIN} ${args.join(' ')} did not exit within ${timeout} ms\nstderr: ${stderr}`));
    }, timeout);
    p.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
    p.on('close', (code, signal) => {
      clearTimeout(t);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP.

/** Splits a response head into {status, statusLine, headers (lower-case name -> [values])}. */
export function parseHead(headText) {
  const lines = headText.split('\r\n');
  const statusLine = lines[0];
  const m = /^HTTP\/(\d\.\d) (\d{3})(?: (.*))?$/.exec(statusLine);
  const headers = {};
  for (const l of lines.slice(1)) {
    if (!l) continue;
    const i = l.indexOf(':');
    const name = (i < 0 ? l : l.slice(0, i)).trim().toLowerCase();
    const value = i < 0 ? '' : l.slice(i + 1).trim();
    (headers[name] ||= []).push(value);
  }
  return { statusLine, version: m ? m[1] : null, status: m ? Number(m[2]) : null, headers };
}

/**
 * Sends `data` (string/Buffer, or an array of chunks written `delay` ms apart) on a fresh TCP
 * connection and reads until the server closes or `timeout` ms pass. Returns
 *   {buf, text, closed, closedAt (ms after connect), status, statusLine, headers, body, error}
 * `closed` is true only if the server ended the connection within the timeout.
 */
export function rawRequest(port, data, { timeout = 3000, delay = 0, noDelay = true } = {}) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    const s = net.connect({ host: '127.0.0.1', port });
    s.setNoDelay(noDelay);
    let done = false;
    let t0 = 0;
    let sockErr = null;
    const finish = (closed) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const closedAt = Date.now() - t0;
      s.destroy();
      const buf = Buffer.concat(chunks);
      const text = buf.toString('latin1');
      const headEnd = text.indexOf('\r\n\r\n');
      const head = headEnd >= 0 ? parseHead(text.slice(0, headEnd)) : parseHead(text.split('\r\n')[0] || '');
      resolve({
        buf,
        text,
        closed,
        closedAt,
        error: sockErr,
        headComplete: headEnd >= 0,
        body: headEnd >= 0 ? buf.subarray(headEnd + 4) : Buffer.alloc(0),
        ...head,
      });
    };
    const timer = setTimeout(() => finish(false), timeout);
    s.on('connect', async () => {
      t0 = Date.now();
      try {
        if (Array.isArray(data)) {
          for (const c of data) {
            if (done || s.destroyed) break;
            s.write(c);
            if (delay) await sleep(delay);
          }
        } else if (data !== null && data !== undefined && data.length) {
          s.write(data);
        }
      } catch (e) {
        sockErr = e;
      }
    });
    s.on('data', (d) => chunks.push(d));
    s.on('end', () => finish(true));
    s.on('close', () => finish(true));
    s.on('error', (e) => {
      // ECONNRESET after the server answered and closed is still "closed".
      sockErr = e;
      if (!t0) {
        clearTimeout(timer);
        done = true;
        reject(e);
      }
    });
  });
}

/** A minimal well-formed request head. */
export function getRequest(target, extraHeaders = []) {
  return `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n${extraHeaders.map((h) => h + '\r\n').join('')}\r\n`;
}

// ---------------------------------------------------------------------------------------------
// SSE over a raw socket, parsed strictly per the contract (LF line endings on the wire).

/**
 * Incremental parser of an SSE body. Collects
 *   events:   [{id, event, data, dataLines: [Buffer], raw: Buffer}]  (raw = the exact frame bytes,
 *             from its first field line to the blank line that ends it, inclusive)
 *   comments: [string]  (lines starting with ':')
 *   retries:  [string]  (values of retry: fields)
 *   other:    [string]  (any other line: unknown fields, CR-terminated lines, ...)
 */
export class SseParser {
  constructor() {
    this.pending = Buffer.alloc(0);
    this.events = [];
    this.comments = [];
    this.retries = [];
    this.other = [];
    this.bodyBytes = 0;
    this.body = []; // all body chunks, for exact-wire assertions
    this.cur = null;
    this.curRaw = [];
  }

  push(chunk) {
    this.body.push(chunk);
    this.bodyBytes += chunk.length;
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    let start = 0;
    for (;;) {
      const nl = this.pending.indexOf(0x0a, start);
      if (nl < 0) break;
      const line = this.pending.subarray(start, nl);
      this.line(line, this.pending.subarray(start, nl + 1));
      start = nl + 1;
    }
    this.pending = this.pending.subarray(start);
  }

  bodyBuffer() {
    return Buffer.concat(this.body);
  }

  line(line, withNl) {
    if (line.length === 0) {
      if (this.cur) {
        this.curRaw.push(withNl);
        const c = this.cur;
        if (c.id !== undefined || c.event !== undefined || c.dataLines.length) {
          this.events.push({
            id: c.id,
            event: c.event,
            dataLines: c.dataLines,
            data: c.dataLines.map((b) => b.toString('utf8')).join('\n'),
            raw: Buffer.concat(this.curRaw),
          });
        }
      }
      this.cur = null;
      this.curRaw = [];
      return;
    }
    if (line[0] === 0x3a /* ':' */) {
      this.comments.push(line.toString('utf8'));
      return;
    }
    const s = line.toString('latin1');
    const i = s.indexOf(':');
    const field = i < 0 ? s : s.slice(0, i);
    let valueBuf = i < 0 ? Buffer.alloc(0) : line.subarray(i + 1);
    if (valueBuf[0] === 0x20) valueBuf = valueBuf.subarray(1);
    if (field === 'retry') {
      this.retries.push(valueBuf.toString('latin1'));
      this.cur ||= { dataLines: [] };
      this.curRaw.push(withNl);
      return;
    }
    if (field !== 'id' && field !== 'event' && field !== 'data') {
      this.other.push(line.toString('latin1'));
      return;
    }
    this.cur ||= { dataLines: [] };
    this.curRaw.push(withNl);
    if (field === 'id') this.cur.id = valueBuf.toString('utf8');
    else if (field === 'event') this.cur.event = valueBuf.toString('utf8');
    else this.cur.dataLines.push(Buffer.from(valueBuf));
  }
}

/**
 * Opens GET <path> on a raw socket and parses the response. `path` defaults to /sse/<channel>;
 * `headers` are extra header lines; `pause` stops reading at once (a consumer that never reads);
 * `writeDelay` sends the request one byte per write, that many ms apart.
 * Returns a client with: head (once received: {status, headers, statusLine}), parser (SseParser),
 * events, waitHead(ms), waitEvents(n, ms), waitFor(pred, ms, what), closed (promise),
 * isClosed(), pause(), resume(), close().
 */
export function sseConnect(
  port,
  channel,
  { path: target, headers = [], pause = false, timeout = 5000, writeDelay = 0 } = {},
) {
  const s = net.connect({ host: '127.0.0.1', port });
  s.setNoDelay(true);
  const client = {
    socket: s,
    head: null,
    headText: null,
    parser: new SseParser(),
    closedFlag: false,
    error: null,
    get events() {
      return this.parser.events;
    },
    isClosed() {
      return this.closedFlag;
    },
    pause() {
      s.pause();
    },
    resume() {
      s.resume();
    },
    close() {
      s.destroy();
    },
  };
  let headBuf = Buffer.alloc(0);
  let notify = () => {};
  const changed = () => {
    const n = notify;
    notify = () => {};
    n();
  };
  const nextChange = () => new Promise((r) => (notify = r));
  client.closed = new Promise((resolve) => {
    s.on('close', () => {
      client.closedFlag = true;
      changed();
      resolve();
    });
  });
  s.on('error', (e) => {
    client.error = e;
  });
  s.on('data', (d) => {
    if (!client.head) {
      headBuf = Buffer.concat([headBuf, d]);
      const i = headBuf.indexOf('\r\n\r\n');
      if (i < 0) {
        changed();
        return;
      }
      client.headText = headBuf.subarray(0, i).toString('latin1');
      client.head = parseHead(client.headText);
      const rest = headBuf.subarray(i + 4);
      if (rest.length) client.parser.push(rest);
    } else {
      client.parser.push(d);
    }
    changed();
  });
  s.on('connect', async () => {
    const req = Buffer.from(
      `GET ${target ?? `/sse/${channel}`} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
        `Accept: text/event-stream\r\n${headers.map((h) => h + '\r\n').join('')}\r\n`,
      'latin1',
    );
    if (pause) s.pause();
    if (!writeDelay) {
      s.write(req);
      return;
    }
    // One byte per write, writeDelay ms apart (Nagle is off, so one byte per segment).
    for (let i = 0; i < req.length && !s.destroyed; i++) {
      s.write(req.subarray(i, i + 1));
      await sleep(writeDelay);
    }
  });

  client.waitFor = async (pred, ms = timeout, what = 'SSE condition') => {
    const deadline = Date.now() + ms;
    for (;;) {
      if (pred(client)) return client;
      const left = deadline - Date.now();
      if (left <= 0 || (client.closedFlag && !pred(client))) {
        if (pred(client)) return client;
        throw new Error(
          `${what}: ${client.closedFlag ? 'connection closed' : `timed out after ${ms} ms`}; ` +
            `head=${fmt(client.headText)} events=${client.events.length} ` +
            `body=${fmt(client.parser.bodyBuffer().toString('latin1').slice(-300))}`,
        );
      }
      let t;
      await Promise.race([nextChange(), new Promise((r) => (t = setTimeout(r, Math.min(left, 200))))]);
      clearTimeout(t);
    }
  };
  client.waitHead = (ms = timeout) => client.waitFor((c) => c.head !== null, ms, 'response head');
  client.waitEvents = (n, ms = timeout) => client.waitFor((c) => c.events.length >= n, ms, `${n} events`);
  return client;
}

/** Opens an SSE subscription and asserts the 200 response head arrived. */
export async function subscribe(port, channel, opts = {}) {
  const c = sseConnect(port, channel, opts);
  try {
    await c.waitHead(opts.timeout ?? 5000);
    assert.equal(c.head.status, 200, `GET /sse/${channel}: ${c.headText}`);
  } catch (e) {
    c.close();
    throw e;
  }
  return c;
}

// ---------------------------------------------------------------------------------------------
// The `eventsource` package.

/**
 * Wraps an EventSource on /sse/<channel>. Records every event of type 'message' and of each
 * type in `types` as {type, data, lastEventId}, in arrival order, plus errors and opens.
 */
export function esConnect(port, channel, { types = [], headers } = {}) {
  // eventsource v4 takes extra request headers through a fetch wrapper.
  const init = headers
    ? { fetch: (url, opts) => fetch(url, { ...opts, headers: { ...opts.headers, ...headers } }) }
    : undefined;
  const es = new EventSource(`http://127.0.0.1:${port}/sse/${channel}`, init);
  const rec = { es, received: [], errors: [], opens: 0, types };
  const onMsg = (type) => (ev) => rec.received.push({ type, data: ev.data, lastEventId: ev.lastEventId });
  es.addEventListener('message', onMsg('message'));
  for (const t of types) es.addEventListener(t, onMsg(t));
  es.addEventListener('error', (e) => rec.errors.push(e));
  rec.opened = new Promise((resolve) => es.addEventListener('open', () => {
    rec.opens++;
    resolve();
  }));
  rec.waitOpen = (ms = 5000) => withTimeout(rec.opened, ms, `EventSource open on /sse/${channel}`);
  rec.waitCount = (n, ms = 5000) =>
    waitUntil(() => rec.received.length >= n, {
      timeout: ms,
      interval: 10,
      message: `${n} events on EventSource /sse/${channel} (have ${rec.received.length})`,
    });
  rec.close = () => es.close();
  return rec;
}

// ---------------------------------------------------------------------------------------------
// curl.

/** Spawns `curl -sS -N -D - --max-time T url` (head and body on stdout; -i would hold the head
 * back until the first body byte); returns {proc, out(), err(), exited, kill()}. */
export function curlStream(url, { maxTime = 30, extra = [] } = {}) {
  const proc = track(spawn('curl', ['-sS', '-N', '-D', '-', '--max-time', String(maxTime), ...extra, url], {
    stdio: ['ignore', 'pipe', 'pipe'],
  }));
  let out = '';
  let err = '';
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stdout.on('data', (d) => (out += d));
  proc.stderr.on('data', (d) => (err += d));
  const exited = new Promise((resolve) => proc.once('close', (code, signal) => resolve({ code, signal })));
  return {
    proc,
    exited,
    out: () => out,
    err: () => err,
    kill: () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The feed socket through redis-cli.

/** Runs `redis-cli -s sock ARGS...`; resolves {code, stdout, stderr}. */
export function redisCli(sock, args, { timeout = 10000, input } = {}) {
  return new Promise((resolve, reject) => {
    const child = execFile(
      'redis-cli',
      ['-s', sock, ...args],
      { timeout, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (err && (err.killed || typeof err.code !== 'number')) {
          reject(new Error(`redis-cli ${args.slice(0, 3).join(' ')}...: ${err.message}\n${stderr}`));
          return;
        }
        resolve({ code: err ? err.code : 0, stdout, stderr });
      },
    );
    track(child);
    if (input !== undefined) child.stdin.end(input);
  });
}

/** Parses redis-cli's integer output ("N\n" when stdout is not a tty) or throws. */
function cliInt(r, what) {
  const s = r.stdout.trim();
  if (!/^-?\d+$/.test(s)) {
    throw new Error(`${what}: expected an integer reply, got ${fmt(r.stdout)} (stderr ${fmt(r.stderr)}, exit ${r.code})`);
  }
  return Number(s);
}

/** PUBLISH via redis-cli; returns the integer reply (subscribers the event was handed to). */
export async function publish(sock, channel, payload) {
  return cliInt(await redisCli(sock, ['PUBLISH', channel, payload]), `PUBLISH ${channel}`);
}

/** XPUBLISH via redis-cli with optional {event, id}; returns the integer reply. */
export async function xpublish(sock, channel, payload, { event, id, binary } = {}) {
  const args = ['XPUBLISH', channel, payload];
  if (event !== undefined) args.push('EVENT', event);
  if (id !== undefined) args.push('ID', id);
  if (binary) args.push('BINARY');
  return cliInt(await redisCli(sock, args), `XPUBLISH ${channel}`);
}

/** `redis-cli -s sock INFO` parsed into {key: number|string}. */
export async function info(sock) {
  const r = await redisCli(sock, ['INFO']);
  if (r.code !== 0) throw new Error(`INFO failed: ${r.stdout} ${r.stderr}`);
  return parseInfo(r.stdout);
}

export function parseInfo(text) {
  const out = {};
  for (const line of text.split(/\r?\n/)) {
    if (!line || line.startsWith('#')) continue;
    const i = line.indexOf(':');
    if (i < 0) continue;
    const k = line.slice(0, i);
    const v = line.slice(i + 1);
    out[k] = /^-?\d+(\.\d+)?$/.test(v) ? Number(v) : v;
  }
  return out;
}

/** Polls INFO until pred(info) holds (at most `timeout` ms); returns that INFO. */
export function waitInfo(sock, pred, { timeout = 10000, message = 'INFO condition' } = {}) {
  return waitUntil(async () => {
    const i = await info(sock);
    return pred(i) ? i : false;
  }, { timeout, interval: 50, message });
}

/**
 * Quotes one argument for redis-cli's line mode (sdssplitargs): double quotes, with \\, \",
 * \n, \r, \t and \xHH escapes, so any byte string survives.
 */
export function quoteArg(arg) {
  const b = Buffer.isBuffer(arg) ? arg : Buffer.from(String(arg), 'utf8');
  let s = '"';
  for (const c of b) {
    if (c === 0x22) s += '\\"';
    else if (c === 0x5c) s += '\\\\';
    else if (c === 0x0a) s += '\\n';
    else if (c === 0x0d) s += '\\r';
    else if (c === 0x09) s += '\\t';
    else if (c >= 0x20 && c < 0x7f) s += String.fromCharCode(c);
    else s += '\\x' + c.toString(16).padStart(2, '0');
  }
  return s + '"';
}

/**
 * Sends many commands through ONE redis-cli process (commands on stdin, one per line, each
 * argument quoted with quoteArg). Every command must have an integer reply; returns the
 * integers in order.
 */
export async function bulkPublishCli(sock, commands, { timeout = 120000 } = {}) {
  const input = commands.map((args) => args.map(quoteArg).join(' ')).join('\n') + '\n';
  const r = await redisCli(sock, [], { input, timeout });
  const lines = r.stdout.split('\n').filter((l) => l.length);
  const bad = lines.filter((l) => !/^-?\d+$/.test(l));
  if (r.code !== 0 || bad.length || lines.length !== commands.length) {
    throw new Error(
      `bulk redis-cli: ${commands.length} commands, ${lines.length} reply lines, exit ${r.code}; ` +
        `non-integer replies: ${fmt(bad.slice(0, 5))}; stderr: ${fmt(r.stderr)}`,
    );
  }
  return lines.map(Number);
}

// ---------------------------------------------------------------------------------------------
// The feed socket over a raw UNIX socket, speaking RESP ourselves (for volume and garbage).

/** Encodes one command as a RESP array of bulk strings. */
export function resp(...args) {
  const parts = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = Buffer.isBuffer(a) ? a : Buffer.from(String(a), 'utf8');
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

/**
 * Parses one RESP2 reply from buf at offset; returns {value, end} or null if incomplete.
 * value: {type: '+'|'-'|':'|'$'|'*', value: string|number|null|array}
 */
export function parseReply(buf, off = 0) {
  if (off >= buf.length) return null;
  const type = String.fromCharCode(buf[off]);
  const crlf = buf.indexOf('\r\n', off);
  if (crlf < 0) return null;
  const line = buf.subarray(off + 1, crlf).toString('latin1');
  switch (type) {
    case '+':
    case '-':
      return { value: { type, value: buf.subarray(off + 1, crlf).toString('utf8') }, end: crlf + 2 };
    case ':':
      return { value: { type, value: Number(line) }, end: crlf + 2 };
    case '$': {
      const n = Number(line);
      if (n < 0) return { value: { type, value: null }, end: crlf + 2 };
      if (buf.length < crlf + 2 + n + 2) return null;
      return { value: { type, value: buf.subarray(crlf + 2, crlf + 2 + n).toString('utf8') }, end: crlf + 2 + n + 2 };
    }
    case '*': {
      const n = Number(line);
      let end = crlf + 2;
      const items = [];
      for (let i = 0; i < n; i++) {
        const r = parseReply(buf, end);
        if (!r) return null;
        items.push(r.value);
        end = r.end;
      }
      return { value: { type, value: n < 0 ? null : items }, end };
    }
    default:
      throw new Error(`not a RESP reply: ${fmt(buf.subarray(off, off + 40).toString('latin1'))}`);
  }
}

/**
 * A raw feed connection. send(bytes), replies(n, ms) -> next n parsed replies,
 * waitClosed(ms) -> true if the server closed it in time, close().
 */
export async function feedConnect(sock, { timeout = 3000 } = {}) {
  const s = net.connect(sock);
  await withTimeout(new Promise((resolve, reject) => {
    s.once('connect', resolve);
    s.once('error', reject);
  }), timeout, `connect ${sock}`);
  let buf = Buffer.alloc(0);
  const queue = [];
  let closed = false;
  let notify = () => {};
  const changed = () => {
    const n = notify;
    notify = () => {};
    n();
  };
  s.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      const r = parseReply(buf);
      if (!r) break;
      queue.push(r.value);
      buf = buf.subarray(r.end);
    }
    changed();
  });
  s.on('error', () => {});
  s.on('close', () => {
    closed = true;
    changed();
  });
  const waitFor = async (pred, ms, what) => {
    const deadline = Date.now() + ms;
    for (;;) {
      if (pred()) return true;
      const left = deadline - Date.now();
      if (left <= 0) return false;
      if (closed && !pred()) return false;
      let t;
      await Promise.race([new Promise((r) => (notify = r)), new Promise((r) => (t = setTimeout(r, Math.min(left, 200))))]);
      clearTimeout(t);
    }
  };
  const conn = {
    socket: s,
    send(data) {
      s.write(data);
    },
    async replies(n, ms = 5000) {
      const ok = await waitFor(() => queue.length >= n, ms);
      if (!ok) {
        throw new Error(
          `expected ${n} replies, got ${queue.length} (${closed ? 'connection closed' : `timeout ${ms} ms`}): ` +
            `${fmt(queue)} pending=${fmt(buf.toString('latin1').slice(0, 200))}`,
        );
      }
      return queue.splice(0, n);
    },
    async reply(ms = 5000) {
      return (await conn.replies(1, ms))[0];
    },
    /** Sends one command (array of args) and returns its reply. */
    async command(...args) {
      s.write(resp(...args));
      return conn.reply();
    },
    waitClosed(ms = 3000) {
      return waitFor(() => closed, ms);
    },
    isClosed: () => closed,
    pendingReplies: () => queue.length,
    close() {
      s.destroy();
    },
  };
  return conn;
}

// ---------------------------------------------------------------------------------------------
// Event ids.

/**
 * Compares two opaque ids "naturally": runs of digits compare as numbers (so "9" < "10" and
 * "1700000000-9" < "1700000000-10"), everything else byte by byte. This orders decimal counters,
 * "<time>-<seq>" ids and fixed-width hex/base32 ids the way they are meant; ringcast's ids must be
 * strictly increasing under it.
 */
export function compareIds(a, b) {
  const re = /(\d+)|(\D+)/g;
  const pa = a.match(re) || [];
  const pb = b.match(re) || [];
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const x = pa[i];
    const y = pb[i];
    const xd = /^\d/.test(x);
    const yd = /^\d/.test(y);
    if (xd && yd) {
      const bx = BigInt(x);
      const by = BigInt(y);
      if (bx !== by) return bx < by ? -1 : 1;
      if (x.length !== y.length) return x.length < y.length ? -1 : 1; // "01" vs "1"
    } else if (x !== y) {
      return x < y ? -1 : 1;
    }
  }
  return pa.length === pb.length ? 0 : pa.length < pb.length ? -1 : 1;
}

/** Asserts ids are all present and strictly increasing (compareIds). */
export function assertIncreasingIds(ids, what = 'ids') {
  for (let i = 0; i < ids.length; i++) {
    assert.ok(typeof ids[i] === 'string' && ids[i].length > 0, `${what}[${i}] is missing: ${fmt(ids[i])}`);
    if (i > 0) {
      assert.ok(compareIds(ids[i - 1], ids[i]) < 0, `${what} not strictly increasing at ${i}: ${ids[i - 1]} then ${ids[i]}`);
    }
  }
}

/** The lines an SSE encoder must emit for a payload: split on CRLF, CR and LF. */
export function payloadLines(payload) {
  return payload.split(/\r\n|\r|\n/);
}

/** The exact frame for a payload with a known id (and optional event type). */
export function expectedFrame(id, payload, event) {
  return `id: ${id}\n${event ? `event: ${event}\n` : ''}${payloadLines(payload).map((l) => `data: ${l}\n`).join('')}\n`;
}

// ---------------------------------------------------------------------------------------------
// WebSocket over a raw socket, for exact bytes and malformed frames.

/** A valid Sec-WebSocket-Key (16 random bytes, base64). */
export function wsKey() {
  return crypto.randomBytes(16).toString('base64');
}

/** The Sec-WebSocket-Accept value RFC 6455 prescribes for a key. */
export function wsAccept(key) {
  return crypto.createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
}

/** The head of a WebSocket upgrade request for `target`, with extra header lines. */
export function wsRequest(target, { key = wsKey(), headers = [], omit = [] } = {}) {
  const base = {
    Host: '127.0.0.1',
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': key,
    'Sec-WebSocket-Version': '13',
  };
  const lines = Object.entries(base).filter(([k]) => !omit.includes(k)).map(([k, v]) => `${k}: ${v}`);
  return `GET ${target} HTTP/1.1\r\n${[...lines, ...headers].map((h) => h + '\r\n').join('')}\r\n`;
}

/**
 * Encodes one client frame. Options: fin (true), rsv (0-7, the RSV1-3 bits), mask (true),
 * len (override the length field, for lies), payload (Buffer or string).
 */
export function wsFrame(opcode, payload = Buffer.alloc(0), { fin = true, rsv = 0, mask = true, len } = {}) {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload, 'utf8');
  const n = len ?? data.length;
  const head = [((fin ? 0x80 : 0) | (rsv << 4) | opcode) & 0xff];
  let ext = Buffer.alloc(0);
  if (n < 126) {
    head.push((mask ? 0x80 : 0) | n);
  } else if (n < 65536) {
    head.push((mask ? 0x80 : 0) | 126);
    ext = Buffer.alloc(2);
    ext.writeUInt16BE(n);
  } else {
    head.push((mask ? 0x80 : 0) | 127);
    ext = Buffer.alloc(8);
    ext.writeBigUInt64BE(BigInt(n));
  }
  if (!mask) return Buffer.concat([Buffer.from(head), ext, data]);
  const key = crypto.randomBytes(4);
  const masked = Buffer.from(data);
  for (let i = 0; i < masked.length; i++) masked[i] ^= key[i & 3];
  return Buffer.concat([Buffer.from(head), ext, key, masked]);
}

/**
 * Opens a raw WebSocket on `target` (default /ws/<channel>), with extra request header lines
 * `headers`, or sends `request` instead (whose key the accept check then cannot know). Returns
 * a client with
 *   head (parsed response head), frames: [{fin, rsv, opcode, payload}], closed,
 *   send(bytes), frame(opcode, payload, opts), waitFrames(n, ms), waitClosed(ms), close().
 * Server frames must be unmasked; a masked one is recorded with masked: true.
 * With `unheard: false`, the engine's "!error nobody is listening on <channel>" replies (sent
 * for each client message while no backend listens upstream) are counted in `unheard` and left
 * out of `frames`, for tests about framing rather than talking back.
 */
export function wsRaw(port, channel, { target, request, headers = [], timeout = 5000, unheard = true } = {}) {
  const key = wsKey();
  const s = net.connect({ host: '127.0.0.1', port });
  s.setNoDelay(true);
  const client = { socket: s, key, head: null, headText: '', frames: [], unheard: 0, closed: false, error: null };
  let buf = Buffer.alloc(0);
  let notify = () => {};
  const changed = () => {
    const n = notify;
    notify = () => {};
    n();
  };
  s.on('connect', () => s.write(request ?? wsRequest(target ?? `/ws/${channel}`, { key, headers })));
  s.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    if (!client.head) {
      const i = buf.indexOf('\r\n\r\n');
      if (i < 0) return;
      client.headText = buf.subarray(0, i).toString('latin1');
      client.head = parseHead(client.headText);
      buf = buf.subarray(i + 4);
    }
    for (;;) {
      if (buf.length < 2) break;
      let n = buf[1] & 0x7f;
      let off = 2;
      if (n === 126) {
        if (buf.length < 4) break;
        n = buf.readUInt16BE(2);
        off = 4;
      } else if (n === 127) {
        if (buf.length < 10) break;
        n = Number(buf.readBigUInt64BE(2));
        off = 10;
      }
      const masked = (buf[1] & 0x80) !== 0;
      if (masked) off += 4;
      if (buf.length < off + n) break;
      const frame = {
        fin: (buf[0] & 0x80) !== 0,
        rsv: (buf[0] >> 4) & 7,
        opcode: buf[0] & 0x0f,
        masked,
        payload: Buffer.from(buf.subarray(off, off + n)),
      };
      buf = buf.subarray(off + n);
      if (!unheard && frame.opcode === 1 && frame.payload.toString().startsWith('!error nobody is listening')) {
        client.unheard++;
        continue;
      }
      client.frames.push(frame);
    }
    changed();
  });
  s.on('error', (e) => {
    client.error = e;
  });
  s.on('close', () => {
    client.closed = true;
    changed();
  });
  client.waitFor = async (pred, ms = timeout, what = 'WebSocket condition') => {
    const deadline = Date.now() + ms;
    for (;;) {
      if (pred(client)) return client;
      const left = deadline - Date.now();
      if (left <= 0 || client.closed) {
        if (pred(client)) return client;
        throw new Error(`${what}: ${client.closed ? 'connection closed' : `timed out after ${ms} ms`}; ` +
          `head=${fmt(client.headText)} frames=${fmt(client.frames.map((f) => [f.opcode, f.payload.length]))}`);
      }
      let t;
      await Promise.race([new Promise((r) => (notify = r)), new Promise((r) => (t = setTimeout(r, Math.min(left, 200))))]);
      clearTimeout(t);
    }
  };
  client.waitHead = (ms = timeout) => client.waitFor((c) => c.head !== null, ms, 'response head');
  client.waitFrames = (n, ms = timeout) => client.waitFor((c) => c.frames.length >= n, ms, `${n} frames`);
  client.waitClosed = async (ms = timeout) => {
    await client.waitFor((c) => c.closed, ms, 'close').catch(() => {});
    return client.closed;
  };
  client.send = (bytes) => s.write(bytes);
  client.frame = (opcode, payload, opts) => s.write(wsFrame(opcode, payload, opts));
  client.close = () => s.destroy();
  return client;
}

/** Opens a raw WebSocket and asserts the 101 with the right accept key. */
export async function wsOpen(port, channel, opts = {}) {
  const c = wsRaw(port, channel, opts);
  try {
    await c.waitHead();
    assert.equal(c.head.status, 101, c.headText);
    assert.equal(c.head.headers['sec-websocket-accept']?.[0], wsAccept(c.key));
  } catch (e) {
    c.close();
    throw e;
  }
  return c;
}

/** The status code of a Close frame's payload, or null for an empty one. */
export function closeCode(frame) {
  return frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : null;
}
