// Clients that follow a stream across cuts and check it, for the resume tests:
//  - esFollower: the `eventsource` package, which reconnects on its own and sends Last-Event-ID;
//  - wsFollower: the `ws` package in envelope mode (`/ws?channel=...`), reconnecting itself with
//    `&lastEventId=<last id seen>` after every close;
// both checking, as events come, that they are exactly the expected ones, in order, once.
// publishStorm() publishes a numbered sequence at a steady pace through a raw feed connection
// while cutting the followers' connections through the proxy (lib/proxy.mjs).

import WebSocket from 'ws';
import { EventSource, resp, sleep, waitUntil, compareIds } from './harness.mjs';

/** Splits an engine id `<instance hex>-<decimal seq>`; null when it is not one. */
export function parseId(id) {
  const m = /^([0-9a-f]+)-(\d+)$/.exec(id ?? '');
  return m ? { instance: m[1], seq: Number(m[2]) } : null;
}

/**
 * Parses one envelope-mode WebSocket message: a header line, '\n', the payload.
 * Returns {kind: 'event', id, channel, type, payload} | {kind: 'gap', reason} |
 * {kind: 'subscribed'|'unsubscribed', channel} | {kind: 'error', text} | {kind: 'direct', payload} |
 * {kind: 'bad', raw}.
 */
export function parseEnvelope(data) {
  const buf = Buffer.isBuffer(data) ? data : Buffer.from(data);
  const nl = buf.indexOf(0x0a);
  if (nl < 0) return { kind: 'bad', raw: buf.toString('latin1').slice(0, 80) };
  const header = buf.subarray(0, nl).toString('utf8');
  const payload = buf.subarray(nl + 1).toString('utf8');
  const sp = header.indexOf(' ');
  const word = sp < 0 ? header : header.slice(0, sp);
  const rest = sp < 0 ? '' : header.slice(sp + 1);
  switch (word) {
    case 'event': {
      const [id, channel, type] = rest.split(' ');
      if (!id || !channel) return { kind: 'bad', raw: header };
      return { kind: 'event', id, channel, type, payload };
    }
    case 'gap':
      return { kind: 'gap', reason: rest, payload };
    case 'subscribed':
    case 'unsubscribed':
      return { kind: word, channel: rest };
    case 'error':
      return { kind: 'error', text: rest };
    case 'direct':
      return { kind: 'direct', payload };
    default:
      return { kind: 'bad', raw: header };
  }
}

/**
 * Checks one client's stream against `expected` (the payloads it must get, in order). The first
 * deviation is kept in `failure`, in words: what was expected, what arrived, the ids around it.
 * `idOf` (shared by all checkers of a run) maps a payload to the id the first client saw for it:
 * every client must see the same id for the same event, and ids must increase.
 */
export class StreamChecker {
  constructor(name, expected, idOf = new Map()) {
    this.name = name;
    this.expected = expected;
    this.idOf = idOf;
    this.next = 0;
    this.failure = null;
    this.lastId = null;
    this.recent = [];
    this.extra = 0;
  }

  get done() {
    return this.next === this.expected.length;
  }

  fail(msg) {
    this.failure ??= `${this.name}: ${msg}; last received: ${JSON.stringify(this.recent)}`;
  }

