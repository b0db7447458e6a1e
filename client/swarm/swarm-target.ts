import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import type { ClientParts } from '../../model/client-parts.js'
import type { PetalHost } from '../../net/host.js'
import { CancelledError, DrainingError, GapError, PetalError } from '../../protocol/errors.js'
import { DEFAULT_LIMITS } from '../../protocol/limits.js'
import type { WireDtype } from '../../protocol/tensor-codec.js'
import { NoRouteError, type RouteHop } from '../routing/route-planner.js'
import type { PendingRun, ServerRunCounts, TargetModel, TargetStats } from '../target-model.js'
import { runLayout, type RunLayout } from '../../model/token-tree.js'
import { HiddenHistory } from './hidden-history.js'
import { ConnectionLostError, type SpanSessionInit } from './span-session.js'
import type { ServerDirectory, WeightPolicy } from './server-directory.js'
import { describeRoute, isFullRefusal, openHops, planCoveredRoute, short, type Hop } from './route-hops.js'
import { ServerCounters } from './server-counters.js'
import { hostsOf, MIN_PREFILL_CHUNK, prefillChunkSizes } from './prefill-plan.js'

/** Routes tried when servers fail to open sessions before SwarmTarget.open gives up. */
const OPEN_ATTEMPTS = 3
/** GAP answers one run may mend (#mendGap) before the server counts as failed. */
const MAX_GAPS_MENDED = 3
/** Pause before servers that failed to open a session, and alone hold some blocks, are tried again. */
const OPEN_RETRY_PAUSE_MS = 250

export interface SwarmTargetInit {
  host: PetalHost
  directory: ServerDirectory
  /** Whose weights this target accepts (default: any server's). */
  weights?: WeightPolicy
  /** Refreshes `directory` from the DHT (called when re-routing finds no route). */
  rediscover: () => Promise<void>
  parts: ClientParts
  modelId: string
  /** Cache positions each server session reserves. */
  maxTokens: number
  /** Servers forward hidden states to the next server themselves (N+1 one-way trips, not 2N). */
  push?: boolean
  /**
   * Push mode: the route carries the servers' outputs to its last hop, which returns them all
   * in one message (RunMessage.carry), when they add at most this many bytes to it; larger
   * runs, and routes with a server that cannot carry, have every server reply on its own.
   * Default 0 (never; see CARRY_SUGGESTED_BYTES for when to turn it on).
   */
  carryMaxBytes?: number
  wireDtype?: WireDtype
  /** Simulated one-way latency on every frame the client sends, ms. */
  sendDelayMs?: number
  /** Longest wait for one server's answer, ms. */
  timeoutMs?: number
  /** When to ping a server whose answer is overdue, and how long it has to echo (SpanSessionInit.liveness). */
  liveness?: SpanSessionInit['liveness']
  /** Most failovers one run may go through before it fails. Default 8. */
  maxFailoversPerRun?: number
  /**
   * When some blocks have no server (at the start, or after the one holding them failed),
   * keep looking for one this long, ms (the swarm may heal: a server joins, or a
   * --num-blocks server moves there). Default 0: fail with NoRouteError after one fresh look.
   */
  coverageWaitMs?: number
  /**
   * How far routing may stray from the cheapest route to spread clients over near-equal
   * servers: each plan scales each server's hop costs by a random factor in [1, 1 + this).
   * Default 0.1; 0: always the cheapest (ties by discovery order).
   */
  routeJitter?: number
  /**
   * Longest run sent in one frame, tokens; longer ones (a long prompt) go as consecutive
   * chunks. Default: what fits the servers' limits (4096 tokens, 16 MiB of activations).
   */
  maxRunTokens?: number
  /**
   * Send a long run (a prompt) as consecutive chunks, each going on to the next server as soon
   * as it is through one, so the servers compute different chunks at once (pipeline
   * parallelism) instead of all but one waiting: true always, false never, 'auto' (default)
   * where the servers' announced speeds say it pays and no two of them share a host
   * (prefill-plan.ts).
   */
  pipelinePrefill?: boolean | 'auto'
  logger?: Logger
}

/** Activation bytes in one run frame (servers accept 64 MiB frames; stay well under). */
const MAX_RUN_BYTES = 16 * 2 ** 20

