/**
 * Speculation benchmark: plain vs draft-then-verify (sync) vs PipeInfer-pipelined decoding
 * through a real 3-server loopback swarm of stories260k ([0,2) [2,4) [4,5)) at several
 * one-way link latencies. Greedy (or sampled with --temperature), EOS ignored, a fixed number
 * of tokens per reference prompt; warm-up first; one JSON line per configuration (see
 * scripts/lib/spec-measure.ts for how the prompts are aggregated). Every line says whether its
 * tokens equal plain greedy decoding's (sampled: the speculative text of that seed, computed
 * locally with a sync chain, which every speculative mode and layout must reproduce).
 *
 *   npm run bench:speculation                          # latencies 0, 5, 20, 50 ms, sweeps, 96 tokens x 3 prompts
 *   npm run bench:speculation -- --latency-ms 20       # one latency (a comma list works too)
 *   npm run bench:speculation -- --quick               # CI smoke run: 5 ms, 8 tokens, 1 prompt, plain + pipelined, no sweep
 *   npm run bench:speculation -- --kernel-delay --latency-ms 20 --no-sweep   # real kernel delays (root)
 *
 * Options: --tokens N, --prompts N (1..3), --modes LIST (plain-client, plain-push, sync,
 * pipelined, sync-adaptive, pipelined-adaptive; plain-client always runs: it is the reference),
 * --no-sweep (sync/pipelined at the SDK's default k and depth 4 instead of their best sweep point), --draft DIR,
 * --draft-cost-ms X (the drafter waits X ms more per drafted token, as a bigger draft model on
 * its own accelerator would: how the modes compare when drafting is a real share of a round trip),
 * --server-run-ms X and --server-row-ms Y (every server holds its device idle X ms more per run
 * and Y ms more per row, as servers of a bigger model would: how the modes compare when
 * verification costs compute), --cold-speculation (each prompt's adaptive controller starts
 * from priors instead of from what the earlier prompts of the configuration taught it),
 * --temperature T and --seed S (sampled decoding, top-p 1, every prompt with seed S; plain
 * decoding then draws from the target directly, so its text differs from the speculative one),
 * --carry-max-bytes N (push mode: the most bytes of outputs a run's last server carries back
 * instead of every server replying; default 0, the SDK's), --device cpu|webgpu|cuda (what the
 * servers compute on; default cpu), --rounds R (default 1: the speculative modes' chosen settings are measured R times, in an
 * order rotated each round, and each line reports the median round; the goal ratios are
 * medians of the rounds' ratios: this machine's speed swings by a few percent between
 * measurements minutes apart, more than the ratios' margins).
 *
 * Modes: plain-* decode one token per run, client-mediated or push; sync and pipelined use the
 * draft model (n-gram lookup, with a warning, when models/stories260k-draft is
 * missing) over push, first swept (scripts/lib/spec-measure.ts sweepPoints: sync k 2..24,
 * pipelined (k, depth) over {2,4,6} x {2,4,8} and two longer points, trees over a few shapes;
 * lines with "sweep": true, adaptive controller off) and then the fastest point that matched
 * plain measured again as the mode's line (with --rounds > 1 the two fastest are measured in
 * every round and the one with the better median is the line, its "finalists" field giving
 * both); *-adaptive use the SDK's default limits (k 16 in
 * sync, k 4 and depth 4 pipelined; client/decoding/decode.ts DEFAULT_K) with the adaptive
 * controller on.
 *
 * Latency ("delay" field): in-process by default (servers' --link-latency-ms and the client's
 * sendDelayMs, L ms on every frame sent); with --kernel-delay the whole run (servers and
 * client) re-executes under `ip netns exec` in a namespace whose loopback holds every packet
 * L ms, by `tc netem` or, where the kernel lacks netem, by NFQUEUE and a small helper ("delay"
 * says which; see scripts/lib/kernel-delay.ts: needs root, iproute2, iptables and cc). Such a
 * run first prints a "kernel_delay_tcp_connect_ms" line: TCP connect time on loopback, one round
 * trip, which should be about 2 L.
 */
