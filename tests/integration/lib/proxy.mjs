// A TCP proxy between test clients and ringcast, for cutting real clients (`eventsource`, `ws`)
// mid-stream the way a flaky network does.
//
//   const px = await startProxy(srv.port);
//   new EventSource(px.url('/sse/news'));      // the client talks to the proxy
//   px.cutAll();                                // every connection it holds is cut, both ways
//   px.cutRandom(0.5);                          // or about half of them (or cutRandom({count: 3}))
//   await px.close();                           // bounded; also done on process exit
//
// Bytes are copied as they come, with back-pressure both ways (a client that stops reading
// stops the proxy from reading the server, so the server sees a slow client as it would
// without the proxy). A cut drops whatever the proxy has buffered and resets (RST) or closes
// (FIN) both sockets, so the client sees the stream end at an arbitrary byte, possibly inside
// an event or frame. The proxy keeps accepting afterwards: clients can reconnect through it.
// setDown(true) makes it reset every new connection at once (an outage) until setDown(false).
//
// Listens on 127.0.0.1 only and connects to 127.0.0.1 (or `host`, which must be loopback).

import net from 'node:net';

const live = new Set();
process.on('exit', () => {
  for (const p of live) p.destroyNow();
});

function kill(sock, mode) {
  if (sock.destroyed) return;
  if (mode === 'reset' && typeof sock.resetAndDestroy === 'function' && sock.readyState !== 'opening') {
    try {
      sock.resetAndDestroy();
      return;
    } catch {
      // fall back to a plain close below
    }
  }
  sock.destroy();
}

/**
 * Starts a proxy on 127.0.0.1:<free port> that forwards every connection to host:targetPort.
 * Returns
 *   {port, url(path), wsUrl(path), count(), accepted, cuts, cutAll(opts), cutRandom(fraction|{count},
 *    opts), setDown(bool), close(ms)}
 * count() is the number of connection pairs currently held; accepted is the number accepted so
 * far; cuts counts connections cut by cutAll/cutRandom. opts.mode is 'reset' (RST, default) or
 * 'close' (FIN).
 */
export function startProxy(targetPort, { host = '127.0.0.1', rng = Math.random } = {}) {
  if (!/^127\./.test(host)) throw new Error(`proxy: loopback targets only, not ${host}`);
  const pairs = new Set();
  let down = false;
  const px = {
    port: 0,
    accepted: 0,
    cuts: 0,
    count: () => pairs.size,
    url: (p) => `http://127.0.0.1:${px.port}${p}`,
    wsUrl: (p) => `ws://127.0.0.1:${px.port}${p}`,
  };

  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    px.accepted++;
    if (down) {
      client.on('error', () => {});
      kill(client, 'reset');
      return;
    }
    client.setNoDelay(true);
    const upstream = net.connect({ host, port: targetPort, allowHalfOpen: true });
    upstream.setNoDelay(true);
    const pair = { client, upstream, first: '', up: 0, down: 0 };
    client.on('data', (d) => {
      if (!pair.up) pair.first = d.subarray(0, Math.max(0, d.indexOf('\r\n'))).toString('latin1');
      pair.up += d.length;
    });
    upstream.on('data', (d) => (pair.down += d.length));
    pairs.add(pair);
    const done = () => {
      if (!pairs.delete(pair)) return;
      // One side is gone: the other goes too (a half-open leftover would hold the server).
      kill(client, 'close');
      kill(upstream, 'close');
    };
    for (const s of [client, upstream]) {
      s.on('error', done);
      s.on('close', done);
    }
    // pipe() gives back-pressure and propagates a FIN (end) from either side to the other.
    client.pipe(upstream);
    upstream.pipe(client);
  });
  server.on('error', () => {});

  /** Cuts the given pairs; returns how many. */
  function cut(list, { mode = 'reset' } = {}) {
    for (const pair of list) {
      pairs.delete(pair);
      pair.client.unpipe();
      pair.upstream.unpipe();
      kill(pair.client, mode);
      kill(pair.upstream, mode);
    }
    px.cuts += list.length;
    return list.length;
  }

  px.cutAll = (opts) => cut([...pairs], opts);

  /** Cuts each connection with probability `fraction`, or exactly {count} random ones. */
  px.cutRandom = (arg = 0.5, opts) => {
    const all = [...pairs];
    let chosen;
    if (typeof arg === 'number') {
      chosen = all.filter(() => rng() < arg);
    } else {
      for (let i = all.length - 1; i > 0; i--) {
        const j = Math.floor(rng() * (i + 1));
        [all[i], all[j]] = [all[j], all[i]];
      }
      chosen = all.slice(0, Math.min(arg.count, all.length));
    }
    return cut(chosen, opts);
  };

  /** What the held connections are, for failure messages: [{request, up, down}]. */
  px.describe = () => [...pairs].map((p) => ({ request: p.first, up: p.up, down: p.down }));

  px.setDown = (v) => {
    down = !!v;
  };

  px.destroyNow = () => {
    live.delete(px);
    for (const pair of [...pairs]) {
      pairs.delete(pair);
      pair.client.destroy();
      pair.upstream.destroy();
    }
    server.close();
  };

  /** Stops listening and cuts everything; resolves within `ms` whatever happens. */
  px.close = (ms = 2000) => {
    live.delete(px);
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      server.close(() => {
        clearTimeout(t);
        resolve();
      });
      cut([...pairs], { mode: 'close' });
    });
  };

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      px.port = server.address().port;
      live.add(px);
      resolve(px);
    });
  });
}
