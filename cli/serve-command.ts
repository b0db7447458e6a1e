import { multiaddr } from '@multiformats/multiaddr'
import { type Command, Option } from 'commander'
import type { Logger } from 'pino'
import type { Device } from '../model/ort-session.js'
import type { Quantization } from '../model/quantize.js'
import { exitWhenFrozen } from '../node/frozen-loop-watch.js'
import { loadOrCreateIdentity } from '../node/identity.js'
import { MetricsEndpoint } from '../node/metrics-endpoint.js'
import { PetalServer, type PetalServerInit } from '../node/server.js'
import { UsageError } from './cli-error.js'
import { createCliLogger, ignoreWriteErrors } from './logger.js'
import { parseHostPort, parseNumber } from './options.js'
import { loadProgress } from './progress.js'

/** Flags of `petal-node serve`, as commander hands them over. */
interface ServeFlags {
  model: string
  blocks?: string
  numBlocks?: number
  graphBlocks?: number
  threads?: number
  maxBatch: number
  pieceMs: number
  stuckAfterMs: number
  exitWhenFrozenMs: number
  quantize?: Quantization
  listen?: string[]
  metrics?: string
  announce?: string[]
  relay?: number
  bootstrap?: string[]
  device: string
  maxSessions: number
  cacheTokens: number
  identity?: string
  modelId?: string
  announceInterval: number
  linkLatencyMs: number
  simulatedRunMs: number
  simulatedRowMs: number
  simulatedBusyRowMs: number
  simulatedHangAfterRuns?: number
  simulatedFreezeAfterRuns?: number
  throughput?: number
  rebalanceInterval?: number
  rebalanceMinGain?: number
}

/** Seconds between a --num-blocks server's looks at the swarm, when not given (Petals checks about every 2 minutes). */
const DEFAULT_REBALANCE_INTERVAL_S = 120

const DEVICES: readonly Device[] = ['cpu', 'webgpu', 'cuda']
const collect = (value: string, previous: string[] = []): string[] => [...previous, value]

