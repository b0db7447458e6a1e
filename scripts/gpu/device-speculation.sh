#!/usr/bin/env bash
# Runs on the device machine (repo root, .gpu carried; see scripts/gpu/build.sh): the
# speculation benchmark (3 servers of stories260k, the draft model on the client, 20 ms one-way
# latency, sweep and ROUNDS rounds; MODES: a --modes list) with its servers on each of DEVICES (default "webgpu cpu":
# the GPU, then the CPU of the same host as the baseline). The host's 16 cores give each server
# and the client cores of their own, which the 2-core VM cannot. Results: $OUT/spec-<device>.jsonl.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
source scripts/gpu/device-setup.sh > /dev/null
export PETAL_NODE_CLI=$PWD/.gpu/petal-node.mjs
for d in ${DEVICES:-webgpu cpu}; do
  echo "== $d $(date -u +%T)" | tee -a "$OUT/err.log"
  timeout "${LIMIT:-280}" $N .gpu/bench-speculation.mjs --latency-ms "${LATENCY:-20}" --rounds "${ROUNDS:-3}" --device "$d" ${MODES:+--modes "$MODES"} > "$OUT/spec-$d.jsonl" 2>>"$OUT/err.log"
  echo "exit $? $(date -u +%T)" | tee -a "$OUT/err.log"
done
tail -5 "$OUT/err.log"
