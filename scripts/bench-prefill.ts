/**
 * Pipelined prefill benchmark: a long prompt through a 3-server loopback swarm (`petal-node
 * serve` processes with a third of the blocks each), sent as chunks that follow one another
 * along the route (`pipelinePrefill: true`: the servers compute different chunks at once;
 * 'auto', the default, would not chunk here, where the servers share one host) against one
 * run through one server after another (`pipelinePrefill: false`). Each round times both ways
 * in turn, the order rotated: a new session, the prompt (a new one each time), the first
 * token. One JSON line per figure: median time to the first token, and the ratio.
 *
 * All three servers share this machine's cores, so with real compute one server's chunk
 * slows the others'; `--server-run-ms X --server-row-ms Y` make each server hold its device
 * idle X ms more per run and Y ms more per row, as servers on machines of their own, each
 * busy with a bigger model, would (the time pipelining overlaps).
 *
 *   npm run bench:prefill
 *   npm run bench:prefill -- --models random-200m --prompt-tokens 512
 *   npm run bench:prefill -- --server-run-ms 2 --server-row-ms 0.5
 *   npm run bench:prefill -- --quick        # CI smoke run
 */
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { LanguageModel } from '../client/language-model.js'
import { SwarmClient } from '../client/swarm/swarm-client.js'
import { Checkpoint } from '../model/checkpoint.js'
import { LocalSwarm } from '../node/local-swarm.js'
import { fullyCovered, waitForServers } from '../test/helpers/swarm.js'
import { emit, median } from './lib/bench-output.js'
import { ensureRandomModel } from './lib/random-models.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    models: { type: 'string' },
    'prompt-tokens': { type: 'string' },
    rounds: { type: 'string' },
    'server-run-ms': { type: 'string' },
    'server-row-ms': { type: 'string' }
  }
})
const promptTokens = Number(args['prompt-tokens'] ?? (args.quick ? 96 : 384))
const rounds = Number(args.rounds ?? (args.quick ? 1 : 5))
const serverCost = { msPerRun: Number(args['server-run-ms'] ?? 0), msPerRow: Number(args['server-row-ms'] ?? 0) }
if (!(Number.isInteger(promptTokens) && promptTokens >= 2)) throw new RangeError(`Cannot send --prompt-tokens ${args['prompt-tokens']}: an integer >= 2`)
if (!(Number.isInteger(rounds) && rounds >= 1)) throw new RangeError(`Cannot run --rounds ${args.rounds}: an integer >= 1`)
if (!(serverCost.msPerRun >= 0 && serverCost.msPerRow >= 0)) throw new RangeError('--server-run-ms and --server-row-ms must be numbers >= 0')

for (const name of (args.models ?? 'stories260k').split(',')) {
  const dir = name === 'stories260k' ? join(ROOT, 'models', 'stories260k') : ensureRandomModel(name.replace(/^random-/, '').toUpperCase())
  await benchModel(name, dir)
}

async function benchModel (name: string, dir: string): Promise<void> {
  const config = Checkpoint.open(dir).config
  const L = config.numLayers
  const cuts = [0, Math.round(L / 3), Math.round((2 * L) / 3), L]
  const swarm = new LocalSwarm(dir)
  const serverArgs = ['--simulated-run-ms', String(serverCost.msPerRun), '--simulated-row-ms', String(serverCost.msPerRow)]
  try {
    for (let i = 0; i < 3; i++) await swarm.add({ blocks: `${cuts[i]}:${cuts[i + 1]}`, args: serverArgs })
    const client = await SwarmClient.connect({ bootstrap: [swarm.bootstrap] })
    await waitForServers(client, name, L, fullyCovered(L))
    const ways: Array<[string, LanguageModel]> = [
      ['pipelined', await LanguageModel.swarm(client, dir, { pipelinePrefill: true })], // 'auto' would not: the servers share this host
      ['whole', await LanguageModel.swarm(client, dir, { pipelinePrefill: false })]
    ]
    // a prompt of its own each time (random ids), so no cache holds any of it
    let seed = 1
    const prompt = (): number[] => Array.from({ length: promptTokens }, () => { seed = (seed * 48271) % 2147483647; return 3 + (seed % (config.vocabSize - 3)) })
    const firstToken = async (model: LanguageModel): Promise<number> => {
      const began = performance.now()
      const gen = model.generate(prompt(), { maxNewTokens: 1, temperature: 0, stopAtEos: false })
      for (let step = await gen.next(); step.done !== true; step = await gen.next()) { /* the one token */ }
      return performance.now() - began
    }
    for (const [, model] of ways) await firstToken(model) // warm-up
    const times = new Map<string, number[]>(ways.map(([way]) => [way, []]))
    for (let r = 0; r < rounds; r++) {
      for (let w = 0; w < ways.length; w++) {
        const [way, model] = ways[(w + r) % ways.length] as [string, LanguageModel]
        times.get(way)?.push(await firstToken(model))
      }
    }
    const shape = { promptTokens, rounds, servers: cuts.slice(0, 3).map((c, i) => `[${c},${cuts[i + 1]})`).join(' '), serverRunMs: serverCost.msPerRun, serverRowMs: serverCost.msPerRow }
    const ms = (way: string): number => median(times.get(way) ?? [])
    for (const [way] of ways) emit({ model: name, metric: `prefill_ttft_ms_${way}`, value: ms(way), unit: 'ms', config: shape })
    emit({ model: name, metric: 'prefill_ttft_whole_over_pipelined', value: ms('whole') / ms('pipelined'), unit: 'x', config: shape })
    for (const [, model] of ways) await model.release()
    await client.close()
  } finally {
    await swarm.close()
  }
}
