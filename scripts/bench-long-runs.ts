/**
 * Long runs in pieces: what a long prompt on one server costs the server's other clients, and
 * what computing it in pieces costs the prompt. Two `petal-node serve` processes hold the
 * whole model as one graph, one with pieces (`--piece-ms 200`, the default) and one without
 * (`--piece-ms 0`); each round measures both in turn (the order rotated). On each, over the
 * wire with no client library in between:
 * - session A decodes, one 1-row run after another (random activations), the whole time;
 * - a ping every 50 ms on libp2p's ping protocol (what the client's liveness probe sends);
 * - session B sends one run of `--prompt-tokens` rows (a prompt's prefill) after 300 ms.
 * One JSON line per figure and mode: B's time to its result, A's longest step while B's run
 * computed (and its median step before), the longest ping echo then, and A's steps done
 * meanwhile; B's time alone (no A, no pings: what pieces cost a prompt); then prefill time
 * whole over in pieces, alone.
 *
 *   npm run bench:long-runs                               # random 200M, a 1024-token prompt
 *   npm run bench:long-runs -- --prompt-tokens 2000 --rounds 3
 *   npm run bench:long-runs -- --models stories260k --prompt-tokens 400 --busy-row-ms 8
 *   npm run bench:long-runs -- --quick                    # CI smoke run (stories260k, busy rows)
 */
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Libp2p } from 'libp2p'
import { Checkpoint } from '../model/checkpoint.js'
import { LocalSwarm, type ServerProcess } from '../node/local-swarm.js'
import { measureRtt } from '../net/rtt-probe.js'
import { bareNode, inferenceStream, next, openSession, randomHidden, runFrame } from '../test/helpers/wire-client.js'
import { emit, median } from './lib/bench-output.js'
import { ensureRandomModel } from './lib/random-models.js'
import { peerIdOf } from '../test/helpers/swarm.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    models: { type: 'string' },
    'prompt-tokens': { type: 'string' },
    rounds: { type: 'string' },
    'busy-row-ms': { type: 'string' }
  }
})
const promptTokens = Number(args['prompt-tokens'] ?? (args.quick ? 200 : 1024))
const rounds = Number(args.rounds ?? (args.quick ? 1 : 2))
/** Main-thread busy time per row on both servers (`--simulated-busy-row-ms`): a slower model on a CPU. */
const busyRowMs = Number(args['busy-row-ms'] ?? (args.quick ? 5 : 0))
if (!(Number.isInteger(promptTokens) && promptTokens >= 2)) throw new RangeError(`Cannot send --prompt-tokens ${args['prompt-tokens']}: an integer >= 2`)
if (!(Number.isInteger(rounds) && rounds >= 1)) throw new RangeError(`Cannot run --rounds ${args.rounds}: an integer >= 1`)
if (!(busyRowMs >= 0)) throw new RangeError(`Cannot use --busy-row-ms ${args['busy-row-ms']}: a number >= 0`)

const MODES = [['pieces', 200], ['whole', 0]] as const
type Mode = typeof MODES[number][0]

for (const name of (args.models ?? (args.quick ? 'stories260k' : 'random-200m')).split(',')) {
  const dir = name === 'stories260k' ? join(ROOT, 'models', 'stories260k') : ensureRandomModel(name.replace(/^random-/, '').toUpperCase())
  await benchModel(name, dir)
}

/** What one measurement saw. */
interface Sample {
  prefillMs: number
  prefillAloneMs: number
  stallMs: number
  stepBeforeMs: number
  pingMaxMs: number
  stepsDuring: number
}

