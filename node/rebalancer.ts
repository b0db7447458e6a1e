/**
 * Rebalancing of a --num-blocks server, as Petals' servers do: look at the swarm every
 * 0.5-1.5 intervals (random, so that servers do not all look at once) and move to the
 * blocks it serves worst when that lifts its slowest block enough (block-selection.ts,
 * chooseMove). The server does the looking and the moving; this decides when.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import { chooseMove, type ServedSpan } from './block-selection.js'

/** Options of a Rebalancer. */
export interface RebalancerInit {
  /** Mean time between looks at the swarm, ms. */
  intervalMs: number
  /** How much a move must lift the swarm's slowest block, as a factor (>= 1). */
  minGain: number
  /** Blocks of the whole model. */
  totalBlocks: number
  /** The server's span and speed now. */
  self: () => ServedSpan
  /** What the other servers of the model serve, or are loading. */
  others: (signal: AbortSignal) => Promise<ServedSpan[]>
  /** Leaves the current span and serves `span`; rejects when it could not. */
  moveTo: (span: { start: number, end: number }, signal: AbortSignal) => Promise<void>
  /** A move failed (the server serves nothing now). */
  onFailure: (err: unknown) => void
  log: Logger
}

/** Looks at the swarm now and then, and moves the server when it should. */
export class Rebalancer {
  readonly #init: RebalancerInit
  readonly #stopping = new AbortController()
  #timer: ReturnType<typeof setTimeout> | undefined
  /** A look (and the move it decides) in progress. */
  #running: Promise<void> | undefined

  constructor (init: RebalancerInit) {
    this.#init = init
  }

  /** Schedules the first look. */
  start (): void {
    const signal = this.#stopping.signal
    if (signal.aborted) return
    this.#timer = setTimeout(() => {
      this.#running = this.#rebalance(signal)
        .catch((err: unknown) => { if (!signal.aborted) this.#init.onFailure(err) })
        .finally(() => {
          this.#running = undefined
          this.start()
        })
    }, this.#init.intervalMs * (0.5 + Math.random()))
    this.#timer.unref?.()
  }

  /** No more looks; aborts a move in progress and waits for it to give up. */
  async stop (): Promise<void> {
    this.#stopping.abort(new Error('The server is stopping'))
    clearTimeout(this.#timer)
    await this.#running
  }

  /**
   * Moves when a look says so and a second look after a random pause agrees: two servers
   * holding the same blocks may decide together to leave them, and the pause lets the one
   * that moves first show as draining to the other.
   */
  async #rebalance (signal: AbortSignal): Promise<void> {
    const target = await this.#choose(signal)
    if (target === undefined) return
    await sleep(Math.random() * Math.min(2000, this.#init.intervalMs / 4), undefined, { signal })
    const confirmed = await this.#choose(signal)
    if (confirmed?.start !== target.start) {
      this.#init.log.info({ first: [target.start, target.end], then: confirmed === undefined ? 'stay' : [confirmed.start, confirmed.end] }, 'rebalancing: the second look disagrees, staying')
      return
    }
    const self = this.#init.self()
    this.#init.log.info({ from: [self.start, self.end], to: [target.start, target.end] }, 'rebalancing: moving to the blocks the swarm serves worst')
    await this.#init.moveTo(target, signal)
  }

  /** Where to move given the swarm as it is now (undefined: stay, or the swarm could not be seen). */
  async #choose (signal: AbortSignal): Promise<{ start: number, end: number } | undefined> {
    let others: ServedSpan[]
    try {
      others = await this.#init.others(signal)
    } catch (err) {
      if (!signal.aborted) this.#init.log.warn({ err }, 'rebalancing: could not look at the swarm')
      return undefined
    }
    if (signal.aborted) return undefined
    const self = this.#init.self()
    const target = chooseMove(this.#init.totalBlocks, self, others, this.#init.minGain)
    this.#init.log.debug({ self: [self.start, self.end], servers: others, target }, 'rebalancing: looked at the swarm')
    return target
  }
}