  feed(payload, id, channel) {
    if (this.failure) return;
    this.recent.push(`${payload}@${id}`);
    if (this.recent.length > 4) this.recent.shift();
    if (this.next >= this.expected.length) {
      this.extra++;
      return this.fail(`got ${JSON.stringify(payload)} (id ${id}) after all ${this.expected.length} expected events`);
    }
    const want = this.expected[this.next];
    if (payload !== want) {
      const at = this.expected.indexOf(payload, this.next);
      const seenBefore = at < 0 && this.expected.lastIndexOf(payload, this.next - 1) >= 0;
      const what = at > this.next ? `${at - this.next} event(s) missing (${this.expected[this.next]} .. ${this.expected[at - 1]})`
        : seenBefore ? 'a duplicate or an event out of order' : 'an unexpected event';
      return this.fail(`expected ${JSON.stringify(want)} (#${this.next + 1}) after id ${this.lastId}, got ${JSON.stringify(payload)} (id ${id}): ${what}`);
    }
    if (channel !== undefined && !payload.startsWith(`${channel}:`)) {
      return this.fail(`${JSON.stringify(payload)} (id ${id}) arrived labelled with channel ${channel}`);
    }
    if (!id) return this.fail(`${JSON.stringify(payload)} has no id`);
    if (this.lastId !== null && compareIds(this.lastId, id) >= 0) {
      return this.fail(`ids not increasing: ${this.lastId} then ${id} (${payload})`);
    }
    const known = this.idOf.get(payload);
    if (known === undefined) this.idOf.set(payload, id);
    else if (known !== id) return this.fail(`${payload} has id ${id}, another client saw ${known}`);
    this.lastId = id;
    this.next++;
  }
}

/**
 * An EventSource on `url` checked by a StreamChecker. Any ringcast-gap event is recorded in
 * `gaps` (and is a failure when `gapsFail`). Fields: es, checker, opens, errors, gaps,
 * isOpen(), close().
 */
export function esFollower(url, { name, expected, idOf, gapsFail = true } = {}) {
  const es = new EventSource(url);
  const f = { es, name, checker: new StreamChecker(name, expected, idOf), opens: 0, errors: 0, gaps: [] };
  es.addEventListener('open', () => f.opens++);
  es.addEventListener('error', () => f.errors++);
  es.addEventListener('message', (ev) => f.checker.feed(ev.data, ev.lastEventId));
  es.addEventListener('ringcast-gap', (ev) => {
    f.gaps.push(ev.data);
    if (gapsFail) f.checker.fail(`unexpected ringcast-gap ${JSON.stringify(ev.data)} after id ${f.checker.lastId}`);
  });
  f.isOpen = () => es.readyState === EventSource.OPEN;
  f.close = () => es.close();
  return f;
}

/**
 * A `ws` client on `url` (`ws://.../ws?channel=...`, envelope mode) checked by a StreamChecker.
 * After every close it reconnects (after `delay` ms) to url + `&lastEventId=<last id seen>` until
 * close() is called. Fields: checker, opens, closes, gaps, urls (every URL it opened), isOpen(),
 * close().
 */
export function wsFollower(url, { name, expected, idOf, delay = 20, gapsFail = true } = {}) {
  const f = { name, checker: new StreamChecker(name, expected, idOf), opens: 0, closes: 0, gaps: [], urls: [], other: [] };
  let ws = null;
  let stopped = false;
  const connect = () => {
    const last = f.checker.lastId;
    const u = last ? `${url}&lastEventId=${encodeURIComponent(last)}` : url;
    f.urls.push(u);
    ws = new WebSocket(u);
    ws.on('open', () => f.opens++);
    ws.on('error', () => {});
    ws.on('unexpected-response', (req, res) => {
      f.checker.fail(`the upgrade to ${u} was answered ${res.statusCode}`);
      req.destroy();
    });
    ws.on('message', (data) => {
      const m = parseEnvelope(data);
      if (m.kind === 'event') f.checker.feed(m.payload, m.id, m.channel);
      else if (m.kind === 'gap') {
        f.gaps.push(m.reason);
        if (gapsFail) f.checker.fail(`unexpected gap ${JSON.stringify(m.reason)} after id ${f.checker.lastId} (opened ${u})`);
      } else if (m.kind === 'subscribed') f.other.push(m);
      else f.checker.fail(`unexpected message ${JSON.stringify(m)} (opened ${u})`);
    });
    ws.on('close', () => {
      f.closes++;
      if (!stopped) setTimeout(() => !stopped && connect(), delay);
    });
  };
  connect();
  f.isOpen = () => ws?.readyState === WebSocket.OPEN;
  f.close = () => {
    stopped = true;
    ws?.terminate();
  };
  return f;
}

