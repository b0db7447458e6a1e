/**
 * Batched decode benchmark: N sessions decoding at once on one server, whose runs it computes
 * together in one pass over the weights (the default, --max-batch 8) or one by one
 * (--max-batch 1). Two servers of the same blocks in this process, one per setting, and N bare
 * clients on 127.0.0.1 each: open a session, prefill 16 rows, then decode one row at a time
 * (send, await the result, send the next), all N at once; two untimed runs each first. The two
 * servers take turns, round by round. One JSON line per figure: the server's decode runs per
 * second over all sessions, and the median time a client waits for each of its runs, by N and
 * setting; and the batched setting's gain.
 *
 *   npm run bench:batching                          # stories260k [0,5) and random 200M [0,4)
 *   npm run bench:batching -- --models random-200m --sessions 1,4,16
 *   npm run bench:batching -- --quick               # CI smoke run
 *   npm run bench:batching -- --max-batches 8,8     # both servers batching: an A/A check of the method
 *   node .gpu/bench-batching.mjs --device webgpu --models random-200m=/tmp/random-200m   # a GPU (scripts/gpu/device-batching.sh)
 *
 * --models takes names (stories260k, random-<size>) or name=DIR.
 */
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { Checkpoint } from '../model/checkpoint.js'
import { PetalServer } from '../node/server.js'
import { bareNode, inferenceStream, next, openSession, randomHidden, runFrame } from '../test/helpers/wire-client.js'
import { emit, median } from './lib/bench-output.js'
import type { Device } from '../model/ort-session.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const { values: args } = parseArgs({ options: { quick: { type: 'boolean', default: false }, models: { type: 'string' }, device: { type: 'string', default: 'cpu' }, 'max-batches': { type: 'string', default: '8,1' }, sessions: { type: 'string' }, tokens: { type: 'string' }, rounds: { type: 'string' } } })
const sessionCounts = (args.sessions ?? (args.quick ? '1,4' : '1,2,4,8')).split(',').map(Number)
const tokens = Number(args.tokens ?? (args.quick ? 4 : 24))
const rounds = Number(args.rounds ?? (args.quick ? 1 : 3))
if (!sessionCounts.every(n => Number.isInteger(n) && n >= 1)) throw new RangeError(`Cannot run --sessions ${args.sessions}: a list of integers >= 1`)
if (!(Number.isInteger(tokens) && tokens >= 2)) throw new RangeError(`Cannot decode --tokens ${args.tokens}: an integer >= 2`)
const PREFILL = 16
/** Decode runs each client sends untimed before the timed ones. */
const WARM_UP_RUNS = 2
/** The two servers' --max-batch, batched first: the gain is the first's runs/s over the second's (8,8 is an A/A check). */
const SETTINGS = (args['max-batches'] ?? '8,1').split(',').map(Number)
if (!(SETTINGS.length === 2 && SETTINGS.every(n => Number.isInteger(n) && n >= 1))) throw new RangeError(`Cannot run --max-batches ${args['max-batches']}: two integers >= 1`)
/** A setting's name in the figures: max_batch8, or max_batch8_a / max_batch8_b when both are the same. */
const settingName = (i: number): string => `max_batch${SETTINGS[i]}${SETTINGS[0] === SETTINGS[1] ? (i === 0 ? '_a' : '_b') : ''}`

const node = await bareNode()
const device = args.device as Device
for (const spec of (args.models ?? (args.quick ? 'stories260k' : 'stories260k,random-200m')).split(',')) {
  const [name, given] = spec.split('=') as [string, string | undefined]
  // imported only when used: bundled (scripts/gpu/build.sh), the random-model writer would take this script's argv as its own
  const dir = given ?? (name === 'stories260k' ? join(ROOT, 'models', 'stories260k') : (await import('./lib/random-models.js')).ensureRandomModel(name.replace(/^random-/, '').toUpperCase()))
  const L = Checkpoint.open(dir).config.numLayers
  // a third of a big model, as one server of three holds it; a tiny one whole
  const blocks = { start: 0, end: L > 6 ? Math.round(L / 3) : L }
  await benchModel(name, dir, blocks)
}
await node.stop()