/** `petal-node serve`: serve a span of a model's blocks to the swarm until SIGINT/SIGTERM. */
export function serveCommand (program: Command): void {
  program.command('serve')
    .description('serve a span of a model\'s blocks to the swarm (until SIGINT/SIGTERM, which drains and exits)')
    .requiredOption('--model <dir>', 'Hugging Face checkpoint folder (config.json + safetensors)')
    .option('--blocks <A:B>', 'serve blocks A..B-1, e.g. 0:8')
    .option('--num-blocks <n>', 'serve n blocks where the swarm covers the model worst', parseNumber('--num-blocks', { integer: true, min: 1 }))
    .option('--listen <multiaddr>', 'address to listen on (repeatable; default /ip4/0.0.0.0/tcp/0)', collect)
    .option('--announce <multiaddr>', 'address others should dial instead of the listen addresses, e.g. a public IP or a port forward to --listen (repeatable)', collect)
    .option('--relay <n>', 'also relay connections for up to n Petal servers that cannot be dialed directly (behind NAT: they listen on <this address>/p2p-circuit)', parseNumber('--relay', { integer: true, min: 1 }))
    .option('--bootstrap <multiaddr>', 'address (with /p2p/<id>) of any swarm node (repeatable)', collect)
    .option('--device <device>', 'cpu, webgpu or cuda (falls back to cpu when unavailable)', 'cpu')
    .option('--max-sessions <n>', 'most inference sessions open at once', parseNumber('--max-sessions', { integer: true, min: 1 }), 16)
    .option('--max-batch <n>', 'most sessions\' decode runs computed together in one pass over the weights (1: each alone)', parseNumber('--max-batch', { integer: true, min: 1 }), 8)
    .option('--piece-ms <ms>', 'compute a long run (a prompt) in pieces of about this long, answering pings and other sessions\' runs between them (0: every run whole)', parseNumber('--piece-ms', { min: 0 }), 200)
    .option('--exit-when-frozen-ms <ms>', 'exit (SIGKILL) when the main thread has not run for this long while serving: a device hung inside a run, which leaves the process answering nothing (0: never)', parseNumber('--exit-when-frozen-ms', { min: 0 }), 120_000)
    .option('--stuck-after-ms <ms>', 'leave the swarm (exit 1) when a run has computed this long while the event loop was otherwise idle: stuck compute, which answers pings but finishes nothing (0: never)', parseNumber('--stuck-after-ms', { min: 0 }), 60_000)
    .option('--cache-tokens <n>', 'KV cache positions all sessions together may reserve', parseNumber('--cache-tokens', { integer: true, min: 1 }), 16384)
    .option('--identity <file>', 'private key file: created on first run, keeps the peer id across restarts')
    .option('--model-id <id>', 'model id announced in the DHT (default: the checkpoint folder name)')
    .option('--announce-interval <seconds>', 'seconds between DHT announcements', parseNumber('--announce-interval', { min: 1 }), 120)
    .option('--graph-blocks <n>', 'blocks per onnxruntime session (default 1: clients may use any part of the span; more is faster on many-core machines)', parseNumber('--graph-blocks', { integer: true, min: 1 }))
    .option('--threads <n>', 'compute threads per block (default: one per core; lower it to share the machine)', parseNumber('--threads', { integer: true, min: 1 }))
    .addOption(new Option('--quantize <format>', 'hold the blocks as 8- or 4-bit weights (weights in 29% / 16% of float32\'s bytes, faster decode where memory bandwidth bounds it, outputs close to float32\'s; cpu and webgpu)').choices(['none', 'int8', 'int4']))
    .option('--throughput <tokens/s>', 'announce this speed (tokens/s through one block, decode and prefill alike) instead of measuring it at start, e.g. where the machine is busy', parseNumber('--throughput', { min: 1 }))
    .option('--rebalance-interval <seconds>', `with --num-blocks: look at the swarm every ~this many seconds and move to the blocks it serves worst when that makes it faster (0: never; default ${DEFAULT_REBALANCE_INTERVAL_S})`, parseNumber('--rebalance-interval', { min: 0 }))
    .option('--rebalance-min-gain <factor>', 'with --num-blocks: move only when the swarm\'s slowest block gets this many times faster (default 1.25)', parseNumber('--rebalance-min-gain', { min: 1 }))
    .option('--metrics <host:port>', 'serve Prometheus metrics (runs, sessions, cache, speed) at http://<host:port>/metrics, e.g. 127.0.0.1:9400 (port 0: any free one)')
    .option('--link-latency-ms <ms>', 'delay every frame this server sends by this one-way latency (benchmarks)', parseNumber('--link-latency-ms', { min: 0 }), 0)
    .option('--simulated-run-ms <ms>', 'after computing a run, hold the device idle this long more, as a bigger model would (benchmarks)', parseNumber('--simulated-run-ms', { min: 0 }), 0)
    .option('--simulated-row-ms <ms>', 'and this long more per row of the run (benchmarks)', parseNumber('--simulated-row-ms', { min: 0 }), 0)
    .option('--simulated-busy-row-ms <ms>', 'and keep the main thread busy this long per row, as a bigger model on the CPU does (tests)', parseNumber('--simulated-busy-row-ms', { min: 0 }), 0)
    .option('--simulated-freeze-after-runs <n>', 'after this many runs, hold the main thread forever, as a device hung inside a run (tests)', parseNumber('--simulated-freeze-after-runs', { integer: true, min: 0 }))
    .option('--simulated-hang-after-runs <n>', 'after this many runs, never finish another, with the event loop free: stuck compute (tests)', parseNumber('--simulated-hang-after-runs', { integer: true, min: 0 }))
    .addHelpText('after', `
Give exactly one of --blocks and --num-blocks. Logs are JSON lines on stderr.
When ready, prints one line on stdout:
  ready <multiaddr>/p2p/<peer id> blocks [A,B) of <model id>

Examples:
  petal-node serve --model models/stories260k --blocks 0:3 --listen /ip4/0.0.0.0/tcp/31330 --identity ~/.petal/key
  petal-node serve --model models/stories260k --num-blocks 2 --bootstrap /ip4/10.0.0.5/tcp/31330/p2p/12D3KooW...
  petal-node serve --model models/stories260k --num-blocks 2 --listen /ip4/0.0.0.0/tcp/31330 --announce /ip4/203.0.113.7/tcp/31330 --bootstrap ...
  petal-node serve --model models/stories260k --blocks 0:3 --listen /ip4/0.0.0.0/tcp/31330 --relay 8
  petal-node serve --model models/stories260k --num-blocks 2 --listen /p2p-circuit --bootstrap /ip4/10.0.0.5/tcp/31330/p2p/12D3KooW...`)
    .action(async (flags: ServeFlags, cmd: Command) => {
      const verbose = cmd.optsWithGlobals<{ verbose?: boolean }>().verbose === true
      const log = createCliLogger(verbose ? 'debug' : 'info')
      const init = await serverInit(flags)
      init.logger = log
      await runServer(init, log, flags.metrics !== undefined ? parseHostPort(flags.metrics, '--metrics') : undefined, flags.exitWhenFrozenMs)
    })
}