import { existsSync, readFileSync } from 'node:fs'
import { availableParallelism, cpus } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { decodeAll, DEFAULT_K, DraftModelDrafter, loadDraftModel, NgramDrafter, type Drafter } from '../client/decoding/index.js'
import { LocalTarget } from '../client/local-target.js'
import { Sampler, type SamplerOptions } from '../client/sampling/index.js'
import { LanguageModel } from '../client/language-model.js'
import { Checkpoint } from '../model/checkpoint.js'
import { LocalModel } from '../model/local-model.js'
import { emit, median } from './lib/bench-output.js'
import { KernelDelayUnavailableError, loopbackConnectMs, runInDelayedNamespace } from './lib/kernel-delay.js'
import { fastestFinalist, measureConfig, sweepFinalists, sweepPoints, type SpecConfig, type SpecResult, type SweepPoint, type SweptPoint } from './lib/spec-measure.js'
import { SlowDrafter } from './lib/slow-drafter.js'
import { startSpecSwarm } from './lib/spec-swarm.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const TARGET = join(ROOT, 'models', 'stories260k')
const ALL_MODES = ['plain-client', 'plain-push', 'sync', 'pipelined', 'sync-tree', 'pipelined-tree', 'sync-adaptive', 'pipelined-adaptive']
const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    'latency-ms': { type: 'string' },
    tokens: { type: 'string' },
    prompts: { type: 'string' },
    modes: { type: 'string' },
    'no-sweep': { type: 'boolean', default: false },
    'kernel-delay': { type: 'boolean', default: false },
    draft: { type: 'string' },
    'draft-cost-ms': { type: 'string' },
    'server-run-ms': { type: 'string' },
    'server-row-ms': { type: 'string' },
    'cold-speculation': { type: 'boolean', default: false },
    temperature: { type: 'string' },
    rounds: { type: 'string' },
    seed: { type: 'string' },
    device: { type: 'string' },
    'carry-max-bytes': { type: 'string' },
    'netns-child': { type: 'string' } // internal: already inside a namespace delayed this way
  }
})
const latencies = (args['latency-ms'] ?? (args.quick ? '5' : '0,5,20,50')).split(',').map(Number)
const tokens = Number(args.tokens ?? (args.quick ? 8 : 96))
const numPrompts = Number(args.prompts ?? (args.quick ? 1 : 3))
const modes = new Set((args.modes ?? (args.quick ? 'plain-client,pipelined' : ALL_MODES.join(','))).split(','))
const sweep = !args['no-sweep'] && !args.quick
const delay = args['netns-child'] ?? 'in-process'
const draftDir = args.draft ?? join(ROOT, 'models', 'stories260k-draft')
const draftCostMs = Number(args['draft-cost-ms'] ?? 0)
const serverCost = { msPerRun: Number(args['server-run-ms'] ?? 0), msPerRow: Number(args['server-row-ms'] ?? 0) }
const sampling: SamplerOptions = { temperature: Number(args.temperature ?? 0), seed: Number(args.seed ?? 1) }
const greedy = sampling.temperature === 0
const rounds = Number(args.rounds ?? 1)
/** Push mode's carryMaxBytes (undefined: the SDK's default). */
const carryMaxBytes = args['carry-max-bytes'] !== undefined ? Number(args['carry-max-bytes']) : undefined
const serverDevice = args.device ?? 'cpu'
const serverArgs = ['--simulated-run-ms', String(serverCost.msPerRun), '--simulated-row-ms', String(serverCost.msPerRow), '--device', serverDevice]
for (const m of modes) if (!ALL_MODES.includes(m)) throw new RangeError(`Cannot run mode ${m}: it must be one of ${ALL_MODES.join(', ')}`)
if (latencies.some(l => !(Number.isFinite(l) && l >= 0))) throw new RangeError(`Cannot use --latency-ms ${args['latency-ms']}: it must be a comma list of numbers >= 0`)
if (!(Number.isInteger(tokens) && tokens >= 1)) throw new RangeError(`Cannot generate --tokens ${args.tokens}: it must be an integer >= 1`)
if (!(Number.isFinite(draftCostMs) && draftCostMs >= 0)) throw new RangeError(`Cannot use --draft-cost-ms ${args['draft-cost-ms']}: it must be a number >= 0`)
if (!(serverCost.msPerRun >= 0 && serverCost.msPerRow >= 0)) throw new RangeError(`Cannot use --server-run-ms ${args['server-run-ms']} --server-row-ms ${args['server-row-ms']}: they must be numbers >= 0`)
if (!(Number.isFinite(sampling.temperature) && (sampling.temperature as number) >= 0)) throw new RangeError(`Cannot use --temperature ${args.temperature}: it must be a number >= 0`)
if (!(Number.isSafeInteger(sampling.seed) && (sampling.seed as number) >= 0)) throw new RangeError(`Cannot use --seed ${args.seed}: it must be an integer >= 0`)
if (!['cpu', 'webgpu', 'cuda'].includes(serverDevice)) throw new RangeError(`Cannot serve on --device ${serverDevice}: it must be cpu, webgpu or cuda`)
if (!(Number.isInteger(rounds) && rounds >= 1)) throw new RangeError(`Cannot use --rounds ${args.rounds}: it must be an integer >= 1`)
if (carryMaxBytes !== undefined && !(Number.isInteger(carryMaxBytes) && carryMaxBytes >= 0)) throw new RangeError(`Cannot use --carry-max-bytes ${args['carry-max-bytes']}: it must be an integer >= 0`)
if (!(Number.isInteger(numPrompts) && numPrompts >= 1 && numPrompts <= 3)) throw new RangeError(`Cannot use --prompts ${args.prompts}: there are 3 reference prompts`)

