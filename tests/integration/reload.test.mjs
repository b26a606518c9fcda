// SIGHUP reloads the configuration file: reloadable keys take effect on streams that are already
// open ([sse] heartbeat_interval, [websocket] ping_interval, [log] level), keys that need a
// restart keep their running value with a warning, and a file that does not load or validate
// changes nothing. Through all of it the open streams (a raw SSE socket, `eventsource`,
// `curl -N` and a `ws` WebSocket) stay open and receive every event, and INFO counts
// config_reloads and config_reload_errors.
//
// Heartbeats and pings start at a long interval (60 s): a reload that shortens an interval
// brings the next beat forward, so 60 -> 0.2 shows the new value at once instead of after the
// beat already scheduled at the old interval.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer,
  subscribe,
  esConnect,
  curlStream,
  publish,
  info,
  sleep,
  waitUntil,
} from './lib/harness.mjs';
import { rewriteConfig, writeConfigText, lineOf, sighup, wsClient } from './lib/reload.mjs';

describe('SIGHUP reload', () => {
  let srv;
  let raw;
  let es;
  let curl;
  let ws;
  let sent = 0;
  const payloads = [];

  before(async () => {
    srv = await startServer({
      sse: { heartbeat_interval: 60 },
      websocket: { ping_interval: 60, pong_timeout: 30 },
      log: { level: 'info' },
    });
    raw = await subscribe(srv.port, 'live');
    es = esConnect(srv.port, 'live');
    await es.waitOpen();
    curl = curlStream(srv.url('/sse/live'));
    ws = await wsClient(srv.port, '/ws/live');
    // curl has no open event: its response head on stdout says it is subscribed.
    await waitUntil(() => curl.out().includes('\r\n\r\n'), { message: 'curl response head' });
  });

  after(async () => {
    es?.close();
    raw?.close();
    curl?.kill();
    ws?.ws.terminate();
    await srv?.stop();
  });

  /** Publishes one event and checks that every one of the four clients gets it. */
  async function publishToAll() {
    const payload = `event-${++sent}`;
    payloads.push(payload);
    assert.equal(await publish(srv.socket, 'live', payload), 4, 'PUBLISH reaches all four clients');
    await raw.waitEvents(sent);
    await es.waitCount(sent);
    await waitUntil(() => ws.got.length === sent, { message: `${sent} ws messages` });
    await waitUntil(() => curl.out().includes(`data: ${payload}\n`), { message: `curl gets ${payload}` });
    assert.deepEqual(raw.events.map((e) => e.data), payloads);
    assert.deepEqual(es.received.map((e) => e.data), payloads);
    assert.deepEqual(ws.got, payloads);
  }

  function assertAllOpen() {
    assert.ok(!raw.isClosed(), 'the raw SSE stream is open');
    assert.equal(es.es.readyState, 1, 'the EventSource is open');
    assert.equal(es.opens, 1, 'the EventSource never reconnected');
    assert.equal(curl.proc.exitCode, null, 'curl is still streaming');
    assert.equal(ws.closed, null, 'the WebSocket is open');
  }

  test('before any reload: no heartbeats, no pings, counters at 0', async () => {
    await publishToAll();
    await sleep(600);
    assert.equal(raw.parser.comments.length, 0);
    assert.equal(ws.pings, 0);
    const i = await info(srv.socket);
    assert.equal(i.config_reloads, 0);
    assert.equal(i.config_reload_errors, 0);
    assert.match(srv.stderr(), /info +\[main\] ringcast .* listening on/);
  });

  test('a valid file takes effect on open streams; restart keys keep their value', async () => {
    rewriteConfig(srv, {
      server: { workers: 3 },
      sse: { heartbeat_interval: 0.2 },
      websocket: { ping_interval: 0.5, pong_timeout: 0.4 },
      log: { level: 'warn' },
    });
    const i = await sighup(srv);
    assert.equal(i.config_reloads, 1);
    assert.equal(i.config_reload_errors, 0);
    assert.equal(i.workers, 2, 'workers needs a restart');

    // Workers pick the new configuration up within a second; then heartbeats every 0.2 s.
    await raw.waitFor((c) => c.parser.comments.length >= 3, 3000, 'three heartbeats');
    await waitUntil(() => ws.pings >= 2, { timeout: 3000, message: 'two pings' });
    assert.ok((await info(srv.socket)).heartbeats >= 3);

    const log = srv.stderr();
    assert.match(log, /warn +\[main\] SIGHUP: \[server\] workers changed in the file but needs a restart/);
    // One warning, for the one restart key that changed.
    assert.equal(log.match(/needs a restart/g).length, 1);
    // level = warn holds back the info line that would report the reload.
    assert.doesNotMatch(log, /SIGHUP: reloaded/);

    await publishToAll();
    assertAllOpen();
  });

  test('a file with a bad value changes nothing and names its line', async () => {
    const heartbeatsBefore = raw.parser.comments.length;
    const text = writeConfigText(
      srv,
      '; broken on purpose\n[sse]\nretry = 1\nheartbeat_interval = fast\n[log]\nlevel = debug\n',
    );
    const i = await sighup(srv, { fails: true });
    assert.equal(i.config_reloads, 1);
    assert.equal(i.config_reload_errors, 1);
    const line = lineOf(text, 'heartbeat_interval = fast');
    assert.ok(
      srv.stderr().includes(`error [main] SIGHUP: ${srv.configPath}:${line}: heartbeat_interval: expected`),
      srv.stderr(),
    );

    // The old values hold: heartbeats every 0.2 s, pings, and level = warn (no info lines).
    await sleep(1200);
    assert.ok(raw.parser.comments.length >= heartbeatsBefore + 3, 'heartbeats go on at 0.2 s');
    const pings = ws.pings;
    await waitUntil(() => ws.pings > pings, { timeout: 2000, message: 'pings go on' });
    assert.doesNotMatch(srv.stderr(), /info +\[main\] SIGHUP/);

    await publishToAll();
    assertAllOpen();
  });

  test('a file that is only invalid with the running restart keys changes nothing', async () => {
    // Valid on its own, but max_header_bytes needs a restart and stays 8192, under the new
    // max_request_line.
    rewriteConfig(srv, {
      http: { max_header_bytes: '16k', max_request_line: '16k' },
      sse: { heartbeat_interval: 5 },
    });
    const i = await sighup(srv, { fails: true });
    assert.equal(i.config_reloads, 1);
    assert.equal(i.config_reload_errors, 2);
    assert.match(srv.stderr(), /max_request_line \(16384\) must not exceed max_header_bytes \(8192\) with the/);
    assert.match(srv.stderr(), /with the running values of the keys that need a restart/);
    const heartbeats = raw.parser.comments.length;
    await raw.waitFor((c) => c.parser.comments.length >= heartbeats + 3, 3000, 'heartbeats still at 0.2 s');

    await publishToAll();
    assertAllOpen();
  });

  test('a second valid reload turns heartbeats and pings off and info logging back on', async () => {
    rewriteConfig(srv, {
      server: { workers: 2 },
      http: { max_header_bytes: null, max_request_line: null },
      sse: { heartbeat_interval: 0 },
      websocket: { ping_interval: 0, pong_timeout: null },
      log: { level: 'info' },
    });
    const i = await sighup(srv);
    assert.equal(i.config_reloads, 2);
    assert.equal(i.config_reload_errors, 2);
    assert.match(srv.stderr(), /info +\[main\] SIGHUP: reloaded /);

    // Within a second every worker has the new configuration; after that nothing more comes.
    await sleep(1200);
    const heartbeats = raw.parser.comments.length;
    const pings = ws.pings;
    await sleep(1000);
    assert.equal(raw.parser.comments.length, heartbeats, 'no heartbeats with heartbeat_interval = 0');
    assert.equal(ws.pings, pings, 'no pings with ping_interval = 0');

    await publishToAll();
    assertAllOpen();
    const last = await info(srv.socket);
    assert.equal(last.slow_disconnects, 0);
    assert.equal(last.ws_pong_timeouts, 0);
  });
});
