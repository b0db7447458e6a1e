import * as ort from 'onnxruntime-node'
import { blockParameterCount, type LlamaConfig } from './config.js'

export type Device = 'cpu' | 'webgpu' | 'cuda'

export interface OrtOptions {
  device?: Device
  /** Intra-op threads; default: ORT's choice (one per physical core). */
  threads?: number
  /**
   * Let idle intra-op threads spin-wait for the next op. Default false: a model is a chain
   * of sessions (blocks, head), and one session's spinning threads steal the cores the next
   * one needs (measured: 200M decode 36 ms/token with spinning, 24 without).
   */
  spinning?: boolean
}

/** Creates an ORT session from serialized ONNX bytes on the chosen execution provider. */
export async function createOrtSession (model: Uint8Array, opts: OrtOptions = {}): Promise<ort.InferenceSession> {
  const device = opts.device ?? 'cpu'
  const providers = device === 'cpu' ? ['cpu'] : [device, 'cpu']
  return await ort.InferenceSession.create(model, {
    executionProviders: providers,
    graphOptimizationLevel: 'all',
    ...(opts.threads !== undefined ? { intraOpNumThreads: opts.threads } : {}),
    logSeverityLevel: 3,
    ...(opts.spinning === true ? {} : { extra: { session: { intra_op: { allow_spinning: '0' } } } })
  })
}

/**
 * Intra-op threads for a model's sessions. Tiny blocks finish before a thread pool pays off,
 * and several sessions' idle pools side by side slow each other down, so small models get
 * one thread; real ones get ORT's default (one per physical core).
 */
export function defaultThreads (cfg: LlamaConfig): number | undefined {
  return blockParameterCount(cfg) < 2_000_000 ? 1 : undefined
}

/** Execution providers this build of onnxruntime-node can load. */
export function availableDevices (): Device[] {
  const names = new Set(ort.listSupportedBackends().filter(b => b.bundled).map(b => b.name))
  return (['cpu', 'webgpu', 'cuda'] as const).filter(d => names.has(d))
}

export function floatTensor (data: Float32Array, dims: readonly number[]): ort.Tensor {
  return new ort.Tensor('float32', data, dims)
}

/** (1,T) int64 positions */
export function positionTensor (positions: readonly number[]): ort.Tensor {
  return new ort.Tensor('int64', BigInt64Array.from(positions, p => BigInt(p)), [1, positions.length])
}

/** (1,T) int64 token ids */
export function tokenTensor (ids: readonly number[]): ort.Tensor {
  return positionTensor(ids)
}

/** (T,S) bool mask from 0/1 bytes */
export function visibilityTensor (mask: Uint8Array, T: number, S: number): ort.Tensor {
  return new ort.Tensor('bool', mask, [T, S])
}

export function readFloats (t: ort.Tensor | undefined, name: string): Float32Array {
  if (t === undefined || t.type !== 'float32') throw new Error(`ORT output "${name}" is missing or not float32`)
  return t.data as Float32Array
}
