#!/usr/bin/env bash
# Runs on the device machine (from the repo root, with .gpu carried; see scripts/gpu/build.sh):
# parity only, on webgpu (the GPU-resident span path) and cpu: stories260k and tiny-llama-gqa,
# including token-tree runs. Results: $OUT/results.jsonl.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
R="$OUT/results.jsonl"
source scripts/gpu/device-setup.sh
M=(--model stories260k=models/stories260k --model tiny-llama-gqa=.gpu/tiny-llama-gqa)
for d in webgpu cpu; do timeout 150 $N $G parity --device $d "${M[@]}" 2>>"$OUT/err.log" | tee -a "$R"; done
tail -5 "$OUT/err.log"
