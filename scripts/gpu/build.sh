#!/usr/bin/env bash
# Builds the payload for the GPU check into .gpu/ (ignored by git; carried to the device machine):
#   .gpu/gpu-check.mjs    scripts/gpu/gpu-check.ts bundled (onnxruntime-node external)
#   .gpu/petal-node.mjs   the petal-node CLI (cli/main.ts) bundled the same way
#   .gpu/swarm-check.mjs  scripts/gpu/swarm-check.ts bundled (spawns .gpu/petal-node.mjs servers)
#   .gpu/bench-batching.mjs  scripts/bench-batching.ts bundled (batched decode through in-process servers)
#   .gpu/bench-speculation.mjs  scripts/bench-speculation.ts bundled (servers spawned as .gpu/petal-node.mjs)
#   .gpu/bench-swarm.mjs  scripts/bench-swarm.ts bundled (servers spawned as .gpu/petal-node.mjs)
#   .gpu/bench-wakeup.mjs scripts/bench-wakeup.ts bundled (echo servers spawned as itself)
#   .gpu/node.xz          node_modules/node/bin/node (Node 22), xz-compressed
#   .gpu/ort.tar.xz       node_modules/{onnxruntime-node (linux x64 only), onnxruntime-common}
#   .gpu/gl/*.deb         Vulkan/GL loaders (libvulkan1 ...), see the device README
#   .gpu/tiny-llama-gqa   copy of ../shared/models/tiny-llama-gqa
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .gpu
source scripts/gpu/bundle.sh
for entry in scripts/gpu/gpu-check.ts:gpu-check cli/main.ts:petal-node scripts/gpu/swarm-check.ts:swarm-check scripts/bench-batching.ts:bench-batching scripts/bench-speculation.ts:bench-speculation scripts/bench-swarm.ts:bench-swarm scripts/bench-wakeup.ts:bench-wakeup; do
  bundle "${entry%%:*}" ".gpu/${entry##*:}.mjs"
done
[ -f .gpu/node.xz ] || xz -T8 -6 -c node_modules/node/bin/node > .gpu/node.xz
if [ ! -f .gpu/ort.tar.xz ]; then
  t=$(mktemp -d); mkdir -p "$t/node_modules/onnxruntime-node/bin/napi-v6/linux"
  cp -r node_modules/onnxruntime-common "$t/node_modules/"
  cp -r node_modules/onnxruntime-node/package.json node_modules/onnxruntime-node/dist "$t/node_modules/onnxruntime-node/"
  cp -r node_modules/onnxruntime-node/bin/napi-v6/linux/x64 "$t/node_modules/onnxruntime-node/bin/napi-v6/linux/"
  tar -C "$t" -cf - node_modules | xz -T8 -6 > .gpu/ort.tar.xz
  rm -rf "$t"
fi
[ -d .gpu/tiny-llama-gqa ] || { cp -r ../shared/models/tiny-llama-gqa .gpu/ && chmod -R u+w .gpu/tiny-llama-gqa; }
du -sh .gpu
