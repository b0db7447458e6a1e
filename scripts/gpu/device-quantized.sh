#!/usr/bin/env bash
# Runs on the device machine (from the repo root, with .gpu carried; see scripts/gpu/build.sh):
# quantized blocks on the GPU span path (MatMulNBits on webgpu). Random 200M: prefill, decode
# and the GPU's used memory for float32, int8 and int4 blocks, each in a process of its own;
# the device's logits and greedy tokens against the CPU's with the same quantization
# (stories260k and random 200M); batched decode with int4 blocks. Results: $OUT/results.jsonl.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
R="$OUT/results.jsonl"
say () { echo "== $*" | tee -a "$OUT/run.log"; }
source scripts/gpu/device-setup.sh
say write random 200M
timeout 120 $N $G write-random --out /tmp/random-200m --size 200M --tokenizer-from models/stories260k | tee -a "$R"
B=(--dir /tmp/random-200m --name random-200m)
for r in 1 2; do
  for q in none int8 int4; do
    say bench webgpu $q round $r
    timeout 150 $N $G bench --device webgpu --quantize $q "${B[@]}" --label $q-$r 2>>"$OUT/err.log" | tee -a "$R"
  done
done
for q in int8 int4; do
  say agree $q
  timeout 120 $N $G agree --device webgpu --quantize $q --dir models/stories260k --name stories260k 2>>"$OUT/err.log" | tee -a "$R"
  timeout 150 $N $G agree --device webgpu --quantize $q "${B[@]}" 2>>"$OUT/err.log" | tee -a "$R"
done
say pack int4
timeout 200 $N $G pack --device webgpu --quantize int4 "${B[@]}" --steps 16 --label int4 2>>"$OUT/err.log" | tee -a "$R"
tail -5 "$OUT/err.log"
say done