async function benchModel (name: string, dir: string, blocks: { start: number, end: number }): Promise<void> {
  const servers: PetalServer[] = []
  for (const maxBatch of SETTINGS) {
    const server = new PetalServer({ modelDir: dir, blocks, maxBatch, device, maxSessions: 64, throughput: { decodeTokensPerSec: 1000, prefillTokensPerSec: 1000 } })
    await server.start()
    servers.push(server)
  }
  const C = Checkpoint.open(dir).config.hiddenSize
  const config = { blocks: `[${blocks.start},${blocks.end})`, tokens, prefill: PREFILL, rounds, device }
  const runsPerSecond = new Map<string, number[]>()
  const waits = new Map<string, number[]>()
  const batched = new Map<number, number>()
  for (let r = 0; r < rounds; r++) {
    for (const n of sessionCounts) {
      for (const i of r % 2 === 0 ? [0, 1] : [1, 0]) {
        const server = servers[i] as PetalServer
        const before = server.info().metrics?.runsBatched ?? 0
        const { elapsedMs, waitMs } = await decodeTogether(server, name, blocks, C, n)
        batched.set(i, (batched.get(i) ?? 0) + (server.info().metrics?.runsBatched ?? 0) - before)
        const key = `${n}:${i}`
        runsPerSecond.set(key, [...(runsPerSecond.get(key) ?? []), (n * tokens) / (elapsedMs / 1000)])
        waits.set(key, [...(waits.get(key) ?? []), ...waitMs])
      }
    }
  }
  for (const n of sessionCounts) {
    for (const i of [0, 1]) {
      const key = `${n}:${i}`
      emit({ model: name, metric: `decode_runs_per_second_sessions${n}_${settingName(i)}`, value: median(runsPerSecond.get(key) ?? []), unit: 'runs/s', config })
      emit({ model: name, metric: `run_wait_ms_p50_sessions${n}_${settingName(i)}`, value: median(waits.get(key) ?? []), unit: 'ms', config })
    }
    emit({ model: name, metric: `batched_gain_sessions${n}`, value: median(runsPerSecond.get(`${n}:0`) ?? []) / median(runsPerSecond.get(`${n}:1`) ?? []), unit: 'x', config })
  }
  emit({ model: name, metric: `runs_batched_${settingName(1)}`, value: batched.get(1) ?? 0, unit: 'runs', config })
  for (const server of servers) await server.stop()
}

/** `n` sessions, each prefilled, then decoding `tokens` runs of one row at once; wall time of the decode and each run's wait. */
async function decodeTogether (server: PetalServer, modelId: string, blocks: { start: number, end: number }, C: number, n: number): Promise<{ elapsedMs: number, waitMs: number[] }> {
  const clients = await Promise.all(Array.from({ length: n }, async (_, i) => {
    const framed = await inferenceStream(node, server.address)
    await openSession(framed, modelId, blocks.start, blocks.end, PREFILL + WARM_UP_RUNS + tokens + 1)
    await framed.write(runFrame(0, 0, randomHidden(PREFILL, C, i), C))
    if ((await next(framed, 120_000))['type'] !== 'result') throw new Error('prefill failed')
    return framed
  }))
  const waitMs: number[] = []
  /** Runs [from, to) of every client at once, one row each; the waits of timed ones are kept. */
  const decode = async (from: number, to: number, timed: boolean): Promise<void> => {
    await Promise.all(clients.map(async (framed, i) => {
      for (let t = from; t < to; t++) {
        const sent = performance.now()
        await framed.write(runFrame(t + 1, PREFILL + t, randomHidden(1, C, 1000 * i + t), C))
        const reply = await next(framed, 120_000)
        if (reply['type'] !== 'result') throw new Error(`run ${t} of client ${i} failed: ${JSON.stringify(reply)}`)
        if (timed) waitMs.push(performance.now() - sent)
      }
    }))
  }
  // untimed first: the device settles after the other server's runs (on a GPU the first runs after a change of batch sizes were slower)
  await decode(0, WARM_UP_RUNS, false)
  const began = performance.now()
  await decode(WARM_UP_RUNS, WARM_UP_RUNS + tokens, true)
  const elapsedMs = performance.now() - began
  await Promise.all(clients.map(async c => { await c.close() }))
  return { elapsedMs, waitMs }
}