/** Checks the flags and turns them into PetalServer options; UsageError on a bad combination. */
async function serverInit (flags: ServeFlags): Promise<PetalServerInit> {
  if ((flags.blocks === undefined) === (flags.numBlocks === undefined)) {
    throw new UsageError('give exactly one of --blocks A:B and --num-blocks N')
  }
  if (!(DEVICES as readonly string[]).includes(flags.device)) {
    throw new UsageError(`--device must be one of ${DEVICES.join(', ')}: current value is "${flags.device}"`)
  }
  const init: PetalServerInit = {
    modelDir: flags.model,
    listen: flags.listen ?? ['/ip4/0.0.0.0/tcp/0'],
    bootstrap: flags.bootstrap ?? [],
    device: flags.device as Device,
    maxSessions: flags.maxSessions,
    maxBatch: flags.maxBatch,
    pieceMs: flags.pieceMs,
    stuckAfterMs: flags.stuckAfterMs,
    cacheTokens: flags.cacheTokens,
    announceIntervalMs: flags.announceInterval * 1000,
    linkLatencyMs: flags.linkLatencyMs
  }
  if (flags.blocks !== undefined) init.blocks = parseSpan(flags.blocks)
  if (flags.numBlocks !== undefined) {
    init.numBlocks = flags.numBlocks
    init.rebalanceIntervalMs = (flags.rebalanceInterval ?? DEFAULT_REBALANCE_INTERVAL_S) * 1000
    if (flags.rebalanceMinGain !== undefined) init.rebalanceMinGain = flags.rebalanceMinGain
  } else if (flags.rebalanceInterval !== undefined || flags.rebalanceMinGain !== undefined) {
    throw new UsageError('--rebalance-interval and --rebalance-min-gain need --num-blocks: a server given --blocks keeps them')
  }
  if (flags.announce !== undefined) init.announce = flags.announce.map(checkAnnounceAddress)
  if (flags.relay !== undefined) {
    if ((init.listen ?? []).every(a => a.includes('/p2p-circuit'))) {
      throw new UsageError('--relay needs a --listen address peers can dial directly: a server that is itself reachable only through a relay cannot relay for others')
    }
    init.relayReservations = flags.relay
  }
  if (flags.modelId !== undefined) init.modelId = flags.modelId
  if (flags.graphBlocks !== undefined) init.graphBlocks = flags.graphBlocks
  if (flags.threads !== undefined) init.threads = flags.threads
  if (flags.quantize !== undefined && flags.quantize !== 'none') {
    if (flags.device === 'cuda') throw new UsageError(`--quantize ${flags.quantize} runs on cpu and webgpu only: drop --device ${flags.device} or --quantize`)
    init.quantization = flags.quantize
  }
  if (flags.identity !== undefined) init.privateKey = await loadOrCreateIdentity(flags.identity)
  if (flags.throughput !== undefined) init.throughput = { decodeTokensPerSec: flags.throughput, prefillTokensPerSec: flags.throughput }
  if (flags.simulatedRunMs > 0 || flags.simulatedRowMs > 0 || flags.simulatedBusyRowMs > 0 || flags.simulatedHangAfterRuns !== undefined || flags.simulatedFreezeAfterRuns !== undefined) {
    init.simulatedCompute = {
      msPerRun: flags.simulatedRunMs,
      msPerRow: flags.simulatedRowMs,
      ...(flags.simulatedBusyRowMs > 0 ? { busyMsPerRow: flags.simulatedBusyRowMs } : {}),
      ...(flags.simulatedHangAfterRuns !== undefined ? { hangAfterRuns: flags.simulatedHangAfterRuns } : {}),
      ...(flags.simulatedFreezeAfterRuns !== undefined ? { freezeAfterRuns: flags.simulatedFreezeAfterRuns } : {})
    }
  }
  return init
}

