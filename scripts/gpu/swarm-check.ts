/**
 * A real swarm on one machine's accelerator: three `petal-node serve --device D` processes on
 * 127.0.0.1 split a model into thirds; the client generates through them. Bundled by
 * scripts/gpu/build.sh (run by scripts/gpu/device-swarm.sh, which sets PETAL_NODE_CLI to the
 * bundled CLI); runs from a checkout too:
 *
 *   node --import tsx scripts/gpu/swarm-check.ts --model models/stories260k --device cpu --draft models/stories260k-draft
 *
 * JSON lines: the servers' devices; for every prompt of the model's reference.json, whether
 * greedy tokens through the swarm (client-mediated, push, and pipelined speculation with
 * --draft) equal the reference; with --speed, decode ms/token of local generation on the same
 * device against the swarm; whether every prompt generated four times at once (which the
 * servers batch) still equals the reference. With --quantize the servers hold their blocks in
 * that format, and the expected tokens are a local model's of that format on the same device.
 * The `petal-node status` table goes to stderr.
 */
import { existsSync, readFileSync } from 'node:fs'
import { availableParallelism, cpus } from 'node:os'
import { basename, join } from 'node:path'
import { parseArgs } from 'node:util'
import { formatStatus } from '../../cli/status-format.js'
import { DraftModelDrafter, loadDraftModel } from '../../client/decoding/index.js'
import { LanguageModel, type SwarmModelOptions } from '../../client/language-model.js'
import { SwarmClient } from '../../client/swarm/swarm-client.js'
import { collectSwarmStatus } from '../../client/swarm/swarm-status.js'
import { Checkpoint } from '../../model/checkpoint.js'
import type { Device } from '../../model/ort-session.js'
import type { Quantization } from '../../model/quantize.js'
import { LocalSwarm } from '../../node/local-swarm.js'
import { fullyCovered, waitForServers } from '../../test/helpers/swarm.js'
import { decodeMsPerToken, emit } from '../lib/bench-output.js'

const { values: args } = parseArgs({
  options: {
    model: { type: 'string' },
    device: { type: 'string', default: 'webgpu' },
    draft: { type: 'string' },
    speed: { type: 'boolean', default: false },
    tokens: { type: 'string', default: '64' },
    quantize: { type: 'string', default: 'none' }
  }
})
if (args.model === undefined) throw new Error('usage: swarm-check --model DIR [--device webgpu|cpu] [--draft DIR] [--speed] [--tokens N]')
const dir = args.model
const device = args.device as Device
/** The servers' --quantize: their tokens are then checked against a local model of that format on the same device. */
const quantization = args.quantize as Quantization
const tokens = Number(args.tokens)
const name = basename(dir)
const L = Checkpoint.open(dir).config.numLayers
const cuts = [0, Math.round(L / 3), Math.round((2 * L) / 3), L]
const machine = { cores: availableParallelism(), cpu: cpus()[0]?.model ?? 'unknown' }

interface Case { promptIds: number[], expected: number[] }
/** Reference prompts: stories260k style ({prompts: [...]}) or tiny-llama-gqa style (one input). */
function referenceCases (): Case[] {
  const file = join(dir, 'reference.json')
  if (!existsSync(file)) return []
  const ref = JSON.parse(readFileSync(file, 'utf8')) as { prompts?: Array<{ prompt_ids: number[], greedy_new_ids: number[] }>, input_ids?: number[], greedy_new_ids?: number[] }
  if (ref.prompts !== undefined) return ref.prompts.map(p => ({ promptIds: p.prompt_ids, expected: p.greedy_new_ids }))
  if (ref.input_ids !== undefined && ref.greedy_new_ids !== undefined) return [{ promptIds: ref.input_ids, expected: ref.greedy_new_ids }]
  return []
}

async function greedy (model: LanguageModel, c: Case, extra: Record<string, unknown> = {}): Promise<number[]> {
  const gen = model.generate(c.promptIds, { maxNewTokens: c.expected.length, temperature: 0, stopAtEos: false, ...extra })
  let step = await gen.next()
  while (step.done !== true) step = await gen.next()
  return step.value.tokens
}