/**
 * `count` cut points spread over [lo, hi): one random point in the middle of each of `count`
 * equal slices, so that cuts are random but never bunched together.
 */
export function cutPoints(count, lo, hi, rng = Math.random) {
  const w = (hi - lo) / count;
  return Array.from({ length: count }, (_, k) => Math.floor(lo + w * k + w * (0.2 + 0.6 * rng())));
}

/**
 * Publishes events[i] = [channel, payload] in order through `feed` (harness feedConnect), `batch`
 * per write, pausing `pause` ms between batches. When the count of events published passes a
 * cut point, waits (at most `gateTimeout` ms) until every follower is open again, then cuts
 * every proxy connection a few random ms later, while the next batches go out.
 * `randomCuts` are points where about half the connections are cut, without waiting for anyone.
 * Stops early, with an error naming the followers, as soon as one has a failure.
 * Returns {cuts: [{at, cut}], randomCuts: [{at, cut}]}.
 */
export async function publishStorm({ feed, events, px, followers, cuts = [], randomCuts = [], batch = 5, pause = 8, gateTimeout = 10000 }) {
  const out = { cuts: [], randomCuts: [] };
  const timers = [];
  const failed = () => followers.filter((f) => f.checker.failure);
  let ci = 0;
  let ri = 0;
  try {
    for (let i = 0; i < events.length; i += batch) {
      const n = Math.min(batch, events.length - i);
      while (ci < cuts.length && cuts[ci] < i + n) {
        const at = cuts[ci++];
        await waitUntil(() => followers.every((f) => f.isOpen()) || failed().length, {
          timeout: gateTimeout,
          interval: 5,
          message: `every follower to be open again before cut #${ci} (closed: ${followers.filter((f) => !f.isOpen()).map((f) => f.name)})`,
        });
        const rec = { at, cut: null };
        out.cuts.push(rec);
        timers.push(setTimeout(() => (rec.cut = px.cutAll()), Math.floor(Math.random() * 12)));
      }
      while (ri < randomCuts.length && randomCuts[ri] < i + n) {
        const rec = { at: randomCuts[ri++], cut: null };
        out.randomCuts.push(rec);
        timers.push(setTimeout(() => (rec.cut = px.cutRandom(0.5)), Math.floor(Math.random() * 12)));
      }
      const f = failed();
      if (f.length) throw new Error(`${f.length} follower(s) failed while ${i} events were published:\n${f.slice(0, 5).map((x) => x.checker.failure).join('\n')}`);
      const bufs = [];
      for (let k = 0; k < n; k++) bufs.push(resp('PUBLISH', ...events[i + k]));
      feed.send(Buffer.concat(bufs));
      const rs = await feed.replies(n, 10000);
      const bad = rs.filter((r) => r.type !== ':');
      if (bad.length) throw new Error(`publish replies at ${i}: ${JSON.stringify(bad.slice(0, 3))}`);
      if (pause) await sleep(pause);
    }
  } finally {
    await sleep(15); // let the last scheduled cut fire
    for (const t of timers) clearTimeout(t);
  }
  return out;
}

/** Waits (bounded) until every follower has everything or has failed; returns the failures. */
export async function settle(followers, { timeout = 30000 } = {}) {
  try {
    await waitUntil(() => followers.every((f) => f.checker.done || f.checker.failure), { timeout, interval: 20 });
  } catch {
    for (const f of followers) {
      if (!f.checker.done) {
        f.checker.fail(`stopped at ${f.checker.next}/${f.checker.expected.length} events (last id ${f.checker.lastId}); nothing more came within ${timeout} ms`);
      }
    }
  }
  await sleep(300); // anything extra (a duplicate after the end) shows up now
  return followers.filter((f) => f.checker.failure).map((f) => f.checker.failure);
}
