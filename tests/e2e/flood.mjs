// Flood test (`make flood`): a dev node on loopback (3 s blocks, as `make run`) receives a
// bounded burst of transactions from many accounts at once, a mix of honest and hostile work:
//   - valid `infer`s of the genesis LeNet-5 on 16 distinct inputs,
//   - `infer`s with a wrong input length and with a weight limit far too small (out of gas),
//   - `create_model` with malformed programs, and with a 252 KB program crafted to be costly to
//     validate (the one that made the old validator quadratic),
//   - `infer`s with an input past MaxInputLen, from an account of their own (the pool refuses
//     them at submission, so they never take a nonce the others need).
// Every included extrinsic is read back from the blocks' events. It asserts: the chain kept
// producing blocks, every valid `infer` was included with the output `smartvm run` computes off
// chain, every failed extrinsic paid a fee, every oversized one was refused, and the node's
// resident memory stayed under a bound. It prints a report and writes it as JSON.
//
//   SMARTVM_NODE=… SMARTVM_CLI=… node flood.mjs      (make flood sets both)
//   FLOOD_TX (default 2400), FLOOD_ACCOUNTS (default 8, at most 11), FLOOD_MINUTES (default 10),
//   FLOOD_REPORT (default ~/.cache/smartvm/flood/report.json; the node's log goes beside it)

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { ApiPromise, Keyring, WsProvider } from '@polkadot/api';

import { freePort } from './support.mjs';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const TARGET = process.env.CARGO_TARGET_DIR || path.join(os.homedir(), '.cache/smartvm/target');
const NODE = process.env.SMARTVM_NODE || path.join(TARGET, 'debug/smartvm-node');
const CLI = process.env.SMARTVM_CLI || path.join(TARGET, 'release/smartvm');
const DEMO = path.join(ROOT, 'models/lenet5-fashion/compiled');
const TOTAL = Number(process.env.FLOOD_TX || 2400);
const ACCOUNTS = Number(process.env.FLOOD_ACCOUNTS || 8);
const MINUTES = Number(process.env.FLOOD_MINUTES || 10);
const REPORT = process.env.FLOOD_REPORT || path.join(os.homedir(), '.cache/smartvm/flood/report.json');
/** Most resident memory the node may reach during the flood. */
const MAX_RSS_MIB = Number(process.env.FLOOD_MAX_RSS_MIB || 4096);
const SENDERS = ['//Alice', '//Bob', '//Charlie', '//Dave', '//Eve', '//Ferdie', '//Alice//stash',
  '//Bob//stash', '//Dave//stash', '//Eve//stash', '//Ferdie//stash'];
const OVERSIZE_SENDER = '//Charlie//stash';
const OVERSIZED = 40;
const CRAFTED = 12;

const hex = (bytes) => `0x${Buffer.from(bytes).toString('hex')}`;
const deadline = Date.now() + MINUTES * 60_000;
const remaining = () => deadline - Date.now();

function rssMiB(pid) {
  try {
    const line = fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'));
    return Number(line.split(/\s+/)[1]) / 1024;
  } catch {
    return 0;
  }
}

async function startNode() {
  const port = await freePort();
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'smartvm-flood-'));
  const log = [];
  const node = spawn(NODE, ['--dev', '--base-path', base, '--pool-type', 'single-state', '--rpc-port', String(port),
    '--rpc-max-connections', '100', '--no-prometheus', '--no-telemetry'], { stdio: ['ignore', 'pipe', 'pipe'] });
  node.stdout.on('data', (d) => log.push(d.toString()));
  node.stderr.on('data', (d) => log.push(d.toString()));
  for (;;) {
    if (node.exitCode !== null) throw new Error(`node exited (${node.exitCode}):\n${log.join('')}`);
    if (remaining() < 0) throw new Error(`no RPC before the deadline:\n${log.join('')}`);
    try {
      const res = await fetch(`http://127.0.0.1:${port}`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ id: 1, jsonrpc: '2.0', method: 'system_health', params: [] }),
      });
      if (res.ok) break;
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 250));
  }
  const stop = () => {
    if (node.exitCode === null) node.kill('SIGINT');
    setTimeout(() => node.exitCode === null && node.kill('SIGKILL'), 10_000).unref();
    fs.rmSync(base, { recursive: true, force: true });
  };
  return { node, log, url: `ws://127.0.0.1:${port}`, http: `http://127.0.0.1:${port}`, stop };
}

