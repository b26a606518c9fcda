// A Node.js SSE + WebSocket push server written the way a team would write one by hand: the
// built-in `http` module for Server-Sent Events, the `ws` package for WebSocket, and a
// Map<channel, Set<client>> for subscriptions. It is a peer for bench/compare, not part of
// ringcast: it is deliberately plain (no cluster, no worker threads, no custom framing) because
// the question the benchmark asks is what the usual hand-written server costs next to ringcast.
//
// One process, one thread: Node runs JavaScript on a single event loop, so this server uses one
// core however many the machine has. That is the point of the comparison and is stated in
// bench/compare.md; ringcast and nchan use every core.
//
//   node server.mjs [PORT]          (or PORT=... node server.mjs; default 8090, 127.0.0.1 only)
//
//   GET  /sse/<channel>      200 text/event-stream; each event is "id: <n>\ndata: <line>\n...\n\n"
//   GET  /ws/<channel>       WebSocket upgrade; each event is one text frame {"id":n,"data":"..."}
//   POST /publish/<channel>  body = payload; answers 200 with the number of subscribers reached
//   GET  /health             200 ok
//
// Every event is serialized once (one SSE string, one JSON string) and the same string is
// written to each subscriber; res.write's return value is ignored, as hand-written servers
// usually do, so a client that stops reading makes Node buffer for it without bound.

import http from 'node:http';
import { WebSocketServer } from 'ws';

const port = Number(process.argv[2] || process.env.PORT || 8090);
const HOST = '127.0.0.1';
const HEARTBEAT_MS = 15000; // same cadence as ringcast's default heartbeat_interval
const MAX_BODY = 1 << 20; // same as ringcast's default [feed] max_payload
const CHANNEL_RE = /^[A-Za-z0-9_.:@-]{1,128}$/;

/** channel name -> Set of subscribers; each is {sse: res} or {ws: socket}. */
const channels = new Map();
let seq = 0;

function subscribe(channel, sub) {
  let set = channels.get(channel);
  if (!set) {
    set = new Set();
    channels.set(channel, set);
  }
  set.add(sub);
}

function unsubscribe(channel, sub) {
  const set = channels.get(channel);
  if (!set) return;
  set.delete(sub);
  if (set.size === 0) channels.delete(channel);
}

/** Builds one SSE frame: one data: line per payload line (LF, CRLF and CR all split). */
function sseFrame(id, payload) {
  let frame = `id: ${id}\n`;
  for (const line of payload.split(/\r\n|\r|\n/)) frame += `data: ${line}\n`;
  return frame + '\n';
}

/** Sends one event to every subscriber of channel; returns how many it was written to. */
function publish(channel, payload) {
  const set = channels.get(channel);
  seq += 1;
  if (!set) return 0;
  const sse = sseFrame(seq, payload);
  let json = null; // built only when the channel has a WebSocket subscriber
  for (const sub of set) {
    if (sub.sse) {
      sub.sse.write(sse);
    } else {
      if (json === null) json = JSON.stringify({ id: seq, data: payload });
      sub.ws.send(json);
    }
  }
  return set.size;
}

function answer(res, status, body, headers = {}) {
  res.writeHead(status, { 'Content-Type': 'text/plain', Connection: 'close', ...headers });
  res.end(body);
}

function channelOf(url, prefix) {
  if (!url.startsWith(prefix)) return null;
  const name = decodeURIComponent(url.slice(prefix.length).split('?')[0]);
  return CHANNEL_RE.test(name) ? name : null;
}

const server = http.createServer((req, res) => {
  const url = req.url || '/';
  if (url.startsWith('/sse/')) {
    const channel = channelOf(url, '/sse/');
    if (!channel) return answer(res, 400, 'bad channel\n');
    if (req.method !== 'GET') return answer(res, 405, '', { Allow: 'GET' });
    res.writeHead(200, {
      'Content-Type': 'text/event-stream',
      'Cache-Control': 'no-cache',
      'X-Accel-Buffering': 'no',
    });
    res.flushHeaders(); // clients count a stream as open when they see the status line
    const sub = { sse: res };
    subscribe(channel, sub);
    req.socket.setTimeout(0);
    res.on('close', () => unsubscribe(channel, sub));
    return;
  }
  if (url.startsWith('/publish/')) {
    const channel = channelOf(url, '/publish/');
    if (!channel) return answer(res, 400, 'bad channel\n');
    if (req.method !== 'POST') return answer(res, 405, '', { Allow: 'POST' });
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_BODY) {
        answer(res, 413, 'payload too large\n');
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (size > MAX_BODY) return;
      const n = publish(channel, Buffer.concat(chunks).toString('utf8'));
      // Keep-alive is left to the client: a publisher that reuses its connection may.
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.end(`${n}\n`);
    });
    return;
  }
  if (url === '/health') return answer(res, 200, 'ok');
  return answer(res, 404, 'not found\n');
});

// Long-lived streams must not be cut by Node's request timer, and the header timer is off too:
// it measures from the first byte to the end of parsing, so when a broadcast keeps the event
// loop busy for seconds it times out (408) the publisher's requests that arrived whole. The
// publisher's keep-alive connection sits idle while thousands of clients subscribe, longer
// than Node's default 5 s keep-alive timeout: give it an hour, as one would a trusted backend.
server.requestTimeout = 0;
server.headersTimeout = 0;
server.keepAliveTimeout = 3600 * 1000;
server.maxRequestsPerSocket = 0;

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
server.on('upgrade', (req, socket, head) => {
  const channel = channelOf(req.url || '/', '/ws/');
  if (!channel) {
    socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    const sub = { ws };
    subscribe(channel, sub);
    ws.on('close', () => unsubscribe(channel, sub));
    ws.on('error', () => ws.terminate());
  });
});

// Heartbeat comments keep idle streams alive through proxies, as ringcast's do; WebSocket
// clients get pings from ws.
const heartbeat = setInterval(() => {
  for (const set of channels.values()) {
    for (const sub of set) {
      if (sub.sse) sub.sse.write(':\n\n');
      else sub.ws.ping();
    }
  }
}, HEARTBEAT_MS);
heartbeat.unref();

server.on('clientError', (err, socket) => {
  console.error(`node-peer: client error ${err.code || err.message}`);
  const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
  if (socket.writable) {
    socket.end(`HTTP/1.1 ${status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
  }
});

// The accept backlog ringcast uses (and nginx gets, capped by net.core.somaxconn) rather than
// Node's 511: with 511 a burst of connects overflows the queue and the clients wait for a SYN
// retransmit (1 s), which would measure the kernel's queue instead of the server.
server.listen({ port, host: HOST, backlog: 4096 }, () => {
  console.error(`node-peer: listening on ${HOST}:${server.address().port} (pid ${process.pid})`);
});

function stop() {
  // Streams never end by themselves, so close() alone would wait forever: end them first.
  for (const set of channels.values()) {
    for (const sub of set) {
      if (sub.sse) sub.sse.end();
      else sub.ws.terminate();
    }
  }
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