const swarm = new LocalSwarm(dir)
try {
  const t0 = performance.now()
  for (let i = 0; i < 3; i++) await swarm.add({ blocks: `${cuts[i]}:${cuts[i + 1]}`, args: ['--device', device, '--quantize', quantization] })
  const client = await SwarmClient.connect({ bootstrap: [swarm.bootstrap] })
  const servers = await waitForServers(client, name, L, fullyCovered(L), 60_000)
  emit({ model: name, metric: 'swarm_ready_s', value: (performance.now() - t0) / 1000, unit: 's', devices: servers.map(s => s.info.device), spans: servers.map(s => `[${s.info.start},${s.info.end})`), machine })
  process.stderr.write(formatStatus(await collectSwarmStatus(client, { modelId: name })))

  let cases = referenceCases()
  const expected = quantization === 'none' ? 'reference.json' : `local ${quantization} model on ${device}`
  if (quantization !== 'none') {
    const local = await LanguageModel.local(dir, { device, quantization })
    cases = await Promise.all(cases.map(async c => ({ promptIds: c.promptIds, expected: await greedy(local, c) })))
    await local.release()
  }
  const modes: Array<[string, SwarmModelOptions, Record<string, unknown>]> = [['client-mediated', {}, {}], ['push', { push: true }, {}]]
  if (args.draft !== undefined) {
    const draft = await loadDraftModel(Checkpoint.open(args.draft))
    modes.push(['pipelined', { push: true }, { speculation: 'pipelined', drafter: new DraftModelDrafter(draft), branches: 8 }])
  }
  for (const [mode, opts, extra] of modes) {
    const model = await LanguageModel.swarm(client, dir, opts)
    let equal = 0
    for (const c of cases) if (JSON.stringify(await greedy(model, c, extra)) === JSON.stringify(c.expected)) equal++
    await model.release()
    emit({ model: name, metric: `swarm_greedy_prompts_equal_reference_${mode}`, value: equal, unit: `of ${cases.length}`, device, expected })
  }

  // every reference prompt four times at once: the servers batch their runs (--max-batch 8, the default)
  if (cases.length > 0) {
    const batchedRuns = async (): Promise<number> => (await client.refresh(name, L)).reduce((n, s) => n + (s.info.metrics?.runsBatched ?? 0), 0)
    const before = await batchedRuns()
    const model = await LanguageModel.swarm(client, dir, {})
    const at = cases.flatMap(c => [c, c, c, c])
    const t = performance.now()
    const equal = (await Promise.all(at.map(async c => JSON.stringify(await greedy(model, c)) === JSON.stringify(c.expected)))).filter(Boolean).length
    const seconds = (performance.now() - t) / 1000
    await model.release()
    emit({ model: name, metric: 'swarm_greedy_at_once_equal_reference', value: equal, unit: `of ${at.length}`, device, seconds, expected })
    emit({ model: name, metric: 'swarm_runs_batched_at_once', value: (await batchedRuns()) - before, unit: 'runs', device })
  }

  if (args.speed) {
    const prompts = [0, 1, 2].map(p => [1, 3 + p * 17, 5 + p * 31, 7])
    const local = await LanguageModel.local(dir, { device })
    await decodeMsPerToken(local, prompts.slice(0, 1), tokens) // warm-up
    const localMs = await decodeMsPerToken(local, prompts, tokens)
    await local.release()
    emit({ model: name, metric: 'local_ms_per_token', value: localMs, unit: 'ms', device, tokens })
    for (const [mode, opts] of modes.slice(0, 2)) {
      const model = await LanguageModel.swarm(client, dir, opts)
      await decodeMsPerToken(model, prompts.slice(0, 1), tokens)
      const swarmMs = await decodeMsPerToken(model, prompts, tokens)
      await model.release()
      emit({ model: name, metric: `swarm_ms_per_token_${mode}`, value: swarmMs, unit: 'ms', device, tokens })
      emit({ model: name, metric: `swarm_vs_local_${mode}`, value: localMs / swarmMs, unit: 'x', device })
      emit({ model: name, metric: `overhead_per_hop_ms_${mode}`, value: (swarmMs - localMs) / (mode === 'push' ? 2 : 3), unit: 'ms', device })
    }
  }
  await client.close()
} finally {
  await swarm.close()
}
