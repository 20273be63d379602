// End-to-end: polkadot.js against a SmartVM dev node this test starts (instant seal, the
// single-state transaction pool, temporary database, a free port) and always stops. The
// fork-aware pool may validate against a view one block behind the header a client just signed
// with, which on a young instantly-sealed chain reads as "ancient birth block". Checks on-chain inference against the off-chain
// `smartvm run`, the fee refund, the read-only runtime API, deployment by extrinsics, council
// governance of weights, and that bad input is refused while the chain keeps going.
//
//   SMARTVM_NODE=… SMARTVM_CLI=… node --test e2e.test.mjs      (make e2e sets both)

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';

import { ApiPromise, Keyring, WsProvider } from '@polkadot/api';

import { freePort } from './support.mjs';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const TARGET = process.env.CARGO_TARGET_DIR || path.join(os.homedir(), '.cache/smartvm/target');
const NODE = process.env.SMARTVM_NODE || path.join(TARGET, 'release/smartvm-node');
const CLI = process.env.SMARTVM_CLI || path.join(TARGET, 'release/smartvm');
const DEMO = path.join(ROOT, 'models/lenet5-fashion/compiled');
const FMNIST = '/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz';
const LIMIT = { refTime: 50_000_000_000n, proofSize: 1_000_000n };

let node;
let api;
let alice;
let bob;
let url;
const log = [];

async function waitForRpc(url, ms) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (node.exitCode !== null) throw new Error(`node exited (${node.exitCode}):\n${log.join('')}`);
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ id: 1, jsonrpc: '2.0', method: 'system_health', params: [] }),
      });
      if (res.ok) return;
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`node did not serve RPC within ${ms} ms:\n${log.join('')}`);
}

function stopNode() {
  if (node && node.exitCode === null) {
    node.kill('SIGINT');
    setTimeout(() => node.exitCode === null && node.kill('SIGKILL'), 5000).unref();
  }
}
process.on('exit', stopNode);

/** Signs, sends and resolves once in a block, with the events of this extrinsic. */
function submit(tx, signer) {
  return new Promise((resolve, reject) => {
    let unsub;
    tx.signAndSend(signer, (result) => {
      if (result.status.isInBlock || result.status.isFinalized) {
        if (unsub) unsub();
        resolve(result);
      } else if (result.isError) {
        if (unsub) unsub();
        reject(new Error(`extrinsic ${result.status.type}`));
      }
    }).then((u) => { unsub = u; }, reject);
  });
}

function event(result, section, method) {
  return result.events.map((r) => r.event).find((e) => e.section === section && e.method === method);
}

const names = (result) => result.events.map(({ event: e }) => `${e.section}.${e.method}`).join(', ');

function moduleError(result) {
  const failed = event(result, 'system', 'ExtrinsicFailed');
  if (!failed) return null;
  const err = failed.data.dispatchError;
  if (err.isModule) {
    const meta = api.registry.findMetaError(err.asModule);
    return `${meta.section}.${meta.name}`;
  }
  return err.type;
}

/** Fashion-MNIST test images (raw pixels), or seeded synthetic ones without the dataset. */
function images(count) {
  if (fs.existsSync(FMNIST)) {
    const raw = zlib.gunzipSync(fs.readFileSync(FMNIST));
    return Array.from({ length: count }, (_, i) => raw.subarray(16 + 784 * i, 16 + 784 * (i + 1)));
  }
  return Array.from({ length: count }, (_, i) => Buffer.from(Array.from({ length: 784 }, (_, j) => (j * 31 + i * 97) % 256)));
}

/** The program's input: pixel / 255 quantized with scale 1/255 and zero point -128. */
function quantize(pixels) {
  return Buffer.from(pixels.map((p) => p ^ 0x80));
}

function offChain(input, program = path.join(DEMO, 'program.smvm'), weights = path.join(DEMO, 'weights.smw')) {
  const file = path.join(os.tmpdir(), `smartvm-e2e-${process.pid}.bin`);
  fs.writeFileSync(file, input);
  const out = execFileSync(CLI, ['run', program, '--weights', weights, '--input', file, '--json']);
  return JSON.parse(out).output;
}

/** Runs the smartvm CLI and returns its standard output. */
function cli(args) {
  return execFileSync(CLI, args, { encoding: 'utf8', env: { ...process.env, RUST_BACKTRACE: '0' } });
}