async function benchModel (name: string, dir: string): Promise<void> {
  const config = Checkpoint.open(dir).config
  const L = config.numLayers
  const C = config.hiddenSize
  const swarm = new LocalSwarm(dir)
  const node = await bareNode()
  try {
    const servers = new Map<Mode, ServerProcess>()
    for (const [mode, pieceMs] of MODES) {
      servers.set(mode, await swarm.add({ blocks: `0:${L}`, args: ['--graph-blocks', String(L), '--piece-ms', String(pieceMs), ...(busyRowMs > 0 ? ['--simulated-busy-row-ms', String(busyRowMs)] : [])] }).then(s => s[0] as ServerProcess))
    }
    const samples = new Map<Mode, Sample[]>(MODES.map(([mode]) => [mode, []]))
    for (const [mode] of MODES) await measure(node, servers.get(mode) as ServerProcess, name, L, C, Math.min(64, promptTokens)) // warm-up
    for (let r = 0; r < rounds; r++) {
      for (let m = 0; m < MODES.length; m++) {
        const [mode] = MODES[(m + r) % MODES.length] as typeof MODES[number]
        const server = servers.get(mode) as ServerProcess
        const alone = await prefillAlone(node, server, name, L, C, promptTokens)
        samples.get(mode)?.push({ ...await measure(node, server, name, L, C, promptTokens), prefillAloneMs: alone })
      }
    }
    const shape = { promptTokens, rounds, blocks: `[0,${L})`, graphBlocks: L, busyRowMs }
    const of = (mode: Mode, key: keyof Sample): number => median((samples.get(mode) ?? []).map(s => s[key]))
    for (const [mode] of MODES) {
      emit({ model: name, metric: `long_run_prefill_alone_ms_${mode}`, value: of(mode, 'prefillAloneMs'), unit: 'ms', config: shape })
      emit({ model: name, metric: `long_run_prefill_ms_${mode}`, value: of(mode, 'prefillMs'), unit: 'ms', config: shape })
      emit({ model: name, metric: `long_run_other_session_longest_step_ms_${mode}`, value: of(mode, 'stallMs'), unit: 'ms', stepBeforeMs: of(mode, 'stepBeforeMs'), config: shape })
      emit({ model: name, metric: `long_run_other_session_steps_during_${mode}`, value: of(mode, 'stepsDuring'), unit: 'runs', config: shape })
      emit({ model: name, metric: `long_run_longest_ping_ms_${mode}`, value: of(mode, 'pingMaxMs'), unit: 'ms', config: shape })
    }
    emit({ model: name, metric: 'long_run_prefill_alone_whole_over_pieces', value: of('whole', 'prefillAloneMs') / of('pieces', 'prefillAloneMs'), unit: 'x', config: shape })
  } finally {
    await node.stop()
    await swarm.close()
  }
}

/** B's long run on `server` with nothing else going on: ms to its result. */
async function prefillAlone (node: Libp2p, server: ServerProcess, modelId: string, L: number, C: number, rows: number): Promise<number> {
  const b = await inferenceStream(node, server.address)
  await openSession(b, modelId, 0, L, rows + 8)
  const began = performance.now()
  await b.write(runFrame(0, 0, randomHidden(rows, C, 9), C))
  const reply = await next(b, 600_000)
  const ms = performance.now() - began
  if (reply['type'] !== 'result') throw new Error(`prefill: ${JSON.stringify(reply)}`)
  await b.close()
  return ms
}

/** One measurement on `server`: A decodes and pings go on while B's long run computes. */
async function measure (node: Libp2p, server: ServerProcess, modelId: string, L: number, C: number, rows: number): Promise<Omit<Sample, 'prefillAloneMs'>> {
  const a = await inferenceStream(node, server.address)
  const b = await inferenceStream(node, server.address)
  await openSession(a, modelId, 0, L, 4096)
  await openSession(b, modelId, 0, L, rows + 8)
  const peer = peerIdFromString(peerIdOf(server.address))
  const steps: Array<{ began: number, ended: number }> = []
  const pings: Array<{ began: number, ms: number }> = []
  let stop = false

  const decoding = (async () => {
    const x = randomHidden(1, C, 7)
    for (let i = 0; !stop && i < 4000; i++) {
      const began = performance.now()
      await a.write(runFrame(i, i, x, C))
      const reply = await next(a, 120_000)
      if (reply['type'] !== 'result') throw new Error(`decode step ${i}: ${JSON.stringify(reply)}`)
      steps.push({ began, ended: performance.now() })
    }
  })()
  const pinging = (async () => {
    while (!stop) {
      // the whole call, stream negotiation included, as the client's liveness probe waits for it
      const began = performance.now()
      await measureRtt(node, peer, { trips: 1, signal: AbortSignal.timeout(120_000) })
      pings.push({ began, ms: performance.now() - began })
      await new Promise(resolve => setTimeout(resolve, 50))
    }
  })()

  await new Promise(resolve => setTimeout(resolve, 300))
  const began = performance.now()
  await b.write(runFrame(0, 0, randomHidden(rows, C, 9), C))
  const reply = await next(b, 600_000)
  const ended = performance.now()
  if (reply['type'] !== 'result') throw new Error(`prefill: ${JSON.stringify(reply)}`)
  await new Promise(resolve => setTimeout(resolve, 100))
  stop = true
  await Promise.all([decoding, pinging])
  await Promise.all([a.close(), b.close()])

  // a step or ping overlaps B's run when it began before B's result and ended after B was sent
  const during = steps.filter(s => s.began < ended && s.ended > began)
  const before = steps.filter(s => s.ended <= began)
  const pingsDuring = pings.filter(p => p.began < ended && p.began + p.ms > began)
  return {
    prefillMs: ended - began,
    stallMs: Math.max(0, ...during.map(s => s.ended - s.began)),
    stepBeforeMs: median(before.map(s => s.ended - s.began)),
    pingMaxMs: Math.max(0, ...pingsDuring.map(p => p.ms)),
    stepsDuring: during.length
  }
}