/** 16 deterministic 784-byte inputs and the outputs `smartvm run` gives for them. */
function inputs() {
  const out = [];
  for (let i = 0; i < 16; i++) {
    const input = Buffer.from(Array.from({ length: 784 }, (_, j) => ((j * 31 + i * 97 + ((j * j) >> 3)) % 256) ^ 0x80));
    const file = path.join(os.tmpdir(), `smartvm-flood-${process.pid}-${i}.bin`);
    fs.writeFileSync(file, input);
    const run = JSON.parse(execFileSync(CLI, ['run', path.join(DEMO, 'program.smvm'), '--weights',
      path.join(DEMO, 'weights.smw'), '--input', file, '--json'], { encoding: 'utf8' }));
    fs.rmSync(file);
    out.push({ input, output: run.output });
  }
  return out;
}

/** The validator-expensive program: 1,000 PUSHes, 250,000 JUMPDESTs, a jump back one word lower. */
function craftedProgram(program) {
  const code = [];
  for (let i = 0; i < 1000; i++) code.push(0x60, 1);
  const run = code.length;
  for (let i = 0; i < 250_000; i++) code.push(0x5b);
  code.push(0x50, 0x63);
  const dest = Buffer.alloc(8);
  dest.writeBigUInt64LE(BigInt(run));
  code.push(...dest, 0x57);
  // Keep the demo container's header (magic, version, shapes); replace the code, drop the manifest.
  return encodeContainer(program, Buffer.from(code));
}

/** Re-encodes a container with new code and no blocks (layout as primitives/isa/src/program.rs). */
function encodeContainer(program, code) {
  const header = program.subarray(0, 4 + 1 + 16 + 4); // magic, version, C D H W, output_len
  const len = Buffer.alloc(4);
  len.writeUInt32LE(code.length);
  const blocks = Buffer.alloc(4);
  return Buffer.concat([header, len, code, blocks]);
}

function pickKind(i) {
  const r = (i * 7919) % 100;
  if (r < 70) return 'valid';
  if (r < 78) return 'wrongLength';
  if (r < 86) return 'outOfGas';
  return 'malformed';
}

