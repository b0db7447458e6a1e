/**
 * Swarm benchmark: tokens/s of local generation against a 3-server loopback swarm, and
 * the overhead each hop adds, for stories260k and a random ~200M-parameter Llama.
 * Greedy decoding, EOS ignored; warm-up generation first; one JSON line per figure.
 *
 *   npm run bench:swarm                  # both models (writes .cache/models/random-200m once)
 *   npm run bench:swarm -- --quick       # stories260k, few tokens (CI smoke run)
 *   npm run bench:swarm -- --models random-200m --server-args="--graph-blocks 4"
 *   npm run bench:swarm -- --models ~/models/my-llama     # any checkpoint folder
 *
 * Local and swarm generation are timed in turn, prompt by prompt (2 rounds over 3 prompts), and
 * ratios are medians of these pairs: this machine's speed drifts by 20% within minutes. Two
 * layouts, each against local generation with the same engine: servers with one ORT session per
 * block against a local model with one per block ("per-block", the defaults), and servers with one
 * session each (--graph-blocks) against a local model with one session for all blocks ("per-server").
 * Push mode twice: "push" as the SDK sends it by default (every server also replies on its own)
 * and "push-carried" (carryMaxBytes CARRY_SUGGESTED_BYTES: the last server returns every
 * server's output, one message per run).
 * per-hop overhead = (swarm ms/token - local ms/token) / hops, client-mediated: each hop is
 * one round trip (send, queue, compute is the same as local, reply). Two anatomies take a hop
 * apart (round trip vs the compute the server reports): back to back on one server ("hop_*")
 * and in generation order through all three ("pipeline_hop_*", with the client's LM head after
 * the last reply, "pipeline_client_head_ms", against the same head back to back).
 * CPU per generated token (Linux: client and server processes, user + system, from /proc;
 * "cpu_ms_per_token_*") says whether the swarm waits or computes: on a machine with fewer
 * cores than processes it is CPU time, not latency, that a hop adds.
 */
import { availableParallelism } from 'node:os'
import { basename, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { LanguageModel, type SwarmModelOptions } from '../client/language-model.js'
import { SwarmClient } from '../client/swarm/swarm-client.js'
import { CARRY_SUGGESTED_BYTES } from '../client/swarm/swarm-target.js'
import { Checkpoint } from '../model/checkpoint.js'
import { LocalSwarm } from '../node/local-swarm.js'
import { fullyCovered, waitForServers } from '../test/helpers/swarm.js'
import { bareNode, inferenceStream, next, openSession } from '../test/helpers/wire-client.js'
import { decodeTensor, encodeTensor } from '../protocol/tensor-codec.js'
import { ClientParts } from '../model/client-parts.js'
import { argmax } from '../client/sampling/index.js'
import { decodeMsPerToken, emit, median } from './lib/bench-output.js'
import { ensureRandomModel } from './lib/random-models.js'
import { CpuTally } from './lib/process-cpu.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const { values: args } = parseArgs({
  options: { quick: { type: 'boolean', default: false }, tokens: { type: 'string' }, models: { type: 'string' }, 'server-args': { type: 'string' } }
})
/** Extra `petal-node serve` flags for every server, e.g. "--graph-blocks 4" or "--threads 1". */
const serverArgs = (args['server-args'] ?? '').split(' ').filter(Boolean)
const tokens = Number(args.tokens ?? (args.quick ? 16 : 64))
/** Rounds over the prompts; each prompt is timed locally and through the swarm in turn. */
const ROUNDS = args.quick ? 1 : 2
const names = (args.models ?? (args.quick ? 'stories260k' : 'stories260k,random-200m')).split(',')

for (const name of names) {
  // a name with a slash is a checkpoint folder of one's own
  const dir = name.includes('/') ? name : name === 'stories260k' ? join(ROOT, 'models', 'stories260k') : ensureRandomModel(name.replace(/^random-/, '').toUpperCase())
  await benchModel(basename(dir), dir)
}

