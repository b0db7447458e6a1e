#!/usr/bin/env bash
# Runs on the device machine (from the repo root, with .gpu carried; see scripts/gpu/build.sh):
# real swarms of three `petal-node serve --device webgpu` processes (the bundled CLI) on
# 127.0.0.1. stories260k (greedy through the swarm client-mediated, push and pipelined with the
# draft, against reference.json; local vs swarm speed) and tiny-llama-gqa (greedy parity) on
# webgpu; random 200M local vs swarm speed on webgpu and, as the baseline, cpu on the same
# host. Results: $OUT/results.jsonl; status tables and logs in $OUT/err.log.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
R="$OUT/results.jsonl"
say () { echo "== $*" | tee -a "$OUT/run.log" "$OUT/err.log"; }
source scripts/gpu/device-setup.sh
export PETAL_NODE_CLI=$PWD/.gpu/petal-node.mjs
S=.gpu/swarm-check.mjs
say webgpu swarm stories260k
timeout 180 $N $S --model models/stories260k --device webgpu --draft models/stories260k-draft --speed 2>>"$OUT/err.log" | tee -a "$R"
say webgpu swarm tiny-llama-gqa
timeout 120 $N $S --model .gpu/tiny-llama-gqa --device webgpu 2>>"$OUT/err.log" | tee -a "$R"
say write random 200M
timeout 120 $N $G write-random --out /tmp/random-200m --size 200M --tokenizer-from models/stories260k | tee -a "$R"
for d in webgpu cpu; do
  say $d swarm random-200m
  timeout 200 $N $S --model /tmp/random-200m --device $d --speed --tokens 48 2>>"$OUT/err.log" | tee -a "$R"
done
tail -40 "$OUT/err.log"
say done
