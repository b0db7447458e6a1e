/**
 * PetalServer: a volunteer node serving a span of a model's blocks. Composition
 * only: loading (load-span), speed (throughput), span choice (block-selection),
 * sessions (session-manager), wire handlers (info/inference/push), announcing.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { basename, resolve } from 'node:path'
import { pino, type Logger } from 'pino'
import { Checkpoint } from '../model/checkpoint.js'
import type { Device } from '../model/ort-session.js'
import type { SpanRunner } from '../model/span-runner.js'
import { findServers } from '../net/discovery.js'
import { createPetalHost, fullAddress, type PetalHost } from '../net/host.js'
import { PETAL_VERSION, PROTOCOL_INFERENCE, PROTOCOL_INFO, PROTOCOL_PUSH } from '../protocol/ids.js'
import { resolveLimits, type Limits } from '../protocol/limits.js'
import { MAX_KNOWN_SERVERS, type ServerInfo, type ServerState, type Throughput } from '../protocol/server-info.js'
import { Announcer } from './announcer.js'
import { chooseBestSpan, type ServedSpan } from './block-selection.js'
import { InferenceService } from './inference-handler.js'
import { infoHandler } from './info-handler.js'
import { loadSpan } from './load-span.js'
import { PushForwarder } from './push-forwarder.js'
import { pushHandler } from './push-handler.js'
import { Rebalancer } from './rebalancer.js'
import { waitForAddress, watchReachability } from './reachability.js'
import { keepNamedRelays } from './relay-rejoin.js'
import { RunExecutor, type SessionLink } from './run-executor.js'
import type { PetalServerInit } from './server-options.js'
import { DEFAULT_MAX_BATCH, SessionManager } from './session-manager.js'
import { StuckComputeWatch } from './stuck-compute-watch.js'
import { measureThroughput } from './throughput.js'

export type { PetalServerInit } from './server-options.js'

/** Idle time before libp2p may close an inference or push stream (its default, 120 s, is shorter than a user's pause). */
const INFERENCE_INACTIVITY_MS = 10 * 60_000
/**
 * Free event-loop time one batch of runs may compute before the server takes its compute for
 * stuck and leaves (PetalServerInit.stuckAfterMs). A long run computes in pieces of about 200 ms,
 * and a client gives up on a silent run after 30 s: a minute is far past both.
 */
const DEFAULT_STUCK_AFTER_MS = 60_000

/** A Petal server: `start()` loads, joins and announces; `stop()` drains and leaves. */
export class PetalServer {
  readonly #init: PetalServerInit
  readonly #root: Logger
  readonly #log: Logger
  readonly #limits: Limits
  readonly #links = new Map<string, SessionLink>()
  /** Petal servers met through identify: peer id -> a dialable address with /p2p/. */
  readonly #serverPeers = new Map<string, string>()
  readonly #stopping = new AbortController()
  #state: ServerState = 'joining'
  #ckpt: Checkpoint | undefined
  #modelId = ''
  #span = { start: 0, end: 0 }
  #blockHashes: string[] = []
  #device: Device
  #throughput: Throughput = { decodeTokensPerSec: 0, prefillTokensPerSec: 0 }
  #host: PetalHost | undefined
  #runner: SpanRunner | undefined
  #manager: SessionManager | undefined
  #forwarder: PushForwarder | undefined
  #inference: InferenceService | undefined
  #announcer: Announcer | undefined
  #starting: Promise<void> | undefined
  #stopped: Promise<void> | undefined
  readonly #closed: Promise<void>
  #markClosed: () => void = () => {}
  #rebalancer: Rebalancer | undefined
  #stuckWatch: StuckComputeWatch | undefined

  constructor (init: PetalServerInit) {
    if ((init.blocks === undefined) === (init.numBlocks === undefined)) {
      throw new TypeError('Cannot create a PetalServer: give exactly one of blocks and numBlocks')
    }
    this.#init = init
    this.#root = init.logger ?? pino({ level: 'silent' })
    this.#log = this.#root.child({ component: 'server' })
    this.#limits = resolveLimits(init.limits)
    this.#device = init.device ?? 'cpu'
    this.#closed = new Promise(resolve => { this.#markClosed = resolve })
  }