interface Reference { prompt_ids: number[], greedy_new_ids: number[] }
/** Tree speculation when not swept, and the limits of the adaptive modes. */
const TREE_DEFAULTS = { branches: 8, branchLength: 4 }
/** A configuration's result and the server runs it caused (summed over the servers). */
interface Measured { r: SpecResult, runsComputed: number, runsDropped: number }
type Report = (cfg: SpecConfig, m: Measured, extra?: Record<string, unknown>) => void
const reference = (JSON.parse(readFileSync(join(TARGET, 'reference.json'), 'utf8')) as { prompts: Reference[] }).prompts.slice(0, numPrompts)
const prompts = reference.map(r => r.prompt_ids)
const machine = { cores: availableParallelism(), cpu: cpus()[0]?.model ?? 'unknown', node: process.version }

if (args['kernel-delay'] && args['netns-child'] === undefined) {
  try {
    await runUnderKernelDelay()
  } catch (err) {
    if (!(err instanceof KernelDelayUnavailableError)) throw err
    process.stderr.write(`${err.message}\n`)
    process.exitCode = 2
  }
} else {
  if (args['netns-child'] !== undefined) for (const L of latencies) emit({ metric: 'kernel_delay_tcp_connect_ms', value: await loopbackConnectMs(), unit: 'ms', delay, latencyMs: L, expectedMs: 2 * L })
  for (const L of latencies) await benchLatency(L)
}

/** Re-executes this script once per latency inside a namespace with that much kernel delay. */
async function runUnderKernelDelay (): Promise<void> {
  for (const L of latencies) {
    const argv = (kind: string): string[] => [process.execPath, ...process.execArgv, fileURLToPath(import.meta.url), '--netns-child', kind, '--latency-ms', String(L),
      '--tokens', String(tokens), '--prompts', String(numPrompts), '--modes', [...modes].join(','), '--draft', draftDir, '--draft-cost-ms', String(draftCostMs),
      '--server-run-ms', String(serverCost.msPerRun), '--server-row-ms', String(serverCost.msPerRow),
      '--temperature', String(sampling.temperature), '--seed', String(sampling.seed), '--rounds', String(rounds), '--device', serverDevice,
      ...(sweep ? [] : ['--no-sweep']), ...(args['cold-speculation'] ? ['--cold-speculation'] : []),
      ...(carryMaxBytes !== undefined ? ['--carry-max-bytes', String(carryMaxBytes)] : [])]
    const code = await runInDelayedNamespace(`petal-bench-${process.pid}`, L, argv)
    if (code !== 0) throw new Error(`The benchmark at kernel latency ${L} ms exited with code ${code}`)
  }
}

async function loadDrafter (): Promise<{ drafter: Drafter, kind: string, release: () => Promise<void> }> {
  const slowed = (drafter: Drafter): Drafter => draftCostMs > 0 ? new SlowDrafter(drafter, draftCostMs) : drafter
  if (existsSync(join(draftDir, 'config.json'))) {
    const model = await loadDraftModel(Checkpoint.open(draftDir))
    return { drafter: slowed(new DraftModelDrafter(model)), kind: 'draft-model', release: async () => { await model.release() } }
  }
  process.stderr.write(`warning: no draft model at ${draftDir}: sync and pipelined use n-gram lookup\n`)
  return { drafter: slowed(new NgramDrafter()), kind: 'ngram', release: async () => {} }
}

