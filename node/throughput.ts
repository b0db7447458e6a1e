/**
 * A server's speed, measured once at start (as Petals does) and reported in
 * ServerInfo; clients route by it and new servers choose their span by it.
 */
import type { SpanRunner } from '../model/span-runner.js'
import type { Throughput } from '../protocol/server-info.js'

/** Options of measureThroughput. */
export interface MeasureThroughputOptions {
  /** Most single-token forwards timed (default 32). */
  decodeSteps?: number
  /** Stop timing decode steps after this long, ms (default 500). */
  decodeBudgetMs?: number
  /** Tokens of the timed prefill run (default 64). */
  prefillTokens?: number
}

/**
 * Times the runner's whole span on a scratch cache and scales to one block:
 * decode = single-token forwards per second x blocks (after one warm-up step);
 * prefill = tokens per second of one `prefillTokens` run x blocks (after a warm-up
 * run of the same shape). Takes about 1 s on a 200M-parameter model on CPU.
 */
export async function measureThroughput (runner: SpanRunner, options: MeasureThroughputOptions = {}): Promise<Throughput> {
  const C = runner.config.hiddenSize
  const blocks = runner.end - runner.start
  const steps = Math.max(1, options.decodeSteps ?? 32)
  const budgetMs = options.decodeBudgetMs ?? 500
  const prefillTokens = Math.max(1, Math.min(options.prefillTokens ?? 64, runner.config.maxPositions))

  // decode: hidden (1,1,C) at positions 1, 2, ... after a warm-up at 0
  const token = noise(C, 1)
  const cache = runner.newCache()
  await runner.forward(token, cache, 0)
  let done = 0
  const began = performance.now()
  while (done < steps && done + 1 < runner.config.maxPositions && performance.now() - began < budgetMs) {
    await runner.forward(token, cache, done + 1)
    done++
  }
  const decodeSec = (performance.now() - began) / 1000

  // prefill: hidden (1,P,C) at position 0, once to warm up this shape, once timed
  const prompt = noise(C * prefillTokens, 2)
  await runner.forward(prompt, runner.newCache(), 0)
  const prefillBegan = performance.now()
  await runner.forward(prompt, runner.newCache(), 0)
  const prefillSec = (performance.now() - prefillBegan) / 1000

  return {
    decodeTokensPerSec: rate(done * blocks, decodeSec),
    prefillTokensPerSec: rate(prefillTokens * blocks, prefillSec)
  }
}

function rate (units: number, seconds: number): number {
  return units > 0 ? Math.round(units / Math.max(seconds, 1e-6)) : 0
}

/** Deterministic values in [-1, 1) standing in for activations. */
function noise (n: number, seed: number): Float32Array {
  const out = new Float32Array(n)
  let s = seed >>> 0
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    out[i] = s / 2 ** 31 - 1
  }
  return out
}
