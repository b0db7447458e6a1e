#!/usr/bin/env bash
# Runs on the device machine (repo root, .netbench carried; see build-netbench.sh):
# bench:speculation at one-way latency $L (default 20 ms), in-process and with real kernel
# delays, alternated $ROUNDS times (default 2), no sweep. Results: $OUT/results.jsonl.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
L=${L:-20}; ROUNDS=${ROUNDS:-2}; MODES=${MODES:-}
mkdir -p /tmp/nb && xz -T0 -dc .netbench/node.xz > /tmp/nb/node && chmod +x /tmp/nb/node
tar -C .netbench -xJf .netbench/ort.tar.xz
ln -sfn ../node_modules .netbench/b/node_modules # the bundle's onnxruntime-node
ln -sfn ../models .netbench/models # the bundle's ROOT is .netbench/
N=/tmp/nb/node; NET=$PWD/.netbench/net
# `ip` and `iptables-legacy` where kernel-delay.ts looks for them, run through the loader with
# their own libraries (--library-path is not inherited by what they start)
for tool in ip:ip iptables-legacy:xtables-legacy-multi; do
  printf '#!/bin/sh\nXTABLES_LIBDIR=%s/xtables exec /lib64/ld-linux-x86-64.so.2 --library-path %s/lib --argv0 %s %s/%s "$@"\n' "$NET" "$NET" "${tool%%:*}" "$NET" "${tool##*:}" > "/usr/sbin/${tool%%:*}"
  chmod +x "/usr/sbin/${tool%%:*}"
done
ip -V | tee -a "$OUT/run.log"; iptables-legacy -V | tee -a "$OUT/run.log"
nproc | tee -a "$OUT/run.log"
export PETAL_NODE_CLI=$PWD/.netbench/petal-node.mjs
B=".netbench/b/bench-speculation.mjs --latency-ms $L --no-sweep ${MODES:+--modes $MODES}"
for r in $(seq "$ROUNDS"); do
  echo "== round $r in-process" | tee -a "$OUT/run.log"
  timeout 240 $N $B >> "$OUT/results.jsonl" 2>>"$OUT/err.log"
  echo "== round $r kernel" | tee -a "$OUT/run.log"
  timeout 240 $N $B --kernel-delay >> "$OUT/results.jsonl" 2>>"$OUT/err.log"
done
tail -20 "$OUT/err.log"
echo "== done" | tee -a "$OUT/run.log"
