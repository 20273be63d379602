# SmartVM on Substrate — the two commands are `make run` and `make test`.
# Builds go to a cache outside the clone so CI and later runs reuse them.
CARGO_TARGET_DIR ?= $(HOME)/.cache/smartvm/target
export CARGO_TARGET_DIR
SMARTVM := $(CARGO_TARGET_DIR)/release/smartvm
LENET := examples/lenet5

.PHONY: run demo e2e build-node test setup build golden fixtures zoo zoo-fidelity suite demo-model lint fmt bench native-vs-ort fuzz flood relay zombienet weights evaluation
FIXTURES ?= $(HOME)/.cache/smartvm/fixtures
export SMARTVM_FIXTURES := $(FIXTURES)

## Node build profile: the dev profile keeps one build for `make run` and `make test`.
NODE_PROFILE ?= debug
NODE := $(CARGO_TARGET_DIR)/$(NODE_PROFILE)/smartvm-node
NODE_FLAGS := $(if $(filter release,$(NODE_PROFILE)),--release,)
RPC_PORT ?= 9944
## Where scripts/install-relay.sh puts polkadot and its workers (zombienet needs them).
RELAY_BIN ?= $(HOME)/.cache/smartvm/relay/bin

## Build the node, start the dev chain (the Fashion-MNIST LeNet-5 is model 0) and say how to
## reach it; Ctrl-C stops it. Its database survives restarts (one folder per genesis under
## DEV_DATA); FRESH=1 starts this genesis over.
DEV_DATA ?= $(HOME)/.cache/smartvm/dev-chain
FRESH ?= 0
run: setup build-node
	@echo "== SmartVM dev chain: one node, a block every 3 s, database kept in $(DEV_DATA) (FRESH=1 starts over)"
	@echo "   RPC:             ws://127.0.0.1:$(RPC_PORT)"
	@echo "   polkadot.js:     https://polkadot.js.org/apps/?rpc=ws%3A%2F%2F127.0.0.1%3A$(RPC_PORT)#/extrinsics"
	@echo "   try:             smartvm.infer(0, <784 bytes: pixel - 128>, {refTime: 50000000000, proofSize: 1000000})"
	@echo "   or from a shell: make build; $(SMARTVM) infer --url ws://127.0.0.1:$(RPC_PORT) --input image.bin [--dry-run]"
	@echo "   bigger models:   $(SMARTVM) deploy DIR --url ws://127.0.0.1:$(RPC_PORT); $(SMARTVM) infer --model N ... runs a job across blocks when one block cannot hold it"
	@echo "   Ctrl-C stops the node."
	exec env SMARTVM_DEV_DATA=$(DEV_DATA) SMARTVM_FRESH=$(FRESH) bash scripts/dev-chain.sh $(NODE) \
	  --rpc-port $(RPC_PORT) --rpc-cors all --pool-type single-state

build-node:
	cargo build $(NODE_FLAGS) -p smartvm-node

## The off-chain demos: the trained Fashion-MNIST LeNet-5 compiled from ONNX and evaluated on
## the 10k test images, then LeNet-5 with CNN instructions against the plain base set.
FMNIST := /usr/share/datasets/fashion-mnist
demo: setup build
	@echo "== compile models/lenet5-fashion/lenet5_fashion.onnx (int8, calibrated on 512 training images)"
	$(SMARTVM) compile models/lenet5-fashion/lenet5_fashion.onnx --input-shape 1,1,28,28 \
	  --calibration $(FMNIST)/train-images-idx3-ubyte.gz --calibration-count 512 -o $(HOME)/.cache/smartvm/lenet5-fashion
	@echo "== accuracy on the Fashion-MNIST test set: integer program vs the float model"
	$(SMARTVM) eval $(HOME)/.cache/smartvm/lenet5-fashion --images $(FMNIST)/t10k-images-idx3-ubyte.gz \
	  --labels $(FMNIST)/t10k-labels-idx1-ubyte.gz --model models/lenet5-fashion/lenet5_fashion.onnx
	@for i in 0 1; do \
	  echo "== LeNet-5 example, sample input $$i (CNN instructions, native kernels)"; \
	  $(SMARTVM) run $(LENET)/lenet5.sasm --weights $(LENET)/weights.smw --input $(LENET)/inputs.bin --index $$i; \
	done
	@echo "== the same network with CNN instructions and with the base set only"
	$(SMARTVM) bench --dir $(LENET) --iterations 500

## polkadot.js against a dev node the test starts and stops.
e2e: setup build build-node
	cd tests/e2e && SMARTVM_NODE=$(NODE) SMARTVM_CLI=$(SMARTVM) node --test --test-concurrency=1 e2e.test.mjs restart.test.mjs