async function benchModel (name: string, dir: string): Promise<void> {
  const L = Checkpoint.open(dir).config.numLayers
  const V = Checkpoint.open(dir).config.vocabSize
  const prompts = [0, 1, 2].map(p => Array.from({ length: 8 }, (_, i) => (i === 0 ? 1 : 3 + ((i * 7919 + p * 104729) % Math.min(V - 3, 509)))))
  const config = { tokens, prompts: prompts.length, rounds: ROUNDS, blocks: L }

  // local models stay loaded: each is timed between the swarm's generations, so that a
  // machine whose speed drifts moves both sides of each ratio alike
  const cuts = [0, Math.round(L / 3), Math.round((2 * L) / 3), L]
  const widest = Math.max(...cuts.slice(1).map((c, i) => c - (cuts[i] as number)))
  // Servers as they start by default (one ORT session per block: any sub-span routable),
  // against local generation as it runs by default (also one session per block); and servers
  // with one session each (--graph-blocks) against local generation with one session for all
  // blocks, so that neither side of a ratio has the faster engine.
  const customGraphBlocks = serverArgs.includes('--graph-blocks') ? Number(serverArgs[serverArgs.indexOf('--graph-blocks') + 1]) : 1
  if (!(Number.isInteger(customGraphBlocks) && customGraphBlocks >= 1)) throw new RangeError(`Cannot read --graph-blocks in --server-args "${serverArgs.join(' ')}": write it as "--graph-blocks N" with N >= 1`)
  const layouts: Array<[string, string[], number]> = serverArgs.length > 0
    ? [['custom', serverArgs, customGraphBlocks]]
    : [['per-block', [], 1], ...(args.quick ? [] : [['per-server', ['--graph-blocks', String(widest)], L]] as Array<[string, string[], number]>)]
  for (const [layout, extra, localBlocksPerGraph] of layouts) {
    const local = await LanguageModel.local(dir, { blocksPerGraph: localBlocksPerGraph })
    await decodeMsPerToken(local, prompts.slice(0, 1), tokens) // warm-up
    const localMs = await benchSwarm(name, dir, L, cuts, layout, extra, local, prompts, config)
    await local.release()
    emit({ model: name, metric: `local_tokens_per_second${metricSuffix(layout)}`, value: 1000 / median(localMs), unit: 'tokens/s', config: { ...config, samples: localMs.length, localBlocksPerGraph } })
  }
}

/** Metric names carry the layout, except for the default one. */
function metricSuffix (layout: string): string {
  return layout === 'per-block' ? '' : `_${layout}`
}

