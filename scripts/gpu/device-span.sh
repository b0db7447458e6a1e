#!/usr/bin/env bash
# Runs on the device machine (from the repo root, with .gpu carried; see scripts/gpu/build.sh):
# the GPU-resident span path (model/gpu/) on webgpu: parity on stories260k and tiny-llama-gqa,
# then random 200M decode for the GPU path, the per-block webgpu path
# (PETAL_WEBGPU_PER_BLOCK=1) and cpu, in one call. Results: $OUT/results.jsonl.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
R="$OUT/results.jsonl"
say () { echo "== $*" | tee -a "$OUT/run.log"; }
source scripts/gpu/device-setup.sh
M=(--model stories260k=models/stories260k --model tiny-llama-gqa=.gpu/tiny-llama-gqa)
say parity webgpu gpu-span
timeout 120 $N $G parity --device webgpu "${M[@]}" --label gpu-span 2>>"$OUT/err.log" | tee -a "$R"
tail -5 "$OUT/err.log"
say write random 200M
timeout 120 $N $G write-random --out /tmp/random-200m --size 200M --tokenizer-from models/stories260k | tee -a "$R"
B=(--dir /tmp/random-200m --name random-200m)
say bench webgpu gpu-span
timeout 150 $N $G bench --device webgpu "${B[@]}" --label gpu-span 2>>"$OUT/err.log" | tee -a "$R"
tail -5 "$OUT/err.log"
say bench webgpu per-block
PETAL_WEBGPU_PER_BLOCK=1 timeout 150 $N $G bench --device webgpu "${B[@]}" --label per-block 2>>"$OUT/err.log" | tee -a "$R"
say bench cpu
timeout 120 $N $G bench --device cpu "${B[@]}" --label cpu 2>>"$OUT/err.log" | tee -a "$R"
say done
