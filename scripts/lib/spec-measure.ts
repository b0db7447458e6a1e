/**
 * One measured configuration of the speculation benchmark: generation of a fixed number of
 * tokens (EOS ignored; greedy unless sampler settings are given) for each prompt through a
 * swarm target, aggregated.
 */
import { decode, SpeculationMemory, type DecodeMode, type DecodeStats, type Drafter } from '../../client/decoding/index.js'
import type { LanguageModel } from '../../client/language-model.js'
import { Sampler, type SamplerOptions } from '../../client/sampling/index.js'
import { median, percentile } from './bench-output.js'

/** How one configuration decodes. */
export interface SpecConfig {
  /** Label printed as `mode`: plain-client, plain-push, sync, pipelined, sync-adaptive, ... */
  readonly mode: string
  readonly speculation: DecodeMode
  /** Servers forward activations to each other instead of through the client. */
  readonly push: boolean
  /** Draft tokens per run (the limit when adaptive). */
  readonly k: number
  /** Runs in flight, pipelined (the limit when adaptive). */
  readonly depth: number
  /** Let the speculation controller pick k, depth and the cutoff within the limits. */
  readonly adaptive: boolean
  /** Tree speculation: most branches per run (0: chains) and draft tokens after each branch's first. */
  readonly branches: number
  readonly branchLength: number
}

/**
 * Aggregate over prompts: tokensPerSecond = all tokens / all decode time (prefill included),
 * ttftMs = median over prompts, ITL percentiles over the pooled inter-token gaps (0 inside a
 * batch of tokens decided together), counts summed, acceptance = accepted / verified drafts.
 */
export interface SpecResult {
  /** Generated ids per prompt. */
  readonly tokens: number[][]
  readonly tokensPerSecond: number
  readonly ttftMs: number
  readonly itlP50Ms: number
  readonly itlP95Ms: number
  readonly acceptance: number
  readonly cancelledRuns: number
  readonly runsSubmitted: number
  readonly draftsProposed: number
  readonly draftsAccepted: number
  /** Tree speculation: branch rows sent, rejections rescued by a branch, tokens decided in branches. */
  readonly branchRows: number
  readonly rescued: number
  readonly branchTokens: number
  /** k and depth of the controller's last plan, per prompt. */
  readonly plans: Array<{ k: number, depth: number }>
}

/** How measureConfig decodes besides the configuration. */
export interface MeasureOptions {
  /** Each prompt's adaptive controller starts from priors, not from what earlier prompts taught it. */
  readonly coldSpeculation?: boolean
  /** Default greedy ({ temperature: 0, seed: 1 }); every prompt decodes with the same seed. */
  readonly sampler?: SamplerOptions
}

/**
 * Generates `tokens` tokens after each prompt in configuration `cfg`. Like an app's
 * generations with one model, the prompts share a SpeculationMemory (adaptive modes start
 * each prompt from what the previous ones learned; fixed settings do not use it), unless
 * `coldSpeculation`.
 */