/**
 * A carryMaxBytes for a client short of CPU: a few decode steps' worth (two hops of a C=8192
 * model in float16), well under a millisecond at 1 Gbit/s. Carried outputs ride the critical
 * path, while replies of their own travel beside it and are read while the pipeline still
 * runs; carrying saves the client a message per server and run. Measured at 20 ms one way
 * (pipelined tree speculation over sync, scripts/MEASUREMENTS.md): where the client shares
 * two cores with three servers, +3% (1.467 against 1.426 on average, 4 alternated pairs);
 * where it has cores of its own, -1% (1.48 against 1.50, 2 pairs). So it is off by default.
 */
export const CARRY_SUGGESTED_BYTES = 32 * 1024

/**
 * The target model of one sequence, computed by a chain of servers. Runs travel the
 * route hop by hop (or are pushed server to server); many can be in flight at once. When a
 * server fails, only its span is re-routed (maybe over several servers), its caches are
 * rebuilt by replaying the inputs the client kept, and the runs go on: output unchanged.
 */
export class SwarmTarget implements TargetModel {
  readonly vocabSize: number
  readonly #init: SwarmTargetInit
  readonly #numBlocks: number
  #hops: Hop[]
  readonly #histories = new Map<number, HiddenHistory>()
  readonly #repairs = new Map<Hop, Promise<void>>()
  readonly #cancelled = new Set<number>()
  /** Runs on their way through the hops, by id (#runChain). */
  readonly #running = new Map<number, Promise<Float32Array[]>>()
  /** The runs a pipelined prefill was cut into, by the run id the caller knows. */
  readonly #chunksOf = new Map<number, number[]>()
  #nextRunId = 0
  readonly #counters: ServerCounters
  readonly #stats = { runsSent: 0, runsCancelled: 0, failovers: 0, routeChanges: [] as string[], hopsAdopted: 0, hopsReplayed: 0, gapsMet: 0, gapsFilled: 0 }
  #closed = false

  private constructor (init: SwarmTargetInit, hops: Hop[]) {
    this.#init = init
    this.vocabSize = init.parts.config.vocabSize
    this.#numBlocks = init.parts.config.numLayers
    this.#hops = hops
    this.#counters = new ServerCounters(init.host)
  }

