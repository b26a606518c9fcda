// The WebSocket opening handshake (RFC 6455 section 4): 101 with the right accept key, 426 for a
// wrong version, 400 for every other bad upgrade, subprotocol and permessage-deflate negotiation,
// and frames sent right behind the request head. A bystander WebSocket and an SSE stream on the
// same channel must receive every event published around all of it.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer,
  rawRequest,
  wsRequest,
  wsRaw,
  wsOpen,
  wsFrame,
  wsAccept,
  wsKey,
  subscribe,
  publish,
  info,
  waitInfo,
} from './lib/harness.mjs';

let srv;
let bystander;
let sse;
const CH = 'hs';

before(async () => {
  srv = await startServer({
    websocket: { protocols: 'chat.v2, chat.v1', compression: 'on', ping_interval: 0 },
  });
  bystander = await wsOpen(srv.port, CH);
  sse = await subscribe(srv.port, CH);
});

after(async () => {
  bystander?.close();
  sse?.close();
  await srv?.stop();
});

test('101 with Upgrade, Connection and the accept key RFC 6455 computes', async () => {
  const key = 'dGhlIHNhbXBsZSBub25jZQ==';
  const r = await rawRequest(srv.port, wsRequest(`/ws/${CH}`, { key }), { timeout: 500 });
  assert.equal(r.status, 101, r.text);
  assert.equal(r.statusLine, 'HTTP/1.1 101 Switching Protocols');
  assert.equal(r.headers['upgrade'][0], 'websocket');
  assert.equal(r.headers['connection'][0], 'Upgrade');
  // The example of RFC 6455 section 1.3.
  assert.equal(r.headers['sec-websocket-accept'][0], 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
  assert.equal(r.headers['sec-websocket-protocol'], undefined);
  assert.equal(r.headers['sec-websocket-extensions'], undefined);
  assert.equal(r.closed, false, 'the connection stays open after 101');
});

test('Upgrade and Connection tokens in any case and in lists', async () => {
  const key = wsKey();
  const req =
    `GET /ws/${CH}?x=1 HTTP/1.1\r\nHost: a\r\nupgrade: WebSocket\r\nconnection: keep-alive, UPGRADE\r\n` +
    `sec-websocket-key: ${key}\r\nsec-websocket-version: 13\r\n\r\n`;
  const r = await rawRequest(srv.port, req, { timeout: 500 });
  assert.equal(r.status, 101, r.text);
  assert.equal(r.headers['sec-websocket-accept'][0], wsAccept(key));
});

const refusals = [
  { name: 'wrong version 8', req: () => wsRequest(`/ws/${CH}`, { omit: ['Sec-WebSocket-Version'], headers: ['Sec-WebSocket-Version: 8'] }), status: 426 },
  { name: 'version 14', req: () => wsRequest(`/ws/${CH}`, { omit: ['Sec-WebSocket-Version'], headers: ['Sec-WebSocket-Version: 14'] }), status: 426 },
  { name: 'no version', req: () => wsRequest(`/ws/${CH}`, { omit: ['Sec-WebSocket-Version'] }), status: 426 },
  { name: 'no key', req: () => wsRequest(`/ws/${CH}`, { omit: ['Sec-WebSocket-Key'] }), status: 400 },
  { name: 'short key', req: () => wsRequest(`/ws/${CH}`, { key: 'c2hvcnQ=' }), status: 400 },
  { name: 'key of 17 bytes', req: () => wsRequest(`/ws/${CH}`, { key: Buffer.alloc(17).toString('base64') }), status: 400 },
  { name: 'key not base64', req: () => wsRequest(`/ws/${CH}`, { key: '!!!!!!!!!!!!!!!!!!!!!!==' }), status: 400 },
  { name: 'no Upgrade', req: () => wsRequest(`/ws/${CH}`, { omit: ['Upgrade'] }), status: 400 },
  { name: 'Upgrade: h2c', req: () => wsRequest(`/ws/${CH}`, { omit: ['Upgrade'], headers: ['Upgrade: h2c'] }), status: 400 },
  { name: 'no Connection', req: () => wsRequest(`/ws/${CH}`, { omit: ['Connection'] }), status: 400 },
  { name: 'Connection: keep-alive', req: () => wsRequest(`/ws/${CH}`, { omit: ['Connection'], headers: ['Connection: keep-alive'] }), status: 400 },
  { name: 'POST', req: () => wsRequest(`/ws/${CH}`).replace(/^GET/, 'POST'), status: 400 },
  { name: 'HTTP/1.0', req: () => wsRequest(`/ws/${CH}`).replace('HTTP/1.1', 'HTTP/1.0'), status: 400 },
  { name: 'bad channel', req: () => wsRequest('/ws/a%20b'), status: 400 },
  { name: 'empty channel', req: () => wsRequest('/ws/'), status: 400 },
  { name: 'bad deflate offer grammar', req: () => wsRequest(`/ws/${CH}`, { headers: ['Sec-WebSocket-Extensions: permessage-deflate;;'] }), status: 400 },
];

for (const c of refusals) {
  test(`refused: ${c.name} -> ${c.status}, connection closed`, async () => {
    const r = await rawRequest(srv.port, c.req(), { timeout: 3000 });
    assert.equal(r.status, c.status, r.text);
    assert.ok(r.closed, 'closed after the answer');
    if (c.status === 426) assert.equal(r.headers['sec-websocket-version'][0], '13');
  });
}

test('subprotocol: the first offered one that is configured; none matching sends none', async () => {
  const ask = async (offer) => {
    const r = await rawRequest(srv.port, wsRequest(`/ws/${CH}`, { headers: offer.map((o) => `Sec-WebSocket-Protocol: ${o}`) }), { timeout: 400 });
    assert.equal(r.status, 101, r.text);
    return r.headers['sec-websocket-protocol']?.[0];
  };
  assert.equal(await ask(['chat.v1, chat.v2']), 'chat.v1');
  assert.equal(await ask(['x, chat.v2 ,chat.v1']), 'chat.v2');
  assert.equal(await ask(['x', 'chat.v1']), 'chat.v1');
  assert.equal(await ask(['CHAT.V1']), undefined);
  assert.equal(await ask(['mqtt']), undefined);
});

test('permessage-deflate: accepted with server_no_context_takeover, foreign extensions declined', async () => {
  const ask = async (offer) => {
    const r = await rawRequest(srv.port, wsRequest(`/ws/${CH}`, { headers: offer.map((o) => `Sec-WebSocket-Extensions: ${o}`) }), { timeout: 400 });
    assert.equal(r.status, 101, r.text);
    return r.headers['sec-websocket-extensions']?.[0];
  };
  assert.equal(await ask(['permessage-deflate']), 'permessage-deflate; server_no_context_takeover');
  assert.equal(
    await ask(['permessage-deflate; client_max_window_bits']),
    'permessage-deflate; server_no_context_takeover',
  );
  assert.equal(await ask(['x-webkit-deflate-frame']), undefined);
  assert.equal(await ask(['foo', 'permessage-deflate; client_no_context_takeover']),
    'permessage-deflate; server_no_context_takeover; client_no_context_takeover');
  assert.equal(await ask(['permessage-deflate; unknown=1']), undefined);
});

test('frames sent in the same write as the head are handled (ping answered)', async () => {
  const c = wsRaw(srv.port, CH, {
    request: Buffer.concat([Buffer.from(wsRequest(`/ws/${CH}`)), wsFrame(0x9, 'early')]),
  });
  await c.waitFrames(1);
  assert.equal(c.head.status, 101);
  assert.equal(c.frames[0].opcode, 0xa);
  assert.equal(c.frames[0].payload.toString(), 'early');
  c.close();
});

test('the bystanders got every event and the engine counted the errors', async () => {
  const before = (await info(srv.socket)).ws_upgrades;
  assert.ok(before >= 10, `ws_upgrades ${before}`);
  // Closed handshake connections leave; the two bystanders remain on the channel.
  await waitInfo(srv.socket, (i) => i.subscribers === 2, { message: 'only the bystanders subscribed' });
  assert.equal(await publish(srv.socket, CH, 'after all that'), 2);
  await bystander.waitFrames(1);
  assert.equal(bystander.frames[0].payload.toString(), 'after all that');
  assert.equal(bystander.frames[0].opcode, 1);
  await sse.waitEvents(1);
  assert.equal(sse.events[0].data, 'after all that');
  const i = await info(srv.socket);
  assert.ok(i.http_errors >= refusals.length, `http_errors ${i.http_errors}`);
});
