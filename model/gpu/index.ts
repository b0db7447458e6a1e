export { GpuSpanRunner } from './gpu-span-runner.js'
export { GpuSpanCache } from './gpu-span-cache.js'
export { buildGpuSpanGraph, gpuSpanNames } from './gpu-span-graph.js'
