# Sourced by the device scripts (repo root, .gpu carried, $OUT set): unpacks the Vulkan loaders,
# Node 22 and onnxruntime-node from .gpu, points Vulkan at NVIDIA's ICD when the image keeps it
# under /usr/local/nvidia, and sets N (node) and G (the bundled gpu-check) for the caller.
for f in .gpu/gl/*.deb; do dpkg -x "$f" /; done; ldconfig
mkdir -p /tmp/gpu && xz -T0 -dc .gpu/node.xz > /tmp/gpu/node && chmod +x /tmp/gpu/node
tar -C .gpu -xJf .gpu/ort.tar.xz
N=/tmp/gpu/node; G=.gpu/gpu-check.mjs
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee -a "$OUT/run.log"
if ! ls /usr/share/vulkan/icd.d/nvidia* /etc/vulkan/icd.d/nvidia* >/dev/null 2>&1 && [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