  /**
   * Plans a route over every block and opens a session on each of its servers. A server that
   * fails to open one is routed around, up to OPEN_ATTEMPTS times, as a failover mid-generation
   * would: one that cannot be reached is forgotten, one draining is left, one whose connection
   * drops is banned, and one that is full counts as full (asked again after a pause when no
   * other has room). When the servers banned this way were the only ones for some blocks, they
   * get one more chance after a pause (a dropped connection).
   */
  static async open (init: SwarmTargetInit): Promise<SwarmTarget> {
    const failures = { handle: (_runId: number, _err: PetalError): void => {} }
    const bannedHere: string[] = []
    let forgiven = false
    let hops: Hop[] | undefined
    for (let attempt = 1; hops === undefined; attempt++) {
      let route: RouteHop[]
      try {
        route = await planCoveredRoute(init, 0, init.parts.config.numLayers)
      } catch (err) {
        if (err instanceof NoRouteError && bannedHere.length > 0 && !forgiven) {
          forgiven = true
          for (const peer of bannedHere) init.directory.liftBan(peer)
          await sleep(OPEN_RETRY_PAUSE_MS)
          continue
        }
        const refused = init.directory.refusedForWeights(init.weights ?? {})
        if (err instanceof NoRouteError && refused.length > 0) {
          err.message += `; refused ${refused.map(s => `…${s.info.peerId.slice(-6)}[${s.info.start},${s.info.end})${s.info.quantization !== undefined ? ` (${s.info.quantization})` : ''}`).join(', ')}: their weights differ from this checkpoint's`
        }
        throw err
      }
      try {
        hops = await openHops(init, route, (runId, err) => { failures.handle(runId, err) })
      } catch (err) {
        const retryable = err instanceof ConnectionLostError || (err instanceof PetalError && err.retryable)
        if (!retryable || attempt >= OPEN_ATTEMPTS) throw err
        bannedHere.push(...route.map(h => h.peerId).filter(p => init.directory.isBanned(p)))
        init.logger?.info({ err, attempt }, 'a server failed to open a session: routing around it')
        // a full server is not banned (route-hops.ts): when no other has room it is asked again, after a pause
        if (isFullRefusal(err)) await sleep(OPEN_RETRY_PAUSE_MS * attempt)
      }
    }
    const target = new SwarmTarget(init, hops)
    failures.handle = (runId, err) => { target.#onPushFailure(runId, err) }
    await target.#counters.record(hops.map(h => h.session.peerId.toString()))
    return target
  }

  async serverCounters (): Promise<Record<string, ServerRunCounts>> {
    return await this.#counters.delta()
  }

  /** The live route, e.g. [{peerId, start: 0, end: 2}, ...]. */
  /** What this target waits for now, for diagnostics (a soak's stuck operation). */
  describeWaits (): string {
    const hops = this.#hops.map(h => `[${h.start},${h.end}) …${h.session.peerId.toString().slice(-6)}: ${h.session.describeWaits()}, in flight [${[...h.inFlight.keys()].join(', ')}]`)
    return `runs [${[...this.#running.keys()].join(', ')}], repairs ${this.#repairs.size}${this.#closed ? ', closed' : ''}; ${hops.join('; ')}`
  }

  get route (): RouteHop[] {
    return this.#hops.map(h => ({ peerId: h.session.peerId.toString(), start: h.start, end: h.end }))
  }

  submit (ids: readonly number[], position: number, parents?: readonly number[], logitsFrom = 0): PendingRun {
    const runId = this.#nextRunId++
    this.#stats.runsSent++
    const sizes = parents === undefined ? this.#prefillChunks(ids.length) : [ids.length]
    const logits = sizes.length > 1
      ? this.#runChunked(runId, ids, position, sizes, logitsFrom)
      : this.#runChain(runId, ids, position, parents === undefined ? undefined : runLayout(position, ids.length, parents), logitsFrom)
    logits.catch(() => {}) // the caller may drop a cancelled run's promise
    return { runId, position, length: ids.length, logits }
  }

  /** Sizes of the chunks a run of T tokens goes as along the current route ([T]: whole; prefill-plan.ts). */
  #prefillChunks (T: number): number[] {
    const { directory, pipelinePrefill = 'auto' } = this.#init
    if (pipelinePrefill === false || T < 2 * MIN_PREFILL_CHUNK) return [T]
    const stages = this.#hops.map(hop => {
      const known = directory.get(hop.session.peerId.toString())
      const speed = known?.info.throughput.prefillTokensPerSec ?? 0 // tokens/s through one block
      return { msPerToken: speed > 0 ? (1000 * (hop.end - hop.start)) / speed : 0, rttMs: known?.rttMs ?? 0, hosts: hostsOf(known?.info.addrs ?? []) }
    })
    return prefillChunkSizes(T, stages, pipelinePrefill)
  }

  /**
   * A long run as consecutive runs of `sizes` tokens, all submitted at once: each server
   * computes them in order, and a chunk goes on to the next server while the one after it is
   * computed here. -> logits (T, V) (rows before `logitsFrom` empty, as one run's).
   */
  async #runChunked (runId: number, ids: readonly number[], position: number, sizes: readonly number[], logitsFrom: number): Promise<Float32Array[]> {
    const chunkIds = sizes.map(() => this.#nextRunId++)
    this.#chunksOf.set(runId, chunkIds)
    try {
      let at = 0
      const parts = sizes.map((n, i) => {
        const from = at
        at += n
        return this.#runChain(chunkIds[i] as number, ids.slice(from, from + n), position + from, undefined, Math.min(n, Math.max(0, logitsFrom - from)))
      })
      for (const p of parts) p.catch(() => {}) // the first failure is thrown below; the rest are not left unhandled
      const rows = await Promise.all(parts)
      if (this.#stopped(runId)) throw new CancelledError(`Run ${runId} was cancelled`)
      return rows.flat()
    } catch (err) {
      if (this.#stopped(runId) || err instanceof CancelledError) throw new CancelledError(`Run ${runId} was cancelled`)
      this.#cancelRuns(chunkIds) // the chunks still in flight are of no use now
      throw err
    } finally {
      this.#chunksOf.delete(runId)
    }
  }

  cancel (runIds: readonly number[]): void {
    const asked = runIds.filter(id => !this.#cancelled.has(id))
    // a pipelined prefill's chunks go with it
    this.#stats.runsCancelled += asked.length
    this.#cancelRuns([...asked, ...asked.flatMap(id => this.#chunksOf.get(id) ?? [])])
  }

  /** A run whose result nobody waits for any more: cancelled, or the target closed. */
  #stopped (runId: number): boolean {
    return this.#closed || this.#cancelled.has(runId)
  }

  /** Cancels runs by their ids on the wire (a pipelined prefill's chunks included), counting nothing. */
  #cancelRuns (runIds: readonly number[]): void {
    const fresh = runIds.filter(id => !this.#cancelled.has(id))
    if (fresh.length === 0) return
    for (const id of fresh) this.#cancelled.add(id)
    // every server at once, so queued copies are dropped before they start
    for (const hop of this.#hops) hop.session.cancel(fresh)
  }

  /**
   * TargetModel.adoptPrefix: every hop whose server and blocks the source's route shares copies
   * the positions from the source's session there (`adopt`); any other hop, or one whose
   * server cannot adopt, gets them replayed from the inputs the source kept at its first
   * block. False when the two routes cut the blocks at different boundaries (a hop's input
   * would have to be computed), or the source has not sent that many positions.
   */
  async adoptPrefix (source: TargetModel, length: number): Promise<boolean> {
    if (!(source instanceof SwarmTarget) || source === this || source.#init.modelId !== this.#init.modelId) return false
    if (!Number.isInteger(length) || length < 1 || this.#closed) return false
    const boundaries = (t: SwarmTarget): string => t.#hops.map(h => h.start).join(',')
    if (boundaries(this) !== boundaries(source)) return false
    if (source.#hops.some(h => (source.#histories.get(h.start)?.length ?? 0) < length)) return false
    // what entered each boundary: a failover here replays it, as it would have been sent
    // ordered after every run sent so far (none, for a fresh target), before the next
    for (const hop of this.#hops) this.#history(hop.start).write(0, source.#history(hop.start).read(0, length), this.#nextRunId - 0.5)
    const done = await Promise.allSettled(this.#hops.map(async hop => { await this.#adoptOnHop(hop, source, length) }))
    return done.every(d => d.status === 'fulfilled')
  }

  /** One hop of adoptPrefix: `adopt` from the source's session on the same server, else a replay of the kept inputs. */
  async #adoptOnHop (hop: Hop, source: SwarmTarget, length: number): Promise<void> {
    const twin = source.#hops.find(h => h.start === hop.start && h.end === hop.end && h.session.peerId.equals(hop.session.peerId))
    if (twin !== undefined && !twin.session.lost) {
      try {
        await hop.session.adopt(this.#nextRunId++, twin.session.sessionId, length)
        this.#stats.hopsAdopted++
        return
      } catch (err) {
        if (hop.session.lost) throw err
        this.#init.logger?.debug({ peer: hop.session.peerId.toString(), err: (err as Error).message }, 'the server cannot adopt: replaying the prefix')
      }
    }
    for (let from = 0; from < length; from += this.#maxRunTokens) {
      const to = Math.min(length, from + this.#maxRunTokens)
      await hop.session.run(this.#nextRunId++, from, this.#history(hop.start).read(from, to))
    }
    this.#stats.hopsReplayed++
  }

  stats (): TargetStats {
    // hops on servers holding quantized blocks: their outputs are close to float32's, not equal
    const quantized = this.route.flatMap(h => {
      const q = this.#init.directory.get(h.peerId)?.info.quantization
      return q === undefined ? [] : [`${describeRoute([h])} ${q}`]
    })
    return { ...this.#stats, routeChanges: [...this.#stats.routeChanges], route: describeRoute(this.route), ...(quantized.length > 0 ? { quantizedHops: quantized } : {}) }
  }

  async close (): Promise<void> {
    if (!this.#closed) for (const h of this.#hops) this.#init.directory.noteSession(h.session.peerId.toString(), -1)
    this.#closed = true
    await Promise.all(this.#hops.map(async h => { await h.session.close() }))
  }

  /** One run through every hop (#chain), known to later runs until it settles (#earlierRunsSettled). */
  #runChain (runId: number, ids: readonly number[], position: number, tree: RunLayout | undefined, logitsFrom: number): Promise<Float32Array[]> {
    const chain = this.#chain(runId, ids, position, tree, logitsFrom)
    this.#running.set(runId, chain)
    chain.catch(() => {}).finally(() => { this.#running.delete(runId) })
    return chain
  }

  /**
   * Waits until every run submitted before `runId` has settled (at most the result timeout);
   * false when there was none.
   */
  async #earlierRunsSettled (runId: number): Promise<boolean> {
    const earlier = [...this.#running].filter(([id]) => id < runId).map(([, chain]) => chain)
    if (earlier.length === 0) return false
    const timer = Promise.withResolvers<void>()
    const timeout = setTimeout(timer.resolve, this.#init.timeoutMs ?? 30_000)
    await Promise.race([Promise.allSettled(earlier), timer.promise])
    clearTimeout(timeout)
    return true
  }

  /**
   * A server answered GAP: its cache ends before the run's position. After a failover that is
   * a race, not a fault: earlier runs going on hop by hop reach it after later ones that were
   * pushed, or a run sent again after its pusher was lost cut the cache back. So wait for the
   * earlier runs; the first time that was needed, the caller just sends the run again. Else
   * send the server what it lacks from the history, rows [cacheEnd, position), first. False
   * when the history does not reach that far: the caller then treats the server as failed.
   */
  async #mendGap (hop: Hop, runId: number, position: number, gap: GapError, attempt: number): Promise<boolean> {
    const waited = await this.#earlierRunsSettled(runId)
    if (this.#stopped(runId) || (waited && attempt === 1)) return true
    const history = this.#history(hop.start)
    if (gap.cacheEnd >= position || history.length < position) return gap.cacheEnd >= position
    this.#init.logger?.info({ peer: hop.session.peerId.toString(), runId, from: gap.cacheEnd, to: position }, 'filling a gap in a server\'s cache from the history')
    this.#stats.gapsFilled++
    for (let from = gap.cacheEnd; from < position; from += this.#maxRunTokens) {
      const to = Math.min(position, from + this.#maxRunTokens)
      await hop.session.run(this.#nextRunId++, from, history.read(from, to))
    }
    return true
  }

  /**
   * One run through every hop. `tree` (a token-tree run) travels whole with every hop;
   * only its trunk rows enter the histories, as only they enter the servers' caches.
   */
  async #chain (runId: number, ids: readonly number[], position: number, tree: RunLayout | undefined, logitsFrom: number): Promise<Float32Array[]> {
    const T = ids.length
    if (tree !== undefined && T > this.#maxRunTokens) throw new RangeError(`Cannot send a token tree of ${T} rows: one frame carries at most ${this.#maxRunTokens}`)
    const C = this.#init.parts.config.hiddenSize
    const cached = (tree?.trunk ?? T) * C
    let x = this.#init.parts.embed(ids) // (1,T,C)
    let b = 0
    let failovers = 0
    let gapsMended = 0
    // whether x is already recorded in the history at b (a retry must not rewrite it: that would
    // truncate the rows that later runs recorded meanwhile)
    let recorded = false
    if (this.#init.push === true && this.#hops.length > 1 && T <= this.#maxRunTokens) ({ x, b, recorded } = await this.#runPushed(runId, x, position, tree, cached))
    while (b < this.#numBlocks) {
      if (this.#stopped(runId)) throw new CancelledError(`Run ${runId} was cancelled`)
      const hop = this.#hopAt(b)
      if (!recorded) this.#history(b).write(position, x.subarray(0, cached), runId)
      recorded = false
      if (hop.session.draining) {
        // the server is leaving: move its blocks elsewhere before sending it more work
        await this.#repair(hop, new DrainingError(`${hop.session.peerId.toString()} is draining`), { runId, position })
        if (this.#stopped(runId)) throw new CancelledError(`Run ${runId} was cancelled`)
        recorded = true
        continue
      }
      hop.inFlight.set(runId, position)
      try {
        x = await this.#runOnHop(hop, runId, position, x, tree?.parents)
      } catch (err) {
        if (err instanceof CancelledError || this.#stopped(runId)) throw new CancelledError(`Run ${runId} was cancelled`)
        if (err instanceof PetalError && !err.retryable && err.code !== 'GAP' && err.code !== 'UNKNOWN_SESSION') throw err
        if (err instanceof GapError) this.#stats.gapsMet++
        if (err instanceof GapError && gapsMended++ < MAX_GAPS_MENDED && await this.#mendGap(hop, runId, position, err, gapsMended).catch(() => false)) {
          if (this.#stopped(runId)) throw new CancelledError(`Run ${runId} was cancelled`)
          recorded = true
          continue
        }
        if (++failovers > (this.#init.maxFailoversPerRun ?? 8)) throw err
        await this.#repair(hop, err as Error)
        // a rollback while we waited supersedes this run (and has rewritten the history past it);
        // otherwise x, this hop's input, is what the history holds at b
        if (this.#stopped(runId)) throw new CancelledError(`Run ${runId} was cancelled`)
        recorded = true
        continue
      } finally {
        hop.inFlight.delete(runId)
      }
      b = hop.end
    }
    if (this.#stopped(runId)) throw new CancelledError(`Run ${runId} was cancelled`)
    return await this.#init.parts.logits(x, logitsFrom)
  }

  /** Longest run in one frame: a prompt of 4096 tokens of a C=8192 model would be a 128 MiB frame. */
  get #maxRunTokens (): number {
    const C = this.#init.parts.config.hiddenSize
    const bytes = this.#init.wireDtype === 'float16' ? 2 : 4
    return this.#init.maxRunTokens ?? Math.max(1, Math.min(DEFAULT_LIMITS.maxTokensPerRun, Math.floor(MAX_RUN_BYTES / (C * bytes))))
  }

  /** hidden (1,T,C) through one hop, in consecutive chunks when T is over the frame limits. */
  async #runOnHop (hop: Hop, runId: number, position: number, x: Float32Array, parents: readonly number[] | undefined): Promise<Float32Array> {
    const C = this.#init.parts.config.hiddenSize
    const T = x.length / C
    const step = this.#maxRunTokens
    if (T <= step) return await hop.session.run(runId, position, x, undefined, parents)
    const out = new Float32Array(x.length)
    for (let t = 0; t < T; t += step) {
      const n = Math.min(step, T - t)
      out.set(await hop.session.run(runId, position + t, x.subarray(t * C, (t + n) * C)), t * C)
    }
    return out
  }

  /**
   * Push mode: the first server forwards along the whole route; every server also returns
   * its output here (kept as the next span's input for failover). On a failure the run goes
   * on hop by hop from the broken boundary. `cached`: values of x0 that enter the caches (the trunk).
   */
  async #runPushed (runId: number, x0: Float32Array, position: number, tree: RunLayout | undefined, cached: number): Promise<{ x: Float32Array, b: number, recorded: boolean }> {
    const hops = [...this.#hops]
    if (this.#carries(hops, x0.length)) return await this.#runCarried(runId, x0, position, tree, cached, hops)
    const rows = x0.length / this.#init.parts.config.hiddenSize
    const later = hops.slice(1).map(h => h.session.expect(runId, position, rows))
    for (const p of later) p.catch(() => {})
    this.#history(0).write(position, x0.subarray(0, cached), runId)
    const pushTo = hops.slice(1).map(h => ({ peerId: h.session.peerId.toString(), sessionId: h.session.sessionId }))
    const outs = [(hops[0] as Hop).session.run(runId, position, x0, pushTo, tree?.parents), ...later]
    let x = x0
    for (const [i, hop] of hops.entries()) {
      try {
        // on failure x stays this hop's input
        x = i === 0 ? await (outs[0] as Promise<Float32Array>) : await this.#pushedResult(runId, outs[i] as Promise<Float32Array>, hops[i - 1] as Hop)
      } catch (err) {
        if (err instanceof CancelledError || this.#stopped(runId)) throw new CancelledError(`Run ${runId} was cancelled`)
        if (err instanceof GapError) this.#stats.gapsMet++
        // stop waiting here for the later hops' results, without telling their servers: the run
        // goes on to them hop by hop under the same id, and a server drops a run it was told to cancel
        for (const h of hops.slice(i)) h.session.reject(runId, err as Error)
        return { x, b: hop.start, recorded: true }
      }
      if (hop.end < this.#numBlocks) this.#history(hop.end).write(position, x.subarray(0, cached), runId)
    }
    return { x, b: this.#numBlocks, recorded: true }
  }

  /** Whether a pushed run of `elements` activations goes with outputs carried (carryMaxBytes). */
  #carries (hops: readonly Hop[], elements: number): boolean {
    const bytes = (hops.length - 1) * elements * (this.#init.wireDtype === 'float16' ? 2 : 4)
    return bytes <= (this.#init.carryMaxBytes ?? 0) && hops.every(h => h.session.carriesOutputs)
  }

  /**
   * #runPushed with outputs carried: only the last hop answers, with every hop's output. Any
   * failure on the way (an error, a lost server) leaves the client without the outputs before
   * it, so the run then goes on hop by hop from the first hop: the servers before the failure
   * compute it again from the same input (a run truncates to its start), which is rare and
   * costs one run's compute there. It waits for the runs before it first: the histories take
   * positions in order, and an earlier run still on its way writes its carried outputs there
   * when it arrives (a run that overtook it met a GAP at the last hop).
   */
  async #runCarried (runId: number, x0: Float32Array, position: number, tree: RunLayout | undefined, cached: number, hops: readonly Hop[]): Promise<{ x: Float32Array, b: number, recorded: boolean }> {
    const rows = x0.length / this.#init.parts.config.hiddenSize
    const last = hops[hops.length - 1] as Hop
    const tail = last.session.expectCarried(runId, position, rows, hops.length - 1)
    this.#history(0).write(position, x0.subarray(0, cached), runId)
    const pushTo = hops.slice(1).map(h => ({ peerId: h.session.peerId.toString(), sessionId: h.session.sessionId }))
    // the earlier hops answer only to fail (or, faultily, to reply anyway): either ends the wait
    const earlier = [(hops[0] as Hop).session.run(runId, position, x0, pushTo, tree?.parents, true), ...hops.slice(1, -1).map(h => h.session.expect(runId, position, rows))]
    const anyEarlier = Promise.race(earlier.map(async p => { await p; throw new ConnectionLostError(`Run ${runId} was answered before the last hop, though sent to carry its outputs there`) }))
    anyEarlier.catch(() => {})
    // a lost pusher means the push may never have reached the hops after it
    const unsubscribe = hops.slice(0, -1).map(h => h.session.onConnectionLost(cause => { last.session.reject(runId, cause) }))
    try {
      const { hidden, carried } = await Promise.race([tail, anyEarlier])
      for (const [i, hop] of hops.slice(0, -1).entries()) {
        hop.session.reject(runId, new CancelledError(`Run ${runId} was answered by the last hop`)) // nothing else comes for it
        this.#history(hop.end).write(position, (carried[i] as Float32Array).subarray(0, cached), runId)
      }
      return { x: hidden, b: this.#numBlocks, recorded: true }
    } catch (err) {
      if (err instanceof CancelledError || this.#stopped(runId)) throw new CancelledError(`Run ${runId} was cancelled`)
      if (err instanceof GapError) this.#stats.gapsMet++
      for (const h of hops) h.session.reject(runId, err as Error)
      await this.#earlierRunsSettled(runId)
      if (this.#stopped(runId)) throw new CancelledError(`Run ${runId} was cancelled`)
      return { x: x0, b: 0, recorded: true }
    } finally {
      for (const off of unsubscribe) off()
    }
  }

  /**
   * A later hop's result for a pushed run, or a ConnectionLostError when the hop before it (the
   * one that pushes to it) is lost first: its output reached us, but its push may not have left
   * it (a SIGKILL between the two writes), and the later server would never answer.
   */
  async #pushedResult (runId: number, result: Promise<Float32Array>, pusher: Hop): Promise<Float32Array> {
    return await new Promise((resolve, reject) => {
      const unsubscribe = pusher.session.onConnectionLost(cause => {
        reject(new ConnectionLostError(`Run ${runId} may not have been pushed on: ${short(pusher.session.peerId.toString())} was lost (${cause.message})`))
      })
      result.then(resolve, reject).finally(unsubscribe)
    })
  }

  /** Replaces a failed hop by a new route over its blocks and rebuilds their caches. One repair per hop at a time. */
  async #repair (hop: Hop, cause: Error, from?: { runId: number, position: number }): Promise<void> {
    const running = this.#repairs.get(hop)
    if (running !== undefined) return await running
    if (!this.#hops.includes(hop)) return // already replaced: the caller retries on the new route
    // rebuild what the lost server had: everything before the earliest run that did not get
    // through it (a draining server still finishes what it has, so only what comes next);
    // in the histories the replay comes just before the first of those runs
    const replayEnd = from?.position ?? Math.min(...hop.inFlight.values())
    const replayRun = (from?.runId ?? Math.min(...hop.inFlight.keys())) - 0.5
    const repair = this.#replace(hop, replayEnd, replayRun, cause)
    this.#repairs.set(hop, repair)
    try {
      await repair
    } finally {
      this.#repairs.delete(hop)
    }
  }

  async #replace (hop: Hop, replayEnd: number, replayRun: number, cause: Error): Promise<void> {
    const { directory, logger } = this.#init
    const dead = hop.session.peerId.toString()
    this.#stats.failovers++
    if (cause instanceof DrainingError) directory.markDraining(dead)
    else directory.ban(dead)
    directory.noteSession(dead, -1)
    // a draining server still answers the runs it has: close once they are back
    const old = hop.session
    void (cause instanceof DrainingError ? old.whenIdle().then(async () => { await old.close() }) : old.close()).catch(() => {})
    logger?.warn({ peer: dead, span: [hop.start, hop.end], err: cause.message }, 'server failed: re-routing its span')
    const { route, fresh } = await this.#openReplacement(hop).catch((err: unknown) => {
      // say which failure left the span without a server
      if (!(err instanceof NoRouteError)) throw err
      throw new NoRouteError(hop.start, hop.end, err.uncovered, { context: `(after ${short(dead)} failed: ${cause.message})`, cause })
    })
    try {
      // boundaries inside the replaced span are new (whatever an older route left there is stale)
      for (const h of fresh) if (h.start !== hop.start) this.#histories.set(h.start, new HiddenHistory(this.#init.parts.config.hiddenSize))
      // rebuild the new servers' caches from the inputs we kept: rows [0, replayEnd)
      for (let from = 0; from < replayEnd && !this.#closed; from += this.#maxRunTokens) {
        const to = Math.min(replayEnd, from + this.#maxRunTokens)
        let x = this.#history(hop.start).read(from, to)
        for (const h of fresh) {
          // record what enters the new boundaries (the outer one already holds it)
          if (h.start !== hop.start) this.#history(h.start).write(from, x, replayRun)
          x = await h.session.run(this.#nextRunId++, from, x)
        }
      }
      // the target closed while the new route opened: its sessions would be left open on the servers
      if (this.#closed) throw new CancelledError('The target closed while its route was repaired')
    } catch (err) {
      await Promise.all(fresh.map(async h => { await h.session.close() }))
      throw err
    }
    await this.#counters.record(fresh.map(h => h.session.peerId.toString()))
    this.#hops = [...this.#hops.filter(h => h !== hop), ...fresh].sort((a, b) => a.start - b.start)
    const why = cause instanceof DrainingError ? 'it is draining' : 'it failed'
    const change = `[${hop.start},${hop.end}) ${short(dead)} -> ${describeRoute(route)} (${why}; replayed ${replayEnd} positions)`
    this.#stats.routeChanges.push(change)
    logger?.info({ change }, 'route changed')
  }

  /** Plans and opens a route over the hop's blocks; a replacement that fails to open is banned and the next one tried. */
  async #openReplacement (hop: Hop, attempts = 4): Promise<{ route: RouteHop[], fresh: Hop[] }> {
    const { directory } = this.#init
    for (let attempt = 1; ; attempt++) {
      try {
        const route = await planCoveredRoute(this.#init, hop.start, hop.end)
        return { route, fresh: await openHops(this.#init, route, (runId, err) => { this.#onPushFailure(runId, err) }) }
      } catch (err) {
        if (attempt >= attempts) throw err
        this.#init.logger?.warn({ err: (err as Error).message, attempt }, 'replacement failed to open, trying another')
      }
    }
  }

  /** A server could not push a run on: whoever was to receive it never will, so stop waiting for them. */
  #onPushFailure (runId: number, err: PetalError): void {
    this.#init.logger?.warn({ runId, err: err.message }, 'push failed: continuing the run hop by hop')
    // only the waits for pushed results: the run may already be going on hop by hop under the same id
    for (const hop of this.#hops) hop.session.rejectPushed(runId, err)
  }

  #hopAt (block: number): Hop {
    const hop = this.#hops.find(h => h.start === block)
    if (hop === undefined) throw new Error(`No hop starts at block ${block}: route is ${describeRoute(this.route)}`)
    return hop
  }

  #history (boundary: number): HiddenHistory {
    let h = this.#histories.get(boundary)
    if (h === undefined) {
      h = new HiddenHistory(this.#init.parts.config.hiddenSize)
      this.#histories.set(boundary, h)
    }
    return h
  }
}