function readPack(file) {
  const bytes = fs.readFileSync(file);
  assert.equal(bytes.subarray(0, 4).toString(), 'SMWP');
  const count = bytes.readUInt32LE(4);
  const blocks = [];
  let at = 8;
  for (let i = 0; i < count; i++) {
    const len = bytes.readUInt32LE(at);
    blocks.push(bytes.subarray(at + 4, at + 4 + len));
    at += 4 + len;
  }
  return blocks;
}

/** polkadot.js reads a Uint8Array given for `Bytes` as already length-prefixed; hex is raw. */
const hex = (bytes) => `0x${Buffer.from(bytes).toString('hex')}`;

const outputOf = (ev) => Array.from(ev.data.output.toU8a(true)).map((b) => (b << 24) >> 24);

before(async () => {
  for (const bin of [NODE, CLI]) assert.ok(fs.existsSync(bin), `${bin} missing: run make build-node`);
  const port = await freePort();
  const started = Date.now();
  node = spawn(NODE, ['--dev', '--instant-seal', '--pool-type', 'single-state', '--rpc-port', String(port), '--no-prometheus', '--no-telemetry'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  node.stdout.on('data', (d) => log.push(d.toString()));
  node.stderr.on('data', (d) => log.push(d.toString()));
  await waitForRpc(`http://127.0.0.1:${port}`, 600_000);
  console.log(`node served RPC after ${Date.now() - started} ms`);
  url = `ws://127.0.0.1:${port}`;
  api = await ApiPromise.create({ provider: new WsProvider(url), noInitWarn: true });
  const keyring = new Keyring({ type: 'sr25519' });
  alice = keyring.addFromUri('//Alice');
  bob = keyring.addFromUri('//Bob');
});

after(async () => {
  if (api) await api.disconnect();
  stopNode();
});

test('infer on chain equals smartvm run off chain, and unused weight is refunded', async () => {
  for (const pixels of images(3)) {
    const input = quantize(pixels);
    const tx = api.tx.smartvm.infer(0, hex(input), LIMIT);
    // What the fee would be for the whole declared weight limit (signed length included).
    const estimate = await tx.paymentInfo(alice);
    const t = Date.now();
    const result = await submit(tx, alice);
    const latency = Date.now() - t;
    const inferred = event(result, 'smartvm', 'Inferred');
    assert.ok(inferred, `no Inferred event; error ${moduleError(result)}`);
    const expected = offChain(input);
    assert.deepEqual(outputOf(inferred), expected);
    assert.equal(inferred.data.class.toNumber(), expected.indexOf(Math.max(...expected)));
    const used = inferred.data.weightUsed.refTime.toBigInt();
    assert.ok(used > 0n && used < LIMIT.refTime, `weight used ${used}`);
    const paid = event(result, 'transactionPayment', 'TransactionFeePaid').data.actualFee.toBigInt();
    assert.ok(paid < estimate.partialFee.toBigInt(), `fee ${paid} was not reduced from ${estimate.partialFee}`);
    console.log(`infer: class ${inferred.data.class}, weight ${used}, fee ${paid} (pre-dispatch ${estimate.partialFee}), client latency ${latency} ms`);
  }
});

test('the read-only runtime API gives the same output for free', async () => {
  const input = quantize(images(1)[0]);
  const res = await api.call.smartvmApi.infer(0, hex(input), LIMIT);
  assert.ok(res.isOk, `dry run failed: ${res}`);
  assert.deepEqual(Array.from(res.asOk.output.toU8a(true)).map((b) => (b << 24) >> 24), offChain(input));
  const info = await api.call.smartvmApi.model(0);
  assert.ok(info.isSome);
  assert.equal(info.unwrap().status.toString(), 'Sealed');
  // The relay validators' path (in-wasm kernels) gives the same bytes and meters the same gas.
  const wasm = await api.call.smartvmApi.inferWithWasmKernels(0, hex(input), LIMIT);
  assert.ok(wasm.isOk, `wasm-kernel dry run failed: ${wasm}`);
  assert.deepEqual(wasm.asOk.output.toU8a(true), res.asOk.output.toU8a(true));
  assert.equal(wasm.asOk.weightUsed.refTime.toString(), res.asOk.weightUsed.refTime.toString());
});

test('validators need no SmartVM host function: the in-wasm kernels answer alone, with the same bytes', () => {
  // bench-infer runs the genesis model in an executor holding only the standard host functions,
  // as a stock polkadot validator's, next to the node's own executor.
  const input = quantize(images(2)[1]);
  const file = path.join(os.tmpdir(), `smartvm-e2e-bench-${process.pid}.bin`);
  fs.writeFileSync(file, input);
  const report = JSON.parse(execFileSync(NODE, ['bench-infer', '--chain', 'dev', '--input', file, '--runs', '1', '--json'], {
    encoding: 'utf8', env: { ...process.env, RUST_LOG: 'error' },
  }));
  assert.equal(report.identical, true);
  assert.deepEqual(report.output, offChain(input));
  assert.deepEqual(report.wasm_output, report.output);
  assert.equal(report.host_call_traps_without_host_functions, true, 'the plain entry point needs the host functions');
  assert.ok(report.weight_ref_time_ps > 0);
  assert.ok(report.full_block_inferences > 0);
});

test('deploy from scratch, then a council motion updates a weight block; a plain account cannot', async () => {
  const program = fs.readFileSync(path.join(DEMO, 'program.smvm'));
  const blocks = readPack(path.join(DEMO, 'weights.smw'));
  const created = await submit(api.tx.smartvm.createModel(hex(program)), alice);
  const id = event(created, 'smartvm', 'ModelCreated').data.model.toNumber();
  for (const [index, block] of blocks.entries()) {
    assert.equal(moduleError(await submit(api.tx.smartvm.putWeightBlock(id, index, hex(block)), alice)), null);
  }
  assert.equal(moduleError(await submit(api.tx.smartvm.sealModel(id), alice)), null);
  const input = quantize(images(1)[0]);
  const before = (await api.call.smartvmApi.infer(id, hex(input), LIMIT)).asOk.output.toU8a(true);

  // Block 0 negated: same length, different weights.
  const changed = Buffer.from(blocks[0].map((b) => (-((b << 24) >> 24)) & 0xff));
  const update = api.tx.smartvm.updateWeightBlock(id, 0, hex(changed));
  assert.equal(moduleError(await submit(update, alice)), 'BadOrigin');

  const proposed = await submit(api.tx.council.propose(2, update, update.encodedLength), alice);
  const { proposalIndex, proposalHash } = event(proposed, 'council', 'Proposed').data;
  // The proposer's own vote is not implied: two of three members vote aye.
  for (const member of [alice, bob]) {
    assert.equal(moduleError(await submit(api.tx.council.vote(proposalHash, proposalIndex, true), member)), null);
  }
  const closed = await submit(
    api.tx.council.close(proposalHash, proposalIndex, { refTime: 10_000_000_000n, proofSize: 1_000_000n }, update.encodedLength),
    alice,
  );
  const executed = event(closed, 'council', 'Executed');
  assert.ok(executed, `motion not executed: ${moduleError(closed)}; events ${names(closed)}`);
  assert.ok(executed.data.result.isOk, `motion failed: ${executed.data.result}`);
  assert.ok(event(closed, 'smartvm', 'WeightsUpdated'), 'weights updated');
  const info = (await api.call.smartvmApi.model(id)).unwrap();
  assert.equal(info.version.toNumber(), 2);
  const after = (await api.call.smartvmApi.infer(id, hex(input), LIMIT)).asOk.output.toU8a(true);
  assert.notDeepEqual(Array.from(after), Array.from(before));
});

test('smartvm deploy resumes an interrupted upload, and smartvm infer matches smartvm run', async () => {
  // An interrupted deploy: the model exists as a draft with its first three blocks.
  const program = fs.readFileSync(path.join(DEMO, 'program.smvm'));
  const blocks = readPack(path.join(DEMO, 'weights.smw'));
  const created = await submit(api.tx.smartvm.createModel(hex(program)), alice);
  const id = event(created, 'smartvm', 'ModelCreated').data.model.toNumber();
  for (const index of [0, 1, 2]) {
    assert.equal(moduleError(await submit(api.tx.smartvm.putWeightBlock(id, index, hex(blocks[index])), alice)), null);
  }
  const deployed = cli(['deploy', DEMO, '--url', url, '--suri', '//Alice']);
  assert.match(deployed, new RegExp(`resuming draft model ${id}`));
  assert.match(deployed, new RegExp(`model ${id}: ${blocks.length} blocks \\(${blocks.length - 3} uploaded now\\)`));
  const info = (await api.call.smartvmApi.model(id)).unwrap();
  assert.equal(info.status.toString(), 'Sealed');

  const input = quantize(images(2)[1]);
  const file = path.join(os.tmpdir(), `smartvm-e2e-infer-${process.pid}.bin`);
  fs.writeFileSync(file, input);
  const expected = offChain(input);
  const paid = JSON.parse(cli(['infer', '--url', url, '--model', String(id), '--input', file, '--suri', '//Bob', '--json']));
  assert.deepEqual(paid.output, expected);
  assert.equal(paid.class, expected.indexOf(Math.max(...expected)));
  assert.ok(BigInt(paid.fee) > 0n);
  const dry = JSON.parse(cli(['infer', '--url', url, '--model', String(id), '--input', file, '--dry-run', '--json']));
  assert.deepEqual(dry.output, expected);
  assert.equal(dry.fee, null);
  assert.equal(dry.weight_used.ref_time, paid.weight_used.ref_time);
});

test('malformed input gets a clear error and the chain keeps producing blocks', async () => {
  const short = await submit(api.tx.smartvm.infer(0, hex(Buffer.alloc(100)), LIMIT), alice);
  assert.equal(moduleError(short), 'smartvm.WrongInputLength');
  await assert.rejects(api.rpc.author.submitExtrinsic('0x1234'));
  const height = (await api.rpc.chain.getHeader()).number.toNumber();
  const transfer = await submit(api.tx.balances.transferKeepAlive(bob.address, 1_000_000_000n), alice);
  assert.equal(moduleError(transfer), null);
  assert.ok((await api.rpc.chain.getHeader()).number.toNumber() > height);
});

test('a job spans blocks by itself: submitted, advanced by on_initialize, completed with the off-chain output', async () => {
  const input = quantize(images(3)[2]);
  const cost = await api.call.smartvmApi.cost(0, hex(input));
  assert.ok(cost.isOk, `cost failed: ${cost}`);
  assert.equal(cost.asOk.fitsOneBlock.isTrue, true, 'LeNet-5 fits one block');
  const limit = cost.asOk.jobWeightLimit;
  const free = (await api.query.system.account(bob.address)).data.free.toBigInt();
  const submitted = await submit(api.tx.smartvm.submitJob(0, hex(input), limit), bob);
  const queued = event(submitted, 'smartvm', 'JobSubmitted');
  assert.ok(queued, `no JobSubmitted; error ${moduleError(submitted)}`);
  const job = queued.data.job.toNumber();
  const held = (await api.query.system.account(bob.address)).data.reserved.toBigInt();
  assert.ok(held > 0n, 'the job prepays its weight limit');
  // This node seals a block per transaction: remarks make the blocks the job advances in.
  let ended;
  for (let i = 0; i < 10 && !ended; i++) {
    const block = await submit(api.tx.system.remark('0x00'), alice);
    const hash = block.status.isInBlock ? block.status.asInBlock : block.status.asFinalized;
    const events = await (await api.at(hash)).query.system.events();
    ended = events.map((r) => r.event).find((e) => e.section === 'smartvm'
      && (e.method === 'JobCompleted' || e.method === 'JobFailed') && e.data.job.toNumber() === job);
  }
  assert.ok(ended, 'the job ended within 10 blocks');
  assert.equal(ended.method, 'JobCompleted', `job failed: ${ended.data.error}`);
  assert.deepEqual(outputOf(ended), offChain(input));
  const record = (await api.query.smartvm.jobs(job)).unwrap();
  assert.ok(record.status.isDone);
  // The prepayment is settled: what stays held is the record's deposit, until the result goes.
  const deposit = record.deposit.toBigInt();
  let account = (await api.query.system.account(bob.address)).data;
  assert.equal(account.reserved.toBigInt(), deposit);
  const fee = ended.data.fee.toBigInt();
  assert.ok(fee > 0n && fee < limit.refTime.toBigInt());
  const submitFee = event(submitted, 'transactionPayment', 'TransactionFeePaid').data.actualFee.toBigInt();
  assert.equal(account.free.toBigInt(), free - submitFee - fee - deposit);
  // Only the owner clears the result, which releases the deposit.
  assert.equal(moduleError(await submit(api.tx.smartvm.clearJob(job), alice)), 'smartvm.NotOwner');
  const cleared = await submit(api.tx.smartvm.clearJob(job), bob);
  assert.equal(moduleError(cleared), null);
  assert.ok((await api.query.smartvm.jobs(job)).isNone);
  const clearFee = event(cleared, 'transactionPayment', 'TransactionFeePaid').data.actualFee.toBigInt();
  account = (await api.query.system.account(bob.address)).data;
  assert.equal(account.reserved.toBigInt(), 0n);
  assert.equal(account.free.toBigInt(), free - submitFee - fee - clearFee);
  console.log(`job ${job}: ${ended.data.slices} slice(s), weight ${ended.data.weightUsed.refTime}, fee ${fee}`);
});
