import type { Checkpoint } from '../../model/checkpoint.js'
import type { LlamaConfig } from '../../model/config.js'

/**
 * A plain float64 Llama forward pass, written straight from the Hugging Face modelling
 * code with no cache and no ONNX: the independent reference for checkpoints that have no
 * reference.json (e.g. a BF16 sharded one written by our own script).
 * ids (T) -> logits (T, V)
 */
export function referenceLogits (ckpt: Checkpoint, ids: readonly number[]): Float64Array[] {
  const cfg = ckpt.config
  const { hiddenSize: C, numHeads: H, numKvHeads: Hkv, headDim: D, intermediateSize: F, vocabSize: V } = cfg
  const T = ids.length
  const client = ckpt.readClientWeights()
  let x: Float64Array[] = ids.map(id => Float64Array.from(client.embedding.subarray(id * C, (id + 1) * C))) // (T, C)

  for (let l = 0; l < cfg.numLayers; l++) {
    const w = ckpt.readBlock(l)
    const xn = x.map(row => rmsNorm(row, w.inputNorm, cfg.rmsNormEps))
    const q = xn.map(row => linear(w.q, row, H * D, w.qBias)) // (T, H*D)
    const k = xn.map(row => linear(w.k, row, Hkv * D, w.kBias))
    const v = xn.map(row => linear(w.v, row, Hkv * D, w.vBias))
    // Qwen3: RMSNorm over each head of q and k before RoPE
    const headNorm = (row: Float64Array, heads: number, weight: Float32Array | undefined): void => {
      if (weight === undefined) return
      for (let h = 0; h < heads; h++) row.set(rmsNorm(row.subarray(h * D, (h + 1) * D), weight, cfg.rmsNormEps), h * D)
    }
    q.forEach(row => { headNorm(row, H, w.qNorm) })
    k.forEach(row => { headNorm(row, Hkv, w.kNorm) })
    const invFreq = referenceInverseFrequencies(cfg)
    q.forEach((row, t) => { rope(row, H, D, t, invFreq) })
    k.forEach((row, t) => { rope(row, Hkv, D, t, invFreq) })
    const attn = x.map(() => new Float64Array(H * D))
    for (let h = 0; h < H; h++) {
      const kvh = Math.floor(h / (H / Hkv))
      for (let t = 0; t < T; t++) {
        const scores = new Float64Array(t + 1)
        for (let s = 0; s <= t; s++) {
          let dot = 0
          for (let d = 0; d < D; d++) dot += (q[t] as Float64Array)[h * D + d]! * (k[s] as Float64Array)[kvh * D + d]!
          scores[s] = dot / Math.sqrt(D)
        }
        const p = softmax(scores)
        for (let s = 0; s <= t; s++) {
          for (let d = 0; d < D; d++) (attn[t] as Float64Array)[h * D + d]! += p[s]! * (v[s] as Float64Array)[kvh * D + d]!
        }
      }
    }
    x = x.map((row, t) => add(row, linear(w.o, attn[t] as Float64Array, C, w.oBias)))
    x = x.map(row => {
      const n = rmsNorm(row, w.postNorm, cfg.rmsNormEps)
      const g = linear(w.gate, n, F)
      const u = linear(w.up, n, F)
      const a = g.map((gv, i) => gv / (1 + Math.exp(-gv)) * u[i]!)
      return add(row, linear(w.down, a, C))
    })
  }
  return x.map(row => linear(client.lmHead, rmsNorm(row, client.finalNorm, cfg.rmsNormEps), V))
}

/** W (out, in) @ x (in) [+ b (out)] -> (out) */
function linear (w: Float32Array, x: Float64Array, out: number, b?: Float32Array): Float64Array {
  const n = x.length
  const y = new Float64Array(out)
  for (let o = 0; o < out; o++) {
    let acc = b?.[o] ?? 0
    for (let i = 0; i < n; i++) acc += w[o * n + i]! * x[i]!
    y[o] = acc
  }
  return y
}

function rmsNorm (x: Float64Array, w: Float32Array, eps: number): Float64Array {
  let ms = 0
  for (const v of x) ms += v * v
  const scale = 1 / Math.sqrt(ms / x.length + eps)
  return x.map((v, i) => v * scale * w[i]!)
}

/**
 * Inverse frequencies as transformers' rope init functions compute them, written out
 * separately from model/rope.ts: default, linear (all divided by the factor) and llama3
 * (the first `where` scales the low frequencies, the second blends the medium band).
 */
export function referenceInverseFrequencies (cfg: LlamaConfig): Float64Array {
  const D = cfg.headDim
  const invFreq = Float64Array.from({ length: D / 2 }, (_, j) => 1 / cfg.ropeTheta ** ((2 * j) / D))
  const s = cfg.ropeScaling
  if (s.type === 'default') return invFreq
  if (s.type === 'linear') return invFreq.map(f => f / s.factor)
  const lowFreqWavelen = s.originalMaxPositions / s.lowFreqFactor
  const highFreqWavelen = s.originalMaxPositions / s.highFreqFactor
  return invFreq.map(f => {
    const wavelen = 2 * Math.PI / f
    const llama = wavelen > lowFreqWavelen ? f / s.factor : f
    const smoothFactor = (s.originalMaxPositions / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor)
    const smoothed = (1 - smoothFactor) * llama / s.factor + smoothFactor * llama
    const isMedium = !(wavelen < highFreqWavelen) && !(wavelen > lowFreqWavelen)
    return isMedium ? smoothed : llama
  })
}

/** rotate-half RoPE in place on (N heads, D) */
function rope (row: Float64Array, N: number, D: number, pos: number, invFreq: Float64Array): void {
  const half = D / 2
  for (let h = 0; h < N; h++) {
    for (let i = 0; i < half; i++) {
      const angle = pos * invFreq[i]!
      const [c, s] = [Math.cos(angle), Math.sin(angle)]
      const a = row[h * D + i]!
      const b = row[h * D + i + half]!
      row[h * D + i] = a * c - b * s
      row[h * D + i + half] = b * c + a * s
    }
  }
}

function softmax (x: Float64Array): Float64Array {
  const m = Math.max(...x)
  const e = x.map(v => Math.exp(v - m))
  const sum = e.reduce((a, b) => a + b, 0)
  return e.map(v => v / sum)
}

function add (a: Float64Array, b: Float64Array): Float64Array {
  return a.map((v, i) => v + b[i]!)
}
