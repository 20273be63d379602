// The dev chain keeps its data: `make run`'s launcher (scripts/dev-chain.sh) starts a node on a
// database in a folder of its own, a model is deployed, the node is stopped with Ctrl-C and
// started again on the same folder, and the model is still there and infers. A third start with
// SMARTVM_FRESH=1 begins a new chain without it.
//
//   SMARTVM_NODE=… SMARTVM_CLI=… node --test restart.test.mjs      (make e2e sets both)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { freePort } from './support.mjs';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const TARGET = process.env.CARGO_TARGET_DIR || path.join(os.homedir(), '.cache/smartvm/target');
const NODE = process.env.SMARTVM_NODE || path.join(TARGET, 'release/smartvm-node');
const CLI = process.env.SMARTVM_CLI || path.join(TARGET, 'release/smartvm');
const DEMO = path.join(ROOT, 'models/lenet5-fashion/compiled');
const LAUNCHER = path.join(ROOT, 'scripts/dev-chain.sh');

async function rpc(url, method, params = []) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ id: 1, jsonrpc: '2.0', method, params }),
  });
  return (await res.json()).result;
}

/** Starts the launcher on `data`; resolves with the running node once it serves RPC. */
async function start(data, fresh = false) {
  const port = await freePort();
  const log = [];
  const node = spawn('bash', [LAUNCHER, NODE, '--instant-seal', '--pool-type', 'single-state',
    '--rpc-port', String(port), '--no-prometheus', '--no-telemetry'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, SMARTVM_DEV_DATA: data, SMARTVM_FRESH: fresh ? '1' : '0' },
  });
  node.stdout.on('data', (d) => log.push(d.toString()));
  node.stderr.on('data', (d) => log.push(d.toString()));
  const http = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 600_000;
  for (;;) {
    if (node.exitCode !== null) throw new Error(`node exited (${node.exitCode}):\n${log.join('')}`);
    if (Date.now() > deadline) throw new Error(`no RPC within 600 s:\n${log.join('')}`);
    try {
      if (await rpc(http, 'system_health')) break;
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 250));
  }
  return { node, log, http, url: `ws://127.0.0.1:${port}` };
}

/** Ctrl-C, as a user stops `make run`; resolves when the node has exited. */
function stop({ node }) {
  return new Promise((resolve) => {
    if (node.exitCode !== null) return resolve();
    node.once('exit', () => resolve());
    node.kill('SIGINT');
    setTimeout(() => node.exitCode === null && node.kill('SIGKILL'), 20_000).unref();
  });
}

function cli(args) {
  return execFileSync(CLI, args, { encoding: 'utf8', env: { ...process.env, RUST_BACKTRACE: '0' } });
}

/** A deterministic Fashion-MNIST-sized input: pixel − 128. */
function input() {
  const file = path.join(os.tmpdir(), `smartvm-restart-${process.pid}.bin`);
  fs.writeFileSync(file, Buffer.from(Array.from({ length: 784 }, (_, j) => ((j * 37) % 256) ^ 0x80)));
  return file;
}

test('a model deployed on the dev chain is still there after a restart, and FRESH starts over', async () => {
  for (const bin of [NODE, CLI]) assert.ok(fs.existsSync(bin), `${bin} missing: run make build-node build`);
  const data = fs.mkdtempSync(path.join(os.tmpdir(), 'smartvm-dev-data-'));
  const file = input();
  const expected = JSON.parse(cli(['run', path.join(DEMO, 'program.smvm'), '--weights',
    path.join(DEMO, 'weights.smw'), '--input', file, '--json'])).output;
  try {
    let chain = await start(data);
    assert.match(chain.log.join(''), /new database/);
    let id;
    try {
      const deployed = cli(['deploy', DEMO, '--url', chain.url, '--suri', '//Bob']);
      id = Number(deployed.match(/model (\d+): \d+ blocks/)[1]);
      assert.ok(id >= 1, `a new model beside the genesis one: ${deployed}`);
    } finally {
      await stop(chain);
    }

    chain = await start(data);
    try {
      assert.match(chain.log.join(''), /resuming the database/);
      const header = await rpc(chain.http, 'chain_getHeader');
      assert.ok(Number(header.number) > 0, 'the chain continues from its stored blocks');
      const dry = JSON.parse(cli(['infer', '--url', chain.url, '--model', String(id), '--input', file,
        '--dry-run', '--json']));
      assert.deepEqual(dry.output, expected);
    } finally {
      await stop(chain);
    }

    chain = await start(data, true);
    try {
      const header = await rpc(chain.http, 'chain_getHeader');
      assert.equal(Number(header.number), 0, 'a fresh chain starts at genesis');
      assert.throws(() => cli(['infer', '--url', chain.url, '--model', String(id), '--input', file,
        '--dry-run', '--json']), /model \d+ does not exist/);
    } finally {
      await stop(chain);
    }
  } finally {
    fs.rmSync(data, { recursive: true, force: true });
    fs.rmSync(file, { force: true });
  }
});
