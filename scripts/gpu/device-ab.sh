#!/usr/bin/env bash
# Runs on the device machine (repo root, .gpu carried; see scripts/gpu/build-ab.sh): random 200M
# prefill and decode on webgpu, the old bundle and the new one in turn, ROUNDS times (default 3),
# then the new bundle's parity (stories260k, tiny-llama-gqa) and its agreement with the CPU on
# random Qwen2 and Qwen3. Results: $OUT/results.jsonl (label old-N / new-N).
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; R="$OUT/results.jsonl"
source scripts/gpu/device-setup.sh
timeout 120 $N $G write-random --out /tmp/random-200m --size 200M --tokenizer-from models/stories260k > /dev/null
for r in $(seq 1 "${ROUNDS:-3}"); do
  for v in old new; do
    B=.gpu/gpu-check.mjs; [ $v = old ] && B=.gpu/gpu-check-old.mjs
    timeout 150 $N $B bench --device webgpu --dir /tmp/random-200m --name random-200m --label $v-$r 2>>"$OUT/err.log" | grep -E 'decode|prefill' | tee -a "$R"
  done
done
timeout 150 $N $G parity --device webgpu --model stories260k=models/stories260k --model tiny-llama-gqa=.gpu/tiny-llama-gqa 2>>"$OUT/err.log" | tee -a "$R"
for t in qwen2 qwen3; do
  timeout 120 $N $G write-random --out /tmp/$t --size 60M --model-type $t --tokenizer-from models/stories260k > /dev/null
  timeout 150 $N $G agree --device webgpu --dir /tmp/$t --name $t-60m 2>>"$OUT/err.log" | tee -a "$R"
done
tail -3 "$OUT/err.log"
