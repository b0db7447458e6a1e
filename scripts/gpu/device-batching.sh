#!/usr/bin/env bash
# Runs on the device machine (from the repo root, with .gpu carried; see scripts/gpu/build.sh):
# batched decode on the GPU span path. Parity on webgpu first (the lone-session graph), then
# random 200M: GpuSpanRunner.forwardPacked against the same steps one session after another
# (gpu-check pack), and bench-batching through in-process servers on webgpu (--max-batch 8
# against 1). Results: $OUT/results.jsonl.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
R="$OUT/results.jsonl"
say () { echo "== $*" | tee -a "$OUT/run.log"; }
source scripts/gpu/device-setup.sh
say parity webgpu
timeout 150 $N $G parity --device webgpu --model stories260k=models/stories260k --model tiny-llama-gqa=.gpu/tiny-llama-gqa 2>>"$OUT/err.log" | tee -a "$R"
say write random 200M
timeout 120 $N $G write-random --out /tmp/random-200m --size 200M --tokenizer-from models/stories260k | tee -a "$R"
say pack webgpu
timeout 200 $N $G pack --device webgpu --dir /tmp/random-200m --name random-200m --steps ${STEPS:-16} 2>>"$OUT/err.log" | tee -a "$R"
tail -5 "$OUT/err.log"
say bench-batching webgpu
timeout 240 $N .gpu/bench-batching.mjs --device webgpu --models random-200m=/tmp/random-200m,stories260k --sessions 1,2,4,8 --rounds ${ROUNDS:-3} 2>>"$OUT/err.log" | tee -a "$R"
tail -5 "$OUT/err.log"
say done
