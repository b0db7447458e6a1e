import { setTimeout as sleep } from 'node:timers/promises'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import type { ServedSpan } from '../../node/block-selection.js'
import { Rebalancer, type RebalancerInit } from '../../node/rebalancer.js'

/** A 5-block swarm: [0,3) and the rebalancing server at [0,2), [3,5) left (unless `views` says otherwise). */
function setup ({ views, ...overrides }: Partial<RebalancerInit> & { views?: () => ServedSpan[] } = {}): { rebalancer: Rebalancer, moves: Array<{ start: number, end: number }>, failures: unknown[], looks: () => number } {
  let span = { start: 0, end: 2 }
  let looks = 0
  const moves: Array<{ start: number, end: number }> = []
  const failures: unknown[] = []
  const rebalancer = new Rebalancer({
    intervalMs: 10,
    minGain: 1.25,
    totalBlocks: 5,
    self: () => ({ ...span, throughput: 10 }),
    others: async () => { looks++; return views?.() ?? [{ start: 0, end: 3, throughput: 10 }] },
    moveTo: async (to) => { moves.push(to); span = to },
    onFailure: (err) => { failures.push(err) },
    log: pino({ level: 'silent' }),
    ...overrides
  })
  return { rebalancer, moves, failures, looks: () => looks }
}

const until = async (check: () => boolean, ms = 5000): Promise<void> => {
  const deadline = Date.now() + ms
  while (!check() && Date.now() < deadline) await sleep(5)
}

describe('Rebalancer', () => {
  it('moves into a gap once two looks agree, then stays there', async () => {
    const { rebalancer, moves, looks } = setup()
    rebalancer.start()
    await until(() => moves.length > 0 && looks() > 6)
    await rebalancer.stop()
    expect(moves).toEqual([{ start: 3, end: 5 }])
  })

  it('stays when the second look disagrees (another server filled the gap meanwhile)', async () => {
    let calls = 0
    // first look: [3,5) is uncovered; every later look: a server serves it
    const { rebalancer, moves, looks } = setup({ views: () => calls++ === 0 ? [{ start: 0, end: 3, throughput: 10 }] : [{ start: 0, end: 3, throughput: 10 }, { start: 3, end: 5, throughput: 10 }] })
    rebalancer.start()
    await until(() => looks() > 4)
    await rebalancer.stop()
    expect(moves).toEqual([])
  })

  it('stop() aborts a move in progress and waits for it; no look after', async () => {
    let moving: AbortSignal | undefined
    const { rebalancer, failures, looks } = setup({
      moveTo: async (_to, signal) => {
        moving = signal
        await sleep(60_000, undefined, { signal })
      }
    })
    rebalancer.start()
    await until(() => moving !== undefined)
    await rebalancer.stop()
    expect(moving?.aborted).toBe(true)
    const seen = looks()
    await sleep(50)
    expect(looks()).toBe(seen)
    expect(failures).toEqual([]) // aborted by stop, not failed
  })

  it('reports a move that fails, and goes on looking', async () => {
    const { rebalancer, failures, looks } = setup({ moveTo: async () => { throw new Error('no memory for the new span') } })
    rebalancer.start()
    await until(() => failures.length > 0)
    const seen = looks()
    await until(() => looks() > seen)
    await rebalancer.stop()
    expect((failures[0] as Error).message).toBe('no memory for the new span')
    expect(looks()).toBeGreaterThan(seen)
  })
})