async function main() {
  for (const bin of [NODE, CLI]) assert.ok(fs.existsSync(bin), `${bin} missing: run make build-node build`);
  assert.ok(ACCOUNTS >= 1 && ACCOUNTS <= SENDERS.length, `FLOOD_ACCOUNTS between 1 and ${SENDERS.length}`);
  const samples = inputs();
  const chain = await startNode();
  const rss = { start: rssMiB(chain.node.pid), peak: 0, samples: [] };
  const sampler = setInterval(() => {
    const v = rssMiB(chain.node.pid);
    rss.peak = Math.max(rss.peak, v);
    rss.samples.push(Math.round(v));
  }, 1000);
  const api = await ApiPromise.create({ provider: new WsProvider(chain.url), noInitWarn: true });
  try {
    const keyring = new Keyring({ type: 'sr25519' });
    const senders = SENDERS.slice(0, ACCOUNTS).map((s) => keyring.addFromUri(s));
    const attacker = keyring.addFromUri(OVERSIZE_SENDER);
    const program = Buffer.from((await api.query.smartvm.programs(0)).unwrap().toU8a(true));
    const crafted = craftedProgram(program);
    const maxInput = api.consts.smartvm.maxInputLen.toNumber();

    // A weight limit twice what LeNet-5 uses (the dry run says), so blocks hold many.
    const probe = await api.call.smartvmApi.infer(0, hex(samples[0].input), { refTime: 50_000_000_000n, proofSize: 1_000_000n });
    assert.ok(probe.isOk, `dry run: ${probe}`);
    const used = probe.asOk.weightUsed;
    const limit = { refTime: used.refTime.toBigInt() * 2n, proofSize: used.proofSize.toBigInt() * 2n };

    // Build and sign everything first, nonces in order per sender, immortal (era 0).
    const start = (await api.rpc.chain.getHeader()).number.toNumber();
    const nonces = await Promise.all(senders.map(async (s) => (await api.rpc.system.accountNextIndex(s.address)).toNumber()));
    const sent = new Map(); // hash -> { kind, sample }
    const signed = [];
    const craftedEvery = Math.floor(TOTAL / CRAFTED);
    for (let i = 0; i < TOTAL; i++) {
      const s = i % senders.length;
      let kind = pickKind(i);
      let tx;
      const sample = i % samples.length;
      if (i % craftedEvery === craftedEvery - 1) kind = 'crafted';
      switch (kind) {
        case 'valid': tx = api.tx.smartvm.infer(0, hex(samples[sample].input), limit); break;
        case 'wrongLength': tx = api.tx.smartvm.infer(0, hex(Buffer.alloc(100 + (i % 600), i & 0xff)), limit); break;
        case 'outOfGas': tx = api.tx.smartvm.infer(0, hex(samples[sample].input), { refTime: 1_000_000n, proofSize: limit.proofSize }); break;
        case 'crafted': tx = api.tx.smartvm.createModel(hex(crafted)); break;
        default: {
          const junk = Buffer.from(Array.from({ length: 64 + ((i * 37) % 960) }, (_, j) => (i * 131 + j * 17) & 0xff));
          tx = api.tx.smartvm.createModel(hex(junk));
        }
      }
      const ex = await tx.signAsync(senders[s], { nonce: nonces[s]++, era: 0 });
      signed.push(ex);
      sent.set(ex.hash.toHex(), { kind, sample });
    }

    // When each block was announced (its timestamp is slot time in dev mode, not wall time).
    const arrived = new Map();
    const unsubscribe = await api.rpc.chain.subscribeNewHeads((h) => arrived.set(h.number.toNumber(), Date.now()));

    // Follow the chain: every block's extrinsics and what happened to each.
    const seen = new Map(); // hash -> { block, ok, error, fee, output }
    const blocks = [];
    let followed = start;
    const follow = async (upTo) => {
      while (followed < upTo) {
        followed += 1;
        const hash = await api.rpc.chain.getBlockHash(followed);
        const [block, events] = await Promise.all([api.rpc.chain.getBlock(hash), api.query.system.events.at(hash)]);
        const entry = { number: followed, ours: 0, time: arrived.get(followed) ?? Date.now() };
        blocks.push(entry);
        block.block.extrinsics.forEach((ex, index) => {
          const key = ex.hash.toHex();
          if (!sent.has(key)) return;
          entry.ours += 1;
          const mine = events.filter((e) => e.phase.isApplyExtrinsic && e.phase.asApplyExtrinsic.toNumber() === index).map((e) => e.event);
          const failed = mine.find((e) => e.section === 'system' && e.method === 'ExtrinsicFailed');
          let error = null;
          if (failed) {
            const err = failed.data.dispatchError;
            error = err.isModule ? api.registry.findMetaError(err.asModule).name : err.type;
          }
          const fee = mine.find((e) => e.section === 'transactionPayment' && e.method === 'TransactionFeePaid');
          const inferred = mine.find((e) => e.section === 'smartvm' && e.method === 'Inferred');
          seen.set(key, {
            block: followed,
            time: entry.time,
            ok: !failed,
            error,
            fee: fee ? fee.data.actualFee.toBigInt() : 0n,
            output: inferred ? Array.from(inferred.data.output.toU8a(true)).map((b) => (b << 24) >> 24) : null,
          });
        });
      }
    };

    // Send everything at once over a few connections' worth of concurrency.
    const t0 = Date.now();
    const refused = { oversized: 0, oversizedError: null, other: [] };
    const queue = signed.slice();
    const workers = Array.from({ length: 16 }, async () => {
      while (queue.length) {
        const ex = queue.shift();
        sent.get(ex.hash.toHex()).submitted = Date.now();
        try {
          await api.rpc.author.submitExtrinsic(ex);
        } catch (e) {
          refused.other.push(`${sent.get(ex.hash.toHex()).kind}: ${e.message}`);
        }
      }
    });
    // The oversized inputs, refused at the pool (they never decode): sent over plain HTTP
    // JSON-RPC so the refusals are counted here, not logged by polkadot.js.
    const attackerNonce = (await api.rpc.system.accountNextIndex(attacker.address)).toNumber();
    for (let i = 0; i < OVERSIZED; i++) {
      const tx = api.tx.smartvm.infer(0, hex(Buffer.alloc(maxInput + 1 + i * 1000, 7)), limit);
      const ex = await tx.signAsync(attacker, { nonce: attackerNonce, era: 0 });
      const res = await (await fetch(chain.http, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ id: 1, jsonrpc: '2.0', method: 'author_submitExtrinsic', params: [ex.toHex()] }),
      })).json();
      if (res.error) {
        refused.oversized += 1;
        refused.oversizedError = `${res.error.code}: ${res.error.message}`;
      }
    }
    await Promise.all(workers);
    const submittedIn = Date.now() - t0;

    // Wait until every accepted extrinsic is in a block, or the deadline.
    while (seen.size < TOTAL - refused.other.length && remaining() > 0) {
      await new Promise((r) => setTimeout(r, 2000));
      await follow((await api.rpc.chain.getHeader()).number.toNumber());
    }
    const allIn = Date.now() - t0;
    // Three more blocks: the chain keeps going after the flood.
    const after = (await api.rpc.chain.getHeader()).number.toNumber();
    while ((await api.rpc.chain.getHeader()).number.toNumber() < after + 3 && remaining() > 0) {
      await new Promise((r) => setTimeout(r, 1000));
    }
    const end = (await api.rpc.chain.getHeader()).number.toNumber();
    await follow(end);
    unsubscribe();
    clearInterval(sampler);

    // Tally and check.
    const byKind = {};
    let wrongOutputs = 0;
    let unpaidFailures = 0;
    for (const [hash, { kind, sample }] of sent) {
      const k = (byKind[kind] ??= { sent: 0, included: 0, succeeded: 0, errors: {} });
      k.sent += 1;
      const r = seen.get(hash);
      if (!r) continue;
      k.included += 1;
      if (r.ok) k.succeeded += 1;
      else k.errors[r.error] = (k.errors[r.error] || 0) + 1;
      if (!r.ok && r.fee === 0n) unpaidFailures += 1;
      if (kind === 'valid' && JSON.stringify(r.output) !== JSON.stringify(samples[sample].output)) wrongOutputs += 1;
    }
    const span = blocks.filter((b) => b.ours > 0);
    const latencies = [...sent.entries()].filter(([h]) => seen.has(h))
      .map(([h, t]) => (seen.get(h).time - t.submitted) / 1000).sort((a, b) => a - b);
    // Block intervals while the flood was in the pool: from the first block with its extrinsics.
    const quantile = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))];
    const intervals = span.slice(1).map((b, i) => (b.time - span[i].time) / 1000);
    const cpu = fs.readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? 'unknown';
    const report = {
      cpu,
      node: path.basename(path.dirname(NODE)) + '/' + path.basename(NODE),
      accounts: ACCOUNTS,
      transactions: TOTAL,
      oversized: { sent: OVERSIZED, refused: refused.oversized, error: refused.oversizedError?.slice(0, 160) },
      refused_other: refused.other.length,
      submit_seconds: submittedIn / 1000,
      all_included_seconds: allIn / 1000,
      blocks: end - start,
      blocks_with_flood_extrinsics: span.length,
      flood_extrinsics_per_block: span.map((b) => b.ours),
      block_interval_seconds: { max: Math.max(...intervals), mean: intervals.reduce((a, b) => a + b, 0) / intervals.length },
      inclusion_latency_seconds: { p50: quantile(0.5), p95: quantile(0.95), max: latencies[latencies.length - 1] },
      inclusion_rate: seen.size / TOTAL,
      valid_infers: byKind.valid,
      by_kind: byKind,
      wrong_outputs: wrongOutputs,
      failed_without_fee: unpaidFailures,
      infer_weight_limit: { ref_time: limit.refTime.toString(), proof_size: limit.proofSize.toString() },
      node_rss_mib: { start: Math.round(rss.start), peak: Math.round(rss.peak), end: Math.round(rssMiB(chain.node.pid)) },
    };
    fs.mkdirSync(path.dirname(REPORT), { recursive: true });
    fs.writeFileSync(REPORT, JSON.stringify(report, null, 2));
    const nodeLog = path.join(path.dirname(REPORT), 'node.log');
    fs.writeFileSync(nodeLog, chain.log.join(''));
    console.log(JSON.stringify(report, null, 2));
    console.log(`report written to ${REPORT}, the node's log to ${nodeLog}`);

    assert.deepEqual(refused.other, [], 'every well-formed transaction is accepted by the pool');
    assert.equal(refused.oversized, OVERSIZED, 'every oversized input is refused at the pool');
    assert.equal(byKind.valid.included, byKind.valid.sent, 'every valid infer is included');
    assert.equal(byKind.valid.succeeded, byKind.valid.sent, 'every valid infer succeeds');
    assert.equal(wrongOutputs, 0, 'every valid infer gives the output smartvm run computes');
    assert.equal(seen.size, TOTAL, 'every transaction is included');
    for (const kind of ['wrongLength', 'outOfGas', 'malformed', 'crafted']) {
      assert.equal(byKind[kind].succeeded, 0, `no ${kind} transaction succeeds`);
    }
    assert.equal(unpaidFailures, 0, 'every failed transaction paid a fee');
    assert.ok(end - after >= 3, 'the chain keeps producing blocks after the flood');
    assert.ok(rss.peak < MAX_RSS_MIB, `node memory peaked at ${Math.round(rss.peak)} MiB`);
    console.log(`flood: ${TOTAL} transactions from ${ACCOUNTS} accounts, all included in ${allIn / 1000} s over ${end - start} blocks; peak node RSS ${Math.round(rss.peak)} MiB`);
    console.log('1 passed, 0 failed');
  } finally {
    clearInterval(sampler);
    await api.disconnect();
    chain.stop();
  }
}

main().catch((e) => {
  console.error(e);
  console.log('0 passed, 1 failed');
  process.exit(1);
});