## Install what is missing and run every test.
test: setup fixtures zoo
	@echo "== workspace tests (the node binary is built by make run, not here)"
	cargo test --workspace --exclude smartvm-node
	@echo "== which SIMD tiles this CPU ran: GEMM tiles against their definitions, whole kernels against the reference"
	cargo test -q -p smartvm-kernels --lib -- --nocapture every_tile_this_cpu_runs every_quad_kernel_here
	cargo test -q -p smartvm-kernels --test cross_backend -- --nocapture the_suites_run_every_tile
	@echo "== pallet benchmarks, run once each as tests on the mock runtime"
	cargo test -p pallet-smartvm --features runtime-benchmarks benchmarking
	@echo "== no_std: the VM builds for wasm32 as the runtime will use it"
	cargo build -p smartvm-vm --no-default-features --target wasm32-unknown-unknown
	@echo "== the host crate's validator-side swap compiles as the runtime sees it (cfg substrate_runtime)"
	RUSTFLAGS="--cfg substrate_runtime" CARGO_TARGET_DIR=$(CARGO_TARGET_DIR)-wasmcheck \
	  cargo build -p smartvm-host --no-default-features --target wasm32-unknown-unknown
	@bash tests/golden/check.sh
	@echo "== CUDA backend: builds without CUDA; on a GPU it must match the reference, else one SKIPPED line each"
	cargo test -p smartvm-kernels --features cuda --test cuda --test golden -- --nocapture --test-threads 1
	cargo test -p smartvm-host --features cuda --test gpu_dispatch -- --nocapture
	@$(MAKE) --no-print-directory zoo-fidelity ZOO_COUNT=10
	@bash tests/demo_model/check.sh
	@echo "== end to end: polkadot.js against a dev node this suite starts and stops"
	@$(MAKE) --no-print-directory e2e
	@if [ -x $(RELAY_BIN)/polkadot ] && [ -x $(RELAY_BIN)/polkadot-prepare-worker ] && [ -x $(RELAY_BIN)/polkadot-execute-worker ]; then \
	  $(MAKE) --no-print-directory zombienet; \
	else \
	  echo "SKIPPED: zombienet (no relay binaries in $(RELAY_BIN); install them with: make relay, two hours or more on 2 cores, then make zombienet)"; \
	fi

setup:
	@bash scripts/setup.sh

## ONNX test fixtures (seeded, onnx + numpy only) into the fixture cache.
fixtures: setup
	@python3 tests/fixtures/make_onnx_fixtures.py $(FIXTURES)

build:
	cargo build --release -p smartvm-cli

## The paper's zoo (AlexNet, ResNet-18, MobileNetV2; torchvision shapes, seeded) as ONNX, with
## 108 inputs, into the fixture cache (onnx + numpy only; skipped when already there).
ZOO := $(FIXTURES)/zoo
zoo: setup
	@test -f $(ZOO)/stamp-2 || python3 tests/fixtures/make_zoo.py $(ZOO)

## Compile each zoo model and compare it with the float model (tract) on ZOO_COUNT inputs.
ZOO_COUNT ?= 100
zoo-fidelity: zoo fixtures build
	@for m in alexnet resnet18 mobilenetv2; do \
	  $(SMARTVM) fidelity $(ZOO)/$$m.onnx --inputs $(ZOO)/imagenet_inputs.npy --input-shape 1,3,224,224 \
	    --count $(ZOO_COUNT) --min-sqnr 18 --min-agreement 0.8 || exit 1; \
	done
	$(SMARTVM) fidelity $(FIXTURES)/lstm.onnx --inputs $(FIXTURES)/lstm_inputs.npy --input-shape 1,784 \
	  --count $(ZOO_COUNT) --min-sqnr 18 --min-agreement 0.8

## The public suite of real exports (onnx light models, torchvision via PyTorch): each compiled
## and compared with its float model into docs/suite.md (offline, heavy; SUITE_COUNT inputs).
suite: setup build
	@SMARTVM=$(SMARTVM) FIXTURES=$(FIXTURES) bash scripts/suite.sh

## Recompile the dev chain's demo model (committed under models/lenet5-fashion/compiled).
demo-model: setup build
	$(SMARTVM) compile models/lenet5-fashion/lenet5_fashion.onnx --input-shape 1,1,28,28 \
	  --calibration $(FMNIST)/train-images-idx3-ubyte.gz --calibration-count 512 -o models/lenet5-fashion/compiled

