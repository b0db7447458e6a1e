/** A server stopped in the middle of a move between spans stops cleanly: no half-built span, no unhandled error. */
import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, describe, expect, it } from 'vitest'
import type { PetalServer } from '../../node/server.js'
import { InProcessSwarm } from '../helpers/in-process-swarm.js'

describe('rebalancing, stopped mid-move', () => {
  const swarm = new InProcessSwarm()
  /** [0,3), [3,5), and a --num-blocks 2 server that checks every ~100 ms (it starts at [0,2)); then [3,5) leaves. */
  const gapForMover = async (): Promise<PetalServer> => {
    await swarm.start({ blocks: { start: 0, end: 3 } })
    const leaving = await swarm.start({ blocks: { start: 3, end: 5 } })
    const mover = await swarm.start({ numBlocks: 2, maxStartDelayMs: 0, rebalanceIntervalMs: 100, discoveryTimeoutMs: 1000 })
    expect(mover.span).toEqual({ start: 0, end: 2 })
    await leaving.stop()
    return mover
  }
  afterEach(async () => { await swarm.close() })

  it('stop() during a move resolves, closes the server, and leaves it draining', async () => {
    const mover = await gapForMover()
    // the mover notices the gap within a few checks: stop it as soon as it leaves [0,2)
    const deadline = Date.now() + 20_000
    while (mover.state === 'online' && Date.now() < deadline) await sleep(2)
    expect(mover.state).not.toBe('online')
    await mover.stop()
    await mover.closed
    expect(mover.state).toBe('draining')
  }, 40_000)

  it('a server left alone moves into the gap and serves there', async () => {
    const mover = await gapForMover()
    const deadline = Date.now() + 20_000
    while (!(mover.state === 'online' && mover.span.start === 3) && Date.now() < deadline) await sleep(20)
    expect(mover.span).toEqual({ start: 3, end: 5 })
    expect(mover.info()).toMatchObject({ start: 3, end: 5, state: 'online' })
  }, 40_000)
})