  /** joining (choosing, loading), online (serving), draining (stopping, or leaving its blocks to move). */
  get state (): ServerState { return this.#state }
  /** The model id it serves (known once start() has opened the checkpoint). */
  get modelId (): string { return this.#modelId }
  /** Served blocks [start, end) (known once chosen). */
  get span (): { start: number, end: number } { return { ...this.#span } }
  /** The libp2p node; throws before start(). */
  get host (): PetalHost {
    if (this.#host === undefined) throw new Error('The server has not started')
    return this.#host
  }

  /** Resolves once the server has stopped, whether stop() was called or a failed move gave up. */
  get closed (): Promise<void> { return this.#closed }

  /** First listen address with /p2p/<peer id>. */
  get address (): string { return fullAddress(this.host) }

  /** Loads the span, measures it, joins the swarm and announces; resolves when online. */
  async start (): Promise<void> {
    this.#starting ??= this.#start().catch(async (err: unknown) => {
      // a failed start leaves nothing running; a stop() during start tears down itself
      if (!this.#stopping.signal.aborted) await this.#teardown()
      throw err
    })
    await this.#starting
  }

  async #start (): Promise<void> {
    const init = this.#init
    const signal = this.#stopping.signal
    const ckpt = Checkpoint.open(init.modelDir)
    this.#ckpt = ckpt
    this.#modelId = init.modelId ?? basename(resolve(init.modelDir))
    const L = ckpt.config.numLayers
    if (init.blocks !== undefined) {
      const { start, end } = init.blocks
      if (!(Number.isInteger(start) && Number.isInteger(end) && start >= 0 && start < end && end <= L)) {
        throw new RangeError(`Cannot serve blocks [${start}, ${end}): ${init.modelDir} has ${L} blocks (0..${L - 1})`)
      }
      this.#span = { start, end }
      await this.#load(signal)
      await this.#join()
    } else {
      await this.#join()
      this.#span = await this.#chooseSpan(init.numBlocks ?? 1, L, signal)
      this.#registerInfo()
      await this.#load(signal)
    }
    signal.throwIfAborted()
    this.#serve()
    this.#state = 'online'
    this.#watchForStuckCompute()
    this.#log.info({ modelId: this.#modelId, blocks: [this.#span.start, this.#span.end], address: this.host.getMultiaddrs()[0]?.toString(), throughput: this.#throughput }, 'online')
    const rebalanceMs = init.rebalanceIntervalMs ?? 0
    if (init.numBlocks !== undefined && rebalanceMs > 0) this.#startRebalancing(rebalanceMs)
  }

  async #join (): Promise<void> {
    this.#host = await createPetalHost({
      ...(this.#init.privateKey !== undefined ? { privateKey: this.#init.privateKey } : {}),
      ...(this.#init.listen !== undefined ? { listen: this.#init.listen } : {}),
      ...(this.#init.announce !== undefined ? { announce: this.#init.announce } : {}),
      ...(this.#init.relayReservations !== undefined ? { relay: { maxReservations: this.#init.relayReservations } } : {}),
      bootstrap: this.#init.bootstrap ?? [],
      dhtServer: true
    })
    await waitForAddress(this.#host, this.#init.addressWaitMs ?? 30_000)
    watchReachability(this.#host, this.#log, () => { this.#announcer?.announceNow() })
    keepNamedRelays(this.#host, this.#init.listen ?? [], this.#log)
    // remember which peers are Petal servers, and where they listen, for peer exchange in info
    const remember = (peer: string, protocols: readonly string[], addrs: readonly { toString: () => string }[]): void => {
      const addr = addrs.map(a => a.toString()).find(a => !a.includes('/0.0.0.0/') && !a.includes('/::/'))
      // a relayed address holds the relay's /p2p/ and then /p2p-circuit: the peer's own id goes last
      if (protocols.includes(PROTOCOL_INFO) && addr !== undefined) this.#serverPeers.set(peer, addr.endsWith(`/p2p/${peer}`) ? addr : `${addr}/p2p/${peer}`)
    }
    this.#host.addEventListener('peer:identify', evt => { remember(evt.detail.peerId.toString(), evt.detail.protocols, evt.detail.listenAddrs) })
    // only connected servers are offered, and a churning swarm brings new peer ids all the time
    this.#host.addEventListener('peer:disconnect', evt => { this.#serverPeers.delete(evt.detail.toString()) })
    for (const peer of this.#host.getPeers()) {
      const known = await this.#host.peerStore.get(peer).catch(() => undefined)
      if (known !== undefined) remember(peer.toString(), known.protocols, known.addresses.map(a => a.multiaddr))
    }
  }

  /**
   * Waits 0..maxStartDelayMs (so that servers started together do not all look at the
   * swarm at the same moment; not when there is no swarm to join), looks at the swarm,
   * picks the worst-covered window.
   */
  async #chooseSpan (numBlocks: number, totalBlocks: number, signal: AbortSignal): Promise<{ start: number, end: number }> {
    if ((this.#init.bootstrap ?? []).length > 0) await sleep(Math.random() * (this.#init.maxStartDelayMs ?? 1000), undefined, { signal })
    const spans = await this.#otherSpans(totalBlocks, signal)
    const span = chooseBestSpan(totalBlocks, numBlocks, spans)
    this.#log.info({ servers: spans, chosen: [span.start, span.end] }, 'chose blocks')
    return span
  }

  /** The spans other servers of this model serve or are loading (draining ones are leaving them). */
  async #otherSpans (totalBlocks: number, signal: AbortSignal): Promise<ServedSpan[]> {
    const self = this.host.peerId.toString()
    const servers = await findServers(this.host, this.#modelId, totalBlocks, { signal, timeoutMs: this.#init.discoveryTimeoutMs ?? 5000 })
    return servers.filter(s => s.info.peerId !== self && s.info.state !== 'draining' && s.info.numBlocks === totalBlocks)
      .map(s => ({ start: s.info.start, end: s.info.end, throughput: servedSpeed(s.info.throughput) }))
  }

  #startRebalancing (intervalMs: number): void {
    const totalBlocks = (this.#ckpt as Checkpoint).config.numLayers
    this.#rebalancer = new Rebalancer({
      intervalMs,
      minGain: this.#init.rebalanceMinGain ?? 1.25,
      totalBlocks,
      self: () => ({ ...this.#span, throughput: servedSpeed(this.#throughput) }),
      others: async (signal) => await this.#otherSpans(totalBlocks, signal),
      moveTo: async (span, signal) => { await this.#moveTo(span, signal) },
      onFailure: (err) => {
        // a move that failed leaves nothing served: give up the swarm rather than announce nothing
        this.#log.error({ err }, 'rebalancing failed: stopping')
        void this.stop()
      },
      log: this.#root.child({ component: 'rebalancer' })
    })
    this.#rebalancer.start()
  }

  /** Leaves the current blocks as stop() does (clients told, sessions drained), then loads and announces `span`. */
  async #moveTo (span: { start: number, end: number }, signal: AbortSignal): Promise<void> {
    this.#state = 'draining'
    await this.#announcer?.stop()
    await this.#drainSessions()
    await this.#closeServing()
    signal.throwIfAborted()
    this.#span = span
    this.#state = 'joining'
    await this.#load(signal)
    signal.throwIfAborted()
    this.#serve()
    this.#state = 'online'
    this.#log.info({ modelId: this.#modelId, blocks: [span.start, span.end], throughput: this.#throughput }, 'online: moved')
  }

  async #load (signal: AbortSignal): Promise<void> {
    const { start, end } = this.#span
    const ckpt = this.#ckpt as Checkpoint
    this.#blockHashes = Array.from({ length: end - start }, (_, i) => ckpt.blockWeightsHash(start + i))
    const began = performance.now()
    const { runner, device } = await loadSpan(ckpt, start, end, {
      device: this.#init.device ?? 'cpu',
      ...(this.#init.graphBlocks !== undefined ? { graphBlocks: this.#init.graphBlocks } : {}),
      ...(this.#init.threads !== undefined ? { threads: this.#init.threads } : {}),
      ...(this.#init.quantization !== undefined ? { quantization: this.#init.quantization } : {}),
      packLimit: this.#init.maxBatch ?? DEFAULT_MAX_BATCH,
      log: this.#log,
      ...(this.#init.onProgress !== undefined ? { onProgress: this.#init.onProgress } : {})
    })
    this.#runner = runner
    this.#device = device
    signal.throwIfAborted()
    this.#log.info({ blocks: [start, end], device, ms: Math.round(performance.now() - began) }, 'loaded blocks')
    this.#throughput = this.#init.throughput ?? await measureThroughput(runner)
    this.#manager = new SessionManager({
      modelId: this.#modelId, runner, maxSessions: this.#init.maxSessions ?? 16, cacheTokens: this.#init.cacheTokens ?? 16384,
      ...(this.#init.simulatedCompute !== undefined ? { simulatedCompute: this.#init.simulatedCompute } : {}),
      ...(this.#init.maxBatch !== undefined ? { maxBatch: this.#init.maxBatch } : {}),
      ...(this.#init.pieceMs !== undefined ? { pieceMs: this.#init.pieceMs } : {}),
      // prefill rate is tokens x blocks per second: the span's ms per row is blocks / rate
      ...(this.#throughput.prefillTokensPerSec > 0 ? { prefillMsPerRow: 1000 * (end - start) / this.#throughput.prefillTokensPerSec } : {})
    })
  }

  #registerInfo (): void {
    const log = this.#root.child({ component: 'info' })
    void this.host.handle(PROTOCOL_INFO, infoHandler({ info: () => this.info(), linkLatencyMs: this.#init.linkLatencyMs ?? 0, requestTimeoutMs: 10_000, log }))
  }

  /** Registers the inference and push handlers and starts announcing. */
  #serve (): void {
    const host = this.host
    const manager = this.#manager as SessionManager
    const runner = this.#runner as SpanRunner
    const linkLatencyMs = this.#init.linkLatencyMs ?? 0
    this.#forwarder = new PushForwarder({
      host, limits: this.#limits, linkLatencyMs, dialTimeoutMs: 10_000, inactivityTimeoutMs: INFERENCE_INACTIVITY_MS, log: this.#root.child({ component: 'push-out' })
    })
    const executor = new RunExecutor({
      manager, forwarder: this.#forwarder, hiddenSize: runner.config.hiddenSize, limits: this.#limits, selfPeerId: host.peerId.toString(), links: this.#links
    })
    this.#inference = new InferenceService({
      manager, executor, links: this.#links, limits: this.#limits, linkLatencyMs, inactivityTimeoutMs: INFERENCE_INACTIVITY_MS, log: this.#root.child({ component: 'inference' })
    })
    if (this.#init.blocks !== undefined) this.#registerInfo()
    void host.handle(PROTOCOL_INFERENCE, this.#inference.handler, { maxInboundStreams: 1024 })
    void host.handle(PROTOCOL_PUSH, pushHandler({
      executor, links: this.#links, limits: this.#limits, inactivityTimeoutMs: INFERENCE_INACTIVITY_MS, log: this.#root.child({ component: 'push-in' })
    }), { maxInboundStreams: 256 })
    this.#announcer = new Announcer({
      dht: host.services.dht, modelId: this.#modelId, ...this.#span, intervalMs: this.#init.announceIntervalMs ?? 120_000, log: this.#root.child({ component: 'announcer' })
    })
    this.#announcer.start()
  }

  /** What /petal/1/info answers now. */
  info (): ServerInfo {
    const manager = this.#manager
    return {
      peerId: this.host.peerId.toString(),
      addrs: this.host.getMultiaddrs().slice(0, 64).map(a => a.toString()),
      modelId: this.#modelId,
      numBlocks: this.#ckpt?.config.numLayers ?? this.#span.end,
      start: this.#span.start,
      end: this.#span.end,
      state: this.#state,
      throughput: { ...this.#throughput },
      freeCacheTokens: this.#state === 'online' ? manager?.freeCacheTokens ?? 0 : 0,
      openSessions: manager?.openSessions ?? 0,
      maxSessions: this.#init.maxSessions ?? 16,
      device: this.#device,
      version: PETAL_VERSION,
      blockHashes: [...this.#blockHashes],
      updatedAt: Date.now(),
      metrics: manager?.metrics ?? { runsComputed: 0, runsDroppedBeforeStart: 0, runsAbortedMidRun: 0, runsDroppedLate: 0 },
      knownServers: this.#knownServers(),
      // where sessions may cut: every block by default, the whole span on a GPU
      ...((this.#runner?.blocksPerSession ?? 1) > 1 ? { graphBlocks: this.#runner?.blocksPerSession } : {}),
      ...(this.#init.quantization !== undefined && this.#init.quantization !== 'none' ? { quantization: this.#init.quantization } : {})
    }
  }

  /** Addresses of the Petal servers this node is connected to (they speak /petal/1/info). */
  #knownServers (): string[] {
    const out: string[] = []
    for (const peer of this.host.getPeers()) {
      const addr = this.#serverPeers.get(peer.toString())
      if (addr !== undefined && out.length < MAX_KNOWN_SERVERS) out.push(addr)
    }
    return out
  }

  /**
   * Leaves the swarm gracefully: turns draining, stops announcing, sends a `draining`
   * notice on every session, refuses new sessions, lets queued runs finish (at most
   * drainGraceMs), closes the streams and stops libp2p. Also aborts a start() in
   * progress. Safe to call more than once.
   */
  async stop (): Promise<void> {
    this.#stopped ??= this.#stop()
    await this.#stopped
  }

  async #stop (): Promise<void> {
    this.#stuckWatch?.stop()
    this.#state = 'draining'
    this.#stopping.abort(new Error('The server is stopping'))
    await this.#starting?.catch(() => {})
    await this.#rebalancer?.stop()
    await this.#announcer?.stop()
    await this.#drainSessions()
    await this.#forwarder?.stop()
    await this.#teardown()
    this.#log.info('stopped')
    this.#markClosed()
  }

  /**
   * Leaves the swarm when a batch of runs has computed for stuckAfterMs of free event-loop
   * time (node/stuck-compute-watch.ts: a run that will never finish), rather than take every
   * run sent to it and answer none. One watch for the server's life: it reads whichever
   * session manager serves now, across moves between blocks. Closes every session's stream, so that their clients fail over at once
   * instead of waiting out their timeouts, and resolves `closed` (the CLI then exits with 1, for
   * a supervisor to restart it). It does not wait for the hung run, nor free what it holds.
   */
  #watchForStuckCompute (): void {
    const stuckAfterMs = this.#init.stuckAfterMs ?? DEFAULT_STUCK_AFTER_MS
    if (stuckAfterMs <= 0) return
    this.#stuckWatch = new StuckComputeWatch({
      stuckAfterMs,
      runningBatch: () => this.#manager?.runningBatch,
      onStuck: (ms) => {
        if (this.#stopped !== undefined) return
        this.#log.error({ stuckMs: Math.round(ms), queuedRuns: this.#manager?.queuedRuns }, 'a run has computed for too long with the event loop free (stuck compute): leaving the swarm')
        this.#stopped = this.#leaveStuck()
      }
    })
    this.#stuckWatch.start()
  }

  async #leaveStuck (): Promise<void> {
    this.#state = 'draining'
    this.#stopping.abort(new Error('The server is leaving: its compute is stuck'))
    const within = async (work: Promise<unknown> | undefined): Promise<void> => { await Promise.race([work?.catch(() => {}), sleep(1000)]) }
    await within(this.#rebalancer?.stop())
    await within(this.#announcer?.stop())
    this.#manager?.drain()
    await within(this.#inference?.closeAll(0))
    this.#markClosed()
  }

  /**
   * Tells every session that this server is draining, refuses new ones, lets queued runs
   * finish (at most drainGraceMs) and closes the streams.
   */
  async #drainSessions (): Promise<void> {
    const graceMs = this.#init.drainGraceMs ?? 2000
    this.#manager?.drain()
    this.#inference?.notifyDraining()
    // open sessions keep being served for a grace period: their clients, told we are
    // draining, move their blocks elsewhere and close them; stragglers are cut off after it
    const deadline = performance.now() + graceMs
    if ((this.#manager?.openSessions ?? 0) > 0 || this.#manager?.busy === true) {
      this.#log.info({ openSessions: this.#manager?.openSessions, queuedRuns: this.#manager?.queuedRuns }, 'draining: waiting for clients to move')
    }
    while (((this.#manager?.openSessions ?? 0) > 0 || this.#manager?.busy === true) && performance.now() < deadline) await sleep(25)
    await this.#inference?.closeAll(1000)
  }

  /** Unregisters the inference and push handlers and frees the span (the info handler stays). */
  async #closeServing (): Promise<void> {
    await this.host.unhandle([PROTOCOL_INFERENCE, PROTOCOL_PUSH])
    await this.#forwarder?.stop()
    await this.#runner?.release()
    this.#runner = undefined
    this.#manager = undefined
    this.#inference = undefined
    this.#forwarder = undefined
    this.#announcer = undefined
  }

  async #teardown (): Promise<void> {
    await this.#host?.stop()
    await this.#runner?.release()
  }
}

/** A server's speed as span choice counts it: its decode tokens/s (at least 1, so a new server counts). */
function servedSpeed (throughput: Throughput): number {
  return Math.max(1, throughput.decodeTokensPerSec)
}
