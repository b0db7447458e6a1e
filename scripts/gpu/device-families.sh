#!/usr/bin/env bash
# Runs on the device machine (from the repo root, with .gpu carried; see scripts/gpu/build.sh):
# the GPU-resident span path (model/gpu/) on webgpu against cpu for model families the
# fixtures lack (random Qwen2: q/k/v biases; Qwen3: query/key head norms), then the
# transformers parity of stories260k and tiny-llama-gqa. Results: $OUT/results.jsonl.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
R="$OUT/results.jsonl"
source scripts/gpu/device-setup.sh
for t in qwen2 qwen3; do
  timeout 120 $N $G write-random --out /tmp/$t --size 60M --model-type $t --tokenizer-from models/stories260k | tee -a "$R"
  timeout 150 $N $G agree --device webgpu --dir /tmp/$t --name $t-60m 2>>"$OUT/err.log" | tee -a "$R"
done
timeout 150 $N $G parity --device webgpu --model stories260k=models/stories260k --model tiny-llama-gqa=.gpu/tiny-llama-gqa 2>>"$OUT/err.log" | tee -a "$R"
tail -5 "$OUT/err.log"