/** One latency: a fresh swarm, warm-up, then every selected mode. */
async function benchLatency (L: number): Promise<void> {
  const started = performance.now()
  const inProcess = delay === 'in-process' ? L : 0
  const cleanup: Array<() => Promise<void>> = [] // undone in reverse order, also on error
  try {
    const swarm = await startSpecSwarm(TARGET, inProcess, serverArgs)
    cleanup.push(swarm.close)
    const draft = await loadDrafter()
    cleanup.push(draft.release)
    const open = async (push: boolean): Promise<LanguageModel> => {
      const model = await LanguageModel.swarm(swarm.client, TARGET, { push, sendDelayMs: inProcess, ...(carryMaxBytes !== undefined ? { carryMaxBytes } : {}) })
      cleanup.push(async () => { await model.release() })
      return model
    }
    const models = { client: await open(false), push: await open(true) }
    const config = { tokens, prompts: prompts.length, spans: swarm.spans, drafter: draft.kind, model: 'stories260k', ...(greedy ? {} : { sampling }), ...(draftCostMs > 0 ? { draftCostMs } : {}), ...(serverCost.msPerRun + serverCost.msPerRow > 0 ? { serverCost } : {}), ...(args['cold-speculation'] ? { coldSpeculation: true } : {}), ...(serverDevice !== 'cpu' ? { serverDevice } : {}), ...(carryMaxBytes !== undefined ? { carryMaxBytes } : {}) }
    const measure = async (cfg: SpecConfig): Promise<Measured> => {
      const before = await swarm.totals()
      const r = await measureConfig(cfg.push ? models.push : models.client, draft.drafter, prompts, tokens, cfg, { coldSpeculation: args['cold-speculation'], sampler: sampling })
      const after = await swarm.totals()
      return { r, runsComputed: after.runsComputed - before.runsComputed, runsDropped: after.runsDropped - before.runsDropped }
    }
    const plainClient: SpecConfig = { mode: 'plain-client', speculation: 'none', push: false, k: 1, depth: 1, adaptive: false, branches: 0, branchLength: 0 }
    const fixed = (mode: 'sync' | 'pipelined', k: number, depth: number, adaptive = false): SpecConfig =>
      ({ mode: adaptive ? `${mode}-adaptive` : mode, speculation: mode, push: true, k, depth: mode === 'sync' ? 1 : depth, adaptive, branches: adaptive ? TREE_DEFAULTS.branches : 0, branchLength: TREE_DEFAULTS.branchLength })
    // warm-up: each transport and each decoder once, a few tokens, not reported
    for (const cfg of [plainClient, { ...plainClient, push: true }, fixed('sync', 4, 1), fixed('pipelined', 4, 4)]) {
      await measureConfig(cfg.push ? models.push : models.client, draft.drafter, prompts.slice(0, 1), Math.min(tokens, 8), cfg, { sampler: sampling })
    }
    const plain = await measure(plainClient)
    // what every speculative line must decode: greedy, plain decoding's text; sampled, the seed's speculative text
    const expected = greedy ? plain.r.tokens : await sampledChainTokens(draft.drafter)
    const rates = new Map<string, number>() // tokens/s of each mode's reported line (sweep points aside)
    const report: Report = (cfg, m, extra = {}) => {
      const { r } = m
      if (extra.sweep !== true) rates.set(cfg.mode, r.tokensPerSecond)
      const matches = greedy
        ? {
            tokensMatchPlain: r.tokens.every((t, i) => sameIds(t, plain.r.tokens[i] ?? [])),
            tokensMatchReference: r.tokens.every((t, i) => sameIds(t.slice(0, reference[i]?.greedy_new_ids.length), reference[i]?.greedy_new_ids.slice(0, t.length) ?? []))
          }
        : cfg.speculation === 'none' ? {} : { tokensMatchSampledChain: r.tokens.every((t, i) => sameIds(t, expected[i] ?? [])) }
      emit({
        metric: 'speculation_tokens_per_second', value: r.tokensPerSecond, unit: 'tokens/s',
        mode: cfg.mode, latencyMs: L, delay, sweep: false, ...extra,
        tokensPerSecond: round(r.tokensPerSecond), ttftMs: round(r.ttftMs), itlP50Ms: round(r.itlP50Ms), itlP95Ms: round(r.itlP95Ms),
        acceptance: round(r.acceptance), cancelledRuns: r.cancelledRuns, runsSubmitted: r.runsSubmitted,
        k: cfg.speculation === 'none' ? 0 : cfg.k, depth: cfg.depth, adaptive: cfg.adaptive, push: cfg.push,
        branches: cfg.branches, branchLength: cfg.branchLength, branchRows: r.branchRows, rescued: r.rescued, branchTokens: r.branchTokens,
        ...(cfg.adaptive ? { finalPlans: r.plans } : {}),
        draftsProposed: r.draftsProposed, draftsAccepted: r.draftsAccepted,
        serverRunsComputed: m.runsComputed, serverRunsDropped: m.runsDropped,
        ...matches,
        aggregation: 'tokensPerSecond: all tokens / all time; ttftMs: median over prompts; itl: pooled gaps; counts: summed',
        machine, config
      })
    }
    report(plainClient, plain)
    if (modes.has('plain-push')) report({ ...plainClient, mode: 'plain-push', push: true }, await measure({ ...plainClient, mode: 'plain-push', push: true }))
    // each speculative mode with its candidate settings: its sweep's finalists, or one fixed setting
    const chosen: Array<{ finalists: SpecConfig[], chosenBy?: string }> = []
    for (const mode of ['sync', 'pipelined'] as const) {
      if (modes.has(mode)) chosen.push(await bestOf(mode, false, measure, report, expected))
      if (modes.has(`${mode}-tree`)) chosen.push(await bestOf(mode, true, measure, report, expected))
      if (modes.has(`${mode}-adaptive`)) chosen.push({ finalists: [fixed(mode, DEFAULT_K[mode], 4, true)] })
    }
    const candidates = chosen.flatMap(c => c.finalists)
    const measured = await measureInRounds(candidates, measure) // [round][candidate]
    // per mode: the finalist with the best median over the rounds, and its result in each round
    const byRound: Measured[][] = measured.map(() => [])
    let first = 0
    for (const { finalists, chosenBy } of chosen) {
      const rates = measured.map(round => finalists.map((_, f) => (round[first + f] as Measured).r.tokensPerSecond))
      const pick = fastestFinalist(rates)
      const results = measured.map(round => round[first + pick] as Measured)
      results.forEach((m, r) => byRound[r]?.push(m))
      const others = finalists.length > 1
        ? { finalists: finalists.map((cfg, f) => ({ k: cfg.k, depth: cfg.depth, branches: cfg.branches, branchLength: cfg.branchLength, medianTokensPerSecond: round(median(rates.map(x => x[f] as number))) })) }
        : {}
      report(finalists[pick] as SpecConfig, medianRound(results), { ...(chosenBy !== undefined ? { chosenBy } : {}), ...(rounds > 1 ? { rounds: results.map(m => round(m.r.tokensPerSecond)) } : {}), ...others })
      first += finalists.length
    }
    emitGoalRatios(L, rates, byRound.map(round => new Map(round.map((m, i) => [chosen[i]?.finalists[0]?.mode as string, m.r.tokensPerSecond]))))
  } finally {
    for (const undo of cleanup.reverse()) await undo()
    process.stderr.write(`latency ${L} ms (${delay}): ${((performance.now() - started) / 1000).toFixed(1)} s\n`)
  }
}

