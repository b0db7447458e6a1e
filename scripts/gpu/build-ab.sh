#!/usr/bin/env bash
# Builds .gpu/ (scripts/gpu/build.sh) plus .gpu/gpu-check-old.mjs, the GPU check bundled from
# commit REV (default HEAD~1), for scripts/gpu/device-ab.sh to time old and new graphs in turn.
#   scripts/gpu/build-ab.sh f82efc0
set -euo pipefail
cd "$(dirname "$0")/../.."
rev=${1:-HEAD~1}
bash scripts/gpu/build.sh
tree=$(mktemp -d)
git worktree add -q --detach "$tree" "$rev"
ln -s "$PWD/node_modules" "$tree/node_modules"
source scripts/gpu/bundle.sh
(cd "$tree" && bundle scripts/gpu/gpu-check.ts "$OLDPWD/.gpu/gpu-check-old.mjs")
git worktree remove --force "$tree"
echo "old: $(git rev-parse --short "$rev"), new: working tree"
