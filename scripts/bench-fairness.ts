/**
 * Fairness benchmark: one stories260k server [0,5) in this process, two bare clients on
 * 127.0.0.1. One floods its session with `--flood` runs of 64 tokens in one burst; the other
 * then decodes `--tokens` tokens one run at a time. One JSON line
 * per figure: the honest client's latency per run (first, median, worst) with and without the
 * flood, the flooder's runs computed and refused, and the server's RSS growth. Then a deaf
 * client: it stops reading and sends up to `--deaf` tiny bad frames, each of which earns an
 * error frame: the frames it got out before the server reset its stream, and the heap growth
 * (after a GC when run with `node --expose-gc`).
 *
 *   npm run bench:fairness
 *   npm run bench:fairness -- --flood 10000
 *   npm run bench:fairness -- --quick          # CI smoke run
 */
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import type { Stream } from '@libp2p/interface'
import { PetalServer } from '../node/server.js'
import { encodeFrame } from '../protocol/frames.js'
import type { FramedStream } from '../protocol/framed-stream.js'
import { bareNode, inferenceStream, next, openSession, randomHidden, runFrame } from '../test/helpers/wire-client.js'
import { emit, median } from './lib/bench-output.js'

const BUNDLED_MODEL_DIR = fileURLToPath(new URL('../models/stories260k', import.meta.url))

const { values: args } = parseArgs({ options: { quick: { type: 'boolean', default: false }, flood: { type: 'string' }, tokens: { type: 'string' }, deaf: { type: 'string' } } })
const deafFrames = Number(args.deaf ?? (args.quick ? 50_000 : 200_000))
const flood = Number(args.flood ?? (args.quick ? 300 : 3000))
const tokens = Number(args.tokens ?? (args.quick ? 8 : 32))
if (!(Number.isInteger(flood) && flood >= 1)) throw new RangeError(`Cannot send --flood ${args.flood}: it must be an integer >= 1`)
if (!(Number.isInteger(tokens) && tokens >= 3)) throw new RangeError(`Cannot decode --tokens ${args.tokens}: it must be an integer >= 3`)
const C = 64 // stories260k's hidden size
const config = { flood, tokens, runTokens: 64 }

const server = new PetalServer({ modelDir: BUNDLED_MODEL_DIR, blocks: { start: 0, end: 5 }, throughput: { decodeTokensPerSec: 1000, prefillTokensPerSec: 1000 } })
await server.start()
const node = await bareNode()
const mib = (): number => process.memoryUsage().rss / 2 ** 20

/** Decodes `tokens` one-token runs in a fresh session; the latency of each, ms. */
async function honestLatencies (): Promise<number[]> {
  const honest = await inferenceStream(node, server.address)
  await openSession(honest, 'stories260k', 0, 5, tokens)
  const ms: number[] = []
  for (let i = 0; i < tokens; i++) {
    const began = performance.now()
    await honest.write(runFrame(i, i, randomHidden(1, C, i), C))
    const reply = await next(honest, 120_000)
    if (reply['type'] !== 'result') throw new Error(`The honest run ${i} failed: ${JSON.stringify(reply)}`)
    ms.push(performance.now() - began)
  }
  await honest.close()
  return ms
}

function report (label: string, ms: number[]): void {
  emit({ metric: `honest_first_run_ms_${label}`, value: ms[0] as number, unit: 'ms', config })
  emit({ metric: `honest_median_run_ms_${label}`, value: median(ms), unit: 'ms', config })
  emit({ metric: `honest_worst_run_ms_${label}`, value: Math.max(...ms), unit: 'ms', config })
}

report('alone', await honestLatencies())

const rssBefore = mib()
const flooder: FramedStream = await inferenceStream(node, server.address)
await openSession(flooder, 'stories260k', 0, 5, 64)
// what the server computes for the flooder, and what it refuses
let computed = 0
let refused = 0
const counting = (async () => {
  for (let i = 0; i < flood; i++) {
    if ((await next(flooder, 120_000))['type'] === 'result') computed++
    else refused++
  }
})()
const burst = runFrame(0, 0, randomHidden(64, C, 1), C)
for (let i = 0; i < flood; i++) flooder.stream.send(encodeFrame({ ...burst, runId: i }))
report('under_flood', await honestLatencies())
emit({ metric: 'server_rss_growth_mib_under_flood', value: mib() - rssBefore, unit: 'MiB', config })
await counting
emit({ metric: 'flood_runs_computed', value: computed, unit: 'runs', config })
emit({ metric: 'flood_runs_refused', value: refused, unit: 'runs', config })

// the deaf client: its error frames pile up on the server until the stream is reset
const heapMib = (): number => { (globalThis as { gc?: () => void }).gc?.(); return process.memoryUsage().heapUsed / 2 ** 20 }
const heapBefore = heapMib()
const deaf = (await inferenceStream(node, server.address)).stream as unknown as Stream
deaf.pause()
const bad = encodeFrame({ type: 'cancel', runIds: 'x' })
let deafSent = 0
try {
  for (; deafSent < deafFrames; deafSent++) if (!deaf.send(bad)) await deaf.onDrain({ signal: AbortSignal.timeout(10_000) })
} catch {
  // the server reset the stream
}
await new Promise(resolve => setTimeout(resolve, 1000))
emit({ metric: 'deaf_client_frames_before_reset', value: deafSent, unit: 'frames', config: { ...config, deafFrames, reset: deafSent < deafFrames } })
emit({ metric: 'deaf_client_heap_growth_mib', value: heapMib() - heapBefore, unit: 'MiB', config: { ...config, deafFrames, gc: (globalThis as { gc?: unknown }).gc !== undefined } })
await node.stop()
await server.stop()
