/**
 * Announces a server's blocks in the DHT: a provider record per served block, at
 * start and every `intervalMs` after. Records cannot be withdrawn (they expire after
 * 48 h), so stopping only ends the announcing; clients learn that a server left from
 * /petal/1/info not answering, or answering `draining`.
 */
import type { KadDHT } from '@libp2p/kad-dht'
import type { Logger } from 'pino'
import { blockCid } from '../protocol/dht-keys.js'

/** Options of an Announcer. */
export interface AnnouncerInit {
  dht: Pick<KadDHT, 'provide' | 'cancelReprovide'>
  modelId: string
  /** Served blocks [start, end). */
  start: number
  end: number
  /** Time between announcement rounds, ms (Petals: ~120 s). */
  intervalMs: number
  /** Deadline of one round, ms (a node alone in the swarm waits for a peer until then). */
  roundTimeoutMs?: number
  log: Logger
}

/** Re-announces the served blocks until stopped. */
export class Announcer {
  readonly #init: AnnouncerInit
  #timer: ReturnType<typeof setTimeout> | undefined
  #round: AbortController | undefined
  #stopped = false
  #announcing = false
  /** announceNow() came while a round was in flight: the next round follows at once. */
  #again = false
  /** Rounds finished (each block provided or timed out). */
  rounds = 0

  constructor (init: AnnouncerInit) {
    this.#init = init
  }

  /** Starts the first round now (without waiting for it) and schedules the next ones. */
  start (): void {
    this.#stopped = false
    void this.#announce()
  }

  /**
   * Announces again now, as when the server's addresses changed (the records' peers keep the
   * addresses they last heard); after the round in flight, if one is.
   */
  announceNow (): void {
    if (this.#stopped) return
    if (this.#announcing) {
      this.#again = true
      return
    }
    clearTimeout(this.#timer)
    void this.#announce()
  }

  /** Stops announcing: cancels the round in flight and kad-dht's own re-providing of the blocks. */
  async stop (): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#timer)
    this.#round?.abort(new Error('announcer stopped'))
    const { dht, modelId, start, end } = this.#init
    await Promise.all(range(start, end).map(async b => { await dht.cancelReprovide(blockCid(modelId, b)).catch(() => {}) }))
  }

  async #announce (): Promise<void> {
    const { dht, modelId, start, end, intervalMs, log } = this.#init
    const round = new AbortController()
    this.#round = round
    this.#announcing = true
    const signal = AbortSignal.any([round.signal, AbortSignal.timeout(this.#init.roundTimeoutMs ?? Math.min(intervalMs, 60_000))])
    const began = performance.now()
    const results = await Promise.allSettled(range(start, end).map(async b => {
      // kad-dht stores the record locally at once, then sends it to the closest peers
      for await (const event of dht.provide(blockCid(modelId, b), { signal })) void event
    }))
    const failed = results.filter(r => r.status === 'rejected').length
    this.rounds++
    this.#announcing = false
    if (this.#stopped) return
    log.debug({ blocks: [start, end], failed, ms: Math.round(performance.now() - began) }, 'announced blocks')
    const again = this.#again
    this.#again = false
    this.#timer = setTimeout(() => { void this.#announce() }, again ? 0 : intervalMs)
    this.#timer.unref?.()
  }
}

function range (start: number, end: number): number[] {
  return Array.from({ length: end - start }, (_, i) => start + i)
}