## Regenerate the golden vectors and LeNet-5 fixtures (numpy) and check they are unchanged.
golden: setup
	@bash tests/golden/check.sh

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p pallet-smartvm --all-targets --features runtime-benchmarks -- -D warnings
	cargo clippy -p smartvm-kernels -p smartvm-host --all-targets --features smartvm-kernels/cuda,smartvm-host/cuda -- -D warnings
	SKIP_WASM_BUILD=1 cargo clippy -p smartvm-node --features collator -- -D warnings

fmt:
	cargo fmt --all

## Criterion benchmark of LeNet-5 both ways, then the ratio table.
## SmartVM's native kernels against ONNX Runtime, interleaved rounds on this machine (TILE=avx2
## forces a tile; about a minute a round once the models are compiled).
native-vs-ort: zoo fixtures build
	bash scripts/native-vs-ort.sh $(SMARTVM)

bench: setup build
	cargo bench -p smartvm-vm --bench lenet5
	cargo bench -p smartvm-kernels --features cuda --bench layers
	$(SMARTVM) bench --dir $(LENET)
	cargo bench -p pallet-smartvm --bench weight_fetch

## The paper's evaluation (section 4) measured on this machine in one run: docs/evaluation/
## report.md, results.json and SVG plots, with ONNX Runtime anchors, the block-versus-per-weight
## storage benchmark and a dev node (on chain versus off chain) from the same run.
EVAL_DIR ?= docs/evaluation
EVAL_TMP := $(HOME)/.cache/smartvm/evaluation
evaluation: setup fixtures zoo build build-node
	@mkdir -p $(EVAL_TMP)
	cargo bench -p pallet-smartvm --bench weight_fetch | tee $(EVAL_TMP)/weight_fetch.txt
	$$(bash scripts/install-torch.sh) scripts/ort_anchors.py $(EVAL_TMP)/anchors.json \
	  LeNet-5=models/lenet5-fashion/lenet5_fashion.onnx:$(FMNIST)/t10k-images-idx3-ubyte.gz:1,1,28,28 \
	  AlexNet=$(ZOO)/alexnet.onnx:$(ZOO)/imagenet_inputs.npy:1,3,224,224 \
	  ResNet-18=$(ZOO)/resnet18.onnx:$(ZOO)/imagenet_inputs.npy:1,3,224,224 \
	  MobileNetV2=$(ZOO)/mobilenetv2.onnx:$(ZOO)/imagenet_inputs.npy:1,3,224,224 \
	  LSTM=$(FIXTURES)/lstm.onnx:$(FIXTURES)/lstm_inputs.npy:1,784
	bash scripts/evaluation.sh $(NODE) $(SMARTVM) $(EVAL_DIR) $(EVAL_TMP)/anchors.json \
	  $(EVAL_TMP)/weight_fetch.txt $(FMNIST)

## Run the fuzzers (structured kernels, pallet call sequences, raw bytecode) for FUZZ_SECONDS
## each (default 300); FUZZ_RUNS=N stops each after N executions; FUZZ_TARGETS picks some.
fuzz: setup
	bash scripts/fuzz.sh $(or $(FUZZ_SECONDS),300) $(FUZZ_TARGETS)

## Flood a dev node on loopback with FLOOD_TX (default 2400) transactions from FLOOD_ACCOUNTS
## (default 8) accounts: valid infers and hostile ones; prints and saves a report.
flood: setup build build-node
	cd tests/e2e && SMARTVM_NODE=$(NODE) SMARTVM_CLI=$(SMARTVM) node flood.mjs

## Build the relay-chain binaries for zombienet into the cache (long, resumable).
relay:
	bash scripts/install-relay.sh

## The runtime's weights for pallet-smartvm (runtime/src/weights/), from its frame-benchmarking
## benchmarks run in the runtime's wasm by `smartvm-node benchmark pallet` (collator build).
weights: setup
	bash scripts/bench-weights.sh

## A relay chain (rococo-local, two stock polkadot validators) with two SmartVM collators,
## spawned by zombienet-sdk from zombienet/network.toml: the parachain produces blocks the relay
## finalizes, an infer transaction is finalized equal to smartvm run, a collator restart is survived.
zombienet: setup build
	@test -x $(RELAY_BIN)/polkadot || { echo "no relay binaries in $(RELAY_BIN): run make relay first"; exit 1; }
	cargo build -p smartvm-node --features collator
	cd zombienet && CARGO_TARGET_DIR=$(CARGO_TARGET_DIR)-zombienet SMARTVM_RELAY_BIN=$(RELAY_BIN) \
	  SMARTVM_NODE=$(CARGO_TARGET_DIR)/debug/smartvm-node SMARTVM_CLI=$(SMARTVM) \
	  cargo test --locked -- --ignored --nocapture