/** "A:B" -> { start: A, end: B } with 0 <= A < B. */
function parseSpan (text: string): { start: number, end: number } {
  const m = /^(\d+):(\d+)$/.exec(text.trim())
  const start = Number(m?.[1])
  const end = Number(m?.[2])
  if (m === null || !(start < end)) throw new UsageError(`--blocks must be A:B with 0 <= A < B, e.g. 0:8: current value is "${text}"`)
  return { start, end }
}

/**
 * Starts the server (and its metrics endpoint), prints the ready line, and drains on
 * SIGINT/SIGTERM (exit 0; a second signal exits at once). Once it serves, a main thread held
 * for `exitWhenFrozenMs` (0: never) kills the process (node/frozen-loop-watch.ts).
 */
async function runServer (init: PetalServerInit, log: Logger, metricsAt: { host: string, port: number } | undefined, exitWhenFrozenMs: number): Promise<void> {
  let bar: ReturnType<typeof loadProgress> | undefined
  const server = new PetalServer({
    ...init,
    onProgress: (done, total) => {
      bar ??= loadProgress(`loading ${init.modelDir}`, total)
      bar.update(done, total)
    }
  })
  let stopping = false
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now')
      process.exit(1)
    }
    stopping = true
    log.info({ signal }, 'draining')
    server.stop().then(() => { process.exit(0) }, (err: unknown) => {
      log.error({ err }, 'error while stopping')
      process.exit(1)
    })
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  try {
    await server.start()
  } catch (err) {
    if (stopping) return // stopped while starting: onSignal exits
    throw err
  } finally {
    bar?.stop()
  }
  if (init.privateKey === undefined) log.info('no --identity: this peer id lasts for this run only')
  const { start, end } = server.span
  ignoreWriteErrors(process.stdout) // a server keeps serving when nobody reads its ready line
  if (metricsAt !== undefined) {
    const metrics = await MetricsEndpoint.listen({ ...metricsAt, info: () => server.info() })
    process.stdout.write(`metrics ${metrics.url}\n`)
  }
  process.stdout.write(`ready ${server.address} blocks [${start},${end}) of ${server.modelId}\n`)
  // loading a span (a move between blocks) may hold the thread for long: only an online server is watched
  if (exitWhenFrozenMs > 0) exitWhenFrozen(exitWhenFrozenMs, () => server.state !== 'online')
  // a server stops by itself only when a move between blocks failed (logged): exit with an error
  void server.closed.then(() => {
    if (!stopping) process.exit(1)
  })
}

/** An --announce value: a multiaddr without /p2p/ (the server appends its own peer id). */
function checkAnnounceAddress (value: string): string {
  let components
  try {
    components = multiaddr(value).getComponents()
  } catch (err) {
    throw new UsageError(`--announce must be a multiaddr such as /ip4/203.0.113.7/tcp/31330: current value is "${value}" (${(err as Error).message})`)
  }
  if (components.some(c => c.name === 'p2p')) {
    throw new UsageError(`--announce takes an address without /p2p/<peer id> (the server adds its own): current value is "${value}"`)
  }
  return value
}
