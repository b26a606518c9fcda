// Connection limits under SIGHUP reload: max_connections can be turned on, changed and turned off
// on a running server (the engine-wide count is kept whatever the limit), and so can the value of
// max_connections_per_address while it stays on. Turning the per-address limit on or off needs a
// restart (it selects how workers accept), so a reload that tries keeps the running value with a
// warning. Open streams lose nothing through any of it.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, subscribe, publish, info, waitInfo, rawRequest, getRequest, sleep } from './lib/harness.mjs';
import { rewriteConfig, sighup } from './lib/reload.mjs';
import { assertRefused } from './lib/limits.mjs';

describe('connection limits follow a reload', () => {
  let srv;
  const subs = [];
  before(async () => {
    srv = await startServer({ server: { workers: 2, max_connections_per_address: 2 } });
    await waitInfo(srv.socket, (i) => i.connections === 0, { message: 'no connections' });
  });
  after(async () => {
    for (const s of subs) s.close();
    await srv?.stop();
  });

  const refuse = async (what) => assertRefused(await rawRequest(srv.port, getRequest('/sse/r'), { timeout: 3000 }), what);
  // A worker takes a new configuration at the top of its next loop iteration, and an idle one
  // waits up to a second for completions: after 1.1 s every worker has the new limits.
  const reload = async (server) => {
    rewriteConfig(srv, { server });
    await sighup(srv);
    await sleep(1100);
  };
  const settle = (n) => waitInfo(srv.socket, (i) => i.connections === n, { message: `${n} connections` });

  test('max_connections on, changed, off; max_connections_per_address changed while on', async () => {
    const start = await info(srv.socket);
    for (let i = 0; i < 2; i++) subs.push(await subscribe(srv.port, 'r'));
    await refuse('3rd from 127.0.0.1 over per-address 2');
    let i1 = await settle(2);
    assert.equal(i1.rejected_address - start.rejected_address, 1);

    // per-address 2 -> 5, max_connections 0 -> 3
    await reload({ max_connections_per_address: 5, max_connections: 3 });
    subs.push(await subscribe(srv.port, 'r'));
    await refuse('4th over max_connections 3');
    i1 = await settle(3);
    assert.equal(i1.rejected_global - start.rejected_global, 1);

    // max_connections 3 -> 0: the 4th gets in; then 0 -> 4: the 5th does not
    await reload({ max_connections: 0 });
    subs.push(await subscribe(srv.port, 'r'));
    await reload({ max_connections: 4 });
    await refuse('5th over max_connections 4');
    i1 = await settle(4);
    assert.equal(i1.rejected_global - start.rejected_global, 2);

    // per-address 5 -> 0 would switch the mode off: 5 stays, with a warning; the 5th
    // connection gets in and the 6th is over it
    await reload({ max_connections: 0, max_connections_per_address: 0 });
    assert.match(srv.stderr(), /max_connections_per_address.*restart/);
    subs.push(await subscribe(srv.port, 'r'));
    await refuse('6th over per-address 5');
    i1 = await settle(5);
    assert.equal(i1.rejected_address - start.rejected_address, 2);
    assert.equal(i1.client_addresses, 1);

    assert.equal(await publish(srv.socket, 'r', 'through it all'), 5);
    for (const s of subs) {
      await s.waitEvents(1);
      assert.equal(s.events.at(-1).data, 'through it all');
    }
  });
});
