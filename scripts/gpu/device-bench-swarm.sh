#!/usr/bin/env bash
# Runs on the device machine (repo root, .gpu carried; see scripts/gpu/build.sh): bench:swarm,
# stories260k and a random 200M Llama (written once into .cache/models/random-200m), local
# against a 3-server loopback swarm on the CPU of a 16-core host, where the client and each
# server have cores of their own (the 2-core VM makes them take turns). RUNS runs (default 1).
# Results: $OUT/swarm${TAG}-<run>.jsonl.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
source scripts/gpu/device-setup.sh > /dev/null
export PETAL_NODE_CLI=$PWD/.gpu/petal-node.mjs
M=.cache/models/random-200m
[ -f "$M/config.json" ] || timeout 120 $N $G write-random --out "$M" --size 200M --tokenizer-from models/stories260k >> "$OUT/err.log"
for r in $(seq "${RUNS:-1}"); do
  echo "== run $r${TAG:-} $(date -u +%T)" | tee -a "$OUT/err.log"
  timeout "${LIMIT:-280}" $N .gpu/bench-swarm.mjs --models "stories260k,$PWD/$M" > "$OUT/swarm${TAG:-}-$r.jsonl" 2>>"$OUT/err.log"
  echo "exit $? $(date -u +%T)" | tee -a "$OUT/err.log"
done
