// The command line: --version, --help, --check-config, and refusing to start on a bad config.
//
// Config errors must be reported as "FILE:LINE: message" on stderr with a non-zero exit, where
// FILE is the path as given and LINE the 1-based line of the offending text.

import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { runBin, makeTempDir, freePort, REPO_ROOT, BIN, waitExit, sleep } from './lib/harness.mjs';
import { spawn } from 'node:child_process';

const dir = makeTempDir();
after(() => fs.rmSync(dir, { recursive: true, force: true }));

let n = 0;
/** Writes an ini file (lines joined with LF) and returns its absolute path. */
function iniFile(lines) {
  const p = path.join(dir, `c${++n}.ini`);
  fs.writeFileSync(p, lines.join('\n') + '\n');
  return p;
}

function projectVersion() {
  const cm = fs.readFileSync(path.join(REPO_ROOT, 'CMakeLists.txt'), 'utf8');
  const m = /project\(\s*ringcast\s+VERSION\s+([0-9][0-9A-Za-z.+-]*)/.exec(cm);
  assert.ok(m, 'CMakeLists.txt declares project(ringcast VERSION x.y.z)');
  return m[1];
}

describe('informational flags', () => {
  test('--version prints "ringcast <version>" (the CMake project version) and exits 0', async () => {
    const r = await runBin(['--version']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^ringcast \S+\r?\n?$/, `stdout: ${JSON.stringify(r.stdout)}`);
    assert.equal(r.stdout.trim(), `ringcast ${projectVersion()}`);
  });

  test('--help prints usage on stdout naming -c and --check-config, and exits 0', async () => {
    const r = await runBin(['--help']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /usage/i);
    assert.match(r.stdout, /-c\b/);
    assert.match(r.stdout, /--check-config/);
    assert.match(r.stdout, /--version/);
  });

  test('an unknown option is refused with a non-zero exit', async () => {
    const r = await runBin(['--no-such-option']);
    assert.notEqual(r.code, 0);
    assert.notEqual(r.stderr.trim(), '', 'says something on stderr');
  });
});

describe('--check-config accepts valid files', () => {
  test('an empty file is valid (every key has a default)', async () => {
    const f = iniFile(['; nothing here']);
    const r = await runBin(['--check-config', '-c', f]);
    assert.equal(r.code, 0, r.stderr);
  });

  test('a file setting every documented key is valid, with suffixes, fractions and comments', async () => {
    const port = await freePort();
    const f = iniFile([
      '; full configuration',
      '[server]',
      `listen = 127.0.0.1:${port}`,
      'workers = auto',
      'max_connections_per_worker = 1000',
      'shutdown_grace = 2.5',
      '',
      '[http]',
      'max_request_line = 4096',
      'max_header_bytes = 8192',
      'max_headers = 64',
      'header_timeout = 10',
      'cors_origin = https://app.example.com',
      '',
      '[sse]',
      'heartbeat_interval = 0.5',
      'retry = 3',
      '',
      '[channels]',
      'history_size = 1024',
      'max_lag = 512',
      '',
      '[feed]',
      `socket = ${path.join(dir, 'full.sock')}`,
      'mode = 0660',
      'max_payload = 64k',
      'max_connections = 64',
      'max_pending = 4096',
      '',
      '[log]',
      'level = debug',
    ]);
    const r = await runBin(['--check-config', '-c', f]);
    assert.equal(r.code, 0, r.stderr);
  });

  test('explicit worker counts, an "m" payload suffix and disabled heartbeat/retry are valid', async () => {
    const f = iniFile([
      '[server]',
      'workers = 2',
      '[sse]',
      'heartbeat_interval = 0',
      'retry = 0',
      '[feed]',
      'max_payload = 2m',
      '[log]',
      'level = warn',
    ]);
    const r = await runBin(['--check-config', '-c', f]);
    assert.equal(r.code, 0, r.stderr);
  });

  test('--check-config does not start the server: it returns at once', async () => {
    const port = await freePort();
    const f = iniFile(['[server]', `listen = 127.0.0.1:${port}`, '[feed]', `socket = ${path.join(dir, 'quick.sock')}`]);
    const t0 = Date.now();
    const r = await runBin(['--check-config', '-c', f], { timeout: 3000 });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(Date.now() - t0 < 3000);
    assert.ok(!fs.existsSync(path.join(dir, 'quick.sock')), 'no feed socket was created');
  });
});

// Each case: lines of a file, the 1-based line(s) the error may name, and a word the message
// should mention (the offending key, section or value).
const BAD = [
  {
    name: 'unknown key',
    lines: ['; comment', '[server]', 'workers = 2', '', 'bogus_key = 1'],
    line: [5],
    mentions: /bogus_key/,
  },
  {
    name: 'unknown key in [sse]',
    lines: ['[server]', 'workers = 1', '[sse]', 'heartbeat_interval = 1', 'heartbeet_interval = 2'],
    line: [5],
    mentions: /heartbeet_interval/,
  },
  {
    // inih reports keys, not bare section headers, so either the header or its first key's line
    // is an acceptable location.
    name: 'unknown section',
    lines: ['[server]', 'workers = 1', '', '[bogus_section]', 'x = 1'],
    line: [4, 5],
    mentions: /bogus_section/,
  },
  {
    name: 'key set twice',
    lines: ['[server]', 'workers = 1', '[http]', 'max_headers = 10', 'max_headers = 20'],
    line: [5],
    mentions: /max_headers/,
  },
  { name: 'bad value: workers = many', lines: ['[server]', '', 'workers = many'], line: [3], mentions: /workers|many/ },
  {
    name: 'bad value: listen = not-an-address',
    lines: ['[log]', 'level = info', '[server]', 'listen = not-an-address'],
    line: [4],
    mentions: /listen|not-an-address/,
  },
  {
    name: 'bad value: negative max_connections_per_worker',
    lines: ['[server]', 'max_connections_per_worker = -5'],
    line: [2],
    mentions: /max_connections_per_worker|-5/,
  },
  {
    name: 'bad value: trailing junk in a number',
    lines: ['[http]', 'max_headers = 64', 'max_request_line = 12abc'],
    line: [3],
    mentions: /max_request_line|12abc/,
  },
  {
    name: 'bad value: heartbeat_interval = fast',
    lines: ['[sse]', 'retry = 1', 'heartbeat_interval = fast'],
    line: [3],
    mentions: /heartbeat_interval|fast/,
  },
  { name: 'bad value: log level', lines: ['[log]', 'level = loud'], line: [2], mentions: /level|loud/ },
  {
    name: 'bad value: unknown size suffix',
    lines: ['[feed]', 'max_connections = 8', 'max_payload = 10q'],
    line: [3],
    mentions: /max_payload|10q/,
  },
  { name: 'bad value: mode is not octal', lines: ['[feed]', 'mode = 0999'], line: [2], mentions: /mode|0999/ },
  {
    name: 'bad value: listen port out of range',
    lines: ['[server]', 'workers = 1', 'listen = 127.0.0.1:70000'],
    line: [3],
    mentions: /listen|70000/,
  },
];

function assertNamesLine(stderr, file, lines, mentions) {
  const found = lines.some((l) => stderr.includes(`${file}:${l}:`));
  assert.ok(found, `stderr should contain "${file}:${lines.join('|')}:" but was:\n${stderr}`);
  assert.match(stderr, mentions, `the message should say what is wrong:\n${stderr}`);
}

describe('--check-config rejects bad files with FILE:LINE: message', () => {
  for (const c of BAD) {
    test(c.name, async () => {
      const f = iniFile(c.lines);
      const r = await runBin(['--check-config', '-c', f]);
      assert.notEqual(r.code, 0, `exit code for ${c.name}; stderr: ${r.stderr}`);
      assert.equal(r.signal, null);
      assertNamesLine(r.stderr, f, c.line, c.mentions);
    });
  }

  test('a file that does not exist is an error naming the file', async () => {
    const f = path.join(dir, 'missing.ini');
    const r = await runBin(['--check-config', '-c', f]);
    assert.notEqual(r.code, 0);
    assert.ok(r.stderr.includes(f), r.stderr);
  });
});

describe('starting with an invalid config fails the same way', () => {
  for (const c of [BAD[0], BAD[2], BAD[4]]) {
    test(`ringcast -c FILE with ${c.name} exits non-zero with FILE:LINE`, async () => {
      const f = iniFile(c.lines);
      const r = await runBin(['-c', f], { timeout: 5000 });
      assert.notEqual(r.code, 0, `exit code; stderr: ${r.stderr}`);
      assert.equal(r.signal, null, 'exited by itself, not killed');
      assertNamesLine(r.stderr, f, c.line, c.mentions);
    });
  }

  test('a missing config file makes ringcast -c exit non-zero', async () => {
    const r = await runBin(['-c', path.join(dir, 'nope.ini')], { timeout: 5000 });
    assert.notEqual(r.code, 0);
    assert.equal(r.signal, null);
  });

  test('a port another ringcast already serves is refused, not silently shared', async () => {
    const port = await freePort();
    const first = iniFile(['[server]', `listen = 127.0.0.1:${port}`, 'workers = 2', '[feed]',
      `socket = ${path.join(dir, 'first.sock')}`]);
    const second = iniFile(['[server]', `listen = 127.0.0.1:${port}`, 'workers = 2', '[feed]',
      `socket = ${path.join(dir, 'second.sock')}`]);
    const p = spawn(BIN, ['-c', first], { stdio: ['ignore', 'ignore', 'pipe'] });
    try {
      assert.equal(await waitExit(p, 500), null, 'the first instance runs');
      const r = await runBin(['-c', second], { timeout: 5000 });
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /already in use/);
    } finally {
      p.kill('SIGTERM');
      if (!(await waitExit(p, 5000))) p.kill('SIGKILL');
    }
  });

  test('a valid config does start (control case): the process is still up after 1 s', async () => {
    const port = await freePort();
    const sock = path.join(dir, 'ctl.sock');
    const f = iniFile(['[server]', `listen = 127.0.0.1:${port}`, 'workers = 1', '[feed]', `socket = ${sock}`]);
    const p = spawn(BIN, ['-c', f], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (d) => (stderr += d));
    try {
      const early = await waitExit(p, 1000);
      assert.equal(early, null, `exited early: ${JSON.stringify(early)} ${stderr}`);
    } finally {
      p.kill('SIGTERM');
      const r = await waitExit(p, 5000);
      if (!r) p.kill('SIGKILL');
      await sleep(10);
      assert.ok(r, 'exits within 5 s of SIGTERM');
      assert.equal(r.code, 0, stderr);
    }
  });
});