/**
 * The goals as ratios of the lines just measured: pipelined (the SDK's adaptive
 * default, and the best pipelined line, trees included) over sync (chains: the baseline the
 * issue defines), over the best sync line (trees included), over plain client-mediated, and
 * the best pipelined line over the best line of any other mode.
 */
function emitGoalRatios (L: number, rates: ReadonlyMap<string, number>, roundRates: ReadonlyArray<ReadonlyMap<string, number>>): void {
  const bestOf = (of: ReadonlyMap<string, number>, pick: (mode: string) => boolean): [string, number] | undefined =>
    [...of].filter(([mode]) => pick(mode)).sort((a, b) => b[1] - a[1])[0]
  const ratio = (a: number | undefined, b: number | undefined): number | undefined => a === undefined || b === undefined ? undefined : round(a / b)
  // the best pipelined mode by its reported (median) rate; with rounds, each ratio is the median of the rounds' ratios
  const pipelined = bestOf(rates, m => m.startsWith('pipelined'))?.[0]
  const goal = (of: ReadonlyMap<string, number>): Record<string, number | undefined> => {
    const top = pipelined === undefined ? undefined : of.get(pipelined)
    const withPlain = new Map([...rates, ...of]) // the plain lines are measured once
    return {
      adaptiveOverSync: ratio(of.get('pipelined-adaptive'), of.get('sync')),
      bestPipelinedOverSync: ratio(top, of.get('sync')),
      bestPipelinedOverBestSync: ratio(top, bestOf(of, m => m.startsWith('sync'))?.[1]),
      bestPipelinedOverPlainClient: ratio(top, withPlain.get('plain-client')),
      bestPipelinedOverBestOther: ratio(top, bestOf(withPlain, m => !m.startsWith('pipelined'))?.[1])
    }
  }
  const perRound = roundRates.map(goal)
  const ratios = Object.fromEntries(Object.keys(perRound[0] ?? {}).map(key => {
    const xs = perRound.map(r => r[key]).filter((x): x is number => x !== undefined)
    return [key, xs.length === 0 ? undefined : round(median(xs))]
  }))
  const value = ratios.bestPipelinedOverSync ?? ratios.bestPipelinedOverBestOther
  if (value !== undefined) {
    emit({
      metric: 'speculation_goal_ratios', value, unit: 'x', latencyMs: L, delay, bestPipelined: pipelined, ...ratios,
      ...(perRound.length > 1 ? { rounds: perRound.length, bestPipelinedOverSyncByRound: perRound.map(r => r.bestPipelinedOverSync) } : {})
    })
  }
}