/** Times the layout's swarm against `local`, prompt by prompt; returns the local samples (ms/token). */
async function benchSwarm (name: string, dir: string, L: number, cuts: number[], layout: string, extra: string[], local: LanguageModel, prompts: number[][], base: object): Promise<number[]> {
  const config = { ...base, sessions: layout, ...(extra.length > 0 ? { serverArgs: extra.join(' ') } : {}) }
  const suffix = metricSuffix(layout)
  const swarm = new LocalSwarm(dir)
  try {
    for (let i = 0; i < 3; i++) await swarm.add({ blocks: `${cuts[i]}:${cuts[i + 1]}`, args: extra })
    const client = await SwarmClient.connect({ bootstrap: [swarm.bootstrap] })
    await waitForServers(client, basename(dir), L, fullyCovered(L))
    // push: each server also replies on its own (the SDK's default); push-carried: the last
    // server returns every server's output (carryMaxBytes, one message per run)
    const modes: Array<[string, SwarmModelOptions]> = [['client-mediated', {}], ['push', { push: true }], ['push-carried', { push: true, carryMaxBytes: CARRY_SUGGESTED_BYTES }]]
    const models = await Promise.all(modes.map(async ([, opts]) => await LanguageModel.swarm(client, dir, opts)))
    for (const model of models) await decodeMsPerToken(model, prompts.slice(0, 1), tokens) // warm-up
    // ms/token: localMs[i] and swarmMs[m][i] are the same prompt, timed one after the other
    const localMs: number[] = []
    const swarmMs: number[][] = modes.map(() => [])
    // CPU ms over all timed generations: this process, and (swarm) each server
    const localCpu = new CpuTally()
    const swarmCpu = modes.map(() => new CpuTally(swarm.servers.map(s => s.child.pid as number)))
    for (let r = 0; r < ROUNDS; r++) {
      for (const [p, prompt] of prompts.entries()) {
        localMs.push(await localCpu.measure(async () => await decodeMsPerToken(local, [prompt], tokens)))
        // the swarm's modes in an order rotated prompt by prompt, so that none always goes first
        const turn = r * prompts.length + p
        for (let j = 0; j < models.length; j++) {
          const m = (turn + j) % models.length
          swarmMs[m]?.push(await (swarmCpu[m] as CpuTally).measure(async () => await decodeMsPerToken(models[m] as LanguageModel, [prompt], tokens)))
        }
      }
    }
    const generated = ROUNDS * prompts.length * tokens
    emit({ model: name, metric: `local_cpu_ms_per_token${suffix}`, value: (localCpu.ms[0] as number) / generated, unit: 'ms', config: { ...config, wallMsPerToken: median(localMs) } })
    for (const model of models) await model.release()
    const spans = cuts.slice(0, 3).map((c, i) => `[${c},${cuts[i + 1]})`).join(' ')
    for (const [m, [mode]] of modes.entries()) {
      const ms = swarmMs[m] as number[]
      emit({ model: name, metric: `swarm_tokens_per_second_${mode}${suffix}`, value: 1000 / median(ms), unit: 'tokens/s', config: { ...config, servers: spans } })
      emit({ model: name, metric: `swarm_vs_local_${mode}${suffix}`, value: median(ms.map((x, i) => (localMs[i] as number) / x)), unit: 'x', config: { ...config, local_tokens_per_second: 1000 / median(localMs) } })
      // client-mediated: 3 round trips; push: 4 one-way trips (about 2 round trips' worth)
      const pushed = mode !== 'client-mediated'
      const hops = pushed ? 2 : 3
      emit({ model: name, metric: `overhead_per_hop_ms_${mode}${suffix}`, value: median(ms.map((x, i) => (x - (localMs[i] as number)) / hops)), unit: 'ms', config: { ...config, hops: pushed ? '4 one-way trips' : 3 } })
      // per generated token, prompts included: the client, each server, and their sum
      const [client, ...servers] = (swarmCpu[m] as CpuTally).ms.map(c => c / generated)
      emit({ model: name, metric: `swarm_cpu_ms_per_token_${mode}${suffix}`, value: (client as number) + servers.reduce((a, b) => a + b, 0), unit: 'ms', config: { ...config, client, servers, wallMsPerToken: median(ms), cores: availableParallelism() } })
    }
    await client.close()
    await hopAnatomy(name, swarm.servers[0]?.address as string, basename(dir), cuts[1] as number, Checkpoint.open(dir).config.hiddenSize, config, suffix)
    await pipelineAnatomy(name, dir, swarm.servers.map(s => s.address), cuts, config, suffix)
    return localMs
  } finally {
    await swarm.close()
  }
}

/**
 * One hop taken apart: 1-token runs sent straight to the first server, round trip as the
 * client sees it against the compute time the server reports in each result.
 */
