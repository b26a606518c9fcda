// Helpers for configuration reload tests: rewrite the file a running server was started with,
// send SIGHUP, and wait until INFO shows that the server has dealt with it. Built on
// harness.mjs, which writes the file with renderIni(mergeConfig(baseConfig, overrides)).

import fs from 'node:fs';
import WebSocket from 'ws';
import { renderIni, mergeConfig, info, waitInfo, withTimeout } from './harness.mjs';

/**
 * Rewrites the server's config file as the configuration it was started with, merged with
 * `overrides` ({section: {key: value}}, a null value removes a key), and makes that the new
 * srv.config. Returns the text written.
 */
export function rewriteConfig(srv, overrides = {}) {
  const config = mergeConfig(srv.config, overrides);
  const text = renderIni(config);
  fs.writeFileSync(srv.configPath, text);
  srv.config = config;
  return text;
}

/** Writes `text` as the server's config file verbatim, for files that must not load. */
export function writeConfigText(srv, text) {
  fs.writeFileSync(srv.configPath, text);
  return text;
}

/** The 1-based line of `text` that equals `line`, for the file:line an error must name. */
export function lineOf(text, line) {
  const i = text.split('\n').indexOf(line);
  if (i < 0) throw new Error(`line ${JSON.stringify(line)} is not in the file`);
  return i + 1;
}

/**
 * Sends SIGHUP and waits (at most `timeout` ms) until INFO shows one more config_reloads (or
 * one more config_reload_errors when `fails` is true) than before, and the other counter
 * unchanged. Returns that INFO.
 */
export async function sighup(srv, { fails = false, timeout = 5000 } = {}) {
  const before = await info(srv.socket);
  srv.proc.kill('SIGHUP');
  const ok = before.config_reloads + (fails ? 0 : 1);
  const bad = before.config_reload_errors + (fails ? 1 : 0);
  return waitInfo(srv.socket, (i) => i.config_reloads === ok && i.config_reload_errors === bad, {
    timeout,
    message: `config_reloads:${ok} and config_reload_errors:${bad} after SIGHUP`,
  });
}

/**
 * Opens a `ws` client on `path` and records its messages (as strings), the pings it receives
 * (it answers them itself) and its close code.
 */
export async function wsClient(port, path) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, { perMessageDeflate: false });
  const rec = { ws, got: [], pings: 0, closed: null };
  ws.on('message', (data) => rec.got.push(Buffer.from(data).toString()));
  ws.on('ping', () => rec.pings++);
  ws.on('close', (code) => (rec.closed = code));
  await withTimeout(
    new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    }),
    5000,
    `ws open on ${path}`,
  );
  return rec;
}
