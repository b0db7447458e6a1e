/** Loading a server's span on the device it asked for, or on the CPU when that device is missing. */
import type { Logger } from 'pino'
import type { Checkpoint } from '../model/checkpoint.js'
import { availableDevices, type Device } from '../model/ort-session.js'
import type { Quantization } from '../model/quantize.js'
import { SpanRunner } from '../model/span-runner.js'

/** Options of loadSpan. */
export interface LoadSpanOptions {
  device: Device
  /** Blocks per ORT session (default 1). */
  graphBlocks?: number
  /** Intra-op threads per ORT session (default: onnxruntime's choice). */
  threads?: number
  /** Weights held quantized (cpu and webgpu): "int8", "int4", or "none" (the default). */
  quantization?: Quantization
  /** Most sessions' runs computed in one pass (the server's --max-batch; on webgpu, how many caches the gather graphs take). */
  packLimit?: number
  onProgress?: (done: number, total: number) => void
  log: Logger
}

/**
 * Loads blocks [start, end) on `device`. A device this onnxruntime build lacks, or
 * one that fails to create its sessions (no GPU, no driver), falls back to `cpu`
 * with a warning; `device` in the result says what was used.
 */
export async function loadSpan (ckpt: Checkpoint, start: number, end: number, options: LoadSpanOptions): Promise<{ runner: SpanRunner, device: Device }> {
  const { log, onProgress } = options
  const blocksPerGraph = options.graphBlocks ?? 1
  const threads = {
    ...(options.threads !== undefined ? { threads: options.threads } : {}),
    ...(options.quantization !== undefined ? { quantization: options.quantization } : {}),
    ...(options.packLimit !== undefined ? { packLimit: options.packLimit } : {})
  }
  let device = options.device
  if (device !== 'cpu' && !availableDevices().includes(device)) {
    log.warn({ device, available: availableDevices() }, `device ${device} is not available in this onnxruntime build: falling back to cpu`)
    device = 'cpu'
  }
  try {
    return { runner: await SpanRunner.load(ckpt, start, end, { device, blocksPerGraph, ...threads, ...(onProgress !== undefined ? { onProgress } : {}) }), device }
  } catch (err) {
    if (device === 'cpu') throw err
    log.warn({ err, device }, `cannot run on ${device}: falling back to cpu`)
    return { runner: await SpanRunner.load(ckpt, start, end, { device: 'cpu', blocksPerGraph, ...threads, ...(onProgress !== undefined ? { onProgress } : {}) }), device: 'cpu' }
  }
}