async function hopAnatomy (name: string, address: string, modelId: string, end: number, C: number, config: object, suffix: string): Promise<void> {
  const node = await bareNode()
  try {
    const framed = await inferenceStream(node, address)
    await openSession(framed, modelId, 0, end, 256)
    const x = encodeTensor(new Float32Array(C).fill(0.01), [1, 1, C])
    const trips: number[] = []
    const computes: number[] = []
    for (let i = 0; i < 80; i++) {
      const t = performance.now()
      await framed.write({ type: 'run', runId: i, start: i, hidden: x })
      const reply = await next(framed)
      if (i >= 10) {
        trips.push(performance.now() - t)
        computes.push(reply.computeMs as number)
      }
    }
    await framed.close()
    const cfg = { ...config, blocks: `[0,${end})`, runs: trips.length }
    emit({ model: name, metric: `hop_round_trip_ms${suffix}`, value: median(trips), unit: 'ms', config: cfg })
    emit({ model: name, metric: `hop_server_compute_ms${suffix}`, value: median(computes), unit: 'ms', config: cfg })
    emit({ model: name, metric: `hop_round_trip_minus_compute_ms${suffix}`, value: median(trips) - median(computes), unit: 'ms', config: cfg })
  } finally {
    await node.stop()
  }
}

/**
 * The hops as generation meets them: each token goes embed -> server 1 -> 2 -> 3 -> LM head
 * over bare wire sessions, so every server has sat idle for the rest of the token before its
 * turn. Per hop: round trip minus the compute the server reports, and that compute; to set
 * against hopAnatomy's back-to-back runs, where the same server stays busy.
 */
async function pipelineAnatomy (name: string, dir: string, addresses: string[], cuts: number[], config: object, suffix: string): Promise<void> {
  const ckpt = Checkpoint.open(dir)
  const C = ckpt.config.hiddenSize
  const [node, parts] = await Promise.all([bareNode(), ClientParts.load(ckpt)])
  try {
    const streams = []
    for (const [i, address] of addresses.entries()) {
      const framed = await inferenceStream(node, address)
      await openSession(framed, basename(dir), cuts[i] as number, cuts[i + 1] as number, 256)
      streams.push(framed)
    }
    const gaps: number[] = []
    const computes: number[] = []
    const heads: number[] = [] // the client's LM head, right after the last server's reply
    let token = 1
    for (let pos = 0; pos < 70; pos++) {
      let x = parts.embed([token])
      for (const framed of streams) {
        const t = performance.now()
        await framed.write({ type: 'run', runId: pos, start: pos, hidden: encodeTensor(x, [1, 1, C]) })
        const reply = await next(framed)
        x = decodeTensor(reply.hidden).data
        if (pos >= 10) {
          gaps.push(performance.now() - t - (reply.computeMs as number))
          computes.push(reply.computeMs as number)
        }
      }
      const t = performance.now()
      const row = (await parts.logits(x))[0] as Float32Array
      if (pos >= 10) heads.push(performance.now() - t)
      token = argmax(row)
    }
    await Promise.all(streams.map(async f => { await f.close() }))
    // the same head back to back, for comparison: after waiting for the pipeline it is slower
    // on this VM (its second thread starts late), which the per-hop overhead includes
    const x = parts.embed([token])
    const backToBack: number[] = []
    for (let i = 0; i < 30; i++) {
      const t = performance.now()
      await parts.logits(x)
      if (i >= 5) backToBack.push(performance.now() - t)
    }
    const cfg = { ...config, runs: gaps.length, servers: addresses.length }
    emit({ model: name, metric: `pipeline_hop_round_trip_minus_compute_ms${suffix}`, value: median(gaps), unit: 'ms', config: cfg })
    emit({ model: name, metric: `pipeline_hop_server_compute_ms${suffix}`, value: median(computes), unit: 'ms', config: cfg })
    emit({ model: name, metric: `pipeline_client_head_ms${suffix}`, value: median(heads), unit: 'ms', config: { ...cfg, runs: heads.length } })
    emit({ model: name, metric: `client_head_back_to_back_ms${suffix}`, value: median(backToBack), unit: 'ms', config: { ...cfg, runs: backToBack.length } })
  } finally {
    await node.stop()
    await parts.release()
  }
}
