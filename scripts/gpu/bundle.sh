# Sourced by the build scripts: bundle IN OUT bundles a TypeScript entry into one ESM file for
# Node 22 (onnxruntime-node stays external; `require` is provided for CommonJS dependencies).
bundle () {
  node_modules/.bin/esbuild "$1" --bundle --platform=node --format=esm --target=node22 \
    --external:onnxruntime-node --outfile="$2" --log-level=warning \
    --banner:js="import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);"
}
