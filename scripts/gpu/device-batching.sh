#!/usr/bin/env bash
# Runs on the device machine (from the repo root, with .gpu carried; see scripts/gpu/build.sh):
# batched decode on the GPU span path. Parity on webgpu first (the lone-session path), then
# random 200M: GpuSpanRunner.forwardPacked against the same steps one session after another
# (gpu-check pack; ROUNDS times, in turn with .gpu/gpu-check-old.mjs where
# scripts/gpu/build-ab.sh made one), and bench-batching through in-process servers on webgpu
# (--max-batch 8 against 1). Results: $OUT/results.jsonl.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
R="$OUT/results.jsonl"
say () { echo "== $*" | tee -a "$OUT/run.log"; }
source scripts/gpu/device-setup.sh
say parity webgpu
timeout 150 $N $G parity --device webgpu --model stories260k=models/stories260k --model tiny-llama-gqa=.gpu/tiny-llama-gqa 2>>"$OUT/err.log" | tee -a "$R"
say write random 200M
timeout 120 $N $G write-random --out /tmp/random-200m --size 200M --tokenizer-from models/stories260k | tee -a "$R"
versions=new; [ -f .gpu/gpu-check-old.mjs ] && versions="old new"
for r in $(seq 1 "${ROUNDS:-2}"); do
  for v in $versions; do
    B=$G; [ $v = old ] && B=.gpu/gpu-check-old.mjs
    say pack webgpu $v-$r
    timeout 200 $N $B pack --device webgpu --dir /tmp/random-200m --name random-200m --steps ${STEPS:-16} --label $v-$r 2>>"$OUT/err.log" | tee -a "$R"
  done
done
tail -5 "$OUT/err.log"
say bench-batching webgpu
timeout 240 $N .gpu/bench-batching.mjs --device webgpu --models random-200m=/tmp/random-200m,stories260k --sessions 1,2,4,8 --rounds 3 2>>"$OUT/err.log" | tee -a "$R"
tail -5 "$OUT/err.log"
say done
