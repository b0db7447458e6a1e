#!/usr/bin/env bash
# Runs on the device machine (repo root, .gpu carried; see scripts/gpu/build.sh): the GPU checks
# of a change to the GPU span path in one call. scripts/gpu/device-batching.sh (parity, batched
# decode, bench-batching), then a webgpu swarm of stories260k with float32 blocks
# (client-mediated, push, pipelined, and every prompt four times at once) and with int4 blocks
# (against a local int4 model on webgpu). Results: $OUT/batching/ and $OUT/swarm/.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT/batching" "$OUT/swarm"
OUT=$OUT/batching ROUNDS=${ROUNDS:-1} bash scripts/gpu/device-batching.sh > "$OUT/batching/stdout.log" 2>&1
source scripts/gpu/device-setup.sh > /dev/null
export PETAL_NODE_CLI=$PWD/.gpu/petal-node.mjs
R="$OUT/swarm/results.jsonl"
timeout 180 $N .gpu/swarm-check.mjs --model models/stories260k --device webgpu --draft models/stories260k-draft 2>>"$OUT/swarm/err.log" | tee -a "$R"
timeout 180 $N .gpu/swarm-check.mjs --model models/stories260k --device webgpu --quantize int4 2>>"$OUT/swarm/err.log" | tee -a "$R"
tail -5 "$OUT/swarm/err.log"
