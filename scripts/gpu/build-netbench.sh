#!/usr/bin/env bash
# Builds .netbench/ (ignored by git; carried to the device machine) for device-netbench.sh:
# bench:speculation with real kernel delays on a 16-core host, where the two vCPUs of this
# VM no longer take turns between servers, client and delay helper. The device image has no
# iproute2 or iptables, so this machine's `ip` and `iptables-legacy` travel along with the
# libraries they need (run there through the dynamic loader, so nothing they start inherits
# them). Its kernel has no netem either: --kernel-delay uses the NFQUEUE helper, built there.
#   .netbench/b/bench-speculation.mjs  scripts/bench-speculation.ts bundled (b/: its ../.. is the repo)
#   .netbench/petal-node.mjs           the petal-node CLI bundled
#   .netbench/node.xz, ort.tar.xz      Node 22 and onnxruntime-node (linux x64), as scripts/gpu/build.sh
#   .netbench/net/                     ip, xtables-legacy-multi, their libraries and xtables extensions
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .netbench/b .netbench/net/lib .netbench/net/xtables
source scripts/gpu/bundle.sh
bundle scripts/bench-speculation.ts .netbench/b/bench-speculation.mjs
bundle cli/main.ts .netbench/petal-node.mjs
bash scripts/gpu/build.sh >/dev/null # node.xz and ort.tar.xz, made once
cp .gpu/node.xz .gpu/ort.tar.xz .netbench/
for bin in /usr/sbin/ip /usr/sbin/xtables-legacy-multi; do
  cp "$bin" .netbench/net/
  ldd "$bin" | awk '/=> \// { print $3 }' | grep -v -E '/lib(c|m|pthread|dl)\.so' | xargs -I{} cp -L {} .netbench/net/lib/
done
cp /usr/lib/x86_64-linux-gnu/xtables/libxt_NFQUEUE.so /usr/lib/x86_64-linux-gnu/xtables/libxt_standard.so .netbench/net/xtables/
du -sh .netbench
