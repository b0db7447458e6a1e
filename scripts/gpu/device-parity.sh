#!/usr/bin/env bash
# Runs on the device machine (from the repo root, with .gpu carried; see scripts/gpu/build.sh):
# parity only, on webgpu (the GPU-resident span path) and cpu: stories260k and tiny-llama-gqa,
# including token-tree runs. Results: $OUT/results.jsonl.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
R="$OUT/results.jsonl"
for f in .gpu/gl/*.deb; do dpkg -x "$f" /; done; ldconfig
mkdir -p /tmp/gpu && xz -T0 -dc .gpu/node.xz > /tmp/gpu/node && chmod +x /tmp/gpu/node
tar -C .gpu -xJf .gpu/ort.tar.xz
N=/tmp/gpu/node; G=.gpu/gpu-check.mjs
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee -a "$OUT/run.log"
if ! ls /usr/share/vulkan/icd.d/nvidia* /etc/vulkan/icd.d/nvidia* >/dev/null 2>&1 && [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
M=(--model stories260k=models/stories260k --model tiny-llama-gqa=.gpu/tiny-llama-gqa)
for d in webgpu cpu; do timeout 150 $N $G parity --device $d "${M[@]}" 2>>"$OUT/err.log" | tee -a "$R"; done
tail -5 "$OUT/err.log"