export async function measureConfig (model: LanguageModel, drafter: Drafter, prompts: readonly number[][], tokens: number, cfg: SpecConfig, { coldSpeculation = false, sampler = GREEDY }: MeasureOptions = {}): Promise<SpecResult> {
  const memory = coldSpeculation ? undefined : new SpeculationMemory()
  const all: DecodeStats[] = []
  const ids: number[][] = []
  for (const promptIds of prompts) {
    const session = await model.session({ maxTokens: promptIds.length + tokens + 1 })
    try {
      const gen = decode(session.target, {
        promptIds,
        sampler: new Sampler(sampler),
        maxNewTokens: tokens,
        eosTokenIds: [],
        mode: cfg.speculation,
        ...(cfg.speculation !== 'none' ? { drafter } : {}),
        k: cfg.k,
        maxInFlight: cfg.depth,
        branches: cfg.branches,
        branchLength: cfg.branchLength,
        adaptive: cfg.adaptive,
        ...(memory !== undefined ? { memory } : {})
      })
      const out: number[] = []
      let step = await gen.next()
      while (step.done !== true) {
        out.push(...step.value)
        step = await gen.next()
      }
      all.push(step.value)
      ids.push(out)
    } finally {
      await session.close()
      await drafter.close?.()
    }
  }
  const sum = (f: (s: DecodeStats) => number): number => all.reduce((acc, s) => acc + f(s), 0)
  const gaps = all.flatMap(s => [...s.interTokenMs])
  const verified = sum(s => s.verified)
  return {
    tokens: ids,
    tokensPerSecond: sum(s => s.newTokens) / (sum(s => s.elapsedMs) / 1000),
    ttftMs: median(all.map(s => s.ttftMs)),
    itlP50Ms: gaps.length > 0 ? percentile(gaps, 50) : 0,
    itlP95Ms: gaps.length > 0 ? percentile(gaps, 95) : 0,
    acceptance: verified === 0 ? 0 : sum(s => s.accepted) / verified,
    cancelledRuns: sum(s => s.runsCancelled),
    runsSubmitted: sum(s => s.runsSubmitted),
    draftsProposed: sum(s => s.proposed),
    draftsAccepted: sum(s => s.accepted),
    branchRows: sum(s => s.branchRows),
    rescued: sum(s => s.rescued),
    branchTokens: sum(s => s.branchTokens),
    plans: all.map(s => ({ k: s.plan.k, depth: s.plan.depth }))
  }
}

const GREEDY: SamplerOptions = { temperature: 0, seed: 1 }

/** A point of a sweep. */
export interface SweepPoint { k: number, depth: number, branches: number, branchLength: number }

/**
 * The sweep's points: k for sync; (k, depth) for pipelined; with `tree`, also the branches
 * per run and their length (at the k and depths that chains favour, to keep the sweep short).
 */
export function sweepPoints (mode: 'sync' | 'pipelined', tree = false): SweepPoint[] {
  const chain = { branches: 0, branchLength: 0 }
  if (!tree) {
    // sync keeps gaining with k while acceptance is high, so its sweep reaches far enough to turn
    if (mode === 'sync') return [2, 4, 6, 8, 12, 16, 24].map(k => ({ k, depth: 1, ...chain }))
    return [...[2, 4, 6].flatMap(k => [2, 4, 8].map(depth => ({ k, depth, ...chain }))), { k: 8, depth: 4, ...chain }, { k: 12, depth: 2, ...chain }]
  }
  const shapes = [8, 16].flatMap(branches => [3, 6].map(branchLength => ({ branches, branchLength })))
  if (mode === 'sync') return [6, 8, 12, 16].flatMap(k => shapes.map(s => ({ k, depth: 1, ...s })))
  // (12, 2): at 0 ms the servers share the client's cores, and deep pipelines of trees only queue there
  return [[4, 4], [4, 8], [6, 4], [12, 2]].flatMap(([k, depth]) => shapes.map(s => ({ k: k as number, depth: depth as number, ...s })))
}

/** A sweep point as measured once: its rate, and whether it decoded what it had to. */
export interface SweptPoint<P> { point: P, tokensPerSecond: number, correct: boolean }

/**
 * The `n` fastest points of a sweep that decoded correctly, fastest first. A sweep measures
 * each point once, and this machine's speed swings by a few percent from one measurement to
 * the next, as much as neighbouring points differ: the rounds then decide among these finalists.
 */
export function sweepFinalists<P> (swept: ReadonlyArray<SweptPoint<P>>, n: number): P[] {
  return swept.filter(s => s.correct).sort((a, b) => b.tokensPerSecond - a.tokensPerSecond).slice(0, n).map(s => s.point)
}

/**
 * Which finalist a mode reports: the one with the highest median tokens/s over the rounds
 * (`rates[round][finalist]`); ties go to the earlier (faster in the sweep).
 */
export function fastestFinalist (rates: ReadonlyArray<readonly number[]>): number {
  const count = rates[0]?.length ?? 0
  let best = 0
  let bestMedian = -Infinity
  for (let f = 0; f < count; f++) {
    const m = median(rates.map(round => round[f] as number))
    if (m > bestMedian) { best = f; bestMedian = m }
  }
  return best
}
