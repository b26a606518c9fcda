// Helpers for the connection-limit tests that harness.mjs does not have: a server started
// under a lower RLIMIT_NOFILE (through util-linux's prlimit), and a burst of raw requests.

import { spawn } from 'node:child_process';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  BIN,
  baseConfig,
  freePort,
  makeTempDir,
  mergeConfig,
  rawRequest,
  renderIni,
  sleep,
  track,
  waitExit,
  info,
} from './harness.mjs';

/**
 * Like harness.startServer(overrides), but runs ringcast under `prlimit --nofile=N:N`, so
 * that both the soft and the hard open-file limit are N (ringcast raises the soft one to the
 * hard one, so lowering only the soft one would change nothing). Waits (at most 10 s) until
 * INFO answers on the feed socket and GET /health answers 200. Returns
 *   {port, socket, dir, proc, stderr(), stop(signal, ms)}; stop() asserts exit 0.
 */
export async function startServerNofile(nofile, overrides = {}) {
  if (!fs.existsSync(BIN)) throw new Error(`ringcast binary not found at ${BIN}`);
  const dir = makeTempDir();
  const port = await freePort();
  const config = mergeConfig(baseConfig({ port, dir }), overrides);
  const configPath = path.join(dir, 'ringcast.ini');
  fs.writeFileSync(configPath, renderIni(config));
  const proc = spawn('prlimit', [`--nofile=${nofile}:${nofile}`, '--', BIN, '-c', configPath], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  track(proc);
  let stderr = '';
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => (stderr += d));
  proc.stdout.resume();
  const srv = {
    port,
    socket: config.feed.socket,
    dir,
    proc,
    stderr: () => stderr,
    async stop(signal = 'SIGTERM', ms = 5000) {
      try {
        if (proc.exitCode !== null || proc.signalCode !== null) {
          throw new Error(`ringcast had already exited (${proc.exitCode}, ${proc.signalCode})\n${stderr}`);
        }
        proc.kill(signal);
        const r = await waitExit(proc, ms);
        if (!r) {
          proc.kill('SIGKILL');
          await waitExit(proc, 2000);
          throw new Error(`ringcast did not exit within ${ms} ms of ${signal}\n${stderr}`);
        }
        assert.equal(r.signal, null, `ringcast died of ${r.signal}\n${stderr}`);
        assert.equal(r.code, 0, `ringcast exited ${r.code}\n${stderr}`);
        return r;
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
  };
  const deadline = Date.now() + 10000;
  for (;;) {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      fs.rmSync(dir, { recursive: true, force: true });
      throw new Error(`ringcast exited during start-up (${proc.exitCode}, ${proc.signalCode})\n${stderr}`);
    }
    let ok = false;
    try {
      await info(srv.socket);
      const r = await rawRequest(port, 'GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n', { timeout: 1000 });
      ok = r.status === 200;
    } catch {
      ok = false;
    }
    if (ok) break;
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      await waitExit(proc, 2000);
      fs.rmSync(dir, { recursive: true, force: true });
      throw new Error(`ringcast not ready within 10 s\n${stderr}`);
    }
    await sleep(50);
  }
  return srv;
}

/**
 * Opens `n` connections at once, each sending `request`, and waits (at most `timeout` ms each)
 * for every one to end. Returns the rawRequest() results, in connection order.
 */
export function burst(port, n, request, { timeout = 5000 } = {}) {
  const all = [];
  for (let i = 0; i < n; i++) all.push(rawRequest(port, request, { timeout }).catch((e) => ({ error: e, closed: true, text: '' })));
  return Promise.all(all);
}

/**
 * Checks one refused connection: either the canned 503 with Retry-After: 1 and a closed
 * connection, or (only when `allowBare`) a connection closed without a byte, as the kernel
 * does when a ring's file table is full.
 */
export function assertRefused(r, what, { allowBare = false } = {}) {
  assert.ok(r.closed, `${what}: the refused connection is closed`);
  if (allowBare && r.text.length === 0) return 'closed';
  assert.match(r.statusLine ?? '', /^HTTP\/1\.1 503( .*)?$/, `${what}: ${JSON.stringify(r.text.slice(0, 120))}`);
  assert.deepEqual(r.headers['retry-after'], ['1'], `${what}: 503 with Retry-After: 1`);
  return '503';
}