/**
 * Measures `cfgs` `rounds` times, rotating their order each round (a mode measured first in
 * one round comes later in the next, so the machine's drift does not favour one); result
 * [round][index of cfg].
 */
async function measureInRounds (cfgs: readonly SpecConfig[], run: (cfg: SpecConfig) => Promise<Measured>): Promise<Measured[][]> {
  const out: Measured[][] = []
  for (let r = 0; r < rounds; r++) {
    const results = new Array<Measured>(cfgs.length)
    for (let j = 0; j < cfgs.length; j++) {
      const i = (j + r) % cfgs.length
      results[i] = await run(cfgs[i] as SpecConfig)
    }
    out.push(results)
  }
  return out
}

/** The round whose tokens/s is the median (the lower middle for an even count). */
function medianRound (results: readonly Measured[]): Measured {
  const sorted = [...results].sort((a, b) => a.r.tokensPerSecond - b.r.tokensPerSecond)
  return sorted[Math.floor((sorted.length - 1) / 2)] as Measured
}

/**
 * Sampled decoding's text for each prompt, decided locally (the whole target in this process,
 * no latency) by a sync chain of 4 drafts: the text every speculative line must reproduce.
 */
async function sampledChainTokens (drafter: Drafter): Promise<number[][]> {
  const model = await LocalModel.load(Checkpoint.open(TARGET))
  try {
    const out: number[][] = []
    for (const promptIds of prompts) {
      const { tokens: ids } = await decodeAll(new LocalTarget(model), { promptIds, sampler: new Sampler(sampling), maxNewTokens: tokens, eosTokenIds: [], mode: 'sync', drafter, k: 4, adaptive: false, branches: 0 })
      out.push(ids)
      await drafter.close?.()
    }
    return out
  } finally {
    await model.release()
  }
}

/**
 * Sweeps the mode's settings (when enabled). Returns the points to measure again in rounds: the
 * fastest that decoded `expected`, and with several rounds the runner-up too (a point's one
 * sweep measurement is as noisy as the gap between neighbours, and the baseline's chance pick
 * would move the goal ratios).
 */
async function bestOf (mode: 'sync' | 'pipelined', tree: boolean, run: (cfg: SpecConfig) => Promise<Measured>, report: Report, expected: number[][]): Promise<{ finalists: SpecConfig[], chosenBy: string }> {
  const label = tree ? `${mode}-tree` : mode
  const asConfig = (point: SweepPoint): SpecConfig => ({ mode: label, speculation: mode, push: true, adaptive: false, ...point })
  const fallback: SweepPoint = { k: DEFAULT_K[mode] as number, depth: mode === 'sync' ? 1 : 4, ...(tree ? TREE_DEFAULTS : { branches: 0, branchLength: 0 }) }
  if (!sweep) return { finalists: [asConfig(fallback)], chosenBy: 'default' }
  const swept: Array<SweptPoint<SweepPoint>> = []
  for (const point of sweepPoints(mode, tree)) {
    const cfg = asConfig(point)
    const m = await run(cfg)
    report(cfg, m, { sweep: true })
    swept.push({ point, tokensPerSecond: m.r.tokensPerSecond, correct: m.r.tokens.every((t, i) => sameIds(t, expected[i] ?? [])) })
  }
  const finalists = sweepFinalists(swept, rounds > 1 ? 2 : 1)
  return { finalists: (finalists.length > 0 ? finalists : [fallback]).map(asConfig), chosenBy: 'sweep' }
}

function sameIds (a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i])
}

function round (x: number): number {
  return Number(x.toPrecision(5))
}
