#!/usr/bin/env bash
# Runs on the device machine (from the repo root, with .gpu carried; see scripts/gpu/build.sh):
#   bash scripts/gpu/device-run.sh probe   # GPU/Vulkan facts, backends, stories260k parity on webgpu
#   bash scripts/gpu/device-run.sh full    # probe, then (if webgpu parity ran) tiny-llama-gqa parity,
#                                          # cpu parity, random 200M write, webgpu vs cpu bench
#   bash scripts/gpu/device-run.sh latency # cost of one near-empty session.run (uploads/readbacks), cpu vs webgpu
#   bash scripts/gpu/device-run.sh diag    # why webgpu is slow: Gemm->MatMul rewrite, 12 blocks per
#                                          # session, ORT profiles (per-op totals)
# Results: $OUT/results.jsonl (one JSON line per figure), logs under $OUT.
set -uo pipefail
MODE=${1:-probe}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
R="$OUT/results.jsonl"
say () { echo "== $*" | tee -a "$OUT/run.log"; }

say setup
for f in .gpu/gl/*.deb; do dpkg -x "$f" /; done; ldconfig
mkdir -p /tmp/gpu && xz -T0 -dc .gpu/node.xz > /tmp/gpu/node && chmod +x /tmp/gpu/node
tar -C .gpu -xJf .gpu/ort.tar.xz
N=/tmp/gpu/node; G=.gpu/gpu-check.mjs
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv
  ldconfig -p | grep -i vulkan
  ls -la /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/nvidia/share/vulkan/icd.d 2>&1
  $N --version; nproc
} 2>&1 | tee -a "$OUT/run.log"
if ! ls /usr/share/vulkan/icd.d/nvidia* /etc/vulkan/icd.d/nvidia* >/dev/null 2>&1 && [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  say "VK_DRIVER_FILES=$VK_DRIVER_FILES"
fi

$N $G backends | tee -a "$R"

if [ "$MODE" = latency ]; then
  say latency webgpu; timeout 120 $N $G latency --device webgpu 2>>"$OUT/bench.err" | tee -a "$R"; grep -v "^\s*$" "$OUT/bench.err" | tail -12
  say latency cpu; timeout 60 $N $G latency --device cpu 2>>"$OUT/bench.err" | tee -a "$R"
  say done; exit 0
fi

if [ "$MODE" = diag ]; then
  B=(--dir /tmp/random-200m --name random-200m)
  say write random 200M
  timeout 120 $N $G write-random --out /tmp/random-200m --size 200M --tokenizer-from models/stories260k | tee -a "$R"
  say parity webgpu with Gemm rewritten as MatMul
  PETAL_GEMM_TO_MATMUL=1 timeout 120 $N $G parity --device webgpu --label gemm-as-matmul --model stories260k=models/stories260k --model tiny-llama-gqa=.gpu/tiny-llama-gqa 2>>"$OUT/bench.err" | tee -a "$R"
  say bench webgpu gemm-as-matmul
  PETAL_GEMM_TO_MATMUL=1 timeout 120 $N $G bench --device webgpu "${B[@]}" --label gemm-as-matmul 2>>"$OUT/bench.err" | tee -a "$R"
  say bench webgpu 12 blocks per session
  timeout 120 $N $G bench --device webgpu "${B[@]}" --blocks-per-graph 12 --label bpg12 2>>"$OUT/bench.err" | tee -a "$R"
  say bench webgpu gemm-as-matmul + 12 blocks per session
  PETAL_GEMM_TO_MATMUL=1 timeout 120 $N $G bench --device webgpu "${B[@]}" --blocks-per-graph 12 --label gemm-as-matmul-bpg12 2>>"$OUT/bench.err" | tee -a "$R"
  say bench cpu 12 blocks per session
  timeout 120 $N $G bench --device cpu "${B[@]}" --blocks-per-graph 12 --label bpg12 2>>"$OUT/bench.err" | tee -a "$R"
  for v in gemm matmul; do
    say profile webgpu $v
    rm -rf /tmp/prof && mkdir -p /tmp/prof
    env PETAL_ORT_PROFILE=/tmp/prof/p $([ $v = matmul ] && echo PETAL_GEMM_TO_MATMUL=1) timeout 120 $N $G bench --device webgpu "${B[@]}" --steps 4 --label profile-$v 2>>"$OUT/bench.err" | tee -a "$R"
    $N $G profile-summary --dir /tmp/prof > "$OUT/profile-$v.jsonl"; head -25 "$OUT/profile-$v.jsonl" | cut -c1-200
  done
  say done; exit 0
fi

# Parity with ORT verbose logs: node placement lines go to placements-*.log, the rest (less the
# per-run execution-frame chatter) xz'd.
parity () { # device label models...
  local dev=$1 lab=$2; shift 2
  local args=(); for m in "$@"; do args+=(--model "$m"); done
  PETAL_ORT_SEVERITY=0 timeout 240 $N $G parity --device "$dev" "${args[@]}" 2> "/tmp/$lab.err" | tee -a "$R"
  grep -E "VerifyEachNodeIsAssignedToAnEp|not assigned|placed on|fall ?back" "/tmp/$lab.err" | cut -c1-400 > "$OUT/placements-$lab.log"
  grep -v -E "execution_frame.cc|ParseEpConfig|ParseWebGpuContextConfig|graph_transformer" "/tmp/$lab.err" | xz -T0 > "$OUT/stderr-$lab.log.xz"
  grep -v -E "^\S+ \S+ \[(V|I):" "/tmp/$lab.err" | head -40
}
say parity webgpu stories260k
parity webgpu webgpu-stories260k stories260k=models/stories260k
if ! grep -q '"device":"webgpu","metric":"parity_last_prompt' "$R" && [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  say "retry with VK_DRIVER_FILES + EGL vendor file and loader debug"
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  VK_LOADER_DEBUG=error,warn parity webgpu webgpu-stories260k stories260k=models/stories260k
fi
[ "$MODE" = probe ] && exit 0
grep -q '"device":"webgpu","metric":"parity_last_prompt' "$R" || { say "webgpu parity did not run; stopping"; exit 1; }

say parity webgpu tiny-llama-gqa
parity webgpu webgpu-tiny tiny-llama-gqa=.gpu/tiny-llama-gqa
say parity cpu both
timeout 120 $N $G parity --device cpu --model stories260k=models/stories260k --model tiny-llama-gqa=.gpu/tiny-llama-gqa | tee -a "$R"

say write random 200M
timeout 120 $N $G write-random --out /tmp/random-200m --size 200M --tokenizer-from models/stories260k | tee -a "$R"
say bench webgpu
PETAL_ORT_SEVERITY=2 timeout 200 $N $G bench --device webgpu --dir /tmp/random-200m --name random-200m 2>> "$OUT/bench.err" | tee -a "$R"
tail -5 "$OUT/bench.err"
say bench cpu
timeout 200 $N $G bench --device cpu --dir /tmp/random-200m --name random-200m 2>> "$OUT/bench.err" | tee -a "$R"
tail -5 "$OUT/bench.err"
say bench webgpu validationMode=disabled
PETAL_WEBGPU_OPTS='{"validationMode":"disabled"}' timeout 120 $N $G bench --device webgpu --dir /tmp/random-200m --name random-200m --label validation-disabled 2>> "$OUT/bench.err" | tee -a "$R"
say done
