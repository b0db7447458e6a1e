/**
 * RTT benchmark: what a client reports as a server's round-trip time, measured two ways
 * between two libp2p hosts on 127.0.0.1 (median over rounds, one JSON line each):
 * - "probe": Petal's RTT probe (net/rtt-probe.ts) on one open ping stream, here the best of
 *   two echoes back to back (discovery, routing and `petal-node status` take three, 10 ms apart);
 * - "ping-new-stream": the best of two libp2p `ping()` calls, each on a new stream, which
 *   also pays the stream's protocol negotiation.
 *
 *   npm run bench:rtt                                  # loopback
 *   npm run bench:rtt -- --quick                       # 3 rounds (CI smoke run)
 *   npm run bench:rtt -- --kernel-delay --latency-ms 20  # in a namespace delaying every packet L ms (root)
 */
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { createPetalHost } from '../net/host.js'
import { measureRtt } from '../net/rtt-probe.js'
import { emit, median } from './lib/bench-output.js'
import { KernelDelayUnavailableError, runInDelayedNamespace } from './lib/kernel-delay.js'

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    'kernel-delay': { type: 'boolean', default: false },
    'latency-ms': { type: 'string' },
    'netns-child': { type: 'string' } // internal: already inside a namespace delayed this way
  }
})
const rounds = Number(args.rounds ?? (args.quick ? 3 : 20))
const latencyMs = Number(args['latency-ms'] ?? 0)
if (!(Number.isInteger(rounds) && rounds >= 1)) throw new RangeError(`Cannot run --rounds ${args.rounds}: it must be an integer >= 1`)
if (!(Number.isFinite(latencyMs) && latencyMs >= 0)) throw new RangeError(`Cannot use --latency-ms ${args['latency-ms']}: it must be a number >= 0`)

if (args['kernel-delay'] && args['netns-child'] === undefined) {
  const argv = (kind: string): string[] => [process.execPath, ...process.execArgv, fileURLToPath(import.meta.url), '--netns-child', kind, '--latency-ms', String(latencyMs), '--rounds', String(rounds)]
  try {
    const code = await runInDelayedNamespace(`petal-rtt-${process.pid}`, latencyMs, argv)
    if (code !== 0) throw new Error(`The benchmark under kernel delay exited with code ${code}`)
  } catch (err) {
    if (!(err instanceof KernelDelayUnavailableError)) throw err
    process.stderr.write(`${err.message}\n`)
    process.exitCode = 2
  }
} else {
  await bench(args['netns-child'] ?? 'none', args['netns-child'] === undefined ? 0 : latencyMs)
}

async function bench (delay: string, oneWayMs: number): Promise<void> {
  const server = await createPetalHost({ dhtServer: true })
  const client = await createPetalHost({ dhtServer: false })
  try {
    await client.dial(server.getMultiaddrs()[0] as Parameters<typeof client.dial>[0])
    const probe: number[] = []
    const pingNewStream: number[] = []
    for (let r = 0; r < rounds; r++) {
      let best = Number.POSITIVE_INFINITY
      for (let i = 0; i < 2; i++) {
        const t = performance.now()
        await client.services.ping.ping(server.peerId)
        best = Math.min(best, performance.now() - t)
      }
      pingNewStream.push(best)
      probe.push(await measureRtt(client, server.peerId))
    }
    for (const [method, samples] of [['probe', probe], ['ping-new-stream', pingNewStream]] as const) {
      emit({ metric: 'rtt_ms', value: Number(median(samples).toFixed(3)), unit: 'ms', method, delay, oneWayLatencyMs: oneWayMs, expectedMs: 2 * oneWayMs, rounds })
    }
  } finally {
    await Promise.all([client.stop(), server.stop()])
  }
}
